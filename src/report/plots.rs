//! SVG plots. Each function draws one figure from report rows; the drawing helpers are shared.
//!
//! Rules every figure follows, so a reader gets it at a glance (and a slide can show it):
//! - each policy keeps one colour **and** one marker (and, past ten, a dashed line) across every
//!   plot of a report ([`Styles`]), so a series is told apart in grey print too;
//! - at most [`MAX_SERIES_PER_PANEL`] series per panel: more are split into panels side by side;
//! - legends sit beside the plot area, never over data; category labels of bar charts are
//!   horizontal text to the left of horizontal bars, never rotated or overlapping;
//! - every axis names its quantity and unit; bounds (policies that know the future) are drawn
//!   dashed black and say what they bound.
//!
//! SVG text is left to the viewer's fonts, so no font files are needed at build or run time.

use super::table::ResultRow;
use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};
use std::collections::BTreeMap;
use std::path::Path;

type PlotResult = Result<(), String>;

/// Most series in one panel of a line chart; more are split over panels.
pub const MAX_SERIES_PER_PANEL: usize = 8;

const PALETTE: [RGBColor; 10] = [
    RGBColor(31, 119, 180),
    RGBColor(255, 127, 14),
    RGBColor(44, 160, 44),
    RGBColor(214, 39, 40),
    RGBColor(148, 103, 189),
    RGBColor(140, 86, 75),
    RGBColor(227, 119, 194),
    RGBColor(127, 127, 127),
    RGBColor(188, 189, 34),
    RGBColor(23, 190, 207),
];

/// The `i`-th series colour (Tableau's ten, repeating).
pub fn color(i: usize) -> RGBColor {
    PALETTE[i % PALETTE.len()]
}

/// Marker shapes, cycled independently of the colours.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Marker {
    Circle,
    Square,
    Triangle,
    Diamond,
    Cross,
}

const MARKERS: [Marker; 5] = [
    Marker::Circle,
    Marker::Square,
    Marker::Triangle,
    Marker::Diamond,
    Marker::Cross,
];

/// How one series is drawn.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Style {
    pub color: RGBColor,
    pub marker: Marker,
    pub dashed: bool,
}

/// The `i`-th style: colour `i mod 10`, a marker that shifts every ten so that the eleventh
/// series differs from the first in marker and dash as well.
pub fn style(i: usize) -> Style {
    Style {
        color: color(i),
        marker: MARKERS[(i + i / PALETTE.len()) % MARKERS.len()],
        dashed: i >= PALETTE.len(),
    }
}

/// One style per label, fixed for a whole report: a label's index in the report's label order.
#[derive(Clone, Debug, Default)]
pub struct Styles {
    labels: Vec<String>,
}

impl Styles {
    /// Styles for labels in the order given (duplicates ignored).
    pub fn new<S: AsRef<str>>(labels: impl IntoIterator<Item = S>) -> Self {
        let mut v: Vec<String> = Vec::new();
        for l in labels {
            if !v.iter().any(|x| x == l.as_ref()) {
                v.push(l.as_ref().to_string());
            }
        }
        Styles { labels: v }
    }

    /// Styles for the labels of `rows`, in row order.
    pub fn of_rows(rows: &[ResultRow]) -> Self {
        Self::new(rows.iter().map(|r| r.id.label.as_str()))
    }

    pub fn get(&self, label: &str) -> Style {
        let i = self
            .labels
            .iter()
            .position(|l| l == label)
            .unwrap_or(self.labels.len());
        style(i)
    }
}

fn err<E: std::fmt::Display>(path: &Path) -> impl Fn(E) -> String + '_ {
    move |e| format!("cannot draw {}: {e}", path.display())
}

/// One named series of (x, y) points.
pub struct Series {
    pub name: String,
    pub points: Vec<(f64, f64)>,
}

/// One panel of a figure: a sub-title and its series.
pub struct Panel {
    pub title: String,
    pub series: Vec<Series>,
}

/// A line series that is a bound rather than a policy: drawn dashed black, with `note` saying
/// what it bounds in the legend.
#[derive(Clone, Copy)]
pub struct Bound<'a> {
    pub name: &'a str,
    pub note: &'a str,
}

const FONT: &str = "sans-serif";
const PANEL_W: u32 = 620;
const PANEL_H: u32 = 440;
const LEGEND_W: u32 = 300;

/// A line chart with markers, one line per series, legend beside the plot; split into panels
/// of at most [`MAX_SERIES_PER_PANEL`] series.
pub fn line_chart(
    path: &Path,
    title: &str,
    x_desc: &str,
    y_desc: &str,
    series: &[Series],
) -> PlotResult {
    let styles = Styles::new(series.iter().map(|s| s.name.as_str()));
    let panels = split_panels(series);
    line_panels(path, title, x_desc, y_desc, &panels, &styles, None)
}

/// `series` in panels of at most [`MAX_SERIES_PER_PANEL`], untitled.
fn split_panels(series: &[Series]) -> Vec<Panel> {
    let n = series.len().div_ceil(MAX_SERIES_PER_PANEL).max(1);
    let per = series.len().div_ceil(n).max(1);
    series
        .chunks(per)
        .map(|c| Panel {
            title: String::new(),
            series: c
                .iter()
                .map(|s| Series {
                    name: s.name.clone(),
                    points: s.points.clone(),
                })
                .collect(),
        })
        .collect()
}

/// Line-chart panels side by side (two per row), sharing the y range so panels compare.
pub fn line_panels(
    path: &Path,
    title: &str,
    x_desc: &str,
    y_desc: &str,
    panels: &[Panel],
    styles: &Styles,
    bound: Option<Bound>,
) -> PlotResult {
    let e = err(path);
    let (mut x_min, mut x_max, mut y_max) = (f64::INFINITY, 0f64, 0f64);
    for s in panels.iter().flat_map(|p| &p.series) {
        for &(x, y) in &s.points {
            x_min = x_min.min(x);
            x_max = x_max.max(x);
            if y.is_finite() {
                y_max = y_max.max(y);
            }
        }
    }
    if !x_min.is_finite() {
        x_min = 0.0;
    }
    if x_max <= x_min {
        x_max = x_min + 1.0;
    }
    let y_top = if y_max > 0.0 { y_max * 1.08 } else { 1.0 };
    let x_pad = (x_max - x_min) * 0.05;
    let cols = panels.len().clamp(1, 2) as u32;
    let rows = panels.len().div_ceil(2).max(1) as u32;
    let size = ((PANEL_W + LEGEND_W) * cols, 50 + PANEL_H * rows);
    let root = SVGBackend::new(path, size).into_drawing_area();
    root.fill(&WHITE).map_err(&e)?;
    let (head, body) = root.split_vertically(50);
    head.draw(&Text::new(
        title.to_string(),
        (size.0 as i32 / 2, 25),
        (FONT, 22)
            .into_font()
            .color(&BLACK)
            .pos(Pos::new(HPos::Center, VPos::Center)),
    ))
    .map_err(&e)?;
    let areas = body.split_evenly((rows as usize, cols as usize));
    for (panel, area) in panels.iter().zip(areas) {
        let (plot, legend) = area.split_horizontally(PANEL_W);
        let mut chart = ChartBuilder::on(&plot)
            .caption(&panel.title, (FONT, 17))
            .margin(14)
            .x_label_area_size(50)
            .y_label_area_size(75)
            .build_cartesian_2d((x_min - x_pad)..(x_max + x_pad), 0f64..y_top)
            .map_err(&e)?;
        chart
            .configure_mesh()
            .x_desc(x_desc)
            .y_desc(y_desc)
            .x_label_formatter(&|x| tick(*x))
            .y_label_formatter(&|y| tick(*y))
            .label_style((FONT, 14))
            .axis_desc_style((FONT, 15))
            .light_line_style(BLACK.mix(0.06))
            .draw()
            .map_err(&e)?;
        let mut entries: Vec<(String, Option<Style>)> = Vec::new();
        for s in &panel.series {
            let pts = s.points.iter().copied();
            if bound.is_some_and(|b| b.name == s.name) {
                let line = BLACK.stroke_width(2);
                chart
                    .draw_series(DashedLineSeries::new(pts, 8, 5, line))
                    .map_err(&e)?;
                let note = bound.map_or("", |b| b.note);
                entries.push((format!("{} ({note})", s.name), None));
                continue;
            }
            let st = styles.get(&s.name);
            let line = st.color.stroke_width(2);
            if st.dashed {
                chart
                    .draw_series(DashedLineSeries::new(pts, 10, 4, line))
                    .map_err(&e)?;
            } else {
                chart.draw_series(LineSeries::new(pts, line)).map_err(&e)?;
            }
            draw_markers(&mut chart, &s.points, st).map_err(&e)?;
            entries.push((s.name.clone(), Some(st)));
        }
        draw_legend(&legend, &entries).map_err(&e)?;
    }
    root.present().map_err(&e)?;
    Ok(())
}

fn draw_markers<DB: DrawingBackend>(
    chart: &mut ChartContext<
        DB,
        Cartesian2d<plotters::coord::types::RangedCoordf64, plotters::coord::types::RangedCoordf64>,
    >,
    points: &[(f64, f64)],
    st: Style,
) -> Result<(), DrawingAreaErrorKind<DB::ErrorType>> {
    let c = st.color;
    let pts = points.iter().copied();
    match st.marker {
        Marker::Circle => {
            chart.draw_series(pts.map(|p| Circle::new(p, 4, c.filled())))?;
        }
        Marker::Square => {
            chart.draw_series(
                pts.map(|p| EmptyElement::at(p) + Rectangle::new([(-4, -4), (4, 4)], c.filled())),
            )?;
        }
        Marker::Triangle => {
            chart.draw_series(pts.map(|p| TriangleMarker::new(p, 5, c.filled())))?;
        }
        Marker::Diamond => {
            chart.draw_series(pts.map(|p| {
                EmptyElement::at(p)
                    + Polygon::new(vec![(0, -5), (5, 0), (0, 5), (-5, 0)], c.filled())
            }))?;
        }
        Marker::Cross => {
            chart.draw_series(pts.map(|p| Cross::new(p, 4, c.stroke_width(2))))?;
        }
    }
    Ok(())
}

/// A legend in its own area: a line sample with the series' marker, then its name.
fn draw_legend<DB: DrawingBackend>(
    area: &DrawingArea<DB, Shift>,
    entries: &[(String, Option<Style>)],
) -> Result<(), DrawingAreaErrorKind<DB::ErrorType>> {
    for (i, (name, st)) in entries.iter().enumerate() {
        let y = 60 + 24 * i as i32;
        match st {
            None => {
                area.draw(&PathElement::new(
                    vec![(4, y), (12, y)],
                    BLACK.stroke_width(2),
                ))?;
                area.draw(&PathElement::new(
                    vec![(18, y), (26, y)],
                    BLACK.stroke_width(2),
                ))?;
            }
            Some(st) => {
                let line = st.color.stroke_width(2);
                if st.dashed {
                    area.draw(&PathElement::new(vec![(4, y), (11, y)], line))?;
                    area.draw(&PathElement::new(vec![(19, y), (26, y)], line))?;
                } else {
                    area.draw(&PathElement::new(vec![(4, y), (26, y)], line))?;
                }
                let c = st.color;
                let at = (15, y);
                match st.marker {
                    Marker::Circle => area.draw(&Circle::new(at, 4, c.filled()))?,
                    Marker::Square => {
                        area.draw(&Rectangle::new([(11, y - 4), (19, y + 4)], c.filled()))?
                    }
                    Marker::Triangle => area.draw(&TriangleMarker::new(at, 5, c.filled()))?,
                    Marker::Diamond => area.draw(&Polygon::new(
                        vec![(15, y - 5), (20, y), (15, y + 5), (10, y)],
                        c.filled(),
                    ))?,
                    Marker::Cross => area.draw(&Cross::new(at, 4, c.stroke_width(2)))?,
                }
            }
        }
        area.draw(&Text::new(
            name.clone(),
            (34, y),
            (FONT, 13)
                .into_font()
                .color(&BLACK)
                .pos(Pos::new(HPos::Left, VPos::Center)),
        ))?;
    }
    Ok(())
}

/// How the values of one bar category are drawn.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum BarMode {
    /// One bar per category, the parts stacked left to right.
    Stacked,
    /// One thin bar per part (group), side by side.
    Grouped,
}

/// One panel of a bar chart: `values[category][part]`.
pub struct BarPanel {
    pub title: String,
    pub categories: Vec<String>,
    pub values: Vec<Vec<f64>>,
}

/// A horizontal bar chart: categories as rows with their labels to the left, one colour per
/// part (legend under the title), panels two per row sharing the value axis. `reference` draws
/// a vertical line (e.g. speedup 1); `value_format` writes each bar's value (the stack's total)
/// at its end.
#[allow(clippy::too_many_arguments)]
pub fn hbar_panels(
    path: &Path,
    title: &str,
    x_desc: &str,
    parts: &[String],
    mode: BarMode,
    panels: &[BarPanel],
    reference: Option<f64>,
    value_format: &dyn Fn(f64) -> String,
) -> PlotResult {
    let e = err(path);
    let bar_total = |v: &[f64]| -> f64 {
        match mode {
            BarMode::Stacked => v.iter().filter(|x| x.is_finite()).sum(),
            BarMode::Grouped => v
                .iter()
                .copied()
                .filter(|x| x.is_finite())
                .fold(0.0, f64::max),
        }
    };
    let x_max = panels
        .iter()
        .flat_map(|p| &p.values)
        .map(|v| bar_total(v))
        .fold(reference.unwrap_or(0.0), f64::max);
    let x_top = if x_max > 0.0 { x_max * 1.18 } else { 1.0 };
    let longest = panels
        .iter()
        .flat_map(|p| &p.categories)
        .map(|c| c.chars().count())
        .max()
        .unwrap_or(4) as u32;
    let label_w = 20 + longest * 7;
    let row_h: u32 = match mode {
        BarMode::Stacked => 26,
        BarMode::Grouped => 8 + 9 * parts.len().max(1) as u32,
    };
    let most = panels.iter().map(|p| p.categories.len()).max().unwrap_or(1) as u32;
    let panel_h = 90 + row_h * most;
    let panel_w = label_w + 520;
    let cols = panels.len().clamp(1, 2) as u32;
    let rows = panels.len().div_ceil(2).max(1) as u32;
    let head_h = 80;
    let title_w = 40 + 11 * title.chars().count() as u32;
    let size = ((panel_w * cols).max(title_w), head_h + panel_h * rows);
    let root = SVGBackend::new(path, size).into_drawing_area();
    root.fill(&WHITE).map_err(&e)?;
    let (head, body) = root.split_vertically(head_h);
    head.draw(&Text::new(
        title.to_string(),
        (size.0 as i32 / 2, 22),
        (FONT, 22)
            .into_font()
            .color(&BLACK)
            .pos(Pos::new(HPos::Center, VPos::Center)),
    ))
    .map_err(&e)?;
    // Legend of the parts, one row under the title.
    let mut x = 20i32;
    for (pi, part) in parts.iter().enumerate() {
        let c = color(pi);
        head.draw(&Rectangle::new([(x, 52), (x + 14, 66)], c.filled()))
            .map_err(&e)?;
        head.draw(&Text::new(
            part.clone(),
            (x + 20, 59),
            (FONT, 14)
                .into_font()
                .color(&BLACK)
                .pos(Pos::new(HPos::Left, VPos::Center)),
        ))
        .map_err(&e)?;
        x += 40 + 8 * part.chars().count() as i32;
    }
    let areas = body.split_evenly((rows as usize, cols as usize));
    for (panel, area) in panels.iter().zip(areas) {
        let n = panel.categories.len().max(1);
        let mut chart = ChartBuilder::on(&area)
            .caption(&panel.title, (FONT, 17))
            .margin(12)
            .x_label_area_size(48)
            .y_label_area_size(label_w)
            .build_cartesian_2d(0f64..x_top, 0f64..n as f64)
            .map_err(&e)?;
        chart
            .configure_mesh()
            .disable_y_mesh()
            .y_labels(0)
            .x_desc(x_desc)
            .x_label_formatter(&|x| tick(*x))
            .label_style((FONT, 14))
            .axis_desc_style((FONT, 15))
            .light_line_style(BLACK.mix(0.06))
            .draw()
            .map_err(&e)?;
        // Category ci is the ci-th row from the top.
        let row_y = |ci: usize| (n - ci) as f64 - 0.5;
        for (ci, name) in panel.categories.iter().enumerate() {
            let (px, py) = chart.backend_coord(&(0.0, row_y(ci)));
            let (ax, ay) = area.get_base_pixel();
            area.draw(&Text::new(
                name.clone(),
                (px - ax - 8, py - ay),
                (FONT, 13)
                    .into_font()
                    .color(&BLACK)
                    .pos(Pos::new(HPos::Right, VPos::Center)),
            ))
            .map_err(&e)?;
        }
        for (ci, v) in panel.values.iter().enumerate() {
            let y = row_y(ci);
            match mode {
                BarMode::Stacked => {
                    let mut base = 0.0;
                    for (pi, &x) in v.iter().enumerate() {
                        let x = if x.is_finite() { x } else { 0.0 };
                        chart
                            .draw_series(std::iter::once(Rectangle::new(
                                [(base, y - 0.35), (base + x, y + 0.35)],
                                color(pi).filled(),
                            )))
                            .map_err(&e)?;
                        base += x;
                    }
                }
                BarMode::Grouped => {
                    let g = v.len().max(1) as f64;
                    let h = 0.84 / g;
                    for (gi, &x) in v.iter().enumerate() {
                        let x = if x.is_finite() { x } else { 0.0 };
                        let top = y + 0.42 - gi as f64 * h;
                        chart
                            .draw_series(std::iter::once(Rectangle::new(
                                [(0.0, top - h * 0.9), (x, top)],
                                color(gi).filled(),
                            )))
                            .map_err(&e)?;
                    }
                }
            }
            let total = bar_total(v);
            // A stack is labelled with its total; a group with its range.
            let finite = v.iter().copied().filter(|x| x.is_finite());
            let lo = finite.clone().fold(f64::INFINITY, f64::min);
            let text = match mode {
                BarMode::Grouped if v.len() > 1 && value_format(lo) != value_format(total) => {
                    format!("{} to {}", value_format(lo), value_format(total))
                }
                _ => value_format(total),
            };
            chart
                .draw_series(std::iter::once(Text::new(
                    text,
                    (total + x_top * 0.01, y),
                    (FONT, 12)
                        .into_font()
                        .color(&BLACK.mix(0.8))
                        .pos(Pos::new(HPos::Left, VPos::Center)),
                )))
                .map_err(&e)?;
        }
        if let Some(r) = reference {
            chart
                .draw_series(DashedLineSeries::new(
                    [(r, 0.0), (r, n as f64)],
                    6,
                    4,
                    BLACK.mix(0.7).stroke_width(1),
                ))
                .map_err(&e)?;
        }
    }
    root.present().map_err(&e)?;
    Ok(())
}

/// Stacked horizontal bars, one per category, segments named by `parts`: values[category][part].
pub fn stacked_bars(
    path: &Path,
    title: &str,
    x_desc: &str,
    categories: &[String],
    parts: &[&str],
    values: &[Vec<f64>],
) -> PlotResult {
    let parts: Vec<String> = parts.iter().map(|p| p.to_string()).collect();
    hbar_panels(
        path,
        title,
        x_desc,
        &parts,
        BarMode::Stacked,
        &[BarPanel {
            title: String::new(),
            categories: categories.to_vec(),
            values: values.to_vec(),
        }],
        None,
        &|x| format!("{x:.1}"),
    )
}

/// Rows grouped by label, each a series over budget (GiB) of `metric`.
pub fn series_by_label(rows: &[ResultRow], metric: impl Fn(&ResultRow) -> f64) -> Vec<Series> {
    let mut by_label: BTreeMap<(usize, String), Vec<(f64, f64)>> = BTreeMap::new();
    let mut order: Vec<String> = Vec::new();
    for r in rows {
        let pos = match order.iter().position(|l| *l == r.id.label) {
            Some(p) => p,
            None => {
                order.push(r.id.label.clone());
                order.len() - 1
            }
        };
        by_label
            .entry((pos, r.id.label.clone()))
            .or_default()
            .push((r.id.budget_bytes as f64 / (1u64 << 30) as f64, metric(r)));
    }
    by_label
        .into_iter()
        .map(|((_, name), mut points)| {
            points.sort_by(|a, b| a.0.total_cmp(&b.0));
            Series { name, points }
        })
        .collect()
}

/// An axis tick without a needless ".0".
fn tick(x: f64) -> String {
    if (x - x.round()).abs() < 1e-9 {
        format!("{x:.0}")
    } else {
        let s = format!("{x:.3}");
        s.trim_end_matches('0').to_string()
    }
}

/// Milliseconds as a short label: "850 ms", "4.12 s".
pub fn ms_label(x: f64) -> String {
    if x >= 1e3 {
        format!("{:.2} s", x / 1e3)
    } else {
        format!("{x:.0} ms")
    }
}

/// The standard figures of a comparison, every policy in the style `styles` gives it. Returns
/// the file names written.
pub fn comparison_plots(
    dir: &Path,
    experiment: &str,
    rows: &[ResultRow],
    styles: &Styles,
) -> Result<Vec<String>, String> {
    let mut written = Vec::new();
    let setting = rows
        .first()
        .map(|r| format!(" ({} on {})", r.id.model, r.id.device))
        .unwrap_or_default();
    let mut line =
        |file: &str, title: String, y: &str, m: &dyn Fn(&ResultRow) -> f64| -> PlotResult {
            let series = series_by_label(rows, m);
            line_panels(
                &dir.join(file),
                &format!("{title}{setting}"),
                "memory budget (GiB)",
                y,
                &split_panels(&series),
                styles,
                None,
            )?;
            written.push(file.to_string());
            Ok(())
        };
    line(
        "decode_tokens_per_s.svg",
        format!("{experiment}: decode speed vs memory budget"),
        "decode speed (tokens/s)",
        &|r| r.summary.decode_tokens_per_s,
    )?;
    line(
        "hit_rate.svg",
        format!("{experiment}: cache hit rate"),
        "hit rate (share of lookups)",
        &|r| r.summary.hit_rate,
    )?;
    line(
        "bytes_read_per_token.svg",
        format!("{experiment}: bytes read per decode token"),
        "read per decode token (MiB)",
        &|r| r.summary.bytes_read_per_decode_token / (1u64 << 20) as f64,
    )?;
    line(
        "ttft.svg",
        format!("{experiment}: time to first token"),
        "mean time to first token (s)",
        &|r| r.summary.ttft_mean_ms / 1e3,
    )?;
    let categories: Vec<String> = rows
        .iter()
        .map(|r| format!("{} @ {}", r.id.label, r.id.budget_label))
        .collect();
    let values: Vec<Vec<f64>> = rows.iter().map(compute_and_wait_ms).collect();
    hbar_panels(
        &dir.join("time_breakdown.svg"),
        &format!("{experiment}: decode time per token{setting}"),
        "time per decode token (ms)",
        &[
            "computing".to_string(),
            "waiting (loads, switches)".to_string(),
        ],
        BarMode::Stacked,
        &[BarPanel {
            title: String::new(),
            categories,
            values,
        }],
        None,
        &ms_label,
    )?;
    written.push("time_breakdown.svg".into());
    Ok(written)
}

/// A run's decode time per token as [computing, waiting] in ms.
pub fn compute_and_wait_ms(r: &ResultRow) -> Vec<f64> {
    let per_token_ms = if r.summary.decode_tokens_per_s > 0.0 {
        1e3 / r.summary.decode_tokens_per_s
    } else {
        0.0
    };
    let stall = per_token_ms * r.summary.decode_stall_share;
    vec![per_token_ms - stall, stall]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn thirteen_policies_get_thirteen_distinct_styles() {
        let styles: Vec<Style> = (0..20).map(style).collect();
        for i in 0..styles.len() {
            for j in 0..i {
                assert_ne!(styles[i], styles[j], "styles {i} and {j}");
            }
        }
    }

    #[test]
    fn a_label_keeps_its_style_whatever_else_is_plotted() {
        let s = Styles::new(["a", "b", "c", "b"]);
        assert_eq!(s.get("c"), style(2));
        assert_eq!(s.get("a"), style(0));
    }

    #[test]
    fn many_series_split_into_panels_of_at_most_eight() {
        let series: Vec<Series> = (0..13)
            .map(|i| Series {
                name: format!("s{i}"),
                points: vec![(0.0, 1.0)],
            })
            .collect();
        let panels = split_panels(&series);
        assert_eq!(panels.len(), 2);
        assert!(panels
            .iter()
            .all(|p| p.series.len() <= MAX_SERIES_PER_PANEL));
        assert_eq!(panels.iter().map(|p| p.series.len()).sum::<usize>(), 13);
    }
}

//! SVG plots. Each function draws one figure from report rows; the drawing helpers are shared.
//!
//! SVG text is left to the viewer's fonts, so no font files are needed at build or run time.

use super::table::ResultRow;
use plotters::prelude::*;
use std::collections::BTreeMap;
use std::path::Path;

type PlotResult = Result<(), String>;

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

/// The `i`-th series colour (Tableau's ten, repeating), shared by every plot of a report.
pub fn color(i: usize) -> RGBColor {
    PALETTE[i % PALETTE.len()]
}

fn err<E: std::fmt::Display>(path: &Path) -> impl Fn(E) -> String + '_ {
    move |e| format!("cannot draw {}: {e}", path.display())
}

/// One named series of (x, y) points.
pub struct Series {
    pub name: String,
    pub points: Vec<(f64, f64)>,
}

/// A line chart with markers, one line per series, legend at the upper left.
pub fn line_chart(
    path: &Path,
    title: &str,
    x_desc: &str,
    y_desc: &str,
    series: &[Series],
) -> PlotResult {
    line_chart_with_ceiling(path, title, x_desc, y_desc, series, None)
}

/// [`line_chart`] with the series named `ceiling` (an upper bound such as Belady's cache)
/// drawn dashed in black and labelled as the ceiling.
pub fn line_chart_with_ceiling(
    path: &Path,
    title: &str,
    x_desc: &str,
    y_desc: &str,
    series: &[Series],
    ceiling: Option<&str>,
) -> PlotResult {
    let e = err(path);
    let (mut x_max, mut y_max) = (0f64, 0f64);
    let mut x_min = f64::INFINITY;
    for s in series {
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
    let y_top = if y_max > 0.0 { y_max * 1.15 } else { 1.0 };
    let x_pad = (x_max - x_min) * 0.05;
    let root = SVGBackend::new(path, (800, 520)).into_drawing_area();
    root.fill(&WHITE).map_err(&e)?;
    let mut chart = ChartBuilder::on(&root)
        .caption(title, ("sans-serif", 20))
        .margin(12)
        .x_label_area_size(45)
        .y_label_area_size(65)
        .build_cartesian_2d((x_min - x_pad)..(x_max + x_pad), 0f64..y_top)
        .map_err(&e)?;
    chart
        .configure_mesh()
        .x_desc(x_desc)
        .y_desc(y_desc)
        .draw()
        .map_err(&e)?;
    for (i, s) in series.iter().enumerate() {
        if Some(s.name.as_str()) == ceiling {
            let line = BLACK.stroke_width(2);
            chart
                .draw_series(DashedLineSeries::new(s.points.iter().copied(), 8, 5, line))
                .map_err(&e)?
                .label(format!("{} (ceiling)", s.name))
                .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 18, y)], line));
            continue;
        }
        let c = color(i);
        chart
            .draw_series(LineSeries::new(s.points.iter().copied(), c.stroke_width(2)))
            .map_err(&e)?
            .label(s.name.clone())
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 18, y)], c.stroke_width(2)));
        chart
            .draw_series(s.points.iter().map(|&p| Circle::new(p, 3, c.filled())))
            .map_err(&e)?;
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperLeft)
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .draw()
        .map_err(&e)?;
    root.present().map_err(&e)?;
    Ok(())
}

/// Stacked bars: one bar per category, segments named by `parts`, values[category][part].
pub fn stacked_bars(
    path: &Path,
    title: &str,
    y_desc: &str,
    categories: &[String],
    parts: &[&str],
    values: &[Vec<f64>],
) -> PlotResult {
    let e = err(path);
    let y_max = values
        .iter()
        .map(|v| v.iter().sum::<f64>())
        .fold(0f64, f64::max);
    let y_top = if y_max > 0.0 { y_max * 1.2 } else { 1.0 };
    let n = categories.len().max(1);
    let width = (160 + 70 * n as u32).max(640);
    let root = SVGBackend::new(path, (width, 620)).into_drawing_area();
    root.fill(&WHITE).map_err(&e)?;
    let mut chart = ChartBuilder::on(&root)
        .caption(title, ("sans-serif", 20))
        .margin(12)
        .x_label_area_size(170)
        .y_label_area_size(65)
        .build_cartesian_2d(0f64..n as f64, 0f64..y_top)
        .map_err(&e)?;
    chart
        .configure_mesh()
        .disable_x_mesh()
        .x_labels(0)
        .y_desc(y_desc)
        .draw()
        .map_err(&e)?;
    // Category names under their bars, rotated to fit long labels.
    let style = ("sans-serif", 12)
        .into_font()
        .transform(FontTransform::Rotate90)
        .color(&BLACK);
    for (ci, name) in categories.iter().enumerate() {
        let (x, y) = chart.backend_coord(&(ci as f64 + 0.5, 0.0));
        root.draw(&Text::new(name.clone(), (x - 6, y + 8), style.clone()))
            .map_err(&e)?;
    }
    for (pi, part) in parts.iter().enumerate() {
        let c = color(pi);
        let bars = values.iter().enumerate().map(|(ci, v)| {
            let base: f64 = v[..pi].iter().sum();
            let top = base + v[pi];
            Rectangle::new(
                [(ci as f64 + 0.15, base), (ci as f64 + 0.85, top)],
                c.filled(),
            )
        });
        chart
            .draw_series(bars)
            .map_err(&e)?
            .label(*part)
            .legend(move |(x, y)| Rectangle::new([(x, y - 5), (x + 12, y + 5)], c.filled()));
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperRight)
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .draw()
        .map_err(&e)?;
    root.present().map_err(&e)?;
    Ok(())
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

/// The standard figures of a comparison. Returns the file names written.
pub fn comparison_plots(
    dir: &Path,
    experiment: &str,
    rows: &[ResultRow],
) -> Result<Vec<String>, String> {
    let mut written = Vec::new();
    let mut line =
        |file: &str, title: String, y: &str, m: &dyn Fn(&ResultRow) -> f64| -> PlotResult {
            line_chart(
                &dir.join(file),
                &title,
                "memory budget (GiB)",
                y,
                &series_by_label(rows, m),
            )?;
            written.push(file.to_string());
            Ok(())
        };
    line(
        "decode_tokens_per_s.svg",
        format!("{experiment}: decode speed vs memory budget"),
        "decode tokens/s",
        &|r| r.summary.decode_tokens_per_s,
    )?;
    line(
        "hit_rate.svg",
        format!("{experiment}: cache hit rate vs memory budget"),
        "hit rate",
        &|r| r.summary.hit_rate,
    )?;
    line(
        "bytes_read_per_token.svg",
        format!("{experiment}: bytes read per decode token"),
        "MiB read per decode token",
        &|r| r.summary.bytes_read_per_decode_token / (1u64 << 20) as f64,
    )?;
    line(
        "ttft.svg",
        format!("{experiment}: time to first token"),
        "mean TTFT (ms)",
        &|r| r.summary.ttft_mean_ms,
    )?;
    let categories: Vec<String> = rows
        .iter()
        .map(|r| format!("{} @ {}", r.id.label, r.id.budget_label))
        .collect();
    let values: Vec<Vec<f64>> = rows
        .iter()
        .map(|r| {
            let per_token_ms = if r.summary.decode_tokens_per_s > 0.0 {
                1e3 / r.summary.decode_tokens_per_s
            } else {
                0.0
            };
            let stall = per_token_ms * r.summary.decode_stall_share;
            vec![per_token_ms - stall, stall]
        })
        .collect();
    stacked_bars(
        &dir.join("time_breakdown.svg"),
        &format!("{experiment}: decode time per token"),
        "ms per decode token",
        &categories,
        &["compute", "waiting (I/O, switches)"],
        &values,
    )?;
    written.push("time_breakdown.svg".into());
    Ok(written)
}

//! `index.html`: a report folder as one page that opens in a browser from disk — no server, no
//! network, no script. It shows `summary.md` (headline first), every plot of the folder and its
//! `workload-*` subfolders, every CSV as a table, and links to the CSV/JSON files and the
//! timelines, with how to open a timeline in Perfetto.
//!
//! The page is built from the files already in the folder, so whatever wrote them (compare,
//! merge) gets the same page.

use std::fmt::Write as _;
use std::path::Path;

/// Most rows of one CSV shown on the page; the file itself has them all.
pub const MAX_TABLE_ROWS: usize = 400;

/// Writes `dir/index.html` from the files in `dir`.
pub fn write_index(dir: &Path, title: &str) -> Result<(), String> {
    let io = |e: std::io::Error| format!("{}: cannot write index.html: {e}", dir.display());
    let files = list_files(dir).map_err(io)?;
    let mut html = String::new();
    let _ = write!(
        html,
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n<title>{}</title>\n<style>\n{}</style>\n</head>\n<body>\n",
        escape(&format!("edgesim report: {title}")),
        CSS
    );
    match std::fs::read_to_string(dir.join("summary.md")) {
        Ok(md) => html.push_str(&markdown_to_html(&md)),
        Err(_) => {
            let _ = writeln!(html, "<h1>{}</h1>", escape(title));
        }
    }
    let svgs: Vec<&String> = files.iter().filter(|f| f.ends_with(".svg")).collect();
    if !svgs.is_empty() {
        html.push_str("<h2>Plots</h2>\n<p>Each plot is an SVG file in this folder (click one to open it alone).</p>\n");
        let mut folder = String::new();
        for f in svgs {
            let this = f.rsplit_once('/').map_or("", |(d, _)| d).to_string();
            if this != folder {
                let _ = writeln!(html, "<h3>{}</h3>", escape(&this));
                folder = this;
            }
            let _ = writeln!(
                html,
                "<figure><a href=\"{0}\"><img src=\"{0}\" alt=\"{1}\"></a><figcaption>{1}</figcaption></figure>",
                attr(f),
                escape(f)
            );
        }
    }
    let csvs: Vec<&String> = files.iter().filter(|f| f.ends_with(".csv")).collect();
    if !csvs.is_empty() {
        html.push_str("<h2>Tables</h2>\n<p>Columns and units: <code>docs/outputs.md</code> in the edgesim repository.</p>\n");
        for f in csvs {
            let text = std::fs::read_to_string(dir.join(f)).map_err(io)?;
            let _ = writeln!(html, "<h3><a href=\"{}\">{}</a></h3>", attr(f), escape(f));
            html.push_str(&csv_to_html(&text));
        }
    }
    html.push_str("<h2>Files</h2>\n<ul>\n");
    for f in files
        .iter()
        .filter(|f| f.ends_with(".json") || f.ends_with(".csv") || f.ends_with(".md"))
    {
        let _ = writeln!(html, "<li><a href=\"{}\">{}</a></li>", attr(f), escape(f));
    }
    html.push_str("</ul>\n");
    let timelines: Vec<&String> = files
        .iter()
        .filter(|f| f.starts_with("timeline-") && f.ends_with(".json"))
        .collect();
    if !timelines.is_empty() {
        html.push_str(
            "<p>The <code>timeline-*.json</code> files are Chrome trace-event timelines of each run's first ops: \
             open <a href=\"https://ui.perfetto.dev\">ui.perfetto.dev</a> and drop a file on it (\"Open trace file\"; \
             the file is read in the browser, not uploaded), or load it in <code>chrome://tracing</code>.</p>\n",
        );
    }
    html.push_str("<p class=\"foot\">Written by edgesim. Every number on this page is a simulator prediction unless a file says it was measured.</p>\n</body>\n</html>\n");
    std::fs::write(dir.join("index.html"), html).map_err(io)
}

const CSS: &str =
    "body{font-family:sans-serif;max-width:1800px;margin:1em auto;padding:0 1em;color:#222}
h1{font-size:1.6em}h2{margin-top:1.6em;border-bottom:1px solid #ccc}
table{border-collapse:collapse;font-size:.85em;margin:.5em 0}
td,th{border:1px solid #ddd;padding:2px 6px;white-space:nowrap}th{background:#f3f3f3}
td.n{text-align:right;font-variant-numeric:tabular-nums}
.scroll{overflow-x:auto;max-height:32em;overflow-y:auto}
figure{margin:1em 0}img{max-width:100%;border:1px solid #eee}figcaption{font-size:.85em;color:#555}
code{background:#f5f5f5;padding:0 3px}.foot{color:#777;font-size:.85em}
";

/// Files under `dir` (relative paths with `/`), sorted; `index.html` itself left out.
fn list_files(dir: &Path) -> std::io::Result<Vec<String>> {
    let mut out = Vec::new();
    let mut stack = vec![(dir.to_path_buf(), String::new())];
    while let Some((d, prefix)) = stack.pop() {
        for entry in std::fs::read_dir(&d)? {
            let entry = entry?;
            let name = entry.file_name().to_string_lossy().into_owned();
            let rel = if prefix.is_empty() {
                name.clone()
            } else {
                format!("{prefix}/{name}")
            };
            if entry.file_type()?.is_dir() {
                stack.push((entry.path(), rel));
            } else if rel != "index.html" {
                out.push(rel);
            }
        }
    }
    // Top-level files first, then each subfolder's.
    out.sort_by(|a, b| (a.contains('/'), a).cmp(&(b.contains('/'), b)));
    Ok(out)
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// A relative link: every path character that is not plainly safe percent-encoded.
fn attr(path: &str) -> String {
    let mut out = String::new();
    for b in path.bytes() {
        if b.is_ascii_alphanumeric() || b"-_./".contains(&b) {
            out.push(b as char);
        } else {
            let _ = write!(out, "%{b:02X}");
        }
    }
    out
}

/// Inline Markdown: `code` spans; the rest escaped.
fn inline(s: &str) -> String {
    let mut out = String::new();
    for (i, part) in s.split('`').enumerate() {
        if i % 2 == 1 {
            let _ = write!(out, "<code>{}</code>", escape(part));
        } else {
            out.push_str(&escape(part));
        }
    }
    out
}

/// The Markdown edgesim writes (headings, paragraphs, `-` lists, pipe tables, `code`) as HTML.
pub fn markdown_to_html(md: &str) -> String {
    let mut html = String::new();
    let lines: Vec<&str> = md.lines().collect();
    let mut i = 0;
    while i < lines.len() {
        let line = lines[i];
        if line.trim().is_empty() {
            i += 1;
        } else if let Some(h) = line.strip_prefix('#') {
            let level = 1 + h.chars().take_while(|&c| c == '#').count();
            let text = h.trim_start_matches('#').trim();
            let _ = writeln!(html, "<h{level}>{}</h{level}>", inline(text));
            i += 1;
        } else if line.starts_with('|') {
            let mut rows = Vec::new();
            while i < lines.len() && lines[i].starts_with('|') {
                rows.push(table_cells(lines[i]));
                i += 1;
            }
            let right: Vec<bool> = rows
                .get(1)
                .map(|r| r.iter().map(|c| c.trim().ends_with(':')).collect())
                .unwrap_or_default();
            html.push_str("<div class=\"scroll\"><table>\n");
            for (ri, cells) in rows.iter().enumerate() {
                if ri == 1 {
                    continue;
                }
                html.push_str("<tr>");
                for (ci, c) in cells.iter().enumerate() {
                    let (tag, class) = if ri == 0 {
                        ("th", "")
                    } else if right.get(ci).copied().unwrap_or(false) {
                        ("td", " class=\"n\"")
                    } else {
                        ("td", "")
                    };
                    let _ = write!(html, "<{tag}{class}>{}</{tag}>", inline(c.trim()));
                }
                html.push_str("</tr>\n");
            }
            html.push_str("</table></div>\n");
        } else if line.starts_with("- ") {
            html.push_str("<ul>\n");
            while i < lines.len() && lines[i].starts_with("- ") {
                let _ = writeln!(html, "<li>{}</li>", inline(&lines[i][2..]));
                i += 1;
            }
            html.push_str("</ul>\n");
        } else {
            let mut para = Vec::new();
            while i < lines.len()
                && !lines[i].trim().is_empty()
                && !lines[i].starts_with('#')
                && !lines[i].starts_with('|')
                && !lines[i].starts_with("- ")
            {
                para.push(lines[i]);
                i += 1;
            }
            let _ = writeln!(html, "<p>{}</p>", inline(&para.join(" ")));
        }
    }
    html
}

/// The cells of a pipe-table row; `\|` is a literal bar.
fn table_cells(line: &str) -> Vec<String> {
    let inner = line.trim().trim_start_matches('|');
    let inner = inner.strip_suffix('|').unwrap_or(inner);
    let mut cells = vec![String::new()];
    let mut chars = inner.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\\' if chars.peek() == Some(&'|') => {
                chars.next();
                if let Some(s) = cells.last_mut() {
                    s.push('|');
                }
            }
            '|' => cells.push(String::new()),
            c => {
                if let Some(s) = cells.last_mut() {
                    s.push(c)
                }
            }
        }
    }
    cells
}

/// A CSV file as an HTML table (numbers right-aligned), at most [`MAX_TABLE_ROWS`] rows.
fn csv_to_html(text: &str) -> String {
    let mut html = String::from("<div class=\"scroll\"><table>\n");
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(false)
        .flexible(true)
        .from_reader(text.as_bytes());
    let mut shown = 0usize;
    let mut total = 0usize;
    for (ri, rec) in reader.records().enumerate() {
        let Ok(rec) = rec else { break };
        if ri > 0 {
            total += 1;
            if shown >= MAX_TABLE_ROWS {
                continue;
            }
            shown += 1;
        }
        html.push_str("<tr>");
        for c in rec.iter() {
            if ri == 0 {
                let _ = write!(html, "<th>{}</th>", escape(c));
            } else if c.parse::<f64>().is_ok() {
                let _ = write!(html, "<td class=\"n\">{}</td>", escape(c));
            } else {
                let _ = write!(html, "<td>{}</td>", escape(c));
            }
        }
        html.push_str("</tr>\n");
    }
    html.push_str("</table></div>\n");
    if total > shown {
        let _ = writeln!(
            html,
            "<p>First {shown} of {total} rows; the file has them all.</p>"
        );
    }
    html
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn markdown_tables_headings_and_code_become_html() {
        let md = "# t `x`\n\npara one\nstill one\n\n| a | b |\n| --- | ---: |\n| p\\|q | 1.5 |\n\n- item <b>\n";
        let html = markdown_to_html(md);
        assert!(html.contains("<h1>t <code>x</code></h1>"), "{html}");
        assert!(html.contains("<p>para one still one</p>"), "{html}");
        assert!(html.contains("<th>a</th><th>b</th>"), "{html}");
        assert!(
            html.contains("<td>p|q</td><td class=\"n\">1.5</td>"),
            "{html}"
        );
        assert!(html.contains("<li>item &lt;b&gt;</li>"), "{html}");
    }

    #[test]
    fn the_page_links_every_plot_and_table() {
        let tmp = tempfile::tempdir().unwrap();
        let d = tmp.path();
        std::fs::write(d.join("summary.md"), "# exp\n\n## Headline\n\nlru wins\n").unwrap();
        std::fs::write(d.join("results.csv"), "a,b\nx,1\n").unwrap();
        std::fs::write(d.join("a.svg"), "<svg/>").unwrap();
        std::fs::create_dir(d.join("workload-16-32")).unwrap();
        std::fs::write(d.join("workload-16-32/b.svg"), "<svg/>").unwrap();
        std::fs::write(d.join("timeline-lru-10.json"), "[]").unwrap();
        write_index(d, "exp").unwrap();
        let html = std::fs::read_to_string(d.join("index.html")).unwrap();
        for needle in [
            "<h2>Headline</h2>",
            "<img src=\"a.svg\"",
            "<img src=\"workload-16-32/b.svg\"",
            "<td class=\"n\">1</td>",
            "href=\"timeline-lru-10.json\"",
            "ui.perfetto.dev",
        ] {
            assert!(html.contains(needle), "{needle} missing in {html}");
        }
        assert!(!html.contains("<script"));
    }
}

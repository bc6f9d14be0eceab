//! The report folder as a page (issue 14 item 6) and the headline (item 1): the default
//! comparison's stdout and summary.md open with the headline; index.html links only files that
//! exist, embeds every plot, and renders in a real headless Chromium without console errors.
//! The browser part skips with a message when `chromium` is not installed.

use assert_cmd::Command;
use std::path::Path;

fn compare_default(out: &Path) -> String {
    let o = Command::cargo_bin("edgesim")
        .unwrap()
        .args(["compare", "-q", "-o"])
        .arg(out)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    String::from_utf8(o.stdout).unwrap()
}

#[test]
fn the_first_command_prints_the_headline_first_and_writes_a_page() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("default");
    let stdout = compare_default(&out);
    assert!(stdout.starts_with("Headline (simulated):"), "{stdout}");
    assert!(stdout.contains("is the fastest policy"), "{stdout}");
    let md = std::fs::read_to_string(out.join("summary.md")).unwrap();
    let head = md.find("## Headline").expect("summary.md has a headline");
    let runs = md.find("## Every run").expect("summary.md lists every run");
    assert!(head < runs);
    let html = std::fs::read_to_string(out.join("index.html")).unwrap();
    assert!(!html.contains("<script"));
    let mut imgs = 0;
    for part in html.split("src=\"").skip(1) {
        let src = &part[..part.find('"').unwrap()];
        assert!(out.join(src).is_file(), "index.html embeds missing {src}");
        imgs += 1;
    }
    let svgs = std::fs::read_dir(&out)
        .unwrap()
        .filter(|e| {
            e.as_ref()
                .unwrap()
                .path()
                .extension()
                .is_some_and(|x| x == "svg")
        })
        .count();
    assert_eq!(imgs, svgs, "every plot is on the page");
    for part in html.split("href=\"").skip(1) {
        let href = &part[..part.find('"').unwrap()];
        if !href.starts_with("http") {
            assert!(out.join(href).is_file(), "index.html links missing {href}");
        }
    }
}

#[test]
fn the_page_renders_in_headless_chromium_without_console_errors() {
    let Ok(which) = std::process::Command::new("which").arg("chromium").output() else {
        eprintln!("skipped: no `which`");
        return;
    };
    if !which.status.success() {
        eprintln!("skipped: chromium is not installed (apt-get install chromium)");
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("default");
    compare_default(&out);
    let shot = tmp.path().join("page.png");
    let o = std::process::Command::new("chromium")
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--enable-logging=stderr",
            "--v=0",
            "--window-size=1400,2000",
        ])
        .arg(format!("--screenshot={}", shot.display()))
        .arg(format!("file://{}", out.join("index.html").display()))
        .output()
        .unwrap();
    let log = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "{log}");
    assert!(!log.contains("CONSOLE"), "console output: {log}");
    assert!(std::fs::metadata(&shot).unwrap().len() > 10_000, "{log}");
}

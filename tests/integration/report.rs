//! The build report, looked at in a real browser: headless Chromium renders the quickstart's
//! report; the page must run its script without a console error and name every piece and
//! every check. Chromium is required: the tests fail, never skip, without it (`.ci/run`
//! installs it).

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::support::{finished, repo, runtime, stderr, target_tmp, Project};

const CHROMIUM: &str = "/usr/bin/chromium";

/// What the browser made of a page.
struct Rendered {
    dom: String,
    /// Console messages and uncaught errors (the page logs nothing when all is well).
    console: Vec<String>,
}

fn chromium(page: &Path, mode: &[String]) -> (String, String) {
    assert!(
        Path::new(CHROMIUM).exists(),
        "headless Chromium ({CHROMIUM}) is required by the report tests: `apt-get install -y chromium` (.ci/run installs it)"
    );
    let profile = tempfile::tempdir_in(target_tmp()).unwrap();
    let out = Command::new("timeout")
        .arg("120")
        .arg(CHROMIUM)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--enable-logging=stderr",
            "--v=0",
            // Nothing may be fetched: a name to resolve is a page that is not self-contained.
            "--host-resolver-rules=MAP * ~NOTFOUND",
        ])
        .arg(format!("--user-data-dir={}", profile.path().display()))
        .args(mode)
        .arg(format!("file://{}", page.display()))
        .output()
        .expect("chromium runs");
    assert!(out.status.success(), "chromium failed: {}", stderr(&out));
    (String::from_utf8_lossy(&out.stdout).into_owned(), stderr(&out))
}

fn render(page: &Path) -> Rendered {
    let (dom, log) = chromium(page, &["--dump-dom".to_string()]);
    let console = log.lines().filter(|l| l.contains(":CONSOLE") || l.contains("Uncaught")).map(str::to_string).collect();
    Rendered { dom, console }
}

/// The page's text, tags removed and entities decoded (enough for names and messages).
fn text_of(html: &str) -> String {
    let mut text = String::new();
    let mut in_tag = false;
    for c in html.chars() {
        match c {
            '<' => in_tag = true,
            '>' => {
                in_tag = false;
                text.push(' ');
            }
            _ if !in_tag => text.push(c),
            _ => {}
        }
    }
    text.replace("&lt;", "<").replace("&gt;", ">").replace("&quot;", "\"").replace("&#39;", "'").replace("&amp;", "&")
}

/// Every validate report.json in a project's cache.
fn validate_reports(root: &Path) -> Vec<serde_json::Value> {
    reports_named(root, "report.json")
}

/// Every cache entry's record called `name`.
fn reports_named(root: &Path, name: &str) -> Vec<serde_json::Value> {
    fn walk(dir: &Path, name: &str, found: &mut Vec<PathBuf>) {
        for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
            let path = entry.path();
            if path.is_dir() {
                walk(&path, name, found);
            } else if path.file_name().is_some_and(|n| n == name) && path.parent().is_some_and(|p| p.ends_with("out")) {
                found.push(path);
            }
        }
    }
    let mut found = Vec::new();
    walk(&root.join(".exportctl/cache"), name, &mut found);
    found.iter().map(|p| serde_json::from_slice(&std::fs::read(p).unwrap()).unwrap()).collect()
}

/// The test itself must be able to fail: a page with a script error is caught.
#[test]
fn a_script_error_in_a_page_is_caught() {
    let dir = tempfile::tempdir_in(target_tmp()).unwrap();
    let page = dir.path().join("broken.html");
    std::fs::write(&page, "<html><body><p>hi</p><script>document.body.dataset.x = 1; undefinedFunction();</script></body></html>").unwrap();
    let rendered = render(&page);
    assert!(rendered.console.iter().any(|l| l.contains("Uncaught ReferenceError")), "{:?}", rendered.console);
}

#[test]
fn the_quickstarts_report_renders_with_every_piece_and_check() {
    runtime();
    let project = Project::example("quickstart");
    let out = project.run(&["build"]);
    assert!(out.status.success(), "{}", stderr(&out));
    // The summary line says where the report is.
    let summary = stderr(&out).lines().last().unwrap_or_default().to_string();
    assert!(summary.contains("; report: ") && summary.ends_with(".exportctl/reports/latest.html"), "{summary}");
    let latest = project.path().join(".exportctl/reports/latest.html");
    let html = std::fs::read_to_string(&latest).unwrap();
    let stamped: Vec<_> = std::fs::read_dir(latest.parent().unwrap())
        .unwrap()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().starts_with("build-"))
        .collect();
    assert_eq!(stamped.len(), 1);

    // Self-contained: nothing to fetch.
    for needle in ["src=\"http", "href=\"http", "url(http", "@import", "<link", "<script src"] {
        assert!(!html.contains(needle), "the page refers to something outside it: {needle}");
    }

    let rendered = render(&latest);
    assert!(rendered.console.is_empty(), "console messages: {:#?}", rendered.console);
    assert!(rendered.dom.contains("data-ready=\"true\""), "the page's script did not run to its end");
    let text = text_of(&rendered.dom);
    for piece in ["classifier/classifier", "classifier/encoder"] {
        assert!(text.contains(piece), "the page does not name piece {piece}");
    }
    let reports = validate_reports(project.path());
    assert_eq!(reports.len(), 2);
    for report in &reports {
        for half in ["native", "reusable"] {
            for check in report[half]["checks"].as_array().unwrap() {
                let name = check["name"].as_str().unwrap();
                assert!(text.contains(name), "the page does not name check {name}");
                assert!(text.contains(check["message"].as_str().unwrap()), "the page lacks the message of {name}");
            }
        }
    }
    // The LiteRT piece's checks and its model.tflite.
    let litert = reports_named(project.path(), "litert-report.json");
    assert_eq!(litert.len(), 1, "the quickstart's classifier has the LiteRT format");
    for check in litert[0]["checks"].as_array().unwrap() {
        assert!(text.contains(check["message"].as_str().unwrap()), "the page lacks the LiteRT check {}", check["name"]);
    }
    assert!(text.contains("model.tflite") && text.contains("quantize = none") && text.contains("FULLY_CONNECTED"), "no LiteRT facts");
    for shown in ["Timeline", "Plan", "Steps", "classifier:export", "thread 1", "atol 1e-5 + rtol 1e-5·|ref|", "model.md", "LiteRT"] {
        assert!(text.contains(shown), "the page does not show `{shown}`");
    }
    // Phases of the steps that ran, from their step-finished data.
    assert!(text.contains("worker start") || text.contains("load"), "no phase shown");
    // The link to model.md resolves from the reports folder.
    let link =
        html.split("href=\"").skip(1).map(|s| &s[..s.find('"').unwrap()]).find(|l| l.ends_with("model.md")).expect("a link to model.md");
    assert!(latest.parent().unwrap().join(link).is_file(), "{link} does not resolve");

    // A picture of it: in target/, and in docs/ when asked (EXPORTCTL_UPDATE_SCREENSHOT=1).
    let shot = target_tmp().join("quickstart-report.png");
    chromium(&latest, &[format!("--screenshot={}", shot.display()), "--window-size=1200,1500".into(), "--hide-scrollbars".into()]);
    let png = std::fs::read(&shot).unwrap();
    assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n");
    if std::env::var_os("EXPORTCTL_UPDATE_SCREENSHOT").is_some() {
        std::fs::copy(&shot, repo().join("docs/report.png")).unwrap();
    }

    // A no-op build writes no report; a build that runs a step writes a new one, and the JSON
    // stream says where.
    let before = std::fs::read(&latest).unwrap();
    let out = project.run(&["build"]);
    assert!(!stderr(&out).contains("report:"), "{}", stderr(&out));
    assert_eq!(std::fs::read(&latest).unwrap(), before);
    std::fs::write(project.path().join("docs/classifier.md"), "Changed.\n").unwrap();
    let (out, events) = project.build_json(&[]);
    assert!(out.status.success());
    assert!(finished(&events)["report"].as_str().unwrap().ends_with(".exportctl/reports/latest.html"), "{}", finished(&events));
    assert_ne!(std::fs::read(&latest).unwrap(), before);
}

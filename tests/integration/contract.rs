//! The names both languages and the docs share (`src/contract.rs`) have one source: the
//! worker's `contract.py` and the tables of `docs/validation.md` and `docs/lints.md` are
//! generated from it. `EXPORTCTL_BLESS=1 cargo test --test integration contract` rewrites them.

use exportctl::contract::{self, Lint, Loader, CHECKS};

use crate::support::repo;

/// Compares `path`'s text with `expected`, or writes it under `EXPORTCTL_BLESS=1`.
fn generated(path: &str, expected: &str) {
    let path = repo().join(path);
    if std::env::var_os("EXPORTCTL_BLESS").is_some() {
        std::fs::write(&path, expected).unwrap();
        return;
    }
    let actual = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        actual == expected,
        "{} is out of date with src/contract.rs: run `EXPORTCTL_BLESS=1 cargo test --test integration contract`",
        path.display()
    );
}

/// `text` with the part between `<!-- NAME:begin -->` and `<!-- NAME:end -->` replaced.
fn with_section(text: &str, name: &str, body: &str) -> String {
    let begin = format!("<!-- {name}:begin (generated from src/contract.rs) -->\n");
    let end = format!("<!-- {name}:end -->");
    let (Some(b), Some(e)) = (text.find(&begin), text.find(&end)) else { panic!("no `{begin}` … `{end}` section") };
    format!("{}{begin}{body}{}", &text[..b], &text[e..])
}

#[test]
fn the_worker_contract_is_generated_from_the_rust_tables() {
    generated("src/runtime/worker/exportctl_worker/contract.py", &contract::worker_contract_py());
}

#[test]
fn docs_validation_lists_every_check() {
    let mut table = String::from("| check | run by | proves | when it fails |\n|---|---|---|---|\n");
    for check in CHECKS {
        let loader = match check.loader {
            Loader::Native => "native (C API)",
            Loader::Python => "Python",
            Loader::LiteRt => "LiteRT interpreter",
        };
        table.push_str(&format!("| `{}` | {loader} | {} | {} |\n", check.name, check.proves, check.fix.replace('|', "\\|")));
    }
    let path = "docs/validation.md";
    let text = std::fs::read_to_string(repo().join(path)).unwrap();
    generated(path, &with_section(&text, "checks", &table));
}

#[test]
fn docs_lints_lists_every_code() {
    let mut table = String::from("| code | raised by | means | `--deny warnings` |\n|---|---|---|---|\n");
    for lint in Lint::ALL {
        let (by, denied) = if lint.is_step_warning() { ("a step", "fails the step") } else { ("the build", "not denied") };
        table.push_str(&format!("| `{}` | {by} | {} | {denied} |\n", lint.code(), lint.meaning()));
    }
    let path = "docs/lints.md";
    let text = std::fs::read_to_string(repo().join(path)).unwrap();
    generated(path, &with_section(&text, "lints", &table));
}

#[test]
fn every_check_of_a_real_validation_is_in_the_table() {
    let project = crate::build::built_quickstart();
    let mut seen = 0;
    for entry in walkdir(&project.path().join(".exportctl/cache")) {
        if entry.file_name().is_some_and(|n| n == "report.json") {
            let report: serde_json::Value = serde_json::from_slice(&std::fs::read(&entry).unwrap()).unwrap();
            for (side, loader) in [("native", Loader::Native), ("reusable", Loader::Python)] {
                for check in report[side]["checks"].as_array().into_iter().flatten() {
                    let name = check["name"].as_str().unwrap();
                    assert!(
                        CHECKS.iter().any(|c| c.name.as_str() == name && c.loader == loader),
                        "{side} check `{name}` is not in src/contract.rs"
                    );
                    seen += 1;
                }
            }
        }
    }
    let mut litert = 0;
    for entry in walkdir(&project.path().join(".exportctl/cache")) {
        if entry.file_name().is_some_and(|n| n == "litert-report.json") {
            let report: serde_json::Value = serde_json::from_slice(&std::fs::read(&entry).unwrap()).unwrap();
            for check in report["checks"].as_array().into_iter().flatten() {
                let name = check["name"].as_str().unwrap();
                assert!(
                    CHECKS.iter().any(|c| c.name.as_str() == name && c.loader == Loader::LiteRt),
                    "LiteRT check `{name}` is not in src/contract.rs"
                );
                litert += 1;
            }
        }
    }
    assert!(seen > 20 && litert >= 2, "the quickstart's reports hold {seen} checks and {litert} LiteRT checks");
}

fn walkdir(root: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut files = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
            let path = entry.path();
            if entry.file_type().is_ok_and(|t| t.is_dir()) {
                stack.push(path);
            } else {
                files.push(path);
            }
        }
    }
    files
}

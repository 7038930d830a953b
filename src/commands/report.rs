//! `exportctl report`: the last build's HTML report — its path on stdout, and the page in a
//! browser when someone is there to see it.

use std::io::IsTerminal as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use crate::build_report;
use crate::cli::ReportArgs;
use crate::error::{Error, Result};
use crate::manifest;

use super::Workspace;

pub fn run(workspace: &Workspace, args: &ReportArgs) -> Result<()> {
    let root = project_root(workspace);
    let Some(path) = build_report::latest(&root) else {
        return Err(Error::usage(
            format!("no build report in {}", build_report::dir(&root).display()),
            "run `exportctl build`: every build that runs a step writes one",
        )
        .code("no-report"));
    };
    println!("{}", path.strip_prefix(".").unwrap_or(&path).display());
    if !args.print && std::io::stdout().is_terminal() && display_available() {
        if let Err(e) = open(&path) {
            eprintln!("could not open a browser ({e}): open the file above yourself");
        }
    }
    Ok(())
}

/// The manifest's folder, or the working directory when there is no manifest (the report
/// outlives a broken one).
fn project_root(workspace: &Workspace) -> PathBuf {
    match manifest::locate(&workspace.dir, workspace.manifest_arg.as_deref()) {
        Ok(path) => match path.parent() {
            Some(parent) if !parent.as_os_str().is_empty() => parent.to_path_buf(),
            _ => PathBuf::from("."),
        },
        Err(_) => workspace.dir.clone(),
    }
}

/// Whether a browser window can be shown: always on macOS and Windows, with an X11 or
/// Wayland display elsewhere (not over a plain SSH session).
fn display_available() -> bool {
    if cfg!(any(target_os = "macos", windows)) {
        return true;
    }
    ["DISPLAY", "WAYLAND_DISPLAY"].iter().any(|v| std::env::var_os(v).is_some_and(|d| !d.is_empty()))
}

/// Hands the page to the desktop's opener.
fn open(path: &Path) -> std::io::Result<()> {
    let mut command = if cfg!(target_os = "macos") {
        Command::new("open")
    } else if cfg!(windows) {
        let mut c = Command::new("cmd");
        c.args(["/C", "start", ""]);
        c
    } else {
        Command::new("xdg-open")
    };
    let status = command.arg(path).stdin(Stdio::null()).stdout(Stdio::null()).stderr(Stdio::null()).status()?;
    if status.success() {
        Ok(())
    } else {
        Err(std::io::Error::other(format!("the opener exited with {status}")))
    }
}

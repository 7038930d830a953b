//! What a command can fail with, and the exit code each maps to (SPEC §5):
//! 0 success, 1 a step failed, 2 bad usage or manifest.

use std::io::IsTerminal as _;

use crate::manifest::{LoadError, ManifestErrors};

#[derive(Debug)]
pub enum Error {
    /// The manifest is invalid: every error, with spans. Exit 2.
    Manifest(ManifestErrors),
    /// Bad usage or an unusable project (no manifest, unknown target). Exit 2.
    Usage(miette::Report),
    /// A step (or the runtime it needs) failed. Exit 1.
    Failed(miette::Report),
}

impl Error {
    pub fn usage(message: impl Into<String>, help: impl Into<String>) -> Error {
        Error::Usage(miette::Report::new(miette::MietteDiagnostic::new(message.into()).with_help(help.into())))
    }

    pub fn failed(message: impl Into<String>, help: Option<String>) -> Error {
        let mut d = miette::MietteDiagnostic::new(message.into());
        if let Some(help) = help {
            d = d.with_help(help);
        }
        Error::Failed(miette::Report::new(d))
    }

    pub fn exit_code(&self) -> u8 {
        match self {
            Error::Manifest(_) | Error::Usage(_) => 2,
            Error::Failed(_) => 1,
        }
    }

    /// Prints the error to stderr: miette's graphical report on a terminal, the plain
    /// `file:line:col` form otherwise (logs, CI, tests).
    pub fn print(&self) {
        let fancy = std::io::stderr().is_terminal();
        match self {
            Error::Manifest(errors) => {
                if fancy {
                    for report in errors.reports() {
                        eprintln!("{report:?}");
                    }
                } else {
                    eprint!("{}", errors.render_plain());
                }
                let n = errors.errors.len();
                eprintln!(
                    "error: {} has {n} error{}; nothing was run",
                    errors.source.name,
                    if n == 1 { "" } else { "s" }
                );
            }
            Error::Usage(report) | Error::Failed(report) => {
                if fancy {
                    eprintln!("{report:?}");
                } else {
                    eprintln!("error: {report}");
                    if let Some(help) = report.help() {
                        eprintln!("  help: {help}");
                    }
                }
            }
        }
    }
}

impl From<LoadError> for Error {
    fn from(e: LoadError) -> Self {
        match e {
            LoadError::Invalid(errors) => Error::Manifest(errors),
            LoadError::NotFound { dir } => Error::usage(
                format!("no Export.toml or export.yaml in {}", dir.display()),
                "run `exportctl init` to write a starting manifest, or pass -C DIR / -m FILE",
            ),
            LoadError::Unreadable { path, error } => Error::usage(
                format!("cannot read {}: {error}", path.display()),
                "check the path given to -m / -C",
            ),
        }
    }
}

/// A runtime that cannot be had fails the command like a failed step (exit 1).
impl From<crate::runtime::RuntimeError> for Error {
    fn from(e: crate::runtime::RuntimeError) -> Self {
        let help = e.help();
        Error::failed(e.to_string(), help)
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

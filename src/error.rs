//! What a command can fail with, and the exit code each maps to:
//!
//! | code | when |
//! |------|------|
//! | 0    | success |
//! | 1    | a step failed, or `--locked` found an output that differs from `Export.lock` |
//! | 2    | bad usage, or an invalid or missing manifest: nothing was run |
//! | 130  | interrupted (Ctrl-C), also in `--watch` |
//!
//! Every error has a stable `code` (`invalid-manifest`, `step-failed`, `lock-mismatch`, …), a
//! message and a help. It prints three ways from the same data: miette's graphical report when
//! colour is on, the plain `file:line:col: error[code]: message` form when it is off (logs, CI,
//! `--color never`), and one JSON object on stdout when the command's output is JSON.
//!
//! **Errors one way.** Every error type below the commands derives `thiserror::Error` (its
//! message) and `miette::Diagnostic` (its help, read with [`help_text`]); only `ManifestErrors`,
//! a list of spanned diagnostics, renders itself. Such an error becomes a [`Problem`] through
//! [`Error::failed_from`] / [`Error::usage_from`], and a step's `StepError` through
//! `StepError::from_diagnostic`. An I/O error is kept as the `#[source]` of a variant that names
//! its path, and its text also stays in the message, because messages are printed flat, on one
//! line, here and in JSON.

use miette::Diagnostic;
use serde_json::{json, Value};

use crate::manifest::{LoadError, ManifestErrors};
use crate::terminal;

#[derive(Debug)]
pub enum Error {
    /// The manifest is invalid: every error, with spans. Exit 2.
    Manifest(ManifestErrors),
    /// Bad usage or an unusable project (no manifest, unknown target). Exit 2.
    Usage(Problem),
    /// A step, the lock check or the runtime failed. Exit 1.
    Failed(Problem),
    /// Ctrl-C. Exit 130, as a shell reports a process ended by SIGINT.
    Interrupted,
}

/// An error other than the manifest's: what, what to do, and a stable code for tools.
#[derive(Debug, Clone)]
pub struct Problem {
    pub code: &'static str,
    pub message: String,
    pub help: Option<String>,
    /// Already part of the command's JSON output (a report's `error`): printing it again
    /// would put a second document on stdout.
    pub shown: bool,
}

/// How a command prints: text for people, or JSON for tools (`--format json`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Format {
    #[default]
    Text,
    Json,
}

impl Error {
    pub fn usage(message: impl Into<String>, help: impl Into<String>) -> Error {
        Error::Usage(Problem { code: "usage", message: message.into(), help: Some(help.into()), shown: false })
    }

    pub fn failed(message: impl Into<String>, help: Option<String>) -> Error {
        Error::Failed(Problem { code: "failed", message: message.into(), help, shown: false })
    }

    /// Bad usage, said by a typed error: its message and its help. Exit 2.
    pub fn usage_from(e: &dyn Diagnostic) -> Error {
        Error::Usage(Problem { code: "usage", message: e.to_string(), help: help_text(e), shown: false })
    }

    /// A failure, said by a typed error: its message and its help. Exit 1.
    pub fn failed_from(e: &dyn Diagnostic) -> Error {
        Error::failed(e.to_string(), help_text(e))
    }

    /// The same error under a more precise code (`unknown-target`, `lock-mismatch`, …).
    pub fn code(self, code: &'static str) -> Error {
        match self {
            Error::Usage(p) => Error::Usage(Problem { code, ..p }),
            Error::Failed(p) => Error::Failed(Problem { code, ..p }),
            other => other,
        }
    }

    pub fn exit_code(&self) -> u8 {
        match self {
            Error::Manifest(_) | Error::Usage(_) => 2,
            Error::Failed(_) => 1,
            Error::Interrupted => 130,
        }
    }

    /// The stable code tools can match on.
    pub fn code_name(&self) -> &'static str {
        match self {
            Error::Manifest(_) => "invalid-manifest",
            Error::Usage(p) | Error::Failed(p) => p.code,
            Error::Interrupted => "interrupted",
        }
    }

    /// One line saying what went wrong.
    pub fn message(&self) -> String {
        match self {
            Error::Manifest(errors) => {
                let n = errors.errors.len();
                format!("{} has {n} error{}; nothing was run", errors.source.name, if n == 1 { "" } else { "s" })
            }
            Error::Usage(p) | Error::Failed(p) => p.message.clone(),
            Error::Interrupted => "interrupted".into(),
        }
    }

    pub fn help(&self) -> Option<String> {
        match self {
            Error::Manifest(_) => None,
            Error::Usage(p) | Error::Failed(p) => p.help.clone(),
            Error::Interrupted => Some("what finished is cached; run the build again to go on".into()),
        }
    }

    /// Prints the error where its command's output goes: JSON on stdout, else text on stderr.
    /// The same error, marked as already in the command's JSON output.
    pub fn shown(self) -> Error {
        match self {
            Error::Usage(p) => Error::Usage(Problem { shown: true, ..p }),
            Error::Failed(p) => Error::Failed(Problem { shown: true, ..p }),
            other => other,
        }
    }

    pub fn print(&self, format: Format) {
        let shown = matches!(self, Error::Usage(p) | Error::Failed(p) if p.shown);
        match format {
            Format::Json if shown => {}
            Format::Json => println!("{}", self.to_json()),
            Format::Text => eprint!("{}", self.render(terminal::color())),
        }
    }

    /// The error for people: miette's graphical report with colour, the plain form without.
    pub fn render(&self, color: bool) -> String {
        let graphical = |report: &miette::Report| {
            let handler = miette::GraphicalReportHandler::new_themed(miette::GraphicalTheme::unicode());
            let mut out = String::new();
            let _ = handler.render_report(&mut out, report.as_ref());
            out
        };
        let mut out = String::new();
        match self {
            Error::Manifest(errors) => {
                if color {
                    for report in errors.reports() {
                        out.push_str(&graphical(&report));
                    }
                } else {
                    out.push_str(&errors.render_plain());
                }
                out.push_str(&format!("{}: {}\n", terminal::paint_error("error", color), self.message()));
            }
            Error::Usage(_) | Error::Failed(_) | Error::Interrupted => {
                if color {
                    let mut d = miette::MietteDiagnostic::new(self.message());
                    if let Some(help) = self.help() {
                        d = d.with_help(help);
                    }
                    out.push_str(&graphical(&miette::Report::new(d)));
                } else {
                    out.push_str(&format!("error: {}\n", self.message()));
                    if let Some(help) = self.help() {
                        out.push_str(&format!("  help: {help}\n"));
                    }
                }
            }
        }
        out
    }

    /// One JSON object: `event` ("error"), `code`, `message`, `help`, `exit_code`, the
    /// location of the first problem (`file`, `line`, `col`) when there is one, and for a
    /// manifest every problem in `diagnostics`.
    pub fn to_json(&self) -> Value {
        let mut value = json!({
            "event": "error",
            "code": self.code_name(),
            "message": self.message(),
            "help": self.help(),
            "exit_code": self.exit_code(),
        });
        if let Error::Manifest(errors) = self {
            let diagnostics: Vec<Value> = errors
                .errors
                .iter()
                .map(|e| {
                    let (line, col) = errors.source.line_col(e.span.start);
                    json!({
                        "severity": "error", "code": e.code, "message": e.message, "help": e.help,
                        "file": errors.source.name, "line": line, "col": col,
                    })
                })
                .collect();
            if let Some(first) = diagnostics.first() {
                for key in ["file", "line", "col"] {
                    value[key] = first[key].clone();
                }
            }
            value["diagnostics"] = Value::Array(diagnostics);
        }
        value
    }
}

impl std::fmt::Display for Error {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message())
    }
}

impl From<LoadError> for Error {
    fn from(e: LoadError) -> Self {
        match e {
            LoadError::Invalid(errors) => Error::Manifest(errors),
            other => Error::usage_from(&other).code("no-manifest"),
        }
    }
}

/// A runtime that cannot be had fails the command like a failed step (exit 1).
impl From<crate::runtime::RuntimeError> for Error {
    fn from(e: crate::runtime::RuntimeError) -> Self {
        Error::failed_from(&e).code("runtime-unusable")
    }
}

/// An error's help, as text: the one way to read it (miette's [`Diagnostic::help`]).
pub fn help_text(e: &dyn Diagnostic) -> Option<String> {
    e.help().map(|help| help.to_string())
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exit_codes_follow_the_table() {
        assert_eq!(Error::usage("u", "h").exit_code(), 2);
        assert_eq!(Error::failed("f", None).exit_code(), 1);
        assert_eq!(Error::failed("f", None).code("lock-mismatch").exit_code(), 1);
        assert_eq!(Error::Interrupted.exit_code(), 130);
    }

    #[test]
    fn json_errors_carry_code_message_and_help() {
        let value = Error::usage("unknown target `x`", "run `exportctl plan`").code("unknown-target").to_json();
        assert_eq!(value["code"], "unknown-target");
        assert_eq!(value["message"], "unknown target `x`");
        assert_eq!(value["help"], "run `exportctl plan`");
        assert_eq!(value["exit_code"], 2);
    }

    #[test]
    fn an_unreadable_manifest_is_a_usage_error_that_keeps_its_cause() {
        let path = std::path::PathBuf::from("missing/Export.toml");
        let load = LoadError::Unreadable { path, source: std::io::Error::from(std::io::ErrorKind::NotFound) };
        let cause = std::error::Error::source(&load).and_then(|s| s.downcast_ref::<std::io::Error>()).map(std::io::Error::kind);
        assert_eq!(cause, Some(std::io::ErrorKind::NotFound));
        let error = Error::from(load);
        assert_eq!((error.code_name(), error.exit_code()), ("no-manifest", 2));
        assert!(error.message().starts_with("cannot read missing/Export.toml: "), "{}", error.message());
        assert_eq!(error.help().as_deref(), Some("check the path given to -m / -C"));
    }

    #[test]
    fn without_colour_errors_are_plain() {
        let text = Error::failed("it broke", Some("fix it".into())).render(false);
        assert_eq!(text, "error: it broke\n  help: fix it\n");
    }
}

//! Manifest errors: what is wrong, where (a byte span of the file), and what to do.
//!
//! All of a file's errors are collected and reported together. They render two ways from the
//! same data: miette's graphical report for people at a terminal, and a compact plain form
//! (`file:line:col: error[code]: message`, the source line with carets, the help) used in
//! snapshots and when output is not a terminal.

use std::fmt::Write as _;
use std::sync::Arc;

use miette::{LabeledSpan, MietteDiagnostic, NamedSource, Report};

use super::document::Span;
use super::source::{floor_char_boundary, ManifestSource};

#[derive(Debug, Clone, PartialEq)]
pub struct ManifestError {
    /// A stable kebab-case id (`unknown-key`, `wrong-type`, …), shown as `error[code]`.
    pub code: &'static str,
    pub message: String,
    pub span: Span,
    /// A short text under the carets.
    pub label: String,
    pub help: Option<String>,
}

impl ManifestError {
    pub fn new(code: &'static str, span: Span, message: impl Into<String>) -> Self {
        ManifestError { code, message: message.into(), span, label: String::new(), help: None }
    }

    pub fn label(mut self, label: impl Into<String>) -> Self {
        self.label = label.into();
        self
    }

    pub fn help(mut self, help: impl Into<String>) -> Self {
        self.help = Some(help.into());
        self
    }

    pub fn maybe_help(mut self, help: Option<String>) -> Self {
        self.help = help;
        self
    }
}

/// Every error found in one manifest file.
#[derive(Debug, Clone)]
pub struct ManifestErrors {
    pub source: Arc<ManifestSource>,
    pub errors: Vec<ManifestError>,
}

impl ManifestErrors {
    /// miette reports, one per error, carrying the file so they render with excerpts.
    pub fn reports(&self) -> Vec<Report> {
        self.errors
            .iter()
            .map(|e| {
                let mut d = MietteDiagnostic::new(e.message.clone()).with_code(format!("exportctl::{}", e.code)).with_label(
                    LabeledSpan::new_primary_with_span(
                        (!e.label.is_empty()).then(|| e.label.clone()),
                        e.span.start..e.span.end.max(e.span.start),
                    ),
                );
                if let Some(help) = &e.help {
                    d = d.with_help(help.clone());
                }
                Report::new(d).with_source_code(NamedSource::new(&self.source.name, self.source.text.clone()).with_language(
                    match self.source.format {
                        super::source::Format::Toml => "toml",
                        super::source::Format::Yaml => "yaml",
                    },
                ))
            })
            .collect()
    }

    /// `file:line:col: error[code]: message`, the line with carets, then `help:`.
    pub fn render_plain(&self) -> String {
        let mut out = String::new();
        for e in &self.errors {
            let source = &self.source;
            let (line, col) = source.line_col(e.span.start);
            let _ = writeln!(out, "{}:{line}:{col}: error[{}]: {}", source.name, e.code, e.message);
            let gutter = line.to_string().len();
            let (text, carets) = excerpt(&source.text, e.span.clone());
            let _ = writeln!(out, "{line:>gutter$} | {text}");
            let _ = write!(out, "{:>gutter$} | {carets}", "");
            if e.label.is_empty() {
                out.push('\n');
            } else {
                let _ = writeln!(out, " {}", e.label);
            }
            if let Some(help) = &e.help {
                let _ = writeln!(out, "{:>gutter$} = help: {help}", "");
            }
        }
        out
    }
}

/// The line holding `span.start` (without its line break and trailing blanks) and the carets
/// under the span's part on it: at least one, indented with the line's own tabs so that they
/// line up however tabs are shown.
fn excerpt(text: &str, span: Span) -> (&str, String) {
    let start = floor_char_boundary(text, span.start.min(text.len()));
    let line_start = text[..start].rfind('\n').map_or(0, |i| i + 1);
    let line_end = text[start..].find('\n').map_or(text.len(), |i| start + i);
    let line = text[line_start..line_end].trim_end();
    let shown_end = line_start + line.len();
    let end = floor_char_boundary(text, span.end.clamp(start, shown_end.max(start)));
    let indent: String = text[line_start..start].chars().map(|c| if c == '\t' { '\t' } else { ' ' }).collect();
    let width = text[start..end].chars().count().max(1);
    (line, format!("{indent}{}", "^".repeat(width)))
}

impl std::fmt::Display for ManifestErrors {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let n = self.errors.len();
        write!(f, "{}: {n} error{}", self.source.name, if n == 1 { "" } else { "s" })
    }
}

impl std::error::Error for ManifestErrors {}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use super::*;

    fn render(text: &str, span: Span) -> String {
        let source = ManifestSource::new(PathBuf::from("Export.toml"), "Export.toml".into(), text.into());
        let error = ManifestError::new("test", span, "message").label("label").help("help");
        ManifestErrors { source, errors: vec![error] }.render_plain()
    }

    #[test]
    fn carets_sit_under_the_span() {
        let text = "[project]\nname = \"Vision\"\n";
        let out = render(text, 17..25);
        assert_eq!(out, "Export.toml:2:8: error[test]: message\n2 | name = \"Vision\"\n  |        ^^^^^^^^ label\n  = help: help\n");
    }

    #[test]
    fn windows_line_endings_do_not_shift_the_carets() {
        let text = "[project]\r\nname = \"v\"\r\nversion = \"1\"\r\n";
        let start = text.find("\"1\"").unwrap();
        let out = render(text, start..start + 3);
        assert!(out.contains("3 | version = \"1\"\n  |           ^^^ label"), "{out}");
    }

    #[test]
    fn tabs_before_the_span_are_kept_so_that_carets_line_up() {
        let text = "project:\n\tname: x\n";
        let out = render(text, 10..14);
        assert!(out.contains("2 | \tname: x\n  | \t^^^^ label"), "{out}");
    }

    #[test]
    fn spans_at_the_end_or_inside_a_character_still_render() {
        let text = "name = \"日本\"";
        assert!(render(text, text.len()..text.len()).contains("^ label"));
        assert!(render(text, 9..10).contains("1 | name = \"日本\""));
    }
}

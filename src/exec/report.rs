//! What a build shows: progress for people, JSON events for tools.
//!
//! [`Human`] draws one indicatif line per running step with its elapsed time and prints a
//! line when a step finishes; when stderr is not a terminal it stays quiet except for
//! warnings, failures and the final summary. [`Json`] writes one JSON object per event on
//! stdout and nothing else there (`--format json`). With `-q`, people see warnings and errors
//! only.

use std::collections::HashMap;
use std::io::{IsTerminal as _, Write as _};
use std::sync::Mutex;
use std::time::Duration;

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use serde_json::json;

use super::scheduler::BuildSummary;
use super::step::{StepError, Warning};
use crate::cache::Entry;
use crate::plan::StepId;

/// Where a step's output came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// This project's cache.
    Local,
    /// The shared remote cache.
    Remote,
}

impl Source {
    pub fn as_str(self) -> &'static str {
        match self {
            Source::Local => "local",
            Source::Remote => "remote",
        }
    }
}

pub enum Event<'a> {
    /// A step starts running; `reason` says why it could not come from a cache.
    Started {
        id: &'a StepId,
        key: &'a str,
        reason: &'a str,
    },
    Cached {
        id: &'a StepId,
        key: &'a str,
        entry: &'a Entry,
        source: Source,
    },
    Finished {
        id: &'a StepId,
        key: &'a str,
        entry: &'a Entry,
        seconds: f64,
    },
    Failed {
        id: &'a StepId,
        error: &'a StepError,
        seconds: f64,
    },
    Skipped {
        id: &'a StepId,
        reason: &'a str,
    },
    Warning {
        id: &'a StepId,
        warning: &'a Warning,
    },
}

pub trait Reporter: Sync {
    fn event(&self, event: Event<'_>);
    /// The build's end: its summary, and how it ended past its steps.
    fn summary(&self, summary: &BuildSummary, ending: &Ending<'_>);
    /// A line of context (e.g. "waiting for the project lock"): stderr for people, an event for tools.
    fn note(&self, message: &str);
    /// A warning about the build rather than one step's output (the remote cache is down…).
    fn build_warning(&self, warning: &Warning) {
        let help = warning.help.as_ref().map(|h| format!("\n  help: {h}")).unwrap_or_default();
        self.note(&format!("warning[{}]: {}{help}", warning.code, warning.message));
    }
    /// A step's outputs are being downloaded from the remote cache: `done` of `total` bytes.
    fn transfer(&self, _id: &StepId, _done: u64, _total: u64) {}
    /// `--watch`: `state` is `watching` (with the watched paths) or `rebuilding` (with the
    /// changed paths that triggered it).
    fn watch(&self, state: &str, paths: &[std::path::PathBuf]);
}

/// How a build ended past its steps: the error the command fails with (a failed step, the
/// `--locked` check, Ctrl-C), if any, and where the build report was written.
#[derive(Clone, Copy, Default)]
pub struct Ending<'a> {
    pub error: Option<&'a crate::error::Error>,
    pub report: Option<&'a std::path::Path>,
}

/// The one-line summary: `9 steps: 6 ran, 3 cached, 0 failed in 12.3s`.
pub fn summary_line(summary: &BuildSummary) -> String {
    let mut line =
        format!("{} steps: {} ran, {} cached, {} failed", summary.results.len(), summary.ran(), summary.cached(), summary.failed());
    if summary.skipped() > 0 {
        line.push_str(&format!(", {} skipped", summary.skipped()));
    }
    line.push_str(&format!(" in {}", seconds(summary.seconds)));
    if summary.cancelled {
        line.push_str(" (cancelled)");
    }
    line
}

/// A path as the user would type it from where they stand.
fn shown(path: &std::path::Path) -> String {
    path.strip_prefix(".").unwrap_or(path).display().to_string()
}

fn seconds(s: f64) -> String {
    if s < 1.0 {
        format!("{:.0}ms", s * 1000.0)
    } else {
        format!("{s:.1}s")
    }
}

/// For people.
pub struct Human {
    progress: Option<MultiProgress>,
    bars: Mutex<HashMap<String, ProgressBar>>,
    verbose: u8,
    /// `--explain`: say why each step runs.
    explain: bool,
}

impl Human {
    pub fn new(verbose: u8) -> Human {
        let tty = std::io::stderr().is_terminal() && !crate::terminal::quiet();
        Human {
            progress: tty.then(|| MultiProgress::with_draw_target(ProgressDrawTarget::stderr())),
            bars: Mutex::new(HashMap::new()),
            verbose,
            explain: false,
        }
    }

    /// Says why each step runs (`--explain`; `-v` does too).
    pub fn explaining(mut self, explain: bool) -> Human {
        self.explain = explain;
        self
    }

    fn line(&self, text: &str) {
        match &self.progress {
            Some(mp) => {
                let _ = mp.println(text);
            }
            None => eprintln!("{text}"),
        }
    }

    fn finish_bar(&self, id: &StepId) {
        if let Some(bar) = self.bars.lock().expect("bars").remove(&id.to_string()) {
            bar.finish_and_clear();
            if let Some(mp) = &self.progress {
                mp.remove(&bar);
            }
        }
    }
}

impl Reporter for Human {
    fn event(&self, event: Event<'_>) {
        let tty = self.progress.is_some();
        match event {
            Event::Started { id, reason, .. } => {
                if self.explain || self.verbose > 0 {
                    self.line(&format!("   running {id}: {reason}"));
                }
                if let Some(mp) = &self.progress {
                    let bar = mp.add(ProgressBar::new_spinner());
                    let template =
                        if crate::terminal::color() { "{spinner:.cyan} {msg} {elapsed:.dim}" } else { "{spinner} {msg} {elapsed}" };
                    bar.set_style(ProgressStyle::with_template(template).expect("valid template"));
                    bar.set_message(id.to_string());
                    bar.enable_steady_tick(Duration::from_millis(100));
                    self.bars.lock().expect("bars").insert(id.to_string(), bar);
                }
            }
            Event::Finished { id, entry, seconds: s, .. } => {
                self.finish_bar(id);
                if tty || self.verbose > 0 {
                    let detail = if entry.outcome.summary.is_empty() { String::new() } else { format!(": {}", entry.outcome.summary) };
                    self.line(&format!("       ran {id} in {}{detail}", seconds(s)));
                }
                if self.verbose > 0 && !entry.outcome.phases.is_empty() {
                    let mut phases: Vec<String> =
                        entry.outcome.phases.iter().map(|(name, ms)| format!("{name} {}", seconds(*ms as f64 / 1000.0))).collect();
                    if let Some(peak) = entry.outcome.peak_memory {
                        phases.push(format!("worker peak memory {}", crate::cache::limit::format_size(peak)));
                    }
                    self.line(&format!("           {}", phases.join(", ")));
                }
            }
            Event::Cached { id, source, .. } => {
                if self.verbose > 0 {
                    let from = if source == Source::Remote { " (remote cache)" } else { "" };
                    self.line(&format!("    cached {id}{from}"));
                }
            }
            Event::Failed { id, error, .. } => {
                self.finish_bar(id);
                let mut text =
                    format!("{}: {id} failed: {}", crate::terminal::paint_error("error", crate::terminal::color()), error.message);
                if let Some(help) = &error.help {
                    text.push_str(&format!("\n  help: {}", help.replace('\n', "\n        ")));
                }
                self.line(&text);
            }
            Event::Skipped { id, reason } => {
                if self.verbose > 0 {
                    self.line(&format!("   skipped {id} ({reason})"));
                }
            }
            Event::Warning { id, warning } => {
                let mut text = format!(
                    "{}: {id}: {}",
                    crate::terminal::paint_warning(&format!("warning[{}]", warning.code), crate::terminal::color()),
                    warning.message
                );
                if let Some(help) = &warning.help {
                    text.push_str(&format!("\n  help: {help}"));
                }
                self.line(&text);
            }
        }
    }

    fn summary(&self, summary: &BuildSummary, ending: &Ending<'_>) {
        if let Some(mp) = &self.progress {
            let _ = mp.clear();
        }
        if crate::terminal::quiet() {
            return;
        }
        match ending.report {
            Some(report) => eprintln!("{}; report: {}", summary_line(summary), shown(report)),
            None => eprintln!("{}", summary_line(summary)),
        }
    }

    fn note(&self, message: &str) {
        if !crate::terminal::quiet() {
            self.line(message);
        }
    }

    /// Downloads of 16 MB or more get a bar with their bytes and speed.
    fn transfer(&self, id: &StepId, done: u64, total: u64) {
        const SHOWN_FROM: u64 = 16 << 20;
        let Some(mp) = &self.progress else { return };
        if total < SHOWN_FROM {
            return;
        }
        let key = format!("download {id}");
        let mut bars = self.bars.lock().expect("bars");
        if done >= total {
            if let Some(bar) = bars.remove(&key) {
                bar.finish_and_clear();
                mp.remove(&bar);
            }
            return;
        }
        let bar = bars.entry(key).or_insert_with(|| {
            let bar = mp.add(ProgressBar::new(total));
            bar.set_style(
                ProgressStyle::with_template("{spinner:.cyan} {msg} {bytes}/{total_bytes} ({bytes_per_sec}) {elapsed:.dim}")
                    .expect("valid template"),
            );
            bar.set_message(format!("{id}: downloading from the remote cache"));
            bar.enable_steady_tick(Duration::from_millis(100));
            bar
        });
        bar.set_position(done);
    }

    fn watch(&self, state: &str, paths: &[std::path::PathBuf]) {
        if crate::terminal::quiet() {
            return;
        }
        match state {
            "watching" => eprintln!("watching {} files… (Ctrl-C to stop)", paths.len()),
            _ => {
                let names: Vec<String> = paths.iter().map(|p| p.display().to_string()).collect();
                eprintln!("\nchanged: {} — rebuilding", names.join(", "));
            }
        }
    }
}

/// For tools: one JSON object per line on stdout.
pub struct Json {
    out: Mutex<std::io::Stdout>,
}

impl Json {
    pub fn new() -> Json {
        Json { out: Mutex::new(std::io::stdout()) }
    }

    fn emit(&self, value: serde_json::Value) {
        let mut out = self.out.lock().expect("stdout");
        let _ = writeln!(out, "{value}");
        let _ = out.flush();
    }
}

impl Default for Json {
    fn default() -> Self {
        Json::new()
    }
}

impl Reporter for Json {
    fn event(&self, event: Event<'_>) {
        let value = match event {
            Event::Started { id, key, reason } => {
                json!({ "event": "step-started", "step": id, "kind": id.kind, "key": key, "reason": reason })
            }
            Event::Cached { id, key, entry, source } => json!({
                "event": "step-cached", "step": id, "kind": id.kind, "key": key, "source": source.as_str(),
                "digest": entry.digest, "outputs": entry.files, "summary": entry.outcome.summary,
            }),
            Event::Finished { id, key, entry, seconds } => json!({
                "event": "step-finished", "step": id, "kind": id.kind, "key": key, "source": "ran",
                "duration_ms": (seconds * 1000.0).round() as u64,
                "phases": entry.outcome.phases,
                "peak_memory": entry.outcome.peak_memory,
                "digest": entry.digest, "outputs": entry.files, "summary": entry.outcome.summary,
            }),
            Event::Failed { id, error, seconds } => json!({
                "event": "step-failed", "step": id, "kind": id.kind,
                "duration_ms": (seconds * 1000.0).round() as u64,
                "diagnostics": [{ "severity": "error", "message": error.message, "help": error.help }],
            }),
            Event::Skipped { id, reason } => json!({ "event": "step-skipped", "step": id, "kind": id.kind, "reason": reason }),
            Event::Warning { id, warning } => json!({
                "event": "warning", "step": id, "kind": id.kind,
                "diagnostics": [{ "severity": "warning", "code": warning.code, "message": warning.message, "help": warning.help }],
            }),
        };
        self.emit(value);
    }

    fn summary(&self, summary: &BuildSummary, ending: &Ending<'_>) {
        let error =
            ending.error.map(|e| json!({ "code": e.code_name(), "message": e.message(), "help": e.help(), "exit_code": e.exit_code() }));
        self.emit(json!({
            "event": "build-finished",
            "success": ending.error.is_none(),
            "error": error,
            "report": ending.report,
            "steps": summary.results.len(),
            "ran": summary.ran(),
            "cached": summary.cached(),
            "failed": summary.failed(),
            "skipped": summary.skipped(),
            "duration_ms": (summary.seconds * 1000.0).round() as u64,
            "cancelled": summary.cancelled,
            "python_started": summary.python_started,
            "native_loaded": summary.native_loaded,
            "worker_pid": summary.worker_pid,
            "remote": summary.remote.as_ref().map(|r| json!({
                "hits": r.hits, "downloaded_bytes": r.downloaded, "uploaded_entries": r.uploaded_entries, "uploaded_bytes": r.uploaded,
            })),
        }));
    }

    fn note(&self, message: &str) {
        self.emit(json!({ "event": "note", "message": message }));
    }

    fn build_warning(&self, warning: &Warning) {
        self.emit(json!({
            "event": "warning", "step": null,
            "diagnostics": [{ "severity": "warning", "code": warning.code, "message": warning.message, "help": warning.help }],
        }));
    }

    fn watch(&self, state: &str, paths: &[std::path::PathBuf]) {
        self.emit(json!({ "event": "watch", "state": state, "paths": paths }));
    }
}

/// Reports nothing (benchmarks, library use).
pub struct Silent;

impl Reporter for Silent {
    fn event(&self, _: Event<'_>) {}
    fn summary(&self, _: &BuildSummary, _: &Ending<'_>) {}
    fn note(&self, _: &str) {}
    fn watch(&self, _: &str, _: &[std::path::PathBuf]) {}
}

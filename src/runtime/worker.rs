//! The persistent Python worker: one process per build, reused by every Python step.
//!
//! Importing TensorFlow and Keras costs seconds; a worker that stays up pays it once per build
//! (and once per `--watch` session). The protocol is newline-delimited JSON over the child's
//! stdin/stdout, specified in `docs/worker-protocol.md`. Its code (`src/runtime/worker/`: an entry
//! script and the `exportctl_worker` package, one module per method) ships inside the binary and
//! is written to `$EXPORTCTL_HOME/worker/<digest>/` when first needed. The worker's stderr is its
//! log: kept (the last lines) to explain a failure, shown live with `-v`.
//!
//! Failure modes each get their own [`WorkerError`]: a Python exception (the worker lives on),
//! a request past its timeout (the worker is killed), the worker dying (crash, OOM kill,
//! segfault). After the last two, [`Worker::call`] starts a fresh process on the next request.

use std::collections::VecDeque;
use std::io::{BufRead as _, BufReader, Write as _};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, ExitStatus, Stdio};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde::Deserialize;
use serde_json::{json, Value};

use super::{home, Provider, Runtime};

/// One of the worker's files: its path relative to the worker's folder, and its text, from
/// the same path under `src/runtime/worker/`.
macro_rules! source {
    ($path:literal) => {
        ($path, include_str!(concat!("worker/", $path)))
    };
}

/// The worker's Python files, shipped inside the binary: the entry script (first: it is what
/// `python -u` runs) and the `exportctl_worker` package it imports from its own folder.
const SOURCES: &[(&str, &str)] = &[
    source!("exportctl-worker.py"),
    source!("exportctl_worker/__init__.py"),
    source!("exportctl_worker/protocol.py"),
    source!("exportctl_worker/errors.py"),
    source!("exportctl_worker/phases.py"),
    source!("exportctl_worker/modules.py"),
    source!("exportctl_worker/params.py"),
    source!("exportctl_worker/usercode.py"),
    source!("exportctl_worker/introspect.py"),
    source!("exportctl_worker/kerasio.py"),
    source!("exportctl_worker/backends.py"),
    source!("exportctl_worker/recipe.py"),
    source!("exportctl_worker/export.py"),
    source!("exportctl_worker/outline.py"),
    source!("exportctl_worker/slicing.py"),
    source!("exportctl_worker/trace.py"),
    source!("exportctl_worker/validate.py"),
    source!("exportctl_worker/contract.py"),
    source!("exportctl_worker/checks.py"),
    source!("exportctl_worker/consumers.py"),
    source!("exportctl_worker/litert.py"),
    source!("exportctl_worker/debug.py"),
    source!("exportctl_worker/canonical.py"),
];

/// The Keras 3 backend the worker always runs (`KERAS_BACKEND`).
pub const KERAS_BACKEND: &str = "tensorflow";

/// How many lines of the worker's stderr are kept to explain a failure.
const LOG_LINES: usize = 200;

/// An error of one request.
#[derive(Debug, thiserror::Error)]
pub enum WorkerError {
    /// The Python code raised (or reported a structured error); the worker is still usable.
    #[error("{kind}: {message}")]
    Python { kind: String, message: String, traceback: Vec<String>, data: Value },
    /// The request took longer than the timeout; the worker was stopped.
    #[error("the Python worker did not answer within {}s while running {step}", .timeout.as_secs())]
    Timeout { step: String, timeout: Duration, log_tail: Vec<String> },
    /// The worker process ended while a request was in flight.
    #[error("the Python worker {how} while running {step}")]
    Died { step: String, how: String, log_tail: Vec<String> },
    /// The worker's Python files could not be written into `dir`.
    #[error("the Python worker could not be written to {} ({source}) while running {step}", .dir.display())]
    Unwritable { step: String, dir: PathBuf, source: std::io::Error },
    /// The worker's Python could not be started.
    #[error("the Python worker could not be started with {} ({source}) while running {step}", .python.display())]
    Unstartable { step: String, python: PathBuf, source: std::io::Error },
    /// The worker answered something that is not the protocol.
    #[error("the Python worker broke the protocol while running {step}: {detail}")]
    Protocol { step: String, detail: String },
    /// There is no runtime to start the worker in (the managed one could not be installed…):
    /// the runtime's error, as its message and help.
    #[error("{message}")]
    Runtime { message: String, help: Option<String> },
}

/// The help says what to do next, with what the worker left: its traceback or its last log lines.
impl miette::Diagnostic for WorkerError {
    fn help(&self) -> Option<Box<dyn std::fmt::Display + '_>> {
        self.advice().map(|help| Box::new(help) as Box<dyn std::fmt::Display>)
    }
}

impl WorkerError {
    fn advice(&self) -> Option<String> {
        match self {
            WorkerError::Python { traceback, data, .. } => {
                let mut lines: Vec<String> = Vec::new();
                if let Some(hint) = data.get("hint").and_then(Value::as_str) {
                    lines.push(hint.to_string());
                }
                if !traceback.is_empty() {
                    lines.push(format!("Python traceback (innermost last):\n  {}", traceback.join("\n  ")));
                }
                (!lines.is_empty()).then(|| lines.join("\n"))
            }
            WorkerError::Timeout { log_tail, .. } => {
                Some(format!("raise `runtime.timeout` in the manifest if the step needs longer{}", tail_text(log_tail)))
            }
            WorkerError::Died { log_tail, .. } => {
                Some(format!("the next step starts a fresh worker; the worker's last output:{}", tail_text(log_tail)))
            }
            WorkerError::Unwritable { .. } => Some(
                "check the permissions of $EXPORTCTL_HOME (default ~/.cache/exportctl), or set EXPORTCTL_HOME to a writable folder"
                    .to_owned(),
            ),
            WorkerError::Unstartable { .. } => Some("check that it is a Python 3 executable".to_owned()),
            WorkerError::Protocol { .. } => None,
            WorkerError::Runtime { help, .. } => help.clone(),
        }
    }
}

fn tail_text(lines: &[String]) -> String {
    if lines.is_empty() {
        return String::new();
    }
    let start = lines.len().saturating_sub(12);
    format!("\n  {}", lines[start..].join("\n  "))
}

/// How the worker is started.
#[derive(Debug, Clone)]
pub struct WorkerOptions {
    pub timeout: Duration,
    /// Show the worker's log on stderr as it comes (`-v`); TensorFlow's own C++ logs too with 2.
    pub verbose: u8,
}

impl Default for WorkerOptions {
    fn default() -> Self {
        WorkerOptions { timeout: Duration::from_secs(900), verbose: 0 }
    }
}

/// A live worker process.
struct Process {
    child: Child,
    /// `None` once closed (the worker exits at its end).
    stdin: Option<ChildStdin>,
    responses: Receiver<String>,
    /// Its `TMPDIR`, removed when it ends.
    tmp: Option<PathBuf>,
}

impl Drop for Process {
    fn drop(&mut self) {
        if let Some(tmp) = &self.tmp {
            let _ = std::fs::remove_dir_all(tmp);
        }
    }
}

/// A handle on the worker: starts the process on first use and again after it died.
pub struct Worker {
    /// The runtime it starts in, found (or installed) at the first start.
    runtime: Arc<Provider>,
    options: WorkerOptions,
    process: Option<Process>,
    next_id: u64,
    log: Arc<Mutex<VecDeque<String>>>,
    /// How many processes were started (a warm worker stays at 1).
    pub starts: u32,
    /// How long starting the last process took (until it could take requests).
    pub last_start: Option<Duration>,
}

#[derive(Deserialize)]
struct Response {
    id: Option<u64>,
    ok: bool,
    #[serde(default)]
    result: Value,
    #[serde(default)]
    error: Option<ErrorBody>,
}

#[derive(Deserialize)]
struct ErrorBody {
    #[serde(rename = "type")]
    kind: String,
    message: String,
    #[serde(default)]
    traceback: Vec<String>,
    #[serde(default)]
    data: Value,
}

impl Worker {
    /// A worker for `runtime`. No process is started until the first request.
    pub fn new(runtime: &Runtime, options: WorkerOptions) -> Worker {
        Worker::lazy(Arc::new(Provider::ready(runtime.clone())), options)
    }

    /// A worker whose runtime is found when it first starts.
    pub fn lazy(runtime: Arc<Provider>, options: WorkerOptions) -> Worker {
        Worker { runtime, options, process: None, next_id: 1, log: Arc::new(Mutex::new(VecDeque::new())), starts: 0, last_start: None }
    }

    /// The process id of the running worker, if one runs.
    pub fn pid(&self) -> Option<u32> {
        self.process.as_ref().map(|p| p.child.id())
    }

    /// The running worker's resident memory in bytes (`None` when it does not run).
    pub fn resident_memory(&self) -> Option<u64> {
        resident_memory(self.pid()?)
    }

    /// Ends the process if it holds more than `limit` bytes; the next request starts a fresh
    /// one. Returns whether it did.
    pub fn recycle_above(&mut self, limit: u64) -> bool {
        if self.resident_memory().is_some_and(|rss| rss > limit) {
            self.stop();
            return true;
        }
        false
    }

    /// Sends one request and waits for its answer. `step` names what runs, for messages.
    pub fn call(&mut self, method: &str, params: Value, step: &str) -> Result<Value, WorkerError> {
        if self.process.is_none() {
            let started = Instant::now();
            self.process = Some(self.spawn(step)?);
            self.last_start = Some(started.elapsed());
        }
        let id = self.next_id;
        self.next_id += 1;
        let line = json!({ "id": id, "method": method, "params": params }).to_string();
        let process = self.process.as_mut().expect("started above");
        let sent = match process.stdin.as_mut() {
            Some(stdin) => writeln!(stdin, "{line}").and_then(|()| stdin.flush()).is_ok(),
            None => false,
        };
        if !sent {
            return Err(self.died(step));
        }
        let process = self.process.as_mut().expect("started above");
        match process.responses.recv_timeout(self.options.timeout) {
            Ok(line) => {
                let response: Response = match serde_json::from_str(&line) {
                    Ok(r) => r,
                    Err(e) => {
                        self.stop();
                        return Err(WorkerError::Protocol { step: step.to_string(), detail: format!("{e}: {line}") });
                    }
                };
                if response.id != Some(id) {
                    // An answer to an earlier request that timed out on our side cannot
                    // happen (that worker was killed); anything else is a protocol error.
                    self.stop();
                    return Err(WorkerError::Protocol {
                        step: step.to_string(),
                        detail: format!("expected the answer to request {id}, got {line}"),
                    });
                }
                match (response.ok, response.error) {
                    (true, _) => Ok(response.result),
                    (false, Some(e)) => Err(WorkerError::Python { kind: e.kind, message: e.message, traceback: e.traceback, data: e.data }),
                    (false, None) => Err(WorkerError::Protocol { step: step.to_string(), detail: "an error without details".into() }),
                }
            }
            Err(RecvTimeoutError::Timeout) => {
                self.stop();
                Err(WorkerError::Timeout { step: step.to_string(), timeout: self.options.timeout, log_tail: self.log_tail() })
            }
            Err(RecvTimeoutError::Disconnected) => Err(self.died(step)),
        }
    }

    /// Stops the worker. It has answered every request and holds nothing that needs
    /// flushing (its outputs are written before it answers), so it is killed rather than
    /// left to spend a second or two unloading TensorFlow at exit.
    pub fn shutdown(&mut self) {
        self.stop();
    }

    fn stop(&mut self) {
        if let Some(mut process) = self.process.take() {
            let _ = process.child.kill();
            let _ = process.child.wait();
        }
    }

    fn log_tail(&self) -> Vec<String> {
        self.log.lock().map(|l| l.iter().cloned().collect()).unwrap_or_default()
    }

    fn died(&mut self, step: &str) -> WorkerError {
        let status = self.process.take().map(|mut p| {
            drop(p.stdin.take());
            // The pipe closed: the process is gone or going; reap it.
            let deadline = Instant::now() + Duration::from_secs(2);
            loop {
                match p.child.try_wait() {
                    Ok(Some(status)) => break Some(status),
                    _ if Instant::now() > deadline => {
                        let _ = p.child.kill();
                        break p.child.wait().ok();
                    }
                    _ => std::thread::sleep(Duration::from_millis(10)),
                }
            }
        });
        // Let the stderr reader catch the last lines.
        std::thread::sleep(Duration::from_millis(50));
        WorkerError::Died { step: step.to_string(), how: describe_exit(status.flatten()), log_tail: self.log_tail() }
    }

    fn spawn(&mut self, step: &str) -> Result<Process, WorkerError> {
        let dir = worker_dir();
        let script = write_sources(&dir).map_err(|source| WorkerError::Unwritable { step: step.to_string(), dir, source })?;
        let python = self
            .runtime
            .get()
            .map_err(|e| WorkerError::Runtime { message: e.to_string(), help: crate::error::help_text(&e) })?
            .python
            .clone();
        let mut command = Command::new(&python);
        command
            .arg("-u")
            .arg(&script)
            .env("TF_CPP_MIN_LOG_LEVEL", if self.options.verbose >= 2 { "0" } else { "3" })
            .env("PYTHONUNBUFFERED", "1")
            .env("PYTHONDONTWRITEBYTECODE", "1")
            .env_remove("TF_USE_LEGACY_KERAS")
            // Keras 3 runs on TensorFlow in the worker, whatever the user's shell or
            // ~/.keras/keras.json select: a model trained on JAX or PyTorch is exported by
            // TensorFlow. (The entry script sets it again, for a worker started by hand.)
            .env("KERAS_BACKEND", KERAS_BACKEND)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        // TensorFlow's autograph writes generated files into the temporary folder and removes
        // them at exit; a killed worker leaves them. Its own scratch folder goes with it.
        let tmp = crate::scratch::process_dir(&home().join("scratch")).map(|dir| dir.join(format!("worker-{}", self.starts)));
        if let Ok(tmp) = &tmp {
            crate::scratch::clean_stale(&home().join("scratch"));
            let _ = std::fs::remove_dir_all(tmp);
            if std::fs::create_dir_all(tmp).is_ok() {
                command.env("TMPDIR", tmp);
            }
        }
        let mut child = super::process::spawn_bound(command).map_err(|source| WorkerError::Unstartable {
            step: step.to_string(),
            python: python.clone(),
            source,
        })?;
        self.starts += 1;
        let stdin = child.stdin.take().expect("piped");
        let stdout = child.stdout.take().expect("piped");
        let stderr = child.stderr.take().expect("piped");
        let (tx, responses) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if !line.trim().is_empty() && tx.send(line).is_err() {
                    break;
                }
            }
        });
        let log = self.log.clone();
        let echo = self.options.verbose >= 1;
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if echo {
                    eprintln!("  python | {line}");
                }
                if let Ok(mut log) = log.lock() {
                    if log.len() == LOG_LINES {
                        log.pop_front();
                    }
                    log.push_back(line);
                }
            }
        });
        Ok(Process { child, stdin: Some(stdin), responses, tmp: tmp.ok() })
    }
}

impl Drop for Worker {
    fn drop(&mut self) {
        self.shutdown();
    }
}

/// A process's resident memory: `VmRSS` in `/proc/<pid>/status` on Linux.
#[cfg(target_os = "linux")]
fn resident_memory(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    Some(line.split_whitespace().nth(1)?.parse::<u64>().ok()? * 1024)
}

/// A process's resident memory, from `ps` where there is no `/proc` (macOS): called once
/// before a step, so a process start is cheap enough.
#[cfg(not(target_os = "linux"))]
fn resident_memory(pid: u32) -> Option<u64> {
    let out = std::process::Command::new("ps").args(["-o", "rss=", "-p", &pid.to_string()]).output().ok()?;
    Some(String::from_utf8_lossy(&out.stdout).trim().parse::<u64>().ok()? * 1024)
}

fn describe_exit(status: Option<ExitStatus>) -> String {
    use std::os::unix::process::ExitStatusExt as _;
    match status {
        None => "stopped answering".to_string(),
        Some(s) => match (s.code(), s.signal()) {
            (_, Some(9)) => "was killed (SIGKILL: out of memory?)".to_string(),
            (_, Some(11)) => "crashed (segmentation fault)".to_string(),
            (_, Some(6)) => "crashed (aborted)".to_string(),
            (_, Some(sig)) => format!("was killed by signal {sig}"),
            (Some(code), _) => format!("exited with status {code}"),
            (None, None) => "ended".to_string(),
        },
    }
}

/// The worker's source, written once per content into the exportctl home.
/// Where the worker's files are written: a folder named after their digest.
fn worker_dir() -> PathBuf {
    home().join("worker").join(&source_digest()[..16])
}

/// Writes the worker's files into `dir` (those already there are left as they are: `dir` is
/// named after their digest) and returns the path of the entry script, which `python -u` runs.
/// The tests write them to a temporary folder the same way.
pub fn write_sources(dir: &Path) -> std::io::Result<PathBuf> {
    for (name, text) in SOURCES {
        let path = dir.join(name);
        if !path.is_file() {
            crate::atomic::write_file(&path, text.as_bytes())?;
        }
    }
    Ok(dir.join(SOURCES[0].0))
}

/// The digest of the worker's source: part of every cache key.
pub fn source_digest() -> &'static str {
    static DIGEST: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    DIGEST.get_or_init(|| {
        let all: String = SOURCES.iter().map(|(name, text)| format!("{name}\0{text}\0")).collect();
        crate::hash::digest_str(&all)
    })
}

/// The path of the worker's source file (written if needed), for diagnostics.
pub fn script_path() -> std::io::Result<PathBuf> {
    write_sources(&worker_dir())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every Python file under `src/runtime/worker/` but its tests ships: a module missing from
    /// `SOURCES` would only fail when the worker imports it.
    #[test]
    fn sources_list_every_file_of_the_worker() {
        fn walk(root: &Path, dir: &Path, out: &mut Vec<String>) {
            for entry in std::fs::read_dir(dir).unwrap() {
                let path = entry.unwrap().path();
                let name = path.file_name().unwrap().to_string_lossy().into_owned();
                if path.is_dir() {
                    if name != "tests" && name != "__pycache__" {
                        walk(root, &path, out);
                    }
                } else if name.ends_with(".py") {
                    out.push(path.strip_prefix(root).unwrap().to_string_lossy().replace('\\', "/"));
                }
            }
        }
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("src").join("runtime").join("worker");
        let mut on_disk = Vec::new();
        walk(&root, &root, &mut on_disk);
        on_disk.sort();
        let mut listed: Vec<String> = SOURCES.iter().map(|(name, _)| name.to_string()).collect();
        listed.sort();
        assert_eq!(listed, on_disk);
        assert_eq!(SOURCES[0].0, "exportctl-worker.py", "the entry script comes first");
    }

    #[test]
    fn write_sources_writes_every_file_and_returns_the_entry_script() {
        let dir = tempfile::tempdir().unwrap();
        let entry = write_sources(dir.path()).unwrap();
        assert_eq!(entry, dir.path().join("exportctl-worker.py"));
        for (name, text) in SOURCES {
            assert_eq!(std::fs::read_to_string(dir.path().join(name)).unwrap(), *text, "{name}");
        }
    }
}

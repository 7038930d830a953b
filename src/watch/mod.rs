//! `exportctl build --watch`: build, then rebuild whenever an input changes.
//!
//! **What is watched** follows the plan: the manifest and every file or folder a step reads
//! (models, checkpoints, custom-object files, docs bodies, samples), recomputed after each
//! build, so inputs added by a manifest edit are watched from then on. Files are watched
//! through their parent folder (editors save by writing a temporary file and renaming it over
//! the original, which a watch on the file itself would lose); events for other files in that
//! folder — `dist/`, `.exportctl/`, editor backups — are ignored.
//!
//! **When to rebuild**: a burst of events (an editor save is several; a training loop writes a
//! model file for seconds) becomes one rebuild, [`Debounce`]: once no event came for a quiet
//! window, and the changed files' size and mtime held still across one more short wait (a file
//! still being written is not built from).
//!
//! **What stays warm**: the [`Builder`] keeps the Python worker and the runtime between
//! rebuilds, and the native library stays loaded in the process: a rebuild pays for its steps
//! only. A failed build, or an invalid manifest, is reported and watching goes on; the last good
//! outputs stay in `dist/`.

mod debounce;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::time::{Duration, Instant};

use notify::{RecursiveMode, Watcher as _};

use crate::build::Builder;
use crate::error::{Error, Format, Result};

pub use debounce::Debounce;

/// No event for this long ends a burst.
const QUIET: Duration = Duration::from_millis(80);
/// Then the changed files must keep their size and mtime this long.
const SETTLE: Duration = Duration::from_millis(40);

/// What the watcher listens to, and which paths matter.
#[derive(Default)]
struct WatchSet {
    /// Files and folders whose changes trigger a rebuild.
    inputs: BTreeSet<PathBuf>,
    /// Folders registered with the OS watcher, and how.
    registered: BTreeSet<(PathBuf, bool)>,
}

impl WatchSet {
    /// Watches `inputs` from now on (and stops watching what is no longer an input).
    fn update(&mut self, watcher: &mut notify::RecommendedWatcher, inputs: Vec<PathBuf>) {
        let inputs: BTreeSet<PathBuf> = inputs.into_iter().map(|p| absolute(&p)).collect();
        let mut wanted = BTreeSet::new();
        for input in &inputs {
            if input.is_dir() {
                wanted.insert((input.clone(), true));
            }
            if let Some(parent) = input.parent() {
                wanted.insert((parent.to_path_buf(), false));
            }
        }
        for (path, recursive) in self.registered.difference(&wanted) {
            let _ = watcher.unwatch(path);
            let _ = recursive;
        }
        for (path, recursive) in wanted.difference(&self.registered) {
            let mode = if *recursive { RecursiveMode::Recursive } else { RecursiveMode::NonRecursive };
            let _ = watcher.watch(path, mode);
        }
        self.registered = wanted;
        self.inputs = inputs;
    }

    /// Whether a change of `path` concerns an input.
    fn concerns(&self, path: &Path) -> bool {
        let path = absolute(path);
        self.inputs.iter().any(|input| path == *input || (input.is_dir() && path.starts_with(input)))
    }
}

fn absolute(path: &Path) -> PathBuf {
    std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf())
}

/// Builds, then watches and rebuilds until Ctrl-C, which ends it with [`Error::Interrupted`]
/// (exit 130). `json`: events instead of text.
pub fn run(builder: &mut Builder<'_>, json: bool) -> Result<()> {
    let (tx, rx) = mpsc::channel();
    let mut watcher = notify::recommended_watcher(move |event| {
        let _ = tx.send(event);
    })
    .map_err(|e| Error::failed(format!("cannot watch files: {e}"), Some(watch_help(&e))))?;
    let mut watched = WatchSet::default();
    loop {
        let inputs = match builder.build() {
            Ok((_, inputs)) => inputs,
            Err(error) => {
                report_error(&error, json);
                // Keep watching what we knew, and the manifest whatever happened to it.
                let mut inputs: Vec<PathBuf> = watched.inputs.iter().cloned().collect();
                if let Ok(path) = crate::manifest::locate(&builder.request.dir, builder.request.manifest.as_deref()) {
                    inputs.push(path);
                }
                inputs
            }
        };
        watched.update(&mut watcher, inputs);
        if builder.cancelled.load(Ordering::SeqCst) {
            break;
        }
        builder.reporter.watch("watching", &watched.inputs.iter().cloned().collect::<Vec<_>>());
        match wait_for_change(&rx, &watched, builder.cancelled) {
            Some(changed) => builder.reporter.watch("rebuilding", &changed),
            None => break,
        }
    }
    builder.shutdown();
    // Watching ends only by Ctrl-C (or the watcher going away): exit 130 like any interrupted command.
    Err(Error::Interrupted)
}

/// A failed build is reported and watching goes on; Ctrl-C is not a failure to report here
/// (the command ends with it).
fn report_error(error: &Error, json: bool) {
    if !matches!(error, Error::Interrupted) {
        error.print(if json { Format::Json } else { Format::Text });
    }
}

/// Waits for a settled burst of changes to the inputs; `None` on Ctrl-C.
fn wait_for_change(rx: &Receiver<notify::Result<notify::Event>>, watched: &WatchSet, cancelled: &std::sync::atomic::AtomicBool) -> Option<Vec<PathBuf>> {
    let mut debounce = Debounce::new(QUIET);
    loop {
        if cancelled.load(Ordering::SeqCst) {
            return None;
        }
        match rx.recv_timeout(Duration::from_millis(25)) {
            Ok(Ok(event)) => {
                if matches!(event.kind, notify::EventKind::Access(_)) {
                    continue;
                }
                for path in event.paths {
                    if watched.concerns(&path) {
                        debounce.add(path, Instant::now());
                    }
                }
            }
            Ok(Err(_)) | Err(RecvTimeoutError::Timeout) => {}
            Err(RecvTimeoutError::Disconnected) => return None,
        }
        if debounce.ready(Instant::now()) {
            let changed = debounce.paths();
            let before: Vec<_> = changed.iter().map(|p| stamp(p)).collect();
            std::thread::sleep(SETTLE);
            let after: Vec<_> = changed.iter().map(|p| stamp(p)).collect();
            if before == after {
                return Some(changed);
            }
            // Still being written: wait for it to finish.
            debounce.touch(Instant::now());
        }
    }
}

fn stamp(path: &Path) -> Option<(u64, std::time::SystemTime)> {
    let meta = std::fs::metadata(path).ok()?;
    Some((meta.len(), meta.modified().ok()?))
}

fn watch_help(error: &notify::Error) -> String {
    match &error.kind {
        notify::ErrorKind::MaxFilesWatch => "the system's inotify watch limit is reached: raise it, e.g. `sysctl fs.inotify.max_user_watches=524288`".into(),
        _ => "check that the project's folders are readable".into(),
    }
}

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
use crate::exec::Warning;

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
    /// Folders the OS refused to watch, already reported (said once, retried at each rebuild).
    refused: BTreeSet<PathBuf>,
}

impl WatchSet {
    /// Watches `inputs` from now on (and stops watching what is no longer an input). Returns a
    /// warning for each folder the OS newly refused to watch: changes there would go unseen.
    fn update(&mut self, watcher: &mut notify::RecommendedWatcher, inputs: Vec<PathBuf>) -> Vec<Warning> {
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
        let mut warnings = Vec::new();
        let mut registered = BTreeSet::new();
        for (path, recursive) in &wanted {
            if self.registered.contains(&(path.clone(), *recursive)) {
                registered.insert((path.clone(), *recursive));
                continue;
            }
            let mode = if *recursive { RecursiveMode::Recursive } else { RecursiveMode::NonRecursive };
            match watcher.watch(path, mode) {
                Ok(()) => {
                    self.refused.remove(path);
                    registered.insert((path.clone(), *recursive));
                }
                // A folder that does not exist yet (a model not written yet) is not a failure:
                // the build that needs it says so.
                Err(e) if matches!(e.kind, notify::ErrorKind::PathNotFound) => {}
                Err(e) if matches!(&e.kind, notify::ErrorKind::Io(io) if io.kind() == std::io::ErrorKind::NotFound) => {}
                Err(e) => {
                    if self.refused.insert(path.clone()) {
                        warnings.push(watch_warning(path, &e));
                    }
                }
            }
        }
        self.registered = registered;
        self.inputs = inputs;
        warnings
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
        for warning in watched.update(&mut watcher, inputs) {
            builder.reporter.build_warning(&warning);
        }
        if builder.cancelled.load(Ordering::SeqCst) {
            break;
        }
        builder.reporter.watch("watching", &watched.inputs.iter().cloned().collect::<Vec<_>>());
        let reporter = builder.reporter;
        let on_error = |e: notify::Error| {
            reporter.build_warning(&Warning {
                code: crate::contract::Lint::WatchFailed,
                message: format!("the file watcher reported an error ({e}): a change may have been missed; save the file again to rebuild"),
                help: Some(watch_help(&e)),
            })
        };
        match wait_for_change(&rx, &watched, builder.cancelled, &on_error) {
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
fn wait_for_change(
    rx: &Receiver<notify::Result<notify::Event>>,
    watched: &WatchSet,
    cancelled: &std::sync::atomic::AtomicBool,
    on_error: &dyn Fn(notify::Error),
) -> Option<Vec<PathBuf>> {
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
            Ok(Err(e)) => on_error(e),
            Err(RecvTimeoutError::Timeout) => {}
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

/// What watch mode says when it cannot watch `path`.
fn watch_warning(path: &Path, error: &notify::Error) -> Warning {
    Warning {
        code: crate::contract::Lint::WatchFailed,
        message: format!("cannot watch {}: {error}; changes there will not trigger a rebuild", path.display()),
        help: Some(watch_help(error)),
    }
}

fn watch_help(error: &notify::Error) -> String {
    match &error.kind {
        notify::ErrorKind::MaxFilesWatch => {
            "the system's inotify watch limit is reached: raise it, e.g. `sysctl fs.inotify.max_user_watches=524288`".into()
        }
        _ => "check that the project's folders are readable".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_inotify_limit_is_named_with_its_fix() {
        let warning = watch_warning(Path::new("/p/models"), &notify::Error::new(notify::ErrorKind::MaxFilesWatch));
        assert_eq!(warning.code, "watch-failed");
        assert!(warning.message.starts_with("cannot watch /p/models: "), "{}", warning.message);
        assert!(warning.message.ends_with("changes there will not trigger a rebuild"), "{}", warning.message);
        assert!(warning.help.unwrap().contains("fs.inotify.max_user_watches"));
    }

    #[test]
    fn a_folder_that_does_not_exist_yet_is_not_a_failure_and_an_existing_one_is_watched() {
        let dir = tempfile::tempdir().unwrap();
        let mut watcher = notify::recommended_watcher(|_| {}).unwrap();
        let mut set = WatchSet::default();
        let missing = dir.path().join("not-yet/net.keras");
        assert!(set.update(&mut watcher, vec![missing.clone()]).is_empty(), "a folder that does not exist yet is not a failure");
        let file = dir.path().join("a.txt");
        std::fs::write(&file, "x").unwrap();
        assert!(set.update(&mut watcher, vec![file.clone(), missing]).is_empty());
        assert!(set.registered.contains(&(dir.path().to_path_buf(), false)));
    }
}

//! One build of a project: load the manifest, plan, lock the project, run the engine,
//! materialise `dist/`, then write (or with `--locked`, check) `Export.lock`.
//!
//! [`Builder`] keeps what outlives one build — the runtime and the warm Python workers — so
//! that `--watch` rebuilds never pay TensorFlow's import again.

use std::path::PathBuf;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::Duration;

use std::collections::HashSet;

use crate::build_report::{self, BuildReport};
use crate::cache::{self, LastKeys, ProjectLock, Remote, RemoteConfig, SourceDigests, Store, Verifier};
use crate::error::{Error, Result};
use crate::exec::{self, BuildOptions, BuildSummary, Ending, Engine, Reporter, Status, StepRunner, Warning};
use crate::lockfile::{self, LockFile};
use crate::manifest::{self, Manifest};
use crate::plan::Plan;
use crate::runtime::pool::WorkerPool;
use crate::runtime::worker::WorkerOptions;
use crate::runtime::{Discovery, Provider};
use crate::steps::TfSteps;

/// What to build and how.
#[derive(Debug, Clone, Default)]
pub struct BuildRequest {
    /// The directory the manifest is looked up in (`-C`), and `-m`.
    pub dir: PathBuf,
    pub manifest: Option<PathBuf>,
    pub targets: Vec<String>,
    /// `--shard K/N`: only this share of the selected pieces.
    pub shard: Option<crate::plan::Shard>,
    pub options: BuildOptions,
    pub locked: bool,
    pub wait_for_lock: bool,
    pub verbose: u8,
    /// Show install progress of the managed runtime.
    pub progress: bool,
}

/// `runtime.python` and `runtime.tensorflow`: a change of either finds the runtime again.
type RuntimeSettingsKey = (Option<PathBuf>, String);

/// Builds a project, once or again and again.
pub struct Builder<'a> {
    pub request: BuildRequest,
    pub reporter: &'a dyn Reporter,
    pub cancelled: &'a AtomicBool,
    /// The runtime settings the provider was made for, and the provider.
    runtime: Option<(RuntimeSettingsKey, Arc<Provider>)>,
    pool: Option<Arc<WorkerPool>>,
    /// The manifest of the last build that got as far as loading one.
    pub manifest: Option<Arc<Manifest>>,
}

/// The files and folders the last plan reads: what `--watch` watches.
pub fn watched_paths(manifest: &Manifest, plan: &Plan, runner: &dyn StepRunner) -> Vec<PathBuf> {
    let mut paths = vec![manifest.source.path.clone()];
    for id in plan.graph.node_weights() {
        if let Ok(inputs) = runner.inputs(id) {
            paths.extend(inputs.files.iter().map(|f| manifest.root.join(f)));
        }
    }
    paths.sort();
    paths.dedup();
    paths
}

impl<'a> Builder<'a> {
    pub fn new(request: BuildRequest, reporter: &'a dyn Reporter, cancelled: &'a AtomicBool) -> Builder<'a> {
        Builder { request, reporter, cancelled, runtime: None, pool: None, manifest: None }
    }

    pub fn load_manifest(&self) -> Result<Manifest> {
        let path = manifest::locate(&self.request.dir, self.request.manifest.as_deref())?;
        let name = path.strip_prefix(".").unwrap_or(&path).display().to_string();
        Ok(manifest::load(&path, &name)?)
    }

    /// The first Python worker's process id, if one runs.
    pub fn worker_pid(&self) -> Option<u32> {
        self.pool.as_ref().and_then(|p| p.pids().first().copied())
    }

    /// Stops the worker.
    pub fn shutdown(&mut self) {
        if let Some(pool) = self.pool.take() {
            pool.shutdown();
        }
    }

    /// One build. `Ok` holds the summary of a build that ran (whether or not steps failed);
    /// `Err` is a build that could not start or whose outcome is an error to report.
    pub fn build(&mut self) -> Result<(BuildSummary, Vec<PathBuf>)> {
        let manifest = Arc::new(self.load_manifest()?);
        self.manifest = Some(manifest.clone());
        let mut plan = Plan::new(&manifest).select(&self.request.targets).map_err(|e| Error::usage_from(&e).code("unknown-target"))?;
        if let Some(shard) = self.request.shard {
            let whole = plan.len();
            plan = plan.shard(shard);
            self.reporter.note(&format!("shard {shard}: {} of the {whole} steps", plan.len()));
        }
        let cache_dir = cache::ensure(&manifest.root).map_err(|e| Error::failed(format!("cannot use .exportctl/: {e}"), None))?;
        let reporter = self.reporter;
        let _lock = ProjectLock::acquire(&cache_dir, self.request.wait_for_lock, |holder| {
            let who = holder.map(|p| format!(" (pid {p})")).unwrap_or_default();
            reporter.note(&format!("waiting for another exportctl build in this project{who} to finish…"));
        })
        .map_err(|e| {
            let busy = matches!(e, cache::lock::LockError::Busy { .. });
            Error::failed(e.to_string(), busy.then(|| "wait for it, or run without --no-wait".into()))
        })?;
        cache::mark(&cache_dir).map_err(|e| Error::failed(format!("cannot write in {}: {e}", cache_dir.display()), None))?;
        let store = Store::open(&cache_dir).map_err(|e| Error::failed(format!("cannot open the cache: {e}"), None))?;
        let _ = store.clean_tmp();
        let limit = cache::limit::resolve(manifest.cache.max_size).map_err(|e| Error::usage(e, "write a size such as 20GB"))?;

        // The runtime's identity is known once per session without Python (a probe remembered,
        // or the managed runtime's lock); the runtime itself is found, or installed, only when
        // a step runs in it.
        let settings_key = (manifest.runtime.python.clone(), manifest.runtime.tensorflow.clone());
        let runtime = match &self.runtime {
            Some((key, provider)) if *key == settings_key => provider.clone(),
            _ => {
                let discovery = Discovery { install: true, progress: self.request.progress };
                let provider = Arc::new(Provider::new(&manifest.runtime, &manifest.root, discovery).map_err(Error::from)?);
                self.pool = None;
                self.runtime = Some((settings_key, provider.clone()));
                provider
            }
        };
        if let Some(found) = runtime.found() {
            crate::runtime::managed::record_use(found, &manifest.root);
        }
        let options = WorkerOptions { timeout: Duration::from_secs(manifest.runtime.timeout_secs), verbose: self.request.verbose };
        let size = workers_for(&manifest, self.request.options.jobs);
        if self.pool.as_ref().is_some_and(|p| p.size() != size) {
            self.pool = None;
        }
        let pool = self.pool.get_or_insert_with(|| Arc::new(WorkerPool::lazy(runtime.clone(), options, size))).clone();
        let steps = TfSteps::with_pool(manifest.clone(), runtime.clone(), pool, self.request.verbose);

        let verifier = Arc::new(Verifier::new(&cache_dir));
        let remote = RemoteConfig::resolve(&manifest.cache)
            .map_err(|e| Error::usage(e, "set it to the cache's base URL, e.g. http://cache.internal:8080/exportctl"))?
            .map(|config| Arc::new(Remote::new(config, verifier.clone())));
        let mut last_keys = LastKeys::load(&cache_dir);
        let mut sources = SourceDigests::load(&cache_dir);
        let starts_before = steps.pool().starts();
        // A cache entry found changed on disk is evicted and its step runs again: a second
        // pass rebuilds exactly what was lost (a third would mean the disk keeps changing).
        let mut pass = 0;
        let (mut summary, materialized) = loop {
            pass += 1;
            let engine = Engine {
                root: &manifest.root,
                store: &store,
                verifier: &verifier,
                last_keys: &last_keys.keys,
                remote: remote.as_ref(),
                runner: &steps,
                tool: cache::key::tool_version(),
                runtime: runtime.fingerprint(),
                reporter,
                cancelled: self.cancelled,
            };
            let summary = exec::execute(&engine, &plan, &mut sources, &self.request.options);
            // Anything in tmp/ now is not ours (this build's entries are committed or dropped): a
            // worker orphaned by a killed build may have written there until it noticed.
            let _ = store.clean_tmp();
            let materialized = exec::dist::materialize(
                &cache_dir,
                &manifest.root,
                &manifest.project.out_dir,
                manifest.project.version,
                &summary,
                &store,
                &verifier,
            )
            .map_err(|e| Error::failed(format!("cannot write {}: {e}", manifest.out_dir().display()), None))?;
            let corrupted: Vec<&(crate::plan::StepId, cache::Corruption)> =
                summary.corrupted.iter().chain(&materialized.corrupted).collect();
            for (id, corruption) in &corrupted {
                reporter.event(exec::Event::Warning {
                    id,
                    warning: &Warning {
                        code: crate::contract::Lint::CorruptCacheEntry,
                        message: format!("the cached output of {id} changed on disk ({corruption}): evicted, the step runs again"),
                        help: Some("`exportctl cache verify` checks every entry; a disk or a program writing into .exportctl/ (or through a dist/ link) changed it".into()),
                    },
                });
            }
            if corrupted.is_empty() || summary.cancelled || pass == 3 {
                break (summary, materialized);
            }
        };
        if let Some(remote) = &remote {
            remote.finish_uploads();
            for warning in remote.take_warnings() {
                reporter.build_warning(&warning);
            }
            let stats = remote.stats();
            summary.remote = Some(stats.clone());
            if stats.hits + stats.uploaded_entries > 0 && self.request.verbose > 0 {
                reporter.note(&format!(
                    "remote cache {}: {} entr{} downloaded ({}), {} uploaded ({})",
                    remote.config().display_url(),
                    stats.hits,
                    if stats.hits == 1 { "y" } else { "ies" },
                    cache::limit::format_size(stats.downloaded),
                    stats.uploaded_entries,
                    cache::limit::format_size(stats.uploaded)
                ));
            }
        }
        summary.python_started = steps.pool().starts() > starts_before;
        summary.worker_pid = steps.pool().pids().first().copied();
        summary.native_loaded = steps.native_loaded();
        let _ = sources.save();
        let mut keys_changed = false;
        for result in &summary.results {
            if let Some(entry) = &result.entry {
                keys_changed |= last_keys.set(result.id.to_string(), entry.key.clone());
            }
        }
        if keys_changed {
            let _ = last_keys.save();
        }
        if summary.ran() > 0 {
            let keep: HashSet<String> = summary.results.iter().filter_map(|r| r.entry.as_ref().map(|e| e.key.clone())).collect();
            match store.collect_garbage(limit, &keep, &verifier) {
                Ok(collected) if !collected.evicted.is_empty() => reporter.note(&format!(
                    "cache over its {} limit: removed {} least recently used entr{} ({} → {})",
                    cache::limit::format_size(limit),
                    collected.evicted.len(),
                    if collected.evicted.len() == 1 { "y" } else { "ies" },
                    cache::limit::format_size(collected.before),
                    cache::limit::format_size(collected.after)
                )),
                Ok(_) => {}
                Err(e) => reporter.note(&format!("warning: the cache could not be trimmed to its limit: {e}")),
            }
        }
        let _ = verifier.save();
        let _ = materialized;
        let watched = watched_paths(&manifest, &plan, &steps);
        // The outcome first (the lock check included), so that the report and the
        // `build-finished` event say how the build really ended.
        let outcome = self.check_outcome(&manifest, &summary);
        let report = if summary.ran() + summary.failed() > 0 {
            let page = BuildReport::collect(&manifest, &plan, &summary, outcome.as_ref().err());
            match page.write(&build_report::dir(&manifest.root)) {
                Ok(path) => Some(path),
                Err(e) => {
                    reporter.note(&format!("warning: the build report could not be written: {e}"));
                    None
                }
            }
        } else {
            None
        };
        reporter.summary(&summary, &Ending { error: outcome.as_ref().err(), report: report.as_deref() });
        outcome?;
        Ok((summary, watched))
    }

    fn check_outcome(&self, manifest: &Manifest, summary: &BuildSummary) -> Result<()> {
        if summary.cancelled {
            return Err(Error::Interrupted);
        }
        if !summary.succeeded() {
            let failed: Vec<String> =
                summary.results.iter().filter(|r| matches!(r.status, Status::Failed(_))).map(|r| r.id.to_string()).collect();
            return Err(Error::failed(
                format!("{} step{} failed: {}", failed.len(), if failed.len() == 1 { "" } else { "s" }, failed.join(", ")),
                Some("the errors above say why; dist/ and the cache keep what they had for the failed pieces".into()),
            )
            .code("step-failed"));
        }
        let lock_path = manifest.root.join(lockfile::FILE_NAME);
        let previous = LockFile::read(&lock_path);
        let built = LockFile::from_build(summary, previous.as_ref());
        if !self.request.locked {
            built.write(&lock_path).map_err(|e| Error::failed(format!("cannot write {}: {e}", lock_path.display()), None))?;
            return Ok(());
        }
        let Some(locked) = previous else {
            return Err(Error::failed(
                format!("--locked: {} does not exist", lock_path.display()),
                Some("run `exportctl build` once without --locked and commit Export.lock".into()),
            )
            .code("lock-missing"));
        };
        // What ships is hashed, not taken from the entries' records.
        let wrong = exec::dist::check_shipped(&manifest.root, &manifest.project.out_dir, manifest.project.version, summary);
        if !wrong.is_empty() {
            return Err(Error::failed(
                format!(
                    "--locked: {} shipped file{} differ from what was built:\n  {}",
                    wrong.len(),
                    if wrong.len() == 1 { "" } else { "s" },
                    wrong.join("\n  ")
                ),
                Some("something changed dist/ during the build; run the build again".into()),
            )
            .code("lock-mismatch"));
        }
        let differences = locked.differences(&built);
        if differences.is_empty() {
            return Ok(());
        }
        let list: Vec<String> = differences.iter().flat_map(|d| d.lines()).map(|line| format!("  {line}")).collect();
        Err(Error::failed(
            format!(
                "--locked: {} output{} differ from Export.lock:\n{}",
                differences.len(),
                if differences.len() == 1 { "" } else { "s" },
                list.join("\n")
            ),
            Some("if the change is intended, run `exportctl build` without --locked and commit the new Export.lock".into()),
        )
        .code("lock-mismatch"))
    }
}

impl Drop for Builder<'_> {
    fn drop(&mut self) {
        self.shutdown();
    }
}

/// How many Python workers a build may run at once: one per job, as long as memory holds a
/// TensorFlow process (about 1.5 GB) plus four copies of the largest model (the model, its
/// traced SavedModel, the copy a check loads, gradients) for each of them. With less, steps
/// wait for each other instead of swapping or being killed.
pub fn workers_for(manifest: &Manifest, jobs: usize) -> usize {
    let largest = manifest.models.iter().map(|m| source_bytes(&manifest.root, m)).max().unwrap_or(0);
    let per_worker = (1_500u64 << 20) + 4 * largest;
    let by_memory = available_memory().map_or(usize::MAX, |bytes| (bytes / per_worker).max(1) as usize);
    jobs.max(1).min(by_memory).min(manifest.piece_count().max(1))
}

/// The bytes of a model's weights on disk: its source file or folder, and a builder's checkpoint.
fn source_bytes(root: &std::path::Path, model: &crate::manifest::Model) -> u64 {
    fn size(path: &std::path::Path) -> u64 {
        match std::fs::metadata(path) {
            Ok(meta) if meta.is_dir() => std::fs::read_dir(path).map(|e| e.flatten().map(|e| size(&e.path())).sum()).unwrap_or(0),
            Ok(meta) => meta.len(),
            Err(_) => 0,
        }
    }
    let mut bytes = size(&root.join(model.source.path()));
    if let crate::manifest::Source::Builder { checkpoint: Some(checkpoint), .. } = &model.source {
        let checkpoint = root.join(checkpoint);
        bytes += if checkpoint.is_dir() {
            size(&checkpoint)
        } else {
            let prefix = checkpoint.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
            checkpoint
                .parent()
                .and_then(|p| std::fs::read_dir(p).ok())
                .map(|entries| {
                    entries.flatten().filter(|e| e.file_name().to_string_lossy().starts_with(&prefix)).map(|e| size(&e.path())).sum()
                })
                .unwrap_or(0)
        };
    }
    bytes
}

/// `MemAvailable` (Linux); `None` where it cannot be read.
#[cfg(target_os = "linux")]
fn available_memory() -> Option<u64> {
    let text = std::fs::read_to_string("/proc/meminfo").ok()?;
    let line = text.lines().find(|l| l.starts_with("MemAvailable:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

/// macOS keeps no `MemAvailable`: half the physical memory (`hw.memsize`) stands in for it.
#[cfg(target_os = "macos")]
fn available_memory() -> Option<u64> {
    let mut bytes: u64 = 0;
    let mut size = std::mem::size_of::<u64>();
    // SAFETY: the name is NUL-terminated and `bytes` is a u64, as hw.memsize is.
    let status = unsafe { libc::sysctlbyname(c"hw.memsize".as_ptr(), (&raw mut bytes).cast(), &raw mut size, std::ptr::null_mut(), 0) };
    (status == 0).then_some(bytes / 2)
}

/// Elsewhere workers are bounded by `-j` only.
#[cfg(not(any(target_os = "linux", target_os = "macos")))]
fn available_memory() -> Option<u64> {
    None
}

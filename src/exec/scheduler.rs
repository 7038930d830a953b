//! Running a plan: keys, cache lookups, parallel execution, failure propagation.
//!
//! The main thread first asks the runner what every step reads and digests the source files
//! (stat calls for unchanged files). Then `jobs` threads take ready steps — those whose
//! dependencies all succeeded — from a shared queue. A step's key needs its dependencies'
//! output digests, so it is computed when the step becomes ready; a key already in the store
//! is a cache hit and nothing runs. A failure marks every step downstream of it skipped;
//! without `--keep-going` no new step starts after the first failure (running ones finish).

use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::Instant;

use petgraph::graph::NodeIndex;
use petgraph::visit::{Dfs, Reversed};
use petgraph::Direction;

use super::report::{Event, Reporter, Source};
use super::step::{Dependency, StepContext, StepError, StepInputs, StepRunner};
use crate::cache::{explain, Corruption, Entry, Reason, Remote, SourceDigests, StepKey, Store, Verifier};
use crate::plan::{Plan, StepId};

#[derive(Debug, Clone)]
pub struct BuildOptions {
    pub jobs: usize,
    pub keep_going: bool,
    pub deny_warnings: bool,
}

impl Default for BuildOptions {
    fn default() -> Self {
        BuildOptions { jobs: 1, keep_going: false, deny_warnings: false }
    }
}

/// What the engine works with.
pub struct Engine<'a> {
    pub root: &'a Path,
    pub store: &'a Store,
    /// Checks cached bytes before a step reads them.
    pub verifier: &'a Verifier,
    /// Each step's key at the last build (to say why it runs again).
    pub last_keys: &'a BTreeMap<String, String>,
    /// The shared remote cache, asked after the local one.
    pub remote: Option<&'a Arc<Remote>>,
    pub runner: &'a dyn StepRunner,
    /// exportctl's part of keys (`cache::key::tool_version`).
    pub tool: String,
    /// The runtime's fingerprint.
    pub runtime: String,
    pub reporter: &'a dyn Reporter,
    pub cancelled: &'a AtomicBool,
}

#[derive(Debug, Clone)]
pub enum Status {
    Ran,
    Cached,
    Failed(StepError),
    /// Not run: a dependency failed, the build stopped, or it was cancelled.
    Skipped(String),
}

#[derive(Debug, Clone)]
pub struct StepResult {
    pub id: StepId,
    pub status: Status,
    /// The cache entry, for steps that ran or came from the cache (also for a step that ran
    /// but failed under `--deny warnings`: its output is valid).
    pub entry: Option<Entry>,
    pub seconds: f64,
}

impl StepResult {
    pub fn succeeded(&self) -> bool {
        matches!(self.status, Status::Ran | Status::Cached)
    }
}

#[derive(Debug, Clone)]
pub struct BuildSummary {
    /// In plan order.
    pub results: Vec<StepResult>,
    pub seconds: f64,
    pub cancelled: bool,
    /// Whether the build started the Python worker / loaded libtensorflow (a no-op must not).
    pub python_started: bool,
    pub native_loaded: bool,
    /// The Python worker serving this build, if one runs (it stays up under `--watch`).
    pub worker_pid: Option<u32>,
    /// Cache entries found changed on disk (and evicted) while this build used them: the
    /// steps that needed them were skipped, and the build runs again.
    pub corrupted: Vec<(StepId, Corruption)>,
    /// When and on which scheduler thread each result's step was taken up, in plan order
    /// (`None`: never taken up — skipped behind a failure). The build report's timeline.
    /// Recorded by the thread loop around `run_one`, so that running a step knows nothing of it.
    pub slots: Vec<Option<Slot>>,
    /// How many scheduler threads ran (the timeline's rows).
    pub threads: usize,
    /// What the remote cache gave and took, when one is configured.
    pub remote: Option<crate::cache::remote::RemoteStats>,
}

/// Where a step ran in the build: its start, in seconds since the build started, and the
/// scheduler thread (0-based) that ran it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Slot {
    pub started: f64,
    pub thread: usize,
}

impl BuildSummary {
    fn count(&self, f: impl Fn(&Status) -> bool) -> usize {
        self.results.iter().filter(|r| f(&r.status)).count()
    }
    pub fn ran(&self) -> usize {
        self.count(|s| matches!(s, Status::Ran))
    }
    pub fn cached(&self) -> usize {
        self.count(|s| matches!(s, Status::Cached))
    }
    pub fn failed(&self) -> usize {
        self.count(|s| matches!(s, Status::Failed(_)))
    }
    pub fn skipped(&self) -> usize {
        self.count(|s| matches!(s, Status::Skipped(_)))
    }
    pub fn succeeded(&self) -> bool {
        self.results.iter().all(StepResult::succeeded)
    }
    pub fn result(&self, id: &StepId) -> Option<&StepResult> {
        self.results.iter().find(|r| &r.id == id)
    }
}

struct Prepared {
    inputs: Result<(StepInputs, Vec<(String, String)>), StepError>,
    /// Every step this one depends on, directly or not.
    ancestors: Vec<NodeIndex>,
}

struct State {
    remaining: Vec<usize>,
    /// Ready steps, lowest node index (plan order) first.
    ready: BinaryHeap<Reverse<NodeIndex>>,
    results: Vec<Option<StepResult>>,
    running: usize,
    stop: Option<String>,
}

impl State {
    fn done(&self) -> bool {
        self.results.iter().all(Option::is_some)
    }
}

/// Runs `plan`. Source digests come from (and update) `sources`.
pub fn execute(engine: &Engine<'_>, plan: &Plan, sources: &mut SourceDigests, options: &BuildOptions) -> BuildSummary {
    let started = Instant::now();
    let graph = &plan.graph;
    let order = plan.topological();
    let prepared: Vec<Prepared> = graph
        .node_indices()
        .map(|n| {
            let inputs = engine.runner.inputs(&graph[n]).and_then(|inputs| {
                let mut files = Vec::new();
                for file in &inputs.files {
                    let digest = sources.digest(&engine.root.join(file)).map_err(|e| {
                        StepError::new(format!("cannot read {}: {e}", file.display()))
                            .with_help("the file changed since the manifest was checked; run the build again")
                    })?;
                    files.push((file.to_string_lossy().replace('\\', "/"), digest));
                }
                Ok((inputs, files))
            });
            let reversed = Reversed(graph);
            let mut dfs = Dfs::new(reversed, n);
            let mut ancestors = Vec::new();
            while let Some(a) = dfs.next(reversed) {
                if a != n {
                    ancestors.push(a);
                }
            }
            ancestors.sort();
            Prepared { inputs, ancestors }
        })
        .collect();

    let remaining: Vec<usize> = graph.node_indices().map(|n| graph.neighbors_directed(n, Direction::Incoming).count()).collect();
    let ready: BinaryHeap<Reverse<NodeIndex>> = order.iter().copied().filter(|&n| remaining[n.index()] == 0).map(Reverse).collect();
    let state = Mutex::new(State { remaining, ready, results: vec![None; graph.node_count()], running: 0, stop: None });
    let slots = Mutex::new(vec![None; graph.node_count()]);
    let corrupted = Mutex::new(Vec::new());
    let wake = Condvar::new();

    let jobs = options.jobs.max(1).min(graph.node_count().max(1));
    std::thread::scope(|scope| {
        for thread in 0..jobs {
            let (state, slots, wake, prepared, corrupted) = (&state, &slots, &wake, &prepared, &corrupted);
            scope.spawn(move || loop {
                let node = {
                    let mut s = state.lock().expect("scheduler state");
                    loop {
                        if engine.cancelled.load(Ordering::SeqCst) && s.stop.is_none() {
                            s.stop = Some("cancelled".into());
                        }
                        if let Some(reason) = s.stop.clone() {
                            while let Some(Reverse(n)) = s.ready.pop() {
                                skip(&mut s, graph, n, &reason, engine.reporter);
                            }
                        }
                        if let Some(Reverse(n)) = s.ready.pop() {
                            s.running += 1;
                            break Some(n);
                        }
                        if s.done() || (s.running == 0 && s.ready.is_empty()) {
                            break None;
                        }
                        s = wake.wait(s).expect("scheduler state");
                    }
                };
                let Some(node) = node else {
                    wake.notify_all();
                    return;
                };
                let deps = {
                    let s = state.lock().expect("scheduler state");
                    prepared[node.index()]
                        .ancestors
                        .iter()
                        .map(|&a| {
                            (graph[a].clone(), s.results[a.index()].as_ref().and_then(|r| r.entry.clone()).expect("dependencies finished"))
                        })
                        .collect::<Vec<(StepId, Entry)>>()
                };
                let slot = Slot { started: started.elapsed().as_secs_f64(), thread };
                let result = run_one(engine, &graph[node], &prepared[node.index()], &deps, options, corrupted);
                slots.lock().expect("slots")[node.index()] = Some(slot);
                let mut s = state.lock().expect("scheduler state");
                s.running -= 1;
                let ok = result.succeeded();
                if !ok && !options.keep_going && s.stop.is_none() {
                    s.stop = Some(format!("not started: {} failed", graph[node]));
                }
                s.results[node.index()] = Some(result);
                for dependent in graph.neighbors_directed(node, Direction::Outgoing) {
                    if ok {
                        s.remaining[dependent.index()] -= 1;
                        if s.remaining[dependent.index()] == 0 && s.results[dependent.index()].is_none() {
                            s.ready.push(Reverse(dependent));
                        }
                    } else if s.results[dependent.index()].is_none() {
                        skip(&mut s, graph, dependent, &format!("{} failed", graph[node]), engine.reporter);
                    }
                }
                drop(s);
                wake.notify_all();
            });
        }
    });

    let state = state.into_inner().expect("scheduler state");
    let results = state
        .results
        .into_iter()
        .enumerate()
        .map(|(i, r)| {
            r.unwrap_or_else(|| StepResult {
                id: graph[NodeIndex::new(i)].clone(),
                status: Status::Skipped("not started".into()),
                entry: None,
                seconds: 0.0,
            })
        })
        .collect();
    BuildSummary {
        results,
        seconds: started.elapsed().as_secs_f64(),
        cancelled: engine.cancelled.load(Ordering::SeqCst),
        python_started: false,
        native_loaded: false,
        worker_pid: None,
        corrupted: corrupted.into_inner().expect("corruptions"),
        slots: slots.into_inner().expect("slots"),
        threads: jobs,
        remote: None,
    }
}

/// Marks `node` and everything downstream of it skipped.
fn skip(s: &mut State, graph: &petgraph::graph::DiGraph<StepId, ()>, node: NodeIndex, reason: &str, reporter: &dyn Reporter) {
    let mut stack = vec![node];
    while let Some(n) = stack.pop() {
        if s.results[n.index()].is_some() {
            continue;
        }
        reporter.event(Event::Skipped { id: &graph[n], reason });
        s.results[n.index()] =
            Some(StepResult { id: graph[n].clone(), status: Status::Skipped(reason.to_string()), entry: None, seconds: 0.0 });
        s.ready.retain(|&Reverse(r)| r != n);
        stack.extend(graph.neighbors_directed(n, Direction::Outgoing));
    }
}

fn run_one(
    engine: &Engine<'_>,
    id: &StepId,
    prepared: &Prepared,
    deps: &[(StepId, Entry)],
    options: &BuildOptions,
    corrupted: &Mutex<Vec<(StepId, Corruption)>>,
) -> StepResult {
    let started = Instant::now();
    let fail = |error: StepError, entry: Option<Entry>| {
        let seconds = started.elapsed().as_secs_f64();
        engine.reporter.event(Event::Failed { id, error: &error, seconds });
        StepResult { id: id.clone(), status: Status::Failed(error), entry, seconds }
    };
    let (inputs, files) = match &prepared.inputs {
        Ok(ok) => ok,
        Err(e) => return fail(e.clone(), None),
    };
    let full_key = StepKey {
        format: crate::cache::key::CACHE_FORMAT,
        tool: engine.tool.clone(),
        runtime: engine.runtime.clone(),
        kind: id.kind.as_str().to_string(),
        settings: inputs.settings.clone(),
        files: files.clone(),
        deps: deps.iter().map(|(d, e)| (d.kind.as_str().to_string(), e.digest.clone())).collect(),
    };
    let key = full_key.digest();

    let denied = |entry: &Entry| -> Option<StepError> {
        let n = entry.outcome.warnings.len();
        (options.deny_warnings && n > 0).then(|| {
            StepError::new(format!("{n} warning{} denied (--deny warnings)", if n == 1 { "" } else { "s" }))
                .with_help("fix what the warnings say, or build without --deny warnings")
        })
    };

    if let Some(entry) = engine.store.lookup(&key) {
        for warning in &entry.outcome.warnings {
            engine.reporter.event(Event::Warning { id, warning });
        }
        if let Some(error) = denied(&entry) {
            return fail(error, Some(entry));
        }
        engine.reporter.event(Event::Cached { id, key: &key, entry: &entry, source: Source::Local });
        return StepResult { id: id.clone(), status: Status::Cached, entry: Some(entry), seconds: 0.0 };
    }
    let fetched = engine.remote.and_then(|remote| {
        let entry = remote.fetch(&key, engine.store, &|done, total| engine.reporter.transfer(id, done, total));
        for warning in remote.take_warnings() {
            engine.reporter.build_warning(&warning);
        }
        entry
    });
    if let Some(entry) = fetched {
        for warning in &entry.outcome.warnings {
            engine.reporter.event(Event::Warning { id, warning });
        }
        if let Some(error) = denied(&entry) {
            return fail(error, Some(entry));
        }
        engine.reporter.event(Event::Cached { id, key: &key, entry: &entry, source: Source::Remote });
        return StepResult { id: id.clone(), status: Status::Cached, entry: Some(entry), seconds: started.elapsed().as_secs_f64() };
    }
    if engine.cancelled.load(Ordering::SeqCst) {
        engine.reporter.event(Event::Skipped { id, reason: "cancelled" });
        return StepResult { id: id.clone(), status: Status::Skipped("cancelled".into()), entry: None, seconds: 0.0 };
    }
    // The step reads its dependencies' outputs: they must still be the bytes they were.
    for (dep, entry) in deps {
        if let Err(corruption) = engine.verifier.check_entry(entry) {
            let _ = engine.store.evict_corrupt(entry, &corruption.file, engine.verifier);
            let reason = format!("the cached output of {dep} changed on disk ({corruption}); it was evicted and runs again");
            engine.reporter.event(Event::Skipped { id, reason: &reason });
            corrupted.lock().expect("corruptions").push((dep.clone(), corruption));
            return StepResult { id: id.clone(), status: Status::Skipped(reason), entry: None, seconds: 0.0 };
        }
    }

    let full_key = serde_json::to_value(&full_key).expect("keys serialise");
    let reason = explain::describe(&why(engine, id, &key, &full_key, deps));
    engine.reporter.event(Event::Started { id, key: &key, reason: &reason });
    let pending = match engine.store.begin(&key, &id.to_string()) {
        Ok(p) => p,
        Err(e) => {
            return fail(
                StepError::new(format!("cannot create a cache entry: {e}"))
                    .with_help("check the permissions and free space of .exportctl/"),
                None,
            )
        }
    };
    let dep_map: BTreeMap<StepId, Dependency> =
        deps.iter().map(|(d, e)| (d.clone(), Dependency { id: d.clone(), dir: e.out(), files: e.files.clone() })).collect();
    let out = pending.out();
    let cx = StepContext { root: engine.root, out: &out, deps: &dep_map, cancelled: engine.cancelled };
    let outcome = match engine.runner.run(id, &cx) {
        Ok(outcome) => outcome,
        // Dropping `pending` removes the half-written output: nothing of it is ever trusted.
        Err(e) => return fail(e, None),
    };
    let seconds = started.elapsed().as_secs_f64();
    let entry = match pending.commit(outcome, seconds, Some(full_key), engine.verifier) {
        Ok(entry) => entry,
        Err(e) => {
            return fail(
                StepError::new(format!("cannot store the step's output: {e}")).with_help("check the free space of .exportctl/"),
                None,
            )
        }
    };
    for warning in &entry.outcome.warnings {
        engine.reporter.event(Event::Warning { id, warning });
    }
    if let Some(error) = denied(&entry) {
        return fail(error, Some(entry));
    }
    engine.reporter.event(Event::Finished { id, key: &key, entry: &entry, seconds });
    if let Some(remote) = engine.remote {
        remote.upload(entry.clone());
    }
    StepResult { id: id.clone(), status: Status::Ran, entry: Some(entry), seconds }
}

/// Why `id` runs: how its key differs from the key of its last entry.
fn why(engine: &Engine<'_>, id: &StepId, key: &str, full_key: &serde_json::Value, deps: &[(StepId, Entry)]) -> Vec<Reason> {
    let Some(last) = engine.last_keys.get(&id.to_string()) else { return vec![Reason::NotBuiltBefore] };
    if last == key {
        return vec![Reason::EntryRemoved];
    }
    let Some(old) = engine.store.peek(last).and_then(|e| e.full_key) else {
        return vec![Reason::EntryRemoved];
    };
    let reasons = explain::differences(&old, full_key);
    // Keys name dependencies by kind; people know them by id.
    reasons
        .into_iter()
        .map(|reason| match reason {
            Reason::Dependency { name } => {
                let id = deps.iter().find(|(d, _)| d.kind.as_str() == name).map_or(name, |(d, _)| d.to_string());
                Reason::Dependency { name: id }
            }
            other => other,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    //! The scheduler with fake steps: no TensorFlow, only the engine's rules.
    use std::sync::atomic::AtomicUsize;
    use std::time::Duration;

    use super::*;
    use crate::exec::report::Silent;
    use crate::exec::{StepInputs, StepOutcome};
    use crate::plan::StepKind;

    /// A step runner whose steps write a file naming themselves and their inputs, record
    /// the order they ran in, and fail or sleep on request.
    #[derive(Default)]
    struct Fake {
        log: Mutex<Vec<String>>,
        fail: Vec<String>,
        sleep_ms: u64,
        running: AtomicUsize,
        max_parallel: AtomicUsize,
        settings_version: u32,
        /// Read by the export steps, and made part of their output.
        export_salt: u32,
        cancel_after: Option<(String, &'static AtomicBool)>,
    }

    impl StepRunner for Fake {
        fn inputs(&self, step: &StepId) -> Result<StepInputs, StepError> {
            // Real steps read settings that tell models and pieces apart (a source path, a cut).
            let settings = if step.kind == StepKind::Package {
                serde_json::json!({ "step": step.to_string(), "docs": self.settings_version })
            } else if step.kind == StepKind::Export {
                serde_json::json!({ "step": step.to_string(), "salt": self.export_salt })
            } else {
                serde_json::json!({ "step": step.to_string() })
            };
            Ok(StepInputs { settings, files: vec![] })
        }

        fn run(&self, step: &StepId, cx: &StepContext<'_>) -> Result<StepOutcome, StepError> {
            let now = self.running.fetch_add(1, Ordering::SeqCst) + 1;
            self.max_parallel.fetch_max(now, Ordering::SeqCst);
            std::thread::sleep(Duration::from_millis(self.sleep_ms));
            self.running.fetch_sub(1, Ordering::SeqCst);
            self.log.lock().unwrap().push(step.to_string());
            // Every dependency's output is readable.
            let mut seen: Vec<String> = cx.deps.values().map(|d| std::fs::read_to_string(d.dir.join("made-by")).unwrap()).collect();
            seen.sort();
            let salt = if step.kind == StepKind::Export { format!(" salt {}", self.export_salt) } else { String::new() };
            std::fs::write(cx.out.join("made-by"), format!("{step}{salt} <- [{}]", seen.join(", "))).unwrap();
            if let Some((after, flag)) = &self.cancel_after {
                if &step.to_string() == after {
                    flag.store(true, Ordering::SeqCst);
                }
            }
            if self.fail.contains(&step.to_string()) {
                return Err(StepError::new("it broke"));
            }
            Ok(StepOutcome::default())
        }
    }

    fn plan() -> Plan {
        Plan::from_names([("net", vec!["a", "b"]), ("other", vec!["c"])])
    }

    fn build(runner: &Fake, store: &Store, options: &BuildOptions, cancelled: &AtomicBool) -> BuildSummary {
        let root = tempfile::tempdir().unwrap();
        let verifier = Verifier::new(root.path());
        let last = BTreeMap::new();
        let engine = Engine {
            root: root.path(),
            store,
            verifier: &verifier,
            last_keys: &last,
            remote: None,
            runner,
            tool: "t".into(),
            runtime: "r".into(),
            reporter: &Silent,
            cancelled,
        };
        let mut sources = SourceDigests::default();
        execute(&engine, &plan(), &mut sources, options)
    }

    fn status_of(summary: &BuildSummary, id: &str) -> String {
        let r = summary.results.iter().find(|r| r.id.to_string() == id).unwrap();
        match &r.status {
            Status::Ran => "ran".into(),
            Status::Cached => "cached".into(),
            Status::Failed(e) => format!("failed: {}", e.message),
            Status::Skipped(why) => format!("skipped: {why}"),
        }
    }

    #[test]
    fn steps_run_after_their_dependencies_and_once_per_key() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let fake = Fake::default();
        let summary = build(&fake, &store, &BuildOptions { jobs: 4, ..Default::default() }, &AtomicBool::new(false));
        assert!(summary.succeeded());
        assert_eq!(summary.ran(), 14);
        let log = fake.log.lock().unwrap().clone();
        let pos = |s: &str| log.iter().position(|l| l == s).unwrap();
        assert!(pos("net:export") < pos("net/a:slice"));
        assert!(pos("net/a:slice") < pos("net/a:trace"));
        assert!(pos("net/a:validate") < pos("net/a:package"));
        // A step sees all of its (transitive) dependencies' outputs.
        let package = summary.result(&StepId { model: "net".into(), piece: Some("a".into()), kind: StepKind::Package }).unwrap();
        let made_by = std::fs::read_to_string(package.entry.as_ref().unwrap().out().join("made-by")).unwrap();
        assert!(made_by.starts_with("net/a:package <- [net/a:slice <- [net:export"), "{made_by}");

        // Second build: everything is cached, nothing runs.
        let again = Fake::default();
        let summary = build(&again, &store, &BuildOptions { jobs: 4, ..Default::default() }, &AtomicBool::new(false));
        assert_eq!((summary.ran(), summary.cached()), (0, 14));
        assert!(again.log.lock().unwrap().is_empty());

        // A setting only package reads: only the packages run again.
        let docs = Fake { settings_version: 2, ..Default::default() };
        let summary = build(&docs, &store, &BuildOptions::default(), &AtomicBool::new(false));
        assert_eq!((summary.ran(), summary.cached()), (3, 11));
        assert!(docs.log.lock().unwrap().iter().all(|s| s.ends_with(":package")));
    }

    #[test]
    fn independent_steps_run_in_parallel_up_to_jobs() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let fake = Fake { sleep_ms: 40, ..Default::default() };
        build(&fake, &store, &BuildOptions { jobs: 3, ..Default::default() }, &AtomicBool::new(false));
        let max = fake.max_parallel.load(Ordering::SeqCst);
        assert!((2..=3).contains(&max), "max parallel steps: {max}");

        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let serial = Fake { sleep_ms: 5, ..Default::default() };
        build(&serial, &store, &BuildOptions { jobs: 1, ..Default::default() }, &AtomicBool::new(false));
        assert_eq!(serial.max_parallel.load(Ordering::SeqCst), 1);
    }

    #[test]
    fn a_failure_stops_its_dependents_only_with_keep_going() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let fake = Fake { fail: vec!["net/a:trace".into()], ..Default::default() };
        let summary = build(&fake, &store, &BuildOptions { jobs: 1, keep_going: true, ..Default::default() }, &AtomicBool::new(false));
        assert_eq!(status_of(&summary, "net/a:trace"), "failed: it broke");
        assert_eq!(status_of(&summary, "net/a:validate"), "skipped: net/a:trace failed");
        assert_eq!(status_of(&summary, "net/a:package"), "skipped: net/a:trace failed");
        assert_eq!(status_of(&summary, "net/b:package"), "ran");
        assert_eq!(status_of(&summary, "other/c:package"), "ran");
        assert_eq!(summary.failed(), 1);
        // The failed step left no entry: the next build runs it again.
        let again = Fake::default();
        let summary = build(&again, &store, &BuildOptions::default(), &AtomicBool::new(false));
        assert_eq!(again.log.lock().unwrap().clone(), ["net/a:trace", "net/a:validate", "net/a:package"]);
        assert!(summary.succeeded());
        assert_eq!(std::fs::read_dir(dir.path().join("cache/v2/tmp")).unwrap().count(), 0);
    }

    #[test]
    fn without_keep_going_no_new_step_starts_after_a_failure() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let fake = Fake { fail: vec!["net:export".into()], ..Default::default() };
        let summary = build(&fake, &store, &BuildOptions { jobs: 1, ..Default::default() }, &AtomicBool::new(false));
        assert_eq!(fake.log.lock().unwrap().clone(), ["net:export"]);
        assert_eq!(summary.failed(), 1);
        assert_eq!(summary.skipped(), 13);
        assert!(status_of(&summary, "other:export").starts_with("skipped"));
    }

    #[test]
    fn cancelling_finishes_running_steps_and_starts_no_more() {
        static CANCELLED: AtomicBool = AtomicBool::new(false);
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let fake = Fake { cancel_after: Some(("net/a:slice".into(), &CANCELLED)), ..Default::default() };
        let summary = build(&fake, &store, &BuildOptions { jobs: 1, ..Default::default() }, &CANCELLED);
        assert!(summary.cancelled);
        assert_eq!(fake.log.lock().unwrap().clone(), ["net:export", "net/a:slice"]);
        assert_eq!(status_of(&summary, "net/a:slice"), "ran", "the running step finished and was stored");
        assert!(status_of(&summary, "net/a:trace").starts_with("skipped"));
        // What finished is in the cache.
        CANCELLED.store(false, Ordering::SeqCst);
        let again = Fake::default();
        let summary = build(&again, &store, &BuildOptions::default(), &CANCELLED);
        assert_eq!(summary.cached(), 2);
    }

    #[test]
    fn denied_warnings_fail_the_step_but_keep_its_output() {
        struct Warns;
        impl StepRunner for Warns {
            fn inputs(&self, _: &StepId) -> Result<StepInputs, StepError> {
                Ok(StepInputs::default())
            }
            fn run(&self, step: &StepId, _: &StepContext<'_>) -> Result<StepOutcome, StepError> {
                let warnings = if step.kind == StepKind::Validate {
                    vec![crate::exec::Warning { code: crate::contract::Lint::SoftmaxOutput, message: "ends in softmax".into(), help: None }]
                } else {
                    vec![]
                };
                Ok(StepOutcome { warnings, ..Default::default() })
            }
        }
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let root = tempfile::tempdir().unwrap();
        let cancelled = AtomicBool::new(false);
        let verifier = Verifier::new(root.path());
        let last = BTreeMap::new();
        let engine = Engine {
            root: root.path(),
            store: &store,
            verifier: &verifier,
            last_keys: &last,
            remote: None,
            runner: &Warns,
            tool: "t".into(),
            runtime: "r".into(),
            reporter: &Silent,
            cancelled: &cancelled,
        };
        let plan = Plan::from_names([("m", vec!["p"])]);
        let deny = BuildOptions { deny_warnings: true, ..Default::default() };
        let summary = execute(&engine, &plan, &mut SourceDigests::default(), &deny);
        assert_eq!(summary.failed(), 1);
        assert_eq!(status_of(&summary, "m/p:package"), "skipped: m/p:validate failed");
        // Without --deny the same (cached) step passes and its warning is replayed.
        let summary = execute(&engine, &plan, &mut SourceDigests::default(), &BuildOptions::default());
        assert!(summary.succeeded());
        assert_eq!(status_of(&summary, "m/p:validate"), "cached");
    }

    /// Records why each step started.
    #[derive(Default)]
    struct Reasons(Mutex<BTreeMap<String, String>>);

    impl Reporter for Reasons {
        fn event(&self, event: Event<'_>) {
            if let Event::Started { id, reason, .. } = event {
                self.0.lock().unwrap().insert(id.to_string(), reason.to_string());
            }
        }
        fn summary(&self, _: &BuildSummary, _: &crate::exec::report::Ending<'_>) {}
        fn note(&self, _: &str) {}
        fn watch(&self, _: &str, _: &[std::path::PathBuf]) {}
    }

    #[test]
    fn a_step_that_runs_says_why_for_each_reason() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let root = tempfile::tempdir().unwrap();
        let verifier = Verifier::new(root.path());
        let cancelled = AtomicBool::new(false);
        let mut last = BTreeMap::new();
        // Builds, remembers each step's key as the project does, and returns why each step ran.
        let mut build = |runner: &Fake, tool: &str, runtime: &str| -> BTreeMap<String, String> {
            let reasons = Reasons::default();
            let engine = Engine {
                root: root.path(),
                store: &store,
                verifier: &verifier,
                last_keys: &last,
                remote: None,
                runner,
                tool: tool.into(),
                runtime: runtime.into(),
                reporter: &reasons,
                cancelled: &cancelled,
            };
            let summary = execute(&engine, &plan(), &mut SourceDigests::default(), &BuildOptions::default());
            assert!(summary.succeeded());
            for result in &summary.results {
                if let Some(entry) = &result.entry {
                    last.insert(result.id.to_string(), entry.key.clone());
                }
            }
            reasons.0.into_inner().unwrap()
        };
        let (tf_220, tf_221) = ("python=3.11.7 tensorflow=2.20.0", "python=3.11.7 tensorflow=2.21.0");

        let reasons = build(&Fake::default(), "exportctl 1.0", tf_220);
        assert_eq!(reasons.len(), 14);
        assert!(reasons.values().all(|r| r == "not built before"), "{reasons:?}");

        let reasons = build(&Fake::default(), "exportctl 1.1", tf_220);
        assert_eq!(reasons.len(), 14);
        assert!(reasons.values().all(|r| r == "exportctl changed (exportctl 1.0 → exportctl 1.1)"), "{reasons:?}");

        let reasons = build(&Fake::default(), "exportctl 1.1", tf_221);
        assert_eq!(reasons.len(), 14);
        assert!(reasons.values().all(|r| r == "runtime changed (tensorflow 2.20.0 → 2.21.0)"), "{reasons:?}");

        // A setting of one export: it says which, and the steps after it that their input changed.
        let reasons = build(&Fake { export_salt: 1, ..Fake::default() }, "exportctl 1.1", tf_221);
        assert_eq!(reasons["net:export"], "setting salt changed 0 → 1");
        assert_eq!(reasons["other:export"], "setting salt changed 0 → 1");
        assert_eq!(reasons["net/a:slice"], "dependency net:export changed");
        assert_eq!(reasons["other/c:slice"], "dependency other:export changed");
        assert_eq!(reasons["net/b:trace"], "dependency net:export changed; dependency net/b:slice changed");
    }
}

//! A no-op build: every step's key is already in the cache. Targets: 10 pieces < 20 ms,
//! 1,000 pieces < 200 ms, without starting Python or loading libtensorflow.
//! Also: hashing a 1 GB file, against `b3sum` when it is installed.
//!
//! Run with `cargo bench --bench noop_build`.
//!
//! The steps are fakes here (the cache hits never call them; that is the point), but
//! everything else is what `exportctl build` does on a no-op: load and validate the manifest,
//! plan, take the project lock, stat the sources, compute every key, look every entry up,
//! check dist/, compare Export.lock.

use std::path::Path;
use std::process::Command;
use std::sync::atomic::AtomicBool;
use std::time::{Duration, Instant};

use exportctl::cache::{self, ProjectLock, SourceDigests, Store};
use exportctl::exec::{self, report::Silent, BuildOptions, Engine, StepContext, StepError, StepInputs, StepOutcome, StepRunner};
use exportctl::lockfile::LockFile;
use exportctl::plan::{Plan, StepId, StepKind};

struct Fake;

impl StepRunner for Fake {
    fn inputs(&self, step: &StepId) -> Result<StepInputs, StepError> {
        let files = if step.kind == StepKind::Export { vec![format!("models/{}.keras", step.model).into()] } else { vec![] };
        Ok(StepInputs { settings: serde_json::json!({ "step": step.to_string() }), files })
    }
    fn run(&self, step: &StepId, cx: &StepContext<'_>) -> Result<StepOutcome, StepError> {
        if step.kind == StepKind::Trace {
            std::fs::create_dir_all(cx.out.join("saved_model")).unwrap();
            std::fs::write(cx.out.join("saved_model/saved_model.pb"), step.to_string()).unwrap();
        }
        std::fs::write(cx.out.join("out.txt"), step.to_string()).unwrap();
        Ok(StepOutcome::default())
    }
}

fn write_project(dir: &Path, models: usize, pieces: usize) {
    std::fs::create_dir_all(dir.join("models")).unwrap();
    let mut text = String::from("[project]\nname = \"bench\"\n");
    for m in 0..models {
        std::fs::write(dir.join(format!("models/m{m}.keras")), vec![7u8; 64 * 1024]).unwrap();
        text.push_str(&format!("\n[models.m{m}]\nsource = \"models/m{m}.keras\"\n"));
        for p in 0..pieces {
            text.push_str(&format!("\n[[models.m{m}.pieces]]\nname = \"piece-{p}\"\nto = \"layer_{p}\"\n"));
        }
    }
    std::fs::write(dir.join("Export.toml"), text).unwrap();
}

/// What `exportctl build` does, minus the runtime discovery (one small file read).
fn build(root: &Path) -> exec::BuildSummary {
    let manifest = exportctl::manifest::load(&root.join("Export.toml"), "Export.toml").unwrap();
    let plan = Plan::new(&manifest);
    let cache_dir = cache::ensure(root).unwrap();
    let _lock = ProjectLock::acquire(&cache_dir, true, |_| {}).unwrap();
    let store = Store::open(&cache_dir).unwrap();
    let cancelled = AtomicBool::new(false);
    let verifier = cache::Verifier::new(&cache_dir);
    let last = std::collections::BTreeMap::new();
    let engine = Engine {
        root,
        store: &store,
        verifier: &verifier,
        last_keys: &last,
        remote: None,
        runner: &Fake,
        tool: "bench".into(),
        runtime: "bench".into(),
        reporter: &Silent,
        cancelled: &cancelled,
    };
    let mut sources = SourceDigests::load(&cache_dir);
    let summary = exec::execute(&engine, &plan, &mut sources, &BuildOptions { jobs: 2, ..Default::default() });
    sources.save().unwrap();
    exec::dist::materialize(&cache_dir, root, &manifest.project.out_dir, 1, &summary, &store, &verifier).unwrap();
    verifier.save().unwrap();
    let lock_path = root.join("Export.lock");
    let previous = LockFile::read(&lock_path);
    let built = LockFile::from_build(&summary, previous.as_ref());
    built.write(&lock_path).unwrap();
    summary
}

fn stats(label: &str, mut samples: Vec<Duration>) {
    samples.sort();
    println!(
        "{label:<42} min {:>8.2} ms   median {:>8.2} ms   ({} runs)",
        samples[0].as_secs_f64() * 1e3,
        samples[samples.len() / 2].as_secs_f64() * 1e3,
        samples.len()
    );
}

fn main() {
    let tmp = tempfile::tempdir_in(concat!(env!("CARGO_MANIFEST_DIR"), "/target")).unwrap();
    for (models, pieces) in [(1, 10), (10, 100)] {
        let root = tmp.path().join(format!("p{}", models * pieces));
        write_project(&root, models, pieces);
        let first = Instant::now();
        let summary = build(&root);
        assert!(summary.succeeded());
        println!("\n{} pieces ({} steps): first build {:.2} s", models * pieces, summary.results.len(), first.elapsed().as_secs_f64());
        let runs: Vec<Duration> = (0..20)
            .map(|_| {
                let start = Instant::now();
                let summary = build(&root);
                assert_eq!(summary.cached(), summary.results.len());
                start.elapsed()
            })
            .collect();
        stats("no-op build (library, all steps cached)", runs);
    }

    // Hashing: a 1 GB file.
    let big = tmp.path().join("big.bin");
    {
        use std::io::Write as _;
        let mut f = std::fs::File::create(&big).unwrap();
        let mut block = vec![0u8; 1 << 20];
        for i in 0..1024u32 {
            for (j, b) in block.iter_mut().enumerate() {
                *b = (j as u32).wrapping_mul(2654435761).wrapping_add(i) as u8;
            }
            f.write_all(&block).unwrap();
        }
    }
    let runs: Vec<Duration> = (0..5)
        .map(|_| {
            let start = Instant::now();
            exportctl::hash::digest_file(&big).unwrap();
            start.elapsed()
        })
        .collect();
    stats("\nhash 1 GB (exportctl::hash::digest_file)", runs);
    if Command::new("b3sum").arg("--version").output().is_ok() {
        let runs: Vec<Duration> = (0..5)
            .map(|_| {
                let start = Instant::now();
                assert!(Command::new("b3sum").arg(&big).output().unwrap().status.success());
                start.elapsed()
            })
            .collect();
        stats("hash 1 GB (b3sum)", runs);
    } else {
        println!("(b3sum not installed: `cargo install b3sum` to compare)");
    }
}

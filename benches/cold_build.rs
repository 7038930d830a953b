//! A cold build of `examples/mobilenet` against the hand-written script it replaces
//! (`benches/cold_build/baseline_mobilenet.py`: the same pieces, the same reload-and-compare,
//! the same `hub.KerasLayer` fine-tuning in a second process, the archives), alternated three
//! times each in one run. exportctl starts from an empty cache every time and runs every
//! check; both use the same managed runtime (installed first if needed, not timed).
//!
//! `cargo bench --bench cold_build`. Target: median ratio ≤ 0.8.

mod common;
use common::{copy_dir, repo};

use std::process::Command;
use std::time::Instant;

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    v[v.len() / 2]
}

fn main() {
    let settings = exportctl::manifest::RuntimeSettings {
        python: None,
        tensorflow: "2.21.0".into(),
        keras: exportctl::manifest::KerasFlavour::Auto,
        timeout_secs: 900,
    };
    let runtime = exportctl::runtime::discover(&settings, &repo(), &exportctl::runtime::Discovery { install: true, progress: true })
        .expect("the managed runtime");
    let example = repo().join("examples/mobilenet");
    let script = repo().join("benches/cold_build/baseline_mobilenet.py");
    let exportctl = env!("CARGO_BIN_EXE_exportctl");
    let runs: usize = std::env::var("EXPORTCTL_BENCH_RUNS").ok().and_then(|v| v.parse().ok()).unwrap_or(3);

    let (mut ours, mut theirs) = (Vec::new(), Vec::new());
    for run in 1..=runs {
        let tmp = tempfile::tempdir().unwrap();
        let project = tmp.path().join("mobilenet");
        copy_dir(&example, &project, &[]);
        let started = Instant::now();
        let out = Command::new(exportctl).arg("-C").arg(&project).args(["build", "--message-format", "json"]).output().unwrap();
        let seconds = started.elapsed().as_secs_f64();
        assert!(out.status.success(), "exportctl failed: {}", String::from_utf8_lossy(&out.stderr));
        let ran = String::from_utf8_lossy(&out.stdout).lines().filter(|l| l.contains("\"step-finished\"")).count();
        assert_eq!(ran, 9, "a cold build runs every step");
        ours.push(seconds);

        let out_dir = tmp.path().join("baseline");
        std::fs::create_dir_all(&out_dir).unwrap();
        let started = Instant::now();
        let status = Command::new(&runtime.python)
            .arg(&script)
            .arg(&example)
            .arg(&out_dir)
            .env("TF_CPP_MIN_LOG_LEVEL", "3")
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .status()
            .unwrap();
        let baseline = started.elapsed().as_secs_f64();
        assert!(status.success(), "the baseline script failed");
        theirs.push(baseline);
        println!("run {run}: exportctl {seconds:.1} s, hand-written script {baseline:.1} s");
    }
    let (a, b) = (median(ours), median(theirs));
    println!("\nmedian cold build of examples/mobilenet (2 pieces, every check):");
    println!("  exportctl build        {a:>6.1} s");
    println!("  hand-written script    {b:>6.1} s");
    println!("  ratio                  {:>6.2}   (target <= 0.80)", a / b);
}

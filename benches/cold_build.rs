//! A cold build of `examples/mobilenet` against the hand-written script it replaces
//! (`benches/cold_build/baseline_mobilenet.py`: the same pieces, the same reload-and-compare,
//! the same `hub.KerasLayer` fine-tuning in a second process, the archives), alternated three
//! times each in one run. exportctl starts from an empty cache every time and runs every
//! check; both use the same managed runtime (installed first if needed, not timed).
//!
//! The same, with the example's LiteRT variant (`classification` also as a dynamic-range
//! `model.tflite`, validated with the LiteRT interpreter) against the script with `--litert`,
//! which converts, runs and compares the same model; and what the two LiteRT steps cost.
//!
//! `cargo bench --bench cold_build`. Target: median ratio ≤ 0.8 in both.

mod common;
use common::{copy_dir, repo, without_litert};

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

    // Two manifests: the example as the hand-written script does it (SavedModels only: the
    // piece's LiteRT lines taken out), and the example as it is, with its LiteRT variant, against
    // the script with `--litert`.
    let manifest = std::fs::read_to_string(example.join("Export.toml")).unwrap();
    let saved_model_only = without_litert(&manifest);
    let variants = [("SavedModels only", saved_model_only.as_str(), 9, false), ("with the LiteRT variant", manifest.as_str(), 11, true)];

    let mut figures: Vec<(Vec<f64>, Vec<f64>, Vec<f64>)> = vec![Default::default(), Default::default()];
    for run in 1..=runs {
        for (i, (label, toml, steps, litert)) in variants.iter().enumerate() {
            let tmp = tempfile::tempdir().unwrap();
            let project = tmp.path().join("mobilenet");
            copy_dir(&example, &project, &[]);
            std::fs::write(project.join("Export.toml"), toml).unwrap();
            let started = Instant::now();
            let out = Command::new(exportctl).arg("-C").arg(&project).args(["build", "--message-format", "json"]).output().unwrap();
            let seconds = started.elapsed().as_secs_f64();
            assert!(out.status.success(), "exportctl failed: {}", String::from_utf8_lossy(&out.stderr));
            let events: Vec<serde_json::Value> =
                String::from_utf8_lossy(&out.stdout).lines().filter_map(|l| serde_json::from_str(l).ok()).collect();
            let finished: Vec<&serde_json::Value> = events.iter().filter(|e| e["event"] == "step-finished").collect();
            assert_eq!(finished.len(), *steps, "a cold build runs every step");
            let litert_steps: f64 = finished
                .iter()
                .filter(|e| e["step"].as_str().is_some_and(|s| s.ends_with(":convert-litert") || s.ends_with(":validate-litert")))
                .filter_map(|e| e["duration_ms"].as_f64())
                .sum::<f64>()
                / 1000.0;

            let out_dir = tmp.path().join("baseline");
            std::fs::create_dir_all(&out_dir).unwrap();
            let mut script_command = Command::new(&runtime.python);
            script_command.arg(&script).arg(&example).arg(&out_dir);
            if *litert {
                script_command.arg("--litert");
            }
            let started = Instant::now();
            let status = script_command
                .env("TF_CPP_MIN_LOG_LEVEL", "3")
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::null())
                .status()
                .unwrap();
            let baseline = started.elapsed().as_secs_f64();
            assert!(status.success(), "the baseline script failed ({label})");
            if *litert {
                assert!(out_dir.join("classification/model.tflite").is_file());
            }
            let litert_note = if *litert { format!(" (LiteRT steps {litert_steps:.1} s)") } else { String::new() };
            println!("run {run}, {label}: exportctl {seconds:.1} s{litert_note}, hand-written script {baseline:.1} s");
            figures[i].0.push(seconds);
            figures[i].1.push(baseline);
            figures[i].2.push(litert_steps);
        }
    }
    println!("\nmedian cold build of examples/mobilenet (2 pieces, every check), {runs} runs each:");
    for ((label, ..), (ours, theirs, _)) in variants.iter().zip(&figures) {
        let (a, b) = (median(ours.clone()), median(theirs.clone()));
        println!("  {label:<24} exportctl {a:>6.1} s   hand-written script {b:>6.1} s   ratio {:>5.2}   (target <= 0.80)", a / b);
    }
    let litert_steps = median(figures[1].2.clone());
    let script_extra = median(figures[1].1.clone()) - median(figures[0].1.clone());
    let build_extra = median(figures[1].0.clone()) - median(figures[0].0.clone());
    println!(
        "  LiteRT's cost: convert-litert + validate-litert {litert_steps:.1} s of step time, {build_extra:+.1} s of build wall time \
         (they run beside the other pieces' steps); the script's --litert adds {script_extra:+.1} s"
    );
}

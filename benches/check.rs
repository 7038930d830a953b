//! `exportctl check` on a manifest with 1,000 pieces (10 models × 100 pieces): the target
//! is well under 100 ms for the whole process. Run with `cargo bench --bench check`.
//!
//! Measures both the library call (load + validate + plan) and the real binary end to end.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

fn write_project(dir: &Path, models: usize, pieces: usize) {
    let mut text = String::from("[project]\nname = \"bench\"\n\n[defaults]\ndropout = 0.1\n\n[defaults.docs]\nlicense = \"Apache-2.0\"\n");
    std::fs::create_dir_all(dir.join("models")).unwrap();
    for m in 0..models {
        std::fs::write(dir.join(format!("models/m{m}.keras")), b"").unwrap();
        text.push_str(&format!(
            "\n[models.m{m}]\nsource = \"models/m{m}.keras\"\n\n[models.m{m}.inputs]\nimage = {{ shape = [-1, 96, 96, 3], dtype = \"float32\" }}\n\n[models.m{m}.validate]\nbatch = 2\natol = 1e-5\n"
        ));
        for p in 0..pieces {
            text.push_str(&format!(
                "\n[[models.m{m}.pieces]]\nname = \"piece-{p}\"\nto = [\"layer_{p}\", \"layer_{p}_b\"]\ntrainable = {}\ndocs = {{ description = \"Piece {p}.\", task = \"image-feature-vector\" }}\n",
                p % 2 == 0
            ));
        }
    }
    std::fs::write(dir.join("Export.toml"), text).unwrap();
}

fn stats(label: &str, mut samples: Vec<Duration>) {
    samples.sort();
    let median = samples[samples.len() / 2];
    println!(
        "{label:<45} min {:>7.2} ms   median {:>7.2} ms   max {:>7.2} ms   ({} runs)",
        samples[0].as_secs_f64() * 1e3,
        median.as_secs_f64() * 1e3,
        samples[samples.len() - 1].as_secs_f64() * 1e3,
        samples.len()
    );
}

fn main() {
    let bin = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/release/exportctl");
    let tmp = tempfile::tempdir().unwrap();
    for (models, pieces) in [(1, 10), (10, 100)] {
        let dir = tmp.path().join(format!("p{models}x{pieces}"));
        write_project(&dir, models, pieces);
        let manifest = dir.join("Export.toml");
        let bytes = std::fs::metadata(&manifest).unwrap().len();
        println!("\n{} pieces, manifest {} KiB", models * pieces, bytes / 1024);

        let runs: Vec<Duration> = (0..30)
            .map(|_| {
                let start = Instant::now();
                let m = exportctl::manifest::load(&manifest, "Export.toml").expect("valid manifest");
                let plan = exportctl::plan::Plan::new(&m);
                assert_eq!(plan.len(), models + 4 * models * pieces);
                start.elapsed()
            })
            .collect();
        stats("load + validate + plan (library)", runs);

        if bin.is_file() {
            let runs: Vec<Duration> = (0..30)
                .map(|_| {
                    let start = Instant::now();
                    let out = Command::new(&bin).arg("-C").arg(&dir).arg("check").output().unwrap();
                    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
                    start.elapsed()
                })
                .collect();
            stats("`exportctl check` (release binary, wall)", runs);
        } else {
            println!("(build the release binary first for the end-to-end number: cargo build --release)");
        }
    }
}

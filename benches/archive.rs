//! `model.tar.gz` throughput: exportctl's archiver at its level against the level it used
//! before (6) and against `tar -czf` (GNU tar + gzip, what a hand-written script runs), on a
//! synthetic SavedModel whose variables look like a model's: float32 values of a normal
//! distribution with a Glorot-like scale, the way initialised or trained weights are.
//!
//! `cargo bench --bench archive` (400 MB of weights); `EXPORTCTL_BENCH_MB=100` for less.
//! Target: at least 150 MB/s, i.e. a BERT-base piece (about 420 MB) in under 4 s.

use std::path::Path;
use std::process::Command;
use std::time::Instant;

use exportctl::steps::{archive_saved_model_at, ARCHIVE_LEVEL};

/// A SavedModel-shaped folder: a graph file and `bytes` of float32 weights.
fn write_saved_model(dir: &Path, bytes: usize) {
    std::fs::create_dir_all(dir.join("variables")).unwrap();
    // A graph is mostly repeated op and attribute names: it compresses well.
    let graph: String = (0..20_000).map(|i| format!("node {{ name: \"layer_{i}/kernel\" op: \"VarHandleOp\" }}\n")).collect();
    std::fs::write(dir.join("saved_model.pb"), graph).unwrap();
    let mut state = 0x9E37_79B9_7F4A_7C15u64;
    let mut next = || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        (state >> 11) as f64 / (1u64 << 53) as f64
    };
    let mut weights = Vec::with_capacity(bytes);
    while weights.len() < bytes {
        // Box–Muller: normal values, scaled like a 768-wide layer's initial weights.
        let (u1, u2) = (next().max(f64::MIN_POSITIVE), next());
        let z = (-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos();
        weights.extend_from_slice(&((z * 0.036) as f32).to_le_bytes());
    }
    std::fs::write(dir.join("variables/variables.data-00000-of-00001"), weights).unwrap();
    std::fs::write(dir.join("variables/variables.index"), vec![7u8; 4096]).unwrap();
}

fn main() {
    let mb: usize = std::env::var("EXPORTCTL_BENCH_MB").ok().and_then(|v| v.parse().ok()).unwrap_or(400);
    let tmp = tempfile::tempdir().unwrap();
    let model = tmp.path().join("saved_model");
    write_saved_model(&model, mb << 20);
    let input: u64 = walk_size(&model);
    println!("archiving a SavedModel of {:.0} MB (float32 weights + graph), best of 3\n", input as f64 / 1e6);

    let mut results = Vec::new();
    for (label, level) in [(format!("exportctl (level {ARCHIVE_LEVEL})"), ARCHIVE_LEVEL), ("exportctl at level 6 (before)".to_string(), 6)]
    {
        let dest = tmp.path().join(format!("model-{level}.tar.gz"));
        let mut best = f64::MAX;
        for _ in 0..3 {
            let started = Instant::now();
            archive_saved_model_at(&model, &dest, level).unwrap();
            best = best.min(started.elapsed().as_secs_f64());
        }
        let size = std::fs::metadata(&dest).unwrap().len();
        results.push((label, best, size));
    }
    let dest = tmp.path().join("gnu.tar.gz");
    let mut best = f64::MAX;
    for _ in 0..3 {
        let started = Instant::now();
        let status = Command::new("tar").arg("-czf").arg(&dest).arg("-C").arg(&model).arg(".").status().unwrap();
        assert!(status.success());
        best = best.min(started.elapsed().as_secs_f64());
    }
    results.push(("tar -czf (GNU tar + gzip -6)".to_string(), best, std::fs::metadata(&dest).unwrap().len()));

    println!("{:<34} {:>8} {:>10} {:>8}", "", "seconds", "MB/s", "ratio");
    for (label, seconds, size) in &results {
        println!("{label:<34} {seconds:>8.2} {:>10.0} {:>8.3}", input as f64 / seconds / 1e6, *size as f64 / input as f64);
    }
    let ours = results[0].1;
    println!("\nspeed-up over level 6: {:.1}x; over tar -czf: {:.1}x", results[1].1 / ours, results[2].1 / ours);
    println!("a 420 MB BERT-base piece at this speed: {:.1} s (target: <= 4 s)", 420e6 / (input as f64 / ours));
}

fn walk_size(dir: &Path) -> u64 {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| {
            let e = e.unwrap();
            if e.file_type().unwrap().is_dir() {
                walk_size(&e.path())
            } else {
                e.metadata().unwrap().len()
            }
        })
        .sum()
}

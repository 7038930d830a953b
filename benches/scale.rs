//! exportctl at BERT-base size: the bert-style example with BERT-base's dimensions (vocabulary
//! 30,522, sequence 128, hidden 768, 12 heads, 12 layers, intermediate 3,072), generated here
//! (nothing large is committed), built cold, against a hand-written script doing the same work
//! for the same three pieces (`benches/scale/baseline_bert.py`), in the same run.
//!
//! `cargo bench --bench scale` (about 10 minutes on 2 cores). Targets: cold build ≤ 0.8× the
//! script; peak resident memory of every process ≤ 2.5 GB; `.exportctl/` + `dist/` ≤ 2.5× the
//! bytes of the pieces' `variables/`; `package` ≤ 4 s per piece.
//!
//! Memory is the peak resident set (`VmHWM`) of each process of the tree, sampled every 50 ms;
//! disk counts each file once however many hard links it has.

mod common;
use common::{copy_dir, repo, without_litert};

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// The example with BERT-base's dimensions and a freshly written checkpoint.
fn bert_base(python: &Path, dir: &Path) {
    copy_dir(&repo().join("examples/bert-style"), dir, &["ckpt"]);
    let path = dir.join("encoder.py");
    let mut text = std::fs::read_to_string(&path).unwrap();
    for (name, value) in [("VOCAB", 30522), ("SEQ_LEN", 128), ("HIDDEN", 768), ("HEADS", 12), ("LAYERS", 12), ("INTERMEDIATE", 3072)] {
        let line = text.lines().find(|l| l.starts_with(&format!("{name} = "))).unwrap().to_string();
        text = text.replace(&line, &format!("{name} = {value}"));
    }
    std::fs::write(&path, text).unwrap();
    // SavedModels only, as the script does them: the pooled piece's LiteRT variant is left out
    // (`cold_build` measures LiteRT against a script that does it too).
    let manifest = dir.join("Export.toml");
    let toml = std::fs::read_to_string(&manifest).unwrap();
    std::fs::write(&manifest, without_litert(&toml)).unwrap();
    let status = Command::new(python)
        .arg("make_checkpoint.py")
        .args(["--epochs", "0"])
        .current_dir(dir)
        .env("TF_CPP_MIN_LOG_LEVEL", "3")
        .stdout(Stdio::null())
        .status()
        .unwrap();
    assert!(status.success(), "make_checkpoint.py failed");
}

/// Peak resident memory (bytes) of every process of the tree under `root`, by pid.
struct Watch {
    peaks: Arc<Mutex<BTreeMap<u32, (String, u64)>>>,
    done: Arc<AtomicBool>,
    thread: std::thread::JoinHandle<()>,
}

fn watch(root: u32) -> Watch {
    let peaks = Arc::new(Mutex::new(BTreeMap::new()));
    let done = Arc::new(AtomicBool::new(false));
    let (p, d) = (peaks.clone(), done.clone());
    let thread = std::thread::spawn(move || {
        while !d.load(Ordering::SeqCst) {
            let mut parents: HashMap<u32, u32> = HashMap::new();
            for entry in std::fs::read_dir("/proc").unwrap().flatten() {
                let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else { continue };
                if let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) {
                    if let Some(rest) = stat.rsplit_once(") ").map(|(_, r)| r.to_string()) {
                        if let Some(ppid) = rest.split_whitespace().nth(1).and_then(|v| v.parse().ok()) {
                            parents.insert(pid, ppid);
                        }
                    }
                }
            }
            let mut tree: HashSet<u32> = HashSet::from([root]);
            let mut grew = true;
            while grew {
                grew = false;
                for (&pid, &ppid) in &parents {
                    if tree.contains(&ppid) && tree.insert(pid) {
                        grew = true;
                    }
                }
            }
            for pid in tree {
                let Ok(status) = std::fs::read_to_string(format!("/proc/{pid}/status")) else { continue };
                let field = |name: &str| status.lines().find(|l| l.starts_with(name)).map(|l| l[name.len()..].trim().to_string());
                let name = field("Name:").unwrap_or_default();
                let kib: u64 = field("VmHWM:").and_then(|v| v.trim_end_matches(" kB").trim().parse().ok()).unwrap_or(0);
                let mut peaks = p.lock().unwrap();
                let entry = peaks.entry(pid).or_insert((name, 0));
                entry.1 = entry.1.max(kib * 1024);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    });
    Watch { peaks, done, thread }
}

fn finish(mut child: Child, watch: Watch) -> (std::process::Output, f64, BTreeMap<u32, (String, u64)>) {
    let started = Instant::now();
    let mut stdout = Vec::new();
    if let Some(mut out) = child.stdout.take() {
        std::io::Read::read_to_end(&mut out, &mut stdout).unwrap();
    }
    let status = child.wait().unwrap();
    let _ = started;
    watch.done.store(true, Ordering::SeqCst);
    watch.thread.join().unwrap();
    let peaks = watch.peaks.lock().unwrap().clone();
    (std::process::Output { status, stdout, stderr: Vec::new() }, 0.0, peaks)
}

/// Bytes of the files under the given folders, each file (inode) counted once.
fn unique_bytes(dirs: &[PathBuf]) -> u64 {
    use std::os::unix::fs::MetadataExt as _;
    fn walk(dir: &Path, seen: &mut HashSet<(u64, u64)>, total: &mut u64) {
        let Ok(entries) = std::fs::read_dir(dir) else { return };
        for entry in entries.flatten() {
            let meta = std::fs::symlink_metadata(entry.path()).unwrap();
            if meta.is_dir() {
                walk(&entry.path(), seen, total);
            } else if seen.insert((meta.dev(), meta.ino())) {
                *total += meta.len();
            }
        }
    }
    let (mut seen, mut total) = (HashSet::new(), 0);
    for dir in dirs {
        walk(dir, &mut seen, &mut total);
    }
    total
}

fn gb(bytes: u64) -> String {
    format!("{:.2} GB", bytes as f64 / 1e9)
}

fn main() {
    let settings = exportctl::manifest::RuntimeSettings {
        python: None,
        tensorflow: "2.21.0".into(),
        keras: exportctl::manifest::KerasFlavour::Auto,
        timeout_secs: 3600,
    };
    let runtime = exportctl::runtime::discover(&settings, &repo(), &exportctl::runtime::Discovery { install: true, progress: true })
        .expect("the managed runtime");
    let tmp = tempfile::Builder::new().prefix("exportctl-scale-").tempdir_in(repo().join("target")).unwrap();
    let project = tmp.path().join("bert-base");
    println!("generating the BERT-base-sized project (checkpoint written by make_checkpoint.py)…");
    let started = Instant::now();
    bert_base(&runtime.python, &project);
    let checkpoint = unique_bytes(&[project.join("ckpt")]);
    println!("  checkpoint {} in {:.0} s\n", gb(checkpoint), started.elapsed().as_secs_f64());

    // exportctl, cold.
    let started = Instant::now();
    let child = Command::new(env!("CARGO_BIN_EXE_exportctl"))
        .arg("-C")
        .arg(&project)
        .args(["build", "--message-format", "json"])
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let w = watch(child.id());
    let (out, _, peaks) = finish(child, w);
    let ours = started.elapsed().as_secs_f64();
    assert!(out.status.success(), "exportctl failed");
    let events: Vec<serde_json::Value> =
        String::from_utf8_lossy(&out.stdout).lines().filter_map(|l| serde_json::from_str(l).ok()).collect();
    let mut packages = Vec::new();
    println!("exportctl build: {ours:.1} s");
    for e in events.iter().filter(|e| e["event"] == "step-finished") {
        let phases = e["phases"].as_object().cloned().unwrap_or_default();
        let top: Vec<String> = {
            let mut p: Vec<(String, u64)> = phases.iter().map(|(k, v)| (k.clone(), v.as_u64().unwrap_or(0))).collect();
            p.sort_by_key(|(_, ms)| std::cmp::Reverse(*ms));
            p.into_iter().take(4).filter(|(_, ms)| *ms >= 500).map(|(k, ms)| format!("{k} {:.1} s", ms as f64 / 1000.0)).collect()
        };
        println!(
            "  {:<40} {:>6.1} s   {}",
            e["step"].as_str().unwrap_or(""),
            e["duration_ms"].as_f64().unwrap_or(0.0) / 1000.0,
            top.join(", ")
        );
        if e["kind"] == "package" {
            packages.push(e["duration_ms"].as_f64().unwrap_or(0.0) / 1000.0);
        }
    }
    let our_peak = peaks.values().map(|(_, b)| *b).max().unwrap_or(0);
    for (pid, (name, bytes)) in &peaks {
        if *bytes > 100 << 20 {
            println!("  process {pid} ({name}): peak {}", gb(*bytes));
        }
    }
    let variables: u64 = {
        let mut total = 0;
        for piece in ["encoder/encoder", "encoder/pooled", "encoder-with-mlm/mlm"] {
            total += unique_bytes(&[project.join("dist").join(piece).join("1/saved_model/variables")]);
        }
        total
    };
    let disk = unique_bytes(&[project.join(".exportctl"), project.join("dist")]);

    // The hand-written script.
    let out_dir = tmp.path().join("baseline");
    std::fs::create_dir_all(&out_dir).unwrap();
    let started = Instant::now();
    let child = Command::new(&runtime.python)
        .arg(repo().join("benches/scale/baseline_bert.py"))
        .arg(&project)
        .arg(&out_dir)
        .env("TF_CPP_MIN_LOG_LEVEL", "3")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let w = watch(child.id());
    let (out, _, base_peaks) = finish(child, w);
    let theirs = started.elapsed().as_secs_f64();
    assert!(out.status.success(), "the baseline script failed");
    let their_peak = base_peaks.values().map(|(_, b)| *b).max().unwrap_or(0);

    println!("\nBERT-base size, 3 pieces (encoder, pooled, mlm):");
    println!("  {:<44} {:>10} {:>12}", "", "exportctl", "script");
    println!("  {:<44} {:>9.1}s {:>11.1}s", "cold build", ours, theirs);
    println!("  {:<44} {:>10} {:>12}", "peak resident memory of a process", gb(our_peak), gb(their_peak));
    println!("  {:<44} {:>10}", ".exportctl/ + dist/ (each file once)", gb(disk));
    println!("  {:<44} {:>10}", "the pieces' variables/", gb(variables));
    println!("  {:<44} {:>10}", "package, slowest piece", format!("{:.1} s", packages.iter().cloned().fold(0.0, f64::max)));
    println!("\n  build ratio {:.2} (target <= 0.80)", ours / theirs);
    println!("  peak memory {} (target <= 2.5 GB)", gb(our_peak));
    println!("  disk ratio {:.2} (target <= 2.5)", disk as f64 / variables.max(1) as f64);
    println!("  package {:.1} s per piece at most (target <= 4 s)", packages.iter().cloned().fold(0.0, f64::max));
}

//! The shared remote cache against a real nginx (WebDAV, the setup Bazel documents for its HTTP
//! cache) on a loopback port:
//!
//! 1. **A clean clone with a warm remote cache.** Clone A builds `examples/mobilenet` from
//!    nothing and uploads; clone B, with an empty `.exportctl/` and an empty `EXPORTCTL_HOME`
//!    (no managed runtime installed), builds the same manifest. Target: B in ≤ 3 s, starting no
//!    Python; shown against A's cold build.
//! 2. **Throughput of one large blob** (1 GB by default) through exportctl's remote cache: an
//!    upload (hashing, HEAD, streamed PUT, then the `ac` entry) and a download into an empty
//!    store (streamed, hashed with SHA-256 and BLAKE3 on the way, then adopted), against `curl`
//!    moving the same file to and from the same server. Target: ≥ 300 MB/s each way.
//!
//! `cargo bench --bench remote`; `EXPORTCTL_BENCH_MB=256` for a smaller blob.

mod common;
use common::{copy_dir, repo};

#[path = "../tests/integration/nginx.rs"]
mod nginx;

use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::time::Instant;

use exportctl::cache::store::Store;
use exportctl::cache::verify::Verifier;
use exportctl::cache::{Remote, RemoteConfig};
use exportctl::exec::StepOutcome;
use exportctl::manifest::CacheSettings;
use nginx::Nginx;

/// Runs a JSON build of `project`; returns the seconds it took and its `build-finished` event.
fn build(project: &Path, envs: &[(&str, &Path)], url: &str) -> (f64, serde_json::Value) {
    let mut command = Command::new(env!("CARGO_BIN_EXE_exportctl"));
    command.arg("-C").arg(project).args(["build", "--message-format", "json"]).env("EXPORTCTL_REMOTE_CACHE", url);
    for (name, value) in envs {
        command.env(name, value);
    }
    let started = Instant::now();
    let out = command.output().unwrap();
    let seconds = started.elapsed().as_secs_f64();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "the build failed:\n{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    let finished = stdout
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .find(|e| e["event"] == "build-finished")
        .expect("a build-finished event");
    (seconds, finished)
}

fn warm_clone(server: &Nginx, tmp: &Path) {
    let example = repo().join("examples/mobilenet");
    let url = server.url("cache");
    let a = tmp.join("a/mobilenet");
    copy_dir(&example, &a, &[]);
    let (cold, finished_a) = build(&a, &[], &url);
    println!("clone A, cold, uploads:            {cold:6.1} s  ({} steps ran)", finished_a["ran"]);

    let b = tmp.join("b/mobilenet");
    copy_dir(&example, &b, &[]);
    let home = tmp.join("b/empty-home");
    std::fs::create_dir_all(&home).unwrap();
    let (warm, finished_b) = build(&b, &[("EXPORTCTL_HOME", &home)], &url);
    println!(
        "clone B, empty cache, warm remote: {warm:6.2} s  ({} ran, {} from the remote; python started: {})",
        finished_b["ran"], finished_b["cached"], finished_b["python_started"]
    );
    println!("  ratio B / A: {:.3}   target: B ≤ 3 s with no Python", warm / cold);
    assert_eq!(finished_b["ran"], 0, "clone B ran steps: {finished_b}");
    assert_eq!(finished_b["python_started"], false, "clone B started Python: {finished_b}");
    for piece in ["classification", "feature-vector"] {
        let archive = |root: &Path| {
            let path = root.join(format!("dist/mobilenet/{piece}/1/model.tar.gz"));
            std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        };
        assert!(archive(&a) == archive(&b), "{piece}'s archive differs between the clones");
    }
}

fn mb_per_s(bytes: u64, seconds: f64) -> f64 {
    bytes as f64 / 1e6 / seconds
}

fn throughput(server: &Nginx, tmp: &Path, mb: u64) {
    let bytes = mb << 20;
    // SAFETY: this benchmark is single-threaded here; the variable is read by `resolve` below.
    unsafe {
        std::env::set_var("EXPORTCTL_REMOTE_CACHE", server.url("cache"));
        std::env::set_var("EXPORTCTL_REMOTE_UPLOAD", "1");
    }
    let config = RemoteConfig::resolve(&CacheSettings::default()).unwrap().expect("a remote cache");

    // An entry with one large output, as a step would leave it in the local cache.
    let a = tmp.join("store-a");
    let store = Store::open(&a).unwrap();
    let verifier = Arc::new(Verifier::new(&a));
    let key = format!("{:064x}", mb);
    let pending = store.begin(&key, "bench/blob:package").unwrap();
    std::fs::create_dir_all(pending.out()).unwrap();
    let blob = pending.out().join("model.bin");
    write_random(&blob, bytes);
    let entry = pending.commit(StepOutcome::default(), 0.0, None, &verifier).unwrap();
    let blob = entry.out().join("model.bin");

    let remote = Arc::new(Remote::new(config.clone(), verifier.clone()));
    let started = Instant::now();
    remote.upload(entry);
    remote.finish_uploads();
    let up = started.elapsed().as_secs_f64();
    assert!(remote.take_warnings().is_empty(), "the upload warned");

    let b = tmp.join("store-b");
    let store_b = Store::open(&b).unwrap();
    let remote_b = Remote::new(config, Arc::new(Verifier::new(&b)));
    let started = Instant::now();
    let fetched = remote_b.fetch(&key, &store_b, &|_, _| {});
    let fetched = fetched.unwrap_or_else(|| panic!("the entry did not come back: {:?}", remote_b.take_warnings()));
    let down = started.elapsed().as_secs_f64();
    assert_eq!(std::fs::metadata(fetched.out().join("model.bin")).unwrap().len(), bytes);

    // The same bytes moved by curl, to and from the same server.
    let curl_up = timed(Command::new("curl").args(["-sSf", "-o", "/dev/null", "-T"]).arg(&blob).arg(server.url("cache/bench-curl")));
    let curl_down = timed(Command::new("curl").args(["-sSf", "-o", "/dev/null"]).arg(server.url("cache/bench-curl")));

    println!("\none {mb} MB blob over loopback (MB/s, higher is better):");
    println!("  {:<44} {:>8} {:>8}", "", "upload", "download");
    println!("  {:<44} {:>8.0} {:>8.0}", "exportctl (hashes, checks, entry)", mb_per_s(bytes, up), mb_per_s(bytes, down));
    println!("  {:<44} {:>8.0} {:>8.0}", "curl (moves the bytes only)", mb_per_s(bytes, curl_up), mb_per_s(bytes, curl_down));
    println!("  ratio exportctl / curl: upload {:.2}, download {:.2}   target: ≥ 300 MB/s each way", curl_up / up, curl_down / down);
}

fn timed(command: &mut Command) -> f64 {
    let started = Instant::now();
    let status = command.status().expect("curl runs");
    assert!(status.success(), "curl failed");
    started.elapsed().as_secs_f64()
}

/// `bytes` of incompressible data, written in 8 MB chunks.
fn write_random(path: &Path, bytes: u64) {
    use std::io::Write;
    let mut file = std::io::BufWriter::new(std::fs::File::create(path).unwrap());
    let mut state = 0x9E37_79B9_7F4A_7C15u64;
    let mut chunk = vec![0u8; 8 << 20];
    let mut left = bytes;
    while left > 0 {
        for word in chunk.chunks_exact_mut(8) {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            word.copy_from_slice(&state.to_le_bytes());
        }
        let n = left.min(chunk.len() as u64) as usize;
        file.write_all(&chunk[..n]).unwrap();
        left -= n as u64;
    }
    file.flush().unwrap();
}

fn main() {
    let mb: u64 = std::env::var("EXPORTCTL_BENCH_MB").ok().and_then(|v| v.parse().ok()).unwrap_or(1024);
    let parent = repo().join("target/bench-tmp");
    std::fs::create_dir_all(&parent).unwrap();
    let tmp = tempfile::tempdir_in(&parent).unwrap();
    let mut server = Nginx::start(tmp.path());
    println!("nginx {} (WebDAV) on loopback\n", server.url(""));
    if std::env::var_os("EXPORTCTL_BENCH_SKIP_BUILD").is_none() {
        warm_clone(&server, tmp.path());
    }
    throughput(&server, tmp.path(), mb);
    server.stop();
}

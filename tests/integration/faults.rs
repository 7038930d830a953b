//! A seeded randomized fault test: builds of the quickstart killed (SIGKILL to exportctl's
//! whole process group, worker included) at random moments, cold and incremental, each
//! followed by a build that must complete with a `dist/` and `Export.lock` byte-identical to
//! a clean build's of the same sources, and a cache that `exportctl cache verify` passes.
//!
//! The seed is printed; `EXPORTCTL_FAULT_SEED=N` replays a run, `EXPORTCTL_FAULT_ROUNDS=N`
//! changes how many kills are tried (default 8: 3 cold, 5 incremental; a few minutes on two
//! cores). No assertion is about time: the delays only choose where a build is cut.
//!
//! The references come from the shared built quickstart (`build::built_quickstart`): its
//! `dist/` for the sources as committed, and one incremental build of a copy for each edited
//! state (a docs edit, then a validate setting). That an incremental build writes what a clean
//! one writes is what `reproducible.rs` checks; here it saves two cold builds.

use std::collections::BTreeMap;
use std::os::unix::process::CommandExt as _;
use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use crate::build::built_quickstart;
use crate::support::{exportctl, runtime, stderr, stdout, Project};

/// splitmix64: a small, seedable generator (the delays need no more).
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Milliseconds in `[0, max)`.
    fn millis(&mut self, max: u64) -> u64 {
        self.next() % max
    }
}

fn env_number(name: &str) -> Option<u64> {
    let value = std::env::var(name).ok()?;
    Some(value.trim().parse().unwrap_or_else(|_| panic!("{name}={value} is not a number")))
}

/// The bytes that ship: every file under `dist/`, and `Export.lock`.
fn shipped(project: &Path) -> BTreeMap<String, Vec<u8>> {
    fn walk(root: &Path, dir: &Path, out: &mut BTreeMap<String, Vec<u8>>) {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            let meta = std::fs::symlink_metadata(&path).unwrap();
            let relative = path.strip_prefix(root).unwrap().to_string_lossy().into_owned();
            if meta.is_dir() {
                walk(root, &path, out);
            } else if meta.file_type().is_symlink() {
                out.insert(relative, format!("symlink -> {}", std::fs::read_link(&path).unwrap().display()).into_bytes());
            } else {
                out.insert(relative, std::fs::read(&path).unwrap());
            }
        }
    }
    let mut out = BTreeMap::new();
    walk(project, &project.join("dist"), &mut out);
    out.insert("Export.lock".into(), std::fs::read(project.join("Export.lock")).unwrap_or_default());
    out
}

/// What differs between two `shipped` maps, one line per file.
fn differences(got: &BTreeMap<String, Vec<u8>>, expected: &BTreeMap<String, Vec<u8>>) -> Vec<String> {
    let mut out = Vec::new();
    for (name, bytes) in expected {
        match got.get(name) {
            None => out.push(format!("{name}: missing")),
            Some(b) if b != bytes => out.push(format!("{name}: {} bytes, expected {} bytes with other contents", b.len(), bytes.len())),
            Some(_) => {}
        }
    }
    out.extend(got.keys().filter(|n| !expected.contains_key(*n)).map(|n| format!("{n}: not in a clean build")));
    out
}

/// The sources' states the incremental rounds move between: (docs edited, validate seed).
const STATES: [(bool, u32); 3] = [(false, 0), (true, 0), (true, 1)];

struct Sources {
    docs: String,
    manifest: String,
}

impl Sources {
    fn of(project: &Project) -> Sources {
        Sources {
            docs: std::fs::read_to_string(project.path().join("docs/classifier.md")).unwrap(),
            manifest: std::fs::read_to_string(project.path().join("Export.toml")).unwrap(),
        }
    }

    fn write(&self, project: &Project, (docs_edited, seed): (bool, u32)) {
        let docs = if docs_edited { format!("{}\n## Changelog\n\nEdited between builds.\n", self.docs) } else { self.docs.clone() };
        std::fs::write(project.path().join("docs/classifier.md"), docs).unwrap();
        assert!(self.manifest.contains("\nseed = 0\n"));
        let manifest = self.manifest.replace("\nseed = 0\n", &format!("\nseed = {seed}\n"));
        std::fs::write(project.path().join("Export.toml"), manifest).unwrap();
    }
}

enum Ending {
    Killed,
    /// The build ended before the kill came (after this long): nothing was cut.
    FinishedFirst(Duration),
}

/// Starts `exportctl build` in its own process group and SIGKILLs the group after `delay`.
fn build_killed_after(project: &Project, delay: Duration) -> Ending {
    let mut child = exportctl()
        .arg("-C")
        .arg(project.path())
        .args(["build", "-q"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .process_group(0)
        .spawn()
        .unwrap();
    let started = Instant::now();
    while started.elapsed() < delay {
        if child.try_wait().unwrap().is_some() {
            return Ending::FinishedFirst(started.elapsed());
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    // SAFETY: kill(2) on the process group of our own child (its pid is the group's id).
    let sent = unsafe { libc::kill(-(child.id() as i32), libc::SIGKILL) };
    child.wait().unwrap();
    if sent == 0 {
        Ending::Killed
    } else {
        Ending::FinishedFirst(started.elapsed())
    }
}

#[test]
fn builds_killed_at_random_points_ship_the_bytes_of_a_clean_build() {
    runtime();
    let seed = env_number("EXPORTCTL_FAULT_SEED")
        .unwrap_or_else(|| std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos() as u64);
    let rounds = env_number("EXPORTCTL_FAULT_ROUNDS").unwrap_or(8).max(2);
    eprintln!("fault test: seed {seed} (EXPORTCTL_FAULT_SEED={seed} replays it), {rounds} rounds");
    let mut rng = Rng(seed);

    // References: the clean build of each state.
    let template = built_quickstart();
    let sources = Sources::of(&template);
    let mut references = vec![shipped(template.path())];
    let reference_project = built_quickstart();
    // How long an uncut build takes, to cut it somewhere inside (updated by builds that end
    // before their kill): only where the kill lands depends on it, never a result.
    let mut cold_length = Duration::from_secs(20);
    let mut incremental_length = Duration::from_secs(60);
    for &state in &STATES[1..] {
        sources.write(&reference_project, state);
        let started = Instant::now();
        let out = reference_project.run(&["build", "-q"]);
        incremental_length = incremental_length.min(started.elapsed());
        assert!(out.status.success(), "{}", stderr(&out));
        references.push(shipped(reference_project.path()));
    }
    assert_ne!(references[0], references[1], "the docs edit changes what ships");

    let cold_rounds = rounds.div_ceil(3);
    let mut killed = 0;
    let mut finished_first = 0;
    let mut mismatches: Vec<String> = Vec::new();
    let incremental = built_quickstart();
    let mut state = 0;
    for round in 0..rounds {
        let cold = round < cold_rounds;
        let fresh;
        let (project, delay, target) = if cold {
            fresh = Project::example("quickstart");
            (&fresh, Duration::from_millis(rng.millis(cold_length.as_millis() as u64 + 1)), 0)
        } else {
            // The same project goes on from where the last round left it: edit, cut, rebuild.
            let next = (state + 1 + rng.millis(2) as usize) % STATES.len();
            sources.write(&incremental, STATES[next]);
            state = next;
            (&incremental, Duration::from_millis(rng.millis(incremental_length.as_millis() as u64 + 1)), next)
        };
        let ending = build_killed_after(project, delay);
        let what = format!("round {round} ({}, state {target}, kill after {delay:?})", if cold { "cold" } else { "incremental" });
        match ending {
            Ending::Killed => killed += 1,
            Ending::FinishedFirst(length) => {
                finished_first += 1;
                *(if cold { &mut cold_length } else { &mut incremental_length }) = length;
            }
        }
        let out = project.run(&["build", "-q"]);
        if !out.status.success() {
            mismatches.push(format!("{what}: the build after the kill failed:\n{}", stderr(&out)));
            continue;
        }
        let diff = differences(&shipped(project.path()), &references[target]);
        if !diff.is_empty() {
            mismatches.push(format!("{what}: dist/ differs from a clean build's:\n  {}", diff.join("\n  ")));
        }
        let out = project.run(&["cache", "verify"]);
        if !out.status.success() {
            mismatches.push(format!("{what}: cache verify failed:\n{}{}", stdout(&out), stderr(&out)));
        }
        eprintln!("{what}: {}", if matches!(ending, Ending::Killed) { "killed, rebuilt" } else { "finished before the kill" });
    }
    eprintln!(
        "fault test: seed {seed}: {killed} kills survived, {finished_first} builds finished before their kill, {} mismatches",
        mismatches.len()
    );
    assert!(killed > 0, "no build was cut: every one finished before its kill");
    assert!(mismatches.is_empty(), "seed {seed}:\n{}", mismatches.join("\n"));
}

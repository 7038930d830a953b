//! Whatever the bytes of a manifest, the loader answers with a manifest or with errors: it
//! never panics, every error's span lies within the text on character boundaries, and the
//! errors render.
//!
//! Seeds (the TOML example, its YAML twin and some corpus cases) are mutated by a small seeded
//! PRNG: byte flips, lines and characters deleted, duplicated or swapped, truncation, and
//! insertion of the tokens parsers trip on (brackets, quotes, tabs, multibyte characters,
//! huge numbers, deep nesting). Deterministic by default; `EXPORTCTL_FUZZ_SEED` and
//! `EXPORTCTL_FUZZ_ROUNDS` explore further. A failing input is written under
//! `target/test-tmp/` so that it can be replayed with `exportctl check`.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};

use exportctl::manifest::{self, ManifestErrors, ManifestSource};

use crate::support::{repo, stderr, target_tmp, Project};

/// xorshift64*: small, seedable, good enough to pick mutations.
struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Rng {
        Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }

    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// A number in `0..n` (0 when `n` is 0).
    fn below(&mut self, n: usize) -> usize {
        if n == 0 {
            0
        } else {
            (self.next() % n as u64) as usize
        }
    }

    fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len())]
    }
}

/// What parsers trip on: structure characters, whitespace they care about, multibyte text,
/// numbers at the edges, YAML's special forms, and nesting deep enough to hit recursion limits.
const TOKENS: &[&str] = &[
    "[",
    "]",
    "[[",
    "]]",
    "{",
    "}",
    "\"",
    "'",
    "\"\"\"",
    ":",
    ": ",
    "- ",
    "=",
    ",",
    ".",
    "#",
    "\t",
    "\n",
    "\r\n",
    "\r",
    " ",
    "\\",
    "\\u",
    "é",
    "日本語",
    "🦀",
    "\u{301}",
    "\u{feff}",
    "\u{0}",
    "ß",
    "İ",
    "99999999999999999999",
    "-9223372036854775809",
    "1e999",
    "-0",
    "0x",
    "0o7",
    "nan",
    "-inf",
    ".inf",
    "1979-05-27T07:32:00Z",
    "&a ",
    "*a",
    "!!str ",
    "!!int ",
    "!tag ",
    "---\n",
    "...\n",
    "? ",
    "| ",
    "> ",
    "~",
    "null",
    "true",
    "yes",
    "[[[[[[",
    "{{{{{{",
    "]]]]]]",
    "- - - - - - ",
    "name = ",
    "name: ",
    "[models.x]\n",
    "[[models.x.pieces]]\n",
    "source = \"a.py:f\"\n",
    "../",
    "/",
    "~/",
    "models/",
    ".exportctl",
];

fn mutate(rng: &mut Rng, text: &[u8], donors: &[Vec<u8>]) -> Vec<u8> {
    let mut bytes = text.to_vec();
    for _ in 0..1 + rng.below(4) {
        let len = bytes.len();
        let at = rng.below(len + 1);
        match rng.below(11) {
            0 if len > 0 => bytes[at.min(len - 1)] ^= 1 << rng.below(8),
            1 => {
                let end = (at + 1 + rng.below(12)).min(len);
                bytes.drain(at.min(end)..end);
            }
            2 => {
                let end = (at + 1 + rng.below(12)).min(len);
                let copy = bytes[at.min(end)..end].to_vec();
                bytes.splice(at..at, copy);
            }
            3 if len > 1 => bytes.swap(at.min(len - 2), at.min(len - 2) + 1),
            4 => bytes.truncate(at),
            5 | 6 => {
                let token = rng.pick(TOKENS);
                let token = if token.starts_with("[[[[") || token.starts_with("{{{{") {
                    token.repeat(1 + rng.below(60))
                } else {
                    token.to_string()
                };
                bytes.splice(at..at, token.into_bytes());
            }
            7 if rng.below(4) == 0 => {
                // Windows line endings for the whole file (or what is left of it).
                let text = String::from_utf8_lossy(&bytes).replace("\r\n", "\n").replace('\n', "\r\n");
                bytes = text.into_bytes();
            }
            7..=10 => {
                let mut lines: Vec<Vec<u8>> = bytes.split(|b| *b == b'\n').map(<[u8]>::to_vec).collect();
                let n = lines.len();
                let i = rng.below(n);
                match rng.below(4) {
                    0 => {
                        lines.remove(i);
                    }
                    1 => {
                        let line = lines[i].clone();
                        lines.insert(i, line);
                    }
                    2 => {
                        let j = rng.below(n);
                        lines.swap(i, j);
                    }
                    _ => {
                        // A line from another seed: a key in the wrong place, or the other format.
                        let donor = rng.pick(donors);
                        let donor_lines: Vec<&[u8]> = donor.split(|b| *b == b'\n').collect();
                        lines.insert(i, rng.pick(&donor_lines).to_vec());
                    }
                }
                bytes = lines.join(&b'\n');
            }
            _ => {}
        }
    }
    bytes
}

/// Parses `text` as `name`, and checks what the loader promises about any input.
fn check_one(name: &str, text: &str, root: &Path) -> Result<(), String> {
    let source = ManifestSource::new(PathBuf::from(name), name.to_string(), text.to_string());
    let parsed = catch_unwind(AssertUnwindSafe(|| manifest::parse(source, root)))
        .map_err(|panic| format!("parse panicked: {}", panic_message(&*panic)))?;
    let Err(errors) = parsed else { return Ok(()) };
    if errors.errors.is_empty() {
        return Err("an Err without errors".into());
    }
    for e in &errors.errors {
        let span = &e.span;
        let inside = span.start <= span.end && span.end <= text.len();
        if !inside || !text.is_char_boundary(span.start) || !text.is_char_boundary(span.end) {
            return Err(format!("error[{}] `{}` has span {span:?}, not within the text on char boundaries", e.code, e.message));
        }
        if e.help.as_deref().is_none_or(|h| h.trim().is_empty()) {
            return Err(format!("error[{}] `{}` has no help", e.code, e.message));
        }
    }
    render(&errors)
}

fn render(errors: &ManifestErrors) -> Result<(), String> {
    let plain =
        catch_unwind(AssertUnwindSafe(|| errors.render_plain())).map_err(|p| format!("render_plain panicked: {}", panic_message(&*p)))?;
    if !plain.contains("error[") {
        return Err(format!("render_plain shows no error:\n{plain}"));
    }
    // What a terminal shows: miette's reports, rendered from the same spans.
    catch_unwind(AssertUnwindSafe(|| errors.reports().iter().map(|r| format!("{r:?}")).collect::<String>()))
        .map_err(|p| format!("a miette report panicked: {}", panic_message(&*p)))?;
    Ok(())
}

fn panic_message(panic: &(dyn std::any::Any + Send)) -> String {
    panic
        .downcast_ref::<String>()
        .cloned()
        .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
        .unwrap_or_else(|| "(no message)".into())
}

/// A project holding every file the example manifests name, so that unmutated seeds are valid
/// and mutations start from a manifest that passes.
fn example_project() -> Project {
    Project::new()
        .file("models/mobilenet.keras", "placeholder")
        .file("layers.py", "# custom layers\n")
        .file("encoder.py", "def build_encoder():\n    pass\n")
        .file("ckpt/ckpt-7.index", "placeholder")
        .file("data/samples.npz", "placeholder")
        .file("docs/mobilenet.md", "# MobileNet\n")
}

/// (file name, text) of every seed: the two examples first, then corpus cases.
fn seeds() -> Vec<(String, String)> {
    let read = |path: PathBuf| std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let mut seeds = vec![
        ("Export.toml".to_string(), read(repo().join("Export.toml.example"))),
        ("export.yaml".to_string(), read(repo().join("tests/bad-manifests/seeds/export.yaml"))),
    ];
    for case in [
        "several-errors.toml",
        "syntax-unclosed-array.toml",
        "duplicate-table.toml",
        "unsupported-dtype.toml",
        "yaml-several-errors.yaml",
        "yaml-anchor-reused-bad-value.yaml",
        "yaml-unsupported-tag.yaml",
        "yaml-null-source.yaml",
    ] {
        seeds.push((case.to_string(), read(repo().join("tests/bad-manifests/cases").join(case))));
    }
    seeds
}

fn env_number(name: &str, default: u64) -> u64 {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

#[test]
fn the_example_seeds_are_valid() {
    let project = example_project();
    for (name, text) in seeds().into_iter().take(2) {
        let source = ManifestSource::new(PathBuf::from(&name), name.clone(), text);
        if let Err(errors) = manifest::parse(source, project.path()) {
            panic!("{name} should be valid:\n{}", errors.render_plain());
        }
    }
}

#[test]
fn mutated_manifests_never_panic_and_stay_within_the_text() {
    let seed = env_number("EXPORTCTL_FUZZ_SEED", 0x5EED);
    let rounds = env_number("EXPORTCTL_FUZZ_ROUNDS", 2000);
    let project = example_project();
    let seeds = seeds();
    let donors: Vec<Vec<u8>> = seeds.iter().map(|(_, t)| t.clone().into_bytes()).collect();
    let mut rng = Rng::new(seed);
    let mut checked = 0;
    for round in 0..rounds {
        for (name, text) in &seeds {
            let bytes = mutate(&mut rng, text.as_bytes(), &donors);
            let mutated = String::from_utf8_lossy(&bytes).into_owned();
            if let Err(problem) = check_one(name, &mutated, project.path()) {
                let saved = target_tmp().join(format!("fuzz-failure-{seed}-{round}-{name}"));
                std::fs::write(&saved, &mutated).unwrap();
                panic!("{name}, seed {seed}, round {round}: {problem}\nthe input is saved in {}", saved.display());
            }
            checked += 1;
        }
    }
    assert_eq!(checked, rounds as usize * seeds.len());
}

/// The real binary, on a few mutated files (one not even UTF-8): exit 0 if the mutation kept
/// the manifest valid, 2 otherwise, and never a panic.
#[test]
fn the_binary_reports_mutated_manifests_without_panicking() {
    let mut rng = Rng::new(env_number("EXPORTCTL_FUZZ_SEED", 0x5EED) ^ 0xB1);
    let seeds = seeds();
    let donors: Vec<Vec<u8>> = seeds.iter().map(|(_, t)| t.clone().into_bytes()).collect();
    for i in 0..8 {
        let (name, text) = &seeds[i % 2];
        let mut bytes = mutate(&mut rng, text.as_bytes(), &donors);
        if i == 7 {
            bytes.splice(0..0, [0xff, 0xfe, b'[', 0xc3]);
        }
        let project = example_project();
        std::fs::write(project.path().join(name), &bytes).unwrap();
        let out = project.run(&["check"]);
        let err = stderr(&out);
        let code = out.status.code();
        assert!(matches!(code, Some(0 | 2)), "{name} #{i}: exit {code:?}\n{err}\n--- input ---\n{}", String::from_utf8_lossy(&bytes));
        assert!(!err.contains("panicked"), "{name} #{i}: the binary panicked:\n{err}");
        if code == Some(2) {
            assert!(err.contains("error"), "{name} #{i}: exit 2 without an error message:\n{err}");
        }
    }
}

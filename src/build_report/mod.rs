//! The build report: one self-contained HTML page per build that ran a step.
//!
//! **What it shows** — what a person asks when a build is slow or a check fails:
//!
//! | section | from |
//! |---------|------|
//! | a timeline of the steps on the scheduler's threads, cache hits marked | each result's [`Slot`] (start, thread) and duration |
//! | each step's phases (worker start, load, trace, each check, archive) and peak memory | [`StepOutcome::phases`](crate::exec::StepOutcome) |
//! | the plan as a graph, each node coloured by its outcome | the petgraph [`Plan`], laid out in layers by depth |
//! | per piece: validate's checks (and validate-litert's, for a LiteRT piece) with the largest differences and tolerances, sizes, parameters, the signature, `model.tflite`'s size, quantization and ops, warnings with their help, a link to the package's `model.md` | validate's `report.json` ([`Report`]), validate-litert's `litert-report.json` ([`LitertReport`]) and every step's warnings |
//!
//! **Self-contained**: CSS, SVG and the script are inline and nothing is fetched, so the page
//! opens offline, from CI artifacts and in a mail attachment alike. The pictures are drawn
//! here, as SVG: the plan is a DAG of five layers at most, which a layering by depth lays out
//! well, so no graph-layout library is needed (nor a JavaScript one at view time).
//!
//! **Where**: `.exportctl/reports/latest.html`, and a copy named after the build's UTC time
//! (`build-20261201T162941Z.html`) of which the last [`KEEP`] are kept. Links to `dist/` are
//! relative, so they work from both. A report is a view, not an output: it is written after
//! `dist/` and `Export.lock` and never read by a build.

mod html;
mod svg;

use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use crate::error::Error;
use crate::exec::{BuildSummary, Phases, Slot, Status, Warning};
use crate::manifest::Manifest;
use crate::plan::{Plan, StepKind};
use crate::steps::files;
use crate::steps::validate::Report;
use crate::steps::validate_litert::LitertReport;

/// How many timestamped reports are kept besides `latest.html`.
pub const KEEP: usize = 10;

/// The folder of the reports, under the project's `.exportctl/`.
pub fn dir(root: &Path) -> PathBuf {
    crate::cache::dir(root).join("reports")
}

/// The last build's report, if there is one.
pub fn latest(root: &Path) -> Option<PathBuf> {
    let path = dir(root).join("latest.html");
    path.is_file().then_some(path)
}

/// Everything the page shows, gathered once from the build.
#[derive(Debug, Clone)]
pub struct BuildReport {
    pub project: String,
    /// When the build finished, seconds since the Unix epoch.
    pub finished: u64,
    pub seconds: f64,
    pub threads: usize,
    /// The build's one-line summary (`14 steps: 14 ran, …`).
    pub summary: String,
    /// What failed the build, if something did (a step, the lock check, Ctrl-C).
    pub error: Option<(String, Option<String>)>,
    /// In plan order.
    pub steps: Vec<StepRow>,
    /// (from, to) indices into `steps`: the plan's edges.
    pub edges: Vec<(usize, usize)>,
    pub pieces: Vec<PieceReport>,
}

/// One step as the page shows it.
#[derive(Debug, Clone)]
pub struct StepRow {
    pub id: String,
    pub kind: StepKind,
    pub outcome: Outcome,
    /// Why it failed or was skipped; what it produced when it ran.
    pub detail: String,
    pub slot: Option<Slot>,
    pub seconds: f64,
    pub phases: Phases,
    pub peak_memory: Option<u64>,
    /// How deep in the plan: 0 for an export, 4 for a package.
    pub depth: usize,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Ran,
    Cached,
    Failed,
    Skipped,
}

impl Outcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Ran => "ran",
            Outcome::Cached => "cached",
            Outcome::Failed => "failed",
            Outcome::Skipped => "skipped",
        }
    }
}

/// One piece: its validation and its package.
#[derive(Debug, Clone)]
pub struct PieceReport {
    pub model: String,
    pub piece: String,
    /// validate's report, when validate ran or came from the cache.
    pub validation: Option<Report>,
    /// validate-litert's report, for a piece with the LiteRT format.
    pub litert: Option<LitertReport>,
    /// Every warning of the piece's steps (and of its model's export), with the step's name.
    pub warnings: Vec<(String, Warning)>,
    /// The package's `model.md`, relative to the reports folder, when the package is in dist/.
    pub docs_link: Option<String>,
    /// The size of `model.tar.gz`, when the package built.
    pub archive_bytes: Option<u64>,
    /// The package folder in dist/, relative to the project.
    pub dist_dir: String,
}

impl BuildReport {
    /// Gathers the page's data from a finished build. `error` is the build's outcome as the
    /// command reports it (a failed lock check included).
    pub fn collect(manifest: &Manifest, plan: &Plan, summary: &BuildSummary, error: Option<&Error>) -> BuildReport {
        let graph = &plan.graph;
        let mut depth = vec![0usize; graph.node_count()];
        for node in plan.topological() {
            for dependent in graph.neighbors_directed(node, petgraph::Direction::Outgoing) {
                depth[dependent.index()] = depth[dependent.index()].max(depth[node.index()] + 1);
            }
        }
        let steps: Vec<StepRow> = summary
            .results
            .iter()
            .enumerate()
            .map(|(i, result)| {
                let (outcome, detail) = match &result.status {
                    Status::Ran => (Outcome::Ran, result.entry.as_ref().map(|e| e.outcome.summary.clone()).unwrap_or_default()),
                    Status::Cached => (Outcome::Cached, result.entry.as_ref().map(|e| e.outcome.summary.clone()).unwrap_or_default()),
                    Status::Failed(e) => (Outcome::Failed, e.message.clone()),
                    Status::Skipped(why) => (Outcome::Skipped, why.clone()),
                };
                let outcome_of_entry = result.entry.as_ref().map(|e| &e.outcome);
                StepRow {
                    id: result.id.to_string(),
                    kind: result.id.kind,
                    outcome,
                    detail,
                    slot: summary.slots.get(i).copied().flatten(),
                    seconds: result.seconds,
                    // A cached step's phases are those of the build that ran it: not this one's.
                    phases: if outcome == Outcome::Cached {
                        Phases::new()
                    } else {
                        outcome_of_entry.map(|o| o.phases.clone()).unwrap_or_default()
                    },
                    peak_memory: if outcome == Outcome::Cached { None } else { outcome_of_entry.and_then(|o| o.peak_memory) },
                    depth: plan.find(&result.id).map_or(0, |n| depth[n.index()]),
                }
            })
            .collect();
        let index_of = |id: &crate::plan::StepId| summary.results.iter().position(|r| &r.id == id);
        let mut edges: Vec<(usize, usize)> = graph
            .edge_indices()
            .filter_map(|e| graph.edge_endpoints(e))
            .filter_map(|(a, b)| Some((index_of(&graph[a])?, index_of(&graph[b])?)))
            .collect();
        edges.sort();

        let mut pieces = Vec::new();
        for model in &manifest.models {
            for piece in &model.pieces {
                let of_piece = |r: &&crate::exec::StepResult| {
                    r.id.model == model.name && (r.id.piece.as_deref() == Some(piece.name.as_str()) || r.id.piece.is_none())
                };
                let results: Vec<&crate::exec::StepResult> = summary.results.iter().filter(of_piece).collect();
                if !results.iter().any(|r| r.id.piece.is_some()) {
                    continue;
                }
                let step = |kind: StepKind| results.iter().find(|r| r.id.kind == kind && r.id.piece.is_some());
                let validation = step(StepKind::Validate)
                    .and_then(|r| r.entry.as_ref())
                    .and_then(|e| std::fs::read(e.out().join(files::REPORT)).ok())
                    .and_then(|bytes| serde_json::from_slice::<Report>(&bytes).ok());
                let litert = step(StepKind::ValidateLitert)
                    .and_then(|r| r.entry.as_ref())
                    .and_then(|e| std::fs::read(e.out().join(files::LITERT_REPORT)).ok())
                    .and_then(|bytes| serde_json::from_slice::<LitertReport>(&bytes).ok());
                let mut warnings: Vec<(String, Warning)> = Vec::new();
                for r in &results {
                    for w in r.entry.iter().flat_map(|e| &e.outcome.warnings) {
                        if !warnings.iter().any(|(_, seen)| seen.code == w.code && seen.message == w.message) {
                            warnings.push((r.id.to_string(), w.clone()));
                        }
                    }
                }
                let dist_dir = manifest.project.out_dir.join(&model.name).join(&piece.name).join(manifest.project.version.to_string());
                let package = step(StepKind::Package).filter(|r| r.succeeded());
                let docs = manifest.root.join(&dist_dir).join(files::DOCS);
                let docs_link = (package.is_some() && docs.is_file()).then(|| format!("../../{}/{}", slashes(&dist_dir), files::DOCS));
                let archive_bytes =
                    package.and_then(|_| std::fs::metadata(manifest.root.join(&dist_dir).join(files::ARCHIVE)).ok()).map(|m| m.len());
                pieces.push(PieceReport {
                    model: model.name.clone(),
                    piece: piece.name.clone(),
                    validation,
                    litert,
                    warnings,
                    docs_link,
                    archive_bytes,
                    dist_dir: slashes(&dist_dir),
                });
            }
        }
        BuildReport {
            project: manifest.project.name.clone(),
            finished: SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs()),
            seconds: summary.seconds,
            threads: summary.threads.max(1),
            summary: crate::exec::report::summary_line(summary),
            error: error.map(|e| (e.message(), e.help())),
            steps,
            edges,
            pieces,
        }
    }

    /// The page.
    pub fn render(&self) -> String {
        html::page(self)
    }

    /// Writes the page as `latest.html` and as a timestamped copy in `dir`, keeping the last
    /// [`KEEP`] copies. Returns the path of `latest.html`.
    pub fn write(&self, dir: &Path) -> std::io::Result<PathBuf> {
        std::fs::create_dir_all(dir)?;
        // A link in its place would have old reports removed wherever it points.
        crate::cache::refuse_link(dir)?;
        let page = self.render();
        let stamped = dir.join(format!("build-{}.html", utc_stamp(self.finished)));
        crate::atomic::write_file(&stamped, page.as_bytes())?;
        let latest = dir.join("latest.html");
        crate::atomic::write_file(&latest, page.as_bytes())?;
        prune(dir, KEEP)?;
        Ok(latest)
    }
}

/// Removes all but the `keep` newest `build-*.html` (their names sort by time).
fn prune(dir: &Path, keep: usize) -> std::io::Result<()> {
    let mut stamped: Vec<PathBuf> = std::fs::read_dir(dir)?
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.file_name().and_then(|n| n.to_str()).is_some_and(|n| n.starts_with("build-") && n.ends_with(".html")))
        .collect();
    stamped.sort();
    let excess = stamped.len().saturating_sub(keep);
    for old in &stamped[..excess] {
        std::fs::remove_file(old)?;
    }
    Ok(())
}

fn slashes(path: &Path) -> String {
    path.to_string_lossy().replace('\\', "/")
}

/// `20261201T162941Z`: a UTC time that sorts as text. (Days to a civil date is the one piece
/// of calendar arithmetic needed here: a date crate for it would be the heavier choice.)
pub fn utc_stamp(unix_seconds: u64) -> String {
    let (year, month, day) = civil_date((unix_seconds / 86_400) as i64);
    let rest = unix_seconds % 86_400;
    format!("{year:04}{month:02}{day:02}T{:02}{:02}{:02}Z", rest / 3600, rest % 3600 / 60, rest % 60)
}

/// `2026-12-01 16:29 UTC`, for people.
pub fn utc_display(unix_seconds: u64) -> String {
    let (year, month, day) = civil_date((unix_seconds / 86_400) as i64);
    let rest = unix_seconds % 86_400;
    format!("{year:04}-{month:02}-{day:02} {:02}:{:02} UTC", rest / 3600, rest % 3600 / 60)
}

/// The proleptic Gregorian date of a day count since 1970-01-01 (Howard Hinnant's
/// `civil_from_days`).
fn civil_date(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stamps_are_utc_and_sort_as_text() {
        assert_eq!(utc_stamp(0), "19700101T000000Z");
        assert_eq!(utc_stamp(951_782_400), "20000229T000000Z");
        assert_eq!(utc_stamp(1_796_142_581), "20261201T162941Z");
        assert_eq!(utc_display(1_796_142_581), "2026-12-01 16:29 UTC");
    }

    #[test]
    fn only_the_last_reports_are_kept() {
        let dir = tempfile::tempdir().unwrap();
        for i in 0..13 {
            std::fs::write(dir.path().join(format!("build-2026120{}T0000{i:02}Z.html", i % 2)), "").unwrap();
        }
        std::fs::write(dir.path().join("latest.html"), "").unwrap();
        prune(dir.path(), 10).unwrap();
        let mut left: Vec<String> = std::fs::read_dir(dir.path()).unwrap().map(|e| e.unwrap().file_name().into_string().unwrap()).collect();
        left.sort();
        assert_eq!(left.len(), 11);
        assert!(left.contains(&"latest.html".to_string()));
        assert!(!left.contains(&"build-20261200T000000Z.html".to_string()), "the oldest went first: {left:?}");
    }

    #[test]
    fn a_link_in_place_of_the_reports_folder_is_refused_and_nothing_behind_it_is_removed() {
        let cache = tempfile::tempdir().unwrap();
        let outside = tempfile::tempdir().unwrap();
        for i in 0..KEEP + 2 {
            std::fs::write(outside.path().join(format!("build-200001{:02}T000000Z.html", i + 1)), "someone else's").unwrap();
        }
        let reports = cache.path().join("reports");
        std::os::unix::fs::symlink(outside.path(), &reports).unwrap();
        let page = BuildReport {
            project: "p".into(),
            finished: 0,
            seconds: 0.0,
            threads: 1,
            summary: String::new(),
            error: None,
            steps: vec![],
            edges: vec![],
            pieces: vec![],
        };
        let error = page.write(&reports).unwrap_err();
        assert!(error.to_string().starts_with(&format!("{} is a symbolic link;", reports.display())), "{error}");
        assert_eq!(std::fs::read_dir(outside.path()).unwrap().count(), KEEP + 2, "nothing written or removed behind the link");
    }
}

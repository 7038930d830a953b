//! The report's two pictures, drawn as inline SVG: the timeline and the plan.
//!
//! Both are plain geometry over [`BuildReport`]'s rows. The plan is laid out in layers by
//! depth (an export in the first column, a package in the last), nodes in plan order inside a
//! column; an edge that skips a column arcs over the node between.

use std::fmt::Write as _;

use super::html::esc;
use super::{BuildReport, Outcome, StepRow};
use crate::plan::StepKind;

/// A step kind's colour, shared by the timeline and the page's legend.
pub fn kind_color(kind: StepKind) -> &'static str {
    match kind {
        StepKind::Export => "#5b7fd6",
        StepKind::Slice => "#49a6a6",
        StepKind::Trace => "#8a63c7",
        StepKind::Validate => "#d08a2e",
        StepKind::ConvertLitert => "#c75f8a",
        StepKind::ValidateLitert => "#a8743a",
        StepKind::Package => "#3f9a5a",
    }
}

/// An outcome's colour: the plan's nodes.
pub fn outcome_color(outcome: Outcome) -> &'static str {
    match outcome {
        Outcome::Ran => "#3f9a5a",
        Outcome::Cached => "#7f9cc4",
        Outcome::Failed => "#d14b4b",
        Outcome::Skipped => "#d4d4d4",
    }
}

const WIDTH: f64 = 1080.0;
const LABEL: f64 = 72.0;
const ROW: f64 = 30.0;
const BAR: f64 = 22.0;
const AXIS: f64 = 24.0;

/// The steps on the scheduler's threads, cargo `--timings` style: one row per thread, a bar
/// per step that ran (its phases as segments), a tick per cache hit.
pub fn timeline(report: &BuildReport) -> String {
    let end = report.steps.iter().filter_map(|s| s.slot.map(|slot| slot.started + s.seconds)).fold(report.seconds, f64::max).max(0.001);
    let chart = WIDTH - LABEL - 16.0;
    let x = |t: f64| LABEL + t / end * chart;
    let height = AXIS + ROW * report.threads as f64 + 8.0;
    let mut out = String::new();
    let _ = write!(
        out,
        r#"<svg class="timeline" viewBox="0 0 {WIDTH} {height}" width="{WIDTH}" height="{height}" role="img" aria-label="timeline of the build's steps">"#
    );
    // The time axis.
    let tick = nice_step(end / 8.0);
    let mut t = 0.0;
    while t <= end + 1e-9 {
        let _ = write!(
            out,
            r##"<line x1="{0:.1}" x2="{0:.1}" y1="{1}" y2="{2}" class="grid"/><text x="{0:.1}" y="14" class="axis">{3}</text>"##,
            x(t),
            AXIS - 4.0,
            height - 4.0,
            esc(&seconds_label(t, tick))
        );
        t += tick;
    }
    for thread in 0..report.threads {
        let y = AXIS + ROW * thread as f64;
        let _ = write!(out, r#"<text x="4" y="{:.1}" class="row-label">thread {}</text>"#, y + BAR * 0.7, thread + 1);
    }
    for step in &report.steps {
        let Some(slot) = step.slot else { continue };
        let y = AXIS + ROW * slot.thread as f64;
        match step.outcome {
            Outcome::Cached => {
                let _ = write!(
                    out,
                    r#"<g class="step cached" data-step="{id}"><title>{id}: cache hit</title><rect x="{x:.1}" y="{y:.1}" width="3" height="{BAR}" class="cache-hit"/></g>"#,
                    id = esc(&step.id),
                    x = x(slot.started),
                );
            }
            Outcome::Ran | Outcome::Failed => {
                let x0 = x(slot.started);
                let w = (x(slot.started + step.seconds) - x0).max(2.0);
                let _ = write!(
                    out,
                    r#"<g class="step {outcome}" data-step="{id}"><title>{title}</title><rect x="{x0:.1}" y="{y:.1}" width="{w:.1}" height="{BAR}" rx="3" fill="{color}" class="bar"/>"#,
                    outcome = step.outcome.as_str(),
                    id = esc(&step.id),
                    title = esc(&bar_title(step)),
                    color = kind_color(step.kind),
                );
                // Phases as segments inside the bar, in the order they ran.
                let total_ms = (step.seconds * 1000.0).max(1.0);
                let mut px = x0;
                for (i, ms) in step.phases.values().enumerate() {
                    let pw = (*ms as f64 / total_ms * w).min(x0 + w - px);
                    if pw > 0.5 {
                        let _ = write!(
                            out,
                            r#"<rect x="{px:.1}" y="{:.1}" width="{pw:.1}" height="4" class="phase p{}"/>"#,
                            y + BAR - 4.0,
                            i % 6
                        );
                    }
                    px += pw.max(0.0);
                }
                let label = step.id.as_str();
                if w > 7.0 * label.len() as f64 + 8.0 {
                    let _ = write!(out, r#"<text x="{:.1}" y="{:.1}" class="bar-label">{}</text>"#, x0 + 4.0, y + BAR * 0.62, esc(label));
                }
                if step.outcome == Outcome::Failed {
                    let _ = write!(out, r#"<rect x="{x0:.1}" y="{y:.1}" width="{w:.1}" height="{BAR}" rx="3" class="failed-outline"/>"#);
                }
                out.push_str("</g>");
            }
            Outcome::Skipped => {}
        }
    }
    out.push_str("</svg>");
    out
}

fn bar_title(step: &StepRow) -> String {
    let mut title = format!("{} ({}): {}", step.id, step.outcome.as_str(), seconds_label(step.seconds, 0.01));
    for (name, ms) in &step.phases {
        let _ = write!(title, "\n  {name}: {}", seconds_label(*ms as f64 / 1000.0, 0.001));
    }
    if let Some(peak) = step.peak_memory {
        let _ = write!(title, "\n  worker peak memory: {}", crate::tf::inspect::human_bytes(peak));
    }
    title
}

/// A round step for about eight ticks: 1, 2 or 5 times a power of ten.
fn nice_step(raw: f64) -> f64 {
    let power = 10f64.powf(raw.max(1e-3).log10().floor());
    [1.0, 2.0, 5.0, 10.0].into_iter().map(|m| m * power).find(|s| *s >= raw).unwrap_or(10.0 * power)
}

/// `0`, `250ms`, `1.5s`, `2m05s`: precise enough for ticks of `step` seconds.
pub fn seconds_label(t: f64, step: f64) -> String {
    if t == 0.0 {
        "0".into()
    } else if t < 1.0 && step < 1.0 {
        format!("{:.0}ms", t * 1000.0)
    } else if t < 60.0 {
        if step >= 1.0 {
            format!("{t:.0}s")
        } else {
            format!("{t:.1}s")
        }
    } else {
        format!("{}m{:02.0}s", (t / 60.0).floor(), t % 60.0)
    }
}

const NODE_W: f64 = 178.0;
const NODE_H: f64 = 40.0;
const GAP_X: f64 = 46.0;
const GAP_Y: f64 = 14.0;

/// The plan: one column per depth, nodes coloured by outcome.
pub fn plan(report: &BuildReport) -> String {
    let columns = report.steps.iter().map(|s| s.depth).max().map_or(0, |d| d + 1);
    let mut rows_in = vec![0usize; columns];
    let mut position = Vec::with_capacity(report.steps.len());
    for step in &report.steps {
        position.push((step.depth, rows_in[step.depth]));
        rows_in[step.depth] += 1;
    }
    let tallest = rows_in.iter().copied().max().unwrap_or(0);
    let pitch = NODE_H + GAP_Y;
    let height = tallest as f64 * pitch + 40.0;
    let width = columns as f64 * (NODE_W + GAP_X) + 20.0;
    // Columns are centred vertically on the tallest.
    let at = |i: usize| {
        let (column, row) = position[i];
        let offset = (tallest - rows_in[column]) as f64 * pitch / 2.0;
        (20.0 + column as f64 * (NODE_W + GAP_X), 30.0 + offset + row as f64 * pitch)
    };
    let mut out = String::new();
    let _ = write!(
        out,
        r##"<svg class="plan" viewBox="0 0 {width} {height}" width="{width}" height="{height}" role="img" aria-label="the plan's steps and their dependencies"><defs><marker id="arrow" viewBox="0 0 8 8" refX="8" refY="4" markerWidth="7" markerHeight="7" orient="auto"><path d="M0,0 L8,4 L0,8 z" fill="#8a8f98"/></marker></defs>"##
    );
    for &(from, to) in &report.edges {
        let (x1, y1) = at(from);
        let (x2, y2) = at(to);
        let (sx, sy, ex, ey) = (x1 + NODE_W, y1 + NODE_H / 2.0, x2, y2 + NODE_H / 2.0);
        let skips = report.steps[to].depth > report.steps[from].depth + 1;
        let path = if skips {
            let lift = sy.min(ey) - NODE_H / 2.0 - GAP_Y / 2.0 + 2.0;
            format!("M{sx:.1},{sy:.1} C{:.1},{lift:.1} {:.1},{lift:.1} {ex:.1},{ey:.1}", sx + GAP_X, ex - GAP_X)
        } else {
            let mid = (sx + ex) / 2.0;
            format!("M{sx:.1},{sy:.1} C{mid:.1},{sy:.1} {mid:.1},{ey:.1} {ex:.1},{ey:.1}")
        };
        let _ = write!(out, r#"<path d="{path}" class="edge" marker-end="url(#arrow)"/>"#);
    }
    for (i, step) in report.steps.iter().enumerate() {
        let (x, y) = at(i);
        let (name, kind) = step.id.rsplit_once(':').unwrap_or((&step.id, ""));
        let _ = write!(
            out,
            r#"<g class="node {outcome}" data-step="{id}"><title>{id}: {outcome}</title><rect x="{x:.1}" y="{y:.1}" width="{NODE_W}" height="{NODE_H}" rx="6" fill="{fill}"/><text x="{tx:.1}" y="{y1:.1}" class="node-name">{name}</text><text x="{tx:.1}" y="{y2:.1}" class="node-kind">{kind} · {outcome}</text></g>"#,
            outcome = step.outcome.as_str(),
            id = esc(&step.id),
            fill = outcome_color(step.outcome),
            tx = x + 8.0,
            y1 = y + 16.0,
            y2 = y + 32.0,
            name = esc(&ellipsize(name, 24)),
            kind = esc(kind),
        );
    }
    out.push_str("</svg>");
    out
}

fn ellipsize(text: &str, max: usize) -> String {
    if text.chars().count() <= max {
        text.to_string()
    } else {
        let kept: String = text.chars().take(max - 1).collect();
        format!("{kept}…")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ticks_are_round() {
        assert_eq!(nice_step(0.7), 1.0);
        assert_eq!(nice_step(1.3), 2.0);
        assert_eq!(nice_step(3.0), 5.0);
        assert_eq!(nice_step(0.013), 0.02);
        assert_eq!(seconds_label(0.25, 0.05), "250ms");
        assert_eq!(seconds_label(1.5, 0.5), "1.5s");
        assert_eq!(seconds_label(125.0, 20.0), "2m05s");
    }
}

//! The page: HTML written from [`BuildReport`], with `page.css` and `page.js` inlined.
//!
//! Everything a reader needs is in the HTML itself (the script only adds highlighting and
//! filters), so the page reads the same with scripts off, and a test can check its text.

use std::fmt::Write as _;

use serde_json::Value;

use super::svg::{self, kind_color, seconds_label};
use super::{utc_display, BuildReport, Outcome, PieceReport};
use crate::plan::StepKind;
use crate::steps::validate::Check;
use crate::tf::inspect::{group_digits, human_bytes};

const CSS: &str = include_str!("page.css");
const SCRIPT: &str = include_str!("page.js");

/// Escapes text for HTML content and attribute values.
pub fn esc(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            _ => out.push(c),
        }
    }
    out
}

pub fn page(report: &BuildReport) -> String {
    let mut out = String::new();
    let ok = report.error.is_none();
    let _ = write!(
        out,
        r#"<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>exportctl build report — {project}</title>
<style>{CSS}</style></head>
<body>
<header><h1>Build report <span class="project">{project}</span></h1>
<p class="meta"><span class="badge {status_class}">{status}</span> {summary} · finished {finished} · {threads} thread{plural}</p>
"#,
        project = esc(&report.project),
        status_class = if ok { "ok" } else { "failed" },
        status = if ok { "succeeded" } else { "failed" },
        summary = esc(&report.summary),
        finished = esc(&utc_display(report.finished)),
        threads = report.threads,
        plural = if report.threads == 1 { "" } else { "s" },
    );
    if let Some((message, help)) = &report.error {
        let _ = write!(out, r#"<div class="error-box"><pre>{}</pre>"#, esc(message));
        if let Some(help) = help {
            let _ = write!(out, r#"<p class="help">help: {}</p>"#, esc(help));
        }
        out.push_str("</div>");
    }
    out.push_str(r##"<nav><a href="#timeline">Timeline</a> <a href="#plan">Plan</a> <a href="#pieces">Pieces</a> <a href="#steps">Steps</a></nav></header>
<main>
"##);

    // Timeline.
    out.push_str(r#"<section id="timeline"><h2>Timeline</h2><p class="legend">"#);
    for kind in StepKind::ALL {
        let _ = write!(out, r#"<span><i style="background:{}"></i>{}</span>"#, kind_color(kind), kind.as_str());
    }
    out.push_str(r#"<span><i class="cache-hit"></i>cache hit</span><span><i class="failed-outline"></i>failed</span><span class="note">the thin strip under a bar: its phases</span></p><div class="scroll">"#);
    out.push_str(&svg::timeline(report));
    out.push_str("</div></section>\n");

    // Plan.
    out.push_str(r#"<section id="plan"><h2>Plan</h2><p class="legend">"#);
    for outcome in [Outcome::Ran, Outcome::Cached, Outcome::Failed, Outcome::Skipped] {
        let _ = write!(out, r#"<span><i style="background:{}"></i>{}</span>"#, svg::outcome_color(outcome), outcome.as_str());
    }
    out.push_str(r#"</p><div class="scroll">"#);
    out.push_str(&svg::plan(report));
    out.push_str("</div></section>\n");

    // Pieces.
    out.push_str(r#"<section id="pieces"><h2>Pieces</h2>"#);
    if report.pieces.is_empty() {
        out.push_str("<p>No piece was part of this build.</p>");
    }
    for piece in &report.pieces {
        piece_section(&mut out, piece);
    }
    out.push_str("</section>\n");
    // Steps.
    out.push_str(r#"<section id="steps"><h2>Steps</h2><p class="filters" hidden>Show: <button data-filter="all" class="active">all</button> <button data-filter="ran">ran</button> <button data-filter="cached">cached</button> <button data-filter="failed">failed</button> <button data-filter="skipped">skipped</button></p>
<table class="steps"><thead><tr><th>step</th><th>outcome</th><th class="num">start</th><th class="num">time</th><th>phases</th><th class="num">peak memory</th><th>detail</th></tr></thead><tbody>"#);
    for step in &report.steps {
        let _ = write!(
            out,
            r#"<tr class="step-row {outcome}" data-step="{id}" data-outcome="{outcome}"><td class="id"><i style="background:{color}"></i>{id}</td><td><span class="badge {outcome}">{outcome}</span></td><td class="num">{start}</td><td class="num">{time}</td><td class="phases">{phases}</td><td class="num">{peak}</td><td class="detail">{detail}</td></tr>"#,
            outcome = step.outcome.as_str(),
            id = esc(&step.id),
            color = kind_color(step.kind),
            start = step.slot.map(|s| seconds_label(s.started, 0.01)).unwrap_or_default(),
            time = if matches!(step.outcome, Outcome::Ran | Outcome::Failed) { seconds_label(step.seconds, 0.01) } else { String::new() },
            phases = phases(step),
            peak = step.peak_memory.map(human_bytes).unwrap_or_default(),
            detail = esc(&step.detail),
        );
    }
    out.push_str("</tbody></table></section>\n</main>\n");

    let _ = write!(
        out,
        "<footer>Written by exportctl {} · self-contained: opens offline, nothing else needed</footer>\n<script>{SCRIPT}</script>\n</body></html>\n",
        env!("CARGO_PKG_VERSION")
    );
    out
}

/// A step's phases: a stacked bar and the figures.
fn phases(step: &super::StepRow) -> String {
    if step.phases.is_empty() {
        return String::new();
    }
    let total: u64 = step.phases.values().sum::<u64>().max(1);
    let mut bar = String::from(r#"<span class="phase-bar">"#);
    let mut list = String::from(r#"<span class="phase-list">"#);
    for (i, (name, ms)) in step.phases.iter().enumerate() {
        let share = *ms as f64 / total as f64 * 100.0;
        let _ = write!(bar, r#"<span class="p{}" style="width:{share:.1}%" title="{}: {} ms"></span>"#, i % 6, esc(name), ms);
        let _ = write!(
            list,
            r#"<span class="phase"><i class="p{}"></i>{} {}</span> "#,
            i % 6,
            esc(name),
            esc(&seconds_label(*ms as f64 / 1000.0, 0.001))
        );
    }
    bar.push_str("</span>");
    list.push_str("</span>");
    bar + &list
}

fn piece_section(out: &mut String, piece: &PieceReport) {
    let name = format!("{}/{}", piece.model, piece.piece);
    let verdict = match &piece.validation {
        Some(report) if report.ok => r#"<span class="badge ok">valid</span>"#,
        Some(_) => r#"<span class="badge failed">checks failed</span>"#,
        None => r#"<span class="badge skipped">not validated</span>"#,
    };
    let _ = write!(
        out,
        r#"<article class="piece" id="piece-{anchor}"><h3>{name} {verdict}</h3><p class="links">"#,
        anchor = esc(&name.replace('/', "-")),
        name = esc(&name)
    );
    match &piece.docs_link {
        Some(link) => {
            let _ = write!(out, r#"<a href="{}">model.md</a> · package in <code>{}</code>"#, esc(link), esc(&piece.dist_dir));
        }
        None => out.push_str("no package in dist/ from this build"),
    }
    out.push_str("</p>");

    if let Some(report) = &piece.validation {
        // Sizes, parameters and the signature.
        out.push_str(r#"<div class="facts"><table class="kv"><tbody>"#);
        if let Some(v) = &report.native.variables {
            let _ = write!(out, "<tr><th>parameters</th><td>{}</td></tr>", group_digits(v.parameters));
            let _ = write!(out, "<tr><th>variables</th><td>{} ({} trainable), {}</td></tr>", v.count, v.trainable, human_bytes(v.bytes));
            if v.optimizer_variables > 0 {
                let _ = write!(
                    out,
                    "<tr><th>optimizer state</th><td>{} variables, {}</td></tr>",
                    v.optimizer_variables,
                    human_bytes(v.optimizer_bytes)
                );
            }
        }
        if let Some(size) = &report.native.size {
            let _ = write!(
                out,
                "<tr><th>SavedModel</th><td>{} (saved_model.pb {}, variables {}, assets {})</td></tr>",
                human_bytes(size.total),
                human_bytes(size.saved_model_pb),
                human_bytes(size.variables),
                human_bytes(size.assets)
            );
        }
        if let Some(bytes) = piece.archive_bytes {
            let _ = write!(out, "<tr><th>model.tar.gz</th><td>{}</td></tr>", human_bytes(bytes));
        }
        if let Some(litert) = &piece.litert {
            let _ = write!(
                out,
                "<tr><th>model.tflite</th><td>{}, quantize = {}, {} ops: <code>{}</code></td></tr>",
                human_bytes(litert.bytes),
                esc(litert.quantize.as_str()),
                litert.ops.len(),
                esc(&litert.ops.join(" "))
            );
        }
        if let Some(signature) = &report.native.signature {
            let specs = |specs: &[crate::steps::Spec]| {
                specs
                    .iter()
                    .map(|s| esc(&format!("{}: {} {}", s.name, s.dtype, shape(s.shape.as_deref()))))
                    .collect::<Vec<_>>()
                    .join("<br>")
            };
            let _ = write!(out, "<tr><th>inputs</th><td><code>{}</code></td></tr>", specs(&signature.inputs));
            let _ = write!(out, "<tr><th>outputs</th><td><code>{}</code></td></tr>", specs(&signature.outputs));
        }
        let losses: Vec<String> =
            report.reusable.regularization_loss_values.iter().map(|v| v.map_or("?".into(), crate::steps::short_float)).collect();
        if !losses.is_empty() {
            let _ = write!(out, "<tr><th>regularization losses</th><td>{}</td></tr>", esc(&losses.join(", ")));
        }
        out.push_str("</tbody></table></div>");

        // The checks.
        out.push_str(r#"<table class="checks"><thead><tr><th>loader</th><th>check</th><th>result</th><th class="num">largest |diff|</th><th>tolerance</th><th>message</th></tr></thead><tbody>"#);
        let litert = piece.litert.as_ref().map(|l| l.checks.as_slice()).unwrap_or_default();
        for (loader, checks) in [("native", &report.native.checks[..]), ("reusable", &report.reusable.checks[..]), ("LiteRT", litert)] {
            for check in checks {
                check_row(out, loader, check);
            }
        }
        out.push_str("</tbody></table>");
    }

    if piece.warnings.is_empty() {
        out.push_str(r#"<p class="no-warnings">No warnings.</p>"#);
    } else {
        out.push_str(r#"<ul class="warnings">"#);
        for (step, warning) in &piece.warnings {
            let _ = write!(
                out,
                r#"<li><span class="badge warning">warning[{}]</span> <code>{}</code>: {}"#,
                esc(warning.code.code()),
                esc(step),
                esc(&warning.message)
            );
            if let Some(help) = &warning.help {
                let _ = write!(out, r#"<br><span class="help">help: {}</span>"#, esc(help));
            }
            out.push_str("</li>");
        }
        out.push_str("</ul>");
    }
    out.push_str("</article>\n");
}

fn check_row(out: &mut String, loader: &str, check: &Check) {
    let _ = write!(
        out,
        r#"<tr class="check {cls}"><td>{loader}</td><td class="check-name">{name}</td><td><span class="badge {cls}">{verdict}</span></td><td class="num">{diff}</td><td>{tolerance}</td><td>{message}</td></tr>"#,
        cls = if check.ok { "ok" } else { "failed" },
        name = esc(check.name.as_str()),
        verdict = if check.ok { "pass" } else { "fail" },
        diff = largest_difference(&check.details).map(crate::steps::short_float).unwrap_or_default(),
        tolerance = esc(&tolerance(&check.details).unwrap_or_default()),
        message = esc(&check.message),
    );
}

/// The largest absolute difference a check measured: its own, or its outputs'.
fn largest_difference(details: &Value) -> Option<f64> {
    if let Some(d) = details.get("max_abs_diff").and_then(Value::as_f64) {
        return Some(d);
    }
    details.get("outputs")?.as_object()?.values().filter_map(|o| o.get("max_abs_diff").and_then(Value::as_f64)).reduce(f64::max)
}

/// `atol 1e-5 + rtol 1e-5·|ref|`, or the largest per-output tolerance.
fn tolerance(details: &Value) -> Option<String> {
    let (atol, rtol) = (details.get("atol").and_then(Value::as_f64), details.get("rtol").and_then(Value::as_f64));
    if let (Some(atol), Some(rtol)) = (atol, rtol) {
        return Some(format!("atol {} + rtol {}·|ref|", crate::steps::short_float(atol), crate::steps::short_float(rtol)));
    }
    let largest =
        details.get("outputs")?.as_object()?.values().filter_map(|o| o.get("tolerance").and_then(Value::as_f64)).reduce(f64::max)?;
    Some(format!("≤ {}", crate::steps::short_float(largest)))
}

fn shape(dims: Option<&[i64]>) -> String {
    let Some(dims) = dims else { return "(unknown shape)".into() };
    let dims: Vec<String> = dims.iter().map(|d| if *d < 0 { "?".into() } else { d.to_string() }).collect();
    format!("[{}]", dims.join(", "))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn text_is_escaped() {
        assert_eq!(esc(r#"<a href="x">&'"#), "&lt;a href=&quot;x&quot;&gt;&amp;&#39;");
    }

    #[test]
    fn differences_and_tolerances_come_from_a_check_or_its_outputs() {
        let own = json!({ "max_abs_diff": 2e-7, "atol": 1e-5, "rtol": 1e-5 });
        assert_eq!(largest_difference(&own), Some(2e-7));
        assert_eq!(tolerance(&own).unwrap(), "atol 1e-5 + rtol 1e-5·|ref|");
        let outputs =
            json!({ "outputs": { "a": { "max_abs_diff": 1e-6, "tolerance": 1e-5 }, "b": { "max_abs_diff": 3e-6, "tolerance": 2e-5 } } });
        assert_eq!(largest_difference(&outputs), Some(3e-6));
        assert_eq!(tolerance(&outputs).unwrap(), "≤ 2e-5");
        assert_eq!(largest_difference(&json!({})), None);
    }
}

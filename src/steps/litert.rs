//! The LiteRT section of `model.md`, written from validate-litert's report: what a mobile or
//! edge developer needs before shipping `model.tflite` — its size, how it is quantized, the
//! ops their LiteRT build must have, how far it is from the SavedModel's outputs, and code
//! that runs it. Kept apart from the rest of the documentation: package calls
//! [`model_md_section`] and appends what it returns.

use std::fmt::Write as _;
use std::path::Path;

use super::export::Spec;
use super::validate_litert::{self, LitertReport};
use super::{dep_dir, files, short_float, Target};
use crate::exec::{StepContext, StepError};
use crate::plan::StepKind;
use crate::tf::inspect::human_bytes;

/// Package's LiteRT part, for a piece whose `formats` has `litert`: `model.tflite` copied from
/// convert-litert's entry into `out`. Returns the size and digest of `model.tflite` (for
/// `build.json`) and model.md's LiteRT section; `None` for other pieces.
pub(super) fn package(target: &Target<'_>, cx: &StepContext<'_>, out: &Path) -> Result<Option<(u64, String, String)>, StepError> {
    if target.piece().litert.is_none() {
        return Ok(None);
    }
    let report = validate_litert::load(&dep_dir(target, cx, StepKind::ValidateLitert)?)?;
    let source = dep_dir(target, cx, StepKind::ConvertLitert)?.join(files::TFLITE);
    let dest = out.join(files::TFLITE);
    std::fs::copy(&source, &dest).map_err(|e| StepError::new(format!("cannot copy {} to {}: {e}", source.display(), dest.display())))?;
    let digest = crate::hash::digest_file(&dest).map_err(|e| StepError::new(format!("cannot read {}: {e}", dest.display())))?;
    Ok(Some((report.bytes, digest, model_md_section(&report))))
}

/// The `## LiteRT` section (ending with a blank line).
pub(super) fn model_md_section(report: &LitertReport) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "## LiteRT\n");
    let _ = writeln!(
        out,
        "`{}` is the same model for phones and edge devices, converted from the SavedModel's `serving_default` and validated against the same golden inputs.\n",
        files::TFLITE
    );
    let _ = writeln!(out, "- Size: {} ({} bytes)", human_bytes(report.bytes), report.bytes);
    let _ = writeln!(out, "- Quantization: {}", report.quantize.describe());
    let _ = writeln!(out, "- Ops ({}): {}", report.ops.len(), report.ops.iter().map(|o| format!("`{o}`")).collect::<Vec<_>>().join(", "));
    let _ = writeln!(
        out,
        "- Largest difference from the SavedModel's reference outputs: {} (tolerance: atol {} + rtol {}·|ref|)",
        short_float(report.largest_difference()),
        short_float(report.atol),
        short_float(report.rtol)
    );
    if report.max_abs_diff.len() > 1 {
        for (name, diff) in &report.max_abs_diff {
            let _ = writeln!(out, "  - `{name}`: {}", short_float(*diff));
        }
    }
    let _ = writeln!(out, "- Checked with: `{}`", report.litert);
    out.push('\n');
    let _ = writeln!(out, "Run it by signature and input name (the flat order of `get_input_details()` is not the signature's):\n");
    let _ = writeln!(out, "```python\n{}```\n", snippet(&report.inputs, &report.outputs));
    out
}

/// Python that loads `model.tflite` beside it and runs it on zeros of the right shapes.
fn snippet(inputs: &[Spec], outputs: &[Spec]) -> String {
    let mut code = String::new();
    code.push_str("import numpy as np\nfrom ai_edge_litert.interpreter import Interpreter\n\n");
    let _ = writeln!(code, "interpreter = Interpreter(model_path=\"{}\")", files::TFLITE);
    code.push_str("runner = interpreter.get_signature_runner(\"serving_default\")\n");
    let feeds: Vec<(String, String)> = inputs
        .iter()
        .map(|spec| {
            let shape: Vec<String> = spec.shape.as_deref().unwrap_or(&[]).iter().map(|&d| if d < 0 { 1 } else { d }.to_string()).collect();
            let shape = match shape.len() {
                1 => format!("({},)", shape[0]),
                _ => format!("({})", shape.join(", ")),
            };
            (spec.name.clone(), format!("np.zeros({shape}, np.{})", numpy_dtype(&spec.dtype)))
        })
        .collect();
    if feeds.iter().all(|(name, _)| is_identifier(name)) {
        let args: Vec<String> = feeds.iter().map(|(name, value)| format!("{name}={value}")).collect();
        let _ = writeln!(code, "outputs = runner({})", args.join(", "));
    } else {
        let args: Vec<String> = feeds.iter().map(|(name, value)| format!("\"{name}\": {value}")).collect();
        let _ = writeln!(code, "outputs = runner(**{{{}}})", args.join(", "));
    }
    for output in outputs {
        let _ = writeln!(code, "print(\"{0}\", outputs[\"{0}\"].shape)", output.name);
    }
    code
}

fn numpy_dtype(dtype: &str) -> &str {
    match dtype {
        "bool" => "bool_",
        "string" => "bytes_",
        other => other,
    }
}

fn is_identifier(name: &str) -> bool {
    let mut chars = name.chars();
    matches!(chars.next(), Some('A'..='Z' | 'a'..='z' | '_')) && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::manifest::Quantize;

    fn spec(name: &str, shape: &[i64]) -> Spec {
        Spec { name: name.into(), shape: Some(shape.to_vec()), dtype: "float32".into(), activation: None }
    }

    #[test]
    fn the_section_states_size_quantization_ops_difference_and_a_snippet() {
        let report = LitertReport {
            format: 1,
            ok: true,
            quantize: Quantize::Dynamic,
            litert: "ai-edge-litert==2.3.0".into(),
            bytes: 1_694_280,
            checks: Vec::new(),
            ops: vec!["CONV_2D".into(), "FULLY_CONNECTED".into()],
            inputs: vec![spec("image", &[-1, 96, 96, 3])],
            outputs: vec![spec("flatten", &[-1, 10])],
            max_abs_diff: [("flatten".to_string(), 0.0123)].into_iter().collect(),
            atol: 0.1,
            rtol: 0.1,
        };
        let md = model_md_section(&report);
        assert!(md.contains("- Size: 1.7 MB (1694280 bytes)") || md.contains("(1694280 bytes)"), "{md}");
        assert!(md.contains("- Quantization: dynamic range (int8 weights, float32 activations)"), "{md}");
        assert!(md.contains("- Ops (2): `CONV_2D`, `FULLY_CONNECTED`"), "{md}");
        assert!(md.contains("reference outputs: 0.0123 (tolerance: atol 0.1 + rtol 0.1·|ref|)"), "{md}");
        assert!(md.contains("outputs = runner(image=np.zeros((1, 96, 96, 3), np.float32))"), "{md}");
        assert!(md.contains("print(\"flatten\", outputs[\"flatten\"].shape)"), "{md}");
    }

    #[test]
    fn names_that_are_not_python_identifiers_are_passed_as_a_dict() {
        let code = snippet(&[spec("input-ids", &[-1, 8]), spec("mask", &[-1, 8])], &[spec("out", &[-1])]);
        assert!(
            code.contains("outputs = runner(**{\"input-ids\": np.zeros((1, 8), np.float32), \"mask\": np.zeros((1, 8), np.float32)})"),
            "{code}"
        );
    }
}

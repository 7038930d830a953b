//! LiteRT as a second format (issue 16): `convert-litert` and `validate-litert` in the plan,
//! `model.tflite` in the package with its section in `model.md` (whose snippet runs), keys that
//! leave the SavedModel steps alone, and the error of an op LiteRT has no kernel for. Real
//! TensorFlow converter, real `ai_edge_litert` interpreter. The quickstart (float) and
//! MobileNetV3 (dynamic-range) variants are also held bit-identical by `reproducible.rs`.

use std::process::Command;

use serde_json::Value;

use crate::build::built_quickstart;
use crate::support::{finished, runtime, stderr, stdout, steps_with, Project};

fn read_json(path: &std::path::Path) -> Value {
    serde_json::from_str(&std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))).unwrap()
}

/// The first ```python block after `## LiteRT`.
pub(crate) fn litert_snippet(md: &str) -> String {
    let section = &md[md.find("## LiteRT").unwrap_or_else(|| panic!("no LiteRT section:\n{md}"))..];
    let start = section.find("```python\n").expect("a python block") + "```python\n".len();
    let end = section[start..].find("```").expect("the block ends") + start;
    section[start..end].to_string()
}

#[test]
fn plan_shows_the_litert_steps_of_litert_pieces_only() {
    let out = Project::example("quickstart").run(&["plan"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    assert!(text.contains("classifier/classifier:convert-litert   <- classifier/classifier:trace"), "{text}");
    assert!(
        text.contains("classifier/classifier:validate-litert  <- classifier/classifier:convert-litert, classifier/classifier:trace"),
        "{text}"
    );
    assert!(!text.contains("classifier/encoder:convert-litert"), "{text}");
    assert!(text.ends_with("11 steps\n"), "{text}");
}

#[test]
fn the_quickstart_ships_a_validated_float_tflite_whose_snippet_runs() {
    let project = built_quickstart();
    let dir = project.path().join("dist/classifier/classifier/1");
    let tflite = std::fs::read(dir.join("model.tflite")).expect("model.tflite beside model.tar.gz");
    assert_eq!(&tflite[4..8], b"TFL3", "a LiteRT flatbuffer");
    assert!(!project.path().join("dist/classifier/encoder/1/model.tflite").exists(), "the encoder is SavedModel only");

    let build = read_json(&dir.join("build.json"));
    assert_eq!(build["outputs"]["model.tflite"]["bytes"].as_u64(), Some(tflite.len() as u64));
    assert_eq!(
        build["outputs"]["model.tflite"]["digest"].as_str(),
        Some(exportctl::hash::digest_file(&dir.join("model.tflite")).unwrap().as_str())
    );

    let md = std::fs::read_to_string(dir.join("model.md")).unwrap();
    assert!(md.contains("- Quantization: none (float32 weights and activations)"), "{md}");
    assert!(md.contains(&format!("({} bytes)", tflite.len())), "{md}");
    assert!(md.contains("- Ops (1): `FULLY_CONNECTED`"), "the model's ops, not XNNPACK's `DELEGATE`: {md}");
    assert!(md.contains("- Checked with: `ai-edge-litert==2.3.0`"), "{md}");
    let line = md.lines().find(|l| l.starts_with("- Largest difference")).expect("the largest difference");
    let diff: f64 = line.split(": ").nth(1).unwrap().split(' ').next().unwrap().parse().unwrap();
    assert!(diff <= 1e-4, "float32 LiteRT stays within the default tolerance: {line}");

    // The usage snippet, as written, runs next to the file with the LiteRT interpreter.
    let snippet = litert_snippet(&md);
    assert!(snippet.contains("from ai_edge_litert.interpreter import Interpreter"), "{snippet}");
    let out = Command::new(&runtime().python).current_dir(&dir).args(["-c", &snippet]).env("TF_CPP_MIN_LOG_LEVEL", "3").output().unwrap();
    assert!(out.status.success(), "the model.md snippet failed:\n{snippet}\n{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "logits (1, 10)");

    // The lock records model.tflite: --locked would name it.
    let lock = std::fs::read_to_string(project.path().join("Export.lock")).unwrap();
    assert!(lock.contains("id = \"classifier/classifier:convert-litert\""), "{lock}");
    assert!(lock.contains("\"model.tflite\" = "), "{lock}");
}

#[test]
fn litert_settings_touch_only_the_litert_steps_and_package() {
    let project = built_quickstart();
    let (out, _) = project.build_json(&[]);
    assert!(out.status.success(), "{}", stderr(&out));
    let manifest = project.path().join("Export.toml");
    let text = std::fs::read_to_string(&manifest).unwrap();

    // Another quantization: convert again, validate again, package again; nothing else.
    let float16 = text
        .replace("formats = [\"saved-model\", \"litert\"]", "formats = [\"saved-model\", \"litert\"]\nlitert = { quantize = \"float16\" }");
    assert_ne!(float16, text);
    std::fs::write(&manifest, &float16).unwrap();
    let (out, events) = project.build_json(&[]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(
        steps_with(&events, "step-finished"),
        ["classifier/classifier:convert-litert", "classifier/classifier:package", "classifier/classifier:validate-litert"]
    );
    let md = std::fs::read_to_string(project.path().join("dist/classifier/classifier/1/model.md")).unwrap();
    assert!(md.contains("- Quantization: float16 weights"), "{md}");

    // No LiteRT at all: the SavedModel steps keep their keys, only package runs (it ships less).
    std::fs::write(&manifest, text.replace("formats = [\"saved-model\", \"litert\"]", "")).unwrap();
    let (out, events) = project.build_json(&[]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(steps_with(&events, "step-finished"), ["classifier/classifier:package"]);
    assert_eq!(finished(&events)["cached"], 8);
    assert!(!project.path().join("dist/classifier/classifier/1/model.tflite").exists());
    let md = std::fs::read_to_string(project.path().join("dist/classifier/classifier/1/model.md")).unwrap();
    assert!(!md.contains("## LiteRT"), "{md}");
}

const ERFINV_MODEL: &str = r#"
import keras
import tensorflow as tf


class Probit(keras.layers.Layer):
    """The inverse of the normal CDF: TensorFlow has a kernel for it, LiteRT has none."""

    def call(self, x):
        return tf.math.erfinv(tf.math.sigmoid(x) - 0.5)


def build():
    keras.utils.set_random_seed(0)
    inputs = keras.Input((4,), name="x")
    hidden = keras.layers.Dense(3, name="dense")(inputs)
    return keras.Model(inputs, Probit(name="probit")(hidden))
"#;

#[test]
fn an_op_without_a_litert_kernel_fails_convert_naming_it_and_its_layer() {
    runtime();
    let project = Project::new()
        .file(
            "Export.toml",
            "[project]\nname = \"probit\"\n\n[models.probit]\nsource = \"model.py:build\"\n\n[[models.probit.pieces]]\nname = \"all\"\nformats = [\"saved-model\", \"litert\"]\n",
        )
        .file("model.py", ERFINV_MODEL);
    let (out, events) = project.build_json(&[]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let failed = events
        .iter()
        .find(|e| e["event"] == "step-failed" && e["step"] == "probit/all:convert-litert")
        .unwrap_or_else(|| panic!("convert-litert did not fail: {events:#?}"));
    let rendered = failed["diagnostics"][0]["message"].as_str().unwrap_or_default().to_string();
    assert!(rendered.contains("the model uses op(s) LiteRT has no kernel for"), "{rendered}");
    assert!(rendered.contains("`Erfinv` (layer `probit`)"), "{rendered}");
    assert!(rendered.contains("SELECT_TF_OPS would not help"), "{rendered}");
    // The SavedModel itself is fine: its validation ran and passed.
    assert!(steps_with(&events, "step-finished").contains(&"probit/all:validate".to_string()), "{events:#?}");
    assert!(failed["diagnostics"][0]["help"].as_str().unwrap_or_default().contains("leave `litert` out"), "{failed}");
}

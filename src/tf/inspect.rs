//! `exportctl inspect`: what a SavedModel holds, read natively (never through Python).
//!
//! Signatures, variables and optimizer state come from `saved_model.pb` (see
//! [`super::saved_model_pb`] and [`super::variables`]); then the `serve` meta graph is loaded
//! through the C API, which is the proof that TF Serving-style consumers can use it. A failed
//! load does not fail the inspection: the report says why, next to everything else.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use serde::Serialize;

use super::archive::{extract_archive_with, ArchiveError, Limits};
use super::model::{LoadedModel, SERVE};
use super::native::Native;
use super::saved_model_pb::{SavedModelError, SavedModelPb, SAVED_MODEL_PB};
use super::scan::{self, Finding, Scan};
use super::signature::{Signature, SpecShape};
use super::variables::{self, OptimizerState, Variables};

/// Everything `inspect` reports about a SavedModel.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Inspection {
    /// The directory or archive inspected.
    pub path: PathBuf,
    /// The TensorFlow version that saved it, when recorded.
    pub saved_by: Option<String>,
    /// The tag set of each meta graph.
    pub meta_graphs: Vec<Vec<String>>,
    /// The tags of the meta graph described below (`serve`, or the first one).
    pub tags: Vec<String>,
    /// Callable signatures, sorted by key.
    pub signatures: Vec<Signature>,
    pub variables: Variables,
    pub optimizer: OptimizerState,
    pub files: Files,
    /// Ops that reach outside the model (files, hosts, Python) in any of its meta graphs:
    /// found before anything runs. `None` when `saved_model.pb` could not be read.
    pub op_scan: Option<Scan>,
    /// Whether TensorFlow's C API loads the `serve` meta graph.
    pub native_load: NativeLoad,
}

/// Sizes on disk, in bytes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Files {
    pub saved_model_pb: u64,
    /// `variables/` (the checkpoint: index and data shards).
    pub variables: u64,
    pub assets: u64,
    /// Everything, including `fingerprint.pb` and `assets.extra/`.
    pub total: u64,
    /// The archive's own size, when an archive was inspected.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub archive: Option<u64>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "status", rename_all = "lowercase")]
pub enum NativeLoad {
    Ok,
    Failed {
        error: String,
    },
    /// Not tried: loading runs the model's init and restore functions, and the op scan
    /// refused the model.
    Skipped {
        reason: String,
    },
}

/// Inspects the SavedModel directory `dir`. Loading it natively runs its restore and init
/// functions, so that is only tried when the op scan finds nothing (`allowed` ops aside).
pub fn inspect(native: &Native, dir: &Path, allowed: &[String]) -> Result<Inspection, SavedModelError> {
    let pb = SavedModelPb::read(dir)?;
    let meta = pb.meta_graph(&[SERVE]).or(pb.meta_graphs.first()).ok_or_else(|| SavedModelError::NoMetaGraph {
        dir: dir.to_owned(),
        wanted: vec![SERVE.to_owned()],
        available: vec![],
    })?;
    let (variables, optimizer) = variables::analyse(meta);
    let op_scan = std::fs::read(dir.join(SAVED_MODEL_PB)).ok().and_then(|bytes| scan::scan(&bytes).ok());
    let refused = op_scan.as_ref().map(|s| s.refused(allowed).len()).unwrap_or(0);
    let native_load = if refused > 0 {
        NativeLoad::Skipped { reason: format!("loading runs the model's own functions, and the op scan refused {refused} op(s)") }
    } else {
        match LoadedModel::load(native, dir) {
            Ok(_) => NativeLoad::Ok,
            Err(e) => NativeLoad::Failed { error: e.to_string() },
        }
    };
    Ok(Inspection {
        path: dir.to_owned(),
        saved_by: Some(meta.tensorflow_version.clone()).filter(|v| !v.is_empty()),
        meta_graphs: pb.meta_graphs.iter().map(|m| m.tags.clone()).collect(),
        tags: meta.tags.clone(),
        signatures: meta.callable_signatures().cloned().collect(),
        variables,
        optimizer,
        files: Files::measure(dir),
        op_scan,
        native_load,
    })
}

/// Inspects a packaged SavedModel (`.tar.gz`), unpacking it into a temporary directory
/// inside `scratch_dir` that is removed afterwards.
pub fn inspect_archive(native: &Native, archive: &Path, scratch_dir: &Path, allowed: &[String]) -> Result<Inspection, InspectError> {
    inspect_archive_with(native, archive, scratch_dir, allowed, Limits::default())
}

/// [`inspect_archive`] with other extraction limits.
pub fn inspect_archive_with(
    native: &Native,
    archive: &Path,
    scratch_dir: &Path,
    allowed: &[String],
    limits: Limits,
) -> Result<Inspection, InspectError> {
    let extracted = extract_archive_with(archive, scratch_dir, limits)?;
    let mut inspection = inspect(native, extracted.path(), allowed)?;
    inspection.path = archive.to_owned();
    inspection.files.archive = std::fs::metadata(archive).ok().map(|m| m.len());
    if let NativeLoad::Failed { error } = &mut inspection.native_load {
        *error = error.replace(&extracted.path().display().to_string(), &archive.display().to_string());
    }
    Ok(inspection)
}

/// Why an archive could not be inspected.
#[derive(Debug, thiserror::Error, miette::Diagnostic)]
pub enum InspectError {
    #[error(transparent)]
    #[diagnostic(transparent)]
    Archive(#[from] ArchiveError),
    #[error(transparent)]
    #[diagnostic(transparent)]
    SavedModel(#[from] SavedModelError),
}

impl Files {
    /// Measures the SavedModel directory `dir`.
    pub fn measure(dir: &Path) -> Files {
        Files {
            saved_model_pb: std::fs::metadata(dir.join(SAVED_MODEL_PB)).map_or(0, |m| m.len()),
            variables: tree_size(&dir.join("variables")),
            assets: tree_size(&dir.join("assets")),
            total: tree_size(dir),
            archive: None,
        }
    }
}

/// Bytes of the regular files under `path` (symlinks not followed).
fn tree_size(path: &Path) -> u64 {
    let Ok(meta) = std::fs::symlink_metadata(path) else { return 0 };
    if meta.is_file() {
        return meta.len();
    }
    if !meta.is_dir() {
        return 0;
    }
    std::fs::read_dir(path).map(|entries| entries.filter_map(|e| e.ok()).map(|e| tree_size(&e.path())).sum()).unwrap_or(0)
}

/// How many variables the human report lists before summarising the rest.
const LISTED_VARIABLES: usize = 12;

impl Inspection {
    /// The report for a terminal: aligned tables, sizes in KiB/MiB.
    pub fn render_human(&self) -> String {
        let mut out = String::new();
        let _ = self.write_human(&mut out);
        out
    }

    fn write_human(&self, out: &mut String) -> std::fmt::Result {
        writeln!(out, "SavedModel {}", self.path.display())?;
        let tag_sets: Vec<String> = self.meta_graphs.iter().map(|t| format!("[{}]", t.join(", "))).collect();
        write!(out, "  meta graphs: {}", tag_sets.join(" "))?;
        match &self.saved_by {
            Some(version) => writeln!(out, "; saved by TensorFlow {version}")?,
            None => writeln!(out)?,
        }
        match &self.op_scan {
            Some(scan) if scan.findings.is_empty() => writeln!(
                out,
                "  op scan: ok ({} ops in {} functions; none reads or writes files, talks to other hosts or runs Python)",
                group_digits(scan.ops as u64),
                scan.functions
            )?,
            Some(scan) => {
                let all: Vec<&Finding> = scan.findings.iter().collect();
                writeln!(out, "  op scan: REFUSED: {}", Scan::describe(&all))?
            }
            None => writeln!(out, "  op scan: not done (saved_model.pb could not be read)")?,
        }
        match &self.native_load {
            NativeLoad::Ok => writeln!(out, "  native load: ok (TensorFlow C API, tag serve)")?,
            NativeLoad::Failed { error } => writeln!(out, "  native load: FAILED: {error}")?,
            NativeLoad::Skipped { reason } => writeln!(out, "  native load: not tried: {reason}")?,
        }

        writeln!(out)?;
        if self.signatures.is_empty() {
            writeln!(out, "Signatures: none")?;
        } else {
            writeln!(out, "Signatures")?;
            let mut rows = Vec::new();
            for signature in &self.signatures {
                rows.push(vec![format!("  {}", signature.key), format!("({})", signature.method)]);
                for (role, specs) in [("in", &signature.inputs), ("out", &signature.outputs)] {
                    for spec in specs {
                        let mut tensor = spec.tensor.clone();
                        if !spec.encoding.is_dense() {
                            tensor = format!("{:?}", spec.encoding).to_lowercase();
                        }
                        rows.push(vec![
                            format!("    {role} {}", spec.key),
                            spec.dtype.to_string(),
                            SpecShape(&spec.shape).to_string(),
                            tensor,
                        ]);
                    }
                }
            }
            write_table(out, &rows)?;
        }

        writeln!(out)?;
        let v = &self.variables;
        write!(
            out,
            "Variables: {} ({} trainable), {} parameters, {}",
            v.count,
            v.trainable,
            group_digits(v.parameters),
            human_bytes(v.bytes)
        )?;
        if v.unknown_size > 0 {
            write!(out, " + {} of unknown size", v.unknown_size)?;
        }
        writeln!(out)?;
        let rows: Vec<Vec<String>> = v
            .list
            .iter()
            .take(LISTED_VARIABLES)
            .map(|var| {
                let mut notes = Vec::new();
                if var.trainable == Some(true) {
                    notes.push("trainable");
                }
                if var.optimizer {
                    notes.push("OPTIMIZER");
                }
                vec![
                    format!("  {}", var.name),
                    var.dtype.to_string(),
                    SpecShape(&var.shape).to_string(),
                    var.bytes.map_or("?".to_owned(), human_bytes),
                    notes.join(", "),
                ]
            })
            .collect();
        write_table(out, &rows)?;
        if v.list.len() > LISTED_VARIABLES {
            writeln!(out, "  … and {} more (--format json lists them all)", v.list.len() - LISTED_VARIABLES)?;
        }
        if !v.repeated_names.is_empty() {
            writeln!(
                out,
                "  note: {} stored more than once with the same dtype and shape (Keras 3's model.export() saves \
                 each weight twice); the totals count every copy",
                shorten_list(&v.repeated_names, 4)
            )?;
        }

        writeln!(out)?;
        let o = &self.optimizer;
        if o.present {
            writeln!(
                out,
                "Optimizer state: PRESENT — {} ({} per-weight), {}; packages must not carry it (include-optimizer = false)",
                plural(o.variables.len(), "variable"),
                o.slots,
                human_bytes(o.bytes)
            )?;
            for object in &o.objects {
                writeln!(out, "  {}: {}", object.path, object.evidence)?;
            }
        } else {
            writeln!(out, "Optimizer state: none")?;
        }

        writeln!(out)?;
        let f = &self.files;
        write!(
            out,
            "Files: saved_model.pb {}, variables/ {}, assets/ {}, total {}",
            human_bytes(f.saved_model_pb),
            human_bytes(f.variables),
            human_bytes(f.assets),
            human_bytes(f.total)
        )?;
        if let Some(archive) = f.archive {
            write!(out, " (archive {})", human_bytes(archive))?;
        }
        writeln!(out)
    }
}

/// Writes `rows` with each column padded to its widest cell (the last column unpadded).
fn write_table(out: &mut String, rows: &[Vec<String>]) -> std::fmt::Result {
    let columns = rows.iter().map(Vec::len).max().unwrap_or(0);
    let widths: Vec<usize> =
        (0..columns).map(|c| rows.iter().filter(|r| r.len() > c + 1).map(|r| r[c].chars().count()).max().unwrap_or(0)).collect();
    for row in rows {
        let mut line = String::new();
        for (c, cell) in row.iter().enumerate() {
            if c + 1 < row.len() {
                write!(line, "{cell:<width$}  ", width = widths[c])?;
            } else {
                line.push_str(cell);
            }
        }
        writeln!(out, "{}", line.trim_end())?;
    }
    Ok(())
}

/// `512 B`, `3.2 KiB`, `18.7 MiB`, `1.40 GiB`.
pub fn human_bytes(bytes: u64) -> String {
    const KIB: f64 = 1024.0;
    let b = bytes as f64;
    if bytes < 1024 {
        format!("{bytes} B")
    } else if b < KIB * KIB {
        format!("{:.1} KiB", b / KIB)
    } else if b < KIB * KIB * KIB {
        format!("{:.1} MiB", b / (KIB * KIB))
    } else {
        format!("{:.2} GiB", b / (KIB * KIB * KIB))
    }
}

/// `1528026` → `1,528,026`.
pub fn group_digits(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

fn plural(n: usize, noun: &str) -> String {
    format!("{n} {noun}{}", if n == 1 { "" } else { "s" })
}

fn shorten_list(items: &[String], max: usize) -> String {
    if items.len() <= max {
        items.join(", ")
    } else {
        format!("{} and {} more", items[..max].join(", "), items.len() - max)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tf::dtype::DType;
    use crate::tf::signature::{Encoding, TensorSpec};
    use crate::tf::variables::{OptimizerObject, OptimizerVariable, VariableInfo};

    #[test]
    fn sizes_read_like_people_write_them() {
        assert_eq!(human_bytes(0), "0 B");
        assert_eq!(human_bytes(1023), "1023 B");
        assert_eq!(human_bytes(1536), "1.5 KiB");
        assert_eq!(human_bytes(19 * 1024 * 1024 + 700 * 1024), "19.7 MiB");
        assert_eq!(human_bytes(3 * 1024 * 1024 * 1024 / 2), "1.50 GiB");
        assert_eq!(group_digits(1528026), "1,528,026");
        assert_eq!(group_digits(67), "67");
    }

    fn sample() -> Inspection {
        let spec = |key: &str, tensor: &str, shape: Option<Vec<i64>>| TensorSpec {
            key: key.into(),
            tensor: tensor.into(),
            dtype: DType::Float32,
            shape,
            encoding: Encoding::Dense,
        };
        let var = |name: &str, shape: Vec<i64>, trainable: bool, optimizer: bool| VariableInfo {
            name: name.into(),
            path: None,
            dtype: DType::Float32,
            bytes: Some(4 * shape.iter().product::<i64>() as u64),
            shape: Some(shape),
            trainable: Some(trainable),
            optimizer,
        };
        Inspection {
            path: "dist/m/p/1/saved_model".into(),
            saved_by: Some("2.21.0".into()),
            meta_graphs: vec![vec!["serve".into()]],
            tags: vec!["serve".into()],
            signatures: vec![Signature {
                key: "serving_default".into(),
                method: "tensorflow/serving/predict".into(),
                inputs: vec![spec("features", "serving_default_features:0", Some(vec![-1, 4]))],
                outputs: vec![spec("logits", "StatefulPartitionedCall:0", None)],
            }],
            variables: Variables {
                source: "object-graph",
                count: 3,
                trainable: 2,
                parameters: 27,
                bytes: 108,
                unknown_size: 0,
                repeated_names: vec![],
                list: vec![
                    var("dense/kernel", vec![4, 3], true, false),
                    var("dense/bias", vec![3], true, false),
                    var("adam/dense_kernel_momentum", vec![4, 3], false, true),
                ],
            },
            optimizer: OptimizerState {
                present: true,
                objects: vec![OptimizerObject { path: "optimizer".into(), evidence: "saved as a Keras optimizer".into() }],
                variables: vec![OptimizerVariable { name: "adam/dense_kernel_momentum".into(), path: None, kind: "slot" }],
                slots: 1,
                bytes: 48,
            },
            files: Files { saved_model_pb: 30_000, variables: 2_000, assets: 0, total: 32_100, archive: None },
            op_scan: Some(Scan { ops: 100, functions: 4, findings: vec![] }),
            native_load: NativeLoad::Ok,
        }
    }

    #[test]
    fn human_report() {
        let expected = "\
SavedModel dist/m/p/1/saved_model
  meta graphs: [serve]; saved by TensorFlow 2.21.0
  op scan: ok (100 ops in 4 functions; none reads or writes files, talks to other hosts or runs Python)
  native load: ok (TensorFlow C API, tag serve)

Signatures
  serving_default  (tensorflow/serving/predict)
    in features    float32  [-1, 4]  serving_default_features:0
    out logits     float32  ?        StatefulPartitionedCall:0

Variables: 3 (2 trainable), 27 parameters, 108 B
  dense/kernel                float32  [4, 3]  48 B  trainable
  dense/bias                  float32  [3]     12 B  trainable
  adam/dense_kernel_momentum  float32  [4, 3]  48 B  OPTIMIZER

Optimizer state: PRESENT — 1 variable (1 per-weight), 48 B; packages must not carry it (include-optimizer = false)
  optimizer: saved as a Keras optimizer

Files: saved_model.pb 29.3 KiB, variables/ 2.0 KiB, assets/ 0 B, total 31.3 KiB
";
        assert_eq!(sample().render_human(), expected);
    }

    #[test]
    fn json_report_names_fields_plainly() {
        let json = serde_json::to_value(sample()).unwrap();
        assert_eq!(json["signatures"][0]["inputs"][0]["dtype"], "float32");
        assert_eq!(json["signatures"][0]["inputs"][0]["shape"], serde_json::json!([-1, 4]));
        assert_eq!(json["signatures"][0]["outputs"][0]["shape"], serde_json::Value::Null);
        assert!(json["signatures"][0]["inputs"][0].get("encoding").is_none(), "dense is the default, not written");
        assert_eq!(json["native_load"], serde_json::json!({"status": "ok"}));
        assert_eq!(json["optimizer"]["present"], true);
        assert!(json["files"].get("archive").is_none());
    }
}

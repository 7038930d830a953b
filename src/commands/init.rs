//! `exportctl init`: a commented starting manifest, optionally filled in for one model.

use std::path::Path;

use crate::cli::InitArgs;
use crate::error::{Error, Result};
use crate::manifest::source::FILE_NAMES;
use crate::outline::{ModelSource, Proposal};

use super::Workspace;

pub fn run(workspace: &Workspace, args: &InitArgs) -> Result<()> {
    let target = workspace.dir.join(workspace.manifest_arg.as_deref().unwrap_or(Path::new("Export.toml")));
    if !args.force {
        if let Some(existing) = FILE_NAMES.iter().map(|n| workspace.dir.join(n)).chain([target.clone()]).find(|p| p.exists()) {
            return Err(Error::usage(format!("{} already exists", existing.display()), "edit it, or pass --force to overwrite it"));
        }
    }
    let project = project_name(&workspace.dir);
    let text = match &args.model {
        Some(source) => {
            check_source(&workspace.dir, source)?;
            match ModelSource::recognise(&workspace.dir, source) {
                // The model is read: pieces, inputs and settings come from its structure.
                Some(model) => {
                    let outline = super::inspect::read_outline(workspace, &model)?;
                    Proposal::new(&project, &model_name(source), source, &outline).manifest()
                }
                // A SavedModel without Keras metadata has no layers to propose pieces from.
                None => template(&project, &model_name(source), source, true),
            }
        }
        None => template(&project, "my-model", "models/my-model.keras", false),
    };
    std::fs::write(&target, text).map_err(|e| Error::failed(format!("cannot write {}: {e}", target.display()), None))?;
    if workspace.quiet {
        return Ok(());
    }
    println!("wrote {}", target.display());
    if args.model.is_none() {
        println!("next: point `source` at your model, then run `exportctl check`");
    } else {
        println!("next: run `exportctl check`, then `exportctl build`");
    }
    Ok(())
}

fn check_source(dir: &Path, source: &str) -> Result<()> {
    let file = source.rsplit_once(':').filter(|(f, _)| f.ends_with(".py")).map_or(source, |(f, _)| f);
    let path = Path::new(file);
    if path.is_absolute() || path.components().any(|c| c == std::path::Component::ParentDir) {
        return Err(Error::usage(
            format!("`{source}` is outside the project"),
            "run init in the directory that holds the model (or pass -C DIR), with a relative path",
        ));
    }
    if !dir.join(path).exists() {
        return Err(Error::usage(
            format!("`{file}` does not exist"),
            "give the path of a .keras/.h5 file, a SavedModel directory or file.py:function",
        ));
    }
    Ok(())
}

/// A valid name (`[a-z0-9-]+`) made from a directory or file name.
fn sanitize(raw: &str, fallback: &str) -> String {
    let mut name = String::new();
    for c in raw.chars() {
        match c {
            'A'..='Z' | 'a'..='z' | '0'..='9' => name.push(c.to_ascii_lowercase()),
            _ if !name.ends_with('-') && !name.is_empty() => name.push('-'),
            _ => {}
        }
    }
    let name = name.trim_end_matches('-').to_string();
    if name.is_empty() {
        fallback.to_string()
    } else {
        name
    }
}

fn project_name(dir: &Path) -> String {
    let absolute = dir.canonicalize().unwrap_or_else(|_| dir.to_path_buf());
    sanitize(absolute.file_name().and_then(|n| n.to_str()).unwrap_or(""), "my-project")
}

fn model_name(source: &str) -> String {
    let file = source.rsplit_once(':').filter(|(f, _)| f.ends_with(".py")).map_or(source, |(f, _)| f);
    let stem = Path::new(file.trim_end_matches('/')).file_stem().and_then(|s| s.to_str()).unwrap_or("");
    sanitize(stem, "model")
}

fn template(project: &str, model: &str, source: &str, filled: bool) -> String {
    let source_comment = if filled { "" } else { "   # TODO: your trained model" };
    format!(
        r#"# exportctl manifest: see docs/manifest.md for every key.
# `exportctl check` validates it; `exportctl build` exports, validates and packages.

[project]
name = "{project}"
version = 1                      # TF Hub style model version
# publisher = "{project}"        # documentation handle: <publisher>/<model>-<piece>/<version>
# out-dir = "dist"

[defaults]
include-optimizer = false        # consumers never need the optimizer
# dropout = 0.1                  # rate of every Dropout layer in the packages
# batch-norm = {{ momentum = 0.99, epsilon = 0.001 }}
trainable = true

[models.{model}]
source = "{source}"{source_comment}
# custom-objects = ["layers.py"]  # Python files defining custom layers

# One package per piece. Without `from`/`to` a piece is the whole model; `to` names the
# layer whose output ends the piece (e.g. the logits before a softmax).
[[models.{model}.pieces]]
name = "full"

# [[models.{model}.pieces]]
# name = "feature-vector"
# to = "global_average_pooling2d"

[models.{model}.validate]
batch = 2                        # seeded random golden inputs
atol = 1e-5
rtol = 1e-5

[models.{model}.docs]
description = "TODO: one line saying what the model does."
license = "Apache-2.0"
# task = "image-classification"
"#
    )
}

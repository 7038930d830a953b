//! `exportctl publish`: the built packages to Kaggle Models, through the official `kaggle`
//! command-line tool.
//!
//! **Nothing is built here.** Publishing reads what `exportctl build` left in `dist/` (the
//! model's `model-metadata.json`, each piece's `kaggle/` folder with its
//! `model-instance-metadata.json`), checks it the way the `kaggle` tool and Kaggle will, and
//! then prints (`--dry-run`) or runs the tool's commands in order (`crate::kaggle::commands`).
//! Every problem is found before the first command runs: a publication never stops halfway
//! because of a file that was missing from the start.
//!
//! **Why the tool, not Kaggle's HTTP API.** The tool owns the upload protocol (resumable blob
//! uploads, the folder archived with `-r zip`) and the credentials; exportctl only prepares
//! its folders and says which commands to run, so `--dry-run` prints exactly what a user
//! could type.

use std::path::{Path, PathBuf};
use std::process::{Command as Process, Stdio};

use crate::error::{Error, Result};
use crate::kaggle::{self, Command, InstanceMetadata, ModelMetadata, Publication, Variation};
use crate::manifest::Manifest;

/// What `targets` select, read from `dist/`: the publications, in manifest order.
pub fn publications(manifest: &Manifest, targets: &[String]) -> Result<Vec<Publication>> {
    let selected = select(manifest, targets)?;
    let out_dir = shown(&manifest.out_dir());
    let version = manifest.project.version;
    let mut problems = Vec::new();
    let mut publications = Vec::new();
    for (model, pieces) in selected {
        let folder = out_dir.join(model);
        let metadata: Option<ModelMetadata> = read(&folder.join(kaggle::MODEL_METADATA), &mut problems);
        let mut variations = Vec::new();
        for piece in pieces {
            let variation_folder = folder.join(piece).join(version.to_string()).join(kaggle::FOLDER);
            let metadata: Option<InstanceMetadata> = read(&variation_folder.join(kaggle::INSTANCE_METADATA), &mut problems);
            if let Some(metadata) = metadata {
                check_variation(&metadata, &variation_folder, &mut problems);
                variations.push(Variation { folder: variation_folder, metadata });
            }
        }
        if let Some(metadata) = metadata {
            check_model(&metadata, &folder, &mut problems);
            publications.push(Publication { folder, metadata, variations });
        }
    }
    if !problems.is_empty() {
        let missing = problems.iter().any(|p| p.contains("does not exist"));
        let help = if missing {
            format!("run `exportctl build` first: it writes these files for version {version} (`project.version`)")
        } else {
            "set what is wrong in the manifest (`[kaggle]`, the model's name, `docs.license`) and run `exportctl build` again".to_string()
        };
        return Err(Error::failed(format!("cannot publish:\n  {}", problems.join("\n  ")), Some(help)).code("not-publishable"));
    }
    Ok(publications)
}

/// The version notes: `[kaggle] version-notes`, else `Version <version>`.
pub fn version_notes(manifest: &Manifest) -> String {
    manifest.kaggle.version_notes.clone().unwrap_or_else(|| format!("Version {}", manifest.project.version))
}

/// (model, its pieces) for each target (`model` or `model/piece`); everything without targets.
fn select<'m>(manifest: &'m Manifest, targets: &[String]) -> Result<Vec<(&'m str, Vec<&'m str>)>> {
    let mut selected: Vec<(&str, Vec<&str>)> = Vec::new();
    let mut add = |model: &'m str, piece: &'m str| match selected.iter_mut().find(|(m, _)| *m == model) {
        Some((_, pieces)) => {
            if !pieces.contains(&piece) {
                pieces.push(piece);
            }
        }
        None => selected.push((model, vec![piece])),
    };
    if targets.is_empty() {
        for model in &manifest.models {
            for piece in &model.pieces {
                add(&model.name, &piece.name);
            }
        }
        return Ok(selected);
    }
    for target in targets {
        let (model_name, piece_name) = match target.split_once('/') {
            Some((m, p)) => (m, Some(p)),
            None => (target.as_str(), None),
        };
        let Some(model) = manifest.model(model_name) else {
            let help = crate::suggestion::did_you_mean(model_name, manifest.models.iter().map(|m| m.name.as_str())).unwrap_or_else(|| {
                format!("the models are: {}", manifest.models.iter().map(|m| m.name.as_str()).collect::<Vec<_>>().join(", "))
            });
            return Err(Error::usage(format!("no model `{model_name}` in the manifest"), help).code("unknown-target"));
        };
        match piece_name {
            None => model.pieces.iter().for_each(|p| add(&model.name, &p.name)),
            Some(piece_name) => {
                let Some(piece) = model.piece(piece_name) else {
                    let names = model.pieces.iter().map(|p| p.name.as_str());
                    let help = crate::suggestion::did_you_mean(piece_name, names.clone())
                        .unwrap_or_else(|| format!("`{}` has: {}", model.name, names.collect::<Vec<_>>().join(", ")));
                    return Err(Error::usage(format!("model `{}` has no piece `{piece_name}`", model.name), help).code("unknown-target"));
                };
                add(&model.name, &piece.name);
            }
        }
    }
    Ok(selected)
}

fn read<T: serde::de::DeserializeOwned>(path: &Path, problems: &mut Vec<String>) -> Option<T> {
    let text = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            problems.push(format!("{} does not exist", path.display()));
            return None;
        }
        Err(e) => {
            problems.push(format!("cannot read {}: {e}", path.display()));
            return None;
        }
    };
    match serde_json::from_str(&text) {
        Ok(value) => Some(value),
        Err(e) => {
            problems.push(format!("{} is not the metadata exportctl writes: {e}", path.display()));
            None
        }
    }
}

/// What `kaggle models create` and Kaggle would refuse in the model's metadata.
fn check_model(metadata: &ModelMetadata, folder: &Path, problems: &mut Vec<String>) {
    let file = folder.join(kaggle::MODEL_METADATA);
    if !kaggle::is_owner_slug(&metadata.owner_slug) {
        problems.push(format!(
            "{}: owner `{}` is not a Kaggle owner slug (set `[kaggle] owner` to your Kaggle user name)",
            file.display(),
            metadata.owner_slug
        ));
    }
    if !kaggle::is_model_slug(&metadata.slug) {
        problems.push(format!(
            "{}: model slug `{}` is not a Kaggle model slug (lowercase letters and digits joined by single dashes: rename the model `{}`)",
            file.display(),
            metadata.slug,
            kaggle::to_slug(&metadata.slug)
        ));
    }
}

/// What `kaggle models instances create` and Kaggle would refuse in a variation.
fn check_variation(metadata: &InstanceMetadata, folder: &Path, problems: &mut Vec<String>) {
    let file = folder.join(kaggle::INSTANCE_METADATA);
    if metadata.license_name.is_empty() {
        problems.push(format!("{}: no license (set `docs.license`, an SPDX id such as \"Apache-2.0\")", file.display()));
    } else if !kaggle::LICENSES.iter().any(|(_, name)| *name == metadata.license_name) {
        problems.push(format!(
            "{}: license `{}` is not one Kaggle Models lists (Kaggle takes: {})",
            file.display(),
            metadata.license_name,
            kaggle::LICENSES.iter().map(|(spdx, _)| *spdx).collect::<Vec<_>>().join(", ")
        ));
    }
    if !folder.join("saved_model.pb").is_file() {
        problems.push(format!("{} has no saved_model.pb: the variation would upload no model", folder.display()));
    }
}

/// A path as the user would type it from where they stand (`./dist` → `dist`).
fn shown(path: &Path) -> PathBuf {
    path.strip_prefix(".").map(Path::to_path_buf).unwrap_or_else(|_| path.to_path_buf())
}

/// What running the commands needs and is missing: the `kaggle` executable, credentials.
pub fn missing_prerequisites() -> Vec<String> {
    let mut missing = Vec::new();
    if kaggle::find_cli(std::env::var_os("PATH").as_deref()).is_none() {
        missing.push("the `kaggle` command is not on PATH: install it with `pip install kaggle`".to_string());
    }
    let env = |name: &str| std::env::var(name).ok();
    let home = std::env::var_os("HOME").map(PathBuf::from);
    if kaggle::find_credentials(&env, home.as_deref()).is_none() {
        let dir = kaggle::config_dir(&env, home.as_deref()).map(|d| d.display().to_string()).unwrap_or_else(|| "~/.kaggle".into());
        missing.push(format!(
            "no Kaggle credentials: neither $KAGGLE_USERNAME with $KAGGLE_KEY, $KAGGLE_API_TOKEN, nor {dir}/kaggle.json or {dir}/access_token \
             (create a token under Settings → API on kaggle.com)"
        ));
    }
    missing
}

/// Runs `commands` one after the other, echoing each and what it printed; stops at the first
/// that fails or whose output says Kaggle refused (the tool exits 0 even then).
pub fn run(commands: &[Command], cwd: &Path) -> Result<()> {
    for (i, command) in commands.iter().enumerate() {
        eprintln!("# {}", command.what);
        eprintln!("$ {}", command.shell());
        let output = Process::new("kaggle")
            .args(&command.args)
            .current_dir(cwd)
            .stdin(Stdio::null())
            .output()
            .map_err(|e| Error::failed(format!("cannot run `kaggle`: {e}"), Some("install it with `pip install kaggle`".into())))?;
        let printed = String::from_utf8_lossy(&output.stdout).into_owned() + &String::from_utf8_lossy(&output.stderr);
        eprint!("{printed}");
        let rest = || {
            let left: Vec<String> = commands[i + 1..].iter().map(Command::shell).collect();
            if left.is_empty() {
                String::new()
            } else {
                format!("; then the commands left:\n  {}", left.join("\n  "))
            }
        };
        if !output.status.success() {
            return Err(Error::failed(
                format!("`{}` failed ({})", command.shell(), output.status),
                Some(format!("fix what the kaggle tool printed above and run it again{}", rest())),
            )
            .code("publish-failed"));
        }
        if let Some(refusal) = kaggle::refusal(&printed) {
            return Err(Error::failed(
                format!("Kaggle refused `{}`: {refusal}", command.shell()),
                Some(format!("fix it and run the command again{}", rest())),
            )
            .code("publish-failed"));
        }
    }
    Ok(())
}

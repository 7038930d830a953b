//! Kaggle Models: what the official `kaggle` command-line tool reads to publish a model, and
//! the commands `exportctl publish` runs.
//!
//! **Entities.** A Kaggle *model* (`owner/slug`) holds *variations* (Kaggle's API and files
//! call them instances), each for one framework, each with numbered versions. exportctl maps
//! a manifest model to a Kaggle model and each of its pieces to a `TensorFlow2` variation
//! named after the piece; a variation's versions follow `project.version`.
//!
//! **Files and folders** (the `kaggle` tool, version 2.x, reads exactly these names and no
//! others), written by the package step and linked into `dist/` (see `exec::dist`):
//!
//! | folder | holds | command |
//! |---|---|---|
//! | `dist/<model>/` | [`MODEL_METADATA`] (beside the pieces' folders: the command uploads nothing) | `kaggle models create -p DIR` (and `update`) |
//! | `dist/<model>/<piece>/<version>/kaggle/` | [`INSTANCE_METADATA`] and the SavedModel's files | `kaggle models instances create -p DIR -r zip`, `… versions create HANDLE -p DIR -r zip -n NOTES` |
//!
//! The tool uploads every file at the top of the folder except the two metadata files, and a
//! sub-folder (the SavedModel's `variables/`) only with `-r zip` or `-r tar` (it packs each
//! sub-folder into one archive, `variables.zip`; without either the tool skips it, and the
//! variation would have no weights). So each variation's folder is its SavedModel, ready to
//! upload, and the commands always pass `-r zip`. (Checked against the `kaggle` package's own
//! code, 2.2.5: `tests/integration/examples.rs` publishes every example with the real tool, its
//! network cut (`assert_publishable` in `consumers.rs`), so the tool's metadata checks run on each.)
//!
//! **The rules the tool checks before uploading** (checked here too, so that `publish` fails
//! before anything is sent): the model's owner and slug are lowercase letters and digits joined
//! by single dashes (the owner may use `_` too); `isPrivate` and `fineTunable` are booleans;
//! `trainingData` a list of strings; `licenseName` not empty. The license must be one of the
//! names Kaggle lists ([`license_name`] maps SPDX ids to them); the tool leaves that to the
//! server. `description`, `overview` and `usage` are markdown; the tool escapes `<`, `>` and `&`
//! in them, even inside code blocks.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// The model's metadata file: `kaggle models create -p DIR` reads `DIR/model-metadata.json`.
pub const MODEL_METADATA: &str = "model-metadata.json";
/// A variation's metadata file: `kaggle models instances create -p DIR` reads it.
pub const INSTANCE_METADATA: &str = "model-instance-metadata.json";
/// The folder of a piece's version that `kaggle models instances …` uploads.
pub const FOLDER: &str = "kaggle";
/// The framework of every variation exportctl writes, as the metadata names it.
pub const FRAMEWORK: &str = "TensorFlow2";
/// The framework as variation handles spell it (`owner/model/tensorFlow2/variation`).
pub const FRAMEWORK_IN_HANDLES: &str = "tensorFlow2";

/// `model-metadata.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ModelMetadata {
    pub owner_slug: String,
    pub title: String,
    pub slug: String,
    pub subtitle: String,
    pub is_private: bool,
    /// The model card (markdown).
    pub description: String,
    /// `YYYY-MM-DD` or empty.
    pub publish_time: String,
    pub provenance_sources: String,
}

/// `model-instance-metadata.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct InstanceMetadata {
    pub owner_slug: String,
    pub model_slug: String,
    pub instance_slug: String,
    pub framework: String,
    pub overview: String,
    /// How to use the variation (markdown).
    pub usage: String,
    /// One of Kaggle's license names; empty when the manifest names none.
    pub license_name: String,
    pub fine_tunable: bool,
    pub training_data: Vec<String>,
    pub model_instance_type: String,
    pub base_model_instance: String,
    pub external_base_model_url: String,
}

impl InstanceMetadata {
    /// `owner/model/tensorFlow2/variation`: how `versions create` and `kagglehub` name it.
    pub fn handle(&self) -> String {
        variation_handle(&self.owner_slug, &self.model_slug, &self.instance_slug)
    }
}

/// `owner/model/tensorFlow2/variation`.
pub fn variation_handle(owner: &str, model: &str, variation: &str) -> String {
    format!("{owner}/{model}/{FRAMEWORK_IN_HANDLES}/{variation}")
}

/// A model's title on Kaggle when the manifest gives none: its name, words capitalised
/// (`encoder-with-mlm` → `Encoder With Mlm`).
pub fn default_title(name: &str) -> String {
    name.split(['-', '_'])
        .filter(|w| !w.is_empty())
        .map(|w| {
            let mut chars = w.chars();
            chars.next().map(|c| c.to_ascii_uppercase().to_string() + chars.as_str()).unwrap_or_default()
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// Lowercase letters and digits joined by single `-` (`_` too with `underscore`): the rule the
/// `kaggle` tool checks model slugs (without `_`) and owner slugs (with) against.
fn is_slug(text: &str, underscore: bool) -> bool {
    let separator = |c: char| c == '-' || (underscore && c == '_');
    !text.is_empty()
        && text.split(separator).all(|part| !part.is_empty() && part.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit()))
}

/// A Kaggle model slug: `^[a-z0-9]+(?:-[a-z0-9]+)*$`.
pub fn is_model_slug(text: &str) -> bool {
    is_slug(text, false)
}

/// A Kaggle owner slug: `^[a-z0-9]+(?:[_-][a-z0-9]+)*$`.
pub fn is_owner_slug(text: &str) -> bool {
    is_slug(text, true)
}

/// The closest slug to `text` (for help texts): lowercase, runs of other characters as one `-`.
pub fn to_slug(text: &str) -> String {
    let mut out = String::new();
    for c in text.trim().chars() {
        if c.is_ascii_alphanumeric() {
            out.push(c.to_ascii_lowercase());
        } else if !out.is_empty() && !out.ends_with('-') {
            out.push('-');
        }
    }
    out.trim_end_matches('-').to_string()
}

/// SPDX license ids → the names Kaggle Models lists (its `licenseName` values).
pub const LICENSES: &[(&str, &str)] = &[
    ("apache-2.0", "Apache 2.0"),
    ("mit", "MIT"),
    ("bsd-3-clause", "BSD-3-Clause"),
    ("cc0-1.0", "CC0: Public Domain"),
    ("cc-by-3.0", "Attribution 3.0 Unported (CC BY 3.0)"),
    ("cc-by-3.0-igo", "Attribution 3.0 IGO (CC BY 3.0 IGO)"),
    ("cc-by-4.0", "Attribution 4.0 International (CC BY 4.0)"),
    ("cc-by-nd-4.0", "Attribution-NoDerivatives 4.0 International (CC BY-ND 4.0)"),
    ("cc-by-nc-4.0", "Attribution-NonCommercial 4.0 International (CC BY-NC 4.0)"),
    ("cc-by-nc-nd-4.0", "Attribution-NonCommercial-NoDerivatives 4.0 International (CC BY-NC-ND 4.0)"),
    ("cc-by-nc-sa-3.0-igo", "Attribution-NonCommercial-ShareAlike 3.0 IGO (CC BY-NC-SA 3.0 IGO)"),
    ("cc-by-nc-sa-4.0", "CC BY-NC-SA 4.0"),
    ("cc-by-sa-3.0", "CC BY-SA 3.0"),
    ("cc-by-sa-4.0", "CC BY-SA 4.0"),
    ("cdla-permissive-1.0", "Community Data License Agreement - Permissive - Version 1.0"),
    ("cdla-sharing-1.0", "Community Data License Agreement - Sharing - Version 1.0"),
    ("agpl-3.0", "GNU Affero General Public License 3.0"),
    ("gfdl-1.3", "GNU Free Documentation License 1.3"),
    ("lgpl-3.0", "GNU Lesser General Public License 3.0"),
    ("gpl-2.0", "GPL 2"),
    ("gpl-3.0", "GPL 3"),
    ("odc-by-1.0", "ODC Attribution License (ODC-By)"),
    ("pddl-1.0", "ODC Public Domain Dedication and Licence (PDDL)"),
];

/// Kaggle's name of a license given as an SPDX id (`Apache-2.0` → `Apache 2.0`,
/// `GPL-3.0-only` → `GPL 3`); a name Kaggle lists is kept as it is. `None`: Kaggle has no
/// such license.
pub fn license_name(license: &str) -> Option<&'static str> {
    let trimmed = license.trim();
    if let Some((_, name)) = LICENSES.iter().find(|(_, name)| *name == trimmed) {
        return Some(name);
    }
    let lower = trimmed.to_ascii_lowercase();
    let lower = ["-only", "-or-later"].iter().fold(lower.as_str(), |l, suffix| l.strip_suffix(suffix).unwrap_or(l));
    LICENSES.iter().find(|(spdx, _)| *spdx == lower).map(|(_, name)| *name)
}

// ---------------------------------------------------------------------------------------------
// Publishing.
// ---------------------------------------------------------------------------------------------

/// One `kaggle` command of a publication, and what it does.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Command {
    /// The arguments after `kaggle`.
    pub args: Vec<String>,
    /// One line for people: what the command does.
    pub what: String,
}

impl Command {
    /// The command as it is typed in a POSIX shell.
    pub fn shell(&self) -> String {
        std::iter::once("kaggle".to_string()).chain(self.args.iter().map(|a| shell_quote(a))).collect::<Vec<_>>().join(" ")
    }
}

/// `text` quoted for a POSIX shell when it needs to be.
pub fn shell_quote(text: &str) -> String {
    let plain = !text.is_empty() && text.chars().all(|c| c.is_ascii_alphanumeric() || "-_./:=@%+,".contains(c));
    if plain {
        text.to_string()
    } else {
        format!("'{}'", text.replace('\'', r"'\''"))
    }
}

/// A variation to publish: its folder and metadata.
#[derive(Debug, Clone)]
pub struct Variation {
    /// The folder `kaggle models instances …` reads (relative to where the command runs).
    pub folder: PathBuf,
    pub metadata: InstanceMetadata,
}

/// A model to publish and the variations of it that were selected.
#[derive(Debug, Clone)]
pub struct Publication {
    /// The folder holding [`MODEL_METADATA`]: `dist/<model>`.
    pub folder: PathBuf,
    pub metadata: ModelMetadata,
    pub variations: Vec<Variation>,
}

/// The commands that publish version `version` of `publications`, in order. Version 1 creates
/// each model and its variations (a variation's first version is uploaded as it is created);
/// a later version refreshes the model card and each variation's documentation, then uploads
/// the variation's new version with `notes`.
pub fn commands(publications: &[Publication], version: u32, notes: &str) -> Vec<Command> {
    let path = |p: &Path| p.to_string_lossy().into_owned();
    let mut out = Vec::new();
    for publication in publications {
        let model = format!("{}/{}", publication.metadata.owner_slug, publication.metadata.slug);
        let verb = if version == 1 { "create" } else { "update" };
        out.push(Command {
            args: vec!["models".into(), verb.into(), "-p".into(), path(&publication.folder)],
            what: if version == 1 { format!("create the model {model}") } else { format!("update the model card of {model}") },
        });
        for variation in &publication.variations {
            let handle = variation.metadata.handle();
            if version == 1 {
                out.push(Command {
                    args: ["models", "instances", "create", "-p"]
                        .map(String::from)
                        .into_iter()
                        .chain([path(&variation.folder), "-r".into(), "zip".into()])
                        .collect(),
                    what: format!("create the variation {handle} and upload its version 1"),
                });
            } else {
                out.push(Command {
                    args: vec!["models".into(), "instances".into(), "update".into(), "-p".into(), path(&variation.folder)],
                    what: format!("update the documentation of {handle}"),
                });
                out.push(Command {
                    args: ["models", "instances", "versions", "create"]
                        .map(String::from)
                        .into_iter()
                        .chain([
                            handle.clone(),
                            "-p".into(),
                            path(&variation.folder),
                            "-r".into(),
                            "zip".into(),
                            "-n".into(),
                            notes.to_string(),
                        ])
                        .collect(),
                    what: format!("upload version {version} of {handle}"),
                });
            }
        }
    }
    out
}

/// Where the `kaggle` tool's credentials were found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Credentials {
    /// `KAGGLE_USERNAME` and `KAGGLE_KEY`.
    Environment,
    /// `KAGGLE_API_TOKEN`.
    Token,
    /// A file: `kaggle.json` or `access_token` in the configuration folder.
    File(PathBuf),
}

impl std::fmt::Display for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Credentials::Environment => write!(f, "$KAGGLE_USERNAME and $KAGGLE_KEY"),
            Credentials::Token => write!(f, "$KAGGLE_API_TOKEN"),
            Credentials::File(path) => write!(f, "{}", path.display()),
        }
    }
}

/// The folder the `kaggle` tool reads its credentials from: `$KAGGLE_CONFIG_DIR`, else
/// `~/.kaggle`.
pub fn config_dir(env: &dyn Fn(&str) -> Option<String>, home: Option<&Path>) -> Option<PathBuf> {
    match env("KAGGLE_CONFIG_DIR").filter(|d| !d.is_empty()) {
        Some(dir) => Some(PathBuf::from(dir)),
        None => home.map(|h| h.join(".kaggle")),
    }
}

/// The credentials the `kaggle` tool would use, looked for where it looks (no file is read
/// beyond checking that it exists). `None`: there are none.
pub fn find_credentials(env: &dyn Fn(&str) -> Option<String>, home: Option<&Path>) -> Option<Credentials> {
    let set = |name: &str| env(name).is_some_and(|v| !v.is_empty());
    if set("KAGGLE_USERNAME") && set("KAGGLE_KEY") {
        return Some(Credentials::Environment);
    }
    if set("KAGGLE_API_TOKEN") {
        return Some(Credentials::Token);
    }
    let dir = config_dir(env, home)?;
    ["kaggle.json", "access_token", "access_token.txt"].iter().map(|name| dir.join(name)).find(|p| p.is_file()).map(Credentials::File)
}

/// The `kaggle` executable on `path` (a `PATH`-style list of folders).
pub fn find_cli(path: Option<&std::ffi::OsStr>) -> Option<PathBuf> {
    use std::os::unix::fs::PermissionsExt as _;
    std::env::split_paths(path?)
        .map(|dir| dir.join("kaggle"))
        .find(|candidate| std::fs::metadata(candidate).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0))
}

/// What a `kaggle` command printed, when it says the server refused: the tool exits with 0
/// even then, and prints `… creation error: …` / `… update error: …` instead.
pub fn refusal(output: &str) -> Option<&str> {
    output.lines().map(str::trim).find(|line| line.starts_with("Model") && line.contains(" error: "))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slugs_follow_the_kaggle_tools_rules() {
        for ok in ["exportctl-examples", "a", "my-mul", "encoder-with-mlm", "v2"] {
            assert!(is_model_slug(ok), "{ok}");
            assert!(is_owner_slug(ok), "{ok}");
        }
        for bad in ["", "-a", "a-", "a--b", "A", "a b", "a_b"] {
            assert!(!is_model_slug(bad), "{bad}");
        }
        assert!(is_owner_slug("my_team"));
        assert!(!is_owner_slug("my__team"));
        assert_eq!(to_slug("My Team!"), "my-team");
        assert_eq!(default_title("encoder-with-mlm"), "Encoder With Mlm");
    }

    #[test]
    fn spdx_ids_map_to_kaggles_license_names() {
        assert_eq!(license_name("Apache-2.0"), Some("Apache 2.0"));
        assert_eq!(license_name("apache-2.0"), Some("Apache 2.0"));
        assert_eq!(license_name("GPL-3.0-only"), Some("GPL 3"));
        assert_eq!(license_name("GPL-2.0-or-later"), Some("GPL 2"));
        assert_eq!(license_name("CC0-1.0"), Some("CC0: Public Domain"));
        assert_eq!(license_name("CC-BY-4.0"), Some("Attribution 4.0 International (CC BY 4.0)"));
        assert_eq!(license_name("Attribution 4.0 International (CC BY 4.0)"), Some("Attribution 4.0 International (CC BY 4.0)"));
        assert_eq!(license_name("MPL-2.0"), None, "Kaggle lists no MPL");
        assert_eq!(license_name("Apache 2"), None);
    }

    fn publication() -> Publication {
        let instance = |piece: &str| InstanceMetadata {
            owner_slug: "acme".into(),
            model_slug: "vision".into(),
            instance_slug: piece.into(),
            framework: FRAMEWORK.into(),
            overview: String::new(),
            usage: String::new(),
            license_name: "Apache 2.0".into(),
            fine_tunable: true,
            training_data: vec![],
            model_instance_type: "Unspecified".into(),
            base_model_instance: String::new(),
            external_base_model_url: String::new(),
        };
        Publication {
            folder: PathBuf::from("dist/vision"),
            metadata: ModelMetadata {
                owner_slug: "acme".into(),
                title: "Vision".into(),
                slug: "vision".into(),
                subtitle: String::new(),
                is_private: true,
                description: String::new(),
                publish_time: String::new(),
                provenance_sources: String::new(),
            },
            variations: ["classifier", "features"]
                .iter()
                .map(|p| Variation { folder: PathBuf::from(format!("dist/vision/{p}/1/kaggle")), metadata: instance(p) })
                .collect(),
        }
    }

    #[test]
    fn version_one_creates_the_model_then_each_variation() {
        let shell: Vec<String> = commands(&[publication()], 1, "Version 1").iter().map(Command::shell).collect();
        assert_eq!(
            shell,
            [
                "kaggle models create -p dist/vision",
                "kaggle models instances create -p dist/vision/classifier/1/kaggle -r zip",
                "kaggle models instances create -p dist/vision/features/1/kaggle -r zip",
            ]
        );
    }

    #[test]
    fn a_later_version_updates_the_docs_and_uploads_a_version_with_its_notes() {
        let mut publication = publication();
        for v in &mut publication.variations {
            v.folder = PathBuf::from(v.folder.to_string_lossy().replace("/1/", "/2/"));
        }
        publication.variations.truncate(1);
        let shell: Vec<String> = commands(&[publication], 2, "Retrained on 2x the data; it's better").iter().map(Command::shell).collect();
        assert_eq!(
            shell,
            [
                "kaggle models update -p dist/vision",
                "kaggle models instances update -p dist/vision/classifier/2/kaggle",
                "kaggle models instances versions create acme/vision/tensorFlow2/classifier -p dist/vision/classifier/2/kaggle -r zip -n 'Retrained on 2x the data; it'\\''s better'",
            ]
        );
    }

    #[test]
    fn credentials_are_looked_for_where_the_kaggle_tool_looks() {
        let home = tempfile::tempdir().unwrap();
        let none = |_: &str| None;
        assert_eq!(find_credentials(&none, Some(home.path())), None);
        let env = |name: &str| matches!(name, "KAGGLE_USERNAME" | "KAGGLE_KEY").then(|| "x".to_string());
        assert_eq!(find_credentials(&env, Some(home.path())), Some(Credentials::Environment));
        let only_user = |name: &str| (name == "KAGGLE_USERNAME").then(|| "x".to_string());
        assert_eq!(find_credentials(&only_user, Some(home.path())), None, "a user name without a key is not enough");
        std::fs::create_dir(home.path().join(".kaggle")).unwrap();
        std::fs::write(home.path().join(".kaggle/kaggle.json"), "{}").unwrap();
        assert_eq!(find_credentials(&none, Some(home.path())), Some(Credentials::File(home.path().join(".kaggle/kaggle.json"))));
        let elsewhere = tempfile::tempdir().unwrap();
        let config = elsewhere.path().to_string_lossy().into_owned();
        let env = move |name: &str| (name == "KAGGLE_CONFIG_DIR").then(|| config.clone());
        assert_eq!(find_credentials(&env, Some(home.path())), None, "$KAGGLE_CONFIG_DIR replaces ~/.kaggle");
    }

    #[test]
    fn a_refusal_is_found_in_what_the_tool_printed() {
        assert_eq!(refusal("Your model was created. Id=1. Url=https://www.kaggle.com/models/acme/vision\n"), None);
        assert_eq!(refusal("Model creation error: Model already exists\n"), Some("Model creation error: Model already exists"));
    }
}

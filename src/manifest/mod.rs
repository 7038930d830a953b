//! The manifest: `Export.toml` or `export.yaml`, from text to a validated [`Manifest`].
//!
//! Phases, each in its own file: `document` parses TOML or YAML into one spanned tree
//! (`syntax` turns the parsers' errors into ones a user can act on);
//! `shape` checks that tree against the declared keys of `schema`; `resolve` applies
//! defaults and inheritance and checks what needs meaning (paths, names, conflicts) into the
//! types of `model`. Every phase adds to one list of [`ManifestError`]s, so a file's
//! problems are all reported at once.

pub mod diagnostic;
pub mod document;
pub mod model;
mod resolve;
pub mod schema;
mod shape;
pub mod source;
mod syntax;

use std::path::{Path, PathBuf};
use std::sync::Arc;

pub use diagnostic::{ManifestError, ManifestErrors};
pub use model::*;
pub use source::{Format, ManifestSource};

/// Why no manifest could be had.
#[derive(Debug, thiserror::Error, miette::Diagnostic)]
pub enum LoadError {
    #[error("no Export.toml or export.yaml in {}", .dir.display())]
    #[diagnostic(help("run `exportctl init` to write a starting manifest, or pass -C DIR / -m FILE"))]
    NotFound { dir: PathBuf },
    #[error("cannot read {}: {source}", .path.display())]
    #[diagnostic(help("check the path given to -m / -C"))]
    Unreadable { path: PathBuf, source: std::io::Error },
    #[error("{0}")]
    Invalid(ManifestErrors),
}

/// The manifest to use: `explicit` (`-m FILE`, relative to `dir`) or the first of
/// [`source::FILE_NAMES`] found in `dir`.
pub fn locate(dir: &Path, explicit: Option<&Path>) -> Result<PathBuf, LoadError> {
    if let Some(file) = explicit {
        let path = dir.join(file);
        return if path.is_file() {
            Ok(path)
        } else {
            Err(LoadError::Unreadable { path, source: std::io::Error::from(std::io::ErrorKind::NotFound) })
        };
    }
    source::FILE_NAMES.iter().map(|name| dir.join(name)).find(|p| p.is_file()).ok_or_else(|| LoadError::NotFound { dir: dir.to_path_buf() })
}

/// Reads and validates the manifest at `path`. `name` is what diagnostics call the file.
pub fn load(path: &Path, name: &str) -> Result<Manifest, LoadError> {
    let text = std::fs::read_to_string(path).map_err(|source| LoadError::Unreadable { path: path.to_path_buf(), source })?;
    let source = ManifestSource::new(path.to_path_buf(), name.to_string(), text);
    let root = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    parse(source, &root).map_err(LoadError::Invalid)
}

/// Validates manifest text. `root` is the project directory the paths are relative to.
pub fn parse(source: Arc<ManifestSource>, root: &Path) -> Result<Manifest, ManifestErrors> {
    let tree = match source.format {
        Format::Toml => document::toml_format::parse(&source.text),
        Format::Yaml => document::yaml_format::parse(&source.text),
    };
    let tree = match tree {
        Ok(tree) => tree,
        Err(syntax) => {
            let errors = syntax.into_iter().map(|e| ManifestError::new("syntax", e.span, e.message).label(e.label).help(e.help)).collect();
            return Err(ManifestErrors { source, errors });
        }
    };
    let mut errors = Vec::new();
    shape::check(&tree, source.format, &mut errors);
    let manifest = resolve::resolve(source.clone(), root, &tree, &mut errors);
    match manifest {
        Some(m) if errors.is_empty() => Ok(m),
        _ => {
            errors.sort_by_key(|e| (e.span.start, e.span.end));
            // A value reached twice (a YAML alias of an anchored table) is reported once.
            errors.dedup_by(|a, b| a.code == b.code && a.span == b.span);
            Err(ManifestErrors { source, errors })
        }
    }
}

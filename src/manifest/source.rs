//! The manifest file as read from disk: its text, its format and the name diagnostics show.

use std::path::{Path, PathBuf};
use std::sync::Arc;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Toml,
    Yaml,
}

/// The file names looked up, in order, when no `-m MANIFEST` is given.
pub const FILE_NAMES: &[&str] = &["Export.toml", "export.yaml", "Export.yaml", "export.yml", "Export.yml"];

#[derive(Debug)]
pub struct ManifestSource {
    /// The path as it will be read.
    pub path: PathBuf,
    /// What diagnostics call the file (relative to where the user stands when possible).
    pub name: String,
    pub text: String,
    pub format: Format,
}

impl ManifestSource {
    pub fn new(path: PathBuf, name: String, text: String) -> Arc<Self> {
        let format = Format::of(&path);
        Arc::new(ManifestSource { path, name, text, format })
    }

    /// 1-based line and column (in characters) of a byte offset.
    pub fn line_col(&self, offset: usize) -> (usize, usize) {
        let offset = floor_char_boundary(&self.text, offset.min(self.text.len()));
        let before = &self.text[..offset];
        let line = before.matches('\n').count() + 1;
        let line_start = before.rfind('\n').map_or(0, |i| i + 1);
        let col = self.text[line_start..offset].chars().count() + 1;
        (line, col)
    }

    /// The text of the 1-based line `line`, without its newline.
    pub fn line_text(&self, line: usize) -> &str {
        self.text.lines().nth(line.saturating_sub(1)).unwrap_or("")
    }
}

impl Format {
    pub fn of(path: &Path) -> Format {
        match path.extension().and_then(|e| e.to_str()) {
            Some("yaml" | "yml") => Format::Yaml,
            _ => Format::Toml,
        }
    }
}

pub(crate) fn floor_char_boundary(text: &str, mut offset: usize) -> usize {
    while offset > 0 && !text.is_char_boundary(offset) {
        offset -= 1;
    }
    offset
}

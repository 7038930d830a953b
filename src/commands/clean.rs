use crate::cli::CleanArgs;
use crate::error::{Error, Result};

use super::Workspace;

pub fn run(workspace: &Workspace, args: &CleanArgs) -> Result<()> {
    let manifest = workspace.load_manifest()?;
    let cache_dir = crate::cache::dir(&manifest.root);
    // Never under a running build.
    let _lock = if cache_dir.is_dir() {
        Some(crate::cache::ProjectLock::acquire(&cache_dir, false, |_| {}).map_err(|e| Error::usage(e.to_string(), "wait for the build to finish (or stop it), then clean"))?)
    } else {
        None
    };
    let mut removed = Vec::new();
    let out_dir = manifest.out_dir();
    if out_dir.exists() {
        std::fs::remove_dir_all(&out_dir).map_err(|e| Error::failed(format!("cannot remove {}: {e}", out_dir.display()), None))?;
        removed.push(out_dir.display().to_string());
    }
    // dist.json describes dist/: without dist/ it describes nothing.
    let _ = std::fs::remove_file(cache_dir.join("dist.json"));
    if args.cache && cache_dir.exists() {
        for entry in std::fs::read_dir(&cache_dir).map_err(|e| Error::failed(format!("cannot read {}: {e}", cache_dir.display()), None))?.flatten() {
            // The lock file stays: we hold it.
            if entry.file_name() != "build.lock" {
                let path = entry.path();
                let result = if path.is_dir() { std::fs::remove_dir_all(&path) } else { std::fs::remove_file(&path) };
                result.map_err(|e| Error::failed(format!("cannot remove {}: {e}", path.display()), None))?;
            }
        }
        removed.push(cache_dir.display().to_string());
    }
    if removed.is_empty() {
        println!("nothing to clean");
    } else {
        println!("removed {}", removed.join(" and "));
    }
    Ok(())
}

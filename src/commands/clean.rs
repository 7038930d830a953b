//! `exportctl clean`: the packages exportctl wrote in `dist/`; with `--cache`, the cache too;
//! with `--gc`, only what the cache's size limit says must go.

use std::collections::HashSet;

use crate::cache;
use crate::cli::CleanArgs;
use crate::error::{Error, Result};
use crate::lockfile::{self, LockFile};

use super::Workspace;

pub fn run(workspace: &Workspace, args: &CleanArgs) -> Result<()> {
    let manifest = workspace.load_manifest()?;
    let cache_dir = cache::dir(&manifest.root);
    cache::refuse_link(&cache_dir).map_err(|e| Error::usage(e.to_string(), "replace the link by a real folder, or remove it"))?;
    // Never under a running build. Whether the cache exists is looked at once: a build that
    // creates it after this instant holds its own lock, and what it writes is not ours to remove.
    let existed = cache_dir.is_dir();
    let _lock = if existed {
        Some(cache::ProjectLock::acquire(&cache_dir, false, |_| {}).map_err(|e| match e {
            cache::lock::LockError::Busy { .. } => Error::usage(e.to_string(), "wait for the build to finish (or stop it), then clean"),
            other => Error::failed_from(&other),
        })?)
    } else {
        None
    };
    if args.gc {
        return collect_garbage(&manifest, &cache_dir);
    }
    let failed = |path: &std::path::Path, e: std::io::Error| Error::failed(format!("cannot remove {}: {e}", path.display()), None);
    let removed =
        crate::exec::dist::clean(&cache_dir, &manifest.root, &manifest.project.out_dir).map_err(|e| failed(&manifest.out_dir(), e))?;
    let mut said = Vec::new();
    if !removed.is_empty() {
        said.push(format!(
            "{} package folder{} from {}",
            removed.len(),
            if removed.len() == 1 { "" } else { "s" },
            manifest.project.out_dir.display()
        ));
    }
    if args.cache && existed {
        for name in cache::CREATED {
            let path = cache_dir.join(name);
            crate::exec::dist::remove_any(&path).map_err(|e| failed(&path, e))?;
        }
        said.push(cache_dir.display().to_string());
    }
    if !workspace.quiet {
        if said.is_empty() {
            println!("nothing to clean");
        } else {
            println!("removed {}", said.join(" and "));
        }
    }
    Ok(())
}

/// `--gc`: the cache trimmed to its limit now, keeping every entry `Export.lock` names (what
/// the last build made, and so what `dist/` holds).
fn collect_garbage(manifest: &crate::manifest::Manifest, cache_dir: &std::path::Path) -> Result<()> {
    let limit = cache::limit::resolve(manifest.cache.max_size).map_err(|e| Error::usage(e, "write a size such as 20GB"))?;
    let store = cache::Store::open(cache_dir).map_err(|e| Error::failed(format!("cannot open the cache: {e}"), None))?;
    let _ = store.clean_tmp();
    let keep: HashSet<String> = LockFile::read(&manifest.root.join(lockfile::FILE_NAME))
        .map(|lock| lock.steps.into_iter().map(|s| s.key).collect())
        .unwrap_or_default();
    let verifier = cache::Verifier::new(cache_dir);
    let collected =
        store.collect_garbage(limit, &keep, &verifier).map_err(|e| Error::failed(format!("cannot trim the cache: {e}"), None))?;
    let _ = verifier.save();
    let size = cache::limit::format_size;
    if collected.evicted.is_empty() && collected.blobs_removed == 0 {
        println!("the cache takes {}, within its {} limit: nothing to remove", size(collected.after), size(limit));
    } else {
        println!(
            "removed {} entr{} and {} file{}: the cache went from {} to {} (limit {})",
            collected.evicted.len(),
            if collected.evicted.len() == 1 { "y" } else { "ies" },
            collected.blobs_removed,
            if collected.blobs_removed == 1 { "" } else { "s" },
            size(collected.before),
            size(collected.after),
            size(limit)
        );
        if collected.after > limit {
            println!("still over the limit: the rest is what the last build (Export.lock) uses");
        }
    }
    Ok(())
}

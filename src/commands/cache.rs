//! `exportctl cache verify`: every entry's bytes checked against the digests it records.

use crate::cache;
use crate::cli::{CacheAction, CacheArgs};
use crate::error::{Error, Result};

use super::Workspace;

pub fn run(workspace: &Workspace, args: &CacheArgs) -> Result<()> {
    match args.action {
        CacheAction::Verify => verify(workspace),
    }
}

fn verify(workspace: &Workspace) -> Result<()> {
    let manifest = workspace.load_manifest()?;
    let cache_dir = cache::dir(&manifest.root);
    cache::refuse_link(&cache_dir).map_err(|e| Error::usage(e.to_string(), "replace the link by a real folder, or remove it"))?;
    if !cache_dir.is_dir() {
        println!("no cache yet: nothing to verify");
        return Ok(());
    }
    let _lock = cache::ProjectLock::acquire(&cache_dir, false, |_| {}).map_err(|e| match e {
        cache::lock::LockError::Busy { .. } => Error::usage(e.to_string(), "wait for the build to finish (or stop it), then verify"),
        other => Error::failed_from(&other),
    })?;
    let store = cache::Store::open(&cache_dir).map_err(|e| Error::failed(format!("cannot open the cache: {e}"), None))?;
    // A fresh verifier: every file is hashed, nothing is taken on trust.
    let _ = std::fs::remove_file(cache_dir.join("verified.json"));
    let verifier = cache::Verifier::new(&cache_dir);
    let entries = store.entries().map_err(|e| Error::failed(format!("cannot list the cache: {e}"), None))?;
    let (mut files, mut bytes, mut bad) = (0usize, 0u64, Vec::new());
    for (entry, _) in &entries {
        files += entry.files.len();
        bytes += entry.bytes;
        if let Err(corruption) = verifier.check_entry(entry) {
            let _ = store.evict_corrupt(entry, &corruption.file, &verifier);
            bad.push(format!("{} ({}): {corruption}", if entry.step.is_empty() { &entry.key } else { &entry.step }, &entry.key[..12]));
        }
    }
    let _ = verifier.save();
    println!(
        "checked {} entr{}, {files} files, {}",
        entries.len(),
        if entries.len() == 1 { "y" } else { "ies" },
        cache::limit::format_size(bytes)
    );
    if bad.is_empty() {
        println!("every file holds the bytes its entry records");
        return Ok(());
    }
    Err(Error::failed(
        format!(
            "{} cache entr{} changed on disk, and {} evicted:\n  {}",
            bad.len(),
            if bad.len() == 1 { "y" } else { "ies" },
            if bad.len() == 1 { "was" } else { "were" },
            bad.join("\n  ")
        ),
        Some("the next build runs those steps again".into()),
    ))
}

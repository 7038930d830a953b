//! The one hashing function: BLAKE3, as lowercase hex.
//!
//! Files are hashed memory-mapped and in parallel (rayon) above a size where that pays off,
//! which is what keeps hashing a 1 GB model file close to `b3sum`.

use std::io;
use std::path::Path;

pub fn digest_bytes(bytes: &[u8]) -> String {
    blake3::hash(bytes).to_hex().to_string()
}

pub fn digest_str(text: &str) -> String {
    digest_bytes(text.as_bytes())
}

/// The digest of a file's contents.
pub fn digest_file(path: &Path) -> io::Result<String> {
    let mut hasher = blake3::Hasher::new();
    let size = std::fs::metadata(path)?.len();
    if size >= 1 << 20 {
        hasher.update_mmap_rayon(path)?;
    } else {
        hasher.update(&std::fs::read(path)?);
    }
    Ok(hasher.finalize().to_hex().to_string())
}

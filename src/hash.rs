//! The one hashing function: BLAKE3, as lowercase hex.
//!
//! Large files are hashed in chunks, each on every core (rayon): that keeps hashing a 1 GB
//! model file close to `b3sum` without mapping it into memory.

use std::io;
use std::path::Path;

pub fn digest_bytes(bytes: &[u8]) -> String {
    blake3::hash(bytes).to_hex().to_string()
}

pub fn digest_str(text: &str) -> String {
    digest_bytes(text.as_bytes())
}

/// The digest of a file's contents. Large files are read in 8 MiB chunks, each hashed on
/// every core: as fast as memory-mapping them (which made a gigabyte model count as a
/// gigabyte of exportctl's resident memory), with 8 MiB of memory.
pub fn digest_file(path: &Path) -> io::Result<String> {
    use std::io::Read as _;
    let mut hasher = blake3::Hasher::new();
    let mut file = std::fs::File::open(path)?;
    let size = file.metadata()?.len();
    if size < 1 << 20 {
        let mut bytes = Vec::with_capacity(size as usize);
        file.read_to_end(&mut bytes)?;
        hasher.update(&bytes);
    } else {
        let mut buffer = vec![0u8; 8 << 20];
        loop {
            let mut filled = 0;
            while filled < buffer.len() {
                match file.read(&mut buffer[filled..])? {
                    0 => break,
                    n => filled += n,
                }
            }
            if filled == 0 {
                break;
            }
            hasher.update_rayon(&buffer[..filled]);
            if filled < buffer.len() {
                break;
            }
        }
    }
    Ok(hasher.finalize().to_hex().to_string())
}

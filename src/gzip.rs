//! A gzip writer that compresses on every core, the way `pigz` does, with output that depends
//! only on the bytes written.
//!
//! The input is cut into blocks of [`BLOCK`] bytes; each block is compressed on a thread of its
//! own as raw deflate, ended with a sync flush (so it ends on a byte boundary and refers to
//! nothing outside itself), the last one with the final block. Concatenated in order under one
//! gzip header and trailer (CRC-32 and size of the whole input) they make one ordinary gzip
//! member: `gzip -d`, Python's `tarfile` and TF Hub read it like any other. Blocks do not share
//! a dictionary: on model weights (float32, where only the exponents compress) that costs
//! nothing measurable, and it makes the bytes the same whatever the number of cores.
//!
//! Streaming: at most two blocks per core are in flight, so memory stays a few megabytes
//! whatever the archive's size.
//!
//! Written here rather than taken from a crate: what matters is that the bytes never depend
//! on the thread count and that the result is a single gzip member (exportctl refuses
//! multi-member archives, `archive.rs`); the pieces (flate2's raw deflate, crc32fast) are
//! well-kept crates, and the glue is this file.

use std::collections::VecDeque;
use std::io::{self, Write};
use std::thread::JoinHandle;

/// Bytes of input per independently compressed block.
pub const BLOCK: usize = 1 << 20;

pub struct ParallelGzEncoder<W: Write> {
    inner: Option<W>,
    level: u32,
    block: Vec<u8>,
    crc: crc32fast::Hasher,
    size: u64,
    pending: VecDeque<JoinHandle<io::Result<Vec<u8>>>>,
    max_pending: usize,
}

impl<W: Write> ParallelGzEncoder<W> {
    /// Writes the gzip header (no name, mtime 0, OS "unknown") to `inner`.
    pub fn new(mut inner: W, level: u32) -> io::Result<Self> {
        let xfl = match level {
            9 => 2,
            1 => 4,
            _ => 0,
        };
        inner.write_all(&[0x1f, 0x8b, 8, 0, 0, 0, 0, 0, xfl, 255])?;
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        Ok(ParallelGzEncoder {
            inner: Some(inner),
            level,
            block: Vec::with_capacity(BLOCK),
            crc: crc32fast::Hasher::new(),
            size: 0,
            pending: VecDeque::new(),
            max_pending: 2 * cores,
        })
    }

    fn send(&mut self, last: bool) -> io::Result<()> {
        let data = std::mem::replace(&mut self.block, Vec::with_capacity(if last { 0 } else { BLOCK }));
        let level = self.level;
        self.pending.push_back(std::thread::spawn(move || deflate(&data, level, last)));
        while self.pending.len() > self.max_pending || (last && !self.pending.is_empty()) {
            self.write_oldest()?;
        }
        Ok(())
    }

    fn write_oldest(&mut self) -> io::Result<()> {
        let handle = self.pending.pop_front().expect("a pending block");
        let compressed = handle.join().map_err(|_| io::Error::other("a compression thread panicked"))??;
        self.inner.as_mut().expect("not finished").write_all(&compressed)
    }

    /// Compresses what is left, writes the trailer and returns the inner writer.
    pub fn finish(mut self) -> io::Result<W> {
        self.send(true)?;
        let crc = std::mem::take(&mut self.crc).finalize();
        let mut inner = self.inner.take().expect("finished once");
        inner.write_all(&crc.to_le_bytes())?;
        inner.write_all(&(self.size as u32).to_le_bytes())?;
        Ok(inner)
    }
}

impl<W: Write> Write for ParallelGzEncoder<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = buf.len().min(BLOCK - self.block.len());
        self.block.extend_from_slice(&buf[..n]);
        self.crc.update(&buf[..n]);
        self.size += n as u64;
        if self.block.len() == BLOCK {
            self.send(false)?;
        }
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// `data` as raw deflate: ended by a sync flush, or by the final block when `last`.
fn deflate(data: &[u8], level: u32, last: bool) -> io::Result<Vec<u8>> {
    use flate2::{Compress, Compression, FlushCompress, Status};
    let mut compress = Compress::new(Compression::new(level), false);
    let mut out = Vec::with_capacity(data.len() + data.len() / 8 + 64);
    let flush = if last { FlushCompress::Finish } else { FlushCompress::Sync };
    loop {
        let consumed = compress.total_in() as usize;
        if out.capacity() - out.len() < 64 {
            out.reserve(out.capacity() / 2 + 64);
        }
        let status = compress.compress_vec(&data[consumed..], &mut out, flush).map_err(io::Error::other)?;
        let done = compress.total_in() as usize == data.len();
        match status {
            Status::StreamEnd => break,
            // A sync flush is complete once all input is in and output space was left over.
            _ if done && !last && out.len() < out.capacity() => break,
            _ => {}
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read as _;

    fn gzip(data: &[u8]) -> Vec<u8> {
        let mut encoder = ParallelGzEncoder::new(Vec::new(), 1).unwrap();
        // Odd write sizes: block boundaries must not depend on them.
        for chunk in data.chunks(77_777) {
            encoder.write_all(chunk).unwrap();
        }
        encoder.finish().unwrap()
    }

    fn sample(len: usize) -> Vec<u8> {
        let mut x = 12345u64;
        (0..len)
            .map(|i| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                if i % 4 == 3 {
                    0x3c
                } else {
                    x as u8
                }
            })
            .collect()
    }

    #[test]
    fn one_gzip_member_that_decodes_to_the_input() {
        for len in [0, 1, BLOCK - 1, BLOCK, BLOCK + 1, 3 * BLOCK + 12_345] {
            let data = sample(len);
            let compressed = gzip(&data);
            let mut decoder = flate2::read::GzDecoder::new(&compressed[..]);
            let mut back = Vec::new();
            decoder.read_to_end(&mut back).unwrap();
            assert_eq!(back, data, "length {len}");
            // A single member: a multi-member reader finds nothing after it.
            let mut all = Vec::new();
            flate2::read::MultiGzDecoder::new(&compressed[..]).read_to_end(&mut all).unwrap();
            assert_eq!(all.len(), data.len());
        }
    }

    #[test]
    fn the_bytes_depend_only_on_the_input() {
        let data = sample(2 * BLOCK + 999);
        assert_eq!(gzip(&data), gzip(&data));
        let mut one_thread = ParallelGzEncoder::new(Vec::new(), 1).unwrap();
        one_thread.max_pending = 1;
        one_thread.write_all(&data).unwrap();
        assert_eq!(one_thread.finish().unwrap(), gzip(&data));
    }
}

//! Copy a list of byte ranges from a source to a target (at an offset), fast and safely:
//! large aligned buffers, a reader thread and a writer (the calling thread) joined by a
//! bounded pool of buffers so reads and writes overlap, a progress callback, an fsync at
//! the end, and optional read-back verification by SHA-256 per chunk.
//!
//! On the first I/O error the copy stops: the error names the side (source or target)
//! and the byte offset, and nothing more is written after it.

use crate::formats::extents::Extents;
use crate::sys::direct_io::AlignedBuf;
use crate::units::Bytes;
use sha2::{Digest, Sha256};
use std::fs::File;
use std::io::{self, Cursor};
use std::os::unix::fs::FileExt;
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// Positioned reads, so tests can inject failures and in-memory devices.
pub trait ReadAt {
    /// Fill `buf` from `offset` or fail.
    fn read_at(&mut self, buf: &mut [u8], offset: Bytes) -> io::Result<()>;
}

/// Positioned writes plus what the end of a copy needs.
pub trait WriteAt: ReadAt {
    fn write_at(&mut self, buf: &[u8], offset: Bytes) -> io::Result<()>;
    /// Make what was written durable.
    fn sync(&mut self) -> io::Result<()>;
    /// Forget cached data so a read-back reads the medium.
    fn drop_cache(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl ReadAt for File {
    fn read_at(&mut self, buf: &mut [u8], offset: Bytes) -> io::Result<()> {
        FileExt::read_exact_at(self, buf, offset.0)
    }
}

impl WriteAt for File {
    fn write_at(&mut self, buf: &[u8], offset: Bytes) -> io::Result<()> {
        FileExt::write_all_at(self, buf, offset.0)
    }
    fn sync(&mut self) -> io::Result<()> {
        self.sync_all()
    }
    fn drop_cache(&mut self) -> io::Result<()> {
        crate::sys::direct_io::drop_cache(self)
    }
}

impl ReadAt for Cursor<Vec<u8>> {
    fn read_at(&mut self, buf: &mut [u8], offset: Bytes) -> io::Result<()> {
        let data = self.get_ref();
        let end = usize::try_from(offset.0)
            .ok()
            .and_then(|s| s.checked_add(buf.len()).map(|e| (s, e)))
            .filter(|&(_, e)| e <= data.len());
        let Some((s, e)) = end else {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "read past the end",
            ));
        };
        buf.copy_from_slice(&data[s..e]);
        Ok(())
    }
}

impl WriteAt for Cursor<Vec<u8>> {
    fn write_at(&mut self, buf: &[u8], offset: Bytes) -> io::Result<()> {
        let s = usize::try_from(offset.0).map_err(io::Error::other)?;
        let data = self.get_mut();
        if data.len() < s + buf.len() {
            data.resize(s + buf.len(), 0);
        }
        data[s..s + buf.len()].copy_from_slice(buf);
        Ok(())
    }
    fn sync(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// How to copy.
#[derive(Clone, Debug)]
pub struct CopyOptions {
    /// Bytes per read/write (a multiple of `align`).
    pub chunk: usize,
    /// Buffer memory alignment (the direct-I/O alignment, or 1).
    pub align: usize,
    /// Buffers in flight between reader and writer.
    pub buffers: usize,
    /// Read the target back after the fsync and compare SHA-256 digests.
    pub verify: bool,
}

impl Default for CopyOptions {
    fn default() -> Self {
        CopyOptions {
            chunk: 4 << 20,
            align: 4096,
            buffers: 4,
            verify: false,
        }
    }
}

/// Reported after every chunk written.
#[derive(Clone, Debug)]
pub struct Progress {
    pub done: Bytes,
    pub total: Bytes,
    pub elapsed: Duration,
    /// Bytes per second so far.
    pub rate: f64,
    pub eta: Option<Duration>,
}

/// One chunk as written: target offset, length and SHA-256 of the bytes written.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ChunkDigest {
    pub target_offset: Bytes,
    pub len: usize,
    pub sha256: [u8; 32],
}

/// What a successful copy did.
#[derive(Clone, Debug)]
pub struct CopyReport {
    pub bytes: Bytes,
    pub duration: Duration,
    /// Of `duration`, the time spent reading the target back and comparing.
    pub verify_duration: Duration,
    /// Digests of what was written (empty unless verifying).
    pub digests: Vec<ChunkDigest>,
    pub verified: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum CopyError {
    #[error(
        "reading the source failed at byte {}: {source}: the copy stopped there and \
         nothing after it was written; check the source disk (dmesg, smartctl)",
        .offset.0
    )]
    Read { offset: Bytes, source: io::Error },
    #[error(
        "writing the target failed at byte {}: {source}: the copy stopped there; \
         check the target disk (dmesg, smartctl) or use another one",
        .offset.0
    )]
    Write { offset: Bytes, source: io::Error },
    #[error("flushing the target failed: {0}: its contents are not known to be durable; check the target disk")]
    Sync(io::Error),
    #[error("reading the target back failed at byte {}: {source}: check the target disk", .offset.0)]
    VerifyRead { offset: Bytes, source: io::Error },
    #[error(
        "verification failed: the {len} bytes at target byte {} differ from what was \
         written: the target disk or its path corrupts data, use another one",
        .offset.0
    )]
    Mismatch { offset: Bytes, len: usize },
    #[error("chunk size {chunk} is not a non-zero multiple of the alignment {align}: fix the copy options")]
    BadOptions { chunk: usize, align: usize },
}

/// One piece of work: read `len` bytes at `src`.
#[derive(Clone, Copy)]
struct Piece {
    src: Bytes,
    len: usize,
}

fn pieces(ranges: &Extents, chunk: usize) -> impl Iterator<Item = Piece> + '_ {
    ranges.ranges().iter().flat_map(move |&(s, e)| {
        let chunk = chunk as u64;
        (s.0..e.0).step_by(chunk as usize).map(move |at| Piece {
            src: Bytes(at),
            len: (e.0 - at).min(chunk) as usize,
        })
    })
}

/// Copy `ranges` of `src` to the same offsets plus `target_offset` on `dst`, fsync, and
/// verify when asked. `progress` is called on this thread after each chunk.
pub fn copy<S, T>(
    src: &mut S,
    dst: &mut T,
    ranges: &Extents,
    target_offset: Bytes,
    opts: &CopyOptions,
    progress: &mut dyn FnMut(&Progress),
) -> Result<CopyReport, CopyError>
where
    S: ReadAt + Send,
    T: WriteAt,
{
    let align = opts.align.max(1);
    if opts.chunk == 0 || !opts.chunk.is_multiple_of(align) {
        return Err(CopyError::BadOptions {
            chunk: opts.chunk,
            align,
        });
    }
    let total = ranges.total();
    let start = Instant::now();
    let nbuf = opts.buffers.max(2);
    let (free_tx, free_rx) = mpsc::sync_channel::<AlignedBuf>(nbuf);
    let (full_tx, full_rx) = mpsc::sync_channel::<Result<(Piece, AlignedBuf), CopyError>>(nbuf);
    for _ in 0..nbuf {
        // The channel holds nbuf, so this cannot block.
        let _ = free_tx.send(AlignedBuf::new(opts.chunk, align));
    }
    let mut digests = Vec::new();
    let mut done = 0u64;
    let result = std::thread::scope(|scope| {
        scope.spawn(move || {
            for p in pieces(ranges, opts.chunk) {
                let Ok(mut buf) = free_rx.recv() else { return };
                let r = src.read_at(&mut buf.as_mut_slice()[..p.len], p.src);
                let msg = match r {
                    Ok(()) => Ok((p, buf)),
                    Err(source) => Err(CopyError::Read {
                        offset: p.src,
                        source,
                    }),
                };
                let failed = msg.is_err();
                if full_tx.send(msg).is_err() || failed {
                    return;
                }
            }
        });
        // Owned here so an early return drops them and unblocks the reader before the join.
        let (full_rx, free_tx) = (full_rx, free_tx);
        for msg in full_rx.iter() {
            let (p, buf) = msg?;
            let data = &buf.as_slice()[..p.len];
            let at = p.src + target_offset;
            dst.write_at(data, at)
                .map_err(|source| CopyError::Write { offset: at, source })?;
            if opts.verify {
                digests.push(ChunkDigest {
                    target_offset: at,
                    len: p.len,
                    sha256: Sha256::digest(data).into(),
                });
            }
            done += p.len as u64;
            let elapsed = start.elapsed();
            let rate = done as f64 / elapsed.as_secs_f64().max(1e-9);
            let eta = (rate > 0.0).then(|| Duration::from_secs_f64((total.0 - done) as f64 / rate));
            progress(&Progress {
                done: Bytes(done),
                total,
                elapsed,
                rate,
                eta,
            });
            // The reader may have finished and dropped its receiver; that is fine.
            let _ = free_tx.send(buf);
        }
        Ok(())
    });
    result?;
    dst.sync().map_err(CopyError::Sync)?;
    let mut report = CopyReport {
        bytes: Bytes(done),
        duration: start.elapsed(),
        digests,
        verified: false,
        verify_duration: Duration::ZERO,
    };
    if opts.verify {
        let verify_start = Instant::now();
        verify(dst, &report.digests, align)?;
        report.verified = true;
        report.verify_duration = verify_start.elapsed();
        report.duration = start.elapsed();
    }
    Ok(report)
}

/// Read back every chunk in `digests` from `dst` (after dropping its cache) and compare.
pub fn verify<T: WriteAt>(
    dst: &mut T,
    digests: &[ChunkDigest],
    align: usize,
) -> Result<(), CopyError> {
    // Advisory: a target that cannot drop its cache is still read back.
    let _ = dst.drop_cache();
    let max = digests.iter().map(|d| d.len).max().unwrap_or(0);
    let mut buf = AlignedBuf::new(max, align.max(1));
    for d in digests {
        let b = &mut buf.as_mut_slice()[..d.len];
        dst.read_at(b, d.target_offset)
            .map_err(|source| CopyError::VerifyRead {
                offset: d.target_offset,
                source,
            })?;
        let got: [u8; 32] = Sha256::digest(&*b).into();
        if got != d.sha256 {
            return Err(CopyError::Mismatch {
                offset: d.target_offset,
                len: d.len,
            });
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pieces_split_ranges_at_chunk_size() {
        let e = Extents::from_ranges(vec![(Bytes(0), Bytes(10)), (Bytes(20), Bytes(45))]);
        let v: Vec<(u64, usize)> = pieces(&e, 10).map(|p| (p.src.0, p.len)).collect();
        assert_eq!(v, vec![(0, 10), (20, 10), (30, 10), (40, 5)]);
    }
}

//! Opening files and block devices for direct I/O (`O_DIRECT`, bypassing the page cache)
//! and finding the alignment it needs; dropping cached pages so a read-back really reads
//! the medium. The only module that issues these syscalls.

use crate::units::Bytes;
use rustix::fs::{Advice, AtFlags, FileType, StatxFlags};
use std::fs::{File, OpenOptions};
use std::io::{self, Seek, SeekFrom};
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

/// Alignment assumed when the kernel does not say (the largest common logical block).
pub const DEFAULT_ALIGN: u64 = 4096;

/// An open file or device and how it may be used.
#[derive(Debug)]
pub struct Opened {
    pub file: File,
    /// Opened with `O_DIRECT`.
    pub direct: bool,
    /// Why direct I/O is not in use, when it is not.
    pub fallback_reason: Option<String>,
    /// Memory and offset alignment direct I/O needs (1 when buffered).
    pub align: u64,
    pub size: Bytes,
    pub is_block_device: bool,
}

/// Open `path` read-only (`write == false`) or read-write, with `O_DIRECT` when the
/// kernel accepts it there. Never creates or truncates.
pub fn open(path: &Path, write: bool) -> io::Result<Opened> {
    let mut opts = OpenOptions::new();
    opts.read(true).write(write);
    let plain = opts.open(path)?;
    let is_block_device =
        FileType::from_raw_mode(rustix::fs::fstat(&plain)?.st_mode) == FileType::BlockDevice;
    let size = Bytes((&plain).seek(SeekFrom::End(0))?);
    let align = match alignment(&plain, is_block_device) {
        Ok(a) => a,
        Err(e) => {
            return Ok(buffered(
                plain,
                size,
                is_block_device,
                format!("alignment unknown: {e}"),
            ))
        }
    };
    let mut dopts = OpenOptions::new();
    dopts
        .read(true)
        .write(write)
        .custom_flags(rustix::fs::OFlags::DIRECT.bits() as i32);
    match dopts.open(path) {
        Ok(file) => Ok(Opened {
            file,
            direct: true,
            fallback_reason: None,
            align,
            size,
            is_block_device,
        }),
        Err(e) => Ok(buffered(
            plain,
            size,
            is_block_device,
            format!("O_DIRECT refused: {e}"),
        )),
    }
}

fn buffered(file: File, size: Bytes, is_block_device: bool, reason: String) -> Opened {
    Opened {
        file,
        direct: false,
        fallback_reason: Some(reason),
        align: 1,
        size,
        is_block_device,
    }
}

/// The alignment direct I/O needs: `statx` DIOALIGN where the kernel reports it, else the
/// logical block size of a block device, else 4096.
fn alignment(f: &File, is_block_device: bool) -> io::Result<u64> {
    if let Ok(st) = rustix::fs::statx(f, "", AtFlags::EMPTY_PATH, StatxFlags::DIOALIGN) {
        if st.stx_mask & StatxFlags::DIOALIGN.bits() != 0 {
            let a = u64::from(st.stx_dio_offset_align.max(st.stx_dio_mem_align));
            if a == 0 {
                return Err(io::Error::other(
                    "the filesystem does not support direct I/O",
                ));
            }
            return Ok(a);
        }
    }
    if is_block_device {
        return Ok(u64::from(rustix::fs::ioctl_blksszget(f)?).max(512));
    }
    Ok(DEFAULT_ALIGN)
}

/// Drop the page cache for a file (after fsync) so later reads come from the medium.
pub fn drop_cache(f: &File) -> io::Result<()> {
    rustix::fs::fadvise(f, 0, None, Advice::DontNeed)?;
    Ok(())
}

/// A zeroed buffer whose usable part starts at an `align`-aligned address, as
/// `O_DIRECT` needs, without unsafe code: over-allocate and slice.
pub struct AlignedBuf {
    raw: Vec<u8>,
    start: usize,
    len: usize,
}

impl AlignedBuf {
    pub fn new(len: usize, align: usize) -> Self {
        let align = align.max(1);
        let raw = vec![0u8; len + align];
        let start = raw.as_ptr().align_offset(align).min(align);
        AlignedBuf { raw, start, len }
    }
    pub fn len(&self) -> usize {
        self.len
    }
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
    pub fn as_slice(&self) -> &[u8] {
        &self.raw[self.start..self.start + self.len]
    }
    pub fn as_mut_slice(&mut self) -> &mut [u8] {
        &mut self.raw[self.start..self.start + self.len]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn aligned_buffer_is_aligned() {
        for align in [512, 4096] {
            let b = AlignedBuf::new(8192, align);
            assert_eq!(b.as_slice().as_ptr() as usize % align, 0);
            assert_eq!(b.len(), 8192);
        }
    }

    #[test]
    fn opens_a_file_and_reports_size() {
        let p = std::env::temp_dir().join(format!("rescue-dio-{}", std::process::id()));
        std::fs::write(&p, vec![7u8; 8192]).unwrap();
        let o = open(&p, false).unwrap();
        assert_eq!(o.size, Bytes(8192));
        assert!(!o.is_block_device);
        assert!(o.direct || o.fallback_reason.is_some());
        std::fs::remove_file(&p).unwrap();
    }
}

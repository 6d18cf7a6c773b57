//! Linux swap header (`SWAPSPACE2`, version 1) for 4096-byte pages: read it, and write
//! a fresh one with the same label and UUID so a clone re-creates the swap area instead of
//! copying its (meaningless) contents.
//!
//! Layout (`struct swap_header` in the kernel, little-endian on x86): bytes 0..1024 boot
//! bits, 1024 version u32, 1028 last_page u32, 1032 nr_badpages u32, 1036 uuid[16],
//! 1052 volume_name[16], 1068 padding, 1536 bad page list, magic at page_size − 10.

use crate::units::Bytes;
use serde::Serialize;
use std::io::{self, Read, Seek, SeekFrom, Write};

pub const PAGE_SIZE: u64 = 4096;
pub const MAGIC: &[u8; 10] = b"SWAPSPACE2";
/// A suspended (hibernated) image: its pages hold a memory image, not free swap.
pub const SUSPEND_MAGIC: &[u8; 9] = b"S1SUSPEND";
const MAGIC_AT: usize = PAGE_SIZE as usize - 10;

#[derive(Debug, thiserror::Error)]
pub enum SwapError {
    #[error("reading or writing the swap header failed: {0}")]
    Io(#[from] io::Error),
    #[error("no SWAPSPACE2 signature at byte 4086: not a swap area with 4096-byte pages")]
    NotSwap,
    #[error(
        "the swap area holds a hibernation image: resume or discard it (`mkswap`) before \
         cloning, or copy every byte (`rescue clone --raw`)"
    )]
    Hibernated,
    #[error("swap header version {0} is not 1: recreate it with `mkswap`")]
    Version(u32),
    #[error("swap header says the last page is {last_page} but the area holds {pages} pages: recreate it with `mkswap`")]
    LastPage { last_page: u32, pages: u64 },
    #[error("swap label is {0} bytes, at most 16 fit: shorten it")]
    LabelTooLong(usize),
}

/// The fields a clone must keep.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct SwapHeader {
    pub last_page: u32,
    pub nr_badpages: u32,
    pub uuid: [u8; 16],
    pub label: String,
}

impl SwapHeader {
    /// Read the header page at the start of `r`.
    pub fn read<R: Read + Seek>(r: &mut R) -> Result<Self, SwapError> {
        let mut page = vec![0u8; PAGE_SIZE as usize];
        r.seek(SeekFrom::Start(0))?;
        match r.read_exact(&mut page) {
            Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Err(SwapError::NotSwap),
            other => other?,
        }
        let size = r.seek(SeekFrom::End(0))?;
        Self::parse(&page, Bytes(size))
    }

    /// Parse a header page from an area of `size` bytes.
    pub fn parse(page: &[u8], size: Bytes) -> Result<Self, SwapError> {
        if page.len() < PAGE_SIZE as usize {
            return Err(SwapError::NotSwap);
        }
        if page[MAGIC_AT..MAGIC_AT + 9] == SUSPEND_MAGIC[..] {
            return Err(SwapError::Hibernated);
        }
        if page[MAGIC_AT..MAGIC_AT + 10] != MAGIC[..] {
            return Err(SwapError::NotSwap);
        }
        let u32_at =
            |o: usize| u32::from_le_bytes([page[o], page[o + 1], page[o + 2], page[o + 3]]);
        let version = u32_at(1024);
        if version != 1 {
            return Err(SwapError::Version(version));
        }
        let last_page = u32_at(1028);
        let pages = size.0 / PAGE_SIZE;
        if last_page == 0 || u64::from(last_page) >= pages {
            return Err(SwapError::LastPage { last_page, pages });
        }
        let mut uuid = [0u8; 16];
        uuid.copy_from_slice(&page[1036..1052]);
        let name = &page[1052..1068];
        let end = name.iter().position(|&c| c == 0).unwrap_or(16);
        Ok(SwapHeader {
            last_page,
            nr_badpages: u32_at(1032).min(637),
            uuid,
            label: String::from_utf8_lossy(&name[..end]).into_owned(),
        })
    }

    /// A fresh header page: no bad pages, same size, label and UUID.
    pub fn to_page(&self) -> Result<Vec<u8>, SwapError> {
        let label = self.label.as_bytes();
        if label.len() > 16 {
            return Err(SwapError::LabelTooLong(label.len()));
        }
        let mut page = vec![0u8; PAGE_SIZE as usize];
        page[1024..1028].copy_from_slice(&1u32.to_le_bytes());
        page[1028..1032].copy_from_slice(&self.last_page.to_le_bytes());
        page[1036..1052].copy_from_slice(&self.uuid);
        page[1052..1052 + label.len()].copy_from_slice(label);
        page[MAGIC_AT..].copy_from_slice(MAGIC);
        Ok(page)
    }

    /// Write the header page at the start of `w`.
    pub fn write<W: Write + Seek>(&self, w: &mut W) -> Result<(), SwapError> {
        let page = self.to_page()?;
        w.seek(SeekFrom::Start(0))?;
        w.write_all(&page)?;
        Ok(())
    }

    /// Bytes of swap space the header describes (pages 0..=last_page).
    pub fn size(&self) -> Bytes {
        Bytes((u64::from(self.last_page) + 1) * PAGE_SIZE)
    }

    pub fn uuid_string(&self) -> String {
        super::ext::format_uuid(&self.uuid)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Cursor;

    #[test]
    fn round_trip_on_cursor() {
        let h = SwapHeader {
            last_page: 255,
            nr_badpages: 0,
            uuid: *b"0123456789abcdef",
            label: "swap-label".into(),
        };
        let mut c = Cursor::new(vec![0u8; 256 * 4096]);
        h.write(&mut c).unwrap();
        assert_eq!(SwapHeader::read(&mut c).unwrap(), h);
        assert_eq!(h.size(), Bytes(256 * 4096));
    }

    #[test]
    fn rejects_bad_headers() {
        let mut page = vec![0u8; 4096];
        assert!(matches!(
            SwapHeader::parse(&page, Bytes(1 << 20)),
            Err(SwapError::NotSwap)
        ));
        page[MAGIC_AT..].copy_from_slice(MAGIC);
        page[1024] = 1;
        page[1028] = 0xff;
        page[1029] = 0xff;
        assert!(matches!(
            SwapHeader::parse(&page, Bytes(1 << 20)),
            Err(SwapError::LastPage { .. })
        ));
        page[MAGIC_AT..MAGIC_AT + 9].copy_from_slice(SUSPEND_MAGIC);
        assert!(matches!(
            SwapHeader::parse(&page, Bytes(1 << 20)),
            Err(SwapError::Hibernated)
        ));
        let long = SwapHeader {
            last_page: 1,
            nr_badpages: 0,
            uuid: [0; 16],
            label: "x".repeat(17),
        };
        assert!(matches!(long.to_page(), Err(SwapError::LabelTooLong(17))));
    }
}

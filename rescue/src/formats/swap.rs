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

/// The signature of the old (version 0) swap area, which has no header fields.
pub const MAGIC_V0: &[u8; 10] = b"SWAP-SPACE";

/// What identification needs from a swap area, in the form blkid reports it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Probe {
    /// Volume name up to its NUL, trailing whitespace removed; `None` when empty.
    pub label: Option<String>,
    /// `None` when all zero (and for a version-0 area, which has none).
    pub uuid: Option<String>,
}

/// Identifies a swap area at the start of `r` leniently, as blkid does: the signature in
/// the last 10 bytes of the first page, for every page size Linux uses (not only the 4 KiB
/// [`SwapHeader::read`] handles), without checking the header's fields. A hibernation
/// image is not reported. `Ok(None)` when there is no swap signature.
pub fn probe<R: Read + Seek>(r: &mut R) -> io::Result<Option<Probe>> {
    for page in [4096u64, 8192, 16384, 65536] {
        let mut magic = [0u8; 10];
        if !super::read_exact_at(r, page - 10, &mut magic)? {
            return Ok(None);
        }
        if &magic == MAGIC {
            // uuid[16] and volume_name[16], inside the page just read.
            let mut h = [0u8; 32];
            super::read_exact_at(r, 1036, &mut h)?;
            let mut uuid = [0u8; 16];
            uuid.copy_from_slice(&h[..16]);
            return Ok(Some(Probe {
                label: super::label_text(&h[16..]),
                uuid: (uuid != [0; 16]).then(|| super::ext::format_uuid(&uuid)),
            }));
        }
        if &magic == MAGIC_V0 {
            return Ok(Some(Probe {
                label: None,
                uuid: None,
            }));
        }
    }
    Ok(None)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Cursor;

    /// A 1 MiB swap area with a UUID and a label.
    fn sample() -> SwapHeader {
        SwapHeader {
            last_page: 255,
            nr_badpages: 0,
            uuid: *b"0123456789abcdef",
            label: "swap-label".into(),
        }
    }

    #[test]
    fn round_trip_on_cursor() {
        let h = sample();
        let mut c = Cursor::new(vec![0u8; 256 * 4096]);
        h.write(&mut c).unwrap();
        assert_eq!(SwapHeader::read(&mut c).unwrap(), h);
        assert_eq!(h.size(), Bytes(256 * 4096));
    }

    #[test]
    fn probe_reads_label_and_uuid_at_any_page_size() {
        let h = sample();
        let mut c = Cursor::new(vec![0u8; 256 * 4096]);
        h.write(&mut c).unwrap();
        let want = Probe {
            label: Some("swap-label".into()),
            uuid: Some("30313233-3435-3637-3839-616263646566".into()),
        };
        assert_eq!(probe(&mut c).unwrap(), Some(want.clone()));
        // Same header on a 64 KiB-page machine: the magic ends that page.
        let page = c.get_ref()[..4096].to_vec();
        let mut big = vec![0u8; 1 << 20];
        big[..4086].copy_from_slice(&page[..4086]);
        big[65536 - 10..65536].copy_from_slice(MAGIC);
        assert_eq!(probe(&mut Cursor::new(big.clone())).unwrap(), Some(want));
        // No UUID, no label.
        big[1036..1068].fill(0);
        assert_eq!(
            probe(&mut Cursor::new(big.clone())).unwrap(),
            Some(Probe {
                label: None,
                uuid: None
            })
        );
        // Version 0 has no fields; a hibernation image or a short stream is not swap.
        big[65536 - 10..65536].copy_from_slice(MAGIC_V0);
        big[1036] = 1;
        assert_eq!(
            probe(&mut Cursor::new(big.clone())).unwrap(),
            Some(Probe {
                label: None,
                uuid: None
            })
        );
        big[65536 - 10..65536 - 1].copy_from_slice(SUSPEND_MAGIC);
        assert_eq!(probe(&mut Cursor::new(big)).unwrap(), None);
        assert_eq!(
            probe(&mut Cursor::new(page[..4000].to_vec())).unwrap(),
            None
        );
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

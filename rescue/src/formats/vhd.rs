//! Microsoft VHD, the format of XenServer's `VHD-<uuid>` LVs: the 512-byte footer
//! (`conectix`), which dynamic and differencing disks also copy to their first sector, and
//! the dynamic disk header (`cxsparse`) it points to. Read only as far as telling what a
//! volume holds: type, virtual size, identity, parent.
//!
//! Facts from the VHD specification (Microsoft, 2006) and blktap's `libvhd.h`; every
//! field is big-endian. Footer: 0 cookie, 16 data offset (the header), 40 original size,
//! 48 current size, 60 disk type, 64 checksum, 68 unique id. Header: 0 cookie, 16 table
//! offset, 28 max table entries, 32 block size, 36 checksum, 40 parent unique id, 64
//! parent name (UTF-16BE, 512 bytes).

use super::read_exact_at;
use std::io::{self, Read, Seek, SeekFrom};

pub const FOOTER_COOKIE: &[u8; 8] = b"conectix";
pub const HEADER_COOKIE: &[u8; 8] = b"cxsparse";
pub const FOOTER_SIZE: usize = 512;
pub const HEADER_SIZE: usize = 1024;

pub const TYPE_FIXED: u32 = 2;
pub const TYPE_DYNAMIC: u32 = 3;
pub const TYPE_DIFFERENCING: u32 = 4;

/// The footer's fields that say what the disk is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Footer {
    /// 2 fixed, 3 dynamic, 4 differencing.
    pub disk_type: u32,
    /// The virtual disk's size as the guest sees it.
    pub current_size: u64,
    /// Where the dynamic disk header is (`u64::MAX` for a fixed disk).
    pub data_offset: u64,
    /// Lower-case 8-4-4-4-12, in stored byte order.
    pub uuid: String,
    pub checksum_ok: bool,
}

/// The dynamic disk header's fields that say how the disk is kept and what it derives from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Header {
    pub table_offset: u64,
    pub max_table_entries: u32,
    pub block_size: u32,
    /// Only for a differencing disk: the parent's unique id and name.
    pub parent_uuid: Option<String>,
    pub parent_name: Option<String>,
    pub checksum_ok: bool,
}

/// A VHD found in a volume.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Vhd {
    pub footer: Footer,
    /// Byte offset of the footer that was read: 0 (the copy) or the volume's last sector.
    pub footer_at: u64,
    /// The dynamic disk header, for dynamic and differencing disks when it reads.
    pub header: Option<Header>,
}

impl Footer {
    /// Type name as `vhd-util` prints it.
    pub fn type_name(&self) -> String {
        match self.disk_type {
            TYPE_FIXED => "fixed".into(),
            TYPE_DYNAMIC => "dynamic".into(),
            TYPE_DIFFERENCING => "differencing".into(),
            n => format!("type {n}"),
        }
    }
}

fn be32(b: &[u8], o: usize) -> u32 {
    u32::from_be_bytes([b[o], b[o + 1], b[o + 2], b[o + 3]])
}
fn be64(b: &[u8], o: usize) -> u64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[o..o + 8]);
    u64::from_be_bytes(a)
}

/// The one's complement of the byte sum, the checksum field (4 bytes at `at`) left out.
pub fn checksum(b: &[u8], at: usize) -> u32 {
    let sum = b
        .iter()
        .enumerate()
        .filter(|(i, _)| !(at..at + 4).contains(i))
        .fold(0u32, |s, (_, &x)| s.wrapping_add(u32::from(x)));
    !sum
}

fn uuid(b: &[u8]) -> String {
    let mut u = [0u8; 16];
    u.copy_from_slice(&b[..16]);
    super::ext::format_uuid(&u)
}

/// Parses a 512-byte footer; `None` without the cookie.
pub fn parse_footer(b: &[u8; FOOTER_SIZE]) -> Option<Footer> {
    if &b[0..8] != FOOTER_COOKIE {
        return None;
    }
    Some(Footer {
        disk_type: be32(b, 60),
        current_size: be64(b, 48),
        data_offset: be64(b, 16),
        uuid: uuid(&b[68..84]),
        checksum_ok: be32(b, 64) == checksum(b, 64),
    })
}

/// Parses a 1024-byte dynamic disk header; `None` without the cookie.
pub fn parse_header(b: &[u8; HEADER_SIZE], disk_type: u32) -> Option<Header> {
    if &b[0..8] != HEADER_COOKIE {
        return None;
    }
    let differencing = disk_type == TYPE_DIFFERENCING;
    let units: Vec<u16> = b[64..576]
        .chunks_exact(2)
        .map(|c| u16::from_be_bytes([c[0], c[1]]))
        .take_while(|&u| u != 0)
        .collect();
    let name = String::from_utf16_lossy(&units);
    Some(Header {
        table_offset: be64(b, 16),
        max_table_entries: be32(b, 28),
        block_size: be32(b, 32),
        parent_uuid: differencing.then(|| uuid(&b[40..56])),
        parent_name: (differencing && !name.is_empty()).then_some(name),
        checksum_ok: be32(b, 36) == checksum(b, 36),
    })
}

/// Looks for a VHD in `r`: the footer copy in the first sector (dynamic, differencing),
/// else a footer in the last sector (fixed). XenServer sizes a VHD LV above the VHD's own
/// end, so a dynamic disk's real footer is usually not in the last sector: the copy is what
/// finds it. `Ok(None)` when neither sector holds the cookie.
pub fn probe<R: Read + Seek>(r: &mut R) -> io::Result<Option<Vhd>> {
    let len = r.seek(SeekFrom::End(0))?;
    let mut b = [0u8; FOOTER_SIZE];
    let mut found = None;
    for at in [0, len.saturating_sub(FOOTER_SIZE as u64)] {
        if len >= FOOTER_SIZE as u64 && read_exact_at(r, at, &mut b)? {
            if let Some(f) = parse_footer(&b) {
                found = Some((f, at));
                break;
            }
        }
    }
    let Some((footer, footer_at)) = found else {
        return Ok(None);
    };
    let mut header = None;
    let sparse = matches!(footer.disk_type, TYPE_DYNAMIC | TYPE_DIFFERENCING);
    let fits = footer
        .data_offset
        .checked_add(HEADER_SIZE as u64)
        .is_some_and(|end| end <= len);
    if sparse && fits {
        let mut h = [0u8; HEADER_SIZE];
        if read_exact_at(r, footer.data_offset, &mut h)? {
            header = parse_header(&h, footer.disk_type);
        }
    }
    Ok(Some(Vhd {
        footer,
        footer_at,
        header,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Cursor;

    /// A dynamic (or differencing) VHD of `size` virtual bytes in a `len`-byte volume.
    fn image(len: usize, disk_type: u32, size: u64) -> Vec<u8> {
        let mut img = vec![0u8; len];
        let mut f = [0u8; FOOTER_SIZE];
        f[0..8].copy_from_slice(FOOTER_COOKIE);
        f[16..24].copy_from_slice(&512u64.to_be_bytes());
        f[48..56].copy_from_slice(&size.to_be_bytes());
        f[60..64].copy_from_slice(&disk_type.to_be_bytes());
        f[68..84].copy_from_slice(&[0xab; 16]);
        let c = checksum(&f, 64);
        f[64..68].copy_from_slice(&c.to_be_bytes());
        img[..FOOTER_SIZE].copy_from_slice(&f);
        if len < 1536 {
            return img;
        }
        let h = &mut img[512..1536];
        h[0..8].copy_from_slice(HEADER_COOKIE);
        h[8..16].copy_from_slice(&u64::MAX.to_be_bytes());
        h[16..24].copy_from_slice(&1536u64.to_be_bytes());
        h[28..32].copy_from_slice(&4u32.to_be_bytes());
        h[32..36].copy_from_slice(&(2u32 << 20).to_be_bytes());
        h[40..56].copy_from_slice(&[0x11; 16]);
        for (i, u) in "VHD-p".encode_utf16().enumerate() {
            h[64 + 2 * i..66 + 2 * i].copy_from_slice(&u.to_be_bytes());
        }
        let c = checksum(h, 36);
        h[36..40].copy_from_slice(&c.to_be_bytes());
        img
    }

    #[test]
    fn dynamic_and_differencing() {
        let v = probe(&mut Cursor::new(image(8192, TYPE_DYNAMIC, 8 << 30)))
            .unwrap()
            .unwrap();
        assert_eq!(v.footer_at, 0);
        assert_eq!(v.footer.type_name(), "dynamic");
        assert_eq!(v.footer.current_size, 8 << 30);
        assert!(v.footer.checksum_ok);
        assert_eq!(v.footer.uuid, "abababab-abab-abab-abab-abababababab");
        let h = v.header.unwrap();
        assert_eq!((h.block_size, h.max_table_entries), (2 << 20, 4));
        assert!(h.checksum_ok);
        assert_eq!(h.parent_uuid, None);
        let v = probe(&mut Cursor::new(image(8192, TYPE_DIFFERENCING, 1 << 20)))
            .unwrap()
            .unwrap();
        let h = v.header.unwrap();
        assert_eq!(
            h.parent_uuid.as_deref(),
            Some("11111111-1111-1111-1111-111111111111")
        );
        assert_eq!(h.parent_name.as_deref(), Some("VHD-p"));
    }

    #[test]
    fn fixed_footer_at_the_end_and_bad_checksums() {
        let mut img = vec![0u8; 4096];
        let mut f = image(512, TYPE_FIXED, 3584);
        f[100] ^= 1; // outside the fields, inside the checksum
        img[3584..].copy_from_slice(&f);
        let v = probe(&mut Cursor::new(img)).unwrap().unwrap();
        assert_eq!((v.footer_at, v.footer.disk_type), (3584, TYPE_FIXED));
        assert!(!v.footer.checksum_ok);
        assert_eq!(v.header, None);
    }

    #[test]
    fn no_cookie_or_too_short_is_none() {
        assert_eq!(probe(&mut Cursor::new(vec![0u8; 4096])).unwrap(), None);
        assert_eq!(probe(&mut Cursor::new(b"conectix".to_vec())).unwrap(), None);
        // A header offset past the end: the footer alone.
        let mut img = image(1024, TYPE_DYNAMIC, 1 << 20);
        img[16..24].copy_from_slice(&u64::MAX.to_be_bytes());
        let v = probe(&mut Cursor::new(img)).unwrap().unwrap();
        assert_eq!(v.header, None);
    }
}

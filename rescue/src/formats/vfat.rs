//! FAT12/16/32 boot-sector identification: FAT flavour, volume label and serial
//! (`XXXX-XXXX`, as blkid prints it).

use std::io::{self, Read, Seek};

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Vfat {
    /// 12, 16 or 32.
    pub fat_bits: u8,
    /// Boot-sector label, trailing spaces removed; `None` for empty or "NO NAME".
    pub label: Option<String>,
    pub serial: String,
}

fn le16(b: &[u8], o: usize) -> u32 {
    u32::from(u16::from_le_bytes([b[o], b[o + 1]]))
}

fn le32(b: &[u8], o: usize) -> u32 {
    u32::from_le_bytes([b[o], b[o + 1], b[o + 2], b[o + 3]])
}

/// Identifies a FAT boot sector at `offset`; `Ok(None)` when it is not one.
pub fn probe<R: Read + Seek>(r: &mut R, offset: u64) -> io::Result<Option<Vfat>> {
    let mut s = [0u8; 512];
    if !super::read_exact_at(r, offset, &mut s)? {
        return Ok(None);
    }
    Ok(parse(&s))
}

/// The BIOS parameter block's geometry, checked: what `parse` and `used_map` both need.
struct Bpb {
    bytes_per_sector: u64,
    sectors_per_cluster: u64,
    reserved: u64,
    /// Sectors of one FAT.
    fat_sectors: u64,
    /// Reserved sectors, the FATs and the FAT12/16 root directory: where data begins.
    meta: u64,
    clusters: u64,
    fat_bits: u8,
    /// FAT32 keeps its FAT size (and extended BPB) elsewhere than FAT12/16.
    fat32_layout: bool,
}

fn bpb(s: &[u8; 512]) -> Option<Bpb> {
    if s[510..512] != [0x55, 0xAA] || !matches!(s[0], 0xEB | 0xE9) {
        return None;
    }
    let bytes_per_sector = le16(s, 11);
    let sectors_per_cluster = u32::from(s[13]);
    let reserved = le16(s, 14);
    let fats = u32::from(s[16]);
    let root_entries = le16(s, 17);
    let total16 = le16(s, 19);
    let fat16_size = le16(s, 22);
    let total32 = le32(s, 32);
    if !matches!(bytes_per_sector, 512 | 1024 | 2048 | 4096)
        || !sectors_per_cluster.is_power_of_two()
        || reserved == 0
        || fats == 0
        || fats > 4
    {
        return None;
    }
    let fat_size = if fat16_size != 0 {
        fat16_size
    } else {
        le32(s, 36)
    };
    let total = if total16 != 0 { total16 } else { total32 };
    if fat_size == 0 || total == 0 {
        return None;
    }
    let root_sectors = (root_entries * 32).div_ceil(bytes_per_sector);
    let meta =
        u64::from(reserved) + u64::from(fats) * u64::from(fat_size) + u64::from(root_sectors);
    let clusters = u64::from(total).checked_sub(meta)? / u64::from(sectors_per_cluster);
    // FAT type by cluster count, as the FAT specification defines it.
    let fat_bits = if clusters < 4085 {
        12
    } else if clusters < 65525 {
        16
    } else {
        32
    };
    Some(Bpb {
        bytes_per_sector: u64::from(bytes_per_sector),
        sectors_per_cluster: u64::from(sectors_per_cluster),
        reserved: u64::from(reserved),
        fat_sectors: u64::from(fat_size),
        meta,
        clusters,
        fat_bits,
        fat32_layout: fat16_size == 0,
    })
}

/// Parses a 512-byte boot sector.
pub fn parse(s: &[u8; 512]) -> Option<Vfat> {
    let b = bpb(s)?;
    // Extended BPB: FAT32 at 0x40, FAT12/16 at 0x24; 0x29 marks label+serial present.
    let (sig_at, serial_at, label_at) = if b.fat32_layout {
        (0x42, 0x43, 0x47)
    } else {
        (0x26, 0x27, 0x2B)
    };
    let serial = le32(s, serial_at);
    let label = if s[sig_at] == 0x29 {
        let raw = String::from_utf8_lossy(&s[label_at..label_at + 11])
            .trim_end_matches([' ', '\0'])
            .to_string();
        (!raw.is_empty() && raw != "NO NAME").then_some(raw)
    } else {
        None
    };
    Some(Vfat {
        fat_bits: b.fat_bits,
        label,
        serial: format!("{:04X}-{:04X}", serial >> 16, serial & 0xffff),
    })
}

/// The clusters a FAT file system uses, as byte ranges: the boot sectors, the FATs and
/// the FAT12/16 root directory, then every cluster whose FAT entry is neither free nor
/// marked bad. What a used-blocks copy moves.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UsedMap {
    pub fat_bits: u8,
    pub extents: super::extents::Extents,
    pub cluster_bytes: u64,
    pub used_clusters: u64,
}

/// Largest FAT read into memory (a 2 TiB FAT32 with 4 KiB clusters has a 2 GiB FAT;
/// an ESP's is well under a MiB).
const MAX_FAT_BYTES: u64 = 256 << 20;

/// Reads the first FAT of the file system at the start of `r` and maps what it uses.
/// `Ok(None)`: not FAT.
pub fn used_map<R: Read + Seek>(r: &mut R) -> io::Result<Option<UsedMap>> {
    use crate::units::Bytes;
    let mut s = [0u8; 512];
    if !super::read_exact_at(r, 0, &mut s)? {
        return Ok(None);
    }
    let Some(b) = bpb(&s) else {
        return Ok(None);
    };
    let bps = b.bytes_per_sector;
    let fat_bytes = b.fat_sectors * bps;
    if fat_bytes > MAX_FAT_BYTES {
        return Err(io::Error::other(format!(
            "FAT of {fat_bytes} bytes is larger than {MAX_FAT_BYTES}: copy the partition whole (--raw)"
        )));
    }
    let len = r.seek(io::SeekFrom::End(0))?;
    let mut fat = vec![0u8; fat_bytes.min(len) as usize];
    if fat.len() as u64 != fat_bytes || !super::read_exact_at(r, b.reserved * bps, &mut fat)? {
        return Err(io::Error::other(
            "the FAT runs past the end of the partition: the file system is truncated",
        ));
    }
    let entry = |n: u64| -> Option<u32> {
        let n = n as usize;
        match b.fat_bits {
            12 => {
                let o = n + n / 2;
                let w = u32::from(u16::from_le_bytes([*fat.get(o)?, *fat.get(o + 1)?]));
                Some(if n.is_multiple_of(2) {
                    w & 0xfff
                } else {
                    w >> 4
                })
            }
            16 => Some(u32::from(u16::from_le_bytes([
                *fat.get(2 * n)?,
                *fat.get(2 * n + 1)?,
            ]))),
            _ => Some(le32(fat.get(4 * n..4 * n + 4)?, 0) & 0x0fff_ffff),
        }
    };
    let bad = match b.fat_bits {
        12 => 0xff7,
        16 => 0xfff7,
        _ => 0x0fff_fff7,
    };
    let cluster_bytes = b.sectors_per_cluster * bps;
    let data_start = b.meta * bps;
    let mut ranges = vec![(Bytes(0), Bytes(data_start))];
    let mut used = 0;
    for n in 2..b.clusters + 2 {
        match entry(n) {
            Some(0) => {}
            Some(e) if e == bad => {}
            Some(_) => {
                let at = data_start + (n - 2) * cluster_bytes;
                ranges.push((Bytes(at), Bytes(at + cluster_bytes)));
                used += 1;
            }
            // A FAT too short for its clusters: the rest cannot be in use.
            None => break,
        }
    }
    Ok(Some(UsedMap {
        fat_bits: b.fat_bits,
        extents: super::extents::Extents::from_ranges(ranges),
        cluster_bytes,
        used_clusters: used,
    }))
}

/// Why a FAT32 file system cannot be made.
#[derive(Debug, thiserror::Error)]
pub enum FormatError {
    #[error("{0} bytes is too small for FAT32 (at least 33 MiB): use a larger disk or partition")]
    TooSmall(u64),
    #[error("{0} bytes is too large for FAT32 (at most 2 TiB with 512-byte sectors): use a smaller partition")]
    TooLarge(u64),
    #[error("the label {0:?} is not 1 to 11 characters of A-Z, 0-9, space, - or _")]
    BadLabel(String),
    #[error("writing the file system: {0}")]
    Io(#[from] io::Error),
}

/// FAT32 geometry for a volume of `sectors` 512-byte sectors.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Fat32Layout {
    pub sectors: u64,
    pub sectors_per_cluster: u32,
    pub reserved: u32,
    pub fat_sectors: u32,
    pub clusters: u32,
}

const RESERVED: u32 = 32;
const FATS: u32 = 2;

impl Fat32Layout {
    /// The cluster size Windows' and mkfs.fat's tables give for the size, and the FAT
    /// size from the FAT specification's formula.
    pub fn for_sectors(sectors: u64) -> Result<Self, FormatError> {
        let bytes = sectors * 512;
        if sectors > u64::from(u32::MAX) {
            return Err(FormatError::TooLarge(bytes));
        }
        let spc: u32 = match bytes {
            b if b <= 260 << 20 => 1,
            b if b <= 8 << 30 => 8,
            b if b <= 16 << 30 => 16,
            b if b <= 32 << 30 => 32,
            _ => 64,
        };
        let total = sectors as u32;
        let tmp1 = u64::from(total.saturating_sub(RESERVED));
        let tmp2 = (256 * u64::from(spc) + u64::from(FATS)) / 2;
        let fat_sectors = tmp1.div_ceil(tmp2) as u32;
        let data = total
            .checked_sub(RESERVED + FATS * fat_sectors)
            .ok_or(FormatError::TooSmall(bytes))?;
        let clusters = data / spc;
        // Below 65525 clusters every reader takes the volume for FAT16.
        if clusters < 65525 {
            return Err(FormatError::TooSmall(bytes));
        }
        Ok(Fat32Layout {
            sectors,
            sectors_per_cluster: spc,
            reserved: RESERVED,
            fat_sectors,
            clusters,
        })
    }
}

/// Makes an empty FAT32 file system on the `len` bytes of `w` from its start: boot
/// sector and its backup, FSInfo, both FATs zeroed with the root directory's cluster
/// allocated, and the root directory holding the volume label. `hidden_sectors` is the
/// partition's first LBA (the BPB records it). Writes nothing when the size or label is
/// refused.
pub fn format_fat32<W: io::Write + Seek>(
    w: &mut W,
    len: u64,
    label: &str,
    serial: u32,
    hidden_sectors: u32,
) -> Result<Fat32Layout, FormatError> {
    use io::SeekFrom;
    let ok_label = !label.is_empty()
        && label.len() <= 11
        && label
            .bytes()
            .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || b" -_".contains(&b));
    if !ok_label {
        return Err(FormatError::BadLabel(label.into()));
    }
    let l = Fat32Layout::for_sectors(len / 512)?;
    let mut label11 = [b' '; 11];
    label11[..label.len()].copy_from_slice(label.as_bytes());

    let mut boot = [0u8; 512];
    boot[..3].copy_from_slice(&[0xEB, 0x58, 0x90]);
    boot[3..11].copy_from_slice(b"XENRAID ");
    boot[11..13].copy_from_slice(&512u16.to_le_bytes());
    boot[13] = l.sectors_per_cluster as u8;
    boot[14..16].copy_from_slice(&(l.reserved as u16).to_le_bytes());
    boot[16] = FATS as u8;
    boot[21] = 0xF8;
    boot[24..26].copy_from_slice(&63u16.to_le_bytes());
    boot[26..28].copy_from_slice(&255u16.to_le_bytes());
    boot[28..32].copy_from_slice(&hidden_sectors.to_le_bytes());
    boot[32..36].copy_from_slice(&(l.sectors as u32).to_le_bytes());
    boot[36..40].copy_from_slice(&l.fat_sectors.to_le_bytes());
    boot[44..48].copy_from_slice(&2u32.to_le_bytes()); // root directory cluster
    boot[48..50].copy_from_slice(&1u16.to_le_bytes()); // FSInfo sector
    boot[50..52].copy_from_slice(&6u16.to_le_bytes()); // backup boot sector
    boot[64] = 0x80;
    boot[66] = 0x29;
    boot[67..71].copy_from_slice(&serial.to_le_bytes());
    boot[71..82].copy_from_slice(&label11);
    boot[82..90].copy_from_slice(b"FAT32   ");
    boot[510] = 0x55;
    boot[511] = 0xAA;

    let mut info = [0u8; 512];
    info[..4].copy_from_slice(&0x4161_5252u32.to_le_bytes());
    info[484..488].copy_from_slice(&0x6141_7272u32.to_le_bytes());
    info[488..492].copy_from_slice(&(l.clusters - 1).to_le_bytes());
    info[492..496].copy_from_slice(&3u32.to_le_bytes());
    info[508..512].copy_from_slice(&0xAA55_0000u32.to_le_bytes());

    // Reserved area, both FATs and the root cluster: zeros first (a reused disk's old
    // FAT must not show through), then the structures.
    let zero = vec![0u8; 1 << 20];
    let meta = u64::from(l.reserved + FATS * l.fat_sectors + l.sectors_per_cluster) * 512;
    w.seek(SeekFrom::Start(0))?;
    let mut left = meta;
    while left > 0 {
        let n = left.min(zero.len() as u64) as usize;
        w.write_all(&zero[..n])?;
        left -= n as u64;
    }
    for at in [0u64, 6] {
        w.seek(SeekFrom::Start(at * 512))?;
        w.write_all(&boot)?;
        w.write_all(&info)?;
    }
    let mut fat0 = [0u8; 12];
    fat0[..4].copy_from_slice(&0x0FFF_FFF8u32.to_le_bytes());
    fat0[4..8].copy_from_slice(&0x0FFF_FFFFu32.to_le_bytes());
    fat0[8..12].copy_from_slice(&0x0FFF_FFF8u32.to_le_bytes()); // root: end of chain
    for f in 0..FATS {
        w.seek(SeekFrom::Start(
            u64::from(l.reserved + f * l.fat_sectors) * 512,
        ))?;
        w.write_all(&fat0)?;
    }
    let mut entry = [0u8; 32];
    entry[..11].copy_from_slice(&label11);
    entry[11] = 0x08; // volume label
    w.seek(SeekFrom::Start(
        u64::from(l.reserved + FATS * l.fat_sectors) * 512,
    ))?;
    w.write_all(&entry)?;
    w.flush()?;
    Ok(l)
}

#[cfg(test)]
mod format_tests {
    use super::*;

    #[test]
    fn layout_follows_the_cluster_table_and_refuses_fat16_sizes() {
        let l = Fat32Layout::for_sectors((64 << 20) / 512).unwrap();
        assert_eq!(l.sectors_per_cluster, 1);
        let l = Fat32Layout::for_sectors((4u64 << 30) / 512).unwrap();
        assert_eq!(l.sectors_per_cluster, 8);
        let l = Fat32Layout::for_sectors((500u64 << 30) / 512).unwrap();
        assert_eq!(l.sectors_per_cluster, 64);
        // The FATs hold every cluster plus the two reserved entries.
        assert!(u64::from(l.fat_sectors) * 128 >= u64::from(l.clusters) + 2);
        assert!(matches!(
            Fat32Layout::for_sectors((20 << 20) / 512),
            Err(FormatError::TooSmall(_))
        ));
        assert!(matches!(
            Fat32Layout::for_sectors(u64::from(u32::MAX) + 1),
            Err(FormatError::TooLarge(_))
        ));
    }

    #[test]
    fn a_bad_label_writes_nothing() {
        let mut c = io::Cursor::new(vec![0xAAu8; 64 << 20]);
        assert!(matches!(
            format_fat32(&mut c, 64 << 20, "lower case", 1, 0),
            Err(FormatError::BadLabel(_))
        ));
        assert!(c.get_ref().iter().all(|&b| b == 0xAA));
    }

    #[test]
    fn what_it_writes_parses_back() {
        let mut c = io::Cursor::new(vec![0u8; 64 << 20]);
        format_fat32(&mut c, 64 << 20, "XENRAID-BK", 0x1234_ABCD, 2048).unwrap();
        let v = probe(&mut c, 0).unwrap().unwrap();
        assert_eq!(v.fat_bits, 32);
        assert_eq!(v.label.as_deref(), Some("XENRAID-BK"));
        assert_eq!(v.serial, "1234-ABCD");
    }
}

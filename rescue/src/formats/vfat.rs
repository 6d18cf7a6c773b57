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

/// Parses a 512-byte boot sector.
pub fn parse(s: &[u8; 512]) -> Option<Vfat> {
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
    // Extended BPB: FAT32 at 0x40, FAT12/16 at 0x24; 0x29 marks label+serial present.
    let (sig_at, serial_at, label_at) = if fat16_size == 0 {
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
        fat_bits,
        label,
        serial: format!("{:04X}-{:04X}", serial >> 16, serial & 0xffff),
    })
}

//! DOS (MBR) partition table: the four primary entries, the logical partitions chained
//! from an extended entry, and whether the MBR only protects a GPT (type 0xEE).

use crate::units::{Bytes, Lba};
use std::io::{self, Read, Seek, SeekFrom};

pub const TYPE_PROTECTIVE: u8 = 0xEE;
const EXTENDED_TYPES: [u8; 3] = [0x05, 0x0F, 0x85];
/// Logical partitions we follow before calling the chain a loop.
const MAX_LOGICAL: u32 = 128;

#[derive(Debug, thiserror::Error)]
pub enum MbrError {
    #[error("I/O error while reading the MBR: {0}")]
    Io(#[from] io::Error),
    #[error("no MBR: sector 0 does not end with the 0x55AA signature")]
    NoSignature,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MbrPartition {
    /// 1..=4 for primaries, 5.. for logical partitions (Linux numbering).
    pub number: u32,
    pub type_byte: u8,
    /// 0x80 flag in the entry.
    pub active: bool,
    pub start_lba: Lba,
    /// In logical sectors.
    pub sectors: u64,
}

impl MbrPartition {
    pub fn size_bytes(&self, sector_size: u32) -> Bytes {
        Lba(self.sectors).bytes(u64::from(sector_size))
    }
    pub fn is_extended(&self) -> bool {
        EXTENDED_TYPES.contains(&self.type_byte)
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Mbr {
    /// Used entries (primaries, extended containers included, then logicals).
    pub partitions: Vec<MbrPartition>,
    pub disk_signature: u32,
}

impl Mbr {
    /// True when the MBR only exists to protect a GPT (an 0xEE entry).
    pub fn is_protective(&self) -> bool {
        self.partitions
            .iter()
            .any(|p| p.type_byte == TYPE_PROTECTIVE)
    }
}

fn entries(sector: &[u8; 512]) -> [(u8, u8, u32, u32); 4] {
    let mut out = [(0, 0, 0, 0); 4];
    for (i, e) in sector[446..510].chunks_exact(16).enumerate() {
        let le = |o: usize| u32::from_le_bytes([e[o], e[o + 1], e[o + 2], e[o + 3]]);
        out[i] = (e[0], e[4], le(8), le(12));
    }
    out
}

fn read_sector<R: Read + Seek>(r: &mut R, offset: u64) -> io::Result<[u8; 512]> {
    let mut s = [0u8; 512];
    r.seek(SeekFrom::Start(offset))?;
    r.read_exact(&mut s)?;
    Ok(s)
}

/// Whether sector 0 ends with the 0x55AA boot signature (an MBR, a FAT boot sector, a
/// protective MBR ...); `false` for a stream shorter than one sector.
pub fn has_signature<R: Read + Seek>(r: &mut R) -> io::Result<bool> {
    Ok(super::unless_eof(read_sector(r, 0))?.is_some_and(|s| s[510..512] == [0x55, 0xAA]))
}

/// Reads the MBR at sector 0. The table's LBAs count `sector_size`-byte sectors.
pub fn read<R: Read + Seek>(r: &mut R, sector_size: u32) -> Result<Mbr, MbrError> {
    let ss = u64::from(sector_size.max(512));
    let s0 = read_sector(r, 0)?;
    if s0[510..512] != [0x55, 0xAA] {
        return Err(MbrError::NoSignature);
    }
    let mut partitions = Vec::new();
    let mut extended = None;
    for (i, (flag, ty, start, count)) in entries(&s0).into_iter().enumerate() {
        if ty == 0 || count == 0 {
            continue;
        }
        let p = MbrPartition {
            number: i as u32 + 1,
            type_byte: ty,
            active: flag == 0x80,
            start_lba: Lba(u64::from(start)),
            sectors: u64::from(count),
        };
        if p.is_extended() && extended.is_none() {
            extended = Some(u64::from(start));
        }
        partitions.push(p);
    }
    if let Some(ext_base) = extended {
        // Each EBR: entry 0 = logical (relative to this EBR), entry 1 = next EBR (relative
        // to the extended partition's start). A damaged chain just ends the list.
        let mut ebr = ext_base;
        for number in 5..5 + MAX_LOGICAL {
            let Ok(s) = read_sector(r, ebr.saturating_mul(ss)) else {
                break;
            };
            if s[510..512] != [0x55, 0xAA] {
                break;
            }
            let e = entries(&s);
            let (flag, ty, start, count) = e[0];
            if ty != 0 && count != 0 {
                partitions.push(MbrPartition {
                    number,
                    type_byte: ty,
                    active: flag == 0x80,
                    start_lba: Lba(ebr + u64::from(start)),
                    sectors: u64::from(count),
                });
            }
            let (_, next_ty, next_start, _) = e[1];
            if next_ty == 0 || next_start == 0 {
                break;
            }
            ebr = ext_base + u64::from(next_start);
        }
    }
    Ok(Mbr {
        partitions,
        disk_signature: u32::from_le_bytes([s0[440], s0[441], s0[442], s0[443]]),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Cursor;

    fn entry(d: &mut [u8], base: usize, slot: usize, flag: u8, ty: u8, start: u32, count: u32) {
        let o = base + 446 + 16 * slot;
        d[o] = flag;
        d[o + 4] = ty;
        d[o + 8..o + 12].copy_from_slice(&start.to_le_bytes());
        d[o + 12..o + 16].copy_from_slice(&count.to_le_bytes());
        d[base + 510] = 0x55;
        d[base + 511] = 0xAA;
    }

    #[test]
    fn primaries_and_logicals() {
        let mut d = vec![0u8; 512 * 4096];
        entry(&mut d, 0, 0, 0x80, 0x83, 2048, 1000);
        entry(&mut d, 0, 1, 0, 0x05, 3072, 1000);
        entry(&mut d, 3072 * 512, 0, 0, 0x82, 63, 100);
        entry(&mut d, 3072 * 512, 1, 0, 0x05, 200, 300);
        entry(&mut d, 3272 * 512, 0, 0, 0x8e, 63, 50);
        let m = read(&mut Cursor::new(d), 512).unwrap();
        assert!(!m.is_protective());
        let got: Vec<_> = m
            .partitions
            .iter()
            .map(|p| (p.number, p.type_byte, p.active, p.start_lba.0, p.sectors))
            .collect();
        assert_eq!(
            got,
            [
                (1, 0x83, true, 2048, 1000),
                (2, 0x05, false, 3072, 1000),
                (5, 0x82, false, 3135, 100),
                (6, 0x8e, false, 3335, 50)
            ]
        );
    }

    #[test]
    fn protective_and_missing_signature() {
        let mut d = vec![0u8; 4096];
        assert!(!has_signature(&mut Cursor::new(d.clone())).unwrap());
        assert!(!has_signature(&mut Cursor::new(vec![0x55; 300])).unwrap());
        assert!(matches!(
            read(&mut Cursor::new(d.clone()), 512),
            Err(MbrError::NoSignature)
        ));
        entry(&mut d, 0, 0, 0, TYPE_PROTECTIVE, 1, 7);
        assert!(has_signature(&mut Cursor::new(d.clone())).unwrap());
        assert!(read(&mut Cursor::new(d), 512).unwrap().is_protective());
    }

    #[test]
    fn looping_chain_ends() {
        let mut d = vec![0u8; 512 * 64];
        entry(&mut d, 0, 0, 0, 0x0F, 8, 50);
        entry(&mut d, 8 * 512, 0, 0, 0x83, 1, 2);
        // Points back at itself.
        entry(&mut d, 8 * 512, 1, 0, 0x05, 0, 50);
        d[8 * 512 + 446 + 16 + 8] = 0;
        let m = read(&mut Cursor::new(d), 512).unwrap();
        assert!(m.partitions.len() <= 2 + MAX_LOGICAL as usize);
    }
}

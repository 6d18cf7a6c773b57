//! GUID partition table: a plain read model, and the writes the conversion needs (clone a
//! table onto a disk with new GUIDs, change type/attributes/size of a partition, write the
//! protective MBR).
//!
//! Reading is done here by hand with every field checked, so corrupted headers or entries
//! give an `Err` (gptman asserts on some malformed input). Writing goes through `gptman`,
//! which places the backup header and entry array at the end and computes the CRCs.

use crate::units::{Bytes, Lba};
use std::fmt;
use std::io::{self, Read, Seek, SeekFrom, Write};

const SIGNATURE: &[u8; 8] = b"EFI PART";
const ENTRY_SIZE: u32 = 128;
/// Upper bound on the entry count we accept (sgdisk writes 128; 4096 entries is 512 KiB).
const MAX_ENTRIES: u32 = 4096;
/// Entries gptman writes (it always makes a 128-entry array).
const WRITE_ENTRIES: u32 = 128;

/// Well-known partition type GUIDs (as printed, upper case).
pub mod types {
    pub const BASIC_DATA: &str = "EBD0A0A2-B9E5-4433-87C0-68B6B72699C7";
    pub const LINUX_FS: &str = "0FC63DAF-8483-4772-8E79-3D69D8477DE4";
    pub const LINUX_LVM: &str = "E6D6D379-F507-44C2-A23C-238F2A3DF928";
    pub const LINUX_SWAP: &str = "0657FD6D-A4AB-43C4-84E5-0933C84B4F4F";
    pub const LINUX_RAID: &str = "A19D880F-05FC-4D3B-A006-743F0F84911E";
    pub const BIOS_BOOT: &str = "21686148-6449-6E6F-744E-656564454649";
    pub const EFI_SYSTEM: &str = "C12A7328-F81F-11D2-BA4B-00A0C93EC93B";
}

/// Attribute bit 2: legacy BIOS bootable (what extlinux's gptmbr.bin looks for).
pub const ATTR_LEGACY_BIOS_BOOTABLE: u8 = 2;

#[derive(Debug, thiserror::Error)]
pub enum GptError {
    #[error("I/O error while accessing the partition table: {0}")]
    Io(#[from] io::Error),
    #[error("no GPT found (no valid \"EFI PART\" header at LBA 1 or at the last LBA): the disk has no GPT or both headers are damaged")]
    NotFound,
    #[error("GPT is damaged: {0}; repair it with `sgdisk -v` / `gdisk` before converting")]
    Corrupt(String),
    #[error("unsupported logical sector size {0}: only 512 and 4096 are supported")]
    BadSectorSize(u32),
    #[error("target disk is too small: the table uses up to LBA {needed} but the target's last usable LBA is {available}; use a disk at least as large as the source")]
    TargetTooSmall { needed: u64, available: u64 },
    #[error("source uses {source_size}-byte sectors but the target uses {target_size}-byte sectors: pick a target with the same logical sector size")]
    SectorSizeMismatch { source_size: u32, target_size: u32 },
    #[error("partition {0} does not exist in the table: pick one of the listed partitions")]
    NoSuchPartition(u32),
    #[error("partition {0} cannot be written: only partition numbers 1 to 128 are supported")]
    PartitionNumberTooHigh(u32),
    #[error("resizing partition {number} to end at LBA {last} is impossible: {why}")]
    BadResize { number: u32, last: u64, why: String },
    #[error("could not read random bytes for new GUIDs from /dev/urandom: {0}")]
    Random(io::Error),
    #[error("writing the GPT failed: {0}")]
    Write(#[from] gptman::Error),
}

pub type Result<T> = std::result::Result<T, GptError>;

/// A GUID in its on-disk byte order (first three fields little-endian).
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Guid(pub [u8; 16]);

impl Guid {
    /// Parses `XXXXXXXX-XXXX-XXXX-XXXX-XXXXXXXXXXXX` (any case).
    pub fn parse(s: &str) -> Option<Guid> {
        let hex: Vec<u8> = s.bytes().filter(|b| *b != b'-').collect();
        if hex.len() != 32 || s.len() != 36 {
            return None;
        }
        let mut be = [0u8; 16];
        for (i, byte) in be.iter_mut().enumerate() {
            let pair = std::str::from_utf8(&hex[2 * i..2 * i + 2]).ok()?;
            *byte = u8::from_str_radix(pair, 16).ok()?;
        }
        Some(Guid(swap_mixed_endian(be)))
    }

    pub fn is_zero(&self) -> bool {
        self.0 == [0; 16]
    }
}

fn swap_mixed_endian(mut b: [u8; 16]) -> [u8; 16] {
    b[0..4].reverse();
    b[4..6].reverse();
    b[6..8].reverse();
    b
}

impl fmt::Display for Guid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let b = swap_mixed_endian(self.0);
        for (i, byte) in b.iter().enumerate() {
            if matches!(i, 4 | 6 | 8 | 10) {
                f.write_str("-")?;
            }
            write!(f, "{byte:02X}")?;
        }
        Ok(())
    }
}

impl fmt::Debug for Guid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Guid({self})")
    }
}

/// Which header the table was read from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HeaderSource {
    Primary,
    /// The primary header was damaged; the backup at the last LBA was used.
    Backup,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GptPartition {
    /// 1-based index in the entry array (the `N` in `sdaN`).
    pub number: u32,
    pub first_lba: Lba,
    /// Inclusive.
    pub last_lba: Lba,
    pub type_guid: Guid,
    pub unique_guid: Guid,
    pub name: String,
    pub attributes: u64,
}

impl GptPartition {
    pub fn size_lbas(&self) -> u64 {
        self.last_lba.0 - self.first_lba.0 + 1
    }
    pub fn size_bytes(&self, sector_size: u32) -> Bytes {
        Lba(self.size_lbas()).bytes(u64::from(sector_size))
    }
    pub fn start_bytes(&self, sector_size: u32) -> Bytes {
        self.first_lba.bytes(u64::from(sector_size))
    }
    pub fn attribute(&self, bit: u8) -> bool {
        bit < 64 && self.attributes & (1 << bit) != 0
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GptTable {
    pub sector_size: u32,
    pub disk_guid: Guid,
    pub first_usable_lba: Lba,
    pub last_usable_lba: Lba,
    /// Size of the entry array (usually 128).
    pub entry_count: u32,
    /// Used entries only, by partition number.
    pub partitions: Vec<GptPartition>,
    pub header_source: HeaderSource,
}

impl GptTable {
    pub fn partition(&self, number: u32) -> Option<&GptPartition> {
        self.partitions.iter().find(|p| p.number == number)
    }

    fn partition_mut(&mut self, number: u32) -> Result<&mut GptPartition> {
        self.partitions
            .iter_mut()
            .find(|p| p.number == number)
            .ok_or(GptError::NoSuchPartition(number))
    }

    /// Highest LBA any partition uses (0 with no partitions).
    pub fn last_used_lba(&self) -> Lba {
        Lba(self
            .partitions
            .iter()
            .map(|p| p.last_lba.0)
            .max()
            .unwrap_or(0))
    }

    pub fn set_type(&mut self, number: u32, type_guid: Guid) -> Result<()> {
        self.partition_mut(number)?.type_guid = type_guid;
        Ok(())
    }

    pub fn set_attribute(&mut self, number: u32, bit: u8, on: bool) -> Result<()> {
        let p = self.partition_mut(number)?;
        let mask = 1u64 << (bit % 64);
        if on {
            p.attributes |= mask;
        } else {
            p.attributes &= !mask;
        }
        Ok(())
    }

    /// Moves the end of partition `number` to `last` (inclusive), keeping its start.
    pub fn resize(&mut self, number: u32, last: Lba) -> Result<()> {
        let last_usable = self.last_usable_lba;
        let bad = |why: String| GptError::BadResize {
            number,
            last: last.0,
            why,
        };
        let first = self
            .partition(number)
            .ok_or(GptError::NoSuchPartition(number))?
            .first_lba;
        if last < first {
            return Err(bad(format!("the partition starts at LBA {}", first.0)));
        }
        if last > last_usable {
            return Err(bad(format!("the last usable LBA is {}", last_usable.0)));
        }
        if let Some(other) = self
            .partitions
            .iter()
            .find(|p| p.number != number && p.first_lba <= last && p.last_lba >= first)
        {
            return Err(bad(format!("it would overlap partition {}", other.number)));
        }
        self.partition_mut(number)?.last_lba = last;
        Ok(())
    }
}

fn check_sector_size(sector_size: u32) -> Result<()> {
    match sector_size {
        512 | 4096 => Ok(()),
        other => Err(GptError::BadSectorSize(other)),
    }
}

fn disk_len<S: Seek>(s: &mut S) -> io::Result<u64> {
    s.seek(SeekFrom::End(0))
}

fn read_at<R: Read + Seek>(r: &mut R, offset: u64, buf: &mut [u8]) -> io::Result<()> {
    r.seek(SeekFrom::Start(offset))?;
    r.read_exact(buf)
}

/// Whether an "EFI PART" signature sits at LBA 1 for this sector size.
fn signature_at<R: Read + Seek>(r: &mut R, offset: u64) -> io::Result<bool> {
    let mut sig = [0u8; 8];
    Ok(super::read_exact_at(r, offset, &mut sig)? && &sig == SIGNATURE)
}

/// Finds the logical sector size from where a GPT header sits: LBA 1 at 512 or 4096 bytes,
/// else the last LBA (a backup header). `None` when no signature is found.
pub fn detect_sector_size<R: Read + Seek>(r: &mut R) -> Result<Option<u32>> {
    for ss in [512u32, 4096] {
        if signature_at(r, u64::from(ss))? {
            return Ok(Some(ss));
        }
    }
    let len = disk_len(r)?;
    for ss in [512u32, 4096] {
        let ss64 = u64::from(ss);
        if len >= 2 * ss64 && signature_at(r, (len / ss64 - 1) * ss64)? {
            return Ok(Some(ss));
        }
    }
    Ok(None)
}

/// Whether a backup GPT header signature sits at the last LBA (used to tell a disk whose
/// primary GPT was wiped from a blank one).
pub fn has_backup_signature<R: Read + Seek>(r: &mut R, sector_size: u32) -> Result<bool> {
    check_sector_size(sector_size)?;
    let ss = u64::from(sector_size);
    let len = disk_len(r)?;
    if len < 2 * ss {
        return Ok(false);
    }
    Ok(signature_at(r, (len / ss - 1) * ss)?)
}

/// Reads the GPT, from the primary header or, if that is damaged, the backup.
/// `sector_size` `None` detects it from where the header is found.
pub fn read<R: Read + Seek>(r: &mut R, sector_size: Option<u32>) -> Result<GptTable> {
    let ss = match sector_size {
        Some(ss) => ss,
        None => detect_sector_size(r)?.ok_or(GptError::NotFound)?,
    };
    check_sector_size(ss)?;
    let len = disk_len(r)?;
    let lbas = len / u64::from(ss);
    if lbas < 3 {
        return Err(GptError::NotFound);
    }
    match read_one(r, ss, lbas, 1) {
        Ok(t) => Ok(t),
        Err(primary) => match read_one(r, ss, lbas, lbas - 1) {
            Ok(mut t) => {
                t.header_source = HeaderSource::Backup;
                Ok(t)
            }
            // Report the primary's problem: it is the one tools look at first.
            Err(GptError::NotFound) => Err(primary),
            Err(backup) => match primary {
                GptError::NotFound => Err(backup),
                p => Err(p),
            },
        },
    }
}

fn le32(b: &[u8], off: usize) -> u32 {
    let mut a = [0u8; 4];
    a.copy_from_slice(&b[off..off + 4]);
    u32::from_le_bytes(a)
}

fn le64(b: &[u8], off: usize) -> u64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[off..off + 8]);
    u64::from_le_bytes(a)
}

fn guid_at(b: &[u8], off: usize) -> Guid {
    let mut g = [0u8; 16];
    g.copy_from_slice(&b[off..off + 16]);
    Guid(g)
}

fn read_one<R: Read + Seek>(r: &mut R, ss: u32, lbas: u64, at: u64) -> Result<GptTable> {
    let ss64 = u64::from(ss);
    let mut h = [0u8; 92];
    read_at(r, at * ss64, &mut h)?;
    if &h[0..8] != SIGNATURE {
        return Err(GptError::NotFound);
    }
    let corrupt = |what: String| GptError::Corrupt(format!("header at LBA {at}: {what}"));
    let header_size = le32(&h, 12);
    if header_size != 92 {
        // Larger headers are legal but never written by real tools; the CRC covers them.
        return Err(corrupt(format!("header size {header_size} is not 92")));
    }
    let stored_crc = le32(&h, 16);
    let mut for_crc = h;
    for_crc[16..20].fill(0);
    if crc32(&for_crc) != stored_crc {
        return Err(corrupt("header CRC32 does not match".into()));
    }
    let my_lba = le64(&h, 24);
    let first_usable = le64(&h, 40);
    let last_usable = le64(&h, 48);
    let disk_guid = guid_at(&h, 56);
    let entries_lba = le64(&h, 72);
    let entry_count = le32(&h, 80);
    let entry_size = le32(&h, 84);
    let entries_crc = le32(&h, 88);
    if my_lba != at {
        return Err(corrupt(format!("it claims to be at LBA {my_lba}")));
    }
    if entry_size != ENTRY_SIZE {
        return Err(corrupt(format!("entry size {entry_size} is not 128")));
    }
    if entry_count == 0 || entry_count > MAX_ENTRIES {
        return Err(corrupt(format!(
            "entry count {entry_count} is out of range"
        )));
    }
    let array_bytes = u64::from(entry_count) * u64::from(ENTRY_SIZE);
    let array_lbas = array_bytes.div_ceil(ss64);
    if entries_lba < 2
        || entries_lba
            .checked_add(array_lbas)
            .is_none_or(|end| end > lbas)
    {
        return Err(corrupt(format!(
            "entry array at LBA {entries_lba} lies outside the disk"
        )));
    }
    if first_usable < 2 || last_usable >= lbas || first_usable > last_usable {
        return Err(corrupt(format!(
            "usable range {first_usable}..={last_usable} does not fit a disk of {lbas} LBAs"
        )));
    }
    // array_bytes <= 512 KiB by MAX_ENTRIES, so the cast cannot truncate.
    let mut array = vec![0u8; array_bytes as usize];
    read_at(r, entries_lba * ss64, &mut array)?;
    if crc32(&array) != entries_crc {
        return Err(corrupt("partition entry array CRC32 does not match".into()));
    }
    let mut partitions = Vec::new();
    for (i, e) in array.chunks_exact(ENTRY_SIZE as usize).enumerate() {
        let type_guid = guid_at(e, 0);
        if type_guid.is_zero() {
            continue;
        }
        let number = i as u32 + 1;
        let first = le64(e, 32);
        let last = le64(e, 40);
        if first < first_usable || last < first || last > last_usable {
            return Err(corrupt(format!(
                "partition {number} spans LBA {first}..={last}, outside the usable range {first_usable}..={last_usable}"
            )));
        }
        let units: Vec<u16> = e[56..128]
            .chunks_exact(2)
            .map(|c| u16::from_le_bytes([c[0], c[1]]))
            .take_while(|u| *u != 0)
            .collect();
        partitions.push(GptPartition {
            number,
            first_lba: Lba(first),
            last_lba: Lba(last),
            type_guid,
            unique_guid: guid_at(e, 16),
            name: String::from_utf16_lossy(&units),
            attributes: le64(e, 48),
        });
    }
    let mut by_start: Vec<&GptPartition> = partitions.iter().collect();
    by_start.sort_by_key(|p| p.first_lba);
    for pair in by_start.windows(2) {
        if pair[1].first_lba <= pair[0].last_lba {
            return Err(corrupt(format!(
                "partitions {} and {} overlap",
                pair[0].number, pair[1].number
            )));
        }
    }
    Ok(GptTable {
        sector_size: ss,
        disk_guid,
        first_usable_lba: Lba(first_usable),
        last_usable_lba: Lba(last_usable),
        entry_count,
        partitions,
        header_source: HeaderSource::Primary,
    })
}

/// CRC-32 (IEEE, reflected), as GPT uses.
pub fn crc32(data: &[u8]) -> u32 {
    let mut crc = !0u32;
    for &b in data {
        crc ^= u32::from(b);
        for _ in 0..8 {
            crc = (crc >> 1) ^ (0xEDB8_8320 & (crc & 1).wrapping_neg());
        }
    }
    !crc
}

/// Where new GUIDs come from: the kernel's random pool, or a seed for reproducible tests.
pub enum GuidSource {
    Random,
    Seeded(u64),
}

impl GuidSource {
    /// A random (version 4) GUID.
    pub fn next_guid(&mut self) -> Result<Guid> {
        let mut b = [0u8; 16];
        match self {
            GuidSource::Random => {
                let mut f = std::fs::File::open("/dev/urandom").map_err(GptError::Random)?;
                f.read_exact(&mut b).map_err(GptError::Random)?;
            }
            GuidSource::Seeded(state) => {
                for half in b.chunks_exact_mut(8) {
                    half.copy_from_slice(&splitmix64(state).to_le_bytes());
                }
            }
        }
        // Version 4 lives in the high nibble of the (little-endian) third field.
        b[7] = (b[7] & 0x0f) | 0x40;
        b[8] = (b[8] & 0x3f) | 0x80;
        Ok(Guid(b))
    }
}

fn splitmix64(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// Writes `table` onto `disk` (primary header and array at the start, backup at the disk's
/// end), with first/last usable LBA computed for this disk's size. Returns what was written.
/// The caller's `table.sector_size` must be the disk's logical sector size.
pub fn write<D: Read + Write + Seek>(disk: &mut D, table: &GptTable) -> Result<GptTable> {
    let ss = table.sector_size;
    check_sector_size(ss)?;
    let ss64 = u64::from(ss);
    let mut gpt = gptman::GPT::new_from(disk, ss64, table.disk_guid.0)?;
    // Keep a source's larger first usable LBA (some tools reserve more than the array).
    if table.first_usable_lba.0 > gpt.header.first_usable_lba {
        gpt.header.first_usable_lba = table.first_usable_lba.0;
    }
    let needed = table.last_used_lba().0;
    if needed > gpt.header.last_usable_lba {
        return Err(GptError::TargetTooSmall {
            needed,
            available: gpt.header.last_usable_lba,
        });
    }
    for p in &table.partitions {
        if p.number == 0 || p.number > WRITE_ENTRIES {
            return Err(GptError::PartitionNumberTooHigh(p.number));
        }
        gpt[p.number] = gptman::GPTPartitionEntry {
            partition_type_guid: p.type_guid.0,
            unique_partition_guid: p.unique_guid.0,
            starting_lba: p.first_lba.0,
            ending_lba: p.last_lba.0,
            attribute_bits: p.attributes,
            partition_name: p.name.as_str().into(),
        };
    }
    // gptman writes only the 92 header bytes: clear both header sectors of stale data.
    let zero = vec![0u8; ss as usize];
    for lba in [1, gpt.header.backup_lba] {
        disk.seek(SeekFrom::Start(lba * ss64))?;
        disk.write_all(&zero)?;
    }
    gpt.write_into(disk)?;
    disk.flush()?;
    Ok(GptTable {
        sector_size: ss,
        disk_guid: table.disk_guid,
        first_usable_lba: Lba(gpt.header.first_usable_lba),
        last_usable_lba: Lba(gpt.header.last_usable_lba),
        entry_count: WRITE_ENTRIES,
        partitions: table.partitions.clone(),
        header_source: HeaderSource::Primary,
    })
}

/// Writes a copy of `source` onto `target` (same logical sector size, equal or larger):
/// same partitions, types, names and attributes, new disk and partition GUIDs, backup header
/// at the target's end. The protective MBR is not touched (see [`write_protective_mbr`]).
pub fn clone_onto<D: Read + Write + Seek>(
    source: &GptTable,
    target: &mut D,
    target_sector_size: u32,
    guids: &mut GuidSource,
) -> Result<GptTable> {
    if source.sector_size != target_sector_size {
        return Err(GptError::SectorSizeMismatch {
            source_size: source.sector_size,
            target_size: target_sector_size,
        });
    }
    let mut copy = source.clone();
    copy.disk_guid = guids.next_guid()?;
    for p in &mut copy.partitions {
        p.unique_guid = guids.next_guid()?;
    }
    write(target, &copy)
}

/// What to put in the MBR's boot code area (bytes 0..440).
pub enum BootCode<'a> {
    /// Leave the existing code (e.g. extlinux's gptmbr.bin) as it is.
    Keep,
    Replace(&'a [u8; 440]),
}

/// Writes a protective MBR: one 0xEE entry covering the disk, `active` setting its 0x80 flag
/// (some BIOSes ignore a disk without an active entry). Bytes 440..446 (disk signature) are
/// kept.
pub fn write_protective_mbr<D: Write + Seek>(
    disk: &mut D,
    sector_size: u32,
    boot_code: BootCode<'_>,
    active: bool,
) -> Result<()> {
    check_sector_size(sector_size)?;
    if let BootCode::Replace(code) = boot_code {
        disk.seek(SeekFrom::Start(0))?;
        disk.write_all(code)?;
    }
    if active {
        gptman::GPT::write_bootable_protective_mbr_into(disk, u64::from(sector_size))?;
    } else {
        gptman::GPT::write_protective_mbr_into(disk, u64::from(sector_size))?;
    }
    disk.flush()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Cursor;

    fn blank(ss: u32, lbas: u64) -> Cursor<Vec<u8>> {
        Cursor::new(vec![0u8; (lbas * u64::from(ss)) as usize])
    }

    fn sample(ss: u32) -> GptTable {
        let g = |s: &str| Guid::parse(s).unwrap();
        GptTable {
            sector_size: ss,
            disk_guid: g("11111111-2222-3333-4444-555555555555"),
            first_usable_lba: Lba(0),
            last_usable_lba: Lba(0),
            entry_count: 128,
            partitions: vec![
                GptPartition {
                    number: 1,
                    first_lba: Lba(256),
                    last_lba: Lba(511),
                    type_guid: g(types::BASIC_DATA),
                    unique_guid: g("AAAAAAAA-0000-0000-0000-000000000001"),
                    name: "root".into(),
                    attributes: 1 << 2,
                },
                GptPartition {
                    number: 3,
                    first_lba: Lba(40),
                    last_lba: Lba(255),
                    type_guid: g(types::LINUX_LVM),
                    unique_guid: g("AAAAAAAA-0000-0000-0000-000000000003"),
                    name: "sr".into(),
                    attributes: 0,
                },
            ],
            header_source: HeaderSource::Primary,
        }
    }

    #[test]
    fn guid_text_round_trip_and_byte_order() {
        let g = Guid::parse(types::BASIC_DATA).unwrap();
        assert_eq!(g.0[0..4], [0xA2, 0xA0, 0xD0, 0xEB]);
        assert_eq!(g.to_string(), types::BASIC_DATA);
        assert_eq!(Guid::parse("not-a-guid"), None);
    }

    #[test]
    fn crc32_known_value() {
        assert_eq!(crc32(b"123456789"), 0xCBF4_3926);
    }

    #[test]
    fn write_then_read_both_sector_sizes() {
        for ss in [512u32, 4096] {
            let mut disk = blank(ss, 1024);
            let written = write(&mut disk, &sample(ss)).unwrap();
            let read_back = read(&mut disk, None).unwrap();
            assert_eq!(read_back.sector_size, ss);
            assert_eq!(read_back, written);
            assert_eq!(
                read_back.first_usable_lba,
                Lba(if ss == 512 { 34 } else { 6 })
            );
            assert_eq!(
                read_back.last_usable_lba,
                Lba(1024 - if ss == 512 { 34 } else { 6 })
            );
            assert_eq!(read_back.partitions.len(), 2);
            assert!(read_back
                .partition(1)
                .unwrap()
                .attribute(ATTR_LEGACY_BIOS_BOOTABLE));
        }
    }

    #[test]
    fn damaged_primary_falls_back_to_backup() {
        let mut disk = blank(512, 1024);
        write(&mut disk, &sample(512)).unwrap();
        disk.get_mut()[512 + 30] ^= 0xff;
        let t = read(&mut disk, Some(512)).unwrap();
        assert_eq!(t.header_source, HeaderSource::Backup);
        assert_eq!(t.partitions.len(), 2);
    }

    #[test]
    fn clone_refuses_a_small_target_and_renews_guids() {
        let mut src = blank(512, 1024);
        let table = write(&mut src, &sample(512)).unwrap();
        let mut small = blank(512, 400);
        match clone_onto(&table, &mut small, 512, &mut GuidSource::Seeded(1)) {
            Err(GptError::TargetTooSmall {
                needed: 511,
                available: 366,
            }) => {}
            other => panic!("expected TargetTooSmall, got {other:?}"),
        }
        let mut big = blank(512, 4096);
        let c = clone_onto(&table, &mut big, 512, &mut GuidSource::Seeded(1)).unwrap();
        assert_ne!(c.disk_guid, table.disk_guid);
        assert_eq!(c.last_usable_lba, Lba(4096 - 34));
        let back = read(&mut big, Some(512)).unwrap();
        for (a, b) in table.partitions.iter().zip(&back.partitions) {
            assert_eq!(
                (a.first_lba, a.last_lba, a.type_guid),
                (b.first_lba, b.last_lba, b.type_guid)
            );
            assert_ne!(a.unique_guid, b.unique_guid);
        }
        assert!(matches!(
            clone_onto(
                &table,
                &mut blank(4096, 4096),
                4096,
                &mut GuidSource::Seeded(1)
            ),
            Err(GptError::SectorSizeMismatch { .. })
        ));
    }

    #[test]
    fn resize_checks_neighbours() {
        let mut t = sample(512);
        t.last_usable_lba = Lba(990);
        assert!(matches!(
            t.resize(3, Lba(300)),
            Err(GptError::BadResize { .. })
        ));
        assert!(matches!(
            t.resize(1, Lba(991)),
            Err(GptError::BadResize { .. })
        ));
        t.resize(1, Lba(990)).unwrap();
        assert_eq!(t.partition(1).unwrap().last_lba, Lba(990));
        assert!(matches!(
            t.resize(9, Lba(1)),
            Err(GptError::NoSuchPartition(9))
        ));
    }

    #[test]
    fn protective_mbr_keeps_or_replaces_boot_code() {
        let mut disk = blank(512, 1024);
        disk.get_mut()[0..440].fill(0xAB);
        write_protective_mbr(&mut disk, 512, BootCode::Keep, true).unwrap();
        let d = disk.get_ref();
        assert!(d[0..440].iter().all(|b| *b == 0xAB));
        assert_eq!(
            (d[446], d[450], &d[510..512]),
            (0x80, 0xEE, &[0x55, 0xAA][..])
        );
        write_protective_mbr(&mut disk, 512, BootCode::Replace(&[0x11; 440]), false).unwrap();
        let d = disk.get_ref();
        assert!(d[0..440].iter().all(|b| *b == 0x11));
        assert_eq!(d[446], 0);
    }
}

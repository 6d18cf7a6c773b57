//! Version-1 superblock (`struct mdp_superblock_1`, little-endian): encoding, decoding,
//! checksum (`calc_sb_1_csum`) and in-place updates.

use super::geometry::Geometry;
use super::{
    bitmap, set_name, ArraySpec, BadBlockLog, MdError, MemberSpec, MetadataVersion, Probe, Result,
    Role, Superblock, Update, MD_MAGIC, SB_BYTES,
};
use crate::units::Sectors;

const FEATURE_BITMAP: u32 = 1;
pub(super) const HEADER: usize = 256;
/// The kernel refuses more role entries than fit one 4 KiB block.
const MAX_DEV_LIMIT: u32 = (SB_BYTES as u32 - HEADER as u32) / 2;
const ROLE_SPARE: u16 = 0xffff;
const ROLE_FAULTY: u16 = 0xfffe;
const ROLE_JOURNAL: u16 = 0xfffd;
const ROLE_MAX: u16 = 0xff00;

mod off {
    pub const MAGIC: usize = 0;
    pub const MAJOR: usize = 4;
    pub const FEATURE_MAP: usize = 8;
    pub const SET_UUID: usize = 16;
    pub const SET_NAME: usize = 32;
    pub const CTIME: usize = 64;
    pub const LEVEL: usize = 72;
    pub const SIZE: usize = 80;
    pub const RAID_DISKS: usize = 92;
    pub const BITMAP_OFFSET: usize = 96;
    pub const DATA_OFFSET: usize = 128;
    pub const DATA_SIZE: usize = 136;
    pub const SUPER_OFFSET: usize = 144;
    pub const DEV_NUMBER: usize = 160;
    pub const DEVICE_UUID: usize = 168;
    pub const BBLOG_SIZE: usize = 186;
    pub const BBLOG_OFFSET: usize = 188;
    pub const UTIME: usize = 192;
    pub const EVENTS: usize = 200;
    pub const RESYNC_OFFSET: usize = 208;
    pub const SB_CSUM: usize = 216;
    pub const MAX_DEV: usize = 220;
    pub const DEV_ROLES: usize = 256;
}

// Offsets are constants inside the fixed 4 KiB buffer, so slicing cannot fail.
fn u16_at(b: &[u8], o: usize) -> u16 {
    u16::from_le_bytes([b[o], b[o + 1]])
}
fn u32_at(b: &[u8], o: usize) -> u32 {
    u32::from_le_bytes([b[o], b[o + 1], b[o + 2], b[o + 3]])
}
fn u64_at(b: &[u8], o: usize) -> u64 {
    u64::from(u32_at(b, o)) | (u64::from(u32_at(b, o + 4)) << 32)
}
fn put16(b: &mut [u8], o: usize, v: u16) {
    b[o..o + 2].copy_from_slice(&v.to_le_bytes());
}
fn put32(b: &mut [u8], o: usize, v: u32) {
    b[o..o + 4].copy_from_slice(&v.to_le_bytes());
}
fn put64(b: &mut [u8], o: usize, v: u64) {
    b[o..o + 8].copy_from_slice(&v.to_le_bytes());
}

pub(super) fn magic(raw: &[u8]) -> u32 {
    u32_at(raw, off::MAGIC)
}

pub(super) fn bitmap_offset(raw: &[u8]) -> i32 {
    u32_at(raw, off::BITMAP_OFFSET) as i32
}

/// Checksum over the header and `max_dev` roles with `sb_csum` taken as zero.
fn checksum(raw: &[u8]) -> u32 {
    let max_dev = u32_at(raw, off::MAX_DEV).min(MAX_DEV_LIMIT) as usize;
    let len = HEADER + 2 * max_dev;
    let mut sum: u64 = 0;
    let mut chunks = raw[..len].chunks_exact(4);
    for (i, c) in chunks.by_ref().enumerate() {
        if i * 4 != off::SB_CSUM {
            sum += u64::from(u32::from_le_bytes([c[0], c[1], c[2], c[3]]));
        }
    }
    if let [a, b] = chunks.remainder() {
        sum += u64::from(u16::from_le_bytes([*a, *b]));
    }
    ((sum & 0xffff_ffff) + (sum >> 32)) as u32
}

pub(super) fn seal(raw: &mut [u8]) {
    put32(raw, off::SB_CSUM, 0);
    let c = checksum(raw);
    put32(raw, off::SB_CSUM, c);
}

fn encode_role(role: Option<Role>) -> u16 {
    match role {
        Some(Role::Active(slot)) => slot,
        Some(Role::Faulty) => ROLE_FAULTY,
        Some(Role::Journal) => ROLE_JOURNAL,
        Some(Role::Spare) | None => ROLE_SPARE,
    }
}

fn decode_role(v: u16) -> Option<Role> {
    match v {
        ROLE_SPARE => None,
        ROLE_FAULTY => Some(Role::Faulty),
        ROLE_JOURNAL => Some(Role::Journal),
        s if s < ROLE_MAX => Some(Role::Active(s)),
        _ => Some(Role::Faulty),
    }
}

/// The superblock block and, with a bitmap, the bitmap area.
pub(super) fn encode(
    geo: &Geometry,
    array: &ArraySpec,
    member: &MemberSpec,
) -> Result<(Vec<u8>, Option<Vec<u8>>)> {
    let name = set_name(array)?;
    // mdadm sizes the role table to fill whole 512-byte sectors (128 for small arrays).
    let wanted = (array.raid_disks as usize).max(array.roles.len());
    let max_dev = ((HEADER + 2 * wanted).next_multiple_of(512) - HEADER) / 2;
    if max_dev > MAX_DEV_LIMIT as usize {
        return Err(MdError::InvalidSpec(format!(
            "{wanted} devices do not fit a 1.x superblock (at most {MAX_DEV_LIMIT})"
        )));
    }
    let mut b = vec![0u8; SB_BYTES];
    put32(&mut b, off::MAGIC, MD_MAGIC);
    put32(&mut b, off::MAJOR, 1);
    put32(
        &mut b,
        off::FEATURE_MAP,
        if geo.bitmap.is_some() {
            FEATURE_BITMAP
        } else {
            0
        },
    );
    b[off::SET_UUID..off::SET_UUID + 16].copy_from_slice(&array.uuid);
    b[off::SET_NAME..off::SET_NAME + name.len()].copy_from_slice(name.as_bytes());
    // ctime/utime: low 40 bits seconds, high 24 bits microseconds (zero here).
    let secs = |t: u64| t & ((1 << 40) - 1);
    put64(&mut b, off::CTIME, secs(array.ctime));
    put32(&mut b, off::LEVEL, 1);
    put64(&mut b, off::SIZE, geo.array_size.0);
    put32(&mut b, off::RAID_DISKS, array.raid_disks);
    if let Some(bm) = geo.bitmap {
        put32(&mut b, off::BITMAP_OFFSET, bm.offset as u32);
    }
    put64(&mut b, off::DATA_OFFSET, geo.data_offset.0);
    put64(&mut b, off::DATA_SIZE, geo.data_size.0);
    put64(&mut b, off::SUPER_OFFSET, geo.super_offset.0);
    put32(&mut b, off::DEV_NUMBER, member.dev_number);
    b[off::DEVICE_UUID..off::DEVICE_UUID + 16].copy_from_slice(&member.device_uuid);
    if let Some(bbl) = geo.bad_block_log {
        put16(&mut b, off::BBLOG_SIZE, bbl.size.0 as u16);
        put32(&mut b, off::BBLOG_OFFSET, bbl.offset as u32);
    }
    put64(&mut b, off::UTIME, secs(array.utime));
    put64(&mut b, off::EVENTS, array.events);
    put64(
        &mut b,
        off::RESYNC_OFFSET,
        if array.clean { u64::MAX } else { 0 },
    );
    put32(&mut b, off::MAX_DEV, max_dev as u32);
    for i in 0..max_dev {
        let role = array.roles.get(i).copied().flatten();
        put16(&mut b, off::DEV_ROLES + 2 * i, encode_role(role));
    }
    seal(&mut b);
    let bitmap = geo.bitmap.map(|bm| {
        bitmap::encode(
            &array.uuid,
            array.events,
            bm.chunk_size.0 as u32,
            geo.array_size,
            bm.space,
            !array.clean,
        )
    });
    Ok((b, bitmap))
}

pub(super) fn decode(
    raw: &[u8],
    version: MetadataVersion,
    loc: Sectors,
    member_size: Sectors,
) -> Result<Superblock> {
    let sector = loc.0;
    let major = u32_at(raw, off::MAJOR);
    if major != 1 {
        return Err(MdError::BadVersion {
            sector,
            expected: "1.x",
            found: format!("major {major}"),
        });
    }
    let bad = |what: String| MdError::Inconsistent {
        version,
        sector,
        what,
    };
    let max_dev = u32_at(raw, off::MAX_DEV);
    if max_dev > MAX_DEV_LIMIT {
        return Err(bad(format!("max_dev {max_dev} exceeds {MAX_DEV_LIMIT}")));
    }
    let stored = u32_at(raw, off::SB_CSUM);
    let computed = checksum(raw);
    if stored != computed {
        return Err(MdError::BadChecksum {
            version,
            sector,
            stored,
            computed,
        });
    }
    let super_offset = u64_at(raw, off::SUPER_OFFSET);
    if super_offset != sector {
        return Err(bad(format!(
            "super_offset says sector {super_offset} but it was found at sector {sector}"
        )));
    }
    let data_offset = u64_at(raw, off::DATA_OFFSET);
    let data_size = u64_at(raw, off::DATA_SIZE);
    let array_size = u64_at(raw, off::SIZE);
    match data_offset.checked_add(data_size) {
        Some(end) if end <= member_size.0 => {}
        _ => {
            return Err(bad(format!(
                "data area {data_offset}+{data_size} sectors runs past the member's {} sectors",
                member_size.0
            )))
        }
    }
    if array_size > data_size {
        return Err(bad(format!(
            "array size {array_size} exceeds data size {data_size} sectors"
        )));
    }
    let dev_number = u32_at(raw, off::DEV_NUMBER);
    let mut roles: Vec<Option<Role>> = (0..max_dev as usize)
        .map(|i| decode_role(u16_at(raw, off::DEV_ROLES + 2 * i)))
        .collect();
    let role = match roles.get(dev_number as usize) {
        Some(Some(r)) => *r,
        Some(None) => Role::Spare,
        None => return Err(bad(format!("dev_number {dev_number} >= max_dev {max_dev}"))),
    };
    while roles.last() == Some(&None) {
        roles.pop();
    }
    let name_bytes = &raw[off::SET_NAME..off::SET_NAME + 32];
    let name_len = name_bytes.iter().position(|&c| c == 0).unwrap_or(32);
    let mut uuid = [0u8; 16];
    uuid.copy_from_slice(&raw[off::SET_UUID..off::SET_UUID + 16]);
    let mut device_uuid = [0u8; 16];
    device_uuid.copy_from_slice(&raw[off::DEVICE_UUID..off::DEVICE_UUID + 16]);
    let bblog_size = u16_at(raw, off::BBLOG_SIZE);
    let bblog_offset = u32_at(raw, off::BBLOG_OFFSET) as i32;
    let feature_map = u32_at(raw, off::FEATURE_MAP);
    let secs = |t: u64| t & ((1 << 40) - 1);
    Ok(Superblock {
        version,
        array_uuid: uuid,
        name: String::from_utf8_lossy(&name_bytes[..name_len]).into_owned(),
        level: u32_at(raw, off::LEVEL) as i32,
        raid_disks: u32_at(raw, off::RAID_DISKS),
        feature_map,
        ctime: secs(u64_at(raw, off::CTIME)),
        utime: secs(u64_at(raw, off::UTIME)),
        events: u64_at(raw, off::EVENTS),
        clean: u64_at(raw, off::RESYNC_OFFSET) == u64::MAX,
        dev_number,
        device_uuid: Some(device_uuid),
        role,
        roles,
        super_offset: loc,
        data_offset: Sectors(data_offset),
        data_size: Sectors(data_size),
        array_size: Sectors(array_size),
        bitmap: None,
        bad_block_log: (bblog_size != 0 && bblog_offset != 0).then_some(BadBlockLog {
            offset: bblog_offset,
            size: Sectors(u64::from(bblog_size)),
        }),
    })
}

/// The identification fields of the header at sector `loc` (at least [`HEADER`] bytes), if
/// it has the magic, major version 1 and records `loc` as its own location.
pub(super) fn probe(raw: &[u8], version: MetadataVersion, loc: Sectors) -> Option<Probe> {
    if magic(raw) != MD_MAGIC
        || u32_at(raw, off::MAJOR) != 1
        // A stray copy elsewhere (an array inside an array, an old member) is not ours.
        || u64_at(raw, off::SUPER_OFFSET) != loc.0
    {
        return None;
    }
    let mut array_uuid = [0u8; 16];
    array_uuid.copy_from_slice(&raw[off::SET_UUID..off::SET_UUID + 16]);
    Some(Probe {
        version,
        array_uuid,
        name: crate::formats::label_text(&raw[off::SET_NAME..off::SET_NAME + 32]),
        super_offset: loc,
        data_offset: Sectors(u64_at(raw, off::DATA_OFFSET)),
    })
}

pub(super) fn apply(raw: &mut [u8], u: &Update, events: u64) -> Result<()> {
    match *u {
        Update::Role { dev_number, role } => {
            let max_dev = u32_at(raw, off::MAX_DEV);
            if dev_number >= MAX_DEV_LIMIT {
                return Err(MdError::InvalidSpec(format!(
                    "dev_number {dev_number} does not fit a 1.x superblock (at most {MAX_DEV_LIMIT} devices)"
                )));
            }
            if dev_number >= max_dev {
                // Grow the table; new entries are empty.
                for i in max_dev..=dev_number {
                    put16(raw, off::DEV_ROLES + 2 * i as usize, ROLE_SPARE);
                }
                put32(raw, off::MAX_DEV, dev_number + 1);
            }
            put16(
                raw,
                off::DEV_ROLES + 2 * dev_number as usize,
                encode_role(role),
            );
        }
        Update::Events(_) | Update::BumpEvents => put64(raw, off::EVENTS, events),
        Update::Clean(clean) => put64(raw, off::RESYNC_OFFSET, if clean { u64::MAX } else { 0 }),
        Update::UpdateTime(t) => put64(raw, off::UTIME, t & ((1 << 40) - 1)),
        Update::Name(name) => raw[off::SET_NAME..off::SET_NAME + 32].copy_from_slice(&name),
    }
    Ok(())
}

//! Version-0.90 superblock (`mdp_super_t`, 4 KiB of host-endian u32 words; written
//! little-endian as on x86): encoding, decoding, checksum and in-place updates.

use super::geometry::Geometry;
use super::{
    bitmap, ArraySpec, MdError, MemberSpec, MetadataVersion, Probe, Result, Role, Superblock,
    Update, MD_MAGIC, SB_BYTES,
};
use crate::units::Sectors;

const V: MetadataVersion = MetadataVersion::V0_90;
/// Disk descriptors in a 0.90 superblock.
pub const MAX_DISKS: usize = 27;

const W_MAGIC: usize = 0;
const W_MAJOR: usize = 1;
const W_MINOR: usize = 2;
const W_UUID0: usize = 5;
const W_CTIME: usize = 6;
const W_LEVEL: usize = 7;
const W_SIZE: usize = 8;
const W_NR_DISKS: usize = 9;
const W_RAID_DISKS: usize = 10;
const W_MD_MINOR: usize = 11;
const W_UUID1: usize = 13;
const W_UTIME: usize = 32;
const W_STATE: usize = 33;
const W_ACTIVE: usize = 34;
const W_WORKING: usize = 35;
const W_FAILED: usize = 36;
const W_SPARE: usize = 37;
const W_CSUM: usize = 38;
const W_EVENTS_LO: usize = 39;
const W_EVENTS_HI: usize = 40;
const W_DISKS: usize = 128;
const W_THIS: usize = 992;
const DESC_WORDS: usize = 32;

const SB_CLEAN: u32 = 1 << 0;
const SB_BITMAP_PRESENT: u32 = 1 << 8;
const DISK_FAULTY: u32 = 1 << 0;
const DISK_ACTIVE: u32 = 1 << 1;
const DISK_SYNC: u32 = 1 << 2;
const DISK_REMOVED: u32 = 1 << 3;

// Word indexes are constants below 1024 inside the 4 KiB buffer.
fn word(b: &[u8], w: usize) -> u32 {
    let o = w * 4;
    u32::from_le_bytes([b[o], b[o + 1], b[o + 2], b[o + 3]])
}
fn put(b: &mut [u8], w: usize, v: u32) {
    b[w * 4..w * 4 + 4].copy_from_slice(&v.to_le_bytes());
}

pub(super) fn magic(raw: &[u8]) -> u32 {
    word(raw, W_MAGIC)
}

fn checksum(raw: &[u8]) -> u32 {
    let sum: u64 = (0..SB_BYTES / 4)
        .filter(|&w| w != W_CSUM)
        .map(|w| u64::from(word(raw, w)))
        .sum();
    ((sum & 0xffff_ffff) + (sum >> 32)) as u32
}

pub(super) fn seal(raw: &mut [u8]) {
    put(raw, W_CSUM, 0);
    let c = checksum(raw);
    put(raw, W_CSUM, c);
}

#[derive(Clone, Copy, Default)]
struct Desc {
    number: u32,
    major: u32,
    minor: u32,
    raid_disk: u32,
    state: u32,
}

fn read_desc(raw: &[u8], base: usize) -> Desc {
    Desc {
        number: word(raw, base),
        major: word(raw, base + 1),
        minor: word(raw, base + 2),
        raid_disk: word(raw, base + 3),
        state: word(raw, base + 4),
    }
}

fn write_desc(raw: &mut [u8], base: usize, d: Desc) {
    for (i, v) in [d.number, d.major, d.minor, d.raid_disk, d.state]
        .into_iter()
        .enumerate()
    {
        put(raw, base + i, v);
    }
}

fn desc_role(d: &Desc, raid_disks: u32) -> Option<Role> {
    if d.state & DISK_REMOVED != 0 {
        None
    } else if d.state & DISK_FAULTY != 0 {
        Some(Role::Faulty)
    } else if d.state & (DISK_ACTIVE | DISK_SYNC) == DISK_ACTIVE | DISK_SYNC
        && d.raid_disk < raid_disks
    {
        u16::try_from(d.raid_disk).ok().map(Role::Active)
    } else {
        Some(Role::Spare)
    }
}

/// Rewrites every descriptor and the disk counts from `roles` (index = device number),
/// marking active slots nobody fills as removed+faulty like the kernel does.
fn write_disks(
    raw: &mut [u8],
    raid_disks: u32,
    roles: &[Option<Role>],
    majmin: &[(u32, u32)],
    this: u32,
) -> Result<()> {
    if roles.len() > MAX_DISKS || raid_disks as usize > MAX_DISKS {
        return Err(MdError::InvalidSpec(format!(
            "0.90 metadata holds at most {MAX_DISKS} devices; use metadata 1.x"
        )));
    }
    let (mut active, mut spare, mut faulty) = (0u32, 0u32, 0u32);
    let mut descs = [Desc::default(); MAX_DISKS];
    for (i, role) in roles.iter().enumerate() {
        let (major, minor) = majmin.get(i).copied().unwrap_or((0, 0));
        let n = i as u32;
        let d = match role {
            None => continue,
            Some(Role::Active(slot)) => {
                active += 1;
                Desc {
                    number: n,
                    major,
                    minor,
                    raid_disk: u32::from(*slot),
                    state: DISK_ACTIVE | DISK_SYNC,
                }
            }
            Some(Role::Spare) => {
                spare += 1;
                Desc {
                    number: n,
                    major,
                    minor,
                    raid_disk: n,
                    state: 0,
                }
            }
            Some(Role::Faulty) => {
                faulty += 1;
                Desc {
                    number: n,
                    major,
                    minor,
                    raid_disk: n,
                    state: DISK_FAULTY,
                }
            }
            Some(Role::Journal) => {
                return Err(MdError::InvalidSpec(
                    "0.90 metadata has no journal devices".into(),
                ))
            }
        };
        descs[i] = d;
    }
    let mut missing = 0u32;
    for slot in 0..raid_disks {
        let filled = roles
            .iter()
            .any(|r| matches!(r, Some(Role::Active(s)) if u32::from(*s) == slot));
        if filled {
            continue;
        }
        missing += 1;
        let i = slot as usize;
        if roles.get(i).copied().flatten().is_none() {
            descs[i] = Desc {
                number: slot,
                raid_disk: slot,
                state: DISK_REMOVED | DISK_FAULTY,
                ..Desc::default()
            };
        }
    }
    for (i, d) in descs.iter().enumerate() {
        write_desc(raw, W_DISKS + i * DESC_WORDS, *d);
    }
    let this_desc = descs.get(this as usize).copied().unwrap_or_default();
    write_desc(raw, W_THIS, this_desc);
    let failed = missing + faulty;
    put(raw, W_ACTIVE, active);
    put(raw, W_WORKING, active + spare);
    put(raw, W_FAILED, failed);
    put(raw, W_SPARE, spare);
    put(raw, W_NR_DISKS, active + spare + failed);
    Ok(())
}

pub(super) fn encode(
    geo: &Geometry,
    array: &ArraySpec,
    member: &MemberSpec,
) -> Result<(Vec<u8>, Option<Vec<u8>>)> {
    let to_u32 = |v: u64, what: &str| {
        u32::try_from(v)
            .map_err(|_| MdError::InvalidSpec(format!("{what} {v} does not fit 0.90's 32 bits")))
    };
    let mut b = vec![0u8; SB_BYTES];
    put(&mut b, W_MAGIC, MD_MAGIC);
    put(&mut b, W_MAJOR, 0);
    put(&mut b, W_MINOR, 90);
    let disk = bitmap::disk_uuid(V, &array.uuid);
    let uuid_word = |g: usize| {
        u32::from_le_bytes([
            disk[4 * g],
            disk[4 * g + 1],
            disk[4 * g + 2],
            disk[4 * g + 3],
        ])
    };
    put(&mut b, W_UUID0, uuid_word(0));
    for g in 1..4 {
        put(&mut b, W_UUID1 + g - 1, uuid_word(g));
    }
    put(&mut b, W_CTIME, to_u32(array.ctime, "ctime")?);
    put(&mut b, W_LEVEL, 1);
    put(
        &mut b,
        W_SIZE,
        to_u32(geo.array_size.0 / 2, "array size (KiB)")?,
    );
    put(&mut b, W_RAID_DISKS, array.raid_disks);
    put(&mut b, W_MD_MINOR, array.name.parse().unwrap_or(0));
    put(&mut b, W_UTIME, to_u32(array.utime, "utime")?);
    let mut state = if array.clean { SB_CLEAN } else { 0 };
    if geo.bitmap.is_some() {
        state |= SB_BITMAP_PRESENT;
    }
    put(&mut b, W_STATE, state);
    put(&mut b, W_EVENTS_LO, array.events as u32);
    put(&mut b, W_EVENTS_HI, (array.events >> 32) as u32);
    let mut majmin = vec![(0, 0); array.roles.len()];
    if let Some(m) = majmin.get_mut(member.dev_number as usize) {
        *m = member.dev_major_minor;
    }
    write_disks(
        &mut b,
        array.raid_disks,
        &array.roles,
        &majmin,
        member.dev_number,
    )?;
    seal(&mut b);
    let bitmap = geo.bitmap.map(|bm| {
        bitmap::encode(
            &disk,
            array.events,
            bm.chunk_size.0 as u32,
            geo.array_size,
            bm.space,
            !array.clean,
        )
    });
    Ok((b, bitmap))
}

/// The array UUID in mdadm's order from the four host-endian words.
fn array_uuid(raw: &[u8]) -> [u8; 16] {
    let mut disk = [0u8; 16];
    for (g, w) in [W_UUID0, W_UUID1, W_UUID1 + 1, W_UUID1 + 2]
        .into_iter()
        .enumerate()
    {
        disk[4 * g..4 * g + 4].copy_from_slice(&word(raw, w).to_le_bytes());
    }
    // disk_uuid is its own inverse.
    bitmap::disk_uuid(V, &disk)
}

/// The identification fields of the superblock at sector `loc`, if it has the magic and
/// version 0.90.
pub(super) fn probe(raw: &[u8], loc: Sectors) -> Option<Probe> {
    if magic(raw) != MD_MAGIC || word(raw, W_MAJOR) != 0 || word(raw, W_MINOR) != 90 {
        return None;
    }
    Some(Probe {
        version: V,
        array_uuid: array_uuid(raw),
        name: None,
        super_offset: loc,
        data_offset: Sectors(0),
    })
}

pub(super) fn decode(raw: &[u8], loc: Sectors, member_size: Sectors) -> Result<Superblock> {
    let sector = loc.0;
    let (major, minor) = (word(raw, W_MAJOR), word(raw, W_MINOR));
    if major != 0 || !(90..=91).contains(&minor) {
        return Err(MdError::BadVersion {
            sector,
            expected: "0.90",
            found: format!("{major}.{minor}"),
        });
    }
    let stored = word(raw, W_CSUM);
    let computed = checksum(raw);
    if stored != computed {
        return Err(MdError::BadChecksum {
            version: V,
            sector,
            stored,
            computed,
        });
    }
    let bad = |what: String| MdError::Inconsistent {
        version: V,
        sector,
        what,
    };
    let raid_disks = word(raw, W_RAID_DISKS);
    if raid_disks == 0 || raid_disks as usize > MAX_DISKS {
        return Err(bad(format!(
            "raid_disks {raid_disks} outside 1..={MAX_DISKS}"
        )));
    }
    let array_size = u64::from(word(raw, W_SIZE)) * 2;
    if array_size > sector {
        return Err(bad(format!(
            "array size {array_size} sectors runs into the superblock at sector {sector} (member of {} sectors)",
            member_size.0
        )));
    }
    let this = read_desc(raw, W_THIS);
    if this.number as usize >= MAX_DISKS {
        return Err(bad(format!(
            "this disk's number {} >= {MAX_DISKS}",
            this.number
        )));
    }
    let mut roles: Vec<Option<Role>> = (0..MAX_DISKS)
        .map(|i| {
            let d = read_desc(raw, W_DISKS + i * DESC_WORDS);
            let empty =
                d.number == 0 && d.major == 0 && d.minor == 0 && d.raid_disk == 0 && d.state == 0;
            if empty && i as u32 != this.number {
                None
            } else {
                desc_role(&d, raid_disks)
            }
        })
        .collect();
    while roles.last() == Some(&None) {
        roles.pop();
    }
    let state = word(raw, W_STATE);
    let has_bitmap = state & SB_BITMAP_PRESENT != 0;
    Ok(Superblock {
        version: V,
        array_uuid: array_uuid(raw),
        name: word(raw, W_MD_MINOR).to_string(),
        level: word(raw, W_LEVEL) as i32,
        raid_disks,
        feature_map: u32::from(has_bitmap),
        ctime: u64::from(word(raw, W_CTIME)),
        utime: u64::from(word(raw, W_UTIME)),
        events: u64::from(word(raw, W_EVENTS_LO)) | (u64::from(word(raw, W_EVENTS_HI)) << 32),
        clean: state & SB_CLEAN != 0,
        dev_number: this.number,
        device_uuid: None,
        role: desc_role(&this, raid_disks).unwrap_or(Role::Faulty),
        roles,
        super_offset: loc,
        data_offset: Sectors(0),
        data_size: loc,
        array_size: Sectors(array_size),
        bitmap: None,
        bad_block_log: None,
    })
}

pub(super) fn apply(raw: &mut [u8], u: &Update, events: u64) -> Result<()> {
    match *u {
        Update::Role { dev_number, role } => {
            if dev_number as usize >= MAX_DISKS {
                return Err(MdError::InvalidSpec(format!(
                    "dev_number {dev_number} does not fit 0.90 metadata (at most {MAX_DISKS} devices)"
                )));
            }
            let raid_disks = word(raw, W_RAID_DISKS);
            let this = read_desc(raw, W_THIS).number;
            let mut roles = Vec::with_capacity(MAX_DISKS);
            let mut majmin = Vec::with_capacity(MAX_DISKS);
            for i in 0..MAX_DISKS {
                let d = read_desc(raw, W_DISKS + i * DESC_WORDS);
                let empty = d.state == 0 && d.number == 0 && d.raid_disk == 0 && i as u32 != this;
                roles.push(if empty {
                    None
                } else {
                    desc_role(&d, raid_disks)
                });
                majmin.push((d.major, d.minor));
            }
            roles[dev_number as usize] = role;
            write_disks(raw, raid_disks, &roles, &majmin, this)?;
        }
        Update::Events(_) | Update::BumpEvents => {
            put(raw, W_EVENTS_LO, events as u32);
            put(raw, W_EVENTS_HI, (events >> 32) as u32);
        }
        Update::Clean(clean) => {
            let s = word(raw, W_STATE);
            put(
                raw,
                W_STATE,
                if clean { s | SB_CLEAN } else { s & !SB_CLEAN },
            );
        }
        Update::UpdateTime(t) => put(raw, W_UTIME, u32::try_from(t).unwrap_or(u32::MAX)),
        Update::Name(_) => {
            return Err(MdError::InvalidSpec(
                "0.90 metadata has no name: its UUID is the array's identity".into(),
            ))
        }
    }
    Ok(())
}

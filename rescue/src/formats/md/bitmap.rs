//! Internal write-intent bitmap header (`bitmap_super_t`, little-endian, 256 bytes)
//! followed by one bit per chunk.

use super::geometry::BITMAP_HEADER;
use super::{
    io_err, read_at, write_at, BitmapInfo, MdError, MetadataVersion, Result, Superblock,
    BITMAP_DAEMON_SLEEP, BITMAP_MAGIC,
};
use crate::units::Sectors;
use std::io::{Read, Seek, Write};

/// Bitmap format mdadm writes ("version 4 insists the bitmap is in little-endian order").
pub const BITMAP_VERSION: u32 = 4;

const MAGIC: usize = 0;
const VERSION: usize = 4;
const UUID: usize = 8;
const EVENTS: usize = 24;
const EVENTS_CLEARED: usize = 32;
const SYNC_SIZE: usize = 40;
const CHUNKSIZE: usize = 52;
const DAEMON_SLEEP: usize = 56;

fn u32_at(b: &[u8], o: usize) -> u32 {
    u32::from_le_bytes([b[o], b[o + 1], b[o + 2], b[o + 3]])
}
fn u64_at(b: &[u8], o: usize) -> u64 {
    u64::from(u32_at(b, o)) | (u64::from(u32_at(b, o + 4)) << 32)
}

/// Header plus bits over `space` sectors; `dirty` sets every bit (full resync on
/// first assembly, as mdadm does), otherwise all clear.
pub(super) fn encode(
    disk_uuid: &[u8; 16],
    events: u64,
    chunk_size: u32,
    sync_size: Sectors,
    space: Sectors,
    dirty: bool,
) -> Vec<u8> {
    let len = (space.bytes().0 as usize).max(BITMAP_HEADER as usize);
    let mut b = vec![if dirty { 0xff } else { 0 }; len];
    b[..BITMAP_HEADER as usize].fill(0);
    b[MAGIC..MAGIC + 4].copy_from_slice(&BITMAP_MAGIC.to_le_bytes());
    b[VERSION..VERSION + 4].copy_from_slice(&BITMAP_VERSION.to_le_bytes());
    b[UUID..UUID + 16].copy_from_slice(disk_uuid);
    b[EVENTS..EVENTS + 8].copy_from_slice(&events.to_le_bytes());
    b[EVENTS_CLEARED..EVENTS_CLEARED + 8].copy_from_slice(&events.to_le_bytes());
    b[SYNC_SIZE..SYNC_SIZE + 8].copy_from_slice(&sync_size.0.to_le_bytes());
    b[CHUNKSIZE..CHUNKSIZE + 4].copy_from_slice(&chunk_size.to_le_bytes());
    b[DAEMON_SLEEP..DAEMON_SLEEP + 4].copy_from_slice(&BITMAP_DAEMON_SLEEP.to_le_bytes());
    b
}

/// The array UUID as the kernel and bitmap store it (0.90 words are host-endian).
pub(super) fn disk_uuid(version: MetadataVersion, uuid: &[u8; 16]) -> [u8; 16] {
    let mut out = *uuid;
    if version == MetadataVersion::V0_90 {
        for group in out.chunks_exact_mut(4) {
            group.reverse();
        }
    }
    out
}

fn start(sb: &Superblock, offset: i32) -> Result<Sectors> {
    sb.super_offset
        .0
        .checked_add_signed(i64::from(offset))
        .map(Sectors)
        .ok_or_else(|| MdError::BadBitmap {
            version: sb.version,
            sector: sb.super_offset.0,
            what: format!("offset {offset} points before the start of the member"),
        })
}

pub(super) fn read<R: Read + Seek>(r: &mut R, sb: &Superblock, offset: i32) -> Result<BitmapInfo> {
    let at = start(sb, offset)?;
    let bad = |what: String| MdError::BadBitmap {
        version: sb.version,
        sector: sb.super_offset.0,
        what,
    };
    let raw = read_at(
        r,
        at.bytes().0,
        BITMAP_HEADER as usize,
        "the md bitmap header",
    )?
    .ok_or_else(|| bad(format!("header at sector {} is past the end", at.0)))?;
    let magic = u32_at(&raw, MAGIC);
    if magic != BITMAP_MAGIC {
        return Err(bad(format!(
            "magic {magic:#x} at sector {} instead of {BITMAP_MAGIC:#x}",
            at.0
        )));
    }
    let version = u32_at(&raw, VERSION);
    if !(3..=5).contains(&version) {
        return Err(bad(format!("unknown bitmap version {version}")));
    }
    let chunk_size = u32_at(&raw, CHUNKSIZE);
    if !chunk_size.is_power_of_two() || chunk_size < 512 {
        return Err(bad(format!(
            "chunk size {chunk_size} is not a power of two"
        )));
    }
    if raw[UUID..UUID + 16] != disk_uuid(sb.version, &sb.array_uuid) {
        return Err(bad("its UUID differs from the array's".into()));
    }
    Ok(BitmapInfo {
        offset,
        version,
        chunk_size,
        daemon_sleep: u32_at(&raw, DAEMON_SLEEP),
        sync_size: Sectors(u64_at(&raw, SYNC_SIZE)),
        events: u64_at(&raw, EVENTS),
        events_cleared: u64_at(&raw, EVENTS_CLEARED),
    })
}

/// Keeps the bitmap's event count with the superblock's so the kernel does not call
/// the bitmap stale.
pub(super) fn set_events<RW: Read + Write + Seek>(
    rw: &mut RW,
    sb: &Superblock,
    offset: i32,
    events: u64,
) -> Result<()> {
    let at = start(sb, offset)?;
    let mut raw = read_at(rw, at.bytes().0, 512, "the md bitmap header")?.ok_or_else(|| {
        io_err("re-reading the md bitmap")(std::io::ErrorKind::UnexpectedEof.into())
    })?;
    raw[EVENTS..EVENTS + 8].copy_from_slice(&events.to_le_bytes());
    write_at(rw, at, &raw, "updating the md bitmap events")
}

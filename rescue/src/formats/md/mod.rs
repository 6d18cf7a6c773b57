//! Linux md RAID1 superblocks (metadata 0.90, 1.0, 1.1 and 1.2): layout as mdadm 4.2
//! chooses it, writing a member's superblock (and internal write-intent bitmap), reading
//! it back, and the in-place updates a conversion needs (role, events, clean).
//!
//! Pure over `Read + Seek` / `Write + Seek`; checked against the real `mdadm --examine`
//! in `rescue/tests/md_examine.rs`.
//!
//! UUIDs are 16 bytes in the order mdadm prints them: for 1.x that is the on-disk order;
//! for 0.90 mdadm prints each host-endian word as `%08x`, so each 4-byte group is stored
//! byte-reversed. [`format_uuid`] gives the `xxxxxxxx:xxxxxxxx:xxxxxxxx:xxxxxxxx` form
//! used by `mdadm.conf` and `rd.md.uuid=` for every version.

mod bitmap;
mod geometry;
mod v090;
mod v1;

use crate::units::Sectors;
use std::fmt;
use std::io::{self, Read, Seek, SeekFrom, Write};

pub use geometry::{geometry, geometry_with_size, BadBlockLog, BitmapGeometry, Geometry};

/// Superblock magic shared by every version.
pub const MD_MAGIC: u32 = 0xa92b_4efc;
/// Bitmap header magic, "bitm".
pub const BITMAP_MAGIC: u32 = 0x6d74_6962;
/// `daemon_sleep` mdadm writes (seconds).
pub const BITMAP_DAEMON_SLEEP: u32 = 5;
/// Size read and written for any superblock: one 4 KiB block.
const SB_BYTES: usize = 4096;
/// Larger than any real device (8 EiB); keeps byte offsets within u64.
pub const MAX_MEMBER_SIZE: Sectors = Sectors(1 << 54);

fn check_member_size(member_size: Sectors) -> Result<()> {
    if member_size > MAX_MEMBER_SIZE {
        return Err(MdError::InvalidSpec(format!(
            "member size of {member_size} is larger than any device; pass the size in 512-byte sectors"
        )));
    }
    Ok(())
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum MetadataVersion {
    V0_90,
    V1_0,
    V1_1,
    V1_2,
}

impl fmt::Display for MetadataVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::V0_90 => "0.90",
            Self::V1_0 => "1.0",
            Self::V1_1 => "1.1",
            Self::V1_2 => "1.2",
        })
    }
}

impl MetadataVersion {
    /// The (major, minor) pair `SET_ARRAY_INFO` takes to load superblocks of this version.
    pub fn major_minor(self) -> (i32, i32) {
        match self {
            Self::V0_90 => (0, 90),
            Self::V1_0 => (1, 0),
            Self::V1_1 => (1, 1),
            Self::V1_2 => (1, 2),
        }
    }
}

impl std::str::FromStr for MetadataVersion {
    type Err = String;

    /// As [`fmt::Display`] writes it (`0.9` also for 0.90, as mdadm accepts).
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        match s {
            "0.90" | "0.9" => Ok(Self::V0_90),
            "1.0" => Ok(Self::V1_0),
            "1.1" => Ok(Self::V1_1),
            "1.2" => Ok(Self::V1_2),
            _ => Err(format!(
                "unknown md metadata version {s:?}: use 0.90, 1.0, 1.1 or 1.2"
            )),
        }
    }
}

/// What a device does in the array.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Role {
    /// Active and in sync in this slot (0-based).
    Active(u16),
    Spare,
    Faulty,
    /// RAID4/5/6 journal; only ever read.
    Journal,
}

/// The array as a whole; identical on every member.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ArraySpec {
    pub uuid: [u8; 16],
    /// Written as `homehost:name` (1.x `set_name`); for 0.90 a numeric name is the
    /// preferred minor.
    pub homehost: String,
    pub name: String,
    pub raid_disks: u32,
    /// Unix seconds; caller-supplied so output is deterministic.
    pub ctime: u64,
    pub utime: u64,
    pub events: u64,
    /// Clean: no resync needed (1.x resync_offset all ones, 0.90 state clean bit). Also
    /// selects the initial bitmap: clean -> all bits clear, dirty -> all bits set.
    pub clean: bool,
    /// Role of each device number (index); `None` for a number with no device, such
    /// as the slot of a `missing` member.
    pub roles: Vec<Option<Role>>,
}

/// One member.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MemberSpec {
    /// Index into [`ArraySpec::roles`].
    pub dev_number: u32,
    /// 1.x `device_uuid` (random per member); ignored by 0.90.
    pub device_uuid: [u8; 16],
    /// 0.90 stores the block device's major:minor in the descriptor; the kernel rewrites
    /// it, so `(0, 0)` is fine.
    pub dev_major_minor: (u32, u32),
}

/// The bitmap header as read from disk.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BitmapInfo {
    pub offset: i32,
    pub version: u32,
    pub chunk_size: u32,
    pub daemon_sleep: u32,
    pub sync_size: Sectors,
    pub events: u64,
    pub events_cleared: u64,
}

/// 1.x `feature_map` bit: `recovery_offset` is valid (MD_FEATURE_RECOVERY_OFFSET).
pub const FEATURE_RECOVERY_OFFSET: u32 = 2;

/// A member's superblock as read.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Superblock {
    pub version: MetadataVersion,
    pub array_uuid: [u8; 16],
    /// 1.x `set_name` (`homehost:name`); 0.90: the preferred minor in decimal.
    pub name: String,
    pub level: i32,
    pub raid_disks: u32,
    pub feature_map: u32,
    pub ctime: u64,
    pub utime: u64,
    pub events: u64,
    pub clean: bool,
    pub dev_number: u32,
    /// 1.x only.
    pub device_uuid: Option<[u8; 16]>,
    /// This member's role.
    pub role: Role,
    /// Role per device number, trailing empty entries removed.
    pub roles: Vec<Option<Role>>,
    pub super_offset: Sectors,
    pub data_offset: Sectors,
    pub data_size: Sectors,
    /// Per-member size used by the array.
    pub array_size: Sectors,
    pub bitmap: Option<BitmapInfo>,
    pub bad_block_log: Option<BadBlockLog>,
}

impl Superblock {
    /// `mdadm --examine`'s "Array UUID" / "UUID".
    pub fn uuid_string(&self) -> String {
        format_uuid(&self.array_uuid)
    }

    /// A 1.x member still being rebuilt: its recovery offset is set (mdadm --examine's
    /// "Recovery Offset", --detail's "spare rebuilding"). 0.90 keeps such a member a spare.
    pub fn recovering(&self) -> bool {
        self.version != MetadataVersion::V0_90 && self.feature_map & FEATURE_RECOVERY_OFFSET != 0
    }

    /// mdadm's "Array State" letters for the active slots: `A` present, `.` missing.
    pub fn array_state(&self) -> String {
        (0..self.raid_disks)
            .map(|slot| {
                let present = self
                    .roles
                    .iter()
                    .any(|r| matches!(r, Some(Role::Active(s)) if u32::from(*s) == slot));
                if present {
                    'A'
                } else {
                    '.'
                }
            })
            .collect()
    }
}

#[derive(Debug, thiserror::Error)]
pub enum MdError {
    #[error("I/O error {context}: {source}")]
    Io {
        context: String,
        #[source]
        source: io::Error,
    },
    #[error("member of {size} is too small for md {version} metadata: it needs at least {needed}; use a larger partition")]
    TooSmall {
        version: MetadataVersion,
        size: Sectors,
        needed: Sectors,
    },
    #[error("member of {size} is too large for md 0.90 metadata (4 TiB of data per member at most); use metadata 1.0 or 1.2")]
    TooLargeFor090 { size: Sectors },
    #[error("array size of {array} per member exceeds the {available} the member offers; choose a smaller array size")]
    ArrayTooLarge { array: Sectors, available: Sectors },
    #[error("no room for an internal write-intent bitmap with md {version} metadata on a member of {size}; create the array without a bitmap")]
    NoRoomForBitmap {
        version: MetadataVersion,
        size: Sectors,
    },
    #[error("no md superblock (magic {MD_MAGIC:#x}) for metadata {version} at sector {sector}: found {found:#x}; check the metadata version and that this is an md member")]
    BadMagic {
        version: MetadataVersion,
        sector: u64,
        found: u32,
    },
    #[error("md {version} superblock at sector {sector} has a bad checksum: stored {stored:#x}, computed {computed:#x}; the superblock is corrupt, re-create it from the other member")]
    BadChecksum {
        version: MetadataVersion,
        sector: u64,
        stored: u32,
        computed: u32,
    },
    #[error("md superblock at sector {sector} has version {found}, not {expected}; it was written by something this tool does not handle")]
    BadVersion {
        sector: u64,
        expected: &'static str,
        found: String,
    },
    #[error("md {version} superblock at sector {sector} is inconsistent: {what}; it cannot be used, re-create it")]
    Inconsistent {
        version: MetadataVersion,
        sector: u64,
        what: String,
    },
    #[error("internal bitmap of the md {version} superblock at sector {sector} is invalid: {what}; re-create the array metadata")]
    BadBitmap {
        version: MetadataVersion,
        sector: u64,
        what: String,
    },
    #[error("md array has RAID level {level}; only RAID1 is supported")]
    UnsupportedLevel { level: i32 },
    #[error("invalid md array description: {0}")]
    InvalidSpec(String),
    #[error("no md superblock found on this member (member size {size}); it is not an md member or was wiped")]
    NotFound { size: Sectors },
}

pub type Result<T, E = MdError> = std::result::Result<T, E>;

pub(crate) fn io_err(context: impl Into<String>) -> impl FnOnce(io::Error) -> MdError {
    let context = context.into();
    move |source| MdError::Io { context, source }
}

/// `xxxxxxxx:xxxxxxxx:xxxxxxxx:xxxxxxxx`, as mdadm prints array UUIDs.
pub fn format_uuid(uuid: &[u8; 16]) -> String {
    let mut s = String::with_capacity(35);
    for (i, b) in uuid.iter().enumerate() {
        if i > 0 && i % 4 == 0 {
            s.push(':');
        }
        s.push_str(&format!("{b:02x}"));
    }
    s
}

/// Parses mdadm's UUID text (any of `:`, `-`, `.` or space separators are ignored).
pub fn parse_uuid(text: &str) -> Option<[u8; 16]> {
    let hex: Vec<u8> = text
        .bytes()
        .filter(|c| !matches!(c, b':' | b'-' | b'.' | b' '))
        .collect();
    if hex.len() != 32 {
        return None;
    }
    let mut out = [0u8; 16];
    for (i, pair) in hex.chunks(2).enumerate() {
        let s = std::str::from_utf8(pair).ok()?;
        out[i] = u8::from_str_radix(s, 16).ok()?;
    }
    Some(out)
}

/// The 1.x `set_name` mdadm builds from homehost and name.
pub(crate) fn set_name(array: &ArraySpec) -> Result<String> {
    let full = if !array.homehost.is_empty() && !array.name.contains(':') {
        format!("{}:{}", array.homehost, array.name)
    } else {
        array.name.clone()
    };
    if full.len() > 31 || full.contains('\0') {
        return Err(MdError::InvalidSpec(format!(
            "array name {full:?} does not fit the 31 bytes of set_name; use a shorter homehost or name"
        )));
    }
    Ok(full)
}

fn check_spec(geo: &Geometry, array: &ArraySpec, member: &MemberSpec) -> Result<()> {
    let bad = |m: String| Err(MdError::InvalidSpec(m));
    check_member_size(geo.member_size)?;
    if geo.super_offset >= geo.member_size {
        return bad(format!(
            "superblock offset {} lies outside the member of {}; compute the geometry with geometry()",
            geo.super_offset, geo.member_size
        ));
    }
    if array.raid_disks == 0 {
        return bad("raid_disks is 0; a RAID1 array needs at least one slot".into());
    }
    let own = array
        .roles
        .get(member.dev_number as usize)
        .copied()
        .flatten();
    if own.is_none() {
        return bad(format!(
            "member dev_number {} has no role in the roles table; give it Role::Active(slot) or Role::Spare",
            member.dev_number
        ));
    }
    let mut seen = vec![false; array.raid_disks as usize];
    for role in array.roles.iter().flatten() {
        if let Role::Active(slot) = role {
            match seen.get_mut(usize::from(*slot)) {
                None => {
                    return bad(format!(
                        "slot {slot} is outside the array's {} raid disks",
                        array.raid_disks
                    ))
                }
                Some(true) => return bad(format!("slot {slot} is given to two devices")),
                Some(s) => *s = true,
            }
        }
    }
    if geo.array_size > geo.data_size || geo.array_size.0 == 0 {
        return Err(MdError::ArrayTooLarge {
            array: geo.array_size,
            available: geo.data_size,
        });
    }
    Ok(())
}

/// Writes this member's superblock (and internal bitmap when `geo.bitmap` is set).
/// `geo` comes from [`geometry`] for this member's size.
pub fn write_member<W: Write + Seek>(
    w: &mut W,
    geo: &Geometry,
    array: &ArraySpec,
    member: &MemberSpec,
) -> Result<()> {
    check_spec(geo, array, member)?;
    let (sb, bitmap) = match geo.version {
        MetadataVersion::V0_90 => v090::encode(geo, array, member)?,
        _ => v1::encode(geo, array, member)?,
    };
    write_at(w, geo.super_offset, &sb, "writing the md superblock")?;
    if let (Some(bm), Some(bytes)) = (geo.bitmap, bitmap) {
        let start = bm.start(geo.super_offset).ok_or_else(|| {
            MdError::InvalidSpec("bitmap offset points before the start of the member".into())
        })?;
        write_at(w, start, &bytes, "writing the md bitmap")?;
    }
    w.flush().map_err(io_err("flushing the md superblock"))
}

fn write_at<W: Write + Seek>(w: &mut W, at: Sectors, buf: &[u8], what: &str) -> Result<()> {
    w.seek(SeekFrom::Start(at.bytes().0))
        .and_then(|_| w.write_all(buf))
        .map_err(io_err(format!("{what} at sector {}", at.0)))
}

/// Reads `len` bytes at `at`, or `None` when the stream ends before.
fn read_at<R: Read + Seek>(r: &mut R, at: u64, len: usize, what: &str) -> Result<Option<Vec<u8>>> {
    let mut buf = vec![0u8; len];
    r.seek(SeekFrom::Start(at))
        .map_err(io_err(format!("seeking to {what} at byte {at}")))?;
    let mut got = 0;
    while got < len {
        match r.read(&mut buf[got..]) {
            Ok(0) => return Ok(None),
            Ok(n) => got += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(io_err(format!("reading {what} at byte {at}"))(e)),
        }
    }
    Ok(Some(buf))
}

/// Where each version keeps its superblock on a member of `member_size` sectors.
pub fn super_location(version: MetadataVersion, member_size: Sectors) -> Option<Sectors> {
    let d = member_size.0;
    match version {
        MetadataVersion::V1_1 => Some(Sectors(0)),
        MetadataVersion::V1_2 => (d >= 24).then_some(Sectors(8)),
        MetadataVersion::V1_0 => (d >= 24).then(|| Sectors((d - 16) & !7)),
        MetadataVersion::V0_90 => {
            (d >= geometry::V090_RESERVED).then(|| Sectors((d & !127) - geometry::V090_RESERVED))
        }
    }
}

/// Reads the superblock of one given version; `BadMagic` when there is none.
pub fn read_version<R: Read + Seek>(
    r: &mut R,
    member_size: Sectors,
    version: MetadataVersion,
) -> Result<Superblock> {
    check_member_size(member_size)?;
    let loc = super_location(version, member_size).ok_or(MdError::TooSmall {
        version,
        size: member_size,
        needed: Sectors(geometry::V090_RESERVED),
    })?;
    let raw = read_at(r, loc.bytes().0, SB_BYTES, "the md superblock")?.ok_or_else(|| {
        io_err(format!("reading the md superblock at sector {}", loc.0))(io::Error::from(
            io::ErrorKind::UnexpectedEof,
        ))
    })?;
    let magic = match version {
        MetadataVersion::V0_90 => v090::magic(&raw),
        _ => v1::magic(&raw),
    };
    if magic != MD_MAGIC {
        return Err(MdError::BadMagic {
            version,
            sector: loc.0,
            found: magic,
        });
    }
    let mut sb = match version {
        MetadataVersion::V0_90 => v090::decode(&raw, loc, member_size)?,
        _ => v1::decode(&raw, version, loc, member_size)?,
    };
    if sb.feature_map & 1 != 0 || sb.bitmap.is_some() {
        let offset = match (version, &sb.bitmap) {
            (MetadataVersion::V0_90, _) => geometry::V090_BITMAP_OFFSET,
            (_, Some(b)) => b.offset,
            _ => v1::bitmap_offset(&raw),
        };
        sb.bitmap = Some(bitmap::read(r, &sb, offset)?);
    }
    Ok(sb)
}

/// Probes 1.2, 1.1, 1.0 then 0.90. `Ok(None)` when no location has the md magic; a
/// superblock with the magic but a bad checksum or fields is an error, unless another
/// location holds a valid one.
pub fn read<R: Read + Seek>(r: &mut R, member_size: Sectors) -> Result<Option<Superblock>> {
    check_member_size(member_size)?;
    let mut first_err = None;
    for version in [
        MetadataVersion::V1_2,
        MetadataVersion::V1_1,
        MetadataVersion::V1_0,
        MetadataVersion::V0_90,
    ] {
        if super_location(version, member_size).is_none() {
            continue;
        }
        match read_version(r, member_size, version) {
            Ok(sb) => return Ok(Some(sb)),
            Err(MdError::BadMagic { .. }) => {}
            // A short stream has no superblock at the far locations.
            Err(MdError::Io { source, .. }) if source.kind() == io::ErrorKind::UnexpectedEof => {}
            Err(e) => {
                first_err.get_or_insert(e);
            }
        }
    }
    first_err.map_or(Ok(None), Err)
}

/// What identification needs from a member's superblock.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Probe {
    pub version: MetadataVersion,
    /// In mdadm's order, as [`Superblock::array_uuid`]; print it with [`format_uuid`].
    pub array_uuid: [u8; 16],
    /// 1.x `set_name` up to its NUL, trailing whitespace removed, `None` when empty (as
    /// blkid's LABEL); always `None` for 0.90.
    pub name: Option<String>,
    pub super_offset: Sectors,
    /// Where the array's data starts on this member (0 for 0.90), as recorded.
    pub data_offset: Sectors,
}

/// Looks for a superblock of one version where it belongs on a member of `member_size`
/// sectors ([`super_location`]), leniently: the magic, the major version (0.90: exactly
/// 0.90) and for 1.x the superblock's own record of its location are checked, nothing else
/// (no checksum, no field checks, no bitmap), so a damaged member is still recognised
/// where [`read_version`] would refuse it. `Ok(None)` when there is none or the member is
/// too small for this version.
pub fn probe_version<R: Read + Seek>(
    r: &mut R,
    member_size: Sectors,
    version: MetadataVersion,
) -> io::Result<Option<Probe>> {
    let Some(loc) = super_location(version, member_size) else {
        return Ok(None);
    };
    let mut raw = vec![
        0u8;
        match version {
            MetadataVersion::V0_90 => SB_BYTES,
            _ => v1::HEADER,
        }
    ];
    if !crate::formats::read_exact_at(r, loc.bytes().0, &mut raw)? {
        return Ok(None);
    }
    Ok(match version {
        MetadataVersion::V0_90 => v090::probe(&raw, loc),
        _ => v1::probe(&raw, version, loc),
    })
}

/// An in-place change to an existing member's superblock.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Update {
    /// Set the role of device `dev_number` (`None`: no device there).
    Role {
        dev_number: u32,
        role: Option<Role>,
    },
    /// Set the event count (the bitmap header follows it).
    Events(u64),
    /// Add one to the event count.
    BumpEvents,
    Clean(bool),
    /// Unix seconds.
    UpdateTime(u64),
    /// The 1.x `homehost:name`, NUL-padded (mdadm's `--update=name`); 0.90 has none.
    Name([u8; 32]),
}

/// Applies `updates` to the superblock found on this member and rewrites it with a fresh
/// checksum. Returns the superblock as written.
pub fn update<RW: Read + Write + Seek>(
    rw: &mut RW,
    member_size: Sectors,
    updates: &[Update],
) -> Result<Superblock> {
    let sb = read(rw, member_size)?.ok_or(MdError::NotFound { size: member_size })?;
    if sb.level != 1 {
        return Err(MdError::UnsupportedLevel { level: sb.level });
    }
    let loc = sb.super_offset;
    let mut raw = read_at(rw, loc.bytes().0, SB_BYTES, "the md superblock")?.ok_or_else(|| {
        io_err("re-reading the md superblock")(io::Error::from(io::ErrorKind::UnexpectedEof))
    })?;
    let mut events = sb.events;
    for u in updates {
        match *u {
            Update::Events(e) => events = e,
            Update::BumpEvents => {
                events = events.checked_add(1).ok_or_else(|| MdError::Inconsistent {
                    version: sb.version,
                    sector: loc.0,
                    what: "event count at its maximum".into(),
                })?
            }
            _ => {}
        }
        match sb.version {
            MetadataVersion::V0_90 => v090::apply(&mut raw, u, events)?,
            _ => v1::apply(&mut raw, u, events)?,
        }
    }
    match sb.version {
        MetadataVersion::V0_90 => v090::seal(&mut raw),
        _ => v1::seal(&mut raw),
    }
    write_at(rw, loc, &raw, "rewriting the md superblock")?;
    if let Some(bm) = sb.bitmap {
        if bm.events != events {
            bitmap::set_events(rw, &sb, bm.offset, events)?;
        }
    }
    rw.flush().map_err(io_err("flushing the md superblock"))?;
    read_version(rw, member_size, sb.version)
}

#[cfg(test)]
mod tests;

//! ext2/3/4: the superblock and the map of used blocks (from group descriptors and block
//! bitmaps), so a clone copies only what the filesystem uses.
//!
//! Layout rules follow e2fsprogs (`ext2fs_super_and_bgd_loc2`, `ext2fs_bg_has_super`,
//! `ext2fs_descriptor_block_loc2`, `read_bitmaps`): sparse_super / sparse_super2 decide which
//! groups carry superblock and descriptor backups, meta_bg moves descriptor blocks into the
//! first, second and last group of each meta group, flex_bg lets a group's bitmaps and
//! inode table live in another group, and a BLOCK_UNINIT group (checksummed descriptors only)
//! has no bitmap on disk: its used blocks are the metadata that lies inside it.

mod files;
pub use files::read_file;

use super::extents::Extents;
use crate::units::Bytes;
use serde::Serialize;
use std::io::{self, Read, Seek, SeekFrom};

pub const SUPERBLOCK_OFFSET: u64 = 1024;
pub const MAGIC: u16 = 0xEF53;

// feature_compat
pub const COMPAT_HAS_JOURNAL: u32 = 0x4;
pub const COMPAT_SPARSE_SUPER2: u32 = 0x200;
// feature_incompat
pub const INCOMPAT_COMPRESSION: u32 = 0x1;
pub const INCOMPAT_FILETYPE: u32 = 0x2;
pub const INCOMPAT_RECOVER: u32 = 0x4;
pub const INCOMPAT_JOURNAL_DEV: u32 = 0x8;
pub const INCOMPAT_META_BG: u32 = 0x10;
pub const INCOMPAT_EXTENTS: u32 = 0x40;
pub const INCOMPAT_64BIT: u32 = 0x80;
pub const INCOMPAT_MMP: u32 = 0x100;
pub const INCOMPAT_FLEX_BG: u32 = 0x200;
pub const INCOMPAT_EA_INODE: u32 = 0x400;
pub const INCOMPAT_DIRDATA: u32 = 0x1000;
pub const INCOMPAT_CSUM_SEED: u32 = 0x2000;
pub const INCOMPAT_LARGEDIR: u32 = 0x4000;
pub const INCOMPAT_INLINE_DATA: u32 = 0x8000;
pub const INCOMPAT_ENCRYPT: u32 = 0x10000;
pub const INCOMPAT_CASEFOLD: u32 = 0x20000;
/// Incompatible features whose layout we understand (none of the others change where
/// blocks are or what the bitmaps mean).
const INCOMPAT_KNOWN: u32 = INCOMPAT_FILETYPE
    | INCOMPAT_RECOVER
    | INCOMPAT_META_BG
    | INCOMPAT_EXTENTS
    | INCOMPAT_64BIT
    | INCOMPAT_MMP
    | INCOMPAT_FLEX_BG
    | INCOMPAT_EA_INODE
    | INCOMPAT_DIRDATA
    | INCOMPAT_CSUM_SEED
    | INCOMPAT_LARGEDIR
    | INCOMPAT_INLINE_DATA
    | INCOMPAT_ENCRYPT
    | INCOMPAT_CASEFOLD;
// feature_ro_compat
pub const RO_COMPAT_SPARSE_SUPER: u32 = 0x1;
pub const RO_COMPAT_LARGE_FILE: u32 = 0x2;
pub const RO_COMPAT_BTREE_DIR: u32 = 0x4;
pub const RO_COMPAT_GDT_CSUM: u32 = 0x10;
pub const RO_COMPAT_BIGALLOC: u32 = 0x200;
pub const RO_COMPAT_METADATA_CSUM: u32 = 0x400;

const BG_BLOCK_UNINIT: u16 = 0x2;

#[derive(Debug, thiserror::Error)]
pub enum ExtError {
    #[error("reading the ext filesystem failed: {0}")]
    Io(#[from] io::Error),
    #[error("no ext2/3/4 magic at byte 1080: not an ext filesystem")]
    NotExt,
    #[error(
        "ext filesystem uses bigalloc (clusters of {0} blocks), which this tool does not map: \
         copy every byte instead (`rescue clone --raw`)"
    )]
    Bigalloc(u64),
    #[error(
        "ext filesystem has incompatible features 0x{0:x} this tool does not know: \
         copy every byte instead (`rescue clone --raw`)"
    )]
    UnknownIncompat(u32),
    #[error(
        "this is an external ext journal device, not a filesystem: copy every byte instead \
         (`rescue clone --raw`)"
    )]
    JournalDevice,
    #[error(
        "ext filesystem uses compression (a never-merged feature): copy every byte instead \
         (`rescue clone --raw`)"
    )]
    Compression,
    #[error("corrupt ext filesystem: {0}: check the source with `e2fsck -fn`")]
    Corrupt(String),
    #[error(
        "ext filesystem claims {fs} but the device holds only {dev}: the image is truncated \
         or the filesystem was not shrunk before the device; fix it with e2fsck/resize2fs first"
    )]
    Truncated { fs: Bytes, dev: Bytes },
}

fn corrupt<T>(what: impl Into<String>) -> Result<T, ExtError> {
    Err(ExtError::Corrupt(what.into()))
}

/// Which flavour of ext, decided from the features as blkid does.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ExtVersion {
    Ext2,
    Ext3,
    Ext4,
}

impl std::fmt::Display for ExtVersion {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            ExtVersion::Ext2 => "ext2",
            ExtVersion::Ext3 => "ext3",
            ExtVersion::Ext4 => "ext4",
        })
    }
}

/// The superblock fields that matter for layout and identification.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Superblock {
    pub label: String,
    pub uuid: [u8; 16],
    pub block_size: u64,
    pub blocks_count: u64,
    pub free_blocks_count: u64,
    pub first_data_block: u64,
    pub blocks_per_group: u64,
    pub inodes_per_group: u64,
    pub inode_size: u64,
    /// 1 when cleanly unmounted.
    pub state: u16,
    pub feature_compat: u32,
    pub feature_incompat: u32,
    pub feature_ro_compat: u32,
    pub desc_size: u64,
    pub reserved_gdt_blocks: u64,
    pub first_meta_bg: u64,
    pub backup_bgs: [u32; 2],
}

fn le16(b: &[u8], o: usize) -> u16 {
    u16::from_le_bytes([b[o], b[o + 1]])
}
fn le32(b: &[u8], o: usize) -> u32 {
    u32::from_le_bytes([b[o], b[o + 1], b[o + 2], b[o + 3]])
}

impl Superblock {
    /// Read and validate the primary superblock (byte 1024 of `r`).
    pub fn read<R: Read + Seek>(r: &mut R) -> Result<Self, ExtError> {
        let mut b = [0u8; 1024];
        r.seek(SeekFrom::Start(SUPERBLOCK_OFFSET))?;
        match r.read_exact(&mut b) {
            Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Err(ExtError::NotExt),
            other => other?,
        }
        Self::parse(&b)
    }

    /// Parse the 1024-byte superblock.
    pub fn parse(b: &[u8; 1024]) -> Result<Self, ExtError> {
        if le16(b, 0x38) != MAGIC {
            return Err(ExtError::NotExt);
        }
        let feature_compat = le32(b, 0x5C);
        let feature_incompat = le32(b, 0x60);
        let feature_ro_compat = le32(b, 0x64);
        let log_block = le32(b, 0x18);
        if log_block > 6 {
            return corrupt(format!("block size 2^(10+{log_block}) is out of range"));
        }
        let block_size = 1024u64 << log_block;
        if feature_incompat & INCOMPAT_JOURNAL_DEV != 0 {
            return Err(ExtError::JournalDevice);
        }
        if feature_incompat & INCOMPAT_COMPRESSION != 0 {
            return Err(ExtError::Compression);
        }
        if feature_incompat & !INCOMPAT_KNOWN != 0 {
            return Err(ExtError::UnknownIncompat(
                feature_incompat & !INCOMPAT_KNOWN,
            ));
        }
        if feature_ro_compat & RO_COMPAT_BIGALLOC != 0 {
            let log_cluster = le32(b, 0x1C);
            let ratio = 1u64
                .checked_shl(log_cluster.saturating_sub(log_block))
                .unwrap_or(0);
            return Err(ExtError::Bigalloc(ratio));
        }
        let is64 = feature_incompat & INCOMPAT_64BIT != 0;
        let hi = |o: usize| if is64 { u64::from(le32(b, o)) << 32 } else { 0 };
        let blocks_count = u64::from(le32(b, 0x04)) | hi(0x150);
        let free_blocks_count = u64::from(le32(b, 0x0C)) | hi(0x158);
        let first_data_block = u64::from(le32(b, 0x14));
        let blocks_per_group = u64::from(le32(b, 0x20));
        let inodes_per_group = u64::from(le32(b, 0x28));
        let rev = le32(b, 0x4C);
        let inode_size = if rev == 0 {
            128
        } else {
            u64::from(le16(b, 0x58))
        };
        let desc_size = if is64 { u64::from(le16(b, 0xFE)) } else { 32 };
        if blocks_per_group == 0 || blocks_per_group > 8 * block_size {
            return corrupt(format!("{blocks_per_group} blocks per group"));
        }
        if first_data_block != u64::from(block_size == 1024) {
            return corrupt(format!(
                "first data block {first_data_block} with {block_size}-byte blocks"
            ));
        }
        if blocks_count.checked_mul(block_size).is_none() {
            return corrupt(format!(
                "{blocks_count} blocks of {block_size} bytes overflow"
            ));
        }
        if blocks_count <= first_data_block {
            return corrupt(format!("{blocks_count} blocks in total"));
        }
        if free_blocks_count > blocks_count {
            return corrupt(format!(
                "{free_blocks_count} free blocks of {blocks_count} in total"
            ));
        }
        if !(32..=block_size).contains(&desc_size) || !desc_size.is_power_of_two() {
            return corrupt(format!("group descriptor size {desc_size}"));
        }
        if inode_size < 128 || inode_size > block_size || !inode_size.is_power_of_two() {
            return corrupt(format!("inode size {inode_size}"));
        }
        if inodes_per_group == 0 || inodes_per_group > 8 * block_size {
            return corrupt(format!("{inodes_per_group} inodes per group"));
        }
        let label_raw = &b[0x78..0x88];
        let end = label_raw.iter().position(|&c| c == 0).unwrap_or(16);
        let mut uuid = [0u8; 16];
        uuid.copy_from_slice(&b[0x68..0x78]);
        Ok(Superblock {
            label: String::from_utf8_lossy(&label_raw[..end]).into_owned(),
            uuid,
            block_size,
            blocks_count,
            free_blocks_count,
            first_data_block,
            blocks_per_group,
            inodes_per_group,
            inode_size,
            state: le16(b, 0x3A),
            feature_compat,
            feature_incompat,
            feature_ro_compat,
            desc_size,
            reserved_gdt_blocks: u64::from(le16(b, 0xCE)),
            first_meta_bg: u64::from(le32(b, 0x104)),
            backup_bgs: [le32(b, 0x24C), le32(b, 0x250)],
        })
    }

    /// ext2, ext3 or ext4, by the same rule as blkid (see [`version_of`]).
    /// Not cleanly unmounted: the journal needs recovery, or the state is not clean (a
    /// host that crashed or lost power with the filesystem mounted read-write).
    pub fn needs_recovery(&self) -> bool {
        self.feature_incompat & INCOMPAT_RECOVER != 0 || self.state & 1 == 0
    }

    pub fn version(&self) -> ExtVersion {
        version_of(
            self.feature_compat,
            self.feature_incompat,
            self.feature_ro_compat,
        )
    }

    /// The UUID in its usual text form.
    pub fn uuid_string(&self) -> String {
        format_uuid(&self.uuid)
    }

    pub fn size(&self) -> Bytes {
        Bytes(self.blocks_count * self.block_size)
    }

    pub fn group_count(&self) -> u64 {
        (self.blocks_count - self.first_data_block).div_ceil(self.blocks_per_group)
    }

    /// Group descriptors carry the high halves of their block numbers.
    fn descs_64bit(&self) -> bool {
        self.feature_incompat & INCOMPAT_64BIT != 0 && self.desc_size >= 64
    }

    fn descs_per_block(&self) -> u64 {
        self.block_size / self.desc_size
    }

    fn desc_blocks(&self) -> u64 {
        self.group_count().div_ceil(self.descs_per_block())
    }

    fn has_csum(&self) -> bool {
        self.feature_ro_compat & (RO_COMPAT_GDT_CSUM | RO_COMPAT_METADATA_CSUM) != 0
    }

    fn has_meta_bg(&self) -> bool {
        self.feature_incompat & INCOMPAT_META_BG != 0
    }

    fn group_first_block(&self, g: u64) -> u64 {
        self.first_data_block + g * self.blocks_per_group
    }

    fn group_block_count(&self, g: u64) -> u64 {
        let first = self.group_first_block(g);
        self.blocks_per_group.min(self.blocks_count - first)
    }

    /// Whether group `g` holds a superblock backup (and, without meta_bg, the GDT).
    pub fn group_has_super(&self, g: u64) -> bool {
        if g == 0 {
            return true;
        }
        if self.feature_compat & COMPAT_SPARSE_SUPER2 != 0 {
            return g == u64::from(self.backup_bgs[0]) || g == u64::from(self.backup_bgs[1]);
        }
        if g <= 1 || self.feature_ro_compat & RO_COMPAT_SPARSE_SUPER == 0 {
            return true;
        }
        if g.is_multiple_of(2) {
            return false;
        }
        is_power_of(g, 3) || is_power_of(g, 5) || is_power_of(g, 7)
    }

    /// Block holding descriptor block `i` (primary copy).
    fn descriptor_block(&self, i: u64) -> u64 {
        if !self.has_meta_bg() || i < self.first_meta_bg {
            return self.first_data_block + i + 1;
        }
        let g = self.descs_per_block() * i;
        self.group_first_block(g) + u64::from(self.group_has_super(g))
    }

    /// Superblock, descriptor and reserved-GDT blocks inside group `g`, as block ranges.
    fn super_and_bgd(&self, g: u64) -> Vec<(u64, u64)> {
        let start = self.group_first_block(g);
        let mut out = Vec::new();
        let has_super = self.group_has_super(g);
        let old_desc_blocks = if self.has_meta_bg() {
            self.first_meta_bg
        } else {
            self.desc_blocks() + self.reserved_gdt_blocks
        };
        if has_super {
            out.push((start, 1));
        }
        let dpb = self.descs_per_block();
        let meta_bg = g / dpb;
        if !self.has_meta_bg() || meta_bg < self.first_meta_bg {
            if has_super && old_desc_blocks > 0 {
                out.push((start + 1, old_desc_blocks));
            }
        } else {
            let r = g % dpb;
            if r == 0 || r == 1 || r == dpb - 1 {
                out.push((start + u64::from(has_super), 1));
            }
        }
        out
    }
}

fn is_power_of(mut n: u64, base: u64) -> bool {
    while n.is_multiple_of(base) {
        n /= base;
    }
    n == 1
}

/// ext2, ext3 or ext4 from the feature words, by the same rule as blkid: a journal and
/// only ext3-era features is ext3, no journal and only ext2-era features is ext2, else ext4.
pub fn version_of(compat: u32, incompat: u32, ro_compat: u32) -> ExtVersion {
    const OLD_RO: u32 = RO_COMPAT_SPARSE_SUPER | RO_COMPAT_LARGE_FILE | RO_COMPAT_BTREE_DIR;
    let old_ro = ro_compat & !OLD_RO == 0;
    let journal = compat & COMPAT_HAS_JOURNAL != 0;
    let ext3_in = incompat & !(INCOMPAT_FILETYPE | INCOMPAT_RECOVER | INCOMPAT_META_BG) == 0;
    let ext2_in = incompat & !(INCOMPAT_FILETYPE | INCOMPAT_META_BG) == 0;
    match journal {
        true if ext3_in && old_ro => ExtVersion::Ext3,
        false if ext2_in && old_ro => ExtVersion::Ext2,
        _ => ExtVersion::Ext4,
    }
}

/// What identification needs from an ext superblock, in the form blkid reports it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Probe {
    pub version: ExtVersion,
    /// Volume name up to its NUL, trailing whitespace removed; `None` when empty.
    pub label: Option<String>,
    /// In [`format_uuid`] form.
    pub uuid: String,
}

/// Identifies an ext2/3/4 filesystem at the start of `r` leniently, as blkid does: the
/// magic is enough (only an external journal device is refused), so a filesystem that
/// [`Superblock::parse`] rejects (unknown features, bigalloc, odd geometry) is still
/// named. `Ok(None)` when there is no ext superblock.
pub fn probe<R: Read + Seek>(r: &mut R) -> io::Result<Option<Probe>> {
    let mut b = [0u8; 256];
    if !super::read_exact_at(r, SUPERBLOCK_OFFSET, &mut b)? {
        return Ok(None);
    }
    let (compat, incompat) = (le32(&b, 0x5C), le32(&b, 0x60));
    if le16(&b, 0x38) != MAGIC || incompat & INCOMPAT_JOURNAL_DEV != 0 {
        return Ok(None);
    }
    // RECOVER without a journal is not counted: such a filesystem is reported as ext2 (or
    // ext4 by its other features). blkid names no ext type at all for it, and
    // `Superblock::version` says ext4; kept as inspect has always reported it.
    let incompat_seen = if compat & COMPAT_HAS_JOURNAL == 0 {
        incompat & !INCOMPAT_RECOVER
    } else {
        incompat
    };
    let mut uuid = [0u8; 16];
    uuid.copy_from_slice(&b[0x68..0x78]);
    Ok(Some(Probe {
        version: version_of(compat, incompat_seen, le32(&b, 0x64)),
        label: super::label_text(&b[0x78..0x88]),
        uuid: format_uuid(&uuid),
    }))
}

/// `xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx`.
pub fn format_uuid(u: &[u8; 16]) -> String {
    let h: String = u.iter().map(|b| format!("{b:02x}")).collect();
    format!(
        "{}-{}-{}-{}-{}",
        &h[0..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..32]
    )
}

/// One group as the map saw it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct GroupUsage {
    /// Blocks in this group (the last one may be short).
    pub blocks: u64,
    /// Blocks in use in this group (from its bitmap, or its metadata when uninitialised).
    pub used_blocks: u64,
    /// The free count the descriptor claims.
    pub desc_free_blocks: u64,
    pub block_uninit: bool,
}

/// What `used_map` found.
#[derive(Clone, Debug, Serialize)]
pub struct UsedMap {
    pub superblock: Superblock,
    pub version: ExtVersion,
    /// Used byte ranges, including the blocks before the first group (boot sector).
    pub extents: Extents,
    /// Used blocks counted from the bitmaps; equals blocks_count − free_blocks_count on a
    /// consistent filesystem.
    pub used_blocks: u64,
    pub groups: Vec<GroupUsage>,
}

#[derive(Clone, Copy, Debug)]
struct Desc {
    block_bitmap: u64,
    inode_bitmap: u64,
    inode_table: u64,
    free_blocks: u64,
    flags: u16,
}

impl Desc {
    /// One group descriptor (`d` is `desc_size` bytes; the high halves only with 64bit).
    fn parse(d: &[u8], is64: bool) -> Desc {
        let hi = |off: usize| {
            if is64 {
                u64::from(le32(d, off)) << 32
            } else {
                0
            }
        };
        let hi16 = |off: usize| {
            if is64 {
                u64::from(le16(d, off)) << 16
            } else {
                0
            }
        };
        Desc {
            block_bitmap: u64::from(le32(d, 0x00)) | hi(0x20),
            inode_bitmap: u64::from(le32(d, 0x04)) | hi(0x24),
            inode_table: u64::from(le32(d, 0x08)) | hi(0x28),
            free_blocks: u64::from(le16(d, 0x0C)) | hi16(0x2C),
            flags: le16(d, 0x12),
        }
    }
}

/// Read the superblock, the group descriptors and the block bitmaps of the ext
/// filesystem at the start of `r`, and return what is in use.
pub fn used_map<R: Read + Seek>(r: &mut R) -> Result<UsedMap, ExtError> {
    let sb = Superblock::read(r)?;
    let dev = Bytes(r.seek(SeekFrom::End(0))?);
    if sb.size() > dev {
        return Err(ExtError::Truncated { fs: sb.size(), dev });
    }
    let bs = sb.block_size;
    let groups = sb.group_count();
    if sb.has_meta_bg() && sb.first_meta_bg > sb.desc_blocks() {
        return corrupt(format!(
            "first meta_bg {} is past the {} descriptor blocks",
            sb.first_meta_bg,
            sb.desc_blocks()
        ));
    }

    // Pass 1: descriptors.
    let dpb = sb.descs_per_block();
    let is64 = sb.descs_64bit();
    let mut descs = Vec::with_capacity(usize::try_from(groups).unwrap_or(0).min(1 << 20));
    let mut block = vec![0u8; to_usize(bs)?];
    for g in 0..groups {
        let i = g / dpb;
        if g % dpb == 0 {
            let at = sb.descriptor_block(i);
            if at >= sb.blocks_count {
                return corrupt(format!(
                    "descriptor block {i} at block {at} is past the end"
                ));
            }
            r.seek(SeekFrom::Start(at * bs))?;
            r.read_exact(&mut block)?;
        }
        let o = to_usize((g % dpb) * sb.desc_size)?;
        let d = &block[o..o + to_usize(sb.desc_size)?];
        let desc = Desc::parse(d, is64);
        let itb = sb.inode_table_blocks();
        for (what, at, len) in [
            ("block bitmap", desc.block_bitmap, 1),
            ("inode bitmap", desc.inode_bitmap, 1),
            ("inode table", desc.inode_table, itb),
        ] {
            if at < sb.first_data_block || at.saturating_add(len) > sb.blocks_count {
                return corrupt(format!(
                    "group {g}: {what} at block {at} is outside the filesystem"
                ));
            }
        }
        if desc.free_blocks > sb.group_block_count(g) {
            return corrupt(format!(
                "group {g}: {} free blocks of {}",
                desc.free_blocks,
                sb.group_block_count(g)
            ));
        }
        descs.push(desc);
    }

    let uninit = |g: u64| sb.has_csum() && descs[g as usize].flags & BG_BLOCK_UNINIT != 0;

    // Metadata that lies inside uninitialised groups (flex_bg may place any group's).
    let mut uninit_used: Vec<Vec<(u64, u64)>> = vec![Vec::new(); descs.len()];
    if (0..groups).any(uninit) {
        let itb = sb.inode_table_blocks();
        for d in &descs {
            for (at, len) in [
                (d.block_bitmap, 1),
                (d.inode_bitmap, 1),
                (d.inode_table, itb),
            ] {
                let end = at + len;
                let mut b = at;
                while b < end {
                    let g = (b - sb.first_data_block) / sb.blocks_per_group;
                    let gend = (sb.group_first_block(g) + sb.blocks_per_group).min(end);
                    if g < groups && uninit(g) {
                        uninit_used[g as usize].push((b, gend - b));
                    }
                    b = gend;
                }
            }
        }
    }

    // Pass 2: bitmaps.
    let mut ranges: Vec<(Bytes, Bytes)> = Vec::new();
    let mut usage = Vec::with_capacity(descs.len());
    let mut used_total = sb.first_data_block;
    if sb.first_data_block > 0 {
        ranges.push((Bytes(0), Bytes(sb.first_data_block * bs)));
    }
    let bitmap_bytes = to_usize(sb.blocks_per_group.div_ceil(8))?;
    let mut bitmap = vec![0u8; bitmap_bytes];
    for g in 0..groups {
        let first = sb.group_first_block(g);
        let n = sb.group_block_count(g);
        let d = descs[g as usize];
        let used = if uninit(g) {
            let mut blocks: Vec<(u64, u64)> = sb.super_and_bgd(g);
            blocks.extend_from_slice(&uninit_used[g as usize]);
            let v = blocks
                .iter()
                .map(|&(s, l)| {
                    let e = (s + l).min(first + n);
                    (Bytes(s.min(e) * bs), Bytes(e * bs))
                })
                .collect();
            let ex = Extents::from_ranges(v);
            ranges.extend_from_slice(ex.ranges());
            ex.total().0 / bs
        } else {
            r.seek(SeekFrom::Start(d.block_bitmap * bs))?;
            r.read_exact(&mut bitmap)?;
            bitmap_runs(&bitmap, n, |s, e| {
                ranges.push((Bytes((first + s) * bs), Bytes((first + e) * bs)))
            })
        };
        used_total += used;
        usage.push(GroupUsage {
            blocks: n,
            used_blocks: used,
            desc_free_blocks: d.free_blocks,
            block_uninit: uninit(g),
        });
    }
    Ok(UsedMap {
        version: sb.version(),
        extents: Extents::from_ranges(ranges),
        used_blocks: used_total,
        groups: usage,
        superblock: sb,
    })
}

impl Superblock {
    fn inode_table_blocks(&self) -> u64 {
        (self.inodes_per_group * self.inode_size).div_ceil(self.block_size)
    }
}

/// Call `run(start, end)` for each run of set bits among the first `n` bits; return the
/// number of set bits.
fn bitmap_runs(bitmap: &[u8], n: u64, mut run: impl FnMut(u64, u64)) -> u64 {
    let mut count = 0;
    let mut start: Option<u64> = None;
    let mut i = 0u64;
    while i < n {
        let byte = bitmap[(i / 8) as usize];
        // Whole bytes of one state go in one step; other bytes bit by bit.
        let (set, width) = if i.is_multiple_of(8) && i + 8 <= n && (byte == 0 || byte == 0xFF) {
            (byte == 0xFF, 8)
        } else {
            (byte >> (i % 8) & 1 == 1, 1)
        };
        match (set, start) {
            (true, None) => start = Some(i),
            (false, Some(s)) => {
                run(s, i);
                start = None;
            }
            _ => {}
        }
        if set {
            count += width;
        }
        i += width;
    }
    if let Some(s) = start {
        run(s, n);
    }
    count
}

fn to_usize(v: u64) -> Result<usize, ExtError> {
    usize::try_from(v).or_else(|_| corrupt(format!("size {v} does not fit in memory")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bitmap_runs_counts_and_splits() {
        let bm = [0b1111_0011u8, 0xFF, 0x00, 0b0000_0001];
        let mut runs = vec![];
        let n = bitmap_runs(&bm, 26, |s, e| runs.push((s, e)));
        assert_eq!(runs, vec![(0, 2), (4, 16), (24, 25)]);
        assert_eq!(n, 2 + 12 + 1);
        // Bits past n (padding of the last group) do not count.
        let mut runs = vec![];
        assert_eq!(bitmap_runs(&[0xFF], 3, |s, e| runs.push((s, e))), 3);
        assert_eq!(runs, vec![(0, 3)]);
    }

    #[test]
    fn sparse_super_groups() {
        let mut b = [0u8; 1024];
        b[0x38..0x3A].copy_from_slice(&MAGIC.to_le_bytes());
        b[0x04..0x08].copy_from_slice(&100_000u32.to_le_bytes());
        b[0x20..0x24].copy_from_slice(&8192u32.to_le_bytes());
        b[0x28..0x2C].copy_from_slice(&2048u32.to_le_bytes());
        b[0x4C] = 1;
        b[0x58..0x5A].copy_from_slice(&256u16.to_le_bytes());
        b[0x14] = 0;
        b[0x18] = 2;
        b[0x64] = RO_COMPAT_SPARSE_SUPER as u8;
        let sb = Superblock::parse(&b).unwrap();
        let with: Vec<u64> = (0..50).filter(|&g| sb.group_has_super(g)).collect();
        assert_eq!(with, vec![0, 1, 3, 5, 7, 9, 25, 27, 49]);
        assert_eq!(sb.version(), ExtVersion::Ext2);
    }

    fn probe_image(compat: u32, incompat: u32, ro_compat: u32, label: &[u8]) -> Vec<u8> {
        let mut img = vec![0u8; 4096];
        let b = &mut img[1024..2048];
        b[0x38..0x3A].copy_from_slice(&MAGIC.to_le_bytes());
        b[0x5C..0x60].copy_from_slice(&compat.to_le_bytes());
        b[0x60..0x64].copy_from_slice(&incompat.to_le_bytes());
        b[0x64..0x68].copy_from_slice(&ro_compat.to_le_bytes());
        b[0x68..0x78].copy_from_slice(b"0123456789abcdef");
        b[0x78..0x78 + label.len()].copy_from_slice(label);
        img
    }

    fn probe_of(img: Vec<u8>) -> Option<Probe> {
        probe(&mut io::Cursor::new(img)).unwrap()
    }

    #[test]
    fn probe_names_the_version_like_blkid() {
        let ext3 = probe_of(probe_image(
            COMPAT_HAS_JOURNAL,
            INCOMPAT_FILETYPE | INCOMPAT_RECOVER,
            RO_COMPAT_SPARSE_SUPER | RO_COMPAT_LARGE_FILE,
            b"root-abc  ",
        ))
        .unwrap();
        assert_eq!(
            ext3,
            Probe {
                version: ExtVersion::Ext3,
                label: Some("root-abc".into()),
                uuid: "30313233-3435-3637-3839-616263646566".into(),
            }
        );
        let v = |c, i, r| probe_of(probe_image(c, i, r, b"")).map(|p| p.version);
        assert_eq!(v(0, INCOMPAT_FILETYPE, 0), Some(ExtVersion::Ext2));
        assert_eq!(
            v(COMPAT_HAS_JOURNAL, INCOMPAT_EXTENTS, 0),
            Some(ExtVersion::Ext4)
        );
        assert_eq!(
            v(COMPAT_HAS_JOURNAL, 0, RO_COMPAT_METADATA_CSUM),
            Some(ExtVersion::Ext4)
        );
        assert_eq!(v(0, INCOMPAT_64BIT, 0), Some(ExtVersion::Ext4));
        // Features the strict reader refuses are still identified.
        assert_eq!(
            v(0, 0x8000_0000, RO_COMPAT_BIGALLOC),
            Some(ExtVersion::Ext4)
        );
        // RECOVER without a journal: ext2 as inspect always said (blkid: nothing).
        assert_eq!(v(0, INCOMPAT_RECOVER, 0), Some(ExtVersion::Ext2));
        assert_eq!(version_of(0, INCOMPAT_RECOVER, 0), ExtVersion::Ext4);
        // An external journal is not a filesystem; no magic or a short stream is nothing.
        assert_eq!(v(0, INCOMPAT_JOURNAL_DEV, 0), None);
        let mut img = probe_image(0, 0, 0, b"x");
        img[1024 + 0x38] = 0;
        assert_eq!(probe_of(img), None);
        let mut img = probe_image(0, 0, 0, b"x");
        img.truncate(1200);
        assert_eq!(probe_of(img), None);
    }
}

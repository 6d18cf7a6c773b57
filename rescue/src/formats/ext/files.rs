//! Reading one file by path from an ext2/3/4 filesystem without mounting it: what the
//! rescue needs to recognise a host from its own files (`/etc/xensource-inventory`) when
//! its root has no label (a root made by hand with `mkfs.ext3 /dev/md0`).
//!
//! Inode → block map (ext2/3) or extent tree (ext4) → directory entries. Every number read
//! from the disk is checked before use: corrupt input is an error, never a panic, and every
//! walk is bounded (tree depth, file size).

use super::{corrupt, le16, le32, to_usize, Desc, ExtError, Superblock};
use std::io::{Read, Seek, SeekFrom};

const ROOT_INODE: u64 = 2;
const EXTENTS_FL: u32 = 0x8_0000;
const INLINE_DATA_FL: u32 = 0x1000_0000;
const S_IFMT: u16 = 0xF000;
const S_IFDIR: u16 = 0x4000;
const S_IFREG: u16 = 0x8000;
const EXTENT_MAGIC: u16 = 0xF30A;
/// ext4 trees are at most 5 levels deep.
const MAX_EXTENT_DEPTH: u16 = 5;
/// Directories larger than this are not walked (a real `/etc` is a few KiB).
const MAX_DIR_BYTES: u64 = 64 << 20;

struct Inode {
    mode: u16,
    size: u64,
    flags: u32,
    block: [u8; 60],
}

/// The contents of the regular file at `path` (absolute, `/`-separated), or `None` when a
/// component does not exist. Files larger than `max_bytes` are an error.
pub fn read_file<R: Read + Seek>(
    r: &mut R,
    path: &str,
    max_bytes: u64,
) -> Result<Option<Vec<u8>>, ExtError> {
    let sb = Superblock::read(r)?;
    let mut ino = ROOT_INODE;
    let names: Vec<&str> = path.split('/').filter(|c| !c.is_empty()).collect();
    for (i, name) in names.iter().enumerate() {
        let dir = read_inode(r, &sb, ino)?;
        if dir.mode & S_IFMT != S_IFDIR {
            return corrupt(format!("{} is not a directory", names[..i].join("/")));
        }
        match lookup(r, &sb, &dir, name.as_bytes())? {
            Some(n) => ino = n,
            None => return Ok(None),
        }
    }
    let file = read_inode(r, &sb, ino)?;
    if file.mode & S_IFMT != S_IFREG {
        return corrupt(format!("{path} is not a regular file"));
    }
    if file.size > max_bytes {
        return corrupt(format!(
            "{path} is {} bytes, more than the {max_bytes} expected",
            file.size
        ));
    }
    contents(r, &sb, &file).map(Some)
}

fn read_inode<R: Read + Seek>(r: &mut R, sb: &Superblock, n: u64) -> Result<Inode, ExtError> {
    let ipg = sb.inodes_per_group;
    if n == 0 || (n - 1) / ipg >= sb.group_count() {
        return corrupt(format!("inode {n} is out of range"));
    }
    let (g, index) = ((n - 1) / ipg, (n - 1) % ipg);
    let dpb = sb.descs_per_block();
    let desc_at = sb
        .descriptor_block(g / dpb)
        .checked_mul(sb.block_size)
        .and_then(|b| b.checked_add((g % dpb) * sb.desc_size))
        .ok_or_else(|| ExtError::Corrupt(format!("group {g}'s descriptor is out of range")))?;
    let mut d = vec![0u8; to_usize(sb.desc_size)?];
    r.seek(SeekFrom::Start(desc_at))?;
    r.read_exact(&mut d)?;
    let table = Desc::parse(&d, sb.descs_64bit()).inode_table;
    if table < sb.first_data_block || table >= sb.blocks_count {
        return corrupt(format!(
            "group {g}: inode table at block {table} is outside the filesystem"
        ));
    }
    let at = table * sb.block_size + index * sb.inode_size;
    let mut b = [0u8; 128];
    r.seek(SeekFrom::Start(at))?;
    r.read_exact(&mut b)?;
    let mut block = [0u8; 60];
    block.copy_from_slice(&b[0x28..0x64]);
    Ok(Inode {
        mode: le16(&b, 0x00),
        size: u64::from(le32(&b, 0x04)) | u64::from(le32(&b, 0x6C)) << 32,
        flags: le32(&b, 0x20),
        block,
    })
}

/// The physical block holding logical block `lblock` of `inode`, `None` for a hole (or an
/// unwritten extent, which reads as zeros).
fn physical<R: Read + Seek>(
    r: &mut R,
    sb: &Superblock,
    inode: &Inode,
    lblock: u64,
) -> Result<Option<u64>, ExtError> {
    let found = if inode.flags & EXTENTS_FL != 0 {
        extent_lookup(r, sb, &inode.block, lblock)?
    } else {
        map_lookup(r, sb, &inode.block, lblock)?
    };
    match found {
        Some(p) if p < sb.first_data_block || p >= sb.blocks_count => {
            corrupt(format!("data block {p} is outside the filesystem"))
        }
        other => Ok(other),
    }
}

fn extent_lookup<R: Read + Seek>(
    r: &mut R,
    sb: &Superblock,
    root: &[u8; 60],
    lblock: u64,
) -> Result<Option<u64>, ExtError> {
    let mut node: Vec<u8> = root.to_vec();
    let mut level_above = MAX_EXTENT_DEPTH + 1;
    loop {
        if node.len() < 12 || le16(&node, 0) != EXTENT_MAGIC {
            return corrupt("extent tree node without its magic");
        }
        let entries = usize::from(le16(&node, 2));
        let depth = le16(&node, 6);
        if depth >= level_above || 12 + 12 * entries > node.len() {
            return corrupt(format!(
                "extent tree node: depth {depth}, {entries} entries"
            ));
        }
        level_above = depth;
        let entry = |i: usize| &node[12 + 12 * i..24 + 12 * i];
        if depth == 0 {
            for i in 0..entries {
                let e = entry(i);
                let first = u64::from(le32(e, 0));
                let raw_len = u64::from(le16(e, 4));
                // Above 32768 the extent is allocated but unwritten: zeros.
                let (len, unwritten) = if raw_len > 32768 {
                    (raw_len - 32768, true)
                } else {
                    (raw_len, false)
                };
                if (first..first + len).contains(&lblock) {
                    if unwritten {
                        return Ok(None);
                    }
                    let start = u64::from(le16(e, 6)) << 32 | u64::from(le32(e, 8));
                    return Ok(Some(start + (lblock - first)));
                }
            }
            return Ok(None);
        }
        // The last index whose first block is at or before `lblock`.
        let Some(i) = (0..entries)
            .rev()
            .find(|&i| u64::from(le32(entry(i), 0)) <= lblock)
        else {
            return Ok(None);
        };
        let e = entry(i);
        let child = u64::from(le16(e, 8)) << 32 | u64::from(le32(e, 4));
        if child < sb.first_data_block || child >= sb.blocks_count {
            return corrupt(format!(
                "extent tree node at block {child} is outside the filesystem"
            ));
        }
        node = read_block(r, sb, child)?;
    }
}

fn map_lookup<R: Read + Seek>(
    r: &mut R,
    sb: &Superblock,
    blocks: &[u8; 60],
    lblock: u64,
) -> Result<Option<u64>, ExtError> {
    let per = sb.block_size / 4;
    let slot = |i: usize| u64::from(le32(blocks, 4 * i));
    // (the pointer in i_block, the levels of indirection, the index below it)
    let (top, levels, mut index) = if lblock < 12 {
        return Ok(Some(slot(to_usize(lblock)?)).filter(|&b| b != 0));
    } else if lblock < 12 + per {
        (slot(12), 1, lblock - 12)
    } else if lblock < 12 + per + per * per {
        (slot(13), 2, lblock - 12 - per)
    } else {
        (slot(14), 3, lblock - 12 - per - per * per)
    };
    let mut block = top;
    for level in (0..levels).rev() {
        if block == 0 {
            return Ok(None);
        }
        if block < sb.first_data_block || block >= sb.blocks_count {
            return corrupt(format!("indirect block {block} is outside the filesystem"));
        }
        let span = per.pow(level);
        let table = read_block(r, sb, block)?;
        block = u64::from(le32(&table, to_usize(4 * (index / span))?));
        index %= span;
    }
    Ok(Some(block).filter(|&b| b != 0))
}

fn read_block<R: Read + Seek>(r: &mut R, sb: &Superblock, n: u64) -> Result<Vec<u8>, ExtError> {
    let mut b = vec![0u8; to_usize(sb.block_size)?];
    r.seek(SeekFrom::Start(n * sb.block_size))?;
    r.read_exact(&mut b)?;
    Ok(b)
}

fn contents<R: Read + Seek>(
    r: &mut R,
    sb: &Superblock,
    inode: &Inode,
) -> Result<Vec<u8>, ExtError> {
    if inode.flags & INLINE_DATA_FL != 0 {
        return corrupt("inline data (the file lives in its inode) is not read here");
    }
    let mut out = Vec::with_capacity(to_usize(inode.size.min(1 << 20))?);
    let bs = sb.block_size;
    for lblock in 0..inode.size.div_ceil(bs) {
        let want = to_usize((inode.size - lblock * bs).min(bs))?;
        match physical(r, sb, inode, lblock)? {
            Some(p) => out.extend_from_slice(&read_block(r, sb, p)?[..want]),
            None => out.resize(out.len() + want, 0),
        }
    }
    Ok(out)
}

/// The inode of `name` in directory `dir`.
fn lookup<R: Read + Seek>(
    r: &mut R,
    sb: &Superblock,
    dir: &Inode,
    name: &[u8],
) -> Result<Option<u64>, ExtError> {
    if dir.size > MAX_DIR_BYTES {
        return corrupt(format!("a directory of {} bytes", dir.size));
    }
    let data = contents(r, sb, dir)?;
    let filetype = sb.feature_incompat & super::INCOMPAT_FILETYPE != 0;
    let bs = to_usize(sb.block_size)?;
    for block in data.chunks(bs) {
        let mut o = 0;
        while o + 8 <= block.len() {
            let ino = le32(block, o);
            let rec = usize::from(le16(block, o + 4));
            // 64 KiB blocks store a whole-block record as 0 or 65535.
            let rec = if rec == 0 || rec == 65535 {
                block.len() - o
            } else {
                rec
            };
            let len = if filetype {
                usize::from(block[o + 6])
            } else {
                usize::from(le16(block, o + 6))
            };
            if rec < 8 || o + rec > block.len() || 8 + len > rec {
                return corrupt(format!("directory entry at byte {o} with length {rec}"));
            }
            if ino != 0 && &block[o + 8..o + 8 + len] == name {
                return Ok(Some(u64::from(ino)));
            }
            o += rec;
        }
    }
    Ok(None)
}

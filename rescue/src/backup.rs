//! Offline backup and restore of a whole disk (seeds 003/004): every partition as one
//! item, its used blocks only (ext: the block bitmaps; LVM PV: metadata and allocated
//! extents; swap: the header page; anything else every byte), plus the disk's head (MBR,
//! GPT, boot code up to the first partition) and tail (backup GPT). Each item is the byte
//! range it covers with unused parts read as zeros, gzip-compressed in 1 MiB members by
//! two threads (gzip: in every rescue system and on every workstation, `gunzip`
//! restores it, and multi-member streams let the two cores share the work), split in
//! files of at most [`SPLIT_BYTES`] (FAT's 4 GiB limit). `manifest.json` gives each
//! item's offset, size and SHA-256 of the uncompressed stream; `RESTORE.sh` restores the
//! disk with `cat`, `gunzip`, `dd` and `sgdisk` alone.
//!
//! Restore checks every item against the manifest *before* writing anything, writes each
//! at its offset (a zero chunk only where the target does not already read zero, so a
//! fresh image stays sparse), moves the backup GPT to the end of a larger disk, and reads
//! every item back.

use crate::clone;
use crate::formats::extents::Extents;
use crate::formats::{gpt, Window};
use crate::inspect::Disk;
use crate::units::Bytes;
use flate2::read::MultiGzDecoder;
use flate2::write::GzEncoder;
use flate2::Compression;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::fs::File;
use std::io::{self, BufReader, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

pub const FORMAT: &str = "xenraid-backup-1";
/// Largest file of an item: FAT32 holds files up to 4 GiB − 1.
pub const SPLIT_BYTES: u64 = 2 << 30;
const CHUNK: u64 = 1 << 20;
// A file is closed before a member would take it past SPLIT_BYTES, and a member is one
// compressed CHUNK (stored blocks at worst: a little over CHUNK), so every file stays
// far below FAT's 4 GiB - 1.
const _: () = assert!(SPLIT_BYTES + 2 * CHUNK < (4 << 30) - 1);

#[derive(Debug, thiserror::Error)]
pub enum BackupError {
    #[error("{what}: {err}")]
    Io { what: String, err: io::Error },
    #[error("{0}")]
    Clone(#[from] clone::CloneError),
    #[error("{dir} is not a backup ({err}): name the directory that holds manifest.json")]
    NoManifest { dir: String, err: String },
    #[error("backup item {item} is damaged: {why}; nothing was written")]
    Damaged { item: String, why: String },
    #[error("the target ({target} bytes) is smaller than the backed-up disk ({original} bytes): use a disk at least as large")]
    TargetTooSmall { target: u64, original: u64 },
    #[error("{0} exists and is not empty: name an empty or new directory")]
    NotEmpty(PathBuf),
    #[error("after writing, item {item} reads back differently at the target: the target disk is failing")]
    ReadBack { item: String },
    #[error("GPT: {0}")]
    Gpt(#[from] gpt::GptError),
}

fn io(what: impl Into<String>) -> impl FnOnce(io::Error) -> BackupError {
    let what = what.into();
    move |err| BackupError::Io { what, err }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest {
    pub format: String,
    pub created_unix: u64,
    pub source: SourceDisk,
    pub items: Vec<Item>,
    /// The inspect report of the source disk at backup time.
    pub inspect: serde_json::Value,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SourceDisk {
    pub path: String,
    pub serial: Option<String>,
    pub size_bytes: u64,
    pub logical_sector_size: u32,
    pub table: Option<String>,
    pub disk_guid: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Item {
    /// File-name stem: `00-head`, `03-p3`, `99-tail`.
    pub name: String,
    /// For people: `partition 1 (root, ext3)`.
    pub what: String,
    pub disk_offset: u64,
    pub size_bytes: u64,
    /// Bytes read from the source (the rest of the stream is zeros).
    pub used_bytes: u64,
    pub method: String,
    /// SHA-256 of the whole uncompressed stream (`size_bytes` bytes).
    pub sha256: String,
    pub files: Vec<String>,
    pub compressed_bytes: u64,
}

/// What one item covers before it is read.
struct Planned {
    name: String,
    what: String,
    disk_offset: u64,
    size: u64,
    /// Ranges relative to `disk_offset`, sorted.
    used: Vec<(u64, u64)>,
    method: String,
}

fn plan_items<R: Read + Seek>(r: &mut R, disk: &Disk) -> Result<Vec<Planned>, BackupError> {
    let ss = u64::from(disk.logical_sector_size);
    if disk.table.is_none() {
        // A filesystem, PV or swap on the whole device (a partition or an LV given as the
        // disk): one item, planned like a partition.
        let cp = clone::plan(r, false)?;
        let used = clone_used(&cp, disk.size_bytes);
        return Ok(vec![Planned {
            name: "00-whole".into(),
            what: format!("the whole device ({})", cp.kind),
            disk_offset: 0,
            size: disk.size_bytes,
            used,
            method: cp.kind.to_string(),
        }]);
    }
    let mut parts: Vec<_> = disk.partitions.iter().collect();
    parts.sort_by_key(|p| p.start_lba);
    let first = parts.first().map_or(disk.size_bytes, |p| p.start_lba * ss);
    let last_end = parts
        .iter()
        .map(|p| p.start_lba * ss + p.size_bytes)
        .max()
        .unwrap_or(disk.size_bytes)
        .min(disk.size_bytes);
    let mut items = vec![Planned {
        name: "00-head".into(),
        what: "disk head (MBR, partition table, boot code before the first partition)".into(),
        disk_offset: 0,
        size: first,
        used: vec![(0, first)],
        method: "raw".into(),
    }];
    for p in &parts {
        let start = p.start_lba * ss;
        let mut w = Window::new(&mut *r, start, p.size_bytes);
        let cp = clone::plan(&mut w, false)?;
        let in_lvs = match cp.kind {
            clone::Kind::Lvm2Pv => pv_used(&mut w, p.size_bytes),
            _ => None,
        };
        let (used, method) = if let Some(used) = in_lvs {
            (
                used,
                "LVM2 PV (metadata, and each LV by its content)".to_string(),
            )
        } else if cp.swap.is_some() {
            (
                clone_used(&cp, p.size_bytes),
                "swap header page".to_string(),
            )
        } else {
            (
                clone_used(&cp, p.size_bytes),
                format!(
                    "{} ({})",
                    cp.kind,
                    if cp.extents.total().0 < p.size_bytes {
                        "used blocks"
                    } else {
                        "every byte"
                    }
                ),
            )
        };
        let role = p
            .role
            .as_deref()
            .map(|r| format!("{r}, "))
            .unwrap_or_default();
        items.push(Planned {
            name: format!("{:02}-p{}", items.len(), p.number),
            what: format!(
                "partition {} ({role}{})",
                p.number,
                p.fs_type.as_deref().unwrap_or("unknown")
            ),
            disk_offset: start,
            size: p.size_bytes,
            used,
            method,
        });
    }
    if last_end < disk.size_bytes {
        items.push(Planned {
            name: "99-tail".into(),
            what: "disk tail (backup GPT)".into(),
            disk_offset: last_end,
            size: disk.size_bytes - last_end,
            used: vec![(0, disk.size_bytes - last_end)],
            method: "raw".into(),
        });
    }
    Ok(items)
}

/// What a clone plan says is used in `len` bytes: the header page of swap, else its
/// extents, clipped to `len`.
fn clone_used(cp: &clone::Plan, len: u64) -> Vec<(u64, u64)> {
    if cp.swap.is_some() {
        return vec![(0, 4096.min(len))];
    }
    cp.extents
        .ranges()
        .iter()
        .map(|&(s, e)| (s.0, e.0.min(len)))
        .filter(|(s, e)| s < e)
        .collect()
}

/// A PV's used bytes (PV-relative, sorted, merged): the label and metadata before the
/// first extent, and per LV what its content uses (an ext filesystem's used blocks, or a
/// partition table with each ext partition's used blocks and everything else whole),
/// mapped through the LV's segments. An LV whose content is anything else (a VHD: the
/// LV is as large as its allocated blocks) or cannot be mapped is taken whole; `None`
/// when the VG cannot be read (the caller copies every allocated extent then).
fn pv_used<R: Read + Seek>(w: &mut R, pv_len: u64) -> Option<Vec<(u64, u64)>> {
    use crate::formats::{ext, lvm, mbr};
    let label = lvm::PvLabel::read(w).ok()?;
    let vg = lvm::read_vg(w, &label).ok()??;
    let pv = vg.pv_by_uuid(&label.pv_uuid)?.name.clone();
    let mut out = vec![(0, vg.extent_offset(&pv, 0)?)];
    for lv in &vg.lvs {
        let map = vg.lv_map(lv);
        let ext_used = |r: &mut dyn ReadSeekDyn, at: u64, len: u64| -> Vec<(u64, u64)> {
            let mut part = Window::new(r, at, len);
            match ext::used_map(&mut part) {
                Ok(m) => m
                    .extents
                    .ranges()
                    .iter()
                    .map(|&(s, e)| (at + s.0, at + e.0.min(len)))
                    .collect(),
                Err(_) => vec![(at, at + len)],
            }
        };
        let lv_ranges: Vec<(u64, u64)> = {
            let mut lr = lvm::LvReader::new(&mut *w, &map, &pv, 0, pv_len);
            if ext::used_map(&mut lr).is_ok() {
                ext_used(&mut lr, 0, map.size)
            } else if let Ok(t) = gpt::read(&mut lr, Some(512)) {
                let mut v = vec![
                    (0, (34 * 512u64).min(map.size)),
                    (map.size.saturating_sub(33 * 512), map.size),
                ];
                for p in &t.partitions {
                    let (s, e) = (p.first_lba.0 * 512, (p.last_lba.0 + 1) * 512);
                    if e <= map.size && s < e {
                        v.extend(ext_used(&mut lr, s, e - s));
                    }
                }
                v
            } else if let Some(t) = mbr::read(&mut lr, 512)
                .ok()
                .filter(|t| !t.partitions.is_empty())
            {
                let mut v = vec![(0, 512)];
                for p in &t.partitions {
                    let s = p.start_lba.0 * 512;
                    let e = s.saturating_add(p.sectors * 512).min(map.size);
                    // The MiB before each partition holds any extended boot record.
                    v.push((s.saturating_sub(1 << 20), s.min(map.size)));
                    if s < e && !matches!(p.type_byte, 0x05 | 0x0f | 0x85) {
                        v.extend(ext_used(&mut lr, s, e - s));
                    }
                }
                v
            } else {
                vec![(0, map.size)]
            }
        };
        for (s, e) in lv_ranges {
            let mut at = s;
            while at < e.min(map.size) {
                let Ok(run) = map.locate(at) else { break };
                let len = run.len.min(e - at);
                if run.pv == pv {
                    out.push((run.offset, run.offset.saturating_add(len).min(pv_len)));
                }
                at += len;
            }
        }
    }
    let merged = Extents::from_ranges(out.into_iter().map(|(s, e)| (Bytes(s), Bytes(e))).collect());
    Some(merged.ranges().iter().map(|&(s, e)| (s.0, e.0)).collect())
}

trait ReadSeekDyn: Read + Seek {}
impl<T: Read + Seek + ?Sized> ReadSeekDyn for T {}

/// The stream's chunk at `at` (relative to the item): used bytes read, the rest zeros.
fn read_chunk<R: Read + Seek>(
    r: &mut R,
    it: &Planned,
    at: u64,
    buf: &mut Vec<u8>,
) -> io::Result<u64> {
    let n = (it.size - at).min(CHUNK) as usize;
    buf.clear();
    buf.resize(n, 0);
    let end = at + n as u64;
    let mut read = 0;
    for &(s, e) in &it.used {
        let (s, e) = (s.max(at), e.min(end));
        if s >= e {
            continue;
        }
        r.seek(SeekFrom::Start(it.disk_offset + s))?;
        r.read_exact(&mut buf[(s - at) as usize..(e - at) as usize])?;
        read += e - s;
    }
    Ok(read)
}

/// Writes the item's files: gzip members of `CHUNK` bytes, compressed two at a time.
struct SplitWriter {
    dir: PathBuf,
    stem: String,
    /// [`SPLIT_BYTES`]; smaller in tests.
    limit: u64,
    files: Vec<String>,
    current: Option<File>,
    in_current: u64,
    total: u64,
}

impl SplitWriter {
    fn write_member(&mut self, member: &[u8]) -> io::Result<()> {
        if self.current.is_none() || self.in_current + member.len() as u64 > self.limit {
            let name = format!("{}.gz.{:03}", self.stem, self.files.len());
            self.current = Some(File::create(self.dir.join(&name))?);
            self.files.push(name);
            self.in_current = 0;
        }
        self.current
            .as_mut()
            .expect("opened above")
            .write_all(member)?;
        self.in_current += member.len() as u64;
        self.total += member.len() as u64;
        Ok(())
    }

    fn finish(self) -> io::Result<(Vec<String>, u64)> {
        if let Some(f) = self.current {
            f.sync_all()?;
        }
        Ok((self.files, self.total))
    }
}

fn gzip(data: &[u8]) -> io::Result<Vec<u8>> {
    let mut e = GzEncoder::new(Vec::with_capacity(data.len() / 4 + 64), Compression::fast());
    e.write_all(data)?;
    e.finish()
}

/// What a backup of a disk reads and, at most, writes: the free space it needs.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Estimate {
    pub items: usize,
    /// The items' uncompressed streams: the bytes of the disk they cover.
    pub stream_bytes: u64,
    /// Bytes read from the disk (used blocks, head, tail).
    pub used_bytes: u64,
    /// The most the backup writes. Every used byte counted as incompressible (gzip then
    /// stores it: 5 bytes per 64 KiB block, 18 per member), plus for every 1 MiB member
    /// the size of an all-zero one (the unused rest compresses at least that well, ~5
    /// KiB), a file's last cluster (64 KiB) per file of at most [`SPLIT_BYTES`], and 1
    /// MiB for manifest.json and RESTORE.sh. Used data compresses in practice; this bound
    /// is what can never run out of room.
    pub worst_case_bytes: u64,
}

/// Plans the backup of `disk` without writing: see [`Estimate`].
pub fn estimate<R: Read + Seek>(r: &mut R, disk: &Disk) -> Result<Estimate, BackupError> {
    let planned = plan_items(r, disk)?;
    let stream: u64 = planned.iter().map(|p| p.size).sum();
    let used: u64 = planned
        .iter()
        .map(|p| p.used.iter().map(|(s, e)| e - s).sum::<u64>())
        .sum();
    let members = planned.iter().map(|p| p.size.div_ceil(CHUNK)).sum::<u64>();
    let files = planned
        .iter()
        .map(|p| p.size.div_ceil(SPLIT_BYTES).max(1))
        .sum::<u64>();
    let zero_member = gzip(&vec![0u8; CHUNK as usize]).map_err(io("gzip"))?.len() as u64;
    let stored_overhead = used.div_ceil(64 << 10) * 5 + members * 18;
    let worst = used + stored_overhead + members * zero_member + files * (64 << 10) + (1 << 20);
    Ok(Estimate {
        items: planned.len(),
        stream_bytes: stream,
        used_bytes: used,
        worst_case_bytes: worst,
    })
}

/// Backs up `disk` (read through `r`) into `dir` (created if missing, must be empty).
/// `progress(done, total)` is called as bytes are read.
pub fn backup<R: Read + Seek>(
    r: &mut R,
    disk: &Disk,
    dir: &Path,
    now_unix: u64,
    mut progress: impl FnMut(u64, u64),
) -> Result<Manifest, BackupError> {
    if dir.exists()
        && std::fs::read_dir(dir)
            .map_err(io(format!("read {}", dir.display())))?
            .next()
            .is_some()
    {
        return Err(BackupError::NotEmpty(dir.to_path_buf()));
    }
    std::fs::create_dir_all(dir).map_err(io(format!("create {}", dir.display())))?;
    let planned = plan_items(r, disk)?;
    let total: u64 = planned
        .iter()
        .map(|p| p.used.iter().map(|(s, e)| e - s).sum::<u64>())
        .sum();
    let mut done = 0;
    let mut items = Vec::new();
    let zero_chunk = vec![0u8; CHUNK as usize];
    let zero_member = gzip(&zero_chunk).map_err(io("gzip"))?;
    for it in &planned {
        let mut hash = Sha256::new();
        let mut out = SplitWriter {
            dir: dir.to_path_buf(),
            stem: it.name.clone(),
            limit: SPLIT_BYTES,
            files: Vec::new(),
            current: None,
            in_current: 0,
            total: 0,
        };
        let mut at = 0;
        let mut used = 0;
        let (mut a, mut b) = (Vec::new(), Vec::new());
        while at < it.size {
            // Two chunks read, then compressed side by side.
            used += read_chunk(r, it, at, &mut a).map_err(io(format!("read {}", it.what)))?;
            at += a.len() as u64;
            b.clear();
            if at < it.size {
                used += read_chunk(r, it, at, &mut b).map_err(io(format!("read {}", it.what)))?;
                at += b.len() as u64;
            }
            hash.update(&a);
            hash.update(&b);
            // Unused space is most of a sparse disk: a zero chunk's member is made once.
            let pack = |c: &Vec<u8>| -> io::Result<Vec<u8>> {
                if c.is_empty() {
                    Ok(Vec::new())
                } else if c.len() == zero_chunk.len() && c.iter().all(|&x| x == 0) {
                    Ok(zero_member.clone())
                } else {
                    gzip(c)
                }
            };
            let (za, zb) = std::thread::scope(|s| {
                let other = s.spawn(|| pack(&b));
                (pack(&a), other.join().expect("gzip thread"))
            });
            let w = io(format!("write {}", dir.display()));
            out.write_member(&za.map_err(io("gzip"))?).map_err(w)?;
            if !b.is_empty() {
                let w = io(format!("write {}", dir.display()));
                out.write_member(&zb.map_err(io("gzip"))?).map_err(w)?;
            }
            progress(done + used, total);
        }
        done += used;
        let (files, compressed) = out
            .finish()
            .map_err(io(format!("sync {}", dir.display())))?;
        items.push(Item {
            name: it.name.clone(),
            what: it.what.clone(),
            disk_offset: it.disk_offset,
            size_bytes: it.size,
            used_bytes: used,
            method: it.method.clone(),
            sha256: format!("{:x}", hash.finalize()),
            files,
            compressed_bytes: compressed,
        });
    }
    let manifest = Manifest {
        format: FORMAT.into(),
        created_unix: now_unix,
        source: SourceDisk {
            path: disk.path.clone(),
            serial: disk.serial.clone(),
            size_bytes: disk.size_bytes,
            logical_sector_size: disk.logical_sector_size,
            table: disk.table.clone(),
            disk_guid: disk.disk_guid.clone(),
        },
        items,
        inspect: serde_json::to_value(disk).unwrap_or_default(),
    };
    let json = serde_json::to_vec_pretty(&manifest).expect("manifest serialises");
    write_synced(&dir.join("manifest.json"), &json)?;
    write_synced(
        &dir.join("RESTORE.sh"),
        restore_script(&manifest).as_bytes(),
    )?;
    Ok(manifest)
}

fn write_synced(path: &Path, data: &[u8]) -> Result<(), BackupError> {
    let mut f = File::create(path).map_err(io(format!("create {}", path.display())))?;
    f.write_all(data)
        .and_then(|_| f.sync_all())
        .map_err(io(format!("write {}", path.display())))
}

/// Commands that restore the backup with standard tools only.
pub fn restore_script(m: &Manifest) -> String {
    let mut s = String::from(
        "#!/bin/sh\n\
         # Restores this backup with standard tools only: cat, gunzip, dd, sgdisk.\n\
         # Usage: sh RESTORE.sh /dev/sdX   (a disk at least as large as the original;\n\
         # everything on it is overwritten). Check first: sh RESTORE.sh --check\n\
         set -eu\n\
         cd \"$(dirname \"$0\")\"\n\
         if [ \"${1:-}\" = --check ]; then\n",
    );
    for it in &m.items {
        s += &format!(
            "  echo \"{}  -\" > /tmp/xenraid-sum && cat {} | gunzip | sha256sum -c /tmp/xenraid-sum >/dev/null && echo \"{} ok\"\n",
            it.sha256,
            it.files.join(" "),
            it.name
        );
    }
    s += "  exit 0\nfi\nT=\"$1\"\n";
    for it in &m.items {
        s += &format!(
            "# {}: {} bytes at byte {}\ncat {} | gunzip | dd of=\"$T\" bs=1M oflag=seek_bytes seek={} conv=sparse,notrunc status=none\n",
            it.what,
            it.size_bytes,
            it.disk_offset,
            it.files.join(" "),
            it.disk_offset
        );
    }
    if m.source.table.as_deref() == Some("gpt") {
        s += "# On a larger disk the backup GPT belongs at its end.\nsgdisk -e \"$T\" >/dev/null\n";
    }
    s += "sync\necho restored\n";
    s
}

pub fn read_manifest(dir: &Path) -> Result<Manifest, BackupError> {
    let text = std::fs::read(dir.join("manifest.json")).map_err(|e| BackupError::NoManifest {
        dir: dir.display().to_string(),
        err: e.to_string(),
    })?;
    let m: Manifest = serde_json::from_slice(&text).map_err(|e| BackupError::NoManifest {
        dir: dir.display().to_string(),
        err: e.to_string(),
    })?;
    if m.format != FORMAT {
        return Err(BackupError::NoManifest {
            dir: dir.display().to_string(),
            err: format!("format {:?}, this tool reads {FORMAT}", m.format),
        });
    }
    check_layout(&m).map_err(|err| BackupError::NoManifest {
        dir: dir.display().to_string(),
        err,
    })?;
    Ok(m)
}

/// Items inside the disk, in order, not overlapping, each with its files named inside
/// the backup directory: a damaged or edited manifest must not steer a write elsewhere.
fn check_layout(m: &Manifest) -> Result<(), String> {
    let mut end = 0u64;
    for it in &m.items {
        let it_end = it
            .disk_offset
            .checked_add(it.size_bytes)
            .filter(|&e| e <= m.source.size_bytes)
            .ok_or_else(|| {
                format!(
                    "item {} lies outside the {}-byte disk",
                    it.name, m.source.size_bytes
                )
            })?;
        if it.disk_offset < end {
            return Err(format!("item {} overlaps the one before it", it.name));
        }
        end = it_end;
        if it.files.is_empty()
            || it
                .files
                .iter()
                .any(|f| f.is_empty() || f.contains('/') || f.starts_with('.'))
        {
            return Err(format!(
                "item {} names its files wrongly: {:?}",
                it.name, it.files
            ));
        }
    }
    Ok(())
}

/// The item's uncompressed stream.
fn open_item(dir: &Path, it: &Item) -> Result<impl Read, BackupError> {
    let mut files: Vec<Box<dyn Read>> = Vec::new();
    for f in &it.files {
        let file = File::open(dir.join(f)).map_err(|e| BackupError::Damaged {
            item: it.name.clone(),
            why: format!("{f}: {e}"),
        })?;
        files.push(Box::new(file));
    }
    let chained = files
        .into_iter()
        .fold(Box::new(io::empty()) as Box<dyn Read>, |acc, f| {
            Box::new(acc.chain(f))
        });
    Ok(MultiGzDecoder::new(BufReader::new(chained)))
}

/// A restore's stages, for progress.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stage {
    Verify,
    Write,
    ReadBack,
}

impl Stage {
    pub fn as_str(self) -> &'static str {
        match self {
            Stage::Verify => "verify",
            Stage::Write => "write",
            Stage::ReadBack => "read back",
        }
    }
}

/// `progress(stage, done, total)` in bytes of the uncompressed streams.
pub type Progress<'a> = &'a mut dyn FnMut(Stage, u64, u64);

/// Checks every item against the manifest: size and SHA-256 of its stream.
pub fn verify(dir: &Path) -> Result<Manifest, BackupError> {
    verify_with_progress(dir, &mut |_, _, _| {})
}

/// [`verify`], calling `progress` as streams are read.
pub fn verify_with_progress(dir: &Path, progress: Progress<'_>) -> Result<Manifest, BackupError> {
    let m = read_manifest(dir)?;
    let total: u64 = m.items.iter().map(|i| i.size_bytes).sum();
    let mut done = 0;
    let mut buf = vec![0u8; CHUNK as usize];
    for it in &m.items {
        let mut r = open_item(dir, it)?;
        let mut hash = Sha256::new();
        let mut n = 0u64;
        loop {
            let k = read_full(&mut r, &mut buf).map_err(|e| BackupError::Damaged {
                item: it.name.clone(),
                why: format!("does not decompress: {e}"),
            })?;
            if k == 0 {
                break;
            }
            hash.update(&buf[..k]);
            n += k as u64;
            progress(Stage::Verify, (done + n).min(total), total);
        }
        done += it.size_bytes;
        if n != it.size_bytes {
            return Err(BackupError::Damaged {
                item: it.name.clone(),
                why: format!("{n} bytes instead of {}", it.size_bytes),
            });
        }
        if format!("{:x}", hash.finalize()) != it.sha256 {
            return Err(BackupError::Damaged {
                item: it.name.clone(),
                why: "its SHA-256 differs from the manifest's".into(),
            });
        }
    }
    Ok(m)
}

/// What a restore did.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Restored {
    pub items: usize,
    pub bytes_written: u64,
    pub gpt_moved_to_end: bool,
}

/// Restores the backup in `dir` onto `dst` (`dst_size` bytes): verifies the whole backup
/// first (nothing is written if any item is damaged), writes, reads every item back, and
/// on a larger GPT disk moves the backup GPT to the end.
pub fn restore<D: Read + Write + Seek>(
    dir: &Path,
    dst: &mut D,
    dst_size: u64,
) -> Result<Restored, BackupError> {
    restore_with_progress(dir, dst, dst_size, &mut |_, _, _| {}, |_| Ok(()))
}

/// [`restore`], calling `progress` in each stage, and `before_read_back` once everything
/// is written (on a device: sync and drop its cached pages, so the read-back reads the
/// medium).
pub fn restore_with_progress<D: Read + Write + Seek>(
    dir: &Path,
    dst: &mut D,
    dst_size: u64,
    progress: Progress<'_>,
    before_read_back: impl FnOnce(&mut D) -> io::Result<()>,
) -> Result<Restored, BackupError> {
    let m = verify_with_progress(dir, progress)?;
    let total: u64 = m.items.iter().map(|i| i.size_bytes).sum();
    let mut done = 0;
    if dst_size < m.source.size_bytes {
        return Err(BackupError::TargetTooSmall {
            target: dst_size,
            original: m.source.size_bytes,
        });
    }
    let mut written = 0;
    let mut buf = vec![0u8; CHUNK as usize];
    let mut there = vec![0u8; CHUNK as usize];
    for it in &m.items {
        let mut r = open_item(dir, it)?;
        let mut at = 0;
        while at < it.size_bytes {
            let n = (it.size_bytes - at).min(CHUNK) as usize;
            r.read_exact(&mut buf[..n])
                .map_err(|e| BackupError::Damaged {
                    item: it.name.clone(),
                    why: e.to_string(),
                })?;
            let off = it.disk_offset + at;
            let zero = buf[..n].iter().all(|&b| b == 0);
            let skip = zero && {
                dst.seek(SeekFrom::Start(off))
                    .map_err(io("seek the target"))?;
                read_full(dst, &mut there[..n]).map_err(io("read the target"))? == n
                    && there[..n].iter().all(|&b| b == 0)
            };
            if !skip {
                dst.seek(SeekFrom::Start(off))
                    .map_err(io("seek the target"))?;
                dst.write_all(&buf[..n])
                    .map_err(io(format!("write {}", it.what)))?;
                written += n as u64;
            }
            at += n as u64;
            done += n as u64;
            progress(Stage::Write, done, total);
        }
    }
    dst.flush().map_err(io("flush the target"))?;
    before_read_back(dst).map_err(io("sync the target"))?;
    let mut done = 0;
    for it in &m.items {
        let mut hash = Sha256::new();
        let mut left = it.size_bytes;
        dst.seek(SeekFrom::Start(it.disk_offset))
            .map_err(io("seek the target"))?;
        while left > 0 {
            let n = left.min(CHUNK) as usize;
            dst.read_exact(&mut buf[..n])
                .map_err(io("read the target back"))?;
            hash.update(&buf[..n]);
            left -= n as u64;
            done += n as u64;
            progress(Stage::ReadBack, done, total);
        }
        if format!("{:x}", hash.finalize()) != it.sha256 {
            return Err(BackupError::ReadBack {
                item: it.name.clone(),
            });
        }
    }
    // Checked as written; on a larger disk the backup GPT then moves to the end (the
    // primary header changes with it), as `sgdisk -e` does.
    let mut moved = false;
    if m.source.table.as_deref() == Some("gpt") && dst_size > m.source.size_bytes {
        let t = gpt::read(dst, Some(m.source.logical_sector_size))?;
        gpt::write(dst, &t)?;
        moved = true;
    }
    Ok(Restored {
        items: m.items.len(),
        bytes_written: written,
        gpt_moved_to_end: moved,
    })
}

fn read_full<R: Read>(r: &mut R, buf: &mut [u8]) -> io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match r.read(&mut buf[n..])? {
            0 => break,
            k => n += k,
        }
    }
    Ok(n)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn manifest(items: &[(u64, u64)]) -> Manifest {
        Manifest {
            format: FORMAT.into(),
            created_unix: 0,
            source: SourceDisk {
                path: "/dev/sda".into(),
                serial: None,
                size_bytes: 1 << 20,
                logical_sector_size: 512,
                table: Some("gpt".into()),
                disk_guid: None,
            },
            items: items
                .iter()
                .enumerate()
                .map(|(i, &(o, n))| Item {
                    name: format!("{i:02}"),
                    what: String::new(),
                    disk_offset: o,
                    size_bytes: n,
                    used_bytes: 0,
                    method: "raw".into(),
                    sha256: String::new(),
                    files: vec![format!("{i:02}.gz.000")],
                    compressed_bytes: 0,
                })
                .collect(),
            inspect: serde_json::Value::Null,
        }
    }

    #[test]
    fn files_are_split_before_the_limit() {
        let dir = std::env::temp_dir().join(format!("xenraid-split-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let mut w = SplitWriter {
            dir: dir.clone(),
            stem: "01-p1".into(),
            limit: 10,
            files: Vec::new(),
            current: None,
            in_current: 0,
            total: 0,
        };
        for m in [&b"abcd"[..], b"efgh", b"ij", b"klmnopqrst", b"u"] {
            w.write_member(m).unwrap();
        }
        let (files, total) = w.finish().unwrap();
        assert_eq!(files, vec!["01-p1.gz.000", "01-p1.gz.001", "01-p1.gz.002"]);
        let sizes: Vec<u64> = files
            .iter()
            .map(|f| std::fs::metadata(dir.join(f)).unwrap().len())
            .collect();
        assert_eq!((sizes, total), (vec![10, 10, 1], 21));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_manifest_cannot_steer_a_write_outside_the_disk() {
        assert!(check_layout(&manifest(&[(0, 4096), (4096, 8192)])).is_ok());
        let outside = check_layout(&manifest(&[(0, 4096), ((1 << 20) - 10, 4096)]));
        assert!(outside.unwrap_err().contains("outside"));
        let wraps = check_layout(&manifest(&[(u64::MAX - 1, 4096)]));
        assert!(wraps.unwrap_err().contains("outside"));
        let overlap = check_layout(&manifest(&[(0, 8192), (4096, 4096)]));
        assert!(overlap.unwrap_err().contains("overlaps"));
        let mut m = manifest(&[(0, 4096)]);
        m.items[0].files = vec!["../../etc/passwd".into()];
        assert!(check_layout(&m).unwrap_err().contains("names its files"));
    }
}

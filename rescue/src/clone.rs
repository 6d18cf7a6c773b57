//! `rescue clone SRC DST [--verify]`: copy a partition or disk, moving only what is in use.
//!
//! SRC is recognised as an LVM2 PV (label, metadata areas and allocated extents), a swap
//! area (only a fresh header with the same label and UUID), an ext2/3/4 filesystem (used
//! blocks from its bitmaps), or else copied byte for byte. DST may be larger, never
//! smaller: that is checked before anything is written.

use crate::copier::{self, CopyError, CopyOptions, CopyReport, Progress};
use crate::formats::ext::{self, ExtError};
use crate::formats::extents::Extents;
use crate::formats::lvm::{self, LvmError};
use crate::formats::swap::{self, SwapError, SwapHeader};
use crate::formats::vfat;
use crate::sys::direct_io;
use crate::units::Bytes;
use serde::Serialize;
use std::fs::File;
use std::io::{Read, Seek};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// Arguments of `rescue clone`.
#[derive(clap::Args, Clone, Debug, Default)]
pub struct CloneArgs {
    /// Source device or image file.
    pub src: PathBuf,
    /// Target device or image file; must exist and be at least as large as SRC.
    pub dst: PathBuf,
    /// Read the target back and compare it with what was written.
    #[arg(long)]
    pub verify: bool,
    /// Copy every byte, whatever SRC holds.
    #[arg(long)]
    pub raw: bool,
    /// Go through the page cache instead of direct I/O.
    #[arg(long)]
    pub buffered: bool,
    /// Pieces in flight at once, each read, written (and read back) by its own worker
    /// [default: 4]. More can help a device that serves many requests in parallel.
    #[arg(long, value_parser = clap::value_parser!(u16).range(1..=64))]
    pub workers: Option<u16>,
    /// No progress line on stderr.
    #[arg(long, short)]
    pub quiet: bool,
}

/// What SRC turned out to be.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Kind {
    Ext2,
    Ext3,
    Ext4,
    Lvm2Pv,
    Swap,
    Vfat,
    Raw,
}

impl std::fmt::Display for Kind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Kind::Ext2 => "ext2",
            Kind::Ext3 => "ext3",
            Kind::Ext4 => "ext4",
            Kind::Lvm2Pv => "lvm2-pv",
            Kind::Swap => "swap",
            Kind::Vfat => "vfat",
            Kind::Raw => "raw",
        })
    }
}

/// The result of a clone, for humans (Display) and machines (serde).
#[derive(Clone, Debug, Serialize)]
pub struct CloneSummary {
    pub kind: Kind,
    /// One line on what was found (label, UUID, VG ...).
    pub detail: String,
    pub source_size: Bytes,
    /// Bytes the source's format says are in use.
    pub used_bytes: Bytes,
    /// Bytes actually written to the target.
    pub bytes_moved: Bytes,
    pub duration_secs: f64,
    /// Of `duration_secs`, reading the target back and comparing digests.
    pub verify_secs: f64,
    pub verified: bool,
    pub direct_io: bool,
    /// Why direct I/O or a used-only copy was not possible, and other warnings.
    pub notes: Vec<String>,
}

impl std::fmt::Display for CloneSummary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let rate = self.bytes_moved.0 as f64 / self.duration_secs.max(1e-9);
        write!(
            f,
            "{}: {}; used {} of {}, moved {} in {:.1} s ({}/s){}",
            self.kind,
            self.detail,
            self.used_bytes,
            self.source_size,
            self.bytes_moved,
            self.duration_secs,
            Bytes(rate as u64),
            if self.verified { ", verified" } else { "" }
        )
    }
}

#[derive(Debug, thiserror::Error)]
pub enum CloneError {
    #[error("cannot open {path}: {source}")]
    Open {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{src} and {dst} are the same file or device: give two different ones")]
    Same { src: PathBuf, dst: PathBuf },
    #[error(
        "target {dst} holds {dst_size} bytes but source {src} needs {src_size}: \
         use a target at least as large (nothing was written)"
    )]
    TargetTooSmall {
        src: PathBuf,
        dst: PathBuf,
        src_size: u64,
        dst_size: u64,
    },
    #[error("{0}")]
    Ext(#[from] ExtError),
    #[error("{0}; or copy every byte with `rescue clone --raw`")]
    Lvm(#[from] LvmError),
    #[error("{0}")]
    Swap(#[from] SwapError),
    #[error("{0}")]
    Copy(#[from] CopyError),
    #[error("reading {path} failed: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// What to do with a source.
#[derive(Clone, Debug)]
pub struct Plan {
    pub kind: Kind,
    pub detail: String,
    pub source_size: Bytes,
    /// Bytes in use according to the format.
    pub used: Bytes,
    /// Ranges to copy (empty for swap, whose header is written instead).
    pub extents: Extents,
    pub swap: Option<SwapHeader>,
    pub notes: Vec<String>,
}

/// Recognise what `r` holds and decide what to copy. `raw` forces a byte-for-byte copy.
pub fn plan<R: Read + Seek>(r: &mut R, raw: bool) -> Result<Plan, CloneError> {
    let size = Bytes(
        r.seek(std::io::SeekFrom::End(0))
            .map_err(|source| CloneError::Io {
                path: PathBuf::from("source"),
                source,
            })?,
    );
    let raw_plan = |detail: String, notes: Vec<String>| Plan {
        kind: Kind::Raw,
        detail,
        source_size: size,
        used: size,
        extents: Extents::whole(size),
        swap: None,
        notes,
    };
    if raw {
        return Ok(raw_plan("copied byte for byte (--raw)".into(), vec![]));
    }
    match lvm::plan(r) {
        Ok(p) => {
            let detail = match (&p.vg, &p.pv_name) {
                (Some(vg), Some(pv)) => format!(
                    "LVM2 PV {} ({}) of VG {} seqno {}, {} LVs",
                    pv,
                    p.label.pv_uuid,
                    vg.name,
                    vg.seqno,
                    vg.lvs.len()
                ),
                _ => format!("LVM2 PV {} in no VG", p.label.pv_uuid),
            };
            let notes = p
                .whole_reason
                .iter()
                .map(|r| format!("copying the whole PV: {r}"))
                .collect();
            return Ok(Plan {
                kind: Kind::Lvm2Pv,
                detail,
                source_size: size,
                used: p.extents.total(),
                extents: p.extents,
                swap: None,
                notes,
            });
        }
        Err(LvmError::NotLvm) => {}
        Err(e) => return Err(e.into()),
    }
    match SwapHeader::read(r) {
        Ok(h) => {
            return Ok(Plan {
                kind: Kind::Swap,
                detail: format!(
                    "swap label {:?} UUID {}, {}",
                    h.label,
                    h.uuid_string(),
                    h.size()
                ),
                source_size: size,
                used: Bytes(swap::PAGE_SIZE),
                extents: Extents::default(),
                swap: Some(h),
                notes: vec![],
            })
        }
        Err(SwapError::NotSwap) => {}
        Err(e) => return Err(e.into()),
    }
    match ext::used_map(r) {
        Ok(m) => {
            let sb = &m.superblock;
            let mut notes = vec![];
            if sb.state & 1 == 0 {
                notes.push(
                    "the filesystem was not cleanly unmounted (in use or crashed): \
                     its bitmaps may be stale; run e2fsck on the source first"
                        .to_owned(),
                );
            }
            if m.used_blocks != sb.blocks_count - sb.free_blocks_count {
                notes.push(format!(
                    "bitmaps count {} used blocks, the superblock says {}: run e2fsck on the source",
                    m.used_blocks,
                    sb.blocks_count - sb.free_blocks_count
                ));
            }
            let kind = match m.version {
                ext::ExtVersion::Ext2 => Kind::Ext2,
                ext::ExtVersion::Ext3 => Kind::Ext3,
                ext::ExtVersion::Ext4 => Kind::Ext4,
            };
            Ok(Plan {
                kind,
                detail: format!(
                    "label {:?} UUID {}, {} blocks of {} bytes",
                    sb.label,
                    sb.uuid_string(),
                    sb.blocks_count,
                    sb.block_size
                ),
                source_size: size,
                used: Bytes(m.used_blocks * sb.block_size),
                extents: m.extents,
                swap: None,
                notes,
            })
        }
        Err(ExtError::NotExt) => vfat_plan(r, size).map(|p| {
            p.unwrap_or_else(|| raw_plan("no known format: copied byte for byte".into(), vec![]))
        }),
        Err(e) => Err(e.into()),
    }
}

/// A FAT (an EFI system partition): its metadata and used clusters.
fn vfat_plan<R: Read + Seek>(r: &mut R, size: Bytes) -> Result<Option<Plan>, CloneError> {
    let io_err = |source| CloneError::Io {
        path: PathBuf::from("source"),
        source,
    };
    let Some(m) = vfat::used_map(r).map_err(io_err)? else {
        return Ok(None);
    };
    if m.extents.end() > size {
        return Err(io_err(std::io::Error::other(format!(
            "the FAT file system is larger ({}) than its partition ({size}): it is truncated; copy it with --raw",
            m.extents.end()
        ))));
    }
    Ok(Some(Plan {
        kind: Kind::Vfat,
        detail: format!(
            "FAT{}, {} clusters of {} bytes in use",
            m.fat_bits, m.used_clusters, m.cluster_bytes
        ),
        source_size: size,
        used: m.extents.total(),
        extents: m.extents,
        swap: None,
        notes: vec![],
    }))
}

fn open_plain(path: &Path, write: bool) -> Result<File, CloneError> {
    std::fs::OpenOptions::new()
        .read(true)
        .write(write)
        .open(path)
        .map_err(|source| CloneError::Open {
            path: path.to_owned(),
            source,
        })
}

/// Clone `args.src` to `args.dst`, reporting progress through `progress`.
pub fn clone_with(
    args: &CloneArgs,
    progress: &mut dyn FnMut(&Progress),
) -> Result<CloneSummary, CloneError> {
    let start = Instant::now();
    let mut probe = open_plain(&args.src, false)?;
    let dst_probe = open_plain(&args.dst, true)?;
    let io = |path: &Path| {
        let path = path.to_owned();
        move |source| CloneError::Io { path, source }
    };
    let (sm, dm) = (
        probe.metadata().map_err(io(&args.src))?,
        dst_probe.metadata().map_err(io(&args.dst))?,
    );
    let same_dev = sm.rdev() != 0 && sm.rdev() == dm.rdev();
    if (sm.dev() == dm.dev() && sm.ino() == dm.ino()) || same_dev {
        return Err(CloneError::Same {
            src: args.src.clone(),
            dst: args.dst.clone(),
        });
    }
    let plan = plan(&mut probe, args.raw)?;
    let dst_size = (&dst_probe)
        .seek(std::io::SeekFrom::End(0))
        .map_err(io(&args.dst))?;
    if dst_size < plan.source_size.0 {
        return Err(CloneError::TargetTooSmall {
            src: args.src.clone(),
            dst: args.dst.clone(),
            src_size: plan.source_size.0,
            dst_size,
        });
    }
    let mut notes = plan.notes.clone();

    // Direct I/O when both sides allow it and the (widened) ranges fit its alignment.
    let mut direct = false;
    let mut align = 1u64;
    let (mut src_file, mut dst_file) = (probe, dst_probe);
    let mut extents = plan.extents.clone();
    if args.buffered {
        notes.push("direct I/O off (--buffered)".into());
    } else {
        let s = direct_io::open(&args.src, false).map_err(|source| CloneError::Open {
            path: args.src.clone(),
            source,
        })?;
        let d = direct_io::open(&args.dst, true).map_err(|source| CloneError::Open {
            path: args.dst.clone(),
            source,
        })?;
        let a = s.align.max(d.align);
        let widened = extents.align_out(a, plan.source_size);
        if let Some(r) = s.fallback_reason.or(d.fallback_reason) {
            notes.push(format!("buffered I/O: {r}"));
        } else if !widened.is_aligned(a) {
            notes.push(format!(
                "buffered I/O: the source size is not a multiple of {a} bytes"
            ));
        } else {
            (src_file, dst_file, extents, align, direct) = (s.file, d.file, widened, a, true);
        }
    }

    let defaults = CopyOptions::default();
    let opts = CopyOptions {
        align: align as usize,
        verify: args.verify,
        target_uncached: direct,
        workers: args.workers.map_or(defaults.workers, usize::from),
        ..defaults
    };
    let report = if let Some(h) = &plan.swap {
        write_swap_header(h, &dst_file, &opts)?
    } else {
        copier::copy(&src_file, &dst_file, &extents, Bytes(0), &opts, progress)?
    };
    Ok(CloneSummary {
        kind: plan.kind,
        detail: plan.detail,
        source_size: plan.source_size,
        used_bytes: plan.used,
        bytes_moved: report.bytes,
        duration_secs: start.elapsed().as_secs_f64(),
        verify_secs: report.verify_duration.as_secs_f64(),
        verified: report.verified,
        direct_io: direct,
        notes,
    })
}

fn write_swap_header(
    h: &SwapHeader,
    dst: &File,
    opts: &CopyOptions,
) -> Result<CopyReport, CloneError> {
    let page = h.to_page()?;
    let ext = Extents::whole(Bytes(page.len() as u64));
    let src = copier::MemDisk::new(page);
    Ok(copier::copy(&src, dst, &ext, Bytes(0), opts, &mut |_| {})?)
}

/// The CLI edge: print what was found, a progress line, and the summary.
pub fn run(args: &CloneArgs) -> anyhow::Result<CloneSummary> {
    let mut last = Instant::now() - Duration::from_secs(2);
    let quiet = args.quiet;
    let mut progress = |p: &Progress| {
        if quiet || (last.elapsed() < Duration::from_secs(1) && p.done != p.total) {
            return;
        }
        last = Instant::now();
        let eta = p.eta.map_or("?".into(), |d| format!("{} s", d.as_secs()));
        eprint!(
            "\r{} of {} at {}/s, ETA {eta}   ",
            p.done,
            p.total,
            Bytes(p.rate as u64)
        );
        if p.done == p.total {
            eprintln!();
        }
    };
    let summary = clone_with(args, &mut progress).map_err(|e| {
        anyhow::anyhow!(
            "clone {} -> {}: {e}",
            args.src.display(),
            args.dst.display()
        )
    })?;
    for n in &summary.notes {
        println!("note: {n}");
    }
    println!("{summary}");
    Ok(summary)
}

//! `rescue extract`: one LV, or one partition inside an LV, out of a disk image or device
//! into a sparse file, with no LVM running (seed 003 does this by hand with offsets). The
//! LV is read through its segment map, so a VM disk spread over several runs of extents
//! comes out whole. An ext filesystem gives its used blocks only; anything else is copied
//! whole, with all-zero blocks left as holes. The PV may be a partition, a whole disk, or
//! the data area of an md RAID1 member (a converted host's SR).

use crate::formats::{ext, lvm, Window};
use crate::inspect::{self, Content, Disk, LvContent, VolumeGroup};
use serde::Serialize;
use std::fs::{File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum ExtractError {
    #[error("{0}")]
    Inspect(#[from] inspect::InspectError),
    #[error("{what}: {err}")]
    Io { what: String, err: io::Error },
    #[error("no LV {wanted:?} on {disk}: it holds {have}")]
    NoSuchLv {
        wanted: String,
        disk: String,
        have: String,
    },
    #[error("LV {wanted:?} is in several VGs on {disk} ({vgs}): name it as VG/LV")]
    AmbiguousLv {
        wanted: String,
        disk: String,
        vgs: String,
    },
    #[error(
        "LV {0} lies partly on another PV: attach that disk too, or extract it where LVM runs"
    )]
    OnAnotherPv(String),
    #[error("LV {lv} has no partition {number}: its content is {have}")]
    NoSuchPartition {
        lv: String,
        number: u32,
        have: String,
    },
    #[error("{0} exists: remove it or name another output file")]
    OutputExists(PathBuf),
    #[error("VG metadata of {0} could not be read again: {1}")]
    Metadata(String, String),
}

/// What to extract.
#[derive(Clone, Debug)]
pub struct Request {
    pub disk: PathBuf,
    /// `LV` or `VG/LV`.
    pub lv: String,
    /// A partition of the partition table inside the LV.
    pub partition: Option<u32>,
    pub out: PathBuf,
}

/// What was written.
#[derive(Clone, Debug, Serialize)]
pub struct Extracted {
    /// `VG/LV` or `VG/LV/pN`.
    pub what: String,
    pub size_bytes: u64,
    /// Bytes read and written (the rest of the file is holes).
    pub written_bytes: u64,
    /// `ext used blocks` or `whole, zero blocks as holes`.
    pub method: String,
    /// Where the extracted bytes start in the LV.
    pub lv_offset: u64,
}

/// A PV found on the disk: where it lies and its VG as inspect read it.
struct FoundPv<'d> {
    start: u64,
    len: u64,
    vg: &'d VolumeGroup,
}

fn pvs(disk: &Disk) -> Vec<FoundPv<'_>> {
    fn pv_in(content: Option<&Content>, start: u64, len: u64) -> Option<FoundPv<'_>> {
        match content {
            Some(Content::LvmPv { vg: Some(vg), .. }) => Some(FoundPv { start, len, vg }),
            _ => None,
        }
    }
    let ss = u64::from(disk.logical_sector_size);
    let mut out = Vec::new();
    for p in &disk.partitions {
        let start = p.start_lba.saturating_mul(ss);
        out.extend(pv_in(p.content.as_ref(), start, p.size_bytes));
        if let Some(Content::MdMember { data_offset, .. }) = &p.content {
            out.extend(pv_in(
                p.inner.as_ref(),
                start.saturating_add(*data_offset),
                p.size_bytes.saturating_sub(*data_offset),
            ));
        }
    }
    out.extend(pv_in(disk.whole_disk.as_ref(), 0, disk.size_bytes));
    out
}

/// Extracts what `req` names; writes nothing but `req.out`, which must not exist.
pub fn extract(req: &Request) -> Result<Extracted, ExtractError> {
    let disk = inspect::inspect_path(&req.disk)?;
    let (vg_name, lv_name) = match req.lv.split_once('/') {
        Some((vg, lv)) => (Some(vg), lv),
        None => (None, req.lv.as_str()),
    };
    let found = pvs(&disk);
    let matches: Vec<&FoundPv<'_>> = found
        .iter()
        .filter(|pv| vg_name.is_none_or(|v| pv.vg.name == v))
        .filter(|pv| pv.vg.lvs.iter().any(|l| l.name == lv_name))
        .collect();
    let pv = match matches.as_slice() {
        [one] => *one,
        [] => {
            let have: Vec<String> = found
                .iter()
                .flat_map(|pv| {
                    pv.vg
                        .lvs
                        .iter()
                        .map(|l| format!("{}/{}", pv.vg.name, l.name))
                })
                .collect();
            return Err(ExtractError::NoSuchLv {
                wanted: req.lv.clone(),
                disk: disk.path.clone(),
                have: if have.is_empty() {
                    "no LVs".into()
                } else {
                    have.join(", ")
                },
            });
        }
        several => {
            return Err(ExtractError::AmbiguousLv {
                wanted: req.lv.clone(),
                disk: disk.path.clone(),
                vgs: several
                    .iter()
                    .map(|p| p.vg.name.as_str())
                    .collect::<Vec<_>>()
                    .join(", "),
            })
        }
    };
    let lv_report = pv
        .vg
        .lvs
        .iter()
        .find(|l| l.name == lv_name)
        .expect("matched above");
    let full = format!("{}/{}", pv.vg.name, lv_report.name);
    let this_pv = pv.vg.pv_name.clone();
    if lv_report
        .segments
        .iter()
        .flat_map(|s| &s.stripes)
        .any(|s| Some(&s.pv) != this_pv.as_ref())
    {
        return Err(ExtractError::OnAnotherPv(full));
    }
    let (lv_offset, size, what) = match req.partition {
        None => (0, lv_report.size_bytes, full.clone()),
        Some(n) => match &lv_report.content {
            LvContent::PartitionTable { partitions, .. } => {
                let p = partitions.iter().find(|p| p.number == n).ok_or_else(|| {
                    ExtractError::NoSuchPartition {
                        lv: full.clone(),
                        number: n,
                        have: format!(
                            "a partition table with partitions {}",
                            partitions
                                .iter()
                                .map(|p| p.number.to_string())
                                .collect::<Vec<_>>()
                                .join(", ")
                        ),
                    }
                })?;
                (p.lv_offset, p.size_bytes, format!("{full}/p{n}"))
            }
            other => {
                return Err(ExtractError::NoSuchPartition {
                    lv: full.clone(),
                    number: n,
                    have: describe(other),
                })
            }
        },
    };
    if req.out.exists() {
        return Err(ExtractError::OutputExists(req.out.clone()));
    }

    let io_err = |what: String| move |err: io::Error| ExtractError::Io { what, err };
    let mut f = File::open(&req.disk).map_err(io_err(format!("open {}", req.disk.display())))?;
    // The LV map comes from the metadata itself: the report keeps no extent map.
    let vg = {
        let mut w = Window::new(&mut f, pv.start, pv.len);
        let label = lvm::PvLabel::read(&mut w)
            .map_err(|e| ExtractError::Metadata(full.clone(), e.to_string()))?;
        lvm::read_vg(&mut w, &label)
            .map_err(|e| ExtractError::Metadata(full.clone(), e.to_string()))?
            .ok_or_else(|| ExtractError::Metadata(full.clone(), "the PV is in no VG".into()))?
    };
    let lv = vg
        .lvs
        .iter()
        .find(|l| l.name == lv_report.name)
        .ok_or_else(|| ExtractError::Metadata(full.clone(), "the LV is gone".into()))?;
    let map = vg.lv_map(lv);
    let pv_name = this_pv.ok_or_else(|| {
        ExtractError::Metadata(full.clone(), "the metadata does not list this PV".into())
    })?;
    let reader = lvm::LvReader::new(&mut f, &map, &pv_name, pv.start, pv.len);
    let mut src = Window::new(reader, lv_offset, size);

    let (ranges, method) = match ext::used_map(&mut src) {
        Ok(m) => (
            m.extents
                .ranges()
                .iter()
                .map(|&(s, e)| (s.0, e.0.min(size)))
                .collect::<Vec<_>>(),
            "ext used blocks",
        ),
        Err(_) => (vec![(0, size)], "whole, zero blocks as holes"),
    };
    let mut out = OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&req.out)
        .map_err(io_err(format!("create {}", req.out.display())))?;
    out.set_len(size)
        .map_err(io_err(format!("size {}", req.out.display())))?;
    let written = copy_ranges(&mut src, &mut out, &ranges)
        .map_err(io_err(format!("copy {what} to {}", req.out.display())))?;
    out.sync_all()
        .map_err(io_err(format!("sync {}", req.out.display())))?;
    Ok(Extracted {
        what,
        size_bytes: size,
        written_bytes: written,
        method: method.into(),
        lv_offset,
    })
}

fn describe(c: &LvContent) -> String {
    match c {
        LvContent::PartitionTable { .. } => "a partition table".into(),
        LvContent::Filesystem { content } => format!("a filesystem directly ({content:?})"),
        LvContent::Vhd(_) => "a VHD".into(),
        LvContent::Unknown => "unknown".into(),
    }
}

/// Copies `[start, end)` ranges from `src` to the same offsets in `dst`, leaving all-zero
/// chunks unwritten (holes in a fresh file). Returns the bytes written.
pub fn copy_ranges<R: Read + Seek, W: Write + Seek>(
    src: &mut R,
    dst: &mut W,
    ranges: &[(u64, u64)],
) -> io::Result<u64> {
    const CHUNK: u64 = 1 << 20;
    let mut buf = vec![0u8; CHUNK as usize];
    let mut written = 0;
    for &(start, end) in ranges {
        let mut at = start;
        while at < end {
            let n = (end - at).min(CHUNK) as usize;
            src.seek(SeekFrom::Start(at))?;
            src.read_exact(&mut buf[..n])?;
            if buf[..n].iter().any(|&b| b != 0) {
                dst.seek(SeekFrom::Start(at))?;
                dst.write_all(&buf[..n])?;
                written += n as u64;
            }
            at += n as u64;
        }
    }
    Ok(written)
}

/// Human lines for the CLI.
pub fn human_lines(e: &Extracted, out: &Path) -> Vec<String> {
    vec![format!(
        "extract: {} ({} bytes, from byte {} of the LV) to {}: {} bytes written ({})",
        e.what,
        e.size_bytes,
        e.lv_offset,
        out.display(),
        e.written_bytes,
        e.method
    )]
}

#[cfg(test)]
mod tests {
    use super::copy_ranges;
    use std::io::Cursor;

    #[test]
    fn copies_ranges_and_skips_zero_chunks() {
        let mut src = vec![0u8; 3 << 20];
        src[10] = 1;
        src[(2 << 20) + 5] = 2;
        let mut dst = Cursor::new(vec![0xAAu8; 3 << 20]);
        let n = copy_ranges(
            &mut Cursor::new(&src),
            &mut dst,
            &[(0, 1 << 20), (1 << 20, 3 << 20)],
        )
        .unwrap();
        // The zero middle MiB is not written: it keeps the destination's bytes.
        assert_eq!(n, 2 << 20);
        let d = dst.into_inner();
        assert_eq!(d[10], 1);
        assert_eq!(d[(2 << 20) + 5], 2);
        assert_eq!(d[(1 << 20) + 7], 0xAA);
    }
}

//! Inside an LVM PV: its VG, each LV's size and segments, and what each LV holds, read
//! through the LV's segment map: a partition table (a VM's disk) with where each partition
//! starts in the LV and on the disk, a filesystem, a VHD, or unknown.

use super::{read_table, Content, Level};
use crate::formats::{gpt, lvm, vhd, Window};
use crate::units::Bytes;
use serde::{Deserialize, Serialize};
use std::io::{self, Read, Seek};

/// What an LV is read through. `dyn`, because what an LV holds is probed by the same code
/// that found its PV: generic all the way, that would instantiate without end.
trait ReadSeek: Read + Seek {}
impl<T: Read + Seek + ?Sized> ReadSeek for T {}

/// A PV's volume group, as the newest metadata on that PV describes it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct VolumeGroup {
    pub name: String,
    pub uuid: String,
    pub seqno: u64,
    pub extent_size_bytes: u64,
    /// PVs in the VG. LVs on the others are listed; only what lies on this disk is read.
    pub pv_count: usize,
    /// This PV's name in the metadata (`pv0`); `None` when the metadata does not list it.
    pub pv_name: Option<String>,
    /// Byte offset on the disk of this PV's first extent.
    pub pe_start_offset: Option<u64>,
    pub lvs: Vec<LogicalVolume>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LogicalVolume {
    pub name: String,
    pub uuid: String,
    pub size_bytes: u64,
    pub segments: Vec<LvSegment>,
    pub content: LvContent,
    /// Why the content could not be read, or only in part.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub problems: Vec<String>,
}

/// Logical extents `start_extent..+extent_count` of an LV and the physical extents
/// holding them.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LvSegment {
    pub start_extent: u64,
    pub extent_count: u64,
    /// `striped` (a linear segment is one stripe); other types are listed, not mapped.
    #[serde(rename = "type")]
    pub kind: String,
    pub stripes: Vec<LvStripe>,
}

/// Physical extents `first_pe..+pe_count` of PV `pv`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LvStripe {
    pub pv: String,
    pub first_pe: u64,
    pub pe_count: u64,
    /// Byte offset of `first_pe` on this disk; `None` when the PV is another disk.
    pub disk_offset: Option<u64>,
}

/// What an LV holds, from its first sectors (and its last, for a fixed VHD's footer).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum LvContent {
    /// A VM's disk: a GPT or MBR and its partitions.
    PartitionTable {
        table: String,
        disk_guid: Option<String>,
        sector_size: u32,
        partitions: Vec<LvPartition>,
    },
    /// A filesystem, swap, md member or PV directly on the LV.
    Filesystem {
        content: Content,
    },
    Vhd(Vhd),
    Unknown,
}

/// A partition of a partition table inside an LV, with where it starts.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LvPartition {
    pub number: u32,
    /// In the inner table's sectors (`sector_size` of the table).
    pub start_lba: u64,
    pub size_bytes: u64,
    pub type_guid: Option<String>,
    pub mbr_type: Option<u8>,
    pub name: Option<String>,
    pub fs_type: Option<String>,
    pub label: Option<String>,
    pub uuid: Option<String>,
    pub content: Option<Content>,
    /// Bytes from the LV's start: `mount -o loop,offset=` on the LV's device.
    pub lv_offset: u64,
    /// Bytes from the disk's start, when the whole partition is one run on this disk:
    /// `mount -o loop,offset=,sizelimit=` on the disk itself, with no LVM running.
    pub disk_offset: Option<u64>,
}

/// A VHD in an LV (XenServer's `VHD-<uuid>` volumes).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Vhd {
    /// `dynamic`, `differencing`, `fixed` (or `type N`).
    pub disk_type: String,
    /// The size the VM sees.
    pub virtual_size_bytes: u64,
    pub uuid: String,
    /// Where the footer (`conectix`) that was read lies in the LV: 0 for the copy dynamic
    /// disks keep, else the LV's last sector.
    pub footer_offset: u64,
    /// The dynamic disk header (`cxsparse`): its block size when it was found.
    pub block_size: Option<u32>,
    pub parent_uuid: Option<String>,
    pub parent_name: Option<String>,
    /// Footer checksum, and the header's when there is one.
    pub checksums_ok: bool,
}

impl From<&vhd::Vhd> for Vhd {
    fn from(v: &vhd::Vhd) -> Self {
        let h = v.header.as_ref();
        Vhd {
            disk_type: v.footer.type_name(),
            virtual_size_bytes: v.footer.current_size,
            uuid: v.footer.uuid.clone(),
            footer_offset: v.footer_at,
            block_size: h.map(|h| h.block_size),
            parent_uuid: h.and_then(|h| h.parent_uuid.clone()),
            parent_name: h.and_then(|h| h.parent_name.clone()),
            checksums_ok: v.footer.checksum_ok && h.is_none_or(|h| h.checksum_ok),
        }
    }
}

/// The VG of the PV at `pv_start..+pv_len` in `r` (a disk), with every LV. Never fails:
/// what cannot be read is a problem in words, so one damaged VG leaves the disk's report.
pub(super) fn volume_group<R: Read + Seek>(
    r: &mut R,
    pv_start: u64,
    pv_len: u64,
) -> (Option<VolumeGroup>, Vec<String>) {
    let mut w = Window::new(&mut *r, pv_start, pv_len);
    let read = lvm::PvLabel::read(&mut w).and_then(|l| Ok((lvm::read_vg(&mut w, &l)?, l)));
    let (vg, label) = match read {
        Ok((Some(vg), label)) => (vg, label),
        // A PV in no VG.
        Ok((None, _)) => return (None, Vec::new()),
        Err(e) => return (None, vec![format!("VG metadata not read: {e}")]),
    };
    let r: &mut dyn ReadSeek = r;
    let mut problems = Vec::new();
    let this = vg.pv_by_uuid(&label.pv_uuid).map(|p| p.name.clone());
    if this.is_none() {
        problems.push(format!(
            "VG {} metadata does not list this PV ({}): LVs are listed, not read",
            vg.name,
            lvm::format_uuid(&label.pv_uuid)
        ));
    }
    let on_disk = |pv: &str, pe: u64| {
        this.as_deref()
            .filter(|t| *t == pv)
            .and_then(|_| vg.extent_offset(pv, pe))
            .and_then(|o| pv_start.checked_add(o))
    };
    let mut lvs = Vec::new();
    for lv in &vg.lvs {
        let map = vg.lv_map(lv);
        let segments = lv
            .segments
            .iter()
            .map(|seg| LvSegment {
                start_extent: seg.start_extent,
                extent_count: seg.extent_count,
                kind: seg.kind.clone(),
                stripes: seg
                    .stripes
                    .iter()
                    .map(|(pv, first)| LvStripe {
                        pv: pv.clone(),
                        first_pe: *first,
                        pe_count: seg.extent_count / seg.stripes.len() as u64,
                        disk_offset: on_disk(pv, *first),
                    })
                    .collect(),
            })
            .collect::<Vec<_>>();
        let elsewhere = segments
            .iter()
            .flat_map(|s| &s.stripes)
            .any(|s| Some(&s.pv) != this.as_ref());
        let (content, mut lv_problems) = match &this {
            None => (LvContent::Unknown, Vec::new()),
            Some(pv) => {
                let mut lr = lvm::LvReader::new(&mut *r, &map, pv, pv_start, pv_len);
                let disk_offset = |at: u64, len: u64| {
                    let run = map.contiguous(at, len).filter(|run| run.pv == *pv)?;
                    let end = run.offset.checked_add(len)?;
                    (end <= pv_len).then_some(())?;
                    pv_start.checked_add(run.offset)
                };
                lv_content(&mut lr, map.size, disk_offset)
                    .unwrap_or_else(|e| (LvContent::Unknown, vec![format!("LV not read: {e}")]))
            }
        };
        if elsewhere && this.is_some() {
            lv_problems
                .push("the LV lies partly on another PV: only this disk's part was read".into());
        }
        lvs.push(LogicalVolume {
            name: lv.name.clone(),
            uuid: lv.id.clone(),
            size_bytes: map.size,
            segments,
            content,
            problems: lv_problems,
        });
    }
    let vg_report = VolumeGroup {
        name: vg.name.clone(),
        uuid: vg.id.clone(),
        seqno: vg.seqno,
        extent_size_bytes: vg.extent_bytes(),
        pv_count: vg.pvs.len(),
        pe_start_offset: this.as_deref().and_then(|pv| on_disk(pv, 0)),
        pv_name: this,
        lvs,
    };
    (Some(vg_report), problems)
}

/// What an LV read through `r` holds. `disk_offset(at, len)` says where LV bytes
/// `at..+len` lie on the disk when they are one run there.
fn lv_content(
    mut r: &mut dyn ReadSeek,
    size: u64,
    disk_offset: impl Fn(u64, u64) -> Option<u64>,
) -> io::Result<(LvContent, Vec<String>)> {
    let found = vhd::probe(&mut r)?;
    // The footer's copy in the first sector: a VHD, whatever its data resembles.
    if let Some(v) = found.as_ref().filter(|v| v.footer_at == 0) {
        return Ok((LvContent::Vhd(v.into()), Vec::new()));
    }
    let ss = match gpt::detect_sector_size(&mut r) {
        Ok(Some(4096)) => 4096,
        Err(gpt::GptError::Io(e)) => return Err(e),
        _ => 512,
    };
    let t = read_table(&mut r, Bytes(size), ss, Level::InsideLv)?;
    let content = if let Some(table) = t.table {
        let partitions = t
            .partitions
            .into_iter()
            .map(|p| {
                let lv_offset = p.start_lba.saturating_mul(u64::from(ss));
                LvPartition {
                    disk_offset: disk_offset(lv_offset, p.size_bytes),
                    lv_offset,
                    number: p.number,
                    start_lba: p.start_lba,
                    size_bytes: p.size_bytes,
                    type_guid: p.type_guid,
                    mbr_type: p.mbr_type,
                    name: p.name,
                    fs_type: p.fs_type,
                    label: p.label,
                    uuid: p.uuid,
                    content: p.content,
                }
            })
            .collect();
        LvContent::PartitionTable {
            table,
            disk_guid: t.disk_guid,
            sector_size: ss,
            partitions,
        }
    } else if let Some(content) = t.at_zero {
        LvContent::Filesystem { content }
    } else if let Some(v) = &found {
        LvContent::Vhd(v.into())
    } else {
        LvContent::Unknown
    };
    Ok((content, t.problems))
}

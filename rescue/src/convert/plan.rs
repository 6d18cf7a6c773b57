//! The conversion plan: which disk is which, the mirror's partition layout, one RAID1
//! array per data partition, and what to copy. Pure: it only looks at what `inspect`
//! and the format readers found, so every decision is testable without a disk.

use super::bootchain::{BootChain, BootChainError};
use crate::formats::gpt::{self, GptPartition, GptTable, Guid};
use crate::formats::md::{self, MetadataVersion};
use crate::inspect::Disk;
use crate::units::{Bytes, Lba, Sectors};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// What a data partition is in the XenServer layout, and so which array it becomes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ArrayRole {
    Root,
    Backup,
    Logs,
    Swap,
    Sr,
    /// The EFI system partition of a UEFI host (last: the others keep their md numbers).
    Esp,
}

impl ArrayRole {
    pub const ALL: [ArrayRole; 6] = [
        ArrayRole::Root,
        ArrayRole::Backup,
        ArrayRole::Logs,
        ArrayRole::Swap,
        ArrayRole::Sr,
        ArrayRole::Esp,
    ];

    pub fn parse(s: &str) -> Option<ArrayRole> {
        ArrayRole::ALL.into_iter().find(|r| r.as_str() == s)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            ArrayRole::Root => "root",
            ArrayRole::Backup => "backup",
            ArrayRole::Logs => "logs",
            ArrayRole::Swap => "swap",
            ArrayRole::Sr => "sr",
            ArrayRole::Esp => "esp",
        }
    }

    /// `/dev/mdN` number in the rescue (fixed per role so a resumed job finds its arrays).
    pub fn md_index(self) -> u32 {
        self as u32
    }
}

pub fn parse_metadata_version(s: &str) -> Option<MetadataVersion> {
    match s {
        "0.90" | "0.9" => Some(MetadataVersion::V0_90),
        "1.0" => Some(MetadataVersion::V1_0),
        "1.2" => Some(MetadataVersion::V1_2),
        _ => None,
    }
}

/// A disk as the plan names it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DiskRef {
    pub name: String,
    pub path: String,
    pub serial: Option<String>,
    pub size_bytes: u64,
}

impl DiskRef {
    pub fn of(d: &Disk) -> DiskRef {
        DiskRef {
            name: d.name.clone(),
            path: d.path.clone(),
            serial: d.serial.clone(),
            size_bytes: d.size_bytes,
        }
    }
}

/// One partition of the new layout (both disks end up with it).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PlannedPartition {
    pub number: u32,
    pub role: Option<String>,
    pub source_start_lba: u64,
    pub source_size_bytes: u64,
    pub start_lba: u64,
    pub size_bytes: u64,
    pub type_guid: String,
    pub name: String,
    pub attributes: u64,
    pub array: Option<ArrayRole>,
}

/// What goes into an array.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Payload {
    /// ext2/3/4: used blocks only.
    Ext {
        label: Option<String>,
        uuid: Option<String>,
    },
    /// Swap: the header re-created, keeping label and UUID.
    Swap {
        label: Option<String>,
        uuid: Option<String>,
    },
    /// LVM PV: label, metadata and allocated extents.
    LvmPv {
        pv_uuid: Option<String>,
        vg_name: Option<String>,
    },
    /// The FAT of an EFI system partition: its metadata and used clusters (the source's
    /// member is then recovered from the array, so both members end up identical, which
    /// firmware reading either one raw needs).
    Vfat {
        label: Option<String>,
        serial: Option<String>,
    },
    /// Nothing recognisable: nothing to copy (an unused backup partition).
    Empty,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PlannedArray {
    pub role: ArrayRole,
    pub partition: u32,
    /// `/dev/mdN` in the rescue.
    pub device: String,
    /// mdadm's form `xxxxxxxx:xxxxxxxx:xxxxxxxx:xxxxxxxx`.
    pub uuid: String,
    /// Superblock name, `homehost:name`.
    pub homehost: String,
    pub name: String,
    pub metadata: String,
    pub member_size_bytes: u64,
    pub data_offset_bytes: u64,
    /// What the array offers (the filesystem or PV must fit).
    pub data_size_bytes: u64,
    /// The source partition's size: what is copied must fit in `data_size_bytes`.
    pub content_size_bytes: u64,
    pub payload: Payload,
    /// Bytes the copy will move (used blocks / allocated extents / header).
    pub copy_bytes: u64,
    /// 1.x device UUIDs of the mirror's and the source's member.
    pub mirror_member_uuid: String,
    pub source_member_uuid: String,
    /// Array creation time (Unix seconds) written into both members' superblocks: mdadm
    /// only assembles members whose ctime agrees (`compare_super1`), and the kernel keeps
    /// whatever a hot-added member's superblock says.
    #[serde(default)]
    pub ctime: u64,
    /// An internal write-intent bitmap, placed as mdadm would. A journal written before
    /// bitmaps existed has none, and its members were sized and written without one.
    #[serde(default)]
    pub bitmap: bool,
}

/// Everything the conversion will do, decided before the first write.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConvertPlan {
    pub source: DiskRef,
    pub mirror: DiskRef,
    pub sector_size: u32,
    /// GPT disk GUID of the source before conversion: identifies the job on resume.
    pub source_disk_guid: String,
    pub mirror_disk_guid: String,
    /// The source gets the same layout with its own GUIDs when it is attached.
    pub source_new_disk_guid: String,
    pub partitions: Vec<PlannedPartition>,
    /// New unique GUIDs per partition number, mirror then source.
    pub mirror_partition_guids: BTreeMap<u32, String>,
    pub source_partition_guids: BTreeMap<u32, String>,
    pub protective_mbr_active: bool,
    pub arrays: Vec<PlannedArray>,
    /// Where the room md metadata takes came from.
    pub room: String,
    pub bytes_to_copy: u64,
    pub label_suffix: String,
    /// What boots the host, and so what each disk gets written to boot alone.
    #[serde(default)]
    pub boot_chain: BootChain,
    pub attach_source: bool,
    pub wait_resync: bool,
    /// Files the configuration step rewrites in the target (a copy of each is kept).
    pub files_to_change: Vec<String>,
    /// Commands run in a chroot of the new root (with the kernel versions found there).
    pub chroot_commands: Vec<String>,
    /// Source partitions whose ext journal needs recovery (a host that crashed): copied
    /// whole, and the journal replayed on the copy by the target's e2fsck. The source is
    /// never replayed.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub journal_replay: Vec<u32>,
    /// UEFI hosts: the loader and the firmware boot entries (decided in preflight).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub efi: Option<super::uefi::EfiPlan>,
}

/// Operator options that shape the plan.
#[derive(Clone, Debug, Default)]
pub struct Options {
    pub metadata: BTreeMap<ArrayRole, MetadataVersion>,
    /// Unix time the arrays are created at (fixed in tests).
    pub now: u64,
    pub attach_source: bool,
    pub wait_resync: bool,
    /// An internal write-intent bitmap on every array.
    pub bitmap: bool,
}

/// What the orchestration measured on the source, per partition number.
#[derive(Clone, Debug, Default)]
pub struct SourceFacts {
    /// Bytes the copy of that partition will move.
    pub copy_bytes: BTreeMap<u32, u64>,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum PlanError {
    #[error("{0} is not a XenServer install (no root-* partition found): name the right disk with rescue.source=")]
    NotXenServer(String),
    #[error("{0} is already converted (root is on md): nothing to do")]
    AlreadyConverted(String),
    #[error("{0} has no GPT partition table (an MBR install, as upgrades from XenServer 5.x keep): only GPT installs can be converted; convert this one by hand or reinstall it")]
    NotGpt(String),
    #[error("source and mirror are both {0}: name two different disks")]
    SameDisk(String),
    #[error(
        "the mirror {0} is not blank ({1}): wipe it yourself or allow it with rescue.wipe={2}"
    )]
    MirrorNotBlank(String, String, String),
    #[error("the mirror {0} has {1}-byte sectors but the source {2} has {3}: use a mirror with the same sector size")]
    SectorSize(String, u32, String, u32),
    #[error("the mirror {mirror} is too small: it needs {needed} more bytes ({why}); use a disk of at least {min_size} bytes")]
    TooSmall {
        mirror: String,
        needed: u64,
        why: String,
        min_size: u64,
    },
    #[error("md metadata {0} cannot hold partition {1}: {2}")]
    Md(String, u32, String),
    #[error("partition {0} has role {1} but no content the conversion understands ({2}): check the source with rescue.action=inspect")]
    UnknownContent(u32, String, String),
    #[error("the SR on partition {0} is VG {1}, which spans {2} PVs: a mirror of this disk would leave the SR on the others unmirrored; move it onto this disk first (pvmove, vgreduce) or convert by hand")]
    SrSpansDisks(u32, String, usize),
    #[error(transparent)]
    BootChain(#[from] BootChainError),
}

const MIB_SECTORS: u64 = 2048;

/// The smallest member (a whole number of MiB) whose array holds `content` bytes, with
/// room for a bitmap when one is wanted.
fn member_size_for(
    version: MetadataVersion,
    content: Bytes,
    bitmap: bool,
) -> Result<md::Geometry, String> {
    let mut size = Sectors(content.0.div_ceil(512).div_ceil(MIB_SECTORS) * MIB_SECTORS);
    for _ in 0..1024 {
        if let Ok(g) = md::geometry(version, size, bitmap) {
            if g.array_size.bytes() >= content {
                return Ok(g);
            }
        }
        size = Sectors(size.0 + MIB_SECTORS);
    }
    Err(format!(
        "no member size up to 1 GiB beyond {} bytes fits it",
        content.0
    ))
}

/// The array a source partition becomes: its inspected role, and on a UEFI host the
/// EFI system partition (inspect's `boot` with the ESP type), which firmware reads from
/// either disk. A BIOS boot partition is never an array (grub-install writes each).
pub fn array_role(p: &crate::inspect::Partition) -> Option<ArrayRole> {
    match p.role.as_deref()? {
        "boot" if p.type_guid.as_deref() == Some(gpt::types::EFI_SYSTEM) => Some(ArrayRole::Esp),
        r => ArrayRole::parse(r),
    }
}

fn role_of(p: &crate::inspect::Partition) -> Option<ArrayRole> {
    array_role(p)
}

/// Plans the conversion of `source` onto `mirror`. `new_guid` gives fresh GUIDs
/// (random in the rescue, seeded in tests).
pub fn plan(
    source: &Disk,
    source_table: &GptTable,
    mirror: &Disk,
    facts: &SourceFacts,
    opts: &Options,
    new_guid: &mut dyn FnMut() -> Guid,
) -> Result<ConvertPlan, PlanError> {
    let xs = source
        .xenserver
        .as_ref()
        .ok_or_else(|| PlanError::NotXenServer(source.path.clone()))?;
    if xs.on_md {
        return Err(PlanError::AlreadyConverted(source.path.clone()));
    }
    if source.table.as_deref() != Some("gpt") {
        return Err(PlanError::NotGpt(source.path.clone()));
    }
    if source.path == mirror.path {
        return Err(PlanError::SameDisk(source.path.clone()));
    }
    if source.logical_sector_size != mirror.logical_sector_size {
        return Err(PlanError::SectorSize(
            mirror.path.clone(),
            mirror.logical_sector_size,
            source.path.clone(),
            source.logical_sector_size,
        ));
    }
    let chain = BootChain::of(source)?;
    let ss = u64::from(source.logical_sector_size);
    let lbas_per_mib = (1 << 20) / ss;

    // Partitions in physical order, with the array each becomes.
    let mut parts: Vec<(&GptPartition, Option<&crate::inspect::Partition>)> = source_table
        .partitions
        .iter()
        .map(|gp| (gp, source.partitions.iter().find(|p| p.number == gp.number)))
        .collect();
    parts.sort_by_key(|(gp, _)| gp.first_lba);

    let mut arrays = Vec::new();
    let mut sizes: Vec<u64> = Vec::new(); // new size in LBAs, per entry of `parts`
    let mut donor: Option<usize> = None;
    let mut growth_lbas = 0u64;
    for (i, (gp, ip)) in parts.iter().enumerate() {
        let src_size = gp.size_lbas();
        let Some(role) = ip.and_then(role_of) else {
            sizes.push(src_size);
            continue;
        };
        let ip = ip.expect("role implies an inspected partition");
        let payload = match (ip.fs_type.as_deref(), role) {
            (Some("ext2" | "ext3" | "ext4"), _) => Payload::Ext {
                label: ip.label.clone(),
                uuid: ip.uuid.clone(),
            },
            (Some("swap"), _) => Payload::Swap {
                label: ip.label.clone(),
                uuid: ip.uuid.clone(),
            },
            (Some("LVM2_member"), _) => {
                if let Some(crate::inspect::Content::LvmPv { vg: Some(vg), .. }) = &ip.content {
                    if vg.pv_count > 1 {
                        return Err(PlanError::SrSpansDisks(
                            gp.number,
                            vg.name.clone(),
                            vg.pv_count,
                        ));
                    }
                }
                Payload::LvmPv {
                    pv_uuid: ip.uuid.clone(),
                    vg_name: match &ip.content {
                        Some(crate::inspect::Content::LvmPv { vg_name, .. }) => vg_name.clone(),
                        _ => None,
                    },
                }
            }
            (Some("vfat"), ArrayRole::Esp) => Payload::Vfat {
                label: ip.label.clone(),
                serial: ip.uuid.clone(),
            },
            (None, ArrayRole::Backup) => Payload::Empty,
            (other, _) => {
                return Err(PlanError::UnknownContent(
                    gp.number,
                    role.as_str().into(),
                    other.unwrap_or("nothing recognisable").into(),
                ))
            }
        };
        let version = opts
            .metadata
            .get(&role)
            .copied()
            .unwrap_or(chain.default_metadata(role));
        if role == ArrayRole::Esp && version == MetadataVersion::V1_2 {
            return Err(PlanError::Md(
                version.to_string(),
                gp.number,
                "firmware reads the ESP's FAT from the start of a member: use rescue.metadata=esp:1.0".into(),
            ));
        }
        let content = Bytes(src_size * ss);
        let geo = member_size_for(version, content, opts.bitmap)
            .map_err(|e| PlanError::Md(version.to_string(), gp.number, e))?;
        let new_lbas = geo.member_size.bytes().0.div_ceil(ss);
        if matches!(payload, Payload::Empty) && donor.is_none() {
            donor = Some(i);
        }
        growth_lbas += new_lbas - src_size;
        sizes.push(new_lbas);
        arrays.push((i, role, version, payload, content));
    }

    // Lay the partitions out in the same physical order, 1 MiB aligned, from 1 MiB on
    // (the rescue's journal lives below 1 MiB on the mirror).
    let mirror_last_usable = mirror.size_bytes / ss - 34;
    let place = |sizes: &[u64]| -> (Vec<u64>, u64) {
        let mut starts = Vec::new();
        let mut next = lbas_per_mib;
        for s in sizes {
            let start = next.div_ceil(lbas_per_mib) * lbas_per_mib;
            starts.push(start);
            next = start + s;
        }
        (starts, next.saturating_sub(1))
    };
    let (mut starts, mut last) = place(&sizes);
    let mut room = if last <= mirror_last_usable {
        format!(
            "md metadata needs {} more bytes; the mirror has room for it after the last partition",
            growth_lbas * ss
        )
    } else {
        String::new()
    };
    if last > mirror_last_usable {
        let deficit = last - mirror_last_usable;
        let needed_bytes = deficit * ss;
        match donor {
            Some(d) if sizes[d] > deficit + lbas_per_mib * 16 => {
                // An empty backup partition gives the room: round the cut to whole MiB.
                let cut = deficit.div_ceil(lbas_per_mib) * lbas_per_mib;
                sizes[d] -= cut;
                (starts, last) = place(&sizes);
                let number = parts[d].0.number;
                room = format!(
                    "md metadata needs {} more bytes than the mirror has after the source's layout; taken from the unused backup partition {number} (now {} bytes)",
                    needed_bytes,
                    sizes[d] * ss
                );
                // The donor's array shrinks with it; it holds nothing.
                if let Some(a) = arrays.iter_mut().find(|a| a.0 == d) {
                    a.4 = Bytes(0);
                }
            }
            _ => {
                // The smallest mirror that works: the donor gives up to all but 16 MiB
                // (and one LBA, the test above being strict), the rest must be disk.
                let keep = lbas_per_mib * 16 + 1;
                let donated = donor.map_or(0, |d| sizes[d].saturating_sub(keep));
                let min_size = (last + 34 - donated) * ss;
                return Err(PlanError::TooSmall {
                    mirror: mirror.path.clone(),
                    needed: min_size.saturating_sub(mirror.size_bytes),
                    why: if donated > 0 {
                        "each array needs room for its md metadata and the empty backup partition can give only part of it".into()
                    } else {
                        "each array needs room for its md metadata and the backup partition is in use or too small to give it".into()
                    },
                    min_size,
                });
            }
        }
    }
    debug_assert!(last <= mirror_last_usable);

    let mut partitions = Vec::new();
    let mut mirror_partition_guids = BTreeMap::new();
    let mut source_partition_guids = BTreeMap::new();
    for (i, (gp, ip)) in parts.iter().enumerate() {
        let array = arrays.iter().find(|a| a.0 == i).map(|a| a.1);
        partitions.push(PlannedPartition {
            number: gp.number,
            role: ip.and_then(|p| p.role.clone()),
            source_start_lba: gp.first_lba.0,
            source_size_bytes: gp.size_lbas() * ss,
            start_lba: starts[i],
            size_bytes: sizes[i] * ss,
            // The ESP keeps its type on both disks: firmware looks for the removable
            // path and the boot entries' loader on a partition of that type.
            type_guid: if array.is_some_and(|a| a != ArrayRole::Esp) {
                gpt::types::LINUX_RAID.to_string()
            } else {
                gp.type_guid.to_string()
            },
            name: gp.name.clone(),
            attributes: chain.partition_attributes(ip.and_then(role_of), gp.attributes),
            array,
        });
        mirror_partition_guids.insert(gp.number, new_guid().to_string());
        source_partition_guids.insert(gp.number, new_guid().to_string());
    }
    partitions.sort_by_key(|p| p.number);

    let mut planned = Vec::new();
    for (i, role, version, payload, content) in arrays {
        let member = Sectors(sizes[i] * ss / 512);
        let geo = md::geometry(version, member, opts.bitmap)
            .map_err(|e| PlanError::Md(version.to_string(), parts[i].0.number, e.to_string()))?;
        let number = parts[i].0.number;
        let uuid = new_guid().0;
        planned.push(PlannedArray {
            role,
            partition: number,
            device: format!("/dev/md{}", role.md_index()),
            uuid: md::format_uuid(&uuid),
            homehost: "xenserver".into(),
            name: role.as_str().into(),
            metadata: version.to_string(),
            member_size_bytes: member.bytes().0,
            data_offset_bytes: geo.data_offset.bytes().0,
            data_size_bytes: geo.array_size.bytes().0,
            content_size_bytes: content.0,
            copy_bytes: match payload {
                Payload::Empty => 0,
                _ => facts.copy_bytes.get(&number).copied().unwrap_or(content.0),
            },
            payload,
            mirror_member_uuid: md::format_uuid(&new_guid().0),
            source_member_uuid: md::format_uuid(&new_guid().0),
            ctime: opts.now,
            bitmap: opts.bitmap,
        });
    }
    planned.sort_by_key(|a| a.role);
    let bytes_to_copy = planned.iter().map(|a| a.copy_bytes).sum();

    Ok(ConvertPlan {
        source: DiskRef::of(source),
        mirror: DiskRef::of(mirror),
        sector_size: source.logical_sector_size,
        source_disk_guid: source_table.disk_guid.to_string(),
        mirror_disk_guid: new_guid().to_string(),
        source_new_disk_guid: new_guid().to_string(),
        partitions,
        mirror_partition_guids,
        source_partition_guids,
        protective_mbr_active: false,
        arrays: planned,
        room,
        bytes_to_copy,
        label_suffix: xs.label_suffix.clone(),
        boot_chain: chain,
        attach_source: opts.attach_source,
        wait_resync: opts.wait_resync,
        files_to_change: Vec::new(),
        chroot_commands: Vec::new(),
        journal_replay: Vec::new(),
        efi: None,
    })
}

impl ConvertPlan {
    /// The job's disks under the names they have in this boot. A resumed job finds its
    /// disks by the journal and GPT GUIDs; their kernel names come from probe order
    /// (AHCI ports, NVMe controllers, a USB stick) and can swap between boots. Returns a
    /// line for the console when a name changed.
    pub fn rebind_disks(&mut self, source: &Disk, mirror: &Disk) -> Option<String> {
        let line = (self.source.path != source.path || self.mirror.path != mirror.path).then(|| {
            format!(
                "convert: the disks have other names than when the job started: source {} (was {}), mirror {} (was {})",
                source.path, self.source.path, mirror.path, self.mirror.path
            )
        });
        for (r, d) in [(&mut self.source, source), (&mut self.mirror, mirror)] {
            r.name = d.name.clone();
            r.path = d.path.clone();
        }
        line
    }

    /// The root array: every plan has one (the plan is refused without a root).
    /// The EFI system partition's array (UEFI hosts only).
    pub fn esp_array(&self) -> Option<&PlannedArray> {
        self.arrays.iter().find(|a| a.role == ArrayRole::Esp)
    }

    pub fn root_array(&self) -> Result<&PlannedArray, String> {
        self.arrays
            .iter()
            .find(|a| a.role == ArrayRole::Root)
            .ok_or_else(|| "no root array in the plan".to_string())
    }

    /// The GPT for one of the two disks (`source_side` picks the source's GUIDs).
    pub fn table(&self, source_side: bool) -> Result<GptTable, String> {
        let parse = |s: &str| Guid::parse(s).ok_or_else(|| format!("bad GUID {s} in the plan"));
        let guids = if source_side {
            &self.source_partition_guids
        } else {
            &self.mirror_partition_guids
        };
        let ss = u64::from(self.sector_size);
        let mut partitions = Vec::new();
        for p in &self.partitions {
            partitions.push(GptPartition {
                number: p.number,
                first_lba: Lba(p.start_lba),
                last_lba: Lba(p.start_lba + p.size_bytes / ss - 1),
                type_guid: parse(&p.type_guid)?,
                unique_guid: parse(
                    guids
                        .get(&p.number)
                        .ok_or("partition GUID missing from the plan")?,
                )?,
                name: p.name.clone(),
                attributes: p.attributes,
            });
        }
        Ok(GptTable {
            sector_size: self.sector_size,
            disk_guid: parse(if source_side {
                &self.source_new_disk_guid
            } else {
                &self.mirror_disk_guid
            })?,
            first_usable_lba: Lba(34),
            last_usable_lba: Lba(0),
            entry_count: 128,
            partitions,
            header_source: gpt::HeaderSource::Primary,
        })
    }

    /// Lines an operator reads before anything is written.
    pub fn human_lines(&self) -> Vec<String> {
        let mut l = vec![
            format!(
                "plan: convert {} ({}) to RAID1 with mirror {} ({})",
                self.source.path,
                Bytes(self.source.size_bytes),
                self.mirror.path,
                Bytes(self.mirror.size_bytes)
            ),
            format!("plan: {}", self.room),
            format!("plan: boot chain: {}", self.boot_chain.describe()),
        ];
        for p in &self.partitions {
            l.push(format!(
                "plan: partition {:>2} {:<7} start {:>9} size {:>10} (source: start {:>9} size {}){}",
                p.number,
                p.role.as_deref().unwrap_or("-"),
                p.start_lba,
                Bytes(p.size_bytes).to_string(),
                p.source_start_lba,
                Bytes(p.source_size_bytes),
                p.array.map(|a| format!(" -> array {}", a.as_str())).unwrap_or_default()
            ));
        }
        for a in &self.arrays {
            l.push(format!(
                "plan: array {} {} metadata {} {} uuid {} on partition {}: holds {} of {}, copies {}",
                a.role.as_str(),
                a.device,
                a.metadata,
                if a.bitmap {
                    "bitmap internal"
                } else {
                    "no bitmap"
                },
                a.uuid,
                a.partition,
                Bytes(a.content_size_bytes),
                Bytes(a.data_size_bytes),
                Bytes(a.copy_bytes)
            ));
        }
        for n in &self.journal_replay {
            l.push(format!(
                "plan: partition {n} was not cleanly unmounted (its journal needs recovery): copied whole, then the target's e2fsck replays the journal on the copy; the source's journal is left as it is"
            ));
        }
        l.push(format!(
            "plan: {} to copy in all",
            Bytes(self.bytes_to_copy)
        ));
        for f in &self.files_to_change {
            l.push(format!("plan: will rewrite {f}"));
        }
        for c in &self.chroot_commands {
            l.push(format!("plan: will run in the new root: {c}"));
        }
        l.push(format!(
            "plan: then {} the source",
            if self.attach_source {
                "repartition and attach"
            } else {
                "leave untouched (rescue.attach-source=no)"
            }
        ));
        l
    }
}

//! Read-only inspection of a disk: partition table, per-partition content found by
//! signature (inside an LVM PV: its VG and LVs, `inspect/lvm.rs`), and whether the disk
//! looks like a XenServer install.
//!
//! The same code runs on image files (host CLI, tests) and on block devices (PID 1).
//! It never writes: every entry point takes `Read + Seek`.

use crate::formats::{ext, gpt, mbr, md};
use crate::units::{Bytes, Lba};
use serde::{Deserialize, Serialize};
use std::io::{self, Read, Seek, SeekFrom};
use std::path::Path;

mod lvm;
pub use lvm::{LogicalVolume, LvContent, LvPartition, LvSegment, LvStripe, Vhd, VolumeGroup};

/// One disk as reported in `RESCUE-REPORT.disks[]`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Disk {
    /// Kernel name (`sda`, `nvme0n1`) or the image file's name.
    pub name: String,
    /// `/dev/...` or the image path as given.
    pub path: String,
    pub size_bytes: u64,
    pub logical_sector_size: u32,
    pub model: Option<String>,
    pub serial: Option<String>,
    /// The kernel refuses writes to it (from sysfs; image files are writable).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub read_only: bool,
    /// `"gpt"`, `"mbr"`, or `None` when there is no partition table.
    pub table: Option<String>,
    /// GPT disk GUID (upper-case, hyphenated).
    pub disk_guid: Option<String>,
    pub partitions: Vec<Partition>,
    /// Signature found on the whole disk when it has no partition table (md member on a
    /// whole disk, a filesystem without a table, ...). With a table, only an md superblock
    /// at the disk's end outside every partition (XCP-ng's whole-disk RAID, the table
    /// lives inside the array).
    pub whole_disk: Option<Content>,
    /// For a whole-disk md member: its superblock.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub whole_disk_md: Option<MdMemberState>,
    /// True when no partition table and no known signature was found at either end.
    pub blank: bool,
    /// Set when the disk looks like a XenServer install.
    pub xenserver: Option<XenServer>,
    /// Damage found while reading (e.g. a GPT with bad CRCs), in words for the operator.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub problems: Vec<String>,
}

/// One partition in `disks[].partitions[]`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Partition {
    pub number: u32,
    pub start_lba: u64,
    pub size_bytes: u64,
    /// GPT partition type GUID (upper-case, hyphenated); `None` on MBR.
    pub type_guid: Option<String>,
    /// MBR partition type byte; `None` on GPT.
    pub mbr_type: Option<u8>,
    /// GPT partition name.
    pub name: Option<String>,
    /// GPT attribute bits (bit 2 = legacy BIOS bootable).
    pub attributes: u64,
    /// `ext2`, `ext3`, `ext4`, `swap`, `vfat`, `linux_raid_member`, `LVM2_member`, or `None`.
    pub fs_type: Option<String>,
    pub label: Option<String>,
    pub uuid: Option<String>,
    /// Details of the content beyond type/label/uuid.
    pub content: Option<Content>,
    /// Role in a XenServer layout: `root`, `backup`, `logs`, `swap`, `boot`, `sr`.
    pub role: Option<String>,
    /// For an md member: what its data area holds (the filesystem or PV inside the array,
    /// readable in place because md RAID1 does not transform data).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub inner: Option<Content>,
    /// For an md member: its superblock as `mdadm --examine` shows it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub md: Option<MdMemberState>,
}

/// An md member's superblock: what `mdadm --examine` shows of it, and what
/// [`crate::arrays`] needs to tell in-sync, stale and missing members apart.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct MdMemberState {
    /// `raid1`, `raid0`, `raid5`, ... (`mdadm --examine`'s "Raid Level").
    pub level: String,
    pub raid_disks: u32,
    pub events: u64,
    /// This member's device number (the index into the superblock's role table).
    pub dev_number: u32,
    /// `active 0`, `spare`, `faulty` ("Device Role").
    pub role: String,
    /// The slots this superblock believes active ("Array State": `AA`, `A.`).
    pub array_state: String,
    /// Active slots by device number, as this superblock recorded them (`None`: no
    /// active device with that number).
    pub active_slots: Vec<Option<u32>>,
    /// Clean at the last write (no resync needed).
    pub clean: bool,
    /// An internal write-intent bitmap.
    pub bitmap: bool,
    /// Active but still being rebuilt (a 1.x recovery offset): not in sync yet.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub recovering: bool,
    /// The superblock's update time, Unix seconds.
    pub utime: u64,
    /// Why the full superblock could not be read, when only its magic was found.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub problem: Option<String>,
}

impl MdMemberState {
    fn of(sb: &md::Superblock) -> Self {
        use md::Role;
        let role = match sb.role {
            Role::Active(slot) => format!("active {slot}"),
            Role::Spare => "spare".into(),
            Role::Faulty => "faulty".into(),
            Role::Journal => "journal".into(),
        };
        MdMemberState {
            level: match sb.level {
                -4 => "multipath".into(),
                -1 => "linear".into(),
                n => format!("raid{n}"),
            },
            raid_disks: sb.raid_disks,
            events: sb.events,
            dev_number: sb.dev_number,
            role,
            array_state: sb.array_state(),
            active_slots: sb
                .roles
                .iter()
                .map(|r| match r {
                    Some(Role::Active(s)) => Some(u32::from(*s)),
                    _ => None,
                })
                .collect(),
            clean: sb.clean,
            bitmap: sb.bitmap.is_some(),
            recovering: sb.recovering() && matches!(sb.role, Role::Active(_)),
            utime: sb.utime,
            problem: None,
        }
    }

    /// The superblock's full read failed: its magic is there, its fields are not usable.
    fn unreadable(e: &md::MdError) -> Self {
        MdMemberState {
            problem: Some(e.to_string()),
            ..Default::default()
        }
    }

    /// The member's slot when it is active.
    pub fn slot(&self) -> Option<u32> {
        self.role.strip_prefix("active ")?.parse().ok()
    }
}

/// What a signature scan found at the start (or end) of a block range.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Content {
    Ext {
        version: String,
        label: Option<String>,
        uuid: String,
    },
    Swap {
        label: Option<String>,
        uuid: Option<String>,
    },
    Vfat {
        label: Option<String>,
        serial: String,
    },
    MdMember {
        metadata: String,
        array_uuid: String,
        name: Option<String>,
        /// Where the array's data starts on this member, in bytes.
        #[serde(default)]
        data_offset: u64,
    },
    LvmPv {
        pv_uuid: String,
        vg_name: Option<String>,
        /// The VG as this PV's metadata describes it, with its LVs; only for a PV on the
        /// disk itself (not one inside an LV).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        vg: Option<Box<VolumeGroup>>,
        /// Why the VG could not be read, or parts of it.
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        problems: Vec<String>,
    },
}

/// XenServer recognition result.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct XenServer {
    /// `"7.x"` (GPT root/backup/logs/boot/swap/SR) or `"6.x"` (root/backup/SR).
    pub layout: String,
    /// The shared label suffix (`vgdorj` in `root-vgdorj`).
    pub label_suffix: String,
    /// True when a local SR partition (LVM PV) is present.
    pub has_local_sr: bool,
    /// True when root already sits on an md member (a converted host).
    #[serde(default)]
    pub on_md: bool,
    /// What root's `/etc/xensource-inventory` says, read without mounting.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub inventory: Option<Inventory>,
}

/// The identifying keys of dom0's `/etc/xensource-inventory` (quotes removed).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Inventory {
    pub product_brand: Option<String>,
    pub product_version: Option<String>,
    pub build_number: Option<String>,
    pub installation_uuid: Option<String>,
    /// `ROOT,BACKUP,LOG,BOOT,SWAP,SR` on 7.x and later.
    pub partition_layout: Option<String>,
    pub primary_disk: Option<String>,
}

impl Inventory {
    pub fn parse(text: &str) -> Inventory {
        let get = |k: &str| crate::target_root::sysconf::get_key(text, k);
        Inventory {
            product_brand: get("PRODUCT_BRAND"),
            product_version: get("PRODUCT_VERSION"),
            build_number: get("BUILD_NUMBER"),
            installation_uuid: get("INSTALLATION_UUID"),
            partition_layout: get("PARTITION_LAYOUT"),
            primary_disk: get("PRIMARY_DISK"),
        }
    }
}

/// Root's inventory file, read through the filesystem (inside the md member's data area on
/// a converted host). Unreadable or absent: `None` (recognition does not depend on it).
fn root_inventory<R: Read + Seek>(r: &mut R, disk: &Disk) -> Option<Inventory> {
    let root = disk
        .partitions
        .iter()
        .find(|p| p.role.as_deref() == Some("root"))?;
    let data_offset = match &root.content {
        Some(Content::MdMember { data_offset, .. }) => *data_offset,
        _ => 0,
    };
    let start = root.start_lba * u64::from(disk.logical_sector_size) + data_offset;
    let mut w = crate::formats::Window::new(r, start, root.size_bytes.saturating_sub(data_offset));
    let text = ext::read_file(&mut w, "/etc/xensource-inventory", 64 << 10).ok()??;
    Some(Inventory::parse(&String::from_utf8_lossy(&text)))
}

#[derive(Debug, thiserror::Error)]
pub enum InspectError {
    #[error("cannot read {path}: {source}; check that the disk or image exists and is readable")]
    Io {
        path: String,
        #[source]
        source: io::Error,
    },
    #[error("unsupported logical sector size {0}: only 512 and 4096 are supported")]
    BadSectorSize(u32),
}

fn io_err(path: &str) -> impl FnOnce(io::Error) -> InspectError + '_ {
    move |source| InspectError::Io {
        path: path.to_string(),
        source,
    }
}

/// Inspects an image file or a block device opened read-only. The sector size is 512
/// unless a GPT header sits at 4096 bytes. Model and serial stay `None`.
pub fn inspect_path(path: &Path) -> Result<Disk, InspectError> {
    let shown = path.display().to_string();
    let mut f = std::fs::File::open(path).map_err(io_err(&shown))?;
    let size = f.seek(SeekFrom::End(0)).map_err(io_err(&shown))?;
    let ss = match gpt::detect_sector_size(&mut f) {
        Ok(Some(4096)) => 4096,
        Ok(_) => 512,
        Err(gpt::GptError::Io(e)) => return Err(io_err(&shown)(e)),
        Err(_) => 512,
    };
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| shown.clone());
    inspect(&mut f, &name, &shown, Bytes(size), ss)
}

/// Inspects one disk: partition table, content of each partition, whole-disk signatures,
/// XenServer layout. Model and serial are left `None` for the caller to fill from sysfs.
pub fn inspect<R: Read + Seek>(
    r: &mut R,
    name: &str,
    path: &str,
    size: Bytes,
    logical_sector_size: u32,
) -> Result<Disk, InspectError> {
    if !matches!(logical_sector_size, 512 | 4096) {
        return Err(InspectError::BadSectorSize(logical_sector_size));
    }
    let err = io_err(path);
    let t = read_table(r, size, logical_sector_size, Level::Disk).map_err(io_err(path))?;
    let mut disk = Disk {
        name: name.to_string(),
        path: path.to_string(),
        size_bytes: size.0,
        logical_sector_size,
        table: t.table,
        disk_guid: t.disk_guid,
        partitions: t.partitions,
        problems: t.problems,
        ..Disk::default()
    };
    let ss = u64::from(logical_sector_size);
    if disk.table.is_none() {
        disk.whole_disk = t.at_zero;
        if let Some(Content::MdMember { metadata, .. }) = &disk.whole_disk {
            disk.whole_disk_md = Some(member_state(r, Bytes(0), size, metadata));
        }
    } else if let Some((offset, c)) =
        identify::md_at_end(r, Bytes(0), size).map_err(io_err(path))?
    {
        // An md superblock at the disk's end outside every partition: a whole-disk member
        // whose array holds the table (XCP-ng's own software RAID).
        let inside = |p: &Partition| {
            let s = Lba(p.start_lba).bytes(ss).0;
            offset.0 >= s && offset.0 < s + p.size_bytes
        };
        if !disk.partitions.iter().any(inside) {
            if let Content::MdMember { metadata, .. } = &c {
                disk.whole_disk_md = Some(member_state(r, Bytes(0), size, metadata));
            }
            disk.whole_disk = Some(c);
        }
    }
    if disk.table.is_none() && disk.whole_disk.is_none() && disk.problems.is_empty() {
        let mbr_sig = mbr::has_signature(r).map_err(io_err(path))?;
        let gpt_sig = gpt::detect_sector_size(r).map_err(|e| match e {
            gpt::GptError::Io(e) => err(e),
            other => err(io::Error::other(other.to_string())),
        })?;
        disk.blank = !mbr_sig && gpt_sig.is_none();
    }
    disk.xenserver = recognize_xenserver(&mut disk.partitions);
    if disk.xenserver.is_some() {
        let inventory = root_inventory(r, &disk);
        if let Some(x) = disk.xenserver.as_mut() {
            x.inventory = inventory;
        }
    }
    Ok(disk)
}

/// How deep a probe looks. A PV on the disk itself is read on into its VG and LVs; inside
/// an LV (a VM's own disk) a PV is only named, so one level of nesting is all there is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Level {
    Disk,
    InsideLv,
}

/// A block range's partition table, its partitions with their content, and the signature
/// at its start: the part of inspection a disk and an LV (a VM's disk) share.
struct TableRead {
    table: Option<String>,
    disk_guid: Option<String>,
    partitions: Vec<Partition>,
    at_zero: Option<Content>,
    problems: Vec<String>,
}

fn read_table<R: Read + Seek>(
    r: &mut R,
    size: Bytes,
    logical_sector_size: u32,
    level: Level,
) -> io::Result<TableRead> {
    let ss = u64::from(logical_sector_size);
    let mut t = TableRead {
        table: None,
        disk_guid: None,
        partitions: Vec::new(),
        at_zero: None,
        problems: Vec::new(),
    };
    match gpt::read(r, Some(logical_sector_size)) {
        Ok(g) => {
            t.table = Some("gpt".into());
            t.disk_guid = Some(g.disk_guid.to_string());
            if g.header_source == gpt::HeaderSource::Backup {
                t.problems.push(
                    "primary GPT header is damaged; read the backup header at the end of the disk"
                        .into(),
                );
            }
            for p in &g.partitions {
                t.partitions.push(Partition {
                    number: p.number,
                    start_lba: p.first_lba.0,
                    size_bytes: p.size_bytes(logical_sector_size).0,
                    type_guid: Some(p.type_guid.to_string()),
                    name: Some(p.name.clone()),
                    attributes: p.attributes,
                    ..Partition::default()
                });
            }
        }
        Err(gpt::GptError::NotFound) => {}
        // An LV that leaves this disk reads as ending there: no table readable here.
        Err(gpt::GptError::Io(e)) if short(&e, level) => {}
        Err(gpt::GptError::Io(e)) => return Err(e),
        Err(other) => t.problems.push(other.to_string()),
    }
    t.at_zero = identify::probe(r, Bytes(0), size, level)?;
    if t.table.is_none()
        && t.problems.is_empty()
        && !matches!(t.at_zero, Some(Content::Vfat { .. }))
    {
        match mbr::read(r, logical_sector_size) {
            Ok(m) if !m.is_protective() && !m.partitions.is_empty() => {
                t.table = Some("mbr".into());
                for p in m.partitions.iter().filter(|p| !p.is_extended()) {
                    t.partitions.push(Partition {
                        number: p.number,
                        start_lba: p.start_lba.0,
                        size_bytes: p.size_bytes(logical_sector_size).0,
                        mbr_type: Some(p.type_byte),
                        // Same meaning as GPT bit 2, so the report has one place to look.
                        attributes: if p.active {
                            1 << gpt::ATTR_LEGACY_BIOS_BOOTABLE
                        } else {
                            0
                        },
                        ..Partition::default()
                    });
                }
            }
            Ok(m) if m.is_protective() => {
                if t.problems.is_empty() {
                    t.problems.push("protective MBR (type 0xEE) found but no GPT header at either end: the GPT was wiped or the sector size is wrong".into());
                }
            }
            Ok(_) | Err(mbr::MbrError::NoSignature) => {}
            Err(mbr::MbrError::Io(e)) if short(&e, level) => {}
            Err(mbr::MbrError::Io(e)) => return Err(e),
        }
    }
    for p in &mut t.partitions {
        let start = Bytes(p.start_lba.saturating_mul(ss));
        p.content = identify::probe(r, start, Bytes(p.size_bytes), level)?;
        if let Some(Content::MdMember {
            data_offset,
            metadata,
            ..
        }) = &p.content
        {
            p.md = Some(member_state(r, start, Bytes(p.size_bytes), metadata));
            if *data_offset < p.size_bytes {
                let inner_size = Bytes(p.size_bytes - data_offset);
                let inner_start = Bytes(start.0.saturating_add(*data_offset));
                p.inner = identify::probe_plain(r, inner_start, inner_size, level)?;
            }
        }
        (p.fs_type, p.label, p.uuid) = summary(p.content.as_ref());
    }
    Ok(t)
}

/// A read past the end of an LV's part on this disk: no table to read there. On a disk a
/// short read stays an error.
fn short(e: &io::Error, level: Level) -> bool {
    level == Level::InsideLv && e.kind() == io::ErrorKind::UnexpectedEof
}

/// The full superblock of a member found by its magic; a damaged one says why.
fn member_state<R: Read + Seek>(
    r: &mut R,
    start: Bytes,
    size: Bytes,
    metadata: &str,
) -> MdMemberState {
    let Ok(version) = metadata.parse::<md::MetadataVersion>() else {
        return MdMemberState {
            problem: Some(format!("unknown metadata version {metadata}")),
            ..Default::default()
        };
    };
    let mut range = crate::formats::Window::new(&mut *r, start.0, size.0);
    match md::read_version(&mut range, size.sectors_floor(), version) {
        Ok(sb) => MdMemberState::of(&sb),
        Err(e) => MdMemberState::unreadable(&e),
    }
}

/// blkid's TYPE, LABEL and UUID for a content.
pub(crate) fn summary(c: Option<&Content>) -> (Option<String>, Option<String>, Option<String>) {
    match c {
        None => (None, None, None),
        Some(Content::Ext {
            version,
            label,
            uuid,
        }) => (Some(version.clone()), label.clone(), Some(uuid.clone())),
        Some(Content::Swap { label, uuid }) => (Some("swap".into()), label.clone(), uuid.clone()),
        Some(Content::Vfat { label, serial }) => {
            (Some("vfat".into()), label.clone(), Some(serial.clone()))
        }
        Some(Content::MdMember {
            array_uuid, name, ..
        }) => {
            // blkid shows the array UUID in the usual 8-4-4-4-12 form and the name as LABEL.
            let uuid = md::parse_uuid(array_uuid)
                .map(|u| ext::format_uuid(&u))
                .unwrap_or_else(|| array_uuid.clone());
            (Some("linux_raid_member".into()), name.clone(), Some(uuid))
        }
        Some(Content::LvmPv { pv_uuid, .. }) => {
            (Some("LVM2_member".into()), None, Some(pv_uuid.clone()))
        }
    }
}

/// The content that tells what a partition is for: inside the array for md members.
fn effective(p: &Partition) -> Option<&Content> {
    match &p.content {
        Some(Content::MdMember { .. }) => p.inner.as_ref(),
        other => other.as_ref(),
    }
}

fn ext_label(p: &Partition) -> Option<&str> {
    match effective(p) {
        Some(Content::Ext { label: Some(l), .. }) => Some(l),
        _ => None,
    }
}

/// Assigns roles and decides whether the partitions form a XenServer layout:
/// 7.x has a `logs-` partition (and usually swap and boot), 6.x only root + backup (+ SR).
fn recognize_xenserver(parts: &mut [Partition]) -> Option<XenServer> {
    let type_is = |p: &Partition, t: &str| p.type_guid.as_deref() == Some(t);
    let root = parts
        .iter()
        .filter(|p| ext_label(p).is_some_and(|l| l.starts_with("root-") && l.len() > 5))
        .min_by_key(|p| p.number)?
        .number;
    let root_part = parts.iter().find(|p| p.number == root)?;
    let suffix = ext_label(root_part)?["root-".len()..].to_string();
    let root_size = root_part.size_bytes;
    let root_type = root_part.type_guid.clone();
    let on_md = matches!(root_part.content, Some(Content::MdMember { .. }));
    let mut roles: Vec<(u32, &str)> = vec![(root, "root")];
    for p in parts.iter().filter(|p| p.number != root) {
        let role = match effective(p) {
            Some(Content::Ext { label: Some(l), .. }) if l.starts_with("logs-") => Some("logs"),
            Some(Content::Swap { label: Some(l), .. }) if l.starts_with("swap-") => Some("swap"),
            Some(Content::LvmPv { .. }) => Some("sr"),
            _ if type_is(p, gpt::types::BIOS_BOOT) || type_is(p, gpt::types::EFI_SYSTEM) => {
                Some("boot")
            }
            Some(Content::Vfat { label: Some(l), .. })
                if l.to_ascii_lowercase().starts_with("boot-") =>
            {
                Some("boot")
            }
            _ if type_is(p, gpt::types::LINUX_LVM) => Some("sr"),
            _ => None,
        };
        if let Some(role) = role {
            roles.push((p.number, role));
        }
    }
    // Backup: same size as root and not otherwise used; the installer puts it right after
    // root's number, so prefer the closest number. On a converted host it is an md member
    // of root's type whose size may differ: the conversion grows root's partition for its
    // md metadata and takes that room from the empty backup partition.
    let backup = parts
        .iter()
        .filter(|p| {
            let converted_backup = on_md
                && matches!(p.content, Some(Content::MdMember { .. }))
                && p.type_guid == root_type;
            (p.size_bytes == root_size || converted_backup)
                && !roles.iter().any(|(n, _)| *n == p.number)
        })
        .filter(|p| match effective(p) {
            None => true,
            Some(Content::Ext { label, .. }) => {
                label.as_deref().is_none_or(|l| l.starts_with("root-"))
            }
            Some(_) => false,
        })
        .min_by_key(|p| p.number.abs_diff(root + 1))
        .map(|p| p.number);
    if let Some(b) = backup {
        roles.push((b, "backup"));
    }
    let has = |r: &str| roles.iter().any(|(_, role)| *role == r);
    let layout = if has("logs") {
        "7.x"
    } else if has("backup") {
        "6.x"
    } else {
        return None;
    };
    for p in parts.iter_mut() {
        p.role = roles
            .iter()
            .find(|(n, _)| *n == p.number)
            .map(|(_, r)| (*r).to_string());
    }
    Some(XenServer {
        layout: layout.into(),
        label_suffix: suffix,
        has_local_sr: has("sr"),
        on_md,
        inventory: None,
    })
}

/// Which signature readers run on a block range, in which order, and how what they find
/// becomes a [`Content`]. The formats themselves are read by `crate::formats`, each over a
/// [`crate::formats::Window`] on the range.
mod identify {
    use super::{Content, Level};
    use crate::formats::md::{self, MetadataVersion};
    use crate::formats::{ext, lvm, swap, vfat, Window};
    use crate::units::Bytes;
    use std::io::{self, Read, Seek};

    /// md versions whose superblock sits at the start of a member, then at its end.
    const MD_AT_START: [MetadataVersion; 2] = [MetadataVersion::V1_1, MetadataVersion::V1_2];
    const MD_AT_END: [MetadataVersion; 2] = [MetadataVersion::V1_0, MetadataVersion::V0_90];

    /// Everything that can sit in a block range, md first: 0.90/1.0 members also show their
    /// content at offset 0 and blkid reports them as md.
    pub(super) fn probe<R: Read + Seek>(
        r: &mut R,
        start: Bytes,
        size: Bytes,
        level: Level,
    ) -> io::Result<Option<Content>> {
        let mut range = Window::new(&mut *r, start.0, size.0);
        for version in MD_AT_START {
            if let Some(m) = md::probe_version(&mut range, size.sectors_floor(), version)? {
                return Ok(Some(md_content(&m)));
            }
        }
        if let Some((_, c)) = md_at_end(r, start, size)? {
            return Ok(Some(c));
        }
        probe_plain(r, start, size, level)
    }

    /// Like [`probe`] without md (used inside an md member's data area).
    pub(super) fn probe_plain<R: Read + Seek>(
        r: &mut R,
        start: Bytes,
        size: Bytes,
        level: Level,
    ) -> io::Result<Option<Content>> {
        let mut range = Window::new(&mut *r, start.0, size.0);
        if let Some(pv) = lvm::probe(&mut range)? {
            let (vg, problems) = match level {
                Level::Disk => super::lvm::volume_group(r, start.0, size.0),
                Level::InsideLv => (None, Vec::new()),
            };
            return Ok(Some(Content::LvmPv {
                pv_uuid: pv.pv_uuid,
                vg_name: pv.vg_name,
                vg: vg.map(Box::new),
                problems,
            }));
        }
        if let Some(fs) = ext::probe(&mut range)? {
            return Ok(Some(Content::Ext {
                version: fs.version.to_string(),
                label: fs.label,
                uuid: fs.uuid,
            }));
        }
        if let Some(sw) = swap::probe(&mut range)? {
            return Ok(Some(Content::Swap {
                label: sw.label,
                uuid: sw.uuid,
            }));
        }
        Ok(vfat::probe(&mut range, 0)?.map(|v| Content::Vfat {
            label: v.label,
            serial: v.serial,
        }))
    }

    /// md 1.0 or 0.90 superblock near the end of a range; returns its absolute offset.
    pub(super) fn md_at_end<R: Read + Seek>(
        r: &mut R,
        start: Bytes,
        size: Bytes,
    ) -> io::Result<Option<(Bytes, Content)>> {
        let mut range = Window::new(r, start.0, size.0);
        for version in MD_AT_END {
            if let Some(m) = md::probe_version(&mut range, size.sectors_floor(), version)? {
                let at = Bytes(start.0 + m.super_offset.bytes().0);
                return Ok(Some((at, md_content(&m))));
            }
        }
        Ok(None)
    }

    fn md_content(m: &md::Probe) -> Content {
        Content::MdMember {
            metadata: m.version.to_string(),
            array_uuid: md::format_uuid(&m.array_uuid),
            name: m.name.clone(),
            data_offset: m.data_offset.0.saturating_mul(512),
        }
    }
}

//! Pure: which disk `rescue.action=backup` reads and where it writes, which backup
//! `restore` reads and which disk it writes, and every refusal, decided from what inspect
//! found before the first write.

use crate::backup::{Estimate, Manifest};
use crate::cmdline::{Location, Plan};
use crate::convert::select::names_disk;
use crate::formats::gpt::types;
use crate::formats::vfat::Fat32Layout;
use crate::inspect::{Content, Disk};
use crate::stick::LABEL;
use crate::units::Bytes;
use serde::{Deserialize, Serialize};

/// Every refusal, one line each: the problem and the fix.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum JobError {
    #[error("rescue.source= is required for backup: a disk name (sda), /dev path, serial:<serial> or auto")]
    NoSource,
    #[error(
        "rescue.to= is required for backup: a disk name (sdc), /dev path, serial:<serial> or stick"
    )]
    NoBackupTarget,
    #[error("rescue.to= is required for restore: the blank disk to write (sdb, /dev/sdb, serial:<serial>)")]
    NoRestoreTarget,
    #[error("rescue.from= is required for restore: the disk holding the backup (sdc, serial:<serial>) or stick, optionally :<host>/<time>")]
    NoFrom,
    #[error("{key}={sel}: no such disk; see rescue.action=inspect for the names")]
    NoSuchDisk { key: &'static str, sel: String },
    #[error("rescue.source=auto: no disk holds a XenServer install; name the disk to back up")]
    NoXenServer,
    #[error("rescue.source=auto: {0} disks hold a XenServer install ({1}); name the one to back up with rescue.source=")]
    SeveralXenServers(usize, String),
    #[error("{0} is the disk being backed up: name another disk, or stick, in rescue.to=")]
    TargetIsSource(String),
    #[error("{key}={sel} is the {LABEL} stick: write {key}=stick")]
    StickByName { key: &'static str, sel: String },
    #[error("{key}=stick: no {LABEL} stick was found; attach it or name a disk")]
    NoStick { key: &'static str },
    #[error("the {LABEL} stick is mounted read-only: remove its write protection, or name a disk in rescue.to=")]
    StickReadOnly,
    #[error("{disk} is blank: name it in rescue.wipe={sel} to format it FAT32 for the backup, or use a disk with an ext4 or FAT filesystem")]
    BlankNotWiped { disk: String, sel: String },
    #[error("{disk} holds no filesystem a backup can go into ({what}): use a disk with one ext2/3/4 or FAT filesystem, or name it in rescue.wipe={sel} to format it (everything on it is lost)")]
    NoUsableFs {
        disk: String,
        what: String,
        sel: String,
    },
    #[error("{disk} cannot be formatted for the backup: {why}")]
    CannotFormat { disk: String, why: String },
    #[error("the backup needs up to {need} and {target} has {free} free: use a larger disk, or free space on it")]
    NoRoom {
        need: Bytes,
        free: Bytes,
        target: String,
    },
    #[error("rescue.to=stick: a restore writes a whole disk, never the {LABEL} stick; name the blank disk in rescue.to=")]
    RestoreToStick,
    #[error("{0} holds the backup: restore onto another disk")]
    TargetHoldsBackup(String),
    #[error("{disk} holds no filesystem with a backup ({what}): name the disk whose ext or FAT filesystem holds it in rescue.from=")]
    NoBackupFs { disk: String, what: String },
    #[error("{disk} is not blank ({what}): name it in rescue.wipe={sel} to overwrite it, or attach a blank disk")]
    TargetNotBlank {
        disk: String,
        what: String,
        sel: String,
    },
    #[error("{disk} ({size} bytes) is smaller than the backed-up disk ({needed} bytes): use a disk at least as large")]
    TargetTooSmall {
        disk: String,
        size: u64,
        needed: u64,
    },
    #[error("{disk} has {target}-byte sectors and the backup was taken from a disk with {original}-byte sectors: restore onto a disk with {original}-byte sectors")]
    SectorSizeDiffers {
        disk: String,
        target: u32,
        original: u32,
    },
    #[error("no backup on {0}: no <host>/<time>/manifest.json there; name the directory with rescue.from=<disk>:<dir>")]
    NoBackupFound(String),
}

/// The filesystem type the kernel mounts (`ext4` serves ext2 and ext3 too).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Fs {
    Ext4,
    Vfat,
}

impl Fs {
    pub fn kernel_name(self) -> &'static str {
        match self {
            Fs::Ext4 => "ext4",
            Fs::Vfat => "vfat",
        }
    }
    /// The modules a mount needs (the rescue loads them on demand).
    pub fn modules(self) -> &'static [&'static str] {
        match self {
            Fs::Ext4 => &["ext4"],
            Fs::Vfat => &["vfat", "nls_cp437", "nls_ascii"],
        }
    }
    /// Mount options: FAT names as the stick uses them.
    pub fn options(self) -> &'static str {
        match self {
            Fs::Ext4 => "",
            Fs::Vfat => "codepage=437,iocharset=ascii,shortname=mixed",
        }
    }
}

/// A filesystem on a disk: the whole disk, or one partition of it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Volume {
    pub disk_path: String,
    pub disk_name: String,
    pub partition: Option<u32>,
    pub fs: Fs,
}

impl Volume {
    pub fn describe(&self) -> String {
        match self.partition {
            Some(n) => format!(
                "{} partition {n} ({})",
                self.disk_path,
                self.fs.kernel_name()
            ),
            None => format!("{} ({})", self.disk_path, self.fs.kernel_name()),
        }
    }
}

/// Where a backup is written.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum BackupTarget {
    /// The mounted `RESCUE` stick.
    Stick,
    /// An existing filesystem, used as it is.
    Volume(Volume),
    /// A disk named in `rescue.wipe=` with no usable filesystem: a GPT with one
    /// partition, FAT32 on it.
    Format {
        disk_path: String,
        disk_name: String,
        layout: FormatLayout,
    },
}

/// What formatting a disk for a backup writes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FormatLayout {
    /// The partition's first and last LBA (512-byte sectors).
    pub first_lba: u64,
    pub last_lba: u64,
    /// Free bytes of the new FAT32 (its data clusters less the root directory's).
    pub free_bytes: u64,
}

impl FormatLayout {
    pub fn len_bytes(&self) -> u64 {
        (self.last_lba - self.first_lba + 1) * 512
    }
}

/// First LBA of the one partition: 1 MiB, as every partitioning tool aligns.
const FIRST_LBA: u64 = 2048;
/// The label of a FAT32 the rescue makes for backups.
pub const BACKUP_LABEL: &str = "XENRAID-BK";

/// The partition and FAT32 a disk of `size` bytes gets (512-byte sectors): from 1 MiB to
/// the GPT's last usable LBA rounded down to a MiB, at most the 2 TiB FAT32 takes.
pub fn format_layout(size: u64, sector_size: u32) -> Result<FormatLayout, String> {
    if sector_size != 512 {
        return Err(format!(
            "it has {sector_size}-byte sectors and the rescue formats FAT32 with 512-byte sectors only; format it yourself (mkfs.ext4 or mkfs.vfat) and run again"
        ));
    }
    let sectors = size / 512;
    // The backup GPT takes the last 33 sectors.
    let last_usable = sectors.saturating_sub(34);
    let most = last_usable
        .saturating_add(1)
        .saturating_sub(FIRST_LBA)
        .min(u64::from(u32::MAX));
    let count = most / 2048 * 2048;
    let l = Fat32Layout::for_sectors(count).map_err(|e| e.to_string())?;
    let cluster = u64::from(l.sectors_per_cluster) * 512;
    Ok(FormatLayout {
        first_lba: FIRST_LBA,
        last_lba: FIRST_LBA + count - 1,
        free_bytes: u64::from(l.clusters - 1) * cluster,
    })
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BackupPlan {
    pub source: Disk,
    pub target: BackupTarget,
}

/// The stick as the plan sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StickState {
    /// The stick's filesystem device (`/dev/sdc1`).
    pub device: String,
    pub read_only: bool,
}

fn is_stick_disk(d: &Disk, stick: Option<&StickState>) -> bool {
    stick.is_some_and(|s| s.device.starts_with(&d.path))
}

fn find<'a>(key: &'static str, sel: &str, disks: &'a [Disk]) -> Result<&'a Disk, JobError> {
    disks
        .iter()
        .find(|d| names_disk(sel, d))
        .ok_or_else(|| JobError::NoSuchDisk {
            key,
            sel: sel.into(),
        })
}

/// How to name a disk in `rescue.wipe=` (its serial when it has one: names change).
fn wipe_name(d: &Disk) -> String {
    d.serial
        .as_ref()
        .map(|s| format!("serial:{s}"))
        .unwrap_or_else(|| d.name.clone())
}

fn wiped(args: &Plan, d: &Disk) -> bool {
    args.wipe.as_deref().is_some_and(|w| names_disk(w, d))
}

/// What a disk holds, in words.
pub fn describe(d: &Disk) -> String {
    if let Some(x) = &d.xenserver {
        return format!("a XenServer {} install", x.layout);
    }
    match (&d.table, &d.whole_disk) {
        (Some(t), _) => {
            let fs: Vec<String> = d
                .partitions
                .iter()
                .map(|p| {
                    format!(
                        "{}: {}",
                        p.number,
                        p.fs_type.as_deref().unwrap_or("unknown")
                    )
                })
                .collect();
            format!(
                "{} table, partitions {}",
                t.to_uppercase(),
                if fs.is_empty() {
                    "none".into()
                } else {
                    fs.join(", ")
                }
            )
        }
        (None, Some(c)) => crate::inspect::summary(Some(c))
            .0
            .unwrap_or_else(|| "an unknown signature".into()),
        (None, None) if d.blank => "blank".into(),
        (None, None) => "signatures at its start or end".into(),
    }
}

/// The one filesystem on `d` a backup can go into or come from: an ext or FAT filesystem
/// on the whole disk, or on its only data partition (a BIOS boot or EFI system partition
/// beside it does not count). Anything else is `Err(what the disk holds)`: a XenServer
/// install, LVM, md members, several data partitions are never written.
pub fn volume(d: &Disk) -> Result<Volume, String> {
    let fs_of = |fs: Option<&str>| match fs {
        Some("ext2" | "ext3" | "ext4") => Some(Fs::Ext4),
        Some("vfat") => Some(Fs::Vfat),
        _ => None,
    };
    let make = |partition, fs| Volume {
        disk_path: d.path.clone(),
        disk_name: d.name.clone(),
        partition,
        fs,
    };
    if d.xenserver.is_some() {
        return Err(describe(d));
    }
    if d.table.is_none() {
        let fs = match &d.whole_disk {
            Some(Content::Ext { .. }) => Some(Fs::Ext4),
            Some(Content::Vfat { .. }) => Some(Fs::Vfat),
            _ => None,
        };
        return fs.map(|f| make(None, f)).ok_or_else(|| describe(d));
    }
    let not_data = |p: &crate::inspect::Partition| {
        p.type_guid
            .as_deref()
            .is_some_and(|g| g == types::BIOS_BOOT || g == types::EFI_SYSTEM)
            || p.mbr_type == Some(0xef)
            || p.mbr_type.is_some_and(|t| matches!(t, 0x05 | 0x0f | 0x85))
    };
    let data: Vec<_> = d.partitions.iter().filter(|p| !not_data(p)).collect();
    match data.as_slice() {
        [p] => fs_of(p.fs_type.as_deref())
            .map(|f| make(Some(p.number), f))
            .ok_or_else(|| describe(d)),
        _ => Err(describe(d)),
    }
}

fn select_source<'a>(sel: &str, disks: &'a [Disk]) -> Result<&'a Disk, JobError> {
    if sel != "auto" {
        return find("rescue.source", sel, disks);
    }
    let c: Vec<&Disk> = disks.iter().filter(|d| d.xenserver.is_some()).collect();
    match c.as_slice() {
        [one] => Ok(one),
        [] => Err(JobError::NoXenServer),
        many => Err(JobError::SeveralXenServers(
            many.len(),
            many.iter()
                .map(|d| d.path.as_str())
                .collect::<Vec<_>>()
                .join(", "),
        )),
    }
}

/// Source and target of a backup, or why not. `disks` are all the disks, the stick's
/// among them; nothing but the room on the target is left to check after this.
pub fn plan_backup(
    args: &Plan,
    disks: &[Disk],
    stick: Option<&StickState>,
) -> Result<BackupPlan, JobError> {
    let candidates: Vec<Disk> = disks
        .iter()
        .filter(|d| !is_stick_disk(d, stick))
        .cloned()
        .collect();
    let source = select_source(
        args.source.as_deref().ok_or(JobError::NoSource)?,
        &candidates,
    )?;
    let to = args.to.as_ref().ok_or(JobError::NoBackupTarget)?;
    if to.is_stick() {
        let s = stick.ok_or(JobError::NoStick { key: "rescue.to" })?;
        if s.read_only {
            return Err(JobError::StickReadOnly);
        }
        return Ok(BackupPlan {
            source: source.clone(),
            target: BackupTarget::Stick,
        });
    }
    let t = target_disk("rescue.to", to, disks, stick)?;
    if t.path == source.path {
        return Err(JobError::TargetIsSource(t.path.clone()));
    }
    let target = match volume(t) {
        Ok(v) => BackupTarget::Volume(v),
        Err(_) if wiped(args, t) => {
            let layout = format_layout(t.size_bytes, t.logical_sector_size).map_err(|why| {
                JobError::CannotFormat {
                    disk: t.path.clone(),
                    why,
                }
            })?;
            BackupTarget::Format {
                disk_path: t.path.clone(),
                disk_name: t.name.clone(),
                layout,
            }
        }
        Err(_) if t.blank => {
            return Err(JobError::BlankNotWiped {
                disk: t.path.clone(),
                sel: wipe_name(t),
            })
        }
        Err(what) => {
            return Err(JobError::NoUsableFs {
                disk: t.path.clone(),
                what,
                sel: wipe_name(t),
            })
        }
    };
    Ok(BackupPlan {
        source: source.clone(),
        target,
    })
}

/// The disk a `rescue.to=`/`rescue.from=` names; the stick's disk only as `stick`.
fn target_disk<'a>(
    key: &'static str,
    loc: &Location,
    disks: &'a [Disk],
    stick: Option<&StickState>,
) -> Result<&'a Disk, JobError> {
    let d = find(key, &loc.disk, disks)?;
    if is_stick_disk(d, stick) {
        return Err(JobError::StickByName {
            key,
            sel: loc.disk.clone(),
        });
    }
    Ok(d)
}

/// Where the backup to restore is.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum BackupSource {
    Stick,
    Volume(Volume),
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RestorePlan {
    pub from: BackupSource,
    /// The backup's directory as named (`host/time`), else the newest found.
    pub dir: Option<String>,
    pub target: Disk,
}

/// Backup location and target disk of a restore, or why not; the backup's own checks
/// (its size against the target's, every item's SHA-256) follow once it is read.
pub fn plan_restore(
    args: &Plan,
    disks: &[Disk],
    stick: Option<&StickState>,
) -> Result<RestorePlan, JobError> {
    let from = args.from.as_ref().ok_or(JobError::NoFrom)?;
    let to = args.to.as_ref().ok_or(JobError::NoRestoreTarget)?;
    if to.is_stick() {
        return Err(JobError::RestoreToStick);
    }
    let target = target_disk("rescue.to", to, disks, stick)?;
    let source = if from.is_stick() {
        stick.ok_or(JobError::NoStick { key: "rescue.from" })?;
        BackupSource::Stick
    } else {
        let d = target_disk("rescue.from", from, disks, stick)?;
        if d.path == target.path {
            return Err(JobError::TargetHoldsBackup(d.path.clone()));
        }
        BackupSource::Volume(volume(d).map_err(|what| JobError::NoBackupFs {
            disk: d.path.clone(),
            what,
        })?)
    };
    if !target.blank && !wiped(args, target) {
        return Err(JobError::TargetNotBlank {
            disk: target.path.clone(),
            what: describe(target),
            sel: wipe_name(target),
        });
    }
    Ok(RestorePlan {
        from: source,
        dir: from.dir.clone(),
        target: target.clone(),
    })
}

/// The backup fits the target: as large, same logical sector size (the partition
/// table's LBAs count them).
pub fn check_restore_target(m: &Manifest, target: &Disk) -> Result<(), JobError> {
    if target.size_bytes < m.source.size_bytes {
        return Err(JobError::TargetTooSmall {
            disk: target.path.clone(),
            size: target.size_bytes,
            needed: m.source.size_bytes,
        });
    }
    if target.logical_sector_size != m.source.logical_sector_size {
        return Err(JobError::SectorSizeDiffers {
            disk: target.path.clone(),
            target: target.logical_sector_size,
            original: m.source.logical_sector_size,
        });
    }
    Ok(())
}

/// Refuses a backup whose worst case ([`Estimate::worst_case_bytes`]) does not fit.
pub fn check_room(est: &Estimate, free: u64, target: &str) -> Result<(), JobError> {
    if est.worst_case_bytes > free {
        return Err(JobError::NoRoom {
            need: Bytes(est.worst_case_bytes),
            free: Bytes(free),
            target: target.into(),
        });
    }
    Ok(())
}

/// `<host>/<UTC time>`: where a backup goes on its filesystem.
pub fn backup_dir(host_id: &str, unix_seconds: u64) -> String {
    format!(
        "{}/{}",
        crate::stick::safe_name(host_id),
        crate::stick::utc_compact(unix_seconds)
    )
}

/// The newest of the `<host>/<time>` backups found: the latest time (the names sort as
/// times do), whatever the host; `None` when there is none.
pub fn newest(found: &[String]) -> Option<&String> {
    found.iter().max_by(|a, b| {
        let time = |s: &str| s.rsplit('/').next().unwrap_or("").to_string();
        time(a).cmp(&time(b)).then_with(|| a.cmp(b))
    })
}

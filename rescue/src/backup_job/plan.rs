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
    #[error("rescue.to: {0} is read-only (the kernel refuses writes to it): release its write protection (switch, controller or LUN setting) or name another disk")]
    ReadOnly(String),
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
    if t.read_only {
        return Err(JobError::ReadOnly(t.path.clone()));
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
    if target.read_only {
        return Err(JobError::ReadOnly(target.path.clone()));
    }
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cmdline::parse;
    use crate::inspect::{Partition, XenServer};

    const GIB: u64 = 1 << 30;

    fn disk(name: &str, size: u64) -> Disk {
        Disk {
            name: name.into(),
            path: format!("/dev/{name}"),
            size_bytes: size,
            logical_sector_size: 512,
            serial: Some(format!("SER-{name}")),
            ..Default::default()
        }
    }

    fn with_parts(mut d: Disk, table: &str, fs: &[&str]) -> Disk {
        d.table = Some(table.into());
        d.partitions = fs
            .iter()
            .enumerate()
            .map(|(i, f)| Partition {
                number: i as u32 + 1,
                start_lba: 2048 * (i as u64 + 1),
                size_bytes: 1 << 20,
                fs_type: Some(f.to_string()),
                label: (*f == "vfat" && table == "mbr").then(|| LABEL.to_string()),
                ..Default::default()
            })
            .collect();
        d
    }

    fn xenserver(name: &str) -> Disk {
        let mut d = with_parts(disk(name, 8 * GIB), "gpt", &["ext3", "ext3", "LVM2_member"]);
        d.xenserver = Some(XenServer {
            layout: "7.x".into(),
            label_suffix: "abcdef".into(),
            has_local_sr: true,
            on_md: false,
            inventory: None,
        });
        d
    }

    fn blank(name: &str, size: u64) -> Disk {
        Disk {
            blank: true,
            ..disk(name, size)
        }
    }

    /// sda XenServer, sdb blank, sdc one FAT partition, sdd the stick, sde ext4 on the
    /// whole disk, sdf two ext4 partitions, sdg blank and small, sdh blank with 4K sectors.
    fn disks() -> Vec<Disk> {
        let mut ext = disk("sde", 4 * GIB);
        ext.whole_disk = Some(Content::Ext {
            version: "ext4".into(),
            label: None,
            uuid: "u".into(),
        });
        let mut k4 = blank("sdh", 16 * GIB);
        k4.logical_sector_size = 4096;
        vec![
            xenserver("sda"),
            blank("sdb", 16 * GIB),
            with_parts(disk("sdc", 32 * GIB), "gpt", &["vfat"]),
            with_parts(disk("sdd", GIB), "mbr", &["vfat"]),
            ext,
            with_parts(disk("sdf", 8 * GIB), "gpt", &["ext4", "ext4"]),
            blank("sdg", 20 << 20),
            k4,
        ]
    }

    fn stick() -> StickState {
        StickState {
            device: "/dev/sdd1".into(),
            read_only: false,
        }
    }

    fn backup(args: &str) -> Result<BackupTarget, JobError> {
        backup_on(args, &disks(), Some(&stick()))
    }

    fn backup_on(
        args: &str,
        disks: &[Disk],
        stick: Option<&StickState>,
    ) -> Result<BackupTarget, JobError> {
        let c = parse(&format!("rescue.action=backup {args}"));
        assert!(c.errors.is_empty(), "{:?}", c.errors);
        plan_backup(&c.plan, disks, stick).map(|p| p.target)
    }

    fn restore(args: &str, stick: Option<&StickState>) -> Result<RestorePlan, JobError> {
        let c = parse(&format!("rescue.action=restore {args}"));
        assert!(c.errors.is_empty(), "{:?}", c.errors);
        plan_restore(&c.plan, &disks(), stick)
    }

    #[test]
    fn an_existing_filesystem_is_used_as_it_is() {
        let t = backup("rescue.source=auto rescue.to=sdc").unwrap();
        let BackupTarget::Volume(v) = t else {
            panic!("{t:?}")
        };
        assert_eq!((v.partition, v.fs), (Some(1), Fs::Vfat));
        let t = backup("rescue.source=sda rescue.to=serial:SER-sde").unwrap();
        assert!(matches!(
            t,
            BackupTarget::Volume(Volume {
                partition: None,
                fs: Fs::Ext4,
                ..
            })
        ));
        // Named in rescue.wipe= it is still used, not formatted: wipe allows, it does not order.
        let t = backup("rescue.source=sda rescue.to=sdc rescue.wipe=sdc").unwrap();
        assert!(matches!(t, BackupTarget::Volume(_)), "{t:?}");
        // Any disk may be backed up when named; auto wants a XenServer install.
        let c = parse("rescue.source=sdf rescue.to=sdc");
        assert_eq!(
            plan_backup(&c.plan, &disks(), None).unwrap().source.name,
            "sdf"
        );
    }

    #[test]
    fn the_stick_is_a_target_only_as_stick_and_only_writable() {
        assert_eq!(
            backup("rescue.source=auto rescue.to=stick").unwrap(),
            BackupTarget::Stick
        );
        let ro = StickState {
            read_only: true,
            ..stick()
        };
        assert_eq!(
            backup_on("rescue.source=auto rescue.to=stick", &disks(), Some(&ro)),
            Err(JobError::StickReadOnly)
        );
        assert_eq!(
            backup_on("rescue.source=auto rescue.to=stick", &disks(), None),
            Err(JobError::NoStick { key: "rescue.to" })
        );
        let e = backup("rescue.source=auto rescue.to=sdd").unwrap_err();
        assert_eq!(
            e.to_string(),
            "rescue.to=sdd is the RESCUE stick: write rescue.to=stick"
        );
    }

    #[test]
    fn a_blank_disk_is_formatted_only_when_named_in_wipe() {
        let e = backup("rescue.source=auto rescue.to=sdb").unwrap_err();
        assert_eq!(e.to_string(), "/dev/sdb is blank: name it in rescue.wipe=serial:SER-sdb to format it FAT32 for the backup, or use a disk with an ext4 or FAT filesystem");
        for wipe in ["sdb", "/dev/sdb", "serial:SER-sdb"] {
            let t = backup(&format!(
                "rescue.source=auto rescue.to=sdb rescue.wipe={wipe}"
            ))
            .unwrap();
            let BackupTarget::Format {
                disk_path, layout, ..
            } = t
            else {
                panic!("{t:?}")
            };
            assert_eq!(disk_path, "/dev/sdb");
            assert_eq!(layout, format_layout(16 * GIB, 512).unwrap());
        }
        // rescue.wipe= naming another disk does not count.
        assert!(matches!(
            backup("rescue.source=auto rescue.to=sdb rescue.wipe=sdc"),
            Err(JobError::BlankNotWiped { .. })
        ));
    }

    #[test]
    fn a_disk_without_one_usable_filesystem_is_refused_unless_wiped() {
        let e = backup("rescue.source=auto rescue.to=sdf").unwrap_err();
        assert_eq!(e.to_string(), "/dev/sdf holds no filesystem a backup can go into (GPT table, partitions 1: ext4, 2: ext4): use a disk with one ext2/3/4 or FAT filesystem, or name it in rescue.wipe=serial:SER-sdf to format it (everything on it is lost)");
        assert!(matches!(
            backup("rescue.source=auto rescue.to=sdf rescue.wipe=sdf"),
            Ok(BackupTarget::Format { .. })
        ));
        // Another XenServer install is never used as it is, even with an ext3 on it.
        let mut two = disks();
        two.push(xenserver("sdi"));
        let e = backup_on("rescue.source=sda rescue.to=sdi", &two, None).unwrap_err();
        assert!(e.to_string().contains("(a XenServer 7.x install)"), "{e}");
    }

    #[test]
    fn the_source_is_never_the_target() {
        assert_eq!(
            backup("rescue.source=auto rescue.to=/dev/sda rescue.wipe=sda"),
            Err(JobError::TargetIsSource("/dev/sda".into()))
        );
        assert_eq!(
            backup("rescue.source=sdc rescue.to=serial:SER-sdc")
                .unwrap_err()
                .to_string(),
            "/dev/sdc is the disk being backed up: name another disk, or stick, in rescue.to="
        );
    }

    #[test]
    fn what_cannot_be_formatted_is_refused_before_anything_is_written() {
        let e = backup("rescue.source=auto rescue.to=sdh rescue.wipe=sdh").unwrap_err();
        assert!(
            e.to_string().starts_with(
                "/dev/sdh cannot be formatted for the backup: it has 4096-byte sectors"
            ),
            "{e}"
        );
        let e = backup("rescue.source=auto rescue.to=sdg rescue.wipe=sdg").unwrap_err();
        assert!(e.to_string().contains("too small for FAT32"), "{e}");
    }

    #[test]
    fn missing_or_unknown_disks() {
        assert_eq!(backup("rescue.to=sdc"), Err(JobError::NoSource));
        assert_eq!(backup("rescue.source=auto"), Err(JobError::NoBackupTarget));
        assert_eq!(
            backup("rescue.source=auto rescue.to=sdz")
                .unwrap_err()
                .to_string(),
            "rescue.to=sdz: no such disk; see rescue.action=inspect for the names"
        );
        let mut two = disks();
        two.push(xenserver("sdi"));
        assert_eq!(
            backup_on("rescue.source=auto rescue.to=sdc", &two, None).unwrap_err().to_string(),
            "rescue.source=auto: 2 disks hold a XenServer install (/dev/sda, /dev/sdi); name the one to back up with rescue.source="
        );
        assert_eq!(
            backup_on("rescue.source=auto rescue.to=sdc", &disks()[1..], None),
            Err(JobError::NoXenServer)
        );
        // The stick's disk is no source.
        assert!(matches!(
            backup("rescue.source=sdd rescue.to=sdc"),
            Err(JobError::NoSuchDisk { .. })
        ));
    }

    #[test]
    fn restore_reads_a_filesystem_and_writes_a_blank_or_wiped_disk() {
        let p = restore("rescue.from=stick rescue.to=sdb", Some(&stick())).unwrap();
        assert_eq!(
            (p.from, p.dir, p.target.name.as_str()),
            (BackupSource::Stick, None, "sdb")
        );
        let p = restore("rescue.from=sdc:H/20261201T000000Z rescue.to=sdb", None).unwrap();
        assert!(matches!(
            p.from,
            BackupSource::Volume(Volume {
                partition: Some(1),
                fs: Fs::Vfat,
                ..
            })
        ));
        assert_eq!(p.dir.as_deref(), Some("H/20261201T000000Z"));
        let e = restore("rescue.from=sdc rescue.to=sda", None).unwrap_err();
        assert_eq!(e.to_string(), "/dev/sda is not blank (a XenServer 7.x install): name it in rescue.wipe=serial:SER-sda to overwrite it, or attach a blank disk");
        assert!(restore("rescue.from=sdc rescue.to=sda rescue.wipe=sda", None).is_ok());
    }

    #[test]
    fn restore_refusals() {
        let s = Some(stick());
        let s = s.as_ref();
        assert_eq!(restore("rescue.to=sdb", s), Err(JobError::NoFrom));
        assert_eq!(
            restore("rescue.from=stick", s),
            Err(JobError::NoRestoreTarget)
        );
        assert_eq!(
            restore("rescue.from=sdc rescue.to=stick", s),
            Err(JobError::RestoreToStick)
        );
        assert_eq!(
            restore("rescue.from=stick rescue.to=sdd rescue.wipe=sdd", s),
            Err(JobError::StickByName {
                key: "rescue.to",
                sel: "sdd".into()
            })
        );
        assert_eq!(
            restore("rescue.from=sdc rescue.to=sdc rescue.wipe=sdc", s),
            Err(JobError::TargetHoldsBackup("/dev/sdc".into()))
        );
        assert_eq!(
            restore("rescue.from=stick rescue.to=sdb", None),
            Err(JobError::NoStick { key: "rescue.from" })
        );
        let e = restore("rescue.from=sdf rescue.to=sdb", s).unwrap_err();
        assert!(
            e.to_string()
                .starts_with("/dev/sdf holds no filesystem with a backup"),
            "{e}"
        );
    }

    #[test]
    fn the_backup_must_fit_the_target() {
        let m = Manifest {
            format: crate::backup::FORMAT.into(),
            created_unix: 0,
            source: crate::backup::SourceDisk {
                path: "/dev/sda".into(),
                serial: None,
                size_bytes: 8 * GIB,
                logical_sector_size: 512,
                table: Some("gpt".into()),
                disk_guid: None,
            },
            items: vec![],
            inspect: serde_json::Value::Null,
        };
        assert!(check_restore_target(&m, &blank("sdb", 8 * GIB)).is_ok());
        assert!(check_restore_target(&m, &blank("sdb", 16 * GIB)).is_ok());
        assert_eq!(
            check_restore_target(&m, &blank("sdb", 8 * GIB - 512)).unwrap_err().to_string(),
            "/dev/sdb (8589934080 bytes) is smaller than the backed-up disk (8589934592 bytes): use a disk at least as large"
        );
        let mut k4 = blank("sdh", 16 * GIB);
        k4.logical_sector_size = 4096;
        assert!(matches!(
            check_restore_target(&m, &k4),
            Err(JobError::SectorSizeDiffers { .. })
        ));
        let est = Estimate {
            items: 3,
            stream_bytes: 8 * GIB,
            used_bytes: GIB,
            worst_case_bytes: GIB + (40 << 20),
        };
        assert!(check_room(&est, 2 * GIB, "x").is_ok());
        assert_eq!(
            check_room(&est, GIB, "/dev/sdc partition 1 (vfat)").unwrap_err().to_string(),
            "the backup needs up to 1.0 GiB and /dev/sdc partition 1 (vfat) has 1.0 GiB free: use a larger disk, or free space on it"
        );
    }

    #[test]
    fn format_layouts_start_at_a_mib_and_stay_within_fat32() {
        let l = format_layout(16 * GIB, 512).unwrap();
        assert_eq!(l.first_lba, 2048);
        assert_eq!((l.last_lba + 1) % 2048, 0);
        assert!(l.last_lba < 16 * GIB / 512 - 33, "clear of the backup GPT");
        assert!(l.free_bytes > 15 * GIB && l.free_bytes < l.len_bytes());
        // A 3 TiB disk: one partition of the 2 TiB FAT32 takes.
        let l = format_layout(3 << 40, 512).unwrap();
        assert!(l.last_lba - l.first_lba < u64::from(u32::MAX));
        assert!(Fat32Layout::for_sectors(l.len_bytes() / 512).is_ok());
    }

    #[test]
    fn backup_directories_are_host_then_time() {
        assert_eq!(
            backup_dir("XS SN/1", 1_795_290_123),
            "XS_SN_1/20261121T194203Z"
        );
        assert_eq!(backup_dir("", 0), "unknown/19700101T000000Z");
    }

    #[test]
    fn every_refusal_is_one_line() {
        let all = [
            backup("rescue.to=sdc"),
            backup("rescue.source=auto rescue.to=sdb"),
            backup("rescue.source=auto rescue.to=sdf"),
            backup("rescue.source=auto rescue.to=sdh rescue.wipe=sdh"),
            backup("rescue.source=auto rescue.to=sdg rescue.wipe=sdg"),
        ];
        for r in all {
            let e = r.unwrap_err().to_string();
            assert!(!e.contains('\n') && !e.ends_with('.'), "{e}");
        }
    }
}

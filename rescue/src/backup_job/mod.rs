//! `rescue.action=backup` and `rescue.action=restore` in the booted rescue: the host CLI's
//! `backup`/`restore` (`crate::backup`) run on disks the kernel arguments name.
//!
//! Order, and why: the plan ([`plan`]) decides every refusal from what inspect found;
//! the backup's worst-case size is checked against the target's free space (a new FAT32's
//! known from its geometry, an existing filesystem's from a read-only mount) before
//! anything is written; only then is a blank disk named in `rescue.wipe=` formatted, or
//! the filesystem mounted read-write. The backup is read back from the target (caches
//! dropped) before the report says ok. A restore mounts the backup read-only, and
//! `crate::backup::restore` checks every item before its first write.

pub mod plan;

use crate::backup::{self, Estimate, SourceDisk, Stage};
use crate::cmdline;
use crate::convert::{kernel_log_line, partition_path, run_step, Rescue, Step};
use crate::formats::{gpt, vfat};
use crate::inspect::Disk;
use crate::stick::Stick;
use crate::sys;
use crate::units::{Bytes, Lba};
use plan::{BackupSource, BackupTarget, FormatLayout, Fs, JobError, StickState, Volume};
use serde::{Deserialize, Serialize};
use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

const TARGET_MOUNT: &str = "/run/backup-target";
const FROM_MOUNT: &str = "/run/backup-from";

/// What the report says about a backup.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct BackupReport {
    /// The disk backed up (`/dev/sda`).
    pub source: String,
    /// Where it went, in words (`/dev/sdc partition 1 (vfat)`, `the RESCUE stick`).
    pub target: String,
    /// The target was a blank disk the rescue partitioned and formatted FAT32.
    pub formatted: bool,
    /// The backup's directory on the target's filesystem (`<host>/<UTC time>`).
    pub directory: String,
    pub estimate: Option<Estimate>,
    /// Free bytes on the target's filesystem before the backup.
    pub free_bytes: u64,
    pub items: usize,
    pub bytes_read: u64,
    /// Compressed bytes written (the items' files).
    pub bytes_written: u64,
    /// Every item read back from the target against its SHA-256.
    pub verified: bool,
    pub steps: Vec<Step>,
}

/// What the report says about a restore.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RestoreReport {
    /// Where the backup was (`/dev/sdc partition 1 (ext4)`, `the RESCUE stick`).
    pub from: String,
    /// The backup's directory on that filesystem.
    pub directory: String,
    /// The disk written.
    pub target: String,
    /// The disk the backup was taken from, as its manifest says.
    pub backed_up: Option<SourceDisk>,
    pub items: usize,
    pub bytes_written: u64,
    pub gpt_moved_to_end: bool,
    /// Every item checked before the first write and read back after the last.
    pub verified: bool,
    pub steps: Vec<Step>,
}

/// `label: 1.2 GiB of 3.4 GiB (35 %), 40.0 MiB/s, ETA 57 s`.
pub fn progress_line(label: &str, done: u64, total: u64, elapsed: Duration) -> String {
    let secs = elapsed.as_secs_f64();
    let rate = if secs > 0.0 { done as f64 / secs } else { 0.0 };
    let pct = (done as f64 * 100.0 / total.max(1) as f64).min(100.0);
    let eta = if rate > 0.0 && done < total {
        format!(", ETA {} s", ((total - done) as f64 / rate).ceil() as u64)
    } else {
        String::new()
    };
    format!(
        "{label}: {} of {} ({pct:.0} %), {}/s{eta}",
        Bytes(done),
        Bytes(total),
        Bytes(rate as u64)
    )
}

/// A progress line at most every `every`, to the kernel console as the conversion's copy
/// progress goes (a step's closure cannot reach the rescue's console).
struct Meter {
    label: String,
    started: Instant,
    last: Instant,
    every: Duration,
}

impl Meter {
    fn new(label: &str) -> Meter {
        let now = Instant::now();
        Meter {
            label: label.into(),
            started: now,
            last: now,
            every: Duration::from_secs(5),
        }
    }

    fn tick(&mut self, done: u64, total: u64) {
        if self.last.elapsed() >= self.every {
            self.last = Instant::now();
            kernel_log_line(&progress_line(
                &self.label,
                done,
                total,
                self.started.elapsed(),
            ));
        }
    }
}

/// A filesystem mounted by this module, unmounted (after a sync) when dropped.
struct Mounted(PathBuf);

impl Mounted {
    fn mount(dev: &Path, at: &str, fs: Fs, read_only: bool) -> Result<Mounted, String> {
        let mut opts = fs.options().to_string();
        // A read-only ext mount must not replay a journal: that writes the disk.
        if read_only && fs == Fs::Ext4 {
            opts = "noload".into();
        }
        sys::mount(dev, Path::new(at), fs.kernel_name(), read_only, &opts).map_err(|e| {
            format!(
                "cannot mount {} ({}{}): {e}; check it with fsck",
                dev.display(),
                fs.kernel_name(),
                if read_only { ", read-only" } else { "" }
            )
        })?;
        Ok(Mounted(PathBuf::from(at)))
    }
}

impl Drop for Mounted {
    fn drop(&mut self) {
        sys::sync();
        let _ = sys::unmount_lazy(&self.0);
    }
}

fn volume_device(v: &Volume) -> Result<PathBuf, String> {
    match v.partition {
        Some(n) => partition_path(&v.disk_name, n),
        None => Ok(PathBuf::from(&v.disk_path)),
    }
}

fn stick_state(s: &Stick) -> StickState {
    StickState {
        device: s.device.display().to_string(),
        read_only: s.read_only,
    }
}

fn target_text(t: &BackupTarget, stick: Option<&Stick>) -> String {
    match t {
        BackupTarget::Stick => format!(
            "the {} stick ({})",
            crate::stick::LABEL,
            stick
                .map(|s| s.device.display().to_string())
                .unwrap_or_default()
        ),
        BackupTarget::Volume(v) => v.describe(),
        BackupTarget::Format {
            disk_path, layout, ..
        } => format!(
            "{disk_path} partition 1 (vfat, new: {} FAT32 {})",
            Bytes(layout.len_bytes()),
            plan::BACKUP_LABEL
        ),
    }
}

/// Runs `rescue.action=backup`; errors are returned as the operator should read them.
pub fn run_backup(
    ctx: &mut dyn Rescue,
    args: &cmdline::Plan,
    disks: &[Disk],
    stick: Option<&Stick>,
    rep: &mut BackupReport,
) -> Result<(), String> {
    let st = stick.map(stick_state);
    let p = plan::plan_backup(args, disks, st.as_ref()).map_err(|e| e.to_string())?;
    rep.source = p.source.path.clone();
    rep.target = target_text(&p.target, stick);
    ctx.say(&format!(
        "backup: {} ({}, {}) to {}",
        p.source.path,
        plan::describe(&p.source),
        Bytes(p.source.size_bytes),
        rep.target
    ));
    let mut src = File::open(&p.source.path)
        .map_err(|e| format!("cannot open {} to read it: {e}", p.source.path))?;
    let est = backup::estimate(&mut src, &p.source).map_err(|e| e.to_string())?;
    ctx.say(&format!(
        "backup: {} items, {} to read, at most {} to write",
        est.items,
        Bytes(est.used_bytes),
        Bytes(est.worst_case_bytes)
    ));
    rep.estimate = Some(est.clone());

    // The room first, with nothing written; then format or mount read-write.
    let (root, _mounted) = match &p.target {
        BackupTarget::Stick => {
            let s = stick.ok_or("the stick went away")?;
            rep.free_bytes = free(&s.mount_point)?;
            plan::check_room(&est, rep.free_bytes, &rep.target).map_err(|e| e.to_string())?;
            (s.mount_point.clone(), None)
        }
        BackupTarget::Volume(v) => {
            ctx.require_modules(v.fs.modules())?;
            let dev = volume_device(v)?;
            {
                let _probe = Mounted::mount(&dev, TARGET_MOUNT, v.fs, true)?;
                rep.free_bytes = free(Path::new(TARGET_MOUNT))?;
            }
            plan::check_room(&est, rep.free_bytes, &rep.target).map_err(|e| e.to_string())?;
            let m = Mounted::mount(&dev, TARGET_MOUNT, v.fs, false)?;
            (PathBuf::from(TARGET_MOUNT), Some(m))
        }
        BackupTarget::Format {
            disk_path,
            disk_name,
            layout,
        } => {
            rep.free_bytes = layout.free_bytes;
            plan::check_room(&est, rep.free_bytes, &rep.target).map_err(|e| e.to_string())?;
            ctx.require_modules(Fs::Vfat.modules())?;
            let serial = sys::unix_time() as u32;
            run_step(ctx, &mut rep.steps, "backup", "format", || {
                format_disk(disk_path, disk_name, layout, serial)
            })?;
            rep.formatted = true;
            let dev = partition_path(disk_name, 1)?;
            let m = Mounted::mount(&dev, TARGET_MOUNT, Fs::Vfat, false)?;
            (PathBuf::from(TARGET_MOUNT), Some(m))
        }
    };

    let now = sys::unix_time();
    let host = crate::stick::host_id(std::slice::from_ref(&p.source), None);
    rep.directory = plan::backup_dir(&host, now);
    let dir = root.join(&rep.directory);
    let mut manifest = None;
    run_step(ctx, &mut rep.steps, "backup", "copy", || {
        let mut meter = Meter::new("backup: copy");
        let m = backup::backup(&mut src, &p.source, &dir, now, |d, t| meter.tick(d, t))
            .map_err(|e| e.to_string())?;
        let read: u64 = m.items.iter().map(|i| i.used_bytes).sum();
        let written: u64 = m.items.iter().map(|i| i.compressed_bytes).sum();
        let line = format!(
            "{} items into {}: {} read, {} written",
            m.items.len(),
            dir.display(),
            Bytes(read),
            Bytes(written)
        );
        manifest = Some(m);
        Ok(line)
    })?;
    if let Some(m) = &manifest {
        rep.items = m.items.len();
        rep.bytes_read = m.items.iter().map(|i| i.used_bytes).sum();
        rep.bytes_written = m.items.iter().map(|i| i.compressed_bytes).sum();
    }
    run_step(ctx, &mut rep.steps, "backup", "verify", || {
        // Read back from the medium, not from the page cache the copy filled.
        sys::sync();
        sys::drop_caches();
        let mut meter = Meter::new("backup: verify");
        let m = backup::verify_with_progress(&dir, &mut |_, d, t| meter.tick(d, t))
            .map_err(|e| e.to_string())?;
        Ok(format!(
            "{} items read back from {}, every SHA-256 as in the manifest",
            m.items.len(),
            rep.target
        ))
    })?;
    rep.verified = true;
    ctx.say(&format!(
        "backup: done: {} in {} ({} items, {} written); restore with rescue.action=restore rescue.from=<disk or stick>:{} rescue.to=<blank disk>",
        rep.source,
        rep.directory,
        rep.items,
        Bytes(rep.bytes_written),
        rep.directory
    ));
    Ok(())
}

fn free(at: &Path) -> Result<u64, String> {
    sys::free_bytes(at).map_err(|e| format!("cannot read the free space of {}: {e}", at.display()))
}

/// Zeroes the disk's first and last MiB (old tables, md superblocks, filesystem
/// signatures) and writes a GPT with one basic-data partition as `layout` says, with a
/// protective MBR. Pure over the device: tested on image files.
pub fn write_backup_table<D: Read + Write + Seek>(
    dev: &mut D,
    layout: &FormatLayout,
    guids: &mut gpt::GuidSource,
) -> Result<(), String> {
    let size = dev.seek(SeekFrom::End(0)).map_err(|e| e.to_string())?;
    let zero = vec![0u8; 1 << 20];
    for at in [0, size.saturating_sub(1 << 20)] {
        let n = (1u64 << 20).min(size) as usize;
        dev.seek(SeekFrom::Start(at))
            .and_then(|_| dev.write_all(&zero[..n]))
            .map_err(|e| format!("zeroing: {e}"))?;
    }
    let table = gpt::GptTable {
        sector_size: 512,
        disk_guid: guids.next_guid().map_err(|e| e.to_string())?,
        first_usable_lba: Lba(0),
        last_usable_lba: Lba(0),
        entry_count: 128,
        partitions: vec![gpt::GptPartition {
            number: 1,
            first_lba: Lba(layout.first_lba),
            last_lba: Lba(layout.last_lba),
            type_guid: gpt::Guid::parse(gpt::types::BASIC_DATA).expect("a valid GUID"),
            unique_guid: guids.next_guid().map_err(|e| e.to_string())?,
            name: "xenraid-backup".into(),
            attributes: 0,
        }],
        header_source: gpt::HeaderSource::Primary,
    };
    gpt::write(dev, &table).map_err(|e| e.to_string())?;
    gpt::write_protective_mbr(dev, 512, gpt::BootCode::Keep, false).map_err(|e| e.to_string())
}

/// Partitions and formats a disk for a backup: the table through the whole disk, the
/// FAT32 through the partition's device once the kernel has it.
fn format_disk(
    disk_path: &str,
    disk_name: &str,
    layout: &FormatLayout,
    serial: u32,
) -> Result<String, String> {
    let open = |p: &Path| {
        OpenOptions::new()
            .read(true)
            .write(true)
            .open(p)
            .map_err(|e| format!("cannot open {} to write it: {e}", p.display()))
    };
    let mut dev = open(Path::new(disk_path))?;
    write_backup_table(&mut dev, layout, &mut gpt::GuidSource::Random)?;
    dev.sync_all().map_err(|e| e.to_string())?;
    drop(dev);
    sys::md::reread_partitions(Path::new(disk_path)).map_err(|e| e.to_string())?;
    let part = partition_path(disk_name, 1)?;
    let mut p = open(&part)?;
    let hidden = u32::try_from(layout.first_lba).unwrap_or(u32::MAX);
    let l = vfat::format_fat32(
        &mut p,
        layout.len_bytes(),
        plan::BACKUP_LABEL,
        serial,
        hidden,
    )
    .map_err(|e| e.to_string())?;
    p.sync_all().map_err(|e| e.to_string())?;
    Ok(format!(
        "GPT with partition 1 ({}), FAT32 {} with {} KiB clusters",
        Bytes(layout.len_bytes()),
        plan::BACKUP_LABEL,
        l.sectors_per_cluster / 2
    ))
}

/// The `<host>/<time>` directories under `root` holding a `manifest.json`, sorted.
pub fn find_backups(root: &Path) -> Vec<String> {
    let dirs = |p: &Path| -> Vec<String> {
        let mut v: Vec<String> = std::fs::read_dir(p)
            .map(|rd| {
                rd.flatten()
                    .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
                    .filter_map(|e| e.file_name().into_string().ok())
                    .collect()
            })
            .unwrap_or_default();
        v.sort();
        v
    };
    let mut found = Vec::new();
    for host in dirs(root) {
        for time in dirs(&root.join(&host)) {
            if root.join(&host).join(&time).join("manifest.json").is_file() {
                found.push(format!("{host}/{time}"));
            }
        }
    }
    found
}

/// Runs `rescue.action=restore`; errors are returned as the operator should read them.
pub fn run_restore(
    ctx: &mut dyn Rescue,
    args: &cmdline::Plan,
    disks: &[Disk],
    stick: Option<&Stick>,
    rep: &mut RestoreReport,
) -> Result<(), String> {
    let st = stick.map(stick_state);
    let p = plan::plan_restore(args, disks, st.as_ref()).map_err(|e| e.to_string())?;
    rep.target = p.target.path.clone();
    let (root, _mounted) = match &p.from {
        BackupSource::Stick => {
            let s = stick.ok_or("the stick went away")?;
            rep.from = format!("the {} stick ({})", crate::stick::LABEL, s.device.display());
            (s.mount_point.clone(), None)
        }
        BackupSource::Volume(v) => {
            rep.from = v.describe();
            ctx.require_modules(v.fs.modules())?;
            // Read-only: the disk holding the backup is never written.
            let m = Mounted::mount(&volume_device(v)?, FROM_MOUNT, v.fs, true)?;
            (PathBuf::from(FROM_MOUNT), Some(m))
        }
    };
    rep.directory = match &p.dir {
        Some(d) => d.clone(),
        None => {
            let found = find_backups(&root);
            let newest = plan::newest(&found)
                .ok_or_else(|| JobError::NoBackupFound(rep.from.clone()).to_string())?;
            if found.len() > 1 {
                ctx.say(&format!(
                    "restore: {} backups there ({}); the newest is {newest}",
                    found.len(),
                    found.join(", ")
                ));
            }
            newest.clone()
        }
    };
    let dir = root.join(&rep.directory);
    let m = backup::read_manifest(&dir).map_err(|e| e.to_string())?;
    plan::check_restore_target(&m, &p.target).map_err(|e| e.to_string())?;
    rep.backed_up = Some(m.source.clone());
    ctx.say(&format!(
        "restore: {} from {} (a {} disk{}, {} items) onto {} ({})",
        rep.directory,
        rep.from,
        Bytes(m.source.size_bytes),
        m.source
            .serial
            .as_deref()
            .map(|s| format!(" serial {s}"))
            .unwrap_or_default(),
        m.items.len(),
        p.target.path,
        Bytes(p.target.size_bytes)
    ));
    let mut dev = OpenOptions::new()
        .read(true)
        .write(true)
        .open(&p.target.path)
        .map_err(|e| format!("cannot open {} to write it: {e}", p.target.path))?;
    let size = dev.seek(SeekFrom::End(0)).map_err(|e| e.to_string())?;
    let mut done = None;
    run_step(ctx, &mut rep.steps, "restore", "restore", || {
        let mut meters = [
            Meter::new("restore: verify"),
            Meter::new("restore: write"),
            Meter::new("restore: read back"),
        ];
        let mut progress = |s: Stage, d: u64, t: u64| {
            let i = match s {
                Stage::Verify => 0,
                Stage::Write => 1,
                Stage::ReadBack => 2,
            };
            meters[i].tick(d, t);
        };
        let r = backup::restore_with_progress(&dir, &mut dev, size, &mut progress, |f| {
            f.sync_all()?;
            sys::direct_io::drop_cache(f)
        })
        .map_err(|e| e.to_string())?;
        let line = format!(
            "{} items checked, {} written, read back ok{}",
            r.items,
            Bytes(r.bytes_written),
            if r.gpt_moved_to_end {
                ", backup GPT moved to the disk's end"
            } else {
                ""
            }
        );
        done = Some(r);
        Ok(line)
    })?;
    if let Some(r) = done {
        rep.items = r.items;
        rep.bytes_written = r.bytes_written;
        rep.gpt_moved_to_end = r.gpt_moved_to_end;
        rep.verified = true;
    }
    dev.sync_all()
        .map_err(|e| format!("sync {}: {e}", p.target.path))?;
    drop(dev);
    // The kernel still holds the blank disk's (empty) table; the next boot reads it anyway.
    if let Err(e) = sys::md::reread_partitions(Path::new(&p.target.path)) {
        ctx.say(&format!(
            "restore: {e} (harmless: the next boot reads the new table)"
        ));
    }
    ctx.say(&format!(
        "restore: done: {} written from {}",
        p.target.path, rep.directory
    ));
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn progress_lines_give_bytes_rate_and_eta() {
        assert_eq!(
            progress_line("backup: copy", 1 << 30, 4 << 30, Duration::from_secs(10)),
            "backup: copy: 1.0 GiB of 4.0 GiB (25 %), 102.4 MiB/s, ETA 30 s"
        );
        // Done: no ETA; nothing yet: no rate to divide by.
        assert_eq!(
            progress_line("x", 5 << 20, 5 << 20, Duration::from_secs(1)),
            "x: 5.0 MiB of 5.0 MiB (100 %), 5.0 MiB/s"
        );
        assert_eq!(
            progress_line("x", 0, 0, Duration::ZERO),
            "x: 0 B of 0 B (0 %), 0 B/s"
        );
    }

    #[test]
    fn backups_are_found_two_levels_down_and_the_newest_wins() {
        let root =
            std::env::temp_dir().join(format!("xenraid-find-backups-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        for (d, with_manifest) in [
            ("HOSTA/20261130T120000Z", true),
            ("HOSTB/20261201T080000Z", true),
            ("HOSTA/20261201T090000Z", false), // interrupted: no manifest
            ("reports", false),
        ] {
            std::fs::create_dir_all(root.join(d)).unwrap();
            if with_manifest {
                std::fs::write(root.join(d).join("manifest.json"), "{}").unwrap();
            }
        }
        std::fs::write(root.join("reports/x.json"), "{}").unwrap();
        let found = find_backups(&root);
        assert_eq!(
            found,
            vec!["HOSTA/20261130T120000Z", "HOSTB/20261201T080000Z"]
        );
        assert_eq!(
            plan::newest(&found).map(String::as_str),
            Some("HOSTB/20261201T080000Z")
        );
        assert_eq!(plan::newest(&[]), None);
        std::fs::remove_dir_all(&root).unwrap();
    }
}

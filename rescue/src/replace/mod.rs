//! `rescue.action=replace`: a converted host whose arrays run degraded gets its second
//! disk back — a blank one in the dead disk's place, or the disk that was gone and
//! returned.
//!
//! Order, and why: plan from what inspect found (no write); on a blank disk the survivor's
//! table with new GUIDs; each array started from the survivor's member alone; the host's
//! own bootloader on the new disk while the arrays hold only the survivor's members (GRUB
//! lists members by device number and stops at the first that is not active); then the
//! new member added (a fresh spare superblock, full recovery) or the returning one
//! re-added (its slot back, with a bitmap only what changed). The survivor is only ever
//! read, except through its running arrays.
//!
//! No journal: a second run converges from what the disks show. A new disk that already
//! carries the survivor's table and members of its arrays is a returning disk to it, and
//! its members are re-added (or added when the kernel refuses them).

pub mod plan;

use crate::arrays::partition_name_by_rule;
use crate::cmdline;
use crate::convert::bootchain::{self, BootChain};
use crate::convert::chroot::{chroot_ok, mounted};
use crate::convert::{open_wiped_member, run_step, wait_in_sync, zero, Rescue, Step};
use crate::formats::{gpt, md};
use crate::inspect::Disk;
use crate::sys;
use crate::units::Sectors;
use plan::{MemberAction, Mode, ReplaceArray, ReplacePlan};
use serde::{Deserialize, Serialize};
use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::time::Instant;

/// What the report says about a replacement.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReplaceReport {
    pub dry_run: bool,
    pub plan: Option<ReplacePlan>,
    pub steps: Vec<Step>,
    pub arrays: Vec<ArrayRecovery>,
}

/// One array after the replacement.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ArrayRecovery {
    pub device: String,
    pub uuid: String,
    /// `add`, `re-add`, `add (re-add refused: ...)` or `nothing`.
    pub how: String,
    pub array_sectors: u64,
    /// Sectors the kernel wrote to the new member (its partition's write counter), when
    /// the rescue waited for the recovery.
    pub recovered_sectors: Option<u64>,
    pub recovery_ms: Option<u64>,
    /// `/sys/block/mdN/md/array_state` and `sync_action` at the end.
    pub state: String,
}

/// Runs the replacement; errors are returned as the operator should read them.
pub fn run(
    ctx: &mut dyn Rescue,
    args: &cmdline::Plan,
    disks: &[Disk],
    rep: &mut ReplaceReport,
) -> Result<(), String> {
    rep.dry_run = args.dry_run;
    let arrays = crate::arrays::arrays(disks);
    let p = plan::plan(
        disks,
        &arrays,
        &plan::Options {
            survivor: args.survivor.as_deref(),
            new: args.new.as_deref(),
            wipe: args.wipe.as_deref(),
            wait_resync: args.wait_resync,
        },
    )
    .map_err(|e| e.to_string())?;
    for line in p.lines() {
        ctx.say(&line);
    }
    rep.plan = Some(p.clone());
    if args.dry_run {
        ctx.say("replace: dry run, nothing written");
        return Ok(());
    }
    ctx.require_modules(&["md_mod", "raid1", "ext4"])?;
    if p.boot_chain == BootChain::GrubEfi {
        crate::convert::uefi::open_variables(ctx)?;
    }
    let steps = &mut rep.steps;
    if p.mode == Mode::Rebuild {
        run_step(ctx, steps, "replace", "partition-new", || partition_new(&p))?;
    }
    run_step(ctx, steps, "replace", "arrays", || {
        let mut started = Vec::new();
        for a in &p.arrays {
            started.push(format!("{} {}", a.device, start(&p, a)?));
        }
        Ok(started.join(", "))
    })?;
    // Before the new members join: grub-install lists an array's members by device
    // number and stops at the first one that is not active, so a recovering member in
    // number 0 (the new disk beside a survivor in number 1) hid the survivor ("disk
    // mduuid/... not found"). The boot code is per disk; the recovery brings the rest.
    run_step(ctx, steps, "replace", "bootloader-new", || bootloader(&p))?;
    let mut how = Vec::new();
    let mut before = Vec::new();
    run_step(ctx, steps, "replace", "members", || {
        let mut done = Vec::new();
        for a in &p.arrays {
            let (h, b) = attach(&p, a)?;
            done.push(format!("{} {h}", a.device));
            how.push(h);
            before.push(b);
        }
        Ok(done.join(", "))
    })?;
    let mut recovered = vec![None; p.arrays.len()];
    if p.wait_resync {
        run_step(ctx, steps, "replace", "wait-recovery", || {
            let (line, per) = wait_recovery(&p, &before, |_| true)?;
            recovered = per;
            Ok(line)
        })?;
    } else if p.boot_chain.boots_after_sync() {
        // extlinux reads /boot raw from the disk the BIOS boots, UEFI firmware the ESP:
        // the new disk boots only once those members are complete.
        run_step(ctx, steps, "replace", "wait-boot-recovery", || {
            wait_recovery(&p, &before, |a| {
                a.role().is_some_and(|r| p.boot_chain.reads_raw(r))
            })
            .map(|(line, _)| line)
        })?;
    }
    for ((a, h), r) in p.arrays.iter().zip(how).zip(recovered) {
        let name = md_name(&a.device);
        let st = sys::md::array_state(name).unwrap_or_default();
        rep.arrays.push(ArrayRecovery {
            device: a.device.clone(),
            uuid: a.uuid.clone(),
            how: h,
            array_sectors: st.size_sectors,
            recovered_sectors: r.map(|(s, _)| s),
            recovery_ms: r.map(|(_, ms)| ms),
            state: format!("{} {}", st.array_state, st.sync_action),
        });
    }
    sys::sync();
    for a in &p.arrays {
        let _ = sys::md::stop_array(Path::new(&a.device));
    }
    ctx.say("replace: done");
    Ok(())
}

fn md_name(device: &str) -> &str {
    device.rsplit('/').next().unwrap_or(device)
}

fn part(disk: &str, n: u32) -> Result<PathBuf, String> {
    crate::convert::partition_path(md_name(disk), n)
}

/// The survivor's table with new GUIDs on the new disk, and its protective MBR's active
/// flag (the boot code comes with the bootloader).
fn partition_new(p: &ReplacePlan) -> Result<String, String> {
    let mut s =
        File::open(&p.survivor.path).map_err(|e| format!("open {}: {e}", p.survivor.path))?;
    let table =
        gpt::read(&mut s, Some(p.sector_size)).map_err(|e| format!("{}: {e}", p.survivor.path))?;
    let mut mbr = [0u8; 512];
    s.seek(SeekFrom::Start(0))
        .and_then(|_| s.read_exact(&mut mbr))
        .map_err(|e| format!("{}: reading the MBR: {e}", p.survivor.path))?;
    let active = mbr[446] == 0x80;
    let mut dev = File::options()
        .read(true)
        .write(true)
        .open(&p.new.path)
        .map_err(|e| format!("open {}: {e}", p.new.path))?;
    let size = dev.seek(SeekFrom::End(0)).map_err(|e| e.to_string())?;
    // Whatever was there (a table, superblocks at either end) must not survive.
    zero(&mut dev, 0, 1 << 20)?;
    zero(&mut dev, size.saturating_sub(1 << 20), 1 << 20)?;
    let written = gpt::clone_onto(
        &table,
        &mut dev,
        p.sector_size,
        &mut gpt::GuidSource::Random,
    )
    .map_err(|e| format!("{}: {e}", p.new.path))?;
    gpt::write_protective_mbr(&mut dev, p.sector_size, gpt::BootCode::Keep, active)
        .map_err(|e| format!("{}: {e}", p.new.path))?;
    dev.sync_all().map_err(|e| e.to_string())?;
    drop(dev);
    sys::md::reread_partitions(Path::new(&p.new.path)).map_err(|e| e.to_string())?;
    Ok(format!(
        "{} partitions, disk GUID {}",
        written.partitions.len(),
        written.disk_guid
    ))
}

fn member_size(dev: &mut File) -> Result<Sectors, String> {
    Ok(Sectors(
        dev.seek(SeekFrom::End(0)).map_err(|e| e.to_string())? / 512,
    ))
}

fn version(a: &ReplaceArray) -> Result<md::MetadataVersion, String> {
    a.metadata.parse()
}

/// Starts the array from the survivor's member (from both members when both are in sync).
fn start(p: &ReplacePlan, a: &ReplaceArray) -> Result<&'static str, String> {
    let sp = part(&p.survivor.path, a.survivor_partition)?;
    let v = version(a)?;
    let md_dev = sys::md::create_device(md_index(&a.device)?).map_err(|e| e.to_string())?;
    if sys::md::working_disks(&md_dev)
        .map_err(|e| e.to_string())?
        .is_some_and(|n| n > 0)
    {
        return Ok("already running");
    }
    let (major, minor) = v.major_minor();
    let mut members = vec![(sp, a.survivor_slot)];
    if a.action == MemberAction::Nothing {
        // In sync on both disks: started from both, or the new disk's member would
        // fall behind while the survivor's alone is written.
        let np = part(&p.new.path, a.new_partition)?;
        if let md::Role::Active(slot) = read_member(&np, v)?.role {
            members.push((np, u32::from(slot)));
        }
    }
    sys::md::start_array(&md_dev, major, minor, &members).map_err(|e| e.to_string())?;
    Ok(if members.len() == 2 {
        "started from both"
    } else {
        "started degraded"
    })
}

/// Gives the running array its new member; says how, and the new member's write
/// counter right before the kernel started recovering onto it.
fn attach(p: &ReplacePlan, a: &ReplaceArray) -> Result<(String, Option<u64>), String> {
    let sp = part(&p.survivor.path, a.survivor_partition)?;
    let np = part(&p.new.path, a.new_partition)?;
    let v = version(a)?;
    let md_dev = PathBuf::from(&a.device);
    if sys::md::working_disks(&md_dev).map_err(|e| e.to_string())? == Some(2) {
        return Ok(("nothing (both members in sync)".into(), None));
    }
    match a.action {
        MemberAction::Nothing => Ok(("nothing".into(), None)),
        MemberAction::Add => {
            write_spare(&sp, &np, v)?;
            let b = sectors_written(&np);
            sys::md::hot_add(&md_dev, &np).map_err(|e| e.to_string())?;
            Ok(("add".into(), b))
        }
        MemberAction::ReAdd => {
            let sb = read_member(&np, v)?;
            let slot = match sb.role {
                md::Role::Active(s) => u32::from(s),
                _ => 1 - a.survivor_slot.min(1),
            };
            let b = sectors_written(&np);
            match sys::md::re_add(&md_dev, &np, sb.dev_number, slot) {
                Ok(()) => Ok(("re-add".into(), b)),
                Err(e) => {
                    // Too old for the bitmap, or none: a full recovery instead.
                    write_spare(&sp, &np, v)?;
                    let b = sectors_written(&np);
                    sys::md::hot_add(&md_dev, &np).map_err(|e| e.to_string())?;
                    Ok((format!("add (re-add refused: {e})"), b))
                }
            }
        }
    }
}

fn read_member(part: &Path, v: md::MetadataVersion) -> Result<md::Superblock, String> {
    let mut f = File::open(part).map_err(|e| format!("open {}: {e}", part.display()))?;
    let size = member_size(&mut f)?;
    md::read_version(&mut f, size, v).map_err(|e| format!("{}: {e}", part.display()))
}

fn md_index(device: &str) -> Result<u32, String> {
    device
        .strip_prefix("/dev/md")
        .and_then(|n| n.parse().ok())
        .ok_or_else(|| format!("bad md device {device} in the plan"))
}

/// A spare superblock for this array on the new member, made from the survivor's: the
/// kernel recovers onto it when it is hot-added.
pub fn write_spare(
    survivor_part: &Path,
    new_part: &Path,
    v: md::MetadataVersion,
) -> Result<(), String> {
    let sb = read_member(survivor_part, v)?;
    let (mut dev, size) = open_wiped_member(new_part)?;
    let geo = md::geometry_with_size(
        v,
        Sectors(size / 512),
        Some(sb.array_size),
        sb.bitmap.is_some(),
    )
    .map_err(|e| format!("{}: {e}", new_part.display()))?;
    // The first device number no active member holds.
    let dev_number = (0..)
        .find(|n| {
            *n != sb.dev_number
                && !matches!(sb.roles.get(*n as usize), Some(Some(md::Role::Active(_))))
        })
        .unwrap_or(1);
    let mut roles = sb.roles.clone();
    if roles.len() <= dev_number as usize {
        roles.resize(dev_number as usize + 1, None);
    }
    roles[dev_number as usize] = Some(md::Role::Spare);
    let (homehost, name) = match sb.name.split_once(':') {
        Some((h, n)) => (h.to_string(), n.to_string()),
        None => (String::new(), sb.name.clone()),
    };
    let spec = md::ArraySpec {
        uuid: sb.array_uuid,
        homehost,
        name,
        raid_disks: sb.raid_disks,
        ctime: sb.ctime,
        utime: sys::unix_time(),
        events: 1,
        clean: true,
        roles,
    };
    let mut device_uuid = [0u8; 16];
    File::open("/dev/urandom")
        .and_then(|mut r| r.read_exact(&mut device_uuid))
        .map_err(|e| format!("random member UUID: {e}"))?;
    md::write_member(
        &mut dev,
        &geo,
        &spec,
        &md::MemberSpec {
            dev_number,
            device_uuid,
            dev_major_minor: (0, 0),
        },
    )
    .map_err(|e| format!("{}: {e}", new_part.display()))?;
    dev.sync_all().map_err(|e| e.to_string())
}

/// The host's own bootloader on the new disk, from its root (the array, mounted).
fn bootloader(p: &ReplacePlan) -> Result<String, String> {
    let root = p
        .arrays
        .iter()
        .find(|a| a.root)
        .ok_or("no array holds the host's root: cannot install its bootloader")?;
    let disk = p.new.path.clone();
    mounted(Path::new(&root.device), "replace-root", false, "", |r| {
        match p.boot_chain {
            // The ESP is an array: its recovery brings the loader and the removable path.
            // The ESP is an array: its recovery brings the loader and the removable
            // path. The firmware's entry is per disk.
            BootChain::GrubEfi => crate::convert::uefi::write_new_disk_entry(
                Path::new(&p.survivor.path),
                Path::new(&disk),
                p.new.serial.as_deref().unwrap_or(&p.new.name),
            ),
            BootChain::GrubBios => {
                chroot_ok(r, "grub-install", &["--target=i386-pc", &disk])?;
                Ok(format!("grub on {disk}"))
            }
            BootChain::ExtlinuxBios => {
                // extlinux's boot sector and ldlinux.sys are inside root's member (data at
                // offset 0): the recovery brings them. The MBR code is per disk.
                let (from, code) = bootchain::gptmbr_in(r).map_err(|e| e.to_string())?;
                let mut dev = File::options()
                    .read(true)
                    .write(true)
                    .open(&disk)
                    .map_err(|e| format!("open {disk}: {e}"))?;
                let active = {
                    let mut mbr = [0u8; 512];
                    dev.read_exact(&mut mbr).map_err(|e| e.to_string())?;
                    mbr[446] == 0x80
                };
                gpt::write_protective_mbr(
                    &mut dev,
                    p.sector_size,
                    gpt::BootCode::Replace(&code),
                    active,
                )
                .and_then(|_| dev.sync_all().map_err(Into::into))
                .map_err(|e| format!("{disk}: writing the MBR: {e}"))?;
                Ok(format!("{} in the MBR of {disk}", from.display()))
            }
        }
    })
}

/// Sectors written so far to a partition (`/sys/class/block/<name>/stat`, field 7).
fn sectors_written(part: &Path) -> Option<u64> {
    let name = part.file_name()?.to_str()?;
    let s = std::fs::read_to_string(format!("/sys/class/block/{name}/stat")).ok()?;
    s.split_whitespace().nth(6)?.parse().ok()
}

type Recovered = Vec<Option<(u64, u64)>>;

/// Waits until every array is in sync; per array the sectors written to the new member
/// and the time it took.
fn wait_recovery(
    p: &ReplacePlan,
    before: &[Option<u64>],
    which: impl Fn(&ReplaceArray) -> bool,
) -> Result<(String, Recovered), String> {
    let start = Instant::now();
    let parts: Vec<PathBuf> = p
        .arrays
        .iter()
        .map(|a| PathBuf::from(partition_name_by_rule(&p.new.path, a.new_partition)))
        .collect();
    let chosen: Vec<usize> = (0..p.arrays.len())
        .filter(|&i| which(&p.arrays[i]))
        .collect();
    let named: Vec<(String, String)> = chosen
        .iter()
        .map(|&i| {
            (
                p.arrays[i].device.clone(),
                md_name(&p.arrays[i].device).to_string(),
            )
        })
        .collect();
    let in_sync_ms = wait_in_sync(&named, "replace: recovery")?;
    let mut done_at: Vec<Option<u64>> = vec![None; p.arrays.len()];
    for (&i, ms) in chosen.iter().zip(in_sync_ms) {
        done_at[i] = Some(ms);
    }
    let per: Recovered = parts
        .iter()
        .zip(before)
        .zip(&done_at)
        .map(|((part, b), ms)| Some((sectors_written(part)?.saturating_sub((*b)?), (*ms)?)))
        .collect();
    Ok((
        format!("in sync after {} s", start.elapsed().as_secs()),
        per,
    ))
}

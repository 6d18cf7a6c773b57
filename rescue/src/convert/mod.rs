//! `rescue.action=convert`: a XenServer host on one disk becomes md RAID1 in one pass.
//!
//! Order of the steps, and why (see ARCHITECTURE.md): plan and preflight with no write;
//! partition the mirror and create degraded arrays on it; copy used blocks and verify;
//! configure the new root and make the mirror bootable on its own; only then repartition
//! the source and attach it. Every phase is journaled on the mirror first, so booting the
//! rescue again with the same arguments resumes the job.

pub mod bootchain;
pub(crate) mod chroot;
mod configure;
pub mod journal;
pub mod plan;
mod preflight;
pub(crate) mod select;
pub mod uefi;

use crate::clone::{self, CloneArgs};
use crate::cmdline;
use crate::formats::{gpt, md};
use crate::inspect::Disk;
use crate::sys;
use crate::units::{Bytes, Sectors};
use chroot::{chroot_ok, chroot_status, with_source_root, with_target_root};
use configure::Side;
use journal::{Journal, Phase};
use plan::{ArrayRole, ConvertPlan, Payload};
use preflight::preflight;
use select::{
    check_selector, degraded_host, describe_contents, find_journal, names_disk, select_mirror,
    select_source, writable_target,
};
use serde::{Deserialize, Serialize};
use std::fs::File;
use std::io::{Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// What the report says about a conversion.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConvertReport {
    pub dry_run: bool,
    pub already_converted: bool,
    /// `new` or the phase a resumed job started from.
    pub started_from: String,
    pub plan: Option<ConvertPlan>,
    pub steps: Vec<Step>,
    pub bytes_copied: u64,
    pub files_changed: Vec<String>,
    pub arrays: Vec<ArrayOutcome>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Step {
    pub name: String,
    pub ok: bool,
    pub duration_ms: u64,
    pub detail: String,
    /// The target's own programs this step ran in a chroot, each with its output.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tools: Vec<chroot::ToolRun>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ArrayOutcome {
    pub role: ArrayRole,
    pub device: String,
    pub uuid: String,
    pub metadata: String,
    pub members: Vec<String>,
    pub state: String,
}

/// What the conversion needs from the system running it (PID 1 in the rescue).
pub trait Rescue {
    /// A line for the operator on every console.
    fn say(&mut self, line: &str);
    /// Loads kernel modules, or says which are missing from the image.
    fn require_modules(&mut self, names: &[&str]) -> Result<(), String>;
}

/// `/dev/...` of a disk's partition, waiting for the kernel to create it.
pub(crate) fn partition_path(disk_name: &str, number: u32) -> Result<PathBuf, String> {
    crate::devices::wait_for_partition(
        Path::new("/sys/block"),
        disk_name,
        number,
        Duration::from_secs(10),
    )
}

const WORK: &str = "/run/xenraid";

/// Runs the conversion; errors are returned as the operator should read them.
pub fn run(
    ctx: &mut dyn Rescue,
    args: &cmdline::Plan,
    disks: &[Disk],
    rep: &mut ConvertReport,
) -> Result<(), String> {
    rep.dry_run = args.dry_run;
    // A job in progress (or finished) is found by its journal on the mirror.
    let journal = find_journal(disks).filter(|(mirror, j)| {
        // A journal whose source is gone, on a disk the operator allows to wipe, is the
        // leftover of another job: start a new one.
        journal_source(disks, mirror, j).is_some()
            || !args.wipe.as_deref().is_some_and(|w| names_disk(w, mirror))
    });
    if let Some((mirror, mut j)) = journal {
        let Some(source) = journal_source(disks, mirror, &j) else {
            // A finished job whose source is gone: the host lost a disk, and wiping this
            // one would destroy the only copy left.
            if j.phase == Phase::Done {
                if let Some(line) = degraded_host(mirror, disks) {
                    return Err(line);
                }
            }
            return Err(format!(
                "{} holds the journal of a conversion of disk GUID {}, but that disk is not attached: attach it or wipe {} to start over",
                mirror.path, j.plan.source_disk_guid, mirror.path
            ));
        };
        check_selector(args.source.as_deref(), source, "rescue.source")?;
        check_selector(args.mirror.as_deref(), mirror, "rescue.mirror")?;
        // Every later step opens the disks by the plan's paths: this boot's names.
        if let Some(line) = j.plan.rebind_disks(source, mirror) {
            ctx.say(&line);
        }
        // The one choice a rerun may change: stop writing boot entries (a firmware that
        // refuses them); the removable path boots each disk anyway.
        if let Some(efi) = j
            .plan
            .efi
            .as_mut()
            .filter(|e| e.entries && !args.efi_entries)
        {
            efi.entries = false;
            ctx.say("convert: rescue.efi-entries=no: no more firmware boot entries are written; each disk boots by the removable path");
        }
        rep.plan = Some(j.plan.clone());
        if j.phase == Phase::Done {
            rep.already_converted = true;
            rep.started_from = "done".into();
            ctx.say(&format!(
                "convert: {} is already converted (mirror {}); nothing to do",
                source.path, mirror.path
            ));
            return Ok(());
        }
        rep.started_from = serde_json::to_value(j.phase)
            .ok()
            .and_then(|v| v.as_str().map(String::from))
            .unwrap_or_default();
        if args.dry_run {
            ctx.say(&format!(
                "convert: a job is in progress (phase {}); dry run: nothing written",
                rep.started_from
            ));
            return Ok(());
        }
        ctx.say(&format!(
            "convert: resuming the job on {} and {} from phase {}",
            source.path, mirror.path, rep.started_from
        ));
        return execute(ctx, j, rep);
    }

    let source_sel = args.source.as_deref().ok_or("rescue.source= is required for convert: a disk name (sda), /dev path, serial:<serial> or auto")?;
    let mirror_sel = args.mirror.as_deref().ok_or("rescue.mirror= is required for convert: a disk name (sdb), /dev path, serial:<serial> or auto")?;
    let source = select_source(source_sel, disks)?;
    if let Some(md) = &source.whole_disk_md {
        return Err(format!(
            "{} is itself a member of a whole-disk md array ({} member, {} of {} slots): it is already RAID, nothing to convert; if that array is gone for good, clear its superblock (mdadm --zero-superblock {}) and convert again",
            source.path, md.level, md.array_state, md.raid_disks, source.path
        ));
    }
    if let Some(line) = degraded_host(source, disks) {
        return Err(line);
    }
    if source.xenserver.as_ref().is_some_and(|x| x.on_md) {
        rep.already_converted = true;
        ctx.say(&format!(
            "convert: {} is already on md RAID; nothing to do",
            source.path
        ));
        return Ok(());
    }
    let mirror = select_mirror(mirror_sel, source, disks)?;
    // From here a refusal still plans: the dry run shows the plan with every blocker,
    // and a real run names them all at once, before anything is written.
    let mut blockers = Vec::new();
    if let Err(e) = writable_target(mirror, "rescue.mirror") {
        blockers.push(e);
    }
    if args.attach_source && source.read_only {
        blockers.push(format!(
            "rescue.source: {} is read-only (the kernel refuses writes to it) and becomes the second member at the end: release its write protection, or convert with rescue.attach-source=no",
            source.path
        ));
    }
    let wipe_allowed = args.wipe.as_deref().is_some_and(|w| names_disk(w, mirror));
    if !mirror.blank && !wipe_allowed && !crate::stick::is_stick_disk(mirror) {
        let what = describe_contents(mirror);
        blockers.push(
            plan::PlanError::MirrorNotBlank(
                mirror.path.clone(),
                what,
                mirror
                    .serial
                    .clone()
                    .map(|s| format!("serial:{s}"))
                    .unwrap_or(mirror.name.clone()),
            )
            .to_string(),
        );
    }
    if bootchain::BootChain::of(source) == Ok(bootchain::BootChain::GrubEfi) {
        // A UEFI host's boot entries: read for the plan (the one booting its ESP).
        uefi::open_variables(ctx)?;
    }
    let plan = match preflight(args, source, mirror) {
        Ok(p) => p,
        Err(e) => {
            // No plan to show; still name everything that blocks at once.
            blockers.push(e);
            return Err(blocked(&blockers));
        }
    };
    // What the configure step will need from the host's own root, read now (read-only,
    // without replaying a journal): a missing tool or file refuses the job.
    ctx.require_modules(&["ext4"])?;
    if plan.esp_array().is_some() {
        ctx.require_modules(&["vfat", "nls_cp437", "nls_ascii"])?;
        if plan.efi.as_ref().is_some_and(|e| !e.entries) && args.efi_entries {
            blockers.push(format!(
                "{} boots by UEFI, but the rescue was started in BIOS (legacy) mode: it cannot write the firmware's boot entries; start the rescue in UEFI mode, or run with rescue.efi-entries=no to boot each disk by the removable path {} only",
                source.path,
                uefi::REMOVABLE_PATH
            ));
        }
    }
    if let Err(e) = with_source_root(&plan, |root| configure::check_target(root, &plan)) {
        blockers.push(e);
    }
    for line in plan.human_lines() {
        ctx.say(&line);
    }
    rep.plan = Some(plan.clone());
    if !blockers.is_empty() {
        for b in &blockers {
            ctx.say(&format!("convert: blocked: {b}"));
        }
        return Err(blocked(&blockers));
    }
    rep.started_from = "new".into();
    if args.dry_run {
        ctx.say("convert: dry run: nothing was written");
        return Ok(());
    }
    let j = Journal {
        seq: 0,
        phase: Phase::Planned,
        copied: Vec::new(),
        plan,
        files_changed: Vec::new(),
    };
    execute(ctx, j, rep)
}

/// The source disk of the job journaled on `mirror`, when it is attached.
fn journal_source<'a>(disks: &'a [Disk], mirror: &Disk, j: &Journal) -> Option<&'a Disk> {
    disks.iter().find(|d| {
        d.path != mirror.path
            && d.disk_guid
                .as_deref()
                .is_some_and(|g| g == j.plan.source_disk_guid || g == j.plan.source_new_disk_guid)
    })
}

/// One line for the report: the blocker itself when there is one, else all of them.
fn blocked(blockers: &[String]) -> String {
    match blockers {
        [one] => one.clone(),
        all => format!(
            "{} problems block the conversion (nothing was written): {}",
            all.len(),
            all.join("; ")
        ),
    }
}

fn disk_name(path: &str) -> &str {
    path.rsplit('/').next().unwrap_or(path)
}

/// Runs the job from the journal's phase to the end.
fn execute(ctx: &mut dyn Rescue, mut j: Journal, rep: &mut ConvertReport) -> Result<(), String> {
    ctx.require_modules(&["md_mod", "raid1", "ext4"])?;
    let plan = j.plan.clone();
    if plan.esp_array().is_some() {
        ctx.require_modules(&["vfat", "nls_cp437", "nls_ascii"])?;
        if plan.efi.as_ref().is_some_and(|e| e.entries) {
            uefi::open_variables(ctx)?;
        }
    }
    let mirror_path = PathBuf::from(&plan.mirror.path);
    let source_path = PathBuf::from(&plan.source.path);
    let mut mirror_dev = File::options()
        .read(true)
        .write(true)
        .open(&mirror_path)
        .map_err(|e| format!("open {}: {e}", plan.mirror.path))?;
    let save = |j: &mut Journal, dev: &mut File| -> Result<(), String> {
        journal::write(dev, j, |d| d.sync_all())
            .map_err(|e| format!("writing the journal on the mirror: {e}"))
    };

    if j.phase == Phase::Planned {
        step(ctx, rep, "partition-mirror", || {
            if j.seq == 0 {
                // A new job: an older job's journal (a reused disk) must not outrank it.
                journal::erase(&mut mirror_dev)
                    .map_err(|e| format!("clearing an old journal on the mirror: {e}"))?;
            }
            save(&mut j, &mut mirror_dev)?;
            write_table(&mut mirror_dev, &plan, false)?;
            reread(&mirror_path)?;
            for a in &plan.arrays {
                let part = partition_path(disk_name(&plan.mirror.path), a.partition)?;
                write_superblock(&part, &plan, a, false)?;
            }
            j.phase = Phase::MirrorReady;
            save(&mut j, &mut mirror_dev)?;
            Ok(format!(
                "GPT with {} partitions, {} superblocks",
                plan.partitions.len(),
                plan.arrays.len()
            ))
        })?;
    }
    // From here the arrays run on the mirror's members.
    step(ctx, rep, "assemble", || start_arrays(&plan))?;

    if j.phase == Phase::MirrorReady {
        for a in &plan.arrays {
            if j.copied.contains(&a.role) {
                continue;
            }
            let name = format!("copy-{}", a.role.as_str());
            let mut moved = 0;
            step(ctx, rep, &name, || {
                let (bytes, copy_secs, verify_secs) = copy_array(&plan, a)?;
                moved = bytes.0;
                Ok(format!(
                    "{bytes} moved in {copy_secs:.1} s, read back and verified in {verify_secs:.1} s"
                ))
            })?;
            rep.bytes_copied += moved;
            j.copied.push(a.role);
            save(&mut j, &mut mirror_dev)?;
        }
        step(ctx, rep, "e2fsck", || fsck_copies(&plan))?;
        j.phase = Phase::Copied;
        save(&mut j, &mut mirror_dev)?;
    }
    if j.phase == Phase::Copied {
        let mut changed = Vec::new();
        step(ctx, rep, "configure", || {
            with_target_root(&plan, |root| {
                let (files, kernels) = configure::configure_files(root, &plan)?;
                changed = files;
                let initrds = configure::build_initrds(root, &plan, &kernels)?;
                let boot = configure::make_bootable(root, &plan, Side::Mirror)?;
                Ok(format!("initrds: {initrds}; {boot}"))
            })
        })?;
        j.files_changed = changed;
        j.phase = Phase::Configured;
        save(&mut j, &mut mirror_dev)?;
    }
    rep.files_changed = j.files_changed.clone();
    if !plan.attach_source {
        stop_arrays(&plan);
        j.phase = Phase::Done;
        save(&mut j, &mut mirror_dev)?;
        ctx.say(&format!(
            "convert: done; the source {} was left untouched (rescue.attach-source=no)",
            plan.source.path
        ));
        return Ok(());
    }
    if j.phase >= Phase::Configured && j.phase < Phase::Done {
        j.phase = Phase::SourcePartitioned;
        save(&mut j, &mut mirror_dev)?;
        step(ctx, rep, "attach-source", || {
            let mut src = File::options()
                .read(true)
                .write(true)
                .open(&source_path)
                .map_err(|e| format!("open {}: {e}", plan.source.path))?;
            write_table(&mut src, &plan, true)?;
            drop(src);
            kernel_log_line("convert: source repartitioned");
            reread(&source_path)?;
            for a in &plan.arrays {
                let part = partition_path(disk_name(&plan.source.path), a.partition)?;
                write_superblock(&part, &plan, a, true)?;
                sys::md::hot_add(Path::new(&a.device), &part).map_err(|e| e.to_string())?;
            }
            Ok(format!(
                "{} partitions added; the kernel resyncs them",
                plan.arrays.len()
            ))
        })?;
        j.phase = Phase::SourceAttached;
        save(&mut j, &mut mirror_dev)?;
        step(ctx, rep, "bootloader-source", || {
            with_target_root(&plan, |root| {
                configure::make_bootable(root, &plan, Side::Source)
            })
        })?;
    }
    if plan.wait_resync {
        step(ctx, rep, "wait-resync", || wait_resync(&plan, |_| true))?;
    } else if plan.attach_source && plan.boot_chain.boots_after_sync() {
        step(ctx, rep, "wait-boot-sync", || {
            wait_resync(&plan, |a| plan.boot_chain.reads_raw(a.role))
        })?;
    }
    for a in &plan.arrays {
        let name = disk_name(&a.device).to_string();
        let st = sys::md::array_state(&name)
            .map(|s| format!("{} {}", s.array_state, s.sync_action))
            .unwrap_or_default();
        rep.arrays.push(ArrayOutcome {
            role: a.role,
            device: a.device.clone(),
            uuid: a.uuid.clone(),
            metadata: a.metadata.clone(),
            members: vec![
                format!("{}#{}", plan.mirror.path, a.partition),
                format!("{}#{}", plan.source.path, a.partition),
            ],
            state: st,
        });
    }
    stop_arrays(&plan);
    j.phase = Phase::Done;
    save(&mut j, &mut mirror_dev)?;
    ctx.say("convert: done");
    Ok(())
}

fn step(
    ctx: &mut dyn Rescue,
    rep: &mut ConvertReport,
    name: &str,
    f: impl FnOnce() -> Result<String, String>,
) -> Result<(), String> {
    run_step(ctx, &mut rep.steps, "convert", name, f)
}

/// Runs one named step: its start and its outcome with the time taken on the console,
/// and a [`Step`] in `steps`.
pub(crate) fn run_step(
    ctx: &mut dyn Rescue,
    steps: &mut Vec<Step>,
    action: &str,
    name: &str,
    f: impl FnOnce() -> Result<String, String>,
) -> Result<(), String> {
    ctx.say(&format!("{action}: {name} ..."));
    let t = Instant::now();
    let beat = crate::heartbeat::Heartbeat::start(
        format!("{action}: {name}"),
        Duration::from_secs(10),
        kernel_log_line,
    );
    let r = f();
    drop(beat);
    let ok = r.is_ok();
    let detail = match &r {
        Ok(d) => d.clone(),
        Err(e) => e.clone(),
    };
    ctx.say(&format!(
        "{action}: {name} {} in {:.1} s: {detail}",
        if ok { "done" } else { "FAILED" },
        t.elapsed().as_secs_f64()
    ));
    steps.push(Step {
        name: name.into(),
        ok,
        duration_ms: t.elapsed().as_millis() as u64,
        detail,
        tools: chroot::take_tool_runs(),
    });
    r.map(drop).map_err(|e| format!("{name}: {e}"))
}

pub fn write_table(dev: &mut File, plan: &ConvertPlan, source_side: bool) -> Result<(), String> {
    let table = plan.table(source_side)?;
    // Old signatures at either end of the disk must not survive (backup GPT, md 1.0/0.90);
    // the journal (512 KiB..1 MiB) must.
    let size = dev.seek(SeekFrom::End(0)).map_err(|e| e.to_string())?;
    zero(dev, 0, journal::SLOT_OFFSETS[0])?;
    zero(dev, size.saturating_sub(1 << 20), 1 << 20)?;
    gpt::write(dev, &table).map_err(|e| e.to_string())?;
    gpt::write_protective_mbr(
        dev,
        plan.sector_size,
        gpt::BootCode::Keep,
        plan.protective_mbr_active,
    )
    .map_err(|e| e.to_string())?;
    dev.sync_all().map_err(|e| e.to_string())
}

pub(crate) fn zero(dev: &mut File, at: u64, len: u64) -> Result<(), String> {
    dev.seek(SeekFrom::Start(at))
        .and_then(|_| dev.write_all(&vec![0u8; len as usize]))
        .map_err(|e| format!("zeroing: {e}"))
}

fn reread(disk: &Path) -> Result<(), String> {
    sys::md::reread_partitions(disk).map_err(|e| e.to_string())
}

fn version_of(a: &plan::PlannedArray) -> md::MetadataVersion {
    plan::parse_metadata_version(&a.metadata).unwrap_or(md::MetadataVersion::V1_2)
}

/// Opens a member partition read-write with its first and last MiB zeroed: stale
/// superblocks of any version at either end go before a new one is written. Returns the
/// partition's size in bytes.
pub(crate) fn open_wiped_member(part: &Path) -> Result<(File, u64), String> {
    let mut dev = File::options()
        .read(true)
        .write(true)
        .open(part)
        .map_err(|e| format!("open {}: {e}", part.display()))?;
    let size = dev.seek(SeekFrom::End(0)).map_err(|e| e.to_string())?;
    let span = (1u64 << 20).min(size);
    zero(&mut dev, 0, span)?;
    zero(&mut dev, size.saturating_sub(1 << 20), span)?;
    Ok((dev, size))
}

/// Writes this side's member superblock: the mirror's active in slot 0, the source's as
/// a spare the kernel recovers onto.
pub fn write_superblock(
    part: &Path,
    plan: &ConvertPlan,
    a: &plan::PlannedArray,
    source_side: bool,
) -> Result<(), String> {
    let (mut dev, size) = open_wiped_member(part)?;
    let member = Sectors(size / 512);
    let v = version_of(a);
    // The plan sized each member with its bitmap's room; the source's member takes the
    // same layout, so both sides carry the bitmap.
    let geo = md::geometry(v, member, a.bitmap).map_err(|e| e.to_string())?;
    let uuid = md::parse_uuid(&a.uuid).ok_or("bad array UUID in the plan")?;
    let now = sys::unix_time();
    // Both members carry the array's creation time; see `PlannedArray::ctime`.
    let ctime = if a.ctime == 0 { now } else { a.ctime };
    let (dev_number, roles) = if source_side {
        (1, vec![Some(md::Role::Active(0)), Some(md::Role::Spare)])
    } else {
        (0, vec![Some(md::Role::Active(0)), None])
    };
    let spec = md::ArraySpec {
        uuid,
        homehost: a.homehost.clone(),
        // 0.90 has no name, only a preferred minor: the kernel's autodetection (what a
        // mkinitrd initrd uses) starts the array as /dev/md<minor>, the device the
        // target's configuration names.
        name: if v == md::MetadataVersion::V0_90 {
            a.role.md_index().to_string()
        } else {
            a.name.clone()
        },
        raid_disks: 2,
        ctime,
        utime: now,
        events: 1,
        clean: true,
        roles,
    };
    let member_uuid = md::parse_uuid(if source_side {
        &a.source_member_uuid
    } else {
        &a.mirror_member_uuid
    })
    .ok_or("bad member UUID")?;
    let _ = plan;
    md::write_member(
        &mut dev,
        &geo,
        &spec,
        &md::MemberSpec {
            dev_number,
            device_uuid: member_uuid,
            dev_major_minor: (0, 0),
        },
    )
    .map_err(|e| format!("{}: {e}", part.display()))?;
    dev.sync_all().map_err(|e| e.to_string())
}

fn start_arrays(plan: &ConvertPlan) -> Result<String, String> {
    let mut started = Vec::new();
    for a in &plan.arrays {
        let md_dev = sys::md::create_device(a.role.md_index()).map_err(|e| e.to_string())?;
        if sys::md::working_disks(&md_dev)
            .map_err(|e| e.to_string())?
            .is_some_and(|n| n > 0)
        {
            continue;
        }
        let part = partition_path(disk_name(&plan.mirror.path), a.partition)?;
        let (major, minor) = version_of(a).major_minor();
        sys::md::start_array(&md_dev, major, minor, &[(part, 0)]).map_err(|e| e.to_string())?;
        started.push(a.device.clone());
    }
    Ok(format!(
        "started {}",
        if started.is_empty() {
            "none (already running)".into()
        } else {
            started.join(", ")
        }
    ))
}

fn stop_arrays(plan: &ConvertPlan) {
    sys::sync();
    for a in &plan.arrays {
        let _ = sys::md::stop_array(Path::new(&a.device));
    }
}

/// Copies one array's payload and verifies it by read-back; returns bytes moved, seconds
/// copying, seconds verifying.
fn copy_array(plan: &ConvertPlan, a: &plan::PlannedArray) -> Result<(Bytes, f64, f64), String> {
    if matches!(a.payload, Payload::Empty) || a.content_size_bytes == 0 {
        return Ok((Bytes(0), 0.0, 0.0));
    }
    let src = partition_path(disk_name(&plan.source.path), a.partition)?;
    let args = CloneArgs {
        src,
        dst: PathBuf::from(&a.device),
        verify: true,
        raw: plan.journal_replay.contains(&a.partition),
        buffered: false,
        workers: None,
        quiet: true,
    };
    let mut last = Instant::now();
    let mut progress = |p: &crate::copier::Progress| {
        if last.elapsed() >= Duration::from_secs(5) {
            last = Instant::now();
            let eta = p
                .eta
                .map(|e| format!(", ETA {} s", e.as_secs()))
                .unwrap_or_default();
            kernel_log_line(&format!(
                "convert: copy {}: {} of {}, {}/s{eta}",
                a.role.as_str(),
                p.done,
                p.total,
                Bytes(p.rate as u64)
            ));
        }
    };
    let s = clone::clone_with(&args, &mut progress).map_err(|e| {
        format!(
            "copy of {} ({}) onto {}: {e}",
            args.src.display(),
            a.role.as_str(),
            args.dst.display()
        )
    })?;
    if !s.verified {
        return Err("the copy was not verified".into());
    }
    Ok((
        s.bytes_moved,
        s.duration_secs - s.verify_secs,
        s.verify_secs,
    ))
}

/// Checks every ext copy with the target's own e2fsck, run from the source's root.
fn fsck_copies(plan: &ConvertPlan) -> Result<String, String> {
    with_source_root(plan, |root| {
        let mut checked = Vec::new();
        let mut replayed = Vec::new();
        for a in plan
            .arrays
            .iter()
            .filter(|a| matches!(a.payload, Payload::Ext { .. }) && a.content_size_bytes > 0)
        {
            if plan.journal_replay.contains(&a.partition) {
                // Replays the journal and repairs what the crash left; 1 and 2 say it
                // changed something, 4 and up that it could not.
                let code = chroot_status(root, "e2fsck", &["-fy", &a.device])?;
                if code > 2 {
                    return Err(format!(
                        "e2fsck -fy {} (the journal replay on the copy of partition {}) exited with {code}: the filesystem could not be repaired; the source is untouched: boot the host, shut it down cleanly, and convert again",
                        a.device, a.partition
                    ));
                }
                replayed.push(format!("{} (e2fsck -fy exit {code})", a.device));
            }
            chroot_ok(root, "e2fsck", &["-fn", &a.device])?;
            checked.push(a.device.clone());
        }
        let replayed = if replayed.is_empty() {
            String::new()
        } else {
            format!("journal replayed on the copy: {}; ", replayed.join(", "))
        };
        Ok(format!("{replayed}clean: {}", checked.join(", ")))
    })
}

/// Waits for the arrays `which` picks to be in sync; progress lines go to the kernel
/// console.
fn wait_resync(
    plan: &ConvertPlan,
    which: impl Fn(&plan::PlannedArray) -> bool,
) -> Result<String, String> {
    let start = Instant::now();
    let arrays: Vec<(String, String)> = plan
        .arrays
        .iter()
        .filter(|a| which(a))
        .map(|a| {
            (
                a.role.as_str().to_string(),
                disk_name(&a.device).to_string(),
            )
        })
        .collect();
    wait_in_sync(&arrays, "convert: resync")?;
    Ok(format!("in sync after {} s", start.elapsed().as_secs()))
}

/// Polls `(label, md kernel name)` arrays until each is idle with no member missing, with
/// a progress line (`what` and each busy array's action and percentage) every 5 s.
/// Returns, per array, the milliseconds from the start until it was first seen in sync.
pub(crate) fn wait_in_sync(arrays: &[(String, String)], what: &str) -> Result<Vec<u64>, String> {
    let start = Instant::now();
    let mut done_at: Vec<Option<u64>> = vec![None; arrays.len()];
    let mut last = Instant::now();
    loop {
        let mut busy = Vec::new();
        for ((label, md), done) in arrays.iter().zip(done_at.iter_mut()) {
            let s = sys::md::array_state(md).map_err(|e| e.to_string())?;
            if s.sync_action != "idle" || s.degraded > 0 {
                let pct = s
                    .sync_completed
                    .map(|(d, t)| d * 100 / t.max(1))
                    .unwrap_or(0);
                busy.push(format!("{label} {} {pct}%", s.sync_action));
            } else if done.is_none() {
                *done = Some(start.elapsed().as_millis() as u64);
            }
        }
        if busy.is_empty() {
            return Ok(done_at.into_iter().flatten().collect());
        }
        if last.elapsed() >= Duration::from_secs(5) {
            last = Instant::now();
            kernel_log_line(&format!("{what} {}", busy.join(", ")));
        }
        std::thread::sleep(Duration::from_millis(500));
    }
}

/// A progress line through the kernel log: it reaches every console while `step` holds
/// ours, and lands in the saved log.
pub(crate) fn kernel_log_line(line: &str) {
    crate::heartbeat::said();
    let _ = std::fs::write("/dev/kmsg", format!("{line}\n"));
}

#[cfg(test)]
mod tests {
    use super::blocked;

    #[test]
    fn one_blocker_is_its_own_line_several_are_counted() {
        assert_eq!(
            blocked(&["mirror is not blank".into()]),
            "mirror is not blank"
        );
        let two = blocked(&["a: not blank".into(), "b: unclean".into()]);
        assert_eq!(
            two,
            "2 problems block the conversion (nothing was written): a: not blank; b: unclean"
        );
        assert!(!two.contains('\n'));
    }
}

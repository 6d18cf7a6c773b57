//! `rescue.action=convert`: a XenServer host on one disk becomes md RAID1 in one pass.
//!
//! Order of the steps, and why (see ARCHITECTURE.md): plan and preflight with no write;
//! partition the mirror and create degraded arrays on it; copy used blocks and verify;
//! configure the new root and make the mirror bootable on its own; only then repartition
//! the source and attach it. Every phase is journaled on the mirror first, so booting the
//! rescue again with the same arguments resumes the job.

pub mod journal;
pub mod plan;

use crate::clone::{self, CloneArgs};
use crate::cmdline;
use crate::formats::{gpt, md};
use crate::init::{Console, Modules};
use crate::inspect::Disk;
use crate::sys;
use crate::target::dracut;
use crate::units::{Bytes, Sectors};
use journal::{Journal, Phase};
use plan::{ArrayRole, ConvertPlan, Payload};
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

/// The rescue's services the conversion uses.
pub struct Ctx<'a> {
    pub console: &'a mut Console,
    pub modules: &'a mut Modules,
}

const WORK: &str = "/run/xenraid";

/// Runs the conversion; errors are returned as the operator should read them.
pub fn run(
    ctx: &mut Ctx<'_>,
    args: &cmdline::Plan,
    disks: &[Disk],
    rep: &mut ConvertReport,
) -> Result<(), String> {
    rep.dry_run = args.dry_run;
    // A job in progress (or finished) is found by its journal on the mirror.
    let journal = find_journal(disks).filter(|(mirror, j)| {
        // A journal whose source is gone, on a disk the operator allows to wipe, is the
        // leftover of another job: start a new one.
        let source_here = disks.iter().any(|d| {
            d.path != mirror.path
                && d.disk_guid.as_deref().is_some_and(|g| {
                    g == j.plan.source_disk_guid || g == j.plan.source_new_disk_guid
                })
        });
        source_here || !args.wipe.as_deref().is_some_and(|w| names_disk(w, mirror))
    });
    if let Some((mirror, j)) = journal {
        let source = disks
            .iter()
            .find(|d| {
                d.disk_guid.as_deref().is_some_and(|g| g == j.plan.source_disk_guid || g == j.plan.source_new_disk_guid)
                    && d.path != mirror.path
            })
            .ok_or_else(|| {
                format!(
                    "{} holds the journal of a conversion of disk GUID {}, but that disk is not attached: attach it or wipe {} to start over",
                    mirror.path, j.plan.source_disk_guid, mirror.path
                )
            })?;
        check_selector(args.source.as_deref(), source, "rescue.source")?;
        check_selector(args.mirror.as_deref(), mirror, "rescue.mirror")?;
        rep.plan = Some(j.plan.clone());
        if j.phase == Phase::Done {
            rep.already_converted = true;
            rep.started_from = "done".into();
            ctx.console.say(&format!(
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
            ctx.console.say(&format!(
                "convert: a job is in progress (phase {}); dry run: nothing written",
                rep.started_from
            ));
            return Ok(());
        }
        ctx.console.say(&format!(
            "convert: resuming the job on {} and {} from phase {}",
            source.path, mirror.path, rep.started_from
        ));
        return execute(ctx, j, rep);
    }

    let source_sel = args.source.as_deref().ok_or("rescue.source= is required for convert: a disk name (sda), /dev path, serial:<serial> or auto")?;
    let mirror_sel = args.mirror.as_deref().ok_or("rescue.mirror= is required for convert: a disk name (sdb), /dev path, serial:<serial> or auto")?;
    let source = select_source(source_sel, disks)?;
    if source.xenserver.as_ref().is_some_and(|x| x.on_md) {
        rep.already_converted = true;
        ctx.console.say(&format!(
            "convert: {} is already on md RAID; nothing to do",
            source.path
        ));
        return Ok(());
    }
    let mirror = select_mirror(mirror_sel, source, disks)?;
    let wipe_allowed = args.wipe.as_deref().is_some_and(|w| names_disk(w, mirror));
    if !mirror.blank && !wipe_allowed {
        let what = describe_contents(mirror);
        return Err(plan::PlanError::MirrorNotBlank(
            mirror.path.clone(),
            what,
            mirror
                .serial
                .clone()
                .map(|s| format!("serial:{s}"))
                .unwrap_or(mirror.name.clone()),
        )
        .to_string());
    }
    let plan = preflight(args, source, mirror)?;
    for line in plan.human_lines() {
        ctx.console.say(&line);
    }
    rep.plan = Some(plan.clone());
    rep.started_from = "new".into();
    if args.dry_run {
        ctx.console.say("convert: dry run: nothing was written");
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

/// Reads every source partition it needs, and plans. Writes nothing.
fn preflight(args: &cmdline::Plan, source: &Disk, mirror: &Disk) -> Result<ConvertPlan, String> {
    let xs = source
        .xenserver
        .as_ref()
        .ok_or_else(|| plan::PlanError::NotXenServer(source.path.clone()).to_string())?;
    if xs.layout != "7.x" {
        return Err(format!(
            "{} is a XenServer {} install: only 7.x/8.x layouts are converted so far",
            source.path, xs.layout
        ));
    }
    let mut f = File::open(&source.path).map_err(|e| format!("open {}: {e}", source.path))?;
    let table = gpt::read(&mut f, Some(source.logical_sector_size))
        .map_err(|e| format!("{}: {e}", source.path))?;
    let mut facts = plan::SourceFacts::default();
    for p in &source.partitions {
        if p.role.as_deref().and_then(ArrayRole::parse).is_none() {
            continue;
        }
        let dev = partition_path(&source.name, p.number)?;
        let mut part = File::open(&dev).map_err(|e| format!("open {}: {e}", dev.display()))?;
        if matches!(p.fs_type.as_deref(), Some("ext3" | "ext4" | "ext2")) {
            check_clean_ext(&mut part, &dev)?;
        }
        let cp = clone::plan(&mut part, false).map_err(|e| format!("{}: {e}", dev.display()))?;
        let bytes = if cp.swap.is_some() {
            4096
        } else {
            cp.extents.total().0
        };
        facts.copy_bytes.insert(p.number, bytes);
    }
    let mut opts = plan::Options {
        attach_source: args.attach_source,
        wait_resync: args.wait_resync,
        now: sys::unix_time(),
        ..Default::default()
    };
    for (role, v) in &args.metadata {
        let role = ArrayRole::parse(role)
            .ok_or_else(|| format!("rescue.metadata: unknown role {role}"))?;
        let v = plan::parse_metadata_version(v)
            .ok_or_else(|| format!("rescue.metadata: unknown version {v}"))?;
        opts.metadata.insert(role, v);
    }
    let mut guids = gpt::GuidSource::Random;
    let mut guid_err = None;
    let mut new_guid = || {
        guids.next_guid().unwrap_or_else(|e| {
            guid_err = Some(e.to_string());
            gpt::Guid::default()
        })
    };
    let mut p = plan::plan(source, &table, mirror, &facts, &opts, &mut new_guid)
        .map_err(|e| e.to_string())?;
    if let Some(e) = guid_err {
        return Err(format!("no random numbers for new GUIDs: {e}"));
    }
    let mut mbr = [0u8; 512];
    f.seek(SeekFrom::Start(0))
        .and_then(|_| std::io::Read::read_exact(&mut f, &mut mbr))
        .map_err(|e| format!("read {}: {e}", source.path))?;
    p.protective_mbr_active = mbr[446] == 0x80;
    p.files_to_change = TARGET_FILES.iter().map(|s| s.to_string()).collect();
    p.chroot_commands = vec![
        "e2fsck -fn <each ext array> (in a chroot of the source root, read-only)".into(),
        "dracut -f --hostonly|--no-hostonly (as the target's dracut is configured) --add mdraid --add-drivers raid1 <initrd> <kernel version> for every kernel the boot entries use".into(),
        format!("grub-install --target=i386-pc {}", mirror.path),
        format!("grub-install --target=i386-pc {}", source.path),
    ];
    Ok(p)
}

/// Refuses a filesystem that was not cleanly unmounted: its copy would not check clean.
fn check_clean_ext(part: &mut File, dev: &Path) -> Result<(), String> {
    let mut sb = [0u8; 1024];
    part.seek(SeekFrom::Start(1024))
        .and_then(|_| std::io::Read::read_exact(part, &mut sb))
        .map_err(|e| format!("read {}: {e}", dev.display()))?;
    let incompat = u32::from_le_bytes([sb[0x60], sb[0x61], sb[0x62], sb[0x63]]);
    let state = u16::from_le_bytes([sb[0x3a], sb[0x3b]]);
    if incompat & 0x4 != 0 || state & 1 == 0 {
        return Err(format!(
            "{} was not cleanly unmounted (journal needs recovery): boot the host once and shut it down cleanly, then convert",
            dev.display()
        ));
    }
    Ok(())
}

fn describe_contents(d: &Disk) -> String {
    if let Some(t) = &d.table {
        format!(
            "{} partition table with {} partitions",
            t.to_uppercase(),
            d.partitions.len()
        )
    } else if let Some(c) = &d.whole_disk {
        format!("{c:?}")
    } else {
        "signatures at its start or end".into()
    }
}

/// True when `sel` (`sda`, `/dev/sda`, `serial:X`) names this disk.
fn names_disk(sel: &str, d: &Disk) -> bool {
    match sel.strip_prefix("serial:") {
        Some(s) => d.serial.as_deref() == Some(s),
        None => sel == d.name || sel == d.path,
    }
}

fn check_selector(sel: Option<&str>, d: &Disk, key: &str) -> Result<(), String> {
    match sel {
        None | Some("auto") => Ok(()),
        Some(s) if names_disk(s, d) => Ok(()),
        Some(s) => Err(format!("{key}={s} does not name {}, the disk of the conversion in progress: fix {key} or use auto", d.path)),
    }
}

fn select_source<'a>(sel: &str, disks: &'a [Disk]) -> Result<&'a Disk, String> {
    if sel == "auto" {
        let c: Vec<&Disk> = disks.iter().filter(|d| d.xenserver.is_some()).collect();
        return match c.as_slice() {
            [one] => Ok(one),
            [] => Err("rescue.source=auto: no disk holds a XenServer install; name the source disk".into()),
            many => Err(format!(
                "rescue.source=auto: {} disks hold a XenServer install ({}); name the source with rescue.source=",
                many.len(),
                many.iter().map(|d| d.path.as_str()).collect::<Vec<_>>().join(", ")
            )),
        };
    }
    let d = disks.iter().find(|d| names_disk(sel, d)).ok_or_else(|| {
        format!("rescue.source={sel}: no such disk; see rescue.action=inspect for the names")
    })?;
    if d.xenserver.is_none() {
        return Err(plan::PlanError::NotXenServer(d.path.clone()).to_string());
    }
    Ok(d)
}

fn select_mirror<'a>(sel: &str, source: &Disk, disks: &'a [Disk]) -> Result<&'a Disk, String> {
    if sel == "auto" {
        let c: Vec<&Disk> = disks
            .iter()
            .filter(|d| d.path != source.path && d.blank && d.size_bytes >= source.size_bytes)
            .collect();
        return match c.as_slice() {
            [one] => Ok(one),
            [] => Err(format!("rescue.mirror=auto: no other blank disk of at least {} bytes; attach one or name the mirror", source.size_bytes)),
            many => Err(format!(
                "rescue.mirror=auto: {} blank disks could be the mirror ({}); name it with rescue.mirror=",
                many.len(),
                many.iter().map(|d| d.path.as_str()).collect::<Vec<_>>().join(", ")
            )),
        };
    }
    let d = disks.iter().find(|d| names_disk(sel, d)).ok_or_else(|| {
        format!("rescue.mirror={sel}: no such disk; see rescue.action=inspect for the names")
    })?;
    if d.path == source.path {
        return Err(plan::PlanError::SameDisk(d.path.clone()).to_string());
    }
    Ok(d)
}

fn find_journal(disks: &[Disk]) -> Option<(&Disk, Journal)> {
    disks.iter().find_map(|d| {
        let mut f = File::open(&d.path).ok()?;
        let j = journal::read(&mut f).ok()??;
        (j.plan.mirror_disk_guid == d.disk_guid.clone().unwrap_or_default()
            || j.phase == Phase::Planned)
            .then_some((d, j))
    })
}

/// `/dev/...` of a disk's partition.
fn partition_path(disk_name: &str, number: u32) -> Result<PathBuf, String> {
    let sys_block = Path::new("/sys/block");
    let start = Instant::now();
    loop {
        if let Some(p) = crate::stick::partition_device(sys_block, disk_name, number) {
            if p.exists() {
                return Ok(p);
            }
        }
        if start.elapsed() > Duration::from_secs(10) {
            return Err(format!("partition {number} of {disk_name} did not appear"));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn disk_name(path: &str) -> &str {
    path.rsplit('/').next().unwrap_or(path)
}

/// Runs the job from the journal's phase to the end.
fn execute(ctx: &mut Ctx<'_>, mut j: Journal, rep: &mut ConvertReport) -> Result<(), String> {
    ctx.modules.require(&["md_mod", "raid1", "ext4"])?;
    let plan = j.plan.clone();
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
            let out = with_target_root(&plan, |root| {
                let (files, kernels) = configure_files(root, &plan)?;
                changed = files;
                let mut done = Vec::new();
                let hostonly = dracut::hostonly_configured(&dracut::confs_under(root));
                let mode = if hostonly { "host-only" } else { "generic" };
                for (kver, initrd) in kernels {
                    let extra = portable_drivers(root, &kver, &plan);
                    let args = dracut::dracut_args(hostonly, &extra, &initrd, &kver);
                    let args: Vec<&str> = args.iter().map(String::as_str).collect();
                    let started = Instant::now();
                    kernel_log_line(&format!(
                        "convert: building the initrd {initrd} for {kver} ({mode}, as the target's dracut is configured)"
                    ));
                    chroot_ok(root, "dracut", &args)?;
                    let size = std::fs::metadata(root.join(initrd.trim_start_matches('/')))
                        .map(|m| m.len())
                        .unwrap_or(0);
                    done.push(format!(
                        "{initrd} ({kver}, {mode}, {size} bytes, {:.0} s)",
                        started.elapsed().as_secs_f64()
                    ));
                }
                chroot_ok(
                    root,
                    "grub-install",
                    &["--target=i386-pc", &plan.mirror.path],
                )?;
                Ok(format!(
                    "initrds: {}; grub on {}",
                    done.join(", "),
                    plan.mirror.path
                ))
            })?;
            Ok(out)
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
        ctx.console.say(&format!(
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
        step(ctx, rep, "grub-install-source", || {
            with_target_root(&plan, |root| {
                chroot_ok(
                    root,
                    "grub-install",
                    &["--target=i386-pc", &plan.source.path],
                )?;
                Ok(format!("grub on {}", plan.source.path))
            })
        })?;
    }
    if plan.wait_resync {
        step(ctx, rep, "wait-resync", || wait_resync(&plan))?;
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
    ctx.console.say("convert: done");
    Ok(())
}

fn step(
    ctx: &mut Ctx<'_>,
    rep: &mut ConvertReport,
    name: &str,
    f: impl FnOnce() -> Result<String, String>,
) -> Result<(), String> {
    ctx.console.say(&format!("convert: {name} ..."));
    let t = Instant::now();
    let r = f();
    let ok = r.is_ok();
    let detail = match &r {
        Ok(d) => d.clone(),
        Err(e) => e.clone(),
    };
    ctx.console.say(&format!(
        "convert: {name} {} in {:.1} s: {detail}",
        if ok { "done" } else { "FAILED" },
        t.elapsed().as_secs_f64()
    ));
    rep.steps.push(Step {
        name: name.into(),
        ok,
        duration_ms: t.elapsed().as_millis() as u64,
        detail,
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

fn zero(dev: &mut File, at: u64, len: u64) -> Result<(), String> {
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

/// Writes this side's member superblock: the mirror's active in slot 0, the source's as
/// a spare the kernel recovers onto.
pub fn write_superblock(
    part: &Path,
    plan: &ConvertPlan,
    a: &plan::PlannedArray,
    source_side: bool,
) -> Result<(), String> {
    let mut dev = File::options()
        .read(true)
        .write(true)
        .open(part)
        .map_err(|e| format!("open {}: {e}", part.display()))?;
    let size = dev.seek(SeekFrom::End(0)).map_err(|e| e.to_string())?;
    // Stale superblocks of any version at either end of the partition go first.
    zero(&mut dev, 0, (1u64 << 20).min(size))?;
    zero(
        &mut dev,
        size.saturating_sub(1 << 20),
        (1u64 << 20).min(size),
    )?;
    let member = Sectors(size / 512);
    let v = version_of(a);
    let geo = md::geometry(v, member, false).map_err(|e| e.to_string())?;
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
        name: a.name.clone(),
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
        let (major, minor) = match version_of(a) {
            md::MetadataVersion::V0_90 => (0, 90),
            md::MetadataVersion::V1_0 => (1, 0),
            md::MetadataVersion::V1_1 => (1, 1),
            md::MetadataVersion::V1_2 => (1, 2),
        };
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

/// Copies one array's content with the storage engine and verifies it by read-back.
/// Copies one array's payload; returns bytes moved, seconds copying, seconds verifying.
fn copy_array(plan: &ConvertPlan, a: &plan::PlannedArray) -> Result<(Bytes, f64, f64), String> {
    if matches!(a.payload, Payload::Empty) || a.content_size_bytes == 0 {
        return Ok((Bytes(0), 0.0, 0.0));
    }
    let src = partition_path(disk_name(&plan.source.path), a.partition)?;
    let args = CloneArgs {
        src,
        dst: PathBuf::from(&a.device),
        verify: true,
        raw: false,
        buffered: false,
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
    let s = clone::clone_with(&args, &mut progress).map_err(|e| e.to_string())?;
    if !s.verified {
        return Err("the copy was not verified".into());
    }
    Ok((
        s.bytes_moved,
        s.duration_secs - s.verify_secs,
        s.verify_secs,
    ))
}

/// Mounts the source root read-only (no journal replay) and checks every ext copy with
/// the target's own e2fsck.
fn fsck_copies(plan: &ConvertPlan) -> Result<String, String> {
    let root_part = plan
        .arrays
        .iter()
        .find(|a| a.role == ArrayRole::Root)
        .ok_or("no root array in the plan")?;
    let src_root = partition_path(disk_name(&plan.source.path), root_part.partition)?;
    let mp = PathBuf::from(WORK).join("source-root");
    sys::mount(&src_root, &mp, "ext4", true, "noload")
        .map_err(|e| format!("mount {} read-only: {e}", src_root.display()))?;
    let result = (|| {
        let _binds = Binds::new(&mp)?;
        let mut checked = Vec::new();
        for a in plan
            .arrays
            .iter()
            .filter(|a| matches!(a.payload, Payload::Ext { .. }) && a.content_size_bytes > 0)
        {
            chroot_ok(&mp, "e2fsck", &["-fn", &a.device])?;
            checked.push(a.device.clone());
        }
        Ok(format!("clean: {}", checked.join(", ")))
    })();
    let _ = sys::unmount_lazy(&mp);
    result
}

/// /dev, /proc and /sys bound into a root for the target's tools; unbound on drop.
struct Binds {
    targets: Vec<PathBuf>,
}

impl Binds {
    fn new(root: &Path) -> Result<Binds, String> {
        let mut b = Binds {
            targets: Vec::new(),
        };
        for d in ["dev", "proc", "sys"] {
            let t = root.join(d);
            sys::bind_mount(Path::new(&format!("/{d}")), &t).map_err(|e| e.to_string())?;
            b.targets.push(t);
        }
        Ok(b)
    }
}

impl Drop for Binds {
    fn drop(&mut self) {
        for t in self.targets.iter().rev() {
            let _ = sys::unmount_lazy(t);
        }
    }
}

/// Mounts the new root (its array) read-write with the binds, runs `f`, unmounts.
fn with_target_root(
    plan: &ConvertPlan,
    f: impl FnOnce(&Path) -> Result<String, String>,
) -> Result<String, String> {
    let root = plan
        .arrays
        .iter()
        .find(|a| a.role == ArrayRole::Root)
        .ok_or("no root array in the plan")?;
    let mp = PathBuf::from(WORK).join("target");
    sys::mount(Path::new(&root.device), &mp, "ext4", false, "")
        .map_err(|e| format!("mount {}: {e}", root.device))?;
    let r = (|| {
        let _binds = Binds::new(&mp)?;
        f(&mp)
    })();
    sys::sync();
    let _ = sys::unmount_lazy(&mp);
    r
}

fn chroot_ok(root: &Path, program: &str, args: &[&str]) -> Result<(), String> {
    let (code, out) = sys::run_in_chroot(root, program, args).map_err(|e| e.to_string())?;
    if code != 0 {
        let tail: Vec<&str> = out
            .lines()
            .rev()
            .take(15)
            .collect::<Vec<_>>()
            .into_iter()
            .rev()
            .collect();
        return Err(format!(
            "{program} {} exited with {code}: {}",
            args.join(" "),
            tail.join(" | ")
        ));
    }
    Ok(())
}

/// Files the configuration step may rewrite (each only where present), for the plan.
pub const TARGET_FILES: &[&str] = &[
    "/etc/fstab",
    "/boot/grub/grub.cfg",
    "/etc/mdadm.conf (or /etc/mdadm/mdadm.conf)",
    "/etc/dracut.conf.d/90-xenraid-mdraid.conf",
    "/usr/lib/dracut/modules.d/91xenraid/{module-setup.sh,xenraid-md-degraded.sh}",
    "/etc/xensource-inventory",
    "/etc/firstboot.d/data/default-storage.conf",
    "/etc/lvm/lvm.conf, /etc/lvm/master/lvm.conf",
    "/var/lib/xcp/state.db",
];

/// The arrays as the target's configuration files name them.
pub fn conversion_of(plan: &ConvertPlan) -> crate::target::Conversion {
    use crate::target::{ArrayInfo, Role};
    let arrays = plan
        .arrays
        .iter()
        .map(|a| {
            let (fs_uuid, fs_label) = match &a.payload {
                Payload::Ext { label, uuid } | Payload::Swap { label, uuid } => {
                    (uuid.clone(), label.clone())
                }
                _ => (None, None),
            };
            ArrayInfo {
                role: match a.role {
                    ArrayRole::Root => Role::Root,
                    ArrayRole::Backup => Role::Backup,
                    ArrayRole::Logs => Role::Logs,
                    ArrayRole::Swap => Role::Swap,
                    ArrayRole::Sr => Role::Sr,
                },
                device: format!("/dev/md/{}", a.name),
                name: format!("{}:{}", a.homehost, a.name),
                uuid: a.uuid.clone(),
                metadata: a.metadata.clone(),
                fs_uuid,
                fs_label,
            }
        })
        .collect();
    crate::target::Conversion {
        arrays,
        label_suffix: plan.label_suffix.clone(),
        sr_old_devices: Vec::new(),
    }
}

/// Rewrites the target's files; returns them and the (kernel version, initrd) pairs the
/// boot entries use, read from the target's own kernels (never `uname -r`).
/// Files changed, and (kernel version, initrd) pairs to rebuild.
type Configured = (Vec<String>, Vec<(String, String)>);

fn configure_files(root: &Path, plan: &ConvertPlan) -> Result<Configured, String> {
    let conv = conversion_of(plan);
    let changed = crate::target::apply(root, &conv).map_err(|e| e.to_string())?;
    let jobs = crate::target::kernels::initrd_jobs(root).map_err(|e| e.to_string())?;
    if jobs.is_empty() {
        return Err(
            "no boot entry of the target names a kernel and an initrd: check its grub.cfg".into(),
        );
    }
    Ok((
        changed.into_iter().map(|c| c.path).collect(),
        jobs.into_iter()
            .map(|j| (j.kernel_version, j.initrd))
            .collect(),
    ))
}

/// Drivers a host-only initrd needs beyond what dracut detects: the controllers of both
/// disks (dracut sees only the mirror under the root array now) and the portable set,
/// each only if the target's kernel `kver` has it.
fn portable_drivers(root: &Path, kver: &str, plan: &ConvertPlan) -> Vec<String> {
    let dir = root.join("lib/modules").join(kver);
    let read = |f: &str| std::fs::read_to_string(dir.join(f)).unwrap_or_default();
    let known = dracut::module_names(&read("modules.dep"), &read("modules.builtin"));
    let sys_block = Path::new("/sys/block");
    let mut want: Vec<String> = [&plan.source.path, &plan.mirror.path]
        .into_iter()
        .flat_map(|p| crate::devices::driver_modules(sys_block, disk_name(p)))
        .collect();
    want.extend(
        dracut::PORTABLE_STORAGE_DRIVERS
            .iter()
            .map(|s| s.to_string()),
    );
    let mut out = Vec::new();
    for m in want {
        if known.contains(&m.replace('-', "_")) && !out.contains(&m) {
            out.push(m);
        }
    }
    out
}

/// Waits for every array to be in sync; progress lines go to the kernel console.
fn wait_resync(plan: &ConvertPlan) -> Result<String, String> {
    let start = Instant::now();
    let mut last = Instant::now();
    loop {
        let mut busy = Vec::new();
        for a in &plan.arrays {
            let name = disk_name(&a.device);
            let s = sys::md::array_state(name).map_err(|e| e.to_string())?;
            if s.sync_action != "idle" || s.degraded > 0 {
                let pct = s
                    .sync_completed
                    .map(|(d, t)| d * 100 / t.max(1))
                    .unwrap_or(0);
                busy.push(format!("{} {} {pct}%", a.role.as_str(), s.sync_action));
            }
        }
        if busy.is_empty() {
            return Ok(format!(
                "all arrays in sync after {} s",
                start.elapsed().as_secs()
            ));
        }
        if last.elapsed() >= Duration::from_secs(5) {
            last = Instant::now();
            kernel_log_line(&format!("convert: resync {}", busy.join(", ")));
        }
        std::thread::sleep(Duration::from_millis(500));
    }
}

/// A progress line through the kernel log: it reaches every console while `step` holds
/// ours, and lands in the saved log.
fn kernel_log_line(line: &str) {
    let _ = std::fs::write("/dev/kmsg", format!("{line}\n"));
}

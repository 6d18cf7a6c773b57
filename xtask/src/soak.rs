//! `cargo xtask soak`: power cuts at random points of a conversion of the xs7 fixture.
//!
//! Each cut: a fresh copy of the fixture and a blank mirror, the rescue started with
//! `convert auto`, QEMU killed at a random moment (half the cuts at a random time, half a
//! random delay after a random console marker: partitioning, each copy, fsck, configure,
//! attach, the source's bootloader), then the rescue booted again with the same
//! arguments until it reports done. The result is checked on the host, without Xen:
//! every ext filesystem inside every md member checks clean with `e2fsck -fn` at its data
//! offset, `mdadm --examine` reads every member and the two members of each array agree
//! (same events, `AA`), every SR LV read from each member matches the fixture's
//! checksum, and both disks carry the same boot code with GRUB's core in their BIOS boot
//! partitions. The first `--xen-boots` cuts also boot Xen from each disk alone (two VMs).
//! Not in CI: twenty conversions take hours under TCG.

use anyhow::{bail, Context, Result};
use qemu_tests::examine::{self, on_loop};
use qemu_tests::fixture::{self, boot_xen, checksums_ok, copy_image};
use qemu_tests::images;
use qemu_tests::vm::{Bus, Disk, Vm, VmBuilder};
use qemu_tests::{RescueImage, Scratch};
use rescue::inspect::{self, Content};
use sha2::{Digest, Sha256};
use std::io::{Read, Seek, SeekFrom};
use std::path::Path;
use std::process::Command;
use std::time::Duration;

#[derive(clap::Args)]
pub struct SoakArgs {
    /// Power cuts, one conversion each.
    #[arg(long, default_value_t = 20)]
    cuts: usize,
    /// Start at this cut of the seed's sequence (1-based), so that runs of a few cuts add
    /// up to one seed's twenty: `--from 4 --cuts 3` runs cuts 4, 5 and 6.
    #[arg(long, default_value_t = 1)]
    from: usize,
    /// The first this many cuts run also boot Xen from each disk alone.
    #[arg(long, default_value_t = 3)]
    xen_boots: usize,
    /// Seed for the cut points (the same seed cuts at the same points).
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// The fixture converted (its description has the SR checksums).
    #[arg(long, default_value = "xs7")]
    fixture: String,
    /// Only run the host-side checks on a converted SOURCE and MIRROR image, and stop.
    #[arg(long, num_args = 2, value_names = ["SOURCE", "MIRROR"])]
    check: Vec<std::path::PathBuf>,
}

/// The conversion waits for the source's members to finish their recovery: only then can
/// either disk run the host alone (md will not start an array from a recovering member).
const ARGS: &str =
    "rescue.action=convert rescue.source=auto rescue.mirror=auto rescue.wait-resync=yes";
const CONVERT_TIMEOUT: Duration = Duration::from_secs(1500);
/// A time cut lands in the first this many seconds: a whole xs7 conversion with the resync
/// wait took 228 s from QEMU's start to the report under TCG on 2026-12-06 (the copier of
/// 2026-12-02 made it shorter; seed 1's ten cuts were drawn with 420 s, when it was longer).
const TIME_HORIZON_S: u64 = 240;
/// Boots after the cut allowed to finish the job.
const MAX_RESUMES: usize = 4;

/// Console lines that start or mark a phase (`convert: <step> ...`, progress lines).
const MARKERS: &[&str] = &[
    "convert: partition-mirror ...",
    "convert: assemble ...",
    "convert: copy-root ...",
    "convert: copy-sr ...",
    "convert: copy-logs ...",
    "convert: e2fsck ...",
    "convert: configure ...",
    "convert: attach-source ...",
    "convert: source repartitioned",
    "convert: bootloader-source ...",
    "convert: wait-resync ...",
];

#[derive(Clone, Debug, PartialEq, Eq)]
enum Cut {
    /// Kill `delay_ms` after `marker` shows on the console.
    AfterMarker { marker: &'static str, delay_ms: u64 },
    /// Kill `secs` after QEMU started.
    AtTime { secs: u64 },
}

impl std::fmt::Display for Cut {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Cut::AfterMarker { marker, delay_ms } => write!(f, "{delay_ms} ms after {marker:?}"),
            Cut::AtTime { secs } => write!(f, "at {secs} s"),
        }
    }
}

/// The cut points for a seed: alternately after a marker and at a time.
fn cut_points(n: usize, seed: u64) -> Vec<Cut> {
    let mut rng = crate::fixture::payload::Prng::new(seed);
    (0..n)
        .map(|i| {
            if i % 2 == 0 {
                Cut::AfterMarker {
                    marker: MARKERS[rng.below(MARKERS.len() as u64) as usize],
                    delay_ms: rng.below(4000),
                }
            } else {
                Cut::AtTime {
                    secs: 5 + rng.below(TIME_HORIZON_S - 5),
                }
            }
        })
        .collect()
}

struct Outcome {
    cut: Cut,
    /// False when the job ended before the cut point.
    killed: bool,
    /// Rescue boots after the cut until the report said done.
    resumes: usize,
    failures: Vec<String>,
    checks: usize,
}

pub fn run(args: &SoakArgs) -> Result<()> {
    let fx = fixture::fixture(&args.fixture)?;
    if let [source, mirror] = args.check.as_slice() {
        let results = check_disks(&fx, source, mirror);
        let failed: Vec<String> = results
            .iter()
            .filter_map(|(what, r)| r.as_ref().err().map(|e| format!("{what}: {e:#}")))
            .collect();
        for (what, r) in &results {
            println!("{} {what}", if r.is_ok() { "ok  " } else { "FAIL" });
        }
        println!(
            "soak --check: {} checks, {} failed",
            results.len(),
            failed.len()
        );
        if !failed.is_empty() {
            bail!("{}", failed.join("\n"));
        }
        return Ok(());
    }
    let image = RescueImage::locate()?;
    let first = args.from.max(1) - 1;
    let points = cut_points(first + args.cuts, args.seed);
    let mut outcomes = Vec::new();
    for (i, cut) in points.into_iter().enumerate().skip(first) {
        let scratch = Scratch::new(&format!("soak-{i}"))?;
        eprintln!("soak: cut {}/{}: {cut}", i + 1, first + args.cuts);
        let o = one_cut(&image, &fx, &scratch, cut, i - first < args.xen_boots)?;
        println!(
            "SOAK cut {:>2} {:<48} killed={} resumes={} checks={} failed={}{}",
            i + 1,
            o.cut.to_string(),
            o.killed,
            o.resumes,
            o.checks,
            o.failures.len(),
            if o.failures.is_empty() {
                String::new()
            } else {
                format!(": {}", o.failures.join("; "))
            }
        );
        if !o.failures.is_empty() {
            // Keep the disks for a look: Scratch removes them only when not panicking.
            std::mem::forget(scratch);
        }
        outcomes.push(o);
    }
    let good = outcomes.iter().filter(|o| o.failures.is_empty()).count();
    let killed = outcomes.iter().filter(|o| o.killed).count();
    println!(
        "soak: {good}/{} conversions survived their cut ({killed} killed mid-job), seed {}",
        outcomes.len(),
        args.seed
    );
    if good != outcomes.len() {
        bail!(
            "{} of {} cuts failed",
            outcomes.len() - good,
            outcomes.len()
        );
    }
    Ok(())
}

fn spawn(image: &RescueImage, source: &Path, mirror: &Path, dir: &Path) -> Result<Vm> {
    VmBuilder::rescue(image)
        .memory_mib(2048)
        .append(ARGS)
        .disk(Disk::new(source, Bus::Virtio).serial("XS-SOURCE"))
        .disk(Disk::new(mirror, Bus::Virtio).serial("XS-MIRROR"))
        .spawn(dir)
}

/// Polls the console until `hit` says so (then kills QEMU: true) or the report is out.
fn kill_when(vm: &mut Vm, mut hit: impl FnMut(&str, Duration) -> bool) -> Result<bool> {
    loop {
        let log = vm.console();
        if log.contains("RESCUE-REPORT") {
            return Ok(false);
        }
        if hit(&log, vm.elapsed()) {
            vm.kill();
            return Ok(true);
        }
        if vm.elapsed() > CONVERT_TIMEOUT {
            vm.kill();
            bail!("no report after {} s", CONVERT_TIMEOUT.as_secs());
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn one_cut(
    image: &RescueImage,
    fx: &fixture::Fixture,
    scratch: &Scratch,
    cut: Cut,
    boot_xen_after: bool,
) -> Result<Outcome> {
    let source = scratch.path("source.img");
    let mirror = scratch.path("mirror.img");
    copy_image(&fx.image, &source)?;
    images::blank_disk(&mirror, std::fs::metadata(&source)?.len())?;

    let mut vm = spawn(image, &source, &mirror, &scratch.dir.join("cut"))?;
    let mut seen_at: Option<Duration> = None;
    let killed = kill_when(&mut vm, |log, t| match &cut {
        Cut::AtTime { secs } => t >= Duration::from_secs(*secs),
        Cut::AfterMarker { marker, delay_ms } => {
            if seen_at.is_none() && log.contains(marker) {
                seen_at = Some(t);
            }
            seen_at.is_some_and(|s| t >= s + Duration::from_millis(*delay_ms))
        }
    })?;
    if !killed {
        let _ = vm.wait_exit(Duration::from_secs(120));
    }

    let mut failures = Vec::new();
    let mut resumes = 0;
    // Not killed: the report is on the console already.
    let mut done = !killed && vm.wait_for_report(Duration::ZERO).is_ok_and(|r| r.ok);
    while !done && resumes < MAX_RESUMES {
        resumes += 1;
        let mut vm = spawn(
            image,
            &source,
            &mirror,
            &scratch.dir.join(format!("resume-{resumes}")),
        )?;
        let r = vm.wait_for_report(CONVERT_TIMEOUT)?;
        let _ = vm.wait_exit(Duration::from_secs(120));
        done = r.ok;
        if !r.ok && resumes == MAX_RESUMES {
            failures.push(format!("not done after {resumes} boots: {:?}", r.errors));
        }
    }
    let mut checks = 0;
    if done {
        for (what, r) in check_disks(fx, &source, &mirror) {
            checks += 1;
            if let Err(e) = r {
                failures.push(format!("{what}: {e}"));
            }
        }
        if boot_xen_after {
            for (name, disk) in [("source", &source), ("mirror", &mirror)] {
                checks += 1;
                let st = boot_xen(
                    vec![Disk::new(disk, Bus::Virtio)],
                    &scratch.dir.join(format!("xen-{name}-alone")),
                );
                match st {
                    Ok(st) => {
                        let root = st["root"]["source"].as_str().unwrap_or("");
                        if !root.starts_with("/dev/md") {
                            failures.push(format!("{name} alone: / from {root:?}"));
                        }
                        if let Err(e) = checksums_ok(&st) {
                            failures.push(format!("{name} alone: {e}"));
                        }
                    }
                    Err(e) => failures.push(format!("{name} alone did not boot: {e:#}")),
                }
            }
        }
    }
    Ok(Outcome {
        cut,
        killed,
        resumes,
        failures,
        checks,
    })
}

/// Every host-side check of a finished conversion, each with its outcome.
fn check_disks(fx: &fixture::Fixture, source: &Path, mirror: &Path) -> Vec<(String, Result<()>)> {
    let mut out = Vec::new();
    let mut inspected = Vec::new();
    for (name, img) in [("source", source), ("mirror", mirror)] {
        let disk = match inspect::inspect_path(img) {
            Ok(d) => d,
            Err(e) => {
                out.push((format!("{name}: inspect"), Err(anyhow::anyhow!("{e}"))));
                continue;
            }
        };
        for p in &disk.partitions {
            let Some(Content::MdMember { data_offset, .. }) = &p.content else {
                continue;
            };
            let start = p.start_lba * u64::from(disk.logical_sector_size);
            let what = format!("{name} partition {}", p.number);
            if matches!(p.inner, Some(Content::Ext { .. })) {
                out.push((
                    format!("{what}: e2fsck -fn"),
                    on_loop(
                        img,
                        start + data_offset,
                        p.size_bytes - data_offset,
                        |dev| tool("e2fsck", &["-fn", dev]).map(drop),
                    ),
                ));
            }
            if let Some(Content::LvmPv { vg: Some(vg), .. }) = &p.inner {
                out.push((
                    format!("{what}: SR LV checksums"),
                    lv_checksums(img, vg, fx),
                ));
            }
        }
        inspected.push((img, disk));
    }
    // mdadm --examine of every member agrees with inspect, and by mdadm's own numbers
    // (events, roles, no recovery offset) both members of every array are in sync.
    let pairs: Vec<(&Path, &inspect::Disk)> = inspected.iter().map(|(i, d)| (*i, d)).collect();
    match examine::disks_agree_with_mdadm(&pairs) {
        Ok(views) => {
            for v in &views {
                let in_sync = v.members.iter().filter(|m| m.status == "in_sync").count();
                out.push((
                    format!("array {}: both members in sync", v.uuid),
                    if in_sync == 2 && !v.degraded {
                        Ok(())
                    } else {
                        Err(anyhow::anyhow!("members {:?}", v.members))
                    },
                ));
            }
        }
        Err(e) => out.push(("mdadm --examine agrees with inspect".into(), Err(e))),
    }
    out.push(("boot code on both disks".into(), boot_code(source, mirror)));
    out
}

fn tool(name: &str, args: &[&str]) -> Result<String> {
    images::run(Command::new(name).args(args))
}

/// Each SR LV read through its segments on this disk against the fixture's sha256.
fn lv_checksums(img: &Path, vg: &inspect::VolumeGroup, fx: &fixture::Fixture) -> Result<()> {
    let want = fx.description["sr"]["lvs"]
        .as_array()
        .context("the fixture describes no SR LVs")?;
    let mut f = std::fs::File::open(img)?;
    for lv in want {
        let name = lv["name"].as_str().context("LV name")?;
        let sha = lv["sha256"].as_str().context("LV sha256")?;
        let have = vg
            .lvs
            .iter()
            .find(|l| l.name == name)
            .with_context(|| format!("no LV {name} in VG {}", vg.name))?;
        let mut h = Sha256::new();
        let mut buf = vec![0u8; 1 << 20];
        for seg in &have.segments {
            for st in &seg.stripes {
                let off = st
                    .disk_offset
                    .with_context(|| format!("LV {name} on another PV"))?;
                let mut left = st.pe_count * vg.extent_size_bytes;
                f.seek(SeekFrom::Start(off))?;
                while left > 0 {
                    let n = left.min(buf.len() as u64) as usize;
                    f.read_exact(&mut buf[..n])?;
                    h.update(&buf[..n]);
                    left -= n as u64;
                }
            }
        }
        let got: String = h.finalize().iter().map(|b| format!("{b:02x}")).collect();
        if got != sha {
            bail!("LV {name}: sha256 {got}, the fixture says {sha}");
        }
    }
    Ok(())
}

/// Both disks have the same non-empty boot code in the MBR and GRUB's core image at the
/// start of their BIOS boot partitions.
fn boot_code(source: &Path, mirror: &Path) -> Result<()> {
    let mut codes = Vec::new();
    for img in [source, mirror] {
        let disk = inspect::inspect_path(img).map_err(|e| anyhow::anyhow!("{e}"))?;
        let mut f = std::fs::File::open(img)?;
        let mut mbr = [0u8; 440];
        f.read_exact(&mut mbr)?;
        if mbr.iter().all(|&b| b == 0) {
            bail!("{}: no boot code in the MBR", img.display());
        }
        let bios_boot = disk
            .partitions
            .iter()
            .find(|p| p.type_guid.as_deref() == Some(rescue::formats::gpt::types::BIOS_BOOT))
            .with_context(|| format!("{}: no BIOS boot partition", img.display()))?;
        let mut core = [0u8; 512];
        f.seek(SeekFrom::Start(bios_boot.start_lba * 512))?;
        f.read_exact(&mut core)?;
        if core.iter().all(|&b| b == 0) {
            bail!("{}: the BIOS boot partition is empty", img.display());
        }
        codes.push(mbr);
    }
    if codes[0][..] != codes[1][..] {
        bail!("the two disks' MBR boot code differs");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cuts_alternate_and_repeat_for_a_seed() {
        let a = cut_points(20, 7);
        assert_eq!(a, cut_points(20, 7), "the same seed gives the same cuts");
        assert_ne!(a, cut_points(20, 8));
        // A shorter run is a prefix: `--from` resumes a seed's sequence where one stopped.
        assert_eq!(cut_points(5, 7), a[..5]);
        for (i, c) in a.iter().enumerate() {
            match c {
                Cut::AfterMarker { delay_ms, .. } => {
                    assert_eq!(i % 2, 0);
                    assert!(*delay_ms < 4000);
                }
                Cut::AtTime { secs } => {
                    assert_eq!(i % 2, 1);
                    assert!((5..TIME_HORIZON_S).contains(secs));
                }
            }
        }
        let markers: std::collections::BTreeSet<_> = a
            .iter()
            .filter_map(|c| match c {
                Cut::AfterMarker { marker, .. } => Some(*marker),
                Cut::AtTime { .. } => None,
            })
            .collect();
        assert!(markers.len() >= 4, "ten marker cuts hit only {markers:?}");
    }
}

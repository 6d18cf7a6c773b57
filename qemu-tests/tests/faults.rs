//! I/O errors injected with QEMU's blkdebug during a conversion of the xs7 fixture
//! (e2e only): a read error on the source during the copy, a write error on the mirror,
//! the mirror pulled out mid-copy (QMP
//! `device_del`). Each run stops cleanly, the report names the
//! disk, the phase and the offset, the source is byte-identical, and a rerun on healthy
//! disks completes.

use qemu_tests::fixture::{self, copy_image};
use qemu_tests::images::{self, run};
use qemu_tests::vm::{blkdebug_read_rule, blkdebug_rule, Bus, Disk, VmBuilder};
use qemu_tests::{RescueImage, Scratch};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

const CONVERT_TIMEOUT: Duration = Duration::from_secs(1500);
const CONVERT: &str =
    "rescue.action=convert rescue.source=serial:XS-SOURCE rescue.mirror=serial:XS-MIRROR";

fn convert(scratch: &Scratch, tag: &str, disks: Vec<Disk>) -> rescue::report::Report {
    qemu_tests::rescue_report(&scratch.dir.join(tag), disks, CONVERT, CONVERT_TIMEOUT).unwrap()
}

/// The 512-byte sector on the disk image of block 0 of `file` in the root filesystem:
/// file data that only the copy reads (preflight reads superblocks and bitmaps).
fn sector_of_root_file(img: &Path, file: &str) -> u64 {
    let root = rescue::inspect::inspect_path(img)
        .unwrap()
        .partitions
        .into_iter()
        .find(|p| p.role.as_deref() == Some("root"))
        .expect("a root partition");
    let fs = format!("{}?offset={}", img.display(), root.start_lba * 512);
    let out = run(Command::new("debugfs").args(["-R", &format!("bmap {file} 0"), &fs])).unwrap();
    let block: u64 = out
        .trim()
        .parse()
        .unwrap_or_else(|_| panic!("bmap {file}: {out:?}"));
    let mut f = std::fs::File::open(img).unwrap();
    let mut w = rescue::formats::Window::new(&mut f, root.start_lba * 512, root.size_bytes);
    let bs = rescue::formats::ext::Superblock::read(&mut w)
        .unwrap()
        .block_size;
    root.start_lba + block * bs / 512
}

/// Where block 0 of `file` of the source's root lands on the mirror: the plan the rescue
/// will make (its layout does not depend on the random GUIDs), the root member's start
/// plus its md data offset plus the block's offset in the filesystem.
fn mirror_sector_of_root_file(source: &Path, mirror_size: u64, file: &str) -> u64 {
    use rescue::convert::plan::ArrayRole;
    let disk = rescue::inspect::inspect_path(source).unwrap();
    let root = disk
        .partitions
        .iter()
        .find(|p| p.role.as_deref() == Some("root"))
        .unwrap();
    let in_fs = sector_of_root_file(source, file) - root.start_lba;
    let p = qemu_tests::plan_for(source, mirror_size).unwrap();
    let a = p.arrays.iter().find(|a| a.role == ArrayRole::Root).unwrap();
    let part = p
        .partitions
        .iter()
        .find(|q| q.number == a.partition)
        .unwrap();
    part.start_lba + a.data_offset_bytes / 512 + in_fs
}

/// A private copy of the xs7 fixture, a blank mirror of its size, and the source's
/// fingerprint before anything ran.
struct Pair {
    source: PathBuf,
    mirror: PathBuf,
    size: u64,
    before: String,
}

fn pair(scratch: &Scratch) -> Pair {
    let fx = fixture::fixture("xs7").unwrap();
    let source = scratch.path("source.img");
    copy_image(&fx.image, &source).unwrap();
    let size = std::fs::metadata(&source).unwrap().len();
    let mirror = scratch.path("mirror.img");
    images::blank_disk(&mirror, size).unwrap();
    let before = images::content_fingerprint(&source).unwrap();
    Pair {
        source,
        mirror,
        size,
        before,
    }
}

fn disks(p: &Pair, bus: Bus) -> Vec<Disk> {
    vec![
        Disk::new(&p.source, bus).serial("XS-SOURCE"),
        Disk::new(&p.mirror, bus).serial("XS-MIRROR"),
    ]
}

/// The failed run stopped in the root copy, its errors say every one of `says`, and the
/// source is byte-identical; then, the disks healthy again, a rerun resumes the job from
/// the mirror's journal and completes.
fn stopped_then_rerun_completes(
    scratch: &Scratch,
    p: &Pair,
    r: &rescue::report::Report,
    says: &[&str],
    bus: Bus,
) {
    assert!(!r.ok, "the conversion went through the fault");
    let all = r.errors.join("\n");
    let failed = r
        .convert
        .as_ref()
        .and_then(|c| c.steps.iter().find(|s| !s.ok))
        .map(|s| s.name.clone())
        .unwrap_or_default();
    assert_eq!(failed, "copy-root", "the failed phase: {all}");
    for want in says {
        assert!(all.contains(want), "the errors do not say {want:?}: {all}");
    }
    assert_eq!(
        images::content_fingerprint(&p.source).unwrap(),
        p.before,
        "the source was written"
    );
    let r = convert(scratch, "rerun", disks(p, bus));
    assert!(r.ok, "the rerun failed: {:?}", r.errors);
    let c = r.convert.as_ref().unwrap();
    assert_ne!(c.started_from, "new", "the rerun did not resume the job");
}

/// A blkdebug EIO by `rule` at root's copy of `/usr/bin/bash` on the mirror.
fn mirror_fault(rule: impl Fn(u64) -> String, says: &str, tag: &str) {
    let scratch = Scratch::new(&format!("fault-mirror-{tag}")).unwrap();
    let p = pair(&scratch);
    let sector = mirror_sector_of_root_file(&p.source, p.size, "/usr/bin/bash");
    let rules = scratch.path("mirror.blkdebug");
    std::fs::write(&rules, rule(sector)).unwrap();
    let mut d = disks(&p, Bus::Virtio);
    d[1] = d[1].clone().faults(&rules);
    let r = convert(&scratch, "faulty", d);
    stopped_then_rerun_completes(&scratch, &p, &r, &[says, "/dev/md"], Bus::Virtio);
}

#[test]
#[ignore = "e2e only: `cargo xtask e2e` runs it (a failed and a completed conversion)"]
fn a_mirror_write_error_stops_the_copy_cleanly_and_a_rerun_completes() {
    mirror_fault(
        |s| blkdebug_rule("write_aio", s),
        "writing the target failed at byte",
        "write",
    );
}

/// The write lands, reading it back fails: the verification's own error. (A plain
/// `read_aio` rule is armed by any read and then fails the *write* of that sector too:
/// seen 2026-12-01; `iotype = "read"` keeps it to reads.)
#[test]
#[ignore = "e2e only: `cargo xtask e2e` runs it (a failed and a completed conversion)"]
fn a_mirror_read_back_error_stops_the_copy_cleanly_and_a_rerun_completes() {
    mirror_fault(
        blkdebug_read_rule,
        "reading the target back failed at byte",
        "read-back",
    );
}

/// A read error in the root filesystem's data on the source during the copy.
#[test]
#[ignore = "e2e only: `cargo xtask e2e` runs it (a failed and a completed conversion)"]
fn a_source_read_error_stops_the_copy_cleanly_and_a_rerun_completes() {
    let scratch = Scratch::new("fault-source-read").unwrap();
    let p = pair(&scratch);
    let rules = scratch.path("source-read.blkdebug");
    let sector = sector_of_root_file(&p.source, "/usr/bin/bash");
    std::fs::write(&rules, blkdebug_rule("read_aio", sector)).unwrap();
    let mut d = disks(&p, Bus::Virtio);
    d[0] = d[0].clone().faults(&rules);
    let r = convert(&scratch, "faulty", d);
    stopped_then_rerun_completes(
        &scratch,
        &p,
        &r,
        &["/dev/vda", "reading the source failed at byte"],
        Bus::Virtio,
    );
}

/// The mirror pulled out (QMP `device_del` of its SCSI disk) while root is being copied.
#[test]
#[ignore = "e2e only: `cargo xtask e2e` runs it (a failed and a completed conversion)"]
fn a_mirror_that_vanishes_mid_copy_stops_cleanly_and_a_rerun_completes() {
    let scratch = Scratch::new("fault-mirror-gone").unwrap();
    let p = pair(&scratch);
    let mut b = VmBuilder::rescue(&RescueImage::locate().unwrap())
        .memory_mib(2048)
        .append(CONVERT)
        .qmp();
    let mut d = disks(&p, Bus::VirtioScsi);
    // Root's copy takes about a second at full speed: at 16 MiB/s it lasts long enough to
    // pull the disk out in the middle of it.
    d[1] = d[1].clone().write_limit(16 << 20);
    for d in d {
        b = b.disk(d);
    }
    let mut vm = b.spawn(&scratch.dir.join("pulled")).unwrap();
    vm.wait_until(CONVERT_TIMEOUT, "the root copy's progress", |log| {
        log.contains("convert: copy root:").then_some(())
    })
    .unwrap();
    vm.device_del(1).unwrap();
    let r = vm.wait_for_report(CONVERT_TIMEOUT).unwrap();
    vm.wait_exit(Duration::from_secs(120)).unwrap();
    stopped_then_rerun_completes(&scratch, &p, &r, &["/dev/md"], Bus::VirtioScsi);
}

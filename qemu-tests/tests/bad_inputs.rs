//! Bad inputs, end to end: the real rescue booted over the xs7 fixture and disks made to be
//! wrong (a mirror one sector short of what the plan needs, 4Kn, read-only, the RESCUE
//! stick, stale GPT or md superblocks on it, an MBR or UEFI host, two XenServer disks,
//! rescue.conf mistakes and disagreements with the kernel arguments, wrong actions and
//! selectors for convert, replace, backup and restore). Each one is refused with a line
//! naming the problem and the fix, and every disk's content is unchanged.
//!
//! CI runs the cases marked `ci`; `cargo xtask e2e` runs them all. The other refusals
//! live beside the features they guard: `convert.rs` (preflight), its replace test,
//! `backup.rs`, `delivery.rs` (a rescue.conf typo). README lists them all.

use qemu_tests::fixture::{self, copy_image};
use qemu_tests::images::{self, run};
use qemu_tests::vm::{Bus, Disk};
use qemu_tests::{full_matrix, Scratch};
use rescue::convert::plan::PlanError;
use rescue::formats::md;
use rescue::units::Sectors;
use std::collections::HashMap;
use std::fs::OpenOptions;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

const TIMEOUT: Duration = Duration::from_secs(600);

/// One disk of a case: image, serial, and how QEMU presents it.
#[derive(Clone)]
struct D {
    img: PathBuf,
    serial: &'static str,
    read_only: bool,
    sector_size: Option<u32>,
}

fn d(img: &Path, serial: &'static str) -> D {
    D {
        img: img.into(),
        serial,
        read_only: false,
        sector_size: None,
    }
}

struct Case {
    tag: &'static str,
    /// In the CI subset (the cheapest few); all run in e2e.
    ci: bool,
    disks: Vec<D>,
    args: String,
    /// Every one of these appears in the report's errors.
    says: Vec<String>,
}

/// The disks every case draws from, made once.
struct Images {
    source: PathBuf,
    mirror: PathBuf,
    blank2: PathBuf,
    short: PathBuf,
    min_size: u64,
    stale_gpt: PathBuf,
    stale_md: PathBuf,
    mbr_host: PathBuf,
    uefi_host: PathBuf,
    stick: PathBuf,
    stick_conflict: PathBuf,
    stick_mistakes: PathBuf,
    sr_spans: PathBuf,
    whole_disk_md: PathBuf,
}

/// The smallest mirror the rescue's plan accepts for `source` (a refusal names it).
fn smallest_mirror(source: &Path) -> u64 {
    match qemu_tests::plan_for(source, 64 << 20) {
        Err(PlanError::TooSmall { min_size, .. }) => min_size,
        other => panic!("a 64 MiB mirror was not refused as too small: {other:?}"),
    }
}

/// A whole-disk md 1.2 member, as a disk pulled from another machine's RAID carries.
fn write_stale_md(img: &Path) {
    let mut f = OpenOptions::new().read(true).write(true).open(img).unwrap();
    let size = f.metadata().unwrap().len();
    let geo = md::geometry(md::MetadataVersion::V1_2, Sectors(size / 512), true).unwrap();
    let array = md::ArraySpec {
        uuid: [0x42; 16],
        homehost: "oldhost".into(),
        name: "oldhost:0".into(),
        raid_disks: 2,
        ctime: 1_600_000_000,
        utime: 1_600_000_100,
        events: 100,
        clean: true,
        roles: vec![Some(md::Role::Active(0)), Some(md::Role::Active(1))],
    };
    let m = md::MemberSpec {
        dev_number: 1,
        device_uuid: [0x17; 16],
        dev_major_minor: (8, 16),
    };
    md::write_member(&mut f, &geo, &array, &m).unwrap();
}

/// A `RESCUE` stick (FAT, whole disk) with `conf` as its rescue.conf when given.
fn stick(scratch: &Scratch, name: &str, conf: Option<&str>) -> PathBuf {
    let img = scratch.path(name);
    let _ = std::fs::remove_file(&img);
    run(Command::new("mkfs.vfat")
        .args(["-n", "RESCUE", "-C"])
        .arg(&img)
        .arg("65536"))
    .unwrap();
    if let Some(text) = conf {
        let f = scratch.path(&format!("{name}.conf"));
        std::fs::write(&f, text).unwrap();
        run(Command::new("mcopy")
            .arg("-i")
            .arg(&img)
            .arg(&f)
            .arg("::/rescue.conf"))
        .unwrap();
    }
    img
}

/// The source with its SR's VG extended onto a second PV (a small file that stays
/// outside the VM), as `vgextend` on a live host leaves it: the metadata on the SR lists
/// two PVs.
fn sr_spanning_two_pvs(scratch: &Scratch, source: &Path) -> PathBuf {
    let img = scratch.path("sr-spans.img");
    copy_image(source, &img).unwrap();
    let disk = rescue::inspect::inspect_path(&img).unwrap();
    let sr = disk
        .partitions
        .iter()
        .find(|p| p.role.as_deref() == Some("sr"))
        .expect("an SR partition");
    let vg = match &sr.content {
        Some(rescue::inspect::Content::LvmPv { vg: Some(vg), .. }) => vg.name.clone(),
        other => panic!("no VG on the SR: {other:?}"),
    };
    let other = scratch.path("second-pv.img");
    images::blank_disk(&other, 64 << 20).unwrap();
    let loop_of = |file: &Path, offset: u64, len: u64| {
        run(Command::new("losetup")
            .args([
                "--find",
                "--show",
                "--offset",
                &offset.to_string(),
                "--sizelimit",
                &len.to_string(),
            ])
            .arg(file))
        .unwrap()
        .trim()
        .to_string()
    };
    let a = loop_of(&img, sr.start_lba * 512, sr.size_bytes);
    let b = loop_of(&other, 0, 64 << 20);
    let devices = format!("{a},{b}");
    let lvm = |args: &[&str]| {
        run(Command::new(args[0])
            .args(["--devices", &devices, "--config", images::LVM_CONF])
            .args(&args[1..]))
    };
    let r = lvm(&["pvcreate", "-ff", "-y", "--norestorefile", &b])
        .and_then(|_| lvm(&["vgextend", &vg, &b]));
    for dev in [&a, &b] {
        let _ = run(Command::new("losetup").args(["-d", dev]));
    }
    r.unwrap();
    img
}

/// The source as a member of a whole-disk md 1.0 array (XCP-ng's software RAID): the
/// disk grown by 1 MiB and an md superblock at its new end, the GPT inside the array.
fn whole_disk_member(scratch: &Scratch, source: &Path) -> PathBuf {
    let img = scratch.path("whole-disk-md.img");
    copy_image(source, &img).unwrap();
    let f = OpenOptions::new()
        .read(true)
        .write(true)
        .open(&img)
        .unwrap();
    let size = f.metadata().unwrap().len() + (1 << 20);
    f.set_len(size).unwrap();
    drop(f);
    let mut f = OpenOptions::new()
        .read(true)
        .write(true)
        .open(&img)
        .unwrap();
    let geo = md::geometry(md::MetadataVersion::V1_0, Sectors(size / 512), false).unwrap();
    let array = md::ArraySpec {
        uuid: [0x24; 16],
        homehost: "xcp-ng".into(),
        name: "xcp-ng:0".into(),
        raid_disks: 2,
        ctime: 1_650_000_000,
        utime: 1_650_000_100,
        events: 40,
        clean: true,
        roles: vec![Some(md::Role::Active(0)), None],
    };
    let m = md::MemberSpec {
        dev_number: 0,
        device_uuid: [0x31; 16],
        dev_major_minor: (8, 0),
    };
    md::write_member(&mut f, &geo, &array, &m).unwrap();
    img
}

/// The disks every case draws from. Without `full` (CI runs only the cases marked `ci`)
/// the copies only e2e cases use are not made: their paths are left unbuilt.
fn make_images(scratch: &Scratch, full: bool) -> Images {
    let fx = fixture::fixture("xs7").unwrap();
    let source = scratch.path("source.img");
    copy_image(&fx.image, &source).unwrap();
    let size = std::fs::metadata(&source).unwrap().len();
    let blank = |name: &str, bytes: u64| {
        let p = scratch.path(name);
        images::blank_disk(&p, bytes).unwrap();
        p
    };
    let mirror = blank("mirror.img", size);
    let blank2 = blank("blank2.img", size);
    let min_size = smallest_mirror(&source);
    assert!(
        min_size <= size,
        "the fixture's own size is too small: {min_size} > {size}"
    );
    let short = blank("short.img", min_size - 512);

    // A GPT whose primary copy was wiped (the first MiB zeroed): the backup at the end
    // remains, as after a careless `dd` of the disk's start.
    let stale_gpt = blank("stale-gpt.img", size);
    run(Command::new("sgdisk")
        .args(["-o", "-n", "1:2048:+64M", "-t", "1:FD00"])
        .arg(&stale_gpt))
    .unwrap();
    run(Command::new("dd")
        .args(["if=/dev/zero", "bs=1M", "count=1", "conv=notrunc"])
        .arg(format!("of={}", stale_gpt.display())))
    .unwrap();

    let stale_md = blank("stale-md.img", size);
    write_stale_md(&stale_md);

    // An MBR host: the same install with its table turned into MBR (root, backup, logs,
    // swap), as hosts upgraded from XenServer 5.x keep.
    let mbr_host = scratch.path("mbr-host.img");
    // A UEFI host: the BIOS boot partition made an EFI system partition (FAT, `BOOT-`).
    let uefi_host = scratch.path("uefi-host.img");
    if full {
        copy_image(&source, &mbr_host).unwrap();
        run(Command::new("sgdisk")
            .args(["-m", "1:2:5:6"])
            .arg(&mbr_host))
        .unwrap();
        copy_image(&source, &uefi_host).unwrap();
        run(Command::new("sgdisk")
            .args(["-t", "4:EF00"])
            .arg(&uefi_host))
        .unwrap();
        let esp = rescue::inspect::inspect_path(&uefi_host)
            .unwrap()
            .partitions
            .into_iter()
            .find(|p| p.number == 4)
            .expect("partition 4");
        run(Command::new("mkfs.vfat")
            .arg(format!("--offset={}", esp.start_lba))
            .args(["-F", "16", "-n", "BOOT-KPZMWE"])
            .arg(&uefi_host)
            .arg((esp.size_bytes / 1024).to_string()))
        .unwrap();
    }

    let stick_plain = stick(scratch, "stick.img", None);
    let stick_conflict = stick(
        scratch,
        "stick-conflict.img",
        Some("rescue.action = convert\nrescue.source = serial:XS-S\nrescue.mirror = serial:XS-B2   # the new disk\n"),
    );
    let stick_mistakes = stick(
        scratch,
        "stick-mistakes.img",
        Some("# four mistakes\nrescue.acton = convert\nrescue.wait-resync = maybe\nrescue.mirror\nconvert everything now\n"),
    );
    let (sr_spans, whole_disk_md) = if full {
        (
            sr_spanning_two_pvs(scratch, &source),
            whole_disk_member(scratch, &source),
        )
    } else {
        (scratch.path("unbuilt"), scratch.path("unbuilt"))
    };
    Images {
        source,
        mirror,
        blank2,
        short,
        min_size,
        stale_gpt,
        stale_md,
        mbr_host,
        uefi_host,
        stick: stick_plain,
        stick_conflict,
        stick_mistakes,
        sr_spans,
        whole_disk_md,
    }
}

const CONVERT: &str = "rescue.action=convert rescue.source=serial:XS-S rescue.mirror=serial:XS-M";

fn cases(i: &Images) -> Vec<Case> {
    let s = || d(&i.source, "XS-S");
    let m = || d(&i.mirror, "XS-M");
    let says = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    vec![
        Case {
            tag: "mirror-one-sector-short",
            ci: false,
            disks: vec![s(), d(&i.short, "XS-M")],
            args: CONVERT.into(),
            says: vec![
                "is too small".into(),
                format!("use a disk of at least {} bytes", i.min_size),
            ],
        },
        Case {
            tag: "mirror-4kn",
            ci: false,
            disks: vec![
                s(),
                D {
                    sector_size: Some(4096),
                    ..m()
                },
            ],
            args: CONVERT.into(),
            says: says(&["has 4096-byte sectors", "use a mirror with the same sector size"]),
        },
        Case {
            tag: "mirror-read-only",
            ci: true,
            disks: vec![
                s(),
                D {
                    read_only: true,
                    ..m()
                },
            ],
            args: CONVERT.into(),
            says: says(&["is read-only", "release its write protection"]),
        },
        Case {
            tag: "mirror-is-the-stick",
            ci: true,
            disks: vec![s(), m(), d(&i.stick, "XS-STICK")],
            args: "rescue.action=convert rescue.source=serial:XS-S rescue.mirror=serial:XS-STICK rescue.wipe=serial:XS-STICK".into(),
            says: says(&[
                "rescue.mirror=serial:XS-STICK: /dev/vdc is the RESCUE stick",
                "rescue.wipe=serial:XS-STICK: /dev/vdc is the RESCUE stick",
                "never a target: name another disk",
            ]),
        },
        Case {
            tag: "mirror-stale-gpt-backup",
            ci: false,
            disks: vec![s(), d(&i.stale_gpt, "XS-M")],
            args: CONVERT.into(),
            says: says(&["is not blank", "rescue.wipe=serial:XS-M"]),
        },
        Case {
            tag: "mirror-stale-md",
            ci: false,
            disks: vec![s(), d(&i.stale_md, "XS-M")],
            args: CONVERT.into(),
            says: says(&["superblock of array", "rescue.wipe=serial:XS-M"]),
        },
        Case {
            tag: "wipe-names-another-disk",
            ci: false,
            disks: vec![s(), d(&i.stale_gpt, "XS-G"), m()],
            args: "rescue.action=convert rescue.source=serial:XS-S rescue.mirror=serial:XS-G rescue.wipe=serial:XS-M".into(),
            says: says(&["is not blank"]),
        },
        Case {
            tag: "auto-no-blank-mirror",
            ci: false,
            disks: vec![s(), d(&i.stale_md, "XS-M")],
            args: "rescue.action=convert rescue.source=auto rescue.mirror=auto".into(),
            says: says(&["no other blank disk", "attach one or name the mirror"]),
        },
        Case {
            tag: "mbr-host",
            ci: false,
            disks: vec![d(&i.mbr_host, "XS-S"), m()],
            args: CONVERT.into(),
            says: says(&["has no GPT partition table", "convert this one by hand"]),
        },
        Case {
            tag: "uefi-host",
            ci: false,
            disks: vec![d(&i.uefi_host, "XS-S"), m()],
            args: CONVERT.into(),
            says: says(&[
                "boots by UEFI, but the rescue was started in BIOS (legacy) mode",
                "rescue.efi-entries=no",
            ]),
        },
        Case {
            tag: "two-xenserver-disks",
            ci: false,
            disks: vec![s(), d(&i.uefi_host, "XS-U"), m()],
            args: "rescue.action=convert rescue.source=auto rescue.mirror=auto".into(),
            says: says(&["2 disks hold a XenServer install", "name the source with rescue.source="]),
        },
        Case {
            tag: "conf-disagrees-with-cmdline",
            ci: true,
            disks: vec![s(), m(), d(&i.blank2, "XS-B2"), d(&i.stick_conflict, "XS-STICK")],
            args: CONVERT.into(),
            says: says(&[
                "rescue.conf says rescue.mirror = serial:XS-B2 but the kernel command line says rescue.mirror=serial:XS-M: remove one of them",
                "not started because of the errors above: nothing was written",
            ]),
        },
        Case {
            tag: "conf-mistakes",
            ci: false,
            disks: vec![s(), m(), d(&i.stick_mistakes, "XS-STICK")],
            args: "rescue.action=convert rescue.source=auto".into(),
            says: says(&[
                "rescue.conf line 2: rescue.acton = convert: unknown rescue argument",
                "rescue.conf line 3: rescue.wait-resync = maybe:",
                "rescue.conf line 4: rescue.mirror:",
                "rescue.conf line 5: convert everything now: expected `key = value`",
            ]),
        },
        Case {
            tag: "sr-spans-two-pvs",
            ci: false,
            disks: vec![d(&i.sr_spans, "XS-S"), m()],
            args: CONVERT.into(),
            says: says(&["which spans 2 PVs", "move it onto this disk first"]),
        },
        Case {
            tag: "source-is-a-whole-disk-md-member",
            ci: false,
            disks: vec![d(&i.whole_disk_md, "XS-S"), d(&i.blank2, "XS-M")],
            args: CONVERT.into(),
            says: says(&["is itself a member of a whole-disk md array", "it is already RAID"]),
        },
        Case {
            tag: "unknown-action",
            ci: false,
            disks: vec![s(), m()],
            args: "rescue.action=mirror rescue.source=auto rescue.mirror=auto".into(),
            says: says(&["rescue.action=mirror"]),
        },
        Case {
            tag: "no-such-disk",
            ci: false,
            disks: vec![s(), m()],
            args: "rescue.action=convert rescue.source=sdz rescue.mirror=auto".into(),
            says: says(&["rescue.source=sdz: no such disk", "see rescue.action=inspect"]),
        },
        Case {
            tag: "mirror-missing",
            ci: false,
            disks: vec![s(), m()],
            args: "rescue.action=convert rescue.source=auto".into(),
            says: says(&["rescue.mirror= is required"]),
        },
        Case {
            tag: "metadata-unknown-role",
            ci: false,
            disks: vec![s(), m()],
            args: format!("{CONVERT} rescue.metadata=home:1.2"),
            says: says(&["home"]),
        },
        Case {
            tag: "replace-unconverted-host",
            ci: false,
            disks: vec![s(), m()],
            args: "rescue.action=replace rescue.survivor=auto rescue.new=auto".into(),
            says: says(&["no disk holds md members", "use rescue.action=convert"]),
        },
        Case {
            tag: "backup-onto-its-source",
            ci: false,
            disks: vec![s(), m()],
            args: "rescue.action=backup rescue.source=serial:XS-S rescue.to=serial:XS-S".into(),
            says: says(&["is the disk being backed up"]),
        },
        Case {
            tag: "backup-onto-read-only",
            ci: false,
            disks: vec![
                s(),
                D {
                    read_only: true,
                    ..m()
                },
            ],
            args: "rescue.action=backup rescue.source=serial:XS-S rescue.to=serial:XS-M rescue.wipe=serial:XS-M".into(),
            says: says(&["is read-only"]),
        },
        Case {
            tag: "restore-from-a-disk-without-backup",
            ci: false,
            disks: vec![s(), m(), d(&i.blank2, "XS-B2")],
            args: "rescue.action=restore rescue.from=serial:XS-M rescue.to=serial:XS-B2".into(),
            says: says(&["holds no filesystem with a backup"]),
        },
    ]
}

fn boot(scratch: &Scratch, c: &Case) -> rescue::report::Report {
    let disks = c
        .disks
        .iter()
        .map(|x| {
            let mut disk = Disk::new(&x.img, Bus::Virtio).serial(x.serial);
            if x.read_only {
                disk = disk.read_only();
            }
            if let Some(ss) = x.sector_size {
                disk = disk.sector_size(ss);
            }
            disk
        })
        .collect();
    qemu_tests::rescue_report(&scratch.dir.join(c.tag), disks, &c.args, TIMEOUT).unwrap()
}

/// Every file on a stick outside `reports/`, with its content.
fn stick_files(img: &Path) -> Vec<String> {
    let list = run(Command::new("mdir")
        .args(["-b", "-/", "-i"])
        .arg(img)
        .arg("::/"))
    .unwrap_or_default(); // an empty stick: mdir says "not found" and fails
    let mut out = Vec::new();
    for f in list.lines().map(str::trim).filter(|f| !f.is_empty()) {
        let f = f.trim_start_matches("::");
        if f.starts_with("/reports") || f.ends_with('/') {
            continue;
        }
        let body = run(Command::new("mtype")
            .arg("-i")
            .arg(img)
            .arg(format!("::{f}")))
        .unwrap();
        out.push(format!("{f}\n{body}"));
    }
    out.sort();
    out
}

/// Why a stick's content changed beyond the boot's report in `reports/`, if it did.
fn stick_changed(img: &Path, before: &[String]) -> Option<String> {
    let now = stick_files(img);
    if now != before {
        return Some(format!("{}: files outside reports/ changed", img.display()));
    }
    let reports = run(Command::new("mdir")
        .args(["-b", "-i"])
        .arg(img)
        .arg("::/reports"))
    .unwrap_or_default();
    (!reports.contains(".json")).then(|| format!("{}: no report saved in reports/", img.display()))
}

#[test]
fn bad_inputs_are_refused_and_write_nothing() {
    let scratch = Scratch::new("bad-inputs").unwrap();
    let full = full_matrix();
    let imgs = make_images(&scratch, full);
    let all = cases(&imgs);
    let n_all = all.len();
    let run: Vec<Case> = all.into_iter().filter(|c| full || c.ci).collect();
    let mut before: HashMap<PathBuf, String> = HashMap::new();
    for x in run.iter().flat_map(|c| &c.disks) {
        if !before.contains_key(&x.img) {
            before.insert(x.img.clone(), images::content_fingerprint(&x.img).unwrap());
        }
    }
    let mut before_conf: HashMap<PathBuf, Vec<String>> = HashMap::new();
    for x in run
        .iter()
        .flat_map(|c| &c.disks)
        .filter(|x| x.serial == "XS-STICK")
    {
        before_conf.insert(x.img.clone(), stick_files(&x.img));
    }
    // One VM at a time: the cases share images, and QEMU refuses an image another VM
    // holds open (sharing it read-only, or through a snapshot, would hide a write).
    let mut failures = Vec::new();
    for c in &run {
        let r = boot(&scratch, c);
        let mut bad = Vec::new();
        if r.ok {
            bad.push("was not refused".to_string());
        }
        for want in &c.says {
            if !r.errors.iter().any(|e| e.contains(want.as_str())) {
                bad.push(format!("no error says {want:?}"));
            }
        }
        for e in &r.errors {
            if e.contains('\n') {
                bad.push(format!("an error is not one line: {e:?}"));
            }
        }
        for x in &c.disks {
            if x.serial == "XS-STICK" {
                // The stick takes the boot's report by design; nothing else on it changes.
                if let Some(why) = stick_changed(&x.img, &before_conf[&x.img]) {
                    bad.push(why);
                }
            } else if before[&x.img] != images::content_fingerprint(&x.img).unwrap() {
                bad.push(format!("{} changed", x.img.display()));
            }
        }
        println!(
            "BAD-INPUT {} refused={} errors={:?}",
            c.tag, !r.ok, r.errors
        );
        if !bad.is_empty() {
            failures.push(format!(
                "{}: {} (errors: {:?})",
                c.tag,
                bad.join("; "),
                r.errors
            ));
        }
    }
    println!(
        "bad inputs: {} of {} cases run ({}), {} failed",
        run.len(),
        n_all,
        if full { "e2e" } else { "CI subset" },
        failures.len()
    );
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

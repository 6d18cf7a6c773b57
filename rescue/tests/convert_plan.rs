//! The conversion plan on XenServer 7.x images made with the real tools: the mirror
//! layout fits, every array holds its content, room comes from the unused backup
//! partition, and what the plan writes passes `sgdisk -v` and `mdadm --examine`.

mod inspect_util;

use inspect_util::*;
use rescue::convert::plan::{self, ArrayRole, Options, Payload, PlanError, SourceFacts};
use rescue::formats::{gpt, md};
use rescue::inspect::{inspect_path, Disk};
use std::collections::{BTreeMap, HashMap};
use std::fs::File;
use std::path::Path;
use std::process::Command;

const MIB: u64 = 1 << 20;

fn xs7(dir: &TempDir, size: u64, backup_fs: bool) -> std::path::PathBuf {
    let img = dir.path("source.img");
    xs7_gpt(&img, size, "ef02", true);
    for (n, label, uuid) in [
        (1, "root-qwerty", "01010101-0000-4000-8000-000000000001"),
        (5, "logs-qwerty", "05050505-0000-4000-8000-000000000005"),
    ] {
        let (o, s) = part_range(&img, n);
        mke2fs_at(&img, "ext3", label, uuid, o, s);
    }
    if backup_fs {
        let (o, s) = part_range(&img, 2);
        mke2fs_at(
            &img,
            "ext3",
            "root-qwerty",
            "02020202-0000-4000-8000-000000000002",
            o,
            s,
        );
    }
    let (o, s) = part_range(&img, 6);
    mkswap_at(
        dir,
        &img,
        "swap-qwerty",
        "06060606-0000-4000-8000-000000000006",
        o,
        s,
    );
    let (o, s) = part_range(&img, 3);
    pv_at(
        &img,
        "AbCdEf-1234-5678-9abc-defg-hijk-lmnopq",
        "VG_XenStorage-1d2c",
        o,
        s,
    );
    img
}

fn blank(dir: &TempDir, name: &str, size: u64) -> (std::path::PathBuf, Disk) {
    let img = dir.path(name);
    sparse_file(&img, size);
    let d = inspect_path(&img).unwrap();
    (img, d)
}

/// The plan with the rescue's defaults (bitmaps on).
fn make_plan(src_img: &Path, mirror: &Disk) -> Result<plan::ConvertPlan, PlanError> {
    make_plan_with(
        src_img,
        mirror,
        Options {
            attach_source: true,
            bitmap: true,
            ..Default::default()
        },
    )
}

fn make_plan_with(
    src_img: &Path,
    mirror: &Disk,
    opts: Options,
) -> Result<plan::ConvertPlan, PlanError> {
    plan_of(&inspect_path(src_img).unwrap(), src_img, mirror, opts)
}

/// The plan for `source` as inspected (possibly edited by the test), its GPT read from
/// `src_img`, with seeded GUIDs.
fn plan_of(
    source: &Disk,
    src_img: &Path,
    mirror: &Disk,
    opts: Options,
) -> Result<plan::ConvertPlan, PlanError> {
    let table = gpt::read(&mut File::open(src_img).unwrap(), Some(512)).unwrap();
    let mut seed = gpt::GuidSource::Seeded(7);
    plan::plan(
        source,
        &table,
        mirror,
        &SourceFacts::default(),
        &opts,
        &mut || seed.next_guid().unwrap(),
    )
}

/// Invariants every plan must hold, whatever the disks.
fn check_layout(p: &plan::ConvertPlan, mirror_size: u64) {
    let last_usable = mirror_size / 512 - 34;
    let mut by_start = p.partitions.clone();
    by_start.sort_by_key(|x| x.start_lba);
    let mut prev_end = 2047;
    for x in &by_start {
        assert!(x.start_lba > prev_end, "partition {} overlaps", x.number);
        assert_eq!(
            x.start_lba % 2048,
            0,
            "partition {} not 1 MiB aligned",
            x.number
        );
        prev_end = x.start_lba + x.size_bytes / 512 - 1;
    }
    assert!(
        prev_end <= last_usable,
        "layout ends at {prev_end}, mirror's last usable LBA is {last_usable}"
    );
    // Physical order is kept.
    let src_order: Vec<u32> = {
        let mut v = p.partitions.clone();
        v.sort_by_key(|x| x.source_start_lba);
        v.iter().map(|x| x.number).collect()
    };
    assert_eq!(
        src_order,
        by_start.iter().map(|x| x.number).collect::<Vec<_>>()
    );
    for a in &p.arrays {
        let part = p
            .partitions
            .iter()
            .find(|x| x.number == a.partition)
            .unwrap();
        assert_eq!(part.size_bytes, a.member_size_bytes);
        // The ESP keeps its type: firmware looks for its loader on an ESP.
        let want = if a.role == ArrayRole::Esp {
            gpt::types::EFI_SYSTEM
        } else {
            gpt::types::LINUX_RAID
        };
        assert_eq!(part.type_guid, want);
        assert!(
            a.data_size_bytes >= a.content_size_bytes,
            "{:?} does not hold its content",
            a.role
        );
        let geo = md::geometry(
            plan::parse_metadata_version(&a.metadata).unwrap(),
            rescue::units::Sectors(a.member_size_bytes / 512),
            a.bitmap,
        )
        .unwrap();
        assert_eq!(geo.array_size.bytes().0, a.data_size_bytes);
        assert_eq!(geo.bitmap.is_some(), a.bitmap, "{:?}", a.role);
    }
    let boot = p
        .partitions
        .iter()
        .find(|x| x.role.as_deref() == Some("boot"))
        .unwrap();
    if boot.type_guid == gpt::types::EFI_SYSTEM {
        assert_eq!(boot.array, Some(ArrayRole::Esp), "the ESP is mirrored");
        return;
    }
    assert!(
        boot.array.is_none(),
        "md on the BIOS boot partition would be overwritten by grub-install"
    );
    assert_eq!(boot.type_guid, gpt::types::BIOS_BOOT);
}

/// `key : value` lines of mdadm's output, first occurrence of each key.
fn fields(text: &str) -> HashMap<String, String> {
    let mut m = HashMap::new();
    for line in text.lines() {
        if let Some((k, v)) = line.split_once(" : ") {
            m.entry(k.trim().to_string())
                .or_insert_with(|| v.trim().to_string());
        }
    }
    m
}

/// Leading (signed) number of a value such as "-16 sectors from superblock".
fn num(v: &str) -> i64 {
    v.split_whitespace().next().unwrap().parse().unwrap()
}

/// What mdadm says of a member's bitmap: `--examine` finds it where mdadm itself would
/// put it for the metadata version, `--examine-bitmap` finds it covering the whole
/// array, clean, in step with the superblock. Without one, mdadm finds none.
fn check_bitmap(dev: &str, a: &plan::PlannedArray) {
    let ex = run("mdadm", &["--examine", dev]);
    let m = fields(&ex);
    let out = Command::new("mdadm")
        .args(["--examine-bitmap", dev])
        .output()
        .unwrap();
    let xb = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let ctx = format!("{:?} {}\n{ex}\n{xb}", a.role, a.metadata);
    if a.metadata != "0.90" {
        let want = if a.bitmap { "0x1" } else { "0x0" };
        assert_eq!(m["Feature Map"], want, "{ctx}");
    }
    if !a.bitmap {
        assert!(!m.contains_key("Internal Bitmap"), "{ctx}");
        assert!(!out.status.success(), "{ctx}");
        return;
    }
    let bitmap = &m["Internal Bitmap"];
    let x = fields(&xb);
    assert!(out.status.success(), "{ctx}");
    let bits = a.data_size_bytes.div_ceil(64 * MIB);
    match a.metadata.as_str() {
        // In the 64 KiB 0.90 reserves at the end, right after its superblock.
        "0.90" => assert_eq!(bitmap, "present", "{ctx}"),
        // Between the data's end and the superblock, before the bad-block log.
        "1.0" => {
            assert_eq!(bitmap, "-16 sectors from superblock", "{ctx}");
            let data_end = num(&m["Avail Dev Size"]);
            assert!(num(&m["Super Offset"]) - 16 >= data_end, "{ctx}");
        }
        // Right after the superblock, ending before the data.
        "1.2" => {
            assert_eq!(bitmap, "8 sectors from superblock", "{ctx}");
            let space = (bits.div_ceil(8) + 256).next_multiple_of(4096) / 512;
            assert!(8 + 8 + space as i64 <= num(&m["Data Offset"]), "{ctx}");
        }
        other => panic!("metadata {other}"),
    }
    assert_eq!(x["UUID"], a.uuid, "{ctx}");
    assert_eq!(x["State"], "OK", "{ctx}");
    assert_eq!(
        (x["Events"].as_str(), x["Events Cleared"].as_str()),
        (m["Events"].as_str(), m["Events"].as_str()),
        "{ctx}"
    );
    // mdadm's own choice for arrays this small: its 64 MiB floor.
    assert_eq!(x["Chunksize"], "64 MB", "{ctx}");
    assert_eq!(
        num(&x["Sync Size"]) as u64,
        a.data_size_bytes / 1024,
        "{ctx}"
    );
    assert_eq!(
        x["Bitmap"],
        format!("{bits} bits (chunks), 0 dirty (0.0%)"),
        "{ctx}"
    );
}

/// Writes the plan's table and the mirror's superblocks as the conversion does (then the
/// source's over them), and checks them with `sgdisk -v`, `mdadm --examine` and
/// `mdadm --examine-bitmap`.
fn write_mirror_and_check(plan: &plan::ConvertPlan, mirror_img: &Path) {
    let mut f = File::options()
        .read(true)
        .write(true)
        .open(mirror_img)
        .unwrap();
    rescue::convert::write_table(&mut f, plan, false).unwrap();
    drop(f);
    let v = run("sgdisk", &["-v", p(mirror_img)]);
    assert!(v.contains("No problems found"), "sgdisk -v: {v}");
    for x in &plan.partitions {
        let i = sgdisk_info(mirror_img, x.number);
        assert_eq!(
            (i.first, i.last),
            (x.start_lba, x.start_lba + x.size_bytes / 512 - 1),
            "partition {}",
            x.number
        );
    }
    for a in &plan.arrays {
        let x = plan
            .partitions
            .iter()
            .find(|x| x.number == a.partition)
            .unwrap();
        let lo = Loop::new(mirror_img, x.start_lba * 512, x.size_bytes);
        rescue::convert::write_superblock(Path::new(&lo.0), plan, a, false).unwrap();
        let ex = run("mdadm", &["--examine", &lo.0]);
        let version = if a.metadata == "0.90" {
            "0.90.00"
        } else {
            &a.metadata
        };
        assert!(ex.contains(&format!("Version : {version}")), "{ex}");
        assert!(ex.contains(&format!("UUID : {}", a.uuid)), "{ex}");
        assert!(
            ex.contains("Raid Level : raid1") && ex.contains("Raid Devices : 2"),
            "{ex}"
        );
        assert!(ex.contains("- correct"), "checksum: {ex}");
        assert!(
            ex.contains(&format!("Array Size : {} ", a.data_size_bytes / 1024)),
            "{ex}"
        );
        if a.metadata == "0.90" {
            // Autodetection starts it as /dev/md<role index>, the device the target names.
            assert!(
                ex.contains(&format!("Preferred Minor : {}", a.role.md_index())),
                "{ex}"
            );
        } else {
            assert!(
                ex.contains(&format!("Name : xenserver:{}", a.role.as_str())),
                "{ex}"
            );
            assert!(ex.contains("Array State : A."), "{ex}");
        }
        check_bitmap(&lo.0, a);
        // The source's member (the spare the kernel recovers onto) carries the same.
        rescue::convert::write_superblock(Path::new(&lo.0), plan, a, true).unwrap();
        check_bitmap(&lo.0, a);
    }
}

#[test]
fn equal_size_mirror_takes_room_from_the_empty_backup_partition() {
    let dir = TempDir::new("plan-equal");
    let size = 224 * MIB;
    let src = xs7(&dir, size, false);
    let (_, mirror) = blank(&dir, "mirror.img", size);
    let p = make_plan(&src, &mirror).unwrap();
    check_layout(&p, size);
    let roles: Vec<(ArrayRole, &str, u32)> = p
        .arrays
        .iter()
        .map(|a| (a.role, a.metadata.as_str(), a.partition))
        .collect();
    assert_eq!(
        roles,
        vec![
            (ArrayRole::Root, "1.0", 1),
            (ArrayRole::Backup, "1.0", 2),
            (ArrayRole::Logs, "1.2", 5),
            (ArrayRole::Swap, "1.2", 6),
            (ArrayRole::Sr, "1.2", 3)
        ]
    );
    assert!(p.room.contains("backup partition 2"), "{}", p.room);
    let backup = p.partitions.iter().find(|x| x.number == 2).unwrap();
    assert!(backup.size_bytes < backup.source_size_bytes);
    for n in [1, 3, 5, 6] {
        let x = p.partitions.iter().find(|x| x.number == n).unwrap();
        assert!(
            x.size_bytes > x.source_size_bytes,
            "partition {n} must grow by its md metadata"
        );
    }
    assert!(matches!(p.arrays[0].payload, Payload::Ext { .. }));
    assert!(matches!(p.arrays[1].payload, Payload::Empty));
}

#[test]
fn larger_mirror_keeps_the_backup_partition_whole() {
    let dir = TempDir::new("plan-larger");
    let src = xs7(&dir, 224 * MIB, false);
    let (_, mirror) = blank(&dir, "mirror.img", 256 * MIB);
    let p = make_plan(&src, &mirror).unwrap();
    check_layout(&p, 256 * MIB);
    let backup = p.partitions.iter().find(|x| x.number == 2).unwrap();
    assert!(backup.size_bytes >= backup.source_size_bytes);
    assert!(p.room.contains("after the last partition"), "{}", p.room);
}

#[test]
fn used_backup_partition_and_equal_mirror_is_too_small() {
    let dir = TempDir::new("plan-backup-used");
    let size = 224 * MIB;
    let src = xs7(&dir, size, true);
    let (_, mirror) = blank(&dir, "mirror.img", size);
    match make_plan(&src, &mirror) {
        Err(PlanError::TooSmall {
            needed, min_size, ..
        }) => {
            assert!(needed > 0 && min_size > size);
        }
        other => panic!("expected TooSmall, got {other:?}"),
    }
}

#[test]
fn smaller_mirror_is_refused() {
    let dir = TempDir::new("plan-smaller");
    let src = xs7(&dir, 224 * MIB, false);
    let (_, mirror) = blank(&dir, "mirror.img", 160 * MIB);
    assert!(matches!(
        make_plan(&src, &mirror),
        Err(PlanError::TooSmall { .. })
    ));
}

#[test]
fn written_table_and_superblocks_pass_sgdisk_and_mdadm() {
    let dir = TempDir::new("plan-write");
    let size = 224 * MIB;
    let src = xs7(&dir, size, false);
    let (mirror_img, mirror) = blank(&dir, "mirror.img", size);
    let plan = make_plan(&src, &mirror).unwrap();
    assert!(
        plan.arrays.iter().all(|a| a.bitmap),
        "bitmaps are the default"
    );
    write_mirror_and_check(&plan, &mirror_img);
}

/// `rescue.bitmap=no`: no bitmap on any array, whatever its metadata version.
#[test]
fn without_bitmaps_mdadm_finds_none() {
    let dir = TempDir::new("plan-nobitmap");
    let size = 224 * MIB;
    let src = xs7(&dir, size, false);
    let (mirror_img, mirror) = blank(&dir, "mirror.img", size);
    let opts = Options {
        attach_source: true,
        bitmap: false,
        // All three versions: 1.0 root and backup, 1.2 swap and SR, 0.90 logs.
        metadata: BTreeMap::from([(ArrayRole::Logs, md::MetadataVersion::V0_90)]),
        ..Default::default()
    };
    let plan = make_plan_with(&src, &mirror, opts).unwrap();
    check_layout(&plan, size);
    let versions: Vec<&str> = plan.arrays.iter().map(|a| a.metadata.as_str()).collect();
    assert_eq!(versions, ["1.0", "1.0", "0.90", "1.2", "1.2"]);
    assert!(plan.arrays.iter().all(|a| !a.bitmap));
    let lines = plan.human_lines();
    let arrays: Vec<&String> = lines
        .iter()
        .filter(|l| l.starts_with("plan: array "))
        .collect();
    assert_eq!(arrays.len(), 5);
    assert!(
        arrays.iter().all(|l| l.contains(" no bitmap ")),
        "{lines:#?}"
    );
    write_mirror_and_check(&plan, &mirror_img);
}

/// With a bitmap each array still holds its content, for every metadata version, and
/// the layout still fits an equal-size mirror, the room coming from the unused backup.
#[test]
fn bitmaps_fit_every_metadata_version_on_an_equal_mirror() {
    let dir = TempDir::new("plan-bitmap-fit");
    let size = 224 * MIB;
    let src = xs7(&dir, size, false);
    let (_, mirror) = blank(&dir, "mirror.img", size);
    for v in [
        md::MetadataVersion::V0_90,
        md::MetadataVersion::V1_0,
        md::MetadataVersion::V1_2,
    ] {
        let opts = |bitmap| Options {
            attach_source: true,
            bitmap,
            metadata: ArrayRole::ALL.into_iter().map(|r| (r, v)).collect(),
            ..Default::default()
        };
        let with = make_plan_with(&src, &mirror, opts(true)).unwrap();
        let without = make_plan_with(&src, &mirror, opts(false)).unwrap();
        // check_layout: data size >= content, and the geometry has the bitmap.
        check_layout(&with, size);
        assert!(
            with.room.contains("backup partition 2"),
            "{v}: {}",
            with.room
        );
        for (a, b) in with.arrays.iter().zip(&without.arrays) {
            assert_eq!(a.metadata, v.to_string());
            assert!(a.bitmap && !b.bitmap);
            assert!(
                a.member_size_bytes >= b.member_size_bytes,
                "{v} {:?}: a bitmap never needs a smaller member",
                a.role
            );
            let geo =
                md::geometry(v, rescue::units::Sectors(a.member_size_bytes / 512), true).unwrap();
            let bm = geo.bitmap.unwrap();
            let start = bm.start(geo.super_offset).unwrap();
            // The bitmap lies outside the array's data on every version.
            let data = geo.data_offset.0..geo.data_offset.0 + geo.array_size.0;
            let bitmap = start.0..start.0 + bm.space.0;
            assert!(
                bitmap.end <= data.start || bitmap.start >= data.end,
                "{v} {:?}: bitmap {bitmap:?} overlaps data {data:?}",
                a.role
            );
        }
        assert!(with
            .human_lines()
            .iter()
            .filter(|l| l.starts_with("plan: array "))
            .all(|l| l.contains(&format!("metadata {v} bitmap internal uuid"))));
    }
}

/// A journal written before bitmaps existed: its arrays read back without one, as
/// their members were written.
#[test]
fn a_plan_from_before_bitmaps_reads_back_without_them() {
    let dir = TempDir::new("plan-old-journal");
    let size = 224 * MIB;
    let src = xs7(&dir, size, false);
    let (_, mirror) = blank(&dir, "mirror.img", size);
    let plan = make_plan(&src, &mirror).unwrap();
    let mut v = serde_json::to_value(&plan).unwrap();
    for a in v["arrays"].as_array_mut().unwrap() {
        assert!(a.as_object_mut().unwrap().remove("bitmap").is_some());
    }
    let old: plan::ConvertPlan = serde_json::from_value(v).unwrap();
    assert!(old.arrays.iter().all(|a| !a.bitmap));
}

#[test]
fn source_that_is_not_xenserver_is_refused() {
    let dir = TempDir::new("plan-notxs");
    let (a, _) = blank(&dir, "a.img", 64 * MIB);
    run("sgdisk", &["-n1:0:0", "-t1:8300", p(&a)]);
    let (_, mirror) = blank(&dir, "b.img", 64 * MIB);
    let r = make_plan_with(&a, &mirror, Options::default());
    assert!(matches!(r, Err(PlanError::NotXenServer(_))), "{r:?}");
}

/// A 6.x disk as its installer writes it: root from LBA 34 (no alignment) with the legacy
/// BIOS bootable attribute, an empty backup, the SR to the end.
fn xs6(dir: &TempDir, size: u64) -> std::path::PathBuf {
    let img = dir.path("source6.img");
    sparse_file(&img, size);
    run(
        "sgdisk",
        &[
            "-a",
            "1",
            "-n1:34:+64M",
            "-c1:root-abcdef",
            "-A1:set:2",
            "-n2:0:+64M",
            "-n3:0:0",
            "-t3:8e00",
            p(&img),
        ],
    );
    let (o, s) = part_range(&img, 1);
    assert_eq!(o, 34 * 512, "the fixture's root must start at LBA 34");
    mke2fs_at(
        &img,
        "ext3",
        "root-abcdef",
        "01010101-0000-4000-8000-000000000061",
        o,
        s,
    );
    let (o, s) = part_range(&img, 3);
    pv_at(
        &img,
        "AbCdEf-1234-5678-9abc-defg-hijk-lmnop6",
        "VG_XenStorage-6d2c",
        o,
        s,
    );
    img
}

#[test]
fn six_x_gets_the_extlinux_chain_aligned_layout_and_a_0_90_root() {
    let dir = TempDir::new("plan-xs6");
    let size = 200 * MIB;
    let src = xs6(&dir, size);
    let (mirror_img, mirror) = blank(&dir, "mirror.img", size);
    let plan = make_plan(&src, &mirror).unwrap();
    assert_eq!(
        plan.boot_chain,
        rescue::convert::bootchain::BootChain::ExtlinuxBios
    );
    let roles: Vec<(ArrayRole, &str, u32)> = plan
        .arrays
        .iter()
        .map(|a| (a.role, a.metadata.as_str(), a.partition))
        .collect();
    assert_eq!(
        roles,
        vec![
            (ArrayRole::Root, "0.90", 1),
            (ArrayRole::Backup, "1.0", 2),
            (ArrayRole::Sr, "1.2", 3)
        ]
    );
    // Moved from LBA 34 to 1 MiB, with its metadata's room, from the unused backup.
    let root = plan.partitions.iter().find(|x| x.number == 1).unwrap();
    assert_eq!((root.source_start_lba, root.start_lba), (34, 2048));
    assert!(plan.room.contains("backup partition 2"), "{}", plan.room);
    let bootable = rescue::convert::bootchain::LEGACY_BIOS_BOOTABLE;
    for x in &plan.partitions {
        assert_eq!(x.start_lba % 2048, 0, "partition {}", x.number);
        assert_eq!(
            x.attributes & bootable != 0,
            x.number == 1,
            "legacy BIOS bootable on partition {}",
            x.number
        );
    }
    assert!(plan
        .human_lines()
        .iter()
        .any(|l| l.contains("boot chain: extlinux")));

    // What is written passes sgdisk (attribute included) and mdadm (0.90 on root, with
    // its bitmap).
    assert!(plan.arrays.iter().all(|a| a.bitmap));
    write_mirror_and_check(&plan, &mirror_img);
    let attrs = run("sgdisk", &["-A", "1:show", p(&mirror_img)]);
    assert!(attrs.contains("legacy BIOS bootable"), "{attrs}");
    let attrs = run("sgdisk", &["-A", "2:show", p(&mirror_img)]);
    assert!(!attrs.contains("legacy BIOS bootable"), "{attrs}");
}

/// A resumed job finds its disks by identity; their kernel names may have swapped since
/// (AHCI probe order). The plan then names this boot's devices, and says so.
#[test]
fn a_resumed_plan_takes_the_disks_names_of_this_boot() {
    let dir = TempDir::new("plan-rebind");
    let size = 224 * MIB;
    let src = xs7(&dir, size, false);
    let (_, mirror) = blank(&dir, "mirror.img", size);
    let mut p = make_plan(&src, &mirror).unwrap();
    let mut source_now = inspect_path(&src).unwrap();
    let mut mirror_now = mirror.clone();
    assert_eq!(
        p.rebind_disks(&source_now, &mirror_now),
        None,
        "same names: no line"
    );
    source_now.name = "sdb".into();
    source_now.path = "/dev/sdb".into();
    mirror_now.name = "sda".into();
    mirror_now.path = "/dev/sda".into();
    let line = p
        .rebind_disks(&source_now, &mirror_now)
        .expect("a line for the console");
    assert!(line.contains("source /dev/sdb (was "), "{line}");
    assert!(line.contains("mirror /dev/sda (was "), "{line}");
    assert_eq!(
        (p.source.path.as_str(), p.source.name.as_str()),
        ("/dev/sdb", "sdb")
    );
    assert_eq!(
        (p.mirror.path.as_str(), p.mirror.name.as_str()),
        ("/dev/sda", "sda")
    );
    assert_eq!(p.mirror.size_bytes, mirror.size_bytes);
}

/// The size a `TooSmall` refusal asks for is enough, and one sector less is not: with the
/// backup partition in use (no room to borrow) and empty (room borrowed from it).
#[test]
fn too_small_names_the_exact_smallest_mirror() {
    for backup_fs in [true, false] {
        let dir = TempDir::new(&format!("plan-boundary-{backup_fs}"));
        let src = xs7(&dir, 224 * MIB, backup_fs);
        let (_, tiny) = blank(&dir, "tiny.img", 96 * MIB);
        let Err(PlanError::TooSmall { min_size, .. }) = make_plan(&src, &tiny) else {
            panic!("a 96 MiB mirror was accepted");
        };
        assert_eq!(
            min_size % 512,
            0,
            "min_size {min_size} is not whole sectors"
        );
        let (_, exact) = blank(&dir, "exact.img", min_size);
        let p = make_plan(&src, &exact).unwrap_or_else(|e| {
            panic!("backup_fs {backup_fs}: the size asked for ({min_size}) is refused: {e}")
        });
        check_layout(&p, min_size);
        let (_, short) = blank(&dir, "short.img", min_size - 512);
        assert!(
            matches!(make_plan(&src, &short), Err(PlanError::TooSmall { .. })),
            "backup_fs {backup_fs}: one sector below {min_size} was accepted"
        );
    }
}

/// An SR whose VG has PVs on other disks would stay half on an unmirrored disk.
#[test]
fn an_sr_vg_spanning_two_pvs_is_refused() {
    let dir = TempDir::new("plan-sr-spans");
    let src = xs7(&dir, 224 * MIB, false);
    let (_, mirror) = blank(&dir, "mirror.img", 224 * MIB);
    let mut source = inspect_path(&src).unwrap();
    let sr = source
        .partitions
        .iter_mut()
        .find(|p| p.role.as_deref() == Some("sr"))
        .unwrap();
    match &mut sr.content {
        Some(rescue::inspect::Content::LvmPv { vg: Some(vg), .. }) => vg.pv_count = 2,
        other => panic!("no VG read on the SR: {other:?}"),
    }
    let e = plan_of(&source, &src, &mirror, Options::default()).unwrap_err();
    assert_eq!(
        e,
        PlanError::SrSpansDisks(3, "VG_XenStorage-1d2c".into(), 2),
        "{e}"
    );
}

/// A UEFI install: the same layout with an ESP (vfat `BOOT-QWERTY`) in partition 4.
fn xs7_uefi(dir: &TempDir, size: u64) -> std::path::PathBuf {
    let img = xs7(dir, size, false);
    run("sgdisk", &["-t4:ef00", p(&img)]);
    let (o, s) = part_range(&img, 4);
    mkfs_vfat_at(&img, "BOOT-QWERTY", "1234ABCD", o, s);
    img
}

#[test]
fn a_uefi_host_gets_its_esp_as_a_1_0_array_that_keeps_the_esp_type() {
    let dir = TempDir::new("plan-uefi");
    let size = 200 * MIB;
    let src = xs7_uefi(&dir, size);
    let (mirror_img, mirror) = blank(&dir, "mirror.img", size);
    let plan = make_plan(&src, &mirror).unwrap();
    assert_eq!(
        plan.boot_chain,
        rescue::convert::bootchain::BootChain::GrubEfi
    );
    let esp = plan.esp_array().expect("an ESP array");
    assert_eq!((esp.partition, esp.metadata.as_str()), (4, "1.0"));
    assert_eq!(
        esp.data_offset_bytes, 0,
        "firmware reads FAT at the member's start"
    );
    assert_eq!(
        esp.payload,
        Payload::Vfat {
            label: Some("BOOT-QWERTY".into()),
            serial: Some("1234-ABCD".into())
        }
    );
    assert!(esp.data_size_bytes >= esp.content_size_bytes);
    let p4 = plan.partitions.iter().find(|x| x.number == 4).unwrap();
    assert_eq!(p4.type_guid, gpt::types::EFI_SYSTEM.to_string());
    assert_eq!(p4.array, Some(ArrayRole::Esp));
    // Every other array is a Linux RAID partition as before.
    for x in plan
        .partitions
        .iter()
        .filter(|x| x.array.is_some() && x.number != 4)
    {
        assert_eq!(x.type_guid, gpt::types::LINUX_RAID.to_string());
    }
    assert!(plan
        .human_lines()
        .iter()
        .any(|l| l.contains("GRUB2 on UEFI")));
    check_layout(&plan, size);
    write_mirror_and_check(&plan, &mirror_img);

    // 1.2 would hide the FAT from the firmware: refused, naming the fix.
    let mut opts = Options {
        attach_source: true,
        bitmap: true,
        ..Default::default()
    };
    opts.metadata
        .insert(ArrayRole::Esp, md::MetadataVersion::V1_2);
    let e = make_plan_with(&src, &mirror, opts).unwrap_err();
    assert!(e.to_string().contains("esp:1.0"), "{e}");
}

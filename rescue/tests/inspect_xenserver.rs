//! Inspect on XenServer-like images built with the real tools (sgdisk, mke2fs, mkswap,
//! mkfs.vfat, pvcreate/vgcreate): the report is snapshotted, and each partition's
//! type/label/UUID is compared with `blkid -p` and the table with `sgdisk -i`.

mod inspect_util;

use inspect_util::*;
use rescue::inspect::{inspect, inspect_path, Content, Disk};
use rescue::units::Bytes;
use std::fs::File;
use std::path::Path;

const PV_UUID: &str = "AbCdEf-1234-5678-9abc-defg-hijk-lmnopq";
const VG: &str = "VG_XenStorage-0bb3e8d0-5f8c-4c5e-9a1b-2a6c0f1e3d4c";

fn inspect_image(img: &Path, sector_size: u32) -> Disk {
    let mut f = File::open(img).unwrap();
    let size = std::fs::metadata(img).unwrap().len();
    let name = img.file_name().unwrap().to_str().unwrap();
    inspect(&mut f, name, name, Bytes(size), sector_size).unwrap()
}

/// Every partition's fs_type/label/uuid must be what blkid says, and the GPT fields what
/// sgdisk says.
fn check_against_tools(img: &Path, disk: &Disk) {
    let numbers: Vec<u32> = disk.partitions.iter().map(|p| p.number).collect();
    assert_eq!(
        numbers
            .iter()
            .copied()
            .collect::<std::collections::BTreeSet<_>>()
            .into_iter()
            .collect::<Vec<_>>(),
        sgdisk_numbers(img)
    );
    assert_eq!(
        disk.disk_guid.as_deref(),
        Some(sgdisk_disk_guid(img).as_str())
    );
    for part in &disk.partitions {
        let info = sgdisk_info(img, part.number);
        assert_eq!(part.start_lba, info.first, "p{} start", part.number);
        assert_eq!(
            part.size_bytes,
            (info.last - info.first + 1) * 512,
            "p{} size",
            part.number
        );
        assert_eq!(
            part.type_guid.as_deref(),
            Some(info.type_guid.as_str()),
            "p{} type",
            part.number
        );
        assert_eq!(
            part.attributes, info.attributes,
            "p{} attributes",
            part.number
        );
        assert_eq!(
            part.name.as_deref(),
            Some(info.name.as_str()),
            "p{} name",
            part.number
        );
        let blkid = blkid_range(img, part.start_lba * 512, part.size_bytes);
        assert_eq!(
            (part.fs_type.clone(), part.label.clone(), part.uuid.clone()),
            blkid,
            "p{} vs blkid",
            part.number
        );
    }
}

/// 7.x BIOS host with a local SR: physical order 5,2,1,4,6,3.
fn build_xs7(dir: &TempDir, boot_type: &str, sr: bool) -> std::path::PathBuf {
    let img = dir.path("xs7.img");
    xs7_gpt(&img, 224 * MIB, boot_type, sr);
    let (o, s) = part_range(&img, 1);
    mke2fs_at(
        &img,
        "ext3",
        "root-abcdef",
        "01010101-0000-4000-8000-000000000001",
        o,
        s,
    );
    let (o, s) = part_range(&img, 5);
    mke2fs_at(
        &img,
        "ext3",
        "logs-abcdef",
        "05050505-0000-4000-8000-000000000005",
        o,
        s,
    );
    let (o, s) = part_range(&img, 6);
    mkswap_at(
        dir,
        &img,
        "swap-abcdef",
        "06060606-0000-4000-8000-000000000006",
        o,
        s,
    );
    if sr {
        let (o, s) = part_range(&img, 3);
        pv_at(&img, PV_UUID, VG, o, s);
    }
    img
}

#[test]
fn xenserver7_bios_with_sr() {
    let dir = TempDir::new("xs7-bios");
    let img = build_xs7(&dir, "ef02", true);
    let disk = inspect_image(&img, 512);
    check_against_tools(&img, &disk);
    let xs = disk.xenserver.as_ref().expect("7.x layout not recognised");
    assert_eq!(
        (
            xs.layout.as_str(),
            xs.label_suffix.as_str(),
            xs.has_local_sr,
            xs.on_md
        ),
        ("7.x", "abcdef", true, false)
    );
    let sr = disk.partitions.iter().find(|p| p.number == 3).unwrap();
    let Some(Content::LvmPv {
        pv_uuid,
        vg_name,
        vg: Some(vg),
        problems,
    }) = &sr.content
    else {
        panic!("p3 is not a PV with a VG: {:?}", sr.content);
    };
    assert_eq!((pv_uuid.as_str(), vg_name.as_deref()), (PV_UUID, Some(VG)));
    assert!(problems.is_empty(), "{problems:?}");
    assert_eq!((vg.name.as_str(), vg.pv_name.as_deref()), (VG, Some("pv0")));
    assert!(vg.lvs.is_empty());
    insta::assert_json_snapshot!(stable(disk));
}

/// `vgcreate` makes up the VG's UUID: keep it out of the snapshots.
fn stable(mut disk: Disk) -> Disk {
    for p in &mut disk.partitions {
        if let Some(Content::LvmPv { vg: Some(vg), .. }) = &mut p.content {
            vg.uuid = "[made up by vgcreate]".into();
        }
    }
    disk
}

#[test]
fn xenserver7_uefi_without_sr_has_boot_as_p3() {
    let dir = TempDir::new("xs7-uefi");
    let img = build_xs7(&dir, "ef00", false);
    let (o, s) = part_range(&img, 3);
    mkfs_vfat_at(&img, "BOOT-ABCDEF", "1234ABCD", o, s);
    let disk = inspect_image(&img, 512);
    check_against_tools(&img, &disk);
    let roles: Vec<(u32, Option<&str>)> = disk
        .partitions
        .iter()
        .map(|p| (p.number, p.role.as_deref()))
        .collect();
    assert_eq!(
        roles,
        [
            (1, Some("root")),
            (2, Some("backup")),
            (3, Some("boot")),
            (5, Some("logs")),
            (6, Some("swap"))
        ]
    );
    assert!(!disk.xenserver.as_ref().unwrap().has_local_sr);
    insta::assert_json_snapshot!(disk);
}

#[test]
fn xenserver6_unaligned_with_legacy_boot_bit() {
    let dir = TempDir::new("xs6");
    let img = dir.path("xs6.img");
    sparse_file(&img, 200 * MIB);
    // 64 MiB root starting at LBA 34 as the 6.x installer did, backup, then the SR.
    run(
        "sgdisk",
        &[
            "-a1",
            "-U11111111-2222-4333-8444-666666666666",
            "-n1:34:131105",
            "-t1:0700",
            "-u1:BBBBBBBB-0000-4000-8000-000000000001",
            "-n2:131106:262177",
            "-t2:0700",
            "-u2:BBBBBBBB-0000-4000-8000-000000000002",
            "-n3:262178:0",
            "-t3:8e00",
            "-u3:BBBBBBBB-0000-4000-8000-000000000003",
            "-A1:set:2",
            p(&img),
        ],
    );
    let (o, s) = part_range(&img, 1);
    mke2fs_at(
        &img,
        "ext3",
        "root-abcdefgh",
        "01010101-0000-4000-8000-000000000006",
        o,
        s,
    );
    let (o, s) = part_range(&img, 3);
    pv_at(&img, PV_UUID, VG, o, s);
    let disk = inspect_image(&img, 512);
    check_against_tools(&img, &disk);
    let xs = disk.xenserver.as_ref().expect("6.x layout not recognised");
    assert_eq!(
        (
            xs.layout.as_str(),
            xs.label_suffix.as_str(),
            xs.has_local_sr
        ),
        ("6.x", "abcdefgh", true)
    );
    assert_eq!(disk.partitions[0].attributes, 1 << 2);
    assert_eq!(disk.partitions[0].start_lba, 34);
    insta::assert_json_snapshot!(stable(disk));
}

/// A 6.x host as our conversion leaves it: root (0.90, at 1 MiB now) grew for its md
/// metadata and the empty backup partition gave the room, so the two differ in size; the
/// SR is an md 1.2 member. Still a 6.x install on md, with its backup (replace needs it).
#[test]
fn converted_6x_host_whose_backup_gave_room() {
    let dir = TempDir::new("xs6-md");
    let img = dir.path("xs6-md.img");
    sparse_file(&img, 200 * MIB);
    run(
        "sgdisk",
        &[
            "-n1:2048:+66M",
            "-t1:0700",
            "-n2:0:+60M",
            "-t2:0700",
            "-n3:0:0",
            "-t3:0700",
            "-A1:set:2",
            p(&img),
        ],
    );
    let (o, s) = part_range(&img, 1);
    mke2fs_at(
        &img,
        "ext3",
        "root-abcdefgh",
        "01010101-0000-4000-8000-000000000016",
        o,
        s - MIB,
    );
    md090_superblock(&img, o, s, [0x0a0b0c0d, 0x01020304, 0x05060708, 0x090a0b0c]);
    let (o, s) = part_range(&img, 2);
    md1_superblock(&img, o, s, 0, [0x22; 16], "xenserver:backup");
    let (o, s) = part_range(&img, 3);
    pv_at(&img, PV_UUID, VG, o + MIB, s - MIB);
    md1_superblock(&img, o, s, 2, [0x33; 16], "xenserver:sr");
    let disk = inspect_image(&img, 512);
    let xs = disk
        .xenserver
        .as_ref()
        .expect("converted 6.x layout not recognised");
    assert_eq!(
        (xs.layout.as_str(), xs.on_md, xs.has_local_sr),
        ("6.x", true, true)
    );
    let roles: Vec<Option<&str>> = disk.partitions.iter().map(|p| p.role.as_deref()).collect();
    assert_eq!(roles, [Some("root"), Some("backup"), Some("sr")]);
    assert_ne!(disk.partitions[0].size_bytes, disk.partitions[1].size_bytes);
}

/// Root's `/etc/xensource-inventory` is read through the filesystem, here inside an md 1.2
/// member (data 1 MiB in): the product version and layout are in the report.
#[test]
fn inventory_is_read_from_root_inside_an_md_member() {
    let dir = TempDir::new("xs-inventory");
    let tree = dir.path("tree");
    std::fs::create_dir_all(tree.join("etc")).unwrap();
    std::fs::write(
        tree.join("etc/xensource-inventory"),
        "PRODUCT_BRAND='XenServer'\nPRODUCT_VERSION='7.1.2'\nBUILD_NUMBER='r123'\n\
         PARTITION_LAYOUT='ROOT,BACKUP,LOG,BOOT,SWAP,SR'\nPRIMARY_DISK='/dev/disk/by-id/md-uuid-x'\n",
    )
    .unwrap();
    let img = dir.path("inv.img");
    sparse_file(&img, 200 * MIB);
    run(
        "sgdisk",
        &[
            "-n1:2048:+66M",
            "-t1:0700",
            "-n2:0:+66M",
            "-t2:0700",
            "-n3:0:0",
            "-t3:0700",
            p(&img),
        ],
    );
    let (o, s) = part_range(&img, 1);
    run(
        "mke2fs",
        &[
            "-q",
            "-F",
            "-t",
            "ext3",
            "-L",
            "root-abcdefgh",
            "-d",
            p(&tree),
            "-E",
            &format!("offset={}", o + MIB),
            p(&img),
            &format!("{}k", (s - 2 * MIB) / 1024),
        ],
    );
    md1_superblock(&img, o, s, 2, [0x11; 16], "xenserver:root");
    let (o, s) = part_range(&img, 2);
    md1_superblock(&img, o, s, 0, [0x22; 16], "xenserver:backup");
    let (o, s) = part_range(&img, 3);
    pv_at(&img, PV_UUID, VG, o + MIB, s - MIB);
    md1_superblock(&img, o, s, 2, [0x33; 16], "xenserver:sr");
    let disk = inspect_image(&img, 512);
    let xs = disk.xenserver.expect("recognised");
    let inv = xs.inventory.expect("the inventory was read");
    assert_eq!(inv.product_version.as_deref(), Some("7.1.2"));
    assert_eq!(inv.build_number.as_deref(), Some("r123"));
    assert_eq!(
        inv.partition_layout.as_deref(),
        Some("ROOT,BACKUP,LOG,BOOT,SWAP,SR")
    );
    assert_eq!(inv.installation_uuid, None);
}

/// A host already converted: root and logs are md 1.0 members (type fd00) whose data area
/// holds the original filesystems, the SR an md 1.2 member.
#[test]
fn converted_host_on_md_members() {
    let dir = TempDir::new("xs7-md");
    let img = build_xs7(&dir, "ef02", false);
    run("sgdisk", &["-t1:fd00", "-t2:fd00", "-t5:fd00", p(&img)]);
    let (o, s) = part_range(&img, 1);
    md1_superblock(&img, o, s, 0, [0x11; 16], "xenserver:root");
    let (o, s) = part_range(&img, 5);
    md1_superblock(&img, o, s, 0, [0x55; 16], "xenserver:logs");
    let (o, s) = part_range(&img, 2);
    md090_superblock(&img, o, s, [0x0a0b0c0d, 0x01020304, 0x05060708, 0x090a0b0c]);
    // mdadm itself must agree on what the synthesized superblocks say.
    for (n, expect) in [
        (1, "Array UUID : 11111111:11111111:11111111:11111111"),
        (2, "UUID : 0a0b0c0d:01020304:05060708:090a0b0c"),
    ] {
        let (o, s) = part_range(&img, n);
        let lo = Loop::new(&img, o, s);
        let out = run("mdadm", &["--examine", &lo.0]);
        assert!(out.contains(expect), "mdadm --examine p{n}:\n{out}");
    }
    let disk = inspect_image(&img, 512);
    check_against_tools(&img, &disk);
    let xs = disk
        .xenserver
        .as_ref()
        .expect("converted 7.x layout not recognised");
    assert_eq!((xs.layout.as_str(), xs.on_md), ("7.x", true));
    let root = &disk.partitions[0];
    assert_eq!(root.role.as_deref(), Some("root"));
    assert!(matches!(&root.inner, Some(Content::Ext { label: Some(l), .. }) if l == "root-abcdef"));
    insta::assert_json_snapshot!(disk);
}

#[test]
fn md_1_2_member_exposes_data_at_its_offset() {
    let dir = TempDir::new("md12");
    let img = dir.path("md12.img");
    sparse_file(&img, 16 * MIB);
    // The filesystem lives at the data offset (1 MiB), the superblock at 4 KiB.
    mke2fs_at(
        &img,
        "ext4",
        "logs-qwerty",
        "07070707-0000-4000-8000-000000000007",
        MIB,
        15 * MIB,
    );
    md1_superblock(&img, 0, 16 * MIB, 2, [0xab; 16], "host:logs");
    let disk = inspect_image(&img, 512);
    assert_eq!(disk.table, None);
    assert!(!disk.blank);
    assert_eq!(
        disk.whole_disk,
        Some(Content::MdMember {
            metadata: "1.2".into(),
            array_uuid: "abababab:abababab:abababab:abababab".into(),
            name: Some("host:logs".into()),
            data_offset: MIB,
        })
    );
    assert_eq!(
        blkid_range(&img, 0, 16 * MIB).0.as_deref(),
        Some("linux_raid_member")
    );
}

#[test]
fn blank_whole_disk_and_backup_only_images() {
    let dir = TempDir::new("blank");
    let img = dir.path("blank.img");
    sparse_file(&img, 32 * MIB);
    let disk = inspect_path(&img).unwrap();
    assert!(disk.blank, "zeroed image must be blank: {disk:?}");
    assert_eq!(disk.logical_sector_size, 512);

    // md 1.0 on the whole disk: only its end is non-zero.
    md1_superblock(&img, 0, 32 * MIB, 0, [0x33; 16], "x:0");
    let disk = inspect_path(&img).unwrap();
    assert!(!disk.blank);
    assert!(
        matches!(&disk.whole_disk, Some(Content::MdMember { metadata, .. }) if metadata == "1.0")
    );

    // A GPT whose primary copy was wiped and whose backup is damaged still is not blank.
    let img2 = dir.path("gpt-backup.img");
    sparse_file(&img2, 32 * MIB);
    run("sgdisk", &["-n1:0:+8M", p(&img2)]);
    write_at(&img2, 0, &vec![0u8; 34 * 512]);
    let last = 32 * MIB - 512;
    let mut backup = read_at(&img2, last, 512);
    backup[40] ^= 0xff;
    write_at(&img2, last, &backup);
    let disk = inspect_path(&img2).unwrap();
    assert!(
        !disk.blank,
        "backup GPT signature must make the disk non-blank: {disk:?}"
    );
    assert_eq!(disk.table, None);
    assert!(!disk.problems.is_empty());

    // Plain ext4 on the whole disk.
    let img3 = dir.path("ext.img");
    sparse_file(&img3, 32 * MIB);
    mke2fs_at(
        &img3,
        "ext4",
        "data",
        "09090909-0000-4000-8000-000000000009",
        0,
        32 * MIB,
    );
    let disk = inspect_path(&img3).unwrap();
    assert!(!disk.blank);
    assert_eq!(
        disk.whole_disk,
        Some(Content::Ext {
            version: "ext4".into(),
            label: Some("data".into()),
            uuid: "09090909-0000-4000-8000-000000000009".into()
        })
    );
}

#[test]
fn primary_gpt_damaged_reads_backup() {
    let dir = TempDir::new("backup-gpt");
    let img = dir.path("xs7.img");
    xs7_gpt(&img, 224 * MIB, "ef02", true);
    write_at(&img, 512, &[0u8; 512]);
    let disk = inspect_image(&img, 512);
    assert_eq!(disk.table.as_deref(), Some("gpt"));
    assert_eq!(disk.partitions.len(), 6);
    assert!(disk.problems[0].contains("backup"));
}

#[test]
fn mbr_table_with_logical_partitions() {
    let dir = TempDir::new("mbr");
    let img = dir.path("mbr.img");
    sparse_file(&img, 64 * MIB);
    let script = "label: dos\nlabel-id: 0x12345678\nstart=2048, size=16384, type=83, bootable\nstart=18432, size=100000, type=5\nstart=20480, size=8192, type=82\nstart=30720, size=8192, type=8e\n";
    let mut child = std::process::Command::new("sfdisk")
        .arg(p(&img))
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null())
        .spawn()
        .expect("cannot run `sfdisk`: install the fdisk package");
    use std::io::Write;
    child
        .stdin
        .take()
        .unwrap()
        .write_all(script.as_bytes())
        .unwrap();
    assert!(child.wait().unwrap().success());
    mke2fs_at(
        &img,
        "ext2",
        "boot",
        "0a0a0a0a-0000-4000-8000-00000000000a",
        2048 * 512,
        16384 * 512,
    );
    mkswap_at(
        &dir,
        &img,
        "sw",
        "0b0b0b0b-0000-4000-8000-00000000000b",
        20480 * 512,
        8192 * 512,
    );
    let disk = inspect_image(&img, 512);
    assert_eq!(disk.table.as_deref(), Some("mbr"));
    // sfdisk's own view of the table: start and size per device.
    let dump = run("sfdisk", &["-d", p(&img)]);
    let mut expected: Vec<(u32, u64, u64)> = dump
        .lines()
        .filter_map(|l| {
            let (dev, rest) = l.split_once(" : ")?;
            let n: u32 = dev
                .trim()
                .rsplit(|c: char| !c.is_ascii_digit())
                .next()?
                .parse()
                .ok()?;
            let num = |k: &str| -> Option<u64> {
                rest.split(',')
                    .find_map(|f| f.trim().strip_prefix(k))
                    .map(|v| v.trim().parse().unwrap())
            };
            Some((n, num("start=")?, num("size=")?))
        })
        .filter(|(n, _, _)| *n != 2) // the extended container is not reported as a partition
        .collect();
    expected.sort();
    let got: Vec<(u32, u64, u64)> = disk
        .partitions
        .iter()
        .map(|p| (p.number, p.start_lba, p.size_bytes / 512))
        .collect();
    assert_eq!(got, expected);
    for part in &disk.partitions {
        let blkid = blkid_range(&img, part.start_lba * 512, part.size_bytes);
        assert_eq!(
            (part.fs_type.clone(), part.label.clone(), part.uuid.clone()),
            blkid,
            "p{}",
            part.number
        );
    }
    assert_eq!(disk.partitions[0].attributes, 1 << 2, "bootable flag");
    insta::assert_json_snapshot!(disk);
}

/// XCP-ng's own software RAID: md 1.0 on the whole disk, the GPT inside the array. The
/// disk shows the array's GPT at the start and the md superblock at its very end.
#[test]
fn whole_disk_md_with_table_inside() {
    let dir = TempDir::new("xcpng-md");
    let img = dir.path("md127.img");
    let disk_size = 224 * MIB + 128 * 1024;
    // The array is smaller than the disk by the room md 1.0 keeps at the end.
    xs7_gpt(&img, 224 * MIB, "ef02", true);
    std::fs::OpenOptions::new()
        .write(true)
        .open(&img)
        .unwrap()
        .set_len(disk_size)
        .unwrap();
    md1_superblock(&img, 0, disk_size, 0, [0x77; 16], "localhost:127");
    let disk = inspect_image(&img, 512);
    assert_eq!(disk.table.as_deref(), Some("gpt"));
    assert_eq!(disk.partitions.len(), 6);
    assert_eq!(
        disk.whole_disk,
        Some(Content::MdMember {
            metadata: "1.0".into(),
            array_uuid: "77777777:77777777:77777777:77777777".into(),
            name: Some("localhost:127".into()),
            data_offset: 0,
        })
    );
    let lo = Loop::new(&img, 0, disk_size);
    assert!(run("mdadm", &["--examine", &lo.0]).contains("77777777:77777777:77777777:77777777"));
}

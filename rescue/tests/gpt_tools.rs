//! GPT reads and writes checked with sgdisk: the read model matches `sgdisk -i`, a clone
//! onto a larger image passes `sgdisk -v` with the same partitions and new GUIDs, and
//! attribute/type/size changes show up in sgdisk.

mod inspect_util;

use inspect_util::*;
use rescue::formats::gpt::{self, BootCode, Guid, GuidSource};
use rescue::units::Lba;
use std::fs::{File, OpenOptions};
use std::path::Path;

fn read(img: &Path) -> gpt::GptTable {
    gpt::read(&mut File::open(img).unwrap(), None).unwrap()
}

fn open_rw(img: &Path) -> File {
    OpenOptions::new().read(true).write(true).open(img).unwrap()
}

fn assert_verifies(img: &Path) {
    let out = run("sgdisk", &["-v", p(img)]);
    assert!(
        out.contains("No problems found"),
        "sgdisk -v {}:\n{out}",
        img.display()
    );
}

#[test]
fn read_matches_sgdisk() {
    let dir = TempDir::new("gpt-read");
    let img = dir.path("xs7.img");
    xs7_gpt(&img, 224 * MIB, "ef02", true);
    run(
        "sgdisk",
        &["-c1:root part", "-A4:set:2", "-A4:set:60", p(&img)],
    );
    let t = read(&img);
    assert_eq!(t.sector_size, 512);
    assert_eq!(t.disk_guid.to_string(), sgdisk_disk_guid(&img));
    let numbers: Vec<u32> = t.partitions.iter().map(|p| p.number).collect();
    assert_eq!(numbers, sgdisk_numbers(&img));
    for part in &t.partitions {
        let info = sgdisk_info(&img, part.number);
        let ours = SgdiskPart {
            type_guid: part.type_guid.to_string(),
            unique_guid: part.unique_guid.to_string(),
            first: part.first_lba.0,
            last: part.last_lba.0,
            attributes: part.attributes,
            name: part.name.clone(),
        };
        assert_eq!(ours, info, "partition {}", part.number);
    }
    assert_eq!(t.partition(4).unwrap().attributes, (1 << 2) | (1 << 60));
    // sgdisk's "last usable sector" line.
    let out = run("sgdisk", &["-p", p(&img)]);
    assert!(
        out.contains(&format!(
            "First usable sector is {}, last usable sector is {}",
            t.first_usable_lba.0, t.last_usable_lba.0
        )),
        "{out}"
    );
}

#[test]
fn clone_onto_larger_image_verifies_with_new_guids() {
    let dir = TempDir::new("gpt-clone");
    let src = dir.path("src.img");
    xs7_gpt(&src, 224 * MIB, "ef02", true);
    run("sgdisk", &["-A1:set:2", "-c5:logs", p(&src)]);
    let source = read(&src);
    let dst = dir.path("dst.img");
    sparse_file(&dst, 300 * MIB);
    let cloned =
        gpt::clone_onto(&source, &mut open_rw(&dst), 512, &mut GuidSource::Seeded(7)).unwrap();
    gpt::write_protective_mbr(&mut open_rw(&dst), 512, BootCode::Keep, true).unwrap();
    assert_verifies(&dst);
    assert_eq!(cloned.last_usable_lba, Lba(300 * MIB / 512 - 34));
    assert_ne!(sgdisk_disk_guid(&dst), sgdisk_disk_guid(&src));
    assert_eq!(sgdisk_numbers(&dst), sgdisk_numbers(&src));
    for n in sgdisk_numbers(&src) {
        let (a, b) = (sgdisk_info(&src, n), sgdisk_info(&dst, n));
        assert_eq!(
            (&a.type_guid, a.first, a.last, a.attributes, &a.name),
            (&b.type_guid, b.first, b.last, b.attributes, &b.name),
            "p{n}"
        );
        assert_ne!(
            a.unique_guid, b.unique_guid,
            "p{n} must get a new unique GUID"
        );
    }
    // Backup header at the new end: with the primary gone, sgdisk and we both recover
    // the same table from it.
    write_at(&dst, 512, &[0u8; 512]);
    let out = run("sgdisk", &["-v", p(&dst)]);
    assert!(out.contains("corrupt GPT"), "{out}");
    assert_eq!(sgdisk_numbers(&dst), sgdisk_numbers(&src));
    let recovered = read(&dst);
    assert_eq!(recovered.header_source, gpt::HeaderSource::Backup);
    assert_eq!(recovered.partitions, cloned.partitions);

    // A target smaller than the last used LBA is refused before anything is written.
    let small = dir.path("small.img");
    sparse_file(&small, 100 * MIB);
    let err =
        gpt::clone_onto(&source, &mut open_rw(&small), 512, &mut GuidSource::Random).unwrap_err();
    assert!(matches!(err, gpt::GptError::TargetTooSmall { .. }), "{err}");
    assert!(err.to_string().contains("at least as large"), "{err}");
    assert!(read_at(&small, 0, 1024).iter().all(|b| *b == 0));
}

#[test]
fn random_guids_differ_between_clones() {
    let dir = TempDir::new("gpt-random");
    let src = dir.path("src.img");
    xs7_gpt(&src, 224 * MIB, "ef02", false);
    let source = read(&src);
    let mut guids = Vec::new();
    for i in 0..2 {
        let dst = dir.path(&format!("dst{i}.img"));
        sparse_file(&dst, 224 * MIB);
        gpt::clone_onto(&source, &mut open_rw(&dst), 512, &mut GuidSource::Random).unwrap();
        assert_verifies(&dst);
        guids.push(sgdisk_disk_guid(&dst));
    }
    assert_ne!(guids[0], guids[1]);
}

#[test]
fn attribute_type_and_size_changes_show_in_sgdisk() {
    let dir = TempDir::new("gpt-modify");
    let img = dir.path("xs6.img");
    sparse_file(&img, 64 * MIB);
    run(
        "sgdisk",
        &[
            "-a1",
            "-n1:34:40000",
            "-n2:40001:80000",
            "-n3:80001:0",
            "-A2:set:2",
            p(&img),
        ],
    );
    let mut t = read(&img);
    t.set_attribute(1, gpt::ATTR_LEGACY_BIOS_BOOTABLE, true)
        .unwrap();
    t.set_attribute(2, gpt::ATTR_LEGACY_BIOS_BOOTABLE, false)
        .unwrap();
    t.set_type(3, Guid::parse(gpt::types::LINUX_RAID).unwrap())
        .unwrap();
    t.resize(2, Lba(70000)).unwrap();
    gpt::write(&mut open_rw(&img), &t).unwrap();
    assert_verifies(&img);
    let show = |n: u32| run("sgdisk", &[&format!("-A{n}:show"), p(&img)]);
    assert!(
        show(1).contains("1:2:1 (legacy BIOS bootable)"),
        "{}",
        show(1)
    );
    assert!(!show(2).contains("2:2:1"), "{}", show(2));
    assert_eq!(sgdisk_info(&img, 3).type_guid, gpt::types::LINUX_RAID);
    assert_eq!(sgdisk_info(&img, 2).last, 70000);
    assert_eq!(sgdisk_info(&img, 1).first, 34);
    // Growing into the next partition is refused.
    assert!(matches!(
        t.resize(1, Lba(40001)),
        Err(gpt::GptError::BadResize { .. })
    ));
}

#[test]
fn protective_mbr_keeps_boot_code_and_sets_active() {
    let dir = TempDir::new("gpt-pmbr");
    let img = dir.path("disk.img");
    sparse_file(&img, 32 * MIB);
    run("sgdisk", &["-n1:0:0", p(&img)]);
    let code: Vec<u8> = (0..440).map(|i| (i % 251) as u8).collect();
    write_at(&img, 0, &code);
    gpt::write_protective_mbr(&mut open_rw(&img), 512, BootCode::Keep, true).unwrap();
    assert_eq!(read_at(&img, 0, 440), code);
    let sector = read_at(&img, 0, 512);
    assert_eq!((sector[446], sector[450]), (0x80, 0xEE));
    assert_verifies(&img);
    // sfdisk reads the protective entry as a bootable 'ee' partition.
    let dump = run(
        "sfdisk",
        &["-d", "--label", "dos", "--label-nested", "dos", p(&img)],
    );
    assert!(dump.contains("type=ee, bootable"), "{dump}");
    let new_code = [0x90u8; 440];
    gpt::write_protective_mbr(&mut open_rw(&img), 512, BootCode::Replace(&new_code), false)
        .unwrap();
    assert_eq!(read_at(&img, 0, 440), new_code.to_vec());
    assert_eq!(read_at(&img, 446, 1), [0]);
    assert_verifies(&img);
}

/// sgdisk on a file always assumes 512-byte sectors, so the 4K table is written by us and
/// checked by reading it back through inspect (sector size detected from the header).
#[test]
fn gpt_on_4k_sectors() {
    let dir = TempDir::new("gpt-4k");
    let img = dir.path("4k.img");
    sparse_file(&img, 64 * MIB);
    let g = |s: &str| Guid::parse(s).unwrap();
    let part = |number, first, last, ty: &str| gpt::GptPartition {
        number,
        first_lba: Lba(first),
        last_lba: Lba(last),
        type_guid: g(ty),
        unique_guid: g(&format!("CCCCCCCC-0000-4000-8000-00000000000{number}")),
        name: String::new(),
        attributes: 0,
    };
    let table = gpt::GptTable {
        sector_size: 4096,
        disk_guid: g("44444444-0000-4000-8000-000000000000"),
        first_usable_lba: Lba(6),
        last_usable_lba: Lba(0),
        entry_count: 128,
        partitions: vec![
            part(5, 256, 256 + 2560 - 1, gpt::types::BASIC_DATA),
            part(1, 2816, 2816 + 4096 - 1, gpt::types::BASIC_DATA),
            part(2, 6912, 6912 + 4096 - 1, gpt::types::BASIC_DATA),
        ],
        header_source: gpt::HeaderSource::Primary,
    };
    let written = gpt::write(&mut open_rw(&img), &table).unwrap();
    assert_eq!(written.last_usable_lba, Lba(64 * MIB / 4096 - 6));
    mke2fs_at(
        &img,
        "ext3",
        "root-zzzzzz",
        "0c0c0c0c-0000-4000-8000-00000000000c",
        2816 * 4096,
        4096 * 4096,
    );
    mke2fs_at(
        &img,
        "ext3",
        "logs-zzzzzz",
        "0d0d0d0d-0000-4000-8000-00000000000d",
        256 * 4096,
        2560 * 4096,
    );
    let disk = rescue::inspect::inspect_path(&img).unwrap();
    assert_eq!(disk.logical_sector_size, 4096);
    let root = disk.partitions.iter().find(|p| p.number == 1).unwrap();
    assert_eq!(
        (root.start_lba, root.size_bytes, root.label.as_deref()),
        (2816, 16 * MIB, Some("root-zzzzzz"))
    );
    assert_eq!(
        blkid_range(&img, 2816 * 4096, 16 * MIB).1.as_deref(),
        Some("root-zzzzzz")
    );
    let xs = disk.xenserver.unwrap();
    assert_eq!(
        (xs.layout.as_str(), xs.label_suffix.as_str()),
        ("7.x", "zzzzzz")
    );
    assert_eq!(
        disk.partitions
            .iter()
            .find(|p| p.number == 2)
            .unwrap()
            .role
            .as_deref(),
        Some("backup")
    );
    // The same disk read as 512-byte sectors has no GPT at LBA 1.
    assert!(gpt::read(&mut File::open(&img).unwrap(), Some(512)).is_err());
}

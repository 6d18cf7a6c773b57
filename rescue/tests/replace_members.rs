//! The spare superblock `replace` writes on a new member, made from the survivor's,
//! checked by the real `mdadm --examine` on image files: same array (UUID, name, level,
//! devices, creation time), this device a spare in a free device number, a bitmap where
//! the survivor has one, sized so the array fits.

use rescue::formats::md::{
    geometry, read_version, write_member, ArraySpec, MemberSpec, MetadataVersion, Role,
};
use rescue::units::Sectors;
mod inspect_util;
mod md_util;

use inspect_util::TempDir;
use md_util::examine;
use std::fs::OpenOptions;
use std::path::PathBuf;

const BYTES: u64 = 96 << 20;

/// A sparse image file in `dir`.
fn file(dir: &TempDir, name: &str, bytes: u64) -> PathBuf {
    let p = dir.path(name);
    md_util::sparse(&p, bytes);
    p
}

fn check(version: MetadataVersion, bitmap: bool, survivor_dev: u32) {
    let dir = TempDir::new(&format!(
        "replace-members-{version}-{bitmap}-{survivor_dev}"
    ));
    let survivor = file(&dir, "survivor", BYTES);
    // A new disk's partition a little larger, as on a larger disk.
    let new = file(&dir, "new", BYTES + (4 << 20));
    let mut roles = vec![None, None];
    roles[survivor_dev as usize] = Some(Role::Active(survivor_dev as u16));
    let array = ArraySpec {
        uuid: [0x42; 16],
        homehost: "xenserver".into(),
        name: if version == MetadataVersion::V0_90 {
            "0".into()
        } else {
            "root".into()
        },
        raid_disks: 2,
        ctime: 1_700_000_000,
        utime: 1_700_000_900,
        events: 57,
        clean: true,
        roles,
    };
    let geo = geometry(version, Sectors(BYTES / 512), bitmap).unwrap();
    let mut f = OpenOptions::new()
        .read(true)
        .write(true)
        .open(&survivor)
        .unwrap();
    write_member(
        &mut f,
        &geo,
        &array,
        &MemberSpec {
            dev_number: survivor_dev,
            device_uuid: [0x11; 16],
            dev_major_minor: (0, 0),
        },
    )
    .unwrap();
    drop(f);

    rescue::replace::write_spare(&survivor, &new, version).unwrap();

    let (s, _) = examine(&survivor);
    let (n, text) = examine(&new);
    let ctx = format!("{version} bitmap {bitmap} survivor dev {survivor_dev}\n{text}");
    for k in ["Raid Level", "Raid Devices", "Creation Time"] {
        assert_eq!(n[k], s[k], "{k}: {ctx}");
    }
    let sb = read_version(
        &mut std::fs::File::open(&new).unwrap(),
        Sectors((BYTES + (4 << 20)) / 512),
        version,
    )
    .unwrap();
    assert_eq!(sb.array_uuid, [0x42; 16], "{ctx}");
    assert_eq!(sb.role, Role::Spare, "{ctx}");
    assert_ne!(sb.dev_number, survivor_dev, "{ctx}");
    assert_eq!(sb.bitmap.is_some(), bitmap, "{ctx}");
    assert!(sb.array_size >= geo.array_size, "{ctx}");
    if version == MetadataVersion::V0_90 {
        assert_eq!(n["UUID"], s["UUID"], "{ctx}");
        assert_eq!(n["Preferred Minor"], "0", "{ctx}");
        assert!(
            text.lines()
                .any(|l| l.starts_with("this ") && l.contains("spare")),
            "{ctx}"
        );
    } else {
        assert_eq!(n["Array UUID"], s["Array UUID"], "{ctx}");
        assert_eq!(n["Name"], "xenserver:root", "{ctx}");
        assert_eq!(n["Device Role"], "spare", "{ctx}");
        assert_eq!(n.contains_key("Internal Bitmap"), bitmap, "{ctx}");
    }
    assert!(n["Checksum"].ends_with("correct"), "{ctx}");
}

#[test]
fn spare_for_a_1_2_array_with_bitmap_beside_slot_0() {
    check(MetadataVersion::V1_2, true, 0);
}

#[test]
fn spare_for_a_1_0_array_beside_slot_1() {
    check(MetadataVersion::V1_0, false, 1);
}

#[test]
fn spare_for_a_0_90_array_with_bitmap() {
    check(MetadataVersion::V0_90, true, 0);
}

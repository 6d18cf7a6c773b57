//! Superblocks written by `rescue::formats::md` checked by the real `mdadm --examine`
//! (Debian package `mdadm`) on sparse image files: version, UUID, name, roles, array
//! state, offsets, sizes, bitmap placement, events and "Checksum : ... - correct".

use rescue::formats::md::{
    format_uuid, geometry, read, ArraySpec, Geometry, MemberSpec, MetadataVersion, Role, Superblock,
};
use rescue::units::Sectors;
mod inspect_util;
mod md_util;

use inspect_util::TempDir;
use md_util::{examine, sparse};
use std::collections::HashMap;
use std::fs::{File, OpenOptions};

const UUID: [u8; 16] = [
    0x3a, 0x1f, 0x09, 0xc2, 0x55, 0x60, 0x7b, 0x88, 0x91, 0xaa, 0xbc, 0xcd, 0xde, 0xef, 0x01, 0x12,
];
const CTIME: u64 = 1_700_000_000;

fn spec(roles: Vec<Option<Role>>, clean: bool) -> ArraySpec {
    ArraySpec {
        uuid: UUID,
        homehost: "xenserver".into(),
        name: "0".into(),
        raid_disks: 2,
        ctime: CTIME,
        utime: CTIME + 60,
        events: 7,
        clean,
        roles,
    }
}

fn member(n: u32) -> MemberSpec {
    MemberSpec {
        dev_number: n,
        device_uuid: [0x40 + n as u8; 16],
        dev_major_minor: (0, 0),
    }
}

/// Leading number of a value such as "2048 sectors" or "102272 KiB (...)".
fn num(v: &str) -> u64 {
    v.split_whitespace().next().unwrap().parse().unwrap()
}

fn write_and_examine(
    dir: &TempDir,
    file: &str,
    bytes: u64,
    version: MetadataVersion,
    bitmap: bool,
    array: &ArraySpec,
    dev: u32,
) -> (Geometry, HashMap<String, String>, String, Superblock) {
    let path = dir.0.join(file);
    let mut f = sparse(&path, bytes);
    let geo = geometry(version, Sectors(bytes / 512), bitmap).unwrap();
    rescue::formats::md::write_member(&mut f, &geo, array, &member(dev)).unwrap();
    drop(f);
    let (map, text) = examine(&path);
    let mut f = File::open(&path).unwrap();
    let sb = read(&mut f, Sectors(bytes / 512)).unwrap().unwrap();
    (geo, map, text, sb)
}

fn check_v1(version: MetadataVersion, bytes: u64, bitmap: bool) {
    let tag = format!("{version}-{bytes}-{bitmap}");
    let dir = TempDir::new(&tag);
    let degraded = spec(vec![Some(Role::Active(0)), None], false);
    let (geo, m, text, sb) = write_and_examine(&dir, "a.img", bytes, version, bitmap, &degraded, 0);
    let ctx = format!("{tag}\n{text}");
    assert_eq!(m["Version"], version.to_string(), "{ctx}");
    assert_eq!(m["Raid Level"], "raid1", "{ctx}");
    assert_eq!(m["Array UUID"], format_uuid(&UUID), "{ctx}");
    assert_eq!(m["Name"], "xenserver:0", "{ctx}");
    assert_eq!(m["Raid Devices"], "2", "{ctx}");
    assert_eq!(m["Device Role"], "Active device 0", "{ctx}");
    assert!(m["Array State"].starts_with("A. "), "{ctx}");
    assert_eq!(m["State"], "active", "{ctx}");
    assert!(m["Checksum"].ends_with("- correct"), "{ctx}");
    assert_eq!(m["Events"], "7", "{ctx}");
    assert_eq!(num(&m["Super Offset"]), geo.super_offset.0, "{ctx}");
    // mdadm omits "Data Offset" when it is 0 (1.0).
    let data_offset = m.get("Data Offset").map_or(0, |v| num(v));
    assert_eq!(data_offset, geo.data_offset.0, "{ctx}");
    assert_eq!(num(&m["Avail Dev Size"]), geo.data_size.0, "{ctx}");
    assert_eq!(num(&m["Array Size"]), geo.array_size.0 / 2, "{ctx}");
    if geo.array_size != geo.data_size {
        assert_eq!(num(&m["Used Dev Size"]), geo.array_size.0, "{ctx}");
    }
    assert!(geo.array_size <= geo.data_size, "{ctx}");
    assert!(geo.data_offset.0 + geo.data_size.0 <= bytes / 512, "{ctx}");
    match geo.bitmap {
        Some(bm) => {
            assert_eq!(m["Feature Map"], "0x1", "{ctx}");
            assert_eq!(
                m["Internal Bitmap"],
                format!("{} sectors from superblock", bm.offset),
                "{ctx}"
            );
        }
        None => {
            assert_eq!(m["Feature Map"], "0x0", "{ctx}");
            assert!(!m.contains_key("Internal Bitmap"), "{ctx}");
        }
    }
    // Our reader agrees with what we wrote and with mdadm.
    assert_eq!(sb.version, version);
    assert_eq!(sb.uuid_string(), m["Array UUID"]);
    assert_eq!(sb.name, "xenserver:0");
    assert_eq!(sb.role, Role::Active(0));
    assert_eq!(sb.roles, vec![Some(Role::Active(0))]);
    assert_eq!(sb.array_state(), "A.");
    assert_eq!(
        (sb.super_offset, sb.data_offset),
        (geo.super_offset, geo.data_offset)
    );
    assert_eq!(
        (sb.data_size, sb.array_size),
        (geo.data_size, geo.array_size)
    );
    assert_eq!(sb.events, 7);
    assert!(!sb.clean);
    assert_eq!(sb.bitmap.is_some(), bitmap);
    if let Some(b) = sb.bitmap {
        assert_eq!(b.version, 4);
        assert_eq!(b.daemon_sleep, 5);
        assert_eq!(b.sync_size, geo.array_size);
        assert_eq!(b.events, 7);
    }

    // Both members present, clean.
    let full = spec(vec![Some(Role::Active(0)), Some(Role::Active(1))], true);
    for dev in 0..2u32 {
        let (_, m, text, sb) = write_and_examine(
            &dir,
            &format!("full{dev}.img"),
            bytes,
            version,
            bitmap,
            &full,
            dev,
        );
        let ctx = format!("{tag} dev {dev}\n{text}");
        assert_eq!(m["Device Role"], format!("Active device {dev}"), "{ctx}");
        assert!(m["Array State"].starts_with("AA "), "{ctx}");
        assert_eq!(m["State"], "clean", "{ctx}");
        assert!(m["Checksum"].ends_with("- correct"), "{ctx}");
        assert_eq!(
            m["Device UUID"],
            format_uuid(&[0x40 + dev as u8; 16]),
            "{ctx}"
        );
        assert_eq!(sb.array_state(), "AA");
        assert_eq!(sb.dev_number, dev);
        assert!(sb.clean);
    }
}

fn check_v090(bytes: u64, bitmap: bool) {
    let tag = format!("0.90-{bytes}-{bitmap}");
    let dir = TempDir::new(&tag);
    let degraded = spec(vec![Some(Role::Active(0)), None], true);
    let (geo, m, text, sb) = write_and_examine(
        &dir,
        "a.img",
        bytes,
        MetadataVersion::V0_90,
        bitmap,
        &degraded,
        0,
    );
    let ctx = format!("{tag}\n{text}");
    assert_eq!(m["Version"], "0.90.00", "{ctx}");
    assert_eq!(m["UUID"], format_uuid(&UUID), "{ctx}");
    assert_eq!(m["Raid Level"], "raid1", "{ctx}");
    assert_eq!(m["Raid Devices"], "2", "{ctx}");
    assert_eq!(m["Preferred Minor"], "0", "{ctx}");
    assert_eq!(num(&m["Used Dev Size"]), geo.array_size.0 / 2, "{ctx}");
    assert_eq!(num(&m["Array Size"]), geo.array_size.0 / 2, "{ctx}");
    assert_eq!(m["State"], "clean", "{ctx}");
    assert_eq!(m["Active Devices"], "1", "{ctx}");
    assert_eq!(m["Working Devices"], "1", "{ctx}");
    assert_eq!(m["Failed Devices"], "1", "{ctx}");
    assert!(m["Checksum"].ends_with("- correct"), "{ctx}");
    assert_eq!(m["Events"], "7", "{ctx}");
    assert_eq!(
        m.get("Internal Bitmap").map(String::as_str),
        bitmap.then_some("present"),
        "{ctx}"
    );
    // The descriptor table: this disk and slot 0 active sync, slot 1 faulty removed.
    let rows: Vec<&str> = text
        .lines()
        .filter(|l| {
            l.trim_start().starts_with("this") || l.trim_start().starts_with(char::is_numeric)
        })
        .filter(|l| l.contains("active") || l.contains("faulty") || l.contains("spare"))
        .collect();
    let words = |l: &str| l.split_whitespace().map(str::to_string).collect::<Vec<_>>();
    assert_eq!(
        words(rows[0])[..],
        ["this", "0", "0", "0", "0", "active", "sync"],
        "{ctx}"
    );
    assert_eq!(
        words(rows[1])[..],
        ["0", "0", "0", "0", "0", "active", "sync"],
        "{ctx}"
    );
    assert_eq!(
        words(rows[2])[..],
        ["1", "1", "0", "0", "1", "faulty", "removed"],
        "{ctx}"
    );
    assert_eq!(sb.version, MetadataVersion::V0_90);
    assert_eq!(sb.uuid_string(), m["UUID"]);
    assert_eq!(sb.super_offset, geo.super_offset);
    assert_eq!(sb.array_size, geo.array_size);
    assert_eq!(sb.array_state(), "A.");
    assert_eq!(sb.bitmap.is_some(), bitmap);

    let full = spec(vec![Some(Role::Active(0)), Some(Role::Active(1))], false);
    let (_, m, text, sb) = write_and_examine(
        &dir,
        "b.img",
        bytes,
        MetadataVersion::V0_90,
        bitmap,
        &full,
        1,
    );
    let ctx = format!("{tag} full\n{text}");
    assert_eq!(m["State"], "active", "{ctx}");
    assert_eq!(m["Active Devices"], "2", "{ctx}");
    assert_eq!(m["Failed Devices"], "0", "{ctx}");
    assert!(m["Checksum"].ends_with("- correct"), "{ctx}");
    assert!(
        text.lines()
            .any(|l| l.split_whitespace().collect::<Vec<_>>()
                == ["this", "1", "0", "0", "1", "active", "sync"]),
        "{ctx}"
    );
    assert_eq!(sb.role, Role::Active(1));
    assert_eq!(sb.array_state(), "AA");
}

const MIB: u64 = 1 << 20;
/// Sizes: small, medium, large sparse, and one not a multiple of 64 KiB.
const SIZES: [u64; 4] = [10 * MIB, 100 * MIB, 3 << 30, 100 * MIB + 7 * 512];

#[test]
fn v1_2_examined_by_mdadm() {
    for bytes in SIZES {
        check_v1(MetadataVersion::V1_2, bytes, false);
        check_v1(MetadataVersion::V1_2, bytes, true);
    }
}

#[test]
fn v1_0_examined_by_mdadm() {
    for bytes in SIZES {
        check_v1(MetadataVersion::V1_0, bytes, false);
        check_v1(MetadataVersion::V1_0, bytes, true);
    }
}

#[test]
fn v0_90_examined_by_mdadm() {
    for bytes in SIZES {
        check_v090(bytes, false);
        check_v090(bytes, true);
    }
}

/// 1.2 data offsets mdadm 4.2 would choose (worked out from `validate_geometry1`), as
/// mdadm reads them back from large sparse members.
#[test]
fn v1_2_large_sparse_members() {
    for (bytes, data_offset) in [(20u64 << 30, 34816u64), (2 << 40, 264192)] {
        let dir = TempDir::new(&format!("large-{bytes}"));
        let degraded = spec(vec![Some(Role::Active(0)), None], false);
        let (geo, m, text, _) = write_and_examine(
            &dir,
            "a.img",
            bytes,
            MetadataVersion::V1_2,
            true,
            &degraded,
            0,
        );
        assert_eq!(geo.data_offset.0, data_offset);
        assert_eq!(num(&m["Data Offset"]), data_offset, "{text}");
        assert_eq!(
            num(&m["Avail Dev Size"]),
            bytes / 512 - data_offset,
            "{text}"
        );
        assert_eq!(m["Internal Bitmap"], "8 sectors from superblock", "{text}");
        assert!(m["Checksum"].ends_with("- correct"), "{text}");
    }
}

/// A degraded member later given its partner: mdadm sees both slots active, the new
/// event count, a clean state and a correct checksum.
#[test]
fn updates_are_accepted_by_mdadm() {
    use rescue::formats::md::{update, Update};
    for version in [
        MetadataVersion::V0_90,
        MetadataVersion::V1_0,
        MetadataVersion::V1_2,
    ] {
        let dir = TempDir::new(&format!("update-{version}"));
        let bytes = 100 * MIB;
        let degraded = spec(vec![Some(Role::Active(0)), None], false);
        let (_, before, _, _) =
            write_and_examine(&dir, "a.img", bytes, version, true, &degraded, 0);
        assert_eq!(before["Events"], "7");
        let path = dir.0.join("a.img");
        let mut f = OpenOptions::new()
            .read(true)
            .write(true)
            .open(&path)
            .unwrap();
        let sb = update(
            &mut f,
            Sectors(bytes / 512),
            &[
                Update::Role {
                    dev_number: 1,
                    role: Some(Role::Active(1)),
                },
                Update::BumpEvents,
                Update::Clean(true),
            ],
        )
        .unwrap();
        drop(f);
        assert_eq!(sb.events, 8);
        let (m, text) = examine(&path);
        assert!(m["Checksum"].ends_with("- correct"), "{version}\n{text}");
        assert_eq!(m["Events"], "8", "{text}");
        assert_eq!(m["State"], "clean", "{text}");
        if version == MetadataVersion::V0_90 {
            assert_eq!(m["Active Devices"], "2", "{text}");
            assert_eq!(m["Failed Devices"], "0", "{text}");
        } else {
            assert!(m["Array State"].starts_with("AA "), "{text}");
        }
    }
}

/// A renamed 1.x member (`mdadm --update=name`'s effect): mdadm reads the new name with a
/// correct checksum; 0.90 has no name and the update is refused, the member unchanged.
#[test]
fn a_name_update_is_read_by_mdadm() {
    use rescue::formats::md::{update, Update};
    let mut name = [0u8; 32];
    name[..13].copy_from_slice(b"otherhost:log");
    for version in [
        MetadataVersion::V0_90,
        MetadataVersion::V1_0,
        MetadataVersion::V1_2,
    ] {
        let dir = TempDir::new(&format!("rename-{version}"));
        let bytes = 100 * MIB;
        let degraded = spec(vec![Some(Role::Active(0)), None], true);
        write_and_examine(&dir, "a.img", bytes, version, true, &degraded, 0);
        let path = dir.0.join("a.img");
        let before = std::fs::read(&path).unwrap();
        let mut f = OpenOptions::new()
            .read(true)
            .write(true)
            .open(&path)
            .unwrap();
        let r = update(&mut f, Sectors(bytes / 512), &[Update::Name(name)]);
        drop(f);
        let (m, text) = examine(&path);
        assert!(m["Checksum"].ends_with("- correct"), "{version}\n{text}");
        if version == MetadataVersion::V0_90 {
            assert!(r.is_err(), "0.90 has no name");
            assert_eq!(before, std::fs::read(&path).unwrap(), "0.90: written");
        } else {
            assert_eq!(r.unwrap().name, "otherhost:log");
            assert_eq!(m["Name"], "otherhost:log", "{text}");
        }
    }
}

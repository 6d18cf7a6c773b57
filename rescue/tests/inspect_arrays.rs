//! `rescue inspect` on md members (healthy, degraded, stale; 0.90, 1.0, 1.2; with and
//! without bitmap) against what the real `mdadm --examine` says of the same image files:
//! level, events, device role, array state, bitmap. Members are whole-disk images, as
//! XCP-ng's own RAID uses them, so mdadm reads exactly what inspect reads.

use rescue::arrays::{arrays, human_line};
use rescue::formats::md::{geometry, write_member, ArraySpec, MemberSpec, MetadataVersion, Role};
use rescue::inspect::inspect_path;
use rescue::units::Sectors;
mod inspect_util;
mod md_util;

use inspect_util::TempDir;
use md_util::examine;
use std::fs::OpenOptions;
use std::path::{Path, PathBuf};

const UUID: [u8; 16] = [
    0x5b, 0x2e, 0x19, 0xd3, 0x66, 0x71, 0x8c, 0x99, 0xa2, 0xbb, 0xcd, 0xde, 0xef, 0xf0, 0x12, 0x23,
];
const BYTES: u64 = 64 << 20;

/// A member image: device `dev` in slot `dev`, its superblock written at `events` with the
/// roles it believed at its last write.
fn member(
    dir: &TempDir,
    file: &str,
    version: MetadataVersion,
    bitmap: bool,
    dev: u32,
    events: u64,
    roles: Vec<Option<Role>>,
) -> PathBuf {
    let path = dir.0.join(file);
    let mut f = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(true)
        .open(&path)
        .unwrap();
    f.set_len(BYTES).unwrap();
    let geo = geometry(version, Sectors(BYTES / 512), bitmap).unwrap();
    let array = ArraySpec {
        uuid: UUID,
        homehost: "xenserver".into(),
        name: "root".into(),
        raid_disks: 2,
        ctime: 1_700_000_000,
        utime: 1_700_000_000 + events,
        events,
        clean: true,
        roles,
    };
    let m = MemberSpec {
        dev_number: dev,
        device_uuid: [0x30 + dev as u8; 16],
        dev_major_minor: (0, 0),
    };
    write_member(&mut f, &geo, &array, &m).unwrap();
    path
}

/// Inspect's view of one member agrees with mdadm's on every field both show.
fn agrees_with_mdadm(path: &Path) {
    let disk = inspect_path(path).unwrap();
    let st = disk
        .whole_disk_md
        .as_ref()
        .unwrap_or_else(|| panic!("{}: no md member state: {disk:?}", path.display()));
    let (m, text) = examine(path);
    let ctx = format!("{}\n{text}\n{st:?}", path.display());
    assert_eq!(st.problem, None, "{ctx}");
    assert_eq!(m["Raid Level"], st.level, "{ctx}");
    assert_eq!(m["Raid Devices"], st.raid_disks.to_string(), "{ctx}");
    assert_eq!(
        m["Events"].trim_start_matches("0."),
        st.events.to_string(),
        "{ctx}"
    );
    // 1.x: "Array State : A. ('A' == active, ...)"; 0.90 has a device table instead.
    if let Some(state) = m.get("Array State") {
        assert_eq!(
            state.split_whitespace().next(),
            Some(st.array_state.as_str()),
            "{ctx}"
        );
        let role = m["Device Role"]
            .to_lowercase()
            .replace("active device", "active");
        assert_eq!(role, st.role, "{ctx}");
        assert_eq!(m.contains_key("Internal Bitmap"), st.bitmap, "{ctx}");
    } else {
        // 0.90: "this  0  ...  active sync" and "Active Devices : 1".
        let active = st.active_slots.iter().flatten().count();
        assert_eq!(m["Active Devices"], active.to_string(), "{ctx}");
        let this: Vec<&str> = text
            .lines()
            .find(|l| l.starts_with("this "))
            .unwrap_or_else(|| panic!("no `this` line: {ctx}"))
            .split_whitespace()
            .collect();
        assert_eq!(this[5..], ["active", "sync"], "{ctx}");
        assert_eq!(format!("active {}", this[4]), st.role, "{ctx}");
        assert_eq!(m.contains_key("Internal Bitmap"), st.bitmap, "{ctx}");
    }
}

fn check(version: MetadataVersion, bitmap: bool) {
    let tag = format!("{version}-{bitmap}");
    let dir = TempDir::new(&tag);
    let both = vec![Some(Role::Active(0)), Some(Role::Active(1))];
    let alone = vec![Some(Role::Active(0)), None];
    // Healthy: both at the same events, both listed.
    let h0 = member(&dir, "h0", version, bitmap, 0, 20, both.clone());
    let h1 = member(&dir, "h1", version, bitmap, 1, 20, both.clone());
    // The survivor ran alone and counted on; the returning disk still believes both.
    let s0 = member(&dir, "s0", version, bitmap, 0, 57, alone.clone());
    let s1 = member(&dir, "s1", version, bitmap, 1, 20, both);
    for p in [&h0, &h1, &s0, &s1] {
        agrees_with_mdadm(p);
    }
    let disks =
        |ps: &[&PathBuf]| -> Vec<_> { ps.iter().map(|p| inspect_path(p).unwrap()).collect() };

    let healthy = arrays(&disks(&[&h0, &h1]));
    assert_eq!(healthy.len(), 1, "{tag}: {healthy:?}");
    assert_eq!(
        healthy[0].state,
        "healthy",
        "{tag}: {}",
        human_line(&healthy[0])
    );
    assert_eq!(healthy[0].bitmap, bitmap);
    assert_eq!(healthy[0].metadata, version.to_string());

    let degraded = arrays(&disks(&[&s0]));
    assert_eq!(
        degraded[0].missing_slots,
        vec![1],
        "{tag}: {}",
        human_line(&degraded[0])
    );

    let stale = arrays(&disks(&[&s0, &s1]));
    let line = human_line(&stale[0]);
    assert!(stale[0].degraded, "{tag}: {line}");
    assert_eq!(stale[0].events, 57, "{tag}: {line}");
    let st: Vec<&str> = stale[0].members.iter().map(|m| m.status.as_str()).collect();
    assert_eq!(st, ["in_sync", "stale"], "{tag}: {line}");
    assert!(
        line.contains("stale (events 20, array at 57)"),
        "{tag}: {line}"
    );
}

#[test]
fn members_of_1_2_with_bitmap() {
    check(MetadataVersion::V1_2, true);
}

#[test]
fn members_of_1_0_without_bitmap() {
    check(MetadataVersion::V1_0, false);
}

#[test]
fn members_of_0_90_with_bitmap() {
    check(MetadataVersion::V0_90, true);
}

//! Round trips on `Cursor`s, in-place updates and error cases.

use super::*;
use std::io::Cursor;

const UUID: [u8; 16] = *b"\x01\x23\x45\x67\x89\xab\xcd\xef\xfe\xdc\xba\x98\x76\x54\x32\x10";

fn spec(roles: Vec<Option<Role>>) -> ArraySpec {
    ArraySpec {
        uuid: UUID,
        homehost: "xenserver".into(),
        name: "3".into(),
        raid_disks: 2,
        ctime: 1_600_000_000,
        utime: 1_600_000_100,
        events: 1,
        clean: false,
        roles,
    }
}

fn member(dev_number: u32) -> MemberSpec {
    MemberSpec {
        dev_number,
        device_uuid: [0xa5; 16],
        dev_major_minor: (8, 17),
    }
}

const VERSIONS: [MetadataVersion; 4] = [
    MetadataVersion::V0_90,
    MetadataVersion::V1_0,
    MetadataVersion::V1_1,
    MetadataVersion::V1_2,
];

fn image(v: MetadataVersion, size: u64, bitmap: bool, a: &ArraySpec, dev: u32) -> Cursor<Vec<u8>> {
    let mut c = Cursor::new(vec![0u8; (size * 512) as usize]);
    let g = geometry(v, Sectors(size), bitmap).unwrap();
    write_member(&mut c, &g, a, &member(dev)).unwrap();
    assert_eq!(
        c.get_ref().len() as u64,
        size * 512,
        "{v}: wrote past the end"
    );
    c
}

#[test]
fn uuid_text_round_trips() {
    let s = format_uuid(&UUID);
    assert_eq!(s, "01234567:89abcdef:fedcba98:76543210");
    assert_eq!(parse_uuid(&s), Some(UUID));
    assert_eq!(
        parse_uuid("01234567-89ab-cdef-fedc-ba9876543210"),
        Some(UUID)
    );
    assert_eq!(parse_uuid("0123"), None);
}

#[test]
fn read_returns_what_write_wrote() {
    for v in VERSIONS {
        for bitmap in [false, true] {
            let a = spec(vec![Some(Role::Active(0)), None]);
            let size = 50_000;
            let mut c = image(v, size, bitmap, &a, 0);
            let g = geometry(v, Sectors(size), bitmap).unwrap();
            let sb = read(&mut c, Sectors(size)).unwrap().unwrap();
            assert_eq!(sb.version, v);
            assert_eq!(sb.array_uuid, UUID, "{v}");
            assert_eq!(sb.level, 1);
            assert_eq!(sb.raid_disks, 2);
            assert_eq!(sb.ctime, 1_600_000_000);
            assert_eq!(sb.utime, 1_600_000_100);
            assert_eq!(sb.events, 1);
            assert!(!sb.clean);
            assert_eq!(sb.dev_number, 0);
            assert_eq!(sb.role, Role::Active(0));
            assert_eq!(sb.roles, vec![Some(Role::Active(0))]);
            assert_eq!(sb.array_state(), "A.");
            assert_eq!(sb.super_offset, g.super_offset);
            assert_eq!(sb.data_offset, g.data_offset);
            assert_eq!(sb.data_size, g.data_size);
            assert_eq!(sb.array_size, g.array_size);
            if v == MetadataVersion::V0_90 {
                assert_eq!(sb.name, "3");
                assert_eq!(sb.device_uuid, None);
            } else {
                assert_eq!(sb.name, "xenserver:3");
                assert_eq!(sb.device_uuid, Some([0xa5; 16]));
                assert_eq!(sb.bad_block_log, g.bad_block_log);
            }
            let bm = sb.bitmap;
            assert_eq!(bm.is_some(), bitmap, "{v}");
            if let (Some(bm), Some(gb)) = (bm, g.bitmap) {
                assert_eq!(bm.offset, gb.offset);
                assert_eq!(u64::from(bm.chunk_size), gb.chunk_size.0);
                assert_eq!(bm.sync_size, g.array_size);
                assert_eq!(bm.daemon_sleep, 5);
                assert_eq!(bm.version, 4);
                // Dirty array: every bit set after the header.
                let start = gb.start(g.super_offset).unwrap().bytes().0 as usize;
                let area = &c.get_ref()[start + 256..start + gb.space.bytes().0 as usize];
                assert!(area.iter().all(|&b| b == 0xff), "{v}");
            }
        }
    }
}

#[test]
fn clean_array_gets_a_clear_bitmap() {
    for v in VERSIONS {
        let mut a = spec(vec![Some(Role::Active(0)), Some(Role::Active(1))]);
        a.clean = true;
        let c = image(v, 50_000, true, &a, 1);
        let g = geometry(v, Sectors(50_000), true).unwrap();
        let gb = g.bitmap.unwrap();
        let start = gb.start(g.super_offset).unwrap().bytes().0 as usize;
        let area = &c.get_ref()[start + 256..start + gb.space.bytes().0 as usize];
        assert!(area.iter().all(|&b| b == 0), "{v}");
    }
}

#[test]
fn v1_checksum_matches_kernel_definition() {
    let a = spec(vec![Some(Role::Active(0)), None]);
    let c = image(MetadataVersion::V1_2, 50_000, false, &a, 0);
    let sb = &c.get_ref()[4096..4096 + 512];
    let max_dev = u32::from_le_bytes(sb[220..224].try_into().unwrap()) as usize;
    assert_eq!(max_dev, 128, "mdadm uses 128 role slots for small arrays");
    let mut sum = 0u64;
    for (i, w) in sb[..256 + 2 * max_dev].chunks(4).enumerate() {
        if i != 216 / 4 {
            sum += u64::from(u32::from_le_bytes(w.try_into().unwrap()));
        }
    }
    let csum = ((sum & 0xffff_ffff) + (sum >> 32)) as u32;
    assert_eq!(csum, u32::from_le_bytes(sb[216..220].try_into().unwrap()));
    // Roles: slot 0 active, everything else empty.
    assert_eq!(&sb[256..260], &[0, 0, 0xff, 0xff]);
    assert!(sb[260..512].iter().all(|&b| b == 0xff));
}

#[test]
fn v0_90_uuid_words_are_host_endian() {
    let a = spec(vec![Some(Role::Active(0)), None]);
    let c = image(MetadataVersion::V0_90, 50_000, false, &a, 0);
    let g = geometry(MetadataVersion::V0_90, Sectors(50_000), false).unwrap();
    let sb = &c.get_ref()[g.super_offset.bytes().0 as usize..];
    // word 5 printed as %08x must read 01234567.
    assert_eq!(
        u32::from_le_bytes(sb[20..24].try_into().unwrap()),
        0x0123_4567
    );
    assert_eq!(
        u32::from_le_bytes(sb[52..56].try_into().unwrap()),
        0x89ab_cdef
    );
}

#[test]
fn adding_the_second_member_updates_roles_events_and_state() {
    for v in VERSIONS {
        for bitmap in [false, true] {
            let a = spec(vec![Some(Role::Active(0)), None]);
            let size = Sectors(50_000);
            let mut c = image(v, size.0, bitmap, &a, 0);
            let sb = update(
                &mut c,
                size,
                &[
                    Update::Role {
                        dev_number: 1,
                        role: Some(Role::Active(1)),
                    },
                    Update::BumpEvents,
                    Update::Clean(true),
                    Update::UpdateTime(1_600_000_500),
                ],
            )
            .unwrap();
            assert_eq!(sb.array_state(), "AA", "{v}");
            assert_eq!(sb.roles, vec![Some(Role::Active(0)), Some(Role::Active(1))]);
            assert_eq!(sb.role, Role::Active(0));
            assert_eq!(sb.events, 2);
            assert!(sb.clean);
            assert_eq!(sb.utime, 1_600_000_500);
            if bitmap {
                assert_eq!(sb.bitmap.unwrap().events, 2, "{v}: bitmap events follow");
            }
            let again = read(&mut c, size).unwrap().unwrap();
            assert_eq!(again, sb);
            let sb = update(
                &mut c,
                size,
                &[
                    Update::Role {
                        dev_number: 1,
                        role: None,
                    },
                    Update::Events(9),
                    Update::Clean(false),
                ],
            )
            .unwrap();
            assert_eq!(sb.array_state(), "A.");
            assert_eq!(sb.events, 9);
            assert!(!sb.clean);
        }
    }
}

#[test]
fn update_without_superblock_says_so() {
    let mut c = Cursor::new(vec![0u8; 50_000 * 512]);
    let err = update(&mut c, Sectors(50_000), &[Update::BumpEvents]).unwrap_err();
    assert!(matches!(err, MdError::NotFound { .. }), "{err}");
    assert_eq!(read(&mut c, Sectors(50_000)).unwrap(), None);
}

#[test]
fn bad_checksum_is_reported_with_location() {
    let a = spec(vec![Some(Role::Active(0)), None]);
    let mut c = image(MetadataVersion::V1_2, 50_000, false, &a, 0);
    c.get_mut()[4096 + 40] ^= 0x20; // inside set_name
    let err = read(&mut c, Sectors(50_000)).unwrap_err();
    let msg = err.to_string();
    assert!(
        matches!(err, MdError::BadChecksum { sector: 8, .. }),
        "{msg}"
    );
    assert!(msg.contains("1.2") && msg.contains("checksum"), "{msg}");
}

#[test]
fn wrong_version_asked_gives_bad_magic() {
    let a = spec(vec![Some(Role::Active(0)), None]);
    let mut c = image(MetadataVersion::V1_0, 50_000, false, &a, 0);
    let err = read_version(&mut c, Sectors(50_000), MetadataVersion::V1_2).unwrap_err();
    assert!(matches!(err, MdError::BadMagic { found: 0, .. }), "{err}");
    assert!(read_version(&mut c, Sectors(50_000), MetadataVersion::V1_0).is_ok());
}

#[test]
fn non_raid1_is_refused_for_updates() {
    let a = spec(vec![Some(Role::Active(0)), None]);
    let mut c = image(MetadataVersion::V1_2, 50_000, false, &a, 0);
    let raw = &mut c.get_mut()[4096..4096 + 4096];
    raw[72] = 5;
    v1::seal(raw);
    let sb = read(&mut c, Sectors(50_000)).unwrap().unwrap();
    assert_eq!(sb.level, 5);
    let err = update(&mut c, Sectors(50_000), &[Update::BumpEvents]).unwrap_err();
    assert!(
        matches!(err, MdError::UnsupportedLevel { level: 5 }),
        "{err}"
    );
}

#[test]
fn invalid_specs_are_refused() {
    let g = geometry(MetadataVersion::V1_2, Sectors(50_000), false).unwrap();
    let mut c = Cursor::new(Vec::new());
    let mut long = spec(vec![Some(Role::Active(0))]);
    long.homehost = "a-very-long-host-name-indeed-yes".into();
    let err = write_member(&mut c, &g, &long, &member(0)).unwrap_err();
    assert!(err.to_string().contains("set_name"), "{err}");
    let dup = spec(vec![Some(Role::Active(0)), Some(Role::Active(0))]);
    assert!(write_member(&mut c, &g, &dup, &member(0)).is_err());
    let outside = spec(vec![Some(Role::Active(2))]);
    assert!(write_member(&mut c, &g, &outside, &member(0)).is_err());
    let roleless = spec(vec![Some(Role::Active(0)), None]);
    assert!(write_member(&mut c, &g, &roleless, &member(1)).is_err());
    let mut big = g;
    big.array_size = Sectors(g.data_size.0 + 1);
    let ok = spec(vec![Some(Role::Active(0))]);
    assert!(matches!(
        write_member(&mut c, &big, &ok, &member(0)),
        Err(MdError::ArrayTooLarge { .. })
    ));
    assert!(c.get_ref().is_empty(), "nothing written on refusal");
}

#[test]
fn smaller_array_size_is_honoured() {
    let g = geometry_with_size(
        MetadataVersion::V1_0,
        Sectors(50_000),
        Some(Sectors(40_000)),
        true,
    )
    .unwrap();
    assert_eq!(g.array_size, Sectors(40_000));
    assert!(geometry_with_size(
        MetadataVersion::V1_2,
        Sectors(50_000),
        Some(Sectors(49_999)),
        false
    )
    .is_err());
}

#[test]
fn absurd_member_sizes_are_errors_not_overflows() {
    let mut c = Cursor::new(vec![0u8; 4096]);
    assert!(read(&mut c, Sectors(u64::MAX)).is_err());
    assert!(geometry(MetadataVersion::V1_0, Sectors(u64::MAX), true).is_err());
    assert_eq!(read(&mut c, Sectors(0)).unwrap(), None);
}

#[test]
fn probe_finds_what_read_finds() {
    for v in VERSIONS {
        let a = spec(vec![Some(Role::Active(0)), None]);
        let size = 50_000;
        let mut c = image(v, size, true, &a, 0);
        let sb = read(&mut c, Sectors(size)).unwrap().unwrap();
        let p = probe_version(&mut c, Sectors(size), v).unwrap().unwrap();
        assert_eq!(p.version, v);
        assert_eq!(p.array_uuid, sb.array_uuid, "{v}");
        assert_eq!(p.super_offset, sb.super_offset, "{v}");
        assert_eq!(p.data_offset, sb.data_offset, "{v}");
        let name = (v != MetadataVersion::V0_90).then(|| "xenserver:3".to_string());
        assert_eq!(p.name, name, "{v}");
        for other in VERSIONS.into_iter().filter(|o| *o != v) {
            assert_eq!(probe_version(&mut c, Sectors(size), other).unwrap(), None);
        }
    }
}

#[test]
fn probe_ignores_checksums_but_not_the_recorded_location() {
    let a = spec(vec![Some(Role::Active(0)), None]);
    let mut c = image(MetadataVersion::V1_2, 50_000, false, &a, 0);
    c.get_mut()[4096 + 40] ^= 0x20; // inside set_name: read refuses it
    assert!(read(&mut c, Sectors(50_000)).is_err());
    let p = probe_version(&mut c, Sectors(50_000), MetadataVersion::V1_2)
        .unwrap()
        .unwrap();
    assert_eq!(p.name.as_deref(), Some("xenserveR:3"));
    // A 1.x superblock copied to another place records where it came from.
    let sb: Vec<u8> = c.get_ref()[4096..4096 + 512].to_vec();
    c.get_mut()[..512].copy_from_slice(&sb);
    assert_eq!(
        probe_version(&mut c, Sectors(50_000), MetadataVersion::V1_1).unwrap(),
        None
    );
    // Too small for the version, or a stream shorter than the member claims: none.
    assert_eq!(
        probe_version(&mut c, Sectors(16), MetadataVersion::V1_2).unwrap(),
        None
    );
    assert_eq!(
        probe_version(&mut c, Sectors(1 << 30), MetadataVersion::V1_0).unwrap(),
        None
    );
}

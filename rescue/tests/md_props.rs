//! Property tests: corrupted or arbitrary superblock bytes make `md::read` return an
//! error or nothing, never panic.

use proptest::prelude::*;
use rescue::formats::md::{
    geometry, read, update, write_member, ArraySpec, MdError, MemberSpec, MetadataVersion, Role,
    Update,
};
use rescue::units::Sectors;
use std::io::Cursor;

const SIZE: u64 = 4096; // sectors: 2 MiB, room for every version

fn valid(version: MetadataVersion, bitmap: bool) -> (Cursor<Vec<u8>>, u64, usize) {
    let geo = geometry(version, Sectors(SIZE), bitmap).unwrap();
    let array = ArraySpec {
        uuid: [7; 16],
        homehost: "h".into(),
        name: "0".into(),
        raid_disks: 2,
        ctime: 1,
        utime: 2,
        events: 3,
        clean: true,
        roles: vec![Some(Role::Active(0)), None],
    };
    let member = MemberSpec {
        dev_number: 0,
        device_uuid: [9; 16],
        dev_major_minor: (0, 0),
    };
    let mut c = Cursor::new(vec![0u8; (SIZE * 512) as usize]);
    write_member(&mut c, &geo, &array, &member).unwrap();
    // Bytes covered by the checksum: 1.x header + 128 roles; 0.90 the whole 4 KiB.
    let covered = if version == MetadataVersion::V0_90 {
        4096
    } else {
        512
    };
    (c, geo.super_offset.bytes().0, covered)
}

fn version() -> impl Strategy<Value = MetadataVersion> {
    prop_oneof![
        Just(MetadataVersion::V0_90),
        Just(MetadataVersion::V1_0),
        Just(MetadataVersion::V1_1),
        Just(MetadataVersion::V1_2),
    ]
}

/// Independent 1.x checksum so random headers get past it and exercise the decoder.
fn seal_v1(sb: &mut [u8]) {
    sb[216..220].fill(0);
    let max_dev = (u32::from_le_bytes(sb[220..224].try_into().unwrap()) as usize).min(1920);
    let mut sum = 0u64;
    let data = &sb[..256 + 2 * max_dev];
    let mut chunks = data.chunks_exact(4);
    for c in chunks.by_ref() {
        sum += u64::from(u32::from_le_bytes(c.try_into().unwrap()));
    }
    if let [a, b] = chunks.remainder() {
        sum += u64::from(u16::from_le_bytes([*a, *b]));
    }
    let csum = ((sum & 0xffff_ffff) + (sum >> 32)) as u32;
    sb[216..220].copy_from_slice(&csum.to_le_bytes());
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// Any single changed byte in the checksummed area is caught.
    #[test]
    fn one_corrupt_byte_is_detected(
        version in version(),
        bitmap in any::<bool>(),
        pos in any::<prop::sample::Index>(),
        mask in 1u8..,
    ) {
        let (mut c, at, covered) = valid(version, bitmap);
        let i = at as usize + pos.index(covered);
        c.get_mut()[i] ^= mask;
        match read(&mut c, Sectors(SIZE)) {
            Ok(None) => {}
            Err(e) => prop_assert!(!e.to_string().is_empty()),
            Ok(Some(sb)) => prop_assert!(false, "corruption at byte {i} not detected: {sb:?}"),
        }
    }

    /// Many changed bytes anywhere in the superblock block: never a panic, and updates
    /// refuse what read refuses.
    #[test]
    fn many_corrupt_bytes_never_panic(
        version in version(),
        bitmap in any::<bool>(),
        flips in prop::collection::vec((0usize..4096, any::<u8>()), 1..64),
    ) {
        let (mut c, at, _) = valid(version, bitmap);
        for (p, v) in flips {
            c.get_mut()[at as usize + p] = v;
        }
        let r = read(&mut c, Sectors(SIZE));
        let u = update(&mut c, Sectors(SIZE), &[Update::BumpEvents]);
        if r.is_err() {
            prop_assert!(u.is_err());
        }
    }

    /// Random headers with the magic and a valid checksum walk the whole decoder.
    #[test]
    fn random_sealed_v1_headers_never_panic(
        mut block in prop::collection::vec(any::<u8>(), 4096),
        at in prop_oneof![Just(0usize), Just(8), Just(((SIZE - 16) & !7) as usize)],
    ) {
        block[0..4].copy_from_slice(&0xa92b_4efc_u32.to_le_bytes());
        block[4..8].copy_from_slice(&1u32.to_le_bytes());
        block[144..152].copy_from_slice(&(at as u64).to_le_bytes());
        seal_v1(&mut block);
        let mut img = vec![0u8; (SIZE * 512) as usize];
        img[at * 512..at * 512 + 4096].copy_from_slice(&block);
        let mut c = Cursor::new(img);
        let _ = read(&mut c, Sectors(SIZE));
        let _ = update(&mut c, Sectors(SIZE), &[
            Update::Role { dev_number: 3, role: Some(Role::Active(1)) },
            Update::BumpEvents,
        ]);
    }

    /// Arbitrary bytes and claimed sizes (including sizes larger than the stream).
    #[test]
    fn arbitrary_bytes_never_panic(
        bytes in prop::collection::vec(any::<u8>(), 0..20_000),
        size in prop_oneof![0u64..200, 0u64..100_000, any::<u64>()],
    ) {
        let mut c = Cursor::new(bytes);
        if let Err(e) = read(&mut c, Sectors(size)) {
            let not_found = matches!(e, MdError::NotFound { .. });
            prop_assert!(!not_found, "read never reports NotFound: {}", e);
        }
    }
}

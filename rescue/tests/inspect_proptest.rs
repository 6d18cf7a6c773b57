//! Random corruption of a real-tool image (GPT headers and entries, ext, swap, md and LVM
//! signature areas) never makes inspect or the GPT reader panic: they return an `Err` or a
//! result that stays inside the disk.

mod inspect_util;

use inspect_util::*;
use proptest::prelude::*;
use rescue::formats::{gpt, mbr, vfat};
use rescue::inspect::inspect;
use rescue::units::Bytes;
use std::io::Cursor;
use std::sync::OnceLock;

const SIZE: u64 = 24 * MIB;

/// (start, len) byte ranges worth corrupting in the base image.
struct Base {
    bytes: Vec<u8>,
    regions: Vec<(u64, u64)>,
}

fn base() -> &'static Base {
    static BASE: OnceLock<Base> = OnceLock::new();
    BASE.get_or_init(|| {
        let dir = TempDir::new("proptest-base");
        let img = dir.path("base.img");
        sparse_file(&img, SIZE);
        run(
            "sgdisk",
            &[
                "-n1:0:+4M",
                "-t1:0700",
                "-n2:0:+1M",
                "-t2:8200",
                "-n3:0:+2M",
                "-t3:fd00",
                "-n4:0:+2M",
                "-t4:fd00",
                "-n5:0:+2M",
                "-t5:fd00",
                "-n6:0:+8M",
                "-t6:8e00",
                "-n7:0:+1M",
                "-t7:ef00",
                p(&img),
            ],
        );
        let r: Vec<(u64, u64)> = (1..=7).map(|n| part_range(&img, n)).collect();
        mke2fs_at(
            &img,
            "ext3",
            "root-abcdef",
            "01010101-0000-4000-8000-000000000001",
            r[0].0,
            r[0].1,
        );
        mkswap_at(
            &dir,
            &img,
            "swap-abcdef",
            "06060606-0000-4000-8000-000000000006",
            r[1].0,
            r[1].1,
        );
        let md10 = md1_superblock(&img, r[2].0, r[2].1, 0, [0x11; 16], "h:root");
        let md090 = md090_superblock(&img, r[3].0, r[3].1, [1, 2, 3, 4]);
        let md12 = md1_superblock(&img, r[4].0, r[4].1, 2, [0x22; 16], "h:sr");
        pv_at(
            &img,
            "AbCdEf-1234-5678-9abc-defg-hijk-lmnopq",
            "VG_XenStorage-x",
            r[5].0,
            r[5].1,
        );
        mkfs_vfat_at(&img, "BOOT-ABCDEF", "1234ABCD", r[6].0, r[6].1);
        let bytes = std::fs::read(&img).unwrap();
        let regions = vec![
            (0, 512),                   // MBR
            (512, 92),                  // primary GPT header
            (1024, 128 * 7),            // used entries
            (SIZE - 512, 92),           // backup header
            (SIZE - 33 * 512, 128 * 7), // backup entries
            (r[0].0 + 1024, 256),       // ext superblock
            (r[1].0 + 1024, 64),        // swap header
            (r[1].0 + 4086, 10),        // swap magic
            (md10, 256),                // md 1.0
            (md090, 256),               // md 0.90
            (md12, 256),                // md 1.2
            (r[5].0 + 512, 512),        // LVM label and PV header
            (r[5].0 + 4096, 4096),      // LVM metadata area header and text
            (r[6].0, 512),              // FAT boot sector
        ];
        Base { bytes, regions }
    })
}

/// Recomputes the primary header's CRCs so corrupted fields get past the checksum.
fn fix_primary_crcs(d: &mut [u8]) {
    let count = u32::from_le_bytes(d[512 + 80..512 + 84].try_into().unwrap()).min(128) as usize;
    let entries_crc = gpt::crc32(&d[1024..1024 + count * 128]);
    d[512 + 88..512 + 92].copy_from_slice(&entries_crc.to_le_bytes());
    d[512 + 16..512 + 20].fill(0);
    let crc = gpt::crc32(&d[512..512 + 92]);
    d[512 + 16..512 + 20].copy_from_slice(&crc.to_le_bytes());
}

fn check(d: Vec<u8>) {
    let size = d.len() as u64;
    let mut c = Cursor::new(d);
    for ss in [None, Some(512), Some(4096)] {
        if let Ok(t) = gpt::read(&mut c, ss) {
            for p in &t.partitions {
                assert!(p.first_lba <= p.last_lba && p.last_lba <= t.last_usable_lba);
                assert!((p.last_lba.0 + 1) * u64::from(t.sector_size) <= size);
            }
        }
    }
    let _ = mbr::read(&mut c, 512);
    let _ = vfat::probe(&mut c, 0);
    for ss in [512, 4096] {
        if let Ok(disk) = inspect(&mut c, "x", "x", Bytes(size), ss) {
            for p in &disk.partitions {
                if disk.table.as_deref() == Some("gpt") {
                    assert!(p.start_lba * u64::from(ss) + p.size_bytes <= size, "{p:?}");
                }
            }
        }
    }
}

#[test]
fn base_image_is_fully_recognised() {
    // The corruption tests only mean something if the intact image is read completely.
    let disk = inspect(
        &mut Cursor::new(base().bytes.clone()),
        "x",
        "x",
        Bytes(SIZE),
        512,
    )
    .unwrap();
    let types: Vec<Option<&str>> = disk
        .partitions
        .iter()
        .map(|p| p.fs_type.as_deref())
        .collect();
    assert_eq!(
        types,
        [
            Some("ext3"),
            Some("swap"),
            Some("linux_raid_member"),
            Some("linux_raid_member"),
            Some("linux_raid_member"),
            Some("LVM2_member"),
            Some("vfat")
        ]
    );
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 384, ..ProptestConfig::default() })]

    #[test]
    fn corrupted_images_never_panic(
        edits in prop::collection::vec((0usize..14, any::<u32>(), any::<u8>()), 1..12),
        fix_crc in any::<bool>(),
    ) {
        let b = base();
        let mut d = b.bytes.clone();
        for (region, at, value) in edits {
            let (start, len) = b.regions[region];
            d[(start + u64::from(at) % len) as usize] = value;
        }
        if fix_crc {
            fix_primary_crcs(&mut d);
        }
        check(d);
    }

    #[test]
    fn random_small_disks_never_panic(d in prop::collection::vec(any::<u8>(), 0..20_000)) {
        check(d);
    }

    #[test]
    fn random_fat_boot_sectors_never_panic(body in prop::collection::vec(any::<u8>(), 512)) {
        let mut sector = [0u8; 512];
        sector.copy_from_slice(&body);
        sector[0] = 0xEB;
        sector[510] = 0x55;
        sector[511] = 0xAA;
        if let Some(v) = vfat::parse(&sector) {
            prop_assert!(matches!(v.fat_bits, 12 | 16 | 32));
            prop_assert_eq!(v.serial.len(), 9);
        }
    }
}

//! FAT12/16/32 boot sectors made by mkfs.vfat: flavour, label (0x2B or 0x47) and serial
//! compared with blkid.

mod inspect_util;

use inspect_util::*;
use rescue::formats::vfat;
use std::fs::File;
use std::process::Command;

fn blkid_version(img: &std::path::Path) -> Option<String> {
    let out = Command::new("blkid")
        .args(["-p", "-o", "export", p(img)])
        .output()
        .expect("cannot run `blkid`: install util-linux");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .find_map(|l| l.strip_prefix("VERSION=").map(str::to_string))
}

#[test]
fn fat12_fat16_fat32_match_blkid() {
    let dir = TempDir::new("vfat");
    for (bits, size_mib, label) in [
        (12u8, 4u64, "SMALL"),
        (16, 64, "BOOT-ABCDEF"),
        (32, 300, "BIG ONE"),
    ] {
        let img = dir.path(&format!("fat{bits}.img"));
        sparse_file(&img, size_mib * MIB);
        run(
            "mkfs.vfat",
            &[
                "-F",
                &bits.to_string(),
                "-n",
                label,
                "-i",
                "0BADCAFE",
                p(&img),
            ],
        );
        let v = vfat::probe(&mut File::open(&img).unwrap(), 0)
            .unwrap()
            .expect("FAT not recognised");
        let (ty, blabel, buuid) = blkid_range(&img, 0, size_mib * MIB);
        assert_eq!(ty.as_deref(), Some("vfat"));
        assert_eq!(v.label, blabel, "FAT{bits} label");
        assert_eq!(Some(v.serial.clone()), buuid, "FAT{bits} serial");
        assert_eq!(v.serial, "0BAD-CAFE");
        assert_eq!(Some(format!("FAT{}", v.fat_bits)), blkid_version(&img));
        assert_eq!(v.fat_bits, bits);
    }
}

#[test]
fn no_label_and_not_fat() {
    let dir = TempDir::new("vfat-nolabel");
    let img = dir.path("fat.img");
    sparse_file(&img, 8 * MIB);
    run("mkfs.vfat", &["-i", "00000001", p(&img)]);
    let v = vfat::probe(&mut File::open(&img).unwrap(), 0)
        .unwrap()
        .unwrap();
    assert_eq!((v.label, v.serial.as_str()), (None, "0000-0001"));
    assert_eq!(blkid_range(&img, 0, 8 * MIB).1, None);
    let ext = dir.path("ext.img");
    sparse_file(&ext, 8 * MIB);
    mke2fs_at(
        &ext,
        "ext2",
        "x",
        "0e0e0e0e-0000-4000-8000-00000000000e",
        0,
        8 * MIB,
    );
    assert_eq!(
        vfat::probe(&mut File::open(&ext).unwrap(), 0).unwrap(),
        None
    );
}

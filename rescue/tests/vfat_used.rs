//! The used-clusters map of FAT12/16/32 file systems made by mkfs.fat and filled by
//! mtools (files, directories, a deleted file): copying only the mapped ranges onto
//! zeros gives a file system fsck.fat finds clean, whose every file mtools reads back
//! byte for byte; and the map is much smaller than the volume.

mod inspect_util;

use inspect_util::*;
use rescue::formats::vfat::used_map;
use std::fs::File;
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::Path;

const MIB: u64 = 1 << 20;

fn mtools(tool: &str, args: &[&str]) -> String {
    run(tool, args)
}

/// A volume of `mib` MiB as `mkfs.fat -F bits` makes it, with a tree of files.
fn filled(dir: &TempDir, name: &str, mib: u64, bits: &str) -> std::path::PathBuf {
    let img = dir.path(name);
    sparse_file(&img, mib * MIB);
    run(
        "mkfs.fat",
        &["-F", bits, "-n", "BOOT-TEST", "-i", "1234ABCD", p(&img)],
    );
    let i = p(&img);
    mtools(
        "mmd",
        &["-i", i, "::/EFI", "::/EFI/xenserver", "::/EFI/BOOT"],
    );
    let mut n = 0u32;
    for (path, len) in [
        ("grubx64.efi", 1_500_000usize),
        ("grub.cfg", 3000),
        ("deleted.bin", 200_000),
        ("small", 1),
    ] {
        let f = dir.path(path);
        let data: Vec<u8> = (0..len)
            .map(|k| {
                n = n
                    .wrapping_mul(1_103_515_245)
                    .wrapping_add(12_345 + k as u32);
                (n >> 16) as u8
            })
            .collect();
        std::fs::write(&f, data).unwrap();
        mtools("mcopy", &["-i", i, p(&f), "::/EFI/xenserver/"]);
    }
    mtools("mdel", &["-i", i, "::/EFI/xenserver/deleted.bin"]);
    img
}

/// Copies only the mapped ranges of `src` onto a zeroed file of the same size.
fn copy_used(src: &Path, dst: &Path) -> (u64, u64) {
    let mut f = File::open(src).unwrap();
    let m = used_map(&mut f).unwrap().expect("a FAT");
    let size = std::fs::metadata(src).unwrap().len();
    sparse_file(dst, size);
    let mut out = File::options().write(true).open(dst).unwrap();
    for (s, e) in m.extents.ranges() {
        let mut buf = vec![0u8; (e.0 - s.0) as usize];
        f.seek(SeekFrom::Start(s.0)).unwrap();
        f.read_exact(&mut buf).unwrap();
        out.seek(SeekFrom::Start(s.0)).unwrap();
        out.write_all(&buf).unwrap();
    }
    (m.extents.total().0, size)
}

fn check(bits: &str, mib: u64) {
    let dir = TempDir::new(&format!("vfat-used-{bits}"));
    let src = filled(&dir, "src.img", mib, bits);
    let dst = dir.path("dst.img");
    let (used, size) = copy_used(&src, &dst);
    assert!(
        used < size / 4,
        "FAT{bits}: {used} of {size} bytes mapped as used"
    );
    let fsck = run("fsck.fat", &["-n", p(&dst)]);
    assert!(
        !fsck.contains("differ") && !fsck.contains("Free cluster"),
        "{fsck}"
    );
    for f in ["grubx64.efi", "grub.cfg", "small"] {
        let back = dir.path(&format!("back-{f}"));
        run(
            "mcopy",
            &["-i", p(&dst), &format!("::/EFI/xenserver/{f}"), p(&back)],
        );
        assert_eq!(
            std::fs::read(&back).unwrap(),
            std::fs::read(dir.path(f)).unwrap(),
            "FAT{bits}: {f} differs after the used-clusters copy"
        );
    }
    // The deleted file's clusters are free, so not in the map.
    assert!(!mtools("mdir", &["-i", p(&dst), "::/EFI/xenserver"]).contains("DELETED"));
}

#[test]
fn fat32_used_clusters_copy_is_complete() {
    check("32", 64);
}

#[test]
fn fat16_used_clusters_copy_is_complete() {
    check("16", 32);
}

#[test]
fn fat12_used_clusters_copy_is_complete() {
    check("12", 8);
}

#[test]
fn not_fat_is_none() {
    let dir = TempDir::new("vfat-used-none");
    let img = dir.path("zero.img");
    sparse_file(&img, MIB);
    assert!(used_map(&mut File::open(&img).unwrap()).unwrap().is_none());
}

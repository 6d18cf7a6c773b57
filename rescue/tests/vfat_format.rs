//! FAT32 made by `formats::vfat::format_fat32`, checked by dosfstools and mtools: fsck.fat
//! finds nothing to fix, blkid reads label and serial, mtools writes a file that fsck.fat
//! and our probe still accept; on a whole image, a partition of a GPT disk, and a large
//! sparse volume with 32 KiB clusters.

mod inspect_util;

use inspect_util::*;
use rescue::formats::vfat::{format_fat32, probe};
use std::fs::OpenOptions;
use std::io::{Seek, SeekFrom, Write};

/// The image file seen from `base` on, as a partition device would be.
struct At {
    f: std::fs::File,
    base: u64,
}

impl Write for At {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        self.f.write(b)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.f.flush()
    }
}

impl Seek for At {
    fn seek(&mut self, pos: SeekFrom) -> std::io::Result<u64> {
        let SeekFrom::Start(o) = pos else {
            unimplemented!("format_fat32 seeks from the start only")
        };
        Ok(self.f.seek(SeekFrom::Start(self.base + o))? - self.base)
    }
}

fn format_at(img: &std::path::Path, offset: u64, len: u64, hidden: u32) -> u32 {
    let f = OpenOptions::new().read(true).write(true).open(img).unwrap();
    let mut w = At { f, base: offset };
    format_fat32(&mut w, len, "XENRAID-BK", 0x1234_ABCD, hidden)
        .unwrap()
        .sectors_per_cluster
}

#[test]
fn fsck_mtools_and_blkid_accept_it() {
    let dir = TempDir::new("vfat-format");
    let img = dir.path("fat.img");
    sparse_file(&img, 96 * MIB);
    format_at(&img, 0, 96 * MIB, 0);
    run("fsck.fat", &["-n", p(&img)]);
    let (kind, label, uuid) = blkid_range(&img, 0, 96 * MIB);
    assert_eq!(
        (kind.as_deref(), label.as_deref(), uuid.as_deref()),
        (Some("vfat"), Some("XENRAID-BK"), Some("1234-ABCD"))
    );
    let file = dir.path("data.bin");
    std::fs::write(&file, vec![7u8; 3 << 20]).unwrap();
    run("mcopy", &["-i", p(&img), p(&file), "::/data.bin"]);
    let listing = run("mdir", &["-i", p(&img), "::/"]);
    assert!(
        listing.contains("XENRAID-BK") && listing.to_lowercase().contains("data"),
        "{listing}"
    );
    run("fsck.fat", &["-n", p(&img)]);
    let back = dir.path("back.bin");
    run("mcopy", &["-i", p(&img), "::/data.bin", p(&back)]);
    assert_eq!(std::fs::read(&back).unwrap(), vec![7u8; 3 << 20]);
}

#[test]
fn a_partition_and_a_large_volume() {
    let dir = TempDir::new("vfat-format-part");
    let img = dir.path("disk.img");
    sparse_file(&img, 128 * MIB);
    run("sgdisk", &["-n1:0:0", "-t1:0700", p(&img)]);
    let (start, len) = part_range(&img, 1);
    format_at(&img, start, len, (start / 512) as u32);
    let part = dir.path("part.img");
    std::fs::write(&part, read_at(&img, start, len as usize)).unwrap();
    run("fsck.fat", &["-n", p(&part)]);
    // mtools reads it in place, at the partition's offset.
    run("mdir", &["-i", &format!("{}@@{start}", p(&img)), "::/"]);
    let mut f = std::fs::File::open(&img).unwrap();
    let v = probe(&mut f, start).unwrap().unwrap();
    assert_eq!((v.fat_bits, v.serial.as_str()), (32, "1234-ABCD"));

    let big = dir.path("big.img");
    sparse_file(&big, 40 << 30);
    assert_eq!(format_at(&big, 0, 40 << 30, 0), 64);
    run("fsck.fat", &["-n", p(&big)]);
}

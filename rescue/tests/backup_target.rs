//! Where `rescue.action=backup` writes, on image files made by the real tools: a blank
//! disk not named in `rescue.wipe=` is refused and stays as it was; named, it gets a GPT
//! and a FAT32 that sgdisk, fsck.fat and mtools accept, and inspecting it again gives a
//! filesystem the next backup uses as it is; a backup's `<host>/<time>/` directory copied
//! onto it with mtools comes back intact. The free-space estimate bounds what a backup of
//! incompressible data really writes.

mod inspect_util;

use inspect_util::*;
use rescue::backup;
use rescue::backup_job::plan::{self, BackupTarget, Fs, JobError};
use rescue::backup_job::write_backup_table;
use rescue::cmdline::parse;
use rescue::formats::{gpt, vfat};
use rescue::inspect::{inspect_path, Disk};
use sha2::{Digest, Sha256};
use std::fs::OpenOptions;
use std::io::{Seek, SeekFrom, Write};
use std::path::Path;

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

fn sha(path: &Path) -> String {
    format!("{:x}", Sha256::digest(std::fs::read(path).unwrap()))
}

/// Random-looking bytes gzip cannot shrink.
fn noise(len: usize, seed: u64) -> Vec<u8> {
    let mut s = seed;
    (0..len)
        .map(|_| {
            s = s
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            (s >> 33) as u8
        })
        .collect()
}

/// A small disk to back up: GPT, one ext4 partition holding a file of noise.
fn source(dir: &TempDir) -> std::path::PathBuf {
    let img = dir.path("src");
    sparse_file(&img, 48 * MIB);
    run("sgdisk", &["-n1:0:0", "-t1:8300", p(&img)]);
    let files = dir.path("files");
    std::fs::create_dir_all(&files).unwrap();
    std::fs::write(files.join("data.bin"), noise(6 << 20, 7)).unwrap();
    let (start, len) = part_range(&img, 1);
    run(
        "mke2fs",
        &[
            "-q",
            "-F",
            "-t",
            "ext4",
            "-d",
            p(&files),
            "-E",
            &format!("offset={start}"),
            p(&img),
            &format!("{}k", len / 1024),
        ],
    );
    img
}

fn inspect(img: &Path) -> Disk {
    inspect_path(img).unwrap()
}

fn plan_backup(args: &str, disks: &[Disk]) -> Result<BackupTarget, JobError> {
    let c = parse(&format!("rescue.action=backup {args}"));
    assert!(c.errors.is_empty(), "{:?}", c.errors);
    plan::plan_backup(&c.plan, disks, None).map(|p| p.target)
}

#[test]
fn a_blank_disk_is_formatted_only_when_wiped_and_then_holds_a_backup() {
    let dir = TempDir::new("backup-target");
    let src = source(&dir);
    let tgt = dir.path("tgt");
    sparse_file(&tgt, 96 * MIB);
    let before = sha(&tgt);
    let disks = [inspect(&src), inspect(&tgt)];
    assert!(disks[1].blank);

    // Not named in rescue.wipe=: refused, naming the fix; the image is as it was.
    let e = plan_backup("rescue.source=src rescue.to=tgt", &disks).unwrap_err();
    assert_eq!(e.to_string(), format!("{} is blank: name it in rescue.wipe=tgt to format it FAT32 for the backup, or use a disk with an ext4 or FAT filesystem", tgt.display()));
    assert_eq!(sha(&tgt), before);
    // The source is never the target, wiped or not.
    assert_eq!(
        plan_backup("rescue.source=src rescue.to=src rescue.wipe=src", &disks),
        Err(JobError::TargetIsSource(src.display().to_string()))
    );

    // Named: a GPT with one partition, FAT32 on it.
    let t = plan_backup("rescue.source=src rescue.to=tgt rescue.wipe=tgt", &disks).unwrap();
    let BackupTarget::Format { layout, .. } = t else {
        panic!("{t:?}")
    };
    let mut f = OpenOptions::new()
        .read(true)
        .write(true)
        .open(&tgt)
        .unwrap();
    write_backup_table(&mut f, &layout, &mut gpt::GuidSource::Seeded(1)).unwrap();
    let start = layout.first_lba * 512;
    let mut w = At { f, base: start };
    vfat::format_fat32(
        &mut w,
        layout.len_bytes(),
        plan::BACKUP_LABEL,
        0x1234_5678,
        layout.first_lba as u32,
    )
    .unwrap();
    drop(w);
    let verify = run("sgdisk", &["-v", p(&tgt)]);
    assert!(verify.contains("No problems found"), "{verify}");
    assert_eq!(part_range(&tgt, 1), (start, layout.len_bytes()));
    let part = dir.path("part");
    std::fs::write(&part, read_at(&tgt, start, layout.len_bytes() as usize)).unwrap();
    run("fsck.fat", &["-n", p(&part)]);

    // Inspected again, the disk holds a filesystem the next backup uses as it is.
    let again = [inspect(&src), inspect(&tgt)];
    let t = plan_backup("rescue.source=src rescue.to=tgt rescue.wipe=tgt", &again).unwrap();
    let BackupTarget::Volume(v) = t else {
        panic!("{t:?}")
    };
    assert_eq!((v.partition, v.fs), (Some(1), Fs::Vfat));

    // A backup in <host>/<time>/, copied onto the new FAT by mtools, comes back intact.
    let out = dir.path("out");
    let rel = plan::backup_dir("XS HOST", 1_795_290_123);
    let mut s = std::fs::File::open(&src).unwrap();
    let m = backup::backup(&mut s, &again[0], &out.join(&rel), 0, |_, _| {}).unwrap();
    let host = rel.split('/').next().unwrap();
    let fat = format!("{}@@{start}", p(&tgt));
    run("mcopy", &["-s", "-i", &fat, p(&out.join(host)), "::/"]);
    std::fs::write(&part, read_at(&tgt, start, layout.len_bytes() as usize)).unwrap();
    run("fsck.fat", &["-n", p(&part)]);
    let listing = run("mdir", &["-b", "-i", &fat, &format!("::/{rel}")]);
    for it in &m.items {
        for file in &it.files {
            assert!(listing.contains(file.as_str()), "{file} not in {listing}");
        }
    }
    assert!(
        listing.contains("manifest.json") && listing.contains("RESTORE.sh"),
        "{listing}"
    );
    let back = dir.path("back");
    std::fs::create_dir_all(&back).unwrap();
    run(
        "mcopy",
        &["-s", "-i", &fat, &format!("::/{host}"), p(&back)],
    );
    let m2 = backup::verify(&back.join(&rel)).unwrap();
    assert_eq!(m2.items, m.items);
}

#[test]
fn a_disk_with_a_filesystem_is_used_and_one_without_is_refused() {
    let dir = TempDir::new("backup-target-fs");
    let src = source(&dir);
    // ext4 on the whole disk, and FAT on the only partition beside a BIOS boot one.
    let whole = dir.path("whole");
    sparse_file(&whole, 32 * MIB);
    mke2fs_at(
        &whole,
        "ext4",
        "bk",
        "01234567-89ab-4cde-8f01-23456789abcd",
        0,
        32 * MIB,
    );
    let fat = dir.path("fat");
    sparse_file(&fat, 64 * MIB);
    run(
        "sgdisk",
        &["-n1:0:+1M", "-t1:ef02", "-n2:0:0", "-t2:0700", p(&fat)],
    );
    let (s, l) = part_range(&fat, 2);
    mkfs_vfat_at(&fat, "BK", "12345678", s, l);
    // Two data partitions, and a swap signature: nothing to use without rescue.wipe=.
    let two = dir.path("two");
    sparse_file(&two, 64 * MIB);
    run("sgdisk", &["-n1:0:+20M", "-n2:0:0", p(&two)]);
    for n in [1, 2] {
        let (s, l) = part_range(&two, n);
        mke2fs_at(
            &two,
            "ext4",
            "x",
            "01234567-89ab-4cde-8f01-23456789abc0",
            s,
            l,
        );
    }
    let swap = dir.path("swap");
    sparse_file(&swap, 16 * MIB);
    run("mkswap", &[p(&swap)]);
    let paths = [&src, &whole, &fat, &two, &swap];
    let before: Vec<String> = paths.iter().map(|p| sha(p)).collect();
    let disks: Vec<Disk> = paths.iter().map(|p| inspect(p)).collect();

    let t = plan_backup("rescue.source=src rescue.to=whole", &disks).unwrap();
    assert!(
        matches!(&t, BackupTarget::Volume(v) if v.partition.is_none() && v.fs == Fs::Ext4),
        "{t:?}"
    );
    let t = plan_backup("rescue.source=src rescue.to=fat", &disks).unwrap();
    assert!(
        matches!(&t, BackupTarget::Volume(v) if v.partition == Some(2) && v.fs == Fs::Vfat),
        "{t:?}"
    );
    let e = plan_backup("rescue.source=src rescue.to=two", &disks).unwrap_err();
    assert!(
        e.to_string()
            .contains("(GPT table, partitions 1: ext4, 2: ext4)"),
        "{e}"
    );
    let e = plan_backup("rescue.source=src rescue.to=swap", &disks).unwrap_err();
    assert!(
        e.to_string()
            .contains("holds no filesystem a backup can go into (swap)"),
        "{e}"
    );
    let after: Vec<String> = paths.iter().map(|p| sha(p)).collect();
    assert_eq!(before, after, "planning wrote");
}

#[test]
fn the_estimate_bounds_what_a_backup_writes() {
    let dir = TempDir::new("backup-estimate");
    // Every byte of a disk without a known filesystem, all of it noise: the worst case.
    let raw = dir.path("raw");
    std::fs::write(&raw, noise(24 << 20, 3)).unwrap();
    let src = source(&dir);
    for img in [&raw, &src] {
        let d = inspect(img);
        let mut f = std::fs::File::open(img).unwrap();
        let est = backup::estimate(&mut f, &d).unwrap();
        let out = dir.path(&format!("out-{}", d.name));
        let m = backup::backup(&mut f, &d, &out, 0, |_, _| {}).unwrap();
        let written: u64 = std::fs::read_dir(&out)
            .unwrap()
            .map(|e| e.unwrap().metadata().unwrap().len())
            .sum();
        assert_eq!(est.items, m.items.len());
        assert_eq!(
            est.used_bytes,
            m.items.iter().map(|i| i.used_bytes).sum::<u64>()
        );
        // One partition filling the disk: head, partition and tail cover every byte.
        assert_eq!(est.stream_bytes, d.size_bytes);
        assert!(
            written <= est.worst_case_bytes,
            "{}: wrote {written}, estimated at most {}",
            d.name,
            est.worst_case_bytes
        );
        // Not a bound that could never be missed: within 2 % + 2 MiB of the used bytes.
        assert!(
            est.worst_case_bytes < est.used_bytes + est.used_bytes / 50 + (2 << 20),
            "{est:?}"
        );
    }
}

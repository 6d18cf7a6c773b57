//! Backup and restore of a disk made by the real tools as a XenServer host looks: MBR boot
//! code, a BIOS boot partition of random bytes, an ext3 root with files (mke2fs -d), swap,
//! and an SR PV (pvcreate/vgcreate/lvcreate, no device-mapper) whose LV holds a VM disk
//! (MBR + ext4), with random bytes in the PV's free extents. The backup reads used blocks
//! only; our restore and the backup's own RESTORE.sh (cat, gunzip, dd, sgdisk) give the
//! same disk; e2fsck and debugfs read the restored filesystems; a larger target gets its
//! backup GPT at its end; one changed byte in the backup is refused before any write.

mod inspect_util;

use inspect_util::*;
use rescue::backup::{self, BackupError};
use rescue::inspect::inspect_path;
use sha2::{Digest, Sha256};
use std::fs::{File, OpenOptions};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

const VG: &str = "VG_XenStorage-backup";
const DISK: u64 = 64 * MIB;

fn noise(len: usize, seed: u32) -> Vec<u8> {
    (0..len as u32)
        .map(|i| ((i ^ seed).wrapping_mul(2654435761) >> 11) as u8)
        .collect()
}

fn sha(path: &Path) -> String {
    format!("{:x}", Sha256::digest(std::fs::read(path).unwrap()))
}

fn range_to_file(img: &Path, offset: u64, len: u64, out: &Path) {
    let mut b = vec![0u8; len as usize];
    File::open(img)
        .unwrap()
        .read_exact_at(&mut b, offset)
        .unwrap();
    std::fs::write(out, b).unwrap();
}

struct Host {
    dir: TempDir,
    disk: PathBuf,
}

fn host() -> Host {
    let dir = TempDir::new("backup");
    let disk = dir.path("disk.img");
    sparse_file(&disk, DISK);
    run(
        "sgdisk",
        &[
            "-n1:0:+1M",
            "-t1:ef02",
            "-n2:0:+12M",
            "-t2:8300",
            "-c2:root",
            "-n3:0:+4M",
            "-t3:8200",
            "-n4:0:0",
            "-t4:8e00",
            p(&disk),
        ],
    );
    let f = OpenOptions::new().write(true).open(&disk).unwrap();
    f.write_all_at(&noise(440, 1), 0).unwrap();
    let (bb, bb_len) = part_range(&disk, 1);
    f.write_all_at(&noise(bb_len as usize, 2), bb).unwrap();

    let files = dir.path("files");
    std::fs::create_dir_all(files.join("etc")).unwrap();
    std::fs::write(files.join("etc/hostname"), "xenserver-backup\n").unwrap();
    std::fs::write(files.join("big.bin"), noise(3 << 20, 3)).unwrap();
    let (root, root_len) = part_range(&disk, 2);
    run(
        "mke2fs",
        &[
            "-q",
            "-F",
            "-t",
            "ext3",
            "-d",
            p(&files),
            "-L",
            "root-bkupab",
            "-E",
            &format!("offset={root}"),
            p(&disk),
            &format!("{}k", root_len / 1024),
        ],
    );
    let (sw, sw_len) = part_range(&disk, 3);
    mkswap_at(
        &dir,
        &disk,
        "swap-bkupab",
        "0a0b0c0d-0000-4000-8000-00000000000e",
        sw,
        sw_len,
    );

    let (pv, pv_len) = part_range(&disk, 4);
    // Random bytes where no LV is: a backup of allocated extents leaves them out.
    f.write_all_at(&noise(pv_len as usize, 4), pv).unwrap();
    let (lv_pe, pe_start) = {
        let lo = Loop::new(&disk, pv, pv_len);
        let d = lo.0.as_str();
        lvm_on("pvcreate", d, &["-ff", "-y", "--norestorefile", d]);
        lvm_on("vgcreate", d, &["-s", "1m", VG, d]);
        inactive_lv(d, VG, "MGT", "4m");
        inactive_lv(d, VG, "LV-vm", "8m");
        let seg = lvm_on(
            "lvs",
            d,
            &[
                "--noheadings",
                "-o",
                "seg_pe_ranges",
                &format!("{VG}/LV-vm"),
            ],
        );
        let pe: u64 = seg
            .trim()
            .rsplit_once(':')
            .unwrap()
            .1
            .split('-')
            .next()
            .unwrap()
            .parse()
            .unwrap();
        let pe_start = pe_start_bytes(d);
        (pe, pe_start)
    };
    // The VM's disk in LV-vm: an MBR and an ext4 with a file.
    let vm = dir.path("vm.img");
    sparse_file(&vm, 8 * MIB);
    let vm_files = dir.path("vm-files");
    std::fs::create_dir_all(&vm_files).unwrap();
    std::fs::write(vm_files.join("vm.txt"), "inside the SR\n").unwrap();
    run(
        "mke2fs",
        &[
            "-q",
            "-F",
            "-t",
            "ext4",
            "-d",
            p(&vm_files),
            "-E",
            "offset=1048576",
            p(&vm),
            "6M",
        ],
    );
    let mut mbr = vec![0u8; 512];
    mbr[446 + 4] = 0x83;
    mbr[446 + 8..446 + 12].copy_from_slice(&2048u32.to_le_bytes());
    mbr[446 + 12..446 + 16].copy_from_slice(&12288u32.to_le_bytes());
    mbr[510] = 0x55;
    mbr[511] = 0xaa;
    let vm_bytes = std::fs::read(&vm).unwrap();
    let at = pv + pe_start + lv_pe * MIB;
    f.write_all_at(&vm_bytes, at).unwrap();
    f.write_all_at(&mbr, at).unwrap();
    Host { dir, disk }
}

fn back_up(h: &Host, name: &str) -> (PathBuf, backup::Manifest) {
    let out = h.dir.path(name);
    let d = inspect_path(&h.disk).unwrap();
    let m = backup::backup(
        &mut File::open(&h.disk).unwrap(),
        &d,
        &out,
        1_790_000_000,
        |_, _| {},
    )
    .unwrap();
    (out, m)
}

fn restore_to(bk: &Path, target: &Path, size: u64) -> Result<backup::Restored, BackupError> {
    if !target.exists() {
        sparse_file(target, size);
    }
    let mut f = OpenOptions::new()
        .read(true)
        .write(true)
        .open(target)
        .unwrap();
    backup::restore(bk, &mut f, size)
}

/// What a restored disk must hold, checked with the host's own tools.
fn check_restored(h: &Host, img: &Path) {
    let out = run("sgdisk", &["-v", p(img)]);
    assert!(out.contains("No problems found"), "{out}");
    let (root, len) = part_range(img, 2);
    let rootfs = h.dir.path("root.fs");
    range_to_file(img, root, len, &rootfs);
    run("e2fsck", &["-fn", p(&rootfs)]);
    assert_eq!(
        run("debugfs", &["-R", "cat /etc/hostname", p(&rootfs)]),
        "xenserver-backup\n"
    );
    let big = h.dir.path("big.out");
    let _ = std::fs::remove_file(&big);
    run(
        "debugfs",
        &["-R", &format!("dump /big.bin {}", p(&big)), p(&rootfs)],
    );
    assert_eq!(std::fs::read(&big).unwrap(), noise(3 << 20, 3));
    // Boot code and the BIOS boot partition, byte for byte.
    let (src, dst) = (File::open(&h.disk).unwrap(), File::open(img).unwrap());
    let (bb, bb_len) = part_range(&h.disk, 1);
    for (o, l) in [(0, 440), (bb, bb_len)] {
        let (mut a, mut b) = (vec![0u8; l as usize], vec![0u8; l as usize]);
        src.read_exact_at(&mut a, o).unwrap();
        dst.read_exact_at(&mut b, o).unwrap();
        assert!(a == b, "bytes {o}..+{l} differ");
    }
    let (sw, _) = part_range(img, 3);
    let (kind, _, uuid) = blkid_range(img, sw, 4 * MIB);
    assert_eq!(kind.as_deref(), Some("swap"));
    assert_eq!(
        uuid.as_deref(),
        Some("0a0b0c0d-0000-4000-8000-00000000000e")
    );
    // The VM's file, through the LV map, from the restored SR.
    let vmfs = h.dir.path("vm.fs");
    let _ = std::fs::remove_file(&vmfs);
    rescue::extract::extract(&rescue::extract::Request {
        disk: img.to_path_buf(),
        lv: format!("{VG}/LV-vm"),
        partition: Some(1),
        out: vmfs.clone(),
    })
    .unwrap();
    assert_eq!(
        run("debugfs", &["-R", "cat /vm.txt", p(&vmfs)]),
        "inside the SR\n"
    );
}

#[test]
fn backup_reads_used_blocks_and_both_restores_give_a_working_disk() {
    let h = host();
    let before = sha(&h.disk);
    let (bk, m) = back_up(&h, "bk");
    assert_eq!(before, sha(&h.disk), "backup wrote to the source");
    let names: Vec<&str> = m.items.iter().map(|i| i.name.as_str()).collect();
    assert_eq!(
        names,
        ["00-head", "01-p1", "02-p2", "03-p3", "04-p4", "99-tail"]
    );
    let item = |n: &str| m.items.iter().find(|i| i.name == n).unwrap();
    assert!(
        item("02-p2").used_bytes < item("02-p2").size_bytes / 2,
        "{:?}",
        item("02-p2")
    );
    assert_eq!(item("03-p3").used_bytes, 4096);
    // The metadata area (1 MiB), MGT whole (4 MiB: no known content), and of LV-vm's
    // 8 MiB only its MBR, the MiB before its partition and the ext4's used blocks; the
    // free extents (random bytes) are left out.
    let pv = item("04-p4");
    assert!(
        pv.used_bytes >= 6 * MIB && pv.used_bytes < 8 * MIB,
        "{pv:?}"
    );
    assert!(pv.method.contains("each LV by its content"), "{pv:?}");
    let read: u64 = m.items.iter().map(|i| i.used_bytes).sum();
    let packed: u64 = m.items.iter().map(|i| i.compressed_bytes).sum();
    eprintln!("backup: {read} bytes read, {packed} bytes of gzip for a {DISK}-byte disk");
    backup::verify(&bk).unwrap();

    let ours = h.dir.path("ours.img");
    let r = restore_to(&bk, &ours, DISK).unwrap();
    assert!(!r.gpt_moved_to_end);
    check_restored(&h, &ours);

    // The same with standard tools only.
    let theirs = h.dir.path("theirs.img");
    sparse_file(&theirs, DISK);
    let script = bk.join("RESTORE.sh");
    let check = run("sh", &[p(&script), "--check"]);
    assert_eq!(check.matches(" ok").count(), m.items.len(), "{check}");
    run("sh", &[p(&script), p(&theirs)]);
    assert_eq!(sha(&theirs), sha(&ours), "RESTORE.sh and restore differ");
}

#[test]
fn a_larger_target_gets_its_backup_gpt_at_the_end() {
    let h = host();
    let (bk, _) = back_up(&h, "bk");
    let big = h.dir.path("big.img");
    let r = restore_to(&bk, &big, DISK + 16 * MIB).unwrap();
    assert!(r.gpt_moved_to_end);
    check_restored(&h, &big);
    let small = h.dir.path("small.img");
    let e = restore_to(&bk, &small, DISK - MIB).unwrap_err();
    assert!(
        e.to_string().contains("smaller than the backed-up disk"),
        "{e}"
    );
}

#[test]
fn one_changed_byte_is_refused_with_the_item_named_and_nothing_written() {
    let h = host();
    let (bk, m) = back_up(&h, "bk");
    let root = m.items.iter().find(|i| i.name == "02-p2").unwrap();
    let file = bk.join(&root.files[0]);
    let mut bytes = std::fs::read(&file).unwrap();
    let at = bytes.len() / 2;
    bytes[at] ^= 0x40;
    std::fs::write(&file, bytes).unwrap();
    let target = h.dir.path("target.img");
    sparse_file(&target, DISK);
    std::fs::OpenOptions::new()
        .write(true)
        .open(&target)
        .unwrap()
        .write_all_at(b"previous contents", 5 * MIB)
        .unwrap();
    let before = sha(&target);
    let e = restore_to(&bk, &target, DISK).unwrap_err();
    assert!(
        matches!(e, BackupError::Damaged { ref item, .. } if item == "02-p2"),
        "{e}"
    );
    assert!(e.to_string().contains("nothing was written"), "{e}");
    assert_eq!(before, sha(&target), "the target changed");
}

#[test]
fn a_backup_goes_only_into_an_empty_directory() {
    let h = host();
    let dir = h.dir.path("used");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("keep"), b"x").unwrap();
    let d = inspect_path(&h.disk).unwrap();
    let e = backup::backup(&mut File::open(&h.disk).unwrap(), &d, &dir, 0, |_, _| {}).unwrap_err();
    assert!(matches!(e, BackupError::NotEmpty(_)), "{e}");
    assert_eq!(std::fs::read_dir(&dir).unwrap().count(), 1);
}

#[test]
fn a_bare_filesystem_is_one_item_of_its_used_blocks() {
    let dir = TempDir::new("backup-bare");
    let img = dir.path("root.fs");
    sparse_file(&img, 32 * MIB);
    let files = dir.path("files");
    std::fs::create_dir_all(&files).unwrap();
    std::fs::write(files.join("a.bin"), noise(2 << 20, 9)).unwrap();
    run(
        "mke2fs",
        &["-q", "-F", "-t", "ext4", "-d", p(&files), p(&img)],
    );
    let d = inspect_path(&img).unwrap();
    let bk = dir.path("bk");
    let m = backup::backup(&mut File::open(&img).unwrap(), &d, &bk, 0, |_, _| {}).unwrap();
    assert_eq!(m.items.len(), 1, "{:?}", m.items);
    assert_eq!(m.items[0].name, "00-whole");
    // What dumpe2fs counts as used, no more.
    let h = run("dumpe2fs", &["-h", p(&img)]);
    let field = |k: &str| -> u64 {
        h.lines()
            .find_map(|l| l.strip_prefix(k))
            .unwrap()
            .trim()
            .parse()
            .unwrap()
    };
    let used = (field("Block count:") - field("Free blocks:")) * field("Block size:");
    assert_eq!(m.items[0].used_bytes, used, "{:?}", m.items[0]);
    let out = dir.path("restored.fs");
    sparse_file(&out, 32 * MIB);
    let mut f = OpenOptions::new()
        .read(true)
        .write(true)
        .open(&out)
        .unwrap();
    backup::restore(&bk, &mut f, 32 * MIB).unwrap();
    run("e2fsck", &["-fn", p(&out)]);
    let got = dir.path("a.out");
    run(
        "debugfs",
        &["-R", &format!("dump /a.bin {}", p(&got)), p(&out)],
    );
    assert_eq!(std::fs::read(&got).unwrap(), noise(2 << 20, 9));
}

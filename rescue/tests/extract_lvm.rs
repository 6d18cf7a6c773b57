//! `rescue extract` on a disk whose SR VG was made by the real pvcreate/vgcreate/lvcreate
//! (on a loop device, no device-mapper): a VM's disk (an MBR and an ext4 made by mke2fs
//! with files in it) in an LV of two segments with another LV between them. The partition
//! extracted from inside the LV checks clean with e2fsck and debugfs reads the files back;
//! the whole LV comes out byte for byte; wrong names are refused with what is there, and
//! nothing is written.

mod inspect_util;

use inspect_util::*;
use rescue::extract::{extract, ExtractError, Request};
use std::collections::BTreeMap;
use std::os::unix::fs::FileExt;
use std::path::Path;

const VG: &str = "VG_XenStorage-extract";

/// Per LV, its segments as (first logical extent, first physical extent, count).
fn segments(dev: &str) -> BTreeMap<String, Vec<(u64, u64, u64)>> {
    let out = lvm_on(
        "lvs",
        dev,
        &[
            "--noheadings",
            "--separator",
            ",",
            "-o",
            "lv_name,seg_start_pe,seg_pe_ranges",
            VG,
        ],
    );
    let mut m: BTreeMap<String, Vec<(u64, u64, u64)>> = BTreeMap::new();
    for l in out.lines() {
        let f: Vec<&str> = l.trim().split(',').collect();
        let (_, pe) = f[2].rsplit_once(':').unwrap();
        let (a, b) = pe.split_once('-').unwrap();
        let (a, b): (u64, u64) = (a.parse().unwrap(), b.parse().unwrap());
        m.entry(f[0].to_owned())
            .or_default()
            .push((f[1].parse().unwrap(), a, b - a + 1));
    }
    m
}

struct Host {
    _dir: TempDir,
    disk: std::path::PathBuf,
    vm: std::path::PathBuf,
    dir: std::path::PathBuf,
}

fn host() -> Host {
    let dir = TempDir::new("extract-lvm");
    let disk = dir.path("disk.img");
    sparse_file(&disk, 48 * MIB);
    run(
        "sgdisk",
        &["-n1:0:+8M", "-t1:8300", "-n2:0:0", "-t2:8e00", p(&disk)],
    );
    let (pv_start, pv_len) = part_range(&disk, 2);

    // The VM's disk: an MBR with one partition at 1 MiB holding an ext4 with files.
    let vm = dir.path("vm.img");
    sparse_file(&vm, 10 * MIB);
    let files = dir.path("files");
    std::fs::create_dir_all(files.join("etc")).unwrap();
    std::fs::write(files.join("hello.txt"), "hello from inside the LV\n").unwrap();
    std::fs::write(files.join("etc/hostname"), "vm-in-sr\n").unwrap();
    let big: Vec<u8> = (0..700_000u32)
        .map(|i| (i.wrapping_mul(2654435761) >> 13) as u8)
        .collect();
    std::fs::write(files.join("big.bin"), &big).unwrap();
    let script = dir.path("sfdisk.txt");
    std::fs::write(&script, "label: dos\nstart=2048, size=16384, type=83\n").unwrap();
    let out = std::process::Command::new("sfdisk")
        .arg(&vm)
        .stdin(std::fs::File::open(&script).unwrap())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
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
            "offset=1048576",
            p(&vm),
            "8M",
        ],
    );

    let segs = {
        let lo = Loop::new(&disk, pv_start, pv_len);
        let d = lo.0.as_str();
        lvm_on("pvcreate", d, &["-ff", "-y", "--norestorefile", d]);
        lvm_on("vgcreate", d, &["-s", "1m", VG, d]);
        inactive_lv(d, VG, "MGT", "4m");
        inactive_lv(d, VG, "LV-vm", "6m");
        inactive_lv(d, VG, "spacer", "2m");
        // The VM's disk grows: its last 4 MiB lie after the spacer.
        lvm_on("lvextend", d, &["-L", "+4m", &format!("{VG}/LV-vm")]);
        let pe_start = pe_start_bytes(d);
        (segments(d), pe_start)
    };
    let (segs, pe_start) = segs;
    let vm_segs = &segs["LV-vm"];
    assert_eq!(vm_segs.len(), 2, "LV-vm should have two segments: {segs:?}");

    // Write the VM's disk where LVM put LV-vm's extents.
    let vm_bytes = std::fs::read(&vm).unwrap();
    let f = std::fs::OpenOptions::new().write(true).open(&disk).unwrap();
    for &(le, pe, count) in vm_segs {
        let from = (le * MIB) as usize;
        let to = ((le + count) * MIB) as usize;
        let at = pv_start + pe_start + pe * MIB;
        f.write_all_at(&vm_bytes[from..to], at).unwrap();
    }
    let dir_path = dir.0.clone();
    Host {
        _dir: dir,
        disk,
        vm,
        dir: dir_path,
    }
}

fn req(h: &Host, lv: &str, partition: Option<u32>, out: &str) -> Request {
    Request {
        disk: h.disk.clone(),
        lv: lv.into(),
        partition,
        out: h.dir.join(out),
    }
}

fn sha(path: &Path) -> String {
    use sha2::{Digest, Sha256};
    format!("{:x}", Sha256::digest(std::fs::read(path).unwrap()))
}

#[test]
fn a_partition_inside_a_two_segment_lv_comes_out_as_a_clean_filesystem() {
    let h = host();
    let before = sha(&h.disk);

    let part = extract(&req(&h, &format!("{VG}/LV-vm"), Some(1), "p1.img")).unwrap();
    assert_eq!(part.what, format!("{VG}/LV-vm/p1"));
    assert_eq!(part.lv_offset, MIB);
    assert_eq!(part.size_bytes, 8 * MIB);
    assert_eq!(part.method, "ext used blocks");
    assert!(part.written_bytes < part.size_bytes, "{part:?}");
    let p1 = h.dir.join("p1.img");
    run("e2fsck", &["-fn", p(&p1)]);
    let hello = run("debugfs", &["-R", "cat /hello.txt", p(&p1)]);
    assert_eq!(hello, "hello from inside the LV\n");
    let big = h.dir.join("big.out");
    run(
        "debugfs",
        &["-R", &format!("dump /big.bin {}", p(&big)), p(&p1)],
    );
    assert_eq!(
        std::fs::read(&big).unwrap(),
        std::fs::read(h.dir.join("files/big.bin")).unwrap()
    );

    // The whole LV (an MBR first, no filesystem at its start): byte for byte.
    let whole = extract(&req(&h, "LV-vm", None, "lv.img")).unwrap();
    assert_eq!(whole.size_bytes, 10 * MIB);
    assert_eq!(whole.method, "whole, zero blocks as holes");
    assert_eq!(sha(&h.dir.join("lv.img")), sha(&h.vm));

    assert_eq!(before, sha(&h.disk), "extract wrote to the disk");
}

#[test]
fn wrong_names_are_refused_with_what_is_there_and_nothing_written() {
    let h = host();
    let e = extract(&req(&h, "LV-nope", None, "x.img")).unwrap_err();
    assert!(matches!(e, ExtractError::NoSuchLv { .. }), "{e}");
    let msg = e.to_string();
    for lv in ["MGT", "LV-vm", "spacer"] {
        assert!(msg.contains(&format!("{VG}/{lv}")), "{msg}");
    }
    let e = extract(&req(&h, "LV-vm", Some(2), "x.img")).unwrap_err();
    assert!(
        e.to_string().contains("has no partition 2") && e.to_string().contains("partitions 1"),
        "{e}"
    );
    let e = extract(&req(&h, "MGT", Some(1), "x.img")).unwrap_err();
    assert!(e.to_string().contains("MGT has no partition 1"), "{e}");
    assert!(!h.dir.join("x.img").exists());

    std::fs::write(h.dir.join("taken.img"), b"keep me").unwrap();
    let e = extract(&req(&h, "LV-vm", Some(1), "taken.img")).unwrap_err();
    assert!(e.to_string().contains("exists"), "{e}");
    assert_eq!(std::fs::read(h.dir.join("taken.img")).unwrap(), b"keep me");
}

//! The ext used-block map against `dumpe2fs` on images made by `mke2fs` with many feature
//! sets and fill levels, and clones checked with `e2fsck -fn` and a file-by-file compare.

mod clone_support;

use clone_support::{pseudo_random, run, sparse_file, try_run, Mount, TempDir};
use rescue::clone::{clone_with, CloneArgs, Kind};
use rescue::formats::ext::{self, ExtError, ExtVersion};
use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};

const MIB: u64 = 1 << 20;

/// One group per dumpe2fs: free count, BLOCK_UNINIT flag, free block ranges (inclusive).
type GroupDump = (u64, bool, Vec<(u64, u64)>);

/// What `dumpe2fs` says about an image.
struct Dump {
    block_count: u64,
    free_blocks: u64,
    block_size: u64,
    groups: Vec<GroupDump>,
}

fn header_field(h: &str, key: &str) -> u64 {
    h.lines()
        .find_map(|l| {
            l.strip_prefix(key)
                .map(|v| v.trim().parse::<u64>().unwrap())
        })
        .unwrap_or_else(|| panic!("dumpe2fs printed no {key:?}"))
}

fn dumpe2fs(img: &Path) -> Dump {
    let img = img.to_str().unwrap();
    let h = run("dumpe2fs", &["-h", img]);
    let full = run("dumpe2fs", &[img]);
    let mut groups: Vec<GroupDump> = Vec::new();
    for l in full.lines() {
        if l.starts_with("Group ") && l.contains(": (Blocks ") {
            groups.push((u64::MAX, l.contains("BLOCK_UNINIT"), Vec::new()));
        } else if let Some(rest) = l.strip_prefix("  Free blocks: ") {
            let g = groups.last_mut().expect("free blocks before a group");
            for r in rest.split(", ").filter(|r| !r.is_empty()) {
                let (a, b) = r.split_once('-').unwrap_or((r, r));
                g.2.push((a.trim().parse().unwrap(), b.trim().parse().unwrap()));
            }
        } else if l.starts_with("  ") && l.contains(" free blocks, ") {
            let n = l.split_whitespace().next().unwrap().parse().unwrap();
            groups.last_mut().expect("free count before a group").0 = n;
        }
    }
    Dump {
        block_count: header_field(&h, "Block count:"),
        free_blocks: header_field(&h, "Free blocks:"),
        block_size: header_field(&h, "Block size:"),
        groups,
    }
}

/// Files of pseudo-random data totalling about `bytes`, in a few directories.
fn populate(dir: &Path, bytes: u64, seed: u64) {
    let sizes = [
        3 * MIB + 123,
        700 << 10,
        5 * MIB,
        64 << 10,
        1,
        0,
        9 * MIB / 2,
    ];
    let mut left = bytes;
    let mut i = 0u64;
    while left > 0 {
        let sub = dir.join(format!("d{}", i % 3));
        std::fs::create_dir_all(&sub).unwrap();
        let n = sizes[(i % sizes.len() as u64) as usize].min(left);
        let mut f = File::create(sub.join(format!("f{i}"))).unwrap();
        f.write_all(&pseudo_random(n as usize, seed + i)).unwrap();
        left -= n;
        i += 1;
    }
}

/// Make an image with `args`, filled to `fill` (0.0..1.0) of its free space.
fn make_image(t: &TempDir, name: &str, args: &[&str], size: u64, fill: f64) -> PathBuf {
    let img = t.path(&format!("{name}.img"));
    sparse_file(&img, size);
    let mk = |extra: &[&str]| {
        let mut a = vec!["-F", "-q"];
        a.extend_from_slice(args);
        a.extend_from_slice(extra);
        a.push(img.to_str().unwrap());
        run("mke2fs", &a);
    };
    mk(&[]);
    if fill > 0.0 {
        let d = dumpe2fs(&img);
        let bytes = (d.free_blocks as f64 * d.block_size as f64 * fill * 0.97) as u64;
        let content = t.path(&format!("{name}.d"));
        populate(&content, bytes, size ^ (fill * 100.0) as u64);
        sparse_file(&img, size);
        mk(&["-d", content.to_str().unwrap()]);
        std::fs::remove_dir_all(&content).unwrap();
    }
    img
}

/// Our map must agree with dumpe2fs: totals, per-group counts and flags, and the exact
/// used ranges (the complement of the free ranges dumpe2fs lists).
fn check_map(img: &Path, version: ExtVersion) -> ext::UsedMap {
    let d = dumpe2fs(img);
    let m = ext::used_map(&mut File::open(img).unwrap()).unwrap();
    let ctx = img.display();
    assert_eq!(m.version, version, "{ctx}");
    assert_eq!(m.superblock.block_size, d.block_size, "{ctx}");
    assert_eq!(
        m.used_blocks,
        d.block_count - d.free_blocks,
        "{ctx}: used blocks"
    );
    assert_eq!(m.groups.len(), d.groups.len(), "{ctx}: group count");
    for (i, (g, (free, uninit, _))) in m.groups.iter().zip(&d.groups).enumerate() {
        assert_eq!(
            g.blocks - g.used_blocks,
            *free,
            "{ctx}: group {i} free blocks"
        );
        assert_eq!(g.desc_free_blocks, *free, "{ctx}: group {i} descriptor");
        assert_eq!(g.block_uninit, *uninit, "{ctx}: group {i} BLOCK_UNINIT");
    }
    let bs = d.block_size;
    let mut used = Vec::new();
    let mut next = 0;
    for &(a, b) in d.groups.iter().flat_map(|g| &g.2) {
        if a > next {
            used.push((next * bs, a * bs));
        }
        next = b + 1;
    }
    if next < d.block_count {
        used.push((next * bs, d.block_count * bs));
    }
    let ours: Vec<(u64, u64)> = m.extents.ranges().iter().map(|(s, e)| (s.0, e.0)).collect();
    assert_eq!(
        ours, used,
        "{ctx}: used ranges differ from dumpe2fs's free lists"
    );
    assert_eq!(m.extents.total().0, m.used_blocks * bs, "{ctx}");
    m
}

/// Clone onto a larger target full of garbage, then fsck it and compare every file.
fn check_clone(t: &TempDir, img: &Path, m: &ext::UsedMap, kind: Kind) {
    let size = std::fs::metadata(img).unwrap().len();
    let dst = t.path("clone.img");
    let mut f = File::create(&dst).unwrap();
    let junk = vec![0x5Au8; MIB as usize];
    for _ in 0..(size / MIB + 8) {
        f.write_all(&junk).unwrap();
    }
    drop(f);
    let args = CloneArgs {
        src: img.to_owned(),
        dst: dst.clone(),
        verify: true,
        ..Default::default()
    };
    let s = clone_with(&args, &mut |_| {}).unwrap();
    let used = m.used_blocks * m.superblock.block_size;
    assert_eq!(s.kind, kind);
    assert!(s.verified);
    assert_eq!(s.used_bytes.0, used);
    assert!(
        s.bytes_moved.0 >= used,
        "moved {} < used {used}",
        s.bytes_moved.0
    );
    assert!(
        s.bytes_moved.0 <= used + used / 20 + 65536,
        "moved {} for {used} used",
        s.bytes_moved.0
    );
    let (src_s, dst_s) = (img.to_str().unwrap(), dst.to_str().unwrap());
    assert_eq!(
        run("dumpe2fs", &["-h", src_s]),
        run("dumpe2fs", &["-h", dst_s])
    );
    let fsck = try_run("e2fsck", &["-fn", dst_s]);
    assert!(
        fsck.status.success(),
        "e2fsck -fn on the clone of {src_s}: {}\n{}",
        String::from_utf8_lossy(&fsck.stdout),
        String::from_utf8_lossy(&fsck.stderr)
    );
    let (a, b) = (t.path("mnt-src"), t.path("mnt-dst"));
    let _ma = Mount::ro(img, &a);
    let _mb = Mount::ro(&dst, &b);
    run(
        "diff",
        &[
            "-r",
            "--no-dereference",
            a.to_str().unwrap(),
            b.to_str().unwrap(),
        ],
    );
    drop((_ma, _mb));
    std::fs::remove_file(&dst).unwrap();
}

/// Returns whether any group was BLOCK_UNINIT, so callers can insist that path ran.
fn check_config(name: &str, args: &[&str], size: u64, version: ExtVersion, kind: Kind) -> bool {
    let t = TempDir::new(&format!("ext-{name}"));
    let mut uninit = false;
    for fill in [0.0, 0.5, 0.9] {
        let img = make_image(&t, name, args, size, fill);
        let m = check_map(&img, version);
        uninit |= m.groups.iter().any(|g| g.block_uninit);
        if fill != 0.5 {
            check_clone(&t, &img, &m, kind.clone());
        }
        std::fs::remove_file(&img).unwrap();
    }
    uninit
}

#[test]
fn ext2_1k_blocks() {
    assert!(!check_config(
        "ext2",
        &["-t", "ext2", "-b", "1024"],
        64 * MIB,
        ExtVersion::Ext2,
        Kind::Ext2
    ));
}

#[test]
fn ext2_without_sparse_super() {
    let a = [
        "-t",
        "ext2",
        "-b",
        "1024",
        "-O",
        "^sparse_super,^resize_inode",
    ];
    assert!(!check_config(
        "ext2-nosparse",
        &a,
        48 * MIB,
        ExtVersion::Ext2,
        Kind::Ext2
    ));
}

#[test]
fn ext3_4k_blocks() {
    let a = ["-t", "ext3", "-b", "4096", "-g", "2048"];
    assert!(!check_config(
        "ext3",
        &a,
        96 * MIB,
        ExtVersion::Ext3,
        Kind::Ext3
    ));
}

#[test]
fn ext4_flex_bg_and_uninit_groups() {
    let a = ["-t", "ext4", "-b", "4096", "-g", "2048"];
    assert!(check_config(
        "ext4",
        &a,
        96 * MIB,
        ExtVersion::Ext4,
        Kind::Ext4
    ));
}

#[test]
fn ext4_default_geometry() {
    check_config(
        "ext4-big",
        &["-t", "ext4"],
        300 * MIB,
        ExtVersion::Ext4,
        Kind::Ext4,
    );
}

#[test]
fn ext4_without_flex_bg() {
    let a = ["-t", "ext4", "-O", "^flex_bg", "-b", "1024"];
    check_config("ext4-noflex", &a, 64 * MIB, ExtVersion::Ext4, Kind::Ext4);
}

#[test]
fn ext4_64bit_descriptors() {
    let a = ["-t", "ext4", "-O", "64bit", "-b", "1024"];
    check_config("ext4-64", &a, 64 * MIB, ExtVersion::Ext4, Kind::Ext4);
}

#[test]
fn ext4_meta_bg() {
    let a = [
        "-t",
        "ext4",
        "-O",
        "meta_bg,^resize_inode",
        "-b",
        "1024",
        "-g",
        "1024",
    ];
    assert!(check_config(
        "ext4-metabg",
        &a,
        80 * MIB,
        ExtVersion::Ext4,
        Kind::Ext4
    ));
}

#[test]
fn ext4_meta_bg_64bit() {
    let a = [
        "-t",
        "ext4",
        "-O",
        "meta_bg,^resize_inode,64bit",
        "-b",
        "1024",
        "-g",
        "512",
    ];
    check_config("ext4-metabg64", &a, 48 * MIB, ExtVersion::Ext4, Kind::Ext4);
}

#[test]
fn ext4_without_group_checksums() {
    let a = [
        "-t",
        "ext4",
        "-O",
        "^uninit_bg,^metadata_csum",
        "-b",
        "4096",
        "-g",
        "2048",
    ];
    assert!(!check_config(
        "ext4-nocsum",
        &a,
        96 * MIB,
        ExtVersion::Ext4,
        Kind::Ext4
    ));
}

#[test]
fn ext4_uninit_bg_without_metadata_csum() {
    let a = ["-t", "ext4", "-O", "uninit_bg,^metadata_csum", "-b", "1024"];
    assert!(check_config(
        "ext4-uninitbg",
        &a,
        64 * MIB,
        ExtVersion::Ext4,
        Kind::Ext4
    ));
}

#[test]
fn ext4_sparse_super2() {
    let a = [
        "-t",
        "ext4",
        "-O",
        "sparse_super2",
        "-E",
        "num_backup_sb=2",
        "-b",
        "1024",
    ];
    check_config("ext4-ss2", &a, 64 * MIB, ExtVersion::Ext4, Kind::Ext4);
}

#[test]
fn bigalloc_is_refused_with_advice() {
    let t = TempDir::new("ext-bigalloc");
    let img = t.path("b.img");
    sparse_file(&img, 64 * MIB);
    run(
        "mke2fs",
        &[
            "-F",
            "-q",
            "-t",
            "ext4",
            "-O",
            "bigalloc",
            "-b",
            "4096",
            "-C",
            "16384",
            img.to_str().unwrap(),
        ],
    );
    let err = ext::used_map(&mut File::open(&img).unwrap()).unwrap_err();
    assert!(matches!(err, ExtError::Bigalloc(4)), "{err:?}");
    let msg = err.to_string();
    assert!(msg.contains("bigalloc") && msg.contains("--raw"), "{msg}");
    let dst = t.path("d.img");
    sparse_file(&dst, 64 * MIB);
    let args = CloneArgs {
        src: img.clone(),
        dst: dst.clone(),
        ..Default::default()
    };
    let e = clone_with(&args, &mut |_| {}).unwrap_err().to_string();
    assert!(e.contains("bigalloc"), "{e}");
    // Nothing was written to the target.
    assert!(std::fs::read(&dst).unwrap().iter().all(|&b| b == 0));
}

#[test]
fn target_smaller_than_source_is_refused_before_writing() {
    let t = TempDir::new("ext-small");
    let img = make_image(&t, "s", &["-t", "ext4"], 32 * MIB, 0.0);
    let dst = t.path("d.img");
    sparse_file(&dst, 32 * MIB - 4096);
    let args = CloneArgs {
        src: img,
        dst: dst.clone(),
        ..Default::default()
    };
    let e = clone_with(&args, &mut |_| {}).unwrap_err().to_string();
    assert!(
        e.contains("at least as large") && e.contains("nothing was written"),
        "{e}"
    );
    assert!(std::fs::read(&dst).unwrap().iter().all(|&b| b == 0));
}

/// A crashed host's filesystem: a committed transaction still in the journal (written by
/// debugfs' journal commands, as the kernel leaves one at a power cut). The superblock
/// says it needs recovery; the whole-partition copy that convert makes of it, replayed by
/// e2fsck, holds the journaled block and checks clean, and the source is byte-identical.
#[test]
fn a_crashed_filesystem_is_copied_whole_and_replayed_on_the_copy() {
    let t = TempDir::new("ext-crashed");
    let img = t.path("crashed.img");
    sparse_file(&img, 64 * MIB);
    let img_s = img.to_str().unwrap();
    run("mke2fs", &["-q", "-F", "-t", "ext3", "-b", "4096", img_s]);
    let before = t.path("before.txt");
    std::fs::write(&before, vec![b'a'; 4096]).unwrap();
    run(
        "debugfs",
        &[
            "-w",
            "-R",
            &format!("write {} data.txt", before.display()),
            img_s,
        ],
    );
    let block: u64 = run("debugfs", &["-R", "bmap data.txt 0", img_s])
        .trim()
        .parse()
        .unwrap();
    let after = t.path("after.txt");
    std::fs::write(&after, vec![b'z'; 4096]).unwrap();
    // One transaction rewriting the file's block, committed, never checkpointed.
    let script = t.path("jw.cmd");
    std::fs::write(
        &script,
        format!("jo\njw -b {block} {}\njc\n", after.display()),
    )
    .unwrap();
    run("debugfs", &["-w", "-f", script.to_str().unwrap(), img_s]);

    let sb = ext::Superblock::read(&mut File::open(&img).unwrap()).unwrap();
    assert!(sb.needs_recovery(), "debugfs left no journal to recover");
    let src_sum = run("sha256sum", &[img_s]);
    let cat = |p: &Path| run("debugfs", &["-R", "cat data.txt", p.to_str().unwrap()]);
    assert!(
        cat(&img).starts_with('a'),
        "the source's block changed before any replay"
    );

    let copy = t.path("copy.img");
    sparse_file(&copy, 64 * MIB);
    let args = CloneArgs {
        src: img.clone(),
        dst: copy.clone(),
        verify: true,
        raw: true,
        ..Default::default()
    };
    let s = clone_with(&args, &mut |_| {}).unwrap();
    assert!(s.verified);
    assert_eq!(s.bytes_moved.0, 64 * MIB, "not a whole-partition copy");
    let copy_s = copy.to_str().unwrap();
    let code = try_run("e2fsck", &["-fy", copy_s]).status.code().unwrap();
    assert!(code <= 2, "e2fsck -fy on the copy exited with {code}");
    let fsck = try_run("e2fsck", &["-fn", copy_s]);
    assert!(
        fsck.status.success(),
        "the replayed copy does not check clean"
    );
    assert!(!ext::Superblock::read(&mut File::open(&copy).unwrap())
        .unwrap()
        .needs_recovery());
    assert!(
        cat(&copy).starts_with('z'),
        "the journaled block was not replayed on the copy"
    );
    assert_eq!(
        run("sha256sum", &[img_s]),
        src_sum,
        "the source was written"
    );
}

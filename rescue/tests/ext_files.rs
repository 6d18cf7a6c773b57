//! Reading files by path from ext images made by the real `mke2fs -d`: every file's bytes
//! against the tree it was made from, on ext2 with 1 KiB blocks (direct, indirect and
//! double-indirect block maps), ext3, ext4 (an extent tree deeper than the inode holds),
//! and a directory of 3000 entries both linear and indexed (`e2fsck -D` makes the htree).

mod clone_support;

use clone_support::{pseudo_random, run, sparse_file, TempDir};
use rescue::formats::ext::read_file;
use std::fs::{self, File};
use std::io::{Seek, SeekFrom, Write};
use std::path::Path;

/// A host-like tree: `/etc/xensource-inventory`, files around the block-map boundaries,
/// a sparse file with many extents, a directory with 3000 entries.
fn tree(dir: &Path) -> Vec<(String, Vec<u8>)> {
    let mut files = vec![(
        "etc/xensource-inventory".to_string(),
        b"PRIMARY_DISK='/dev/disk/by-id/ata-X'\nINSTALLATION_UUID='abc'\n".to_vec(),
    )];
    // 1 KiB blocks: 12 direct, 256 single-indirect, then double-indirect.
    for (name, len) in [
        ("small", 5usize),
        ("direct", 12 * 1024),
        ("indirect", 200 * 1024),
        ("double", 600 * 1024),
    ] {
        files.push((format!("data/{name}"), pseudo_random(len, len as u64)));
    }
    for (path, data) in &files {
        let p = dir.join(path);
        fs::create_dir_all(p.parent().unwrap()).unwrap();
        fs::write(p, data).unwrap();
    }
    // Holes between 4 KiB pieces: one extent per piece, more than the inode's four.
    let sparse = dir.join("data/sparse");
    let mut f = File::create(&sparse).unwrap();
    let mut want = vec![0u8; 40 * 65536];
    for i in 0..40u64 {
        let piece = pseudo_random(4096, 1000 + i);
        f.seek(SeekFrom::Start(i * 65536)).unwrap();
        f.write_all(&piece).unwrap();
        want[(i * 65536) as usize..(i * 65536) as usize + 4096].copy_from_slice(&piece);
    }
    f.set_len(40 * 65536).unwrap();
    files.push(("data/sparse".into(), want));
    let many = dir.join("many");
    fs::create_dir_all(&many).unwrap();
    for i in 0..3000 {
        fs::write(many.join(format!("entry-{i:05}")), format!("{i}\n")).unwrap();
    }
    files.push(("many/entry-02999".into(), b"2999\n".to_vec()));
    files.push(("many/entry-00000".into(), b"0\n".to_vec()));
    files
}

fn check(name: &str, mke2fs: &[&str], htree: bool) {
    let t = TempDir::new(&format!("ext-files-{name}"));
    let root = t.path("root");
    let files = tree(&root);
    let img = t.path("fs.img");
    sparse_file(&img, 64 << 20);
    let mut args = vec!["-q", "-F"];
    args.extend_from_slice(mke2fs);
    let root_s = root.to_str().unwrap();
    let img_s = img.to_str().unwrap();
    args.extend_from_slice(&["-d", root_s, img_s]);
    run("mke2fs", &args);
    if htree {
        // Index the big directory; exit 1 means "changed", as asked.
        let st = std::process::Command::new("e2fsck")
            .args(["-fyD", img_s])
            .output()
            .unwrap();
        assert!(
            st.status.code().is_some_and(|c| c <= 1),
            "e2fsck -D: {st:?}"
        );
        let dump = run("debugfs", &["-R", "htree /many", img_s]);
        assert!(dump.contains("Root node dump"), "no htree on /many: {dump}");
    }
    let mut f = File::open(&img).unwrap();
    for (path, data) in &files {
        let got = read_file(&mut f, &format!("/{path}"), 16 << 20)
            .unwrap_or_else(|e| panic!("{name}: /{path}: {e}"))
            .unwrap_or_else(|| panic!("{name}: /{path} not found"));
        assert!(
            got == *data,
            "{name}: /{path}: {} bytes read, {} written",
            got.len(),
            data.len()
        );
    }
    assert_eq!(read_file(&mut f, "/etc/missing", 1 << 20).unwrap(), None);
    assert_eq!(
        read_file(&mut f, "/nope/xensource-inventory", 1 << 20).unwrap(),
        None
    );
    // A file through a file, a directory read as a file, a file over the limit: errors.
    assert!(read_file(&mut f, "/etc/xensource-inventory/x", 1 << 20).is_err());
    assert!(read_file(&mut f, "/etc", 1 << 20).is_err());
    assert!(read_file(&mut f, "/data/double", 1024).is_err());
}

#[test]
fn ext2_with_1k_blocks_reads_through_block_maps() {
    check("ext2-1k", &["-t", "ext2", "-b", "1024"], false);
}

#[test]
fn ext3_reads_through_block_maps() {
    check("ext3", &["-t", "ext3"], true);
}

#[test]
fn ext4_reads_through_extent_trees() {
    check("ext4", &["-t", "ext4"], true);
}

#[test]
fn ext4_64bit_with_1k_blocks() {
    check(
        "ext4-64bit",
        &["-t", "ext4", "-O", "64bit", "-b", "1024"],
        false,
    );
}

/// Garbage where the filesystem's metadata should be: an error or `None`, never a panic.
#[test]
fn corrupt_images_give_errors_not_panics() {
    let t = TempDir::new("ext-files-corrupt");
    let root = t.path("root");
    tree(&root);
    let img = t.path("fs.img");
    sparse_file(&img, 16 << 20);
    let root_s = root.to_str().unwrap();
    run(
        "mke2fs",
        &[
            "-q",
            "-F",
            "-t",
            "ext4",
            "-d",
            root_s,
            img.to_str().unwrap(),
            "16M",
        ],
    );
    let clean = fs::read(&img).unwrap();
    for seed in 0..200u64 {
        let mut bytes = clean.clone();
        let noise = pseudo_random(64, seed);
        // Hit the metadata area (descriptors, bitmaps, inode tables, directories).
        let at = 4096 + (seed * 7919 % (2 << 20)) as usize;
        bytes[at..at + 64].copy_from_slice(&noise);
        let mut c = std::io::Cursor::new(bytes);
        let _ = read_file(&mut c, "/etc/xensource-inventory", 1 << 20);
        let _ = read_file(&mut c, "/many/entry-01234", 1 << 20);
        let _ = read_file(&mut c, "/data/sparse", 16 << 20);
    }
}

/// Without the filetype feature a directory entry's name length is 16 bits.
#[test]
fn ext2_without_filetype() {
    check("ext2-nofiletype", &["-t", "ext2", "-O", "^filetype"], false);
}

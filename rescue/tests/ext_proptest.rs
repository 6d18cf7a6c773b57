//! Corrupted ext superblocks, group descriptors and bitmaps give an error or a sane map,
//! never a panic. The starting image is a real `mke2fs` one.

mod clone_support;

use clone_support::{run, sparse_file, TempDir};
use proptest::prelude::*;
use rescue::formats::ext;
use std::io::Cursor;
use std::sync::OnceLock;

fn image(features: &str) -> Vec<u8> {
    let t = TempDir::new("ext-prop");
    let p = t.path("e.img");
    sparse_file(&p, 4 << 20);
    run(
        "mke2fs",
        &[
            "-F",
            "-q",
            "-t",
            "ext4",
            "-b",
            "1024",
            "-g",
            "512",
            "-N",
            "64",
            "-O",
            features,
            p.to_str().unwrap(),
        ],
    );
    std::fs::read(&p).unwrap()
}

fn images() -> &'static [Vec<u8>; 2] {
    static IMGS: OnceLock<[Vec<u8>; 2]> = OnceLock::new();
    IMGS.get_or_init(|| [image("64bit"), image("meta_bg,^resize_inode")])
}

fn check(img: &[u8]) {
    if let Ok(m) = ext::used_map(&mut Cursor::new(img)) {
        assert!(m.extents.end().0 <= img.len() as u64);
        assert_eq!(m.extents.total().0, m.used_blocks * m.superblock.block_size);
        assert!(m.used_blocks <= m.superblock.blocks_count);
    }
}

#[test]
fn the_pristine_images_parse() {
    for img in images() {
        let m = ext::used_map(&mut Cursor::new(img)).unwrap();
        assert_eq!(
            m.used_blocks,
            m.superblock.blocks_count - m.superblock.free_blocks_count
        );
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(400))]

    #[test]
    fn corrupt_superblock(which in 0..2usize, edits in prop::collection::vec((1024usize..2048, any::<u8>()), 1..12)) {
        let mut img = images()[which].clone();
        for (at, v) in edits { img[at] = v; }
        check(&img);
    }

    #[test]
    fn corrupt_descriptors_and_bitmaps(which in 0..2usize, edits in prop::collection::vec((2048usize..64 * 1024, any::<u8>()), 1..32)) {
        let mut img = images()[which].clone();
        for (at, v) in edits { img[at] = v; }
        check(&img);
    }

    #[test]
    fn truncated(which in 0..2usize, len in 0usize..(4 << 20)) {
        check(&images()[which][..len]);
    }

    #[test]
    fn random_bytes_behind_a_valid_magic(mut b in prop::collection::vec(any::<u8>(), 2048..16384)) {
        b[1080] = 0x53;
        b[1081] = 0xEF;
        check(&b);
    }
}

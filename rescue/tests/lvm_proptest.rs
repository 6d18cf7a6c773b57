//! Synthetic PVs built here byte by byte (checksums included): metadata wrapping around the
//! ring, two metadata areas that disagree, and corrupted labels and metadata giving an
//! error or a sane plan, never a panic.

use proptest::prelude::*;
use rescue::formats::lvm::{self, crc, LvmError};
use std::io::Cursor;

const UUID: &str = "5JpAuBEu4RZG2rx93IY4Wofe0EYdJJ0k";
const DEV: u64 = 64 << 20;
const PE_START: u64 = 2 << 20;

fn text(seqno: u64, stripes: &str) -> String {
    format!(
        "vgx {{\nid = \"x\"\nseqno = {seqno}\nextent_size = 8192\nphysical_volumes {{\npv0 {{\n\
         id = \"5JpAuB-Eu4R-ZG2r-x93I-Y4Wo-fe0E-YdJJ0k\"\npe_start = 4096\npe_count = 15\n}}\n}}\n\
         logical_volumes {{\nlv {{\nsegment1 {{\nstart_extent = 0\nextent_count = 2\n\
         type = \"striped\"\nstripes = [{stripes}]\n}}\n}}\n}}\n}}\ncontents = \"Text Format Volume Group\"\n"
    )
}

/// One metadata area: where it is, its size, the text and where in the ring it starts.
struct Mda<'a> {
    at: u64,
    size: u64,
    text: &'a str,
    ring_offset: u64,
}

fn put64(b: &mut [u8], o: usize, v: u64) {
    b[o..o + 8].copy_from_slice(&v.to_le_bytes());
}
fn put32(b: &mut [u8], o: usize, v: u32) {
    b[o..o + 4].copy_from_slice(&v.to_le_bytes());
}

fn build(mdas: &[Mda<'_>]) -> Vec<u8> {
    let mut img = vec![0u8; DEV as usize];
    let l = 512;
    img[l..l + 8].copy_from_slice(b"LABELONE");
    put64(&mut img, l + 8, 1);
    put32(&mut img, l + 20, 32);
    img[l + 24..l + 32].copy_from_slice(b"LVM2 001");
    let h = l + 32;
    img[h..h + 32].copy_from_slice(UUID.as_bytes());
    put64(&mut img, h + 32, DEV);
    let mut p = h + 40;
    put64(&mut img, p, PE_START);
    p += 32; // data area, then its terminator
    for m in mdas {
        put64(&mut img, p, m.at);
        put64(&mut img, p + 8, m.size);
        p += 16;
    }
    p += 16;
    put32(&mut img, p, 2);
    put32(&mut img, p + 4, 1);
    let c = crc(0xf597_a6cf, &img[l + 20..l + 512]);
    put32(&mut img, l + 16, c);
    for m in mdas {
        let a = m.at as usize;
        let mut t = m.text.as_bytes().to_vec();
        t.push(0);
        img[a + 4..a + 20].copy_from_slice(lvm::MDA_MAGIC);
        put32(&mut img, a + 20, 1);
        put64(&mut img, a + 24, m.at);
        put64(&mut img, a + 32, m.size);
        put64(&mut img, a + 40, m.ring_offset);
        put64(&mut img, a + 48, t.len() as u64);
        put32(&mut img, a + 56, crc(0xf597_a6cf, &t));
        let c = crc(0xf597_a6cf, &img[a + 4..a + 512]);
        put32(&mut img, a, c);
        for (i, &byte) in t.iter().enumerate() {
            let mut o = m.ring_offset + i as u64;
            if o >= m.size {
                o = o - m.size + 512;
            }
            img[a + o as usize] = byte;
        }
    }
    img
}

#[test]
fn wrapped_metadata_is_joined() {
    let t = text(9, "\"pv0\", 3");
    let size = 1 << 20;
    let img = build(&[Mda {
        at: 4096,
        size,
        text: &t,
        ring_offset: size - 100,
    }]);
    let mut c = Cursor::new(img);
    let label = lvm::PvLabel::read(&mut c).unwrap();
    assert_eq!(label.pv_uuid, UUID);
    let m = lvm::read_metadata_area(&mut c, label.metadata_areas[0]).unwrap();
    assert!(m.wrapped);
    assert_eq!(m.text.as_deref(), Some(t.as_str()));
    let plan = lvm::plan(&mut c).unwrap();
    assert_eq!(plan.vg.unwrap().seqno, 9);
    let r: Vec<(u64, u64)> = plan
        .extents
        .ranges()
        .iter()
        .map(|(s, e)| (s.0, e.0))
        .collect();
    assert_eq!(
        r,
        vec![
            (0, 2048),
            (4096, 4096 + size),
            (PE_START + 3 * (4 << 20), PE_START + 5 * (4 << 20))
        ]
    );
}

#[test]
fn the_area_with_the_highest_seqno_wins() {
    let (old, new) = (text(4, "\"pv0\", 0"), text(5, "\"pv0\", 7"));
    for order in [[&old, &new], [&new, &old]] {
        let img = build(&[
            Mda {
                at: 4096,
                size: 1 << 20,
                text: order[0],
                ring_offset: 512,
            },
            Mda {
                at: DEV - (1 << 20),
                size: 1 << 20,
                text: order[1],
                ring_offset: 4096,
            },
        ]);
        let plan = lvm::plan(&mut Cursor::new(img)).unwrap();
        let vg = plan.vg.unwrap();
        assert_eq!(vg.seqno, 5);
        assert_eq!(vg.allocated_extents().unwrap()["pv0"], vec![(7, 9)]);
    }
}

#[test]
fn unsupported_segments_fall_back_to_the_whole_pv() {
    let t = text(3, "\"pv0\", 0").replace("\"striped\"", "\"thin-pool\"");
    let img = build(&[Mda {
        at: 4096,
        size: 1 << 20,
        text: &t,
        ring_offset: 512,
    }]);
    let plan = lvm::plan(&mut Cursor::new(img)).unwrap();
    assert_eq!(plan.extents.total().0, DEV);
    assert!(plan.whole_reason.unwrap().contains("thin-pool"));
}

#[test]
fn a_bad_label_checksum_is_an_error() {
    let t = text(3, "\"pv0\", 0");
    let mut img = build(&[Mda {
        at: 4096,
        size: 1 << 20,
        text: &t,
        ring_offset: 512,
    }]);
    img[600] ^= 1;
    let e = lvm::plan(&mut Cursor::new(img)).unwrap_err();
    assert!(matches!(e, LvmError::Corrupt(_)), "{e:?}");
    assert!(e.to_string().contains("checksum"), "{e}");
}

fn check(img: Vec<u8>) {
    let len = img.len() as u64;
    if let Ok(p) = lvm::plan(&mut Cursor::new(img)) {
        assert!(p.extents.end().0 <= len);
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]

    #[test]
    fn corrupt_label_and_header_bytes(edits in prop::collection::vec((0usize..8192, any::<u8>()), 1..16)) {
        let t = text(3, "\"pv0\", 0");
        let mut img = build(&[Mda { at: 4096, size: 1 << 20, text: &t, ring_offset: 512 }]);
        for (at, v) in edits { img[at] = v; }
        check(img);
    }

    /// Text edits with valid checksums reach the parser itself.
    #[test]
    fn corrupt_metadata_text(edits in prop::collection::vec((0usize..400, any::<u8>()), 1..8), ring in 512u64..(1 << 20)) {
        let mut t = text(3, "\"pv0\", 0, \"pv0\", 9").into_bytes();
        for (at, v) in edits { let n = t.len(); t[at % n] = v; }
        let t = String::from_utf8_lossy(&t).into_owned();
        check(build(&[Mda { at: 4096, size: 1 << 20, text: &t, ring_offset: ring }]));
    }

    #[test]
    fn arbitrary_text_never_panics_the_parser(s in ".{0,300}") {
        let _ = lvm::parse_text(&s);
    }
}

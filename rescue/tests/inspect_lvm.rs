//! Inspect inside LVM on a disk built here byte by byte (MBR, PV label, metadata with
//! checksums, LV contents): each LV's segments and disk offsets, a partition table inside
//! a two-segment LV with each partition's offset in the LV and on the disk, a VHD, swap
//! directly on an LV, an LV partly on another PV, an unmapped segment type; then corrupted
//! labels, metadata, LV contents and segment numbers never make inspect, the LV map or the
//! report panic.

use proptest::prelude::*;
use rescue::formats::lvm::{self, crc, Lv, LvReader, Pv, Segment, Vg};
use rescue::formats::vhd;
use rescue::inspect::{inspect, Content, Disk, LvContent, VolumeGroup};
use rescue::report::Report;
use rescue::units::{Bytes, Sectors};
use std::io::{Cursor, Read};

const MIB: u64 = 1 << 20;
const DISK: u64 = 16 * MIB;
/// The PV is MBR partition 1, from 1 MiB to the disk's end.
const PV: u64 = MIB;
const MDA: u64 = 4096;
const MDA_SIZE: u64 = MIB - MDA;
/// Extents are 1 MiB and start 1 MiB into the PV.
const EXT: u64 = MIB;
const PE0: u64 = PV + MIB;
const UUID: &str = "5JpAuBEu4RZG2rx93IY4Wofe0EYdJJ0k";

const TEXT: &str = r#"vgtest {
id = "VGID00-0000-0000-0000-0000-0000-000000"
seqno = 3
format = "lvm2"
extent_size = 2048
physical_volumes {
pv0 {
id = "5JpAuB-Eu4R-ZG2r-x93I-Y4Wo-fe0E-YdJJ0k"
device = "/dev/sda1"
pe_start = 2048
pe_count = 14
}
pv1 {
id = "otherp-v000-0000-0000-0000-0000-000000"
pe_start = 2048
pe_count = 10
}
}
logical_volumes {
LV-disk {
id = "lvdisk"
segment1 { start_extent = 0 extent_count = 1 type = "striped" stripe_count = 1 stripes = ["pv0", 0] }
segment2 { start_extent = 1 extent_count = 3 type = "striped" stripe_count = 1 stripes = ["pv0", 5] }
}
VHD-x {
id = "vhdx"
segment1 { start_extent = 0 extent_count = 1 type = "striped" stripes = ["pv0", 1] }
}
direct {
id = "direct"
segment1 { start_extent = 0 extent_count = 1 type = "striped" stripes = ["pv0", 2] }
}
empty {
id = "empty"
segment1 { start_extent = 0 extent_count = 1 type = "striped" stripes = ["pv0", 3] }
}
spans {
id = "spans"
segment1 { start_extent = 0 extent_count = 1 type = "striped" stripes = ["pv0", 4] }
segment2 { start_extent = 1 extent_count = 1 type = "striped" stripes = ["pv1", 0] }
}
thin {
id = "thin"
segment1 { start_extent = 0 extent_count = 1 type = "thin" thin_pool = "pool" }
}
}
}
contents = "Text Format Volume Group"
"#;

fn put(b: &mut [u8], at: u64, v: &[u8]) {
    b[at as usize..at as usize + v.len()].copy_from_slice(v);
}

/// An MBR entry `slot` in the sector at `base`.
fn mbr_entry(b: &mut [u8], base: u64, slot: u64, ty: u8, start: u32, count: u32) {
    let o = base + 446 + 16 * slot;
    put(b, o + 4, &[ty]);
    put(b, o + 8, &start.to_le_bytes());
    put(b, o + 12, &count.to_le_bytes());
    put(b, base + 510, &[0x55, 0xAA]);
}

fn swap_at(b: &mut [u8], at: u64, label: &str) {
    put(b, at + 1024, &1u32.to_le_bytes());
    put(b, at + 1028, &255u32.to_le_bytes());
    put(b, at + 1036, &[0x42; 16]);
    put(b, at + 1052, label.as_bytes());
    put(b, at + 4086, b"SWAPSPACE2");
}

/// A dynamic VHD's first 1536 bytes: the footer copy and the header.
fn vhd_start(b: &mut [u8], at: u64, virtual_size: u64) {
    let mut f = [0u8; 512];
    f[0..8].copy_from_slice(vhd::FOOTER_COOKIE);
    f[16..24].copy_from_slice(&512u64.to_be_bytes());
    f[48..56].copy_from_slice(&virtual_size.to_be_bytes());
    f[60..64].copy_from_slice(&vhd::TYPE_DYNAMIC.to_be_bytes());
    f[68..84].copy_from_slice(&[0x0b; 16]);
    let c = vhd::checksum(&f, 64);
    f[64..68].copy_from_slice(&c.to_be_bytes());
    put(b, at, &f);
    let mut h = [0u8; 1024];
    h[0..8].copy_from_slice(vhd::HEADER_COOKIE);
    h[8..16].copy_from_slice(&u64::MAX.to_be_bytes());
    h[16..24].copy_from_slice(&1536u64.to_be_bytes());
    h[28..32].copy_from_slice(&64u32.to_be_bytes());
    h[32..36].copy_from_slice(&(2u32 << 20).to_be_bytes());
    let c = vhd::checksum(&h, 36);
    h[36..40].copy_from_slice(&c.to_be_bytes());
    put(b, at + 512, &h);
}

/// Label, PV header and metadata area (its header's checksums over `text`).
fn pv_metadata(b: &mut [u8], text: &[u8]) {
    let l = PV + 512;
    put(b, l, b"LABELONE");
    put(b, l + 8, &1u64.to_le_bytes());
    put(b, l + 20, &32u32.to_le_bytes());
    put(b, l + 24, b"LVM2 001");
    let h = l + 32;
    put(b, h, UUID.as_bytes());
    put(b, h + 32, &(DISK - PV).to_le_bytes());
    put(b, h + 40, &MIB.to_le_bytes()); // data area at pe_start, to the end
    put(b, h + 72, &MDA.to_le_bytes());
    put(b, h + 80, &MDA_SIZE.to_le_bytes());
    let c = crc(0xf597_a6cf, &b[l as usize + 20..l as usize + 512]);
    put(b, l + 16, &c.to_le_bytes());
    let a = PV + MDA;
    let mut t = text.to_vec();
    t.push(0);
    put(b, a + 4, lvm::MDA_MAGIC);
    put(b, a + 20, &1u32.to_le_bytes());
    put(b, a + 24, &MDA.to_le_bytes());
    put(b, a + 32, &MDA_SIZE.to_le_bytes());
    put(b, a + 40, &512u64.to_le_bytes());
    put(b, a + 48, &(t.len() as u64).to_le_bytes());
    put(b, a + 56, &crc(0xf597_a6cf, &t).to_le_bytes());
    let c = crc(0xf597_a6cf, &b[a as usize + 4..a as usize + 512]);
    put(b, a, &c.to_le_bytes());
    put(b, a + 512, &t);
}

fn disk_with(text: &[u8]) -> Vec<u8> {
    let mut b = vec![0u8; DISK as usize];
    mbr_entry(
        &mut b,
        0,
        0,
        0x8e,
        (PV / 512) as u32,
        ((DISK - PV) / 512) as u32,
    );
    pv_metadata(&mut b, text);
    // LV-disk: LE 0 on PE 0, LE 1..3 on PE 5..7. Its MBR: p1 inside LE 0, p2 across
    // LE 0 and LE 1 (two runs on the disk), p3 inside LE 1..2 holding swap.
    let lv = PE0;
    mbr_entry(&mut b, lv, 0, 0x83, 512, 512);
    mbr_entry(&mut b, lv, 1, 0x83, 1536, 1024);
    mbr_entry(&mut b, lv, 2, 0x82, 3072, 3072);
    swap_at(&mut b, PE0 + 5 * EXT + MIB / 2, "vm-swap");
    vhd_start(&mut b, PE0 + EXT, 8 << 30);
    swap_at(&mut b, PE0 + 2 * EXT, "direct-swap");
    b
}

fn inspect_bytes(img: Vec<u8>) -> Result<Disk, rescue::inspect::InspectError> {
    inspect(&mut Cursor::new(img), "t.img", "t.img", Bytes(DISK), 512)
}

fn vg_of(d: &Disk) -> Option<&VolumeGroup> {
    match d.partitions.first()?.content.as_ref()? {
        Content::LvmPv { vg, .. } => vg.as_deref(),
        _ => None,
    }
}

#[test]
fn lvs_their_segments_and_what_they_hold() {
    let d = inspect_bytes(disk_with(TEXT.as_bytes())).unwrap();
    let Some(Content::LvmPv { problems, .. }) = &d.partitions[0].content else {
        panic!("no PV: {d:#?}");
    };
    assert!(problems.is_empty(), "{problems:?}");
    let vg = vg_of(&d).unwrap();
    assert_eq!(
        (
            vg.name.as_str(),
            vg.seqno,
            vg.extent_size_bytes,
            vg.pv_count
        ),
        ("vgtest", 3, EXT, 2)
    );
    assert_eq!(
        (vg.pv_name.as_deref(), vg.pe_start_offset),
        (Some("pv0"), Some(PE0))
    );
    let names: Vec<&str> = vg.lvs.iter().map(|l| l.name.as_str()).collect();
    assert_eq!(
        names,
        ["LV-disk", "VHD-x", "direct", "empty", "spans", "thin"]
    );
    let lv = |n: &str| vg.lvs.iter().find(|l| l.name == n).unwrap();

    let disk_lv = lv("LV-disk");
    assert_eq!(disk_lv.size_bytes, 4 * EXT);
    let stripes: Vec<_> = disk_lv
        .segments
        .iter()
        .flat_map(|s| &s.stripes)
        .map(|s| (s.pv.as_str(), s.first_pe, s.pe_count, s.disk_offset))
        .collect();
    assert_eq!(
        stripes,
        [("pv0", 0, 1, Some(PE0)), ("pv0", 5, 3, Some(PE0 + 5 * EXT))]
    );
    let LvContent::PartitionTable {
        table, partitions, ..
    } = &disk_lv.content
    else {
        panic!("LV-disk: {:?}", disk_lv.content);
    };
    assert_eq!(table, "mbr");
    let parts: Vec<_> = partitions
        .iter()
        .map(|p| (p.number, p.lv_offset, p.disk_offset, p.fs_type.as_deref()))
        .collect();
    assert_eq!(
        parts,
        [
            (1, 256 << 10, Some(PE0 + (256 << 10)), None),
            // Starts in LE 0 (PE 0) and ends in LE 1 (PE 5): no single disk offset.
            (2, 768 << 10, None, None),
            (3, 1536 << 10, Some(PE0 + 5 * EXT + MIB / 2), Some("swap")),
        ]
    );
    assert_eq!(partitions[2].label.as_deref(), Some("vm-swap"));

    let LvContent::Vhd(v) = &lv("VHD-x").content else {
        panic!("VHD-x: {:?}", lv("VHD-x").content);
    };
    assert_eq!(
        (v.disk_type.as_str(), v.virtual_size_bytes, v.block_size),
        ("dynamic", 8 << 30, Some(2 << 20))
    );
    assert!(v.checksums_ok);
    assert!(matches!(
        &lv("direct").content,
        LvContent::Filesystem { content: Content::Swap { label: Some(l), .. } } if l == "direct-swap"
    ));
    assert_eq!(lv("empty").content, LvContent::Unknown);
    assert!(lv("empty").problems.is_empty());
    let spans = lv("spans");
    assert_eq!(spans.segments[1].stripes[0].disk_offset, None);
    assert!(spans.problems[0].contains("another PV"), "{spans:?}");
    let thin = lv("thin");
    assert_eq!(thin.content, LvContent::Unknown);
    assert!(thin.segments[0].stripes.is_empty());
    assert!(thin.problems[0].contains("thin"), "{thin:?}");

    let lines = Report {
        disks: vec![d.clone()],
        ..Default::default()
    }
    .human_lines();
    let has = |s: &str| lines.iter().any(|l| l.contains(s));
    assert!(
        has("VG vgtest: 6 LVs, 1.0 MiB extents, this PV is pv0 (2 in the VG), first extent at byte 2097152"),
        "{lines:#?}"
    );
    assert!(
        has("LV LV-disk 4.0 MiB [pv0:0-0 @2097152 pv0:5-7 @7340032]: MBR table, 3 partitions"),
        "{lines:#?}"
    );
    assert!(
        has(
            "3: start 3072 size 1.5 MiB swap label vm-swap: LV offset 1572864, disk offset 7864320"
        ),
        "{lines:#?}"
    );
    assert!(
        has("2: start 1536 size 512.0 KiB -: LV offset 786432, not one run on this disk"),
        "{lines:#?}"
    );
    assert!(
        has("LV VHD-x 1.0 MiB [pv0:1-1 @3145728]: VHD dynamic, virtual size 8.0 GiB"),
        "{lines:#?}"
    );
    assert!(
        has("LV thin 1.0 MiB [thin segment]: unknown content"),
        "{lines:#?}"
    );

    // The JSON round-trips.
    let json = serde_json::to_string(&d).unwrap();
    assert_eq!(serde_json::from_str::<Disk>(&json).unwrap(), d);
}

#[test]
fn a_pv_whose_metadata_does_not_list_it_has_its_lvs_listed_unread() {
    let t = TEXT.replace("5JpAuB-Eu4R", "XXXXXX-Eu4R");
    let d = inspect_bytes(disk_with(t.as_bytes())).unwrap();
    let Some(Content::LvmPv {
        vg: Some(vg),
        problems,
        ..
    }) = &d.partitions[0].content
    else {
        panic!("{d:#?}");
    };
    assert!(
        problems[0].contains("does not list this PV"),
        "{problems:?}"
    );
    assert_eq!(vg.pv_name, None);
    assert!(vg.lvs.iter().all(|l| l.content == LvContent::Unknown));
    assert!(vg
        .lvs
        .iter()
        .flat_map(|l| &l.segments)
        .flat_map(|s| &s.stripes)
        .all(|s| s.disk_offset.is_none()));
}

#[test]
fn unreadable_metadata_is_a_problem_not_a_failure() {
    let mut img = disk_with(TEXT.as_bytes());
    img[(PV + MDA + 600) as usize] ^= 1; // the text, so its checksum fails
    let d = inspect_bytes(img).unwrap();
    let Some(Content::LvmPv {
        vg,
        problems,
        vg_name,
        ..
    }) = &d.partitions[0].content
    else {
        panic!("{d:#?}");
    };
    assert_eq!(vg, &None);
    assert_eq!(
        vg_name.as_deref(),
        Some("vgtest"),
        "the lenient probe still names it"
    );
    assert!(problems[0].contains("checksum"), "{problems:?}");
}

/// The host CLI runs the same code: its JSON is inspect's, its console lines the report's.
#[test]
fn the_cli_shows_the_same() {
    let dir = std::env::temp_dir().join(format!("rescue-inspect-lvm-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let img = dir.join("t.img");
    std::fs::write(&img, disk_with(TEXT.as_bytes())).unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_rescue"))
        .args(["inspect", "--disk"])
        .arg(&img)
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let report: Report = serde_json::from_slice(&out.stdout).unwrap();
    let direct = rescue::inspect::inspect_path(&img).unwrap();
    std::fs::remove_dir_all(&dir).unwrap();
    assert_eq!(report.disks, [direct]);
    assert!(vg_of(&report.disks[0]).is_some_and(|vg| vg.lvs.len() == 6));
    let console = String::from_utf8_lossy(&out.stderr);
    assert_eq!(console.lines().collect::<Vec<_>>(), report.human_lines());
}

/// Whatever inspect says must stay on the disk, and the report must render.
fn check(img: Vec<u8>) {
    let Ok(d) = inspect_bytes(img) else {
        return;
    };
    if let Some(vg) = vg_of(&d) {
        for lv in &vg.lvs {
            for s in lv.segments.iter().flat_map(|s| &s.stripes) {
                if let Some(o) = s.disk_offset {
                    assert!((PV..DISK).contains(&o), "{lv:?}");
                }
            }
            if let LvContent::PartitionTable { partitions, .. } = &lv.content {
                for p in partitions {
                    if let Some(o) = p.disk_offset {
                        assert!(
                            o >= PV && o.checked_add(p.size_bytes).unwrap() <= DISK,
                            "{p:?}"
                        );
                    }
                }
            }
        }
    }
    let _ = Report {
        disks: vec![d],
        ..Default::default()
    }
    .human_lines();
}

/// start_extent, extent_count, striped (else an unmapped type), (PV, first PE) per stripe,
/// stripe_size.
type SegSpec = (u64, u64, bool, Vec<(u8, u64)>, Option<u64>);

/// A VG built from numbers as they come: `lv_map`, `locate`, `contiguous` and a reader
/// over it must not panic or read outside the PV.
fn any_vg(extent_size: u64, pe_start: u64, pe_count: u64, segs: Vec<SegSpec>) -> Vg {
    let pv = |name: &str| Pv {
        name: name.into(),
        id: name.into(),
        device: None,
        pe_start: Sectors(pe_start),
        pe_count,
    };
    Vg {
        name: "v".into(),
        id: "v".into(),
        seqno: 1,
        extent_size: Sectors(extent_size),
        pvs: vec![pv("pv0"), pv("pv1")],
        lvs: vec![Lv {
            name: "l".into(),
            id: "l".into(),
            segments: segs
                .into_iter()
                .map(|(start, count, striped, stripes, stripe_size)| Segment {
                    start_extent: start,
                    extent_count: count,
                    kind: if striped { "striped" } else { "raid1" }.into(),
                    stripes: stripes
                        .into_iter()
                        .map(|(pv, pe)| (format!("pv{}", pv % 3), pe))
                        .collect(),
                    stripe_size: stripe_size.map(Sectors),
                })
                .collect(),
        }],
    }
}

fn big() -> impl Strategy<Value = u64> {
    prop_oneof![0u64..64, any::<u64>(), (0u64..40).prop_map(|s| 1u64 << s)]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    /// Label, PV header, metadata area and the LVs' first sectors.
    #[test]
    fn corrupt_pv_and_lv_bytes(edits in prop::collection::vec((0usize..6, 0u64..4096, any::<u8>()), 1..24)) {
        let mut img = disk_with(TEXT.as_bytes());
        let bases = [PV, PV + MDA, PE0, PE0 + EXT, PE0 + 2 * EXT, PE0 + 5 * EXT + MIB / 2];
        for (region, at, v) in edits {
            img[(bases[region] + at) as usize] = v;
        }
        check(img);
    }

    /// Text edits with valid checksums reach the parser and the LV map.
    #[test]
    fn corrupt_metadata_text(edits in prop::collection::vec((0usize..TEXT.len(), any::<u8>()), 1..8)) {
        let mut t = TEXT.as_bytes().to_vec();
        for (at, v) in edits { t[at] = v; }
        check(disk_with(&t));
    }

    /// Numbers LVM would never write (the extent map is also built from metadata a
    /// caller assembled itself, so it cannot lean on the text parser's bounds).
    #[test]
    fn any_segment_numbers_map_inside_the_pv(
        extent_size in big(), pe_start in big(), pe_count in big(),
        segs in prop::collection::vec(
            (big(), big(), any::<bool>(), prop::collection::vec((any::<u8>(), big()), 0..4), prop::option::of(big())),
            0..5),
        probes in prop::collection::vec((any::<u64>(), any::<u64>()), 1..8),
    ) {
        let vg = any_vg(extent_size, pe_start, pe_count, segs);
        let map = vg.lv_map(&vg.lvs[0]);
        for (at, len) in probes {
            for at in [at, at % map.size.max(1)] {
                if let Ok(run) = map.locate(at) {
                    prop_assert!(run.len > 0);
                }
                if let Some(run) = map.contiguous(at, len % (64 << 20)) {
                    prop_assert!(run.offset.checked_add(run.len).is_some());
                }
            }
        }
        // 7 inside the PV, 9 around it.
        let mut disk = vec![9u8; 256 << 10];
        disk[4096..4096 + (128 << 10)].fill(7);
        let lr = LvReader::new(Cursor::new(&disk), &map, "pv0", 4096, 128 << 10);
        let mut out = Vec::new();
        let _ = lr.take(4 << 20).read_to_end(&mut out);
        prop_assert!(out.iter().all(|&b| b == 7), "read outside the PV");
    }

    #[test]
    fn vhd_probe_takes_any_bytes(mut b in prop::collection::vec(any::<u8>(), 0..4096), cookie in any::<bool>(), data_offset in big()) {
        if cookie && b.len() >= 512 {
            b[0..8].copy_from_slice(vhd::FOOTER_COOKIE);
            b[60..64].copy_from_slice(&vhd::TYPE_DIFFERENCING.to_be_bytes());
            b[16..24].copy_from_slice(&data_offset.to_be_bytes());
        }
        let _ = vhd::probe(&mut Cursor::new(b)).unwrap();
    }
}

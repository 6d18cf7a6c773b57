//! The fuzz targets (`rescue::fuzzing`) in the ordinary suite: each seed, a few hundred
//! deterministic mutations of it, and every saved regression input under
//! `tests/fuzz-regressions/<target>/` (a crash `cargo xtask fuzz` found, kept once fixed).
//! Seeds are made by the real tools (sgdisk, mke2fs, mkswap, mkfs.vfat, pvcreate,
//! qemu-img) and our own writers, small enough for the coverage-guided fuzzer, which
//! starts from the same files: with `XENRAID_FUZZ_SEEDS_OUT=<dir>` this test writes them
//! to `<dir>/<target>/`.

mod inspect_util;
mod target_util;

use inspect_util::*;
use rescue::fuzzing::{self, Kind, Mutator, Target};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

const KIB: u64 = 1024;

/// A seed and the byte ranges of it worth most mutations.
struct Seed {
    name: String,
    bytes: Vec<u8>,
    hot: Vec<(usize, usize)>,
}

impl Seed {
    fn new(name: &str, bytes: Vec<u8>, hot: Vec<(usize, usize)>) -> Seed {
        Seed {
            name: name.into(),
            bytes,
            hot,
        }
    }
    fn text(name: &str, text: &str) -> Seed {
        Seed::new(name, text.as_bytes().to_vec(), Vec::new())
    }
}

fn read(path: &Path) -> Vec<u8> {
    std::fs::read(path).unwrap()
}

/// The first and last `n` bytes of `[s, e)`: where formats keep their headers.
fn ends(s: u64, e: u64, n: u64) -> Vec<(usize, usize)> {
    let n = n.min(e - s);
    vec![
        (s as usize, (s + n) as usize),
        ((e - n) as usize, e as usize),
    ]
}

/// A small GPT disk as a XenServer installer lays it out, every partition holding what
/// inspect recognises: ext4, swap, md 0.90 and 1.0 members, an LVM PV with a VG, an ESP.
fn disk_image(dir: &TempDir) -> Seed {
    let img = dir.path("disk.img");
    let len = 1536 * KIB;
    sparse_file(&img, len);
    run(
        "sgdisk",
        &[
            "-a",
            "8",
            "-n1:0:+256K",
            "-t1:0700",
            "-n2:0:+64K",
            "-t2:8200",
            "-n3:0:+128K",
            "-t3:fd00",
            "-n4:0:+64K",
            "-t4:fd00",
            "-n5:0:+512K",
            "-t5:8e00",
            "-n6:0:+256K",
            "-t6:ef00",
            p(&img),
        ],
    );
    let r: Vec<(u64, u64)> = (1..=6).map(|n| part_range(&img, n)).collect();
    run(
        "mke2fs",
        &[
            "-q",
            "-F",
            "-t",
            "ext4",
            "-b",
            "1024",
            "-O",
            "^has_journal",
            "-L",
            "root-fuzzab",
            "-E",
            &format!("offset={}", r[0].0),
            p(&img),
            &format!("{}k", r[0].1 / 1024),
        ],
    );
    mkswap_at(
        dir,
        &img,
        "swap-fuzzab",
        "02020202-0000-4000-8000-000000000002",
        r[1].0,
        r[1].1,
    );
    md090_superblock(&img, r[2].0, r[2].1, [3, 3, 3, 3]);
    md1_superblock(&img, r[3].0, r[3].1, 0, [4; 16], "xenserver:root");
    lvm_at(&img, r[4].0, r[4].1);
    mkfs_vfat_at(&img, "BOOT-FUZZAB", "1234ABCD", r[5].0, r[5].1);
    let mut hot = ends(0, len, 40 * KIB);
    for &(s, l) in &r {
        hot.extend(ends(s, s + l, 8 * KIB));
    }
    Seed::new("xs-disk", read(&img), hot)
}

/// An LVM PV with a VG and two LVs, small extents so it fits a small seed.
fn lvm_at(img: &Path, offset: u64, size: u64) {
    let lo = Loop::new(img, offset, size);
    let d = lo.0.as_str();
    lvm_on(
        "pvcreate",
        d,
        &[
            "-ff",
            "-y",
            "--norestorefile",
            "--metadatasize",
            "128k",
            "--dataalignment",
            "64k",
            d,
        ],
    );
    lvm_on("vgcreate", d, &["-s", "64k", "VG_XenStorage-fuzz", d]);
    for (name, size) in [("MGT", "64k"), ("VHD-fuzz", "256k")] {
        inactive_lv(d, "VG_XenStorage-fuzz", name, size);
    }
}

/// A GPT and nothing else, small: the fuzzer's speed goes with the input's length.
fn gpt_seed(dir: &TempDir) -> Seed {
    let img = dir.path("gpt.img");
    let len = 96 * KIB;
    sparse_file(&img, len);
    run(
        "sgdisk",
        &[
            "-a",
            "8",
            "-n1:0:+16K",
            "-t1:ef02",
            "-n2:0:+16K",
            "-t2:fd00",
            "-c2:root",
            p(&img),
        ],
    );
    Seed::new("gpt-two-parts", read(&img), ends(0, len, 40 * KIB))
}

fn slice(disk: &Seed, n: u32, img: &Path, name: &str) -> Seed {
    let (s, l) = part_range(img, n);
    let bytes = disk.bytes[s as usize..(s + l) as usize].to_vec();
    let hot = ends(0, l, 16 * KIB);
    Seed::new(name, bytes, hot)
}

fn ext_seeds(dir: &TempDir) -> Vec<Seed> {
    let mut out = Vec::new();
    // The file the reader looks for, so the fuzzer starts inside inodes and directories.
    let tree = dir.path("ext-tree");
    std::fs::create_dir_all(tree.join("etc")).unwrap();
    std::fs::write(
        tree.join("etc/xensource-inventory"),
        "PRIMARY_DISK='/dev/disk/by-id/ata-X'\n",
    )
    .unwrap();
    for (name, size, args) in [
        ("ext2-1k", 256 * KIB, &["-t", "ext2", "-b", "1024"][..]),
        (
            "ext3-journal",
            1280 * KIB,
            &["-t", "ext3", "-b", "1024", "-J", "size=1"][..],
        ),
        (
            "ext4-flex-csum",
            1024 * KIB,
            &[
                "-t",
                "ext4",
                "-O",
                "^has_journal,metadata_csum,flex_bg",
                "-G",
                "4",
            ][..],
        ),
        (
            "ext4-meta-bg",
            1024 * KIB,
            &[
                "-t",
                "ext4",
                "-O",
                "^has_journal,^resize_inode,meta_bg",
                "-b",
                "1024",
            ][..],
        ),
    ] {
        let img = dir.path(name);
        sparse_file(&img, size);
        let mut a = vec!["-q", "-F"];
        a.extend_from_slice(args);
        a.extend_from_slice(&["-d", p(&tree)]);
        a.push(p(&img));
        run("mke2fs", &a);
        let mut f = std::fs::File::open(&img).unwrap();
        assert!(
            rescue::formats::ext::read_file(&mut f, "/etc/xensource-inventory", 4096)
                .unwrap()
                .is_some(),
            "{name}: the seed's file is not readable"
        );
        out.push(Seed::new(name, read(&img), ends(0, size, 16 * KIB)));
    }
    out
}

fn md_seeds(dir: &TempDir) -> Vec<Seed> {
    let mut out = Vec::new();
    for minor in [0, 1, 2] {
        // 1.1 and 1.2 put the data 1 MiB in, as mdadm does.
        let size = if minor == 0 { 256 * KIB } else { 1536 * KIB };
        let img = dir.path(&format!("md1.{minor}"));
        sparse_file(&img, size);
        md1_superblock(&img, 0, size, minor, [9; 16], "xenserver:root");
        out.push(Seed::new(
            &format!("md-1.{minor}"),
            read(&img),
            ends(0, size, 12 * KIB),
        ));
    }
    let size = 256 * KIB;
    let img = dir.path("md0.90");
    sparse_file(&img, size);
    md090_superblock(&img, 0, size, [1, 2, 3, 4]);
    out.push(Seed::new("md-0.90", read(&img), ends(0, size, 68 * KIB)));
    out
}

fn vhd_seed(dir: &TempDir) -> Seed {
    let img = dir.path("sr.vhd");
    run("qemu-img", &["create", "-q", "-f", "vpc", p(&img), "16M"]);
    let bytes = read(&img);
    let hot = vec![(0, bytes.len())];
    Seed::new("vhd-dynamic", bytes, hot)
}

fn journal_seed() -> Seed {
    use rescue::convert::journal::{self, Journal, Phase};
    use rescue::convert::plan::{ConvertPlan, DiskRef};
    let disk = |name: &str| DiskRef {
        name: name.into(),
        path: format!("/dev/{name}"),
        serial: Some(name.to_uppercase()),
        size_bytes: 8 << 30,
    };
    let mut j = Journal {
        seq: 0,
        phase: Phase::MirrorReady,
        copied: Vec::new(),
        plan: ConvertPlan {
            source: disk("sda"),
            mirror: disk("sdb"),
            sector_size: 512,
            source_disk_guid: "A".into(),
            mirror_disk_guid: "B".into(),
            source_new_disk_guid: "C".into(),
            partitions: Vec::new(),
            mirror_partition_guids: Default::default(),
            source_partition_guids: Default::default(),
            protective_mbr_active: false,
            arrays: Vec::new(),
            room: String::new(),
            bytes_to_copy: 1 << 30,
            label_suffix: "fuzzab".into(),
            attach_source: true,
            wait_resync: false,
            files_to_change: vec!["/etc/fstab".into()],
            chroot_commands: Vec::new(),
            journal_replay: Vec::new(),
            efi: None,
            boot_chain: Default::default(),
        },
        files_changed: Vec::new(),
    };
    let mut area = std::io::Cursor::new(vec![0u8; 1 << 20]);
    journal::write(&mut area, &mut j, |_| Ok(())).unwrap();
    j.phase = Phase::Copied;
    journal::write(&mut area, &mut j, |_| Ok(())).unwrap();
    let hot = journal::SLOT_OFFSETS
        .iter()
        .map(|&o| (o as usize, o as usize + 4096))
        .collect();
    Seed::new("journal-two-slots", area.into_inner(), hot)
}

/// A bzImage setup header naming its release, as `kernels::bzimage_version` reads it.
fn bzimage_seed() -> Seed {
    let mut b = vec![0u8; 0x4000];
    b[0x1fe] = 0x55;
    b[0x1ff] = 0xaa;
    b[0x202..0x206].copy_from_slice(b"HdrS");
    b[0x206..0x208].copy_from_slice(&0x020fu16.to_le_bytes());
    b[0x20e..0x210].copy_from_slice(&0x1000u16.to_le_bytes());
    let v = b"4.19.0+1 (mockbuild@builder) #1 SMP Tue Jan 1 00:00:00 UTC 2019\0";
    b[0x1200..0x1200 + v.len()].copy_from_slice(v);
    Seed::new("bzimage-4.19", b, vec![(0x1f0, 0x220), (0x1200, 0x1260)])
}

const LVM_TEXT: &str = r#"VG_XenStorage-fuzz {
id = "Aa1Bb2-Cc3D-d4Ee-5Ff6-Gg7H-h8Ii-9Jj0Kk"
seqno = 4
format = "lvm2"
status = ["RESIZEABLE", "READ", "WRITE"]
flags = []
extent_size = 8192
max_lv = 0
max_pv = 0
metadata_copies = 0

physical_volumes {

pv0 {
id = "Zz9Yy8-Xx7W-w6Vv-5Uu4-Tt3S-s2Rr-1Qq0Pp"
device = "/dev/sda3"
status = ["ALLOCATABLE"]
flags = []
dev_size = 2097152
pe_start = 2048
pe_count = 255
}
}

logical_volumes {

MGT {
id = "Mm1Nn2-Oo3P-p4Qq-5Rr6-Ss7T-t8Uu-9Vv0Ww"
status = ["READ", "WRITE", "VISIBLE"]
flags = []
segment_count = 1

segment1 {
start_extent = 0
extent_count = 1
type = "striped"
stripe_count = 1
stripes = [
"pv0", 0
]
}
}

VHD-fuzz {
id = "Ab1Cd2-Ef3G-h4Ij-5Kl6-Mn7O-p8Qr-9St0Uv"
status = ["READ", "WRITE", "VISIBLE"]
flags = []
tags = ["journaled"]
segment_count = 2

segment1 {
start_extent = 0
extent_count = 2
type = "striped"
stripe_count = 1
stripes = [
"pv0", 1
]
}
segment2 {
start_extent = 2
extent_count = 1
type = "striped"
stripe_count = 1
stripes = [
"pv0", 10
]
}
}
}
}
# Generated by LVM2 version 2.02.180(2) (2018-07-31): Mon Nov 30 12:00:00 2026
contents = "Text Format Volume Group"
version = 1
description = ""
creation_host = "xenserver-fuzz"
creation_time = 1790000000
"#;

/// Every target's seeds, made once per test process.
fn seeds() -> &'static BTreeMap<&'static str, Vec<Seed>> {
    static SEEDS: std::sync::OnceLock<BTreeMap<&'static str, Vec<Seed>>> =
        std::sync::OnceLock::new();
    SEEDS.get_or_init(make_seeds)
}

fn make_seeds() -> BTreeMap<&'static str, Vec<Seed>> {
    let dir = TempDir::new("fuzz-seeds");
    let disk = disk_image(&dir);
    let img = dir.path("disk.img");
    let mut m: BTreeMap<&'static str, Vec<Seed>> = BTreeMap::new();
    let mbr = {
        let mut b = disk.bytes[..64 * KIB as usize].to_vec();
        // An MBR-labelled host (upgraded from an old install): one primary, one extended.
        b[446..510].fill(0);
        b[446 + 4] = 0x83;
        b[446 + 8..446 + 12].copy_from_slice(&2048u32.to_le_bytes());
        b[446 + 12..446 + 16].copy_from_slice(&4096u32.to_le_bytes());
        b[462 + 4] = 0x05;
        b[462 + 8..462 + 12].copy_from_slice(&8192u32.to_le_bytes());
        b[462 + 12..462 + 16].copy_from_slice(&4096u32.to_le_bytes());
        Seed::new("mbr-extended", b, vec![(440, 512)])
    };
    m.insert("mbr", vec![mbr]);
    m.insert("gpt", vec![gpt_seed(&dir)]);
    m.insert("ext", {
        let mut v = ext_seeds(&dir);
        v.push(slice(&disk, 1, &img, "xs-root-ext4"));
        v
    });
    m.insert("swap", vec![slice(&disk, 2, &img, "swap")]);
    m.insert("md", {
        let mut v = md_seeds(&dir);
        v.push(slice(&disk, 3, &img, "xs-member-md0.90"));
        v
    });
    m.insert("lvm", vec![slice(&disk, 5, &img, "sr-pv")]);
    m.insert("vfat", vec![slice(&disk, 6, &img, "esp")]);
    m.insert("vhd", vec![vhd_seed(&dir)]);
    m.insert("journal", vec![journal_seed()]);
    m.insert("bzimage", vec![bzimage_seed()]);
    m.insert("inspect", vec![disk]);
    m.insert("lvm-text", vec![Seed::text("vg", LVM_TEXT)]);
    m.insert(
        "cmdline",
        vec![
            Seed::text(
                "convert",
                "BOOT_IMAGE=/vmlinuz console=ttyS0 rescue.action=convert rescue.source=serial:XS-SOURCE rescue.mirror=auto rescue.bitmap=no rescue.wait-resync=yes",
            ),
            Seed::text(
                "replace",
                "rescue.action=replace rescue.survivor=auto rescue.new=/dev/sdb rescue.wipe=sdb rescue.dry-run quiet",
            ),
            Seed::text(
                "backup-restore",
                "rescue.action=backup rescue.source=auto rescue.to=serial:WD-1 rescue.wipe=serial:WD-1 rescue.from=serial:WD-1:host1/20261201T030000Z rescue.to=stick",
            ),
        ],
    );
    m.insert(
        "rescue-conf",
        vec![Seed::text(
            "conf",
            "# rescue.conf\naction = convert\nsource = serial:XS-SOURCE\nmirror = auto\nwait-resync\nbitmap = yes\n",
        )],
    );
    m.insert(
        "boot-config",
        vec![
            Seed::text("grub-7", target_util::GRUB_CFG_7),
            Seed::text("grub-xen-boot", target_util::GRUB_CFG_XEN_BOOT),
            Seed::text("extlinux-6", target_util::EXTLINUX_6),
        ],
    );
    m.insert(
        "host-files",
        vec![
            Seed::text("fstab-7", target_util::FSTAB_7),
            Seed::text("fstab-6", target_util::FSTAB_6),
            Seed::text("mdadm", target_util::MDADM_SEED001),
            Seed::text("lvm-conf", target_util::LVM_CONF),
            Seed::text("inventory", target_util::INVENTORY_7),
            Seed::text("state-db", target_util::STATE_DB),
        ],
    );
    m
}

fn regressions(t: &Target) -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fuzz-regressions")
        .join(t.name);
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .map(|d| d.flatten().map(|e| e.path()).collect())
        .unwrap_or_default();
    v.sort();
    v
}

#[test]
fn every_target_survives_its_seeds_mutations_and_regressions() {
    let seeds = seeds();
    let out = std::env::var_os("XENRAID_FUZZ_SEEDS_OUT").map(PathBuf::from);
    for t in fuzzing::TARGETS {
        let these = seeds
            .get(t.name)
            .unwrap_or_else(|| panic!("target {} has no seeds", t.name));
        if let Some(out) = &out {
            let d = out.join(t.name);
            std::fs::create_dir_all(&d).unwrap();
            for s in these {
                std::fs::write(d.join(&s.name), &s.bytes).unwrap();
            }
        }
        for s in these {
            assert!(
                s.bytes.len() <= t.kind.max_len(),
                "{}: seed {} is longer than the fuzzer's inputs",
                t.name,
                s.name
            );
            (t.run)(&s.bytes);
        }
        for path in regressions(t) {
            (t.run)(&read(&path));
        }
        let rounds = match t.kind {
            Kind::Image => 120,
            Kind::Text => 1500,
        };
        let mut m = Mutator::new(0x5eed ^ t.name.len() as u64);
        for i in 0..rounds {
            let s = &these[i % these.len()];
            let mut input = s.bytes.clone();
            m.mutate(&mut input, &s.hot);
            (t.run)(&input);
        }
    }
}

/// The seeds do reach the parsers' success paths (a seed a parser rejects would leave
/// the fuzzer mutating noise).
#[test]
fn seeds_parse() {
    use rescue::formats::{ext, gpt, lvm, md, swap, vhd};
    use std::io::Cursor;
    let seeds = seeds();
    let one = |t: &str| &seeds[t][0].bytes;
    assert!(gpt::read(&mut Cursor::new(one("gpt")), None).is_ok());
    for s in &seeds["ext"] {
        assert!(
            ext::used_map(&mut Cursor::new(&s.bytes)).is_ok(),
            "{}",
            s.name
        );
    }
    for s in &seeds["md"] {
        let sectors = rescue::units::Sectors(s.bytes.len() as u64 / 512);
        assert!(
            matches!(md::read(&mut Cursor::new(&s.bytes), sectors), Ok(Some(_))),
            "{}",
            s.name
        );
    }
    let pv = lvm::plan(&mut Cursor::new(one("lvm"))).unwrap();
    assert_eq!(pv.vg.map(|v| v.lvs.len()), Some(2));
    assert!(swap::probe(&mut Cursor::new(one("swap")))
        .unwrap()
        .is_some());
    assert!(vhd::probe(&mut Cursor::new(one("vhd"))).unwrap().is_some());
    assert!(
        rescue::formats::vfat::probe(&mut Cursor::new(one("vfat")), 0)
            .unwrap()
            .is_some()
    );
    assert!(
        rescue::convert::journal::read(&mut Cursor::new(one("journal")))
            .unwrap()
            .is_some()
    );
    assert!(
        rescue::target_root::kernels::bzimage_version(&mut Cursor::new(one("bzimage"))).is_ok()
    );
    let disk = rescue::inspect::inspect(
        &mut Cursor::new(one("inspect")),
        "fuzz",
        "/dev/fuzz",
        rescue::units::Bytes(one("inspect").len() as u64),
        512,
    )
    .unwrap();
    assert_eq!(disk.partitions.len(), 6);
    let text = std::str::from_utf8(&seeds["lvm-text"][0].bytes).unwrap();
    assert!(lvm::Vg::from_section(&lvm::parse_text(text).unwrap()).is_ok());
}

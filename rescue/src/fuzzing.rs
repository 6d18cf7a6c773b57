//! Fuzz targets: every parser that reads what is on a disk or what an operator typed, each
//! behind one `fn(&[u8])` that must not panic, hang or allocate without bound, whatever the
//! bytes. Where a parser's answer steers a write, the target also checks it stays inside
//! the input (a used-block map past the end of a partition would copy into its neighbour).
//!
//! Three drivers share the table: `rescue/tests/fuzz.rs` (every seed and a few thousand
//! deterministic mutations of each, plus every saved regression input, in the ordinary
//! test suite), the libFuzzer example `rescue/examples/fuzz.rs` (coverage-guided, built by
//! `cargo xtask fuzz`), and anyone replaying a crash file by hand.

use crate::convert::journal;
use crate::formats::md::{self, MetadataVersion};
use crate::formats::{ext, gpt, lvm, mbr, swap, vfat, vhd};
use crate::target_root::{self, extlinux, fstab, grub, mdadm, statedb, sysconf, Conversion, Role};
use crate::units::{Bytes, Sectors};
use std::io::Cursor;

/// One fuzz target.
pub struct Target {
    pub name: &'static str,
    /// What an input is (for the seeds' and the README's sake).
    pub input: &'static str,
    /// Disk images (seeds are image files, inputs can be large) or text.
    pub kind: Kind,
    pub run: fn(&[u8]),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Image,
    Text,
}

impl Kind {
    /// The largest input the coverage-guided fuzzer builds for this kind.
    pub fn max_len(self) -> usize {
        match self {
            Kind::Image => 4 << 20,
            Kind::Text => 64 << 10,
        }
    }
}

/// Every target, in the order `cargo xtask fuzz` runs them.
pub const TARGETS: &[Target] = &[
    Target {
        name: "inspect",
        input: "a whole disk image (GPT or MBR, every partition's content)",
        kind: Kind::Image,
        run: inspect_disk,
    },
    Target {
        name: "gpt",
        input: "a disk image's GPT (primary and backup)",
        kind: Kind::Image,
        run: gpt_table,
    },
    Target {
        name: "mbr",
        input: "sector 0 and the MBR partition table",
        kind: Kind::Image,
        run: mbr_table,
    },
    Target {
        name: "md",
        input: "an md member (0.90, 1.0, 1.1, 1.2 superblocks and bitmaps)",
        kind: Kind::Image,
        run: md_member,
    },
    Target {
        name: "ext",
        input: "an ext2/3/4 filesystem (superblock, group descriptors, block bitmaps, a file read by path)",
        kind: Kind::Image,
        run: ext_fs,
    },
    Target {
        name: "lvm",
        input: "an LVM2 PV (label, metadata area, VG text, the used-extent plan)",
        kind: Kind::Image,
        run: lvm_pv,
    },
    Target {
        name: "lvm-text",
        input: "LVM2 metadata text",
        kind: Kind::Text,
        run: lvm_text,
    },
    Target {
        name: "swap",
        input: "a swap area's header page",
        kind: Kind::Image,
        run: swap_area,
    },
    Target {
        name: "vfat",
        input: "a FAT boot sector",
        kind: Kind::Image,
        run: vfat_fs,
    },
    Target {
        name: "vhd",
        input: "a VHD (footer, dynamic header)",
        kind: Kind::Image,
        run: vhd_image,
    },
    Target {
        name: "journal",
        input: "the conversion journal area on the mirror",
        kind: Kind::Image,
        run: journal_area,
    },
    Target {
        name: "bzimage",
        input: "a kernel image's setup header",
        kind: Kind::Image,
        run: bzimage,
    },
    Target {
        name: "cmdline",
        input: "the kernel command line",
        kind: Kind::Text,
        run: kernel_cmdline,
    },
    Target {
        name: "rescue-conf",
        input: "rescue.conf on the stick",
        kind: Kind::Text,
        run: rescue_conf,
    },
    Target {
        name: "boot-config",
        input: "grub.cfg and extlinux.conf (read and rewritten)",
        kind: Kind::Text,
        run: boot_config,
    },
    Target {
        name: "host-files",
        input: "fstab, mdadm.conf, lvm.conf, the inventory and xapi's state db (rewritten)",
        kind: Kind::Text,
        run: host_files,
    },
];

pub fn by_name(name: &str) -> Option<&'static Target> {
    TARGETS.iter().find(|t| t.name == name)
}

fn len_of(data: &[u8]) -> Bytes {
    Bytes(data.len() as u64)
}

/// Every range ends inside the input: what a parser says is in use is what gets copied.
fn check_inside(what: &str, ranges: &[(Bytes, Bytes)], len: Bytes) {
    for &(s, e) in ranges {
        assert!(
            s <= e && e <= len,
            "{what}: range {s:?}..{e:?} outside the {len:?} input"
        );
    }
}

fn inspect_disk(data: &[u8]) {
    for ss in [512, 4096] {
        if let Ok(disk) = crate::inspect::inspect(
            &mut Cursor::new(data),
            "fuzz",
            "/dev/fuzz",
            len_of(data),
            ss,
        ) {
            // The report is what an operator reads and what convert plans from.
            let _ = serde_json::to_string(&disk);
        }
    }
}

fn gpt_table(data: &[u8]) {
    let mut r = Cursor::new(data);
    let _ = gpt::detect_sector_size(&mut r);
    for ss in [None, Some(512), Some(4096)] {
        let Ok(t) = gpt::read(&mut r, ss) else {
            continue;
        };
        let lbas = data.len() as u64 / u64::from(t.sector_size);
        for p in &t.partitions {
            assert!(
                p.first_lba.0 <= p.last_lba.0 && p.last_lba.0 < lbas,
                "a partition outside the disk: {p:?}"
            );
        }
        let _ = gpt::has_backup_signature(&mut r, t.sector_size);
    }
}

fn mbr_table(data: &[u8]) {
    let mut r = Cursor::new(data);
    let _ = mbr::has_signature(&mut r);
    for ss in [512, 4096] {
        let _ = mbr::read(&mut r, ss);
    }
}

const MD_VERSIONS: [MetadataVersion; 4] = [
    MetadataVersion::V0_90,
    MetadataVersion::V1_0,
    MetadataVersion::V1_1,
    MetadataVersion::V1_2,
];

fn md_member(data: &[u8]) {
    let mut r = Cursor::new(data);
    let size = Sectors(data.len() as u64 / 512);
    let _ = md::read(&mut r, size);
    for v in MD_VERSIONS {
        let _ = md::read_version(&mut r, size, v);
        let _ = md::probe_version(&mut r, size, v);
    }
}

fn ext_fs(data: &[u8]) {
    let mut r = Cursor::new(data);
    let _ = ext::probe(&mut r);
    if let Ok(sb) = ext::Superblock::read(&mut r) {
        let _ = (sb.size(), sb.group_count(), sb.uuid_string(), sb.version());
    }
    if let Ok(map) = ext::used_map(&mut r) {
        check_inside("ext used map", map.extents.ranges(), len_of(data));
    }
    // Inodes, block maps, extent trees and directories.
    if let Ok(Some(f)) = ext::read_file(&mut r, "/etc/xensource-inventory", 1 << 20) {
        assert!(f.len() <= 1 << 20, "read_file returned more than its limit");
    }
}

fn lvm_pv(data: &[u8]) {
    let mut r = Cursor::new(data);
    let _ = lvm::probe(&mut r);
    if let Ok(plan) = lvm::plan(&mut r) {
        check_inside("LVM plan", plan.extents.ranges(), len_of(data));
    }
}

fn lvm_text(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    if let Ok(top) = lvm::parse_text(&text) {
        let _ = lvm::Vg::from_section(&top);
    }
}

fn swap_area(data: &[u8]) {
    let _ = swap::probe(&mut Cursor::new(data));
    let _ = swap::SwapHeader::read(&mut Cursor::new(data));
}

fn vfat_fs(data: &[u8]) {
    let _ = vfat::probe(&mut Cursor::new(data), 0);
    // The used-clusters map reads the FAT: its size and entries come from the input.
    let _ = vfat::used_map(&mut Cursor::new(data));
}

fn vhd_image(data: &[u8]) {
    let _ = vhd::probe(&mut Cursor::new(data));
}

fn journal_area(data: &[u8]) {
    let _ = journal::read(&mut Cursor::new(data));
}

fn bzimage(data: &[u8]) {
    let _ = target_root::kernels::bzimage_version(&mut Cursor::new(data));
}

fn kernel_cmdline(data: &[u8]) {
    let _ = crate::cmdline::parse(&String::from_utf8_lossy(data));
}

fn rescue_conf(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let _ = crate::cmdline::parse_plan_file("rescue.conf", &text);
    // The same text as both sides of the disagreement check: its second half as the
    // kernel command line.
    let mid = text
        .char_indices()
        .nth(text.chars().count() / 2)
        .map_or(0, |(i, _)| i);
    let _ = crate::cmdline::conflicts("rescue.conf", &text, &text[mid..]);
}

fn boot_config(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let conv = sample_conversion();
    let _ = grub::boot_images(&text);
    let _ = grub::rewrite_grub_cfg(&text, &conv);
    let _ = extlinux::boot_images(&text);
    let _ = extlinux::rewrite_extlinux(&text, &conv);
}

fn host_files(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let conv = sample_conversion();
    let _ = fstab::rewrite_fstab(&text, &conv);
    let _ = mdadm::render_mdadm_conf(Some(&text), &conv);
    let _ = mdadm::restrictive_device_lines(&text);
    let _ = target_root::lvm::ensure_md_component_detection(&text);
    let _ = sysconf::get_key(&text, "PRIMARY_DISK");
    let _ = sysconf::rewrite_inventory(&text, &conv);
    let _ = statedb::rewrite_state_db(
        &text,
        &["/dev/disk/by-id/scsi-SATA_XS-SOURCE-part3".into()],
        "/dev/md/sr",
    );
}

/// A 7.x conversion (five arrays) for the rewriters.
fn sample_conversion() -> Conversion {
    let array = |role, name: &str, uuid: &str, metadata: &str, fs: Option<(&str, &str)>| {
        target_root::ArrayInfo {
            role,
            device: format!("/dev/md/{name}"),
            name: format!("xenserver:{name}"),
            uuid: uuid.into(),
            metadata: metadata.into(),
            fs_uuid: fs.map(|f| f.0.into()),
            fs_label: fs.map(|f| f.1.into()),
        }
    };
    Conversion {
        arrays: vec![
            array(
                Role::Root,
                "root",
                "5998e08a:b351174b:ad679be2:253c6e12",
                "1.0",
                Some(("622d05db-3ad6-429f-9909-4bf953aedb33", "root-vgdorj")),
            ),
            array(
                Role::Backup,
                "backup",
                "d2414f2c:e57ca043:ab06863b:3bd08a71",
                "1.0",
                None,
            ),
            array(
                Role::Logs,
                "logs",
                "344e80df:08bb704e:914f232e:062b8ad7",
                "1.2",
                Some(("0b4d3a5e-35f4-4c5c-9d3a-3c0d8f6f1a2b", "logs-vgdorj")),
            ),
            array(
                Role::Swap,
                "swap",
                "b82526bc:ac1c3041:a6f31650:9cda8620",
                "1.2",
                Some(("7f1e2d3c-4b5a-4968-8776-655443322110", "swap-vgdorj")),
            ),
            array(
                Role::Sr,
                "sr",
                "2d7f365f:c240ab4a:b10dbb6b:c48f426f",
                "1.2",
                None,
            ),
        ],
        label_suffix: "vgdorj".into(),
        sr_old_devices: vec!["/dev/disk/by-id/scsi-SATA_XS-SOURCE-part3".into()],
        root_by_device: None,
    }
}

/// Deterministic mutations for the ordinary test suite (the coverage-guided fuzzer has
/// its own): bit flips, interesting values written as 8/16/32/64-bit little-endian
/// integers, copied chunks, truncation. `seed` picks the sequence.
pub struct Mutator {
    state: u64,
}

impl Mutator {
    pub fn new(seed: u64) -> Self {
        Mutator {
            state: seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1,
        }
    }

    fn next(&mut self) -> u64 {
        // xorshift64*
        let mut x = self.state;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.state = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn below(&mut self, n: usize) -> usize {
        if n == 0 {
            0
        } else {
            (self.next() % n as u64) as usize
        }
    }

    /// One to eight mutations of `input`. `hot` lists byte ranges worth most of the
    /// attention (headers, superblocks): where a random offset in a multi-megabyte image
    /// would almost always land in data nothing parses.
    pub fn mutate(&mut self, input: &mut Vec<u8>, hot: &[(usize, usize)]) {
        const INTERESTING: [u64; 12] = [
            0,
            1,
            2,
            0x7f,
            0x80,
            0xff,
            0x7fff,
            0xffff,
            0x7fff_ffff,
            0xffff_ffff,
            0x8000_0000_0000_0000,
            u64::MAX,
        ];
        for _ in 0..1 + self.below(8) {
            if input.is_empty() {
                input.push(0);
            }
            let at = match hot.get(self.below(hot.len() + 1)) {
                Some(&(s, e)) if s < e && e <= input.len() => s + self.below(e - s),
                _ => self.below(input.len()),
            };
            match self.below(6) {
                0 => input[at] ^= 1 << self.below(8),
                1 => input[at] = self.next() as u8,
                2 | 3 => {
                    let v = INTERESTING[self.below(INTERESTING.len())];
                    let width = [1, 2, 4, 8][self.below(4)];
                    let bytes = v.to_le_bytes();
                    let n = width.min(input.len() - at);
                    input[at..at + n].copy_from_slice(&bytes[..n]);
                }
                4 => {
                    let from = self.below(input.len());
                    let n = (1 + self.below(64))
                        .min(input.len() - from)
                        .min(input.len() - at);
                    let chunk = input[from..from + n].to_vec();
                    input[at..at + n].copy_from_slice(&chunk);
                }
                _ => {
                    let keep = input.len() - self.below(input.len().min(4096) + 1);
                    input.truncate(keep.max(1));
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_unique_and_found() {
        for t in TARGETS {
            assert_eq!(by_name(t.name).map(|f| f.name), Some(t.name));
        }
        let mut names: Vec<_> = TARGETS.iter().map(|t| t.name).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), TARGETS.len());
    }

    #[test]
    fn mutator_is_deterministic_and_changes_input() {
        let base = vec![0u8; 4096];
        let run = |seed| {
            let mut m = Mutator::new(seed);
            let mut v = base.clone();
            m.mutate(&mut v, &[(1024, 2048)]);
            v
        };
        assert_eq!(run(7), run(7));
        assert!((0..20).any(|s| run(s) != base));
    }

    #[test]
    fn targets_take_empty_and_tiny_inputs() {
        for t in TARGETS {
            for input in [&[][..], &[0u8][..], &[0xffu8; 600][..]] {
                (t.run)(input);
            }
        }
    }
}

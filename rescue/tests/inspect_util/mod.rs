//! Helpers for the inspect and GPT tests: temp dirs, running the real tools, building
//! XenServer-like images with sgdisk/mke2fs/mkswap/mkfs.vfat/pvcreate, md superblocks.
#![allow(dead_code)]

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};

pub const MIB: u64 = 1 << 20;

/// A directory under the system temp dir, removed on drop.
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new(test: &str) -> TempDir {
        static N: AtomicU32 = AtomicU32::new(0);
        let dir = std::env::temp_dir().join(format!(
            "rescue-{test}-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::SeqCst)
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        TempDir(dir)
    }
    pub fn path(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Runs a tool, panicking with its output when it is missing or fails.
pub fn run(tool: &str, args: &[&str]) -> String {
    let out = Command::new(tool).args(args).output().unwrap_or_else(|e| {
        panic!("cannot run `{tool}` ({e}): install it (packages: gdisk e2fsprogs util-linux dosfstools lvm2 fdisk)")
    });
    assert!(
        out.status.success(),
        "`{tool} {}` failed: {}\n{}",
        args.join(" "),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

pub fn sparse_file(path: &Path, size: u64) {
    File::create(path).unwrap().set_len(size).unwrap();
}

pub fn p(path: &Path) -> &str {
    path.to_str().unwrap()
}

/// Copies `len` bytes of `src` (from its start) into `img` at `offset`.
pub fn copy_into(img: &Path, offset: u64, src: &Path, len: u64) {
    let mut buf = vec![0u8; len as usize];
    File::open(src).unwrap().read_exact(&mut buf).unwrap();
    write_at(img, offset, &buf);
}

pub fn write_at(img: &Path, offset: u64, data: &[u8]) {
    let mut f = OpenOptions::new().write(true).open(img).unwrap();
    f.seek(SeekFrom::Start(offset)).unwrap();
    f.write_all(data).unwrap();
}

pub fn read_at(img: &Path, offset: u64, len: usize) -> Vec<u8> {
    let mut f = File::open(img).unwrap();
    let mut buf = vec![0u8; len];
    f.seek(SeekFrom::Start(offset)).unwrap();
    f.read_exact(&mut buf).unwrap();
    buf
}

/// One partition as `sgdisk -i N` reports it.
#[derive(Debug, PartialEq, Eq)]
pub struct SgdiskPart {
    pub type_guid: String,
    pub unique_guid: String,
    pub first: u64,
    pub last: u64,
    pub attributes: u64,
    pub name: String,
}

pub fn sgdisk_info(img: &Path, n: u32) -> SgdiskPart {
    let out = run("sgdisk", &["-i", &n.to_string(), p(img)]);
    let field = |key: &str| -> String {
        let line = out
            .lines()
            .find(|l| l.starts_with(key))
            .unwrap_or_else(|| panic!("no `{key}` in sgdisk -i {n} output:\n{out}"));
        line[key.len()..].trim().to_string()
    };
    let first_word = |s: String| s.split_whitespace().next().unwrap().to_string();
    let name = field("Partition name:");
    SgdiskPart {
        type_guid: first_word(field("Partition GUID code:")),
        unique_guid: field("Partition unique GUID:"),
        first: first_word(field("First sector:")).parse().unwrap(),
        last: first_word(field("Last sector:")).parse().unwrap(),
        attributes: u64::from_str_radix(&field("Attribute flags:"), 16).unwrap(),
        name: name.trim_matches('\'').to_string(),
    }
}

/// Partition numbers listed by `sgdisk -p`.
pub fn sgdisk_numbers(img: &Path) -> Vec<u32> {
    let out = run("sgdisk", &["-p", p(img)]);
    let mut nums: Vec<u32> = out
        .lines()
        .skip_while(|l| !l.starts_with("Number"))
        .skip(1)
        .filter_map(|l| l.split_whitespace().next()?.parse().ok())
        .collect();
    nums.sort();
    nums
}

pub fn sgdisk_disk_guid(img: &Path) -> String {
    let out = run("sgdisk", &["-p", p(img)]);
    out.lines()
        .find_map(|l| l.strip_prefix("Disk identifier (GUID): "))
        .unwrap()
        .trim()
        .to_string()
}

/// `blkid -p` on a byte range: TYPE, LABEL, UUID.
pub fn blkid_range(
    img: &Path,
    offset: u64,
    size: u64,
) -> (Option<String>, Option<String>, Option<String>) {
    let out = Command::new("blkid")
        .args([
            "-p",
            "-o",
            "export",
            "-O",
            &offset.to_string(),
            "-S",
            &size.to_string(),
            p(img),
        ])
        .output()
        .expect("cannot run `blkid`: install util-linux");
    // Exit 2 means nothing found.
    assert!(
        matches!(out.status.code(), Some(0) | Some(2)),
        "blkid failed: {:?}",
        out
    );
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let get = |k: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(&format!("{k}=")))
            .map(unescape)
    };
    (get("TYPE"), get("LABEL"), get("UUID"))
}

/// Undoes `blkid -o export` quoting (a backslash before special characters).
fn unescape(v: &str) -> String {
    let mut out = String::new();
    let mut chars = v.chars();
    while let Some(c) = chars.next() {
        out.push(if c == '\\' {
            chars.next().unwrap_or(c)
        } else {
            c
        });
    }
    out
}

/// ext3/ext4 made by mke2fs inside the image at `offset`, no loop device needed.
pub fn mke2fs_at(img: &Path, fstype: &str, label: &str, uuid: &str, offset: u64, size: u64) {
    run(
        "mke2fs",
        &[
            "-q",
            "-F",
            "-t",
            fstype,
            "-L",
            label,
            "-U",
            uuid,
            "-E",
            &format!("offset={offset},hash_seed={uuid}"),
            p(img),
            &format!("{}k", size / 1024),
        ],
    );
}

/// Swap made by mkswap on a scratch file (this mkswap has no --offset), copied in place.
pub fn mkswap_at(dir: &TempDir, img: &Path, label: &str, uuid: &str, offset: u64, size: u64) {
    let scratch = dir.path("swap.scratch");
    sparse_file(&scratch, size);
    run("mkswap", &["-L", label, "-U", uuid, p(&scratch)]);
    copy_into(img, offset, &scratch, 64 * 1024);
    std::fs::remove_file(scratch).unwrap();
}

pub fn mkfs_vfat_at(img: &Path, label: &str, serial: &str, offset: u64, size: u64) {
    run(
        "mkfs.vfat",
        &[
            &format!("--offset={}", offset / 512),
            "-n",
            label,
            "-i",
            serial,
            p(img),
            &(size / 1024).to_string(),
        ],
    );
}

/// Loop device over a byte range, detached on drop.
pub struct Loop(pub String);

impl Loop {
    pub fn new(img: &Path, offset: u64, size: u64) -> Loop {
        let dev = run(
            "losetup",
            &[
                "--offset",
                &offset.to_string(),
                "--sizelimit",
                &size.to_string(),
                "--find",
                "--show",
                p(img),
            ],
        );
        Loop(dev.trim().to_string())
    }
}

impl Drop for Loop {
    fn drop(&mut self) {
        let _ = Command::new("losetup").args(["-d", &self.0]).status();
    }
}

/// LVM PV + VG made by pvcreate/vgcreate on a loop device over the partition's range.
pub fn pv_at(img: &Path, pv_uuid: &str, vg: &str, offset: u64, size: u64) {
    let lo = Loop::new(img, offset, size);
    run(
        "pvcreate",
        &[
            "--devices",
            &lo.0,
            "-ff",
            "-y",
            "--uuid",
            pv_uuid,
            "--norestorefile",
            "--metadatasize",
            "1m",
            &lo.0,
        ],
    );
    // No copies of the test VG's metadata in the host's /etc/lvm/{backup,archive}.
    let no_backup = "backup { backup = 0 archive = 0 }";
    run(
        "vgcreate",
        &["--devices", &lo.0, "--config", no_backup, vg, &lo.0],
    );
}

fn md_csum(sb: &[u8]) -> u32 {
    let mut sum: u64 = 0;
    for c in sb.chunks(4) {
        sum += if c.len() == 4 {
            u64::from(u32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        } else {
            u64::from(u16::from_le_bytes([c[0], c[1]]))
        };
    }
    ((sum & 0xffff_ffff) + (sum >> 32)) as u32
}

/// Writes an md 1.x RAID1 superblock (2 slots, this device slot 0) for a member of
/// `member_bytes` at `offset` in the image, as mdadm lays it out; returns where it went.
/// `minor` is 0, 1 or 2.
pub fn md1_superblock(
    img: &Path,
    offset: u64,
    member_bytes: u64,
    minor: u32,
    uuid: [u8; 16],
    name: &str,
) -> u64 {
    let sectors = member_bytes / 512;
    let (sb_sector, data_offset, data_size) = match minor {
        0 => ((sectors - 16) & !7, 0u64, ((sectors - 16) & !7) - 8),
        1 => (0, 2048, sectors - 2048),
        _ => (8, 2048, sectors - 2048),
    };
    let max_dev = 128u32;
    let mut sb = vec![0u8; 256 + 2 * max_dev as usize];
    sb[0..4].copy_from_slice(&0xa92b4efcu32.to_le_bytes());
    sb[4..8].copy_from_slice(&1u32.to_le_bytes());
    sb[16..32].copy_from_slice(&uuid);
    sb[32..32 + name.len()].copy_from_slice(name.as_bytes());
    sb[64..72].copy_from_slice(&1_700_000_000u64.to_le_bytes());
    sb[72..76].copy_from_slice(&1u32.to_le_bytes());
    sb[80..88].copy_from_slice(&data_size.to_le_bytes());
    sb[92..96].copy_from_slice(&2u32.to_le_bytes());
    sb[128..136].copy_from_slice(&data_offset.to_le_bytes());
    sb[136..144].copy_from_slice(&data_size.to_le_bytes());
    sb[144..152].copy_from_slice(&sb_sector.to_le_bytes());
    sb[168..184].copy_from_slice(&[0x42; 16]);
    sb[192..200].copy_from_slice(&1_700_000_000u64.to_le_bytes());
    sb[200..208].copy_from_slice(&1u64.to_le_bytes());
    sb[208..216].copy_from_slice(&u64::MAX.to_le_bytes());
    sb[220..224].copy_from_slice(&max_dev.to_le_bytes());
    for slot in 0..max_dev as usize {
        let role: u16 = match slot {
            0 => 0,
            1 => 1,
            _ => 0xffff,
        };
        sb[256 + 2 * slot..258 + 2 * slot].copy_from_slice(&role.to_le_bytes());
    }
    let csum = md_csum(&sb);
    sb[216..220].copy_from_slice(&csum.to_le_bytes());
    let at = offset + sb_sector * 512;
    write_at(img, at, &sb);
    at
}

/// Writes an md 0.90 RAID1 superblock at the end of a member (little-endian host).
pub fn md090_superblock(img: &Path, offset: u64, member_bytes: u64, uuid_words: [u32; 4]) -> u64 {
    let sectors = member_bytes / 512;
    let sb_sector = (sectors & !127) - 128;
    let mut words = [0u32; 1024];
    words[0] = 0xa92b4efc;
    words[1] = 0; // major
    words[2] = 90; // minor
    words[3] = 0; // patch
    words[4] = 0; // gvalid_words
    words[5] = uuid_words[0];
    words[6] = 1_700_000_000; // ctime
    words[7] = 1; // level
    words[8] = (sb_sector / 2) as u32; // size in KiB
    words[9] = 2; // nr_disks
    words[10] = 2; // raid_disks
    words[11] = 0; // md_minor
    words[13] = uuid_words[1];
    words[14] = uuid_words[2];
    words[15] = uuid_words[3];
    words[32] = 1_700_000_000; // utime
    words[33] = 1; // state clean
    words[34] = 2; // active
    words[35] = 2; // working
                   // events_hi/lo at 40/41
    words[41] = 1;
    let mut sum: u64 = words.iter().map(|w| u64::from(*w)).sum();
    sum = (sum & 0xffff_ffff) + (sum >> 32);
    words[38] = sum as u32;
    let bytes: Vec<u8> = words.iter().flat_map(|w| w.to_le_bytes()).collect();
    let at = offset + sb_sector * 512;
    write_at(img, at, &bytes);
    at
}

/// The XenServer 7.x layout, scaled down, in the installer's physical order 5,2,1,4,6,3.
/// Returns the image path. `boot_type` is `ef02` (BIOS) or `ef00` (UEFI); with `sr` false
/// boot takes number 3 and there is no p4.
pub fn xs7_gpt(img: &Path, size: u64, boot_type: &str, sr: bool) {
    sparse_file(img, size);
    let boot = if sr { 4 } else { 3 };
    let mut args: Vec<String> = vec!["-U".into(), "11111111-2222-4333-8444-555555555555".into()];
    let mut add = |n: u32, len: &str, ty: &str| {
        args.push(format!("-n{n}:0:{len}"));
        args.push(format!("-t{n}:{ty}"));
        args.push(format!("-u{n}:AAAAAAAA-0000-4000-8000-00000000000{n}"));
    };
    add(5, "+40M", "0700");
    add(2, "+64M", "0700");
    add(1, "+64M", "0700");
    add(boot, "+4M", boot_type);
    add(6, "+8M", "8200");
    if sr {
        add(3, "0", "8e00");
    }
    args.push(p(img).to_string());
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    run("sgdisk", &args);
}

/// Byte offset and size of partition `n` as sgdisk reports it (512-byte sectors).
pub fn part_range(img: &Path, n: u32) -> (u64, u64) {
    let i = sgdisk_info(img, n);
    (i.first * 512, (i.last - i.first + 1) * 512)
}

/// LVM kept to the device it is given and away from device-mapper (which this host
/// lacks): LVs stay inactive, no udev, no metadata backups in the host's /etc; PVs as
/// small as test seeds allowed.
pub const LVM_CONF: &str = "global { activation = 0 } \
    activation { udev_sync = 0 udev_rules = 0 monitoring = 0 } \
    backup { backup = 0 archive = 0 } devices { pv_min_size = 512 }";

/// An LVM tool that sees `dev` only.
pub fn lvm_on(tool: &str, dev: &str, args: &[&str]) -> String {
    let mut a = vec!["--devices", dev, "--config", LVM_CONF];
    a.extend_from_slice(args);
    run(tool, &a)
}

/// Where the PV on `dev` has its first extent, in bytes.
pub fn pe_start_bytes(dev: &str) -> u64 {
    lvm_on(
        "pvs",
        dev,
        &[
            "--noheadings",
            "--units",
            "b",
            "--nosuffix",
            "-o",
            "pe_start",
            dev,
        ],
    )
    .trim()
    .parse()
    .unwrap()
}

/// An LV of `size` (lvcreate's units) in `vg`, created inactive and not zeroed.
pub fn inactive_lv(dev: &str, vg: &str, name: &str, size: &str) {
    lvm_on(
        "lvcreate",
        dev,
        &["-an", "-Zn", "-y", "-L", size, "-n", name, vg],
    );
}

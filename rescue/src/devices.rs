//! Finding the machine's disks through sysfs: which block devices are disks, their
//! identity (model, serial, sector size), and waiting for them to settle after the
//! drivers are loaded. Plain file reads only.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// A disk the kernel exposes under `/sys/block`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BlockDisk {
    pub name: String,
    pub dev_path: PathBuf,
    pub size_bytes: u64,
    pub logical_sector_size: u32,
    pub model: Option<String>,
    pub serial: Option<String>,
    pub removable: bool,
    /// The kernel refuses writes (`ro` in sysfs: a write-protect switch, a read-only
    /// LUN or virtual disk).
    pub read_only: bool,
}

/// Kernel name prefixes that are never a physical disk we care about.
const NOT_DISKS: &[&str] = &["loop", "ram", "zram", "sr", "fd", "md", "dm-", "nbd", "zd"];

/// Lists the disks under `sys_block` (normally `/sys/block`), sorted by name, skipping
/// virtual devices and empty media.
pub fn list_disks(sys_block: &Path) -> Vec<BlockDisk> {
    let mut names: Vec<String> = match std::fs::read_dir(sys_block) {
        Ok(rd) => rd
            .filter_map(|e| e.ok())
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect(),
        Err(_) => return Vec::new(),
    };
    names.retain(|n| !NOT_DISKS.iter().any(|p| n.starts_with(p)));
    names.sort();
    names
        .into_iter()
        .filter_map(|name| {
            let dir = sys_block.join(&name);
            let sectors: u64 = read_trimmed(&dir.join("size"))?.parse().ok()?;
            if sectors == 0 {
                return None;
            }
            let logical_sector_size = read_trimmed(&dir.join("queue/logical_block_size"))
                .and_then(|s| s.parse().ok())
                .unwrap_or(512);
            Some(BlockDisk {
                dev_path: PathBuf::from("/dev").join(&name),
                size_bytes: sectors * 512,
                logical_sector_size,
                model: read_trimmed(&dir.join("device/model")).filter(|s| !s.is_empty()),
                serial: serial(&dir),
                removable: read_trimmed(&dir.join("removable")).as_deref() == Some("1"),
                read_only: read_trimmed(&dir.join("ro")).as_deref() == Some("1"),
                name,
            })
        })
        .collect()
}

/// The disk's serial: virtio has `serial`, NVMe `device/serial`, SCSI/SATA the
/// VPD page 0x80 (4-byte header, then ASCII).
fn serial(dir: &Path) -> Option<String> {
    for f in ["serial", "device/serial"] {
        if let Some(s) = read_trimmed(&dir.join(f)).filter(|s| !s.is_empty()) {
            return Some(s);
        }
    }
    let vpd = std::fs::read(dir.join("device/vpd_pg80")).ok()?;
    let len = usize::from(*vpd.get(3)?);
    let s = String::from_utf8_lossy(vpd.get(4..4 + len.min(vpd.len().saturating_sub(4)))?)
        .trim()
        .to_string();
    (!s.is_empty()).then_some(s)
}

fn read_trimmed(path: &Path) -> Option<String> {
    std::fs::read_to_string(path)
        .ok()
        .map(|s| s.trim().to_string())
}

/// How waiting for block devices ended.
#[derive(Debug, PartialEq, Eq)]
pub struct Settled {
    pub waited: Duration,
    /// False when the deadline passed while devices were still appearing.
    pub stable: bool,
}

/// Waits until the set of disks (with their sizes) has not changed for `quiet()` (asked
/// on every poll: the bus mix decides how patient to be), at most `deadline`. Some
/// buses report disks after their driver's module init returned (USB, HBA firmware
/// events), so "modules loaded" alone does not mean "disks present". `on_tick` runs on
/// every poll (coldplug: load drivers for devices that appeared); it returns true when
/// it changed something.
pub fn wait_for_settle(
    sys_block: &Path,
    quiet: impl Fn() -> Duration,
    deadline: Duration,
    mut on_tick: impl FnMut() -> bool,
) -> Settled {
    let start = Instant::now();
    let snapshot = || -> BTreeSet<(String, u64)> {
        list_disks(sys_block)
            .into_iter()
            .map(|d| (d.name, d.size_bytes))
            .collect()
    };
    let mut last = snapshot();
    let mut last_change = Instant::now();
    loop {
        // A round that saw a change is never the quiet one, however long it took: a poll
        // delayed by load must not pass for a quiet window.
        let mut changed = on_tick();
        std::thread::sleep(Duration::from_millis(25));
        let now = snapshot();
        if now != last {
            last = now;
            changed = true;
        }
        if changed {
            last_change = Instant::now();
        } else if last_change.elapsed() >= quiet() {
            return Settled {
                waited: start.elapsed(),
                stable: true,
            };
        }
        if start.elapsed() >= deadline {
            return Settled {
                waited: start.elapsed(),
                stable: false,
            };
        }
    }
}

/// Every device `modalias` under `sys_bus` (normally `/sys/bus`), sorted and deduplicated.
pub fn modaliases(sys_bus: &Path) -> Vec<String> {
    let mut out = BTreeSet::new();
    let Ok(buses) = std::fs::read_dir(sys_bus) else {
        return Vec::new();
    };
    for bus in buses.flatten() {
        let Ok(devs) = std::fs::read_dir(bus.path().join("devices")) else {
            continue;
        };
        for dev in devs.flatten() {
            if let Some(m) = read_trimmed(&dev.path().join("modalias")).filter(|m| !m.is_empty()) {
                out.insert(m);
            }
        }
    }
    out.into_iter().collect()
}

/// `/dev/<name>` of partition `number` of `disk`, as sysfs names it (`sda1`, `nvme0n1p1`).
pub fn partition_device(sys_block: &Path, disk: &str, number: u32) -> Option<PathBuf> {
    let entries = std::fs::read_dir(sys_block.join(disk)).ok()?;
    for e in entries.flatten() {
        let part_file = e.path().join("partition");
        if let Ok(n) = std::fs::read_to_string(&part_file) {
            if n.trim() == number.to_string() {
                return Some(PathBuf::from("/dev").join(e.file_name()));
            }
        }
    }
    None
}

/// Waits (up to `timeout`) for partition `number` of `disk` to appear after a table was
/// written or re-read; `/dev/<name>` as sysfs names it.
pub fn wait_for_partition(
    sys_block: &Path,
    disk: &str,
    number: u32,
    timeout: Duration,
) -> Result<PathBuf, String> {
    let start = Instant::now();
    loop {
        if let Some(p) = partition_device(sys_block, disk, number) {
            if p.exists() {
                return Ok(p);
            }
        }
        if start.elapsed() > timeout {
            return Err(format!(
                "partition {number} of {disk} did not appear within {} s",
                timeout.as_secs()
            ));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fake_sys_block() -> PathBuf {
        let dir = std::env::temp_dir().join(format!("xenraid-sysblock-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let mk = |name: &str, files: &[(&str, &[u8])]| {
            for (f, content) in files {
                let p = dir.join(name).join(f);
                std::fs::create_dir_all(p.parent().unwrap()).unwrap();
                std::fs::write(p, content).unwrap();
            }
        };
        mk(
            "vda",
            &[
                ("size", b"2097152\n"),
                ("queue/logical_block_size", b"512\n"),
                ("serial", b"SRC-1\n"),
            ],
        );
        mk(
            "sda",
            &[
                ("size", b"4194304\n"),
                ("queue/logical_block_size", b"4096\n"),
                ("device/model", b"QEMU HARDDISK   \n"),
                ("device/vpd_pg80", b"\x00\x80\x00\x06MIR-02"),
                ("ro", b"1\n"),
            ],
        );
        mk(
            "nvme0n1",
            &[("size", b"8\n"), ("device/serial", b"  NV1  \n")],
        );
        mk("loop0", &[("size", b"100\n")]);
        mk("sr0", &[("size", b"0\n")]);
        mk("sdb", &[("size", b"0\n"), ("removable", b"1\n")]);
        dir
    }

    #[test]
    fn lists_real_disks_with_identity() {
        let dir = fake_sys_block();
        let disks = list_disks(&dir);
        let summary: Vec<_> = disks
            .iter()
            .map(|d| {
                (
                    d.name.as_str(),
                    d.size_bytes,
                    d.logical_sector_size,
                    d.model.as_deref(),
                    d.serial.as_deref(),
                )
            })
            .collect();
        assert_eq!(
            summary,
            vec![
                ("nvme0n1", 4096, 512, None, Some("NV1")),
                (
                    "sda",
                    2147483648,
                    4096,
                    Some("QEMU HARDDISK"),
                    Some("MIR-02")
                ),
                ("vda", 1073741824, 512, None, Some("SRC-1")),
            ]
        );
        let ro: Vec<_> = disks
            .iter()
            .filter(|d| d.read_only)
            .map(|d| d.name.as_str())
            .collect();
        assert_eq!(ro, ["sda"], "only the disk whose sysfs says ro=1");
        let settled = wait_for_settle(
            &dir,
            || Duration::from_millis(50),
            Duration::from_secs(5),
            || false,
        );
        assert!(settled.stable);
        let mut ticks = 0;
        // A tick that changes something on every poll never settles, however slow the
        // polls get under load (a stalled round used to pass for the quiet window).
        let busy = wait_for_settle(
            &dir,
            || Duration::from_millis(400),
            Duration::from_millis(1000),
            || {
                ticks += 1;
                true
            },
        );
        // Never settled although the quiet window is far shorter than the deadline, and
        // the tick ran on more than one poll (how many depends on the machine's load).
        assert!(
            !busy.stable && busy.waited >= Duration::from_millis(1000) && ticks >= 2,
            "a tick that keeps changing things must hit the deadline ({ticks} ticks)"
        );
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn partition_devices_from_sysfs() {
        let dir = std::env::temp_dir().join(format!("xenraid-partdev-{}", std::process::id()));
        for (p, n) in [
            ("nvme0n1/nvme0n1p1", "1"),
            ("nvme0n1/nvme0n1p2", "2"),
            ("sda/sda1", "1"),
        ] {
            std::fs::create_dir_all(dir.join(p)).unwrap();
            std::fs::write(dir.join(p).join("partition"), format!("{n}\n")).unwrap();
        }
        assert_eq!(
            partition_device(&dir, "nvme0n1", 2),
            Some(PathBuf::from("/dev/nvme0n1p2"))
        );
        assert_eq!(
            partition_device(&dir, "sda", 1),
            Some(PathBuf::from("/dev/sda1"))
        );
        assert_eq!(partition_device(&dir, "sda", 3), None);
        std::fs::remove_dir_all(dir).unwrap();
    }
}

/// Kernel modules that drive the disk `name` and the controllers above it (`sd_mod`,
/// `ahci`, `nvme`, `virtio_blk`, ...), read from the `driver/module` links of the disk's
/// device and its parents in `sys_block` (normally `/sys/block`). Built-in drivers have
/// no module link and are left out: they need no module in an initramfs.
pub fn driver_modules(sys_block: &Path, name: &str) -> Vec<String> {
    let mut out = Vec::new();
    let Ok(mut dir) = std::fs::canonicalize(sys_block.join(name).join("device")) else {
        return out;
    };
    loop {
        if let Ok(m) = std::fs::read_link(dir.join("driver/module")) {
            if let Some(n) = m.file_name().map(|n| n.to_string_lossy().into_owned()) {
                if !out.contains(&n) {
                    out.push(n);
                }
            }
        }
        if !dir.pop() || dir.as_os_str() == "/sys/devices" {
            break;
        }
    }
    out
}

#[cfg(test)]
mod driver_tests {
    use super::*;

    /// A sysfs-shaped tree: sda under an AHCI PCI function, module links as the kernel
    /// makes them.
    #[test]
    fn modules_of_the_disk_and_its_controllers() {
        let t = std::env::temp_dir().join(format!("xr-sysfs-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&t);
        let pci = t.join("devices/pci0000:00/0000:00:1f.2");
        let disk = pci.join("ata1/host0/target0:0:0/0:0:0:0");
        std::fs::create_dir_all(disk.join("driver")).unwrap();
        std::fs::create_dir_all(pci.join("driver")).unwrap();
        std::fs::create_dir_all(t.join("module/sd_mod")).unwrap();
        std::fs::create_dir_all(t.join("module/ahci")).unwrap();
        std::os::unix::fs::symlink(t.join("module/sd_mod"), disk.join("driver/module")).unwrap();
        std::os::unix::fs::symlink(t.join("module/ahci"), pci.join("driver/module")).unwrap();
        std::fs::create_dir_all(t.join("block/sda")).unwrap();
        std::os::unix::fs::symlink(&disk, t.join("block/sda/device")).unwrap();
        assert_eq!(driver_modules(&t.join("block"), "sda"), ["sd_mod", "ahci"]);
        assert!(driver_modules(&t.join("block"), "sdz").is_empty());
        std::fs::remove_dir_all(&t).unwrap();
    }
}

//! The kernel's md driver: make array devices, start arrays from members whose
//! superblocks we wrote, hot-add members, stop arrays, and read their state from sysfs.
//! ioctl numbers and structs are from `include/uapi/linux/raid/md_u.h` (x86_64).

use rustix::ioctl::{ioctl, Getter, IntegerSetter, Opcode, Setter};
use std::fs::File;
use std::io;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

const GET_ARRAY_INFO: Opcode = 0x8048_0911;
const ADD_NEW_DISK: Opcode = 0x4014_0921;
const SET_ARRAY_INFO: Opcode = 0x4048_0923;
const RUN_ARRAY: Opcode = 0x400c_0930;
const STOP_ARRAY: Opcode = 0x0000_0932;

/// `mdu_array_info_t`: 18 ints.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
struct ArrayInfo {
    major_version: i32,
    minor_version: i32,
    patch_version: i32,
    ctime: i32,
    level: i32,
    size: i32,
    nr_disks: i32,
    raid_disks: i32,
    md_minor: i32,
    not_persistent: i32,
    utime: i32,
    state: i32,
    active_disks: i32,
    working_disks: i32,
    failed_disks: i32,
    spare_disks: i32,
    layout: i32,
    chunk_size: i32,
}

/// `mdu_disk_info_t`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
struct DiskInfo {
    number: i32,
    major: i32,
    minor: i32,
    raid_disk: i32,
    state: i32,
}

const MD_DISK_ACTIVE: i32 = 1 << 1;
const MD_DISK_SYNC: i32 = 1 << 2;

/// A block device's major:minor.
pub fn dev_numbers(path: &Path) -> io::Result<(u32, u32)> {
    let meta = std::fs::metadata(path)?;
    if !meta.file_type().is_block_device() {
        return Err(io::Error::other(format!(
            "{} is not a block device",
            path.display()
        )));
    }
    let rdev = meta.rdev();
    Ok((rustix::fs::major(rdev), rustix::fs::minor(rdev)))
}

/// Creates `/dev/mdN` (through `new_array`) and waits for devtmpfs to show it.
pub fn create_device(n: u32) -> io::Result<PathBuf> {
    let dev = PathBuf::from(format!("/dev/md{n}"));
    if !Path::new(&format!("/sys/block/md{n}")).exists() {
        match std::fs::write("/sys/module/md_mod/parameters/new_array", format!("md{n}")) {
            Ok(()) => {}
            Err(e) if e.raw_os_error() == Some(rustix::io::Errno::EXIST.raw_os_error()) => {}
            Err(e) => {
                return Err(io::Error::other(format!(
                    "create md{n}: {e} (is md_mod loaded?)"
                )))
            }
        }
    }
    wait_for_path(&dev, Duration::from_secs(5))?;
    Ok(dev)
}

pub fn wait_for_path(p: &Path, timeout: Duration) -> io::Result<()> {
    let start = Instant::now();
    while !p.exists() {
        if start.elapsed() > timeout {
            return Err(io::Error::other(format!(
                "{} did not appear within {} s",
                p.display(),
                timeout.as_secs()
            )));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    Ok(())
}

/// Starts an array from members whose 1.x/0.90 superblocks are already on disk
/// (what `mdadm --assemble` and `--create ... missing` do after writing them).
/// `members` are (device, slot) pairs.
pub fn start_array(
    md: &Path,
    major_version: i32,
    minor_version: i32,
    members: &[(PathBuf, u32)],
) -> io::Result<()> {
    let fd = File::options().read(true).write(true).open(md)?;
    let info = ArrayInfo {
        major_version,
        minor_version,
        ..Default::default()
    };
    // raid_disks 0: "load superblocks of this format", not "build a 0.90 array".
    unsafe { ioctl(&fd, Setter::<SET_ARRAY_INFO, ArrayInfo>::new(info)) }
        .map_err(|e| io::Error::other(format!("SET_ARRAY_INFO on {}: {e}", md.display())))?;
    for (dev, slot) in members {
        let (major, minor) = dev_numbers(dev)?;
        let disk = DiskInfo {
            number: *slot as i32,
            major: major as i32,
            minor: minor as i32,
            raid_disk: *slot as i32,
            state: MD_DISK_ACTIVE | MD_DISK_SYNC,
        };
        if let Err(e) = unsafe { ioctl(&fd, Setter::<ADD_NEW_DISK, DiskInfo>::new(disk)) } {
            let _ = unsafe { ioctl(&fd, IntegerSetter::<STOP_ARRAY>::new_usize(0)) };
            return Err(io::Error::other(format!(
                "the kernel refused {} as a member of {} ({e}): its superblock does not match",
                dev.display(),
                md.display()
            )));
        }
    }
    if let Err(e) = unsafe { ioctl(&fd, IntegerSetter::<RUN_ARRAY>::new_usize(0)) } {
        let _ = unsafe { ioctl(&fd, IntegerSetter::<STOP_ARRAY>::new_usize(0)) };
        return Err(io::Error::other(format!(
            "RUN_ARRAY on {}: {e}",
            md.display()
        )));
    }
    Ok(())
}

/// Adds a member (with a spare superblock for this array already written) to a running
/// array; the kernel starts recovery onto it.
pub fn hot_add(md: &Path, dev: &Path) -> io::Result<()> {
    let fd = File::options().read(true).write(true).open(md)?;
    let (major, minor) = dev_numbers(dev)?;
    let disk = DiskInfo {
        number: 0,
        major: major as i32,
        minor: minor as i32,
        raid_disk: 0,
        state: 0,
    };
    unsafe { ioctl(&fd, Setter::<ADD_NEW_DISK, DiskInfo>::new(disk)) }
        .map_err(|e| io::Error::other(format!("adding {} to {}: {e}", dev.display(), md.display())))
}

/// Re-adds a member that was in the array before (`mdadm --re-add`): the kernel takes it
/// back in its old slot and, with a bitmap, recovers only the chunks written since it
/// left. EINVAL when the kernel cannot (no bitmap, or the member is older than what the
/// bitmap remembers): then add it as a new member.
pub fn re_add(md: &Path, dev: &Path, dev_number: u32, slot: u32) -> io::Result<()> {
    let fd = File::options().read(true).write(true).open(md)?;
    let (major, minor) = dev_numbers(dev)?;
    let disk = DiskInfo {
        number: dev_number as i32,
        major: major as i32,
        minor: minor as i32,
        raid_disk: slot as i32,
        state: MD_DISK_SYNC,
    };
    unsafe { ioctl(&fd, Setter::<ADD_NEW_DISK, DiskInfo>::new(disk)) }.map_err(|e| {
        io::Error::other(format!(
            "re-adding {} to {}: {e}",
            dev.display(),
            md.display()
        ))
    })
}

pub fn stop_array(md: &Path) -> io::Result<()> {
    let fd = File::options().read(true).write(true).open(md)?;
    unsafe { ioctl(&fd, IntegerSetter::<STOP_ARRAY>::new_usize(0)) }
        .map_err(|e| io::Error::other(format!("STOP_ARRAY on {}: {e}", md.display())))
}

/// Number of working members, or None when the device holds no running array.
pub fn working_disks(md: &Path) -> io::Result<Option<u32>> {
    let fd = File::open(md)?;
    match unsafe { ioctl(&fd, Getter::<GET_ARRAY_INFO, ArrayInfo>::new()) } {
        Ok(info) => Ok(Some(info.working_disks.max(0) as u32)),
        Err(rustix::io::Errno::NODEV) => Ok(None),
        Err(e) => Err(io::Error::from(e)),
    }
}

/// What sysfs says about a running array.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ArrayState {
    pub array_state: String,
    pub degraded: u32,
    /// `idle`, `recover`, `resync`, ...
    pub sync_action: String,
    /// (done, total) sectors while a sync runs.
    pub sync_completed: Option<(u64, u64)>,
    /// Array size in 512-byte sectors.
    pub size_sectors: u64,
}

pub fn array_state(md_name: &str) -> io::Result<ArrayState> {
    let base = PathBuf::from("/sys/block").join(md_name);
    let read = |f: &str| std::fs::read_to_string(base.join(f)).map(|s| s.trim().to_string());
    let sync_completed = read("md/sync_completed").ok().and_then(|s| {
        let (a, b) = s.split_once('/')?;
        Some((a.trim().parse().ok()?, b.trim().parse().ok()?))
    });
    Ok(ArrayState {
        array_state: read("md/array_state")?,
        degraded: read("md/degraded")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or(0),
        sync_action: read("md/sync_action").unwrap_or_default(),
        sync_completed,
        size_sectors: read("size").ok().and_then(|s| s.parse().ok()).unwrap_or(0),
    })
}

/// Asks the kernel to re-read a disk's partition table (after we wrote a new one).
pub fn reread_partitions(disk: &Path) -> io::Result<()> {
    const BLKRRPART: Opcode = 0x125f;
    let fd = File::open(disk)?;
    unsafe { ioctl(&fd, rustix::ioctl::NoArg::<BLKRRPART>::new()) }.map_err(|e| {
        io::Error::other(format!(
            "re-reading the partition table of {}: {e}",
            disk.display()
        ))
    })
}

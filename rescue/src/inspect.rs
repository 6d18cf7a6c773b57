//! Read-only inspection of a disk: partition table, per-partition content found by
//! signature, and whether the disk looks like a XenServer install.
//!
//! The same code runs on image files (host CLI, tests) and on block devices (PID 1).
//! It never writes: every entry point takes `Read + Seek`.

use serde::{Deserialize, Serialize};

/// One disk as reported in `RESCUE-REPORT.disks[]`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Disk {
    /// Kernel name (`sda`, `nvme0n1`) or the image file's name.
    pub name: String,
    /// `/dev/...` or the image path as given.
    pub path: String,
    pub size_bytes: u64,
    pub logical_sector_size: u32,
    pub model: Option<String>,
    pub serial: Option<String>,
    /// `"gpt"`, `"mbr"`, or `None` when there is no partition table.
    pub table: Option<String>,
    /// GPT disk GUID (upper-case, hyphenated).
    pub disk_guid: Option<String>,
    pub partitions: Vec<Partition>,
    /// Signature found on the whole disk when it has no partition table (md member on a
    /// whole disk, a filesystem without a table, ...).
    pub whole_disk: Option<Content>,
    /// True when no partition table and no known signature was found at either end.
    pub blank: bool,
    /// Set when the disk looks like a XenServer install.
    pub xenserver: Option<XenServer>,
}

/// One partition in `disks[].partitions[]`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Partition {
    pub number: u32,
    pub start_lba: u64,
    pub size_bytes: u64,
    /// GPT partition type GUID (upper-case, hyphenated); `None` on MBR.
    pub type_guid: Option<String>,
    /// MBR partition type byte; `None` on GPT.
    pub mbr_type: Option<u8>,
    /// GPT partition name.
    pub name: Option<String>,
    /// GPT attribute bits (bit 2 = legacy BIOS bootable).
    pub attributes: u64,
    /// `ext2`, `ext3`, `ext4`, `swap`, `vfat`, `linux_raid_member`, `LVM2_member`, or `None`.
    pub fs_type: Option<String>,
    pub label: Option<String>,
    pub uuid: Option<String>,
    /// Details of the content beyond type/label/uuid.
    pub content: Option<Content>,
    /// Role in a XenServer layout: `root`, `backup`, `logs`, `swap`, `boot`, `sr`.
    pub role: Option<String>,
}

/// What a signature scan found at the start (or end) of a block range.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Content {
    Ext {
        version: String,
        label: Option<String>,
        uuid: String,
    },
    Swap {
        label: Option<String>,
        uuid: Option<String>,
    },
    Vfat {
        label: Option<String>,
        serial: String,
    },
    MdMember {
        metadata: String,
        array_uuid: String,
        name: Option<String>,
    },
    LvmPv {
        pv_uuid: String,
        vg_name: Option<String>,
    },
}

/// XenServer recognition result.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct XenServer {
    /// `"7.x"` (GPT root/backup/logs/boot/swap/SR) or `"6.x"` (root/backup/SR).
    pub layout: String,
    /// The shared label suffix (`vgdorj` in `root-vgdorj`).
    pub label_suffix: String,
    /// True when a local SR partition (LVM PV) is present.
    pub has_local_sr: bool,
}

//! Rewriting the converted host's own files so it boots from, and keeps using, the md RAID1
//! arrays the rescue built. Everything here is text in, text out, except [`apply`] (plain file
//! I/O under a root directory) and [`kernels`] (reads kernel headers under that root).
//!
//! Why each change is made (pitfalls from `xenserver.md` and the manual guides in the seeds):
//! - [`fstab`]: the block copy keeps filesystem UUIDs and labels, but a label or a UUID is also
//!   visible on a raw 1.0-metadata member; `UUID=` of the filesystem resolves through udev to
//!   the md device because blkid reports members as `linux_raid_member`. Guides that write
//!   `/dev/md0` (seed 001, 000) break when md numbering changes.
//! - [`grub`]/[`extlinux`]: the dom0 kernel needs `root=UUID=` and `rd.md.uuid=` for every
//!   array needed before the root switch (root, logs, swap), otherwise dracut does not assemble
//!   them, or a stale `rd.md=0`/`rd.auto=0` forbids it. GRUB must load `diskfilter` and
//!   `mdraid1x` to read /boot from md and must find the root by filesystem UUID, which works on
//!   a clean, a degraded, and a raw member alike (seed 001 hard-codes `(md/0)` instead).
//! - [`mdadm`]/[`dracut`]: an initramfs without `raid1` and `mdadm.conf` does not assemble the
//!   root array and a degraded boot fails.
//! - [`sysconf`]: `/etc/xensource-inventory` and the firstboot storage config name the disk;
//!   the vendor tools read them on upgrades and first boot.
//! - [`lvm`]: with 1.0 metadata the raw member and the md device expose the same PV; LVM must
//!   skip md components or it may activate the SR on one disk behind md's back.
//! - [`statedb`]: the local SR's PBD names the old partition; xapi would plug the raw
//!   partition instead of the array.
//! - [`kernels`]: the initrd must be rebuilt for the target's kernel, read from the kernel
//!   image itself: `uname -r` inside a chroot names the rescue kernel (seed 001's bug).

pub mod apply;
pub mod dracut;
pub mod extlinux;
pub mod fstab;
pub mod grub;
mod kargs;
pub mod kernels;
pub mod lvm;
pub mod mdadm;
pub mod statedb;
pub mod sysconf;

pub use apply::{apply, ChangedFile};

use serde::{Deserialize, Serialize};
use std::path::PathBuf;

/// What an array holds on the converted host.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    Root,
    Backup,
    Logs,
    Swap,
    Sr,
    /// The EFI system partition, mounted on `/boot/efi`.
    Esp,
}

impl Role {
    /// Arrays the initrd assembles. All of them: dracut starts a listed array degraded
    /// when a disk is missing (after `rd.retry`), while an array left to the booted host's
    /// incremental assembly stays inactive with one member, and a local SR on it would be
    /// missing after a disk failure (seen on the converted fixture booted from one disk).
    pub fn assembled_by_initrd(self) -> bool {
        true
    }
}

/// One md RAID1 array created by the conversion.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ArrayInfo {
    pub role: Role,
    /// Stable name for config files, e.g. `/dev/md/root`.
    pub device: String,
    /// md superblock name, e.g. `xenserver:root`.
    pub name: String,
    /// mdadm form `xxxxxxxx:xxxxxxxx:xxxxxxxx:xxxxxxxx`.
    pub uuid: String,
    /// `1.0`, `1.2` or `0.90`.
    pub metadata: String,
    /// Filesystem or swap UUID inside (None for an LVM PV).
    pub fs_uuid: Option<String>,
    pub fs_label: Option<String>,
}

impl ArrayInfo {
    /// The udev link dom0 gets for this array (`md-uuid-` + the mdadm-form UUID).
    pub fn by_id_path(&self) -> String {
        format!("/dev/disk/by-id/md-uuid-{}", self.uuid)
    }
}

/// The whole conversion as far as the target's files are concerned.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Conversion {
    pub arrays: Vec<ArrayInfo>,
    /// The 6-letter suffix the installer gave all labels (`root-<suffix>`).
    pub label_suffix: String,
    /// Device paths that named the local SR partition before the conversion (the PBD's
    /// `device-config:device`, e.g. `/dev/disk/by-id/scsi-...-part3`). Rewritten in xapi's
    /// database; the firstboot storage config's old value is added by [`apply`] itself.
    #[serde(default)]
    pub sr_old_devices: Vec<String>,
    /// `root=` names the root array's device instead of its filesystem UUID: for an
    /// initrd (Red Hat's `mkinitrd`) whose blkid would also find that UUID on a raw 0.90 or
    /// 1.0 member, and which starts the array as this device by autodetection.
    #[serde(default)]
    pub root_by_device: Option<String>,
}

impl Conversion {
    pub fn array(&self, role: Role) -> Option<&ArrayInfo> {
        self.arrays.iter().find(|a| a.role == role)
    }

    /// The root array and its filesystem UUID, which every boot config needs.
    pub fn root(&self) -> Result<(&ArrayInfo, &str), TargetError> {
        let root = self.array(Role::Root).ok_or(TargetError::NoRootArray)?;
        let fs_uuid = root
            .fs_uuid
            .as_deref()
            .ok_or_else(|| TargetError::MissingFsUuid {
                role: Role::Root,
                device: root.device.clone(),
            })?;
        Ok((root, fs_uuid))
    }

    /// The label the installer gave the root filesystem.
    pub fn root_label(&self) -> Option<String> {
        match self.array(Role::Root) {
            Some(ArrayInfo {
                fs_label: Some(l), ..
            }) => Some(l.clone()),
            _ if !self.label_suffix.is_empty() => Some(format!("root-{}", self.label_suffix)),
            _ => None,
        }
    }

    /// Checks what the rewriters rely on: one array per role, mdadm-form UUIDs, a known
    /// metadata version, and a filesystem UUID on every array mounted or swapped on.
    pub fn validate(&self) -> Result<(), TargetError> {
        self.root()?;
        for (i, a) in self.arrays.iter().enumerate() {
            if self.arrays[..i].iter().any(|b| b.role == a.role) {
                return Err(TargetError::DuplicateRole { role: a.role });
            }
            if !is_mdadm_uuid(&a.uuid) {
                return Err(TargetError::BadArrayUuid {
                    device: a.device.clone(),
                    uuid: a.uuid.clone(),
                });
            }
            if !matches!(a.metadata.as_str(), "1.0" | "1.2" | "0.90") {
                return Err(TargetError::BadMetadata {
                    device: a.device.clone(),
                    metadata: a.metadata.clone(),
                });
            }
            if matches!(a.role, Role::Root | Role::Logs | Role::Swap | Role::Esp)
                && a.fs_uuid.is_none()
            {
                return Err(TargetError::MissingFsUuid {
                    role: a.role,
                    device: a.device.clone(),
                });
            }
            let bad_text = |s: &str| s.is_empty() || s.chars().any(|c| c.is_whitespace());
            if bad_text(&a.device)
                || bad_text(&a.name)
                || a.fs_uuid.as_deref().is_some_and(bad_text)
                || a.fs_label.as_deref().is_some_and(bad_text)
            {
                return Err(TargetError::BadText {
                    device: a.device.clone(),
                });
            }
        }
        Ok(())
    }
}

/// `xxxxxxxx:xxxxxxxx:xxxxxxxx:xxxxxxxx`, hex.
pub fn is_mdadm_uuid(s: &str) -> bool {
    let groups: Vec<&str> = s.split(':').collect();
    groups.len() == 4
        && groups
            .iter()
            .all(|g| g.len() == 8 && g.bytes().all(|b| b.is_ascii_hexdigit()))
}

#[derive(Debug, thiserror::Error)]
pub enum TargetError {
    #[error("the conversion has no root array: the boot configuration cannot be rewritten without one; check the plan's array list")]
    NoRootArray,
    #[error("the {role:?} array {device} has no filesystem UUID: pass the UUID the copy preserved (blkid of the source partition)")]
    MissingFsUuid { role: Role, device: String },
    #[error("two arrays have the role {role:?}: give each role at most one array")]
    DuplicateRole { role: Role },
    #[error("array {device} has UUID {uuid:?}, not in mdadm form xxxxxxxx:xxxxxxxx:xxxxxxxx:xxxxxxxx: pass the UUID as mdadm --detail prints it")]
    BadArrayUuid { device: String, uuid: String },
    #[error("array {device} has metadata {metadata:?}: only 1.0, 1.2 and 0.90 are supported")]
    BadMetadata { device: String, metadata: String },
    #[error("array {device} has an empty name, device, UUID or label, or one with whitespace: config files cannot hold it; fix the plan")]
    BadText { device: String },
    #[error("{path}: {source}; check that the target root is mounted read-write")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path} is not UTF-8 text: refusing to rewrite it; inspect the file by hand")]
    NotText { path: PathBuf },
    #[error("{what}: {reason}")]
    Unparsable { what: String, reason: String },
    #[error("{path}: {reason}")]
    Kernel { path: PathBuf, reason: String },
    #[error("no boot entries found in {searched}: the target has no GRUB or extlinux configuration we understand; regenerate the initrd by hand")]
    NoBootEntries { searched: String },
}

impl TargetError {
    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        TargetError::Io {
            path: path.into(),
            source,
        }
    }
}

/// Splits text into lines keeping each line's terminator, so untouched lines stay byte-exact.
pub(crate) fn lines_with_endings(text: &str) -> impl Iterator<Item = (&str, &str)> {
    text.split_inclusive('\n').map(|l| {
        let body = l.strip_suffix('\n').unwrap_or(l);
        let body = body.strip_suffix('\r').unwrap_or(body);
        (body, &l[body.len()..])
    })
}

/// The leading whitespace of a line.
pub(crate) fn indent_of(line: &str) -> &str {
    &line[..line.len() - line.trim_start().len()]
}

#[cfg(test)]
pub(crate) mod testdata {
    use super::*;

    /// A 7.x BIOS host with local SR, as `xenserver.md` describes it (suffix `vgdorj`).
    pub fn conv7() -> Conversion {
        let a = |role, dev: &str, uuid: &str, md: &str, fs: Option<&str>, label: Option<&str>| {
            ArrayInfo {
                role,
                device: format!("/dev/md/{dev}"),
                name: format!("xenserver:{dev}"),
                uuid: uuid.into(),
                metadata: md.into(),
                fs_uuid: fs.map(Into::into),
                fs_label: label.map(Into::into),
            }
        };
        Conversion {
            arrays: vec![
                a(
                    Role::Root,
                    "root",
                    "b6eafb52:53b1c0ed:03b029cd:ce0fa6bf",
                    "1.0",
                    Some("0f3c5a0e-7d6b-4f57-9a3c-1c2d3e4f5a6b"),
                    Some("root-vgdorj"),
                ),
                a(
                    Role::Backup,
                    "backup",
                    "7b4bae54:236b1e2f:7f1a7a0e:e4610009",
                    "1.0",
                    None,
                    None,
                ),
                a(
                    Role::Logs,
                    "logs",
                    "4a064db1:0c8e8f42:76810417:5cf0ecbd",
                    "1.2",
                    Some("5e1b2c3d-4e5f-4a6b-8c7d-9e0f1a2b3c4d"),
                    Some("logs-vgdorj"),
                ),
                a(
                    Role::Swap,
                    "swap",
                    "30dfc30a:1c8031bf:93d8c760:24186100",
                    "1.2",
                    Some("a1b2c3d4-e5f6-4789-abcd-ef0123456789"),
                    Some("swap-vgdorj"),
                ),
                a(
                    Role::Sr,
                    "sr",
                    "0c082894:f0f24c6b:43bf4045:0970c253",
                    "1.2",
                    None,
                    None,
                ),
            ],
            label_suffix: "vgdorj".into(),
            sr_old_devices: vec![],
            root_by_device: None,
        }
    }

    #[test]
    fn validate_accepts_realistic_and_rejects_bad() {
        assert!(conv7().validate().is_ok());
        let mut c = conv7();
        c.arrays[0].uuid = "b6eafb52-53b1".into();
        assert!(matches!(
            c.validate(),
            Err(TargetError::BadArrayUuid { .. })
        ));
        let mut c = conv7();
        c.arrays.remove(0);
        assert!(matches!(c.validate(), Err(TargetError::NoRootArray)));
        let mut c = conv7();
        c.arrays[2].fs_uuid = None;
        assert!(matches!(
            c.validate(),
            Err(TargetError::MissingFsUuid {
                role: Role::Logs,
                ..
            })
        ));
        let mut c = conv7();
        c.arrays[1].role = Role::Root;
        assert!(matches!(
            c.validate(),
            Err(TargetError::DuplicateRole { role: Role::Root })
        ));
    }

    #[test]
    fn role_serde_is_snake_case() {
        assert_eq!(serde_json::to_string(&Role::Sr).unwrap(), "\"sr\"");
        let c: Conversion =
            serde_json::from_str(r#"{"arrays":[],"label_suffix":"abcdef"}"#).unwrap();
        assert!(c.sr_old_devices.is_empty());
    }
}

//! The host's boot chain: what firmware runs from the disk, which configuration file names
//! the root, which tool builds the initrd, and what each disk needs written so that it
//! boots alone. Chosen in preflight from what inspect found and carried in the plan (so a
//! resumed job keeps it); everything else in the conversion (partitioning, arrays, copy,
//! attach) is shared by all chains.

use super::plan::ArrayRole;
use crate::formats::md::MetadataVersion;
use crate::inspect::Disk;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum BootChain {
    /// XenServer 7.x/8.x on BIOS: GRUB2 (`i386-pc`) in the MBR and the BIOS boot
    /// partition, `/boot/grub/grub.cfg`.
    #[default]
    GrubBios,
    /// XenServer 6.x: `gptmbr.bin` in the MBR finds the partition with the legacy BIOS
    /// bootable attribute (root) and runs extlinux's boot sector there,
    /// `/boot/extlinux.conf`.
    ExtlinuxBios,
    /// XenServer 7.x/8.x on UEFI: the firmware's boot entry starts GRUB from the EFI
    /// system partition (`\EFI\xenserver\grubx64.efi`), whose grub.cfg is on the ESP.
    GrubEfi,
}

/// GPT attribute bit 2: "legacy BIOS bootable", what `gptmbr.bin` looks for.
pub const LEGACY_BIOS_BOOTABLE: u64 = 1 << 2;

/// Where distributions put syslinux's GPT MBR code, newest layout first.
const GPTMBR_PATHS: &[&str] = &[
    "usr/lib/syslinux/mbr/gptmbr.bin",
    "usr/lib/SYSLINUX/gptmbr.bin",
    "usr/share/syslinux/gptmbr.bin",
    "usr/lib/syslinux/gptmbr.bin",
    "usr/lib/extlinux/gptmbr.bin",
];

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum BootChainError {
    #[error("{0} is a XenServer install with neither the 6.x nor the 7.x layout ({1}): convert it by hand")]
    UnknownLayout(String, String),
    #[error("the target has no gptmbr.bin (looked in /{}): install its syslinux package, or copy gptmbr.bin there, and run again", GPTMBR_PATHS.join(", /"))]
    NoGptMbr,
    #[error("{0} is {1} bytes, not syslinux's 440-byte gptmbr.bin: replace it with the file from the target's syslinux package")]
    BadGptMbr(String, u64),
    #[error("the target has neither dracut nor mkinitrd in /sbin, /usr/sbin or /usr/bin: it cannot build an initrd that assembles the arrays")]
    NoInitrdTool,
}

impl BootChain {
    /// The chain of a XenServer install as inspect recognised it.
    pub fn of(source: &Disk) -> Result<BootChain, BootChainError> {
        let layout = source
            .xenserver
            .as_ref()
            .map(|x| x.layout.as_str())
            .unwrap_or("none");
        let esp = source
            .partitions
            .iter()
            .any(|p| p.type_guid.as_deref() == Some(crate::formats::gpt::types::EFI_SYSTEM));
        match layout {
            "7.x" if esp => Ok(BootChain::GrubEfi),
            "7.x" => Ok(BootChain::GrubBios),
            "6.x" => Ok(BootChain::ExtlinuxBios),
            other => Err(BootChainError::UnknownLayout(
                source.path.clone(),
                other.into(),
            )),
        }
    }

    pub fn describe(self) -> &'static str {
        match self {
            BootChain::GrubBios => "GRUB2 on BIOS (XenServer 7.x/8.x)",
            BootChain::ExtlinuxBios => "extlinux on BIOS with gptmbr.bin (XenServer 6.x)",
            BootChain::GrubEfi => "GRUB2 on UEFI (XenServer 7.x/8.x)",
        }
    }

    /// The boot configuration that names the root.
    pub fn config_file(self) -> &'static str {
        match self {
            BootChain::GrubBios => "/boot/grub/grub.cfg",
            BootChain::ExtlinuxBios => "/boot/extlinux.conf",
            BootChain::GrubEfi => "/boot/efi/EFI/xenserver/grub.cfg",
        }
    }

    /// md metadata per role when the operator does not choose. Root and backup hold
    /// /boot (or its copy): the superblock at the end keeps the filesystem at offset 0 of
    /// each member, so a bootloader that cannot read md sees a plain filesystem on either
    /// disk. On 6.x root takes 0.90: a `mkinitrd` initrd starts its root array with
    /// `raidautorun`, the kernel's autodetection, which knows 0.90 only (and extlinux
    /// reads 0.90 members as well as 1.0). Logs, swap and the SR get 1.2: the superblock
    /// at the start means no tool can mistake a raw member for the filesystem or, worse,
    /// for the LVM PV.
    pub fn default_metadata(self, role: ArrayRole) -> MetadataVersion {
        match (self, role) {
            (BootChain::ExtlinuxBios, ArrayRole::Root) => MetadataVersion::V0_90,
            (_, ArrayRole::Root | ArrayRole::Backup) => MetadataVersion::V1_0,
            // Firmware reads the FAT raw from whichever disk it boots.
            (_, ArrayRole::Esp) => MetadataVersion::V1_0,
            _ => MetadataVersion::V1_2,
        }
    }

    /// The GPT attributes a partition gets on both disks: gptmbr.bin boots the first
    /// partition marked legacy BIOS bootable, so on 6.x that is root and nothing else.
    pub fn partition_attributes(self, role: Option<ArrayRole>, source_attributes: u64) -> u64 {
        match self {
            BootChain::GrubBios | BootChain::GrubEfi => source_attributes,
            BootChain::ExtlinuxBios if role == Some(ArrayRole::Root) => {
                source_attributes | LEGACY_BIOS_BOOTABLE
            }
            BootChain::ExtlinuxBios => source_attributes & !LEGACY_BIOS_BOOTABLE,
        }
    }

    /// Whether the protective MBR's entry is marked active on both disks. Some BIOSes
    /// skip a disk without an active entry; gptmbr.bin does not care, so 6.x sets it.
    pub fn protective_mbr_active(self, source_active: bool) -> bool {
        match self {
            BootChain::GrubBios | BootChain::GrubEfi => source_active,
            BootChain::ExtlinuxBios => true,
        }
    }

    /// What the plan says will run or be written to make each disk bootable.
    pub fn plan_lines(self, mirror: &str, source: &str) -> Vec<String> {
        match self {
            BootChain::GrubBios => vec![
                format!("grub-install --target=i386-pc {mirror}"),
                format!("grub-install --target=i386-pc {source}"),
            ],
            BootChain::ExtlinuxBios => vec![
                "extlinux --raid --install /boot (its boot sector lands in root's first sector on both members through the array)".into(),
                format!("gptmbr.bin from the target's syslinux into the MBR of {mirror}, then of {source}; legacy BIOS bootable on root only"),
                format!("then wait for the root array's recovery onto {source}: until then that disk does not boot"),
            ],
            BootChain::GrubEfi => vec![
                "the ESP becomes an md 1.0 array (plain FAT at the start of each member): its grub.cfg is rewritten once for both disks, and the loader copied to \\EFI\\BOOT\\BOOTX64.EFI, the path firmware boots from a disk it has no entry for".into(),
                format!("a firmware boot entry for the ESP of {mirror} (through efivarfs), second in BootOrder"),
                format!("the entry that booted {source} moved to its new ESP partition, kept first in BootOrder"),
                format!("then wait for the recovery of the ESP and root arrays onto {source}: firmware reads the ESP raw, and GRUB reads /boot raw where its image lacks mdraid1x"),
            ],
        }
    }

    /// Whether what boots a disk reads this array's member raw, so that the disk boots
    /// only once that member is in sync. extlinux's boot sector and ldlinux.sys read
    /// `/boot` raw from the disk the BIOS booted: before the recovery reaches them, the
    /// source's new root partition holds the old layout's bytes (measured: "Boot error"
    /// from the source right after the conversion, both disks attached). On UEFI the
    /// firmware reads the ESP raw, and GRUB EFI reads `/boot` raw where its image lacks
    /// `mdraid1x` (measured: a both-disks boot right after the conversion found root's
    /// UUID on the source's half-recovered member and loaded an initrd the kernel could
    /// not unpack). GRUB on BIOS has its md driver in its core image and reads from the
    /// in-sync member.
    pub fn reads_raw(self, role: ArrayRole) -> bool {
        match self {
            BootChain::GrubBios => false,
            BootChain::ExtlinuxBios => role == ArrayRole::Root,
            BootChain::GrubEfi => matches!(role, ArrayRole::Root | ArrayRole::Esp),
        }
    }

    /// Whether a disk whose members are being recovered boots only once some are done.
    pub fn boots_after_sync(self) -> bool {
        ArrayRole::ALL.into_iter().any(|r| self.reads_raw(r))
    }
}

/// The tool that builds the target's initrds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum InitrdTool {
    Dracut,
    /// Red Hat's `mkinitrd` (CentOS 5, XenServer 6.x dom0): nash scripts, `raidautorun`.
    Mkinitrd,
}

impl InitrdTool {
    /// Dracut where the target has it (it assembles any metadata from mdadm.conf), else
    /// mkinitrd.
    pub fn find(root: &Path) -> Result<InitrdTool, BootChainError> {
        if program_in_root(root, "dracut") {
            Ok(InitrdTool::Dracut)
        } else if program_in_root(root, "mkinitrd") {
            Ok(InitrdTool::Mkinitrd)
        } else {
            Err(BootChainError::NoInitrdTool)
        }
    }
}

/// Whether the target has `name` in one of the directories its own tools are run from
/// (`sys::run_in_chroot` looks in the same ones).
pub fn program_in_root(root: &Path, name: &str) -> bool {
    ["usr/sbin", "usr/bin", "sbin", "bin"]
        .iter()
        .any(|d| root.join(d).join(name).exists())
}

/// mkinitrd's arguments for one kernel: raid1 loaded before the root is looked for, the
/// new fstab read so that root on md makes it add `raidautorun` for the array, and no
/// multipath (it would claim the members before md does; XenServer's own guides build
/// the RAID initrd the same way).
pub fn mkinitrd_args(initrd: &str, kver: &str) -> Vec<String> {
    vec![
        "-f".into(),
        "-v".into(),
        "--preload=raid1".into(),
        "--without-multipath".into(),
        "--fstab=/etc/fstab".into(),
        initrd.into(),
        kver.into(),
    ]
}

/// The target's gptmbr.bin (its first 440 bytes are the MBR's boot code).
pub fn gptmbr_in(root: &Path) -> Result<(PathBuf, [u8; 440]), BootChainError> {
    for rel in GPTMBR_PATHS {
        let p = root.join(rel);
        let Ok(bytes) = std::fs::read(&p) else {
            continue;
        };
        // syslinux ships it padded to exactly 440 bytes: anything else is another file.
        let code: [u8; 440] = bytes
            .as_slice()
            .try_into()
            .map_err(|_| BootChainError::BadGptMbr(format!("/{rel}"), bytes.len() as u64))?;
        return Ok((PathBuf::from("/").join(rel), code));
    }
    Err(BootChainError::NoGptMbr)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn raw_readers_make_the_source_wait_for_those_arrays() {
        assert!(BootChain::ExtlinuxBios.boots_after_sync());
        assert!(BootChain::ExtlinuxBios.reads_raw(ArrayRole::Root));
        assert!(!BootChain::ExtlinuxBios.reads_raw(ArrayRole::Logs));
        assert!(BootChain::GrubEfi.reads_raw(ArrayRole::Esp));
        assert!(BootChain::GrubEfi.reads_raw(ArrayRole::Root));
        assert!(!BootChain::GrubEfi.reads_raw(ArrayRole::Sr));
        assert!(!BootChain::GrubBios.boots_after_sync());
        assert!(BootChain::ExtlinuxBios
            .plan_lines("/dev/sdb", "/dev/sda")
            .iter()
            .any(|l| l.contains("wait for the root array's recovery onto /dev/sda")));
    }

    #[test]
    fn six_x_root_is_the_only_legacy_bootable_partition() {
        let c = BootChain::ExtlinuxBios;
        assert_eq!(
            c.partition_attributes(Some(ArrayRole::Root), 0),
            LEGACY_BIOS_BOOTABLE
        );
        // The source's other flags stay; a stray bootable bit elsewhere goes.
        assert_eq!(
            c.partition_attributes(Some(ArrayRole::Backup), LEGACY_BIOS_BOOTABLE | 1),
            1
        );
        assert_eq!(c.partition_attributes(None, LEGACY_BIOS_BOOTABLE), 0);
        assert_eq!(
            BootChain::GrubBios.partition_attributes(None, LEGACY_BIOS_BOOTABLE),
            LEGACY_BIOS_BOOTABLE
        );
        assert!(c.protective_mbr_active(false));
        assert!(!BootChain::GrubBios.protective_mbr_active(false));
    }

    #[test]
    fn metadata_keeps_root_at_offset_zero_and_six_x_root_autodetectable() {
        for c in [BootChain::GrubBios, BootChain::ExtlinuxBios] {
            for r in ArrayRole::ALL {
                let v = c.default_metadata(r);
                match r {
                    ArrayRole::Root | ArrayRole::Backup => assert_ne!(v, MetadataVersion::V1_2),
                    ArrayRole::Esp => assert_eq!(v, MetadataVersion::V1_0),
                    _ => assert_eq!(v, MetadataVersion::V1_2),
                }
            }
        }
        assert_eq!(
            BootChain::ExtlinuxBios.default_metadata(ArrayRole::Root),
            MetadataVersion::V0_90
        );
        assert_eq!(
            BootChain::GrubBios.default_metadata(ArrayRole::Root),
            MetadataVersion::V1_0
        );
    }

    #[test]
    fn mkinitrd_preloads_raid1_for_the_named_kernel_never_the_running_one() {
        let a = mkinitrd_args(
            "/boot/initrd-2.6.32.43-0.4.1.xs1.8.0.835.170778xen.img",
            "2.6.32.43-0.4.1.xs1.8.0.835.170778xen",
        );
        assert_eq!(
            a,
            [
                "-f",
                "-v",
                "--preload=raid1",
                "--without-multipath",
                "--fstab=/etc/fstab",
                "/boot/initrd-2.6.32.43-0.4.1.xs1.8.0.835.170778xen.img",
                "2.6.32.43-0.4.1.xs1.8.0.835.170778xen"
            ]
        );
    }

    /// A root tree with these files, removed when dropped.
    struct Tree(PathBuf);
    impl Tree {
        fn path(&self) -> &Path {
            &self.0
        }
    }
    impl Drop for Tree {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
    fn tree(files: &[(&str, &[u8])]) -> Tree {
        use std::sync::atomic::{AtomicU32, Ordering};
        static N: AtomicU32 = AtomicU32::new(0);
        let d = std::env::temp_dir().join(format!(
            "xenraid-bootchain-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&d).unwrap();
        for (p, c) in files {
            let p = d.join(p);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(p, c).unwrap();
        }
        Tree(d)
    }

    #[test]
    fn initrd_tool_prefers_dracut_then_mkinitrd_else_says_so() {
        let both = tree(&[("sbin/mkinitrd", b""), ("usr/bin/dracut", b"")]);
        assert_eq!(InitrdTool::find(both.path()), Ok(InitrdTool::Dracut));
        let old = tree(&[("sbin/mkinitrd", b"")]);
        assert_eq!(InitrdTool::find(old.path()), Ok(InitrdTool::Mkinitrd));
        let none = tree(&[("etc/fstab", b"")]);
        assert_eq!(
            InitrdTool::find(none.path()),
            Err(BootChainError::NoInitrdTool)
        );
    }

    #[test]
    fn gptmbr_is_found_where_the_distribution_put_it_and_checked() {
        let code = [0x33u8; 440];
        let centos = tree(&[("usr/share/syslinux/gptmbr.bin", &code)]);
        let (p, got) = gptmbr_in(centos.path()).unwrap();
        assert_eq!(p, Path::new("/usr/share/syslinux/gptmbr.bin"));
        assert_eq!(got, code);
        let debian = tree(&[("usr/lib/syslinux/mbr/gptmbr.bin", &code)]);
        assert!(gptmbr_in(debian.path()).is_ok());
        let wrong = tree(&[("usr/share/syslinux/gptmbr.bin", &[0u8; 512])]);
        assert_eq!(
            gptmbr_in(wrong.path()),
            Err(BootChainError::BadGptMbr(
                "/usr/share/syslinux/gptmbr.bin".into(),
                512
            ))
        );
        let none = tree(&[]);
        let e = gptmbr_in(none.path()).unwrap_err();
        assert_eq!(e, BootChainError::NoGptMbr);
        assert!(e.to_string().contains("syslinux"));
    }
}

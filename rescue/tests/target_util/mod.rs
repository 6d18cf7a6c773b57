//! Fixtures shared by the `target_*` tests: a realistic conversion and the files of a
//! XenServer 7.x / XCP-ng 8.x host and of a 6.x host, shaped as `xenserver.md` and the seeds
//! show them; plus helpers to run the real tools.

#![allow(dead_code)]

use rescue::target_root::{ArrayInfo, Conversion, Role};
use std::path::{Path, PathBuf};
use std::process::Command;

pub const ROOT_FS_UUID: &str = "0f3c5a0e-7d6b-4f57-9a3c-1c2d3e4f5a6b";
pub const LOGS_FS_UUID: &str = "5e1b2c3d-4e5f-4a6b-8c7d-9e0f1a2b3c4d";
pub const SWAP_UUID: &str = "a1b2c3d4-e5f6-4789-abcd-ef0123456789";
pub const ROOT_MD: &str = "b6eafb52:53b1c0ed:03b029cd:ce0fa6bf";
pub const BACKUP_MD: &str = "7b4bae54:236b1e2f:7f1a7a0e:e4610009";
pub const LOGS_MD: &str = "4a064db1:0c8e8f42:76810417:5cf0ecbd";
pub const SWAP_MD: &str = "30dfc30a:1c8031bf:93d8c760:24186100";
pub const SR_MD: &str = "0c082894:f0f24c6b:43bf4045:0970c253";
pub const OLD_SR: &str = "/dev/disk/by-id/scsi-SATA_ST1000DM003-1CH_Z1D5K2JX-part3";

fn array(
    role: Role,
    dev: &str,
    uuid: &str,
    md: &str,
    fs: Option<&str>,
    label: Option<&str>,
) -> ArrayInfo {
    ArrayInfo {
        role,
        device: format!("/dev/md/{dev}"),
        name: format!("xenserver:{dev}"),
        uuid: uuid.into(),
        metadata: md.into(),
        fs_uuid: fs.map(Into::into),
        fs_label: label.map(Into::into),
    }
}

/// 7.x BIOS host with local SR, label suffix `vgdorj`.
pub fn conv7() -> Conversion {
    Conversion {
        arrays: vec![
            array(
                Role::Root,
                "root",
                ROOT_MD,
                "1.0",
                Some(ROOT_FS_UUID),
                Some("root-vgdorj"),
            ),
            array(Role::Backup, "backup", BACKUP_MD, "1.0", None, None),
            array(
                Role::Logs,
                "logs",
                LOGS_MD,
                "1.2",
                Some(LOGS_FS_UUID),
                Some("logs-vgdorj"),
            ),
            array(
                Role::Swap,
                "swap",
                SWAP_MD,
                "1.2",
                Some(SWAP_UUID),
                Some("swap-vgdorj"),
            ),
            array(Role::Sr, "sr", SR_MD, "1.2", None, None),
        ],
        label_suffix: "vgdorj".into(),
        sr_old_devices: vec![],
        root_by_device: None,
    }
}

/// 6.x host: root, backup and SR only; 0.90 metadata as seed 000 uses, label `root-abcdefgh`.
pub fn conv6() -> Conversion {
    Conversion {
        arrays: vec![
            array(
                Role::Root,
                "root",
                ROOT_MD,
                "0.90",
                Some(ROOT_FS_UUID),
                Some("root-abcdefgh"),
            ),
            array(Role::Backup, "backup", BACKUP_MD, "0.90", None, None),
            array(Role::Sr, "sr", SR_MD, "1.2", None, None),
        ],
        label_suffix: "abcdefgh".into(),
        sr_old_devices: vec![],
        root_by_device: None,
    }
}

pub const GRUB_CFG_7: &str = "serial --unit=0 --speed=115200
terminal_input serial console
terminal_output serial console
set default=0
set timeout=5
if [ -s $prefix/grubenv ]; then
\tload_env
fi

if [ -n \"$override_entry\" ]; then
\tset default=$override_entry
fi

menuentry 'XCP-ng' {
\tsearch --label --set root root-vgdorj
\tmultiboot2 /boot/xen.gz dom0_mem=7584M,max:7584M watchdog ucode=scan dom0_max_vcpus=1-16 crashkernel=256M,below=4G console=vga vga=mode-0x0311
\tmodule2 /boot/vmlinuz-4.19-xen root=LABEL=root-vgdorj ro nolvm hpet=disable console=hvc0 console=tty0 quiet vga=785 splash plymouth.ignore-serial-consoles
\tmodule2 /boot/initrd-4.19-xen.img
}
menuentry 'XCP-ng (Serial)' {
\tsearch --label --set root root-vgdorj
\tmultiboot2 /boot/xen.gz com1=115200,8n1 console=com1,vga dom0_mem=7584M,max:7584M watchdog ucode=scan dom0_max_vcpus=1-16 crashkernel=256M,below=4G
\tmodule2 /boot/vmlinuz-4.19-xen root=LABEL=root-vgdorj ro nolvm hpet=disable console=tty0 console=hvc0
\tmodule2 /boot/initrd-4.19-xen.img
}
menuentry 'XCP-ng in Safe Mode' {
\tsearch --label --set root root-vgdorj
\tmultiboot2 /boot/xen.gz nosmp noreboot noirqbalance no-mce no-bootscrub no-numa no-hap no-mmcfg max_cstate=0 nmi=ignore allow_unsafe dom0_mem=7584M,max:7584M com1=115200,8n1 console=com1,vga
\tmodule2 /boot/vmlinuz-4.19-xen earlyprintk=xen root=LABEL=root-vgdorj ro nolvm hpet=disable console=tty0 console=hvc0
\tmodule2 /boot/initrd-4.19-xen.img
}
menuentry 'XCP-ng (Xen 4.13.5 / Linux 4.19.0+1)' {
\tsearch --label --set root root-vgdorj
\tmultiboot2 /boot/xen-fallback.gz dom0_mem=7584M,max:7584M watchdog ucode=scan dom0_max_vcpus=1-16 crashkernel=256M,below=4G
\tmodule2 /boot/vmlinuz-fallback root=LABEL=root-vgdorj ro nolvm hpet=disable console=hvc0 console=tty0
\tmodule2 /boot/initrd-fallback.img
}
menuentry 'XCP-ng (Serial, Xen 4.13.5 / Linux 4.19.0+1)' {
\tsearch --label --set root root-vgdorj
\tmultiboot2 /boot/xen-fallback.gz com1=115200,8n1 console=com1,vga dom0_mem=7584M,max:7584M watchdog
\tmodule2 /boot/vmlinuz-fallback root=LABEL=root-vgdorj ro nolvm hpet=disable console=tty0 console=hvc0
\tmodule2 /boot/initrd-fallback.img
}
";

/// Newest XenServer: `xen_hypervisor`/`xen_module`, plus a plain Linux entry and a stale
/// `rd.md=0` from a failed manual attempt.
pub const GRUB_CFG_XEN_BOOT: &str = "set default=0
set timeout=5
menuentry 'XenServer' {
\tsearch --label --set root root-vgdorj
\txen_hypervisor /boot/xen.gz dom0_mem=4096M,max:4096M watchdog console=vga
\txen_module /boot/vmlinuz-4.19-xen root=LABEL=root-vgdorj ro nolvm rd.md=0 rd.auto=0 console=hvc0
\txen_module /boot/initrd-4.19-xen.img
}
menuentry 'dom0 kernel without Xen' {
\tsearch --no-floppy --label --set=root root-vgdorj
\tlinux /boot/vmlinuz-4.19-xen root=/dev/sda1 ro nolvm
\tinitrd /boot/initrd-4.19-xen.img
}
";

pub const EXTLINUX_6: &str = "# location mbr
default xe
prompt 1
timeout 50

label xe
  # XenServer
  kernel mboot.c32
  append /boot/xen.gz dom0_mem=752M,max:752M watchdog console=vga --- /boot/vmlinuz-2.6-xen root=LABEL=root-abcdefgh ro nolvm hpet=disable xencons=hvc console=hvc0 console=tty0 quiet vga=785 splash --- /boot/initrd-2.6-xen.img

label xe-serial
  # XenServer (Serial)
  kernel mboot.c32
  append /boot/xen.gz com1=115200,8n1 console=com1,vga dom0_mem=752M,max:752M watchdog --- /boot/vmlinuz-2.6-xen root=LABEL=root-abcdefgh ro nolvm hpet=disable console=tty0 xencons=hvc console=hvc0 --- /boot/initrd-2.6-xen.img

label safe
  # XenServer in Safe Mode
  kernel mboot.c32
  append /boot/xen.gz nosmp noreboot noirqbalance acpi=off noapic dom0_mem=752M,max:752M com1=115200,8n1 console=com1,vga --- /boot/vmlinuz-2.6-xen nousb root=LABEL=root-abcdefgh ro nolvm console=tty0 xencons=hvc console=hvc0 --- /boot/initrd-2.6-xen.img

label fallback
  # XenServer (Xen 4.1.5 / Linux 2.6.32.43-0.4.1.xs1.8.0.835.170778xen)
  kernel mboot.c32
  append /boot/xen-4.1.5.gz dom0_mem=752M,max:752M watchdog --- /boot/vmlinuz-2.6.32.43-0.4.1.xs1.8.0.835.170778xen root=LABEL=root-abcdefgh ro nolvm hpet=disable xencons=hvc console=hvc0 console=tty0 --- /boot/initrd-2.6.32.43-0.4.1.xs1.8.0.835.170778xen.img
";

/// Seed 001's fstab, and one already edited by seed 001's sed commands.
pub const FSTAB_7: &str = "LABEL=root-vgdorj    /         ext3     defaults   1  1
LABEL=swap-vgdorj          swap      swap   defaults   0  0
LABEL=logs-vgdorj    /var/log         ext3     defaults   0  2
/opt/xensource/packages/iso/XenCenter.iso   /var/xen/xc-install   iso9660   loop,ro   0  0
";
pub const FSTAB_SEED001_EDITED: &str = "/dev/md0    /         ext3     defaults   1  1
/dev/md5          swap      swap   defaults   0  0
/dev/md4    /var/log         ext3     defaults   0  2
/opt/xensource/packages/iso/XenCenter.iso   /var/xen/xc-install   iso9660   loop,ro   0  0
";
pub const FSTAB_6: &str = "LABEL=root-abcdefgh    /         ext3     defaults   1  1
/var/swap/swap.001          swap      swap   defaults   0  0
none        /dev/pts  devpts  gid=5,mode=620  0 0
none        /dev/shm  tmpfs   defaults        0 0
none        /proc     proc    defaults        0 0
none        /sys      sysfs   defaults        0 0
";

/// Seed 001's hand-written mdadm.conf (md numbers, sd-only DEVICE line).
pub const MDADM_SEED001: &str = "MAILADDR root
auto +imsm +1.x -all
DEVICE /dev/sd*[a-z][1-9]
ARRAY /dev/md0 metadata=1.2 name=xenserver-7:0 UUID=b6eafb52:53b1c0ed:03b029cd:ce0fa6bf
ARRAY /dev/md1 metadata=1.2 name=xenserver-7:1 UUID=7b4bae54:236b1e2f:7f1a7a0e:e4610009
ARRAY /dev/md2 metadata=1.2 name=xenserver-7:2 UUID=0c082894:f0f24c6b:43bf4045:0970c253
";

pub const INVENTORY_7: &str = "PRODUCT_BRAND='XCP-ng'
PRODUCT_NAME='xenenterprise'
PRODUCT_VERSION='8.2.1'
PLATFORM_VERSION='3.2.1'
BUILD_NUMBER='release/yangtze/master/58'
KERNEL_VERSION='4.19.0+1'
XEN_VERSION='4.13.5-9.38'
INSTALLATION_DATE='2024-03-05 10:11:12.131415'
PRIMARY_DISK='/dev/disk/by-id/scsi-SATA_ST1000DM003-1CH_Z1D5K2JX'
BACKUP_PARTITION='/dev/disk/by-id/scsi-SATA_ST1000DM003-1CH_Z1D5K2JX-part2'
INSTALLATION_UUID='4a3f1c2e-6b7d-4e8f-9a0b-1c2d3e4f5a6b'
CONTROL_DOMAIN_UUID='b1c2d3e4-f5a6-4b7c-8d9e-0f1a2b3c4d5e'
DOM0_MEM='7584'
DOM0_VCPUS='16'
MANAGEMENT_INTERFACE='xenbr0'
MANAGEMENT_ADDRESS_TYPE='IPv4'
PARTITION_LAYOUT='ROOT,BACKUP,LOG,BOOT,SWAP,SR'
";

pub const DEFAULT_STORAGE: &str = "TYPE='lvm'
PARTITIONS='/dev/disk/by-id/scsi-SATA_ST1000DM003-1CH_Z1D5K2JX-part3'
";

/// The `devices` section shape of CentOS 7's lvm.conf as XenServer ships it (shortened).
pub const LVM_CONF: &str = "# This is an example configuration file for the LVM2 system.
config {
\tchecks = 1
\tabort_on_errors = 0
}
devices {
\tdir = \"/dev\"
\tscan = [ \"/dev\" ]
\tobtain_device_list_from_udev = 1
\tfilter = [ \"r|/dev/nbd|\" ]

\t# Configuration option devices/md_component_detection.
\t# Ignore devices that are components of software RAID (md) devices.
\t# md_component_detection = 1

\tmd_chunk_alignment = 1
}
global {
\tuse_lvmetad = 0
\tmetadata_read_only = 0
}
";

pub const STATE_DB: &str = "<?xml version=\"1.0\" encoding=\"UTF-8\"?><database><manifest><pair key=\"schema_major_vsn\" value=\"5\"/></manifest><table name=\"PBD\"><row ref=\"OpaqueRef:5a1b\" __ctime=\"0\" __mtime=\"0\" SR=\"OpaqueRef:9c2d\" _ref=\"OpaqueRef:5a1b\" currently_attached=\"true\" device_config=\"(('device' '/dev/disk/by-id/scsi-SATA_ST1000DM003-1CH_Z1D5K2JX-part3'))\" host=\"OpaqueRef:77aa\" other_config=\"()\" uuid=\"2f3e4d5c-6b7a-4988-a7b6-c5d4e3f2a1b0\"/><row ref=\"OpaqueRef:6b2c\" __ctime=\"0\" __mtime=\"0\" SR=\"OpaqueRef:8d3e\" _ref=\"OpaqueRef:6b2c\" currently_attached=\"true\" device_config=\"(('location' '/dev/xapi/cd'))\" host=\"OpaqueRef:77aa\" other_config=\"()\" uuid=\"3a4b5c6d-7e8f-4a0b-9c1d-2e3f4a5b6c7d\"/></table></database>
";

/// Runs a tool; panics with a clear message (naming the Debian package) when it is missing.
pub fn run_tool(cmd: &mut Command, package: &str) -> std::process::Output {
    let prog = cmd.get_program().to_string_lossy().into_owned();
    match cmd.output() {
        Ok(o) => o,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            panic!("{prog} is missing: apt-get install -y {package}")
        }
        Err(e) => panic!("running {prog}: {e}"),
    }
}

/// A fresh, empty directory under the temp dir, removed on drop.
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new(name: &str) -> Self {
        let p = std::env::temp_dir().join(format!("xenraid-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&p);
        std::fs::create_dir_all(&p).unwrap();
        TempDir(p)
    }
    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Writes `content` at `rel` under `root`, creating parent directories.
pub fn put(root: &Path, rel: &str, content: &[u8]) {
    let p = root.join(rel.trim_start_matches('/'));
    std::fs::create_dir_all(p.parent().unwrap()).unwrap();
    std::fs::write(p, content).unwrap();
}

/// `grub-script-check` accepts the file.
pub fn grub_script_check(text: &str, name: &str) {
    let dir = TempDir::new(&format!("grubcheck-{name}"));
    let f = dir.path().join("grub.cfg");
    std::fs::write(&f, text).unwrap();
    let o = run_tool(Command::new("grub-script-check").arg(&f), "grub-common");
    assert!(
        o.status.success(),
        "grub-script-check rejected {name}: {}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
}

/// The Debian kernel image `cargo xtask build` caches.
pub fn debian_kernel() -> PathBuf {
    let base = match std::env::var_os("XENRAID_CACHE_DIR").filter(|d| !d.is_empty()) {
        Some(dir) => PathBuf::from(dir).join("kernel"),
        None => dirs_home().join(".cache/xenraid/kernel"),
    };
    let found = std::fs::read_dir(&base).ok().and_then(|d| {
        d.flatten().find_map(|e| {
            std::fs::read_dir(e.path().join("boot"))
                .ok()?
                .flatten()
                .find_map(|f| {
                    f.file_name()
                        .to_string_lossy()
                        .starts_with("vmlinuz-")
                        .then(|| f.path())
                })
        })
    });
    found.unwrap_or_else(|| {
        panic!(
            "no Debian kernel under {}/*/boot/vmlinuz-*: run cargo xtask build first",
            base.display()
        )
    })
}

fn dirs_home() -> PathBuf {
    std::env::var_os("HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|| "/root".into())
}

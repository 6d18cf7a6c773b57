//! The configure step: the new root's files rewritten for the arrays, its initrds rebuilt
//! by its own generator, and each disk made bootable by its own boot chain. Runs with the
//! new root mounted (see `chroot`); the pure decisions live in `bootchain` and `target`.

use super::bootchain::{self, BootChain, InitrdTool};
use super::chroot::chroot_ok;
use super::plan::{ArrayRole, ConvertPlan, Payload, PlannedArray};
use super::uefi;
use super::{disk_name, kernel_log_line};
use crate::formats::gpt;
use crate::target_root::dracut;
use std::fs::File;
use std::path::Path;
use std::time::Instant;

/// Which disk a step writes to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Side {
    Mirror,
    Source,
}

/// Files the configuration step may rewrite (each only where present), for the plan.
pub fn target_files(chain: BootChain) -> Vec<String> {
    [
        "/etc/fstab",
        chain.config_file(),
        "/etc/mdadm.conf (or /etc/mdadm/mdadm.conf)",
        "/etc/dracut.conf.d/90-xenraid-mdraid.conf (where the target has dracut)",
        "/usr/lib/dracut/modules.d/91xenraid/{module-setup.sh,xenraid-md-degraded.sh,xenraid-md-readwrite.sh} (likewise)",
        "/etc/xensource-inventory",
        "/etc/firstboot.d/data/default-storage.conf",
        "/etc/lvm/lvm.conf, /etc/lvm/master/lvm.conf",
        "/var/lib/xcp/state.db",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect()
}

/// The arrays as the target's configuration files name them.
pub fn conversion_of(plan: &ConvertPlan) -> crate::target_root::Conversion {
    use crate::target_root::{ArrayInfo, Role};
    let arrays = plan
        .arrays
        .iter()
        .map(|a| {
            let (fs_uuid, fs_label) = match &a.payload {
                Payload::Ext { label, uuid } | Payload::Swap { label, uuid } => {
                    (uuid.clone(), label.clone())
                }
                Payload::Vfat { label, serial } => (serial.clone(), label.clone()),
                _ => (None, None),
            };
            ArrayInfo {
                role: match a.role {
                    ArrayRole::Root => Role::Root,
                    ArrayRole::Backup => Role::Backup,
                    ArrayRole::Logs => Role::Logs,
                    ArrayRole::Swap => Role::Swap,
                    ArrayRole::Sr => Role::Sr,
                    ArrayRole::Esp => Role::Esp,
                },
                device: format!("/dev/md/{}", a.name),
                name: format!("{}:{}", a.homehost, a.name),
                uuid: a.uuid.clone(),
                metadata: a.metadata.clone(),
                fs_uuid,
                fs_label,
            }
        })
        .collect();
    crate::target_root::Conversion {
        arrays,
        label_suffix: plan.label_suffix.clone(),
        sr_old_devices: Vec::new(),
        root_by_device: None,
    }
}

/// Rewrites the target's files; returns them and the (kernel version, initrd) pairs the
/// boot entries use, read from the target's own kernels (never `uname -r`).
/// Files changed, and (kernel version, initrd) pairs to rebuild.
type Configured = (Vec<String>, Vec<(String, String)>);

pub(super) fn configure_files(root: &Path, plan: &ConvertPlan) -> Result<Configured, String> {
    let mut conv = conversion_of(plan);
    if InitrdTool::find(root).map_err(|e| e.to_string())? == InitrdTool::Mkinitrd {
        conv.root_by_device = Some(root_device_for_mkinitrd(plan)?);
    }
    let changed = crate::target_root::apply(root, &conv).map_err(|e| e.to_string())?;
    let jobs = crate::target_root::kernels::initrd_jobs(root).map_err(|e| e.to_string())?;
    if jobs.is_empty() {
        return Err(
            "no boot entry of the target names a kernel and an initrd: check its grub.cfg".into(),
        );
    }
    Ok((
        changed.into_iter().map(|c| c.path).collect(),
        jobs.into_iter()
            .map(|j| (j.kernel_version, j.initrd))
            .collect(),
    ))
}

/// Drivers a host-only initrd needs beyond what dracut detects: the controllers of both
/// disks (dracut sees only the mirror under the root array now) and the portable set,
/// each only if the target's kernel `kver` has it.
fn portable_drivers(root: &Path, kver: &str, plan: &ConvertPlan) -> Vec<String> {
    let dir = root.join("lib/modules").join(kver);
    let read = |f: &str| std::fs::read_to_string(dir.join(f)).unwrap_or_default();
    let known = dracut::module_names(&read("modules.dep"), &read("modules.builtin"));
    let sys_block = Path::new("/sys/block");
    let mut want: Vec<String> = [&plan.source.path, &plan.mirror.path]
        .into_iter()
        .flat_map(|p| crate::devices::driver_modules(sys_block, disk_name(p)))
        .collect();
    want.extend(
        dracut::PORTABLE_STORAGE_DRIVERS
            .iter()
            .map(|s| s.to_string()),
    );
    let mut out = Vec::new();
    for m in want {
        if known.contains(&m.replace('-', "_")) && !out.contains(&m) {
            out.push(m);
        }
    }
    out
}

/// Everything the configure step needs from the host's root, checked before the first
/// write: its boot configuration, an initrd generator that can start the root array, and
/// the boot chain's own pieces.
pub(super) fn check_target(root: &Path, plan: &ConvertPlan) -> Result<(), String> {
    let chain = plan.boot_chain;
    if !root
        .join(chain.config_file().trim_start_matches('/'))
        .is_file()
    {
        return Err(format!(
            "the source looks like a host booted by {}, but its root has no {}: check rescue.source, or convert this host by hand",
            chain.describe(),
            chain.config_file()
        ));
    }
    if InitrdTool::find(root).map_err(|e| e.to_string())? == InitrdTool::Mkinitrd {
        root_device_for_mkinitrd(plan)?;
    }
    match chain {
        BootChain::GrubBios => {
            if !bootchain::program_in_root(root, "grub-install") {
                return Err("the host has no grub-install in its root: it cannot be made to boot from the mirror; install its grub package first".into());
            }
        }
        BootChain::ExtlinuxBios => {
            if !bootchain::program_in_root(root, "extlinux") {
                return Err("the host has no extlinux in its root: it cannot be made to boot from the mirror; install its syslinux package first".into());
            }
            bootchain::gptmbr_in(root).map_err(|e| e.to_string())?;
            extlinux_can_read(plan.root_array()?)?;
        }
        BootChain::GrubEfi => {
            let efi = plan
                .efi
                .as_ref()
                .ok_or("a UEFI host's plan has no EFI part")?;
            let loader = uefi::on_esp(&root.join("boot/efi"), &efi.loader);
            if !loader.is_file() {
                return Err(format!(
                    "the host's ESP has no {}, the loader its boot entry names: check /boot/efi on the host, or convert it by hand",
                    efi.loader
                ));
            }
        }
    }
    Ok(())
}

/// extlinux reads /boot from a raw member: the filesystem must start at the member's start.
fn extlinux_can_read(root: &PlannedArray) -> Result<(), String> {
    if root.metadata == "1.2" {
        return Err("extlinux cannot boot a root array with md metadata 1.2 (the filesystem does not start at the member's start): use rescue.metadata=root:0.90 or root:1.0".into());
    }
    Ok(())
}

/// The root array as a mkinitrd initrd starts it: `raidautorun` assembles 0.90 members as
/// `/dev/md<preferred minor>`; anything else it cannot start.
fn root_device_for_mkinitrd(plan: &ConvertPlan) -> Result<String, String> {
    let root = plan.root_array()?;
    if root.metadata != "0.90" {
        return Err(format!(
            "the target builds its initrd with mkinitrd, which starts only md 0.90 arrays, but the root array has metadata {}: run again with rescue.metadata=root:0.90",
            root.metadata
        ));
    }
    Ok(format!("/dev/md{}", root.role.md_index()))
}

/// Rebuilds every initrd the boot entries use, with the generator the target has.
pub(super) fn build_initrds(
    root: &Path,
    plan: &ConvertPlan,
    kernels: &[(String, String)],
) -> Result<String, String> {
    let tool = InitrdTool::find(root).map_err(|e| e.to_string())?;
    let hostonly = dracut::hostonly_configured(&dracut::confs_under(root));
    let mode = match tool {
        InitrdTool::Mkinitrd => "mkinitrd",
        InitrdTool::Dracut if hostonly => "host-only",
        InitrdTool::Dracut => "generic",
    };
    let mut done = Vec::new();
    // Entries that share a kernel (6.x's `fallback` label: initrd-fallback.img) get a copy
    // of the first build: the generator would produce the same image again, minutes later.
    let mut built: Vec<(&str, &str)> = Vec::new();
    for (kver, initrd) in kernels {
        if let Some((_, first)) = built.iter().find(|(k, _)| k == kver) {
            copy_in_root(root, first, initrd)?;
            kernel_log_line(&format!(
                "convert: {initrd} is a copy of {first} (same kernel {kver})"
            ));
            done.push(format!("{initrd} (copy of {first})"));
            continue;
        }
        let (program, args) = match tool {
            InitrdTool::Dracut => {
                let extra = portable_drivers(root, kver, plan);
                (
                    "dracut",
                    dracut::dracut_args(hostonly, &extra, initrd, kver),
                )
            }
            InitrdTool::Mkinitrd => ("mkinitrd", bootchain::mkinitrd_args(initrd, kver)),
        };
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let started = Instant::now();
        kernel_log_line(&format!(
            "convert: building the initrd {initrd} for {kver} ({mode}, as the target is configured)"
        ));
        chroot_ok(root, program, &args)?;
        let size = std::fs::metadata(root.join(initrd.trim_start_matches('/')))
            .map(|m| m.len())
            .unwrap_or(0);
        done.push(format!(
            "{initrd} ({kver}, {mode}, {size} bytes, {:.0} s)",
            started.elapsed().as_secs_f64()
        ));
        built.push((kver, initrd));
    }
    Ok(done.join(", "))
}

/// Copies `from` to `to` (both paths inside the target root) through a temporary name, so
/// a power cut leaves the old initrd or the new one, never half of one.
fn copy_in_root(root: &Path, from: &str, to: &str) -> Result<(), String> {
    let src = root.join(from.trim_start_matches('/'));
    let dst = root.join(to.trim_start_matches('/'));
    let tmp = dst.with_extension("xenraid-tmp");
    std::fs::copy(&src, &tmp)
        .and_then(|_| File::open(&tmp)?.sync_all())
        .and_then(|_| std::fs::rename(&tmp, &dst))
        .map_err(|e| format!("copy the initrd {from} to {to} in the new root: {e}"))
}

/// Makes one disk boot alone with the host's boot chain.
pub(super) fn make_bootable(root: &Path, plan: &ConvertPlan, side: Side) -> Result<String, String> {
    let disk = match side {
        Side::Mirror => &plan.mirror.path,
        Side::Source => &plan.source.path,
    };
    match plan.boot_chain {
        BootChain::GrubBios => {
            chroot_ok(root, "grub-install", &["--target=i386-pc", disk])?;
            Ok(format!("grub on {disk}"))
        }
        BootChain::GrubEfi => {
            let efi = plan
                .efi
                .as_ref()
                .ok_or("a UEFI host's plan has no EFI part")?;
            let mut done = Vec::new();
            if side == Side::Mirror {
                // On the ESP array: both disks at once.
                done.push(uefi::install_removable(
                    &root.join("boot/efi"),
                    &efi.loader,
                )?);
            }
            if efi.entries {
                done.push(uefi::write_entries(plan, efi, side)?);
            } else {
                done.push(format!(
                    "no boot entry for {disk} (rescue.efi-entries=no): firmware boots it by the removable path"
                ));
            }
            Ok(done.join("; "))
        }
        BootChain::ExtlinuxBios => {
            let mut done = Vec::new();
            if side == Side::Mirror {
                // Written through the root array: its boot sector is root's first sector
                // on every member (0.90/1.0 keep the filesystem at offset 0), and the
                // source's member gets it with the resync. --raid: should a read fail,
                // the boot sector goes on with the next BIOS disk instead of stopping.
                extlinux_can_read(plan.root_array()?)?;
                chroot_ok(root, "extlinux", &["--raid", "--install", "/boot"])?;
                done.push("extlinux in root's boot sector".to_string());
            }
            let (from, code) = bootchain::gptmbr_in(root).map_err(|e| e.to_string())?;
            let mut dev = File::options()
                .read(true)
                .write(true)
                .open(disk)
                .map_err(|e| format!("open {disk}: {e}"))?;
            gpt::write_protective_mbr(
                &mut dev,
                plan.sector_size,
                gpt::BootCode::Replace(&code),
                plan.protective_mbr_active,
            )
            .and_then(|_| dev.sync_all().map_err(Into::into))
            .map_err(|e| format!("{disk}: writing the MBR: {e}"))?;
            done.push(format!("{} in the MBR of {disk}", from.display()));
            Ok(done.join(", "))
        }
    }
}

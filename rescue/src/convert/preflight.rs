//! Preflight: everything read and decided before the first write. A refusal here
//! leaves every disk as it was.

use super::bootchain::BootChain;
use super::partition_path;
use super::plan::{self, ArrayRole, ConvertPlan};
use super::uefi;
use crate::clone;
use crate::cmdline;
use crate::formats::gpt;
use crate::inspect::Disk;
use crate::sys;
use std::fs::File;
use std::io::{Seek, SeekFrom};
use std::path::Path;

/// Reads every source partition it needs, and plans. Writes nothing. A filesystem that
/// was not cleanly unmounted is planned for a journal replay on its copy.
pub(super) fn preflight(
    args: &cmdline::Plan,
    source: &Disk,
    mirror: &Disk,
) -> Result<ConvertPlan, String> {
    if source.xenserver.is_none() {
        return Err(plan::PlanError::NotXenServer(source.path.clone()).to_string());
    }
    if source.table.as_deref() != Some("gpt") {
        return Err(plan::PlanError::NotGpt(source.path.clone()).to_string());
    }
    let mut f = File::open(&source.path).map_err(|e| format!("open {}: {e}", source.path))?;
    let table = gpt::read(&mut f, Some(source.logical_sector_size))
        .map_err(|e| format!("{}: {e}", source.path))?;
    let mut facts = plan::SourceFacts::default();
    let mut replay = Vec::new();
    for p in &source.partitions {
        if plan::array_role(p).is_none() {
            continue;
        }
        let dev = partition_path(&source.name, p.number)?;
        let mut part = File::open(&dev).map_err(|e| format!("open {}: {e}", dev.display()))?;
        if matches!(p.fs_type.as_deref(), Some("ext3" | "ext4" | "ext2"))
            && needs_recovery(&mut part, &dev)?
        {
            // A crashed host: its bitmaps may miss blocks the journal allocates, so the
            // copy takes every block, and the journal is replayed on the copy only.
            replay.push(p.number);
            facts.copy_bytes.insert(p.number, p.size_bytes);
            continue;
        }
        let cp = clone::plan(&mut part, false).map_err(|e| format!("{}: {e}", dev.display()))?;
        let bytes = if cp.swap.is_some() {
            4096
        } else {
            cp.extents.total().0
        };
        facts.copy_bytes.insert(p.number, bytes);
    }
    let mut opts = plan::Options {
        attach_source: args.attach_source,
        wait_resync: args.wait_resync,
        bitmap: args.bitmap,
        now: sys::unix_time(),
        ..Default::default()
    };
    for (role, v) in &args.metadata {
        let role = ArrayRole::parse(role)
            .ok_or_else(|| format!("rescue.metadata: unknown role {role}"))?;
        let v = plan::parse_metadata_version(v)
            .ok_or_else(|| format!("rescue.metadata: unknown version {v}"))?;
        opts.metadata.insert(role, v);
    }
    let mut guids = gpt::GuidSource::Random;
    let mut guid_err = None;
    let mut new_guid = || {
        guids.next_guid().unwrap_or_else(|e| {
            guid_err = Some(e.to_string());
            gpt::Guid::default()
        })
    };
    let mut p = plan::plan(source, &table, mirror, &facts, &opts, &mut new_guid)
        .map_err(|e| e.to_string())?;
    if let Some(e) = guid_err {
        return Err(format!("no random numbers for new GUIDs: {e}"));
    }
    let mut mbr = [0u8; 512];
    f.seek(SeekFrom::Start(0))
        .and_then(|_| std::io::Read::read_exact(&mut f, &mut mbr))
        .map_err(|e| format!("read {}: {e}", source.path))?;
    p.protective_mbr_active = p.boot_chain.protective_mbr_active(mbr[446] == 0x80);
    p.journal_replay = replay;
    if p.boot_chain == BootChain::GrubEfi {
        p.efi = Some(efi_plan(args, &p, &table)?);
    }
    p.files_to_change = super::configure::target_files(p.boot_chain);
    p.chroot_commands = vec![
        "e2fsck -fn <each ext array> (in a chroot of the source root, read-only)".into(),
        "dracut -f --hostonly|--no-hostonly (as the target's dracut is configured) --add mdraid --add-drivers raid1 <initrd> <kernel version>, or where the target has no dracut: mkinitrd -f --preload=raid1 --without-multipath --fstab=/etc/fstab <initrd> <kernel version>; for every kernel the boot entries use".into(),
    ];
    p.chroot_commands
        .extend(p.boot_chain.plan_lines(&mirror.path, &source.path));
    Ok(p)
}

/// The loader and boot entries of a UEFI host: the firmware's entry that boots the
/// source's ESP names both (read through efivarfs); without one, the vendor's loader.
fn efi_plan(
    args: &cmdline::Plan,
    p: &ConvertPlan,
    table: &gpt::GptTable,
) -> Result<uefi::EfiPlan, String> {
    let esp = p
        .esp_array()
        .ok_or("a UEFI host without an ESP array in the plan")?;
    let esp_guid = table
        .partitions
        .iter()
        .find(|g| g.number == esp.partition)
        .map(|g| g.unique_guid)
        .ok_or("the ESP is not in the source's partition table")?;
    let uefi_firmware = sys::efivars::booted_by_uefi();
    let mut efi = uefi::EfiPlan {
        loader: uefi::DEFAULT_LOADER.into(),
        entries: args.efi_entries && uefi_firmware,
        original: None,
        description: "XenServer".into(),
    };
    if uefi_firmware {
        let vars = uefi::read_vars()?;
        if let Some((n, o)) = vars.booting(esp_guid) {
            efi.original = Some(n);
            efi.description = o.description.clone();
            if let Some(f) = uefi::file_of(o) {
                efi.loader = f.to_string();
            }
        }
    }
    Ok(efi)
}

/// Whether an ext filesystem was not cleanly unmounted.
fn needs_recovery(part: &mut File, dev: &Path) -> Result<bool, String> {
    crate::formats::ext::Superblock::read(part)
        .map(|sb| sb.needs_recovery())
        .map_err(|e| format!("{}: {e}", dev.display()))
}

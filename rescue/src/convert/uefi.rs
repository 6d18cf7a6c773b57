//! The UEFI boot chain's own pieces. The ESP is an md 1.0 array (firmware reads plain
//! FAT at the start of either member), so the loader, its grub.cfg and the removable
//! path `\EFI\BOOT\BOOTX64.EFI` are on both disks at once. What is per disk is the
//! firmware's boot entry: one per disk (`HD(partition GUID, start, size)/File(loader)`),
//! written by the rescue through efivarfs, with the entry that booted the source kept
//! first in `BootOrder`. The decisions here are pure; [`write_entries`] does the I/O.

use super::configure::Side;
use super::plan::ConvertPlan;
use crate::formats::efi::{self, LoadOption, Node};
use crate::formats::gpt::Guid;
use crate::sys::efivars;
use serde::{Deserialize, Serialize};
use std::path::Path;

/// Where XenServer's installer puts GRUB on the ESP.
pub const DEFAULT_LOADER: &str = r"\EFI\xenserver\grubx64.efi";
/// What firmware boots from a disk it has no entry for.
pub const REMOVABLE_PATH: &str = r"\EFI\BOOT\BOOTX64.EFI";

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct EfiPlan {
    /// The loader the firmware starts, as a path on the ESP.
    pub loader: String,
    /// Whether boot entries are written (the rescue runs on the host's UEFI firmware);
    /// false with `rescue.efi-entries=no`: the removable path only.
    pub entries: bool,
    /// The firmware's entry that boots the source's ESP: rewritten for the source's new
    /// partition once it is attached, and kept first.
    pub original: Option<u16>,
    /// The original entry's name (or the vendor's), for the entries written.
    pub description: String,
}

/// The firmware's boot entries and their order.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct BootVars {
    pub entries: Vec<(u16, LoadOption)>,
    pub order: Vec<u16>,
}

/// `Boot####` → its number.
fn boot_number(variable: &str) -> Option<u16> {
    let hex = variable.strip_prefix("Boot")?;
    if hex.len() != 4 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    u16::from_str_radix(hex, 16).ok()
}

impl BootVars {
    /// From `(variable name, data)` pairs of the global vendor GUID; entries that do not
    /// decode are left alone (they are not ours to judge).
    pub fn parse(vars: impl IntoIterator<Item = (String, Vec<u8>)>) -> BootVars {
        let mut b = BootVars::default();
        for (name, data) in vars {
            if name == "BootOrder" {
                b.order = efi::decode_boot_order(&data);
            } else if let Some(n) = boot_number(&name) {
                if let Ok(o) = LoadOption::decode(&data) {
                    b.entries.push((n, o));
                }
            }
        }
        b.entries.sort_by_key(|(n, _)| *n);
        b
    }

    /// The entry that boots a file from the GPT partition with this unique GUID, the one
    /// first in `BootOrder` if several do.
    pub fn booting(&self, partition: Guid) -> Option<(u16, &LoadOption)> {
        let mut found: Vec<(u16, &LoadOption)> = self
            .entries
            .iter()
            .filter(|(_, o)| partition_of(o) == Some(partition) && file_of(o).is_some())
            .map(|(n, o)| (*n, o))
            .collect();
        found.sort_by_key(|(n, _)| self.order.iter().position(|o| o == n).unwrap_or(usize::MAX));
        found.into_iter().next()
    }

    fn get(&self, n: u16) -> Option<&LoadOption> {
        self.entries.iter().find(|(m, _)| *m == n).map(|(_, o)| o)
    }
}

/// The unique GUID of the partition an entry's `HD()` node names.
pub fn partition_of(o: &LoadOption) -> Option<Guid> {
    o.path.iter().find_map(|n| match n {
        Node::HardDrive { partition_guid, .. } => Some(*partition_guid),
        _ => None,
    })
}

/// The file an entry starts.
pub fn file_of(o: &LoadOption) -> Option<&str> {
    o.path.iter().find_map(|n| match n {
        Node::FilePath(p) => Some(p.as_str()),
        _ => None,
    })
}

/// `front` first, in that order, then the rest of `order` as it was.
pub fn order_with(order: &[u16], front: &[u16]) -> Vec<u16> {
    let mut v: Vec<u16> = Vec::new();
    for n in front {
        if !v.contains(n) {
            v.push(*n);
        }
    }
    v.extend(order.iter().filter(|n| !front.contains(n)));
    v
}

/// Where `want` goes: `at` (the original's number), else the number of an entry with the
/// same device path, else the lowest free number; and whether it must be written.
pub fn place(vars: &BootVars, at: Option<u16>, want: &LoadOption) -> (u16, bool) {
    let n = at
        .or_else(|| {
            vars.entries
                .iter()
                .find(|(_, o)| o.path == want.path)
                .map(|(n, _)| *n)
        })
        .unwrap_or_else(|| {
            let used: Vec<u16> = vars.entries.iter().map(|(n, _)| *n).collect();
            efi::free_boot_number(&used).unwrap_or(0xffff)
        });
    (n, vars.get(n) != Some(want))
}

/// The entry for one disk's ESP as the plan lays it out.
pub fn entry_for(plan: &ConvertPlan, efi: &EfiPlan, side: Side) -> Result<LoadOption, String> {
    let esp = plan.esp_array().ok_or("the plan has no ESP array")?;
    let part = plan
        .partitions
        .iter()
        .find(|p| p.number == esp.partition)
        .ok_or("the ESP's partition is not in the plan")?;
    let (guids, disk) = match side {
        Side::Mirror => (&plan.mirror_partition_guids, &plan.mirror),
        Side::Source => (&plan.source_partition_guids, &plan.source),
    };
    let guid = guids
        .get(&esp.partition)
        .and_then(|g| Guid::parse(g))
        .ok_or("the ESP's partition GUID is not in the plan")?;
    let description = match side {
        Side::Source => efi.description.clone(),
        Side::Mirror => format!(
            "{} (mirror {})",
            efi.description,
            disk.serial.as_deref().unwrap_or(&disk.name)
        ),
    };
    let ss = u64::from(plan.sector_size);
    LoadOption::for_partition(
        &description,
        esp.partition,
        part.start_lba,
        part.size_bytes / ss,
        guid,
        &efi.loader,
    )
    .map_err(|e| e.to_string())
}

/// `Boot####` variables to write, and the `BootOrder` wanted.
pub type EntryUpdates = (Vec<(u16, LoadOption)>, Vec<u16>);

/// The writes that make `side`'s entry exist and lead `BootOrder` as it should: the
/// original (the source's) first, the mirror's second.
pub fn updates(
    plan: &ConvertPlan,
    efi: &EfiPlan,
    vars: &BootVars,
    side: Side,
) -> Result<EntryUpdates, String> {
    let mirror = entry_for(plan, efi, Side::Mirror)?;
    let source = match side {
        Side::Mirror => None,
        Side::Source => Some(entry_for(plan, efi, Side::Source)?),
    };
    Ok(entry_updates(vars, efi.original, &mirror, source))
}

/// [`updates`] on the entries themselves: the mirror's entry (its step), or with
/// `source` the source's, written over the original's number.
pub fn entry_updates(
    vars: &BootVars,
    original: Option<u16>,
    mirror: &LoadOption,
    source: Option<LoadOption>,
) -> EntryUpdates {
    let mut writes = Vec::new();
    let front: Vec<u16> = match source {
        None => {
            let (m, write) = place(vars, None, mirror);
            if write {
                writes.push((m, mirror.clone()));
            }
            let original = original.filter(|n| vars.get(*n).is_some());
            original.into_iter().chain([m]).collect()
        }
        Some(mut want) => {
            // The original keeps its name, flags and optional data; only its path moves.
            if let Some(orig) = original.and_then(|n| vars.get(n)) {
                let path = want.path;
                want = orig.clone();
                want.path = path;
            }
            let (o, write) = place(vars, original, &want);
            if write {
                writes.push((o, want));
            }
            let m = vars
                .entries
                .iter()
                .find(|(_, e)| e.path == mirror.path)
                .map(|(n, _)| *n);
            [o].into_iter().chain(m).collect()
        }
    };
    (writes, order_with(&vars.order, &front))
}

/// The entry for a replaced disk's ESP (`want`): the dead disk's entry — the same
/// loader on a partition neither the survivor nor the new disk has — takes the new
/// disk's partition, keeping its number, name and place in `BootOrder`; without one, a
/// new entry goes right after the survivor's.
pub fn new_disk_updates(vars: &BootVars, survivor_esp: Guid, mut want: LoadOption) -> EntryUpdates {
    let survivor = vars.booting(survivor_esp).map(|(n, _)| n);
    let loader = file_of(&want).map(str::to_owned);
    let new_esp = partition_of(&want);
    let dead = vars
        .entries
        .iter()
        .find(|(n, o)| {
            Some(*n) != survivor
                && file_of(o).map(str::to_owned) == loader
                && partition_of(o).is_some_and(|g| g != survivor_esp && Some(g) != new_esp)
        })
        .map(|(n, o)| (*n, o));
    // The dead disk's entry, or this one written by an earlier run: its name stays.
    let same = vars.entries.iter().find(|(_, o)| o.path == want.path);
    if let Some((_, o)) = dead.or(same.map(|(n, o)| (*n, o))) {
        want.description = o.description.clone();
        want.attributes = o.attributes;
    }
    let (n, write) = place(vars, dead.map(|(n, _)| n), &want);
    let writes = if write { vec![(n, want)] } else { vec![] };
    let order = if vars.order.contains(&n) {
        vars.order.clone()
    } else {
        let at = survivor
            .and_then(|s| vars.order.iter().position(|o| *o == s))
            .map_or(vars.order.len(), |i| i + 1);
        let mut o = vars.order.clone();
        o.insert(at, n);
        o
    };
    (writes, order)
}

/// Replace on a UEFI host: the new disk's boot entry, from the two disks' GPTs (read
/// now: the new disk's was just written) and the survivor's entry. Says what it did.
pub fn write_new_disk_entry(survivor: &Path, new: &Path, new_name: &str) -> Result<String, String> {
    use crate::formats::gpt;
    if !efivars::booted_by_uefi() {
        return Ok(format!(
            "no firmware boot entry for {new_name}: the rescue was started in BIOS mode; the firmware boots it by the removable path {REMOVABLE_PATH}, or add an entry with efibootmgr"
        ));
    }
    let esp_of = |dev: &Path| -> Result<gpt::GptPartition, String> {
        let mut f = std::fs::File::open(dev).map_err(|e| format!("open {}: {e}", dev.display()))?;
        let t = gpt::read(&mut f, None).map_err(|e| format!("{}: {e}", dev.display()))?;
        let esp = Guid::parse(gpt::types::EFI_SYSTEM).expect("constant");
        t.partitions
            .into_iter()
            .find(|p| p.type_guid == esp)
            .ok_or_else(|| format!("{} has no EFI system partition", dev.display()))
    };
    let s = esp_of(survivor)?;
    let n = esp_of(new)?;
    let vars = read_vars()?;
    let (loader, description) = match vars.booting(s.unique_guid) {
        Some((_, o)) => (
            file_of(o).unwrap_or(DEFAULT_LOADER).to_owned(),
            o.description.clone(),
        ),
        None => (DEFAULT_LOADER.to_owned(), "XenServer".to_owned()),
    };
    let want = LoadOption::for_partition(
        &format!("{description} ({new_name})"),
        n.number,
        n.first_lba.0,
        n.size_lbas(),
        n.unique_guid,
        &loader,
    )
    .map_err(|e| e.to_string())?;
    let (writes, order) = new_disk_updates(&vars, s.unique_guid, want);
    apply(&vars, &writes, &order)
}

/// Writes entries and `BootOrder` (only if it changed); says what.
fn apply(vars: &BootVars, writes: &[(u16, LoadOption)], order: &[u16]) -> Result<String, String> {
    let mut done = Vec::new();
    for (n, o) in writes {
        let name = format!("Boot{n:04X}");
        efivars::write(
            &efi::efivarfs_name(&name),
            &efi::efivarfs_content(efi::ATTRS_NV_BS_RT, &o.encode()),
        )
        .map_err(|e| {
            format!("write the EFI boot entry {name}: {e}: the firmware refused it (variable store full or locked?); every disk still boots by the removable path: run again with rescue.efi-entries=no to finish without entries")
        })?;
        done.push(format!("{name} {} {}", o.description, o.path_string()));
    }
    if order != vars.order {
        efivars::write(
            &efi::efivarfs_name("BootOrder"),
            &efi::efivarfs_content(efi::ATTRS_NV_BS_RT, &efi::encode_boot_order(order)),
        )
        .map_err(|e| {
            format!("write the EFI BootOrder: {e}: the firmware refused it; run again with rescue.efi-entries=no to finish without entries")
        })?;
    }
    let order: Vec<String> = order.iter().map(|n| format!("{n:04X}")).collect();
    if done.is_empty() {
        done.push("boot entry already in place".into());
    }
    Ok(format!(
        "{}; BootOrder {}",
        done.join(", "),
        order.join(",")
    ))
}

/// Makes the firmware's variables readable and writable (efivarfs loaded and mounted),
/// where the rescue was started by UEFI firmware; says whether it was.
pub fn open_variables(ctx: &mut dyn super::Rescue) -> Result<bool, String> {
    if !efivars::booted_by_uefi() {
        return Ok(false);
    }
    ctx.require_modules(&["efivarfs"])?;
    efivars::mount().map_err(|e| format!("mount efivarfs: {e}"))?;
    Ok(true)
}

/// The firmware's boot variables, read through efivarfs.
pub fn read_vars() -> Result<BootVars, String> {
    let suffix = format!("-{}", efi::GLOBAL_VARIABLE.to_ascii_lowercase());
    let mut vars = Vec::new();
    for file in efivars::names().map_err(|e| format!("list {}: {e}", efivars::DIR))? {
        let Some(name) = file.strip_suffix(&suffix) else {
            continue;
        };
        if name != "BootOrder" && boot_number(name).is_none() {
            continue;
        }
        if let Some((_, data)) =
            efivars::read(&file).map_err(|e| format!("read EFI variable {file}: {e}"))?
        {
            vars.push((name.to_string(), data));
        }
    }
    Ok(BootVars::parse(vars))
}

/// Writes `side`'s boot entry and `BootOrder`; says what it wrote.
pub fn write_entries(plan: &ConvertPlan, efi: &EfiPlan, side: Side) -> Result<String, String> {
    let vars = read_vars()?;
    let (writes, order) = updates(plan, efi, &vars, side)?;
    apply(&vars, &writes, &order)
}

/// `\EFI\xenserver\grubx64.efi` → `EFI/xenserver/grubx64.efi` under the ESP's mount.
pub fn on_esp(esp: &Path, loader: &str) -> std::path::PathBuf {
    esp.join(loader.trim_start_matches('\\').replace('\\', "/"))
}

/// Files to copy for the removable path: the loader as `BOOTX64.EFI`, and with shim the
/// GRUB (and MokManager) beside it, which shim loads from its own directory.
pub fn removable_copies(loader: &str, present: &dyn Fn(&str) -> bool) -> Vec<(String, String)> {
    let dir = loader.rsplit_once('\\').map_or("", |(d, _)| d);
    let file = loader.rsplit_once('\\').map_or(loader, |(_, f)| f);
    let mut v = vec![(loader.to_string(), REMOVABLE_PATH.to_string())];
    if file.to_ascii_lowercase().starts_with("shim") {
        for extra in ["grubx64.efi", "mmx64.efi"] {
            let from = format!("{dir}\\{extra}");
            if present(&from) {
                v.push((from, format!("\\EFI\\BOOT\\{extra}")));
            }
        }
    }
    v
}

/// Copies the loader to the removable path on the ESP mounted at `esp` (the array, so
/// both disks). A different `BOOTX64.EFI` already there is kept as `.xenraid-orig`.
pub fn install_removable(esp: &Path, loader: &str) -> Result<String, String> {
    let present = |p: &str| on_esp(esp, p).is_file();
    if !present(loader) {
        return Err(format!(
            "the ESP has no {loader}, the loader its boot entry names: check the host's /boot/efi"
        ));
    }
    let mut done = Vec::new();
    for (from, to) in removable_copies(loader, &present) {
        let src = on_esp(esp, &from);
        let dst = on_esp(esp, &to);
        let new = std::fs::read(&src).map_err(|e| format!("read {}: {e}", src.display()))?;
        let old = std::fs::read(&dst).ok();
        if old.as_deref() == Some(&new[..]) {
            continue;
        }
        if let Some(parent) = dst.parent() {
            std::fs::create_dir_all(parent)
                .map_err(|e| format!("create {}: {e}", parent.display()))?;
        }
        let orig = dst.with_extension("efi.xenraid-orig");
        if old.is_some() && !orig.exists() {
            std::fs::rename(&dst, &orig)
                .map_err(|e| format!("keep {} as {}: {e}", dst.display(), orig.display()))?;
        }
        let tmp = dst.with_extension("xenraid-tmp");
        std::fs::write(&tmp, &new)
            .and_then(|_| std::fs::File::open(&tmp)?.sync_all())
            .and_then(|_| std::fs::rename(&tmp, &dst))
            .map_err(|e| format!("write {}: {e}", dst.display()))?;
        done.push(format!("{from} -> {to}"));
    }
    if done.is_empty() {
        return Ok(format!("{REMOVABLE_PATH} already the host's loader"));
    }
    Ok(done.join(", "))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn guid(last: u8) -> Guid {
        let mut g = [0x11u8; 16];
        g[15] = last;
        Guid(g)
    }

    fn entry(desc: &str, part: u8, start: u64) -> LoadOption {
        LoadOption::for_partition(desc, 4, start, 0x100000, guid(part), DEFAULT_LOADER).unwrap()
    }

    /// OVMF's own entries (a shell, the PXE ROM) and the installer's, first.
    fn firmware() -> BootVars {
        let shell = LoadOption {
            attributes: 1,
            description: "EFI Internal Shell".into(),
            path: vec![Node::FilePath(r"\shell.efi".into())],
            optional_data: vec![],
        };
        BootVars {
            entries: vec![(0, shell), (3, entry("XenServer", 1, 0x800))],
            order: vec![3, 0],
        }
    }

    #[test]
    fn variables_decode_into_entries_and_order() {
        let f = firmware();
        let vars: Vec<(String, Vec<u8>)> = f
            .entries
            .iter()
            .map(|(n, o)| (format!("Boot{n:04X}"), o.encode()))
            .chain([
                ("BootOrder".to_string(), efi::encode_boot_order(&f.order)),
                ("BootCurrent".to_string(), vec![3, 0]),
                ("Boot0007".to_string(), vec![1, 2]),
                ("BootNext1".to_string(), vec![]),
            ])
            .collect();
        assert_eq!(BootVars::parse(vars), f);
    }

    #[test]
    fn the_original_is_the_entry_for_the_sources_esp() {
        let f = firmware();
        let (n, o) = f.booting(guid(1)).unwrap();
        assert_eq!((n, o.description.as_str()), (3, "XenServer"));
        assert_eq!(file_of(o), Some(DEFAULT_LOADER));
        assert!(f.booting(guid(9)).is_none());
    }

    #[test]
    fn mirror_entry_comes_second_and_the_source_keeps_the_original_first() {
        let mut f = firmware();
        let mirror = entry("XenServer (mirror S2)", 2, 0x1000);
        let (w, order) = entry_updates(&f, Some(3), &mirror, None);
        assert_eq!(w, vec![(1, mirror.clone())], "the lowest free number");
        assert_eq!(order, vec![3, 1, 0]);
        f.entries.push((1, mirror.clone()));
        f.order = order;
        // Rerun of the same step: nothing to write, same order.
        assert_eq!(
            entry_updates(&f, Some(3), &mirror, None),
            (vec![], vec![3, 1, 0])
        );

        // The source's step moves the original to the new partition, keeping its name.
        let source = entry("ignored", 5, 0x1000);
        let (w, order) = entry_updates(&f, Some(3), &mirror, Some(source.clone()));
        assert_eq!(w.len(), 1);
        assert_eq!(w[0].0, 3);
        assert_eq!(w[0].1.description, "XenServer");
        assert_eq!(w[0].1.path, source.path);
        assert_eq!(order, vec![3, 1, 0]);
        f.entries[1].1 = w[0].1.clone();
        assert_eq!(
            entry_updates(&f, Some(3), &mirror, Some(source)),
            (vec![], vec![3, 1, 0])
        );
    }

    #[test]
    fn without_an_original_the_sources_entry_is_new_and_first() {
        let f = BootVars {
            entries: vec![],
            order: vec![],
        };
        let mirror = entry("XenServer (mirror S2)", 2, 0x1000);
        let (w, order) = entry_updates(&f, None, &mirror, None);
        assert_eq!((w[0].0, order), (0, vec![0]));
        let f = BootVars {
            entries: vec![(0, mirror.clone())],
            order: vec![0],
        };
        let (w, order) = entry_updates(&f, None, &mirror, Some(entry("XenServer", 5, 0x1000)));
        assert_eq!((w[0].0, order), (1, vec![1, 0]));
    }

    #[test]
    fn removable_path_takes_shims_grub_along() {
        let all = |_: &str| true;
        assert_eq!(
            removable_copies(DEFAULT_LOADER, &all),
            vec![(DEFAULT_LOADER.to_string(), REMOVABLE_PATH.to_string())]
        );
        let shim = removable_copies(r"\EFI\xenserver\shimx64.efi", &|p: &str| {
            p.ends_with("grubx64.efi")
        });
        assert_eq!(
            shim,
            vec![
                (
                    r"\EFI\xenserver\shimx64.efi".to_string(),
                    REMOVABLE_PATH.to_string()
                ),
                (
                    r"\EFI\xenserver\grubx64.efi".to_string(),
                    r"\EFI\BOOT\grubx64.efi".to_string()
                ),
            ]
        );
        assert_eq!(
            on_esp(Path::new("/esp"), DEFAULT_LOADER),
            Path::new("/esp/EFI/xenserver/grubx64.efi")
        );
    }

    #[test]
    fn a_replaced_disk_takes_the_dead_disks_entry_or_comes_after_the_survivor() {
        // After a conversion: 3 the source's (survivor), 1 the mirror's (dead), 0 shell.
        let mut f = firmware();
        f.entries
            .push((1, entry("XenServer (mirror S2)", 2, 0x1000)));
        f.order = vec![3, 1, 0];
        let new = entry("XenServer (S9)", 9, 0x1000);
        let (w, order) = new_disk_updates(&f, guid(1), new.clone());
        assert_eq!(w.len(), 1);
        assert_eq!(w[0].0, 1, "the dead disk's number");
        assert_eq!(w[0].1.description, "XenServer (mirror S2)");
        assert_eq!(w[0].1.path, new.path);
        assert_eq!(order, vec![3, 1, 0]);
        // Done already: nothing to write.
        f.entries.iter_mut().find(|(n, _)| *n == 1).unwrap().1 = w[0].1.clone();
        assert_eq!(
            new_disk_updates(&f, guid(1), new.clone()),
            (vec![], vec![3, 1, 0])
        );

        // No dead entry (a host converted without entries): a new one after the survivor.
        let g = firmware();
        let (w, order) = new_disk_updates(&g, guid(1), new.clone());
        assert_eq!((w[0].0, w[0].1.description.as_str()), (1, "XenServer (S9)"));
        assert_eq!(order, vec![3, 1, 0]);
    }
}

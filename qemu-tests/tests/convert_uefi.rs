//! End to end on UEFI: the rescue booted by OVMF (with the host's own variable store)
//! converts the `xs8-uefi` fixture, then each disk boots alone through OVMF → GRUB EFI →
//! Xen → dom0 with `/`, `/var/log`, swap and `/boot/efi` on md and every checksum ok:
//! the source by the installer's entry (rewritten for its new ESP partition, still
//! first), the mirror by its own entry, and the mirror with an empty variable store by
//! the removable path `\EFI\BOOT\BOOTX64.EFI`.

use qemu_tests::fixture::{
    self, boot_xen_uefi, boot_xen_uefi_then, checksums_ok, copy_image, AfterStatus, Expect,
};
use qemu_tests::images;
use qemu_tests::ovmf_vars::{read_boot_config, BootConfig};
use qemu_tests::vm::{Bus, Disk, Firmware, VmBuilder, OVMF_CODE, OVMF_VARS};
use qemu_tests::{full_matrix, RescueImage, Scratch};
use rescue::formats::gpt;
use rescue::report::Report;
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::time::Duration;

const CONVERT_TIMEOUT: Duration = Duration::from_secs(1800);
const CONVERT: &str = "rescue.action=convert rescue.source=auto rescue.mirror=auto";
const LOADER: &str = "\\EFI\\xenserver\\grubx64.efi";

/// Boots the rescue under OVMF with `vars` as the machine's variable store (written in
/// place, as a host's NVRAM is).
fn uefi_rescue(dir: &Path, disks: &[(&Path, &str)], vars: &Path, args: &str) -> Report {
    let disks = disks
        .iter()
        .map(|(path, serial)| Disk::new(path, Bus::Ahci).serial(serial))
        .collect();
    let firmware = Firmware::Ovmf {
        code: OVMF_CODE.into(),
        vars: vars.to_owned(),
    };
    qemu_tests::rescue_report_on(firmware, dir, disks, args, CONVERT_TIMEOUT).unwrap()
}

/// The ESP (partition 4 on XenServer) as a disk's GPT has it.
fn esp_of(img: &Path) -> gpt::GptPartition {
    let table = gpt::read(&mut std::fs::File::open(img).unwrap(), Some(512)).unwrap();
    let p = table
        .partitions
        .iter()
        .find(|p| p.type_guid == gpt::Guid::parse(gpt::types::EFI_SYSTEM).unwrap())
        .expect("an ESP")
        .clone();
    p
}

/// The entry that boots `LOADER` from this ESP.
fn entry_for(cfg: &BootConfig, esp: &gpt::GptPartition) -> Option<u16> {
    cfg.booting(esp, LOADER)
}

/// What every booted disk must show: the arrays in use, the ESP from its array, booted
/// by EFI, every checksum; the entry the firmware booted; with `in_sync`, every array
/// `[UU]`.
fn check_boot(status: &Value, what: &str, boot_current: Option<u16>, in_sync: bool) {
    for (k, v) in [
        ("/", &status["root"]["source"]),
        ("/var/log", &status["var_log"]),
        ("/boot/efi", &status["boot_efi"]["source"]),
    ] {
        let dev = v.as_str().unwrap_or("");
        assert!(
            dev.starts_with("/dev/md"),
            "{what}: {k} from {dev:?}: {status}"
        );
    }
    assert_eq!(status["boot_efi"]["fstype"], "vfat", "{what}: {status}");
    let swaps: Vec<&str> = status["swap"]
        .as_array()
        .map(|v| v.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    assert!(
        !swaps.is_empty() && swaps.iter().all(|s| s.starts_with("/dev/md")),
        "{what}: swap {swaps:?}"
    );
    assert_eq!(status["efi_booted"], true, "{what}: {status}");
    assert_eq!(status["xen"], true, "{what}: not under Xen");
    if let Err(e) = checksums_ok(status) {
        panic!("{what}: {e}\n{status}");
    }
    assert_eq!(
        status["md"].as_array().map(Vec::len),
        Some(6),
        "{what}: six arrays (root, backup, logs, swap, SR, ESP): {status}"
    );
    if in_sync {
        for a in status["md"].as_array().unwrap() {
            assert!(a.to_string().contains("UU"), "{what}: not in sync: {a}");
        }
    }
    if let Some(n) = boot_current {
        let want = format!("BootCurrent: {n:04X}");
        let lines: Vec<&str> = status["efibootmgr"]
            .as_array()
            .map(|v| v.iter().filter_map(Value::as_str).collect())
            .unwrap_or_default();
        assert!(
            lines.iter().any(|l| l.trim() == want),
            "{what}: firmware did not boot Boot{n:04X}: {lines:?}"
        );
    }
}

/// The source (the fixture, its probe told to wait for any resync), a blank mirror, and
/// the host's variable store.
struct Host {
    scratch: Scratch,
    source: PathBuf,
    mirror: PathBuf,
    vars: PathBuf,
    /// The installer's entry, first in the fixture's `BootOrder`.
    original: BootConfig,
}

fn host(tag: &str) -> Host {
    let fx = fixture::fixture("xs8-uefi").unwrap();
    let scratch = Scratch::new(tag).unwrap();
    let source = scratch.path("source.img");
    copy_image(&fx.image, &source).unwrap();
    fixture::probe_waits_for_resync(&source).unwrap();
    let mirror = scratch.path("mirror.img");
    images::blank_disk(&mirror, std::fs::metadata(&source).unwrap().len()).unwrap();
    let vars = scratch.path("vars.fd");
    std::fs::copy(fx.uefi_vars.as_deref().expect("uefi_vars"), &vars).unwrap();
    let original = read_boot_config(&vars).unwrap();
    Host {
        scratch,
        source,
        mirror,
        vars,
        original,
    }
}

impl Host {
    fn disks(&self) -> [(&Path, &str); 2] {
        [
            (self.source.as_path(), "XS-SOURCE"),
            (self.mirror.as_path(), "XS-MIRROR"),
        ]
    }

    fn rescue(&self, tag: &str, args: &str) -> Report {
        uefi_rescue(&self.scratch.dir.join(tag), &self.disks(), &self.vars, args)
    }

    /// The variable store after the conversion: an entry per disk's ESP, the installer's
    /// (moved to the source's new ESP partition, same number and name) first, the
    /// mirror's second. Returns their numbers.
    fn check_entries(&self) -> (u16, u16) {
        let cfg = read_boot_config(&self.vars).unwrap();
        let ctx = cfg.lines().join("\n");
        let src = entry_for(&cfg, &esp_of(&self.source))
            .unwrap_or_else(|| panic!("no entry for the source's ESP:\n{ctx}"));
        let mir = entry_for(&cfg, &esp_of(&self.mirror))
            .unwrap_or_else(|| panic!("no entry for the mirror's ESP:\n{ctx}"));
        let (orig, orig_entry) = self.original.first().expect("the installer's entry");
        assert_eq!(src, orig, "the installer's entry was not reused:\n{ctx}");
        assert_eq!(&cfg.order[..2], &[src, mir], "BootOrder:\n{ctx}");
        assert_eq!(cfg.entry(src).unwrap().description, orig_entry.description);
        (src, mir)
    }

    fn rerun_says_converted(&self) {
        let again = self.rescue("rerun", CONVERT);
        assert!(again.errors.is_empty(), "rerun: {:?}", again.errors);
        assert!(
            again.convert.as_ref().is_some_and(|c| c.already_converted),
            "rerun did not say already converted"
        );
    }

    /// Xen from these disks under OVMF with a copy of `vars`.
    fn boot(&self, disks: &[&Path], vars: &Path, tag: &str, then: Then) -> Value {
        let disks = disks
            .iter()
            .enumerate()
            .map(|(i, p)| {
                let d = Disk::new(p, Bus::Ahci).serial(&format!("XSFIXTURE8-{i}"));
                if then == Then::Keep {
                    d
                } else {
                    d.snapshot()
                }
            })
            .collect();
        let dir = self.scratch.dir.join(tag);
        match then {
            Then::Snapshot => boot_xen_uefi(disks, vars, &dir),
            Then::Keep => boot_xen_uefi_then(
                disks,
                vars,
                &dir,
                Expect::BootAndResync,
                AfterStatus::PowerOff,
            ),
        }
        .unwrap()
    }
}

/// What a boot leaves on its disks.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Then {
    /// Nothing: the boot runs on snapshots.
    Snapshot,
    /// Its writes (the resync), and dom0 powers off cleanly.
    Keep,
}

/// CI: convert with the resync waited for, the variable store checked, the rerun, then
/// each disk alone: the source by the installer's entry, the mirror by its own, and the
/// mirror with an empty variable store by the removable path.
#[test]
fn converts_a_uefi_host_and_boots_each_disk_by_its_entry() {
    if full_matrix() {
        return converts_a_uefi_host_full();
    }
    let h = host("convert-uefi");
    let r = h.rescue("convert", &format!("{CONVERT} rescue.wait-resync=yes"));
    assert!(r.errors.is_empty(), "convert: {:?}", r.errors);
    let (src_n, mir_n) = h.check_entries();
    h.rerun_says_converted();
    each_disk_alone(&h, src_n, mir_n);
}

/// Each disk alone on snapshots, two at a time: the source and the mirror by their
/// entries, then the mirror with an empty variable store (the removable path).
fn each_disk_alone(h: &Host, src_n: u16, mir_n: u16) {
    let empty = h.scratch.path("empty-vars.fd");
    std::fs::copy(OVMF_VARS, &empty).unwrap();
    std::thread::scope(|s| {
        let a = s.spawn(|| h.boot(&[&h.source], &h.vars, "source-alone", Then::Snapshot));
        let b = s.spawn(|| h.boot(&[&h.mirror], &h.vars, "mirror-alone", Then::Snapshot));
        check_boot(&a.join().unwrap(), "source alone", Some(src_n), false);
        check_boot(&b.join().unwrap(), "mirror alone", Some(mir_n), false);
    });
    let m = h.boot(
        &[&h.mirror],
        &empty,
        "mirror-alone-empty-vars",
        Then::Snapshot,
    );
    check_boot(
        &m,
        "mirror alone, empty variable store (removable path)",
        None,
        false,
    );
}

/// e2e: the dry run writes nothing (disks nor variables); the conversion is cut by a
/// power failure after the ESP step and resumed; the mirror alone right after beside
/// both disks to `[UU]`; then each disk alone, and the removable path.
fn converts_a_uefi_host_full() {
    let h = host("convert-uefi-full");
    let fp = |p: &Path| images::content_fingerprint(p).unwrap();
    let before = [fp(&h.source), fp(&h.mirror)];
    let r = h.rescue("dry", &format!("{CONVERT} rescue.dry-run"));
    assert!(r.errors.is_empty(), "dry run: {:?}", r.errors);
    let conv = r.convert.as_ref().expect("convert section");
    let plan = conv.plan.as_ref().expect("the plan");
    assert!(plan.esp_array().is_some(), "no ESP array planned");
    assert_eq!(
        plan.efi.as_ref().unwrap().original,
        h.original.first().map(|(n, _)| n)
    );
    assert_eq!(
        before,
        [fp(&h.source), fp(&h.mirror)],
        "the dry run wrote a disk"
    );
    assert_eq!(
        read_boot_config(&h.vars).unwrap().entries,
        h.original.entries,
        "the dry run wrote a boot entry"
    );

    // Cut as the source's attach begins: the ESP array, its files and the mirror's
    // entry are done, the source not yet touched.
    let marker = "convert: attach-source ...";
    let mut b = VmBuilder::rescue(&RescueImage::locate().unwrap())
        .memory_mib(2048)
        .firmware(Firmware::Ovmf {
            code: OVMF_CODE.into(),
            vars: h.vars.clone(),
        })
        .append(CONVERT);
    for (path, serial) in h.disks() {
        b = b.disk(Disk::new(path, Bus::Ahci).serial(serial));
    }
    let mut vm = b.spawn(&h.scratch.dir.join("cut")).unwrap();
    vm.wait_until(CONVERT_TIMEOUT, marker, |log| {
        log.contains(marker).then_some(())
    })
    .unwrap();
    vm.kill();
    let r = h.rescue("resume", CONVERT);
    assert!(r.errors.is_empty(), "resume: {:?}", r.errors);
    let started = &r.convert.as_ref().unwrap().started_from;
    assert_ne!(started, "new", "the rerun did not resume the job");
    let (src_n, mir_n) = h.check_entries();
    h.rerun_says_converted();

    // The mirror as the conversion left it, beside the both-disks boot that writes it.
    let mirror_first = h.scratch.path("mirror-after-convert.img");
    copy_image(&h.mirror, &mirror_first).unwrap();
    std::thread::scope(|s| {
        let a = s.spawn(|| h.boot(&[&mirror_first], &h.vars, "mirror-first", Then::Snapshot));
        let both = h.boot(&[&h.source, &h.mirror], &h.vars, "both", Then::Keep);
        check_boot(&both, "both disks", Some(src_n), true);
        check_boot(
            &a.join().unwrap(),
            "mirror alone right after",
            Some(mir_n),
            false,
        );
    });
    each_disk_alone(&h, src_n, mir_n);
}

/// e2e: the mirror dies on a converted UEFI host; `replace` onto a blank disk in its
/// place rebuilds every array (the ESP's too) and gives the new disk the dead disk's
/// firmware entry (same number and place in `BootOrder`); the new disk then boots
/// alone by that entry.
#[test]
#[ignore = "e2e only: `cargo xtask e2e` runs it (a conversion, a replace, a Xen boot)"]
fn replaces_a_dead_disk_on_a_uefi_host_and_boots_it_by_its_entry() {
    let h = host("replace-uefi");
    let r = h.rescue("convert", &format!("{CONVERT} rescue.wait-resync=yes"));
    assert!(r.errors.is_empty(), "convert: {:?}", r.errors);
    let (src_n, mir_n) = h.check_entries();

    let new = h.scratch.path("new.img");
    images::blank_disk(&new, std::fs::metadata(&h.source).unwrap().len()).unwrap();
    let r = uefi_rescue(
        &h.scratch.dir.join("replace"),
        &[(h.source.as_path(), "XS-SOURCE"), (new.as_path(), "XS-NEW")],
        &h.vars,
        "rescue.action=replace rescue.survivor=auto rescue.new=auto rescue.wait-resync=yes",
    );
    assert!(r.errors.is_empty(), "replace: {:?}", r.errors);
    let rep = r.replace.as_ref().expect("replace section");
    assert!(
        rep.plan.as_ref().is_some_and(|p| p
            .arrays
            .iter()
            .any(|a| a.name.as_deref().is_some_and(|n| n.ends_with(":esp")))),
        "the ESP array was not rebuilt: {:?}",
        rep.plan
    );

    let cfg = read_boot_config(&h.vars).unwrap();
    let ctx = cfg.lines().join("\n");
    let new_n = entry_for(&cfg, &esp_of(&new))
        .unwrap_or_else(|| panic!("no entry for the new disk's ESP:\n{ctx}"));
    assert_eq!(
        new_n, mir_n,
        "the new disk did not take the dead disk's entry:\n{ctx}"
    );
    assert_eq!(&cfg.order[..2], &[src_n, new_n], "BootOrder:\n{ctx}");
    assert!(
        entry_for(&cfg, &esp_of(&h.mirror)).is_none(),
        "the dead disk's entry is still there:\n{ctx}"
    );
    let st = h.boot(&[&new], &h.vars, "new-alone", Then::Snapshot);
    check_boot(&st, "the new disk alone", Some(new_n), false);
}

/// e2e: the rescue started in BIOS mode (no firmware variables to write) refuses a UEFI
/// host, naming both ways out; with `rescue.efi-entries=no` it converts, writes no entry,
/// and each disk boots alone by the removable path with an empty variable store.
#[test]
#[ignore = "e2e only: `cargo xtask e2e` runs it (a conversion, two Xen boots)"]
fn converts_a_uefi_host_from_a_bios_mode_rescue_by_the_removable_path() {
    let h = host("convert-uefi-bios-rescue");
    let bios = |tag: &str, args: &str| {
        let disks = h
            .disks()
            .iter()
            .map(|(p, serial)| Disk::new(p, Bus::Ahci).serial(serial))
            .collect();
        qemu_tests::rescue_report(&h.scratch.dir.join(tag), disks, args, CONVERT_TIMEOUT).unwrap()
    };
    let fp = |p: &Path| images::content_fingerprint(p).unwrap();
    let before = [fp(&h.source), fp(&h.mirror)];
    let r = bios("refused", CONVERT);
    let errors = r.errors.join("\n");
    assert!(
        errors.contains("started in BIOS (legacy) mode")
            && errors.contains("rescue.efi-entries=no"),
        "{errors}"
    );
    assert_eq!(
        before,
        [fp(&h.source), fp(&h.mirror)],
        "a refusal wrote a disk"
    );

    let r = bios(
        "convert",
        &format!("{CONVERT} rescue.efi-entries=no rescue.wait-resync=yes"),
    );
    assert!(r.errors.is_empty(), "convert: {:?}", r.errors);
    let empty = h.scratch.path("empty-vars.fd");
    std::fs::copy(OVMF_VARS, &empty).unwrap();
    std::thread::scope(|s| {
        let a = s.spawn(|| h.boot(&[&h.source], &empty, "source-alone", Then::Snapshot));
        let b = s.spawn(|| h.boot(&[&h.mirror], &empty, "mirror-alone", Then::Snapshot));
        check_boot(
            &a.join().unwrap(),
            "source alone, removable path",
            None,
            false,
        );
        check_boot(
            &b.join().unwrap(),
            "mirror alone, removable path",
            None,
            false,
        );
    });
}

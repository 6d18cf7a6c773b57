//! End to end on UEFI: the rescue booted by OVMF (with the host's own variable store)
//! converts the `xs8-uefi` fixture, then each disk boots alone through OVMF → GRUB EFI →
//! Xen → dom0 with `/`, `/var/log`, swap and `/boot/efi` on md and every checksum ok:
//! the source by the installer's entry (rewritten for its new ESP partition, still
//! first), the mirror by its own entry, and the mirror with an empty variable store by
//! the removable path `\EFI\BOOT\BOOTX64.EFI`.

use qemu_tests::fixture::{self, boot_xen_uefi, checksums_ok, copy_image, OVMF_CODE, OVMF_VARS};
use qemu_tests::images::{self, run};
use qemu_tests::ovmf_vars::{read_boot_config, BootConfig};
use qemu_tests::vm::{Bus, Disk, Firmware, VmBuilder};
use qemu_tests::{full_matrix, RescueImage, Scratch};
use rescue::formats::efi::Node;
use rescue::formats::gpt;
use rescue::report::Report;
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

const CONVERT_TIMEOUT: Duration = Duration::from_secs(1800);
const CONVERT: &str = "rescue.action=convert rescue.source=auto rescue.mirror=auto";
const LOADER: &str = "\\EFI\\xenserver\\grubx64.efi";

/// Boots the rescue under OVMF with `vars` as the machine's variable store (written in
/// place, as a host's NVRAM is).
fn uefi_rescue(dir: &Path, disks: &[(&Path, &str)], vars: &Path, args: &str) -> Report {
    let mut b = VmBuilder::rescue(&RescueImage::locate().unwrap())
        .memory_mib(2048)
        .firmware(Firmware::Ovmf {
            code: OVMF_CODE.into(),
            vars: vars.to_owned(),
        })
        .append(args);
    for (path, serial) in disks {
        b = b.disk(Disk::new(path, Bus::Ahci).serial(serial));
    }
    let mut vm = b.spawn(dir).unwrap();
    let report = vm.wait_for_report(CONVERT_TIMEOUT).unwrap();
    eprintln!(
        "{}: report after {:.0} s",
        dir.display(),
        vm.elapsed().as_secs_f64()
    );
    vm.wait_exit(Duration::from_secs(120)).unwrap();
    report
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
    let want = [
        Node::HardDrive {
            number: esp.number,
            start_lba: esp.first_lba.0,
            size_lbas: esp.size_lbas(),
            partition_guid: esp.unique_guid,
        },
        Node::FilePath(LOADER.into()),
    ];
    cfg.entries
        .iter()
        .find(|(_, e)| e.path == want)
        .map(|(n, _)| *n)
}

/// What every booted disk must show: the arrays in use, the ESP from its array, booted
/// by EFI, every checksum; and the entry the firmware booted.
fn check_boot(status: &Value, what: &str, boot_current: Option<u16>) {
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

#[test]
fn converts_a_uefi_host_and_boots_each_disk_by_its_entry() {
    let fx = fixture::fixture("xs8-uefi").unwrap();
    let scratch = Scratch::new("convert-uefi").unwrap();
    let source = scratch.path("source.img");
    copy_image(&fx.image, &source).unwrap();
    // The probe waits for any resync before it reports (as in convert.rs).
    let root = rescue::inspect::inspect_path(&source)
        .unwrap()
        .partitions
        .into_iter()
        .find(|p| p.role.as_deref() == Some("root"))
        .unwrap();
    let fs = format!("{}?offset={}", source.display(), root.start_lba * 512);
    run(Command::new("debugfs").args(["-w", &fs, "-R", "write /dev/null etc/fixture/wait-resync"]))
        .unwrap();
    let mirror = scratch.path("mirror.img");
    images::blank_disk(&mirror, std::fs::metadata(&source).unwrap().len()).unwrap();
    let vars: PathBuf = scratch.path("vars.fd");
    std::fs::copy(fx.uefi_vars.as_deref().expect("uefi_vars"), &vars).unwrap();
    let original = read_boot_config(&vars).unwrap();
    let (orig_n, _) = original.first().expect("the installer's entry");
    let disks = [
        (source.as_path(), "XS-SOURCE"),
        (mirror.as_path(), "XS-MIRROR"),
    ];

    if full_matrix() {
        let before = [
            images::content_fingerprint(&source).unwrap(),
            images::content_fingerprint(&mirror).unwrap(),
        ];
        let r = uefi_rescue(
            &scratch.dir.join("dry"),
            &disks,
            &vars,
            &format!("{CONVERT} rescue.dry-run"),
        );
        assert!(r.errors.is_empty(), "dry run: {:?}", r.errors);
        let conv = r.convert.as_ref().expect("convert section");
        let plan = conv.plan.as_ref().expect("the plan");
        assert!(plan.esp_array().is_some(), "no ESP array planned");
        assert_eq!(plan.efi.as_ref().unwrap().original, Some(orig_n));
        let after = [
            images::content_fingerprint(&source).unwrap(),
            images::content_fingerprint(&mirror).unwrap(),
        ];
        assert_eq!(before, after, "the dry run wrote a disk");
        assert_eq!(
            read_boot_config(&vars).unwrap().entries,
            original.entries,
            "the dry run wrote a boot entry"
        );
    }

    let r = uefi_rescue(
        &scratch.dir.join("convert"),
        &disks,
        &vars,
        &format!("{CONVERT} rescue.wait-resync=yes"),
    );
    assert!(r.errors.is_empty(), "convert: {:?}", r.errors);

    // The variable store: an entry per disk's ESP, the installer's (moved to the source's
    // new ESP partition) first, the mirror's second.
    let cfg = read_boot_config(&vars).unwrap();
    let ctx = cfg.lines().join("\n");
    let src_n = entry_for(&cfg, &esp_of(&source))
        .unwrap_or_else(|| panic!("no entry for the source's ESP:\n{ctx}"));
    let mir_n = entry_for(&cfg, &esp_of(&mirror))
        .unwrap_or_else(|| panic!("no entry for the mirror's ESP:\n{ctx}"));
    assert_eq!(
        src_n, orig_n,
        "the installer's entry was not reused:\n{ctx}"
    );
    assert_eq!(&cfg.order[..2], &[src_n, mir_n], "BootOrder:\n{ctx}");
    assert_eq!(cfg.entry(src_n).unwrap().description, "XenServer");

    // Rerun: already converted, nothing written.
    let again = uefi_rescue(&scratch.dir.join("rerun"), &disks, &vars, CONVERT);
    assert!(again.errors.is_empty(), "rerun: {:?}", again.errors);
    assert!(
        again.convert.as_ref().is_some_and(|c| c.already_converted),
        "rerun did not say already converted"
    );

    // Each disk alone, on snapshots, two at a time.
    let empty = scratch.path("empty-vars.fd");
    std::fs::copy(OVMF_VARS, &empty).unwrap();
    let boot = |img: &Path, v: &Path, tag: &str| {
        let d = Disk::new(img, Bus::Ahci).serial("XSFIXTURE8").snapshot();
        boot_xen_uefi(vec![d], v, &scratch.dir.join(tag))
    };
    std::thread::scope(|s| {
        let a = s.spawn(|| boot(&source, &vars, "source-alone"));
        let b = s.spawn(|| boot(&mirror, &empty, "mirror-alone-empty-vars"));
        let a = a.join().unwrap().unwrap();
        let b = b.join().unwrap().unwrap();
        check_boot(&a, "source alone", Some(src_n));
        check_boot(
            &b,
            "mirror alone, empty variable store (removable path)",
            None,
        );
    });
    let m = boot(&mirror, &vars, "mirror-alone").unwrap();
    check_boot(&m, "mirror alone", Some(mir_n));
}

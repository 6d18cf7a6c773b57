//! The UEFI fixture, `xs8-uefi`: a XenServer 8.x host installed in UEFI mode. Its firmware
//! variables (the VARS file built with it) hold the boot entry the installer's efibootmgr
//! made — `HD(4,GPT,<ESP>)/File(\EFI\xenserver\grubx64.efi)`, first in `BootOrder` — and
//! the disk boots through that entry alone: OVMF → GRUB (EFI, grub.cfg on the ESP) → Xen
//! (multiboot2) → dom0 → systemd, whose probe reports `/boot/efi` mounted from the ESP.
//!
//! Needs root (to build the fixture), qemu-system-x86 and ovmf.

use qemu_tests::fixture::{boot_xen_uefi, checksums_ok, fixture, uefi_vars_copy, HostFirmware};
use qemu_tests::ovmf_vars::{partition_path, read_boot_config};
use qemu_tests::vm::{Bus, Disk};
use qemu_tests::Scratch;
use rescue::formats::efi::{Node, LOAD_OPTION_ACTIVE};
use rescue::formats::gpt;
use serde_json::Value;

const LOADER: &str = "\\EFI\\xenserver\\grubx64.efi";

/// The ESP's number, start, size and unique GUID, from the image's own GPT.
fn esp(img: &std::path::Path, info: &Value) -> gpt::GptPartition {
    let number = info["esp"]["partition"].as_u64().expect("esp.partition") as u32;
    let table = gpt::read(&mut std::fs::File::open(img).unwrap(), Some(512)).unwrap();
    let p = table.partition(number).expect("the ESP in the GPT").clone();
    assert_eq!(
        p.type_guid,
        gpt::Guid::parse("C12A7328-F81F-11D2-BA4B-00A0C93EC93B").unwrap(),
        "partition {number} is not an ESP"
    );
    p
}

/// No VM: the VARS file the builder's OVMF wrote holds the installer's entry, first.
#[test]
fn xs8_uefi_nvram_boots_grub_on_the_esp_first() {
    let fx = fixture("xs8-uefi").unwrap();
    assert_eq!(fx.firmware, HostFirmware::Uefi);
    let vars = fx.uefi_vars.as_deref().expect("uefi_vars");
    let esp = esp(&fx.image, &fx.description);
    let cfg = read_boot_config(vars).unwrap();
    let ctx = format!("{}:\n{}", vars.display(), cfg.lines().join("\n"));
    let (number, first) = cfg.first().unwrap_or_else(|| panic!("no BootOrder: {ctx}"));
    assert_eq!(first.description, "XenServer", "Boot{number:04X}: {ctx}");
    assert_ne!(first.attributes & LOAD_OPTION_ACTIVE, 0, "inactive: {ctx}");
    assert_eq!(first.path, partition_path(&esp, LOADER), "{ctx}");
    // The installer makes one entry; the firmware's own (UiApp, ...) do not name the disk.
    let on_disk = cfg
        .entries
        .iter()
        .filter(|(_, e)| e.path.iter().any(|n| matches!(n, Node::HardDrive { .. })))
        .count();
    assert_eq!(on_disk, 1, "{ctx}");
    assert_eq!(fx.description["esp"]["loader"], LOADER);
    assert_eq!(fx.description["esp"]["label"], "BOOT-QHVTRN");
}

/// e2e only (a whole Xen boot under TCG, like the BIOS fixtures' boots in
/// fixture_boot.rs): the host boots by its NVRAM entry and reports healthy.
#[test]
#[ignore = "e2e only: `cargo xtask e2e` runs it"]
fn xs8_uefi_boots_by_its_nvram_entry_and_reports_healthy() {
    let fx = fixture("xs8-uefi").unwrap();
    let info = &fx.description;
    let scratch = Scratch::new("fixture-uefi").unwrap();
    let serial = info["disk_serial"].as_str().expect("disk_serial");
    // AHCI as on the BIOS fixtures' boots: the host's disk is sda.
    let disk = Disk::new(&fx.image, Bus::Ahci).serial(serial).snapshot();
    let s = boot_xen_uefi(
        vec![disk],
        fx.uefi_vars.as_deref().expect("uefi_vars"),
        &scratch.dir,
    )
    .unwrap();
    let ctx = format!("status: {s:#}");
    let dev = |n: &Value| format!("/dev/sda{}", n.as_u64().expect("partition number"));

    assert_eq!(s["fixture"], "xs8-uefi", "{ctx}");
    assert_eq!(s["xen"], true, "dom0 did not run under Xen: {ctx}");
    assert_eq!(s["efi_booted"], true, "dom0 sees no EFI firmware: {ctx}");
    assert_eq!(s["root"]["source"], dev(&info["root_partition"]), "{ctx}");
    assert_eq!(s["root"]["label"], info["root_label"], "{ctx}");
    assert_eq!(
        s["boot_efi"]["source"],
        dev(&info["esp"]["partition"]),
        "{ctx}"
    );
    assert_eq!(s["boot_efi"]["fstype"], "vfat", "{ctx}");
    checksums_ok(&s).unwrap_or_else(|e| panic!("{e}: {ctx}"));
    assert_eq!(s["manifest"]["sha256"], info["manifest"]["sha256"], "{ctx}");
    // The host's own efibootmgr (through Xen's EFI runtime services) names the entry
    // the firmware booted: the installer's, not a fallback path.
    let installed = read_boot_config(fx.uefi_vars.as_deref().unwrap()).unwrap();
    let (number, _) = installed.first().expect("the fixture's BootOrder");
    let lines: Vec<&str> = s["efibootmgr"]
        .as_array()
        .unwrap_or_else(|| panic!("no efibootmgr output in dom0: {ctx}"))
        .iter()
        .filter_map(Value::as_str)
        .collect();
    let current = format!("BootCurrent: {number:04X}");
    assert!(lines.contains(&current.as_str()), "want {current}: {ctx}");

    // What the firmware kept: the host's entry is still the first after OVMF's boot.
    let after = read_boot_config(&uefi_vars_copy(&scratch.dir)).unwrap();
    eprintln!("VARS after the boot:\n{}", after.lines().join("\n"));
    let (_, first) = after.first().expect("BootOrder after the boot");
    assert_eq!(first.description, "XenServer", "{:?}", after.lines());
}

//! Boots the real rescue image (Debian kernel + our initramfs) in QEMU and checks the
//! `RESCUE-REPORT` it prints: disks on every bus inspected correctly, bad kernel
//! arguments reported, and nothing written to any disk.

use qemu_tests::images::{self, TestDisk};
use qemu_tests::vm::{Bus, Disk, VmBuilder};
use qemu_tests::{RescueImage, Scratch, RESCUE_BOOT_TIMEOUT};
use rescue::report::Report;
use std::time::Duration;

const BASIC_DATA: &str = "EBD0A0A2-B9E5-4433-87C0-68B6B72699C7";
const LINUX_SWAP: &str = "0657FD6D-A4AB-43C4-84E5-0933C84B4F4F";

/// Boots with a partitioned disk and a blank one on `bus`, returns the report (and the
/// console) after checking that the guest powered off and left both disks byte-identical.
fn boot_two_disks(test: &str, bus: Bus, extra_args: &str) -> anyhow::Result<(Report, TestDisk)> {
    boot_two_disks_console(test, bus, extra_args).map(|(r, spec, _)| (r, spec))
}

fn boot_two_disks_console(
    test: &str,
    bus: Bus,
    extra_args: &str,
) -> anyhow::Result<(Report, TestDisk, String)> {
    let scratch = Scratch::new(test)?;
    let spec = TestDisk::default();
    let a = scratch.path("a.img");
    let b = scratch.path("b.img");
    images::two_partition_disk(&a, spec.clone())?;
    images::blank_disk(&b, 96 << 20)?;
    let before = (
        images::content_fingerprint(&a)?,
        images::content_fingerprint(&b)?,
    );

    let mut vm = VmBuilder::rescue(&RescueImage::locate()?)
        .append(extra_args)
        .disk(Disk::new(&a, bus).serial("XR-SOURCE-1"))
        .disk(Disk::new(&b, bus).serial("XR-BLANK-2"))
        .spawn(&scratch.dir)?;
    let report = vm.wait_for_report(RESCUE_BOOT_TIMEOUT)?;
    vm.wait_exit(Duration::from_secs(60))?;
    let after = (
        images::content_fingerprint(&a)?,
        images::content_fingerprint(&b)?,
    );
    qemu_tests::vm::ensure(
        &mut vm,
        before == after,
        "a disk changed during a read-only boot",
    )?;
    Ok((report, spec, vm.console()))
}

fn check_inspection(bus: Bus) {
    let test = format!("inspect-{bus:?}").to_lowercase();
    let (report, spec) = boot_two_disks(&test, bus, "").unwrap();
    assert!(report.ok, "report not ok: {:?}", report.errors);
    assert_eq!(report.action, "inspect");
    assert!(report.init_started_ms > 0 && report.reported_ms >= report.init_started_ms);
    assert!(
        report.modules_loaded > 0,
        "no modules loaded: {:?}",
        report.warnings
    );
    // Every loaded module has its load time; the bus driver of these disks is one of them.
    let driver = match bus {
        Bus::Virtio => "virtio_blk",
        Bus::Ahci => "ahci",
        Bus::Nvme => "nvme",
        Bus::VirtioScsi => "virtio_scsi",
        Bus::Usb => "usb_storage",
    };
    assert!(
        report.module_load_ms.len() >= report.modules_loaded
            && report.module_load_ms.contains_key(driver),
        "module load times {:?} do not cover the {} loaded modules (driver {driver})",
        report.module_load_ms,
        report.modules_loaded
    );
    assert_eq!(report.disks.len(), 2, "disks: {:#?}", report.disks);

    let src = report
        .disks
        .iter()
        .find(|d| d.serial.as_deref() == Some("XR-SOURCE-1"))
        .expect("source disk by serial");
    let blank = report
        .disks
        .iter()
        .find(|d| d.serial.as_deref() == Some("XR-BLANK-2"))
        .expect("blank disk by serial");
    for d in [src, blank] {
        assert!(
            d.name.starts_with(bus.kernel_prefix()),
            "{} on {bus:?}",
            d.name
        );
        assert_eq!(d.path, format!("/dev/{}", d.name));
        assert_eq!(d.logical_sector_size, 512);
    }
    assert_eq!(src.size_bytes, spec.size_bytes);
    assert_eq!(src.table.as_deref(), Some("gpt"));
    assert!(!src.blank);
    assert_eq!(src.partitions.len(), 2);
    let p1 = &src.partitions[0];
    assert_eq!(
        (p1.number, p1.start_lba, p1.size_bytes),
        (1, images::FIRST_PARTITION_LBA, spec.ext_mib << 20)
    );
    assert_eq!(p1.type_guid.as_deref(), Some(BASIC_DATA));
    assert_eq!(p1.fs_type.as_deref(), Some("ext3"));
    assert_eq!(p1.label.as_deref(), Some(spec.ext_label.as_str()));
    assert_eq!(p1.uuid.as_deref(), Some(spec.ext_uuid.as_str()));
    let p2 = &src.partitions[1];
    assert_eq!(p2.number, 2);
    assert_eq!(
        p2.start_lba,
        images::FIRST_PARTITION_LBA + spec.ext_mib * 2048
    );
    assert_eq!(p2.size_bytes, spec.swap_mib << 20);
    assert_eq!(p2.type_guid.as_deref(), Some(LINUX_SWAP));
    assert_eq!(p2.fs_type.as_deref(), Some("swap"));
    assert_eq!(p2.label.as_deref(), Some(spec.swap_label.as_str()));
    assert_eq!(p2.uuid.as_deref(), Some(spec.swap_uuid.as_str()));

    assert_eq!(blank.size_bytes, 96 << 20);
    assert!(blank.blank, "blank disk not reported blank: {blank:#?}");
    assert!(blank.table.is_none() && blank.partitions.is_empty());
}

#[test]
fn inspects_disks_on_virtio() {
    check_inspection(Bus::Virtio);
}

#[test]
fn inspects_disks_on_ahci() {
    check_inspection(Bus::Ahci);
}

#[test]
fn inspects_disks_on_nvme() {
    check_inspection(Bus::Nvme);
}

#[test]
fn bad_rescue_argument_is_reported_and_nothing_is_written() {
    let (report, _) = boot_two_disks(
        "bad-argument",
        Bus::Virtio,
        "rescue.then=explode rescue.colour=blue",
    )
    .unwrap();
    assert!(!report.ok);
    assert_eq!(report.errors.len(), 2, "errors: {:?}", report.errors);
    assert!(
        report.errors[0].starts_with("rescue.then=explode: "),
        "{:?}",
        report.errors
    );
    assert!(
        report.errors[1].starts_with("rescue.colour=blue: unknown rescue argument"),
        "{:?}",
        report.errors
    );
    // The machine still powered off (boot_two_disks waited for QEMU to exit) and the
    // read-only inspection still describes the disks.
    assert_eq!(report.disks.len(), 2);
}

/// `module.param=value` on the kernel command line reaches a module the rescue loads, as
/// modprobe would hand it over; a value the module refuses costs a warning, not the
/// driver (the disks behind it are still found).
#[test]
fn module_options_on_the_kernel_command_line_reach_the_drivers() {
    let (report, _, console) = boot_two_disks_console(
        "module-options",
        Bus::Ahci,
        "libata.force=nodbdelay ahci.mobile_lpm_policy=bogus",
    )
    .unwrap();
    assert!(report.ok, "report not ok: {:?}", report.errors);
    assert_eq!(report.module_options, vec!["libata force=nodbdelay"]);
    // The kernel's own word that libata took it, for every SATA link.
    assert!(
        console.contains("FORCE: link flag 0x800 forced -> 0x800"),
        "libata did not apply force=nodbdelay:\n{console}"
    );
    assert!(
        report.warnings.iter().any(|w| w.starts_with(
            "module ahci refused the options \"mobile_lpm_policy=bogus\" from the kernel command line"
        )),
        "warnings: {:?}",
        report.warnings
    );
    assert!(report.module_load_ms.contains_key("ahci"));
    assert_eq!(
        report.disks.len(),
        2,
        "disks behind ahci missing: {:#?}",
        report.disks
    );
}

/// `modprobe.blacklist` keeps a driver the hardware asks for out (one whose probe hangs a
/// machine): the report says so, and the disks behind it are not seen.
#[test]
fn a_blacklisted_driver_is_not_loaded() {
    let (report, _) =
        boot_two_disks("module-blacklist", Bus::Ahci, "modprobe.blacklist=ahci").unwrap();
    assert!(report.ok, "report not ok: {:?}", report.errors);
    assert_eq!(report.modules_blacklisted, vec!["ahci"]);
    assert!(!report.module_load_ms.contains_key("ahci"));
    assert!(
        report.disks.is_empty(),
        "disks seen without their driver: {:#?}",
        report.disks
    );
}

//! Boots the delivery artifacts the way a datacenter does: the PXE bundle from QEMU's
//! TFTP server through pxelinux and through the iPXE script (firmware netboot, no disk to
//! boot from), and the USB stick image as USB mass storage under SeaBIOS and OVMF
//! (default menu entry after its timeout). Checks the `RESCUE-REPORT`, the report files
//! the rescue leaves on the stick (read back with mtools), that a `rescue.conf` typo is
//! reported by line with every other disk untouched, and that the artifacts rebuild to
//! the same bytes.
//!
//! The artifacts come from `cargo xtask pxe` and `cargo xtask usb`, run once per test
//! binary (they build the rescue image first when it is stale).

use anyhow::{bail, Context};
use qemu_tests::images;
use qemu_tests::vm::{Bus, Disk, Firmware, Vm, VmBuilder};
use qemu_tests::vm::{OVMF_CODE, OVMF_VARS};
use qemu_tests::{Scratch, RESCUE_BOOT_TIMEOUT};
use rescue::report::{Report, MARKER};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::time::Duration;

/// Firmware, boot menu timeout and bootloader come on top of the rescue's own boot.
const DELIVERY_BOOT_TIMEOUT: Duration = Duration::from_secs(RESCUE_BOOT_TIMEOUT.as_secs() + 120);

struct Artifacts {
    pxe: PathBuf,
    usb: PathBuf,
}

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// Runs `cargo xtask ARGS` and returns its stdout (the verb prints its output path).
fn xtask(args: &[&str]) -> anyhow::Result<String> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let out = Command::new(&cargo)
        .current_dir(root())
        .args(["run", "--quiet", "--locked", "-p", "xtask", "--"])
        .args(args)
        .output()
        .with_context(|| format!("run {cargo} xtask {args:?}"))?;
    if !out.status.success() {
        bail!(
            "`cargo xtask {}` failed ({}):\n{}",
            args.join(" "),
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(String::from_utf8(out.stdout)?.trim().to_string())
}

fn artifacts() -> &'static Artifacts {
    static A: OnceLock<Result<Artifacts, String>> = OnceLock::new();
    let built = A.get_or_init(|| {
        let build = || -> anyhow::Result<Artifacts> {
            Ok(Artifacts {
                pxe: xtask(&["pxe"])?.into(),
                usb: xtask(&["usb"])?.into(),
            })
        };
        build().map_err(|e| format!("{e:#}"))
    });
    match built {
        Ok(a) => a,
        Err(e) => panic!("building the delivery artifacts failed: {e}"),
    }
}

fn need_file(path: &str, package: &str) {
    assert!(
        Path::new(path).is_file(),
        "{path} is missing: apt-get install -y {package} (`cargo xtask test` installs it)"
    );
}

/// The raw JSON of the console's `RESCUE-REPORT` line.
fn console_report_json(console: &str) -> String {
    let line = console
        .lines()
        .find(|l| l.contains(MARKER))
        .expect("the console has a RESCUE-REPORT line");
    let at = line.find(MARKER).unwrap_or(0);
    line[at + MARKER.len()..].trim().to_string()
}

/// The kernel command line the bootloader handed over, as the kernel logged it.
fn kernel_cmdline(console: &str) -> String {
    console
        .lines()
        .find_map(|l| {
            l.split_once("Command line: ")
                .map(|(_, c)| c.trim().to_string())
        })
        .unwrap_or_default()
}

/// A blank data disk with a serial, and its sha256.
fn data_disk(scratch: &Scratch, name: &str) -> anyhow::Result<(PathBuf, String)> {
    let p = scratch.path(name);
    images::blank_disk(&p, 64 << 20)?;
    let h = images::content_fingerprint(&p)?;
    Ok((p, h))
}

fn check_inspect_report(vm: &mut Vm, report: &Report, serial: &str) -> anyhow::Result<()> {
    qemu_tests::vm::ensure(
        vm,
        report.ok,
        &format!("report not ok: {:?}", report.errors),
    )?;
    qemu_tests::vm::ensure(vm, report.action == "inspect", "action is not inspect")?;
    let disk = report
        .disks
        .iter()
        .find(|d| d.serial.as_deref() == Some(serial));
    qemu_tests::vm::ensure(
        vm,
        disk.is_some_and(|d| d.blank && d.size_bytes == 64 << 20),
        &format!("the blank data disk {serial} is not in the report as blank 64 MiB"),
    )
}

/// Netboots from the PXE bundle with `bootfile`, one blank virtio disk attached.
fn pxe_boot(test: &str, bootfile: &str) -> anyhow::Result<String> {
    let a = artifacts();
    let scratch = Scratch::new(test)?;
    let (disk, before) = data_disk(&scratch, "data.img")?;
    let mut vm = VmBuilder::new()
        .disk(Disk::new(&disk, Bus::Virtio).serial("XR-PXE-DATA"))
        .arg("-netdev")
        .arg(format!(
            "user,id=n0,tftp={},bootfile={bootfile}",
            a.pxe.display()
        ))
        .arg("-device")
        .arg("virtio-net-pci,netdev=n0,bootindex=0")
        .spawn(&scratch.dir)?;
    let report = vm.wait_for_report(DELIVERY_BOOT_TIMEOUT)?;
    eprintln!("{test}: report after {:.1} s", vm.elapsed().as_secs_f64());
    vm.wait_exit(Duration::from_secs(60))?;
    check_inspect_report(&mut vm, &report, "XR-PXE-DATA")?;
    let after = images::content_fingerprint(&disk)?;
    qemu_tests::vm::ensure(&mut vm, before == after, "the data disk changed")?;
    Ok(vm.console())
}

#[test]
fn pxe_through_pxelinux_boots_inspect_by_default() {
    let console = pxe_boot("pxe-pxelinux", "pxelinux.0").unwrap();
    assert!(console.contains("PXELINUX"), "pxelinux did not run");
    let cmdline = kernel_cmdline(&console);
    assert!(
        cmdline.starts_with("BOOT_IMAGE=vmlinuz console=tty0 console=ttyS0,115200")
            && !cmdline.contains("rescue.action"),
        "not the default pxelinux entry: {cmdline}"
    );
}

#[test]
fn pxe_through_the_ipxe_script_boots_inspect_by_default() {
    let console = pxe_boot("pxe-ipxe", "boot.ipxe").unwrap();
    let cmdline = kernel_cmdline(&console);
    assert_eq!(
        cmdline, "initrd=initramfs.cpio.gz console=tty0 console=ttyS0,115200",
        "not the default boot.ipxe entry"
    );
}

/// Byte offset of the stick's first partition, from its MBR.
fn partition_offset(img: &Path) -> anyhow::Result<u64> {
    let mut mbr = [0u8; 512];
    std::io::Read::read_exact(&mut std::fs::File::open(img)?, &mut mbr)?;
    if mbr[510..] != [0x55, 0xaa] {
        bail!("{} has no MBR", img.display());
    }
    let lba = u32::from_le_bytes(mbr[454..458].try_into()?);
    Ok(u64::from(lba) * 512)
}

fn mtools(tool: &str, img: &Path, args: &[&str]) -> anyhow::Result<String> {
    let at = format!("{}@@{}", img.display(), partition_offset(img)?);
    let out = Command::new(tool)
        .env("MTOOLS_SKIP_CHECK", "1")
        .args(["-i", &at])
        .args(args)
        .output()
        .with_context(|| format!("run {tool}: apt-get install -y mtools"))?;
    if !out.status.success() {
        bail!(
            "{tool} {args:?} on {} failed: {}",
            img.display(),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

#[derive(Clone, Copy, Debug)]
enum Fw {
    SeaBios,
    Ovmf,
}

struct UsbBoot {
    report: Report,
    console: String,
    stick: PathBuf,
    _scratch: Scratch,
}

/// Boots a copy of the stick image (with `conf` as its rescue.conf when given) as USB
/// mass storage, with `extra` disks on virtio; checks those are byte-identical after.
fn usb_boot(test: &str, fw: Fw, conf: Option<&str>, extra: &[(&str, bool)]) -> UsbBoot {
    let a = artifacts();
    let scratch = Scratch::new(test).unwrap();
    let stick = scratch.path("stick.img");
    std::fs::copy(&a.usb, &stick).unwrap();
    if let Some(conf) = conf {
        let f = scratch.path("rescue.conf");
        std::fs::write(&f, conf).unwrap();
        mtools(
            "mcopy",
            &stick,
            &["-o", f.to_str().unwrap(), "::/rescue.conf"],
        )
        .unwrap();
    }
    let mut vm = VmBuilder::new().disk(Disk::new(&stick, Bus::Usb).bootindex(0));
    if let Fw::Ovmf = fw {
        need_file(OVMF_CODE, "ovmf");
        let vars = scratch.path("OVMF_VARS.fd");
        std::fs::copy(OVMF_VARS, &vars).unwrap();
        vm = vm.firmware(Firmware::Ovmf {
            code: OVMF_CODE.into(),
            vars,
        });
    }
    let mut disks = Vec::new();
    for (serial, partitioned) in extra {
        let p = scratch.path(&format!("{serial}.img"));
        if *partitioned {
            images::two_partition_disk(&p, images::TestDisk::default()).unwrap();
        } else {
            images::blank_disk(&p, 64 << 20).unwrap();
        }
        disks.push((p.clone(), images::content_fingerprint(&p).unwrap()));
        vm = vm.disk(Disk::new(&p, Bus::Virtio).serial(serial));
    }
    let mut vm = vm.spawn(&scratch.dir).unwrap();
    let report = vm.wait_for_report(DELIVERY_BOOT_TIMEOUT).unwrap();
    eprintln!("{test}: report after {:.1} s", vm.elapsed().as_secs_f64());
    vm.wait_exit(Duration::from_secs(60)).unwrap();
    for (p, before) in &disks {
        let after = images::content_fingerprint(p).unwrap();
        qemu_tests::vm::ensure(
            &mut vm,
            &after == before,
            &format!("{} changed during the boot", p.display()),
        )
        .unwrap();
    }
    let console = vm.console();
    UsbBoot {
        report,
        console,
        stick,
        _scratch: scratch,
    }
}

/// The `reports/` files on the stick: name -> content.
fn stick_reports(stick: &Path) -> Vec<(String, String)> {
    let listing = mtools("mdir", stick, &["-b", "::/reports"]).unwrap();
    let mut out = Vec::new();
    for path in listing.lines().map(str::trim).filter(|l| !l.is_empty()) {
        let name = path.rsplit('/').next().unwrap_or(path).to_string();
        let body = mtools("mtype", stick, &[path]).unwrap();
        out.push((name, body));
    }
    out.sort();
    out
}

/// `YYYYmmddTHHMMSSZ-<who>` and the extension.
fn check_report_name(name: &str, ext: &str) -> String {
    let stem = name
        .strip_suffix(ext)
        .unwrap_or_else(|| panic!("{name} does not end in {ext}"));
    let (time, who) = stem
        .split_once('-')
        .unwrap_or_else(|| panic!("{name}: no <time>-<host or serial>"));
    let b = time.as_bytes();
    assert!(
        b.len() == 16
            && b[8] == b'T'
            && b[15] == b'Z'
            && b[..8].iter().chain(&b[9..15]).all(u8::is_ascii_digit),
        "{name}: time is not YYYYmmddTHHMMSSZ"
    );
    assert!(!who.is_empty(), "{name}: no host name or serial");
    stem.to_string()
}

fn check_usb_boot(test: &str, fw: Fw, loader_mark: &str) {
    let b = usb_boot(test, fw, None, &[("XR-USB-DATA", false)]);
    assert!(
        b.console.contains(loader_mark),
        "{fw:?}: {loader_mark:?} not on the console:\n{}",
        b.console
    );
    let cmdline = kernel_cmdline(&b.console);
    assert!(
        cmdline.contains("console=tty0 console=ttyS0,115200") && !cmdline.contains("rescue.action"),
        "{fw:?}: not the default menu entry: {cmdline}"
    );
    assert!(
        b.report.ok,
        "shipped rescue.conf gave errors: {:?}",
        b.report.errors
    );
    assert_eq!(b.report.action, "inspect");
    let data = b
        .report
        .disks
        .iter()
        .find(|d| d.serial.as_deref() == Some("XR-USB-DATA"))
        .unwrap_or_else(|| panic!("data disk missing: {:#?}", b.report.disks));
    assert!(data.blank && data.size_bytes == 64 << 20, "{data:#?}");

    let files = stick_reports(&b.stick);
    assert_eq!(
        files.len(),
        2,
        "want one .json and one .log in reports/: {:?}",
        files.iter().map(|f| &f.0).collect::<Vec<_>>()
    );
    let (json_name, json) = files
        .iter()
        .find(|f| f.0.ends_with(".json"))
        .expect(".json");
    let (log_name, log) = files.iter().find(|f| f.0.ends_with(".log")).expect(".log");
    assert_eq!(
        check_report_name(json_name, ".json"),
        check_report_name(log_name, ".log"),
        "report and log names differ"
    );
    let console_json = console_report_json(&b.console);
    assert_eq!(
        json.trim(),
        console_json,
        "the report file is not the console's RESCUE-REPORT JSON"
    );
    assert_eq!(
        console_report_json(log),
        console_json,
        "the log's RESCUE-REPORT line differs from the console's"
    );
}

#[test]
fn usb_stick_boots_on_seabios_and_leaves_its_report() {
    check_usb_boot("usb-seabios", Fw::SeaBios, "SYSLINUX");
}

#[test]
fn usb_stick_boots_on_ovmf_and_leaves_its_report() {
    check_usb_boot("usb-ovmf", Fw::Ovmf, "EFI stub");
}

#[test]
fn rescue_conf_typo_is_reported_by_line_and_no_disk_is_written() {
    let shipped = mtools("mtype", &artifacts().usb, &["::/rescue.conf"]).unwrap();
    let mut line_no = 0;
    let conf: String = shipped
        .lines()
        .enumerate()
        .map(|(n, l)| {
            if l.trim() == "# rescue.action = inspect" {
                line_no = n + 1;
                "rescue.acton = inspect".to_string()
            } else {
                l.to_string()
            }
        })
        .collect::<Vec<_>>()
        .join("\n");
    assert!(
        line_no > 1,
        "the shipped rescue.conf has no `# rescue.action = inspect` line"
    );
    let b = usb_boot(
        "usb-conf-typo",
        Fw::SeaBios,
        Some(&(conf + "\n")),
        &[("XR-CONF-SRC", true), ("XR-CONF-BLANK", false)],
    );
    assert!(!b.report.ok, "a typo in rescue.conf was accepted");
    let want = format!("rescue.conf line {line_no}:");
    assert!(
        b.report
            .errors
            .iter()
            .any(|e| e.starts_with(&want) && e.contains("rescue.acton")),
        "no error starting with {want:?} naming rescue.acton: {:?}",
        b.report.errors
    );
}

#[test]
fn pxe_bundle_and_usb_image_rebuild_byte_identical() {
    let a = artifacts();
    // Each verb builds twice, 2 s apart, and fails on any differing byte.
    xtask(&["usb", "--check-reproducible"]).unwrap();
    xtask(&["pxe", "--check-reproducible"]).unwrap();
    let manifest: serde_json::Value = serde_json::from_slice(
        &std::fs::read(a.usb.with_file_name("delivery-manifest.json")).unwrap(),
    )
    .unwrap();
    let usb_sha = manifest["usb"]["files"][0]["sha256"]
        .as_str()
        .expect("usb sha256 in delivery-manifest.json");
    assert_eq!(usb_sha, images::sha256_file(&a.usb).unwrap());
    let pxe_files = manifest["pxe"]["files"].as_array().expect("pxe files");
    assert!(pxe_files.len() >= 8, "{pxe_files:?}");
    for f in pxe_files {
        let rel = f["path"].as_str().unwrap();
        let path = a.pxe.parent().unwrap().join(rel);
        assert_eq!(
            f["sha256"].as_str().unwrap(),
            images::sha256_file(&path).unwrap(),
            "{rel}"
        );
    }
}

//! XenServer-like fixture images (`cargo xtask fixture <name>`) and booting them through
//! SeaBIOS (or OVMF, for a UEFI host) → bootloader → Xen → dom0 to read the probe's
//! `FIXTURE-STATUS` line.

use crate::vm::{Disk, Firmware, Vm, VmBuilder, OVMF_CODE};
use anyhow::{bail, Context};
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

pub const STATUS_MARKER: &str = "FIXTURE-STATUS";

/// A GRUB → Xen → dom0 boot under TCG takes 140 to 350 s on an idle machine, but a dom0
/// with the distribution's whole module tree (`xs7-real`) beside another VM took 770 to
/// 1046 s to report, and over 1200 s beside a both-disks boot that was resyncing (its
/// dom0 logging soft lockups and RCU stalls: starved, not hung). The times are printed
/// and recorded; this limit only catches a boot that never reports.
pub const XEN_BOOT_TIMEOUT: Duration = Duration::from_secs(1800);
/// What a boot of both disks may add to [`XEN_BOOT_TIMEOUT`]: its probe waits for md's
/// recovery of every array (6 GiB of members on the realistic fixture, at the speed of
/// emulated disks).
pub const RESYNC_ALLOWANCE: Duration = Duration::from_secs(900);

pub struct Fixture {
    pub image: PathBuf,
    pub description: Value,
    /// How the host boots (the description's `firmware`).
    pub firmware: HostFirmware,
    /// A UEFI host's firmware variables (its NVRAM, with the host's boot entry), beside
    /// the image: boot with a copy ([`boot_xen_uefi`]), never the file itself.
    pub uefi_vars: Option<PathBuf>,
}

/// The firmware a fixture host was installed under.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HostFirmware {
    Bios,
    Uefi,
}

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

/// Builds (or finds in `~/.cache/xenraid/fixtures/`) the fixture and its JSON.
pub fn fixture(name: &str) -> anyhow::Result<Fixture> {
    let e2e_only = std::env::var("XENRAID_E2E_ONLY_FIXTURES").unwrap_or_default();
    if !crate::full_matrix() && e2e_only.split(',').any(|n| n == name) {
        bail!(
            "fixture {name} is e2e-only (E2E_ONLY_FIXTURES in xtask/src/test.rs): \
             gate this test with qemu_tests::full_matrix() or take it off that list"
        );
    }
    let root = workspace_root();
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    // A separate target dir: the outer `cargo test` holds the main one's lock.
    let out = Command::new(cargo)
        .current_dir(&root)
        .args(["run", "-q", "-p", "xtask", "--target-dir"])
        .arg(root.join("target").join("xtask-for-tests"))
        .args(["--", "fixture", name])
        .stderr(Stdio::inherit())
        .output()
        .context("run cargo xtask fixture")?;
    if !out.status.success() {
        bail!("cargo xtask fixture {name} failed ({})", out.status);
    }
    let stdout = String::from_utf8_lossy(&out.stdout);
    let image = PathBuf::from(
        stdout
            .lines()
            .last()
            .context("xtask printed no image path")?
            .trim(),
    );
    let json = image.with_extension("json");
    let description: Value = serde_json::from_str(
        &std::fs::read_to_string(&json).with_context(|| format!("read {}", json.display()))?,
    )?;
    let firmware = match description["firmware"].as_str() {
        Some("uefi") => HostFirmware::Uefi,
        _ => HostFirmware::Bios,
    };
    // Named by its path in the cache; found beside the image wherever that is now.
    let uefi_vars = description["uefi_vars"]
        .as_str()
        .and_then(|v| Path::new(v).file_name())
        .map(|f| image.with_file_name(f));
    if firmware == HostFirmware::Uefi && !uefi_vars.as_ref().is_some_and(|v| v.is_file()) {
        bail!("UEFI fixture {name} has no firmware variables file ({uefi_vars:?})");
    }
    Ok(Fixture {
        image,
        description,
        firmware,
        uefi_vars,
    })
}

/// A private, writable copy of an image (sparse, so it costs what the data costs).
pub fn copy_image(from: &Path, to: &Path) -> anyhow::Result<()> {
    crate::images::run(Command::new("cp").arg("--sparse=always").arg(from).arg(to))?;
    Ok(())
}

/// Boots Xen + dom0 from `disks` (the first is the BIOS boot disk) and returns the
/// probe's status JSON; the VM is killed once the line is read (dom0's power-off does
/// not end QEMU under Xen).
pub fn boot_xen(disks: Vec<Disk>, dir: &Path) -> anyhow::Result<Value> {
    boot_xen_then(disks, dir, Expect::Boot, AfterStatus::Kill)
}

/// What a Xen boot does once the probe has reported.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AfterStatus {
    /// Pull the plug: quickest, for disks nothing boots again (or snapshots).
    Kill,
    /// Let the probe power dom0 off, so arrays are stopped clean as on a real host
    /// (killed, an array without a bitmap resyncs in full at its next boot). Killed
    /// after two minutes if it has not.
    PowerOff,
}

/// How long a Xen boot may take to report.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Expect {
    /// The boot alone.
    Boot,
    /// The boot, then the probe waits for md to recover every array.
    BootAndResync,
}

pub fn boot_xen_then(
    disks: Vec<Disk>,
    dir: &Path,
    expect: Expect,
    after: AfterStatus,
) -> anyhow::Result<Value> {
    boot_xen_with(disks, None, dir, expect, after)
}

/// Boots a UEFI host: OVMF with a writable copy of `vars` (a fixture's
/// [`Fixture::uefi_vars`], or the VARS a conversion left), which then boots whatever
/// its `BootOrder` names first, as a real machine's firmware does. The copy is
/// `dir/vars.fd` ([`uefi_vars_copy`]): read it after the boot to see what the firmware
/// (OVMF adds entries of its own at every boot) and the host wrote. Otherwise as
/// [`boot_xen`].
pub fn boot_xen_uefi(disks: Vec<Disk>, vars: &Path, dir: &Path) -> anyhow::Result<Value> {
    boot_xen_uefi_then(disks, vars, dir, Expect::Boot, AfterStatus::Kill)
}

/// [`boot_xen_uefi`] with [`boot_xen_then`]'s choices.
pub fn boot_xen_uefi_then(
    disks: Vec<Disk>,
    vars: &Path,
    dir: &Path,
    expect: Expect,
    after: AfterStatus,
) -> anyhow::Result<Value> {
    std::fs::create_dir_all(dir)?;
    let copy = uefi_vars_copy(dir);
    std::fs::copy(vars, &copy)
        .with_context(|| format!("copy {} to {}", vars.display(), copy.display()))?;
    boot_xen_with(disks, Some(copy), dir, expect, after)
}

/// Where [`boot_xen_uefi`] keeps the VM's variable store.
pub fn uefi_vars_copy(dir: &Path) -> PathBuf {
    dir.join("vars.fd")
}

fn boot_xen_with(
    disks: Vec<Disk>,
    uefi_vars: Option<PathBuf>,
    dir: &Path,
    expect: Expect,
    after: AfterStatus,
) -> anyhow::Result<Value> {
    // No VGA: with a whole module tree dom0 loads bochs-drm, and under TCG its
    // framebuffer console (the default entry's last console= is tty0) drew for minutes,
    // stalling modprobe in soft lockups. The tests read the serial port only.
    let mut b = VmBuilder::new()
        .machine("pc")
        .cpu(crate::vm::XEN_CPU, 1)
        .memory_mib(2048)
        .vga("none");
    match uefi_vars {
        None => {
            b = b.bios_text_on_serial();
            for (i, d) in disks.into_iter().enumerate() {
                b = b.disk(if i == 0 { d.bootindex(0) } else { d });
            }
        }
        // No `bootindex`: with one, QEMU hands OVMF a `bootorder` file, and OVMF's
        // QemuBootOrderLib rewrites BootOrder after it and deletes the active Boot####
        // entries it neither matches nor keeps by its survival policy — the host's NVRAM
        // would no longer decide what boots. OVMF writes its own text (and GRUB's) on
        // the serial port without help.
        Some(vars) => {
            b = b.firmware(Firmware::Ovmf {
                code: OVMF_CODE.into(),
                vars,
            });
            for d in disks {
                b = b.disk(d);
            }
        }
    }
    let mut vm: Vm = b.spawn(dir)?;
    let timeout = match expect {
        Expect::Boot => XEN_BOOT_TIMEOUT,
        Expect::BootAndResync => XEN_BOOT_TIMEOUT + RESYNC_ALLOWANCE,
    };
    let line = vm.wait_for_marker(STATUS_MARKER, timeout)?;
    let status: Value = serde_json::from_str(&line)
        .map_err(|e| vm.failure(&format!("FIXTURE-STATUS is not JSON ({e})")))?;
    let secs = vm.elapsed().as_secs_f64();
    eprintln!("FIXTURE-STATUS after {secs:.0} s");
    record_boot_time(dir, secs);
    if after == AfterStatus::PowerOff && vm.wait_exit(Duration::from_secs(120)).is_err() {
        eprintln!("dom0 did not power off within 120 s after its status: killed");
    }
    vm.kill();
    Ok(status)
}

/// Appends `<boot dir> <seconds>` to `target/xen-boot-times.txt`: libtest swallows a
/// passing test's output, and these times are what the README and the issues report.
fn record_boot_time(dir: &Path, secs: f64) {
    use std::io::Write;
    let file = workspace_root().join("target").join("xen-boot-times.txt");
    if let Ok(mut f) = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(file)
    {
        let _ = writeln!(f, "{} {secs:.0}", dir.display());
    }
}

/// Tells a fixture image's probe to wait for any md resync before it reports: a file in
/// its root filesystem, written with debugfs (nothing mounted).
pub fn probe_waits_for_resync(image: &Path) -> anyhow::Result<()> {
    let root = rescue::inspect::inspect_path(image)?
        .partitions
        .into_iter()
        .find(|p| p.role.as_deref() == Some("root"))
        .context("the image has no root partition")?;
    let fs = format!("{}?offset={}", image.display(), root.start_lba * 512);
    // The directory is there on every fixture; debugfs says so and goes on.
    crate::images::run(Command::new("debugfs").args(["-w", &fs, "-R", "mkdir etc/fixture"]))?;
    crate::images::run(Command::new("debugfs").args([
        "-w",
        &fs,
        "-R",
        "write /dev/null etc/fixture/wait-resync",
    ]))?;
    Ok(())
}

/// Checks every checksum in a status: the root manifest and every SR LV.
pub fn checksums_ok(status: &Value) -> Result<(), String> {
    if status["manifest"]["ok"] != Value::Bool(true) {
        return Err(format!("root manifest: {}", status["manifest"]));
    }
    if let Some(lvs) = status["sr_lvs"].as_array() {
        for lv in lvs {
            if lv["ok"] != Value::Bool(true) {
                return Err(format!("SR LV: {lv}"));
            }
        }
    }
    Ok(())
}

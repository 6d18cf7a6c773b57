//! Host tools the project needs, and the Debian packages that provide them. Installed
//! with apt-get when we run as root; otherwise the exact command is printed.

use anyhow::bail;
use xshell::{cmd, Shell};

/// (command, Debian package) needed to build the image.
pub const BUILD: &[(&str, &str)] = &[
    ("apt-get", "apt"),
    ("dpkg-deb", "dpkg"),
    ("rustup", "rustup"),
];

/// (command, Debian package) needed by the test suite and benchmarks.
pub const TEST: &[(&str, &str)] = &[
    ("qemu-system-x86_64", "qemu-system-x86"),
    ("qemu-img", "qemu-utils"),
    ("sgdisk", "gdisk"),
    ("mdadm", "mdadm"),
    ("mke2fs", "e2fsprogs"),
    ("mkfs.vfat", "dosfstools"),
    ("mcopy", "mtools"),
    ("pvcreate", "lvm2"),
    ("partclone.extfs", "partclone"),
    ("cpio", "cpio"),
    ("blkid", "util-linux"),
    ("sfdisk", "fdisk"),
    ("losetup", "mount"),
    ("modinfo", "kmod"),
    ("gzip", "gzip"),
    // Fixture images (built on the host and in a builder VM).
    ("mmdebstrap", "mmdebstrap"),
    ("debugfs", "e2fsprogs"),
    // Checks of what the conversion writes into the target.
    ("grub-script-check", "grub-common"),
    ("lvmconfig", "lvm2"),
    ("findmnt", "util-linux"),
    ("file", "file"),
];

/// Firmware files QEMU tests boot with, and their packages.
pub const TEST_FILES: &[(&str, &str)] = &[
    ("/usr/share/seabios/bios-256k.bin", "seabios"),
    ("/usr/lib/ipxe/qemu/efi-virtio.rom", "ipxe-qemu"),
    ("/usr/share/OVMF/OVMF_CODE_4M.fd", "ovmf"),
];

/// Debian packages whose tool or file is missing, sorted, each once.
fn missing_packages(tools: &[(&str, &str)], files: &[(&str, &str)]) -> Vec<String> {
    let mut missing: Vec<String> = tools
        .iter()
        .filter(|(bin, _)| which(bin).is_none())
        .map(|(_, pkg)| pkg.to_string())
        .chain(
            files
                .iter()
                .filter(|(f, _)| !std::path::Path::new(f).exists())
                .map(|(_, pkg)| pkg.to_string()),
        )
        .collect();
    missing.sort();
    missing.dedup();
    missing
}

/// Makes sure every tool is present, installing the missing packages when root.
/// An install can remove what was there (a newer `qemu-utils` conflicts with the
/// distribution's `qemu-system-x86`), so every tool is checked again afterwards and
/// whatever went missing is installed once more from the distribution.
pub fn ensure(sh: &Shell, tools: &[(&str, &str)], files: &[(&str, &str)]) -> anyhow::Result<()> {
    let missing = missing_packages(tools, files);
    if missing.is_empty() {
        return Ok(());
    }
    if !rustix_is_root() {
        bail!(
            "missing Debian packages: {}; install them with: sudo apt-get install -y --no-install-recommends {}",
            missing.join(" "),
            missing.join(" ")
        );
    }
    eprintln!(
        "xtask: installing missing Debian packages: {}",
        missing.join(" ")
    );
    apt_install(sh, &missing)?;
    let removed = missing_packages(tools, files);
    if removed.is_empty() {
        return Ok(());
    }
    eprintln!(
        "xtask: the install removed or did not provide: {} — installing them again",
        describe(tools, files, &removed)
    );
    apt_install(sh, &removed)?;
    let still = missing_packages(tools, files);
    if !still.is_empty() {
        bail!(
            "still missing after installing: {}; bring them back with: apt-get install -y --no-install-recommends {}",
            describe(tools, files, &still),
            still.join(" ")
        );
    }
    Ok(())
}

/// "`qemu-img` (qemu-utils), ..." for the tools and files of these packages.
fn describe(tools: &[(&str, &str)], files: &[(&str, &str)], pkgs: &[String]) -> String {
    tools
        .iter()
        .chain(files)
        .filter(|(_, pkg)| pkgs.iter().any(|p| p == pkg))
        .filter(|(what, _)| which(what).is_none() && !std::path::Path::new(what).exists())
        .map(|(what, pkg)| format!("`{what}` ({pkg})"))
        .collect::<Vec<_>>()
        .join(", ")
}

fn apt_install(sh: &Shell, pkgs: &[String]) -> anyhow::Result<()> {
    let _env = sh.push_env("DEBIAN_FRONTEND", "noninteractive");
    if cmd!(
        sh,
        "apt-get install -y -q --no-install-recommends {pkgs...}"
    )
    .run()
    .is_err()
    {
        cmd!(sh, "apt-get update -q").run()?;
        cmd!(
            sh,
            "apt-get install -y -q --no-install-recommends {pkgs...}"
        )
        .run()?;
    }
    Ok(())
}

/// Makes sure the static-init target is installed.
pub fn ensure_musl_target(sh: &Shell) -> anyhow::Result<()> {
    let installed = cmd!(sh, "rustup target list --installed").read()?;
    if !installed
        .lines()
        .any(|l| l.trim() == crate::build::INIT_TARGET)
    {
        let target = crate::build::INIT_TARGET;
        eprintln!("xtask: adding the Rust target {target}");
        cmd!(sh, "rustup target add {target}").run()?;
    }
    Ok(())
}

pub fn which(bin: &str) -> Option<std::path::PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/sbin", "/sbin"].map(Into::into))
        .map(|d| d.join(bin))
        .find(|p| p.is_file())
}

fn rustix_is_root() -> bool {
    // Avoid a libc dependency for one getuid(): /proc/self/status has it.
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("Uid:"))
                .map(|l| l.split_whitespace().nth(1) == Some("0"))
        })
        .unwrap_or(false)
}

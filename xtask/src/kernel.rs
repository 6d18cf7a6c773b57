//! The Debian kernel: resolve `linux-image-amd64` to its versioned package, download it
//! with apt-get, unpack it with dpkg-deb, cache it under `~/.cache/xenraid/kernel/`.

use anyhow::{bail, Context};
use std::path::{Path, PathBuf};
use xshell::{cmd, Shell};

/// A kernel image and the modules tree that matches it.
#[derive(Debug, Clone)]
pub struct Kernel {
    pub vmlinuz: PathBuf,
    /// `.../lib/modules/<version>`
    pub modules_dir: PathBuf,
    pub version: String,
    /// Debian package and version, or "custom".
    pub source: String,
}

/// Debian's current kernel, from the cache or freshly downloaded.
pub fn debian(sh: &Shell) -> anyhow::Result<Kernel> {
    let depends = cmd!(sh, "apt-cache depends linux-image-amd64").read()?;
    let pkg = depends
        .lines()
        .filter_map(|l| l.trim().strip_prefix("Depends: "))
        .find(|p| p.starts_with("linux-image-") && p.ends_with("-amd64"))
        .context("apt-cache does not know linux-image-amd64: run `apt-get update` first")?
        .to_string();
    let policy = cmd!(sh, "apt-cache policy {pkg}").read()?;
    let version = policy
        .lines()
        .find_map(|l| l.trim().strip_prefix("Candidate: "))
        .filter(|v| *v != "(none)")
        .with_context(|| format!("no installable version of {pkg}: run `apt-get update`"))?
        .to_string();
    let dir = crate::cache::root()
        .join("kernel")
        .join(format!("{pkg}_{version}"));
    let done = dir.join(".complete");
    if !done.exists() {
        eprintln!("xtask: downloading {pkg} {version}");
        let tmp = crate::cache::root()
            .join("kernel")
            .join(format!(".tmp-{pkg}"));
        let _ = std::fs::remove_dir_all(&tmp);
        sh.create_dir(&tmp)?;
        let _cd = sh.push_dir(&tmp);
        cmd!(
            sh,
            "apt-get -o APT::Sandbox::User=root download {pkg}={version}"
        )
        .run()?;
        let deb = sh
            .read_dir(&tmp)?
            .into_iter()
            .find(|p| p.extension().is_some_and(|e| e == "deb"))
            .context("apt-get download left no .deb")?;
        let _ = std::fs::remove_dir_all(&dir);
        cmd!(sh, "dpkg-deb -x {deb} {dir}").run()?;
        std::fs::remove_file(&deb)?;
        std::fs::write(&done, format!("{pkg} {version}\n"))?;
        let _ = std::fs::remove_dir_all(&tmp);
    }
    let mut k = from_tree(&dir)?;
    k.source = format!("{pkg} {version}");
    Ok(k)
}

/// Finds `boot/vmlinuz-*` and `lib/modules/*` in an unpacked kernel package.
fn from_tree(root: &Path) -> anyhow::Result<Kernel> {
    let modules_parent = root.join("lib/modules");
    let mut versions: Vec<PathBuf> = std::fs::read_dir(&modules_parent)
        .with_context(|| format!("{} missing", modules_parent.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.is_dir())
        .collect();
    versions.sort();
    let [modules_dir] = versions.as_slice() else {
        bail!(
            "expected exactly one kernel version in {}, found {}",
            modules_parent.display(),
            versions.len()
        );
    };
    let version = modules_dir
        .file_name()
        .unwrap()
        .to_string_lossy()
        .into_owned();
    let vmlinuz = root.join("boot").join(format!("vmlinuz-{version}"));
    if !vmlinuz.is_file() {
        bail!("{} missing in the kernel package", vmlinuz.display());
    }
    Ok(Kernel {
        vmlinuz,
        modules_dir: modules_dir.clone(),
        version,
        source: String::new(),
    })
}

/// An operator's own kernel: `--kernel PATH --modules DIR` (DIR is `lib/modules/<version>`).
pub fn custom(vmlinuz: &Path, modules_dir: &Path) -> anyhow::Result<Kernel> {
    if !vmlinuz.is_file() {
        bail!(
            "--kernel {}: no such file; give the path to a bzImage/vmlinuz",
            vmlinuz.display()
        );
    }
    if !modules_dir.join("modules.builtin").is_file() && !modules_dir.join("kernel").is_dir() {
        bail!(
            "--modules {}: not a modules tree (no kernel/ or modules.builtin); give lib/modules/<version>",
            modules_dir.display()
        );
    }
    let version = modules_dir
        .file_name()
        .context("--modules needs a directory named after the kernel version")?
        .to_string_lossy()
        .into_owned();
    Ok(Kernel {
        vmlinuz: vmlinuz.into(),
        modules_dir: modules_dir.into(),
        version,
        source: "custom".into(),
    })
}

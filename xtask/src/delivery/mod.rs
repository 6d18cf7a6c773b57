//! `cargo xtask pxe` and `cargo xtask usb`: the two ways operators boot the rescue.
//!
//! Both are built into a staging directory first and only then copied over the previous
//! output when the bytes differ, so a test booting the old output is never handed a
//! half-written file. `--check-reproducible` builds twice (two seconds apart, past FAT's
//! timestamp resolution) and fails unless every output file has the same sha256.

pub mod pxe;
pub mod usb;

use anyhow::{bail, Context};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use xshell::Shell;

#[derive(clap::Args, Debug, Default)]
pub struct DeliveryArgs {
    /// Build twice into scratch directories and fail unless both are byte-identical.
    #[arg(long)]
    pub check_reproducible: bool,
}

/// (command or file, Debian package) that `pxe` and `usb` build with.
pub const TOOLS: &[(&str, &str)] = &[
    ("mkfs.fat", "dosfstools"),
    ("mcopy", "mtools"),
    ("syslinux", "syslinux"),
];
pub const FILES: &[(&str, &str)] = &[
    (PXELINUX_0, "pxelinux"),
    (SYSLINUX_MBR, "syslinux-common"),
    (SYSLINUX_MODULES, "syslinux-common"),
    (SYSTEMD_BOOT_EFI, "systemd-boot-efi"),
];
pub const PXELINUX_0: &str = "/usr/lib/PXELINUX/pxelinux.0";
pub const SYSLINUX_MBR: &str = "/usr/lib/syslinux/mbr/mbr.bin";
pub const SYSLINUX_MODULES: &str = "/usr/lib/syslinux/modules/bios";
pub const SYSTEMD_BOOT_EFI: &str = "/usr/lib/systemd/boot/efi/systemd-bootx64.efi";
/// The BIOS modules a syslinux menu needs besides ldlinux.c32.
pub const MENU_MODULES: &[&str] = &["ldlinux.c32", "menu.c32", "libutil.c32"];

/// Consoles every boot entry names: VGA and the first serial port (serial-over-LAN).
pub const CONSOLES: &str = "console=tty0 console=ttyS0,115200";
/// Seconds a boot menu waits before it boots the first (inspect) entry.
pub const MENU_TIMEOUT_S: u32 = 5;

/// One boot menu entry, the same on every boot path.
pub struct Entry {
    pub id: &'static str,
    /// Short: syslinux's menu shows 50 characters or so.
    pub title: &'static str,
    /// The rescue's own kernel arguments (consoles are added by [`Entry::cmdline`]).
    pub args: &'static str,
}

impl Entry {
    pub fn cmdline(&self) -> String {
        format!("{CONSOLES} {}", self.args).trim_end().to_string()
    }
}

/// The first entry is the default.
pub const ENTRIES: &[Entry] = &[
    Entry {
        id: "inspect",
        title: "Inspect the disks (read-only), or what the stick's rescue.conf says",
        // No rescue.action: inspect is the rescue's default, and a stick's rescue.conf
        // can choose another without disagreeing with the menu.
        args: "",
    },
    Entry {
        id: "dry-run",
        title: "Convert to RAID1: dry run (writes nothing)",
        args: "rescue.action=convert rescue.dry-run",
    },
    Entry {
        id: "convert",
        title: "CONVERT to RAID1 (writes the second disk)",
        args: "rescue.action=convert rescue.source=auto rescue.mirror=auto",
    },
];

/// The time every file date in the outputs is set to: `SOURCE_DATE_EPOCH` when set (the
/// reproducible-builds convention), else a fixed date, never the clock.
pub fn source_date_epoch() -> anyhow::Result<u64> {
    match std::env::var("SOURCE_DATE_EPOCH") {
        Ok(s) => s.trim().parse().with_context(|| {
            format!("SOURCE_DATE_EPOCH={s:?} is not a number of seconds: unset it or fix it")
        }),
        // 2024-01-01T00:00:00Z
        Err(_) => Ok(1_704_067_200),
    }
}

/// A scratch directory under `target/rescue/`, emptied first.
fn stage_dir(name: &str) -> anyhow::Result<PathBuf> {
    let dir = crate::build::output_dir().join(format!(".stage-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).with_context(|| format!("create {}", dir.display()))?;
    Ok(dir)
}

/// Relative path -> (bytes, sha256).
pub type Digest = BTreeMap<String, (u64, String)>;

/// The [`Digest`] of every file under `dir`.
pub fn tree_digest(dir: &Path) -> anyhow::Result<Digest> {
    let mut out = BTreeMap::new();
    let mut todo = vec![dir.to_path_buf()];
    while let Some(d) = todo.pop() {
        for e in std::fs::read_dir(&d).with_context(|| format!("read {}", d.display()))? {
            let p = e?.path();
            if p.is_dir() {
                todo.push(p);
            } else {
                let bytes = std::fs::read(&p).with_context(|| format!("read {}", p.display()))?;
                let rel = p.strip_prefix(dir)?.to_string_lossy().into_owned();
                out.insert(rel, (bytes.len() as u64, crate::build::sha256_hex(&bytes)));
            }
        }
    }
    Ok(out)
}

/// Builds with `make(dir)` into a staging directory and returns its digest; with
/// `check`, builds a second time two seconds later and fails on any difference.
fn build_staged(
    name: &str,
    check: bool,
    make: impl Fn(&Path) -> anyhow::Result<()>,
) -> anyhow::Result<(PathBuf, Digest)> {
    let first = stage_dir(&format!("{name}-a"))?;
    make(&first)?;
    let digest = tree_digest(&first)?;
    if digest.is_empty() {
        bail!("{name}: the build produced no files");
    }
    if check {
        // FAT stores times in 2 s steps: a second build within the same step could hide
        // a clock-dependent byte.
        std::thread::sleep(std::time::Duration::from_millis(2100));
        let second = stage_dir(&format!("{name}-b"))?;
        make(&second)?;
        let again = tree_digest(&second)?;
        let _ = std::fs::remove_dir_all(&second);
        if again != digest {
            let differing: Vec<&String> = digest
                .keys()
                .chain(again.keys())
                .filter(|k| digest.get(*k) != again.get(*k))
                .collect();
            bail!(
                "{name} is not reproducible: {differing:?} differ between two builds \
                 (first build kept in {})",
                first.display()
            );
        }
        eprintln!(
            "xtask: {name}: two builds are byte-identical ({} files)",
            digest.len()
        );
    }
    Ok((first, digest))
}

/// Makes `dest` hold exactly the files of `stage` (rewriting only changed files), then
/// removes `stage`.
fn install(stage: &Path, dest: &Path) -> anyhow::Result<()> {
    let want = tree_digest(stage)?;
    if dest.exists() {
        for (rel, _) in tree_digest(dest)? {
            if !want.contains_key(&rel) {
                std::fs::remove_file(dest.join(&rel))?;
            }
        }
    }
    for rel in want.keys() {
        let to = dest.join(rel);
        std::fs::create_dir_all(to.parent().context("file without a parent")?)?;
        replace_if_changed(&stage.join(rel), &to)?;
    }
    std::fs::remove_dir_all(stage)?;
    Ok(())
}

/// Puts `from`'s bytes at `to` by rename (a reader never sees half a file), unless `to`
/// already has them.
fn replace_if_changed(from: &Path, to: &Path) -> anyhow::Result<()> {
    let bytes = std::fs::read(from).with_context(|| format!("read {}", from.display()))?;
    if std::fs::read(to).ok().as_deref() == Some(&bytes[..]) {
        return Ok(());
    }
    let tmp = to.with_extension(format!("tmp-{}", std::process::id()));
    std::fs::write(&tmp, &bytes).with_context(|| format!("write {}", tmp.display()))?;
    std::fs::rename(&tmp, to).with_context(|| format!("rename to {}", to.display()))?;
    Ok(())
}

/// Records `key`'s files (path relative to target/rescue, bytes, sha256) in
/// `target/rescue/delivery-manifest.json`, keeping the other key's record.
fn record(key: &str, files: &Digest, prefix: &str) -> anyhow::Result<()> {
    let path = crate::build::output_dir().join("delivery-manifest.json");
    let mut doc: serde_json::Map<String, serde_json::Value> = std::fs::read(&path)
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .unwrap_or_default();
    let entries: Vec<serde_json::Value> = files
        .iter()
        .map(|(rel, (bytes, sha))| {
            serde_json::json!({ "path": format!("{prefix}{rel}"), "bytes": bytes, "sha256": sha })
        })
        .collect();
    let total: u64 = files.values().map(|(b, _)| b).sum();
    doc.insert(
        key.into(),
        serde_json::json!({ "total_bytes": total, "files": entries }),
    );
    std::fs::write(
        &path,
        serde_json::to_string_pretty(&serde_json::Value::Object(doc))? + "\n",
    )?;
    Ok(())
}

/// Builds the rescue image and makes sure the delivery tools are installed.
fn prepare(sh: &Shell) -> anyhow::Result<crate::build::Built> {
    crate::deps::ensure(sh, TOOLS, FILES)?;
    crate::build::run(sh, &Default::default())
}

//! `cargo xtask build`: the static `rescue` init, the kernel, the initramfs and a manifest
//! in `target/rescue/`.

use crate::kernel::{self, Kernel};
use anyhow::Context;
use serde::Serialize;
use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};
use xshell::{cmd, Shell};

/// The Rust target that gives a static init with no loader.
pub const INIT_TARGET: &str = "x86_64-unknown-linux-musl";

#[derive(clap::Args, Debug, Default)]
pub struct BuildArgs {
    /// Use this kernel image instead of Debian's (needs --modules).
    #[arg(long, requires = "modules")]
    pub kernel: Option<PathBuf>,
    /// The modules tree matching --kernel: `.../lib/modules/<version>`.
    #[arg(long, requires = "kernel")]
    pub modules: Option<PathBuf>,
    /// Write the image somewhere else than target/rescue/.
    #[arg(long)]
    pub out: Option<PathBuf>,
}

/// What `build` produced.
pub struct Built {
    pub dir: PathBuf,
    pub vmlinuz: PathBuf,
    pub initramfs: PathBuf,
    pub manifest: Manifest,
}

#[derive(Serialize, Debug)]
pub struct Manifest {
    pub kernel_version: String,
    pub kernel_source: String,
    pub vmlinuz: FileEntry,
    pub initramfs: FileEntry,
    pub init_bytes: u64,
    pub modules: Vec<String>,
    pub builtin_modules: Vec<String>,
}

#[derive(Serialize, Debug)]
pub struct FileEntry {
    pub path: String,
    pub bytes: u64,
    pub sha256: String,
}

pub fn output_dir() -> PathBuf {
    crate::project_root().join("target/rescue")
}

pub fn run(sh: &Shell, args: &BuildArgs) -> anyhow::Result<Built> {
    crate::deps::ensure(sh, crate::deps::BUILD, &[])?;
    crate::deps::ensure_musl_target(sh)?;
    let kernel = match (&args.kernel, &args.modules) {
        (Some(k), Some(m)) => kernel::custom(k, m)?,
        _ => kernel::debian(sh)?,
    };
    let init = build_init(sh)?;
    assemble(&kernel, &init, args.out.clone().unwrap_or_else(output_dir))
}

/// Builds the release `rescue` binary for the static target.
pub fn build_init(sh: &Shell) -> anyhow::Result<PathBuf> {
    cmd!(
        sh,
        "cargo build --release --locked -p rescue --target {INIT_TARGET}"
    )
    .run()?;
    let target_dir = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| crate::project_root().join("target"));
    Ok(target_dir.join(INIT_TARGET).join("release/rescue"))
}

fn assemble(kernel: &Kernel, init_path: &Path, dir: PathBuf) -> anyhow::Result<Built> {
    let init = std::fs::read(init_path).with_context(|| format!("read {}", init_path.display()))?;
    let patterns_file = crate::project_root().join("kernel-config/modules.txt");
    let patterns = std::fs::read_to_string(&patterns_file)
        .with_context(|| format!("read {}", patterns_file.display()))?;
    let image = initramfs::build_image(&initramfs::ImageSpec {
        init: &init,
        modules_dir: &kernel.modules_dir,
        patterns: &initramfs::parse_module_list(&patterns)?,
        extra: &[],
    })
    .context("building the initramfs")?;

    std::fs::create_dir_all(&dir)?;
    let vmlinuz = dir.join("vmlinuz");
    let initramfs_path = dir.join("initramfs.cpio.gz");
    let kernel_bytes = std::fs::read(&kernel.vmlinuz)?;
    write_if_changed(&vmlinuz, &kernel_bytes)?;
    write_if_changed(&initramfs_path, &image.gz_bytes)?;
    let manifest = Manifest {
        kernel_version: kernel.version.clone(),
        kernel_source: kernel.source.clone(),
        vmlinuz: entry("vmlinuz", &kernel_bytes),
        initramfs: entry("initramfs.cpio.gz", &image.gz_bytes),
        init_bytes: init.len() as u64,
        modules: image.modules.iter().map(|m| m.name.clone()).collect(),
        builtin_modules: image.builtin.clone(),
    };
    std::fs::write(
        dir.join("manifest.json"),
        serde_json::to_string_pretty(&manifest)? + "\n",
    )?;
    eprintln!(
        "xtask: built {} ({} bytes), {} ({} bytes, {} modules), kernel {}",
        vmlinuz.display(),
        manifest.vmlinuz.bytes,
        initramfs_path.display(),
        manifest.initramfs.bytes,
        manifest.modules.len(),
        kernel.version
    );
    Ok(Built {
        dir,
        vmlinuz,
        initramfs: initramfs_path,
        manifest,
    })
}

fn entry(path: &str, bytes: &[u8]) -> FileEntry {
    FileEntry {
        path: path.into(),
        bytes: bytes.len() as u64,
        sha256: sha256_hex(bytes),
    }
}

pub fn sha256_hex(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Leaves the file (and its mtime) alone when the content is the same.
fn write_if_changed(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    if std::fs::read(path).ok().as_deref() == Some(bytes) {
        return Ok(());
    }
    std::fs::write(path, bytes).with_context(|| format!("write {}", path.display()))
}

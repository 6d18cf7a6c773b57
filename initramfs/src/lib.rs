//! Builds the rescue initramfs: a deterministic gzip-compressed newc cpio
//! holding the static `/init`, the kernel modules it needs (dependency
//! closure, in load order) and the list `/lib/modules/load-order` that
//! `/init` follows to load them with `finit_module`.

mod archive;
mod elfcheck;
mod error;
mod modinfo;
mod modules;

use std::path::Path;

pub use archive::{Archive, Node, DEFAULT_DIR_MODE};
pub use elfcheck::check_static_init;
pub use error::{Error, Result};
pub use modinfo::{normalize, ModInfo};
pub use modules::{parse_module_list, Closure, Module, ModuleTree, SoftDep};

/// Where `/init` reads the module files to load, one absolute path a line.
pub const LOAD_ORDER_PATH: &str = "/lib/modules/load-order";

/// Empty directories the rescue mounts on or writes into.
pub const EMPTY_DIRS: [(&str, u32); 6] = [
    ("/proc", 0o555),
    ("/sys", 0o555),
    ("/dev", 0o755),
    ("/mnt", 0o755),
    ("/run", 0o755),
    ("/tmp", 0o1777),
];

/// What goes into the image.
#[derive(Debug, Clone, Copy)]
pub struct ImageSpec<'a> {
    /// The static rescue binary, installed as `/init`.
    pub init: &'a [u8],
    /// `lib/modules/<kernel version>/` of the kernel that boots the image.
    pub modules_dir: &'a Path,
    /// Module name patterns (see [`parse_module_list`]).
    pub patterns: &'a [String],
    /// Anything else to add, by absolute path.
    pub extra: &'a [(String, Node)],
}

/// One module placed in the image.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModuleInfo {
    pub name: String,
    /// Absolute path inside the image, as listed in the load-order file.
    pub image_path: String,
    /// Size of the (uncompressed) `.ko` in bytes.
    pub size: u64,
    /// Direct dependencies (`depends=`), normalized.
    pub depends: Vec<String>,
}

/// The finished image and what went into it.
#[derive(Debug, Clone)]
pub struct BuiltImage {
    /// The gzip-compressed cpio, ready to pass as initrd.
    pub gz_bytes: Vec<u8>,
    /// Modules in load order.
    pub modules: Vec<ModuleInfo>,
    /// Requested or needed modules that the kernel has built in.
    pub builtin: Vec<String>,
    /// Soft dependencies nothing in the image provides (worth a warning).
    pub unresolved_softdeps: Vec<SoftDep>,
    pub kernel_version: String,
}

/// Builds the initramfs described by `spec`.
pub fn build_image(spec: &ImageSpec<'_>) -> Result<BuiltImage> {
    check_static_init(spec.init)?;
    let tree = ModuleTree::open(spec.modules_dir)?;
    let closure = tree.resolve(spec.patterns)?;
    let kernel_version = tree.kernel_version().to_string();

    let mut archive = Archive::new();
    archive.add_file("/init", spec.init.to_vec(), 0o755)?;
    for (dir, mode) in EMPTY_DIRS {
        archive.add_dir(dir, mode)?;
    }
    archive.add_char_device("/dev/console", 0o600, 5, 1)?;
    archive.add_char_device("/dev/null", 0o666, 1, 3)?;

    let mut modules = Vec::with_capacity(closure.modules.len());
    let mut load_order = String::new();
    for module in closure.modules {
        let image_path = format!("/lib/modules/{kernel_version}/{}", module.rel_path);
        load_order.push_str(&image_path);
        load_order.push('\n');
        modules.push(ModuleInfo {
            name: module.name,
            image_path: image_path.clone(),
            size: module.data.len() as u64,
            depends: module.info.depends,
        });
        archive.add_file(&image_path, module.data, 0o644)?;
    }
    archive.add_file(LOAD_ORDER_PATH, load_order.into_bytes(), 0o644)?;

    for (path, node) in spec.extra {
        archive.add(path, node.clone())?;
    }

    Ok(BuiltImage {
        gz_bytes: archive.to_cpio_gz()?,
        modules,
        builtin: closure.builtin,
        unresolved_softdeps: closure.unresolved_softdeps,
        kernel_version,
    })
}

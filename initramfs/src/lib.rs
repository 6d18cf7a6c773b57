//! Builds the rescue initramfs: a deterministic gzip-compressed newc cpio
//! holding the static `/init`, the kernel modules it needs (dependency
//! closure, in load order) and the index `/lib/modules/index` that `/init`
//! reads to load drivers for the hardware present (by modalias) with
//! `finit_module`, prerequisites first.

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

/// The module index `/init` reads, one record a line:
/// `module <name> <path> [prereq,prereq]` in load order, then `alias <glob> <name>`.
pub const INDEX_PATH: &str = "/lib/modules/index";

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
    /// Absolute path inside the image, as listed in the index.
    pub image_path: String,
    /// Size of the (uncompressed) `.ko` in bytes.
    pub size: u64,
    /// Direct dependencies (`depends=`), normalized.
    pub depends: Vec<String>,
    /// Modules loaded before this one: `depends=` plus soft dependencies in the image.
    pub prerequisites: Vec<String>,
    /// `alias=` patterns the kernel matches against device modaliases.
    pub aliases: Vec<String>,
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

/// The text of [`INDEX_PATH`] for modules in load order.
pub fn index_text(modules: &[ModuleInfo]) -> String {
    let mut out = String::new();
    for m in modules {
        out.push_str(&format!(
            "module {} {} {}\n",
            m.name,
            m.image_path,
            m.prerequisites.join(",")
        ));
    }
    for m in modules {
        for a in &m.aliases {
            out.push_str(&format!("alias {a} {}\n", m.name));
        }
    }
    out
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
    for module in closure.modules {
        let image_path = format!("/lib/modules/{kernel_version}/{}", module.rel_path);
        modules.push(ModuleInfo {
            prerequisites: closure
                .prerequisites
                .get(&module.name)
                .map(|p| p.iter().cloned().collect())
                .unwrap_or_default(),
            name: module.name,
            image_path: image_path.clone(),
            size: module.data.len() as u64,
            depends: module.info.depends,
            // An alias with whitespace cannot be one word of the index (none seen in practice).
            aliases: module
                .info
                .aliases
                .into_iter()
                .filter(|a| !a.contains(char::is_whitespace))
                .collect(),
        });
        archive.add_file(&image_path, module.data, 0o644)?;
    }
    archive.add_file(INDEX_PATH, index_text(&modules).into_bytes(), 0o644)?;

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

#[cfg(test)]
mod tests {
    use super::*;
    use goblin::elf::header::{EM_X86_64, ET_EXEC};

    fn builtin_only_tree(tag: &str) -> std::path::PathBuf {
        let dir = std::env::temp_dir()
            .join(format!("initramfs-lib-{tag}-{}", std::process::id()))
            .join("6.1.0-test");
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("modules.builtin"), "kernel/drivers/md/md-mod.ko\n").unwrap();
        dir
    }

    #[test]
    fn image_with_builtin_modules_only_has_empty_index() {
        let dir = builtin_only_tree("builtin");
        let init = elfcheck::tests::minimal_elf(EM_X86_64, ET_EXEC, false);
        let extra = [(
            "/etc/hello".to_string(),
            Node::File {
                data: b"hi\n".to_vec(),
                mode: 0o644,
            },
        )];
        let built = build_image(&ImageSpec {
            init: &init,
            modules_dir: &dir,
            patterns: &["md_mod".to_string()],
            extra: &extra,
        });
        std::fs::remove_dir_all(dir.parent().unwrap()).unwrap();
        let built = built.unwrap();
        assert!(built.modules.is_empty());
        assert_eq!(built.builtin, ["md_mod"]);
        assert_eq!(built.kernel_version, "6.1.0-test");

        let mut raw = Vec::new();
        std::io::Read::read_to_end(
            &mut flate2::read::GzDecoder::new(&built.gz_bytes[..]),
            &mut raw,
        )
        .unwrap();
        let mut names = Vec::new();
        let mut rest = &raw[..];
        loop {
            let mut reader = cpio::newc::Reader::new(rest).unwrap();
            if reader.entry().is_trailer() {
                break;
            }
            let name = reader.entry().name().to_string();
            let mut data = Vec::new();
            std::io::Read::read_to_end(&mut reader, &mut data).unwrap();
            if name == "lib/modules/index" {
                assert!(data.is_empty());
            }
            if name == "etc/hello" {
                assert_eq!(data, b"hi\n");
            }
            names.push(name);
            rest = reader.finish().unwrap();
        }
        assert_eq!(
            names,
            [
                "dev",
                "dev/console",
                "dev/null",
                "etc",
                "etc/hello",
                "init",
                "lib",
                "lib/modules",
                "lib/modules/index",
                "mnt",
                "proc",
                "run",
                "sys",
                "tmp"
            ]
        );
    }

    #[test]
    fn dynamic_init_is_refused_before_anything_else() {
        let dir = builtin_only_tree("dynamic");
        let init = std::fs::read("/bin/true").expect("/bin/true (coreutils) is needed");
        let result = build_image(&ImageSpec {
            init: &init,
            modules_dir: &dir,
            patterns: &[],
            extra: &[],
        });
        std::fs::remove_dir_all(dir.parent().unwrap()).unwrap();
        assert!(matches!(result, Err(Error::InitHasInterpreter { .. })));
    }

    #[test]
    fn extra_entry_clashing_with_init_is_refused() {
        let dir = builtin_only_tree("clash");
        let init = elfcheck::tests::minimal_elf(EM_X86_64, ET_EXEC, false);
        let extra = [("/init".to_string(), Node::Dir { mode: 0o755 })];
        let result = build_image(&ImageSpec {
            init: &init,
            modules_dir: &dir,
            patterns: &[],
            extra: &extra,
        });
        std::fs::remove_dir_all(dir.parent().unwrap()).unwrap();
        assert!(
            matches!(result, Err(Error::DuplicatePath { .. })),
            "{result:?}"
        );
    }
}

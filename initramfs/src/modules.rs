//! Kernel module selection: index a `lib/modules/<kver>/` tree, expand name
//! patterns, follow `depends=` and `softdep=pre:` to a closure, and order it
//! so every module comes after what it needs.

use std::collections::{BTreeMap, BTreeSet};
use std::io::Read;
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};
use crate::modinfo::{normalize, ModInfo};

/// Parses a module list (`kernel-config/modules.txt` format): one pattern a
/// line, `#` starts a comment, `*` is a wildcard.
pub fn parse_module_list(text: &str) -> Result<Vec<String>> {
    let mut patterns = Vec::new();
    for (index, line) in text.lines().enumerate() {
        let pattern = line.split('#').next().unwrap_or("").trim();
        if pattern.is_empty() {
            continue;
        }
        let valid = pattern
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '*'));
        if !valid {
            return Err(Error::BadPattern {
                line: index + 1,
                pattern: pattern.to_string(),
            });
        }
        patterns.push(pattern.to_string());
    }
    Ok(patterns)
}

/// `*`-only glob over normalized names.
fn glob_match(pattern: &str, text: &str) -> bool {
    let (p, t) = (pattern.as_bytes(), text.as_bytes());
    let (mut pi, mut ti) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while ti < t.len() {
        if pi < p.len() && p[pi] == b'*' {
            star = Some((pi, ti));
            pi += 1;
        } else if pi < p.len() && p[pi] == t[ti] {
            pi += 1;
            ti += 1;
        } else if let Some((sp, st)) = star {
            pi = sp + 1;
            ti = st + 1;
            star = Some((sp, st + 1));
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|&c| c == b'*')
}

/// How a module file on disk is stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Compression {
    None,
    Gz,
    Xz,
    Zst,
}

#[derive(Debug, Clone)]
struct ModFile {
    rel: PathBuf,
    compression: Compression,
}

/// Modules compiled into the kernel image (from `modules.builtin` and
/// `modules.builtin.modinfo`), normalized.
#[derive(Debug, Clone, Default)]
pub(crate) struct Builtin {
    pub names: BTreeSet<String>,
    pub aliases: BTreeSet<String>,
}

/// A module read from the tree, ready to go into the image.
#[derive(Debug, Clone)]
pub struct Module {
    /// Normalized module name.
    pub name: String,
    /// Path relative to the modules directory, as stored in the image
    /// (`kernel/drivers/md/raid1.ko`; a `.gz` suffix is dropped).
    pub rel_path: String,
    /// The uncompressed `.ko` bytes.
    pub data: Vec<u8>,
    pub info: ModInfo,
}

/// A `softdep=pre:` entry that names nothing in the selection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SoftDep {
    pub module: String,
    pub wanted: String,
}

/// The modules to load, in load order.
#[derive(Debug, Clone)]
pub struct Closure {
    /// Dependencies first; among modules free to load, sorted by name.
    pub modules: Vec<Module>,
    /// Requested or depended-on modules that are built into the kernel.
    pub builtin: Vec<String>,
    /// Soft dependencies neither built in nor provided by a selected module:
    /// not fatal (modprobe ignores them too), but worth a warning.
    pub unresolved_softdeps: Vec<SoftDep>,
    /// Per module, the selected modules that must load before it (hard and soft deps).
    pub prerequisites: BTreeMap<String, BTreeSet<String>>,
}

/// An indexed `lib/modules/<kver>/` directory.
#[derive(Debug, Clone)]
pub struct ModuleTree {
    dir: PathBuf,
    kernel_version: String,
    files: BTreeMap<String, ModFile>,
    builtin: Builtin,
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> Error + '_ {
    move |source| Error::Io {
        path: path.to_path_buf(),
        source,
    }
}

impl ModuleTree {
    /// Indexes the module files under `dir` by name (from the file name).
    pub fn open(dir: &Path) -> Result<Self> {
        let builtin_list = dir.join("modules.builtin");
        if !builtin_list.is_file() {
            return Err(Error::NotModulesDir {
                path: dir.to_path_buf(),
            });
        }
        let canonical = dir.canonicalize().map_err(io_err(dir))?;
        let kernel_version = canonical
            .file_name()
            .and_then(|n| n.to_str())
            .ok_or_else(|| Error::NotModulesDir {
                path: dir.to_path_buf(),
            })?
            .to_string();

        let mut builtin = Builtin::default();
        let text = std::fs::read_to_string(&builtin_list).map_err(io_err(&builtin_list))?;
        for line in text.lines() {
            let file = line.rsplit('/').next().unwrap_or("");
            if let Some(stem) = file.strip_suffix(".ko") {
                builtin.names.insert(normalize(stem));
            }
        }
        let modinfo_path = dir.join("modules.builtin.modinfo");
        if modinfo_path.is_file() {
            let raw = std::fs::read(&modinfo_path).map_err(io_err(&modinfo_path))?;
            for item in raw.split(|&b| b == 0) {
                let item = String::from_utf8_lossy(item);
                let Some((module, rest)) = item.split_once('.') else {
                    continue;
                };
                builtin.names.insert(normalize(module));
                if let Some(alias) = rest.strip_prefix("alias=") {
                    builtin.aliases.insert(normalize(alias));
                }
            }
        }

        let mut files = BTreeMap::new();
        walk(dir, Path::new(""), &mut files)?;
        Ok(ModuleTree {
            dir: dir.to_path_buf(),
            kernel_version,
            files,
            builtin,
        })
    }

    /// The kernel release, from the directory name.
    pub fn kernel_version(&self) -> &str {
        &self.kernel_version
    }

    /// Number of module files indexed.
    pub fn len(&self) -> usize {
        self.files.len()
    }

    /// Whether the tree holds no module files.
    pub fn is_empty(&self) -> bool {
        self.files.is_empty()
    }

    /// Expands `patterns` and returns the dependency closure in load order.
    pub fn resolve(&self, patterns: &[String]) -> Result<Closure> {
        let names: BTreeSet<String> = self.files.keys().cloned().collect();
        resolve_with(&self.dir, &names, &self.builtin, patterns, &mut |name| {
            self.load(name)
        })
    }

    fn load(&self, name: &str) -> Result<Module> {
        let file = self
            .files
            .get(name)
            .ok_or_else(|| Error::MissingDependency {
                module: name.to_string(),
                dependency: name.to_string(),
                dir: self.dir.clone(),
            })?;
        let path = self.dir.join(&file.rel);
        let raw = std::fs::read(&path).map_err(io_err(&path))?;
        let data = match file.compression {
            Compression::None => raw,
            Compression::Gz => {
                let mut out = Vec::new();
                flate2::read::GzDecoder::new(&raw[..])
                    .read_to_end(&mut out)
                    .map_err(|e| Error::BadModule {
                        path: path.clone(),
                        reason: format!("bad gzip data ({e})"),
                    })?;
                out
            }
            Compression::Xz => {
                return Err(Error::CompressedModule {
                    path,
                    format: "xz",
                    tool: "find . -name '*.ko.xz' -exec xz -d {} +",
                })
            }
            Compression::Zst => {
                return Err(Error::CompressedModule {
                    path,
                    format: "zstd",
                    tool: "find . -name '*.ko.zst' -exec unzstd --rm {} +",
                })
            }
        };
        let info = ModInfo::from_elf(&data).map_err(|reason| Error::BadModule {
            path: path.clone(),
            reason,
        })?;
        if let Some(found) = &info.name {
            if found != name {
                return Err(Error::ModuleNameMismatch {
                    path,
                    expected: name.to_string(),
                    found: found.clone(),
                });
            }
        }
        if let Some(found) = info.kernel_release() {
            if found != self.kernel_version {
                return Err(Error::VermagicMismatch {
                    path,
                    expected: self.kernel_version.clone(),
                    found: found.to_string(),
                });
            }
        }
        let rel = file.rel.to_str().ok_or_else(|| Error::BadModule {
            path: path.clone(),
            reason: "the path is not UTF-8".to_string(),
        })?;
        let rel_path = rel.strip_suffix(".gz").unwrap_or(rel).to_string();
        Ok(Module {
            name: name.to_string(),
            rel_path,
            data,
            info,
        })
    }
}

/// Collects module files below `root/rel`; symlinks (`build`, `source`) are
/// not followed.
fn walk(root: &Path, rel: &Path, files: &mut BTreeMap<String, ModFile>) -> Result<()> {
    let dir = root.join(rel);
    let mut entries = std::fs::read_dir(&dir)
        .map_err(io_err(&dir))?
        .collect::<std::io::Result<Vec<_>>>()
        .map_err(io_err(&dir))?;
    entries.sort_by_key(|e| e.file_name());
    for entry in entries {
        let kind = entry.file_type().map_err(io_err(&entry.path()))?;
        let child = rel.join(entry.file_name());
        if kind.is_dir() {
            walk(root, &child, files)?;
            continue;
        }
        if !kind.is_file() {
            continue;
        }
        let file_name = entry.file_name();
        let Some(file_name) = file_name.to_str() else {
            continue;
        };
        let (stem, compression) = if let Some(s) = file_name.strip_suffix(".ko") {
            (s, Compression::None)
        } else if let Some(s) = file_name.strip_suffix(".ko.gz") {
            (s, Compression::Gz)
        } else if let Some(s) = file_name.strip_suffix(".ko.xz") {
            (s, Compression::Xz)
        } else if let Some(s) = file_name.strip_suffix(".ko.zst") {
            (s, Compression::Zst)
        } else {
            continue;
        };
        let name = normalize(stem);
        if let Some(first) = files.get(&name) {
            return Err(Error::DuplicateModule {
                name,
                first: root.join(&first.rel),
                second: root.join(&child),
            });
        }
        files.insert(
            name,
            ModFile {
                rel: child,
                compression,
            },
        );
    }
    Ok(())
}

/// The closure and ordering, independent of where module bytes come from.
pub(crate) fn resolve_with(
    dir: &Path,
    names: &BTreeSet<String>,
    builtin: &Builtin,
    patterns: &[String],
    load: &mut dyn FnMut(&str) -> Result<Module>,
) -> Result<Closure> {
    let mut queue = BTreeSet::new();
    let mut builtin_hit = BTreeSet::new();
    for pattern in patterns {
        let p = normalize(pattern);
        let mut matched = false;
        for name in builtin.names.iter().filter(|n| glob_match(&p, n)) {
            builtin_hit.insert(name.clone());
            matched = true;
        }
        for name in names.iter().filter(|n| glob_match(&p, n)) {
            if !builtin.names.contains(name) {
                queue.insert(name.clone());
            }
            matched = true;
        }
        if !matched {
            return Err(Error::PatternUnmatched {
                pattern: pattern.clone(),
                dir: dir.to_path_buf(),
            });
        }
    }

    let mut selected: BTreeMap<String, Module> = BTreeMap::new();
    while let Some(name) = queue.pop_first() {
        if selected.contains_key(&name) {
            continue;
        }
        let module = load(&name)?;
        for dep in &module.info.depends {
            if builtin.names.contains(dep) {
                builtin_hit.insert(dep.clone());
            } else if names.contains(dep) {
                if !selected.contains_key(dep) {
                    queue.insert(dep.clone());
                }
            } else {
                return Err(Error::MissingDependency {
                    module: name.clone(),
                    dependency: dep.clone(),
                    dir: dir.to_path_buf(),
                });
            }
        }
        // A soft dependency that names an existing module joins the closure;
        // one that names an alias is matched against the selection below.
        for soft in &module.info.softdep_pre {
            if !builtin.names.contains(soft) && names.contains(soft) && !selected.contains_key(soft)
            {
                queue.insert(soft.clone());
            }
        }
        selected.insert(name, module);
    }

    // Edges: prerequisite -> dependents.
    let mut needs: BTreeMap<&str, BTreeSet<&str>> = BTreeMap::new();
    let mut unresolved_softdeps = Vec::new();
    for (name, module) in &selected {
        let mut wanted: BTreeSet<&str> = module
            .info
            .depends
            .iter()
            .filter(|d| selected.contains_key(*d))
            .map(String::as_str)
            .collect();
        for soft in &module.info.softdep_pre {
            if let Some((key, _)) = selected.get_key_value(soft) {
                wanted.insert(key);
                continue;
            }
            if builtin.names.contains(soft) || builtin.aliases.contains(soft) {
                continue;
            }
            let providers: Vec<&str> = selected
                .iter()
                .filter(|(_, m)| {
                    m.info
                        .aliases
                        .iter()
                        .any(|a| glob_match(&normalize(a), soft))
                })
                .map(|(n, _)| n.as_str())
                .collect();
            if providers.is_empty() {
                unresolved_softdeps.push(SoftDep {
                    module: name.clone(),
                    wanted: soft.clone(),
                });
            }
            wanted.extend(providers);
        }
        wanted.remove(name.as_str());
        needs.insert(name, wanted);
    }

    let order = topological_order(&needs)?;
    let prerequisites = needs
        .iter()
        .map(|(n, w)| (n.to_string(), w.iter().map(|s| s.to_string()).collect()))
        .collect();
    let modules = order
        .into_iter()
        .filter_map(|name| selected.get(&name).cloned())
        .collect();
    Ok(Closure {
        modules,
        builtin: builtin_hit.into_iter().collect(),
        unresolved_softdeps,
        prerequisites,
    })
}

/// Kahn's algorithm, always taking the smallest name that is free to load.
fn topological_order(needs: &BTreeMap<&str, BTreeSet<&str>>) -> Result<Vec<String>> {
    let mut remaining: BTreeMap<&str, usize> =
        needs.iter().map(|(n, deps)| (*n, deps.len())).collect();
    let mut dependents: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    for (name, deps) in needs {
        for dep in deps {
            dependents.entry(dep).or_default().push(name);
        }
    }
    let mut ready: BTreeSet<&str> = remaining
        .iter()
        .filter(|(_, &count)| count == 0)
        .map(|(n, _)| *n)
        .collect();
    let mut order = Vec::with_capacity(needs.len());
    while let Some(name) = ready.pop_first() {
        order.push(name.to_string());
        remaining.remove(name);
        for dependent in dependents.get(name).into_iter().flatten() {
            if let Some(count) = remaining.get_mut(dependent) {
                *count -= 1;
                if *count == 0 {
                    ready.insert(dependent);
                }
            }
        }
    }
    if !remaining.is_empty() {
        return Err(Error::DependencyCycle {
            modules: remaining.keys().map(|n| n.to_string()).collect(),
        });
    }
    Ok(order)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An in-memory tree: name -> raw .modinfo text.
    struct Fake {
        mods: BTreeMap<String, String>,
        builtin: Builtin,
    }

    impl Fake {
        fn new(mods: &[(&str, &str)], builtin: &[&str]) -> Self {
            Fake {
                mods: mods
                    .iter()
                    .map(|(n, i)| (normalize(n), i.replace(';', "\0")))
                    .collect(),
                builtin: Builtin {
                    names: builtin.iter().map(|n| normalize(n)).collect(),
                    aliases: BTreeSet::new(),
                },
            }
        }

        fn resolve(&self, patterns: &[&str]) -> Result<Closure> {
            let names = self.mods.keys().cloned().collect();
            let patterns: Vec<String> = patterns.iter().map(|p| p.to_string()).collect();
            resolve_with(
                Path::new("/fake"),
                &names,
                &self.builtin,
                &patterns,
                &mut |name| {
                    let info = ModInfo::parse(self.mods[name].as_bytes());
                    Ok(Module {
                        name: name.to_string(),
                        rel_path: format!("kernel/{name}.ko"),
                        data: Vec::new(),
                        info,
                    })
                },
            )
        }

        fn order(&self, patterns: &[&str]) -> Vec<String> {
            let closure = self.resolve(patterns).unwrap();
            closure.modules.into_iter().map(|m| m.name).collect()
        }
    }

    #[test]
    fn dependencies_come_first_and_peers_sort_by_name() {
        let tree = Fake::new(
            &[
                ("raid1", "depends=md-mod"),
                ("md-mod", "depends="),
                ("ext4", "depends=jbd2,mbcache,crc16"),
                ("jbd2", "depends="),
                ("mbcache", "depends="),
                ("crc16", "depends="),
                ("unused", "depends="),
            ],
            &[],
        );
        assert_eq!(
            tree.order(&["raid1", "ext4"]),
            ["crc16", "jbd2", "mbcache", "ext4", "md_mod", "raid1"]
        );
    }

    #[test]
    fn deep_chain_orders_leaf_first_even_when_names_sort_the_other_way() {
        let tree = Fake::new(
            &[
                ("a", "depends=b"),
                ("b", "depends=c"),
                ("c", "depends=d"),
                ("d", "depends="),
            ],
            &[],
        );
        assert_eq!(tree.order(&["a"]), ["d", "c", "b", "a"]);
    }

    #[test]
    fn shared_dependency_appears_once_before_all_users() {
        let tree = Fake::new(
            &[
                ("ahci", "depends=libahci,libata"),
                ("libahci", "depends=libata"),
                ("ata_piix", "depends=libata"),
                ("libata", "depends=scsi_mod,scsi_common"),
                ("scsi_mod", "depends=scsi_common"),
                ("scsi_common", "depends="),
            ],
            &[],
        );
        assert_eq!(
            tree.order(&["ata-piix", "ahci"]),
            [
                "scsi_common",
                "scsi_mod",
                "libata",
                "ata_piix",
                "libahci",
                "ahci"
            ]
        );
    }

    #[test]
    fn glob_selects_every_match_and_dash_equals_underscore() {
        let tree = Fake::new(
            &[
                ("nls_cp437", "depends="),
                ("nls-utf8", "depends="),
                ("fat", "depends="),
            ],
            &[],
        );
        assert_eq!(tree.order(&["nls-*"]), ["nls_cp437", "nls_utf8"]);
    }

    #[test]
    fn unmatched_pattern_is_an_error_naming_it() {
        let tree = Fake::new(&[("raid1", "depends=")], &[]);
        let err = tree.resolve(&["raid1", "raid5"]).unwrap_err();
        assert!(matches!(&err, Error::PatternUnmatched { pattern, .. } if pattern == "raid5"));
        assert!(err.to_string().contains("\"raid5\""), "{err}");
    }

    #[test]
    fn built_in_pattern_and_dependency_are_reported_not_loaded() {
        let tree = Fake::new(
            &[
                ("usb-storage", "depends=usbcore,scsi_mod"),
                ("scsi_mod", ""),
            ],
            &["usbcore", "nls_base"],
        );
        let closure = tree.resolve(&["usb_storage", "nls-base"]).unwrap();
        let names: Vec<_> = closure.modules.iter().map(|m| m.name.as_str()).collect();
        assert_eq!(names, ["scsi_mod", "usb_storage"]);
        assert_eq!(closure.builtin, ["nls_base", "usbcore"]);
    }

    #[test]
    fn missing_dependency_is_an_error_naming_both() {
        let tree = Fake::new(&[("raid1", "depends=md-mod")], &[]);
        let err = tree.resolve(&["raid1"]).unwrap_err();
        assert!(
            matches!(&err, Error::MissingDependency { module, dependency, .. }
                if module == "raid1" && dependency == "md_mod"),
            "{err}"
        );
    }

    #[test]
    fn softdep_by_name_joins_the_closure_before_its_user() {
        let tree = Fake::new(
            &[
                ("ext4", "depends=;softdep=pre: zz-crc"),
                ("zz-crc", "depends="),
            ],
            &[],
        );
        assert_eq!(tree.order(&["ext4"]), ["zz_crc", "ext4"]);
    }

    #[test]
    fn softdep_by_alias_orders_selected_providers_first() {
        let tree = Fake::new(
            &[
                ("ext4", "depends=jbd2;softdep=pre: crypto-crc32c"),
                ("jbd2", "depends=;softdep=pre: crypto-crc32c"),
                ("zcrc", "alias=crypto-crc32c-generic;alias=crypto-crc32c"),
                ("other", "alias=crypto-crc32c"),
            ],
            &[],
        );
        // `other` provides the alias but is not selected: aliases never pull
        // modules in, they only order the selection.
        assert_eq!(tree.order(&["ext4", "zcrc"]), ["zcrc", "jbd2", "ext4"]);
        let closure = tree.resolve(&["ext4"]).unwrap();
        assert_eq!(
            closure.unresolved_softdeps,
            [
                SoftDep {
                    module: "ext4".into(),
                    wanted: "crypto_crc32c".into()
                },
                SoftDep {
                    module: "jbd2".into(),
                    wanted: "crypto_crc32c".into()
                },
            ]
        );
    }

    #[test]
    fn cycle_is_an_error_listing_its_members() {
        let tree = Fake::new(
            &[("a", "depends=b"), ("b", "depends=a"), ("c", "depends=")],
            &[],
        );
        let err = tree.resolve(&["a", "c"]).unwrap_err();
        assert!(
            matches!(&err, Error::DependencyCycle { modules } if modules == &["a", "b"]),
            "{err}"
        );
    }

    #[test]
    fn order_does_not_depend_on_pattern_order() {
        let tree = Fake::new(
            &[
                ("x", "depends=m"),
                ("y", "depends=m"),
                ("m", "depends="),
                ("b", "depends="),
            ],
            &[],
        );
        assert_eq!(tree.order(&["y", "b", "x"]), tree.order(&["x", "y", "b"]));
        assert_eq!(tree.order(&["y", "b", "x"]), ["b", "m", "x", "y"]);
    }

    #[test]
    fn glob_matcher() {
        assert!(glob_match("nls_*", "nls_utf8"));
        assert!(glob_match("*", "anything"));
        assert!(glob_match("a*b*c", "aXXbYYc"));
        assert!(glob_match("raid1", "raid1"));
        assert!(!glob_match("raid1", "raid10"));
        assert!(!glob_match("a*b", "acd"));
        assert!(glob_match("*456", "123456"));
    }

    #[test]
    fn module_list_parsing() {
        let list = "# comment\n\nmd-mod\n  raid1   # trailing\nnls_*\n";
        assert_eq!(
            parse_module_list(list).unwrap(),
            ["md-mod", "raid1", "nls_*"]
        );
        let err = parse_module_list("ok\nbad name\n").unwrap_err();
        assert!(matches!(err, Error::BadPattern { line: 2, .. }), "{err}");
    }

    fn scratch_dir(tag: &str) -> PathBuf {
        let dir =
            std::env::temp_dir().join(format!("initramfs-modules-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join("kernel/fs")).unwrap();
        dir
    }

    #[test]
    fn tree_without_modules_builtin_is_refused() {
        let dir = scratch_dir("nobuiltin");
        let err = ModuleTree::open(&dir).unwrap_err();
        std::fs::remove_dir_all(&dir).unwrap();
        assert!(matches!(err, Error::NotModulesDir { .. }), "{err}");
    }

    #[test]
    fn compressed_xz_module_error_says_to_decompress() {
        let dir = scratch_dir("xz");
        std::fs::write(dir.join("modules.builtin"), "").unwrap();
        std::fs::write(dir.join("kernel/fs/ext4.ko.xz"), b"whatever").unwrap();
        let result = ModuleTree::open(&dir).and_then(|t| t.resolve(&["ext4".to_string()]));
        std::fs::remove_dir_all(&dir).unwrap();
        let err = result.unwrap_err();
        assert!(matches!(err, Error::CompressedModule { .. }), "{err}");
        assert!(err.to_string().contains("xz -d"), "{err}");
    }

    #[test]
    fn duplicate_module_names_are_refused() {
        let dir = scratch_dir("dup");
        std::fs::write(dir.join("modules.builtin"), "").unwrap();
        std::fs::write(dir.join("kernel/fs/md-mod.ko"), b"x").unwrap();
        std::fs::write(dir.join("kernel/md_mod.ko"), b"y").unwrap();
        let result = ModuleTree::open(&dir);
        std::fs::remove_dir_all(&dir).unwrap();
        let err = result.unwrap_err();
        assert!(
            matches!(&err, Error::DuplicateModule { name, .. } if name == "md_mod"),
            "{err}"
        );
    }

    #[test]
    fn builtin_names_come_from_both_builtin_files() {
        let dir = scratch_dir("builtin");
        std::fs::write(dir.join("modules.builtin"), "kernel/fs/nls/nls_base.ko\n").unwrap();
        std::fs::write(
            dir.join("modules.builtin.modinfo"),
            b"crc32.license=GPL\0sha256_generic.alias=crypto-sha256\0",
        )
        .unwrap();
        let tree = ModuleTree::open(&dir);
        std::fs::remove_dir_all(&dir).unwrap();
        let tree = tree.unwrap();
        let closure = tree
            .resolve(&["nls-base".to_string(), "crc32".to_string()])
            .unwrap();
        assert!(closure.modules.is_empty());
        assert_eq!(closure.builtin, ["crc32", "nls_base"]);
        assert!(tree.builtin.aliases.contains("crypto_sha256"));
    }
}

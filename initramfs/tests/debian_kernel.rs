//! Against a real Debian kernel's modules: every pattern of
//! `kernel-config/modules.txt` resolves, the order matches what the kernel
//! needs, dependencies agree with kmod's `modinfo`, and the image is a valid,
//! reproducible cpio.gz as seen by `gzip` and `cpio`.

use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use initramfs::{build_image, parse_module_list, BuiltImage, ImageSpec, ModuleTree};

const HOW_TO: &str = "run `cargo xtask build` first (it unpacks the Debian kernel to \
     ~/.cache/xenraid/kernel/linux-image-<version>/), or set XENRAID_MODULES_DIR to an \
     unpacked lib/modules/<kernel version>/ directory";

/// `XENRAID_MODULES_DIR`, else the newest kernel unpacked by the xtask.
fn modules_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("XENRAID_MODULES_DIR") {
        let dir = PathBuf::from(dir);
        assert!(
            dir.join("modules.builtin").is_file(),
            "XENRAID_MODULES_DIR={} has no modules.builtin: {HOW_TO}",
            dir.display()
        );
        return dir;
    }
    let cache = match std::env::var_os("XENRAID_CACHE_DIR").filter(|d| !d.is_empty()) {
        Some(dir) => PathBuf::from(dir).join("kernel"),
        None => {
            let home = std::env::var_os("HOME").expect("HOME is not set: set XENRAID_MODULES_DIR");
            Path::new(&home).join(".cache/xenraid/kernel")
        }
    };
    let mut found: Vec<PathBuf> = std::fs::read_dir(&cache)
        .into_iter()
        .flatten()
        .flatten()
        .flat_map(|pkg| {
            std::fs::read_dir(pkg.path().join("lib/modules"))
                .into_iter()
                .flatten()
        })
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.join("modules.builtin").is_file())
        .collect();
    found.sort();
    found
        .pop()
        .unwrap_or_else(|| panic!("no kernel modules found in {}: {HOW_TO}", cache.display()))
}

fn patterns() -> Vec<String> {
    let list = Path::new(env!("CARGO_MANIFEST_DIR")).join("../kernel-config/modules.txt");
    let text = std::fs::read_to_string(&list)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", list.display()));
    parse_module_list(&text).unwrap()
}

/// A real static-pie executable standing in for the rescue binary.
fn init_binary() -> Vec<u8> {
    std::fs::read("/sbin/ldconfig")
        .expect("/sbin/ldconfig (Debian package libc-bin) is needed as a static init sample")
}

fn build() -> BuiltImage {
    let dir = modules_dir();
    let patterns = patterns();
    build_image(&ImageSpec {
        init: &init_binary(),
        modules_dir: &dir,
        patterns: &patterns,
        extra: &[],
    })
    .unwrap()
}

fn image() -> &'static BuiltImage {
    static IMAGE: OnceLock<BuiltImage> = OnceLock::new();
    IMAGE.get_or_init(build)
}

fn position(image: &BuiltImage, name: &str) -> usize {
    image
        .modules
        .iter()
        .position(|m| m.name == name)
        .unwrap_or_else(|| panic!("module {name} is not in the image"))
}

fn tool(program: &str, package: &str) -> Command {
    let found = Command::new("sh")
        .args(["-c", &format!("command -v {program}")])
        .output()
        .is_ok_and(|o| o.status.success());
    assert!(
        found,
        "`{program}` is missing: apt-get install -y {package}"
    );
    Command::new(program)
}

fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("initramfs-it-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

#[test]
fn every_pattern_resolves_and_order_respects_dependencies() {
    let image = image();
    assert!(
        image.unresolved_softdeps.is_empty(),
        "{:?}",
        image.unresolved_softdeps
    );
    for (a, b) in [
        ("md_mod", "raid1"),
        ("jbd2", "ext4"),
        ("mbcache", "ext4"),
        ("crc16", "ext4"),
        // ext4 and jbd2 soft-depend on the alias crypto-crc32c.
        ("crc32c_generic", "jbd2"),
        ("crc32c_intel", "jbd2"),
        // crc-t10dif (for t10-pi) soft-depends on the alias crct10dif.
        ("crct10dif_generic", "crc_t10dif"),
        ("crct10dif_pclmul", "crc_t10dif"),
        ("crc_t10dif", "t10_pi"),
        ("fat", "vfat"),
        ("libata", "ahci"),
        ("libahci", "ahci"),
        ("scsi_mod", "sd_mod"),
        ("nvme_core", "nvme"),
        ("virtio_ring", "virtio_blk"),
        ("usbcore", "usb_storage"),
        ("usb_storage", "uas"),
        ("xhci_hcd", "xhci_pci"),
    ] {
        assert!(
            position(image, a) < position(image, b),
            "{a} must load before {b}"
        );
    }
    let mut loaded = std::collections::BTreeSet::new();
    for module in &image.modules {
        for dep in &module.depends {
            assert!(
                loaded.contains(dep) || image.builtin.contains(dep),
                "{} is loaded before its dependency {dep}",
                module.name
            );
        }
        loaded.insert(module.name.clone());
    }
    for pattern in patterns() {
        let name = initramfs::normalize(&pattern);
        assert!(
            loaded.contains(&name) || image.builtin.contains(&name),
            "pattern {pattern} did not end up in the image"
        );
    }
}

#[test]
fn dependencies_agree_with_kmod_modinfo() {
    let dir = modules_dir();
    let kver = image().kernel_version.clone();
    for module in &image().modules {
        let rel = module
            .image_path
            .strip_prefix(&format!("/lib/modules/{kver}/"))
            .unwrap();
        let out = tool("modinfo", "kmod")
            .args(["-F", "depends"])
            .arg(dir.join(rel))
            .output()
            .unwrap();
        assert!(out.status.success(), "modinfo {rel}: {out:?}");
        let text = String::from_utf8(out.stdout).unwrap();
        let mut theirs: Vec<String> = text
            .trim()
            .split(',')
            .filter(|d| !d.is_empty())
            .map(initramfs::normalize)
            .collect();
        let mut ours = module.depends.clone();
        theirs.sort();
        ours.sort();
        assert_eq!(ours, theirs, "depends of {}", module.name);
    }
}

#[test]
fn two_builds_are_bit_identical() {
    assert_eq!(build().gz_bytes, image().gz_bytes);
}

#[test]
fn size_fits_the_budget() {
    let image = image();
    let mut modules_only = initramfs::Archive::new();
    let dir = modules_dir();
    let tree = ModuleTree::open(&dir).unwrap();
    for module in tree.resolve(&patterns()).unwrap().modules {
        modules_only
            .add_file(&module.rel_path, module.data, 0o644)
            .unwrap();
    }
    let modules_gz = modules_only.to_cpio_gz().unwrap().len();
    let raw: u64 = image.modules.iter().map(|m| m.size).sum();
    eprintln!(
        "{} modules, {raw} bytes uncompressed, {modules_gz} bytes gzip; whole image with a \
         {} byte init: {} bytes",
        image.modules.len(),
        init_binary().len(),
        image.gz_bytes.len()
    );
    // Goal: at most 8 MiB compressed including a ~2 MiB init.
    assert!(
        modules_gz <= 6 << 20,
        "modules alone take {modules_gz} bytes gzip"
    );
}

#[test]
fn archive_reads_back_with_the_cpio_crate() {
    let image = image();
    let mut raw = Vec::new();
    flate2::read::GzDecoder::new(&image.gz_bytes[..])
        .read_to_end(&mut raw)
        .unwrap();
    let mut entries = BTreeMap::new();
    let mut names = Vec::new();
    let mut rest = &raw[..];
    loop {
        let mut reader = cpio::newc::Reader::new(rest).unwrap();
        let entry = reader.entry().clone();
        if entry.is_trailer() {
            break;
        }
        let mut data = Vec::new();
        reader.read_to_end(&mut data).unwrap();
        assert_eq!(entry.ino() as usize, names.len() + 1);
        assert_eq!((entry.mtime(), entry.uid(), entry.gid()), (0, 0, 0));
        names.push(entry.name().to_string());
        entries.insert(entry.name().to_string(), (entry, data));
        rest = reader.finish().unwrap();
    }
    let mut sorted = names.clone();
    sorted.sort();
    assert_eq!(names, sorted, "entries must be sorted by path");

    let (init, data) = &entries["init"];
    assert_eq!(init.mode(), 0o100755);
    assert_eq!(data, &init_binary());
    for (dir, mode) in initramfs::EMPTY_DIRS {
        assert_eq!(entries[&dir[1..]].0.mode(), 0o040000 | mode, "{dir}");
    }
    let console = &entries["dev/console"].0;
    assert_eq!(
        (console.mode(), console.rdev_major(), console.rdev_minor()),
        (0o020600, 5, 1)
    );
    let null = &entries["dev/null"].0;
    assert_eq!(
        (null.mode(), null.rdev_major(), null.rdev_minor()),
        (0o020666, 1, 3)
    );

    let (_, index) = &entries["lib/modules/index"];
    let index = String::from_utf8(index.clone()).unwrap();
    assert_eq!(index, initramfs::index_text(&image.modules));
    // Every prerequisite is listed (and so loaded) before the module that needs it,
    // and the drivers /init picks by modalias carry their aliases.
    let position = |name: &str| image.modules.iter().position(|m| m.name == name).unwrap();
    for (i, m) in image.modules.iter().enumerate() {
        for p in &m.prerequisites {
            assert!(position(p) < i, "{p} must come before {}", m.name);
        }
    }
    assert!(image.modules[position("ext4")]
        .prerequisites
        .iter()
        .any(|p| p.starts_with("crc32c")));
    for (driver, alias_part) in [
        ("ahci", "bc01sc06i01"),
        ("virtio_blk", "virtio:d00000002"),
        ("nvme", "bc01sc08i02"),
        ("sd_mod", "scsi:t-0x00"),
    ] {
        let m = &image.modules[position(driver)];
        assert!(
            m.aliases.iter().any(|a| a.contains(alias_part)),
            "{driver} aliases: {:?}",
            m.aliases
        );
    }
    let listed: Vec<&str> = index
        .lines()
        .filter_map(|l| l.strip_prefix("module "))
        .map(|l| l.split(' ').nth(1).unwrap())
        .collect();
    let expected: Vec<&str> = image
        .modules
        .iter()
        .map(|m| m.image_path.as_str())
        .collect();
    assert_eq!(listed, expected);
    let dir = modules_dir();
    for (module, path) in image.modules.iter().zip(&listed) {
        let (entry, data) = &entries[&path[1..]];
        assert_eq!(entry.mode(), 0o100644, "{path}");
        assert_eq!(data.len() as u64, module.size);
        let rel = path
            .strip_prefix(&format!("/lib/modules/{}/", image.kernel_version))
            .unwrap();
        assert_eq!(data, &std::fs::read(dir.join(rel)).unwrap(), "{path}");
    }
}

#[test]
fn gzip_and_cpio_tools_accept_the_archive() {
    let image = image();
    let dir = scratch("tools");
    let file = dir.join("initrd.img");
    std::fs::write(&file, &image.gz_bytes).unwrap();

    let gzip = tool("gzip", "gzip").arg("-t").arg(&file).output().unwrap();
    assert!(gzip.status.success(), "gzip -t: {gzip:?}");

    let listing = tool("sh", "dash")
        .arg("-c")
        .arg(format!("gzip -dc '{}' | cpio -itv --quiet", file.display()))
        .output()
        .unwrap();
    assert!(listing.status.success(), "cpio -itv: {listing:?}");
    let text = String::from_utf8(listing.stdout).unwrap();
    let lines: BTreeMap<&str, Vec<&str>> = text
        .lines()
        .map(|l| {
            let words: Vec<&str> = l.split_whitespace().collect();
            (*words.last().unwrap(), words)
        })
        .collect();
    assert_eq!(
        lines.len(),
        text.lines().count(),
        "duplicate names in {text}"
    );
    assert_eq!(lines["init"][0], "-rwxr-xr-x");
    assert_eq!(lines["init"][2..4], ["root", "root"]);
    assert_eq!(
        lines["dev/console"][..6],
        ["crw-------", "1", "root", "root", "5,", "1"]
    );
    assert_eq!(
        lines["dev/null"][..6],
        ["crw-rw-rw-", "1", "root", "root", "1,", "3"]
    );
    assert_eq!(lines["tmp"][0], "drwxrwxrwt");
    for module in &image.modules {
        let words = &lines[&module.image_path[1..]];
        assert_eq!(words[0], "-rw-r--r--");
        assert_eq!(words[4], module.size.to_string());
    }

    // cpio extracts the load order exactly as we wrote it.
    let extracted = tool("sh", "dash")
        .arg("-c")
        .arg(format!(
            "gzip -dc '{}' | cpio -i --quiet --to-stdout lib/modules/index",
            file.display()
        ))
        .output()
        .unwrap();
    std::fs::remove_dir_all(&dir).unwrap();
    assert!(extracted.status.success(), "cpio -i: {extracted:?}");
    let expected = initramfs::index_text(&image.modules);
    assert_eq!(String::from_utf8(extracted.stdout).unwrap(), expected);
}

#[test]
fn rescue_config_symbols_exist_in_the_debian_kernel_config() {
    let dir = modules_dir();
    let kver = image().kernel_version.clone();
    let config_path = dir.join(format!("../../../boot/config-{kver}"));
    let config = std::fs::read_to_string(&config_path).unwrap_or_else(|e| {
        panic!(
            "cannot read {} ({e}): the unpacked kernel package must keep its boot/ directory",
            config_path.display()
        )
    });
    let fragment = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../kernel-config/rescue.config"),
    )
    .unwrap();
    let mut checked = 0;
    for line in fragment.lines().filter(|l| l.starts_with("CONFIG_")) {
        let symbol = line.split('=').next().unwrap();
        let known = config
            .lines()
            .any(|l| l.starts_with(&format!("{symbol}=")) || l == format!("# {symbol} is not set"));
        assert!(known, "{symbol} is not a Kconfig symbol of kernel {kver}");
        checked += 1;
    }
    assert!(checked > 40, "only {checked} symbols in rescue.config");
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig::with_cases(64))]
    #[test]
    fn corrupted_real_module_gives_a_result_never_a_panic(
        flips in proptest::collection::vec(
            (proptest::prelude::any::<usize>(), proptest::prelude::any::<u8>()), 1..32),
    ) {
        let image = image();
        let smallest = image.modules.iter().min_by_key(|m| m.size).unwrap();
        let rel = smallest
            .image_path
            .strip_prefix(&format!("/lib/modules/{}/", image.kernel_version))
            .unwrap();
        let mut bytes = std::fs::read(modules_dir().join(rel)).unwrap();
        let len = bytes.len();
        for (at, value) in flips {
            bytes[at % len] = value;
        }
        let _ = initramfs::ModInfo::from_elf(&bytes);
    }
}

/// A two-module tree copied from the real one, raid1 gzipped by `gzip`.
fn small_tree(tag: &str, version: &str) -> (PathBuf, PathBuf) {
    let source = modules_dir();
    let root = scratch(tag);
    let dir = root.join(version);
    std::fs::create_dir_all(dir.join("kernel/md")).unwrap();
    std::fs::write(dir.join("modules.builtin"), "").unwrap();
    for name in ["md-mod.ko", "raid1.ko"] {
        std::fs::copy(
            source.join("kernel/drivers/md").join(name),
            dir.join("kernel/md").join(name),
        )
        .unwrap();
    }
    let gzip = tool("gzip", "gzip")
        .arg("-n")
        .arg(dir.join("kernel/md/raid1.ko"))
        .output()
        .unwrap();
    assert!(gzip.status.success(), "gzip: {gzip:?}");
    (root, dir)
}

#[test]
fn gzipped_module_is_stored_uncompressed() {
    let kver = image().kernel_version.clone();
    let (root, dir) = small_tree("gz", &kver);
    let closure = ModuleTree::open(&dir)
        .and_then(|tree| tree.resolve(&["raid1".to_string()]))
        .unwrap();
    std::fs::remove_dir_all(&root).unwrap();
    let paths: Vec<&str> = closure
        .modules
        .iter()
        .map(|m| m.rel_path.as_str())
        .collect();
    assert_eq!(paths, ["kernel/md/md-mod.ko", "kernel/md/raid1.ko"]);
    let original = std::fs::read(modules_dir().join("kernel/drivers/md/raid1.ko")).unwrap();
    assert!(
        closure.modules[1].data == original,
        "raid1.ko was not decompressed"
    );
}

#[test]
fn modules_of_another_kernel_are_refused() {
    let (root, dir) = small_tree("vermagic", "9.9.9-other");
    let result = ModuleTree::open(&dir).and_then(|tree| tree.resolve(&["md-mod".to_string()]));
    std::fs::remove_dir_all(&root).unwrap();
    let err = result.unwrap_err();
    assert!(
        matches!(&err, initramfs::Error::VermagicMismatch { expected, .. } if expected == "9.9.9-other"),
        "{err}"
    );
}

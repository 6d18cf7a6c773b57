//! Kernel versions for the initrd rebuild: read from a real Debian bzImage (compared with
//! what `file` reports and with the image's file name), symlinks resolved inside a target
//! root (absolute links stay in the root), and deduplicated dracut jobs for a 7.x tree.

mod target_util;

use rescue::target_root::kernels::{bzimage_version, initrd_jobs, resolve_in_root, InitrdJob};
use std::os::unix::fs::symlink;
use std::process::Command;
use target_util::*;

#[test]
fn debian_kernel_version_from_header() {
    let k = debian_kernel();
    let v = bzimage_version(&mut std::fs::File::open(&k).unwrap()).unwrap();
    let name = k.file_name().unwrap().to_string_lossy().into_owned();
    assert_eq!(Some(v.as_str()), name.strip_prefix("vmlinuz-"));
    let o = run_tool(Command::new("file").arg("-b").arg(&k), "file");
    let desc = String::from_utf8_lossy(&o.stdout);
    assert!(desc.contains(&format!("version {v} ")), "file says: {desc}");
}

#[test]
fn symlinks_resolve_inside_root() {
    let t = TempDir::new("resolve");
    let r = t.path();
    put(r, "/boot/vmlinuz-4.19.0+1", b"k");
    symlink("vmlinuz-4.19.0+1", r.join("boot/vmlinuz-4.19-xen")).unwrap();
    // Absolute target: must stay inside the root, never reach the host's /boot.
    symlink("/boot/vmlinuz-4.19-xen", r.join("boot/vmlinuz-fallback")).unwrap();
    std::fs::create_dir_all(r.join("usr/lib")).unwrap();
    symlink("../../boot", r.join("usr/lib/kboot")).unwrap();
    symlink("/../../../boot/vmlinuz-4.19.0+1", r.join("boot/escape")).unwrap();
    for p in [
        "/boot/vmlinuz-4.19-xen",
        "/boot/vmlinuz-fallback",
        "/usr/lib/kboot/vmlinuz-fallback",
        "/boot/escape",
    ] {
        assert_eq!(
            resolve_in_root(r, p).unwrap(),
            "/boot/vmlinuz-4.19.0+1",
            "{p}"
        );
    }
    // Missing final file (dracut creates it): path kept.
    symlink("initrd-4.19.0+1.img", r.join("boot/initrd-4.19-xen.img")).unwrap();
    assert_eq!(
        resolve_in_root(r, "/boot/initrd-4.19-xen.img").unwrap(),
        "/boot/initrd-4.19.0+1.img"
    );
    symlink("loop", r.join("boot/loop")).unwrap();
    let e = resolve_in_root(r, "/boot/loop").unwrap_err();
    assert!(e.to_string().contains("too many levels of symlinks"), "{e}");
}

#[test]
fn initrd_jobs_for_7x_tree() {
    let t = TempDir::new("jobs");
    let r = t.path();
    let kernel = std::fs::read(debian_kernel()).unwrap();
    let kver = bzimage_version(&mut std::io::Cursor::new(&kernel)).unwrap();
    put(r, &format!("/boot/vmlinuz-{kver}"), &kernel);
    put(r, &format!("/boot/initrd-{kver}.img"), b"old initrd");
    symlink(format!("vmlinuz-{kver}"), r.join("boot/vmlinuz-4.19-xen")).unwrap();
    symlink(
        format!("/boot/vmlinuz-{kver}"),
        r.join("boot/vmlinuz-fallback"),
    )
    .unwrap();
    symlink(
        format!("initrd-{kver}.img"),
        r.join("boot/initrd-4.19-xen.img"),
    )
    .unwrap();
    symlink(
        format!("/boot/initrd-{kver}.img"),
        r.join("boot/initrd-fallback.img"),
    )
    .unwrap();
    put(r, "/boot/grub/grub.cfg", GRUB_CFG_7.as_bytes());
    let jobs = initrd_jobs(r).unwrap();
    assert_eq!(
        jobs,
        [InitrdJob {
            kernel_version: kver.clone(),
            initrd: format!("/boot/initrd-{kver}.img"),
            kernel: format!("/boot/vmlinuz-{kver}"),
        }]
    );
}

#[test]
fn no_boot_config_is_an_error() {
    let t = TempDir::new("noboot");
    let e = initrd_jobs(t.path()).unwrap_err();
    assert!(e.to_string().contains("no boot entries found"), "{e}");
}

#[test]
fn xen_image_is_not_taken_for_a_kernel() {
    let t = TempDir::new("notkernel");
    let r = t.path();
    put(r, "/boot/vmlinuz-4.19-xen", &[0u8; 4096]);
    put(r, "/boot/grub/grub.cfg", GRUB_CFG_7.as_bytes());
    let e = initrd_jobs(r).unwrap_err();
    assert!(e.to_string().contains("HdrS"), "{e}");
}

//! GRUB and extlinux rewriting on the configs XenServer writes: snapshots of the result,
//! `grub-script-check` (grub-common) on every rewritten grub.cfg, idempotence, and checks
//! that only dom0 kernel lines and root searches change.

mod target_util;

use rescue::target_root::extlinux::{self, rewrite_extlinux};
use rescue::target_root::grub::{self, rewrite_grub_cfg};
use target_util::*;

fn changed_lines<'a>(before: &'a str, after: &'a str) -> Vec<(&'a str, &'a str)> {
    // The rewrite only inserts lines at the top; pair the rest from the end.
    before
        .lines()
        .rev()
        .zip(after.lines().rev())
        .filter(|(a, b)| a != b)
        .collect()
}

#[test]
fn grub_7x_rewritten() {
    let out = rewrite_grub_cfg(GRUB_CFG_7, &conv7()).unwrap();
    insta::assert_snapshot!(out);
    grub_script_check(GRUB_CFG_7, "grub7-before");
    grub_script_check(&out, "grub7-after");
    assert_eq!(rewrite_grub_cfg(&out, &conv7()).unwrap(), out, "idempotent");

    let changed = changed_lines(GRUB_CFG_7, &out);
    // 5 entries: one dom0 kernel line and one search line each.
    assert_eq!(changed.len(), 10);
    for (old, new) in &changed {
        let t = old.trim();
        assert!(
            t.starts_with("module2 /boot/vmlinuz-") || t.starts_with("search --label"),
            "unexpected change: {old}"
        );
        if t.starts_with("module2") {
            assert!(new.contains(&format!("root=UUID={ROOT_FS_UUID} ")));
            assert!(!new.contains("LABEL="));
            // Every array, so the initrd starts each one degraded when a disk is gone.
            for md in [ROOT_MD, BACKUP_MD, LOGS_MD, SWAP_MD, SR_MD] {
                assert_eq!(new.matches(&format!("rd.md.uuid={md}")).count(), 1, "{md}");
            }
        } else {
            assert_eq!(
                new.trim(),
                format!("search --fs-uuid --set root {ROOT_FS_UUID}")
            );
        }
    }
    assert_eq!(
        out.lines().take(4).collect::<Vec<_>>()[1..],
        ["insmod part_gpt", "insmod diskfilter", "insmod mdraid1x"]
    );
    assert!(!out.contains("mdraid09"));
    // Initrd lines get no arguments.
    for l in out.lines().filter(|l| l.contains("initrd")) {
        assert_eq!(l.split_whitespace().count(), 2, "{l}");
    }
}

#[test]
fn grub_xen_boot_and_linux_entries_rewritten() {
    let out = rewrite_grub_cfg(GRUB_CFG_XEN_BOOT, &conv6_like_root_label()).unwrap();
    insta::assert_snapshot!(out);
    grub_script_check(&out, "grub-xenboot-after");
    assert_eq!(
        rewrite_grub_cfg(&out, &conv6_like_root_label()).unwrap(),
        out
    );
    assert!(!out.contains("rd.md=0"));
    assert!(!out.contains("rd.auto=0"));
    assert!(out.contains("\tsearch --no-floppy --fs-uuid --set=root 0f3c5a0e-"));
    assert!(out.contains("\tlinux /boot/vmlinuz-4.19-xen root=UUID=0f3c5a0e-"));
    assert!(
        out.contains("insmod mdraid09\n"),
        "a 0.90 array needs mdraid09"
    );
}

/// conv7 labels with one 0.90 array, to exercise `mdraid09`.
fn conv6_like_root_label() -> rescue::target_root::Conversion {
    let mut c = conv7();
    c.arrays[1].metadata = "0.90".into();
    c
}

#[test]
fn grub_existing_insmods_are_not_repeated() {
    let cfg = format!("insmod part_gpt\ninsmod diskfilter\n{GRUB_CFG_7}");
    let out = rewrite_grub_cfg(&cfg, &conv7()).unwrap();
    assert!(out.starts_with(
        "# xenraid: modules to read /boot from md RAID1\ninsmod mdraid1x\ninsmod part_gpt\n"
    ));
    assert_eq!(out.matches("insmod part_gpt").count(), 1);
}

#[test]
fn grub_boot_images_list_kernel_and_initrd() {
    let imgs = grub::boot_images(GRUB_CFG_7);
    let pairs: Vec<(&str, Option<&str>)> = imgs
        .iter()
        .map(|i| (i.kernel.as_str(), i.initrd.as_deref()))
        .collect();
    assert_eq!(
        pairs,
        [
            ("/boot/vmlinuz-4.19-xen", Some("/boot/initrd-4.19-xen.img")),
            ("/boot/vmlinuz-4.19-xen", Some("/boot/initrd-4.19-xen.img")),
            ("/boot/vmlinuz-4.19-xen", Some("/boot/initrd-4.19-xen.img")),
            ("/boot/vmlinuz-fallback", Some("/boot/initrd-fallback.img")),
            ("/boot/vmlinuz-fallback", Some("/boot/initrd-fallback.img")),
        ]
    );
    assert_eq!(imgs[3].entry, "XCP-ng (Xen 4.13.5 / Linux 4.19.0+1)");
    let x = grub::boot_images(GRUB_CFG_XEN_BOOT);
    assert_eq!(x.len(), 2);
    assert_eq!(x[1].initrd.as_deref(), Some("/boot/initrd-4.19-xen.img"));
}

#[test]
fn grub_without_root_array_is_an_error() {
    let mut c = conv7();
    c.arrays
        .retain(|a| a.role != rescue::target_root::Role::Root);
    let e = rewrite_grub_cfg(GRUB_CFG_7, &c).unwrap_err();
    assert!(e.to_string().contains("no root array"), "{e}");
}

#[test]
fn extlinux_6x_rewritten() {
    let out = rewrite_extlinux(EXTLINUX_6, &conv6()).unwrap();
    insta::assert_snapshot!(out);
    assert_eq!(rewrite_extlinux(&out, &conv6()).unwrap(), out, "idempotent");
    let changed = changed_lines(EXTLINUX_6, &out);
    assert_eq!(changed.len(), 4, "one append line per label");
    for (old, new) in changed {
        let (o, n): (Vec<&str>, Vec<&str>) =
            (old.split(" --- ").collect(), new.split(" --- ").collect());
        assert_eq!(o.len(), 3);
        assert_eq!(o[0], n[0], "Xen segment unchanged");
        assert_eq!(o[2], n[2], "initrd segment unchanged");
        assert!(n[1].contains(&format!("root=UUID={ROOT_FS_UUID}")));
        assert_eq!(
            n[1].matches(&format!("rd.md.uuid={ROOT_MD}")).count(),
            1,
            "{}",
            n[1]
        );
        assert!(
            n[1].split(' ')
                .next_back()
                .unwrap()
                .starts_with("rd.md.uuid="),
            "{}",
            n[1]
        );
    }
    let imgs = extlinux::boot_images(EXTLINUX_6);
    assert_eq!(imgs.len(), 4);
    assert_eq!(
        imgs[3].kernel,
        "/boot/vmlinuz-2.6.32.43-0.4.1.xs1.8.0.835.170778xen"
    );
    assert_eq!(
        imgs[3].initrd.as_deref(),
        Some("/boot/initrd-2.6.32.43-0.4.1.xs1.8.0.835.170778xen.img")
    );
}

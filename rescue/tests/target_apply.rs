//! `apply` on a temporary target tree populated with a 7.x host's files: what changes, the
//! one-time `.xenraid-orig` backups, a second run changing nothing, and the results read back
//! with the real tools (grub-script-check, lvmconfig).

mod target_util;

use rescue::target_root::{apply, ChangedFile};
use std::process::Command;
use target_util::*;

fn tree7(r: &std::path::Path) {
    put(r, "/etc/fstab", FSTAB_7.as_bytes());
    put(r, "/boot/grub/grub.cfg", GRUB_CFG_7.as_bytes());
    put(r, "/etc/xensource-inventory", INVENTORY_7.as_bytes());
    put(
        r,
        "/etc/firstboot.d/data/default-storage.conf",
        DEFAULT_STORAGE.as_bytes(),
    );
    put(r, "/etc/lvm/lvm.conf", LVM_CONF.as_bytes());
    put(r, "/etc/lvm/master/lvm.conf", LVM_CONF.as_bytes());
    put(
        r,
        "/etc/dracut.conf.d/xs_disable_multipath.conf",
        b"omit_dracutmodules+=\" multipath \"\n",
    );
    put(r, "/var/lib/xcp/state.db", STATE_DB.as_bytes());
    // The target's dracut keeps its modules here (dom0's CentOS and Debian alike).
    put(
        r,
        "/usr/lib/dracut/modules.d/90mdraid/module-setup.sh",
        b"# dracut's own\n",
    );
}

fn read(r: &std::path::Path, rel: &str) -> String {
    std::fs::read_to_string(r.join(rel.trim_start_matches('/'))).unwrap()
}

#[test]
fn apply_7x_tree_then_again() {
    let t = TempDir::new("apply7");
    let r = t.path();
    tree7(r);
    let changed = apply(r, &conv7()).unwrap();
    let paths: Vec<&str> = changed.iter().map(|c| c.path.as_str()).collect();
    // The root filesystem's device unit, as `systemd-escape --path` names it.
    let root_unit = format!(
        "/usr/lib/dracut/modules.d/91xenraid/units/dev-disk-by\\x2duuid-{}.device.conf",
        ROOT_FS_UUID.replace('-', "\\x2d")
    );
    assert_eq!(
        paths,
        [
            "/etc/fstab",
            "/boot/grub/grub.cfg",
            "/etc/mdadm.conf",
            "/usr/lib/dracut/modules.d/91xenraid/module-setup.sh",
            "/usr/lib/dracut/modules.d/91xenraid/xenraid-md-degraded.sh",
            "/usr/lib/dracut/modules.d/91xenraid/xenraid-md-readwrite.sh",
            root_unit.as_str(),
            "/etc/dracut.conf.d/90-xenraid-mdraid.conf",
            "/etc/xensource-inventory",
            "/etc/firstboot.d/data/default-storage.conf",
            "/etc/lvm/lvm.conf",
            "/etc/lvm/master/lvm.conf",
            "/var/lib/xcp/state.db",
        ]
    );
    for c in &changed {
        if c.path == root_unit {
            assert!(c.created && c.backup.is_none(), "{c:?}");
            continue;
        }
        match c.path.as_str() {
            "/etc/mdadm.conf"
            | "/etc/dracut.conf.d/90-xenraid-mdraid.conf"
            | "/usr/lib/dracut/modules.d/91xenraid/module-setup.sh"
            | "/usr/lib/dracut/modules.d/91xenraid/xenraid-md-degraded.sh"
            | "/usr/lib/dracut/modules.d/91xenraid/xenraid-md-readwrite.sh" => {
                assert_eq!(
                    c,
                    &ChangedFile {
                        path: c.path.clone(),
                        backup: None,
                        created: true
                    }
                )
            }
            _ => {
                assert!(!c.created);
                assert_eq!(
                    c.backup.as_deref(),
                    Some(format!("{}.xenraid-orig", c.path).as_str())
                );
            }
        }
    }
    assert_eq!(read(r, "/etc/fstab.xenraid-orig"), FSTAB_7);
    assert_eq!(read(r, "/boot/grub/grub.cfg.xenraid-orig"), GRUB_CFG_7);
    assert_eq!(
        read(r, "/etc/dracut.conf.d/xs_disable_multipath.conf"),
        "omit_dracutmodules+=\" multipath \"\n"
    );
    assert!(read(r, "/var/lib/xcp/state.db")
        .contains(&format!("(('device' '/dev/disk/by-id/md-uuid-{SR_MD}'))")));
    assert!(read(r, "/etc/mdadm.conf").contains(&format!(
        "ARRAY /dev/md/root metadata=1.0 UUID={ROOT_MD} name=xenserver:root"
    )));
    grub_script_check(&read(r, "/boot/grub/grub.cfg"), "apply");
    let o = run_tool(
        Command::new("lvmconfig")
            .env("LVM_SYSTEM_DIR", r.join("etc/lvm"))
            .args(["--typeconfig", "current", "devices/md_component_detection"]),
        "lvm2",
    );
    assert_eq!(
        String::from_utf8_lossy(&o.stdout).trim(),
        "md_component_detection=1"
    );

    // Resumed job: nothing to do, backups still hold the vendor's files.
    let snapshot: Vec<(String, String)> =
        paths.iter().map(|p| (p.to_string(), read(r, p))).collect();
    assert_eq!(apply(r, &conv7()).unwrap(), []);
    for (p, c) in &snapshot {
        assert_eq!(&read(r, p), c, "{p} unchanged by the second run");
    }
    assert_eq!(read(r, "/etc/fstab.xenraid-orig"), FSTAB_7);
    let leftovers: Vec<_> = walk(r)
        .into_iter()
        .filter(|p| p.ends_with(".xenraid-tmp"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
}

#[test]
fn existing_backup_is_never_overwritten() {
    let t = TempDir::new("apply-backup");
    let r = t.path();
    tree7(r);
    put(r, "/etc/fstab.xenraid-orig", b"the vendor's original\n");
    let changed = apply(r, &conv7()).unwrap();
    assert!(changed.iter().any(|c| c.path == "/etc/fstab"));
    assert_eq!(
        read(r, "/etc/fstab.xenraid-orig"),
        "the vendor's original\n"
    );
}

#[test]
fn debian_layout_and_6x_extlinux() {
    let t = TempDir::new("apply6");
    let r = t.path();
    put(r, "/etc/fstab", FSTAB_6.as_bytes());
    put(r, "/boot/extlinux.conf", EXTLINUX_6.as_bytes());
    put(r, "/etc/mdadm/mdadm.conf", MDADM_SEED001.as_bytes());
    let changed = apply(r, &conv6()).unwrap();
    let paths: Vec<&str> = changed.iter().map(|c| c.path.as_str()).collect();
    assert_eq!(
        paths,
        ["/etc/fstab", "/boot/extlinux.conf", "/etc/mdadm/mdadm.conf"]
    );
    assert!(!r.join("etc/mdadm.conf").exists());
    assert!(
        !r.join("etc/dracut.conf.d").exists(),
        "no dracut on this host: nothing written"
    );
    assert!(read(r, "/boot/extlinux.conf").contains(&format!("root=UUID={ROOT_FS_UUID}")));
    assert_eq!(apply(r, &conv6()).unwrap(), []);
}

#[test]
fn invalid_conversion_touches_nothing() {
    let t = TempDir::new("apply-invalid");
    let r = t.path();
    tree7(r);
    let mut c = conv7();
    c.arrays[0].uuid = "not-a-uuid".into();
    let e = apply(r, &c).unwrap_err();
    assert!(e.to_string().contains("mdadm form"), "{e}");
    assert_eq!(read(r, "/etc/fstab"), FSTAB_7);
    assert!(!r.join("etc/fstab.xenraid-orig").exists());
}

fn walk(dir: &std::path::Path) -> Vec<String> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap().flatten() {
        let p = e.path();
        if p.is_dir() {
            out.extend(walk(&p));
        } else {
            out.push(p.to_string_lossy().into_owned());
        }
    }
    out
}

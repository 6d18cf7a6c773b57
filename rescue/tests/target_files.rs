//! The system files of the converted host: fstab (parsed back with libmount's `findmnt`),
//! mdadm.conf, the dracut drop-in, the inventory and firstboot storage config, lvm.conf
//! (read back with `lvmconfig`) and xapi's state.db. Snapshots show the exact output.

mod target_util;

use rescue::target_root::dracut::dracut_conf;
use rescue::target_root::fstab::rewrite_fstab;
use rescue::target_root::lvm::{ensure_md_component_detection, md_component_detection};
use rescue::target_root::mdadm::{render_mdadm_conf, restrictive_device_lines};
use rescue::target_root::statedb::rewrite_state_db;
use rescue::target_root::sysconf::{get_key, rewrite_default_storage, rewrite_inventory};
use std::process::Command;
use target_util::*;

/// findmnt's parse of an fstab: (SOURCE, TARGET, FSTYPE, OPTIONS, FREQ, PASSNO) per entry.
fn findmnt(text: &str, name: &str) -> Vec<Vec<String>> {
    let dir = TempDir::new(&format!("findmnt-{name}"));
    let f = dir.path().join("fstab");
    std::fs::write(&f, text).unwrap();
    let o = run_tool(
        Command::new("findmnt").arg("--tab-file").arg(&f).args([
            "-n",
            "-r",
            "-o",
            "SOURCE,TARGET,FSTYPE,OPTIONS,FREQ,PASSNO",
        ]),
        "util-linux",
    );
    assert!(
        o.status.success(),
        "findmnt: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8(o.stdout)
        .unwrap()
        .lines()
        .map(|l| l.split(' ').map(String::from).collect())
        .collect()
}

/// Only SOURCE may differ, and it must become the expected value.
fn check_fstab(before: &str, after: &str, name: &str, expected_sources: &[&str]) {
    let (b, a) = (
        findmnt(before, &format!("{name}-b")),
        findmnt(after, &format!("{name}-a")),
    );
    assert_eq!(b.len(), a.len());
    assert_eq!(a.len(), expected_sources.len());
    for ((rb, ra), src) in b.iter().zip(&a).zip(expected_sources) {
        assert_eq!(rb[1..], ra[1..], "only the device changes");
        assert_eq!(ra[0], *src);
    }
}

#[test]
fn fstab_7x_labels() {
    let out = rewrite_fstab(FSTAB_7, &conv7());
    insta::assert_snapshot!(out);
    assert_eq!(rewrite_fstab(&out, &conv7()), out);
    check_fstab(
        FSTAB_7,
        &out,
        "7x",
        &[
            &format!("UUID={ROOT_FS_UUID}"),
            &format!("UUID={SWAP_UUID}"),
            &format!("UUID={LOGS_FS_UUID}"),
            "/opt/xensource/packages/iso/XenCenter.iso",
        ],
    );
}

#[test]
fn fstab_after_seed001_sed_uses_mount_points() {
    let out = rewrite_fstab(FSTAB_SEED001_EDITED, &conv7());
    // Same devices as from the vendor's fstab, whitespace of the edited file kept.
    assert_eq!(
        out.lines().next().unwrap(),
        format!("UUID={ROOT_FS_UUID}    /         ext3     defaults   1  1")
    );
    assert_eq!(
        findmnt(&out, "seed001"),
        findmnt(&rewrite_fstab(FSTAB_7, &conv7()), "seed001-7")
    );
}

#[test]
fn fstab_6x_keeps_swap_file() {
    let out = rewrite_fstab(FSTAB_6, &conv6());
    insta::assert_snapshot!(out);
    check_fstab(
        FSTAB_6,
        &out,
        "6x",
        &[
            &format!("UUID={ROOT_FS_UUID}"),
            "/var/swap/swap.001",
            "none",
            "none",
            "none",
            "none",
        ],
    );
}

#[test]
fn mdadm_conf_fresh_and_merged() {
    let fresh = render_mdadm_conf(None, &conv7());
    insta::assert_snapshot!("mdadm_fresh", fresh);
    assert_eq!(render_mdadm_conf(Some(&fresh), &conv7()), fresh);
    let merged = render_mdadm_conf(Some(MDADM_SEED001), &conv7());
    insta::assert_snapshot!("mdadm_merged_seed001", merged);
    assert_eq!(render_mdadm_conf(Some(&merged), &conv7()), merged);
    // Seed 001's md0/md1/md2 carry our UUIDs: replaced, not duplicated.
    for md in [ROOT_MD, BACKUP_MD, SR_MD, LOGS_MD, SWAP_MD] {
        assert_eq!(merged.matches(md).count(), 1, "{md}");
    }
    assert_eq!(
        restrictive_device_lines(&merged),
        ["DEVICE /dev/sd*[a-z][1-9]"]
    );
}

#[test]
fn dracut_dropin() {
    insta::assert_snapshot!(dracut_conf(true));
    // It is sourced by bash: it must parse as shell.
    let dir = TempDir::new("dracut-sh");
    let f = dir.path().join("x.conf");
    std::fs::write(&f, dracut_conf(true)).unwrap();
    let o = run_tool(
        Command::new("bash").arg("-c").arg(format!(
            ". {} && printf '%s|%s|%s' \"$add_dracutmodules\" \"$add_drivers\" \"$mdadmconf\"",
            f.display()
        )),
        "bash",
    );
    assert_eq!(
        String::from_utf8_lossy(&o.stdout),
        " mdraid xenraid | raid1 |yes"
    );
}

#[test]
fn inventory_and_default_storage() {
    let inv = rewrite_inventory(INVENTORY_7, &conv7());
    insta::assert_snapshot!(inv);
    assert_eq!(
        get_key(&inv, "PRIMARY_DISK").unwrap(),
        format!("/dev/disk/by-id/md-uuid-{ROOT_MD}")
    );
    assert_eq!(
        get_key(&inv, "BACKUP_PARTITION").unwrap(),
        format!("/dev/disk/by-id/md-uuid-{BACKUP_MD}")
    );
    let other = |t: &str| -> Vec<String> {
        t.lines()
            .filter(|l| !l.starts_with("PRIMARY_DISK=") && !l.starts_with("BACKUP_PARTITION="))
            .map(String::from)
            .collect()
    };
    assert_eq!(other(&inv), other(INVENTORY_7));
    assert_eq!(rewrite_inventory(&inv, &conv7()), inv);

    let st = rewrite_default_storage(DEFAULT_STORAGE, &conv7());
    assert_eq!(
        st,
        format!("TYPE='lvm'\nPARTITIONS='/dev/disk/by-id/md-uuid-{SR_MD}'\n")
    );
    // Sourced by the firstboot scripts: check with the shell.
    let o = run_tool(
        Command::new("bash")
            .arg("-c")
            .arg(format!("{st}\nprintf %s \"$PARTITIONS\"")),
        "bash",
    );
    assert_eq!(
        String::from_utf8_lossy(&o.stdout),
        format!("/dev/disk/by-id/md-uuid-{SR_MD}")
    );
}

/// lvmconfig's view of devices/md_component_detection in this lvm.conf.
fn lvmconfig_md(text: &str, name: &str) -> Option<String> {
    let dir = TempDir::new(&format!("lvm-{name}"));
    std::fs::write(dir.path().join("lvm.conf"), text).unwrap();
    let o = run_tool(
        Command::new("lvmconfig")
            .env("LVM_SYSTEM_DIR", dir.path())
            .args(["--typeconfig", "current", "devices/md_component_detection"]),
        "lvm2",
    );
    let v = run_tool(
        Command::new("lvmconfig")
            .env("LVM_SYSTEM_DIR", dir.path())
            .arg("--validate"),
        "lvm2",
    );
    assert!(
        v.status.success(),
        "lvmconfig --validate: {}",
        String::from_utf8_lossy(&v.stderr)
    );
    o.status
        .success()
        .then(|| String::from_utf8_lossy(&o.stdout).trim().to_string())
}

#[test]
fn lvm_conf_checked_with_lvmconfig() {
    assert_eq!(lvmconfig_md(LVM_CONF, "before"), None);
    let out = ensure_md_component_detection(LVM_CONF).unwrap();
    insta::assert_snapshot!(out);
    assert_eq!(
        lvmconfig_md(&out, "after").as_deref(),
        Some("md_component_detection=1")
    );
    assert_eq!(md_component_detection(&out).as_deref(), Some("1"));
    assert_eq!(ensure_md_component_detection(&out).unwrap(), out);

    let off = LVM_CONF.replace(
        "\t# md_component_detection = 1",
        "\tmd_component_detection = 0",
    );
    assert_eq!(
        lvmconfig_md(&off, "off").as_deref(),
        Some("md_component_detection=0")
    );
    let fixed = ensure_md_component_detection(&off).unwrap();
    assert_eq!(
        lvmconfig_md(&fixed, "fixed").as_deref(),
        Some("md_component_detection=1")
    );
    assert_eq!(
        fixed.lines().count(),
        off.lines().count(),
        "edited in place"
    );

    let none = "global {\n\tuse_lvmetad = 0\n}\n";
    let added = ensure_md_component_detection(none).unwrap();
    assert_eq!(
        lvmconfig_md(&added, "added").as_deref(),
        Some("md_component_detection=1")
    );
}

#[test]
fn state_db_pbd_device() {
    let new = format!("/dev/disk/by-id/md-uuid-{SR_MD}");
    let (out, n) = rewrite_state_db(STATE_DB, &[OLD_SR.to_string()], &new);
    assert_eq!(n, 1);
    assert_eq!(out, STATE_DB.replace(OLD_SR, &new));
    assert!(out.contains("(('location' '/dev/xapi/cd'))"));
    assert_eq!(
        rewrite_state_db(&out, &[OLD_SR.to_string()], &new),
        (out.clone(), 0)
    );
}

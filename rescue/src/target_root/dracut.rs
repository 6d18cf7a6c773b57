//! What the converted host's dracut needs so that every initramfs it builds — now, and on
//! every later kernel update — assembles the arrays and boots with a disk missing:
//!
//! - a drop-in adding the `mdraid` module (udev rules and mdadm), the `raid1` driver and
//!   `/etc/mdadm.conf`, plus our own `xenraid` module. Its own file, so the installer's
//!   `xs_disable_multipath.conf` stays untouched and the change is easy to see and undo.
//! - the `xenraid` dracut module: an initqueue hook that starts the arrays named by
//!   `rd.md.uuid=` that are still waiting for a member once no new block device has
//!   appeared for [`DEGRADED_AFTER_SECS`] seconds (wall clock).
//!
//! Why the hook: dracut itself starts an incomplete array only from its initqueue
//! *timeout* hooks, after 2/3 of `rd.retry` (default 180) main-loop rounds. A round is
//! ≥0.5 s on an idle machine but several seconds on a busy or emulated one (measured:
//! ~870–920 s under QEMU TCG), and for all that time the root device job races its own
//! timeout. Counting wall-clock seconds since the last new disk bounds the wait whatever
//! the machine's speed, and a healthy boot never reaches it (both members present: the
//! arrays start as soon as udev has seen them). 30 s is mdadm's own choice for the same
//! decision (`mdadm-last-resort@.timer`, which dracut's rules do not trigger).

/// Path of the drop-in, relative to the target root.
pub const DRACUT_CONF_PATH: &str = "/etc/dracut.conf.d/90-xenraid-mdraid.conf";

/// Where dracut looks for modules, relative to the target root.
pub const MODULES_DIR: &str = "/usr/lib/dracut/modules.d";
/// Our module's directory under [`MODULES_DIR`] (`91`: after `90mdraid`).
pub const MODULE_NAME: &str = "91xenraid";
/// Its two files, relative to the module directory.
pub const MODULE_SETUP: &str = "module-setup.sh";
pub const DEGRADED_HOOK: &str = "xenraid-md-degraded.sh";
pub const READWRITE_HOOK: &str = "xenraid-md-readwrite.sh";

/// Directory (under our module) of static unit drop-ins the initrd gets, one file per
/// device unit: `<unit name>.conf`.
pub const UNIT_DROPINS: &str = "units";

/// The systemd unit name of a device path (`systemd-escape --path --suffix=device`):
/// `/dev/disk/by-uuid/0f3c-…` → `dev-disk-by\x2duuid-0f3c\x2d….device`.
pub fn device_unit_name(path: &str) -> String {
    let trimmed = path.trim_matches('/');
    let mut out = String::new();
    for (i, b) in trimmed.bytes().enumerate() {
        match b {
            b'/' => out.push('-'),
            b'.' if i == 0 => out.push_str("\\x2e"),
            b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b':' | b'_' | b'.' => out.push(b as char),
            _ => out.push_str(&format!("\\x{b:02x}")),
        }
    }
    out + ".device"
}

/// A drop-in that lets the root device wait as long as dracut's own loop does. dracut's
/// generator gives the root device the same setting, but a generator's output lives only
/// until the next `daemon-reload`, which dracut itself triggers from its initqueue; on a
/// busy machine a reload whose generators do not finish leaves the device with systemd's
/// default (90 s), and a job already running longer times out at once. A unit file in
/// the initramfs's `/etc` does not depend on any reload.
pub fn device_timeout_dropin() -> String {
    concat!(
        "# Written by xenraid: wait for the root device as long as dracut's initqueue does\n",
        "# (it gives up by itself after rd.retry), whatever a daemon-reload does meanwhile.\n",
        "[Unit]\n",
        "JobTimeoutSec=0\n",
        "JobRunningTimeoutSec=0\n",
    )
    .to_string()
}

/// Seconds without a new block device before incomplete arrays are started degraded.
pub const DEGRADED_AFTER_SECS: u32 = 30;

/// The drop-in's content; `with_module` when our module is written beside it (a target
/// whose dracut keeps its modules elsewhere gets mdraid alone).
pub fn dracut_conf(with_module: bool) -> String {
    format!(
        concat!(
            "# Written by xenraid when it converted this host to md RAID1.\n",
            "# Without these the initramfs does not assemble the arrays, and a boot with one\n",
            "# disk missing fails or waits for minutes. Keep this file while the host runs on md.\n",
            "add_dracutmodules+=\" mdraid{} \"\n",
            "add_drivers+=\" raid1 \"\n",
            "mdadmconf=\"yes\"\n",
        ),
        if with_module { " xenraid" } else { "" }
    )
}

/// `module-setup.sh` of the `xenraid` dracut module (dracut 033 to 059 alike).
pub fn module_setup() -> String {
    format!(
        r#"#!/bin/bash
# Written by xenraid: starts incomplete md arrays degraded once the disks have settled.
# See {hook} for why. Keep this module while the host runs on md.

check() {{
    return 0
}}

depends() {{
    echo mdraid
    return 0
}}

install() {{
    local f unit
    inst_hook initqueue/settled 90 "$moddir/{hook}"
    inst_hook pre-pivot 50 "$moddir/{rw}"
    # Static timeouts for the devices the boot waits for (see the files' comments).
    for f in "$moddir"/{units}/*.conf; do
        [ -e "$f" ] || continue
        unit=${{f##*/}}
        unit=${{unit%.conf}}
        inst_simple "$f" "/etc/systemd/system/$unit.d/50-xenraid-timeout.conf"
    done
}}
"#,
        hook = DEGRADED_HOOK,
        rw = READWRITE_HOOK,
        units = UNIT_DROPINS
    )
}

/// The `pre-pivot` hook: every array named by `rd.md.uuid=` that `mdadm -I` left
/// `read-auto` is switched to read-write before the real root starts.
///
/// Why: incremental assembly starts arrays read-auto, and md resumes an interrupted
/// recovery only once an array is written. The conversion attaches the source's members
/// and the booted host finishes their recovery, but nothing ever writes the backup
/// array (and swap only on a page-out): measured on the realistic fixture, backup and
/// swap stayed `[U_]` with their recovery stopped at 0 and 5120 sectors, so the source
/// alone could not have started them. Sourced by dracut: POSIX sh, no `exit`.
pub fn readwrite_hook() -> String {
    r#"#!/bin/sh
# Written by xenraid: lets md finish the recovery of every converted array now (see the
# xenraid module). An array mdadm -I started read-auto stays so until its first write,
# and the backup array is never written, so its recovery would never run.
for _xr_uuid in $(getargs rd.md.uuid -d rd_MD_UUID=); do
    _xr_dev=$(readlink -f "/dev/disk/by-id/md-uuid-$_xr_uuid" 2> /dev/null)
    _xr_state="/sys/class/block/${_xr_dev##*/}/md/array_state"
    [ -n "$_xr_dev" ] && [ -e "$_xr_state" ] || continue
    if [ "$(cat "$_xr_state")" = "read-auto" ]; then
        info "xenraid: $_xr_dev read-write, so its recovery runs"
        mdadm --readwrite "$_xr_dev" 2> /dev/null || echo active > "$_xr_state"
    fi
done
unset _xr_uuid _xr_dev _xr_state
"#
    .to_string()
}

/// The initqueue `settled` hook. dracut sources it in its main loop after udev has
/// settled, every round: it must be quick, POSIX sh, and must not `exit`.
///
/// Once no new block device has appeared for the delay, before starting anything
/// degraded, it replays what udev may have lost: `mdadm -I` for every member of a named
/// array that sits in no array (its udev worker was killed: on a starved machine the
/// workers running `mdadm -I` for all nine members of a both-disks boot passed udev's
/// 180 s event timeout, were killed, and the boot waited for a root that nothing would
/// assemble, then fell into the emergency shell), and a `change` event for a running
/// named array whose `md-uuid-` link is missing (its own event killed the same way).
pub fn degraded_hook() -> String {
    format!(
        r#"#!/bin/sh
# Written by xenraid. Starts the md arrays named by rd.md.uuid= that still wait for a
# member, once no new block device has appeared for {secs} s (rd.xenraid.degraded-after=
# to change it): a disk that is dead or pulled must not hold the boot until dracut's
# rd.retry timeout, which counts main-loop rounds and so grows with a slow machine.
# First it redoes what a killed udev worker left undone (see the xenraid module).
# mdraid_start (dracut's own) runs mdadm -R only on arrays that are still inactive.
_xr_after=$(getarg rd.xenraid.degraded-after=)
_xr_after=${{_xr_after:-{secs}}}
read -r _xr_now _xr_rest < /proc/uptime
_xr_now=${{_xr_now%%.*}}
_xr_count=0
for _xr_dev in /sys/class/block/*; do
    _xr_count=$((_xr_count + 1))
done
if [ "$_xr_count" != "$(cat /run/xenraid-md-count 2> /dev/null)" ]; then
    echo "$_xr_count" > /run/xenraid-md-count
    echo "$_xr_now" > /run/xenraid-md-since
elif [ ! -e "/run/xenraid-md-started-$_xr_count" ] \
    && [ $((_xr_now - $(cat /run/xenraid-md-since))) -ge "$_xr_after" ]; then
    : > "/run/xenraid-md-started-$_xr_count"
    # shellcheck disable=SC2046
    _xr_uuids=" $(echo $(getargs rd.md.uuid -d rd_MD_UUID=)) "
    # A member of a named array in no array: udev's mdadm -I for it never finished.
    for _xr_dev in /sys/class/block/*; do
        _xr_name=${{_xr_dev##*/}}
        case "$_xr_name" in md* | loop* | ram* | sr* | zram* | dm-*) continue ;; esac
        [ -z "$(ls -A "$_xr_dev/holders" 2> /dev/null)" ] || continue
        # A whole disk with partitions is no member (its last partition's 0.90
        # superblock, at the disk's end, would look like the disk's own).
        if [ ! -e "$_xr_dev/partition" ] && ls -d "$_xr_dev/$_xr_name"?* > /dev/null 2>&1; then
            continue
        fi
        _xr_uuid=$(mdadm --examine --export "/dev/$_xr_name" 2> /dev/null | sed -n 's/^MD_UUID=//p')
        case "$_xr_uuids" in *" $_xr_uuid "*) ;; *) continue ;; esac
        warn "xenraid: /dev/$_xr_name (md $_xr_uuid) is in no array: mdadm -I"
        mdadm -I "/dev/$_xr_name" 2>&1 | vinfo
    done
    warn "xenraid: no new disk for ${{_xr_after}} s: starting md arrays that still miss a member"
    /sbin/mdraid_start
    # A running named array without its md-uuid link: its udev event never finished.
    for _xr_dev in /sys/class/block/md*; do
        _xr_name=${{_xr_dev##*/}}
        [ -e "$_xr_dev/md/array_state" ] || continue
        _xr_uuid=$(mdadm --detail --export "/dev/$_xr_name" 2> /dev/null | sed -n 's/^MD_UUID=//p')
        [ -n "$_xr_uuid" ] && [ ! -L "/dev/disk/by-id/md-uuid-$_xr_uuid" ] || continue
        case "$_xr_uuids" in *" $_xr_uuid "*) ;; *) continue ;; esac
        warn "xenraid: /dev/$_xr_name (md $_xr_uuid) has no udev links: replaying its change event"
        udevadm trigger --action=change --subsystem-match=block --sysname-match="$_xr_name"
    done
fi
unset _xr_after _xr_now _xr_rest _xr_count _xr_dev _xr_name _xr_uuid _xr_uuids
"#,
        secs = DEGRADED_AFTER_SECS
    )
}

/// Storage drivers a host-only initrd also gets, beyond what dracut finds on this
/// machine: so the host still boots when a disk moves to another controller type or
/// another server. Only those the target's kernel has are passed (see [`module_names`]).
pub const PORTABLE_STORAGE_DRIVERS: &[&str] = &[
    "ahci",
    "ata_piix",
    "sd_mod",
    "nvme",
    "virtio_blk",
    "virtio_scsi",
    "virtio_pci",
    "xen_blkfront",
    "megaraid_sas",
    "mpt3sas",
    "hpsa",
    "smartpqi",
    "aacraid",
    "usb_storage",
    "uas",
];

/// The dracut config files of a target in the order dracut reads them: `/etc/dracut.conf`,
/// then the `*.conf` of `/usr/lib/dracut/dracut.conf.d` and `/etc/dracut.conf.d` sorted by
/// file name, a file in `/etc` hiding one of the same name in `/usr/lib`.
pub const CONF_DIRS: [&str; 2] = ["/usr/lib/dracut/dracut.conf.d", "/etc/dracut.conf.d"];

/// Reads the target's dracut config files under `root` in dracut's order (plain reads).
pub fn confs_under(root: &std::path::Path) -> Vec<String> {
    let at = |rel: &str| root.join(rel.trim_start_matches('/'));
    let mut out: Vec<String> = std::fs::read_to_string(at("/etc/dracut.conf"))
        .into_iter()
        .collect();
    let mut by_name = std::collections::BTreeMap::new();
    for dir in CONF_DIRS {
        for e in std::fs::read_dir(at(dir)).into_iter().flatten().flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            if name.ends_with(".conf") {
                // Later directories (/etc) hide the same name in earlier ones.
                by_name.insert(name, e.path());
            }
        }
    }
    out.extend(
        by_name
            .values()
            .filter_map(|p| std::fs::read_to_string(p).ok()),
    );
    out
}

/// Whether the target's own dracut configuration builds host-only images: the last
/// `hostonly=` assignment wins, as when dracut sources the files. `confs` are the files'
/// texts in dracut's order; without any assignment dracut builds generic images.
pub fn hostonly_configured(confs: &[String]) -> bool {
    let mut hostonly = false;
    for text in confs {
        for line in text.lines() {
            let l = line.trim();
            let Some(v) = l.strip_prefix("hostonly=") else {
                continue;
            };
            let v = v
                .split('#')
                .next()
                .unwrap_or("")
                .trim()
                .trim_matches(['"', '\'']);
            hostonly = matches!(v, "yes" | "y" | "1");
        }
    }
    hostonly
}

/// The module names a kernel's `modules.dep` and `modules.builtin` list (basename, no
/// `.ko*`, `-` as `_`), so a driver name can be checked before dracut is asked for it.
pub fn module_names(
    modules_dep: &str,
    modules_builtin: &str,
) -> std::collections::BTreeSet<String> {
    modules_dep
        .lines()
        .filter_map(|l| l.split(':').next())
        .chain(modules_builtin.lines())
        .filter_map(|p| p.trim().rsplit('/').next())
        .filter_map(|f| f.split(".ko").next())
        .filter(|n| !n.is_empty())
        .map(|n| n.replace('-', "_"))
        .collect()
}

/// dracut's arguments for one initrd. Host-only when the target is configured so (it is
/// built on the host's own hardware: the rescue runs there), with the md pieces and the
/// `extra_drivers` (the controllers of both disks and the portable set, already checked
/// against the kernel) added; otherwise a generic image, as the target would build it.
pub fn dracut_args(
    hostonly: bool,
    extra_drivers: &[String],
    initrd: &str,
    kver: &str,
) -> Vec<String> {
    let mut drivers = vec!["raid1".to_string()];
    if hostonly {
        for d in extra_drivers {
            if !drivers.contains(d) {
                drivers.push(d.clone());
            }
        }
    }
    vec![
        "-f".into(),
        if hostonly {
            "--hostonly"
        } else {
            "--no-hostonly"
        }
        .into(),
        "--add".into(),
        "mdraid".into(),
        "--add-drivers".into(),
        drivers.join(" "),
        initrd.into(),
        kver.into(),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Runs `script` with `shell -c` (the hooks are POSIX sh; module-setup.sh is bash).
    fn run_sh(shell: &str, script: &str) -> std::process::Output {
        std::process::Command::new(shell)
            .args(["-c", script])
            .output()
            .unwrap()
    }

    /// Checked against `systemd-escape --path --suffix=device` where it is installed.
    #[test]
    fn device_unit_names_are_escaped_like_systemd() {
        let p = "/dev/disk/by-uuid/0f3c5a0e-7d6b-4f57-9a3c-1c2d3e4f5a6b";
        let want =
            "dev-disk-by\\x2duuid-0f3c5a0e\\x2d7d6b\\x2d4f57\\x2d9a3c\\x2d1c2d3e4f5a6b.device";
        assert_eq!(device_unit_name(p), want);
        assert_eq!(device_unit_name("/dev/md/root"), "dev-md-root.device");
        if let Ok(o) = std::process::Command::new("systemd-escape")
            .args(["--path", "--suffix=device", p])
            .output()
        {
            if o.status.success() {
                assert_eq!(String::from_utf8_lossy(&o.stdout).trim(), want);
            }
        }
    }

    #[test]
    fn hostonly_follows_the_last_assignment() {
        let c = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert!(!hostonly_configured(&[]));
        assert!(hostonly_configured(&c(&["hostonly=\"yes\"\n"])));
        assert!(hostonly_configured(&c(&[
            "# dist\nhostonly=\"yes\"   # host-only\n",
            "add_drivers+=\" x \"\n"
        ])));
        assert!(!hostonly_configured(&c(&[
            "hostonly=\"yes\"\n",
            "hostonly=\"no\"\n"
        ])));
        assert!(!hostonly_configured(&c(&["#hostonly=\"yes\"\n"])));
        assert!(hostonly_configured(&c(&["hostonly='yes'\n"])));
    }

    #[test]
    fn module_names_from_dep_and_builtin() {
        let dep = "kernel/drivers/ata/ahci.ko: kernel/drivers/ata/libahci.ko\nkernel/drivers/md/raid1.ko.xz:\nkernel/drivers/scsi/megaraid/megaraid_sas.ko.zst:\n";
        let builtin = "kernel/drivers/block/virtio_blk.ko\nkernel/drivers/scsi/sd-mod.ko\n";
        let n = module_names(dep, builtin);
        for m in ["ahci", "raid1", "megaraid_sas", "virtio_blk", "sd_mod"] {
            assert!(n.contains(m), "{m}: {n:?}");
        }
        assert!(!n.contains("libahci.ko"));
    }

    #[test]
    fn hostonly_args_add_the_extra_drivers_generic_ones_do_not() {
        let extra = vec!["ahci".to_string(), "raid1".to_string(), "nvme".to_string()];
        assert_eq!(
            dracut_args(true, &extra, "/boot/initrd-6.1.img", "6.1").join(" "),
            "-f --hostonly --add mdraid --add-drivers raid1 ahci nvme /boot/initrd-6.1.img 6.1"
        );
        assert_eq!(
            dracut_args(false, &extra, "/boot/i.img", "6.1").join(" "),
            "-f --no-hostonly --add mdraid --add-drivers raid1 /boot/i.img 6.1"
        );
    }

    #[test]
    fn drop_in_has_the_settings_as_shell_assignments() {
        assert!(dracut_conf(false).contains("add_dracutmodules+=\" mdraid \""));
        let c = dracut_conf(true);
        for l in [
            "add_dracutmodules+=\" mdraid xenraid \"",
            "add_drivers+=\" raid1 \"",
            "mdadmconf=\"yes\"",
        ] {
            assert!(c.lines().any(|x| x == l), "{l}");
        }
        assert!(
            DRACUT_CONF_PATH.ends_with(".conf"),
            "dracut reads only *.conf"
        );
        // The module the drop-in adds is the one we write.
        assert!(MODULE_NAME.ends_with("xenraid"));
    }

    #[test]
    fn module_installs_the_hook_it_ships() {
        let m = module_setup();
        assert!(m.contains(&format!(
            "inst_hook initqueue/settled 90 \"$moddir/{DEGRADED_HOOK}\""
        )));
        assert!(m.contains("echo mdraid"));
    }

    /// Both scripts parse (dash is what a dracut initramfs usually runs them with).
    #[test]
    fn scripts_are_valid_shell() {
        for (name, text, shell) in [
            ("module-setup.sh", module_setup(), "bash"),
            ("hook", degraded_hook(), "sh"),
            ("read-write hook", readwrite_hook(), "sh"),
        ] {
            let out = std::process::Command::new(shell)
                .args(["-n", "-c", &text])
                .output()
                .unwrap();
            assert!(
                out.status.success(),
                "{name}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
    }

    /// `install()` as dracut calls it (its helpers stubbed to print what they would
    /// install): the hook, and each unit drop-in under its unit's `.d` directory.
    #[test]
    fn module_installs_the_hook_and_unit_dropins() {
        let d = std::env::temp_dir().join(format!("xr-dracut-mod-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        let unit = device_unit_name("/dev/disk/by-uuid/0f3c5a0e-7d6b-4f57-9a3c-1c2d3e4f5a6b");
        std::fs::create_dir_all(d.join(UNIT_DROPINS)).unwrap();
        std::fs::write(
            d.join(UNIT_DROPINS).join(format!("{unit}.conf")),
            device_timeout_dropin(),
        )
        .unwrap();
        std::fs::write(d.join(MODULE_SETUP), module_setup()).unwrap();
        let script = format!(
            "inst_hook() {{ echo \"hook $1 $2 $3\"; }}; inst_simple() {{ echo \"file $1 -> $2\"; }}; \
             moddir={}; . \"$moddir/{MODULE_SETUP}\"; install",
            d.display()
        );
        let out = run_sh("bash", &script);
        let out = String::from_utf8_lossy(&out.stdout).into_owned();
        assert!(
            out.contains(&format!(
                "hook initqueue/settled 90 {}/{DEGRADED_HOOK}",
                d.display()
            )),
            "{out}"
        );
        assert!(
            out.contains(&format!(
                "-> /etc/systemd/system/{unit}.d/50-xenraid-timeout.conf"
            )),
            "{out}"
        );
        assert!(
            out.contains(&format!(
                "hook pre-pivot 50 {}/{READWRITE_HOOK}",
                d.display()
            )),
            "{out}"
        );
        std::fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn hook_never_exits_the_loop_it_is_sourced_into() {
        let h = degraded_hook();
        assert!(
            !h.lines().any(|l| l.trim_start().starts_with("exit")),
            "{h}"
        );
        assert!(h.contains(&format!("_xr_after:-{DEGRADED_AFTER_SECS}")));
        assert!(h.contains("/sbin/mdraid_start"));
    }

    /// The degraded hook against a fake sysfs, once the delay has passed: `mdadm -I` for
    /// the named array's member that sits in no array (a killed udev worker), not for one
    /// already in an array, one of another array, or a whole disk with partitions; then
    /// dracut's mdraid_start; then a change event for a running named array without its
    /// md-uuid link, none for one that has it.
    #[test]
    fn degraded_hook_replays_what_killed_udev_workers_left_undone() {
        let d = std::env::temp_dir().join(format!("xr-deg-hook-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        let mk = |p: &str| std::fs::create_dir_all(d.join(p)).unwrap();
        // sda: a disk with partitions; sda1 in no array, sda2 held by md126, sda3 of an
        // array not named on the command line.
        for p in [
            "sys/sda/sda1",
            "sys/sda1/holders",
            "sys/sda2/holders/md126",
            "sys/sda3/holders",
            "sys/md126/md",
            "sys/md127/md",
            "byid",
            "run",
        ] {
            mk(p);
        }
        for part in ["sda1", "sda2", "sda3"] {
            std::fs::write(d.join(format!("sys/{part}/partition")), "1").unwrap();
        }
        std::fs::write(d.join("sys/md126/md/array_state"), "active").unwrap();
        std::fs::write(d.join("sys/md127/md/array_state"), "active").unwrap();
        // md126 has its link, md127 (named) does not.
        std::os::unix::fs::symlink("/dev/md126", d.join("byid/md-uuid-aa:aa:aa:aa")).unwrap();
        let count = std::fs::read_dir(d.join("sys")).unwrap().count();
        std::fs::write(d.join("run/xenraid-md-count"), format!("{count}\n")).unwrap();
        std::fs::write(d.join("run/xenraid-md-since"), "0\n").unwrap();
        let hook = degraded_hook()
            .replace("/dev/disk/by-id/", &format!("{}/byid/", d.display()))
            .replace("/sys/class/block/", &format!("{}/sys/", d.display()))
            .replace("/run/", &format!("{}/run/", d.display()))
            .replace("/sbin/mdraid_start", "mdraid_start");
        // mdadm's answers by device: --examine for members, --detail for arrays.
        let script = format!(
            r#"getarg() {{ :; }}; getargs() {{ printf 'aa:aa:aa:aa\nbb:bb:bb:bb'; }}
warn() {{ echo "warn $*"; }}; vinfo() {{ cat; }}
mdraid_start() {{ echo "mdraid_start"; }}
udevadm() {{ echo "udevadm $*"; }}
mdadm() {{
    case "$*" in
        "--examine --export /dev/sda1") echo MD_UUID=bb:bb:bb:bb ;;
        "--examine --export /dev/sda2") echo MD_UUID=aa:aa:aa:aa ;;
        "--examine --export /dev/sda3") echo MD_UUID=cc:cc:cc:cc ;;
        "--examine --export /dev/sda") echo MD_UUID=bb:bb:bb:bb ;;
        "--detail --export /dev/md126") echo MD_UUID=aa:aa:aa:aa ;;
        "--detail --export /dev/md127") echo MD_UUID=bb:bb:bb:bb ;;
        -I*) echo "mdadm $*" ;;
        *) return 1 ;;
    esac
}}
{hook}"#
        );
        let out = run_sh("sh", &script);
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        assert!(
            out.status.success(),
            "{stdout}{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let actions: Vec<&str> = stdout.lines().filter(|l| !l.starts_with("warn ")).collect();
        assert_eq!(
            actions,
            [
                "mdadm -I /dev/sda1",
                "mdraid_start",
                "udevadm trigger --action=change --subsystem-match=block --sysname-match=md127",
            ],
            "{stdout}"
        );
        // Once per device count: the next round does nothing.
        let again = run_sh("sh", &script);
        assert_eq!(String::from_utf8_lossy(&again.stdout), "");
        std::fs::remove_dir_all(&d).unwrap();
    }

    /// The read-write hook against a fake sysfs: a read-auto array named on the command
    /// line is switched (here through the sysfs fallback, mdadm being absent), an active
    /// one and an array not named are left alone.
    #[test]
    fn readwrite_hook_switches_only_named_read_auto_arrays() {
        let d = std::env::temp_dir().join(format!("xr-rw-hook-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        for (md, state) in [
            ("md124", "read-auto"),
            ("md127", "active"),
            ("md5", "read-auto"),
        ] {
            std::fs::create_dir_all(d.join(format!("sys/{md}/md"))).unwrap();
            std::fs::write(d.join(format!("sys/{md}/md/array_state")), state).unwrap();
        }
        std::fs::create_dir_all(d.join("byid")).unwrap();
        for (uuid, md) in [("aa:bb:cc:dd", "md124"), ("11:22:33:44", "md127")] {
            std::os::unix::fs::symlink(
                format!("/dev/{md}"),
                d.join(format!("byid/md-uuid-{uuid}")),
            )
            .unwrap();
        }
        // The hook with its two paths pointed into the fake tree; dracut's helpers stubbed.
        let hook = readwrite_hook()
            .replace("/dev/disk/by-id/", &format!("{}/byid/", d.display()))
            .replace("/sys/class/block/", &format!("{}/sys/", d.display()));
        let script = format!(
            "getargs() {{ echo aa:bb:cc:dd 11:22:33:44; }}; info() {{ echo \"info $*\"; }}; \
             mdadm() {{ return 1; }}; {hook}"
        );
        let out = run_sh("sh", &script);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let state = |md: &str| {
            std::fs::read_to_string(d.join(format!("sys/{md}/md/array_state")))
                .unwrap()
                .trim()
                .to_string()
        };
        assert_eq!(state("md124"), "active", "the named read-auto array");
        assert_eq!(state("md127"), "active");
        assert_eq!(
            state("md5"),
            "read-auto",
            "an array not named is left alone"
        );
        assert!(String::from_utf8_lossy(&out.stdout).contains("/dev/md124 read-write"));
        std::fs::remove_dir_all(&d).unwrap();
    }
}

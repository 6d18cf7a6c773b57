//! The dracut drop-in that makes every initramfs the target builds assemble md arrays:
//! the `mdraid` module (udev rules and mdadm), the `raid1` driver, and `/etc/mdadm.conf`
//! copied in. Written as its own file so the installer's `xs_disable_multipath.conf` stays
//! untouched and so the conversion is easy to see and undo.

/// Path of the drop-in, relative to the target root.
pub const DRACUT_CONF_PATH: &str = "/etc/dracut.conf.d/90-xenraid-mdraid.conf";

/// The drop-in's content.
pub fn dracut_conf() -> String {
    concat!(
        "# Written by xenraid when it converted this host to md RAID1.\n",
        "# Without these the initramfs does not assemble the root array and a boot with\n",
        "# one disk missing fails. Keep this file while the host runs on md.\n",
        "add_dracutmodules+=\" mdraid \"\n",
        "add_drivers+=\" raid1 \"\n",
        "mdadmconf=\"yes\"\n",
    )
    .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn has_the_three_settings_as_shell_assignments() {
        let c = dracut_conf();
        for l in [
            "add_dracutmodules+=\" mdraid \"",
            "add_drivers+=\" raid1 \"",
            "mdadmconf=\"yes\"",
        ] {
            assert!(c.lines().any(|x| x == l), "{l}");
        }
        assert!(
            DRACUT_CONF_PATH.ends_with(".conf"),
            "dracut reads only *.conf"
        );
    }
}

//! `mdadm.conf` for the converted host: one `ARRAY` line per array, so the initramfs
//! (`mdadmconf="yes"`) and the running system assemble them under stable names.
//!
//! `HOMEHOST <ignore>`: the superblock names are `xenserver:<role>`, not `<hostname>:<role>`.
//! With mdadm's default homehost (the system hostname, which dom0 operators change and which
//! is unset inside the initramfs) arrays whose name carries another host are treated as
//! foreign and assembled as `/dev/md/xenserver:root` on `md127`-style numbers. `<ignore>`
//! makes mdadm take the name part as-is, so `/dev/md/root` is the same in the initramfs and in
//! dom0 whatever the hostname. An existing `HOMEHOST` line is kept (our `ARRAY` lines name the
//! device explicitly, which wins over the homehost rule for our UUIDs anyway).
//!
//! When merging, lines other than `ARRAY` are kept; `ARRAY` lines for our UUIDs or our device
//! names (stale attempts) are replaced. A restrictive `DEVICE` line (seed 001 writes
//! `DEVICE /dev/sd*[a-z][1-9]`) is kept as the brief demands but reported by
//! [`restrictive_device_lines`] since it hides NVMe and virtio members.

use super::{lines_with_endings, Conversion};

const MARK: &str = "# xenraid: md RAID1 arrays of the converted host";

/// Where mdadm.conf lives on the target: Debian keeps it in `/etc/mdadm/`, XenServer
/// (CentOS) in `/etc/`.
pub fn mdadm_conf_path(etc_mdadm_dir_exists: bool) -> &'static str {
    if etc_mdadm_dir_exists {
        "/etc/mdadm/mdadm.conf"
    } else {
        "/etc/mdadm.conf"
    }
}

fn hex_of(uuid: &str) -> String {
    uuid.chars()
        .filter(char::is_ascii_hexdigit)
        .map(|c| c.to_ascii_lowercase())
        .collect()
}

/// One `ARRAY` line per array, root first.
pub fn array_lines(conv: &Conversion) -> Vec<String> {
    let mut arrays: Vec<_> = conv.arrays.iter().collect();
    arrays.sort_by_key(|a| a.role);
    arrays
        .iter()
        .map(|a| {
            format!(
                "ARRAY {} metadata={} UUID={} name={}",
                a.device, a.metadata, a.uuid, a.name
            )
        })
        .collect()
}

/// The config, fresh (`existing` None) or merged into an existing one. Idempotent.
pub fn render_mdadm_conf(existing: Option<&str>, conv: &Conversion) -> String {
    let ours_hex: Vec<String> = conv.arrays.iter().map(|a| hex_of(&a.uuid)).collect();
    let ours_dev: Vec<&str> = conv.arrays.iter().map(|a| a.device.as_str()).collect();
    let mut out = String::new();
    let (mut has_homehost, mut has_mail) = (false, false);
    let mut dropping = false;
    for (body, end) in lines_with_endings(existing.unwrap_or("")) {
        let t = body.trim();
        let kw = t
            .split_whitespace()
            .next()
            .unwrap_or("")
            .to_ascii_uppercase();
        // A line starting with whitespace continues the previous one.
        let continuation =
            !body.is_empty() && body.starts_with(char::is_whitespace) && !t.is_empty();
        if continuation && dropping {
            continue;
        }
        dropping = false;
        if t == MARK {
            continue;
        }
        if kw == "ARRAY" {
            let mut toks = t.split_whitespace().skip(1);
            let dev = toks.next().unwrap_or("");
            let uuid = t
                .split_whitespace()
                .find_map(|w| w.strip_prefix("UUID=").or_else(|| w.strip_prefix("uuid=")))
                .map(hex_of);
            if ours_dev.contains(&dev) || uuid.is_some_and(|u| ours_hex.contains(&u)) {
                dropping = true;
                continue;
            }
        }
        has_homehost |= kw == "HOMEHOST";
        has_mail |= kw == "MAILADDR" || kw == "MAILFROM" || kw == "PROGRAM";
        out.push_str(body);
        out.push_str(if end.is_empty() { "\n" } else { end });
    }
    if existing.is_none() {
        out.push_str("# mdadm.conf written by xenraid\n");
    }
    if !has_homehost {
        out.push_str("HOMEHOST <ignore>\n");
    }
    if !has_mail {
        out.push_str("MAILADDR root\n");
    }
    out.push_str(MARK);
    out.push('\n');
    for l in array_lines(conv) {
        out.push_str(&l);
        out.push('\n');
    }
    out
}

/// `DEVICE` lines that do not let mdadm scan every partition (`partitions`/`containers`).
pub fn restrictive_device_lines(text: &str) -> Vec<String> {
    text.lines()
        .filter(|l| {
            let mut w = l.split_whitespace();
            w.next().is_some_and(|k| k.eq_ignore_ascii_case("DEVICE"))
                && !w.any(|d| d == "partitions" || d == "containers")
        })
        .map(String::from)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::target_root::testdata::conv7;

    #[test]
    fn path_depends_on_etc_mdadm() {
        assert_eq!(mdadm_conf_path(true), "/etc/mdadm/mdadm.conf");
        assert_eq!(mdadm_conf_path(false), "/etc/mdadm.conf");
    }

    #[test]
    fn merge_replaces_our_arrays_and_is_idempotent() {
        let existing = "MAILADDR root\nauto +imsm +1.x -all\nDEVICE /dev/sd*[a-z][1-9]\n\
ARRAY /dev/md0 metadata=1.2 name=xenserver-7:0 UUID=b6eafb52:53b1c0ed:03b029cd:ce0fa6bf\n\
ARRAY /dev/md9 metadata=1.2 name=other:9 UUID=11111111:22222222:33333333:44444444\n\
ARRAY /dev/md/logs metadata=1.2\n   UUID=99999999:22222222:33333333:44444444\n";
        let out = render_mdadm_conf(Some(existing), &conv7());
        assert!(out.starts_with(
            "MAILADDR root\nauto +imsm +1.x -all\nDEVICE /dev/sd*[a-z][1-9]\nARRAY /dev/md9 "
        ));
        assert!(!out.contains("/dev/md0"));
        assert!(!out.contains("99999999"));
        assert_eq!(out.matches("MAILADDR").count(), 1);
        assert_eq!(render_mdadm_conf(Some(&out), &conv7()), out);
        assert_eq!(
            restrictive_device_lines(&out),
            vec!["DEVICE /dev/sd*[a-z][1-9]"]
        );
    }
}

//! The dom0 kernel command line shared by the GRUB and extlinux rewriters: `root=UUID=`
//! in place of any `root=`, stale md switches removed, one `rd.md.uuid=` per array the
//! initrd assembles appended at the end (so a second pass gives the same result).

use super::{Conversion, TargetError};

/// Arguments that would stop dracut assembling our arrays, or name arrays of an older attempt.
fn is_stale(arg: &str) -> bool {
    arg.starts_with("rd.md.uuid=")
        || arg.starts_with("rd_MD_UUID=")
        || matches!(arg, "rd.md=0" | "rd_NO_MD" | "rd.auto=0" | "rd.md.conf=0")
}

/// The arrays dracut must assemble, in a fixed order (root first).
pub(crate) fn boot_array_uuids(conv: &Conversion) -> Vec<&str> {
    let mut arrays: Vec<_> = conv
        .arrays
        .iter()
        .filter(|a| a.role.assembled_by_initrd())
        .collect();
    arrays.sort_by_key(|a| a.role);
    arrays.iter().map(|a| a.uuid.as_str()).collect()
}

/// Rewrites the dom0 kernel's arguments (without the kernel path itself).
pub(crate) fn rewrite_args(args: &[&str], conv: &Conversion) -> Result<Vec<String>, TargetError> {
    let (_, fs_uuid) = conv.root()?;
    let root_arg = match &conv.root_by_device {
        Some(dev) => format!("root={dev}"),
        None => format!("root=UUID={fs_uuid}"),
    };
    let mut out = Vec::with_capacity(args.len() + 4);
    let mut root_done = false;
    for &arg in args {
        if arg.starts_with("root=") {
            if !root_done {
                out.push(root_arg.clone());
                root_done = true;
            }
        } else if !is_stale(arg) {
            out.push(arg.to_string());
        }
    }
    if !root_done {
        out.insert(0, root_arg);
    }
    out.extend(
        boot_array_uuids(conv)
            .into_iter()
            .map(|u| format!("rd.md.uuid={u}")),
    );
    Ok(out)
}

/// True if any array uses 0.90 metadata (GRUB needs `mdraid09`).
pub(crate) fn any_metadata_090(conv: &Conversion) -> bool {
    conv.arrays.iter().any(|a| a.metadata == "0.90")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::target_root::testdata::conv7;

    #[test]
    fn replaces_root_drops_stale_and_appends_boot_arrays() {
        let args = "root=LABEL=root-vgdorj ro nolvm rd.md=0 rd.auto=0 rd.md.uuid=deadbeef:00000000:00000000:00000000 quiet";
        let a: Vec<&str> = args.split_whitespace().collect();
        let out = rewrite_args(&a, &conv7()).unwrap();
        assert_eq!(
            out.join(" "),
            "root=UUID=0f3c5a0e-7d6b-4f57-9a3c-1c2d3e4f5a6b ro nolvm quiet \
             rd.md.uuid=b6eafb52:53b1c0ed:03b029cd:ce0fa6bf \
             rd.md.uuid=7b4bae54:236b1e2f:7f1a7a0e:e4610009 \
             rd.md.uuid=4a064db1:0c8e8f42:76810417:5cf0ecbd \
             rd.md.uuid=30dfc30a:1c8031bf:93d8c760:24186100 \
             rd.md.uuid=0c082894:f0f24c6b:43bf4045:0970c253"
        );
        let again: Vec<&str> = out.iter().map(String::as_str).collect();
        assert_eq!(rewrite_args(&again, &conv7()).unwrap(), out);
    }

    #[test]
    fn adds_root_when_missing() {
        let out = rewrite_args(&["ro", "quiet"], &conv7()).unwrap();
        assert_eq!(out[0], "root=UUID=0f3c5a0e-7d6b-4f57-9a3c-1c2d3e4f5a6b");
        assert_eq!(out[1], "ro");
    }

    #[test]
    fn an_autodetecting_initrd_gets_the_root_array_by_device() {
        let mut conv = conv7();
        conv.root_by_device = Some("/dev/md0".into());
        let a: Vec<&str> = "root=LABEL=root-vgdorj ro quiet"
            .split_whitespace()
            .collect();
        let out = rewrite_args(&a, &conv).unwrap();
        assert_eq!(out[0], "root=/dev/md0");
        assert!(out.iter().all(|x| !x.starts_with("root=UUID=")));
        assert!(out.iter().any(|x| x.starts_with("rd.md.uuid=")));
    }
}

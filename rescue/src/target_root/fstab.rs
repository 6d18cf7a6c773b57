//! `/etc/fstab`: entries for a converted filesystem or swap get `UUID=<fs uuid>` as their
//! device; the rest of each line (mount point, type, options, dump, pass, spacing) is kept
//! byte for byte. A `LABEL=`/`UUID=` spec is matched by value; any other device spec
//! (`/dev/sda1`, `/dev/disk/by-id/...`, `/dev/md0`, `PARTUUID=`) by its mount point:
//! `/` is root, `/var/log` logs, type `swap` swap. Swap files (6.x `/var/swap/swap.001`) stay.

use super::{lines_with_endings, ArrayInfo, Conversion, Role};

fn by_fs_uuid<'a>(conv: &'a Conversion, uuid: &str) -> Option<&'a ArrayInfo> {
    conv.arrays.iter().find(|a| {
        a.fs_uuid
            .as_deref()
            .is_some_and(|u| u.eq_ignore_ascii_case(uuid))
    })
}

fn by_label<'a>(conv: &'a Conversion, label: &str) -> Option<&'a ArrayInfo> {
    conv.arrays
        .iter()
        .find(|a| a.fs_label.as_deref() == Some(label))
}

/// The array an fstab entry refers to, if any.
fn target_of<'a>(
    conv: &'a Conversion,
    spec: &str,
    mnt: &str,
    fstype: &str,
) -> Option<&'a ArrayInfo> {
    if let Some(l) = spec
        .strip_prefix("LABEL=")
        .or_else(|| spec.strip_prefix("/dev/disk/by-label/"))
    {
        return by_label(conv, l);
    }
    if let Some(u) = spec
        .strip_prefix("UUID=")
        .or_else(|| spec.strip_prefix("/dev/disk/by-uuid/"))
    {
        return by_fs_uuid(conv, u);
    }
    let device_spec = spec.starts_with("/dev/")
        || spec.starts_with("PARTUUID=")
        || spec.starts_with("PARTLABEL=");
    if !device_spec {
        return None;
    }
    let role = match (mnt, fstype) {
        ("/", _) => Role::Root,
        ("/var/log", _) => Role::Logs,
        ("/boot/efi", _) => Role::Esp,
        (_, "swap") => Role::Swap,
        _ => return None,
    };
    conv.array(role)
}

/// Rewrites fstab. Idempotent; lines it does not understand are kept.
pub fn rewrite_fstab(text: &str, conv: &Conversion) -> String {
    let mut out = String::with_capacity(text.len() + 64);
    for (body, end) in lines_with_endings(text) {
        let t = body.trim_start();
        let fields: Vec<&str> = t.split_whitespace().collect();
        let new_spec = match fields.as_slice() {
            [spec, mnt, fstype, ..] if !spec.starts_with('#') => target_of(conv, spec, mnt, fstype)
                .and_then(|a| a.fs_uuid.as_deref())
                .map(|u| format!("UUID={u}"))
                .filter(|n| n != spec),
            _ => None,
        };
        match new_spec {
            Some(n) => {
                let lead = body.len() - t.len();
                let spec_len = fields[0].len();
                out.push_str(&body[..lead]);
                out.push_str(&n);
                out.push_str(&body[lead + spec_len..]);
            }
            None => out.push_str(body),
        }
        out.push_str(end);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::target_root::testdata::conv7;

    #[test]
    fn dev_specs_match_by_mount_point_and_swap_files_stay() {
        let f = "/dev/md0 / ext3 defaults 1 1\n/dev/sda6\tnone\tswap\tsw\t0 0\n/var/swap/swap.001 swap swap defaults 0 0\nPARTUUID=1234 /var/log ext3 defaults 0 2\n/dev/sdb1 /srv ext4 defaults 0 2\n";
        let out = rewrite_fstab(f, &conv7());
        assert_eq!(
            out,
            "UUID=0f3c5a0e-7d6b-4f57-9a3c-1c2d3e4f5a6b / ext3 defaults 1 1\n\
             UUID=a1b2c3d4-e5f6-4789-abcd-ef0123456789\tnone\tswap\tsw\t0 0\n\
             /var/swap/swap.001 swap swap defaults 0 0\n\
             UUID=5e1b2c3d-4e5f-4a6b-8c7d-9e0f1a2b3c4d /var/log ext3 defaults 0 2\n\
             /dev/sdb1 /srv ext4 defaults 0 2\n"
        );
        assert_eq!(rewrite_fstab(&out, &conv7()), out);
    }

    #[test]
    fn unknown_labels_and_comments_stay() {
        let f = "# LABEL=root-vgdorj / ext3\nLABEL=BOOT-VGDORJ /boot/efi vfat defaults 0 2\nUUID=0F3C5A0E-7D6B-4F57-9A3C-1C2D3E4F5A6B / ext3 defaults 1 1\n";
        let out = rewrite_fstab(f, &conv7());
        let lines: Vec<&str> = out.lines().collect();
        assert_eq!(lines[0], "# LABEL=root-vgdorj / ext3");
        assert_eq!(lines[1], "LABEL=BOOT-VGDORJ /boot/efi vfat defaults 0 2");
        assert_eq!(
            lines[2],
            "UUID=0f3c5a0e-7d6b-4f57-9a3c-1c2d3e4f5a6b / ext3 defaults 1 1"
        );
    }

    #[test]
    fn the_esp_is_mounted_from_its_array_by_the_fat_serial() {
        let mut c = conv7();
        c.arrays.push(ArrayInfo {
            role: Role::Esp,
            device: "/dev/md/esp".into(),
            name: "xenserver:esp".into(),
            uuid: "0a0b0c0d:01020304:05060708:090a0b0c".into(),
            metadata: "1.0".into(),
            fs_uuid: Some("1234-ABCD".into()),
            fs_label: Some("BOOT-VGDORJ".into()),
        });
        let f = "LABEL=BOOT-VGDORJ /boot/efi vfat defaults 0 2\n/dev/sda4\t/boot/efi vfat defaults 0 2\n";
        assert_eq!(
            rewrite_fstab(f, &c),
            "UUID=1234-ABCD /boot/efi vfat defaults 0 2\nUUID=1234-ABCD\t/boot/efi vfat defaults 0 2\n"
        );
    }
}

//! `/boot/extlinux.conf` of XenServer 6.x: `kernel mboot.c32` and
//! `append <xen> <args> --- <dom0 kernel> <args> --- <initrd>` (with tboot one more segment
//! in front). Labels without Xen use `kernel <vmlinuz>`, `append <args>`, `initrd <img>`.
//! Only the dom0 kernel's arguments change, exactly as for GRUB.
//!
//! 6.x builds its initrd with `mkinitrd`, which ignores `rd.md.uuid=`; the arguments are still
//! written so a later dracut-based initrd finds the arrays. extlinux itself reads /boot from
//! the 1.0-metadata member as a plain filesystem (`extlinux --raid` tries the next disk).

use super::grub::BootImage;
use super::kargs::rewrite_args;
use super::{indent_of, lines_with_endings, Conversion, TargetError};

fn keyword(body: &str) -> (String, &str) {
    let t = body.trim_start();
    match t.split_once(char::is_whitespace) {
        Some((k, rest)) => (k.to_ascii_lowercase(), rest.trim()),
        None => (t.to_ascii_lowercase(), ""),
    }
}

fn is_mboot(kernel: &str) -> bool {
    kernel.rsplit('/').next().unwrap_or(kernel) == "mboot.c32"
}

/// Index of the dom0 kernel segment in a multiboot `append` split on `---`.
fn dom0_segment(segments: &[Vec<&str>]) -> Option<usize> {
    let first = segments.first()?.first()?;
    let idx = if first.rsplit('/').next().unwrap_or(first).contains("tboot") {
        2
    } else {
        1
    };
    // The dom0 kernel is never the last segment: that one is the initrd.
    (idx + 1 < segments.len() && !segments[idx].is_empty()).then_some(idx)
}

fn split_segments(args: &str) -> Vec<Vec<&str>> {
    let mut segs = vec![Vec::new()];
    for t in args.split_whitespace() {
        if t == "---" {
            segs.push(Vec::new());
        } else if let Some(last) = segs.last_mut() {
            last.push(t);
        }
    }
    segs
}

/// Per line: what the current label's `kernel` line said.
fn walk<'a>(text: &'a str, mut f: impl FnMut(&str, Option<&str>, &'a str, &'a str)) {
    let mut kernel: Option<String> = None;
    let mut label = String::new();
    for (body, end) in lines_with_endings(text) {
        let (k, rest) = keyword(body);
        match k.as_str() {
            "label" => {
                label = rest.to_string();
                kernel = None;
            }
            "kernel" | "linux" => {
                kernel = Some(rest.split_whitespace().next().unwrap_or("").into())
            }
            _ => {}
        }
        f(&label, kernel.as_deref(), body, end);
    }
}

/// Rewrites every `append` line's dom0 arguments. Idempotent.
pub fn rewrite_extlinux(text: &str, conv: &Conversion) -> Result<String, TargetError> {
    conv.root()?;
    let mut out = String::with_capacity(text.len() + 512);
    let mut err = None;
    walk(text, |_, kernel, body, end| {
        let (k, rest) = keyword(body);
        let new = match (k.as_str(), kernel) {
            ("append", Some(kern)) if is_mboot(kern) => {
                let segs = split_segments(rest);
                dom0_segment(&segs).map(|i| -> Result<_, TargetError> {
                    let dom0 = std::iter::once(segs[i][0].to_string())
                        .chain(rewrite_args(&segs[i][1..], conv)?)
                        .collect::<Vec<_>>()
                        .join(" ");
                    Ok(segs
                        .iter()
                        .enumerate()
                        .map(|(j, s)| if j == i { dom0.clone() } else { s.join(" ") })
                        .collect::<Vec<_>>()
                        .join(" --- "))
                })
            }
            ("append", Some(kern))
                if kern
                    .rsplit('/')
                    .next()
                    .unwrap_or(kern)
                    .starts_with("vmlinuz")
                    || rest.split_whitespace().any(|a| a.starts_with("root=")) =>
            {
                let args: Vec<&str> = rest.split_whitespace().collect();
                Some(rewrite_args(&args, conv).map(|v| v.join(" ")))
            }
            _ => None,
        };
        let line = match new {
            Some(Ok(args)) => {
                let old: Vec<&str> = rest.split_whitespace().collect();
                (args.split(' ').ne(old.iter().copied())).then(|| {
                    let kw = body.split_whitespace().next().unwrap_or("append");
                    format!("{}{kw} {args}", indent_of(body))
                })
            }
            Some(Err(e)) => {
                err.get_or_insert(e);
                None
            }
            None => None,
        };
        out.push_str(line.as_deref().unwrap_or(body));
        out.push_str(end);
    });
    match err {
        Some(e) => Err(e),
        None => Ok(out),
    }
}

/// Every (dom0 kernel, initrd) the labels of this `extlinux.conf` load.
pub fn boot_images(text: &str) -> Vec<BootImage> {
    let mut images: Vec<BootImage> = Vec::new();
    let mut last_label = None::<String>;
    walk(text, |label, kernel, body, _| {
        let (k, rest) = keyword(body);
        let Some(kern) = kernel else { return };
        match k.as_str() {
            "append" if is_mboot(kern) => {
                let segs = split_segments(rest);
                if let Some(i) = dom0_segment(&segs) {
                    images.push(BootImage {
                        entry: label.to_string(),
                        kernel: segs[i][0].to_string(),
                        initrd: segs.last().and_then(|s| s.first()).map(|s| s.to_string()),
                    });
                }
            }
            "kernel" | "linux"
                if !is_mboot(kern)
                    && kern
                        .rsplit('/')
                        .next()
                        .unwrap_or(kern)
                        .starts_with("vmlinuz") =>
            {
                images.push(BootImage {
                    entry: label.to_string(),
                    kernel: kern.to_string(),
                    initrd: None,
                });
                last_label = Some(label.to_string());
            }
            "initrd" if last_label.as_deref() == Some(label) => {
                if let Some(img) = images.last_mut() {
                    img.initrd = rest.split_whitespace().next().map(String::from);
                }
            }
            "append" if last_label.as_deref() == Some(label) => {
                if let (Some(img), Some(v)) = (
                    images.last_mut(),
                    rest.split_whitespace()
                        .find_map(|a| a.strip_prefix("initrd=")),
                ) {
                    img.initrd = Some(v.to_string());
                }
            }
            _ => {}
        }
    });
    images
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::target_root::testdata::conv7;

    #[test]
    fn plain_kernel_label_gets_args_and_images() {
        let cfg = "label linux\n  kernel /boot/vmlinuz-2.6-xen\n  append root=/dev/sda1 ro\n  initrd /boot/initrd-2.6-xen.img\n";
        let out = rewrite_extlinux(cfg, &conv7()).unwrap();
        assert!(
            out.contains("  append root=UUID=0f3c5a0e-7d6b-4f57-9a3c-1c2d3e4f5a6b ro rd.md.uuid=")
        );
        assert_eq!(
            boot_images(cfg),
            vec![BootImage {
                entry: "linux".into(),
                kernel: "/boot/vmlinuz-2.6-xen".into(),
                initrd: Some("/boot/initrd-2.6-xen.img".into()),
            }]
        );
    }

    #[test]
    fn tboot_append_rewrites_third_segment() {
        let cfg = "label xe-tboot\n  kernel mboot.c32\n  append /boot/tboot.gz x --- /boot/xen.gz y --- /boot/vmlinuz-2.6-xen root=LABEL=root-vgdorj ro --- /boot/initrd-2.6-xen.img\n";
        let out = rewrite_extlinux(cfg, &conv7()).unwrap();
        assert!(out.contains("--- /boot/xen.gz y --- /boot/vmlinuz-2.6-xen root=UUID="));
        assert!(out.ends_with(" --- /boot/initrd-2.6-xen.img\n"));
        assert_eq!(boot_images(cfg)[0].kernel, "/boot/vmlinuz-2.6-xen");
    }
}

//! GRUB 2 `grub.cfg` as the XenServer installer writes it (`xcp/bootloader.py`): menu entries
//! with `search --label --set root root-xxx`, `multiboot2 <xen>` (or `multiboot2 <tboot>` then
//! `module2 <xen>`), `module2 <dom0 kernel> <args>`, `module2 <initrd>`; newer releases write
//! `xen_hypervisor`/`xen_module`; plain `linux`/`initrd` entries are handled too.
//!
//! Only the dom0 kernel line and the root search line of each entry change; GRUB learns to
//! read md through `insmod` lines put once before the first entry (the vendor's own parser
//! keeps lines before the first entry as boilerplate, so an upgrade keeps them too).

use super::kargs::{any_metadata_090, rewrite_args};
use super::{indent_of, lines_with_endings, Conversion, TargetError};
use serde::{Deserialize, Serialize};

/// A kernel and the initrd that a boot entry loads, as written in the config (paths on the
/// root filesystem, possibly symlinks).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BootImage {
    pub entry: String,
    pub kernel: String,
    pub initrd: Option<String>,
}

const HYPERVISOR_CMDS: &[&str] = &["multiboot2", "multiboot", "xen_hypervisor"];
const MODULE_CMDS: &[&str] = &["module2", "module", "xen_module"];
const LINUX_CMDS: &[&str] = &["linux", "linux16", "linuxefi"];
const INITRD_CMDS: &[&str] = &["initrd", "initrd16", "initrdefi"];

/// A loader line split into command, options (`--nounzip`), image path and arguments.
struct Loader<'a> {
    cmd: &'a str,
    opts: Vec<&'a str>,
    path: &'a str,
    args: Vec<&'a str>,
}

fn split_loader(body: &str) -> Option<Loader<'_>> {
    let mut toks = body.split_whitespace();
    let cmd = toks.next()?;
    let mut opts = Vec::new();
    for t in toks.by_ref() {
        if t.starts_with("--") {
            opts.push(t);
        } else {
            return Some(Loader {
                cmd,
                opts,
                path: t,
                args: toks.collect(),
            });
        }
    }
    None
}

fn basename(path: &str) -> &str {
    path.rsplit('/').next().unwrap_or(path)
}

/// Where the dom0 kernel and the other loaders of one entry sit.
#[derive(Default)]
struct EntryScan {
    title: String,
    kernel_line: Option<usize>,
    kernel: Option<String>,
    initrd: Option<String>,
}

#[derive(Default)]
struct Scan {
    entries: Vec<EntryScan>,
    /// Modules loaded by `insmod` outside any entry.
    top_insmods: Vec<String>,
}

fn entry_title(body: &str) -> String {
    let rest = body.trim_start();
    let rest = rest.split_once(char::is_whitespace).map_or("", |x| x.1);
    let rest = rest.trim_start();
    match rest.chars().next() {
        Some(q @ ('\'' | '"')) => rest[1..].split(q).next().unwrap_or("").to_string(),
        _ => rest.split_whitespace().next().unwrap_or("").to_string(),
    }
}

fn scan(lines: &[&str]) -> Scan {
    let mut s = Scan::default();
    let mut depth = 0usize;
    // Per entry: hypervisor seen, one more module is the hypervisor (tboot), kernel seen.
    let (mut hyper, mut hyper_module_next, mut current) = (false, false, None::<usize>);
    for (i, body) in lines.iter().enumerate() {
        let t = body.trim();
        let cmd = t.split_whitespace().next().unwrap_or("");
        if cmd == "menuentry" || cmd == "submenu" {
            depth += t.matches('{').count();
            if cmd == "menuentry" {
                s.entries.push(EntryScan {
                    title: entry_title(t),
                    ..Default::default()
                });
                current = Some(s.entries.len() - 1);
                hyper = false;
                hyper_module_next = false;
            }
            continue;
        }
        if t == "}" {
            depth = depth.saturating_sub(1);
            if depth == 0 {
                current = None;
            }
            continue;
        }
        let Some(e) = current.map(|c| &mut s.entries[c]) else {
            if depth == 0 && cmd == "insmod" {
                s.top_insmods
                    .extend(t.split_whitespace().skip(1).map(String::from));
            }
            continue;
        };
        let Some(l) = split_loader(t) else { continue };
        if HYPERVISOR_CMDS.contains(&l.cmd) {
            hyper = true;
            hyper_module_next = basename(l.path).contains("tboot");
        } else if MODULE_CMDS.contains(&l.cmd) && hyper {
            if hyper_module_next {
                hyper_module_next = false;
            } else if e.kernel.is_none() {
                e.kernel = Some(l.path.to_string());
                e.kernel_line = Some(i);
            } else if e.initrd.is_none() {
                e.initrd = Some(l.path.to_string());
            }
        } else if LINUX_CMDS.contains(&l.cmd) && e.kernel.is_none() {
            e.kernel = Some(l.path.to_string());
            // A memtest or chain image loaded with `linux16` is not a Linux kernel.
            if basename(l.path).starts_with("vmlinuz")
                || l.args.iter().any(|a| a.starts_with("root="))
            {
                e.kernel_line = Some(i);
            } else {
                e.kernel = None;
            }
        } else if INITRD_CMDS.contains(&l.cmd) && e.initrd.is_none() {
            e.initrd = Some(l.path.to_string());
        }
    }
    s
}

/// Every (kernel, initrd) a boot entry of this `grub.cfg` loads.
pub fn boot_images(text: &str) -> Vec<BootImage> {
    let lines: Vec<&str> = lines_with_endings(text).map(|(b, _)| b).collect();
    scan(&lines)
        .entries
        .into_iter()
        .filter_map(|e| {
            Some(BootImage {
                entry: e.title,
                kernel: e.kernel?,
                initrd: e.initrd,
            })
        })
        .collect()
}

/// GRUB modules needed to read /boot from a partition-level md array on GPT.
pub fn required_modules(conv: &Conversion) -> Vec<&'static str> {
    let mut m = vec!["part_gpt", "diskfilter", "mdraid1x"];
    if any_metadata_090(conv) {
        m.push("mdraid09");
    }
    m
}

/// Rewrites `grub.cfg` for booting from the arrays. Idempotent.
pub fn rewrite_grub_cfg(text: &str, conv: &Conversion) -> Result<String, TargetError> {
    let (_, fs_uuid) = conv.root()?;
    let root_label = conv.root_label();
    let split: Vec<(&str, &str)> = lines_with_endings(text).collect();
    let bodies: Vec<&str> = split.iter().map(|(b, _)| *b).collect();
    let s = scan(&bodies);
    let kernel_lines: Vec<usize> = s.entries.iter().filter_map(|e| e.kernel_line).collect();
    let nl = if text.contains("\r\n") { "\r\n" } else { "\n" };

    let mut out = String::with_capacity(text.len() + 512);
    let missing: Vec<&str> = required_modules(conv)
        .into_iter()
        .filter(|m| !s.top_insmods.iter().any(|t| t == m))
        .collect();
    if !missing.is_empty() {
        out.push_str("# xenraid: modules to read /boot from md RAID1");
        out.push_str(nl);
        for m in missing {
            out.push_str("insmod ");
            out.push_str(m);
            out.push_str(nl);
        }
    }
    for (i, (body, end)) in split.iter().enumerate() {
        let indent = indent_of(body);
        let t = body.trim();
        let toks: Vec<&str> = t.split_whitespace().collect();
        let new = if kernel_lines.contains(&i) {
            split_loader(t)
                .map(|l| -> Result<Vec<String>, TargetError> {
                    let mut v: Vec<String> = vec![l.cmd.to_string()];
                    v.extend(l.opts.iter().map(|o| o.to_string()));
                    v.push(l.path.to_string());
                    v.extend(rewrite_args(&l.args, conv)?);
                    Ok(v)
                })
                .transpose()?
        } else if toks.first() == Some(&"search")
            && toks.iter().any(|t| *t == "--label" || *t == "-l")
            && root_label
                .as_deref()
                .is_some_and(|l| toks.iter().skip(1).any(|t| *t == l))
        {
            Some(
                toks.iter()
                    .map(|t| match *t {
                        "--label" | "-l" => "--fs-uuid".to_string(),
                        t if Some(t) == root_label.as_deref() => fs_uuid.to_string(),
                        t => t.to_string(),
                    })
                    .collect(),
            )
        } else {
            None
        };
        match new {
            Some(v) if v.iter().map(String::as_str).ne(toks.iter().copied()) => {
                out.push_str(indent);
                out.push_str(&v.join(" "));
                out.push_str(end);
            }
            _ => {
                out.push_str(body);
                out.push_str(end);
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::target_root::testdata::conv7;

    const TBOOT: &str = "menuentry 'XenServer (Trusted Boot)' {\n\
\tsearch --label --set root root-vgdorj\n\
\tmultiboot2 /boot/tboot.gz logging=serial,memory\n\
\tmodule2 /boot/xen.gz dom0_mem=752M,max:752M\n\
\tmodule2 /boot/vmlinuz-4.19-xen root=LABEL=root-vgdorj ro nolvm\n\
\tmodule2 /boot/initrd-4.19-xen.img\n\
\tmodule2 /boot/list.data\n\
}\n";

    #[test]
    fn tboot_entry_rewrites_the_dom0_kernel_not_xen() {
        let out = rewrite_grub_cfg(TBOOT, &conv7()).unwrap();
        assert!(out.contains("\tmodule2 /boot/xen.gz dom0_mem=752M,max:752M\n"));
        assert!(out.contains("\tmodule2 /boot/vmlinuz-4.19-xen root=UUID=0f3c5a0e-"));
        assert!(out.contains("\tmodule2 /boot/initrd-4.19-xen.img\n"));
        assert_eq!(
            boot_images(TBOOT),
            vec![BootImage {
                entry: "XenServer (Trusted Boot)".into(),
                kernel: "/boot/vmlinuz-4.19-xen".into(),
                initrd: Some("/boot/initrd-4.19-xen.img".into()),
            }]
        );
    }

    #[test]
    fn memtest_linux16_is_left_alone() {
        let cfg = "menuentry 'Memory test' {\n\tlinux16 /boot/memtest86+.bin\n}\n";
        let out = rewrite_grub_cfg(cfg, &conv7()).unwrap();
        assert!(out.ends_with(cfg));
        assert!(boot_images(cfg).is_empty());
    }

    #[test]
    fn other_search_lines_and_crlf_are_kept() {
        let cfg =
            "set timeout=5\r\nmenuentry 'x' {\r\n\tsearch --label --set root BOOT-VGDORJ\r\n}\r\n";
        let out = rewrite_grub_cfg(cfg, &conv7()).unwrap();
        assert!(out
            .starts_with("# xenraid: modules to read /boot from md RAID1\r\ninsmod part_gpt\r\n"));
        assert!(out.ends_with(cfg));
    }

    #[test]
    fn mdraid09_only_with_090_metadata() {
        let mut c = conv7();
        assert!(!required_modules(&c).contains(&"mdraid09"));
        c.arrays[1].metadata = "0.90".into();
        assert!(required_modules(&c).contains(&"mdraid09"));
    }
}

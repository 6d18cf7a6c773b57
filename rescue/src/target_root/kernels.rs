//! Which initrds to rebuild, and for which kernel version. The version comes from the kernel
//! image's own header (Linux x86 boot protocol: `HdrS` at 0x202, `kernel_version` pointer at
//! 0x20E, the string at 0x200 + pointer), never from `uname -r`: inside a chroot from the
//! rescue that names the rescue kernel (seed 001's bug). Paths are resolved inside the target
//! root, with absolute symlink targets taken relative to that root, as a chroot would.

use super::grub::BootImage;
use super::{extlinux, grub, TargetError};
use serde::{Deserialize, Serialize};
use std::io::{Read, Seek, SeekFrom};
use std::path::{Component, Path, PathBuf};

/// Boot configs that may exist under a root, with the parser for each.
pub const BOOT_CONFIGS: &[&str] = &[
    "/boot/grub/grub.cfg",
    "/boot/grub2/grub.cfg",
    "/boot/efi/EFI/xenserver/grub.cfg",
    "/boot/extlinux.conf",
];

/// One `dracut -f <initrd> <kernel_version>` to run in the target's chroot.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct InitrdJob {
    pub kernel_version: String,
    /// Root-relative path of the initrd file itself (symlinks resolved, so dracut does not
    /// replace a vendor symlink such as `initrd-4.19-xen.img` by a file).
    pub initrd: String,
    /// The resolved kernel image it belongs to.
    pub kernel: String,
}

/// Why a kernel image header cannot give a version.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum BzImageError {
    #[error("too short for a Linux x86 boot header (needs 0x210 bytes)")]
    TooShort,
    #[error("no \"HdrS\" magic at 0x202: not a bzImage (a Xen or a compressed non-x86 image?)")]
    NoMagic,
    #[error("the header has no kernel_version pointer (boot protocol older than 2.00)")]
    NoVersion,
    #[error("the kernel_version string is empty, unterminated or not ASCII")]
    BadVersion,
    #[error("read failed: {0}")]
    Io(String),
}

/// Reads the kernel release (`uname -r` form) from a bzImage header.
pub fn bzimage_version<R: Read + Seek>(r: &mut R) -> Result<String, BzImageError> {
    let io = |e: std::io::Error| BzImageError::Io(e.to_string());
    let mut hdr = [0u8; 0x210];
    r.seek(SeekFrom::Start(0)).map_err(io)?;
    read_full(r, &mut hdr)
        .map_err(io)?
        .then_some(())
        .ok_or(BzImageError::TooShort)?;
    if &hdr[0x202..0x206] != b"HdrS" {
        return Err(BzImageError::NoMagic);
    }
    let ptr = u16::from_le_bytes([hdr[0x20E], hdr[0x20F]]);
    if ptr == 0 {
        return Err(BzImageError::NoVersion);
    }
    r.seek(SeekFrom::Start(0x200 + u64::from(ptr)))
        .map_err(io)?;
    let mut buf = [0u8; 256];
    let mut n = 0;
    while n < buf.len() {
        match r.read(&mut buf[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(io(e)),
        }
    }
    let s = &buf[..n];
    let end = s
        .iter()
        .position(|&b| b == b' ' || b == 0)
        .ok_or(BzImageError::BadVersion)?;
    let v = &s[..end];
    if v.is_empty() || !v.iter().all(|b| b.is_ascii_graphic()) {
        return Err(BzImageError::BadVersion);
    }
    Ok(String::from_utf8_lossy(v).into_owned())
}

/// Fills `buf`; Ok(false) at a short read.
fn read_full<R: Read>(r: &mut R, buf: &mut [u8]) -> std::io::Result<bool> {
    let mut n = 0;
    while n < buf.len() {
        match r.read(&mut buf[n..]) {
            Ok(0) => return Ok(false),
            Ok(k) => n += k,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(true)
}

/// Resolves `path` (as seen inside the target) to a root-relative path with every symlink
/// followed inside `root`. `..` stops at the root. A missing component ends resolution and
/// the rest is appended as written (dracut may create the initrd).
pub fn resolve_in_root(root: &Path, path: &str) -> Result<String, TargetError> {
    let mut todo: Vec<String> = components(path);
    todo.reverse();
    let mut cur: Vec<String> = Vec::new();
    let mut links = 0;
    while let Some(c) = todo.pop() {
        if c == ".." {
            cur.pop();
            continue;
        }
        let host = cur
            .iter()
            .fold(root.to_path_buf(), |p, c| p.join(c))
            .join(&c);
        match std::fs::symlink_metadata(&host) {
            Ok(m) if m.file_type().is_symlink() => {
                links += 1;
                if links > 40 {
                    return Err(TargetError::Kernel {
                        path: PathBuf::from(path),
                        reason: "too many levels of symlinks inside the target root; fix the link by hand".into(),
                    });
                }
                let target = std::fs::read_link(&host).map_err(|e| TargetError::io(&host, e))?;
                let t = target.to_string_lossy().into_owned();
                if t.starts_with('/') {
                    cur.clear();
                }
                todo.extend(components(&t).into_iter().rev());
            }
            Ok(_) => cur.push(c),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                cur.push(c);
                for rest in todo.drain(..).rev() {
                    if rest == ".." {
                        cur.pop();
                    } else {
                        cur.push(rest);
                    }
                }
            }
            Err(e) => return Err(TargetError::io(&host, e)),
        }
    }
    Ok(format!("/{}", cur.join("/")))
}

fn components(p: &str) -> Vec<String> {
    Path::new(p)
        .components()
        .filter_map(|c| match c {
            Component::Normal(s) => Some(s.to_string_lossy().into_owned()),
            Component::ParentDir => Some("..".into()),
            _ => None,
        })
        .collect()
}

fn host_path(root: &Path, rel: &str) -> PathBuf {
    root.join(rel.trim_start_matches('/'))
}

/// The kernel release of the image at `rel` (root-relative, already resolved).
pub fn kernel_version_in_root(root: &Path, rel: &str) -> Result<String, TargetError> {
    let p = host_path(root, rel);
    let mut f = std::fs::File::open(&p).map_err(|e| TargetError::io(&p, e))?;
    bzimage_version(&mut f).map_err(|e| TargetError::Kernel {
        path: p,
        reason: format!("{e}; check that the boot entry names the dom0 kernel"),
    })
}

/// All (kernel, initrd) pairs of every boot config present under `root`.
pub fn boot_images_in_root(root: &Path) -> Result<Vec<BootImage>, TargetError> {
    let mut all = Vec::new();
    for cfg in BOOT_CONFIGS {
        let p = host_path(root, cfg);
        let text = match std::fs::read(&p) {
            Ok(b) => String::from_utf8(b).map_err(|_| TargetError::NotText { path: p.clone() })?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => return Err(TargetError::io(&p, e)),
        };
        if cfg.ends_with("extlinux.conf") {
            all.extend(extlinux::boot_images(&text));
        } else {
            all.extend(grub::boot_images(&text));
        }
    }
    Ok(all)
}

/// The deduplicated `dracut -f <initrd> <kver>` jobs for the target under `root`.
pub fn initrd_jobs(root: &Path) -> Result<Vec<InitrdJob>, TargetError> {
    let images = boot_images_in_root(root)?;
    let mut jobs: Vec<InitrdJob> = Vec::new();
    for img in images {
        let Some(initrd) = img.initrd else { continue };
        let kernel = resolve_in_root(root, &img.kernel)?;
        let initrd = resolve_in_root(root, &initrd)?;
        let kernel_version = kernel_version_in_root(root, &kernel)?;
        let job = InitrdJob {
            kernel_version,
            initrd,
            kernel,
        };
        if !jobs
            .iter()
            .any(|j| j.initrd == job.initrd && j.kernel_version == job.kernel_version)
        {
            jobs.push(job);
        }
    }
    if jobs.is_empty() {
        return Err(TargetError::NoBootEntries {
            searched: BOOT_CONFIGS.join(", "),
        });
    }
    Ok(jobs)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Cursor;

    fn header(version_at: u16, s: &[u8]) -> Vec<u8> {
        let mut v = vec![0u8; (0x200 + version_at as usize + s.len() + 1).max(0x210)];
        v[0x202..0x206].copy_from_slice(b"HdrS");
        v[0x20E..0x210].copy_from_slice(&version_at.to_le_bytes());
        v[0x200 + version_at as usize..][..s.len()].copy_from_slice(s);
        v
    }

    #[test]
    fn reads_version_up_to_space() {
        let h = header(0x3000, b"4.19.0+1 (mockbuild@x) #1 SMP");
        assert_eq!(bzimage_version(&mut Cursor::new(h)).unwrap(), "4.19.0+1");
    }

    #[test]
    fn rejects_bad_headers() {
        assert_eq!(
            bzimage_version(&mut Cursor::new(vec![0; 100])),
            Err(BzImageError::TooShort)
        );
        let mut h = header(0x3000, b"x ");
        h[0x202] = b'X';
        assert_eq!(
            bzimage_version(&mut Cursor::new(h)),
            Err(BzImageError::NoMagic)
        );
        assert_eq!(
            bzimage_version(&mut Cursor::new(header(0, b""))),
            Err(BzImageError::NoVersion)
        );
        // Pointer past the end of the file.
        let mut h = header(0x10, b"x ");
        h[0x20E..0x210].copy_from_slice(&0xFFF0u16.to_le_bytes());
        assert_eq!(
            bzimage_version(&mut Cursor::new(h)),
            Err(BzImageError::BadVersion)
        );
    }

    proptest::proptest! {
        #[test]
        fn never_panics(data in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..0x400),
                        ptr in proptest::prelude::any::<u16>(), magic in proptest::prelude::any::<bool>()) {
            let mut d = data;
            if d.len() >= 0x210 {
                if magic { d[0x202..0x206].copy_from_slice(b"HdrS"); }
                d[0x20E..0x210].copy_from_slice(&ptr.to_le_bytes());
            }
            let _ = bzimage_version(&mut Cursor::new(d));
        }
    }
}

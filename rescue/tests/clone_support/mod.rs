//! Helpers shared by the storage tests: temp dirs that clean up, running the real tools
//! with a clear message when one is missing, loop devices and mounts that detach on drop.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::atomic::{AtomicU32, Ordering};

static COUNTER: AtomicU32 = AtomicU32::new(0);

/// A unique directory under the system temp dir, removed on drop.
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new(name: &str) -> Self {
        let n = COUNTER.fetch_add(1, Ordering::SeqCst);
        let p = std::env::temp_dir().join(format!("rescue-{name}-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&p);
        std::fs::create_dir_all(&p).unwrap();
        TempDir(p)
    }
    pub fn path(&self, f: &str) -> PathBuf {
        self.0.join(f)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// The Debian package that ships a tool the tests use.
fn package_of(tool: &str) -> &'static str {
    match tool {
        "mke2fs" | "dumpe2fs" | "e2fsck" | "debugfs" | "e2image" => "e2fsprogs",
        "pvcreate" | "vgcreate" | "lvcreate" | "lvremove" | "pvs" | "lvs" | "vgs" | "vgck"
        | "pvck" | "vgremove" | "pvremove" | "vgchange" | "lvextend" => "lvm2",
        "mount" | "umount" | "losetup" => "mount",
        "blkid" | "mkswap" | "swaplabel" => "util-linux",
        "diff" => "diffutils",
        "sgdisk" => "gdisk",
        "qemu-img" => "qemu-utils",
        _ => "?",
    }
}

/// Run a tool; panic with its output if it is missing or fails.
pub fn run(tool: &str, args: &[&str]) -> String {
    let out = try_run(tool, args);
    assert!(
        out.status.success(),
        "`{tool} {}` failed ({}):\nstdout: {}\nstderr: {}",
        args.join(" "),
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Run a tool and return its output whatever its exit status; panic only if it is missing.
pub fn try_run(tool: &str, args: &[&str]) -> Output {
    Command::new(tool)
        .args(args)
        .env("LVM_SUPPRESS_FD_WARNINGS", "1")
        .output()
        .unwrap_or_else(|e| {
            panic!(
                "this test needs `{tool}` (Debian package {}): {e}; install it with apt-get",
                package_of(tool)
            )
        })
}

/// A sparse file of `size` bytes.
pub fn sparse_file(p: &Path, size: u64) {
    let f = std::fs::File::create(p).unwrap();
    f.set_len(size).unwrap();
}

/// Deterministic pseudo-random bytes (xorshift64*), fast enough for hundreds of MiB.
pub fn pseudo_random(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    let mut v = Vec::with_capacity(len + 8);
    while v.len() < len {
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        v.extend_from_slice(&x.wrapping_mul(0x2545_f491_4f6c_dd1d).to_le_bytes());
    }
    v.truncate(len);
    v
}

/// A loop device over a file, detached on drop.
pub struct Loop(pub String);

impl Loop {
    pub fn attach(file: &Path) -> Self {
        let dev = run("losetup", &["-f", "--show", file.to_str().unwrap()]);
        Loop(dev.trim().to_owned())
    }
}

impl Drop for Loop {
    fn drop(&mut self) {
        let _ = try_run("losetup", &["-d", &self.0]);
    }
}

/// A read-only loop mount, unmounted on drop.
pub struct Mount(pub PathBuf);

impl Mount {
    pub fn ro(image: &Path, at: &Path) -> Self {
        std::fs::create_dir_all(at).unwrap();
        run(
            "mount",
            &[
                "-o",
                "ro,loop",
                image.to_str().unwrap(),
                at.to_str().unwrap(),
            ],
        );
        Mount(at.to_owned())
    }
}

impl Drop for Mount {
    fn drop(&mut self) {
        let _ = try_run("umount", &[self.0.to_str().unwrap()]);
    }
}

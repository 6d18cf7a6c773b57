//! UEFI variables through efivarfs: the firmware's boot entries, read and written by the
//! rescue itself (it runs on the host's firmware; the target's efibootmgr would need the
//! same mount inside its chroot). The encodings live in `formats::efi`.

use std::fs::{File, OpenOptions};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};

pub const DIR: &str = "/sys/firmware/efi/efivars";

/// Whether the kernel was started by UEFI firmware (runtime services available).
pub fn booted_by_uefi() -> bool {
    Path::new("/sys/firmware/efi").is_dir()
}

/// Mounts efivarfs on its usual place unless it is there already.
pub fn mount() -> io::Result<()> {
    if std::fs::read_dir(DIR).is_ok_and(|mut d| d.next().is_some()) {
        return Ok(());
    }
    match super::mount(Path::new("efivarfs"), Path::new(DIR), "efivarfs", false, "") {
        Err(e) if e.raw_os_error() == Some(rustix::io::Errno::BUSY.raw_os_error()) => Ok(()),
        r => r,
    }
}

fn path(file_name: &str) -> PathBuf {
    Path::new(DIR).join(file_name)
}

/// Every variable's efivarfs file name (`Boot0001-8be4df61-...`).
pub fn names() -> io::Result<Vec<String>> {
    let mut v = Vec::new();
    for e in std::fs::read_dir(DIR)? {
        v.push(e?.file_name().to_string_lossy().into_owned());
    }
    v.sort();
    Ok(v)
}

/// A variable's attributes and data; `None` if it does not exist.
pub fn read(file_name: &str) -> io::Result<Option<(u32, Vec<u8>)>> {
    let mut b = Vec::new();
    match File::open(path(file_name)) {
        Ok(mut f) => f.read_to_end(&mut b)?,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e),
    };
    if b.len() < 4 {
        return Err(io::Error::other(format!(
            "{file_name}: {} bytes, no attributes",
            b.len()
        )));
    }
    let attrs = u32::from_le_bytes([b[0], b[1], b[2], b[3]]);
    Ok(Some((attrs, b.split_off(4))))
}

/// Writes a variable (created, or replaced) in one write, as efivarfs requires. Existing
/// variables are immutable files: the flag is cleared first.
pub fn write(file_name: &str, content: &[u8]) -> io::Result<()> {
    let p = path(file_name);
    if let Ok(f) = File::open(&p) {
        use rustix::fs::IFlags;
        let flags = rustix::fs::ioctl_getflags(&f)?;
        if flags.contains(IFlags::IMMUTABLE) {
            rustix::fs::ioctl_setflags(&f, flags - IFlags::IMMUTABLE)?;
        }
    }
    // No O_TRUNC: efivarfs replaces the variable with what one write() brings.
    let mut f = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(false)
        .open(&p)?;
    let n = f.write(content)?;
    if n != content.len() {
        return Err(io::Error::other(format!(
            "{file_name}: the firmware took {n} of {} bytes",
            content.len()
        )));
    }
    Ok(())
}

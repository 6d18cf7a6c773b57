//! The rescue USB stick: a FAT filesystem labelled `RESCUE` that carries `rescue.conf`
//! (the plan, same keys as the kernel arguments) and gets the reports back
//! (`reports/<UTC time>-<host or disk serial>.json` and the console log next to it).

use crate::inspect::Disk;
use crate::sys;
use std::io::Write;
use std::path::{Path, PathBuf};

pub const LABEL: &str = "RESCUE";
pub const PLAN_FILE: &str = "rescue.conf";
pub const MOUNT_POINT: &str = "/run/stick";

/// Whether this disk is a `RESCUE` stick: a vfat partition (or whole disk) with that label.
pub fn is_stick_disk(d: &Disk) -> bool {
    stick_partition(d).is_some()
}

/// The stick's filesystem on `d`: `Some(Some(n))` for partition `n`, `Some(None)` for the
/// whole disk.
fn stick_partition(d: &Disk) -> Option<Option<u32>> {
    if let Some(p) = d
        .partitions
        .iter()
        .find(|p| p.fs_type.as_deref() == Some("vfat") && p.label.as_deref() == Some(LABEL))
    {
        return Some(Some(p.number));
    }
    match &d.whole_disk {
        Some(crate::inspect::Content::Vfat { label: Some(l), .. }) if l == LABEL => Some(None),
        _ => None,
    }
}

/// The block device holding the stick's filesystem: a vfat partition (or whole disk)
/// labelled `RESCUE`. The first one found, in disk-name order.
pub fn find(disks: &[Disk]) -> Option<PathBuf> {
    disks.iter().find_map(|d| match stick_partition(d)? {
        Some(n) => crate::devices::partition_device(Path::new("/sys/block"), &d.name, n),
        None => Some(PathBuf::from(&d.path)),
    })
}

/// A mounted stick.
pub struct Stick {
    pub device: PathBuf,
    pub mount_point: PathBuf,
    pub read_only: bool,
}

impl Stick {
    /// Mounts the stick read-write, or read-only when the medium refuses writes.
    pub fn mount(device: &Path) -> Result<Stick, String> {
        let mp = PathBuf::from(MOUNT_POINT);
        let opts = "codepage=437,iocharset=ascii,shortname=mixed,flush";
        match sys::mount(device, &mp, "vfat", false, opts) {
            Ok(()) => Ok(Stick {
                device: device.into(),
                mount_point: mp,
                read_only: false,
            }),
            Err(rw) => match sys::mount(device, &mp, "vfat", true, opts) {
                Ok(()) => Ok(Stick {
                    device: device.into(),
                    mount_point: mp,
                    read_only: true,
                }),
                Err(ro) => Err(format!(
                    "cannot mount the {LABEL} stick {}: {rw}; read-only: {ro}",
                    device.display()
                )),
            },
        }
    }

    pub fn read_plan_file(&self) -> Option<String> {
        std::fs::read_to_string(self.mount_point.join(PLAN_FILE)).ok()
    }

    /// Writes `reports/<stem>.<ext>` and syncs it; the error says why it could not.
    pub fn write_report_file(
        &self,
        stem: &str,
        ext: &str,
        content: &str,
    ) -> Result<PathBuf, String> {
        if self.read_only {
            return Err(format!(
                "the {LABEL} stick is read-only; the report stays on the console only"
            ));
        }
        let dir = self.mount_point.join("reports");
        let path = dir.join(format!("{stem}.{ext}"));
        let write = || -> std::io::Result<()> {
            std::fs::create_dir_all(&dir)?;
            let mut f = std::fs::File::create(&path)?;
            f.write_all(content.as_bytes())?;
            f.sync_all()
        };
        write().map_err(|e| {
            let _ = std::fs::remove_file(&path);
            format!(
                "cannot write {} on the {LABEL} stick ({e}): is it full or write-protected?",
                path.display()
            )
        })?;
        Ok(path)
    }

    pub fn unmount(self) {
        sys::sync();
        let _ = sys::unmount(&self.mount_point);
    }
}

/// `<UTC time>-<id>`: the file name stem of a report.
pub fn report_stem(unix_seconds: u64, id: &str) -> String {
    format!("{}-{}", utc_compact(unix_seconds), safe_name(id))
}

/// `id` as a file name any filesystem takes (FAT included): ASCII letters, digits, `-`
/// and `_`, at most 40 characters; `unknown` when nothing is left.
pub fn safe_name(id: &str) -> String {
    let clean: String = id
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '_'
            }
        })
        .take(40)
        .collect();
    if clean.is_empty() {
        "unknown".into()
    } else {
        clean
    }
}

/// `YYYYmmddTHHMMSSZ` for a Unix time (civil-from-days, proleptic Gregorian).
pub fn utc_compact(t: u64) -> String {
    let days = (t / 86400) as i64;
    let secs = t % 86400;
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}{m:02}{d:02}T{:02}{:02}{:02}Z",
        secs / 3600,
        secs / 60 % 60,
        secs % 60
    )
}

/// The host's identity for report names: the DMI serial, else the first disk serial.
pub fn host_id(disks: &[Disk], stick: Option<&Path>) -> String {
    let dmi = std::fs::read_to_string("/sys/class/dmi/id/product_serial").unwrap_or_default();
    let dmi = dmi.trim();
    if !dmi.is_empty()
        && !matches!(
            dmi,
            "0" | "None" | "Not Specified" | "To be filled by O.E.M."
        )
    {
        return dmi.to_string();
    }
    disks
        .iter()
        .filter(|d| stick.is_none_or(|s| !s.starts_with(&d.path)))
        .find_map(|d| d.serial.clone())
        .unwrap_or_else(|| "unknown".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn utc_times() {
        assert_eq!(utc_compact(0), "19700101T000000Z");
        assert_eq!(utc_compact(951_782_400), "20000229T000000Z");
        assert_eq!(utc_compact(1_795_290_123), "20261121T194203Z");
    }

    #[test]
    fn report_stems_are_safe_file_names() {
        assert_eq!(report_stem(0, "SN 12/34"), "19700101T000000Z-SN_12_34");
        assert_eq!(report_stem(0, ""), "19700101T000000Z-unknown");
    }
}

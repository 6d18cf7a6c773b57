//! Helpers for the backup and restore boots (`tests/backup.rs`, `tests/backup_xs7.rs`):
//! a rescue boot with disks on given buses, and the checks of a backup on a FAT
//! filesystem read with mtools and verified by the library.

use crate::images::run;
use crate::vm::{Bus, Disk};
use crate::Scratch;
use rescue::backup_job::BackupReport;
use rescue::report::Report;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

/// The partition a formatted backup disk gets starts at 1 MiB
/// (`rescue::backup_job::plan::format_layout`).
pub const FORMATTED_AT: u64 = 1 << 20;

/// Boots the rescue with `disks` (path, serial, bus) and `args`; returns its report once
/// the guest powered off.
pub fn rescue_boot(
    scratch: &Scratch,
    tag: &str,
    disks: &[(&Path, &str, Bus)],
    args: &str,
    timeout: Duration,
) -> Report {
    let disks = disks
        .iter()
        .map(|(path, serial, bus)| Disk::new(path, *bus).serial(serial))
        .collect();
    crate::rescue_report(&scratch.dir.join(tag), disks, args, timeout).unwrap()
}

/// mtools' image argument for a FAT at `offset` bytes into `img`.
pub fn fat_at(img: &Path, offset: u64) -> String {
    format!("{}@@{offset}", img.display())
}

/// Copies the backup directory `rel` out of the FAT at `offset` of `img` and checks it
/// with the library's verify (every item's SHA-256) and FAT's file size limit; returns
/// the local copy.
pub fn copy_out_and_verify(img: &Path, offset: u64, rel: &str, out: &Path) -> PathBuf {
    std::fs::create_dir_all(out).unwrap();
    let host = rel.split('/').next().unwrap();
    run(Command::new("mcopy")
        .args(["-s", "-i", &fat_at(img, offset)])
        .arg(format!("::/{host}"))
        .arg(out))
    .unwrap();
    let dir = out.join(rel);
    let m = rescue::backup::verify(&dir)
        .unwrap_or_else(|e| panic!("the backup in {rel} does not verify: {e}"));
    assert!(!m.items.is_empty());
    for it in &m.items {
        for f in &it.files {
            let len = std::fs::metadata(dir.join(f)).unwrap().len();
            assert!(len <= rescue::backup::SPLIT_BYTES, "{f}: {len} bytes");
        }
    }
    dir
}

/// The report of a backup that worked: its section read back, within its estimate, in
/// a `<host>/<time>` directory.
pub fn check_backup(r: &Report, what: &str) -> BackupReport {
    assert!(r.ok, "{what}: {:?}\n{:#?}", r.errors, r.backup);
    assert_eq!(r.action, "backup");
    let b = r.backup.clone().expect("a backup section");
    assert!(
        b.verified && b.items > 0 && b.bytes_written > 0,
        "{what}: {b:#?}"
    );
    let est = b.estimate.as_ref().expect("the estimate");
    assert!(est.worst_case_bytes <= b.free_bytes, "{what}: {b:#?}");
    assert!(b.bytes_written <= est.worst_case_bytes, "{what}: {b:#?}");
    let (host, time) = b.directory.split_once('/').expect("<host>/<time>");
    assert!(
        !host.is_empty() && time.len() == 16 && time.ends_with('Z'),
        "{b:#?}"
    );
    b
}

//! Which disk is the source and which the mirror: the operator's selectors (`sda`,
//! `/dev/...`, `serial:X`, `auto`) against what inspect found, and the journal of a job
//! in progress. Reads only.

use super::journal::{self, Journal, Phase};
use super::plan;
use crate::inspect::Disk;
use std::fs::File;

pub(super) fn describe_contents(d: &Disk) -> String {
    if let Some(t) = &d.table {
        format!(
            "{} partition table with {} partitions",
            t.to_uppercase(),
            d.partitions.len()
        )
    } else if let Some(c) = &d.whole_disk {
        format!("{c:?}")
    } else {
        "signatures at its start or end".into()
    }
}

/// True when `sel` (`sda`, `/dev/sda`, `serial:X`) names this disk.
pub(crate) fn names_disk(sel: &str, d: &Disk) -> bool {
    match sel.strip_prefix("serial:") {
        Some(s) => d.serial.as_deref() == Some(s),
        None => sel == d.name || sel == d.path,
    }
}

pub(super) fn check_selector(sel: Option<&str>, d: &Disk, key: &str) -> Result<(), String> {
    match sel {
        None | Some("auto") => Ok(()),
        Some(s) if names_disk(s, d) => Ok(()),
        Some(s) => Err(format!("{key}={s} does not name {}, the disk of the conversion in progress: fix {key} or use auto", d.path)),
    }
}

pub(super) fn select_source<'a>(sel: &str, disks: &'a [Disk]) -> Result<&'a Disk, String> {
    if sel == "auto" {
        let c: Vec<&Disk> = disks.iter().filter(|d| d.xenserver.is_some()).collect();
        return match c.as_slice() {
            [one] => Ok(one),
            [] => Err("rescue.source=auto: no disk holds a XenServer install; name the source disk".into()),
            many => Err(format!(
                "rescue.source=auto: {} disks hold a XenServer install ({}); name the source with rescue.source=",
                many.len(),
                many.iter().map(|d| d.path.as_str()).collect::<Vec<_>>().join(", ")
            )),
        };
    }
    let d = disks.iter().find(|d| names_disk(sel, d)).ok_or_else(|| {
        format!("rescue.source={sel}: no such disk; see rescue.action=inspect for the names")
    })?;
    if d.xenserver.is_none() {
        return Err(plan::PlanError::NotXenServer(d.path.clone()).to_string());
    }
    Ok(d)
}

pub(super) fn select_mirror<'a>(
    sel: &str,
    source: &Disk,
    disks: &'a [Disk],
) -> Result<&'a Disk, String> {
    if sel == "auto" {
        let c: Vec<&Disk> = disks
            .iter()
            .filter(|d| d.path != source.path && d.blank && d.size_bytes >= source.size_bytes)
            .collect();
        return match c.as_slice() {
            [one] => Ok(one),
            [] => Err(format!("rescue.mirror=auto: no other blank disk of at least {} bytes; attach one or name the mirror", source.size_bytes)),
            many => Err(format!(
                "rescue.mirror=auto: {} blank disks could be the mirror ({}); name it with rescue.mirror=",
                many.len(),
                many.iter().map(|d| d.path.as_str()).collect::<Vec<_>>().join(", ")
            )),
        };
    }
    let d = disks.iter().find(|d| names_disk(sel, d)).ok_or_else(|| {
        format!("rescue.mirror={sel}: no such disk; see rescue.action=inspect for the names")
    })?;
    if d.path == source.path {
        return Err(plan::PlanError::SameDisk(d.path.clone()).to_string());
    }
    Ok(d)
}

pub(super) fn find_journal(disks: &[Disk]) -> Option<(&Disk, Journal)> {
    disks.iter().find_map(|d| {
        let mut f = File::open(&d.path).ok()?;
        let j = journal::read(&mut f).ok()??;
        (j.plan.mirror_disk_guid == d.disk_guid.clone().unwrap_or_default()
            || j.phase == Phase::Planned)
            .then_some((d, j))
    })
}

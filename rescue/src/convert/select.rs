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
    } else if let Some(crate::inspect::Content::MdMember {
        metadata,
        array_uuid,
        ..
    }) = &d.whole_disk
    {
        format!("an md {metadata} superblock of array {array_uuid} on the whole disk")
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

/// Refuses a disk that must never be written as `key` names it: the `RESCUE` stick this
/// rescue runs from (its plan and reports live there), or a disk the kernel will not write.
pub(crate) fn writable_target(d: &Disk, key: &str) -> Result<(), String> {
    if crate::stick::is_stick_disk(d) {
        return Err(format!(
            "{key}: {} is the {} stick (it holds rescue.conf and the reports), never a target: name another disk",
            d.path,
            crate::stick::LABEL
        ));
    }
    if d.read_only {
        return Err(format!(
            "{key}: {} is read-only (the kernel refuses writes to it): release its write protection (switch, controller or LUN setting) or name another disk",
            d.path
        ));
    }
    Ok(())
}

/// A converted host (root on md) whose arrays miss a member needs `replace`, not
/// `convert`: says so, naming the degraded arrays.
pub(super) fn degraded_host(source: &Disk, disks: &[Disk]) -> Option<String> {
    if !source.xenserver.as_ref().is_some_and(|x| x.on_md) {
        return None;
    }
    let degraded: Vec<String> = crate::arrays::arrays(disks)
        .iter()
        .filter(|a| a.degraded && a.members.iter().any(|m| m.disk == source.path))
        .map(|a| a.name.clone().unwrap_or_else(|| a.uuid.clone()))
        .collect();
    (!degraded.is_empty()).then(|| {
        format!(
            "{} is a converted host with {} degraded array(s) ({}): it needs its second disk back, not a conversion: use rescue.action=replace rescue.survivor={} rescue.new=<the blank disk>",
            source.path,
            degraded.len(),
            degraded.join(", "),
            source.name
        )
    })
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
            .filter(|d| {
                d.path != source.path
                    && d.blank
                    && d.size_bytes >= source.size_bytes
                    && writable_target(d, "").is_ok()
            })
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::inspect::{Content, Partition};

    fn disk(name: &str) -> Disk {
        Disk {
            name: name.into(),
            path: format!("/dev/{name}"),
            size_bytes: 1 << 30,
            logical_sector_size: 512,
            blank: true,
            ..Disk::default()
        }
    }

    #[test]
    fn the_stick_and_a_read_only_disk_are_never_targets() {
        assert_eq!(writable_target(&disk("sdb"), "rescue.mirror"), Ok(()));
        let mut ro = disk("sdb");
        ro.read_only = true;
        assert_eq!(
            writable_target(&ro, "rescue.mirror").unwrap_err(),
            "rescue.mirror: /dev/sdb is read-only (the kernel refuses writes to it): release its write protection (switch, controller or LUN setting) or name another disk"
        );
        let mut stick = disk("sdc");
        stick.blank = false;
        stick.table = Some("mbr".into());
        stick.partitions = vec![Partition {
            number: 1,
            fs_type: Some("vfat".into()),
            label: Some("RESCUE".into()),
            ..Partition::default()
        }];
        assert!(writable_target(&stick, "rescue.new")
            .unwrap_err()
            .starts_with("rescue.new: /dev/sdc is the RESCUE stick"));
        let mut whole = disk("sdd");
        whole.whole_disk = Some(Content::Vfat {
            label: Some("RESCUE".into()),
            serial: "1234-ABCD".into(),
        });
        assert!(writable_target(&whole, "rescue.mirror").is_err());
        // auto never picks them.
        let source = disk("sda");
        assert_eq!(
            select_mirror("auto", &source, &[source.clone(), ro.clone(), disk("sde")])
                .unwrap()
                .name,
            "sde"
        );
    }
}

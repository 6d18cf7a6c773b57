//! md arrays as the disks show them: the members inspect found, grouped by array UUID,
//! and per array which slots are in sync, which member is stale and what is missing.
//! Pure: it reads only what [`crate::inspect`] already found.
//!
//! The rule is mdadm's at assembly: the freshest superblock (highest events) says which
//! device numbers are active; a member is in sync when that superblock lists it active and
//! its own events are at most one behind (mdadm allows a difference of one: a clean stop
//! may update one member last). Anything else that claims the array is stale: a disk that
//! was pulled and put back, or a member the initrd kicked.

use crate::inspect::{Content, Disk, MdMemberState};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// One array in `RESCUE-REPORT.arrays[]`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ArrayView {
    /// mdadm's form (`3a1f09c2:55607b88:...`).
    pub uuid: String,
    /// 1.x `homehost:name`; `None` for 0.90.
    pub name: Option<String>,
    pub level: String,
    pub metadata: String,
    pub bitmap: bool,
    pub raid_disks: u32,
    /// The freshest member's events.
    pub events: u64,
    pub members: Vec<ArrayMember>,
    /// Slots no in-sync member fills.
    pub missing_slots: Vec<u32>,
    /// Fewer in-sync members than slots.
    pub degraded: bool,
    /// `healthy`, `degraded`, or `unreadable` (no member's superblock could be read).
    pub state: String,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ArrayMember {
    /// `/dev/sda3` (or `image#3` for an image file), `/dev/sdb` for a whole-disk member.
    pub device: String,
    /// The disk's path as in `disks[]`.
    pub disk: String,
    /// Partition number; `None` for a whole-disk member.
    pub partition: Option<u32>,
    pub events: u64,
    /// The member's own superblock says this slot (`None`: spare or faulty).
    pub slot: Option<u32>,
    /// `in_sync`, `rebuilding` (active, a recovery offset: not in sync yet), `stale`,
    /// `spare`, `faulty` or `unreadable`.
    pub status: String,
}

/// `/dev/sda` + 3 → `/dev/sda3`, `/dev/nvme0n1` + 1 → `/dev/nvme0n1p1`: the kernel's
/// naming rule, without asking sysfs (`devices::partition_device` does); an image file's
/// partition is `image#3`.
pub fn partition_name_by_rule(disk_path: &str, number: u32) -> String {
    if !disk_path.starts_with("/dev/") {
        return format!("{disk_path}#{number}");
    }
    let sep = if disk_path.ends_with(|c: char| c.is_ascii_digit()) {
        "p"
    } else {
        ""
    };
    format!("{disk_path}{sep}{number}")
}

struct Found<'a> {
    device: String,
    disk: &'a Disk,
    partition: Option<u32>,
    metadata: &'a str,
    name: Option<&'a str>,
    sb: &'a MdMemberState,
}

/// Every array any disk holds a member of, in the order of their first member.
pub fn arrays(disks: &[Disk]) -> Vec<ArrayView> {
    let mut by_uuid: BTreeMap<&str, Vec<Found<'_>>> = BTreeMap::new();
    let mut order: Vec<&str> = Vec::new();
    for d in disks {
        let parts = d
            .partitions
            .iter()
            .map(|p| (Some(p.number), p.content.as_ref(), p.md.as_ref()));
        let whole = std::iter::once((None, d.whole_disk.as_ref(), d.whole_disk_md.as_ref()));
        for (partition, content, sb) in parts.chain(whole) {
            let (
                Some(Content::MdMember {
                    metadata,
                    array_uuid,
                    name,
                    ..
                }),
                Some(sb),
            ) = (content, sb)
            else {
                continue;
            };
            if !order.contains(&array_uuid.as_str()) {
                order.push(array_uuid);
            }
            by_uuid.entry(array_uuid).or_default().push(Found {
                device: match partition {
                    Some(n) => partition_name_by_rule(&d.path, n),
                    None => d.path.clone(),
                },
                disk: d,
                partition,
                metadata,
                name: name.as_deref(),
                sb,
            });
        }
    }
    order
        .into_iter()
        .map(|uuid| view(uuid, &by_uuid[uuid]))
        .collect()
}

fn view(uuid: &str, found: &[Found<'_>]) -> ArrayView {
    let readable: Vec<&Found<'_>> = found.iter().filter(|f| f.sb.problem.is_none()).collect();
    let first = found[0].metadata;
    let name = found.iter().find_map(|f| f.name).map(String::from);
    let Some(freshest) = readable.iter().max_by_key(|f| f.sb.events) else {
        return ArrayView {
            uuid: uuid.into(),
            name,
            metadata: first.into(),
            members: found
                .iter()
                .map(|f| member(f, None, "unreadable"))
                .collect(),
            state: "unreadable".into(),
            degraded: true,
            ..Default::default()
        };
    };
    let fresh = freshest.sb;
    let mut members = Vec::new();
    let mut filled = Vec::new();
    for f in found {
        let status = if f.sb.problem.is_some() {
            "unreadable"
        } else {
            let listed = fresh
                .active_slots
                .get(f.sb.dev_number as usize)
                .copied()
                .flatten();
            match f.sb.slot() {
                // Its slot is not filled until the recovery ends (mdadm --detail:
                // "spare rebuilding"); the kernel goes on from the offset.
                Some(slot) if listed == Some(slot) && f.sb.recovering => "rebuilding",
                Some(slot)
                    if listed == Some(slot)
                        && f.sb.events + 1 >= fresh.events
                        && !filled.contains(&slot) =>
                {
                    filled.push(slot);
                    "in_sync"
                }
                Some(_) => "stale",
                None if f.sb.role == "spare" => "spare",
                None => "faulty",
            }
        };
        members.push(member(f, f.sb.slot(), status));
    }
    let missing_slots: Vec<u32> = (0..fresh.raid_disks)
        .filter(|s| !filled.contains(s))
        .collect();
    let degraded = !missing_slots.is_empty();
    ArrayView {
        uuid: uuid.into(),
        name,
        level: fresh.level.clone(),
        metadata: freshest.metadata.into(),
        bitmap: fresh.bitmap,
        raid_disks: fresh.raid_disks,
        events: fresh.events,
        members,
        missing_slots,
        degraded,
        state: if degraded { "degraded" } else { "healthy" }.into(),
    }
}

fn member(f: &Found<'_>, slot: Option<u32>, status: &str) -> ArrayMember {
    ArrayMember {
        device: f.device.clone(),
        disk: f.disk.path.clone(),
        partition: f.partition,
        events: f.sb.events,
        slot,
        status: status.into(),
    }
}

/// One line per array for the operator:
/// `md root-x (3a1f...): raid1, metadata 1.0, bitmap, DEGRADED: 1 of 2 in sync
/// (/dev/sda1 slot 0); slot 1 missing; /dev/sdb1 stale (events 40, array at 52)`.
pub fn human_line(a: &ArrayView) -> String {
    let who = match &a.name {
        Some(n) => format!("{n} ({})", a.uuid),
        None => a.uuid.clone(),
    };
    if a.state == "unreadable" {
        let devs: Vec<&str> = a.members.iter().map(|m| m.device.as_str()).collect();
        return format!(
            "md {who}: superblocks unreadable on {}: see disks[].partitions[].md.problem",
            devs.join(", ")
        );
    }
    let in_sync: Vec<String> = a
        .members
        .iter()
        .filter(|m| m.status == "in_sync")
        .map(|m| format!("{} slot {}", m.device, m.slot.unwrap_or(0)))
        .collect();
    let mut line = format!(
        "md {who}: {}, metadata {}, {}, {}: {} of {} in sync ({})",
        a.level,
        a.metadata,
        if a.bitmap { "bitmap" } else { "no bitmap" },
        if a.degraded { "DEGRADED" } else { "healthy" },
        in_sync.len(),
        a.raid_disks,
        in_sync.join(", ")
    );
    if !a.missing_slots.is_empty() {
        let slots: Vec<String> = a.missing_slots.iter().map(u32::to_string).collect();
        line.push_str(&format!(
            "; slot{} {} missing",
            if slots.len() > 1 { "s" } else { "" },
            slots.join(", ")
        ));
    }
    for m in a.members.iter().filter(|m| m.status != "in_sync") {
        line.push_str(&match m.status.as_str() {
            "stale" => format!(
                "; {} stale (events {}, array at {})",
                m.device, m.events, a.events
            ),
            other => format!("; {} {other}", m.device),
        });
    }
    line
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::inspect::Partition;

    fn sb(events: u64, dev_number: u32, role: &str, active: &[Option<u32>]) -> MdMemberState {
        MdMemberState {
            level: "raid1".into(),
            raid_disks: 2,
            events,
            dev_number,
            role: role.into(),
            array_state: (0..2)
                .map(|s| if active.contains(&Some(s)) { 'A' } else { '.' })
                .collect(),
            active_slots: active.to_vec(),
            clean: true,
            bitmap: true,
            recovering: false,
            utime: 0,
            problem: None,
        }
    }

    fn disk(path: &str, number: u32, uuid: &str, state: MdMemberState) -> Disk {
        Disk {
            path: path.into(),
            partitions: vec![Partition {
                number,
                content: Some(Content::MdMember {
                    metadata: "1.2".into(),
                    array_uuid: uuid.into(),
                    name: Some("xenserver:root".into()),
                    data_offset: 0,
                }),
                md: Some(state),
                ..Default::default()
            }],
            ..Default::default()
        }
    }

    const U: &str = "3a1f09c2:55607b88:91aabccd:deef0112";

    #[test]
    fn two_members_in_sync_are_healthy() {
        let both = [Some(0), Some(1)];
        let a = arrays(&[
            disk("/dev/sda", 1, U, sb(52, 0, "active 0", &both)),
            disk("/dev/nvme0n1", 1, U, sb(51, 1, "active 1", &both)),
        ]);
        assert_eq!(a.len(), 1);
        assert_eq!(a[0].state, "healthy");
        assert!(!a[0].degraded);
        assert_eq!(a[0].members[1].device, "/dev/nvme0n1p1");
        assert_eq!(
            human_line(&a[0]),
            format!("md xenserver:root ({U}): raid1, metadata 1.2, bitmap, healthy: 2 of 2 in sync (/dev/sda1 slot 0, /dev/nvme0n1p1 slot 1)")
        );
    }

    #[test]
    fn a_returning_member_is_stale_and_its_slot_missing() {
        // The survivor ran alone: its superblock lists slot 1 gone and counts on.
        let a = arrays(&[
            disk("/dev/sda", 1, U, sb(80, 0, "active 0", &[Some(0), None])),
            disk("/dev/sdb", 1, U, sb(40, 1, "active 1", &[Some(0), Some(1)])),
        ]);
        assert_eq!(a[0].state, "degraded");
        assert_eq!(a[0].missing_slots, vec![1]);
        assert_eq!(a[0].members[1].status, "stale");
        assert_eq!(a[0].events, 80);
        assert!(human_line(&a[0]).ends_with(
            "DEGRADED: 1 of 2 in sync (/dev/sda1 slot 0); slot 1 missing; /dev/sdb1 stale (events 40, array at 80)"
        ));
    }

    #[test]
    fn a_member_being_rebuilt_is_not_in_sync() {
        let both = [Some(0), Some(1)];
        let mut rebuilding = sb(52, 1, "active 1", &both);
        rebuilding.recovering = true;
        let a = arrays(&[
            disk("/dev/sda", 1, U, sb(52, 0, "active 0", &both)),
            disk("/dev/sdb", 1, U, rebuilding),
        ]);
        assert_eq!(a[0].members[1].status, "rebuilding");
        assert_eq!((a[0].degraded, a[0].missing_slots.clone()), (true, vec![1]));
        assert!(human_line(&a[0]).ends_with(
            "DEGRADED: 1 of 2 in sync (/dev/sda1 slot 0); slot 1 missing; /dev/sdb1 rebuilding"
        ));
    }

    #[test]
    fn events_two_behind_is_stale_even_when_still_listed() {
        let both = [Some(0), Some(1)];
        let a = arrays(&[
            disk("/dev/sda", 1, U, sb(52, 0, "active 0", &both)),
            disk("/dev/sdb", 1, U, sb(50, 1, "active 1", &both)),
        ]);
        assert_eq!(a[0].members[1].status, "stale");
        assert!(a[0].degraded);
    }

    #[test]
    fn one_member_alone_is_degraded_with_its_partner_missing() {
        let a = arrays(&[disk("img", 3, U, sb(9, 0, "active 0", &[Some(0), Some(1)]))]);
        assert_eq!(a[0].missing_slots, vec![1]);
        assert_eq!(a[0].members[0].device, "img#3");
        assert!(human_line(&a[0]).contains("1 of 2 in sync (img#3 slot 0); slot 1 missing"));
    }

    #[test]
    fn a_spare_fills_no_slot_and_two_claims_of_one_slot_count_once() {
        let a = arrays(&[
            disk("/dev/sda", 1, U, sb(10, 0, "active 0", &[Some(0), None])),
            disk("/dev/sdb", 1, U, sb(10, 1, "spare", &[Some(0), None])),
            disk("/dev/sdc", 1, U, sb(10, 0, "active 0", &[Some(0), None])),
        ]);
        let st: Vec<&str> = a[0].members.iter().map(|m| m.status.as_str()).collect();
        assert_eq!(st, ["in_sync", "spare", "stale"]);
        assert_eq!(a[0].missing_slots, vec![1]);
    }

    #[test]
    fn unreadable_superblocks_are_said_not_guessed() {
        let bad = MdMemberState {
            problem: Some("bad checksum".into()),
            ..Default::default()
        };
        let a = arrays(&[disk("/dev/sda", 1, U, bad)]);
        assert_eq!(a[0].state, "unreadable");
        assert!(human_line(&a[0]).contains("unreadable on /dev/sda1"));
    }

    #[test]
    fn arrays_of_two_hosts_stay_apart() {
        let other = "00000000:11111111:22222222:33333333";
        let a = arrays(&[
            disk("/dev/sda", 1, U, sb(5, 0, "active 0", &[Some(0), None])),
            disk("/dev/sdb", 1, other, sb(7, 0, "active 0", &[Some(0), None])),
        ]);
        assert_eq!(a.len(), 2);
        assert_eq!(a[0].uuid, U);
        assert_eq!(a[1].uuid, other);
    }
}

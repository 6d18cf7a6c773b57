//! What `rescue.action=replace` will do, decided from what inspect found before anything
//! is written: which disk survived, which disk takes the dead one's place, and per array
//! whether its missing member is added new (full recovery) or re-added (the returning
//! disk's stale member: with a bitmap, only the chunks written meanwhile).

use crate::arrays::{partition_name_by_rule, ArrayView};
use crate::convert::bootchain::BootChain;
use crate::convert::plan::{ArrayRole, DiskRef};
use crate::convert::select::names_disk;
use crate::inspect::Disk;
use serde::{Deserialize, Serialize};

/// How the new disk gets its members.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Mode {
    /// A blank (or wiped) disk: the survivor's partition table with new GUIDs, a fresh
    /// member per array.
    Rebuild,
    /// The disk that was gone and came back: its table and members stay, each stale
    /// member is re-added.
    ReAdd,
}

/// What happens to one array.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum MemberAction {
    /// A new member; the kernel recovers all of it.
    Add,
    /// The returning member; the bitmap limits the recovery to what changed (the kernel
    /// falls back to a full recovery when the bitmap cannot cover it).
    ReAdd,
    /// Both members present and in sync already.
    Nothing,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReplaceArray {
    pub uuid: String,
    pub name: Option<String>,
    pub metadata: String,
    pub bitmap: bool,
    /// `/dev/mdN` in the rescue.
    pub device: String,
    pub survivor_partition: u32,
    pub survivor_slot: u32,
    pub new_partition: u32,
    pub action: MemberAction,
    /// The host's root lives on this array (mounted for the bootloader).
    pub root: bool,
}

impl ReplaceArray {
    /// What the array is on the host: root by what it holds, the others by the name the
    /// conversion gave them (`xenserver:esp`); 0.90 arrays have no name.
    pub fn role(&self) -> Option<ArrayRole> {
        if self.root {
            return Some(ArrayRole::Root);
        }
        let name = self.name.as_deref()?;
        ArrayRole::parse(name.rsplit(':').next().unwrap_or(name))
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReplacePlan {
    pub survivor: DiskRef,
    pub new: DiskRef,
    pub mode: Mode,
    pub boot_chain: BootChain,
    pub sector_size: u32,
    pub arrays: Vec<ReplaceArray>,
    pub wait_resync: bool,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ReplaceError {
    #[error("no disk holds md members: replace is for a host converted to RAID1; use rescue.action=convert for a host on one disk")]
    NoArrays,
    #[error("every array has both members present and in sync ({0}): nothing to replace")]
    NothingDegraded(String),
    #[error("rescue.survivor=auto: {0} disks hold in-sync members of degraded arrays ({1}); name the survivor with rescue.survivor=")]
    SurvivorAmbiguous(usize, String),
    #[error("rescue.{0}={1}: no such disk; see rescue.action=inspect for the names")]
    NoSuchDisk(&'static str, String),
    #[error("{0} holds no in-sync md member: it cannot be the survivor; name the disk the host ran on with rescue.survivor=")]
    NotASurvivor(String),
    #[error("{0} is not a XenServer install on md (its root is not an md member): replace works on hosts converted to RAID1")]
    NotXenServerOnMd(String),
    #[error("{0} holds members of arrays of two hosts ({1}): name the right survivor, or take the other host's disk out")]
    TwoHosts(String, String),
    #[error("rescue.survivor and rescue.new name the same disk {0}: the new disk is the one put in the dead one's place")]
    SameDisk(String),
    #[error("rescue.new=auto: no other disk is blank and at least {1} bytes, or holds stale members of {0}'s arrays; attach one or name it with rescue.new=")]
    NoNewDisk(String, u64),
    #[error("rescue.new=auto: {0} disks could be the new one ({1}); name it with rescue.new=")]
    NewAmbiguous(usize, String),
    #[error("{0} is {1} bytes, smaller than the {2} bytes the survivor's partitions need: use a disk at least as large")]
    TooSmall(String, u64, u64),
    #[error(
        "{0} is not blank ({1}): name it in rescue.wipe= to overwrite it, or attach a blank disk"
    )]
    NotBlank(String, String),
    #[error("{0} holds members of arrays the survivor does not have ({1}): another host's disk? name it in rescue.wipe= to overwrite it")]
    ForeignMembers(String, String),
    #[error("{0} has whole-disk md members (array {1}): only partition members are replaced; do this one by hand")]
    WholeDisk(String, String),
    #[error("{new} holds no member of array {uuid}, which is degraded on {survivor}: name {new} in rescue.wipe= for a full rebuild")]
    ReAddIncomplete {
        new: String,
        uuid: String,
        survivor: String,
    },
    #[error("{0}")]
    BootChain(String),
    #[error("{0}")]
    NotWritable(String),
}

/// What decides the plan besides the disks.
#[derive(Clone, Debug, Default)]
pub struct Options<'a> {
    pub survivor: Option<&'a str>,
    pub new: Option<&'a str>,
    pub wipe: Option<&'a str>,
    pub wait_resync: bool,
}

fn members_on<'a>(
    a: &'a ArrayView,
    d: &'a Disk,
) -> impl Iterator<Item = &'a crate::arrays::ArrayMember> {
    a.members.iter().filter(move |m| m.disk == d.path)
}

fn in_sync_on(a: &ArrayView, d: &Disk) -> bool {
    members_on(a, d).any(|m| m.status == "in_sync")
}

/// Bytes a disk needs to hold `d`'s partitions and its backup GPT.
fn needed_bytes(d: &Disk) -> u64 {
    let ss = u64::from(d.logical_sector_size.max(512));
    let end = d
        .partitions
        .iter()
        .map(|p| p.start_lba * ss + p.size_bytes)
        .max()
        .unwrap_or(0);
    // The backup GPT: 32 sectors of entries (16 KiB at 512) and its header.
    end + 16384.max(32 * ss) + ss
}

/// `p` is the survivor's partition `sp` as `replace` clones it: same number, place, size,
/// type and name (the GUIDs are new).
fn same_slot(p: &crate::inspect::Partition, sp: &crate::inspect::Partition) -> bool {
    p.number == sp.number
        && p.start_lba == sp.start_lba
        && p.size_bytes == sp.size_bytes
        && p.type_guid == sp.type_guid
        && p.name == sp.name
}

/// The partition on `d` with `number`, when it is the survivor's partition's clone with
/// nothing in it: what an earlier `replace` cut off before that member joined left behind.
fn empty_twin<'a>(
    d: &'a Disk,
    survivor: &Disk,
    number: u32,
) -> Option<&'a crate::inspect::Partition> {
    let want = survivor.partitions.iter().find(|p| p.number == number)?;
    let p = d.partitions.iter().find(|p| p.number == number)?;
    (d.logical_sector_size == survivor.logical_sector_size
        && same_slot(p, want)
        && p.content.is_none())
    .then_some(p)
}

/// `d` carries the survivor's partition table (every partition in its place) and nothing
/// in the partitions the arrays use: an earlier `replace` wrote the table and was cut off
/// before any member joined. Such a disk is rebuilt without `rescue.wipe=`: it holds
/// nothing, and another host's disk of the same layout holds filesystems there.
fn prepared_by_replace(d: &Disk, survivor: &Disk, host: &[&ArrayView]) -> bool {
    d.table.as_deref() == Some("gpt")
        && d.logical_sector_size == survivor.logical_sector_size
        && d.partitions.len() == survivor.partitions.len()
        && survivor.partitions.iter().all(|sp| {
            let member = host
                .iter()
                .any(|a| members_on(a, survivor).any(|m| m.partition == Some(sp.number)));
            d.partitions
                .iter()
                .any(|p| same_slot(p, sp) && (!member || p.content.is_none()))
        })
}

fn describe(d: &Disk) -> String {
    match &d.table {
        Some(t) => format!(
            "{} table with {} partitions",
            t.to_uppercase(),
            d.partitions.len()
        ),
        None => "signatures at its start or end".into(),
    }
}

/// Decides the plan; writes nothing.
pub fn plan(
    disks: &[Disk],
    arrays: &[ArrayView],
    o: &Options<'_>,
) -> Result<ReplacePlan, ReplaceError> {
    if arrays.is_empty() {
        return Err(ReplaceError::NoArrays);
    }
    let pick = |key: &'static str, sel: &str| {
        disks
            .iter()
            .find(|d| names_disk(sel, d))
            .ok_or_else(|| ReplaceError::NoSuchDisk(key, sel.to_string()))
    };
    let survivor = match o.survivor.unwrap_or("auto") {
        "auto" => {
            let c: Vec<&Disk> = disks
                .iter()
                .filter(|d| arrays.iter().any(|a| a.degraded && in_sync_on(a, d)))
                .collect();
            match c.as_slice() {
                [one] => *one,
                [] => {
                    let all: Vec<String> = arrays
                        .iter()
                        .map(|a| a.name.clone().unwrap_or_else(|| a.uuid.clone()))
                        .collect();
                    return Err(ReplaceError::NothingDegraded(all.join(", ")));
                }
                many => {
                    return Err(ReplaceError::SurvivorAmbiguous(
                        many.len(),
                        many.iter()
                            .map(|d| d.path.as_str())
                            .collect::<Vec<_>>()
                            .join(", "),
                    ))
                }
            }
        }
        sel => pick("survivor", sel)?,
    };
    let host: Vec<&ArrayView> = arrays.iter().filter(|a| in_sync_on(a, survivor)).collect();
    if host.is_empty() {
        return Err(ReplaceError::NotASurvivor(survivor.path.clone()));
    }
    if !survivor.xenserver.as_ref().is_some_and(|x| x.on_md) {
        return Err(ReplaceError::NotXenServerOnMd(survivor.path.clone()));
    }
    let homehosts: std::collections::BTreeSet<&str> = host
        .iter()
        .filter_map(|a| a.name.as_deref()?.split_once(':').map(|(h, _)| h))
        .collect();
    if homehosts.len() > 1 {
        return Err(ReplaceError::TwoHosts(
            survivor.path.clone(),
            homehosts.into_iter().collect::<Vec<_>>().join(", "),
        ));
    }
    if let Some(a) = host
        .iter()
        .find(|a| members_on(a, survivor).any(|m| m.partition.is_none()))
    {
        return Err(ReplaceError::WholeDisk(
            survivor.path.clone(),
            a.uuid.clone(),
        ));
    }
    if host.iter().all(|a| !a.degraded) {
        let all: Vec<String> = host
            .iter()
            .map(|a| a.name.clone().unwrap_or_else(|| a.uuid.clone()))
            .collect();
        return Err(ReplaceError::NothingDegraded(all.join(", ")));
    }
    let needed = needed_bytes(survivor);
    let wiped = |d: &Disk| o.wipe.is_some_and(|w| names_disk(w, d));
    let returning = |d: &Disk| host.iter().any(|a| members_on(a, d).next().is_some());
    let new = match o.new.unwrap_or("auto") {
        "auto" => {
            let back: Vec<&Disk> = disks
                .iter()
                .filter(|d| d.path != survivor.path && returning(d))
                .collect();
            let c: Vec<&Disk> = if back.is_empty() {
                disks
                    .iter()
                    .filter(|d| {
                        d.path != survivor.path
                            && (d.blank || wiped(d) || prepared_by_replace(d, survivor, &host))
                            && d.size_bytes >= needed
                            && crate::convert::select::writable_target(d, "").is_ok()
                    })
                    .collect()
            } else {
                back
            };
            match c.as_slice() {
                [one] => *one,
                [] => return Err(ReplaceError::NoNewDisk(survivor.path.clone(), needed)),
                many => {
                    return Err(ReplaceError::NewAmbiguous(
                        many.len(),
                        many.iter()
                            .map(|d| d.path.as_str())
                            .collect::<Vec<_>>()
                            .join(", "),
                    ))
                }
            }
        }
        sel => pick("new", sel)?,
    };
    if new.path == survivor.path {
        return Err(ReplaceError::SameDisk(new.path.clone()));
    }
    crate::convert::select::writable_target(new, "rescue.new")
        .map_err(ReplaceError::NotWritable)?;
    let foreign: Vec<&str> = arrays
        .iter()
        .filter(|a| !host.iter().any(|h| h.uuid == a.uuid) && members_on(a, new).next().is_some())
        .map(|a| a.uuid.as_str())
        .collect();
    let mode = if wiped(new) || new.blank || prepared_by_replace(new, survivor, &host) {
        Mode::Rebuild
    } else if !foreign.is_empty() {
        return Err(ReplaceError::ForeignMembers(
            new.path.clone(),
            foreign.join(", "),
        ));
    } else if returning(new) {
        Mode::ReAdd
    } else {
        return Err(ReplaceError::NotBlank(new.path.clone(), describe(new)));
    };
    if mode == Mode::Rebuild && new.size_bytes < needed {
        return Err(ReplaceError::TooSmall(
            new.path.clone(),
            new.size_bytes,
            needed,
        ));
    }
    let boot_chain = BootChain::of(survivor).map_err(|e| ReplaceError::BootChain(e.to_string()))?;
    let root_part = survivor
        .partitions
        .iter()
        .find(|p| p.role.as_deref() == Some("root"))
        .map(|p| p.number);
    let mut planned = Vec::new();
    for (i, a) in host.iter().enumerate() {
        let Some(m) = members_on(a, survivor).find(|m| m.status == "in_sync") else {
            continue;
        };
        let (Some(part), Some(slot)) = (m.partition, m.slot) else {
            continue;
        };
        let (new_partition, action) = match mode {
            Mode::Rebuild => (part, MemberAction::Add),
            Mode::ReAdd => {
                let back = members_on(a, new).next();
                match back {
                    Some(b) if b.status == "in_sync" => {
                        (b.partition.unwrap_or(part), MemberAction::Nothing)
                    }
                    Some(b) => (b.partition.unwrap_or(part), MemberAction::ReAdd),
                    None if !a.degraded => (part, MemberAction::Nothing),
                    // An earlier run was cut off before this member joined: its
                    // partition is there and empty.
                    None if empty_twin(new, survivor, part).is_some() => (part, MemberAction::Add),
                    None => {
                        return Err(ReplaceError::ReAddIncomplete {
                            new: new.path.clone(),
                            uuid: a.uuid.clone(),
                            survivor: survivor.path.clone(),
                        })
                    }
                }
            }
        };
        planned.push(ReplaceArray {
            uuid: a.uuid.clone(),
            name: a.name.clone(),
            metadata: a.metadata.clone(),
            bitmap: a.bitmap,
            device: format!("/dev/md{}", 100 + i),
            survivor_partition: part,
            survivor_slot: slot,
            new_partition,
            action,
            root: Some(part) == root_part,
        });
    }
    Ok(ReplacePlan {
        survivor: DiskRef::of(survivor),
        new: DiskRef::of(new),
        mode,
        boot_chain,
        sector_size: survivor.logical_sector_size.max(512),
        arrays: planned,
        wait_resync: o.wait_resync,
    })
}

impl ReplacePlan {
    /// The plan in words, one line per step (what the dry run prints).
    pub fn lines(&self) -> Vec<String> {
        let mut l = vec![format!(
            "replace: survivor {}, new disk {} ({})",
            self.survivor.path,
            self.new.path,
            match self.mode {
                Mode::Rebuild => "rebuilt: the survivor's partition table with new GUIDs, a new member per array",
                Mode::ReAdd => "returning: its stale members re-added, the bitmap limits the recovery to what changed",
            }
        )];
        for a in &self.arrays {
            let what = a.name.clone().unwrap_or_else(|| a.uuid.clone());
            let sp = partition_name_by_rule(&self.survivor.path, a.survivor_partition);
            let np = partition_name_by_rule(&self.new.path, a.new_partition);
            l.push(match a.action {
                MemberAction::Add => format!(
                    "  {what} ({} {}): start from {sp} (slot {}), add {np}: full recovery",
                    a.metadata,
                    if a.bitmap { "bitmap" } else { "no bitmap" },
                    a.survivor_slot
                ),
                MemberAction::ReAdd => format!(
                    "  {what} ({} {}): start from {sp} (slot {}), re-add {np}{}",
                    a.metadata,
                    if a.bitmap { "bitmap" } else { "no bitmap" },
                    a.survivor_slot,
                    if a.bitmap {
                        ": only what changed"
                    } else {
                        ": full recovery (no bitmap)"
                    }
                ),
                MemberAction::Nothing => format!("  {what}: {sp} and {np} in sync, nothing to do"),
            });
        }
        l.push(format!(
            "  then the host's bootloader on {} ({})",
            self.new.path,
            self.boot_chain.describe()
        ));
        if self.wait_resync {
            l.push("  then wait for the recovery".into());
        } else if self.boot_chain.boots_after_sync() {
            l.push(format!(
                "  then wait for the recovery onto {} of the arrays its boot reads raw ({})",
                self.new.path,
                self.boot_chain.describe()
            ));
        }
        l
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::arrays::arrays;
    use crate::inspect::{Content, MdMemberState, Partition, XenServer};

    const GIB: u64 = 1 << 30;
    const ROOT: &str = "11111111:11111111:11111111:11111111";
    const LOGS: &str = "55555555:55555555:55555555:55555555";

    fn sb(events: u64, slot: u32, active: &[Option<u32>]) -> MdMemberState {
        MdMemberState {
            level: "raid1".into(),
            raid_disks: 2,
            events,
            dev_number: slot,
            role: format!("active {slot}"),
            active_slots: active.to_vec(),
            bitmap: true,
            clean: true,
            ..Default::default()
        }
    }

    fn member(n: u32, uuid: &str, name: &str, role: &str, st: MdMemberState) -> Partition {
        Partition {
            number: n,
            start_lba: 2048 + u64::from(n) * 4 * 2097152,
            size_bytes: 4 * GIB,
            content: Some(Content::MdMember {
                metadata: "1.2".into(),
                array_uuid: uuid.into(),
                name: Some(name.into()),
                data_offset: 1 << 20,
            }),
            role: Some(role.into()),
            md: Some(st),
            ..Default::default()
        }
    }

    /// A converted 7.x host's disk: root and logs members at `events`, believing `active`.
    fn host_disk(path: &str, slot: u32, events: u64, active: &[Option<u32>]) -> Disk {
        Disk {
            name: path.trim_start_matches("/dev/").into(),
            path: path.into(),
            size_bytes: 64 * GIB,
            logical_sector_size: 512,
            table: Some("gpt".into()),
            partitions: vec![
                member(1, ROOT, "xenserver:root", "root", sb(events, slot, active)),
                member(5, LOGS, "xenserver:logs", "logs", sb(events, slot, active)),
            ],
            xenserver: Some(XenServer {
                layout: "7.x".into(),
                label_suffix: "abcdef".into(),
                has_local_sr: false,
                on_md: true,
                inventory: None,
            }),
            ..Default::default()
        }
    }

    fn blank(path: &str, size: u64) -> Disk {
        Disk {
            name: path.trim_start_matches("/dev/").into(),
            path: path.into(),
            size_bytes: size,
            logical_sector_size: 512,
            blank: true,
            ..Default::default()
        }
    }

    fn plan_for(disks: &[Disk], o: &Options<'_>) -> Result<ReplacePlan, ReplaceError> {
        plan(disks, &arrays(disks), o)
    }

    fn auto() -> Options<'static> {
        Options::default()
    }

    #[test]
    fn a_blank_disk_in_the_dead_ones_place_is_rebuilt() {
        let disks = [
            host_disk("/dev/sda", 0, 90, &[Some(0), None]),
            blank("/dev/sdb", 64 * GIB),
        ];
        let p = plan_for(&disks, &auto()).unwrap();
        assert_eq!(
            (p.survivor.path.as_str(), p.new.path.as_str()),
            ("/dev/sda", "/dev/sdb")
        );
        assert_eq!(p.mode, Mode::Rebuild);
        assert_eq!(p.boot_chain, BootChain::GrubBios);
        let acts: Vec<_> = p
            .arrays
            .iter()
            .map(|a| (a.survivor_partition, a.new_partition, a.action, a.root))
            .collect();
        assert_eq!(
            acts,
            [
                (1, 1, MemberAction::Add, true),
                (5, 5, MemberAction::Add, false)
            ]
        );
        let lines = p.lines().join("\n");
        assert!(lines.contains("xenserver:root (1.2 bitmap): start from /dev/sda1 (slot 0), add /dev/sdb1: full recovery"), "{lines}");
        assert!(
            lines.contains("then the host's bootloader on /dev/sdb (GRUB2"),
            "{lines}"
        );
    }

    #[test]
    fn the_returning_disk_is_re_added_not_rebuilt() {
        let disks = [
            host_disk("/dev/sda", 0, 90, &[Some(0), None]),
            host_disk("/dev/sdb", 1, 40, &[Some(0), Some(1)]),
        ];
        let p = plan_for(&disks, &auto()).unwrap();
        assert_eq!(p.mode, Mode::ReAdd);
        assert_eq!(p.new.path, "/dev/sdb");
        assert!(p.arrays.iter().all(|a| a.action == MemberAction::ReAdd));
        assert!(p
            .lines()
            .join("\n")
            .contains("re-add /dev/sdb1: only what changed"));
        // rescue.wipe= forces a full rebuild.
        let p = plan_for(
            &disks,
            &Options {
                wipe: Some("sdb"),
                ..auto()
            },
        )
        .unwrap();
        assert_eq!(p.mode, Mode::Rebuild);
        assert!(p.arrays.iter().all(|a| a.action == MemberAction::Add));
    }

    #[test]
    fn only_the_kicked_array_is_re_added() {
        let mut back = host_disk("/dev/sdb", 1, 90, &[Some(0), Some(1)]);
        back.partitions[1].md = Some(sb(40, 1, &[Some(0), Some(1)]));
        let mut surv = host_disk("/dev/sda", 0, 90, &[Some(0), Some(1)]);
        surv.partitions[1].md = Some(sb(90, 0, &[Some(0), None]));
        let p = plan_for(&[surv, back], &auto()).unwrap();
        let acts: Vec<_> = p.arrays.iter().map(|a| a.action).collect();
        assert_eq!(acts, [MemberAction::Nothing, MemberAction::ReAdd]);
    }

    #[test]
    fn refusals_name_the_problem() {
        let healthy = [
            host_disk("/dev/sda", 0, 90, &[Some(0), Some(1)]),
            host_disk("/dev/sdb", 1, 90, &[Some(0), Some(1)]),
        ];
        let e = plan_for(&healthy, &auto()).unwrap_err();
        assert!(matches!(e, ReplaceError::NothingDegraded(_)), "{e}");
        assert!(e.to_string().contains("nothing to replace"), "{e}");

        let alone = host_disk("/dev/sda", 0, 90, &[Some(0), None]);
        let e = plan_for(
            &[alone.clone(), blank("/dev/sdb", 8 * GIB)],
            &Options {
                new: Some("sdb"),
                ..auto()
            },
        )
        .unwrap_err();
        assert!(matches!(e, ReplaceError::TooSmall(..)), "{e}");

        let e = plan_for(&[alone.clone(), blank("/dev/sdb", 8 * GIB)], &auto()).unwrap_err();
        assert!(matches!(e, ReplaceError::NoNewDisk(..)), "{e}");

        let mut used = blank("/dev/sdb", 64 * GIB);
        used.blank = false;
        used.table = Some("gpt".into());
        let e = plan_for(
            &[alone.clone(), used.clone()],
            &Options {
                new: Some("sdb"),
                ..auto()
            },
        )
        .unwrap_err();
        assert_eq!(e.to_string(), "/dev/sdb is not blank (GPT table with 0 partitions): name it in rescue.wipe= to overwrite it, or attach a blank disk");
        assert!(plan_for(
            &[alone.clone(), used],
            &Options {
                new: Some("sdb"),
                wipe: Some("/dev/sdb"),
                ..auto()
            }
        )
        .is_ok());

        let e = plan_for(
            &[alone.clone(), blank("/dev/sdb", 64 * GIB)],
            &Options {
                survivor: Some("sda"),
                new: Some("sda"),
                ..auto()
            },
        )
        .unwrap_err();
        assert!(matches!(e, ReplaceError::SameDisk(_)), "{e}");

        let mut two_hosts = alone.clone();
        if let Some(Content::MdMember { name, .. }) = &mut two_hosts.partitions[1].content {
            *name = Some("otherhost:logs".into());
        }
        let e = plan_for(&[two_hosts, blank("/dev/sdb", 64 * GIB)], &auto()).unwrap_err();
        assert!(matches!(e, ReplaceError::TwoHosts(..)), "{e}");

        // Another host's disk (members of arrays the survivor lacks) is not taken.
        let mut foreign = host_disk("/dev/sdb", 1, 5, &[Some(0), Some(1)]);
        for p in &mut foreign.partitions {
            if let Some(Content::MdMember { array_uuid, .. }) = &mut p.content {
                *array_uuid = array_uuid.replace('1', "9").replace('5', "7");
            }
        }
        let e = plan_for(
            &[alone.clone(), foreign],
            &Options {
                survivor: Some("sda"),
                new: Some("sdb"),
                ..auto()
            },
        )
        .unwrap_err();
        assert!(matches!(e, ReplaceError::ForeignMembers(..)), "{e}");

        let e = plan_for(&[blank("/dev/sda", GIB)], &auto()).unwrap_err();
        assert_eq!(e, ReplaceError::NoArrays);

        let e = plan_for(
            &[alone, blank("/dev/sdb", 64 * GIB)],
            &Options {
                survivor: Some("sdb"),
                ..auto()
            },
        )
        .unwrap_err();
        assert!(matches!(e, ReplaceError::NotASurvivor(_)), "{e}");
    }

    /// The new disk as an earlier run left it when cut off after writing the table: the
    /// survivor's partitions in their places, empty.
    fn table_only(path: &str, survivor: &Disk) -> Disk {
        let mut d = blank(path, survivor.size_bytes);
        d.blank = false;
        d.table = Some("gpt".into());
        d.partitions = survivor
            .partitions
            .iter()
            .map(|p| Partition {
                number: p.number,
                start_lba: p.start_lba,
                size_bytes: p.size_bytes,
                type_guid: p.type_guid.clone(),
                name: p.name.clone(),
                ..Default::default()
            })
            .collect();
        d
    }

    #[test]
    fn a_run_cut_off_after_the_table_is_resumed_without_wipe() {
        let alone = host_disk("/dev/sda", 0, 90, &[Some(0), None]);
        let half = table_only("/dev/sdb", &alone);
        for new in [None, Some("sdb")] {
            let p = plan_for(&[alone.clone(), half.clone()], &Options { new, ..auto() }).unwrap();
            assert_eq!((p.mode, p.new.path.as_str()), (Mode::Rebuild, "/dev/sdb"));
        }
        // The same layout with a filesystem where a member goes: another host's disk.
        let mut other = half.clone();
        other.partitions[1].content = Some(Content::Ext {
            version: "ext3".into(),
            label: None,
            uuid: "5f1c".into(),
        });
        let e = plan_for(&[alone.clone(), other.clone()], &auto()).unwrap_err();
        assert!(matches!(e, ReplaceError::NoNewDisk(..)), "{e}");
        let e = plan_for(
            &[alone.clone(), other],
            &Options {
                new: Some("sdb"),
                ..auto()
            },
        )
        .unwrap_err();
        assert!(matches!(e, ReplaceError::NotBlank(..)), "{e}");
        // Another size or place is not the survivor's table either.
        let mut moved = half;
        moved.partitions[0].start_lba += 8;
        let e = plan_for(&[alone, moved], &auto()).unwrap_err();
        assert!(matches!(e, ReplaceError::NoNewDisk(..)), "{e}");
    }

    #[test]
    fn a_run_cut_off_between_members_adds_the_rest() {
        let alone = host_disk("/dev/sda", 0, 90, &[Some(0), None]);
        // Root's member joined (and was then left behind as the survivor went on); logs'
        // partition is there, empty.
        let mut half = table_only("/dev/sdb", &alone);
        half.partitions[0] = member(
            1,
            ROOT,
            "xenserver:root",
            "root",
            sb(40, 1, &[Some(0), Some(1)]),
        );
        let p = plan_for(&[alone.clone(), half.clone()], &auto()).unwrap();
        assert_eq!(p.mode, Mode::ReAdd);
        let acts: Vec<_> = p
            .arrays
            .iter()
            .map(|a| (a.new_partition, a.action))
            .collect();
        assert_eq!(acts, [(1, MemberAction::ReAdd), (5, MemberAction::Add)]);
        // Without the empty partition it stays an error naming rescue.wipe=.
        half.partitions.pop();
        let e = plan_for(&[alone, half], &auto()).unwrap_err();
        assert!(matches!(e, ReplaceError::ReAddIncomplete { .. }), "{e}");
    }

    #[test]
    fn a_survivor_that_is_not_a_converted_xenserver_is_refused() {
        let mut d = host_disk("/dev/sda", 0, 90, &[Some(0), None]);
        d.xenserver = None;
        let e = plan_for(&[d, blank("/dev/sdb", 64 * GIB)], &auto()).unwrap_err();
        assert!(matches!(e, ReplaceError::NotXenServerOnMd(_)), "{e}");
    }
}

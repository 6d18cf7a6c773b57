//! The real `mdadm --examine` on every md member of disk images, and the check that our
//! inspect (`rescue::arrays`) reports what mdadm reports. The host kernel has no md and
//! scans no partitions on loop devices: each member is examined through a read-only loop
//! device over its partition's bytes.

use anyhow::{bail, Context, Result};
use rescue::arrays::ArrayView;
use rescue::inspect::{Content, Disk};
use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;

use crate::images;

/// Runs `f` on a read-only loop device over `len` bytes of `img` from `offset`.
pub fn on_loop<T>(
    img: &Path,
    offset: u64,
    len: u64,
    f: impl FnOnce(&str) -> Result<T>,
) -> Result<T> {
    let dev = images::run(
        Command::new("losetup")
            .args(["--find", "--show", "--read-only", "--offset"])
            .arg(offset.to_string())
            .arg("--sizelimit")
            .arg(len.to_string())
            .arg(img),
    )?;
    let dev = dev.trim().to_string();
    let r = f(&dev);
    let _ = images::run(Command::new("losetup").args(["-d", &dev]));
    r
}

/// One member as `mdadm --examine` prints it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Examined {
    /// `image#3`, as [`rescue::arrays::partition_name_by_rule`] names an image's partition.
    pub device: String,
    pub uuid: String,
    /// `1.2`, `1.0`, `0.90`.
    pub metadata: String,
    /// 1.x `homehost:name` (without mdadm's "(local to host …)").
    pub name: Option<String>,
    pub level: String,
    pub raid_devices: u32,
    pub events: u64,
    /// `active 0`, `spare`, `faulty`: inspect's form of "Device Role" (1.x) or the `this`
    /// row of the descriptor table (0.90).
    pub role: String,
    /// Per slot, whether this superblock believes it active (`A`) or not (`.`): 1.x
    /// "Array State", 0.90 the descriptor table's raid-device rows.
    pub slots: String,
    pub bitmap: bool,
    /// A recovery offset (a member being rebuilt).
    pub recovering: bool,
    pub text: String,
}

/// `mdadm --examine` of every md member inspect finds on `img`, with inspect's disk.
pub fn examine_image(img: &Path) -> Result<(Disk, Vec<Examined>)> {
    let disk = rescue::inspect::inspect_path(img)
        .map_err(|e| anyhow::anyhow!("inspect {}: {e}", img.display()))?;
    let examined = examine_members(img, &disk)?;
    Ok((disk, examined))
}

/// `mdadm --examine` of every md member of `disk`, inspect's view of the image `img`.
pub fn examine_members(img: &Path, disk: &Disk) -> Result<Vec<Examined>> {
    let mut out = Vec::new();
    for p in &disk.partitions {
        if !matches!(p.content, Some(Content::MdMember { .. })) {
            continue;
        }
        let start = p.start_lba * u64::from(disk.logical_sector_size);
        let device = rescue::arrays::partition_name_by_rule(&disk.path, p.number);
        let text = on_loop(img, start, p.size_bytes, |dev| {
            images::run(Command::new("mdadm").args(["--examine", dev]))
        })
        .with_context(|| format!("mdadm --examine {device}"))?;
        out.push(parse_examine(&device, &text)?);
    }
    Ok(out)
}

fn parse_examine(device: &str, text: &str) -> Result<Examined> {
    let fields: BTreeMap<&str, &str> = text
        .lines()
        .filter_map(|l| {
            let (k, v) = l.split_once(" : ")?;
            Some((k.trim(), v.trim()))
        })
        .collect();
    let get = |k: &str| {
        fields
            .get(k)
            .copied()
            .with_context(|| format!("{device}: mdadm --examine prints no {k:?}:\n{text}"))
    };
    let version = get("Version")?;
    let v090 = version.starts_with("0.90");
    let events = get("Events")?;
    // Old mdadm printed 0.90's events as "hi.lo".
    let events = events.rsplit('.').next().unwrap_or(events);
    let raid_devices: u32 = get("Raid Devices")?.parse()?;
    let (role, slots) = if v090 {
        // "this     0       8        1        0      active sync   /dev/sda1"
        let this = text
            .lines()
            .find(|l| l.trim_start().starts_with("this"))
            .with_context(|| format!("{device}: no `this` row:\n{text}"))?;
        let cols: Vec<&str> = this.split_whitespace().collect();
        let role = if this.contains("active") {
            format!("active {}", cols.get(4).copied().unwrap_or("?"))
        } else if this.contains("spare") {
            "spare".into()
        } else {
            "faulty".into()
        };
        // "   1     1       0        0        1      faulty removed": the row's index,
        // Number, Major, Minor, RaidDevice, State.
        let mut slots = vec!['.'; raid_devices as usize];
        for row in text
            .lines()
            .filter(|l| l.trim_start().starts_with(char::is_numeric))
        {
            let slot = row
                .split_whitespace()
                .nth(4)
                .and_then(|c| c.parse::<usize>().ok());
            if let (Some(c), true) = (slot.and_then(|s| slots.get_mut(s)), row.contains("active")) {
                *c = 'A';
            }
        }
        (role, slots.into_iter().collect())
    } else {
        let r = get("Device Role")?;
        let role = match r.strip_prefix("Active device ") {
            Some(n) => format!("active {n}"),
            None => r.to_ascii_lowercase(),
        };
        let state = get("Array State")?.split_whitespace().next().unwrap_or("");
        (role, state.to_string())
    };
    Ok(Examined {
        device: device.to_string(),
        uuid: get(if v090 { "UUID" } else { "Array UUID" })?.to_string(),
        metadata: if v090 { "0.90".into() } else { version.into() },
        name: (!v090)
            .then(|| get("Name").map(|n| n.split_whitespace().next().unwrap_or("").to_string()))
            .transpose()?,
        level: get("Raid Level")?.to_string(),
        raid_devices,
        events: events
            .parse()
            .with_context(|| format!("{device}: events"))?,
        role,
        slots,
        bitmap: fields.contains_key("Internal Bitmap"),
        recovering: fields.contains_key("Recovery Offset"),
        text: text.to_string(),
    })
}

/// What a set of disks shows: inspect's arrays, each checked against `mdadm --examine` of
/// every member. Errors name the first disagreement.
pub fn inspect_agrees_with_mdadm(images: &[&Path]) -> Result<Vec<ArrayView>> {
    let mut disks = Vec::new();
    for img in images {
        disks.push(
            rescue::inspect::inspect_path(img)
                .map_err(|e| anyhow::anyhow!("inspect {}: {e}", img.display()))?,
        );
    }
    let pairs: Vec<(&Path, &Disk)> = images.iter().copied().zip(disks.iter()).collect();
    disks_agree_with_mdadm(&pairs)
}

/// [`inspect_agrees_with_mdadm`] on disks already inspected (each with its image).
pub fn disks_agree_with_mdadm(inspected: &[(&Path, &Disk)]) -> Result<Vec<ArrayView>> {
    let mut examined = Vec::new();
    for (img, disk) in inspected {
        examined.extend(examine_members(img, disk)?);
    }
    let disks: Vec<Disk> = inspected.iter().map(|(_, d)| (*d).clone()).collect();
    let views = rescue::arrays::arrays(&disks);
    for e in &examined {
        let view = views.iter().find(|v| v.uuid == e.uuid).with_context(|| {
            format!(
                "{}: mdadm sees array {}, inspect does not",
                e.device, e.uuid
            )
        })?;
        let m = view
            .members
            .iter()
            .find(|m| m.device == e.device)
            .with_context(|| format!("{}: not a member of {} to inspect", e.device, e.uuid))?;
        let p = disks
            .iter()
            .flat_map(|d| d.partitions.iter().map(move |p| (d, p)))
            .find(|(d, p)| rescue::arrays::partition_name_by_rule(&d.path, p.number) == e.device)
            .and_then(|(_, p)| p.md.as_ref())
            .with_context(|| format!("{}: inspect has no superblock", e.device))?;
        let agree = [
            ("metadata", view.metadata.clone(), e.metadata.clone()),
            ("name", format!("{:?}", view.name), format!("{:?}", e.name)),
            ("level", view.level.clone(), e.level.clone()),
            (
                "raid devices",
                view.raid_disks.to_string(),
                e.raid_devices.to_string(),
            ),
            ("bitmap", view.bitmap.to_string(), e.bitmap.to_string()),
            ("events", m.events.to_string(), e.events.to_string()),
            ("role", p.role.clone(), e.role.clone()),
            ("array state", p.array_state.clone(), e.slots.clone()),
        ];
        for (what, ours, theirs) in agree {
            if ours != theirs {
                bail!(
                    "{} ({}): inspect says {what} {ours}, mdadm --examine {theirs}:\n{}",
                    e.device,
                    e.uuid,
                    e.text
                );
            }
        }
    }
    // The assembly verdict from mdadm's numbers: the freshest superblock names the active
    // slots (the kernel takes each member's role from it); a member in such a slot within
    // one event of it is in sync; one the freshest marks gone, or further behind, is stale
    // (what `mdadm --assemble` leaves out and `--detail` shows missing).
    for v in &views {
        let ex: Vec<&Examined> = examined.iter().filter(|e| e.uuid == v.uuid).collect();
        let Some(freshest) = ex.iter().max_by_key(|e| e.events) else {
            bail!(
                "array {}: inspect lists it, mdadm examined no member",
                v.uuid
            );
        };
        let fresh = freshest.events;
        let listed = |e: &Examined| {
            e.role
                .strip_prefix("active ")
                .and_then(|n| n.parse::<usize>().ok())
                .is_some_and(|slot| freshest.slots.chars().nth(slot) == Some('A'))
        };
        let mut in_sync = 0u32;
        for e in &ex {
            let m = v.members.iter().find(|m| m.device == e.device);
            let status = m.map(|m| m.status.as_str()).unwrap_or("?");
            // A 1.x member with a recovery offset: mdadm --detail's "spare rebuilding".
            let mdadm = if e.recovering {
                "rebuilding"
            } else if e.role.starts_with("active") {
                if listed(e) && e.events + 1 >= fresh {
                    "in_sync"
                } else {
                    "stale"
                }
            } else if e.role == "spare" {
                "spare"
            } else {
                "faulty"
            };
            in_sync += u32::from(mdadm == "in_sync");
            if status != mdadm {
                bail!(
                    "{} ({}): inspect says {status}, mdadm's events {} against {fresh} (the freshest lists {}) say {mdadm}",
                    e.device,
                    v.uuid,
                    e.events,
                    freshest.slots
                );
            }
        }
        if v.degraded != (in_sync < v.raid_disks) {
            bail!(
                "array {}: inspect says degraded={}, mdadm shows {in_sync} of {} members in sync",
                v.uuid,
                v.degraded,
                v.raid_disks
            );
        }
    }
    Ok(views)
}

/// Inspect's arrays against the running kernel's, as the probe saw them in a booted host
/// (`/proc/mdstat`'s `[n/m]` and `mdadm --detail --export`'s UUID, devices and level).
pub fn views_agree_with_detail(views: &[ArrayView], status: &serde_json::Value) -> Result<()> {
    let details = status["mdadm_detail"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let md = status["md"].as_array().cloned().unwrap_or_default();
    for v in views {
        let d = details
            .iter()
            .find(|d| d["MD_UUID"].as_str() == Some(v.uuid.as_str()))
            .with_context(|| format!("array {}: mdadm --detail does not show it", v.uuid))?;
        let dev = d["device"].as_str().unwrap_or("");
        let stat = md
            .iter()
            .find(|m| {
                m["name"]
                    .as_str()
                    .is_some_and(|n| dev.ends_with(&format!("/{n}")))
            })
            .with_context(|| format!("array {}: {dev} not in /proc/mdstat", v.uuid))?;
        let in_sync = v.members.iter().filter(|m| m.status == "in_sync").count();
        let kernel = stat["devices"].as_str().unwrap_or("");
        let ours = format!("{}/{in_sync}", v.raid_disks);
        if kernel != ours || d["MD_LEVEL"].as_str() != Some(v.level.as_str()) {
            bail!(
                "array {} ({dev}): the booted host's kernel ran [{kernel}] {}, inspect of its disk after shutdown says [{ours}] {}",
                v.uuid,
                d["MD_LEVEL"],
                v.level
            );
        }
    }
    Ok(())
}

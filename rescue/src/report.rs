//! The report contract: human lines, then exactly one machine line
//! `RESCUE-REPORT <single-line JSON>` that tests and operators' tooling parse.

use crate::cmdline::Plan;
use crate::inspect::{Content, Disk, LvContent};
use crate::units::Bytes;
use serde::{Deserialize, Serialize};

/// The prefix of the one machine-readable line.
pub const MARKER: &str = "RESCUE-REPORT";

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Report {
    /// The action that ran (`inspect`).
    pub action: String,
    /// True when the action ran and nothing in `errors`.
    pub ok: bool,
    pub errors: Vec<String>,
    /// Things worth knowing that did not stop the action (a module that failed to load).
    pub warnings: Vec<String>,
    pub plan: Plan,
    /// CLOCK_BOOTTIME when `/init` started, and when this report was printed.
    pub init_started_ms: u64,
    pub reported_ms: u64,
    /// `uname -r` of the running kernel; empty on the host CLI.
    pub kernel: String,
    pub modules_loaded: usize,
    /// Milliseconds each module's `finit_module` took (its init and the probes it waited
    /// for): where a slow boot spends its time.
    #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub module_load_ms: std::collections::BTreeMap<String, u64>,
    /// CLOCK_BOOTTIME when each module's load started: with `module_load_ms`, the
    /// timeline of the drivers' loads and probes.
    #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub module_started_ms: std::collections::BTreeMap<String, u64>,
    /// Modules loaded with options from the kernel command line (`libata force=noncq`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub module_options: Vec<String>,
    /// Modules the hardware asked for that `modprobe.blacklist` kept out.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub modules_blacklisted: Vec<String>,
    /// How long we waited for block devices to settle.
    pub settle_ms: u64,
    pub disks: Vec<Disk>,
    /// Every md array the disks hold members of, per array in sync, stale and missing.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub arrays: Vec<crate::arrays::ArrayView>,
    /// What `rescue.action=convert` planned and did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub convert: Option<crate::convert::ConvertReport>,
    /// What `rescue.action=replace` planned and did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replace: Option<crate::replace::ReplaceReport>,
    /// What `rescue.action=backup` wrote where.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backup: Option<crate::backup_job::BackupReport>,
    /// What `rescue.action=restore` read and wrote.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub restore: Option<crate::backup_job::RestoreReport>,
}

impl Report {
    /// The disks found, and the md arrays their members make up.
    pub fn set_disks(&mut self, disks: Vec<Disk>) {
        self.arrays = crate::arrays::arrays(&disks);
        self.disks = disks;
    }

    /// The machine line: the marker and the JSON on one line.
    pub fn machine_line(&self) -> String {
        // Serializing these plain types cannot fail; keep a valid line regardless.
        let json = serde_json::to_string(self).unwrap_or_else(|e| {
            format!(r#"{{"ok":false,"errors":["report serialization failed: {e}"]}}"#)
        });
        format!("{MARKER} {json}")
    }

    /// What an operator reads on the console before the machine line.
    pub fn human_lines(&self) -> Vec<String> {
        let mut lines = vec![format!(
            "rescue: {} {}",
            self.action,
            if self.ok { "finished" } else { "FAILED" }
        )];
        for e in &self.errors {
            lines.push(format!("  error: {e}"));
        }
        for w in &self.warnings {
            lines.push(format!("  warning: {w}"));
        }
        if let Some(b) = self.backup.as_ref().filter(|b| !b.directory.is_empty()) {
            lines.push(format!(
                "  backup of {} in {} on {}: {} items, {} read, {} written, {}",
                b.source,
                b.directory,
                b.target,
                b.items,
                Bytes(b.bytes_read),
                Bytes(b.bytes_written),
                if b.verified {
                    "read back ok"
                } else {
                    "NOT verified"
                }
            ));
        }
        if let Some(r) = self.restore.as_ref().filter(|r| !r.directory.is_empty()) {
            lines.push(format!(
                "  restore of {} from {} onto {}: {} items, {} written, {}",
                r.directory,
                r.from,
                r.target,
                r.items,
                Bytes(r.bytes_written),
                if r.verified {
                    "read back ok"
                } else {
                    "NOT finished"
                }
            ));
        }
        if self.disks.is_empty() {
            lines.push("  no disks found".to_string());
        }
        for d in &self.disks {
            lines.extend(disk_lines(d));
        }
        for a in &self.arrays {
            lines.push(format!("  {}", crate::arrays::human_line(a)));
        }
        lines
    }

    /// Parses the JSON after the marker in a console log (first match).
    pub fn find_in(log: &str) -> Option<Result<Report, serde_json::Error>> {
        log.lines().find_map(|l| {
            let at = l.find(MARKER)?;
            let json = l[at + MARKER.len()..].trim();
            Some(serde_json::from_str(json))
        })
    }
}

fn disk_lines(d: &Disk) -> Vec<String> {
    let bytes = Bytes(d.size_bytes);
    let mut what = match &d.table {
        Some(t) => format!(
            "{} table, {} partitions",
            t.to_uppercase(),
            d.partitions.len()
        ),
        None if d.blank => "blank".to_string(),
        None => "no partition table".to_string(),
    };
    if let Some(x) = &d.xenserver {
        what.push_str(&format!(
            ", XenServer {} install (labels *-{})",
            x.layout, x.label_suffix
        ));
    }
    let ids = [d.model.as_deref(), d.serial.as_deref()]
        .iter()
        .flatten()
        .copied()
        .collect::<Vec<_>>()
        .join(" ");
    let mut lines = vec![format!(
        "  {} ({}, {bytes}{}): {what}",
        d.name,
        d.path,
        if ids.is_empty() {
            String::new()
        } else {
            format!(", {ids}")
        }
    )];
    for p in &d.partitions {
        let fs = p.fs_type.as_deref().unwrap_or("-");
        let label = p
            .label
            .as_deref()
            .map(|l| format!(" label {l}"))
            .unwrap_or_default();
        let role = p
            .role
            .as_deref()
            .map(|r| format!(" [{r}]"))
            .unwrap_or_default();
        lines.push(format!(
            "    {:>2}: start {} size {} {fs}{label}{role}",
            p.number,
            p.start_lba,
            Bytes(p.size_bytes)
        ));
        for c in [&p.content, &p.inner].into_iter().flatten() {
            lines.extend(lvm_lines(c, "        "));
        }
    }
    if let Some(c) = &d.whole_disk {
        lines.extend(lvm_lines(c, "    "));
    }
    lines
}

/// A PV's VG and LVs, each LV with where it lies and what it holds.
fn lvm_lines(c: &Content, indent: &str) -> Vec<String> {
    let Content::LvmPv { vg, problems, .. } = c else {
        return Vec::new();
    };
    let mut lines: Vec<String> = problems
        .iter()
        .map(|p| format!("{indent}problem: {p}"))
        .collect();
    let Some(vg) = vg else {
        return lines;
    };
    let at = vg
        .pe_start_offset
        .map(|o| format!(", first extent at byte {o}"))
        .unwrap_or_default();
    lines.push(format!(
        "{indent}VG {}: {} LVs, {} extents, this PV is {} ({} in the VG){at}",
        vg.name,
        vg.lvs.len(),
        Bytes(vg.extent_size_bytes),
        vg.pv_name.as_deref().unwrap_or("not listed"),
        vg.pv_count,
    ));
    for lv in &vg.lvs {
        let segs: Vec<String> = lv
            .segments
            .iter()
            .flat_map(|s| {
                let kind = s.kind.as_str();
                let unmapped = (s.stripes.is_empty()).then(|| format!("{kind} segment"));
                s.stripes
                    .iter()
                    .map(|st| {
                        let end = st.first_pe.saturating_add(st.pe_count).saturating_sub(1);
                        let at = st.disk_offset.map(|o| format!(" @{o}")).unwrap_or_default();
                        format!("{}:{}-{end}{at}", st.pv, st.first_pe)
                    })
                    .chain(unmapped)
            })
            .collect();
        lines.push(format!(
            "{indent}  LV {} {} [{}]: {}",
            lv.name,
            Bytes(lv.size_bytes),
            segs.join(" "),
            lv_content_text(&lv.content)
        ));
        if let LvContent::PartitionTable { partitions, .. } = &lv.content {
            for p in partitions {
                let fs = p.fs_type.as_deref().unwrap_or("-");
                let label = p
                    .label
                    .as_deref()
                    .map(|l| format!(" label {l}"))
                    .unwrap_or_default();
                let disk = p
                    .disk_offset
                    .map(|o| format!(", disk offset {o}"))
                    .unwrap_or_else(|| ", not one run on this disk".into());
                lines.push(format!(
                    "{indent}    {:>2}: start {} size {} {fs}{label}: LV offset {}{disk}",
                    p.number,
                    p.start_lba,
                    Bytes(p.size_bytes),
                    p.lv_offset
                ));
            }
        }
        for p in &lv.problems {
            lines.push(format!("{indent}    problem: {p}"));
        }
    }
    lines
}

fn lv_content_text(c: &LvContent) -> String {
    match c {
        LvContent::PartitionTable {
            table, partitions, ..
        } => format!(
            "{} table, {} partition{}",
            table.to_uppercase(),
            partitions.len(),
            if partitions.len() == 1 { "" } else { "s" }
        ),
        LvContent::Filesystem { content } => {
            let (fs, label, _) = crate::inspect::summary(Some(content));
            let label = label.map(|l| format!(" label {l}")).unwrap_or_default();
            format!("{}{label}", fs.unwrap_or_default())
        }
        LvContent::Vhd(v) => {
            let parent = v
                .parent_uuid
                .as_deref()
                .map(|p| format!(", parent {p}"))
                .unwrap_or_default();
            let bad = if v.checksums_ok { "" } else { ", BAD CHECKSUM" };
            format!(
                "VHD {}, virtual size {}{parent}{bad}",
                v.disk_type,
                Bytes(v.virtual_size_bytes)
            )
        }
        LvContent::Unknown => "unknown content".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn machine_line_is_one_line_and_round_trips() {
        let r = Report {
            action: "inspect".into(),
            ok: false,
            errors: vec!["rescue.then=x: bad\nvalue".into()],
            ..Default::default()
        };
        let line = r.machine_line();
        assert!(!line.contains('\n'));
        let log = format!("noise\n[    1.0] kernel says hi\n{line}\nmore\n");
        let back = Report::find_in(&log)
            .expect("marker found")
            .expect("valid json");
        assert_eq!(back, r);
    }

    #[test]
    fn no_marker_means_none() {
        assert!(Report::find_in("just a kernel log\n").is_none());
    }
}

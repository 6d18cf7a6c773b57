//! Shell-style `KEY='value'` files of dom0 that name the disk:
//! `/etc/xensource-inventory` and `/etc/firstboot.d/data/default-storage.conf`.
//!
//! What the vendor upgrader expects (`xenserver.md`): for a host on md it reads
//! `PRIMARY_DISK` as `/dev/disk/by-id/md-uuid-<UUID>` and finds partitions by appending
//! `-partN` (XCP-ng puts the whole disk in one array). With partition-level arrays there is
//! no whole-disk md device, so `PRIMARY_DISK` names the root array (which holds dom0) and
//! `BACKUP_PARTITION` the backup array; the vendor installer's in-place upgrade of such a
//! host is not expected to work without further help. Only keys that already exist change.

use super::{lines_with_endings, Conversion, Role};

/// Sets `KEY=<quote>value<quote>` for keys already present, keeping every other byte.
fn set_keys(text: &str, values: &[(&str, String)]) -> String {
    let mut out = String::with_capacity(text.len() + 64);
    for (body, end) in lines_with_endings(text) {
        let new = body.split_once('=').and_then(|(k, v)| {
            let (_, val) = values.iter().find(|(key, _)| *key == k)?;
            let q = match v.chars().next() {
                Some(c @ ('\'' | '"')) => c.to_string(),
                _ => String::new(),
            };
            Some(format!("{k}={q}{val}{q}"))
        });
        out.push_str(new.as_deref().unwrap_or(body));
        out.push_str(end);
    }
    out
}

/// The value of `KEY` with its quotes removed.
pub fn get_key(text: &str, key: &str) -> Option<String> {
    text.lines().find_map(|l| {
        let (k, v) = l.split_once('=')?;
        (k == key).then(|| v.trim().trim_matches(|c| c == '\'' || c == '"').to_string())
    })
}

/// `/etc/xensource-inventory`: `PRIMARY_DISK` and `BACKUP_PARTITION` to the md by-id paths.
pub fn rewrite_inventory(text: &str, conv: &Conversion) -> String {
    let mut values = Vec::new();
    if let Some(root) = conv.array(Role::Root) {
        values.push(("PRIMARY_DISK", root.by_id_path()));
    }
    if let Some(b) = conv.array(Role::Backup) {
        values.push(("BACKUP_PARTITION", b.by_id_path()));
    }
    set_keys(text, &values)
}

/// `default-storage.conf`: `PARTITIONS` to the SR array when there is one.
pub fn rewrite_default_storage(text: &str, conv: &Conversion) -> String {
    match conv.array(Role::Sr) {
        Some(sr) => set_keys(text, &[("PARTITIONS", sr.by_id_path())]),
        None => text.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::target_root::testdata::conv7;

    #[test]
    fn only_existing_keys_change() {
        let inv = "BUILD_NUMBER='release/yangtze/master/58'\nPRIMARY_DISK='/dev/disk/by-id/scsi-SATA_ST1000-part0'\nINSTALLATION_UUID='abc'\n";
        let out = rewrite_inventory(inv, &conv7());
        assert_eq!(out, "BUILD_NUMBER='release/yangtze/master/58'\nPRIMARY_DISK='/dev/disk/by-id/md-uuid-b6eafb52:53b1c0ed:03b029cd:ce0fa6bf'\nINSTALLATION_UUID='abc'\n");
        assert!(!out.contains("BACKUP_PARTITION"));
        assert_eq!(get_key(&out, "INSTALLATION_UUID").as_deref(), Some("abc"));
    }

    #[test]
    fn storage_without_sr_stays() {
        let mut c = conv7();
        c.arrays.retain(|a| a.role != Role::Sr);
        let t = "TYPE='lvm'\nPARTITIONS='/dev/sda3'\n";
        assert_eq!(rewrite_default_storage(t, &c), t);
        assert!(rewrite_default_storage(t, &conv7())
            .contains("PARTITIONS='/dev/disk/by-id/md-uuid-0c082894:f0f24c6b:43bf4045:0970c253'"));
    }
}

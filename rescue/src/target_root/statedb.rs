//! xapi's database `/var/lib/xcp/state.db` (XML): the local SR's PBD keeps the partition it
//! was created on in `device_config` (`(('device' '/dev/disk/by-id/...-part3'))`). After the
//! conversion that path names a raw member, so it is replaced by the array's by-id path.
//!
//! This is a plain, careful string replacement of exact old values, each bounded by quoting
//! (`'`, `"`, `&apos;`, `&quot;`, parentheses or whitespace) so `/dev/sda3` never matches
//! inside `/dev/sda30`. Limits: only the paths given are replaced (a PBD created under
//! another alias of the same partition is missed); xapi keeps a redo log and, in a pool, the
//! master's copy wins over this file; the vendor upgrader rewrites the same field its own way.

/// Characters a device path may contain: a match must not continue into one of them.
fn is_path_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || "/-_.:+@%,=".contains(c)
}

/// Replaces every whole occurrence of each old path by `new`; returns the text and the count.
pub fn rewrite_state_db(text: &str, old_paths: &[String], new: &str) -> (String, usize) {
    let mut out = text.to_string();
    let mut count = 0;
    for old in old_paths
        .iter()
        .filter(|o| !o.is_empty() && o.as_str() != new)
    {
        let mut result = String::with_capacity(out.len());
        let mut rest = out.as_str();
        while let Some(pos) = rest.find(old.as_str()) {
            let before = rest[..pos].chars().next_back();
            let after = rest[pos + old.len()..].chars().next();
            let bounded = !before.is_some_and(is_path_char) && !after.is_some_and(is_path_char);
            result.push_str(&rest[..pos]);
            if bounded {
                result.push_str(new);
                count += 1;
            } else {
                result.push_str(old);
            }
            rest = &rest[pos + old.len()..];
        }
        result.push_str(rest);
        out = result;
    }
    (out, count)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replaces_whole_values_only() {
        let db = r#"<row device_config="(('device' '/dev/sda3'))"/><row device_config="(('device' '/dev/sda30'))"/><row x="&apos;/dev/sda3&apos;"/>"#;
        let (out, n) = rewrite_state_db(db, &["/dev/sda3".into()], "/dev/disk/by-id/md-uuid-x");
        assert_eq!(n, 2);
        assert!(out.contains("'/dev/sda30'"));
        assert!(out.contains("&apos;/dev/disk/by-id/md-uuid-x&apos;"));
        assert_eq!(
            rewrite_state_db(&out, &["/dev/sda3".into()], "/dev/disk/by-id/md-uuid-x").1,
            0
        );
    }
}

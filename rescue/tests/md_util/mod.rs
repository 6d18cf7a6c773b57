//! Shared by the md tests: member image files and `mdadm --examine` parsed.
#![allow(dead_code)]

use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::path::Path;
use std::process::Command;

/// A sparse file of `bytes`, truncated if it existed, open for reading and writing.
pub fn sparse(path: &Path, bytes: u64) -> File {
    let f = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(true)
        .open(path)
        .unwrap();
    f.set_len(bytes).unwrap();
    f
}

/// `mdadm --examine FILE` as key -> value (first occurrence), plus the raw text.
pub fn examine(path: &Path) -> (HashMap<String, String>, String) {
    let out = Command::new("mdadm")
        .arg("--examine")
        .arg(path)
        .output()
        .unwrap_or_else(|e| panic!("cannot run mdadm (install Debian package `mdadm`): {e}"));
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "mdadm --examine {} failed: {}\n{text}",
        path.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    let mut map = HashMap::new();
    for line in text.lines() {
        if let Some((k, v)) = line.split_once(" : ") {
            map.entry(k.trim().to_string())
                .or_insert_with(|| v.trim().to_string());
        }
    }
    (map, text)
}

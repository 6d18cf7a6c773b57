//! The download and fixture cache (`$XENRAID_CACHE_DIR`, default `~/.cache/xenraid`).
//!
//! Every cached artefact is built under a temporary name, checked, and only then renamed
//! to its final name; an entry found with the wrong type or failing its check is removed
//! and rebuilt with a message, never used.

use anyhow::{bail, Context, Result};
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

/// Root of the cache. `XENRAID_CACHE_DIR` overrides `~/.cache/xenraid` (a cold run is
/// `XENRAID_CACHE_DIR=$(mktemp -d) cargo xtask test`).
pub fn root() -> PathBuf {
    if let Some(dir) = std::env::var_os("XENRAID_CACHE_DIR").filter(|d| !d.is_empty()) {
        return PathBuf::from(dir);
    }
    let home = std::env::var_os("HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/root"));
    home.join(".cache").join("xenraid")
}

/// The temporary name a tar is built under: it still ends in `.tar`, because some
/// builders (mmdebstrap) choose their output format from the name and write a
/// directory for anything else.
pub fn tar_temp_name(final_tar: &Path) -> PathBuf {
    let stem = final_tar
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    final_tar.with_file_name(format!("{stem}.part.tar"))
}

/// Why a cached tar cannot be used, or `None` when it reads to the end.
pub fn tar_problem(tar: &Path) -> Option<String> {
    let meta = match fs::symlink_metadata(tar) {
        Ok(m) => m,
        Err(e) => return Some(format!("cannot read it ({e})")),
    };
    if !meta.is_file() {
        return Some("it is not a regular file (a directory where a tar belongs)".into());
    }
    if meta.len() == 0 {
        return Some("it is empty".into());
    }
    // Listing reads every header to the end: a truncated archive fails here.
    match Command::new("tar").arg("-tf").arg(tar).output() {
        Ok(o) if o.status.success() => None,
        Ok(o) => Some(format!(
            "tar cannot read it to the end: {}",
            String::from_utf8_lossy(&o.stderr).trim()
        )),
        Err(e) => Some(format!("cannot run tar ({e})")),
    }
}

/// Removes whatever stands at `path` (file, directory or symlink).
pub fn remove_any(path: &Path) -> Result<()> {
    match fs::symlink_metadata(path) {
        Ok(m) if m.is_dir() => fs::remove_dir_all(path),
        Ok(_) => fs::remove_file(path),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e),
    }
    .with_context(|| format!("cannot remove {}", path.display()))
}

/// A tar in the cache: returns `tar` if it is a good entry; otherwise takes `lock`,
/// builds with `build(temp)` into the temporary name, checks the result and renames it.
/// Builders running at the same time wait on the lock and reuse the first one's result.
pub fn ensure_tar(
    tar: &Path,
    what: &str,
    build: impl FnOnce(&Path) -> Result<()>,
) -> Result<PathBuf> {
    let dir = tar
        .parent()
        .context("cache entry has no parent directory")?;
    fs::create_dir_all(dir)?;
    if fs::symlink_metadata(tar).is_ok() && tar_problem(tar).is_none() {
        return Ok(tar.to_path_buf());
    }
    let lock_path = tar.with_extension("lock");
    let lock = fs::File::create(&lock_path)?;
    lock.lock()
        .with_context(|| format!("cannot lock {}", lock_path.display()))?;
    if fs::symlink_metadata(tar).is_ok() {
        match tar_problem(tar) {
            None => return Ok(tar.to_path_buf()),
            Some(why) => {
                eprintln!(
                    "cache: {what} {} is broken ({why}): removing it and building it again",
                    tar.display()
                );
                remove_any(tar)?;
            }
        }
    }
    let temp = tar_temp_name(tar);
    remove_any(&temp)?;
    build(&temp)?;
    if let Some(why) = tar_problem(&temp) {
        let _ = remove_any(&temp);
        bail!(
            "building {what} gave no usable tar at {} ({why}): the cache is left without it",
            temp.display()
        );
    }
    fs::rename(&temp, tar)
        .with_context(|| format!("cannot rename {} to {}", temp.display(), tar.display()))?;
    Ok(tar.to_path_buf())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn temp_dir(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("xtask-cache-{name}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&d);
        fs::create_dir_all(&d).unwrap();
        d
    }

    /// A real tar with one file, made with the real tool.
    fn write_tar(out: &Path, scratch: &Path) -> Result<()> {
        let src = scratch.join("src");
        fs::create_dir_all(&src)?;
        fs::write(src.join("hello"), vec![b'x'; 100_000])?;
        let ok = Command::new("tar")
            .arg("-cf")
            .arg(out)
            .arg("-C")
            .arg(&src)
            .arg(".")
            .status()?
            .success();
        anyhow::ensure!(ok, "tar -cf failed");
        Ok(())
    }

    #[test]
    fn temporary_tar_name_keeps_the_tar_suffix() {
        let t = tar_temp_name(Path::new("/c/base/5c2a4af3cde9d1c7.tar"));
        assert_eq!(t, Path::new("/c/base/5c2a4af3cde9d1c7.part.tar"));
        assert_eq!(t.extension().unwrap(), "tar");
    }

    #[test]
    fn a_directory_where_the_tar_belongs_is_rebuilt() {
        let d = temp_dir("dir");
        let tar = d.join("base.tar");
        fs::create_dir_all(tar.join("etc")).unwrap();
        assert!(tar_problem(&tar).unwrap().contains("not a regular file"));
        let mut built = 0;
        let got = ensure_tar(&tar, "test base", |t| {
            built += 1;
            write_tar(t, &d)
        })
        .unwrap();
        assert_eq!(built, 1);
        assert!(got.is_file());
        assert_eq!(tar_problem(&got), None);
        // A good entry is reused, not rebuilt.
        ensure_tar(&tar, "test base", |_| panic!("rebuilt a good entry")).unwrap();
        fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn a_truncated_tar_is_rebuilt() {
        let d = temp_dir("trunc");
        let tar = d.join("base.tar");
        write_tar(&tar, &d).unwrap();
        let len = fs::metadata(&tar).unwrap().len();
        fs::OpenOptions::new()
            .write(true)
            .open(&tar)
            .unwrap()
            .set_len(len / 3)
            .unwrap();
        assert!(tar_problem(&tar).is_some(), "a truncated tar was accepted");
        let mut built = false;
        ensure_tar(&tar, "test base", |t| {
            built = true;
            write_tar(t, &d)
        })
        .unwrap();
        assert!(built);
        assert_eq!(tar_problem(&tar), None);
        fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn a_builder_that_writes_a_directory_leaves_nothing_in_the_cache() {
        let d = temp_dir("wrongtype");
        let tar = d.join("base.tar");
        let err = ensure_tar(&tar, "test base", |t| {
            Ok(fs::create_dir_all(t.join("usr"))?)
        })
        .unwrap_err();
        assert!(err.to_string().contains("no usable tar"), "{err}");
        assert!(
            fs::symlink_metadata(&tar).is_err(),
            "a bad build was renamed into place"
        );
        assert!(fs::symlink_metadata(tar_temp_name(&tar)).is_err());
        fs::remove_dir_all(&d).unwrap();
    }
}

//! Applies every rewrite to the files present under a mounted target root. Each changed file
//! is first copied to `<file>.xenraid-orig` (once: an existing backup is never overwritten,
//! so after a resumed run it still holds the vendor's original), then replaced atomically
//! (temp file, fsync, rename) so a power cut leaves the old or the new file, never half.
//! Running it again changes nothing.

use super::dracut::{
    degraded_hook, device_timeout_dropin, device_unit_name, dracut_conf, module_setup,
    readwrite_hook, DEGRADED_HOOK, DRACUT_CONF_PATH, MODULES_DIR, MODULE_NAME, MODULE_SETUP,
    READWRITE_HOOK, UNIT_DROPINS,
};
use super::kernels::BOOT_CONFIGS;
use super::mdadm::{mdadm_conf_path, render_mdadm_conf};
use super::{extlinux, fstab, grub, lvm, statedb, sysconf, Conversion, Role, TargetError};
use serde::{Deserialize, Serialize};
use std::io::Write;
use std::path::{Path, PathBuf};

/// Suffix of the one-time backup copy.
pub const BACKUP_SUFFIX: &str = ".xenraid-orig";

/// A file `apply` wrote.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChangedFile {
    /// Root-relative path, as seen on the target (`/etc/fstab`).
    pub path: String,
    /// Root-relative path of the backup holding the original, when there was one.
    pub backup: Option<String>,
    /// True when the file did not exist before.
    pub created: bool,
}

const INVENTORY: &str = "/etc/xensource-inventory";
const DEFAULT_STORAGE: &str = "/etc/firstboot.d/data/default-storage.conf";
const LVM_CONFS: &[&str] = &["/etc/lvm/lvm.conf", "/etc/lvm/master/lvm.conf"];
const STATE_DB: &str = "/var/lib/xcp/state.db";

fn host(root: &Path, rel: &str) -> PathBuf {
    root.join(rel.trim_start_matches('/'))
}

fn read_text(p: &Path) -> Result<Option<String>, TargetError> {
    match std::fs::read(p) {
        Ok(b) => String::from_utf8(b)
            .map(Some)
            .map_err(|_| TargetError::NotText {
                path: p.to_path_buf(),
            }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(TargetError::io(p, e)),
    }
}

/// Writes `content` to `p` atomically, keeping the mode of the file it replaces.
fn write_atomic(
    p: &Path,
    content: &str,
    mode_from: Option<&std::fs::Metadata>,
) -> Result<(), TargetError> {
    let mut tmp = p.as_os_str().to_owned();
    tmp.push(".xenraid-tmp");
    let tmp = PathBuf::from(tmp);
    let io = |e| TargetError::io(&tmp, e);
    let mut f = std::fs::File::create(&tmp).map_err(io)?;
    f.write_all(content.as_bytes()).map_err(io)?;
    if let Some(m) = mode_from {
        f.set_permissions(m.permissions()).map_err(io)?;
    }
    f.sync_all().map_err(io)?;
    drop(f);
    std::fs::rename(&tmp, p).map_err(|e| TargetError::io(p, e))
}

/// Replaces the file at `rel` by `f(old)` when that differs; creates it when `create` gives
/// content for a missing file.
struct Writer<'a> {
    root: &'a Path,
    changed: Vec<ChangedFile>,
}

impl Writer<'_> {
    fn update(
        &mut self,
        rel: &str,
        f: impl FnOnce(&str) -> Result<String, TargetError>,
    ) -> Result<(), TargetError> {
        let p = host(self.root, rel);
        let Some(old) = read_text(&p)? else {
            return Ok(());
        };
        let new = f(&old)?;
        if new == old {
            return Ok(());
        }
        let meta = std::fs::metadata(&p).map_err(|e| TargetError::io(&p, e))?;
        let backup_rel = format!("{rel}{BACKUP_SUFFIX}");
        let backup = host(self.root, &backup_rel);
        if std::fs::symlink_metadata(&backup).is_err() {
            std::fs::copy(&p, &backup).map_err(|e| TargetError::io(&backup, e))?;
        }
        write_atomic(&p, &new, Some(&meta))?;
        self.changed.push(ChangedFile {
            path: rel.to_string(),
            backup: Some(backup_rel),
            created: false,
        });
        Ok(())
    }

    fn create_or_update(
        &mut self,
        rel: &str,
        f: impl FnOnce(Option<&str>) -> String,
    ) -> Result<(), TargetError> {
        let p = host(self.root, rel);
        match read_text(&p)? {
            Some(_) => self.update(rel, |old| Ok(f(Some(old)))),
            None => {
                write_atomic(&p, &f(None), None)?;
                self.changed.push(ChangedFile {
                    path: rel.to_string(),
                    backup: None,
                    created: true,
                });
                Ok(())
            }
        }
    }
}

/// Rewrites the target under `root` (the new root filesystem, mounted from its array).
pub fn apply(root: &Path, conv: &Conversion) -> Result<Vec<ChangedFile>, TargetError> {
    conv.validate()?;
    let mut w = Writer {
        root,
        changed: Vec::new(),
    };
    w.update("/etc/fstab", |t| Ok(fstab::rewrite_fstab(t, conv)))?;
    for cfg in BOOT_CONFIGS {
        if cfg.ends_with("extlinux.conf") {
            w.update(cfg, |t| extlinux::rewrite_extlinux(t, conv))?;
        } else {
            w.update(cfg, |t| grub::rewrite_grub_cfg(t, conv))?;
        }
    }
    let mdadm_rel = mdadm_conf_path(host(root, "/etc/mdadm").is_dir());
    w.create_or_update(mdadm_rel, |old| render_mdadm_conf(old, conv))?;
    if host(root, "/etc/dracut.conf.d").is_dir() {
        let with_module = host(root, MODULES_DIR).is_dir();
        if with_module {
            let dir = format!("{MODULES_DIR}/{MODULE_NAME}");
            let d = host(root, &dir);
            std::fs::create_dir_all(&d).map_err(|e| TargetError::io(&d, e))?;
            w.create_or_update(&format!("{dir}/{MODULE_SETUP}"), |_| module_setup())?;
            w.create_or_update(&format!("{dir}/{DEGRADED_HOOK}"), |_| degraded_hook())?;
            w.create_or_update(&format!("{dir}/{READWRITE_HOOK}"), |_| readwrite_hook())?;
            let units = host(root, &format!("{dir}/{UNIT_DROPINS}"));
            std::fs::create_dir_all(&units).map_err(|e| TargetError::io(&units, e))?;
            let (_, fs_uuid) = conv.root()?;
            let unit = device_unit_name(&format!("/dev/disk/by-uuid/{fs_uuid}"));
            w.create_or_update(&format!("{dir}/{UNIT_DROPINS}/{unit}.conf"), |_| {
                device_timeout_dropin()
            })?;
        }
        w.create_or_update(DRACUT_CONF_PATH, |_| dracut_conf(with_module))?;
    }
    w.update(INVENTORY, |t| Ok(sysconf::rewrite_inventory(t, conv)))?;

    // The SR's old path as the installer recorded it, from the untouched original if a
    // previous run already rewrote the file.
    let storage_orig = read_text(&host(root, &format!("{DEFAULT_STORAGE}{BACKUP_SUFFIX}")))?
        .or(read_text(&host(root, DEFAULT_STORAGE))?);
    w.update(DEFAULT_STORAGE, |t| {
        Ok(sysconf::rewrite_default_storage(t, conv))
    })?;
    for l in LVM_CONFS {
        w.update(l, lvm::ensure_md_component_detection)?;
    }
    if let Some(sr) = conv.array(Role::Sr) {
        let mut old: Vec<String> = conv.sr_old_devices.clone();
        if let Some(v) = storage_orig.and_then(|t| sysconf::get_key(&t, "PARTITIONS")) {
            old.extend(
                v.split_whitespace()
                    .filter(|p| p.starts_with("/dev/"))
                    .map(String::from),
            );
        }
        let new = sr.by_id_path();
        w.update(STATE_DB, |t| Ok(statedb::rewrite_state_db(t, &old, &new).0))?;
    }
    Ok(w.changed)
}

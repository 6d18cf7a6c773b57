//! The target's own tools, run in a chroot of its root: the new root (the array) mounted
//! read-write, or the source's root read-only, with /dev, /proc and /sys bound in.

use super::plan::ConvertPlan;
use super::WORK;
use crate::sys;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Instant;

/// /dev, /proc and /sys bound into a root for the target's tools; unbound on drop.
pub(super) struct Binds {
    targets: Vec<PathBuf>,
}

impl Binds {
    pub(super) fn new(root: &Path) -> Result<Binds, String> {
        let mut b = Binds {
            targets: Vec::new(),
        };
        for d in ["dev", "proc", "sys"] {
            let t = root.join(d);
            sys::bind_mount(Path::new(&format!("/{d}")), &t).map_err(|e| e.to_string())?;
            b.targets.push(t);
        }
        Ok(b)
    }
}

impl Drop for Binds {
    fn drop(&mut self) {
        for t in self.targets.iter().rev() {
            let _ = sys::unmount_lazy(t);
        }
    }
}

/// Mounts the new root (its array) read-write with the binds, runs `f`, unmounts.
pub(super) fn with_target_root<T>(
    plan: &ConvertPlan,
    f: impl FnOnce(&Path) -> Result<T, String>,
) -> Result<T, String> {
    let root = plan.root_array()?;
    let esp = plan.esp_array().map(|a| PathBuf::from(&a.device));
    mounted(Path::new(&root.device), "target", false, "", |r| {
        with_esp(r, esp.as_deref(), false, f)
    })
}

/// Mounts the source's root read-only without replaying its journal (nothing is written
/// to the source), with the binds, runs `f`, unmounts.
pub(super) fn with_source_root<T>(
    plan: &ConvertPlan,
    f: impl FnOnce(&Path) -> Result<T, String>,
) -> Result<T, String> {
    let root = plan.root_array()?;
    let part = super::partition_path(super::disk_name(&plan.source.path), root.partition)?;
    let esp = match plan.esp_array() {
        Some(a) => Some(super::partition_path(
            super::disk_name(&plan.source.path),
            a.partition,
        )?),
        None => None,
    };
    mounted(&part, "source-root", true, "noload", |r| {
        with_esp(r, esp.as_deref(), true, f)
    })
}

/// On a UEFI host, the ESP (`esp`: the array, or the source's partition) on the root's
/// `/boot/efi` while `f` runs: its grub.cfg is rewritten and its loader copied there.
fn with_esp<T>(
    root: &Path,
    esp: Option<&Path>,
    read_only: bool,
    f: impl FnOnce(&Path) -> Result<T, String>,
) -> Result<T, String> {
    let Some(esp) = esp else {
        return f(root);
    };
    let mp = root.join("boot/efi");
    if !mp.is_dir() {
        return Err(format!(
            "the host has an EFI system partition ({}) but its root has no /boot/efi to mount it on (a UEFI XenServer mounts it there): check rescue.source, or create /boot/efi on the host and run again",
            esp.display()
        ));
    }
    sys::mount(esp, &mp, "vfat", read_only, "").map_err(|e| {
        format!(
            "mount the EFI system partition {} on /boot/efi: {e}",
            esp.display()
        )
    })?;
    let r = f(root);
    sys::sync();
    let _ = sys::unmount_lazy(&mp);
    r
}

pub(crate) fn mounted<T>(
    dev: &Path,
    dir: &str,
    read_only: bool,
    opts: &str,
    f: impl FnOnce(&Path) -> Result<T, String>,
) -> Result<T, String> {
    let mp = PathBuf::from(WORK).join(dir);
    sys::mount(dev, &mp, "ext4", read_only, opts).map_err(|e| {
        let how = if read_only { " read-only" } else { "" };
        format!("mount {}{how}: {e}", dev.display())
    })?;
    let r = (|| {
        let _binds = Binds::new(&mp)?;
        f(&mp)
    })();
    sys::sync();
    let _ = sys::unmount_lazy(&mp);
    r
}

/// One run of a target program: what, how it ended, how long, and what it printed
/// (bounded: head and tail, see `sys::run_in_chroot`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ToolRun {
    pub command: String,
    pub exit_code: i32,
    pub duration_ms: u64,
    pub output: String,
}

/// Runs of the current step, taken into its report by `run_step`.
static TOOL_RUNS: Mutex<Vec<ToolRun>> = Mutex::new(Vec::new());

/// The runs recorded since the last call.
pub(crate) fn take_tool_runs() -> Vec<ToolRun> {
    TOOL_RUNS
        .lock()
        .map(|mut r| std::mem::take(&mut *r))
        .unwrap_or_default()
}

/// Runs a target program in `root`: its output goes to the console line by line as it
/// prints, and into the step's report.
fn run_tool(root: &Path, program: &str, args: &[&str]) -> Result<(i32, String), String> {
    let command = format!("{program} {}", args.join(" "));
    let _running = crate::heartbeat::running(command.clone());
    let started = Instant::now();
    let (code, output) = sys::run_in_chroot(root, program, args, &mut |line| {
        if !line.trim().is_empty() {
            super::kernel_log_line(&format!("  {program}: {line}"));
        }
    })
    .map_err(|e| e.to_string())?;
    if let Ok(mut runs) = TOOL_RUNS.lock() {
        runs.push(ToolRun {
            command,
            exit_code: code,
            duration_ms: started.elapsed().as_millis() as u64,
            output: output.clone(),
        });
    }
    Ok((code, output))
}

/// Runs a target tool in `root` and returns its exit code.
pub(crate) fn chroot_status(root: &Path, program: &str, args: &[&str]) -> Result<i32, String> {
    Ok(run_tool(root, program, args)?.0)
}

pub(crate) fn chroot_ok(root: &Path, program: &str, args: &[&str]) -> Result<(), String> {
    let (code, out) = run_tool(root, program, args)?;
    if code != 0 {
        let tail: Vec<&str> = out
            .lines()
            .rev()
            .take(15)
            .collect::<Vec<_>>()
            .into_iter()
            .rev()
            .collect();
        return Err(format!(
            "{program} {} exited with {code}: {}",
            args.join(" "),
            tail.join(" | ")
        ));
    }
    Ok(())
}

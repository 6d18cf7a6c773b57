//! PID 1: set up a machine that has no root filesystem, load the drivers, wait for the
//! disks, run the action from the kernel arguments, report, and end as `rescue.then`
//! says. Nothing here may end the process: an error becomes part of the report.

use crate::cmdline::{self, Plan, Then};
use crate::devices;
use crate::inspect;
use crate::module_loader::Modules;
use crate::report::Report;
use crate::stick;
use crate::sys;
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::Path;
use std::time::Duration;

/// How long no disk or device may appear before the disks count as settled.
///
/// Loading a driver with `finit_module` returns only after the kernel finished every
/// asynchronous probe it started (AHCI port probes, NVMe namespace scans, SCSI host
/// scans and the `sd` attach they trigger), so once a coldplug round loads nothing new
/// the disks of those buses are all there: a short margin is enough.
const SETTLE_QUIET: Duration = Duration::from_millis(100);
/// USB enumerates from a workqueue (port debounce and reset, then usb-storage's
/// `delay_use` before the SCSI scan of the stick), and SAS/RAID HBAs report disks the
/// firmware discovers late (expanders) as events after the initial scan: with either
/// present, wait longer before calling the disks settled.
const SETTLE_QUIET_SLOW: Duration = Duration::from_millis(1500);
/// Drivers whose disks may show up after their module init returned.
const LATE_DISCOVERY_DRIVERS: &[&str] = &[
    "usb_storage",
    "uas",
    "mpt3sas",
    "megaraid_sas",
    "hpsa",
    "smartpqi",
    "aacraid",
];

fn settle_quiet() -> Duration {
    let usb = std::fs::read_dir("/sys/bus/usb/devices")
        .map(|mut d| d.next().is_some())
        .unwrap_or(false);
    let late = LATE_DISCOVERY_DRIVERS
        .iter()
        .any(|m| Path::new("/sys/module").join(m).exists());
    if usb || late {
        SETTLE_QUIET_SLOW
    } else {
        SETTLE_QUIET
    }
}
const SETTLE_DEADLINE: Duration = Duration::from_secs(15);

/// Writes every line to each console the kernel arguments name (serial and VGA both),
/// or to `/dev/console` when none is named, and keeps a copy for the log file.
pub struct Console {
    outputs: Vec<File>,
    pub transcript: Vec<String>,
    /// Only the machine line and errors go to the screen.
    pub quiet: bool,
}

impl Console {
    pub fn open(names: &[String], quiet: bool) -> Console {
        let mut outputs = Vec::new();
        for name in names {
            if let Ok(f) = OpenOptions::new()
                .write(true)
                .open(Path::new("/dev").join(name))
            {
                outputs.push(f);
            }
        }
        if outputs.is_empty() {
            if let Ok(f) = OpenOptions::new().write(true).open("/dev/console") {
                outputs.push(f);
            }
        }
        Console {
            outputs,
            transcript: Vec::new(),
            quiet,
        }
    }

    /// A human line: hidden with `rescue.quiet`, always kept in the transcript.
    pub fn say(&mut self, line: &str) {
        if self.quiet {
            self.transcript.push(line.to_string());
        } else {
            self.line(line);
        }
    }

    /// A line that always reaches the console.
    pub fn line(&mut self, line: &str) {
        self.transcript.push(line.to_string());
        // Serial consoles want CRLF; one write per line keeps lines whole.
        let bytes = format!("{line}\r\n");
        for out in &mut self.outputs {
            let _ = out.write_all(bytes.as_bytes());
        }
        if self.outputs.is_empty() {
            let _ = std::io::stdout().write_all(bytes.as_bytes());
        }
    }
}

/// Everything one boot of the rescue knows.
struct Session {
    console: Console,
    report: Report,
    modules: Modules,
    plan: Plan,
    cmdline_text: String,
    stick: Option<stick::Stick>,
}

/// Runs as PID 1. Never returns.
pub fn run() -> ! {
    let init_started_ms = sys::boottime_ms();
    let mut early_errors = Vec::new();
    if let Err(e) = sys::mount_early_filesystems() {
        early_errors.push(format!(
            "early mounts failed ({e}); the kernel needs proc, sysfs and devtmpfs support"
        ));
    }
    let cmdline_text = std::fs::read_to_string("/proc/cmdline").unwrap_or_default();
    let cmdline = cmdline::parse(&cmdline_text);
    if cmdline.plan.quiet {
        let _ = sys::set_console_loglevel(1);
    }
    let mut s = Session {
        console: Console::open(&cmdline.consoles, cmdline.plan.quiet),
        report: Report {
            init_started_ms,
            kernel: sys::kernel_release(),
            errors: early_errors,
            ..Default::default()
        },
        modules: Modules::open(&cmdline.module_options, &cmdline.module_blacklist),
        plan: cmdline.plan.clone(),
        cmdline_text,
        stick: None,
    };
    s.console.say(&format!(
        "rescue: init started at {init_started_ms} ms, kernel {}",
        s.report.kernel
    ));

    // Catch panics so a bug still yields a report and the requested power action.
    let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| boot_and_run(&mut s)));
    if let Err(panic) = outcome {
        let msg = panic
            .downcast_ref::<String>()
            .cloned()
            .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
            .unwrap_or_else(|| "unknown panic".into());
        s.report
            .errors
            .push(format!("internal error (a bug, please report it): {msg}"));
    }
    finish_report(&mut s);
    let then = s.plan.then;
    finish(then, &mut s.console)
}

fn boot_and_run(s: &mut Session) {
    s.console
        .say("rescue: loading drivers and waiting for disks to settle");
    let modules = &mut s.modules;
    let settled = devices::wait_for_settle(
        Path::new("/sys/block"),
        settle_quiet,
        SETTLE_DEADLINE,
        || modules.coldplug(),
    );
    s.report.settle_ms = settled.waited.as_millis() as u64;
    s.report.warnings.append(&mut s.modules.warnings);
    for o in &s.modules.options_applied {
        s.console.say(&format!(
            "rescue: loaded {o} (from the kernel command line)"
        ));
    }
    if !settled.stable {
        s.report.warnings.push(format!(
            "block devices were still appearing after {} s; working with the disks present now",
            SETTLE_DEADLINE.as_secs()
        ));
    }

    // Every disk is read once: the stick is found among them, and inspect reports them.
    let mut disks = Vec::new();
    for d in devices::list_disks(Path::new("/sys/block")) {
        match inspect_block_disk(&d) {
            Ok(disk) => disks.push(disk),
            Err(e) => s
                .report
                .errors
                .push(format!("{}: {e}", d.dev_path.display())),
        }
    }
    let file_plan = attach_stick(s, &disks);
    // Kernel arguments win over the stick's plan file.
    let cmdline = cmdline::parse_over(&s.cmdline_text, file_plan);
    s.report
        .errors
        .extend(cmdline.errors.iter().map(|e| e.to_string()));
    s.plan = cmdline.plan;
    s.console.quiet = s.plan.quiet;
    s.report.plan = s.plan.clone();
    s.report.action = s.plan.action.as_str().to_string();

    match s.plan.action {
        cmdline::Action::Inspect => s.report.set_disks(disks),
        cmdline::Action::Backup | cmdline::Action::Restore => {
            // The plan sees every disk, the stick's too: it is a target only as `stick`.
            s.report.set_disks(disks.clone());
            if refused_for_earlier_errors(s) {
                return;
            }
            let mut ctx = ConvertServices {
                console: &mut s.console,
                modules: &mut s.modules,
            };
            if s.plan.action == cmdline::Action::Backup {
                let mut rep = crate::backup_job::BackupReport::default();
                if let Err(e) = crate::backup_job::run_backup(
                    &mut ctx,
                    &s.plan,
                    &disks,
                    s.stick.as_ref(),
                    &mut rep,
                ) {
                    s.report.errors.push(e);
                }
                s.report.backup = Some(rep);
            } else {
                let mut rep = crate::backup_job::RestoreReport::default();
                if let Err(e) = crate::backup_job::run_restore(
                    &mut ctx,
                    &s.plan,
                    &disks,
                    s.stick.as_ref(),
                    &mut rep,
                ) {
                    s.report.errors.push(e);
                }
                s.report.restore = Some(rep);
            }
        }
        cmdline::Action::Convert | cmdline::Action::Replace => {
            // The stick carries the rescue itself: never a disk to write.
            let stick_dev = s.stick.as_ref().map(|m| m.device.display().to_string());
            let candidates: Vec<inspect::Disk> = disks
                .iter()
                .filter(|d| {
                    stick_dev
                        .as_deref()
                        .is_none_or(|dev| !dev.starts_with(&d.path))
                })
                .cloned()
                .collect();
            // Named anyway, the stick gets its own refusal, not "no such disk".
            for stick in disks
                .iter()
                .filter(|d| !candidates.iter().any(|c| c.path == d.path))
            {
                let named = [
                    ("rescue.source", &s.plan.source),
                    ("rescue.mirror", &s.plan.mirror),
                    ("rescue.wipe", &s.plan.wipe),
                    ("rescue.survivor", &s.plan.survivor),
                    ("rescue.new", &s.plan.new),
                ];
                for (key, sel) in named {
                    if let Some(sel) = sel
                        .as_deref()
                        .filter(|sel| crate::convert::select::names_disk(sel, stick))
                    {
                        // The same refusal as for a stick that was not mounted.
                        if let Err(e) =
                            crate::convert::select::writable_target(stick, &format!("{key}={sel}"))
                        {
                            s.report.errors.push(e);
                        }
                    }
                }
            }
            s.report.set_disks(disks);
            if refused_for_earlier_errors(s) {
                return;
            }
            let mut ctx = ConvertServices {
                console: &mut s.console,
                modules: &mut s.modules,
            };
            if s.plan.action == cmdline::Action::Replace {
                let mut rep = crate::replace::ReplaceReport::default();
                if let Err(e) = crate::replace::run(&mut ctx, &s.plan, &candidates, &mut rep) {
                    s.report.errors.push(e);
                }
                s.report.replace = Some(rep);
            } else {
                let mut rep = crate::convert::ConvertReport::default();
                if let Err(e) = crate::convert::run(&mut ctx, &s.plan, &candidates, &mut rep) {
                    s.report.errors.push(e);
                }
                s.report.convert = Some(rep);
            }
        }
    }
}

/// An action that writes never starts after an error; the report says so.
fn refused_for_earlier_errors(s: &mut Session) -> bool {
    if s.report.errors.is_empty() {
        return false;
    }
    s.report.errors.push(format!(
        "{} not started because of the errors above: nothing was written",
        s.plan.action.as_str()
    ));
    true
}

/// The console and the module loader, as the conversion sees them.
struct ConvertServices<'a> {
    console: &'a mut Console,
    modules: &'a mut Modules,
}

impl crate::convert::Rescue for ConvertServices<'_> {
    fn say(&mut self, line: &str) {
        self.console.say(line);
    }
    fn require_modules(&mut self, names: &[&str]) -> Result<(), String> {
        self.modules.require(names)
    }
}

/// Mounts the `RESCUE` stick if there is one and returns the plan from its
/// `rescue.conf` (errors go to the report, naming the line).
fn attach_stick(s: &mut Session, disks: &[inspect::Disk]) -> Plan {
    let Some(device) = stick::find(disks) else {
        return Plan::default();
    };
    if let Err(e) = s.modules.require(&["vfat", "nls_cp437", "nls_ascii"]) {
        s.report.warnings.push(format!(
            "found the {} stick but cannot mount it: {e}",
            stick::LABEL
        ));
        return Plan::default();
    }
    let mounted = match stick::Stick::mount(&device) {
        Ok(m) => m,
        Err(e) => {
            s.report.warnings.push(e);
            return Plan::default();
        }
    };
    s.console.say(&format!(
        "rescue: using the {} stick {}{}",
        stick::LABEL,
        device.display(),
        if mounted.read_only {
            " (read-only)"
        } else {
            ""
        }
    ));
    let plan = match mounted.read_plan_file() {
        Some(text) => {
            let (plan, errors) = cmdline::parse_plan_file(stick::PLAN_FILE, &text);
            s.report.errors.extend(errors.iter().map(|e| e.to_string()));
            let clash = cmdline::conflicts(stick::PLAN_FILE, &text, &s.cmdline_text);
            s.report.errors.extend(clash.iter().map(|e| e.to_string()));
            plan
        }
        None => Plan::default(),
    };
    s.stick = Some(mounted);
    plan
}

/// Prints the report (after saving it on the stick, so the console shows whether that
/// worked), then saves the console log next to it.
fn finish_report(s: &mut Session) {
    s.report.ok = s.report.errors.is_empty();
    s.report.modules_loaded = s.modules.loaded.len();
    s.report.module_load_ms = s.modules.load_ms.clone();
    s.report.module_started_ms = s.modules.started_ms.clone();
    s.report.module_options = s.modules.options_applied.clone();
    s.report.modules_blacklisted = s.modules.blacklisted.iter().cloned().collect();
    // Kernel messages must not cut through the machine line.
    let _ = sys::set_console_loglevel(1);
    s.report.reported_ms = sys::boottime_ms();
    let stem = stick::report_stem(
        sys::unix_time(),
        &stick::host_id(
            &s.report.disks,
            s.stick.as_ref().map(|m| m.device.as_path()),
        ),
    );
    let mut saved = None;
    if let Some(st) = &s.stick {
        // The file holds exactly the JSON of the console line: decide warnings first.
        let mut probe = s.report.clone();
        match st.write_report_file(
            &stem,
            "json",
            &serde_json::to_string(&probe).unwrap_or_default(),
        ) {
            Ok(p) => saved = Some(p),
            Err(e) => {
                probe.warnings.push(e);
                s.report = probe;
            }
        }
    }
    for line in s.report.human_lines() {
        s.console.say(&line);
    }
    if let Some(p) = &saved {
        s.console.say(&format!(
            "rescue: report saved on the stick as {}",
            p.display()
        ));
    }
    let machine = s.report.machine_line();
    s.console.line(&machine);
    if let (Some(st), Some(_)) = (s.stick.take(), saved) {
        let mut log = sys::kernel_log();
        log.push_str("--- rescue console ---\n");
        for l in &s.console.transcript {
            log.push_str(l);
            log.push('\n');
        }
        if let Err(e) = st.write_report_file(&stem, "log", &log) {
            s.console.line(&format!("rescue: {e}"));
        }
        st.unmount();
    }
}

/// Inspects one kernel disk, adding the identity only sysfs knows.
pub fn inspect_block_disk(d: &devices::BlockDisk) -> anyhow::Result<inspect::Disk> {
    let mut file = File::open(&d.dev_path)?;
    let mut disk = inspect::inspect(
        &mut file,
        &d.name,
        &d.dev_path.display().to_string(),
        crate::units::Bytes(d.size_bytes),
        d.logical_sector_size,
    )?;
    disk.model = d.model.clone();
    disk.serial = d.serial.clone();
    disk.read_only = d.read_only;
    Ok(disk)
}

fn finish(then: Then, console: &mut Console) -> ! {
    let how = match then {
        Then::Poweroff => sys::Shutdown::Poweroff,
        Then::Reboot => sys::Shutdown::Reboot,
        Then::Halt => sys::Shutdown::Halt,
    };
    let err = sys::shutdown(how);
    console.line(&format!(
        "rescue: {then:?} failed ({err}); halting here, power the machine off by hand"
    ));
    loop {
        std::thread::sleep(Duration::from_secs(3600));
    }
}

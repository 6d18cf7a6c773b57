//! PID 1: set up a machine that has no root filesystem, load the drivers, wait for the
//! disks, run the action from the kernel arguments, report, and end as `rescue.then`
//! says. Nothing here may end the process: an error becomes part of the report.

use crate::cmdline::{self, Plan, Then};
use crate::devices;
use crate::inspect;
use crate::report::Report;
use crate::sys;
use std::ffi::CString;
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Where the initramfs builder lists the modules to load, in dependency order.
pub const MODULE_LOAD_ORDER: &str = "/lib/modules/load-order";

/// Quiet period and upper bound for block devices to stop appearing.
const SETTLE_QUIET: Duration = Duration::from_millis(400);
const SETTLE_DEADLINE: Duration = Duration::from_secs(15);

/// Writes every line to each console the kernel arguments name (serial and VGA both),
/// or to `/dev/console` when none is named.
pub struct Console {
    outputs: Vec<File>,
}

impl Console {
    pub fn open(names: &[String]) -> Console {
        let mut outputs = Vec::new();
        for name in names {
            if let Ok(f) = OpenOptions::new().write(true).open(Path::new("/dev").join(name)) {
                outputs.push(f);
            }
        }
        if outputs.is_empty() {
            if let Ok(f) = OpenOptions::new().write(true).open("/dev/console") {
                outputs.push(f);
            }
        }
        Console { outputs }
    }

    pub fn line(&mut self, line: &str) {
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

/// Runs as PID 1. Never returns.
pub fn run() -> ! {
    let init_started_ms = sys::boottime_ms();
    let mut report = Report { init_started_ms, ..Default::default() };
    if let Err(e) = sys::mount_early_filesystems() {
        report.errors.push(format!("early mounts failed ({e}); the kernel needs proc, sysfs and devtmpfs support"));
    }
    let cmdline_text = std::fs::read_to_string("/proc/cmdline").unwrap_or_default();
    let cmdline = cmdline::parse(&cmdline_text);
    let mut console = Console::open(&cmdline.consoles);
    let plan = cmdline.plan.clone();
    if plan.quiet {
        let _ = sys::set_console_loglevel(1);
    }
    report.errors.extend(cmdline.errors.iter().map(|e| e.to_string()));
    report.plan = plan.clone();
    report.action = plan.action.as_str().to_string();
    report.kernel = sys::kernel_release();

    let say = |console: &mut Console, line: &str| {
        if !plan.quiet {
            console.line(line);
        }
    };
    say(&mut console, &format!("rescue: init started at {init_started_ms} ms, kernel {}", report.kernel));

    // Catch panics so a bug still yields a report and the requested power action.
    let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        boot_and_run(&plan, &mut report, &mut console)
    }));
    if let Err(panic) = outcome {
        let msg = panic
            .downcast_ref::<String>()
            .cloned()
            .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
            .unwrap_or_else(|| "unknown panic".into());
        report.errors.push(format!("internal error (a bug, please report it): {msg}"));
    }

    report.ok = report.errors.is_empty();
    // Kernel messages must not cut through the machine line.
    let _ = sys::set_console_loglevel(1);
    report.reported_ms = sys::boottime_ms();
    if !plan.quiet {
        for line in report.human_lines() {
            console.line(&line);
        }
    }
    console.line(&report.machine_line());
    finish(plan.then, &mut console)
}

fn boot_and_run(plan: &Plan, report: &mut Report, console: &mut Console) {
    let (loaded, warnings) = load_modules(Path::new(MODULE_LOAD_ORDER));
    report.modules_loaded = loaded;
    report.warnings.extend(warnings);

    if !plan.quiet {
        console.line("rescue: waiting for disks to settle");
    }
    let settled = devices::wait_for_settle(Path::new("/sys/block"), SETTLE_QUIET, SETTLE_DEADLINE);
    report.settle_ms = settled.waited.as_millis() as u64;
    if !settled.stable {
        report.warnings.push(format!(
            "block devices were still appearing after {} s; reporting the disks present now",
            SETTLE_DEADLINE.as_secs()
        ));
    }

    let disks = devices::list_disks(Path::new("/sys/block"));
    match plan.action {
        cmdline::Action::Inspect => {
            for d in disks {
                match inspect_block_disk(&d) {
                    Ok(disk) => report.disks.push(disk),
                    Err(e) => report.errors.push(format!("{}: {e}", d.dev_path.display())),
                }
            }
        }
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
    Ok(disk)
}

/// Loads every module named in the load-order file. A module that fails is a warning:
/// the disks it would drive may simply not be in this machine.
fn load_modules(order_file: &Path) -> (usize, Vec<String>) {
    let list = match std::fs::read_to_string(order_file) {
        Ok(s) => s,
        Err(e) => return (0, vec![format!("{}: {e}; no modules loaded", order_file.display())]),
    };
    let mut loaded = 0;
    let mut warnings = Vec::new();
    for line in list.lines().map(str::trim).filter(|l| !l.is_empty() && !l.starts_with('#')) {
        let (path, params) = line.split_once(' ').unwrap_or((line, ""));
        let params = CString::new(params).unwrap_or_default();
        match sys::load_module(&PathBuf::from(path), &params) {
            Ok(sys::ModuleLoad::Loaded | sys::ModuleLoad::AlreadyThere) => loaded += 1,
            Ok(sys::ModuleLoad::NoDevice) => {}
            Err(e) => warnings.push(format!("module {path}: {e}")),
        }
    }
    (loaded, warnings)
}

fn finish(then: Then, console: &mut Console) -> ! {
    let how = match then {
        Then::Poweroff => sys::Shutdown::Poweroff,
        Then::Reboot => sys::Shutdown::Reboot,
        Then::Halt => sys::Shutdown::Halt,
    };
    let err = sys::shutdown(how);
    console.line(&format!("rescue: {then:?} failed ({err}); halting here, power the machine off by hand"));
    loop {
        std::thread::sleep(Duration::from_secs(3600));
    }
}

//! PID 1: set up a machine that has no root filesystem, load the drivers, wait for the
//! disks, run the action from the kernel arguments, report, and end as `rescue.then`
//! says. Nothing here may end the process: an error becomes part of the report.

use crate::cmdline::{self, Plan, Then};
use crate::devices;
use crate::inspect;
use crate::kmod;
use crate::report::Report;
use crate::sys;
use std::collections::BTreeSet;
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::Path;
use std::time::Duration;

/// Quiet period and upper bound for block devices to stop appearing.
const SETTLE_QUIET: Duration = Duration::from_millis(300);
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
    let mut report = Report {
        init_started_ms,
        ..Default::default()
    };
    if let Err(e) = sys::mount_early_filesystems() {
        report.errors.push(format!(
            "early mounts failed ({e}); the kernel needs proc, sysfs and devtmpfs support"
        ));
    }
    let cmdline_text = std::fs::read_to_string("/proc/cmdline").unwrap_or_default();
    let cmdline = cmdline::parse(&cmdline_text);
    let mut console = Console::open(&cmdline.consoles);
    let plan = cmdline.plan.clone();
    if plan.quiet {
        let _ = sys::set_console_loglevel(1);
    }
    report
        .errors
        .extend(cmdline.errors.iter().map(|e| e.to_string()));
    report.plan = plan.clone();
    report.action = plan.action.as_str().to_string();
    report.kernel = sys::kernel_release();

    let say = |console: &mut Console, line: &str| {
        if !plan.quiet {
            console.line(line);
        }
    };
    say(
        &mut console,
        &format!(
            "rescue: init started at {init_started_ms} ms, kernel {}",
            report.kernel
        ),
    );

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
        report
            .errors
            .push(format!("internal error (a bug, please report it): {msg}"));
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
    let mut modules = Modules::open();
    if !plan.quiet {
        console.line("rescue: loading drivers and waiting for disks to settle");
    }
    let settled = devices::wait_for_settle(
        Path::new("/sys/block"),
        SETTLE_QUIET,
        SETTLE_DEADLINE,
        || modules.coldplug(),
    );
    report.settle_ms = settled.waited.as_millis() as u64;
    if !settled.stable {
        report.warnings.push(format!(
            "block devices were still appearing after {} s; reporting the disks present now",
            SETTLE_DEADLINE.as_secs()
        ));
    }
    report.modules_loaded = modules.loaded.len();
    report.warnings.append(&mut modules.warnings);

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

/// Kernel modules: the index in the image, what is loaded, what went wrong.
pub struct Modules {
    index: kmod::ModuleIndex,
    pub loaded: BTreeSet<String>,
    /// Tried and failed or not applicable; never retried.
    tried: BTreeSet<String>,
    pub warnings: Vec<String>,
}

impl Modules {
    pub fn open() -> Modules {
        let mut warnings = Vec::new();
        let index = match std::fs::read_to_string(kmod::INDEX_PATH)
            .map_err(|e| e.to_string())
            .and_then(|t| kmod::ModuleIndex::parse(&t))
        {
            Ok(i) => i,
            Err(e) => {
                warnings.push(format!(
                    "{}: {e}; no modules will be loaded",
                    kmod::INDEX_PATH
                ));
                kmod::ModuleIndex::default()
            }
        };
        Modules {
            index,
            loaded: BTreeSet::new(),
            tried: BTreeSet::new(),
            warnings,
        }
    }

    /// Loads drivers for every device present that has none yet (what udev's coldplug
    /// does). Returns true when it loaded something: new devices may follow.
    pub fn coldplug(&mut self) -> bool {
        let wanted: BTreeSet<String> = self
            .index
            .matching(&devices::modaliases(Path::new("/sys/bus")))
            .into_iter()
            .filter(|m| !self.tried.contains(m))
            .collect();
        !wanted.is_empty() && self.load(&wanted) > 0
    }

    /// Loads the named modules (and their dependencies); returns how many were loaded.
    pub fn load(&mut self, names: &BTreeSet<String>) -> usize {
        let mut count = 0;
        for (name, path) in self.index.load_plan(names) {
            if self.tried.contains(&name) {
                continue;
            }
            self.tried.insert(name.clone());
            match sys::load_module(Path::new(&path), c"") {
                Ok(sys::ModuleLoad::Loaded | sys::ModuleLoad::AlreadyThere) => {
                    self.loaded.insert(name);
                    count += 1;
                }
                Ok(sys::ModuleLoad::NoDevice) => {}
                Err(e) => self.warnings.push(format!("module {name} ({path}): {e}")),
            }
        }
        count
    }

    /// Makes sure these modules are loaded, e.g. `md_mod` and `raid1` before a conversion.
    pub fn require(&mut self, names: &[&str]) -> Result<(), String> {
        let missing: Vec<&str> = names
            .iter()
            .copied()
            .filter(|n| !self.index.contains(n))
            .collect();
        if !missing.is_empty() {
            return Err(format!("modules {} are not in this image: add them to kernel-config/modules.txt and rebuild", missing.join(", ")));
        }
        self.load(&names.iter().map(|s| s.to_string()).collect());
        match names.iter().find(|n| !self.loaded.contains(**n)) {
            Some(n) => Err(format!("module {n} failed to load: see the warnings")),
            None => Ok(()),
        }
    }
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

//! Loading kernel modules: drivers for the hardware present (what udev's coldplug does)
//! and the ones a job needs (md, vfat). Every module loads on its own thread as soon as
//! the modules it depends on have loaded, so one controller's slow probe (a SATA link
//! wait) holds up only the drivers that need it. Which modules, and in what order, comes
//! from `kmod` (pure); the syscall from `sys`.

use crate::devices;
use crate::kmod;
use crate::sys;
use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::time::Instant;

/// Kernel modules: the index in the image, what is loaded, what went wrong.
pub struct Modules {
    index: kmod::ModuleIndex,
    shared: Arc<Shared>,
    pub loaded: BTreeSet<String>,
    /// How long each module's `finit_module` took, and when (CLOCK_BOOTTIME) it started.
    pub load_ms: BTreeMap<String, u64>,
    pub started_ms: BTreeMap<String, u64>,
    seen_aliases: Vec<String>,
    pub warnings: Vec<String>,
    /// Modules loaded with options from the kernel command line: `libata force=noncq`.
    pub options_applied: Vec<String>,
    /// `modprobe.blacklist`: not loaded for the hardware present.
    blacklist: BTreeSet<String>,
    /// Of those, the ones the hardware present asked for.
    pub blacklisted: BTreeSet<String>,
}

/// What the loader threads and the caller share.
#[derive(Default)]
struct Shared {
    /// The operator's options per module (kernel command line), joined.
    operator_options: BTreeMap<String, String>,
    state: Mutex<LoaderState>,
    /// Signalled whenever a load returns.
    finished_one: Condvar,
}

#[derive(Default)]
struct LoaderState {
    queue: kmod::LoadQueue,
    /// Loads that returned since the caller last looked.
    finished: Vec<Finished>,
}

struct Finished {
    name: String,
    path: String,
    started_ms: u64,
    ms: u64,
    outcome: Result<sys::ModuleLoad, String>,
    /// Why it was loaded without the operator's options (they were refused).
    options_refused: Option<String>,
}

impl Modules {
    /// `operator_options`: `module.param=value` words of the kernel command line, per
    /// module; `blacklist`: `modprobe.blacklist`.
    pub fn open(operator_options: &BTreeMap<String, Vec<String>>, blacklist: &[String]) -> Modules {
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
        let shared = Shared {
            operator_options: operator_options
                .iter()
                .map(|(m, o)| (m.clone(), o.join(" ")))
                .collect(),
            ..Shared::default()
        };
        Modules {
            index,
            shared: Arc::new(shared),
            loaded: BTreeSet::new(),
            load_ms: BTreeMap::new(),
            started_ms: BTreeMap::new(),
            seen_aliases: Vec::new(),
            warnings,
            options_applied: Vec::new(),
            blacklist: blacklist.iter().cloned().collect(),
            blacklisted: BTreeSet::new(),
        }
    }

    /// One coldplug round, without waiting: starts drivers for devices that appeared and
    /// takes note of loads that returned. Returns true while anything is happening (new
    /// devices, a load returned, loads still running): a driver's probe may still be on
    /// its way to a disk, and a load returns only after the probes it started finished.
    pub fn coldplug(&mut self) -> bool {
        let aliases = devices::modaliases(Path::new("/sys/bus"));
        let new_devices = aliases != self.seen_aliases;
        let shared = Arc::clone(&self.shared);
        let mut st = lock(&shared);
        if new_devices {
            let (held, wanted): (BTreeSet<String>, _) = self
                .index
                .matching(&aliases)
                .into_iter()
                .partition(|m| self.blacklist.contains(m));
            self.blacklisted.extend(held);
            st.queue.want(&self.index, &wanted);
            start_ready(&shared, &mut st);
        }
        self.seen_aliases = aliases;
        let returned = self.take_finished(&mut st);
        new_devices || returned || st.queue.busy()
    }

    /// Makes sure these modules are loaded, e.g. `md_mod` and `raid1` before a conversion:
    /// loads them (and their dependencies) and waits for them.
    pub fn require(&mut self, names: &[&str]) -> Result<(), String> {
        let missing: Vec<&str> = names
            .iter()
            .copied()
            .filter(|n| !self.index.contains(n))
            .collect();
        if !missing.is_empty() {
            return Err(format!("modules {} are not in this image: add them to kernel-config/modules.txt and rebuild", missing.join(", ")));
        }
        let shared = Arc::clone(&self.shared);
        let mut st = lock(&shared);
        st.queue
            .want(&self.index, &names.iter().map(|s| s.to_string()).collect());
        start_ready(&shared, &mut st);
        let mut st = shared
            .finished_one
            .wait_while(st, |st| !st.queue.finished_all(names))
            .unwrap_or_else(PoisonError::into_inner);
        self.take_finished(&mut st);
        match names.iter().find(|n| !self.loaded.contains(**n)) {
            Some(n) => Err(format!("module {n} failed to load: see the warnings")),
            None => Ok(()),
        }
    }

    /// Records the loads that returned; true when there were any.
    fn take_finished(&mut self, st: &mut LoaderState) -> bool {
        let any = !st.finished.is_empty();
        for f in st.finished.drain(..) {
            self.load_ms.insert(f.name.clone(), f.ms);
            self.started_ms.insert(f.name.clone(), f.started_ms);
            match (f.options_refused, self.shared.operator_options.get(&f.name)) {
                (Some(refused), _) => self.warnings.push(refused),
                (None, Some(o)) if f.outcome.is_ok() => {
                    self.options_applied.push(format!("{} {o}", f.name))
                }
                _ => {}
            }
            match f.outcome {
                Ok(sys::ModuleLoad::Loaded | sys::ModuleLoad::AlreadyThere) => {
                    self.loaded.insert(f.name);
                }
                Ok(sys::ModuleLoad::NoDevice) => {}
                Err(e) => self
                    .warnings
                    .push(format!("module {} ({}): {e}", f.name, f.path)),
            }
        }
        any
    }
}

fn lock(shared: &Shared) -> MutexGuard<'_, LoaderState> {
    shared.state.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Starts a thread for every queued module whose dependencies have returned.
fn start_ready(shared: &Arc<Shared>, st: &mut LoaderState) {
    loop {
        let ready = st.queue.take_ready();
        if ready.is_empty() {
            return;
        }
        for (name, path) in ready {
            let worker = Arc::clone(shared);
            let (n, p) = (name.clone(), path.clone());
            let spawned = std::thread::Builder::new()
                .name(format!("load {name}"))
                .spawn(move || load_in_background(&worker, n, p));
            if let Err(e) = spawned {
                // Its dependents may start now (and fail with the kernel's reason).
                st.queue.finish(&name);
                st.finished.push(Finished {
                    name,
                    path,
                    started_ms: sys::boottime_ms(),
                    ms: 0,
                    outcome: Err(format!("cannot start a thread to load it: {e}")),
                    options_refused: None,
                });
            }
        }
    }
}

fn load_in_background(shared: &Arc<Shared>, name: String, path: String) {
    let started_ms = sys::boottime_ms();
    let started = Instant::now();
    let operator = shared.operator_options.get(&name);
    let load = |operator: Option<&String>| {
        let params = module_params(&name, operator.map(String::as_str));
        std::panic::catch_unwind(|| sys::load_module(Path::new(&path), &params))
            .unwrap_or_else(|_| Err(std::io::Error::other("its loader thread panicked")))
    };
    let mut outcome = load(operator);
    let mut options_refused = None;
    // EINVAL: a value the module's parser refused. A typo in an option must not cost
    // the machine its disk driver: load it without.
    if let (Some(o), Err(e)) = (operator, &outcome) {
        if e.kind() == std::io::ErrorKind::InvalidInput {
            options_refused = Some(format!(
                "module {name} refused the options {o:?} from the kernel command line ({e}); loading it without them: check the option's name and value (modinfo {name})"
            ));
            outcome = load(None);
        }
    }
    let outcome = outcome.map_err(|e| e.to_string());
    let ms = started.elapsed().as_millis() as u64;
    let mut st = lock(shared);
    st.queue.finish(&name);
    st.finished.push(Finished {
        name,
        path,
        started_ms,
        ms,
        outcome,
        options_refused,
    });
    start_ready(shared, &mut st);
    drop(st);
    shared.finished_one.notify_all();
}

/// Parameters for a module's `finit_module`: the rescue's own, then the operator's (the
/// kernel applies them in order, so the operator's win).
fn module_params(name: &str, operator: Option<&str>) -> std::ffi::CString {
    let ours = match name {
        // USB disks are scanned after a 1 s delay by default; the stick is needed now.
        "usb_storage" => "delay_use=0",
        _ => "",
    };
    let all = [ours, operator.unwrap_or_default()]
        .into_iter()
        .filter(|p| !p.is_empty())
        .collect::<Vec<_>>()
        .join(" ");
    // The command line came through a NUL-terminated string: no NUL inside.
    std::ffi::CString::new(all).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::module_params;

    #[test]
    fn the_operators_options_come_after_the_rescues_own() {
        assert_eq!(module_params("ahci", None).to_str(), Ok(""));
        assert_eq!(
            module_params("usb_storage", None).to_str(),
            Ok("delay_use=0")
        );
        assert_eq!(
            module_params("usb_storage", Some("delay_use=5 quirks=0bc2:2320:u")).to_str(),
            Ok("delay_use=0 delay_use=5 quirks=0bc2:2320:u")
        );
        assert_eq!(
            module_params("libata", Some("force=noncq")).to_str(),
            Ok("force=noncq")
        );
    }
}

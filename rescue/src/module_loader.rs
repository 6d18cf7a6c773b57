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
}

/// What the loader threads and the caller share.
#[derive(Default)]
struct Shared {
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
            shared: Arc::default(),
            loaded: BTreeSet::new(),
            load_ms: BTreeMap::new(),
            started_ms: BTreeMap::new(),
            seen_aliases: Vec::new(),
            warnings,
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
            let wanted = self.index.matching(&aliases);
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
                });
            }
        }
    }
}

fn load_in_background(shared: &Arc<Shared>, name: String, path: String) {
    let started_ms = sys::boottime_ms();
    let started = Instant::now();
    let outcome = std::panic::catch_unwind(|| {
        sys::load_module(Path::new(&path), module_params(&name)).map_err(|e| e.to_string())
    })
    .unwrap_or_else(|_| Err("its loader thread panicked".into()));
    let ms = started.elapsed().as_millis() as u64;
    let mut st = lock(shared);
    st.queue.finish(&name);
    st.finished.push(Finished {
        name,
        path,
        started_ms,
        ms,
        outcome,
    });
    start_ready(shared, &mut st);
    drop(st);
    shared.finished_one.notify_all();
}

/// Parameters the rescue sets on modules it loads.
fn module_params(name: &str) -> &'static std::ffi::CStr {
    match name {
        // USB disks are scanned after a 1 s delay by default; the stick is needed now.
        "usb_storage" => c"delay_use=0",
        _ => c"",
    }
}

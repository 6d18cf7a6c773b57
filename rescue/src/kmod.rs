//! Which kernel modules to load: the module index the initramfs builder writes, and
//! matching device `modalias` strings against module aliases the way udev's coldplug
//! does, so the rescue only loads drivers for hardware that is present.
//!
//! Index format (`/lib/modules/index`, one record a line):
//! `module <name> <path-in-image> [dep,dep,...]` in load order, and
//! `alias <glob> <name>`. Pure: loading goes through `sys`.

use std::collections::{BTreeMap, BTreeSet};

pub const INDEX_PATH: &str = "/lib/modules/index";

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ModuleIndex {
    /// Module name → (path, direct deps), and names in load order.
    modules: BTreeMap<String, (String, Vec<String>)>,
    order: Vec<String>,
    aliases: Vec<(String, String)>,
}

impl ModuleIndex {
    pub fn parse(text: &str) -> Result<ModuleIndex, String> {
        let mut idx = ModuleIndex::default();
        for (n, line) in text.lines().enumerate() {
            let words: Vec<&str> = line.split_whitespace().collect();
            match words.as_slice() {
                [] => {}
                [c, ..] if c.starts_with('#') => {}
                ["module", name, path, rest @ ..] if rest.len() <= 1 => {
                    let deps = rest
                        .first()
                        .map(|d| {
                            d.split(',')
                                .filter(|s| !s.is_empty())
                                .map(String::from)
                                .collect()
                        })
                        .unwrap_or_default();
                    idx.order.push(name.to_string());
                    idx.modules
                        .insert(name.to_string(), (path.to_string(), deps));
                }
                ["alias", pattern, name] => {
                    idx.aliases.push((pattern.to_string(), name.to_string()))
                }
                _ => {
                    return Err(format!(
                        "{INDEX_PATH} line {}: cannot parse {line:?}",
                        n + 1
                    ))
                }
            }
        }
        for (_, name) in &idx.aliases {
            if !idx.modules.contains_key(name) {
                return Err(format!("{INDEX_PATH}: alias for unknown module {name}"));
            }
        }
        Ok(idx)
    }

    pub fn contains(&self, name: &str) -> bool {
        self.modules.contains_key(name)
    }

    /// Modules whose aliases match any of the device modaliases.
    pub fn matching(&self, modaliases: &[String]) -> BTreeSet<String> {
        let mut out = BTreeSet::new();
        for (pattern, name) in &self.aliases {
            if modaliases
                .iter()
                .any(|m| glob_match(pattern.as_bytes(), m.as_bytes()))
            {
                out.insert(name.clone());
            }
        }
        out
    }

    /// The given modules plus their dependencies, as (name, path) in load order.
    pub fn load_plan(&self, wanted: &BTreeSet<String>) -> Vec<(String, String)> {
        let mut need = BTreeSet::new();
        let mut stack: Vec<&str> = wanted.iter().map(String::as_str).collect();
        while let Some(name) = stack.pop() {
            if let Some((_, deps)) = self.modules.get(name) {
                if need.insert(name.to_string()) {
                    stack.extend(deps.iter().map(String::as_str));
                }
            }
        }
        self.order
            .iter()
            .filter(|n| need.contains(*n))
            .map(|n| (n.clone(), self.modules[n].0.clone()))
            .collect()
    }

    fn deps(&self, name: &str) -> &[String] {
        self.modules.get(name).map_or(&[], |(_, d)| d.as_slice())
    }
}

/// Where a module stands in a [`LoadQueue`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum LoadState {
    Waiting,
    Running,
    Finished,
}

/// Modules to load, each started as soon as the modules it depends on have finished
/// loading (loaded or failed: the kernel says which symbols are missing), so one
/// controller's slow probe does not hold up a driver that does not need it. Pure: the
/// caller starts what [`Self::take_ready`] hands out and reports back with
/// [`Self::finish`]. A module is handed out once per queue: never retried.
#[derive(Clone, Debug, Default)]
pub struct LoadQueue {
    state: BTreeMap<String, LoadState>,
    /// Waiting and running modules in load order (dependencies first).
    pending: Vec<(String, String)>,
    deps: BTreeMap<String, Vec<String>>,
}

impl LoadQueue {
    /// Queues `wanted` and their dependencies, except those queued before; returns how
    /// many were new.
    pub fn want(&mut self, index: &ModuleIndex, wanted: &BTreeSet<String>) -> usize {
        let mut new = 0;
        for (name, path) in index.load_plan(wanted) {
            if self.state.contains_key(&name) {
                continue;
            }
            self.deps.insert(name.clone(), index.deps(&name).to_vec());
            self.state.insert(name.clone(), LoadState::Waiting);
            self.pending.push((name, path));
            new += 1;
        }
        new
    }

    /// Waiting modules none of whose dependencies is waiting or running, as (name,
    /// path) in load order; they count as running from now on.
    pub fn take_ready(&mut self) -> Vec<(String, String)> {
        let mut ready = Vec::new();
        for (name, path) in &self.pending {
            if self.state[name] != LoadState::Waiting {
                continue;
            }
            if !self.deps[name].iter().any(|d| self.unfinished(d)) {
                ready.push((name.clone(), path.clone()));
            }
        }
        for (name, _) in &ready {
            self.state.insert(name.clone(), LoadState::Running);
        }
        ready
    }

    /// A running module's load returned (whatever its outcome).
    pub fn finish(&mut self, name: &str) {
        if let Some(s) = self.state.get_mut(name) {
            *s = LoadState::Finished;
        }
        self.pending.retain(|(n, _)| n != name);
    }

    /// Something is waiting or running.
    pub fn busy(&self) -> bool {
        !self.pending.is_empty()
    }

    /// Every one of `names` that was queued has finished.
    pub fn finished_all(&self, names: &[&str]) -> bool {
        !names.iter().any(|n| self.unfinished(n))
    }

    /// Queued and not finished: waiting or running.
    fn unfinished(&self, name: &str) -> bool {
        matches!(
            self.state.get(name),
            Some(LoadState::Waiting | LoadState::Running)
        )
    }
}

/// fnmatch(3) without flags: `*`, `?`, `[...]` (with `!`/`^` negation and ranges).
pub fn glob_match(pattern: &[u8], text: &[u8]) -> bool {
    let (mut p, mut t) = (0, 0);
    let mut backtrack: Option<(usize, usize)> = None;
    while t < text.len() {
        if p < pattern.len() {
            match pattern[p] {
                b'*' => {
                    backtrack = Some((p, t));
                    p += 1;
                    continue;
                }
                b'?' => {
                    p += 1;
                    t += 1;
                    continue;
                }
                b'[' => {
                    if let Some((matched, next)) = class_match(&pattern[p..], text[t]) {
                        if matched {
                            p += next;
                            t += 1;
                            continue;
                        }
                    } else if text[t] == b'[' {
                        p += 1;
                        t += 1;
                        continue;
                    }
                }
                c if c == text[t] => {
                    p += 1;
                    t += 1;
                    continue;
                }
                _ => {}
            }
        }
        match backtrack {
            Some((bp, bt)) => {
                p = bp + 1;
                t = bt + 1;
                backtrack = Some((bp, bt + 1));
            }
            None => return false,
        }
    }
    pattern[p..].iter().all(|&c| c == b'*')
}

/// Matches a `[...]` class at the start of `pattern`; returns (matched, class length),
/// or None when the bracket is not closed (then it is a literal `[`).
fn class_match(pattern: &[u8], c: u8) -> Option<(bool, usize)> {
    let mut i = 1;
    let negate = matches!(pattern.get(i), Some(b'!' | b'^'));
    if negate {
        i += 1;
    }
    let mut matched = false;
    let mut first = true;
    while i < pattern.len() {
        let ch = pattern[i];
        if ch == b']' && !first {
            return Some((matched != negate, i + 1));
        }
        first = false;
        if pattern.get(i + 1) == Some(&b'-') && pattern.get(i + 2).is_some_and(|&e| e != b']') {
            if (ch..=pattern[i + 2]).contains(&c) {
                matched = true;
            }
            i += 3;
        } else {
            if ch == c {
                matched = true;
            }
            i += 1;
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    const INDEX: &str = "\
# test index
module scsi_mod /lib/modules/k/scsi_mod.ko
module libata /lib/modules/k/libata.ko scsi_mod
module libahci /lib/modules/k/libahci.ko libata
module ahci /lib/modules/k/ahci.ko libahci,libata
module virtio_blk /lib/modules/k/virtio_blk.ko
module sd_mod /lib/modules/k/sd_mod.ko scsi_mod
alias pci:v*d*sv*sd*bc01sc06i01* ahci
alias virtio:d00000002v* virtio_blk
alias scsi:t-0x00* sd_mod
";

    #[test]
    fn matches_present_hardware_and_orders_dependencies() {
        let idx = ModuleIndex::parse(INDEX).unwrap();
        let aliases = vec![
            "pci:v00008086d00002922sv00001AF4sd00001100bc01sc06i01".to_string(),
            "virtio:d00000002v00001AF4".to_string(),
            "pci:v00001234d00001111sv00001AF4sd00001100bc03sc00i00".to_string(),
        ];
        let wanted = idx.matching(&aliases);
        assert_eq!(
            wanted.iter().map(String::as_str).collect::<Vec<_>>(),
            vec!["ahci", "virtio_blk"]
        );
        let plan: Vec<String> = idx.load_plan(&wanted).into_iter().map(|(n, _)| n).collect();
        assert_eq!(
            plan,
            vec!["scsi_mod", "libata", "libahci", "ahci", "virtio_blk"]
        );
    }

    fn names(v: Vec<(String, String)>) -> Vec<String> {
        v.into_iter().map(|(n, _)| n).collect()
    }

    #[test]
    fn a_module_starts_when_its_own_dependencies_finish_not_everyone_elses() {
        let idx = ModuleIndex::parse(INDEX).unwrap();
        let mut q = LoadQueue::default();
        let set = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<BTreeSet<_>>();
        assert_eq!(q.want(&idx, &set(&["ahci"])), 4);
        assert!(q.busy());
        assert_eq!(names(q.take_ready()), vec!["scsi_mod"]);
        // Nothing else until scsi_mod returns; asking again hands out nothing twice.
        assert!(q.take_ready().is_empty());
        // A device found meanwhile: its driver starts at once, beside the SATA chain.
        assert_eq!(q.want(&idx, &set(&["virtio_blk", "ahci"])), 1);
        assert_eq!(names(q.take_ready()), vec!["virtio_blk"]);
        q.finish("scsi_mod");
        assert_eq!(names(q.take_ready()), vec!["libata"]);
        // sd_mod needs only scsi_mod, already finished: it does not wait for libata.
        assert_eq!(q.want(&idx, &set(&["sd_mod"])), 1);
        assert_eq!(names(q.take_ready()), vec!["sd_mod"]);
        assert!(!q.finished_all(&["ahci", "virtio_blk"]));
        for m in ["virtio_blk", "sd_mod", "libata"] {
            q.finish(m);
        }
        assert!(q.finished_all(&["virtio_blk", "sd_mod"]));
        assert_eq!(names(q.take_ready()), vec!["libahci"]);
        q.finish("libahci");
        assert_eq!(names(q.take_ready()), vec!["ahci"]);
        assert!(q.busy());
        q.finish("ahci");
        assert!(!q.busy());
        assert!(q.finished_all(&["ahci", "scsi_mod"]));
        // Never handed out again, loaded or failed.
        assert_eq!(q.want(&idx, &set(&["ahci", "virtio_blk"])), 0);
        assert!(q.take_ready().is_empty());
        // Never queued: nothing to wait for.
        assert!(q.finished_all(&["vfat"]));
    }

    #[test]
    fn glob_semantics() {
        assert!(glob_match(b"scsi:t-0x00*", b"scsi:t-0x00"));
        assert!(glob_match(b"a*b*c", b"axxbyyc"));
        assert!(!glob_match(b"a*b*c", b"axxbyy"));
        assert!(glob_match(
            b"usb:v*p*d*dc*dsc*dp*ic08isc06ip50in*",
            b"usb:v46F4p0001d0000dc00dsc00dp00ic08isc06ip50in00"
        ));
        assert!(glob_match(b"x[0-9]y", b"x5y"));
        assert!(!glob_match(b"x[!0-9]y", b"x5y"));
        assert!(glob_match(b"?", b"z"));
        assert!(!glob_match(b"", b"z"));
        assert!(glob_match(b"[", b"["));
    }

    #[test]
    fn bad_index_lines_are_errors() {
        assert!(ModuleIndex::parse("modul x y\n").is_err());
        assert!(ModuleIndex::parse("alias foo* missing\n").is_err());
    }
}

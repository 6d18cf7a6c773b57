//! The kernel-argument contract (`rescue.*`), parsed into a serde-serializable [`Plan`].
//!
//! Kernel arguments are the PXE interface; a plan file on the USB stick uses the same keys,
//! so both go through [`Plan::apply`]: later actions add fields, not parsers.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fmt;

/// What the operator asked for.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Plan {
    pub action: Action,
    pub then: Then,
    /// Only the machine line on the console, and kernel messages kept quiet.
    pub quiet: bool,
    /// convert: the disk holding the XenServer install (`sda`, `/dev/sda`,
    /// `serial:<serial>` or `auto`).
    #[serde(default)]
    pub source: Option<String>,
    /// convert: the disk that becomes the mirror (same forms as `source`).
    #[serde(default)]
    pub mirror: Option<String>,
    /// convert: the mirror may be wiped although it is not blank (its name or serial).
    #[serde(default)]
    pub wipe: Option<String>,
    /// convert: print the full plan, write nothing.
    #[serde(default)]
    pub dry_run: bool,
    /// convert: md metadata per array role (`root`, `backup`, `logs`, `swap`, `sr`).
    #[serde(default)]
    pub metadata: std::collections::BTreeMap<String, String>,
    /// convert: repartition the source and add it to the arrays (default yes).
    #[serde(default)]
    pub attach_source: bool,
    /// convert: wait for the resync to finish before reporting (default no).
    #[serde(default)]
    pub wait_resync: bool,
    /// convert: an internal write-intent bitmap on every array (default yes), so a
    /// member that was briefly gone resyncs only what changed.
    #[serde(default = "yes")]
    pub bitmap: bool,
    /// convert on a UEFI host: write the firmware's boot entries (default yes); `no`
    /// relies on the removable path only (a rescue started in BIOS mode cannot write them).
    #[serde(default = "yes")]
    pub efi_entries: bool,
    /// replace: the disk that kept the host running (same forms as `source`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub survivor: Option<String>,
    /// replace: the disk put in the dead one's place, blank or returning (same forms).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub new: Option<String>,
    /// backup: where the backup goes (a disk or the stick); restore: the blank disk
    /// written.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub to: Option<Location>,
    /// restore: where the backup is (a disk or the stick), and which one of them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from: Option<Location>,
}

/// A disk, or the `RESCUE` stick, and optionally a directory on its filesystem:
/// `stick`, `stick:<dir>`, `sdc`, `/dev/sdc:<dir>`, `serial:<serial>:<dir>`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Location {
    /// `stick` or a disk selector (`sdc`, `/dev/sdc`, `serial:<serial>`).
    pub disk: String,
    /// A path relative to the filesystem's root (`host1/20261201T030000Z`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dir: Option<String>,
}

impl Location {
    pub const STICK: &'static str = "stick";

    pub fn is_stick(&self) -> bool {
        self.disk == Self::STICK
    }
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.dir {
            Some(d) => write!(f, "{}:{d}", self.disk),
            None => f.write_str(&self.disk),
        }
    }
}

fn yes() -> bool {
    true
}

impl Default for Plan {
    fn default() -> Self {
        Plan {
            action: Action::Inspect,
            then: Then::Poweroff,
            quiet: false,
            source: None,
            mirror: None,
            wipe: None,
            dry_run: false,
            metadata: Default::default(),
            attach_source: true,
            wait_resync: false,
            bitmap: true,
            efi_entries: true,
            survivor: None,
            new: None,
            to: None,
            from: None,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Action {
    /// Read every disk and report what is on it; never writes.
    Inspect,
    /// Convert a XenServer install on one disk to md RAID1 with a second disk.
    Convert,
    /// Give a converted host with degraded arrays its second disk back: a new one or the
    /// one that returned.
    Replace,
    /// Back a disk up (used blocks, compressed) into a directory on another disk or the
    /// stick.
    Backup,
    /// Write a backup onto a blank disk.
    Restore,
}

/// What the machine does once the report is out.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Then {
    Poweroff,
    Reboot,
    Halt,
}

impl Action {
    pub const CHOICES: &'static str = "inspect, convert, replace, backup, restore";
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Inspect => "inspect",
            Action::Convert => "convert",
            Action::Replace => "replace",
            Action::Backup => "backup",
            Action::Restore => "restore",
        }
    }
}

impl Then {
    pub const CHOICES: &'static str = "poweroff, reboot or halt";
}

/// One problem with one `rescue.*` argument.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ArgError {
    /// The argument as written (`rescue.then=explode`).
    pub arg: String,
    pub message: String,
}

impl fmt::Display for ArgError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.arg, self.message)
    }
}

/// The keys this build understands, for error messages.
pub const KNOWN_KEYS: &[&str] = &[
    "rescue.action",
    "rescue.then",
    "rescue.quiet",
    "rescue.source",
    "rescue.mirror",
    "rescue.wipe",
    "rescue.dry-run",
    "rescue.metadata",
    "rescue.attach-source",
    "rescue.wait-resync",
    "rescue.bitmap",
    "rescue.survivor",
    "rescue.new",
    "rescue.to",
    "rescue.from",
    "rescue.efi-entries",
];

const ROLES: &[&str] = &["root", "backup", "logs", "swap", "sr", "esp"];
const METADATA: &[&str] = &["0.90", "1.0", "1.2"];

impl Plan {
    /// Applies one `key[=value]` setting (key with its `rescue.` prefix). Used by the
    /// kernel command line and by plan files alike.
    pub fn apply(&mut self, key: &str, value: Option<&str>) -> Result<(), String> {
        match key {
            "rescue.action" => {
                self.action = match required(value)? {
                    "inspect" => Action::Inspect,
                    "convert" => Action::Convert,
                    "replace" => Action::Replace,
                    "backup" => Action::Backup,
                    "restore" => Action::Restore,
                    other => {
                        return Err(format!(
                            "unknown action {other:?}: use one of {}",
                            Action::CHOICES
                        ))
                    }
                }
            }
            "rescue.then" => {
                self.then = match required(value)? {
                    "poweroff" => Then::Poweroff,
                    "reboot" => Then::Reboot,
                    "halt" => Then::Halt,
                    other => return Err(format!("unknown value {other:?}: use {}", Then::CHOICES)),
                }
            }
            "rescue.quiet" => self.quiet = flag(value)?,
            "rescue.source" => self.source = Some(disk_selector(value)?),
            "rescue.mirror" => self.mirror = Some(disk_selector(value)?),
            "rescue.wipe" => self.wipe = Some(disk_selector(value)?),
            "rescue.survivor" => self.survivor = Some(disk_selector(value)?),
            "rescue.new" => self.new = Some(disk_selector(value)?),
            "rescue.to" => self.to = Some(to_location(value)?),
            "rescue.from" => self.from = Some(from_location(value)?),
            "rescue.dry-run" => self.dry_run = flag(value)?,
            "rescue.attach-source" => self.attach_source = flag(value)?,
            "rescue.wait-resync" => self.wait_resync = flag(value)?,
            "rescue.bitmap" => self.bitmap = flag(value)?,
            "rescue.efi-entries" => self.efi_entries = flag(value)?,
            "rescue.metadata" => self.metadata = metadata_map(required(value)?)?,
            _ => {
                return Err(format!(
                    "unknown rescue argument: remove it or use one of {}",
                    KNOWN_KEYS.join(", ")
                ))
            }
        }
        Ok(())
    }
}

fn required(value: Option<&str>) -> Result<&str, String> {
    match value {
        Some(v) if !v.is_empty() => Ok(v),
        _ => Err("needs a value (key=value)".to_string()),
    }
}

/// `sda`, `nvme0n1`, `/dev/...`, `serial:<serial>` or `auto`.
fn disk_selector(value: Option<&str>) -> Result<String, String> {
    let v = required(value)?;
    let ok = v == "auto"
        || v.strip_prefix("serial:").is_some_and(|s| !s.is_empty())
        || (v.starts_with("/dev/") && v.len() > 5)
        || (v.chars().all(|c| c.is_ascii_alphanumeric())
            && v.chars().next().is_some_and(|c| c.is_ascii_lowercase()));
    if ok {
        Ok(v.to_string())
    } else {
        Err(format!(
            "{v:?} is not a disk: use a kernel name (sda), a /dev path, serial:<serial> or auto"
        ))
    }
}

/// `rescue.to=`: `stick` or a named disk (never `auto`: a write goes where the operator
/// said), no directory (the backup makes `<host>/<time>/`).
fn to_location(value: Option<&str>) -> Result<Location, String> {
    let v = required(value)?;
    if v == "auto" {
        return Err(
            "auto is not allowed here: name the disk (sdc, /dev/sdc, serial:<serial>) or use stick"
                .into(),
        );
    }
    if v == Location::STICK {
        return Ok(Location {
            disk: v.into(),
            dir: None,
        });
    }
    if split_dir(v).1.is_some() {
        return Err(format!(
            "{v:?} names a directory: use only the disk (the backup goes into <host>/<UTC time>/ on it)"
        ));
    }
    Ok(Location {
        disk: disk_selector(Some(v))?,
        dir: None,
    })
}

/// `rescue.from=`: `stick` or a named disk, optionally `:<dir>` (a serial's own colon
/// comes first: `serial:<serial>:<dir>`).
fn from_location(value: Option<&str>) -> Result<Location, String> {
    let v = required(value)?;
    let (disk, dir) = split_dir(v);
    if disk == "auto" {
        return Err("auto is not allowed here: name the disk holding the backup (sdc, /dev/sdc, serial:<serial>) or use stick".into());
    }
    let disk = if disk == Location::STICK {
        disk.to_string()
    } else {
        disk_selector(Some(disk))?
    };
    let dir = match dir {
        None => None,
        Some(d) => {
            let d = d.trim_matches('/');
            if d.is_empty() || d.split('/').any(|c| c.is_empty() || c == "." || c == "..") {
                return Err(format!(
                    "{v:?}: the directory after the colon must be a path inside the filesystem, like host1/20261201T030000Z"
                ));
            }
            Some(d.to_string())
        }
    };
    Ok(Location { disk, dir })
}

/// Splits `disk[:dir]`; `serial:<serial>` keeps its own colon.
fn split_dir(v: &str) -> (&str, Option<&str>) {
    let skip = if v.starts_with("serial:") { 7 } else { 0 };
    match v[skip..].find(':') {
        Some(i) => (&v[..skip + i], Some(&v[skip + i + 1..])),
        None => (v, None),
    }
}

/// `1.2` for every data array, or `root:1.0,sr:1.2` per role. The ESP is only ever
/// named: firmware reads it raw, so a version for "everything" does not reach it.
fn metadata_map(v: &str) -> Result<std::collections::BTreeMap<String, String>, String> {
    let mut m = std::collections::BTreeMap::new();
    for item in v.split(',') {
        let (roles, version): (Vec<&str>, &str) = match item.split_once(':') {
            Some((r, ver)) => (vec![r], ver),
            None => (
                ROLES.iter().copied().filter(|r| *r != "esp").collect(),
                item,
            ),
        };
        if !METADATA.contains(&version) {
            return Err(format!(
                "unknown md metadata {version:?}: use {}",
                METADATA.join(", ")
            ));
        }
        for r in roles {
            if !ROLES.contains(&r) {
                return Err(format!(
                    "unknown array role {r:?}: use {}",
                    ROLES.join(", ")
                ));
            }
            m.insert(r.to_string(), version.to_string());
        }
    }
    Ok(m)
}

/// A boolean switch: bare key means yes.
fn flag(value: Option<&str>) -> Result<bool, String> {
    match value {
        None | Some("1" | "yes" | "true" | "on") => Ok(true),
        Some("0" | "no" | "false" | "off") => Ok(false),
        Some(other) => Err(format!("unknown value {other:?}: use yes or no")),
    }
}

/// The result of reading a whole command line.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Cmdline {
    pub plan: Plan,
    pub errors: Vec<ArgError>,
    /// Device names from every `console=` argument, in order (`ttyS0`, `tty0`).
    pub consoles: Vec<String>,
    /// `module.param=value` words, which modprobe hands to modules it loads (the kernel
    /// applies them only to built-in ones): module (`-` read as `_`) → `param=value` or
    /// a bare `param`, in order.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub module_options: BTreeMap<String, Vec<String>>,
    /// `modprobe.blacklist=a,b`: modules not loaded for the hardware present (a driver
    /// that hangs its probe); a job that needs one by name still loads it, as modprobe.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub module_blacklist: Vec<String>,
}

/// Parses `/proc/cmdline`. Never fails: problems land in `errors`.
pub fn parse(cmdline: &str) -> Cmdline {
    parse_over(cmdline, Plan::default())
}

/// Parses `/proc/cmdline` on top of `base` (a plan file's settings): kernel arguments win.
pub fn parse_over(cmdline: &str, base: Plan) -> Cmdline {
    let mut out = Cmdline {
        plan: base,
        ..Cmdline::default()
    };
    for word in split_words(cmdline) {
        let (key, value) = match word.split_once('=') {
            Some((k, v)) => (k, Some(v)),
            None => (word.as_str(), None),
        };
        if key == "console" {
            if let Some(v) = value {
                let dev = v.split(',').next().unwrap_or(v);
                if !dev.is_empty() && !out.consoles.iter().any(|c| c == dev) {
                    out.consoles.push(dev.to_string());
                }
            }
        } else if key.starts_with("rescue.") {
            if let Err(message) = out.plan.apply(key, value) {
                out.errors.push(ArgError {
                    arg: word.clone(),
                    message,
                });
            }
        } else if key == "modprobe.blacklist" {
            let names = value
                .unwrap_or_default()
                .split(',')
                .filter(|n| !n.is_empty());
            out.module_blacklist
                .extend(names.map(|n| n.replace('-', "_")));
        } else if let Some((module, option)) = module_option(key, value) {
            out.module_options.entry(module).or_default().push(option);
        }
    }
    out
}

/// `libata.force=noncq` → (`libata`, `force=noncq`); a value with blanks is quoted again,
/// as the kernel's own parser wants it.
fn module_option(key: &str, value: Option<&str>) -> Option<(String, String)> {
    let (module, param) = key.split_once('.')?;
    let name_ok = |s: &str| {
        !s.is_empty()
            && s.chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
    };
    if !name_ok(module) || param.is_empty() || param.contains(char::is_whitespace) {
        return None;
    }
    let option = match value {
        None => param.to_string(),
        Some(v) if v.contains(char::is_whitespace) => format!("{param}=\"{v}\""),
        Some(v) => format!("{param}={v}"),
    };
    Some((module.replace('-', "_"), option))
}

/// Parses a plan file (`rescue.conf` on the USB stick): `key = value` lines with the
/// kernel arguments' keys, `#` comments, a bare key meaning yes. Errors name the line.
pub fn parse_plan_file(name: &str, text: &str) -> (Plan, Vec<ArgError>) {
    let mut plan = Plan::default();
    let mut errors = Vec::new();
    for (n, raw) in text.lines().enumerate() {
        let line = raw.split('#').next().unwrap_or("").trim();
        if line.is_empty() {
            continue;
        }
        let (key, value) = match line.split_once('=') {
            Some((k, v)) => (k.trim(), Some(v.trim().trim_matches('"'))),
            None => (line, None),
        };
        let message = if key.contains(char::is_whitespace) {
            Some("expected `key = value`".to_string())
        } else if !key.starts_with("rescue.")
            && (key == "modprobe.blacklist" || module_option(key, value).is_some())
        {
            // Drivers are loaded before the stick can be read.
            Some("not a rescue.* key: a module option works only on the kernel command line (move it to the boot entry's kernel arguments), a rescue argument starts with rescue.".to_string())
        } else {
            plan.apply(key, value).err()
        };
        if let Some(message) = message {
            errors.push(ArgError {
                arg: format!("{name} line {}: {line}", n + 1),
                message,
            });
        }
    }
    (plan, errors)
}

/// Keys that choose what is done and which disks are written. Set to different values in
/// the plan file and on the kernel command line they are an error, not an override: the
/// disks written must not depend on which of two sources the operator forgot.
const DECISIVE_KEYS: &[&str] = &[
    "rescue.action",
    "rescue.source",
    "rescue.mirror",
    "rescue.wipe",
    "rescue.survivor",
    "rescue.new",
    "rescue.to",
    "rescue.from",
];

/// The decisive keys the plan file (`name`, its `text`) and the kernel command line set
/// to different values: one error each, naming both values.
pub fn conflicts(name: &str, text: &str, cmdline: &str) -> Vec<ArgError> {
    let mut from_file: Vec<(&str, String)> = Vec::new();
    for raw in text.lines() {
        let line = raw.split('#').next().unwrap_or("").trim();
        if let Some((k, v)) = line.split_once('=') {
            let k = k.trim();
            if DECISIVE_KEYS.contains(&k) {
                from_file.retain(|(key, _)| *key != k);
                from_file.push((k, v.trim().trim_matches('"').to_string()));
            }
        }
    }
    let mut from_cmdline: Vec<(String, String)> = Vec::new();
    for word in split_words(cmdline) {
        if let Some((k, v)) = word.split_once('=') {
            if DECISIVE_KEYS.contains(&k) {
                from_cmdline.retain(|(key, _)| key != k);
                from_cmdline.push((k.to_string(), v.to_string()));
            }
        }
    }
    from_file
        .iter()
        .filter_map(|(k, fv)| {
            let (_, cv) = from_cmdline.iter().find(|(ck, _)| ck == k)?;
            (cv != fv).then(|| ArgError {
                arg: format!("{k}={cv}"),
                message: format!(
                    "{name} says {k} = {fv} but the kernel command line says {k}={cv}: remove one of them"
                ),
            })
        })
        .collect()
}

/// Splits like the kernel does: on whitespace, with double quotes grouping
/// (`key="a b"` is one word, the quotes removed).
fn split_words(s: &str) -> Vec<String> {
    let mut words = Vec::new();
    let mut cur = String::new();
    let mut in_quotes = false;
    let mut have = false;
    for c in s.chars() {
        match c {
            '"' => {
                in_quotes = !in_quotes;
                have = true;
            }
            c if c.is_whitespace() && !in_quotes => {
                if have {
                    words.push(std::mem::take(&mut cur));
                    have = false;
                }
            }
            c => {
                cur.push(c);
                have = true;
            }
        }
    }
    if have {
        words.push(cur);
    }
    words
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decisive_keys_set_twice_differently_conflict() {
        let conf =
            "rescue.action = convert\nrescue.mirror = sdb  # the new disk\nrescue.then = reboot\n";
        let errors: Vec<String> = conflicts(
            "rescue.conf",
            conf,
            "console=ttyS0 rescue.action=convert rescue.mirror=sdc rescue.then=poweroff",
        )
        .iter()
        .map(|e| e.to_string())
        .collect();
        assert_eq!(
            errors,
            ["rescue.mirror=sdc: rescue.conf says rescue.mirror = sdb but the kernel command line says rescue.mirror=sdc: remove one of them"]
        );
        // The same value twice, or a key only one of them sets, is no conflict.
        assert!(conflicts("rescue.conf", conf, "rescue.mirror=sdb rescue.source=sda").is_empty());
        // The last setting on each side counts, as in parsing.
        assert!(conflicts(
            "rescue.conf",
            "rescue.to = sdc\nrescue.to = stick",
            "rescue.to=stick"
        )
        .is_empty());
    }

    #[test]
    fn module_options_are_collected_per_module() {
        let c = parse(
            r#"BOOT_IMAGE=/vmlinuz-6.1 root=/dev/sda1 libata.force=1:noncq,2:1.5Gbps usb-storage.delay_use=2 nvme_core.default_ps_max_latency_us=0 libata.dma=3 dm_mod.create="a b" ahci.x console=ttyS0 rescue.action=inspect .bad=1 a b.=2"#,
        );
        let got: Vec<(&str, Vec<&str>)> = c
            .module_options
            .iter()
            .map(|(m, o)| (m.as_str(), o.iter().map(String::as_str).collect()))
            .collect();
        assert_eq!(
            got,
            vec![
                ("ahci", vec!["x"]),
                ("dm_mod", vec![r#"create="a b""#]),
                ("libata", vec!["force=1:noncq,2:1.5Gbps", "dma=3"]),
                ("nvme_core", vec!["default_ps_max_latency_us=0"]),
                ("usb_storage", vec!["delay_use=2"]),
            ]
        );
        assert!(c.errors.is_empty());
        let c = parse("modprobe.blacklist=nouveau,mpt3sas modprobe.blacklist=megaraid-sas");
        assert_eq!(c.module_blacklist, ["nouveau", "mpt3sas", "megaraid_sas"]);
        assert!(c.module_options.is_empty());
    }

    #[test]
    fn defaults_when_nothing_is_given() {
        let c = parse("BOOT_IMAGE=/vmlinuz quiet console=ttyS0,115200n8\n");
        assert_eq!(c.plan, Plan::default());
        assert!(c.errors.is_empty());
        assert_eq!(c.consoles, vec!["ttyS0"]);
    }

    #[test]
    fn snapshot_of_a_full_command_line() {
        let c = parse(
            r#"console=tty0 console=ttyS0,115200 rescue.action=convert rescue.then=reboot rescue.quiet panic=-1 rescue.source=serial:S1 rescue.mirror=/dev/sdb rescue.dry-run rescue.metadata=1.2,root:1.0 rescue.wait-resync=yes rescue.bitmap=no"#,
        );
        insta::assert_json_snapshot!(c, @r#"
        {
          "plan": {
            "action": "convert",
            "then": "reboot",
            "quiet": true,
            "source": "serial:S1",
            "mirror": "/dev/sdb",
            "wipe": null,
            "dry_run": true,
            "metadata": {
              "backup": "1.2",
              "logs": "1.2",
              "root": "1.0",
              "sr": "1.2",
              "swap": "1.2"
            },
            "attach_source": true,
            "wait_resync": true,
            "bitmap": false,
            "efi_entries": true
          },
          "errors": [],
          "consoles": [
            "tty0",
            "ttyS0"
          ]
        }
        "#);
    }

    #[test]
    fn snapshot_of_bad_arguments() {
        let c = parse("rescue.then=explode rescue.acton=inspect rescue.action rescue.quiet=maybe");
        insta::assert_json_snapshot!(c.errors, @r#"
        [
          {
            "arg": "rescue.then=explode",
            "message": "unknown value \"explode\": use poweroff, reboot or halt"
          },
          {
            "arg": "rescue.acton=inspect",
            "message": "unknown rescue argument: remove it or use one of rescue.action, rescue.then, rescue.quiet, rescue.source, rescue.mirror, rescue.wipe, rescue.dry-run, rescue.metadata, rescue.attach-source, rescue.wait-resync, rescue.bitmap, rescue.survivor, rescue.new, rescue.to, rescue.from, rescue.efi-entries"
          },
          {
            "arg": "rescue.action",
            "message": "needs a value (key=value)"
          },
          {
            "arg": "rescue.quiet=maybe",
            "message": "unknown value \"maybe\": use yes or no"
          }
        ]
        "#);
        // A bad value leaves the default in place.
        assert_eq!(c.plan.then, Then::Poweroff);
    }

    #[test]
    fn plan_file_with_comments_and_a_typo() {
        let text = "# rescue.conf\nrescue.then = reboot   # after the job\n\nrescue.quiet\nrescue.acton = inspect\nrescue then\nlibata.force = noncq\n";
        let (plan, errors) = parse_plan_file("rescue.conf", text);
        assert_eq!(plan.then, Then::Reboot);
        assert!(plan.quiet);
        let shown: Vec<String> = errors.iter().map(|e| e.to_string()).collect();
        assert_eq!(
            shown,
            vec![
                "rescue.conf line 5: rescue.acton = inspect: unknown rescue argument: remove it or use one of rescue.action, rescue.then, rescue.quiet, rescue.source, rescue.mirror, rescue.wipe, rescue.dry-run, rescue.metadata, rescue.attach-source, rescue.wait-resync, rescue.bitmap, rescue.survivor, rescue.new, rescue.to, rescue.from, rescue.efi-entries",
                "rescue.conf line 6: rescue then: expected `key = value`",
                "rescue.conf line 7: libata.force = noncq: not a rescue.* key: a module option works only on the kernel command line (move it to the boot entry's kernel arguments), a rescue argument starts with rescue.",
            ]
        );
        // Kernel arguments win over the file.
        let c = parse_over("rescue.then=halt", plan);
        assert_eq!(c.plan.then, Then::Halt);
        assert!(c.plan.quiet);
    }

    #[test]
    fn bad_convert_values_are_refused() {
        let c = parse("rescue.source=sd-a rescue.mirror=serial: rescue.metadata=root:2.0 rescue.metadata=home:1.0 rescue.attach-source=perhaps");
        let args: Vec<&str> = c.errors.iter().map(|e| e.arg.as_str()).collect();
        assert_eq!(
            args,
            vec![
                "rescue.source=sd-a",
                "rescue.mirror=serial:",
                "rescue.metadata=root:2.0",
                "rescue.metadata=home:1.0",
                "rescue.attach-source=perhaps"
            ]
        );
        assert_eq!(c.plan.source, None);
        assert!(c.plan.attach_source, "a bad value leaves the default");
    }

    #[test]
    fn bitmap_is_on_unless_turned_off() {
        assert!(parse("").plan.bitmap);
        assert!(!parse("rescue.bitmap=no").plan.bitmap);
        assert!(parse("rescue.bitmap=no rescue.bitmap").plan.bitmap);
        let c = parse("rescue.bitmap=internal");
        assert_eq!(
            c.errors[0].message,
            "unknown value \"internal\": use yes or no"
        );
        assert!(c.plan.bitmap, "a bad value leaves the default");
        // A plan serialized before the key existed reads back with the default.
        let mut v = serde_json::to_value(Plan::default()).unwrap();
        v.as_object_mut().unwrap().remove("bitmap");
        assert!(serde_json::from_value::<Plan>(v).unwrap().bitmap);
    }

    #[test]
    fn quotes_group_words() {
        assert_eq!(split_words(r#"a="b c" d"#), vec!["a=b c", "d"]);
        assert_eq!(split_words("  "), Vec::<String>::new());
        assert_eq!(split_words(r#"x="""#), vec!["x="]);
    }

    #[test]
    fn backup_and_restore_arguments() {
        let c = parse("rescue.action=backup rescue.source=auto rescue.to=sdc rescue.wipe=sdc");
        assert!(c.errors.is_empty(), "{:?}", c.errors);
        assert_eq!(c.plan.action, Action::Backup);
        insta::assert_json_snapshot!(c.plan.to, @r#"
        {
          "disk": "sdc"
        }
        "#);
        let c = parse("rescue.action=backup rescue.source=serial:S1 rescue.to=stick");
        assert!(c.plan.to.as_ref().is_some_and(Location::is_stick));
        let c = parse("rescue.action=restore rescue.from=serial:WD-1:host1/20261201T030000Z rescue.to=/dev/sdb");
        assert!(c.errors.is_empty(), "{:?}", c.errors);
        assert_eq!(c.plan.action, Action::Restore);
        insta::assert_json_snapshot!((&c.plan.from, &c.plan.to), @r#"
        [
          {
            "disk": "serial:WD-1",
            "dir": "host1/20261201T030000Z"
          },
          {
            "disk": "/dev/sdb"
          }
        ]
        "#);
        for (arg, disk, dir) in [
            ("stick", "stick", None),
            ("stick:h/t/", "stick", Some("h/t")),
            (
                "sdc:XSFIXTURE7/20261201T030000Z",
                "sdc",
                Some("XSFIXTURE7/20261201T030000Z"),
            ),
            ("/dev/nvme0n1", "/dev/nvme0n1", None),
            ("serial:ABC", "serial:ABC", None),
        ] {
            let from = parse(&format!("rescue.from={arg}")).plan.from.unwrap();
            assert_eq!(
                (from.disk.as_str(), from.dir.as_deref()),
                (disk, dir),
                "{arg}"
            );
            assert_eq!(from.to_string(), arg.trim_end_matches('/'));
        }
        // The plan as the report shows it leaves unset keys out.
        let v = serde_json::to_value(parse("").plan).unwrap();
        assert!(v.get("to").is_none() && v.get("from").is_none());
    }

    #[test]
    fn bad_backup_and_restore_values_are_refused_one_line_each() {
        let c = parse("rescue.action=backups rescue.to=auto rescue.to=sdc:dir rescue.to rescue.from=auto:x rescue.from=stick:../etc rescue.from=sdc: rescue.from=sd-c rescue.to=serial:");
        insta::assert_json_snapshot!(c.errors, @r#"
        [
          {
            "arg": "rescue.action=backups",
            "message": "unknown action \"backups\": use one of inspect, convert, replace, backup, restore"
          },
          {
            "arg": "rescue.to=auto",
            "message": "auto is not allowed here: name the disk (sdc, /dev/sdc, serial:<serial>) or use stick"
          },
          {
            "arg": "rescue.to=sdc:dir",
            "message": "\"sdc:dir\" names a directory: use only the disk (the backup goes into <host>/<UTC time>/ on it)"
          },
          {
            "arg": "rescue.to",
            "message": "needs a value (key=value)"
          },
          {
            "arg": "rescue.from=auto:x",
            "message": "auto is not allowed here: name the disk holding the backup (sdc, /dev/sdc, serial:<serial>) or use stick"
          },
          {
            "arg": "rescue.from=stick:../etc",
            "message": "\"stick:../etc\": the directory after the colon must be a path inside the filesystem, like host1/20261201T030000Z"
          },
          {
            "arg": "rescue.from=sdc:",
            "message": "\"sdc:\": the directory after the colon must be a path inside the filesystem, like host1/20261201T030000Z"
          },
          {
            "arg": "rescue.from=sd-c",
            "message": "\"sd-c\" is not a disk: use a kernel name (sda), a /dev path, serial:<serial> or auto"
          },
          {
            "arg": "rescue.to=serial:",
            "message": "\"serial:\" is not a disk: use a kernel name (sda), a /dev path, serial:<serial> or auto"
          }
        ]
        "#);
        for e in &c.errors {
            assert!(!e.to_string().contains('\n'), "{e}");
        }
        assert_eq!(
            c.plan.action,
            Action::Inspect,
            "a bad value leaves the default"
        );
        assert_eq!((c.plan.to, c.plan.from), (None, None));
    }

    #[test]
    fn last_setting_wins_like_the_kernel() {
        let c = parse("rescue.then=halt rescue.then=reboot rescue.quiet rescue.quiet=no");
        assert_eq!(c.plan.then, Then::Reboot);
        assert!(!c.plan.quiet);
    }
}

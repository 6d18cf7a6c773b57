//! A QEMU virtual machine for tests: built with [`VmBuilder`], serial console captured
//! to a file, killed on drop. When a wait fails the error carries the reproducer command
//! line and the whole console log.

use anyhow::{anyhow, bail, Context};
use rescue::report::Report;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// How a disk is attached.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Bus {
    Virtio,
    /// SATA through an AHCI controller.
    Ahci,
    Nvme,
    /// SCSI disk on a virtio-scsi controller.
    VirtioScsi,
    /// USB mass storage on an xHCI controller.
    Usb,
}

impl Bus {
    /// The kernel name prefix this bus gives a disk inside the guest.
    pub fn kernel_prefix(self) -> &'static str {
        match self {
            Bus::Virtio => "vd",
            Bus::Ahci | Bus::VirtioScsi | Bus::Usb => "sd",
            Bus::Nvme => "nvme",
        }
    }
}

#[derive(Clone, Debug)]
pub struct Disk {
    pub path: PathBuf,
    pub bus: Bus,
    pub serial: Option<String>,
    pub format: &'static str,
    /// Writes go to a temporary overlay, the file stays untouched.
    pub snapshot: bool,
    pub bootindex: Option<u32>,
    /// QEMU refuses writes (`readonly=on`): the guest sees a write-protected disk.
    pub read_only: bool,
    /// Logical and physical sector size the guest sees (512 when `None`).
    pub sector_size: Option<u32>,
    /// A QEMU blkdebug rules file: the I/O errors to inject.
    pub faults: Option<PathBuf>,
    /// QEMU's write throttling (`throttling.bps-write`), bytes per second: a slow disk,
    /// so a test can act while a copy onto it is still running.
    pub write_limit: Option<u64>,
}

impl Disk {
    pub fn new(path: &Path, bus: Bus) -> Disk {
        Disk {
            path: path.into(),
            bus,
            serial: None,
            format: "raw",
            snapshot: false,
            bootindex: None,
            read_only: false,
            sector_size: None,
            faults: None,
            write_limit: None,
        }
    }
    pub fn serial(mut self, s: &str) -> Disk {
        self.serial = Some(s.into());
        self
    }
    pub fn format(mut self, f: &'static str) -> Disk {
        self.format = f;
        self
    }
    pub fn snapshot(mut self) -> Disk {
        self.snapshot = true;
        self
    }
    pub fn bootindex(mut self, i: u32) -> Disk {
        self.bootindex = Some(i);
        self
    }
    pub fn read_only(mut self) -> Disk {
        self.read_only = true;
        self
    }
    /// Injects I/O errors by QEMU's blkdebug rules in `rules` (see [`blkdebug_rule`]).
    pub fn faults(mut self, rules: &Path) -> Disk {
        self.faults = Some(rules.into());
        self
    }
    /// Writes throttled to `bytes_per_sec`.
    pub fn write_limit(mut self, bytes_per_sec: u64) -> Disk {
        self.write_limit = Some(bytes_per_sec);
        self
    }
    /// A 4Kn disk with `4096`.
    pub fn sector_size(mut self, bytes: u32) -> Disk {
        self.sector_size = Some(bytes);
        self
    }
}

/// A blkdebug rule: once `event` (`read_aio`, `write_aio`) has happened anywhere on the
/// disk, fail with EIO every request, read or write, that covers 512-byte `sector`.
pub fn blkdebug_rule(event: &str, sector: u64) -> String {
    format!("[inject-error]\nevent = \"{event}\"\nerrno = \"5\"\nsector = \"{sector}\"\nonce = \"off\"\n")
}

/// A blkdebug rule that fails only *reads* covering `sector` (`iotype = "read"`): a
/// write there succeeds, reading it back fails.
pub fn blkdebug_read_rule(sector: u64) -> String {
    format!("{}iotype = \"read\"\n", blkdebug_rule("read_aio", sector))
}

/// OVMF, as Debian's `ovmf` installs it: the code (read-only pflash) and an empty
/// variable store to copy.
pub const OVMF_CODE: &str = "/usr/share/OVMF/OVMF_CODE_4M.fd";
pub const OVMF_VARS: &str = "/usr/share/OVMF/OVMF_VARS_4M.fd";

/// Firmware the machine starts with.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Firmware {
    /// QEMU's default SeaBIOS.
    Bios,
    /// UEFI: OVMF code and a writable copy of its variable store.
    Ovmf { code: PathBuf, vars: PathBuf },
}

/// The CPU model Xen hosts boot on under TCG: an AMD EPYC without SMAP and MONITOR.
///
/// - Not `max` (nor a plain `EPYC`): with SMAP, dom0 dies on its first page fault
///   (Xen's PV bounce frame faults under TCG's SMAP).
/// - No MONITOR/MWAIT: Xen's idle loop on AMD issues `mwait` with ECX=1 (break on
///   masked interrupts), which TCG answers with #GP, and Xen panics in its idle loop at
///   a random moment of the boot (seen once in five boots).
/// - Not an Intel model: Xen turns XPTI on for a PV dom0 on any Intel CPU that does
///   not report RDCL_NO, which TCG cannot report. Every dom0 kernel entry then
///   switches page tables, and under TCG each switch flushes QEMU's TLB. With
///   `Haswell-noTSX`, dom0's systemd needed 37 to 73 s of its fixed 90 s budget for
///   the generators after switch-root, with one other VM running. One boot went over,
///   systemd killed the generators, and the host came up with no `/var/log` mount and
///   no swap (issue 16, matrix run 6).
pub const XEN_CPU: &str = "EPYC,-smap,-monitor";

#[derive(Clone, Debug)]
pub struct VmBuilder {
    kernel: Option<(PathBuf, PathBuf, String)>,
    disks: Vec<Disk>,
    memory_mib: u32,
    machine: String,
    cpu: String,
    smp: u32,
    firmware: Firmware,
    extra: Vec<String>,
    no_reboot: bool,
    vga: &'static str,
    bios_text_on_serial: bool,
    qmp: bool,
}

/// `console=ttyS0` first would make /dev/console the VGA tty; serial last keeps the
/// kernel's own messages on the serial port we capture.
pub const RESCUE_APPEND: &str = "console=tty0 console=ttyS0,115200 panic=-1";

impl VmBuilder {
    pub fn new() -> VmBuilder {
        VmBuilder {
            kernel: None,
            disks: Vec::new(),
            memory_mib: 1024,
            machine: "q35".into(),
            cpu: "max".into(),
            smp: 1,
            firmware: Firmware::Bios,
            extra: Vec::new(),
            no_reboot: true,
            vga: "std",
            bios_text_on_serial: false,
            qmp: false,
        }
    }

    /// A QMP socket next to the console log, for [`Vm::device_del`].
    pub fn qmp(mut self) -> VmBuilder {
        self.qmp = true;
        self
    }

    /// The display adapter (`std` by default; `none` for no VGA at all).
    pub fn vga(mut self, model: &'static str) -> VmBuilder {
        self.vga = model;
        self
    }

    /// Direct kernel boot of the rescue image with the standard console arguments.
    pub fn rescue(image: &crate::RescueImage) -> VmBuilder {
        VmBuilder::new().kernel(&image.vmlinuz, &image.initramfs, RESCUE_APPEND)
    }

    pub fn kernel(mut self, vmlinuz: &Path, initrd: &Path, append: &str) -> VmBuilder {
        self.kernel = Some((vmlinuz.into(), initrd.into(), append.into()));
        self
    }
    /// Adds kernel arguments after the existing ones.
    pub fn append(mut self, args: &str) -> VmBuilder {
        if let Some((_, _, a)) = &mut self.kernel {
            a.push(' ');
            a.push_str(args);
        }
        self
    }
    pub fn disk(mut self, d: Disk) -> VmBuilder {
        self.disks.push(d);
        self
    }
    pub fn memory_mib(mut self, m: u32) -> VmBuilder {
        self.memory_mib = m;
        self
    }
    /// Xen guests take [`XEN_CPU`] and one CPU.
    pub fn cpu(mut self, cpu: &str, smp: u32) -> VmBuilder {
        self.cpu = cpu.into();
        self.smp = smp;
        self
    }
    /// Virtual CPUs (1 by default).
    pub fn cpus(mut self, n: u32) -> VmBuilder {
        self.smp = n;
        self
    }
    /// QEMU machine type (`q35` by default; `pc` for the i440FX boards older hosts are).
    pub fn machine(mut self, m: &str) -> VmBuilder {
        self.machine = m.into();
        self
    }
    pub fn firmware(mut self, f: Firmware) -> VmBuilder {
        self.firmware = f;
        self
    }
    /// Raw extra QEMU arguments (network, USB devices, ...).
    pub fn arg(mut self, a: impl Into<String>) -> VmBuilder {
        self.extra.push(a.into());
        self
    }
    /// SeaBIOS's serial console: what the BIOS and the boot code on the disk print through
    /// it (`Booting from Hard Disk...`, gptmbr.bin's `Missing OS`) reaches the console
    /// log, which a VM without VGA would otherwise never show.
    pub fn bios_text_on_serial(mut self) -> VmBuilder {
        self.bios_text_on_serial = true;
        self
    }
    /// Let a guest reboot instead of QEMU exiting on reboot.
    pub fn allow_reboot(mut self) -> VmBuilder {
        self.no_reboot = false;
        self
    }

    /// The full QEMU argument list (without the binary), console going to `log`.
    pub fn args(&self, log: &Path) -> Vec<String> {
        let mut a: Vec<String> = vec![
            "-accel".into(),
            accel().into(),
            "-machine".into(),
            self.machine.clone(),
            "-cpu".into(),
            self.cpu.clone(),
            "-smp".into(),
            self.smp.to_string(),
            "-m".into(),
            self.memory_mib.to_string(),
            "-display".into(),
            "none".into(),
            "-vga".into(),
            self.vga.into(),
            "-monitor".into(),
            "none".into(),
            "-serial".into(),
            format!("file:{}", log.display()),
            "-nodefaults".into(),
        ];
        if self.no_reboot {
            a.push("-no-reboot".into());
        }
        if self.qmp {
            a.push("-qmp".into());
            a.push(format!(
                "unix:{},server=on,wait=off",
                log.with_file_name(QMP_SOCKET).display()
            ));
        }
        if self.bios_text_on_serial {
            a.push("-fw_cfg".into());
            a.push(format!(
                "name=etc/sercon-port,file={}",
                log.with_file_name(SERCON_PORT_FILE).display()
            ));
        }
        if let Firmware::Ovmf { code, vars } = &self.firmware {
            a.push("-drive".into());
            a.push(format!(
                "if=pflash,format=raw,unit=0,readonly=on,file={}",
                code.display()
            ));
            a.push("-drive".into());
            a.push(format!(
                "if=pflash,format=raw,unit=1,file={}",
                vars.display()
            ));
        }
        if let Some((k, i, append)) = &self.kernel {
            a.extend([
                "-kernel".into(),
                k.display().to_string(),
                "-initrd".into(),
                i.display().to_string(),
            ]);
            a.extend(["-append".into(), append.clone()]);
        }
        let mut have_ahci = false;
        let mut have_scsi = false;
        let mut have_xhci = false;
        for (n, d) in self.disks.iter().enumerate() {
            let id = format!("disk{n}");
            let snapshot = if d.snapshot { ",snapshot=on" } else { "" };
            let ro = if d.read_only { ",readonly=on" } else { "" };
            a.push("-drive".into());
            let file = match &d.faults {
                Some(rules) => format!("blkdebug:{}:{}", rules.display(), d.path.display()),
                None => d.path.display().to_string(),
            };
            let throttle = d
                .write_limit
                .map(|b| format!(",throttling.bps-write={b}"))
                .unwrap_or_default();
            a.push(format!(
                "file={file},format={},if=none,id={id}{snapshot}{ro}{throttle}",
                d.format
            ));
            let serial = d
                .serial
                .as_ref()
                .map(|s| format!(",serial={s}"))
                .unwrap_or_default();
            let boot = d
                .bootindex
                .map(|b| format!(",bootindex={b}"))
                .unwrap_or_default()
                + &d.sector_size
                    .map(|b| format!(",logical_block_size={b},physical_block_size={b}"))
                    .unwrap_or_default();
            // `dev<n>`: the id `Vm::device_del` names.
            let boot = format!("{boot},id=dev{n}");
            let dev = match d.bus {
                Bus::Virtio => format!("virtio-blk-pci,drive={id}{serial}{boot}"),
                Bus::Nvme => format!("nvme,drive={id}{serial}{boot}"),
                Bus::Ahci => {
                    if !have_ahci {
                        a.extend(["-device".into(), "ahci,id=ahci0".into()]);
                        have_ahci = true;
                    }
                    format!("ide-hd,drive={id},bus=ahci0.{n}{serial}{boot}")
                }
                Bus::VirtioScsi => {
                    if !have_scsi {
                        a.extend(["-device".into(), "virtio-scsi-pci,id=scsi0".into()]);
                        have_scsi = true;
                    }
                    format!("scsi-hd,drive={id},bus=scsi0.0{serial}{boot}")
                }
                Bus::Usb => {
                    if !have_xhci {
                        a.extend(["-device".into(), "qemu-xhci,id=xhci0".into()]);
                        have_xhci = true;
                    }
                    format!("usb-storage,drive={id},bus=xhci0.0,removable=on{serial}{boot}")
                }
            };
            a.extend(["-device".into(), dev]);
        }
        a.extend(self.extra.iter().cloned());
        a
    }

    /// Starts QEMU; the console log goes to `dir/console.log`.
    pub fn spawn(self, dir: &Path) -> anyhow::Result<Vm> {
        std::fs::create_dir_all(dir)?;
        let log = dir.join("console.log");
        std::fs::write(&log, b"")?;
        if self.bios_text_on_serial {
            // SeaBIOS reads the port as a little-endian integer: COM1.
            std::fs::write(dir.join(SERCON_PORT_FILE), 0x3f8u16.to_le_bytes())?;
        }
        let args = self.args(&log);
        let command_line = reproducer(&args);
        eprintln!("qemu: {command_line}");
        let child = Command::new(QEMU)
            .args(&args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .with_context(|| {
                format!(
                    "start {QEMU}: is qemu-system-x86 installed? (`cargo xtask test` installs it)"
                )
            })?;
        Ok(Vm {
            child,
            log,
            command_line,
            started: Instant::now(),
        })
    }
}

impl Default for VmBuilder {
    fn default() -> Self {
        VmBuilder::new()
    }
}

pub const QEMU: &str = "qemu-system-x86_64";
const SERCON_PORT_FILE: &str = "sercon-port.bin";
const QMP_SOCKET: &str = "qmp.sock";

/// TCG unless a probe shows KVM can work (the CPU advertises vmx/svm and /dev/kvm opens).
/// `XENRAID_ACCEL` overrides.
pub fn accel() -> &'static str {
    if let Ok(a) = std::env::var("XENRAID_ACCEL") {
        return if a == "kvm" { "kvm" } else { "tcg" };
    }
    let cpu_has_virt = std::fs::read_to_string("/proc/cpuinfo")
        .map(|s| {
            s.lines()
                .any(|l| l.starts_with("flags") && (l.contains(" vmx") || l.contains(" svm")))
        })
        .unwrap_or(false);
    let kvm_opens = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/kvm")
        .is_ok();
    if cpu_has_virt && kvm_opens {
        "kvm"
    } else {
        "tcg"
    }
}

fn reproducer(args: &[String]) -> String {
    let quote = |s: &str| {
        if s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_=,.:/+".contains(c))
        {
            s.to_string()
        } else {
            format!("'{}'", s.replace('\'', r"'\''"))
        }
    };
    std::iter::once(QEMU.to_string())
        .chain(args.iter().map(|a| quote(a)))
        .collect::<Vec<_>>()
        .join(" ")
}

/// A running QEMU. Killed when dropped.
pub struct Vm {
    child: Child,
    log: PathBuf,
    pub command_line: String,
    started: Instant,
}

impl Vm {
    /// Unplugs the `n`-th disk (`dev<n>`) as a pulled drive or a dead controller port
    /// does, through QMP (the VM must be built with [`VmBuilder::qmp`]).
    pub fn device_del(&self, n: usize) -> anyhow::Result<()> {
        use std::io::{BufRead, BufReader, Write};
        let sock = self.log.with_file_name(QMP_SOCKET);
        let stream = std::os::unix::net::UnixStream::connect(&sock)
            .with_context(|| format!("connect {}", sock.display()))?;
        stream.set_read_timeout(Some(Duration::from_secs(30)))?;
        let mut reader = BufReader::new(stream.try_clone()?);
        let mut w = stream;
        let mut line = String::new();
        // Each command's answer is the next line with "return" or "error"; events between
        // are skipped.
        let mut answer = |reader: &mut BufReader<_>| -> anyhow::Result<String> {
            loop {
                line.clear();
                if reader.read_line(&mut line)? == 0 {
                    anyhow::bail!("QMP closed the connection");
                }
                if line.contains("\"return\"") || line.contains("\"error\"") {
                    return Ok(line.clone());
                }
            }
        };
        let mut greeting = String::new();
        reader.read_line(&mut greeting)?;
        w.write_all(b"{\"execute\":\"qmp_capabilities\"}\n")?;
        answer(&mut reader)?;
        w.write_all(
            format!("{{\"execute\":\"device_del\",\"arguments\":{{\"id\":\"dev{n}\"}}}}\n")
                .as_bytes(),
        )?;
        let a = answer(&mut reader)?;
        if a.contains("\"error\"") {
            anyhow::bail!("device_del dev{n}: {a}");
        }
        Ok(())
    }

    pub fn console(&self) -> String {
        String::from_utf8_lossy(&std::fs::read(&self.log).unwrap_or_default()).into_owned()
    }

    /// Polls `cond` on the console log until it returns Some, QEMU exits, or the timeout.
    pub fn wait_until<T>(
        &mut self,
        timeout: Duration,
        what: &str,
        mut cond: impl FnMut(&str) -> Option<T>,
    ) -> anyhow::Result<T> {
        let deadline = Instant::now() + timeout;
        loop {
            let log = self.console();
            if let Some(v) = cond(&log) {
                return Ok(v);
            }
            if let Some(status) = self.child.try_wait()? {
                // One last look: QEMU may have written the line and exited.
                let log = self.console();
                if let Some(v) = cond(&log) {
                    return Ok(v);
                }
                return Err(self.failure(&format!("QEMU exited ({status}) before {what}")));
            }
            if Instant::now() >= deadline {
                return Err(self.failure(&format!(
                    "timed out after {} s waiting for {what}",
                    timeout.as_secs()
                )));
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// Waits for a line starting with `marker` and returns the rest of that line.
    /// Only complete lines count: the guest may still be writing the one we want.
    pub fn wait_for_marker(&mut self, marker: &str, timeout: Duration) -> anyhow::Result<String> {
        self.wait_until(timeout, marker, |log| {
            let complete = &log[..log.rfind('\n').map_or(0, |i| i + 1)];
            complete.lines().find_map(|l| {
                l.find(marker)
                    .map(|at| l[at + marker.len()..].trim().to_string())
            })
        })
    }

    /// Waits for the `RESCUE-REPORT` line and parses it.
    pub fn wait_for_report(&mut self, timeout: Duration) -> anyhow::Result<Report> {
        let json = self.wait_for_marker(rescue::report::MARKER, timeout)?;
        serde_json::from_str(&json)
            .map_err(|e| self.failure(&format!("RESCUE-REPORT is not valid JSON ({e})")))
    }

    /// Waits for QEMU to exit by itself (the guest powered off).
    pub fn wait_exit(&mut self, timeout: Duration) -> anyhow::Result<()> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.child.try_wait()? {
                if status.success() {
                    return Ok(());
                }
                return Err(self.failure(&format!("QEMU exited with {status}")));
            }
            if Instant::now() >= deadline {
                return Err(self.failure(&format!(
                    "guest did not power off within {} s",
                    timeout.as_secs()
                )));
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    pub fn elapsed(&self) -> Duration {
        self.started.elapsed()
    }

    /// An error with everything needed to reproduce and understand the failure.
    pub fn failure(&mut self, what: &str) -> anyhow::Error {
        let mut stderr = String::new();
        if let Ok(Some(_)) = self.child.try_wait() {
            if let Some(mut e) = self.child.stderr.take() {
                use std::io::Read;
                let _ = e.read_to_string(&mut stderr);
            }
        }
        anyhow!(
            "{what} (after {:.1} s)\n--- reproduce with:\n{}\n--- qemu stderr:\n{stderr}\n--- console log ({}):\n{}\n--- end of console log",
            self.started.elapsed().as_secs_f64(),
            self.command_line,
            self.log.display(),
            self.console()
        )
    }
}

impl Drop for Vm {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Fails unless `cond`, with the VM's full context.
pub fn ensure(vm: &mut Vm, cond: bool, what: &str) -> anyhow::Result<()> {
    if cond {
        Ok(())
    } else {
        bail!(vm.failure(what))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// QMP unplugs a SCSI disk at once (no guest handshake, like a pulled drive); a
    /// virtio-blk disk on q35's root bus cannot be unplugged at all, so a test that pulls
    /// a disk puts it on virtio-scsi (or USB). A paused machine: no CPU time spent.
    #[test]
    fn device_del_pulls_a_scsi_disk_and_refuses_the_root_bus() {
        let dir = std::env::temp_dir().join(format!("xenraid-qmp-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let (a, b) = (dir.join("a.img"), dir.join("b.img"));
        for img in [&a, &b] {
            std::fs::File::create(img)
                .unwrap()
                .set_len(1 << 20)
                .unwrap();
        }
        let mut vm = VmBuilder::new()
            .qmp()
            .arg("-S")
            .disk(Disk::new(&a, Bus::VirtioScsi))
            .disk(Disk::new(&b, Bus::Virtio))
            .spawn(&dir)
            .unwrap();
        let mut tries = 0;
        while let Err(e) = vm.device_del(0) {
            tries += 1;
            assert!(tries < 50, "{e:#}\n{}", vm.failure("QMP"));
            std::thread::sleep(Duration::from_millis(100));
        }
        let e = vm.device_del(1).unwrap_err().to_string();
        assert!(e.contains("dev1"), "{e}");
        drop(vm);
        let _ = std::fs::remove_dir_all(&dir);
    }
}

//! The only place that issues syscalls beyond plain file I/O: mounts, module loading,
//! clocks, reboot, block-device and md ioctls. Everything else calls through here.

pub mod direct_io;
pub mod efivars;
pub mod md;

use std::ffi::CStr;
use std::fs::File;
use std::io;
use std::path::Path;

/// Milliseconds of CLOCK_BOOTTIME (time since boot, including suspend).
pub fn boottime_ms() -> u64 {
    let t = rustix::time::clock_gettime(rustix::time::ClockId::Boottime);
    t.tv_sec as u64 * 1000 + t.tv_nsec as u64 / 1_000_000
}

/// The pseudo filesystems PID 1 needs before anything else.
pub fn mount_early_filesystems() -> io::Result<()> {
    use rustix::mount::MountFlags;
    let nodev = MountFlags::NOSUID | MountFlags::NODEV | MountFlags::NOEXEC;
    for (fs, target, flags) in [
        ("proc", "/proc", nodev),
        ("sysfs", "/sys", nodev),
        ("devtmpfs", "/dev", MountFlags::NOSUID),
    ] {
        std::fs::create_dir_all(target)?;
        match rustix::mount::mount(fs, target, fs, flags, None) {
            // EBUSY: already mounted (CONFIG_DEVTMPFS_MOUNT, or a second run).
            Ok(()) | Err(rustix::io::Errno::BUSY) => {}
            Err(e) => return Err(io::Error::other(format!("mount {fs} on {target}: {e}"))),
        }
    }
    Ok(())
}

/// Mounts a filesystem, creating the mount point.
pub fn mount(
    source: &Path,
    target: &Path,
    fstype: &str,
    read_only: bool,
    data: &str,
) -> io::Result<()> {
    use rustix::mount::MountFlags;
    std::fs::create_dir_all(target)?;
    let mut flags = MountFlags::NOSUID | MountFlags::NODEV;
    if read_only {
        flags |= MountFlags::RDONLY;
    }
    let data = std::ffi::CString::new(data).map_err(io::Error::other)?;
    rustix::mount::mount(source, target, fstype, flags, data.as_c_str()).map_err(io::Error::from)
}

pub fn unmount(target: &Path) -> io::Result<()> {
    rustix::mount::unmount(target, rustix::mount::UnmountFlags::empty()).map_err(io::Error::from)
}

/// Outcome of loading one module.
#[derive(Debug, PartialEq, Eq)]
pub enum ModuleLoad {
    Loaded,
    /// Already loaded or built in.
    AlreadyThere,
    /// The module has nothing to drive here (no EFI, CPU lacks the instructions).
    NoDevice,
}

/// Loads a kernel module from a file with `finit_module`.
pub fn load_module(path: &Path, params: &CStr) -> io::Result<ModuleLoad> {
    let file = File::open(path)?;
    match rustix::system::finit_module(&file, params, 0) {
        Ok(()) => Ok(ModuleLoad::Loaded),
        Err(rustix::io::Errno::EXIST) => Ok(ModuleLoad::AlreadyThere),
        Err(rustix::io::Errno::NODEV) => Ok(ModuleLoad::NoDevice),
        Err(e) => Err(io::Error::from(e)),
    }
}

/// Sets the console log level so kernel messages do not cut through our lines.
pub fn set_console_loglevel(level: u8) -> io::Result<()> {
    std::fs::write("/proc/sys/kernel/printk", format!("{level}\n"))
}

pub fn sync() {
    rustix::fs::sync();
}

/// Bytes an unprivileged writer may still use on the filesystem holding `path`.
pub fn free_bytes(path: &Path) -> io::Result<u64> {
    let s = rustix::fs::statvfs(path)?;
    Ok(s.f_bavail.saturating_mul(s.f_frsize))
}

/// Drops clean cached pages, so a read-back after a sync reads the medium.
pub fn drop_caches() {
    let _ = std::fs::write("/proc/sys/vm/drop_caches", "3\n");
}

/// What PID 1 does when it is done.
#[derive(Clone, Copy, Debug)]
pub enum Shutdown {
    Poweroff,
    Reboot,
    Halt,
}

/// Syncs and ends the machine. Only returns if the kernel refused.
pub fn shutdown(how: Shutdown) -> io::Error {
    use rustix::system::RebootCommand;
    sync();
    let cmd = match how {
        Shutdown::Poweroff => RebootCommand::PowerOff,
        Shutdown::Reboot => RebootCommand::Restart,
        Shutdown::Halt => RebootCommand::Halt,
    };
    match rustix::system::reboot(cmd) {
        Ok(()) => io::Error::other("reboot() returned"),
        Err(e) => io::Error::from(e),
    }
}

/// The running kernel's release (`uname -r`).
pub fn kernel_release() -> String {
    rustix::system::uname()
        .release()
        .to_string_lossy()
        .into_owned()
}

pub fn getpid_is_init() -> bool {
    rustix::process::getpid().is_init()
}

/// Seconds since the Unix epoch (the kernel set the clock from the RTC at boot).
pub fn unix_time() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// The kernel's message buffer as `[seconds] text` lines, read from `/dev/kmsg`
/// without blocking.
pub fn kernel_log() -> String {
    use rustix::fs::{Mode, OFlags};
    let Ok(fd) = rustix::fs::open(
        "/dev/kmsg",
        OFlags::RDONLY | OFlags::NONBLOCK | OFlags::CLOEXEC,
        Mode::empty(),
    ) else {
        return String::new();
    };
    let mut out = String::new();
    let mut buf = vec![0u8; 8192];
    loop {
        // Each read returns one record: "prio,seq,usec,flags;text\n".
        match rustix::io::read(&fd, &mut buf) {
            Ok(0) => break,
            Ok(n) => {
                let rec = String::from_utf8_lossy(&buf[..n]);
                if let Some((meta, text)) = rec.split_once(';') {
                    let usec: u64 = meta
                        .split(',')
                        .nth(2)
                        .and_then(|u| u.parse().ok())
                        .unwrap_or(0);
                    let text = text.lines().next().unwrap_or("");
                    out.push_str(&format!(
                        "[{:5}.{:06}] {text}\n",
                        usec / 1_000_000,
                        usec % 1_000_000
                    ));
                }
            }
            Err(rustix::io::Errno::PIPE) => continue, // overwritten records: skip
            Err(_) => break,
        }
    }
    out
}

/// Bind-mounts `source` on `target` (creating the mount point).
pub fn bind_mount(source: &Path, target: &Path) -> io::Result<()> {
    std::fs::create_dir_all(target)?;
    rustix::mount::mount_bind(source, target).map_err(|e| {
        io::Error::other(format!(
            "bind {} on {}: {e}",
            source.display(),
            target.display()
        ))
    })
}

/// Unmounts, detaching it if it is busy (a process that lingers must not block the job).
pub fn unmount_lazy(target: &Path) -> io::Result<()> {
    match rustix::mount::unmount(target, rustix::mount::UnmountFlags::empty()) {
        Ok(()) => Ok(()),
        Err(rustix::io::Errno::BUSY) => {
            rustix::mount::unmount(target, rustix::mount::UnmountFlags::DETACH)
                .map_err(io::Error::from)
        }
        Err(e) => Err(io::Error::from(e)),
    }
}

/// Runs `program` from the target's own PATH directories inside `root`, its stdout and
/// stderr merged into one pipe and handed to `on_line` line by line as it prints (so a
/// long dracut run shows on the console as it goes). Returns the exit code and the
/// output, bounded: the first [`OUTPUT_HEAD_LINES`] and last [`OUTPUT_TAIL_LINES`] lines.
pub fn run_in_chroot(
    root: &Path,
    program: &str,
    args: &[&str],
    on_line: &mut dyn FnMut(&str),
) -> io::Result<(i32, String)> {
    use std::io::BufRead;
    use std::os::unix::process::CommandExt;
    let dirs = ["usr/sbin", "usr/bin", "sbin", "bin"];
    let Some(dir) = dirs.iter().find(|d| root.join(d).join(program).exists()) else {
        return Err(io::Error::other(format!(
            "{program} is not installed in the target ({})",
            root.display()
        )));
    };
    let inside = format!("/{dir}/{program}");
    let root_owned = root.to_path_buf();
    let (reader, writer) = io::pipe()?;
    let mut cmd = std::process::Command::new(&inside);
    cmd.args(args)
        .env_clear()
        .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
        .env("HOME", "/root")
        .env("LANG", "C")
        .env("TERM", "dumb")
        .stdin(std::process::Stdio::null())
        .stdout(writer.try_clone()?)
        .stderr(writer);
    // SAFETY: chroot and chdir are async-signal-safe syscalls; nothing else runs here.
    unsafe {
        cmd.pre_exec(move || {
            rustix::process::chroot(&root_owned).map_err(io::Error::from)?;
            rustix::process::chdir("/").map_err(io::Error::from)
        });
    }
    let spawned = cmd.spawn();
    // The Command holds the pipe's write ends: without dropping it, EOF never comes.
    drop(cmd);
    let mut child = spawned
        .map_err(|e| io::Error::other(format!("start {inside} in {}: {e}", root.display())))?;
    let mut output = BoundedOutput::default();
    for line in io::BufReader::new(reader).split(b'\n') {
        let line = String::from_utf8_lossy(&line?).trim_end().to_owned();
        on_line(&line);
        output.push(line);
    }
    let status = child.wait()?;
    reap_orphans();
    Ok((status.code().unwrap_or(-1), output.text()))
}

/// Lines of a tool's output kept from its start and from its end.
pub const OUTPUT_HEAD_LINES: usize = 40;
pub const OUTPUT_TAIL_LINES: usize = 160;

/// A tool's output, bounded: its head, a count of lines left out, its tail.
#[derive(Default)]
struct BoundedOutput {
    head: Vec<String>,
    tail: std::collections::VecDeque<String>,
    dropped: usize,
}

impl BoundedOutput {
    fn push(&mut self, line: String) {
        const MAX_LINE: usize = 400;
        let line = match line.char_indices().nth(MAX_LINE) {
            Some((cut, _)) => format!("{}…", &line[..cut]),
            None => line,
        };
        if self.head.len() < OUTPUT_HEAD_LINES {
            self.head.push(line);
            return;
        }
        self.tail.push_back(line);
        if self.tail.len() > OUTPUT_TAIL_LINES {
            self.tail.pop_front();
            self.dropped += 1;
        }
    }
    fn text(&self) -> String {
        let mut lines: Vec<String> = self.head.clone();
        if self.dropped > 0 {
            lines.push(format!("[… {} lines left out …]", self.dropped));
        }
        lines.extend(self.tail.iter().cloned());
        let mut text = lines.join("\n");
        if !text.is_empty() {
            text.push('\n');
        }
        text
    }
}

/// PID 1 inherits every orphaned process: collect the ones that have exited.
pub fn reap_orphans() {
    while let Ok(Some(_)) = rustix::process::waitpid(None, rustix::process::WaitOptions::NOHANG) {}
}

#[cfg(test)]
mod tests {
    use super::{BoundedOutput, OUTPUT_HEAD_LINES, OUTPUT_TAIL_LINES};

    /// In a chroot of `/` (needs root, as the rest of the suite): stdout and stderr arrive
    /// line by line in print order, before the program exits, and the exit code comes back.
    #[test]
    fn a_tools_lines_stream_as_it_prints() {
        let mut seen = Vec::new();
        let started = std::time::Instant::now();
        let (code, text) = super::run_in_chroot(
            std::path::Path::new("/"),
            "sh",
            &["-c", "echo one; echo two >&2; sleep 1; echo three; exit 3"],
            &mut |l| seen.push((l.to_owned(), started.elapsed())),
        )
        .expect("sh runs in a chroot of /");
        assert_eq!(code, 3);
        let lines: Vec<&str> = seen.iter().map(|(l, _)| l.as_str()).collect();
        assert_eq!(lines, ["one", "two", "three"]);
        assert_eq!(text, "one\ntwo\nthree\n");
        // "two" came before the sleep ended: streamed, not collected at exit.
        assert!(
            seen[2].1 - seen[1].1 >= std::time::Duration::from_millis(900),
            "{seen:?}"
        );
    }

    #[test]
    fn tool_output_keeps_head_and_tail_and_counts_the_rest() {
        let mut o = BoundedOutput::default();
        let n = OUTPUT_HEAD_LINES + OUTPUT_TAIL_LINES + 7;
        for i in 0..n {
            o.push(format!("line {i}"));
        }
        let text = o.text();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), OUTPUT_HEAD_LINES + OUTPUT_TAIL_LINES + 1);
        assert_eq!(lines[0], "line 0");
        assert_eq!(lines[OUTPUT_HEAD_LINES], "[… 7 lines left out …]");
        assert_eq!(*lines.last().unwrap(), format!("line {}", n - 1));
        let mut long = BoundedOutput::default();
        long.push("x".repeat(1000));
        assert_eq!(long.text().chars().count(), 402);
    }
}

//! `cargo xtask usb`: TODO, being written.

use xshell::Shell;

pub fn run(_sh: &Shell) -> anyhow::Result<std::path::PathBuf> {
    anyhow::bail!("usb is not written yet")
}

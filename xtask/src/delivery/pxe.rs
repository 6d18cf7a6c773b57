//! `cargo xtask pxe`: TODO, being written.

use xshell::Shell;

pub fn run(_sh: &Shell) -> anyhow::Result<std::path::PathBuf> {
    anyhow::bail!("pxe is not written yet")
}

//! `cargo xtask bench clone`: TODO, being written.

use xshell::Shell;

pub fn run(_sh: &Shell) -> anyhow::Result<()> {
    anyhow::bail!("bench clone is not written yet")
}

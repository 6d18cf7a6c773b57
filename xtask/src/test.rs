//! `cargo xtask test` (what CI runs) and `cargo xtask e2e` (everything): install what the
//! tests need, build the image, then run the workspace's tests.

use xshell::{cmd, Shell};

#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    /// The representative subset that fits CI's time budget.
    Ci,
    /// The full QEMU matrix.
    Full,
}

pub fn run(sh: &Shell, scope: Scope) -> anyhow::Result<()> {
    crate::deps::ensure(sh, crate::deps::TEST, crate::deps::TEST_FILES)?;
    let built = crate::build::run(sh, &Default::default())?;
    let _image = sh.push_env("XENRAID_IMAGE_DIR", &built.dir);
    let _scope = sh.push_env(
        "XENRAID_E2E",
        if scope == Scope::Full { "full" } else { "ci" },
    );
    // QEMU guests under TCG are CPU-bound: two at a time.
    let _threads = sh.push_env("RUST_TEST_THREADS", "2");
    cmd!(sh, "cargo test --workspace --locked --all-targets").run()?;
    cmd!(sh, "cargo test --workspace --locked --doc").run()?;
    Ok(())
}

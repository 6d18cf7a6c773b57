//! Project automation (`cargo xtask <verb>`), one module per verb.
//!
//! Verbs shell out with xshell's `cmd!` and keep logic here thin.

mod bench;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(name = "cargo xtask")]
struct Cli {
    #[command(subcommand)]
    verb: Verb,
}

#[derive(Subcommand)]
enum Verb {
    /// Performance figures (`clone`, ...).
    Bench { what: Option<String> },
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let sh = xshell::Shell::new()?;
    sh.change_dir(project_root());
    match cli.verb {
        Verb::Bench { what } => match what.as_deref() {
            Some("clone") => bench::clone::run(&sh),
            other => anyhow::bail!("unknown bench {other:?}: use `cargo xtask bench clone`"),
        },
    }
}

/// The workspace root (the parent of `xtask/`).
pub fn project_root() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

//! Project automation (`cargo xtask <verb>`), one module per verb.
//!
//! Verbs shell out with xshell's `cmd!` and keep logic here thin; the product's logic
//! lives in the `rescue` and `initramfs` crates.

mod bench;
mod build;
mod cache;
mod delivery;
mod deps;
mod fixture;
mod fuzz;
mod kernel;
mod soak;
mod test;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(name = "cargo xtask")]
struct Cli {
    #[command(subcommand)]
    verb: Verb,
}

#[derive(Subcommand)]
enum Verb {
    /// Build target/rescue/{vmlinuz,initramfs.cpio.gz,manifest.json}.
    Build(build::BuildArgs),
    /// Run every test CI runs: unit, snapshot, host-tool and the CI QEMU subset.
    Test,
    /// Run every test including the full QEMU matrix.
    E2e,
    /// Performance figures: `boot` (default), `clone`, `convert` or `backup`.
    Bench { what: Option<String> },
    /// PXE bundle in target/rescue/pxe/ (pxelinux, iPXE and GRUB netboot examples).
    Pxe(delivery::DeliveryArgs),
    /// BIOS+UEFI USB stick image target/rescue/rescue-usb.img.
    Usb(delivery::DeliveryArgs),
    /// Coverage-guided fuzzing of every parser (libFuzzer on stable): execs and crashes.
    Fuzz(fuzz::FuzzArgs),
    /// Power cuts at random points of 20 conversions, each resumed and checked (hours).
    Soak(soak::SoakArgs),
    /// Build (or fetch from cache) a XenServer-like fixture image: `xs7`, `xs7-nosr`, `xs6`.
    Fixture { name: String },
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let sh = xshell::Shell::new()?;
    sh.change_dir(project_root());
    match cli.verb {
        Verb::Build(args) => build::run(&sh, &args).map(drop),
        Verb::Test => test::run(&sh, test::Scope::Ci),
        Verb::E2e => test::run(&sh, test::Scope::Full),
        Verb::Bench { what } => match what.as_deref() {
            None | Some("boot") => bench::boot::run(&sh),
            Some("clone") => bench::clone::run(&sh),
            Some("convert") => bench::convert::run(&sh),
            Some("backup") => bench::backup::run(&sh),
            Some(other) => {
                anyhow::bail!("unknown bench {other:?}: use `cargo xtask bench boot`, `clone`, `convert` or `backup`")
            }
        },
        Verb::Pxe(args) => delivery::pxe::run(&sh, &args).map(|p| println!("{}", p.display())),
        Verb::Usb(args) => delivery::usb::run(&sh, &args).map(|p| println!("{}", p.display())),
        Verb::Fuzz(args) => fuzz::run(&sh, &args),
        Verb::Soak(args) => soak::run(&args),
        Verb::Fixture { name } => {
            fixture::run(&sh, &name).map(|path| println!("{}", path.display()))
        }
    }
}

/// The workspace root (the parent of `xtask/`).
pub fn project_root() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

//! `rescue`: PID 1 of the rescue image, or a host CLI when run as a normal program.

use clap::{Parser, Subcommand};
use rescue::report::Report;
use std::path::PathBuf;

#[derive(Parser)]
#[command(
    name = "rescue",
    about = "Inspect disks and convert XenServer hosts to md RAID1"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Inspect image files or block devices (read-only) and print the report JSON.
    Inspect {
        /// An image file or a block device; repeat for several.
        #[arg(long = "disk", required = true)]
        disks: Vec<PathBuf>,
    },
    /// Copy a partition or image: ext used blocks only, LVM PV metadata and allocated
    /// extents only, swap header only, anything else every byte.
    Clone(rescue::clone::CloneArgs),
}

fn main() -> anyhow::Result<()> {
    if rescue::sys::getpid_is_init() {
        rescue::init::run();
    }
    match Cli::parse().command {
        Command::Inspect { disks } => {
            let mut report = Report {
                action: "inspect".into(),
                ..Default::default()
            };
            let mut found = Vec::new();
            for path in &disks {
                match rescue::inspect::inspect_path(path) {
                    Ok(d) => found.push(d),
                    Err(e) => report.errors.push(format!("{}: {e}", path.display())),
                }
            }
            report.set_disks(found);
            report.ok = report.errors.is_empty();
            for line in report.human_lines() {
                eprintln!("{line}");
            }
            println!("{}", serde_json::to_string(&report)?);
            if !report.ok {
                std::process::exit(1);
            }
            Ok(())
        }
        Command::Clone(args) => {
            let summary = rescue::clone::run(&args)?;
            println!("{}", serde_json::to_string(&summary)?);
            Ok(())
        }
    }
}

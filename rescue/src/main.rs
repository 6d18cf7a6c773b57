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
    /// Write one LV, or one partition inside an LV, from a disk image or device to a sparse
    /// file (ext: used blocks only), with no LVM running. Read-only on the disk.
    Extract {
        /// The image file or block device holding the PV.
        #[arg(long)]
        disk: PathBuf,
        /// `LV` or `VG/LV` (e.g. `VG_XenStorage-<uuid>/LV-<uuid>`).
        #[arg(long)]
        lv: String,
        /// A partition of the partition table inside the LV (a VM's disk).
        #[arg(long)]
        partition: Option<u32>,
        /// The file to write; it must not exist.
        #[arg(long)]
        out: PathBuf,
    },
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
        Command::Extract {
            disk,
            lv,
            partition,
            out,
        } => {
            let req = rescue::extract::Request {
                disk,
                lv,
                partition,
                out,
            };
            let done = rescue::extract::extract(&req)?;
            for line in rescue::extract::human_lines(&done, &req.out) {
                eprintln!("{line}");
            }
            println!("{}", serde_json::to_string(&done)?);
            Ok(())
        }
    }
}

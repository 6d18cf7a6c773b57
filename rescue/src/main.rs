//! `rescue`: PID 1 of the rescue image, or a host CLI when run as a normal program.

use clap::{Parser, Subcommand};
use rescue::report::Report;
use std::io::Seek;
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
    /// Back up a disk image or device (read-only) into a new directory: every partition's
    /// used blocks, gzip-compressed, with a manifest and a RESTORE.sh for standard tools.
    Backup {
        #[arg(long)]
        disk: PathBuf,
        /// A new or empty directory.
        #[arg(long)]
        to: PathBuf,
    },
    /// Check a backup, write it to an image file or disk (created at the original size if
    /// missing), and read it back.
    Restore {
        /// The backup directory (holds manifest.json).
        #[arg(long)]
        from: PathBuf,
        #[arg(long)]
        to: PathBuf,
    },
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
        Command::Backup { disk, to } => {
            let d = rescue::inspect::inspect_path(&disk)?;
            let mut f = std::fs::File::open(&disk)?;
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_secs());
            let t = std::time::Instant::now();
            let m = rescue::backup::backup(&mut f, &d, &to, now, |_, _| {})?;
            let used: u64 = m.items.iter().map(|i| i.used_bytes).sum();
            let packed: u64 = m.items.iter().map(|i| i.compressed_bytes).sum();
            eprintln!(
                "backup: {} to {}: {} items, {used} bytes read, {packed} bytes written, {:.1} s",
                disk.display(),
                to.display(),
                m.items.len(),
                t.elapsed().as_secs_f64()
            );
            println!("{}", serde_json::to_string(&m.items)?);
            Ok(())
        }
        Command::Restore { from, to } => {
            let m = rescue::backup::read_manifest(&from)?;
            let mut f = std::fs::OpenOptions::new()
                .read(true)
                .write(true)
                .create(true)
                .truncate(false)
                .open(&to)?;
            let mut size = f.seek(std::io::SeekFrom::End(0))?;
            if size == 0 {
                f.set_len(m.source.size_bytes)?;
                size = m.source.size_bytes;
            }
            let r = rescue::backup::restore(&from, &mut f, size)?;
            eprintln!(
                "restore: {} to {}: {} items checked, {} bytes written, read back ok",
                from.display(),
                to.display(),
                r.items,
                r.bytes_written
            );
            println!("{}", serde_json::to_string(&r)?);
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

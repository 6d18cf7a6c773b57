//! `cargo xtask bench backup`: `rescue backup` of an ext4 image 10 %, 50 % and 90 % full
//! of random data against `partclone.extfs -c | gzip -1` and `dd | gzip -1` (the same
//! codec), page cache dropped before each run: time and bytes written. Our backup
//! compresses on two threads; gzip is one, so `pigz -1` is timed too when installed.
//! Needs root (loop mounts, drop_caches). Images in `$BENCH_DIR` (default
//! `/tmp/rescue-bench-backup`), `BENCH_SIZE_MIB` each (default 2048).

use anyhow::Context;
use std::path::{Path, PathBuf};
use std::time::Instant;
use xshell::{cmd, Shell};

struct Row {
    tool: &'static str,
    fill: u32,
    secs: f64,
    written: u64,
}

fn dir_bytes(dir: &Path) -> u64 {
    std::fs::read_dir(dir)
        .map(|d| {
            d.flatten()
                .filter_map(|e| e.metadata().ok())
                .map(|m| m.len())
                .sum()
        })
        .unwrap_or(0)
}

pub fn run(sh: &Shell) -> anyhow::Result<()> {
    let dir =
        PathBuf::from(std::env::var("BENCH_DIR").unwrap_or("/tmp/rescue-bench-backup".into()));
    let size_mib: u64 = std::env::var("BENCH_SIZE_MIB")
        .ok()
        .map_or(Ok(2048), |s| s.parse())?;
    for tool in [
        "dd",
        "partclone.extfs",
        "gzip",
        "mount",
        "umount",
        "mke2fs",
        "dumpe2fs",
    ] {
        cmd!(sh, "which {tool}")
            .quiet()
            .ignore_stdout()
            .run()
            .with_context(|| {
                format!(
                    "`{tool}` is missing: apt-get install e2fsprogs partclone mount gzip coreutils"
                )
            })?;
    }
    let pigz = cmd!(sh, "which pigz").quiet().ignore_stdout().run().is_ok();
    cmd!(sh, "cargo build --release -p rescue").run()?;
    let ours = crate::project_root().join("target/release/rescue");
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir)?;
    let (src, mnt, out) = (dir.join("src.img"), dir.join("mnt"), dir.join("out"));
    std::fs::create_dir_all(&mnt)?;
    let mut rows = Vec::new();
    let mut used_by_fill = Vec::new();
    for fill in [10u32, 50, 90] {
        super::filled_ext4(sh, &src, &mnt, size_mib, fill)?;
        used_by_fill.push((fill, super::used_bytes(sh, &src)?));
        let mut time = |tool: &'static str, f: &dyn Fn(&Shell) -> anyhow::Result<()>| {
            let _ = std::fs::remove_dir_all(&out);
            cmd!(sh, "sync").run()?;
            std::fs::write("/proc/sys/vm/drop_caches", "3").context("drop_caches needs root")?;
            let t = Instant::now();
            f(sh)?;
            cmd!(sh, "sync").run()?;
            let secs = t.elapsed().as_secs_f64();
            let written = dir_bytes(&out);
            eprintln!("{tool} {fill}%: {secs:.2} s, {written} bytes written");
            rows.push(Row {
                tool,
                fill,
                secs,
                written,
            });
            anyhow::Ok(())
        };
        time("rescue backup", &|sh| {
            cmd!(sh, "{ours} backup --disk {src} --to {out}")
                .quiet()
                .ignore_stdout()
                .ignore_stderr()
                .run()?;
            Ok(())
        })?;
        let pipe = |sh: &Shell, cmdline: String| -> anyhow::Result<()> {
            std::fs::create_dir_all(&out)?;
            cmd!(sh, "sh -c {cmdline}").run()?;
            Ok(())
        };
        let (s, o) = (src.display().to_string(), out.display().to_string());
        time("partclone.extfs -c | gzip -1", &|sh| {
            pipe(
                sh,
                format!("partclone.extfs -c -q -s {s} -o - 2>/dev/null | gzip -1 > {o}/p.gz"),
            )
        })?;
        time("dd bs=4M | gzip -1", &|sh| {
            pipe(
                sh,
                format!("dd if={s} bs=4M status=none | gzip -1 > {o}/d.gz"),
            )
        })?;
        if pigz {
            time("partclone.extfs -c | pigz -1", &|sh| {
                pipe(
                    sh,
                    format!("partclone.extfs -c -q -s {s} -o - 2>/dev/null | pigz -1 > {o}/p.gz"),
                )
            })?;
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
    println!("\n| tool | fill | time (s) | bytes written | used bytes | ours ÷ this (time) |");
    println!("|---|---|---|---|---|---|");
    for r in &rows {
        let used = used_by_fill
            .iter()
            .find(|u| u.0 == r.fill)
            .map_or(0, |u| u.1);
        let ours = rows
            .iter()
            .find(|o| o.fill == r.fill && o.tool == "rescue backup")
            .context("no rescue backup row")?;
        println!(
            "| {} | {}% | {:.2} | {} | {} | {:.2} |",
            r.tool.replace('|', "\\|"),
            r.fill,
            r.secs,
            r.written,
            used,
            ours.secs / r.secs
        );
    }
    Ok(())
}

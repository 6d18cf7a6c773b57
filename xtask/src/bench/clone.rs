//! `cargo xtask bench clone`: our used-blocks clone against `dd`, `e2image -ra`,
//! `partclone.extfs` and `cp -ax` on ext4 images 10%, 50% and 90% full of random data.
//!
//! Needs root (loop mounts, drop_caches). Images live in `$BENCH_DIR` (default
//! `/tmp/rescue-bench`, 2 GiB each, override the size with `BENCH_SIZE_MIB`); the page
//! cache is dropped before every run and every run ends durable (fsync/sync).

use anyhow::Context;
use std::path::PathBuf;
use std::time::Instant;
use xshell::{cmd, Shell};

struct Row {
    tool: &'static str,
    fill: u32,
    secs: f64,
    moved: u64,
}

pub fn run(sh: &Shell) -> anyhow::Result<()> {
    let dir = PathBuf::from(std::env::var("BENCH_DIR").unwrap_or("/tmp/rescue-bench".into()));
    let size_mib: u64 = std::env::var("BENCH_SIZE_MIB")
        .ok()
        .map_or(Ok(2048), |s| s.parse())?;
    for tool in [
        "dd",
        "e2image",
        "partclone.extfs",
        "cp",
        "mount",
        "umount",
        "losetup",
        "mke2fs",
        "dumpe2fs",
        "fallocate",
    ] {
        cmd!(sh, "which {tool}").quiet().ignore_stdout().run().with_context(|| {
            format!("`{tool}` is missing: apt-get install e2fsprogs partclone mount util-linux coreutils")
        })?;
    }
    cmd!(sh, "cargo build --release -p rescue").run()?;
    let ours = crate::project_root().join("target/release/rescue");
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir)?;
    let (src, dst) = (dir.join("src.img"), dir.join("dst.img"));
    let (msrc, mdst) = (dir.join("mnt-src"), dir.join("mnt-dst"));
    std::fs::create_dir_all(&msrc)?;
    std::fs::create_dir_all(&mdst)?;
    let mut rows = Vec::new();
    let mut used_by_fill = Vec::new();
    for fill in [10u32, 50, 90] {
        super::filled_ext4(sh, &src, &msrc, size_mib, fill)?;
        let used = super::used_bytes(sh, &src)?;
        used_by_fill.push((fill, used));
        let src_len = std::fs::metadata(&src)?.len();

        let fresh = |sh: &Shell| -> anyhow::Result<()> {
            let _ = std::fs::remove_file(&dst);
            let len = format!("{size_mib}M");
            cmd!(sh, "fallocate -l {len} {dst}").run()?;
            cmd!(sh, "sync").run()?;
            std::fs::write("/proc/sys/vm/drop_caches", "3").context("drop_caches needs root")?;
            Ok(())
        };
        let mut time = |tool: &'static str,
                        sh: &Shell,
                        f: &dyn Fn(&Shell) -> anyhow::Result<u64>|
         -> anyhow::Result<()> {
            fresh(sh)?;
            let t = Instant::now();
            let moved = f(sh)?;
            let secs = t.elapsed().as_secs_f64();
            eprintln!("{tool} {fill}%: {secs:.2} s, {moved} bytes");
            rows.push(Row {
                tool,
                fill,
                secs,
                moved,
            });
            Ok(())
        };
        time("rescue clone", sh, &|sh| {
            // `rescue clone` prints its summary as JSON on the last line of stdout.
            let out = cmd!(sh, "{ours} clone -q {src} {dst}").read()?;
            let json = out.lines().last().unwrap_or_default();
            let v: serde_json::Value = serde_json::from_str(json)?;
            v["bytes_moved"]
                .as_u64()
                .context("no bytes_moved in the summary")
        })?;
        time("dd bs=4M", sh, &|sh| {
            cmd!(
                sh,
                "dd if={src} of={dst} bs=4M conv=fsync,notrunc status=none"
            )
            .run()?;
            Ok(src_len)
        })?;
        time("e2image -ra", sh, &|sh| {
            cmd!(sh, "e2image -ra {src} {dst}")
                .quiet()
                .ignore_stderr()
                .run()?;
            cmd!(sh, "sync").run()?;
            Ok(used)
        })?;
        time("partclone.extfs -b", sh, &|sh| {
            let log = dir.join("partclone.log");
            cmd!(sh, "partclone.extfs -b -q -L {log} -s {src} -O {dst}")
                .quiet()
                .ignore_stderr()
                .run()?;
            cmd!(sh, "sync").run()?;
            Ok(used)
        })?;
        // cp -ax: mkfs is preparation, not timed; the copy ends with the unmount's flush.
        fresh(sh)?;
        cmd!(sh, "mke2fs -F -q -t ext4 {dst}").run()?;
        cmd!(sh, "sync").run()?;
        std::fs::write("/proc/sys/vm/drop_caches", "3")?;
        let t = Instant::now();
        cmd!(sh, "mount -o ro,loop {src} {msrc}").run()?;
        cmd!(sh, "mount -o loop {dst} {mdst}").run()?;
        let (from, to) = (
            format!("{}/.", msrc.display()),
            format!("{}/", mdst.display()),
        );
        let copied = cmd!(sh, "cp -ax {from} {to}").run();
        cmd!(sh, "umount {mdst}").run()?;
        cmd!(sh, "umount {msrc}").run()?;
        // The loop device's backing file may still be dirty in the page cache.
        cmd!(sh, "sync").run()?;
        copied?;
        let secs = t.elapsed().as_secs_f64();
        eprintln!("cp -ax {fill}%: {secs:.2} s");
        rows.push(Row {
            tool: "cp -ax (fresh mkfs)",
            fill,
            secs,
            moved: used,
        });
    }
    let _ = std::fs::remove_dir_all(&dir);

    println!("\n| tool | fill | time (s) | bytes moved | MiB/s moved | moved ÷ used | our rate ÷ dd rate |");
    println!("|---|---|---|---|---|---|---|");
    for r in &rows {
        let used = used_by_fill
            .iter()
            .find(|u| u.0 == r.fill)
            .map_or(1, |u| u.1);
        let dd = rows
            .iter()
            .find(|d| d.fill == r.fill && d.tool == "dd bs=4M")
            .context("no dd row")?;
        let rate = |x: &Row| x.moved as f64 / x.secs;
        let ratio = if r.tool == "rescue clone" {
            format!("{:.2}", rate(r) / rate(dd))
        } else {
            String::new()
        };
        println!(
            "| {} | {}% | {:.2} | {} | {:.0} | {:.3} | {} |",
            r.tool,
            r.fill,
            r.secs,
            r.moved,
            rate(r) / 1048576.0,
            r.moved as f64 / used as f64,
            ratio
        );
    }
    Ok(())
}

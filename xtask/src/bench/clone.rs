//! `cargo xtask bench clone`: our used-blocks clone (with and without read-back
//! verification) against `dd`, `e2image -ra`, `partclone.extfs` and `cp -ax`, on a real
//! root (the fixtures' Debian tree written by `mke2fs -d` into ext3: ~20k files, many
//! small extents) and on ext4 images 10%, 50% and 90% full of large random files.
//!
//! Needs root (loop mounts, drop_caches). Images live in `$BENCH_DIR` (default
//! `/tmp/rescue-bench`; the filled ones 2 GiB each, override with `BENCH_SIZE_MIB`;
//! `BENCH_ONLY=debian` or `=filled` picks one kind); the page cache is dropped before
//! every run and every run ends durable (fsync/sync). Each case runs every tool
//! `BENCH_ROUNDS` times (default 3), rounds interleaved; the table shows medians.
//! Goals (issue 11): clone ≤ 0.9 × e2image's time, clone --verify ≤ 1.3 ×.

use anyhow::Context;
use std::path::PathBuf;
use std::time::Instant;
use xshell::{cmd, Shell};

struct Row {
    tool: &'static str,
    case: String,
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
    let only = std::env::var("BENCH_ONLY").unwrap_or_default();
    let rounds: usize = std::env::var("BENCH_ROUNDS")
        .ok()
        .map_or(Ok(3), |s| s.parse())
        .context("BENCH_ROUNDS: a number of rounds")?;
    anyhow::ensure!(rounds > 0, "BENCH_ROUNDS must be at least 1");
    let mut cases: Vec<Case> = Vec::new();
    if only.is_empty() || only == "debian" {
        cases.extend([Case::DebianFresh, Case::DebianAged]);
    }
    if only.is_empty() || only == "filled" {
        cases.extend([Case::Filled(10), Case::Filled(50), Case::Filled(90)]);
    }
    let mut rows = Vec::new();
    let mut used_by_case = Vec::new();
    for c in cases {
        let case = match c {
            Case::Filled(f) => {
                super::filled_ext4(sh, &src, &msrc, size_mib, f)?;
                format!("ext4 {f}%")
            }
            Case::DebianFresh | Case::DebianAged => {
                debian_ext3(sh, &src, &dir, &msrc, matches!(c, Case::DebianAged))?;
                if matches!(c, Case::DebianAged) {
                    "debian ext3 aged"
                } else {
                    "debian ext3 mke2fs -d"
                }
                .to_owned()
            }
        };
        let used = super::used_bytes(sh, &src)?;
        used_by_case.push((case.clone(), used));
        let src_len = std::fs::metadata(&src)?.len();
        let case_ = case.clone();

        let fresh = |sh: &Shell| -> anyhow::Result<()> {
            let _ = std::fs::remove_file(&dst);
            let len = src_len.to_string();
            cmd!(sh, "fallocate -l {len} {dst}").run()?;
            cmd!(sh, "sync").run()?;
            std::fs::write("/proc/sys/vm/drop_caches", "3").context("drop_caches needs root")?;
            Ok(())
        };
        let time = |tool: &'static str,
                    sh: &Shell,
                    f: &dyn Fn(&Shell) -> anyhow::Result<u64>|
         -> anyhow::Result<Row> {
            fresh(sh)?;
            let t = Instant::now();
            let moved = f(sh)?;
            let secs = t.elapsed().as_secs_f64();
            eprintln!("{tool} {case_}: {secs:.2} s, {moved} bytes");
            Ok(Row {
                tool,
                case: case_.clone(),
                secs,
                moved,
            })
        };
        // `rescue clone` prints its summary as JSON on the last line of stdout.
        let moved = |out: String| -> anyhow::Result<u64> {
            let json = out.lines().last().unwrap_or_default();
            let v: serde_json::Value = serde_json::from_str(json)?;
            v["bytes_moved"]
                .as_u64()
                .context("no bytes_moved in the summary")
        };
        for round in 0..rounds {
            eprintln!("{case} round {}/{rounds}", round + 1);
            rows.push(time("rescue clone", sh, &|sh| {
                moved(cmd!(sh, "{ours} clone -q {src} {dst}").read()?)
            })?);
            rows.push(time("rescue clone --verify", sh, &|sh| {
                moved(cmd!(sh, "{ours} clone -q --verify {src} {dst}").read()?)
            })?);
            rows.push(time("dd bs=4M", sh, &|sh| {
                cmd!(
                    sh,
                    "dd if={src} of={dst} bs=4M conv=fsync,notrunc status=none"
                )
                .run()?;
                Ok(src_len)
            })?);
            rows.push(time("e2image -ra", sh, &|sh| {
                synced(sh, cmd!(sh, "e2image -ra {src} {dst}"), used)
            })?);
            rows.push(time("partclone.extfs -b", sh, &|sh| {
                let log = dir.join("partclone.log");
                let c = cmd!(sh, "partclone.extfs -b -q -L {log} -s {src} -O {dst}");
                synced(sh, c, used)
            })?);
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
            eprintln!("cp -ax {case}: {secs:.2} s");
            rows.push(Row {
                tool: "cp -ax (fresh mkfs)",
                case: case.clone(),
                secs,
                moved: used,
            });
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
    let rows = medians(rows);

    println!("\n| tool | image | time (s) | bytes moved | MiB/s moved | moved ÷ used | time ÷ e2image's | rate ÷ dd's |");
    println!("|---|---|---|---|---|---|---|---|");
    for r in &rows {
        let used = used_by_case
            .iter()
            .find(|u| u.0 == r.case)
            .map_or(1, |u| u.1);
        let of = |tool: &str| {
            rows.iter()
                .find(|d| d.case == r.case && d.tool == tool)
                .with_context(|| format!("no {tool} row"))
        };
        let (dd, e2) = (of("dd bs=4M")?, of("e2image -ra")?);
        let rate = |x: &Row| x.moved as f64 / x.secs;
        let ours = r.tool.starts_with("rescue clone");
        let (vs_e2, vs_dd) = if ours {
            (
                format!("{:.2}", r.secs / e2.secs),
                format!("{:.2}", rate(r) / rate(dd)),
            )
        } else {
            Default::default()
        };
        println!(
            "| {} | {} | {:.2} | {} | {:.0} | {:.3} | {vs_e2} | {vs_dd} |",
            r.tool,
            r.case,
            r.secs,
            r.moved,
            rate(r) / 1048576.0,
            r.moved as f64 / used as f64,
        );
    }
    Ok(())
}

/// Runs a tool that writes through the page cache, quietly, then `sync`, so its run
/// ends with the data durable as ours does; returns `moved`.
fn synced(sh: &Shell, tool: xshell::Cmd<'_>, moved: u64) -> anyhow::Result<u64> {
    tool.quiet().ignore_stderr().run()?;
    cmd!(sh, "sync").run()?;
    Ok(moved)
}

/// One row per (tool, case), in the order first seen, with the median time of its rounds.
fn medians(rows: Vec<Row>) -> Vec<Row> {
    let mut out: Vec<(Row, Vec<f64>)> = Vec::new();
    for r in rows {
        match out
            .iter_mut()
            .find(|(o, _)| o.tool == r.tool && o.case == r.case)
        {
            Some((_, times)) => times.push(r.secs),
            None => {
                let secs = r.secs;
                out.push((r, vec![secs]));
            }
        }
    }
    out.into_iter()
        .map(|(mut r, mut times)| {
            times.sort_by(f64::total_cmp);
            r.secs = times[times.len() / 2];
            r
        })
        .collect()
}

enum Case {
    /// The tree as an installer writes it: one pass, files laid out back to back.
    DebianFresh,
    /// The tree after a life of updates: written through a mount, every second file
    /// deleted, more written into the holes (thousands of short extents).
    DebianAged,
    /// ext4 this % full of large random files.
    Filled(u32),
}

/// A real root in a 1.1 GiB ext3 (the file system XenServer 6/7 roots use) from the
/// fixtures' Debian tree (about 660 MiB in ~10k files): written by `mke2fs -d`, or aged.
fn debian_ext3(
    sh: &Shell,
    img: &std::path::Path,
    dir: &std::path::Path,
    mnt: &std::path::Path,
    aged: bool,
) -> anyhow::Result<()> {
    let tar = base_tar(sh)?;
    let tree = dir.join("debian-tree");
    let _ = std::fs::remove_dir_all(&tree);
    std::fs::create_dir_all(&tree)?;
    cmd!(sh, "tar -xf {tar} -C {tree}").run()?;
    let _ = std::fs::remove_file(img);
    if aged {
        cmd!(sh, "truncate -s 1100M {img}").run()?;
        cmd!(sh, "mke2fs -F -q -t ext3 {img}").run()?;
        cmd!(sh, "mount -o loop {img} {mnt}").run()?;
        let aged = age(sh, &tree, mnt);
        cmd!(sh, "umount {mnt}").run()?;
        aged?;
    } else {
        cmd!(sh, "mke2fs -F -q -t ext3 -d {tree} {img} 1100M").run()?;
    }
    std::fs::remove_dir_all(&tree)?;
    // Written in full, as a partition is: a sparse file's holes would read for free.
    let len = std::fs::metadata(img)?.len();
    let full = dir.join("full.img");
    let (iff, of) = (
        format!("if={}", img.display()),
        format!("of={}", full.display()),
    );
    cmd!(sh, "dd {iff} {of} bs=4M conv=fsync status=none").run()?;
    std::fs::rename(&full, img)?;
    anyhow::ensure!(
        std::fs::metadata(img)?.len() == len,
        "the full copy of {} has another size",
        img.display()
    );
    Ok(())
}

/// Write `tree` into `mnt`, delete every second file, write parts of it again into the
/// holes and delete every third of those: what years of package updates leave behind.
fn age(sh: &Shell, tree: &std::path::Path, mnt: &std::path::Path) -> anyhow::Result<()> {
    let every_nth_file = |d: &std::path::Path, n: usize| -> anyhow::Result<()> {
        let list = cmd!(sh, "find {d} -type f").quiet().read()?;
        for f in list.lines().skip(n - 1).step_by(n) {
            std::fs::remove_file(f)?;
        }
        Ok(())
    };
    let (a, b, c) = (mnt.join("a"), mnt.join("b"), mnt.join("c"));
    cmd!(sh, "cp -a {tree} {a}").run()?;
    cmd!(sh, "sync").run()?;
    every_nth_file(&a, 2)?;
    cmd!(sh, "sync").run()?;
    let (share, bin) = (tree.join("usr/share"), tree.join("usr/bin"));
    cmd!(sh, "cp -a {share} {b}").run()?;
    every_nth_file(&b, 3)?;
    cmd!(sh, "cp -a {bin} {c}").run()?;
    Ok(())
}

/// The fixtures' Debian base tar. Building a fixture builds it; a new base replaces the
/// old, so the cache holds one. (Not a function of `fixture/mod.rs`: its text is part of
/// every fixture's cache key.)
fn base_tar(sh: &Shell) -> anyhow::Result<PathBuf> {
    crate::fixture::run(sh, "xs7")?;
    let dir = crate::cache::root().join("base");
    let mut tars: Vec<PathBuf> = std::fs::read_dir(&dir)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            p.extension().is_some_and(|x| x == "tar") && !p.to_string_lossy().ends_with(".part.tar")
        })
        .collect();
    tars.sort();
    tars.pop()
        .with_context(|| format!("no Debian base tar in {}", dir.display()))
}

//! `cargo xtask bench backup`: `rescue backup` of an ext4 image 10 %, 50 % and 90 % full
//! of random data against `partclone.extfs -c | gzip -1` and `dd | gzip -1` (the same
//! codec), page cache dropped before each run: time and bytes written. Our backup
//! compresses on two threads; gzip is one, so `pigz -1` is timed too when installed.
//! Then an SR (a GPT disk whose one partition is an LVM PV, `VG_XenStorage-…`, with an
//! `MGT` LV and `VHD-…` LVs) whose LVs take 10, 50 and 90 % of the VG, against `dd |
//! gzip -1` of the disk: partclone has no LVM support, so it has no row there. The PV's
//! free extents hold random bytes, as a real SR's hold deleted VDIs.
//! Needs root (loop mounts, drop_caches). Images in `$BENCH_DIR` (default
//! `/tmp/rescue-bench-backup`), `BENCH_SIZE_MIB` each (default 2048); `BENCH_ONLY=ext4`
//! or `BENCH_ONLY=SR` runs one kind.

use anyhow::Context;
use std::path::{Path, PathBuf};
use std::time::Instant;
use xshell::{cmd, Shell};

struct Row {
    tool: &'static str,
    /// `ext4` or `SR`.
    image: &'static str,
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
        "sgdisk",
        "losetup",
        "pvcreate",
    ] {
        cmd!(sh, "which {tool}")
            .quiet()
            .ignore_stdout()
            .run()
            .with_context(|| {
                format!(
                    "`{tool}` is missing: apt-get install e2fsprogs partclone mount gzip coreutils gdisk lvm2"
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
    let only = std::env::var("BENCH_ONLY").ok();
    for (image, fill) in [10u32, 50, 90]
        .map(|f| ("ext4", f))
        .into_iter()
        .chain([10u32, 50, 90].map(|f| ("SR", f)))
        .filter(|(image, _)| only.as_deref().is_none_or(|o| o == *image))
    {
        let used = if image == "SR" {
            sr_image(sh, &src, size_mib, fill)?
        } else {
            super::filled_ext4(sh, &src, &mnt, size_mib, fill)?;
            super::used_bytes(sh, &src)?
        };
        used_by_fill.push((image, fill, used));
        let mut time = |tool: &'static str, f: &dyn Fn(&Shell) -> anyhow::Result<()>| {
            let _ = std::fs::remove_dir_all(&out);
            cmd!(sh, "sync").run()?;
            std::fs::write("/proc/sys/vm/drop_caches", "3").context("drop_caches needs root")?;
            let t = Instant::now();
            f(sh)?;
            cmd!(sh, "sync").run()?;
            let secs = t.elapsed().as_secs_f64();
            let written = dir_bytes(&out);
            eprintln!("{tool} {image} {fill}%: {secs:.2} s, {written} bytes written");
            rows.push(Row {
                tool,
                image,
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
        if image != "SR" {
            time("partclone.extfs -c | gzip -1", &|sh| {
                pipe(
                    sh,
                    format!("partclone.extfs -c -q -s {s} -o - 2>/dev/null | gzip -1 > {o}/p.gz"),
                )
            })?;
        }
        time("dd bs=4M | gzip -1", &|sh| {
            pipe(
                sh,
                format!("dd if={s} bs=4M status=none | gzip -1 > {o}/d.gz"),
            )
        })?;
        if pigz && image != "SR" {
            time("partclone.extfs -c | pigz -1", &|sh| {
                pipe(
                    sh,
                    format!("partclone.extfs -c -q -s {s} -o - 2>/dev/null | pigz -1 > {o}/p.gz"),
                )
            })?;
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
    println!(
        "\n| image | tool | fill | time (s) | bytes written | used bytes | ours ÷ this (time) |"
    );
    println!("|---|---|---|---|---|---|---|");
    for r in &rows {
        let used = used_by_fill
            .iter()
            .find(|u| u.0 == r.image && u.1 == r.fill)
            .map_or(0, |u| u.2);
        let ours = rows
            .iter()
            .find(|o| o.image == r.image && o.fill == r.fill && o.tool == "rescue backup")
            .context("no rescue backup row")?;
        println!(
            "| {} | {} | {}% | {:.2} | {} | {} | {:.2} |",
            r.image,
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

// LVM on `dev` only, no udev, no activation (the host kernel need not have dm), no
// archives in /etc.
use qemu_tests::images::LVM_CONF;

/// An SR disk of `size_mib`: GPT, one LVM partition from 1 MiB, a PV whose extents all
/// hold random bytes first, then `MGT` (4 MiB) and 256 MiB `VHD-…` LVs (random bytes)
/// until they take `fill` % of the VG. Returns the bytes the LVs hold.
fn sr_image(sh: &Shell, img: &Path, size_mib: u64, fill: u32) -> anyhow::Result<u64> {
    const MIB: u64 = 1 << 20;
    const VG: &str = "VG_XenStorage-0b1e5c2a-7d3f-4e8a-9c6b-5a4d3c2b1a09";
    let _ = std::fs::remove_file(img);
    std::fs::File::create(img)?.set_len(size_mib * MIB)?;
    // Not `-q`: sgdisk 1.0.9 then leaves a blank file without a table, exit status 0.
    cmd!(sh, "sgdisk -o -n 1:2048:0 -t 1:8e00 {img}")
        .quiet()
        .ignore_stdout()
        .run()?;
    // Partition 1 ends 34 sectors before the disk's end (backup GPT).
    let (offset, len) = (MIB, size_mib * MIB - MIB - 34 * 512);
    write_random(img, offset, len)?;
    let (o, l) = (offset.to_string(), len.to_string());
    let dev = cmd!(
        sh,
        "losetup --find --show --offset {o} --sizelimit {l} {img}"
    )
    .read()?;
    let lvm = |tool: &str, args: &[&str]| -> anyhow::Result<String> {
        let out = cmd!(sh, "{tool} --devices {dev} --config {LVM_CONF} {args...}")
            .quiet()
            .ignore_stderr()
            .read()?;
        Ok(out)
    };
    let made = (|| -> anyhow::Result<u64> {
        lvm("pvcreate", &["-ff", "-y", "--norestorefile", &dev])?;
        lvm("vgcreate", &["-s", "4m", VG, &dev])?;
        let extent = 4 * MIB;
        let pe_start: u64 = lvm(
            "pvs",
            &[
                "--noheadings",
                "--units",
                "b",
                "--nosuffix",
                "-o",
                "pe_start",
                &dev,
            ],
        )?
        .trim()
        .parse()?;
        let vg_bytes: u64 = lvm(
            "vgs",
            &[
                "--noheadings",
                "--units",
                "b",
                "--nosuffix",
                "-o",
                "vg_size",
                VG,
            ],
        )?
        .trim()
        .parse()?;
        let want = vg_bytes * u64::from(fill) / 100;
        // VDIs of a twentieth of the VG each, so 10 % holds some at any size.
        let vdi = (vg_bytes / 20 / extent).max(1) * extent;
        let vdi_size = format!("{}m", vdi / MIB);
        let mut names = vec![("MGT".to_string(), "4m".to_string())];
        let mut held = 4 * MIB;
        let mut i = 0;
        while held + vdi <= want {
            names.push((
                format!("VHD-{i:08x}-5d1c-4b3a-8e5f-9a6b8c7d9e0f"),
                vdi_size.clone(),
            ));
            held += vdi;
            i += 1;
        }
        for (name, size) in &names {
            lvm(
                "lvcreate",
                &["-an", "-Zn", "-y", "-L", size, "-n", name, VG],
            )?;
        }
        // Each LV's extents get fresh random bytes (its data), apart from the free ones.
        for (name, _) in &names {
            let ranges = lvm(
                "lvs",
                &[
                    "--noheadings",
                    "-o",
                    "seg_pe_ranges",
                    &format!("{VG}/{name}"),
                ],
            )?;
            for range in ranges.split_whitespace() {
                let (first, last) = range
                    .rsplit_once(':')
                    .and_then(|(_, r)| r.split_once('-'))
                    .with_context(|| format!("lvs printed {range:?} as a PE range"))?;
                let (first, last): (u64, u64) = (first.parse()?, last.parse()?);
                write_random(
                    img,
                    offset + pe_start + first * extent,
                    (last - first + 1) * extent,
                )?;
            }
        }
        Ok(held)
    })();
    cmd!(sh, "losetup -d {dev}").run()?;
    made
}

/// `len` random bytes at `offset` of `path` (xorshift: /dev/urandom is the slow part).
fn write_random(path: &Path, offset: u64, len: u64) -> anyhow::Result<()> {
    use std::io::{Seek, SeekFrom, Write};
    let mut f = std::fs::OpenOptions::new().write(true).open(path)?;
    f.seek(SeekFrom::Start(offset))?;
    let mut state = 0x9e37_79b9_7f4a_7c15u64 ^ offset;
    let mut buf = vec![0u8; 4 << 20];
    let mut left = len;
    while left > 0 {
        for chunk in buf.chunks_exact_mut(8) {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            chunk.copy_from_slice(&state.to_le_bytes());
        }
        let n = left.min(buf.len() as u64) as usize;
        f.write_all(&buf[..n])?;
        left -= n as u64;
    }
    f.sync_all()?;
    Ok(())
}

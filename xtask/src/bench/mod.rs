//! `cargo xtask bench [what]`: performance figures that live outside the test suite.

pub mod backup;
pub mod boot;
pub mod clone;
pub mod convert;

use anyhow::Context;
use std::path::Path;
use xshell::{cmd, Shell};

/// An ext4 image of `size_mib` written in full (as a real partition is: holes would read
/// for free), then filled to `fill` % of its free space with random files through a loop
/// mount at `mnt`. Needs root.
pub fn filled_ext4(
    sh: &Shell,
    img: &Path,
    mnt: &Path,
    size_mib: u64,
    fill: u32,
) -> anyhow::Result<()> {
    let (of, count) = (
        format!("of={}", img.display()),
        format!("count={size_mib}M"),
    );
    cmd!(
        sh,
        "dd if=/dev/zero {of} bs=4M {count} iflag=count_bytes conv=fsync status=none"
    )
    .run()?;
    cmd!(sh, "mke2fs -F -q -t ext4 {img}").run()?;
    cmd!(sh, "mount -o loop {img} {mnt}").run()?;
    let free = free_bytes(sh, img)?;
    let mut left = free * u64::from(fill) / 100;
    let mut i = 0;
    while left > 0 {
        let n = left.min(64 << 20);
        let f = mnt.join(format!("f{i}"));
        let data = std::fs::File::create(&f)?;
        let mut urandom = std::fs::File::open("/dev/urandom")?;
        std::io::copy(
            &mut std::io::Read::take(&mut urandom, n),
            &mut std::io::BufWriter::new(data),
        )?;
        left -= n;
        i += 1;
    }
    cmd!(sh, "umount {mnt}").run()?;
    Ok(())
}

fn header(sh: &Shell, img: &Path, key: &str) -> anyhow::Result<u64> {
    let h = cmd!(sh, "dumpe2fs -h {img}")
        .quiet()
        .ignore_stderr()
        .read()?;
    h.lines()
        .find_map(|l| l.strip_prefix(key).map(|v| v.trim().parse::<u64>()))
        .with_context(|| format!("dumpe2fs printed no {key}"))?
        .map_err(Into::into)
}

/// Bytes in use by dumpe2fs's count.
pub fn used_bytes(sh: &Shell, img: &Path) -> anyhow::Result<u64> {
    let bs = header(sh, img, "Block size:")?;
    Ok((header(sh, img, "Block count:")? - header(sh, img, "Free blocks:")?) * bs)
}

fn free_bytes(sh: &Shell, img: &Path) -> anyhow::Result<u64> {
    Ok(header(sh, img, "Free blocks:")? * header(sh, img, "Block size:")?)
}

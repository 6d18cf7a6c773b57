//! Test disk images made with the real tools (sgdisk, mke2fs, mkswap) on sparse files:
//! no loop devices, no partition scanning needed.

use anyhow::{bail, Context};
use std::path::Path;
use std::process::Command;

/// A GPT disk with an ext3 partition and a swap partition.
#[derive(Clone, Debug)]
pub struct TestDisk {
    pub size_bytes: u64,
    pub ext_label: String,
    pub ext_uuid: String,
    pub ext_mib: u64,
    pub swap_label: String,
    pub swap_uuid: String,
    pub swap_mib: u64,
}

impl Default for TestDisk {
    fn default() -> Self {
        TestDisk {
            size_bytes: 128 << 20,
            ext_label: "root-abcdef".into(),
            ext_uuid: "2b7e1b5a-6f2c-4a39-9d55-0d0c8f1a7e01".into(),
            ext_mib: 64,
            swap_label: "swap-abcdef".into(),
            swap_uuid: "8a1c7d3e-0b4f-4c2a-b6d1-5e9f0a2b3c4d".into(),
            swap_mib: 16,
        }
    }
}

/// Partition 1 (ext3) starts at 1 MiB; partition 2 (swap) right after it.
pub const FIRST_PARTITION_LBA: u64 = 2048;

/// LVM's configuration for editing metadata on loop devices: no activation, no udev, no
/// metadata backups on the host.
pub const LVM_CONF: &str = "global { activation = 0 } \
    activation { udev_sync = 0 udev_rules = 0 monitoring = 0 } \
    backup { backup = 0 archive = 0 }";

pub fn run(cmd: &mut Command) -> anyhow::Result<String> {
    let shown = format!("{cmd:?}");
    let out = cmd.output().with_context(|| {
        format!("run {shown}: is the tool installed? (`cargo xtask test` installs it)")
    })?;
    if !out.status.success() {
        bail!(
            "{shown} failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

pub fn blank_disk(path: &Path, size: u64) -> anyhow::Result<()> {
    let f = std::fs::File::create(path)?;
    f.set_len(size)?;
    Ok(())
}

/// Builds the disk described by `spec` at `path`.
pub fn two_partition_disk(path: &Path, spec: TestDisk) -> anyhow::Result<()> {
    blank_disk(path, spec.size_bytes)?;
    let ext_end = FIRST_PARTITION_LBA + spec.ext_mib * 2048 - 1;
    let swap_start = ext_end + 1;
    let swap_end = swap_start + spec.swap_mib * 2048 - 1;
    run(Command::new("sgdisk")
        .arg("-U")
        .arg("11111111-2222-3333-4444-555555555555")
        .arg(format!("--new=1:{FIRST_PARTITION_LBA}:{ext_end}"))
        .arg("--typecode=1:0700")
        .arg("--change-name=1:root")
        .arg(format!("--new=2:{swap_start}:{swap_end}"))
        .arg("--typecode=2:8200")
        .arg(path))?;
    run(Command::new("mke2fs")
        .args([
            "-q",
            "-F",
            "-t",
            "ext3",
            "-L",
            &spec.ext_label,
            "-U",
            &spec.ext_uuid,
        ])
        .arg("-E")
        .arg(format!("offset={}", FIRST_PARTITION_LBA * 512))
        .arg(path)
        .arg(format!("{}k", spec.ext_mib * 1024)))?;
    // mkswap has no offset option: build the swap area in its own file and splice it in.
    let swap = path.with_extension("swap.tmp");
    blank_disk(&swap, spec.swap_mib << 20)?;
    run(Command::new("mkswap")
        .args(["-L", &spec.swap_label, "-U", &spec.swap_uuid])
        .arg(&swap))?;
    run(Command::new("dd")
        .arg(format!("if={}", swap.display()))
        .arg(format!("of={}", path.display()))
        .args(["bs=512", "conv=notrunc,sparse", "status=none"])
        .arg(format!("seek={swap_start}")))?;
    std::fs::remove_file(&swap)?;
    Ok(())
}

/// The plain sha256 of a file's bytes, as `sha256sum` prints it (for artifacts whose
/// published checksum an operator verifies; disks use [`content_fingerprint`]).
pub fn sha256_file(path: &Path) -> anyhow::Result<String> {
    use sha2::{Digest, Sha256};
    let mut f = std::fs::File::open(path)?;
    let mut h = Sha256::new();
    std::io::copy(&mut f, &mut h)?;
    Ok(h.finalize().iter().map(|b| format!("{b:02x}")).collect())
}

/// A fingerprint of a file's content that proves a test wrote nothing: sha256 over the
/// size and every non-zero 4 KiB block with its offset. Holes are skipped (SEEK_DATA), so
/// a sparse multi-GiB image costs what its data costs. Only content counts: whether the
/// filesystem reports a zeroed range as a hole or as data (unwritten extents, page cache)
/// does not change the result.
pub fn content_fingerprint(path: &Path) -> anyhow::Result<String> {
    use sha2::{Digest, Sha256};
    use std::io::{Seek, SeekFrom};
    use std::os::fd::AsFd;
    const BLOCK: usize = 4096;
    let mut f = std::fs::File::open(path)?;
    let size = f.metadata()?.len();
    let mut h = Sha256::new();
    h.update(size.to_le_bytes());
    let mut buf = vec![0u8; 1 << 20];
    let mut pos = 0u64;
    while pos < size {
        let data = match rustix::fs::seek(f.as_fd(), rustix::fs::SeekFrom::Data(pos)) {
            Ok(d) => d,
            Err(rustix::io::Errno::NXIO) => break, // no data after pos
            Err(e) => return Err(e.into()),
        };
        let hole = rustix::fs::seek(f.as_fd(), rustix::fs::SeekFrom::Hole(data))?;
        // Whole blocks, so a region boundary inside a block does not split it.
        let mut at = data / BLOCK as u64 * BLOCK as u64;
        let end = hole.div_ceil(BLOCK as u64) * BLOCK as u64;
        f.seek(SeekFrom::Start(at))?;
        while at < end.min(size.div_ceil(BLOCK as u64) * BLOCK as u64) {
            let want = ((end - at) as usize).min(buf.len());
            let n = read_full(&mut f, &mut buf[..want])?;
            if n == 0 {
                break;
            }
            for (i, block) in buf[..n].chunks(BLOCK).enumerate() {
                if block.iter().any(|&b| b != 0) {
                    h.update((at + (i * BLOCK) as u64).to_le_bytes());
                    h.update(block);
                }
            }
            at += n as u64;
        }
        pos = end.max(hole);
    }
    Ok(h.finalize().iter().map(|b| format!("{b:02x}")).collect())
}

/// Reads until `buf` is full or the file ends.
fn read_full(f: &mut std::fs::File, buf: &mut [u8]) -> std::io::Result<usize> {
    use std::io::Read;
    let mut n = 0;
    while n < buf.len() {
        match f.read(&mut buf[n..])? {
            0 => break,
            k => n += k,
        }
    }
    Ok(n)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fingerprint_follows_content_only() {
        let dir = std::env::temp_dir().join(format!("xenraid-fp-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let p = dir.join("f.img");
        blank_disk(&p, 64 << 20).unwrap();
        let empty = content_fingerprint(&p).unwrap();
        use std::io::{Seek, SeekFrom, Write};
        let mut f = std::fs::OpenOptions::new().write(true).open(&p).unwrap();
        f.seek(SeekFrom::Start(32 << 20)).unwrap();
        f.write_all(&[0u8; 4096]).unwrap(); // zeros: allocated, same content
        f.sync_all().unwrap();
        assert_eq!(
            empty,
            content_fingerprint(&p).unwrap(),
            "only content counts"
        );
        f.seek(SeekFrom::Start(32 << 20)).unwrap();
        f.write_all(&[1u8; 1]).unwrap();
        f.sync_all().unwrap();
        let one = content_fingerprint(&p).unwrap();
        assert_ne!(empty, one);
        // The same byte one block further is a different content.
        f.seek(SeekFrom::Start(32 << 20)).unwrap();
        f.write_all(&[0u8; 1]).unwrap();
        f.seek(SeekFrom::Start((32 << 20) + 4096)).unwrap();
        f.write_all(&[1u8; 1]).unwrap();
        f.sync_all().unwrap();
        assert_ne!(one, content_fingerprint(&p).unwrap());
        // A write into a hole near the end.
        f.seek(SeekFrom::Start((64 << 20) - 1)).unwrap();
        f.write_all(&[7u8; 1]).unwrap();
        f.sync_all().unwrap();
        assert_ne!(empty, content_fingerprint(&p).unwrap());
        assert_eq!(
            content_fingerprint(&p).unwrap(),
            content_fingerprint(&p).unwrap()
        );
        std::fs::remove_dir_all(dir).unwrap();
    }
}

//! `cargo xtask bench convert`: one conversion of the `xs7` fixture in QEMU (TCG): the
//! rescue's wall time, bytes copied, the copy phase's rate, and how that compares with
//! the target's own `dd bs=4M` copying the same partitions source → mirror in the same
//! VM (the floor a block copy of the used bytes could reach): the ratio is
//! copy phase ÷ (used bytes ÷ dd rate). `BENCH_FIXTURE=xs7-real` converts the host with
//! the distribution's whole module tree instead (the configure step's time and initrd
//! size on a real dom0). `BENCH_INITRD=generic` adds a dracut config file with
//! `hostonly="no"` to the source's root first, so the target's dracut builds a generic
//! initrd instead of following its own (host-only) configuration: the other row of the
//! configure step's table.

use qemu_tests::vm::{Bus, Disk, VmBuilder};
use std::path::Path;
use std::time::{Duration, Instant};
use xshell::{cmd, Shell};

pub fn run(sh: &Shell) -> anyhow::Result<()> {
    let built = crate::build::run(sh, &Default::default())?;
    let name = std::env::var("BENCH_FIXTURE").unwrap_or_else(|_| "xs7".into());
    let fx = qemu_tests::fixture::fixture(&name)?;
    let dir = std::env::temp_dir().join(format!("xenraid-bench-convert-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir)?;
    let source = dir.join("source.img");
    let mirror = dir.join("mirror.img");

    // The reference: the target's own `dd` copying the same partitions, in the same VM
    // (same kernel, machine, TCG, disks, buses) booted into the target's root instead.
    // It gets its own copy of the source (its script is written into the root fs).
    let dd = dd_in_vm(sh, &fx, &dir)?;
    let (dd_bytes, dd_rate) = (dd.bytes, dd.bytes as f64 / dd.seconds.max(0.001));
    qemu_tests::fixture::copy_image(&fx.image, &source)?;
    qemu_tests::images::blank_disk(&mirror, std::fs::metadata(&source)?.len())?;
    let initrd = std::env::var("BENCH_INITRD").unwrap_or_default();
    match initrd.as_str() {
        "" => {}
        "generic" => {
            let conf = dir.join("zz-xenraid-bench-generic.conf");
            std::fs::write(&conf, "hostonly=\"no\"\n")?;
            let (_, root_fs) = root_of(&source, &rescue::inspect::inspect_path(&source)?)?;
            let mkdir = "mkdir /etc/dracut.conf.d";
            // Already there on most roots: a failure here is the normal case.
            let _ = debugfs_w(sh, &root_fs, mkdir).ignore_status().run();
            let write = format!(
                "write {} /etc/dracut.conf.d/zz-xenraid-bench-generic.conf",
                conf.display()
            );
            debugfs_w(sh, &root_fs, &write).run()?;
            println!("dracut told hostonly=\"no\" (BENCH_INITRD=generic)");
        }
        other => anyhow::bail!("BENCH_INITRD={other}: say `generic` or leave it unset"),
    }

    let image = qemu_tests::RescueImage {
        vmlinuz: built.vmlinuz.clone(),
        initramfs: built.initramfs.clone(),
    };
    let started = Instant::now();
    let mut vm = VmBuilder::rescue(&image)
        .memory_mib(2048)
        .append("rescue.action=convert rescue.source=auto rescue.mirror=auto")
        .disk(Disk::new(&source, Bus::Virtio).serial("BENCH-SRC"))
        .disk(Disk::new(&mirror, Bus::Virtio).serial("BENCH-MIR"))
        .spawn(&dir.join("vm"))?;
    let report = vm.wait_for_report(Duration::from_secs(1800))?;
    let vm_secs = started.elapsed().as_secs_f64();
    anyhow::ensure!(report.ok, "the conversion failed: {:?}", report.errors);
    let conv = report.convert.as_ref().expect("convert report");
    let copy_ms: u64 = conv
        .steps
        .iter()
        .filter(|s| s.name.starts_with("copy-"))
        .map(|s| s.duration_ms)
        .sum();
    let used = conv.plan.as_ref().map(|p| p.bytes_to_copy).unwrap_or(0);
    let wall = (report.reported_ms - report.init_started_ms) as f64 / 1000.0;
    println!(
        "conversion of {name} ({} bytes disk) under TCG",
        std::fs::metadata(&source)?.len()
    );
    println!("  rescue wall time (init to report): {wall:.1} s (QEMU process {vm_secs:.1} s)");
    for s in &conv.steps {
        println!(
            "  step {:<22} {:>8.1} s  {}",
            s.name,
            s.duration_ms as f64 / 1000.0,
            s.detail
        );
    }
    println!(
        "  bytes copied: {} (planned used bytes {used}; {} bytes of data partitions)",
        conv.bytes_copied, dd_bytes
    );
    let copy_secs = copy_ms as f64 / 1000.0;
    println!(
        "  copy phase: {copy_secs:.1} s for {} bytes (with read-back verification) = {:.1} MiB/s",
        conv.bytes_copied,
        conv.bytes_copied as f64 / copy_secs.max(0.001) / 1048576.0
    );
    println!(
        "  dd bs=4M oflag=direct of the same partitions in the same VM: {dd_bytes} bytes in {:.1} s = {:.1} MiB/s",
        dd.seconds,
        dd_rate / 1048576.0
    );
    println!(
        "  copy phase ÷ (used bytes ÷ dd rate): {:.2}",
        copy_secs / (used as f64 / dd_rate).max(0.001)
    );
    vm.kill();
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}

/// A fixture image's root partition, and its file system as debugfs names it
/// (`image?offset=`).
fn root_of(
    image: &Path,
    disk: &rescue::inspect::Disk,
) -> anyhow::Result<(rescue::inspect::Partition, String)> {
    let root = disk
        .partitions
        .iter()
        .find(|p| p.role.as_deref() == Some("root"))
        .ok_or_else(|| anyhow::anyhow!("{} has no root partition", image.display()))?;
    let fs = format!("{}?offset={}", image.display(), root.start_lba * 512);
    Ok((root.clone(), fs))
}

/// debugfs writing to `fs` (`image?offset=`), quietly: `request` is one debugfs command.
fn debugfs_w<'a>(sh: &'a Shell, fs: &str, request: &str) -> xshell::Cmd<'a> {
    cmd!(sh, "debugfs -w -R {request} {fs}")
        .quiet()
        .ignore_stderr()
}

struct DdRun {
    bytes: u64,
    seconds: f64,
}

/// Boots the same VM with the target's own kernel and initrd and a script as init that copies
/// each partition with `dd` to the same offset of the blank mirror, timed in the guest.
fn dd_in_vm(sh: &Shell, fx: &qemu_tests::fixture::Fixture, dir: &Path) -> anyhow::Result<DdRun> {
    let (source, mirror) = (dir.join("dd-source.img"), dir.join("dd-mirror.img"));
    let source = source.as_path();
    qemu_tests::fixture::copy_image(&fx.image, source)?;
    qemu_tests::images::blank_disk(&mirror, std::fs::metadata(source)?.len())?;
    let disk = rescue::inspect::inspect_path(source)?;
    // The partitions the conversion copies.
    let parts: Vec<_> = disk
        .partitions
        .iter()
        .filter(|p| matches!(p.role.as_deref(), Some("root" | "logs" | "sr")))
        .collect();
    let (root, root_fs) = root_of(source, &disk)?;
    // The target's own kernel and initrd: the initrd's modules match only that kernel.
    let kver = fx.description["kernel_version"]
        .as_str()
        .ok_or_else(|| anyhow::anyhow!("the fixture description has no kernel_version"))?;
    let (kernel, initrd) = (dir.join("target-vmlinuz"), dir.join("target-initrd.img"));
    for (inside, out) in [
        (format!("/boot/vmlinuz-{kver}"), &kernel),
        (format!("/boot/initrd-{kver}.img"), &initrd),
    ] {
        let dump = format!("dump {inside} {}", out.display());
        cmd!(sh, "debugfs -R {dump} {root_fs}")
            .quiet()
            .ignore_stderr()
            .run()?;
        anyhow::ensure!(
            std::fs::metadata(out).map(|m| m.len() > 0).unwrap_or(false),
            "could not read {inside} from the fixture's root"
        );
    }
    let mut script = String::from(
        "#!/bin/sh\nexport PATH=/usr/sbin:/usr/bin:/sbin:/bin\nmount -t proc proc /proc 2>/dev/null\nt0=$(date +%s%N)\n",
    );
    let mut bytes = 0u64;
    for p in &parts {
        script.push_str(&format!(
            "dd if=/dev/vda{} of=/dev/vdb bs=4M iflag=count_bytes count={} oflag=seek_bytes,direct seek={} conv=fsync,notrunc status=none || echo XR-DD-FAILED vda{}\n",
            p.number,
            p.size_bytes,
            p.start_lba * 512,
            p.number
        ));
        bytes += p.size_bytes;
    }
    script.push_str(&format!(
        "t1=$(date +%s%N)\necho \"XR-DD-RESULT {bytes} $(( (t1 - t0) / 1000000 ))\"\nsync\necho o > /proc/sysrq-trigger\nsleep 60\n"
    ));
    let script_path = dir.join("bench-dd.sh");
    std::fs::write(&script_path, script)?;
    let (write, chmod) = (
        format!("write {} /xenraid-bench-dd", script_path.display()),
        "sif /xenraid-bench-dd mode 0100755".to_string(),
    );
    let rm = "rm /xenraid-bench-dd";
    let _ = debugfs_w(sh, &root_fs, rm).ignore_status().run();
    debugfs_w(sh, &root_fs, &write).run()?;
    debugfs_w(sh, &root_fs, &chmod).run()?;

    let root_arg = match &root.label {
        Some(l) => format!("root=LABEL={l}"),
        None => format!("root=/dev/vda{}", root.number),
    };
    let append =
        format!("console=ttyS0,115200 {root_arg} ro init=/xenraid-bench-dd panic=-1 quiet");
    let mut vm = VmBuilder::new()
        .kernel(&kernel, &initrd, &append)
        .memory_mib(2048)
        .disk(Disk::new(source, Bus::Virtio).serial("BENCH-SRC"))
        .disk(Disk::new(&mirror, Bus::Virtio).serial("BENCH-MIR"))
        .spawn(&dir.join("dd-vm"))?;
    let line = vm.wait_for_marker("XR-DD-RESULT", Duration::from_secs(3600))?;
    let log = vm.console();
    vm.kill();
    let _ = std::fs::remove_file(&mirror);
    let _ = std::fs::remove_file(source);
    anyhow::ensure!(!log.contains("XR-DD-FAILED"), "dd failed in the VM:\n{log}");
    let mut it = line.split_whitespace().map(str::parse::<u64>);
    match (it.next(), it.next()) {
        (Some(Ok(b)), Some(Ok(ms))) if b == bytes => Ok(DdRun {
            bytes: b,
            seconds: ms as f64 / 1000.0,
        }),
        _ => anyhow::bail!("unexpected dd result line {line:?}"),
    }
}

//! `cargo xtask bench convert`: one conversion of the `xs7` fixture in QEMU (TCG): the
//! rescue's wall time, bytes copied, the copy phase's rate, and how that compares with
//! a full `dd bs=4M` of the same partitions on this host (the floor a block copy of the
//! used bytes could reach).

use qemu_tests::vm::{Bus, Disk, VmBuilder};
use std::time::{Duration, Instant};
use xshell::{cmd, Shell};

pub fn run(sh: &Shell) -> anyhow::Result<()> {
    let built = crate::build::run(sh, &Default::default())?;
    let fx = qemu_tests::fixture::fixture("xs7")?;
    let dir = std::env::temp_dir().join(format!("xenraid-bench-convert-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir)?;
    let source = dir.join("source.img");
    let mirror = dir.join("mirror.img");
    qemu_tests::fixture::copy_image(&fx.image, &source)?;
    qemu_tests::images::blank_disk(&mirror, std::fs::metadata(&source)?.len())?;

    // Host dd of every data partition the conversion copies: the reference rate.
    let disk = rescue::inspect::inspect_path(&source)?;
    let (mut dd_bytes, t) = (0u64, Instant::now());
    let scratch = dir.join("dd.out");
    for p in disk
        .partitions
        .iter()
        .filter(|p| matches!(p.role.as_deref(), Some("root" | "logs" | "sr")))
    {
        let (src, out) = (
            format!("if={}", source.display()),
            format!("of={}", scratch.display()),
        );
        let (skip, count) = (
            format!("skip={}", p.start_lba * 512),
            format!("count={}", p.size_bytes),
        );
        let _ = std::fs::write("/proc/sys/vm/drop_caches", "3");
        cmd!(sh, "dd {src} {out} bs=4M iflag=skip_bytes,count_bytes {skip} {count} conv=fsync status=none").run()?;
        dd_bytes += p.size_bytes;
    }
    let _ = std::fs::remove_file(&scratch);
    let dd_rate = dd_bytes as f64 / t.elapsed().as_secs_f64();

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
        "conversion of xs7 ({} bytes disk) under TCG",
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
        "  host dd bs=4M of the same partitions: {:.1} MiB/s",
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

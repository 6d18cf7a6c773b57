//! `cargo xtask bench boot`: image sizes and how long init takes to report on an
//! inspect boot under TCG.

use xshell::Shell;

pub fn run(sh: &Shell) -> anyhow::Result<()> {
    let built = crate::build::run(sh, &Default::default())?;
    let m = &built.manifest;
    println!(
        "initramfs.cpio.gz      {:>10} bytes ({:.2} MiB), {} modules",
        m.initramfs.bytes,
        mib(m.initramfs.bytes),
        m.modules.len()
    );
    println!(
        "init (rescue, static)  {:>10} bytes ({:.2} MiB)",
        m.init_bytes,
        mib(m.init_bytes)
    );
    println!(
        "vmlinuz                {:>10} bytes ({:.2} MiB)",
        m.vmlinuz.bytes,
        mib(m.vmlinuz.bytes)
    );
    let runs = 3;
    let mut own = Vec::new();
    for i in 0..runs {
        let dir =
            std::env::temp_dir().join(format!("xenraid-bench-boot-{}-{i}", std::process::id()));
        let report = qemu_tests::bench_inspect_boot(&built.vmlinuz, &built.initramfs, &dir)?;
        let _ = std::fs::remove_dir_all(&dir);
        println!(
            "inspect boot {i}: init started at {} ms, reported at {} ms: init's own time {} ms (settle {} ms, {} modules)",
            report.init_started_ms,
            report.reported_ms,
            report.reported_ms - report.init_started_ms,
            report.settle_ms,
            report.modules_loaded
        );
        let mut slowest: Vec<_> = report.module_load_ms.iter().collect();
        slowest.sort_by(|a, b| b.1.cmp(a.1));
        let total: u64 = report.module_load_ms.values().sum();
        println!(
            "  finit_module total {total} ms; slowest: {}",
            slowest
                .iter()
                .take(4)
                .map(|(n, ms)| format!("{n} {ms} ms"))
                .collect::<Vec<_>>()
                .join(", ")
        );
        own.push(report.reported_ms - report.init_started_ms);
    }
    own.sort();
    println!(
        "init's own time, median of {runs}: {} ms (min {}, max {})",
        own[runs / 2],
        own[0],
        own[runs - 1]
    );
    Ok(())
}

fn mib(b: u64) -> f64 {
    b as f64 / (1024.0 * 1024.0)
}

//! `cargo xtask bench boot`: image sizes and how long init takes to report on an
//! inspect boot under TCG. `BENCH_KARGS` adds kernel arguments to every boot (e.g.
//! `libata.force=nodbdelay`, which the rescue hands to libata as modprobe would).

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
    // One vCPU, as every test VM has, and two: a server loads its drivers on many cores,
    // and on one the loads take turns. Boots interleaved, medians per count.
    let kargs = std::env::var("BENCH_KARGS").unwrap_or_default();
    if !kargs.is_empty() {
        println!("kernel arguments added to every boot: {kargs}");
    }
    let runs = 3;
    let cpu_counts = [1u32, 2];
    let mut own: Vec<Vec<u64>> = vec![Vec::new(); cpu_counts.len()];
    for i in 0..runs {
        for (c, &cpus) in cpu_counts.iter().enumerate() {
            let dir = std::env::temp_dir().join(format!(
                "xenraid-bench-boot-{}-{i}-{cpus}",
                std::process::id()
            ));
            let report = qemu_tests::bench_inspect_boot(
                &built.vmlinuz,
                &built.initramfs,
                &dir,
                cpus,
                &kargs,
            )?;
            let _ = std::fs::remove_dir_all(&dir);
            print_boot(i, cpus, &report);
            own[c].push(report.reported_ms - report.init_started_ms);
        }
    }
    for (c, cpus) in cpu_counts.iter().enumerate() {
        let o = &mut own[c];
        o.sort();
        println!(
            "init's own time with {cpus} vCPU, median of {runs}: {} ms (min {}, max {})",
            o[runs / 2],
            o[0],
            o[runs - 1]
        );
    }
    Ok(())
}

fn print_boot(i: usize, cpus: u32, report: &rescue::report::Report) {
    println!(
        "inspect boot {i} ({cpus} vCPU): init started at {} ms, reported at {} ms: init's own time {} ms (settle {} ms, {} modules)",
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
    // Each load as [start, end) in ms since init started: what overlapped what.
    let mut timeline: Vec<_> = report
        .module_started_ms
        .iter()
        .map(|(n, s)| {
            let from = s.saturating_sub(report.init_started_ms);
            let ms = report.module_load_ms.get(n).copied().unwrap_or(0);
            (from, from + ms, n)
        })
        .collect();
    timeline.sort();
    if !timeline.is_empty() {
        println!(
            "  loads (ms since init started): {}",
            timeline
                .iter()
                .map(|(a, b, n)| format!("{n} {a}-{b}"))
                .collect::<Vec<_>>()
                .join(", ")
        );
    }
}

fn mib(b: u64) -> f64 {
    b as f64 / (1024.0 * 1024.0)
}

//! `cargo xtask fuzz`: every target in `rescue::fuzzing` under libFuzzer, coverage-guided
//! on stable Rust (sanitizer-coverage passes, no sanitizer: a panic, an overflow, a
//! timeout or an allocation past the limit is a crash; memory errors cannot happen in our
//! safe code). Seeds come from `rescue/tests/fuzz.rs` (real-tool images); the corpus
//! grows in the cache across runs. Two targets at a time; each runs until it has executed
//! `--runs` inputs or for `--secs`, whichever comes first. Prints execs and crashes per
//! target; exits non-zero if anything crashed. Crash files are kept under
//! `target/fuzz/artifacts/<target>/`: copy one into `rescue/tests/fuzz-regressions/<target>/`
//! once fixed, and the ordinary suite replays it.

use anyhow::{bail, Context, Result};
use std::path::{Path, PathBuf};
use std::process::Command;
use xshell::{cmd, Shell};

#[derive(clap::Args)]
pub struct FuzzArgs {
    /// Targets to run (default: all). `--list` names them.
    targets: Vec<String>,
    /// Stop a target after this many executed inputs.
    #[arg(long, default_value_t = 1_000_000)]
    runs: u64,
    /// ... or after this many seconds.
    #[arg(long, default_value_t = 600)]
    secs: u64,
    /// Targets run at once.
    #[arg(long, default_value_t = 2)]
    jobs: usize,
    /// Print the targets and what each one reads, then stop.
    #[arg(long)]
    list: bool,
}

/// The flags `cargo fuzz --sanitizer none` passes: coverage counters, comparison tracing
/// and the PC table libFuzzer needs. All are stable codegen flags.
const COVERAGE_FLAGS: &str = "-Cpasses=sancov-module \
     -Cllvm-args=-sanitizer-coverage-level=4 \
     -Cllvm-args=-sanitizer-coverage-inline-8bit-counters \
     -Cllvm-args=-sanitizer-coverage-pc-table \
     -Cllvm-args=-sanitizer-coverage-trace-compares \
     --cfg fuzzing";

struct Outcome {
    target: &'static str,
    execs: u64,
    secs: f64,
    crashes: Vec<PathBuf>,
    corpus: usize,
    log: PathBuf,
}

pub fn run(sh: &Shell, args: &FuzzArgs) -> Result<()> {
    let all = rescue::fuzzing::TARGETS;
    if args.list {
        for t in all {
            println!("{:12} {}", t.name, t.input);
        }
        return Ok(());
    }
    let chosen: Vec<&'static rescue::fuzzing::Target> = if args.targets.is_empty() {
        all.iter().collect()
    } else {
        args.targets
            .iter()
            .map(|n| {
                rescue::fuzzing::by_name(n).with_context(|| {
                    format!("no fuzz target {n:?}: `cargo xtask fuzz --list` names them")
                })
            })
            .collect::<Result<_>>()?
    };

    // libfuzzer-sys builds libFuzzer itself (C++); the seeds need the test's tools.
    let tools: Vec<(&str, &str)> = [crate::deps::TEST, &[("g++", "g++")]].concat();
    crate::deps::ensure(sh, &tools, &[])?;
    let root = crate::project_root();
    let work = root.join("target/fuzz");
    let cache = crate::cache::root().join("fuzz");
    let seeds = cache.join("seeds");

    // Seeds, and a first pass of every target over them in the ordinary test build.
    eprintln!("xtask fuzz: seeds (rescue/tests/fuzz.rs)");
    let test = "every_target_survives_its_seeds_mutations_and_regressions";
    cmd!(
        sh,
        "cargo test -p rescue --test fuzz {test} -- --exact --quiet"
    )
    .env("XENRAID_FUZZ_SEEDS_OUT", &seeds)
    .run()?;
    if let Some(t) = chosen.iter().find(|t| !seeds.join(t.name).is_dir()) {
        bail!(
            "the seed test wrote no seeds for {} under {}",
            t.name,
            seeds.display()
        );
    }

    let host = host_triple(sh)?;
    eprintln!("xtask fuzz: building the libFuzzer driver ({host}, coverage-instrumented)");
    cmd!(
        sh,
        "cargo build --profile fuzz -p rescue --example fuzz --features libfuzzer --target {host}"
    )
    .env("CARGO_TARGET_DIR", &work)
    .env("RUSTFLAGS", COVERAGE_FLAGS)
    .run()?;
    let bin = work.join(&host).join("fuzz/examples/fuzz");
    if !bin.is_file() {
        bail!("the fuzz driver was not built at {}", bin.display());
    }

    let mut outcomes = Vec::new();
    for batch in chosen.chunks(args.jobs.max(1)) {
        let running: Vec<_> = batch
            .iter()
            .map(|&t| {
                let (bin, work, cache, seeds) =
                    (bin.clone(), work.clone(), cache.clone(), seeds.clone());
                let (runs, secs) = (args.runs, args.secs);
                std::thread::spawn(move || fuzz_one(t, &bin, &work, &cache, &seeds, runs, secs))
            })
            .collect();
        for r in running {
            let o = r.join().expect("fuzz thread")?;
            eprintln!(
                "xtask fuzz: {} {} execs in {:.0} s, {} crashes",
                o.target,
                o.execs,
                o.secs,
                o.crashes.len()
            );
            outcomes.push(o);
        }
    }

    println!(
        "{:12} {:>10} {:>8} {:>9} {:>7} {:>8}",
        "target", "execs", "secs", "execs/s", "corpus", "crashes"
    );
    for o in &outcomes {
        println!(
            "{:12} {:>10} {:>8.0} {:>9.0} {:>7} {:>8}",
            o.target,
            o.execs,
            o.secs,
            o.execs as f64 / o.secs.max(0.001),
            o.corpus,
            o.crashes.len()
        );
    }
    let execs: u64 = outcomes.iter().map(|o| o.execs).sum();
    let crashed: Vec<&Outcome> = outcomes.iter().filter(|o| !o.crashes.is_empty()).collect();
    let short: Vec<&str> = outcomes
        .iter()
        .filter(|o| o.crashes.is_empty() && o.execs < args.runs)
        .map(|o| o.target)
        .collect();
    println!(
        "fuzz: {} targets, {execs} execs, {} crashed{}",
        outcomes.len(),
        crashed.len(),
        if short.is_empty() {
            String::new()
        } else {
            format!(
                "; under {} execs in {} s: {}",
                args.runs,
                args.secs,
                short.join(", ")
            )
        }
    );
    for o in &crashed {
        for c in &o.crashes {
            println!(
                "crash: {} {} (log {})",
                o.target,
                c.display(),
                o.log.display()
            );
        }
    }
    if !crashed.is_empty() {
        bail!(
            "{} fuzz targets crashed: see the crash files and logs above",
            crashed.len()
        );
    }
    Ok(())
}

fn fuzz_one(
    t: &'static rescue::fuzzing::Target,
    bin: &Path,
    work: &Path,
    cache: &Path,
    seeds: &Path,
    runs: u64,
    secs: u64,
) -> Result<Outcome> {
    let corpus = cache.join("corpus").join(t.name);
    let artifacts = work.join("artifacts").join(t.name);
    let logs = work.join("logs");
    for d in [&corpus, &artifacts, &logs] {
        std::fs::create_dir_all(d)?;
    }
    let log = logs.join(format!("{}.log", t.name));
    let started = std::time::Instant::now();
    let out = Command::new(bin)
        .env("XENRAID_FUZZ_TARGET", t.name)
        .arg(&corpus)
        .arg(seeds.join(t.name))
        .arg(format!("-runs={runs}"))
        .arg(format!("-max_total_time={secs}"))
        .arg(format!("-max_len={}", t.kind.max_len()))
        .arg("-timeout=10")
        .arg("-rss_limit_mb=2048")
        .arg("-malloc_limit_mb=1024")
        .arg("-print_final_stats=1")
        .arg(format!("-artifact_prefix={}/", artifacts.display()))
        .output()
        .with_context(|| format!("running {}", bin.display()))?;
    let secs = started.elapsed().as_secs_f64();
    let stderr = String::from_utf8_lossy(&out.stderr);
    std::fs::write(&log, stderr.as_bytes())?;
    let crashes: Vec<PathBuf> = std::fs::read_dir(&artifacts)?
        .flatten()
        .map(|e| e.path())
        .filter(|p| {
            let n = p.file_name().and_then(|n| n.to_str()).unwrap_or("");
            ["crash-", "timeout-", "oom-", "leak-", "slow-unit-"]
                .iter()
                .any(|k| n.starts_with(k))
        })
        .collect();
    if !out.status.success() && crashes.is_empty() {
        bail!(
            "the {} fuzzer stopped ({}) without a crash file: see {}",
            t.name,
            out.status,
            log.display()
        );
    }
    Ok(Outcome {
        target: t.name,
        execs: final_stat(&stderr, "stat::number_of_executed_units").unwrap_or(0),
        secs,
        crashes,
        corpus: std::fs::read_dir(&corpus).map(|d| d.count()).unwrap_or(0),
        log,
    })
}

/// A `stat::name: N` line of libFuzzer's final statistics.
fn final_stat(stderr: &str, name: &str) -> Option<u64> {
    stderr.lines().rev().find_map(|l| {
        l.strip_prefix(name)?
            .trim()
            .strip_prefix(':')?
            .trim()
            .parse()
            .ok()
    })
}

fn host_triple(sh: &Shell) -> Result<String> {
    let v = cmd!(sh, "rustc -vV").read()?;
    v.lines()
        .find_map(|l| l.strip_prefix("host: "))
        .map(str::to_string)
        .context("`rustc -vV` printed no host triple")
}

#[cfg(test)]
mod tests {
    use super::final_stat;

    #[test]
    fn reads_libfuzzer_final_stats() {
        let err = "#1000000\tDONE   cov: 812 ft: 3057 corp: 214/1108Kb exec/s: 8771\n\
                   Done 1000000 runs in 114 second(s)\n\
                   stat::number_of_executed_units: 1000000\n\
                   stat::average_exec_per_sec:     8771\n\
                   stat::new_units_added:          1311\n";
        assert_eq!(
            final_stat(err, "stat::number_of_executed_units"),
            Some(1_000_000)
        );
        assert_eq!(final_stat(err, "stat::average_exec_per_sec"), Some(8771));
        assert_eq!(final_stat("", "stat::number_of_executed_units"), None);
    }
}

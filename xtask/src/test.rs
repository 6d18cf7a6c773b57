//! `cargo xtask test` (what CI runs) and `cargo xtask e2e` (everything): install what the
//! tests need, build the image, then run every test group of the workspace — each
//! package's unit tests, each integration test file, the doc tests — one after another,
//! all of them even when one fails, and end with one summary line per group and a total.

use anyhow::{bail, Context};
use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};
use std::time::Instant;
use xshell::{cmd, Shell};

#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    /// The representative subset that fits CI's time budget.
    Ci,
    /// The full QEMU matrix.
    Full,
}

/// One `cargo test` invocation.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Group {
    name: String,
    args: Vec<String>,
}

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
struct Counts {
    passed: u64,
    failed: u64,
    ignored: u64,
}

pub fn run(sh: &Shell, scope: Scope) -> anyhow::Result<()> {
    // The delivery images are built by unit tests too (the USB stick's reproducibility),
    // which run before any test that would call `cargo xtask usb`: install their tools now.
    let tools: Vec<(&str, &str)> = [crate::deps::TEST, crate::delivery::TOOLS].concat();
    let files: Vec<(&str, &str)> = [crate::deps::TEST_FILES, crate::delivery::FILES].concat();
    crate::deps::ensure(sh, &tools, &files)?;
    let built = crate::build::run(sh, &Default::default())?;
    let env = [
        ("XENRAID_IMAGE_DIR", built.dir.display().to_string()),
        (
            "XENRAID_E2E",
            if scope == Scope::Full { "full" } else { "ci" }.to_owned(),
        ),
        // QEMU guests under TCG are CPU-bound: two at a time.
        ("RUST_TEST_THREADS", "2".to_owned()),
        // The harness refuses these outside e2e, so CI never builds one by accident.
        ("XENRAID_E2E_ONLY_FIXTURES", E2E_ONLY_FIXTURES.join(",")),
    ];
    // Compile everything once, so a group's time is its tests' time.
    cmd!(sh, "cargo test --workspace --locked --all-targets --no-run").run()?;
    let groups = groups(&cmd!(sh, "cargo metadata --no-deps --format-version 1").read()?)?;
    // On a cold cache the fixtures are the long pole: build them (two at a time) while
    // the quick groups run. A test needing one waits on its lock; a failed build here is
    // left to the test that needs it to report.
    let prefetch = prefetch_fixtures(scope);

    let mut rows = Vec::new();
    for g in &groups {
        eprintln!("\n==> test group {}: cargo {}", g.name, g.args.join(" "));
        let started = Instant::now();
        let (success, counts) = run_group(sh, g, scope, &env)?;
        rows.push((g, success, counts, started.elapsed().as_secs()));
    }

    for t in prefetch {
        let _ = t.join();
    }
    let mut total = Counts::default();
    eprintln!("\n==> summary");
    for (g, success, c, secs) in &rows {
        // A group that failed without a failing test (did not build, crashed, timed out
        // outside a test) still counts as one failure.
        let failed = if *success { c.failed } else { c.failed.max(1) };
        let state = if *success && failed == 0 {
            "ok"
        } else {
            "FAILED"
        };
        println!(
            "{state:6} {:32} {} passed, {failed} failed, {} ignored ({secs} s)",
            g.name, c.passed, c.ignored
        );
        total.passed += c.passed;
        total.failed += failed;
        total.ignored += c.ignored;
    }
    println!(
        "{} passed, {} failed ({} ignored, {} groups)",
        total.passed,
        total.failed,
        total.ignored,
        rows.len()
    );
    if total.failed > 0 {
        bail!(
            "{} test(s) failed: see the groups marked FAILED above",
            total.failed
        );
    }
    Ok(())
}

/// QEMU test files that boot only the rescue image and disks they make themselves.
const NO_FIXTURE_GROUPS: &[&str] = &["delivery", "rescue_boot", "backup"];

/// Fixtures that only `cargo xtask e2e` uses: a cold CI run does not build them (their
/// layouts are covered in CI by unit tests and by the other fixtures' boots).
const E2E_ONLY_FIXTURES: &[&str] = &["xs7-nosr"];

/// Starts two threads that build (or find cached) every fixture recipe the scope uses.
fn prefetch_fixtures(scope: Scope) -> Vec<std::thread::JoinHandle<()>> {
    let dir = crate::project_root().join("qemu-tests/fixtures/recipes");
    let mut names: Vec<String> = std::fs::read_dir(&dir)
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let n = e.file_name().to_string_lossy().into_owned();
            n.strip_suffix(".json").map(str::to_owned)
        })
        .filter(|n| scope == Scope::Full || !E2E_ONLY_FIXTURES.contains(&n.as_str()))
        .collect();
    // Taken from the end: the slowest (`-real`) first, so the two builders end together.
    names.sort_by_key(|n| (n.ends_with("-real"), n.clone()));
    let queue = std::sync::Arc::new(std::sync::Mutex::new(names));
    (0..2)
        .map(|_| {
            let queue = queue.clone();
            std::thread::spawn(move || loop {
                let Some(name) = queue.lock().ok().and_then(|mut q| q.pop()) else {
                    return;
                };
                let Ok(sh) = Shell::new() else { return };
                sh.change_dir(crate::project_root());
                match crate::fixture::run(&sh, &name) {
                    Ok(_) => eprintln!("xtask: fixture {name} ready"),
                    Err(e) => eprintln!(
                        "xtask: fixture {name} not built ahead ({e:#}); its tests will say more"
                    ),
                }
            })
        })
        .collect()
}

/// Runs one group, echoing its output, and adds up libtest's `test result:` lines.
/// Tests that only the full matrix runs are `#[ignore]`d with a reason, so CI's summary
/// counts them as ignored, never as passed.
fn run_group(
    sh: &Shell,
    g: &Group,
    scope: Scope,
    env: &[(&str, String)],
) -> anyhow::Result<(bool, Counts)> {
    let mut child = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
        .current_dir(sh.current_dir())
        .args(&g.args)
        .args(match scope {
            Scope::Full => &["--", "--include-ignored"][..],
            _ => &[][..],
        })
        .envs(env.iter().map(|(k, v)| (k, v)))
        .stdout(Stdio::piped())
        .spawn()
        .with_context(|| format!("cannot start cargo for group {}", g.name))?;
    let mut counts = Counts::default();
    let out = child.stdout.take().context("no stdout pipe")?;
    let mut echo = std::io::stdout().lock();
    for line in BufReader::new(out).lines() {
        let line = line?;
        let _ = writeln!(echo, "{line}");
        if let Some(c) = parse_result(&line) {
            counts.passed += c.passed;
            counts.failed += c.failed;
            counts.ignored += c.ignored;
        }
    }
    drop(echo);
    Ok((child.wait()?.success(), counts))
}

/// libtest's `test result: ok. 3 passed; 1 failed; 2 ignored; ...`.
fn parse_result(line: &str) -> Option<Counts> {
    let rest = line.trim().strip_prefix("test result: ")?;
    let (_, rest) = rest.split_once(". ")?;
    let mut c = Counts::default();
    for part in rest.split(';') {
        let mut words = part.split_whitespace();
        let (Some(n), Some(what)) = (words.next(), words.next()) else {
            continue;
        };
        let Ok(n) = n.parse::<u64>() else { continue };
        match what {
            "passed" => c.passed = n,
            "failed" => c.failed = n,
            "ignored" => c.ignored = n,
            _ => {}
        }
    }
    Some(c)
}

/// The groups from `cargo metadata`: each package's unit tests (library, binaries,
/// examples, benches), each integration test file, then the doc tests. The QEMU tests
/// go last so the quick groups report first.
fn groups(metadata: &str) -> anyhow::Result<Vec<Group>> {
    let meta: serde_json::Value = serde_json::from_str(metadata)?;
    let members: Vec<&str> = meta["workspace_members"]
        .as_array()
        .context("cargo metadata without workspace_members")?
        .iter()
        .filter_map(|m| m.as_str())
        .collect();
    let mut unit = Vec::new();
    let mut integration = Vec::new();
    let mut packages: Vec<&serde_json::Value> = meta["packages"]
        .as_array()
        .context("cargo metadata without packages")?
        .iter()
        .filter(|p| p["id"].as_str().is_some_and(|id| members.contains(&id)))
        .collect();
    packages.sort_by_key(|p| p["name"].as_str().unwrap_or_default().to_owned());
    for p in packages {
        let pkg = p["name"].as_str().context("package without name")?;
        let mut unit_flags = Vec::new();
        for t in p["targets"].as_array().into_iter().flatten() {
            let name = t["name"].as_str().unwrap_or_default();
            let kinds: Vec<&str> = t["kind"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|k| k.as_str())
                .collect();
            let flag = if kinds
                .iter()
                .any(|k| k.ends_with("lib") || *k == "proc-macro")
            {
                "--lib"
            } else if kinds.contains(&"bin") {
                "--bins"
            } else if kinds.contains(&"example") {
                "--examples"
            } else if kinds.contains(&"bench") {
                "--benches"
            } else if kinds.contains(&"test") {
                let g = Group {
                    name: format!("{pkg}/tests/{name}"),
                    args: cargo_test(pkg, &["--test", name]),
                };
                if pkg == "qemu-tests" {
                    integration.push(g);
                } else {
                    unit.push(g);
                }
                continue;
            } else {
                continue;
            };
            if !unit_flags.contains(&flag) {
                unit_flags.push(flag);
            }
        }
        if !unit_flags.is_empty() {
            unit.push(Group {
                name: format!("{pkg} (unit)"),
                args: cargo_test(pkg, &unit_flags),
            });
        }
    }
    // The QEMU groups that need no fixture first: on a cold cache they run while the
    // fixtures build, instead of every test thread waiting on a fixture lock.
    integration.sort_by_key(|g| {
        !NO_FIXTURE_GROUPS
            .iter()
            .any(|n| g.name == format!("qemu-tests/tests/{n}"))
    });
    let mut all = unit;
    all.extend(integration);
    all.push(Group {
        name: "doc tests".into(),
        args: ["test", "--workspace", "--locked", "--doc"]
            .map(String::from)
            .to_vec(),
    });
    Ok(all)
}

fn cargo_test(pkg: &str, flags: &[&str]) -> Vec<String> {
    ["test", "--locked", "-p", pkg]
        .iter()
        .chain(flags)
        .map(|s| s.to_string())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn libtest_result_lines_are_counted() {
        assert_eq!(
            parse_result("test result: ok. 12 passed; 0 failed; 3 ignored; 0 measured; 0 filtered out; finished in 0.52s"),
            Some(Counts { passed: 12, failed: 0, ignored: 3 })
        );
        assert_eq!(
            parse_result(
                "test result: FAILED. 4 passed; 2 failed; 0 ignored; 0 measured; 0 filtered out"
            ),
            Some(Counts {
                passed: 4,
                failed: 2,
                ignored: 0
            })
        );
        assert_eq!(parse_result("test foo ... ok"), None);
    }

    #[test]
    fn every_test_file_of_the_workspace_is_a_group() {
        let sh = Shell::new().unwrap();
        sh.change_dir(crate::project_root());
        let meta = cmd!(sh, "cargo metadata --no-deps --format-version 1")
            .read()
            .unwrap();
        let groups = groups(&meta).unwrap();
        let names: Vec<&str> = groups.iter().map(|g| g.name.as_str()).collect();
        for f in std::fs::read_dir(crate::project_root().join("qemu-tests/tests")).unwrap() {
            let stem = f
                .unwrap()
                .path()
                .file_stem()
                .unwrap()
                .to_string_lossy()
                .into_owned();
            let want = format!("qemu-tests/tests/{stem}");
            assert!(
                names.contains(&want.as_str()),
                "{want} is not run: {names:?}"
            );
        }
        assert!(names.contains(&"rescue (unit)"), "{names:?}");
        assert_eq!(names.last(), Some(&"doc tests"));
        // The QEMU groups come after every quick one.
        let first_qemu = names
            .iter()
            .position(|n| n.starts_with("qemu-tests/"))
            .unwrap();
        assert!(names[first_qemu..]
            .iter()
            .all(|n| n.starts_with("qemu-tests/") || *n == "doc tests"));
        // Those that need no fixture lead them (and exist).
        for (i, n) in NO_FIXTURE_GROUPS.iter().enumerate() {
            assert!(
                names[first_qemu..first_qemu + NO_FIXTURE_GROUPS.len()]
                    .contains(&format!("qemu-tests/tests/{n}").as_str()),
                "{n} (#{i}) does not lead the QEMU groups: {names:?}"
            );
            let src = std::fs::read_to_string(
                crate::project_root().join(format!("qemu-tests/tests/{n}.rs")),
            )
            .unwrap();
            assert!(
                !src.contains("fixture::"),
                "qemu-tests/tests/{n}.rs uses a fixture: take it out of NO_FIXTURE_GROUPS"
            );
        }
    }
}

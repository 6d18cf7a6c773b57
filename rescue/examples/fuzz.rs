//! Coverage-guided driver (libFuzzer) for the targets in `rescue::fuzzing`. Built and run
//! by `cargo xtask fuzz`, which passes the sanitizer-coverage flags stable rustc accepts
//! and names the target in `XENRAID_FUZZ_TARGET`; the arguments are libFuzzer's.

#![no_main]

use libfuzzer_sys::fuzz_target;
use std::sync::OnceLock;

fn target() -> fn(&[u8]) {
    static RUN: OnceLock<fn(&[u8])> = OnceLock::new();
    *RUN.get_or_init(|| {
        let name = std::env::var("XENRAID_FUZZ_TARGET").unwrap_or_default();
        match rescue::fuzzing::by_name(&name) {
            Some(t) => t.run,
            None => {
                let names: Vec<_> = rescue::fuzzing::TARGETS.iter().map(|t| t.name).collect();
                eprintln!(
                    "XENRAID_FUZZ_TARGET={name:?} names no target: use one of {}",
                    names.join(", ")
                );
                std::process::exit(2)
            }
        }
    })
}

fuzz_target!(|data: &[u8]| target()(data));

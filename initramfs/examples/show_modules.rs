//! Prints the module load order for a modules directory and pattern file:
//! `cargo run -p initramfs --example show_modules -- DIR [LIST]`.

use std::path::PathBuf;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args_os().skip(1);
    let dir = PathBuf::from(args.next().ok_or("usage: show_modules DIR [LIST]")?);
    let list = args.next().map(PathBuf::from).unwrap_or_else(|| {
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../kernel-config/modules.txt")
    });
    let patterns = initramfs::parse_module_list(&std::fs::read_to_string(list)?)?;
    let tree = initramfs::ModuleTree::open(&dir)?;
    let closure = tree.resolve(&patterns)?;
    for module in &closure.modules {
        println!("{:8} {}", module.data.len(), module.rel_path);
    }
    println!("built in: {}", closure.builtin.join(" "));
    for soft in &closure.unresolved_softdeps {
        println!("unresolved softdep: {} wants {}", soft.module, soft.wanted);
    }
    Ok(())
}

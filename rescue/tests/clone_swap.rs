//! Swap: our header reader against `mkswap`, and a re-created header checked with `blkid`
//! and `swaplabel` on a clone.

mod clone_support;

use clone_support::{run, sparse_file, TempDir};
use rescue::clone::{clone_with, CloneArgs, Kind};
use rescue::formats::swap::SwapHeader;
use std::fs::File;
use std::io::Write;

const UUID: &str = "5f0cbb5a-19c4-4f6e-9a4b-1d2e3f405162";

fn blkid(p: &std::path::Path) -> String {
    run("blkid", &["-p", "-o", "export", p.to_str().unwrap()])
}

#[test]
fn reads_mkswap_header_and_recreates_it_on_a_clone() {
    let t = TempDir::new("swap");
    let src = t.path("swap.img");
    sparse_file(&src, 64 << 20);
    run(
        "mkswap",
        &["-L", "rescue-swap", "-U", UUID, src.to_str().unwrap()],
    );
    let h = SwapHeader::read(&mut File::open(&src).unwrap()).unwrap();
    assert_eq!(h.label, "rescue-swap");
    assert_eq!(h.uuid_string(), UUID);
    assert_eq!(h.size().0, 64 << 20);

    // A larger target full of junk: only the header page is written.
    let dst = t.path("clone.img");
    let mut f = File::create(&dst).unwrap();
    f.write_all(&vec![0xA5u8; 80 << 20]).unwrap();
    drop(f);
    let args = CloneArgs {
        src: src.clone(),
        dst: dst.clone(),
        verify: true,
        ..Default::default()
    };
    let s = clone_with(&args, &mut |_| {}).unwrap();
    assert_eq!(s.kind, Kind::Swap);
    assert_eq!(s.bytes_moved.0, 4096);
    assert!(s.verified);
    let out = blkid(&dst);
    assert!(out.contains("TYPE=swap"), "{out}");
    assert!(out.contains("LABEL=rescue-swap"), "{out}");
    assert!(out.contains(&format!("UUID={UUID}")), "{out}");
    let sl = run("swaplabel", &[dst.to_str().unwrap()]);
    assert!(
        sl.contains("LABEL: rescue-swap") && sl.contains(&format!("UUID:  {UUID}")),
        "{sl}"
    );
    assert_eq!(SwapHeader::read(&mut File::open(&dst).unwrap()).unwrap(), h);
}

#[test]
fn header_written_from_scratch_is_what_blkid_reads() {
    let t = TempDir::new("swap-fresh");
    let p = t.path("fresh.img");
    sparse_file(&p, 16 << 20);
    let h = SwapHeader {
        last_page: (16 << 20) / 4096 - 1,
        nr_badpages: 0,
        uuid: *b"\x01\x23\x45\x67\x89\xab\xcd\xef\x01\x23\x45\x67\x89\xab\xcd\xef",
        label: "sixteen-chars-ok".into(),
    };
    let mut f = std::fs::OpenOptions::new().write(true).open(&p).unwrap();
    h.write(&mut f).unwrap();
    drop(f);
    let out = blkid(&p);
    assert!(
        out.contains("TYPE=swap") && out.contains("LABEL=sixteen-chars-ok"),
        "{out}"
    );
    assert!(
        out.contains("UUID=01234567-89ab-cdef-0123-456789abcdef"),
        "{out}"
    );
    let sl = run("swaplabel", &[p.to_str().unwrap()]);
    assert!(sl.contains("LABEL: sixteen-chars-ok"), "{sl}");
}

//! LVM2 PVs made by the real `pvcreate`/`vgcreate`/`lvcreate` on loop devices (activation
//! off: the host has no device-mapper): our extents against `lvs`/`pvs`/`vgs`, a clone
//! checked with `pvs`, `pvck`, `vgck`, `lvs` and LV checksums, and metadata that wraps
//! around the ring buffer.

mod clone_support;

use clone_support::{pseudo_random, run, sparse_file, try_run, Loop, TempDir};
use rescue::clone::{clone_with, CloneArgs, Kind};
use rescue::formats::lvm;
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::fs::File;
use std::io::Write;
use std::os::unix::fs::FileExt;
use std::path::Path;

const MIB: u64 = 1 << 20;
/// Keep LVM away from the host's devices and from device-mapper, which this host lacks.
const CONF: &str = "global { activation = 0 } \
    activation { udev_sync = 0 udev_rules = 0 monitoring = 0 }";

fn lvm_cmd(tool: &str, dev: &str, args: &[&str]) -> String {
    let mut a = vec!["--devices", dev, "--config", CONF];
    a.extend_from_slice(args);
    run(tool, &a)
}

/// `lvs -o lv_name,seg_pe_ranges`: per LV, inclusive extent ranges on our one PV.
fn lvs_ranges(dev: &str, vg: &str) -> BTreeMap<String, Vec<(u64, u64)>> {
    let out = lvm_cmd(
        "lvs",
        dev,
        &["--noheadings", "-o", "lv_name,seg_pe_ranges", vg],
    );
    let mut m: BTreeMap<String, Vec<(u64, u64)>> = BTreeMap::new();
    for l in out.lines() {
        let mut it = l.split_whitespace();
        let (Some(name), Some(ranges)) = (it.next(), it.next()) else {
            continue;
        };
        for r in ranges.split(' ') {
            let (_, pe) = r.rsplit_once(':').unwrap();
            let (a, b) = pe.split_once('-').unwrap();
            m.entry(name.to_owned())
                .or_default()
                .push((a.parse().unwrap(), b.parse().unwrap()));
        }
    }
    m
}

fn merged(mut v: Vec<(u64, u64)>) -> Vec<(u64, u64)> {
    v.sort();
    let mut out: Vec<(u64, u64)> = vec![];
    for (s, e) in v {
        match out.last_mut() {
            Some(l) if s <= l.1 => l.1 = l.1.max(e),
            _ => out.push((s, e)),
        }
    }
    out
}

fn sha_of(path: &Path, ranges: &[(u64, u64)]) -> [u8; 32] {
    let f = File::open(path).unwrap();
    let mut h = Sha256::new();
    for &(s, e) in ranges {
        let mut b = vec![0u8; (e - s) as usize];
        f.read_exact_at(&mut b, s).unwrap();
        h.update(&b);
    }
    h.finalize().into()
}

#[test]
fn pv_extents_match_lvs_and_the_clone_is_a_valid_pv() {
    let t = TempDir::new("lvm-pv");
    let vg = format!("rescuevg{}", std::process::id());
    let img = t.path("pv.img");
    {
        // Random bytes everywhere, so copied and uncopied regions are told apart.
        let mut f = File::create(&img).unwrap();
        for i in 0..256 {
            f.write_all(&pseudo_random(MIB as usize, i)).unwrap();
        }
    }
    let (lvs, pvs, seqno);
    {
        let lp = Loop::attach(&img);
        let d = lp.0.as_str();
        lvm_cmd(
            "pvcreate",
            d,
            &["--metadatasize", "10M", "--pvmetadatacopies", "2", d],
        );
        lvm_cmd("vgcreate", d, &["-s", "4M", &vg, d]);
        for (name, size) in [("a", "20M"), ("b", "12M"), ("c", "8M"), ("d", "16M")] {
            lvm_cmd("lvcreate", d, &["-an", "-Zn", "-L", size, "-n", name, &vg]);
        }
        lvm_cmd("lvextend", d, &["-L", "+8M", &format!("{vg}/a")]);
        lvm_cmd("lvremove", d, &["-y", &format!("{vg}/b")]);
        lvs = lvs_ranges(d, &vg);
        pvs = lvm_cmd(
            "pvs",
            d,
            &[
                "--noheadings",
                "--units",
                "b",
                "--nosuffix",
                "-o",
                "pv_pe_count,pe_start",
                d,
            ],
        );
        seqno = lvm_cmd("vgs", d, &["--noheadings", "-o", "vg_seqno", &vg]);
    }
    let plan = lvm::plan(&mut File::open(&img).unwrap()).unwrap();
    assert!(plan.whole_reason.is_none(), "{:?}", plan.whole_reason);
    let v = plan.vg.as_ref().unwrap();
    assert_eq!(v.name, vg);
    assert_eq!(v.seqno, seqno.trim().parse::<u64>().unwrap());
    assert_eq!(plan.label.metadata_areas.len(), 2);
    let pv = v.pv_by_uuid(&plan.label.pv_uuid).unwrap();
    let mut p = pvs.split_whitespace().map(|x| x.parse::<u64>().unwrap());
    assert_eq!(pv.pe_count, p.next().unwrap());
    assert_eq!(pv.pe_start.bytes().0, p.next().unwrap());

    // Extents: ours against the union of lvs' ranges (inclusive there).
    assert_eq!(lvs.keys().collect::<Vec<_>>(), ["a", "c", "d"]);
    let want = merged(lvs.values().flatten().map(|&(a, b)| (a, b + 1)).collect());
    let ours = v.allocated_extents().unwrap();
    assert_eq!(ours[&pv.name], want);
    let ext = v.extent_size.bytes().0;
    let pe0 = pv.pe_start.bytes().0;
    let bytes_of = |r: &[(u64, u64)]| -> Vec<(u64, u64)> {
        r.iter()
            .map(|&(a, b)| (pe0 + a * ext, pe0 + b * ext))
            .collect()
    };
    let mut expect = vec![(0, 2048)];
    for a in &plan.label.metadata_areas {
        expect.push((a.offset.0, a.offset.0 + a.size.0));
    }
    expect.extend(bytes_of(&want));
    let got: Vec<(u64, u64)> = plan
        .extents
        .ranges()
        .iter()
        .map(|(s, e)| (s.0, e.0))
        .collect();
    assert_eq!(got, merged(expect));

    // Clone onto a larger zeroed target.
    let dst = t.path("clone.img");
    sparse_file(&dst, 320 * MIB);
    let args = CloneArgs {
        src: img.clone(),
        dst: dst.clone(),
        verify: true,
        ..Default::default()
    };
    let s = clone_with(&args, &mut |_| {}).unwrap();
    assert_eq!(s.kind, Kind::Lvm2Pv);
    assert!(s.verified);
    assert_eq!(s.used_bytes, plan.extents.total());
    assert!(s.bytes_moved.0 < 256 * MIB / 2, "moved {}", s.bytes_moved.0);
    for (lv, r) in &lvs {
        let r: Vec<(u64, u64)> = r.iter().map(|&(a, b)| (a, b + 1)).collect();
        assert_eq!(
            sha_of(&img, &bytes_of(&r)),
            sha_of(&dst, &bytes_of(&r)),
            "LV {lv} differs"
        );
    }
    // The hole left by LV b was not copied.
    let hole = bytes_of(&[(5, 8)]);
    assert!(!want.iter().any(|&(a, b)| a < 8 && b > 5));
    let f = File::open(&dst).unwrap();
    let mut b = vec![0u8; (hole[0].1 - hole[0].0) as usize];
    f.read_exact_at(&mut b, hole[0].0).unwrap();
    assert!(
        b.iter().all(|&x| x == 0),
        "the removed LV's extents were copied"
    );

    // The real tools accept the clone (the source is detached, so UUIDs do not clash).
    let lp = Loop::attach(&dst);
    let d = lp.0.as_str();
    let out = lvm_cmd("pvs", d, &["--noheadings", "-o", "vg_name,pv_pe_count", d]);
    assert_eq!(
        out.split_whitespace().collect::<Vec<_>>(),
        [vg.as_str(), &pv.pe_count.to_string()]
    );
    lvm_cmd("pvck", d, &[d]);
    lvm_cmd("vgck", d, &[&vg]);
    assert_eq!(lvs_ranges(d, &vg), lvs);
}

#[test]
fn metadata_that_wraps_around_the_ring_is_read() {
    let t = TempDir::new("lvm-wrap");
    let vg = format!("rescuewrap{}", std::process::id());
    let img = t.path("pv.img");
    sparse_file(&img, 512 * MIB);
    let lp = Loop::attach(&img);
    let d = lp.0.as_str();
    lvm_cmd("pvcreate", d, &["--metadatasize", "8k", d]);
    lvm_cmd("vgcreate", d, &["-s", "1M", &vg, d]);
    let mut wrapped = false;
    for i in 0..400 {
        lvm_cmd(
            "lvcreate",
            d,
            &["-an", "-Zn", "-l", "1", "-n", &format!("lv{i}"), &vg],
        );
        let mut f = File::open(d).unwrap();
        let label = lvm::PvLabel::read(&mut f).unwrap();
        let mda = lvm::read_metadata_area(&mut f, label.metadata_areas[0]).unwrap();
        if mda.wrapped {
            wrapped = true;
            break;
        }
    }
    assert!(wrapped, "metadata never wrapped around the 1 MiB ring");
    let seqno = lvm_cmd("vgs", d, &["--noheadings", "-o", "vg_seqno", &vg]);
    let plan = lvm::plan(&mut File::open(d).unwrap()).unwrap();
    let v = plan.vg.unwrap();
    assert_eq!(v.seqno, seqno.trim().parse::<u64>().unwrap());
    let want = merged(
        lvs_ranges(d, &vg)
            .values()
            .flatten()
            .map(|&(a, b)| (a, b + 1))
            .collect(),
    );
    assert_eq!(v.allocated_extents().unwrap()["pv0"], want);
    let _ = try_run("vgremove", &["--devices", d, "--config", CONF, "-y", &vg]);
}

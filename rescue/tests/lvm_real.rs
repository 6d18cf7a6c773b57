//! LVM2 PVs made by the real `pvcreate`/`vgcreate`/`lvcreate` on loop devices (activation
//! off: the host has no device-mapper): our extents against `lvs`/`pvs`/`vgs`, a clone
//! checked with `pvs`, `pvck`, `vgck`, `lvs` and LV checksums, metadata that wraps
//! around the ring buffer, and inspect inside the LVs against `lvs`, `blkid` and
//! `qemu-img`.

mod clone_support;

use clone_support::{pseudo_random, run, sparse_file, try_run, Loop, TempDir};
use rescue::clone::{clone_with, CloneArgs, Kind};
use rescue::formats::lvm;
use rescue::inspect::{inspect_path, Content, LvContent};
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

/// Inspect inside a VG the real tools made, on a disk whose partition 1 is the PV: LV sizes
/// and segments against `lvs`, the first extent against `pvs`; a GPT + ext4 VM disk written
/// into a two-segment LV at offsets taken from `lvs` (not from our map), found with its
/// partition's offsets, which `blkid` confirms on the disk image; a dynamic VHD made by
/// `qemu-img` with the virtual size and block size `qemu-img info` gives.
#[test]
fn inspect_sees_inside_lvs_made_by_lvm() {
    let t = TempDir::new("lvm-inspect");
    let vg = format!("rescueinsp{}", std::process::id());
    let conf = format!("{CONF} backup {{ backup = 0 archive = 0 }}");
    let pv = t.path("pv.img");
    sparse_file(&pv, 64 * MIB);
    let (ranges, sizes, pe_start, seqno);
    {
        let lp = Loop::attach(&pv);
        let d = lp.0.as_str();
        let lvm = |tool: &str, args: &[&str]| {
            let mut a = vec!["--devices", d, "--config", &conf];
            a.extend_from_slice(args);
            run(tool, &a)
        };
        lvm("pvcreate", &["--metadatasize", "1M", d]);
        lvm("vgcreate", &["-s", "1M", &vg, d]);
        // vm gets one extent, VHD-1 the next four, then vm grows: two segments.
        for (name, size) in [("vm", "1M"), ("VHD-1", "4M")] {
            lvm("lvcreate", &["-an", "-Zn", "-L", size, "-n", name, &vg]);
        }
        lvm("lvextend", &["-L", "12M", &format!("{vg}/vm")]);
        ranges = lvs_ranges(d, &vg);
        sizes = lvm(
            "lvs",
            &[
                "--noheadings",
                "--units",
                "b",
                "--nosuffix",
                "-o",
                "lv_name,lv_size",
                &vg,
            ],
        );
        pe_start = lvm(
            "pvs",
            &[
                "--noheadings",
                "--units",
                "b",
                "--nosuffix",
                "-o",
                "pe_start",
                d,
            ],
        )
        .trim()
        .parse::<u64>()
        .unwrap();
        seqno = lvm("vgs", &["--noheadings", "-o", "vg_seqno", &vg]);
    }
    assert_eq!(ranges["vm"].len(), 2, "{ranges:?}");

    // LV contents, written extent by extent where `lvs` says they are.
    let write_lv = |name: &str, data: &[u8]| {
        let f = std::fs::OpenOptions::new().write(true).open(&pv).unwrap();
        let mut le = 0usize;
        for &(a, b) in &ranges[name] {
            for pe in a..=b {
                let chunk = &data[(le * MIB as usize).min(data.len())
                    ..((le + 1) * MIB as usize).min(data.len())];
                f.write_all_at(chunk, pe_start + pe * MIB).unwrap();
                le += 1;
            }
        }
    };
    let vm = t.path("vm.img");
    sparse_file(&vm, 12 * MIB);
    let last = (12 * MIB / 512 - 34).to_string();
    run(
        "sgdisk",
        &[
            "-o",
            "-a",
            "2048",
            &format!("--new=1:2048:{last}"),
            "--typecode=1:8300",
            "--change-name=1:vm-root",
            vm.to_str().unwrap(),
        ],
    );
    run(
        "mke2fs",
        &[
            "-q",
            "-F",
            "-t",
            "ext4",
            "-L",
            "vm-root",
            "-E",
            "offset=1048576",
            vm.to_str().unwrap(),
            "10M",
        ],
    );
    write_lv("vm", &std::fs::read(&vm).unwrap());
    let vhd = t.path("d.vhd");
    run(
        "qemu-img",
        &[
            "create",
            "-q",
            "-f",
            "vpc",
            "-o",
            "subformat=dynamic",
            vhd.to_str().unwrap(),
            "100M",
        ],
    );
    let info: serde_json::Value = serde_json::from_str(&run(
        "qemu-img",
        &["info", "--output=json", vhd.to_str().unwrap()],
    ))
    .unwrap();
    write_lv("VHD-1", &std::fs::read(&vhd).unwrap());

    // The disk: a GPT whose partition 1 (from 1 MiB) is the PV.
    let disk = t.path("disk.img");
    sparse_file(&disk, 80 * MIB);
    run(
        "sgdisk",
        &["-n1:2048:+64M", "-t1:8e00", disk.to_str().unwrap()],
    );
    std::fs::File::options()
        .write(true)
        .open(&disk)
        .unwrap()
        .write_all_at(&std::fs::read(&pv).unwrap(), MIB)
        .unwrap();

    let d = inspect_path(&disk).unwrap();
    let Some(Content::LvmPv {
        vg: Some(v),
        problems,
        ..
    }) = &d.partitions[0].content
    else {
        panic!("partition 1 is not a PV with a VG: {d:#?}");
    };
    assert!(problems.is_empty(), "{problems:?}");
    assert_eq!(v.name, vg);
    assert_eq!(v.seqno, seqno.trim().parse::<u64>().unwrap());
    assert_eq!(v.pe_start_offset, Some(MIB + pe_start));
    let want_sizes: BTreeMap<String, u64> = sizes
        .lines()
        .filter_map(|l| {
            let mut it = l.split_whitespace();
            Some((it.next()?.to_owned(), it.next()?.parse().ok()?))
        })
        .collect();
    let got_sizes: BTreeMap<String, u64> = v
        .lvs
        .iter()
        .map(|l| (l.name.clone(), l.size_bytes))
        .collect();
    assert_eq!(got_sizes, want_sizes);
    for lv in &v.lvs {
        let got: Vec<(u64, u64)> = lv
            .segments
            .iter()
            .flat_map(|s| &s.stripes)
            .map(|s| {
                assert_eq!(s.disk_offset, Some(MIB + pe_start + s.first_pe * MIB));
                (s.first_pe, s.first_pe + s.pe_count - 1)
            })
            .collect();
        assert_eq!(got, ranges[&lv.name], "LV {} segments vs lvs", lv.name);
        assert!(lv.problems.is_empty(), "{lv:?}");
    }

    let lv = |n: &str| v.lvs.iter().find(|l| l.name == n).unwrap();
    let LvContent::PartitionTable {
        table, partitions, ..
    } = &lv("vm").content
    else {
        panic!("vm: {:?}", lv("vm").content);
    };
    assert_eq!((table.as_str(), partitions.len()), ("gpt", 1));
    let p = &partitions[0];
    assert_eq!(
        (p.name.as_deref(), p.fs_type.as_deref(), p.label.as_deref()),
        (Some("vm-root"), Some("ext4"), Some("vm-root"))
    );
    assert_eq!(p.lv_offset, MIB);
    // LE 1 is the first extent of vm's second segment.
    let at = MIB + pe_start + ranges["vm"][1].0 * MIB;
    assert_eq!(p.disk_offset, Some(at));
    let blkid = run(
        "blkid",
        &[
            "-p",
            "-o",
            "export",
            "-O",
            &at.to_string(),
            disk.to_str().unwrap(),
        ],
    );
    assert!(blkid.contains("LABEL=vm-root"), "{blkid}");
    assert!(
        blkid.contains(&format!("UUID={}", p.uuid.as_deref().unwrap())),
        "{blkid}"
    );

    let LvContent::Vhd(h) = &lv("VHD-1").content else {
        panic!("VHD-1: {:?}", lv("VHD-1").content);
    };
    assert_eq!(h.disk_type, "dynamic");
    assert_eq!(h.footer_offset, 0);
    assert_eq!(Some(h.virtual_size_bytes), info["virtual-size"].as_u64());
    assert_eq!(h.block_size.map(u64::from), info["cluster-size"].as_u64());
    assert!(h.checksums_ok);
}

//! The copier: ranges land at an offset (one worker or several, holes bridged or not),
//! verification catches a corrupted target (as written and after the fsync), and an I/O
//! error on either side stops the copy with the side and offset, starting nothing more.

mod clone_support;

use clone_support::{pseudo_random, TempDir};
use rescue::copier::{self, CopyError, CopyOptions, MemDisk, ReadAt, WriteAt};
use rescue::formats::extents::Extents;
use rescue::units::Bytes;
use std::io;
use std::os::unix::fs::FileExt;
use std::sync::Mutex;

fn ranges(v: &[(u64, u64)]) -> Extents {
    Extents::from_ranges(v.iter().map(|&(s, e)| (Bytes(s), Bytes(e))).collect())
}

/// Copies `[0, len)` of `src` to `target_offset` on `dst`, expecting an error.
fn failed_copy<S: ReadAt, T: WriteAt>(
    src: &S,
    dst: &T,
    len: u64,
    target_offset: Bytes,
    opts: &CopyOptions,
) -> CopyError {
    copier::copy(
        src,
        dst,
        &ranges(&[(0, len)]),
        target_offset,
        opts,
        &mut |_| {},
    )
    .expect_err("the copy went through the fault")
}

/// One worker, no bridging: writes happen in source order, one at a time.
fn small_opts() -> CopyOptions {
    CopyOptions {
        chunk: 64 << 10,
        align: 512,
        workers: 1,
        bridge: Bytes(0),
        verify: false,
        target_uncached: false,
    }
}

/// A source that fails with EIO on any read touching `bad`.
struct FailingSource {
    inner: MemDisk,
    bad: u64,
}

impl ReadAt for FailingSource {
    fn read_at(&self, buf: &mut [u8], offset: Bytes) -> io::Result<()> {
        if offset.0 <= self.bad && self.bad < offset.0 + buf.len() as u64 {
            return Err(io::Error::from_raw_os_error(5));
        }
        self.inner.read_at(buf, offset)
    }
}

/// A target that records writes, can fail at an offset, and can lie on read-back.
#[derive(Default)]
struct RecordingTarget {
    inner: MemDisk,
    writes: Mutex<Vec<(u64, usize)>>,
    fail_at: Option<u64>,
    flip_on_read: bool,
    synced: Mutex<bool>,
}

impl RecordingTarget {
    fn new() -> Self {
        Self::default()
    }
    fn writes(&self) -> Vec<(u64, usize)> {
        self.writes.lock().unwrap().clone()
    }
    fn synced(&self) -> bool {
        *self.synced.lock().unwrap()
    }
}

impl ReadAt for RecordingTarget {
    fn read_at(&self, buf: &mut [u8], offset: Bytes) -> io::Result<()> {
        self.inner.read_at(buf, offset)?;
        if self.flip_on_read {
            buf[buf.len() / 2] ^= 1;
        }
        Ok(())
    }
}

impl WriteAt for RecordingTarget {
    fn write_at(&self, buf: &[u8], offset: Bytes) -> io::Result<()> {
        self.writes.lock().unwrap().push((offset.0, buf.len()));
        if self
            .fail_at
            .is_some_and(|f| offset.0 <= f && f < offset.0 + buf.len() as u64)
        {
            return Err(io::Error::from_raw_os_error(5));
        }
        self.inner.write_at(buf, offset)
    }
    fn sync(&self) -> io::Result<()> {
        *self.synced.lock().unwrap() = true;
        Ok(())
    }
}

#[test]
fn ranges_land_at_the_target_offset_and_progress_reaches_total() {
    let data = pseudo_random(1 << 20, 1);
    let src = MemDisk::new(data.clone());
    let dst = RecordingTarget::new();
    let r = ranges(&[(0, 4096), (100_000, 300_000), (1_000_000, 1 << 20)]);
    let mut last = None;
    let rep = copier::copy(&src, &dst, &r, Bytes(8192), &small_opts(), &mut |p| {
        last = Some(p.clone())
    })
    .unwrap();
    assert_eq!(rep.bytes, r.total());
    assert!(dst.synced());
    let last = last.unwrap();
    assert_eq!((last.done, last.total), (r.total(), r.total()));
    let out = dst.inner.contents();
    for &(s, e) in r.ranges() {
        assert_eq!(
            &out[(s.0 + 8192) as usize..(e.0 + 8192) as usize],
            &data[s.0 as usize..e.0 as usize]
        );
    }
    // Nothing between the ranges was written.
    assert!(out[8192 + 4096..8192 + 100_000].iter().all(|&b| b == 0));
}

#[test]
fn verify_catches_a_target_corrupted_after_the_write() {
    let t = TempDir::new("copier-verify");
    let (sp, dp) = (t.path("src"), t.path("dst"));
    std::fs::write(&sp, pseudo_random(3 << 20, 2)).unwrap();
    std::fs::write(&dp, vec![0u8; 4 << 20]).unwrap();
    let src = std::fs::File::open(&sp).unwrap();
    let dst = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(&dp)
        .unwrap();
    let r = ranges(&[(0, 1 << 20), (2 << 20, 3 << 20)]);
    let opts = CopyOptions {
        verify: true,
        ..small_opts()
    };
    let rep = copier::copy(&src, &dst, &r, Bytes(0), &opts, &mut |_| {}).unwrap();
    assert!(rep.verified);
    assert_eq!(rep.digests.len(), 32);
    // Corrupt one byte of what was written, then verify again.
    let at = (2 << 20) + 70_000;
    let mut b = [0u8; 1];
    dst.read_exact_at(&mut b, at).unwrap();
    dst.write_all_at(&[b[0] ^ 0xff], at).unwrap();
    dst.sync_all().unwrap();
    match copier::verify(&dst, &rep.digests, 512) {
        Err(CopyError::Mismatch { offset, len }) => {
            assert!(
                offset.0 <= at && at < offset.0 + len as u64,
                "reported chunk {offset:?}+{len}"
            );
        }
        other => panic!("verify after corruption gave {other:?}"),
    }
}

#[test]
fn verify_inside_copy_fails_when_the_target_returns_other_data() {
    let src = MemDisk::new(pseudo_random(256 << 10, 3));
    let dst = RecordingTarget {
        flip_on_read: true,
        ..RecordingTarget::new()
    };
    let opts = CopyOptions {
        verify: true,
        ..small_opts()
    };
    let e = failed_copy(&src, &dst, 256 << 10, Bytes(0), &opts);
    assert!(
        matches!(
            e,
            CopyError::Mismatch {
                offset: Bytes(0),
                ..
            }
        ),
        "{e:?}"
    );
    assert!(e.to_string().contains("differ"), "{e}");
}

#[test]
fn read_error_stops_the_copy_and_names_the_offset() {
    let bad = 5 * (64 << 10) + 17;
    let src = FailingSource {
        inner: MemDisk::new(pseudo_random(1 << 20, 4)),
        bad,
    };
    let dst = RecordingTarget::new();
    let e = failed_copy(&src, &dst, 1 << 20, Bytes(0), &small_opts());
    match &e {
        CopyError::Read { offset, source } => {
            assert_eq!(offset.0, 5 * (64 << 10));
            assert_eq!(source.raw_os_error(), Some(5));
        }
        other => panic!("{other:?}"),
    }
    assert!(
        e.to_string()
            .contains("reading the source failed at byte 327680"),
        "{e}"
    );
    // Every chunk before the bad one was written, nothing at or after it.
    let offs: Vec<u64> = dst.writes().iter().map(|w| w.0).collect();
    assert_eq!(offs, (0..5).map(|i| i * (64 << 10)).collect::<Vec<_>>());
    assert!(!dst.synced());
}

#[test]
fn write_error_stops_the_copy_and_names_the_offset() {
    let src = MemDisk::new(pseudo_random(1 << 20, 5));
    let dst = RecordingTarget {
        fail_at: Some(3 * (64 << 10) + 1),
        ..RecordingTarget::new()
    };
    let e = failed_copy(&src, &dst, 1 << 20, Bytes(4096), &small_opts());
    match &e {
        CopyError::Write { offset, .. } => assert_eq!(offset.0, 2 * (64 << 10) + 4096),
        other => panic!("{other:?}"),
    }
    // The failed write was the last one attempted.
    assert_eq!(dst.writes().last().unwrap().0, 2 * (64 << 10) + 4096);
    assert_eq!(dst.writes().len(), 3);
    assert!(e.to_string().contains("writing the target failed"), "{e}");
}

/// Many small ranges (a fragmented filesystem's extents) over four workers.
fn fragmented() -> Extents {
    let v = (0..300u64)
        .map(|i| {
            let s = i * 12_288 + (i % 7) * 512;
            (s, s + 512 * (1 + i % 9))
        })
        .collect::<Vec<_>>();
    ranges(&v)
}

#[test]
fn four_workers_copy_every_range_and_bridged_holes_come_from_the_source() {
    let data = pseudo_random(4 << 20, 6);
    for bridge in [0u64, 16 << 10, 64 << 10] {
        let src = MemDisk::new(data.clone());
        let dst = RecordingTarget::new();
        let r = fragmented();
        let opts = CopyOptions {
            workers: 4,
            bridge: Bytes(bridge),
            verify: true,
            target_uncached: true,
            ..small_opts()
        };
        let mut calls = 0;
        let rep = copier::copy(&src, &dst, &r, Bytes(512), &opts, &mut |_| calls += 1).unwrap();
        assert!(rep.verified && dst.synced());
        let bridged = r.bridge_gaps(Bytes(bridge));
        assert_eq!(rep.bytes, bridged.total(), "bridge {bridge}");
        assert_eq!(calls, dst.writes().len());
        if bridge == 0 {
            assert_eq!(dst.writes().len(), r.ranges().len());
        } else {
            assert!(
                dst.writes().len() < r.ranges().len() / 2,
                "bridge {bridge}: {} writes",
                dst.writes().len()
            );
        }
        let out = dst.inner.contents();
        for &(s, e) in bridged.ranges() {
            let (s, e) = (s.0 as usize, e.0 as usize);
            assert_eq!(&out[s + 512..e + 512], &data[s..e], "bridge {bridge}");
        }
        // Outside the (bridged) ranges nothing was written.
        let mut written = vec![false; out.len()];
        for (o, l) in dst.writes() {
            written[o as usize..o as usize + l]
                .iter_mut()
                .for_each(|w| *w = true);
        }
        let expected: usize = bridged.total().0 as usize;
        assert_eq!(written.iter().filter(|&&w| w).count(), expected);
    }
}

#[test]
fn verify_as_written_names_the_piece_that_reads_back_wrong() {
    let src = MemDisk::new(pseudo_random(1 << 20, 7));
    let dst = RecordingTarget {
        flip_on_read: true,
        ..RecordingTarget::new()
    };
    let opts = CopyOptions {
        workers: 3,
        verify: true,
        target_uncached: true,
        ..small_opts()
    };
    let e = failed_copy(&src, &dst, 1 << 20, Bytes(0), &opts);
    let CopyError::Mismatch { offset, len } = e else {
        panic!("{e:?}")
    };
    assert_eq!((offset.0 % (64 << 10), len), (0, 64 << 10));
    // Every worker stopped at its first bad piece and none was followed by the fsync.
    assert!(dst.writes().len() <= 3, "{:?}", dst.writes());
    assert!(!dst.synced());
}

#[test]
fn with_four_workers_an_error_starts_no_new_piece() {
    let bad = 40 * (64 << 10) + 5;
    let src = FailingSource {
        inner: MemDisk::new(pseudo_random(8 << 20, 8)),
        bad,
    };
    let dst = RecordingTarget::new();
    let opts = CopyOptions {
        workers: 4,
        ..small_opts()
    };
    let e = failed_copy(&src, &dst, 8 << 20, Bytes(0), &opts);
    let CopyError::Read { offset, .. } = e else {
        panic!("{e:?}")
    };
    assert_eq!(offset.0, 40 * (64 << 10));
    // At most the three pieces the other workers had taken follow the bad one.
    let past = dst.writes().iter().filter(|w| w.0 > bad).count();
    assert!(past <= 3, "{past} pieces written past the bad one");
    assert!(!dst.synced());
}

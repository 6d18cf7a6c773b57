//! The copier: ranges land at an offset, verification catches a corrupted target, and an
//! I/O error on either side stops the copy with the side and offset, writing nothing more.

mod clone_support;

use clone_support::{pseudo_random, TempDir};
use rescue::copier::{self, CopyError, CopyOptions, ReadAt, WriteAt};
use rescue::formats::extents::Extents;
use rescue::units::Bytes;
use std::io::{self, Cursor};
use std::os::unix::fs::FileExt;

fn ranges(v: &[(u64, u64)]) -> Extents {
    Extents::from_ranges(v.iter().map(|&(s, e)| (Bytes(s), Bytes(e))).collect())
}

fn small_opts() -> CopyOptions {
    CopyOptions {
        chunk: 64 << 10,
        align: 512,
        buffers: 3,
        verify: false,
    }
}

/// A source that fails with EIO on any read touching `bad`.
struct FailingSource {
    inner: Cursor<Vec<u8>>,
    bad: u64,
}

impl ReadAt for FailingSource {
    fn read_at(&mut self, buf: &mut [u8], offset: Bytes) -> io::Result<()> {
        if offset.0 <= self.bad && self.bad < offset.0 + buf.len() as u64 {
            return Err(io::Error::from_raw_os_error(5));
        }
        self.inner.read_at(buf, offset)
    }
}

/// A target that records writes, can fail at an offset, and can lie on read-back.
struct RecordingTarget {
    inner: Cursor<Vec<u8>>,
    writes: Vec<(u64, usize)>,
    fail_at: Option<u64>,
    flip_on_read: bool,
    synced: bool,
}

impl RecordingTarget {
    fn new() -> Self {
        RecordingTarget {
            inner: Cursor::new(vec![]),
            writes: vec![],
            fail_at: None,
            flip_on_read: false,
            synced: false,
        }
    }
}

impl ReadAt for RecordingTarget {
    fn read_at(&mut self, buf: &mut [u8], offset: Bytes) -> io::Result<()> {
        self.inner.read_at(buf, offset)?;
        if self.flip_on_read {
            buf[buf.len() / 2] ^= 1;
        }
        Ok(())
    }
}

impl WriteAt for RecordingTarget {
    fn write_at(&mut self, buf: &[u8], offset: Bytes) -> io::Result<()> {
        self.writes.push((offset.0, buf.len()));
        if self
            .fail_at
            .is_some_and(|f| offset.0 <= f && f < offset.0 + buf.len() as u64)
        {
            return Err(io::Error::from_raw_os_error(5));
        }
        self.inner.write_at(buf, offset)
    }
    fn sync(&mut self) -> io::Result<()> {
        self.synced = true;
        Ok(())
    }
}

#[test]
fn ranges_land_at_the_target_offset_and_progress_reaches_total() {
    let data = pseudo_random(1 << 20, 1);
    let mut src = Cursor::new(data.clone());
    let mut dst = RecordingTarget::new();
    let r = ranges(&[(0, 4096), (100_000, 300_000), (1_000_000, 1 << 20)]);
    let mut last = None;
    let rep = copier::copy(
        &mut src,
        &mut dst,
        &r,
        Bytes(8192),
        &small_opts(),
        &mut |p| last = Some(p.clone()),
    )
    .unwrap();
    assert_eq!(rep.bytes, r.total());
    assert!(dst.synced);
    let last = last.unwrap();
    assert_eq!((last.done, last.total), (r.total(), r.total()));
    let out = dst.inner.get_ref();
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
    let mut src = std::fs::File::open(&sp).unwrap();
    let mut dst = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(&dp)
        .unwrap();
    let r = ranges(&[(0, 1 << 20), (2 << 20, 3 << 20)]);
    let opts = CopyOptions {
        verify: true,
        ..small_opts()
    };
    let rep = copier::copy(&mut src, &mut dst, &r, Bytes(0), &opts, &mut |_| {}).unwrap();
    assert!(rep.verified);
    assert_eq!(rep.digests.len(), 32);
    // Corrupt one byte of what was written, then verify again.
    let at = (2 << 20) + 70_000;
    let mut b = [0u8; 1];
    dst.read_exact_at(&mut b, at).unwrap();
    dst.write_all_at(&[b[0] ^ 0xff], at).unwrap();
    dst.sync_all().unwrap();
    match copier::verify(&mut dst, &rep.digests, 512) {
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
    let mut src = Cursor::new(pseudo_random(256 << 10, 3));
    let mut dst = RecordingTarget {
        flip_on_read: true,
        ..RecordingTarget::new()
    };
    let opts = CopyOptions {
        verify: true,
        ..small_opts()
    };
    let e = copier::copy(
        &mut src,
        &mut dst,
        &ranges(&[(0, 256 << 10)]),
        Bytes(0),
        &opts,
        &mut |_| {},
    )
    .unwrap_err();
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
    let mut src = FailingSource {
        inner: Cursor::new(pseudo_random(1 << 20, 4)),
        bad,
    };
    let mut dst = RecordingTarget::new();
    let e = copier::copy(
        &mut src,
        &mut dst,
        &ranges(&[(0, 1 << 20)]),
        Bytes(0),
        &small_opts(),
        &mut |_| {},
    )
    .unwrap_err();
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
    let offs: Vec<u64> = dst.writes.iter().map(|w| w.0).collect();
    assert_eq!(offs, (0..5).map(|i| i * (64 << 10)).collect::<Vec<_>>());
    assert!(!dst.synced);
}

#[test]
fn write_error_stops_the_copy_and_names_the_offset() {
    let mut src = Cursor::new(pseudo_random(1 << 20, 5));
    let mut dst = RecordingTarget {
        fail_at: Some(3 * (64 << 10) + 1),
        ..RecordingTarget::new()
    };
    let e = copier::copy(
        &mut src,
        &mut dst,
        &ranges(&[(0, 1 << 20)]),
        Bytes(4096),
        &small_opts(),
        &mut |_| {},
    )
    .unwrap_err();
    match &e {
        CopyError::Write { offset, .. } => assert_eq!(offset.0, 2 * (64 << 10) + 4096),
        other => panic!("{other:?}"),
    }
    // The failed write was the last one attempted.
    assert_eq!(dst.writes.last().unwrap().0, 2 * (64 << 10) + 4096);
    assert_eq!(dst.writes.len(), 3);
    assert!(e.to_string().contains("writing the target failed"), "{e}");
}

//! Pure on-disk formats. Nothing here opens a device or issues an ioctl: every parser
//! and writer works over `Read + Seek` / `Write + Seek` so it is tested on a `Cursor`.

pub mod efi;
pub mod ext;
pub mod extents;
pub mod gpt;
pub mod lvm;
pub mod mbr;
pub mod md;
pub mod swap;
pub mod vfat;
pub mod vhd;

use std::io::{self, Read, Seek, SeekFrom, Write};

/// A `Read + Seek` view of `len` bytes of another reader starting at byte `start`, so a
/// format reader that expects its device at offset 0 can read a partition (or an md
/// member's data area) inside a disk. Reads stop at the end of the window; seeks are
/// relative to the window, `SeekFrom::End` to its end.
#[derive(Debug)]
pub struct Window<R> {
    inner: R,
    start: u64,
    len: u64,
    pos: u64,
}

impl<R: Read + Seek> Window<R> {
    pub fn new(inner: R, start: u64, len: u64) -> Self {
        Window {
            inner,
            start,
            len,
            pos: 0,
        }
    }

    pub fn into_inner(self) -> R {
        self.inner
    }
}

impl<R> Window<R> {
    /// Where the next `buf_len` bytes go in the inner stream and how many fit in the window
    /// (`None`: none; a window reaching past u64::MAX simply ends there).
    fn next_span(&self, buf_len: usize) -> Option<(u64, usize)> {
        let left = self.len.saturating_sub(self.pos);
        let at = self.start.checked_add(self.pos)?;
        let want = buf_len.min(usize::try_from(left).unwrap_or(usize::MAX));
        (want > 0).then_some((at, want))
    }
}

impl<R: Read + Seek> Read for Window<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let Some((at, want)) = self.next_span(buf.len()) else {
            return Ok(0);
        };
        self.inner.seek(SeekFrom::Start(at))?;
        let n = self.inner.read(&mut buf[..want])?;
        self.pos += n as u64;
        Ok(n)
    }
}

/// Writes stop at the end of the window (a short write; `write_all` then fails).
impl<W: Write + Seek> Write for Window<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let Some((at, want)) = self.next_span(buf.len()) else {
            return Ok(0);
        };
        self.inner.seek(SeekFrom::Start(at))?;
        let n = self.inner.write(&buf[..want])?;
        self.pos += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

impl<R: Read + Seek> Seek for Window<R> {
    fn seek(&mut self, to: SeekFrom) -> io::Result<u64> {
        let (base, delta) = match to {
            SeekFrom::Start(n) => {
                self.pos = n;
                return Ok(n);
            }
            SeekFrom::End(d) => (self.len, d),
            SeekFrom::Current(d) => (self.pos, d),
        };
        match base.checked_add_signed(delta) {
            Some(p) => {
                self.pos = p;
                Ok(p)
            }
            None => Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "seek to a negative or overflowing position",
            )),
        }
    }
}

/// `Ok(None)` for a read that ran past the end of the stream (a device shorter than the
/// format needs is simply not that format); other errors stay errors.
pub fn unless_eof<T>(res: io::Result<T>) -> io::Result<Option<T>> {
    match res {
        Ok(v) => Ok(Some(v)),
        Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => Ok(None),
        Err(e) => Err(e),
    }
}

/// Fills `buf` from byte `offset`; `Ok(false)` when the stream ends first.
pub fn read_exact_at<R: Read + Seek>(r: &mut R, offset: u64, buf: &mut [u8]) -> io::Result<bool> {
    r.seek(SeekFrom::Start(offset))?;
    Ok(unless_eof(r.read_exact(buf))?.is_some())
}

/// A fixed-size text field as blkid shows it: up to the first NUL, trailing whitespace
/// removed, `None` when nothing is left.
pub fn label_text(b: &[u8]) -> Option<String> {
    let end = b.iter().position(|c| *c == 0).unwrap_or(b.len());
    let s = String::from_utf8_lossy(&b[..end]).trim_end().to_string();
    (!s.is_empty()).then_some(s)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Cursor;

    #[test]
    fn window_reads_and_seeks_inside_its_range() {
        let data: Vec<u8> = (0..=255u8).collect();
        let mut w = Window::new(Cursor::new(data), 100, 20);
        let mut buf = [0u8; 8];
        w.read_exact(&mut buf).unwrap();
        assert_eq!(buf, [100, 101, 102, 103, 104, 105, 106, 107]);
        assert_eq!(w.stream_position().unwrap(), 8);
        // Reads stop at the window's end, not the inner reader's.
        let mut rest = Vec::new();
        w.read_to_end(&mut rest).unwrap();
        assert_eq!(rest, (108..120).collect::<Vec<u8>>());
        assert_eq!(w.seek(SeekFrom::End(-2)).unwrap(), 18);
        let mut two = [0u8; 4];
        assert_eq!(w.read(&mut two).unwrap(), 2);
        assert_eq!(&two[..2], &[118, 119]);
        assert_eq!(w.seek(SeekFrom::Current(-10)).unwrap(), 10);
        w.read_exact(&mut buf[..1]).unwrap();
        assert_eq!(buf[0], 110);
        // Past the end: nothing to read, read_exact reports EOF.
        w.seek(SeekFrom::Start(25)).unwrap();
        assert_eq!(w.read(&mut buf).unwrap(), 0);
        w.seek(SeekFrom::Start(16)).unwrap();
        let e = w.read_exact(&mut buf).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::UnexpectedEof);
        assert!(w.seek(SeekFrom::Current(-100)).is_err());
        assert_eq!(w.seek(SeekFrom::End(0)).unwrap(), 20);
    }

    #[test]
    fn window_writes_inside_its_range_only() {
        let mut w = Window::new(Cursor::new(vec![0u8; 32]), 8, 8);
        w.seek(SeekFrom::Start(4)).unwrap();
        w.write_all(&[1, 2, 3]).unwrap();
        // The window's end stops a write: write_all reports it, nothing spills over.
        let e = w.write_all(&[9, 9, 9]).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::WriteZero);
        let data = w.into_inner().into_inner();
        assert_eq!(&data[8..16], &[0, 0, 0, 0, 1, 2, 3, 9]);
        assert!(data[16..].iter().all(|b| *b == 0));
    }

    #[test]
    fn window_past_the_inner_end_or_u64_max_reads_nothing() {
        let mut w = Window::new(Cursor::new(vec![7u8; 10]), 8, 100);
        let mut buf = [0u8; 16];
        assert_eq!(w.read(&mut buf).unwrap(), 2);
        assert_eq!(w.read(&mut buf).unwrap(), 0);
        let mut w = Window::new(Cursor::new(vec![7u8; 10]), u64::MAX - 1, 100);
        w.seek(SeekFrom::Start(5)).unwrap();
        assert_eq!(w.read(&mut buf).unwrap(), 0);
    }

    #[test]
    fn label_text_trims_like_blkid() {
        assert_eq!(label_text(b"root-x  \0junk"), Some("root-x".into()));
        assert_eq!(label_text(b"\0abc"), None);
        assert_eq!(label_text(b"   "), None);
        assert_eq!(label_text(b"full"), Some("full".into()));
    }
}

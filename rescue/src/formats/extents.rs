//! Sorted, merged lists of byte ranges: what a format says is in use and what the copier
//! moves. Ranges are half-open `[start, end)` in bytes.

use crate::units::Bytes;
use serde::Serialize;

/// A sorted list of non-overlapping, non-adjacent half-open byte ranges.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Extents(Vec<(Bytes, Bytes)>);

impl Extents {
    /// Sort and merge arbitrary `[start, end)` ranges; empty ranges are dropped.
    pub fn from_ranges(mut ranges: Vec<(Bytes, Bytes)>) -> Self {
        ranges.retain(|(s, e)| s < e);
        ranges.sort_unstable();
        let mut out: Vec<(Bytes, Bytes)> = Vec::with_capacity(ranges.len());
        for (s, e) in ranges {
            match out.last_mut() {
                Some(last) if s <= last.1 => last.1 = last.1.max(e),
                _ => out.push((s, e)),
            }
        }
        Extents(out)
    }

    /// One range covering `[0, len)`.
    pub fn whole(len: Bytes) -> Self {
        Self::from_ranges(vec![(Bytes(0), len)])
    }

    pub fn ranges(&self) -> &[(Bytes, Bytes)] {
        &self.0
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Total bytes covered.
    pub fn total(&self) -> Bytes {
        Bytes(self.0.iter().map(|(s, e)| e.0 - s.0).sum())
    }

    /// The end of the last range (0 when empty).
    pub fn end(&self) -> Bytes {
        self.0.last().map_or(Bytes(0), |r| r.1)
    }

    /// Union with another list.
    pub fn union(&self, other: &Extents) -> Self {
        let mut v = self.0.clone();
        v.extend_from_slice(&other.0);
        Self::from_ranges(v)
    }

    /// Widen every range outwards to multiples of `align` (a power of two or any
    /// non-zero value), never past `limit`, then merge. Copying a little more of the
    /// source is harmless and lets the copier use direct I/O.
    pub fn align_out(&self, align: u64, limit: Bytes) -> Self {
        if align <= 1 {
            return self.clip(limit);
        }
        let v = self
            .0
            .iter()
            .map(|(s, e)| {
                let s = s.0 / align * align;
                let e = e.0.div_ceil(align).saturating_mul(align).min(limit.0);
                (Bytes(s), Bytes(e))
            })
            .collect();
        Self::from_ranges(v)
    }

    /// Drop everything at or past `limit`.
    pub fn clip(&self, limit: Bytes) -> Self {
        let v = self
            .0
            .iter()
            .map(|&(s, e)| (s.min(limit), e.min(limit)))
            .collect();
        Self::from_ranges(v)
    }

    /// Merge ranges separated by at most `max_gap` bytes: one large request through a
    /// small hole costs less than two round trips (the hole's bytes are copied too,
    /// which is harmless where a format says nothing is in use).
    pub fn bridge_gaps(&self, max_gap: Bytes) -> Self {
        let mut out: Vec<(Bytes, Bytes)> = Vec::with_capacity(self.0.len());
        for &(s, e) in &self.0 {
            match out.last_mut() {
                Some(last) if s.0 - last.1 .0 <= max_gap.0 => last.1 = e,
                _ => out.push((s, e)),
            }
        }
        Extents(out)
    }

    /// True when every boundary is a multiple of `align`.
    pub fn is_aligned(&self, align: u64) -> bool {
        align <= 1
            || self
                .0
                .iter()
                .all(|(s, e)| s.0 % align == 0 && e.0 % align == 0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn r(v: &[(u64, u64)]) -> Extents {
        Extents::from_ranges(v.iter().map(|&(s, e)| (Bytes(s), Bytes(e))).collect())
    }

    #[test]
    fn bridge_gaps_merges_only_small_holes() {
        let e = r(&[(0, 10), (14, 20), (40, 50), (51, 60)]);
        assert_eq!(e.bridge_gaps(Bytes(4)), r(&[(0, 20), (40, 60)]));
        assert_eq!(e.bridge_gaps(Bytes(0)), e);
        assert_eq!(e.bridge_gaps(Bytes(20)), r(&[(0, 60)]));
        assert_eq!(Extents::default().bridge_gaps(Bytes(9)), Extents::default());
    }

    #[test]
    fn merges_overlapping_and_adjacent() {
        let e = r(&[(10, 20), (0, 5), (5, 8), (15, 30), (40, 40)]);
        assert_eq!(e.ranges(), &[(Bytes(0), Bytes(8)), (Bytes(10), Bytes(30))]);
        assert_eq!(e.total(), Bytes(28));
        assert_eq!(e.end(), Bytes(30));
    }

    #[test]
    fn align_out_stays_within_limit() {
        let e = r(&[(1024, 2048), (5000, 5100)]).align_out(4096, Bytes(6000));
        assert_eq!(e.ranges(), &[(Bytes(0), Bytes(6000))]);
        assert!(r(&[(0, 4096)]).is_aligned(4096));
        assert!(!r(&[(512, 4096)]).is_aligned(4096));
    }
}

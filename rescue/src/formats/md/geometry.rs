//! Where mdadm puts the superblock, the data and the internal bitmap on a member of a
//! given size (mdadm 4.2: `validate_geometry1`, `write_init_super1`,
//! `add_internal_bitmap1`, `choose_bm_space` in super1.c; super0.c for 0.90).

use super::{MdError, MetadataVersion};
use crate::units::{Bytes, Sectors};

/// The internal write-intent bitmap's place and shape.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BitmapGeometry {
    /// Signed distance of the bitmap header from the superblock (`bitmap_offset`).
    pub offset: i32,
    /// Bytes of disk covered by one bit.
    pub chunk_size: Bytes,
    /// Space written for the bitmap (header + bits, rounded to 4 KiB; 60 KiB for 0.90).
    pub space: Sectors,
}

/// The bad-block log area mdadm reserves for 1.x (never populated at creation).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BadBlockLog {
    /// Signed distance from the superblock in sectors.
    pub offset: i32,
    pub size: Sectors,
}

/// Layout of one md member.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Geometry {
    pub version: MetadataVersion,
    pub member_size: Sectors,
    pub super_offset: Sectors,
    pub data_offset: Sectors,
    /// Sectors usable for data from `data_offset` ("Avail Dev Size").
    pub data_size: Sectors,
    /// Sectors of each member used by the array (superblock `size`, "Used Dev Size").
    pub array_size: Sectors,
    pub bitmap: Option<BitmapGeometry>,
    pub bad_block_log: Option<BadBlockLog>,
}

impl BitmapGeometry {
    /// Absolute sector of the bitmap header given the superblock position.
    pub fn start(&self, super_offset: Sectors) -> Option<Sectors> {
        super_offset
            .0
            .checked_add_signed(i64::from(self.offset))
            .map(Sectors)
    }
}

/// 0.90 reserves the last 64 KiB-aligned 64 KiB of the member.
pub(crate) const V090_RESERVED: u64 = 128;
/// 0.90 bitmap: right after the 4 KiB superblock, 60 KiB long.
pub(crate) const V090_BITMAP_OFFSET: i32 = 8;
pub(crate) const V090_BITMAP_BYTES: u64 = 60 * 1024;
pub(crate) const BITMAP_HEADER: u64 = 256;
/// mdadm's default chunk when none is requested.
const MIN_DEFAULT_CHUNK: u64 = 64 << 20;

/// Space mdadm leaves for a bitmap on a device (or array) of `size` sectors.
fn bm_space(size: u64) -> u64 {
    if size < 128 {
        0
    } else if size - 128 >= 200 * 1024 * 1024 * 2 {
        256
    } else if size - 8 > 8 * 1024 * 1024 * 2 {
        128
    } else {
        8
    }
}

/// Bitmap chunk (bytes) for an array of `size` sectors when `room` sectors are available.
fn bitmap_chunk(size: u64, room: u64) -> Option<u64> {
    let max_bits = (room * 512).checked_sub(BITMAP_HEADER)? * 8;
    if max_bits == 0 {
        return None;
    }
    let mut min_chunk = 4096u64;
    let mut bits = size * 512 / min_chunk + 1;
    while bits > max_bits {
        min_chunk *= 2;
        bits = bits.div_ceil(2);
    }
    Some(min_chunk.max(MIN_DEFAULT_CHUNK))
}

/// Bytes written for a 1.x bitmap of `size` sectors: header plus one bit per chunk,
/// rounded up to 4 KiB (mdadm `calc_bitmap_size(bms, 4096)`).
fn bitmap_bytes(size: u64, chunk: u64) -> u64 {
    let bits = (size * 512).div_ceil(chunk);
    (bits.div_ceil(8) + BITMAP_HEADER).next_multiple_of(4096)
}

fn round_down(v: u64, m: u64) -> u64 {
    v / m * m
}

/// mdadm's layout for a RAID1 member of `member_size` sectors (all members that size).
pub fn geometry(
    version: MetadataVersion,
    member_size: Sectors,
    want_bitmap: bool,
) -> Result<Geometry, MdError> {
    geometry_with_size(version, member_size, None, want_bitmap)
}

/// Like [`geometry`] but with the per-member array size chosen by the caller (for
/// arrays whose members differ in size: pass the smallest member's `array_size`).
pub fn geometry_with_size(
    version: MetadataVersion,
    member_size: Sectors,
    array_size: Option<Sectors>,
    want_bitmap: bool,
) -> Result<Geometry, MdError> {
    super::check_member_size(member_size)?;
    let dsize = member_size.0;
    let too_small = |needed: u64| MdError::TooSmall {
        version,
        size: member_size,
        needed: Sectors(needed),
    };
    match version {
        MetadataVersion::V0_90 => {
            if dsize < 2 * V090_RESERVED {
                return Err(too_small(2 * V090_RESERVED));
            }
            let super_offset = round_down(dsize, V090_RESERVED) - V090_RESERVED;
            // size is stored in KiB and mdadm rounds RAID1 to 64 KiB.
            let default = round_down(super_offset, 128);
            let array = pick_size(array_size, default, version, member_size)?;
            if array / 2 > u64::from(u32::MAX) {
                return Err(MdError::TooLargeFor090 { size: member_size });
            }
            let bitmap = if want_bitmap {
                let room = V090_BITMAP_BYTES / 512;
                let chunk = bitmap_chunk(array, room).ok_or(MdError::NoRoomForBitmap {
                    version,
                    size: member_size,
                })?;
                Some(BitmapGeometry {
                    offset: V090_BITMAP_OFFSET,
                    chunk_size: Bytes(chunk),
                    space: Sectors(room),
                })
            } else {
                None
            };
            Ok(Geometry {
                version,
                member_size,
                super_offset: Sectors(super_offset),
                data_offset: Sectors(0),
                data_size: Sectors(super_offset),
                array_size: Sectors(array),
                bitmap,
                bad_block_log: None,
            })
        }
        MetadataVersion::V1_0 => {
            // Superblock, bad-block log and the room reserved for a bitmap.
            let overhead = 16 + 8 + bm_space(dsize);
            let avail = round_down(dsize, 8);
            if dsize < 24 || avail < overhead + 128 {
                return Err(too_small(overhead + 128 + 8));
            }
            let default = round_down(avail - overhead, 128);
            let array = pick_size(array_size, default, version, member_size)?;
            let sb = round_down(dsize - 16, 8);
            let bbl = 8u64;
            let (bitmap, mut space) = if want_bitmap {
                let room = bm_space(array).min(256);
                let no_room = || MdError::NoRoomForBitmap {
                    version,
                    size: member_size,
                };
                if room <= 1 {
                    return Err(no_room());
                }
                let chunk = bitmap_chunk(array, room).ok_or_else(no_room)?;
                // mdadm places the bitmap with one more bit than it writes.
                let bits = array * 512 / chunk + 1;
                let placed = (bits.div_ceil(8) + BITMAP_HEADER).div_ceil(4096) * 8;
                let written = bitmap_bytes(array, chunk) / 512;
                let offset = i32::try_from(placed + bbl).map_err(|_| no_room())?;
                (
                    Some(BitmapGeometry {
                        offset: -offset,
                        chunk_size: Bytes(chunk),
                        space: Sectors(written),
                    }),
                    placed.max(written),
                )
            } else {
                (None, bm_space(array))
            };
            space += bbl;
            if sb < array + space {
                if bitmap.is_some() {
                    return Err(MdError::NoRoomForBitmap {
                        version,
                        size: member_size,
                    });
                }
                space = sb - array;
            }
            let bad_block_log = (space >= 8).then_some(BadBlockLog {
                offset: -8,
                size: Sectors(8),
            });
            Ok(Geometry {
                version,
                member_size,
                super_offset: Sectors(sb),
                data_offset: Sectors(0),
                data_size: Sectors(sb - space),
                array_size: Sectors(array),
                bitmap,
                bad_block_log,
            })
        }
        MetadataVersion::V1_1 | MetadataVersion::V1_2 => {
            let sb = if version == MetadataVersion::V1_1 {
                0
            } else {
                8
            };
            // Reshape headroom: 128 MiB, halved while above ~0.1% of the device (RAID1
            // has no chunk to bound it), then rounded up to 1 MiB.
            let mut headroom = 128 * 1024 * 2u64;
            while (headroom << 10) > dsize {
                headroom >>= 1;
            }
            let data_offset = (24 + bm_space(dsize) + headroom).next_multiple_of(2048);
            if dsize < data_offset + 128 {
                return Err(too_small(data_offset + 128));
            }
            let data_size = dsize - data_offset;
            let default = round_down(data_size, 128);
            let array = pick_size(array_size, default, version, member_size)?;
            let bm_offset = 8u64;
            let (bitmap, space) = if want_bitmap {
                let no_room = || MdError::NoRoomForBitmap {
                    version,
                    size: member_size,
                };
                let room = bm_space(array).min(256);
                if room <= 1 {
                    return Err(no_room());
                }
                let chunk = bitmap_chunk(array, room).ok_or_else(no_room)?;
                let written = bitmap_bytes(array, chunk) / 512;
                if sb + bm_offset + written > data_offset {
                    return Err(no_room());
                }
                (
                    Some(BitmapGeometry {
                        offset: bm_offset as i32,
                        chunk_size: Bytes(chunk),
                        space: Sectors(written),
                    }),
                    written,
                )
            } else {
                (None, bm_space(array))
            };
            let bad_block_log = if data_offset >= sb + bm_offset + space + 8 {
                Some(BadBlockLog {
                    offset: (bm_offset + space) as i32,
                    size: Sectors(8),
                })
            } else if data_offset >= sb + 16 {
                Some(BadBlockLog {
                    offset: (data_offset - 8 - sb) as i32,
                    size: Sectors(8),
                })
            } else {
                None
            };
            Ok(Geometry {
                version,
                member_size,
                super_offset: Sectors(sb),
                data_offset: Sectors(data_offset),
                data_size: Sectors(data_size),
                array_size: Sectors(array),
                bitmap,
                bad_block_log,
            })
        }
    }
}

fn pick_size(
    wanted: Option<Sectors>,
    default: u64,
    version: MetadataVersion,
    member_size: Sectors,
) -> Result<u64, MdError> {
    let size = wanted.map_or(default, |s| s.0);
    if size == 0 {
        return Err(MdError::TooSmall {
            version,
            size: member_size,
            needed: Sectors(member_size.0 + 128),
        });
    }
    if size > default {
        return Err(MdError::ArrayTooLarge {
            array: Sectors(size),
            available: Sectors(default),
        });
    }
    Ok(size)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Values worked out by hand from mdadm 4.2's `validate_geometry1`: headroom
    /// 128 MiB halved while `headroom << 10 > size`, plus 12 KiB, plus
    /// `choose_bm_space(size)`, rounded up to 1 MiB.
    #[test]
    fn v1_2_data_offset_matches_mdadm_4_2() {
        let cases = [
            (100u64 << 20, 2048u64),
            (3 << 30, 6144),
            (20 << 30, 34816),
            (2 << 40, 264192),
        ];
        for (bytes, want) in cases {
            let g = geometry(MetadataVersion::V1_2, Sectors(bytes / 512), false).unwrap();
            assert_eq!(g.data_offset, Sectors(want), "member of {bytes} bytes");
            assert_eq!(g.super_offset, Sectors(8));
        }
    }

    /// Members made by real mdadm, from `mdadm --examine` outputs posted publicly: a
    /// 500 MiB 1.0 /boot mirror with bitmap ("Avail Dev Size : 1023968", "Used Dev Size :
    /// 1023872", "Super Offset : 1023984", "Internal Bitmap : -16"), a 1.0 member of
    /// 488821424 sectors in an array of 488636416 (Avail 488821392, bitmap -16), the
    /// same array's larger member created before its bitmap was added (Avail 845151976 at
    /// super offset 845152240), and a 1.2 RAID1 member with bitmap (Avail 5850626976, Used
    /// 5850626944, Data Offset 264192, bad-block log at +24).
    #[test]
    fn matches_members_made_by_real_mdadm() {
        let g = geometry(MetadataVersion::V1_0, Sectors(1_024_000), true).unwrap();
        assert_eq!(
            (g.super_offset.0, g.data_size.0, g.array_size.0),
            (1_023_984, 1_023_968, 1_023_872)
        );
        assert_eq!(g.bitmap.unwrap().offset, -16);
        assert_eq!(g.bad_block_log.unwrap().offset, -8);

        let size = Some(Sectors(488_636_416));
        let g =
            geometry_with_size(MetadataVersion::V1_0, Sectors(488_821_424), size, true).unwrap();
        assert_eq!(
            (g.super_offset.0, g.data_size.0),
            (488_821_408, 488_821_392)
        );
        assert_eq!(g.bitmap.unwrap().offset, -16);
        let g =
            geometry_with_size(MetadataVersion::V1_0, Sectors(845_152_256), size, false).unwrap();
        assert_eq!(
            (g.super_offset.0, g.data_size.0),
            (845_152_240, 845_151_976)
        );

        let g = geometry(MetadataVersion::V1_2, Sectors(5_850_891_168), true).unwrap();
        assert_eq!(
            (g.data_offset.0, g.data_size.0, g.array_size.0),
            (264_192, 5_850_626_976, 5_850_626_944)
        );
        assert_eq!(g.bitmap.unwrap().offset, 8);
        assert_eq!(g.bad_block_log.unwrap().offset, 24);
    }

    #[test]
    fn v1_0_superblock_is_4k_aligned_8_to_12k_from_end() {
        for size in [24_000u64, 20480, 204_799, 6_291_456 + 5] {
            let g = geometry(MetadataVersion::V1_0, Sectors(size), false).unwrap();
            assert_eq!(g.super_offset.0 % 8, 0);
            let from_end = size - g.super_offset.0;
            assert!((16..24).contains(&from_end), "{size}: {from_end}");
            assert!(g.array_size <= g.data_size);
        }
    }

    #[test]
    fn v0_90_superblock_in_last_64k_block() {
        let g = geometry(MetadataVersion::V0_90, Sectors(204_800 + 77), false).unwrap();
        assert_eq!(g.super_offset, Sectors(204_800 - 128));
        assert_eq!(g.array_size.0 % 128, 0);
    }

    #[test]
    fn tiny_members_are_refused() {
        for v in [
            MetadataVersion::V0_90,
            MetadataVersion::V1_0,
            MetadataVersion::V1_2,
        ] {
            let err = geometry(v, Sectors(100), false).unwrap_err();
            assert!(matches!(err, MdError::TooSmall { .. }), "{v:?}: {err}");
        }
    }

    #[test]
    fn v0_90_refuses_members_over_4_tib() {
        let err = geometry(MetadataVersion::V0_90, Sectors(5 << 31), false).unwrap_err();
        assert!(matches!(err, MdError::TooLargeFor090 { .. }), "{err}");
    }

    #[test]
    fn bitmap_never_overlaps_data() {
        for size in [20480u64, 204_800, 6_291_456, 41_943_040, 4_294_967_296] {
            for v in [MetadataVersion::V1_0, MetadataVersion::V1_2] {
                let g = geometry(v, Sectors(size), true).unwrap();
                let bm = g.bitmap.unwrap();
                let start = bm.start(g.super_offset).unwrap().0;
                let data_end = g.data_offset.0 + g.data_size.0;
                if v == MetadataVersion::V1_0 {
                    assert!(start >= data_end, "{size}");
                } else {
                    assert!(start + bm.space.0 <= g.data_offset.0, "{size}");
                }
            }
        }
    }
}

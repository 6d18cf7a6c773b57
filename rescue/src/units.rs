//! Unit newtypes so bytes, 512-byte sectors and logical-block addresses never mix.
//!
//! `Sectors` are always 512 bytes (the unit of md superblocks, the kernel's block layer
//! and `BLKGETSIZE`). `Lba` counts logical blocks of a disk whose block size is carried
//! separately (512 or 4096), as GPT does.

use serde::{Deserialize, Serialize};
use std::fmt;
use std::ops::{Add, Sub};

/// A count or offset in bytes.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
#[serde(transparent)]
pub struct Bytes(pub u64);

/// A count or offset in 512-byte sectors.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
#[serde(transparent)]
pub struct Sectors(pub u64);

/// A logical block address on a disk with a given logical block size.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
#[serde(transparent)]
pub struct Lba(pub u64);

pub const SECTOR_SIZE: u64 = 512;

impl Sectors {
    pub const fn bytes(self) -> Bytes {
        Bytes(self.0 * SECTOR_SIZE)
    }
}

impl Bytes {
    /// Whole sectors contained in this many bytes (rounded down).
    pub const fn sectors_floor(self) -> Sectors {
        Sectors(self.0 / SECTOR_SIZE)
    }
    pub const fn is_sector_aligned(self) -> bool {
        self.0 % SECTOR_SIZE == 0
    }
}

impl Lba {
    pub const fn bytes(self, block_size: u64) -> Bytes {
        Bytes(self.0 * block_size)
    }
}

macro_rules! arith {
    ($t:ident) => {
        impl Add for $t {
            type Output = $t;
            fn add(self, rhs: $t) -> $t {
                $t(self.0 + rhs.0)
            }
        }
        impl Sub for $t {
            type Output = $t;
            fn sub(self, rhs: $t) -> $t {
                $t(self.0 - rhs.0)
            }
        }
    };
}
arith!(Bytes);
arith!(Sectors);

impl fmt::Display for Bytes {
    /// Human size with a binary unit, e.g. `18.0 GiB`; exact bytes below 1 KiB.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        const UNITS: [&str; 5] = ["KiB", "MiB", "GiB", "TiB", "PiB"];
        if self.0 < 1024 {
            return write!(f, "{} B", self.0);
        }
        let mut value = self.0 as f64 / 1024.0;
        let mut unit = 0;
        while value >= 1024.0 && unit + 1 < UNITS.len() {
            value /= 1024.0;
            unit += 1;
        }
        write!(f, "{value:.1} {}", UNITS[unit])
    }
}

impl fmt::Display for Sectors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} sectors", self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn conversions_keep_units_apart() {
        assert_eq!(Sectors(8).bytes(), Bytes(4096));
        assert_eq!(Bytes(4097).sectors_floor(), Sectors(8));
        assert_eq!(Lba(34).bytes(512), Bytes(17408));
        assert_eq!(Lba(6).bytes(4096), Bytes(24576));
    }

    #[test]
    fn human_sizes() {
        assert_eq!(Bytes(512).to_string(), "512 B");
        assert_eq!(Bytes(18 << 30).to_string(), "18.0 GiB");
        assert_eq!(Bytes(1536).to_string(), "1.5 KiB");
    }
}

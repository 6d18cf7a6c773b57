//! Pure on-disk formats. Nothing here opens a device or issues an ioctl: every parser
//! and writer works over `Read + Seek` / `Write + Seek` so it is tested on a `Cursor`.

pub mod ext;
pub mod extents;
pub mod gpt;
pub mod lvm;
pub mod mbr;
pub mod md;
pub mod swap;
pub mod vfat;

//! `cargo xtask pxe` and `cargo xtask usb`: the two ways operators boot the rescue.

pub mod pxe;
pub mod usb;

//! TODO(initramfs): being written.

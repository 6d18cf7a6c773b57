//! TODO(qemu-tests): being written.

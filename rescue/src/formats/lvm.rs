//! TODO(lvm): being written.

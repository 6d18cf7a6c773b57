//! TODO(vfat): being written.

//! TODO(mbr): being written.

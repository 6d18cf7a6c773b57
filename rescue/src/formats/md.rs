//! TODO(md): being written.

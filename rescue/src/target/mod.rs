//! TODO(target): rewriting the converted host's boot and system files; being written.

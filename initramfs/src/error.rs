//! Errors of the initramfs builder: each says what is wrong and what to do.

use std::path::PathBuf;

/// Everything that can go wrong while resolving modules or writing the image.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("cannot read {path}: {source}: check the path and its permissions")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    #[error("{path} is not a kernel modules directory (no modules.builtin): point at lib/modules/<kernel version>/ of an unpacked kernel package")]
    NotModulesDir { path: PathBuf },

    #[error("module pattern {pattern:?} on line {line} is not a module name: use letters, digits, `-`, `_` and `*` only")]
    BadPattern { line: usize, pattern: String },

    #[error("module pattern {pattern:?} matches no module in {dir} and is not built into the kernel: fix the name or use a kernel that has this driver")]
    PatternUnmatched { pattern: String, dir: PathBuf },

    #[error("module {module} depends on {dependency}, which is neither in {dir} nor built into the kernel: the modules tree is incomplete, unpack the whole kernel package")]
    MissingDependency {
        module: String,
        dependency: String,
        dir: PathBuf,
    },

    #[error("two files provide module {name}: {first} and {second}: remove one of them from the modules tree")]
    DuplicateModule {
        name: String,
        first: PathBuf,
        second: PathBuf,
    },

    #[error("module {path} is compressed with {format}: decompress the modules tree first (`{tool}`), the rescue loads plain .ko files")]
    CompressedModule {
        path: PathBuf,
        format: &'static str,
        tool: &'static str,
    },

    #[error("{path} is not a readable kernel module: {reason}: the file is damaged or not a .ko, unpack the kernel package again")]
    BadModule { path: PathBuf, reason: String },

    #[error("module file {path} calls itself {found:?} in .modinfo, expected {expected:?}: rename the file to match the module name")]
    ModuleNameMismatch {
        path: PathBuf,
        expected: String,
        found: String,
    },

    #[error("module {path} was built for kernel {found}, but the modules directory is for {expected}: use the modules of the kernel you boot")]
    VermagicMismatch {
        path: PathBuf,
        expected: String,
        found: String,
    },

    #[error("modules {modules:?} depend on each other in a cycle: this tree cannot be loaded in order, check the modules' depends= and softdep= entries")]
    DependencyCycle { modules: Vec<String> },

    #[error("init binary is not a valid ELF file ({reason}): build the rescue binary and pass its bytes")]
    InitNotElf { reason: String },

    #[error("init binary is for {found}, not x86_64: build the rescue for target x86_64-unknown-linux-musl")]
    InitWrongArch { found: String },

    #[error("init binary is an ELF {found}, not an executable: pass the built rescue program, not an object or library")]
    InitNotExecutable { found: String },

    #[error("init binary is dynamically linked (interpreter {interpreter}): there is no libc in the initramfs, build it static (target x86_64-unknown-linux-musl, or -C target-feature=+crt-static)")]
    InitHasInterpreter { interpreter: String },

    #[error("init binary needs shared libraries {libraries:?}: there is no libc in the initramfs, build it static (target x86_64-unknown-linux-musl, or -C target-feature=+crt-static)")]
    InitNeedsLibraries { libraries: Vec<String> },

    #[error("archive path {path:?} is not valid: use a relative or absolute path without `.`, `..` or empty components")]
    InvalidPath { path: String },

    #[error("archive path {path:?} is added twice: add each path once")]
    DuplicatePath { path: String },

    #[error("archive path {path:?} needs {parent:?} to be a directory, but it was added as another kind of entry: change one of the two paths")]
    ParentNotDirectory { path: String, parent: String },

    #[error("mode {mode:#o} for archive path {path:?} has bits beyond the permission bits: pass permissions only (like 0o755), the entry kind sets the file type")]
    InvalidMode { path: String, mode: u32 },

    #[error("archive entry {path:?} is {size} bytes, more than the 4 GiB a newc cpio entry can hold: make the file smaller")]
    EntryTooLarge { path: String, size: u64 },

    #[error("cannot write the archive: {0}: check free memory")]
    Write(#[source] std::io::Error),
}

/// Result of this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

//! A deterministic newc cpio writer (gzip-compressed), the format the kernel
//! unpacks as initramfs. Same entries in, same bytes out: entries are sorted
//! by path, parents are created, and owners, times and inode numbers are fixed.

use std::collections::BTreeMap;
use std::io::Write;

use cpio::newc::{Builder, ModeFileType};
use flate2::{Compression, GzBuilder};

use crate::error::{Error, Result};

/// Mode of directories created implicitly as parents.
pub const DEFAULT_DIR_MODE: u32 = 0o755;

/// gzip header OS byte: fixed to "Unix" whatever the build host.
const GZIP_OS_UNIX: u8 = 3;

/// One archive entry. Modes are permission bits only (`0o7777` at most).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Node {
    Dir { mode: u32 },
    File { data: Vec<u8>, mode: u32 },
    Symlink { target: String },
    CharDevice { mode: u32, major: u32, minor: u32 },
    BlockDevice { mode: u32, major: u32, minor: u32 },
}

impl Node {
    fn mode(&self) -> u32 {
        match self {
            Node::Dir { mode }
            | Node::File { mode, .. }
            | Node::CharDevice { mode, .. }
            | Node::BlockDevice { mode, .. } => *mode,
            Node::Symlink { .. } => 0o777,
        }
    }

    fn file_type(&self) -> ModeFileType {
        match self {
            Node::Dir { .. } => ModeFileType::Directory,
            Node::File { .. } => ModeFileType::Regular,
            Node::Symlink { .. } => ModeFileType::Symlink,
            Node::CharDevice { .. } => ModeFileType::Char,
            Node::BlockDevice { .. } => ModeFileType::Block,
        }
    }

    fn data(&self) -> &[u8] {
        match self {
            Node::File { data, .. } => data,
            Node::Symlink { target } => target.as_bytes(),
            _ => &[],
        }
    }
}

#[derive(Debug, Clone)]
struct Slot {
    node: Node,
    /// Created as a parent only; an explicit `add_dir` may still set its mode.
    implicit: bool,
}

/// Collects entries, then writes them as a newc cpio.
#[derive(Debug, Clone, Default)]
pub struct Archive {
    entries: BTreeMap<String, Slot>,
}

/// `/a/b` and `a/b` are the same entry; `.`, `..` and empty parts are refused.
fn clean_path(path: &str) -> Result<String> {
    let trimmed = path.trim_start_matches('/');
    let valid = !trimmed.is_empty()
        && trimmed
            .split('/')
            .all(|part| !part.is_empty() && part != "." && part != "..")
        && !trimmed.contains('\0');
    if valid {
        Ok(trimmed.to_string())
    } else {
        Err(Error::InvalidPath {
            path: path.to_string(),
        })
    }
}

impl Archive {
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds any entry, creating missing parent directories (mode 0755).
    pub fn add(&mut self, path: &str, node: Node) -> Result<()> {
        let clean = clean_path(path)?;
        if node.mode() & !0o7777 != 0 {
            return Err(Error::InvalidMode {
                path: path.to_string(),
                mode: node.mode(),
            });
        }
        if u32::try_from(node.data().len()).is_err() {
            return Err(Error::EntryTooLarge {
                path: path.to_string(),
                size: node.data().len() as u64,
            });
        }
        for (index, _) in clean.match_indices('/') {
            let parent = &clean[..index];
            match self.entries.get(parent) {
                Some(Slot {
                    node: Node::Dir { .. },
                    ..
                }) => {}
                Some(_) => {
                    return Err(Error::ParentNotDirectory {
                        path: path.to_string(),
                        parent: parent.to_string(),
                    })
                }
                None => {
                    self.entries.insert(
                        parent.to_string(),
                        Slot {
                            node: Node::Dir {
                                mode: DEFAULT_DIR_MODE,
                            },
                            implicit: true,
                        },
                    );
                }
            }
        }
        if let Some(slot) = self.entries.get(&clean) {
            let both_dirs = matches!((&slot.node, &node), (Node::Dir { .. }, Node::Dir { .. }));
            if both_dirs && slot.implicit {
                // An implicit parent becomes explicit and takes the given mode.
            } else if both_dirs && slot.node == node {
                return Ok(());
            } else if !both_dirs && self.has_children(&clean) {
                return Err(Error::ParentNotDirectory {
                    path: path.to_string(),
                    parent: clean,
                });
            } else {
                return Err(Error::DuplicatePath {
                    path: path.to_string(),
                });
            }
        }
        self.entries.insert(
            clean,
            Slot {
                node,
                implicit: false,
            },
        );
        Ok(())
    }

    fn has_children(&self, dir: &str) -> bool {
        let prefix = format!("{dir}/");
        self.entries
            .range(prefix.clone()..)
            .next()
            .is_some_and(|(p, _)| p.starts_with(&prefix))
    }

    pub fn add_dir(&mut self, path: &str, mode: u32) -> Result<()> {
        self.add(path, Node::Dir { mode })
    }

    pub fn add_file(&mut self, path: &str, data: Vec<u8>, mode: u32) -> Result<()> {
        self.add(path, Node::File { data, mode })
    }

    pub fn add_symlink(&mut self, path: &str, target: &str) -> Result<()> {
        self.add(
            path,
            Node::Symlink {
                target: target.to_string(),
            },
        )
    }

    pub fn add_char_device(&mut self, path: &str, mode: u32, major: u32, minor: u32) -> Result<()> {
        self.add(path, Node::CharDevice { mode, major, minor })
    }

    pub fn add_block_device(
        &mut self,
        path: &str,
        mode: u32,
        major: u32,
        minor: u32,
    ) -> Result<()> {
        self.add(path, Node::BlockDevice { mode, major, minor })
    }

    /// Paths in archive order (without leading `/`).
    pub fn paths(&self) -> impl Iterator<Item = &str> {
        self.entries.keys().map(String::as_str)
    }

    /// Writes the uncompressed newc archive, trailer included.
    pub fn write_cpio<W: Write>(&self, mut out: W) -> Result<W> {
        for (index, (path, slot)) in self.entries.iter().enumerate() {
            let node = &slot.node;
            let (rdev_major, rdev_minor) = match node {
                Node::CharDevice { major, minor, .. } | Node::BlockDevice { major, minor, .. } => {
                    (*major, *minor)
                }
                _ => (0, 0),
            };
            let ino = u32::try_from(index + 1).map_err(|_| Error::EntryTooLarge {
                path: path.clone(),
                size: index as u64,
            })?;
            let data = node.data();
            // Checked in `add`.
            let size = u32::try_from(data.len()).unwrap_or(u32::MAX);
            let mut writer = Builder::new(path)
                .ino(ino)
                .mode(node.mode())
                .set_mode_file_type(node.file_type())
                .uid(0)
                .gid(0)
                .mtime(0)
                .nlink(if matches!(node, Node::Dir { .. }) {
                    2
                } else {
                    1
                })
                .rdev_major(rdev_major)
                .rdev_minor(rdev_minor)
                .write(out, size);
            writer.write_all(data).map_err(Error::Write)?;
            out = writer.finish().map_err(Error::Write)?;
        }
        cpio::newc::trailer(out).map_err(Error::Write)
    }

    /// The newc archive gzip-compressed at level 9 with a fixed header
    /// (mtime 0, no file name, OS byte Unix).
    pub fn to_cpio_gz(&self) -> Result<Vec<u8>> {
        let gz = GzBuilder::new()
            .mtime(0)
            .operating_system(GZIP_OS_UNIX)
            .write(Vec::new(), Compression::best());
        let gz = self.write_cpio(gz)?;
        gz.finish().map_err(Error::Write)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    /// (name, mode, rdev major, rdev minor, data, ino, nlink, mtime, uid)
    type Row = (String, u32, u32, u32, Vec<u8>, u32, u32, u32, u32);

    pub(crate) fn read_back(mut raw: &[u8]) -> Vec<Row> {
        let mut rows = Vec::new();
        loop {
            let mut reader = cpio::newc::Reader::new(raw).unwrap();
            let e = reader.entry().clone();
            if e.is_trailer() {
                break;
            }
            let mut data = Vec::new();
            reader.read_to_end(&mut data).unwrap();
            rows.push((
                e.name().to_string(),
                e.mode(),
                e.rdev_major(),
                e.rdev_minor(),
                data,
                e.ino(),
                e.nlink(),
                e.mtime(),
                e.uid(),
            ));
            raw = reader.finish().unwrap();
        }
        rows
    }

    fn sample() -> Archive {
        let mut a = Archive::new();
        a.add_file("/usr/bin/tool", b"#tool".to_vec(), 0o755)
            .unwrap();
        a.add_dir("/tmp", 0o1777).unwrap();
        a.add_char_device("/dev/console", 0o600, 5, 1).unwrap();
        a.add_block_device("dev/vda", 0o660, 254, 0).unwrap();
        a.add_symlink("/bin", "usr/bin").unwrap();
        a.add_file("/init", vec![1, 2, 3], 0o755).unwrap();
        a
    }

    #[test]
    fn entries_sorted_parents_created_metadata_fixed() {
        let raw = sample().write_cpio(Vec::new()).unwrap();
        let rows = read_back(&raw);
        let names: Vec<_> = rows.iter().map(|r| r.0.as_str()).collect();
        assert_eq!(
            names,
            [
                "bin",
                "dev",
                "dev/console",
                "dev/vda",
                "init",
                "tmp",
                "usr",
                "usr/bin",
                "usr/bin/tool"
            ]
        );
        let by_name = |n: &str| rows.iter().find(|r| r.0 == n).unwrap().clone();
        assert_eq!(by_name("bin").1, 0o120777);
        assert_eq!(by_name("bin").4, b"usr/bin");
        assert_eq!(by_name("dev").1, 0o040755);
        assert_eq!(by_name("dev/console").1, 0o020600);
        assert_eq!((by_name("dev/console").2, by_name("dev/console").3), (5, 1));
        assert_eq!(by_name("dev/vda").1, 0o060660);
        assert_eq!((by_name("dev/vda").2, by_name("dev/vda").3), (254, 0));
        assert_eq!(by_name("init").1, 0o100755);
        assert_eq!(by_name("init").4, [1, 2, 3]);
        assert_eq!(by_name("tmp").1, 0o041777);
        for (index, row) in rows.iter().enumerate() {
            assert_eq!(row.5, index as u32 + 1, "inode of {}", row.0);
            assert_eq!(row.7, 0, "mtime of {}", row.0);
            assert_eq!(row.8, 0, "uid of {}", row.0);
            let want_links = if row.1 & 0o170000 == 0o040000 { 2 } else { 1 };
            assert_eq!(row.6, want_links, "nlink of {}", row.0);
        }
    }

    #[test]
    fn same_entries_in_any_order_give_identical_bytes() {
        let mut b = Archive::new();
        b.add_file("/init", vec![1, 2, 3], 0o755).unwrap();
        b.add_symlink("/bin", "usr/bin").unwrap();
        b.add_block_device("/dev/vda", 0o660, 254, 0).unwrap();
        b.add_char_device("/dev/console", 0o600, 5, 1).unwrap();
        b.add_dir("/tmp", 0o1777).unwrap();
        b.add_file("/usr/bin/tool", b"#tool".to_vec(), 0o755)
            .unwrap();
        assert_eq!(sample().to_cpio_gz().unwrap(), b.to_cpio_gz().unwrap());
    }

    #[test]
    fn gzip_header_is_fixed() {
        let gz = sample().to_cpio_gz().unwrap();
        // magic, deflate, no flags (so no file name), mtime 0, xfl 2 (best), OS 3
        assert_eq!(&gz[..10], &[0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 2, 3]);
        let mut raw = Vec::new();
        flate2::read::GzDecoder::new(&gz[..])
            .read_to_end(&mut raw)
            .unwrap();
        assert_eq!(raw, sample().write_cpio(Vec::new()).unwrap());
    }

    #[test]
    fn explicit_dir_after_implicit_parent_sets_its_mode() {
        let mut a = Archive::new();
        a.add_file("/tmp/x", vec![], 0o644).unwrap();
        a.add_dir("/tmp", 0o1777).unwrap();
        let rows = read_back(&a.write_cpio(Vec::new()).unwrap());
        assert_eq!(rows[0].0, "tmp");
        assert_eq!(rows[0].1, 0o041777);
    }

    #[test]
    fn bad_paths_and_modes_and_conflicts_are_refused() {
        let mut a = Archive::new();
        for bad in ["", "/", "a//b", "a/./b", "../etc", "a/.."] {
            let err = a.add_dir(bad, 0o755).unwrap_err();
            assert!(matches!(err, Error::InvalidPath { .. }), "{bad:?}: {err}");
        }
        let err = a.add_file("/x", vec![], 0o100644).unwrap_err();
        assert!(matches!(err, Error::InvalidMode { .. }), "{err}");

        a.add_file("/init", vec![], 0o755).unwrap();
        let err = a.add_file("init", vec![1], 0o755).unwrap_err();
        assert!(matches!(err, Error::DuplicatePath { .. }), "{err}");
        let err = a.add_file("/init/x", vec![], 0o644).unwrap_err();
        assert!(matches!(err, Error::ParentNotDirectory { .. }), "{err}");

        a.add_dir("/proc", 0o555).unwrap();
        a.add_dir("/proc", 0o555).unwrap();
        let err = a.add_dir("/proc", 0o755).unwrap_err();
        assert!(matches!(err, Error::DuplicatePath { .. }), "{err}");

        a.add_file("/lib/x", vec![], 0o644).unwrap();
        let err = a.add_symlink("/lib", "usr/lib").unwrap_err();
        assert!(matches!(err, Error::ParentNotDirectory { .. }), "{err}");
    }

    #[test]
    fn file_sizes_not_multiple_of_four_keep_alignment() {
        let mut a = Archive::new();
        for n in 0..9u8 {
            a.add_file(&format!("f{n}"), vec![n; usize::from(n)], 0o644)
                .unwrap();
        }
        let rows = read_back(&a.write_cpio(Vec::new()).unwrap());
        for (n, row) in rows.iter().enumerate() {
            assert_eq!(row.4, vec![n as u8; n]);
        }
    }
}

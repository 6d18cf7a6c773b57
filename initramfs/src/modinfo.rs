//! Reading a kernel module's `.modinfo` section: name, dependencies, soft
//! dependencies, aliases and the kernel it was built for.

use goblin::elf::Elf;

/// Module names treat `-` and `_` as the same character (as modprobe does);
/// this is the one spelling used for comparisons.
pub fn normalize(name: &str) -> String {
    name.replace('-', "_")
}

/// What the loader needs from a module's `.modinfo`. Names are normalized.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ModInfo {
    /// `name=`, absent in very old modules.
    pub name: Option<String>,
    /// `depends=`: modules that must be loaded first.
    pub depends: Vec<String>,
    /// `softdep=pre:` entries: module names or aliases wanted before this one.
    pub softdep_pre: Vec<String>,
    /// `softdep=post:` entries, kept for reporting only.
    pub softdep_post: Vec<String>,
    /// `alias=` entries (not normalized: aliases are patterns, not names).
    pub aliases: Vec<String>,
    /// `vermagic=`, whose first word is the kernel release.
    pub vermagic: Option<String>,
}

impl ModInfo {
    /// Parses the raw section: NUL-separated `key=value` strings.
    pub fn parse(section: &[u8]) -> Self {
        let mut info = ModInfo::default();
        for item in section.split(|&b| b == 0) {
            let item = String::from_utf8_lossy(item);
            let Some((key, value)) = item.split_once('=') else {
                continue;
            };
            match key {
                "name" => info.name = Some(normalize(value)),
                "depends" => info.depends.extend(
                    value
                        .split(',')
                        .map(str::trim)
                        .filter(|d| !d.is_empty())
                        .map(normalize),
                ),
                "softdep" => parse_softdep(value, &mut info),
                "alias" => info.aliases.push(value.to_string()),
                "vermagic" => info.vermagic = Some(value.to_string()),
                _ => {}
            }
        }
        info
    }

    /// Reads the `.modinfo` section of a module ELF file.
    pub fn from_elf(bytes: &[u8]) -> Result<Self, String> {
        let elf = Elf::parse(bytes).map_err(|e| format!("not an ELF file ({e})"))?;
        let section = elf
            .section_headers
            .iter()
            .find(|sh| elf.shdr_strtab.get_at(sh.sh_name) == Some(".modinfo"))
            .ok_or_else(|| "no .modinfo section".to_string())?;
        let data = section
            .file_range()
            .and_then(|range| bytes.get(range))
            .ok_or_else(|| "the .modinfo section lies outside the file".to_string())?;
        Ok(Self::parse(data))
    }

    /// The kernel release this module was built for (first word of vermagic).
    pub fn kernel_release(&self) -> Option<&str> {
        self.vermagic.as_deref()?.split_whitespace().next()
    }
}

/// `softdep=pre: a b post: c` (several lines may appear).
fn parse_softdep(value: &str, info: &mut ModInfo) {
    enum Part {
        None,
        Pre,
        Post,
    }
    let mut part = Part::None;
    for word in value.split_whitespace() {
        match word {
            "pre:" => part = Part::Pre,
            "post:" => part = Part::Post,
            name => match part {
                Part::Pre => info.softdep_pre.push(normalize(name)),
                Part::Post => info.softdep_post.push(normalize(name)),
                Part::None => {}
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_keys_and_normalizes_names() {
        let raw = b"\0\0license=GPL\0depends=md-mod,crc16\0name=raid1\0alias=md-personality-3\0\
                    alias=md-raid1\0vermagic=6.1.0-56-amd64 SMP preempt mod_unload modversions \0\
                    softdep=pre: crypto-crc32c\0\0";
        let info = ModInfo::parse(raw);
        assert_eq!(info.name.as_deref(), Some("raid1"));
        assert_eq!(info.depends, ["md_mod", "crc16"]);
        assert_eq!(info.softdep_pre, ["crypto_crc32c"]);
        assert!(info.softdep_post.is_empty());
        assert_eq!(info.aliases, ["md-personality-3", "md-raid1"]);
        assert_eq!(info.kernel_release(), Some("6.1.0-56-amd64"));
    }

    #[test]
    fn empty_depends_gives_no_dependency() {
        let info = ModInfo::parse(b"depends=\0name=md_mod\0");
        assert!(info.depends.is_empty());
    }

    #[test]
    fn softdep_with_pre_and_post_parts() {
        let info = ModInfo::parse(b"softdep=pre: a-b c post: d\0softdep=pre: e\0");
        assert_eq!(info.softdep_pre, ["a_b", "c", "e"]);
        assert_eq!(info.softdep_post, ["d"]);
    }

    #[test]
    fn non_module_elf_is_refused() {
        let bytes = std::fs::read("/bin/true").expect("/bin/true exists on Debian (coreutils)");
        let err = ModInfo::from_elf(&bytes).unwrap_err();
        assert!(err.contains("no .modinfo"), "{err}");
        let err = ModInfo::from_elf(b"not an elf at all").unwrap_err();
        assert!(err.contains("not an ELF"), "{err}");
    }
}

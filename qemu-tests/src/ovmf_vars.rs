//! OVMF's variable store file (`OVMF_VARS*.fd`, QEMU's second pflash unit), read on the
//! host: the live UEFI variables a firmware wrote, and from them its boot entries
//! (`Boot####`, `BootOrder`, decoded by `rescue::formats::efi`).
//!
//! The layout is EDK2's (`MdeModulePkg/Include/Guid/VariableFormat.h`):
//! - a firmware volume header: `_FVH` at byte 40, its `HeaderLength` (u16) at byte 48;
//! - at `HeaderLength`, the variable store header (28 bytes): the store's GUID (the
//!   authenticated-variable GUID in every OVMF build since 2015, the plain variable GUID
//!   before), its `Size` (u32, header included), `Format` 0x5A and `State` 0xFE (healthy);
//! - then variables, each at a 4-byte aligned offset: `StartId` 0x55AA, `State` (u8),
//!   a reserved byte, `Attributes` (u32); an authenticated header then has
//!   `MonotonicCount` (u64), a 16-byte `EFI_TIME` and `PubKeyIndex` (u32); both then have
//!   `NameSize`, `DataSize` (u32) and the vendor GUID; then the NUL-terminated UTF-16 name
//!   (`NameSize` bytes) and the data (no padding between them on x86).
//!
//! `State` is written on flash by clearing bits: 0x7F once the header is written, 0x3F
//! (`VAR_ADDED`) once the whole variable is, then bit 0 cleared while it is being
//! replaced (`VAR_IN_DELETED_TRANSITION`, 0xFE, so 0x3E) and bit 1 once it is obsolete
//! (`VAR_DELETED`, 0xFD, so 0x3C or 0x3D). An update appends the new copy and only then
//! deletes the old one, so a store holds several copies of a variable: only the one whose
//! state is exactly `VAR_ADDED` is live. (EDK2 falls back to an in-transition copy only
//! when a power cut left no added one; a store QEMU wrote and closed never needs that.)

use anyhow::{bail, ensure, Context};
use rescue::formats::efi::{decode_boot_order, LoadOption, Node, GLOBAL_VARIABLE};
use rescue::formats::gpt::Guid;
use std::path::Path;

/// `EFI_AUTHENTICATED_VARIABLE_GUID`: the store signature of OVMF's variable store.
pub const AUTHENTICATED_VARIABLE_GUID: &str = "AAF32C78-947B-439A-A180-2E144EC37792";
/// `EFI_VARIABLE_GUID`: a store of plain (not authenticated) variable headers.
pub const VARIABLE_GUID: &str = "DDCF3616-3275-4164-98B6-FE85707FFE7D";

const FV_SIGNATURE_AT: usize = 40;
const FV_HEADER_LENGTH_AT: usize = 48;
const STORE_HEADER_LEN: usize = 28;
const STORE_FORMATTED: u8 = 0x5A;
const STORE_HEALTHY: u8 = 0xFE;
const START_ID: u16 = 0x55AA;
const VAR_ADDED: u8 = 0x3F;
const AUTH_HEADER_LEN: usize = 60;
const PLAIN_HEADER_LEN: usize = 32;

/// One live variable.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Variable {
    pub name: String,
    pub vendor: Guid,
    pub attributes: u32,
    pub data: Vec<u8>,
}

/// The firmware's boot configuration: `BootOrder` and every `Boot####` entry.
#[derive(Clone, Debug, Default)]
pub struct BootConfig {
    /// Empty when there is no `BootOrder`.
    pub order: Vec<u16>,
    /// In the store's order.
    pub entries: Vec<(u16, LoadOption)>,
}

/// The device path of an entry booting `loader` from a GPT partition, as efibootmgr
/// writes it: `HD(number,GPT,<unique GUID>,start,size)/File(loader)`.
pub fn partition_path(p: &rescue::formats::gpt::GptPartition, loader: &str) -> Vec<Node> {
    vec![
        Node::HardDrive {
            number: p.number,
            start_lba: p.first_lba.0,
            size_lbas: p.size_lbas(),
            partition_guid: p.unique_guid,
        },
        Node::FilePath(loader.into()),
    ]
}

impl BootConfig {
    /// The number of the entry booting `loader` from partition `p`.
    pub fn booting(&self, p: &rescue::formats::gpt::GptPartition, loader: &str) -> Option<u16> {
        let want = partition_path(p, loader);
        self.entries
            .iter()
            .find(|(_, e)| e.path == want)
            .map(|(n, _)| *n)
    }

    pub fn entry(&self, number: u16) -> Option<&LoadOption> {
        self.entries
            .iter()
            .find(|(n, _)| *n == number)
            .map(|(_, e)| e)
    }

    /// The entry `BootOrder` names first.
    pub fn first(&self) -> Option<(u16, &LoadOption)> {
        let n = *self.order.first()?;
        self.entry(n).map(|e| (n, e))
    }

    /// One line per entry in `BootOrder`'s order then the rest, as `efibootmgr -v`
    /// shows them (`Boot0001* XenServer HD(...)/File(...)`), for failure messages.
    pub fn lines(&self) -> Vec<String> {
        let mut numbers = self.order.clone();
        numbers.extend(
            self.entries
                .iter()
                .map(|(n, _)| *n)
                .filter(|n| !self.order.contains(n)),
        );
        let mut out = vec![format!("BootOrder: {:04X?}", self.order)];
        out.extend(numbers.iter().filter_map(|n| {
            let e = self.entry(*n)?;
            let active = if e.attributes & 1 != 0 { "*" } else { " " };
            Some(format!(
                "Boot{n:04X}{active} {}\t{}",
                e.description,
                e.path_string()
            ))
        }));
        out
    }
}

fn u16_at(b: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_le_bytes(b.get(at..at + 2)?.try_into().ok()?))
}

fn u32_at(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_le_bytes(b.get(at..at + 4)?.try_into().ok()?))
}

fn u64_at(b: &[u8], at: usize) -> Option<u64> {
    Some(u64::from_le_bytes(b.get(at..at + 8)?.try_into().ok()?))
}

fn guid_at(b: &[u8], at: usize) -> Option<Guid> {
    Some(Guid(b.get(at..at + 16)?.try_into().ok()?))
}

/// The live variables of a VARS file's contents.
pub fn parse(b: &[u8]) -> anyhow::Result<Vec<Variable>> {
    ensure!(
        b.get(FV_SIGNATURE_AT..FV_SIGNATURE_AT + 4) == Some(b"_FVH"),
        "no firmware volume header (_FVH at byte {FV_SIGNATURE_AT})"
    );
    let fv_len = u64_at(b, 32).context("short firmware volume header")?;
    let store = usize::from(u16_at(b, FV_HEADER_LENGTH_AT).context("short FV header")?);
    let signature = guid_at(b, store).context("no variable store header")?;
    let auth = if signature == Guid::parse(AUTHENTICATED_VARIABLE_GUID).unwrap() {
        true
    } else if signature == Guid::parse(VARIABLE_GUID).unwrap() {
        false
    } else {
        bail!("variable store at byte {store} has signature {signature}, not a variable store");
    };
    let size = u32_at(b, store + 16).context("short variable store header")? as usize;
    let (format, state) = (b[store + 20], b[store + 21]);
    ensure!(
        format == STORE_FORMATTED && state == STORE_HEALTHY,
        "variable store is not formatted and healthy (format {format:#x}, state {state:#x})"
    );
    // The store ends where its header says, inside the volume and the file.
    let end = (store + size).min(b.len()).min(fv_len as usize);
    let header_len = if auth {
        AUTH_HEADER_LEN
    } else {
        PLAIN_HEADER_LEN
    };
    let mut vars = Vec::new();
    let mut at = store + STORE_HEADER_LEN;
    loop {
        at = at.next_multiple_of(4);
        if at + header_len > end || u16_at(b, at) != Some(START_ID) {
            break;
        }
        let state = b[at + 2];
        let attributes = u32_at(b, at + 4).unwrap_or_default();
        let sizes = at + header_len - 24;
        let name_size = u32_at(b, sizes).unwrap_or_default() as usize;
        let data_size = u32_at(b, sizes + 4).unwrap_or_default() as usize;
        let vendor = guid_at(b, sizes + 8).unwrap_or_default();
        let name_at = at + header_len;
        let data_at = name_at.saturating_add(name_size);
        let next = data_at.saturating_add(data_size);
        if next > end {
            // A header written by a write that never finished (VAR_HEADER_VALID_ONLY)
            // ends the store; anything else this big is a corrupt store.
            ensure!(
                state != VAR_ADDED,
                "variable at byte {at} ({name_size} + {data_size} bytes) runs past the store's end {end}"
            );
            break;
        }
        if state == VAR_ADDED {
            ensure!(
                name_size.is_multiple_of(2),
                "variable at byte {at}: odd name size {name_size}"
            );
            let units: Vec<u16> = b[name_at..data_at]
                .chunks_exact(2)
                .map(|c| u16::from_le_bytes([c[0], c[1]]))
                .take_while(|&u| u != 0)
                .collect();
            let name = String::from_utf16(&units)
                .with_context(|| format!("variable at byte {at}: name is not UTF-16"))?;
            vars.push(Variable {
                name,
                vendor,
                attributes,
                data: b[data_at..next].to_vec(),
            });
        }
        at = next;
    }
    Ok(vars)
}

/// The live variables of a VARS file.
pub fn read(path: &Path) -> anyhow::Result<Vec<Variable>> {
    let b = std::fs::read(path).with_context(|| format!("read {}", path.display()))?;
    parse(&b).with_context(|| format!("{} is not an OVMF variable store", path.display()))
}

/// `BootOrder` and the `Boot####` entries among `vars` (global vendor GUID only).
pub fn boot_config(vars: &[Variable]) -> anyhow::Result<BootConfig> {
    let global = Guid::parse(GLOBAL_VARIABLE).unwrap();
    let mut cfg = BootConfig::default();
    for v in vars.iter().filter(|v| v.vendor == global) {
        if v.name == "BootOrder" {
            cfg.order = decode_boot_order(&v.data);
        } else if let Some(hex) = v.name.strip_prefix("Boot") {
            if hex.len() != 4 || !hex.bytes().all(|c| c.is_ascii_hexdigit()) {
                continue; // BootNext, BootCurrent, BootOptionSupport
            }
            let n = u16::from_str_radix(hex, 16)?;
            let option = LoadOption::decode(&v.data)
                .with_context(|| format!("{} is not a load option", v.name))?;
            cfg.entries.push((n, option));
        }
    }
    Ok(cfg)
}

/// The boot configuration stored in a VARS file.
pub fn read_boot_config(path: &Path) -> anyhow::Result<BootConfig> {
    boot_config(&read(path)?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::vm::OVMF_VARS;
    use rescue::formats::efi::Node;

    /// The empty store Debian's `ovmf` ships: healthy, and no boot entry at all.
    #[test]
    fn the_shipped_empty_store_has_no_boot_entries() {
        if !Path::new(OVMF_VARS).is_file() {
            eprintln!("skipped: {OVMF_VARS} missing (apt-get install ovmf)");
            return;
        }
        let vars = read(Path::new(OVMF_VARS)).unwrap();
        let cfg = boot_config(&vars).unwrap();
        assert!(cfg.entries.is_empty(), "{:?}", cfg.lines());
        assert!(cfg.order.is_empty());
    }

    /// A volume like OVMF's: FV header (72 bytes), store header, then `vars` written as
    /// (state, name, data), each 4-byte aligned.
    fn store(vars: &[(u8, &str, &[u8])]) -> Vec<u8> {
        let mut b = vec![0xFFu8; 0x4000];
        b[..16].fill(0);
        b[32..40].copy_from_slice(&0x4000u64.to_le_bytes());
        b[40..44].copy_from_slice(b"_FVH");
        b[48..50].copy_from_slice(&72u16.to_le_bytes());
        let s = 72;
        b[s..s + 16].copy_from_slice(&Guid::parse(AUTHENTICATED_VARIABLE_GUID).unwrap().0);
        b[s + 16..s + 20].copy_from_slice(&(0x4000u32 - 72).to_le_bytes());
        b[s + 20] = STORE_FORMATTED;
        b[s + 21] = STORE_HEALTHY;
        b[s + 22..s + 28].fill(0);
        let mut at = s + STORE_HEADER_LEN;
        for (state, name, data) in vars {
            at = at.next_multiple_of(4);
            let name: Vec<u8> = name
                .encode_utf16()
                .chain([0])
                .flat_map(u16::to_le_bytes)
                .collect();
            let mut h = Vec::new();
            h.extend_from_slice(&START_ID.to_le_bytes());
            h.push(*state);
            h.push(0);
            h.extend_from_slice(&7u32.to_le_bytes());
            h.extend_from_slice(&[0; 8 + 16 + 4]);
            h.extend_from_slice(&(name.len() as u32).to_le_bytes());
            h.extend_from_slice(&(data.len() as u32).to_le_bytes());
            h.extend_from_slice(&Guid::parse(GLOBAL_VARIABLE).unwrap().0);
            assert_eq!(h.len(), AUTH_HEADER_LEN);
            for part in [&h[..], &name[..], data] {
                b[at..at + part.len()].copy_from_slice(part);
                at += part.len();
            }
        }
        b
    }

    fn option(file: &str) -> Vec<u8> {
        LoadOption::for_partition(
            "XenServer",
            4,
            0x8_0800,
            0x10_0000,
            Guid::parse("0FC63DAF-8483-4772-8E79-3D69D8477DE4").unwrap(),
            file,
        )
        .unwrap()
        .encode()
    }

    #[test]
    fn only_added_copies_are_live() {
        let old = option("\\EFI\\old\\grubx64.efi");
        let new = option("\\EFI\\xenserver\\grubx64.efi");
        let b = store(&[
            (0x3C, "Boot0001", &old),     // deleted
            (0x3E, "BootOrder", &[1, 0]), // being replaced
            (0x3F, "Boot0001", &new),     // odd sizes: alignment is exercised
            (0x3F, "BootOrder", &[1, 0, 0, 0]),
            (0x3F, "Boot0000", &option("\\EFI\\BOOT\\BOOTX64.EFI")),
            (0x7F, "Boot0002", &old), // header only: never finished
        ]);
        let vars = parse(&b).unwrap();
        let names: Vec<&str> = vars.iter().map(|v| v.name.as_str()).collect();
        assert_eq!(names, ["Boot0001", "BootOrder", "Boot0000"]);
        let cfg = boot_config(&vars).unwrap();
        assert_eq!(cfg.order, [1, 0]);
        let (n, first) = cfg.first().unwrap();
        assert_eq!(n, 1);
        assert_eq!(
            first.path.last(),
            Some(&Node::FilePath("\\EFI\\xenserver\\grubx64.efi".into()))
        );
        assert_eq!(cfg.entries.len(), 2, "{:?}", cfg.lines());
    }

    #[test]
    fn not_a_store_is_an_error() {
        assert!(parse(&[0; 4096]).is_err());
        let mut b = store(&[]);
        b[72 + 20] = 0xFF; // not formatted
        assert!(parse(&b).is_err());
        let mut b = store(&[(0x3F, "Boot0001", &option("\\EFI\\x.efi"))]);
        let at = 72 + STORE_HEADER_LEN + AUTH_HEADER_LEN - 20;
        b[at..at + 4].copy_from_slice(&0x10_0000u32.to_le_bytes()); // data past the end
        assert!(parse(&b).unwrap_err().to_string().contains("past"));
    }
}

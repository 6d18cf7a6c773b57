//! UEFI boot entries as the firmware stores them (UEFI spec 2.10, §3.1.3 and §10.3):
//! an `EFI_LOAD_OPTION` (`Boot####`) with its device path (a GPT partition `HD(...)` then
//! a `File(\EFI\...)`), `BootOrder`, and the efivarfs file form (4 bytes of attributes,
//! then the data). Pure: the rescue writes these through efivarfs, the tests read them
//! back from a firmware's variable store.

use super::gpt::Guid;
use std::fmt;

/// `EFI_GLOBAL_VARIABLE`: the vendor GUID of `Boot####` and `BootOrder`.
pub const GLOBAL_VARIABLE: &str = "8BE4DF61-93CA-11D2-AA0D-00E098032B8C";
/// Non-volatile, boot-service and runtime access: what efibootmgr writes.
pub const ATTRS_NV_BS_RT: u32 = 0x7;
/// `LOAD_OPTION_ACTIVE`.
pub const LOAD_OPTION_ACTIVE: u32 = 0x1;

#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum EfiError {
    #[error("load option is {0} bytes, shorter than its header")]
    Short(usize),
    #[error("load option's description is not NUL-terminated UTF-16")]
    Description,
    #[error("device path node at byte {0} is truncated or has length {1}")]
    Node(usize, usize),
    #[error("device path has no end node")]
    NoEnd,
    #[error("file path {0:?} is not a path on the ESP (\\EFI\\...)")]
    BadFilePath(String),
}

/// One device path node this code builds or reads; others are kept as raw bytes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Node {
    /// `HD(number, GPT, partition GUID, start LBA, size in LBAs)`.
    HardDrive {
        number: u32,
        start_lba: u64,
        size_lbas: u64,
        partition_guid: Guid,
    },
    /// `File(\EFI\xenserver\grubx64.efi)`.
    FilePath(String),
    Other {
        kind: u8,
        subtype: u8,
        data: Vec<u8>,
    },
}

impl fmt::Display for Node {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Node::HardDrive {
                number,
                start_lba,
                size_lbas,
                partition_guid,
            } => write!(
                f,
                "HD({number},GPT,{partition_guid},{start_lba:#x},{size_lbas:#x})"
            ),
            Node::FilePath(p) => write!(f, "File({p})"),
            Node::Other { kind, subtype, .. } => write!(f, "Node({kind:#x},{subtype:#x})"),
        }
    }
}

/// An `EFI_LOAD_OPTION`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LoadOption {
    pub attributes: u32,
    pub description: String,
    pub path: Vec<Node>,
    pub optional_data: Vec<u8>,
}

impl LoadOption {
    /// An active entry booting `file` (`\EFI\xenserver\grubx64.efi`) from GPT partition
    /// `number` (`start_lba`, `size_lbas`, its unique GUID) — what `efibootmgr -c -d <disk>
    /// -p <number> -l <file> -L <description>` writes.
    pub fn for_partition(
        description: &str,
        number: u32,
        start_lba: u64,
        size_lbas: u64,
        partition_guid: Guid,
        file: &str,
    ) -> Result<LoadOption, EfiError> {
        if !file.starts_with('\\') || file.contains('/') {
            return Err(EfiError::BadFilePath(file.into()));
        }
        Ok(LoadOption {
            attributes: LOAD_OPTION_ACTIVE,
            description: description.into(),
            path: vec![
                Node::HardDrive {
                    number,
                    start_lba,
                    size_lbas,
                    partition_guid,
                },
                Node::FilePath(file.into()),
            ],
            optional_data: Vec::new(),
        })
    }

    pub fn encode(&self) -> Vec<u8> {
        let mut path = Vec::new();
        for n in &self.path {
            encode_node(n, &mut path);
        }
        path.extend_from_slice(&[0x7f, 0xff, 4, 0]); // end of the whole path
        let mut out = Vec::new();
        out.extend_from_slice(&self.attributes.to_le_bytes());
        out.extend_from_slice(&(path.len() as u16).to_le_bytes());
        out.extend(utf16z(&self.description));
        out.extend(path);
        out.extend_from_slice(&self.optional_data);
        out
    }

    pub fn decode(b: &[u8]) -> Result<LoadOption, EfiError> {
        if b.len() < 6 {
            return Err(EfiError::Short(b.len()));
        }
        let attributes = u32::from_le_bytes([b[0], b[1], b[2], b[3]]);
        let path_len = usize::from(u16::from_le_bytes([b[4], b[5]]));
        let mut units = Vec::new();
        let mut at = 6;
        loop {
            let Some(pair) = b.get(at..at + 2) else {
                return Err(EfiError::Description);
            };
            at += 2;
            let u = u16::from_le_bytes([pair[0], pair[1]]);
            if u == 0 {
                break;
            }
            units.push(u);
        }
        let description = String::from_utf16(&units).map_err(|_| EfiError::Description)?;
        let path_bytes = b
            .get(at..at + path_len)
            .ok_or(EfiError::Node(at, path_len))?;
        let path = decode_path(path_bytes, at)?;
        Ok(LoadOption {
            attributes,
            description,
            path,
            optional_data: b[at + path_len..].to_vec(),
        })
    }

    /// `HD(...)/File(...)`, as efibootmgr -v prints it.
    pub fn path_string(&self) -> String {
        self.path
            .iter()
            .map(Node::to_string)
            .collect::<Vec<_>>()
            .join("/")
    }
}

fn utf16z(s: &str) -> Vec<u8> {
    s.encode_utf16()
        .chain(std::iter::once(0))
        .flat_map(u16::to_le_bytes)
        .collect()
}

fn encode_node(n: &Node, out: &mut Vec<u8>) {
    let (kind, subtype, data) = match n {
        Node::HardDrive {
            number,
            start_lba,
            size_lbas,
            partition_guid,
        } => {
            let mut d = Vec::with_capacity(38);
            d.extend_from_slice(&number.to_le_bytes());
            d.extend_from_slice(&start_lba.to_le_bytes());
            d.extend_from_slice(&size_lbas.to_le_bytes());
            d.extend_from_slice(&partition_guid.0);
            d.push(0x02); // partition format: GPT
            d.push(0x02); // signature type: GUID
            (0x04, 0x01, d)
        }
        Node::FilePath(p) => (0x04, 0x04, utf16z(p)),
        Node::Other {
            kind,
            subtype,
            data,
        } => (*kind, *subtype, data.clone()),
    };
    out.push(kind);
    out.push(subtype);
    out.extend_from_slice(&((data.len() + 4) as u16).to_le_bytes());
    out.extend(data);
}

/// The nodes of the first device path instance, up to its end node.
fn decode_path(b: &[u8], base: usize) -> Result<Vec<Node>, EfiError> {
    let mut nodes = Vec::new();
    let mut at = 0;
    loop {
        let Some(h) = b.get(at..at + 4) else {
            return Err(EfiError::NoEnd);
        };
        let (kind, subtype) = (h[0], h[1]);
        let len = usize::from(u16::from_le_bytes([h[2], h[3]]));
        if len < 4 || at + len > b.len() {
            return Err(EfiError::Node(base + at, len));
        }
        let data = &b[at + 4..at + len];
        at += len;
        match (kind, subtype) {
            (0x7f, 0xff | 0x01) => return Ok(nodes),
            (0x04, 0x01) if data.len() == 38 && data[36] == 0x02 && data[37] == 0x02 => {
                let u64_at = |o: usize| {
                    let mut x = [0u8; 8];
                    x.copy_from_slice(&data[o..o + 8]);
                    u64::from_le_bytes(x)
                };
                let mut guid = [0u8; 16];
                guid.copy_from_slice(&data[20..36]);
                nodes.push(Node::HardDrive {
                    number: u32::from_le_bytes([data[0], data[1], data[2], data[3]]),
                    start_lba: u64_at(4),
                    size_lbas: u64_at(12),
                    partition_guid: Guid(guid),
                });
            }
            (0x04, 0x04) if data.len().is_multiple_of(2) => {
                let units: Vec<u16> = data
                    .chunks_exact(2)
                    .map(|c| u16::from_le_bytes([c[0], c[1]]))
                    .take_while(|&u| u != 0)
                    .collect();
                let p =
                    String::from_utf16(&units).map_err(|_| EfiError::Node(base + at - len, len))?;
                nodes.push(Node::FilePath(p));
            }
            _ => nodes.push(Node::Other {
                kind,
                subtype,
                data: data.to_vec(),
            }),
        }
    }
}

/// `BootOrder`'s data: entry numbers as little-endian u16.
pub fn encode_boot_order(order: &[u16]) -> Vec<u8> {
    order.iter().flat_map(|n| n.to_le_bytes()).collect()
}

pub fn decode_boot_order(b: &[u8]) -> Vec<u16> {
    b.chunks_exact(2)
        .map(|c| u16::from_le_bytes([c[0], c[1]]))
        .collect()
}

/// The file name of a global variable in efivarfs (`Boot0003-8be4df61-...`).
pub fn efivarfs_name(variable: &str) -> String {
    format!("{variable}-{}", GLOBAL_VARIABLE.to_ascii_lowercase())
}

/// What is written to an efivarfs file: the attributes, then the data.
pub fn efivarfs_content(attributes: u32, data: &[u8]) -> Vec<u8> {
    let mut v = attributes.to_le_bytes().to_vec();
    v.extend_from_slice(data);
    v
}

/// The lowest `Boot####` number not in `used`.
pub fn free_boot_number(used: &[u16]) -> Option<u16> {
    (0..=u16::MAX).find(|n| !used.contains(n))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry() -> LoadOption {
        LoadOption::for_partition(
            "XenServer (disk 2)",
            4,
            0x800,
            0x100000,
            Guid::parse("0FC63DAF-8483-4772-8E79-3D69D8477DE4").unwrap(),
            "\\EFI\\xenserver\\grubx64.efi",
        )
        .unwrap()
    }

    #[test]
    fn a_partition_entry_has_the_spec_layout_and_reads_back() {
        let e = entry();
        let b = e.encode();
        // Header: attributes, then the device path's length (HD 42 + File + End 4).
        assert_eq!(&b[0..4], &[1, 0, 0, 0]);
        let file_node = 4 + 2 * ("\\EFI\\xenserver\\grubx64.efi".len() + 1);
        assert_eq!(
            usize::from(u16::from_le_bytes([b[4], b[5]])),
            42 + file_node + 4
        );
        let desc_end = 6 + 2 * ("XenServer (disk 2)".len() + 1);
        // HD node: type 4, subtype 1, length 42, partition 4, start, size, GUID, GPT, GUID.
        assert_eq!(&b[desc_end..desc_end + 8], &[4, 1, 42, 0, 4, 0, 0, 0]);
        assert_eq!(&b[desc_end + 8..desc_end + 16], &0x800u64.to_le_bytes());
        assert_eq!(&b[desc_end + 40..desc_end + 42], &[2, 2]);
        assert_eq!(&b[b.len() - 4..], &[0x7f, 0xff, 4, 0]);
        assert_eq!(LoadOption::decode(&b).unwrap(), e);
        assert_eq!(
            e.path_string(),
            "HD(4,GPT,0FC63DAF-8483-4772-8E79-3D69D8477DE4,0x800,0x100000)/File(\\EFI\\xenserver\\grubx64.efi)"
        );
    }

    #[test]
    fn unknown_nodes_and_optional_data_survive_a_round_trip() {
        let mut e = entry();
        e.path.insert(
            0,
            Node::Other {
                kind: 0x02,
                subtype: 0x01,
                data: vec![0xd0, 0x41, 0x03, 0x0a, 0, 0, 0, 0],
            },
        );
        e.optional_data = b"RC".to_vec();
        assert_eq!(LoadOption::decode(&e.encode()).unwrap(), e);
    }

    #[test]
    fn damaged_options_are_errors_not_panics() {
        let b = entry().encode();
        for cut in 0..b.len() - 2 {
            // Every truncation either fails or (past the path) loses optional data only.
            if let Ok(d) = LoadOption::decode(&b[..cut]) {
                panic!("{cut} bytes decoded as {d:?}");
            }
        }
        let mut zero_len = b.clone();
        let desc_end = 6 + 2 * ("XenServer (disk 2)".len() + 1);
        zero_len[desc_end + 2] = 0;
        zero_len[desc_end + 3] = 0;
        assert!(matches!(
            LoadOption::decode(&zero_len),
            Err(EfiError::Node(_, 0))
        ));
        assert!(LoadOption::for_partition("x", 1, 1, 1, Guid::default(), "EFI/boot.efi").is_err());
    }

    #[test]
    fn boot_order_and_efivarfs_forms() {
        assert_eq!(encode_boot_order(&[1, 0x10, 0]), [1, 0, 0x10, 0, 0, 0]);
        assert_eq!(decode_boot_order(&[1, 0, 0x10, 0, 9]), [1, 0x10]);
        assert_eq!(
            efivarfs_name("BootOrder"),
            "BootOrder-8be4df61-93ca-11d2-aa0d-00e098032b8c"
        );
        assert_eq!(
            efivarfs_content(ATTRS_NV_BS_RT, &[1, 0]),
            [7, 0, 0, 0, 1, 0]
        );
        assert_eq!(free_boot_number(&[0, 1, 3]), Some(2));
    }
}

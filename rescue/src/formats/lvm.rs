//! LVM2 physical volumes: the label (`LABELONE` in one of sectors 0..3), the PV header,
//! the metadata area ring buffer, a parser for LVM's text metadata, and from those the byte
//! ranges a clone must copy (label, metadata areas and the allocated extents) and where
//! each LV's bytes lie ([`LvMap`], read through [`LvReader`]).
//!
//! Facts from LVM2's `lib/format_text/layout.h`, `format-text.c`, `lib/label/label.c`
//! and `lib/misc/crc.c`; everything is little-endian.

use super::extents::Extents;
use crate::units::{Bytes, Sectors, SECTOR_SIZE};
use serde::Serialize;
use std::collections::BTreeMap;
use std::io::{self, Read, Seek, SeekFrom};

pub const LABEL_ID: &[u8; 8] = b"LABELONE";
pub const LABEL_TYPE: &[u8; 8] = b"LVM2 001";
pub const MDA_MAGIC: &[u8; 16] = b" LVM2 x[5A%r0N*>";
pub const MDA_HEADER_SIZE: u64 = 512;
/// The label is looked for in this many sectors from the start.
pub const LABEL_SCAN_SECTORS: u64 = 4;
const INITIAL_CRC: u32 = 0xf597_a6cf;
const RAW_LOCN_IGNORED: u32 = 1;
/// Metadata text larger than this is refused as corrupt (LVM's own limit is far lower).
const MAX_METADATA: u64 = 128 << 20;
const MAX_DEPTH: usize = 32;

#[derive(Debug, thiserror::Error)]
pub enum LvmError {
    #[error("reading the LVM physical volume failed: {0}")]
    Io(#[from] io::Error),
    #[error("no LABELONE label in the first 4 sectors: not an LVM2 physical volume")]
    NotLvm,
    #[error("corrupt LVM physical volume: {0}: check it with `pvck` on the source")]
    Corrupt(String),
    #[error(
        "LVM metadata text does not parse at byte {at}: {what}: check it with `vgck` on the source"
    )]
    Syntax { at: usize, what: String },
}

fn corrupt<T>(what: impl Into<String>) -> Result<T, LvmError> {
    Err(LvmError::Corrupt(what.into()))
}

/// LVM's CRC: the reflected CRC-32 polynomial, LVM's own seed, no final inversion.
pub fn crc(initial: u32, data: &[u8]) -> u32 {
    const TAB: [u32; 16] = [
        0x0000_0000,
        0x1db7_1064,
        0x3b6e_20c8,
        0x26d9_30ac,
        0x76dc_4190,
        0x6b6b_51f4,
        0x4db2_6158,
        0x5005_713c,
        0xedb8_8320,
        0xf00f_9344,
        0xd6d6_a3e8,
        0xcb61_b38c,
        0x9b64_c2b0,
        0x86d3_d2d4,
        0xa00a_e278,
        0xbdbd_f21c,
    ];
    let mut c = initial;
    for &b in data {
        c ^= u32::from(b);
        c = (c >> 4) ^ TAB[(c & 0xf) as usize];
        c = (c >> 4) ^ TAB[(c & 0xf) as usize];
    }
    c
}

fn le32(b: &[u8], o: usize) -> u32 {
    u32::from_le_bytes([b[o], b[o + 1], b[o + 2], b[o + 3]])
}
fn le64(b: &[u8], o: usize) -> u64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[o..o + 8]);
    u64::from_le_bytes(a)
}

/// An area on the PV: absolute byte offset and size (size 0 means "to the end").
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct Area {
    pub offset: Bytes,
    pub size: Bytes,
}

/// The label and PV header.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct PvLabel {
    /// Sector (0..3) holding the label.
    pub sector: u64,
    /// The PV UUID as stored: 32 characters without dashes.
    pub pv_uuid: String,
    pub device_size: Bytes,
    pub data_areas: Vec<Area>,
    pub metadata_areas: Vec<Area>,
    pub bootloader_areas: Vec<Area>,
}

impl PvLabel {
    /// Find and check the label in the first four sectors of `r`.
    pub fn read<R: Read + Seek>(r: &mut R) -> Result<Self, LvmError> {
        let mut buf = vec![0u8; (LABEL_SCAN_SECTORS * SECTOR_SIZE) as usize];
        r.seek(SeekFrom::Start(0))?;
        let n = read_up_to(r, &mut buf)?;
        for s in 0..LABEL_SCAN_SECTORS {
            let at = (s * SECTOR_SIZE) as usize;
            if at + SECTOR_SIZE as usize > n {
                break;
            }
            let sec = &buf[at..at + SECTOR_SIZE as usize];
            if &sec[0..8] == LABEL_ID {
                return Self::parse_sector(sec, s);
            }
        }
        Err(LvmError::NotLvm)
    }

    fn parse_sector(sec: &[u8], s: u64) -> Result<Self, LvmError> {
        if le64(sec, 8) != s {
            return corrupt(format!(
                "label in sector {s} says it is in sector {}",
                le64(sec, 8)
            ));
        }
        let want = le32(sec, 16);
        let got = crc(INITIAL_CRC, &sec[20..]);
        if want != got {
            return corrupt(format!(
                "label checksum 0x{want:08x} does not match 0x{got:08x}"
            ));
        }
        if &sec[24..32] != LABEL_TYPE {
            return corrupt(format!(
                "label type {:?} is not \"LVM2 001\"",
                String::from_utf8_lossy(&sec[24..32])
            ));
        }
        let off = le32(sec, 20) as usize;
        if !(32..=SECTOR_SIZE as usize - 32 - 8).contains(&off) {
            return corrupt(format!("PV header offset {off}"));
        }
        let h = &sec[off..];
        let uuid_raw = &h[0..32];
        if !uuid_raw.iter().all(|c| c.is_ascii_alphanumeric()) {
            return corrupt("PV UUID is not 32 alphanumeric characters");
        }
        let pv_uuid = String::from_utf8_lossy(uuid_raw).into_owned();
        let device_size = Bytes(le64(h, 32));
        let mut pos = 40;
        let list = |pos: &mut usize| -> Result<Vec<Area>, LvmError> {
            let mut v = Vec::new();
            loop {
                if *pos + 16 > h.len() {
                    return corrupt("PV header area list runs past the label sector");
                }
                let (offset, size) = (le64(h, *pos), le64(h, *pos + 8));
                *pos += 16;
                if offset == 0 {
                    return Ok(v);
                }
                v.push(Area {
                    offset: Bytes(offset),
                    size: Bytes(size),
                });
            }
        };
        let data_areas = list(&mut pos)?;
        let metadata_areas = list(&mut pos)?;
        // PV header extension (version >= 1): version, flags, bootloader areas.
        let mut bootloader_areas = Vec::new();
        if pos + 8 <= h.len() && le32(h, pos) >= 1 {
            pos += 8;
            bootloader_areas = list(&mut pos)?;
        }
        Ok(PvLabel {
            sector: s,
            pv_uuid,
            device_size,
            data_areas,
            metadata_areas,
            bootloader_areas,
        })
    }
}

fn read_up_to<R: Read>(r: &mut R, buf: &mut [u8]) -> io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match r.read(&mut buf[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(n)
}

/// A metadata area header and its current metadata text.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MetadataArea {
    pub area: Area,
    /// The committed metadata text (without its trailing NUL), if the VG has any here.
    pub text: Option<String>,
    pub ignored: bool,
    /// The text wrapped around the end of the ring buffer.
    pub wrapped: bool,
}

/// Read the metadata area header at `area` and the text its first raw location points to,
/// joining the two halves when the text wraps around the end of the ring buffer.
pub fn read_metadata_area<R: Read + Seek>(r: &mut R, area: Area) -> Result<MetadataArea, LvmError> {
    let mut h = [0u8; MDA_HEADER_SIZE as usize];
    r.seek(SeekFrom::Start(area.offset.0))?;
    r.read_exact(&mut h)?;
    let want = le32(&h, 0);
    let got = crc(INITIAL_CRC, &h[4..]);
    if want != got {
        return corrupt(format!(
            "metadata area header at {} has checksum 0x{want:08x}, computed 0x{got:08x}",
            area.offset.0
        ));
    }
    if &h[4..20] != MDA_MAGIC {
        return corrupt(format!("no metadata area magic at byte {}", area.offset.0));
    }
    let version = le32(&h, 20);
    if version != 1 {
        return corrupt(format!("metadata area version {version}"));
    }
    let (start, size) = (le64(&h, 24), le64(&h, 32));
    if start != area.offset.0 || size <= MDA_HEADER_SIZE {
        return corrupt(format!(
            "metadata area header says start {start} size {size}, the PV header says {} {}",
            area.offset.0, area.size.0
        ));
    }
    let (off, len, sum, flags) = (le64(&h, 40), le64(&h, 48), le32(&h, 56), le32(&h, 60));
    let ignored = flags & RAW_LOCN_IGNORED != 0;
    if off == 0 || len == 0 {
        return Ok(MetadataArea {
            area,
            text: None,
            ignored,
            wrapped: false,
        });
    }
    if off < MDA_HEADER_SIZE || off >= size || len > size - MDA_HEADER_SIZE || len > MAX_METADATA {
        return corrupt(format!(
            "metadata at offset {off} size {len} does not fit a {size}-byte area"
        ));
    }
    let mut text = vec![0u8; len as usize];
    let wrapped = read_ring(r, start, size, off, &mut text)?;
    let got = crc(INITIAL_CRC, &text);
    if got != sum {
        return corrupt(format!(
            "metadata text checksum 0x{sum:08x} does not match 0x{got:08x}"
        ));
    }
    while text.last() == Some(&0) {
        text.pop();
    }
    let text = String::from_utf8(text).or_else(|_| corrupt("metadata text is not UTF-8"))?;
    Ok(MetadataArea {
        area,
        text: Some(text),
        ignored,
        wrapped,
    })
}

/// Fills `buf` from a metadata area's ring buffer: from `off` (below `size`) inside the
/// area of `size` bytes at `start`, continuing right after the area header when the text
/// wraps around the end. Returns whether it wrapped.
fn read_ring<R: Read + Seek>(
    r: &mut R,
    start: u64,
    size: u64,
    off: u64,
    buf: &mut [u8],
) -> io::Result<bool> {
    let first = (buf.len() as u64).min(size - off) as usize;
    r.seek(SeekFrom::Start(start.saturating_add(off)))?;
    r.read_exact(&mut buf[..first])?;
    let wrapped = first < buf.len();
    if wrapped {
        r.seek(SeekFrom::Start(start.saturating_add(MDA_HEADER_SIZE)))?;
        r.read_exact(&mut buf[first..])?;
    }
    Ok(wrapped)
}

/// A PV UUID as LVM prints it: the 32 stored characters in groups of 6-4-4-4-4-4-6.
pub fn format_uuid(raw: &str) -> String {
    let mut out = String::with_capacity(38);
    let mut at = 0;
    for (i, n) in [6, 4, 4, 4, 4, 4, 6].into_iter().enumerate() {
        if i > 0 {
            out.push('-');
        }
        out.push_str(raw.get(at..at + n).unwrap_or_default());
        at += n;
    }
    out
}

/// What identification needs from a PV, in the form blkid reports it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Probe {
    /// With dashes ([`format_uuid`]).
    pub pv_uuid: String,
    /// From the newest metadata text in the first metadata area, when it can be read.
    pub vg_name: Option<String>,
}

/// Metadata text larger than this is not read for identification.
const PROBE_MAX_METADATA: u64 = 16 << 20;

/// Identifies a PV at the start of `r` leniently: `LABELONE` with type `LVM2 001` in one
/// of the first four sectors and 32 alphanumeric UUID characters in the PV header are
/// enough (no checksums, unlike [`PvLabel::read`] and [`read_metadata_area`]). The VG
/// name comes from the first metadata area's committed text and is `None` when that
/// cannot be read. `Ok(None)` when there is no label.
pub fn probe<R: Read + Seek>(r: &mut R) -> io::Result<Option<Probe>> {
    const HEAD: usize = (LABEL_SCAN_SECTORS * SECTOR_SIZE) as usize;
    let mut head = [0u8; HEAD];
    r.seek(SeekFrom::Start(0))?;
    if read_up_to(r, &mut head)? < HEAD {
        return Ok(None);
    }
    let Some(label) = (0..HEAD)
        .step_by(SECTOR_SIZE as usize)
        .find(|o| &head[*o..o + 8] == LABEL_ID && &head[o + 24..o + 32] == LABEL_TYPE)
    else {
        return Ok(None);
    };
    // The PV header may run on into the following sectors.
    let Some(pvh) = usize::try_from(le32(&head, label + 20))
        .ok()
        .and_then(|o| o.checked_add(label))
        .filter(|pvh| pvh.checked_add(40).is_some_and(|end| end <= HEAD))
    else {
        return Ok(None);
    };
    let raw = &head[pvh..pvh + 32];
    if !raw.iter().all(u8::is_ascii_alphanumeric) {
        return Ok(None);
    }
    let pv_uuid = format_uuid(&String::from_utf8_lossy(raw));
    // Data areas, then metadata areas, each list ending with a zero offset.
    let mut o = pvh + 40;
    let mut lists = [Vec::new(), Vec::new()];
    for list in &mut lists {
        while o + 16 <= HEAD {
            let (off, size) = (le64(&head, o), le64(&head, o + 8));
            o += 16;
            if off == 0 {
                break;
            }
            list.push((off, size));
        }
    }
    let vg_name = match lists[1].first() {
        Some(&(mda_off, mda_size)) => probe_vg_name(r, mda_off, mda_size)?,
        None => None,
    };
    Ok(Some(Probe { pv_uuid, vg_name }))
}

/// The VG name in the committed text of the metadata area at `start` of `size` bytes.
fn probe_vg_name<R: Read + Seek>(r: &mut R, start: u64, size: u64) -> io::Result<Option<String>> {
    if start.checked_add(size).is_none() {
        return Ok(None);
    }
    let mut h = [0u8; MDA_HEADER_SIZE as usize];
    if !super::read_exact_at(r, start, &mut h)? || &h[4..20] != MDA_MAGIC {
        return Ok(None);
    }
    // First raw location: the committed metadata (offset within the area, length).
    let (off, len) = (le64(&h, 40), le64(&h, 48));
    if off < MDA_HEADER_SIZE || off >= size || len == 0 || len > PROBE_MAX_METADATA {
        return Ok(None);
    }
    let mut text = vec![0u8; len as usize];
    if super::unless_eof(read_ring(r, start, size, off, &mut text))?.is_none() {
        return Ok(None);
    }
    Ok(vg_name_in_text(&String::from_utf8_lossy(&text)))
}

/// The name of the first section opened in metadata text (`name {` on its own line), the
/// volume group's.
fn vg_name_in_text(text: &str) -> Option<String> {
    let name = text
        .lines()
        .find_map(|l| l.trim_end().strip_suffix(" {").map(str::trim))?;
    (!name.is_empty() && !name.contains(char::is_whitespace)).then(|| name.to_string())
}

/// A value in LVM's text format.
#[derive(Clone, Debug, PartialEq)]
pub enum Value {
    Int(i64),
    Float(f64),
    Str(String),
    List(Vec<Value>),
    Section(Section),
}

/// `key = value` pairs and `name { ... }` subsections, in file order.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Section(pub Vec<(String, Value)>);

impl Section {
    pub fn get(&self, key: &str) -> Option<&Value> {
        self.0.iter().find(|(k, _)| k == key).map(|(_, v)| v)
    }
    pub fn int(&self, key: &str) -> Option<i64> {
        match self.get(key) {
            Some(Value::Int(i)) => Some(*i),
            _ => None,
        }
    }
    pub fn str(&self, key: &str) -> Option<&str> {
        match self.get(key) {
            Some(Value::Str(s)) => Some(s),
            _ => None,
        }
    }
    pub fn section(&self, key: &str) -> Option<&Section> {
        match self.get(key) {
            Some(Value::Section(s)) => Some(s),
            _ => None,
        }
    }
    pub fn sections(&self) -> impl Iterator<Item = (&str, &Section)> {
        self.0.iter().filter_map(|(k, v)| match v {
            Value::Section(s) => Some((k.as_str(), s)),
            _ => None,
        })
    }
}

struct Parser<'a> {
    s: &'a [u8],
    i: usize,
}

impl Parser<'_> {
    fn err<T>(&self, what: impl Into<String>) -> Result<T, LvmError> {
        Err(LvmError::Syntax {
            at: self.i,
            what: what.into(),
        })
    }

    fn skip_ws(&mut self) {
        while self.i < self.s.len() {
            match self.s[self.i] {
                b'#' => {
                    while self.i < self.s.len() && self.s[self.i] != b'\n' {
                        self.i += 1;
                    }
                }
                c if c.is_ascii_whitespace() || c == 0 => self.i += 1,
                _ => break,
            }
        }
    }

    fn peek(&mut self) -> Option<u8> {
        self.skip_ws();
        self.s.get(self.i).copied()
    }

    fn ident(&mut self) -> Result<String, LvmError> {
        self.skip_ws();
        let start = self.i;
        while self.i < self.s.len() {
            let c = self.s[self.i];
            if c.is_ascii_whitespace() || b"{}[]=,\"#".contains(&c) || c == 0 {
                break;
            }
            self.i += 1;
        }
        if start == self.i {
            return self.err("expected a name");
        }
        Ok(String::from_utf8_lossy(&self.s[start..self.i]).into_owned())
    }

    fn section(&mut self, depth: usize, top: bool) -> Result<Section, LvmError> {
        if depth > MAX_DEPTH {
            return self.err("sections nested too deeply");
        }
        let mut out = Vec::new();
        loop {
            match self.peek() {
                None if top => return Ok(Section(out)),
                None => return self.err("unexpected end, expected '}'"),
                Some(b'}') if !top => {
                    self.i += 1;
                    return Ok(Section(out));
                }
                _ => {}
            }
            let key = self.ident()?;
            match self.peek() {
                Some(b'{') => {
                    self.i += 1;
                    let s = self.section(depth + 1, false)?;
                    out.push((key, Value::Section(s)));
                }
                Some(b'=') => {
                    self.i += 1;
                    let v = self.value(depth + 1)?;
                    out.push((key, v));
                }
                _ => return self.err(format!("expected '=' or '{{' after {key:?}")),
            }
        }
    }

    fn value(&mut self, depth: usize) -> Result<Value, LvmError> {
        if depth > MAX_DEPTH {
            return self.err("lists nested too deeply");
        }
        match self.peek() {
            Some(b'"') => self.string().map(Value::Str),
            Some(b'[') => {
                self.i += 1;
                let mut v = Vec::new();
                loop {
                    match self.peek() {
                        Some(b']') => {
                            self.i += 1;
                            return Ok(Value::List(v));
                        }
                        Some(b',') if !v.is_empty() => self.i += 1,
                        None => return self.err("unexpected end in a list"),
                        _ => v.push(self.value(depth + 1)?),
                    }
                }
            }
            Some(c) if c == b'-' || c == b'+' || c.is_ascii_digit() => {
                let start = self.i;
                self.i += 1;
                while self.i < self.s.len()
                    && (self.s[self.i].is_ascii_digit() || self.s[self.i] == b'.')
                {
                    self.i += 1;
                }
                let t = String::from_utf8_lossy(&self.s[start..self.i]).into_owned();
                if let Ok(n) = t.parse::<i64>() {
                    Ok(Value::Int(n))
                } else if let Ok(f) = t.parse::<f64>() {
                    Ok(Value::Float(f))
                } else {
                    self.err(format!("bad number {t:?}"))
                }
            }
            _ => self.err("expected a value"),
        }
    }

    fn string(&mut self) -> Result<String, LvmError> {
        self.i += 1;
        let mut out = Vec::new();
        while self.i < self.s.len() {
            match self.s[self.i] {
                b'"' => {
                    self.i += 1;
                    return Ok(String::from_utf8_lossy(&out).into_owned());
                }
                b'\\' if self.i + 1 < self.s.len() => {
                    out.push(self.s[self.i + 1]);
                    self.i += 2;
                }
                c => {
                    out.push(c);
                    self.i += 1;
                }
            }
        }
        self.err("unterminated string")
    }
}

/// Parse LVM text metadata into its top-level section.
pub fn parse_text(text: &str) -> Result<Section, LvmError> {
    Parser {
        s: text.as_bytes(),
        i: 0,
    }
    .section(0, true)
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Pv {
    /// Name inside the metadata (`pv0`).
    pub name: String,
    /// UUID with dashes, as in the metadata.
    pub id: String,
    pub device: Option<String>,
    pub pe_start: Sectors,
    pub pe_count: u64,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Segment {
    pub start_extent: u64,
    pub extent_count: u64,
    pub kind: String,
    /// (PV name, first physical extent) per stripe, for striped (and linear) segments.
    pub stripes: Vec<(String, u64)>,
    /// Bytes of one stripe before the next stripe's turn (`stripe_size`); only given, and
    /// only needed, with more than one stripe.
    pub stripe_size: Option<Sectors>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Lv {
    pub name: String,
    pub id: String,
    pub segments: Vec<Segment>,
}

/// A volume group as its metadata describes it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Vg {
    pub name: String,
    pub id: String,
    pub seqno: u64,
    pub extent_size: Sectors,
    pub pvs: Vec<Pv>,
    pub lvs: Vec<Lv>,
}

fn need_int(s: &Section, key: &str, ctx: &str) -> Result<u64, LvmError> {
    match s.int(key) {
        Some(v) if v >= 0 => Ok(v as u64),
        _ => corrupt(format!("{ctx}: `{key}` is missing or negative")),
    }
}

impl Vg {
    /// The VG from parsed metadata text: the one top-level section.
    pub fn from_section(top: &Section) -> Result<Self, LvmError> {
        let Some((name, s)) = top.sections().next() else {
            return corrupt("metadata text holds no volume group section");
        };
        let id = s.str("id").unwrap_or_default().to_owned();
        let seqno = need_int(s, "seqno", name)?;
        let extent_size = Sectors(need_int(s, "extent_size", name)?);
        // LVM keeps extent_size in 32 bits; the bound also keeps byte sums from overflowing.
        if extent_size.0 == 0 || extent_size.0 > u64::from(u32::MAX) {
            return corrupt(format!("{name}: extent_size {} sectors", extent_size.0));
        }
        let mut pvs = Vec::new();
        if let Some(p) = s.section("physical_volumes") {
            for (pname, pv) in p.sections() {
                let ctx = format!("{name}/{pname}");
                let pe_start = Sectors(need_int(pv, "pe_start", &ctx)?);
                if pe_start.0.checked_mul(SECTOR_SIZE).is_none() {
                    return corrupt(format!("{ctx}: pe_start {} sectors", pe_start.0));
                }
                pvs.push(Pv {
                    name: pname.to_owned(),
                    id: pv.str("id").unwrap_or_default().to_owned(),
                    device: pv.str("device").map(str::to_owned),
                    pe_start,
                    pe_count: need_int(pv, "pe_count", &ctx)?,
                });
            }
        }
        let mut lvs = Vec::new();
        if let Some(l) = s.section("logical_volumes") {
            for (lname, lv) in l.sections() {
                let mut segments = Vec::new();
                for (sname, seg) in lv.sections() {
                    let ctx = format!("{name}/{lname}/{sname}");
                    let kind = seg.str("type").unwrap_or_default().to_owned();
                    let mut stripes = Vec::new();
                    if kind == "striped" {
                        let Some(Value::List(items)) = seg.get("stripes") else {
                            return corrupt(format!("{ctx}: striped segment without `stripes`"));
                        };
                        for pair in items.chunks(2) {
                            match pair {
                                [Value::Str(pv), Value::Int(pe)] if *pe >= 0 => {
                                    stripes.push((pv.clone(), *pe as u64))
                                }
                                _ => {
                                    return corrupt(format!(
                                        "{ctx}: `stripes` is not [\"pvN\", extent, ...]"
                                    ))
                                }
                            }
                        }
                        if stripes.is_empty() {
                            return corrupt(format!("{ctx}: no stripes"));
                        }
                    }
                    segments.push(Segment {
                        start_extent: need_int(seg, "start_extent", &ctx)?,
                        extent_count: need_int(seg, "extent_count", &ctx)?,
                        kind,
                        stripes,
                        stripe_size: seg
                            .int("stripe_size")
                            .and_then(|v| u64::try_from(v).ok())
                            .map(Sectors),
                    });
                }
                lvs.push(Lv {
                    name: lname.to_owned(),
                    id: lv.str("id").unwrap_or_default().to_owned(),
                    segments,
                });
            }
        }
        Ok(Vg {
            name: name.to_owned(),
            id,
            seqno,
            extent_size,
            pvs,
            lvs,
        })
    }

    /// The PV whose metadata id matches a label UUID (dashes ignored).
    pub fn pv_by_uuid(&self, uuid: &str) -> Option<&Pv> {
        self.pvs.iter().find(|p| p.id.replace('-', "") == uuid)
    }

    /// Allocated physical extents per PV name as sorted, merged `[first, end)` ranges,
    /// or the reason they cannot be known from striped segments alone.
    pub fn allocated_extents(&self) -> Result<BTreeMap<String, Vec<(u64, u64)>>, String> {
        let mut map: BTreeMap<String, Vec<(u64, u64)>> = BTreeMap::new();
        for lv in &self.lvs {
            for seg in &lv.segments {
                if seg.kind != "striped" {
                    return Err(format!(
                        "LV {} has a {:?} segment, whose extents are not mapped here",
                        lv.name, seg.kind
                    ));
                }
                let n = seg.stripes.len() as u64;
                if seg.extent_count % n != 0 {
                    return Err(format!(
                        "LV {}: {} extents do not divide into {n} stripes",
                        lv.name, seg.extent_count
                    ));
                }
                let per = seg.extent_count / n;
                for (pv, first) in &seg.stripes {
                    map.entry(pv.clone())
                        .or_default()
                        .push((*first, first.saturating_add(per)));
                }
            }
        }
        for v in map.values_mut() {
            v.sort_unstable();
            let mut merged: Vec<(u64, u64)> = Vec::with_capacity(v.len());
            for &(s, e) in v.iter() {
                match merged.last_mut() {
                    Some(l) if s <= l.1 => l.1 = l.1.max(e),
                    _ => merged.push((s, e)),
                }
            }
            *v = merged;
        }
        Ok(map)
    }
}

/// A contiguous run of an LV's bytes on one PV.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Run {
    /// The PV's name in the metadata (`pv0`).
    pub pv: String,
    /// Bytes from the PV's start (its label sector is sector 0..3).
    pub offset: u64,
    pub len: u64,
}

/// How one segment's bytes are spread: per stripe, its PV and the byte offset of its first
/// extent on that PV; `chunk` bytes go to one stripe before the next one's turn.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Striping {
    stripes: Vec<(String, u64)>,
    chunk: u64,
}

#[derive(Clone, Debug, PartialEq, Eq)]
struct MapSegment {
    /// Bytes from the LV's start.
    start: u64,
    len: u64,
    /// Why the segment's bytes cannot be found (another segment type, an unknown PV ...).
    layout: Result<Striping, String>,
}

/// Where an LV's bytes lie, from its segments: what [`LvReader`] reads through.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LvMap {
    /// The LV's size: its segments' extents (what `lvs` shows).
    pub size: u64,
    segments: Vec<MapSegment>,
}

impl LvMap {
    /// The run holding LV byte `at`, up to the end of its stripe chunk or segment.
    pub fn locate(&self, at: u64) -> Result<Run, String> {
        if at >= self.size {
            return Err(format!(
                "byte {at} is past the LV's end ({} bytes)",
                self.size
            ));
        }
        let seg = self
            .segments
            .iter()
            .find(|s| at >= s.start && at - s.start < s.len)
            .ok_or_else(|| format!("no segment maps LV byte {at}"))?;
        let st = seg.layout.as_ref().map_err(Clone::clone)?;
        let rel = at - seg.start;
        let n = st.stripes.len() as u64;
        let (chunk, within) = (rel / st.chunk, rel % st.chunk);
        let (pv, first) = &st.stripes[(chunk % n) as usize];
        let offset = (chunk / n)
            .checked_mul(st.chunk)
            .and_then(|o| o.checked_add(within))
            .and_then(|o| o.checked_add(*first))
            .ok_or_else(|| format!("LV byte {at} maps past 2^64 on {pv}"))?;
        Ok(Run {
            pv: pv.clone(),
            offset,
            len: (st.chunk - within).min(seg.len - rel),
        })
    }

    /// Where `len` bytes from LV byte `at` lie when they are one unbroken run on one PV
    /// (what `mount -o loop,offset=` on the PV's disk needs); `None` otherwise.
    pub fn contiguous(&self, at: u64, len: u64) -> Option<Run> {
        let first = self.locate(at).ok()?;
        let mut covered = first.len;
        while covered < len {
            let next = self.locate(at.checked_add(covered)?).ok()?;
            if next.pv != first.pv || next.offset != first.offset.checked_add(covered)? {
                return None;
            }
            covered = covered.checked_add(next.len)?;
        }
        Some(Run { len, ..first })
    }
}

impl Vg {
    /// Bytes per extent.
    pub fn extent_bytes(&self) -> u64 {
        self.extent_size.0.saturating_mul(SECTOR_SIZE)
    }

    /// Byte offset of physical extent `pe` of PV `pv` from the PV's start, if it exists.
    pub fn extent_offset(&self, pv: &str, pe: u64) -> Option<u64> {
        let p = self.pvs.iter().find(|p| p.name == pv)?;
        if pe > p.pe_count {
            return None;
        }
        pe.checked_mul(self.extent_bytes())?
            .checked_add(p.pe_start.0.checked_mul(SECTOR_SIZE)?)
    }

    /// The byte map of `lv`: each segment's LV range and, for striped (linear) segments
    /// whose PVs the metadata lists, where its bytes are.
    pub fn lv_map(&self, lv: &Lv) -> LvMap {
        let ext = self.extent_bytes();
        let mut segments = Vec::new();
        let mut size = 0u64;
        for seg in &lv.segments {
            let range = seg
                .start_extent
                .checked_mul(ext)
                .zip(seg.extent_count.checked_mul(ext));
            let Some((start, len)) = range.filter(|(s, l)| s.checked_add(*l).is_some()) else {
                continue;
            };
            size = size.saturating_add(len);
            segments.push(MapSegment {
                start,
                len,
                layout: self.striping(seg, len),
            });
        }
        LvMap { size, segments }
    }

    fn striping(&self, seg: &Segment, len: u64) -> Result<Striping, String> {
        if seg.kind != "striped" {
            return Err(format!(
                "a {:?} segment, whose bytes are not mapped here",
                seg.kind
            ));
        }
        let n = seg.stripes.len() as u64;
        if n == 0 || !seg.extent_count.is_multiple_of(n) {
            return Err(format!(
                "{} extents do not divide into {n} stripes",
                seg.extent_count
            ));
        }
        let per = seg.extent_count / n;
        let mut stripes = Vec::new();
        for (pv, first) in &seg.stripes {
            let end = first.checked_add(per);
            let (Some(offset), Some(_)) = (
                self.extent_offset(pv, *first),
                end.and_then(|e| self.extent_offset(pv, e)),
            ) else {
                return Err(format!(
                    "extents {first}..+{per} are not on a PV the metadata lists as {pv:?}"
                ));
            };
            stripes.push((pv.clone(), offset));
        }
        let chunk = if n == 1 {
            len
        } else {
            match seg.stripe_size.and_then(|s| s.0.checked_mul(SECTOR_SIZE)) {
                Some(c) if c > 0 && c <= len / n => c,
                _ => return Err(format!("{n} stripes without a usable stripe_size")),
            }
        };
        Ok(Striping { stripes, chunk })
    }
}

/// `Read + Seek` over an LV, through its [`LvMap`], on the disk `inner` that holds one of
/// its PVs at `pv_start`. Reads end (as at the end of a file) where the LV leaves this PV,
/// so format probes see a short device rather than fail; bytes no segment maps (a thin or
/// RAID segment) are an `Other` error.
#[derive(Debug)]
pub struct LvReader<'m, R> {
    inner: R,
    map: &'m LvMap,
    pv: String,
    pv_start: u64,
    pv_len: u64,
    pos: u64,
}

impl<'m, R: Read + Seek> LvReader<'m, R> {
    /// `pv` is the PV's name in the metadata; it spans `pv_len` bytes from `pv_start`.
    pub fn new(inner: R, map: &'m LvMap, pv: &str, pv_start: u64, pv_len: u64) -> Self {
        LvReader {
            inner,
            map,
            pv: pv.to_owned(),
            pv_start,
            pv_len,
            pos: 0,
        }
    }
}

impl<R: Read + Seek> Read for LvReader<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.pos >= self.map.size || buf.is_empty() {
            return Ok(0);
        }
        let run = self.map.locate(self.pos).map_err(io::Error::other)?;
        let left = self.pv_len.saturating_sub(run.offset);
        let at = self.pv_start.checked_add(run.offset);
        let Some(at) = at.filter(|_| run.pv == self.pv && left > 0) else {
            return Ok(0);
        };
        let want = (buf.len() as u64).min(run.len).min(left) as usize;
        self.inner.seek(SeekFrom::Start(at))?;
        let n = self.inner.read(&mut buf[..want])?;
        self.pos += n as u64;
        Ok(n)
    }
}

impl<R: Read + Seek> Seek for LvReader<'_, R> {
    fn seek(&mut self, to: SeekFrom) -> io::Result<u64> {
        let (base, delta) = match to {
            SeekFrom::Start(n) => {
                self.pos = n;
                return Ok(n);
            }
            SeekFrom::End(d) => (self.map.size, d),
            SeekFrom::Current(d) => (self.pos, d),
        };
        let p = base.checked_add_signed(delta).ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::InvalidInput,
                "seek to a negative or overflowing position",
            )
        })?;
        self.pos = p;
        Ok(p)
    }
}

/// What to copy from one PV.
#[derive(Clone, Debug, Serialize)]
pub struct PvPlan {
    pub label: PvLabel,
    /// The VG from the metadata area with the highest seqno, if the PV belongs to one.
    pub vg: Option<Vg>,
    /// Name of this PV in the VG metadata.
    pub pv_name: Option<String>,
    /// Byte ranges to copy.
    pub extents: Extents,
    /// Why the whole PV must be copied, when the extents above are all of it.
    pub whole_reason: Option<String>,
}

/// The VG in the metadata area with the highest seqno; `None` for a PV in no VG (or with
/// no metadata area of its own). An area that cannot be read is an error only when no
/// other area gives the VG.
pub fn read_vg<R: Read + Seek>(r: &mut R, label: &PvLabel) -> Result<Option<Vg>, LvmError> {
    let mut best: Option<Vg> = None;
    let mut errors = Vec::new();
    let mut any_text = false;
    for &a in &label.metadata_areas {
        let mda = match read_metadata_area(r, a) {
            Ok(m) => m,
            Err(e) => {
                errors.push(e.to_string());
                continue;
            }
        };
        let Some(text) = mda.text.filter(|_| !mda.ignored) else {
            continue;
        };
        any_text = true;
        match parse_text(&text).and_then(|t| Vg::from_section(&t)) {
            Ok(vg) if best.as_ref().is_none_or(|b| vg.seqno > b.seqno) => best = Some(vg),
            Ok(_) => {}
            Err(e) => errors.push(e.to_string()),
        }
    }
    if best.is_none() {
        if !errors.is_empty() {
            return corrupt(errors.join("; "));
        }
        if any_text {
            return corrupt("metadata text present but no volume group read");
        }
    }
    Ok(best)
}

/// Read a PV and work out which bytes of it are in use.
pub fn plan<R: Read + Seek>(r: &mut R) -> Result<PvPlan, LvmError> {
    let label = PvLabel::read(r)?;
    let dev = Bytes(r.seek(SeekFrom::End(0))?);
    let whole = |label: PvLabel, vg: Option<Vg>, pv_name, reason: String| PvPlan {
        label,
        vg,
        pv_name,
        extents: Extents::whole(dev),
        whole_reason: Some(reason),
    };
    if label.device_size > dev {
        return corrupt(format!(
            "PV header says the device holds {} bytes but it holds {}",
            label.device_size.0, dev.0
        ));
    }
    let mut ranges = vec![(Bytes(0), Bytes(LABEL_SCAN_SECTORS * SECTOR_SIZE))];
    for a in label.metadata_areas.iter().chain(&label.bootloader_areas) {
        let end = a
            .offset
            .0
            .checked_add(a.size.0)
            .filter(|&e| e <= dev.0 && a.size.0 > 0);
        let Some(end) = end else {
            return corrupt(format!(
                "area at {} size {} lies outside the device",
                a.offset.0, a.size.0
            ));
        };
        ranges.push((a.offset, Bytes(end)));
    }
    let Some(vg) = read_vg(r, &label)? else {
        if label.metadata_areas.is_empty() {
            return Ok(whole(
                label,
                None,
                None,
                "the PV has no metadata area of its own".into(),
            ));
        }
        // An orphan PV: no VG, so nothing beyond the label and metadata areas is in use.
        return Ok(PvPlan {
            label,
            vg: None,
            pv_name: None,
            extents: Extents::from_ranges(ranges),
            whole_reason: None,
        });
    };
    let Some(pv) = vg.pv_by_uuid(&label.pv_uuid).cloned() else {
        return corrupt(format!(
            "VG {} metadata does not list this PV ({})",
            vg.name, label.pv_uuid
        ));
    };
    let alloc = match vg.allocated_extents() {
        Ok(a) => a,
        Err(reason) => return Ok(whole(label, Some(vg), Some(pv.name), reason)),
    };
    let ext = vg.extent_size.bytes().0;
    let pe_start = pv.pe_start.bytes().0;
    let pv_end = pv
        .pe_count
        .checked_mul(ext)
        .and_then(|n| n.checked_add(pe_start));
    if pv_end.is_none_or(|e| e > dev.0) {
        return corrupt(format!(
            "PV {}: {} extents of {} bytes from byte {pe_start} do not fit the device",
            pv.name, pv.pe_count, ext
        ));
    }
    for &(s, e) in alloc.get(&pv.name).map(Vec::as_slice).unwrap_or(&[]) {
        if e > pv.pe_count {
            return corrupt(format!(
                "PV {}: extents {s}..{e} are past pe_count {}",
                pv.name, pv.pe_count
            ));
        }
        ranges.push((Bytes(pe_start + s * ext), Bytes(pe_start + e * ext)));
    }
    Ok(PvPlan {
        label,
        vg: Some(vg),
        pv_name: Some(pv.name),
        extents: Extents::from_ranges(ranges),
        whole_reason: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEXT: &str = r#"vg1 {
id = "abc-def"
seqno = 7
extent_size = 8192	# 4 MiB
physical_volumes {
pv0 {
id = "5JpAuB-Eu4R-ZG2r-x93I-Y4Wo-fe0E-YdJJ0k"
device = "/dev/loop0"
pe_start = 2048
pe_count = 100
}
}
logical_volumes {
a {
id = "x"
segment1 {
start_extent = 0
extent_count = 5
type = "striped"
stripe_count = 1
stripes = [
"pv0", 0
]
}
segment2 {
start_extent = 5
extent_count = 4
type = "striped"
stripes = ["pv0", 10, "pv0", 20]
}
}
}
}
contents = "Text Format Volume Group"
description = "say \"hi\""
"#;

    #[test]
    fn parses_text_and_extents() {
        let top = parse_text(TEXT).unwrap();
        assert_eq!(top.str("description"), Some("say \"hi\""));
        let vg = Vg::from_section(&top).unwrap();
        assert_eq!(vg.seqno, 7);
        assert_eq!(vg.extent_size, Sectors(8192));
        assert_eq!(vg.pvs[0].pe_start, Sectors(2048));
        let a = vg.allocated_extents().unwrap();
        assert_eq!(a["pv0"], vec![(0, 5), (10, 12), (20, 22)]);
        assert!(vg.pv_by_uuid("5JpAuBEu4RZG2rx93IY4Wofe0EYdJJ0k").is_some());
    }

    #[test]
    fn other_segment_types_need_whole_copy() {
        let t = TEXT.replace(
            "type = \"striped\"\nstripe_count",
            "type = \"thin-pool\"\nstripe_count",
        );
        let vg = Vg::from_section(&parse_text(&t).unwrap()).unwrap();
        assert!(vg.allocated_extents().unwrap_err().contains("thin-pool"));
    }

    #[test]
    fn lv_map_follows_segments_and_stripes() {
        let t = TEXT.replace(
            "stripes = [\"pv0\", 10",
            "stripe_size = 128\nstripes = [\"pv0\", 10",
        );
        let vg = Vg::from_section(&parse_text(&t).unwrap()).unwrap();
        let map = vg.lv_map(&vg.lvs[0]);
        let (ext, pe0, chunk) = (4u64 << 20, 1u64 << 20, 64u64 << 10);
        let run = |offset, len| Run {
            pv: "pv0".into(),
            offset,
            len,
        };
        assert_eq!(map.size, 9 * ext);
        // Linear: to the segment's end.
        assert_eq!(
            map.locate(3 * ext + 5),
            Ok(run(pe0 + 3 * ext + 5, 2 * ext - 5))
        );
        // Striped: 64 KiB on stripe 0 (PE 10), 64 KiB on stripe 1 (PE 20), then stripe 0 again.
        let s = 5 * ext;
        assert_eq!(map.locate(s), Ok(run(pe0 + 10 * ext, chunk)));
        assert_eq!(
            map.locate(s + chunk + 1),
            Ok(run(pe0 + 20 * ext + 1, chunk - 1))
        );
        assert_eq!(
            map.locate(s + 2 * chunk),
            Ok(run(pe0 + 10 * ext + chunk, chunk))
        );
        assert_eq!(map.locate(9 * ext - 1), Ok(run(pe0 + 22 * ext - 1, 1)));
        assert!(map.locate(9 * ext).is_err());
        assert_eq!(map.contiguous(ext, 4 * ext), Some(run(pe0 + ext, 4 * ext)));
        assert_eq!(map.contiguous(0, 5 * ext + 1), None);
        assert_eq!(map.contiguous(s, chunk), Some(run(pe0 + 10 * ext, chunk)));
        assert_eq!(map.contiguous(s, chunk + 1), None);
        // Without a stripe size the striped segment is not mapped; the linear one still is.
        let vg = Vg::from_section(&parse_text(TEXT).unwrap()).unwrap();
        let map = vg.lv_map(&vg.lvs[0]);
        assert!(map.locate(0).is_ok());
        assert!(map.locate(s).unwrap_err().contains("stripe_size"));
    }

    #[test]
    fn lv_reader_reads_through_the_map_and_stops_at_another_pv() {
        // 4 KiB extents from byte 4096 of the PV; the PV starts at byte 8192 of the disk.
        let text = r#"v {
id = "v"
seqno = 1
extent_size = 8
physical_volumes {
pv0 { id = "a" pe_start = 8 pe_count = 10 }
pv1 { id = "b" pe_start = 8 pe_count = 10 }
}
logical_volumes {
r {
id = "r"
segment1 { start_extent = 0 extent_count = 2 type = "striped" stripes = ["pv0", 4] }
segment2 { start_extent = 2 extent_count = 1 type = "striped" stripes = ["pv0", 0] }
segment3 { start_extent = 3 extent_count = 1 type = "striped" stripes = ["pv1", 0] }
}
t {
id = "t"
segment1 { start_extent = 0 extent_count = 1 type = "thin" }
}
}
}
"#;
        let vg = Vg::from_section(&parse_text(text).unwrap()).unwrap();
        let disk: Vec<u8> = (0..64 << 10).map(|i: u32| (i % 251) as u8).collect();
        let map = vg.lv_map(&vg.lvs[0]);
        let mut lr = LvReader::new(io::Cursor::new(&disk), &map, "pv0", 8192, 48 << 10);
        let mut got = Vec::new();
        lr.read_to_end(&mut got).unwrap();
        let pe = |n: usize| 8192 + 4096 + n * 4096;
        let mut want = disk[pe(4)..pe(6)].to_vec();
        want.extend_from_slice(&disk[pe(0)..pe(1)]);
        assert_eq!(got, want, "pv1's extent reads as the end");
        assert_eq!(lr.seek(SeekFrom::End(0)).unwrap(), 16 << 10);
        lr.seek(SeekFrom::Start(8190)).unwrap();
        let mut b = [0u8; 4];
        lr.read_exact(&mut b).unwrap();
        assert_eq!(
            b,
            [
                disk[pe(6) - 2],
                disk[pe(6) - 1],
                disk[pe(0)],
                disk[pe(0) + 1]
            ]
        );
        let thin = vg.lv_map(&vg.lvs[1]);
        let mut lr = LvReader::new(io::Cursor::new(&disk), &thin, "pv0", 8192, 48 << 10);
        let e = lr.read(&mut b).unwrap_err();
        assert!(e.to_string().contains("thin"), "{e}");
    }

    /// A PV with its label in sector 1 and one metadata area of `mda_size` bytes at 4096
    /// whose text starts at `text_off` inside the area (wrapping when it runs past its end).
    fn pv_image(mda_size: u64, text_off: u64, text: &[u8]) -> Vec<u8> {
        let mut img = vec![0u8; 64 << 10];
        let sec = &mut img[512..1024];
        sec[0..8].copy_from_slice(LABEL_ID);
        sec[8..16].copy_from_slice(&1u64.to_le_bytes());
        sec[20..24].copy_from_slice(&32u32.to_le_bytes());
        sec[24..32].copy_from_slice(LABEL_TYPE);
        sec[32..64].copy_from_slice(b"5JpAuBEu4RZG2rx93IY4Wofe0EYdJJ0k");
        sec[64..72].copy_from_slice(&(64u64 << 10).to_le_bytes());
        // Data area (offset, size), end, metadata area, end.
        sec[72..80].copy_from_slice(&(32u64 << 10).to_le_bytes());
        sec[104..112].copy_from_slice(&4096u64.to_le_bytes());
        sec[112..120].copy_from_slice(&mda_size.to_le_bytes());
        let c = crc(INITIAL_CRC, &sec[20..]);
        sec[16..20].copy_from_slice(&c.to_le_bytes());
        let area = 4096usize;
        let first = text.len().min((mda_size - text_off) as usize);
        let at = area + text_off as usize;
        img[at..at + first].copy_from_slice(&text[..first]);
        img[area + 512..area + 512 + text.len() - first].copy_from_slice(&text[first..]);
        let h = &mut img[area..area + 512];
        h[4..20].copy_from_slice(MDA_MAGIC);
        h[20..24].copy_from_slice(&1u32.to_le_bytes());
        h[24..32].copy_from_slice(&4096u64.to_le_bytes());
        h[32..40].copy_from_slice(&mda_size.to_le_bytes());
        h[40..48].copy_from_slice(&text_off.to_le_bytes());
        h[48..56].copy_from_slice(&(text.len() as u64).to_le_bytes());
        h[56..60].copy_from_slice(&crc(INITIAL_CRC, text).to_le_bytes());
        let c = crc(INITIAL_CRC, &h[4..]);
        h[0..4].copy_from_slice(&c.to_le_bytes());
        img
    }

    #[test]
    fn probe_agrees_with_the_strict_readers() {
        for (mda_size, text_off) in [(8192, 512), (4096, 4000)] {
            let mut c = io::Cursor::new(pv_image(mda_size, text_off, TEXT.as_bytes()));
            let label = PvLabel::read(&mut c).unwrap();
            let mda = read_metadata_area(&mut c, label.metadata_areas[0]).unwrap();
            assert_eq!(mda.wrapped, text_off == 4000);
            let vg = Vg::from_section(&parse_text(&mda.text.unwrap()).unwrap()).unwrap();
            let p = probe(&mut c).unwrap().unwrap();
            assert_eq!(p.pv_uuid, vg.pvs[0].id);
            assert_eq!(p.pv_uuid, format_uuid(&label.pv_uuid));
            assert_eq!(p.vg_name.as_deref(), Some(vg.name.as_str()));
        }
    }

    #[test]
    fn probe_needs_no_checksums_and_tolerates_unreadable_metadata() {
        let mut img = pv_image(8192, 512, TEXT.as_bytes());
        img[512 + 16] ^= 1; // label checksum
        img[4096] ^= 1; // metadata area header checksum
        img[4096 + 512 + 2] = b'X'; // metadata text (its checksum)
        let mut c = io::Cursor::new(img);
        assert!(PvLabel::read(&mut c).is_err());
        let p = probe(&mut c).unwrap().unwrap();
        assert_eq!(p.pv_uuid, "5JpAuB-Eu4R-ZG2r-x93I-Y4Wo-fe0E-YdJJ0k");
        assert_eq!(p.vg_name.as_deref(), Some("vgX"));
        // Metadata pointing outside its area: a PV without a VG name.
        c.get_mut()[4096 + 40..4096 + 48].copy_from_slice(&9000u64.to_le_bytes());
        assert_eq!(probe(&mut c).unwrap().unwrap().vg_name, None);
        // A bad UUID or no label type: not a PV.
        c.get_mut()[512 + 40] = b'-';
        assert_eq!(probe(&mut c).unwrap(), None);
        let mut c = io::Cursor::new(pv_image(8192, 512, TEXT.as_bytes()));
        c.get_mut()[512 + 24] = b'X';
        assert_eq!(probe(&mut c).unwrap(), None);
        assert_eq!(probe(&mut io::Cursor::new(vec![0u8; 1000])).unwrap(), None);
    }

    #[test]
    fn syntax_errors_are_errors() {
        for bad in [
            "a {",
            "a = ",
            "a = [1, 2",
            "a = \"x",
            "{",
            "a b",
            &"a{".repeat(100),
        ] {
            assert!(parse_text(bad).is_err(), "{bad}");
        }
    }
}

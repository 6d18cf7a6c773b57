//! The job journal: where a conversion stands, kept on the mirror disk between the GPT
//! and the first partition (bytes 512 KiB..1 MiB, which the planned layout leaves free),
//! so a power cut loses at most the step in progress. Two slots written alternately,
//! each with a sequence number and a CRC: a torn write leaves the other slot valid.

use super::plan::{ArrayRole, ConvertPlan};
use crate::formats::gpt::crc32;
use serde::{Deserialize, Serialize};
use std::io::{Read, Seek, SeekFrom, Write};

pub const SLOT_OFFSETS: [u64; 2] = [512 << 10, 768 << 10];
pub const SLOT_SIZE: usize = 256 << 10;
const MAGIC: &[u8; 16] = b"XENRAID-JOURNAL1";
const HEADER: usize = 32;

/// How far the job got. Each phase is entered only after the previous one is durable.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Phase {
    /// Plan recorded; the mirror may be partly partitioned.
    Planned,
    /// Mirror partitioned and its superblocks written.
    MirrorReady,
    /// Every array copied and verified (read-back and e2fsck).
    Copied,
    /// The new root is configured and the mirror bootable on its own.
    Configured,
    /// From here the source's old contents are gone: the mirror is the only copy.
    SourcePartitioned,
    /// The source's partitions are members; resync runs.
    SourceAttached,
    Done,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Journal {
    pub seq: u64,
    pub phase: Phase,
    /// Arrays whose copy is verified (during `MirrorReady`).
    pub copied: Vec<ArrayRole>,
    pub plan: ConvertPlan,
    /// Files changed in the target, with their backups.
    pub files_changed: Vec<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum JournalError {
    #[error("journal I/O: {0}")]
    Io(#[from] std::io::Error),
    #[error("the journal is {0} bytes, more than a slot holds ({SLOT_SIZE}): report this bug")]
    TooBig(usize),
    #[error("journal encoding: {0}")]
    Json(#[from] serde_json::Error),
}

/// Reads the newest valid slot; `None` when neither slot holds a journal.
pub fn read<R: Read + Seek>(r: &mut R) -> Result<Option<Journal>, JournalError> {
    let mut best: Option<Journal> = None;
    for off in SLOT_OFFSETS {
        let mut buf = vec![0u8; SLOT_SIZE];
        r.seek(SeekFrom::Start(off))?;
        if r.read_exact(&mut buf).is_err() {
            continue;
        }
        let Some(j) = decode(&buf) else { continue };
        if best.as_ref().is_none_or(|b| j.seq > b.seq) {
            best = Some(j);
        }
    }
    Ok(best)
}

fn decode(buf: &[u8]) -> Option<Journal> {
    if &buf[..16] != MAGIC {
        return None;
    }
    let len = u32::from_le_bytes(buf[16..20].try_into().ok()?) as usize;
    let crc = u32::from_le_bytes(buf[20..24].try_into().ok()?);
    let body = buf.get(HEADER..HEADER.checked_add(len)?)?;
    (crc32(body) == crc)
        .then(|| serde_json::from_slice(body).ok())
        .flatten()
}

/// Writes `j` (with the next sequence number) into the older slot and flushes it.
pub fn write<W: Write + Seek>(
    w: &mut W,
    j: &mut Journal,
    flush: impl FnOnce(&mut W) -> std::io::Result<()>,
) -> Result<(), JournalError> {
    j.seq += 1;
    let body = serde_json::to_vec(j)?;
    if body.len() + HEADER > SLOT_SIZE {
        return Err(JournalError::TooBig(body.len()));
    }
    let mut buf = vec![0u8; SLOT_SIZE];
    buf[..16].copy_from_slice(MAGIC);
    buf[16..20].copy_from_slice(&(body.len() as u32).to_le_bytes());
    buf[20..24].copy_from_slice(&crc32(&body).to_le_bytes());
    buf[HEADER..HEADER + body.len()].copy_from_slice(&body);
    w.seek(SeekFrom::Start(SLOT_OFFSETS[(j.seq % 2) as usize]))?;
    w.write_all(&buf)?;
    flush(w)?;
    Ok(())
}

/// Wipes both slots (after a finished job nothing needs them, but keeping them lets a
/// rerun say "already converted"; used by tests and by `rescue.wipe`).
pub fn erase<W: Write + Seek>(w: &mut W) -> std::io::Result<()> {
    for off in SLOT_OFFSETS {
        w.seek(SeekFrom::Start(off))?;
        w.write_all(&vec![0u8; SLOT_SIZE])?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::convert::plan::DiskRef;
    use std::io::Cursor;

    fn journal() -> Journal {
        let disk = DiskRef {
            name: "vdb".into(),
            path: "/dev/vdb".into(),
            serial: Some("M".into()),
            size_bytes: 1 << 30,
        };
        Journal {
            seq: 0,
            phase: Phase::Planned,
            copied: Vec::new(),
            plan: ConvertPlan {
                source: disk.clone(),
                mirror: disk,
                sector_size: 512,
                source_disk_guid: "A".into(),
                mirror_disk_guid: "B".into(),
                source_new_disk_guid: "C".into(),
                partitions: Vec::new(),
                mirror_partition_guids: Default::default(),
                source_partition_guids: Default::default(),
                protective_mbr_active: false,
                arrays: Vec::new(),
                room: String::new(),
                bytes_to_copy: 0,
                label_suffix: "abcdef".into(),
                attach_source: true,
                wait_resync: false,
                files_to_change: Vec::new(),
                chroot_commands: Vec::new(),
                journal_replay: Vec::new(),
                efi: None,
                boot_chain: Default::default(),
            },
            files_changed: Vec::new(),
        }
    }

    #[test]
    fn newest_valid_slot_wins_and_a_torn_write_falls_back() {
        let mut disk = Cursor::new(vec![0u8; 2 << 20]);
        assert_eq!(read(&mut disk).unwrap(), None);
        let mut j = journal();
        write(&mut disk, &mut j, |_| Ok(())).unwrap();
        j.phase = Phase::MirrorReady;
        j.copied.push(ArrayRole::Root);
        write(&mut disk, &mut j, |_| Ok(())).unwrap();
        let got = read(&mut disk).unwrap().unwrap();
        assert_eq!(
            (got.seq, got.phase, got.copied.clone()),
            (2, Phase::MirrorReady, vec![ArrayRole::Root])
        );
        // A torn write of the next record (slot of seq 3) leaves seq 2 in force.
        let slot = SLOT_OFFSETS[1] as usize;
        disk.get_mut()[slot + HEADER + 10] ^= 0xff;
        let got = read(&mut disk).unwrap().unwrap();
        assert_eq!(got.seq, 2);
        j.phase = Phase::Copied;
        write(&mut disk, &mut j, |_| Ok(())).unwrap();
        assert_eq!(read(&mut disk).unwrap().unwrap().phase, Phase::Copied);
        // Corrupt the newest: the previous one is read.
        let newest = SLOT_OFFSETS[(j.seq % 2) as usize] as usize;
        disk.get_mut()[newest + HEADER + 3] ^= 0x55;
        assert_eq!(read(&mut disk).unwrap().unwrap().phase, Phase::MirrorReady);
        erase(&mut disk).unwrap();
        assert_eq!(read(&mut disk).unwrap(), None);
    }

    #[test]
    fn phases_are_ordered_as_the_job_runs() {
        assert!(
            Phase::Planned < Phase::MirrorReady
                && Phase::Configured < Phase::SourcePartitioned
                && Phase::SourceAttached < Phase::Done
        );
    }
}

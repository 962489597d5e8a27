//! On-disk format: journal and snapshot files, record framing, replay scanning and the
//! append-only journal writer.
//!
//! # Data directory
//!
//! ```text
//! <dir>/LOCK                          held with an exclusive file lock while an engine has the dir open
//! <dir>/snapshot-<gen:016x>.snap      complete state as of the start of journal <gen> (optional)
//! <dir>/snapshot-<gen:016x>.tmp       a snapshot being written (ignored and deleted on open)
//! <dir>/journal-<gen:016x>.log        write records appended after snapshot <gen> was cut
//! ```
//!
//! # File layout
//!
//! Both kinds of file start with a 16-byte header, `b"DPJRNL01"` (journal) or `b"DPSNAP01"`
//! (snapshot) followed by the generation as u64 LE, then a sequence of frames:
//!
//! ```text
//! len: u32 LE      payload length, 1..=MAX_RECORD
//! crc: u32 LE      CRC-32C (Castagnoli) of the payload
//! payload          a record, see crate::record
//! ```
//!
//! A snapshot's records are `SnapshotBegin{gen}`, then `CreateCollection`, `CreateIndex` and
//! `Insert` records, then `SnapshotEnd`; it is written to `.tmp`, fsynced and renamed, so a
//! `.snap` file is always complete.
//!
//! # Replay
//!
//! Let S be the highest snapshot generation (0 and an empty state when there is none). The state is
//! snapshot S followed by every journal with generation >= S, in order. Older files are garbage.
//!
//! # Torn tails and corruption
//!
//! Only the newest journal may end in a torn record (the process or machine died mid-append); it
//! is detected and the file is truncated to the last complete record. A frame is *torn* when fewer
//! than 8 header bytes remain, when its length runs past the end of the file, when the CRC fails
//! on the very last frame of the file, or when the rest of the file is all zero bytes (blocks
//! allocated but never written) — provided no complete, checksum-valid frame follows: a crash
//! leaves a prefix of one frame, so a valid frame further on means a damaged length, not a tear.
//! Any other failure — a bad CRC followed by more data, an undecodable payload, a bad header, a
//! damaged non-final journal or snapshot, a gap in the generations — is corruption: opening fails
//! with an error naming the file and byte offset, and nothing is truncated.
//!
//! # Compaction
//!
//! When the journal is much larger than the live data (see `EngineOptions`), or on
//! `Engine::compact`, the engine freezes all collections for a moment, fsyncs journal N, starts
//! journal N+1 and releases the locks; it then writes snapshot N+1 from the frozen documents and
//! deletes the files older than N+1. A crash at any point leaves a replayable set: before the
//! rename, snapshot N (or none) + journals N, N+1; after it, snapshot N+1 + journal N+1.
//!
//! # Durability
//!
//! Every acknowledged write was `write()`n to the journal (one `write_all` per batch of records)
//! before the call returned, which survives `kill -9`. The journal is fsynced every 100 ms by the
//! engine's background thread, or per write with `sync_every_write`, and on demand by
//! `Engine::sync_journal` (what `j: true` waits for). A failed append is rolled
//! back with `set_len` so a partial frame is never followed by good ones; if that fails too, the
//! writer refuses all further appends.

use std::fs::{self, File, OpenOptions};
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use docplane_query::CommandError;

use crate::record::{self, Record, RecordRef};

/// Largest payload accepted (a 16 MiB document plus generous overhead).
pub(crate) const MAX_RECORD: usize = 64 << 20;
const FRAME_HEADER: usize = 8;
const FILE_HEADER: usize = 16;
const JOURNAL_MAGIC: &[u8; 8] = b"DPJRNL01";
const SNAPSHOT_MAGIC: &[u8; 8] = b"DPSNAP01";

/// Errors of opening, replaying and flushing the data directory.
#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    /// An I/O operation on a file failed.
    #[error("I/O error on {path}: {source}")]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The underlying error.
        source: io::Error,
    },
    /// A record that is not a torn tail failed its checks.
    #[error("corrupt data in {path} at offset {offset}: {reason}")]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// Byte offset of the bad frame.
        offset: u64,
        /// What was wrong.
        reason: String,
    },
    /// Another engine (probably another process) holds the directory.
    #[error("data directory {path} is in use by another process")]
    Locked {
        /// The directory.
        path: PathBuf,
    },
}

impl StorageError {
    pub(crate) fn io(path: &Path, source: io::Error) -> Self {
        StorageError::Io { path: path.to_path_buf(), source }
    }
}

impl From<StorageError> for CommandError {
    fn from(e: StorageError) -> Self {
        crate::internal_error("the storage engine", e)
    }
}

/// Kinds of data files.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum FileKind {
    Journal,
    Snapshot,
}

impl FileKind {
    fn magic(self) -> &'static [u8; 8] {
        match self {
            FileKind::Journal => JOURNAL_MAGIC,
            FileKind::Snapshot => SNAPSHOT_MAGIC,
        }
    }
}

pub(crate) fn journal_path(dir: &Path, generation: u64) -> PathBuf {
    dir.join(format!("journal-{generation:016x}.log"))
}
pub(crate) fn snapshot_path(dir: &Path, generation: u64) -> PathBuf {
    dir.join(format!("snapshot-{generation:016x}.snap"))
}
fn snapshot_tmp_path(dir: &Path, generation: u64) -> PathBuf {
    dir.join(format!("snapshot-{generation:016x}.tmp"))
}

/// Parses a data file name into its kind and generation (`None` for other files).
pub(crate) fn parse_file_name(name: &str) -> Option<(FileKind, u64)> {
    let (kind, rest) = if let Some(r) = name.strip_prefix("journal-") {
        (FileKind::Journal, r.strip_suffix(".log")?)
    } else if let Some(r) = name.strip_prefix("snapshot-") {
        (FileKind::Snapshot, r.strip_suffix(".snap")?)
    } else {
        return None;
    };
    if rest.len() != 16 {
        return None;
    }
    u64::from_str_radix(rest, 16).ok().map(|g| (kind, g))
}

/// The data files of a directory, sorted by generation; stale `.tmp` snapshots are deleted.
#[derive(Debug, Default)]
pub(crate) struct DirListing {
    pub snapshots: Vec<u64>,
    pub journals: Vec<u64>,
}

pub(crate) fn list_dir(dir: &Path) -> Result<DirListing, StorageError> {
    let mut out = DirListing::default();
    for entry in fs::read_dir(dir).map_err(|e| StorageError::io(dir, e))? {
        let entry = entry.map_err(|e| StorageError::io(dir, e))?;
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        if name.starts_with("snapshot-") && name.ends_with(".tmp") {
            let p = entry.path();
            fs::remove_file(&p).map_err(|e| StorageError::io(&p, e))?;
            continue;
        }
        match parse_file_name(name) {
            Some((FileKind::Journal, g)) => out.journals.push(g),
            Some((FileKind::Snapshot, g)) => out.snapshots.push(g),
            None => {}
        }
    }
    out.snapshots.sort_unstable();
    out.journals.sort_unstable();
    Ok(out)
}

/// Appends one framed record to `buf`.
pub(crate) fn frame_record(buf: &mut Vec<u8>, rec: RecordRef<'_>) -> Result<(), CommandError> {
    let start = buf.len();
    buf.extend_from_slice(&[0u8; FRAME_HEADER]);
    if let Err(e) = rec.encode(buf) {
        buf.truncate(start);
        return Err(CommandError::bad_value(e));
    }
    let len = buf.len() - start - FRAME_HEADER;
    if len > MAX_RECORD {
        buf.truncate(start);
        return Err(CommandError::new(10334, "BSONObjectTooLarge", "object to insert too large"));
    }
    let crc = crc32c::crc32c(&buf[start + FRAME_HEADER..]);
    buf[start..start + 4].copy_from_slice(&(len as u32).to_le_bytes());
    buf[start + 4..start + 8].copy_from_slice(&crc.to_le_bytes());
    Ok(())
}

fn file_header(kind: FileKind, generation: u64) -> [u8; FILE_HEADER] {
    let mut h = [0u8; FILE_HEADER];
    h[..8].copy_from_slice(kind.magic());
    h[8..].copy_from_slice(&generation.to_le_bytes());
    h
}

/// How a scan of a file ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ScanEnd {
    /// Every byte belonged to a complete frame.
    Clean,
    /// A torn tail starts at this offset (only reported when `allow_torn`).
    Torn(u64),
}

/// Scans the frames of one file's bytes, calling `apply` for each record in order.
///
/// `allow_torn` is true only for the newest journal. An error of `apply` is reported as
/// corruption at the record's offset. `apply` also gets the payload length.
pub(crate) fn scan_file(
    path: &Path,
    data: &[u8],
    kind: FileKind,
    generation: u64,
    allow_torn: bool,
    mut apply: impl FnMut(Record, usize) -> Result<(), String>,
) -> Result<ScanEnd, StorageError> {
    let corrupt = |offset: usize, reason: String| StorageError::Corrupt {
        path: path.to_path_buf(),
        offset: offset as u64,
        reason,
    };
    if data.len() < FILE_HEADER {
        let torn_header =
            data.iter().all(|b| *b == 0) || kind.magic().starts_with(&data[..data.len().min(8)]);
        if allow_torn && torn_header {
            return Ok(ScanEnd::Torn(0));
        }
        return Err(corrupt(0, format!("file header truncated ({} bytes)", data.len())));
    }
    if &data[..8] != kind.magic() {
        return Err(corrupt(0, "bad file magic".into()));
    }
    let mut g = [0u8; 8];
    g.copy_from_slice(&data[8..16]);
    if u64::from_le_bytes(g) != generation {
        return Err(corrupt(
            8,
            format!("header generation {} does not match the file name", u64::from_le_bytes(g)),
        ));
    }
    let mut pos = FILE_HEADER;
    while pos < data.len() {
        let rest = &data[pos..];
        let torn = |why: &str| -> Result<ScanEnd, StorageError> {
            if !allow_torn {
                return Err(corrupt(pos, format!("truncated frame: {why}")));
            }
            // A crash leaves a prefix of one frame; a complete valid frame further on means the
            // bytes here were damaged (e.g. a corrupted length), not torn.
            if let Some(at) = find_valid_frame(data, pos + 1) {
                return Err(corrupt(pos, format!("{why}, but a valid frame follows at offset {at}")));
            }
            Ok(ScanEnd::Torn(pos as u64))
        };
        if rest.len() < FRAME_HEADER {
            return torn("short frame header");
        }
        let len = u32::from_le_bytes([rest[0], rest[1], rest[2], rest[3]]) as usize;
        let crc = u32::from_le_bytes([rest[4], rest[5], rest[6], rest[7]]);
        if len == 0 || len > MAX_RECORD {
            if rest.iter().all(|b| *b == 0) {
                return torn("zero-filled tail");
            }
            return Err(corrupt(pos, format!("invalid frame length {len}")));
        }
        if len > rest.len() - FRAME_HEADER {
            return torn("frame runs past end of file");
        }
        let payload = &rest[FRAME_HEADER..FRAME_HEADER + len];
        let end = pos + FRAME_HEADER + len;
        if crc32c::crc32c(payload) != crc {
            if end == data.len() || data[end..].iter().all(|b| *b == 0) {
                return torn("checksum mismatch on the last frame");
            }
            return Err(corrupt(pos, "checksum mismatch".into()));
        }
        let rec = record::decode(payload).map_err(|e| corrupt(pos, e))?;
        apply(rec, len).map_err(|e| corrupt(pos, e))?;
        pos = end;
    }
    Ok(ScanEnd::Clean)
}

/// The first offset at or after `from` where a complete frame with a valid checksum and a
/// decodable payload starts. Used only on the (rare) torn-tail path.
fn find_valid_frame(data: &[u8], from: usize) -> Option<usize> {
    let mut at = from;
    while at + FRAME_HEADER < data.len() {
        let h = &data[at..];
        let len = u32::from_le_bytes([h[0], h[1], h[2], h[3]]) as usize;
        let fits = len > 0 && len <= MAX_RECORD && len <= h.len() - FRAME_HEADER;
        // Cheap filters first: the payload must start with a known op.
        if fits && (1..=11).contains(&h[FRAME_HEADER]) {
            let crc = u32::from_le_bytes([h[4], h[5], h[6], h[7]]);
            let payload = &h[FRAME_HEADER..FRAME_HEADER + len];
            if crc32c::crc32c(payload) == crc && record::decode(payload).is_ok() {
                return Some(at);
            }
        }
        at += 1;
    }
    None
}

fn sync_dir(dir: &Path) -> Result<(), StorageError> {
    File::open(dir).and_then(|f| f.sync_all()).map_err(|e| StorageError::io(dir, e))
}

/// The append side of the newest journal.
#[derive(Debug)]
pub(crate) struct JournalWriter {
    file: Arc<File>,
    path: PathBuf,
    generation: u64,
    len: u64,
    failed: Option<String>,
    sync_every_write: bool,
}

impl JournalWriter {
    /// Creates journal `generation` (fails if it exists), writes its header and fsyncs it.
    pub(crate) fn create(dir: &Path, generation: u64, sync_every_write: bool) -> Result<Self, StorageError> {
        let path = journal_path(dir, generation);
        let mut file = crate::files::private_options()
            .create_new(true)
            .append(true)
            .open(&path)
            .map_err(|e| StorageError::io(&path, e))?;
        file.write_all(&file_header(FileKind::Journal, generation))
            .map_err(|e| StorageError::io(&path, e))?;
        file.sync_all().map_err(|e| StorageError::io(&path, e))?;
        sync_dir(dir)?;
        Ok(JournalWriter {
            file: Arc::new(file),
            path,
            generation,
            len: FILE_HEADER as u64,
            failed: None,
            sync_every_write,
        })
    }

    /// Reopens an existing journal for appending after truncating it to `valid_len` (the end of
    /// its last complete frame, or 0 when even the header was torn).
    pub(crate) fn reopen(
        dir: &Path,
        generation: u64,
        valid_len: u64,
        sync_every_write: bool,
    ) -> Result<Self, StorageError> {
        let path = journal_path(dir, generation);
        if valid_len < FILE_HEADER as u64 {
            fs::remove_file(&path).map_err(|e| StorageError::io(&path, e))?;
            return Self::create(dir, generation, sync_every_write);
        }
        let file = OpenOptions::new().append(true).open(&path).map_err(|e| StorageError::io(&path, e))?;
        let actual = file.metadata().map_err(|e| StorageError::io(&path, e))?.len();
        if actual != valid_len {
            tracing::warn!(path = %path.display(), valid_len, actual, "truncating torn journal tail");
            file.set_len(valid_len).map_err(|e| StorageError::io(&path, e))?;
            file.sync_all().map_err(|e| StorageError::io(&path, e))?;
        }
        Ok(JournalWriter {
            file: Arc::new(file),
            path,
            generation,
            len: valid_len,
            failed: None,
            sync_every_write,
        })
    }

    pub(crate) fn generation(&self) -> u64 {
        self.generation
    }

    /// Bytes in the current journal file.
    pub(crate) fn len(&self) -> u64 {
        self.len
    }

    /// A handle the background flusher can fsync without holding the writer's lock.
    pub(crate) fn sync_handle(&self) -> Arc<File> {
        Arc::clone(&self.file)
    }

    /// Appends already framed records with one `write_all`; on failure the file is cut back so
    /// no partial frame remains.
    pub(crate) fn append(&mut self, buf: &[u8]) -> Result<(), CommandError> {
        if let Some(f) = &self.failed {
            return Err(crate::internal_error(
                "writing the journal (unavailable since an earlier failure)",
                f,
            ));
        }
        if buf.is_empty() {
            return Ok(());
        }
        let res = (&*self.file)
            .write_all(buf)
            .and_then(|()| if self.sync_every_write { self.file.sync_data() } else { Ok(()) });
        match res {
            Ok(()) => {
                self.len += buf.len() as u64;
                Ok(())
            }
            Err(e) => {
                let msg = format!("journal write to {} failed: {e}", self.path.display());
                if let Err(e2) = self.file.set_len(self.len) {
                    self.failed = Some(format!("{msg}; rollback failed: {e2}"));
                }
                Err(crate::internal_error("writing the journal", msg))
            }
        }
    }

    /// fsyncs the journal.
    pub(crate) fn sync(&self) -> Result<(), StorageError> {
        self.file.sync_data().map_err(|e| StorageError::io(&self.path, e))
    }
}

/// Writes snapshot `generation` from `records` (framed here) atomically: `.tmp`, fsync, rename,
/// fsync of the directory.
pub(crate) fn write_snapshot<'a>(
    dir: &Path,
    generation: u64,
    records: impl Iterator<Item = RecordRef<'a>>,
) -> Result<(), StorageError> {
    let tmp = snapshot_tmp_path(dir, generation);
    let file = crate::files::create_private(&tmp).map_err(|e| StorageError::io(&tmp, e))?;
    let mut w = BufWriter::with_capacity(1 << 20, file);
    let io = |e| StorageError::io(&tmp, e);
    w.write_all(&file_header(FileKind::Snapshot, generation)).map_err(io)?;
    let mut buf = Vec::new();
    let mut put = |w: &mut BufWriter<File>, r: RecordRef<'_>| -> Result<(), StorageError> {
        buf.clear();
        frame_record(&mut buf, r).map_err(|e| StorageError::Corrupt {
            path: tmp.clone(),
            offset: 0,
            reason: e.message,
        })?;
        w.write_all(&buf).map_err(|e| StorageError::io(&tmp, e))
    };
    put(&mut w, RecordRef::SnapshotBegin { generation })?;
    for r in records {
        put(&mut w, r)?;
    }
    put(&mut w, RecordRef::SnapshotEnd)?;
    let file = w.into_inner().map_err(|e| StorageError::io(&tmp, e.into_error()))?;
    file.sync_all().map_err(io)?;
    drop(file);
    let fin = snapshot_path(dir, generation);
    fs::rename(&tmp, &fin).map_err(|e| StorageError::io(&fin, e))?;
    sync_dir(dir)
}

/// Deletes snapshots and journals older than `generation`.
pub(crate) fn remove_older_than(dir: &Path, generation: u64) -> Result<(), StorageError> {
    let listing = list_dir(dir)?;
    for g in listing.snapshots.iter().filter(|g| **g < generation) {
        let p = snapshot_path(dir, *g);
        fs::remove_file(&p).map_err(|e| StorageError::io(&p, e))?;
    }
    for g in listing.journals.iter().filter(|g| **g < generation) {
        let p = journal_path(dir, *g);
        fs::remove_file(&p).map_err(|e| StorageError::io(&p, e))?;
    }
    sync_dir(dir)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use bson::doc;

    fn rec(i: i32) -> Record {
        Record::Insert { db: "d".into(), coll: "c".into(), doc: doc! {"_id": i, "pad": "x".repeat(20)} }
    }

    fn file_with(n: i32) -> (Vec<u8>, Vec<usize>) {
        let mut data = file_header(FileKind::Journal, 3).to_vec();
        let mut ends = Vec::new();
        for i in 0..n {
            frame_record(&mut data, rec(i).as_ref()).unwrap();
            ends.push(data.len());
        }
        (data, ends)
    }

    fn scan(data: &[u8], allow_torn: bool) -> Result<(ScanEnd, Vec<Record>), StorageError> {
        let mut out = Vec::new();
        let end = scan_file(Path::new("j"), data, FileKind::Journal, 3, allow_torn, |r, _| {
            out.push(r);
            Ok(())
        })?;
        Ok((end, out))
    }

    #[test]
    fn names_roundtrip() {
        let p = journal_path(Path::new("/x"), 0xab);
        let name = p.file_name().unwrap().to_str().unwrap();
        assert_eq!(parse_file_name(name), Some((FileKind::Journal, 0xab)));
        let p = snapshot_path(Path::new("/x"), 7);
        assert_eq!(parse_file_name(p.file_name().unwrap().to_str().unwrap()), Some((FileKind::Snapshot, 7)));
        assert_eq!(parse_file_name("journal-12.log"), None);
        assert_eq!(parse_file_name("LOCK"), None);
    }

    #[test]
    fn clean_file_yields_all_records() {
        let (data, _) = file_with(5);
        let (end, recs) = scan(&data, false).unwrap();
        assert_eq!(end, ScanEnd::Clean);
        assert_eq!(recs, (0..5).map(rec).collect::<Vec<_>>());
    }

    #[test]
    fn every_truncation_point_is_a_torn_tail_keeping_complete_records() {
        let (data, ends) = file_with(4);
        for cut in FILE_HEADER..data.len() {
            let (end, recs) = scan(&data[..cut], true).unwrap();
            let complete = ends.iter().filter(|e| **e <= cut).count();
            assert_eq!(recs.len(), complete, "cut {cut}");
            let expect = if ends.contains(&cut) || cut == FILE_HEADER {
                ScanEnd::Clean
            } else {
                ScanEnd::Torn(if complete == 0 { FILE_HEADER as u64 } else { ends[complete - 1] as u64 })
            };
            assert_eq!(end, expect, "cut {cut}");
            if !ends.contains(&cut) && cut != FILE_HEADER {
                assert!(scan(&data[..cut], false).is_err());
            }
        }
    }

    #[test]
    fn corrupted_length_in_the_middle_is_not_a_torn_tail() {
        let (mut data, ends) = file_with(4);
        // Make record 2's length run past the end of the file.
        let big = (data.len() as u32).to_le_bytes();
        data[ends[0]..ends[0] + 4].copy_from_slice(&big);
        match scan(&data, true) {
            Err(StorageError::Corrupt { offset, reason, .. }) => {
                assert_eq!(offset, ends[0] as u64);
                assert!(reason.contains("valid frame follows"), "{reason}");
            }
            other => panic!("expected corruption, got {other:?}"),
        }
    }

    #[test]
    fn zero_filled_tail_is_torn() {
        let (mut data, ends) = file_with(2);
        data.extend_from_slice(&[0u8; 100]);
        let (end, recs) = scan(&data, true).unwrap();
        assert_eq!(recs.len(), 2);
        assert_eq!(end, ScanEnd::Torn(ends[1] as u64));
    }

    #[test]
    fn corruption_in_the_middle_names_the_offset() {
        let (mut data, ends) = file_with(4);
        data[ends[1] + 12] ^= 0x40; // inside the payload of record 2
        match scan(&data, true) {
            Err(StorageError::Corrupt { offset, path, .. }) => {
                assert_eq!(offset, ends[1] as u64);
                assert_eq!(path, Path::new("j"));
            }
            other => panic!("expected corruption, got {other:?}"),
        }
    }

    #[test]
    fn bad_crc_on_last_frame_is_torn_only_in_newest_file() {
        let (mut data, ends) = file_with(3);
        let last = data.len() - 1;
        data[last] ^= 1;
        assert_eq!(scan(&data, true).unwrap().0, ScanEnd::Torn(ends[1] as u64));
        assert!(scan(&data, false).is_err());
    }

    #[test]
    fn bad_header_is_corruption() {
        let (mut data, _) = file_with(1);
        data[0] = b'X';
        assert!(matches!(scan(&data, true), Err(StorageError::Corrupt { offset: 0, .. })));
        let (mut data, _) = file_with(1);
        data[8] = 9; // wrong generation
        assert!(scan(&data, true).is_err());
        // A torn header of the newest journal is an empty journal.
        assert_eq!(scan(&JOURNAL_MAGIC[..5], true).unwrap().0, ScanEnd::Torn(0));
    }

    #[test]
    fn writer_appends_and_reopens() {
        let dir = tempfile::tempdir().unwrap();
        let mut w = JournalWriter::create(dir.path(), 1, false).unwrap();
        let mut buf = Vec::new();
        frame_record(&mut buf, rec(1).as_ref()).unwrap();
        w.append(&buf).unwrap();
        let good = w.len();
        // Simulate a torn append.
        (&*w.sync_handle()).write_all(&buf[..5]).unwrap();
        drop(w);
        let path = journal_path(dir.path(), 1);
        let data = fs::read(&path).unwrap();
        let end = scan_file(&path, &data, FileKind::Journal, 1, true, |_, _| Ok(())).unwrap();
        assert_eq!(end, ScanEnd::Torn(good));
        let mut w = JournalWriter::reopen(dir.path(), 1, good, false).unwrap();
        w.append(&buf).unwrap();
        let data = fs::read(&path).unwrap();
        let mut n = 0;
        assert_eq!(
            scan_file(&path, &data, FileKind::Journal, 1, false, |_, _| {
                n += 1;
                Ok(())
            })
            .unwrap(),
            ScanEnd::Clean
        );
        assert_eq!(n, 2);
    }

    #[test]
    fn snapshot_is_written_atomically() {
        let dir = tempfile::tempdir().unwrap();
        let recs: Vec<Record> = (0..3).map(rec).collect();
        write_snapshot(dir.path(), 4, recs.iter().map(|r| r.as_ref())).unwrap();
        let listing = list_dir(dir.path()).unwrap();
        assert_eq!(listing.snapshots, vec![4]);
        let path = snapshot_path(dir.path(), 4);
        let data = fs::read(&path).unwrap();
        let mut got = Vec::new();
        scan_file(&path, &data, FileKind::Snapshot, 4, false, |r, _| {
            got.push(r);
            Ok(())
        })
        .unwrap();
        assert_eq!(got.len(), 5);
        assert_eq!(got[0], Record::SnapshotBegin { generation: 4 });
        assert_eq!(got[4], Record::SnapshotEnd);
    }
}

//! The disk spool: export requests that cannot be sent now (their
//! endpoint's circuit breaker is open) are written, as framed and
//! compressed for the wire, to append-only segment files in a directory,
//! and replayed oldest first once the endpoint answers again. A segment is
//! deleted once every request in it is acknowledged, written back to the
//! spool, or failed for good (at-least-once). A pipeline started on a
//! directory replays what an earlier process left there; an exclusive lock
//! on the directory keeps a second process out.
//!
//! Durability: a segment is synced to disk when it is sealed (at its size,
//! when replay takes it, and when the spool closes); a crash of the machine
//! can lose the unsealed tail, a crash of the process cannot.

pub(crate) mod segment;

use std::collections::VecDeque;
use std::fs::File;
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

use parking_lot::Mutex;

use crate::config::{SpoolFull, SpoolSync};
use crate::error::Error;
pub(crate) use segment::Entry;

/// Reads a segment in replay, a record at a time.
pub(crate) type SegmentReader = segment::Reader<std::io::BufReader<File>>;

/// Counts of what the spool did, for `Stats`.
#[derive(Default)]
pub(crate) struct SpoolCounters {
    /// OTLP records written to the spool.
    pub(crate) spooled: AtomicU64,
    /// OTLP records replayed from it and acknowledged.
    pub(crate) replayed: AtomicU64,
    /// Spooled requests found corrupt (bad checksum, torn) and skipped.
    pub(crate) corrupt: AtomicU64,
    /// OTLP records replayed and refused for good (or that could not go
    /// back to the spool after a failed replay).
    pub(crate) failed: AtomicU64,
    /// OTLP records dropped with the oldest segment when the spool was full.
    pub(crate) dropped_full: AtomicU64,
    /// Writes and reads that failed (ENOSPC, EIO, ...); the request stayed
    /// in memory.
    pub(crate) errors: AtomicU64,
}

/// The read buffer of a segment in replay.
const READ_BUFFER: usize = 64 << 10;

struct Active {
    file: File,
    seq: u64,
    bytes: u64,
    /// When it was last synced (`SpoolSync::Every`).
    synced: std::time::Instant,
}

struct State {
    active: Option<Active>,
    /// Sealed segments, oldest first: (sequence, bytes).
    sealed: VecDeque<(u64, u64)>,
    /// The segments being replayed, not to be dropped under them.
    replaying: Vec<u64>,
    total: u64,
    next_seq: u64,
}

/// An open spool directory.
pub(crate) struct Spool {
    dir: PathBuf,
    max_bytes: u64,
    segment_bytes: u64,
    /// Holds the directory's lock for the spool's life.
    _lock: File,
    sync: SpoolSync,
    full: SpoolFull,
    state: Mutex<State>,
    pub(crate) counters: SpoolCounters,
}

/// Why a request could not be spooled.
#[derive(Debug)]
pub(crate) enum SpoolError {
    /// Full, with nothing older to drop.
    Full,
    Io(std::io::Error),
}

impl Spool {
    /// Opens (creating) `dir`, takes its lock, and finds the segments an
    /// earlier process left, to replay.
    pub(crate) fn open(
        dir: &Path,
        max_bytes: u64,
        sync: SpoolSync,
        full: SpoolFull,
    ) -> Result<Spool, Error> {
        let fail = |what: &str, e: std::io::Error| {
            Error::config(format!("spool {}: {what}: {e}", dir.display()))
        };
        // What the spool holds is telemetry, often with user data in it:
        // its directory, when it makes it, and its files are the owner's
        // alone; and nothing in it is opened through a symbolic link (the
        // lock was opened with truncation, so a link planted in a shared
        // directory emptied the file it named).
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .map_err(|e| fail("cannot create it", e))?;
        check_private(dir)?;
        let lock = private_file()
            .write(true)
            .create(true)
            .open(dir.join("lock"))
            .map_err(|e| fail("cannot open its lock", e))?;
        // SAFETY: flock on a descriptor we own for the call's duration; no
        // memory is passed.
        let locked = unsafe {
            libc::flock(
                std::os::fd::AsRawFd::as_raw_fd(&lock),
                libc::LOCK_EX | libc::LOCK_NB,
            )
        };
        if locked != 0 {
            return Err(Error::config(format!(
                "spool {}: in use by another process (its lock is held)",
                dir.display()
            )));
        }
        let mut found = Vec::new();
        for e in std::fs::read_dir(dir).map_err(|e| fail("cannot list it", e))? {
            let e = e.map_err(|e| fail("cannot list it", e))?;
            let name = e.file_name();
            let Some(seq) = name
                .to_str()
                .and_then(|n| n.strip_suffix(".seg"))
                .and_then(|n| n.parse::<u64>().ok())
            else {
                continue;
            };
            let bytes = e.metadata().map(|m| m.len()).unwrap_or(0);
            found.push((seq, bytes));
        }
        found.sort_unstable();
        let total = found.iter().map(|(_, b)| b).sum();
        let next_seq = found.last().map_or(1, |(s, _)| s + 1);
        Ok(Spool {
            dir: dir.to_owned(),
            max_bytes,
            segment_bytes: (max_bytes / 8).clamp(64 << 10, 4 << 20),
            _lock: lock,
            sync,
            full,
            state: Mutex::new(State {
                active: None,
                sealed: found.into(),
                replaying: Vec::new(),
                total,
                next_seq,
            }),
            counters: SpoolCounters::default(),
        })
    }

    fn path(&self, seq: u64) -> PathBuf {
        self.dir.join(format!("{seq:020}.seg"))
    }

    /// Writes one request. Over `max_bytes`, the oldest segment not being
    /// replayed is dropped (its records counted); with none to drop, the
    /// request is refused.
    pub(crate) fn append(&self, e: &Entry) -> Result<(), SpoolError> {
        let mut buf = Vec::with_capacity(e.request.len() + e.key.len() + 16);
        segment::encode(e, &mut buf);
        let len = buf.len() as u64;
        let mut st = self.state.lock();
        while st.total + len + segment::HEADER as u64 > self.max_bytes {
            if self.full == SpoolFull::Refuse {
                return Err(SpoolError::Full);
            }
            let victim = st
                .sealed
                .iter()
                .position(|(s, _)| !st.replaying.contains(s));
            let Some(i) = victim else {
                return Err(SpoolError::Full);
            };
            let (seq, bytes) = st.sealed.remove(i).unwrap_or_default();
            let path = self.path(seq);
            let lost: u64 = File::open(&path)
                .map(|f| {
                    let mut r = segment::Reader::new(std::io::BufReader::new(f));
                    std::iter::from_fn(|| r.next_entry())
                        .map(|e| e.items as u64)
                        .sum()
                })
                .unwrap_or(0);
            self.counters.dropped_full.fetch_add(lost, Relaxed);
            let _ = std::fs::remove_file(path);
            st.total -= bytes;
        }
        if st
            .active
            .as_ref()
            .is_some_and(|a| a.bytes + len > self.segment_bytes)
        {
            self.seal(&mut st);
        }
        if st.active.is_none() {
            let seq = st.next_seq;
            let mut file = private_file()
                .create_new(true)
                .append(true)
                .open(self.path(seq))
                .map_err(SpoolError::Io)?;
            file.write_all(&segment::header()).map_err(SpoolError::Io)?;
            st.next_seq += 1;
            st.total += segment::HEADER as u64;
            st.active = Some(Active {
                file,
                seq,
                bytes: segment::HEADER as u64,
                synced: std::time::Instant::now(),
            });
        }
        let Some(a) = st.active.as_mut() else {
            return Err(SpoolError::Full);
        };
        a.file.write_all(&buf).map_err(SpoolError::Io)?;
        a.bytes += len;
        if let SpoolSync::Every(d) = self.sync {
            if a.synced.elapsed() >= d {
                a.file.sync_data().map_err(SpoolError::Io)?;
                a.synced = std::time::Instant::now();
            }
        }
        st.total += len;
        self.counters.spooled.fetch_add(e.items as u64, Relaxed);
        Ok(())
    }

    /// Syncs and closes the active segment, making it replayable.
    fn seal(&self, st: &mut State) {
        if let Some(a) = st.active.take() {
            let synced = match self.sync {
                SpoolSync::Never => Ok(()),
                _ => a.file.sync_all(),
            };
            if let Err(e) = synced {
                self.counters.errors.fetch_add(1, Relaxed);
                log::warn!("otlpflow: spool: syncing a segment: {e}");
            }
            st.sealed.push_back((a.seq, a.bytes));
        }
    }

    /// The oldest segment not yet taken for replay, opened for reading
    /// (sealing the active one when no sealed one waits). It stays on disk
    /// until `done`; several may be in replay at once.
    pub(crate) fn next_segment(&self) -> Option<(u64, SegmentReader)> {
        let mut st = self.state.lock();
        let waiting = |st: &State| {
            st.sealed
                .iter()
                .map(|(s, _)| *s)
                .find(|s| !st.replaying.contains(s))
        };
        if waiting(&st).is_none() {
            self.seal(&mut st);
        }
        let seq = waiting(&st)?;
        st.replaying.push(seq);
        drop(st);
        match private_file().read(true).open(self.path(seq)) {
            Ok(f) => Some((
                seq,
                segment::Reader::new(std::io::BufReader::with_capacity(READ_BUFFER, f)),
            )),
            Err(e) => {
                self.counters.errors.fetch_add(1, Relaxed);
                log::warn!("otlpflow: spool: reading segment {seq}: {e}");
                self.done(seq);
                None
            }
        }
    }

    /// The next request of segment `seq` from `r`, or None at its end; the
    /// corrupt records skipped and a failed read are counted and logged.
    pub(crate) fn next_entry(&self, seq: u64, r: &mut SegmentReader) -> Option<Entry> {
        let before = r.corrupt;
        let e = r.next_entry();
        let skipped = r.corrupt - before;
        if skipped > 0 {
            self.counters.corrupt.fetch_add(skipped, Relaxed);
            log::warn!("otlpflow: spool: {skipped} corrupt request(s) skipped in segment {seq}");
        }
        if let Some(err) = r.error.take() {
            self.counters.errors.fetch_add(1, Relaxed);
            log::warn!("otlpflow: spool: reading segment {seq}: {err}");
        }
        e
    }

    /// Every request of segment `seq` is settled: delete it.
    pub(crate) fn done(&self, seq: u64) {
        let mut st = self.state.lock();
        if let Some(i) = st.sealed.iter().position(|(s, _)| *s == seq) {
            let (_, bytes) = st.sealed.remove(i).unwrap_or_default();
            st.total -= bytes;
        }
        st.replaying.retain(|s| *s != seq);
        drop(st);
        if let Err(e) = std::fs::remove_file(self.path(seq)) {
            if e.kind() != std::io::ErrorKind::NotFound {
                self.counters.errors.fetch_add(1, Relaxed);
            }
        }
    }

    /// Whether anything waits to be replayed.
    pub(crate) fn has_work(&self) -> bool {
        let st = self.state.lock();
        st.sealed.iter().any(|(s, _)| !st.replaying.contains(s))
            || st
                .active
                .as_ref()
                .is_some_and(|a| a.bytes > segment::HEADER as u64)
    }

    /// The combined size of the segments on disk.
    pub(crate) fn bytes(&self) -> u64 {
        self.state.lock().total
    }
}

impl Drop for Spool {
    fn drop(&mut self) {
        let mut st = self.state.lock();
        self.seal(&mut st);
    }
}

/// Refuses a spool directory that another user could write to: one owned
/// by another user, or writable by group or others (a shared directory
/// such as `/tmp/spool`, made by whoever came first). Whoever can write
/// there can remove the segments, or plant requests of their own, which
/// replay would send with this process's credentials. As ssh's
/// `StrictModes` does for `~/.ssh`.
fn check_private(dir: &Path) -> Result<(), Error> {
    use std::os::unix::fs::MetadataExt;
    let meta = std::fs::metadata(dir)
        .map_err(|e| Error::config(format!("spool {}: cannot read it: {e}", dir.display())))?;
    // SAFETY: geteuid takes nothing and cannot fail.
    let me = unsafe { libc::geteuid() };
    if meta.uid() != me {
        return Err(Error::config(format!(
            "spool {}: owned by uid {}, not by this process's {me}: another user could remove its requests or plant their own; name a directory inside it instead, which the spool creates as its own",
            dir.display(),
            meta.uid()
        )));
    }
    if meta.mode() & 0o022 != 0 {
        return Err(Error::config(format!(
            "spool {}: writable by group or others (mode {:o}): another user could remove its requests or plant their own; make it 0700, or name a directory inside it, which the spool creates as its own",
            dir.display(),
            meta.mode() & 0o7777
        )));
    }
    Ok(())
}

/// Options that open a spool file only if it is no symbolic link, and
/// create it readable and writable by its owner alone.
fn private_file() -> std::fs::OpenOptions {
    let mut o = std::fs::OpenOptions::new();
    o.mode(0o600).custom_flags(libc::O_NOFOLLOW);
    o
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::Signal;

    fn dir(name: &str) -> PathBuf {
        let d =
            std::env::temp_dir().join(format!("otlpflow-spool-unit-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        d
    }

    fn entry(i: u32) -> Entry {
        Entry {
            signal: Signal::Traces,
            key: "127.0.0.1:4317/v1/traces".into(),
            items: 100,
            request: vec![i as u8; 50_000].into(),
        }
    }

    #[test]
    fn full_drops_the_oldest_segment_or_refuses() {
        let d = dir("full");
        let s = Spool::open(&d, 1 << 20, SpoolSync::Never, SpoolFull::DropOldest).unwrap();
        for i in 0..40 {
            s.append(&entry(i)).unwrap();
        }
        assert!(s.bytes() <= 1 << 20, "{}", s.bytes());
        let dropped = s.counters.dropped_full.load(Relaxed);
        assert!(dropped > 0 && dropped % 100 == 0, "{dropped}");
        // What is left replays oldest first, the newest request last.
        let mut seen = Vec::new();
        while let Some((seq, mut r)) = s.next_segment() {
            while let Some(e) = s.next_entry(seq, &mut r) {
                seen.push(e.request[0]);
            }
            s.done(seq);
        }
        assert_eq!(seen.last(), Some(&39));
        assert_eq!(seen.len() as u64 * 100 + dropped, 4_000);
        drop(s);
        let _ = std::fs::remove_dir_all(&d);

        let d = dir("refuse");
        let s = Spool::open(
            &d,
            1 << 20,
            SpoolSync::Every(std::time::Duration::ZERO),
            SpoolFull::Refuse,
        )
        .unwrap();
        let mut refused = 0;
        for i in 0..40 {
            if matches!(s.append(&entry(i)), Err(SpoolError::Full)) {
                refused += 1;
            }
        }
        assert!(refused > 0);
        assert_eq!(s.counters.dropped_full.load(Relaxed), 0);
        drop(s);
        let _ = std::fs::remove_dir_all(&d);
    }

    #[test]
    fn the_spools_files_are_its_owners_and_no_link_is_followed() {
        use std::os::unix::fs::{symlink, PermissionsExt};
        let d = dir("private");
        let open = || Spool::open(&d, 1 << 20, SpoolSync::Segment, SpoolFull::DropOldest);
        let s = open().unwrap();
        s.append(&entry(1)).unwrap();
        drop(s);
        let mode = |p: &Path| std::fs::symlink_metadata(p).unwrap().permissions().mode() & 0o777;
        let segments: Vec<PathBuf> = std::fs::read_dir(&d)
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.extension().is_some_and(|x| x == "seg"))
            .collect();
        assert_eq!(segments.len(), 1);
        assert_eq!(
            [mode(&d), mode(&d.join("lock")), mode(&segments[0])],
            [0o700, 0o600, 0o600]
        );

        // A link planted where the lock goes: the spool does not open, and
        // the file it names keeps its bytes (the lock used to be opened
        // with truncation through it).
        let victim = d.with_extension("victim");
        std::fs::write(&victim, "precious").unwrap();
        std::fs::remove_file(d.join("lock")).unwrap();
        symlink(&victim, d.join("lock")).unwrap();
        let e = open().err().unwrap();
        assert!(e.to_string().contains("lock"), "{e}");
        assert_eq!(std::fs::read(&victim).unwrap(), b"precious");
        std::fs::remove_file(d.join("lock")).unwrap();

        // A link named like a segment, to a sound segment elsewhere: not
        // read (counted as a read error), and the link alone is removed.
        let outside = d.with_extension("seg");
        std::fs::rename(&segments[0], &outside).unwrap();
        symlink(&outside, &segments[0]).unwrap();
        let s = open().unwrap();
        assert!(s.next_segment().is_none());
        assert_eq!(s.counters.errors.load(Relaxed), 1);
        assert!(std::fs::symlink_metadata(&segments[0]).is_err());
        assert!(outside.exists());
        drop(s);
        for f in [&victim, &outside] {
            let _ = std::fs::remove_file(f);
        }
        let _ = std::fs::remove_dir_all(&d);
    }

    #[test]
    fn a_directory_others_can_write_to_is_refused() {
        use std::os::unix::fs::PermissionsExt;
        let d = dir("shared");
        let open = || Spool::open(&d, 1 << 20, SpoolSync::Segment, SpoolFull::DropOldest);
        // Made by someone else first, open to all (as a directory in /tmp
        // would be): refused, and nothing written in it.
        std::fs::create_dir(&d).unwrap();
        std::fs::set_permissions(&d, std::fs::Permissions::from_mode(0o777)).unwrap();
        let e = open().err().unwrap().to_string();
        assert!(e.contains("writable by group or others (mode 777)"), "{e}");
        assert_eq!(std::fs::read_dir(&d).unwrap().count(), 0);
        std::fs::set_permissions(&d, std::fs::Permissions::from_mode(0o770)).unwrap();
        assert!(open().is_err());
        // Readable by others but writable by its owner alone: taken.
        std::fs::set_permissions(&d, std::fs::Permissions::from_mode(0o755)).unwrap();
        drop(open().unwrap());
        // Owned by another user (where this test may give it away).
        // SAFETY: geteuid takes nothing and cannot fail.
        if unsafe { libc::geteuid() } == 0 {
            std::os::unix::fs::chown(&d, Some(65534), None).unwrap();
            let e = open().err().unwrap().to_string();
            assert!(e.contains("owned by uid 65534"), "{e}");
        }
        let _ = std::fs::remove_dir_all(&d);
    }

    #[test]
    fn a_second_open_of_a_locked_directory_is_refused() {
        let d = dir("lock");
        let first = Spool::open(&d, 1 << 20, SpoolSync::Segment, SpoolFull::DropOldest).unwrap();
        let e = Spool::open(&d, 1 << 20, SpoolSync::Segment, SpoolFull::DropOldest)
            .err()
            .unwrap();
        assert!(e.to_string().contains("in use"), "{e}");
        drop(first);
        assert!(Spool::open(&d, 1 << 20, SpoolSync::Segment, SpoolFull::DropOldest).is_ok());
        let _ = std::fs::remove_dir_all(&d);
    }
}

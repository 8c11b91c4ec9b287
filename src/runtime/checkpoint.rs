//! Local checkpoints of tables: a restart reads its tables from local files instead of replaying
//! their changelogs.
//!
//! # What is on disk
//!
//! Under `<state dir>/<app id>/` each run of a single-process application writes one
//! *generation*: a directory named by a fresh id, with a directory per changelog topic, and in it
//! the segments of each worker that maintains a part of the table (`w<worker>-<seq>.seg`).
//! A segment is a sequence of frames, each `[length][crc32][kind][label][payload]`:
//!
//! - `Header`: who wrote the segment (application, generation, topic, worker, workers, the
//!   machine's boot id);
//! - `BaseStart`, then `Changes` frames, then `BaseDone`: the worker's part of the table as of
//!   epoch `label` (what it restored, or what a compaction folded);
//! - `Changes`: the net changes of one epoch (the epoch is the label), the same key and value
//!   bytes as the changelog records of that epoch.
//!
//! A table's maintainer writes each epoch's frame before it lets the epoch go on to the
//! committer, so once an epoch is committed its changes are in the files of every worker (in the
//! operating system's cache: a killed process loses nothing; a machine that crashed is told by
//! its boot id, and its files are not trusted).
//!
//! # Which files a restart trusts
//!
//! Every progress record the committer writes names the generation of the run that wrote it.
//! A restart trusts exactly that generation, and only when each of its writers' files is whole:
//! headers that match, frames whose checksums match (only the last frame of a writer's last
//! segment may be cut short: the write a kill interrupted, of an epoch never committed), and a
//! finished base. Frames of epochs after the committed one are skipped. Anything else (no
//! files, another application's, a corrupt or unfinished one, one the committed progress does
//! not name because another run committed since, a reboot since) is not used: the table is
//! restored from its changelog, as without checkpoints. A generation that is not trusted is
//! deleted; the trusted one is kept until the next start, when the new run's generation takes
//! its place.
//!
//! # Compaction
//!
//! Once a worker's current segment has grown past both [`COMPACT_MIN_BYTES`] and the size of
//! its last compacted base, the worker starts a new segment, and a background thread folds the
//! older ones, up to the last committed epoch, into one base that replaces them: the files stay
//! within about twice the table's size. A compaction holds the worker's part of the table in
//! memory (its key and value bytes, about 55 bytes of overhead per key), so a process runs one
//! at a time.

use std::collections::BTreeMap;
use std::fs::{self, File, OpenOptions};
use std::hash::Hash;
use std::io::{self, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

use faustus_connectors::CheckpointGeneration;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use super::restore::{undecodable, Entries};

/// The format of the files; a different one is not read.
const FORMAT: u32 = 1;

/// A worker's current segment is compacted (with the ones before it) once it holds at least
/// this many bytes and at least as many as the last base.
pub(crate) const COMPACT_MIN_BYTES: u64 = 64 << 20;

/// The most entries one frame of a compacted base holds.
const BASE_CHUNK: usize = 4096;

/// The bytes of entries after which a frame being built is written.
const FRAME_CHUNK: usize = 1 << 20;

/// Length, checksum, kind and label.
const FRAME_HEAD: usize = 4 + 4 + 1 + 8;

/// The most bytes one frame may hold: a longer length is corruption.
const FRAME_MAX: u32 = 1 << 30;

/// What a frame is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
enum Kind {
    Header = 1,
    BaseStart = 2,
    Changes = 3,
    BaseDone = 4,
}

impl Kind {
    fn from_u8(b: u8) -> Option<Kind> {
        Some(match b {
            1 => Kind::Header,
            2 => Kind::BaseStart,
            3 => Kind::Changes,
            4 => Kind::BaseDone,
            _ => return None,
        })
    }
}

/// Who wrote a segment: every segment of a trusted generation has the header its position
/// implies.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
struct Header {
    format: u32,
    app_id: String,
    generation: String,
    topic: String,
    writer: usize,
    writers: usize,
    boot_id: String,
}

/// The id of the machine's current boot: files written before a reboot may have lost what the
/// operating system had not yet written to disk. `None` where the system does not say (then a
/// machine crash could not be told from a whole file, and no checkpoints are kept).
fn boot_id() -> Option<String> {
    fs::read_to_string("/proc/sys/kernel/random/boot_id")
        .ok()
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
}

/// Why a run keeps no checkpoints.
#[derive(Debug)]
pub(crate) enum Unavailable {
    /// The state directory cannot be made or opened: a configuration to fix.
    Unusable(String),
    /// This run cannot keep them: another process holds the directory, or the system does not
    /// tell its boots apart.
    Skipped(String),
}

impl std::fmt::Display for Unavailable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Unavailable::Unusable(why) | Unavailable::Skipped(why) => f.write_str(why),
        }
    }
}

/// A fresh generation id: the time and the process.
fn fresh_generation() -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    format!("g{nanos:x}-{:x}", std::process::id())
}

/// The application's state directory, locked for this process, before the committed progress is
/// known.
pub(crate) struct Locked {
    root: PathBuf,
    app_id: String,
    boot_id: String,
    lock: File,
    generation: Arc<CheckpointGeneration>,
}

impl Locked {
    /// Locks `<state_dir>/<app_id>` for this process, or says why checkpoints are off for this
    /// run: the directory cannot be made ([`Unavailable::Unusable`]), or another process holds
    /// it (another instance of the application on this machine: this one restores from the
    /// changelogs), or the system does not tell its boots apart ([`Unavailable::Skipped`]).
    pub(crate) fn lock(state_dir: &Path, app_id: &str) -> Result<Locked, Unavailable> {
        let boot_id = boot_id().ok_or_else(|| {
            Unavailable::Skipped(
                "this system does not say when it booted (/proc/sys/kernel/random/boot_id), so \
                 files that a machine crash cut short could not be told from whole ones"
                    .into(),
            )
        })?;
        let root = state_dir.join(app_id);
        fs::create_dir_all(&root)
            .map_err(|e| Unavailable::Unusable(format!("creating {}: {e}", root.display())))?;
        let path = root.join("LOCK");
        let lock = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .map_err(|e| Unavailable::Unusable(format!("opening {}: {e}", path.display())))?;
        match lock.try_lock() {
            Ok(()) => {}
            Err(fs::TryLockError::WouldBlock) => {
                return Err(Unavailable::Skipped(format!(
                    "{} is locked by another process of `{app_id}` on this machine",
                    root.display()
                )))
            }
            Err(fs::TryLockError::Error(e)) => {
                return Err(Unavailable::Unusable(format!(
                    "locking {}: {e}",
                    path.display()
                )))
            }
        }
        Ok(Locked {
            root,
            app_id: app_id.to_string(),
            boot_id,
            lock,
            generation: Arc::new(CheckpointGeneration::new(fresh_generation())),
        })
    }

    /// The generation this run writes (for the committer).
    pub(crate) fn generation(&self) -> Arc<CheckpointGeneration> {
        Arc::clone(&self.generation)
    }

    /// Chooses what to restore from, given the committed progress (`epoch`, and the generation
    /// it names), deletes every other generation, and makes this run's.
    pub(crate) fn open(
        self,
        epoch: u64,
        named: Option<&str>,
        committed: Arc<dyn Fn() -> Option<u64> + Send + Sync>,
    ) -> Result<Checkpoints, String> {
        let mut restore = BTreeMap::new();
        let mut found = false;
        let entries = fs::read_dir(&self.root)
            .map_err(|e| format!("listing {}: {e}", self.root.display()))?;
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            let path = entry.path();
            if !path.is_dir() {
                continue;
            }
            if Some(name.as_str()) == named {
                found = true;
                restore = trusted_topics(&path, &self.app_id, &name, &self.boot_id, epoch);
            } else if let Err(e) = fs::remove_dir_all(&path) {
                log::warn!("removing the old checkpoint {}: {e}", path.display());
            }
        }
        match named {
            None if epoch > 0 => log::info!(
                "the progress committed at epoch {epoch} names no local checkpoint: tables restore from their changelogs"
            ),
            Some(generation) if !found => log::warn!(
                "checkpoint {generation}, named by the progress committed at epoch {epoch}, is not in {}: tables restore from their changelogs",
                self.root.display()
            ),
            _ => {}
        }
        let dir = self.root.join(self.generation.id());
        fs::create_dir_all(&dir).map_err(|e| format!("creating {}: {e}", dir.display()))?;
        Ok(Checkpoints {
            dir,
            app_id: self.app_id,
            boot_id: self.boot_id,
            generation: self.generation,
            restore,
            committed,
            compaction: Arc::default(),
            _lock: self.lock,
        })
    }
}

/// This run's checkpoints: what its tables restore from, and where their maintainers write.
pub(crate) struct Checkpoints {
    dir: PathBuf,
    app_id: String,
    boot_id: String,
    generation: Arc<CheckpointGeneration>,
    restore: BTreeMap<String, Trusted>,
    /// The last committed epoch, for compaction.
    committed: Arc<dyn Fn() -> Option<u64> + Send + Sync>,
    /// Held by the compaction that runs: one at a time in the process.
    compaction: Arc<std::sync::Mutex<()>>,
    _lock: File,
}

/// A trusted generation's files of one topic.
#[derive(Debug)]
struct Trusted {
    /// Per writer, the segments to read in order (from the one with its last base).
    writers: Vec<Vec<PathBuf>>,
    /// Per writer, the entries of its frames up to `cut` (an upper bound of its keys).
    entries: Vec<u64>,
    /// The committed epoch: later frames are skipped.
    cut: u64,
}

/// The changelog topics of generation `dir` whose files are whole and can be trusted up to
/// epoch `cut`; each one that cannot is logged with the reason.
fn trusted_topics(
    dir: &Path,
    app_id: &str,
    generation: &str,
    boot: &str,
    cut: u64,
) -> BTreeMap<String, Trusted> {
    let mut trusted = BTreeMap::new();
    let topics = match fs::read_dir(dir) {
        Ok(topics) => topics.flatten().collect::<Vec<_>>(),
        Err(e) => {
            log::warn!("not using checkpoint {generation} ({}: {e})", dir.display());
            return trusted;
        }
    };
    if topics.is_empty() {
        log::info!("checkpoint {generation} holds no table files");
    }
    for topic in topics {
        let name = topic.file_name().to_string_lossy().into_owned();
        let expect = |writer, writers| Header {
            format: FORMAT,
            app_id: app_id.to_string(),
            generation: generation.to_string(),
            topic: name.clone(),
            writer,
            writers,
            boot_id: boot.to_string(),
        };
        match check_topic(&topic.path(), &expect, cut) {
            Ok(t) => {
                log::info!(
                    "checkpoint {generation} of `{name}` is whole up to epoch {cut}: {} writer(s)",
                    t.writers.len()
                );
                trusted.insert(name, t);
            }
            Err(why) => log::warn!(
                "not using checkpoint {generation} of `{name}` ({why}): it is restored from its changelog"
            ),
        }
    }
    trusted
}

/// The segments of one topic of a generation, checked: each writer's from its last base, with
/// headers as `expect(writer, writers)` says, checksums that match, and a finished base.
fn check_topic(
    dir: &Path,
    expect: &dyn Fn(usize, usize) -> Header,
    cut: u64,
) -> Result<Trusted, String> {
    let mut segments: BTreeMap<usize, Vec<(u64, PathBuf)>> = BTreeMap::new();
    for file in fs::read_dir(dir).map_err(|e| e.to_string())?.flatten() {
        let name = file.file_name().to_string_lossy().into_owned();
        if let Some((writer, seq)) = parse_segment_name(&name) {
            segments.entry(writer).or_default().push((seq, file.path()));
        }
    }
    let Some(first) = segments.values().next().and_then(|s| s.first()) else {
        return Err("no segments".into());
    };
    let writers = read_header(&first.1)?.writers;
    if segments.len() != writers || segments.keys().next_back() != Some(&(writers - 1)) {
        return Err(format!(
            "{} of {writers} writers have segments",
            segments.len()
        ));
    }
    let mut trusted = Trusted {
        writers: Vec::with_capacity(writers),
        entries: Vec::with_capacity(writers),
        cut,
    };
    for (writer, mut segs) in segments {
        segs.sort();
        let paths: Vec<PathBuf> = segs.into_iter().map(|(_, p)| p).collect();
        let (from, entries) = check_writer(&paths, &expect(writer, writers), cut)?;
        trusted.writers.push(paths[from..].to_vec());
        trusted.entries.push(entries);
    }
    Ok(trusted)
}

/// Checks one writer's segments: the index of the first to read (the last that starts a base)
/// and the entries in frames up to `cut`.
fn check_writer(paths: &[PathBuf], expect: &Header, cut: u64) -> Result<(usize, u64), String> {
    // Each segment's header, and whether it starts a base.
    let mut from = None;
    for (i, path) in paths.iter().enumerate() {
        let mut frames = Frames::open(path).map_err(|e| format!("{}: {e}", path.display()))?;
        check_header(&mut frames, expect, path)?;
        if frames.next().map_err(|e| frame_error(path, e))? == Some(Kind::BaseStart) {
            from = Some(i);
        }
    }
    let from = from.ok_or("no base")?;
    let mut entries = 0u64;
    let mut based = false;
    // Labels never decrease: epochs are written in order.
    let mut last_label = 0;
    for (i, path) in paths[from..].iter().enumerate() {
        let last = from + i + 1 == paths.len();
        let mut frames = Frames::open(path).map_err(|e| format!("{}: {e}", path.display()))?;
        check_header(&mut frames, expect, path)?;
        while let Some(kind) = frames.next().map_err(|e| frame_error(path, e))? {
            if frames.label < last_label {
                return Err(format!(
                    "{}: epoch {} after epoch {last_label}",
                    path.display(),
                    frames.label
                ));
            }
            last_label = frames.label;
            match kind {
                Kind::Header => return Err(format!("{}: a second header", path.display())),
                Kind::BaseStart if i > 0 => {
                    return Err(format!("{}: a base after the last one", path.display()))
                }
                Kind::BaseStart => {
                    if frames.label > cut {
                        return Err(format!(
                            "the base is of epoch {}, after the committed epoch {cut}",
                            frames.label
                        ));
                    }
                }
                Kind::BaseDone => based = true,
                Kind::Changes if frames.label <= cut => {
                    entries += count_entries(&frames.payload)
                        .ok_or_else(|| format!("{}: a malformed frame", path.display()))?;
                }
                Kind::Changes => {}
            }
        }
        if frames.torn && !last {
            return Err(format!("{}: cut short, and not the last", path.display()));
        }
        if let Some(label) = frames.torn_label.filter(|l| *l <= cut) {
            return Err(format!(
                "{}: a frame of the committed epoch {label} is cut short",
                path.display()
            ));
        }
    }
    if !based {
        return Err("the base is unfinished".into());
    }
    Ok((from, entries))
}

fn frame_error(path: &Path, e: io::Error) -> String {
    format!("{}: {e}", path.display())
}

/// Reads the header of the segment at `path`.
fn read_header(path: &Path) -> Result<Header, String> {
    let mut frames = Frames::open(path).map_err(|e| format!("{}: {e}", path.display()))?;
    next_header(&mut frames, path)
}

/// The first frame of segment `path`, which must be its header.
fn next_header(frames: &mut Frames, path: &Path) -> Result<Header, String> {
    match frames.next().map_err(|e| frame_error(path, e))? {
        Some(Kind::Header) => serde_json::from_slice(&frames.payload)
            .map_err(|e| format!("{}: the header does not decode: {e}", path.display())),
        _ => Err(format!("{}: no header", path.display())),
    }
}

fn check_header(frames: &mut Frames, expect: &Header, path: &Path) -> Result<(), String> {
    let header = next_header(frames, path)?;
    if header == *expect {
        return Ok(());
    }
    if header.boot_id != expect.boot_id {
        return Err("written before the machine restarted".into());
    }
    Err(format!(
        "{}: written by {header:?}, not {expect:?}",
        path.display()
    ))
}

/// `w<writer>-<seq>.seg`.
fn parse_segment_name(name: &str) -> Option<(usize, u64)> {
    let (writer, seq) = name
        .strip_prefix('w')?
        .strip_suffix(".seg")?
        .split_once('-')?;
    Some((writer.parse().ok()?, seq.parse().ok()?))
}

fn segment_name(writer: usize, seq: u64) -> String {
    format!("w{writer}-{seq:08}.seg")
}

impl Checkpoints {
    /// Whether changelog `topic` restores from this machine's checkpoint.
    pub(crate) fn restores(&self, topic: &str) -> bool {
        self.restore.contains_key(topic)
    }

    /// Worker `worker` of `peers`' share of the checkpoint of `topic` (the segments of the
    /// writers `w` with `w % peers == worker`): the entries to restore, each as the last frame
    /// up to the committed epoch left it. `expect` is told how many entries the frames hold,
    /// and `progress` how many were read, as reading goes.
    ///
    /// A writer's base holds each key once, so its entries are collected as they are; only the
    /// (few) keys that later frames change are looked up.
    pub(crate) fn read<K, A>(
        &self,
        topic: &str,
        worker: usize,
        peers: usize,
        expect: impl FnOnce(u64),
        mut progress: impl FnMut(u64),
    ) -> Result<Vec<(K, A)>, String>
    where
        K: Hash + Eq + DeserializeOwned,
        A: DeserializeOwned,
    {
        let trusted = &self.restore[topic];
        let mine = (0..trusted.writers.len()).filter(|w| w % peers == worker);
        expect(mine.clone().map(|w| trusted.entries[w]).sum());
        let mut entries: Vec<(K, A)> = Vec::new();
        for writer in mine {
            entries.reserve(trusted.entries[writer] as usize);
            let mut base: Vec<(K, A)> = Vec::with_capacity(trusted.entries[writer] as usize);
            // Keys changed after the base: their last value, or `None` (removed).
            let mut changed: Entries<K, Option<A>> = Entries::default();
            let mut base_label = None;
            for path in &trusted.writers[writer] {
                let at = |e: &dyn std::fmt::Display| {
                    format!(
                        "reading the checkpoint {}: {e}; remove the directory {} to restore from the changelog instead",
                        path.display(),
                        self.dir.parent().unwrap_or(&self.dir).display()
                    )
                };
                let mut frames = Frames::open(path).map_err(|e| at(&e))?;
                while let Some(kind) = frames.next().map_err(|e| at(&e))? {
                    if kind == Kind::BaseStart && base_label.is_none() {
                        base_label = Some(frames.label);
                    }
                    if kind != Kind::Changes || frames.label > trusted.cut {
                        continue;
                    }
                    let in_base = Some(frames.label) == base_label;
                    let mut error = None;
                    let n = for_each_entry(&frames.payload, |key, value| {
                        if error.is_some() {
                            return;
                        }
                        let decoded = faustus_connectors::json_from_slice::<K>(key).and_then(|k| {
                            let v = value
                                .map(faustus_connectors::json_from_slice::<A>)
                                .transpose()?;
                            Ok((k, v))
                        });
                        match decoded {
                            Ok((k, Some(v))) if in_base => base.push((k, v)),
                            Ok((k, v)) => {
                                changed.insert(k, v);
                            }
                            Err(e) => error = Some(e),
                        }
                    })
                    .ok_or_else(|| at(&"a malformed frame"))?;
                    if let Some(e) = error {
                        return Err(undecodable(&format!(
                            "{} epoch {}: {e}",
                            path.display(),
                            frames.label
                        )));
                    }
                    progress(n);
                }
            }
            if changed.is_empty() {
                entries.append(&mut base);
            } else {
                entries.extend(base.into_iter().filter(|(k, _)| !changed.contains_key(k)));
                entries.extend(changed.into_iter().filter_map(|(k, v)| Some((k, v?))));
            }
        }
        Ok(entries)
    }

    /// A writer of worker `worker`'s part of the table whose changelog is `topic`, of `workers`
    /// in all; `None` (logged) when its file cannot be made.
    pub(crate) fn writer(
        self: &Arc<Self>,
        topic: &str,
        worker: usize,
        workers: usize,
        base_epoch: u64,
    ) -> Option<Writer> {
        let dir = self.dir.join(topic);
        let header = Header {
            format: FORMAT,
            app_id: self.app_id.clone(),
            generation: self.generation.id().to_string(),
            topic: topic.to_string(),
            writer: worker,
            writers: workers,
            boot_id: self.boot_id.clone(),
        };
        let made = fs::create_dir_all(&dir)
            .and_then(|()| Segment::create(&dir, &header, 0))
            .and_then(|mut segment| {
                segment.frame(Kind::BaseStart, base_epoch, &[])?;
                Ok(segment)
            });
        match made {
            Ok(segment) => Some(Writer {
                checkpoints: Arc::clone(self),
                dir,
                header,
                segment,
                frame: Vec::new(),
                count: 0,
                base_bytes: Arc::new(AtomicU64::new(0)),
                compact_min: COMPACT_MIN_BYTES,
                compacting: Arc::new(AtomicBool::new(false)),
                failed: false,
            }),
            Err(e) => {
                self.generation.spoil();
                log::warn!(
                    "no checkpoint of `{topic}` by worker {worker}: {e}; the next start restores it from its changelog"
                );
                None
            }
        }
    }
}

/// A segment being written.
struct Segment {
    file: File,
    seq: u64,
    bytes: u64,
}

impl Segment {
    /// Creates segment `seq` of `header`'s writer in `dir`, and writes the header.
    fn create(dir: &Path, header: &Header, seq: u64) -> io::Result<Segment> {
        let file = OpenOptions::new()
            .create_new(true)
            .write(true)
            .open(dir.join(segment_name(header.writer, seq)))?;
        let mut segment = Segment {
            file,
            seq,
            bytes: 0,
        };
        let json = serde_json::to_vec(header).map_err(io::Error::other)?;
        segment.frame(Kind::Header, 0, &json)?;
        Ok(segment)
    }

    /// Writes one frame, in one write.
    fn frame(&mut self, kind: Kind, label: u64, payload: &[u8]) -> io::Result<()> {
        let mut buf = Vec::with_capacity(FRAME_HEAD + payload.len());
        push_frame(&mut buf, kind, label, payload);
        self.file.write_all(&buf)?;
        self.bytes += buf.len() as u64;
        Ok(())
    }
}

/// Appends frame `kind`/`label` with `payload` to `buf`.
fn push_frame(buf: &mut Vec<u8>, kind: Kind, label: u64, payload: &[u8]) {
    let len = (1 + 8 + payload.len()) as u32;
    let mut crc = crc32fast::Hasher::new();
    crc.update(&[kind as u8]);
    crc.update(&label.to_le_bytes());
    crc.update(payload);
    buf.extend_from_slice(&len.to_le_bytes());
    buf.extend_from_slice(&crc.finalize().to_le_bytes());
    buf.push(kind as u8);
    buf.extend_from_slice(&label.to_le_bytes());
    buf.extend_from_slice(payload);
}

/// Appends entry `key` → `value` (`None`: removed) to a `Changes` payload.
fn push_entry(payload: &mut Vec<u8>, key: &[u8], value: Option<&[u8]>) {
    payload.extend_from_slice(&(key.len() as u32).to_le_bytes());
    payload.extend_from_slice(key);
    match value {
        None => payload.extend_from_slice(&0u32.to_le_bytes()),
        Some(v) => {
            payload.extend_from_slice(&(v.len() as u32 + 1).to_le_bytes());
            payload.extend_from_slice(v);
        }
    }
}

/// Calls `f` on each entry of a `Changes` payload; how many there were, or `None` if the
/// payload is malformed.
fn for_each_entry(payload: &[u8], mut f: impl FnMut(&[u8], Option<&[u8]>)) -> Option<u64> {
    fn take<'a>(rest: &mut &'a [u8], len: usize) -> Option<&'a [u8]> {
        let (head, tail) = rest.split_at_checked(len)?;
        *rest = tail;
        Some(head)
    }
    let mut rest = payload;
    let mut n = 0;
    while !rest.is_empty() {
        let klen = u32::from_le_bytes(take(&mut rest, 4)?.try_into().ok()?) as usize;
        let key = take(&mut rest, klen)?;
        let vlen = u32::from_le_bytes(take(&mut rest, 4)?.try_into().ok()?) as usize;
        let value = match vlen {
            0 => None,
            n => Some(take(&mut rest, n - 1)?),
        };
        f(key, value);
        n += 1;
    }
    Some(n)
}

fn count_entries(payload: &[u8]) -> Option<u64> {
    for_each_entry(payload, |_, _| {})
}

/// Reads a segment's frames.
struct Frames {
    reader: BufReader<File>,
    /// The last frame's label and payload.
    label: u64,
    payload: Vec<u8>,
    /// True once the segment ended in a frame cut short.
    torn: bool,
    /// The label of the frame cut short, if its head is whole: a frame of a committed epoch
    /// cannot have been cut short by a kill (it was written before the epoch was committed), so
    /// such a frame is corruption (a length that was changed), not a write in progress.
    torn_label: Option<u64>,
}

impl Frames {
    fn open(path: &Path) -> io::Result<Frames> {
        Ok(Frames {
            reader: BufReader::with_capacity(1 << 20, File::open(path)?),
            label: 0,
            payload: Vec::new(),
            torn: false,
            torn_label: None,
        })
    }

    /// The next frame's kind (its label and payload in `self`); `None` at the end, or at a
    /// last frame cut short (then `torn`). A checksum that does not match is an error.
    fn next(&mut self) -> io::Result<Option<Kind>> {
        let mut head = [0u8; FRAME_HEAD];
        match read_full(&mut self.reader, &mut head)? {
            0 => return Ok(None),
            n if n < FRAME_HEAD => {
                self.torn = true;
                return Ok(None);
            }
            _ => {}
        }
        let len = u32::from_le_bytes(head[0..4].try_into().expect("4 bytes"));
        let crc = u32::from_le_bytes(head[4..8].try_into().expect("4 bytes"));
        if !(9..=FRAME_MAX).contains(&len) {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("a frame of {len} bytes"),
            ));
        }
        let payload_len = len as usize - 9;
        self.payload.resize(payload_len, 0);
        if read_full(&mut self.reader, &mut self.payload)? < payload_len {
            self.torn = true;
            self.torn_label = Some(u64::from_le_bytes(head[9..17].try_into().expect("8 bytes")));
            return Ok(None);
        }
        let mut hasher = crc32fast::Hasher::new();
        hasher.update(&head[8..]);
        hasher.update(&self.payload);
        if hasher.finalize() != crc {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "a frame's checksum does not match",
            ));
        }
        self.label = u64::from_le_bytes(head[9..17].try_into().expect("8 bytes"));
        Kind::from_u8(head[8]).map(Some).ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::InvalidData,
                format!("a frame of kind {}", head[8]),
            )
        })
    }
}

/// Reads until `buf` is full or the input ends: the bytes read.
fn read_full(reader: &mut impl Read, buf: &mut [u8]) -> io::Result<usize> {
    let mut filled = 0;
    while filled < buf.len() {
        match reader.read(&mut buf[filled..]) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(filled)
}

/// Writes one worker's part of a table: a frame per epoch with changes.
pub(crate) struct Writer {
    checkpoints: Arc<Checkpoints>,
    dir: PathBuf,
    header: Header,
    segment: Segment,
    /// The entries of the frame being built, and how many.
    frame: Vec<u8>,
    count: usize,
    /// The size of the last compacted base (0 until one is made).
    base_bytes: Arc<AtomicU64>,
    /// The least size of a segment that is compacted ([`COMPACT_MIN_BYTES`]).
    compact_min: u64,
    /// True while a compaction runs.
    compacting: Arc<AtomicBool>,
    /// True once a write failed: nothing more is written, and the generation is no longer named.
    failed: bool,
}

impl Writer {
    /// Adds an entry of epoch `label`'s changes to the frame being built (which is written once
    /// it holds [`FRAME_CHUNK`] bytes: a large epoch, such as the restored table, takes several
    /// frames).
    pub(crate) fn push(&mut self, label: u64, key: &[u8], value: Option<&[u8]>) {
        if !self.failed {
            push_entry(&mut self.frame, key, value);
            self.count += 1;
            if self.frame.len() >= FRAME_CHUNK {
                self.flush(label);
            }
        }
    }

    /// Writes the frame built so far as epoch `label`'s changes (nothing, if it is empty).
    pub(crate) fn flush(&mut self, label: u64) {
        if self.failed || self.count == 0 {
            return;
        }
        let payload = std::mem::take(&mut self.frame);
        self.count = 0;
        let written = self.segment.frame(Kind::Changes, label, &payload);
        self.frame = payload;
        self.frame.clear();
        self.after(written);
        self.maybe_compact();
    }

    /// Marks the base (the restored table) written.
    pub(crate) fn base_done(&mut self, label: u64) {
        if !self.failed {
            let written = self.segment.frame(Kind::BaseDone, label, &[]);
            self.after(written);
        }
    }

    fn after(&mut self, written: io::Result<()>) {
        if let Err(e) = written {
            self.fail(&e);
        }
    }

    /// Stops this writer: nothing more is written, and the generation is no longer named (the
    /// next start restores from the changelog).
    pub(crate) fn fail(&mut self, e: &dyn std::fmt::Display) {
        self.failed = true;
        self.checkpoints.generation.spoil();
        log::warn!(
            "writing the checkpoint of `{}` (worker {}) failed: {e}; it stops, and the next start restores from the changelog",
            self.header.topic,
            self.header.writer
        );
    }

    /// Starts a new segment and compacts the ones before it in the background, once the current
    /// one is large enough (see [`COMPACT_MIN_BYTES`]).
    fn maybe_compact(&mut self) {
        let threshold = self
            .compact_min
            .max(self.base_bytes.load(Ordering::Relaxed));
        if self.segment.bytes < threshold || self.compacting.load(Ordering::Acquire) {
            return;
        }
        let Some(cut) = (self.checkpoints.committed)() else {
            return;
        };
        let closed = self.segment.seq;
        match Segment::create(&self.dir, &self.header, closed + 1) {
            Ok(next) => self.segment = next,
            Err(e) => return self.fail(&e),
        }
        self.compacting.store(true, Ordering::Release);
        let (dir, header) = (self.dir.clone(), self.header.clone());
        let (compacting, base_bytes) = (Arc::clone(&self.compacting), Arc::clone(&self.base_bytes));
        let one_at_a_time = Arc::clone(&self.checkpoints.compaction);
        let spawned = std::thread::Builder::new()
            .name("faustus-compact".into())
            .spawn(move || {
                // A compaction holds a worker's part of the table in memory: one at a time.
                let _turn = one_at_a_time.lock().unwrap_or_else(|e| e.into_inner());
                match compact(&dir, &header, closed, cut) {
                    Ok(bytes) => base_bytes.store(bytes, Ordering::Relaxed),
                    Err(e) => log::warn!(
                        "compacting the checkpoint of `{}` (worker {}) failed: {e}; its segments stay as they are",
                        header.topic,
                        header.writer
                    ),
                }
                compacting.store(false, Ordering::Release);
            });
        if let Err(e) = spawned {
            self.compacting.store(false, Ordering::Release);
            log::warn!("starting a compaction: {e}");
        }
    }
}

/// One entry of a compaction, in one allocation: the key's length, the key, the value. Hashed
/// and compared by its key, so that a set of entries is a map from key to value at about half
/// the memory of a map of two boxes (a compaction holds a worker's whole part of the table).
struct Entry(Box<[u8]>);

impl Entry {
    fn new(key: &[u8], value: &[u8]) -> Entry {
        let mut bytes = Vec::with_capacity(4 + key.len() + value.len());
        bytes.extend_from_slice(&(key.len() as u32).to_le_bytes());
        bytes.extend_from_slice(key);
        bytes.extend_from_slice(value);
        Entry(bytes.into_boxed_slice())
    }

    fn key_len(&self) -> usize {
        u32::from_le_bytes(self.0[..4].try_into().expect("4 bytes")) as usize
    }

    fn key(&self) -> &[u8] {
        &self.0[4..4 + self.key_len()]
    }

    fn value(&self) -> &[u8] {
        &self.0[4 + self.key_len()..]
    }
}

impl Hash for Entry {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.key().hash(state)
    }
}

impl PartialEq for Entry {
    fn eq(&self, other: &Entry) -> bool {
        self.key() == other.key()
    }
}

impl Eq for Entry {}

impl std::borrow::Borrow<[u8]> for Entry {
    fn borrow(&self) -> &[u8] {
        self.key()
    }
}

/// Folds writer `header.writer`'s segments up to `closed` (from its last base), up to epoch
/// `cut`, into one base that replaces segment `closed`; the later frames follow the base. The
/// older segments are then removed. Returns the new segment's size.
fn compact(dir: &Path, header: &Header, closed: u64, cut: u64) -> io::Result<u64> {
    let mut seqs: Vec<u64> = fs::read_dir(dir)?
        .flatten()
        .filter_map(|f| parse_segment_name(&f.file_name().to_string_lossy()))
        .filter(|&(w, seq)| w == header.writer && seq <= closed)
        .map(|(_, seq)| seq)
        .collect();
    seqs.sort_unstable();
    let path = |seq| dir.join(segment_name(header.writer, seq));
    // From the last segment that starts a base.
    let mut from = 0;
    for (i, &seq) in seqs.iter().enumerate() {
        let mut frames = Frames::open(&path(seq))?;
        frames.next()?;
        if frames.next()? == Some(Kind::BaseStart) {
            from = i;
        }
    }
    let mut table: foldhash::HashSet<Entry> = foldhash::HashSet::default();
    let mut later = Vec::new();
    for &seq in &seqs[from..] {
        let mut frames = Frames::open(&path(seq))?;
        while let Some(kind) = frames.next()? {
            if kind != Kind::Changes {
                continue;
            }
            if frames.label > cut {
                push_frame(&mut later, Kind::Changes, frames.label, &frames.payload);
                continue;
            }
            for_each_entry(&frames.payload, |k, v| match v {
                Some(v) => {
                    table.replace(Entry::new(k, v));
                }
                None => {
                    table.remove(k);
                }
            })
            .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, "a malformed frame"))?;
        }
    }
    let tmp = dir.join(format!("{}.tmp", segment_name(header.writer, closed)));
    let mut out = io::BufWriter::with_capacity(1 << 20, File::create(&tmp)?);
    let mut buf = Vec::new();
    push_frame(
        &mut buf,
        Kind::Header,
        0,
        &serde_json::to_vec(header).map_err(io::Error::other)?,
    );
    push_frame(&mut buf, Kind::BaseStart, cut, &[]);
    let mut payload = Vec::new();
    let mut count = 0;
    for entry in &table {
        push_entry(&mut payload, entry.key(), Some(entry.value()));
        count += 1;
        if count == BASE_CHUNK {
            push_frame(&mut buf, Kind::Changes, cut, &payload);
            out.write_all(&buf)?;
            buf.clear();
            payload.clear();
            count = 0;
        }
    }
    if count > 0 {
        push_frame(&mut buf, Kind::Changes, cut, &payload);
    }
    push_frame(&mut buf, Kind::BaseDone, cut, &[]);
    buf.extend_from_slice(&later);
    out.write_all(&buf)?;
    let file = out.into_inner().map_err(|e| e.into_error())?;
    let bytes = file.metadata()?.len();
    drop(file);
    fs::rename(&tmp, path(closed))?;
    for &seq in &seqs {
        if seq < closed {
            fs::remove_file(path(seq))?;
        }
    }
    Ok(bytes)
}

#[cfg(test)]
mod tests;

//! The checkpoint files: what a restart trusts, and that it never trusts a wrong table.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use super::*;

const TOPIC: &str = "app-totals-changelog";

/// A table as the checkpoint restores it, read by one worker.
type Table = BTreeMap<String, i64>;

/// An epoch's changes: `(key, Some(value))` or `(key, None)`, removed.
type Epoch<'a> = (u64, &'a [(&'a str, Option<i64>)]);

struct Dir(tempfile::TempDir);

impl Dir {
    fn new() -> Dir {
        Dir(tempfile::tempdir().expect("a temporary directory"))
    }

    /// Opens the state directory as a run that starts after `epoch`, whose progress names
    /// `named`, and whose last committed epoch (for compaction) is `committed`.
    fn open(&self, epoch: u64, named: Option<&str>, committed: u64) -> (Arc<Checkpoints>, String) {
        let locked = Locked::lock(self.0.path(), "app").expect("the lock");
        let id = locked.generation().id().to_string();
        let checkpoints = locked
            .open(epoch, named, Arc::new(move || Some(committed)))
            .expect("opened");
        (Arc::new(checkpoints), id)
    }

    /// The segments of generation `id` of the topic.
    fn segments(&self, id: &str) -> Vec<PathBuf> {
        let mut paths: Vec<PathBuf> = fs::read_dir(self.0.path().join("app").join(id).join(TOPIC))
            .expect("the topic's directory")
            .flatten()
            .map(|f| f.path())
            .collect();
        paths.sort();
        paths
    }
}

/// Runs one generation: `workers` writers after a restore at `base`, each key written by
/// worker `hash % workers`; returns its id.
fn run(dir: &Dir, named: Option<&str>, base: u64, workers: usize, epochs: &[Epoch]) -> String {
    let (checkpoints, id) = dir.open(base, named, base);
    let mut writers: Vec<Writer> = (0..workers)
        .map(|w| {
            checkpoints
                .writer(TOPIC, w, workers, base)
                .expect("a writer")
        })
        .collect();
    for (i, epoch) in epochs.iter().enumerate() {
        write_epoch(&mut writers, i == 0, epoch);
    }
    id
}

/// Writes one epoch's changes, each key by writer `key.len() % writers.len()`, and flushes
/// every writer; the first epoch is the base.
fn write_epoch(writers: &mut [Writer], base: bool, (label, changes): &Epoch) {
    let workers = writers.len();
    for (key, value) in changes.iter() {
        let k = serde_json::to_vec(key).unwrap();
        let v = value.map(|v| serde_json::to_vec(&v).unwrap());
        writers[key.len() % workers].push(*label, &k, v.as_deref());
    }
    for w in writers {
        w.flush(*label);
        if base {
            w.base_done(*label);
        }
    }
}

/// The table the checkpoint restores, read by `peers` workers, or `None` if it is not trusted.
fn restored(dir: &Dir, epoch: u64, named: &str, peers: usize) -> Option<Table> {
    let (checkpoints, _) = dir.open(epoch, Some(named), epoch);
    if !checkpoints.restores(TOPIC) {
        return None;
    }
    let mut table = Table::new();
    for worker in 0..peers {
        let entries: Vec<(String, i64)> = checkpoints
            .read(TOPIC, worker, peers, |_| {}, |_| {})
            .expect("read");
        for (k, v) in entries {
            assert!(table.insert(k, v).is_none(), "a key restored twice");
        }
    }
    Some(table)
}

/// The table after every epoch up to `cut`.
fn model(epochs: &[Epoch], cut: u64) -> Table {
    let mut table = Table::new();
    for (label, changes) in epochs.iter().filter(|(l, _)| *l <= cut) {
        let _ = label;
        for (key, value) in changes.iter() {
            match value {
                Some(v) => table.insert(key.to_string(), *v),
                None => table.remove(*key),
            };
        }
    }
    table
}

const EPOCHS: &[Epoch] = &[
    (100, &[("a", Some(1)), ("bb", Some(2)), ("ccc", Some(3))]),
    (200, &[("a", Some(10)), ("dddd", Some(4))]),
    (300, &[("bb", None), ("eeeee", Some(5))]),
    (400, &[("a", Some(100)), ("ffffff", Some(6))]),
];

#[test]
fn a_restart_reads_the_table_as_of_the_committed_epoch() {
    let dir = Dir::new();
    let id = run(&dir, None, 100, 2, EPOCHS);
    // Epoch 400 was written but never committed: it is not restored.
    let table = restored(&dir, 300, &id, 2).expect("trusted");
    assert_eq!(table, model(EPOCHS, 300));
    assert_ne!(table, model(EPOCHS, 400));
}

#[test]
fn another_worker_count_reads_the_same_table() {
    let dir = Dir::new();
    let saved = save(&dir, &run(&dir, None, 100, 3, EPOCHS));
    for peers in [1, 2, 4] {
        let again = copy(&dir, &saved);
        assert_eq!(
            restored(&dir, 400, &again, peers),
            Some(model(EPOCHS, 400)),
            "{peers} workers"
        );
    }
}

/// Generation `id`'s files, as they are now.
struct Saved {
    id: String,
    files: Vec<(std::ffi::OsString, Vec<u8>)>,
}

fn save(dir: &Dir, id: &str) -> Saved {
    let files = dir
        .segments(id)
        .into_iter()
        .map(|p| (p.file_name().unwrap().to_owned(), fs::read(&p).unwrap()))
        .collect();
    Saved {
        id: id.to_string(),
        files,
    }
}

/// Writes `saved` as a fresh generation (each open deletes every generation but the one its
/// progress names), its headers naming the new one; returns its id.
fn copy(dir: &Dir, saved: &Saved) -> String {
    let root = dir.0.path().join("app");
    let id = format!("{}-copy{}", saved.id, fs::read_dir(&root).unwrap().count());
    let to = root.join(&id).join(TOPIC);
    fs::create_dir_all(&to).unwrap();
    for (name, bytes) in &saved.files {
        fs::write(to.join(name), rename_generation(bytes, &saved.id, &id)).unwrap();
    }
    id
}

/// The segment `bytes` with its header naming generation `to` instead of `from`.
fn rename_generation(bytes: &[u8], from: &str, to: &str) -> Vec<u8> {
    let len = u32::from_le_bytes(bytes[0..4].try_into().unwrap()) as usize;
    let header_end = 8 + len;
    let mut header: Header = serde_json::from_slice(&bytes[FRAME_HEAD..header_end]).unwrap();
    assert_eq!(header.generation, from);
    header.generation = to.to_string();
    let mut out = Vec::new();
    push_frame(
        &mut out,
        Kind::Header,
        0,
        &serde_json::to_vec(&header).unwrap(),
    );
    out.extend_from_slice(&bytes[header_end..]);
    out
}

#[test]
fn a_write_cut_short_by_a_kill_is_ignored() {
    let dir = Dir::new();
    let id = run(&dir, None, 100, 2, EPOCHS);
    let last = dir.segments(&id).pop().unwrap();
    // Half of a frame of epoch 500: the write a kill interrupted.
    let mut frame = Vec::new();
    let mut payload = Vec::new();
    push_entry(&mut payload, b"\"a\"", Some(b"999"));
    push_frame(&mut frame, Kind::Changes, 500, &payload);
    let mut file = OpenOptions::new().append(true).open(&last).unwrap();
    file.write_all(&frame[..frame.len() / 2]).unwrap();
    assert_eq!(restored(&dir, 400, &id, 2), Some(model(EPOCHS, 400)));
}

#[test]
fn a_corrupt_byte_anywhere_makes_the_checkpoint_untrusted() {
    let dir = Dir::new();
    let saved = save(&dir, &run(&dir, None, 100, 2, EPOCHS));
    let len = saved.files[0].1.len();
    // Every byte of the segment, flipped in turn (on copies), is noticed.
    for at in 0..len {
        let copy = copy(&dir, &saved);
        let path = dir.segments(&copy).remove(0);
        let mut bytes = fs::read(&path).unwrap();
        bytes[at] ^= 0x20;
        fs::write(&path, &bytes).unwrap();
        let table = restored(&dir, 400, &copy, 2);
        assert!(
            table.is_none() || table == Some(model(EPOCHS, 400)),
            "byte {at} flipped gave {table:?}"
        );
        assert!(table.is_none(), "byte {at} flipped was not noticed");
    }
}

#[test]
fn a_generation_the_progress_does_not_name_is_not_trusted_and_is_removed() {
    let dir = Dir::new();
    let id = run(&dir, None, 100, 2, EPOCHS);
    // Another run (another state directory, or none) committed since: its progress names
    // another generation, or none.
    let (checkpoints, _) = dir.open(500, Some("g-elsewhere"), 500);
    assert!(!checkpoints.restores(TOPIC));
    drop(checkpoints);
    assert!(!dir.0.path().join("app").join(&id).exists());
    let (checkpoints, _) = dir.open(500, None, 500);
    assert!(!checkpoints.restores(TOPIC));
}

#[test]
fn a_missing_writer_or_an_unfinished_base_is_not_trusted() {
    let dir = Dir::new();
    let saved = save(&dir, &run(&dir, None, 100, 2, EPOCHS));
    let copy = copy(&dir, &saved);
    fs::remove_file(dir.segments(&copy).pop().unwrap()).unwrap();
    assert_eq!(restored(&dir, 400, &copy, 2), None);

    // Killed while writing the restored table: no `BaseDone`.
    let (checkpoints, id) = dir.open(100, None, 100);
    let mut writer = checkpoints.writer(TOPIC, 0, 1, 100).unwrap();
    writer.push(100, b"\"a\"", Some(b"1"));
    writer.flush(100);
    drop((writer, checkpoints));
    assert_eq!(restored(&dir, 100, &id, 1), None);
}

#[test]
fn files_from_another_boot_or_application_are_not_trusted() {
    let dir = Dir::new();
    let id = run(&dir, None, 100, 2, EPOCHS);
    let generation = dir.0.path().join("app").join(&id);
    let trusted = |app: &str, boot: &str| trusted_topics(&generation, app, &id, boot, 400);
    assert!(trusted("app", &boot_id().unwrap()).contains_key(TOPIC));
    assert!(trusted("app", "another-boot").is_empty());
    assert!(trusted("another-app", &boot_id().unwrap()).is_empty());
}

#[test]
fn a_base_after_the_committed_epoch_is_not_trusted() {
    let dir = Dir::new();
    let id = run(&dir, None, 300, 1, &EPOCHS[2..]);
    assert_eq!(restored(&dir, 200, &id, 1), None);
}

#[test]
fn compaction_keeps_the_table_and_every_epoch_after_the_committed_one() {
    let dir = Dir::new();
    // Many epochs overwriting few keys.
    let keys = ["a", "bb", "ccc", "dddd"];
    let values: Vec<Vec<(&str, Option<i64>)>> = (0..400i64)
        .map(|i| {
            let key = keys[i as usize % keys.len()];
            vec![(key, (i % 9 != 0).then_some(i))]
        })
        .collect();
    let epochs: Vec<Epoch> = values
        .iter()
        .enumerate()
        .map(|(i, c)| (100 + i as u64, c.as_slice()))
        .collect();
    let (checkpoints, id) = dir.open(100, None, 450);
    let mut writer = checkpoints.writer(TOPIC, 0, 1, 100).unwrap();
    writer.compact_min = 1024;
    for (i, epoch) in epochs.iter().enumerate() {
        write_epoch(std::slice::from_mut(&mut writer), i == 0, epoch);
        wait_for_compaction(&writer);
    }
    wait_for_compaction(&writer);
    assert!(
        writer.segment.seq > 2,
        "compacted {} times",
        writer.segment.seq
    );
    let size: u64 = dir
        .segments(&id)
        .iter()
        .map(|p| fs::metadata(p).unwrap().len())
        .sum();
    drop((writer, checkpoints));
    // Compaction folded epochs up to 450 (all of them here); the files stay small.
    assert!(size < 8 * 1024, "{size} bytes");
    assert_eq!(restored(&dir, 499, &id, 1), Some(model(&epochs, 499)));
}

#[test]
fn compaction_before_a_commit_keeps_the_later_epochs_apart() {
    let dir = Dir::new();
    let (checkpoints, id) = dir.open(100, None, 200);
    let mut writer = checkpoints.writer(TOPIC, 0, 1, 100).unwrap();
    for (i, epoch) in EPOCHS.iter().enumerate() {
        write_epoch(std::slice::from_mut(&mut writer), i == 0, epoch);
    }
    let header = writer.header.clone();
    let dir_path = writer.dir.clone();
    drop((writer, checkpoints));
    // Folded up to the committed epoch 200; 300 and 400 stay frames of their own.
    compact(&dir_path, &header, 0, 200).unwrap();
    let saved = save(&dir, &id);
    assert_eq!(saved.files.len(), 1);
    for cut in [200, 300, 400] {
        let copy = copy(&dir, &saved);
        assert_eq!(
            restored(&dir, cut, &copy, 1),
            Some(model(EPOCHS, cut)),
            "{cut}"
        );
    }
    // A restart whose committed epoch is before the compacted base does not trust it.
    let copy = copy(&dir, &saved);
    assert_eq!(restored(&dir, 150, &copy, 1), None);
}

fn wait_for_compaction(writer: &Writer) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while writer.compacting.load(Ordering::Acquire) {
        assert!(
            Instant::now() < deadline,
            "a compaction takes over a minute"
        );
        std::thread::sleep(Duration::from_millis(1));
    }
}

#[test]
fn a_second_process_cannot_take_the_directory() {
    let dir = Dir::new();
    let first = Locked::lock(dir.0.path(), "app").expect("the lock");
    let second = Locked::lock(dir.0.path(), "app").err().expect("refused");
    assert!(
        matches!(&second, Unavailable::Skipped(why) if why.contains("locked by another process")),
        "{second:?}"
    );
    drop(first);
    Locked::lock(dir.0.path(), "app").expect("the lock, once free");
}

#[test]
fn a_state_directory_that_cannot_be_made_is_unusable() {
    let dir = Dir::new();
    let file = dir.0.path().join("a-file");
    fs::write(&file, b"not a directory").unwrap();
    let refused = Locked::lock(&file, "app").err().expect("refused");
    assert!(
        matches!(&refused, Unavailable::Unusable(why) if why.contains("a-file")),
        "{refused:?}"
    );
}

#[test]
fn frames_round_trip_and_malformed_payloads_are_refused() {
    let mut payload = Vec::new();
    push_entry(&mut payload, b"k1", Some(b"v1"));
    push_entry(&mut payload, b"k2", None);
    push_entry(&mut payload, b"", Some(b""));
    let mut seen = Vec::new();
    let n = for_each_entry(&payload, |k, v| {
        seen.push((k.to_vec(), v.map(<[u8]>::to_vec)))
    });
    assert_eq!(n, Some(3));
    assert_eq!(
        seen,
        vec![
            (b"k1".to_vec(), Some(b"v1".to_vec())),
            (b"k2".to_vec(), None),
            (Vec::new(), Some(Vec::new())),
        ]
    );
    assert_eq!(count_entries(&payload[..payload.len() - 1]), None);
    assert_eq!(parse_segment_name("w3-00000012.seg"), Some((3, 12)));
    assert_eq!(parse_segment_name("w3-00000012.seg.tmp"), None);
}

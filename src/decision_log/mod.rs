//! The decision log (opt-in): one JSON line per decision, for audits.
//!
//! ```text
//! {"time":"2025-11-25T02:17:00.123Z","callback":"on_user_login","args_hmac":"9f86…","decision":"user_id","code":42,"plugin":"plugins/policy.lua","generation":1,"elapsed_us":35}
//! ```
//!
//! The arguments are never written: they carry passwords. Instead `args_hmac` is a keyed
//! digest of them (HMAC-SHA256 under a per-deployment [`DigestKey`], see [`key`]), so that
//! the same request can be recognized in the log without being readable, and a password
//! cannot be found by hashing guesses without the key. The file is created with mode 0600.
//!
//! Entries go through a bounded channel to a dedicated thread that writes the file, so a
//! worker never waits on the disk; when the channel is full the entry is dropped and counted,
//! and the log thread warns about it. [`DecisionRecorder::reopen`] makes the thread reopen
//! the file by its path (after logrotate renamed it).
//!
//! ```no_run
//! use authhost::decision_log::{DecisionLog, DigestKey};
//!
//! let host = authhost::Host::builder().plugins("plugins").build()?;
//! let key = DigestKey::load_or_create("decisions.jsonl.key")?;
//! let log = DecisionLog::create("decisions.jsonl", key)?;
//! let recorder = log.recorder();
//! let args = [r#"{"public_key":"k"}"#.to_string(), String::new()];
//! let digest = recorder.digest(&args[..1]);
//! let outcome = host.call(authhost::Callback::NewNode, args);
//! recorder.record(authhost::Callback::NewNode, &digest, &outcome);
//! log.close();
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

pub mod key;

use std::fs::{File, OpenOptions};
use std::io::{self, BufWriter, Write};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, SystemTime};

use crossbeam_channel::{Receiver, RecvTimeoutError, Sender, TrySendError};
use serde_json::{json, Value};

use crate::decision::{Callback, Outcome};
pub use key::{ArgsDigest, DigestKey};

/// Entries that may wait for the log thread before new ones are dropped.
const CHANNEL_CAPACITY: usize = 65_536;

/// One decision waiting to be written.
struct Entry {
    time: SystemTime,
    callback: Callback,
    digest: ArgsDigest,
    decision: &'static str,
    code: Value,
    plugin: Option<String>,
    generation: Option<u64>,
    elapsed_us: u64,
}

impl Entry {
    fn to_json(&self) -> Value {
        json!({
            "time": rfc3339_utc(self.time),
            "callback": self.callback.function_name(),
            "args_hmac": self.digest.to_hex(),
            "decision": self.decision,
            "code": self.code,
            "plugin": self.plugin,
            "generation": self.generation,
            "elapsed_us": self.elapsed_us,
        })
    }
}

enum Message {
    Entry(Box<Entry>),
    /// Close the file and open it again by its path (it was renamed: log rotation).
    Reopen,
    /// Write what is queued, then stop.
    Close,
}

/// Records decisions into a [`DecisionLog`]; cheap to clone, usable from any thread.
#[derive(Clone)]
pub struct DecisionRecorder {
    sender: Sender<Message>,
    dropped: Arc<AtomicU64>,
    key: Arc<DigestKey>,
}

impl DecisionRecorder {
    /// The keyed digest of a request's arguments, to [`record`](Self::record) with its
    /// decision (made before the call, which takes the arguments).
    pub fn digest(&self, args: &[String]) -> ArgsDigest {
        self.key.digest(args)
    }

    /// Has the log thread reopen the file by its path once it has written the entries
    /// recorded before: after logrotate renames the file, later entries go to a new one
    /// (mode 0600). If the file cannot be opened, the log goes on in the old one and says
    /// so. Waits at most a few seconds for room in the log's channel.
    pub fn reopen(&self) {
        if self
            .sender
            .send_timeout(Message::Reopen, Duration::from_secs(5))
            .is_err()
        {
            log::warn!("the decision log is not reopened: its thread is stuck or stopped");
        }
    }

    /// Queues one decision for the log. Never blocks: when the log thread is behind by more
    /// than its channel holds, the entry is dropped and counted.
    pub fn record(&self, callback: Callback, digest: &ArgsDigest, outcome: &Outcome) {
        let entry = Entry {
            time: SystemTime::now(),
            callback,
            digest: *digest,
            decision: outcome.decision.name(),
            code: outcome.decision.code_json(),
            plugin: outcome.plugin.as_deref().map(str::to_owned),
            generation: outcome.generation,
            elapsed_us: u64::try_from(outcome.elapsed.as_micros()).unwrap_or(u64::MAX),
        };
        match self.sender.try_send(Message::Entry(Box::new(entry))) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) | Err(TrySendError::Disconnected(_)) => {
                self.dropped.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
}

/// An open decision log: a file and the thread that appends to it.
pub struct DecisionLog {
    path: PathBuf,
    recorder: DecisionRecorder,
    thread: Option<JoinHandle<()>>,
}

impl DecisionLog {
    /// Opens `path` for appending (creating it with mode 0600) and starts the thread that
    /// writes it; argument digests are made with `key`.
    ///
    /// # Failure
    ///
    /// The file cannot be opened, or the thread cannot be started.
    pub fn create(path: impl AsRef<Path>, key: DigestKey) -> io::Result<DecisionLog> {
        let path = path.as_ref().to_path_buf();
        let file = open_log(&path)?;
        let (sender, receiver) = crossbeam_channel::bounded(CHANNEL_CAPACITY);
        let dropped = Arc::new(AtomicU64::new(0));
        let thread = {
            let dropped = dropped.clone();
            let path = path.clone();
            std::thread::Builder::new()
                .name("authhost-decision-log".into())
                .spawn(move || write_entries(file, &receiver, &dropped, &path))?
        };
        Ok(DecisionLog {
            path,
            recorder: DecisionRecorder {
                sender,
                dropped,
                key: Arc::new(key),
            },
            thread: Some(thread),
        })
    }

    /// The log's file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// A handle that records into this log.
    pub fn recorder(&self) -> DecisionRecorder {
        self.recorder.clone()
    }

    /// Entries dropped so far because the log thread was behind.
    pub fn dropped(&self) -> u64 {
        self.recorder.dropped.load(Ordering::Relaxed)
    }

    /// Writes every entry queued so far, flushes the file and stops the log thread. Entries
    /// recorded later are dropped. Dropping the log does the same.
    pub fn close(mut self) {
        self.stop();
    }

    fn stop(&mut self) {
        let Some(thread) = self.thread.take() else {
            return;
        };
        // Behind a full channel the close message waits for the thread to make room; past a
        // few seconds the thread is stuck on the disk and is left behind.
        let sent = self
            .recorder
            .sender
            .send_timeout(Message::Close, Duration::from_secs(5));
        if sent.is_ok() {
            let _ = thread.join();
        }
    }
}

impl Drop for DecisionLog {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Opens the log for appending; a new file gets mode 0600 (an older one keeps its mode, with
/// a warning when others may read it).
fn open_log(path: &Path) -> io::Result<File> {
    let file = OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o600)
        .open(path)?;
    if let Ok(meta) = file.metadata() {
        if meta.mode() & 0o077 != 0 {
            log::warn!(
                "decision log {}: other users may read it (mode {:04o}); chmod 600 it",
                path.display(),
                meta.mode() & 0o7777
            );
        }
    }
    Ok(file)
}

fn write_entries(file: File, receiver: &Receiver<Message>, dropped: &AtomicU64, path: &Path) {
    let mut out = BufWriter::with_capacity(64 << 10, file);
    let mut reported_drops = 0;
    let mut failed = false;
    let mut write = |out: &mut BufWriter<File>, entry: &Entry| {
        let mut line = entry.to_json().to_string();
        line.push('\n');
        if let Err(e) = out.write_all(line.as_bytes()) {
            if !failed {
                log::error!("decision log {}: {e}", path.display());
                failed = true;
            }
        }
    };
    let reopen = |out: &mut BufWriter<File>| {
        let _ = out.flush();
        match open_log(path) {
            Ok(file) => {
                *out = BufWriter::with_capacity(64 << 10, file);
                log::info!("decision log {}: reopened", path.display());
            }
            Err(e) => log::error!(
                "decision log {}: cannot reopen ({e}); writing on to the file already open",
                path.display()
            ),
        }
    };
    loop {
        let message = match receiver.recv_timeout(Duration::from_millis(200)) {
            Ok(message) => message,
            Err(RecvTimeoutError::Timeout) => {
                let _ = out.flush();
                continue;
            }
            Err(RecvTimeoutError::Disconnected) => break,
        };
        match message {
            Message::Entry(entry) => write(&mut out, &entry),
            Message::Reopen => reopen(&mut out),
            Message::Close => break,
        }
        // Write everything already waiting before touching the disk again.
        while let Ok(message) = receiver.try_recv() {
            match message {
                Message::Entry(entry) => write(&mut out, &entry),
                Message::Reopen => reopen(&mut out),
                Message::Close => {
                    let _ = out.flush();
                    return;
                }
            }
        }
        let _ = out.flush();
        let now_dropped = dropped.load(Ordering::Relaxed);
        if now_dropped > reported_drops {
            log::warn!(
                "decision log {}: {} entries dropped so far (the log could not keep up)",
                path.display(),
                now_dropped
            );
            reported_drops = now_dropped;
        }
    }
    let _ = out.flush();
}

/// `time` as RFC 3339 in UTC with milliseconds: `2025-11-25T02:17:00.123Z`.
fn rfc3339_utc(time: SystemTime) -> String {
    let since_epoch = time
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap_or_default();
    let seconds = since_epoch.as_secs() as i64;
    let (days, of_day) = (seconds.div_euclid(86_400), seconds.rem_euclid(86_400));
    let (year, month, day) = civil_from_days(days);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:03}Z",
        of_day / 3600,
        of_day / 60 % 60,
        of_day % 60,
        since_epoch.subsec_millis()
    )
}

/// The proleptic Gregorian date of a day count since 1970-01-01 (Howard Hinnant's
/// `civil_from_days`).
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::decision::{Decision, UserDecision};

    #[test]
    fn times_are_rfc3339_utc() {
        let t = SystemTime::UNIX_EPOCH + Duration::from_millis(1_700_000_000_123);
        assert_eq!(rfc3339_utc(t), "2023-11-14T22:13:20.123Z");
        assert_eq!(
            rfc3339_utc(SystemTime::UNIX_EPOCH),
            "1970-01-01T00:00:00.000Z"
        );
        let leap = SystemTime::UNIX_EPOCH + Duration::from_secs(951_782_400); // 2000-02-29
        assert_eq!(rfc3339_utc(leap), "2000-02-29T00:00:00.000Z");
    }

    #[test]
    fn the_log_holds_one_line_per_decision_and_no_argument() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("decisions.jsonl");
        let log = DecisionLog::create(&path, DigestKey::from_bytes(&[1; 32])).unwrap();
        let recorder = log.recorder();
        let args = ["{\"password\":\"hunter2\"}".to_string(), "{}".to_string()];
        let digest = recorder.digest(&args);
        let outcome = Outcome {
            decision: Decision::User(UserDecision::UserId(42)),
            plugin: Some("p.lua".into()),
            generation: Some(2),
            elapsed: Duration::from_micros(35),
        };
        recorder.record(Callback::UserLogin, &digest, &outcome);
        recorder.record(Callback::UserLogin, &digest, &outcome);
        log.close();
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(!text.contains("hunter2"));
        let lines: Vec<Value> = text
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(lines.len(), 2);
        let entry = &lines[0];
        assert_eq!(entry["callback"], "on_user_login");
        assert_eq!(entry["args_hmac"], digest.to_hex());
        assert_eq!(entry["decision"], "user_id");
        assert_eq!(entry["code"], 42);
        assert_eq!(entry["plugin"], "p.lua");
        assert_eq!(entry["generation"], 2);
        assert_eq!(entry["elapsed_us"], 35);
        assert!(entry["time"].as_str().unwrap().ends_with('Z'));
        let mode = std::fs::metadata(&path).unwrap().mode();
        assert_eq!(mode & 0o777, 0o600, "{mode:o}");
    }

    #[test]
    fn reopen_moves_later_entries_to_a_new_file_at_the_path() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("decisions.jsonl");
        let rotated = dir.path().join("decisions.jsonl.1");
        let log = DecisionLog::create(&path, DigestKey::from_bytes(&[2; 32])).unwrap();
        let recorder = log.recorder();
        let outcome = Outcome {
            decision: Decision::User(UserDecision::UserId(7)),
            plugin: None,
            generation: Some(1),
            elapsed: Duration::ZERO,
        };
        let digest = recorder.digest(&["a".into()]);
        recorder.record(Callback::UserLogin, &digest, &outcome);
        std::fs::rename(&path, &rotated).unwrap();
        recorder.reopen();
        recorder.record(Callback::NewNode, &digest, &outcome);
        log.close();
        let old = std::fs::read_to_string(&rotated).unwrap();
        let new = std::fs::read_to_string(&path).unwrap();
        assert_eq!(old.lines().count(), 1, "{old}");
        assert!(old.contains("on_user_login"));
        assert_eq!(new.lines().count(), 1, "{new}");
        assert!(new.contains("on_new_node"));
        assert_eq!(std::fs::metadata(&path).unwrap().mode() & 0o777, 0o600);
    }
}

//! One connection: a reader that dispatches requests as they are parsed, and a writer thread
//! that writes the answers as they complete.
//!
//! Each line is one JSON-RPC message, answered through [`rpc::dispatch`].
//!
//! Back-pressure: every line takes one of the connection's `max_pending` places per call it
//! makes (one per member for a batch) before it is dispatched, and gives them back once its
//! answer is written. A client that does not read its answers therefore stops being read
//! from, and the connection's memory stays bounded; the workers never wait on a client (they
//! hand answers to an unbounded channel that the places keep short).

use std::io::{self, BufWriter, Read, Write};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread::Thread;
use std::time::Duration;

use crossbeam_channel::{Receiver, Sender, TryRecvError};

use super::lines::{Line, LineReader};
use super::rpc::{self, Context, Message};
use super::Shared;

/// An answer for the writer: a response (without its newline), or `None` when nothing is
/// to be sent (notifications), and the places it gives back once written.
struct Answer {
    text: Option<String>,
    places: usize,
}

/// One connection's count of pending answers, shared by its reader and writer.
struct Places {
    pending: AtomicUsize,
    limit: usize,
    /// The reader, to wake when places free up.
    reader: Thread,
    /// Set by the writer when the client can no longer be written to.
    closed: AtomicBool,
}

impl Places {
    /// Takes `n` places (at most the limit), waiting while too few are free. `false` if the
    /// connection or the server is closing instead.
    fn take(&self, shared: &Shared, n: usize) -> bool {
        loop {
            if self.closed.load(Ordering::Acquire) || shared.is_stopping() {
                return false;
            }
            // Only the reader adds, so places seen free stay free until taken.
            if self.pending.load(Ordering::Acquire) + n <= self.limit {
                self.pending.fetch_add(n, Ordering::AcqRel);
                // Counted before the stop check, so a drain never misses this request.
                shared.outstanding.fetch_add(n, Ordering::SeqCst);
                if shared.is_stopping() {
                    self.give_back(shared, n);
                    return false;
                }
                return true;
            }
            std::thread::park_timeout(Duration::from_millis(50));
        }
    }

    fn give_back(&self, shared: &Shared, n: usize) {
        if n == 0 {
            return;
        }
        shared.outstanding.fetch_sub(n, Ordering::SeqCst);
        // The reader may be waiting for several places: wake it whenever some free up.
        self.pending.fetch_sub(n, Ordering::AcqRel);
        self.reader.unpark();
    }
}

/// Serves one connection until its input ends, the client goes away, or the server stops;
/// returns once every answer it dispatched is written (or dropped, for a client gone).
/// `trusted` says whether control methods are allowed (see [`rpc`]).
pub(crate) fn serve<R, W>(context: &Context, source: R, sink: W, peer: &str, trusted: bool)
where
    R: Read,
    W: Write + Send + 'static,
{
    let places = Arc::new(Places {
        pending: AtomicUsize::new(0),
        limit: context.max_pending.max(1),
        reader: std::thread::current(),
        closed: AtomicBool::new(false),
    });
    let (answers, to_write) = crossbeam_channel::unbounded::<Answer>();
    let writer = {
        let places = places.clone();
        let shared = context.shared.clone();
        let peer = peer.to_string();
        std::thread::Builder::new()
            .name("authhost-writer".into())
            .spawn(move || write_answers(sink, &to_write, &places, &shared, &peer))
    };
    let writer = match writer {
        Ok(writer) => writer,
        Err(e) => {
            log::error!("{peer}: cannot start a writer thread: {e}; closing the connection");
            return;
        }
    };
    let reason = read_requests(context, source, &answers, &places, trusted);
    log::debug!("{peer}: {reason}");
    drop(answers);
    let _ = writer.join();
}

/// The reader: parses each line and dispatches it at once. Returns why it stopped.
fn read_requests<R: Read>(
    context: &Context,
    source: R,
    answers: &Sender<Answer>,
    places: &Places,
    trusted: bool,
) -> String {
    let mut lines = LineReader::new(source);
    loop {
        if context.shared.is_stopping() {
            return "the server is stopping".into();
        }
        let line = match lines.next_line() {
            Ok(Some(line)) => line,
            Ok(None) => return "end of input".into(),
            Err(e) => return format!("read error: {e}"),
        };
        let message = match line {
            Line::Complete(bytes) if bytes.iter().all(u8::is_ascii_whitespace) => continue,
            Line::Complete(bytes) => Message::parse(bytes),
            Line::TooLong => Message::line_too_long(),
        };
        // A batch longer than the connection's limit takes all its places.
        let taken = message.calls().clamp(1, places.limit);
        if !places.take(&context.shared, taken) {
            return "the connection or the server is closing".into();
        }
        let answers = answers.clone();
        rpc::dispatch(context, message, trusted, move |text| {
            let _ = answers.send(Answer {
                text,
                places: taken,
            });
        });
    }
}

/// The writer: writes answers as they come, flushing whenever none is waiting, and gives
/// their places back once they are flushed. After a write error it keeps draining (dropping
/// the answers) so that nothing waits on a client that is gone.
fn write_answers<W: Write>(
    sink: W,
    to_write: &Receiver<Answer>,
    places: &Places,
    shared: &Shared,
    peer: &str,
) {
    let mut out = BufWriter::with_capacity(64 << 10, sink);
    let mut broken = false;
    let mut unflushed = 0;
    let fail = |e: io::Error, broken: &mut bool| {
        if !*broken {
            log::debug!("{peer}: cannot write answers ({e}); dropping them");
            *broken = true;
            places.closed.store(true, Ordering::Release);
            places.reader.unpark();
        }
    };
    loop {
        let answer = match to_write.try_recv() {
            Ok(answer) => answer,
            Err(TryRecvError::Empty) => {
                if !broken && unflushed > 0 {
                    if let Err(e) = out.flush() {
                        fail(e, &mut broken);
                    }
                }
                places.give_back(shared, std::mem::take(&mut unflushed));
                match to_write.recv() {
                    Ok(answer) => answer,
                    Err(_) => break,
                }
            }
            Err(TryRecvError::Disconnected) => break,
        };
        if let (Some(text), false) = (&answer.text, broken) {
            let written = out
                .write_all(text.as_bytes())
                .and_then(|()| out.write_all(b"\n"));
            if let Err(e) = written {
                fail(e, &mut broken);
            }
        }
        unflushed += answer.places;
    }
    if !broken {
        if let Err(e) = out.flush() {
            fail(e, &mut broken);
        }
    }
    places.give_back(shared, unflushed);
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;
    use std::sync::Mutex;

    use serde_json::{json, Value};

    use super::*;
    use crate::host::Host;

    /// A sink the test can read after the connection is done.
    #[derive(Clone, Default)]
    struct Collected(Arc<Mutex<Vec<u8>>>);

    impl Write for Collected {
        fn write(&mut self, bytes: &[u8]) -> io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(bytes);
            Ok(bytes.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    fn context() -> Context {
        let plugin = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/policies/serve/echo.lua");
        let host = Host::builder()
            .plugins(plugin)
            .db(":memory:")
            .workers(2)
            .build()
            .expect("the echo policy loads");
        Context {
            host,
            shared: Arc::new(Shared::new(8)),
            log: None,
            max_pending: 8,
        }
    }

    #[test]
    fn every_line_is_answered_before_the_connection_ends() {
        let mut input = String::new();
        for id in 1..=100 {
            input.push_str(&format!(
                "{{\"jsonrpc\":\"2.0\",\"id\":{id},\"method\":\"user_login\",\"params\":[{{\"id\":{id}}},\"{{}}\"]}}\n"
            ));
        }
        input.push_str("not json\n\n   \n");
        input.push_str(
            "{\"jsonrpc\":\"2.0\",\"method\":\"user_login\",\"params\":[\"{}\",\"{}\"]}\n",
        );
        // The last line has no newline: it still counts.
        input.push_str("{\"jsonrpc\":\"2.0\",\"id\":\"last\",\"method\":\"new_node\",\"params\":[{\"role\":\"async\"}]}");
        let context = context();
        let sink = Collected::default();
        serve(&context, io::Cursor::new(input), sink.clone(), "test", true);
        let written = String::from_utf8(sink.0.lock().unwrap().clone()).unwrap();
        let answers: Vec<Value> = written
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        // 100 logins, one parse error, the last request; blank lines and the notification
        // get nothing.
        assert_eq!(answers.len(), 102, "{written}");
        let by_id: HashMap<String, &Value> =
            answers.iter().map(|a| (a["id"].to_string(), a)).collect();
        for id in 1..=100 {
            assert_eq!(by_id[&id.to_string()]["result"]["code"], json!(id));
        }
        assert_eq!(by_id["null"]["error"]["code"], json!(-32700));
        assert_eq!(by_id["\"last\""]["result"]["decision"], json!("async"));
        assert_eq!(context.shared.outstanding.load(Ordering::SeqCst), 0);
    }

    #[test]
    fn a_client_that_cannot_be_written_to_stops_being_read() {
        struct Gone;
        impl Write for Gone {
            fn write(&mut self, _: &[u8]) -> io::Result<usize> {
                Err(io::ErrorKind::BrokenPipe.into())
            }
            fn flush(&mut self) -> io::Result<()> {
                Err(io::ErrorKind::BrokenPipe.into())
            }
        }
        let line = "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"status\"}\n";
        let context = context();
        // Endless input: only the broken writer can end this connection.
        let endless = io::repeat(0)
            .take(0)
            .chain(InfiniteLines(line.as_bytes().to_vec(), 0));
        serve(&context, endless, Gone, "test", true);
        assert_eq!(context.shared.outstanding.load(Ordering::SeqCst), 0);
    }

    /// The same line forever.
    struct InfiniteLines(Vec<u8>, usize);

    impl Read for InfiniteLines {
        fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
            for byte in out.iter_mut() {
                *byte = self.0[self.1];
                self.1 = (self.1 + 1) % self.0.len();
            }
            Ok(out.len())
        }
    }
}

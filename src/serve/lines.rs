//! Reading newline-delimited requests with bounded memory.
//!
//! A line longer than [`MAX_LINE`] is never held whole: once it passes the limit, the rest
//! of it is skipped up to the next newline and reported as [`Line::TooLong`].

use std::io::{self, Read};

use super::protocol::MAX_LINE;

/// What the next line of input is.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Line<'a> {
    /// A line, without its newline.
    Complete(&'a [u8]),
    /// A line longer than the limit, already skipped.
    TooLong,
}

/// Splits a byte stream into lines, with a buffer that never grows past the line limit.
pub(crate) struct LineReader<R> {
    source: R,
    buf: Vec<u8>,
    /// Where the unread data starts and ends in `buf`.
    start: usize,
    end: usize,
    /// How far from `start` the data was already searched for a newline.
    searched: usize,
    /// Whether the current line passed the limit and is being skipped.
    skipping: bool,
    eof: bool,
    limit: usize,
}

const INITIAL_BUFFER: usize = 64 << 10;

impl<R: Read> LineReader<R> {
    /// Reads lines of at most [`MAX_LINE`] bytes from `source`.
    pub fn new(source: R) -> Self {
        Self::with_limit(source, MAX_LINE)
    }

    fn with_limit(source: R, limit: usize) -> Self {
        LineReader {
            source,
            buf: vec![0; INITIAL_BUFFER.min(limit + 2)],
            start: 0,
            end: 0,
            searched: 0,
            skipping: false,
            eof: false,
            limit,
        }
    }

    /// The next line; `None` at the end of input. A last line without a newline counts.
    pub fn next_line(&mut self) -> io::Result<Option<Line<'_>>> {
        loop {
            let unread = &self.buf[self.start + self.searched..self.end];
            if let Some(at) = unread.iter().position(|&b| b == b'\n') {
                let line_end = self.start + self.searched + at;
                let line_start = self.start;
                self.start = line_end + 1;
                self.searched = 0;
                // A long line can arrive whole in one read, newline and all.
                if std::mem::take(&mut self.skipping) || line_end - line_start > self.limit {
                    return Ok(Some(Line::TooLong));
                }
                return Ok(Some(Line::Complete(&self.buf[line_start..line_end])));
            }
            self.searched = self.end - self.start;
            if self.skipping || self.searched > self.limit {
                // Past the limit: forget what was read of this line and skip the rest.
                self.skipping = true;
                self.start = 0;
                self.end = 0;
                self.searched = 0;
            }
            if self.eof {
                if self.skipping {
                    self.skipping = false;
                    return Ok(Some(Line::TooLong));
                }
                if self.start == self.end {
                    return Ok(None);
                }
                let (line_start, line_end) = (self.start, self.end);
                self.start = self.end;
                self.searched = 0;
                return Ok(Some(Line::Complete(&self.buf[line_start..line_end])));
            }
            self.make_room();
            match self.source.read(&mut self.buf[self.end..]) {
                Ok(0) => self.eof = true,
                Ok(n) => self.end += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
    }

    /// Makes space after `end`: moves the unread data to the front, or grows the buffer up
    /// to the limit (plus one byte, to see that a line is too long).
    fn make_room(&mut self) {
        if self.end < self.buf.len() {
            return;
        }
        if self.start > 0 {
            self.buf.copy_within(self.start..self.end, 0);
            self.end -= self.start;
            self.start = 0;
            if self.end < self.buf.len() {
                return;
            }
        }
        let grown = (self.buf.len() * 2)
            .min(self.limit + 2)
            .max(self.buf.len() + 1);
        self.buf.resize(grown, 0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A source that hands out at most `chunk` bytes per read.
    struct Chunked<'a> {
        data: &'a [u8],
        chunk: usize,
    }

    impl Read for Chunked<'_> {
        fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
            let n = self.data.len().min(self.chunk).min(out.len());
            out[..n].copy_from_slice(&self.data[..n]);
            self.data = &self.data[n..];
            Ok(n)
        }
    }

    fn lines(data: &[u8], chunk: usize, limit: usize) -> Vec<Result<String, ()>> {
        let mut reader = LineReader::with_limit(Chunked { data, chunk }, limit);
        let mut out = Vec::new();
        while let Some(line) = reader.next_line().unwrap() {
            out.push(match line {
                Line::Complete(l) => Ok(String::from_utf8(l.to_vec()).unwrap()),
                Line::TooLong => Err(()),
            });
            assert!(
                reader.buf.len() <= limit + 2,
                "the buffer grew past the limit"
            );
        }
        out
    }

    #[test]
    fn splits_lines_whatever_the_read_sizes() {
        let data = b"a\nbb\n\nccc\nlast";
        for chunk in [1, 2, 3, 100] {
            let got = lines(data, chunk, 16);
            let want: Vec<Result<String, ()>> = ["a", "bb", "", "ccc", "last"]
                .iter()
                .map(|s| Ok(s.to_string()))
                .collect();
            assert_eq!(got, want, "chunk {chunk}");
        }
    }

    #[test]
    fn a_line_over_the_limit_is_skipped_and_reading_goes_on() {
        let mut data = b"ok\n".to_vec();
        data.extend(std::iter::repeat_n(b'x', 1000));
        data.extend(b"\nafter\n");
        data.extend(b"exactly8\n");
        data.extend(b"ninechars\n");
        data.extend(std::iter::repeat_n(b'y', 50));
        for chunk in [1, 7, 64, 4096] {
            let got = lines(&data, chunk, 8);
            assert_eq!(
                got,
                vec![
                    Ok("ok".into()),
                    Err(()),
                    Ok("after".into()),
                    Ok("exactly8".into()),
                    Err(()),
                    Err(())
                ],
                "chunk {chunk}"
            );
        }
    }

    #[test]
    fn the_default_limit_is_one_mebibyte() {
        let mut data = vec![b'z'; MAX_LINE];
        data.push(b'\n');
        data.extend(vec![b'z'; MAX_LINE + 1]);
        data.push(b'\n');
        let mut reader = LineReader::new(&data[..]);
        assert!(
            matches!(reader.next_line().unwrap(), Some(Line::Complete(l)) if l.len() == MAX_LINE)
        );
        assert!(matches!(reader.next_line().unwrap(), Some(Line::TooLong)));
        assert!(reader.next_line().unwrap().is_none());
    }
}

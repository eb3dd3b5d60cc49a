//! Lua 5.4's pattern matcher (`lstrlib.c`), ported so that it stops at the request's
//! deadline.
//!
//! Lua's own matcher is C: the instruction hook that stops a runaway script never runs inside
//! it, and a crafted pattern (`string.find(("a"):rep(30000), ".-.-.-.-b")`) backtracks for
//! minutes. This one behaves the same, match for match and error for error, but counts its
//! steps and asks [`Matcher::check`] every [`STEPS_PER_CHECK`] of them whether to go on.

/// The most captures in one pattern (`LUA_MAXCAPTURES`).
pub(super) const MAX_CAPTURES: usize = 32;

/// The deepest the matcher recurses (`MAXCCALLS`): past it, "pattern too complex".
const MAX_DEPTH: usize = 200;

/// How many steps between two deadline checks: a check reads the clock (~20 ns), a step
/// takes a few ns.
const STEPS_PER_CHECK: u32 = 1024;

const ESCAPE: u8 = b'%';

/// Why a match stopped with an error.
#[derive(Debug)]
pub(super) enum PatternError {
    /// The pattern is malformed or too complex; the message is Lua's own.
    Invalid(String),
    /// The check said stop (the deadline passed).
    Stopped(mlua::Error),
}

impl From<PatternError> for mlua::Error {
    fn from(error: PatternError) -> mlua::Error {
        match error {
            PatternError::Invalid(message) => mlua::Error::runtime(message),
            PatternError::Stopped(error) => error,
        }
    }
}

type Result<T> = std::result::Result<T, PatternError>;

fn invalid<T>(message: impl Into<String>) -> Result<T> {
    Err(PatternError::Invalid(message.into()))
}

/// One capture: where it starts, and its length once closed.
#[derive(Clone, Copy, Debug)]
enum Capture {
    Unfinished(usize),
    Position(usize),
    Closed(usize, usize),
}

/// What a capture gives back to the script.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Captured<'s> {
    /// A piece of the subject.
    Text(&'s [u8]),
    /// A position capture `()`, 1-based.
    Position(usize),
}

/// A matcher of one pattern against one subject (`MatchState`).
pub(super) struct Matcher<'s, 'c> {
    subject: &'s [u8],
    pattern: &'s [u8],
    depth: usize,
    captures: Vec<Capture>,
    steps: u32,
    check: &'c mut dyn FnMut() -> mlua::Result<()>,
}

impl<'s, 'c> Matcher<'s, 'c> {
    /// A matcher for `pattern` (without a leading `^` anchor) on `subject`, which calls
    /// `check` every few thousand steps and stops with its error.
    pub(super) fn new(
        subject: &'s [u8],
        pattern: &'s [u8],
        check: &'c mut dyn FnMut() -> mlua::Result<()>,
    ) -> Self {
        Matcher {
            subject,
            pattern,
            depth: MAX_DEPTH,
            captures: Vec::new(),
            steps: 0,
            check,
        }
    }

    /// Where a match starting at `start` ends, if the pattern matches there.
    pub(super) fn match_at(&mut self, start: usize) -> Result<Option<usize>> {
        self.depth = MAX_DEPTH;
        self.captures.clear();
        self.do_match(start, 0)
    }

    /// The captures of the last match from `start` to `end`: the whole match when the
    /// pattern has none (and `whole` is asked for).
    pub(super) fn captures(
        &self,
        start: usize,
        end: usize,
        whole: bool,
    ) -> Result<Vec<Captured<'s>>> {
        if self.captures.is_empty() {
            return Ok(if whole {
                vec![Captured::Text(&self.subject[start..end])]
            } else {
                Vec::new()
            });
        }
        (0..self.captures.len())
            .map(|i| self.capture(i, start, end))
            .collect()
    }

    /// Capture `index` (0-based) of the last match, or the whole match for index 0 of a
    /// pattern without captures (`get_onecapture`).
    pub(super) fn capture(&self, index: usize, start: usize, end: usize) -> Result<Captured<'s>> {
        match self.captures.get(index) {
            None if index == 0 => Ok(Captured::Text(&self.subject[start..end])),
            None => invalid(format!("invalid capture index %{}", index + 1)),
            Some(Capture::Unfinished(_)) => invalid("unfinished capture"),
            Some(Capture::Position(at)) => Ok(Captured::Position(at + 1)),
            Some(Capture::Closed(at, len)) => Ok(Captured::Text(&self.subject[*at..at + len])),
        }
    }

    /// The subject from `start` to `end`.
    pub(super) fn subject_slice(&self, start: usize, end: usize) -> &'s [u8] {
        &self.subject[start..end]
    }

    fn step(&mut self) -> Result<()> {
        self.steps += 1;
        if self.steps >= STEPS_PER_CHECK {
            self.steps = 0;
            (self.check)().map_err(PatternError::Stopped)?;
        }
        Ok(())
    }

    /// The pattern's byte at `at`, or 0 past its end (the C code reads the terminating NUL).
    fn p(&self, at: usize) -> u8 {
        self.pattern.get(at).copied().unwrap_or(0)
    }

    /// The subject's byte at `at`, or 0 past its end.
    fn s(&self, at: usize) -> u8 {
        self.subject.get(at).copied().unwrap_or(0)
    }

    fn do_match(&mut self, mut s: usize, mut p: usize) -> Result<Option<usize>> {
        if self.depth == 0 {
            return invalid("pattern too complex");
        }
        self.depth -= 1;
        let result = loop {
            self.step()?;
            if p == self.pattern.len() {
                break Some(s);
            }
            match self.pattern[p] {
                b'(' => {
                    break if self.p(p + 1) == b')' {
                        self.start_capture(s, p + 2, Capture::Position(s))?
                    } else {
                        self.start_capture(s, p + 1, Capture::Unfinished(s))?
                    };
                }
                b')' => break self.end_capture(s, p + 1)?,
                b'$' if p + 1 == self.pattern.len() => {
                    break (s == self.subject.len()).then_some(s);
                }
                ESCAPE if self.p(p + 1) == b'b' => match self.match_balance(s, p + 2)? {
                    Some(end) => {
                        s = end;
                        p += 4;
                    }
                    None => break None,
                },
                ESCAPE if self.p(p + 1) == b'f' => {
                    p += 2;
                    if self.p(p) != b'[' {
                        return invalid("missing '[' after '%f' in pattern");
                    }
                    let end = self.class_end(p)?;
                    let previous = if s == 0 { 0 } else { self.s(s - 1) };
                    if !self.match_bracket_class(previous, p, end - 1)
                        && self.match_bracket_class(self.s(s), p, end - 1)
                    {
                        p = end;
                    } else {
                        break None;
                    }
                }
                ESCAPE if self.p(p + 1).is_ascii_digit() => {
                    match self.match_capture(s, self.p(p + 1))? {
                        Some(end) => {
                            s = end;
                            p += 2;
                        }
                        None => break None,
                    }
                }
                _ => {
                    let end = self.class_end(p)?;
                    let suffix = self.p(end);
                    if !self.single_match(s, p, end) {
                        if matches!(suffix, b'*' | b'?' | b'-') {
                            p = end + 1;
                            continue;
                        }
                        break None;
                    }
                    match suffix {
                        b'?' => match self.do_match(s + 1, end + 1)? {
                            Some(found) => break Some(found),
                            None => p = end + 1,
                        },
                        b'+' => break self.max_expand(s + 1, p, end)?,
                        b'*' => break self.max_expand(s, p, end)?,
                        b'-' => break self.min_expand(s, p, end)?,
                        _ => {
                            s += 1;
                            p = end;
                        }
                    }
                }
            }
        };
        self.depth += 1;
        Ok(result)
    }

    fn single_match(&self, s: usize, p: usize, end: usize) -> bool {
        let Some(&c) = self.subject.get(s) else {
            return false;
        };
        match self.pattern[p] {
            b'.' => true,
            ESCAPE => match_class(c, self.p(p + 1)),
            b'[' => self.match_bracket_class(c, p, end - 1),
            other => other == c,
        }
    }

    /// Where the single-character class at `p` ends (`classEnd`).
    fn class_end(&self, mut p: usize) -> Result<usize> {
        let first = self.p(p);
        p += 1;
        match first {
            ESCAPE => {
                if p >= self.pattern.len() {
                    return invalid("malformed pattern (ends with '%')");
                }
                Ok(p + 1)
            }
            b'[' => {
                if self.p(p) == b'^' {
                    p += 1;
                }
                loop {
                    if p >= self.pattern.len() {
                        return invalid("malformed pattern (missing ']')");
                    }
                    let c = self.pattern[p];
                    p += 1;
                    if c == ESCAPE && p < self.pattern.len() {
                        p += 1;
                    }
                    if self.p(p) == b']' {
                        break;
                    }
                }
                Ok(p + 1)
            }
            _ => Ok(p),
        }
    }

    /// Whether `c` is in the set `[...]` that starts at `p` and whose `]` is at `close`.
    fn match_bracket_class(&self, c: u8, mut p: usize, close: usize) -> bool {
        let mut found = true;
        if self.p(p + 1) == b'^' {
            found = false;
            p += 1;
        }
        loop {
            p += 1;
            if p >= close {
                break;
            }
            let item = self.pattern[p];
            if item == ESCAPE {
                p += 1;
                if match_class(c, self.p(p)) {
                    return found;
                }
            } else if self.p(p + 1) == b'-' && p + 2 < close {
                p += 2;
                if item <= c && c <= self.pattern[p] {
                    return found;
                }
            } else if item == c {
                return found;
            }
        }
        !found
    }

    fn match_balance(&mut self, s: usize, p: usize) -> Result<Option<usize>> {
        if p + 1 >= self.pattern.len() {
            return invalid("malformed pattern (missing arguments to '%b')");
        }
        let (open, close) = (self.pattern[p], self.pattern[p + 1]);
        if s >= self.subject.len() || self.subject[s] != open {
            return Ok(None);
        }
        let mut depth = 1;
        for at in s + 1..self.subject.len() {
            self.step()?;
            let c = self.subject[at];
            if c == close {
                depth -= 1;
                if depth == 0 {
                    return Ok(Some(at + 1));
                }
            } else if c == open {
                depth += 1;
            }
        }
        Ok(None)
    }

    fn max_expand(&mut self, s: usize, p: usize, end: usize) -> Result<Option<usize>> {
        let mut count = 0;
        while self.single_match(s + count, p, end) {
            self.step()?;
            count += 1;
        }
        loop {
            if let Some(found) = self.do_match(s + count, end + 1)? {
                return Ok(Some(found));
            }
            if count == 0 {
                return Ok(None);
            }
            count -= 1;
        }
    }

    fn min_expand(&mut self, mut s: usize, p: usize, end: usize) -> Result<Option<usize>> {
        loop {
            if let Some(found) = self.do_match(s, end + 1)? {
                return Ok(Some(found));
            }
            if !self.single_match(s, p, end) {
                return Ok(None);
            }
            s += 1;
        }
    }

    fn start_capture(&mut self, s: usize, p: usize, capture: Capture) -> Result<Option<usize>> {
        if self.captures.len() >= MAX_CAPTURES {
            return invalid("too many captures");
        }
        self.captures.push(capture);
        let found = self.do_match(s, p)?;
        if found.is_none() {
            self.captures.pop();
        }
        Ok(found)
    }

    fn end_capture(&mut self, s: usize, p: usize) -> Result<Option<usize>> {
        let Some(level) = self
            .captures
            .iter()
            .rposition(|c| matches!(c, Capture::Unfinished(_)))
        else {
            return invalid("invalid pattern capture");
        };
        let Capture::Unfinished(start) = self.captures[level] else {
            unreachable!("found just above");
        };
        self.captures[level] = Capture::Closed(start, s - start);
        let found = self.do_match(s, p)?;
        if found.is_none() {
            self.captures[level] = Capture::Unfinished(start);
        }
        Ok(found)
    }

    /// `%1`…`%9` in a pattern: the text of an earlier capture, again.
    fn match_capture(&mut self, s: usize, digit: u8) -> Result<Option<usize>> {
        let index = usize::from(digit).wrapping_sub(usize::from(b'1'));
        let (start, len) = match self.captures.get(index) {
            Some(Capture::Closed(start, len)) => (*start, *len),
            // A position capture never matches text (its length is "huge" in the C code).
            Some(Capture::Position(_)) => return Ok(None),
            _ => {
                return invalid(format!(
                    "invalid capture index %{}",
                    index.wrapping_add(1) as isize
                ))
            }
        };
        let rest = &self.subject[s.min(self.subject.len())..];
        if rest.len() >= len && rest[..len] == self.subject[start..start + len] {
            Ok(Some(s + len))
        } else {
            Ok(None)
        }
    }
}

/// Whether `c` is in the class `%class` (`match_class`, in the C locale).
fn match_class(c: u8, class: u8) -> bool {
    let found = match class.to_ascii_lowercase() {
        b'a' => c.is_ascii_alphabetic(),
        b'c' => c.is_ascii_control(),
        b'd' => c.is_ascii_digit(),
        b'g' => c.is_ascii_graphic(),
        b'l' => c.is_ascii_lowercase(),
        b'p' => c.is_ascii_punctuation(),
        b's' => matches!(c, b' ' | b'\t' | b'\n' | 0x0b | 0x0c | b'\r'),
        b'u' => c.is_ascii_uppercase(),
        b'w' => c.is_ascii_alphanumeric(),
        b'x' => c.is_ascii_hexdigit(),
        _ => return class == c,
    };
    if class.is_ascii_uppercase() {
        !found
    } else {
        found
    }
}

/// Whether `pattern` has none of the characters that make it a pattern (`nospecials`): then
/// `string.find` searches for it as plain text.
pub(super) fn has_no_specials(pattern: &[u8]) -> bool {
    !pattern.iter().any(|c| b"^$*+?.([%-".contains(c))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every match of `pattern` in `subject`, as Lua's `gmatch` would give the whole matches.
    fn find(subject: &str, pattern: &str) -> Option<(usize, usize, Vec<String>)> {
        let mut never = || Ok(());
        let (anchored, pattern) = match pattern.strip_prefix('^') {
            Some(rest) => (true, rest),
            None => (false, pattern),
        };
        let mut matcher = Matcher::new(subject.as_bytes(), pattern.as_bytes(), &mut never);
        for start in 0..=subject.len() {
            if let Some(end) = matcher.match_at(start).unwrap() {
                let captures = matcher
                    .captures(start, end, false)
                    .unwrap()
                    .into_iter()
                    .map(|c| match c {
                        Captured::Text(t) => String::from_utf8_lossy(t).into_owned(),
                        Captured::Position(p) => format!("@{p}"),
                    })
                    .collect();
                return Some((start + 1, end, captures));
            }
            if anchored {
                break;
            }
        }
        None
    }

    fn error(subject: &str, pattern: &str) -> String {
        let mut never = || Ok(());
        let mut matcher = Matcher::new(subject.as_bytes(), pattern.as_bytes(), &mut never);
        match matcher.match_at(0) {
            Err(PatternError::Invalid(message)) => message,
            other => panic!("expected an error, got {other:?}"),
        }
    }

    #[test]
    fn matches_as_lua_does() {
        // Each expectation is what Lua 5.4's string.find returns.
        assert_eq!(find("hello world", "o w"), Some((5, 7, vec![])));
        assert_eq!(find("hello", "l+"), Some((3, 4, vec![])));
        assert_eq!(find("hello", "^h(.-)o$"), Some((1, 5, vec!["ell".into()])));
        assert_eq!(
            find("key = value", "(%w+)%s*=%s*(%w+)"),
            Some((1, 11, vec!["key".into(), "value".into()]))
        );
        assert_eq!(
            find("THE (quick) fox", "%((%a+)%)"),
            Some((5, 11, vec!["quick".into()]))
        );
        assert_eq!(find("x = f(a(b)c)", "%b()"), Some((6, 12, vec![])));
        assert_eq!(
            find("THE (quick) fox", "%f[%a]%a+%f[%A]"),
            Some((1, 3, vec![]))
        );
        assert_eq!(
            find("abcabc", "()b()"),
            Some((2, 2, vec!["@2".into(), "@3".into()]))
        );
        assert_eq!(
            find("hello hello", "(h%a+) %1"),
            Some((1, 11, vec!["hello".into()]))
        );
        assert_eq!(find("a.b", "[%.]"), Some((2, 2, vec![])));
        assert_eq!(find("a]b", "[]]"), Some((2, 2, vec![])));
        assert_eq!(find("a-b", "[a-]"), Some((1, 1, vec![])));
        assert_eq!(find("x9", "[^%a]"), Some((2, 2, vec![])));
        assert_eq!(find("aaa", "a-b"), None);
        assert_eq!(find("", "x*"), Some((1, 0, vec![])));
        assert_eq!(find("ab", "a?b"), Some((1, 2, vec![])));
        assert_eq!(find("\x0b", "%s"), Some((1, 1, vec![])));
        assert_eq!(find("a$b", "$b"), Some((2, 3, vec![])));
    }

    #[test]
    fn bad_patterns_fail_with_luas_messages() {
        assert_eq!(error("a", "%"), "malformed pattern (ends with '%')");
        assert_eq!(error("a", "[a"), "malformed pattern (missing ']')");
        assert_eq!(error("a", "a)"), "invalid pattern capture");
        assert_eq!(error("a", "%1"), "invalid capture index %1");
        assert_eq!(
            error("a", "%b"),
            "malformed pattern (missing arguments to '%b')"
        );
        assert_eq!(error("a", "%fa"), "missing '[' after '%f' in pattern");
        assert_eq!(error("a", &"(".repeat(33)), "too many captures");
        let mut never = || Ok(());
        let mut matcher = Matcher::new(b"a", b"(a", &mut never);
        let end = matcher.match_at(0).unwrap().unwrap();
        assert!(matches!(
            matcher.captures(0, end, true),
            Err(PatternError::Invalid(m)) if m == "unfinished capture"
        ));
    }

    #[test]
    fn a_crafted_pattern_stops_when_the_check_says_so() {
        let subject = "a".repeat(20_000);
        let mut checks = 0;
        let mut check = || {
            checks += 1;
            if checks > 100 {
                Err(mlua::Error::runtime("timeout"))
            } else {
                Ok(())
            }
        };
        let mut matcher = Matcher::new(subject.as_bytes(), b".-.-.-.-b", &mut check);
        assert!(matches!(matcher.match_at(0), Err(PatternError::Stopped(_))));
    }
}

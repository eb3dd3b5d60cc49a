//! `string.find`, `string.match`, `string.gmatch` and `string.gsub` on the matcher of
//! [`super::pattern`], which honours the request's deadline: they replace Lua's own in the
//! sandbox, and behave like them otherwise (arguments, results, error messages).

use std::cell::Cell;
use std::rc::Rc;

use mlua::{Function, Integer, Lua, LuaString, MultiValue, Table, Value};

use super::pattern::{has_no_specials, Captured, Matcher};
use super::{Clock, MemoryBudget};

/// How large a `gsub` result may grow, in bytes, before the memory limit is checked again
/// (then at every doubling): Rust builds it, outside the Lua allocator's limit.
const FIRST_BUDGET_CHECK: usize = 1 << 20;

/// Replaces the pattern functions of the `string` table (the one every plugin's copy and the
/// string metatable's `__index` come from).
pub(super) fn install(
    lua: &Lua,
    string: &Table,
    clock: Rc<Clock>,
    memory_limit: usize,
) -> mlua::Result<()> {
    for find in [true, false] {
        let clock = clock.clone();
        let function = lua.create_function(
            move |lua, (s, p, init, plain): (LuaString, LuaString, Option<Integer>, Value)| {
                find_or_match(lua, &clock, &s, &p, init, find.then_some(plain), find)
            },
        )?;
        string.raw_set(if find { "find" } else { "match" }, function)?;
    }
    let gmatch_clock = clock.clone();
    string.raw_set(
        "gmatch",
        lua.create_function(
            move |lua, (s, p, init): (LuaString, LuaString, Option<Integer>)| {
                gmatch(lua, gmatch_clock.clone(), s, p, init)
            },
        )?,
    )?;
    let budget = MemoryBudget {
        limit: memory_limit,
    };
    string.raw_set(
        "gsub",
        lua.create_function(
            move |lua, (s, p, repl, max): (LuaString, LuaString, Value, Option<Integer>)| {
                gsub(lua, &clock, budget, &s, &p, repl, max)
            },
        )?,
    )?;
    Ok(())
}

/// The 0-based start of a search from Lua's `init` argument (`posrelatI` − 1); more than
/// the subject's length when it starts past the end.
fn start_index(init: Option<Integer>, len: usize) -> usize {
    let init = init.unwrap_or(1);
    let one_based = if init > 0 {
        usize::try_from(init).unwrap_or(usize::MAX)
    } else if init == 0 || init.unsigned_abs() > len as u64 {
        1
    } else {
        len - init.unsigned_abs() as usize + 1
    };
    one_based - 1
}

/// The pattern without its `^` anchor, and whether it had one.
fn unanchored(pattern: &[u8]) -> (bool, &[u8]) {
    match pattern.split_first() {
        Some((b'^', rest)) => (true, rest),
        _ => (false, pattern),
    }
}

fn to_lua(lua: &Lua, captured: Captured<'_>) -> mlua::Result<Value> {
    Ok(match captured {
        Captured::Text(text) => Value::String(lua.create_string(text)?),
        Captured::Position(at) => Value::Integer(at as Integer),
    })
}

fn captures_to_lua(lua: &Lua, captures: Vec<Captured<'_>>) -> mlua::Result<MultiValue> {
    captures.into_iter().map(|c| to_lua(lua, c)).collect()
}

fn fail() -> MultiValue {
    MultiValue::from_iter([Value::Nil])
}

/// `string.find` (`plain` is its fourth argument) and `string.match` (`str_find_aux`).
fn find_or_match(
    lua: &Lua,
    clock: &Clock,
    s: &LuaString,
    p: &LuaString,
    init: Option<Integer>,
    plain: Option<Value>,
    find: bool,
) -> mlua::Result<MultiValue> {
    let subject = s.as_bytes();
    let pattern = p.as_bytes();
    let init = start_index(init, subject.len());
    if init > subject.len() {
        return Ok(fail());
    }
    let plain = plain.is_some_and(|v| !matches!(v, Value::Nil | Value::Boolean(false)));
    if find && (plain || has_no_specials(&pattern)) {
        // A linear search: Lua's own is quadratic in the worst case.
        return Ok(match memchr::memmem::find(&subject[init..], &pattern) {
            Some(at) => MultiValue::from_iter([
                Value::Integer((init + at + 1) as Integer),
                Value::Integer((init + at + pattern.len()) as Integer),
            ]),
            None => fail(),
        });
    }
    let (anchored, pattern) = unanchored(&pattern);
    let mut check = || clock.check();
    let mut matcher = Matcher::new(&subject, pattern, &mut check);
    let mut start = init;
    loop {
        if let Some(end) = matcher.match_at(start)? {
            return if find {
                let mut found = MultiValue::from_iter([
                    Value::Integer((start + 1) as Integer),
                    Value::Integer(end as Integer),
                ]);
                found.extend(captures_to_lua(lua, matcher.captures(start, end, false)?)?);
                Ok(found)
            } else {
                captures_to_lua(lua, matcher.captures(start, end, true)?)
            };
        }
        start += 1;
        if anchored || start > subject.len() {
            return Ok(fail());
        }
    }
}

/// `string.gmatch`: an iterator over the matches (a `^` is a plain character here, as in
/// Lua 5.4).
fn gmatch(
    lua: &Lua,
    clock: Rc<Clock>,
    s: LuaString,
    p: LuaString,
    init: Option<Integer>,
) -> mlua::Result<Function> {
    let len = s.as_bytes().len();
    let from = Cell::new(start_index(init, len).min(len + 1));
    let last_match: Cell<Option<usize>> = Cell::new(None);
    lua.create_function(move |lua, ()| {
        let subject = s.as_bytes();
        let pattern = p.as_bytes();
        let mut check = || clock.check();
        let mut matcher = Matcher::new(&subject, &pattern, &mut check);
        for start in from.get()..=subject.len() {
            if let Some(end) = matcher.match_at(start)? {
                if Some(end) != last_match.get() {
                    from.set(end);
                    last_match.set(Some(end));
                    return captures_to_lua(lua, matcher.captures(start, end, true)?);
                }
            }
        }
        Ok(MultiValue::new())
    })
}

/// What `gsub` replaces each match with.
enum Replacement {
    Text(LuaString),
    Table(Table),
    Function(Function),
}

/// `string.gsub`.
fn gsub(
    lua: &Lua,
    clock: &Clock,
    budget: MemoryBudget,
    s: &LuaString,
    p: &LuaString,
    repl: Value,
    max: Option<Integer>,
) -> mlua::Result<(Value, Integer)> {
    let replacement = match repl {
        Value::Table(table) => Replacement::Table(table),
        Value::Function(function) => Replacement::Function(function),
        other @ (Value::String(_) | Value::Integer(_) | Value::Number(_)) => {
            match lua.coerce_string(other)? {
                Some(text) => Replacement::Text(text),
                None => unreachable!("strings and numbers coerce to strings"),
            }
        }
        other => {
            return Err(mlua::Error::runtime(format!(
                "bad argument #3 to 'gsub' (string/function/table expected, got {})",
                other.type_name()
            )))
        }
    };
    let subject = s.as_bytes();
    let pattern = p.as_bytes();
    let max = max.unwrap_or(subject.len() as Integer + 1);
    let (anchored, pattern) = unanchored(&pattern);
    let mut check = || clock.check();
    let mut matcher = Matcher::new(&subject, pattern, &mut check);
    let mut out: Vec<u8> = Vec::new();
    let mut next_check = FIRST_BUDGET_CHECK;
    let (mut src, mut last_match, mut count, mut changed) = (0, None, 0, false);
    while count < max {
        match matcher.match_at(src)? {
            Some(end) if Some(end) != last_match => {
                count += 1;
                changed |= replace(lua, &matcher, &mut out, src, end, &replacement)?;
                src = end;
                last_match = Some(end);
            }
            _ if src < subject.len() => {
                out.push(subject[src]);
                src += 1;
            }
            _ => break,
        }
        if out.len() > next_check {
            budget.check(lua, out.len())?;
            next_check = out.len() * 2;
        }
        if anchored {
            break;
        }
    }
    if !changed {
        return Ok((Value::String(s.clone()), count));
    }
    out.extend_from_slice(&subject[src..]);
    budget.check(lua, out.len())?;
    Ok((Value::String(lua.create_string(&out)?), count))
}

/// Appends what replaces the match `start..end` (`add_value`); returns whether it changed
/// anything (a `nil` or `false` from a table or function keeps the match).
fn replace(
    lua: &Lua,
    matcher: &Matcher<'_, '_>,
    out: &mut Vec<u8>,
    start: usize,
    end: usize,
    replacement: &Replacement,
) -> mlua::Result<bool> {
    let value = match replacement {
        Replacement::Text(text) => {
            expand(matcher, out, start, end, &text.as_bytes())?;
            return Ok(true);
        }
        Replacement::Function(function) => {
            function.call::<Value>(captures_to_lua(lua, matcher.captures(start, end, true)?)?)?
        }
        Replacement::Table(table) => {
            table.get::<Value>(to_lua(lua, matcher.capture(0, start, end)?)?)?
        }
    };
    match value {
        Value::Nil | Value::Boolean(false) => {
            out.extend_from_slice(matcher.subject_slice(start, end));
            Ok(false)
        }
        value @ (Value::String(_) | Value::Integer(_) | Value::Number(_)) => {
            if let Some(text) = lua.coerce_string(value)? {
                out.extend_from_slice(&text.as_bytes());
            }
            Ok(true)
        }
        other => Err(mlua::Error::runtime(format!(
            "invalid replacement value (a {})",
            other.type_name()
        ))),
    }
}

/// A replacement string with its `%0`…`%9` and `%%` expanded (`add_s`).
fn expand(
    matcher: &Matcher<'_, '_>,
    out: &mut Vec<u8>,
    start: usize,
    end: usize,
    text: &[u8],
) -> mlua::Result<()> {
    let mut bytes = text.iter();
    while let Some(&c) = bytes.next() {
        if c != b'%' {
            out.push(c);
            continue;
        }
        match bytes.next() {
            Some(b'%') => out.push(b'%'),
            Some(b'0') => out.extend_from_slice(matcher.subject_slice(start, end)),
            Some(&d) if d.is_ascii_digit() => {
                match matcher.capture(usize::from(d - b'1'), start, end)? {
                    Captured::Text(piece) => out.extend_from_slice(piece),
                    Captured::Position(at) => out.extend_from_slice(at.to_string().as_bytes()),
                }
            }
            _ => {
                return Err(mlua::Error::runtime(
                    "invalid use of '%' in replacement string",
                ))
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::cell::Cell;
    use std::rc::Rc;
    use std::time::{Duration, Instant};

    use mlua::{Lua, Table};

    use super::super::Clock;

    /// Formats what an expression returns (or that it raised), the same in both interpreters.
    const DUMP: &str = r#"
local function dump(ok, ...)
  if not ok then return "error" end
  local t = table.pack(...)
  local out = {}
  for i = 1, t.n do out[#out + 1] = math.type(t[i]) or type(t[i]); out[#out + 1] = tostring(t[i]) end
  return table.concat(out, "|")
end
return function(f) return dump(pcall(f)) end
"#;

    /// Every case is run with Lua's own functions and with ours: the results must be equal.
    const CASES: &[&str] = &[
        r#"string.find("hello world", "o w")"#,
        r#"string.find("hello world", "o", 6)"#,
        r#"string.find("hello", "l", -2)"#,
        r#"string.find("hello", "l", 0)"#,
        r#"string.find("hello", "l", -100)"#,
        r#"string.find("hello", "", 10)"#,
        r#"string.find("hello", "", 6)"#,
        r#"string.find("a.b", ".", 1, true)"#,
        r#"string.find("a+b", "+", 1, true)"#,
        r#"string.find("hello", "^h(.-)o$")"#,
        r#"string.find("hello", "^e")"#,
        r#"string.find("abcabc", "()b()")"#,
        r#"string.find(12345, 3)"#,
        r#"string.match("key = value", "(%w+)%s*=%s*(%w+)")"#,
        r#"string.match("  trim me  ", "^%s*(.-)%s*$")"#,
        r#"string.match("THE (quick) fox", "%((%a+)%)")"#,
        r#"string.match("x = f(a(b)c) + 1", "%b()")"#,
        r#"string.match("THE (quick) fox", "%f[%a]%a+%f[%A]", 5)"#,
        r#"string.match("hello hello", "(h%a+) %1")"#,
        r#"string.match("2024-01-31", "^(%d+)-(%d%d)-(%d%d)$")"#,
        r#"string.match("a]b", "[]]")"#,
        r#"string.match("a-b", "[a-]+")"#,
        r#"string.match("x9_", "[^%a]+")"#,
        r#"string.match("\v\t x", "%s+")"#,
        r#"string.match("café", "[\128-\255]+")"#,
        r#"string.match("abc", "()")"#,
        r#"string.match("abc", "a?b?c?d?")"#,
        r#"string.match("aaa", "a-$")"#,
        r#"string.match("[[x]]", "%[(%b[])%]")"#,
        r#"string.match("abc", "%")"#,
        r#"string.match("abc", "[a")"#,
        r#"string.match("abc", "(a")"#,
        r#"string.match("abc", "a)")"#,
        r#"string.match("abc", "%1")"#,
        r#"string.match("abc", "%b")"#,
        r#"string.match("abc", "%fa")"#,
        r#"string.gsub("hello world", "o", "0")"#,
        r#"string.gsub("hello world", "(%w+)", "<%1>")"#,
        r#"string.gsub("hello world", "%w+", "%0 %0", 1)"#,
        r#"string.gsub("abc", "%w*", "-")"#,
        r#"string.gsub("abc", "", "-")"#,
        r#"string.gsub("abc", "^", ">")"#,
        r#"string.gsub("hello", "l+", "%%")"#,
        r#"string.gsub("hello", "l", "%2")"#,
        r#"string.gsub("hello", "l", "%x")"#,
        r#"string.gsub("abc", "()", "%1")"#,
        r#"string.gsub("$name is $age", "%$(%w+)", {name = "Ann", age = 7})"#,
        r#"string.gsub("$name is $x", "%$(%w+)", {name = false})"#,
        r#"string.gsub("a b c", "%a", function(c) if c == "b" then return nil end return c:upper() end)"#,
        r#"string.gsub("a b", "%a", function() return {} end)"#,
        r#"string.gsub("a b", "%a", 5)"#,
        r#"string.gsub("abc", "b", "x", 0)"#,
        r#"string.gsub("abc", ".", {a = 1, b = 2.5})"#,
        r#"(function() local t = {} for k, v in string.gmatch("a=1, b=2", "(%w+)=(%w+)") do t[#t + 1] = k .. v end return table.concat(t, ";") end)()"#,
        r#"(function() local t = {} for w in string.gmatch("one two  three", "%a+") do t[#t + 1] = w end return table.concat(t, ";") end)()"#,
        r#"(function() local t = {} for p in string.gmatch("abc", "()") do t[#t + 1] = p end return table.concat(t, ";") end)()"#,
        r#"(function() local t = {} for w in string.gmatch("abc", "%a*") do t[#t + 1] = "[" .. w .. "]" end return table.concat(t, ";") end)()"#,
        r#"(function() local t = {} for w in string.gmatch("one two three", "%a+", 5) do t[#t + 1] = w end return table.concat(t, ";") end)()"#,
        r#"(function() local t = {} for w in string.gmatch("^a^b", "^%a") do t[#t + 1] = w end return table.concat(t, ";") end)()"#,
        r#"("x"):rep(3):find("xx", 2)"#,
    ];

    fn evaluate(lua: &Lua, cases: &[&str]) -> Vec<String> {
        let run: mlua::Function = lua.load(DUMP).eval().unwrap();
        cases
            .iter()
            .map(|case| {
                let f: mlua::Function = lua.load(format!("return {case}")).into_function().unwrap();
                run.call::<String>(f).unwrap()
            })
            .collect()
    }

    #[test]
    fn the_pattern_functions_behave_as_luas_own() {
        let own = Lua::new();
        let ours = Lua::new();
        let clock = Rc::new(Clock {
            deadline: Cell::new(Instant::now() + Duration::from_secs(3600)),
            expired: Cell::new(false),
        });
        let string: Table = ours.globals().get("string").unwrap();
        super::install(&ours, &string, clock, 64 << 20).unwrap();
        let expected = evaluate(&own, CASES);
        let got = evaluate(&ours, CASES);
        // Not a vacuous comparison: the first case finds "o w" at 5..7.
        assert_eq!(expected[0], "integer|5|integer|7");
        assert!(expected.iter().filter(|e| *e == "error").count() < 12);
        for ((case, expected), got) in CASES.iter().zip(&expected).zip(&got) {
            assert_eq!(got, expected, "{case}");
        }
    }
}

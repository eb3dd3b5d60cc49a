//! [`Args`]: a request's two string arguments, kept inside the request itself when short.
//!
//! A request is made on the caller's thread and finished on a worker's. Arguments in heap
//! strings would be allocated on one thread and freed on the other, and such frees are the
//! costly kind for any allocator (they land on another thread's free lists, and both
//! workers land on the same caller's). Short arguments, which is nearly all of them (a login
//! and a node description are a few dozen bytes), are therefore copied into a buffer inside
//! the request, which travels through the queue by value and is never freed at all.

use std::fmt;

use serde_json::Value;

use crate::decision::Callback;

/// Bytes of both arguments together that are kept inline; longer ones go to the heap.
pub const INLINE_CAPACITY: usize = 192;

/// A callback's arguments: `[signup_info or login_info, node_info]`, or `[node_info, ""]`
/// for `on_new_node`. Build one from two strings (`Args::new`, or `From` an array of
/// `&str` or `String`); cloning a short one copies bytes and allocates nothing.
#[derive(Clone)]
pub struct Args {
    repr: Repr,
}

#[derive(Clone)]
enum Repr {
    /// Both arguments, one after the other, in `bytes[..len]`; the first is `bytes[..split]`.
    Inline {
        bytes: [u8; INLINE_CAPACITY],
        split: u8,
        len: u8,
    },
    /// Arguments too long to keep inline, as the caller's own strings.
    Heap(Box<[String; 2]>),
}

// The inline lengths are stored in a byte each.
const _: () = assert!(INLINE_CAPACITY <= u8::MAX as usize);

impl Args {
    /// The arguments `first` and `second` (for `on_new_node`, `second` is ignored: pass "").
    pub fn new(first: &str, second: &str) -> Args {
        let len = first.len() + second.len();
        if len > INLINE_CAPACITY {
            return Args {
                repr: Repr::Heap(Box::new([first.to_owned(), second.to_owned()])),
            };
        }
        let mut bytes = [0; INLINE_CAPACITY];
        bytes[..first.len()].copy_from_slice(first.as_bytes());
        bytes[first.len()..len].copy_from_slice(second.as_bytes());
        Args {
            repr: Repr::Inline {
                bytes,
                split: first.len() as u8,
                len: len as u8,
            },
        }
    }

    /// Both arguments.
    pub fn get(&self) -> [&str; 2] {
        match &self.repr {
            Repr::Inline { bytes, split, len } => {
                let (first, second) = bytes[..*len as usize].split_at(*split as usize);
                // SAFETY: `new` is the only writer of an inline buffer, and it copies two
                // `&str`s whole, one after the other, with `split` between them: each part
                // is exactly the bytes of one of them, so valid UTF-8.
                unsafe {
                    [
                        std::str::from_utf8_unchecked(first),
                        std::str::from_utf8_unchecked(second),
                    ]
                }
            }
            Repr::Heap(strings) => [&strings[0], &strings[1]],
        }
    }

    /// The first argument (`signup_info`, `login_info`, or `new_node`'s `node_info`).
    pub fn first(&self) -> &str {
        self.get()[0]
    }

    /// The second argument (`node_info` of the user callbacks; "" for `on_new_node`).
    pub fn second(&self) -> &str {
        self.get()[1]
    }

    /// Whether the arguments are kept inline (no heap allocation).
    pub fn is_inline(&self) -> bool {
        matches!(self.repr, Repr::Inline { .. })
    }
}

impl From<[&str; 2]> for Args {
    fn from([first, second]: [&str; 2]) -> Args {
        Args::new(first, second)
    }
}

impl From<[String; 2]> for Args {
    /// Short strings are copied inline (and freed here, on the caller's thread); long ones
    /// are kept as they are, without a copy.
    fn from(strings: [String; 2]) -> Args {
        if strings[0].len() + strings[1].len() <= INLINE_CAPACITY {
            Args::new(&strings[0], &strings[1])
        } else {
            Args {
                repr: Repr::Heap(Box::new(strings)),
            }
        }
    }
}

impl PartialEq for Args {
    fn eq(&self, other: &Args) -> bool {
        self.get() == other.get()
    }
}

impl Eq for Args {}

impl fmt::Debug for Args {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.get()).finish()
    }
}

/// The names of a callback's params, in positional order.
pub(crate) fn param_names(callback: Callback) -> &'static [&'static str] {
    match callback {
        Callback::UserSignup => &["signup_info", "node_info"],
        Callback::UserLogin => &["login_info", "node_info"],
        Callback::NewNode => &["node_info"],
    }
}

/// A callback's arguments from params as the service and policy test cases give them: named
/// (an object) or positional (an array).
/// Each must be a string, or a JSON object or array, which is passed as its JSON text.
///
/// # Failure
///
/// A message naming the missing, unknown or mistyped param.
pub(crate) fn callback_args(
    callback: Callback,
    params: Option<&Value>,
) -> Result<[String; 2], String> {
    let names = param_names(callback);
    let invalid = |message: String| message;
    let mut args = [String::new(), String::new()];
    match params {
        Some(Value::Object(named)) => {
            for (slot, name) in args.iter_mut().zip(names) {
                let value = named
                    .get(*name)
                    .ok_or_else(|| invalid(format!("missing param {name:?}")))?;
                *slot = arg_text(name, value)?;
            }
            if let Some(unknown) = named.keys().find(|k| !names.contains(&k.as_str())) {
                return Err(invalid(format!(
                    "unknown param {unknown:?}: {} takes {}",
                    callback.method_name(),
                    names.join(", ")
                )));
            }
        }
        Some(Value::Array(positional)) => {
            if positional.len() != names.len() {
                return Err(invalid(format!(
                    "{} takes {} params ({}), {} given",
                    callback.method_name(),
                    names.len(),
                    names.join(", "),
                    positional.len()
                )));
            }
            for ((slot, name), value) in args.iter_mut().zip(names).zip(positional) {
                *slot = arg_text(name, value)?;
            }
        }
        Some(_) => return Err(invalid("params must be an object or an array".into())),
        None => {
            return Err(invalid(format!(
                "missing params: {} takes {}",
                callback.method_name(),
                names.join(", ")
            )))
        }
    }
    Ok(args)
}

/// One argument's text: a string as it is, an object or array as its JSON text.
fn arg_text(name: &str, value: &Value) -> Result<String, String> {
    match value {
        Value::String(s) => Ok(s.clone()),
        Value::Object(_) | Value::Array(_) => Ok(value.to_string()),
        other => Err(format!(
            "param {name:?} must be a string (or a JSON object or array), not {}",
            json_type(other)
        )),
    }
}

fn json_type(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_arguments_are_kept_inline_and_read_back_whole() {
        let args = Args::new(r#"{"name":"ålice"}"#, r#"{"public_key":"k"}"#);
        assert!(args.is_inline());
        assert_eq!(args.get(), [r#"{"name":"ålice"}"#, r#"{"public_key":"k"}"#]);
        let copy = args.clone();
        assert_eq!(copy.first(), r#"{"name":"ålice"}"#);
        assert_eq!(copy.second(), r#"{"public_key":"k"}"#);
    }

    #[test]
    fn empty_arguments_stay_empty() {
        let args = Args::new("", "");
        assert_eq!(args.get(), ["", ""]);
        let one = Args::new("{}", "");
        assert_eq!(one.get(), ["{}", ""]);
    }

    #[test]
    fn arguments_that_just_fit_are_inline_and_one_more_byte_goes_to_the_heap() {
        let first = "a".repeat(100);
        let fits = "é".repeat((INLINE_CAPACITY - 100) / 2);
        let args = Args::new(&first, &fits);
        assert!(args.is_inline());
        assert_eq!(args.get(), [first.as_str(), fits.as_str()]);

        let over = format!("{fits}x");
        let args = Args::new(&first, &over);
        assert!(!args.is_inline());
        assert_eq!(args.get(), [first.as_str(), over.as_str()]);
    }

    #[test]
    fn long_strings_are_kept_without_a_copy_and_short_ones_are_copied_inline() {
        let long = "x".repeat(4096);
        let pointer = long.as_ptr();
        let args = Args::from([long, "node".to_string()]);
        assert!(!args.is_inline());
        assert_eq!(
            args.first().as_ptr(),
            pointer,
            "the caller's string was moved in"
        );
        assert_eq!(args.first().len(), 4096);
        assert_eq!(args.second(), "node");

        let short = Args::from(["login".to_string(), "node".to_string()]);
        assert!(short.is_inline());
        assert_eq!(short, Args::new("login", "node"));
        assert_ne!(short, Args::new("login", "nodes"));
    }
}

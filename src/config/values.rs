//! Typed readers for single values: each takes the key path and the YAML value, returns the typed
//! value, or records a problem at that path (`key: what was found, what is expected`) and returns
//! `None`. `parse.rs` composes them into the shape of the file; nothing here knows which key means
//! what.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use http::Uri;
use serde_norway::{Mapping, Value};

use super::position::{child, PositionIndex};
use super::units::{parse_duration, parse_size};
use super::urls::{check_origin, check_url};
use super::Problem;

/// Reads one key's value into its field of `T`; tables of these keep the walker free of
/// per-key code paths (`parse.rs`, `routes.rs`).
pub(crate) type Setter<T> = fn(&mut Walker<'_>, &str, &Value, &mut T);

/// The keys a table of setters accepts, in the table's order.
pub(crate) fn keys<T>(table: &[(&'static str, Setter<T>)]) -> Vec<&'static str> {
    table.iter().map(|(key, _)| *key).collect()
}

/// Stores a value that was read successfully; a problem was recorded otherwise.
pub(crate) fn set<T>(field: &mut T, value: Option<T>) {
    if let Some(value) = value {
        *field = value;
    }
}

/// For settings that are unset by default: YAML `null` (`~`, or nothing) unsets them, so a route
/// can drop what `defaults` set.
pub(crate) fn nullable<T>(value: &Value, read: impl FnOnce() -> Option<T>) -> Option<Option<T>> {
    if value.is_null() {
        Some(None)
    } else {
        read().map(Some)
    }
}

/// Walks a document, collecting problems with their positions.
pub(crate) struct Walker<'a> {
    index: &'a PositionIndex,
    base_dir: &'a Path,
    problems: Vec<Problem>,
    /// Values that must be unique (route paths, binds), with the path of their first use.
    seen: HashMap<(&'static str, String), String>,
}

impl<'a> Walker<'a> {
    pub fn new(index: &'a PositionIndex, base_dir: &'a Path) -> Walker<'a> {
        Walker {
            index,
            base_dir,
            problems: Vec::new(),
            seen: HashMap::new(),
        }
    }

    /// All problems, sorted by position.
    pub fn into_problems(mut self) -> Vec<Problem> {
        self.problems.sort_by_key(|p| (p.line, p.column));
        self.problems
    }

    /// Records that `path` uses `value` as a `what`; a value used before is reported at its
    /// second use, naming the line of the first.
    pub fn unique(&mut self, path: &str, what: &'static str, value: String) {
        if let Some(first) = self.seen.get(&(what, value.clone())) {
            let line = self.index.lookup(first).line;
            self.report_value(
                path,
                format!("duplicate {what} `{value}` (first at line {line})"),
            );
        } else {
            self.seen.insert((what, value), path.to_owned());
        }
    }

    /// Records a problem at `path` (a key, an item, or a mapping a key is missing from).
    pub fn report(&mut self, path: &str, message: String) {
        let pos = self.index.lookup(path);
        self.problems.push(Problem {
            line: pos.line,
            column: pos.column,
            message,
        });
    }

    /// Records `key: detail` at the key's path.
    pub fn report_value(&mut self, path: &str, detail: impl std::fmt::Display) {
        self.report(path, format!("{}: {detail}", key_name(path)));
    }

    fn mismatch(&mut self, path: &str, expected: &str, found: &Value) {
        self.report_value(
            path,
            format!("expected {expected}, found {}", describe(found)),
        );
    }

    // ----- structure -----

    /// Applies each key of `map` that `table` knows to `target`.
    pub fn apply<T>(
        &mut self,
        path: &str,
        map: &Mapping,
        table: &[(&'static str, Setter<T>)],
        target: &mut T,
    ) {
        for (key, setter) in table {
            if let Some(value) = map.get(*key) {
                setter(self, &child(path, key), value, target);
            }
        }
    }

    /// A mapping whose keys must all be in `allowed`; `what` names it in messages ("route").
    pub fn mapping<'v>(
        &mut self,
        path: &str,
        value: &'v Value,
        what: &str,
        allowed: &[&str],
    ) -> Option<&'v Mapping> {
        let Value::Mapping(map) = value else {
            self.mismatch(path, &format!("a mapping ({what})"), value);
            return None;
        };
        for key in map.keys() {
            let Value::String(key) = key else {
                let message = format!("keys must be strings, found {} in {what}", describe(key));
                self.report(path, message);
                continue;
            };
            if !allowed.contains(&key.as_str()) {
                let message = unknown_key_message(key, what, allowed);
                self.report(&child(path, key), message);
            }
        }
        Some(map)
    }

    /// The value of a key that must be present; a missing key is reported at the mapping.
    pub fn required<'v>(
        &mut self,
        path: &str,
        map: &'v Mapping,
        key: &str,
        what: &str,
    ) -> Option<&'v Value> {
        let value = map.get(key);
        if value.is_none() {
            self.report(path, format!("missing required key `{key}` in {what}"));
        }
        value
    }

    /// A list of at least one item.
    pub fn list<'v>(&mut self, path: &str, value: &'v Value, what: &str) -> Option<&'v [Value]> {
        match value {
            Value::Sequence(items) if items.is_empty() => {
                self.report_value(
                    path,
                    format!("expected at least one {what}, found an empty list"),
                );
                None
            }
            Value::Sequence(items) => Some(items),
            _ => {
                self.mismatch(path, &format!("a list of {what}s"), value);
                None
            }
        }
    }

    // ----- scalars -----

    pub fn string<'v>(&mut self, path: &str, value: &'v Value, expected: &str) -> Option<&'v str> {
        match value {
            Value::String(s) => Some(s),
            _ => {
                self.mismatch(path, expected, value);
                None
            }
        }
    }

    /// A duration string (`15s`); a YAML integer only when it is `0`.
    pub fn duration(&mut self, path: &str, value: &Value) -> Option<Duration> {
        let parsed = match value {
            Value::String(s) => parse_duration(s),
            Value::Number(n) if n.as_u64() == Some(0) => Ok(Duration::ZERO),
            Value::Number(n) => Err(format!(
                "invalid duration {n}: a bare number is only allowed for 0; \
                 expected an integer followed by ms, s, m or h (such as {n}s)"
            )),
            _ => Err(format!(
                "expected a duration such as 15s, 500ms, 2m or 1h, found {}",
                describe(value)
            )),
        };
        parsed.map_err(|e| self.report_value(path, e)).ok()
    }

    /// A duration greater than zero.
    pub fn positive_duration(&mut self, path: &str, value: &Value) -> Option<Duration> {
        let duration = self.duration(path, value)?;
        if duration.is_zero() {
            self.report_value(path, "must be greater than 0");
            return None;
        }
        Some(duration)
    }

    /// `0` disables: `None` inside.
    pub fn optional_duration(&mut self, path: &str, value: &Value) -> Option<Option<Duration>> {
        self.duration(path, value)
            .map(|d| (!d.is_zero()).then_some(d))
    }

    /// A size string (`64KiB`) or a YAML integer byte count.
    pub fn size(&mut self, path: &str, value: &Value) -> Option<u64> {
        let parsed = match value {
            Value::String(s) => parse_size(s),
            Value::Number(n) => n.as_u64().ok_or_else(|| {
                format!("invalid size {n}: expected a whole number of bytes or 64KiB, 1MiB, ...")
            }),
            _ => Err(format!(
                "expected a size such as 4096, 64KiB or 1MiB, found {}",
                describe(value)
            )),
        };
        parsed.map_err(|e| self.report_value(path, e)).ok()
    }

    /// A size that fits in memory (`usize`), optionally required to be greater than zero.
    pub fn memory_size(&mut self, path: &str, value: &Value, nonzero: bool) -> Option<usize> {
        let size = self.size(path, value)?;
        if nonzero && size == 0 {
            self.report_value(path, "must be greater than 0");
            return None;
        }
        usize::try_from(size)
            .map_err(|_| self.report_value(path, format!("{size} bytes is too large")))
            .ok()
    }

    /// A YAML integer greater than zero.
    pub fn positive_integer(&mut self, path: &str, value: &Value) -> Option<usize> {
        let n = match value {
            Value::Number(n) => n.as_u64().filter(|&n| n > 0),
            _ => None,
        };
        let n = n.and_then(|n| usize::try_from(n).ok());
        if n.is_none() {
            self.mismatch(path, "a positive integer", value);
        }
        n
    }

    /// One of a fixed set of words.
    pub fn choice<T: Copy>(&mut self, path: &str, value: &Value, words: &[(&str, T)]) -> Option<T> {
        if let Value::String(s) = value {
            if let Some((_, t)) = words.iter().find(|(word, _)| word == s) {
                return Some(*t);
            }
        }
        let names: Vec<String> = words.iter().map(|(word, _)| format!("`{word}`")).collect();
        self.mismatch(path, &one_of(&names), value);
        None
    }

    /// `IP:PORT` (port 0 lets the system choose).
    pub fn socket_addr(&mut self, path: &str, value: &Value) -> Option<SocketAddr> {
        let expected = "IP:PORT such as 127.0.0.1:8080";
        match value {
            Value::String(s) => s
                .parse()
                .map_err(|_| {
                    self.report_value(path, format!("invalid address {s:?}: expected {expected}"))
                })
                .ok(),
            // `[::1]:80` unquoted is a YAML flow sequence.
            Value::Sequence(_) => {
                let hint = format!("{expected} (quote IPv6 addresses: \"[::1]:8080\")");
                self.mismatch(path, &hint, value);
                None
            }
            _ => {
                self.mismatch(path, expected, value);
                None
            }
        }
    }

    /// A list of strings (possibly empty); `item` says what each is ("a message").
    pub fn string_list(&mut self, path: &str, value: &Value, item: &str) -> Option<Vec<String>> {
        let Value::Sequence(items) = value else {
            self.mismatch(path, &format!("a list ({item} each)"), value);
            return None;
        };
        let mut strings = Vec::with_capacity(items.len());
        for (i, value) in items.iter().enumerate() {
            let string = self.string(&super::position::item(path, i), value, item);
            strings.push(string.map(str::to_owned));
        }
        strings.into_iter().collect()
    }

    /// A list of browser origins (`https://example.com`, `http://127.0.0.1:8080`), lower-cased.
    pub fn origins(&mut self, path: &str, value: &Value) -> Option<Vec<String>> {
        let expected = "an origin such as https://example.com";
        let strings = self.string_list(path, value, expected)?;
        let mut origins = Vec::with_capacity(strings.len());
        for (i, origin) in strings.iter().enumerate() {
            match check_origin(origin) {
                Ok(origin) => origins.push(origin),
                Err(e) => self.report_value(&super::position::item(path, i), e),
            }
        }
        (origins.len() == strings.len()).then_some(origins)
    }

    /// A file that exists and can be read; relative paths are resolved against the directory of
    /// the configuration file. Returns the resolved path and the file's contents.
    pub fn readable_file(&mut self, path: &str, value: &Value) -> Option<(PathBuf, Vec<u8>)> {
        let name = self.string(path, value, "a file path")?;
        if name.is_empty() {
            self.report_value(path, "expected a file path, found an empty string");
            return None;
        }
        let resolved = self.base_dir.join(name);
        match std::fs::read(&resolved) {
            Ok(contents) => Some((resolved, contents)),
            Err(e) => {
                self.report_value(path, format!("cannot read {}: {e}", resolved.display()));
                None
            }
        }
    }

    /// An absolute `http`/`https`/`ws`/`wss` URL (`schemes` says which) with a host and no
    /// fragment; an empty path becomes `/`.
    pub fn url(&mut self, path: &str, value: &Value, schemes: &[&str]) -> Option<Uri> {
        let prefixes: Vec<String> = schemes.iter().map(|s| format!("{s}://")).collect();
        let expected = format!("a URL starting with {}", one_of(&prefixes));
        let text = self.string(path, value, &expected)?;
        check_url(text, schemes)
            .map_err(|e| {
                self.report_value(
                    path,
                    format!("invalid URL {text:?}: {e}; expected {expected}"),
                )
            })
            .ok()
    }
}

/// The last key of a path, as messages name it: `routes[1].heartbeat` -> `heartbeat`.
pub(crate) fn key_name(path: &str) -> &str {
    path.rsplit('.').next().unwrap_or(path)
}

/// How a value reads in a message: `"15 sec"`, `15`, `true`, `a list`, `a mapping`, `nothing`.
pub(crate) fn describe(value: &Value) -> String {
    match value {
        Value::Null => "nothing".to_owned(),
        Value::Bool(b) => b.to_string(),
        Value::Number(n) => n.to_string(),
        Value::String(s) => format!("{s:?}"),
        Value::Sequence(_) => "a list".to_owned(),
        Value::Mapping(_) => "a mapping".to_owned(),
        Value::Tagged(tagged) => format!("a value tagged {}", tagged.tag),
    }
}

/// `a`, `a or b`, `one of a, b or c`.
pub(crate) fn one_of(names: &[String]) -> String {
    match names {
        [] => String::new(),
        [one] => one.clone(),
        [first, last] => format!("{first} or {last}"),
        [init @ .., last] => format!("one of {} or {last}", init.join(", ")),
    }
}

fn unknown_key_message(key: &str, what: &str, allowed: &[&str]) -> String {
    let hint = allowed
        .iter()
        .filter(|known| edit_distance(key, known) <= 2)
        .min_by_key(|known| edit_distance(key, known))
        .map(|known| format!(" (did you mean `{known}`?)"))
        .unwrap_or_default();
    format!(
        "unknown key `{key}` in {what}{hint}; expected one of {}",
        allowed.join(", ")
    )
}

/// Levenshtein distance, for "did you mean" hints on short keys.
fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut diagonal = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let above = row[j + 1];
            row[j + 1] = (above + 1)
                .min(row[j] + 1)
                .min(diagonal + usize::from(ca != *cb));
            diagonal = above;
        }
    }
    row[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lists_of_names_read_naturally() {
        let names = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert_eq!(one_of(&names(&["a"])), "a");
        assert_eq!(one_of(&names(&["a", "b"])), "a or b");
        assert_eq!(one_of(&names(&["a", "b", "c"])), "one of a, b or c");
    }

    #[test]
    fn did_you_mean_only_for_close_keys() {
        assert_eq!(edit_distance("hearbeat", "heartbeat"), 1);
        let message = unknown_key_message("hearbeat", "route", &["path", "heartbeat"]);
        assert!(message.contains("(did you mean `heartbeat`?)"), "{message}");
        assert!(!unknown_key_message("zzz", "route", &["path"]).contains("did you mean"));
    }
}

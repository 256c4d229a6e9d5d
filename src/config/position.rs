//! Where each key of the YAML text stands. serde_norway's `Value` carries no spans, so the text is
//! read a second time with yaml-rust2's event parser and every key path (`routes[1].upstream`) is
//! mapped to the line and column of its key; every sequence item (`routes[1]`) and the root (`""`)
//! to the start of the node. Lookups fall back to the nearest enclosing path that is known, so a
//! problem always gets a position, even inside an alias or a text yaml-rust2 could not finish.

use std::collections::HashMap;

use yaml_rust2::parser::{Event, MarkedEventReceiver, Parser};
use yaml_rust2::scanner::Marker;

/// A 1-based line and column.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Pos {
    pub line: usize,
    pub column: usize,
    /// Offset in characters, to compare two positions.
    index: usize,
}

impl Pos {
    pub const START: Pos = Pos {
        line: 1,
        column: 1,
        index: 0,
    };

    fn from_marker(mark: Marker) -> Pos {
        // yaml-rust2 0.10: `line()` is 1-based, `col()` is 0-based.
        Pos {
            line: mark.line(),
            column: mark.col() + 1,
            index: mark.index(),
        }
    }
}

/// The path of `key` inside the mapping at `path`.
pub(crate) fn child(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_owned()
    } else {
        format!("{path}.{key}")
    }
}

/// The path of the `i`th item of the sequence at `path`.
pub(crate) fn item(path: &str, i: usize) -> String {
    format!("{path}[{i}]")
}

/// The path one level up: `a.b[2]` -> `a.b` -> `a` -> `""`; `None` for the root.
fn parent(path: &str) -> Option<&str> {
    if path.is_empty() {
        return None;
    }
    let cut = if path.ends_with(']') {
        path.rfind('[')
    } else {
        path.rfind('.')
    };
    Some(cut.map_or("", |i| &path[..i]))
}

/// Positions of the keys and items of one YAML document.
#[derive(Debug, Default)]
pub(crate) struct PositionIndex {
    positions: HashMap<String, Pos>,
    /// The second occurrence of the first key written twice in one mapping.
    duplicate_key: Option<Pos>,
    /// Where yaml-rust2 gave up on nesting too deep (256 flow levels).
    too_deep: Option<Pos>,
}

impl PositionIndex {
    pub fn build(text: &str) -> PositionIndex {
        let mut builder = Builder::default();
        // A text yaml-rust2 rejects is reported by serde_norway; what was indexed until the
        // error still serves. Except thousands of unclosed `[`: serde_norway's scanner takes
        // quadratic time on those (a minute for 100 000), so that one is caught here.
        if let Err(e) = Parser::new_from_str(text).load(&mut builder, false) {
            if e.info().contains("recursion limit exceeded") {
                builder.index.too_deep = Some(Pos::from_marker(*e.marker()));
            }
        }
        builder.index
    }

    /// The position of `path`, or of the nearest enclosing path the index knows.
    pub fn lookup(&self, mut path: &str) -> Pos {
        loop {
            if let Some(pos) = self.positions.get(path) {
                return *pos;
            }
            match parent(path) {
                Some(up) => path = up,
                None => return Pos::START,
            }
        }
    }

    pub fn duplicate_key(&self) -> Option<Pos> {
        self.duplicate_key
    }

    pub fn too_deep(&self) -> Option<Pos> {
        self.too_deep
    }
}

enum Frame {
    Mapping {
        path: String,
        /// The key whose value comes next; `None` while a key is expected.
        key: Option<String>,
        /// Whether the first key was seen (a block mapping's start marker lies after its first
        /// key's first character, so the node's own position is corrected to that key's).
        seen_key: bool,
    },
    Sequence {
        path: String,
        next: usize,
    },
}

#[derive(Default)]
struct Builder {
    index: PositionIndex,
    stack: Vec<Frame>,
}

impl Builder {
    /// Called for each node start; returns the node's path, or `None` when it is a mapping key.
    fn place_node(&mut self, event: &Event, pos: Pos) -> Option<String> {
        let Some(frame) = self.stack.last_mut() else {
            self.record_node(String::new(), pos);
            return Some(String::new());
        };
        match frame {
            Frame::Sequence { path, next } => {
                let path = item(path, *next);
                *next += 1;
                self.record_node(path.clone(), pos);
                Some(path)
            }
            Frame::Mapping {
                path,
                key,
                seen_key,
            } => {
                if let Some(key) = key.take() {
                    // A value's own position is its key's, recorded with the key.
                    return Some(child(path, &key));
                }
                let text = match event {
                    Event::Scalar(text, ..) => text.clone(),
                    // A complex key (a mapping or a list as key) gets a placeholder name.
                    _ => "?".to_owned(),
                };
                let key_path = child(path, &text);
                let mapping_path = path.clone();
                let first = !*seen_key;
                *seen_key = true;
                *key = Some(text);
                if first {
                    self.correct_node(&mapping_path, pos);
                }
                if self.index.positions.insert(key_path, pos).is_some() {
                    self.index.duplicate_key.get_or_insert(pos);
                }
                None
            }
        }
    }

    fn record_node(&mut self, path: String, pos: Pos) {
        self.index.positions.entry(path).or_insert(pos);
    }

    /// Moves a recorded node start back to its first key when that key comes earlier.
    fn correct_node(&mut self, path: &str, key_pos: Pos) {
        if let Some(node) = self.index.positions.get_mut(path) {
            if key_pos.index < node.index {
                *node = key_pos;
            }
        }
    }
}

impl MarkedEventReceiver for Builder {
    fn on_event(&mut self, event: Event, mark: Marker) {
        let pos = Pos::from_marker(mark);
        match event {
            Event::Scalar(..) | Event::Alias(..) => {
                self.place_node(&event, pos);
            }
            Event::MappingStart(..) | Event::SequenceStart(..) => {
                // A complex key's contents are indexed under the placeholder path `...?`.
                let path = self
                    .place_node(&event, pos)
                    .unwrap_or_else(|| "?".to_owned());
                self.stack.push(match event {
                    Event::MappingStart(..) => Frame::Mapping {
                        path,
                        key: None,
                        seen_key: false,
                    },
                    _ => Frame::Sequence { path, next: 0 },
                });
            }
            Event::MappingEnd | Event::SequenceEnd => {
                self.stack.pop();
            }
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(index: &PositionIndex, path: &str) -> (usize, usize) {
        let pos = index.lookup(path);
        (pos.line, pos.column)
    }

    #[test]
    fn keys_items_and_root_have_their_positions() {
        let text = "\
# comment
listeners:
  - bind: 127.0.0.1:8080
  - { bind: 127.0.0.1:8081 }
routes:
  - path: /a
    upstream: http://127.0.0.1:9000/
    on_connect:
      - one
      - two
";
        let index = PositionIndex::build(text);
        assert_eq!(at(&index, ""), (2, 1));
        assert_eq!(at(&index, "listeners"), (2, 1));
        assert_eq!(at(&index, "listeners[0]"), (3, 5));
        assert_eq!(at(&index, "listeners[0].bind"), (3, 5));
        assert_eq!(at(&index, "listeners[1]"), (4, 5));
        assert_eq!(at(&index, "listeners[1].bind"), (4, 7));
        assert_eq!(at(&index, "routes[0].upstream"), (7, 5));
        assert_eq!(at(&index, "routes[0].on_connect"), (8, 5));
        assert_eq!(at(&index, "routes[0].on_connect[1]"), (10, 9));
        assert_eq!(index.duplicate_key(), None);
    }

    #[test]
    fn unknown_paths_fall_back_to_the_nearest_known_one() {
        let index = PositionIndex::build("a:\n  - b: 1\n    c: 2\n");
        assert_eq!(at(&index, "a[0].d"), (2, 5));
        assert_eq!(at(&index, "a[0].c.x[3]"), (3, 5));
        assert_eq!(at(&index, "z"), (1, 1));
        assert_eq!(at(&PositionIndex::build(""), "a.b"), (1, 1));
    }

    #[test]
    fn nested_mappings_as_values_take_their_key_position() {
        let index = PositionIndex::build("limits:\n  max_body: 1\ntop: {x: 1}\n");
        assert_eq!(at(&index, "limits"), (1, 1));
        assert_eq!(at(&index, "limits.max_body"), (2, 3));
        assert_eq!(at(&index, "top.x"), (3, 7));
    }

    #[test]
    fn a_key_written_twice_is_found() {
        let index = PositionIndex::build("a: 1\nb:\n  c: 1\n  c: 2\n");
        let dup = index.duplicate_key().unwrap();
        assert_eq!((dup.line, dup.column), (4, 3));
    }

    #[test]
    fn parent_paths() {
        assert_eq!(parent("a.b[2]"), Some("a.b"));
        assert_eq!(parent("a.b"), Some("a"));
        assert_eq!(parent("a"), Some(""));
        assert_eq!(parent(""), None);
    }
}

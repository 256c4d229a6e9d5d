//! The route table: the longest route prefix that matches whole path segments wins.
//!
//! Paths reaching the router are already normalised (dot segments resolved, see
//! [`normalise_path`]); the router never sees a path that could climb out of a prefix.

use std::sync::Arc;

/// Routes sorted by descending prefix length, so the first match is the longest.
#[derive(Debug, Default)]
pub struct Router<T> {
    entries: Vec<(String, Arc<T>)>,
}

impl<T> Router<T> {
    pub fn new(routes: impl IntoIterator<Item = (String, T)>) -> Self {
        let mut entries: Vec<(String, Arc<T>)> =
            routes.into_iter().map(|(p, t)| (p, Arc::new(t))).collect();
        entries.sort_by_key(|e| std::cmp::Reverse(e.0.len()));
        Router { entries }
    }

    /// The route for `path` and the part of the path below its prefix (`""` or starting with `/`).
    pub fn find<'p>(&self, path: &'p str) -> Option<(&Arc<T>, &'p str)> {
        self.entries
            .iter()
            .find_map(|(prefix, target)| segment_suffix(prefix, path).map(|rest| (target, rest)))
    }
}

/// `Some(rest)` when `prefix` matches `path` on whole segments: `/a` matches `/a` and `/a/b`,
/// not `/ab`. The root prefix `/` matches everything.
fn segment_suffix<'p>(prefix: &str, path: &'p str) -> Option<&'p str> {
    if prefix == "/" {
        return Some(if path == "/" { "" } else { path });
    }
    let rest = path.strip_prefix(prefix)?;
    (rest.is_empty() || rest.starts_with('/')).then_some(rest)
}

/// Why a request path cannot be routed at all.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PathError {
    NotAbsolute,
    /// A NUL byte, or a percent-encoding that is not two hex digits.
    Malformed,
}

/// Resolves `.` and `..` segments (also percent-encoded ones, `%2e`) and collapses empty
/// segments, so that `/p/../secret` is routed as `/secret`. `%2F` stays encoded: it is data
/// inside a segment, never a separator. Other characters are kept exactly as sent.
pub fn normalise_path(path: &str) -> Result<String, PathError> {
    if !path.starts_with('/') {
        return Err(PathError::NotAbsolute);
    }
    let mut out: Vec<&str> = Vec::new();
    for segment in path.split('/') {
        match dot_segment(segment)? {
            Some(Dots::One) => {}
            Some(Dots::Two) => {
                out.pop();
            }
            None if segment.is_empty() => {}
            None => out.push(segment),
        }
    }
    let mut normalised = String::with_capacity(path.len());
    for segment in &out {
        normalised.push('/');
        normalised.push_str(segment);
    }
    // A trailing slash is meaningful to origins (`/dir/`); keep it.
    if normalised.is_empty() || (path.ends_with('/') && !out.is_empty()) {
        normalised.push('/');
    }
    Ok(normalised)
}

enum Dots {
    One,
    Two,
}

fn dot_segment(segment: &str) -> Result<Option<Dots>, PathError> {
    let bytes = segment.as_bytes();
    if bytes.contains(&0) {
        return Err(PathError::Malformed);
    }
    let mut dots = 0;
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'.' {
            i += 1;
        } else if bytes[i] == b'%' {
            let hex = bytes.get(i + 1..i + 3).ok_or(PathError::Malformed)?;
            if !hex.iter().all(u8::is_ascii_hexdigit) {
                return Err(PathError::Malformed);
            }
            if !hex.eq_ignore_ascii_case(b"2e") {
                return Ok(None);
            }
            i += 3;
        } else {
            return Ok(None);
        }
        dots += 1;
        if dots > 2 {
            return Ok(None);
        }
    }
    Ok(match dots {
        1 => Some(Dots::One),
        2 => Some(Dots::Two),
        _ => None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn router() -> Router<&'static str> {
        Router::new([
            ("/a".to_owned(), "a"),
            ("/a/b".to_owned(), "ab"),
            ("/".to_owned(), "root"),
        ])
    }

    #[test]
    fn longest_segment_prefix_wins() {
        let r = router();
        assert_eq!(
            r.find("/a/b/c").map(|(t, rest)| (**t, rest)),
            Some(("ab", "/c"))
        );
        assert_eq!(
            r.find("/a/bc").map(|(t, rest)| (**t, rest)),
            Some(("a", "/bc"))
        );
        assert_eq!(r.find("/a").map(|(t, rest)| (**t, rest)), Some(("a", "")));
        assert_eq!(
            r.find("/ab").map(|(t, rest)| (**t, rest)),
            Some(("root", "/ab"))
        );
    }

    #[test]
    fn no_match_without_root() {
        let r = Router::new([("/events".to_owned(), 1)]);
        assert!(r.find("/eventsx").is_none());
        assert!(r.find("/").is_none());
        assert!(r.find("/events/x").is_some());
    }

    #[test]
    fn dot_segments_resolved_before_routing() {
        assert_eq!(normalise_path("/p/../secret").as_deref(), Ok("/secret"));
        assert_eq!(normalise_path("/p/%2e%2E/secret").as_deref(), Ok("/secret"));
        assert_eq!(normalise_path("/p/.%2e/secret").as_deref(), Ok("/secret"));
        assert_eq!(normalise_path("/../../x").as_deref(), Ok("/x"));
        assert_eq!(normalise_path("/a/./b//c/").as_deref(), Ok("/a/b/c/"));
        assert_eq!(normalise_path("/a%2F..").as_deref(), Ok("/a%2F.."));
        assert_eq!(normalise_path("/...").as_deref(), Ok("/..."));
        assert_eq!(normalise_path("/").as_deref(), Ok("/"));
        assert_eq!(normalise_path("/a/..").as_deref(), Ok("/"));
        assert_eq!(normalise_path("x"), Err(PathError::NotAbsolute));
        assert_eq!(normalise_path("/%zz"), Err(PathError::Malformed));
    }
}

//! URLs and paths as the configuration writes them: upstream and `send_to` URLs, browser
//! origins, route path prefixes. Pure string functions; the caller names the key.

use http::Uri;

/// An absolute URL with one of `schemes` (lower case, without `://`), a host, no credentials and
/// no fragment. The scheme is lower-cased and an empty path becomes `/`.
pub(crate) fn check_url(text: &str, schemes: &[&str]) -> Result<Uri, String> {
    // http::Uri silently drops a fragment; the proxy must never send one.
    if text.contains('#') {
        return Err("a fragment (#...) is not allowed".to_owned());
    }
    let parts = text.parse::<Uri>().map_err(|e| e.to_string())?.into_parts();
    let scheme = parts
        .scheme
        .as_ref()
        .map(|s| s.as_str().to_ascii_lowercase());
    let scheme = scheme.unwrap_or_default();
    if !schemes.contains(&scheme.as_str()) {
        return Err("unsupported scheme".to_owned());
    }
    let authority = parts.authority.filter(|a| !a.host().is_empty());
    let authority = authority.ok_or_else(|| "no host".to_owned())?;
    if authority.as_str().contains('@') {
        return Err("credentials in the URL are not supported".to_owned());
    }
    let path_and_query = match parts.path_and_query {
        Some(pq) if pq.path().starts_with('/') => pq.as_str().to_owned(),
        Some(pq) => format!("/{}", pq.as_str()),
        None => "/".to_owned(),
    };
    Uri::builder()
        .scheme(scheme.as_str())
        .authority(authority)
        .path_and_query(path_and_query)
        .build()
        .map_err(|e| e.to_string())
}

/// An origin is `scheme://host[:port]`, nothing more (RFC 6454); returned lower-cased.
pub(crate) fn check_origin(origin: &str) -> Result<String, String> {
    let invalid = |why: &str| {
        format!("invalid origin {origin:?}: {why}; expected scheme://host[:port] such as https://example.com")
    };
    let (scheme, rest) = origin
        .split_once("://")
        .ok_or_else(|| invalid("no scheme"))?;
    if !matches!(scheme.to_ascii_lowercase().as_str(), "http" | "https") {
        return Err(invalid("the scheme must be http or https"));
    }
    if rest.is_empty() || rest.contains(['/', '?', '#', '@']) || rest.contains(char::is_whitespace)
    {
        return Err(invalid("no path, query or credentials allowed"));
    }
    let authority: http::uri::Authority = rest.parse().map_err(|_| invalid("bad host"))?;
    if authority.host().is_empty() {
        return Err(invalid("no host"));
    }
    Ok(origin.to_ascii_lowercase())
}

/// `//a//b/` -> `/a/b`; the root stays `/`. Requests are matched on segments after their dot
/// segments are resolved (SPEC 10), so a prefix holding one could never match: refused.
pub(crate) fn normalise_route_path(path: &str) -> Result<String, String> {
    if !path.starts_with('/') {
        return Err("must start with /".to_owned());
    }
    let bad = |c: char| matches!(c, '?' | '#') || c.is_whitespace() || c.is_control();
    if let Some(c) = path.chars().find(|&c| bad(c)) {
        return Err(format!("{c:?} is not allowed in a route path"));
    }
    let segments: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
    let is_dot = |s: &&str| {
        matches!(
            s.to_ascii_lowercase().replace("%2e", ".").as_str(),
            "." | ".."
        )
    };
    if segments.iter().any(is_dot) {
        return Err("`.` and `..` segments are not allowed".to_owned());
    }
    Ok(format!("/{}", segments.join("/")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_get_a_path_and_keep_their_query() {
        let http = &["http", "https"];
        assert_eq!(
            check_url("http://127.0.0.1:9000", http).unwrap(),
            "http://127.0.0.1:9000/"
        );
        assert_eq!(
            check_url("HTTP://o/base?x=1", http).unwrap(),
            "http://o/base?x=1"
        );
        assert_eq!(check_url("https://o?x=1", http).unwrap(), "https://o/?x=1");
        assert!(check_url("http://o/a#frag", http)
            .unwrap_err()
            .contains("fragment"));
        assert!(check_url("ws://o/", http).unwrap_err().contains("scheme"));
        assert!(check_url("/relative", http).is_err());
        assert!(check_url("http://user:pw@o/", http)
            .unwrap_err()
            .contains("credentials"));
    }

    #[test]
    fn origins_are_scheme_host_and_port_only() {
        assert_eq!(
            check_origin("https://Example.com").unwrap(),
            "https://example.com"
        );
        assert_eq!(
            check_origin("http://127.0.0.1:8080").unwrap(),
            "http://127.0.0.1:8080"
        );
        for bad in [
            "example.com",
            "ftp://x",
            "https://x/",
            "https://x/path",
            "https://",
            "*",
        ] {
            assert!(check_origin(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn route_paths_are_normalised() {
        assert_eq!(normalise_route_path("/").unwrap(), "/");
        assert_eq!(normalise_route_path("//").unwrap(), "/");
        assert_eq!(normalise_route_path("/events/").unwrap(), "/events");
        assert_eq!(normalise_route_path("//a///b//").unwrap(), "/a/b");
        assert_eq!(normalise_route_path("/a.b/..c").unwrap(), "/a.b/..c");
    }

    #[test]
    fn route_paths_refuse_what_could_never_match() {
        for (bad, why) in [
            ("events", "must start with /"),
            ("/a/../b", "`.` and `..`"),
            ("/a/.", "`.` and `..`"),
            ("/a/%2E%2e/b", "`.` and `..`"),
            ("/a?x=1", "'?'"),
            ("/a#top", "'#'"),
            ("/a b", "' '"),
        ] {
            let err = normalise_route_path(bad).unwrap_err();
            assert!(err.contains(why), "{bad}: {err}");
        }
    }
}

//! Which requests the proxy looks into. Only the path counts (never the query), with or without
//! an API version prefix: `/v1.41/containers/create` and `/containers/create` are the same call.

use std::borrow::Cow;

use hyper::Method;

/// The path as the daemon routes it: percent-escapes decoded (its router matches
/// `/containers/%63reate` as create, so the proxy must too, or the call slips past it).
/// A malformed escape is left as it is.
pub fn decode(path: &str) -> Cow<'_, str> {
    if !path.contains('%') {
        return Cow::Borrowed(path);
    }
    let b = path.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let hex = |c: u8| (c as char).to_digit(16);
        if b[i] == b'%'
            && i + 2 < b.len()
            && let (Some(h), Some(l)) = (hex(b[i + 1]), hex(b[i + 2]))
        {
            out.push((h * 16 + l) as u8);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    match String::from_utf8(out) {
        Ok(s) => Cow::Owned(s),
        Err(_) => Cow::Borrowed(path),
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Route<'a> {
    Create,
    Start(&'a str),
    Restart(&'a str),
    Forward,
}

/// The path without its `/vX.Y` prefix.
pub fn strip_version(path: &str) -> &str {
    if let Some(rest) = path.strip_prefix("/v") {
        let end = rest.find('/').unwrap_or(rest.len());
        let version = &rest[..end];
        if !version.is_empty() && version.bytes().all(|b| b.is_ascii_digit() || b == b'.') {
            return &rest[end..];
        }
    }
    path
}

/// The `/vX.Y` prefix as (major, minor); `None` for an unversioned path (the daemon's own
/// current version).
pub fn api_version(path: &str) -> Option<(u32, u32)> {
    let rest = strip_version(path);
    if rest.len() == path.len() {
        return None;
    }
    let version = &path["/v".len()..path.len() - rest.len()];
    let (major, minor) = version.split_once('.').unwrap_or((version, "0"));
    Some((major.parse().ok()?, minor.parse().ok()?))
}

pub fn route<'a>(method: &Method, path: &'a str) -> Route<'a> {
    if method != Method::POST {
        return Route::Forward;
    }
    let path = strip_version(path);
    if path == "/containers/create" {
        return Route::Create;
    }
    let Some(rest) = path.strip_prefix("/containers/") else {
        return Route::Forward;
    };
    match rest.split_once('/') {
        Some((id, "start")) if !id.is_empty() => Route::Start(id),
        Some((id, "restart")) if !id.is_empty() => Route::Restart(id),
        _ => Route::Forward,
    }
}

/// Requests whose connection the daemon takes over for a raw stream.
pub fn is_hijack(method: &Method, path: &str) -> bool {
    if method != Method::POST {
        return false;
    }
    let path = strip_version(path);
    let parts: Vec<&str> = path.split('/').collect();
    matches!(
        parts.as_slice(),
        ["", "containers", id, "attach"] | ["", "exec", id, "start"] if !id.is_empty()
    )
}

#[cfg(test)]
mod tests {
    #[test]
    fn escapes_are_decoded_for_routing() {
        use super::*;
        assert_eq!(decode("/containers/%63reate"), "/containers/create");
        assert_eq!(
            decode("/v1.41/containers/a%2Fb/start"),
            "/v1.41/containers/a/b/start"
        );
        assert_eq!(decode("/x%2"), "/x%2");
        assert_eq!(decode("/x%zz"), "/x%zz");
        assert_eq!(decode("/x%ff"), "/x%ff");
        assert_eq!(
            route(&Method::POST, &decode("/containers/%63reate")),
            Route::Create
        );
    }

    use super::*;

    #[test]
    fn versions_are_stripped() {
        assert_eq!(strip_version("/v1.41/containers/json"), "/containers/json");
        assert_eq!(strip_version("/v1/containers/json"), "/containers/json");
        assert_eq!(strip_version("/containers/json"), "/containers/json");
        assert_eq!(strip_version("/version"), "/version");
        assert_eq!(strip_version("/v1.41"), "");
        assert_eq!(strip_version("/volumes"), "/volumes");
    }

    #[test]
    fn api_versions() {
        assert_eq!(api_version("/v1.20/containers/a/start"), Some((1, 20)));
        assert_eq!(api_version("/v1.41/containers/a/start"), Some((1, 41)));
        assert_eq!(api_version("/v2/x"), Some((2, 0)));
        assert_eq!(api_version("/containers/a/start"), None);
        assert_eq!(api_version("/volumes/x"), None);
    }

    #[test]
    fn intercepted_calls() {
        let post = Method::POST;
        assert_eq!(route(&post, "/containers/create"), Route::Create);
        assert_eq!(route(&post, "/v1.41/containers/create"), Route::Create);
        assert_eq!(
            route(&post, "/v1.41/containers/abc/start"),
            Route::Start("abc")
        );
        assert_eq!(
            route(&post, "/containers/abc/restart"),
            Route::Restart("abc")
        );
        assert_eq!(route(&Method::GET, "/containers/create"), Route::Forward);
        assert_eq!(route(&post, "/containers/abc/stop"), Route::Forward);
        assert_eq!(route(&post, "/containers//start"), Route::Forward);
        assert_eq!(route(&post, "/containers/a/b/start"), Route::Forward);
    }

    #[test]
    fn hijacks() {
        assert!(is_hijack(&Method::POST, "/v1.41/containers/abc/attach"));
        assert!(is_hijack(&Method::POST, "/exec/abc/start"));
        assert!(!is_hijack(&Method::GET, "/exec/abc/start"));
        assert!(!is_hijack(&Method::POST, "/exec/abc/resize"));
        assert!(!is_hijack(&Method::POST, "/containers/abc/attach/ws"));
    }
}

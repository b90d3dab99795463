//! OTLP/HTTP redirects. The OTLP specification leaves answers it does not
//! list to the HTTP specification: a 307 or 308 repeats the request, method
//! and body unchanged, at the `Location` (RFC 9110 §15.4.8, §15.4.9), as
//! the Collector's, Go's, Python's and Java's OTLP/HTTP exporters do. A
//! 301, 302 or 303 would turn the POST into a GET, which no receiver
//! takes, so it is reported rather than followed. otlpflow follows a
//! redirect only within the endpoint's origin (scheme, host and port): its
//! connections, TLS name and headers (often an API key) belong to that
//! origin, and a receiver, or anyone able to answer for it, must not be
//! able to send them elsewhere.

use super::ExportError;

/// Redirects followed for one request.
pub(crate) const MAX_REDIRECTS: usize = 5;

/// Where a 3xx answer to a request for `from` sends it, or why it is not
/// followed (a permanent error naming where it led, without its query).
pub(crate) fn follow(
    from: &http::Uri,
    status: http::StatusCode,
    headers: &http::HeaderMap,
) -> Result<http::Uri, ExportError> {
    let refuse = |message: String| ExportError::Http {
        status: status.as_u16(),
        message,
        retry_after: None,
    };
    let target = headers
        .get(http::header::LOCATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|location| resolve(from, location));
    let Some(target) = target else {
        return Err(refuse(
            "redirect without a usable Location, not followed".into(),
        ));
    };
    if !matches!(status.as_u16(), 307 | 308) {
        return Err(refuse(format!(
            "redirect to {} not followed: only 307 and 308 repeat a POST (a 301, 302 \
             or 303 makes it a GET); point the endpoint there",
            shown(&target)
        )));
    }
    if origin(&target) != origin(from) {
        return Err(refuse(format!(
            "redirect to {} not followed: otlpflow sends its requests and headers only \
             to the endpoint's scheme, host and port; point the endpoint there",
            shown(&target)
        )));
    }
    Ok(target)
}

/// The error after `MAX_REDIRECTS` redirects.
pub(crate) fn too_many(status: http::StatusCode) -> ExportError {
    ExportError::Http {
        status: status.as_u16(),
        message: format!("more than {MAX_REDIRECTS} redirects"),
        retry_after: None,
    }
}

/// A URI's scheme, host (lower case) and port (the scheme's default when
/// not given).
fn origin(uri: &http::Uri) -> (String, String, Option<u16>) {
    let scheme = uri.scheme_str().unwrap_or("").to_ascii_lowercase();
    let port = uri.port_u16().or(match scheme.as_str() {
        "http" => Some(80),
        "https" => Some(443),
        _ => None,
    });
    let host = uri.host().unwrap_or("").to_ascii_lowercase();
    (scheme, host, port)
}

/// A URI as an error shows it: scheme, host, port and path, without the
/// user information or the query (either may hold a credential).
fn shown(uri: &http::Uri) -> String {
    let (scheme, host, port) = origin(uri);
    let port = uri.port_u16().map_or(String::new(), |_| {
        port.map_or(String::new(), |p| format!(":{p}"))
    });
    format!("{scheme}://{host}{port}{}", uri.path())
}

/// `location` resolved against `base` (RFC 3986 §5.2): an absolute URI, a
/// network-path (`//host/...`), an absolute path or a relative one. A
/// fragment is dropped (it never reaches the server).
fn resolve(base: &http::Uri, location: &str) -> Option<http::Uri> {
    let location = location.split('#').next().unwrap_or("").trim();
    let scheme = base.scheme_str()?;
    let authority = base.authority()?.as_str();
    let text = if location.contains("://") {
        location.to_owned()
    } else if let Some(rest) = location.strip_prefix("//") {
        format!("{scheme}://{rest}")
    } else if location.starts_with('/') {
        let (path, query) = split_query(location);
        format!("{scheme}://{authority}{}{query}", remove_dot_segments(path))
    } else if location.is_empty() {
        return None;
    } else {
        let (path, query) = split_query(location);
        let dir = base.path().rsplit_once('/').map_or("", |(dir, _)| dir);
        let merged = remove_dot_segments(&format!("{dir}/{path}"));
        format!("{scheme}://{authority}{merged}{query}")
    };
    let uri: http::Uri = text.parse().ok()?;
    // Only http and https, with a host, and without user information (an
    // error by RFC 9110 §4.2.4; otlpflow's credentials come from its own
    // settings, never from a receiver).
    let userinfo = uri.authority().is_some_and(|a| a.as_str().contains('@'));
    match (uri.scheme_str(), uri.host()) {
        (Some("http" | "https"), Some(h)) if !h.is_empty() && !userinfo => Some(uri),
        _ => None,
    }
}

/// A path and its query (with the `?`).
fn split_query(s: &str) -> (&str, &str) {
    s.find('?').map_or((s, ""), |i| s.split_at(i))
}

/// RFC 3986 §5.2.4 on an absolute path: `.` segments dropped, each `..`
/// taking the segment before it.
fn remove_dot_segments(path: &str) -> String {
    let mut out: Vec<&str> = Vec::new();
    let segments: Vec<&str> = path.split('/').skip(1).collect();
    for (i, seg) in segments.iter().enumerate() {
        let last = i + 1 == segments.len();
        match *seg {
            "." | ".." => {
                if *seg == ".." {
                    out.pop();
                }
                // A trailing dot segment leaves a trailing slash.
                if last {
                    out.push("");
                }
            }
            s => out.push(s),
        }
    }
    format!("/{}", out.join("/"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn answer(status: u16, location: Option<&str>) -> Result<String, String> {
        let from: http::Uri = "http://collector:4318/v1/traces".parse().unwrap();
        let mut h = http::HeaderMap::new();
        if let Some(l) = location {
            h.insert(http::header::LOCATION, l.parse().unwrap());
        }
        let status = http::StatusCode::from_u16(status).unwrap();
        match follow(&from, status, &h) {
            Ok(uri) => Ok(uri.to_string()),
            Err(ExportError::Http { message, .. }) => Err(message),
            Err(e) => panic!("{e:?}"),
        }
    }

    #[test]
    fn locations_are_resolved_against_the_request() {
        for (location, want) in [
            ("/otlp/v1/traces", "http://collector:4318/otlp/v1/traces"),
            (
                "/v1/traces?moved=1",
                "http://collector:4318/v1/traces?moved=1",
            ),
            ("v2", "http://collector:4318/v1/v2"),
            ("../v2/traces", "http://collector:4318/v2/traces"),
            ("/a/./b/../c#frag", "http://collector:4318/a/c"),
            ("//collector:4318/x", "http://collector:4318/x"),
            ("http://COLLECTOR:4318/y", "http://COLLECTOR:4318/y"),
        ] {
            assert_eq!(answer(307, Some(location)), Ok(want.into()), "{location}");
            assert_eq!(answer(308, Some(location)), Ok(want.into()), "{location}");
        }
    }

    #[test]
    fn redirects_that_change_the_method_or_the_origin_are_not_followed() {
        let e = answer(301, Some("https://collector/v1/traces?key=hunter2")).unwrap_err();
        assert!(
            e.contains("https://collector/v1/traces not followed: only 307"),
            "{e}"
        );
        assert!(!e.contains("hunter2"), "{e}");
        for other in [
            "https://collector:4318/v1/traces",
            "http://collector:4319/v1/traces",
            "http://elsewhere:4318/v1/traces",
        ] {
            let e = answer(307, Some(other)).unwrap_err();
            assert!(e.contains("scheme, host and port"), "{other}: {e}");
        }
        for bad in [
            None,
            Some(""),
            Some("ftp://collector/x"),
            Some("http://"),
            Some("http://user:pw@collector:4318/v1/traces"),
        ] {
            let e = answer(308, bad).unwrap_err();
            assert!(e.contains("without a usable Location"), "{bad:?}: {e}");
            assert!(!e.contains("pw"), "{e}");
        }
    }

    #[test]
    fn the_default_port_is_the_same_origin() {
        let from: http::Uri = "https://collector/v1/traces".parse().unwrap();
        let mut h = http::HeaderMap::new();
        h.insert(
            http::header::LOCATION,
            "https://collector:443/x".parse().unwrap(),
        );
        let to = follow(&from, http::StatusCode::PERMANENT_REDIRECT, &h).unwrap();
        assert_eq!(to.path(), "/x");
    }
}

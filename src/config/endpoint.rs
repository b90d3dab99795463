//! Endpoint URLs: `http://` or `https://`, optional credentials
//! (`user:password@`), a host (a name, IPv4, or IPv6 in brackets), an
//! optional port, an optional path and an optional query (kept after the
//! signal's path, and never shown: some services take a key there).

use base64::Engine;

use crate::error::Error;

/// A parsed `http://host:port` endpoint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    pub(crate) host: String,
    pub(crate) port: u16,
    /// `host:port` as written, without credentials.
    pub(crate) authority: String,
    pub(crate) scheme: &'static str,
    pub(crate) path: String,
    /// The query, `?` included (empty if none).
    pub(crate) query: Query,
    /// `Basic` credentials from the URL's `user:password@`, as the value
    /// of an `authorization` header (marked sensitive: its `Debug` shows
    /// no secret).
    pub(crate) basic_auth: Option<http::HeaderValue>,
}

impl Endpoint {
    /// Parses an endpoint URL. Credentials in it (`https://user:password@
    /// host`) become a `Basic` authorization header, as curl and Go's HTTP
    /// client make of them, and are shown nowhere: not in errors, logs or
    /// `Debug`, nor in the request's `:authority` or `Host`.
    pub fn parse(url: &str) -> Result<Endpoint, Error> {
        let shown = redacted(url);
        let bad = |why: &str| Error::config(format!("endpoint {shown:?}: {why}"));
        let (scheme, rest, default_port) = if let Some(r) = url.strip_prefix("http://") {
            ("http", r, 80)
        } else if let Some(r) = url.strip_prefix("https://") {
            ("https", r, 443)
        } else {
            return Err(bad("must start with http:// or https://"));
        };
        // A fragment is never sent; a query follows the signal's path
        // (`/otlp?key=k` + traces: `/otlp/v1/traces?key=k`), where it used
        // to be taken for part of the path, or of the port.
        let rest = rest.split_once('#').map_or(rest, |(r, _)| r);
        let (rest, query) = match rest.find('?') {
            Some(i) => (&rest[..i], &rest[i..]),
            None => (rest, ""),
        };
        let (authority, path) = match rest.find('/') {
            Some(i) => (&rest[..i], &rest[i..]),
            None => (rest, ""),
        };
        let (userinfo, authority) = match authority.rsplit_once('@') {
            Some((u, a)) => (Some(u), a),
            None => (None, authority),
        };
        let basic_auth = match userinfo.filter(|u| !u.is_empty()) {
            None => None,
            Some(u) => Some(basic_auth(u).ok_or_else(|| {
                bad("its credentials are not percent-encoded UTF-8 (user:password)")
            })?),
        };
        if authority.is_empty() {
            return Err(bad("has no host"));
        }
        let (host, port) = match authority.rsplit_once(':') {
            Some((h, p)) if !h.ends_with(']') || h.starts_with('[') => {
                let port: u16 = p.parse().map_err(|_| bad("port is not a number 0-65535"))?;
                (
                    h.trim_start_matches('[').trim_end_matches(']').to_owned(),
                    port,
                )
            }
            _ => (authority.to_owned(), default_port),
        };
        if host.is_empty() {
            return Err(bad("has no host"));
        }
        Ok(Endpoint {
            host,
            port,
            authority: authority.to_owned(),
            scheme,
            path: path.to_owned(),
            query: Query(query.to_owned()),
            basic_auth,
        })
    }

    /// The `host:port` this endpoint connects to.
    pub fn address(&self) -> String {
        if self.host.contains(':') {
            format!("[{}]:{}", self.host, self.port)
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }
}

/// An endpoint's query (`?` included, or empty): its `Debug` shows that
/// there is one, not what it says.
#[derive(Clone, PartialEq, Eq, Default)]
pub(crate) struct Query(pub(crate) String);

impl std::fmt::Debug for Query {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(if self.0.is_empty() {
            "\"\""
        } else {
            "\"?***\""
        })
    }
}

/// An endpoint URL kept as written until the pipeline is built (builder
/// settings, `endpoints_dns`); its `Debug` masks credentials in it.
#[derive(Clone, PartialEq, Eq, Default)]
pub(crate) struct UrlText(pub(crate) String);

impl std::ops::Deref for UrlText {
    type Target = str;
    fn deref(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for UrlText {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:?}", redacted(&self.0))
    }
}

/// `url` with any credentials and any query or fragment in it replaced
/// by `***`, for messages.
fn redacted(url: &str) -> String {
    let (url, tail) = match url.find(['?', '#']) {
        Some(i) => (&url[..i], &url[i..i + 1]),
        None => (url, ""),
    };
    let tail = if tail.is_empty() {
        String::new()
    } else {
        format!("{tail}***")
    };
    let after_scheme = url.find("://").map_or(0, |i| i + 3);
    let authority_end = url[after_scheme..]
        .find('/')
        .map_or(url.len(), |i| after_scheme + i);
    match url[after_scheme..authority_end].rfind('@') {
        Some(at) => format!(
            "{}***{}{tail}",
            &url[..after_scheme],
            &url[after_scheme + at..]
        ),
        None => format!("{url}{tail}"),
    }
}

/// The `authorization` value for a URL's `user[:password]`, each part
/// percent-decoded (RFC 3986 §3.2.1), or `None` if a part does not decode.
fn basic_auth(userinfo: &str) -> Option<http::HeaderValue> {
    let (user, password) = userinfo.split_once(':').unwrap_or((userinfo, ""));
    let (user, password) = (
        super::env::percent_decode(user)?,
        super::env::percent_decode(password)?,
    );
    let token = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
    let mut value = http::HeaderValue::try_from(format!("Basic {token}")).ok()?;
    value.set_sensitive(true);
    Some(value)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoint_parsing() {
        let e = Endpoint::parse("http://127.0.0.1:4317").unwrap();
        assert_eq!((e.host.as_str(), e.port), ("127.0.0.1", 4317));
        let e = Endpoint::parse("http://[::1]:5000/").unwrap();
        assert_eq!((e.host.as_str(), e.port), ("::1", 5000));
        assert_eq!(e.address(), "[::1]:5000");
        assert_eq!(Endpoint::parse("http://collector").unwrap().port, 80);
        assert_eq!(
            Endpoint::parse("http://collector").unwrap().basic_auth,
            None
        );
    }

    #[test]
    fn credentials_become_basic_auth_and_are_shown_nowhere() {
        let e = Endpoint::parse("https://Aladdin:open%20sesame@collector:4318/otlp").unwrap();
        assert_eq!(
            (
                e.host.as_str(),
                e.port,
                e.authority.as_str(),
                e.path.as_str()
            ),
            ("collector", 4318, "collector:4318", "/otlp")
        );
        // RFC 7617's example.
        let auth = e.basic_auth.clone().unwrap();
        assert_eq!(auth, "Basic QWxhZGRpbjpvcGVuIHNlc2FtZQ==");
        assert!(auth.is_sensitive());
        let debug = format!("{e:?}");
        assert!(
            !debug.contains("sesame") && !debug.contains("QWxh"),
            "{debug}"
        );
        // A user alone; an `@` inside the password, encoded; none at all.
        let user = Endpoint::parse("http://key@[::1]:4317").unwrap();
        assert_eq!((user.host.as_str(), user.port), ("::1", 4317));
        assert_eq!(user.basic_auth.unwrap(), "Basic a2V5Og==");
        let at = Endpoint::parse("http://u:p%40ss@h").unwrap();
        assert_eq!(at.basic_auth.unwrap(), "Basic dTpwQHNz");
        assert_eq!(Endpoint::parse("http://@h").unwrap().basic_auth, None);
        // Errors name the endpoint with its credentials and query masked.
        for (url, shown) in [
            ("https://u:hunter2@:4317", "https://***@:4317"),
            ("http://u:hunter2@h:port/x@y", "http://***@h:port/x@y"),
            ("http://u:hunter2%zz@h", "http://***@h"),
            ("http://h:port?key=hunter2", "http://h:port?***"),
            ("http://h:port/otlp?key=hunter2#x", "http://h:port/otlp?***"),
            ("ftp://h/#hunter2", "ftp://h/#***"),
        ] {
            let e = Endpoint::parse(url).unwrap_err().to_string();
            assert!(e.contains(shown) && !e.contains("hunter2"), "{e}");
        }
    }

    #[test]
    fn a_query_follows_the_path_and_is_shown_nowhere() {
        let e = Endpoint::parse("http://collector:4318/otlp?key=hunter2&x=1#frag").unwrap();
        assert_eq!(
            (
                e.authority.as_str(),
                e.port,
                e.path.as_str(),
                e.query.0.as_str()
            ),
            ("collector:4318", 4318, "/otlp", "?key=hunter2&x=1")
        );
        let bare = Endpoint::parse("http://collector:4318?key=hunter2").unwrap();
        assert_eq!((bare.port, bare.path.as_str()), (4318, ""));
        assert_eq!(bare.query.0, "?key=hunter2");
        for debug in [format!("{e:?}"), format!("{bare:?}")] {
            assert!(
                !debug.contains("hunter2") && debug.contains("?***"),
                "{debug}"
            );
        }
        assert_eq!(Endpoint::parse("http://h:1/p").unwrap().query.0, "");
    }
}

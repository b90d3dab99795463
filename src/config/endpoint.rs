//! Endpoint URLs: `http://` or `https://`, a host (a name, IPv4, or IPv6
//! in brackets), an optional port and an optional path.

use crate::error::Error;

/// A parsed `http://host:port` endpoint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    pub(crate) host: String,
    pub(crate) port: u16,
    pub(crate) authority: String,
    pub(crate) scheme: &'static str,
    pub(crate) path: String,
}

impl Endpoint {
    /// Parses an endpoint URL. Only `http://` (cleartext) is accepted by this
    /// version of the exporter.
    pub fn parse(url: &str) -> Result<Endpoint, Error> {
        let bad = |why: &str| Error::config(format!("endpoint {url:?}: {why}"));
        let (scheme, rest, default_port) = if let Some(r) = url.strip_prefix("http://") {
            ("http", r, 80)
        } else if let Some(r) = url.strip_prefix("https://") {
            ("https", r, 443)
        } else {
            return Err(bad("must start with http:// or https://"));
        };
        let (authority, path) = match rest.find('/') {
            Some(i) => (&rest[..i], &rest[i..]),
            None => (rest, ""),
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
    }
}

//! Endpoints given as one DNS name (like the Collector `loadbalancing`
//! exporter's `dns` resolver): the name is resolved to all its addresses,
//! each address is an endpoint (`ip:port`, the ring key), and the name is
//! resolved again on an interval; a changed address set changes the
//! pipeline's endpoint set while it runs.

use std::fmt;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use super::{base_target, Endpoint, MAX_ENDPOINTS};
use crate::error::Error;
use crate::record::Signal;

/// The function that resolves a host name to its addresses.
type ResolveFn = dyn Fn(&str) -> std::io::Result<Vec<IpAddr>> + Send + Sync;

/// Resolves host names: the system's resolver by default; tests and hosts
/// with their own discovery can supply one.
#[derive(Clone)]
pub struct Resolver(Arc<ResolveFn>);

impl Resolver {
    /// A resolver calling `f` with the host name.
    pub fn new(f: impl Fn(&str) -> std::io::Result<Vec<IpAddr>> + Send + Sync + 'static) -> Self {
        Resolver(Arc::new(f))
    }

    /// The system's resolver (`getaddrinfo`).
    pub fn system() -> Self {
        Resolver::new(|host| {
            use std::net::ToSocketAddrs;
            Ok((host, 0).to_socket_addrs()?.map(|a| a.ip()).collect())
        })
    }

    /// The addresses of `host`, sorted and without repeats (the ring is
    /// built in this order, as the Collector sorts them).
    pub(crate) fn resolve(&self, host: &str) -> std::io::Result<Vec<IpAddr>> {
        let mut ips = (self.0)(host)?;
        ips.sort();
        ips.dedup();
        Ok(ips)
    }
}

impl fmt::Debug for Resolver {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Resolver")
    }
}

/// A DNS name standing for a set of endpoints.
#[derive(Debug, Clone)]
pub(crate) struct DnsEndpoints {
    /// The base URL with the name as its host.
    pub(crate) url: super::UrlText,
    pub(crate) interval: Duration,
    pub(crate) resolver: Resolver,
    /// The signals whose endpoints it gives (those without their own).
    pub(crate) signals: Vec<Signal>,
}

/// One resolution's endpoints, and what to say of them when the name had
/// more addresses than a fleet may have endpoints.
pub(crate) type Resolved = (Vec<(Endpoint, String)>, Option<String>);

impl DnsEndpoints {
    /// `signal`'s endpoints now: one base endpoint per address of the name,
    /// the first `MAX_ENDPOINTS` of them in order when it has more (a
    /// headless service in front of hundreds of collectors), with a note
    /// saying so.
    pub(crate) fn targets(&self, signal: Signal) -> Result<Resolved, Error> {
        let e = Endpoint::parse(&self.url)?;
        let mut ips = self.resolver.resolve(&e.host).map_err(|err| {
            Error::config(format!("endpoints_dns: cannot resolve {:?}: {err}", e.host))
        })?;
        if ips.is_empty() {
            return Err(Error::config(format!(
                "endpoints_dns: {:?} has no address",
                e.host
            )));
        }
        let note = (ips.len() > MAX_ENDPOINTS).then(|| {
            format!(
                "endpoints_dns: {:?} has {} addresses; the first {MAX_ENDPOINTS} are used",
                e.host,
                ips.len()
            )
        });
        ips.truncate(MAX_ENDPOINTS);
        let targets = ips
            .iter()
            .map(|ip| {
                let host = match ip {
                    IpAddr::V4(v4) => v4.to_string(),
                    IpAddr::V6(v6) => format!("[{v6}]"),
                };
                let (mut target, path) = base_target(
                    &format!("{}://{host}:{}{}{}", e.scheme, e.port, e.path, e.query.0),
                    signal,
                )?;
                target.basic_auth = e.basic_auth.clone();
                Ok((target, path))
            })
            .collect::<Result<_, Error>>()?;
        Ok((targets, note))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_address_keeps_the_urls_credentials_and_path() {
        let dns = DnsEndpoints {
            url: super::super::UrlText("https://otel:hunter2@fleet.test:4318/otlp".into()),
            interval: Duration::from_secs(5),
            resolver: Resolver::new(|_| {
                Ok(vec!["10.0.0.1".parse().unwrap(), "::1".parse().unwrap()])
            }),
            signals: vec![Signal::Traces],
        };
        let (targets, note) = dns.targets(Signal::Traces).unwrap();
        assert!(note.is_none());
        let shown: Vec<(String, &str)> = targets
            .iter()
            .map(|(e, path)| (e.address(), path.as_str()))
            .collect();
        assert_eq!(
            shown,
            [
                ("10.0.0.1:4318".to_owned(), "/otlp/v1/traces"),
                ("[::1]:4318".to_owned(), "/otlp/v1/traces")
            ]
        );
        for (e, _) in &targets {
            // "otel:hunter2" in base64.
            assert_eq!(e.basic_auth.as_ref().unwrap(), "Basic b3RlbDpodW50ZXIy");
        }
        assert!(!format!("{dns:?}").contains("hunter2"));
    }
}

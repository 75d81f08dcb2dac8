//! Turns the configured endpoints into the kernel's endpoint table.
//!
//! `ip:port` and `cidr:port` map directly; `host:port` is resolved by the agent
//! (the kernel only sees addresses) and re-resolved every `resolve_interval`.
//! A name that fails to resolve keeps its last known addresses: dropping them
//! would let connections to a still-valid address bypass the agent.

use std::collections::{BTreeSet, HashMap};
use std::net::{IpAddr, SocketAddr};

use mcp_warden_common::{CidrKey, EndpointKey, EndpointVal};
use tracing::{info, warn};

use crate::config::{Config, MatchSpec};
use crate::ebpf::EndpointTable;

/// Stable id of an endpoint, carried in the kernel's records. Derived from the
/// name (FNV-1a) so that it survives reloads and restarts that reorder the config.
pub fn endpoint_id(name: &str) -> u32 {
    name.bytes().fold(0x811c_9dc5u32, |h, b| {
        (h ^ u32::from(b)).wrapping_mul(0x0100_0193)
    })
}

/// Endpoint names by id, for the accept path.
pub type EndpointNames = HashMap<u32, String>;

pub fn endpoint_names(config: &Config) -> EndpointNames {
    config
        .endpoints
        .iter()
        .map(|e| (endpoint_id(&e.name), e.name.clone()))
        .collect()
}

/// Keeps the last successful resolution of each hostname.
#[derive(Default)]
pub struct Resolver {
    known: HashMap<(String, u16), BTreeSet<IpAddr>>,
}

impl Resolver {
    /// Builds the table for `config`, resolving hostnames now.
    pub async fn table(&mut self, config: &Config) -> EndpointTable {
        let mut table = EndpointTable::default();
        for ep in &config.endpoints {
            let val = EndpointVal {
                endpoint_id: endpoint_id(&ep.name),
                flags: 0,
            };
            for m in &ep.matches {
                match m {
                    MatchSpec::Addr(sa) => insert_exact(&mut table, *sa, val, &ep.name),
                    MatchSpec::Cidr { net, port } => {
                        table
                            .cidr
                            .insert(CidrKey::new(net.network(), net.prefix_len(), *port), val);
                    }
                    MatchSpec::Host { host, port } => {
                        for ip in self.resolve(host, *port).await {
                            insert_exact(&mut table, SocketAddr::new(ip, *port), val, &ep.name);
                        }
                    }
                }
            }
        }
        table
    }

    async fn resolve(&mut self, host: &str, port: u16) -> BTreeSet<IpAddr> {
        let looked_up = tokio::net::lookup_host((host, port))
            .await
            .map(|a| a.map(|sa| sa.ip()).collect());
        self.remember(host, port, looked_up)
    }

    /// Records a lookup's outcome; a failure answers with the last known set.
    fn remember(
        &mut self,
        host: &str,
        port: u16,
        looked_up: std::io::Result<BTreeSet<IpAddr>>,
    ) -> BTreeSet<IpAddr> {
        let key = (host.to_string(), port);
        match looked_up {
            Ok(ips) => {
                if self.known.get(&key) != Some(&ips) {
                    info!(host, port, addrs = ?ips, "endpoint name resolved");
                }
                self.known.insert(key, ips.clone());
                ips
            }
            Err(e) => {
                let kept = self.known.get(&key).cloned().unwrap_or_default();
                warn!(host, port, error = %e, kept = ?kept, "cannot resolve endpoint name; keeping last known addresses");
                kept
            }
        }
    }
}

fn insert_exact(table: &mut EndpointTable, sa: SocketAddr, val: EndpointVal, name: &str) {
    let key = EndpointKey::new(sa.ip(), sa.port());
    if let Some(prev) = table.exact.get(&key)
        && prev.endpoint_id != val.endpoint_id
    {
        // config validation rejects literal duplicates; a name resolving onto another endpoint's address lands here
        warn!(%sa, endpoint = name, "address already claimed by another endpoint; keeping the first");
        return;
    }
    table.exact.insert(key, val);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;
    use std::path::Path;

    #[test]
    fn endpoint_ids_are_stable_and_distinct() {
        assert_eq!(endpoint_id("ehr"), endpoint_id("ehr"));
        assert_ne!(endpoint_id("ehr"), endpoint_id("billing"));
        // FNV-1a reference value for "a"
        assert_eq!(endpoint_id("a"), 0xe40c292c);
    }

    #[test]
    fn failed_lookup_keeps_the_last_known_addresses() {
        let mut r = Resolver::default();
        let a: BTreeSet<IpAddr> = ["10.9.0.1".parse().unwrap()].into();
        let b: BTreeSet<IpAddr> = ["10.9.0.2".parse().unwrap()].into();
        assert_eq!(r.remember("mcp.example", 443, Ok(a.clone())), a);
        assert_eq!(
            r.remember("mcp.example", 443, Err(std::io::ErrorKind::TimedOut.into())),
            a
        );
        assert_eq!(
            r.remember("mcp.example", 443, Ok(b.clone())),
            b,
            "a successful lookup replaces"
        );
        assert!(
            r.remember(
                "other.example",
                443,
                Err(std::io::ErrorKind::TimedOut.into())
            )
            .is_empty()
        );
    }

    /// localhost comes from /etc/hosts: no DNS traffic.
    #[tokio::test]
    async fn table_holds_literal_cidr_and_resolved_entries() {
        let cfg = Config::parse(
            r#"
            [agent]
            cgroup = "/"
            [[endpoint]]
            name = "a"
            match = ["10.9.0.1:80", "10.9.0.0/16:8443", "[fd00:9::/64]:443", "localhost:8080"]
            "#,
            Path::new("t.toml"),
        )
        .unwrap();
        let table = Resolver::default().table(&cfg).await;
        let val = EndpointVal {
            endpoint_id: endpoint_id("a"),
            flags: 0,
        };
        assert_eq!(
            table
                .exact
                .get(&EndpointKey::new("10.9.0.1".parse().unwrap(), 80)),
            Some(&val)
        );
        assert_eq!(
            table
                .exact
                .get(&EndpointKey::new("127.0.0.1".parse().unwrap(), 8080)),
            Some(&val)
        );
        assert_eq!(
            table
                .cidr
                .get(&CidrKey::new("10.9.0.0".parse().unwrap(), 16, 8443)),
            Some(&val)
        );
        assert_eq!(
            table
                .cidr
                .get(&CidrKey::new("fd00:9::".parse().unwrap(), 64, 443)),
            Some(&val)
        );
    }
}

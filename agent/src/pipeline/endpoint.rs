//! An endpoint as the data path needs it: the configured keys turned into
//! loaded credentials, TLS client settings, its stage chain, its connection
//! pool and its sessions. Built at start and on every reload; connections keep
//! the runtime they started with.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::{Context, Result, bail};

use super::conn::{Pool, Target};
use super::masking::build_maskers;
use super::session::SessionTable;
use super::stage::Chain;
use crate::config::{
    ClientTls, Config, CredentialKind, Endpoint, MaskChoice, Protocol, UpstreamUrl,
};
use crate::credential::{Bearer, CLIENT_CREDENTIAL_HEADERS, Credential, SecretFile, StaticHeader};
use crate::mask::Masker;
use crate::tls::UpstreamTls;

pub struct EndpointRuntime {
    pub name: String,
    pub protocol: Protocol,
    pub client_tls: ClientTls,
    pub upstream: Option<UpstreamUrl>,
    /// For TLS upstreams (all but an `http://` upstream URL).
    pub tls: Option<Arc<rustls::ClientConfig>>,
    pub credential: Option<Arc<dyn Credential>>,
    /// Request headers removed before forwarding (lower-case).
    pub strip: Vec<String>,
    pub chain: Chain,
    /// The masking profile's masker; None with `mask = "off"`.
    pub masker: Option<Arc<Masker>>,
    pub pool: Pool,
    pub sessions: SessionTable,
}

impl std::fmt::Debug for EndpointRuntime {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EndpointRuntime")
            .field("name", &self.name)
            .field("protocol", &self.protocol)
            .field("client_tls", &self.client_tls)
            .field("upstream", &self.upstream)
            .field("credential", &self.credential.is_some())
            .field("chain", &self.chain)
            .field("mask", &self.masker.as_ref().map(|m| &m.profile().name))
            .finish()
    }
}

/// The runtimes of all endpoints, by name.
pub type Runtimes = HashMap<String, Arc<EndpointRuntime>>;

/// Builds every endpoint's runtime; the first that fails names its endpoint.
pub fn build(config: &Config, chain: &Chain) -> Result<Runtimes> {
    let credentials_dir = SecretFile::credentials_dir();
    let maskers = build_maskers(config)?;
    config
        .endpoints
        .iter()
        .map(|ep| {
            let mut rt = EndpointRuntime::build(ep, config, credentials_dir.as_deref(), chain)
                .with_context(|| format!("endpoint {:?}", ep.name))?;
            if let (Protocol::Mcp, MaskChoice::Profile(name)) = (ep.protocol, &ep.mask) {
                rt.masker = maskers.get(name).cloned();
            }
            Ok((ep.name.clone(), Arc::new(rt)))
        })
        .collect()
}

impl EndpointRuntime {
    fn build(
        ep: &Endpoint,
        config: &Config,
        credentials_dir: Option<&std::path::Path>,
        chain: &Chain,
    ) -> Result<Self> {
        let tls_upstream = ep.upstream.as_ref().is_none_or(|u| u.tls);
        let tls = if ep.protocol == Protocol::Mcp && tls_upstream {
            let settings = UpstreamTls {
                ca_file: ep.upstream_ca.clone(),
                client_cert: ep
                    .client_cert
                    .as_ref()
                    .map(|c| (c.cert.clone(), c.key.clone())),
            };
            Some(Arc::new(settings.client_config()?))
        } else {
            None
        };
        let credential = match &ep.credential {
            None => None,
            Some(name) => {
                let Some(spec) = config.credentials.get(name) else {
                    bail!("credential {name:?} is not defined");
                };
                let file = SecretFile::resolve(&spec.file, credentials_dir)
                    .with_context(|| format!("credential {name:?}"))?;
                let loaded: Arc<dyn Credential> = match &spec.kind {
                    CredentialKind::Bearer => Arc::new(Bearer::load(&file)?),
                    CredentialKind::Header { header } => {
                        Arc::new(StaticHeader::load(header, &file)?)
                    }
                };
                Some(loaded)
            }
        };
        let mut strip: Vec<String> = CLIENT_CREDENTIAL_HEADERS
            .iter()
            .map(|h| h.to_string())
            .collect();
        strip.extend(ep.strip_headers.iter().map(|h| h.to_ascii_lowercase()));
        Ok(Self {
            name: ep.name.clone(),
            protocol: ep.protocol,
            client_tls: ep.client_tls,
            upstream: ep.upstream.clone(),
            tls,
            credential,
            strip,
            chain: chain.clone(),
            masker: None,
            pool: Pool::default(),
            sessions: SessionTable::default(),
        })
    }

    /// Where a request goes: the configured upstream, or the address the client
    /// dialled, verified by the name the client used (SNI or Host).
    pub async fn target(&self, orig_dst: SocketAddr, client_name: &str) -> Result<Target> {
        match &self.upstream {
            Some(u) => {
                let addr = tokio::net::lookup_host((u.host.as_str(), u.port))
                    .await
                    .with_context(|| format!("resolving upstream {}", u.authority()))?
                    .next()
                    .with_context(|| format!("upstream {} has no address", u.authority()))?;
                Ok(Target {
                    addr,
                    tls_name: u.tls.then(|| u.host.clone()),
                })
            }
            None => Ok(Target {
                addr: orig_dst,
                tls_name: Some(client_name.to_string()),
            }),
        }
    }
}

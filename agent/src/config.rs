//! The agent's TOML configuration: parsing, validation and host checks.
//!
//! Parsing goes through serde with `deny_unknown_fields` into `Raw*` structs
//! whose leaves are `toml::Spanned`, so every error we raise ourselves can
//! point at the offending value. Errors from toml itself carry a byte span;
//! we map it back to a dotted key (`endpoint[2].match[1]`) by walking a
//! span-preserving parse of the same text.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6};
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::time::Duration;

use ipnet::{IpNet, Ipv4Net, Ipv6Net};
use serde::{Deserialize, Serialize};
use toml::Spanned;
use toml::de::{DeTable, DeValue};

use crate::mask::{MaskConfig, Profile, SAFE_HARBOR};

pub const DEFAULT_PATH: &str = "/etc/mcp-warden/warden.toml";

const DEFAULT_INSTANCE: &str = "default";
const DEFAULT_LISTEN: SocketAddrV4 = SocketAddrV4::new(Ipv4Addr::LOCALHOST, 15001);
const DEFAULT_STATE_DIR: &str = "/var/lib/mcp-warden";
const DEFAULT_BPFFS: &str = "/sys/fs/bpf";
/// Used only when /proc/self/mountinfo shows no cgroup2 mount; check_host
/// then reports it as not being cgroup v2.
const FALLBACK_CGROUP: &str = "/sys/fs/cgroup";
const DEFAULT_MARK: u32 = 0x4d57;
const DEFAULT_RESOLVE_INTERVAL: Duration = Duration::from_secs(30);
const DEFAULT_DRAIN_TIMEOUT: Duration = Duration::from_secs(10);
const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// Upper bound on every duration: absurd values (humantime accepts up to
/// u64::MAX seconds) would overflow `Instant` arithmetic in the timers.
const MAX_DURATION: Duration = Duration::from_secs(365 * 24 * 3600);

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// The file this was read from (kept for reloads and error messages).
    pub path: PathBuf,
    pub agent: AgentConfig,
    pub audit: AuditConfig,
    pub endpoints: Vec<Endpoint>,
    /// `[credential.NAME]` tables, by name. Only where each secret lives:
    /// nothing here reads it (secrets are loaded at daemon start).
    pub credentials: BTreeMap<String, CredentialSpec>,
    /// `[mask.NAME]` tables, by name, as written (each validated by building
    /// its profile once; the runtime builds them again).
    pub masks: BTreeMap<String, MaskConfig>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AgentConfig {
    pub instance: String,
    pub listen: SocketAddrV4,
    /// None: IPv6 interception is off.
    pub listen6: Option<SocketAddrV6>,
    pub cgroup: PathBuf,
    pub state_dir: PathBuf,
    pub bpffs: PathBuf,
    pub fail_mode: FailMode,
    pub mark: u32,
    pub resolve_interval: Duration,
    pub drain_timeout: Duration,
    pub connect_timeout: Duration,
    pub all_netns: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum FailMode {
    Closed,
    Open,
}

/// `[audit]`: how the tamper-evident store commits, signs, rotates and retains.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditConfig {
    /// Longest a batched record waits before its group is written and synced.
    pub batch_delay: Duration,
    /// A signed checkpoint every this many records …
    pub checkpoint_every: u64,
    /// … or after this long, whichever comes first.
    pub checkpoint_interval: Duration,
    pub segment_max_bytes: u64,
    pub segment_max_age: Duration,
    /// Remove closed segments older than this (None: keep).
    pub retention_max_age: Option<Duration>,
    /// Remove the oldest closed segments beyond this total (None: keep).
    pub retention_max_bytes: Option<u64>,
}

impl Default for AuditConfig {
    fn default() -> Self {
        Self {
            batch_delay: Duration::from_millis(5),
            checkpoint_every: 1000,
            checkpoint_interval: Duration::from_secs(10),
            segment_max_bytes: 64 << 20,
            segment_max_age: Duration::from_secs(24 * 3600),
            retention_max_age: None,
            retention_max_bytes: None,
        }
    }
}

/// One `[[endpoint]]`. Everything after `matches` is L7 (HTTP/MCP) handling
/// and only applies with `protocol = "mcp"`; `Default` is an endpoint with
/// no name or matches and every other key at its default.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Endpoint {
    pub name: String,
    pub matches: Vec<MatchSpec>,
    /// `protocol`: what the agent does with the connection's bytes.
    pub protocol: Protocol,
    /// `client_tls`: whether the client speaks TLS to the agent.
    pub client_tls: ClientTls,
    /// `upstream`: where the agent connects instead of the original
    /// destination (None: the original destination, over TLS).
    pub upstream: Option<UpstreamUrl>,
    /// `upstream_ca`: PEM CA bundle the upstream's certificate is verified
    /// against instead of the system roots. Absolute.
    pub upstream_ca: Option<PathBuf>,
    /// `client_cert` + `client_key`: the agent's TLS client certificate for
    /// the upstream (mTLS). Absolute.
    pub client_cert: Option<ClientCert>,
    /// `credential`: the name of a `[credential.NAME]` table (a key of
    /// `Config::credentials`) injected into every upstream request.
    pub credential: Option<String>,
    /// `strip_headers`: request headers removed in addition to the client
    /// credential headers that are always removed. Lower-cased HTTP tokens.
    pub strip_headers: Vec<String>,
    /// `mask`: the masking profile for what the server sends back and for
    /// the payloads the audit keeps.
    pub mask: MaskChoice,
}

/// `mask`: a profile name (`"safe-harbor"`, built in and the default, or a
/// `[mask.NAME]` table) or `"off"`: nothing is masked, and the audit keeps
/// no payloads for the endpoint (only their SHA-256 and size), since it must
/// never hold unmasked PHI.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MaskChoice {
    Profile(String),
    Off,
}

impl Default for MaskChoice {
    fn default() -> Self {
        MaskChoice::Profile(SAFE_HARBOR.to_string())
    }
}

impl fmt::Display for MaskChoice {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            MaskChoice::Profile(name) => f.write_str(name),
            MaskChoice::Off => f.write_str(MASK_OFF),
        }
    }
}

/// `mask = "off"`.
pub const MASK_OFF: &str = "off";

impl Endpoint {
    /// An endpoint with every key except `name` and `match` at its default.
    pub fn new(name: impl Into<String>, matches: Vec<MatchSpec>) -> Endpoint {
        Endpoint {
            name: name.into(),
            matches,
            ..Endpoint::default()
        }
    }
}

/// `protocol`: `"mcp"` (HTTP with the L7 controls) or `"tcp"` (bytes relayed
/// unchanged; connection records only).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Protocol {
    #[default]
    Mcp,
    Tcp,
}

/// `client_tls`: `"terminate"` (the client speaks TLS and the agent
/// terminates it with a leaf from its local CA) or `"plain"` (the client
/// speaks plain HTTP; the agent still uses TLS upstream unless `upstream` is
/// an `http://` URL).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ClientTls {
    #[default]
    Terminate,
    Plain,
}

/// `upstream`: `https://host[:port]` or `http://host[:port]`, normalised:
/// host names lower-cased without a trailing dot, IP literals in canonical
/// form and IPv6 without brackets, the scheme's default port filled in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UpstreamUrl {
    /// `https` (true) or `http` (false).
    pub tls: bool,
    pub host: String,
    pub port: u16,
}

impl UpstreamUrl {
    /// 443 for https, 80 for http.
    pub fn default_port(&self) -> u16 {
        if self.tls { 443 } else { 80 }
    }

    /// `host[:port]` as in a Host header or URL authority: IPv6 bracketed,
    /// the port left out when it is the scheme's default.
    pub fn authority(&self) -> String {
        let host = if self.host.contains(':') {
            format!("[{}]", self.host)
        } else {
            self.host.clone()
        };
        if self.port == self.default_port() {
            host
        } else {
            format!("{host}:{}", self.port)
        }
    }
}

/// `client_cert` and `client_key`, which go together.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientCert {
    pub cert: PathBuf,
    pub key: PathBuf,
}

/// One `[credential.NAME]` table: how a secret is injected upstream and
/// where it is read from. Never the secret itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CredentialSpec {
    pub name: String,
    pub kind: CredentialKind,
    /// As written: a plain file name (no '/'), resolved against
    /// `$CREDENTIALS_DIRECTORY` (systemd `LoadCredential=`), or an
    /// absolute path.
    pub file: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CredentialKind {
    /// `Authorization: Bearer <secret>`.
    Bearer,
    /// `<header>: <secret>`; `header` is a lower-cased HTTP token, never a
    /// hop-by-hop or framing header.
    Header { header: String },
}

/// One `match` entry, normalised: hostnames lower-cased, a /32 or /128 CIDR
/// is an `Addr`, IPv6 in canonical (compressed) form.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum MatchSpec {
    Addr(SocketAddr),
    Cidr { net: IpNet, port: u16 },
    Host { host: String, port: u16 },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    pub file: PathBuf,
    /// 1-based line of the offending value, when known.
    pub line: Option<usize>,
    /// 1-based column (in characters) of the offending value, when known.
    pub col: Option<usize>,
    /// Dotted key path, e.g. `agent.listen` or `endpoint[2].match[1]`.
    pub key: Option<String>,
    pub message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.file.display())?;
        if let Some(line) = self.line {
            write!(f, ":{line}")?;
            if let Some(col) = self.col {
                write!(f, ":{col}")?;
            }
        }
        if let Some(key) = &self.key {
            write!(f, ": {key}")?;
        }
        write!(f, ": {}", self.message)
    }
}

impl std::error::Error for ConfigError {}

impl fmt::Display for FailMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            FailMode::Closed => "closed",
            FailMode::Open => "open",
        })
    }
}

impl fmt::Display for Protocol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Protocol::Mcp => "mcp",
            Protocol::Tcp => "tcp",
        })
    }
}

impl fmt::Display for ClientTls {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ClientTls::Terminate => "terminate",
            ClientTls::Plain => "plain",
        })
    }
}

/// The normalised URL, e.g. `https://mcp.internal.example:8443`.
impl fmt::Display for UpstreamUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let scheme = if self.tls { "https" } else { "http" };
        write!(f, "{scheme}://{}", self.authority())
    }
}

impl std::str::FromStr for UpstreamUrl {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        parse_upstream(s)
    }
}

impl fmt::Display for MatchSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            // SocketAddr's Display already brackets IPv6.
            MatchSpec::Addr(sa) => write!(f, "{sa}"),
            MatchSpec::Cidr {
                net: IpNet::V4(n),
                port,
            } => write!(f, "{n}:{port}"),
            MatchSpec::Cidr {
                net: IpNet::V6(n),
                port,
            } => write!(f, "[{n}]:{port}"),
            MatchSpec::Host { host, port } => write!(f, "{host}:{port}"),
        }
    }
}

impl std::str::FromStr for MatchSpec {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        parse_match(s)
    }
}

impl Serialize for MatchSpec {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

/// Serialises in the file's own format (minus `path`), so `check-config`
/// can print the effective configuration and it parses back to the same.
impl Serialize for Config {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        #[derive(Serialize)]
        struct Out<'a> {
            agent: AgentOut<'a>,
            audit: AuditOut,
            #[serde(skip_serializing_if = "Vec::is_empty")]
            endpoint: Vec<EndpointOut<'a>>,
            #[serde(skip_serializing_if = "BTreeMap::is_empty")]
            credential: BTreeMap<&'a str, CredentialOut<'a>>,
            #[serde(skip_serializing_if = "BTreeMap::is_empty")]
            mask: &'a BTreeMap<String, MaskConfig>,
        }
        #[derive(Serialize)]
        struct AgentOut<'a> {
            instance: &'a str,
            listen: String,
            listen6: String,
            cgroup: String,
            state_dir: String,
            bpffs: String,
            fail_mode: FailMode,
            mark: u32,
            resolve_interval: String,
            drain_timeout: String,
            connect_timeout: String,
            all_netns: bool,
        }
        #[derive(Serialize)]
        struct AuditOut {
            batch_delay: String,
            checkpoint_every: u64,
            checkpoint_interval: String,
            segment_max_mb: u64,
            segment_max_age: String,
            #[serde(skip_serializing_if = "Option::is_none")]
            retention_max_age: Option<String>,
            #[serde(skip_serializing_if = "Option::is_none")]
            retention_max_mb: Option<u64>,
        }
        // The L7 keys are left out for protocol = "tcp", which refuses them.
        #[derive(Serialize)]
        struct EndpointOut<'a> {
            name: &'a str,
            #[serde(rename = "match")]
            matches: &'a [MatchSpec],
            protocol: Protocol,
            #[serde(skip_serializing_if = "Option::is_none")]
            client_tls: Option<ClientTls>,
            #[serde(skip_serializing_if = "Option::is_none")]
            upstream: Option<String>,
            #[serde(skip_serializing_if = "Option::is_none")]
            upstream_ca: Option<String>,
            #[serde(skip_serializing_if = "Option::is_none")]
            client_cert: Option<String>,
            #[serde(skip_serializing_if = "Option::is_none")]
            client_key: Option<String>,
            #[serde(skip_serializing_if = "Option::is_none")]
            credential: Option<&'a str>,
            #[serde(skip_serializing_if = "<[String]>::is_empty")]
            strip_headers: &'a [String],
            #[serde(skip_serializing_if = "Option::is_none")]
            mask: Option<String>,
        }
        #[derive(Serialize)]
        struct CredentialOut<'a> {
            kind: &'static str,
            #[serde(skip_serializing_if = "Option::is_none")]
            header: Option<&'a str>,
            file: &'a str,
        }
        let a = &self.agent;
        let dur = |d: Duration| humantime::format_duration(d).to_string();
        Out {
            agent: AgentOut {
                instance: &a.instance,
                listen: a.listen.to_string(),
                listen6: a
                    .listen6
                    .map_or_else(|| "off".to_string(), |l| l.to_string()),
                cgroup: a.cgroup.display().to_string(),
                state_dir: a.state_dir.display().to_string(),
                bpffs: a.bpffs.display().to_string(),
                fail_mode: a.fail_mode,
                mark: a.mark,
                resolve_interval: dur(a.resolve_interval),
                drain_timeout: dur(a.drain_timeout),
                connect_timeout: dur(a.connect_timeout),
                all_netns: a.all_netns,
            },
            audit: AuditOut {
                batch_delay: dur(self.audit.batch_delay),
                checkpoint_every: self.audit.checkpoint_every,
                checkpoint_interval: dur(self.audit.checkpoint_interval),
                segment_max_mb: self.audit.segment_max_bytes >> 20,
                segment_max_age: dur(self.audit.segment_max_age),
                retention_max_age: self.audit.retention_max_age.map(dur),
                retention_max_mb: self.audit.retention_max_bytes.map(|b| b >> 20),
            },
            endpoint: self
                .endpoints
                .iter()
                .map(|e| {
                    let mcp = e.protocol == Protocol::Mcp;
                    let path = |p: &PathBuf| p.display().to_string();
                    EndpointOut {
                        name: &e.name,
                        matches: &e.matches,
                        protocol: e.protocol,
                        client_tls: mcp.then_some(e.client_tls),
                        upstream: e.upstream.as_ref().map(ToString::to_string),
                        upstream_ca: e.upstream_ca.as_ref().map(path),
                        client_cert: e.client_cert.as_ref().map(|c| path(&c.cert)),
                        client_key: e.client_cert.as_ref().map(|c| path(&c.key)),
                        credential: e.credential.as_deref(),
                        strip_headers: &e.strip_headers,
                        mask: mcp.then(|| e.mask.to_string()),
                    }
                })
                .collect(),
            credential: self
                .credentials
                .iter()
                .map(|(name, c)| {
                    let (kind, header) = match &c.kind {
                        CredentialKind::Bearer => ("bearer", None),
                        CredentialKind::Header { header } => ("header", Some(header.as_str())),
                    };
                    (
                        name.as_str(),
                        CredentialOut {
                            kind,
                            header,
                            file: &c.file,
                        },
                    )
                })
                .collect(),
            mask: &self.masks,
        }
        .serialize(s)
    }
}

impl Config {
    /// Reads, parses and validates `path`. No host checks (see `check_host`).
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|e| ConfigError {
            file: path.to_path_buf(),
            line: None,
            col: None,
            key: None,
            message: format!("cannot read: {e}"),
        })?;
        Config::parse(&text, path)
    }

    /// Parses and validates `text`; `path` is only recorded and used in errors.
    pub fn parse(text: &str, path: &Path) -> Result<Config, ConfigError> {
        let src = Source { text, path };
        let raw: RawFile = toml::from_str(text).map_err(|e| src.toml_error(&e))?;
        let agent = src.agent(raw.agent.as_ref().map(|a| a.get_ref()))?;
        let audit = src.audit(raw.audit.as_ref().map(|a| a.get_ref()))?;
        let credentials = src.credentials(&raw.credential)?;
        let masks = src.masks(&raw.mask)?;
        let endpoints = src.endpoints(&raw.endpoint, &credentials, &masks)?;
        Ok(Config {
            path: path.to_path_buf(),
            agent,
            audit,
            endpoints,
            credentials,
            masks,
        })
    }

    /// Checks the host matches the config: the cgroup path is a cgroup v2
    /// directory and the bpffs directory exists.
    pub fn check_host(&self) -> Result<(), ConfigError> {
        let cgroup = &self.agent.cgroup;
        match std::fs::metadata(cgroup) {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(self.host_error(
                    "cgroup",
                    cgroup,
                    format!("{} does not exist", cgroup.display()),
                ));
            }
            Err(e) => {
                return Err(self.host_error(
                    "cgroup",
                    cgroup,
                    format!("{}: {e}", cgroup.display()),
                ));
            }
            Ok(m) if !m.is_dir() => {
                return Err(self.host_error(
                    "cgroup",
                    cgroup,
                    format!("{} is not a cgroup v2 directory", cgroup.display()),
                ));
            }
            Ok(_) => {}
        }
        match nix::sys::statfs::statfs(cgroup.as_path()) {
            // f_type 0x63677270: the cgroup v2 filesystem.
            Ok(st) if st.filesystem_type() == nix::sys::statfs::CGROUP2_SUPER_MAGIC => {}
            Ok(st) => {
                return Err(self.host_error(
                    "cgroup",
                    cgroup,
                    format!(
                        "{} is not a cgroup v2 directory (filesystem type {:#x})",
                        cgroup.display(),
                        st.filesystem_type().0
                    ),
                ));
            }
            Err(e) => {
                return Err(self.host_error(
                    "cgroup",
                    cgroup,
                    format!("{}: statfs: {e}", cgroup.display()),
                ));
            }
        }
        let bpffs = &self.agent.bpffs;
        match std::fs::metadata(bpffs) {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Err(self.host_error(
                "bpffs",
                bpffs,
                format!("{} does not exist", bpffs.display()),
            )),
            Err(e) => Err(self.host_error("bpffs", bpffs, format!("{}: {e}", bpffs.display()))),
            Ok(m) if !m.is_dir() => Err(self.host_error(
                "bpffs",
                bpffs,
                format!("{} is not a directory", bpffs.display()),
            )),
            Ok(_) => Ok(()),
        }
    }

    /// Where this instance pins its BPF objects.
    pub fn pin_dir(&self) -> PathBuf {
        self.agent
            .bpffs
            .join("mcp-warden")
            .join(&self.agent.instance)
    }

    pub fn audit_dir(&self) -> PathBuf {
        self.agent.state_dir.join("audit")
    }

    /// `<state_dir>/ca`: the local CA that client-side TLS leaves are minted from.
    pub fn ca_dir(&self) -> PathBuf {
        self.agent.state_dir.join("ca")
    }

    /// An error about `agent.<key>`. Config keeps no spans, so the line is
    /// found by re-reading the file; it is given only if the file still
    /// holds the same value there (it may have been edited since loading).
    fn host_error(&self, key: &str, value: &Path, message: String) -> ConfigError {
        let span = std::fs::read_to_string(&self.path).ok().and_then(|text| {
            let (root, _) = DeTable::parse_recoverable(&text);
            let DeValue::Table(agent) = root.get_ref().get("agent")?.get_ref() else {
                return None;
            };
            let v = agent.get(key)?;
            match v.get_ref() {
                DeValue::String(s) if Path::new(s.as_ref()) == value => {
                    Some((v.span(), text.clone()))
                }
                _ => None,
            }
        });
        let (line, col) = match &span {
            Some((span, text)) => {
                let (l, c) = line_col(text, span.start);
                (Some(l), Some(c))
            }
            None => (None, None),
        };
        ConfigError {
            file: self.path.clone(),
            line,
            col,
            key: Some(format!("agent.{key}")),
            message,
        }
    }
}

// ---- raw (as written) form -------------------------------------------------

#[derive(Deserialize)]
#[serde(deny_unknown_fields, expecting = "a table")]
struct RawFile {
    agent: Option<Spanned<RawAgent>>,
    audit: Option<Spanned<RawAudit>>,
    #[serde(default)]
    endpoint: Vec<Spanned<RawEndpoint>>,
    #[serde(default)]
    credential: BTreeMap<Spanned<String>, Spanned<RawCredential>>,
    #[serde(default)]
    mask: BTreeMap<Spanned<String>, Spanned<MaskConfig>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, expecting = "a table")]
struct RawAgent {
    instance: Option<Spanned<String>>,
    listen: Option<Spanned<String>>,
    listen6: Option<Spanned<String>>,
    cgroup: Option<Spanned<String>>,
    state_dir: Option<Spanned<String>>,
    bpffs: Option<Spanned<String>>,
    fail_mode: Option<Spanned<String>>,
    // i128 so that out-of-range integers reach our own range message.
    mark: Option<Spanned<i128>>,
    resolve_interval: Option<Spanned<String>>,
    drain_timeout: Option<Spanned<String>>,
    connect_timeout: Option<Spanned<String>>,
    all_netns: Option<bool>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields, expecting = "a table")]
struct RawAudit {
    batch_delay: Option<Spanned<String>>,
    checkpoint_every: Option<Spanned<i128>>,
    checkpoint_interval: Option<Spanned<String>>,
    segment_max_mb: Option<Spanned<i128>>,
    segment_max_age: Option<Spanned<String>>,
    retention_max_age: Option<Spanned<String>>,
    retention_max_mb: Option<Spanned<i128>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, expecting = "a table")]
struct RawEndpoint {
    // Optional so a missing key gets our message rather than serde's.
    name: Option<Spanned<String>>,
    #[serde(rename = "match")]
    matches: Option<Spanned<Vec<Spanned<String>>>>,
    protocol: Option<Spanned<String>>,
    client_tls: Option<Spanned<String>>,
    upstream: Option<Spanned<String>>,
    upstream_ca: Option<Spanned<String>>,
    client_cert: Option<Spanned<String>>,
    client_key: Option<Spanned<String>>,
    credential: Option<Spanned<String>>,
    strip_headers: Option<Spanned<Vec<Spanned<String>>>>,
    mask: Option<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, expecting = "a table")]
struct RawCredential {
    kind: Option<Spanned<String>>,
    header: Option<Spanned<String>>,
    file: Option<Spanned<String>>,
}

// ---- validation ------------------------------------------------------------

/// A `[SECTION.NAME]` table: its name as written, the table, its dotted key.
type NamedTable<'r, T> = (&'r Spanned<String>, &'r Spanned<T>, String);

struct Source<'a> {
    text: &'a str,
    path: &'a Path,
}

impl Source<'_> {
    fn error(
        &self,
        span: Option<Range<usize>>,
        key: Option<String>,
        message: impl Into<String>,
    ) -> ConfigError {
        let (line, col) = match span {
            Some(s) => {
                let (l, c) = line_col(self.text, s.start);
                (Some(l), Some(c))
            }
            None => (None, None),
        };
        ConfigError {
            file: self.path.to_path_buf(),
            line,
            col,
            key,
            message: message.into(),
        }
    }

    fn at<T>(
        &self,
        v: &Spanned<T>,
        key: impl Into<String>,
        message: impl Into<String>,
    ) -> ConfigError {
        self.error(Some(v.span()), Some(key.into()), message)
    }

    /// Turns toml's error into ours: one line, key derived from the span,
    /// serde's unknown/missing-field wording rephrased.
    fn toml_error(&self, e: &toml::de::Error) -> ConfigError {
        let span = e.span();
        let mut path = span
            .as_ref()
            .map(|s| key_path_at(self.text, s.start))
            .unwrap_or_default();
        let raw = e.message().trim();
        let mut message = raw
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .collect::<Vec<_>>()
            .join("; ")
            // mark is read as i128 (see RawAgent); don't leak that.
            .replace("expected i128", "expected an integer");
        if let Some((field, expected)) = parse_unknown_field(raw) {
            // The span is the unknown key itself; report it against its table.
            if path
                .last()
                .is_some_and(|seg| matches!(seg, Seg::Key(k) if *k == field))
            {
                path.pop();
            }
            let list = if expected.is_empty() {
                String::from("none")
            } else {
                expected.join(", ")
            };
            message = if path.is_empty() {
                format!("unknown top-level key \"{field}\" (expected one of: {list})")
            } else {
                format!("unknown key \"{field}\" (expected one of: {list})")
            };
        } else if let Some(field) = raw
            .strip_prefix("missing field `")
            .and_then(|r| r.strip_suffix('`'))
        {
            message = format!("missing key \"{field}\"");
        } else if raw == "duplicate key" {
            // The span is the repeated key (maybe quoted). A repeated plain
            // key is not in the recovered tree, so usually there is no path;
            // a repeated [table] header is, and is reported against its parent.
            if let Some(k) = span.as_ref().and_then(|s| self.text.get(s.clone())) {
                let k = k.trim_matches(|c| c == '"' || c == '\'');
                if path
                    .last()
                    .is_some_and(|seg| matches!(seg, Seg::Key(last) if last == k))
                {
                    path.pop();
                }
                message = format!("duplicate key \"{k}\"");
            }
        } else if path.len() == 1
            && path[0] == Seg::Key("endpoint".into())
            && raw.starts_with("invalid type")
        {
            message.push_str(" (write each endpoint as an [[endpoint]] table)");
        } else if path.first() == Some(&Seg::Key("credential".into()))
            && matches!(path.get(1), None | Some(Seg::Index(_)))
            && raw.starts_with("invalid type")
        {
            // `credential = ...` or `[[credential]]` (reported at its first entry).
            path.truncate(1);
            message.push_str(" (write each credential as a [credential.NAME] table)");
        }
        let key = if path.is_empty() {
            None
        } else {
            Some(render_path(&path))
        };
        self.error(span, key, message)
    }

    fn agent(&self, raw: Option<&RawAgent>) -> Result<AgentConfig, ConfigError> {
        let empty = RawAgent {
            instance: None,
            listen: None,
            listen6: None,
            cgroup: None,
            state_dir: None,
            bpffs: None,
            fail_mode: None,
            mark: None,
            resolve_interval: None,
            drain_timeout: None,
            connect_timeout: None,
            all_netns: None,
        };
        let r = raw.unwrap_or(&empty);

        let instance = match &r.instance {
            None => DEFAULT_INSTANCE.to_string(),
            Some(v) => {
                let s = v.get_ref();
                let ok = (1..=32).contains(&s.len())
                    && s.bytes().all(|b| {
                        b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-'
                    });
                if !ok {
                    return Err(self.at(
                        v,
                        "agent.instance",
                        format!("invalid instance name {s:?} (expected 1-32 characters of a-z, 0-9, _ and -)"),
                    ));
                }
                s.clone()
            }
        };

        let listen = match &r.listen {
            None => DEFAULT_LISTEN,
            Some(v) => {
                let s = v.get_ref();
                let sa: SocketAddrV4 = s.parse().map_err(|_| {
                    let hint = if s.parse::<SocketAddrV6>().is_ok() { "; IPv6 goes in agent.listen6" } else { "" };
                    self.at(v, "agent.listen", format!("invalid IPv4 socket address {s:?} (expected e.g. 127.0.0.1:15001{hint})"))
                })?;
                // The BPF program redirects to this exact address.
                if sa.ip().is_unspecified() {
                    return Err(self.at(v, "agent.listen", format!("{s:?}: the listen address must not be unspecified (0.0.0.0); connections are redirected to this exact address")));
                }
                if sa.port() == 0 {
                    return Err(self.at(v, "agent.listen", format!("{s:?}: port must not be 0")));
                }
                sa
            }
        };

        let listen6 = match &r.listen6 {
            None => Some(SocketAddrV6::new(Ipv6Addr::LOCALHOST, listen.port(), 0, 0)),
            Some(v) if v.get_ref() == "off" => None,
            Some(v) => {
                let s = v.get_ref();
                let sa: SocketAddrV6 = s.parse().map_err(|_| {
                    self.at(v, "agent.listen6", format!("invalid IPv6 socket address {s:?} (expected e.g. [::1]:15001, or \"off\")"))
                })?;
                // Same reason as listen: it is a redirect target.
                if sa.ip().is_unspecified() {
                    return Err(self.at(v, "agent.listen6", format!("{s:?}: the listen address must not be unspecified ([::]); connections are redirected to this exact address")));
                }
                if sa.port() == 0 {
                    return Err(self.at(v, "agent.listen6", format!("{s:?}: port must not be 0")));
                }
                Some(sa)
            }
        };

        let cgroup = match &r.cgroup {
            Some(v) => self.abs_path(v, "agent.cgroup")?,
            None => std::fs::read_to_string("/proc/self/mountinfo")
                .ok()
                .and_then(|m| cgroup2_mount(&m))
                .unwrap_or_else(|| PathBuf::from(FALLBACK_CGROUP)),
        };
        let state_dir = match &r.state_dir {
            Some(v) => self.abs_path(v, "agent.state_dir")?,
            None => PathBuf::from(DEFAULT_STATE_DIR),
        };
        let bpffs = match &r.bpffs {
            Some(v) => self.abs_path(v, "agent.bpffs")?,
            None => PathBuf::from(DEFAULT_BPFFS),
        };

        let fail_mode = match r.fail_mode.as_ref().map(|v| (v, v.get_ref().as_str())) {
            None | Some((_, "closed")) => FailMode::Closed,
            Some((_, "open")) => FailMode::Open,
            Some((v, s)) => {
                return Err(self.at(
                    v,
                    "agent.fail_mode",
                    format!("invalid fail_mode {s:?} (expected \"closed\" or \"open\")"),
                ));
            }
        };

        let mark = match &r.mark {
            None => DEFAULT_MARK,
            Some(v) => u32::try_from(*v.get_ref())
                .ok()
                .filter(|&m| m != 0)
                .ok_or_else(|| {
                    self.at(
                        v,
                        "agent.mark",
                        format!(
                            "mark {} out of range (expected 1-{})",
                            v.get_ref(),
                            u32::MAX
                        ),
                    )
                })?,
        };

        let resolve_interval = self.duration(
            &r.resolve_interval,
            "agent.resolve_interval",
            DEFAULT_RESOLVE_INTERVAL,
            false,
        )?;
        let drain_timeout = self.duration(
            &r.drain_timeout,
            "agent.drain_timeout",
            DEFAULT_DRAIN_TIMEOUT,
            true,
        )?;
        let connect_timeout = self.duration(
            &r.connect_timeout,
            "agent.connect_timeout",
            DEFAULT_CONNECT_TIMEOUT,
            false,
        )?;

        Ok(AgentConfig {
            instance,
            listen,
            listen6,
            cgroup,
            state_dir,
            bpffs,
            fail_mode,
            mark,
            resolve_interval,
            drain_timeout,
            connect_timeout,
            all_netns: r.all_netns.unwrap_or(false),
        })
    }

    fn audit(&self, raw: Option<&RawAudit>) -> Result<AuditConfig, ConfigError> {
        let empty = RawAudit::default();
        let r = raw.unwrap_or(&empty);
        let d = AuditConfig::default();
        let optional = |v: &Option<Spanned<String>>, key: &str| match v {
            None => Ok(None),
            Some(_) => self.duration(v, key, Duration::ZERO, false).map(Some),
        };
        Ok(AuditConfig {
            batch_delay: self.duration(&r.batch_delay, "audit.batch_delay", d.batch_delay, true)?,
            checkpoint_every: self.count(
                &r.checkpoint_every,
                "audit.checkpoint_every",
                d.checkpoint_every,
                1_000_000,
            )?,
            checkpoint_interval: self.duration(
                &r.checkpoint_interval,
                "audit.checkpoint_interval",
                d.checkpoint_interval,
                false,
            )?,
            segment_max_bytes: self.count(
                &r.segment_max_mb,
                "audit.segment_max_mb",
                d.segment_max_bytes >> 20,
                1 << 20,
            )? << 20,
            segment_max_age: self.duration(
                &r.segment_max_age,
                "audit.segment_max_age",
                d.segment_max_age,
                false,
            )?,
            retention_max_age: optional(&r.retention_max_age, "audit.retention_max_age")?,
            retention_max_bytes: match &r.retention_max_mb {
                None => None,
                Some(_) => Some(
                    self.count(&r.retention_max_mb, "audit.retention_max_mb", 0, 1 << 30)? << 20,
                ),
            },
        })
    }

    /// A positive integer up to `max`.
    fn count(
        &self,
        v: &Option<Spanned<i128>>,
        key: &str,
        default: u64,
        max: u64,
    ) -> Result<u64, ConfigError> {
        let Some(v) = v else { return Ok(default) };
        u64::try_from(*v.get_ref())
            .ok()
            .filter(|n| (1..=max).contains(n))
            .ok_or_else(|| {
                self.at(
                    v,
                    key,
                    format!("{} out of range (expected 1-{max})", v.get_ref()),
                )
            })
    }

    fn abs_path(&self, v: &Spanned<String>, key: &str) -> Result<PathBuf, ConfigError> {
        let p = PathBuf::from(v.get_ref());
        if !p.is_absolute() {
            return Err(self.at(v, key, format!("{:?} is not an absolute path", v.get_ref())));
        }
        Ok(p)
    }

    fn duration(
        &self,
        v: &Option<Spanned<String>>,
        key: &str,
        default: Duration,
        zero_ok: bool,
    ) -> Result<Duration, ConfigError> {
        let Some(v) = v else { return Ok(default) };
        let s = v.get_ref();
        let d = humantime::parse_duration(s).map_err(|e| {
            self.at(
                v,
                key,
                format!(
                    "invalid duration {s:?}: {e} (expected e.g. \"30s\", \"1m 30s\", \"500ms\")"
                ),
            )
        })?;
        if d.is_zero() && !zero_ok {
            return Err(self.at(v, key, format!("duration {s:?} must be greater than 0")));
        }
        if d > MAX_DURATION {
            return Err(self.at(v, key, format!("duration {s:?} is too long (at most 365d)")));
        }
        Ok(d)
    }

    fn endpoints(
        &self,
        raw: &[Spanned<RawEndpoint>],
        credentials: &BTreeMap<String, CredentialSpec>,
        masks: &BTreeMap<String, MaskConfig>,
    ) -> Result<Vec<Endpoint>, ConfigError> {
        // First place each name / normalised match was seen, for duplicate errors.
        let mut names: HashMap<&str, (usize, usize)> = HashMap::new();
        let mut seen: HashMap<MatchSpec, (String, usize)> = HashMap::new();
        let mut out = Vec::with_capacity(raw.len());
        for (i, ep) in raw.iter().enumerate() {
            let r = ep.get_ref();
            let Some(name_v) = &r.name else {
                return Err(self.at(ep, format!("endpoint[{i}]"), "missing key \"name\""));
            };
            let name = name_v.get_ref();
            if !valid_name(name) {
                return Err(self.at(
                    name_v,
                    format!("endpoint[{i}].name"),
                    format!("invalid endpoint name {name:?} (expected 1-64 characters of A-Z, a-z, 0-9, ., _ and -)"),
                ));
            }
            if let Some(&(j, line)) = names.get(name.as_str()) {
                return Err(self.at(
                    name_v,
                    format!("endpoint[{i}].name"),
                    format!("duplicate endpoint name {name:?} (first used at endpoint[{j}].name, line {line})"),
                ));
            }
            names.insert(name, (i, line_col(self.text, name_v.span().start).0));

            let Some(list) = &r.matches else {
                return Err(self.at(
                    ep,
                    format!("endpoint[{i}]"),
                    "missing key \"match\" (every endpoint needs a non-empty match list)",
                ));
            };
            if list.get_ref().is_empty() {
                return Err(self.at(
                    list,
                    format!("endpoint[{i}].match"),
                    "empty match list (every endpoint needs at least one match)",
                ));
            }
            let mut matches = Vec::with_capacity(list.get_ref().len());
            for (j, m) in list.get_ref().iter().enumerate() {
                let key = format!("endpoint[{i}].match[{j}]");
                let spec = parse_match(m.get_ref()).map_err(|msg| self.at(m, key.clone(), msg))?;
                let line = line_col(self.text, m.span().start).0;
                if let Some((first, first_line)) = seen.get(&spec) {
                    let same = if m.get_ref() == &spec.to_string() {
                        String::new()
                    } else {
                        format!(" (as {spec})")
                    };
                    return Err(self.at(
                        m,
                        key,
                        format!("duplicate match {:?}{same}: already listed at {first}, line {first_line}", m.get_ref()),
                    ));
                }
                seen.insert(spec.clone(), (format!("{key} (endpoint {name:?})"), line));
                matches.push(spec);
            }
            let ep = Endpoint::new(name.clone(), matches);
            out.push(self.endpoint_l7(i, r, ep, credentials, masks)?);
        }
        Ok(out)
    }

    /// The keys after `name` and `match`, into `ep`.
    fn endpoint_l7(
        &self,
        i: usize,
        r: &RawEndpoint,
        mut ep: Endpoint,
        credentials: &BTreeMap<String, CredentialSpec>,
        masks: &BTreeMap<String, MaskConfig>,
    ) -> Result<Endpoint, ConfigError> {
        let key = |k: &str| format!("endpoint[{i}].{k}");

        ep.protocol = match r.protocol.as_ref().map(|v| (v, v.get_ref().as_str())) {
            None | Some((_, "mcp")) => Protocol::Mcp,
            Some((_, "tcp")) => Protocol::Tcp,
            Some((v, s)) => {
                return Err(self.at(
                    v,
                    key("protocol"),
                    format!("invalid protocol {s:?} (expected \"mcp\" or \"tcp\")"),
                ));
            }
        };
        if ep.protocol == Protocol::Tcp {
            // Report the first L7 key in the file.
            let l7 = [
                ("client_tls", r.client_tls.as_ref().map(Spanned::span)),
                ("upstream", r.upstream.as_ref().map(Spanned::span)),
                ("upstream_ca", r.upstream_ca.as_ref().map(Spanned::span)),
                ("client_cert", r.client_cert.as_ref().map(Spanned::span)),
                ("client_key", r.client_key.as_ref().map(Spanned::span)),
                ("credential", r.credential.as_ref().map(Spanned::span)),
                ("strip_headers", r.strip_headers.as_ref().map(Spanned::span)),
                ("mask", r.mask.as_ref().map(Spanned::span)),
            ];
            if let Some((k, span)) = l7
                .into_iter()
                .filter_map(|(k, s)| Some((k, s?)))
                .min_by_key(|(_, s)| s.start)
            {
                return Err(self.error(
                    Some(span),
                    Some(key(k)),
                    format!("{k} only applies to protocol = \"mcp\" (a \"tcp\" endpoint's bytes are relayed unchanged)"),
                ));
            }
            return Ok(ep);
        }

        ep.client_tls = match r.client_tls.as_ref().map(|v| (v, v.get_ref().as_str())) {
            None | Some((_, "terminate")) => ClientTls::Terminate,
            Some((_, "plain")) => ClientTls::Plain,
            Some((v, s)) => {
                return Err(self.at(
                    v,
                    key("client_tls"),
                    format!("invalid client_tls {s:?} (expected \"terminate\" or \"plain\")"),
                ));
            }
        };

        if let Some(v) = &r.upstream {
            let url = parse_upstream(v.get_ref()).map_err(|m| self.at(v, key("upstream"), m))?;
            ep.upstream = Some(url);
        }
        if let Some(v) = &r.upstream_ca {
            ep.upstream_ca = Some(self.abs_path(v, &key("upstream_ca"))?);
        }
        ep.client_cert = match (&r.client_cert, &r.client_key) {
            (None, None) => None,
            (Some(c), None) => {
                return Err(self.at(
                    c,
                    key("client_cert"),
                    "missing client_key (client_cert and client_key go together)",
                ));
            }
            (None, Some(k)) => {
                return Err(self.at(
                    k,
                    key("client_key"),
                    "missing client_cert (client_cert and client_key go together)",
                ));
            }
            (Some(c), Some(k)) => Some(ClientCert {
                cert: self.abs_path(c, &key("client_cert"))?,
                key: self.abs_path(k, &key("client_key"))?,
            }),
        };
        // TLS-only settings with a plain upstream connection.
        if let (Some(url), Some(up)) = (&ep.upstream, &r.upstream)
            && !url.tls
        {
            for (k, v) in [
                ("upstream_ca", &r.upstream_ca),
                ("client_cert", &r.client_cert),
            ] {
                if let Some(v) = v {
                    return Err(self.at(
                        v,
                        key(k),
                        format!(
                            "{k} needs a TLS upstream, but upstream {:?} (line {}) is plain http",
                            up.get_ref(),
                            line_col(self.text, up.span().start).0
                        ),
                    ));
                }
            }
        }

        if let Some(v) = &r.credential {
            let name = v.get_ref();
            if !credentials.contains_key(name) {
                let defined = if credentials.is_empty() {
                    "no [credential.NAME] tables are defined".to_string()
                } else {
                    let names: Vec<&str> = credentials.keys().map(String::as_str).collect();
                    format!("defined: {}", names.join(", "))
                };
                return Err(self.at(
                    v,
                    key("credential"),
                    format!("unknown credential {name:?} ({defined})"),
                ));
            }
            ep.credential = Some(name.clone());
        }

        if let Some(list) = &r.strip_headers {
            for (j, h) in list.get_ref().iter().enumerate() {
                let k = format!("endpoint[{i}].strip_headers[{j}]");
                let name = h.get_ref();
                if let Err(why) = check_header_name(name) {
                    return Err(self.at(h, k, format!("invalid header {name:?}: {why}")));
                }
                let lower = name.to_ascii_lowercase();
                if let Some(first) = ep.strip_headers.iter().position(|x| *x == lower) {
                    return Err(self.at(
                        h,
                        k,
                        format!("duplicate header {name:?} (already at strip_headers[{first}])"),
                    ));
                }
                ep.strip_headers.push(lower);
            }
        }

        if let Some(v) = &r.mask {
            let name = v.get_ref();
            ep.mask = if name == MASK_OFF {
                MaskChoice::Off
            } else if name == SAFE_HARBOR || masks.contains_key(name) {
                MaskChoice::Profile(name.clone())
            } else {
                let mut known = vec![SAFE_HARBOR, MASK_OFF];
                known.extend(masks.keys().map(String::as_str));
                return Err(self.at(
                    v,
                    key("mask"),
                    format!(
                        "unknown mask profile {name:?} (expected one of: {})",
                        known.join(", ")
                    ),
                ));
            };
        }
        Ok(ep)
    }

    /// `[mask.NAME]` tables: each must build its profile; a profile's own
    /// error names its key, which is found again in the file for the line.
    fn masks(
        &self,
        raw: &BTreeMap<Spanned<String>, Spanned<MaskConfig>>,
    ) -> Result<BTreeMap<String, MaskConfig>, ConfigError> {
        let mut out = BTreeMap::new();
        for (name_v, table, key) in self.named_tables(raw, "mask", "mask profile")? {
            let name = name_v.get_ref();
            if name == SAFE_HARBOR || name == MASK_OFF {
                return Err(self.at(
                    name_v,
                    key,
                    format!("{name:?} is a built-in name; give the profile its own (base = \"safe-harbor\" starts from the built-in one)"),
                ));
            }
            if let Err(e) = Profile::from_config(name, table.get_ref()) {
                let mut path = vec![Seg::Key("mask".into()), Seg::Key(name.clone())];
                path.extend(parse_dotted(&e.key));
                let span = span_of_path(self.text, &path).unwrap_or_else(|| table.span());
                // regex errors draw a caret over several lines; ours are one line
                let message: Vec<&str> = e
                    .message
                    .lines()
                    .map(str::trim)
                    .filter(|l| !l.is_empty())
                    .collect();
                return Err(self.error(Some(span), Some(render_path(&path)), message.join(" ")));
            }
            out.insert(name.clone(), table.get_ref().clone());
        }
        Ok(out)
    }

    /// The `[SECTION.NAME]` tables in file order (problems are reported in
    /// the order they are written, not by name), each with its dotted key;
    /// the first invalid name is an error.
    fn named_tables<'r, T>(
        &self,
        raw: &'r BTreeMap<Spanned<String>, Spanned<T>>,
        section: &str,
        what: &str,
    ) -> Result<Vec<NamedTable<'r, T>>, ConfigError> {
        let mut tables: Vec<_> = raw.iter().collect();
        tables.sort_by_key(|(name, _)| name.span().start);
        tables
            .into_iter()
            .map(|(name_v, table)| {
                let name = name_v.get_ref();
                let key = format!("{section}.{}", render_key(name));
                if !valid_name(name) {
                    return Err(self.at(
                        name_v,
                        key,
                        format!("invalid {what} name {name:?} (expected 1-64 characters of A-Z, a-z, 0-9, ., _ and -)"),
                    ));
                }
                Ok((name_v, table, key))
            })
            .collect()
    }

    fn credentials(
        &self,
        raw: &BTreeMap<Spanned<String>, Spanned<RawCredential>>,
    ) -> Result<BTreeMap<String, CredentialSpec>, ConfigError> {
        let mut out = BTreeMap::new();
        for (name_v, table, key) in self.named_tables(raw, "credential", "credential")? {
            let name = name_v.get_ref();
            let r = table.get_ref();
            let sub = |k: &str| format!("{key}.{k}");

            let Some(kind_v) = &r.kind else {
                return Err(self.at(
                    table,
                    key,
                    "missing key \"kind\" (expected \"bearer\" or \"header\")",
                ));
            };
            let kind = match (kind_v.get_ref().as_str(), &r.header) {
                ("bearer", None) => CredentialKind::Bearer,
                ("bearer", Some(h)) => {
                    return Err(self.at(
                        h,
                        sub("header"),
                        "header only applies to kind = \"header\" (kind = \"bearer\" sends Authorization: Bearer)",
                    ));
                }
                ("header", None) => {
                    return Err(self.at(
                        table,
                        key,
                        "missing key \"header\" (kind = \"header\" needs the header name, e.g. header = \"X-Api-Key\")",
                    ));
                }
                ("header", Some(h)) => {
                    let header = h.get_ref();
                    if let Err(why) = check_header_name(header) {
                        return Err(self.at(
                            h,
                            sub("header"),
                            format!("invalid header {header:?}: {why}"),
                        ));
                    }
                    CredentialKind::Header {
                        header: header.to_ascii_lowercase(),
                    }
                }
                (s, _) => {
                    return Err(self.at(
                        kind_v,
                        sub("kind"),
                        format!("invalid kind {s:?} (expected \"bearer\" or \"header\")"),
                    ));
                }
            };

            let Some(file_v) = &r.file else {
                return Err(self.at(table, key, "missing key \"file\""));
            };
            let file = file_v.get_ref();
            if let Err(why) = check_credential_file(file) {
                return Err(self.at(file_v, sub("file"), format!("invalid file {file:?}: {why}")));
            }

            out.insert(
                name.clone(),
                CredentialSpec {
                    name: name.clone(),
                    kind,
                    file: file.clone(),
                },
            );
        }
        Ok(out)
    }
}

/// Endpoint and credential names: `[A-Za-z0-9._-]{1,64}`.
fn valid_name(s: &str) -> bool {
    (1..=64).contains(&s.len())
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

/// A relative credential file is a systemd credential name (a plain file
/// name in `$CREDENTIALS_DIRECTORY`); otherwise an absolute path.
fn check_credential_file(f: &str) -> Result<(), String> {
    if f.is_empty() {
        return Err("empty (expected a credential name or an absolute path)".into());
    }
    if f.contains('\0') {
        return Err("contains a NUL character".into());
    }
    if f.starts_with('/') {
        if f.ends_with('/') {
            return Err("names a directory (expected a file)".into());
        }
        return Ok(());
    }
    if f.contains('/') {
        return Err(
            "a relative file must be a plain file name in $CREDENTIALS_DIRECTORY, without '/' (or use an absolute path)"
                .into(),
        );
    }
    if f == "." || f == ".." {
        return Err("not a file name".into());
    }
    Ok(())
}

// ---- HTTP header names ------------------------------------------------------

/// Hop-by-hop and message-framing headers: the agent manages these itself,
/// so they can be neither injected nor stripped by configuration.
const RESERVED_HEADERS: &[&str] = &[
    "connection",
    "content-length",
    "transfer-encoding",
    "host",
    "te",
    "upgrade",
    "keep-alive",
    "proxy-connection",
    "trailer",
];

/// An RFC 9110 token (`tchar`s) that is not a reserved header.
fn check_header_name(h: &str) -> Result<(), String> {
    let tchar = |b: u8| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b);
    if h.is_empty() {
        return Err("empty name".into());
    }
    if let Some(c) = h.chars().find(|&c| !c.is_ascii() || !tchar(c as u8)) {
        return Err(format!(
            "{c:?} is not allowed in a header name (expected letters, digits and !#$%&'*+-.^_`|~)"
        ));
    }
    if RESERVED_HEADERS.iter().any(|r| r.eq_ignore_ascii_case(h)) {
        return Err("a hop-by-hop or framing header, which the agent manages itself".into());
    }
    Ok(())
}

// ---- upstream URLs ---------------------------------------------------------

/// Parses `https://host[:port]` or `http://host[:port]`, optionally with a
/// trailing `/`.
fn parse_upstream(s: &str) -> Result<UpstreamUrl, String> {
    const FORM: &str = "expected https://host[:port] or http://host[:port]";
    let (scheme, rest) = s
        .split_once("://")
        .ok_or_else(|| format!("invalid upstream {s:?} ({FORM})"))?;
    let tls = if scheme.eq_ignore_ascii_case("https") {
        true
    } else if scheme.eq_ignore_ascii_case("http") {
        false
    } else {
        return Err(format!(
            "unsupported scheme {scheme:?} in upstream {s:?} ({FORM})"
        ));
    };
    let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(end);
    if let Some(i) = tail.find('#') {
        return Err(format!(
            "upstream {s:?} has a fragment {:?} ({FORM})",
            &tail[i..]
        ));
    }
    if let Some(i) = tail.find('?') {
        return Err(format!(
            "upstream {s:?} has a query {:?} ({FORM})",
            &tail[i..]
        ));
    }
    if !tail.is_empty() && tail != "/" {
        return Err(format!(
            "upstream {s:?} has a path {tail:?}; the agent keeps each request's own path ({FORM})"
        ));
    }
    if authority.contains('@') {
        return Err(format!(
            "upstream {s:?} has userinfo (user@); use a [credential.NAME] table for secrets ({FORM})"
        ));
    }
    let default_port = if tls { 443 } else { 80 };
    let (host, port) = if let Some(inner) = authority.strip_prefix('[') {
        let (ip, after) = inner
            .split_once(']')
            .ok_or_else(|| format!("missing ']' in upstream {s:?} ({FORM})"))?;
        let ip: Ipv6Addr = ip
            .parse()
            .map_err(|_| format!("invalid IPv6 address {ip:?} in upstream {s:?}"))?;
        let port = match after {
            "" => default_port,
            _ => match after.strip_prefix(':') {
                Some(p) => parse_port(p, s)?,
                None => return Err(format!("invalid upstream {s:?} ({FORM})")),
            },
        };
        (ip.to_string(), port)
    } else {
        let (host, port) = match authority.rsplit_once(':') {
            None => (authority, default_port),
            Some((h, _)) if h.contains(':') => {
                return Err(format!(
                    "IPv6 address in upstream {s:?} must be in brackets, e.g. https://[fd00::1]:8443"
                ));
            }
            Some((h, p)) => (h, parse_port(p, s)?),
        };
        if host.is_empty() {
            return Err(format!("missing host in upstream {s:?} ({FORM})"));
        }
        let host = match host.parse::<Ipv4Addr>() {
            Ok(ip) => ip.to_string(),
            Err(_) => normalise_hostname(host)
                .map_err(|why| format!("invalid hostname {host:?} in upstream {s:?}: {why}"))?,
        };
        (host, port)
    };
    Ok(UpstreamUrl { tls, host, port })
}

// ---- match entries ---------------------------------------------------------

/// Parses `ip:port`, `cidr:port` or `host:port` (IPv6 in brackets).
fn parse_match(s: &str) -> Result<MatchSpec, String> {
    const FORMS: &str = "expected ip:port, cidr:port or host:port, IPv6 in brackets";
    let (host, port) = if let Some(rest) = s.strip_prefix('[') {
        let (inner, after) = rest
            .split_once(']')
            .ok_or_else(|| format!("missing ']' in {s:?} ({FORMS})"))?;
        let port = after
            .strip_prefix(':')
            .ok_or_else(|| format!("missing port in {s:?} ({FORMS})"))?;
        (inner, port)
    } else {
        let (host, port) = s
            .rsplit_once(':')
            .ok_or_else(|| format!("missing port in {s:?} ({FORMS})"))?;
        if host.contains(':') {
            return Err(format!(
                "IPv6 address in {s:?} must be in brackets, e.g. [fd00::1]:443"
            ));
        }
        (host, port)
    };
    let bracketed = s.starts_with('[');
    let port = parse_port(port, s)?;

    if let Some((addr, _)) = host.split_once('/') {
        let net: IpNet = if bracketed {
            host.parse::<Ipv6Net>()
                .map(IpNet::V6)
                .map_err(|_| format!("invalid IPv6 CIDR {host:?} in {s:?}"))?
        } else {
            if addr.parse::<Ipv6Addr>().is_ok() {
                return Err(format!(
                    "IPv6 CIDR in {s:?} must be in brackets, e.g. [fd00::/64]:443"
                ));
            }
            host.parse::<Ipv4Net>()
                .map(IpNet::V4)
                .map_err(|_| format!("invalid IPv4 CIDR {host:?} in {s:?}"))?
        };
        if net.trunc() != net {
            return Err(format!(
                "CIDR {host} in {s:?} has host bits set; use the network address {}",
                net.trunc()
            ));
        }
        // A full-length prefix is a single address: normalise so duplicates are caught.
        if net.prefix_len() == net.max_prefix_len() {
            return Ok(MatchSpec::Addr(SocketAddr::new(net.addr(), port)));
        }
        return Ok(MatchSpec::Cidr { net, port });
    }
    if bracketed {
        let ip: Ipv6Addr = host
            .parse()
            .map_err(|_| format!("invalid IPv6 address {host:?} in {s:?}"))?;
        return Ok(MatchSpec::Addr(SocketAddr::new(IpAddr::V6(ip), port)));
    }
    if let Ok(ip) = host.parse::<Ipv4Addr>() {
        return Ok(MatchSpec::Addr(SocketAddr::new(IpAddr::V4(ip), port)));
    }
    let host = normalise_hostname(host)
        .map_err(|why| format!("invalid hostname {host:?} in {s:?}: {why}"))?;
    Ok(MatchSpec::Host { host, port })
}

fn parse_port(p: &str, whole: &str) -> Result<u16, String> {
    // Digits only: u16::from_str would also take "+443".
    if p.is_empty() || !p.bytes().all(|b| b.is_ascii_digit()) {
        return Err(format!(
            "invalid port {p:?} in {whole:?} (expected 1-65535)"
        ));
    }
    match p.parse::<u16>() {
        Ok(n) if n != 0 => Ok(n),
        _ => Err(format!("invalid port {p} in {whole:?} (expected 1-65535)")),
    }
}

/// RFC 1123 host name: dot-separated labels of 1-63 letters, digits and '-',
/// not starting or ending with '-', at most 253 characters. One trailing dot
/// (fully qualified form) is dropped. Lower-cased.
fn normalise_hostname(h: &str) -> Result<String, String> {
    let h = h.strip_suffix('.').unwrap_or(h);
    if h.is_empty() {
        return Err("empty name".into());
    }
    if h.len() > 253 {
        return Err("longer than 253 characters".into());
    }
    let labels: Vec<&str> = h.split('.').collect();
    for l in &labels {
        if l.is_empty() {
            return Err("empty label".into());
        }
        if l.len() > 63 {
            return Err(format!("label {l:?} is longer than 63 characters"));
        }
        if !l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-') {
            return Err(format!(
                "label {l:?} may contain only letters, digits and '-'"
            ));
        }
        if l.starts_with('-') || l.ends_with('-') {
            return Err(format!("label {l:?} must not start or end with '-'"));
        }
    }
    // An all-numeric last label means a mistyped IPv4 address (e.g. 10.0.0.256).
    if labels
        .last()
        .is_some_and(|l| l.bytes().all(|b| b.is_ascii_digit()))
    {
        return Err(
            "not a valid IPv4 address, and a host name cannot end in a numeric label".into(),
        );
    }
    Ok(h.to_ascii_lowercase())
}

// ---- spans and keys --------------------------------------------------------

/// 1-based (line, column) of a byte offset; column counted in characters.
fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let offset = offset.min(text.len());
    let before = &text[..offset];
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    (
        before.matches('\n').count() + 1,
        before[line_start..].chars().count() + 1,
    )
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Seg {
    Key(String),
    Index(usize),
}

/// A key as written in a dotted path: bare if TOML allows it, else quoted
/// (e.g. a credential named `ehr.v2` is `credential."ehr.v2"`).
fn render_key(k: &str) -> String {
    let bare = !k.is_empty()
        && k.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
    if bare {
        k.to_string()
    } else {
        format!("{k:?}")
    }
}

fn render_path(path: &[Seg]) -> String {
    let mut s = String::new();
    for seg in path {
        match seg {
            Seg::Key(k) if s.is_empty() => s.push_str(&render_key(k)),
            Seg::Key(k) => {
                s.push('.');
                s.push_str(&render_key(k));
            }
            Seg::Index(i) => s.push_str(&format!("[{i}]")),
        }
    }
    s
}

/// The key path of the key or value at byte `offset`, from a span-keeping
/// parse (recoverable, so it also works for e.g. duplicate-key errors).
fn key_path_at(text: &str, offset: usize) -> Vec<Seg> {
    let (root, _) = DeTable::parse_recoverable(text);
    let mut path = Vec::new();
    find_in_table(root.get_ref(), offset, &mut path);
    path
}

/// A dotted key as the mask profiles name theirs (`patterns[2].regex`,
/// `actions.ssn`), as path segments.
fn parse_dotted(key: &str) -> Vec<Seg> {
    let mut path = Vec::new();
    for part in key.split('.') {
        let (name, rest) = part.split_once('[').unwrap_or((part, ""));
        if !name.is_empty() {
            path.push(Seg::Key(name.to_string()));
        }
        for idx in rest.split('[') {
            if let Ok(i) = idx.trim_end_matches(']').parse() {
                path.push(Seg::Index(i));
            }
        }
    }
    path
}

/// The span of the value at `path` (or of its key when the value is a
/// table), from a span-keeping parse.
fn span_of_path(text: &str, path: &[Seg]) -> Option<Range<usize>> {
    let (root, _) = DeTable::parse_recoverable(text);
    let mut table = root.get_ref();
    let mut value: Option<&Spanned<DeValue<'_>>> = None;
    let mut key_span = None;
    for seg in path {
        value = match (seg, value.map(Spanned::get_ref)) {
            (Seg::Key(k), None) => {
                let (kv, v) = table.get_key_value(k.as_str())?;
                key_span = Some(kv.span());
                Some(v)
            }
            (Seg::Key(k), Some(DeValue::Table(t))) => {
                table = t;
                let (kv, v) = table.get_key_value(k.as_str())?;
                key_span = Some(kv.span());
                Some(v)
            }
            (Seg::Index(i), Some(DeValue::Array(a))) => Some(a.get(*i)?),
            _ => return None,
        };
    }
    let v = value?;
    match (v.get_ref(), path.last()) {
        // an [[array]] element's span is its own header
        (DeValue::Table(_), Some(Seg::Key(_))) => key_span,
        _ => Some(v.span()),
    }
}

fn contains(span: &Range<usize>, offset: usize) -> bool {
    span.start <= offset && offset < span.end
}

// Containers' spans are not reliable (an [[array]] table spans only its
// header), so search every child and trust leaf spans.
fn find_in_table(t: &DeTable<'_>, offset: usize, path: &mut Vec<Seg>) -> bool {
    for (k, v) in t.iter() {
        path.push(Seg::Key(k.get_ref().to_string()));
        if contains(&k.span(), offset) || find_in_value(v, offset, path) {
            return true;
        }
        path.pop();
    }
    false
}

fn find_in_value(v: &Spanned<DeValue<'_>>, offset: usize, path: &mut Vec<Seg>) -> bool {
    let found = match v.get_ref() {
        DeValue::Table(t) => find_in_table(t, offset, path),
        DeValue::Array(a) => a.iter().enumerate().any(|(i, e)| {
            path.push(Seg::Index(i));
            let hit = find_in_value(e, offset, path);
            if !hit {
                path.pop();
            }
            hit
        }),
        _ => false,
    };
    found || contains(&v.span(), offset)
}

/// Splits serde's "unknown field `x`, expected one of `a`, `b`" (or
/// "expected `a` or `b`", "there are no fields") into the field and the list.
fn parse_unknown_field(msg: &str) -> Option<(String, Vec<String>)> {
    let rest = msg.strip_prefix("unknown field `")?;
    let (field, rest) = rest.split_once('`')?;
    let expected = rest
        .split('`')
        .skip(1)
        .step_by(2)
        .map(str::to_string)
        .collect();
    Some((field.to_string(), expected))
}

// ---- host facts ------------------------------------------------------------

/// The first cgroup2 mount point in a /proc/<pid>/mountinfo text.
fn cgroup2_mount(mountinfo: &str) -> Option<PathBuf> {
    mountinfo.lines().find_map(|line| {
        let (pre, post) = line.split_once(" - ")?;
        if post.split(' ').next()? != "cgroup2" {
            return None;
        }
        pre.split(' ').nth(4).map(unescape_mountinfo)
    })
}

/// mountinfo escapes space, tab, newline and backslash as \ooo octal.
fn unescape_mountinfo(s: &str) -> PathBuf {
    use std::os::unix::ffi::OsStringExt;
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let octal = b.len() >= i + 4
            && (b'0'..=b'3').contains(&b[i + 1])
            && b[i + 2..i + 4].iter().all(|c| (b'0'..=b'7').contains(c));
        if b[i] == b'\\' && octal {
            out.push((b[i + 1] - b'0') * 64 + (b[i + 2] - b'0') * 8 + (b[i + 3] - b'0'));
            i += 4;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    PathBuf::from(std::ffi::OsString::from_vec(out))
}

#[cfg(test)]
mod tests {
    use super::*;

    const FULL: &str = r#"# full example
[agent]
instance = "prod-1"
listen = "127.0.0.2:16001"
listen6 = "[::1]:16002"
cgroup = "/sys/fs/cgroup/unified"
state_dir = "/var/lib/warden-test"
bpffs = "/sys/fs/bpf"
fail_mode = "open"
mark = 0x4d58
resolve_interval = "1m 30s"
drain_timeout = "0s"
connect_timeout = "500ms"
all_netns = true

[[endpoint]]
name = "ehr"
match = ["MCP.EHR.example:443", "10.20.0.0/16:8443", "10.1.2.3:80", "[fd00::1]:443", "[fd00::/64]:443"]
protocol = "mcp"
client_tls = "plain"
upstream = "HTTPS://MCP.Internal.example.:8443/"
upstream_ca = "/etc/mcp-warden/ehr-ca.pem"
client_cert = "/etc/mcp-warden/ehr-client.pem"
client_key = "/etc/mcp-warden/ehr-client.key"
credential = "ehr"
strip_headers = ["X-EHR-Session", "x-trace"]

[[endpoint]]
name = "billing.v2_x"
match = ["billing.example.:8080", "10.9.9.9/32:443", "[FD00:0:0::2/128]:443"]
protocol = "tcp"

[[endpoint]]
name = "search"
match = ["search.example:443"]
upstream = "http://[FD00::7]:8080"
credential = "billing.key"

[credential.ehr]
kind = "bearer"
file = "ehr-token"

[credential."billing.key"]
kind = "header"
header = "X-Api-Key"
file = "/run/secrets/billing"
"#;

    fn parse(text: &str) -> Result<Config, ConfigError> {
        Config::parse(text, Path::new("/etc/mcp-warden/warden.toml"))
    }

    fn err(text: &str) -> ConfigError {
        match parse(text) {
            Ok(c) => panic!("expected an error, got {c:?}"),
            Err(e) => {
                // Every error is one readable line.
                assert!(!e.to_string().contains('\n'), "multi-line error: {e}");
                e
            }
        }
    }

    /// Asserts line and key; returns the message for further checks.
    fn err_at(text: &str, line: usize, key: Option<&str>) -> String {
        let e = err(text);
        assert_eq!(
            (e.line, e.key.as_deref()),
            (Some(line), key),
            "wrong place: {e}"
        );
        e.message
    }

    fn one_match(m: &str) -> String {
        format!("[[endpoint]]\nname = \"a\"\nmatch = [{m:?}]\n")
    }

    fn ep(name: &str, matches: &[MatchSpec]) -> Endpoint {
        Endpoint::new(name, matches.to_vec())
    }

    #[test]
    fn full_config() {
        let c = parse(FULL).unwrap();
        assert_eq!(c.path, Path::new("/etc/mcp-warden/warden.toml"));
        let a = &c.agent;
        assert_eq!(a.instance, "prod-1");
        assert_eq!(a.listen, "127.0.0.2:16001".parse().unwrap());
        assert_eq!(a.listen6, Some("[::1]:16002".parse().unwrap()));
        assert_eq!(a.cgroup, Path::new("/sys/fs/cgroup/unified"));
        assert_eq!(a.state_dir, Path::new("/var/lib/warden-test"));
        assert_eq!(a.bpffs, Path::new("/sys/fs/bpf"));
        assert_eq!(a.fail_mode, FailMode::Open);
        assert_eq!(a.mark, 0x4d58);
        assert_eq!(a.resolve_interval, Duration::from_secs(90));
        assert_eq!(a.drain_timeout, Duration::ZERO);
        assert_eq!(a.connect_timeout, Duration::from_millis(500));
        assert!(a.all_netns);
        let v4 = |s: &str| s.parse::<IpNet>().unwrap();
        assert_eq!(
            c.endpoints,
            vec![
                Endpoint {
                    protocol: Protocol::Mcp,
                    client_tls: ClientTls::Plain,
                    // scheme and host lower-cased, trailing dot and "/" dropped
                    upstream: Some(UpstreamUrl {
                        tls: true,
                        host: "mcp.internal.example".into(),
                        port: 8443,
                    }),
                    upstream_ca: Some("/etc/mcp-warden/ehr-ca.pem".into()),
                    client_cert: Some(ClientCert {
                        cert: "/etc/mcp-warden/ehr-client.pem".into(),
                        key: "/etc/mcp-warden/ehr-client.key".into(),
                    }),
                    credential: Some("ehr".into()),
                    strip_headers: vec!["x-ehr-session".into(), "x-trace".into()],
                    ..ep(
                        "ehr",
                        &[
                            MatchSpec::Host {
                                host: "mcp.ehr.example".into(),
                                port: 443
                            },
                            MatchSpec::Cidr {
                                net: v4("10.20.0.0/16"),
                                port: 8443
                            },
                            MatchSpec::Addr("10.1.2.3:80".parse().unwrap()),
                            MatchSpec::Addr("[fd00::1]:443".parse().unwrap()),
                            MatchSpec::Cidr {
                                net: v4("fd00::/64"),
                                port: 443
                            },
                        ]
                    )
                },
                Endpoint {
                    protocol: Protocol::Tcp,
                    ..ep(
                        "billing.v2_x",
                        &[
                            // trailing dot dropped; /32 and /128 become plain addresses
                            MatchSpec::Host {
                                host: "billing.example".into(),
                                port: 8080
                            },
                            MatchSpec::Addr("10.9.9.9:443".parse().unwrap()),
                            MatchSpec::Addr("[fd00::2]:443".parse().unwrap()),
                        ]
                    )
                },
                Endpoint {
                    // IPv6 stored without brackets, canonical
                    upstream: Some(UpstreamUrl {
                        tls: false,
                        host: "fd00::7".into(),
                        port: 8080,
                    }),
                    credential: Some("billing.key".into()),
                    ..ep(
                        "search",
                        &[MatchSpec::Host {
                            host: "search.example".into(),
                            port: 443,
                        }]
                    )
                },
            ]
        );
        assert_eq!(
            c.credentials.values().cloned().collect::<Vec<_>>(),
            vec![
                CredentialSpec {
                    name: "billing.key".into(),
                    kind: CredentialKind::Header {
                        header: "x-api-key".into()
                    },
                    file: "/run/secrets/billing".into(),
                },
                CredentialSpec {
                    name: "ehr".into(),
                    kind: CredentialKind::Bearer,
                    file: "ehr-token".into(),
                },
            ]
        );
        assert_eq!(
            c.endpoints[0].upstream.as_ref().unwrap().to_string(),
            "https://mcp.internal.example:8443"
        );
        assert_eq!(c.pin_dir(), Path::new("/sys/fs/bpf/mcp-warden/prod-1"));
        assert_eq!(c.audit_dir(), Path::new("/var/lib/warden-test/audit"));
    }

    #[test]
    fn defaults() {
        for text in ["", "[agent]\n", "# nothing\n\n"] {
            let c = parse(text).unwrap();
            let a = &c.agent;
            assert_eq!(a.instance, "default");
            assert_eq!(a.listen, SocketAddrV4::new(Ipv4Addr::LOCALHOST, 15001));
            assert_eq!(
                a.listen6,
                Some(SocketAddrV6::new(Ipv6Addr::LOCALHOST, 15001, 0, 0))
            );
            let expected_cgroup = std::fs::read_to_string("/proc/self/mountinfo")
                .ok()
                .and_then(|m| cgroup2_mount(&m))
                .unwrap_or_else(|| PathBuf::from(FALLBACK_CGROUP));
            assert_eq!(a.cgroup, expected_cgroup);
            assert_eq!(a.state_dir, Path::new("/var/lib/mcp-warden"));
            assert_eq!(a.bpffs, Path::new("/sys/fs/bpf"));
            assert_eq!(a.fail_mode, FailMode::Closed);
            assert_eq!(a.mark, 0x4d57);
            assert_eq!(a.resolve_interval, Duration::from_secs(30));
            assert_eq!(a.drain_timeout, Duration::from_secs(10));
            assert_eq!(a.connect_timeout, Duration::from_secs(10));
            assert!(!a.all_netns);
            assert!(c.endpoints.is_empty());
            assert!(c.credentials.is_empty());
            assert_eq!(c.pin_dir(), Path::new("/sys/fs/bpf/mcp-warden/default"));
            assert_eq!(c.audit_dir(), Path::new("/var/lib/mcp-warden/audit"));
        }
    }

    #[test]
    fn listen6_defaults_to_listen_port_and_can_be_off() {
        let c = parse("[agent]\nlisten = \"127.0.0.1:9999\"\n").unwrap();
        assert_eq!(c.agent.listen6, Some("[::1]:9999".parse().unwrap()));
        let c = parse("[agent]\nlisten6 = \"off\"\n").unwrap();
        assert_eq!(c.agent.listen6, None);
    }

    #[test]
    fn dotted_keys_and_inline_tables_are_plain_toml() {
        let c = parse("agent.mark = 7\nendpoint = [{ name = \"x\", match = [\"h.example:1\"] }]\n")
            .unwrap();
        assert_eq!(c.agent.mark, 7);
        assert_eq!(
            c.endpoints,
            vec![ep(
                "x",
                &[MatchSpec::Host {
                    host: "h.example".into(),
                    port: 1
                }]
            )]
        );
        // and errors inside them still get their key
        let m = err_at(
            "endpoint = [{ name = \"x\", match = [\"h.example:0\"] }]\n",
            1,
            Some("endpoint[0].match[0]"),
        );
        assert!(m.starts_with("invalid port 0"), "{m}");
    }

    #[test]
    fn error_display_format() {
        let text = "[[endpoint]]\nname = \"a\"\nmatch = [\"h.example:1\"]\n\n[[endpoint]]\nname = \"b\"\nmatch = [\"10.0.0.1:99999\"]\n";
        let e = err(text);
        assert_eq!(
            e.to_string(),
            "/etc/mcp-warden/warden.toml:7:10: endpoint[1].match[0]: invalid port 99999 in \"10.0.0.1:99999\" (expected 1-65535)"
        );
        let e = ConfigError {
            file: "/x.toml".into(),
            line: None,
            col: None,
            key: None,
            message: "boom".into(),
        };
        assert_eq!(e.to_string(), "/x.toml: boom");
        let e = ConfigError {
            file: "/x.toml".into(),
            line: Some(3),
            col: None,
            key: Some("agent".into()),
            message: "m".into(),
        };
        assert_eq!(e.to_string(), "/x.toml:3: agent: m");
    }

    #[test]
    fn syntax_error() {
        let e = err("[agent]\nlisten = \"127.0.0.1:1\"\nmark = \n");
        assert_eq!(e.line, Some(3), "{e}");
        assert!(
            !e.message.contains('|') && !e.message.contains("TOML parse error"),
            "{e}"
        );
        let e = err("[agent\n");
        assert_eq!(
            (e.line, e.col, e.key.as_deref()),
            (Some(1), Some(7), None),
            "{e}"
        );
        assert!(e.message.contains("unclosed table"), "{e}");
    }

    #[test]
    fn duplicate_toml_key() {
        let m = err_at(
            "[agent]\nlisten = \"127.0.0.1:1\"\nlisten = \"127.0.0.1:2\"\n",
            3,
            None,
        );
        assert_eq!(m, "duplicate key \"listen\"");
        let m = err_at("[agent]\nmark = 1\n[agent]\n", 3, None);
        assert_eq!(m, "duplicate key \"agent\"");
        let m = err_at("[agent.x]\ny = 1\n[agent.x]\n", 3, Some("agent"));
        assert_eq!(m, "duplicate key \"x\"");
    }

    #[test]
    fn unknown_key_top_level() {
        let e = err("[agent]\n\nfoo = 1\n");
        // foo is in [agent] here; a truly top-level one:
        assert_eq!(e.key.as_deref(), Some("agent"), "{e}");
        let e = err("foo = 1\n[agent]\n");
        assert_eq!(
            (e.line, e.col, e.key.as_deref()),
            (Some(1), Some(1), None),
            "{e}"
        );
        assert_eq!(
            e.message,
            "unknown top-level key \"foo\" (expected one of: agent, audit, endpoint, credential, mask)"
        );
        let m = err_at("[agnet]\n", 1, None);
        assert!(m.starts_with("unknown top-level key \"agnet\""), "{m}");
    }

    #[test]
    fn unknown_key_in_agent() {
        let e = err("[agent]\ninstance = \"a\"\nlisen = \"127.0.0.1:1\"\n");
        assert_eq!(
            (e.line, e.col, e.key.as_deref()),
            (Some(3), Some(1), Some("agent")),
            "{e}"
        );
        assert_eq!(
            e.message,
            "unknown key \"lisen\" (expected one of: instance, listen, listen6, cgroup, state_dir, bpffs, fail_mode, \
             mark, resolve_interval, drain_timeout, connect_timeout, all_netns)"
        );
    }

    #[test]
    fn unknown_key_in_endpoint() {
        let text = "[[endpoint]]\nname = \"a\"\nmatch = [\"h.example:1\"]\n[[endpoint]]\nname = \"b\"\nmatchs = [\"x:1\"]\n";
        let m = err_at(text, 6, Some("endpoint[1]"));
        assert_eq!(
            m,
            "unknown key \"matchs\" (expected one of: name, match, protocol, client_tls, upstream, \
             upstream_ca, client_cert, client_key, credential, strip_headers, mask)"
        );
    }

    #[test]
    fn wrong_types() {
        let m = err_at("[agent]\nlisten = 5\n", 2, Some("agent.listen"));
        assert!(
            m.contains("invalid type: integer `5`, expected a string"),
            "{m}"
        );
        let e = err("[agent]\nlisten = 5\n");
        assert_eq!(e.col, Some(10));
        let m = err_at("[agent]\nall_netns = \"yes\"\n", 2, Some("agent.all_netns"));
        assert!(m.contains("expected a boolean"), "{m}");
        let m = err_at("agent = 5\n", 1, Some("agent"));
        assert!(m.contains("expected a table"), "{m}");
        let m = err_at("\n[endpoint]\nname = \"a\"\n", 2, Some("endpoint"));
        assert!(m.contains("[[endpoint]]"), "{m}");
        let m = err_at(
            "[[endpoint]]\nname = \"a\"\nmatch = [\"h.example:1\", 443]\n",
            3,
            Some("endpoint[0].match[1]"),
        );
        assert!(m.contains("invalid type: integer `443`"), "{m}");
        let m = err_at(
            "[[endpoint]]\nname = \"a\"\nmatch = \"h.example:1\"\n",
            3,
            Some("endpoint[0].match"),
        );
        assert!(m.contains("expected a sequence"), "{m}");
    }

    #[test]
    fn bad_listen_addresses() {
        for (v, needle) in [
            (
                "localhost:15001",
                "invalid IPv4 socket address \"localhost:15001\"",
            ),
            ("127.0.0.1", "invalid IPv4 socket address"),
            ("[::1]:15001", "IPv6 goes in agent.listen6"),
            ("0.0.0.0:15001", "must not be unspecified"),
            ("127.0.0.1:0", "port must not be 0"),
            ("127.0.0.1:70000", "invalid IPv4 socket address"),
        ] {
            let m = err_at(
                &format!("[agent]\n\nlisten = {v:?}\n"),
                3,
                Some("agent.listen"),
            );
            assert!(m.contains(needle), "{v}: {m}");
        }
        for (v, needle) in [
            ("::1:15001", "invalid IPv6 socket address"),
            ("127.0.0.1:15001", "invalid IPv6 socket address"),
            ("[::]:15001", "must not be unspecified"),
            ("[::1]:0", "port must not be 0"),
            ("OFF", "invalid IPv6 socket address"),
        ] {
            let m = err_at(
                &format!("[agent]\nlisten6 = {v:?}\n"),
                2,
                Some("agent.listen6"),
            );
            assert!(m.contains(needle), "{v}: {m}");
        }
    }

    #[test]
    fn bad_match_addresses() {
        for (m, needle) in [
            ("10.0.0.1", "missing port"),
            ("[fd00::1]", "missing port"),
            ("[fd00::1:443", "missing ']'"),
            ("fd00::1:443", "must be in brackets"),
            ("fd00::/64:443", "must be in brackets"),
            ("[10.0.0.1]:443", "invalid IPv6 address \"10.0.0.1\""),
            ("[10.0.0.0/8]:443", "invalid IPv6 CIDR"),
            ("[fe80::1%eth0]:443", "invalid IPv6 address"),
            ("10.0.0.0/33:443", "invalid IPv4 CIDR"),
            ("10.0.0.256:443", "not a valid IPv4 address"),
            ("1.2.3:443", "not a valid IPv4 address"),
        ] {
            let msg = err_at(&one_match(m), 3, Some("endpoint[0].match[0]"));
            assert!(msg.contains(needle), "{m}: {msg}");
        }
    }

    #[test]
    fn bad_ports() {
        for (m, msg) in [
            (
                "10.0.0.1:99999",
                "invalid port 99999 in \"10.0.0.1:99999\" (expected 1-65535)",
            ),
            (
                "h.example:0",
                "invalid port 0 in \"h.example:0\" (expected 1-65535)",
            ),
            (
                "[fd00::1]:65536",
                "invalid port 65536 in \"[fd00::1]:65536\" (expected 1-65535)",
            ),
            (
                "10.0.0.0/8:https",
                "invalid port \"https\" in \"10.0.0.0/8:https\" (expected 1-65535)",
            ),
            (
                "h.example:+443",
                "invalid port \"+443\" in \"h.example:+443\" (expected 1-65535)",
            ),
            (
                "h.example:",
                "invalid port \"\" in \"h.example:\" (expected 1-65535)",
            ),
        ] {
            assert_eq!(err_at(&one_match(m), 3, Some("endpoint[0].match[0]")), msg);
        }
        // the highest port is fine
        assert!(parse(&one_match("h.example:65535")).is_ok());
    }

    #[test]
    fn cidr_with_host_bits() {
        let m = err_at(
            &one_match("10.20.1.0/16:443"),
            3,
            Some("endpoint[0].match[0]"),
        );
        assert_eq!(
            m,
            "CIDR 10.20.1.0/16 in \"10.20.1.0/16:443\" has host bits set; use the network address 10.20.0.0/16"
        );
        let m = err_at(
            &one_match("[fd00::1/64]:443"),
            3,
            Some("endpoint[0].match[0]"),
        );
        assert!(m.ends_with("use the network address fd00::/64"), "{m}");
    }

    #[test]
    fn bad_hostnames() {
        let long_label = "a".repeat(64);
        let long_name = format!("{}.example", ["abcdefghi"; 25].join("."));
        for (h, needle) in [
            (
                "mcp_ehr.example",
                "label \"mcp_ehr\" may contain only letters, digits and '-'",
            ),
            ("-bad.example", "must not start or end with '-'"),
            ("bad-.example", "must not start or end with '-'"),
            ("a..example", "empty label"),
            (".example", "empty label"),
            (long_label.as_str(), "longer than 63"),
            (long_name.as_str(), "longer than 253"),
            ("mcp.exämple", "may contain only"),
            ("host name", "may contain only"),
        ] {
            let m = err_at(
                &one_match(&format!("{h}:443")),
                3,
                Some("endpoint[0].match[0]"),
            );
            assert!(
                m.starts_with("invalid hostname") && m.contains(needle),
                "{h}: {m}"
            );
        }
        // single-label and digit-leading labels are fine in RFC 1123
        let c = parse(&one_match("Localhost:8080")).unwrap();
        assert_eq!(
            c.endpoints[0].matches,
            vec![MatchSpec::Host {
                host: "localhost".into(),
                port: 8080
            }]
        );
        assert!(parse(&one_match("3com.example:80")).is_ok());
    }

    #[test]
    fn match_display_is_canonical() {
        for (input, canon) in [
            ("MCP.Example:443", "mcp.example:443"),
            ("mcp.example.:443", "mcp.example:443"),
            ("10.1.2.3:80", "10.1.2.3:80"),
            ("10.1.2.3/32:80", "10.1.2.3:80"),
            ("10.20.0.0/16:8443", "10.20.0.0/16:8443"),
            ("[FD00:0:0:0::1]:443", "[fd00::1]:443"),
            ("[fd00:0::/64]:443", "[fd00::/64]:443"),
            ("[::ffff:10.0.0.1]:443", "[::ffff:10.0.0.1]:443"),
        ] {
            let spec: MatchSpec = input.parse().unwrap();
            assert_eq!(spec.to_string(), canon);
            // and the canonical form parses back to the same thing
            assert_eq!(canon.parse::<MatchSpec>().unwrap(), spec);
        }
    }

    #[test]
    fn duplicate_names() {
        let text = "[[endpoint]]\nname = \"ehr\"\nmatch = [\"a.example:1\"]\n\n[[endpoint]]\nname = \"ehr\"\nmatch = [\"b.example:1\"]\n";
        let m = err_at(text, 6, Some("endpoint[1].name"));
        assert_eq!(
            m,
            "duplicate endpoint name \"ehr\" (first used at endpoint[0].name, line 2)"
        );
        // names are case-sensitive
        assert!(parse(&text.replacen("\"ehr\"", "\"EHR\"", 1)).is_ok());
    }

    #[test]
    fn duplicate_match_across_endpoints() {
        let text = "[[endpoint]]\nname = \"a\"\nmatch = [\"x.example:1\", \"10.1.2.3:80\"]\n\n[[endpoint]]\nname = \"b\"\nmatch = [\"y.example:1\",\n  \"10.1.2.3/32:80\"]\n";
        let e = err(text);
        assert_eq!(
            (e.line, e.col, e.key.as_deref()),
            (Some(8), Some(3), Some("endpoint[1].match[1]")),
            "{e}"
        );
        assert_eq!(
            e.message,
            "duplicate match \"10.1.2.3/32:80\" (as 10.1.2.3:80): already listed at endpoint[0].match[1] (endpoint \"a\"), line 3"
        );
    }

    #[test]
    fn duplicate_match_within_endpoint() {
        let text = "[[endpoint]]\nname = \"a\"\nmatch = [\n  \"[fd00::1]:443\",\n  \"MCP.example:443\",\n  \"mcp.example:443\",\n]\n";
        let m = err_at(text, 6, Some("endpoint[0].match[2]"));
        assert_eq!(
            m,
            "duplicate match \"mcp.example:443\": already listed at endpoint[0].match[1] (endpoint \"a\"), line 5"
        );
        let text = "[[endpoint]]\nname = \"a\"\nmatch = [\"[fd00::1]:443\", \"[FD00:0::1]:443\"]\n";
        let m = err_at(text, 3, Some("endpoint[0].match[1]"));
        assert!(m.contains("(as [fd00::1]:443)"), "{m}");
        // same address, different port: not a duplicate
        assert!(
            parse("[[endpoint]]\nname = \"a\"\nmatch = [\"10.0.0.1:1\", \"10.0.0.1:2\"]\n").is_ok()
        );
    }

    #[test]
    fn empty_or_missing_match_and_name() {
        let m = err_at(
            "[[endpoint]]\nname = \"a\"\nmatch = []\n",
            3,
            Some("endpoint[0].match"),
        );
        assert!(m.starts_with("empty match list"), "{m}");
        let m = err_at(
            "[[endpoint]]\nname = \"a\"\nmatch = [\"h.example:1\"]\n\n[[endpoint]]\nname = \"b\"\n",
            5,
            Some("endpoint[1]"),
        );
        assert!(m.starts_with("missing key \"match\""), "{m}");
        let m = err_at(
            "[[endpoint]]\nmatch = [\"h.example:1\"]\n",
            1,
            Some("endpoint[0]"),
        );
        assert_eq!(m, "missing key \"name\"");
    }

    #[test]
    fn bad_endpoint_names() {
        for name in ["", "a b", "ehr/1", "é", &"n".repeat(65)] {
            let text = format!("[[endpoint]]\nname = {name:?}\nmatch = [\"h.example:1\"]\n");
            let m = err_at(&text, 2, Some("endpoint[0].name"));
            assert!(m.starts_with("invalid endpoint name"), "{name}: {m}");
        }
        assert!(
            parse(&format!(
                "[[endpoint]]\nname = {:?}\nmatch = [\"h.example:1\"]\n",
                "N".repeat(64)
            ))
            .is_ok()
        );
    }

    /// An endpoint "a" with `extra` from line 4 on.
    fn l7(extra: &str) -> String {
        format!("[[endpoint]]\nname = \"a\"\nmatch = [\"h.example:443\"]\n{extra}")
    }

    #[test]
    fn l7_defaults() {
        let c = parse(&one_match("h.example:443")).unwrap();
        let e = &c.endpoints[0];
        assert_eq!(*e, Endpoint::new("a", e.matches.clone()));
        assert_eq!(
            (e.protocol, e.client_tls),
            (Protocol::Mcp, ClientTls::Terminate)
        );
        assert_eq!(
            (&e.upstream, &e.upstream_ca, &e.client_cert, &e.credential),
            (&None, &None, &None, &None)
        );
        assert!(e.strip_headers.is_empty());
        assert!(c.credentials.is_empty());
        assert_eq!(
            (Protocol::Tcp.to_string(), ClientTls::Plain.to_string()),
            ("tcp".into(), "plain".into())
        );
    }

    #[test]
    fn bad_protocol_and_client_tls() {
        let m = err_at(
            &l7("protocol = \"http\"\n"),
            4,
            Some("endpoint[0].protocol"),
        );
        assert_eq!(m, "invalid protocol \"http\" (expected \"mcp\" or \"tcp\")");
        let m = err_at(
            &l7("client_tls = \"none\"\n"),
            4,
            Some("endpoint[0].client_tls"),
        );
        assert_eq!(
            m,
            "invalid client_tls \"none\" (expected \"terminate\" or \"plain\")"
        );
        let m = err_at(&l7("protocol = \"MCP\"\n"), 4, Some("endpoint[0].protocol"));
        assert!(m.starts_with("invalid protocol"), "{m}");
    }

    #[test]
    fn tcp_refuses_l7_keys() {
        for (key, value) in [
            ("client_tls", "\"plain\""),
            ("upstream", "\"https://u.example\""),
            ("upstream_ca", "\"/ca.pem\""),
            ("client_cert", "\"/c.pem\""),
            ("client_key", "\"/c.key\""),
            ("credential", "\"x\""),
            ("strip_headers", "[\"x-a\"]"),
        ] {
            let text = l7(&format!("protocol = \"tcp\"\n{key} = {value}\n"));
            let m = err_at(&text, 5, Some(&format!("endpoint[0].{key}")));
            assert_eq!(
                m,
                format!(
                    "{key} only applies to protocol = \"mcp\" (a \"tcp\" endpoint's bytes are relayed unchanged)"
                )
            );
        }
        // the first one in the file is reported, whatever the order
        let text = l7("strip_headers = [\"x-a\"]\nprotocol = \"tcp\"\nclient_tls = \"plain\"\n");
        err_at(&text, 4, Some("endpoint[0].strip_headers"));
        // and a tcp endpoint on its own is fine
        let c = parse(&l7("protocol = \"tcp\"\n")).unwrap();
        assert_eq!(c.endpoints[0].protocol, Protocol::Tcp);
    }

    #[test]
    fn upstream_urls() {
        for (input, tls, host, port, authority) in [
            ("https://u.example", true, "u.example", 443, "u.example"),
            (
                "https://U.Example.:443/",
                true,
                "u.example",
                443,
                "u.example",
            ),
            ("HTTP://u.example", false, "u.example", 80, "u.example"),
            (
                "http://u.example:443",
                false,
                "u.example",
                443,
                "u.example:443",
            ),
            (
                "https://10.0.0.1:8443",
                true,
                "10.0.0.1",
                8443,
                "10.0.0.1:8443",
            ),
            ("https://[FD00:0::1]", true, "fd00::1", 443, "[fd00::1]"),
            (
                "http://[fd00::1]:8080/",
                false,
                "fd00::1",
                8080,
                "[fd00::1]:8080",
            ),
            ("https://localhost:1", true, "localhost", 1, "localhost:1"),
        ] {
            let u = parse(&l7(&format!("upstream = {input:?}\n")))
                .unwrap_or_else(|e| panic!("{input}: {e}"))
                .endpoints[0]
                .upstream
                .clone()
                .unwrap();
            assert_eq!(
                u,
                UpstreamUrl {
                    tls,
                    host: host.into(),
                    port
                },
                "{input}"
            );
            assert_eq!(u.authority(), authority, "{input}");
            // Display is canonical and parses back
            assert_eq!(u.to_string().parse::<UpstreamUrl>().unwrap(), u);
        }
    }

    #[test]
    fn bad_upstream_urls() {
        for (input, needle) in [
            (
                "u.example:443",
                "expected https://host[:port] or http://host[:port]",
            ),
            ("ftp://u.example", "unsupported scheme \"ftp\""),
            ("https://u.example/mcp", "has a path \"/mcp\""),
            ("https://u.example//", "has a path \"//\""),
            ("https://u.example/?a=1", "has a query \"?a=1\""),
            ("https://u.example?a=1", "has a query"),
            ("https://u.example#top", "has a fragment \"#top\""),
            ("https://user:pw@u.example", "has userinfo"),
            ("https://", "missing host"),
            ("https://:443", "missing host"),
            ("https://u.example:0", "invalid port 0"),
            ("https://u.example:", "invalid port \"\""),
            ("https://u.example:99999", "invalid port 99999"),
            ("https://fd00::1", "must be in brackets"),
            ("https://[fd00::1", "missing ']'"),
            ("https://[fd00::1]x", "expected https://host[:port]"),
            ("https://[10.0.0.1]", "invalid IPv6 address"),
            ("https://u_x.example", "invalid hostname \"u_x.example\""),
            ("https://10.0.0.256", "not a valid IPv4 address"),
        ] {
            let m = err_at(
                &l7(&format!("upstream = {input:?}\n")),
                4,
                Some("endpoint[0].upstream"),
            );
            assert!(m.contains(needle), "{input}: {m}");
        }
    }

    #[test]
    fn plain_upstream_refuses_tls_settings() {
        let m = err_at(
            &l7("upstream = \"http://u.example\"\nupstream_ca = \"/ca.pem\"\n"),
            5,
            Some("endpoint[0].upstream_ca"),
        );
        assert_eq!(
            m,
            "upstream_ca needs a TLS upstream, but upstream \"http://u.example\" (line 4) is plain http"
        );
        let m = err_at(
            &l7(
                "client_cert = \"/c.pem\"\nclient_key = \"/c.key\"\nupstream = \"http://u.example\"\n",
            ),
            4,
            Some("endpoint[0].client_cert"),
        );
        assert!(m.starts_with("client_cert needs a TLS upstream"), "{m}");
        // with the default upstream (the original destination, over TLS) both are fine
        let c = parse(&l7(
            "upstream_ca = \"/ca.pem\"\nclient_cert = \"/c.pem\"\nclient_key = \"/c.key\"\n",
        ))
        .unwrap();
        assert_eq!(c.endpoints[0].upstream_ca, Some(PathBuf::from("/ca.pem")));
    }

    #[test]
    fn client_cert_and_key_go_together() {
        let m = err_at(
            &l7("client_cert = \"/c.pem\"\n"),
            4,
            Some("endpoint[0].client_cert"),
        );
        assert_eq!(
            m,
            "missing client_key (client_cert and client_key go together)"
        );
        let m = err_at(
            &l7("client_key = \"/c.key\"\n"),
            4,
            Some("endpoint[0].client_key"),
        );
        assert_eq!(
            m,
            "missing client_cert (client_cert and client_key go together)"
        );
    }

    #[test]
    fn l7_paths_are_absolute() {
        for (extra, key, line) in [
            ("upstream_ca = \"ca.pem\"\n", "upstream_ca", 4),
            (
                "client_cert = \"c.pem\"\nclient_key = \"/c.key\"\n",
                "client_cert",
                4,
            ),
            (
                "client_cert = \"/c.pem\"\nclient_key = \"c.key\"\n",
                "client_key",
                5,
            ),
        ] {
            let m = err_at(&l7(extra), line, Some(&format!("endpoint[0].{key}")));
            assert!(m.ends_with("is not an absolute path"), "{m}");
        }
    }

    #[test]
    fn mask_profiles_and_endpoint_choice() {
        let text = format!(
            "{}\n[mask.strict]\ndisable = [\"url\"]\n[mask.strict.actions]\nssn = \"partial:4\"\n[[mask.strict.patterns]]\nname = \"acme-mrn\"\nregex = 'ACME-\\d{{7}}'\nentity = \"mrn\"\n",
            l7("mask = \"strict\"\n")
        );
        let c = parse(&text).unwrap();
        assert_eq!(c.endpoints[0].mask, MaskChoice::Profile("strict".into()));
        assert_eq!(c.masks["strict"].disable, ["url"]);
        // the default is the built-in profile; "off" turns masking off
        assert_eq!(
            parse(&l7("")).unwrap().endpoints[0].mask,
            MaskChoice::Profile("safe-harbor".into())
        );
        assert_eq!(
            parse(&l7("mask = \"off\"\n")).unwrap().endpoints[0].mask,
            MaskChoice::Off
        );
        let out = toml::to_string(&c).unwrap();
        assert_eq!(parse(&out).unwrap(), c, "{out}");
    }

    #[test]
    fn mask_errors_name_file_line_and_key() {
        let m = err_at(&l7("mask = \"hipaa\"\n"), 4, Some("endpoint[0].mask"));
        assert_eq!(
            m,
            "unknown mask profile \"hipaa\" (expected one of: safe-harbor, off)"
        );
        let text = format!("{}\n[mask.a]\ndisable = [\"url\", \"bogus\"]\n", l7(""));
        let m = err_at(&text, 6, Some("mask.a.disable[1]"));
        assert_eq!(m, "unknown entity \"bogus\"");
        let text = format!(
            "{}\n[mask.a.actions]\nname = \"tag\"\nssn = \"shred\"\n",
            l7("")
        );
        let m = err_at(&text, 7, Some("mask.a.actions.ssn"));
        assert!(m.contains("shred"), "{m}");
        let text = format!(
            "{}\n[[mask.a.patterns]]\nname = \"ok\"\nregex = \"x\"\n[[mask.a.patterns]]\nname = \"bad\"\nregex = \"(\"\n",
            l7("")
        );
        let m = err_at(&text, 8, Some("mask.a.patterns[1]"));
        assert!(m.contains("unclosed group"), "{m}");
        let m = err_at(
            &format!("{}\n[mask.a]\nbogus = 1\n", l7("")),
            6,
            Some("mask.a"),
        );
        assert!(m.starts_with("unknown key \"bogus\""), "{m}");
        let m = err_at(
            &format!("{}\n[mask.safe-harbor]\n", l7("")),
            5,
            Some("mask.safe-harbor"),
        );
        assert!(m.contains("built-in"), "{m}");
        let m = err_at(
            "[[endpoint]]\nname = \"a\"\nmatch = [\"h.example:443\"]\nprotocol = \"tcp\"\nmask = \"off\"\n",
            5,
            Some("endpoint[0].mask"),
        );
        assert!(m.contains("only applies to protocol = \"mcp\""), "{m}");
    }

    #[test]
    fn unknown_credential_reference() {
        let text = format!(
            "{}\n[credential.b]\nkind = \"bearer\"\nfile = \"b\"\n\n[credential.a]\nkind = \"bearer\"\nfile = \"a\"\n",
            l7("credential = \"c\"\n")
        );
        let m = err_at(&text, 4, Some("endpoint[0].credential"));
        assert_eq!(m, "unknown credential \"c\" (defined: a, b)");
        let m = err_at(
            &l7("credential = \"a\"\n"),
            4,
            Some("endpoint[0].credential"),
        );
        assert_eq!(
            m,
            "unknown credential \"a\" (no [credential.NAME] tables are defined)"
        );
    }

    #[test]
    fn bad_credential_names() {
        for name in ["", "a b", "a/b", "é", &"n".repeat(65)] {
            let text = format!("[credential.{name:?}]\nkind = \"bearer\"\nfile = \"f\"\n");
            let e = err(&text);
            assert_eq!(e.line, Some(1), "{e}");
            assert_eq!(
                e.key,
                Some(format!("credential.{}", render_key(name))),
                "{e}"
            );
            assert!(
                e.message.starts_with("invalid credential name"),
                "{name}: {e}"
            );
        }
        assert_eq!(render_key("a b"), "\"a b\"");
        let c = parse("[credential.\"Ehr.v2_x-1\"]\nkind = \"bearer\"\nfile = \"f\"\n").unwrap();
        assert_eq!(c.credentials["Ehr.v2_x-1"].name, "Ehr.v2_x-1");
    }

    #[test]
    fn credential_kind_and_header() {
        let m = err_at(
            "[credential.x]\nkind = \"basic\"\nfile = \"f\"\n",
            2,
            Some("credential.x.kind"),
        );
        assert_eq!(
            m,
            "invalid kind \"basic\" (expected \"bearer\" or \"header\")"
        );
        let m = err_at("[credential.x]\nfile = \"f\"\n", 1, Some("credential.x"));
        assert_eq!(
            m,
            "missing key \"kind\" (expected \"bearer\" or \"header\")"
        );
        let m = err_at(
            "[credential.x]\nkind = \"bearer\"\nheader = \"X-Api-Key\"\nfile = \"f\"\n",
            3,
            Some("credential.x.header"),
        );
        assert!(
            m.starts_with("header only applies to kind = \"header\""),
            "{m}"
        );
        let m = err_at(
            "[credential.x]\nkind = \"header\"\nfile = \"f\"\n",
            1,
            Some("credential.x"),
        );
        assert!(m.starts_with("missing key \"header\""), "{m}");
        for (h, needle) in [
            ("X Api", "' ' is not allowed in a header name"),
            ("X-Api:", "':' is not allowed"),
            ("", "empty name"),
            ("Content-Length", "hop-by-hop or framing header"),
            ("host", "hop-by-hop or framing header"),
            ("Transfer-Encoding", "hop-by-hop or framing header"),
            ("te", "hop-by-hop or framing header"),
            ("Proxy-Connection", "hop-by-hop or framing header"),
        ] {
            let m = err_at(
                &format!("[credential.x]\nkind = \"header\"\nheader = {h:?}\nfile = \"f\"\n"),
                3,
                Some("credential.x.header"),
            );
            assert!(
                m.starts_with(&format!("invalid header {h:?}")) && m.contains(needle),
                "{h}: {m}"
            );
        }
    }

    #[test]
    fn credential_files() {
        for (f, needle) in [
            ("", "empty"),
            ("secrets/ehr", "plain file name in $CREDENTIALS_DIRECTORY"),
            ("./ehr", "without '/'"),
            (".", "not a file name"),
            ("..", "not a file name"),
            ("/run/secrets/", "names a directory"),
        ] {
            let m = err_at(
                &format!("[credential.x]\nkind = \"bearer\"\n\nfile = {f:?}\n"),
                4,
                Some("credential.x.file"),
            );
            assert!(
                m.starts_with(&format!("invalid file {f:?}")) && m.contains(needle),
                "{f}: {m}"
            );
        }
        let m = err_at(
            "[credential.x]\nkind = \"bearer\"\n",
            1,
            Some("credential.x"),
        );
        assert_eq!(m, "missing key \"file\"");
        // nothing is read: a file that does not exist is fine here
        for f in ["ehr-token", "/nonexistent/ehr-token", ".hidden"] {
            let c = parse(&format!(
                "[credential.x]\nkind = \"bearer\"\nfile = {f:?}\n"
            ))
            .unwrap();
            assert_eq!(c.credentials["x"].file, f);
        }
    }

    #[test]
    fn unknown_key_in_credential() {
        let e = err("[credential.ehr]\nkind = \"bearer\"\nfile = \"f\"\nheadr = \"x\"\n");
        assert_eq!(
            (e.line, e.col, e.key.as_deref()),
            (Some(4), Some(1), Some("credential.ehr")),
            "{e}"
        );
        assert_eq!(
            e.message,
            "unknown key \"headr\" (expected one of: kind, header, file)"
        );
        let e = err("[credential.\"ehr.v2\"]\ntoken = \"x\"\n");
        assert_eq!(e.key.as_deref(), Some("credential.\"ehr.v2\""), "{e}");
        let m = err_at("[[credential]]\nkind = \"bearer\"\n", 1, Some("credential"));
        assert!(m.contains("[credential.NAME]"), "{m}");
        let m = err_at("credential = \"ehr\"\n", 1, Some("credential"));
        assert!(m.contains("[credential.NAME]"), "{m}");
        let m = err_at("[credential]\nehr = \"token\"\n", 2, Some("credential.ehr"));
        assert!(m.contains("expected a table"), "{m}");
        let m = err_at("[credential.x]\nkind = 1\n", 2, Some("credential.x.kind"));
        assert!(m.contains("expected a string"), "{m}");
    }

    #[test]
    fn strip_headers() {
        let c = parse(&l7(
            "strip_headers = [\"X-Session\", \"x-trace-id\", \"x_weird!\"]\n",
        ))
        .unwrap();
        assert_eq!(
            c.endpoints[0].strip_headers,
            vec!["x-session", "x-trace-id", "x_weird!"]
        );
        for (h, needle) in [
            ("x session", "' ' is not allowed"),
            ("x-a\u{e9}", "'\u{e9}' is not allowed"),
            ("", "empty name"),
            ("Connection", "hop-by-hop or framing header"),
        ] {
            let m = err_at(
                &l7(&format!("strip_headers = [\"x-ok\", {h:?}]\n")),
                4,
                Some("endpoint[0].strip_headers[1]"),
            );
            assert!(
                m.starts_with(&format!("invalid header {h:?}")) && m.contains(needle),
                "{h}: {m}"
            );
        }
        let m = err_at(
            &l7("strip_headers = [\"X-A\", \"x-b\", \"x-a\"]\n"),
            4,
            Some("endpoint[0].strip_headers[2]"),
        );
        assert_eq!(m, "duplicate header \"x-a\" (already at strip_headers[0])");
        let m = err_at(
            &l7("strip_headers = \"x-a\"\n"),
            4,
            Some("endpoint[0].strip_headers"),
        );
        assert!(m.contains("expected a sequence"), "{m}");
    }

    #[test]
    fn mark_range() {
        for v in ["0", "-1", "4294967296", "99999999999999999999"] {
            let m = err_at(&format!("[agent]\nmark = {v}\n"), 2, Some("agent.mark"));
            assert_eq!(m, format!("mark {v} out of range (expected 1-4294967295)"));
        }
        assert_eq!(
            parse("[agent]\nmark = 4294967295\n").unwrap().agent.mark,
            u32::MAX
        );
        assert_eq!(parse("[agent]\nmark = 1\n").unwrap().agent.mark, 1);
        let m = err_at("[agent]\nmark = \"1\"\n", 2, Some("agent.mark"));
        assert_eq!(m, "invalid type: string \"1\", expected an integer");
        let m = err_at("[agent]\nmark = 1.5\n", 2, Some("agent.mark"));
        assert_eq!(m, "invalid type: floating point `1.5`, expected an integer");
    }

    #[test]
    fn durations() {
        let m = err_at(
            "[agent]\nresolve_interval = \"30x\"\n",
            2,
            Some("agent.resolve_interval"),
        );
        assert!(m.starts_with("invalid duration \"30x\""), "{m}");
        let m = err_at(
            "[agent]\nresolve_interval = \"0s\"\n",
            2,
            Some("agent.resolve_interval"),
        );
        assert_eq!(m, "duration \"0s\" must be greater than 0");
        let m = err_at(
            "[agent]\nconnect_timeout = \"0ms\"\n",
            2,
            Some("agent.connect_timeout"),
        );
        assert!(m.contains("greater than 0"), "{m}");
        let m = err_at(
            "[agent]\ndrain_timeout = 10\n",
            2,
            Some("agent.drain_timeout"),
        );
        assert!(m.contains("invalid type"), "{m}");
        let m = err_at(
            "[agent]\ndrain_timeout = \"400d\"\n",
            2,
            Some("agent.drain_timeout"),
        );
        assert!(m.contains("too long"), "{m}");
        assert_eq!(
            parse("[agent]\ndrain_timeout = \"0s\"\n")
                .unwrap()
                .agent
                .drain_timeout,
            Duration::ZERO
        );
    }

    #[test]
    fn bad_instance_names() {
        for v in ["", "Prod", "a.b", "a b", &"x".repeat(33)] {
            let m = err_at(
                &format!("[agent]\ninstance = {v:?}\n"),
                2,
                Some("agent.instance"),
            );
            assert!(m.starts_with("invalid instance name"), "{v}: {m}");
        }
        assert_eq!(
            parse(&format!("[agent]\ninstance = {:?}\n", "a_-9".repeat(8)))
                .unwrap()
                .agent
                .instance
                .len(),
            32
        );
    }

    #[test]
    fn bad_fail_mode_and_paths() {
        let m = err_at(
            "[agent]\nfail_mode = \"Closed\"\n",
            2,
            Some("agent.fail_mode"),
        );
        assert_eq!(
            m,
            "invalid fail_mode \"Closed\" (expected \"closed\" or \"open\")"
        );
        for key in ["state_dir", "bpffs", "cgroup"] {
            let m = err_at(
                &format!("[agent]\n{key} = \"var/lib\"\n"),
                2,
                Some(&format!("agent.{key}")),
            );
            assert_eq!(m, "\"var/lib\" is not an absolute path");
        }
    }

    #[test]
    fn serialize_round_trips() {
        for text in [FULL, "", "[agent]\nlisten6 = \"off\"\n"] {
            let c = parse(text).unwrap();
            let out = toml::to_string(&c).unwrap();
            let back = parse(&out).unwrap_or_else(|e| panic!("{e}\n{out}"));
            assert_eq!(back, c, "{out}");
        }
        let out = toml::to_string(&parse(FULL).unwrap()).unwrap();
        assert!(
            out.contains("fail_mode = \"open\"") && out.contains("resolve_interval = \"1m 30s\""),
            "{out}"
        );
        for line in [
            "upstream = \"https://mcp.internal.example:8443\"",
            "upstream = \"http://[fd00::7]:8080\"",
            "client_tls = \"plain\"",
            "strip_headers = [\"x-ehr-session\", \"x-trace\"]",
            "[credential.\"billing.key\"]",
            "header = \"x-api-key\"",
        ] {
            assert!(out.contains(line), "{line}:\n{out}");
        }
        // the tcp endpoint gets no L7 keys (they would be refused)
        let billing = out.split("name = \"billing.v2_x\"").nth(1).unwrap();
        let billing = billing.split("[[endpoint]]").next().unwrap();
        assert!(!billing.contains("client_tls"), "{out}");
    }

    #[test]
    fn load_reads_file_and_reports_missing() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("warden.toml");
        std::fs::write(&path, FULL).unwrap();
        let c = Config::load(&path).unwrap();
        assert_eq!(c.path, path);
        assert_eq!(c.endpoints.len(), 3);

        let missing = dir.path().join("nope.toml");
        let e = Config::load(&missing).unwrap_err();
        assert_eq!(
            (e.file.as_path(), e.line, e.key.as_deref()),
            (missing.as_path(), None, None)
        );
        assert!(
            e.to_string()
                .starts_with(&format!("{}: cannot read:", missing.display())),
            "{e}"
        );
    }

    #[test]
    fn mountinfo_parsing() {
        let mi = "\
31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
32 31 0:29 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu
41 31 0:38 / /sys/fs/cgroup/uni\\040fied rw,relatime shared:9 - cgroup2 cgroup2 rw
42 31 0:39 / /other rw - cgroup2 cgroup2 rw
";
        assert_eq!(
            cgroup2_mount(mi),
            Some(PathBuf::from("/sys/fs/cgroup/uni fied"))
        );
        assert_eq!(
            cgroup2_mount("31 23 0:28 / /sys/fs/cgroup rw - tmpfs tmpfs rw\n"),
            None
        );
        assert_eq!(
            unescape_mountinfo("a\\134b\\011c\\9"),
            PathBuf::from("a\\b\tc\\9")
        );
    }

    fn config_with(dir: &Path, cgroup: &Path, bpffs: &Path) -> Config {
        let path = dir.join("warden.toml");
        let text = format!(
            "[agent]\ninstance = \"t\"\ncgroup = {:?}\nbpffs = {:?}\n",
            cgroup.display().to_string(),
            bpffs.display().to_string()
        );
        std::fs::write(&path, text).unwrap();
        Config::load(&path).unwrap()
    }

    #[test]
    fn check_host_rejects_non_cgroup2() {
        let dir = tempfile::tempdir().unwrap();
        let c = config_with(dir.path(), dir.path(), dir.path());
        let e = c.check_host().unwrap_err();
        assert_eq!(
            (e.line, e.col, e.key.as_deref()),
            (Some(3), Some(10), Some("agent.cgroup")),
            "{e}"
        );
        assert!(
            e.message.starts_with(&format!(
                "{} is not a cgroup v2 directory",
                dir.path().display()
            )),
            "{e}"
        );

        let nope = dir.path().join("nope");
        let c = config_with(dir.path(), &nope, dir.path());
        let e = c.check_host().unwrap_err();
        assert_eq!(
            (e.line, e.key.as_deref()),
            (Some(3), Some("agent.cgroup")),
            "{e}"
        );
        assert_eq!(e.message, format!("{} does not exist", nope.display()));

        // a file is not a cgroup directory either
        let file = dir.path().join("warden.toml");
        let c = config_with(dir.path(), &file, dir.path());
        assert!(
            c.check_host()
                .unwrap_err()
                .message
                .contains("is not a cgroup v2 directory")
        );

        // no file behind the config (parse with a made-up path): no line, still the key
        let c = Config::parse(
            &format!("[agent]\ncgroup = {:?}\n", nope.display().to_string()),
            &dir.path().join("absent.toml"),
        )
        .unwrap();
        let e = c.check_host().unwrap_err();
        assert_eq!(
            (e.line, e.key.as_deref()),
            (None, Some("agent.cgroup")),
            "{e}"
        );
    }

    #[test]
    fn check_host_accepts_cgroup2() {
        let unified = Path::new("/sys/fs/cgroup/unified");
        if !unified.exists() {
            eprintln!("skipping: {} does not exist here", unified.display());
            return;
        }
        let dir = tempfile::tempdir().unwrap();
        config_with(dir.path(), unified, dir.path())
            .check_host()
            .unwrap();

        // bpffs must exist
        let nope = dir.path().join("no-bpffs");
        let e = config_with(dir.path(), unified, &nope)
            .check_host()
            .unwrap_err();
        assert_eq!(
            (e.line, e.key.as_deref()),
            (Some(4), Some("agent.bpffs")),
            "{e}"
        );
        assert_eq!(e.message, format!("{} does not exist", nope.display()));
    }

    #[test]
    fn audit_table() {
        let cfg = Config::parse(
            "[audit]\ncheckpoint_every = 50\ncheckpoint_interval = \"2s\"\nsegment_max_mb = 8\n\
             retention_max_age = \"90d\"\nretention_max_mb = 1024\nbatch_delay = \"0s\"\n",
            Path::new("w.toml"),
        )
        .unwrap();
        let a = &cfg.audit;
        assert_eq!(
            (a.checkpoint_every, a.checkpoint_interval),
            (50, Duration::from_secs(2))
        );
        assert_eq!(a.segment_max_bytes, 8 << 20);
        assert_eq!(a.retention_max_age, Some(Duration::from_secs(90 * 86400)));
        assert_eq!(a.retention_max_bytes, Some(1024 << 20));
        assert_eq!(a.batch_delay, Duration::ZERO);
        assert_eq!(
            Config::parse("", Path::new("w.toml")).unwrap().audit,
            AuditConfig::default()
        );
        let back = Config::parse(&toml::to_string(&cfg).unwrap(), Path::new("w.toml")).unwrap();
        assert_eq!(back.audit, cfg.audit);
    }

    #[test]
    fn audit_table_errors_name_the_key() {
        for (text, key, line) in [
            (
                "[audit]\ncheckpoint_every = 0\n",
                "audit.checkpoint_every",
                2,
            ),
            (
                "[audit]\n\nsegment_max_mb = -1\n",
                "audit.segment_max_mb",
                3,
            ),
            (
                "[audit]\nretention_max_age = \"0s\"\n",
                "audit.retention_max_age",
                2,
            ),
            (
                "[audit]\ncheckpoint_interval = \"soon\"\n",
                "audit.checkpoint_interval",
                2,
            ),
        ] {
            let e = Config::parse(text, Path::new("w.toml")).unwrap_err();
            assert_eq!(
                (e.key.as_deref(), e.line),
                (Some(key), Some(line)),
                "{text}: {e}"
            );
        }
        let e = Config::parse("[audit]\nsegments = 3\n", Path::new("w.toml")).unwrap_err();
        assert!(e.to_string().contains("segments"), "{e}");
    }
}

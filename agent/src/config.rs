//! STUB: replaced by the real config module.
use std::net::{SocketAddr, SocketAddrV4, SocketAddrV6};
use std::path::{Path, PathBuf};
use std::time::Duration;
pub const DEFAULT_PATH: &str = "/etc/mcp-warden/warden.toml";
#[derive(Debug, Clone)]
pub struct Config { pub path: PathBuf, pub agent: AgentConfig, pub endpoints: Vec<Endpoint> }
#[derive(Debug, Clone)]
pub struct AgentConfig { pub instance: String, pub listen: SocketAddrV4, pub listen6: Option<SocketAddrV6>, pub cgroup: PathBuf, pub state_dir: PathBuf, pub bpffs: PathBuf, pub fail_mode: FailMode, pub mark: u32, pub resolve_interval: Duration, pub drain_timeout: Duration, pub connect_timeout: Duration, pub all_netns: bool }
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailMode { Closed, Open }
#[derive(Debug, Clone)]
pub struct Endpoint { pub name: String, pub matches: Vec<MatchSpec> }
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MatchSpec { Addr(SocketAddr), Cidr { net: ipnet::IpNet, port: u16 }, Host { host: String, port: u16 } }
impl std::fmt::Display for MatchSpec { fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result { write!(f, "{self:?}") } }
#[derive(Debug)]
pub struct ConfigError { pub file: PathBuf, pub line: Option<usize>, pub col: Option<usize>, pub key: Option<String>, pub message: String }
impl std::fmt::Display for ConfigError { fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result { write!(f, "{}", self.message) } }
impl std::error::Error for ConfigError {}
impl Config {
    pub fn load(_path: &Path) -> Result<Config, ConfigError> { todo!() }
    pub fn check_host(&self) -> Result<(), ConfigError> { Ok(()) }
    pub fn pin_dir(&self) -> PathBuf { self.agent.bpffs.join("mcp-warden").join(&self.agent.instance) }
    pub fn audit_dir(&self) -> PathBuf { self.agent.state_dir.join("audit") }
}

//! Harness for mcp-warden's integration tests: real cgroups, network
//! namespaces, peers and the agent binary, on the running kernel, as root.
//!
//! Every guard cleans up in `Drop`, including while a failing test unwinds,
//! so that nothing stays attached or running after a test:
//!
//! - [`TestCgroup`]: a cgroup v2 directory; [`TestCgroup::command`] builds a
//!   `Command` whose child joins it before exec. Drop kills everything in it
//!   and removes it.
//! - [`NetNs`]: a network namespace reached from the root namespace over a
//!   veth pair, `10.201.N.1/24` + `fd01:N::1/64` here, `.2` / `::2` inside.
//!   [`NetNs::http_server`] starts `peers/http_server.py` in it.
//! - [`Child`]: a spawned process with captured output; killed and reaped on drop.
//! - [`Tmpfs`]: a small tmpfs (a disk to fill); drop unmounts it.
//! - [`Agent`]: writes a config, runs `mcp-warden run`, waits for the ready
//!   file, exports records; drop stops it and always detaches.
//! - [`curl`], [`run`], [`http_get`], [`wait_until`]: bounded helpers. A wait
//!   that expires is a failure with a message, never a performance check.
//!
//! Indexes ([`unique`]) and ports ([`free_port`]) are allocated under file
//! locks in `/tmp/mcp-warden-tests`, so test threads and concurrently running
//! test binaries never share a subnet, a namespace name or a port.

mod agent;
mod cgroup;
mod mcp;
mod netns;
mod peers;
mod proc;
mod tmpfs;
mod util;

pub use agent::{Agent, AgentBuilder, agent_bin, remove_pin_dir, warden};
pub use cgroup::{TestCgroup, cgroup2_root};
pub use mcp::{ClientRun, McpServer, TestPki, sdk_python, write_secret};
pub use netns::{HttpServer, NetNs};
pub use peers::{
    CurlRun, PeerOutput, curl, http_get, peer_script, python, python_command, sha256_file,
    write_payload,
};
pub use proc::{Child, output_text, run};
pub use tmpfs::Tmpfs;
pub use util::{free_port, require_root, unique, wait_for, wait_until};

/// Default bound of the waits in this crate: generous, because tests run in
/// parallel on small machines. Expiry means "it did not happen".
pub const WAIT: std::time::Duration = std::time::Duration::from_secs(30);

//! A network namespace per test, reached over a veth pair, and the HTTP peer.

use std::ffi::OsStr;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use serde_json::Value;

use crate::peers::{http_get, peer_script, python};
use crate::proc::{Child, output_text, run};

fn ip(args: &[&str]) {
    let mut cmd = Command::new("ip");
    cmd.args(args);
    let out = run(cmd, Duration::from_secs(20));
    if !out.status.success() {
        panic!(
            "`ip {}` failed ({}): {}",
            args.join(" "),
            out.status,
            output_text(&out.stderr).trim()
        );
    }
}

fn ip_quiet(args: &[&str]) -> bool {
    Command::new("ip")
        .args(args)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .map(|s| s.success())
        .unwrap_or(false)
}

/// Namespace `mwt-N` with a veth pair: `mwtNa` here (10.201.N.1/24,
/// fd01:N::1/64), `mwtNb` inside (10.201.N.2/24, fd01:N::2/64), lo up.
/// Drop kills every process inside and deletes both.
pub struct NetNs {
    n: u32,
    name: String,
    host_if: String,
}

impl NetNs {
    /// A namespace on a fresh [`crate::unique`] index.
    pub fn new() -> NetNs {
        crate::require_root();
        Self::with_index(crate::unique())
    }

    /// A namespace on index `n`, which the caller got from [`crate::unique`].
    pub fn with_index(n: u32) -> NetNs {
        assert!(
            (1..=254).contains(&n),
            "index {n} does not fit 10.201.N.0/24"
        );
        let ns = NetNs {
            n,
            name: format!("mwt-{n}"),
            host_if: format!("mwt{n}a"),
        };
        // the index is ours (locked): anything by these names is a leftover of a killed run
        ns.remove();
        let peer_if = format!("mwt{n}b");
        let (h4, p4) = (
            format!("{}/24", ns.host_v4()),
            format!("{}/24", ns.peer_v4()),
        );
        let (h6, p6) = (
            format!("{}/64", ns.host_v6()),
            format!("{}/64", ns.peer_v6()),
        );
        let name = ns.name.as_str();
        ip(&["netns", "add", name]);
        ip(&[
            "link",
            "add",
            &ns.host_if,
            "type",
            "veth",
            "peer",
            "name",
            &peer_if,
        ]);
        ip(&["link", "set", &peer_if, "netns", name]);
        ip(&["addr", "add", &h4, "dev", &ns.host_if]);
        ip(&["-6", "addr", "add", &h6, "dev", &ns.host_if, "nodad"]);
        ip(&["link", "set", &ns.host_if, "up"]);
        ip(&["-n", name, "link", "set", "lo", "up"]);
        ip(&["-n", name, "addr", "add", &p4, "dev", &peer_if]);
        ip(&[
            "-n", name, "-6", "addr", "add", &p6, "dev", &peer_if, "nodad",
        ]);
        ip(&["-n", name, "link", "set", &peer_if, "up"]);
        ns
    }

    pub fn n(&self) -> u32 {
        self.n
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// The root-namespace side of the veth, e.g. "mwt150a".
    pub fn host_if(&self) -> &str {
        &self.host_if
    }

    /// 10.201.N.1 (root namespace side).
    pub fn host_v4(&self) -> Ipv4Addr {
        Ipv4Addr::new(10, 201, self.n as u8, 1)
    }

    /// 10.201.N.2 (inside).
    pub fn peer_v4(&self) -> Ipv4Addr {
        Ipv4Addr::new(10, 201, self.n as u8, 2)
    }

    /// fd01:N::1 (N written in decimal digits, read as hex).
    pub fn host_v6(&self) -> Ipv6Addr {
        format!("fd01:{}::1", self.n).parse().expect("valid IPv6")
    }

    /// fd01:N::2.
    pub fn peer_v6(&self) -> Ipv6Addr {
        format!("fd01:{}::2", self.n).parse().expect("valid IPv6")
    }

    /// `ip netns exec <name> <program>`: runs in the namespace (and in the
    /// caller's cgroup, i.e. not in any test cgroup).
    pub fn command(&self, program: impl AsRef<OsStr>) -> Command {
        let mut cmd = Command::new("ip");
        cmd.arg("netns").arg("exec").arg(&self.name).arg(program);
        cmd
    }

    /// Spawns `args` inside; the guard kills it on drop.
    pub fn spawn(&self, args: &[&str]) -> Child {
        let (prog, rest) = args.split_first().expect("a program to run");
        let mut cmd = self.command(prog);
        cmd.args(rest);
        Child::spawn(format!("[netns {}] {}", self.name, args.join(" ")), cmd)
    }

    /// `peers/http_server.py` inside, dual-stack on `::`, one listener per
    /// port; returns once it is listening.
    pub fn http_server(&self, ports: &[u16]) -> HttpServer {
        let mut cmd = self.command(python());
        cmd.arg(peer_script("http_server.py"))
            .args(["--bind", "::"]);
        for p in ports {
            cmd.args(["--port", &p.to_string()]);
        }
        let child = Child::spawn(format!("http_server in {} on {ports:?}", self.name), cmd);
        HttpServer::wait_ready(
            child,
            IpAddr::V4(self.peer_v4()),
            Some(IpAddr::V6(self.peer_v6())),
        )
    }

    /// Pids of the processes in the namespace.
    pub fn pids(&self) -> Vec<u32> {
        let out = Command::new("ip")
            .args(["netns", "pids", &self.name])
            .output();
        match out {
            Ok(o) => output_text(&o.stdout)
                .lines()
                .filter_map(|l| l.trim().parse().ok())
                .collect(),
            Err(_) => Vec::new(),
        }
    }

    fn remove(&self) {
        if Path::new("/run/netns").join(&self.name).exists() {
            for _ in 0..200 {
                let pids = self.pids();
                if pids.is_empty() {
                    break;
                }
                for pid in pids {
                    // SAFETY: SIGKILL to a process inside a namespace this harness created.
                    unsafe { libc::kill(pid as i32, libc::SIGKILL) };
                }
                std::thread::sleep(Duration::from_millis(25));
            }
        }
        // deleting one end deletes the pair at once; the namespace's own
        // teardown is asynchronous and would leave the name taken for a while
        if Path::new("/sys/class/net").join(&self.host_if).exists() {
            ip_quiet(&["link", "del", &self.host_if]);
        }
        if Path::new("/run/netns").join(&self.name).exists()
            && !ip_quiet(&["netns", "del", &self.name])
        {
            eprintln!("mcp-warden-tests: cannot delete netns {}", self.name);
        }
    }
}

impl Default for NetNs {
    fn default() -> Self {
        Self::new()
    }
}

impl Drop for NetNs {
    fn drop(&mut self) {
        self.remove();
    }
}

/// The running `peers/http_server.py`.
pub struct HttpServer {
    child: Child,
    v4: IpAddr,
    v6: Option<IpAddr>,
    ports: Vec<u16>,
}

impl HttpServer {
    /// `peers/http_server.py` in the root namespace (and the caller's cgroup)
    /// on `bind` (e.g. 127.0.0.1), one listener per port (0: any free one).
    pub fn start_local(bind: IpAddr, ports: &[u16]) -> HttpServer {
        let mut cmd = Command::new(python());
        cmd.arg(peer_script("http_server.py"))
            .args(["--bind", &bind.to_string()]);
        for p in ports {
            cmd.args(["--port", &p.to_string()]);
        }
        let child = Child::spawn(format!("http_server on {bind} {ports:?}"), cmd);
        HttpServer::wait_ready(child, bind, None)
    }

    fn wait_ready(mut child: Child, v4: IpAddr, v6: Option<IpAddr>) -> HttpServer {
        let line = child.wait_for_line(Duration::from_secs(20), "\"ready\"", |l| {
            l.starts_with("ready")
        });
        let ports = line
            .split_whitespace()
            .skip(1)
            .map(|p| p.parse().expect("port in ready line"))
            .collect();
        HttpServer {
            child,
            v4,
            v6,
            ports,
        }
    }

    /// The actual ports, in the order asked for.
    pub fn ports(&self) -> &[u16] {
        &self.ports
    }

    pub fn port(&self) -> u16 {
        self.ports[0]
    }

    /// `ip:port` for IPv4 (or the local bind address).
    pub fn addr(&self, port: u16) -> SocketAddr {
        SocketAddr::new(self.v4, port)
    }

    /// `[ip6]:port` when it serves IPv6.
    pub fn addr6(&self, port: u16) -> SocketAddr {
        SocketAddr::new(self.v6.expect("this server has no IPv6 address"), port)
    }

    /// GET /stats, asked directly by the test process (which no test cgroup
    /// contains, so never intercepted).
    pub fn stats(&self) -> Value {
        let r = http_get(self.addr(self.port()), "/stats");
        assert_eq!(r.0, 200, "GET /stats: {}", r.1);
        serde_json::from_str(&r.1).unwrap_or_else(|e| panic!("/stats is not JSON ({e}): {}", r.1))
    }

    /// Requests served on `port` (excluding /stats).
    pub fn count(&self, port: u16) -> u64 {
        self.stats()["by_port"][port.to_string()]
            .as_u64()
            .unwrap_or(0)
    }

    /// Requests served on every port (excluding /stats).
    pub fn total(&self) -> u64 {
        self.stats()["count"].as_u64().unwrap_or(0)
    }

    pub fn pid(&self) -> u32 {
        self.child.pid()
    }

    pub fn child(&mut self) -> &mut Child {
        &mut self.child
    }
}

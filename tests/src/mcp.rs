//! MCP peers from the official Python SDK (tests/peers/mcp_server.py and
//! mcp_client.py in the virtualenvs tests/peers/setup.sh makes) and the test
//! PKI the "remote" server presents.

use std::fs;
use std::net::IpAddr;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use serde_json::Value;

use crate::cgroup::TestCgroup;
use crate::netns::NetNs;
use crate::peers::peer_script;
use crate::proc::{Child, output_text, run};

/// The interpreter of one SDK virtualenv: "mcp2" (mcp 2.x) or "mcp1" (1.x).
pub fn sdk_python(sdk: &str) -> PathBuf {
    let root = std::env::var_os("MCP_WARDEN_PEERS")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/opt/mcp-warden-peers"));
    let py = root.join(sdk).join("bin").join("python");
    assert!(
        py.exists(),
        "{} is missing: run `bash tests/peers/setup.sh` (.ci/run does)",
        py.display()
    );
    py
}

/// A CA and a server certificate for `mcp.test` and the server's address,
/// made with the openssl CLI in a tempdir.
pub struct TestPki {
    _dir: tempfile::TempDir,
    pub ca: PathBuf,
    pub cert: PathBuf,
    pub key: PathBuf,
}

impl TestPki {
    pub fn new(server_ip: IpAddr) -> TestPki {
        let dir = tempfile::Builder::new()
            .prefix("mcp-warden-pki-")
            .tempdir()
            .expect("tempdir");
        let p = |n: &str| dir.path().join(n);
        let openssl = |args: &[&str]| {
            let mut cmd = Command::new("openssl");
            cmd.args(args).current_dir(dir.path());
            let out = run(cmd, Duration::from_secs(30));
            assert!(
                out.status.success(),
                "openssl {args:?}: {}",
                output_text(&out.stderr)
            );
        };
        let ec = [
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
        ];
        let mut ca_args = vec!["req", "-x509"];
        ca_args.extend(ec);
        ca_args.extend([
            "-keyout",
            "ca.key",
            "-out",
            "ca.pem",
            "-days",
            "2",
            "-subj",
            "/CN=mcp-warden test CA",
            "-addext",
            "basicConstraints=critical,CA:TRUE",
            "-addext",
            "keyUsage=critical,keyCertSign,cRLSign",
        ]);
        openssl(&ca_args);
        let mut csr_args = vec!["req"];
        csr_args.extend(ec);
        csr_args.extend([
            "-keyout",
            "server.key",
            "-out",
            "server.csr",
            "-subj",
            "/CN=mcp.test",
        ]);
        openssl(&csr_args);
        fs::write(
            p("ext.cnf"),
            format!(
                "subjectAltName=DNS:mcp.test,IP:{server_ip}\nbasicConstraints=critical,CA:FALSE\n\
                 keyUsage=critical,digitalSignature\nextendedKeyUsage=serverAuth\n\
                 authorityKeyIdentifier=keyid\nsubjectKeyIdentifier=hash\n"
            ),
        )
        .unwrap();
        openssl(&[
            "x509",
            "-req",
            "-in",
            "server.csr",
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-out",
            "server.pem",
            "-days",
            "2",
            "-extfile",
            "ext.cnf",
        ]);
        TestPki {
            ca: p("ca.pem"),
            cert: p("server.pem"),
            key: p("server.key"),
            _dir: dir,
        }
    }
}

/// Writes a secret file as the agent wants it: root-owned, 0600.
pub fn write_secret(path: &Path, value: &str) {
    fs::write(path, value).unwrap();
    fs::set_permissions(path, fs::Permissions::from_mode(0o600)).unwrap();
}

/// `mcp_server.py` in a namespace: TLS with the test PKI, a required bearer
/// token, and a log of every request it received.
pub struct McpServer {
    child: Child,
    seen: PathBuf,
    pub port: u16,
    _dir: tempfile::TempDir,
}

impl McpServer {
    /// Starts it on `ns`'s address and `port`; `extra` are mcp_server.py flags
    /// (`--json-response`, `--stateless`, `--transport sse`).
    pub fn start(ns: &NetNs, pki: &TestPki, port: u16, token: &str, extra: &[&str]) -> McpServer {
        let dir = tempfile::Builder::new()
            .prefix("mcp-warden-server-")
            .tempdir()
            .expect("tempdir");
        let seen = dir.path().join("seen.jsonl");
        let mut cmd = ns.command(sdk_python("mcp2"));
        cmd.arg("-u")
            .arg(peer_script("mcp_server.py"))
            .args(["--host", "0.0.0.0", "--port", &port.to_string()])
            .arg("--cert")
            .arg(&pki.cert)
            .arg("--key")
            .arg(&pki.key)
            .args(["--token", token])
            .arg("--seen")
            .arg(&seen)
            .args(extra);
        let mut child = Child::spawn(format!("mcp_server in {} {extra:?}", ns.name()), cmd);
        child.wait_for_line(Duration::from_secs(60), "READY", |l| l.trim() == "READY");
        McpServer {
            child,
            seen,
            port,
            _dir: dir,
        }
    }

    /// Every request the server received, in order.
    pub fn seen(&self) -> Vec<Value> {
        fs::read_to_string(&self.seen)
            .unwrap_or_default()
            .lines()
            .map(|l| serde_json::from_str(l).expect("a seen line is JSON"))
            .collect()
    }

    pub fn child(&mut self) -> &mut Child {
        &mut self.child
    }
}

/// How an `mcp_client.py` run is set up.
pub struct ClientRun<'a> {
    /// "mcp2" or "mcp1".
    pub sdk: &'a str,
    pub url: String,
    pub token: &'a str,
    /// The only trust anchors it gets, through SSL_CERT_FILE.
    pub ca_file: &'a Path,
    /// "handshake" or "modern" (2026-07-28; mcp2 only).
    pub era: &'a str,
    /// "streamable-http" or "sse".
    pub transport: &'a str,
    /// JSON list of {"tool", "arguments"}.
    pub calls: &'a str,
}

impl ClientRun<'_> {
    /// Runs the client (inside `cg` when given, so the agent intercepts it)
    /// and returns what it printed: protocol version, tools, results.
    pub fn run(&self, cg: Option<&TestCgroup>) -> Value {
        let py = sdk_python(self.sdk);
        let mut cmd = match cg {
            Some(cg) => cg.command(&py),
            None => Command::new(&py),
        };
        cmd.arg("-u")
            .arg(peer_script("mcp_client.py"))
            .args(["--url", &self.url, "--token", self.token])
            .args(["--era", self.era, "--transport", self.transport])
            .args(["--calls", self.calls])
            .env("SSL_CERT_FILE", self.ca_file)
            .env_remove("SSL_CERT_DIR")
            .env_remove("REQUESTS_CA_BUNDLE");
        let out = run(cmd, Duration::from_secs(180));
        assert!(
            out.status.success(),
            "mcp_client ({} {} {} via {}) failed: {}\n{}",
            self.sdk,
            self.era,
            self.transport,
            if cg.is_some() { "agent" } else { "direct" },
            output_text(&out.stderr),
            output_text(&out.stdout)
        );
        serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
            panic!(
                "mcp_client output is not JSON ({e}): {}",
                output_text(&out.stdout)
            )
        })
    }
}

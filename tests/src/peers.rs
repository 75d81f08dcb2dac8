//! The peers (tests/peers/*.py, curl) and small direct clients.

use std::ffi::OsStr;
use std::io::{BufWriter, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus};
use std::sync::OnceLock;
use std::time::Duration;

use serde_json::Value;

use crate::cgroup::TestCgroup;
use crate::proc::{output_text, run};

/// The Python interpreter for the peers: `$PYTHON`, else the real executable
/// behind `python3` (resolved once, so that pyenv-style shims are not in the
/// way of pids and comm names).
pub fn python() -> PathBuf {
    static PY: OnceLock<PathBuf> = OnceLock::new();
    PY.get_or_init(|| {
        if let Some(p) = std::env::var_os("PYTHON") {
            return PathBuf::from(p);
        }
        let out = Command::new("python3")
            .args(["-c", "import sys; print(sys.executable)"])
            .output()
            .expect("running python3 (the peers need Python 3.11+)");
        assert!(
            out.status.success(),
            "python3 failed: {}",
            output_text(&out.stderr)
        );
        PathBuf::from(output_text(&out.stdout).trim())
    })
    .clone()
}

/// Path of a peer script in tests/peers/.
pub fn peer_script(name: &str) -> PathBuf {
    let p = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("peers")
        .join(name);
    assert!(p.exists(), "peer script {} is missing", p.display());
    p
}

/// `python peers/<script>`, joining `cg` first when given.
pub fn python_command(cg: Option<&TestCgroup>, script: &str) -> Command {
    let mut cmd = match cg {
        Some(cg) => cg.command(python()),
        None => Command::new(python()),
    };
    cmd.arg("-u").arg(peer_script(script));
    cmd
}

/// What a JSON-lines peer printed.
#[derive(Debug)]
pub struct PeerOutput {
    pub status: ExitStatus,
    pub lines: Vec<Value>,
    pub stdout: String,
    pub stderr: String,
}

impl PeerOutput {
    /// Runs `cmd` (bounded) and parses every stdout line as JSON.
    pub fn run(cmd: Command, timeout: Duration) -> PeerOutput {
        let out = run(cmd, timeout);
        let stdout = output_text(&out.stdout);
        let lines = stdout
            .lines()
            .filter(|l| !l.trim().is_empty())
            .map(|l| {
                serde_json::from_str(l)
                    .unwrap_or_else(|e| panic!("peer printed non-JSON line ({e}): {l}"))
            })
            .collect();
        PeerOutput {
            status: out.status,
            lines,
            stdout,
            stderr: output_text(&out.stderr),
        }
    }

    /// The first line with `"event": event`.
    pub fn event(&self, event: &str) -> Option<&Value> {
        self.lines.iter().find(|v| v["event"] == event)
    }

    /// Like [`event`](Self::event) but panics with the whole output if absent.
    pub fn expect_event(&self, event: &str) -> &Value {
        self.event(event)
            .unwrap_or_else(|| panic!("peer printed no {event:?} line: {self:#?}"))
    }
}

/// One curl run: the pid it had (printed by the shell that exec'd it).
#[derive(Debug)]
pub struct CurlRun {
    pub pid: u32,
    pub status: ExitStatus,
    /// curl's stdout (the pid line removed).
    pub stdout: String,
    pub stderr: String,
}

impl CurlRun {
    /// curl's exit code (None if killed by a signal).
    pub fn code(&self) -> Option<i32> {
        self.status.code()
    }

    /// Panics with curl's stderr unless it exited 0.
    pub fn assert_ok(&self) -> &Self {
        assert!(
            self.status.success(),
            "curl (pid {}) failed: {}\nstderr: {}",
            self.pid,
            self.status,
            self.stderr
        );
        self
    }
}

/// Runs curl (in `cg` if given) with `-sS`, bounded timeouts and `args`.
/// The pid is curl's own: a shell prints `$$` and then execs curl.
pub fn curl<S: AsRef<OsStr>>(cg: Option<&TestCgroup>, args: &[S]) -> CurlRun {
    let script = "echo $$; exec curl -sS --connect-timeout 10 --max-time 120 \"$@\"";
    let mut cmd = match cg {
        Some(cg) => cg.command("sh"),
        None => Command::new("sh"),
    };
    cmd.args(["-c", script, "sh"]).args(args);
    let out = run(cmd, Duration::from_secs(180));
    let stdout = output_text(&out.stdout);
    let (pid_line, rest) = stdout.split_once('\n').unwrap_or((stdout.as_str(), ""));
    let pid = pid_line
        .trim()
        .parse()
        .unwrap_or_else(|_| panic!("no pid line from the curl wrapper: {stdout:?}"));
    CurlRun {
        pid,
        status: out.status,
        stdout: rest.to_string(),
        stderr: output_text(&out.stderr),
    }
}

/// GET `path` from `addr` straight from the test process (no cgroup of the
/// tests contains it, so it is never intercepted): (status, body).
pub fn http_get(addr: SocketAddr, path: &str) -> (u16, String) {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(10))
        .unwrap_or_else(|e| panic!("connecting to {addr} for GET {path}: {e}"));
    s.set_read_timeout(Some(Duration::from_secs(20)))
        .expect("read timeout");
    s.set_write_timeout(Some(Duration::from_secs(20)))
        .expect("write timeout");
    let host = match addr {
        SocketAddr::V4(a) => a.ip().to_string(),
        SocketAddr::V6(a) => format!("[{}]", a.ip()),
    };
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n"
    )
    .unwrap_or_else(|e| panic!("GET {path} from {addr}: {e}"));
    let mut buf = Vec::new();
    s.read_to_end(&mut buf)
        .unwrap_or_else(|e| panic!("reading GET {path} from {addr}: {e}"));
    let text = String::from_utf8_lossy(&buf).into_owned();
    let (head, body) = text
        .split_once("\r\n\r\n")
        .unwrap_or_else(|| panic!("no HTTP header end from {addr}: {text:?}"));
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("bad status line from {addr}: {head:?}"));
    (status, body.to_string())
}

/// Writes `size` deterministic pseudo-random bytes (xorshift64*, seeded) to
/// `path` and returns their sha256 (hex).
pub fn write_payload(path: &Path, size: usize, seed: u64) -> String {
    let f =
        std::fs::File::create(path).unwrap_or_else(|e| panic!("creating {}: {e}", path.display()));
    let mut w = BufWriter::new(f);
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut left = size;
    while left > 0 {
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        let v = x.wrapping_mul(0x2545_F491_4F6C_DD1D).to_le_bytes();
        let n = left.min(8);
        w.write_all(&v[..n]).expect("writing payload");
        left -= n;
    }
    w.flush().expect("flushing payload");
    sha256_file(path)
}

/// sha256 (hex) of a file, by `sha256sum`.
pub fn sha256_file(path: &Path) -> String {
    let mut cmd = Command::new("sha256sum");
    cmd.arg(path);
    let out = run(cmd, Duration::from_secs(60));
    assert!(
        out.status.success(),
        "sha256sum {}: {}",
        path.display(),
        output_text(&out.stderr)
    );
    output_text(&out.stdout)
        .split_whitespace()
        .next()
        .expect("sha256sum output")
        .to_string()
}

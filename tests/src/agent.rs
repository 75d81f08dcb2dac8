//! The agent under test: config, `run`, ready file, records, stop, detach.

use std::ffi::{CString, OsString};
use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Output, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::cgroup::{TestCgroup, join_cgroup};
use crate::proc::{output_text, run, tail};

pub(crate) const INSTANCE_PREFIX: &str = "t-";

/// How long `run` may take to write its ready file.
const READY_TIMEOUT: Duration = Duration::from_secs(30);
/// How long SIGTERM may take (drain included).
const STOP_TIMEOUT: Duration = Duration::from_secs(30);
/// Bound of one-shot subcommands (export, detach, check-config).
const CMD_TIMEOUT: Duration = Duration::from_secs(30);

/// The agent binary: `$MCP_WARDEN_BIN`, else `<workspace>/target/debug/mcp-warden`.
pub fn agent_bin() -> PathBuf {
    if let Some(p) = std::env::var_os("MCP_WARDEN_BIN") {
        let p = PathBuf::from(p);
        assert!(p.exists(), "MCP_WARDEN_BIN={} does not exist", p.display());
        return p;
    }
    let p = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .join("target")
        .join("debug")
        .join("mcp-warden");
    if !p.exists() {
        panic!(
            "the agent binary {} does not exist: run `cargo build -p mcp-warden` first (or `cargo xtask test`, \
             which builds it), or point MCP_WARDEN_BIN at one",
            p.display()
        );
    }
    p.canonicalize().unwrap_or(p)
}

/// `mcp-warden` with RUST_LOG passed through (default "info"): for one-shot
/// subcommands such as `check-config`.
pub fn warden() -> Command {
    let mut cmd = Command::new(agent_bin());
    cmd.env(
        "RUST_LOG",
        std::env::var("RUST_LOG").unwrap_or_else(|_| "info".into()),
    );
    cmd
}

/// Removes a pin directory bottom-up (unpinning a link detaches it). Never panics.
pub fn remove_pin_dir(dir: &Path) {
    let Ok(entries) = fs::read_dir(dir) else {
        return;
    };
    for e in entries.flatten() {
        let p = e.path();
        if e.file_type().map(|t| t.is_dir()).unwrap_or(false) {
            remove_pin_dir(&p);
        } else if let Err(err) = fs::remove_file(&p) {
            eprintln!("mcp-warden-tests: cannot unpin {}: {err}", p.display());
        }
    }
    if let Err(err) = fs::remove_dir(dir) {
        eprintln!("mcp-warden-tests: cannot remove {}: {err}", dir.display());
    }
}

fn toml_str(s: &str) -> String {
    serde_json::to_string(s).expect("string to JSON") // a JSON string is a TOML basic string
}

/// What the config file says.
#[derive(Clone, Debug)]
struct Spec {
    instance: String,
    listen: SocketAddr,
    listen6: Option<SocketAddr>,
    cgroup: PathBuf,
    state_dir: PathBuf,
    bpffs: PathBuf,
    fail_mode: String,
    mark: u32,
    agent_lines: Vec<String>,
    endpoints: Vec<EndpointSpec>,
    /// Appended after the endpoints (e.g. `[credential.NAME]` tables).
    extra: String,
}

/// One `[[endpoint]]`: its name, match list and any further `key = value` lines.
#[derive(Clone, Debug)]
struct EndpointSpec {
    name: String,
    matches: Vec<String>,
    lines: Vec<String>,
}

impl EndpointSpec {
    /// The interception tests relay bytes: `protocol = "tcp"`.
    fn tcp<S: AsRef<str>>(name: &str, matches: &[S]) -> Self {
        Self {
            name: name.to_string(),
            matches: matches.iter().map(|m| m.as_ref().to_string()).collect(),
            lines: vec!["protocol = \"tcp\"".to_string()],
        }
    }
}

impl Spec {
    fn render(&self) -> String {
        let mut s = String::from("[agent]\n");
        s += &format!("instance = {}\n", toml_str(&self.instance));
        s += &format!("listen = {}\n", toml_str(&self.listen.to_string()));
        let l6 = self
            .listen6
            .map(|a| a.to_string())
            .unwrap_or_else(|| "off".into());
        s += &format!("listen6 = {}\n", toml_str(&l6));
        s += &format!("cgroup = {}\n", toml_str(&self.cgroup.to_string_lossy()));
        s += &format!(
            "state_dir = {}\n",
            toml_str(&self.state_dir.to_string_lossy())
        );
        s += &format!("bpffs = {}\n", toml_str(&self.bpffs.to_string_lossy()));
        s += &format!("fail_mode = {}\n", toml_str(&self.fail_mode));
        s += &format!("mark = {:#x}\n", self.mark);
        for l in &self.agent_lines {
            s += l;
            s += "\n";
        }
        for ep in &self.endpoints {
            let m: Vec<String> = ep.matches.iter().map(|m| toml_str(m)).collect();
            s += &format!(
                "\n[[endpoint]]\nname = {}\nmatch = [{}]\n",
                toml_str(&ep.name),
                m.join(", ")
            );
            for l in &ep.lines {
                s += l;
                s += "\n";
            }
        }
        s += &self.extra;
        s
    }
}

/// Builds an [`Agent`]: `Agent::builder(&cgroup).endpoint("web", &["10.201.3.2:8080"]).start()`.
pub struct AgentBuilder {
    cgroup: PathBuf,
    endpoints: Vec<EndpointSpec>,
    extra: String,
    fail_mode: String,
    listen6: bool,
    inside: Option<CString>,
    agent_lines: Vec<String>,
    bpffs: PathBuf,
    program: Option<(PathBuf, Vec<OsString>)>,
    tempdir_in: Option<PathBuf>,
}

impl AgentBuilder {
    /// Adds a byte-relay `[[endpoint]]` (`protocol = "tcp"`) with these `match` entries.
    pub fn endpoint<S: AsRef<str>>(mut self, name: &str, matches: &[S]) -> Self {
        self.endpoints.push(EndpointSpec::tcp(name, matches));
        self
    }

    /// Adds an MCP `[[endpoint]]` with these `match` entries and further
    /// lines (`client_tls = "plain"`, `credential = "x"` …).
    pub fn mcp_endpoint<S: AsRef<str>>(
        mut self,
        name: &str,
        matches: &[S],
        lines: &[&str],
    ) -> Self {
        self.endpoints.push(EndpointSpec {
            name: name.to_string(),
            matches: matches.iter().map(|m| m.as_ref().to_string()).collect(),
            lines: lines.iter().map(|l| l.to_string()).collect(),
        });
        self
    }

    /// TOML appended to the config as is (e.g. `[credential.NAME]` tables).
    pub fn toml(mut self, text: &str) -> Self {
        self.extra.push('\n');
        self.extra.push_str(text);
        self.extra.push('\n');
        self
    }

    /// "closed" (default) or "open".
    pub fn fail_mode(mut self, mode: &str) -> Self {
        self.fail_mode = mode.to_string();
        self
    }

    /// `listen6 = "off"`.
    pub fn no_listen6(mut self) -> Self {
        self.listen6 = false;
        self
    }

    /// Runs the agent process itself inside `cg` (so its own connects pass the hooks).
    pub fn inside(mut self, cg: &TestCgroup) -> Self {
        self.inside = Some(
            CString::new(cg.path().join("cgroup.procs").as_os_str().as_bytes()).expect("no NUL"),
        );
        self
    }

    /// An extra line in `[agent]`, e.g. `drain_timeout = "2s"`.
    pub fn agent_line(mut self, line: &str) -> Self {
        self.agent_lines.push(line.to_string());
        self
    }

    /// Another bpffs directory (the harness's own self-tests use a plain directory).
    pub fn bpffs(mut self, dir: &Path) -> Self {
        self.bpffs = dir.to_path_buf();
        self
    }

    /// Runs `program args... <subcommand>` instead of the agent binary (self-tests).
    pub fn program(mut self, program: &Path, args: &[&str]) -> Self {
        self.program = Some((
            program.to_path_buf(),
            args.iter().map(OsString::from).collect(),
        ));
        self
    }

    /// Makes the agent's tempdir (config, state_dir, log) under `dir` instead of $TMPDIR.
    pub fn tempdir_in(mut self, dir: &Path) -> Self {
        self.tempdir_in = Some(dir.to_path_buf());
        self
    }

    /// Writes the config; does not start anything.
    pub fn build(self) -> Agent {
        static NEXT: AtomicU32 = AtomicU32::new(1);
        let (program, pre_args) = match self.program {
            Some(p) => p,
            None => (agent_bin(), Vec::new()),
        };
        let mut tb = tempfile::Builder::new();
        tb.prefix("mcp-warden-test-");
        let dir = match &self.tempdir_in {
            Some(parent) => tb.tempdir_in(parent),
            None => tb.tempdir(),
        }
        .expect("creating a tempdir");
        let dir_path = dir.path().to_path_buf();
        let instance = format!(
            "{INSTANCE_PREFIX}{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        );
        let spec = Spec {
            instance,
            listen: SocketAddr::from((Ipv4Addr::LOCALHOST, crate::free_port())),
            listen6: self
                .listen6
                .then(|| SocketAddr::from((Ipv6Addr::LOCALHOST, crate::free_port()))),
            cgroup: self.cgroup,
            state_dir: dir_path.join("state"),
            bpffs: self.bpffs,
            fail_mode: self.fail_mode,
            mark: 0x4d57,
            agent_lines: self.agent_lines,
            endpoints: self.endpoints,
            extra: self.extra,
        };
        let agent = Agent {
            config_path: dir_path.join("warden.toml"),
            log_path: dir_path.join("agent.log"),
            dir: Some(dir),
            dir_path,
            spec,
            program,
            pre_args,
            inside: self.inside,
            child: None,
            starts: 0,
        };
        agent.write_config();
        agent
    }

    /// Writes the config and starts the agent (waiting until it is ready).
    pub fn start(self) -> Agent {
        let mut a = self.build();
        a.start();
        a
    }
}

/// One agent instance: its tempdir (config, state_dir, agent.log) and, while
/// started, its process. Drop stops it, always runs `detach`, and removes
/// the pin dir if still there; while a test is panicking it prints the
/// agent's log and keeps the tempdir (as it does whenever `MWT_KEEP` is set).
pub struct Agent {
    spec: Spec,
    dir: Option<tempfile::TempDir>,
    dir_path: PathBuf,
    config_path: PathBuf,
    log_path: PathBuf,
    program: PathBuf,
    pre_args: Vec<OsString>,
    inside: Option<CString>,
    child: Option<std::process::Child>,
    starts: u32,
}

impl Agent {
    /// A builder for an agent attached to `cg`.
    pub fn builder(cg: &TestCgroup) -> AgentBuilder {
        crate::require_root();
        AgentBuilder {
            cgroup: cg.path().to_path_buf(),
            endpoints: Vec::new(),
            extra: String::new(),
            fail_mode: "closed".into(),
            listen6: true,
            inside: None,
            agent_lines: Vec::new(),
            bpffs: PathBuf::from("/sys/fs/bpf"),
            program: None,
            tempdir_in: None,
        }
    }

    pub fn instance(&self) -> &str {
        &self.spec.instance
    }
    pub fn config_path(&self) -> &Path {
        &self.config_path
    }
    pub fn state_dir(&self) -> &Path {
        &self.spec.state_dir
    }
    pub fn ready_path(&self) -> PathBuf {
        self.spec.state_dir.join("ready")
    }
    /// `<bpffs>/mcp-warden/<instance>`.
    pub fn pin_dir(&self) -> PathBuf {
        self.spec.bpffs.join("mcp-warden").join(&self.spec.instance)
    }
    pub fn listen(&self) -> SocketAddr {
        self.spec.listen
    }
    pub fn listen6(&self) -> Option<SocketAddr> {
        self.spec.listen6
    }
    /// The tempdir holding config, state and log.
    pub fn dir(&self) -> &Path {
        &self.dir_path
    }
    /// Everything the agent wrote to stdout/stderr so far (all runs).
    pub fn log(&self) -> String {
        fs::read_to_string(&self.log_path).unwrap_or_default()
    }
    pub fn config_text(&self) -> String {
        self.spec.render()
    }

    fn write_config(&self) {
        fs::write(&self.config_path, self.spec.render())
            .unwrap_or_else(|e| panic!("writing {}: {e}", self.config_path.display()));
    }

    /// Replaces the byte-relay endpoints in the config file (see [`reload`](Self::reload)).
    pub fn set_endpoints<S: AsRef<str>>(&mut self, endpoints: &[(&str, &[S])]) {
        self.spec.endpoints = endpoints
            .iter()
            .map(|(n, m)| EndpointSpec::tcp(n, m))
            .collect();
        self.write_config();
    }

    /// Writes the host CA (`mcp-warden ca export`) to a file in the agent's
    /// tempdir and returns its path: what clients get through SSL_CERT_FILE.
    pub fn export_ca(&self) -> PathBuf {
        let path = self.dir().join("agent-ca.pem");
        let config = self.config_path().display().to_string();
        let out = self.run_subcommand(&["ca", "export", "--config", &config]);
        assert!(
            out.status.success(),
            "mcp-warden ca export: {}",
            crate::output_text(&out.stderr)
        );
        fs::write(&path, &out.stdout).expect("writing the exported CA");
        path
    }

    /// `<agent binary> <args>` with RUST_LOG, output appended to the agent log.
    pub fn command<S: AsRef<std::ffi::OsStr>>(&self, args: &[S]) -> Command {
        let mut cmd = Command::new(&self.program);
        cmd.args(&self.pre_args).args(args);
        cmd.env(
            "RUST_LOG",
            std::env::var("RUST_LOG").unwrap_or_else(|_| "info".into()),
        );
        cmd
    }

    fn log_file(&self, banner: &str) -> File {
        let mut f = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log_path)
            .unwrap_or_else(|e| panic!("opening {}: {e}", self.log_path.display()));
        let _ = writeln!(f, "===== {banner} =====");
        f
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(|c| c.id())
    }

    /// True while the process runs (reaps it if it has exited).
    pub fn is_running(&mut self) -> bool {
        match &mut self.child {
            Some(c) => c.try_wait().ok().flatten().is_none(),
            None => false,
        }
    }

    /// `run --config` and wait (bounded) until `<state_dir>/ready` holds its pid.
    pub fn start(&mut self) {
        assert!(
            self.child.is_none(),
            "agent {} is already started",
            self.spec.instance
        );
        self.starts += 1;
        let log = self.log_file(&format!("start #{}", self.starts));
        let mut cmd = self.command(&[
            OsString::from("run"),
            "--config".into(),
            self.config_path.clone().into(),
        ]);
        cmd.stdin(Stdio::null())
            .stdout(log.try_clone().expect("dup log"))
            .stderr(log);
        if let Some(procs) = self.inside.clone() {
            // SAFETY: join_cgroup only makes async-signal-safe syscalls.
            unsafe { cmd.pre_exec(move || join_cgroup(&procs)) };
        }
        let child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("spawning {:?}: {e}", self.program));
        let pid = child.id();
        self.child = Some(child);
        let want = format!("{pid}\n");
        let deadline = Instant::now() + READY_TIMEOUT;
        loop {
            if let Some(st) = self
                .child
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten())
            {
                self.child = None;
                panic!(
                    "agent {} exited ({st}) before it was ready\n--- agent log ({}) ---\n{}",
                    self.spec.instance,
                    self.log_path.display(),
                    tail(&self.log(), 40)
                );
            }
            if fs::read_to_string(self.ready_path()).is_ok_and(|s| s == want) {
                return;
            }
            if Instant::now() >= deadline {
                let ready = fs::read_to_string(self.ready_path());
                panic!(
                    "agent {} (pid {pid}) was not ready within {READY_TIMEOUT:?}: {} is {ready:?}, want {want:?}\n\
                     --- agent log ---\n{}",
                    self.spec.instance,
                    self.ready_path().display(),
                    tail(&self.log(), 40)
                );
            }
            thread::sleep(Duration::from_millis(50));
        }
    }

    /// SIGTERM and wait (bounded); returns the exit status.
    pub fn stop(&mut self) -> ExitStatus {
        let mut child = self
            .child
            .take()
            .unwrap_or_else(|| panic!("agent {} is not running", self.spec.instance));
        // SAFETY: signal to our own unreaped child.
        unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
        let deadline = Instant::now() + STOP_TIMEOUT;
        loop {
            if let Some(st) = child.try_wait().expect("waiting for the agent") {
                return st;
            }
            if Instant::now() >= deadline {
                let _ = child.kill();
                let _ = child.wait();
                panic!(
                    "agent {} did not exit within {STOP_TIMEOUT:?} of SIGTERM (killed it)\n--- agent log ---\n{}",
                    self.spec.instance,
                    tail(&self.log(), 40)
                );
            }
            thread::sleep(Duration::from_millis(20));
        }
    }

    /// SIGKILL and reap: no cleanup of any kind by the agent.
    pub fn kill9(&mut self) {
        let mut child = self
            .child
            .take()
            .unwrap_or_else(|| panic!("agent {} is not running", self.spec.instance));
        let _ = child.kill();
        let _ = child.wait();
    }

    /// SIGHUP (reload endpoints).
    pub fn reload(&self) {
        let pid = self
            .pid()
            .unwrap_or_else(|| panic!("agent {} is not running", self.spec.instance));
        // SAFETY: signal to our own child.
        unsafe { libc::kill(pid as i32, libc::SIGHUP) };
    }

    /// Runs a one-shot subcommand (bounded); output is returned, not checked.
    pub fn run_subcommand(&self, args: &[&str]) -> Output {
        run(self.command(args), CMD_TIMEOUT)
    }

    /// `audit export --config`: every record, parsed.
    pub fn export(&self) -> Vec<Value> {
        let cfg = self.config_path.to_string_lossy().into_owned();
        let out = self.run_subcommand(&["audit", "export", "--config", &cfg]);
        assert!(
            out.status.success(),
            "`audit export` failed ({}): {}",
            out.status,
            output_text(&out.stderr)
        );
        output_text(&out.stdout)
            .lines()
            .filter(|l| !l.trim().is_empty())
            .map(|l| {
                serde_json::from_str(l)
                    .unwrap_or_else(|e| panic!("`audit export` printed a non-JSON line ({e}): {l}"))
            })
            .collect()
    }

    /// Exports until `pred` holds for the records (bounded by [`crate::WAIT`]).
    pub fn wait_records(&self, what: &str, pred: impl Fn(&[Value]) -> bool) -> Vec<Value> {
        let deadline = Instant::now() + crate::WAIT;
        loop {
            let recs = self.export();
            if pred(&recs) {
                return recs;
            }
            if Instant::now() >= deadline {
                let shown: Vec<String> = recs.iter().map(|r| r.to_string()).collect();
                panic!(
                    "timed out after {:?} waiting for records: {what}\n--- records ({}) ---\n{}",
                    crate::WAIT,
                    recs.len(),
                    tail(&shown.join("\n"), 40)
                );
            }
            thread::sleep(Duration::from_millis(100));
        }
    }

    /// `detach --config` (output returned, not checked).
    pub fn detach(&self) -> Output {
        let cfg = self.config_path.to_string_lossy().into_owned();
        self.run_subcommand(&["detach", "--config", &cfg])
    }

    /// `check-config <path>`.
    pub fn check_config(&self) -> Output {
        let cfg = self.config_path.to_string_lossy().into_owned();
        self.run_subcommand(&["check-config", &cfg])
    }

    /// The non-panicking cleanup of Drop.
    fn cleanup(&mut self) {
        if let Some(mut child) = self.child.take() {
            // SAFETY: signals to our own child.
            unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
            let deadline = Instant::now() + Duration::from_secs(15);
            while child.try_wait().ok().flatten().is_none() {
                if Instant::now() >= deadline {
                    eprintln!(
                        "mcp-warden-tests: agent {} ignored SIGTERM for 15 s; SIGKILL",
                        self.spec.instance
                    );
                    let _ = child.kill();
                    let _ = child.wait();
                    break;
                }
                thread::sleep(Duration::from_millis(20));
            }
        }
        // always detach, so that nothing stays attached even after a failure
        let log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log_path);
        let mut cmd = Command::new(&self.program);
        cmd.args(&self.pre_args)
            .arg("detach")
            .arg("--config")
            .arg(&self.config_path)
            .stdin(Stdio::null());
        if let Ok(mut log) = log {
            let _ = writeln!(log, "===== detach (harness cleanup) =====");
            if let Ok(l2) = log.try_clone() {
                cmd.stdout(l2).stderr(log);
            }
        }
        match cmd.spawn() {
            Ok(mut c) => {
                let deadline = Instant::now() + CMD_TIMEOUT;
                loop {
                    match c.try_wait() {
                        Ok(Some(st)) => {
                            if !st.success() {
                                eprintln!(
                                    "mcp-warden-tests: cleanup `detach` of {} failed ({st}); see {}",
                                    self.spec.instance,
                                    self.log_path.display()
                                );
                            }
                            break;
                        }
                        Ok(None) if Instant::now() < deadline => {
                            thread::sleep(Duration::from_millis(20))
                        }
                        _ => {
                            eprintln!(
                                "mcp-warden-tests: cleanup `detach` of {} hung; killed",
                                self.spec.instance
                            );
                            let _ = c.kill();
                            let _ = c.wait();
                            break;
                        }
                    }
                }
            }
            Err(e) => eprintln!("mcp-warden-tests: cannot run cleanup `detach`: {e}"),
        }
        let pins = self.pin_dir();
        if pins.exists() {
            eprintln!(
                "mcp-warden-tests: {} still exists after `detach`; removing it (unpinning detaches)",
                pins.display()
            );
            remove_pin_dir(&pins);
        }
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        let panicking = thread::panicking();
        self.cleanup();
        if panicking {
            eprintln!(
                "--- agent {} log ({}), config ({}) ---\n{}\n--- config ---\n{}",
                self.spec.instance,
                self.log_path.display(),
                self.config_path.display(),
                tail(&self.log(), 200),
                self.spec.render()
            );
        }
        if (panicking || std::env::var_os("MWT_KEEP").is_some())
            && let Some(dir) = self.dir.take()
        {
            let kept = dir.keep();
            eprintln!("mcp-warden-tests: kept {} for inspection", kept.display());
        }
    }
}

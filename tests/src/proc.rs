//! Child processes with captured output and bounded waits.

use std::io::Read;
use std::process::{Command, ExitStatus, Output, Stdio};
use std::sync::{Arc, Condvar, Mutex};
use std::thread;
use std::time::{Duration, Instant};

/// Output collected by a reader thread.
#[derive(Default)]
struct Captured {
    buf: Mutex<(Vec<u8>, bool)>, // (bytes, eof)
    cv: Condvar,
}

impl Captured {
    fn start(mut src: impl Read + Send + 'static) -> Arc<Captured> {
        let cap = Arc::new(Captured::default());
        let c = cap.clone();
        thread::spawn(move || {
            let mut chunk = [0u8; 16384];
            loop {
                let n = src.read(&mut chunk).unwrap_or(0);
                let mut g = c.buf.lock().unwrap_or_else(|e| e.into_inner());
                if n == 0 {
                    g.1 = true;
                    c.cv.notify_all();
                    return;
                }
                g.0.extend_from_slice(&chunk[..n]);
                c.cv.notify_all();
            }
        });
        cap
    }

    fn text(&self) -> String {
        String::from_utf8_lossy(&self.buf.lock().unwrap_or_else(|e| e.into_inner()).0).into_owned()
    }

    fn bytes(&self) -> Vec<u8> {
        self.buf.lock().unwrap_or_else(|e| e.into_inner()).0.clone()
    }

    /// Waits (bounded) for end of file: the writer closed its end.
    fn wait_eof(&self, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        let mut g = self.buf.lock().unwrap_or_else(|e| e.into_inner());
        while !g.1 {
            let now = Instant::now();
            if now >= deadline {
                return;
            }
            g = self
                .cv
                .wait_timeout(g, deadline - now)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
    }
}

/// A spawned process: stdout and stderr captured, stdin closed. Drop kills
/// it (SIGKILL) and reaps it; while a test is panicking it also prints what
/// the process wrote to stderr.
pub struct Child {
    label: String,
    inner: std::process::Child,
    status: Option<ExitStatus>,
    stdout: Arc<Captured>,
    stderr: Arc<Captured>,
}

impl Child {
    /// Spawns `cmd`; `label` names it in messages.
    pub fn spawn(label: impl Into<String>, mut cmd: Command) -> Child {
        let label = label.into();
        cmd.stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut inner = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("spawning {label} ({cmd:?}): {e}"));
        let stdout = Captured::start(inner.stdout.take().expect("piped stdout"));
        let stderr = Captured::start(inner.stderr.take().expect("piped stderr"));
        Child {
            label,
            inner,
            status: None,
            stdout,
            stderr,
        }
    }

    pub fn pid(&self) -> u32 {
        self.inner.id()
    }

    pub fn label(&self) -> &str {
        &self.label
    }

    pub fn stdout(&self) -> String {
        self.stdout.text()
    }

    pub fn stderr(&self) -> String {
        self.stderr.text()
    }

    /// The exit status if it has exited (reaping it), else None.
    pub fn try_status(&mut self) -> Option<ExitStatus> {
        if self.status.is_none() {
            self.status = self
                .inner
                .try_wait()
                .unwrap_or_else(|e| panic!("waiting for {}: {e}", self.label));
        }
        self.status
    }

    /// Waits for the first stdout line satisfying `pred` and returns it.
    /// Panics (with the process's stderr) if it exits first or `timeout` passes.
    pub fn wait_for_line(
        &mut self,
        timeout: Duration,
        what: &str,
        pred: impl Fn(&str) -> bool,
    ) -> String {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(line) = self.stdout.text().lines().find(|l| pred(l)) {
                return line.to_string();
            }
            if let Some(st) = self.try_status() {
                self.stdout.wait_eof(Duration::from_secs(2));
                if let Some(line) = self.stdout.text().lines().find(|l| pred(l)) {
                    return line.to_string();
                }
                panic!(
                    "{} exited ({st}) before printing {what}\n--- stdout ---\n{}\n--- stderr ---\n{}",
                    self.label,
                    self.stdout(),
                    self.stderr()
                );
            }
            if Instant::now() >= deadline {
                panic!(
                    "timed out after {timeout:?} waiting for {} to print {what}\n--- stdout ---\n{}\n--- stderr ---\n{}",
                    self.label,
                    self.stdout(),
                    self.stderr()
                );
            }
            let g = self.stdout.buf.lock().unwrap_or_else(|e| e.into_inner());
            let _ = self.stdout.cv.wait_timeout(g, Duration::from_millis(100));
        }
    }

    /// Waits for exit, at most `timeout`; on expiry kills it and panics.
    pub fn wait_within(&mut self, timeout: Duration) -> ExitStatus {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(st) = self.try_status() {
                self.stdout.wait_eof(Duration::from_secs(5));
                self.stderr.wait_eof(Duration::from_secs(5));
                return st;
            }
            if Instant::now() >= deadline {
                self.kill();
                panic!(
                    "timed out after {timeout:?} waiting for {} to exit (killed it)\n--- stdout ---\n{}\n--- stderr ---\n{}",
                    self.label,
                    tail(&self.stdout(), 60),
                    tail(&self.stderr(), 60)
                );
            }
            thread::sleep(Duration::from_millis(20));
        }
    }

    /// Sends `sig` (e.g. `libc::SIGTERM`) unless it has been reaped.
    pub fn signal(&mut self, sig: i32) {
        if self.try_status().is_none() {
            // SAFETY: kill on the pid of our own unreaped child.
            unsafe { libc::kill(self.inner.id() as i32, sig) };
        }
    }

    /// SIGKILL and reap. Never panics (it runs in Drop).
    pub fn kill(&mut self) {
        if self.status.is_none() {
            self.status = self.inner.try_wait().ok().flatten();
        }
        if self.status.is_none() {
            let _ = self.inner.kill();
            self.status = self.inner.wait().ok();
        }
    }

    /// Waits for exit (bounded) and returns everything it printed.
    pub fn output_within(mut self, timeout: Duration) -> Output {
        let status = self.wait_within(timeout);
        Output {
            status,
            stdout: self.stdout.bytes(),
            stderr: self.stderr.bytes(),
        }
    }
}

impl Drop for Child {
    fn drop(&mut self) {
        self.kill();
        if thread::panicking() {
            let err = self.stderr();
            if !err.trim().is_empty() {
                eprintln!(
                    "--- stderr of {} (pid {}) ---\n{}",
                    self.label,
                    self.inner.id(),
                    tail(&err, 80)
                );
            }
        }
    }
}

/// Runs `cmd` to completion, at most `timeout` (killed and a panic after that).
pub fn run(cmd: Command, timeout: Duration) -> Output {
    let label = format!("{cmd:?}");
    Child::spawn(label, cmd).output_within(timeout)
}

/// Lossy UTF-8 of captured output.
pub fn output_text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// The last `n` lines of `s`.
pub(crate) fn tail(s: &str, n: usize) -> String {
    let lines: Vec<&str> = s.lines().collect();
    let skip = lines.len().saturating_sub(n);
    let mut out = String::new();
    if skip > 0 {
        out.push_str(&format!("[... {skip} earlier lines ...]\n"));
    }
    out.push_str(&lines[skip..].join("\n"));
    out
}

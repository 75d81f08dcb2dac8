//! A cgroup v2 directory per test.

use std::ffi::CString;
use std::fs;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

pub(crate) const PREFIX: &str = "mcp-warden-test-";

/// The cgroup2 mount point, from /proc/self/mountinfo (on this machine's
/// hybrid layout: /sys/fs/cgroup/unified).
pub fn cgroup2_root() -> PathBuf {
    static ROOT: OnceLock<PathBuf> = OnceLock::new();
    ROOT.get_or_init(|| {
        let info =
            fs::read_to_string("/proc/self/mountinfo").expect("reading /proc/self/mountinfo");
        let mut found: Vec<PathBuf> = Vec::new();
        for line in info.lines() {
            // <id> <parent> <maj:min> <root> <mount point> <options> ... - <fstype> <source> <super options>
            let Some((left, right)) = line.split_once(" - ") else {
                continue;
            };
            if right.split_whitespace().next() != Some("cgroup2") {
                continue;
            }
            if let Some(mp) = left.split_whitespace().nth(4) {
                found.push(PathBuf::from(mp.replace("\\040", " ")));
            }
        }
        let preferred = [
            Path::new("/sys/fs/cgroup/unified"),
            Path::new("/sys/fs/cgroup"),
        ];
        preferred
            .iter()
            .find(|p| found.iter().any(|f| f == *p))
            .map(|p| p.to_path_buf())
            .or_else(|| found.into_iter().next())
            .expect("no cgroup2 filesystem is mounted (looked in /proc/self/mountinfo)")
    })
    .clone()
}

/// `<cgroup2>/mcp-warden-test-<pid>-<n>`, removed (with everything in it
/// killed) on drop.
pub struct TestCgroup {
    path: PathBuf,
    rel: String,
    procs: CString,
}

impl TestCgroup {
    pub fn new() -> TestCgroup {
        crate::require_root();
        static NEXT: AtomicU32 = AtomicU32::new(1);
        let name = format!(
            "{PREFIX}{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        );
        let path = cgroup2_root().join(&name);
        fs::create_dir(&path).unwrap_or_else(|e| panic!("creating cgroup {}: {e}", path.display()));
        let procs = CString::new(path.join("cgroup.procs").as_os_str().as_bytes())
            .expect("path without NUL");
        TestCgroup {
            path,
            rel: format!("/{name}"),
            procs,
        }
    }

    /// The directory, e.g. /sys/fs/cgroup/unified/mcp-warden-test-123-1.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The path as /proc/<pid>/cgroup shows it: "/mcp-warden-test-123-1".
    pub fn rel(&self) -> &str {
        &self.rel
    }

    /// The cgroup id (what bpf_get_current_cgroup_id returns): the directory's inode.
    pub fn id(&self) -> u64 {
        fs::metadata(&self.path)
            .unwrap_or_else(|e| panic!("stat {}: {e}", self.path.display()))
            .ino()
    }

    /// A command whose process joins this cgroup before it execs.
    pub fn command(&self, program: impl AsRef<std::ffi::OsStr>) -> Command {
        let mut cmd = Command::new(program);
        self.enter_on_exec(&mut cmd);
        cmd
    }

    /// Makes `cmd`'s child join this cgroup before exec.
    pub fn enter_on_exec(&self, cmd: &mut Command) {
        let procs = self.procs.clone();
        // SAFETY: the closure only calls async-signal-safe functions (open, write, close).
        unsafe {
            cmd.pre_exec(move || join_cgroup(&procs));
        }
    }

    /// Pids of the processes in it.
    pub fn procs(&self) -> Vec<u32> {
        read_procs(&self.path)
    }
}

impl Default for TestCgroup {
    fn default() -> Self {
        Self::new()
    }
}

/// Writes "0" (the calling process) to a cgroup.procs file; for pre_exec.
pub(crate) fn join_cgroup(procs: &CString) -> io::Result<()> {
    // SAFETY: plain syscalls on a NUL-terminated path and a local buffer.
    unsafe {
        let fd = libc::open(procs.as_ptr(), libc::O_WRONLY | libc::O_CLOEXEC);
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        let n = libc::write(fd, b"0".as_ptr().cast(), 1);
        let err = io::Error::last_os_error();
        libc::close(fd);
        if n != 1 {
            return Err(err);
        }
    }
    Ok(())
}

fn read_procs(dir: &Path) -> Vec<u32> {
    fs::read_to_string(dir.join("cgroup.procs"))
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.trim().parse().ok())
        .collect()
}

/// Kills every process in `dir` (and its descendants' cgroups), then removes it.
pub(crate) fn kill_and_remove(dir: &Path) {
    if !dir.exists() {
        return;
    }
    // children first (a test may have made sub-cgroups)
    if let Ok(entries) = fs::read_dir(dir) {
        for e in entries.flatten() {
            if e.file_type().map(|t| t.is_dir()).unwrap_or(false) {
                kill_and_remove(&e.path());
            }
        }
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    let kill_file = dir.join("cgroup.kill");
    loop {
        let pids = read_procs(dir);
        if pids.is_empty() {
            break;
        }
        if Instant::now() >= deadline {
            eprintln!(
                "mcp-warden-tests: processes {pids:?} still in {} after 10 s of SIGKILL",
                dir.display()
            );
            break;
        }
        if fs::write(&kill_file, "1").is_err() {
            for pid in pids {
                // SAFETY: SIGKILL to a pid listed in a cgroup this test created.
                unsafe { libc::kill(pid as i32, libc::SIGKILL) };
            }
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match fs::remove_dir(dir) {
            Ok(()) => return,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return,
            Err(e) => {
                if Instant::now() >= deadline {
                    eprintln!(
                        "mcp-warden-tests: cannot remove cgroup {}: {e}",
                        dir.display()
                    );
                    return;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
        }
    }
}

impl Drop for TestCgroup {
    fn drop(&mut self) {
        kill_and_remove(&self.path);
    }
}

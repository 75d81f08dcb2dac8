//! Root check, cross-process allocation of indexes and ports, bounded waits,
//! and the sweep of what crashed earlier runs left behind.

use std::fmt::Display;
use std::fs::{self, File, OpenOptions};
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, TcpListener};
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Mutex, Once};
use std::time::{Duration, Instant};

/// Where the allocation locks live (shared by every test process on the machine).
pub(crate) const LOCK_DIR: &str = "/tmp/mcp-warden-tests";

/// Subnet indexes handed out: `10.201.N.0/24`, `fd01:N::/64`. Lower ones are
/// left to hand-run experiments and other suites.
const INDEX_RANGE: std::ops::RangeInclusive<u32> = 100..=249;

/// Ports handed out: blocks of 100 below the kernel's ephemeral range
/// (32768+), so that no outgoing connection holds one by chance.
const PORT_BASE: u32 = 20000;
const PORT_BLOCK: u32 = 100;
const PORT_BLOCKS: u32 = 120;

/// Panics unless the effective uid is 0. These tests create cgroups and
/// network namespaces and attach eBPF programs: unprivileged they must fail,
/// not pass by skipping.
pub fn require_root() {
    // SAFETY: geteuid has no preconditions.
    let euid = unsafe { libc::geteuid() };
    if euid != 0 {
        panic!(
            "the mcp-warden integration tests need root (they create cgroups and network namespaces \
             and attach eBPF programs), but euid is {euid}; run them as root, e.g. `cargo xtask test` \
             or `sudo -E cargo test -p mcp-warden-tests`"
        );
    }
    sweep_stale_once();
}

/// Locks kept for the life of the process (the kernel releases them at exit).
static HELD: Mutex<Vec<File>> = Mutex::new(Vec::new());

/// Takes `<LOCK_DIR>/<kind>-<n>.lock` without blocking; true if now ours.
fn try_lock(kind: &str, n: u32) -> bool {
    fs::create_dir_all(LOCK_DIR).unwrap_or_else(|e| panic!("creating {LOCK_DIR}: {e}"));
    let path = Path::new(LOCK_DIR).join(format!("{kind}-{n}.lock"));
    let file = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .unwrap_or_else(|e| panic!("opening {}: {e}", path.display()));
    // SAFETY: flock on a descriptor we own.
    let rc = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
    if rc != 0 {
        return false;
    }
    HELD.lock().unwrap_or_else(|e| e.into_inner()).push(file);
    true
}

/// A small index no other test (in this process or any other) holds: for
/// subnets `10.201.N.0/24` / `fd01:N::/64`, namespace and interface names.
/// Held until the process exits. Skips indexes whose subnet some interface
/// outside this harness already uses.
pub fn unique() -> u32 {
    static NEXT: Mutex<u32> = Mutex::new(0);
    let mut next = NEXT.lock().unwrap_or_else(|e| e.into_inner());
    let span = INDEX_RANGE.end() - INDEX_RANGE.start() + 1;
    if *next == 0 {
        // start somewhere different in each process so that concurrent
        // processes rarely contend for the same locks
        *next = std::process::id() % span;
    }
    let used = foreign_subnets();
    for _ in 0..span {
        let n = INDEX_RANGE.start() + (*next % span);
        *next += 1;
        if used.contains(&n) {
            continue;
        }
        if try_lock("index", n) {
            return n;
        }
    }
    panic!("no free test index in {INDEX_RANGE:?}: every one is locked or in use");
}

/// Indexes N whose `10.201.N.x` is on an interface that is not this
/// harness's own (stale) veth `mwt<N>a`.
fn foreign_subnets() -> Vec<u32> {
    let out = Command::new("ip")
        .args(["-o", "addr", "show"])
        .output()
        .expect("running `ip -o addr show`");
    let text = String::from_utf8_lossy(&out.stdout);
    let mut used = Vec::new();
    for line in text.lines() {
        let mut words = line.split_whitespace();
        let _idx = words.next();
        let ifname = words.next().unwrap_or("").split('@').next().unwrap_or("");
        for w in words {
            if let Some(rest) = w.strip_prefix("10.201.")
                && let Some(n) = rest.split('.').next().and_then(|n| n.parse::<u32>().ok())
                && ifname != format!("mwt{n}a")
            {
                used.push(n);
            }
        }
    }
    used
}

/// A loopback TCP port that is free on both 127.0.0.1 and ::1, from a block
/// of ports this process holds a lock on (so no concurrent test process is
/// handed the same one), below the ephemeral range.
pub fn free_port() -> u16 {
    static STATE: Mutex<Option<(u32, u32)>> = Mutex::new(None); // (block, next offset)
    let mut st = STATE.lock().unwrap_or_else(|e| e.into_inner());
    loop {
        if let Some((block, off)) = st.as_mut() {
            while *off < PORT_BLOCK {
                let port = (PORT_BASE + *block * PORT_BLOCK + *off) as u16;
                *off += 1;
                if port_is_free(port) {
                    return port;
                }
            }
        }
        let start = std::process::id() % PORT_BLOCKS;
        let block = (0..PORT_BLOCKS)
            .map(|i| (start + i) % PORT_BLOCKS)
            .find(|b| Some(*b) != st.map(|s| s.0) && try_lock("ports", *b))
            .unwrap_or_else(|| panic!("no free port block: all {PORT_BLOCKS} are locked"));
        *st = Some((block, 0));
    }
}

fn port_is_free(port: u16) -> bool {
    let v4 = TcpListener::bind(SocketAddr::from((Ipv4Addr::LOCALHOST, port)));
    let v6 = TcpListener::bind(SocketAddr::from((Ipv6Addr::LOCALHOST, port)));
    v4.is_ok() && v6.is_ok()
}

/// Polls `f` until it returns `Some`, for at most `timeout`. Expiry panics
/// with "timed out after ... waiting for {what}": the thing did not happen.
pub fn wait_until<T>(timeout: Duration, what: impl Display, mut f: impl FnMut() -> Option<T>) -> T {
    let start = Instant::now();
    let mut pause = Duration::from_millis(20);
    loop {
        if let Some(v) = f() {
            return v;
        }
        if start.elapsed() >= timeout {
            panic!("timed out after {timeout:?} waiting for {what}");
        }
        std::thread::sleep(pause);
        pause = (pause * 2).min(Duration::from_millis(250));
    }
}

/// [`wait_until`] for a condition.
pub fn wait_for(timeout: Duration, what: impl Display, mut f: impl FnMut() -> bool) {
    wait_until(timeout, what, || f().then_some(()))
}

/// True if a process with this pid exists.
pub(crate) fn pid_alive(pid: u32) -> bool {
    Path::new(&format!("/proc/{pid}")).exists()
}

/// Parses the `<pid>` out of names like `<prefix><pid>-<n>`.
fn owner_pid(name: &str, prefix: &str) -> Option<u32> {
    name.strip_prefix(prefix)?.split('-').next()?.parse().ok()
}

fn sweep_stale_once() {
    static ONCE: Once = Once::new();
    ONCE.call_once(sweep_stale);
}

/// Removes what test processes that no longer exist left behind (a SIGKILLed
/// `cargo test` runs no Drop): their cgroups, tmpfs mounts and their agents' pin dirs.
/// Namespaces and veths are named by index and replaced when the index is
/// next taken.
fn sweep_stale() {
    let root = crate::cgroup::cgroup2_root();
    if let Ok(entries) = fs::read_dir(&root) {
        for e in entries.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            if let Some(pid) = owner_pid(&name, crate::cgroup::PREFIX)
                && !pid_alive(pid)
            {
                eprintln!(
                    "mcp-warden-tests: removing stale cgroup {}",
                    e.path().display()
                );
                crate::cgroup::kill_and_remove(&e.path());
            }
        }
    }
    for mount in crate::tmpfs::mounted() {
        let name = mount
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        if let Some(pid) = owner_pid(&name, crate::tmpfs::PREFIX)
            && !pid_alive(pid)
        {
            eprintln!(
                "mcp-warden-tests: unmounting stale tmpfs {}",
                mount.display()
            );
            crate::tmpfs::unmount(&mount);
        }
    }
    let pins = PathBuf::from("/sys/fs/bpf/mcp-warden");
    if let Ok(entries) = fs::read_dir(&pins) {
        for e in entries.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            if let Some(pid) = owner_pid(&name, crate::agent::INSTANCE_PREFIX)
                && !pid_alive(pid)
            {
                eprintln!(
                    "mcp-warden-tests: removing stale pins {}",
                    e.path().display()
                );
                crate::agent::remove_pin_dir(&e.path());
            }
        }
    }
}

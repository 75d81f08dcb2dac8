//! Who made an intercepted connection: turns the kernel's [`Flow`] record into
//! an [`Identity`] for the audit log.
//!
//! The kernel record (pid, tid, uid, gid, comm, cgroup id) is authoritative and
//! always kept; everything else is read from /proc and is best effort, because
//! the process may already have exited. Every read is bounded, and the process
//! environment is only ever inspected through an allowlist of CI variables so
//! that no secret from it can reach the audit log; credentials in the command
//! line are redacted before it is recorded.

use std::collections::HashMap;
use std::ffi::OsStr;
use std::fs::File;
use std::hash::Hash;
use std::io::{self, Read};
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{DirEntryExt, MetadataExt};
use std::path::{Component, Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use mcp_warden_common::Flow;
use nix::fcntl::{OFlag, openat, readlinkat};
use nix::sys::stat::Mode;
use nix::unistd::{Gid, Group, Uid, User};
use serde::Serialize;
use tracing::debug;

/// Bytes of the command line kept in the record (before the "…" marker).
mod redact;
use redact::redact_args;

const CMDLINE_MAX: usize = 1024;
/// Bytes of /proc/<pid>/cmdline read: enough to fill CMDLINE_MAX after NUL
/// replacement and still know that it was cut.
const CMDLINE_READ: usize = 4 * 1024;
/// Bytes of /proc/<pid>/environ read; a CI job's variables sit near the top.
const ENVIRON_READ: usize = 256 * 1024;
/// An allowlisted value longer than this is dropped, not cut: cutting a URL
/// before its '@' would defeat the credential stripping below.
const ENV_VALUE_RAW_MAX: usize = 4 * 1024;
/// Bytes kept of each CI value in the record.
const CI_VALUE_MAX: usize = 256;
/// Bytes read of /proc/<pid>/cgroup and /proc/<pid>/stat.
const SMALL_READ: usize = 64 * 1024;
/// Bounds of the search for a cgroup directory by id.
const WALK_MAX_DEPTH: usize = 16;
const WALK_MAX_DIRS: usize = 100_000;
/// Walk results are cached briefly: the walk is expensive, cgroups come and go.
const CGROUP_CACHE_TTL: Duration = Duration::from_secs(10);
const CGROUP_CACHE_MAX: usize = 1024;
/// Account names rarely change, but NSS lookups may be slow (LDAP, sssd).
const NAME_CACHE_TTL: Duration = Duration::from_secs(300);
const NAME_CACHE_MAX: usize = 4096;

/// The caller of an intercepted connection, as written to the audit log.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Identity {
    pub uid: u32,
    pub user: Option<String>,
    pub gid: u32,
    pub group: Option<String>,
    pub pid: u32,
    pub tid: u32,
    /// readlink of /proc/<pid>/exe, " (deleted)" suffix kept as the kernel gives it.
    pub exe: Option<String>,
    /// From the kernel record, so present even when the process is gone.
    pub comm: String,
    /// NULs as spaces, credentials replaced by "[REDACTED]" (see
    /// `redact_args`), at most 1024 bytes plus "…" when cut.
    pub cmdline: Option<String>,
    /// cgroup v2 path relative to the cgroup2 mount, e.g. "/system.slice/x.service".
    pub cgroup: Option<String>,
    pub cgroup_id: u64,
    /// The systemd unit named in `cgroup`.
    pub unit: Option<String>,
    pub ci: Option<CiJob>,
}

/// The CI job a process belongs to, from allowlisted environment variables only.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct CiJob {
    /// "github-actions" | "gitlab-ci" | "jenkins" | "buildkite"
    pub provider: String,
    pub run_id: Option<String>,
    pub job_id: Option<String>,
    pub job_name: Option<String>,
    pub repository: Option<String>,
    pub actor: Option<String>,
}

impl Identity {
    /// What the kernel recorded; the rest is filled in when /proc allows.
    pub fn from_flow(flow: &Flow) -> Self {
        Identity {
            uid: flow.uid,
            user: None,
            gid: flow.gid,
            group: None,
            pid: flow.pid,
            tid: flow.tid,
            exe: None,
            comm: flow.comm().to_string(),
            cmdline: None,
            cgroup: None,
            cgroup_id: flow.cgroup_id,
            unit: None,
            ci: None,
        }
    }

    /// A caller for tests of code that only carries identities along.
    #[cfg(test)]
    pub fn test_caller() -> Self {
        Identity {
            uid: 1000,
            user: Some("tester".into()),
            gid: 1000,
            group: Some("tester".into()),
            pid: 4242,
            tid: 4242,
            exe: Some("/usr/bin/python3".into()),
            comm: "python3".into(),
            cmdline: None,
            cgroup: None,
            cgroup_id: 0,
            unit: None,
            ci: None,
        }
    }
}

/// Builds identities; shared by all connections (the caches are behind locks).
pub struct Identifier {
    proc_root: PathBuf,
    cgroup_root: PathBuf,
    cgroups: Mutex<TtlCache<u64, Option<String>>>,
    users: Mutex<TtlCache<u32, Option<String>>>,
    groups: Mutex<TtlCache<u32, Option<String>>>,
}

impl Identifier {
    pub fn new(cgroup2_mount: PathBuf) -> Self {
        Identifier {
            proc_root: PathBuf::from("/proc"),
            cgroup_root: cgroup2_mount,
            cgroups: Mutex::new(TtlCache::new(CGROUP_CACHE_TTL, CGROUP_CACHE_MAX)),
            users: Mutex::new(TtlCache::new(NAME_CACHE_TTL, NAME_CACHE_MAX)),
            groups: Mutex::new(TtlCache::new(NAME_CACHE_TTL, NAME_CACHE_MAX)),
        }
    }

    /// Reads processes from another tree than /proc (tests).
    pub fn with_proc_root(mut self, proc_root: PathBuf) -> Self {
        self.proc_root = proc_root;
        self
    }

    /// Never fails: whatever cannot be read (process gone, permission) is None.
    pub fn identify(&self, flow: &Flow) -> Identity {
        let mut id = Identity::from_flow(flow);
        id.user = self.user_name(flow.uid);
        id.group = self.group_name(flow.gid);

        let proc_dir = self.open_process(flow);
        if let Some(dir) = &proc_dir {
            id.exe = readlinkat(dir, "exe")
                .ok()
                .map(|p| p.to_string_lossy().into_owned());
            id.cmdline = read_at(dir, "cmdline", CMDLINE_READ)
                .and_then(|(raw, cut)| format_cmdline(&raw, cut));
            id.ci = read_at(dir, "environ", ENVIRON_READ).and_then(|(mut raw, cut)| {
                let ci = ci_from_environ(&raw, cut);
                // The buffer held every variable of the process, tokens included.
                raw.fill(0);
                std::hint::black_box(&raw);
                ci
            });
        }
        // The cgroup can outlive the process, so this works without it too.
        id.cgroup = self.cgroup_path(proc_dir.as_ref(), flow.cgroup_id);
        id.unit = id.cgroup.as_deref().and_then(unit_from_cgroup_path);
        id
    }

    /// /proc/<pid> as a directory fd: reads through it fail once the process
    /// is gone instead of reaching a new process that reused the pid.
    fn open_process(&self, flow: &Flow) -> Option<OwnedFd> {
        if flow.pid == 0 {
            return None;
        }
        let path = self.proc_root.join(flow.pid.to_string());
        let dir = openat(
            nix::fcntl::AT_FDCWD,
            &path,
            OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
            Mode::empty(),
        )
        .map_err(|e| debug!(pid = flow.pid, error = %e, "process gone before identification"))
        .ok()?;
        if started_after(&dir, flow.ktime_ns) {
            debug!(
                pid = flow.pid,
                "pid reused since the connect; keeping the kernel record only"
            );
            return None;
        }
        Some(dir)
    }

    fn user_name(&self, uid: u32) -> Option<String> {
        cached_name(&self.users, uid, || {
            User::from_uid(Uid::from_raw(uid)).map(|u| u.map(|u| u.name))
        })
    }

    fn group_name(&self, gid: u32) -> Option<String> {
        cached_name(&self.groups, gid, || {
            Group::from_gid(Gid::from_raw(gid)).map(|g| g.map(|g| g.name))
        })
    }

    /// The cgroup path of `cgroup_id`: the process's own entry when it still
    /// names that cgroup, otherwise a (cached) search of the cgroup2 tree.
    fn cgroup_path(&self, proc_dir: Option<&OwnedFd>, cgroup_id: u64) -> Option<String> {
        if cgroup_id == 0 {
            return None; // no cgroup v2 id was recorded
        }
        let root_dev = std::fs::metadata(&self.cgroup_root).ok()?.dev();
        if let Some(path) = proc_dir.and_then(proc_cgroup_path)
            && self.names_cgroup(&path, cgroup_id, root_dev)
        {
            return Some(path);
        }
        let cached = lock(&self.cgroups).get(&cgroup_id);
        match cached {
            // Re-checked so that a removed (and maybe re-created) directory is
            // never reported for an id it no longer has.
            Some(Some(path)) if self.names_cgroup(&path, cgroup_id, root_dev) => return Some(path),
            Some(Some(_)) => lock(&self.cgroups).remove(&cgroup_id),
            // Ids are not reused, so a cgroup that was not found stays gone.
            Some(None) => return None,
            None => {}
        }
        let found = find_cgroup(&self.cgroup_root, cgroup_id, root_dev);
        lock(&self.cgroups).insert(cgroup_id, found.clone());
        found
    }

    /// Does `path` (relative to the cgroup2 mount) name the cgroup `id`? The
    /// v2 id is the inode number of the directory; the device check keeps a
    /// path that escapes the mount from matching by accident.
    fn names_cgroup(&self, path: &str, id: u64, root_dev: u64) -> bool {
        let Some(rel) = relative_cgroup_path(path) else {
            return false;
        };
        std::fs::symlink_metadata(self.cgroup_root.join(rel))
            .is_ok_and(|m| m.is_dir() && m.ino() == id && m.dev() == root_dev)
    }
}

/// The cgroup2 mount point, from /proc/self/mountinfo.
pub fn cgroup2_mount() -> io::Result<PathBuf> {
    let mountinfo = std::fs::read_to_string("/proc/self/mountinfo")?;
    cgroup2_mount_in(&mountinfo).ok_or_else(|| {
        io::Error::new(
            io::ErrorKind::NotFound,
            "no cgroup2 mount in /proc/self/mountinfo",
        )
    })
}

/// Prefers a mount of the hierarchy's root, so paths from /proc/<pid>/cgroup
/// line up with directories under it.
fn cgroup2_mount_in(mountinfo: &str) -> Option<PathBuf> {
    let mut fallback = None;
    for line in mountinfo.lines() {
        // id parent maj:min root mount-point options [optional...] - fstype source super-options
        let fields: Vec<&str> = line.split(' ').collect();
        let Some(sep) = fields.iter().skip(6).position(|f| *f == "-").map(|i| i + 6) else {
            continue;
        };
        if fields.get(sep + 1) != Some(&"cgroup2") {
            continue;
        }
        let mount = PathBuf::from(unescape_mountinfo(fields[4]));
        if fields[3] == "/" {
            return Some(mount);
        }
        fallback.get_or_insert(mount);
    }
    fallback
}

/// mountinfo escapes space, tab, newline and backslash as \ooo.
fn unescape_mountinfo(field: &str) -> std::ffi::OsString {
    let b = field.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\'
            && i + 3 < b.len()
            && b[i + 1..i + 4].iter().all(|c| (b'0'..=b'7').contains(c))
        {
            out.push((b[i + 1] - b'0') * 64 + (b[i + 2] - b'0') * 8 + (b[i + 3] - b'0'));
            i += 4;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    OsStr::from_bytes(&out).to_os_string()
}

/// The systemd unit of a cgroup: its last component that is a service or scope
/// (a container's scope nested under a service wins over the service).
pub fn unit_from_cgroup_path(path: &str) -> Option<String> {
    path.split('/')
        .rev()
        .find(|c| {
            [".service", ".scope"]
                .iter()
                .any(|suffix| c.len() > suffix.len() && c.ends_with(suffix))
        })
        .map(str::to_string)
}

/// The "0::" (cgroup v2) entry of /proc/<pid>/cgroup.
fn proc_cgroup_path(dir: &OwnedFd) -> Option<String> {
    let (raw, _) = read_at(dir, "cgroup", SMALL_READ)?;
    let text = String::from_utf8_lossy(&raw);
    let path = text.lines().find_map(|l| l.strip_prefix("0::"))?;
    // A removed cgroup cannot be confirmed by its id; let the search decide.
    if path.ends_with(" (deleted)") {
        return None;
    }
    Some(path.to_string())
}

/// `path` without its leading '/', if it stays inside the mount (a process in
/// another cgroup namespace shows up as "/../..").
fn relative_cgroup_path(path: &str) -> Option<&Path> {
    let rel = Path::new(path.strip_prefix('/')?);
    rel.components()
        .all(|c| matches!(c, Component::Normal(_)))
        .then_some(rel)
}

/// Searches the cgroup2 tree for the directory whose inode is `id`. Bounded in
/// depth and directories visited; d_ino from readdir avoids a stat per entry.
fn find_cgroup(root: &Path, id: u64, root_dev: u64) -> Option<String> {
    if std::fs::metadata(root).is_ok_and(|m| m.ino() == id) {
        return Some("/".to_string());
    }
    let mut stack = vec![(root.to_path_buf(), String::new(), 0usize)];
    let mut visited = 0usize;
    while let Some((dir, rel, depth)) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries.flatten() {
            // d_type, no stat; symlinks are never followed.
            if !entry.file_type().is_ok_and(|t| t.is_dir()) {
                continue;
            }
            visited += 1;
            if visited > WALK_MAX_DIRS {
                debug!(
                    cgroup_id = id,
                    "cgroup search gave up after {WALK_MAX_DIRS} directories"
                );
                return None;
            }
            let child_rel = format!("{rel}/{}", entry.file_name().to_string_lossy());
            if entry.ino() == id {
                let confirmed = std::fs::symlink_metadata(entry.path())
                    .is_ok_and(|m| m.ino() == id && m.dev() == root_dev);
                if confirmed {
                    return Some(child_rel);
                }
            }
            if depth + 1 < WALK_MAX_DEPTH {
                stack.push((entry.path(), child_rel, depth + 1));
            }
        }
    }
    None
}

/// Reads at most `limit` bytes of `name` under `dir`; the flag says whether
/// there was more. Non-blocking open so a FIFO in a fake tree cannot hang us.
fn read_at(dir: &OwnedFd, name: &str, limit: usize) -> Option<(Vec<u8>, bool)> {
    let flags = OFlag::O_RDONLY
        | OFlag::O_CLOEXEC
        | OFlag::O_NOFOLLOW
        | OFlag::O_NONBLOCK
        | OFlag::O_NOCTTY;
    let fd = openat(dir.as_fd(), name, flags, Mode::empty()).ok()?;
    let mut buf = Vec::new();
    // A read error means a dying process: discard rather than keep a fragment.
    File::from(fd)
        .take(limit as u64 + 1)
        .read_to_end(&mut buf)
        .ok()?;
    let cut = buf.len() > limit;
    buf.truncate(limit);
    Some((buf, cut))
}

/// True only when the process behind `dir` provably started after the connect
/// recorded at `ktime_ns` (CLOCK_MONOTONIC), i.e. its pid was reused.
fn started_after(dir: &OwnedFd, ktime_ns: u64) -> bool {
    if ktime_ns == 0 {
        return false; // no time recorded: cannot tell
    }
    let Some(start_ticks) =
        read_at(dir, "stat", SMALL_READ).and_then(|(raw, _)| stat_starttime(&raw))
    else {
        return false;
    };
    let tick_ns = 1_000_000_000 / clock_ticks_per_sec();
    // starttime counts from boot including suspend; the offset now is at least
    // the one at connect time, so this errs towards keeping the process.
    let start_ns = start_ticks.saturating_mul(tick_ns);
    let connect_ns = ktime_ns
        .saturating_add(boottime_minus_monotonic_ns())
        .saturating_add(tick_ns);
    start_ns > connect_ns
}

/// Field 22 of /proc/<pid>/stat, counted after the comm, which may hold ") ".
fn stat_starttime(stat: &[u8]) -> Option<u64> {
    let after_comm = &stat[stat.iter().rposition(|&b| b == b')')? + 1..];
    let field = std::str::from_utf8(after_comm)
        .ok()?
        .split_ascii_whitespace()
        .nth(22 - 3)?;
    field.parse().ok()
}

fn clock_ticks_per_sec() -> u64 {
    // SAFETY: sysconf has no memory-safety preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if hz > 0 { hz as u64 } else { 100 }
}

fn boottime_minus_monotonic_ns() -> u64 {
    fn now(clock: libc::clockid_t) -> u64 {
        let mut ts = libc::timespec {
            tv_sec: 0,
            tv_nsec: 0,
        };
        // SAFETY: ts is a valid, writable timespec for the duration of the call.
        if unsafe { libc::clock_gettime(clock, &mut ts) } != 0 {
            return 0;
        }
        (ts.tv_sec as u64)
            .saturating_mul(1_000_000_000)
            .saturating_add(ts.tv_nsec as u64)
    }
    let mono = now(libc::CLOCK_MONOTONIC);
    now(libc::CLOCK_BOOTTIME).saturating_sub(mono)
}

/// The NUL-separated arguments, lossily decoded and with credentials
/// redacted ([`redact::redact_args`]), joined by spaces; cut on a char boundary with
/// "…" when too long.
fn format_cmdline(raw: &[u8], was_cut: bool) -> Option<String> {
    let end = raw.iter().rposition(|&b| b != 0)? + 1;
    let mut args: Vec<String> = raw[..end]
        .split(|&b| b == 0)
        .map(|arg| String::from_utf8_lossy(arg).into_owned())
        .collect();
    redact_args(&mut args, was_cut);
    let mut s = args.join(" ");
    if was_cut || s.len() > CMDLINE_MAX {
        s.truncate(floor_char_boundary(&s, CMDLINE_MAX));
        s.push('…');
    }
    Some(s)
}

fn floor_char_boundary(s: &str, max: usize) -> usize {
    if max >= s.len() {
        return s.len();
    }
    (0..=max)
        .rev()
        .find(|&i| s.is_char_boundary(i))
        .unwrap_or(0)
}

/// The only environment variables ever looked at. Everything else in
/// /proc/<pid>/environ (tokens, keys, passwords) is skipped unread.
const CI_VARS: &[&str] = &[
    // GitHub Actions
    "GITHUB_ACTIONS",
    "GITHUB_RUN_ID",
    "GITHUB_RUN_ATTEMPT",
    "GITHUB_JOB",
    "GITHUB_WORKFLOW",
    "GITHUB_REPOSITORY",
    "GITHUB_ACTOR",
    // GitLab CI
    "GITLAB_CI",
    "CI_PIPELINE_ID",
    "CI_JOB_ID",
    "CI_JOB_NAME",
    "CI_PROJECT_PATH",
    "GITLAB_USER_LOGIN",
    // Jenkins (JENKINS_URL only for its presence; its value is never kept)
    "JENKINS_URL",
    "BUILD_TAG",
    "BUILD_NUMBER",
    "BUILD_ID",
    "JOB_NAME",
    "GIT_URL",
    "BUILD_USER_ID",
    // Buildkite
    "BUILDKITE",
    "BUILDKITE_BUILD_ID",
    "BUILDKITE_JOB_ID",
    "BUILDKITE_LABEL",
    "BUILDKITE_PIPELINE_SLUG",
    "BUILDKITE_REPO",
    "BUILDKITE_BUILD_CREATOR",
];

/// Allowlisted values, indexed like [`CI_VARS`].
struct CiEnv(Vec<Option<String>>);

impl CiEnv {
    fn get(&self, name: &str) -> Option<&str> {
        let i = CI_VARS.iter().position(|v| *v == name)?;
        self.0[i].as_deref()
    }

    /// A value cleaned and bounded for the record.
    fn value(&self, name: &str) -> Option<String> {
        self.get(name).and_then(clean_value)
    }

    /// A repository that may be a URL: credentials and query dropped first.
    fn repo(&self, name: &str) -> Option<String> {
        self.get(name)
            .map(strip_url_secrets)
            .as_deref()
            .and_then(clean_value)
    }

    fn is_true(&self, name: &str) -> bool {
        self.get(name)
            .is_some_and(|v| v.eq_ignore_ascii_case("true"))
    }
}

/// Picks out the allowlisted variables of a NUL-separated environment.
fn parse_ci_env(raw: &[u8], was_cut: bool) -> CiEnv {
    let mut values = vec![None; CI_VARS.len()];
    let mut entries: Vec<&[u8]> = raw.split(|&b| b == 0).collect();
    if was_cut {
        entries.pop(); // the last entry is a fragment; its value would be wrong
    }
    for entry in entries {
        let Some(eq) = entry.iter().position(|&b| b == b'=') else {
            continue;
        };
        let Some(i) = CI_VARS.iter().position(|v| v.as_bytes() == &entry[..eq]) else {
            continue;
        };
        let value = &entry[eq + 1..];
        // First occurrence wins, as with getenv().
        if values[i].is_none() && value.len() <= ENV_VALUE_RAW_MAX {
            values[i] = Some(String::from_utf8_lossy(value).into_owned());
        }
    }
    CiEnv(values)
}

fn ci_from_environ(raw: &[u8], was_cut: bool) -> Option<CiJob> {
    let env = parse_ci_env(raw, was_cut);
    let job = |provider: &str| CiJob {
        provider: provider.to_string(),
        run_id: None,
        job_id: None,
        job_name: None,
        repository: None,
        actor: None,
    };
    if env.is_true("GITHUB_ACTIONS") {
        let run_id = env
            .value("GITHUB_RUN_ID")
            .map(|run| match env.value("GITHUB_RUN_ATTEMPT") {
                Some(attempt) => clean_value(&format!("{run}/{attempt}")).unwrap_or(run),
                None => run,
            });
        return Some(CiJob {
            run_id,
            job_id: env.value("GITHUB_JOB"),
            job_name: env.value("GITHUB_WORKFLOW"),
            repository: env.repo("GITHUB_REPOSITORY"),
            actor: env.value("GITHUB_ACTOR"),
            ..job("github-actions")
        });
    }
    if env.is_true("GITLAB_CI") {
        return Some(CiJob {
            run_id: env.value("CI_PIPELINE_ID"),
            job_id: env.value("CI_JOB_ID"),
            job_name: env.value("CI_JOB_NAME"),
            repository: env.repo("CI_PROJECT_PATH"),
            actor: env.value("GITLAB_USER_LOGIN"),
            ..job("gitlab-ci")
        });
    }
    if env.is_true("BUILDKITE") {
        return Some(CiJob {
            run_id: env.value("BUILDKITE_BUILD_ID"),
            job_id: env.value("BUILDKITE_JOB_ID"),
            job_name: env.value("BUILDKITE_LABEL"),
            repository: env
                .repo("BUILDKITE_PIPELINE_SLUG")
                .or_else(|| env.repo("BUILDKITE_REPO")),
            actor: env.value("BUILDKITE_BUILD_CREATOR"),
            ..job("buildkite")
        });
    }
    // Jenkins sets no boolean marker; JENKINS_URL is its tell. Checked last as
    // the weakest signal.
    if env.get("JENKINS_URL").is_some() {
        return Some(CiJob {
            run_id: env.value("BUILD_TAG").or_else(|| env.value("BUILD_NUMBER")),
            job_id: env.value("BUILD_ID"),
            job_name: env.value("JOB_NAME"),
            repository: env.repo("GIT_URL"),
            actor: env.value("BUILD_USER_ID"),
            ..job("jenkins")
        });
    }
    None
}

/// Repository URLs may carry credentials ("https://user:token@host/...") or
/// tokens in the query; keep scheme, host and path only.
fn strip_url_secrets(url: &str) -> String {
    let url = url.split(['?', '#']).next().unwrap_or_default();
    if let Some(i) = url.find("://") {
        let (scheme, rest) = url.split_at(i + 3);
        let authority_end = rest.find('/').unwrap_or(rest.len());
        if let Some(at) = rest[..authority_end].rfind('@') {
            return format!("{scheme}{}", &rest[at + 1..]);
        }
    }
    url.to_string()
}

/// No control characters, at most CI_VALUE_MAX bytes, empty means absent.
fn clean_value(value: &str) -> Option<String> {
    let mut s: String = value.chars().filter(|c| !c.is_control()).collect();
    s.truncate(floor_char_boundary(&s, CI_VALUE_MAX));
    let s = s.trim();
    (!s.is_empty()).then(|| s.to_string())
}

/// Looks a name up once per TTL; "no such account" is cached too, lookup
/// errors are not (they may be transient NSS failures).
fn cached_name(
    cache: &Mutex<TtlCache<u32, Option<String>>>,
    id: u32,
    lookup: impl FnOnce() -> nix::Result<Option<String>>,
) -> Option<String> {
    if let Some(hit) = lock(cache).get(&id) {
        return hit;
    }
    match lookup() {
        Ok(name) => {
            lock(cache).insert(id, name.clone());
            name
        }
        Err(e) => {
            debug!(id, error = %e, "account name lookup failed");
            None
        }
    }
}

/// A poisoned lock only means another lookup panicked; the cache is still sound.
fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// A small map whose entries expire; bounded by dropping everything when full
/// of live entries (cheap, and a miss only costs a lookup).
struct TtlCache<K, V> {
    map: HashMap<K, (V, Instant)>,
    ttl: Duration,
    cap: usize,
}

impl<K: Eq + Hash, V: Clone> TtlCache<K, V> {
    fn new(ttl: Duration, cap: usize) -> Self {
        TtlCache {
            map: HashMap::new(),
            ttl,
            cap,
        }
    }

    fn get(&self, key: &K) -> Option<V> {
        self.map
            .get(key)
            .filter(|(_, at)| at.elapsed() < self.ttl)
            .map(|(v, _)| v.clone())
    }

    fn insert(&mut self, key: K, value: V) {
        if self.map.len() >= self.cap {
            let ttl = self.ttl;
            self.map.retain(|_, (_, at)| at.elapsed() < ttl);
            if self.map.len() >= self.cap {
                self.map.clear();
            }
        }
        self.map.insert(key, (value, Instant::now()));
    }

    fn remove(&mut self, key: &K) {
        self.map.remove(key);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;
    use std::os::unix::fs::symlink;

    const SECRET: &str = "ghp_SUPERSECRETVALUE123";

    fn flow(pid: u32, cgroup_id: u64) -> Flow {
        let mut comm = [0u8; 16];
        comm[..6].copy_from_slice(b"python");
        Flow {
            pid,
            tid: pid + 1,
            uid: 4_000_000_001,
            gid: 4_000_000_002,
            cgroup_id,
            comm,
            ..Flow::default()
        }
    }

    /// A fake /proc with one process, and a fake cgroup2 tree.
    struct Fake {
        proc_root: tempfile::TempDir,
        cgroup_root: tempfile::TempDir,
    }

    impl Fake {
        fn new() -> Self {
            Fake {
                proc_root: tempfile::tempdir().unwrap(),
                cgroup_root: tempfile::tempdir().unwrap(),
            }
        }

        fn process(&self, pid: u32, files: &[(&str, &[u8])]) -> PathBuf {
            let dir = self.proc_root.path().join(pid.to_string());
            fs::create_dir_all(&dir).unwrap();
            for (name, content) in files {
                fs::write(dir.join(name), content).unwrap();
            }
            dir
        }

        /// Creates a cgroup directory and returns its id (inode).
        fn cgroup(&self, path: &str) -> u64 {
            let dir = self.cgroup_root.path().join(path.trim_start_matches('/'));
            fs::create_dir_all(&dir).unwrap();
            fs::metadata(dir).unwrap().ino()
        }

        fn identifier(&self) -> Identifier {
            Identifier::new(self.cgroup_root.path().to_path_buf())
                .with_proc_root(self.proc_root.path().to_path_buf())
        }
    }

    fn environ(vars: &[(&str, &str)]) -> Vec<u8> {
        let mut out = Vec::new();
        for (k, v) in vars {
            out.extend_from_slice(format!("{k}={v}\0").as_bytes());
        }
        out
    }

    fn ci_of(vars: &[(&str, &str)]) -> Option<CiJob> {
        let fake = Fake::new();
        fake.process(100, &[("environ", &environ(vars))]);
        fake.identifier().identify(&flow(100, 0)).ci
    }

    #[test]
    fn unit_is_the_last_service_or_scope() {
        let cases = [
            (
                "/system.slice/gitlab-runner.service",
                Some("gitlab-runner.service"),
            ),
            (
                "/user.slice/user-1000.slice/session-3.scope",
                Some("session-3.scope"),
            ),
            (
                "/system.slice/docker.service/docker-0123abcd.scope",
                Some("docker-0123abcd.scope"),
            ),
            (
                "/system.slice/gitlab-runner.service/payload",
                Some("gitlab-runner.service"),
            ),
            ("/user.slice/user-1000.slice", None),
            ("/", None),
            ("", None),
            ("/system.slice/.service", None),
        ];
        for (path, unit) in cases {
            assert_eq!(unit_from_cgroup_path(path).as_deref(), unit, "{path}");
        }
    }

    #[test]
    fn cmdline_nuls_become_spaces() {
        let fake = Fake::new();
        fake.process(7, &[("cmdline", b"python3\0-m\0server\0")]);
        let id = fake.identifier().identify(&flow(7, 0));
        assert_eq!(id.cmdline.as_deref(), Some("python3 -m server"));
    }

    #[test]
    fn cmdline_is_cut_on_a_char_boundary() {
        // 1023 ASCII bytes then "é" (2 bytes) straddling the 1024 limit.
        let mut raw = vec![b'a'; 1023];
        raw.extend_from_slice("é".as_bytes());
        raw.extend_from_slice(b"\0tail\0");
        let fake = Fake::new();
        fake.process(7, &[("cmdline", &raw)]);
        let cmdline = fake.identifier().identify(&flow(7, 0)).cmdline.unwrap();
        assert_eq!(cmdline, format!("{}…", "a".repeat(1023)));

        // Longer than what is read at all: still bounded and marked.
        let fake = Fake::new();
        fake.process(8, &[("cmdline", &"€".repeat(10_000).into_bytes())]);
        let cmdline = fake.identifier().identify(&flow(8, 0)).cmdline.unwrap();
        assert!(cmdline.ends_with('…'));
        assert_eq!(cmdline.len(), 1023 + '…'.len_utf8()); // 341 whole "€"
        assert!(cmdline.trim_end_matches('…').chars().all(|c| c == '€'));
    }

    /// A URL cut by the cmdline read bound before its '@': the fragment of
    /// the credential must not reach the record.
    #[test]
    fn url_cut_by_the_read_bound_is_redacted() {
        let mut raw = b"git\0clone\0https://deploy:".to_vec();
        raw.resize(CMDLINE_READ + 10, b'S');
        raw.extend_from_slice(b"@git.local/x\0");
        let fake = Fake::new();
        fake.process(7, &[("cmdline", &raw)]);
        let cmdline = fake.identifier().identify(&flow(7, 0)).cmdline.unwrap();
        assert_eq!(cmdline, "git clone https://[REDACTED]…");
    }

    #[test]
    fn cmdline_secrets_never_reach_the_record() {
        let argv: &[&str] = &[
            "/usr/bin/curl",
            "-H",
            "Authorization: Bearer SUPERSECRET-1",
            "--header=X-Api-Key: SUPERSECRET-2",
            "-u",
            "bot:SUPERSECRET-3",
            "--password",
            "SUPERSECRET-4",
            "--token=SUPERSECRET-5",
            "API_KEY=SUPERSECRET-6",
            "https://deploy:SUPERSECRET-7@mcp.local/sse?api_key=SUPERSECRET-8",
            "Basic SUPERSECRET-9",
        ];
        let raw = argv.join("\0") + "\0";
        let fake = Fake::new();
        fake.process(200, &[("cmdline", raw.as_bytes())]);
        let id = fake.identifier().identify(&flow(200, 0));
        let json = serde_json::to_string(&id).unwrap();
        assert!(
            json.contains("/usr/bin/curl -H Authorization: [REDACTED]"),
            "{json}"
        );
        assert!(json.contains("mcp.local/sse"), "{json}");
        assert!(!json.contains("SUPERSECRET"), "{json}");
    }

    #[test]
    fn redaction_happens_before_the_bound() {
        // A long token would otherwise push what follows it off the record,
        // and the bound could cut an argument before the text a rule matches.
        let token = "t".repeat(3000);
        let raw = format!("tool\0--token\0{token}\0--port\08080\0");
        let cmdline = format_cmdline(raw.as_bytes(), false).unwrap();
        assert_eq!(cmdline, "tool --token [REDACTED] --port 8080");
        let raw = format!("tool\0{}\0API_KEY={token}\0", "a".repeat(1000));
        let cmdline = format_cmdline(raw.as_bytes(), false).unwrap();
        assert!(cmdline.ends_with(" API_KEY=[REDACTED]"), "{cmdline}");
        // Cut after redaction: never a fragment of the secret.
        let raw = format!("tool\0{}\0API_KEY={token}\0", "a".repeat(1010));
        let cmdline = format_cmdline(raw.as_bytes(), false).unwrap();
        assert!(cmdline.ends_with(" API_KEY=…"), "{cmdline}");
    }

    #[test]
    fn redaction_never_panics() {
        let alphabet: &[&[u8]] = &[
            b"-",
            b"--",
            b"=",
            b":",
            b"@",
            b"/",
            b"://",
            b"\"",
            b"'",
            b" ",
            b"\t",
            b"\0",
            b"&",
            b",",
            b"H",
            b"u",
            b"p",
            b"key",
            b"Token",
            b"Bearer",
            b"basic",
            b"PASS",
            b"_",
            b".",
            "é".as_bytes(),
            "€".as_bytes(),
            b"\xff",
            b"\xc3",
            b"\xe2\x82",
            b"mysql",
            b"curl",
        ];
        let mut state = 0x9e37_79b9_7f4a_7c15_u64;
        let mut next = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        for _ in 0..5000 {
            let mut raw = Vec::new();
            for _ in 0..next() % 40 {
                raw.extend_from_slice(alphabet[(next() % alphabet.len() as u64) as usize]);
            }
            let cut = next() % 2 == 0;
            if let Some(s) = format_cmdline(&raw, cut) {
                assert!(s.len() <= CMDLINE_MAX + '…'.len_utf8());
            }
        }
    }

    #[test]
    fn exe_is_the_link_target() {
        let fake = Fake::new();
        let dir = fake.process(9, &[]);
        symlink("/usr/bin/python3.12 (deleted)", dir.join("exe")).unwrap();
        let id = fake.identifier().identify(&flow(9, 0));
        assert_eq!(id.exe.as_deref(), Some("/usr/bin/python3.12 (deleted)"));
    }

    #[test]
    fn github_actions() {
        let ci = ci_of(&[
            ("GITHUB_TOKEN", SECRET),
            ("GITHUB_ACTIONS", "true"),
            ("GITHUB_RUN_ID", "987654"),
            ("GITHUB_RUN_ATTEMPT", "2"),
            ("GITHUB_JOB", "build"),
            ("GITHUB_WORKFLOW", "CI"),
            ("GITHUB_REPOSITORY", "acme/records"),
            ("GITHUB_ACTOR", "octocat"),
        ]);
        assert_eq!(
            ci,
            Some(CiJob {
                provider: "github-actions".into(),
                run_id: Some("987654/2".into()),
                job_id: Some("build".into()),
                job_name: Some("CI".into()),
                repository: Some("acme/records".into()),
                actor: Some("octocat".into()),
            })
        );
        let ci = ci_of(&[("GITHUB_ACTIONS", "true"), ("GITHUB_RUN_ID", "5")]).unwrap();
        assert_eq!(ci.run_id.as_deref(), Some("5"));
    }

    #[test]
    fn gitlab_ci() {
        let ci = ci_of(&[
            ("GITLAB_CI", "true"),
            ("CI_JOB_TOKEN", SECRET),
            ("CI_PIPELINE_ID", "4711"),
            ("CI_JOB_ID", "815"),
            ("CI_JOB_NAME", "test:unit"),
            ("CI_PROJECT_PATH", "health/emr"),
            ("GITLAB_USER_LOGIN", "alice"),
        ]);
        assert_eq!(
            ci,
            Some(CiJob {
                provider: "gitlab-ci".into(),
                run_id: Some("4711".into()),
                job_id: Some("815".into()),
                job_name: Some("test:unit".into()),
                repository: Some("health/emr".into()),
                actor: Some("alice".into()),
            })
        );
    }

    #[test]
    fn jenkins_strips_credentials_from_git_url() {
        let ci = ci_of(&[
            (
                "JENKINS_URL",
                &format!("https://admin:{SECRET}@jenkins.local/"),
            ),
            ("BUILD_NUMBER", "42"),
            ("BUILD_TAG", "jenkins-emr-42"),
            ("BUILD_ID", "42"),
            ("JOB_NAME", "emr"),
            (
                "GIT_URL",
                &format!("https://deploy:{SECRET}@git.local/health/emr.git?private_token={SECRET}"),
            ),
            ("BUILD_USER_ID", "bob"),
        ]);
        assert_eq!(
            ci,
            Some(CiJob {
                provider: "jenkins".into(),
                run_id: Some("jenkins-emr-42".into()),
                job_id: Some("42".into()),
                job_name: Some("emr".into()),
                repository: Some("https://git.local/health/emr.git".into()),
                actor: Some("bob".into()),
            })
        );
        let ci = ci_of(&[("JENKINS_URL", "http://j/"), ("BUILD_NUMBER", "7")]).unwrap();
        assert_eq!(ci.run_id.as_deref(), Some("7"));
    }

    #[test]
    fn buildkite() {
        let ci = ci_of(&[
            ("BUILDKITE", "true"),
            ("BUILDKITE_AGENT_ACCESS_TOKEN", SECRET),
            ("BUILDKITE_BUILD_ID", "0190-build"),
            ("BUILDKITE_JOB_ID", "0190-job"),
            ("BUILDKITE_LABEL", ":rust: test"),
            ("BUILDKITE_REPO", "git@github.com:acme/emr.git"),
            ("BUILDKITE_BUILD_CREATOR", "Carol"),
        ]);
        assert_eq!(
            ci,
            Some(CiJob {
                provider: "buildkite".into(),
                run_id: Some("0190-build".into()),
                job_id: Some("0190-job".into()),
                job_name: Some(":rust: test".into()),
                repository: Some("git@github.com:acme/emr.git".into()),
                actor: Some("Carol".into()),
            })
        );
        let ci = ci_of(&[
            ("BUILDKITE", "true"),
            ("BUILDKITE_PIPELINE_SLUG", "emr"),
            ("BUILDKITE_REPO", "x"),
        ]);
        assert_eq!(ci.unwrap().repository.as_deref(), Some("emr"));
    }

    #[test]
    fn no_ci_marker_no_ci() {
        assert_eq!(
            ci_of(&[
                ("GITHUB_RUN_ID", "1"),
                ("CI_JOB_ID", "2"),
                ("HOME", "/root")
            ]),
            None
        );
        assert_eq!(
            ci_of(&[("GITHUB_ACTIONS", "false"), ("GITHUB_RUN_ID", "1")]),
            None
        );
    }

    #[test]
    fn ci_values_are_cleaned_and_bounded() {
        let long = "x".repeat(1000);
        let ci = ci_of(&[
            ("GITHUB_ACTIONS", "true"),
            ("GITHUB_JOB", "bu\x1b[31mild\n"),
            ("GITHUB_WORKFLOW", &long),
            ("GITHUB_ACTOR", "\t\r"),
        ])
        .unwrap();
        assert_eq!(ci.job_id.as_deref(), Some("bu[31mild"));
        assert_eq!(ci.job_name.map(|s| s.len()), Some(CI_VALUE_MAX));
        assert_eq!(ci.actor, None);
    }

    #[test]
    fn secrets_never_reach_the_record() {
        let fake = Fake::new();
        let cg = fake.cgroup("/system.slice/gitlab-runner.service");
        let mut env = environ(&[
            ("GITHUB_TOKEN", SECRET),
            ("AWS_SECRET_ACCESS_KEY", SECRET),
            ("GITHUB_ACTIONS", "true"),
            ("GITHUB_RUN_ID", "1"),
            (
                "GITHUB_REPOSITORY",
                &format!("https://x:{SECRET}@github.com/a/b"),
            ),
            ("JENKINS_URL", SECRET),
        ]);
        env.extend_from_slice(format!("{SECRET}\0=={SECRET}\0GITHUB_JOB{SECRET}=x\0").as_bytes());
        fake.process(
            100,
            &[
                ("environ", &env),
                ("cmdline", b"runner\0"),
                ("cgroup", b"0::/system.slice/gitlab-runner.service\n"),
            ],
        );
        let id = fake.identifier().identify(&flow(100, cg));
        assert!(id.ci.is_some());
        let json = serde_json::to_string(&id).unwrap();
        assert!(!json.contains("SUPERSECRET"), "{json}");
        assert!(
            !json.contains("GITHUB_TOKEN") && !json.contains("AWS_SECRET"),
            "{json}"
        );
    }

    #[test]
    fn environ_beyond_the_bound_is_not_read() {
        // The marker fits; a run id straddling the bound would be a fragment;
        // variables past the bound are never seen.
        let mut env = environ(&[
            ("GITHUB_ACTIONS", "true"),
            ("FILLER", &"f".repeat(ENVIRON_READ - 64)),
        ]);
        env.extend_from_slice(b"GITHUB_RUN_ID=");
        env.resize(ENVIRON_READ - 2, b'1');
        env.extend_from_slice(b"99\0GITHUB_ACTOR=late\0");
        let fake = Fake::new();
        fake.process(5, &[("environ", &env)]);
        let ci = fake.identifier().identify(&flow(5, 0)).ci.unwrap();
        assert_eq!(ci.provider, "github-actions");
        assert_eq!(ci.run_id, None);
        assert_eq!(ci.actor, None);
    }

    #[test]
    fn missing_process_keeps_the_kernel_record() {
        let fake = Fake::new();
        let id = fake.identifier().identify(&flow(12345, 999_999_999));
        assert_eq!(
            id,
            Identity {
                uid: 4_000_000_001,
                user: None,
                gid: 4_000_000_002,
                group: None,
                pid: 12345,
                tid: 12346,
                exe: None,
                comm: "python".into(),
                cmdline: None,
                cgroup: None,
                cgroup_id: 999_999_999,
                unit: None,
                ci: None,
            }
        );
    }

    #[test]
    fn reused_pid_is_not_attributed() {
        // starttime (field 22) far in the future of the connect: another process.
        let stat = format!("77 (a) b) S {} 99999999999 0 0\n", "0 ".repeat(18));
        let fake = Fake::new();
        fake.process(77, &[("stat", stat.as_bytes()), ("cmdline", b"impostor\0")]);
        let mut f = flow(77, 0);
        f.ktime_ns = 1;
        let id = fake.identifier().identify(&f);
        assert_eq!(id.cmdline, None);
        assert_eq!(id.comm, "python");
        // Started before the connect: kept.
        let stat = format!("77 (a) b) S {} 1 0 0\n", "0 ".repeat(18));
        fake.process(77, &[("stat", stat.as_bytes())]);
        f.ktime_ns = 1_000_000_000_000;
        assert_eq!(
            fake.identifier().identify(&f).cmdline.as_deref(),
            Some("impostor")
        );
    }

    #[test]
    fn cgroup_from_proc_when_ids_match() {
        let fake = Fake::new();
        let cg = fake.cgroup("/system.slice/gitlab-runner.service");
        fake.process(
            3,
            &[(
                "cgroup",
                b"12:pids:/x\n0::/system.slice/gitlab-runner.service\n",
            )],
        );
        let id = fake.identifier().identify(&flow(3, cg));
        assert_eq!(
            id.cgroup.as_deref(),
            Some("/system.slice/gitlab-runner.service")
        );
        assert_eq!(id.unit.as_deref(), Some("gitlab-runner.service"));
    }

    #[test]
    fn cgroup_found_by_id_when_moved_or_gone() {
        let fake = Fake::new();
        let old = fake.cgroup("/system.slice/docker.service/docker-abc.scope");
        fake.cgroup("/system.slice/other.service");
        fake.cgroup("/user.slice/user-1000.slice");
        // The process has since moved elsewhere.
        fake.process(3, &[("cgroup", b"0::/system.slice/other.service\n")]);
        let ider = fake.identifier();
        let id = ider.identify(&flow(3, old));
        assert_eq!(
            id.cgroup.as_deref(),
            Some("/system.slice/docker.service/docker-abc.scope")
        );
        assert_eq!(id.unit.as_deref(), Some("docker-abc.scope"));
        // Process gone entirely: still found (and now cached).
        assert_eq!(ider.identify(&flow(4, old)).cgroup, id.cgroup);
        // A path escaping the mount is never trusted.
        fake.process(5, &[("cgroup", b"0::/../..\n")]);
        assert_eq!(ider.identify(&flow(5, 424242)).cgroup, None);
    }

    #[test]
    fn cached_cgroup_path_is_rechecked() {
        let fake = Fake::new();
        let a = fake.cgroup("/a.slice/x.service");
        let ider = fake.identifier();
        assert_eq!(
            ider.identify(&flow(1, a)).cgroup.as_deref(),
            Some("/a.slice/x.service")
        );
        // Removed: the cached path must not be served for the old id any more.
        fs::remove_dir(fake.cgroup_root.path().join("a.slice/x.service")).unwrap();
        assert_eq!(ider.identify(&flow(1, a)).cgroup, None);
    }

    #[test]
    fn walk_is_depth_bounded() {
        let fake = Fake::new();
        let deep: String = (0..WALK_MAX_DEPTH + 2).map(|i| format!("/d{i}")).collect();
        let id = fake.cgroup(&deep);
        assert_eq!(fake.identifier().identify(&flow(1, id)).cgroup, None);
        let shallow: String = (0..WALK_MAX_DEPTH).map(|i| format!("/s{i}")).collect();
        let id = fake.cgroup(&shallow);
        assert_eq!(
            fake.identifier().identify(&flow(1, id)).cgroup,
            Some(shallow)
        );
    }

    #[test]
    fn mountinfo_parsing() {
        let hybrid = "31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755\n\
            40 31 0:37 / /sys/fs/cgroup/systemd rw,relatime shared:9 - cgroup cgroup rw,name=systemd\n\
            41 31 0:38 / /sys/fs/cgroup/unified rw,relatime shared:10 - cgroup2 cgroup2 rw\n";
        assert_eq!(
            cgroup2_mount_in(hybrid),
            Some(PathBuf::from("/sys/fs/cgroup/unified"))
        );
        let v2 = "30 23 0:26 /sub /mnt/odd\\040dir rw - cgroup2 cgroup2 rw\n\
            31 23 0:26 / /sys/fs/cgroup rw,nosuid shared:4 - cgroup2 cgroup2 rw,nsdelegate\n";
        assert_eq!(cgroup2_mount_in(v2), Some(PathBuf::from("/sys/fs/cgroup")));
        let only_sub = "30 23 0:26 /sub /mnt/odd\\040dir rw - cgroup2 cgroup2 rw\n";
        assert_eq!(
            cgroup2_mount_in(only_sub),
            Some(PathBuf::from("/mnt/odd dir"))
        );
        assert_eq!(cgroup2_mount_in("garbage\n\n1 2 3\n"), None);
    }

    #[test]
    fn url_secrets_are_stripped() {
        assert_eq!(
            strip_url_secrets("https://u:p@h.x/a.git"),
            "https://h.x/a.git"
        );
        assert_eq!(
            strip_url_secrets("https://h.x/a.git?token=t#f"),
            "https://h.x/a.git"
        );
        assert_eq!(strip_url_secrets("ssh://git@h.x:22/a"), "ssh://h.x:22/a");
        assert_eq!(strip_url_secrets("https://h.x/p@ath"), "https://h.x/p@ath");
        assert_eq!(strip_url_secrets("acme/records"), "acme/records");
    }

    #[test]
    fn the_current_process() {
        let mount = cgroup2_mount().expect("this host has a cgroup2 mount");
        let own = fs::read_to_string("/proc/self/cgroup").unwrap();
        let path = own
            .lines()
            .find_map(|l| l.strip_prefix("0::"))
            .unwrap()
            .to_string();
        let cgroup_id = fs::metadata(mount.join(path.trim_start_matches('/')))
            .unwrap()
            .ino();

        let mut comm = [0u8; 16];
        comm[..4].copy_from_slice(b"test");
        let f = Flow {
            pid: std::process::id(),
            tid: nix::unistd::gettid().as_raw() as u32,
            uid: nix::unistd::getuid().as_raw(),
            gid: nix::unistd::getgid().as_raw(),
            cgroup_id,
            // Now, as the kernel would have stamped a connect just made.
            ktime_ns: {
                let mut ts = libc::timespec {
                    tv_sec: 0,
                    tv_nsec: 0,
                };
                // SAFETY: valid timespec pointer.
                assert_eq!(
                    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) },
                    0
                );
                ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
            },
            comm,
            ..Flow::default()
        };
        // The pid-reuse check parses the real stat and keeps this process.
        let stat = fs::read("/proc/self/stat").unwrap();
        let start = stat_starttime(&stat).expect("starttime parses");
        assert!(start > 0);
        let id = Identifier::new(mount.clone()).identify(&f);
        let exe = std::env::current_exe().unwrap();
        assert_eq!(id.exe.as_deref(), Some(exe.to_str().unwrap()));
        assert_eq!(id.uid, nix::unistd::getuid().as_raw());
        let expected_user = User::from_uid(nix::unistd::getuid())
            .unwrap()
            .map(|u| u.name);
        assert_eq!(id.user, expected_user);
        assert!(id.cmdline.as_deref().is_some_and(|c| !c.is_empty()));
        assert_eq!(id.comm, "test");
        assert_eq!(id.cgroup.as_deref(), Some(path.as_str()));
        let resolved = fs::metadata(mount.join(path.trim_start_matches('/'))).unwrap();
        assert_eq!(resolved.ino(), id.cgroup_id);
    }
}

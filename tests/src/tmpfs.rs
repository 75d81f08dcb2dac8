//! A small tmpfs mounted for one test (a disk that fills up on purpose).

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use crate::proc::{output_text, run};

/// Mount points are `/tmp/<PREFIX><pid>-<n>`: the sweep of stale runs
/// unmounts those of test processes that no longer exist.
pub(crate) const PREFIX: &str = "mcp-warden-tmpfs-";

/// A tmpfs of a given size at a fresh directory; Drop unmounts it (lazily
/// if it is still busy) and removes the directory, also while a failing
/// test unwinds.
pub struct Tmpfs {
    path: PathBuf,
}

impl Tmpfs {
    /// Mounts a tmpfs of `size` (mount's syntax: "3m", "512k").
    pub fn new(size: &str) -> Tmpfs {
        crate::require_root();
        static NEXT: AtomicU32 = AtomicU32::new(1);
        let path = std::env::temp_dir().join(format!(
            "{PREFIX}{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        ));
        fs::create_dir_all(&path).unwrap_or_else(|e| panic!("creating {}: {e}", path.display()));
        let guard = Tmpfs { path };
        guard.mount(&format!("size={size},mode=0700"));
        guard
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Changes the size in place (`mount -o remount,size=…`); files stay.
    pub fn resize(&self, size: &str) {
        self.mount(&format!("remount,size={size}"));
    }

    fn mount(&self, options: &str) {
        let mut cmd = Command::new("mount");
        cmd.args(["-t", "tmpfs", "-o", options, "mcp-warden-test"])
            .arg(&self.path);
        let out = run(cmd, Duration::from_secs(20));
        assert!(
            out.status.success(),
            "mount -o {options} {}: {}",
            self.path.display(),
            output_text(&out.stderr)
        );
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        unmount(&self.path);
    }
}

/// Unmounts `path` (lazily if busy) and removes the directory. Never panics.
pub(crate) fn unmount(path: &Path) {
    let umount = |lazy: bool| {
        let mut cmd = Command::new("umount");
        if lazy {
            cmd.arg("-l");
        }
        cmd.arg(path);
        run(cmd, Duration::from_secs(20)).status.success()
    };
    if !umount(false) && !umount(true) {
        eprintln!("mcp-warden-tests: cannot unmount {}", path.display());
        return;
    }
    if let Err(e) = fs::remove_dir(path) {
        eprintln!("mcp-warden-tests: cannot remove {}: {e}", path.display());
    }
}

/// Mount points of this harness's tmpfs mounts, from /proc/self/mounts.
pub(crate) fn mounted() -> Vec<PathBuf> {
    fs::read_to_string("/proc/self/mounts")
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.split_whitespace().nth(1))
        .filter(|p| {
            Path::new(p)
                .file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with(PREFIX))
        })
        .map(PathBuf::from)
        .collect()
}

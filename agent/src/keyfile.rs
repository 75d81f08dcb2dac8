//! The agent's own secret files in its state dir (the audit signing key, the
//! masking pseudonym key): created once with mode 0600 and never
//! overwritten, refused when group or others can read them.

use std::fs::{self, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::Path;

use anyhow::{Context, Result, bail};
use zeroize::Zeroizing;

/// Reads the secret at `path`, or writes `generate()`'s bytes there (mode
/// 0600, parent created) if there is none. When two processes race, the
/// one that loses reads the winner's file.
pub fn load_or_create(
    path: &Path,
    generate: impl FnOnce() -> Result<Zeroizing<Vec<u8>>>,
) -> Result<Zeroizing<Vec<u8>>> {
    match read_private(path) {
        Err(e)
            if e.downcast_ref::<io::Error>()
                .is_some_and(|e| e.kind() == io::ErrorKind::NotFound) => {}
        other => return other,
    }
    let secret = generate()?;
    if let Some(parent) = path.parent() {
        fs::create_dir_all(parent).with_context(|| format!("creating {}", parent.display()))?;
    }
    let created = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path);
    let mut file = match created {
        Ok(file) => file,
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => return read_private(path),
        Err(e) => return Err(e).with_context(|| format!("creating {}", path.display())),
    };
    file.write_all(&secret)
        .and_then(|()| file.sync_all())
        .with_context(|| format!("writing {}", path.display()))?;
    Ok(secret)
}

/// Reads a secret file that only its owner may read. A missing file is an
/// `io::Error` of kind `NotFound` in the chain.
fn read_private(path: &Path) -> Result<Zeroizing<Vec<u8>>> {
    let meta = fs::metadata(path)?;
    let mode = meta.permissions().mode();
    if mode & 0o077 != 0 {
        bail!(
            "{} is accessible to group or others (mode {:o}); expected 0600",
            path.display(),
            mode & 0o777
        );
    }
    let bytes = fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    if bytes.is_empty() {
        bail!("{} is empty", path.display());
    }
    Ok(Zeroizing::new(bytes))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn created_once_private_and_read_back() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub/key");
        let first = load_or_create(&path, || Ok(Zeroizing::new(vec![7; 32]))).unwrap();
        let mode = fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        let again = load_or_create(&path, || panic!("must not generate again")).unwrap();
        assert_eq!(*first, *again);
    }

    #[test]
    fn a_readable_key_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("key");
        fs::write(&path, b"secret").unwrap();
        fs::set_permissions(&path, fs::Permissions::from_mode(0o644)).unwrap();
        let e = load_or_create(&path, || unreachable!()).unwrap_err();
        assert!(e.to_string().contains("mode 644"), "{e}");
    }
}

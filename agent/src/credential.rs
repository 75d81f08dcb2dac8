//! The gateway-held upstream credential.
//!
//! The client never holds the real credential: whatever it sends (its leftover
//! key, say) is stripped, and the agent sets its own. Secrets are read from
//! files that systemd hands over (`LoadCredential=` → `$CREDENTIALS_DIRECTORY`)
//! or from a root-only absolute path, kept in zeroizing memory, and cannot be
//! printed: `Debug` shows a placeholder, and there is no `Display`.
//!
//! Static kinds live here; short-lived token kinds (OAuth2 client credentials,
//! token exchange, signed JWTs) implement the same [`Credential`] trait.

use std::fmt;
use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use zeroize::Zeroizing;

/// Request headers that carry client credentials; all are removed before the
/// gateway's own is set (plus any names an endpoint adds).
pub const CLIENT_CREDENTIAL_HEADERS: [&str; 5] = [
    "authorization",
    "proxy-authorization",
    "cookie",
    "x-api-key",
    "api-key",
];

/// A secret value. Zeroized on drop; never shown by `Debug`.
#[derive(Clone)]
pub struct Secret(Zeroizing<String>);

impl Secret {
    /// The value, for the one place that writes it onto the wire.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret([redacted])")
    }
}

/// A header the agent sets on every upstream request of an endpoint.
#[derive(Debug, Clone)]
pub struct InjectedHeader {
    pub name: String,
    pub value: Secret,
}

/// Something that yields the headers proving the gateway's identity upstream.
/// Static kinds answer from memory; token kinds refresh before expiry.
pub trait Credential: Send + Sync + fmt::Debug {
    /// The headers to set on the next upstream request.
    fn headers(&self) -> Result<Vec<InjectedHeader>>;
}

/// `kind = "bearer"`: `Authorization: Bearer <file content>`.
#[derive(Debug)]
pub struct Bearer {
    token: Secret,
}

/// `kind = "header"`: `<name>: <file content>`.
#[derive(Debug)]
pub struct StaticHeader {
    name: String,
    value: Secret,
}

impl Bearer {
    pub fn load(source: &SecretFile) -> Result<Self> {
        Ok(Self {
            token: source.read()?,
        })
    }
}

impl StaticHeader {
    pub fn load(name: &str, source: &SecretFile) -> Result<Self> {
        if name.is_empty()
            || !name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-_".contains(&b))
        {
            bail!("{name:?} is not a valid header name");
        }
        Ok(Self {
            name: name.to_string(),
            value: source.read()?,
        })
    }
}

impl Credential for Bearer {
    fn headers(&self) -> Result<Vec<InjectedHeader>> {
        let value = Secret(Zeroizing::new(format!("Bearer {}", self.token.expose())));
        Ok(vec![InjectedHeader {
            name: "authorization".into(),
            value,
        }])
    }
}

impl Credential for StaticHeader {
    fn headers(&self) -> Result<Vec<InjectedHeader>> {
        Ok(vec![InjectedHeader {
            name: self.name.clone(),
            value: self.value.clone(),
        }])
    }
}

/// A header with a literal value, for tests of the code that writes it.
#[cfg(test)]
pub fn test_header(name: &str, value: &str) -> InjectedHeader {
    InjectedHeader {
        name: name.into(),
        value: Secret(Zeroizing::new(value.into())),
    }
}

/// Where a secret is read from: a name relative to `$CREDENTIALS_DIRECTORY`,
/// or an absolute path that must be owned by root and private (no group/other bits).
#[derive(Debug, Clone)]
pub struct SecretFile {
    path: PathBuf,
    check_private: bool,
}

impl SecretFile {
    /// Resolves `file` as configured; `credentials_dir` is `$CREDENTIALS_DIRECTORY`.
    pub fn resolve(file: &str, credentials_dir: Option<&Path>) -> Result<Self> {
        let p = Path::new(file);
        if p.is_absolute() {
            return Ok(Self {
                path: p.to_path_buf(),
                check_private: true,
            });
        }
        if p.components().count() != 1 || file == ".." || file == "." {
            bail!(
                "credential file {file:?}: a relative name must be a plain file name under $CREDENTIALS_DIRECTORY"
            );
        }
        let Some(dir) = credentials_dir else {
            bail!(
                "credential file {file:?} is relative but $CREDENTIALS_DIRECTORY is not set \
                 (use systemd LoadCredential= or an absolute root-only path)"
            );
        };
        // systemd already made that directory private to the service
        Ok(Self {
            path: dir.join(p),
            check_private: false,
        })
    }

    /// `$CREDENTIALS_DIRECTORY` of this process, if systemd set one.
    pub fn credentials_dir() -> Option<PathBuf> {
        std::env::var_os("CREDENTIALS_DIRECTORY").map(PathBuf::from)
    }

    /// Reads the secret: trailing newlines removed, empty refused. Errors name the
    /// file, never its content.
    pub fn read(&self) -> Result<Secret> {
        let meta = fs::metadata(&self.path)
            .with_context(|| format!("credential file {}", self.path.display()))?;
        if self.check_private {
            if meta.uid() != 0 {
                bail!(
                    "credential file {} must be owned by root (uid {})",
                    self.path.display(),
                    meta.uid()
                );
            }
            if meta.mode() & 0o077 != 0 {
                bail!(
                    "credential file {} is accessible to group or others (mode {:o}); expected 0600 or 0400",
                    self.path.display(),
                    meta.mode() & 0o777
                );
            }
        }
        let raw = Zeroizing::new(
            fs::read(&self.path).with_context(|| format!("reading {}", self.path.display()))?,
        );
        let text = std::str::from_utf8(&raw)
            .with_context(|| format!("credential file {} is not UTF-8", self.path.display()))?;
        let value = text.trim_end_matches(['\n', '\r']);
        if value.is_empty() {
            bail!("credential file {} is empty", self.path.display());
        }
        if value.bytes().any(|b| b.is_ascii_control()) {
            // a header value cannot carry control characters; say so without echoing it
            bail!(
                "credential file {} holds control characters",
                self.path.display()
            );
        }
        Ok(Secret(Zeroizing::new(value.to_string())))
    }
}

/// True for a request header the client may have put its own credential in.
pub fn is_client_credential(name: &str, extra: &[String]) -> bool {
    CLIENT_CREDENTIAL_HEADERS
        .iter()
        .any(|h| h.eq_ignore_ascii_case(name))
        || extra.iter().any(|h| h.eq_ignore_ascii_case(name))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn write(dir: &Path, name: &str, content: &str, mode: u32) -> PathBuf {
        let p = dir.join(name);
        fs::write(&p, content).unwrap();
        fs::set_permissions(&p, fs::Permissions::from_mode(mode)).unwrap();
        p
    }

    #[test]
    fn bearer_from_the_credentials_directory() {
        let dir = tempfile::tempdir().unwrap();
        write(dir.path(), "ehr-token", "s3cr3t-gateway-token\n", 0o644);
        let src = SecretFile::resolve("ehr-token", Some(dir.path())).unwrap();
        let h = Bearer::load(&src).unwrap().headers().unwrap();
        assert_eq!(h[0].name, "authorization");
        assert_eq!(h[0].value.expose(), "Bearer s3cr3t-gateway-token");
    }

    #[test]
    fn static_header() {
        let dir = tempfile::tempdir().unwrap();
        write(dir.path(), "k", "abc123", 0o600);
        let src = SecretFile::resolve("k", Some(dir.path())).unwrap();
        let h = StaticHeader::load("X-Api-Key", &src)
            .unwrap()
            .headers()
            .unwrap();
        assert_eq!(
            (h[0].name.as_str(), h[0].value.expose()),
            ("X-Api-Key", "abc123")
        );
        assert!(StaticHeader::load("bad header", &src).is_err());
    }

    #[test]
    fn secrets_never_print() {
        let dir = tempfile::tempdir().unwrap();
        write(dir.path(), "t", "TOPSECRET", 0o600);
        let src = SecretFile::resolve("t", Some(dir.path())).unwrap();
        let bearer = Bearer::load(&src).unwrap();
        let shown = format!(
            "{bearer:?} {:?} {:#?}",
            bearer.headers().unwrap(),
            bearer.headers().unwrap()
        );
        assert!(!shown.contains("TOPSECRET"), "{shown}");
        assert!(shown.contains("redacted"));
    }

    #[test]
    fn absolute_paths_must_be_root_only() {
        let dir = tempfile::tempdir().unwrap();
        let open = write(dir.path(), "open", "TOPSECRET", 0o644);
        let err = SecretFile::resolve(open.to_str().unwrap(), None)
            .unwrap()
            .read()
            .unwrap_err()
            .to_string();
        assert!(err.contains("group or others"), "{err}");
        assert!(!err.contains("TOPSECRET"));
        let private = write(dir.path(), "private", "TOPSECRET", 0o600);
        let res = SecretFile::resolve(private.to_str().unwrap(), None)
            .unwrap()
            .read();
        // as root (CI) the file is root-owned and accepted; as anyone else, refused by owner
        // SAFETY: geteuid has no preconditions.
        if unsafe { libc::geteuid() } == 0 {
            assert_eq!(res.unwrap().expose(), "TOPSECRET");
        } else {
            assert!(res.unwrap_err().to_string().contains("owned by root"));
        }
    }

    #[test]
    fn relative_names_need_systemd_and_stay_inside() {
        let err = SecretFile::resolve("ehr-token", None)
            .unwrap_err()
            .to_string();
        assert!(err.contains("CREDENTIALS_DIRECTORY"), "{err}");
        let dir = tempfile::tempdir().unwrap();
        assert!(SecretFile::resolve("../etc/shadow", Some(dir.path())).is_err());
        assert!(SecretFile::resolve("a/b", Some(dir.path())).is_err());
    }

    #[test]
    fn empty_or_control_characters_are_refused_without_echo() {
        let dir = tempfile::tempdir().unwrap();
        write(dir.path(), "empty", "\n", 0o600);
        write(dir.path(), "ctl", "abc\r\ninjected: x", 0o600);
        let e = SecretFile::resolve("empty", Some(dir.path()))
            .unwrap()
            .read()
            .unwrap_err()
            .to_string();
        assert!(e.contains("empty"));
        let e = SecretFile::resolve("ctl", Some(dir.path()))
            .unwrap()
            .read()
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("control characters") && !e.contains("injected"),
            "{e}"
        );
    }

    #[test]
    fn client_credential_headers_are_recognised() {
        assert!(is_client_credential("Authorization", &[]));
        assert!(is_client_credential("COOKIE", &[]));
        assert!(is_client_credential(
            "X-Snowflake-Token",
            &["x-snowflake-token".into()]
        ));
        assert!(!is_client_credential("Accept", &[]));
    }
}

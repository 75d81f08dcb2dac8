//! The agent's Ed25519 signing key and what checkpoint signatures sign.
//!
//! A checkpoint's `sig` is Ed25519 over the ASCII text
//! `mcp-warden audit checkpoint v1 <hash>`, `<hash>` being the line's own
//! 64-hex hash; since that hash covers `prev`, one signature vouches for the
//! whole chain before it.

use std::fmt;
use std::fs::{self, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::Path;

use anyhow::{Context, Result, bail};
use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{ED25519, Ed25519KeyPair, KeyPair, UnparsedPublicKey};
use tracing::warn;

use super::chain::{Hash, Sig, hex, unhex};

/// File name of the key in the audit dir, unless the caller gives a path.
pub const KEY_FILE: &str = "signing.key";

const MESSAGE_PREFIX: &str = "mcp-warden audit checkpoint v1 ";
const PUBKEY_PREFIX: &str = "ed25519:";

/// The private key; never leaves the process.
pub struct SigningKey {
    pair: Ed25519KeyPair,
    public: PublicKey,
}

impl SigningKey {
    /// Reads the PKCS#8 key at `path`, or creates it (mode 0600) if absent.
    pub fn load_or_create(path: &Path) -> Result<Self> {
        match fs::read(path) {
            Ok(pkcs8) => {
                let mode = fs::metadata(path)?.permissions().mode();
                if mode & 0o077 != 0 {
                    warn!(path = %path.display(), mode = format!("{mode:o}"), "audit signing key is readable by others");
                }
                let pair = Ed25519KeyPair::from_pkcs8(&pkcs8).map_err(|e| {
                    anyhow::anyhow!("{}: not an Ed25519 PKCS#8 key: {e}", path.display())
                })?;
                Ok(Self::from_pair(pair))
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => Self::create(path),
            Err(e) => Err(e).with_context(|| format!("reading {}", path.display())),
        }
    }

    fn create(path: &Path) -> Result<Self> {
        let pkcs8 = Ed25519KeyPair::generate_pkcs8(&SystemRandom::new())
            .map_err(|_| anyhow::anyhow!("generating the audit signing key"))?;
        if let Some(parent) = path.parent() {
            fs::create_dir_all(parent).with_context(|| format!("creating {}", parent.display()))?;
        }
        // create_new: two agents racing must not overwrite each other's key.
        let mut file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(path)
            .with_context(|| format!("creating {}", path.display()))?;
        file.write_all(pkcs8.as_ref())?;
        file.sync_all()?;
        let pair = Ed25519KeyPair::from_pkcs8(pkcs8.as_ref())
            .map_err(|e| anyhow::anyhow!("reading back the new key: {e}"))?;
        Ok(Self::from_pair(pair))
    }

    fn from_pair(pair: Ed25519KeyPair) -> Self {
        let public = PublicKey(
            pair.public_key()
                .as_ref()
                .try_into()
                .expect("Ed25519 public keys are 32 bytes"),
        );
        Self { pair, public }
    }

    pub fn public_key(&self) -> &PublicKey {
        &self.public
    }

    /// Signs a checkpoint line's hash.
    pub fn sign(&self, hash: &Hash) -> Sig {
        self.pair
            .sign(message(hash).as_bytes())
            .as_ref()
            .try_into()
            .expect("Ed25519 signatures are 64 bytes")
    }
}

fn message(hash: &Hash) -> String {
    format!("{MESSAGE_PREFIX}{}", hex(hash))
}

/// An Ed25519 public key. Its text form, as `audit pubkey` prints it and as
/// checkpoints carry it, is `ed25519:` followed by the 32 key bytes in
/// lowercase hex.
#[derive(Clone, PartialEq, Eq)]
pub struct PublicKey([u8; 32]);

impl PublicKey {
    /// Parses the text form; surrounding whitespace and `#` comment lines
    /// (as in a file an auditor keeps) are ignored.
    pub fn parse(text: &str) -> Result<Self> {
        let key = text
            .lines()
            .map(str::trim)
            .find(|l| !l.is_empty() && !l.starts_with('#'))
            .unwrap_or("");
        let Some(hexpart) = key.strip_prefix(PUBKEY_PREFIX) else {
            bail!("public key must read `{PUBKEY_PREFIX}<64 hex digits>`, got {key:?}");
        };
        match unhex::<32>(hexpart.as_bytes()) {
            Some(bytes) => Ok(Self(bytes)),
            None => bail!(
                "public key must read `{PUBKEY_PREFIX}<64 lowercase hex digits>`, got {key:?}"
            ),
        }
    }

    pub fn read_file(path: &Path) -> Result<Self> {
        let text =
            fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        Self::parse(&text).with_context(|| format!("in {}", path.display()))
    }

    /// Whether `sig` is this key's signature of a checkpoint with `hash`.
    pub fn verifies(&self, hash: &Hash, sig: &Sig) -> bool {
        UnparsedPublicKey::new(&ED25519, &self.0)
            .verify(message(hash).as_bytes(), sig)
            .is_ok()
    }
}

impl fmt::Display for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{PUBKEY_PREFIX}{}", hex(&self.0))
    }
}

impl fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

/// What `mcp-warden audit pubkey` prints: the text form of the public key
/// of the signing key at `key_path` (created if it does not exist yet, so
/// that an auditor can take the key before the agent first runs).
pub fn pubkey_text(key_path: &Path) -> Result<String> {
    Ok(format!(
        "{}\n",
        SigningKey::load_or_create(key_path)?.public_key()
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_is_created_0600_and_reloaded_the_same() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit").join(KEY_FILE);
        let a = SigningKey::load_or_create(&path).unwrap();
        let mode = fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        let b = SigningKey::load_or_create(&path).unwrap();
        assert_eq!(a.public_key(), b.public_key());
        assert_eq!(pubkey_text(&path).unwrap(), format!("{}\n", a.public_key()));
    }

    #[test]
    fn signatures_verify_with_the_text_form_of_the_key_only() {
        let dir = tempfile::tempdir().unwrap();
        let key = SigningKey::load_or_create(&dir.path().join("k")).unwrap();
        let other = SigningKey::load_or_create(&dir.path().join("o")).unwrap();
        let text = format!("# kept by the auditor\n{}\n", key.public_key());
        let public = PublicKey::parse(&text).unwrap();
        let sig = key.sign(&[1; 32]);
        assert!(public.verifies(&[1; 32], &sig));
        assert!(!public.verifies(&[2; 32], &sig));
        assert!(!other.public_key().verifies(&[1; 32], &sig));
        assert!(PublicKey::parse("ed25519:abcd").is_err());
    }
}

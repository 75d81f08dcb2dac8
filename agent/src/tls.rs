//! TLS on both sides of an intercepted connection.
//!
//! Client side: the agent holds a local CA under `<state_dir>/ca/` (created on
//! first run, key 0600) and mints a leaf for the name the client asked for (SNI,
//! or the dialled IP when there is none), cached. Hosts trust the CA once
//! (`mcp-warden ca export`); clients stay unchanged.
//!
//! Upstream side: rustls with the system roots plus an optional per-endpoint CA
//! file, and an optional client certificate (mTLS).

use std::collections::HashMap;
use std::fs;
use std::io::Write;
use std::net::IpAddr;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Context, Result, bail};
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose, SanType,
};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use rustls::sign::CertifiedKey;

const CA_CERT: &str = "ca.pem";
const CA_KEY: &str = "ca.key";
/// Leaves live a day and are re-minted well before: a stolen leaf key is short-lived.
const LEAF_VALIDITY: Duration = Duration::from_secs(24 * 3600);
const LEAF_REFRESH: Duration = Duration::from_secs(12 * 3600);
/// Bound on distinct names cached; an overflow clears the cache (names are few in practice).
const LEAF_CACHE_MAX: usize = 1024;

/// The host's interception CA and the leaves minted from it.
pub struct LocalCa {
    cert_pem: String,
    cert_der: CertificateDer<'static>,
    issuer: Issuer<'static, KeyPair>,
    leaves: Mutex<HashMap<String, (std::time::Instant, Arc<rustls::ServerConfig>)>>,
}

impl LocalCa {
    /// Loads the CA from `dir`, creating it (key 0600, dir 0700) on first use.
    pub fn load_or_create(dir: &Path) -> Result<Self> {
        let (cert_path, key_path) = (dir.join(CA_CERT), dir.join(CA_KEY));
        if !cert_path.exists() {
            create(dir, &cert_path, &key_path)?;
        }
        let mode = fs::metadata(&key_path)
            .with_context(|| format!("reading {}", key_path.display()))?
            .permissions()
            .mode();
        if mode & 0o077 != 0 {
            bail!(
                "{} is accessible to group or others (mode {:o}); expected 0600",
                key_path.display(),
                mode & 0o777
            );
        }
        let cert_pem = fs::read_to_string(&cert_path)
            .with_context(|| format!("reading {}", cert_path.display()))?;
        let key = KeyPair::from_pem(&fs::read_to_string(&key_path)?)
            .with_context(|| format!("parsing {}", key_path.display()))?;
        let issuer = Issuer::from_ca_cert_pem(&cert_pem, key)
            .with_context(|| format!("parsing {}", cert_path.display()))?;
        let cert_der =
            CertificateDer::from_pem_slice(cert_pem.as_bytes()).context("CA certificate PEM")?;
        Ok(Self {
            cert_pem,
            cert_der,
            issuer,
            leaves: Mutex::new(HashMap::new()),
        })
    }

    /// The CA certificate, PEM, for the host trust store.
    pub fn cert_pem(&self) -> &str {
        &self.cert_pem
    }

    /// A server config presenting a leaf for `name` (a DNS name or an IP
    /// literal), minted on first use and cached until it nears expiry.
    pub fn server_config(&self, name: &str) -> Result<Arc<rustls::ServerConfig>> {
        let mut leaves = self.leaves.lock().unwrap_or_else(|e| e.into_inner());
        if let Some((minted, cfg)) = leaves.get(name)
            && minted.elapsed() < LEAF_REFRESH
        {
            return Ok(cfg.clone());
        }
        let cfg = Arc::new(self.mint(name)?);
        if leaves.len() >= LEAF_CACHE_MAX {
            leaves.clear();
        }
        leaves.insert(name.to_string(), (std::time::Instant::now(), cfg.clone()));
        Ok(cfg)
    }

    fn mint(&self, name: &str) -> Result<rustls::ServerConfig> {
        let mut params = CertificateParams::default();
        // rustls' own syntax check: a leaf is only minted for a name a client could ask for
        params.subject_alt_names = vec![match server_name(name)? {
            ServerName::IpAddress(ip) => SanType::IpAddress(IpAddr::from(ip)),
            _ => SanType::DnsName(name.try_into()?),
        }];
        params.distinguished_name.push(DnType::CommonName, name);
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        let now = time::OffsetDateTime::now_utc();
        params.not_before = now - time::Duration::minutes(5); // tolerate small clock skew
        params.not_after = now + LEAF_VALIDITY;
        let key = KeyPair::generate().context("generating a leaf key")?;
        let cert = params
            .signed_by(&key, &self.issuer)
            .context("signing a leaf")?;
        let chain = vec![cert.der().clone(), self.cert_der.clone()];
        let key_der = PrivateKeyDer::try_from(key.serialize_der())
            .map_err(|e| anyhow::anyhow!("leaf key: {e}"))?;
        let provider = rustls::crypto::aws_lc_rs::default_provider();
        let certified = CertifiedKey::from_der(chain, key_der, &provider)?;
        let mut cfg = rustls::ServerConfig::builder_with_provider(provider.into())
            .with_safe_default_protocol_versions()?
            .with_no_client_auth()
            .with_cert_resolver(Arc::new(rustls::sign::SingleCertAndKey::from(certified)));
        cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(cfg)
    }
}

/// Generates the CA: ECDSA P-256, 10 years, path length 0 (it signs leaves only).
fn create(dir: &Path, cert_path: &Path, key_path: &Path) -> Result<()> {
    fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    fs::set_permissions(dir, fs::Permissions::from_mode(0o700))?;
    let mut params = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::OrganizationName, "mcp-warden");
    // a random suffix keeps every CA's name distinct (trust stores, chain building)
    let mut tag = [0u8; 4];
    rustls::crypto::aws_lc_rs::default_provider()
        .secure_random
        .fill(&mut tag)
        .map_err(|_| anyhow::anyhow!("no randomness for the CA name"))?;
    let tag: String = tag.iter().map(|b| format!("{b:02x}")).collect();
    dn.push(
        DnType::CommonName,
        format!("mcp-warden local CA {} {tag}", hostname()),
    );
    params.distinguished_name = dn;
    params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    let now = time::OffsetDateTime::now_utc();
    params.not_before = now - time::Duration::minutes(5);
    params.not_after = now + time::Duration::days(3650);
    let key = KeyPair::generate().context("generating the CA key")?;
    let cert = params.self_signed(&key).context("self-signing the CA")?;
    // key first, created 0600 from the start: never world-readable, not even briefly
    write_new(key_path, key.serialize_pem().as_bytes(), 0o600)?;
    write_new(cert_path, cert.pem().as_bytes(), 0o644)?;
    tracing::info!(path = %cert_path.display(), "created the local CA");
    Ok(())
}

fn write_new(path: &Path, data: &[u8], mode: u32) -> Result<()> {
    let mut f = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(path)
        .with_context(|| format!("creating {}", path.display()))?;
    f.write_all(data)?;
    f.sync_all()?;
    Ok(())
}

fn hostname() -> String {
    fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .unwrap_or_else(|_| "host".into())
}

/// How the agent talks TLS to one upstream.
#[derive(Debug, Clone, Default)]
pub struct UpstreamTls {
    /// Extra trust anchors (PEM) besides the system roots.
    pub ca_file: Option<PathBuf>,
    /// Client certificate chain and key (PEM) for mTLS.
    pub client_cert: Option<(PathBuf, PathBuf)>,
}

impl UpstreamTls {
    /// A client config: system roots + `ca_file`, optional client auth, ALPN http/1.1.
    pub fn client_config(&self) -> Result<rustls::ClientConfig> {
        let mut roots = rustls::RootCertStore::empty();
        let native = rustls_native_certs::load_native_certs();
        for err in &native.errors {
            tracing::warn!(error = %err, "skipping an unreadable system root");
        }
        roots.add_parsable_certificates(native.certs);
        if let Some(path) = &self.ca_file {
            let mut n = 0;
            for cert in CertificateDer::pem_file_iter(path)
                .with_context(|| format!("reading {}", path.display()))?
            {
                roots.add(cert.with_context(|| format!("parsing {}", path.display()))?)?;
                n += 1;
            }
            if n == 0 {
                bail!("{} holds no certificate", path.display());
            }
        }
        let provider = rustls::crypto::aws_lc_rs::default_provider();
        let builder = rustls::ClientConfig::builder_with_provider(provider.into())
            .with_safe_default_protocol_versions()?
            .with_root_certificates(roots);
        let mut cfg = match &self.client_cert {
            None => builder.with_no_client_auth(),
            Some((cert, key)) => {
                let chain = CertificateDer::pem_file_iter(cert)
                    .with_context(|| format!("reading {}", cert.display()))?
                    .collect::<Result<Vec<_>, _>>()
                    .with_context(|| format!("parsing {}", cert.display()))?;
                let key = PrivateKeyDer::from_pem_file(key)
                    .with_context(|| format!("reading {}", key.display()))?;
                builder.with_client_auth_cert(chain, key)?
            }
        };
        cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(cfg)
    }
}

/// The name to verify the upstream by: the client's SNI or the endpoint's configured authority.
pub fn server_name(name: &str) -> Result<ServerName<'static>> {
    ServerName::try_from(name.to_string())
        .with_context(|| format!("{name:?} is not a valid TLS server name"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::{TcpListener, TcpStream};

    /// A full handshake: a leaf minted for `name`, verified by a client that
    /// trusts only the system roots plus the local CA (as a host would).
    async fn handshake(ca: &LocalCa, ca_file: &Path, name: &str) -> Result<Vec<u8>> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let acceptor = tokio_rustls::TlsAcceptor::from(ca.server_config(name)?);
        let server = tokio::spawn(async move {
            let (tcp, _) = listener.accept().await.unwrap();
            let mut tls = acceptor.accept(tcp).await?;
            let alpn = tls.get_ref().1.alpn_protocol().map(|p| p.to_vec());
            tls.write_all(b"hello over tls").await?;
            tls.shutdown().await?;
            Ok::<_, std::io::Error>(alpn)
        });
        let cfg = UpstreamTls {
            ca_file: Some(ca_file.to_path_buf()),
            client_cert: None,
        }
        .client_config()?;
        let connector = tokio_rustls::TlsConnector::from(Arc::new(cfg));
        let mut tls = connector
            .connect(server_name(name)?, TcpStream::connect(addr).await?)
            .await?;
        let mut got = Vec::new();
        tls.read_to_end(&mut got).await?;
        let alpn = server.await.unwrap()?;
        assert_eq!(
            alpn.as_deref(),
            Some(&b"http/1.1"[..]),
            "ALPN offers http/1.1"
        );
        Ok(got)
    }

    #[tokio::test]
    async fn minted_leaves_verify_for_names_and_ips() {
        let dir = tempfile::tempdir().unwrap();
        let ca = LocalCa::load_or_create(&dir.path().join("ca")).unwrap();
        let ca_file = dir.path().join("ca").join(CA_CERT);
        assert_eq!(
            handshake(&ca, &ca_file, "mcp.ehr.example").await.unwrap(),
            b"hello over tls"
        );
        assert_eq!(
            handshake(&ca, &ca_file, "10.20.1.5").await.unwrap(),
            b"hello over tls"
        );
        assert_eq!(
            handshake(&ca, &ca_file, "fd00::5").await.unwrap(),
            b"hello over tls"
        );
    }

    #[tokio::test]
    async fn a_leaf_is_valid_only_for_its_name() {
        let dir = tempfile::tempdir().unwrap();
        let ca = LocalCa::load_or_create(&dir.path().join("ca")).unwrap();
        let ca_file = dir.path().join("ca").join(CA_CERT);
        // the client asks for one name; the server presents a leaf for another
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let acceptor = tokio_rustls::TlsAcceptor::from(ca.server_config("other.example").unwrap());
        tokio::spawn(async move {
            let (tcp, _) = listener.accept().await.unwrap();
            let _ = acceptor.accept(tcp).await;
        });
        let cfg = UpstreamTls {
            ca_file: Some(ca_file),
            client_cert: None,
        }
        .client_config()
        .unwrap();
        let connector = tokio_rustls::TlsConnector::from(Arc::new(cfg));
        let tcp = TcpStream::connect(addr).await.unwrap();
        let err = connector
            .connect(server_name("mcp.ehr.example").unwrap(), tcp)
            .await
            .unwrap_err();
        assert!(err.to_string().contains("not valid for name"), "{err}");
    }

    #[test]
    fn the_ca_persists_with_a_private_key() {
        let dir = tempfile::tempdir().unwrap();
        let ca_dir = dir.path().join("ca");
        let first = LocalCa::load_or_create(&ca_dir)
            .unwrap()
            .cert_pem()
            .to_string();
        assert!(first.starts_with("-----BEGIN CERTIFICATE-----"));
        let mode = fs::metadata(ca_dir.join(CA_KEY))
            .unwrap()
            .permissions()
            .mode()
            & 0o777;
        assert_eq!(mode, 0o600);
        assert_eq!(
            LocalCa::load_or_create(&ca_dir).unwrap().cert_pem(),
            first,
            "reloaded, not regenerated"
        );
        // a key others can read is refused rather than used
        fs::set_permissions(ca_dir.join(CA_KEY), fs::Permissions::from_mode(0o644)).unwrap();
        let err = LocalCa::load_or_create(&ca_dir).err().expect("refused");
        assert!(err.to_string().contains("expected 0600"), "{err}");
    }

    #[test]
    fn leaves_are_cached_per_name() {
        let dir = tempfile::tempdir().unwrap();
        let ca = LocalCa::load_or_create(dir.path()).unwrap();
        let a = ca.server_config("a.example").unwrap();
        assert!(Arc::ptr_eq(&a, &ca.server_config("a.example").unwrap()));
        assert!(!Arc::ptr_eq(&a, &ca.server_config("b.example").unwrap()));
        assert!(ca.server_config("not a name!").is_err());
    }

    #[tokio::test]
    async fn a_leaf_signed_by_another_ca_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let ours = LocalCa::load_or_create(&dir.path().join("ours")).unwrap();
        let theirs = LocalCa::load_or_create(&dir.path().join("theirs")).unwrap();
        let err = handshake(
            &theirs,
            &dir.path().join("ours").join(CA_CERT),
            "mcp.ehr.example",
        )
        .await
        .unwrap_err();
        assert!(err.to_string().contains("UnknownIssuer"), "{err}");
        drop(ours);
    }
}

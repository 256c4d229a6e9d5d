//! rustls for listeners (PEM chains and keys, several certificates chosen by SNI, TLS 1.2 and
//! 1.3, ALPN `h2` + `http/1.1`) and for upstreams (system roots or a configured CA file).
//!
//! Everything here is built from files once per (re)load and then only read; a failed reload
//! leaves the running configuration alone.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::crypto::CryptoProvider;
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls::{ClientConfig, RootCertStore, ServerConfig};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, ServerName};

use crate::config::CertPair;

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("cannot read certificate chain {path}: {reason}")]
    Certs { path: PathBuf, reason: String },
    #[error("{path} holds no certificate")]
    NoCerts { path: PathBuf },
    #[error("cannot read private key {path}: {reason}")]
    Key { path: PathBuf, reason: String },
    #[error("certificate {cert} does not match key {key}: {reason}")]
    Mismatch {
        cert: PathBuf,
        key: PathBuf,
        reason: String,
    },
    #[error("cannot read CA file {path}: {reason}")]
    Ca { path: PathBuf, reason: String },
    #[error("TLS setup failed: {0}")]
    Rustls(#[from] rustls::Error),
}

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

const VERSIONS: &[&rustls::SupportedProtocolVersion] =
    &[&rustls::version::TLS13, &rustls::version::TLS12];

/// A listener's TLS configuration from its certificate pairs.
pub fn server_config(certs: &[CertPair]) -> Result<Arc<ServerConfig>, TlsError> {
    let provider = provider();
    let keys = certs
        .iter()
        .map(|pair| certified_key(pair, &provider))
        .collect::<Result<Vec<_>, _>>()?;
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(VERSIONS)?
        .with_no_client_auth()
        .with_cert_resolver(Arc::new(SniResolver { keys }));
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

fn certified_key(
    pair: &CertPair,
    provider: &CryptoProvider,
) -> Result<Arc<CertifiedKey>, TlsError> {
    let chain = CertificateDer::pem_file_iter(&pair.cert)
        .and_then(|iter| iter.collect::<Result<Vec<_>, _>>())
        .map_err(|e| TlsError::Certs {
            path: pair.cert.clone(),
            reason: e.to_string(),
        })?;
    if chain.is_empty() {
        return Err(TlsError::NoCerts {
            path: pair.cert.clone(),
        });
    }
    let key = PrivateKeyDer::from_pem_file(&pair.key).map_err(|e| TlsError::Key {
        path: pair.key.clone(),
        reason: e.to_string(),
    })?;
    let mismatch = |reason: String| TlsError::Mismatch {
        cert: pair.cert.clone(),
        key: pair.key.clone(),
        reason,
    };
    let certified =
        CertifiedKey::from_der(chain, key, provider).map_err(|e| mismatch(e.to_string()))?;
    Ok(Arc::new(certified))
}

/// Picks the certificate whose end-entity certificate is valid for the SNI name; without SNI,
/// or when none matches, the first one (SPEC 10).
#[derive(Debug)]
struct SniResolver {
    keys: Vec<Arc<CertifiedKey>>,
}

impl ResolvesServerCert for SniResolver {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        let by_name = hello.server_name().and_then(|name| {
            let name = ServerName::try_from(name).ok()?;
            self.keys.iter().find(|key| covers(key, &name))
        });
        by_name.or_else(|| self.keys.first()).cloned()
    }
}

fn covers(key: &CertifiedKey, name: &ServerName<'_>) -> bool {
    let Some(end_entity) = key.cert.first() else {
        return false;
    };
    webpki::EndEntityCert::try_from(end_entity)
        .map(|cert| cert.verify_is_valid_for_subject_name(name).is_ok())
        .unwrap_or(false)
}

/// The TLS configuration for connecting to `https`/`wss` upstreams: the system's roots, or the
/// certificates in `ca_file` when one is configured. No ALPN: the HTTP connector sets its own,
/// and a WebSocket handshake is HTTP/1.1.
pub fn client_config(ca_file: Option<&Path>) -> Result<Arc<ClientConfig>, TlsError> {
    let roots = match ca_file {
        Some(path) => ca_roots(path)?,
        None => system_roots(),
    };
    let config = ClientConfig::builder_with_provider(provider())
        .with_protocol_versions(VERSIONS)?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(Arc::new(config))
}

fn ca_roots(path: &Path) -> Result<RootCertStore, TlsError> {
    let ca_error = |reason: String| TlsError::Ca {
        path: path.to_owned(),
        reason,
    };
    let mut roots = RootCertStore::empty();
    let certs = CertificateDer::pem_file_iter(path)
        .and_then(|iter| iter.collect::<Result<Vec<_>, _>>())
        .map_err(|e| ca_error(e.to_string()))?;
    let (added, _) = roots.add_parsable_certificates(certs);
    if added == 0 {
        return Err(ca_error("no usable certificate".to_owned()));
    }
    Ok(roots)
}

fn system_roots() -> RootCertStore {
    let mut roots = RootCertStore::empty();
    let found = rustls_native_certs::load_native_certs();
    for error in &found.errors {
        tracing::warn!(%error, "while loading the system's root certificates");
    }
    let (added, ignored) = roots.add_parsable_certificates(found.certs);
    tracing::debug!(added, ignored, "system root certificates loaded");
    roots
}

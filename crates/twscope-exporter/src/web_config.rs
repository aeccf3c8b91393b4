//! `--web.config.file`, in the Prometheus exporter-toolkit format:
//!
//! ```yaml
//! tls_server_config:
//!   cert_file: twscope.crt     # relative paths are relative to this file
//!   key_file: twscope.key
//! basic_auth_users:
//!   prometheus: $2y$10$…       # bcrypt hash (htpasswd -nBC 10 "" | tr -d ':\n')
//! ```
//!
//! Options twscope does not implement (client certificates, cipher lists, …)
//! are refused at start rather than silently ignored: a setting that does not
//! take effect is a security hole.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use base64::Engine;
use rustls::ServerConfig;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use serde::Deserialize;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    tls_server_config: Option<TlsFile>,
    #[serde(default)]
    basic_auth_users: HashMap<String, String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct TlsFile {
    cert_file: PathBuf,
    key_file: PathBuf,
}

#[derive(Debug, thiserror::Error)]
#[error("web config {path}: {reason}")]
pub struct WebConfigError {
    path: PathBuf,
    reason: String,
}

/// A loaded web config: TLS and the users allowed in.
pub struct WebConfig {
    pub tls: Option<Arc<ServerConfig>>,
    users: HashMap<String, String>,
    /// `Authorization` header values already verified: bcrypt is slow on
    /// purpose, and Prometheus sends the same header every scrape.
    verified: Mutex<HashMap<String, bool>>,
}

impl std::fmt::Debug for WebConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WebConfig").field("tls", &self.tls.is_some()).field("users", &self.users.keys()).finish()
    }
}

/// At most this many distinct header values are remembered.
const VERIFIED_CACHE: usize = 1024;

impl WebConfig {
    /// Loads and checks the file: a bad file is an error at start, never a
    /// server that runs without the protection asked for.
    pub fn load(path: &Path) -> Result<WebConfig, WebConfigError> {
        let error = |reason: String| WebConfigError { path: path.to_path_buf(), reason };
        let text = std::fs::read_to_string(path).map_err(|e| error(e.to_string()))?;
        let file: File = serde_yaml::from_str(&text)
            .map_err(|e| error(format!("{e} (twscope supports tls_server_config.cert_file/key_file and basic_auth_users)")))?;
        let dir = path.parent().unwrap_or(Path::new("."));
        let tls = match file.tls_server_config {
            Some(tls) => Some(Arc::new(tls_config(&dir.join(&tls.cert_file), &dir.join(&tls.key_file)).map_err(error)?)),
            None => None,
        };
        for (user, hash) in &file.basic_auth_users {
            // Check each hash now, not at the first scrape.
            bcrypt::verify("", hash).map_err(|e| error(format!("basic_auth_users.{user}: not a bcrypt hash ({e})")))?;
        }
        Ok(WebConfig { tls, users: file.basic_auth_users, verified: Mutex::new(HashMap::new()) })
    }

    /// Whether requests must authenticate.
    pub fn auth_required(&self) -> bool {
        !self.users.is_empty()
    }

    /// Checks an `Authorization` header against the users.
    pub fn authorized(&self, header: Option<&str>) -> bool {
        if !self.auth_required() {
            return true;
        }
        let Some(header) = header else { return false };
        if let Some(&known) = self.verified.lock().unwrap().get(header) {
            return known;
        }
        let ok = self.check(header);
        let mut verified = self.verified.lock().unwrap();
        if verified.len() >= VERIFIED_CACHE {
            verified.clear();
        }
        verified.insert(header.to_string(), ok);
        ok
    }

    fn check(&self, header: &str) -> bool {
        let Some(encoded) = header.strip_prefix("Basic ") else { return false };
        let Ok(decoded) = base64::engine::general_purpose::STANDARD.decode(encoded.trim()) else { return false };
        let Ok(pair) = String::from_utf8(decoded) else { return false };
        let Some((user, password)) = pair.split_once(':') else { return false };
        match self.users.get(user) {
            Some(hash) => bcrypt::verify(password, hash).unwrap_or(false),
            // Spend the same time on unknown users as on wrong passwords.
            None => {
                if let Some(any) = self.users.values().next() {
                    let _ = bcrypt::verify(password, any);
                }
                false
            }
        }
    }
}

fn tls_config(cert: &Path, key: &Path) -> Result<ServerConfig, String> {
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert)
        .map_err(|e| format!("cert_file {}: {e}", cert.display()))?
        .collect::<Result<_, _>>()
        .map_err(|e| format!("cert_file {}: {e}", cert.display()))?;
    if certs.is_empty() {
        return Err(format!("cert_file {}: no certificate in it", cert.display()));
    }
    let key = PrivateKeyDer::from_pem_file(key).map_err(|e| format!("key_file {}: {e}", key.display()))?;
    let mut config = ServerConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(|e| format!("certificate and key do not fit together: {e}"))?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(config)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
        let path = dir.join(name);
        std::fs::write(&path, text).unwrap();
        path
    }

    #[test]
    fn basic_auth_checks_bcrypt_and_caches() {
        let dir = std::env::temp_dir().join(format!("twscope-webcfg-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let hash = bcrypt::hash("s3cret", 4).unwrap();
        let path = write(&dir, "web.yml", &format!("basic_auth_users:\n  prometheus: '{hash}'\n"));
        let config = WebConfig::load(&path).unwrap();
        let header = |user: &str, password: &str| {
            format!("Basic {}", base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}")))
        };
        assert!(config.authorized(Some(&header("prometheus", "s3cret"))));
        assert!(config.authorized(Some(&header("prometheus", "s3cret")))); // from the cache
        assert!(!config.authorized(Some(&header("prometheus", "wrong"))));
        assert!(!config.authorized(Some(&header("mallory", "s3cret"))));
        assert!(!config.authorized(Some("Bearer x")));
        assert!(!config.authorized(None));

        for (text, mentions) in [
            ("basic_auth_users:\n  a: notahash\n", "not a bcrypt hash"),
            ("tls_server_config:\n  cert_file: nope.crt\n  key_file: nope.key\n", "nope.crt"),
            ("tls_server_config:\n  cert_file: a\n  key_file: b\n  client_ca_file: c\n", "client_ca_file"),
            ("http_server_config:\n  http2: true\n", "http_server_config"),
        ] {
            let path = write(&dir, "bad.yml", text);
            let err = WebConfig::load(&path).unwrap_err().to_string();
            assert!(err.contains(mentions) && err.contains("bad.yml"), "{err}");
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }
}

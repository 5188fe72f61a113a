//! The ed25519 SSH keys of the daemon and its agents: our own
//! ([`Signer`]), the peers' we trust ([`Verifier`]), and the files they
//! live in. What they are used for is mutual TLS ([`crate::tls`]): each
//! side presents its key in the handshake and accepts only keys it was
//! given, so every request on an agent connection comes from an enrolled
//! key, unaltered and not replayed, without signatures of its own.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Mutex;

pub use ssh_key::PublicKey;
use ssh_key::rand_core::OsRng;
use ssh_key::sha2::{Digest, Sha256};
use ssh_key::{Algorithm, HashAlg, LineEnding, PrivateKey};

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AuthError {
    #[error("key file {path}: {reason}")]
    KeyFile { path: String, reason: String },
}

/// Our own key: what we present in TLS handshakes.
pub struct Signer {
    key: PrivateKey,
    fingerprint: String,
}

impl std::fmt::Debug for Signer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Signer")
            .field("fingerprint", &self.fingerprint)
            .finish()
    }
}

impl Signer {
    /// Loads an unencrypted OpenSSH ed25519 private key, refusing a file
    /// that other users can read.
    pub fn load(path: &Path) -> Result<Signer, AuthError> {
        let err = |reason: String| AuthError::KeyFile {
            path: path.display().to_string(),
            reason,
        };
        let text = crate::secret::read_private(path).map_err(err)?;
        let key = PrivateKey::from_openssh(text).map_err(|e| err(e.to_string()))?;
        if key.algorithm() != Algorithm::Ed25519 {
            return Err(err("not an ed25519 key".into()));
        }
        if key.is_encrypted() {
            return Err(err("encrypted keys are not supported".into()));
        }
        Ok(Signer::from_key(key))
    }

    /// Generates a new key, or returns the existing one at `path`. Writes
    /// the private key with mode 0600 and the public key next to it as
    /// `<path>.pub`.
    pub fn load_or_generate(path: &Path, comment: &str) -> Result<Signer, AuthError> {
        if path.exists() {
            return Signer::load(path);
        }
        let err = |reason: String| AuthError::KeyFile {
            path: path.display().to_string(),
            reason,
        };
        let mut key =
            PrivateKey::random(&mut OsRng, Algorithm::Ed25519).map_err(|e| err(e.to_string()))?;
        key.set_comment(comment);
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|e| err(e.to_string()))?;
        }
        let pem = key
            .to_openssh(LineEnding::LF)
            .map_err(|e| err(e.to_string()))?;
        write_private(path, pem.as_bytes()).map_err(|e| err(e.to_string()))?;
        let signer = Signer::from_key(key);
        let mut pub_path = path.as_os_str().to_owned();
        pub_path.push(".pub");
        std::fs::write(&pub_path, format!("{}\n", signer.public_key_openssh()))
            .map_err(|e| err(e.to_string()))?;
        Ok(signer)
    }

    pub fn from_key(key: PrivateKey) -> Signer {
        let fingerprint = key.fingerprint(HashAlg::Sha256).to_string();
        Signer { key, fingerprint }
    }

    /// A fresh in-memory key (tests).
    pub fn random() -> Signer {
        Signer::from_key(
            PrivateKey::random(&mut OsRng, Algorithm::Ed25519).expect("ed25519 key generation"),
        )
    }

    pub fn fingerprint(&self) -> &str {
        &self.fingerprint
    }

    pub fn public_key(&self) -> &PublicKey {
        self.key.public_key()
    }

    /// `ssh-ed25519 AAAA... comment`, for enrolment.
    pub fn public_key_openssh(&self) -> String {
        self.key.public_key().to_openssh().unwrap_or_default()
    }

    /// The 32-byte ed25519 seed (for the TLS handshake key).
    pub fn ed25519_seed(&self) -> Option<[u8; 32]> {
        self.key.key_data().ed25519().map(|k| k.private.to_bytes())
    }
}

/// The peers' keys we accept (in TLS handshakes), by fingerprint.
#[derive(Default)]
pub struct Verifier {
    keys: Mutex<HashMap<String, PublicKey>>,
}

impl Verifier {
    pub fn trust(&self, key: PublicKey) {
        let fp = key.fingerprint(HashAlg::Sha256).to_string();
        lock(&self.keys).insert(fp, key);
    }

    /// Stops trusting a key: its next handshake, and its next request on a
    /// connection already open, are refused.
    pub fn distrust(&self, fingerprint: &str) -> bool {
        lock(&self.keys).remove(fingerprint).is_some()
    }

    pub fn knows(&self, fingerprint: &str) -> bool {
        lock(&self.keys).contains_key(fingerprint)
    }

    /// The trusted key with this fingerprint.
    pub fn key(&self, fingerprint: &str) -> Option<PublicKey> {
        lock(&self.keys).get(fingerprint).cloned()
    }
}

/// Reads `authorized_keys`-style lines (`ssh-ed25519 AAAA... comment`);
/// blank lines and `#` comments are skipped.
pub fn parse_public_keys(text: &str) -> Result<Vec<PublicKey>, String> {
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let key = PublicKey::from_openssh(line).map_err(|e| format!("line {}: {e}", i + 1))?;
        if key.algorithm() != Algorithm::Ed25519 {
            return Err(format!("line {}: not an ed25519 key", i + 1));
        }
        out.push(key);
    }
    Ok(out)
}

/// SHA-256 of `bytes`, lower-case hex.
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex(&Sha256::digest(bytes))
}

/// A SHA-256 over bytes given a piece at a time (a manifest's body).
#[derive(Clone, Default)]
pub struct Sha256Stream(Sha256);

impl Sha256Stream {
    pub fn update(&mut self, bytes: &[u8]) {
        self.0.update(bytes);
    }

    pub fn finish_hex(self) -> String {
        hex(&self.0.finalize())
    }
}

pub fn fingerprint(key: &PublicKey) -> String {
    key.fingerprint(HashAlg::Sha256).to_string()
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// Writes a file readable by its owner only.
pub fn write_private(path: &Path, data: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    let mut f = opts.open(path)?;
    f.write_all(data)?;
    f.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_round_trip_through_files() {
        let dir = std::env::temp_dir().join(format!("ossimport-auth-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let path = dir.join("key");
        let a = Signer::load_or_generate(&path, "test").unwrap();
        let b = Signer::load(&path).unwrap();
        assert_eq!(a.fingerprint(), b.fingerprint());
        let pubs =
            parse_public_keys(&std::fs::read_to_string(dir.join("key.pub")).unwrap()).unwrap();
        assert_eq!(fingerprint(&pubs[0]), a.fingerprint());
        let _ = std::fs::remove_dir_all(&dir);
    }
}

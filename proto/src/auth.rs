//! Request signing between the daemon and its agents, with ed25519 SSH keys.
//!
//! Every request in either direction carries four headers: the signer's key
//! fingerprint, a timestamp, a random nonce and an ed25519 signature over
//!
//! ```text
//! ossimport-v1 \n METHOD \n PATH \n sha256(body) \n timestamp \n nonce \n signer \n audience
//! ```
//!
//! where `audience` is the fingerprint of the intended receiver, so a request
//! captured on its way to one agent cannot be replayed to another. The
//! receiver refuses unknown signers, timestamps outside its window and nonces
//! it has seen inside that window; all of that happens before the request is
//! parsed, so a refused request changes nothing.

use std::collections::{HashMap, VecDeque};
use std::path::Path;
use std::sync::Mutex;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use ssh_key::rand_core::{OsRng, RngCore};
use ssh_key::sha2::{Digest, Sha256};
use ssh_key::{Algorithm, HashAlg, LineEnding, PrivateKey, PublicKey, Signature};

/// Fingerprint (`SHA256:...`) of the signing key.
pub const HDR_KEY: &str = "x-ossimport-key";
/// Unix seconds when the request was signed.
pub const HDR_TIMESTAMP: &str = "x-ossimport-timestamp";
/// 128 random bits, hex; never accepted twice from the same key.
pub const HDR_NONCE: &str = "x-ossimport-nonce";
/// Base64 of the raw 64-byte ed25519 signature.
pub const HDR_SIGNATURE: &str = "x-ossimport-signature";

/// Version tag of the signed message; bump it when the message changes.
const DOMAIN: &str = "ossimport-v1";

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AuthError {
    /// A header is missing or malformed.
    #[error("request is not signed: {0}")]
    Unsigned(&'static str),
    #[error("request is signed by an unknown key {0}")]
    UnknownKey(String),
    #[error("request timestamp is outside the accepted window")]
    Stale,
    #[error("request nonce was already used")]
    Replayed,
    #[error("request signature does not verify")]
    BadSignature,
    #[error("too many requests in the replay window")]
    Busy,
    #[error("key file {path}: {reason}")]
    KeyFile { path: String, reason: String },
}

/// Our own key: signs what we send.
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

    /// The four auth headers for a request to `audience` (the receiver's
    /// fingerprint), signed now with a fresh nonce.
    pub fn sign(
        &self,
        method: &str,
        path: &str,
        body: &[u8],
        audience: &str,
    ) -> Vec<(&'static str, String)> {
        let mut nonce = [0u8; 16];
        OsRng.fill_bytes(&mut nonce);
        self.sign_with(method, path, body, audience, unix_now(), &hex(&nonce))
    }

    /// Like [`Signer::sign`] with a chosen timestamp and nonce (tests of
    /// stale and replayed requests).
    pub fn sign_with(
        &self,
        method: &str,
        path: &str,
        body: &[u8],
        audience: &str,
        timestamp: u64,
        nonce: &str,
    ) -> Vec<(&'static str, String)> {
        let msg = message(
            method,
            path,
            body,
            timestamp,
            nonce,
            &self.fingerprint,
            audience,
        );
        let sig: Signature = signature::Signer::sign(&self.key, &msg);
        vec![
            (HDR_KEY, self.fingerprint.clone()),
            (HDR_TIMESTAMP, timestamp.to_string()),
            (HDR_NONCE, nonce.to_string()),
            (HDR_SIGNATURE, B64.encode(sig.as_bytes())),
        ]
    }
}

/// Keys we accept requests from, and the nonces seen recently.
pub struct Verifier {
    /// Our own fingerprint: the audience every request must name.
    me: String,
    keys: Mutex<HashMap<String, PublicKey>>,
    window: Duration,
    /// Nonces seen inside the window, oldest first, capped at `MAX_NONCES`.
    seen: Mutex<Seen>,
}

#[derive(Default)]
struct Seen {
    set: HashMap<String, u64>,
    order: VecDeque<(u64, String)>,
}

/// More requests than this inside one window are refused rather than let
/// the replay cache grow without bound.
const MAX_NONCES: usize = 1 << 20;

/// What a verified request tells the handler.
#[derive(Clone, Debug)]
pub struct Verified {
    /// Fingerprint of the signer.
    pub key: String,
}

impl Verifier {
    /// `window` is how far a timestamp may be from our clock either way.
    pub fn new(me: &str, window: Duration) -> Verifier {
        Verifier {
            me: me.to_string(),
            keys: Mutex::new(HashMap::new()),
            window,
            seen: Mutex::new(Seen::default()),
        }
    }

    pub fn trust(&self, key: PublicKey) {
        let fp = key.fingerprint(HashAlg::Sha256).to_string();
        lock(&self.keys).insert(fp, key);
    }

    /// Stops trusting a key: its next request is refused as unknown.
    pub fn distrust(&self, fingerprint: &str) -> bool {
        lock(&self.keys).remove(fingerprint).is_some()
    }

    pub fn knows(&self, fingerprint: &str) -> bool {
        lock(&self.keys).contains_key(fingerprint)
    }

    /// Checks what can be checked from the headers alone, before a byte of
    /// the body is read: all four headers present and well-formed, the
    /// signer enrolled, the timestamp inside the window and the nonce not
    /// seen yet. Consumes nothing; [`Verifier::verify`] still decides.
    pub fn precheck<'a>(&self, header: impl Fn(&str) -> Option<&'a str>) -> Result<(), AuthError> {
        let SignedHeaders {
            key_fp, ts, nonce, ..
        } = signed_headers(header)?;
        if !lock(&self.keys).contains_key(key_fp) {
            return Err(AuthError::UnknownKey(key_fp.to_string()));
        }
        if unix_now().abs_diff(ts) > self.window.as_secs() {
            return Err(AuthError::Stale);
        }
        if lock(&self.seen)
            .set
            .contains_key(&format!("{key_fp} {nonce}"))
        {
            return Err(AuthError::Replayed);
        }
        Ok(())
    }

    /// Checks a request; `header` looks up a header by name.
    pub fn verify<'a>(
        &self,
        method: &str,
        path: &str,
        body: &[u8],
        header: impl Fn(&str) -> Option<&'a str>,
    ) -> Result<Verified, AuthError> {
        let SignedHeaders {
            key_fp,
            ts,
            nonce,
            signature,
        } = signed_headers(header)?;
        let sig = B64
            .decode(signature)
            .ok()
            .and_then(|b| Signature::new(Algorithm::Ed25519, b).ok())
            .ok_or(AuthError::Unsigned(HDR_SIGNATURE))?;
        let key = lock(&self.keys)
            .get(key_fp)
            .cloned()
            .ok_or_else(|| AuthError::UnknownKey(key_fp.to_string()))?;
        let now = unix_now();
        if now.abs_diff(ts) > self.window.as_secs() {
            return Err(AuthError::Stale);
        }
        let msg = message(method, path, body, ts, nonce, key_fp, &self.me);
        signature::Verifier::verify(&key, &msg, &sig).map_err(|_| AuthError::BadSignature)?;
        // Only a valid signature may consume a nonce, so nobody can burn
        // nonces they did not sign.
        let mut seen = lock(&self.seen);
        let horizon = now.saturating_sub(self.window.as_secs());
        while let Some((t, _)) = seen.order.front() {
            if *t >= horizon {
                break;
            }
            if let Some((_, n)) = seen.order.pop_front() {
                seen.set.remove(&n);
            }
        }
        let id = format!("{key_fp} {nonce}");
        if seen.set.contains_key(&id) {
            return Err(AuthError::Replayed);
        }
        if seen.set.len() >= MAX_NONCES {
            return Err(AuthError::Busy);
        }
        // Entries expire by the later of receipt and timestamp, so a
        // request dated in the future stays remembered until it is stale.
        let keep = ts.max(now);
        seen.set.insert(id.clone(), keep);
        seen.order.push_back((keep, id));
        Ok(Verified {
            key: key_fp.to_string(),
        })
    }
}

/// The four signing headers, present and well-formed.
struct SignedHeaders<'a> {
    key_fp: &'a str,
    ts: u64,
    nonce: &'a str,
    /// Base64, not yet decoded.
    signature: &'a str,
}

fn signed_headers<'a>(
    header: impl Fn(&str) -> Option<&'a str>,
) -> Result<SignedHeaders<'a>, AuthError> {
    Ok(SignedHeaders {
        key_fp: header(HDR_KEY).ok_or(AuthError::Unsigned(HDR_KEY))?,
        ts: header(HDR_TIMESTAMP)
            .and_then(|t| t.parse().ok())
            .ok_or(AuthError::Unsigned(HDR_TIMESTAMP))?,
        nonce: header(HDR_NONCE)
            .filter(|n| (16..=64).contains(&n.len()))
            .ok_or(AuthError::Unsigned(HDR_NONCE))?,
        signature: header(HDR_SIGNATURE)
            .filter(|s| s.len() <= 256)
            .ok_or(AuthError::Unsigned(HDR_SIGNATURE))?,
    })
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

fn message(
    method: &str,
    path: &str,
    body: &[u8],
    ts: u64,
    nonce: &str,
    signer: &str,
    audience: &str,
) -> Vec<u8> {
    let digest = hex(&Sha256::digest(body));
    format!("{DOMAIN}\n{method}\n{path}\n{digest}\n{ts}\n{nonce}\n{signer}\n{audience}")
        .into_bytes()
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
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

    fn verify(
        v: &Verifier,
        h: &[(&'static str, String)],
        body: &[u8],
    ) -> Result<Verified, AuthError> {
        v.verify("POST", "/v1/tasks", body, |name| {
            h.iter().find(|(k, _)| *k == name).map(|(_, v)| v.as_str())
        })
    }

    #[test]
    fn accepts_once_and_refuses_replays_stale_unknown_and_tampered() {
        let (daemon, agent, stranger) = (Signer::random(), Signer::random(), Signer::random());
        let v = Verifier::new(agent.fingerprint(), Duration::from_secs(60));
        v.trust(daemon.public_key().clone());

        let h = daemon.sign("POST", "/v1/tasks", b"{}", agent.fingerprint());
        assert!(verify(&v, &h, b"{}").is_ok());
        assert!(matches!(verify(&v, &h, b"{}"), Err(AuthError::Replayed)));

        let h = daemon.sign("POST", "/v1/tasks", b"{}", agent.fingerprint());
        assert!(matches!(
            verify(&v, &h, b"{\"x\":1}"),
            Err(AuthError::BadSignature)
        ));

        let old = unix_now() - 3600;
        let h = daemon.sign_with(
            "POST",
            "/v1/tasks",
            b"{}",
            agent.fingerprint(),
            old,
            "00112233445566778899aabbccddeeff",
        );
        assert!(matches!(verify(&v, &h, b"{}"), Err(AuthError::Stale)));

        let h = stranger.sign("POST", "/v1/tasks", b"{}", agent.fingerprint());
        assert!(matches!(
            verify(&v, &h, b"{}"),
            Err(AuthError::UnknownKey(_))
        ));

        // Signed for another agent: the audience does not match.
        let h = daemon.sign("POST", "/v1/tasks", b"{}", stranger.fingerprint());
        assert!(matches!(
            verify(&v, &h, b"{}"),
            Err(AuthError::BadSignature)
        ));

        assert!(matches!(
            verify(&v, &[], b"{}"),
            Err(AuthError::Unsigned(_))
        ));
    }

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

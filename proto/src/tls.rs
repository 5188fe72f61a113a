//! Mutual TLS between the daemon and its agents, pinned to their ed25519
//! keys.
//!
//! Each side presents its enrolled ed25519 key as a raw public key (RFC
//! 7250: the "certificate" is the key's SubjectPublicKeyInfo, no CA, no
//! names, no expiry) and accepts only keys it was given: the daemon the
//! keys of `agent_keys`, an agent the daemon's (`--daemon-key`), and the
//! daemon, connecting to an agent, exactly that agent's key. TLS 1.3 only.
//! So a peer without an enrolled key never completes a handshake and gets
//! nothing of a request read; paths, sizes and checksums travel encrypted;
//! TLS's own record protection and fresh handshake keys make a captured
//! connection useless to replay, which is what the earlier request
//! signatures, timestamps and nonce cache were for.

use std::fmt;
use std::sync::{Arc, OnceLock};

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{CryptoProvider, WebPkiSupportedAlgorithms};
use rustls::pki_types::{
    CertificateDer, PrivateKeyDer, ServerName, SubjectPublicKeyInfoDer, UnixTime,
};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::sign::CertifiedKey;
use rustls::{DigitallySignedStruct, DistinguishedName, SignatureScheme};
use ssh_key::public::{Ed25519PublicKey, KeyData};
use ssh_key::{HashAlg, PublicKey};

use crate::auth::Signer;

/// DER of an Ed25519 SubjectPublicKeyInfo up to the 32 key bytes (RFC 8410
/// section 4: SEQUENCE { SEQUENCE { OID 1.3.101.112 }, BIT STRING }).
const SPKI_PREFIX: [u8; 12] = [
    0x30, 0x2a, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x03, 0x21, 0x00,
];
/// DER of an Ed25519 PKCS#8 v1 private key up to the 32 seed bytes (RFC
/// 8410 section 7).
const PKCS8_PREFIX: [u8; 16] = [
    0x30, 0x2e, 0x02, 0x01, 0x00, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x04, 0x22, 0x04, 0x20,
];

/// The SNI name clients send; nothing checks it (keys are pinned).
const SERVER_NAME: &str = "ossimport";

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TlsError {
    #[error("{0}: not an ed25519 key")]
    NotEd25519(String),
    #[error("TLS set-up: {0}")]
    Setup(String),
}

fn provider() -> Arc<CryptoProvider> {
    static P: OnceLock<Arc<CryptoProvider>> = OnceLock::new();
    Arc::clone(P.get_or_init(|| Arc::new(rustls::crypto::aws_lc_rs::default_provider())))
}

/// `key` as the raw public key a peer presents.
pub fn spki(key: &PublicKey) -> Result<Vec<u8>, TlsError> {
    match key.key_data() {
        KeyData::Ed25519(k) => Ok([&SPKI_PREFIX[..], &k.0[..]].concat()),
        _ => Err(TlsError::NotEd25519(crate::auth::fingerprint(key))),
    }
}

/// The fingerprint (`SHA256:...`, as `ssh-keygen -l` shows) of the ed25519
/// key a peer presented, or `None` if it is anything else.
pub fn fingerprint_of_spki(der: &[u8]) -> Option<String> {
    let raw = der.strip_prefix(&SPKI_PREFIX[..])?;
    let bytes: [u8; 32] = raw.try_into().ok()?;
    let key = PublicKey::from(KeyData::Ed25519(Ed25519PublicKey(bytes)));
    Some(key.fingerprint(HashAlg::Sha256).to_string())
}

/// Our key as rustls presents it.
fn certified(me: &Signer) -> Result<Arc<CertifiedKey>, TlsError> {
    let seed = me
        .ed25519_seed()
        .ok_or_else(|| TlsError::NotEd25519(me.fingerprint().to_string()))?;
    let pkcs8 = [&PKCS8_PREFIX[..], &seed[..]].concat();
    let signing = provider()
        .key_provider
        .load_private_key(PrivateKeyDer::Pkcs8(pkcs8.into()))
        .map_err(|e| TlsError::Setup(e.to_string()))?;
    let cert = CertificateDer::from(spki(me.public_key())?);
    Ok(Arc::new(CertifiedKey::new(vec![cert], signing)))
}

/// Which keys a server accepts: asked with the fingerprint of the key a
/// client presented, during its handshake.
pub trait Trust: Send + Sync {
    fn trusts(&self, fingerprint: &str) -> bool;
}

impl<F: Fn(&str) -> bool + Send + Sync> Trust for F {
    fn trusts(&self, fingerprint: &str) -> bool {
        self(fingerprint)
    }
}

/// A server that requires a client key `trust` accepts.
pub fn server_config(
    me: &Signer,
    trust: Arc<dyn Trust>,
) -> Result<Arc<rustls::ServerConfig>, TlsError> {
    let verifier = Arc::new(Pinned {
        want: Want::Trusted(trust),
        algs: provider().signature_verification_algorithms,
    });
    let mut config = rustls::ServerConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(|e| TlsError::Setup(e.to_string()))?
        .with_client_cert_verifier(verifier)
        .with_cert_resolver(Arc::new(
            rustls::server::AlwaysResolvesServerRawPublicKeys::new(certified(me)?),
        ));
    // No session resumption: a resumed session skips the client's key, so
    // a key revoked since would still complete a handshake. Connections are
    // kept (`crate::client::Channel`), so full handshakes are few.
    config.session_storage = Arc::new(rustls::server::NoServerSessionStorage {});
    config.send_tls13_tickets = 0;
    Ok(Arc::new(config))
}

/// A client that presents `me` and talks only to the holder of `peer`.
pub fn client_config(me: &Signer, peer: &PublicKey) -> Result<Arc<rustls::ClientConfig>, TlsError> {
    let verifier = Arc::new(Pinned {
        want: Want::Exactly(crate::auth::fingerprint(peer)),
        algs: provider().signature_verification_algorithms,
    });
    spki(peer)?;
    let mut config = rustls::ClientConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(|e| TlsError::Setup(e.to_string()))?
        .dangerous()
        .with_custom_certificate_verifier(verifier)
        .with_client_cert_resolver(Arc::new(
            rustls::client::AlwaysResolvesClientRawPublicKeys::new(certified(me)?),
        ));
    // Every handshake checks both keys (see `server_config`).
    config.resumption = rustls::client::Resumption::disabled();
    Ok(Arc::new(config))
}

/// The name a client connects with.
pub fn server_name() -> ServerName<'static> {
    ServerName::try_from(SERVER_NAME).expect("a valid DNS name")
}

/// The fingerprint of the key the peer of `conn` presented (after a
/// completed handshake).
pub fn peer_fingerprint(conn: &rustls::CommonState) -> Option<String> {
    conn.peer_certificates()
        .and_then(|c| c.first())
        .and_then(|c| fingerprint_of_spki(c.as_ref()))
}

enum Want {
    /// One key (a client pinning its server).
    Exactly(String),
    /// Any key the trust accepts (a server).
    Trusted(Arc<dyn Trust>),
}

/// Accepts raw ed25519 keys that are wanted, and checks the handshake
/// signatures made with them.
struct Pinned {
    want: Want,
    algs: WebPkiSupportedAlgorithms,
}

impl fmt::Debug for Pinned {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Pinned").finish_non_exhaustive()
    }
}

impl Pinned {
    fn check(&self, presented: &CertificateDer<'_>) -> Result<(), rustls::Error> {
        let bad = || {
            rustls::Error::InvalidCertificate(
                rustls::CertificateError::ApplicationVerificationFailure,
            )
        };
        let fp = fingerprint_of_spki(presented.as_ref()).ok_or_else(bad)?;
        let ok = match &self.want {
            Want::Exactly(want) => *want == fp,
            Want::Trusted(t) => t.trusts(&fp),
        };
        if ok { Ok(()) } else { Err(bad()) }
    }

    fn signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature_with_raw_key(
            message,
            &SubjectPublicKeyInfoDer::from(cert.as_ref()),
            dss,
            &self.algs,
        )
    }
}

impl ServerCertVerifier for Pinned {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        self.check(end_entity)
            .map(|()| ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        _message: &[u8],
        _cert: &CertificateDer<'_>,
        _dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        Err(rustls::Error::PeerIncompatible(
            rustls::PeerIncompatible::Tls12NotOffered,
        ))
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        vec![SignatureScheme::ED25519]
    }

    fn requires_raw_public_keys(&self) -> bool {
        true
    }
}

impl ClientCertVerifier for Pinned {
    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        &[]
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        self.check(end_entity)
            .map(|()| ClientCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        _message: &[u8],
        _cert: &CertificateDer<'_>,
        _dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        Err(rustls::Error::PeerIncompatible(
            rustls::PeerIncompatible::Tls12NotOffered,
        ))
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        vec![SignatureScheme::ED25519]
    }

    fn requires_raw_public_keys(&self) -> bool {
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_round_trip_through_their_der() {
        let s = Signer::random();
        let der = spki(s.public_key()).unwrap();
        assert_eq!(der.len(), 44);
        assert_eq!(fingerprint_of_spki(&der).as_deref(), Some(s.fingerprint()));
        assert_eq!(fingerprint_of_spki(&der[1..]), None);
        certified(&s).unwrap();
    }
}

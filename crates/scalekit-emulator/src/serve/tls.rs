//! TLS for the emulator: a local development CA made on first run and kept on disk, and a server
//! certificate for `127.0.0.1`, `localhost` and `::1` signed by it at every start. SDKs that
//! always speak TLS (Python's gRPC channel, Go's connect client) trust the CA through
//! `NODE_EXTRA_CA_CERTS`, `GRPC_DEFAULT_SSL_ROOTS_FILE_PATH` or `REQUESTS_CA_BUNDLE`.

use std::fs;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose, PublicKeyData as _,
};
use rustls::ServerConfig;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use time::{Duration, OffsetDateTime};

/// The CA certificate's file name in the TLS directory.
pub const CA_CERT_FILE: &str = "ca.pem";
/// The CA private key's file name in the TLS directory (mode 0600 on Unix).
pub const CA_KEY_FILE: &str = "ca-key.pem";

/// The names the server certificate is valid for.
const SERVER_NAMES: [&str; 3] = ["127.0.0.1", "localhost", "::1"];
/// The CA's subject; the same every run, so a kept key signs for the kept certificate.
const CA_COMMON_NAME: &str = "Scalekit emulator local development CA";

/// Where the development CA lives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsOptions {
    /// The directory holding `ca.pem` and `ca-key.pem` (`--tls-dir`, default `./.testbed/tls`).
    pub dir: PathBuf,
}

/// Why TLS could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// The CA directory or a file in it could not be read or written.
    #[error("{path}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// A key or certificate could not be made or parsed.
    #[error("certificate")]
    Certificate(#[from] rcgen::Error),
    /// rustls refused the certificate or the protocol versions.
    #[error("tls configuration")]
    Rustls(#[from] rustls::Error),
}

/// The development CA and the server configuration built from it.
#[derive(Clone)]
pub struct TlsSetup {
    ca_cert_path: PathBuf,
    ca_cert_pem: String,
    ca_public_key_pin: String,
    server_config: Arc<ServerConfig>,
}

impl std::fmt::Debug for TlsSetup {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("TlsSetup")
            .field("ca_cert_path", &self.ca_cert_path)
            .finish_non_exhaustive()
    }
}

impl TlsSetup {
    /// Loads the CA from `options.dir`, or makes one there on first run, then signs a fresh
    /// server certificate with it. The server offers ALPN `h2` and `http/1.1`.
    pub fn load_or_create(options: &TlsOptions) -> Result<TlsSetup, TlsError> {
        let ca_cert_path = options.dir.join(CA_CERT_FILE);
        let ca_key_path = options.dir.join(CA_KEY_FILE);
        let (ca_key, ca_cert_pem) = if ca_cert_path.exists() && ca_key_path.exists() {
            let key_pem = read(&ca_key_path)?;
            (KeyPair::from_pem(&key_pem)?, read(&ca_cert_path)?)
        } else {
            fs::create_dir_all(&options.dir).map_err(|source| TlsError::Io {
                path: options.dir.clone(),
                source,
            })?;
            let key = KeyPair::generate()?;
            let now = OffsetDateTime::now_utc();
            let mut params = ca_params();
            params.not_before = now - Duration::days(1);
            params.not_after = now + Duration::days(3650);
            let cert_pem = params.self_signed(&key)?.pem();
            write(&ca_key_path, &key.serialize_pem(), true)?;
            write(&ca_cert_path, &cert_pem, false)?;
            (key, cert_pem)
        };
        let ca_der = CertificateDer::from(
            pem_body(&ca_cert_pem)
                .ok_or_else(|| TlsError::Certificate(rcgen::Error::CouldNotParseCertificate))?,
        );

        let ca_public_key_pin = public_key_pin(&ca_key.subject_public_key_info());
        let issuer = Issuer::new(ca_params(), ca_key);
        let server_key = KeyPair::generate()?;
        let now = OffsetDateTime::now_utc();
        let mut params = CertificateParams::new(SERVER_NAMES.map(str::to_owned).to_vec())?;
        params
            .distinguished_name
            .push(DnType::CommonName, "Scalekit emulator");
        params.not_before = now - Duration::days(1);
        params.not_after = now + Duration::days(365);
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        params.use_authority_key_identifier_extension = true;
        let server_cert = params.signed_by(&server_key, &issuer)?;

        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let mut server_config = ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()?
            .with_no_client_auth()
            .with_single_cert(
                vec![server_cert.der().clone(), ca_der],
                PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(server_key.serialize_der())),
            )?;
        server_config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        Ok(TlsSetup {
            ca_cert_path,
            ca_cert_pem,
            ca_public_key_pin,
            server_config: Arc::new(server_config),
        })
    }

    /// The CA certificate file clients should trust.
    pub fn ca_cert_path(&self) -> &Path {
        &self.ca_cert_path
    }

    /// The CA certificate, PEM.
    pub fn ca_cert_pem(&self) -> &str {
        &self.ca_cert_pem
    }

    /// The base64 SHA-256 of the CA's SubjectPublicKeyInfo (RFC 5280 §4.1.2.7), the pin
    /// Chromium's `--ignore-certificate-errors-spki-list` takes: Chromium has no switch to trust
    /// a CA file.
    pub fn ca_public_key_pin(&self) -> &str {
        &self.ca_public_key_pin
    }

    /// The rustls server configuration (ALPN `h2`, `http/1.1`).
    pub fn server_config(&self) -> &Arc<ServerConfig> {
        &self.server_config
    }
}

/// The CA's parameters, minus its validity: `Issuer` needs only the subject and key settings,
/// so a CA kept on disk is rebuilt from these and its key.
fn ca_params() -> CertificateParams {
    let mut params = CertificateParams::default();
    let mut name = DistinguishedName::new();
    name.push(DnType::CommonName, CA_COMMON_NAME);
    name.push(DnType::OrganizationName, "testbed");
    params.distinguished_name = name;
    params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    params
}

/// The base64 SHA-256 of a DER SubjectPublicKeyInfo.
fn public_key_pin(subject_public_key_info: &[u8]) -> String {
    use base64::Engine as _;

    let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, subject_public_key_info);
    base64::engine::general_purpose::STANDARD.encode(digest)
}

/// The DER of the first PEM block (the CA file holds one certificate).
fn pem_body(pem: &str) -> Option<Vec<u8>> {
    use base64::Engine as _;

    let body: String = pem
        .lines()
        .skip_while(|line| !line.starts_with("-----BEGIN CERTIFICATE-----"))
        .skip(1)
        .take_while(|line| !line.starts_with("-----END CERTIFICATE-----"))
        .collect();
    base64::engine::general_purpose::STANDARD.decode(body).ok()
}

fn read(path: &Path) -> Result<String, TlsError> {
    fs::read_to_string(path).map_err(|source| TlsError::Io {
        path: path.to_owned(),
        source,
    })
}

fn write(path: &Path, contents: &str, private: bool) -> Result<(), TlsError> {
    let io_error = |source| TlsError::Io {
        path: path.to_owned(),
        source,
    };
    let mut options = fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    if private {
        use std::os::unix::fs::OpenOptionsExt as _;
        options.mode(0o600);
    }
    #[cfg(not(unix))]
    let _ = private;
    let mut file = options.open(path).map_err(io_error)?;
    file.write_all(contents.as_bytes()).map_err(io_error)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn temporary_dir(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!(
            "scalekit-emulator-tls-{name}-{}",
            std::process::id()
        ));
        let _ = fs::remove_dir_all(&dir);
        dir
    }

    #[test]
    fn the_ca_is_made_once_and_reused() {
        let dir = temporary_dir("reuse");
        let options = TlsOptions { dir: dir.clone() };
        let first = TlsSetup::load_or_create(&options).expect("first run makes a CA");
        let second = TlsSetup::load_or_create(&options).expect("second run reuses it");
        assert_eq!(first.ca_cert_pem(), second.ca_cert_pem());
        assert_eq!(first.ca_public_key_pin(), second.ca_public_key_pin());
        assert_eq!(first.ca_cert_path(), dir.join(CA_CERT_FILE));
        assert!(
            first
                .ca_cert_pem()
                .starts_with("-----BEGIN CERTIFICATE-----")
        );
        assert_eq!(
            first.server_config().alpn_protocols,
            vec![b"h2".to_vec(), b"http/1.1".to_vec()]
        );
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            let mode = fs::metadata(dir.join(CA_KEY_FILE))
                .map(|metadata| metadata.permissions().mode() & 0o777)
                .ok();
            assert_eq!(mode, Some(0o600));
        }
        let _ = fs::remove_dir_all(&dir);
    }

    /// The public key of a P-256 CA made with `openssl req -x509` (`openssl x509 -pubkey
    /// -noout`), and the pin `openssl pkey -pubin -outform der | openssl dgst -sha256 -binary |
    /// base64` printed for it.
    #[test]
    fn a_pin_is_the_hash_of_the_public_key_info() {
        use base64::Engine as _;

        let subject_public_key_info = base64::engine::general_purpose::STANDARD
            .decode(
                "MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAEK4uS2to1oBFDpaQDMtyTyieQwIr1\
                 abwTSMxhT8pA2Y+u/MWi4LFPaDKoN1kE8L8sG6S5Uw0tGXVLI+DmiTCvNg==",
            )
            .expect("base64");
        assert_eq!(
            public_key_pin(&subject_public_key_info),
            "YBfISZMiDRLyfSusmwdBehlVHKxRBsm2FGFD5H9m5IU="
        );
    }

    /// A CA kept on disk that openssl made (`openssl genpkey -algorithm EC -pkeyopt
    /// ec_paramgen_curve:P-256`, `openssl req -x509`) gets the pin openssl computes for it (as
    /// above): the key pair's SubjectPublicKeyInfo is the certificate's.
    #[test]
    fn a_kept_cas_pin_matches_openssl() {
        const KEY: &str = "-----BEGIN PRIVATE KEY-----
MIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQgkxSlSGwNWaB3cY1m
HNzu8h/2/16DRqjZ1Gse2Drqoz6hRANCAATKhrgpgFxfOZOO4zDmpcDAZnMK2pe7
RdUP8yRF1EbV9iI8jcdoY7EUf/YbzSLSIb5uwKXCkRUlTYGcDM6gE644
-----END PRIVATE KEY-----
";
        const CERTIFICATE: &str = "-----BEGIN CERTIFICATE-----
MIIBeTCCAR+gAwIBAgIUJM/iZQ97CO27j93KQcfhIBW7w1owCgYIKoZIzj0EAwIw
EjEQMA4GA1UEAwwHVGVzdCBDQTAeFw0yNjEyMDcwNDE0NTZaFw0zNjEyMDQwNDE0
NTZaMBIxEDAOBgNVBAMMB1Rlc3QgQ0EwWTATBgcqhkjOPQIBBggqhkjOPQMBBwNC
AATKhrgpgFxfOZOO4zDmpcDAZnMK2pe7RdUP8yRF1EbV9iI8jcdoY7EUf/YbzSLS
Ib5uwKXCkRUlTYGcDM6gE644o1MwUTAdBgNVHQ4EFgQUYMh7cb4w6I4YdayLVWcB
PJTclB8wHwYDVR0jBBgwFoAUYMh7cb4w6I4YdayLVWcBPJTclB8wDwYDVR0TAQH/
BAUwAwEB/zAKBggqhkjOPQQDAgNIADBFAiEA3jxb0ydpmoGRJE3+dgjiNmXUdR+U
SONqpNGy15IMxs8CIDKr73Q3k5ap2Q6RcOaS3bP7D8h5eBbmgKNdcQC9pt0r
-----END CERTIFICATE-----
";
        let dir = temporary_dir("openssl");
        fs::create_dir_all(&dir).expect("a temporary directory");
        fs::write(dir.join(CA_KEY_FILE), KEY).expect("the key");
        fs::write(dir.join(CA_CERT_FILE), CERTIFICATE).expect("the certificate");
        let setup = TlsSetup::load_or_create(&TlsOptions { dir: dir.clone() });
        let _ = fs::remove_dir_all(&dir);
        assert_eq!(
            setup.expect("the kept CA loads").ca_public_key_pin(),
            "PdKDiKFjbGP1xhpP+OXG+ZbYGhDCNH+7S85tXlL3/EM="
        );
    }
}

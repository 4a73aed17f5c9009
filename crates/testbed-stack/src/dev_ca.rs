//! The development CA a stack serves TLS from, and what makes other programs trust it.
//!
//! `testbed up --tls` and the app check's `--tls` hand the CA to the stack
//! ([`crate::StackConfig::tls`]) and print, or write to an env file, the variables that make Node,
//! Python and gRPC trust it ([`DevCa::variables`]). Variables that add to a program's roots name
//! the CA; those that replace its roots name a bundle of the system's roots followed by the CA
//! (`trust-bundle.pem` beside it), so a shell that loaded them still reaches the package
//! registries.

use std::path::{Path, PathBuf};

use scalekit_emulator::{TlsOptions, TlsSetup};

/// The system's CA bundles, where distributions keep them.
const SYSTEM_BUNDLES: [&str; 3] = [
    "/etc/ssl/certs/ca-certificates.crt",
    "/etc/pki/tls/certs/ca-bundle.crt",
    "/etc/ssl/cert.pem",
];

/// Which file a trust variable names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum TrustFile {
    /// The development CA alone: for variables that add to the program's roots.
    Ca,
    /// The system's roots and the development CA: for variables that replace the program's roots.
    Bundle,
}

/// The variables that make each stack trust the development CA, the file each names, and who
/// reads it.
const TRUST_VARIABLES: [(&str, TrustFile, &str); 5] = [
    (
        "TESTBED_CA_CERT",
        TrustFile::Ca,
        "The development CA (PEM) the emulator's certificate is signed by (--ca-cert of your-app and mcp-server)",
    ),
    (
        "NODE_EXTRA_CA_CERTS",
        TrustFile::Ca,
        "Node.js (fetch, axios, https) trusts it besides its own roots",
    ),
    (
        "GRPC_DEFAULT_SSL_ROOTS_FILE_PATH",
        TrustFile::Bundle,
        "gRPC (grpcio, @grpc/grpc-js; the official SDKs' gRPC calls): the system's roots and the CA",
    ),
    (
        "REQUESTS_CA_BUNDLE",
        TrustFile::Bundle,
        "Python requests: the system's roots and the CA",
    ),
    (
        "SSL_CERT_FILE",
        TrustFile::Bundle,
        "OpenSSL-based clients (Python's ssl, curl) and Rust's rustls platform verifier: the system's roots and the CA",
    ),
];

/// One variable that makes a program trust the CA.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrustVariable {
    /// `NODE_EXTRA_CA_CERTS`, ….
    pub name: &'static str,
    /// The file it names (absolute).
    pub path: PathBuf,
    /// Who reads it.
    pub about: &'static str,
}

/// Why the CA could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum DevCaError {
    /// The CA could not be made, loaded or used to sign the server certificate.
    #[error("cannot set up TLS in {dir}")]
    Tls {
        dir: PathBuf,
        #[source]
        source: scalekit_emulator::TlsError,
    },
    /// A file could not be read or written.
    #[error("cannot {action} {path}")]
    Io {
        action: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// The development CA, the TLS setup made from it, and the trust bundle beside it.
#[derive(Debug, Clone)]
pub struct DevCa {
    setup: TlsSetup,
    ca: PathBuf,
    bundle: PathBuf,
    /// The system bundle the trust bundle starts with; `None` when none was found.
    system: Option<PathBuf>,
}

impl DevCa {
    /// Loads the CA from `dir`, or makes it there on first run, signs a server certificate for
    /// loopback with it, and writes `trust-bundle.pem` beside it: the roots `SSL_CERT_FILE` named
    /// (unless that is this very bundle, from a shell that loaded an env file), else the first
    /// system bundle found, then the CA.
    pub fn load_or_create(dir: &Path) -> Result<DevCa, DevCaError> {
        let io = |action, path: &Path| {
            let path = path.to_owned();
            move |source| DevCaError::Io {
                action,
                path,
                source,
            }
        };
        let dir = std::path::absolute(dir).map_err(io("resolve", dir))?;
        let setup =
            TlsSetup::load_or_create(&TlsOptions { dir: dir.clone() }).map_err(|source| {
                DevCaError::Tls {
                    dir: dir.clone(),
                    source,
                }
            })?;
        let ca = setup.ca_cert_path().to_owned();
        let bundle = ca.with_file_name("trust-bundle.pem");
        let system = std::env::var_os("SSL_CERT_FILE")
            .map(PathBuf::from)
            .into_iter()
            .chain(SYSTEM_BUNDLES.iter().map(PathBuf::from))
            .find(|path| path.is_file() && *path != bundle);
        let mut text = match &system {
            Some(path) => std::fs::read_to_string(path).map_err(io("read", path))?,
            None => String::new(),
        };
        if !text.is_empty() && !text.ends_with('\n') {
            text.push('\n');
        }
        text.push_str(setup.ca_cert_pem());
        // Whole or not at all: an app may be opening a TLS channel with it right now.
        crate::settings::write_atomically(&bundle, &text, false).map_err(io("write", &bundle))?;
        Ok(DevCa {
            setup,
            ca,
            bundle,
            system,
        })
    }

    /// The TLS setup for [`crate::StackConfig::tls`].
    pub fn setup(&self) -> TlsSetup {
        self.setup.clone()
    }

    /// The CA certificate file (absolute).
    pub fn ca_path(&self) -> &Path {
        &self.ca
    }

    /// The system's roots followed by the CA (absolute).
    pub fn bundle_path(&self) -> &Path {
        &self.bundle
    }

    /// Every variable that makes a program trust the CA, with the file it names.
    pub fn variables(&self) -> Vec<TrustVariable> {
        TRUST_VARIABLES
            .iter()
            .map(|(name, file, about)| TrustVariable {
                name,
                path: match file {
                    TrustFile::Ca => self.ca.clone(),
                    TrustFile::Bundle => self.bundle.clone(),
                },
                about,
            })
            .collect()
    }

    /// What to tell a person: where the CA and the bundle are, and the `export` lines.
    pub fn describe(&self) -> String {
        let system = match &self.system {
            Some(path) => format!("the system's roots ({})", path.display()),
            None => "no system roots (none found: only the CA)".to_owned(),
        };
        let mut out = format!(
            "TLS: the emulator serves HTTPS and gRPC over TLS with a certificate from the development CA\n  {}\n\
             ({} holds {system} and the CA.)\nTrust it in your shell:\n",
            self.ca.display(),
            self.bundle.display()
        );
        for variable in self.variables() {
            out.push_str(&format!(
                "  export {}={}\n",
                variable.name,
                variable.path.display()
            ));
        }
        out.trim_end().to_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_bundle_ends_with_the_ca_and_the_variables_name_the_right_file() {
        let dir = std::env::temp_dir().join(format!("dev-ca-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let ca = DevCa::load_or_create(&dir).expect("a CA");
        let pem = std::fs::read_to_string(ca.ca_path()).expect("the CA");
        let bundle = std::fs::read_to_string(ca.bundle_path()).expect("the bundle");
        assert!(bundle.ends_with(&pem));
        let named: Vec<(&str, bool)> = ca
            .variables()
            .iter()
            .map(|variable| (variable.name, variable.path == ca.ca_path()))
            .collect();
        assert_eq!(
            named,
            [
                ("TESTBED_CA_CERT", true),
                ("NODE_EXTRA_CA_CERTS", true),
                ("GRPC_DEFAULT_SSL_ROOTS_FILE_PATH", false),
                ("REQUESTS_CA_BUNDLE", false),
                ("SSL_CERT_FILE", false),
            ]
        );
        // A second start keeps the CA (clients that trust it keep trusting it).
        let again = DevCa::load_or_create(&dir).expect("the same CA");
        assert_eq!(
            std::fs::read_to_string(again.ca_path()).expect("the CA"),
            pem
        );
        let _ = std::fs::remove_dir_all(&dir);
    }
}

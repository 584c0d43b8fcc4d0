//! TLS set-up shared by every client and server in the process: the one rustls provider
//! (ring) and the loading of an operator's private CA file; the listeners' reloadable
//! certificates (`server`), the channels' client side (`client`) and the stream type both
//! hand to the byte drivers (`stream`).
//!
//! Invariants: exactly one rustls provider exists in the build (ring; nothing depends on
//! aws-lc-rs), installed as the process default by [`install_provider`] before any
//! `reqwest::Client` is built (reqwest panics without one); a CA file is read and checked
//! once, at start, so a missing file, a file with no certificate, or a certificate rustls
//! cannot use is a start-up error naming the config key.

use std::path::{Path, PathBuf};

pub mod client;
pub mod server;
pub mod stream;

use rustls::RootCertStore;
use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;

/// Why a PEM file (a CA file, a listener's certificate or key) cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum PemError {
    /// The file could not be read.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Cause.
        source: std::io::Error,
    },
    /// The file has nothing usable (no certificate, no key, a malformed block).
    #[error("{path}: {reason}")]
    Bad {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
}

/// Installs ring as the process-wide rustls provider. Call it once at start, before any
/// `reqwest::Client` is built; later calls (and a provider installed by someone else) are
/// fine and change nothing.
pub fn install_provider() {
    // Err means a provider is already installed: that one stays, which is what we want.
    let _ = rustls::crypto::ring::default_provider().install_default();
}

/// Reads the PEM certificates of a private CA file and checks that rustls accepts each as a
/// trust anchor.
///
/// # Errors
/// [`PemError::Read`] when the file cannot be read, [`PemError::Bad`] when it holds
/// no certificate, a malformed PEM block, or a certificate that is not a usable anchor.
pub fn load_ca_file(path: &Path) -> Result<Vec<CertificateDer<'static>>, PemError> {
    let pem = std::fs::read(path).map_err(|source| PemError::Read {
        path: path.to_owned(),
        source,
    })?;
    let bad = |reason: String| PemError::Bad {
        path: path.to_owned(),
        reason,
    };
    let certs = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| bad(format!("not PEM certificates: {e}")))?;
    if certs.is_empty() {
        return Err(bad("no \"BEGIN CERTIFICATE\" block found".into()));
    }
    let mut store = RootCertStore::empty();
    for (i, c) in certs.iter().enumerate() {
        store
            .add(c.clone())
            .map_err(|e| bad(format!("certificate {} is not a usable CA: {e}", i + 1)))?;
    }
    Ok(certs)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
        let p = dir.join(name);
        std::fs::write(&p, text).expect("write");
        p
    }

    #[test]
    fn ca_file_errors_say_what_is_wrong() {
        let dir = tempfile::tempdir().expect("tempdir");
        let missing = dir.path().join("nope.pem");
        assert!(matches!(load_ca_file(&missing), Err(PemError::Read { .. })));
        let empty = write(dir.path(), "empty.pem", "just text\n");
        let e = load_ca_file(&empty).expect_err("no certificate");
        assert!(e.to_string().contains("BEGIN CERTIFICATE"), "{e}");
        let junk = write(
            dir.path(),
            "junk.pem",
            "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n",
        );
        assert!(matches!(load_ca_file(&junk), Err(PemError::Bad { .. })));
    }
}

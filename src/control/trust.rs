//! Which certificate authorities the central client trusts over HTTPS.
//!
//! A fleet's central server is often signed by a private CA, and corporate
//! networks often re-sign traffic with their own; either way the CA is
//! installed in the system trust store, the place curl, git and apt read.
//! So the client trusts what OpenSSL-based tools trust: `SSL_CERT_FILE`
//! and `SSL_CERT_DIR` when set, else the first system bundle found. Only a
//! host with no usable bundle at all (a bare container) falls back to the
//! Mozilla roots compiled into the binary.

use std::path::{Path, PathBuf};

use ureq::tls::{Certificate, PemItem, RootCerts, parse_pem};

/// Where distributions keep their PEM bundle, in the order OpenSSL-based
/// tools probe them.
const SYSTEM_BUNDLES: [&str; 6] = [
    "/etc/ssl/certs/ca-certificates.crt",
    "/etc/pki/tls/certs/ca-bundle.crt",
    "/etc/pki/ca-trust/extracted/pem/tls-ca-bundle.pem",
    "/etc/ssl/ca-bundle.pem",
    "/etc/ssl/cert.pem",
    "/etc/ssl/certs/ca-bundle.crt",
];

/// Where the roots came from (for the log and for tests).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TrustSource {
    /// Certificates read from these files.
    Files(Vec<PathBuf>),
    /// No usable bundle: the compiled-in Mozilla roots.
    BuiltIn,
}

/// The roots to verify the central server against, read now from the
/// process environment and the file system.
pub fn root_certs() -> (RootCerts, TrustSource) {
    let env = |name: &str| std::env::var_os(name).filter(|value| !value.is_empty());
    root_certs_from(
        env("SSL_CERT_FILE").map(PathBuf::from),
        env("SSL_CERT_DIR").map(PathBuf::from),
        &SYSTEM_BUNDLES.map(PathBuf::from),
    )
}

/// [`root_certs`] over explicit places: the `SSL_CERT_FILE` and
/// `SSL_CERT_DIR` values, then the bundles to probe when neither is set.
/// A place that is set but yields no certificate falls through to the
/// next, so a stale variable never leaves the client trusting nothing.
pub fn root_certs_from(
    cert_file: Option<PathBuf>,
    cert_dir: Option<PathBuf>,
    bundles: &[PathBuf],
) -> (RootCerts, TrustSource) {
    let mut places: Vec<PathBuf> = cert_file.into_iter().collect();
    if let Some(dir) = cert_dir {
        places.extend(files_in(&dir));
    }
    let (mut certs, mut used) = read_all(&places);
    for bundle in bundles {
        if !certs.is_empty() {
            break;
        }
        (certs, used) = read_all(std::slice::from_ref(bundle));
    }
    if certs.is_empty() {
        return (RootCerts::WebPki, TrustSource::BuiltIn);
    }
    // A hashed directory holds each CA up to three times (the `.pem`, its
    // hash link, the bundle beside them): keep one copy in memory.
    certs.sort_unstable_by(|a, b| a.der().cmp(b.der()));
    certs.dedup_by(|a, b| a.der() == b.der());
    (RootCerts::new_with_certs(&certs), TrustSource::Files(used))
}

/// The regular files directly inside `dir`, sorted (OpenSSL's hashed
/// directories hold one certificate per file).
fn files_in(dir: &Path) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut files: Vec<PathBuf> = entries
        .flatten()
        .map(|entry| entry.path())
        .filter(|path| path.is_file())
        .collect();
    files.sort();
    files
}

/// Every certificate in the PEM files, and the files that held at least
/// one; unreadable files and non-certificate sections are skipped.
fn read_all(files: &[PathBuf]) -> (Vec<Certificate<'static>>, Vec<PathBuf>) {
    let mut certs = Vec::new();
    let mut used = Vec::new();
    for file in files {
        let Ok(pem) = std::fs::read(file) else {
            continue;
        };
        let before = certs.len();
        certs.extend(parse_pem(&pem).filter_map(|item| match item {
            Ok(PemItem::Certificate(cert)) => Some(cert),
            _ => None,
        }));
        if certs.len() > before {
            used.push(file.clone());
        }
    }
    (certs, used)
}

#[cfg(test)]
mod tests {
    use super::*;

    const CA: &str = include_str!("../../tests/fixtures/tls/ca.pem");

    fn count(roots: &RootCerts) -> usize {
        match roots {
            RootCerts::Specific(certs) => certs.len(),
            _ => 0,
        }
    }

    #[test]
    fn the_environment_wins_then_the_first_usable_bundle_then_the_built_in_roots() {
        let dir = tempfile::tempdir().unwrap();
        let ca = dir.path().join("ca.pem");
        std::fs::write(&ca, CA).unwrap();
        let empty = dir.path().join("empty.pem");
        std::fs::write(&empty, "not a certificate\n").unwrap();
        let absent = dir.path().join("absent.pem");

        let (roots, source) = root_certs_from(Some(ca.clone()), None, &[]);
        assert_eq!(
            (count(&roots), source),
            (1, TrustSource::Files(vec![ca.clone()]))
        );

        let certs_dir = dir.path().join("certs");
        std::fs::create_dir(&certs_dir).unwrap();
        std::fs::write(certs_dir.join("a.pem"), format!("{CA}{CA}")).unwrap();
        std::fs::write(certs_dir.join("b.pem"), CA).unwrap();
        let (roots, source) = root_certs_from(Some(absent.clone()), Some(certs_dir.clone()), &[]);
        assert_eq!(
            (count(&roots), source),
            (
                1,
                TrustSource::Files(vec![certs_dir.join("a.pem"), certs_dir.join("b.pem")])
            ),
            "one copy of each CA, whichever files name it"
        );

        let bundles = [absent.clone(), empty.clone(), ca.clone()];
        let (roots, source) = root_certs_from(None, None, &bundles);
        assert_eq!(
            (count(&roots), source),
            (1, TrustSource::Files(vec![ca.clone()]))
        );
        let (roots, source) = root_certs_from(Some(empty), None, &bundles);
        assert_eq!((count(&roots), source), (1, TrustSource::Files(vec![ca])));

        let (roots, source) = root_certs_from(None, None, &[absent]);
        assert!(matches!(roots, RootCerts::WebPki));
        assert_eq!(source, TrustSource::BuiltIn);
    }
}

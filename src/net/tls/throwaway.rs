//! Throwaway PKI generated at run time, for tests and development bring-up.
//!
//! Keys are created fresh on every run and live only in memory (or in files the caller asks
//! for with [`ThrowawayPki::write_to`]), so no private key ever needs to be committed. The
//! certificates are good enough for real clients (`curl --cacert ca.pem`, `openssl s_client
//! -CAfile ca.pem`, Python's `ssl`), but the CA key is discarded with the value: nothing here
//! is meant to outlive a test run or a debugging session.

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use openssl::asn1::{Asn1Integer, Asn1Time};
use openssl::bn::{BigNum, MsbOption};
use openssl::ec::{EcGroup, EcKey};
use openssl::error::ErrorStack;
use openssl::hash::MessageDigest;
use openssl::nid::Nid;
use openssl::pkey::{PKey, Private};
use openssl::x509::extension::{
    AuthorityKeyIdentifier, BasicConstraints, ExtendedKeyUsage, KeyUsage, SubjectAlternativeName,
    SubjectKeyIdentifier,
};
use openssl::x509::{X509Builder, X509Name, X509NameBuilder, X509};

use crate::net::tls::context::{TlsError, TlsErrorKind};

/// Validity of generated certificates. Long enough for a debugging session that keeps the
/// written files around; short enough that a leaked file goes stale.
const VALIDITY_DAYS: u32 = 30;

/// Backdating of `notBefore`, so a peer whose clock is slightly behind still accepts the
/// certificate.
const BACKDATE_SECS: i64 = 3600;

/// A certificate and its private key, both PEM.
#[derive(Debug, Clone)]
pub struct IssuedCertificate {
    cert_pem: Vec<u8>,
    key_pem: Vec<u8>,
}

impl IssuedCertificate {
    /// The certificate (leaf only; the issuer is the PKI's CA).
    pub fn cert_pem(&self) -> &[u8] {
        &self.cert_pem
    }

    /// The unencrypted PKCS#8 private key.
    pub fn key_pem(&self) -> &[u8] {
        &self.key_pem
    }
}

/// Paths written by [`ThrowawayPki::write_to`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ThrowawayPaths {
    /// CA certificate (`ca.pem`): give it to clients (`curl --cacert`, `-CAfile`).
    pub ca: PathBuf,
    /// Server certificate (`cert.pem`).
    pub cert: PathBuf,
    /// Server private key (`key.pem`, mode 0600 on Unix).
    pub key: PathBuf,
    /// Client certificate (`client-cert.pem`), if one was generated.
    pub client_cert: Option<PathBuf>,
    /// Client private key (`client-key.pem`, mode 0600 on Unix), if one was generated.
    pub client_key: Option<PathBuf>,
}

/// A CA plus a server certificate (and optionally a client certificate) signed by it, all EC
/// P-256, generated in memory.
pub struct ThrowawayPki {
    ca_cert: X509,
    ca_key: PKey<Private>,
    ca_pem: Vec<u8>,
    server: IssuedCertificate,
    client: Option<IssuedCertificate>,
}

impl std::fmt::Debug for ThrowawayPki {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print key material.
        f.debug_struct("ThrowawayPki")
            .field("has_client_cert", &self.client.is_some())
            .finish_non_exhaustive()
    }
}

fn generation_error(stack: ErrorStack) -> TlsError {
    TlsError::config_stack("cannot generate throwaway certificate", &stack)
}

impl ThrowawayPki {
    /// Generates a CA and a server certificate valid for `server_names`: DNS names
    /// (`localhost`, `*.test`) and IP literals (`127.0.0.1`, `::1`, `[::1]`). The first name
    /// also becomes the subject's common name.
    pub fn generate(server_names: &[&str]) -> Result<Self, TlsError> {
        let (ca_cert, ca_key) = new_ca().map_err(generation_error)?;
        let ca_pem = ca_cert.to_pem().map_err(generation_error)?;
        let mut pki = ThrowawayPki {
            server: IssuedCertificate {
                cert_pem: Vec::new(),
                key_pem: Vec::new(),
            },
            ca_cert,
            ca_key,
            ca_pem,
            client: None,
        };
        pki.server = pki.issue_server_certificate(server_names)?;
        Ok(pki)
    }

    /// Like [`generate`](Self::generate), plus a client certificate with common name
    /// `client_name`, for testing client-certificate verification.
    pub fn generate_with_client(
        server_names: &[&str],
        client_name: &str,
    ) -> Result<Self, TlsError> {
        let mut pki = Self::generate(server_names)?;
        pki.client = Some(pki.issue_client_certificate(client_name)?);
        Ok(pki)
    }

    /// Issues another server certificate from this CA (e.g. one per SNI name).
    pub fn issue_server_certificate(&self, names: &[&str]) -> Result<IssuedCertificate, TlsError> {
        let first = names.first().ok_or_else(|| {
            TlsError::new(
                TlsErrorKind::Config,
                "a throwaway server certificate needs at least one name",
            )
        })?;
        let mut san = SubjectAlternativeName::new();
        for name in names {
            let bare = name
                .strip_prefix('[')
                .and_then(|rest| rest.strip_suffix(']'))
                .unwrap_or(name);
            if let Ok(ip) = bare.parse::<IpAddr>() {
                san.ip(&ip.to_string());
            } else if name.is_empty() {
                return Err(TlsError::new(
                    TlsErrorKind::Config,
                    "a throwaway certificate name must not be empty",
                ));
            } else {
                san.dns(name);
            }
        }
        self.issue(first, Purpose::Server(san))
            .map_err(generation_error)
    }

    /// Issues a client certificate (extended key usage `clientAuth`) from this CA.
    pub fn issue_client_certificate(
        &self,
        common_name: &str,
    ) -> Result<IssuedCertificate, TlsError> {
        self.issue(common_name, Purpose::Client)
            .map_err(generation_error)
    }

    /// The CA certificate, PEM. Clients trust this.
    pub fn ca_pem(&self) -> &[u8] {
        &self.ca_pem
    }

    /// The server certificate, PEM.
    pub fn cert_pem(&self) -> &[u8] {
        self.server.cert_pem()
    }

    /// The server private key, PEM.
    pub fn key_pem(&self) -> &[u8] {
        self.server.key_pem()
    }

    /// The client certificate, PEM, if generated.
    pub fn client_cert_pem(&self) -> Option<&[u8]> {
        self.client.as_ref().map(IssuedCertificate::cert_pem)
    }

    /// The client private key, PEM, if generated.
    pub fn client_key_pem(&self) -> Option<&[u8]> {
        self.client.as_ref().map(IssuedCertificate::key_pem)
    }

    /// Writes `ca.pem`, `cert.pem`, `key.pem` (and `client-cert.pem`, `client-key.pem` when
    /// present) into `dir`, creating it. Key files are readable by the owner only on Unix.
    pub fn write_to(&self, dir: impl AsRef<Path>) -> Result<ThrowawayPaths, TlsError> {
        let dir = dir.as_ref();
        std::fs::create_dir_all(dir).map_err(|err| {
            TlsError::new(
                TlsErrorKind::Config,
                format!("cannot create directory {}: {err}", dir.display()),
            )
        })?;
        let ca = write_file(&dir.join("ca.pem"), &self.ca_pem, false)?;
        let cert = write_file(&dir.join("cert.pem"), self.server.cert_pem(), false)?;
        let key = write_file(&dir.join("key.pem"), self.server.key_pem(), true)?;
        let (client_cert, client_key) = match &self.client {
            Some(client) => (
                Some(write_file(
                    &dir.join("client-cert.pem"),
                    client.cert_pem(),
                    false,
                )?),
                Some(write_file(
                    &dir.join("client-key.pem"),
                    client.key_pem(),
                    true,
                )?),
            ),
            None => (None, None),
        };
        Ok(ThrowawayPaths {
            ca,
            cert,
            key,
            client_cert,
            client_key,
        })
    }

    fn issue(&self, common_name: &str, purpose: Purpose) -> Result<IssuedCertificate, ErrorStack> {
        let key = new_key()?;
        let mut builder = X509Builder::new()?;
        builder.set_version(2)?;
        let serial = random_serial()?;
        builder.set_serial_number(&serial)?;
        let name = subject(common_name)?;
        builder.set_subject_name(&name)?;
        builder.set_issuer_name(self.ca_cert.subject_name())?;
        builder.set_pubkey(&key)?;
        set_validity(&mut builder)?;
        builder.append_extension(BasicConstraints::new().critical().build()?)?;
        builder.append_extension(KeyUsage::new().critical().digital_signature().build()?)?;
        let ski = SubjectKeyIdentifier::new()
            .build(&builder.x509v3_context(Some(&self.ca_cert), None))?;
        builder.append_extension(ski)?;
        let aki = AuthorityKeyIdentifier::new()
            .keyid(true)
            .build(&builder.x509v3_context(Some(&self.ca_cert), None))?;
        builder.append_extension(aki)?;
        match purpose {
            Purpose::Server(san) => {
                builder.append_extension(ExtendedKeyUsage::new().server_auth().build()?)?;
                let san = san.build(&builder.x509v3_context(Some(&self.ca_cert), None))?;
                builder.append_extension(san)?;
            }
            Purpose::Client => {
                builder.append_extension(ExtendedKeyUsage::new().client_auth().build()?)?;
            }
        }
        builder.sign(&self.ca_key, MessageDigest::sha256())?;
        Ok(IssuedCertificate {
            cert_pem: builder.build().to_pem()?,
            key_pem: key.private_key_to_pem_pkcs8()?,
        })
    }
}

/// What a leaf certificate is for.
enum Purpose {
    Server(SubjectAlternativeName),
    Client,
}

fn new_key() -> Result<PKey<Private>, ErrorStack> {
    let group = EcGroup::from_curve_name(Nid::X9_62_PRIME256V1)?;
    PKey::from_ec_key(EcKey::generate(&group)?)
}

fn subject(common_name: &str) -> Result<X509Name, ErrorStack> {
    let mut name = X509NameBuilder::new()?;
    name.append_entry_by_nid(Nid::ORGANIZATIONNAME, "uvhttp throwaway")?;
    name.append_entry_by_nid(Nid::COMMONNAME, common_name)?;
    Ok(name.build())
}

/// 127 random bits: unique per certificate, positive as RFC 5280 requires.
fn random_serial() -> Result<Asn1Integer, ErrorStack> {
    let mut serial = BigNum::new()?;
    serial.rand(127, MsbOption::MAYBE_ZERO, false)?;
    serial.to_asn1_integer()
}

fn set_validity(builder: &mut X509Builder) -> Result<(), ErrorStack> {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|elapsed| i64::try_from(elapsed.as_secs()).unwrap_or(i64::MAX))
        .unwrap_or(0);
    let not_before = Asn1Time::from_unix(now.saturating_sub(BACKDATE_SECS))?;
    builder.set_not_before(&not_before)?;
    let not_after = Asn1Time::days_from_now(VALIDITY_DAYS)?;
    builder.set_not_after(&not_after)?;
    Ok(())
}

fn new_ca() -> Result<(X509, PKey<Private>), ErrorStack> {
    let key = new_key()?;
    // A random suffix keeps CAs of different runs apart in trust stores and error messages.
    let mut tag = [0u8; 4];
    openssl::rand::rand_bytes(&mut tag)?;
    let tag: String = tag.iter().map(|b| format!("{b:02x}")).collect();
    let name = subject(&format!("uvhttp throwaway CA {tag}"))?;

    let mut builder = X509Builder::new()?;
    builder.set_version(2)?;
    let serial = random_serial()?;
    builder.set_serial_number(&serial)?;
    builder.set_subject_name(&name)?;
    builder.set_issuer_name(&name)?;
    builder.set_pubkey(&key)?;
    set_validity(&mut builder)?;
    builder.append_extension(BasicConstraints::new().critical().ca().pathlen(0).build()?)?;
    builder.append_extension(
        KeyUsage::new()
            .critical()
            .key_cert_sign()
            .crl_sign()
            .build()?,
    )?;
    let ski = SubjectKeyIdentifier::new().build(&builder.x509v3_context(None, None))?;
    builder.append_extension(ski)?;
    builder.sign(&key, MessageDigest::sha256())?;
    Ok((builder.build(), key))
}

fn write_file(path: &Path, contents: &[u8], private: bool) -> Result<PathBuf, TlsError> {
    let result = {
        let mut options = std::fs::OpenOptions::new();
        options.write(true).create(true).truncate(true);
        #[cfg(unix)]
        if private {
            use std::os::unix::fs::OpenOptionsExt;
            options.mode(0o600);
        }
        #[cfg(not(unix))]
        let _ = private;
        options
            .open(path)
            .and_then(|mut file| std::io::Write::write_all(&mut file, contents))
    };
    result.map_err(|err| {
        TlsError::new(
            TlsErrorKind::Config,
            format!("cannot write {}: {err}", path.display()),
        )
    })?;
    Ok(path.to_path_buf())
}

#[cfg(test)]
pub(crate) mod tests_support {
    use std::path::PathBuf;
    use std::sync::atomic::{AtomicUsize, Ordering};

    /// A fresh, unique directory under the system temp dir; the test removes it.
    pub(crate) fn temp_dir(tag: &str) -> PathBuf {
        static COUNTER: AtomicUsize = AtomicUsize::new(0);
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let dir = std::env::temp_dir().join(format!("uvhttp-tls-{tag}-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        dir
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use openssl::stack::Stack;
    use openssl::x509::store::X509StoreBuilder;
    use openssl::x509::X509StoreContext;

    fn verifies(ca_pem: &[u8], cert_pem: &[u8]) -> bool {
        let ca = X509::from_pem(ca_pem).unwrap();
        let cert = X509::from_pem(cert_pem).unwrap();
        let mut store = X509StoreBuilder::new().unwrap();
        store.add_cert(ca).unwrap();
        let store = store.build();
        let chain = Stack::new().unwrap();
        let mut ctx = X509StoreContext::new().unwrap();
        ctx.init(&store, &cert, &chain, |c| c.verify_cert())
            .unwrap()
    }

    #[test]
    fn server_certificate_has_sans_and_chains_to_ca() {
        let pki = ThrowawayPki::generate(&["localhost", "127.0.0.1", "::1"]).unwrap();
        let cert = X509::from_pem(pki.cert_pem()).unwrap();
        let sans = cert.subject_alt_names().unwrap();
        let dns: Vec<&str> = sans.iter().filter_map(|n| n.dnsname()).collect();
        let ips: Vec<&[u8]> = sans.iter().filter_map(|n| n.ipaddress()).collect();
        assert_eq!(dns, ["localhost"]);
        assert_eq!(
            ips,
            [
                &[127u8, 0, 0, 1][..],
                &[0u8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1][..]
            ]
        );
        assert!(verifies(pki.ca_pem(), pki.cert_pem()));
        // A different PKI's CA does not vouch for it.
        let other = ThrowawayPki::generate(&["localhost"]).unwrap();
        assert!(!verifies(other.ca_pem(), pki.cert_pem()));
        assert!(pki.client_cert_pem().is_none());
        // The key belongs to the certificate.
        let key = PKey::private_key_from_pem(pki.key_pem()).unwrap();
        assert!(cert.public_key().unwrap().public_eq(&key));
    }

    #[test]
    fn client_certificate_is_issued_by_the_same_ca() {
        let pki = ThrowawayPki::generate_with_client(&["localhost"], "alice").unwrap();
        let client = pki.client_cert_pem().unwrap();
        assert!(verifies(pki.ca_pem(), client));
        let cert = X509::from_pem(client).unwrap();
        let cn = cert
            .subject_name()
            .entries_by_nid(Nid::COMMONNAME)
            .next()
            .unwrap()
            .data()
            .to_string()
            .unwrap();
        assert_eq!(cn, "alice");
        assert!(pki.client_key_pem().is_some());
    }

    #[test]
    fn generation_rejects_empty_names() {
        assert!(ThrowawayPki::generate(&[]).is_err());
        assert!(ThrowawayPki::generate(&[""]).is_err());
    }

    #[test]
    fn write_to_creates_readable_files_with_private_keys() {
        let pki = ThrowawayPki::generate_with_client(&["localhost"], "bob").unwrap();
        let dir = tests_support::temp_dir("write");
        let paths = pki.write_to(&dir).unwrap();
        assert_eq!(std::fs::read(&paths.ca).unwrap(), pki.ca_pem());
        assert_eq!(std::fs::read(&paths.cert).unwrap(), pki.cert_pem());
        assert_eq!(std::fs::read(&paths.key).unwrap(), pki.key_pem());
        assert_eq!(
            std::fs::read(paths.client_cert.as_ref().unwrap()).unwrap(),
            pki.client_cert_pem().unwrap()
        );
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&paths.key).unwrap().permissions().mode();
            assert_eq!(mode & 0o077, 0, "key file must not be group/world readable");
            let mode = std::fs::metadata(paths.client_key.as_ref().unwrap())
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o077, 0);
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn debug_output_hides_keys() {
        let pki = ThrowawayPki::generate(&["localhost"]).unwrap();
        let text = format!("{pki:?}");
        assert!(!text.contains("PRIVATE"));
    }
}

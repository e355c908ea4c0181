//! TLS contexts: the per-server or per-client configuration shared by every connection.
//!
//! A [`TlsContext`] is built once (certificates parsed, CA store loaded, callbacks installed)
//! and then cloned cheaply into every [`TlsEngine`](crate::net::tls::TlsEngine). Building is the
//! only place that touches the file system, so every error a user can cause by misconfiguration
//! surfaces from `build()` with the offending path and the reason, not later at handshake time.

use std::collections::{HashMap, VecDeque};
use std::fmt;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};

use openssl::error::ErrorStack;
use openssl::ex_data::Index;
use openssl::pkey::{PKey, Private};
use openssl::ssl::{
    AlpnError, NameType, SniError, Ssl, SslContext, SslContextBuilder, SslMethod, SslOptions,
    SslRef, SslSession, SslSessionCacheMode, SslVerifyMode, SslVersion,
};
use openssl::stack::Stack;
use openssl::x509::verify::X509CheckFlags;
use openssl::x509::{X509Name, X509};

/// TLS 1.2 cipher suites offered by default: forward-secret key exchange (ECDHE) with AEAD
/// ciphers only. CBC modes, RSA key transport, and DHE (slow, often weak parameters) are left
/// out on purpose. TLS 1.3 suites are OpenSSL's defaults, which are all AEAD already.
const TLS12_CIPHERS: &str = "ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256:\
ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-RSA-AES256-GCM-SHA384:\
ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-RSA-CHACHA20-POLY1305";

/// Session id context for server-side session caching. OpenSSL refuses to resume sessions
/// when client verification is on and no context is set, and it keeps sessions of different
/// applications sharing one cache apart.
const SESSION_ID_CONTEXT: &[u8] = b"uvhttp";

/// Upper bound on cached client sessions per context, so a client talking to many hosts
/// cannot grow the cache without limit. Oldest entries are evicted first.
const CLIENT_SESSION_CACHE_CAPACITY: usize = 256;

/// ALPN protocol offered and accepted when none is configured.
const DEFAULT_ALPN: &[u8] = b"http/1.1";

// ---------------------------------------------------------------------------------------------
// Errors
// ---------------------------------------------------------------------------------------------

/// What went wrong, coarsely, so callers can react without parsing messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TlsErrorKind {
    /// Building a context or engine failed: unreadable file, bad PEM, key/cert mismatch,
    /// invalid option.
    Config,
    /// The peer's certificate was rejected (unknown CA, expired, hostname mismatch, ...).
    CertificateVerify,
    /// The handshake failed for another reason (no shared cipher or version, peer alert,
    /// garbage instead of TLS, missing client certificate, ...).
    Handshake,
    /// A fatal TLS error after the handshake (bad record MAC, unexpected message, refused
    /// renegotiation, peer alert, ...).
    Protocol,
    /// The caller used the engine after shutting it down (e.g. `write` after `shutdown`).
    Closed,
}

/// Error from the TLS layer. `Display` gives a message meant for a human: what failed, the file
/// or peer involved, and OpenSSL's own error text where it helps.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsError {
    kind: TlsErrorKind,
    message: String,
}

impl TlsError {
    /// Creates an error of `kind` with a ready-made message.
    pub fn new(kind: TlsErrorKind, message: impl Into<String>) -> Self {
        TlsError {
            kind,
            message: message.into(),
        }
    }

    /// A configuration error whose cause is in OpenSSL's error stack.
    pub(crate) fn config_stack(what: &str, stack: &ErrorStack) -> Self {
        TlsError::new(
            TlsErrorKind::Config,
            format!("{what}: {}", describe_stack(stack)),
        )
    }

    /// The coarse category of the failure.
    pub fn kind(&self) -> TlsErrorKind {
        self.kind
    }

    /// The human-readable message (same text as `Display`).
    pub fn message(&self) -> &str {
        &self.message
    }
}

impl fmt::Display for TlsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for TlsError {}

/// Renders OpenSSL's error stack as one line. OpenSSL's own text is kept verbatim because it
/// is what users search for; an empty stack (which OpenSSL sometimes produces) still yields
/// something readable.
pub(crate) fn describe_stack(stack: &ErrorStack) -> String {
    let errors = stack.errors();
    if errors.is_empty() {
        return "no detail from OpenSSL".to_owned();
    }
    let mut text = String::new();
    for (i, error) in errors.iter().enumerate() {
        if i > 0 {
            text.push_str("; ");
        }
        match error.reason() {
            Some(reason) => {
                text.push_str(reason);
                text.push_str(&format!(" ({error})"));
            }
            None => text.push_str(&error.to_string()),
        }
    }
    text
}

// ---------------------------------------------------------------------------------------------
// Small option types
// ---------------------------------------------------------------------------------------------

/// Lowest (or highest) TLS protocol version to accept.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default)]
pub enum TlsVersion {
    /// TLS 1.2 (the default minimum: still needed by many clients).
    #[default]
    Tls12,
    /// TLS 1.3.
    Tls13,
}

impl TlsVersion {
    fn to_ssl(self) -> SslVersion {
        match self {
            TlsVersion::Tls12 => SslVersion::TLS1_2,
            TlsVersion::Tls13 => SslVersion::TLS1_3,
        }
    }

    fn label(self) -> &'static str {
        match self {
            TlsVersion::Tls12 => "TLS 1.2",
            TlsVersion::Tls13 => "TLS 1.3",
        }
    }
}

/// Whether a server asks clients for a certificate.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ClientVerify {
    /// Do not request a client certificate (the default).
    #[default]
    None,
    /// Request a certificate; a client may send none, but one that is sent must verify.
    Relaxed,
    /// Require a certificate that verifies against the configured CAs.
    Strict,
}

/// Where PEM bytes come from: a file (read at `build()`) or memory.
#[derive(Debug, Clone)]
enum PemSource {
    File(PathBuf),
    Memory(Vec<u8>),
}

impl PemSource {
    /// Returns the bytes and a label for error messages (the path, or "in-memory PEM").
    fn load(&self, what: &str) -> Result<(Vec<u8>, String), TlsError> {
        match self {
            PemSource::File(path) => {
                let label = path.display().to_string();
                let bytes = std::fs::read(path).map_err(|err| {
                    TlsError::new(
                        TlsErrorKind::Config,
                        format!("cannot read {what} {label}: {err}"),
                    )
                })?;
                Ok((bytes, label))
            }
            PemSource::Memory(bytes) => Ok((bytes.clone(), "(in-memory PEM)".to_owned())),
        }
    }
}

/// Parses a non-empty chain of PEM certificates, leaf first.
fn parse_cert_chain(pem: &[u8], label: &str) -> Result<Vec<X509>, TlsError> {
    let chain = X509::stack_from_pem(pem).map_err(|stack| {
        TlsError::config_stack(&format!("cannot parse certificate chain {label}"), &stack)
    })?;
    if chain.is_empty() {
        return Err(TlsError::new(
            TlsErrorKind::Config,
            format!("cannot parse certificate chain {label}: no PEM certificate found"),
        ));
    }
    Ok(chain)
}

/// Parses CA certificates for a trust store (may not be empty either: an empty CA file is
/// almost certainly a mistake that would otherwise show up as baffling verify failures).
fn parse_ca_certs(pem: &[u8], label: &str) -> Result<Vec<X509>, TlsError> {
    let certs = X509::stack_from_pem(pem).map_err(|stack| {
        TlsError::config_stack(&format!("cannot parse CA certificates {label}"), &stack)
    })?;
    if certs.is_empty() {
        return Err(TlsError::new(
            TlsErrorKind::Config,
            format!("cannot parse CA certificates {label}: no PEM certificate found"),
        ));
    }
    Ok(certs)
}

fn parse_private_key(pem: &[u8], label: &str) -> Result<PKey<Private>, TlsError> {
    PKey::private_key_from_pem(pem).map_err(|stack| {
        TlsError::config_stack(
            &format!("cannot parse private key {label} (must be an unencrypted PEM key)"),
            &stack,
        )
    })
}

/// A certificate chain with its private key, parsed and ready to install.
struct Identity {
    chain: Vec<X509>,
    key: PKey<Private>,
    /// Where the certificate came from, for error messages.
    label: String,
    /// Where the key came from, for error messages.
    key_label: String,
}

impl Identity {
    fn load(cert: &PemSource, key: &PemSource) -> Result<Self, TlsError> {
        let (cert_bytes, cert_label) = cert.load("certificate chain")?;
        let chain = parse_cert_chain(&cert_bytes, &cert_label)?;
        let (key_bytes, key_label) = key.load("private key")?;
        let key = parse_private_key(&key_bytes, &key_label)?;
        Ok(Identity {
            chain,
            key,
            label: cert_label,
            key_label,
        })
    }

    fn install(&self, builder: &mut SslContextBuilder) -> Result<(), TlsError> {
        let mut certs = self.chain.iter();
        if let Some(leaf) = certs.next() {
            builder.set_certificate(leaf).map_err(|stack| {
                TlsError::config_stack(&format!("cannot use certificate {}", self.label), &stack)
            })?;
        }
        for intermediate in certs {
            // Each SNI certificate has a context of its own, so the context-wide chain is
            // per certificate here.
            builder
                .add_extra_chain_cert(intermediate.clone())
                .map_err(|stack| {
                    TlsError::config_stack(
                        &format!("cannot use intermediate certificate in {}", self.label),
                        &stack,
                    )
                })?;
        }
        let mismatch = || {
            TlsError::new(
                TlsErrorKind::Config,
                if self.key_label == self.label {
                    // Both from memory: one label says it.
                    format!("private key does not match certificate {}", self.label)
                } else {
                    format!(
                        "private key {} does not match certificate {}",
                        self.key_label, self.label
                    )
                },
            )
        };
        builder.set_private_key(&self.key).map_err(|stack| {
            // OpenSSL already compares key and certificate here (reason "key values
            // mismatch"); say so plainly rather than in OpenSSL's words.
            let is_mismatch = stack
                .errors()
                .iter()
                .any(|e| e.reason().is_some_and(|r| r.contains("mismatch")));
            if is_mismatch {
                mismatch()
            } else {
                TlsError::config_stack(
                    &format!("cannot use private key for {}", self.label),
                    &stack,
                )
            }
        })?;
        builder.check_private_key().map_err(|_| mismatch())
    }
}

/// Encodes ALPN protocol names into the wire format (length-prefixed, concatenated).
fn encode_alpn(protocols: &[Vec<u8>]) -> Result<Vec<u8>, TlsError> {
    let mut wire = Vec::new();
    for proto in protocols {
        let len = u8::try_from(proto.len())
            .ok()
            .filter(|&len| len > 0)
            .ok_or_else(|| {
                TlsError::new(
                    TlsErrorKind::Config,
                    format!(
                        "invalid ALPN protocol name {:?}: must be 1 to 255 bytes",
                        String::from_utf8_lossy(proto)
                    ),
                )
            })?;
        wire.push(len);
        wire.extend_from_slice(proto);
    }
    Ok(wire)
}

/// Iterates the protocols of an ALPN wire-format list. Stops (rather than failing) at a
/// truncated entry: the list comes from the peer and may be malformed.
fn alpn_entries(wire: &[u8]) -> impl Iterator<Item = &[u8]> {
    let mut rest = wire;
    std::iter::from_fn(move || {
        let (&len, tail) = rest.split_first()?;
        let len = usize::from(len);
        if len == 0 || tail.len() < len {
            rest = &[];
            return None;
        }
        let (proto, after) = tail.split_at(len);
        rest = after;
        Some(proto)
    })
}

/// Server-side ALPN choice: the server's most preferred protocol that the client offered.
/// Returns the slice inside the client's list, as OpenSSL requires.
fn select_alpn<'a>(server_wire: &[u8], client_wire: &'a [u8]) -> Option<&'a [u8]> {
    alpn_entries(server_wire)
        .find_map(|wanted| alpn_entries(client_wire).find(|offered| *offered == wanted))
}

/// Settings shared by servers and clients: versions, ciphers, renegotiation off.
fn apply_protocol_settings(
    builder: &mut SslContextBuilder,
    min: TlsVersion,
    max: Option<TlsVersion>,
) -> Result<(), TlsError> {
    if let Some(max) = max {
        if max < min {
            return Err(TlsError::new(
                TlsErrorKind::Config,
                format!(
                    "max_version {} is below min_version {}",
                    max.label(),
                    min.label()
                ),
            ));
        }
    }
    // Renegotiation is a source of DoS and of historic vulnerabilities, and HTTP/1.1 never
    // needs it: refuse it in both directions.
    builder.set_options(SslOptions::NO_RENEGOTIATION | SslOptions::NO_COMPRESSION);
    builder
        .set_min_proto_version(Some(min.to_ssl()))
        .map_err(|stack| TlsError::config_stack("cannot set minimum TLS version", &stack))?;
    builder
        .set_max_proto_version(max.map(TlsVersion::to_ssl))
        .map_err(|stack| TlsError::config_stack("cannot set maximum TLS version", &stack))?;
    builder
        .set_cipher_list(TLS12_CIPHERS)
        .map_err(|stack| TlsError::config_stack("cannot set TLS 1.2 cipher list", &stack))?;
    Ok(())
}

/// CA certificates to trust, collected from files, directories, and memory.
#[derive(Debug, Clone, Default)]
struct CaSources {
    files: Vec<PathBuf>,
    dirs: Vec<PathBuf>,
    pems: Vec<Vec<u8>>,
}

impl CaSources {
    fn is_empty(&self) -> bool {
        self.files.is_empty() && self.dirs.is_empty() && self.pems.is_empty()
    }

    /// Loads every CA into the context's trust store. Returns the certificates read from
    /// files and memory so a server can advertise their names to clients.
    fn install(&self, builder: &mut SslContextBuilder) -> Result<Vec<X509>, TlsError> {
        let mut loaded = Vec::new();
        for path in &self.files {
            let (bytes, label) = PemSource::File(path.clone()).load("CA file")?;
            loaded.extend(parse_ca_certs(&bytes, &label)?);
        }
        for pem in &self.pems {
            loaded.extend(parse_ca_certs(pem, "(in-memory PEM)")?);
        }
        for cert in &loaded {
            builder
                .cert_store_mut()
                .add_cert(cert.clone())
                .map_err(|stack| TlsError::config_stack("cannot add CA certificate", &stack))?;
        }
        for dir in &self.dirs {
            // OpenSSL reads a hashed directory lazily and silently ignores a missing one, so
            // check up front to report the mistake where it is made.
            match std::fs::metadata(dir) {
                Ok(meta) if meta.is_dir() => {}
                Ok(_) => {
                    return Err(TlsError::new(
                        TlsErrorKind::Config,
                        format!("cannot use CA directory {}: not a directory", dir.display()),
                    ))
                }
                Err(err) => {
                    return Err(TlsError::new(
                        TlsErrorKind::Config,
                        format!("cannot read CA directory {}: {err}", dir.display()),
                    ))
                }
            }
            builder
                .load_verify_locations(None, Some(dir))
                .map_err(|stack| {
                    TlsError::config_stack(
                        &format!("cannot use CA directory {}", dir.display()),
                        &stack,
                    )
                })?;
        }
        Ok(loaded)
    }
}

// ---------------------------------------------------------------------------------------------
// The context
// ---------------------------------------------------------------------------------------------

/// Whether a context makes server or client connections.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Role {
    Server,
    Client,
}

/// Shared, immutable configuration for TLS connections; cheap to clone (reference counted).
///
/// Build one with [`TlsContext::server`] or [`TlsContext::client`] and hand it to
/// [`TlsEngine::server`](crate::net::tls::TlsEngine::server) /
/// [`TlsEngine::client`](crate::net::tls::TlsEngine::client) for every connection.
#[derive(Clone)]
pub struct TlsContext {
    inner: Arc<ContextInner>,
}

struct ContextInner {
    ssl_context: SslContext,
    role: Role,
    /// Client-only settings; `None` for servers.
    client: Option<ClientSettings>,
}

struct ClientSettings {
    verify_peer: bool,
    verify_hostname: bool,
    /// `None` when session resumption is disabled.
    sessions: Option<Arc<SessionCache>>,
}

impl fmt::Debug for TlsContext {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TlsContext")
            .field("role", &self.inner.role)
            .finish_non_exhaustive()
    }
}

impl TlsContext {
    /// Starts building a server context (certificate and key are required).
    pub fn server() -> ServerContextBuilder {
        ServerContextBuilder::default()
    }

    /// Starts building a client context (verifies servers against the system CAs by default).
    pub fn client() -> ClientContextBuilder {
        ClientContextBuilder::default()
    }

    /// True for a server context, false for a client context.
    pub fn is_server(&self) -> bool {
        self.inner.role == Role::Server
    }

    /// Creates the per-connection OpenSSL object for an accepted connection.
    pub(crate) fn new_server_ssl(&self) -> Result<Ssl, TlsError> {
        if self.inner.role != Role::Server {
            return Err(TlsError::new(
                TlsErrorKind::Config,
                "a server connection needs a server context (TlsContext::server())",
            ));
        }
        let mut ssl = Ssl::new(&self.inner.ssl_context)
            .map_err(|stack| TlsError::config_stack("cannot create TLS connection", &stack))?;
        ssl.set_accept_state();
        Ok(ssl)
    }

    /// Creates the per-connection OpenSSL object for an outgoing connection to `server_name`
    /// (a DNS name or an IP literal), resuming a cached session stored under `session_key`.
    pub(crate) fn new_client_ssl(
        &self,
        server_name: &str,
        session_key: &str,
    ) -> Result<Ssl, TlsError> {
        let settings = match (&self.inner.client, self.inner.role) {
            (Some(settings), Role::Client) => settings,
            _ => {
                return Err(TlsError::new(
                    TlsErrorKind::Config,
                    "a client connection needs a client context (TlsContext::client())",
                ))
            }
        };
        let mut ssl = Ssl::new(&self.inner.ssl_context)
            .map_err(|stack| TlsError::config_stack("cannot create TLS connection", &stack))?;
        ssl.set_connect_state();

        let check_name = settings.verify_peer && settings.verify_hostname;
        // Accept "[::1]" as written in URLs as well as the bare literal.
        let literal = server_name
            .strip_prefix('[')
            .and_then(|rest| rest.strip_suffix(']'))
            .unwrap_or(server_name);
        if let Ok(ip) = literal.parse::<IpAddr>() {
            // RFC 6066 forbids IP literals in SNI; verify against the certificate's IP SANs.
            if check_name {
                ssl.param_mut().set_ip(ip).map_err(|stack| {
                    TlsError::config_stack(&format!("cannot verify IP address {ip}"), &stack)
                })?;
            }
        } else if server_name.is_empty() {
            if check_name {
                return Err(TlsError::new(
                    TlsErrorKind::Config,
                    "hostname verification needs a server name (or turn off verify_hostname)",
                ));
            }
        } else {
            ssl.set_hostname(server_name).map_err(|stack| {
                TlsError::config_stack(&format!("invalid server name {server_name:?}"), &stack)
            })?;
            if check_name {
                let param = ssl.param_mut();
                param.set_hostflags(X509CheckFlags::NO_PARTIAL_WILDCARDS);
                param.set_host(server_name).map_err(|stack| {
                    TlsError::config_stack(
                        &format!("cannot verify host name {server_name:?}"),
                        &stack,
                    )
                })?;
            }
        }

        if let Some(cache) = &settings.sessions {
            ssl.set_ex_data(session_key_index()?, SessionKey(session_key.to_owned()));
            if let Some(session) = cache.get(session_key) {
                // SAFETY: the session was produced by a connection made from this same
                // SslContext (the cache belongs to this context only), which is the
                // requirement of SSL_set_session.
                let result = unsafe { ssl.set_session(&session) };
                if let Err(stack) = result {
                    // A stale session is not fatal: fall back to a full handshake.
                    log::debug!(
                        "not resuming TLS session for {session_key}: {}",
                        describe_stack(&stack)
                    );
                }
            }
        }
        Ok(ssl)
    }
}

// ---------------------------------------------------------------------------------------------
// Client session cache
// ---------------------------------------------------------------------------------------------

/// Key under which a client connection's session is cached ("host" or "host:port"), stored
/// in the connection's ex-data so the new-session callback knows where to put the session.
struct SessionKey(String);

/// One process-wide ex-data slot for [`SessionKey`]: OpenSSL ex indices are never freed, so
/// allocating one per context would leak a slot per context built.
fn session_key_index() -> Result<Index<Ssl, SessionKey>, TlsError> {
    static INDEX: OnceLock<Index<Ssl, SessionKey>> = OnceLock::new();
    if let Some(index) = INDEX.get() {
        return Ok(*index);
    }
    let index = Ssl::new_ex_index::<SessionKey>()
        .map_err(|stack| TlsError::config_stack("cannot allocate OpenSSL ex-data index", &stack))?;
    Ok(*INDEX.get_or_init(|| index))
}

/// Most recent resumable session per server, bounded, oldest evicted first.
#[derive(Default)]
struct SessionCache {
    entries: Mutex<SessionEntries>,
}

#[derive(Default)]
struct SessionEntries {
    by_key: HashMap<String, SslSession>,
    /// Keys in insertion order, for eviction.
    order: VecDeque<String>,
}

impl SessionCache {
    fn get(&self, key: &str) -> Option<SslSession> {
        // A poisoned lock only means another thread panicked mid-update of a cache of
        // optional sessions; the data is still usable.
        let entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        entries.by_key.get(key).cloned()
    }

    fn insert(&self, key: &str, session: SslSession) {
        let mut entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(slot) = entries.by_key.get_mut(key) {
            *slot = session;
            return;
        }
        while entries.by_key.len() >= CLIENT_SESSION_CACHE_CAPACITY {
            match entries.order.pop_front() {
                Some(oldest) => {
                    entries.by_key.remove(&oldest);
                }
                None => break,
            }
        }
        entries.order.push_back(key.to_owned());
        entries.by_key.insert(key.to_owned(), session);
    }
}

// ---------------------------------------------------------------------------------------------
// Server builder
// ---------------------------------------------------------------------------------------------

/// An extra certificate chosen by SNI.
#[derive(Debug, Clone)]
struct SniCertificate {
    /// Lower-cased host name or `*.domain` wildcard.
    pattern: String,
    cert_pem: Vec<u8>,
    key_pem: Vec<u8>,
}

/// Builder for a server [`TlsContext`]; see [`TlsContext::server`].
///
/// Defaults: TLS 1.2 minimum, ECDHE+AEAD TLS 1.2 suites and OpenSSL's TLS 1.3 suites, ALPN
/// `http/1.1`, session cache and TLS 1.3 tickets on, no client certificates requested,
/// renegotiation refused.
#[derive(Debug, Clone, Default)]
pub struct ServerContextBuilder {
    cert_chain: Option<PemSource>,
    key: Option<PemSource>,
    min_version: TlsVersion,
    max_version: Option<TlsVersion>,
    alpn: Option<Vec<Vec<u8>>>,
    sni: Vec<SniCertificate>,
    client_verify: ClientVerify,
    cas: CaSources,
}

impl ServerContextBuilder {
    /// PEM file with the server certificate followed by its intermediates.
    pub fn cert_chain_file(mut self, path: impl AsRef<Path>) -> Self {
        self.cert_chain = Some(PemSource::File(path.as_ref().to_path_buf()));
        self
    }

    /// PEM file with the (unencrypted) private key of the certificate.
    pub fn key_file(mut self, path: impl AsRef<Path>) -> Self {
        self.key = Some(PemSource::File(path.as_ref().to_path_buf()));
        self
    }

    /// Certificate chain as PEM bytes (leaf first).
    pub fn cert_chain_pem(mut self, pem: &[u8]) -> Self {
        self.cert_chain = Some(PemSource::Memory(pem.to_vec()));
        self
    }

    /// Private key as PEM bytes.
    pub fn key_pem(mut self, pem: &[u8]) -> Self {
        self.key = Some(PemSource::Memory(pem.to_vec()));
        self
    }

    /// Lowest protocol version accepted (default TLS 1.2).
    pub fn min_version(mut self, version: TlsVersion) -> Self {
        self.min_version = version;
        self
    }

    /// Highest protocol version accepted (default: the newest OpenSSL supports).
    pub fn max_version(mut self, version: TlsVersion) -> Self {
        self.max_version = Some(version);
        self
    }

    /// ALPN protocols in server preference order (default `["http/1.1"]`). The server picks
    /// its most preferred protocol that the client offered; with no overlap the handshake
    /// proceeds without ALPN. An empty list disables ALPN.
    pub fn alpn_protocols<P: AsRef<[u8]>>(mut self, protocols: &[P]) -> Self {
        self.alpn = Some(protocols.iter().map(|p| p.as_ref().to_vec()).collect());
        self
    }

    /// Adds a certificate served when the client's SNI matches `hostname`, which is an exact
    /// name (`api.example.com`) or a single-label wildcard (`*.example.com`, which matches
    /// `a.example.com` but neither `example.com` nor `a.b.example.com`). Exact names win over
    /// wildcards. Clients sending no or an unknown name get the default certificate.
    pub fn add_sni_certificate(
        mut self,
        hostname: &str,
        cert_chain_pem: &[u8],
        key_pem: &[u8],
    ) -> Self {
        self.sni.push(SniCertificate {
            pattern: hostname.to_ascii_lowercase(),
            cert_pem: cert_chain_pem.to_vec(),
            key_pem: key_pem.to_vec(),
        });
        self
    }

    /// Client certificate policy (default [`ClientVerify::None`]). `Relaxed` and `Strict`
    /// need CAs from [`ca_file`](Self::ca_file), [`ca_dir`](Self::ca_dir) or
    /// [`ca_pem`](Self::ca_pem).
    pub fn verify_client(mut self, mode: ClientVerify) -> Self {
        self.client_verify = mode;
        self
    }

    /// PEM file of CAs that sign acceptable client certificates (may be given repeatedly).
    pub fn ca_file(mut self, path: impl AsRef<Path>) -> Self {
        self.cas.files.push(path.as_ref().to_path_buf());
        self
    }

    /// OpenSSL hashed CA directory (`c_rehash` / `openssl rehash` layout) for client
    /// certificates.
    pub fn ca_dir(mut self, path: impl AsRef<Path>) -> Self {
        self.cas.dirs.push(path.as_ref().to_path_buf());
        self
    }

    /// CAs for client certificates as PEM bytes (may be given repeatedly).
    pub fn ca_pem(mut self, pem: &[u8]) -> Self {
        self.cas.pems.push(pem.to_vec());
        self
    }

    /// Reads and checks everything and builds the context.
    pub fn build(self) -> Result<TlsContext, TlsError> {
        let (cert, key) = match (&self.cert_chain, &self.key) {
            (Some(cert), Some(key)) => (cert, key),
            (None, _) => return Err(TlsError::new(
                TlsErrorKind::Config,
                "server TLS context needs a certificate chain (cert_chain_file or cert_chain_pem)",
            )),
            (_, None) => {
                return Err(TlsError::new(
                    TlsErrorKind::Config,
                    "server TLS context needs a private key (key_file or key_pem)",
                ))
            }
        };
        if self.client_verify != ClientVerify::None && self.cas.is_empty() {
            return Err(TlsError::new(
                TlsErrorKind::Config,
                "client certificate verification needs CA certificates (ca_file, ca_dir or ca_pem)",
            ));
        }
        let alpn_wire = encode_alpn(self.alpn.as_deref().unwrap_or(&[DEFAULT_ALPN.to_vec()]))?;

        let identity = Identity::load(cert, key)?;
        let mut builder = self.configured_builder(&identity, &alpn_wire)?;

        if !self.sni.is_empty() {
            let table = self.sni_table(&alpn_wire)?;
            builder.set_servername_callback(move |ssl, _alert| {
                select_sni_context(&table, ssl);
                Ok::<(), SniError>(())
            });
        }

        Ok(TlsContext {
            inner: Arc::new(ContextInner {
                ssl_context: builder.build(),
                role: Role::Server,
                client: None,
            }),
        })
    }

    /// A server context builder with everything but SNI configured. SNI contexts use the
    /// same settings because OpenSSL takes the certificate, trust store, client CA list and
    /// ALPN callback from the context switched to in the servername callback.
    fn configured_builder(
        &self,
        identity: &Identity,
        alpn_wire: &[u8],
    ) -> Result<SslContextBuilder, TlsError> {
        let mut builder = SslContextBuilder::new(SslMethod::tls_server())
            .map_err(|stack| TlsError::config_stack("cannot create TLS context", &stack))?;
        apply_protocol_settings(&mut builder, self.min_version, self.max_version)?;
        identity.install(&mut builder)?;

        builder
            .set_session_id_context(SESSION_ID_CONTEXT)
            .map_err(|stack| TlsError::config_stack("cannot set session id context", &stack))?;
        builder.set_session_cache_mode(SslSessionCacheMode::SERVER);

        let mode = match self.client_verify {
            ClientVerify::None => SslVerifyMode::NONE,
            ClientVerify::Relaxed => SslVerifyMode::PEER,
            ClientVerify::Strict => SslVerifyMode::PEER | SslVerifyMode::FAIL_IF_NO_PEER_CERT,
        };
        builder.set_verify(mode);
        if self.client_verify != ClientVerify::None {
            let cas = self.cas.install(&mut builder)?;
            // Tell clients which CAs we accept so they can pick the right certificate.
            let mut names = Stack::<X509Name>::new()
                .map_err(|stack| TlsError::config_stack("cannot list client CAs", &stack))?;
            for ca in &cas {
                let name = ca
                    .subject_name()
                    .to_owned()
                    .map_err(|stack| TlsError::config_stack("cannot list client CAs", &stack))?;
                names
                    .push(name)
                    .map_err(|stack| TlsError::config_stack("cannot list client CAs", &stack))?;
            }
            builder.set_client_ca_list(names);
        }

        if !alpn_wire.is_empty() {
            let server_wire = alpn_wire.to_vec();
            builder.set_alpn_select_callback(move |_ssl, client_wire| {
                select_alpn(&server_wire, client_wire).ok_or(AlpnError::NOACK)
            });
        }
        Ok(builder)
    }

    fn sni_table(&self, alpn_wire: &[u8]) -> Result<Vec<(String, SslContext)>, TlsError> {
        let mut table = Vec::with_capacity(self.sni.len());
        for entry in &self.sni {
            validate_sni_pattern(&entry.pattern)?;
            let identity = Identity::load(
                &PemSource::Memory(entry.cert_pem.clone()),
                &PemSource::Memory(entry.key_pem.clone()),
            )
            .map_err(|err| {
                TlsError::new(
                    err.kind(),
                    format!("SNI certificate for {}: {}", entry.pattern, err.message()),
                )
            })?;
            let builder = self.configured_builder(&identity, alpn_wire)?;
            table.push((entry.pattern.clone(), builder.build()));
        }
        Ok(table)
    }
}

fn validate_sni_pattern(pattern: &str) -> Result<(), TlsError> {
    let base = pattern.strip_prefix("*.").unwrap_or(pattern);
    let valid = !base.is_empty()
        && !base.contains('*')
        && !base.starts_with('.')
        && !base.ends_with('.')
        && !base.contains("..");
    if valid {
        Ok(())
    } else {
        Err(TlsError::new(
            TlsErrorKind::Config,
            format!("invalid SNI host name {pattern:?}: use a host name or a *.domain wildcard"),
        ))
    }
}

/// Finds the context for `name` in the SNI table: exact match first, then `*.parent`.
fn find_sni_context<'t>(table: &'t [(String, SslContext)], name: &str) -> Option<&'t SslContext> {
    let name = name.trim_end_matches('.');
    let exact = table
        .iter()
        .find(|(pattern, _)| pattern.eq_ignore_ascii_case(name));
    if let Some((_, ctx)) = exact {
        return Some(ctx);
    }
    let (first_label, parent) = name.split_once('.')?;
    if first_label.is_empty() || parent.is_empty() {
        return None;
    }
    table.iter().find_map(|(pattern, ctx)| {
        let wildcard_base = pattern.strip_prefix("*.")?;
        wildcard_base.eq_ignore_ascii_case(parent).then_some(ctx)
    })
}

/// Servername callback body: switch the connection to the matching certificate's context.
fn select_sni_context(table: &[(String, SslContext)], ssl: &mut SslRef) {
    let Some(name) = ssl.servername(NameType::HOST_NAME) else {
        return;
    };
    let Some(ctx) = find_sni_context(table, name) else {
        return;
    };
    if let Err(stack) = ssl.set_ssl_context(ctx) {
        // Falling back to the default certificate beats aborting the handshake.
        log::warn!(
            "cannot switch to SNI certificate: {}",
            describe_stack(&stack)
        );
    }
}

// ---------------------------------------------------------------------------------------------
// Client builder
// ---------------------------------------------------------------------------------------------

/// Builder for a client [`TlsContext`]; see [`TlsContext::client`].
///
/// Defaults: verify the server against the system CAs and check its host name, TLS 1.2
/// minimum, modern ciphers, offer ALPN `http/1.1`, resume sessions per host, no client
/// certificate.
#[derive(Debug, Clone)]
pub struct ClientContextBuilder {
    verify_peer: bool,
    verify_hostname: bool,
    cas: CaSources,
    cert_chain: Option<PemSource>,
    key: Option<PemSource>,
    min_version: TlsVersion,
    max_version: Option<TlsVersion>,
    alpn: Option<Vec<Vec<u8>>>,
    session_resumption: bool,
}

impl Default for ClientContextBuilder {
    fn default() -> Self {
        ClientContextBuilder {
            verify_peer: true,
            verify_hostname: true,
            cas: CaSources::default(),
            cert_chain: None,
            key: None,
            min_version: TlsVersion::Tls12,
            max_version: None,
            alpn: None,
            session_resumption: true,
        }
    }
}

impl ClientContextBuilder {
    /// Verify the server's certificate chain (default true). Turning this off also turns off
    /// host name checks; only for development.
    pub fn verify_peer(mut self, verify: bool) -> Self {
        self.verify_peer = verify;
        self
    }

    /// Check that the certificate matches the name given to
    /// [`TlsEngine::client`](crate::net::tls::TlsEngine::client) (default true).
    pub fn verify_hostname(mut self, verify: bool) -> Self {
        self.verify_hostname = verify;
        self
    }

    /// Trust the CAs in this PEM file. Once any CA is given, the system store is not used
    /// (the usual meaning of "use this CA", as with `curl --cacert`).
    pub fn ca_file(mut self, path: impl AsRef<Path>) -> Self {
        self.cas.files.push(path.as_ref().to_path_buf());
        self
    }

    /// Trust CAs from an OpenSSL hashed directory (replaces the system store, like `ca_file`).
    pub fn ca_dir(mut self, path: impl AsRef<Path>) -> Self {
        self.cas.dirs.push(path.as_ref().to_path_buf());
        self
    }

    /// Trust these PEM CAs (replaces the system store, like `ca_file`).
    pub fn ca_pem(mut self, pem: &[u8]) -> Self {
        self.cas.pems.push(pem.to_vec());
        self
    }

    /// Client certificate chain file, for servers that ask for one (needs a key too).
    pub fn cert_chain_file(mut self, path: impl AsRef<Path>) -> Self {
        self.cert_chain = Some(PemSource::File(path.as_ref().to_path_buf()));
        self
    }

    /// Private key file for the client certificate.
    pub fn key_file(mut self, path: impl AsRef<Path>) -> Self {
        self.key = Some(PemSource::File(path.as_ref().to_path_buf()));
        self
    }

    /// Client certificate chain as PEM bytes.
    pub fn cert_chain_pem(mut self, pem: &[u8]) -> Self {
        self.cert_chain = Some(PemSource::Memory(pem.to_vec()));
        self
    }

    /// Client private key as PEM bytes.
    pub fn key_pem(mut self, pem: &[u8]) -> Self {
        self.key = Some(PemSource::Memory(pem.to_vec()));
        self
    }

    /// Lowest protocol version accepted (default TLS 1.2).
    pub fn min_version(mut self, version: TlsVersion) -> Self {
        self.min_version = version;
        self
    }

    /// Highest protocol version offered (default: the newest OpenSSL supports).
    pub fn max_version(mut self, version: TlsVersion) -> Self {
        self.max_version = Some(version);
        self
    }

    /// ALPN protocols to offer, most preferred first (default `["http/1.1"]`; empty: none).
    pub fn alpn_protocols<P: AsRef<[u8]>>(mut self, protocols: &[P]) -> Self {
        self.alpn = Some(protocols.iter().map(|p| p.as_ref().to_vec()).collect());
        self
    }

    /// Cache sessions per server and resume them on reconnect (default true).
    pub fn session_resumption(mut self, enabled: bool) -> Self {
        self.session_resumption = enabled;
        self
    }

    /// Reads and checks everything and builds the context.
    pub fn build(self) -> Result<TlsContext, TlsError> {
        let mut builder = SslContextBuilder::new(SslMethod::tls_client())
            .map_err(|stack| TlsError::config_stack("cannot create TLS context", &stack))?;
        apply_protocol_settings(&mut builder, self.min_version, self.max_version)?;

        if self.cas.is_empty() {
            builder.set_default_verify_paths().map_err(|stack| {
                TlsError::config_stack("cannot load the system CA certificates", &stack)
            })?;
        } else {
            self.cas.install(&mut builder)?;
        }
        builder.set_verify(if self.verify_peer {
            SslVerifyMode::PEER
        } else {
            SslVerifyMode::NONE
        });

        match (&self.cert_chain, &self.key) {
            (Some(cert), Some(key)) => Identity::load(cert, key)?.install(&mut builder)?,
            (None, None) => {}
            _ => {
                return Err(TlsError::new(
                    TlsErrorKind::Config,
                    "a client certificate needs both a certificate chain and a private key",
                ))
            }
        }

        let alpn_wire = encode_alpn(self.alpn.as_deref().unwrap_or(&[DEFAULT_ALPN.to_vec()]))?;
        if !alpn_wire.is_empty() {
            builder
                .set_alpn_protos(&alpn_wire)
                .map_err(|stack| TlsError::config_stack("cannot set ALPN protocols", &stack))?;
        }

        let sessions = if self.session_resumption {
            let cache = Arc::new(SessionCache::default());
            let index = session_key_index()?;
            // Client sessions are looked up by us (per host), never by OpenSSL, so keep them
            // out of OpenSSL's internal cache, which would only grow.
            builder.set_session_cache_mode(
                SslSessionCacheMode::CLIENT | SslSessionCacheMode::NO_INTERNAL,
            );
            let store = Arc::clone(&cache);
            builder.set_new_session_callback(move |ssl, session| {
                if let Some(SessionKey(key)) = ssl.ex_data(index) {
                    store.insert(key, session);
                }
            });
            Some(cache)
        } else {
            builder.set_session_cache_mode(SslSessionCacheMode::OFF);
            None
        };

        Ok(TlsContext {
            inner: Arc::new(ContextInner {
                ssl_context: builder.build(),
                role: Role::Client,
                client: Some(ClientSettings {
                    verify_peer: self.verify_peer,
                    verify_hostname: self.verify_hostname,
                    sessions,
                }),
            }),
        })
    }
}

// ---------------------------------------------------------------------------------------------
// icey-style bring-up helpers
// ---------------------------------------------------------------------------------------------

/// Shortcuts mirroring icey's `SSLManager` initialisers, for development bring-up.
///
/// Neither verifies the peer: **do not use in production**. Production code builds contexts
/// with [`TlsContext::server`] / [`TlsContext::client`].
#[derive(Debug, Clone, Copy, Default)]
pub struct SslManager;

impl SslManager {
    /// A server context from a PEM key and certificate chain file, with no client
    /// verification. Development only.
    pub fn init_no_verify_server(
        key_path: impl AsRef<Path>,
        cert_path: impl AsRef<Path>,
    ) -> Result<TlsContext, TlsError> {
        TlsContext::server()
            .cert_chain_file(cert_path)
            .key_file(key_path)
            .verify_client(ClientVerify::None)
            .build()
    }

    /// A client context that accepts any server certificate and name. Development only:
    /// it offers no protection against an active attacker.
    pub fn init_no_verify_client() -> Result<TlsContext, TlsError> {
        TlsContext::client()
            .verify_peer(false)
            .verify_hostname(false)
            .build()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn wire(protos: &[&str]) -> Vec<u8> {
        let owned: Vec<Vec<u8>> = protos.iter().map(|p| p.as_bytes().to_vec()).collect();
        encode_alpn(&owned).unwrap()
    }

    #[test]
    fn alpn_selection_prefers_server_order_and_handles_no_overlap() {
        let server = wire(&["h2", "http/1.1"]);
        assert_eq!(
            select_alpn(&server, &wire(&["http/1.1", "h2"])),
            Some(&b"h2"[..])
        );
        assert_eq!(
            select_alpn(&server, &wire(&["spdy/3", "http/1.1"])),
            Some(&b"http/1.1"[..])
        );
        assert_eq!(select_alpn(&server, &wire(&["spdy/3"])), None);
        // Malformed client lists (truncated, zero-length entry) never panic.
        assert_eq!(select_alpn(&server, &[8, b'h', b't']), None);
        assert_eq!(select_alpn(&server, &[0, 2, b'h', b'2']), None);
        assert_eq!(select_alpn(&server, &[]), None);
    }

    #[test]
    fn alpn_encoding_rejects_empty_and_oversized_names() {
        assert!(encode_alpn(&[Vec::new()]).is_err());
        assert!(encode_alpn(&[vec![b'a'; 256]]).is_err());
        assert_eq!(encode_alpn(&[b"ab".to_vec()]).unwrap(), b"\x02ab");
    }

    #[test]
    fn sni_lookup_exact_then_single_label_wildcard() {
        let ctx = || {
            SslContextBuilder::new(SslMethod::tls_server())
                .unwrap()
                .build()
        };
        let table = vec![
            ("*.example.com".to_owned(), ctx()),
            ("api.example.com".to_owned(), ctx()),
        ];
        let pick = |name: &str| {
            find_sni_context(&table, name).map(|found| {
                table
                    .iter()
                    .position(|(_, c)| std::ptr::eq(c, found))
                    .unwrap()
            })
        };
        assert_eq!(pick("api.example.com"), Some(1));
        assert_eq!(pick("API.Example.COM."), Some(1));
        assert_eq!(pick("www.example.com"), Some(0));
        assert_eq!(pick("example.com"), None);
        assert_eq!(pick("a.b.example.com"), None);
        assert_eq!(pick(".example.com"), None);
        assert_eq!(pick(""), None);
    }

    #[test]
    fn sni_patterns_are_validated() {
        assert!(validate_sni_pattern("*.example.com").is_ok());
        assert!(validate_sni_pattern("example.com").is_ok());
        assert!(validate_sni_pattern("*").is_err());
        assert!(validate_sni_pattern("*.").is_err());
        assert!(validate_sni_pattern("a.*.com").is_err());
        assert!(validate_sni_pattern("").is_err());
    }

    #[test]
    fn session_cache_is_bounded() {
        // One real session (from an in-memory handshake) stored under many keys is enough
        // to check eviction order and the bound.
        let cache = SessionCache::default();
        let der = session_der_for_tests();
        for i in 0..(CLIENT_SESSION_CACHE_CAPACITY + 10) {
            let session = SslSession::from_der(&der).unwrap();
            cache.insert(&format!("host{i}:443"), session);
        }
        let entries = cache.entries.lock().unwrap();
        assert_eq!(entries.by_key.len(), CLIENT_SESSION_CACHE_CAPACITY);
        assert!(!entries.by_key.contains_key("host0:443"));
        assert!(entries
            .by_key
            .contains_key(&format!("host{}:443", CLIENT_SESSION_CACHE_CAPACITY + 9)));
    }

    /// DER of a real session, obtained by running a handshake in memory.
    fn session_der_for_tests() -> Vec<u8> {
        crate::net::tls::engine::tests_support::one_session_der()
    }

    #[test]
    fn build_reports_missing_files_with_path_and_reason() {
        let err = TlsContext::server()
            .cert_chain_file("/nonexistent/dir/chain.pem")
            .key_file("/nonexistent/dir/key.pem")
            .build()
            .unwrap_err();
        assert_eq!(err.kind(), TlsErrorKind::Config);
        let text = err.to_string();
        assert!(
            text.starts_with(
                "cannot read certificate chain /nonexistent/dir/chain.pem: No such file"
            ),
            "{text}"
        );

        let err = TlsContext::server()
            .cert_chain_pem(b"not pem")
            .key_pem(b"")
            .build()
            .unwrap_err();
        assert!(
            err.to_string()
                .starts_with("cannot parse certificate chain (in-memory PEM)"),
            "{err}"
        );

        let err = TlsContext::server().build().unwrap_err();
        assert!(
            err.to_string().contains("needs a certificate chain"),
            "{err}"
        );

        let err = TlsContext::client()
            .ca_file("/nonexistent/ca.pem")
            .build()
            .unwrap_err();
        assert!(
            err.to_string()
                .starts_with("cannot read CA file /nonexistent/ca.pem: No such file"),
            "{err}"
        );
    }

    #[test]
    fn build_rejects_mismatched_key() {
        let a = crate::net::tls::ThrowawayPki::generate(&["localhost"]).unwrap();
        let b = crate::net::tls::ThrowawayPki::generate(&["localhost"]).unwrap();
        let err = TlsContext::server()
            .cert_chain_pem(a.cert_pem())
            .key_pem(b.key_pem())
            .build()
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            "private key does not match certificate (in-memory PEM)"
        );
    }

    #[test]
    fn build_rejects_inconsistent_options() {
        let pki = crate::net::tls::ThrowawayPki::generate(&["localhost"]).unwrap();
        let err = TlsContext::server()
            .cert_chain_pem(pki.cert_pem())
            .key_pem(pki.key_pem())
            .verify_client(ClientVerify::Strict)
            .build()
            .unwrap_err();
        assert!(err.to_string().contains("needs CA certificates"), "{err}");

        let err = TlsContext::server()
            .cert_chain_pem(pki.cert_pem())
            .key_pem(pki.key_pem())
            .min_version(TlsVersion::Tls13)
            .max_version(TlsVersion::Tls12)
            .build()
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            "max_version TLS 1.2 is below min_version TLS 1.3"
        );

        let err = TlsContext::client()
            .cert_chain_pem(pki.cert_pem())
            .build()
            .unwrap_err();
        assert!(err
            .to_string()
            .contains("both a certificate chain and a private key"));

        let err = TlsContext::server()
            .cert_chain_pem(pki.cert_pem())
            .key_pem(pki.key_pem())
            .add_sni_certificate("a.*.com", pki.cert_pem(), pki.key_pem())
            .build()
            .unwrap_err();
        assert!(err.to_string().contains("invalid SNI host name"), "{err}");

        let err = TlsContext::server()
            .cert_chain_pem(pki.cert_pem())
            .key_pem(pki.key_pem())
            .verify_client(ClientVerify::Relaxed)
            .ca_dir("/nonexistent/cadir")
            .build()
            .unwrap_err();
        assert!(
            err.to_string()
                .starts_with("cannot read CA directory /nonexistent/cadir: No such file"),
            "{err}"
        );
    }

    #[test]
    fn ssl_manager_helpers_build_from_files() {
        let pki = crate::net::tls::ThrowawayPki::generate(&["localhost"]).unwrap();
        let dir = crate::net::tls::throwaway::tests_support::temp_dir("sslmanager");
        let paths = pki.write_to(&dir).unwrap();
        let server = SslManager::init_no_verify_server(&paths.key, &paths.cert).unwrap();
        assert!(server.is_server());
        let client = SslManager::init_no_verify_client().unwrap();
        assert!(!client.is_server());
        let err = SslManager::init_no_verify_server(dir.join("missing-key.pem"), &paths.cert)
            .unwrap_err();
        assert!(
            err.to_string().starts_with("cannot read private key"),
            "{err}"
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }
}

//! Sans-IO TLS engine: OpenSSL driven entirely through memory buffers.
//!
//! The engine never touches a socket. The owner feeds it ciphertext received from the peer,
//! asks it for plaintext, hands it plaintext to encrypt, and collects the ciphertext it
//! produced. That keeps the event loop in charge of all I/O and timing (the handshake timeout
//! belongs to the socket owner) and makes every TLS behaviour testable without a network.
//!
//! Internally OpenSSL talks to a [`MemPipe`]: a Read + Write pair of byte buffers whose read
//! side reports `WouldBlock` when empty, which OpenSSL turns into `WANT_READ`.

use std::io::{self, Read, Write};

use openssl::ssl::{Error as SslError, ErrorCode, NameType, Ssl, SslStream};
use openssl::x509::{X509NameRef, X509VerifyResult};

use crate::net::tls::context::{describe_stack, TlsContext, TlsError, TlsErrorKind};

/// Room reserved in the caller's buffer per `SSL_read` call: the largest TLS record payload,
/// so one call can always drain one whole record.
const READ_CHUNK: usize = 16 * 1024;

/// OpenSSL's reason string for a failed chain or host name check; used to tell certificate
/// verification failures from other handshake failures.
const VERIFY_FAILED_REASON: &str = "certificate verify failed";

/// In-memory transport under OpenSSL: `input` holds ciphertext from the peer not yet consumed,
/// `output` ciphertext produced for the peer not yet taken.
#[derive(Debug, Default)]
struct MemPipe {
    input: Vec<u8>,
    /// Bytes of `input` already handed to OpenSSL. Consumed bytes are dropped lazily (when
    /// all are consumed, or on the next feed) so partial reads never shift the buffer.
    consumed: usize,
    output: Vec<u8>,
}

impl MemPipe {
    fn has_input(&self) -> bool {
        self.consumed < self.input.len()
    }

    fn push_input(&mut self, data: &[u8]) {
        if self.consumed > 0 {
            self.input.drain(..self.consumed.min(self.input.len()));
            self.consumed = 0;
        }
        self.input.extend_from_slice(data);
    }

    fn discard_input(&mut self) {
        self.input.clear();
        self.consumed = 0;
    }
}

impl Read for MemPipe {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let available = self.input.get(self.consumed..).unwrap_or(&[]);
        if available.is_empty() {
            // Not EOF: more may arrive with the next feed.
            return Err(io::ErrorKind::WouldBlock.into());
        }
        let n = available.len().min(buf.len());
        buf[..n].copy_from_slice(&available[..n]);
        self.consumed += n;
        if self.consumed >= self.input.len() {
            self.discard_input();
        }
        Ok(n)
    }
}

impl Write for MemPipe {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.output.extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// What a [`TlsEngine::read`] call observed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ReadStatus {
    /// The handshake completed during this call (reported exactly once per connection).
    pub handshake_completed: bool,
    /// Plaintext bytes appended to the caller's buffer by this call.
    pub plaintext: usize,
    /// The peer has sent `close_notify` (during this call or earlier): no more plaintext will
    /// arrive. Stays true on later calls.
    pub peer_closed: bool,
}

/// One TLS connection (server or client side) as a memory-to-memory transformer.
///
/// Typical driving loop, per socket event:
/// * bytes arrive from TCP: [`feed`](Self::feed) them, then [`read`](Self::read) into the
///   caller's plaintext buffer, then send whatever [`take_output`](Self::take_output) returns
///   (handshake replies, alerts, session tickets);
/// * the application writes: [`write`](Self::write), then send [`take_output`](Self::take_output).
pub struct TlsEngine {
    stream: SslStream<MemPipe>,
    handshake_done: bool,
    /// Plaintext written before the handshake completed (or left over when OpenSSL could not
    /// take it all); encrypted as soon as possible, in order.
    pending_plaintext: Vec<u8>,
    /// `shutdown()` was called; close_notify goes out once the handshake allows it.
    shutdown_requested: bool,
    close_notify_sent: bool,
    peer_closed: bool,
    /// Client side: the name given to `client()`, reported by `server_name()`.
    requested_server_name: Option<String>,
    /// First fatal error; every later `read`/`write` returns it again.
    failure: Option<TlsError>,
}

impl std::fmt::Debug for TlsEngine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsEngine")
            .field("handshake_done", &self.handshake_done)
            .field("peer_closed", &self.peer_closed)
            .field("close_notify_sent", &self.close_notify_sent)
            .field("failure", &self.failure)
            .finish_non_exhaustive()
    }
}

impl TlsEngine {
    /// Server side of an accepted connection. Produces no output until the ClientHello is fed.
    pub fn server(ctx: &TlsContext) -> Result<Self, TlsError> {
        Self::with_ssl(ctx.new_server_ssl()?, None)
    }

    /// Client side of a connection to `server_name`, which is sent as SNI and checked against
    /// the certificate. For an IP literal (`127.0.0.1`, `::1`, `[::1]`) no SNI is sent and the
    /// certificate's IP addresses are checked instead. Sessions are cached under `server_name`;
    /// use [`client_with_port`](Self::client_with_port) to keep ports apart.
    ///
    /// The ClientHello is ready in [`take_output`](Self::take_output) as soon as this returns.
    pub fn client(ctx: &TlsContext, server_name: &str) -> Result<Self, TlsError> {
        Self::client_with_session_key(ctx, server_name, server_name)
    }

    /// Like [`client`](Self::client), caching the session under `server_name:port`, so a
    /// reconnect to the same host and port resumes and other ports do not share sessions.
    pub fn client_with_port(
        ctx: &TlsContext,
        server_name: &str,
        port: u16,
    ) -> Result<Self, TlsError> {
        Self::client_with_session_key(ctx, server_name, &format!("{server_name}:{port}"))
    }

    fn client_with_session_key(
        ctx: &TlsContext,
        server_name: &str,
        session_key: &str,
    ) -> Result<Self, TlsError> {
        let ssl = ctx.new_client_ssl(server_name, session_key)?;
        let mut engine = Self::with_ssl(ssl, Some(server_name.to_owned()))?;
        // Start right away so the ClientHello is waiting for the socket to connect.
        engine.advance_handshake()?;
        Ok(engine)
    }

    fn with_ssl(ssl: Ssl, requested_server_name: Option<String>) -> Result<Self, TlsError> {
        let stream = SslStream::new(ssl, MemPipe::default())
            .map_err(|stack| TlsError::config_stack("cannot create TLS connection", &stack))?;
        Ok(TlsEngine {
            stream,
            handshake_done: false,
            pending_plaintext: Vec::new(),
            shutdown_requested: false,
            close_notify_sent: false,
            peer_closed: false,
            requested_server_name,
            failure: None,
        })
    }

    /// Queues ciphertext received from the peer. Call [`read`](Self::read) afterwards; input
    /// is buffered until then. Ignored once the engine has failed or the peer has closed.
    pub fn feed(&mut self, ciphertext: &[u8]) {
        if self.failure.is_some() || self.peer_closed {
            return;
        }
        self.stream.get_mut().push_input(ciphertext);
    }

    /// Advances the handshake and decrypts everything decryptable from the fed input,
    /// appending plaintext to `out` (which is not cleared, so the caller can reuse one buffer).
    ///
    /// Always follow with [`take_output`](Self::take_output): the handshake, TLS 1.3 session
    /// tickets and alerts produce ciphertext here. On `Err` the connection is dead: send any
    /// pending output (it may carry an alert explaining the failure to the peer) and close.
    /// Plaintext appended before the error is authentic and may still be used.
    pub fn read(&mut self, out: &mut Vec<u8>) -> Result<ReadStatus, TlsError> {
        if let Some(err) = &self.failure {
            return Err(err.clone());
        }
        let mut status = ReadStatus::default();
        if !self.handshake_done {
            status.handshake_completed = self.advance_handshake()?;
            if !status.handshake_completed {
                return Ok(status);
            }
        } else {
            self.flush_pending()?;
        }
        if !self.peer_closed {
            status.plaintext = self.decrypt_into(out)?;
        }
        status.peer_closed = self.peer_closed;
        Ok(status)
    }

    /// Encrypts application data. Before the handshake completes the data is buffered and
    /// sent right after it; never reports "would block". Fails after
    /// [`shutdown`](Self::shutdown) or a fatal error.
    pub fn write(&mut self, plaintext: &[u8]) -> Result<(), TlsError> {
        if let Some(err) = &self.failure {
            return Err(err.clone());
        }
        if self.shutdown_requested {
            return Err(TlsError::new(
                TlsErrorKind::Closed,
                "cannot write after the TLS connection was shut down",
            ));
        }
        if plaintext.is_empty() {
            return Ok(());
        }
        if !self.handshake_done || !self.pending_plaintext.is_empty() {
            // Keep order behind anything already waiting.
            self.pending_plaintext.extend_from_slice(plaintext);
            if self.handshake_done {
                self.flush_pending()?;
            }
            return Ok(());
        }
        let written = self.encrypt(plaintext)?;
        if let Some(rest) = plaintext.get(written..).filter(|rest| !rest.is_empty()) {
            self.pending_plaintext.extend_from_slice(rest);
        }
        Ok(())
    }

    /// Moves all ciphertext waiting for the peer into `out` (appended) and returns how many
    /// bytes were moved. When `out` is empty the buffers are swapped instead of copied.
    pub fn take_output(&mut self, out: &mut Vec<u8>) -> usize {
        let pending = &mut self.stream.get_mut().output;
        let n = pending.len();
        if n == 0 {
            return 0;
        }
        if out.is_empty() {
            std::mem::swap(out, pending);
        } else {
            out.extend_from_slice(pending);
            pending.clear();
        }
        n
    }

    /// True when [`take_output`](Self::take_output) has bytes to hand out.
    pub fn has_output(&self) -> bool {
        !self.stream.get_ref().output.is_empty()
    }

    /// True once the handshake has completed (on a TLS 1.3 client: once its Finished is out).
    pub fn is_handshake_done(&self) -> bool {
        self.handshake_done
    }

    /// Queues `close_notify` (after any buffered plaintext). Further writes fail; reading
    /// continues so the peer's own `close_notify` can still be seen. Before the handshake has
    /// completed nothing can be sent yet: the alert follows the handshake, and the owner may
    /// simply close the socket instead. Idempotent; a no-op after a fatal error.
    pub fn shutdown(&mut self) {
        if self.failure.is_some() || self.shutdown_requested {
            return;
        }
        self.shutdown_requested = true;
        if self.handshake_done && self.flush_pending().is_ok() {
            self.send_close_notify();
        }
    }

    /// True once the peer's `close_notify` has been read.
    pub fn peer_closed(&self) -> bool {
        self.peer_closed
    }

    /// The negotiated ALPN protocol, if any (e.g. `b"http/1.1"`).
    pub fn alpn_protocol(&self) -> Option<&[u8]> {
        self.stream.ssl().selected_alpn_protocol()
    }

    /// Server side: the SNI name the client asked for. Client side: the name given to
    /// [`client`](Self::client).
    pub fn server_name(&self) -> Option<&str> {
        match &self.requested_server_name {
            Some(name) => Some(name),
            None => self.stream.ssl().servername(NameType::HOST_NAME),
        }
    }

    /// True when the handshake resumed an earlier session (abbreviated handshake).
    pub fn session_reused(&self) -> bool {
        self.stream.ssl().session_reused()
    }

    /// Negotiated protocol version as OpenSSL names it (`"TLSv1.2"`, `"TLSv1.3"`).
    pub fn protocol_version(&self) -> &str {
        self.stream.ssl().version_str()
    }

    /// Subject of the peer's certificate, e.g. `"O=uvhttp throwaway, CN=localhost"`, if the
    /// peer sent one (always for a server; for a client only when one was requested).
    pub fn peer_certificate_subject(&self) -> Option<String> {
        let cert = self.stream.ssl().peer_certificate()?;
        Some(format_name(cert.subject_name()))
    }

    /// Runs the handshake as far as the input allows; `Ok(true)` when it completed just now.
    fn advance_handshake(&mut self) -> Result<bool, TlsError> {
        match self.stream.do_handshake() {
            Ok(()) => {
                self.handshake_done = true;
                self.flush_pending()?;
                if self.shutdown_requested {
                    self.send_close_notify();
                }
                Ok(true)
            }
            Err(err) if is_want(&err) => Ok(false),
            Err(err) => {
                if err.code() == ErrorCode::ZERO_RETURN {
                    self.peer_closed = true;
                }
                let error = self.handshake_error(&err);
                Err(self.fail(error))
            }
        }
    }

    /// Decrypts records until the input runs dry; returns the plaintext byte count.
    fn decrypt_into(&mut self, out: &mut Vec<u8>) -> Result<usize, TlsError> {
        let start = out.len();
        // Without read-ahead OpenSSL pulls exactly one record at a time from the pipe, so
        // when the pipe is empty and nothing decrypted is pending, another SSL_read could
        // only report WANT_READ: skip it.
        while self.stream.get_ref().has_input() || self.stream.ssl().pending() > 0 {
            out.reserve(READ_CHUNK);
            let spare = out.spare_capacity_mut();
            let spare_len = spare.len();
            match self.stream.ssl_read_uninit(spare) {
                Ok(0) => break,
                Ok(n) => {
                    let new_len = out.len() + n.min(spare_len);
                    // SAFETY: `ssl_read_uninit` guarantees that the first `n` bytes of `spare`
                    // (the vector's uninitialised tail) were initialised, and `n` is clamped
                    // to the spare capacity, so `new_len <= capacity`.
                    unsafe { out.set_len(new_len) };
                }
                Err(err) if is_want(&err) => break,
                Err(err) if err.code() == ErrorCode::ZERO_RETURN => {
                    self.peer_closed = true;
                    // Anything after close_notify is meaningless (RFC 8446 §6.1).
                    self.stream.get_mut().discard_input();
                    break;
                }
                Err(err) => {
                    let error = protocol_error(&err);
                    return Err(self.fail(error));
                }
            }
        }
        Ok(out.len() - start)
    }

    /// Encrypts as much of `data` as OpenSSL accepts now; returns the byte count taken.
    fn encrypt(&mut self, data: &[u8]) -> Result<usize, TlsError> {
        let mut written = 0;
        while let Some(rest) = data.get(written..).filter(|rest| !rest.is_empty()) {
            match self.stream.ssl_write(rest) {
                Ok(0) => break,
                Ok(n) => written += n,
                // Only possible mid post-handshake exchange; the rest waits in
                // `pending_plaintext` and goes out on the next read().
                Err(err) if is_want(&err) => break,
                Err(err) => {
                    let error = protocol_error(&err);
                    return Err(self.fail(error));
                }
            }
        }
        Ok(written)
    }

    fn flush_pending(&mut self) -> Result<(), TlsError> {
        if self.pending_plaintext.is_empty() {
            return Ok(());
        }
        let pending = std::mem::take(&mut self.pending_plaintext);
        let written = self.encrypt(&pending)?;
        if written < pending.len() {
            let mut rest = pending;
            rest.drain(..written);
            self.pending_plaintext = rest;
        }
        // Otherwise the buffer is dropped: it is normally used once, before the handshake,
        // and keeping a large one per connection would waste memory.
        Ok(())
    }

    fn send_close_notify(&mut self) {
        if self.close_notify_sent {
            return;
        }
        match self.stream.shutdown() {
            Ok(_) => self.close_notify_sent = true,
            Err(err) if is_want(&err) => self.close_notify_sent = true,
            // Shutdown failing only means no close_notify goes out; the owner closes the
            // socket regardless, so this is not worth an error of its own.
            Err(err) => log::debug!("TLS shutdown failed: {err}"),
        }
    }

    fn handshake_error(&self, err: &SslError) -> TlsError {
        let ssl = self.stream.ssl();
        let verify_failed = err.ssl_error().is_some_and(|stack| {
            stack
                .errors()
                .iter()
                .any(|e| e.reason() == Some(VERIFY_FAILED_REASON))
        });
        let verify_result = ssl.verify_result();
        if verify_failed && verify_result != X509VerifyResult::OK {
            let mut message = format!("{VERIFY_FAILED_REASON}: {}", verify_result.error_string());
            if let Some(name) = &self.requested_server_name {
                message.push_str(&format!(" (server name {name:?})"));
            }
            return TlsError::new(TlsErrorKind::CertificateVerify, message);
        }
        if err.code() == ErrorCode::ZERO_RETURN {
            return TlsError::new(
                TlsErrorKind::Handshake,
                "the peer closed the connection during the TLS handshake",
            );
        }
        TlsError::new(
            TlsErrorKind::Handshake,
            format!("TLS handshake failed: {}", error_text(err)),
        )
    }

    /// Records the first fatal error and drops unread input (nothing more will be read).
    fn fail(&mut self, error: TlsError) -> TlsError {
        log::debug!("TLS connection failed: {error}");
        self.stream.get_mut().discard_input();
        self.pending_plaintext = Vec::new();
        self.failure = Some(error.clone());
        error
    }
}

fn is_want(err: &SslError) -> bool {
    matches!(err.code(), ErrorCode::WANT_READ | ErrorCode::WANT_WRITE)
}

fn protocol_error(err: &SslError) -> TlsError {
    TlsError::new(
        TlsErrorKind::Protocol,
        format!("TLS connection failed: {}", error_text(err)),
    )
}

fn error_text(err: &SslError) -> String {
    match err.ssl_error() {
        Some(stack) => describe_stack(stack),
        None => err.to_string(),
    }
}

/// Formats a distinguished name as `SN=value, SN=value` in certificate order.
fn format_name(name: &X509NameRef) -> String {
    let mut text = String::new();
    for entry in name.entries() {
        if !text.is_empty() {
            text.push_str(", ");
        }
        let key = entry.object().nid().short_name().unwrap_or("?");
        text.push_str(key);
        text.push('=');
        match entry.data().to_string() {
            Ok(value) => text.push_str(&value),
            Err(_) => text.push_str(&String::from_utf8_lossy(entry.data().as_slice())),
        }
    }
    text
}

/// Helpers shared by the tests of this layer: a pair of engines pumping bytes in memory.
#[cfg(test)]
pub(crate) mod tests_support {
    use std::sync::OnceLock;

    use super::*;
    use crate::net::tls::context::{ClientContextBuilder, ServerContextBuilder};
    use crate::net::tls::throwaway::ThrowawayPki;

    /// One PKI for all tests (key generation is the slow part): a CA, a server certificate
    /// for localhost and loopback IPs, and a client certificate "test-client".
    pub(crate) fn pki() -> &'static ThrowawayPki {
        static PKI: OnceLock<ThrowawayPki> = OnceLock::new();
        PKI.get_or_init(|| {
            ThrowawayPki::generate_with_client(&["localhost", "127.0.0.1", "::1"], "test-client")
                .expect("generate throwaway PKI")
        })
    }

    pub(crate) fn server_ctx(
        configure: impl FnOnce(ServerContextBuilder) -> ServerContextBuilder,
    ) -> TlsContext {
        let builder = TlsContext::server()
            .cert_chain_pem(pki().cert_pem())
            .key_pem(pki().key_pem());
        configure(builder).build().expect("build server context")
    }

    pub(crate) fn client_ctx(
        configure: impl FnOnce(ClientContextBuilder) -> ClientContextBuilder,
    ) -> TlsContext {
        let builder = TlsContext::client().ca_pem(pki().ca_pem());
        configure(builder).build().expect("build client context")
    }

    /// One side of an in-memory connection with everything it observed.
    pub(crate) struct Peer {
        pub(crate) engine: TlsEngine,
        pub(crate) plain: Vec<u8>,
        pub(crate) error: Option<TlsError>,
        pub(crate) handshakes: usize,
        pub(crate) saw_peer_closed: bool,
    }

    impl Peer {
        pub(crate) fn new(engine: TlsEngine) -> Self {
            Peer {
                engine,
                plain: Vec::new(),
                error: None,
                handshakes: 0,
                saw_peer_closed: false,
            }
        }

        pub(crate) fn read(&mut self) {
            match self.engine.read(&mut self.plain) {
                Ok(status) => {
                    self.handshakes += usize::from(status.handshake_completed);
                    self.saw_peer_closed |= status.peer_closed;
                }
                Err(err) => {
                    if self.error.is_none() {
                        self.error = Some(err);
                    }
                }
            }
        }
    }

    /// Moves `from`'s output to `to` in pieces of `chunk` bytes, reading after each piece.
    /// Returns whether anything moved.
    pub(crate) fn transfer(from: &mut Peer, to: &mut Peer, chunk: usize) -> bool {
        let mut bytes = Vec::new();
        if from.engine.take_output(&mut bytes) == 0 {
            return false;
        }
        for piece in bytes.chunks(chunk) {
            to.engine.feed(piece);
            to.read();
        }
        true
    }

    /// Pumps both directions until no bytes move.
    pub(crate) fn pump(client: &mut Peer, server: &mut Peer, chunk: usize) {
        for _ in 0..10_000 {
            let sent = transfer(client, server, chunk);
            let received = transfer(server, client, chunk);
            if !sent && !received {
                return;
            }
        }
        panic!("connection did not settle");
    }

    /// A connected pair after pumping the handshake to completion (or failure).
    pub(crate) fn connect(
        server_ctx: &TlsContext,
        client_ctx: &TlsContext,
        name: &str,
    ) -> (Peer, Peer) {
        let mut client = Peer::new(TlsEngine::client(client_ctx, name).expect("client engine"));
        let mut server = Peer::new(TlsEngine::server(server_ctx).expect("server engine"));
        pump(&mut client, &mut server, usize::MAX);
        (client, server)
    }

    /// The DER encoding of a real client session, for tests that need an `SslSession`.
    pub(crate) fn one_session_der() -> Vec<u8> {
        let server = server_ctx(|b| b);
        let client = client_ctx(|b| b.max_version(crate::net::tls::TlsVersion::Tls12));
        let (client, _server) = connect(&server, &client, "localhost");
        client
            .engine
            .stream
            .ssl()
            .session()
            .expect("session after handshake")
            .to_der()
            .expect("session DER")
    }
}

#[cfg(test)]
mod tests {
    use super::tests_support::*;
    use super::*;
    use crate::net::tls::context::ClientVerify;
    use crate::net::tls::throwaway::ThrowawayPki;
    use crate::net::tls::TlsVersion;
    use openssl::ssl::{
        SslContextBuilder, SslMethod, SslOptions, SslRef, SslVerifyMode, SslVersion,
    };

    fn assert_connected(client: &Peer, server: &Peer) {
        assert!(client.error.is_none(), "client error: {:?}", client.error);
        assert!(server.error.is_none(), "server error: {:?}", server.error);
        assert!(client.engine.is_handshake_done());
        assert!(server.engine.is_handshake_done());
        assert_eq!(
            client.handshakes, 1,
            "client reports the handshake exactly once"
        );
        assert_eq!(
            server.handshakes, 1,
            "server reports the handshake exactly once"
        );
    }

    fn exchange(client: &mut Peer, server: &mut Peer, chunk: usize) {
        client
            .engine
            .write(b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n")
            .unwrap();
        pump(client, server, chunk);
        assert_eq!(server.plain, b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n");
        server
            .engine
            .write(b"HTTP/1.1 204 No Content\r\n\r\n")
            .unwrap();
        pump(client, server, chunk);
        assert_eq!(client.plain, b"HTTP/1.1 204 No Content\r\n\r\n");
    }

    #[test]
    fn mem_pipe_reads_in_order_and_would_block_when_empty() {
        let mut pipe = MemPipe::default();
        let mut buf = [0u8; 4];
        let err = pipe.read(&mut buf).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::WouldBlock);
        pipe.push_input(b"abcdef");
        assert_eq!(pipe.read(&mut buf).unwrap(), 4);
        assert_eq!(&buf, b"abcd");
        // A feed after a partial read keeps the unread bytes first.
        pipe.push_input(b"gh");
        assert_eq!(pipe.consumed, 0, "consumed bytes are dropped on feed");
        assert_eq!(pipe.read(&mut buf).unwrap(), 4);
        assert_eq!(&buf, b"efgh");
        assert!(!pipe.has_input());
        assert!(pipe.input.is_empty(), "fully consumed input is released");
        assert_eq!(
            pipe.read(&mut buf).unwrap_err().kind(),
            io::ErrorKind::WouldBlock
        );
        assert_eq!(pipe.write(b"xyz").unwrap(), 3);
        assert_eq!(pipe.output, b"xyz");
    }

    #[test]
    fn handshake_tls12_and_tls13() {
        for (version, name) in [
            (TlsVersion::Tls12, "TLSv1.2"),
            (TlsVersion::Tls13, "TLSv1.3"),
        ] {
            let server = server_ctx(|b| b.min_version(version).max_version(version));
            let client = client_ctx(|b| b);
            let (mut client, mut server) = connect(&server, &client, "localhost");
            assert_connected(&client, &server);
            assert_eq!(client.engine.protocol_version(), name);
            assert_eq!(server.engine.protocol_version(), name);
            assert!(!client.engine.session_reused());
            exchange(&mut client, &mut server, usize::MAX);
        }
    }

    #[test]
    fn version_floor_is_enforced() {
        let server = server_ctx(|b| b.min_version(TlsVersion::Tls13));
        let client = client_ctx(|b| b.max_version(TlsVersion::Tls12));
        let (client, server) = connect(&server, &client, "localhost");
        let server_err = server.error.expect("server must refuse TLS 1.2");
        assert_eq!(server_err.kind(), TlsErrorKind::Handshake);
        assert!(
            server_err.to_string().contains("unsupported protocol"),
            "{server_err}"
        );
        let client_err = client.error.expect("client must see the alert");
        assert!(
            client_err.to_string().contains("alert protocol version"),
            "{client_err}"
        );
    }

    #[test]
    fn alpn_defaults_to_http11_and_survives_no_overlap() {
        let (client, server) = connect(&server_ctx(|b| b), &client_ctx(|b| b), "localhost");
        assert_connected(&client, &server);
        assert_eq!(client.engine.alpn_protocol(), Some(&b"http/1.1"[..]));
        assert_eq!(server.engine.alpn_protocol(), Some(&b"http/1.1"[..]));

        let (client, server) = connect(
            &server_ctx(|b| b),
            &client_ctx(|b| b.alpn_protocols(&["h2"])),
            "localhost",
        );
        assert_connected(&client, &server);
        assert_eq!(client.engine.alpn_protocol(), None);
        assert_eq!(server.engine.alpn_protocol(), None);

        let (client, server) = connect(
            &server_ctx(|b| b.alpn_protocols(&["h2", "http/1.1"])),
            &client_ctx(|b| b.alpn_protocols(&["http/1.1", "h2"])),
            "localhost",
        );
        assert_connected(&client, &server);
        assert_eq!(
            client.engine.alpn_protocol(),
            Some(&b"h2"[..]),
            "server preference wins"
        );

        let empty: [&str; 0] = [];
        let (client, server) = connect(
            &server_ctx(|b| b),
            &client_ctx(|b| b.alpn_protocols(&empty)),
            "localhost",
        );
        assert_connected(&client, &server);
        assert_eq!(server.engine.alpn_protocol(), None);
    }

    #[test]
    fn sni_selects_certificate_by_name() {
        let api = pki().issue_server_certificate(&["api.test"]).unwrap();
        let wild = pki().issue_server_certificate(&["*.wild.test"]).unwrap();
        let server = server_ctx(|b| {
            b.add_sni_certificate("api.test", api.cert_pem(), api.key_pem())
                .add_sni_certificate("*.wild.test", wild.cert_pem(), wild.key_pem())
        });
        let client = client_ctx(|b| b);

        let (client_a, server_a) = connect(&server, &client, "api.test");
        assert_connected(&client_a, &server_a);
        assert_eq!(
            client_a.engine.peer_certificate_subject().as_deref(),
            Some("O=uvhttp throwaway, CN=api.test")
        );
        assert_eq!(server_a.engine.server_name(), Some("api.test"));
        assert_eq!(client_a.engine.server_name(), Some("api.test"));
        // SNI contexts keep ALPN.
        assert_eq!(client_a.engine.alpn_protocol(), Some(&b"http/1.1"[..]));

        let (client_w, server_w) = connect(&server, &client, "X.Wild.Test");
        assert_connected(&client_w, &server_w);
        assert_eq!(
            client_w.engine.peer_certificate_subject().as_deref(),
            Some("O=uvhttp throwaway, CN=*.wild.test")
        );

        let (client_d, server_d) = connect(&server, &client, "localhost");
        assert_connected(&client_d, &server_d);
        assert_eq!(
            client_d.engine.peer_certificate_subject().as_deref(),
            Some("O=uvhttp throwaway, CN=localhost")
        );

        // Unknown name: the default certificate, which then fails the client's name check.
        let (client_u, _server_u) = connect(&server, &client, "unknown.test");
        let err = client_u
            .error
            .expect("default cert does not match unknown.test");
        assert_eq!(err.kind(), TlsErrorKind::CertificateVerify);
        let lenient = client_ctx(|b| b.verify_hostname(false));
        let (client_u, server_u) = connect(&server, &lenient, "unknown.test");
        assert_connected(&client_u, &server_u);
        assert_eq!(
            client_u.engine.peer_certificate_subject().as_deref(),
            Some("O=uvhttp throwaway, CN=localhost")
        );
    }

    #[test]
    fn session_resumption_tls12_and_tls13() {
        for version in [TlsVersion::Tls12, TlsVersion::Tls13] {
            let server = server_ctx(|b| b.max_version(version));
            let client = client_ctx(|b| b);
            let run = |port: u16| {
                let mut c =
                    Peer::new(TlsEngine::client_with_port(&client, "localhost", port).unwrap());
                let mut s = Peer::new(TlsEngine::server(&server).unwrap());
                pump(&mut c, &mut s, usize::MAX);
                exchange(&mut c, &mut s, usize::MAX);
                assert_connected(&c, &s);
                (c, s)
            };
            let (first, _) = run(443);
            assert!(
                !first.engine.session_reused(),
                "{version:?}: first connection is full"
            );
            let (second, second_server) = run(443);
            assert!(
                second.engine.session_reused(),
                "{version:?}: reconnect resumes"
            );
            assert!(second_server.engine.session_reused());
            // The peer identity survives resumption.
            assert!(second.engine.peer_certificate_subject().is_some());
            let (other_port, _) = run(8443);
            assert!(
                !other_port.engine.session_reused(),
                "{version:?}: other port is separate"
            );
        }
    }

    #[test]
    fn session_resumption_can_be_disabled() {
        let server = server_ctx(|b| b);
        let client = client_ctx(|b| b.session_resumption(false));
        let (first, first_server) = connect(&server, &client, "localhost");
        assert_connected(&first, &first_server);
        let (second, second_server) = connect(&server, &client, "localhost");
        assert_connected(&second, &second_server);
        assert!(!second.engine.session_reused());
    }

    #[test]
    fn client_certificate_modes() {
        let p = pki();
        let with_cert = client_ctx(|b| {
            b.cert_chain_pem(p.client_cert_pem().unwrap())
                .key_pem(p.client_key_pem().unwrap())
        });
        let without_cert = client_ctx(|b| b);

        // None: not requested, so not sent even when the client has one.
        let none = server_ctx(|b| b);
        let (c, s) = connect(&none, &with_cert, "localhost");
        assert_connected(&c, &s);
        assert_eq!(s.engine.peer_certificate_subject(), None);

        for version in [TlsVersion::Tls12, TlsVersion::Tls13] {
            let relaxed = server_ctx(|b| {
                b.max_version(version)
                    .verify_client(ClientVerify::Relaxed)
                    .ca_pem(p.ca_pem())
            });
            let (c, s) = connect(&relaxed, &without_cert, "localhost");
            assert_connected(&c, &s);
            assert_eq!(s.engine.peer_certificate_subject(), None);
            let (c, s) = connect(&relaxed, &with_cert, "localhost");
            assert_connected(&c, &s);
            assert_eq!(
                s.engine.peer_certificate_subject().as_deref(),
                Some("O=uvhttp throwaway, CN=test-client")
            );

            let strict = server_ctx(|b| {
                b.max_version(version)
                    .verify_client(ClientVerify::Strict)
                    .ca_pem(p.ca_pem())
            });
            let (mut c, mut s) = connect(&strict, &without_cert, "localhost");
            let err = s
                .error
                .clone()
                .expect("strict server rejects a client without cert");
            assert_eq!(err.kind(), TlsErrorKind::Handshake);
            assert!(
                err.to_string()
                    .contains("peer did not return a certificate"),
                "{err}"
            );
            // TLS 1.3 clients finish their side before the server checks the certificate;
            // they learn about the rejection from the alert on their next read.
            pump(&mut c, &mut s, usize::MAX);
            let client_err = c.error.expect("client learns it was rejected");
            assert!(client_err.to_string().contains("alert"), "{client_err}");

            let (c, s) = connect(&strict, &with_cert, "localhost");
            assert_connected(&c, &s);
            assert_eq!(
                s.engine.peer_certificate_subject().as_deref(),
                Some("O=uvhttp throwaway, CN=test-client")
            );

            // A certificate from a CA the server does not trust is rejected even in Relaxed.
            let stranger = ThrowawayPki::generate_with_client(&["localhost"], "mallory").unwrap();
            let foreign = client_ctx(|b| {
                b.cert_chain_pem(stranger.client_cert_pem().unwrap())
                    .key_pem(stranger.client_key_pem().unwrap())
            });
            let (_c, s) = connect(&relaxed, &foreign, "localhost");
            let err = s.error.expect("foreign client cert is rejected");
            assert_eq!(err.kind(), TlsErrorKind::CertificateVerify);
            assert!(
                err.to_string().starts_with("certificate verify failed: "),
                "{err}"
            );
        }
    }

    #[test]
    fn hostname_and_ip_verification() {
        let server = server_ctx(|b| b);
        let client = client_ctx(|b| b);
        let (c, s) = connect(&server, &client, "other.example");
        let err = c.error.expect("hostname mismatch must fail");
        assert_eq!(err.kind(), TlsErrorKind::CertificateVerify);
        assert_eq!(
            err.to_string(),
            "certificate verify failed: hostname mismatch (server name \"other.example\")"
        );
        // The server hears about it through the client's alert.
        let server_err = s.error.expect("server sees the alert");
        assert!(server_err.to_string().contains("alert"), "{server_err}");

        for ip in ["127.0.0.1", "::1", "[::1]"] {
            let (c, s) = connect(&server, &client, ip);
            assert_connected(&c, &s);
            // IP literals are not sent as SNI.
            assert_eq!(s.engine.server_name(), None, "{ip}");
        }
        let (c, _) = connect(&server, &client, "192.0.2.1");
        let err = c.error.expect("IP mismatch must fail");
        assert_eq!(
            err.to_string(),
            "certificate verify failed: IP address mismatch (server name \"192.0.2.1\")"
        );
    }

    #[test]
    fn unknown_ca_fails_with_clear_message() {
        let stranger = ThrowawayPki::generate(&["localhost"]).unwrap();
        let server = server_ctx(|b| b);
        for client in [
            TlsContext::client()
                .ca_pem(stranger.ca_pem())
                .build()
                .unwrap(),
            // System trust store: does not know the throwaway CA either.
            TlsContext::client().build().unwrap(),
        ] {
            let (c, _) = connect(&server, &client, "localhost");
            let err = c.error.expect("unknown CA must fail");
            assert_eq!(err.kind(), TlsErrorKind::CertificateVerify);
            assert_eq!(
                err.to_string(),
                "certificate verify failed: unable to get local issuer certificate (server name \"localhost\")"
            );
        }
        // With verification off the same connection succeeds (development mode).
        let lax = crate::net::tls::SslManager::init_no_verify_client().unwrap();
        let (c, s) = connect(&server, &lax, "anything");
        assert_connected(&c, &s);
    }

    #[test]
    fn self_signed_ca_in_chain_is_reported() {
        // A server that sends its CA along: the client sees a self-signed root it does not
        // trust, which OpenSSL words differently from a missing issuer.
        let mut chain = pki().cert_pem().to_vec();
        chain.extend_from_slice(pki().ca_pem());
        let server = TlsContext::server()
            .cert_chain_pem(&chain)
            .key_pem(pki().key_pem())
            .build()
            .unwrap();
        let stranger = ThrowawayPki::generate(&["localhost"]).unwrap();
        let client = TlsContext::client()
            .ca_pem(stranger.ca_pem())
            .build()
            .unwrap();
        let (c, _) = connect(&server, &client, "localhost");
        let err = c.error.expect("untrusted root must fail");
        assert!(
            err.to_string().starts_with(
                "certificate verify failed: self-signed certificate in certificate chain"
            ),
            "{err}"
        );
        // And a client that trusts our CA accepts the longer chain.
        let (c, s) = connect(&server, &client_ctx(|b| b), "localhost");
        assert_connected(&c, &s);
    }

    #[test]
    fn one_byte_at_a_time() {
        for version in [TlsVersion::Tls12, TlsVersion::Tls13] {
            let server = server_ctx(|b| b.max_version(version));
            let client = client_ctx(|b| b);
            let mut c = Peer::new(TlsEngine::client(&client, "localhost").unwrap());
            let mut s = Peer::new(TlsEngine::server(&server).unwrap());
            pump(&mut c, &mut s, 1);
            assert_connected(&c, &s);
            exchange(&mut c, &mut s, 1);
            c.engine.shutdown();
            pump(&mut c, &mut s, 1);
            assert!(s.saw_peer_closed);
        }
    }

    fn pattern(len: usize, seed: u8) -> Vec<u8> {
        (0..len).map(|i| (i % 251) as u8 ^ seed).collect()
    }

    #[test]
    fn one_mebibyte_writes_both_ways() {
        let big_request = pattern(1 << 20, 0x5a);
        let big_response = pattern(1 << 20, 0xa5);
        let mut c = Peer::new(TlsEngine::client(&client_ctx(|b| b), "localhost").unwrap());
        let mut s = Peer::new(TlsEngine::server(&server_ctx(|b| b)).unwrap());
        // Written before the handshake: buffered, then sent after it.
        c.engine.write(&big_request).unwrap();
        pump(&mut c, &mut s, usize::MAX);
        assert_connected(&c, &s);
        assert_eq!(s.plain.len(), big_request.len());
        assert!(s.plain == big_request);

        s.engine.write(&big_response).unwrap();
        assert!(s.engine.has_output());
        // Deliver in odd-sized pieces that split records.
        pump(&mut c, &mut s, 7001);
        assert!(c.plain == big_response);
    }

    #[test]
    fn take_output_appends_or_swaps() {
        let mut c = TlsEngine::client(&client_ctx(|b| b), "localhost").unwrap();
        assert!(c.has_output(), "ClientHello is ready right away");
        let mut out = b"prefix".to_vec();
        let n = c.take_output(&mut out);
        assert!(n > 0);
        assert_eq!(out.len(), 6 + n);
        assert_eq!(&out[..6], b"prefix");
        assert_eq!(out[6], 0x16, "a handshake record");
        assert!(!c.has_output());
        assert_eq!(c.take_output(&mut out), 0);
    }

    #[test]
    fn close_notify_both_ways() {
        for version in [TlsVersion::Tls12, TlsVersion::Tls13] {
            let (mut c, mut s) = connect(
                &server_ctx(|b| b.max_version(version)),
                &client_ctx(|b| b),
                "localhost",
            );
            assert_connected(&c, &s);
            c.engine.write(b"last words").unwrap();
            c.engine.shutdown();
            c.engine.shutdown(); // idempotent
            let err = c.engine.write(b"more").unwrap_err();
            assert_eq!(err.kind(), TlsErrorKind::Closed);
            pump(&mut c, &mut s, usize::MAX);
            assert_eq!(
                s.plain, b"last words",
                "data before close_notify is delivered"
            );
            assert!(s.saw_peer_closed && s.engine.peer_closed());
            assert!(!c.engine.peer_closed());
            // Half-closed: the server may still answer, then closes too.
            s.engine.write(b"reply").unwrap();
            s.engine.shutdown();
            pump(&mut c, &mut s, usize::MAX);
            assert_eq!(c.plain, b"reply");
            assert!(c.saw_peer_closed && c.engine.peer_closed());
            assert!(c.error.is_none() && s.error.is_none());
            // Reads after close keep reporting it, without error.
            let mut out = Vec::new();
            let status = s.engine.read(&mut out).unwrap();
            assert!(status.peer_closed && status.plaintext == 0 && !status.handshake_completed);
        }
    }

    #[test]
    fn shutdown_before_handshake_waits_for_it() {
        let mut c = Peer::new(TlsEngine::client(&client_ctx(|b| b), "localhost").unwrap());
        let mut s = Peer::new(TlsEngine::server(&server_ctx(|b| b)).unwrap());
        c.engine.write(b"early").unwrap();
        c.engine.shutdown();
        pump(&mut c, &mut s, usize::MAX);
        assert_connected(&c, &s);
        assert_eq!(s.plain, b"early");
        assert!(s.saw_peer_closed);
    }

    #[test]
    fn garbage_instead_of_client_hello() {
        let server = server_ctx(|b| b);
        let mut s = TlsEngine::server(&server).unwrap();
        s.feed(b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n");
        let mut out = Vec::new();
        let err = s.read(&mut out).unwrap_err();
        assert_eq!(err.kind(), TlsErrorKind::Handshake);
        assert!(
            err.to_string().starts_with("TLS handshake failed: "),
            "{err}"
        );
        assert!(err.to_string().contains("http request"), "{err}");
        // The failure is sticky and further input is ignored.
        s.feed(b"more garbage");
        assert_eq!(s.read(&mut out).unwrap_err(), err);
        assert!(s.write(b"x").is_err());
        s.shutdown();
        assert!(out.is_empty());

        // A well-framed handshake record whose ClientHello is malformed: OpenSSL answers with
        // a fatal alert, which must come out for the owner to send.
        let mut s = TlsEngine::server(&server).unwrap();
        let body = [0x01, 0x00, 0x00, 0x04, 0x03, 0x03, 0xde, 0xad];
        let mut record = vec![0x16, 0x03, 0x01, 0x00, body.len() as u8];
        record.extend_from_slice(&body);
        s.feed(&record);
        let err = s.read(&mut out).unwrap_err();
        assert_eq!(err.kind(), TlsErrorKind::Handshake);
        let mut alert = Vec::new();
        assert!(s.take_output(&mut alert) > 0, "an alert is produced");
        assert_eq!(alert[0], 0x15, "alert record");
        assert_eq!(alert[5], 2, "fatal");

        // Every possible first byte followed by junk, fed whole and byte by byte: errors or
        // waits, never panics, and output stays small.
        for first in 0..=255u8 {
            let junk: Vec<u8> = std::iter::once(first)
                .chain((0..64u32).map(|i| (i * 37 + u32::from(first)) as u8))
                .collect();
            for chunk in [junk.len(), 1] {
                let mut s = TlsEngine::server(&server).unwrap();
                for piece in junk.chunks(chunk) {
                    s.feed(piece);
                    let _ = s.read(&mut out);
                }
                let mut alert = Vec::new();
                s.take_output(&mut alert);
                assert!(
                    alert.len() < 64,
                    "first byte {first}: {} bytes out",
                    alert.len()
                );
                assert!(out.is_empty());
            }
        }
    }

    #[test]
    fn engine_rejects_wrong_context_role() {
        let server = server_ctx(|b| b);
        let client = client_ctx(|b| b);
        let err = TlsEngine::server(&client).unwrap_err();
        assert_eq!(err.kind(), TlsErrorKind::Config);
        assert!(err.to_string().contains("server context"), "{err}");
        let err = TlsEngine::client(&server, "localhost").unwrap_err();
        assert!(err.to_string().contains("client context"), "{err}");
        let err = TlsEngine::client(&client, "").unwrap_err();
        assert!(err.to_string().contains("needs a server name"), "{err}");
    }

    // ---- renegotiation ------------------------------------------------------------------

    extern "C" {
        // Not bound by openssl-sys; declared here for the renegotiation tests only.
        fn SSL_renegotiate(ssl: *mut openssl_sys::SSL) -> std::os::raw::c_int;
    }

    /// Asks OpenSSL to start a renegotiation on `ssl`.
    fn request_renegotiation(ssl: &SslRef) {
        // `&SslRef` is, by the foreign-types convention the openssl crate follows, a pointer
        // to the C `SSL` object itself.
        let raw = ssl as *const SslRef as *mut openssl_sys::SSL;
        // SAFETY: `raw` points to a live SSL owned by the caller's stream for the duration of
        // the call, and SSL_renegotiate only flags the connection for renegotiation.
        let ok = unsafe { SSL_renegotiate(raw) };
        assert_eq!(ok, 1, "OpenSSL accepted the renegotiation request");
    }

    /// A plain OpenSSL TLS 1.2 endpoint that is willing to renegotiate, standing in for a
    /// hostile or legacy peer.
    fn raw_tls12(server: bool) -> SslStream<MemPipe> {
        let method = if server {
            SslMethod::tls_server()
        } else {
            SslMethod::tls_client()
        };
        let mut builder = SslContextBuilder::new(method).unwrap();
        builder
            .set_max_proto_version(Some(SslVersion::TLS1_2))
            .unwrap();
        builder.set_verify(SslVerifyMode::NONE);
        builder.clear_options(SslOptions::NO_RENEGOTIATION);
        if server {
            let cert = openssl::x509::X509::from_pem(pki().cert_pem()).unwrap();
            let key = openssl::pkey::PKey::private_key_from_pem(pki().key_pem()).unwrap();
            builder.set_certificate(&cert).unwrap();
            builder.set_private_key(&key).unwrap();
        }
        let mut ssl = Ssl::new(&builder.build()).unwrap();
        if server {
            ssl.set_accept_state();
        } else {
            ssl.set_connect_state();
        }
        SslStream::new(ssl, MemPipe::default()).unwrap()
    }

    /// Drives a raw stream: handshake if needed, then reads; returns the first hard error.
    fn drive_raw(raw: &mut SslStream<MemPipe>, plain: &mut Vec<u8>) -> Result<(), SslError> {
        let mut buf = [0u8; 4096];
        loop {
            match raw.ssl_read(&mut buf) {
                Ok(n) => plain.extend_from_slice(&buf[..n]),
                Err(err) if is_want(&err) => return Ok(()),
                Err(err) => return Err(err),
            }
        }
    }

    fn raw_to_engine(raw: &mut SslStream<MemPipe>, peer: &mut Peer) -> bool {
        let bytes = std::mem::take(&mut raw.get_mut().output);
        if bytes.is_empty() {
            return false;
        }
        peer.engine.feed(&bytes);
        peer.read();
        true
    }

    fn engine_to_raw(peer: &mut Peer, raw: &mut SslStream<MemPipe>) -> bool {
        let mut bytes = Vec::new();
        if peer.engine.take_output(&mut bytes) == 0 {
            return false;
        }
        raw.get_mut().input.extend_from_slice(&bytes);
        true
    }

    #[test]
    fn client_initiated_renegotiation_is_refused() {
        let mut s = Peer::new(TlsEngine::server(&server_ctx(|b| b)).unwrap());
        let mut raw = raw_tls12(false);
        let mut raw_plain = Vec::new();
        let _ = raw.do_handshake();
        for _ in 0..20 {
            let moved = raw_to_engine(&mut raw, &mut s) | engine_to_raw(&mut s, &mut raw);
            match raw.do_handshake() {
                Ok(()) => {}
                Err(err) => assert!(is_want(&err), "handshake: {err}"),
            }
            if !moved {
                break;
            }
        }
        assert_connected_server(&s);
        assert_eq!(raw.ssl().version_str(), "TLSv1.2");

        request_renegotiation(raw.ssl());
        let _ = raw.do_handshake(); // sends the new ClientHello
        let mut raw_result = Ok(());
        for _ in 0..20 {
            let moved = raw_to_engine(&mut raw, &mut s) | engine_to_raw(&mut s, &mut raw);
            if raw_result.is_ok() {
                raw_result = drive_raw(&mut raw, &mut raw_plain);
            }
            if !moved {
                break;
            }
        }
        // The server answered the new ClientHello with a no_renegotiation alert, which the
        // client treats as fatal.
        let err = raw_result.expect_err("the renegotiating client is refused");
        assert!(err.to_string().contains("no renegotiation"), "{err}");
        // The server never started a second handshake. It then hears the client's fatal
        // alert, which ends the connection as a protocol error, not a crash.
        assert_eq!(s.handshakes, 1);
        if let Some(server_err) = &s.error {
            assert_eq!(server_err.kind(), TlsErrorKind::Protocol);
            assert!(server_err.to_string().contains("alert"), "{server_err}");
        }
    }

    fn assert_connected_server(s: &Peer) {
        assert!(s.error.is_none(), "server error: {:?}", s.error);
        assert!(s.engine.is_handshake_done());
        assert_eq!(s.handshakes, 1);
    }

    #[test]
    fn server_initiated_renegotiation_is_refused() {
        let client = client_ctx(|b| b.verify_peer(false));
        let mut c = Peer::new(TlsEngine::client(&client, "localhost").unwrap());
        let mut raw = raw_tls12(true);
        let mut raw_plain = Vec::new();
        for _ in 0..20 {
            let moved = engine_to_raw(&mut c, &mut raw) | raw_to_engine(&mut raw, &mut c);
            match raw.do_handshake() {
                Ok(()) => {}
                Err(err) => assert!(is_want(&err), "handshake: {err}"),
            }
            if !moved {
                break;
            }
        }
        assert!(c.error.is_none(), "{:?}", c.error);
        assert!(c.engine.is_handshake_done());

        request_renegotiation(raw.ssl());
        let _ = raw.do_handshake(); // sends HelloRequest
        let mut raw_result = Ok(());
        for _ in 0..20 {
            let moved = raw_to_engine(&mut raw, &mut c) | engine_to_raw(&mut c, &mut raw);
            if raw_result.is_ok() {
                raw_result = drive_raw(&mut raw, &mut raw_plain);
            }
            if !moved {
                break;
            }
        }
        // Our client refused the HelloRequest with a no_renegotiation alert (the raw server
        // reports exactly that) and never started a second handshake.
        let raw_err = raw_result.expect_err("the raw server learns renegotiation was refused");
        assert!(
            raw_err.to_string().contains("no renegotiation"),
            "{raw_err}"
        );
        assert_eq!(c.handshakes, 1);
        // The raw server then aborts with a fatal alert, which our client reports cleanly.
        if let Some(err) = &c.error {
            assert_eq!(err.kind(), TlsErrorKind::Protocol);
            assert!(err.to_string().contains("alert"), "{err}");
        }
    }
}

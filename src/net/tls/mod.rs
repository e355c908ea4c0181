//! TLS for uvhttp sockets: a sans-IO engine over OpenSSL.
//!
//! * [`TlsContext`] — shared configuration, built once with [`TlsContext::server`] or
//!   [`TlsContext::client`] (certificates, CAs, ALPN, SNI certificates, client verification,
//!   session resumption). Modern defaults: TLS 1.2 minimum, ECDHE+AEAD suites, renegotiation
//!   refused.
//! * [`TlsEngine`] — one connection. It never performs I/O: the socket owner feeds it the
//!   ciphertext it read, takes plaintext out with [`TlsEngine::read`], encrypts with
//!   [`TlsEngine::write`], and sends what [`TlsEngine::take_output`] hands back. Timeouts and
//!   socket lifetime stay with the owner.
//! * [`ThrowawayPki`] — a CA and certificates generated at run time for tests and local
//!   bring-up, so no key is ever committed.
//! * [`SslManager`] — icey-style shortcuts for development contexts that do not verify peers.
//!
//! Driving an engine from a stream socket:
//!
//! ```text
//! on bytes read:     engine.feed(bytes); status = engine.read(&mut plain)?;
//!                    send(engine.take_output()); deliver(plain);
//!                    if status.handshake_completed { cancel handshake timer }
//!                    if status.peer_closed { treat as clean EOF }
//! on app write:      engine.write(data)?; send(engine.take_output());
//! on close:          engine.shutdown(); send(engine.take_output()); close after the write
//! on Err(e):         send(engine.take_output()) (it may carry an alert); close; report e
//! ```

mod context;
mod engine;
mod throwaway;

pub use context::{
    ClientContextBuilder, ClientVerify, ServerContextBuilder, SslManager, TlsContext, TlsError,
    TlsErrorKind, TlsVersion,
};
pub use engine::{ReadStatus, TlsEngine};
pub use throwaway::{IssuedCertificate, ThrowawayPaths, ThrowawayPki};

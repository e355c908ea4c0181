//! Server limits and timeouts, with defaults chosen for a public-facing server.

use std::time::Duration;

/// What to do with a new connection when `max_connections` are open.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OverLimit {
    /// Accept it, answer `503 Service Unavailable` with `Connection: close`, and close.
    Reject503,
    /// Leave it in the kernel's accept queue until a connection closes.
    PauseAccepting,
}

/// Server settings. Change them with [`crate::http::Server::configure`] before `start()`.
#[derive(Debug, Clone)]
pub struct ServerOptions {
    /// Longest request line (method, target, version) before `414 URI Too Long`.
    pub max_request_line: usize,
    /// Largest request head (request line and all fields) before `431`.
    pub max_head_size: usize,
    /// Most header fields in a request before `431` (at most 256).
    pub max_headers: usize,
    /// Largest request body before `413 Content Too Large` (decided from Content-Length before
    /// any body byte is read; counted as it arrives for chunked bodies).
    pub max_body_size: u64,
    /// Longest chunk-size line (size plus extensions) in a chunked body.
    pub max_chunk_line: usize,
    /// Largest trailer section of a chunked body.
    pub max_trailer_size: usize,
    /// Most connections served at once; see `over_limit`.
    pub max_connections: usize,
    /// What happens to connections past `max_connections`.
    pub over_limit: OverLimit,
    /// Most requests a connection may have outstanding (received, not yet answered) before the
    /// server stops reading from it.
    pub max_pipelined: usize,
    /// Bytes queued for a connection above which `send` reports backpressure.
    pub write_high_water_mark: usize,
    /// Time allowed to receive a request head, from its first byte (or from accepting the
    /// connection, for the first request): the slowloris guard. Answered with `408`.
    pub header_timeout: Duration,
    /// Time an idle keep-alive connection is kept open between requests.
    pub idle_timeout: Duration,
    /// Time allowed between two reads of a request body before `408` and close.
    pub body_timeout: Duration,
    /// Time a connection may go without the peer accepting any queued response bytes before it
    /// is cut off (a client that stopped reading).
    pub write_timeout: Duration,
    /// Time allowed for a TLS handshake before the connection is dropped.
    pub tls_handshake_timeout: Duration,
    /// How long a closing connection waits for the peer's FIN after ours.
    pub linger_timeout: Duration,
    /// How long `stop()` lets in-flight responses finish before closing what is left.
    pub stop_timeout: Duration,
    /// The listen backlog.
    pub backlog: i32,
    /// Disable Nagle's algorithm on accepted connections (TCP_NODELAY), so small writes are
    /// never held back waiting for the client's ACK. It is set before the first response that
    /// streams or keeps the connection open; a connection whose only response has a known
    /// length and closes it never needs it (the close pushes the last bytes out), and is
    /// spared the system call.
    pub tcp_nodelay: bool,
    /// Bind with `UV_TCP_REUSEPORT` (several loops on one port, where the OS supports it).
    pub reuse_port: bool,
    /// Hand connections to the server only once their client sent something (Linux:
    /// `TCP_DEFER_ACCEPT`, like nginx's `listen ... deferred`; ignored elsewhere). Accepting
    /// and reading the first request then take one wakeup, which makes short connections
    /// markedly cheaper. HTTP clients always speak first; a client that connects and sends
    /// nothing is not seen (nor timed out) by the server until it does, or until the kernel
    /// gives up waiting (about a second, then it is accepted as usual). Off by default.
    pub defer_accept: bool,
    /// Most connections taken from the listening socket per wakeup. libuv hands over one
    /// connection per readiness event and polls again; above 1 the server takes up to this
    /// many from the kernel's queue in the same turn (as nginx's `multi_accept`), saving a
    /// poll per connection when connections arrive fast. The cap keeps a burst of new
    /// connections from delaying the established ones for long. Unix only (elsewhere one per
    /// wakeup); 1 keeps libuv's pace.
    pub accept_batch: usize,
}

impl Default for ServerOptions {
    fn default() -> Self {
        ServerOptions {
            max_request_line: 8 * 1024,
            max_head_size: 16 * 1024,
            max_headers: 100,
            max_body_size: 64 * 1024 * 1024,
            max_chunk_line: 4096,
            max_trailer_size: 16 * 1024,
            max_connections: 10_000,
            over_limit: OverLimit::Reject503,
            max_pipelined: 16,
            write_high_water_mark: 1024 * 1024,
            header_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(60),
            body_timeout: Duration::from_secs(30),
            write_timeout: Duration::from_secs(30),
            linger_timeout: Duration::from_secs(2),
            tls_handshake_timeout: Duration::from_secs(10),
            stop_timeout: Duration::from_secs(5),
            backlog: 511,
            tcp_nodelay: true,
            reuse_port: false,
            defer_accept: false,
            accept_batch: 16,
        }
    }
}

impl ServerOptions {
    /// The sweep interval that keeps every timeout accurate to about a quarter of the shortest.
    pub(crate) fn tick(&self) -> Duration {
        let shortest = [
            self.header_timeout,
            self.idle_timeout,
            self.body_timeout,
            self.write_timeout,
            self.linger_timeout,
            self.tls_handshake_timeout,
        ]
        .into_iter()
        .min()
        .unwrap_or(Duration::from_secs(1));
        (shortest / 4).clamp(Duration::from_millis(5), Duration::from_millis(1000))
    }
}

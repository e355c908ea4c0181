//! Server side: validating the upgrade request, the `101` response, and the adapter that
//! replaces HTTP on the connection.

use std::rc::Rc;
use std::time::Duration;

use super::deflate::{self, DeflateConfig};
use super::handshake::{self, Extension};
use super::protocol::{Config, Role};
use super::websocket::{Transport, WebSocket};
use crate::http::{
    ConnectionAdapter, Method, ServerConnection, StatusCode, UpgradedConnection, Version,
};
use crate::uv::UvError;

/// What a server accepts in the handshake.
#[derive(Clone, Debug)]
pub struct AcceptOptions {
    /// Subprotocols this server speaks, in order of preference. The first one the client
    /// also offered is chosen; with no overlap, none is (the client decides whether to stay).
    pub protocols: Vec<String>,
    /// permessage-deflate settings; `None` declines compression.
    pub deflate: Option<DeflateConfig>,
    /// Largest message accepted (larger ones close with 1009).
    pub max_message_size: usize,
    /// Send a ping after this long without hearing from the client, and close (1001) if the
    /// next interval passes without an answer. `None` disables it.
    pub ping_interval: Option<Duration>,
}

impl Default for AcceptOptions {
    fn default() -> Self {
        AcceptOptions {
            protocols: Vec::new(),
            deflate: Some(DeflateConfig::default()),
            max_message_size: 64 << 20,
            ping_interval: None,
        }
    }
}

/// Why an upgrade was refused. The HTTP answer (400 or 426) has been sent already.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HandshakeError {
    /// The status sent to the client.
    pub status: StatusCode,
    /// What was wrong.
    pub reason: &'static str,
}

impl std::fmt::Display for HandshakeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "WebSocket handshake refused ({}): {}",
            self.status, self.reason
        )
    }
}

impl std::error::Error for HandshakeError {}

/// True if the request asks for a WebSocket upgrade (`Upgrade: websocket`).
pub fn is_websocket_request(conn: &ServerConnection) -> bool {
    let req = conn.request();
    req.headers().has_token("upgrade", "websocket")
}

/// Validates the upgrade request, answers `101 Switching Protocols` and replaces the
/// connection's adapter with the WebSocket framer. Call it from the `connection` handler
/// (after any checks of your own, e.g. answer 403 yourself for a bad `Origin`).
///
/// Refusals are answered here: `426` with `Sec-WebSocket-Version: 13` for another version,
/// `400` for anything else malformed.
pub fn accept(
    conn: &ServerConnection,
    options: &AcceptOptions,
) -> Result<Rc<WebSocket>, HandshakeError> {
    let refuse = |status: StatusCode, reason: &'static str| {
        if status == StatusCode::UPGRADE_REQUIRED {
            conn.response().set("Sec-WebSocket-Version", "13");
        }
        conn.response().set_keep_alive(false);
        let _ = conn.respond(status, "text/plain", format!("{reason}\n").as_bytes());
        Err(HandshakeError { status, reason })
    };
    let (key, protocols, extensions) = {
        let req = conn.request();
        if req.method() != Method::Get {
            return refuse(StatusCode::BAD_REQUEST, "WebSocket upgrade must use GET");
        }
        if req.version() != Version::Http11 {
            return refuse(StatusCode::BAD_REQUEST, "WebSocket upgrade needs HTTP/1.1");
        }
        // RFC 6455 4.1: the handshake is a GET without a body. With one, the bytes after the
        // head are that body, not frames: refuse rather than guess where frames begin.
        if req.content_length().unwrap_or(0) > 0 || req.is_chunked() {
            return refuse(
                StatusCode::BAD_REQUEST,
                "a WebSocket upgrade request must not have a body",
            );
        }
        let h = req.headers();
        if !h.has_token("upgrade", "websocket") {
            return refuse(StatusCode::BAD_REQUEST, "missing Upgrade: websocket");
        }
        if !h.has_token("connection", "upgrade") {
            return refuse(StatusCode::BAD_REQUEST, "missing Connection: upgrade");
        }
        if h.get("sec-websocket-version").map(str::trim) != Some("13") {
            return refuse(
                StatusCode::UPGRADE_REQUIRED,
                "only WebSocket version 13 is supported",
            );
        }
        let key = match h.get("sec-websocket-key").map(str::trim) {
            Some(k) if handshake::validate_client_key(k) => k.to_string(),
            _ => return refuse(StatusCode::BAD_REQUEST, "invalid Sec-WebSocket-Key"),
        };
        let protocols: Vec<String> = h
            .get_all("sec-websocket-protocol")
            .filter_map(|v| handshake::parse_protocols(v).ok())
            .flatten()
            .map(str::to_string)
            .collect();
        let mut extensions: Vec<Extension> = Vec::new();
        for v in h.get_all("sec-websocket-extensions") {
            match handshake::parse_extensions(v) {
                Ok(mut e) => extensions.append(&mut e),
                Err(_) => {
                    return refuse(
                        StatusCode::BAD_REQUEST,
                        "malformed Sec-WebSocket-Extensions",
                    )
                }
            }
        }
        (key, protocols, extensions)
    };

    let chosen = options
        .protocols
        .iter()
        .find(|p| protocols.iter().any(|o| o == *p))
        .cloned();
    let negotiated = options
        .deflate
        .as_ref()
        .and_then(|cfg| deflate::negotiate_server(&extensions, cfg));

    let resp = conn.response();
    resp.set_status(StatusCode::SWITCHING_PROTOCOLS);
    resp.set("Upgrade", "websocket");
    resp.set("Connection", "Upgrade");
    resp.set("Sec-WebSocket-Accept", &handshake::accept_key(&key));
    if let Some(p) = &chosen {
        resp.set("Sec-WebSocket-Protocol", p);
    }
    let mut config = Config {
        max_message_size: options.max_message_size,
        max_frame_size: options.max_message_size,
        ..Config::default()
    };
    if let Some((params, ext)) = negotiated {
        resp.set(
            "Sec-WebSocket-Extensions",
            &handshake::format_extensions(&[ext]),
        );
        config.deflate = Some(params);
    }
    let ws = WebSocket::new(Role::Server, config, chosen);
    if let Some(i) = options.ping_interval {
        ws.set_ping_interval_ms(i.as_millis() as u64);
    }
    let adapter = Box::new(ServerAdapter { ws: ws.clone() });
    if conn.replace_adapter(adapter).is_err() || conn.send_header().is_err() {
        return Err(HandshakeError {
            status: StatusCode::SWITCHING_PROTOCOLS,
            reason: "the connection closed during the handshake",
        });
    }
    Ok(ws)
}

/// Plugs a [`WebSocket`] into a server connection's adapter slot.
struct ServerAdapter {
    ws: Rc<WebSocket>,
}

impl ConnectionAdapter for ServerAdapter {
    fn on_upgrade(&mut self, conn: UpgradedConnection) {
        self.ws.set_transport(Transport::Server(conn));
    }
    fn on_data(&mut self, data: &[u8]) {
        self.ws.on_bytes(data);
    }
    fn on_eof(&mut self) {
        self.ws.on_eof();
    }
    fn on_drain(&mut self) {
        self.ws.on_drain();
    }
    fn on_server_stop(&mut self) {
        if self.ws.is_open() {
            let _ = self
                .ws
                .shutdown(super::CloseCode::GoingAway.as_u16(), "server shutting down");
        }
    }
    fn on_tick(&mut self, now_ms: u64) {
        self.ws.on_tick(now_ms);
    }
    fn on_close(&mut self, _err: Option<&UvError>) {
        self.ws.on_transport_closed();
    }
}

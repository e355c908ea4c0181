//! WebSocket protocol core (RFC 6455, with RFC 7692 permessage-deflate), free of I/O.
//!
//! - [`protocol`]: the per-connection state machine ([`Protocol`]): bytes in, [`Event`]s
//!   out; messages in, bytes out. Validation, reassembly, automatic pong/close replies.
//! - [`frame`]: frame header parsing/encoding and masking.
//! - [`utf8`]: incremental UTF-8 validation for text split across frames and reads.
//! - [`close`]: close status codes and Close payloads.
//! - [`deflate`]: permessage-deflate negotiation and the compressor/decompressor.
//! - [`handshake`]: accept key, client key, `Sec-WebSocket-Protocol` and
//!   `Sec-WebSocket-Extensions` parsing/formatting for the HTTP upgrade.
//!
//! The socket I/O, timers (close handshake timeout, keep-alive pings) and the HTTP upgrade
//! itself belong to the connection adapter that drives a [`Protocol`].

pub mod close;
pub mod deflate;
pub mod frame;
pub mod handshake;
pub mod protocol;
pub mod utf8;

pub use close::CloseCode;
pub use deflate::{DeflateConfig, Params as DeflateParams};
pub use handshake::Extension;
pub use protocol::{
    Config, Event, MessageKind, Protocol, ProtocolError, Role, SendError, Sender, State,
};

mod client;
mod server;
mod websocket;

pub use client::{connect, ClientOptions};
pub use server::{accept, is_websocket_request, AcceptOptions, HandshakeError};
pub use websocket::{
    CloseSignal, ControlSignal, MessageSignal, SocketSignal, WebSocket, WsSendError,
};

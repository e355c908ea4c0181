//! uvhttp — an embeddable, event-driven HTTP/1.1 and WebSocket server and client on a libuv
//! loop, with HTTPS/WSS over OpenSSL and an API shaped like the C++ icey library.
//!
//! Layers, data flowing down on read and up on write: [`uv`] (the loop and handles) →
//! [`net`] (TCP and TLS sockets) → [`http`] (parser, connections, server, client) → [`ws`]
//! (WebSocket). [`signal`] provides the icey-style signals the layers expose. See the
//! repository's README.md and ARCHITECTURE.md.
#![warn(missing_docs)]
pub mod http;
pub mod net;
pub mod signal;
pub mod uv;
pub mod ws;

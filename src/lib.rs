//! uvhttp — embeddable HTTP/1.1 and WebSocket server and client on a libuv loop.
pub mod http;
pub mod net;
pub mod signal;
pub mod uv;
pub mod ws;

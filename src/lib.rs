//! uvhttp — embeddable HTTP/1.1 and WebSocket server and client on a libuv loop.
pub mod signal;
pub mod uv;

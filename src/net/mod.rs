//! The network layer: TCP (and, later, TLS) sockets with output queues, pooled buffers and
//! graceful close, behind the [`Socket`] trait the HTTP layer uses.

pub(crate) mod pool;
mod socket;
mod tcp;
pub mod tls;
mod tls_socket;

pub use socket::{Socket, SocketHandler};
pub use tcp::{TcpListener, TcpSocket, DEFAULT_HIGH_WATER};
pub use tls_socket::TlsSocket;

//! HTTP/1.1: messages, parsing, the server connection and the server.
//!
//! Reading flows down this list, writing up it: `decode`/`body` turn bytes into a
//! [`Request`]; `conn` drives one connection; [`ServerConnection`] is what the application
//! answers through; `encode` turns the [`Response`] back into bytes.

mod adapter;
pub mod body;
mod bytes;
pub mod client;
mod conn;
mod date;
pub mod decode;
mod encode;
pub mod headers;
#[doc(hidden)]
pub mod in_memory;
pub mod method;
mod options;
mod remote;
pub mod request;
mod responder;
mod response;
pub mod response_head;
mod server;
mod server_connection;
pub mod sse;
pub mod status;
pub mod url;

pub use adapter::{ConnectionAdapter, UpgradedConnection};
pub use body::{BodyDecoder, BodyLimits, Step};
pub use client::{ClientConnection, ClientError, RequestRef, UpgradedSocket};
pub use date::format_imf_fixdate;
pub use decode::{BodyKind, HeadLimits, HeadParser, HttpError};
pub use headers::Headers;
pub use method::Method;
pub use options::{OverLimit, ServerOptions};
pub use remote::{LoopGone, RemoteConnection};
pub use request::{Request, TargetForm, Version};
pub use responder::{ServerConnectionFactory, ServerResponder};
pub use response::Response;
pub use response_head::ResponseHead;
pub use server::{Server, ServerError};
pub use server_connection::{
    Flow, PayloadSignal, RequestSignal, ResponseRef, SendError, ServerConnection,
    ServerConnectionPtr,
};
pub use status::StatusCode;
pub use url::{Url, UrlError};

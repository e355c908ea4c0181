//! icey's responder model: one object per request, created by a factory.

use super::server_connection::ServerConnection;

/// Handles one request, as icey's `ServerResponder`. Created per request by a
/// [`ServerConnectionFactory`]; dropped when the request's response is done.
///
/// Each method receives the request's connection handle; call [`ServerConnection::defer`] to
/// keep a handle and answer later.
pub trait ServerResponder {
    /// The request head arrived (`conn.request()` is complete; the body may follow).
    fn on_headers(&mut self, _conn: &ServerConnection) {}
    /// A chunk of the request body arrived (borrowed for the call only).
    fn on_payload(&mut self, _conn: &ServerConnection, _chunk: &[u8]) {}
    /// The whole request (head and body) has arrived.
    fn on_request(&mut self, conn: &ServerConnection);
    /// The connection closed before or after the response was finished.
    fn on_close(&mut self, _conn: &ServerConnection) {}
}

/// Creates a responder for each request, as icey's `ServerConnectionFactory`. Return `None` to
/// leave the request to the server's `connection` signal.
pub trait ServerConnectionFactory {
    /// Called at headers-complete, before the `connection` signal.
    fn create_responder(&self, conn: &ServerConnection) -> Option<Box<dyn ServerResponder>>;
}

impl<F> ServerConnectionFactory for F
where
    F: Fn(&ServerConnection) -> Option<Box<dyn ServerResponder>>,
{
    fn create_responder(&self, conn: &ServerConnection) -> Option<Box<dyn ServerResponder>> {
        self(conn)
    }
}

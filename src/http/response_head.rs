//! A received response head (RFC 9112 section 4), for the HTTP client.

use crate::http::decode::Framing;
use crate::http::headers::Headers;
use crate::http::request::Version;
use crate::http::status::StatusCode;

/// A response status line and its header fields, as received by a client.
///
/// Reusable: [`clear`](ResponseHead::clear) keeps the buffers' capacity.
/// Filled by [`HeadParser::parse_response`](crate::http::decode::HeadParser::parse_response).
/// The fields are public for convenience; the accessors are equivalent.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ResponseHead {
    /// HTTP version of the response.
    pub version: Version,
    /// The status code.
    pub status: StatusCode,
    /// The reason phrase as received (may be empty; carries no meaning).
    pub reason: String,
    /// The header fields.
    pub headers: Headers,
}

impl ResponseHead {
    /// An empty `HTTP/1.1 200` head with no fields.
    pub fn new() -> Self {
        ResponseHead::default()
    }

    /// Resets to `HTTP/1.1 200` with no reason and no fields, keeping capacity.
    pub fn clear(&mut self) {
        self.version = Version::Http11;
        self.status = StatusCode::OK;
        self.reason.clear();
        self.headers.clear();
    }

    /// The HTTP version.
    pub fn version(&self) -> Version {
        self.version
    }

    /// The status code.
    pub fn status(&self) -> StatusCode {
        self.status
    }

    /// The received reason phrase (possibly empty).
    pub fn reason(&self) -> &str {
        &self.reason
    }

    /// The header fields.
    pub fn headers(&self) -> &Headers {
        &self.headers
    }

    /// The header fields, mutable.
    pub fn headers_mut(&mut self) -> &mut Headers {
        &mut self.headers
    }

    /// The first value of header `name` as text (see [`Headers::get`]).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name)
    }

    /// `Content-Length` if present and valid.
    pub fn content_length(&self) -> Option<u64> {
        Framing::of(&self.headers).content_length()
    }

    /// Whether `Transfer-Encoding` ends with `chunked`.
    pub fn is_chunked(&self) -> bool {
        Framing::of(&self.headers).is_chunked()
    }

    /// Whether the server keeps the connection open (RFC 9112 9.3):
    /// HTTP/1.1 unless `Connection: close`, HTTP/1.0 only with
    /// `Connection: keep-alive`. A body delimited by close
    /// ([`BodyKind::UntilClose`](crate::http::decode::BodyKind::UntilClose)) ends
    /// the connection regardless.
    pub fn keep_alive(&self) -> bool {
        let close = self.headers.has_token("connection", "close");
        match self.version {
            Version::Http11 => !close,
            Version::Http10 => !close && self.headers.has_token("connection", "keep-alive"),
        }
    }

    /// Whether this is an accepted protocol upgrade: `101 Switching
    /// Protocols` whose `Connection` lists `upgrade`, with an `Upgrade`
    /// field (RFC 9110 7.8).
    pub fn is_upgrade(&self) -> bool {
        self.status == StatusCode::SWITCHING_PROTOCOLS
            && self.headers.has_token("connection", "upgrade")
            && self.headers.contains("upgrade")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accessors_and_clear() {
        let mut r = ResponseHead::new();
        r.version = Version::Http10;
        r.status = StatusCode::NOT_FOUND;
        r.reason.push_str("Nope");
        r.headers.append("Content-Length", "12");
        assert_eq!(r.version(), Version::Http10);
        assert_eq!(r.status(), StatusCode::NOT_FOUND);
        assert_eq!(r.reason(), "Nope");
        assert_eq!(r.header("content-length"), Some("12"));
        assert_eq!(r.content_length(), Some(12));
        assert!(!r.is_chunked());
        assert!(!r.keep_alive());
        r.clear();
        assert_eq!(r, ResponseHead::new());
        assert!(r.keep_alive());
    }

    #[test]
    fn upgrade_detection() {
        let mut r = ResponseHead::new();
        r.status = StatusCode::SWITCHING_PROTOCOLS;
        r.headers_mut().append("Upgrade", "websocket");
        assert!(!r.is_upgrade());
        r.headers_mut().append("Connection", "Upgrade");
        assert!(r.is_upgrade());
        r.status = StatusCode::OK;
        assert!(!r.is_upgrade());
    }
}

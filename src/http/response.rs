//! The response an application fills in before `send_header()`.

use super::headers::Headers;
use super::status::StatusCode;

/// Status, reason and header fields of a response, as icey's `http::Response`.
///
/// Framing fields are typed: `Content-Length`, `Transfer-Encoding: chunked` and `Connection`
/// set through [`Response::set`] are recognised and stored as such, so the library can frame the
/// body correctly. The library adds `Date`, the framing header it chose, and `Connection` when
/// needed.
#[derive(Debug, Clone)]
pub struct Response {
    status: StatusCode,
    reason: Option<String>,
    headers: Headers,
    content_length: Option<u64>,
    chunked: bool,
    keep_alive: Option<bool>,
}

impl Default for Response {
    fn default() -> Self {
        Self::new()
    }
}

impl Response {
    /// A `200 OK` response with no fields.
    pub fn new() -> Self {
        Response {
            status: StatusCode::OK,
            reason: None,
            headers: Headers::new(),
            content_length: None,
            chunked: false,
            keep_alive: None,
        }
    }

    /// Back to `200 OK` with no fields, keeping allocated capacity.
    pub fn reset(&mut self) {
        self.status = StatusCode::OK;
        self.reason = None;
        self.headers.clear();
        self.content_length = None;
        self.chunked = false;
        self.keep_alive = None;
    }

    /// The status code.
    pub fn status(&self) -> StatusCode {
        self.status
    }

    /// Sets the status code.
    pub fn set_status(&mut self, status: StatusCode) -> &mut Self {
        self.status = status;
        self
    }

    /// The reason phrase that will be sent (the canonical one unless overridden).
    pub fn reason(&self) -> &str {
        self.reason.as_deref().unwrap_or(self.status.reason())
    }

    /// True when [`Response::set_reason`] replaced the canonical phrase.
    pub(crate) fn has_custom_reason(&self) -> bool {
        self.reason.is_some()
    }

    /// Overrides the reason phrase. CR and LF are removed, so it cannot break the head.
    pub fn set_reason(&mut self, reason: &str) -> &mut Self {
        self.reason = Some(
            reason
                .chars()
                .filter(|c| *c != '\r' && *c != '\n')
                .collect(),
        );
        self
    }

    /// Sets `Content-Type`. CR, LF and NUL are removed (as from a reason phrase), so a value
    /// that came from elsewhere cannot break the head.
    pub fn set_content_type(&mut self, content_type: &str) -> &mut Self {
        if content_type.bytes().any(|b| matches!(b, b'\r' | b'\n' | 0)) {
            let clean: String = content_type
                .chars()
                .filter(|c| !matches!(c, '\r' | '\n' | '\0'))
                .collect();
            self.headers.set("Content-Type", &clean);
        } else {
            self.headers.set("Content-Type", content_type);
        }
        self
    }

    /// Sets `Content-Type` to a value known to hold no CR, LF or NUL (one the head cache
    /// matched), skipping the check `set_content_type` makes.
    pub(crate) fn set_clean_content_type(&mut self, content_type: &str) {
        self.headers.set("Content-Type", content_type);
    }

    /// True while nothing but the status was set since `new()` or `reset()`: `respond()` may
    /// then describe the whole response itself.
    pub(crate) fn is_untouched(&self) -> bool {
        self.headers.is_empty()
            && self.reason.is_none()
            && self.content_length.is_none()
            && !self.chunked
            && self.keep_alive.is_none()
    }

    /// Sets `Content-Length`: the body will be exactly this many bytes, and the response is
    /// complete once they are sent.
    pub fn set_content_length(&mut self, len: u64) -> &mut Self {
        self.content_length = Some(len);
        self.chunked = false;
        self
    }

    /// The declared body length, if any.
    pub fn content_length(&self) -> Option<u64> {
        self.content_length
    }

    /// Asks for `Transfer-Encoding: chunked` (a body of unknown length, ended by `complete()`).
    /// For HTTP/1.0 clients the body is delimited by closing the connection instead.
    pub fn set_chunked_transfer_encoding(&mut self, chunked: bool) -> &mut Self {
        self.chunked = chunked;
        if chunked {
            self.content_length = None;
        }
        self
    }

    /// True when chunked encoding was asked for.
    pub fn is_chunked_transfer_encoding(&self) -> bool {
        self.chunked
    }

    /// `false` closes the connection after this response (`Connection: close`); `true` keeps
    /// it open when the request allows it.
    pub fn set_keep_alive(&mut self, keep_alive: bool) -> &mut Self {
        self.keep_alive = Some(keep_alive);
        self
    }

    /// What the application asked for with [`Response::set_keep_alive`], if anything.
    pub fn keep_alive(&self) -> Option<bool> {
        self.keep_alive
    }

    /// Sets a field, replacing any with the same name. Framing fields (`Content-Length`,
    /// `Transfer-Encoding`, `Connection`) are interpreted rather than copied; values with CR, LF
    /// or NUL are rejected (returns false) so a header cannot be injected.
    pub fn set(&mut self, name: &str, value: &str) -> bool {
        if !self.framing_field(name, value) {
            if !valid_field(name, value) {
                return false;
            }
            self.headers.set(name, value);
        }
        true
    }

    /// Adds a field, keeping existing ones with the same name (e.g. `Set-Cookie`). Same rules
    /// as [`Response::set`].
    pub fn add(&mut self, name: &str, value: &str) -> bool {
        if !self.framing_field(name, value) {
            if !valid_field(name, value) {
                return false;
            }
            self.headers.append(name, value);
        }
        true
    }

    /// Removes a field.
    pub fn remove(&mut self, name: &str) -> bool {
        if name.eq_ignore_ascii_case("content-length") {
            return self.content_length.take().is_some();
        }
        self.headers.remove(name)
    }

    /// The first value of a field.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.headers.get(name)
    }

    /// True if a field is present.
    pub fn has(&self, name: &str) -> bool {
        self.headers.contains(name)
    }

    /// The fields the application set (framing fields excluded).
    pub fn headers(&self) -> &Headers {
        &self.headers
    }

    fn framing_field(&mut self, name: &str, value: &str) -> bool {
        if name.eq_ignore_ascii_case("content-length") {
            if let Ok(n) = value.trim().parse::<u64>() {
                self.set_content_length(n);
            }
            true
        } else if name.eq_ignore_ascii_case("transfer-encoding") {
            self.set_chunked_transfer_encoding(value.trim().eq_ignore_ascii_case("chunked"));
            true
        } else if name.eq_ignore_ascii_case("connection") {
            let v = value.trim();
            if v.eq_ignore_ascii_case("close") {
                self.keep_alive = Some(false);
            } else if v.eq_ignore_ascii_case("keep-alive") {
                self.keep_alive = Some(true);
            } else if super::method::is_token(v.as_bytes()) {
                // Other connection options (e.g. "upgrade") are passed through.
                self.headers.set(name, value);
            }
            true
        } else {
            false
        }
    }
}

fn valid_field(name: &str, value: &str) -> bool {
    super::method::is_token(name.as_bytes())
        && !value.bytes().any(|b| b == b'\r' || b == b'\n' || b == 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn framing_fields_are_typed() {
        let mut r = Response::new();
        r.set("Content-Length", "12");
        assert_eq!(r.content_length(), Some(12));
        assert!(!r.has("content-length"));
        r.set("transfer-encoding", "chunked");
        assert!(r.is_chunked_transfer_encoding());
        assert_eq!(r.content_length(), None);
        r.set("Connection", "close");
        assert_eq!(r.keep_alive(), Some(false));
    }

    #[test]
    fn header_injection_is_refused() {
        let mut r = Response::new();
        assert!(!r.set("X-A", "a\r\nSet-Cookie: x"));
        assert!(!r.set("Bad Name", "v"));
        assert!(r.set("X-A", "fine"));
        r.set_reason("Custom\r\nInjected");
        assert_eq!(r.reason(), "CustomInjected");
        // respond() passes its content type here: it cannot inject a field either.
        r.set_content_type("text/plain\r\nSet-Cookie: x=1");
        assert_eq!(r.get("content-type"), Some("text/plainSet-Cookie: x=1"));
    }
}

//! Request methods (RFC 9110 section 9).

use std::fmt;

/// A request method.
///
/// The methods RFC 9110 and RFC 5789 (PATCH) define get their own variant;
/// any other valid token is `Other`, and the original token is kept by the
/// [`Request`](crate::http::request::Request) that carries it
/// ([`Request::method_str`](crate::http::request::Request::method_str)).
/// Method names are case-sensitive (RFC 9110 9.1): `get` is `Other`.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug, Default)]
pub enum Method {
    /// GET.
    #[default]
    Get,
    /// HEAD.
    Head,
    /// POST.
    Post,
    /// PUT.
    Put,
    /// DELETE.
    Delete,
    /// CONNECT.
    Connect,
    /// OPTIONS.
    Options,
    /// TRACE.
    Trace,
    /// PATCH (RFC 5789).
    Patch,
    /// Any other method token; see `Request::method_str` for its text.
    Other,
}

impl Method {
    /// Classifies a method token (exact, case-sensitive match).
    /// Token validity is not checked here; the head parser does that.
    pub fn from_bytes(token: &[u8]) -> Method {
        match token {
            b"GET" => Method::Get,
            b"HEAD" => Method::Head,
            b"POST" => Method::Post,
            b"PUT" => Method::Put,
            b"DELETE" => Method::Delete,
            b"CONNECT" => Method::Connect,
            b"OPTIONS" => Method::Options,
            b"TRACE" => Method::Trace,
            b"PATCH" => Method::Patch,
            _ => Method::Other,
        }
    }

    /// Same as [`Method::from_bytes`] for a `&str`.
    pub fn from_token(token: &str) -> Method {
        Method::from_bytes(token.as_bytes())
    }

    /// The method's token ("GET"), or `""` for `Other`, whose text only the
    /// request knows.
    pub const fn as_str(&self) -> &'static str {
        match self {
            Method::Get => "GET",
            Method::Head => "HEAD",
            Method::Post => "POST",
            Method::Put => "PUT",
            Method::Delete => "DELETE",
            Method::Connect => "CONNECT",
            Method::Options => "OPTIONS",
            Method::Trace => "TRACE",
            Method::Patch => "PATCH",
            Method::Other => "",
        }
    }

    /// Safe methods (RFC 9110 9.2.1): GET, HEAD, OPTIONS, TRACE.
    pub const fn is_safe(&self) -> bool {
        matches!(
            self,
            Method::Get | Method::Head | Method::Options | Method::Trace
        )
    }

    /// Idempotent methods (RFC 9110 9.2.2): the safe ones plus PUT and DELETE.
    /// A client may retry these automatically after a connection failure.
    pub const fn is_idempotent(&self) -> bool {
        self.is_safe() || matches!(self, Method::Put | Method::Delete)
    }
}

impl fmt::Display for Method {
    /// The token; `Other` prints as "OTHER" because its text is not stored here.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Method::Other => f.write_str("OTHER"),
            m => f.write_str(m.as_str()),
        }
    }
}

/// Whether `b` is a `tchar` (RFC 9110 5.6.2), the characters of a token.
pub(crate) const fn is_tchar(b: u8) -> bool {
    matches!(b,
        b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9'
        | b'!' | b'#' | b'$' | b'%' | b'&' | b'\'' | b'*' | b'+'
        | b'-' | b'.' | b'^' | b'_' | b'`' | b'|' | b'~')
}

/// Whether `s` is a non-empty token (RFC 9110 5.6.2): valid method names and
/// field names.
pub fn is_token(s: &[u8]) -> bool {
    !s.is_empty() && s.iter().all(|&b| is_tchar(b))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_methods_round_trip() {
        for m in [
            Method::Get,
            Method::Head,
            Method::Post,
            Method::Put,
            Method::Delete,
            Method::Connect,
            Method::Options,
            Method::Trace,
            Method::Patch,
        ] {
            assert_eq!(Method::from_token(m.as_str()), m);
            assert_eq!(m.to_string(), m.as_str());
        }
    }

    #[test]
    fn methods_are_case_sensitive_and_unknown_is_other() {
        assert_eq!(Method::from_token("get"), Method::Other);
        assert_eq!(Method::from_token("PROPFIND"), Method::Other);
        assert_eq!(Method::from_bytes(b""), Method::Other);
        assert_eq!(Method::Other.as_str(), "");
        assert_eq!(Method::Other.to_string(), "OTHER");
    }

    #[test]
    fn safety_and_idempotence() {
        assert!(Method::Get.is_safe() && Method::Get.is_idempotent());
        assert!(!Method::Put.is_safe() && Method::Put.is_idempotent());
        assert!(!Method::Post.is_idempotent());
        assert!(!Method::Patch.is_idempotent());
        assert!(!Method::Other.is_safe());
    }

    #[test]
    fn token_check() {
        assert!(is_token(b"X-Custom_Header.1~"));
        assert!(!is_token(b""));
        assert!(!is_token(b"a b"));
        assert!(!is_token(b"a:b"));
        assert!(!is_token(b"caf\xc3\xa9"));
    }
}

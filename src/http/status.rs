//! HTTP status codes (RFC 9110 section 15) with their canonical reason phrases.

use std::fmt;

/// A three-digit HTTP status code (100..=999).
///
/// The registered codes are available as associated constants
/// (`StatusCode::OK`, `StatusCode::NOT_FOUND`, ...). Unregistered codes in
/// range can be made with [`StatusCode::from_u16`]; they have an empty
/// [`reason`](StatusCode::reason).
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug, PartialOrd, Ord)]
pub struct StatusCode(u16);

/// Declares the registered codes once so the constants and the reason table
/// cannot drift apart.
macro_rules! status_codes {
    ($( $(#[$doc:meta])* ($num:expr, $name:ident, $phrase:expr); )+) => {
        impl StatusCode {
            $(
                $(#[$doc])*
                pub const $name: StatusCode = StatusCode($num);
            )+

            /// The canonical reason phrase ("Not Found"), or `""` for a code
            /// that RFC 9110 (plus 429, 431, 451) does not define.
            pub fn reason(&self) -> &'static str {
                match self.0 {
                    $( $num => $phrase, )+
                    _ => "",
                }
            }

            /// The whole HTTP/1.1 status line with its CRLF, for a registered code: one copy
            /// per response head instead of assembling it.
            pub(crate) fn status_line(&self) -> Option<&'static [u8]> {
                match self.0 {
                    $( $num => Some(concat!("HTTP/1.1 ", stringify!($num), " ", $phrase, "\r\n").as_bytes()), )+
                    _ => None,
                }
            }
        }
    };
}

status_codes! {
    /// 100 Continue (RFC 9110 15.2.1).
    (100, CONTINUE, "Continue");
    /// 101 Switching Protocols (RFC 9110 15.2.2).
    (101, SWITCHING_PROTOCOLS, "Switching Protocols");
    /// 200 OK (RFC 9110 15.3.1).
    (200, OK, "OK");
    /// 201 Created (RFC 9110 15.3.2).
    (201, CREATED, "Created");
    /// 202 Accepted (RFC 9110 15.3.3).
    (202, ACCEPTED, "Accepted");
    /// 203 Non-Authoritative Information (RFC 9110 15.3.4).
    (203, NON_AUTHORITATIVE_INFORMATION, "Non-Authoritative Information");
    /// 204 No Content (RFC 9110 15.3.5).
    (204, NO_CONTENT, "No Content");
    /// 205 Reset Content (RFC 9110 15.3.6).
    (205, RESET_CONTENT, "Reset Content");
    /// 206 Partial Content (RFC 9110 15.3.7).
    (206, PARTIAL_CONTENT, "Partial Content");
    /// 300 Multiple Choices (RFC 9110 15.4.1).
    (300, MULTIPLE_CHOICES, "Multiple Choices");
    /// 301 Moved Permanently (RFC 9110 15.4.2).
    (301, MOVED_PERMANENTLY, "Moved Permanently");
    /// 302 Found (RFC 9110 15.4.3).
    (302, FOUND, "Found");
    /// 303 See Other (RFC 9110 15.4.4).
    (303, SEE_OTHER, "See Other");
    /// 304 Not Modified (RFC 9110 15.4.5).
    (304, NOT_MODIFIED, "Not Modified");
    /// 305 Use Proxy (RFC 9110 15.4.6, deprecated).
    (305, USE_PROXY, "Use Proxy");
    /// 307 Temporary Redirect (RFC 9110 15.4.8).
    (307, TEMPORARY_REDIRECT, "Temporary Redirect");
    /// 308 Permanent Redirect (RFC 9110 15.4.9).
    (308, PERMANENT_REDIRECT, "Permanent Redirect");
    /// 400 Bad Request (RFC 9110 15.5.1).
    (400, BAD_REQUEST, "Bad Request");
    /// 401 Unauthorized (RFC 9110 15.5.2).
    (401, UNAUTHORIZED, "Unauthorized");
    /// 402 Payment Required (RFC 9110 15.5.3).
    (402, PAYMENT_REQUIRED, "Payment Required");
    /// 403 Forbidden (RFC 9110 15.5.4).
    (403, FORBIDDEN, "Forbidden");
    /// 404 Not Found (RFC 9110 15.5.5).
    (404, NOT_FOUND, "Not Found");
    /// 405 Method Not Allowed (RFC 9110 15.5.6).
    (405, METHOD_NOT_ALLOWED, "Method Not Allowed");
    /// 406 Not Acceptable (RFC 9110 15.5.7).
    (406, NOT_ACCEPTABLE, "Not Acceptable");
    /// 407 Proxy Authentication Required (RFC 9110 15.5.8).
    (407, PROXY_AUTHENTICATION_REQUIRED, "Proxy Authentication Required");
    /// 408 Request Timeout (RFC 9110 15.5.9).
    (408, REQUEST_TIMEOUT, "Request Timeout");
    /// 409 Conflict (RFC 9110 15.5.10).
    (409, CONFLICT, "Conflict");
    /// 410 Gone (RFC 9110 15.5.11).
    (410, GONE, "Gone");
    /// 411 Length Required (RFC 9110 15.5.12).
    (411, LENGTH_REQUIRED, "Length Required");
    /// 412 Precondition Failed (RFC 9110 15.5.13).
    (412, PRECONDITION_FAILED, "Precondition Failed");
    /// 413 Content Too Large (RFC 9110 15.5.14; formerly "Payload Too Large").
    (413, PAYLOAD_TOO_LARGE, "Content Too Large");
    /// 414 URI Too Long (RFC 9110 15.5.15).
    (414, URI_TOO_LONG, "URI Too Long");
    /// 415 Unsupported Media Type (RFC 9110 15.5.16).
    (415, UNSUPPORTED_MEDIA_TYPE, "Unsupported Media Type");
    /// 416 Range Not Satisfiable (RFC 9110 15.5.17).
    (416, RANGE_NOT_SATISFIABLE, "Range Not Satisfiable");
    /// 417 Expectation Failed (RFC 9110 15.5.18).
    (417, EXPECTATION_FAILED, "Expectation Failed");
    /// 421 Misdirected Request (RFC 9110 15.5.20).
    (421, MISDIRECTED_REQUEST, "Misdirected Request");
    /// 422 Unprocessable Content (RFC 9110 15.5.21).
    (422, UNPROCESSABLE_CONTENT, "Unprocessable Content");
    /// 426 Upgrade Required (RFC 9110 15.5.22).
    (426, UPGRADE_REQUIRED, "Upgrade Required");
    /// 429 Too Many Requests (RFC 6585 section 4).
    (429, TOO_MANY_REQUESTS, "Too Many Requests");
    /// 431 Request Header Fields Too Large (RFC 6585 section 5).
    (431, REQUEST_HEADER_FIELDS_TOO_LARGE, "Request Header Fields Too Large");
    /// 451 Unavailable For Legal Reasons (RFC 7725).
    (451, UNAVAILABLE_FOR_LEGAL_REASONS, "Unavailable For Legal Reasons");
    /// 500 Internal Server Error (RFC 9110 15.6.1).
    (500, INTERNAL_SERVER_ERROR, "Internal Server Error");
    /// 501 Not Implemented (RFC 9110 15.6.2).
    (501, NOT_IMPLEMENTED, "Not Implemented");
    /// 502 Bad Gateway (RFC 9110 15.6.3).
    (502, BAD_GATEWAY, "Bad Gateway");
    /// 503 Service Unavailable (RFC 9110 15.6.4).
    (503, SERVICE_UNAVAILABLE, "Service Unavailable");
    /// 504 Gateway Timeout (RFC 9110 15.6.5).
    (504, GATEWAY_TIMEOUT, "Gateway Timeout");
    /// 505 HTTP Version Not Supported (RFC 9110 15.6.6).
    (505, HTTP_VERSION_NOT_SUPPORTED, "HTTP Version Not Supported");
}

impl StatusCode {
    /// Alias of [`StatusCode::PAYLOAD_TOO_LARGE`] under its RFC 9110 name.
    pub const CONTENT_TOO_LARGE: StatusCode = StatusCode(413);

    /// Makes a status code from its number; `None` outside 100..=999, the
    /// range a three-digit status-code can express (RFC 9110 15).
    pub const fn from_u16(n: u16) -> Option<StatusCode> {
        if n >= 100 && n <= 999 {
            Some(StatusCode(n))
        } else {
            None
        }
    }

    /// The numeric value, e.g. `404`.
    pub const fn as_u16(&self) -> u16 {
        self.0
    }

    /// 1xx: an interim response; a final one follows.
    pub const fn is_informational(&self) -> bool {
        self.0 >= 100 && self.0 < 200
    }

    /// 2xx.
    pub const fn is_success(&self) -> bool {
        self.0 >= 200 && self.0 < 300
    }

    /// 3xx.
    pub const fn is_redirection(&self) -> bool {
        self.0 >= 300 && self.0 < 400
    }

    /// 4xx.
    pub const fn is_client_error(&self) -> bool {
        self.0 >= 400 && self.0 < 500
    }

    /// 5xx.
    pub const fn is_server_error(&self) -> bool {
        self.0 >= 500 && self.0 < 600
    }

    /// Whether a response with this status may carry content: false for 1xx,
    /// 204 and 304, which never have a body (RFC 9112 6.3 rule 1).
    pub const fn allows_body(&self) -> bool {
        !(self.is_informational() || self.0 == 204 || self.0 == 304)
    }
}

impl Default for StatusCode {
    /// `200 OK`.
    fn default() -> Self {
        StatusCode::OK
    }
}

impl fmt::Display for StatusCode {
    /// "404 Not Found"; just "599" for a code without a known phrase.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let reason = self.reason();
        if reason.is_empty() {
            write!(f, "{}", self.0)
        } else {
            write!(f, "{} {}", self.0, reason)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn from_u16_accepts_only_three_digit_codes() {
        assert_eq!(StatusCode::from_u16(99), None);
        assert_eq!(StatusCode::from_u16(0), None);
        assert_eq!(StatusCode::from_u16(1000), None);
        assert_eq!(StatusCode::from_u16(100), Some(StatusCode::CONTINUE));
        assert_eq!(StatusCode::from_u16(999).map(|s| s.as_u16()), Some(999));
    }

    #[test]
    fn reasons_are_canonical() {
        assert_eq!(StatusCode::OK.reason(), "OK");
        assert_eq!(StatusCode::NOT_FOUND.reason(), "Not Found");
        assert_eq!(StatusCode::PAYLOAD_TOO_LARGE.reason(), "Content Too Large");
        assert_eq!(
            StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE.reason(),
            "Request Header Fields Too Large"
        );
        assert_eq!(StatusCode::TOO_MANY_REQUESTS.as_u16(), 429);
        assert_eq!(StatusCode::UNAVAILABLE_FOR_LEGAL_REASONS.as_u16(), 451);
        assert_eq!(StatusCode::from_u16(299).unwrap().reason(), "");
        assert_eq!(StatusCode::CONTENT_TOO_LARGE, StatusCode::PAYLOAD_TOO_LARGE);
    }

    #[test]
    fn every_known_code_in_range_has_a_phrase_and_classes_are_disjoint() {
        let mut known = 0;
        for n in 100..=999u16 {
            let s = StatusCode::from_u16(n).unwrap();
            if !s.reason().is_empty() {
                known += 1;
            }
            let classes = [
                s.is_informational(),
                s.is_success(),
                s.is_redirection(),
                s.is_client_error(),
                s.is_server_error(),
            ];
            assert!(classes.iter().filter(|c| **c).count() <= 1);
        }
        assert_eq!(known, 47);
    }

    #[test]
    fn allows_body_excludes_1xx_204_304() {
        assert!(!StatusCode::CONTINUE.allows_body());
        assert!(!StatusCode::SWITCHING_PROTOCOLS.allows_body());
        assert!(!StatusCode::NO_CONTENT.allows_body());
        assert!(!StatusCode::NOT_MODIFIED.allows_body());
        assert!(StatusCode::OK.allows_body());
        assert!(StatusCode::RESET_CONTENT.allows_body());
        assert!(StatusCode::NOT_FOUND.allows_body());
    }

    #[test]
    fn display_includes_phrase_when_known() {
        assert_eq!(StatusCode::NOT_FOUND.to_string(), "404 Not Found");
        assert_eq!(
            StatusCode::HTTP_VERSION_NOT_SUPPORTED.to_string(),
            "505 HTTP Version Not Supported"
        );
        assert_eq!(StatusCode::from_u16(599).unwrap().to_string(), "599");
    }
}

//! Close status codes and Close frame payloads (RFC 6455 sections 5.5.1 and 7.4).
//!
//! Which codes may appear on the wire: RFC 6455 section 7.4.1 defines 1000-1003 and
//! 1007-1011; the IANA "WebSocket Close Code Number Registry" adds 1012 (Service Restart),
//! 1013 (Try Again Later) and 1014 (Bad Gateway), which servers do send. 1004 is reserved,
//! 1005/1006/1015 are placeholders that MUST NOT be sent, 1016-2999 are reserved for future
//! protocol revisions, 3000-3999 are registered for libraries/frameworks and 4000-4999 are
//! private use. Autobahn|Testsuite cases 7.7.* (must be accepted: 1000-1003, 1007-1011,
//! 3000, 3999, 4000, 4999) and 7.9.* (must be rejected with 1002: 0, 999, 1004, 1005, 1006,
//! 1016, 1100, 2000, 2999) agree with this; they do not probe 1012-1014.

use std::fmt;

/// Longest Close reason: a control payload is at most 125 bytes, 2 of which hold the code.
pub const MAX_REASON_LEN: usize = 123;

/// A close status code.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum CloseCode {
    /// 1000: the purpose of the connection has been fulfilled.
    Normal,
    /// 1001: the endpoint is going away (server shutdown, page navigation).
    GoingAway,
    /// 1002: the peer violated the protocol.
    Protocol,
    /// 1003: the endpoint received a data type it cannot accept.
    Unsupported,
    /// 1007: a message's data was inconsistent with its type (e.g. text that is not UTF-8).
    InvalidPayload,
    /// 1008: a message violated the endpoint's policy.
    Policy,
    /// 1009: a message was too big to process.
    TooBig,
    /// 1010: (client) the server did not negotiate an extension the client requires.
    MandatoryExt,
    /// 1011: (server) an unexpected condition prevented fulfilling the request.
    InternalError,
    /// Any other numeric value (registered, application-defined or invalid).
    Other(u16),
}

impl CloseCode {
    /// The numeric value.
    pub fn as_u16(self) -> u16 {
        match self {
            CloseCode::Normal => 1000,
            CloseCode::GoingAway => 1001,
            CloseCode::Protocol => 1002,
            CloseCode::Unsupported => 1003,
            CloseCode::InvalidPayload => 1007,
            CloseCode::Policy => 1008,
            CloseCode::TooBig => 1009,
            CloseCode::MandatoryExt => 1010,
            CloseCode::InternalError => 1011,
            CloseCode::Other(code) => code,
        }
    }

    /// Whether this code may be sent in, and accepted from, a Close frame.
    pub fn is_valid_on_wire(self) -> bool {
        is_valid_on_wire(self.as_u16())
    }
}

impl From<u16> for CloseCode {
    fn from(code: u16) -> Self {
        match code {
            1000 => CloseCode::Normal,
            1001 => CloseCode::GoingAway,
            1002 => CloseCode::Protocol,
            1003 => CloseCode::Unsupported,
            1007 => CloseCode::InvalidPayload,
            1008 => CloseCode::Policy,
            1009 => CloseCode::TooBig,
            1010 => CloseCode::MandatoryExt,
            1011 => CloseCode::InternalError,
            other => CloseCode::Other(other),
        }
    }
}

impl From<CloseCode> for u16 {
    fn from(code: CloseCode) -> u16 {
        code.as_u16()
    }
}

impl fmt::Display for CloseCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.as_u16())
    }
}

/// Whether `code` may appear in a Close frame (see the module docs for the sources).
pub fn is_valid_on_wire(code: u16) -> bool {
    matches!(code, 1000..=1003 | 1007..=1014 | 3000..=4999)
}

/// Why a received Close payload is unacceptable, with the code to fail the connection with.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ClosePayloadError {
    /// 1002 for a malformed payload or a code that must not be sent, 1007 for a reason that
    /// is not UTF-8.
    pub code: CloseCode,
    /// What was wrong, for logs and the Close frame we answer with.
    pub reason: &'static str,
}

impl fmt::Display for ClosePayloadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({})", self.reason, self.code)
    }
}

impl std::error::Error for ClosePayloadError {}

/// Parses a received Close payload into its optional code and reason.
///
/// An empty payload means "no status code"; a 1-byte payload, an invalid code or a reason
/// that is not UTF-8 is an error.
pub fn parse_close_payload(payload: &[u8]) -> Result<(Option<u16>, &str), ClosePayloadError> {
    match payload {
        [] => Ok((None, "")),
        [_] => Err(ClosePayloadError {
            code: CloseCode::Protocol,
            reason: "close payload of 1 byte",
        }),
        [hi, lo, reason @ ..] => {
            let code = u16::from_be_bytes([*hi, *lo]);
            if !is_valid_on_wire(code) {
                return Err(ClosePayloadError {
                    code: CloseCode::Protocol,
                    reason: "invalid close code",
                });
            }
            let reason = std::str::from_utf8(reason).map_err(|_| ClosePayloadError {
                code: CloseCode::InvalidPayload,
                reason: "close reason is not UTF-8",
            })?;
            Ok((Some(code), reason))
        }
    }
}

/// Appends a Close payload (code then reason) to `out`. The caller checks the code with
/// [`is_valid_on_wire`] and the reason length against [`MAX_REASON_LEN`].
pub fn encode_close_payload(out: &mut Vec<u8>, code: u16, reason: &str) {
    out.extend_from_slice(&code.to_be_bytes());
    out.extend_from_slice(reason.as_bytes());
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn autobahn_7_7_valid_codes_are_accepted() {
        for code in [
            1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 3000, 3999, 4000, 4999,
        ] {
            assert!(is_valid_on_wire(code), "{code}");
            let payload = code.to_be_bytes();
            assert_eq!(parse_close_payload(&payload), Ok((Some(code), "")));
        }
    }

    #[test]
    fn autobahn_7_9_invalid_codes_are_rejected_with_1002() {
        for code in [
            0, 999, 1004, 1005, 1006, 1015, 1016, 1100, 2000, 2999, 5000, 65535,
        ] {
            assert!(!is_valid_on_wire(code), "{code}");
            let err = parse_close_payload(&code.to_be_bytes()).unwrap_err();
            assert_eq!(err.code, CloseCode::Protocol, "{code}");
        }
    }

    #[test]
    fn iana_registered_1012_to_1014_are_valid() {
        for code in 1012..=1014 {
            assert!(is_valid_on_wire(code));
        }
    }

    #[test]
    fn empty_and_one_byte_payloads() {
        assert_eq!(parse_close_payload(&[]), Ok((None, "")));
        assert_eq!(
            parse_close_payload(&[0x03]).unwrap_err().code,
            CloseCode::Protocol
        );
    }

    #[test]
    fn reason_must_be_utf8() {
        let mut payload = Vec::new();
        encode_close_payload(&mut payload, 1000, "bye µ");
        assert_eq!(parse_close_payload(&payload), Ok((Some(1000), "bye µ")));
        payload.extend_from_slice(b"\xCE\xBA\xE1\xBD\xB9\xCF\x83\xCE\xBC\xCE\xB5\xED\xA0\x80");
        assert_eq!(
            parse_close_payload(&payload).unwrap_err().code,
            CloseCode::InvalidPayload
        );
    }

    #[test]
    fn code_conversions_round_trip() {
        for value in 0..=5000u16 {
            let code = CloseCode::from(value);
            assert_eq!(code.as_u16(), value);
            assert_eq!(u16::from(code), value);
            assert_eq!(code.is_valid_on_wire(), is_valid_on_wire(value));
        }
        assert_eq!(CloseCode::from(1009), CloseCode::TooBig);
        assert_eq!(CloseCode::from(3001), CloseCode::Other(3001));
        assert_eq!(CloseCode::Normal.to_string(), "1000");
    }
}

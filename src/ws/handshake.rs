//! Opening-handshake helpers (RFC 6455 sections 4.1-4.2 and 9.1): the accept key, client
//! key generation and validation, and the `Sec-WebSocket-Protocol` /
//! `Sec-WebSocket-Extensions` header grammars.
//!
//! Everything here takes plain header values so it works with any request/response type;
//! the HTTP layer decides how to look the headers up (and joins repeated header lines).

use std::fmt;

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;
use sha1::{Digest, Sha1};

/// The GUID appended to the client key before hashing (RFC 6455 section 1.3).
pub const WEBSOCKET_GUID: &str = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";

/// The only protocol version this implementation speaks (`Sec-WebSocket-Version`).
pub const WEBSOCKET_VERSION: &str = "13";

/// The `Sec-WebSocket-Accept` value for a `Sec-WebSocket-Key`:
/// base64(SHA-1(key + GUID)).
pub fn accept_key(key: &str) -> String {
    let mut sha = Sha1::new();
    sha.update(key.as_bytes());
    sha.update(WEBSOCKET_GUID.as_bytes());
    BASE64.encode(sha.finalize())
}

/// Whether a `Sec-WebSocket-Key` is well formed: canonical base64 of exactly 16 bytes.
pub fn validate_client_key(key: &str) -> bool {
    // 16 bytes always encode to 24 characters; checking first keeps hostile input cheap.
    key.len() == 24 && matches!(BASE64.decode(key), Ok(bytes) if bytes.len() == 16)
}

/// A `Sec-WebSocket-Key` for a client request from 16 random bytes (the caller supplies
/// them from a CSPRNG; RFC 6455 section 4.1 requires a fresh nonce per connection).
pub fn generate_client_key(random16: [u8; 16]) -> String {
    BASE64.encode(random16)
}

/// Client side: whether the server's `Sec-WebSocket-Accept` matches the key we sent.
pub fn verify_accept(key: &str, accept_header: &str) -> bool {
    accept_key(key) == accept_header.trim_matches([' ', '\t'])
}

/// A malformed handshake header value.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HeaderError {
    /// What was wrong.
    pub reason: &'static str,
    /// Byte offset in the header value where parsing stopped.
    pub position: usize,
}

impl fmt::Display for HeaderError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} at byte {}", self.reason, self.position)
    }
}

impl std::error::Error for HeaderError {}

/// One extension of a `Sec-WebSocket-Extensions` list.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Extension {
    /// Extension token, e.g. `permessage-deflate`.
    pub name: String,
    /// Parameters in the order they appeared.
    pub params: Vec<ExtensionParam>,
}

/// One `name[=value]` parameter of an extension.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ExtensionParam {
    /// Parameter token.
    pub name: String,
    /// The value with quoting removed, or `None` for a valueless parameter.
    pub value: Option<String>,
}

impl Extension {
    /// An extension with no parameters.
    pub fn new(name: &str) -> Self {
        Extension {
            name: name.to_owned(),
            params: Vec::new(),
        }
    }

    /// Appends a parameter (builder style).
    pub fn with_param(mut self, name: &str, value: Option<&str>) -> Self {
        self.params.push(ExtensionParam {
            name: name.to_owned(),
            value: value.map(str::to_owned),
        });
        self
    }
}

/// Whether `b` is an RFC 7230 `tchar`.
fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

/// Whether `s` is a non-empty RFC 7230 token.
pub fn is_token(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(is_tchar)
}

/// A cursor over a header value; every method is total.
struct Cursor<'a> {
    bytes: &'a [u8],
    pos: usize,
}

impl<'a> Cursor<'a> {
    fn peek(&self) -> Option<u8> {
        self.bytes.get(self.pos).copied()
    }

    fn skip_ows(&mut self) {
        while matches!(self.peek(), Some(b' ' | b'\t')) {
            self.pos += 1;
        }
    }

    fn eat(&mut self, b: u8) -> bool {
        if self.peek() == Some(b) {
            self.pos += 1;
            true
        } else {
            false
        }
    }

    fn error(&self, reason: &'static str) -> HeaderError {
        HeaderError {
            reason,
            position: self.pos,
        }
    }

    fn token(&mut self, what: &'static str) -> Result<&'a str, HeaderError> {
        let start = self.pos;
        while matches!(self.peek(), Some(b) if is_tchar(b)) {
            self.pos += 1;
        }
        let bytes = self.bytes.get(start..self.pos).unwrap_or_default();
        match std::str::from_utf8(bytes) {
            Ok(token) if !token.is_empty() => Ok(token),
            _ => Err(self.error(what)),
        }
    }

    /// RFC 7230 quoted-string, returning the unescaped content.
    fn quoted_string(&mut self) -> Result<String, HeaderError> {
        if !self.eat(b'"') {
            return Err(self.error("expected a quoted string"));
        }
        let mut value = Vec::new();
        loop {
            match self.peek() {
                None => return Err(self.error("unterminated quoted string")),
                Some(b'"') => {
                    self.pos += 1;
                    break;
                }
                Some(b'\\') => {
                    self.pos += 1;
                    match self.peek() {
                        Some(b) if b == b'\t' || b == b' ' || b >= 0x21 && b != 0x7F => {
                            value.push(b);
                            self.pos += 1;
                        }
                        _ => return Err(self.error("invalid quoted-pair")),
                    }
                }
                Some(b) if b == b'\t' || b == b' ' || b >= 0x21 && b != 0x7F => {
                    value.push(b);
                    self.pos += 1;
                }
                Some(_) => return Err(self.error("invalid character in quoted string")),
            }
        }
        String::from_utf8(value).map_err(|_| self.error("quoted string is not UTF-8"))
    }

    /// Skips list separators and empty elements (RFC 7230 section 7); returns whether an
    /// element follows.
    fn next_element(&mut self) -> bool {
        loop {
            self.skip_ows();
            if !self.eat(b',') {
                return self.peek().is_some();
            }
        }
    }

    /// After an element: the end of input or a comma must follow.
    fn end_element(&mut self) -> Result<(), HeaderError> {
        self.skip_ows();
        match self.peek() {
            None => Ok(()),
            Some(b',') => {
                self.pos += 1;
                Ok(())
            }
            Some(_) => Err(self.error("expected ',' between list elements")),
        }
    }
}

/// Parses a `Sec-WebSocket-Protocol` value: a comma-separated list of tokens
/// (empty list elements are skipped, as RFC 7230 section 7 asks of recipients).
pub fn parse_protocols(value: &str) -> Result<Vec<&str>, HeaderError> {
    let mut cursor = Cursor {
        bytes: value.as_bytes(),
        pos: 0,
    };
    let mut protocols = Vec::new();
    while cursor.next_element() {
        protocols.push(cursor.token("expected a subprotocol token")?);
        cursor.end_element()?;
    }
    if protocols.is_empty() {
        return Err(cursor.error("empty subprotocol list"));
    }
    Ok(protocols)
}

/// Server side: the subprotocol to answer with, i.e. the first one the client offered
/// (client preference order) that the server supports.
pub fn select_protocol<'a>(offered: &[&'a str], supported: &[&str]) -> Option<&'a str> {
    offered.iter().copied().find(|p| supported.contains(p))
}

/// Parses a `Sec-WebSocket-Extensions` value (RFC 6455 section 9.1):
/// `extension *( "," extension )`, `extension = token *( ";" token [ "=" (token |
/// quoted-string) ] )`. A quoted value must unescape to a token, as section 9.1 requires.
pub fn parse_extensions(value: &str) -> Result<Vec<Extension>, HeaderError> {
    let mut cursor = Cursor {
        bytes: value.as_bytes(),
        pos: 0,
    };
    let mut extensions = Vec::new();
    while cursor.next_element() {
        let name = cursor.token("expected an extension token")?;
        let mut extension = Extension::new(name);
        loop {
            cursor.skip_ows();
            if !cursor.eat(b';') {
                break;
            }
            cursor.skip_ows();
            let param_name = cursor.token("expected an extension parameter token")?;
            cursor.skip_ows();
            let param_value = if cursor.eat(b'=') {
                cursor.skip_ows();
                let value = if cursor.peek() == Some(b'"') {
                    let start = cursor.pos;
                    let value = cursor.quoted_string()?;
                    if !is_token(&value) {
                        return Err(HeaderError {
                            reason: "quoted parameter value is not a token",
                            position: start,
                        });
                    }
                    value
                } else {
                    cursor.token("expected a parameter value")?.to_owned()
                };
                Some(value)
            } else {
                None
            };
            extension.params.push(ExtensionParam {
                name: param_name.to_owned(),
                value: param_value,
            });
        }
        extensions.push(extension);
        cursor.end_element()?;
    }
    if extensions.is_empty() {
        return Err(cursor.error("empty extension list"));
    }
    Ok(extensions)
}

/// Formats extensions as a `Sec-WebSocket-Extensions` value (e.g. the server's response).
/// Values that are not tokens are written as quoted strings.
pub fn format_extensions(extensions: &[Extension]) -> String {
    let mut out = String::new();
    for (i, extension) in extensions.iter().enumerate() {
        if i > 0 {
            out.push_str(", ");
        }
        out.push_str(&extension.name);
        for param in &extension.params {
            out.push_str("; ");
            out.push_str(&param.name);
            if let Some(value) = &param.value {
                out.push('=');
                if is_token(value) {
                    out.push_str(value);
                } else {
                    out.push('"');
                    for c in value.chars() {
                        if c == '"' || c == '\\' {
                            out.push('\\');
                        }
                        out.push(c);
                    }
                    out.push('"');
                }
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc6455_accept_key_example() {
        assert_eq!(
            accept_key("dGhlIHNhbXBsZSBub25jZQ=="),
            "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
        );
        assert!(verify_accept(
            "dGhlIHNhbXBsZSBub25jZQ==",
            "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
        ));
        assert!(!verify_accept(
            "dGhlIHNhbXBsZSBub25jZQ==",
            "s3pPLMBiTxaQ9kYGzzhZRbK+xOp="
        ));
        assert!(!verify_accept("dGhlIHNhbXBsZSBub25jZQ==", ""));
    }

    #[test]
    fn client_key_generation_and_validation() {
        let key = generate_client_key(*b"the sample nonce");
        assert_eq!(key, "dGhlIHNhbXBsZSBub25jZQ==");
        assert!(validate_client_key(&key));
        assert!(!validate_client_key(""));
        assert!(!validate_client_key("dGhlIHNhbXBsZSBub25jZQ")); // no padding
        assert!(!validate_client_key("dGhlIHNhbXBsZSBub25jZR==")); // non-canonical bits
        assert!(!validate_client_key("dGhlIHNhbXBsZSBub25jZQ==="));
        assert!(!validate_client_key("dGhlIHNhbXBsZSBub25jZXg=")); // 24 chars but 17 bytes
        assert!(!validate_client_key("!!!!!!!!!!!!!!!!!!!!!!=="));
        assert!(!validate_client_key("AAAAAAAAAAAAAAAAAAAAAAAAAAAA")); // decodes to 21 bytes
    }

    #[test]
    fn protocols_list() {
        assert_eq!(parse_protocols("chat").unwrap(), ["chat"]);
        assert_eq!(
            parse_protocols(" chat ,superchat,, v2.json ").unwrap(),
            ["chat", "superchat", "v2.json"]
        );
        assert!(parse_protocols("").is_err());
        assert!(parse_protocols(" , ").is_err());
        assert!(parse_protocols("chat superchat").is_err());
        assert!(parse_protocols("chat;x").is_err());
        assert!(parse_protocols("\"chat\"").is_err());
        assert_eq!(select_protocol(&["v2", "v1"], &["v1", "v2"]), Some("v2"));
        assert_eq!(select_protocol(&["v3"], &["v1", "v2"]), None);
    }

    #[test]
    fn extensions_list_with_params() {
        let exts = parse_extensions(
            "permessage-deflate; client_max_window_bits; server_max_window_bits=10, \
             permessage-deflate ;server_no_context_takeover,x-foo;a=\"b\"",
        )
        .unwrap();
        assert_eq!(
            exts,
            vec![
                Extension::new("permessage-deflate")
                    .with_param("client_max_window_bits", None)
                    .with_param("server_max_window_bits", Some("10")),
                Extension::new("permessage-deflate").with_param("server_no_context_takeover", None),
                Extension::new("x-foo").with_param("a", Some("b")),
            ]
        );
    }

    #[test]
    fn extension_quoted_values() {
        let exts = parse_extensions("e; p=\"1\\5\"").unwrap();
        assert_eq!(exts[0].params[0].value.as_deref(), Some("15"));
        // Quoted values must still be tokens after unescaping.
        assert!(parse_extensions("e; p=\"a b\"").is_err());
        assert!(parse_extensions("e; p=\"\"").is_err());
        assert!(parse_extensions("e; p=\"unterminated").is_err());
    }

    #[test]
    fn malformed_extension_lists() {
        for bad in [
            "",
            ",",
            "e;",
            "e; =1",
            "e; p=",
            "e p",
            "e; p==1",
            "e; p=1 2",
            ";p",
            "e,;",
            "e; p=\u{e9}",
        ] {
            assert!(parse_extensions(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn extensions_format_round_trips() {
        let exts = vec![
            Extension::new("permessage-deflate")
                .with_param("server_no_context_takeover", None)
                .with_param("server_max_window_bits", Some("12")),
            Extension::new("x").with_param("q", Some("a\"b c")),
        ];
        let text = format_extensions(&exts);
        assert_eq!(
            text,
            "permessage-deflate; server_no_context_takeover; server_max_window_bits=12, \
             x; q=\"a\\\"b c\""
        );
        // The non-token value is formatted faithfully but is (correctly) not accepted back.
        assert!(parse_extensions(&text).is_err());
        let text = format_extensions(&exts[..1]);
        assert_eq!(parse_extensions(&text).unwrap(), exts[..1].to_vec());
    }
}

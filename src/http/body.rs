//! Sans-IO message body decoders: Content-Length, chunked (RFC 9112 7.1)
//! and read-until-close.
//!
//! The decoder never copies body bytes: it reports where they are in the
//! caller's input. Only chunked framing state and trailer fields are kept.

use std::ops::Range;

use crate::http::decode::{BodyKind, HttpError};
use crate::http::headers::{trim_ows, Headers};
use crate::http::method::is_token;
use crate::http::status::StatusCode;

/// Bounds on the parts of a body that the decoder itself has to hold or
/// scan (the data is never buffered, so its size is the caller's concern).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct BodyLimits {
    /// Longest chunk-size line (size plus extensions, without CRLF).
    /// Default 4096.
    pub max_chunk_line: usize,
    /// Largest trailer section in bytes, CRLFs included. Default 16384.
    pub max_trailer_size: usize,
    /// Most trailer fields. Default 100.
    pub max_trailers: usize,
}

impl Default for BodyLimits {
    fn default() -> Self {
        BodyLimits {
            max_chunk_line: 4096,
            max_trailer_size: 16384,
            max_trailers: 100,
        }
    }
}

/// The outcome of one [`BodyDecoder::decode`] call.
#[derive(Clone, PartialEq, Eq, Debug, Default)]
pub struct Step {
    /// Bytes of the input used (framing and data); drop them from the
    /// front of the buffer. Bytes after these belong to what follows.
    pub consumed: usize,
    /// Body bytes found, as a range of the input inside `..consumed`.
    pub data: Option<Range<usize>>,
    /// The body is complete; any further input is not part of it.
    pub done: bool,
}

/// Where the chunked decoder is within the chunked grammar:
/// `chunk-size [ chunk-ext ] CRLF chunk-data CRLF ... last-chunk
/// trailer-section CRLF`, with
/// `chunk-ext = *( BWS ";" BWS ext-name [ BWS "=" BWS ext-value ] )`.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Chunked {
    /// Before the first hex digit of a size.
    SizeStart,
    /// In the hex digits.
    Size,
    /// Whitespace after the size or an extension, before ';'.
    ExtSpace,
    /// After ';', before the extension name.
    ExtNameStart,
    /// In an extension name.
    ExtName,
    /// Whitespace after an extension name.
    ExtAfterName,
    /// After '=', before the value.
    ExtValueStart,
    /// In a token value.
    ExtToken,
    /// In a quoted-string value.
    ExtQuoted,
    /// After a backslash in a quoted-string.
    ExtQuotedPair,
    /// After the closing quote.
    ExtAfterQuoted,
    /// Saw the CR ending the size line.
    SizeLf,
    /// In chunk data; `BodyDecoder::remaining` bytes left.
    Data,
    /// Expecting the CR after chunk data.
    DataCr,
    /// Expecting the LF after chunk data.
    DataLf,
    /// In the trailer section (after the last chunk).
    Trailer,
}

impl Chunked {
    /// States on the chunk-size line before its CR.
    fn on_size_line(self) -> bool {
        !matches!(
            self,
            Chunked::SizeLf | Chunked::Data | Chunked::DataCr | Chunked::DataLf | Chunked::Trailer
        )
    }
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Mode {
    Length,
    UntilClose,
    Chunked(Chunked),
    Done,
}

/// Decodes one message body from the bytes that follow its head.
///
/// Feed it the unconsumed front of the connection's buffer; it returns how
/// much it used and where the body bytes are. It works with the input
/// split at any byte and never needs the whole body in memory. Reusable via
/// [`reset`](BodyDecoder::reset), keeping the trailer buffers' capacity.
///
/// Errors use `400 Bad Request`, or `431` when a trailer limit is
/// exceeded; on the client side treat any error as a broken response.
#[derive(Clone, Debug)]
pub struct BodyDecoder {
    kind: BodyKind,
    limits: BodyLimits,
    mode: Mode,
    /// Length: body bytes left. Chunked: bytes left in the current chunk.
    remaining: u64,
    /// Chunk size being parsed.
    chunk_size: u64,
    /// Hex digits of the chunk size so far.
    size_digits: u32,
    /// Bytes of the current chunk-size line so far (without CRLF).
    line_len: usize,
    /// The trailer line being assembled (it may arrive in pieces).
    trailer_line: Vec<u8>,
    /// Bytes of the trailer section so far.
    trailer_bytes: usize,
    trailers: Headers,
}

impl BodyDecoder {
    /// A decoder for a body of the given kind.
    pub fn new(kind: BodyKind, limits: BodyLimits) -> Self {
        let mut decoder = BodyDecoder {
            kind,
            limits,
            mode: Mode::Done,
            remaining: 0,
            chunk_size: 0,
            size_digits: 0,
            line_len: 0,
            trailer_line: Vec::new(),
            trailer_bytes: 0,
            trailers: Headers::new(),
        };
        decoder.reset(kind);
        decoder
    }

    /// The limits this decoder enforces.
    pub fn limits(&self) -> BodyLimits {
        self.limits
    }

    /// Starts over for a new body, keeping the limits and buffer capacity.
    pub fn reset(&mut self, kind: BodyKind) {
        self.kind = kind;
        self.mode = match kind {
            BodyKind::None | BodyKind::Length(0) => Mode::Done,
            BodyKind::Length(_) => Mode::Length,
            BodyKind::Chunked => Mode::Chunked(Chunked::SizeStart),
            BodyKind::UntilClose => Mode::UntilClose,
        };
        self.remaining = match kind {
            BodyKind::Length(n) => n,
            _ => 0,
        };
        self.chunk_size = 0;
        self.size_digits = 0;
        self.line_len = 0;
        self.trailer_line.clear();
        self.trailer_bytes = 0;
        self.trailers.clear();
    }

    /// The kind of body being decoded.
    pub fn kind(&self) -> BodyKind {
        self.kind
    }

    /// Decodes from the front of `input`. Returns at most one data range
    /// per call; call again with the rest while `consumed > 0 && !done`.
    /// Once done, returns `consumed: 0, done: true` without touching input.
    pub fn decode(&mut self, input: &[u8]) -> Result<Step, HttpError> {
        match self.mode {
            Mode::Done => Ok(Step {
                consumed: 0,
                data: None,
                done: true,
            }),
            Mode::Length => {
                let n = take(self.remaining, input.len());
                self.remaining -= n as u64;
                let done = self.remaining == 0;
                if done {
                    self.mode = Mode::Done;
                }
                Ok(Step {
                    consumed: n,
                    data: (n > 0).then_some(0..n),
                    done,
                })
            }
            Mode::UntilClose => Ok(Step {
                consumed: input.len(),
                data: (!input.is_empty()).then_some(0..input.len()),
                done: false,
            }),
            Mode::Chunked(_) => self.decode_chunked(input),
        }
    }

    /// Whether the body is complete.
    pub fn is_done(&self) -> bool {
        self.mode == Mode::Done
    }

    /// Trailer fields of a chunked body (complete once [`is_done`](Self::is_done)).
    pub fn trailers(&self) -> &Headers {
        &self.trailers
    }

    /// For a `Length` body, the bytes still to come; `None` for other kinds.
    pub fn remaining(&self) -> Option<u64> {
        match self.kind {
            BodyKind::Length(_) => Some(self.remaining),
            _ => None,
        }
    }

    /// Tells the decoder the peer closed the connection. That completes an
    /// `UntilClose` body; a `Length` or chunked body that is not complete
    /// yet was truncated, which is an error.
    pub fn finish_on_eof(&mut self) -> Result<(), HttpError> {
        match self.mode {
            Mode::Done => Ok(()),
            Mode::UntilClose => {
                self.mode = Mode::Done;
                Ok(())
            }
            Mode::Length => Err(HttpError::bad_request(
                "connection closed before the end of the body (Content-Length not reached)",
            )),
            Mode::Chunked(_) => Err(HttpError::bad_request(
                "connection closed before the end of the chunked body",
            )),
        }
    }

    fn decode_chunked(&mut self, input: &[u8]) -> Result<Step, HttpError> {
        let mut pos = 0;
        while pos < input.len() {
            let Mode::Chunked(state) = self.mode else {
                break;
            };
            match state {
                Chunked::Data => {
                    let n = take(self.remaining, input.len() - pos);
                    self.remaining -= n as u64;
                    if self.remaining == 0 {
                        self.mode = Mode::Chunked(Chunked::DataCr);
                    }
                    return Ok(Step {
                        consumed: pos + n,
                        data: Some(pos..pos + n),
                        done: false,
                    });
                }
                Chunked::Trailer => pos = self.trailer_input(input, pos)?,
                _ => {
                    self.framing_byte(state, input[pos])?;
                    pos += 1;
                }
            }
        }
        Ok(Step {
            consumed: pos,
            data: None,
            done: self.mode == Mode::Done,
        })
    }

    /// Advances the chunk framing state machine by one byte.
    fn framing_byte(&mut self, state: Chunked, b: u8) -> Result<(), HttpError> {
        use Chunked::*;
        if state.on_size_line() {
            if b == b'\n' {
                return Err(HttpError::bad_request(
                    "chunk size line must end with CRLF (bare LF)",
                ));
            }
            if b != b'\r' {
                self.line_len += 1;
                if self.line_len > self.limits.max_chunk_line {
                    return Err(HttpError::bad_request(
                        "chunk size line too long (chunk extensions exceed the limit)",
                    ));
                }
            }
        }
        let is_space = b == b' ' || b == b'\t';
        let next = match state {
            SizeStart => match hex_digit(b) {
                Some(v) => {
                    self.chunk_size = u64::from(v);
                    self.size_digits = 1;
                    Size
                }
                None => return Err(bad("chunk size missing or not hexadecimal")),
            },
            Size => match hex_digit(b) {
                Some(v) => {
                    self.size_digits += 1;
                    if self.size_digits > 16 {
                        return Err(bad("chunk size too large (more than 16 hex digits)"));
                    }
                    // 16 hex digits always fit a u64; checked anyway.
                    self.chunk_size = self
                        .chunk_size
                        .checked_mul(16)
                        .and_then(|s| s.checked_add(u64::from(v)))
                        .ok_or_else(|| bad("chunk size too large"))?;
                    Size
                }
                None if b == b';' => ExtNameStart,
                None if is_space => ExtSpace,
                None if b == b'\r' => SizeLf,
                None => return Err(bad("invalid character in chunk size")),
            },
            ExtSpace if is_space => ExtSpace,
            ExtSpace if b == b';' => ExtNameStart,
            ExtNameStart if is_space => ExtNameStart,
            ExtNameStart if is_tchar(b) => ExtName,
            ExtName if is_tchar(b) => ExtName,
            ExtName if is_space => ExtAfterName,
            ExtName | ExtAfterName if b == b'=' => ExtValueStart,
            ExtName | ExtAfterName if b == b';' => ExtNameStart,
            ExtAfterName if is_space => ExtAfterName,
            ExtValueStart if is_space => ExtValueStart,
            ExtValueStart if b == b'"' => ExtQuoted,
            ExtValueStart if is_tchar(b) => ExtToken,
            ExtToken if is_tchar(b) => ExtToken,
            ExtQuoted if b == b'"' => ExtAfterQuoted,
            ExtQuoted if b == b'\\' => ExtQuotedPair,
            ExtQuoted if is_qdtext(b) => ExtQuoted,
            ExtQuotedPair if b == b'\t' || b == b' ' || is_vchar_or_obs(b) => ExtQuoted,
            ExtToken | ExtAfterQuoted if is_space => ExtSpace,
            ExtToken | ExtAfterQuoted if b == b';' => ExtNameStart,
            ExtName | ExtToken | ExtAfterQuoted if b == b'\r' => SizeLf,
            ExtSpace | ExtNameStart | ExtName | ExtAfterName | ExtValueStart | ExtToken
            | ExtQuoted | ExtQuotedPair | ExtAfterQuoted => {
                return Err(bad("invalid chunk extension"))
            }
            SizeLf if b == b'\n' => {
                self.line_len = 0;
                if self.chunk_size == 0 {
                    self.trailer_line.clear();
                    self.trailer_bytes = 0;
                    Trailer
                } else {
                    self.remaining = self.chunk_size;
                    Data
                }
            }
            SizeLf => return Err(bad("chunk size line must end with CRLF")),
            DataCr if b == b'\r' => DataLf,
            DataLf if b == b'\n' => {
                self.chunk_size = 0;
                self.size_digits = 0;
                SizeStart
            }
            DataCr | DataLf => {
                return Err(bad(
                    "chunk data not followed by CRLF (chunk longer than its declared size?)",
                ))
            }
            // Handled by the caller; kept total.
            Data | Trailer => state,
        };
        self.mode = Mode::Chunked(next);
        Ok(())
    }

    /// Consumes trailer-section bytes from `input[pos..]`, returning the new
    /// position. Lines are assembled in `trailer_line` because a line may
    /// arrive in several reads; memory stays bounded by `max_trailer_size`.
    fn trailer_input(&mut self, input: &[u8], mut pos: usize) -> Result<usize, HttpError> {
        while pos < input.len() {
            let rest = &input[pos..];
            let (segment, line_done) = match rest.iter().position(|&b| b == b'\n') {
                Some(lf) => (&rest[..lf], true),
                None => (rest, false),
            };
            let used = segment.len() + usize::from(line_done);
            if self.trailer_bytes + used > self.limits.max_trailer_size {
                return Err(HttpError::new(
                    StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
                    "trailer section too large",
                ));
            }
            self.trailer_bytes += used;
            self.trailer_line.extend_from_slice(segment);
            pos += used;
            if !line_done {
                break;
            }
            let Some(line) = self.trailer_line.strip_suffix(b"\r") else {
                return Err(bad("trailer line must end with CRLF (bare LF)"));
            };
            if line.is_empty() {
                self.mode = Mode::Done;
                return Ok(pos);
            }
            if self.trailers.len() >= self.limits.max_trailers {
                return Err(HttpError::new(
                    StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
                    "too many trailer fields",
                ));
            }
            let (name, value) = split_trailer_field(line)?;
            self.trailers.append_bytes(name, value);
            self.trailer_line.clear();
        }
        Ok(pos)
    }
}

/// Validates one trailer field line (CRLF removed) and splits it into name
/// and OWS-trimmed value, with the rules applied to header fields.
fn split_trailer_field(line: &[u8]) -> Result<(&[u8], &[u8]), HttpError> {
    if matches!(line.first(), Some(b' ' | b'\t')) {
        return Err(bad("obsolete line folding in trailer section"));
    }
    let Some(colon) = line.iter().position(|&b| b == b':') else {
        return Err(bad("trailer field without ':'"));
    };
    let name = &line[..colon];
    if matches!(name.last(), Some(b' ' | b'\t')) {
        return Err(bad("whitespace between trailer field name and ':'"));
    }
    if !is_token(name) {
        return Err(bad("invalid trailer field name"));
    }
    let value = trim_ows(&line[colon + 1..]);
    if value.iter().any(|&b| (b < 0x20 && b != b'\t') || b == 0x7f) {
        return Err(bad(
            "invalid character in trailer field value (control character, NUL or bare CR)",
        ));
    }
    Ok((name, value))
}

fn bad(reason: &'static str) -> HttpError {
    HttpError::bad_request(reason)
}

/// `min(remaining, available)` as a usize without lossy casts.
fn take(remaining: u64, available: usize) -> usize {
    match usize::try_from(remaining) {
        Ok(r) => r.min(available),
        Err(_) => available,
    }
}

fn hex_digit(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

fn is_tchar(b: u8) -> bool {
    crate::http::method::is_tchar(b)
}

/// qdtext (RFC 9110 5.6.4): HTAB, SP, '!', '#'-'[', ']'-'~', obs-text.
fn is_qdtext(b: u8) -> bool {
    matches!(b, b'\t' | b' ' | 0x21 | 0x23..=0x5b | 0x5d..=0x7e | 0x80..=0xff)
}

fn is_vchar_or_obs(b: u8) -> bool {
    matches!(b, 0x21..=0x7e | 0x80..=0xff)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Feeds `pieces` as successive reads into a connection-style buffer and
    /// decodes greedily. Returns (body bytes, total consumed, done).
    fn run(
        decoder: &mut BodyDecoder,
        pieces: &[&[u8]],
    ) -> Result<(Vec<u8>, usize, bool), HttpError> {
        let mut pending: Vec<u8> = Vec::new();
        let mut body = Vec::new();
        let mut total = 0;
        for piece in pieces {
            pending.extend_from_slice(piece);
            loop {
                let step = decoder.decode(&pending)?;
                assert!(step.consumed <= pending.len());
                if let Some(r) = step.data.clone() {
                    assert!(r.end <= step.consumed && !r.is_empty());
                    body.extend_from_slice(&pending[r]);
                }
                pending.drain(..step.consumed);
                total += step.consumed;
                if step.done {
                    return Ok((body, total, true));
                }
                if step.consumed == 0 {
                    break;
                }
            }
        }
        Ok((body, total, decoder.is_done()))
    }

    fn chunked() -> BodyDecoder {
        BodyDecoder::new(BodyKind::Chunked, BodyLimits::default())
    }

    fn decode_chunked(input: &[u8]) -> Result<(Vec<u8>, usize, bool), HttpError> {
        run(&mut chunked(), &[input])
    }

    fn chunked_error(input: &[u8]) -> HttpError {
        match decode_chunked(input) {
            Err(e) => e,
            Ok(r) => panic!(
                "expected error for {:?}, got {r:?}",
                String::from_utf8_lossy(input)
            ),
        }
    }

    #[test]
    fn none_is_done_immediately() {
        let mut d = BodyDecoder::new(BodyKind::None, BodyLimits::default());
        assert!(d.is_done());
        assert_eq!(
            d.decode(b"GET / HTTP/1.1").unwrap(),
            Step {
                consumed: 0,
                data: None,
                done: true
            }
        );
        assert_eq!(d.remaining(), None);
        assert!(d.finish_on_eof().is_ok());
    }

    #[test]
    fn length_body_stops_at_its_end() {
        let mut d = BodyDecoder::new(BodyKind::Length(5), BodyLimits::default());
        assert_eq!(d.remaining(), Some(5));
        let step = d.decode(b"he").unwrap();
        assert_eq!(
            step,
            Step {
                consumed: 2,
                data: Some(0..2),
                done: false
            }
        );
        assert_eq!(d.remaining(), Some(3));
        let step = d.decode(b"lloNEXT").unwrap();
        assert_eq!(
            step,
            Step {
                consumed: 3,
                data: Some(0..3),
                done: true
            }
        );
        assert!(d.is_done());
        assert_eq!(d.decode(b"NEXT").unwrap().consumed, 0);
        assert_eq!(d.remaining(), Some(0));
    }

    #[test]
    fn length_zero_and_empty_input() {
        let d = BodyDecoder::new(BodyKind::Length(0), BodyLimits::default());
        assert!(d.is_done());
        let mut d = BodyDecoder::new(BodyKind::Length(3), BodyLimits::default());
        assert_eq!(d.decode(b"").unwrap(), Step::default());
    }

    #[test]
    fn truncated_length_body_is_an_error_at_eof() {
        let mut d = BodyDecoder::new(BodyKind::Length(10), BodyLimits::default());
        d.decode(b"12345").unwrap();
        let err = d.finish_on_eof().unwrap_err();
        assert!(err.reason.contains("closed before the end"));
    }

    #[test]
    fn until_close_takes_everything_until_eof() {
        let mut d = BodyDecoder::new(BodyKind::UntilClose, BodyLimits::default());
        assert_eq!(
            d.decode(b"abc").unwrap(),
            Step {
                consumed: 3,
                data: Some(0..3),
                done: false
            }
        );
        assert_eq!(d.decode(b"").unwrap(), Step::default());
        assert!(!d.is_done());
        d.finish_on_eof().unwrap();
        assert!(d.is_done());
        assert!(d.decode(b"x").unwrap().done);
    }

    #[test]
    fn simple_chunked() {
        let input = b"5\r\nhello\r\n6\r\n world\r\n0\r\n\r\nNEXT";
        let (body, consumed, done) = decode_chunked(input).unwrap();
        assert_eq!(body, b"hello world");
        assert!(done);
        assert_eq!(consumed, input.len() - 4);
    }

    #[test]
    fn empty_chunked_body() {
        let (body, consumed, done) = decode_chunked(b"0\r\n\r\n").unwrap();
        assert!(body.is_empty() && done);
        assert_eq!(consumed, 5);
    }

    #[test]
    fn hex_sizes_case_and_leading_zeros() {
        let (body, _, done) =
            decode_chunked(b"A\r\n0123456789\r\n00000000000000a\r\nabcdefghij\r\n0000\r\n\r\n")
                .unwrap();
        assert!(done);
        assert_eq!(body, b"0123456789abcdefghij");
        let (body, _, _) = decode_chunked(b"0000000000000001\r\nx\r\n0\r\n\r\n").unwrap();
        assert_eq!(body, b"x");
    }

    #[test]
    fn chunk_size_errors() {
        for (input, needle) in [
            (&b"\r\nx\r\n0\r\n\r\n"[..], "missing"),
            (b"g\r\n", "missing"),
            (b";a\r\n", "missing"),
            (b"-1\r\n", "missing"),
            (b"+1\r\n", "missing"),
            (b"00000000000000001\r\n", "16 hex digits"),
            (b"fffffffffffffffff\r\n", "16 hex digits"),
            (b"5x\r\n", "invalid character in chunk size"),
            (b"0x5\r\n", "invalid character in chunk size"),
            (b"5\n", "bare LF"),
            (b"5\rx", "must end with CRLF"),
            (b"5 \r\n", "extension"),
        ] {
            let err = chunked_error(input);
            assert_eq!(err.status, StatusCode::BAD_REQUEST);
            assert!(
                err.reason.contains(needle),
                "{:?}: {}",
                String::from_utf8_lossy(input),
                err.reason
            );
        }
    }

    #[test]
    fn max_size_chunk_header_is_accepted() {
        let mut d = chunked();
        let step = d.decode(b"ffffffffffffffff\r\nab").unwrap();
        assert_eq!(step.data, Some(18..20));
        assert!(!step.done);
    }

    #[test]
    fn valid_chunk_extensions() {
        for ext in [
            ";a",
            ";a=b",
            " ;a",
            "\t; a = b",
            ";a;b=c;d",
            ";name=\"quoted value\"",
            ";q=\"esc\\\"aped\\\\\"",
            ";a=\"\" ;b",
            ";a=tok ;b=\"x\"",
            ";a =\"x\"\t;b",
        ] {
            let input = format!("3{ext}\r\nabc\r\n0{ext}\r\n\r\n");
            let (body, _, done) =
                decode_chunked(input.as_bytes()).unwrap_or_else(|e| panic!("{ext:?}: {e}"));
            assert_eq!(body, b"abc", "{ext:?}");
            assert!(done);
        }
    }

    #[test]
    fn invalid_chunk_extensions() {
        for ext in [
            ";",
            ";=b",
            ";a=",
            ";a b",
            ";a=b c",
            ";a=\"unterminated",
            ";a=\"x\"y",
            ";a=b=c",
            ";a,b",
            ";a=\"\x01\"",
            ";a=\x7f",
            "; a \r\n",
        ] {
            let input = format!("3{ext}\r\nabc\r\n0\r\n\r\n");
            let err = chunked_error(input.as_bytes());
            assert_eq!(err.status, StatusCode::BAD_REQUEST, "{ext:?}");
        }
    }

    #[test]
    fn chunk_line_limit() {
        let limits = BodyLimits {
            max_chunk_line: 16,
            ..BodyLimits::default()
        };
        let ok = b"3;abcdefghijklmn\r\nabc\r\n0\r\n\r\n"; // 16-byte line
        let (body, _, _) = run(&mut BodyDecoder::new(BodyKind::Chunked, limits), &[ok]).unwrap();
        assert_eq!(body, b"abc");
        let long = b"3;abcdefghijklmno\r\nabc\r\n0\r\n\r\n";
        let err = run(&mut BodyDecoder::new(BodyKind::Chunked, limits), &[long]).unwrap_err();
        assert!(
            err.reason.contains("chunk size line too long"),
            "{}",
            err.reason
        );
        // Decided without the rest of the line having arrived.
        let mut d = BodyDecoder::new(BodyKind::Chunked, limits);
        let err = d.decode(b"3;aaaaaaaaaaaaaaaaaaaaaaaaa").unwrap_err();
        assert!(err.reason.contains("too long"));
    }

    #[test]
    fn crlf_after_data_is_required() {
        for input in [
            &b"3\r\nabcX\r\n0\r\n\r\n"[..],
            b"3\r\nabc\n0\r\n\r\n",
            b"3\r\nabc\rX0\r\n\r\n",
            b"3\r\nabcd\r\n0\r\n\r\n",
        ] {
            let err = chunked_error(input);
            assert!(err.reason.contains("CRLF"), "{}", err.reason);
        }
    }

    #[test]
    fn trailers_are_parsed() {
        let input = b"3\r\nabc\r\n0\r\nExpires: never\r\nX-Sum:  abc \t\r\n\r\nNEXT";
        let mut d = chunked();
        let (body, consumed, done) = run(&mut d, &[input]).unwrap();
        assert_eq!(body, b"abc");
        assert!(done);
        assert_eq!(consumed, input.len() - 4);
        assert_eq!(d.trailers().get("expires"), Some("never"));
        assert_eq!(d.trailers().get("x-sum"), Some("abc"));
        assert_eq!(d.trailers().len(), 2);
    }

    #[test]
    fn invalid_trailers_are_400() {
        for (trailer, needle) in [
            (&b" folded: x\r\n"[..], "folding"),
            (b"NoColon\r\n", "without ':'"),
            (b"Bad Name: x\r\n", "name"),
            (b"Name : x\r\n", "whitespace"),
            (b": x\r\n", "name"),
            (b"X: a\x00b\r\n", "value"),
            (b"X: a\rb\r\n", "value"),
            (b"X: a\n", "bare LF"),
        ] {
            let mut input = b"0\r\n".to_vec();
            input.extend_from_slice(trailer);
            input.extend_from_slice(b"\r\n");
            let err = chunked_error(&input);
            assert_eq!(err.status, StatusCode::BAD_REQUEST);
            assert!(
                err.reason.contains(needle),
                "{:?}: {}",
                String::from_utf8_lossy(trailer),
                err.reason
            );
        }
        let err = chunked_error(b"0\r\n\n");
        assert!(err.reason.contains("bare LF"));
    }

    #[test]
    fn trailer_limits_are_431() {
        let limits = BodyLimits {
            max_trailers: 2,
            max_trailer_size: 32,
            ..BodyLimits::default()
        };
        let ok = b"0\r\nA: 1\r\nB: 2\r\n\r\n";
        run(&mut BodyDecoder::new(BodyKind::Chunked, limits), &[ok]).unwrap();
        let many = b"0\r\nA: 1\r\nB: 2\r\nC: 3\r\n\r\n";
        let err = run(&mut BodyDecoder::new(BodyKind::Chunked, limits), &[many]).unwrap_err();
        assert_eq!(err.status, StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE);
        assert_eq!(err.reason, "too many trailer fields");
        // Exactly 32 trailer bytes (including the final CRLF) is fine.
        let exact = b"0\r\nX: 1234567890123456789012345\r\n\r\n";
        assert_eq!(exact.len() - 3, 32);
        run(&mut BodyDecoder::new(BodyKind::Chunked, limits), &[exact]).unwrap();
        let big = b"0\r\nX: 12345678901234567890123456\r\n\r\n";
        let err = run(&mut BodyDecoder::new(BodyKind::Chunked, limits), &[big]).unwrap_err();
        assert_eq!(err.reason, "trailer section too large");
        // Decided before the line ends, so a never-ending line is bounded.
        let mut d = BodyDecoder::new(BodyKind::Chunked, limits);
        d.decode(b"0\r\n").unwrap();
        let err = d.decode(&[b'x'; 40]).unwrap_err();
        assert_eq!(err.status, StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE);
    }

    #[test]
    fn truncated_chunked_body_is_an_error_at_eof() {
        let mut d = chunked();
        run(&mut d, &[b"5\r\nhel"]).unwrap();
        assert!(d.finish_on_eof().is_err());
        let mut d = chunked();
        run(&mut d, &[b"0\r\n"]).unwrap();
        assert!(!d.is_done());
        assert!(d.finish_on_eof().is_err());
    }

    #[test]
    fn one_data_range_per_call() {
        let mut d = chunked();
        let input = b"2\r\nab\r\n2\r\ncd\r\n0\r\n\r\n";
        let step = d.decode(input).unwrap();
        assert_eq!(
            step,
            Step {
                consumed: 5,
                data: Some(3..5),
                done: false
            }
        );
        let step = d.decode(&input[5..]).unwrap();
        assert_eq!(
            step,
            Step {
                consumed: 7,
                data: Some(5..7),
                done: false
            }
        );
        let step = d.decode(&input[12..]).unwrap();
        assert_eq!(
            step,
            Step {
                consumed: 7,
                data: None,
                done: true
            }
        );
    }

    /// A body with many chunk sizes, extensions and trailers.
    fn long_chunked() -> (Vec<u8>, Vec<u8>) {
        let mut body = Vec::new();
        let mut wire = Vec::new();
        for (i, size) in [1usize, 2, 15, 16, 17, 100, 255, 3, 1000]
            .iter()
            .enumerate()
        {
            let data: Vec<u8> = (0..*size).map(|j| (i * 31 + j * 7) as u8).collect();
            if i % 3 == 0 {
                wire.extend_from_slice(format!("{size:x};ext{i}=\"v;{i}\"\r\n").as_bytes());
            } else if i % 3 == 1 {
                wire.extend_from_slice(format!("{size:X} ; e=t\r\n").as_bytes());
            } else {
                wire.extend_from_slice(format!("{size:04x}\r\n").as_bytes());
            }
            wire.extend_from_slice(&data);
            wire.extend_from_slice(b"\r\n");
            body.extend_from_slice(&data);
        }
        wire.extend_from_slice(b"0;last\r\nChecksum: abc\r\nX-T: 1\r\n\r\n");
        (wire, body)
    }

    #[test]
    fn long_chunked_body_split_at_every_byte() {
        let (wire, body) = long_chunked();
        let mut with_next = wire.clone();
        with_next.extend_from_slice(b"POST / HTTP/1.1\r\n");
        let mut d = chunked();
        for split in 0..=with_next.len() {
            d.reset(BodyKind::Chunked);
            let (got, consumed, done) =
                run(&mut d, &[&with_next[..split], &with_next[split..]]).unwrap();
            assert!(done, "split {split}");
            assert_eq!(consumed, wire.len(), "split {split}");
            assert_eq!(got, body, "split {split}");
            assert_eq!(d.trailers().get("checksum"), Some("abc"));
            assert_eq!(d.trailers().get("x-t"), Some("1"));
        }
    }

    #[test]
    fn long_chunked_body_one_byte_at_a_time() {
        let (wire, body) = long_chunked();
        let pieces: Vec<&[u8]> = wire.chunks(1).collect();
        let mut d = chunked();
        let (got, consumed, done) = run(&mut d, &pieces).unwrap();
        assert!(done);
        assert_eq!(consumed, wire.len());
        assert_eq!(got, body);
        assert_eq!(d.trailers().len(), 2);
        // And in odd-sized pieces.
        for size in [2, 3, 7, 64] {
            let pieces: Vec<&[u8]> = wire.chunks(size).collect();
            d.reset(BodyKind::Chunked);
            let (got, _, done) = run(&mut d, &pieces).unwrap();
            assert!(done);
            assert_eq!(got, body, "pieces of {size}");
        }
    }

    #[test]
    fn length_body_split_at_every_byte() {
        let wire: Vec<u8> = (0..=255u8).collect();
        let mut d = BodyDecoder::new(BodyKind::Length(200), BodyLimits::default());
        for split in 0..=wire.len() {
            d.reset(BodyKind::Length(200));
            let (got, consumed, done) = run(&mut d, &[&wire[..split], &wire[split..]]).unwrap();
            assert!(done);
            assert_eq!(consumed, 200);
            assert_eq!(got, &wire[..200]);
        }
    }

    #[test]
    fn reset_reuses_decoder() {
        let mut d = chunked();
        run(&mut d, &[b"0\r\nA: 1\r\n\r\n"]).unwrap();
        assert_eq!(d.trailers().len(), 1);
        d.reset(BodyKind::Length(2));
        assert!(d.trailers().is_empty());
        assert_eq!(d.kind(), BodyKind::Length(2));
        let (got, _, done) = run(&mut d, &[b"xyz"]).unwrap();
        assert_eq!(got, b"xy");
        assert!(done);
    }

    #[test]
    fn hostile_chunked_inputs_never_panic() {
        let alphabet = b"0123456789abcdefABCDEF;= \t\"\\\r\n:xX\x00\xff";
        let mut seed: u32 = 99;
        for _ in 0..3000 {
            let mut input = Vec::new();
            seed = seed.wrapping_mul(1_103_515_245).wrapping_add(12345);
            let len = (seed >> 16) as usize % 80;
            for _ in 0..len {
                seed = seed.wrapping_mul(1_103_515_245).wrapping_add(12345);
                input.push(alphabet[(seed >> 16) as usize % alphabet.len()]);
            }
            let mut d = chunked();
            let pieces: Vec<&[u8]> = input.chunks(3).collect();
            if let Ok((_, consumed, _)) = run(&mut d, &pieces) {
                assert!(consumed <= input.len());
            }
        }
    }
}

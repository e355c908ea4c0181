//! Incremental parsing and validation of request and response heads
//! (RFC 9112 sections 2-6, RFC 9110 section 5).
//!
//! httparse does the tokenising; this module adds what httparse leaves to
//! the caller: finding the end of the head without rescanning, size limits
//! decided as soon as they are exceeded, strict line endings, and the
//! message-framing rules (Host, Content-Length, Transfer-Encoding, target
//! forms) that protect against request smuggling.
//!
//! A request head that arrives whole and clean (the usual case) is read by
//! a strict single-pass parser instead, which fills the request as it goes;
//! it declines whatever it is not sure of, and the scanner and httparse then
//! decide, so both give the same result and every error is worded once.

use std::fmt;
use std::mem::MaybeUninit;

use crate::http::bytes::{folded_eq, same_bytes};
use crate::http::headers::{list_elements, trim_ows, FieldBlock, Headers};
use crate::http::method::{is_tchar, is_token, Method};
use crate::http::request::{
    analyze_target, Request, Summary, TargetForm, Version, FACT_CHUNKED, FACT_CLOSE,
    FACT_CONN_UPGRADE, FACT_EXPECT_CONTINUE, FACT_KEEP_ALIVE, FACT_UPGRADE,
};
use crate::http::response_head::ResponseHead;
use crate::http::status::StatusCode;

/// Upper bound on [`HeadLimits::max_headers`]: the size of the on-stack
/// array httparse fills, whatever the configured limit.
pub const MAX_HEADERS_CAP: usize = 256;

/// Size limits for a message head. Exceeding one fails the parse as soon as
/// it is exceeded, before the head is complete, so a slow or hostile peer
/// cannot make the server buffer more.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct HeadLimits {
    /// Longest request-line (or status-line) in bytes, without CRLF.
    /// Default 8192. Exceeding it is `414 URI Too Long`.
    pub max_request_line: usize,
    /// Largest whole head in bytes, request-line and final blank line
    /// included. Default 16384. Exceeding it is `431`.
    pub max_head_size: usize,
    /// Most header fields. Default 100; values above
    /// [`MAX_HEADERS_CAP`] (256) act as 256. Exceeding it is `431`.
    pub max_headers: usize,
}

impl Default for HeadLimits {
    fn default() -> Self {
        HeadLimits {
            max_request_line: 8192,
            max_head_size: 16384,
            max_headers: 100,
        }
    }
}

/// How the body of a message is delimited (RFC 9112 6.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyKind {
    /// No body at all.
    None,
    /// Exactly this many bytes (`Content-Length`); `Length(0)` is an empty body.
    Length(u64),
    /// `Transfer-Encoding: chunked`.
    Chunked,
    /// Everything until the server closes the connection (responses only).
    UntilClose,
}

/// A protocol error, with the status to answer it with.
///
/// For requests the status is the one to send back (400, 414, 431, 501,
/// 505). For responses (client side) it is always `502 Bad Gateway`, as a
/// proxy would report it. `reason` is short, fixed text fit for a log line
/// and a plain-text error body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpError {
    /// Status code describing the error.
    pub status: StatusCode,
    /// What was wrong, in words a user can act on.
    pub reason: &'static str,
}

impl HttpError {
    /// An error with the given status and reason.
    pub const fn new(status: StatusCode, reason: &'static str) -> Self {
        HttpError { status, reason }
    }

    /// A `400 Bad Request` error.
    pub const fn bad_request(reason: &'static str) -> Self {
        HttpError::new(StatusCode::BAD_REQUEST, reason)
    }

    const fn bad_gateway(reason: &'static str) -> Self {
        HttpError::new(StatusCode::BAD_GATEWAY, reason)
    }
}

impl fmt::Display for HttpError {
    /// e.g. "400 Bad Request: missing Host header (required in HTTP/1.1)".
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.status, self.reason)
    }
}

impl std::error::Error for HttpError {}

/// Problems found while looking for the end of the head, before httparse
/// runs; mapped to request- or response-specific errors.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ScanError {
    StartLineTooLong,
    HeadTooLarge,
    TooManyFields,
    BareCr,
    BareLf,
    ObsFold,
}

impl ScanError {
    fn for_request(self) -> HttpError {
        match self {
            ScanError::StartLineTooLong => {
                HttpError::new(StatusCode::URI_TOO_LONG, "request-line too long")
            }
            ScanError::HeadTooLarge => HttpError::new(
                StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
                "request head too large",
            ),
            ScanError::TooManyFields => HttpError::new(
                StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
                "too many header fields",
            ),
            ScanError::BareCr => {
                HttpError::bad_request("bare CR in request head (CR must be followed by LF)")
            }
            ScanError::BareLf => {
                HttpError::bad_request("bare LF in request head (lines must end with CRLF)")
            }
            ScanError::ObsFold => HttpError::bad_request(
                "obsolete line folding (a header line starts with whitespace)",
            ),
        }
    }

    fn for_response(self) -> HttpError {
        HttpError::bad_gateway(match self {
            ScanError::StartLineTooLong => "response status-line too long",
            ScanError::HeadTooLarge => "response head too large",
            ScanError::TooManyFields => "too many header fields in response",
            ScanError::BareCr => "bare CR in response head",
            // The scan is lenient for responses; kept total anyway.
            ScanError::BareLf => "bare LF in response head",
            ScanError::ObsFold => "obsolete line folding in response head",
        })
    }
}

/// Finds the end of a message head incrementally and parses it.
///
/// The caller keeps appending received bytes to one buffer that starts at
/// the head's first byte and calls again after each read; the parser
/// remembers how far it looked, so each call costs O(new bytes) and a
/// client sending one byte at a time cannot cause quadratic work.
///
/// After a call returns `Ok(Some(..))` or `Err(..)` the parser is reset and
/// ready for the next head (whose buffer must again start at its first
/// byte). Call [`reset`](HeadParser::reset) when abandoning a head
/// half-way. If the buffer passed is shorter than what was already seen,
/// the parser assumes a new head and starts over.
#[derive(Debug, Default, Clone)]
pub struct HeadParser {
    /// Bytes of the buffer already examined.
    scanned: usize,
    /// Offset of the line being scanned.
    line_start: usize,
    /// Offset of the start-line's first byte, once seen (leading blank
    /// lines are skipped, RFC 9112 2.2).
    start_line: Option<usize>,
    /// Whether the start-line's LF has been seen.
    start_line_done: bool,
    /// Field lines seen so far (not counting obs-fold continuations).
    field_lines: usize,
    /// The last valid Host value of a request head this parser read. Not part of a head's
    /// state: kept across heads and resets, since it only makes later heads cheaper.
    host_memo: HostMemo,
}

impl HeadParser {
    /// A parser at the start of a head.
    pub fn new() -> Self {
        HeadParser::default()
    }

    /// Forgets any partial head.
    pub fn reset(&mut self) {
        self.scanned = 0;
        self.line_start = 0;
        self.start_line = None;
        self.start_line_done = false;
        self.field_lines = 0;
    }

    /// Parses a request head from `buf`, which holds the bytes received so
    /// far for this head, starting at its first byte.
    ///
    /// Returns `Ok(None)` when more bytes are needed, or
    /// `Ok(Some((head_len, body)))` once the head is complete: `req` is
    /// filled, the body (if any) starts at `buf[head_len]`, and `body`
    /// says how it is delimited. Empty lines before the request-line are
    /// skipped and counted in `head_len`. Errors carry the status to answer
    /// with; the connection should be closed after answering. After an
    /// error `req` may hold the failed request's line (useful for the log)
    /// or still the previous request; do not serve it. While the head is
    /// incomplete `req` holds the previous request or nothing (it may have
    /// been cleared).
    pub fn parse_request(
        &mut self,
        buf: &[u8],
        limits: &HeadLimits,
        req: &mut Request,
    ) -> Result<Option<(usize, BodyKind)>, HttpError> {
        let max_fields = limits.max_headers.min(MAX_HEADERS_CAP);
        if self.scanned == 0 {
            let memo = &mut self.host_memo;
            if let Some(done) = parse_clean_request_head(buf, limits, max_fields, memo, req) {
                return done.map(Some);
            }
        }
        self.parse_request_in_steps(buf, limits, max_fields, req)
    }

    /// The general way of [`parse_request`](HeadParser::parse_request): scan what is new,
    /// then httparse once the head is complete. Kept out of line so that the fast path's
    /// function stays small.
    #[inline(never)]
    fn parse_request_in_steps(
        &mut self,
        buf: &[u8],
        limits: &HeadLimits,
        max_fields: usize,
        req: &mut Request,
    ) -> Result<Option<(usize, BodyKind)>, HttpError> {
        let head_len = match self.scan(buf, limits, max_fields, false) {
            Ok(Some(len)) => len,
            Ok(None) => return Ok(None),
            Err(e) => {
                self.reset();
                return Err(e.for_request());
            }
        };
        self.reset();
        let head = buf.get(..head_len).unwrap_or(buf);
        let kind = parse_request_head(head, max_fields, req)?;
        Ok(Some((head_len, kind)))
    }

    /// Parses a response head, like [`parse_request`](HeadParser::parse_request).
    ///
    /// `request_method` is the method of the request this answers; with the
    /// status it decides the body (RFC 9112 6.3): responses to HEAD, 1xx,
    /// 204 and 304 have none; a 2xx to CONNECT starts a tunnel (none);
    /// otherwise chunked if `Transfer-Encoding` ends with chunked (any
    /// `Content-Length` is then ignored), else `Content-Length`, else until
    /// close. Parsing is lenient where RFC 9112 lets a client be: bare LF
    /// line endings, obs-fold (unfolded to spaces) and whitespace before a
    /// field's colon are accepted.
    pub fn parse_response(
        &mut self,
        buf: &[u8],
        limits: &HeadLimits,
        request_method: Method,
        resp: &mut ResponseHead,
    ) -> Result<Option<(usize, BodyKind)>, HttpError> {
        let max_fields = limits.max_headers.min(MAX_HEADERS_CAP);
        let head_len = match self.scan(buf, limits, max_fields, true) {
            Ok(Some(len)) => len,
            Ok(None) => return Ok(None),
            Err(e) => {
                self.reset();
                return Err(e.for_response());
            }
        };
        self.reset();
        let head = buf.get(..head_len).unwrap_or(buf);
        let kind = parse_response_head(head, max_fields, request_method, resp)?;
        Ok(Some((head_len, kind)))
    }

    /// Looks for the blank line ending the head in the bytes not examined
    /// yet, enforcing the limits and line-ending rules on the way.
    /// `lenient` (responses) accepts bare LF line endings and obs-fold.
    fn scan(
        &mut self,
        buf: &[u8],
        limits: &HeadLimits,
        max_fields: usize,
        lenient: bool,
    ) -> Result<Option<usize>, ScanError> {
        if buf.len() < self.scanned {
            self.reset();
        }
        // A head ending within the limit has its final LF before this
        // index, so bytes beyond it never need examining.
        let window = buf.len().min(limits.max_head_size);
        let mut i = self.scanned;
        while i < window {
            let line_break = find_line_break(&buf[i..window]).map(|p| i + p);
            let Some(brk) = line_break else {
                if self.start_line.is_none() {
                    self.start_line = Some(i);
                }
                i = window;
                break;
            };
            if brk > i && self.start_line.is_none() {
                self.start_line = Some(i);
            }
            i = brk;
            let content_end = i;
            if buf[i] == b'\r' {
                match buf.get(i + 1) {
                    // The LF may be in the next read: look at this CR again then.
                    None => break,
                    Some(b'\n') => i += 1,
                    Some(_) => return Err(ScanError::BareCr),
                }
            } else if !lenient {
                return Err(ScanError::BareLf);
            }
            // `i` is at the LF that ends the line `line_start..content_end`.
            let line_start = self.line_start;
            self.line_start = i + 1;
            i += 1;
            let Some(start) = self.start_line else {
                continue; // a blank line before the start-line
            };
            if !self.start_line_done {
                if content_end - start > limits.max_request_line {
                    return Err(ScanError::StartLineTooLong);
                }
                self.start_line_done = true;
            } else if content_end == line_start {
                if i > limits.max_head_size {
                    return Err(ScanError::HeadTooLarge);
                }
                return Ok(Some(i));
            } else if matches!(buf[line_start], b' ' | b'\t') {
                if !lenient {
                    return Err(ScanError::ObsFold);
                }
            } else {
                self.field_lines += 1;
                if self.field_lines > max_fields {
                    return Err(ScanError::TooManyFields);
                }
            }
        }
        self.scanned = i;
        if let (Some(start), false) = (self.start_line, self.start_line_done) {
            if i - start > limits.max_request_line {
                return Err(ScanError::StartLineTooLong);
            }
        }
        if buf.len() > limits.max_head_size {
            return Err(ScanError::HeadTooLarge);
        }
        Ok(None)
    }
}

/// httparse's header array type for one parse.
type HeaderSlots<'b> = [MaybeUninit<httparse::Header<'b>>; MAX_HEADERS_CAP];

// Byte classes for the single-pass head parser and the Host check: one table lookup says
// what a byte may be. A byte can be in several classes.

/// Token bytes (RFC 9110 tchar): methods and field names.
const CLASS_TCHAR: u8 = 1;
/// Request-target bytes the fast path takes: `0x21..=0x7E` except '#' (a fragment: an error
/// the fallback words).
const CLASS_TARGET: u8 = 2;
/// Bytes a `Host` value may hold (see [`is_host_value`]).
const CLASS_HOST: u8 = 4;
/// Every byte but '?': a target all of whose bytes are in it has no query.
const CLASS_NOT_QUERY: u8 = 8;

/// The classes of every byte value, built once at compile time.
static CLASS: [u8; 256] = {
    let mut table = [0u8; 256];
    let mut b = 0;
    while b < 256 {
        let c = b as u8;
        let mut class = 0;
        if is_tchar(c) {
            class |= CLASS_TCHAR;
        }
        if c >= 0x21 && c <= 0x7e && c != b'#' {
            class |= CLASS_TARGET;
        }
        if is_host_byte(c) {
            class |= CLASS_HOST;
        }
        if c != b'?' {
            class |= CLASS_NOT_QUERY;
        }
        table[b] = class;
        b += 1;
    }
    table
};

/// Whether byte `b` is in `class`.
#[inline(always)]
fn is(class: u8, b: u8) -> bool {
    CLASS[usize::from(b)] & class != 0
}

/// The fast path for a head that arrived whole (the usual case): one strict pass over a
/// clean head that fills `req` as it goes. It accepts only what it is sure of, a subset of
/// what the scanner and httparse accept, and gives exactly their result for it: the
/// request-line at byte 0 as `token SP target SP HTTP/1.x CRLF` with a target of visible
/// ASCII without '#', then `token ":" OWS value CRLF` field lines with values of HTAB, SP,
/// visible ASCII and obs-text, then CRLF, within the limits. Anything else (incomplete, blank
/// lines first, bare CR or LF, obs-fold, whitespace before a colon, a control byte, a limit
/// reached, a target form the method may not use) is `None`, "not sure": the scanner and
/// httparse then decide and word the error. `req` is left cleared when this declines after
/// touching it. `memo` is the parser's remembered Host value (see [`HostMemo`]).
///
/// Inlined into [`HeadParser::parse_request`]: one function entry fewer per request.
#[inline(always)]
fn parse_clean_request_head(
    buf: &[u8],
    limits: &HeadLimits,
    max_fields: usize,
    memo: &mut HostMemo,
    req: &mut Request,
) -> Option<Result<(usize, BodyKind), HttpError>> {
    // A head ending within the limit ends inside this window (as for the scanner).
    let window = &buf[..buf.len().min(limits.max_head_size)];

    // Method: 1*tchar SP; GET, by far the most common, in one comparison. Otherwise the token
    // is what precedes the first SP and must be all tchar: SP is not a tchar, so that is the
    // same as "the first byte that is not a tchar is SP", checked a word at a time.
    let (method, method_end) = if window.starts_with(b"GET ") {
        (Method::Get, 3)
    } else {
        let end = find_byte(window, b' ')?;
        if classes_of(&window[..end]) & CLASS_TCHAR == 0 {
            return None;
        }
        (Method::from_bytes(&window[..end]), end)
    };

    // Target: 1*(visible ASCII but '#') SP, found the same way; its first '?' starts the
    // query (later ones are query bytes), and the same lookups say whether there is one.
    let rest = &window[method_end + 1..];
    let target_len = find_byte(rest, b' ')?;
    let target_bytes = &rest[..target_len];
    let classes = classes_of(target_bytes);
    if classes & CLASS_TARGET == 0 {
        return None;
    }
    let query_at = if classes & CLASS_NOT_QUERY != 0 {
        None
    } else {
        find_byte(target_bytes, b'?')
    };

    // Version and the line's CRLF: one word and two bytes.
    let version = rest.get(target_len + 1..target_len + 11)?;
    let version = match (
        u64::from_le_bytes(version[..8].try_into().ok()?),
        &version[8..],
    ) {
        (HTTP_1_1, b"\r\n") => Version::Http11,
        (HTTP_1_0, b"\r\n") => Version::Http10,
        _ => return None,
    };
    // The scanner's limit is on the line without its CRLF.
    let line_len = method_end + 1 + target_len + 9;
    if line_len > limits.max_request_line {
        return None;
    }
    // This also empties the previous request's fields and summary. The target is taken as
    // origin-form without a query, the usual case, and its parts are then set where that is
    // not so: in place, rather than built apart and copied in.
    req.set_parsed_line(method, &window[..method_end], target_bytes, version);
    let check_form = if target_bytes[0] == b'/' {
        // Origin-form: the split `analyze_target` would make, from what the scan noted.
        if let Some(q) = query_at {
            req.split_query_at(q);
        }
        // Fine for every method but CONNECT.
        method == Method::Connect
    } else {
        // The other forms are rare: the general code, on the text just copied.
        req.set_target_parts(analyze_target(req.target()));
        true
    };
    // A target form the method may not use is an error the fallback reports, with the
    // request in the state it leaves it in.
    if check_form && check_target_form(req).is_err() {
        req.clear();
        return None;
    }

    let fields_start = line_len + 2;
    let Some(packed) = parse_clean_fields(&window[fields_start..], max_fields, memo, req) else {
        req.clear();
        return None;
    };
    let (len, facts) = (packed >> 8, packed as u32 & 0xff);
    Some(finish_clean_request(facts, version, req).map(|kind| (fields_start + len, kind)))
}

/// "HTTP/1.1" and "HTTP/1.0" as the little-endian words the version is compared with.
const HTTP_1_1: u64 = u64::from_le_bytes(*b"HTTP/1.1");
const HTTP_1_0: u64 = u64::from_le_bytes(*b"HTTP/1.0");

// What the fast field loop notes about a head, one bit each, so that it keeps them in one
// register instead of a `Framing` in memory: the two below, and the summary's `FACT_*` bits. Anything a `Framing` would have to weigh (a body
// announced, a second or invalid Host) is only marked `FACT_RECHECK`: `Framing` then looks at
// the recorded fields again, which a head with a body can afford.

/// One valid `Host` field seen.
const FACT_HOST: u32 = 1;
/// `Content-Length`, `Transfer-Encoding`, a second `Host` or an invalid one: the fields are
/// judged again by [`Framing`].
const FACT_RECHECK: u32 = 2;
/// The field lines and the final CRLF of [`parse_clean_request_head`] (`fields` starts after
/// the request-line): each field is recorded as it passes, so the head is read once, and the
/// fields are copied into the request in one piece at the end. Returns the length of the
/// field section with its final CRLF shifted left by 8 and the `FACT_*` bits of its fields
/// (all below 256) in the low byte: one register, where a pair would be returned in memory.
/// Kept out of line: inlined into `parse_request`, the loop's values no longer fit in
/// registers and each field costs more than the call saves.
#[inline(never)]
fn parse_clean_fields(
    fields: &[u8],
    max_fields: usize,
    memo: &mut HostMemo,
    req: &mut Request,
) -> Option<usize> {
    let mut block = req.headers_mut().block();
    let (len, facts) = clean_field_lines(fields, max_fields, &mut block, memo)?;
    block.finish(&fields[..len]);
    // A head is far shorter than 2^56 bytes: nothing is lost in the shift.
    Some((len + 2) << 8 | facts as usize)
}

/// Decides the body of a request the fast path read, from the `FACT_*` bits of its fields,
/// and records the summary. One valid Host and no body announced, as most requests are, is
/// decided here: exactly what `finish_request` decides and records for it. Anything else is
/// decided by a [`Framing`] of the recorded fields, as the fallback decides it.
#[inline(always)]
fn finish_clean_request(
    facts: u32,
    version: Version,
    req: &mut Request,
) -> Result<BodyKind, HttpError> {
    if facts & (FACT_HOST | FACT_RECHECK) != FACT_HOST {
        return finish_rechecked(version, req);
    }
    // The summary's bits are the loop's but its own two.
    req.set_summary(Summary {
        content_length: None,
        facts: facts & !(FACT_HOST | FACT_RECHECK),
    });
    Ok(BodyKind::None)
}

/// [`finish_clean_request`] for a head whose framing needs weighing: a [`Framing`] of the
/// fields just recorded, which are the ones the fallback would feed it. Out of line: rare.
#[inline(never)]
fn finish_rechecked(version: Version, req: &mut Request) -> Result<BodyKind, HttpError> {
    let framing = Framing::of(req.headers());
    finish_request(framing, version, req)
}

/// The `FACT_*` bits a `Connection` value adds: what `Framing` notes for it.
#[inline(always)]
fn connection_facts(value: &[u8]) -> u32 {
    // The usual values, a single token, without taking the list apart. Setting bit 0x20
    // folds the case of letters; '-' is the one other byte, checked as it is.
    if value.len() == 10 && folded_eq(value, b"keep-alive") && value[4] == b'-' {
        FACT_KEEP_ALIVE
    } else if value.len() == 5 && folded_eq(value, b"close") {
        FACT_CLOSE
    } else {
        connection_list_facts(value)
    }
}

/// [`connection_facts`] for a list (or an unusual token). Out of line: rare.
#[inline(never)]
fn connection_list_facts(value: &[u8]) -> u32 {
    let mut facts = 0;
    for token in list_elements(value) {
        if token.eq_ignore_ascii_case(b"close") {
            facts |= FACT_CLOSE;
        } else if token.eq_ignore_ascii_case(b"keep-alive") {
            facts |= FACT_KEEP_ALIVE;
        } else if token.eq_ignore_ascii_case(b"upgrade") {
            facts |= FACT_CONN_UPGRADE;
        }
    }
    facts
}

/// The `FACT_*` bits a field other than `Host` adds. Out of line: most fields are not one of
/// these, and the loop stays smaller without them.
#[inline(never)]
fn field_facts(field: FieldName, value: &[u8]) -> u32 {
    match field {
        FieldName::Connection => connection_facts(value),
        FieldName::Upgrade => FACT_UPGRADE,
        FieldName::Expect if trim_ows(value).eq_ignore_ascii_case(b"100-continue") => {
            FACT_EXPECT_CONTINUE
        }
        FieldName::ContentLength | FieldName::TransferEncoding => FACT_RECHECK,
        _ => 0,
    }
}

/// The bits a `Host` field adds to `facts`: the first valid one is noted, a second one or an
/// invalid one leaves the decision to `Framing`.
#[inline(always)]
fn host_facts(facts: u32, valid: bool) -> u32 {
    if valid && facts & FACT_HOST == 0 {
        FACT_HOST
    } else {
        FACT_RECHECK
    }
}

/// The loop of [`parse_clean_fields`]: records each field line of `fields` in `block` and
/// notes its `FACT_*` bits, and returns where the final CRLF starts with the bits. A function
/// of its own so that the compiler knows its references do not overlap and keeps their
/// contents in registers across lines.
#[inline(always)]
fn clean_field_lines(
    fields: &[u8],
    max_fields: usize,
    block: &mut FieldBlock<'_>,
    memo: &mut HostMemo,
) -> Option<(usize, u32)> {
    // Field lines still allowed: counting down needs one register and one test.
    let mut left = max_fields;
    let mut facts = 0;
    let mut line = fields;
    loop {
        // A line that starts with CR is the end of the head (CRLF) or a bare CR.
        match line {
            [b'\r', b'\n', ..] => return Some((fields.len() - line.len(), facts)),
            [] | [b'\r', ..] => return None,
            _ => {}
        }
        // Field name: 1*tchar ":". Most lines start with a name as browsers and tools spell
        // it, followed by ": ", which a word comparison or two recognise whole. Otherwise
        // the name is what precedes the first ':' and must be all tchar; ':' is not a
        // tchar, so that is "the first byte that is not a tchar is ':'". A line that starts
        // otherwise (obs-fold, a bare LF, an empty name...) is for the fallback.
        let (name_len, field, mut value_start) = match usual_name(line) {
            Some((name_len, field)) => (name_len, field, name_len + 2),
            None => {
                let name_len = find_byte(line, b':')?;
                let name = &line[..name_len];
                if classes_of(name) & CLASS_TCHAR == 0 {
                    return None;
                }
                let mut value_start = name_len + 1;
                if line.get(value_start) == Some(&b' ') {
                    value_start += 1;
                }
                (name_len, FieldName::of_token(name), value_start)
            }
        };
        left = left.checked_sub(1)?;
        // Leading OWS is not part of the value (httparse skips it too). A line that ends in
        // it is incomplete, which the search below finds. Usually a single SP, already
        // passed: the loop's first test ends it.
        while matches!(line.get(value_start), Some(b' ' | b'\t')) {
            value_start += 1;
        }
        let at = fields.len() - line.len();
        // A client sends the same Host on every request: the last valid value is
        // remembered, and a repeat with its CRLF is recognised by one comparison, which
        // also ends the line.
        if field == FieldName::Host {
            if let Some(value_end) = memo.matches(line, value_start) {
                block.push(at..at + name_len, at + value_start..at + value_end);
                facts |= host_facts(facts, true);
                line = &line[value_end + 2..];
                continue;
            }
        }
        // The value ends at the first byte a value cannot hold, which must be the line's
        // CRLF (not a bare CR, LF, or another control byte).
        let mut value_end = value_end_in(line, value_start)?;
        if line.get(value_end..value_end + 2) != Some(b"\r\n") {
            return None;
        }
        let line_end = value_end + 2;
        // Trailing OWS is not part of the value either. The byte before the CR is the
        // colon's or a value's: the loop runs only when it is whitespace, which is rare.
        if matches!(line[value_end - 1], b' ' | b'\t') {
            while value_end > value_start && matches!(line[value_end - 1], b' ' | b'\t') {
                value_end -= 1;
            }
        }
        block.push(at..at + name_len, at + value_start..at + value_end);
        match field {
            FieldName::Other => {}
            FieldName::Host => {
                facts |= host_facts(facts, memo.judge(&line[value_start..value_end]));
            }
            _ => facts |= field_facts(field, &line[value_start..value_end]),
        }
        line = &line[line_end..];
    }
}

/// The length and class of the field name `line` starts with if it is one of the names
/// requests usually carry, spelled as browsers and tools spell them and followed by ": ".
/// Such a name is a token and its first ':' is the one after it, so this is what the general
/// search and checks would find, in a jump on the first byte and a word comparison or two.
/// Not a memory of earlier requests: a fixed list, which pays off for any client.
#[inline(always)]
fn usual_name(line: &[u8]) -> Option<(usize, FieldName)> {
    let (len, field) = match *line.first()? {
        b'H' if starts_with_const(line, b"Host: ") => (4, FieldName::Host),
        b'U' if starts_with_const(line, b"User-Agent: ") => (10, FieldName::Other),
        b'U' if starts_with_const(line, b"Upgrade-Insecure-Requests: ") => (25, FieldName::Other),
        b'A' if starts_with_const(line, b"Accept: ") => (6, FieldName::Other),
        b'A' if starts_with_const(line, b"Accept-Encoding: ") => (15, FieldName::Other),
        b'A' if starts_with_const(line, b"Accept-Language: ") => (15, FieldName::Other),
        b'C' if starts_with_const(line, b"Connection: ") => (10, FieldName::Connection),
        b'C' if starts_with_const(line, b"Cookie: ") => (6, FieldName::Other),
        b'C' if starts_with_const(line, b"Cache-Control: ") => (13, FieldName::Other),
        b'C' if starts_with_const(line, b"Content-Length: ") => (14, FieldName::ContentLength),
        b'C' if starts_with_const(line, b"Content-Type: ") => (12, FieldName::Other),
        _ => return None,
    };
    Some((len, field))
}

/// `line.starts_with(pattern)` for a constant `pattern` of at least 4 bytes, a word at a
/// time: the words of `pattern` are constants once inlined, and the loop is unrolled.
#[inline(always)]
fn starts_with_const(line: &[u8], pattern: &[u8]) -> bool {
    debug_assert!(pattern.len() >= 4);
    line.get(..pattern.len())
        .is_some_and(|head| same_bytes(head, pattern))
}

/// Index of the first `byte` in `hay`, eight bytes at a time (see [`find_line_break`]).
#[inline(always)]
fn find_byte(hay: &[u8], byte: u8) -> Option<usize> {
    let pattern = WORD_LO * u64::from(byte);
    find_marked(hay, |w| zero_byte_marks(w ^ pattern), |b| b == byte)
}

/// The classes every byte of `s` is in (see [`CLASS`]); none for an empty `s`. The table
/// lookups are combined and tested by the caller once, instead of a test and a branch per
/// byte: names and targets are mostly valid. Fewer than eight bytes are looked up as two
/// overlapping fours, or three single bytes.
#[inline(always)]
fn classes_of(s: &[u8]) -> u8 {
    let n = s.len();
    match n {
        0 => 0,
        1..=3 => class_of(s[0]) & class_of(s[n / 2]) & class_of(s[n - 1]),
        4..=7 => {
            let head: &[u8; 4] = s[..4].try_into().expect("4 bytes");
            let tail: &[u8; 4] = s[n - 4..].try_into().expect("4 bytes");
            classes_of_4(head) & classes_of_4(tail)
        }
        _ => {
            // The last eight (overlapping the others), then the rest eight at a time.
            let mut found = classes_of_8(s[n - 8..].try_into().expect("8 bytes"));
            let mut at = 0;
            while at + 8 < n {
                found &= classes_of_8(s[at..at + 8].try_into().expect("8 bytes"));
                at += 8;
            }
            found
        }
    }
}

/// The class byte of `b` (see [`CLASS`]).
#[inline(always)]
fn class_of(b: u8) -> u8 {
    CLASS[usize::from(b)]
}

/// [`classes_of`] four bytes.
#[inline(always)]
fn classes_of_4(s: &[u8; 4]) -> u8 {
    class_of(s[0]) & class_of(s[1]) & class_of(s[2]) & class_of(s[3])
}

/// [`classes_of`] eight bytes.
#[inline(always)]
fn classes_of_8(s: &[u8; 8]) -> u8 {
    let (a, b) = s.split_at(4);
    classes_of_4(a.try_into().expect("4 bytes")) & classes_of_4(b.try_into().expect("4 bytes"))
}

/// The last valid Host value a [`HeadParser`] found (see `parse_clean_fields`). A client sends the same Host on every request, so a repeat is
/// recognised by a few word comparisons instead of a table lookup per byte; kept in the
/// parser, which lives as long as its connection's requests, so no thread-local lookup is
/// needed to reach it. Values longer than the memo are simply not remembered.
#[derive(Debug, Clone)]
struct HostMemo {
    /// Length of the value with its CRLF; 0 when nothing is remembered.
    len: usize,
    /// The value followed by CRLF: a repeat and the end of its line are one comparison.
    bytes: [u8; HOST_MEMO_MAX + 2],
}

const HOST_MEMO_MAX: usize = 64;

impl Default for HostMemo {
    fn default() -> Self {
        HostMemo {
            len: 0,
            bytes: [0; HOST_MEMO_MAX + 2],
        }
    }
}

impl HostMemo {
    /// Where the remembered value ends if `line[at..]` starts with it and its CRLF.
    #[inline(always)]
    fn matches(&self, line: &[u8], at: usize) -> Option<usize> {
        let len = self.len;
        let value = line.get(at..at + len)?;
        (len != 0 && same_bytes(value, &self.bytes[..len])).then_some(at + len - 2)
    }

    /// Whether `value` is a valid Host value, looked at byte by byte; remembered if it is.
    /// Out of line: a connection's first request comes here, its next ones do not.
    #[inline(never)]
    fn judge(&mut self, value: &[u8]) -> bool {
        let valid = is_host_value(value);
        if valid {
            self.remember(value);
        }
        valid
    }

    fn remember(&mut self, value: &[u8]) {
        let len = value.len();
        if len != 0 && len <= HOST_MEMO_MAX {
            self.bytes[..len].copy_from_slice(value);
            self.bytes[len..len + 2].copy_from_slice(b"\r\n");
            self.len = len + 2;
        }
    }
}

/// Index of the first byte at or after `i` in `line` that cannot be in a field value (a
/// control byte other than HTAB, or DEL; normally the line's CR), or `None` when `line` ends
/// first. Eight bytes at a time: values such as `User-Agent` or `Cookie` are long. Inlined
/// into its one caller, the fast path's field loop, where a call would cost more than a
/// short value's scan.
#[inline(always)]
fn value_end_in(line: &[u8], mut i: usize) -> Option<usize> {
    const LO: u64 = 0x0101_0101_0101_0101;
    const HI: u64 = 0x8080_8080_8080_8080;
    const DEL: u64 = LO * 0x7f;
    while let Some(chunk) = line.get(i..i + 8) {
        let w = u64::from_le_bytes(chunk.try_into().expect("8 bytes"));
        // Bytes below 0x20, and bytes equal to DEL (zero after the XOR). As in
        // `find_line_break`, borrows only mark bytes above a real mark, so the lowest mark is
        // a real one; bytes >= 0x80 (obs-text) are never marked (`& !w`).
        let x = w ^ DEL;
        let marks = (w.wrapping_sub(LO * 0x20) & !w & HI) | (x.wrapping_sub(LO) & !x & HI);
        if marks == 0 {
            i += 8;
            continue;
        }
        let at = i + (marks.trailing_zeros() / 8) as usize;
        if line[at] != b'\t' {
            return Some(at);
        }
        i = at + 1;
    }
    // Fewer than eight bytes left: one at a time.
    line[i..]
        .iter()
        .position(|&b| (b < 0x20 && b != b'\t') || b == 0x7f)
        .map(|p| i + p)
}

fn parse_request_head(
    head: &[u8],
    max_fields: usize,
    req: &mut Request,
) -> Result<BodyKind, HttpError> {
    // Uninitialised slots: httparse writes the ones it uses, so there is
    // no per-call cost proportional to the cap.
    let mut slots: HeaderSlots<'_> = [MaybeUninit::uninit(); MAX_HEADERS_CAP];
    let mut parsed = httparse::Request::new(&mut []);
    let slots = slots.get_mut(..max_fields).unwrap_or_default();
    match parsed.parse_with_uninit_headers(head, slots) {
        Ok(httparse::Status::Complete(_)) => {}
        Ok(httparse::Status::Partial) => {
            return Err(
                diagnose_request(head).unwrap_or(HttpError::bad_request("malformed request head"))
            )
        }
        Err(httparse::Error::TooManyHeaders) => return Err(ScanError::TooManyFields.for_request()),
        Err(httparse::Error::Version) if higher_http1_minor_at(head).is_some() => {
            return parse_as_http11(head, max_fields, req);
        }
        Err(e) => {
            return Err(diagnose_request(head).unwrap_or_else(|| {
                diagnose_field_lines(head).map_or_else(|| header_error(e), HttpError::bad_request)
            }))
        }
    }
    fill_request(&parsed, req)
}

/// Where the request-line's version is `HTTP/1.x` with a minor version above 1 (`x` its index
/// in `head`), if it is.
fn higher_http1_minor_at(head: &[u8]) -> Option<usize> {
    // Blank lines before the request-line are allowed (RFC 9112 2.2) and skipped.
    let start = head.iter().position(|&b| b != b'\r' && b != b'\n')?;
    let lf = start + head[start..].iter().position(|&b| b == b'\n')?;
    let line_end = if head[lf - 1] == b'\r' { lf - 1 } else { lf };
    let version = line_end.checked_sub(8).filter(|&at| at > start)?;
    let minor = version + 7;
    (head[version - 1] == b' '
        && head[version..minor] == *b"HTTP/1."
        && (b'2'..=b'9').contains(&head[minor]))
    .then_some(minor)
}

/// RFC 9110 2.5: a request of a higher minor version of HTTP/1 is processed as the highest
/// this server implements, HTTP/1.1 (and answered as HTTP/1.1). httparse knows only 1.0 and
/// 1.1, so it parses a copy whose request-line says 1.1: one copy, for a rare request.
fn parse_as_http11(
    head: &[u8],
    max_fields: usize,
    req: &mut Request,
) -> Result<BodyKind, HttpError> {
    let mut copy = head.to_vec();
    if let Some(minor) = higher_http1_minor_at(&copy) {
        copy[minor] = b'1';
    }
    parse_request_head(&copy, max_fields, req)
}

/// Copies a parsed request head into `req` and works out how its body is framed.
fn fill_request(
    parsed: &httparse::Request<'_, '_>,
    req: &mut Request,
) -> Result<BodyKind, HttpError> {
    let (Some(method), Some(target), Some(minor)) = (parsed.method, parsed.path, parsed.version)
    else {
        return Err(HttpError::bad_request("malformed request-line"));
    };
    let version = if minor == 0 {
        Version::Http10
    } else {
        Version::Http11
    };
    check_target_bytes(target.as_bytes())?;

    req.clear();
    req.set_method(method);
    req.set_target(target);
    req.set_version(version);
    check_target_form(req)?;

    let mut framing = Framing::default();
    let headers = req.headers_mut();
    for field in parsed.headers.iter() {
        headers.append_value_bytes(field.name, field.value);
        framing.feed(field.name.as_bytes(), field.value);
    }
    finish_request(framing, version, req)
}

/// Decides the body of a request whose fields `framing` has seen, and records what the
/// connection will ask about them; shared by both parsers so they cannot drift apart. On an
/// error no summary is recorded (the request is not served).
#[inline]
fn finish_request(
    framing: Framing,
    version: Version,
    req: &mut Request,
) -> Result<BodyKind, HttpError> {
    let body = framing.request_body(version)?;
    // Facts the connection asks for on every request, computed once while the fields pass by.
    let bit = |set: bool, bit: u32| if set { bit } else { 0 };
    req.set_summary(Summary {
        content_length: framing.content_length(),
        facts: bit(framing.is_chunked(), FACT_CHUNKED)
            | bit(framing.conn_close, FACT_CLOSE)
            | bit(framing.conn_keep_alive, FACT_KEEP_ALIVE)
            | bit(framing.conn_upgrade, FACT_CONN_UPGRADE)
            | bit(framing.upgrade_field, FACT_UPGRADE)
            | bit(framing.expect_continue, FACT_EXPECT_CONTINUE),
    });
    Ok(body)
}

/// Index of the first CR or LF, eight bytes at a time: the head scanner spends most of its
/// time here. A byte equal to CR or LF becomes zero after the XOR; the classic "has a zero byte"
/// test marks it. Borrows can only mark bytes *after* a real zero, so the lowest mark
/// (little-endian order) is always the first real one.
#[inline]
fn find_line_break(hay: &[u8]) -> Option<usize> {
    const CR: u64 = WORD_LO * b'\r' as u64;
    const LF: u64 = WORD_LO * b'\n' as u64;
    find_marked(
        hay,
        |w| zero_byte_marks(w ^ CR) | zero_byte_marks(w ^ LF),
        |b| b == b'\r' || b == b'\n',
    )
}

/// Each byte of a word, repeated: `0x0101..01`.
const WORD_LO: u64 = 0x0101_0101_0101_0101;

/// The classic "has a zero byte" test: the high bit of each zero byte of `x` is set (and
/// perhaps of bytes above a zero byte, through borrows, so the lowest mark is a real one).
#[inline(always)]
fn zero_byte_marks(x: u64) -> u64 {
    const HI: u64 = 0x8080_8080_8080_8080;
    x.wrapping_sub(WORD_LO) & !x & HI
}

/// Index of the first byte of `hay` that `marks` marks in its little-endian word, eight bytes
/// at a time; the last few bytes are tested one by one with `is`, which must agree.
#[inline(always)]
fn find_marked(hay: &[u8], marks: impl Fn(u64) -> u64, is: impl Fn(u8) -> bool) -> Option<usize> {
    let mut chunks = hay.chunks_exact(8);
    let mut base = 0;
    for chunk in &mut chunks {
        let found = marks(u64::from_le_bytes(chunk.try_into().expect("8 bytes")));
        if found != 0 {
            return Some(base + (found.trailing_zeros() / 8) as usize);
        }
        base += 8;
    }
    chunks
        .remainder()
        .iter()
        .position(|&b| is(b))
        .map(|p| base + p)
}

/// httparse accepts some bytes in a target that RFC 9112 does not.
fn check_target_bytes(target: &[u8]) -> Result<(), HttpError> {
    for &b in target {
        if b >= 0x80 {
            return Err(HttpError::bad_request(
                "request-target contains non-ASCII bytes (they must be percent-encoded)",
            ));
        }
        if b == b'#' {
            return Err(HttpError::bad_request(
                "request-target contains a fragment ('#'), which must not be sent",
            ));
        }
    }
    Ok(())
}

/// RFC 9112 3.2: which target form each method may use.
fn check_target_form(req: &Request) -> Result<(), HttpError> {
    let method = req.method();
    match req.target_form() {
        TargetForm::Authority if method == Method::Connect => {
            if is_authority_with_port(req.target().as_bytes()) {
                Ok(())
            } else {
                Err(HttpError::bad_request(
                    "CONNECT request-target must be host:port (authority-form)",
                ))
            }
        }
        _ if method == Method::Connect => Err(HttpError::bad_request(
            "CONNECT request-target must be host:port (authority-form)",
        )),
        TargetForm::Authority => Err(HttpError::bad_request(
            "request-target must start with '/' (origin-form) or be an absolute URI",
        )),
        TargetForm::Asterisk if method != Method::Options => Err(HttpError::bad_request(
            "request-target '*' is only allowed with OPTIONS",
        )),
        _ => Ok(()),
    }
}

/// `uri-host ":" port` with a non-empty host and a port of 1-5 digits.
fn is_authority_with_port(target: &[u8]) -> bool {
    let Some(colon) = target.iter().rposition(|&b| b == b':') else {
        return false;
    };
    let (host, port) = (&target[..colon], &target[colon + 1..]);
    let port_ok = !port.is_empty() && port.len() <= 5 && port.iter().all(u8::is_ascii_digit);
    port_ok && !host.is_empty() && is_host_value(host)
}

/// Characters a `Host` value may hold: uri-host (reg-name, IPv4, or a
/// bracketed IP literal) with an optional `:port` (RFC 9110 7.2,
/// RFC 3986 3.2.2). Rejecting the rest keeps junk such as spaces, '/' or
/// '@' out of anything that later builds URLs from it.
fn is_host_value(value: &[u8]) -> bool {
    // A table (in `CLASS`), since every request's Host passes through here.
    value.iter().all(|&b| is(CLASS_HOST, b))
}

/// The bytes a Host value may hold (RFC 3986 reg-name / IP-literal / IPv4 plus ':' and the
/// port).
const fn is_host_byte(c: u8) -> bool {
    c.is_ascii_alphanumeric()
        || matches!(
            c,
            b'-' | b'.'
                | b'_'
                | b'~'
                | b'!'
                | b'$'
                | b'&'
                | b'\''
                | b'('
                | b')'
                | b'*'
                | b'+'
                | b','
                | b';'
                | b'='
                | b'%'
                | b':'
                | b'['
                | b']'
        )
}

/// Explains an httparse failure by re-examining the request-line; `None`
/// when the request-line is fine (the problem is in a field).
fn diagnose_request(head: &[u8]) -> Option<HttpError> {
    let start = head
        .iter()
        .position(|&b| b != b'\r' && b != b'\n')
        .unwrap_or(head.len());
    let rest = &head[start..];
    let line_end = rest
        .iter()
        .position(|&b| b == b'\r' || b == b'\n')
        .unwrap_or(rest.len());
    let line = &rest[..line_end];

    let mut parts = line.splitn(3, |&b| b == b' ');
    let method = parts.next().unwrap_or_default();
    if !is_token(method) {
        return Some(HttpError::bad_request(
            "invalid request method (must be a token such as GET)",
        ));
    }
    let Some(target) = parts.next() else {
        return Some(HttpError::bad_request(
            "malformed request-line (expected: METHOD SP request-target SP HTTP-version)",
        ));
    };
    if target.is_empty() {
        return Some(HttpError::bad_request(
            "malformed request-line (use single spaces between method, target and version)",
        ));
    }
    if target.iter().any(|&b| b <= 0x20 || b == 0x7f) {
        return Some(HttpError::bad_request(
            "invalid character in request-target",
        ));
    }
    if let Err(e) = check_target_bytes(target) {
        return Some(e);
    }
    let Some(version) = parts.next() else {
        return Some(HttpError::new(
            StatusCode::HTTP_VERSION_NOT_SUPPORTED,
            "request-line has no HTTP version (HTTP/0.9 is not supported)",
        ));
    };
    if version == b"HTTP/1.1" || version == b"HTTP/1.0" {
        return None;
    }
    if version.contains(&b' ') {
        return Some(HttpError::bad_request(
            "malformed request-line (too many spaces; spaces in the target must be percent-encoded)",
        ));
    }
    if let Some(number) = version.strip_prefix(b"HTTP/") {
        let looks_like_version = !number.is_empty()
            && number[0].is_ascii_digit()
            && number.iter().all(|&b| b.is_ascii_digit() || b == b'.');
        if looks_like_version {
            return Some(HttpError::new(
                StatusCode::HTTP_VERSION_NOT_SUPPORTED,
                "HTTP version not supported (only HTTP/1.0 and HTTP/1.1)",
            ));
        }
    }
    if target.iter().any(|&b| !httparse_uri_byte(b)) {
        return Some(HttpError::bad_request(
            "invalid character in request-target",
        ));
    }
    Some(HttpError::bad_request(
        "malformed HTTP version in request-line (expected HTTP/1.1)",
    ))
}

/// The target bytes httparse accepts (visible ASCII and bytes >= 0x80).
fn httparse_uri_byte(b: u8) -> bool {
    (0x21..0x7f).contains(&b) || b >= 0x80
}

/// Explains a field-level httparse error by finding the offending line.
fn header_error(e: httparse::Error) -> HttpError {
    match e {
        httparse::Error::HeaderName => HttpError::bad_request(
            "invalid header name (check for whitespace before ':' or a missing ':')",
        ),
        httparse::Error::HeaderValue => {
            HttpError::bad_request("invalid character in header value (control character or NUL)")
        }
        httparse::Error::TooManyHeaders => ScanError::TooManyFields.for_request(),
        _ => HttpError::bad_request("malformed request head"),
    }
}

/// Finds the specific reason for a header-name error: more precise log
/// lines than httparse's error kinds allow. Only runs on the error path.
fn diagnose_field_lines(head: &[u8]) -> Option<&'static str> {
    let mut lines = head
        .split(|&b| b == b'\n')
        .map(|l| l.strip_suffix(b"\r").unwrap_or(l))
        .skip_while(|l| l.is_empty())
        .skip(1); // the start-line
    lines
        .try_for_each(|line| {
            if line.is_empty() {
                return Err(None); // end of head
            }
            let Some(colon) = line.iter().position(|&b| b == b':') else {
                return Err(Some("header line without ':'"));
            };
            let name = &line[..colon];
            if name.is_empty() {
                return Err(Some("empty header name"));
            }
            if matches!(name.last(), Some(b' ' | b'\t')) {
                return Err(Some("whitespace between header name and ':'"));
            }
            if !name.iter().all(|&b| is_tchar(b)) {
                return Err(Some("invalid character in header name"));
            }
            let value = &line[colon + 1..];
            if value.iter().any(|&b| (b < 0x20 && b != b'\t') || b == 0x7f) {
                return Err(Some(
                    "invalid character in header value (control character or NUL)",
                ));
            }
            Ok(())
        })
        .err()
        .flatten()
}

fn parse_response_head(
    head: &[u8],
    max_fields: usize,
    request_method: Method,
    resp: &mut ResponseHead,
) -> Result<BodyKind, HttpError> {
    let mut slots: HeaderSlots<'_> = [MaybeUninit::uninit(); MAX_HEADERS_CAP];
    let mut parsed = httparse::Response::new(&mut []);
    let slots = slots.get_mut(..max_fields).unwrap_or_default();
    let mut config = httparse::ParserConfig::default();
    config
        .allow_spaces_after_header_name_in_responses(true)
        .allow_obsolete_multiline_headers_in_responses(true)
        .allow_multiple_spaces_in_response_status_delimiters(true);
    match config.parse_response_with_uninit_headers(&mut parsed, head, slots) {
        Ok(httparse::Status::Complete(_)) => {}
        Ok(httparse::Status::Partial) => {
            return Err(HttpError::bad_gateway("malformed response head"))
        }
        Err(e) => {
            return Err(HttpError::bad_gateway(match e {
                httparse::Error::Version => {
                    "response has an unsupported HTTP version (only HTTP/1.0 and HTTP/1.1)"
                }
                httparse::Error::Status => "malformed response status-line",
                httparse::Error::TooManyHeaders => "too many header fields in response",
                httparse::Error::HeaderName => "invalid header name in response",
                httparse::Error::HeaderValue => "invalid header value in response",
                _ => "malformed response head",
            }))
        }
    }
    let (Some(minor), Some(code)) = (parsed.version, parsed.code) else {
        return Err(HttpError::bad_gateway("malformed response status-line"));
    };
    let Some(status) = StatusCode::from_u16(code) else {
        return Err(HttpError::bad_gateway(
            "response status code out of range (must be 100-999)",
        ));
    };
    resp.clear();
    resp.version = if minor == 0 {
        Version::Http10
    } else {
        Version::Http11
    };
    resp.status = status;
    resp.reason.push_str(parsed.reason.unwrap_or(""));
    let mut framing = Framing::default();
    for field in parsed.headers.iter() {
        let name = field.name.as_bytes();
        if field.value.iter().any(|&b| b == b'\r' || b == b'\n') {
            resp.headers.append_unfolded(name, field.value);
        } else {
            resp.headers.append_value_bytes(field.name, field.value);
        }
        framing.feed(name, field.value);
    }
    framing.response_body(resp.version, status, request_method)
}

/// What the framing-related fields of one head say; collected in one pass
/// over the fields and judged by `request_body` / `response_body`.
#[derive(Debug, Default)]
pub(crate) struct Framing {
    host_fields: usize,
    host_invalid: bool,
    content_length_seen: bool,
    content_length: Option<u64>,
    content_length_error: Option<&'static str>,
    transfer_encoding_seen: bool,
    chunked_count: usize,
    last_is_chunked: bool,
    other_coding: bool,
    conn_close: bool,
    conn_keep_alive: bool,
    conn_upgrade: bool,
    upgrade_field: bool,
    expect_continue: bool,
}

impl Framing {
    /// Collects the framing fields of `headers`.
    pub(crate) fn of(headers: &Headers) -> Framing {
        let mut framing = Framing::default();
        for (name, value) in headers.iter() {
            framing.feed(name.as_bytes(), value);
        }
        framing
    }

    /// Valid `Content-Length`, if any.
    pub(crate) fn content_length(&self) -> Option<u64> {
        match self.content_length_error {
            Some(_) => None,
            None => self.content_length,
        }
    }

    /// `Transfer-Encoding` present and ending with chunked.
    pub(crate) fn is_chunked(&self) -> bool {
        self.transfer_encoding_seen && self.last_is_chunked
    }

    /// Takes one field into account.
    pub(crate) fn feed(&mut self, name: &[u8], value: &[u8]) {
        self.feed_field(FieldName::of(name), value);
    }

    /// Takes one field into account, its name already classified.
    fn feed_field(&mut self, field: FieldName, value: &[u8]) {
        match field {
            FieldName::Host => self.feed_host(is_host_value(value)),
            FieldName::ContentLength => self.feed_content_length(value),
            // The same reading as the fast path's, so the two cannot drift apart.
            FieldName::Connection => {
                let facts = connection_facts(value);
                self.conn_close |= facts & FACT_CLOSE != 0;
                self.conn_keep_alive |= facts & FACT_KEEP_ALIVE != 0;
                self.conn_upgrade |= facts & FACT_CONN_UPGRADE != 0;
            }
            FieldName::Upgrade => self.upgrade_field = true,
            FieldName::Expect => {
                if trim_ows(value).eq_ignore_ascii_case(b"100-continue") {
                    self.expect_continue = true;
                }
            }
            FieldName::TransferEncoding => {
                self.transfer_encoding_seen = true;
                for coding in list_elements(value) {
                    if coding.eq_ignore_ascii_case(b"chunked") {
                        self.chunked_count += 1;
                        self.last_is_chunked = true;
                    } else {
                        self.other_coding = true;
                        self.last_is_chunked = false;
                    }
                }
            }
            FieldName::Other => {}
        }
    }

    /// A `Host` field whose value is (or is not) a valid host.
    fn feed_host(&mut self, valid: bool) {
        self.host_fields += 1;
        if !valid {
            self.host_invalid = true;
        }
    }

    /// RFC 9110 8.6 / RFC 9112 6.3 rule 5: `1*DIGIT`; a list of identical
    /// values (one field or several) is that value; anything else is an
    /// unrecoverable framing error.
    fn feed_content_length(&mut self, value: &[u8]) {
        self.content_length_seen = true;
        if self.content_length_error.is_some() {
            return;
        }
        for element in value.split(|&b| b == b',').map(trim_ows) {
            match parse_decimal(element) {
                Ok(n) => match self.content_length {
                    Some(previous) if previous != n => {
                        self.content_length_error = Some("conflicting Content-Length values");
                        return;
                    }
                    _ => self.content_length = Some(n),
                },
                Err(reason) => {
                    self.content_length_error = Some(reason);
                    return;
                }
            }
        }
    }

    /// Decides a request's body (RFC 9112 6.1-6.3, RFC 9110 7.2).
    fn request_body(&self, version: Version) -> Result<BodyKind, HttpError> {
        if self.host_fields > 1 {
            return Err(HttpError::bad_request("more than one Host header"));
        }
        if self.host_fields == 0 && version == Version::Http11 {
            return Err(HttpError::bad_request(
                "missing Host header (required in HTTP/1.1)",
            ));
        }
        if self.host_invalid {
            return Err(HttpError::bad_request("invalid Host header value"));
        }
        if self.transfer_encoding_seen {
            if version == Version::Http10 {
                return Err(HttpError::bad_request(
                    "Transfer-Encoding is not allowed in an HTTP/1.0 request",
                ));
            }
            if self.content_length_seen {
                return Err(HttpError::bad_request(
                    "Content-Length and Transfer-Encoding both present",
                ));
            }
            if self.chunked_count > 1 {
                return Err(HttpError::bad_request(
                    "chunked transfer coding applied more than once",
                ));
            }
            if !self.last_is_chunked {
                return Err(HttpError::bad_request(
                    "Transfer-Encoding must end with chunked",
                ));
            }
            if self.other_coding {
                return Err(HttpError::new(
                    StatusCode::NOT_IMPLEMENTED,
                    "unsupported transfer coding (only chunked is implemented)",
                ));
            }
            return Ok(BodyKind::Chunked);
        }
        if let Some(reason) = self.content_length_error {
            return Err(HttpError::bad_request(reason));
        }
        Ok(self.content_length.map_or(BodyKind::None, BodyKind::Length))
    }

    /// Decides a response's body (RFC 9112 6.3 rules 1-8, client side).
    fn response_body(
        &self,
        version: Version,
        status: StatusCode,
        request_method: Method,
    ) -> Result<BodyKind, HttpError> {
        if request_method == Method::Head || !status.allows_body() {
            return Ok(BodyKind::None);
        }
        if request_method == Method::Connect && status.is_success() {
            return Ok(BodyKind::None);
        }
        if self.transfer_encoding_seen {
            // HTTP/1.0 has no transfer codings: the framing is faulty, so
            // read to close (RFC 9112 6.1); likewise when chunked is not
            // the final coding (6.3 rule 4). Content-Length is ignored.
            if version == Version::Http10 || !self.last_is_chunked {
                return Ok(BodyKind::UntilClose);
            }
            if self.chunked_count > 1 {
                return Err(HttpError::bad_gateway(
                    "response applies chunked transfer coding more than once",
                ));
            }
            if self.other_coding {
                return Err(HttpError::bad_gateway(
                    "response uses a transfer coding other than chunked (not supported)",
                ));
            }
            return Ok(BodyKind::Chunked);
        }
        if let Some(reason) = self.content_length_error {
            return Err(HttpError::bad_gateway(reason));
        }
        Ok(self
            .content_length
            .map_or(BodyKind::UntilClose, BodyKind::Length))
    }
}

/// The field names framing depends on; the rest are `Other`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum FieldName {
    Host,
    ContentLength,
    Connection,
    Upgrade,
    Expect,
    TransferEncoding,
    Other,
}

impl FieldName {
    /// Classifies any name, ignoring ASCII case. Lengths are compared first so most fields
    /// cost one integer comparison.
    fn of(name: &[u8]) -> FieldName {
        match name.len() {
            4 if name.eq_ignore_ascii_case(b"host") => FieldName::Host,
            14 if name.eq_ignore_ascii_case(b"content-length") => FieldName::ContentLength,
            10 if name.eq_ignore_ascii_case(b"connection") => FieldName::Connection,
            7 if name.eq_ignore_ascii_case(b"upgrade") => FieldName::Upgrade,
            6 if name.eq_ignore_ascii_case(b"expect") => FieldName::Expect,
            17 if name.eq_ignore_ascii_case(b"transfer-encoding") => FieldName::TransferEncoding,
            _ => FieldName::Other,
        }
    }

    /// [`of`](FieldName::of) for a name known to be a token, compared a word at a time.
    /// Setting bit 0x20 lowercases a letter; among token bytes only the two cases of a letter
    /// become that lowercase letter and only '-' becomes '-' (its other preimage, CR, is not
    /// a token byte), so for tokens this equals the case-insensitive comparison. Inlined:
    /// it runs for every field of every request.
    #[inline(always)]
    fn of_token(name: &[u8]) -> FieldName {
        debug_assert!(is_token(name));
        match name.len() {
            4 if folded_eq(name, b"host") => FieldName::Host,
            14 if folded_eq(name, b"content-length") => FieldName::ContentLength,
            10 if folded_eq(name, b"connection") => FieldName::Connection,
            7 if folded_eq(name, b"upgrade") => FieldName::Upgrade,
            6 if folded_eq(name, b"expect") => FieldName::Expect,
            17 if folded_eq(name, b"transfer-encoding") => FieldName::TransferEncoding,
            _ => FieldName::Other,
        }
    }
}

/// Parses `1*DIGIT` into a u64 with reasons for each way it can fail.
fn parse_decimal(text: &[u8]) -> Result<u64, &'static str> {
    if text.is_empty() {
        return Err("empty Content-Length value");
    }
    if matches!(text[0], b'+' | b'-') {
        return Err("Content-Length must not have a sign");
    }
    let mut n: u64 = 0;
    for &b in text {
        if !b.is_ascii_digit() {
            return Err("Content-Length is not a decimal number");
        }
        n = n
            .checked_mul(10)
            .and_then(|n| n.checked_add(u64::from(b - b'0')))
            .ok_or("Content-Length is too large")?;
    }
    Ok(n)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits() -> HeadLimits {
        HeadLimits::default()
    }

    fn parse(text: &[u8]) -> Result<Option<(usize, BodyKind)>, HttpError> {
        let mut req = Request::new();
        HeadParser::new().parse_request(text, &limits(), &mut req)
    }

    thread_local! {
        /// The Host memo of the fast path's direct calls: one per test thread, so that it
        /// remembers across cases as a parser does across requests.
        static MEMO: std::cell::RefCell<HostMemo> = std::cell::RefCell::new(HostMemo::default());
    }

    /// The fast path alone, with the thread's Host memo.
    fn fast_parse(
        buf: &[u8],
        limits: &HeadLimits,
        max_fields: usize,
        req: &mut Request,
    ) -> Option<Result<(usize, BodyKind), HttpError>> {
        MEMO.with(|memo| {
            parse_clean_request_head(buf, limits, max_fields, &mut memo.borrow_mut(), req)
        })
    }

    fn parse_ok(text: &[u8]) -> (Request, usize, BodyKind) {
        let mut req = Request::new();
        match HeadParser::new().parse_request(text, &limits(), &mut req) {
            Ok(Some((len, kind))) => (req, len, kind),
            other => panic!("{:?} for {:?}", other, String::from_utf8_lossy(text)),
        }
    }

    /// The remembered Host value stands only for itself: longer, shorter or differently
    /// continued values are judged afresh.
    #[test]
    fn a_remembered_host_only_matches_itself() {
        // One parser throughout, as a connection's requests see it; values of each length
        // class the word comparison treats apart (1-3, 4-7, 8, over 8, over 16 bytes).
        let mut parser = HeadParser::new();
        let mut parse_with = |text: &[u8]| {
            let mut req = Request::new();
            let done = parser.parse_request(text, &limits(), &mut req);
            (done.map(|done| done.map(|(_, kind)| kind)), req)
        };
        for host in [
            "a.example:80",
            "h",
            "ab",
            "abc",
            "abcd",
            "a.ex:80",
            "a.exampl",
            "a.example.org:8080",
        ] {
            for _ in 0..2 {
                let text = format!("GET / HTTP/1.1\r\nHost: {host}\r\n\r\n");
                let (done, req) = parse_with(text.as_bytes());
                assert_eq!(done, Ok(Some(BodyKind::None)), "{host}");
                assert_eq!(req.headers().get("host"), Some(host));
            }
            // The remembered value followed by more, changed at its start, middle or end,
            // shortened: each judged afresh.
            let mut variants = vec![
                format!("{host}/x"),
                format!("{host} x"),
                format!("{host}\x01"),
                format!("/{}", &host[1..]),
                format!("{}/", &host[..host.len() - 1]),
                format!(
                    "{}/{}",
                    &host[..host.len() / 2],
                    &host[host.len() / 2 + 1..]
                ),
            ];
            if host.len() > 1 {
                variants.push(host[..host.len() - 1].to_string());
            }
            for value in variants {
                let text = format!("GET / HTTP/1.1\r\nHost: {value}\r\n\r\n");
                let valid = !value.contains(['/', ' ', '\x01']);
                let (done, req) = parse_with(text.as_bytes());
                if valid {
                    assert_eq!(done, Ok(Some(BodyKind::None)), "{value:?}");
                    assert_eq!(req.headers().get("host"), Some(value.as_str()));
                } else {
                    assert_eq!(done.map_err(|e| e.status.as_u16()), Err(400), "{value:?}");
                }
                // Trailing whitespace is not part of the value.
                let text = format!("GET / HTTP/1.1\r\nHost: {host} \r\n\r\n");
                let (done, req) = parse_with(text.as_bytes());
                assert_eq!(done, Ok(Some(BodyKind::None)), "{host}");
                assert_eq!(req.headers().get("host"), Some(host));
            }
        }
    }

    /// The shortcut for `Connection: keep-alive` and `close` decides as the list rules do,
    /// for every single-byte change of those values (both parsers share it, so the
    /// differential test cannot see it).
    #[test]
    fn usual_names_agree_with_the_general_name_rules() {
        // Every spelling `usual_name` knows, each byte of it changed to every value and every
        // truncation: when it recognises a name, the general search and checks find the same
        // name, class and ": ".
        let spellings: [&[u8]; 12] = [
            b"Host: ",
            b"User-Agent: ",
            b"Upgrade-Insecure-Requests: ",
            b"Accept: ",
            b"Accept-Encoding: ",
            b"Accept-Language: ",
            b"Connection: ",
            b"Cookie: ",
            b"Cache-Control: ",
            b"Content-Length: ",
            b"Content-Type: ",
            b"Hostile: ",
        ];
        let agrees = |line: &[u8]| match usual_name(line) {
            None => true,
            Some((len, field)) => {
                find_byte(line, b':') == Some(len)
                    && classes_of(&line[..len]) & CLASS_TCHAR != 0
                    && FieldName::of_token(&line[..len]) == field
                    && line.get(len + 1) == Some(&b' ')
            }
        };
        let mut recognised = 0;
        for spelling in spellings {
            let mut line = spelling.to_vec();
            line.extend_from_slice(b"v\r\n");
            recognised += usize::from(usual_name(&line).is_some());
            for end in 0..line.len() {
                assert!(agrees(&line[..end]), "{:?}", &line[..end]);
                if end < spelling.len() {
                    assert_eq!(usual_name(&line[..end]), None);
                }
            }
            for at in 0..spelling.len() + 1 {
                for byte in 0..=255u8 {
                    let mut changed = line.clone();
                    changed[at] = byte;
                    assert!(agrees(&changed), "{changed:?}");
                }
            }
        }
        assert_eq!(recognised, spellings.len() - 1);
    }

    #[test]
    fn connection_shortcuts_agree_with_the_list_rules() {
        for base in [&b"keep-alive"[..], b"close", b"Keep-Alive", b"CLOSE"] {
            for at in 0..base.len() {
                for byte in 0..=255u8 {
                    let mut value = base.to_vec();
                    value[at] = byte;
                    let mut framing = Framing::default();
                    framing.feed(b"Connection", &value);
                    let has =
                        |token: &[u8]| list_elements(&value).any(|t| t.eq_ignore_ascii_case(token));
                    assert_eq!(
                        (
                            framing.conn_close,
                            framing.conn_keep_alive,
                            framing.conn_upgrade
                        ),
                        (has(b"close"), has(b"keep-alive"), has(b"upgrade")),
                        "{value:?}"
                    );
                }
            }
        }
    }

    fn status_of(text: &[u8]) -> u16 {
        match parse(text) {
            Err(e) => e.status.as_u16(),
            other => panic!(
                "expected error, got {:?} for {:?}",
                other,
                String::from_utf8_lossy(text)
            ),
        }
    }

    fn reason_of(text: &[u8]) -> &'static str {
        parse(text).unwrap_err().reason
    }

    /// Asserts that `text` is refused with 400 and a reason mentioning `needle`.
    fn assert_400(text: &[u8], needle: &str) {
        let err = parse(text).unwrap_err();
        assert_eq!(
            err.status.as_u16(),
            400,
            "{:?}",
            String::from_utf8_lossy(text)
        );
        assert!(err.reason.contains(needle), "{}", err.reason);
    }

    #[test]
    fn simple_get() {
        let text = b"GET /index.html?x=1 HTTP/1.1\r\nHost: example.com\r\nAccept: */*\r\n\r\n";
        let (req, len, kind) = parse_ok(text);
        assert_eq!(len, text.len());
        assert_eq!(kind, BodyKind::None);
        assert_eq!(req.method(), Method::Get);
        assert_eq!(req.target(), "/index.html?x=1");
        assert_eq!(req.path(), "/index.html");
        assert_eq!(req.query(), Some("x=1"));
        assert_eq!(req.version(), Version::Http11);
        assert_eq!(req.header("host"), Some("example.com"));
        assert_eq!(req.headers().len(), 2);
        assert!(req.keep_alive());
    }

    #[test]
    fn body_starts_after_head() {
        let text = b"POST /x HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\n\r\nhelloGET";
        let (req, len, kind) = parse_ok(text);
        assert_eq!(kind, BodyKind::Length(5));
        assert_eq!(&text[len..len + 5], b"hello");
        assert_eq!(req.content_length(), Some(5));
    }

    #[test]
    fn http10_without_host_is_fine() {
        let (req, _, kind) = parse_ok(b"GET / HTTP/1.0\r\n\r\n");
        assert_eq!(req.version(), Version::Http10);
        assert_eq!(kind, BodyKind::None);
        assert!(!req.keep_alive());
    }

    #[test]
    fn leading_empty_lines_are_skipped_and_counted() {
        let text = b"\r\n\r\nGET / HTTP/1.1\r\nHost: h\r\n\r\n";
        let (req, len, _) = parse_ok(text);
        assert_eq!(len, text.len());
        assert_eq!(req.path(), "/");
    }

    #[test]
    fn incomplete_head_needs_more() {
        assert_eq!(parse(b"GET / HTTP/1.1\r\nHost: h\r\n"), Ok(None));
        assert_eq!(parse(b"GET / HTTP/1.1\r\nHost: h\r\n\r"), Ok(None));
        assert_eq!(parse(b""), Ok(None));
        assert_eq!(parse(b"\r\n"), Ok(None));
    }

    #[test]
    fn every_split_point_gives_the_same_result() {
        let text = b"\r\nPOST /upload?a=b HTTP/1.1\r\nHost: example.com\r\nContent-Length: 3\r\nX-A: 1\r\n\r\nabc";
        let head_len = text.len() - 3;
        for split in 0..=text.len() {
            let mut parser = HeadParser::new();
            let mut req = Request::new();
            let mut result = None;
            // Feed a growing prefix: first `split` bytes, then one byte at a
            // time, as a connection appending reads would.
            for end in std::iter::once(split).chain(split + 1..=text.len()) {
                match parser.parse_request(&text[..end], &limits(), &mut req) {
                    Ok(None) => continue,
                    Ok(Some(done)) => {
                        assert!(end >= head_len);
                        result = Some(done);
                        break;
                    }
                    Err(e) => panic!("split {split}: {e}"),
                }
            }
            assert_eq!(
                result,
                Some((head_len, BodyKind::Length(3))),
                "split {split}"
            );
            assert_eq!(req.header("x-a"), Some("1"));
            assert_eq!(req.query(), Some("a=b"));
        }
    }

    #[test]
    fn parser_scans_each_byte_once() {
        // The CRLFCRLF split across calls must still be found, and a
        // parser reused after success starts over.
        let mut parser = HeadParser::new();
        let mut req = Request::new();
        let text = b"GET / HTTP/1.1\r\nHost: h\r\n\r\n";
        for end in 0..text.len() {
            assert_eq!(
                parser.parse_request(&text[..end], &limits(), &mut req),
                Ok(None)
            );
            // Everything seen so far was examined, except a CR whose LF
            // may still come: the next call resumes there.
            assert!(parser.scanned + 1 >= end && parser.scanned <= end, "{end}");
        }
        assert_eq!(
            parser.parse_request(text, &limits(), &mut req),
            Ok(Some((text.len(), BodyKind::None)))
        );
        assert_eq!(parser.scanned, 0);
        assert_eq!(
            parser.parse_request(text, &limits(), &mut req),
            Ok(Some((text.len(), BodyKind::None)))
        );
    }

    #[test]
    fn request_reuse_replaces_previous_content() {
        let mut parser = HeadParser::new();
        let mut req = Request::new();
        let a = b"POST /a?q HTTP/1.1\r\nHost: a\r\nX-Old: 1\r\n\r\n";
        let b = b"GET /b HTTP/1.0\r\n\r\n";
        parser.parse_request(a, &limits(), &mut req).unwrap();
        parser.parse_request(b, &limits(), &mut req).unwrap();
        assert_eq!(req.method(), Method::Get);
        assert_eq!(req.target(), "/b");
        assert_eq!(req.query(), None);
        assert_eq!(req.version(), Version::Http10);
        assert!(req.headers().is_empty());
    }

    #[test]
    fn steady_state_reuse_keeps_capacity() {
        let text = b"POST /path/to/resource?x=1 HTTP/1.1\r\nHost: example.com\r\n\
            User-Agent: test\r\nAccept: */*\r\nContent-Length: 10\r\n\r\n";
        let mut parser = HeadParser::new();
        let mut req = Request::new();
        parser.parse_request(text, &limits(), &mut req).unwrap();
        let caps = req.headers().capacities();
        for _ in 0..50 {
            let (len, kind) = parser
                .parse_request(text, &limits(), &mut req)
                .unwrap()
                .unwrap();
            assert_eq!((len, kind), (text.len(), BodyKind::Length(10)));
        }
        assert_eq!(req.headers().capacities(), caps);
        assert_eq!(req.headers().len(), 4);
    }

    #[test]
    fn long_request_line_is_414_even_when_incomplete() {
        let mut l = limits();
        l.max_request_line = 64;
        let mut req = Request::new();
        let mut line = b"GET /".to_vec();
        line.extend(std::iter::repeat(b'a').take(59)); // exactly 64 bytes
        let mut parser = HeadParser::new();
        assert_eq!(parser.parse_request(&line, &l, &mut req), Ok(None));
        let mut full = line.clone();
        full.extend_from_slice(b" HTTP/1.1\r\n");
        let err = parser.parse_request(&full, &l, &mut req).unwrap_err();
        assert_eq!(err.status, StatusCode::URI_TOO_LONG);
        // One byte over, with no line end yet.
        line.push(b'a');
        let err = HeadParser::new()
            .parse_request(&line, &l, &mut req)
            .unwrap_err();
        assert_eq!(err.status, StatusCode::URI_TOO_LONG);
        // Exactly at the limit with CRLF is fine.
        let mut ok = b"GET /".to_vec();
        ok.extend(std::iter::repeat(b'a').take(64 - 5 - 9));
        ok.extend_from_slice(b" HTTP/1.0\r\n\r\n");
        assert!(HeadParser::new()
            .parse_request(&ok, &l, &mut req)
            .unwrap()
            .is_some());
    }

    #[test]
    fn request_line_limit_excludes_pending_cr() {
        let mut l = limits();
        l.max_request_line = 16;
        let mut req = Request::new();
        let line = b"GET / HTTP/1.0\r"; // 14 bytes + CR
        let mut parser = HeadParser::new();
        assert_eq!(parser.parse_request(line, &l, &mut req), Ok(None));
        assert!(parser
            .parse_request(b"GET / HTTP/1.0\r\n\r\n", &l, &mut req)
            .unwrap()
            .is_some());
    }

    #[test]
    fn big_head_is_431_even_when_incomplete() {
        let mut l = limits();
        l.max_head_size = 100;
        let mut req = Request::new();
        let mut text = b"GET / HTTP/1.1\r\nHost: h\r\nX-Big: ".to_vec();
        text.extend(std::iter::repeat(b'x').take(100 - text.len()));
        assert_eq!(
            HeadParser::new().parse_request(&text, &l, &mut req),
            Ok(None)
        );
        text.push(b'x');
        let err = HeadParser::new()
            .parse_request(&text, &l, &mut req)
            .unwrap_err();
        assert_eq!(err.status, StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE);
        // Complete but one byte over.
        let mut exact = b"GET / HTTP/1.1\r\nHost: h\r\nX: ".to_vec();
        exact.extend(std::iter::repeat(b'y').take(100 - exact.len() - 4));
        exact.extend_from_slice(b"\r\n\r\n");
        assert_eq!(exact.len(), 100);
        assert!(HeadParser::new()
            .parse_request(&exact, &l, &mut req)
            .unwrap()
            .is_some());
        exact.insert(30, b'y');
        let err = HeadParser::new()
            .parse_request(&exact, &l, &mut req)
            .unwrap_err();
        assert_eq!(err.status, StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE);
    }

    #[test]
    fn endless_blank_lines_are_bounded() {
        let mut l = limits();
        l.max_head_size = 64;
        let text = b"\r\n".repeat(33);
        let err = HeadParser::new()
            .parse_request(&text, &l, &mut Request::new())
            .unwrap_err();
        assert_eq!(err.status, StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE);
    }

    #[test]
    fn too_many_headers_is_431() {
        let mut l = limits();
        l.max_headers = 3;
        let mut req = Request::new();
        let ok = b"GET / HTTP/1.1\r\nHost: h\r\nA: 1\r\nB: 2\r\n\r\n";
        assert!(HeadParser::new()
            .parse_request(ok, &l, &mut req)
            .unwrap()
            .is_some());
        // Decided before the head is complete.
        let over = b"GET / HTTP/1.1\r\nHost: h\r\nA: 1\r\nB: 2\r\nC: 3\r\n";
        let err = HeadParser::new()
            .parse_request(over, &l, &mut req)
            .unwrap_err();
        assert_eq!(err.status, StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE);
        assert_eq!(err.reason, "too many header fields");
    }

    #[test]
    fn max_headers_is_capped_at_256() {
        let mut l = limits();
        l.max_headers = 10_000;
        l.max_head_size = 1 << 20;
        let mut text = b"GET / HTTP/1.1\r\nHost: h\r\n".to_vec();
        for i in 0..255 {
            text.extend_from_slice(format!("X-{i}: v\r\n").as_bytes());
        }
        text.extend_from_slice(b"\r\n");
        let mut req = Request::new();
        assert!(HeadParser::new()
            .parse_request(&text, &l, &mut req)
            .unwrap()
            .is_some());
        assert_eq!(req.headers().len(), 256);
        text.truncate(text.len() - 2);
        text.extend_from_slice(b"X-last: v\r\n\r\n");
        let err = HeadParser::new()
            .parse_request(&text, &l, &mut req)
            .unwrap_err();
        assert_eq!(err.status, StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE);
    }

    #[test]
    fn unsupported_versions_are_505() {
        for text in [
            &b"GET / HTTP/2.0\r\nHost: h\r\n\r\n"[..],
            b"GET / HTTP/0.9\r\nHost: h\r\n\r\n",
            b"GET / HTTP/3\r\nHost: h\r\n\r\n",
            b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n",
            b"GET /\r\n\r\n",
        ] {
            assert_eq!(status_of(text), 505, "{:?}", String::from_utf8_lossy(text));
        }
        assert!(reason_of(b"GET /\r\n\r\n").contains("HTTP/0.9"));
    }

    /// RFC 9110 2.5: a higher minor version of HTTP/1 is processed as HTTP/1.1.
    #[test]
    fn higher_http1_minor_versions_are_served_as_http11() {
        for text in [
            &b"GET /a?b HTTP/1.2\r\nHost: h\r\n\r\n"[..],
            b"\r\nGET /a?b HTTP/1.9\r\nHost: h\r\n\r\n",
        ] {
            let (req, len, kind) = parse_ok(text);
            assert_eq!(len, text.len());
            assert_eq!(kind, BodyKind::None);
            assert_eq!(req.version(), Version::Http11);
            assert_eq!(
                (req.method(), req.path(), req.query()),
                (Method::Get, "/a", Some("b"))
            );
            assert_eq!(req.headers().get("host"), Some("h"));
        }
        // Still HTTP/1.1's rules: Host is required.
        assert_eq!(status_of(b"GET / HTTP/1.2\r\n\r\n"), 400);
        // Not a version (two digits after the dot), or another major version.
        assert_eq!(status_of(b"GET / HTTP/1.22\r\nHost: h\r\n\r\n"), 505);
        assert_eq!(status_of(b"GET / HTTP/2.1\r\nHost: h\r\n\r\n"), 505);
    }

    #[test]
    fn malformed_versions_are_400() {
        for text in [
            &b"GET / HTTP/1.1x\r\nHost: h\r\n\r\n"[..],
            b"GET / http/1.1\r\nHost: h\r\n\r\n",
            b"GET / HTTP/\r\nHost: h\r\n\r\n",
            b"GET / FOO\r\nHost: h\r\n\r\n",
        ] {
            assert_eq!(status_of(text), 400, "{:?}", String::from_utf8_lossy(text));
        }
    }

    #[test]
    fn bad_method_token_is_400() {
        for text in [
            &b"G(T / HTTP/1.1\r\nHost: h\r\n\r\n"[..],
            b"GE\x01T / HTTP/1.1\r\nHost: h\r\n\r\n",
            b" GET / HTTP/1.1\r\nHost: h\r\n\r\n",
            b"G\xc3\xa9T / HTTP/1.1\r\nHost: h\r\n\r\n",
        ] {
            assert_400(text, "method");
        }
    }

    #[test]
    fn other_methods_keep_their_token() {
        let (req, _, _) = parse_ok(b"PROPFIND /dav HTTP/1.1\r\nHost: h\r\n\r\n");
        assert_eq!(req.method(), Method::Other);
        assert_eq!(req.method_str(), "PROPFIND");
    }

    #[test]
    fn bad_target_chars_are_400() {
        for text in [
            &b"GET /a\x01b HTTP/1.1\r\nHost: h\r\n\r\n"[..],
            b"GET /a\x7fb HTTP/1.1\r\nHost: h\r\n\r\n",
            b"GET /caf\xc3\xa9 HTTP/1.1\r\nHost: h\r\n\r\n",
            b"GET /caf\xe9 HTTP/1.1\r\nHost: h\r\n\r\n",
            b"GET /a#frag HTTP/1.1\r\nHost: h\r\n\r\n",
            b"GET  / HTTP/1.1\r\nHost: h\r\n\r\n",
            b"GET /a b HTTP/1.1\r\nHost: h\r\n\r\n",
        ] {
            assert_eq!(status_of(text), 400, "{:?}", String::from_utf8_lossy(text));
        }
        assert!(reason_of(b"GET /a\x01b HTTP/1.1\r\nHost: h\r\n\r\n").contains("request-target"));
        assert!(reason_of(b"GET /a#x HTTP/1.1\r\nHost: h\r\n\r\n").contains("fragment"));
    }

    #[test]
    fn bad_header_names_are_400() {
        let cases: [(&[u8], &str); 5] = [
            (
                b"GET / HTTP/1.1\r\nHost: h\r\nBad Name: v\r\n\r\n",
                "header",
            ),
            (
                b"GET / HTTP/1.1\r\nHost: h\r\nBad\"Name: v\r\n\r\n",
                "header name",
            ),
            (b"GET / HTTP/1.1\r\nHost: h\r\n: v\r\n\r\n", "header"),
            (b"GET / HTTP/1.1\r\nHost: h\r\nNoColon\r\n\r\n", "header"),
            (b"GET / HTTP/1.1\r\nHost: h\r\nA\x00B: v\r\n\r\n", "header"),
        ];
        for (text, needle) in cases {
            assert_400(text, needle);
        }
    }

    #[test]
    fn space_before_colon_is_400() {
        let err = parse(b"GET / HTTP/1.1\r\nHost: h\r\nContent-Length : 5\r\n\r\n").unwrap_err();
        assert_eq!(err.status.as_u16(), 400);
        assert!(err.reason.contains("whitespace"), "{}", err.reason);
    }

    #[test]
    fn obs_fold_is_400() {
        for text in [
            &b"GET / HTTP/1.1\r\nHost: h\r\nX: a\r\n b\r\n\r\n"[..],
            b"GET / HTTP/1.1\r\nHost: h\r\nX: a\r\n\tb\r\n\r\n",
            b"GET / HTTP/1.1\r\n Host: h\r\n\r\n",
        ] {
            assert_400(text, "folding");
        }
    }

    #[test]
    fn ctl_or_nul_in_value_is_400() {
        for text in [
            &b"GET / HTTP/1.1\r\nHost: h\r\nX: a\x00b\r\n\r\n"[..],
            b"GET / HTTP/1.1\r\nHost: h\r\nX: a\x01b\r\n\r\n",
            b"GET / HTTP/1.1\r\nHost: h\r\nX: a\x7fb\r\n\r\n",
        ] {
            assert_400(text, "header value");
        }
        // HTAB and obs-text are allowed in values.
        let (req, _, _) = parse_ok(b"GET / HTTP/1.1\r\nHost: h\r\nX: a\tb\xe9\r\n\r\n");
        assert_eq!(req.headers().get_bytes("x"), Some(&b"a\tb\xe9"[..]));
    }

    #[test]
    fn bare_cr_and_bare_lf_are_400() {
        for text in [
            &b"GET / HTTP/1.1\rHost: h\r\n\r\n"[..],
            b"GET / HTTP/1.1\r\nHost: h\rX: y\r\n\r\n",
            b"GET / HTTP/1.1\r\nHost: h\r\n\r\r\n",
        ] {
            assert_400(text, "bare CR");
        }
        for text in [
            &b"GET / HTTP/1.1\nHost: h\r\n\r\n"[..],
            b"GET / HTTP/1.1\r\nHost: h\n\n",
            b"\nGET / HTTP/1.1\r\nHost: h\r\n\r\n",
        ] {
            assert_400(text, "bare LF");
        }
    }

    #[test]
    fn a_bare_cr_and_a_bare_lf_that_balance_out_are_still_400() {
        // A stray CR inside a value or a bare LF (also after trailing whitespace, or with an
        // empty value) must make the whole-head fast path decline, so that the scanner names
        // the problem.
        for text in [
            &b"GET / HTTP/1.1\r\nA: x\ry\nB: z\r\n\r\n"[..],
            b"GET / HTTP/1.1\nA: x\ry\r\n\r\n",
            b"GET /a\rb HTTP/1.1\nHost: h\r\n\r\n",
            b"GET / HTTP/1.1\r\nHost: h \t\nX: y\r\n\r\n",
            b"GET / HTTP/1.1\r\nHost: h\r\nX:\nY: z\r\n\r\n",
            b"GET / HTTP/1.1\r\nHost: h\r\nX:  \n\r\n",
            b"GET / HTTP/1.1\r\nHost: h\r\n\n",
        ] {
            let err = parse(text).unwrap_err();
            assert_eq!(
                err.status.as_u16(),
                400,
                "{:?}",
                String::from_utf8_lossy(text)
            );
            let mut req = Request::new();
            let direct = fast_parse(text, &limits(), MAX_HEADERS_CAP, &mut req);
            assert!(
                !matches!(direct, Some(Ok(_))),
                "fast path accepted {text:?}"
            );
        }
    }

    #[test]
    fn empty_values_and_trailing_whitespace_end_their_lines_properly() {
        let text = b"GET / HTTP/1.1\r\nHost: h \t\r\nX:\r\nY:   \r\n\r\n";
        let mut req = Request::new();
        let limits = limits();
        // The whole-head path must accept it by itself (it hands doubtful heads to the scanner).
        let direct = fast_parse(text, &limits, MAX_HEADERS_CAP, &mut req);
        assert!(matches!(direct, Some(Ok((40, _)))), "{direct:?}");
        let (req, len, _) = parse_ok(text);
        assert_eq!(len, text.len());
        assert_eq!(req.headers().get_bytes("host"), Some(&b"h"[..]));
        assert_eq!(req.headers().get_bytes("x"), Some(&b""[..]));
        assert_eq!(req.headers().get_bytes("y"), Some(&b""[..]));
    }

    #[test]
    fn whole_heads_and_heads_in_pieces_parse_alike() {
        // The fast path (whole head) and the scanner (head split across reads) must agree.
        let text = b"POST /p?q=1 HTTP/1.1\r\nHost: h\r\nContent-Length: 3\r\nX-A: b\r\n\r\nabc";
        let (whole, len, kind) = parse_ok(text);
        let mut split = Request::new();
        let mut parser = HeadParser::new();
        assert_eq!(
            parser
                .parse_request(&text[..20], &limits(), &mut split)
                .unwrap(),
            None
        );
        let (len2, kind2) = parser
            .parse_request(text, &limits(), &mut split)
            .unwrap()
            .unwrap();
        assert_eq!((len, kind), (len2, kind2));
        assert_eq!(len, text.len() - 3);
        assert_eq!(whole.target(), split.target());
        assert_eq!(whole.headers(), split.headers());
        assert_eq!(whole.content_length(), Some(3));
    }

    #[test]
    fn a_request_line_at_the_limit_is_accepted_and_one_byte_over_is_414() {
        let limits = HeadLimits {
            max_request_line: 40,
            ..HeadLimits::default()
        };
        let line_with = |len: usize| {
            let path = "/".to_string() + &"a".repeat(len - "GET  HTTP/1.1".len() - 1);
            format!("GET {path} HTTP/1.1\r\nHost: h\r\n\r\n")
        };
        let mut req = Request::new();
        let ok = line_with(40);
        assert!(HeadParser::new()
            .parse_request(ok.as_bytes(), &limits, &mut req)
            .unwrap()
            .is_some());
        let over = line_with(41);
        let err = HeadParser::new()
            .parse_request(over.as_bytes(), &limits, &mut req)
            .unwrap_err();
        assert_eq!(err.status.as_u16(), 414, "{}", err.reason);
    }

    #[test]
    fn host_rules() {
        assert!(reason_of(b"GET / HTTP/1.1\r\n\r\n").contains("missing Host"));
        assert!(
            reason_of(b"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n").contains("more than one")
        );
        assert_eq!(
            status_of(b"GET / HTTP/1.0\r\nHost: a\r\nhost: a\r\n\r\n"),
            400
        );
        assert_eq!(status_of(b"GET / HTTP/1.1\r\nHost: a b\r\n\r\n"), 400);
        assert_eq!(status_of(b"GET / HTTP/1.1\r\nHost: a/b\r\n\r\n"), 400);
        assert_eq!(status_of(b"GET / HTTP/1.1\r\nHost: u@a\r\n\r\n"), 400);
        // Empty Host is allowed (RFC 9110 7.2), as are ports and IPv6.
        parse_ok(b"GET / HTTP/1.1\r\nHost:\r\n\r\n");
        parse_ok(b"GET / HTTP/1.1\r\nHost: [::1]:8080\r\n\r\n");
        parse_ok(b"GET / HTTP/1.1\r\nHOST: example.com:80\r\n\r\n");
        parse_ok(b"GET / HTTP/1.1\r\nHost: 127.0.0.1:8080\r\n\r\n");
        parse_ok(b"GET / HTTP/1.1\r\nHost: xn--bcher-kva.example~_!$&'()*+,;=%41\r\n\r\n");
        assert_eq!(
            status_of(b"GET / HTTP/1.1\r\nHost: b\xc3\xbccher\r\n\r\n"),
            400
        );
        assert_eq!(status_of(b"GET / HTTP/1.1\r\nHost: a\"b\r\n\r\n"), 400);
    }

    #[test]
    fn transfer_encoding_in_http10_is_400() {
        let err = parse(b"POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n").unwrap_err();
        assert_eq!(err.status.as_u16(), 400);
        assert!(err.reason.contains("HTTP/1.0"));
    }

    #[test]
    fn te_and_cl_together_is_400() {
        let err = parse(
            b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n",
        )
        .unwrap_err();
        assert_eq!(err.status.as_u16(), 400);
        assert_eq!(
            err.reason,
            "Content-Length and Transfer-Encoding both present"
        );
    }

    #[test]
    fn transfer_coding_rules() {
        let base = "POST / HTTP/1.1\r\nHost: h\r\n";
        let cases: [(&str, Result<BodyKind, u16>); 12] = [
            ("Transfer-Encoding: chunked\r\n", Ok(BodyKind::Chunked)),
            ("Transfer-Encoding: CHUNKED\r\n", Ok(BodyKind::Chunked)),
            ("Transfer-Encoding: , chunked ,\r\n", Ok(BodyKind::Chunked)),
            ("Transfer-Encoding: gzip\r\n", Err(400)),
            ("Transfer-Encoding: chunked, gzip\r\n", Err(400)),
            ("Transfer-Encoding: \r\n", Err(400)),
            ("Transfer-Encoding: chunked, chunked\r\n", Err(400)),
            (
                "Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n",
                Err(400),
            ),
            ("Transfer-Encoding: gzip, chunked\r\n", Err(501)),
            (
                "Transfer-Encoding: deflate\r\nTransfer-Encoding: chunked\r\n",
                Err(501),
            ),
            ("Transfer-Encoding: compress, chunked\r\n", Err(501)),
            ("Transfer-Encoding: x-unknown, chunked\r\n", Err(501)),
        ];
        for (fields, expected) in cases {
            let text = format!("{base}{fields}\r\n");
            let got = parse(text.as_bytes())
                .map(|r| r.unwrap().1)
                .map_err(|e| e.status.as_u16());
            assert_eq!(got, expected, "{fields:?}");
        }
    }

    #[test]
    fn content_length_rules() {
        let base = "POST / HTTP/1.1\r\nHost: h\r\n";
        let cases: [(&str, Result<BodyKind, &str>); 14] = [
            ("Content-Length: 0\r\n", Ok(BodyKind::Length(0))),
            ("Content-Length: 42\r\n", Ok(BodyKind::Length(42))),
            ("Content-Length: 007\r\n", Ok(BodyKind::Length(7))),
            (
                "Content-Length: 18446744073709551615\r\n",
                Ok(BodyKind::Length(u64::MAX)),
            ),
            ("Content-Length: 5, 5\r\n", Ok(BodyKind::Length(5))),
            (
                "Content-Length: 5\r\nContent-Length: 5\r\n",
                Ok(BodyKind::Length(5)),
            ),
            ("Content-Length: 18446744073709551616\r\n", Err("too large")),
            (
                "Content-Length: 99999999999999999999999\r\n",
                Err("too large"),
            ),
            ("Content-Length: \r\n", Err("empty")),
            ("Content-Length: +5\r\n", Err("sign")),
            ("Content-Length: -1\r\n", Err("sign")),
            ("Content-Length: 5a\r\n", Err("not a decimal")),
            ("Content-Length: 5, 6\r\n", Err("conflicting")),
            (
                "Content-Length: 5\r\nContent-Length: 6\r\n",
                Err("conflicting"),
            ),
        ];
        for (fields, expected) in cases {
            let text = format!("{base}{fields}\r\n");
            match (parse(text.as_bytes()), expected) {
                (Ok(Some((_, kind))), Ok(want)) => assert_eq!(kind, want, "{fields:?}"),
                (Err(e), Err(needle)) => {
                    assert_eq!(e.status.as_u16(), 400, "{fields:?}");
                    assert!(e.reason.contains(needle), "{fields:?}: {}", e.reason);
                }
                (got, want) => panic!("{fields:?}: got {got:?}, want {want:?}"),
            }
        }
        assert_eq!(
            status_of(b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 5,\r\n\r\n"),
            400
        );
        assert_eq!(
            status_of(b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 0x10\r\n\r\n"),
            400
        );
    }

    #[test]
    fn target_form_vs_method() {
        let ok: [&[u8]; 5] = [
            b"CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n",
            b"CONNECT [::1]:443 HTTP/1.1\r\nHost: [::1]:443\r\n\r\n",
            b"OPTIONS * HTTP/1.1\r\nHost: h\r\n\r\n",
            b"GET http://example.com/x?y HTTP/1.1\r\nHost: other\r\n\r\n",
            b"OPTIONS /x HTTP/1.1\r\nHost: h\r\n\r\n",
        ];
        for text in ok {
            parse_ok(text);
        }
        let bad: [&[u8]; 8] = [
            b"GET example.com:443 HTTP/1.1\r\nHost: h\r\n\r\n",
            b"CONNECT / HTTP/1.1\r\nHost: h\r\n\r\n",
            b"CONNECT http://h/ HTTP/1.1\r\nHost: h\r\n\r\n",
            b"CONNECT example.com HTTP/1.1\r\nHost: h\r\n\r\n",
            b"CONNECT example.com: HTTP/1.1\r\nHost: h\r\n\r\n",
            b"CONNECT * HTTP/1.1\r\nHost: h\r\n\r\n",
            b"GET * HTTP/1.1\r\nHost: h\r\n\r\n",
            b"GET index.html HTTP/1.1\r\nHost: h\r\n\r\n",
        ];
        for text in bad {
            assert_eq!(status_of(text), 400, "{:?}", String::from_utf8_lossy(text));
        }
        let (req, _, _) = parse_ok(b"GET http://example.com/x?y HTTP/1.1\r\nHost: other\r\n\r\n");
        assert_eq!(req.target_form(), TargetForm::Absolute);
        assert_eq!(req.host(), Some("example.com"));
        assert_eq!(req.path(), "/x");
    }

    #[test]
    fn connection_semantics_after_parse() {
        let (req, _, _) = parse_ok(
            b"GET /chat HTTP/1.1\r\nHost: h\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n",
        );
        assert!(req.is_upgrade());
        let (req, _, kind) = parse_ok(
            b"PUT /f HTTP/1.1\r\nHost: h\r\nExpect: 100-continue\r\nTransfer-Encoding: chunked\r\n\r\n",
        );
        assert!(req.expects_continue());
        assert!(req.is_chunked());
        assert_eq!(kind, BodyKind::Chunked);
    }

    #[test]
    fn error_display_is_useful() {
        let e = HttpError::bad_request("missing Host header (required in HTTP/1.1)");
        assert_eq!(
            e.to_string(),
            "400 Bad Request: missing Host header (required in HTTP/1.1)"
        );
    }

    #[test]
    fn parser_recovers_after_error() {
        let mut parser = HeadParser::new();
        let mut req = Request::new();
        assert!(parser
            .parse_request(b"GET / HTTP/1.1\r\n\r\n", &limits(), &mut req)
            .is_err());
        assert!(parser
            .parse_request(b"GET / HTTP/1.1\r\nHost: h\r\n\r\n", &limits(), &mut req)
            .unwrap()
            .is_some());
        // A shorter buffer than already scanned means a new head.
        let mut parser = HeadParser::new();
        assert_eq!(
            parser.parse_request(b"GET /long/path HTTP/1.1\r\n", &limits(), &mut req),
            Ok(None)
        );
        assert!(parser
            .parse_request(b"GET / HTTP/1.0\r\n\r\n", &limits(), &mut req)
            .unwrap()
            .is_some());
    }

    #[test]
    fn hostile_inputs_never_panic() {
        // Deterministic pseudo-random bytes biased towards HTTP syntax.
        let alphabet =
            b"GET /HTP1.0\r\n:; ,\t\x00\x7f\xffHost:Content-Length:Transfer-Encoding:chunked5";
        let mut seed: u32 = 12345;
        for _ in 0..3000 {
            let mut text = Vec::new();
            let len = (seed % 120) as usize;
            for _ in 0..len {
                seed = seed.wrapping_mul(1_103_515_245).wrapping_add(12345);
                text.push(alphabet[(seed >> 16) as usize % alphabet.len()]);
            }
            let mut req = Request::new();
            let mut resp = ResponseHead::new();
            let _ = HeadParser::new().parse_request(&text, &limits(), &mut req);
            let _ = HeadParser::new().parse_response(&text, &limits(), Method::Get, &mut resp);
        }
    }

    // ---- responses ----

    fn parse_resp(text: &[u8], method: Method) -> Result<Option<(usize, BodyKind)>, HttpError> {
        let mut resp = ResponseHead::new();
        HeadParser::new().parse_response(text, &limits(), method, &mut resp)
    }

    fn resp_kind(text: &[u8], method: Method) -> BodyKind {
        parse_resp(text, method).unwrap().unwrap().1
    }

    #[test]
    fn simple_response() {
        let text = b"HTTP/1.1 404 Not Found\r\nContent-Length: 9\r\nX-A: b\r\n\r\nnot found";
        let mut resp = ResponseHead::new();
        let (len, kind) = HeadParser::new()
            .parse_response(text, &limits(), Method::Get, &mut resp)
            .unwrap()
            .unwrap();
        assert_eq!(&text[len..], b"not found");
        assert_eq!(kind, BodyKind::Length(9));
        assert_eq!(resp.status(), StatusCode::NOT_FOUND);
        assert_eq!(resp.reason(), "Not Found");
        assert_eq!(resp.version(), Version::Http11);
        assert_eq!(resp.header("x-a"), Some("b"));
    }

    #[test]
    fn response_body_kinds() {
        let cases: [(&[u8], Method, BodyKind); 12] = [
            (
                b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n",
                Method::Head,
                BodyKind::None,
            ),
            (
                b"HTTP/1.1 100 Continue\r\n\r\n",
                Method::Post,
                BodyKind::None,
            ),
            (
                b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n\r\n",
                Method::Get,
                BodyKind::None,
            ),
            (
                b"HTTP/1.1 204 No Content\r\nContent-Length: 5\r\n\r\n",
                Method::Get,
                BodyKind::None,
            ),
            (
                b"HTTP/1.1 304 Not Modified\r\nTransfer-Encoding: chunked\r\n\r\n",
                Method::Get,
                BodyKind::None,
            ),
            (b"HTTP/1.1 200 OK\r\n\r\n", Method::Connect, BodyKind::None),
            (
                b"HTTP/1.1 407 Auth\r\nContent-Length: 3\r\n\r\n",
                Method::Connect,
                BodyKind::Length(3),
            ),
            (
                b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n",
                Method::Get,
                BodyKind::Chunked,
            ),
            (
                b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\n",
                Method::Get,
                BodyKind::UntilClose,
            ),
            (
                b"HTTP/1.0 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n",
                Method::Get,
                BodyKind::UntilClose,
            ),
            (
                b"HTTP/1.1 200 OK\r\nContent-Length: 5, 5\r\n\r\n",
                Method::Get,
                BodyKind::Length(5),
            ),
            (
                b"HTTP/1.0 200 OK\r\n\r\n",
                Method::Get,
                BodyKind::UntilClose,
            ),
        ];
        for (text, method, want) in cases {
            assert_eq!(
                resp_kind(text, method),
                want,
                "{:?}",
                String::from_utf8_lossy(text)
            );
        }
    }

    #[test]
    fn response_errors_are_502() {
        let cases: [&[u8]; 7] = [
            b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nContent-Length: -5\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked, chunked\r\n\r\n",
            b"HTTP/2.0 200 OK\r\n\r\n",
            b"HTTP/1.1 099 Low\r\n\r\n",
            b"HTTP/1.1 20 OK\r\n\r\n",
        ];
        for text in cases {
            let err = parse_resp(text, Method::Get).unwrap_err();
            assert_eq!(
                err.status,
                StatusCode::BAD_GATEWAY,
                "{:?}",
                String::from_utf8_lossy(text)
            );
        }
        assert_eq!(
            parse_resp(b"HTTP/1.1 200 OK\r\nX: a\rb\r\n\r\n", Method::Get)
                .unwrap_err()
                .reason,
            "bare CR in response head"
        );
    }

    #[test]
    fn response_leniency() {
        let mut resp = ResponseHead::new();
        let text = b"HTTP/1.1 200 OK\nX-Folded: a\r\n  b\nName : v\n\nbody";
        let (len, kind) = HeadParser::new()
            .parse_response(text, &limits(), Method::Get, &mut resp)
            .unwrap()
            .unwrap();
        assert_eq!(&text[len..], b"body");
        assert_eq!(kind, BodyKind::UntilClose);
        assert_eq!(resp.header("x-folded"), Some("a    b"));
        assert_eq!(resp.header("name"), Some("v"));
        // No reason phrase at all.
        let mut resp = ResponseHead::new();
        HeadParser::new()
            .parse_response(b"HTTP/1.1 200\r\n\r\n", &limits(), Method::Get, &mut resp)
            .unwrap()
            .unwrap();
        assert_eq!(resp.reason(), "");
        assert_eq!(resp.status(), StatusCode::OK);
    }

    #[test]
    fn response_split_everywhere() {
        let text = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nServer: x\r\n\r\n";
        for split in 0..=text.len() {
            let mut parser = HeadParser::new();
            let mut resp = ResponseHead::new();
            let first = parser.parse_response(&text[..split], &limits(), Method::Get, &mut resp);
            let result = match first {
                Ok(Some(r)) => r,
                Ok(None) => parser
                    .parse_response(text, &limits(), Method::Get, &mut resp)
                    .unwrap()
                    .unwrap(),
                Err(e) => panic!("{split}: {e}"),
            };
            assert_eq!(result, (text.len(), BodyKind::Chunked), "{split}");
            assert_eq!(resp.header("server"), Some("x"));
        }
    }

    #[test]
    fn response_limits() {
        let mut l = limits();
        l.max_head_size = 40;
        let mut resp = ResponseHead::new();
        let err = HeadParser::new()
            .parse_response(&[b'X'; 41], &l, Method::Get, &mut resp)
            .unwrap_err();
        assert_eq!(err.status, StatusCode::BAD_GATEWAY);
        l = limits();
        l.max_headers = 1;
        let err = HeadParser::new()
            .parse_response(
                b"HTTP/1.1 200 OK\r\nA: 1\r\nB: 2\r\n\r\n",
                &l,
                Method::Get,
                &mut resp,
            )
            .unwrap_err();
        assert_eq!(err.reason, "too many header fields in response");
    }

    #[test]
    fn line_break_search_matches_a_plain_scan() {
        let mut seed = 0x2545_f491_4f6c_dd1d_u64;
        for len in 0..80 {
            for _ in 0..40 {
                let hay: Vec<u8> = (0..len)
                    .map(|_| {
                        seed ^= seed << 13;
                        seed ^= seed >> 7;
                        seed ^= seed << 17;
                        // Mostly text, sometimes CR, LF and bytes near them (0x0c, 0x0e, 0x8d).
                        match seed % 23 {
                            0 => b'\r',
                            1 => b'\n',
                            2 => 0x0c,
                            3 => 0x8d,
                            4 => 0x0e,
                            _ => b'a' + (seed % 26) as u8,
                        }
                    })
                    .collect();
                let plain = hay.iter().position(|&b| b == b'\r' || b == b'\n');
                assert_eq!(super::find_line_break(&hay), plain, "{hay:?}");
            }
        }
    }

    // ---- the single-pass fast path for clean request heads ----

    /// The scanner + httparse path alone: what `parse_request` does when the fast path
    /// declines.
    fn fallback(
        buf: &[u8],
        limits: &HeadLimits,
        req: &mut Request,
    ) -> Result<Option<(usize, BodyKind)>, HttpError> {
        let max_fields = limits.max_headers.min(MAX_HEADERS_CAP);
        let head_len = match HeadParser::new().scan(buf, limits, max_fields, false) {
            Ok(Some(len)) => len,
            Ok(None) => return Ok(None),
            Err(e) => return Err(e.for_request()),
        };
        parse_request_head(&buf[..head_len], max_fields, req).map(|kind| Some((head_len, kind)))
    }

    /// A request that already holds another request, as a reused pooled one does, so that a
    /// field the fast path forgot to reset shows up.
    fn used_request() -> Request {
        let mut req = Request::new();
        let text = b"PATCH http://old.example/o?p HTTP/1.0\r\nHost: old\r\nConnection: keep-alive, Upgrade\r\nUpgrade: x\r\nExpect: 100-continue\r\nContent-Length: 9\r\n\r\n";
        assert!(fallback(text, &limits(), &mut req).unwrap().is_some());
        req
    }

    /// How often the fast path took each way, so the differential test can check that it
    /// really compared something.
    #[derive(Debug, Default)]
    struct Outcomes {
        accepted: usize,
        refused: usize,
        declined: usize,
    }

    /// Asserts that the fast path declines `buf` or gives exactly what the fallback gives:
    /// same head length and body, or same error, and the same request down to its private
    /// fields and raw header bytes.
    fn assert_fast_path_agrees(buf: &[u8], limits: &HeadLimits, outcomes: &mut Outcomes) {
        let max_fields = limits.max_headers.min(MAX_HEADERS_CAP);
        let mut fast_req = used_request();
        let Some(fast) = fast_parse(buf, limits, max_fields, &mut fast_req) else {
            outcomes.declined += 1;
            return;
        };
        let mut slow_req = used_request();
        let slow = fallback(buf, limits, &mut slow_req);
        let show = || format!("{:?} with {limits:?}", String::from_utf8_lossy(buf));
        match (&fast, &slow) {
            (Ok(done), Ok(Some(want))) => {
                assert_eq!(done, want, "{}", show());
                outcomes.accepted += 1;
            }
            (Err(e), Err(want)) => {
                assert_eq!(e, want, "{}", show());
                outcomes.refused += 1;
            }
            _ => panic!("fast path {fast:?}, fallback {slow:?}: {}", show()),
        }
        assert_eq!(fast_req.exact_state(), slow_req.exact_state(), "{}", show());
    }

    /// xorshift64*: deterministic, so a failure reproduces.
    struct Rng(u64);

    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 >> 12;
            self.0 ^= self.0 << 25;
            self.0 ^= self.0 >> 27;
            self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
        }

        fn below(&mut self, n: usize) -> usize {
            (self.next() % n as u64) as usize
        }

        fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
            &items[self.below(items.len())]
        }
    }

    /// Clean heads of many shapes, each a starting point for mutations.
    const SEED_HEADS: [&[u8]; 15] = [
        b"GET / HTTP/1.1\r\nHost: b\r\n\r\n",
        b"GET /plaintext HTTP/1.1\r\nHost: localhost:8080\r\nUser-Agent: wrk\r\nAccept: */*\r\n\r\n",
        b"GET /index.html?user=42&lang=en HTTP/1.1\r\nHost: example.com\r\nUser-Agent: Mozilla/5.0 (X11; Linux x86_64) Gecko/20100101 Firefox/128.0\r\nAccept: text/html,application/xhtml+xml\r\nAccept-Encoding: gzip, deflate, br\r\nConnection: keep-alive\r\nCookie: session=abcdef0123456789; theme=dark\r\n\r\n",
        b"POST /upload?a=b&c HTTP/1.1\r\nHost: example.com:8080\r\nContent-Length: 5\r\nContent-Type: text/plain\r\n\r\nhello",
        b"PUT /x HTTP/1.1\r\nHost: [::1]:80\r\nTransfer-Encoding: chunked\r\nExpect: 100-continue\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
        b"GET /chat HTTP/1.1\r\nHost: h\r\nConnection: keep-alive, Upgrade\r\nUpgrade: websocket\r\n\r\n",
        b"GET / HTTP/1.0\r\n\r\n",
        b"HEAD /k HTTP/1.0\r\nConnection: keep-alive\r\n\r\nGET / HTTP/1.1\r\n",
        b"OPTIONS * HTTP/1.1\r\nHost: h\r\n\r\n",
        b"CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n",
        b"GET http://user@example.com:8080/p?q HTTP/1.1\r\nHost: other\r\n\r\n",
        b"PROPFIND /dav HTTP/1.1\r\nhost: h\r\nX-Obs: caf\xe9 \xff\r\nX-Empty:\r\nX-Ws: \t a\tb \t\r\n\r\n",
        b"DELETE /a?b?c HTTP/1.1\r\nHOST: h.example\r\nCONTENT-LENGTH: 0\r\nCONNECTION: close\r\n\r\n",
        b"get /x%20y HTTP/1.1\r\nHost: h\r\nTE: trailers\r\nX-A: 1\r\nx-a: 2\r\n\r\n",
        b"GET /i HTTP/1.1\r\nHost: h\r\nUser-Agent: u\r\nAccept: */*\r\nAccept-Encoding: gzip\r\nAccept-Language: en\r\nConnection: keep-alive\r\nCookie: a=b\r\nCache-Control: no-cache\r\nUpgrade-Insecure-Requests: 1\r\nContent-Type: text/plain\r\nContent-Length: 0\r\n\r\n",
    ];

    /// Field lines that exercise framing: duplicates, conflicts, odd spacing and case.
    const FRAMING_FIELDS: [&[u8]; 28] = [
        b"Host: h",
        b"Host: a/b",
        b"Host: a b",
        b"Host:",
        b"host:\tx.example:80\t",
        b"Host: user@h",
        b"Content-Length: 5",
        b"Content-Length: 5, 5",
        b"Content-Length: 6",
        b"content-length:7",
        b"Content-Length: +5",
        b"Content-Length: ",
        b"Content-Length: 99999999999999999999",
        b"Transfer-Encoding: chunked",
        b"Transfer-Encoding:\tCHUNKED\t",
        b"Transfer-Encoding: gzip, chunked",
        b"Transfer-Encoding: chunked, gzip",
        b"Transfer-Encoding: chunked, chunked",
        b"Connection: close",
        b"Connection: Upgrade",
        b"CONNECTION: keep-alive ,close",
        b"Upgrade: websocket",
        b"Expect: 100-continue",
        b"expect: 100-Continue ",
        b"Expect: 100-continue, x",
        b"X-Obs-Text: \x80\xfe",
        b"Hosts: h",
        b"Content-Lengths: 1",
    ];

    /// Bytes that matter to a head parser, plus a few ordinary ones.
    const NASTY: &[u8] = b"\r\n\r\n \t:::\x00\x01\x0b\x7f\x80\xc3\xa9\xff#?/@\"()<>,;=%aZ09-._~";

    /// One random change to `head`.
    fn mutate(rng: &mut Rng, head: &mut Vec<u8>) {
        let at = rng.below(head.len() + 1);
        match rng.below(10) {
            0 | 1 => head.insert(at, *rng.pick(NASTY)),
            2 if at < head.len() => head[at] = *rng.pick(NASTY),
            3 if at < head.len() => {
                head.remove(at);
            }
            4 => {
                // Duplicate a whole line (usually a field line).
                let start = head[..at]
                    .iter()
                    .rposition(|&b| b == b'\n')
                    .map_or(0, |p| p + 1);
                if let Some(len) = head[start..].iter().position(|&b| b == b'\n') {
                    let line = head[start..start + len + 1].to_vec();
                    head.splice(start..start, line);
                }
            }
            5 | 6 => {
                // A framing field line after the request-line.
                if let Some(first) = head.iter().position(|&b| b == b'\n') {
                    let mut line = rng.pick(&FRAMING_FIELDS).to_vec();
                    line.extend_from_slice(b"\r\n");
                    let mut at = first + 1;
                    for _ in 0..rng.below(3) {
                        match head[at..].iter().position(|&b| b == b'\n') {
                            Some(p) if head[at] != b'\r' => at += p + 1,
                            _ => break,
                        }
                    }
                    head.splice(at..at, line);
                }
            }
            7 => {
                // Another version.
                let versions: [&[u8]; 4] = [b"HTTP/1.1", b"HTTP/1.0", b"HTTP/1.2", b"HTTP/2.0"];
                if let Some(p) = head.windows(8).position(|w| w.starts_with(b"HTTP/")) {
                    head.splice(p..p + 8, rng.pick(&versions).iter().copied());
                }
            }
            8 => {
                // A long run of one byte, to reach the limits.
                let filler = *rng.pick(b"aaa \t\x80");
                let n = rng.below(40);
                head.splice(at..at, std::iter::repeat(filler).take(n));
            }
            _ => {
                // Anything after the head: a body or the next request.
                let next = rng.pick(&SEED_HEADS).to_vec();
                head.extend_from_slice(&next);
            }
        }
    }

    /// Limits from the defaults down to a few dozen bytes, so generated heads hit each one
    /// on both sides.
    fn random_limits(rng: &mut Rng, head_len: usize) -> HeadLimits {
        if rng.below(3) == 0 {
            return limits();
        }
        let around = |rng: &mut Rng, n: usize| n.saturating_sub(8) + rng.below(16);
        let line = head_len.min(200);
        HeadLimits {
            max_request_line: around(rng, line / 2),
            max_head_size: around(rng, head_len),
            max_headers: rng.below(8),
        }
    }

    #[test]
    fn fast_path_agrees_with_the_scanner_and_httparse() {
        // Deterministic by default; a longer hunt takes another seed and more cases, e.g.
        // UVHTTP_HEAD_DIFF_SEED=7 UVHTTP_HEAD_DIFF_CASES=2000000 cargo test --release --lib fast_path_agrees
        let env = |name: &str| std::env::var(name).ok().and_then(|v| v.parse::<u64>().ok());
        let mut rng = Rng(
            env("UVHTTP_HEAD_DIFF_SEED").map_or(0x9e37_79b9_7f4a_7c15, |seed| {
                seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1
            }),
        );
        let cases = env("UVHTTP_HEAD_DIFF_CASES").unwrap_or(20_000);
        let mut whole = Outcomes::default();
        let mut prefixes = Outcomes::default();
        for case in 0..cases {
            let mut head = rng.pick(&SEED_HEADS).to_vec();
            // A quarter stay clean (framing aside), so the accepting side is well covered.
            let mutations = if case % 4 == 0 { 0 } else { 1 + rng.below(3) };
            for _ in 0..mutations {
                mutate(&mut rng, &mut head);
            }
            if case % 4 == 0 && rng.below(2) == 0 {
                for _ in 0..1 + rng.below(3) {
                    if let Some(first) = head.iter().position(|&b| b == b'\n') {
                        let mut line = rng.pick(&FRAMING_FIELDS).to_vec();
                        line.extend_from_slice(b"\r\n");
                        head.splice(first + 1..first + 1, line);
                    }
                }
            }
            let limits = random_limits(&mut rng, head.len());
            assert_fast_path_agrees(&head, &limits, &mut whole);
            // Every split point: what a first read may hold.
            if case % 3 == 0 {
                for end in 0..head.len() {
                    assert_fast_path_agrees(&head[..end], &limits, &mut prefixes);
                }
            }
        }
        // The comparison must have happened often on each side, or it proves little.
        assert!(whole.accepted > 3_000, "{whole:?}");
        assert!(whole.refused > 1_000, "{whole:?}");
        assert!(whole.declined > 8_000, "{whole:?}");
        assert!(prefixes.accepted > 10_000, "{prefixes:?}");
    }

    #[test]
    fn parse_request_gives_the_same_answer_whole_or_in_pieces() {
        // Through the public entry point. The whole head at once (fast path first) must give
        // what the fallback alone gives. In two reads (the second always goes to the scanner)
        // a complete head must give the same too; errors may differ there, as a limit can be
        // found exceeded before the line that is malformed has arrived.
        let mut rng = Rng(0x1234_5678_9abc_def1);
        for _ in 0..4_000 {
            let mut head = rng.pick(&SEED_HEADS).to_vec();
            for _ in 0..rng.below(3) {
                mutate(&mut rng, &mut head);
            }
            let limits = random_limits(&mut rng, head.len());
            let show = String::from_utf8_lossy(&head);
            let mut whole_req = used_request();
            let whole = HeadParser::new().parse_request(&head, &limits, &mut whole_req);
            let mut alone_req = used_request();
            let alone = fallback(&head, &limits, &mut alone_req);
            assert_eq!(whole, alone, "{show:?} with {limits:?}");

            let split = 1 + rng.below(head.len());
            let mut parser = HeadParser::new();
            let mut split_req = used_request();
            let mut pieces = parser.parse_request(&head[..split], &limits, &mut split_req);
            if pieces == Ok(None) && split < head.len() {
                pieces = parser.parse_request(&head, &limits, &mut split_req);
            }
            if matches!(whole, Ok(Some(_))) || matches!(pieces, Ok(Some(_))) {
                assert_eq!(whole, pieces, "{show:?} split at {split} with {limits:?}");
                assert_eq!(whole_req.exact_state(), alone_req.exact_state(), "{show:?}");
                assert_eq!(whole_req.exact_state(), split_req.exact_state(), "{show:?}");
            }
        }
    }

    /// What the fast path alone does with `text` under `limits`.
    fn fast_with(text: &[u8], limits: &HeadLimits) -> Option<Result<(usize, BodyKind), HttpError>> {
        let mut req = Request::new();
        fast_parse(
            text,
            limits,
            limits.max_headers.min(MAX_HEADERS_CAP),
            &mut req,
        )
    }

    fn fast(text: &[u8]) -> Option<Result<(usize, BodyKind), HttpError>> {
        fast_with(text, &limits())
    }

    #[test]
    fn fast_path_declines_what_it_is_not_sure_of() {
        let cases: [(&str, &[u8]); 27] = [
            ("empty", b""),
            ("blank line first", b"\r\nGET / HTTP/1.1\r\nHost: h\r\n\r\n"),
            ("space first", b" GET / HTTP/1.1\r\nHost: h\r\n\r\n"),
            ("method not a token", b"G(T / HTTP/1.1\r\nHost: h\r\n\r\n"),
            ("two spaces", b"GET  / HTTP/1.1\r\nHost: h\r\n\r\n"),
            ("tab separator", b"GET\t/ HTTP/1.1\r\nHost: h\r\n\r\n"),
            ("fragment", b"GET /a#b HTTP/1.1\r\nHost: h\r\n\r\n"),
            (
                "non-ASCII target",
                b"GET /caf\xc3\xa9 HTTP/1.1\r\nHost: h\r\n\r\n",
            ),
            ("DEL in target", b"GET /a\x7f HTTP/1.1\r\nHost: h\r\n\r\n"),
            ("no version", b"GET /\r\nHost: h\r\n\r\n"),
            ("HTTP/1.2", b"GET / HTTP/1.2\r\nHost: h\r\n\r\n"),
            ("lowercase version", b"GET / http/1.1\r\nHost: h\r\n\r\n"),
            (
                "bare LF after the request-line",
                b"GET / HTTP/1.1\nHost: h\r\n\r\n",
            ),
            (
                "bare CR after the request-line",
                b"GET / HTTP/1.1\rHost: h\r\n\r\n",
            ),
            (
                "bare LF after a field",
                b"GET / HTTP/1.1\r\nHost: h\nX: y\r\n\r\n",
            ),
            (
                "bare CR in a value",
                b"GET / HTTP/1.1\r\nHost: h\r\nX: a\rb\r\n\r\n",
            ),
            ("bare LF at the end", b"GET / HTTP/1.1\r\nHost: h\r\n\n"),
            (
                "CR without LF at the end",
                b"GET / HTTP/1.1\r\nHost: h\r\n\rX",
            ),
            (
                "obs-fold",
                b"GET / HTTP/1.1\r\nHost: h\r\nX: a\r\n b\r\n\r\n",
            ),
            ("first field folded", b"GET / HTTP/1.1\r\n Host: h\r\n\r\n"),
            ("space before colon", b"GET / HTTP/1.1\r\nHost : h\r\n\r\n"),
            ("no colon", b"GET / HTTP/1.1\r\nHost\r\n\r\n"),
            ("empty name", b"GET / HTTP/1.1\r\n: h\r\n\r\n"),
            ("NUL in a name", b"GET / HTTP/1.1\r\nA\x00B: v\r\n\r\n"),
            (
                "NUL in a value",
                b"GET / HTTP/1.1\r\nHost: h\r\nX: a\x00\r\n\r\n",
            ),
            (
                "DEL in a value",
                b"GET / HTTP/1.1\r\nHost: h\r\nX: a\x7f\r\n\r\n",
            ),
            (
                "CONNECT to a path",
                b"CONNECT / HTTP/1.1\r\nHost: h\r\n\r\n",
            ),
        ];
        for (why, text) in cases {
            assert_eq!(fast(text), None, "{why}");
            // ... and the request ends up exactly as the fallback leaves it.
            let mut with_fast_path = Request::new();
            let mut without = Request::new();
            assert_eq!(
                HeadParser::new().parse_request(text, &limits(), &mut with_fast_path),
                fallback(text, &limits(), &mut without),
                "{why}"
            );
        }
        for (why, text) in [
            (
                "asterisk with GET",
                &b"GET * HTTP/1.1\r\nHost: h\r\n\r\n"[..],
            ),
            (
                "authority-form with GET",
                b"GET h:80 HTTP/1.1\r\nHost: h\r\n\r\n",
            ),
        ] {
            assert_eq!(fast(text), None, "{why}");
        }
    }

    #[test]
    fn fast_path_declines_an_incomplete_head() {
        let text = b"POST /p?q HTTP/1.1\r\nHost: h\r\nContent-Length: 2\r\n\r\n";
        for end in 0..text.len() {
            assert_eq!(fast(&text[..end]), None, "{end}");
        }
        assert_eq!(fast(text), Some(Ok((text.len(), BodyKind::Length(2)))));
    }

    #[test]
    fn fast_path_declines_at_the_limits_and_accepts_up_to_them() {
        let text = b"GET /abc HTTP/1.1\r\nHost: h\r\nA: 1\r\nB: 2\r\n\r\n";
        let line = "GET /abc HTTP/1.1".len();
        let at = |limits: HeadLimits| fast_with(text, &limits).map(|r| r.is_ok());
        let base = limits();
        assert_eq!(at(base), Some(true));
        let with_line = |n| HeadLimits {
            max_request_line: n,
            ..base
        };
        assert_eq!(at(with_line(line)), Some(true));
        assert_eq!(at(with_line(line - 1)), None);
        let with_size = |n| HeadLimits {
            max_head_size: n,
            ..base
        };
        assert_eq!(at(with_size(text.len())), Some(true));
        assert_eq!(at(with_size(text.len() - 1)), None);
        let with_fields = |n| HeadLimits {
            max_headers: n,
            ..base
        };
        assert_eq!(at(with_fields(3)), Some(true));
        assert_eq!(at(with_fields(2)), None);
        assert_eq!(at(with_fields(0)), None);
        // The fallback then gives the precise statuses.
        for (limits, status) in [
            (with_line(line - 1), 414),
            (with_size(text.len() - 1), 431),
            (with_fields(2), 431),
        ] {
            let err = HeadParser::new()
                .parse_request(text, &limits, &mut Request::new())
                .unwrap_err();
            assert_eq!(err.status.as_u16(), status, "{limits:?}");
        }
    }

    #[test]
    fn fast_path_gives_the_framing_errors_itself() {
        let cases: [(&[u8], u16, &str); 6] = [
            (
                b"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n",
                400,
                "more than one Host header",
            ),
            (b"GET / HTTP/1.1\r\n\r\n", 400, "missing Host header"),
            (b"GET / HTTP/1.1\r\nHost: a b\r\n\r\n", 400, "invalid Host"),
            (
                b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 5x\r\n\r\n",
                400,
                "not a decimal",
            ),
            (
                b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n",
                400,
                "both present",
            ),
            (
                b"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: gzip, chunked\r\n\r\n",
                501,
                "unsupported transfer coding",
            ),
        ];
        for (text, status, reason) in cases {
            let Some(Err(e)) = fast(text) else {
                panic!("{:?}", String::from_utf8_lossy(text));
            };
            assert_eq!(e.status.as_u16(), status);
            assert!(e.reason.contains(reason), "{}", e.reason);
            assert_fast_path_agrees(text, &limits(), &mut Outcomes::default());
        }
    }

    #[test]
    fn fast_path_fills_the_request_like_the_fallback() {
        let text = b"PROPFIND /dav/a%20b?x=1?y HTTP/1.0\r\nHost:h.example:8080 \t\r\nX-Obs: caf\xe9\r\nX-Empty: \t \r\nConnection: keep-alive\r\n\r\nbody";
        let mut req = used_request();
        let done = fast_parse(text, &limits(), 100, &mut req);
        assert_eq!(done, Some(Ok((text.len() - 4, BodyKind::None))));
        assert_eq!(req.method(), Method::Other);
        assert_eq!(req.method_str(), "PROPFIND");
        assert_eq!(req.path(), "/dav/a%20b");
        assert_eq!(req.query(), Some("x=1?y"));
        assert_eq!(req.version(), Version::Http10);
        assert_eq!(req.header("host"), Some("h.example:8080"));
        assert_eq!(req.headers().get_bytes("x-obs"), Some(&b"caf\xe9"[..]));
        assert_eq!(req.header("x-empty"), Some(""));
        assert!(req.keep_alive());
        assert_fast_path_agrees(text, &limits(), &mut Outcomes::default());
    }

    #[test]
    fn fields_parsed_in_one_block_can_be_changed_afterwards() {
        // The fast path stores the fields with the head's separators between them; every
        // way of changing them must still see only names and values.
        let text = b"GET / HTTP/1.1\r\nHost: h\r\nA:  1 \r\nB:\t2\r\nA: 3\r\n\r\n";
        let mut req = Request::new();
        assert!(matches!(fast(text), Some(Ok(_))));
        fast_parse(text, &limits(), 100, &mut req);
        let mut want = Headers::new();
        for (n, v) in [("Host", "h"), ("A", "1"), ("B", "2"), ("A", "3")] {
            want.append(n, v);
        }
        assert_eq!(req.headers(), &want);
        assert_eq!(req.headers().byte_len(), want.byte_len());
        let edit = |h: &mut Headers| {
            h.set("a", "longer value");
            h.append("C", "4");
            assert!(h.remove("host"));
            h.set("b", "");
        };
        edit(req.headers_mut());
        edit(&mut want);
        assert_eq!(req.headers(), &want);
        assert_eq!(req.headers().byte_len(), want.byte_len());
        assert_eq!(req.headers().stored_len(), want.stored_len());
        assert_eq!(req.header("a"), Some("longer value"));
        assert_eq!(req.header("b"), Some(""));
        assert_eq!(req.header("c"), Some("4"));
    }

    #[test]
    fn token_names_are_classified_like_any_name() {
        let names: [&[u8]; 16] = [
            b"host",
            b"HOST",
            b"Host",
            b"hosT",
            b"hoSt",
            b"Content-Length",
            b"content-length",
            b"CONTENT-LENGTH",
            b"Connection",
            b"upgrade",
            b"UPGRADE",
            b"Expect",
            b"Transfer-Encoding",
            b"transfer-encodinG",
            b"Content_Length",
            b"Transfer-Encoding~",
        ];
        for name in names {
            assert_eq!(FieldName::of_token(name), FieldName::of(name), "{name:?}");
        }
        // Every token of a framing name's length that differs in one byte, in every case.
        let framing: [&[u8]; 6] = [
            b"host",
            b"content-length",
            b"connection",
            b"upgrade",
            b"expect",
            b"transfer-encoding",
        ];
        let tchars: Vec<u8> = (0..=255u8).filter(|&b| is_tchar(b)).collect();
        for lower in framing {
            for at in 0..lower.len() {
                for &b in &tchars {
                    let mut name = lower.to_vec();
                    name[at] = b;
                    assert_eq!(
                        FieldName::of_token(&name),
                        FieldName::of(&name),
                        "{:?}",
                        String::from_utf8_lossy(&name)
                    );
                }
            }
        }
    }

    #[test]
    fn value_end_matches_a_plain_scan() {
        let mut rng = Rng(0x5eed);
        for len in 0..40 {
            for _ in 0..200 {
                let line: Vec<u8> = (0..len)
                    .map(|_| match rng.below(12) {
                        0 => *rng.pick(b"\r\n\t\x00\x1f\x7f\x80\xff\x20\x7e"),
                        1 => rng.below(256) as u8,
                        _ => b'a' + rng.below(26) as u8,
                    })
                    .collect();
                for from in 0..=len {
                    let plain = line[from..]
                        .iter()
                        .position(|&b| (b < 0x20 && b != b'\t') || b == 0x7f)
                        .map(|p| from + p);
                    assert_eq!(value_end_in(&line, from), plain, "{line:?} from {from}");
                }
            }
        }
    }
}

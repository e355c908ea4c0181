//! Writing response heads and chunk framing into a byte buffer.

use std::cell::RefCell;

use super::bytes::short_eq;
use super::date::{date_line_is_current, with_date_line};
use super::headers::Headers;
use super::response::Response;
use super::status::StatusCode;

/// How the body of a response is delimited on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Framing {
    /// No body can follow (HEAD, 1xx, 204, 304).
    None,
    /// `Content-Length: n`.
    Length(u64),
    /// `Transfer-Encoding: chunked`.
    Chunked,
    /// The body ends when the connection closes (HTTP/1.0 clients, unknown length).
    UntilClose,
}

/// What the head says about the connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ConnectionHeader {
    /// Nothing (HTTP/1.1 default: persistent).
    Omit,
    /// `Connection: keep-alive` (needed for HTTP/1.0 clients).
    KeepAlive,
    /// `Connection: close`.
    Close,
}

/// The head of the last response with a `Content-Length` a server encoded, up to and
/// including `Content-Length: ` (one per server: its owner passes it to [`encode_head`]). A server tends to send the same head over and over: the same
/// status and fields, and a `Date` that changes once a second. When all three are unchanged,
/// copying that prefix whole replaces a dozen small copies, the status-line lookup and the date
/// cache; only the length and the end of the head are written per response.
pub(crate) struct HeadCache {
    /// Whether `prefix` was filled (and from a head the cache may stand for).
    filled: bool,
    status: StatusCode,
    /// The application's fields the prefix was made from.
    fields: Headers,
    /// When the `Date` line inside `prefix` was formatted (see `date_line_is_current`).
    date_at: u64,
    prefix: Vec<u8>,
    /// Whether `fields` is a single `Content-Type`, as `respond()` leaves a response; its
    /// value is then in `sole_content_type`, and [`HeadCache::whole_head`] recognises the head
    /// from the value alone. (A flag and a kept buffer: refills never allocate.)
    has_sole_content_type: bool,
    sole_content_type: Vec<u8>,
    /// `prefix` completed for a body of `whole_len` bytes (length, blank line): a server
    /// that answers with same-sized bodies copies its whole head in one piece.
    whole_len: Option<u64>,
    whole: Vec<u8>,
}

impl HeadCache {
    /// An empty cache: the first head encoded fills it.
    pub(crate) const fn new() -> HeadCache {
        HeadCache {
            filled: false,
            status: StatusCode::OK,
            fields: Headers::new(),
            date_at: u64::MAX,
            prefix: Vec::new(),
            has_sole_content_type: false,
            sole_content_type: Vec::new(),
            whole_len: None,
            whole: Vec::new(),
        }
    }

    /// The whole head of a keep-alive HTTP/1.1 response with `status`, the single field
    /// `Content-Type: content_type` and a body of `body_len` bytes, if this cache holds it
    /// for `loop_now_ms` (`respond()` on an untouched response); `None` otherwise. The value
    /// is compared with one the cache took from a response that passed field validation, so
    /// a match needs no validation of its own.
    #[inline(always)]
    pub(crate) fn whole_head(
        &mut self,
        status: StatusCode,
        content_type: &[u8],
        body_len: u64,
        loop_now_ms: u64,
    ) -> Option<&[u8]> {
        if !self.holds(status, content_type, loop_now_ms) {
            return None;
        }
        if self.whole_len != Some(body_len) {
            self.complete_whole(body_len);
        }
        Some(&self.whole)
    }

    /// Completes `prefix` for a body of `body_len` bytes into `whole`. Out of line: a server
    /// mostly answers with bodies of one length.
    #[inline(never)]
    fn complete_whole(&mut self, body_len: u64) {
        self.whole.clear();
        self.whole.extend_from_slice(&self.prefix);
        push_length_tail(&mut self.whole, body_len, ConnectionHeader::Omit);
        self.whole_len = Some(body_len);
    }
    /// Appends the cached prefix if it is exactly what `response` encodes to at `loop_now_ms`.
    fn append_if_current(&self, out: &mut Vec<u8>, response: &Response, loop_now_ms: u64) -> bool {
        if !self.filled
            || self.status != response.status()
            || !date_line_is_current(self.date_at, loop_now_ms)
            || !self.fields.same_bytes(response.headers())
        {
            return false;
        }
        out.reserve(self.prefix.len() + LENGTH_TAIL_MAX);
        out.extend_from_slice(&self.prefix);
        true
    }

    fn fill(&mut self, response: &Response, date_at: u64, prefix: &[u8]) {
        self.filled = true;
        self.status = response.status();
        self.fields.clone_from(response.headers());
        self.date_at = date_at;
        self.prefix.clear();
        self.prefix.extend_from_slice(prefix);
        self.whole_len = None;
        let mut fields = response.headers().iter_bytes();
        self.sole_content_type.clear();
        self.has_sole_content_type = match (fields.next(), fields.next()) {
            (Some((name, value)), None) if name == CONTENT_TYPE => {
                self.sole_content_type.extend_from_slice(value);
                true
            }
            _ => false,
        };
    }

    /// Whether `prefix` is the head of a response with `status`, `Content-Type: content_type`
    /// as its only field and a `Date` current at `loop_now_ms`.
    #[inline(always)]
    fn holds(&self, status: StatusCode, content_type: &[u8], loop_now_ms: u64) -> bool {
        self.filled
            && self.status == status
            && self.has_sole_content_type
            && short_eq(&self.sole_content_type, content_type)
            && date_line_is_current(self.date_at, loop_now_ms)
    }
}

/// The field name `Response::set_content_type` stores, as the head cache compares it.
const CONTENT_TYPE: &[u8] = b"Content-Type";

/// Appends the response head: status line, the application's fields, `Date` unless the
/// application set one, the framing field (`write_length` false for 304/HEAD cases where
/// the application decides), `Connection`, and the blank line. `cache` remembers the head
/// for the next one (see [`HeadCache`]).
pub(crate) fn encode_head(
    out: &mut Vec<u8>,
    cache: &RefCell<HeadCache>,
    response: &Response,
    framing: Framing,
    connection: ConnectionHeader,
    loop_now_ms: u64,
) {
    let cacheable = matches!(framing, Framing::Length(_)) && !response.has_custom_reason();
    if cacheable && cache.borrow().append_if_current(out, response, loop_now_ms) {
        if let Framing::Length(n) = framing {
            push_length_tail(out, n, connection);
        }
        return;
    }
    let start = out.len();
    let status = response.status();
    // One pass over the application's fields finds what changes the head (its own `Date`,
    // `Connection` tokens to merge with ours) and sizes the single reservation, so the pushes
    // below never reallocate.
    let mut has_date = false;
    let mut extra_connection: Option<&[u8]> = None;
    let mut fields_len = 0;
    for (name, value) in response.headers().iter_bytes() {
        fields_len += name.len() + value.len() + 4;
        if name.len() == 4 && name.eq_ignore_ascii_case(b"date") {
            has_date = true;
        } else if name.len() == 10 && name.eq_ignore_ascii_case(b"connection") {
            extra_connection = Some(value);
        }
    }
    out.reserve(160 + fields_len);
    match status
        .status_line()
        .filter(|_| !response.has_custom_reason())
    {
        Some(line) => out.extend_from_slice(line),
        None => {
            out.extend_from_slice(b"HTTP/1.1 ");
            let code = status.as_u16();
            if (100..1000).contains(&code) {
                out.extend_from_slice(&[
                    b'0' + (code / 100) as u8,
                    b'0' + (code / 10 % 10) as u8,
                    b'0' + (code % 10) as u8,
                    b' ',
                ]);
            } else {
                push_u64(out, code as u64);
                out.push(b' ');
            }
            out.extend_from_slice(response.reason().as_bytes());
            out.extend_from_slice(b"\r\n");
        }
    }
    for (name, value) in response.headers().iter_bytes() {
        // "Connection: upgrade" etc. are written below with our own Connection decision.
        if name.len() == 10 && name.eq_ignore_ascii_case(b"connection") {
            continue;
        }
        out.extend_from_slice(name);
        out.extend_from_slice(b": ");
        out.extend_from_slice(value);
        out.extend_from_slice(b"\r\n");
    }
    let mut date_at = u64::MAX;
    if !has_date {
        date_at = with_date_line(loop_now_ms, |line, at| {
            out.extend_from_slice(line);
            at
        });
    }
    match framing {
        Framing::Length(n) => {
            out.extend_from_slice(b"Content-Length: ");
            // The application's own Date or Connection field makes the head one-off.
            if cacheable && !has_date && extra_connection.is_none() {
                cache.borrow_mut().fill(response, date_at, &out[start..]);
            }
            if extra_connection.is_none() {
                push_length_tail(out, n, connection);
                return;
            }
            push_u64(out, n);
            out.extend_from_slice(b"\r\n");
        }
        Framing::Chunked => out.extend_from_slice(b"Transfer-Encoding: chunked\r\n"),
        Framing::None => {
            // A HEAD or 304 response may state the length the full response would have.
            if let Some(n) = response.content_length() {
                if status.as_u16() != 204 && !status.is_informational() {
                    out.extend_from_slice(b"Content-Length: ");
                    push_u64(out, n);
                    out.extend_from_slice(b"\r\n");
                }
            }
        }
        Framing::UntilClose => {}
    }
    match (connection, extra_connection) {
        (ConnectionHeader::Close, _) => out.extend_from_slice(b"Connection: close\r\n"),
        (ConnectionHeader::KeepAlive, None) => out.extend_from_slice(b"Connection: keep-alive\r\n"),
        (ConnectionHeader::KeepAlive, Some(v)) => {
            out.extend_from_slice(b"Connection: keep-alive, ");
            out.extend_from_slice(v);
            out.extend_from_slice(b"\r\n");
        }
        (ConnectionHeader::Omit, Some(v)) => {
            out.extend_from_slice(b"Connection: ");
            out.extend_from_slice(v);
            out.extend_from_slice(b"\r\n");
        }
        (ConnectionHeader::Omit, None) => {}
    }
    out.extend_from_slice(b"\r\n");
}

/// Longest `push_length_tail` output: 20 digits and `\r\nConnection: keep-alive\r\n\r\n`.
const LENGTH_TAIL_MAX: usize = 20 + 28;

/// Ends a head after `Content-Length: `: the length, our `Connection` field and the blank
/// line, in one copy.
fn push_length_tail(out: &mut Vec<u8>, n: u64, connection: ConnectionHeader) {
    const OMIT: &[u8; 4] = b"\r\n\r\n";
    const CLOSE: &[u8; 23] = b"\r\nConnection: close\r\n\r\n";
    const KEEP_ALIVE: &[u8; 28] = b"\r\nConnection: keep-alive\r\n\r\n";
    let mut buf = [0u8; LENGTH_TAIL_MAX];
    // Constant-size copies, so no call per piece: the whole tail is one `extend`.
    let tail_len = match connection {
        ConnectionHeader::Omit => {
            buf[20..24].copy_from_slice(OMIT);
            OMIT.len()
        }
        ConnectionHeader::Close => {
            buf[20..43].copy_from_slice(CLOSE);
            CLOSE.len()
        }
        ConnectionHeader::KeepAlive => {
            buf[20..48].copy_from_slice(KEEP_ALIVE);
            KEEP_ALIVE.len()
        }
    };
    let digits: &mut [u8; 20] = (&mut buf[..20]).try_into().expect("20 bytes");
    let start = write_digits(n, digits);
    out.extend_from_slice(&buf[start..20 + tail_len]);
}

/// Writes `n` in decimal at the end of `buf`; returns where the digits start.
fn write_digits(mut n: u64, buf: &mut [u8; 20]) -> usize {
    let mut i = buf.len();
    loop {
        i -= 1;
        buf[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            return i;
        }
    }
}

/// Appends a decimal number without going through `fmt`.
pub(crate) fn push_u64(out: &mut Vec<u8>, n: u64) {
    if n < 10 {
        out.push(b'0' + n as u8);
        return;
    }
    if n < 100 {
        out.extend_from_slice(&[b'0' + (n / 10) as u8, b'0' + (n % 10) as u8]);
        return;
    }
    let mut buf = [0u8; 20];
    let start = write_digits(n, &mut buf);
    out.extend_from_slice(&buf[start..]);
}

/// The chunk-size line for a chunk of `len` bytes: `{len:x}\r\n`.
pub(crate) fn chunk_size_line(len: usize, buf: &mut [u8; 20]) -> &[u8] {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut i = 18;
    buf[18] = b'\r';
    buf[19] = b'\n';
    let mut n = len;
    loop {
        i -= 1;
        buf[i] = HEX[n & 0xf];
        n >>= 4;
        if n == 0 {
            break;
        }
    }
    &buf[i..]
}

/// The last chunk with no trailer fields.
pub(crate) const LAST_CHUNK: &[u8] = b"0\r\n\r\n";

/// The interim response inviting a client that sent `Expect: 100-continue` to send the body.
pub(crate) const CONTINUE_HEAD: &[u8] = b"HTTP/1.1 100 Continue\r\n\r\n";

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::StatusCode;

    thread_local! {
        /// The cache the tests' heads go through: one per test thread, as a server has one.
        static TEST_CACHE: RefCell<HeadCache> = const { RefCell::new(HeadCache::new()) };
    }

    fn head(r: &Response, f: Framing, c: ConnectionHeader) -> String {
        let mut out = Vec::new();
        TEST_CACHE.with(|cache| encode_head(&mut out, cache, r, f, c, 0));
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn head_with_length() {
        let mut r = Response::new();
        r.set_content_type("text/plain");
        let h = head(&r, Framing::Length(13), ConnectionHeader::Omit);
        assert!(h.starts_with("HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nDate: "));
        assert!(h.ends_with(" GMT\r\nContent-Length: 13\r\n\r\n"));
    }

    #[test]
    fn chunked_and_close() {
        let mut r = Response::new();
        r.set_status(StatusCode::NOT_FOUND);
        r.set("Date", "x");
        let h = head(&r, Framing::Chunked, ConnectionHeader::Close);
        assert_eq!(
            h,
            "HTTP/1.1 404 Not Found\r\nDate: x\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
        );
    }

    fn head_at(r: &Response, f: Framing, c: ConnectionHeader, now: u64) -> String {
        let mut out = b"before".to_vec();
        TEST_CACHE.with(|cache| encode_head(&mut out, cache, r, f, c, now));
        assert!(out.starts_with(b"before"), "appends, never rewrites");
        String::from_utf8(out.split_off(6)).unwrap()
    }

    /// The head cache must give exactly what encoding afresh gives, whatever changed since.
    #[test]
    fn a_cached_head_is_only_reused_when_nothing_changed() {
        let date = |now| with_date_line(now, |line, _| String::from_utf8(line.to_vec()).unwrap());
        let mut r = Response::new();
        r.set_content_type("text/plain");
        let first = head_at(&r, Framing::Length(13), ConnectionHeader::Omit, 50_000);
        let want = format!(
            "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n{}Content-Length: 13\r\n\r\n",
            date(50_000)
        );
        assert_eq!(first, want);
        // A hit: same status, fields and second; another length and Connection field.
        let again = head_at(&r, Framing::Length(1234), ConnectionHeader::Close, 50_400);
        assert_eq!(
            again,
            want.replace("13\r\n\r\n", "1234\r\nConnection: close\r\n\r\n")
        );
        let keep = head_at(&r, Framing::Length(0), ConnectionHeader::KeepAlive, 50_500);
        assert!(keep.ends_with("Content-Length: 0\r\nConnection: keep-alive\r\n\r\n"));
        // Another value; the same bytes split into another name and value; another status.
        r.set_content_type("text/html");
        assert!(
            head_at(&r, Framing::Length(1), ConnectionHeader::Omit, 50_600)
                .contains("\r\nContent-Type: text/html\r\n")
        );
        let mut split = Response::new();
        split.set("Content-Typ", "etext/html");
        assert!(
            head_at(&split, Framing::Length(1), ConnectionHeader::Omit, 50_600)
                .contains("\r\nContent-Typ: etext/html\r\n")
        );
        r.set_status(StatusCode::NOT_FOUND);
        assert!(
            head_at(&r, Framing::Length(1), ConnectionHeader::Omit, 50_700)
                .starts_with("HTTP/1.1 404 Not Found\r\n")
        );
        // The date moves on exactly when the date cache's own line does.
        let later = head_at(&r, Framing::Length(1), ConnectionHeader::Omit, 51_000);
        assert!(later.contains(&date(51_000)), "{later}");
        // The application's own Date or Connection field, a custom reason: encoded afresh.
        r.set("Connection", "upgrade");
        let merged = head_at(&r, Framing::Length(2), ConnectionHeader::KeepAlive, 51_100);
        assert!(merged.ends_with("Content-Length: 2\r\nConnection: keep-alive, upgrade\r\n\r\n"));
        assert_eq!(
            head_at(&r, Framing::Length(2), ConnectionHeader::Omit, 51_100)
                .matches("Connection")
                .count(),
            1
        );
        r.remove("Connection");
        r.set("Date", "y");
        let own_date = head_at(&r, Framing::Length(3), ConnectionHeader::Omit, 51_200);
        assert_eq!(own_date.matches("Date: ").count(), 1);
        assert!(own_date.contains("\r\nDate: y\r\n"));
        r.remove("Date");
        r.set_reason("Gone Fishing");
        assert!(
            head_at(&r, Framing::Length(3), ConnectionHeader::Omit, 51_300)
                .starts_with("HTTP/1.1 404 Gone Fishing\r\n")
        );
    }

    #[test]
    fn chunk_lines() {
        let mut b = [0u8; 20];
        assert_eq!(chunk_size_line(0, &mut b), b"0\r\n");
        assert_eq!(chunk_size_line(255, &mut b), b"ff\r\n");
        assert_eq!(chunk_size_line(0x10000, &mut b), b"10000\r\n");
        let mut out = Vec::new();
        push_u64(&mut out, 1234567890);
        assert_eq!(out, b"1234567890");
    }
}

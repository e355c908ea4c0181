//! A request head (RFC 9112 section 3): method, target, version, fields.

use std::borrow::Cow;
use std::fmt;
use std::ops::Range;

use crate::http::decode::Framing;
use crate::http::headers::{trim_ows, Headers};
use crate::http::method::Method;
use crate::http::url::parse_query;

/// Targets up to this long are copied char by char, longer ones checked as UTF-8 and copied
/// at once (see [`Request::set_parsed_line`]).
const SHORT_TARGET: usize = 16;

/// HTTP version of a message; only the two HTTP/1.x versions exist on the
/// wire here (others are rejected with 505 by the parser).
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug, Default)]
pub enum Version {
    /// HTTP/1.0.
    Http10,
    /// HTTP/1.1.
    #[default]
    Http11,
}

impl Version {
    /// "HTTP/1.0" or "HTTP/1.1", as written on the start line.
    pub const fn as_str(&self) -> &'static str {
        match self {
            Version::Http10 => "HTTP/1.0",
            Version::Http11 => "HTTP/1.1",
        }
    }
}

impl fmt::Display for Version {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The four forms a request-target can take (RFC 9112 3.2).
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug, Default)]
pub enum TargetForm {
    /// `/path?query`: the usual form.
    #[default]
    Origin,
    /// `http://host/path?query`: requests to a proxy.
    Absolute,
    /// `host:port`: only for CONNECT.
    Authority,
    /// `*`: only for a server-wide OPTIONS.
    Asterisk,
}

/// A request head. Reusable: [`clear`](Request::clear) keeps the buffers'
/// capacity, so a connection parsing many requests into one `Request`
/// allocates nothing in steady state.
///
/// The server side gets one filled by
/// [`HeadParser::parse_request`](crate::http::decode::HeadParser::parse_request); a
/// client builds one with [`Request::with`] and the setters.
#[derive(Clone, Default)]
pub struct Request {
    method: Method,
    /// The method exactly as received, also for `Method::Other`.
    method_token: String,
    /// The raw request-target.
    target: String,
    form: TargetForm,
    /// Path component inside `target` (may be empty for absolute-form).
    path: Range<usize>,
    /// Query inside `target`, without the '?'.
    query: Option<Range<usize>>,
    /// Authority inside `target` for absolute-form (userinfo removed).
    authority: Range<usize>,
    version: Version,
    headers: Headers,
    /// Framing and connection facts recorded by the parser; `None` once the headers were
    /// changed (or for a request built by hand), when the accessors read the fields instead.
    summary: Option<Summary>,
}

/// What the parser learnt about a request's framing and connection fields while it passed
/// over them, so the connection does not search the fields again for every question.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Summary {
    pub content_length: Option<u64>,
    /// `FACT_*` bits: one word, which the head parser's fast path fills from the bits it
    /// keeps in a register while it reads the fields.
    pub facts: u32,
}

// The bits of `Summary::facts`. The head parser keeps its own bits in the same word (below
// `FACT_CLOSE`), so these must stay clear of them.

/// `Connection` lists `close`.
pub(crate) const FACT_CLOSE: u32 = 4;
/// `Connection` lists `keep-alive`.
pub(crate) const FACT_KEEP_ALIVE: u32 = 8;
/// `Connection` lists `upgrade`.
pub(crate) const FACT_CONN_UPGRADE: u32 = 16;
/// An `Upgrade` field is present.
pub(crate) const FACT_UPGRADE: u32 = 32;
/// `Expect: 100-continue`.
pub(crate) const FACT_EXPECT_CONTINUE: u32 = 64;
/// `Transfer-Encoding` ends with chunked.
pub(crate) const FACT_CHUNKED: u32 = 128;

impl Summary {
    /// Whether all of `bits` are set.
    #[inline]
    fn has(&self, bits: u32) -> bool {
        self.facts & bits == bits
    }
}

impl Request {
    /// An empty `GET` request with an empty target, HTTP/1.1, no fields.
    pub fn new() -> Self {
        Request::default()
    }

    /// A request for the client side: `method` is the token to send
    /// (e.g. "GET"), `target` the request-target (usually
    /// [`Url::path_and_query`](crate::http::url::Url::path_and_query)).
    pub fn with(method: &str, target: &str, version: Version) -> Self {
        let mut req = Request::new();
        req.set_method(method);
        req.set_target(target);
        req.set_version(version);
        req
    }

    /// Empties the request for reuse, keeping allocated capacity. The
    /// method becomes GET and the version HTTP/1.1.
    pub fn clear(&mut self) {
        self.summary = None;
        self.method = Method::Get;
        self.method_token.clear();
        self.target.clear();
        self.form = TargetForm::Origin;
        self.path = 0..0;
        self.query = None;
        self.authority = 0..0;
        self.version = Version::Http11;
        self.headers.clear();
    }

    /// Sets the method token (case-sensitive, e.g. "GET", "PROPFIND").
    pub fn set_method(&mut self, method: &str) {
        self.method = Method::from_token(method);
        self.method_token.clear();
        // A registered method's token is its static name: only other tokens are copied.
        if self.method == Method::Other {
            self.method_token.push_str(method);
        }
    }

    /// Sets the request-target and works out its form and components.
    /// No validation happens here; the parser validates received targets.
    pub fn set_target(&mut self, target: &str) {
        self.target.clear();
        self.target.push_str(target);
        self.set_target_parts(analyze_target(target));
    }

    /// Sets the request-line from pieces the head parser already validated, so nothing is
    /// looked at twice: `method` is `Method::from_bytes(token)` for the method token `token`
    /// (tchar bytes, hence ASCII), `target` the request-target, taken to be origin-form
    /// without a query; the parser then corrects the parts with
    /// [`split_query_at`](Request::split_query_at) or
    /// [`set_target_parts`](Request::set_target_parts) where that is not so. The result is
    /// what `clear`, `set_method`, `set_target` and `set_version` would give: the fields and
    /// the summary are emptied too, so the parser does not write the line's parts twice.
    /// Inlined into the parser's fast path, its one caller on every request.
    #[inline(always)]
    pub(crate) fn set_parsed_line(
        &mut self,
        method: Method,
        token: &[u8],
        target: &[u8],
        version: Version,
    ) {
        debug_assert!(token.is_ascii() && target.is_ascii());
        debug_assert_eq!(Method::from_bytes(token), method);
        self.summary = None;
        self.headers.clear();
        self.method = method;
        self.method_token.clear();
        if method == Method::Other {
            // ASCII bytes are their own chars: no UTF-8 validation needed for the copy.
            self.method_token
                .extend(token.iter().map(|&b| char::from(b)));
        }
        self.target.clear();
        // The same text either way. `from_utf8` checks sixteen bytes at a time once aligned
        // but costs some 100 instructions for a 10-byte target; pushing char by char (about
        // ten instructions a byte) is cheaper for short targets such as "/" (the mask says
        // "ASCII" to the compiler, so every char is one byte).
        let long = target.len() > SHORT_TARGET;
        match long.then(|| std::str::from_utf8(target).ok()).flatten() {
            Some(text) => self.target.push_str(text),
            None => {
                // A loop of its own rather than `extend`, which is a call of its own: some 30
                // instructions more for "/", some 25 for a 10-byte target.
                self.target.reserve(target.len());
                for &b in target {
                    self.target.push(char::from(b & 0x7f));
                }
            }
        }
        self.form = TargetForm::Origin;
        self.path = 0..target.len();
        self.query = None;
        self.authority = 0..0;
        self.version = version;
    }

    /// For an origin-form target set by [`set_parsed_line`](Request::set_parsed_line): its
    /// first '?' is at `q`, so the path ends there and the query follows it.
    #[inline(always)]
    pub(crate) fn split_query_at(&mut self, q: usize) {
        debug_assert_eq!(self.target.as_bytes()[q], b'?');
        self.path = 0..q;
        self.query = Some(q + 1..self.target.len());
    }

    /// Sets the target's form and components, as [`analyze_target`] gives them for it.
    pub(crate) fn set_target_parts(&mut self, parts: TargetParts) {
        self.form = parts.form;
        self.path = parts.path;
        self.query = parts.query;
        self.authority = parts.authority;
    }

    /// Sets the version.
    pub fn set_version(&mut self, version: Version) {
        self.version = version;
    }

    /// The method; for [`Method::Other`] see [`method_str`](Request::method_str).
    pub fn method(&self) -> Method {
        self.method
    }

    /// The method token exactly as received or set.
    pub fn method_str(&self) -> &str {
        match self.method {
            Method::Other => &self.method_token,
            known => known.as_str(),
        }
    }

    /// The raw request-target, e.g. `/a%20b?x=1`.
    pub fn target(&self) -> &str {
        &self.target
    }

    /// Which of the four forms the target has.
    pub fn target_form(&self) -> TargetForm {
        self.form
    }

    /// The raw (still percent-encoded) path without the query. For an
    /// absolute-form target this is its path component, `/` if empty; for
    /// authority-form and `*` it is the whole target.
    #[inline]
    pub fn path(&self) -> &str {
        let path = self.target.get(self.path.clone()).unwrap_or("");
        if path.is_empty() && self.form == TargetForm::Absolute {
            "/"
        } else {
            path
        }
    }

    /// The raw query without the '?', if the target has one.
    pub fn query(&self) -> Option<&str> {
        self.query.clone().and_then(|q| self.target.get(q))
    }

    /// The first query parameter called `name` (compared after decoding),
    /// its value percent- and '+'-decoded.
    pub fn query_param(&self, name: &str) -> Option<Cow<'_, str>> {
        self.query_pairs()
            .find(|(key, _)| key == name)
            .map(|(_, value)| value)
    }

    /// All query parameters in order, decoded (see
    /// [`parse_query`]).
    pub fn query_pairs(&self) -> impl Iterator<Item = (Cow<'_, str>, Cow<'_, str>)> {
        parse_query(self.query().unwrap_or(""))
    }

    /// The HTTP version.
    pub fn version(&self) -> Version {
        self.version
    }

    /// The header fields.
    pub fn headers(&self) -> &Headers {
        &self.headers
    }

    /// The header fields, for adding or changing fields.
    pub fn headers_mut(&mut self) -> &mut Headers {
        self.summary = None;
        &mut self.headers
    }

    pub(crate) fn set_summary(&mut self, summary: Summary) {
        self.summary = Some(summary);
    }

    /// The first value of header `name` as text (see [`Headers::get`]).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name)
    }

    /// The body length announced by `Content-Length`, if present and valid
    /// (a list of identical values counts as that value). The parser has
    /// already rejected received requests with an invalid one.
    pub fn content_length(&self) -> Option<u64> {
        match &self.summary {
            Some(s) => s.content_length,
            None => Framing::of(&self.headers).content_length(),
        }
    }

    /// Whether `Transfer-Encoding` ends with `chunked`.
    pub fn is_chunked(&self) -> bool {
        match &self.summary {
            Some(s) => s.has(FACT_CHUNKED),
            None => Framing::of(&self.headers).is_chunked(),
        }
    }

    /// Whether the connection stays open after this request (RFC 9112
    /// 9.3): HTTP/1.1 unless `Connection: close`; HTTP/1.0 only with
    /// `Connection: keep-alive` (and no `close`).
    ///
    /// Inline and cheap for a parsed request (the connection asks several times per
    /// request): the parser's summary already holds the answer's two facts.
    #[inline]
    pub fn keep_alive(&self) -> bool {
        match &self.summary {
            Some(s) => keep_alive_with(self.version, s.has(FACT_CLOSE), s.has(FACT_KEEP_ALIVE)),
            None => self.keep_alive_from_fields(),
        }
    }

    /// [`keep_alive`](Request::keep_alive) for a request without a summary (built by hand or
    /// changed after parsing): the `Connection` fields are searched. Out of line, so that
    /// the inlined accessor stays small.
    #[inline(never)]
    fn keep_alive_from_fields(&self) -> bool {
        keep_alive_with(
            self.version,
            self.headers.has_token("connection", "close"),
            self.headers.has_token("connection", "keep-alive"),
        )
    }

    /// Whether the client waits for `100 Continue` before sending the body
    /// (`Expect: 100-continue` in an HTTP/1.1 request, RFC 9110 10.1.1;
    /// HTTP/1.0 clients cannot understand 100, so it is ignored there).
    pub fn expects_continue(&self) -> bool {
        self.version == Version::Http11
            && match &self.summary {
                Some(s) => s.has(FACT_EXPECT_CONTINUE),
                None => self
                    .headers
                    .get_all_bytes("expect")
                    .any(|v| trim_ows(v).eq_ignore_ascii_case(b"100-continue")),
            }
    }

    /// Whether this asks for a protocol upgrade: `Connection` lists
    /// `upgrade` and an `Upgrade` field is present (RFC 9110 7.8).
    pub fn is_upgrade(&self) -> bool {
        match &self.summary {
            Some(s) => s.has(FACT_CONN_UPGRADE | FACT_UPGRADE),
            None => {
                self.headers.has_token("connection", "upgrade") && self.headers.contains("upgrade")
            }
        }
    }

    /// The host the request is for. For absolute-form the target's
    /// authority wins over the `Host` field (RFC 9112 3.2.2); for
    /// authority-form (CONNECT) it is the target; otherwise the `Host`
    /// field.
    pub fn host(&self) -> Option<&str> {
        match self.form {
            TargetForm::Absolute => self.target.get(self.authority.clone()),
            TargetForm::Authority => Some(&self.target),
            _ => self.headers.get("host"),
        }
    }
}

#[cfg(test)]
impl Request {
    /// Every field of the request, private ones and raw header bytes included, for tests
    /// that compare two parses exactly.
    pub(crate) fn exact_state(&self) -> String {
        let fields: Vec<(&str, &[u8])> = self.headers.iter().collect();
        format!(
            "{:?}",
            (
                (
                    self.method,
                    &self.method_token,
                    self.method_str(),
                    &self.target
                ),
                (self.form, &self.path, &self.query, &self.authority),
                (self.version, fields, self.headers.byte_len(), self.summary),
                (
                    self.path(),
                    self.query(),
                    self.host(),
                    self.content_length()
                ),
                (
                    self.is_chunked(),
                    self.keep_alive(),
                    self.expects_continue(),
                    self.is_upgrade()
                ),
            )
        )
    }
}

impl fmt::Debug for Request {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Request")
            .field("method", &self.method_str())
            .field("target", &self.target)
            .field("version", &self.version)
            .field("headers", &self.headers)
            .finish()
    }
}

/// RFC 9112 9.3 for `version` and whether `Connection` lists `close` and `keep-alive`.
#[inline]
fn keep_alive_with(version: Version, close: bool, keep: bool) -> bool {
    match version {
        Version::Http11 => !close,
        Version::Http10 => !close && keep,
    }
}

/// Form and component ranges of a request-target.
pub(crate) struct TargetParts {
    pub(crate) form: TargetForm,
    pub(crate) path: Range<usize>,
    pub(crate) query: Option<Range<usize>>,
    pub(crate) authority: Range<usize>,
}

/// Length of `scheme` when `target` starts with `scheme://` (RFC 3986 3.1:
/// ALPHA *( ALPHA / DIGIT / "+" / "-" / "." )).
fn absolute_scheme_len(target: &str) -> Option<usize> {
    let bytes = target.as_bytes();
    if !bytes.first()?.is_ascii_alphabetic() {
        return None;
    }
    let len = bytes
        .iter()
        .position(|&b| !(b.is_ascii_alphanumeric() || matches!(b, b'+' | b'-' | b'.')))?;
    if bytes[len..].starts_with(b"://") {
        Some(len)
    } else {
        None
    }
}

/// Splits `path?query` starting at `from` in `target`.
fn path_and_query(target: &str, from: usize) -> (Range<usize>, Option<Range<usize>>) {
    // A byte search: '?' is ASCII, so its position is a char boundary.
    match target.as_bytes()[from..].iter().position(|&b| b == b'?') {
        Some(q) => (from..from + q, Some(from + q + 1..target.len())),
        None => (from..target.len(), None),
    }
}

/// Classifies a target. `*` is asterisk-form, a leading '/' origin-form,
/// `scheme://...` absolute-form, anything else authority-form (whether
/// that is acceptable for the method is the parser's decision).
pub(crate) fn analyze_target(target: &str) -> TargetParts {
    if target == "*" {
        return TargetParts {
            form: TargetForm::Asterisk,
            path: 0..target.len(),
            query: None,
            authority: 0..0,
        };
    }
    if target.starts_with('/') {
        let (path, query) = path_and_query(target, 0);
        return TargetParts {
            form: TargetForm::Origin,
            path,
            query,
            authority: 0..0,
        };
    }
    if let Some(scheme_len) = absolute_scheme_len(target) {
        let auth_start = scheme_len + 3;
        let auth_end = target[auth_start..]
            .find(['/', '?', '#'])
            .map_or(target.len(), |p| auth_start + p);
        // Userinfo is not part of the host (RFC 3986 3.2).
        let host_start = target[auth_start..auth_end]
            .rfind('@')
            .map_or(auth_start, |p| auth_start + p + 1);
        let (path, query) = path_and_query(target, auth_end);
        return TargetParts {
            form: TargetForm::Absolute,
            path,
            query,
            authority: host_start..auth_end,
        };
    }
    TargetParts {
        form: TargetForm::Authority,
        path: 0..target.len(),
        query: None,
        authority: 0..target.len(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(method: &str, target: &str) -> Request {
        Request::with(method, target, Version::Http11)
    }

    #[test]
    fn origin_form_components() {
        let r = req("GET", "/a/b%20c?x=1&y=a+b");
        assert_eq!(r.method(), Method::Get);
        assert_eq!(r.method_str(), "GET");
        assert_eq!(r.target_form(), TargetForm::Origin);
        assert_eq!(r.path(), "/a/b%20c");
        assert_eq!(r.query(), Some("x=1&y=a+b"));
        assert_eq!(r.query_param("y").as_deref(), Some("a b"));
        assert_eq!(r.query_param("z"), None);
        assert_eq!(r.query_pairs().count(), 2);
        let r = req("GET", "/?");
        assert_eq!(r.path(), "/");
        assert_eq!(r.query(), Some(""));
    }

    #[test]
    fn absolute_form_components() {
        let r = req("GET", "http://user@Example.com:8080/p?q=1");
        assert_eq!(r.target_form(), TargetForm::Absolute);
        assert_eq!(r.path(), "/p");
        assert_eq!(r.query(), Some("q=1"));
        assert_eq!(r.host(), Some("Example.com:8080"));
        let r = req("GET", "http://h");
        assert_eq!(r.path(), "/");
        assert_eq!(r.query(), None);
        let r = req("GET", "http://h?x");
        assert_eq!(r.path(), "/");
        assert_eq!(r.query(), Some("x"));
        assert_eq!(r.host(), Some("h"));
    }

    #[test]
    fn authority_and_asterisk_forms() {
        let r = req("CONNECT", "example.com:443");
        assert_eq!(r.target_form(), TargetForm::Authority);
        assert_eq!(r.path(), "example.com:443");
        assert_eq!(r.host(), Some("example.com:443"));
        assert_eq!(r.query(), None);
        let r = req("OPTIONS", "*");
        assert_eq!(r.target_form(), TargetForm::Asterisk);
        assert_eq!(r.path(), "*");
        // A bare host:port is not absolute-form even though "host" looks
        // like a scheme.
        assert_eq!(analyze_target("example.com:80").form, TargetForm::Authority);
        assert_eq!(analyze_target("1http://x").form, TargetForm::Authority);
    }

    #[test]
    fn other_method_keeps_token() {
        let r = req("PROPFIND", "/");
        assert_eq!(r.method(), Method::Other);
        assert_eq!(r.method_str(), "PROPFIND");
    }

    #[test]
    fn keep_alive_rules() {
        let mut r = req("GET", "/");
        assert!(r.keep_alive());
        r.headers_mut().append("Connection", "Close");
        assert!(!r.keep_alive());
        let mut r = Request::with("GET", "/", Version::Http10);
        assert!(!r.keep_alive());
        r.headers_mut().append("Connection", "Keep-Alive");
        assert!(r.keep_alive());
        r.headers_mut().append("Connection", "close");
        assert!(!r.keep_alive());
    }

    #[test]
    fn expects_continue_only_in_http11() {
        let mut r = req("PUT", "/");
        assert!(!r.expects_continue());
        r.headers_mut().append("Expect", " 100-Continue ");
        assert!(r.expects_continue());
        r.set_version(Version::Http10);
        assert!(!r.expects_continue());
        let mut r = req("PUT", "/");
        r.headers_mut().append("Expect", "something-else");
        assert!(!r.expects_continue());
    }

    #[test]
    fn upgrade_needs_both_fields() {
        let mut r = req("GET", "/chat");
        r.headers_mut().append("Upgrade", "websocket");
        assert!(!r.is_upgrade());
        r.headers_mut().append("Connection", "keep-alive, Upgrade");
        assert!(r.is_upgrade());
        let mut r = req("GET", "/chat");
        r.headers_mut().append("Connection", "upgrade");
        assert!(!r.is_upgrade());
    }

    #[test]
    fn framing_accessors() {
        let mut r = req("POST", "/");
        assert_eq!(r.content_length(), None);
        assert!(!r.is_chunked());
        r.headers_mut().append("Content-Length", "5, 5");
        assert_eq!(r.content_length(), Some(5));
        r.headers_mut().set("Content-Length", "x");
        assert_eq!(r.content_length(), None);
        r.headers_mut().append("Transfer-Encoding", "gzip, chunked");
        assert!(r.is_chunked());
        r.headers_mut().set("Transfer-Encoding", "chunked, gzip");
        assert!(!r.is_chunked());
    }

    #[test]
    fn host_from_header_for_origin_form() {
        let mut r = req("GET", "/");
        assert_eq!(r.host(), None);
        r.headers_mut().append("Host", "example.com");
        assert_eq!(r.host(), Some("example.com"));
        assert_eq!(r.header("HOST"), Some("example.com"));
    }

    #[test]
    fn clear_resets_and_keeps_capacity() {
        let mut r = req("DELETE", "/some/long/path?with=query");
        r.headers_mut().append("Host", "h");
        let cap = r.target.capacity();
        r.clear();
        assert_eq!(r.method(), Method::Get);
        assert_eq!(r.target(), "");
        assert_eq!(r.query(), None);
        assert!(r.headers().is_empty());
        assert_eq!(r.version(), Version::Http11);
        assert_eq!(r.target.capacity(), cap);
        assert!(format!("{r:?}").contains("Request"));
    }

    #[test]
    fn version_strings() {
        assert_eq!(Version::Http10.as_str(), "HTTP/1.0");
        assert_eq!(Version::Http11.to_string(), "HTTP/1.1");
    }
}

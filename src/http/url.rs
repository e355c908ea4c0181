//! Client-side URLs (`http`, `https`, `ws`, `wss`) and percent-decoding
//! helpers for request targets and query strings (RFC 3986,
//! `application/x-www-form-urlencoded`).

use std::borrow::Cow;
use std::fmt;
use std::net::Ipv6Addr;

/// The schemes a [`Url`] can have.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
enum Scheme {
    Http,
    Https,
    Ws,
    Wss,
}

impl Scheme {
    fn as_str(self) -> &'static str {
        match self {
            Scheme::Http => "http",
            Scheme::Https => "https",
            Scheme::Ws => "ws",
            Scheme::Wss => "wss",
        }
    }

    fn default_port(self) -> u16 {
        match self {
            Scheme::Http | Scheme::Ws => 80,
            Scheme::Https | Scheme::Wss => 443,
        }
    }
}

/// Why [`Url::parse`] rejected its input.
#[derive(Clone, PartialEq, Eq, Debug)]
pub enum UrlError {
    /// No `scheme://` prefix.
    MissingScheme,
    /// A scheme other than http, https, ws or wss (the scheme given).
    UnsupportedScheme(String),
    /// `user:password@host` was used.
    UserInfo,
    /// Nothing between `://` and the path.
    EmptyHost,
    /// The host has a character a host name cannot have (the host given).
    InvalidHost(String),
    /// The bracketed IPv6 literal does not parse (the literal given).
    InvalidIpv6(String),
    /// The port is not a number in 1..=65535 (the port given).
    InvalidPort(String),
}

impl fmt::Display for UrlError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            UrlError::MissingScheme => f.write_str(
                "URL has no scheme: it must start with http://, https://, ws:// or wss://",
            ),
            UrlError::UnsupportedScheme(s) => write!(
                f,
                "unsupported URL scheme {s:?}: only http, https, ws and wss are supported"
            ),
            UrlError::UserInfo => f.write_str(
                "credentials in the URL (user:password@host) are not supported; \
                 send an Authorization header instead",
            ),
            UrlError::EmptyHost => f.write_str("URL has an empty host"),
            UrlError::InvalidHost(h) => write!(
                f,
                "invalid host {h:?} in URL: use letters, digits, '-', '.', '_', '~', \
                 an IPv4 address or a bracketed IPv6 address"
            ),
            UrlError::InvalidIpv6(h) => write!(f, "invalid IPv6 address [{h}] in URL"),
            UrlError::InvalidPort(p) => {
                write!(
                    f,
                    "invalid port {p:?} in URL: must be a number from 1 to 65535"
                )
            }
        }
    }
}

impl std::error::Error for UrlError {}

/// An absolute `http`, `https`, `ws` or `wss` URL, parsed for a client
/// request.
///
/// The host is lowercased; a missing port becomes the scheme's default; an
/// empty path becomes `/`; the fragment is dropped (it is never sent).
/// Characters that cannot appear in a request-target (space, controls,
/// non-ASCII, `"<>\^`{|}`) are percent-encoded in the path and query so the
/// result can be written on a request line as is.
#[derive(Clone, PartialEq, Eq, Hash, Debug)]
pub struct Url {
    scheme: Scheme,
    host: String,
    is_ipv6: bool,
    port: u16,
    /// Origin-form target: path, then `?query` when there is one.
    path_and_query: String,
    /// Index of the `?` in `path_and_query`, if there is a query.
    query_start: Option<usize>,
}

impl Url {
    /// Parses an absolute URL. Surrounding whitespace is ignored.
    pub fn parse(input: &str) -> Result<Url, UrlError> {
        let input = input.trim();
        let (scheme_text, rest) = input.split_once("://").ok_or(UrlError::MissingScheme)?;
        let scheme = if scheme_text.eq_ignore_ascii_case("http") {
            Scheme::Http
        } else if scheme_text.eq_ignore_ascii_case("https") {
            Scheme::Https
        } else if scheme_text.eq_ignore_ascii_case("ws") {
            Scheme::Ws
        } else if scheme_text.eq_ignore_ascii_case("wss") {
            Scheme::Wss
        } else if scheme_text.is_empty() || scheme_text.contains(['/', '?', '#']) {
            return Err(UrlError::MissingScheme);
        } else {
            return Err(UrlError::UnsupportedScheme(scheme_text.to_string()));
        };

        let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
        let (authority, tail) = rest.split_at(authority_end);
        if authority.contains('@') {
            return Err(UrlError::UserInfo);
        }
        let (host, is_ipv6, port_text) = split_host_port(authority)?;
        let port = match port_text {
            None | Some("") => scheme.default_port(),
            Some(p) => parse_port(p)?,
        };

        // The fragment is client-side only (RFC 9110 4.2.4).
        let tail = tail.split_once('#').map_or(tail, |(before, _)| before);
        let mut path_and_query = String::with_capacity(tail.len() + 1);
        if !tail.starts_with('/') {
            path_and_query.push('/');
        }
        push_encoded_target(&mut path_and_query, tail);
        let query_start = path_and_query.find('?');

        Ok(Url {
            scheme,
            host,
            is_ipv6,
            port,
            path_and_query,
            query_start,
        })
    }

    /// "http", "https", "ws" or "wss" (lowercase).
    pub fn scheme(&self) -> &str {
        self.scheme.as_str()
    }

    /// The host, lowercased, without brackets for IPv6 (`::1`): what to
    /// resolve or connect to, and the TLS server name.
    pub fn host(&self) -> &str {
        &self.host
    }

    /// Whether the host is an IPv6 literal.
    pub fn is_ipv6(&self) -> bool {
        self.is_ipv6
    }

    /// The port, the scheme's default (80 / 443) when none was given.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Whether the scheme needs TLS (https, wss).
    pub fn is_tls(&self) -> bool {
        matches!(self.scheme, Scheme::Https | Scheme::Wss)
    }

    /// The path, at least "/" (still percent-encoded).
    pub fn path(&self) -> &str {
        match self.query_start {
            Some(q) => &self.path_and_query[..q],
            None => &self.path_and_query,
        }
    }

    /// The query without the `?` (still percent-encoded), if present.
    pub fn query(&self) -> Option<&str> {
        self.query_start.map(|q| &self.path_and_query[q + 1..])
    }

    /// The origin-form request-target to send: path plus `?query`.
    pub fn path_and_query(&self) -> &str {
        &self.path_and_query
    }

    /// The `Host` header value: host, with brackets for IPv6, and `:port`
    /// unless the port is the scheme's default (RFC 9110 7.2).
    pub fn host_header(&self) -> String {
        let mut out = String::with_capacity(self.host.len() + 8);
        self.write_host_header(&mut out)
            .expect("writing to a String cannot fail");
        out
    }

    fn write_host_header(&self, out: &mut impl fmt::Write) -> fmt::Result {
        if self.is_ipv6 {
            write!(out, "[{}]", self.host)?;
        } else {
            out.write_str(&self.host)?;
        }
        if self.port != self.scheme.default_port() {
            write!(out, ":{}", self.port)?;
        }
        Ok(())
    }
}

impl fmt::Display for Url {
    /// The normalised URL, e.g. `http://example.com:8080/a?b`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}://", self.scheme.as_str())?;
        self.write_host_header(f)?;
        f.write_str(&self.path_and_query)
    }
}

impl std::str::FromStr for Url {
    type Err = UrlError;

    fn from_str(s: &str) -> Result<Url, UrlError> {
        Url::parse(s)
    }
}

/// Splits `host[:port]` / `[v6][:port]`, validating and lowercasing the
/// host. Returns (host without brackets, is_ipv6, port text if a ':' was
/// present).
fn split_host_port(authority: &str) -> Result<(String, bool, Option<&str>), UrlError> {
    if let Some(after_bracket) = authority.strip_prefix('[') {
        let (literal, after) = after_bracket
            .split_once(']')
            .ok_or_else(|| UrlError::InvalidIpv6(after_bracket.to_string()))?;
        if literal.parse::<Ipv6Addr>().is_err() {
            return Err(UrlError::InvalidIpv6(literal.to_string()));
        }
        let port = match after {
            "" => None,
            _ => match after.strip_prefix(':') {
                Some(p) => Some(p),
                None => return Err(UrlError::InvalidHost(authority.to_string())),
            },
        };
        return Ok((literal.to_ascii_lowercase(), true, port));
    }
    let (host, port) = match authority.split_once(':') {
        Some((h, p)) => (h, Some(p)),
        None => (authority, None),
    };
    if host.is_empty() {
        return Err(UrlError::EmptyHost);
    }
    let valid = host
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~'));
    if !valid {
        return Err(UrlError::InvalidHost(host.to_string()));
    }
    Ok((host.to_ascii_lowercase(), false, port))
}

fn parse_port(text: &str) -> Result<u16, UrlError> {
    let invalid = || UrlError::InvalidPort(text.to_string());
    // `parse` would accept a leading '+', which a URL port cannot have.
    if !text.bytes().all(|b| b.is_ascii_digit()) || text.len() > 5 {
        return Err(invalid());
    }
    match text.parse::<u16>() {
        Ok(0) | Err(_) => Err(invalid()),
        Ok(p) => Ok(p),
    }
}

/// Appends `text` to `out`, percent-encoding each byte that may not appear
/// in a request-target. Existing `%XX` escapes are kept as they are.
fn push_encoded_target(out: &mut String, text: &str) {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    for &b in text.as_bytes() {
        let needs_escape = b <= 0x20
            || b >= 0x7f
            || matches!(
                b,
                b'"' | b'<' | b'>' | b'\\' | b'^' | b'`' | b'{' | b'|' | b'}'
            );
        if needs_escape {
            out.push('%');
            out.push(char::from(HEX[usize::from(b >> 4)]));
            out.push(char::from(HEX[usize::from(b & 0x0f)]));
        } else {
            out.push(char::from(b));
        }
    }
}

fn hex_value(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

/// Decodes `%XX` escapes, and '+' as space when `plus_is_space`.
fn decode(s: &str, plus_is_space: bool) -> Cow<'_, str> {
    let bytes = s.as_bytes();
    let needs_work = bytes
        .iter()
        .any(|&b| b == b'%' || (plus_is_space && b == b'+'));
    if !needs_work {
        return Cow::Borrowed(s);
    }
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        if b == b'%' {
            let hi = bytes.get(i + 1).copied().and_then(hex_value);
            let lo = bytes.get(i + 2).copied().and_then(hex_value);
            if let (Some(hi), Some(lo)) = (hi, lo) {
                out.push(hi << 4 | lo);
                i += 3;
                continue;
            }
            out.push(b'%');
        } else if plus_is_space && b == b'+' {
            out.push(b' ');
        } else {
            out.push(b);
        }
        i += 1;
    }
    match String::from_utf8(out) {
        Ok(text) => Cow::Owned(text),
        Err(e) => Cow::Owned(String::from_utf8_lossy(e.as_bytes()).into_owned()),
    }
}

/// Decodes `%XX` escapes (RFC 3986 2.1). A `%` not followed by two hex
/// digits is kept literally; decoded bytes that are not UTF-8 become
/// U+FFFD. Borrows when there is nothing to decode.
pub fn percent_decode(s: &str) -> Cow<'_, str> {
    decode(s, false)
}

/// Decodes one name or value of `application/x-www-form-urlencoded` data:
/// '+' becomes a space, then `%XX` escapes are decoded as in
/// [`percent_decode`].
pub fn decode_form_component(s: &str) -> Cow<'_, str> {
    decode(s, true)
}

/// Splits a query string (without the `?`) into decoded `(name, value)`
/// pairs: pairs are separated by '&', empty pairs are skipped, a pair
/// without '=' has an empty value, and both sides are decoded with
/// [`decode_form_component`].
pub fn parse_query(q: &str) -> impl Iterator<Item = (Cow<'_, str>, Cow<'_, str>)> {
    q.split('&').filter(|pair| !pair.is_empty()).map(|pair| {
        let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
        (decode_form_component(name), decode_form_component(value))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_full_url() {
        let u = Url::parse("HTTP://Example.COM:8080/a/b?x=1&y=2#frag").unwrap();
        assert_eq!(u.scheme(), "http");
        assert_eq!(u.host(), "example.com");
        assert_eq!(u.port(), 8080);
        assert!(!u.is_tls());
        assert_eq!(u.path(), "/a/b");
        assert_eq!(u.query(), Some("x=1&y=2"));
        assert_eq!(u.path_and_query(), "/a/b?x=1&y=2");
        assert_eq!(u.host_header(), "example.com:8080");
        assert_eq!(u.to_string(), "http://example.com:8080/a/b?x=1&y=2");
    }

    #[test]
    fn defaults_port_and_path_by_scheme() {
        let cases = [
            ("http://h", 80, false),
            ("https://h", 443, true),
            ("ws://h", 80, false),
            ("WSS://h", 443, true),
        ];
        for (text, port, tls) in cases {
            let u = Url::parse(text).unwrap();
            assert_eq!(u.port(), port, "{text}");
            assert_eq!(u.is_tls(), tls, "{text}");
            assert_eq!(u.path(), "/");
            assert_eq!(u.query(), None);
            assert_eq!(u.host_header(), "h");
        }
        let u = Url::parse("http://h?q").unwrap();
        assert_eq!(u.path_and_query(), "/?q");
        assert_eq!(u.query(), Some("q"));
        let u = Url::parse("https://h:443/").unwrap();
        assert_eq!(u.host_header(), "h");
        assert_eq!(u.to_string(), "https://h/");
        let u = Url::parse("http://h:/x").unwrap();
        assert_eq!(u.port(), 80);
    }

    #[test]
    fn ipv4_and_ipv6_hosts() {
        let u = Url::parse("http://127.0.0.1:3000/").unwrap();
        assert_eq!(u.host(), "127.0.0.1");
        assert_eq!(u.host_header(), "127.0.0.1:3000");
        let u = Url::parse("ws://[::1]:9000/chat").unwrap();
        assert_eq!(u.host(), "::1");
        assert!(u.is_ipv6());
        assert_eq!(u.host_header(), "[::1]:9000");
        assert_eq!(u.to_string(), "ws://[::1]:9000/chat");
        let u = Url::parse("http://[FE80::1]/").unwrap();
        assert_eq!(u.host(), "fe80::1");
        assert_eq!(u.host_header(), "[fe80::1]");
    }

    #[test]
    fn rejects_bad_urls_with_specific_errors() {
        assert_eq!(Url::parse("example.com/x"), Err(UrlError::MissingScheme));
        assert_eq!(
            Url::parse("ftp://h/"),
            Err(UrlError::UnsupportedScheme("ftp".into()))
        );
        assert_eq!(Url::parse("http://user:pw@h/"), Err(UrlError::UserInfo));
        assert_eq!(Url::parse("http:///path"), Err(UrlError::EmptyHost));
        assert_eq!(Url::parse("http://:80/"), Err(UrlError::EmptyHost));
        assert_eq!(
            Url::parse("http://exa mple/"),
            Err(UrlError::InvalidHost("exa mple".into()))
        );
        assert_eq!(
            Url::parse("http://[::g]/"),
            Err(UrlError::InvalidIpv6("::g".into()))
        );
        assert!(matches!(
            Url::parse("http://[::1/"),
            Err(UrlError::InvalidIpv6(_))
        ));
        assert!(matches!(
            Url::parse("http://[::1]x/"),
            Err(UrlError::InvalidHost(_))
        ));
        for port in ["0", "65536", "99999999", "+80", "8a", "-1"] {
            assert_eq!(
                Url::parse(&format!("http://h:{port}/")),
                Err(UrlError::InvalidPort(port.into())),
                "{port}"
            );
        }
        assert_eq!(Url::parse("http://h:65535/").unwrap().port(), 65535);
    }

    #[test]
    fn error_messages_are_actionable() {
        assert!(UrlError::UserInfo.to_string().contains("Authorization"));
        assert!(UrlError::MissingScheme.to_string().contains("http://"));
        assert!(UrlError::InvalidPort("0".into())
            .to_string()
            .contains("65535"));
        assert!(UrlError::UnsupportedScheme("ftp".into())
            .to_string()
            .contains("\"ftp\""));
    }

    #[test]
    fn path_characters_are_encoded_for_the_request_line() {
        let u = Url::parse("http://h/a b/\u{e9}?q=\"x\"|y%20").unwrap();
        assert_eq!(u.path(), "/a%20b/%C3%A9");
        assert_eq!(u.query(), Some("q=%22x%22%7Cy%20"));
        let u = Url::parse("  http://h/x\t\n").unwrap();
        assert_eq!(u.path(), "/x");
    }

    #[test]
    fn percent_decode_cases() {
        assert!(matches!(percent_decode("plain"), Cow::Borrowed("plain")));
        assert_eq!(percent_decode("a%20b%2Fc"), "a b/c");
        assert_eq!(percent_decode("%C3%A9"), "\u{e9}");
        assert_eq!(percent_decode("100%"), "100%");
        assert_eq!(percent_decode("%zz%4"), "%zz%4");
        assert_eq!(percent_decode("%ff"), "\u{fffd}");
        assert_eq!(percent_decode("a+b"), "a+b");
    }

    #[test]
    fn form_component_decoding() {
        assert_eq!(decode_form_component("a+b%2Bc"), "a b+c");
        assert!(matches!(decode_form_component("ab"), Cow::Borrowed("ab")));
    }

    #[test]
    fn query_parsing() {
        let pairs: Vec<(String, String)> = parse_query("a=1&&b=x+y&c&d=%3D=&=e")
            .map(|(k, v)| (k.into_owned(), v.into_owned()))
            .collect();
        assert_eq!(
            pairs,
            [
                ("a".to_string(), "1".to_string()),
                ("b".into(), "x y".into()),
                ("c".into(), "".into()),
                ("d".into(), "==".into()),
                ("".into(), "e".into()),
            ]
        );
        assert_eq!(parse_query("").count(), 0);
    }
}

//! An ordered, case-insensitive multimap of header fields stored in one
//! reusable byte buffer.

use std::fmt;
use std::ops::Range;

/// Where one field lives in [`Headers::buf`]: the name is `start..name_end`,
/// the value `value_start..end`. Entries are laid out in the buffer in index
/// order, which lets removal and replacement shift offsets with a single
/// pass. There may be bytes between the name and the value and between
/// entries that belong to no field: fields added by the head parser are
/// copied in one piece with the separators of the received head (": ",
/// CRLF), which is cheaper than one copy per name and value.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Entry {
    start: usize,
    name_end: usize,
    value_start: usize,
    end: usize,
}

/// Header fields (RFC 9110 section 5) of one message, or a trailer section.
///
/// * Lookups compare names ASCII-case-insensitively; the original case is
///   kept for iteration and re-serialisation.
/// * Field order is preserved and duplicates are kept as separate entries.
/// * All names and values live in one byte buffer plus an index of ranges,
///   so [`clear`](Headers::clear) keeps both allocations and a connection
///   that reuses one `Headers` allocates nothing in steady state.
///
/// Names are expected to be tokens (RFC 9110 5.6.2) and values field values
/// without CR, LF or NUL; this type stores what it is given (the head parser
/// validates received fields, and [`is_token`](crate::http::method::is_token)
/// and [`is_field_value`] exist for checking fields before sending them).
#[derive(Clone, Default)]
pub struct Headers {
    buf: Vec<u8>,
    entries: Vec<Entry>,
}

impl Headers {
    /// An empty set; allocates nothing until the first field is added.
    pub const fn new() -> Self {
        Headers {
            buf: Vec::new(),
            entries: Vec::new(),
        }
    }

    /// An empty set with room for `fields` fields of typical size
    /// (32 bytes each) before it has to grow.
    pub fn with_capacity(fields: usize) -> Self {
        Headers {
            buf: Vec::with_capacity(fields.saturating_mul(32)),
            entries: Vec::with_capacity(fields),
        }
    }

    /// Removes every field, keeping the allocated capacity for reuse.
    pub fn clear(&mut self) {
        self.buf.clear();
        self.entries.clear();
    }

    /// Number of fields (duplicates counted separately).
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether there are no fields.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Whether `other` holds byte for byte the same fields, in the same order (names compared
    /// case-sensitively), laid out the same way: two slice comparisons, for callers that cache
    /// what a set encodes to. Equal fields stored differently compare unequal, which only
    /// costs such a cache a miss.
    pub(crate) fn same_bytes(&self, other: &Headers) -> bool {
        self.buf == other.buf && self.entries == other.entries
    }

    /// Total bytes of names and values stored (no separators); a cheap
    /// measure for size limits.
    pub fn byte_len(&self) -> usize {
        // Not `buf.len()`: the buffer may also hold separators (see `Entry`).
        self.stored_len()
    }

    /// (byte buffer, index) capacities, for reuse tests.
    #[cfg(test)]
    pub(crate) fn capacities(&self) -> (usize, usize) {
        (self.buf.capacity(), self.entries.capacity())
    }

    fn name_of(&self, e: &Entry) -> &[u8] {
        &self.buf[e.start..e.name_end]
    }

    fn value_of(&self, e: &Entry) -> &[u8] {
        &self.buf[e.value_start..e.end]
    }

    fn matching<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a [u8]> + 'a {
        let name = name.as_bytes();
        self.entries.iter().filter_map(move |e| {
            if self.name_of(e).eq_ignore_ascii_case(name) {
                Some(self.value_of(e))
            } else {
                None
            }
        })
    }

    /// The first value of the field `name` as text.
    ///
    /// Returns `None` when the field is absent *or* when its first value is
    /// not valid UTF-8 (obs-text); use [`get_bytes`](Headers::get_bytes) to
    /// see such values.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.get_bytes(name)
            .and_then(|v| std::str::from_utf8(v).ok())
    }

    /// The first value of the field `name` as raw bytes.
    pub fn get_bytes(&self, name: &str) -> Option<&[u8]> {
        let name = name.as_bytes();
        self.entries
            .iter()
            .find(|e| self.name_of(e).eq_ignore_ascii_case(name))
            .map(|e| self.value_of(e))
    }

    /// Every value of the field `name`, in order. Values that are not valid
    /// UTF-8 are skipped; see [`get_all_bytes`](Headers::get_all_bytes).
    pub fn get_all<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        self.matching(name)
            .filter_map(|v| std::str::from_utf8(v).ok())
    }

    /// Every value of the field `name` as raw bytes, in order.
    pub fn get_all_bytes<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a [u8]> + 'a {
        self.matching(name)
    }

    /// Whether at least one field called `name` is present.
    pub fn contains(&self, name: &str) -> bool {
        self.get_bytes(name).is_some()
    }

    /// Whether any comma-separated element of any `name` field equals
    /// `token` ignoring ASCII case, after trimming optional whitespace.
    /// This is how list-valued fields such as `Connection`, `Upgrade` and
    /// `TE` are matched (RFC 9110 5.6.1).
    pub fn has_token(&self, name: &str, token: &str) -> bool {
        let token = token.as_bytes();
        self.matching(name)
            .any(|v| list_elements(v).any(|el| el.eq_ignore_ascii_case(token)))
    }

    /// Adds a field at the end, after any existing fields of the same name.
    pub fn append(&mut self, name: &str, value: &str) {
        self.push(name.as_bytes(), value.as_bytes());
    }

    /// Adds a field from raw bytes. A name that is not UTF-8 (never a valid
    /// token) is stored with its invalid bytes replaced by U+FFFD so that
    /// names can always be handed out as `&str`.
    pub fn append_bytes(&mut self, name: &[u8], value: &[u8]) {
        match std::str::from_utf8(name) {
            Ok(_) => self.push(name, value),
            Err(_) => {
                let lossy = String::from_utf8_lossy(name).into_owned();
                self.push(lossy.as_bytes(), value);
            }
        }
    }

    /// Adds a field with a text name and a raw value (which may hold
    /// obs-text). This is what the head parser uses: names from it are
    /// already validated tokens, so no UTF-8 check is needed.
    pub fn append_value_bytes(&mut self, name: &str, value: &[u8]) {
        self.push(name.as_bytes(), value);
    }

    /// Starts adding fields that all lie in one block of received bytes, which
    /// [`FieldBlock::finish`] then copies in one piece. The head parser records each field
    /// as it finds it, so the head is read once and copied once.
    pub(crate) fn block(&mut self) -> FieldBlock<'_> {
        FieldBlock {
            base: self.buf.len(),
            first: self.entries.len(),
            headers: self,
            finished: false,
        }
    }

    fn push(&mut self, name: &[u8], value: &[u8]) {
        let start = self.buf.len();
        self.buf.extend_from_slice(name);
        let name_end = self.buf.len();
        self.buf.extend_from_slice(value);
        self.entries.push(Entry {
            start,
            name_end,
            value_start: name_end,
            end: self.buf.len(),
        });
    }

    /// Appends a response field whose value may contain obs-fold line breaks
    /// (RFC 9112 5.2): each CR or LF is stored as a space, which is the
    /// replacement a user agent must make before interpreting the value.
    pub(crate) fn append_unfolded(&mut self, name: &[u8], value: &[u8]) {
        let start = self.buf.len();
        self.buf.extend_from_slice(name);
        let name_end = self.buf.len();
        self.buf.extend(
            value
                .iter()
                .map(|&b| if b == b'\r' || b == b'\n' { b' ' } else { b }),
        );
        self.entries.push(Entry {
            start,
            name_end,
            value_start: name_end,
            end: self.buf.len(),
        });
    }

    /// Sets the field `name` to a single `value`: the first existing field
    /// of that name keeps its position (and its name's case) and gets the
    /// new value, later ones are removed; if there is none, the field is
    /// appended.
    pub fn set(&mut self, name: &str, value: &str) {
        let wanted = name.as_bytes();
        let mut first = None;
        let mut i = 0;
        while i < self.entries.len() {
            let e = self.entries[i];
            if self.name_of(&e).eq_ignore_ascii_case(wanted) {
                if first.is_none() {
                    first = Some(i);
                    i += 1;
                } else {
                    self.remove_at(i);
                }
            } else {
                i += 1;
            }
        }
        match first {
            Some(i) => self.replace_value_at(i, value.as_bytes()),
            None => self.push(wanted, value.as_bytes()),
        }
    }

    /// Removes every field called `name`; returns whether any was present.
    pub fn remove(&mut self, name: &str) -> bool {
        let wanted = name.as_bytes();
        let mut removed = false;
        let mut i = 0;
        while i < self.entries.len() {
            let e = self.entries[i];
            if self.name_of(&e).eq_ignore_ascii_case(wanted) {
                self.remove_at(i);
                removed = true;
            } else {
                i += 1;
            }
        }
        removed
    }

    fn remove_at(&mut self, i: usize) {
        let e = self.entries.remove(i);
        let width = e.end - e.start;
        self.buf.drain(e.start..e.end);
        for later in &mut self.entries[i..] {
            later.start -= width;
            later.name_end -= width;
            later.value_start -= width;
            later.end -= width;
        }
    }

    fn replace_value_at(&mut self, i: usize, value: &[u8]) {
        let e = self.entries[i];
        let old_len = e.end - e.value_start;
        self.buf.splice(e.value_start..e.end, value.iter().copied());
        self.entries[i].end = e.value_start + value.len();
        // Later entries move by the size difference; computed as add/sub
        // of unsigned amounts to avoid signed casts.
        for later in &mut self.entries[i + 1..] {
            if value.len() >= old_len {
                let grow = value.len() - old_len;
                later.start += grow;
                later.name_end += grow;
                later.value_start += grow;
                later.end += grow;
            } else {
                let shrink = old_len - value.len();
                later.start -= shrink;
                later.name_end -= shrink;
                later.value_start -= shrink;
                later.end -= shrink;
            }
        }
    }

    /// All fields in order as `(name, value)`.
    ///
    /// Names are `&str` (they are ASCII tokens); values are raw bytes because
    /// a received value may legally contain obs-text (bytes >= 0x80) that is
    /// not UTF-8. Use `std::str::from_utf8` or [`get`](Headers::get) for text.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &[u8])> + '_ {
        self.entries.iter().map(move |e| {
            // Names are stored from `&str` or made UTF-8 in `append_bytes`,
            // so this never falls back in practice.
            let name = std::str::from_utf8(self.name_of(e)).unwrap_or("");
            (name, self.value_of(e))
        })
    }

    /// Like [`iter`](Headers::iter), with names as bytes: no UTF-8 check, for writing a head.
    pub fn iter_bytes(&self) -> impl Iterator<Item = (&[u8], &[u8])> + '_ {
        self.entries
            .iter()
            .map(move |e| (self.name_of(e), self.value_of(e)))
    }

    /// Bytes the fields occupy (names and values, without separators).
    pub fn stored_len(&self) -> usize {
        self.entries
            .iter()
            .map(|e| self.name_of(e).len() + self.value_of(e).len())
            .sum()
    }
}

impl PartialEq for Headers {
    /// Same fields in the same order with byte-identical names and values.
    fn eq(&self, other: &Self) -> bool {
        self.len() == other.len() && self.iter().eq(other.iter())
    }
}

impl Eq for Headers {}

impl fmt::Debug for Headers {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list()
            .entries(self.iter().map(|(n, v)| (n, String::from_utf8_lossy(v))))
            .finish()
    }
}

/// Fields being added from one block of received bytes (see [`Headers::block`]). Until
/// [`finish`](FieldBlock::finish) copies the block, the recorded entries point past the end
/// of the buffer; dropping an unfinished block removes them again, so the `Headers` never
/// stays in that state.
pub(crate) struct FieldBlock<'h> {
    headers: &'h mut Headers,
    /// Where the block will start in the buffer.
    base: usize,
    /// The first entry of the block.
    first: usize,
    finished: bool,
}

impl FieldBlock<'_> {
    /// Records a field whose name and value are these ranges of the block. Fields must come
    /// in order and must not overlap; the name must be a token (ASCII, so UTF-8 as
    /// [`Headers::iter`] expects).
    #[inline]
    pub(crate) fn push(&mut self, name: Range<usize>, value: Range<usize>) {
        debug_assert!(name.start < name.end && name.end <= value.start && value.start <= value.end);
        let base = self.base;
        self.headers.entries.push(Entry {
            start: base + name.start,
            name_end: base + name.end,
            value_start: base + value.start,
            end: base + value.end,
        });
    }

    /// Copies the block the recorded ranges refer to, which makes the fields visible.
    #[inline(always)]
    pub(crate) fn finish(mut self, block: &[u8]) {
        debug_assert_eq!(self.headers.buf.len(), self.base);
        debug_assert!(self.headers.entries[self.first..].iter().all(|e| {
            e.end - self.base <= block.len()
                && block[e.start - self.base..e.name_end - self.base].is_ascii()
        }));
        self.headers.buf.extend_from_slice(block);
        self.finished = true;
    }
}

impl Drop for FieldBlock<'_> {
    fn drop(&mut self) {
        if !self.finished {
            self.headers.entries.truncate(self.first);
        }
    }
}

/// The non-empty elements of a comma-separated list value, each with
/// optional whitespace (SP / HTAB) trimmed (RFC 9110 5.6.1). Empty elements
/// are skipped as the RFC requires of recipients.
pub(crate) fn list_elements(value: &[u8]) -> impl Iterator<Item = &[u8]> {
    value
        .split(|&b| b == b',')
        .map(trim_ows)
        .filter(|el| !el.is_empty())
}

/// `value` without leading and trailing SP / HTAB.
pub(crate) fn trim_ows(value: &[u8]) -> &[u8] {
    let is_ows = |b: &u8| *b == b' ' || *b == b'\t';
    let start = value.iter().position(|b| !is_ows(b)).unwrap_or(value.len());
    let end = value
        .iter()
        .rposition(|b| !is_ows(b))
        .map_or(start, |p| p + 1);
    &value[start..end]
}

/// Whether `value` may be sent as a field value (RFC 9110 5.5): no CR, LF,
/// NUL or other control characters except HTAB, no leading or trailing
/// whitespace. Use before serialising application-supplied values, since a
/// CR or LF there would let the application's input inject header lines.
pub fn is_field_value(value: &[u8]) -> bool {
    let valid_bytes = value
        .iter()
        .all(|&b| b == b'\t' || (b >= 0x20 && b != 0x7f));
    valid_bytes && trim_ows(value).len() == value.len()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Headers {
        let mut h = Headers::new();
        h.append("Host", "example.com");
        h.append("Accept", "text/html");
        h.append("X-Dup", "one");
        h.append("x-dup", "two");
        h.append("Connection", "keep-alive, Upgrade");
        h
    }

    #[test]
    fn lookup_is_case_insensitive_and_returns_first() {
        let h = sample();
        assert_eq!(h.get("host"), Some("example.com"));
        assert_eq!(h.get("HOST"), Some("example.com"));
        assert_eq!(h.get("x-DUP"), Some("one"));
        assert_eq!(h.get("missing"), None);
        assert!(h.contains("accept"));
        assert!(!h.contains("accep"));
        assert_eq!(h.len(), 5);
    }

    #[test]
    fn duplicates_are_kept_in_order_with_original_case() {
        let h = sample();
        let all: Vec<&str> = h.get_all("X-Dup").collect();
        assert_eq!(all, ["one", "two"]);
        let names: Vec<&str> = h.iter().map(|(n, _)| n).collect();
        assert_eq!(names, ["Host", "Accept", "X-Dup", "x-dup", "Connection"]);
    }

    #[test]
    fn non_utf8_values_are_only_visible_as_bytes() {
        let mut h = Headers::new();
        h.append_bytes(b"X-Bin", b"caf\xe9");
        h.append_value_bytes("X-Bin", b"ok");
        assert_eq!(h.get("x-bin"), None);
        assert_eq!(h.get_bytes("x-bin"), Some(&b"caf\xe9"[..]));
        assert_eq!(h.get_all("x-bin").collect::<Vec<_>>(), ["ok"]);
        assert_eq!(h.get_all_bytes("x-bin").count(), 2);
    }

    #[test]
    fn non_utf8_name_is_stored_lossily() {
        let mut h = Headers::new();
        h.append_bytes(b"X\xff", b"v");
        let (name, value) = h.iter().next().unwrap();
        assert_eq!(name, "X\u{fffd}");
        assert_eq!(value, b"v");
    }

    #[test]
    fn has_token_matches_list_elements() {
        let mut h = sample();
        h.append("Connection", " ,close\t");
        assert!(h.has_token("connection", "upgrade"));
        assert!(h.has_token("Connection", "KEEP-ALIVE"));
        assert!(h.has_token("connection", "close"));
        assert!(!h.has_token("connection", "keep"));
        assert!(!h.has_token("connection", "keep-alive, Upgrade"));
        assert!(!h.has_token("upgrade", "websocket"));
    }

    #[test]
    fn set_replaces_all_keeping_first_position() {
        let mut h = sample();
        h.set("X-DUP", "three-longer-value");
        let fields: Vec<(&str, &[u8])> = h.iter().collect();
        assert_eq!(
            fields,
            [
                ("Host", &b"example.com"[..]),
                ("Accept", b"text/html"),
                ("X-Dup", b"three-longer-value"),
                ("Connection", b"keep-alive, Upgrade"),
            ]
        );
        h.set("accept", "*");
        assert_eq!(h.get("Accept"), Some("*"));
        assert_eq!(h.get("connection"), Some("keep-alive, Upgrade"));
        h.set("New", "v");
        assert_eq!(h.iter().last(), Some(("New", &b"v"[..])));
    }

    #[test]
    fn remove_removes_every_match() {
        let mut h = sample();
        assert!(h.remove("x-dup"));
        assert!(!h.remove("x-dup"));
        assert_eq!(h.len(), 3);
        assert_eq!(h.get("connection"), Some("keep-alive, Upgrade"));
        assert_eq!(h.get("host"), Some("example.com"));
        assert!(h.remove("Host"));
        assert_eq!(h.get("accept"), Some("text/html"));
        assert_eq!(h.iter().count(), 2);
    }

    #[test]
    fn clear_keeps_capacity_and_reuse_does_not_grow() {
        let mut h = sample();
        let (cap_buf, cap_entries) = (h.buf.capacity(), h.entries.capacity());
        for _ in 0..100 {
            h.clear();
            assert!(h.is_empty());
            h.append("Host", "example.com");
            h.append("Accept", "text/html");
            h.append("X-Dup", "one");
            h.append("x-dup", "two");
            h.append("Connection", "keep-alive, Upgrade");
        }
        assert_eq!(h.buf.capacity(), cap_buf);
        assert_eq!(h.entries.capacity(), cap_entries);
        assert_eq!(h, sample());
    }

    #[test]
    fn with_capacity_preallocates() {
        let h = Headers::with_capacity(16);
        assert!(h.entries.capacity() >= 16);
        assert!(h.buf.capacity() >= 16 * 32);
        assert!(h.is_empty());
    }

    #[test]
    fn empty_values_are_allowed() {
        let mut h = Headers::new();
        h.append("X-Empty", "");
        h.append("Next", "n");
        assert_eq!(h.get("x-empty"), Some(""));
        assert_eq!(h.get("next"), Some("n"));
        h.set("x-empty", "filled");
        assert_eq!(h.get("next"), Some("n"));
        assert_eq!(h.get("x-empty"), Some("filled"));
    }

    #[test]
    fn unfolding_replaces_line_breaks() {
        let mut h = Headers::new();
        h.append_unfolded(b"X", b"a\r\n b");
        assert_eq!(h.get("x"), Some("a   b"));
    }

    #[test]
    fn debug_and_clone() {
        let h = sample();
        let c = h.clone();
        assert_eq!(h, c);
        let dbg = format!("{:?}", h);
        assert!(dbg.contains("\"Host\""), "{dbg}");
        assert!(dbg.contains("example.com"), "{dbg}");
    }

    #[test]
    fn field_value_check() {
        assert!(is_field_value(b"text/html; q=0.9"));
        assert!(is_field_value(b""));
        assert!(is_field_value(b"a\tb"));
        assert!(is_field_value(b"caf\xe9"));
        assert!(!is_field_value(b"a\r\nX-Injected: 1"));
        assert!(!is_field_value(b"a\nb"));
        assert!(!is_field_value(b"a\0b"));
        assert!(!is_field_value(b"a\x7f"));
        assert!(!is_field_value(b" leading"));
        assert!(!is_field_value(b"trailing\t"));
    }

    #[test]
    fn list_elements_trim_and_skip_empty() {
        let els: Vec<&[u8]> = list_elements(b" a ,, b\t,c,").collect();
        assert_eq!(els, [&b"a"[..], b"b", b"c"]);
        assert_eq!(trim_ows(b" \t "), b"");
        assert_eq!(trim_ows(b"x"), b"x");
    }
}

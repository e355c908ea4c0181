//! permessage-deflate (RFC 7692): parameter negotiation, and the per-direction compressor
//! and decompressor.
//!
//! # Window sizes
//! The flate2 backend we build with (miniz_oxide) always deflates with a 32 KiB window
//! (window bits 15) and cannot be told to use less. Decompression is unaffected: a decoder
//! with a 32 KiB window decodes streams made with any smaller window, so we always inflate
//! with 15 and never need to ask the peer for less. Compression is the problem: when the
//! peer limits *our* window (a client's `server_max_window_bits=N` offer, or a server's
//! `client_max_window_bits=N` response) with N < 15, back-references must stay within 2^N
//! bytes. For that case this module has its own small LZ77 encoder (module `small_window`) that
//! emits fixed-Huffman blocks with distances bounded by 2^N. It compresses less than
//! miniz_oxide but is always legal, so every valid offer can be accepted (Autobahn 13.3/13.5
//! ask for N = 8 and count a declined offer as a failure).
//!
//! # Message format
//! Each message (or fragment) is deflated and sync-flushed; the trailing empty stored block
//! `00 00 ff ff` is stripped from the end of the message and re-appended by the receiver
//! (RFC 7692 section 7.2). Decompression is bounded: it runs in steps into the caller's
//! buffer, whose capacity never exceeds the limit + 1, and stops with
//! [`InflateError::TooBig`] as soon as the output passes the limit, so a compression bomb
//! cannot inflate into memory.

use std::fmt;

use flate2::{Compress, Compression, Decompress, FlushCompress, FlushDecompress, Status};

use crate::ws::handshake::Extension;

/// The extension token.
pub const EXTENSION_NAME: &str = "permessage-deflate";

/// The empty stored block a sync flush ends with; stripped on send, re-appended on receive.
const SYNC_TAIL: [u8; 4] = [0x00, 0x00, 0xff, 0xff];

/// Smallest step by which the inflate output buffer grows.
const INFLATE_STEP: usize = 16 * 1024;

/// Local preferences for permessage-deflate (what we offer or accept); see [`Params`] for
/// the negotiated result.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DeflateConfig {
    /// Compression level 0-9 (0 = stored, 1 = fastest, 9 = smallest). Default 1: on a busy
    /// server CPU per message matters more than the last percent of ratio.
    pub level: u32,
    /// Do not keep our compression context between messages (less memory held by the peer's
    /// decoder and by ours, worse ratio). Server: answers with `server_no_context_takeover`.
    /// Client: offers `client_no_context_takeover` as a hint.
    pub no_context_takeover: bool,
    /// Ask the peer not to keep its compression context between messages (server: answers
    /// with `client_no_context_takeover`; client: offers `server_no_context_takeover` and
    /// requires the server to accept it).
    pub request_peer_no_context_takeover: bool,
}

impl Default for DeflateConfig {
    fn default() -> Self {
        DeflateConfig {
            level: 1,
            no_context_takeover: false,
            request_peer_no_context_takeover: false,
        }
    }
}

/// Negotiated permessage-deflate parameters for one connection (plus the local compression
/// level), from [`negotiate_server`] or [`negotiate_client`]; pass to the protocol config.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Params {
    /// The server resets its compression context after each message.
    pub server_no_context_takeover: bool,
    /// The client resets its compression context after each message.
    pub client_no_context_takeover: bool,
    /// Largest LZ77 window (log2) the server may compress with (8-15).
    pub server_max_window_bits: u8,
    /// Largest LZ77 window (log2) the client may compress with (8-15).
    pub client_max_window_bits: u8,
    /// Local compression level 0-9 (not negotiated).
    pub level: u32,
}

impl Default for Params {
    fn default() -> Self {
        Params {
            server_no_context_takeover: false,
            client_no_context_takeover: false,
            server_max_window_bits: 15,
            client_max_window_bits: 15,
            level: DeflateConfig::default().level,
        }
    }
}

/// A server response that the client must reject (RFC 7692 section 5: the client then fails
/// the WebSocket connection).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NegotiationError {
    /// What was wrong with the response.
    pub reason: &'static str,
}

impl fmt::Display for NegotiationError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "invalid permessage-deflate response: {}", self.reason)
    }
}

impl std::error::Error for NegotiationError {}

/// Parses a window-bits value: a decimal integer 8-15 without leading zeros (RFC 7692
/// sections 7.1.2.1-7.1.2.2).
fn parse_window_bits(value: &str) -> Option<u8> {
    if value.is_empty() || value.starts_with('0') || !value.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    value
        .parse::<u8>()
        .ok()
        .filter(|bits| (8..=15).contains(bits))
}

/// The four parameters as they appeared in one offer or response; `None` when a parameter
/// is unknown, repeated, or has an invalid value.
#[derive(Default)]
struct RawParams {
    server_no_context_takeover: bool,
    client_no_context_takeover: bool,
    server_max_window_bits: Option<u8>,
    /// `Some(None)` is the valueless form.
    client_max_window_bits: Option<Option<u8>>,
}

fn parse_params(extension: &Extension) -> Result<RawParams, &'static str> {
    let mut raw = RawParams::default();
    let mut seen = [false; 4];
    for param in &extension.params {
        let slot = match param.name.as_str() {
            "server_no_context_takeover" => 0,
            "client_no_context_takeover" => 1,
            "server_max_window_bits" => 2,
            "client_max_window_bits" => 3,
            _ => return Err("unknown parameter"),
        };
        if std::mem::replace(&mut seen[slot], true) {
            return Err("duplicate parameter");
        }
        let value = param.value.as_deref();
        match (slot, value) {
            (0, None) => raw.server_no_context_takeover = true,
            (1, None) => raw.client_no_context_takeover = true,
            (2, Some(v)) => {
                raw.server_max_window_bits =
                    Some(parse_window_bits(v).ok_or("invalid server_max_window_bits")?);
            }
            (3, None) => raw.client_max_window_bits = Some(None),
            (3, Some(v)) => {
                raw.client_max_window_bits = Some(Some(
                    parse_window_bits(v).ok_or("invalid client_max_window_bits")?,
                ));
            }
            (2, None) => return Err("server_max_window_bits needs a value"),
            _ => return Err("parameter takes no value"),
        }
    }
    Ok(raw)
}

/// Server side: picks the first acceptable permessage-deflate offer (in the client's order)
/// and returns the negotiated parameters with the extension to put in the response's
/// `Sec-WebSocket-Extensions` (format it with
/// [`format_extensions`](crate::ws::handshake::format_extensions)).
///
/// Offers with unknown or repeated parameters or invalid values are declined, as RFC 7692
/// section 5 requires; `None` means "no compression" and the handshake goes on without it.
/// Every valid offer is acceptable to us: window limits on our side are honoured by the
/// small-window encoder, and we always inflate with the full window.
pub fn negotiate_server(
    offers: &[Extension],
    config: &DeflateConfig,
) -> Option<(Params, Extension)> {
    offers
        .iter()
        .filter(|offer| offer.name == EXTENSION_NAME)
        .find_map(|offer| {
            let raw = parse_params(offer).ok()?;
            let params = Params {
                server_no_context_takeover: raw.server_no_context_takeover
                    || config.no_context_takeover,
                client_no_context_takeover: config.request_peer_no_context_takeover,
                server_max_window_bits: raw.server_max_window_bits.unwrap_or(15),
                // The client's own limit (if any) is a hint; we inflate with 15 regardless
                // and, by not echoing the parameter, let the client use its full window.
                client_max_window_bits: 15,
                level: config.level,
            };
            let mut response = Extension::new(EXTENSION_NAME);
            if params.server_no_context_takeover {
                response = response.with_param("server_no_context_takeover", None);
            }
            if params.client_no_context_takeover {
                response = response.with_param("client_no_context_takeover", None);
            }
            if let Some(bits) = raw.server_max_window_bits {
                response = response.with_param("server_max_window_bits", Some(&bits.to_string()));
            }
            Some((params, response))
        })
}

/// Client side: the offer to send in `Sec-WebSocket-Extensions`. It always includes the
/// valueless `client_max_window_bits` (we can honour any window the server asks for).
pub fn client_offer(config: &DeflateConfig) -> Extension {
    let mut offer = Extension::new(EXTENSION_NAME);
    if config.no_context_takeover {
        offer = offer.with_param("client_no_context_takeover", None);
    }
    if config.request_peer_no_context_takeover {
        offer = offer.with_param("server_no_context_takeover", None);
    }
    offer.with_param("client_max_window_bits", None)
}

/// Client side: checks the server's `Sec-WebSocket-Extensions` response against the offer
/// made by [`client_offer`] with the same `config`. `Ok(None)`: the server declined
/// compression. `Err`: the client must fail the connection.
pub fn negotiate_client(
    response: &[Extension],
    config: &DeflateConfig,
) -> Result<Option<Params>, NegotiationError> {
    let mut accepted = None;
    for extension in response {
        if extension.name != EXTENSION_NAME {
            return Err(NegotiationError {
                reason: "server accepted an extension that was not offered",
            });
        }
        if accepted.is_some() {
            return Err(NegotiationError {
                reason: "permessage-deflate accepted twice",
            });
        }
        let raw = parse_params(extension).map_err(|reason| NegotiationError { reason })?;
        let client_max_window_bits = match raw.client_max_window_bits {
            None => 15,
            Some(Some(bits)) => bits,
            Some(None) => {
                return Err(NegotiationError {
                    reason: "client_max_window_bits needs a value in a response",
                })
            }
        };
        if config.request_peer_no_context_takeover && !raw.server_no_context_takeover {
            return Err(NegotiationError {
                reason: "server_no_context_takeover was requested but not accepted",
            });
        }
        accepted = Some(Params {
            server_no_context_takeover: raw.server_no_context_takeover,
            client_no_context_takeover: raw.client_no_context_takeover
                || config.no_context_takeover,
            server_max_window_bits: raw.server_max_window_bits.unwrap_or(15),
            client_max_window_bits,
            level: config.level,
        });
    }
    Ok(accepted)
}

/// Compression failed inside the backend (does not happen with valid use; reported rather
/// than panicking).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CompressError;

impl fmt::Display for CompressError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("deflate compression failed")
    }
}

impl std::error::Error for CompressError {}

enum CompressBackend {
    /// miniz_oxide with its fixed 32 KiB window; used when our window limit is 15.
    Full(Compress),
    /// Our own encoder, for window limits below 15.
    Small(small_window::SmallWindowEncoder),
}

/// Compresses outgoing messages for one direction.
pub struct Compressor {
    backend: CompressBackend,
    no_context_takeover: bool,
}

impl fmt::Debug for Compressor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let backend = match self.backend {
            CompressBackend::Full(_) => "full-window",
            CompressBackend::Small(_) => "small-window",
        };
        f.debug_struct("Compressor")
            .field("backend", &backend)
            .field("no_context_takeover", &self.no_context_takeover)
            .finish()
    }
}

impl Compressor {
    /// A compressor limited to a `window_bits` LZ77 window (8-15), resetting its context
    /// after every message when `no_context_takeover`.
    pub fn new(level: u32, window_bits: u8, no_context_takeover: bool) -> Self {
        let backend = if window_bits >= 15 {
            CompressBackend::Full(Compress::new(Compression::new(level.min(9)), false))
        } else {
            CompressBackend::Small(small_window::SmallWindowEncoder::new(window_bits))
        };
        Compressor {
            backend,
            no_context_takeover,
        }
    }

    /// The compressor for our side of a connection with negotiated `params`.
    pub fn for_role(params: &Params, is_server: bool) -> Self {
        if is_server {
            Compressor::new(
                params.level,
                params.server_max_window_bits,
                params.server_no_context_takeover,
            )
        } else {
            Compressor::new(
                params.level,
                params.client_max_window_bits,
                params.client_no_context_takeover,
            )
        }
    }

    /// Whether each message is compressed without reference to earlier ones. Only then may
    /// a caller send a message uncompressed instead (when compression does not pay off):
    /// with context takeover the peer's window must see every byte we compressed.
    pub fn is_stateless(&self) -> bool {
        self.no_context_takeover || matches!(self.backend, CompressBackend::Small(_))
    }

    /// Compresses the next piece of a message and appends it to `out`. `fin` marks the last
    /// piece: its output has the `00 00 ff ff` tail stripped; earlier pieces keep it so that
    /// each ends on a byte boundary and can be sent as a fragment.
    pub fn compress(
        &mut self,
        data: &[u8],
        fin: bool,
        out: &mut Vec<u8>,
    ) -> Result<(), CompressError> {
        let start = out.len();
        match &mut self.backend {
            CompressBackend::Full(deflate) => {
                deflate_sync(deflate, data, out)?;
                if fin {
                    if out.get(start..).is_some_and(|o| o.ends_with(&SYNC_TAIL)) {
                        out.truncate(out.len() - SYNC_TAIL.len());
                    }
                    if self.no_context_takeover {
                        deflate.reset();
                    }
                }
            }
            CompressBackend::Small(encoder) => {
                encoder.encode(data, out);
                if !fin {
                    out.extend_from_slice(&SYNC_TAIL);
                }
            }
        }
        Ok(())
    }
}

/// Deflates all of `data` into `out` and sync-flushes, growing `out` as needed.
fn deflate_sync(
    deflate: &mut Compress,
    data: &[u8],
    out: &mut Vec<u8>,
) -> Result<(), CompressError> {
    let mut input = data;
    loop {
        // Deflate never grows data by more than a few bytes per 16 KiB block; this usually
        // finishes in one call.
        out.reserve(input.len() + input.len() / 8 + 64);
        let (in_before, out_before) = (deflate.total_in(), deflate.total_out());
        let status = deflate
            .compress_vec(input, out, FlushCompress::Sync)
            .map_err(|_| CompressError)?;
        let consumed =
            usize::try_from(deflate.total_in() - in_before).map_err(|_| CompressError)?;
        let produced = deflate.total_out() - out_before;
        input = input.get(consumed..).ok_or(CompressError)?;
        // Done once all input is in and the flush did not run out of output space.
        if input.is_empty() && out.len() < out.capacity() {
            return Ok(());
        }
        if status == Status::BufError || (consumed == 0 && produced == 0) {
            // Nothing more to do (a flush already completed), or no progress possible.
            return if input.is_empty() {
                Ok(())
            } else {
                Err(CompressError)
            };
        }
    }
}

/// Why an incoming compressed message could not be inflated.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum InflateError {
    /// The inflated message exceeds the size limit.
    TooBig,
    /// The compressed data is not a valid DEFLATE stream.
    Corrupt,
}

impl fmt::Display for InflateError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            InflateError::TooBig => f.write_str("inflated message exceeds the size limit"),
            InflateError::Corrupt => f.write_str("invalid compressed data"),
        }
    }
}

impl std::error::Error for InflateError {}

/// Grows `buf` so it has spare capacity, roughly doubling, but never beyond `limit + 1`
/// bytes in total: one byte past the limit is enough to detect "too big".
pub(crate) fn grow_bounded(buf: &mut Vec<u8>, additional: usize, limit: usize) {
    let cap_limit = limit.saturating_add(1);
    let wanted = buf
        .len()
        .saturating_add(additional)
        .max(buf.capacity().saturating_mul(2))
        .min(cap_limit);
    if wanted > buf.capacity() {
        buf.reserve_exact(wanted - buf.len());
    }
}

/// Inflates incoming compressed messages for one direction.
pub struct Decompressor {
    inflate: Decompress,
    /// The peer ended the DEFLATE stream (a block with BFINAL set); anything after it in the
    /// message is ignored and the next message starts a new stream (RFC 7692 7.2.3.4).
    stream_ended: bool,
}

impl fmt::Debug for Decompressor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Decompressor")
            .field("stream_ended", &self.stream_ended)
            .finish()
    }
}

impl Default for Decompressor {
    fn default() -> Self {
        Self::new()
    }
}

impl Decompressor {
    /// A decompressor with a full 32 KiB window, which decodes any window size. Context is
    /// always kept between messages: when the peer does not use it, keeping it is harmless.
    pub fn new() -> Self {
        Decompressor {
            inflate: Decompress::new(false),
            stream_ended: false,
        }
    }

    /// Inflates the next piece of a message's compressed payload, appending to `out`, and
    /// fails with [`InflateError::TooBig`] as soon as `out` would exceed `limit` bytes.
    pub fn decompress(
        &mut self,
        input: &[u8],
        out: &mut Vec<u8>,
        limit: usize,
    ) -> Result<(), InflateError> {
        let mut input = input;
        while !self.stream_ended {
            if out.len() >= out.capacity() {
                grow_bounded(out, INFLATE_STEP, limit);
                if out.len() >= out.capacity() {
                    return Err(InflateError::TooBig);
                }
            }
            let (in_before, out_before) = (self.inflate.total_in(), self.inflate.total_out());
            let status = self
                .inflate
                .decompress_vec(input, out, FlushDecompress::None)
                .map_err(|_| InflateError::Corrupt)?;
            let consumed = usize::try_from(self.inflate.total_in() - in_before)
                .map_err(|_| InflateError::Corrupt)?;
            let produced = self.inflate.total_out() - out_before;
            input = input.get(consumed..).unwrap_or_default();
            if out.len() > limit {
                return Err(InflateError::TooBig);
            }
            if status == Status::StreamEnd {
                self.stream_ended = true;
                break;
            }
            let output_full = out.len() >= out.capacity();
            if !output_full && input.is_empty() {
                // Everything available was inflated.
                break;
            }
            if !output_full && consumed == 0 && produced == 0 {
                // Input left and room to write, yet no progress: the decoder is stuck, which
                // only a malformed stream can cause. Dropping the input would corrupt data.
                return Err(InflateError::Corrupt);
            }
        }
        Ok(())
    }

    /// Ends a message: inflates the stripped `00 00 ff ff` tail so all output is flushed.
    pub fn finish_message(&mut self, out: &mut Vec<u8>, limit: usize) -> Result<(), InflateError> {
        let result = self.decompress(&SYNC_TAIL, out, limit);
        if self.stream_ended {
            self.inflate.reset(false);
            self.stream_ended = false;
        }
        result
    }
}

/// A DEFLATE encoder whose back-references never reach further than 2^window_bits bytes,
/// for peers that limit our window below what miniz_oxide supports. Greedy LZ77 with short
/// hash chains, fixed-Huffman blocks; each call is independent of earlier ones (legal with
/// or without context takeover, since a sender may always choose not to reference history).
pub(crate) mod small_window {
    const HASH_BITS: u32 = 13;
    const MIN_MATCH: usize = 3;
    const MAX_MATCH: usize = 258;
    /// How many earlier candidates are compared per position (speed/ratio trade-off).
    const MAX_CHAIN: usize = 16;
    /// Largest piece encoded with one set of positions, keeping them within u32.
    const MAX_SEGMENT: usize = 1 << 30;

    const LEN_BASE: [u16; 29] = [
        3, 4, 5, 6, 7, 8, 9, 10, 11, 13, 15, 17, 19, 23, 27, 31, 35, 43, 51, 59, 67, 83, 99, 115,
        131, 163, 195, 227, 258,
    ];
    const LEN_EXTRA: [u8; 29] = [
        0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2, 3, 3, 3, 3, 4, 4, 4, 4, 5, 5, 5, 5, 0,
    ];
    const DIST_BASE: [u16; 30] = [
        1, 2, 3, 4, 5, 7, 9, 13, 17, 25, 33, 49, 65, 97, 129, 193, 257, 385, 513, 769, 1025, 1537,
        2049, 3073, 4097, 6145, 8193, 12289, 16385, 24577,
    ];
    const DIST_EXTRA: [u8; 30] = [
        0, 0, 0, 0, 1, 1, 2, 2, 3, 3, 4, 4, 5, 5, 6, 6, 7, 7, 8, 8, 9, 9, 10, 10, 11, 11, 12, 12,
        13, 13,
    ];

    const fn reverse_bits(code: u16, len: u8) -> u16 {
        let mut reversed = 0;
        let mut i = 0;
        while i < len {
            reversed = (reversed << 1) | ((code >> i) & 1);
            i += 1;
        }
        reversed
    }

    /// Fixed literal/length code (RFC 1951 3.2.6), bit-reversed for LSB-first output.
    const FIXED_LITLEN: [(u16, u8); 288] = {
        let mut table = [(0u16, 0u8); 288];
        let mut symbol = 0;
        while symbol < 288 {
            let (code, len) = if symbol < 144 {
                (0x30 + symbol, 8)
            } else if symbol < 256 {
                (0x190 + symbol - 144, 9)
            } else if symbol < 280 {
                (symbol - 256, 7)
            } else {
                (0xC0 + symbol - 280, 8)
            };
            table[symbol] = (reverse_bits(code as u16, len), len);
            symbol += 1;
        }
        table
    };

    /// Length (0..=258) to index into LEN_BASE; 258 must use code 285 (index 28).
    const LEN_INDEX: [u8; 259] = {
        let mut table = [0u8; 259];
        let mut index = 0;
        while index < 29 {
            let mut len = LEN_BASE[index] as usize;
            let end = len + (1 << LEN_EXTRA[index]);
            while len < end && len <= 258 {
                table[len] = index as u8;
                len += 1;
            }
            index += 1;
        }
        table
    };

    /// LSB-first bit packer.
    struct BitWriter<'a> {
        out: &'a mut Vec<u8>,
        acc: u64,
        nbits: u32,
    }

    impl BitWriter<'_> {
        /// Appends the low `n` (<= 32) bits of `bits`.
        #[inline]
        fn put(&mut self, bits: u32, n: u32) {
            self.acc |= u64::from(bits) << self.nbits;
            self.nbits += n;
            if self.nbits >= 32 {
                self.out.extend_from_slice(&(self.acc as u32).to_le_bytes());
                self.acc >>= 32;
                self.nbits -= 32;
            }
        }

        #[inline]
        fn put_symbol(&mut self, symbol: usize) {
            if let Some(&(code, len)) = FIXED_LITLEN.get(symbol) {
                self.put(u32::from(code), u32::from(len));
            }
        }

        /// Writes out the remaining bits, zero-padded to a byte boundary.
        fn finish(mut self) {
            while self.nbits > 0 {
                self.out.push(self.acc as u8);
                self.acc >>= 8;
                self.nbits = self.nbits.saturating_sub(8);
            }
        }
    }

    #[inline]
    fn hash3(bytes: &[u8]) -> usize {
        match bytes {
            [a, b, c, ..] => {
                let key = (u32::from(*a) << 16) | (u32::from(*b) << 8) | u32::from(*c);
                (key.wrapping_mul(0x9E37_79B1) >> (32 - HASH_BITS)) as usize
            }
            _ => 0,
        }
    }

    /// The encoder state: hash heads and chains over absolute positions, reused across calls
    /// (positions from earlier calls fall below `base` and are ignored, so no clearing).
    pub(crate) struct SmallWindowEncoder {
        max_distance: usize,
        head: Vec<u32>,
        prev: Vec<u32>,
        /// Absolute position of the first byte of the current segment; 0 marks "empty".
        base: u32,
    }

    impl SmallWindowEncoder {
        /// An encoder whose distances stay within 2^window_bits (clamped to 8-15).
        pub(crate) fn new(window_bits: u8) -> Self {
            let window = 1usize << window_bits.clamp(8, 15);
            SmallWindowEncoder {
                max_distance: window,
                head: vec![0; 1 << HASH_BITS],
                prev: vec![0; window],
                base: 1,
            }
        }

        /// Appends `data` as one fixed-Huffman block (BFINAL = 0) followed by the 3 header
        /// bits of an empty stored block, zero-padded: a sync-flushed stream without its
        /// `00 00 ff ff` tail. Empty data produces just the stored block header (`00`).
        pub(crate) fn encode(&mut self, data: &[u8], out: &mut Vec<u8>) {
            let mut bits = BitWriter {
                out,
                acc: 0,
                nbits: 0,
            };
            if !data.is_empty() {
                bits.put(0b010, 3); // BFINAL = 0, BTYPE = 01 (fixed Huffman)
                for segment in data.chunks(MAX_SEGMENT) {
                    self.encode_segment(segment, &mut bits);
                }
                bits.put_symbol(256); // end of block
            }
            bits.put(0, 3); // BFINAL = 0, BTYPE = 00 (stored); LEN/NLEN are the stripped tail
            bits.finish();
        }

        fn encode_segment(&mut self, data: &[u8], bits: &mut BitWriter<'_>) {
            if u64::from(self.base) + data.len() as u64 >= u64::from(u32::MAX) {
                self.head.fill(0);
                self.prev.fill(0);
                self.base = 1;
            }
            let base = self.base;
            let ring_mask = self.prev.len() - 1;
            let mut i = 0;
            while i < data.len() {
                let (len, dist) = self.longest_match(data, i, base, ring_mask);
                if len >= MIN_MATCH {
                    emit_match(bits, len, dist);
                    for k in i + 1..i + len {
                        self.insert(data, k, base, ring_mask);
                    }
                    i += len;
                } else {
                    bits.put_symbol(usize::from(data.get(i).copied().unwrap_or(0)));
                    i += 1;
                }
            }
            self.base = base + data.len() as u32;
        }

        /// Records position `i` in the hash chains; returns the previous head.
        #[inline]
        fn insert(&mut self, data: &[u8], i: usize, base: u32, ring_mask: usize) -> u32 {
            let Some(bytes) = data.get(i..i + MIN_MATCH) else {
                return 0;
            };
            let pos = base + i as u32;
            let slot = hash3(bytes);
            let previous = self.head.get(slot).copied().unwrap_or(0);
            if let Some(head) = self.head.get_mut(slot) {
                *head = pos;
            }
            if let Some(link) = self.prev.get_mut(pos as usize & ring_mask) {
                *link = previous;
            }
            previous
        }

        /// Inserts position `i` and returns the longest earlier match (length, distance)
        /// within the window.
        fn longest_match(
            &mut self,
            data: &[u8],
            i: usize,
            base: u32,
            ring_mask: usize,
        ) -> (usize, usize) {
            if i + MIN_MATCH > data.len() {
                return (0, 0);
            }
            let mut candidate = self.insert(data, i, base, ring_mask);
            let pos = base + i as u32;
            let current = data.get(i..).unwrap_or_default();
            let max_len = current.len().min(MAX_MATCH);
            let (mut best_len, mut best_dist) = (0, 0);
            let mut chain = MAX_CHAIN;
            // Candidates from earlier calls are below `base`; chain links only go backwards.
            while candidate >= base && candidate < pos && chain > 0 {
                let dist = (pos - candidate) as usize;
                if dist > self.max_distance {
                    break;
                }
                let earlier = data.get((candidate - base) as usize..).unwrap_or_default();
                if earlier.get(best_len) == current.get(best_len) {
                    let len = earlier
                        .iter()
                        .zip(current)
                        .take(max_len)
                        .take_while(|(a, b)| a == b)
                        .count();
                    if len > best_len {
                        best_len = len;
                        best_dist = dist;
                        if len == max_len {
                            break;
                        }
                    }
                }
                let next = self
                    .prev
                    .get(candidate as usize & ring_mask)
                    .copied()
                    .unwrap_or(0);
                if next >= candidate {
                    break;
                }
                candidate = next;
                chain -= 1;
            }
            (best_len, best_dist)
        }
    }

    fn emit_match(bits: &mut BitWriter<'_>, len: usize, dist: usize) {
        let len_index = usize::from(LEN_INDEX.get(len).copied().unwrap_or(28));
        bits.put_symbol(257 + len_index);
        let len_extra = LEN_EXTRA.get(len_index).copied().unwrap_or(0);
        if len_extra > 0 {
            let base = LEN_BASE.get(len_index).copied().unwrap_or(0);
            bits.put((len - usize::from(base)) as u32, u32::from(len_extra));
        }
        let dist_index = DIST_BASE
            .partition_point(|&b| usize::from(b) <= dist)
            .saturating_sub(1);
        // Fixed distance codes are 5 bits, the code number itself.
        bits.put(u32::from(reverse_bits(dist_index as u16, 5)), 5);
        let dist_extra = DIST_EXTRA.get(dist_index).copied().unwrap_or(0);
        if dist_extra > 0 {
            let base = DIST_BASE.get(dist_index).copied().unwrap_or(0);
            bits.put((dist - usize::from(base)) as u32, u32::from(dist_extra));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ws::handshake::parse_extensions;

    fn offers(header: &str) -> Vec<Extension> {
        parse_extensions(header).unwrap()
    }

    fn inflate_all(data: &[u8]) -> Vec<u8> {
        let mut d = Decompressor::new();
        let mut out = Vec::new();
        d.decompress(data, &mut out, usize::MAX / 2).unwrap();
        d.finish_message(&mut out, usize::MAX / 2).unwrap();
        out
    }

    /// Test-only DEFLATE decoder for the blocks our small encoder emits (stored and fixed
    /// Huffman), returning the output and the largest back-reference distance used.
    fn inflate_fixed_checking_distance(data: &[u8]) -> (Vec<u8>, usize) {
        struct Bits<'a> {
            data: &'a [u8],
            pos: usize,
        }
        impl Bits<'_> {
            fn bit(&mut self) -> u32 {
                let byte = self.data[self.pos / 8];
                let bit = (byte >> (self.pos % 8)) & 1;
                self.pos += 1;
                u32::from(bit)
            }
            fn bits(&mut self, n: u32) -> u32 {
                (0..n).fold(0, |acc, i| acc | (self.bit() << i))
            }
            fn huffman(&mut self, n: u32) -> u32 {
                (0..n).fold(0, |acc, _| (acc << 1) | self.bit())
            }
            fn exhausted(&self) -> bool {
                self.pos + 3 > self.data.len() * 8
            }
        }
        let mut tail = data.to_vec();
        tail.extend_from_slice(&SYNC_TAIL);
        let mut r = Bits {
            data: &tail,
            pos: 0,
        };
        let mut out = Vec::new();
        let mut max_dist = 0;
        while !r.exhausted() {
            let bfinal = r.bits(1);
            match r.bits(2) {
                0 => {
                    r.pos = r.pos.div_ceil(8) * 8;
                    let len = r.bits(16) as usize;
                    let nlen = r.bits(16) as usize;
                    assert_eq!(len ^ 0xFFFF, nlen);
                    for _ in 0..len {
                        out.push(r.bits(8) as u8);
                    }
                }
                1 => loop {
                    let mut code = r.huffman(7);
                    let symbol = if code <= 0b0010111 {
                        256 + code
                    } else {
                        code = (code << 1) | r.bit();
                        if (0x30..=0xBF).contains(&code) {
                            code - 0x30
                        } else if (0xC0..=0xC7).contains(&code) {
                            280 + code - 0xC0
                        } else {
                            code = (code << 1) | r.bit();
                            144 + code - 0x190
                        }
                    } as usize;
                    if symbol < 256 {
                        out.push(symbol as u8);
                    } else if symbol == 256 {
                        break;
                    } else {
                        let li = symbol - 257;
                        let len = small_window_tables::len_base(li)
                            + r.bits(small_window_tables::len_extra(li)) as usize;
                        let di = r.huffman(5) as usize;
                        let dist = small_window_tables::dist_base(di)
                            + r.bits(small_window_tables::dist_extra(di)) as usize;
                        max_dist = max_dist.max(dist);
                        assert!(dist <= out.len(), "distance before start of stream");
                        for _ in 0..len {
                            out.push(out[out.len() - dist]);
                        }
                    }
                },
                other => panic!("unexpected block type {other}"),
            }
            if bfinal == 1 {
                break;
            }
        }
        (out, max_dist)
    }

    mod small_window_tables {
        // Independent copies of RFC 1951's tables, so the test decoder does not trust the
        // encoder's.
        const LEN_BASE: [usize; 29] = [
            3, 4, 5, 6, 7, 8, 9, 10, 11, 13, 15, 17, 19, 23, 27, 31, 35, 43, 51, 59, 67, 83, 99,
            115, 131, 163, 195, 227, 258,
        ];
        const LEN_EXTRA: [u32; 29] = [
            0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2, 3, 3, 3, 3, 4, 4, 4, 4, 5, 5, 5, 5, 0,
        ];
        pub fn len_base(i: usize) -> usize {
            LEN_BASE[i]
        }
        pub fn len_extra(i: usize) -> u32 {
            LEN_EXTRA[i]
        }
        pub fn dist_base(i: usize) -> usize {
            // 1, 2, 3, 4, then doubling pairs.
            if i < 4 {
                i + 1
            } else {
                let extra = (i as u32 - 2) / 2;
                (1 << (extra + 1)) * (2 + (i % 2)) / 2 + 1
            }
        }
        pub fn dist_extra(i: usize) -> u32 {
            if i < 4 {
                0
            } else {
                (i as u32 - 2) / 2
            }
        }
    }

    fn sample_text(len: usize) -> Vec<u8> {
        let words = [
            "alpha ",
            "beta ",
            "gamma ",
            "{\"key\": 12345}, ",
            "delta\n",
            "epsilon ",
        ];
        let mut out = Vec::new();
        let mut state = 7u32;
        while out.len() < len {
            state = state.wrapping_mul(1_103_515_245).wrapping_add(12345);
            out.extend_from_slice(words[(state >> 16) as usize % words.len()].as_bytes());
        }
        out.truncate(len);
        out
    }

    #[test]
    fn window_bits_values() {
        for (text, expected) in [
            ("8", Some(8)),
            ("15", Some(15)),
            ("10", Some(10)),
            ("7", None),
            ("16", None),
            ("08", None),
            ("+9", None),
            ("", None),
            ("9 ", None),
            ("0x9", None),
        ] {
            assert_eq!(parse_window_bits(text), expected, "{text:?}");
        }
    }

    #[test]
    fn server_accepts_plain_offer() {
        let (params, response) =
            negotiate_server(&offers("permessage-deflate"), &DeflateConfig::default()).unwrap();
        assert_eq!(params, Params::default());
        assert_eq!(response, Extension::new("permessage-deflate"));
    }

    #[test]
    fn server_accepts_autobahn_offers() {
        // 13.1: default offer from Autobahn's client.
        let (params, response) = negotiate_server(
            &offers("permessage-deflate; client_no_context_takeover; client_max_window_bits"),
            &DeflateConfig::default(),
        )
        .unwrap();
        assert!(!params.server_no_context_takeover);
        assert_eq!(params.client_max_window_bits, 15);
        assert_eq!(response.params, vec![]);
        // 13.5: server_no_context_takeover and server_max_window_bits=8.
        let (params, response) = negotiate_server(
            &offers(
                "permessage-deflate; client_no_context_takeover; client_max_window_bits; \
                 server_no_context_takeover; server_max_window_bits=8",
            ),
            &DeflateConfig::default(),
        )
        .unwrap();
        assert!(params.server_no_context_takeover);
        assert_eq!(params.server_max_window_bits, 8);
        assert_eq!(
            crate::ws::handshake::format_extensions(&[response]),
            "permessage-deflate; server_no_context_takeover; server_max_window_bits=8"
        );
    }

    #[test]
    fn server_declines_invalid_offers_and_picks_first_valid() {
        for bad in [
            "permessage-deflate; foo",
            "permessage-deflate; server_max_window_bits",
            "permessage-deflate; server_max_window_bits=7",
            "permessage-deflate; server_max_window_bits=16",
            "permessage-deflate; server_max_window_bits=08",
            "permessage-deflate; client_max_window_bits=20",
            "permessage-deflate; server_no_context_takeover=1",
            "permessage-deflate; client_no_context_takeover=\"x\"",
            "permessage-deflate; server_no_context_takeover; server_no_context_takeover",
            "permessage-deflate; client_max_window_bits; client_max_window_bits=10",
            "x-webkit-deflate-frame",
        ] {
            assert_eq!(
                negotiate_server(&offers(bad), &DeflateConfig::default()),
                None,
                "{bad}"
            );
        }
        let (params, _) = negotiate_server(
            &offers(
                "permessage-deflate; bogus, permessage-deflate; server_max_window_bits=10, \
                 permessage-deflate",
            ),
            &DeflateConfig::default(),
        )
        .unwrap();
        assert_eq!(params.server_max_window_bits, 10);
        // Quoted values are equivalent to tokens.
        let (params, _) = negotiate_server(
            &offers("permessage-deflate; server_max_window_bits=\"12\""),
            &DeflateConfig::default(),
        )
        .unwrap();
        assert_eq!(params.server_max_window_bits, 12);
    }

    #[test]
    fn server_config_adds_no_context_takeover() {
        let config = DeflateConfig {
            level: 6,
            no_context_takeover: true,
            request_peer_no_context_takeover: true,
        };
        let (params, response) = negotiate_server(&offers("permessage-deflate"), &config).unwrap();
        assert!(params.server_no_context_takeover && params.client_no_context_takeover);
        assert_eq!(params.level, 6);
        assert_eq!(
            crate::ws::handshake::format_extensions(&[response]),
            "permessage-deflate; server_no_context_takeover; client_no_context_takeover"
        );
    }

    #[test]
    fn client_offer_and_response_validation() {
        let config = DeflateConfig::default();
        assert_eq!(
            crate::ws::handshake::format_extensions(&[client_offer(&config)]),
            "permessage-deflate; client_max_window_bits"
        );
        assert_eq!(negotiate_client(&[], &config), Ok(None));
        let params = negotiate_client(
            &offers("permessage-deflate; client_max_window_bits=8; client_no_context_takeover"),
            &config,
        )
        .unwrap()
        .unwrap();
        assert_eq!(params.client_max_window_bits, 8);
        assert!(params.client_no_context_takeover);
        let params = negotiate_client(
            &offers("permessage-deflate; server_no_context_takeover; server_max_window_bits=9"),
            &config,
        )
        .unwrap()
        .unwrap();
        assert!(params.server_no_context_takeover);
        assert_eq!(params.server_max_window_bits, 9);
        for bad in [
            "permessage-deflate; client_max_window_bits",
            "permessage-deflate; client_max_window_bits=16",
            "permessage-deflate; unknown",
            "permessage-deflate, permessage-deflate",
            "x-other",
            "permessage-deflate; server_max_window_bits=9; server_max_window_bits=9",
        ] {
            assert!(negotiate_client(&offers(bad), &config).is_err(), "{bad}");
        }
        let strict = DeflateConfig {
            request_peer_no_context_takeover: true,
            ..config
        };
        assert_eq!(
            crate::ws::handshake::format_extensions(&[client_offer(&strict)]),
            "permessage-deflate; server_no_context_takeover; client_max_window_bits"
        );
        assert!(negotiate_client(&offers("permessage-deflate"), &strict).is_err());
    }

    #[test]
    fn rfc7692_hello_vectors_decompress() {
        // 7.2.3.1 single frame, 7.2.3.3 stored block, 7.2.3.4 BFINAL set,
        // 7.2.3.5 two blocks in one message.
        for payload in [
            &[0xf2, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00][..],
            &[
                0x00, 0x05, 0x00, 0xfa, 0xff, 0x48, 0x65, 0x6c, 0x6c, 0x6f, 0x00,
            ],
            &[0xf3, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00, 0x00],
            &[
                0xf2, 0x48, 0x05, 0x00, 0x00, 0x00, 0xff, 0xff, 0xca, 0xc9, 0xc9, 0x07, 0x00,
            ],
        ] {
            assert_eq!(inflate_all(payload), b"Hello", "{payload:x?}");
        }
    }

    #[test]
    fn rfc7692_shared_window_vector() {
        // 7.2.3.2: the second "Hello" refers back into the first message.
        let mut d = Decompressor::new();
        let mut out = Vec::new();
        d.decompress(&[0xf2, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00], &mut out, 100)
            .unwrap();
        d.finish_message(&mut out, 100).unwrap();
        assert_eq!(out, b"Hello");
        out.clear();
        d.decompress(&[0xf2, 0x00, 0x11, 0x00, 0x00], &mut out, 100)
            .unwrap();
        d.finish_message(&mut out, 100).unwrap();
        assert_eq!(out, b"Hello");
    }

    #[test]
    fn bfinal_message_resets_the_stream() {
        let mut d = Decompressor::new();
        for _ in 0..3 {
            let mut out = Vec::new();
            d.decompress(
                &[0xf3, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00, 0x00],
                &mut out,
                100,
            )
            .unwrap();
            d.finish_message(&mut out, 100).unwrap();
            assert_eq!(out, b"Hello");
        }
    }

    #[test]
    fn small_window_encoder_matches_rfc_hello() {
        let mut c = Compressor::new(6, 8, false);
        let mut out = Vec::new();
        c.compress(b"Hello", true, &mut out).unwrap();
        assert_eq!(out, [0xf2, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00]);
    }

    #[test]
    fn full_window_round_trip_with_context_takeover() {
        let mut c = Compressor::new(6, 15, false);
        let mut d = Decompressor::new();
        let text = sample_text(5000);
        let mut sizes = Vec::new();
        for _ in 0..3 {
            let mut compressed = Vec::new();
            c.compress(&text, true, &mut compressed).unwrap();
            assert!(!compressed.ends_with(&SYNC_TAIL));
            sizes.push(compressed.len());
            let mut out = Vec::new();
            d.decompress(&compressed, &mut out, 1 << 20).unwrap();
            d.finish_message(&mut out, 1 << 20).unwrap();
            assert_eq!(out, text);
        }
        // The repeated message refers back into the previous one: much smaller.
        assert!(sizes[1] * 4 < sizes[0], "{sizes:?}");
        assert!(!c.is_stateless());
    }

    #[test]
    fn no_context_takeover_messages_decode_independently() {
        let mut c = Compressor::new(6, 15, true);
        assert!(c.is_stateless());
        let text = sample_text(3000);
        for _ in 0..3 {
            let mut compressed = Vec::new();
            c.compress(&text, true, &mut compressed).unwrap();
            // A fresh decompressor (no shared history) must decode every message.
            assert_eq!(inflate_all(&compressed), text);
        }
    }

    #[test]
    fn small_window_round_trips_and_respects_the_window() {
        for bits in 8..=14u8 {
            let mut c = Compressor::new(1, bits, false);
            for len in [0usize, 1, 2, 3, 4, 100, 257, 258, 259, 1000, 40_000] {
                let mut data = sample_text(len);
                // Add long runs so maximal matches occur.
                data.extend(std::iter::repeat(b'z').take(len / 3));
                let mut compressed = Vec::new();
                c.compress(&data, true, &mut compressed).unwrap();
                let (decoded, max_dist) = inflate_fixed_checking_distance(&compressed);
                assert_eq!(decoded, data, "bits {bits} len {len}");
                assert!(max_dist <= 1 << bits, "bits {bits}: distance {max_dist}");
                assert_eq!(inflate_all(&compressed), data);
                if len >= 1000 {
                    assert!(compressed.len() < data.len() / 2, "bits {bits} len {len}");
                }
            }
        }
    }

    #[test]
    fn fragments_concatenate_into_one_message() {
        for bits in [9u8, 15] {
            let mut c = Compressor::new(6, bits, false);
            let text = sample_text(10_000);
            let mut compressed = Vec::new();
            let pieces: Vec<&[u8]> = text.chunks(3000).collect();
            for (i, piece) in pieces.iter().enumerate() {
                c.compress(piece, i + 1 == pieces.len(), &mut compressed)
                    .unwrap();
            }
            assert_eq!(inflate_all(&compressed), text, "bits {bits}");
        }
    }

    #[test]
    fn empty_messages() {
        for bits in [8u8, 15] {
            for takeover in [false, true] {
                let mut c = Compressor::new(6, bits, takeover);
                let mut d = Decompressor::new();
                for data in [&b""[..], b"x", b""] {
                    let mut compressed = Vec::new();
                    c.compress(data, true, &mut compressed).unwrap();
                    let mut out = Vec::new();
                    d.decompress(&compressed, &mut out, 10).unwrap();
                    d.finish_message(&mut out, 10).unwrap();
                    assert_eq!(out, data);
                }
            }
        }
        // RFC 7692 7.2.3.6: an empty message may be sent as a single 0x00.
        assert_eq!(inflate_all(&[0x00]), b"");
        assert_eq!(inflate_all(&[]), b"");
    }

    #[test]
    fn decompression_is_bounded() {
        let mut c = Compressor::new(9, 15, false);
        let zeros = vec![0u8; 1 << 20];
        let mut compressed = Vec::new();
        c.compress(&zeros, true, &mut compressed).unwrap();
        assert!(compressed.len() < 4096);
        let mut d = Decompressor::new();
        let mut out = Vec::new();
        let limit = 100_000;
        assert_eq!(
            d.decompress(&compressed, &mut out, limit),
            Err(InflateError::TooBig)
        );
        assert!(out.capacity() <= limit + 1, "capacity {}", out.capacity());
        // Exactly at the limit is fine.
        let mut d = Decompressor::new();
        let mut out = Vec::new();
        d.decompress(&compressed, &mut out, 1 << 20).unwrap();
        d.finish_message(&mut out, 1 << 20).unwrap();
        assert_eq!(out.len(), 1 << 20);
        assert!(out.capacity() <= (1 << 20) + 1);
    }

    #[test]
    fn corrupt_data_is_reported() {
        let mut d = Decompressor::new();
        let mut out = Vec::new();
        // BTYPE = 11 is reserved.
        assert_eq!(
            d.decompress(&[0xff, 0xff, 0xff], &mut out, 100),
            Err(InflateError::Corrupt)
        );
    }

    #[test]
    fn grow_bounded_never_exceeds_limit_plus_one() {
        let mut buf = Vec::new();
        for _ in 0..40 {
            grow_bounded(&mut buf, 1000, 50_000);
            assert!(buf.capacity() <= 50_001);
            let room = buf.capacity() - buf.len();
            buf.extend(std::iter::repeat(1u8).take(room.min(3000)));
        }
        assert_eq!(buf.capacity(), 50_001);
    }
}

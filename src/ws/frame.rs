//! WebSocket frame header parsing and encoding (RFC 6455 section 5.2) and payload masking.
//!
//! Parsing is purely syntactic: it reports the raw opcode and RSV bits and leaves the
//! decision of what is allowed (reserved opcodes, RSV bits without an extension, masking per
//! role, control frame rules) to [`crate::ws::protocol`], which knows the connection state.

use std::fmt;

/// Longest possible frame header: 2 fixed bytes + 8 bytes of extended length + 4 bytes of mask.
pub const MAX_HEADER_LEN: usize = 14;

/// Largest payload of a control frame (RFC 6455 section 5.5).
pub const MAX_CONTROL_PAYLOAD: usize = 125;

/// A frame opcode that RFC 6455 defines (the reserved values 3-7 and 0xB-0xF have no variant).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Opcode {
    /// 0x0: continues a fragmented data message.
    Continuation,
    /// 0x1: first frame of a UTF-8 text message.
    Text,
    /// 0x2: first frame of a binary message.
    Binary,
    /// 0x8: connection close.
    Close,
    /// 0x9: ping.
    Ping,
    /// 0xA: pong.
    Pong,
}

impl Opcode {
    /// Maps the 4-bit wire value to an opcode; `None` for reserved values.
    pub fn from_u8(value: u8) -> Option<Opcode> {
        match value {
            0x0 => Some(Opcode::Continuation),
            0x1 => Some(Opcode::Text),
            0x2 => Some(Opcode::Binary),
            0x8 => Some(Opcode::Close),
            0x9 => Some(Opcode::Ping),
            0xA => Some(Opcode::Pong),
            _ => None,
        }
    }

    /// The 4-bit wire value.
    pub fn as_u8(self) -> u8 {
        match self {
            Opcode::Continuation => 0x0,
            Opcode::Text => 0x1,
            Opcode::Binary => 0x2,
            Opcode::Close => 0x8,
            Opcode::Ping => 0x9,
            Opcode::Pong => 0xA,
        }
    }

    /// Whether this is a control opcode (Close, Ping, Pong).
    pub fn is_control(self) -> bool {
        self.as_u8() & 0x8 != 0
    }
}

/// A decoded frame header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FrameHeader {
    /// Final fragment of a message.
    pub fin: bool,
    /// RSV1 (used by permessage-deflate to mark a compressed message).
    pub rsv1: bool,
    /// RSV2 (no extension we support uses it).
    pub rsv2: bool,
    /// RSV3 (no extension we support uses it).
    pub rsv3: bool,
    /// Raw 4-bit opcode, possibly a reserved value; see [`Opcode::from_u8`].
    pub opcode: u8,
    /// Masking key, present when the MASK bit is set.
    pub mask: Option<[u8; 4]>,
    /// Payload length in bytes (at most 2^63 - 1).
    pub payload_len: u64,
}

/// A frame header that can never become valid, whatever bytes follow.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FrameError {
    /// The 64-bit extended payload length has its most significant bit set
    /// (RFC 6455 section 5.2 requires it to be 0).
    LengthOverflow,
}

impl fmt::Display for FrameError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FrameError::LengthOverflow => {
                f.write_str("frame payload length has the most significant bit set")
            }
        }
    }
}

impl std::error::Error for FrameError {}

/// Parses a frame header from the start of `buf`.
///
/// Returns `Ok(None)` when `buf` is shorter than the full header (call again with more bytes),
/// or the header and the number of bytes it occupies. Non-minimal length encodings are
/// accepted, as a receiver should be liberal there; a 64-bit length with the top bit set is
/// rejected.
pub fn parse_header(buf: &[u8]) -> Result<Option<(FrameHeader, usize)>, FrameError> {
    let (b0, b1) = match buf {
        [b0, b1, ..] => (*b0, *b1),
        _ => return Ok(None),
    };
    let masked = b1 & 0x80 != 0;
    let len7 = b1 & 0x7F;
    let ext_len = match len7 {
        126 => 2,
        127 => 8,
        _ => 0,
    };
    let header_len = 2 + ext_len + if masked { 4 } else { 0 };
    let Some(rest) = buf.get(2..header_len) else {
        // The length check on an incomplete 64-bit length can already fail: the top bit
        // lives in the first extended byte.
        if len7 == 127 {
            if let Some(first) = buf.get(2) {
                if first & 0x80 != 0 {
                    return Err(FrameError::LengthOverflow);
                }
            }
        }
        return Ok(None);
    };
    let (len_bytes, mask_bytes) = rest.split_at(ext_len);
    let payload_len = match len7 {
        126 => len_bytes
            .iter()
            .fold(0u64, |acc, b| (acc << 8) | u64::from(*b)),
        127 => {
            let len = len_bytes
                .iter()
                .fold(0u64, |acc, b| (acc << 8) | u64::from(*b));
            if len & (1 << 63) != 0 {
                return Err(FrameError::LengthOverflow);
            }
            len
        }
        n => u64::from(n),
    };
    let mask = match mask_bytes {
        [a, b, c, d] => Some([*a, *b, *c, *d]),
        _ => None,
    };
    let header = FrameHeader {
        fin: b0 & 0x80 != 0,
        rsv1: b0 & 0x40 != 0,
        rsv2: b0 & 0x20 != 0,
        rsv3: b0 & 0x10 != 0,
        opcode: b0 & 0x0F,
        mask,
        payload_len,
    };
    Ok(Some((header, header_len)))
}

/// Appends a frame header to `out`, using the minimal length encoding RFC 6455 requires.
pub fn encode_header(
    out: &mut Vec<u8>,
    fin: bool,
    rsv1: bool,
    opcode: Opcode,
    len: u64,
    mask: Option<[u8; 4]>,
) {
    let b0 = (u8::from(fin) << 7) | (u8::from(rsv1) << 6) | opcode.as_u8();
    let mask_bit = if mask.is_some() { 0x80 } else { 0 };
    if len < 126 {
        out.extend_from_slice(&[b0, mask_bit | len as u8]);
    } else if let Ok(len16) = u16::try_from(len) {
        out.extend_from_slice(&[b0, mask_bit | 126]);
        out.extend_from_slice(&len16.to_be_bytes());
    } else {
        out.extend_from_slice(&[b0, mask_bit | 127]);
        out.extend_from_slice(&len.to_be_bytes());
    }
    if let Some(key) = mask {
        out.extend_from_slice(&key);
    }
}

/// XORs `buf` with the masking `key` (RFC 6455 section 5.3), where `offset` is the position of
/// `buf[0]` within the frame payload, so a payload can be unmasked piece by piece as it
/// arrives. Masking is its own inverse.
pub fn apply_mask(buf: &mut [u8], key: [u8; 4], offset: usize) {
    // Rotate the key so that rotated[0] applies to buf[0]; then every 8-byte word uses the
    // same 64-bit pattern (8 is a multiple of 4), which the compiler turns into SIMD.
    let shift = offset & 3;
    let rotated = [
        key[shift],
        key[(shift + 1) & 3],
        key[(shift + 2) & 3],
        key[(shift + 3) & 3],
    ];
    let word = u64::from_ne_bytes([
        rotated[0], rotated[1], rotated[2], rotated[3], rotated[0], rotated[1], rotated[2],
        rotated[3],
    ]);
    let mut chunks = buf.chunks_exact_mut(8);
    for chunk in &mut chunks {
        if let Ok(bytes) = <&mut [u8; 8]>::try_from(chunk) {
            *bytes = (u64::from_ne_bytes(*bytes) ^ word).to_ne_bytes();
        }
    }
    for (i, byte) in chunks.into_remainder().iter_mut().enumerate() {
        *byte ^= rotated[i & 3];
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_all(buf: &[u8]) -> (FrameHeader, usize) {
        parse_header(buf).unwrap().unwrap()
    }

    fn naive_mask(buf: &mut [u8], key: [u8; 4], offset: usize) {
        for (i, b) in buf.iter_mut().enumerate() {
            *b ^= key[(offset + i) % 4];
        }
    }

    #[test]
    fn rfc6455_section_5_7_unmasked_hello() {
        let bytes = [0x81, 0x05, 0x48, 0x65, 0x6c, 0x6c, 0x6f];
        let (h, n) = parse_all(&bytes);
        assert_eq!(n, 2);
        assert!(h.fin && !h.rsv1 && !h.rsv2 && !h.rsv3);
        assert_eq!(Opcode::from_u8(h.opcode), Some(Opcode::Text));
        assert_eq!(h.mask, None);
        assert_eq!(h.payload_len, 5);
        assert_eq!(&bytes[n..], b"Hello");
    }

    #[test]
    fn rfc6455_section_5_7_masked_hello() {
        let bytes = [
            0x81, 0x85, 0x37, 0xfa, 0x21, 0x3d, 0x7f, 0x9f, 0x4d, 0x51, 0x58,
        ];
        let (h, n) = parse_all(&bytes);
        assert_eq!(n, 6);
        assert_eq!(h.mask, Some([0x37, 0xfa, 0x21, 0x3d]));
        let mut payload = bytes[n..].to_vec();
        apply_mask(&mut payload, h.mask.unwrap(), 0);
        assert_eq!(payload, b"Hello");
        // Encoding the same frame reproduces the RFC bytes.
        let mut out = Vec::new();
        encode_header(&mut out, true, false, Opcode::Text, 5, h.mask);
        let start = out.len();
        out.extend_from_slice(b"Hello");
        apply_mask(&mut out[start..], h.mask.unwrap(), 0);
        assert_eq!(out, bytes);
    }

    #[test]
    fn rfc6455_section_5_7_lengths_16_and_64_bit() {
        let mut out = Vec::new();
        encode_header(&mut out, true, false, Opcode::Binary, 256, None);
        assert_eq!(out, [0x82, 0x7E, 0x01, 0x00]);
        assert_eq!(parse_all(&out).0.payload_len, 256);
        out.clear();
        encode_header(&mut out, true, false, Opcode::Binary, 65536, None);
        assert_eq!(out, [0x82, 0x7F, 0, 0, 0, 0, 0, 1, 0, 0]);
        assert_eq!(parse_all(&out).1, 10);
        assert_eq!(parse_all(&out).0.payload_len, 65536);
    }

    #[test]
    fn length_encoding_boundaries_are_minimal() {
        for (len, header_len) in [
            (0u64, 2usize),
            (125, 2),
            (126, 4),
            (65535, 4),
            (65536, 10),
            (u64::MAX >> 1, 10),
        ] {
            let mut out = Vec::new();
            encode_header(&mut out, false, true, Opcode::Continuation, len, None);
            assert_eq!(out.len(), header_len, "len {len}");
            let (h, n) = parse_all(&out);
            assert_eq!(
                (h.payload_len, n, h.fin, h.rsv1),
                (len, header_len, false, true)
            );
        }
    }

    #[test]
    fn non_minimal_lengths_are_accepted() {
        let (h, n) = parse_all(&[0x82, 0x7E, 0x00, 0x05]);
        assert_eq!((h.payload_len, n), (5, 4));
        let (h, n) = parse_all(&[0x82, 0x7F, 0, 0, 0, 0, 0, 0, 0, 5]);
        assert_eq!((h.payload_len, n), (5, 10));
    }

    #[test]
    fn top_bit_of_64_bit_length_is_an_error() {
        let bytes = [0x82, 0x7F, 0x80, 0, 0, 0, 0, 0, 0, 1];
        assert_eq!(parse_header(&bytes), Err(FrameError::LengthOverflow));
        // Detected as soon as the byte holding the bit arrives.
        assert_eq!(parse_header(&bytes[..3]), Err(FrameError::LengthOverflow));
        assert_eq!(parse_header(&bytes[..2]), Ok(None));
    }

    #[test]
    fn every_prefix_of_a_header_is_incomplete() {
        let mut out = Vec::new();
        encode_header(
            &mut out,
            true,
            false,
            Opcode::Ping,
            70000,
            Some([1, 2, 3, 4]),
        );
        assert_eq!(out.len(), MAX_HEADER_LEN);
        for cut in 0..out.len() {
            assert_eq!(parse_header(&out[..cut]), Ok(None), "cut {cut}");
        }
        let (h, n) = parse_all(&out);
        assert_eq!(n, MAX_HEADER_LEN);
        assert_eq!(h.mask, Some([1, 2, 3, 4]));
        assert_eq!(h.payload_len, 70000);
    }

    #[test]
    fn reserved_opcodes_and_rsv_bits_are_reported_raw() {
        let (h, _) = parse_all(&[0x7B, 0x00]);
        assert_eq!(h.opcode, 0xB);
        assert!(!h.fin && h.rsv1 && h.rsv2 && h.rsv3);
        assert_eq!(Opcode::from_u8(h.opcode), None);
        for v in 0..16u8 {
            match Opcode::from_u8(v) {
                Some(op) => {
                    assert_eq!(op.as_u8(), v);
                    assert_eq!(op.is_control(), v >= 8);
                }
                None => assert!(matches!(v, 3..=7 | 0xB..=0xF)),
            }
        }
    }

    #[test]
    fn mask_matches_naive_for_all_offsets_and_lengths() {
        let key = [0xA1, 0x5C, 0x07, 0xFE];
        for len in 0..70 {
            for offset in 0..8 {
                let data: Vec<u8> = (0..len).map(|i| (i * 7 + 3) as u8).collect();
                let mut fast = data.clone();
                let mut slow = data.clone();
                apply_mask(&mut fast, key, offset);
                naive_mask(&mut slow, key, offset);
                assert_eq!(fast, slow, "len {len} offset {offset}");
            }
        }
    }

    #[test]
    fn mask_in_pieces_equals_mask_at_once() {
        let key = [9, 8, 7, 6];
        let data: Vec<u8> = (0..1000u32).map(|i| (i % 251) as u8).collect();
        let mut whole = data.clone();
        apply_mask(&mut whole, key, 0);
        for split in [1usize, 3, 5, 8, 13, 500, 999] {
            let mut pieces = data.clone();
            let (a, b) = pieces.split_at_mut(split);
            apply_mask(a, key, 0);
            apply_mask(b, key, split);
            assert_eq!(pieces, whole, "split {split}");
        }
    }
}

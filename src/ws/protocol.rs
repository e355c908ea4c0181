//! The sans-IO WebSocket protocol state machine (RFC 6455, with RFC 7692 compression).
//!
//! [`Protocol`] turns bytes read from the socket into [`Event`]s and messages to send into
//! bytes for the socket; it performs no I/O and keeps no timers. It accepts frames split at
//! any byte, reassembles fragmented messages into one reusable buffer, validates text
//! incrementally (failing fast on invalid UTF-8), enforces every framing rule of RFC 6455
//! (masking per role, RSV bits, reserved opcodes, control frame limits, fragmentation order)
//! and the size limits, answers pings and the closing handshake by itself, and on a
//! violation writes the Close frame with the right code before reporting the error.

use std::fmt;

use crate::ws::close::{self, CloseCode};
use crate::ws::deflate::{self, grow_bounded, Compressor, Decompressor, InflateError};
use crate::ws::frame::{self, FrameHeader, Opcode, MAX_CONTROL_PAYLOAD, MAX_HEADER_LEN};
use crate::ws::utf8::Utf8Validator;

/// Which end of the connection this is; decides masking (clients mask, servers must not).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    /// Accepted the connection: expects masked frames, sends unmasked ones.
    Server,
    /// Opened the connection: sends masked frames, expects unmasked ones.
    Client,
}

/// The type of a data message.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MessageKind {
    /// UTF-8 text (validated on receipt).
    Text,
    /// Arbitrary bytes.
    Binary,
}

impl MessageKind {
    fn opcode(self) -> Opcode {
        match self {
            MessageKind::Text => Opcode::Text,
            MessageKind::Binary => Opcode::Binary,
        }
    }
}

/// Limits and negotiated extensions for one connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Config {
    /// Largest message accepted, after reassembly and decompression (default 64 MiB).
    /// Larger messages fail the connection with 1009.
    pub max_message_size: usize,
    /// Largest single frame payload accepted (default 64 MiB); larger frames fail the
    /// connection with 1009.
    pub max_frame_size: usize,
    /// Capacity the message and compression buffers may keep between messages (default
    /// 64 KiB). A bigger message grows them temporarily; they shrink back afterwards, so an
    /// idle connection does not pin the memory of its largest message.
    pub retained_buffer_capacity: usize,
    /// The negotiated permessage-deflate parameters, or `None` without compression.
    pub deflate: Option<deflate::Params>,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            max_message_size: 64 << 20,
            max_frame_size: 64 << 20,
            retained_buffer_capacity: 64 << 10,
            deflate: None,
        }
    }
}

/// Something the peer sent. Borrowed data is valid only during the callback.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Event<'a> {
    /// A complete data message (reassembled and decompressed; text is valid UTF-8).
    Message {
        /// Text or binary.
        kind: MessageKind,
        /// The payload.
        data: &'a [u8],
    },
    /// A ping; the pong has already been written to the output.
    Ping(&'a [u8]),
    /// A pong.
    Pong(&'a [u8]),
    /// The peer's Close frame. If we had not sent Close yet, the reply is already in the
    /// output; either way the closing handshake is now complete ([`State::Closed`]).
    Close {
        /// The status code, `None` when the Close frame had no payload.
        code: Option<u16>,
        /// The reason (may be empty).
        reason: &'a str,
    },
}

/// Where the closing handshake stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum State {
    /// Messages flow both ways.
    Open,
    /// We sent Close and wait for the peer's; incoming data is discarded meanwhile.
    CloseSent,
    /// Both Close frames were exchanged, or the connection failed: nothing more is sent or
    /// accepted. The TCP connection should be closed (see [`Protocol::wants_tcp_close`]).
    Closed,
}

/// A protocol violation by the peer. The Close frame with `code` has already been written
/// to the output (unless we had sent Close before); the connection is now
/// [`State::Closed`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ProtocolError {
    /// 1002 (protocol error), 1007 (invalid payload data) or 1009 (too big).
    pub code: CloseCode,
    /// What the peer did wrong (also sent as the Close reason).
    pub reason: &'static str,
}

impl fmt::Display for ProtocolError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "WebSocket protocol error: {} (close code {})",
            self.reason, self.code
        )
    }
}

impl std::error::Error for ProtocolError {}

/// Why a message or control frame could not be sent.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SendError {
    /// We already sent Close, the closing handshake finished, or the connection failed.
    Closed,
    /// Ping/Pong payloads are limited to 125 bytes, Close reasons to 123.
    ControlTooLong,
    /// This close code may not be sent (see [`close::is_valid_on_wire`]).
    InvalidCloseCode(u16),
    /// Fragments out of order: a first fragment while another fragmented message is being
    /// sent, a continuation without a first fragment or of a different kind, or a whole
    /// message in the middle of a fragmented one.
    FragmentSequence,
    /// The compressor failed (not expected to happen).
    Compression,
}

impl fmt::Display for SendError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SendError::Closed => f.write_str("the WebSocket is closing or closed"),
            SendError::ControlTooLong => {
                f.write_str("control frame payload too long (ping/pong 125 bytes, reason 123)")
            }
            SendError::InvalidCloseCode(code) => write!(f, "close code {code} may not be sent"),
            SendError::FragmentSequence => f.write_str("message fragments sent out of order"),
            SendError::Compression => f.write_str("compression failed"),
        }
    }
}

impl std::error::Error for SendError {}

fn protocol_error(reason: &'static str) -> ProtocolError {
    ProtocolError {
        code: CloseCode::Protocol,
        reason,
    }
}

fn too_big(reason: &'static str) -> ProtocolError {
    ProtocolError {
        code: CloseCode::TooBig,
        reason,
    }
}

fn invalid_utf8() -> ProtocolError {
    ProtocolError {
        code: CloseCode::InvalidPayload,
        reason: "text message is not valid UTF-8",
    }
}

fn inflate_error(error: InflateError) -> ProtocolError {
    match error {
        InflateError::TooBig => too_big("decompressed message exceeds the maximum message size"),
        InflateError::Corrupt => ProtocolError {
            code: CloseCode::InvalidPayload,
            reason: "invalid compressed data",
        },
    }
}

/// Appends one frame; masks the payload copy when `mask` is given (client role).
fn write_frame(
    out: &mut Vec<u8>,
    fin: bool,
    rsv1: bool,
    opcode: Opcode,
    payload: &[u8],
    mask: Option<[u8; 4]>,
) {
    frame::encode_header(out, fin, rsv1, opcode, payload.len() as u64, mask);
    let start = out.len();
    out.extend_from_slice(payload);
    if let (Some(key), Some(written)) = (mask, out.get_mut(start..)) {
        frame::apply_mask(written, key, 0);
    }
}

/// A Close payload (code + reason) in a stack buffer.
fn close_payload(code: u16, reason: &str) -> ([u8; MAX_CONTROL_PAYLOAD], usize) {
    let mut payload = [0u8; MAX_CONTROL_PAYLOAD];
    let mut reason_len = reason.len().min(close::MAX_REASON_LEN);
    while !reason.is_char_boundary(reason_len) {
        reason_len -= 1;
    }
    payload[..2].copy_from_slice(&code.to_be_bytes());
    payload[2..2 + reason_len].copy_from_slice(&reason.as_bytes()[..reason_len]);
    (payload, 2 + reason_len)
}

/// A fragmented message we are in the middle of sending.
#[derive(Clone, Copy, Debug)]
struct OutgoingFragments {
    kind: MessageKind,
    compressed: bool,
}

/// The sending half: role, close state, compressor.
struct Transmitter {
    role: Role,
    state: State,
    mask_source: Box<dyn FnMut() -> [u8; 4]>,
    compressor: Option<Compressor>,
    /// Compressed payload staging (the frame header needs its length first).
    scratch: Vec<u8>,
    fragments: Option<OutgoingFragments>,
    retained_capacity: usize,
}

impl Transmitter {
    fn next_mask(&mut self) -> Option<[u8; 4]> {
        match self.role {
            Role::Client => Some((self.mask_source)()),
            Role::Server => None,
        }
    }

    fn check_open(&self) -> Result<(), SendError> {
        if self.state == State::Open {
            Ok(())
        } else {
            Err(SendError::Closed)
        }
    }

    fn trim_scratch(&mut self) {
        self.scratch.clear();
        if self.scratch.capacity() > self.retained_capacity {
            self.scratch.shrink_to(self.retained_capacity);
        }
    }

    fn encode_message(
        &mut self,
        kind: MessageKind,
        data: &[u8],
        out: &mut Vec<u8>,
    ) -> Result<(), SendError> {
        self.check_open()?;
        if self.fragments.is_some() {
            return Err(SendError::FragmentSequence);
        }
        let opcode = kind.opcode();
        let Some(compressor) = self.compressor.as_mut() else {
            let mask = self.next_mask();
            write_frame(out, true, false, opcode, data, mask);
            return Ok(());
        };
        self.scratch.clear();
        compressor
            .compress(data, true, &mut self.scratch)
            .map_err(|_| SendError::Compression)?;
        // Sending uncompressed is allowed per message, but only when the peer's window does
        // not need to see what we compressed.
        let send_raw = compressor.is_stateless() && self.scratch.len() >= data.len();
        let mask = self.next_mask();
        if send_raw {
            write_frame(out, true, false, opcode, data, mask);
        } else {
            write_frame(out, true, true, opcode, &self.scratch, mask);
        }
        self.trim_scratch();
        Ok(())
    }

    fn encode_fragment(
        &mut self,
        kind: MessageKind,
        data: &[u8],
        first: bool,
        fin: bool,
        out: &mut Vec<u8>,
    ) -> Result<(), SendError> {
        self.check_open()?;
        let compressed = match (first, self.fragments) {
            (true, None) => self.compressor.is_some(),
            (false, Some(sending)) if sending.kind == kind => sending.compressed,
            _ => return Err(SendError::FragmentSequence),
        };
        let opcode = if first {
            kind.opcode()
        } else {
            Opcode::Continuation
        };
        match self.compressor.as_mut() {
            Some(compressor) if compressed => {
                self.scratch.clear();
                compressor
                    .compress(data, fin, &mut self.scratch)
                    .map_err(|_| SendError::Compression)?;
                let mask = self.next_mask();
                // RSV1 marks the whole message as compressed, on its first frame only.
                write_frame(out, fin, first, opcode, &self.scratch, mask);
                self.trim_scratch();
            }
            _ => {
                let mask = self.next_mask();
                write_frame(out, fin, false, opcode, data, mask);
            }
        }
        self.fragments = if fin {
            None
        } else {
            Some(OutgoingFragments { kind, compressed })
        };
        Ok(())
    }

    fn encode_control(
        &mut self,
        opcode: Opcode,
        data: &[u8],
        out: &mut Vec<u8>,
    ) -> Result<(), SendError> {
        self.check_open()?;
        if data.len() > MAX_CONTROL_PAYLOAD {
            return Err(SendError::ControlTooLong);
        }
        let mask = self.next_mask();
        write_frame(out, true, false, opcode, data, mask);
        Ok(())
    }

    fn encode_close(
        &mut self,
        code: u16,
        reason: &str,
        out: &mut Vec<u8>,
    ) -> Result<(), SendError> {
        self.check_open()?;
        if !close::is_valid_on_wire(code) {
            return Err(SendError::InvalidCloseCode(code));
        }
        if reason.len() > close::MAX_REASON_LEN {
            return Err(SendError::ControlTooLong);
        }
        let (payload, len) = close_payload(code, reason);
        let mask = self.next_mask();
        write_frame(out, true, false, Opcode::Close, &payload[..len], mask);
        self.state = State::CloseSent;
        Ok(())
    }
}

/// The sending side, handed to the event callback of [`Protocol::feed_with_sender`] so the
/// application can answer a message while it is still borrowed (e.g. echo it without
/// copying). Frames go to the same output buffer as the automatic replies, in order.
pub struct Sender<'a> {
    tx: &'a mut Transmitter,
    out: &'a mut Vec<u8>,
}

impl Sender<'_> {
    /// Like [`Protocol::encode_message`].
    pub fn encode_message(&mut self, kind: MessageKind, data: &[u8]) -> Result<(), SendError> {
        self.tx.encode_message(kind, data, self.out)
    }

    /// Like [`Protocol::encode_fragment`].
    pub fn encode_fragment(
        &mut self,
        kind: MessageKind,
        data: &[u8],
        first: bool,
        fin: bool,
    ) -> Result<(), SendError> {
        self.tx.encode_fragment(kind, data, first, fin, self.out)
    }

    /// Like [`Protocol::encode_ping`].
    pub fn encode_ping(&mut self, data: &[u8]) -> Result<(), SendError> {
        self.tx.encode_control(Opcode::Ping, data, self.out)
    }

    /// Like [`Protocol::encode_pong`].
    pub fn encode_pong(&mut self, data: &[u8]) -> Result<(), SendError> {
        self.tx.encode_control(Opcode::Pong, data, self.out)
    }

    /// Like [`Protocol::encode_close`].
    pub fn encode_close(&mut self, code: u16, reason: &str) -> Result<(), SendError> {
        self.tx.encode_close(code, reason, self.out)
    }

    /// Like [`Protocol::state`].
    pub fn state(&self) -> State {
        self.tx.state
    }
}

/// The frame whose payload is being received.
#[derive(Clone, Copy, Debug)]
struct IncomingFrame {
    fin: bool,
    opcode: Opcode,
    mask: Option<[u8; 4]>,
    /// Payload bytes still to come.
    remaining: u64,
    /// Payload bytes seen so far (only its value mod 4 matters, for unmasking).
    offset: usize,
    /// A data frame arriving after we sent Close: framing is checked, content dropped.
    discard: bool,
}

/// The data message being reassembled.
#[derive(Clone, Copy, Debug)]
struct IncomingMessage {
    kind: MessageKind,
    compressed: bool,
}

/// The receiving half: frame parser, reassembly, validation, decompression.
struct Receiver {
    role: Role,
    max_message_size: usize,
    max_frame_size: u64,
    retained_capacity: usize,
    /// A frame header split across reads.
    header_buf: [u8; MAX_HEADER_LEN],
    header_len: usize,
    frame: Option<IncomingFrame>,
    message: Option<IncomingMessage>,
    /// Reassembled (and decompressed) message payload; reused between messages.
    msg_buf: Vec<u8>,
    /// Control frame payload (at most 125 bytes).
    control_buf: Vec<u8>,
    /// Unmasked compressed bytes on their way to the decompressor (server role).
    unmask_buf: Vec<u8>,
    utf8: Utf8Validator,
    decompressor: Option<Decompressor>,
    failed: Option<ProtocolError>,
}

type EventHandler<'h> = dyn FnMut(Event<'_>, &mut Sender<'_>) + 'h;

impl Receiver {
    fn feed(
        &mut self,
        tx: &mut Transmitter,
        input: &[u8],
        out: &mut Vec<u8>,
        on_event: &mut EventHandler<'_>,
    ) -> Result<(), ProtocolError> {
        let mut pos = 0;
        loop {
            let mut frame = match self.frame {
                Some(frame) => frame,
                None => {
                    if tx.state == State::Closed {
                        // Nothing is accepted after the closing handshake.
                        return Ok(());
                    }
                    let rest = input.get(pos..).unwrap_or_default();
                    let Some((header, used)) = self.take_header(rest)? else {
                        return Ok(());
                    };
                    pos += used;
                    let frame = self.start_frame(header, tx)?;
                    let rest = input.get(pos..).unwrap_or_default();
                    if let Some(payload) = self.borrowable_message(&frame, rest) {
                        pos += payload.len();
                        self.deliver_borrowed(payload, tx, out, on_event)?;
                        continue;
                    }
                    frame
                }
            };
            let rest = input.get(pos..).unwrap_or_default();
            let take = usize::try_from(frame.remaining).map_or(rest.len(), |r| r.min(rest.len()));
            if let Some(chunk) = rest.get(..take).filter(|c| !c.is_empty()) {
                self.payload(&mut frame, chunk)?;
                pos += take;
            }
            if frame.remaining > 0 {
                self.frame = Some(frame);
                return Ok(());
            }
            self.frame = None;
            self.finish_frame(frame, tx, out, on_event)?;
        }
    }

    /// Completes a frame header from the bytes kept from earlier reads plus `rest`.
    /// Returns the header and how many bytes of `rest` it used.
    fn take_header(&mut self, rest: &[u8]) -> Result<Option<(FrameHeader, usize)>, ProtocolError> {
        let have = self.header_len;
        if have == 0 {
            if let Some(found) = frame::parse_header(rest).map_err(|_| length_error())? {
                return Ok(Some(found));
            }
        }
        let add = rest.len().min(MAX_HEADER_LEN - have);
        let (Some(dst), Some(src)) = (self.header_buf.get_mut(have..have + add), rest.get(..add))
        else {
            return Ok(None);
        };
        dst.copy_from_slice(src);
        let buffered = self.header_buf.get(..have + add).unwrap_or_default();
        match frame::parse_header(buffered).map_err(|_| length_error())? {
            Some((header, len)) => {
                self.header_len = 0;
                Ok(Some((header, len.saturating_sub(have))))
            }
            None => {
                self.header_len = have + add;
                Ok(None)
            }
        }
    }

    /// Applies the framing rules to a new frame header and sets up its reception.
    fn start_frame(
        &mut self,
        header: FrameHeader,
        tx: &Transmitter,
    ) -> Result<IncomingFrame, ProtocolError> {
        let opcode = Opcode::from_u8(header.opcode).ok_or(protocol_error("reserved opcode"))?;
        if header.rsv2 || header.rsv3 {
            return Err(protocol_error(
                "RSV2/RSV3 set without a negotiated extension",
            ));
        }
        if header.rsv1 {
            if self.decompressor.is_none() {
                return Err(protocol_error("RSV1 set without a negotiated extension"));
            }
            if !matches!(opcode, Opcode::Text | Opcode::Binary) {
                return Err(protocol_error(
                    "RSV1 set on a frame other than the first of a data message",
                ));
            }
        }
        match (self.role, header.mask.is_some()) {
            (Role::Server, false) => return Err(protocol_error("client frame is not masked")),
            (Role::Client, true) => return Err(protocol_error("server frame is masked")),
            _ => {}
        }
        let mut frame = IncomingFrame {
            fin: header.fin,
            opcode,
            mask: header.mask,
            remaining: header.payload_len,
            offset: 0,
            discard: false,
        };
        if opcode.is_control() {
            if !header.fin {
                return Err(protocol_error("fragmented control frame"));
            }
            if header.payload_len > MAX_CONTROL_PAYLOAD as u64 {
                return Err(protocol_error(
                    "control frame payload longer than 125 bytes",
                ));
            }
            self.control_buf.clear();
            return Ok(frame);
        }
        if tx.state != State::Open {
            // After our Close the peer's data is no longer processed (RFC 6455 5.5.1).
            self.abandon_message();
            frame.discard = true;
            return Ok(frame);
        }
        match (opcode, self.message) {
            (Opcode::Continuation, None) => {
                return Err(protocol_error(
                    "continuation frame without a message to continue",
                ))
            }
            (Opcode::Continuation, Some(_)) => {}
            (_, Some(_)) => {
                return Err(protocol_error(
                    "new data message started before the fragmented one finished",
                ))
            }
            (_, None) => {
                let kind = if opcode == Opcode::Text {
                    MessageKind::Text
                } else {
                    MessageKind::Binary
                };
                self.message = Some(IncomingMessage {
                    kind,
                    compressed: header.rsv1,
                });
            }
        }
        if header.payload_len > self.max_frame_size {
            return Err(too_big("frame exceeds the maximum frame size"));
        }
        let compressed = self.message.is_some_and(|m| m.compressed);
        // Uncompressed sizes are known from the headers: refuse before buffering anything.
        if !compressed
            && (self.msg_buf.len() as u64).saturating_add(header.payload_len)
                > self.max_message_size as u64
        {
            return Err(too_big("message exceeds the maximum message size"));
        }
        Ok(frame)
    }

    /// The whole payload of an unfragmented, uncompressed, unmasked message when it is
    /// entirely inside the input: delivered straight from the input, without copying.
    fn borrowable_message<'i>(&self, frame: &IncomingFrame, rest: &'i [u8]) -> Option<&'i [u8]> {
        let eligible = frame.fin
            && !frame.discard
            && frame.mask.is_none()
            && matches!(frame.opcode, Opcode::Text | Opcode::Binary)
            && self.message.is_some_and(|m| !m.compressed);
        if !eligible {
            return None;
        }
        rest.get(..usize::try_from(frame.remaining).ok()?)
    }

    fn deliver_borrowed(
        &mut self,
        payload: &[u8],
        tx: &mut Transmitter,
        out: &mut Vec<u8>,
        on_event: &mut EventHandler<'_>,
    ) -> Result<(), ProtocolError> {
        let Some(message) = self.message.take() else {
            return Ok(());
        };
        if message.kind == MessageKind::Text && std::str::from_utf8(payload).is_err() {
            return Err(invalid_utf8());
        }
        let event = Event::Message {
            kind: message.kind,
            data: payload,
        };
        on_event(event, &mut Sender { tx, out });
        Ok(())
    }

    /// Takes in the next piece of the current frame's payload.
    fn payload(&mut self, frame: &mut IncomingFrame, chunk: &[u8]) -> Result<(), ProtocolError> {
        if frame.opcode.is_control() {
            let start = self.control_buf.len();
            self.control_buf.extend_from_slice(chunk);
            if let (Some(key), Some(new)) = (frame.mask, self.control_buf.get_mut(start..)) {
                frame::apply_mask(new, key, frame.offset);
            }
        } else if let Some(message) = self.message.filter(|_| !frame.discard) {
            let before = self.msg_buf.len();
            if message.compressed {
                let compressed: &[u8] = match frame.mask {
                    Some(key) => {
                        self.unmask_buf.clear();
                        self.unmask_buf.extend_from_slice(chunk);
                        frame::apply_mask(&mut self.unmask_buf, key, frame.offset);
                        &self.unmask_buf
                    }
                    None => chunk,
                };
                if let Some(decompressor) = self.decompressor.as_mut() {
                    decompressor
                        .decompress(compressed, &mut self.msg_buf, self.max_message_size)
                        .map_err(inflate_error)?;
                }
            } else {
                if self.msg_buf.capacity() - before < chunk.len() {
                    grow_bounded(&mut self.msg_buf, chunk.len(), self.max_message_size);
                }
                self.msg_buf.extend_from_slice(chunk);
                if let (Some(key), Some(new)) = (frame.mask, self.msg_buf.get_mut(before..)) {
                    frame::apply_mask(new, key, frame.offset);
                }
            }
            if message.kind == MessageKind::Text {
                let new = self.msg_buf.get(before..).unwrap_or_default();
                self.utf8.feed(new).map_err(|_| invalid_utf8())?;
            }
        }
        frame.offset = frame.offset.wrapping_add(chunk.len());
        frame.remaining = frame.remaining.saturating_sub(chunk.len() as u64);
        Ok(())
    }

    fn finish_frame(
        &mut self,
        frame: IncomingFrame,
        tx: &mut Transmitter,
        out: &mut Vec<u8>,
        on_event: &mut EventHandler<'_>,
    ) -> Result<(), ProtocolError> {
        match frame.opcode {
            Opcode::Ping => {
                if tx.state == State::Open {
                    let mask = tx.next_mask();
                    write_frame(out, true, false, Opcode::Pong, &self.control_buf, mask);
                }
                on_event(Event::Ping(&self.control_buf), &mut Sender { tx, out });
            }
            Opcode::Pong => on_event(Event::Pong(&self.control_buf), &mut Sender { tx, out }),
            Opcode::Close => {
                let (code, reason) =
                    close::parse_close_payload(&self.control_buf).map_err(|e| ProtocolError {
                        code: e.code,
                        reason: e.reason,
                    })?;
                if tx.state == State::Open {
                    // Echo the code (RFC 6455 5.5.1); an empty Close gets an empty Close.
                    let code_bytes = code.map(u16::to_be_bytes);
                    let reply = code_bytes.as_ref().map_or(&[][..], |b| &b[..]);
                    let mask = tx.next_mask();
                    write_frame(out, true, false, Opcode::Close, reply, mask);
                }
                tx.state = State::Closed;
                tx.fragments = None;
                // A message still in progress is dropped (fields reset one by one because
                // `reason` borrows the control buffer).
                self.message = None;
                self.msg_buf.clear();
                self.utf8.reset();
                on_event(Event::Close { code, reason }, &mut Sender { tx, out });
            }
            _ if frame.discard || !frame.fin => {}
            _ => self.finish_message(tx, out, on_event)?,
        }
        Ok(())
    }

    fn finish_message(
        &mut self,
        tx: &mut Transmitter,
        out: &mut Vec<u8>,
        on_event: &mut EventHandler<'_>,
    ) -> Result<(), ProtocolError> {
        let Some(message) = self.message.take() else {
            return Ok(());
        };
        let text = message.kind == MessageKind::Text;
        if message.compressed {
            let before = self.msg_buf.len();
            if let Some(decompressor) = self.decompressor.as_mut() {
                decompressor
                    .finish_message(&mut self.msg_buf, self.max_message_size)
                    .map_err(inflate_error)?;
            }
            if text {
                let new = self.msg_buf.get(before..).unwrap_or_default();
                self.utf8.feed(new).map_err(|_| invalid_utf8())?;
            }
        }
        if text {
            self.utf8.finish().map_err(|_| invalid_utf8())?;
        }
        let event = Event::Message {
            kind: message.kind,
            data: &self.msg_buf,
        };
        on_event(event, &mut Sender { tx, out });
        self.msg_buf.clear();
        if self.msg_buf.capacity() > self.retained_capacity {
            self.msg_buf.shrink_to(self.retained_capacity);
        }
        Ok(())
    }

    /// Drops a partly received message (the connection is closing).
    fn abandon_message(&mut self) {
        self.message = None;
        self.msg_buf.clear();
        self.utf8.reset();
    }
}

fn length_error() -> ProtocolError {
    protocol_error("frame length has the most significant bit set")
}

/// One WebSocket connection's protocol state, without I/O.
///
/// Feed it what the socket delivers ([`feed`](Self::feed)); write to the socket whatever
/// it appends to `out` (replies) and whatever the `encode_*` methods append.
pub struct Protocol {
    rx: Receiver,
    tx: Transmitter,
}

impl fmt::Debug for Protocol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Protocol")
            .field("role", &self.tx.role)
            .field("state", &self.tx.state)
            .field("compression", &self.tx.compressor.is_some())
            .field("failed", &self.rx.failed)
            .finish()
    }
}

impl Protocol {
    /// A connection in the [`State::Open`] state, right after the opening handshake.
    /// `mask_source` supplies a fresh unpredictable masking key per frame; RFC 6455 10.3
    /// requires a strong source for clients. Servers never call it.
    pub fn new(role: Role, config: Config, mask_source: Box<dyn FnMut() -> [u8; 4]>) -> Self {
        let is_server = role == Role::Server;
        let compressor = config
            .deflate
            .map(|params| Compressor::for_role(&params, is_server));
        let decompressor = config.deflate.map(|_| Decompressor::new());
        Protocol {
            rx: Receiver {
                role,
                max_message_size: config.max_message_size,
                max_frame_size: config.max_frame_size as u64,
                retained_capacity: config.retained_buffer_capacity,
                header_buf: [0; MAX_HEADER_LEN],
                header_len: 0,
                frame: None,
                message: None,
                msg_buf: Vec::new(),
                control_buf: Vec::with_capacity(MAX_CONTROL_PAYLOAD),
                unmask_buf: Vec::new(),
                utf8: Utf8Validator::new(),
                decompressor,
                failed: None,
            },
            tx: Transmitter {
                role,
                state: State::Open,
                mask_source,
                compressor,
                scratch: Vec::new(),
                fragments: None,
                retained_capacity: config.retained_buffer_capacity,
            },
        }
    }

    /// Feeds bytes read from the socket. Calls `on_event` for each complete event in
    /// order, and appends automatic replies (pongs, the Close reply) to `out`.
    ///
    /// On `Err` the peer violated the protocol: the Close frame with the error's code is
    /// already in `out` (after any earlier replies); send `out`, nothing more, and close the
    /// connection. Later calls return the same error and do nothing.
    pub fn feed(
        &mut self,
        input: &[u8],
        out: &mut Vec<u8>,
        on_event: &mut dyn FnMut(Event<'_>),
    ) -> Result<(), ProtocolError> {
        self.feed_with_sender(input, out, &mut |event, _| on_event(event))
    }

    /// Like [`feed`](Self::feed), but the callback also gets a [`Sender`] that appends to
    /// the same `out`, so it can answer a message while the message is borrowed.
    pub fn feed_with_sender(
        &mut self,
        input: &[u8],
        out: &mut Vec<u8>,
        on_event: &mut dyn FnMut(Event<'_>, &mut Sender<'_>),
    ) -> Result<(), ProtocolError> {
        if let Some(error) = self.rx.failed {
            return Err(error);
        }
        let result = self.rx.feed(&mut self.tx, input, out, on_event);
        if let Err(error) = result {
            self.fail(error, out);
        }
        result
    }

    /// Fails the connection: sends the Close frame (unless already sent) and stops.
    fn fail(&mut self, error: ProtocolError, out: &mut Vec<u8>) {
        log::debug!("{error}");
        if self.tx.state == State::Open {
            let (payload, len) = close_payload(error.code.as_u16(), error.reason);
            let mask = self.tx.next_mask();
            write_frame(out, true, false, Opcode::Close, &payload[..len], mask);
        }
        self.tx.state = State::Closed;
        self.tx.fragments = None;
        self.rx.failed = Some(error);
    }

    /// Appends a whole message as one frame, compressed when permessage-deflate was
    /// negotiated (sent uncompressed instead when that is smaller and allowed).
    pub fn encode_message(
        &mut self,
        kind: MessageKind,
        data: &[u8],
        out: &mut Vec<u8>,
    ) -> Result<(), SendError> {
        self.tx.encode_message(kind, data, out)
    }

    /// Streams a message as fragments, one frame per call: `first` on the first call,
    /// `fin` on the last (both for a single-frame message). Continuations must repeat the
    /// message's `kind`. Control frames may be sent in between; other messages may not.
    pub fn encode_fragment(
        &mut self,
        kind: MessageKind,
        data: &[u8],
        first: bool,
        fin: bool,
        out: &mut Vec<u8>,
    ) -> Result<(), SendError> {
        self.tx.encode_fragment(kind, data, first, fin, out)
    }

    /// Appends a Ping (payload at most 125 bytes).
    pub fn encode_ping(&mut self, data: &[u8], out: &mut Vec<u8>) -> Result<(), SendError> {
        self.tx.encode_control(Opcode::Ping, data, out)
    }

    /// Appends an unsolicited Pong (payload at most 125 bytes); pings are answered
    /// automatically.
    pub fn encode_pong(&mut self, data: &[u8], out: &mut Vec<u8>) -> Result<(), SendError> {
        self.tx.encode_control(Opcode::Pong, data, out)
    }

    /// Starts the closing handshake: appends a Close frame (code valid on the wire, reason
    /// at most 123 bytes) and moves to [`State::CloseSent`]. Incoming data is discarded
    /// until the peer's Close; the caller should time out waiting for it.
    pub fn encode_close(
        &mut self,
        code: u16,
        reason: &str,
        out: &mut Vec<u8>,
    ) -> Result<(), SendError> {
        self.tx.encode_close(code, reason, out)
    }

    /// Where the closing handshake stands.
    pub fn state(&self) -> State {
        self.tx.state
    }

    /// Whether this endpoint should close the TCP connection now (after sending what is
    /// in its output): true for a server once [`State::Closed`] is reached (RFC 6455 7.1.1:
    /// the server closes first). Always false for a client, which should wait for the
    /// server to close and close itself only after a timeout.
    pub fn wants_tcp_close(&self) -> bool {
        self.tx.role == Role::Server && self.tx.state == State::Closed
    }

    /// This endpoint's role.
    pub fn role(&self) -> Role {
        self.tx.role
    }

    /// The violation that failed the connection, if any.
    pub fn failure(&self) -> Option<ProtocolError> {
        self.rx.failed
    }

    /// Whether permessage-deflate is in use.
    pub fn is_compressed(&self) -> bool {
        self.tx.compressor.is_some()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ws::deflate::{client_offer, negotiate_client, negotiate_server, DeflateConfig};
    use crate::ws::handshake::{format_extensions, parse_extensions};

    /// An owned copy of an [`Event`], for comparing event sequences.
    #[derive(Clone, Debug, PartialEq, Eq)]
    enum Owned {
        Message(MessageKind, Vec<u8>),
        Ping(Vec<u8>),
        Pong(Vec<u8>),
        Close(Option<u16>, String),
    }

    impl From<Event<'_>> for Owned {
        fn from(event: Event<'_>) -> Self {
            match event {
                Event::Message { kind, data } => Owned::Message(kind, data.to_vec()),
                Event::Ping(data) => Owned::Ping(data.to_vec()),
                Event::Pong(data) => Owned::Pong(data.to_vec()),
                Event::Close { code, reason } => Owned::Close(code, reason.to_owned()),
            }
        }
    }

    fn counting_masks() -> Box<dyn FnMut() -> [u8; 4]> {
        let mut counter = 0x1234_5678u32;
        Box::new(move || {
            counter = counter.wrapping_mul(2_654_435_761).wrapping_add(1);
            counter.to_le_bytes()
        })
    }

    fn endpoint(role: Role, config: Config) -> Protocol {
        Protocol::new(role, config, counting_masks())
    }

    fn server() -> Protocol {
        endpoint(Role::Server, Config::default())
    }

    fn client() -> Protocol {
        endpoint(Role::Client, Config::default())
    }

    /// Feeds `input`, returning the events, the output and the result.
    fn run(p: &mut Protocol, input: &[u8]) -> (Vec<Owned>, Vec<u8>, Result<(), ProtocolError>) {
        let mut events = Vec::new();
        let mut out = Vec::new();
        let result = p.feed(input, &mut out, &mut |e| events.push(Owned::from(e)));
        (events, out, result)
    }

    /// Feeds `input` in two reads split at `split`, returning the events and the output;
    /// both reads must succeed.
    fn run_split(p: &mut Protocol, input: &[u8], split: usize) -> (Vec<Owned>, Vec<u8>) {
        let mut events = Vec::new();
        let mut out = Vec::new();
        for part in [&input[..split], &input[split..]] {
            p.feed(part, &mut out, &mut |e| events.push(Owned::from(e)))
                .unwrap();
        }
        (events, out)
    }

    /// A raw frame with any first byte (FIN/RSV/opcode), masked when `mask` is given.
    fn raw_frame(b0: u8, payload: &[u8], mask: Option<[u8; 4]>) -> Vec<u8> {
        let mut out = Vec::new();
        frame::encode_header(
            &mut out,
            false,
            false,
            Opcode::Continuation,
            payload.len() as u64,
            mask,
        );
        out[0] = b0;
        let start = out.len();
        out.extend_from_slice(payload);
        if let Some(key) = mask {
            frame::apply_mask(&mut out[start..], key, 0);
        }
        out
    }

    const KEY: Option<[u8; 4]> = Some([0x37, 0xfa, 0x21, 0x3d]);

    /// A masked frame from a client.
    fn cframe(b0: u8, payload: &[u8]) -> Vec<u8> {
        raw_frame(b0, payload, KEY)
    }

    /// An unmasked frame from a server.
    fn sframe(b0: u8, payload: &[u8]) -> Vec<u8> {
        raw_frame(b0, payload, None)
    }

    fn text(s: &str) -> Owned {
        Owned::Message(MessageKind::Text, s.as_bytes().to_vec())
    }

    fn binary(b: &[u8]) -> Owned {
        Owned::Message(MessageKind::Binary, b.to_vec())
    }

    /// Decodes frames a peer in `role` would receive from `bytes` (i.e. what the other side
    /// wrote), returning the events.
    fn decode_as(role: Role, bytes: &[u8]) -> Vec<Owned> {
        let mut p = endpoint(role, Config::default());
        let (events, _, result) = run(&mut p, bytes);
        result.unwrap();
        events
    }

    /// Asserts that feeding `input` to `p` fails with `code` and that the output ends with a
    /// Close frame carrying that code.
    fn assert_fails(mut p: Protocol, input: &[u8], code: u16) -> Vec<Owned> {
        let peer = match p.role() {
            Role::Server => Role::Client,
            Role::Client => Role::Server,
        };
        let (events, out, result) = run(&mut p, input);
        let error = result.expect_err("expected a protocol error");
        assert_eq!(error.code.as_u16(), code, "{error}");
        assert_eq!(p.state(), State::Closed);
        assert_eq!(p.failure(), Some(error));
        let replies = decode_as(peer, &out);
        match replies.last() {
            Some(Owned::Close(Some(c), reason)) => {
                assert_eq!(*c, code);
                assert_eq!(reason, error.reason);
            }
            other => panic!("no close frame written: {other:?}"),
        }
        // Later input is refused without writing anything.
        let (later, out, again) = run(&mut p, &cframe(0x81, b"x"));
        assert!(later.is_empty() && out.is_empty());
        assert_eq!(again, Err(error));
        assert_eq!(
            p.encode_message(MessageKind::Text, b"x", &mut Vec::new()),
            Err(SendError::Closed)
        );
        events
    }

    #[test]
    fn rfc6455_5_7_examples_received_by_client() {
        let mut c = client();
        let mut input = vec![0x81, 0x05, 0x48, 0x65, 0x6c, 0x6c, 0x6f];
        input.extend_from_slice(&[0x01, 0x03, 0x48, 0x65, 0x6c, 0x80, 0x02, 0x6c, 0x6f]);
        input.extend_from_slice(&[0x89, 0x05, 0x48, 0x65, 0x6c, 0x6c, 0x6f]);
        let big: Vec<u8> = (0..65536u32).map(|i| i as u8).collect();
        input.extend_from_slice(&[0x82, 0x7E, 0x01, 0x00]);
        input.extend_from_slice(&big[..256]);
        input.extend_from_slice(&[0x82, 0x7F, 0, 0, 0, 0, 0, 1, 0, 0]);
        input.extend_from_slice(&big);
        let (events, out, result) = run(&mut c, &input);
        result.unwrap();
        assert_eq!(
            events,
            vec![
                text("Hello"),
                text("Hello"),
                Owned::Ping(b"Hello".to_vec()),
                binary(&big[..256]),
                binary(&big),
            ]
        );
        // The automatic pong is masked (client) and carries the ping's payload.
        assert_eq!(out[0], 0x8A);
        assert_eq!(out[1], 0x85);
        assert_eq!(
            decode_as(Role::Server, &out),
            vec![Owned::Pong(b"Hello".to_vec())]
        );
    }

    #[test]
    fn rfc6455_5_7_masked_examples_received_by_server() {
        let mut s = server();
        let hello = [
            0x81, 0x85, 0x37, 0xfa, 0x21, 0x3d, 0x7f, 0x9f, 0x4d, 0x51, 0x58,
        ];
        let pong = [
            0x8a, 0x85, 0x37, 0xfa, 0x21, 0x3d, 0x7f, 0x9f, 0x4d, 0x51, 0x58,
        ];
        let (events, out, result) = run(&mut s, &[&hello[..], &pong[..]].concat());
        result.unwrap();
        assert_eq!(events, vec![text("Hello"), Owned::Pong(b"Hello".to_vec())]);
        assert!(out.is_empty());
    }

    #[test]
    fn outgoing_frames_are_masked_only_by_clients() {
        let mut out = Vec::new();
        server()
            .encode_message(MessageKind::Text, b"Hello", &mut out)
            .unwrap();
        assert_eq!(out, [0x81, 0x05, b'H', b'e', b'l', b'l', b'o']);
        out.clear();
        let mut c = client();
        c.encode_message(MessageKind::Binary, b"Hello", &mut out)
            .unwrap();
        assert_eq!(out[0], 0x82);
        assert_eq!(out[1], 0x85);
        assert_ne!(&out[6..], b"Hello");
        assert_eq!(decode_as(Role::Server, &out), vec![binary(b"Hello")]);
        // Each frame gets a fresh key.
        let mut second = Vec::new();
        c.encode_message(MessageKind::Binary, b"Hello", &mut second)
            .unwrap();
        assert_ne!(out[2..6], second[2..6]);
    }

    /// Sends every kind of traffic from `from` to `to` through their byte streams and checks
    /// what arrives.
    fn exchange(from: &mut Protocol, to: &mut Protocol) {
        let long_text = "Grüße, 世界! ".repeat(2000);
        let binary_data: Vec<u8> = (0..70_000u32).map(|i| (i * 31 % 251) as u8).collect();
        let mut wire = Vec::new();
        from.encode_message(MessageKind::Text, b"", &mut wire)
            .unwrap();
        from.encode_message(MessageKind::Text, b"hi", &mut wire)
            .unwrap();
        from.encode_message(MessageKind::Text, long_text.as_bytes(), &mut wire)
            .unwrap();
        from.encode_message(MessageKind::Binary, &binary_data, &mut wire)
            .unwrap();
        from.encode_fragment(MessageKind::Text, "Grü".as_bytes(), true, false, &mut wire)
            .unwrap();
        from.encode_ping(b"in between", &mut wire).unwrap();
        from.encode_fragment(MessageKind::Text, b"", false, false, &mut wire)
            .unwrap();
        from.encode_fragment(MessageKind::Text, "ße".as_bytes(), false, true, &mut wire)
            .unwrap();
        from.encode_pong(b"unsolicited", &mut wire).unwrap();
        let (events, replies, result) = run(to, &wire);
        result.unwrap();
        assert_eq!(
            events,
            vec![
                text(""),
                text("hi"),
                text(&long_text),
                binary(&binary_data),
                Owned::Ping(b"in between".to_vec()),
                text("Grüße"),
                Owned::Pong(b"unsolicited".to_vec()),
            ]
        );
        let (events, _, result) = run(from, &replies);
        result.unwrap();
        assert_eq!(events, vec![Owned::Pong(b"in between".to_vec())]);
    }

    #[test]
    fn server_client_round_trip_and_closing_handshake() {
        let mut s = server();
        let mut c = client();
        exchange(&mut c, &mut s);
        exchange(&mut s, &mut c);
        // The client starts the closing handshake.
        let mut wire = Vec::new();
        c.encode_close(1000, "bye", &mut wire).unwrap();
        assert_eq!(c.state(), State::CloseSent);
        assert_eq!(
            c.encode_message(MessageKind::Text, b"late", &mut Vec::new()),
            Err(SendError::Closed)
        );
        let (events, reply, result) = run(&mut s, &wire);
        result.unwrap();
        assert_eq!(events, vec![Owned::Close(Some(1000), "bye".into())]);
        assert_eq!(s.state(), State::Closed);
        assert!(s.wants_tcp_close());
        // The reply echoes the code only.
        assert_eq!(reply, [0x88, 0x02, 0x03, 0xE8]);
        let (events, out, result) = run(&mut c, &reply);
        result.unwrap();
        assert!(out.is_empty());
        assert_eq!(events, vec![Owned::Close(Some(1000), String::new())]);
        assert_eq!(c.state(), State::Closed);
        assert!(
            !c.wants_tcp_close(),
            "clients wait for the server to close TCP"
        );
        assert_eq!(c.encode_ping(b"", &mut Vec::new()), Err(SendError::Closed));
    }

    /// A client-to-server stream covering every frame shape, and its expected events.
    fn mixed_client_stream() -> (Vec<u8>, Vec<Owned>) {
        let long: Vec<u8> = (0..300u32).map(|i| (i % 200) as u8).collect();
        let stream = [
            cframe(0x81, "Hällo".as_bytes()),
            cframe(0x01, "Gr\u{fc}".as_bytes()),
            cframe(0x89, b"ping!"),
            cframe(0x00, "ße ".as_bytes()),
            cframe(0x8A, b""),
            cframe(0x80, "𝄞".as_bytes()),
            cframe(0x82, &long),
            cframe(0x81, b""),
            cframe(0x02, b""),
            cframe(0x00, b""),
            cframe(0x80, b""),
            cframe(0x88, &[0x0F, 0xA0, b'o', b'k']),
        ]
        .concat();
        let events = vec![
            text("Hällo"),
            Owned::Ping(b"ping!".to_vec()),
            Owned::Pong(Vec::new()),
            text("Grüße 𝄞"),
            binary(&long),
            text(""),
            binary(b""),
            Owned::Close(Some(4000), "ok".into()),
        ];
        (stream, events)
    }

    #[test]
    fn stream_split_at_every_byte() {
        let (stream, expected) = mixed_client_stream();
        let (whole_events, whole_out, result) = run(&mut server(), &stream);
        result.unwrap();
        assert_eq!(whole_events, expected);
        for split in 0..=stream.len() {
            let (events, out) = run_split(&mut server(), &stream, split);
            assert_eq!(events, expected, "split at {split}");
            assert_eq!(out, whole_out, "split at {split}");
        }
        // And one byte at a time.
        let mut s = server();
        let mut events = Vec::new();
        let mut out = Vec::new();
        for byte in &stream {
            s.feed(std::slice::from_ref(byte), &mut out, &mut |e| {
                events.push(Owned::from(e))
            })
            .unwrap();
        }
        assert_eq!(events, expected);
        assert_eq!(out, whole_out);
        // The close reply echoes 4000.
        assert_eq!(&out[out.len() - 4..], [0x88, 0x02, 0x0F, 0xA0]);
    }

    #[test]
    fn client_stream_split_at_every_byte_with_zero_copy_path() {
        let stream = [
            sframe(0x81, b"one"),
            sframe(0x82, &[1, 2, 3]),
            sframe(0x01, b"t"),
            sframe(0x80, b"wo"),
            sframe(0x81, "µ".as_bytes()),
        ]
        .concat();
        let expected = vec![text("one"), binary(&[1, 2, 3]), text("two"), text("µ")];
        for split in 0..=stream.len() {
            let (events, _) = run_split(&mut client(), &stream, split);
            assert_eq!(events, expected, "split at {split}");
        }
    }

    #[test]
    fn unfragmented_unmasked_messages_are_borrowed_from_the_input() {
        let input = sframe(0x82, b"payload");
        let mut c = client();
        let mut pointer = std::ptr::null();
        c.feed(&input, &mut Vec::new(), &mut |e| {
            if let Event::Message { data, .. } = e {
                pointer = data.as_ptr();
            }
        })
        .unwrap();
        assert_eq!(pointer, input[2..].as_ptr());
        assert!(c.rx.msg_buf.capacity() == 0, "nothing was buffered");
    }

    #[test]
    fn steady_state_reuses_the_message_buffer() {
        let mut s = server();
        let message = cframe(0x82, &[7u8; 1000]);
        run(&mut s, &message).2.unwrap();
        let (pointer, capacity) = (s.rx.msg_buf.as_ptr(), s.rx.msg_buf.capacity());
        for _ in 0..100 {
            let (events, _, result) = run(&mut s, &message);
            result.unwrap();
            assert_eq!(events.len(), 1);
        }
        assert_eq!(s.rx.msg_buf.as_ptr(), pointer);
        assert_eq!(s.rx.msg_buf.capacity(), capacity);
    }

    #[test]
    fn large_message_buffer_shrinks_back() {
        let mut s = server();
        run(&mut s, &cframe(0x82, &vec![1u8; 1 << 20])).2.unwrap();
        assert!(s.rx.msg_buf.capacity() <= Config::default().retained_buffer_capacity);
    }

    #[test]
    fn sender_in_callback_echoes_in_order() {
        let mut s = server();
        let input = [
            cframe(0x81, b"echo me"),
            cframe(0x89, b"p"),
            cframe(0x82, b"\x01"),
        ]
        .concat();
        let mut out = Vec::new();
        s.feed_with_sender(&input, &mut out, &mut |event, sender| {
            if let Event::Message { kind, data } = event {
                sender.encode_message(kind, data).unwrap();
            }
        })
        .unwrap();
        assert_eq!(
            decode_as(Role::Client, &out),
            vec![text("echo me"), Owned::Pong(b"p".to_vec()), binary(b"\x01")]
        );
    }

    #[test]
    fn masking_is_enforced_per_role() {
        assert_fails(server(), &sframe(0x81, b"unmasked"), 1002);
        assert_fails(client(), &cframe(0x81, b"masked"), 1002);
    }

    #[test]
    fn reserved_bits_and_opcodes_fail_with_1002() {
        for b0 in [0xC1, 0xA1, 0x91, 0xF1, 0xC9] {
            assert_fails(server(), &cframe(b0, b"x"), 1002);
        }
        for opcode in [3u8, 4, 5, 6, 7, 0xB, 0xC, 0xD, 0xE, 0xF] {
            assert_fails(server(), &cframe(0x80 | opcode, b""), 1002);
        }
    }

    #[test]
    fn control_frame_rules() {
        assert_fails(server(), &cframe(0x89, &[b'a'; 126]), 1002);
        assert_fails(server(), &cframe(0x09, b"frag"), 1002);
        assert_fails(server(), &cframe(0x88, &[0x03]), 1002);
        // 125 bytes is fine.
        let (events, out, result) = run(&mut server(), &cframe(0x89, &[b'a'; 125]));
        result.unwrap();
        assert_eq!(events, vec![Owned::Ping(vec![b'a'; 125])]);
        assert_eq!(
            decode_as(Role::Client, &out),
            vec![Owned::Pong(vec![b'a'; 125])]
        );
    }

    #[test]
    fn fragmentation_order_is_enforced() {
        assert_fails(server(), &cframe(0x80, b"orphan"), 1002);
        assert_fails(server(), &cframe(0x00, b"orphan"), 1002);
        let events = assert_fails(
            server(),
            &[cframe(0x01, b"a"), cframe(0x81, b"b")].concat(),
            1002,
        );
        assert!(events.is_empty());
        assert_fails(
            server(),
            &[cframe(0x02, b"a"), cframe(0x02, b"b")].concat(),
            1002,
        );
    }

    #[test]
    fn text_must_be_utf8() {
        assert_fails(
            server(),
            &cframe(0x81, b"\xCE\xBA\xE1\xBD\xB9\xCF\x83\xED\xA0\x80"),
            1007,
        );
        // Cut short at the end of the message.
        assert_fails(server(), &cframe(0x81, b"ok\xE2\x82"), 1007);
        assert_fails(
            server(),
            &[cframe(0x01, b"ok\xE2"), cframe(0x80, b"\x82")].concat(),
            1007,
        );
        // A sequence split across fragments is fine.
        let (events, _, result) = run(
            &mut server(),
            &[cframe(0x01, b"\xE2\x82"), cframe(0x80, b"\xAC")].concat(),
        );
        result.unwrap();
        assert_eq!(events, vec![text("€")]);
        // Binary is not validated.
        assert!(run(&mut server(), &cframe(0x82, b"\xFF")).2.is_ok());
        // Zero-copy path validates too.
        assert_fails(client(), &sframe(0x81, b"\xFF"), 1007);
    }

    #[test]
    fn invalid_utf8_fails_fast_within_a_frame_and_a_fragment() {
        // Autobahn 6.4.x: the frame is announced as 20 bytes, but the invalid bytes arrive
        // first; the error must come before the rest of the frame.
        let frame = cframe(0x81, b"\xCE\xBA\xF4\x90\x80\x80 and the rest.");
        let mut s = server();
        let (_, out, result) = run(&mut s, &frame[..6 + 4]);
        assert_eq!(result.unwrap_err().code, CloseCode::InvalidPayload);
        assert!(!out.is_empty());
        // In a fragmented message, the first bad fragment fails it.
        let mut s = server();
        let (_, _, result) = run(
            &mut s,
            &[cframe(0x01, b"ok"), cframe(0x00, b"\xC0")].concat(),
        );
        assert_eq!(result.unwrap_err().code, CloseCode::InvalidPayload);
    }

    #[test]
    fn size_limits_fail_with_1009_on_header_arrival() {
        let small = Config {
            max_message_size: 100,
            max_frame_size: 80,
            ..Config::default()
        };
        // Only the header is fed: the limit applies before any payload is buffered.
        let frame = cframe(0x82, &[0u8; 101]);
        let mut s = endpoint(
            Role::Server,
            Config {
                max_frame_size: 1000,
                ..small
            },
        );
        let (_, _, result) = run(&mut s, &frame[..8]);
        assert_eq!(result.unwrap_err().code, CloseCode::TooBig);
        assert!(s.rx.msg_buf.capacity() == 0);
        assert_fails(
            endpoint(Role::Server, small),
            &cframe(0x82, &[0u8; 81]),
            1009,
        );
        assert_fails(
            endpoint(Role::Server, small),
            &[cframe(0x02, &[0u8; 60]), cframe(0x80, &[0u8; 41])].concat(),
            1009,
        );
        let (events, _, result) = run(
            &mut endpoint(Role::Server, small),
            &[cframe(0x02, &[0u8; 60]), cframe(0x80, &[0u8; 40])].concat(),
        );
        result.unwrap();
        assert_eq!(events, vec![binary(&[0u8; 100])]);
    }

    #[test]
    fn length_with_top_bit_fails_with_1002() {
        let mut input = vec![0x82, 0xFF, 0x80, 0, 0, 0, 0, 0, 0, 0];
        input.extend_from_slice(&[1, 2, 3, 4]);
        assert_fails(server(), &input, 1002);
    }

    #[test]
    fn close_payload_validation() {
        assert_fails(server(), &cframe(0x88, &1005u16.to_be_bytes()), 1002);
        assert_fails(server(), &cframe(0x88, &999u16.to_be_bytes()), 1002);
        assert_fails(server(), &cframe(0x88, &[0x03, 0xE8, 0xFF]), 1007);
        for code in [1000u16, 1001, 1003, 1007, 1011, 3000, 4999] {
            let (events, out, result) = run(&mut server(), &cframe(0x88, &code.to_be_bytes()));
            result.unwrap();
            assert_eq!(events, vec![Owned::Close(Some(code), String::new())]);
            let mut expected = vec![0x88, 0x02];
            expected.extend_from_slice(&code.to_be_bytes());
            assert_eq!(out, expected);
        }
    }

    #[test]
    fn empty_close_gets_empty_close() {
        let (events, out, result) = run(&mut server(), &cframe(0x88, b""));
        result.unwrap();
        assert_eq!(events, vec![Owned::Close(None, String::new())]);
        assert_eq!(out, [0x88, 0x00]);
    }

    #[test]
    fn nothing_is_accepted_after_a_close() {
        let mut s = server();
        let input = [cframe(0x88, b""), cframe(0x81, b"after"), cframe(0x89, b"")].concat();
        let (events, out, result) = run(&mut s, &input);
        result.unwrap();
        assert_eq!(events, vec![Owned::Close(None, String::new())]);
        assert_eq!(out, [0x88, 0x00]);
        // Even garbage is ignored now.
        let (events, out, result) = run(&mut s, &[0xFF; 20]);
        assert!(result.is_ok() && events.is_empty() && out.is_empty());
    }

    #[test]
    fn close_in_the_middle_of_a_fragmented_message() {
        // Autobahn 7.1.5: the Close is answered normally, the partial message dropped.
        let (events, out, result) = run(
            &mut server(),
            &[cframe(0x01, b"frag"), cframe(0x88, &[0x03, 0xE8])].concat(),
        );
        result.unwrap();
        assert_eq!(events, vec![Owned::Close(Some(1000), String::new())]);
        assert_eq!(out, [0x88, 0x02, 0x03, 0xE8]);
    }

    #[test]
    fn after_sending_close_data_is_ignored_until_the_peers_close() {
        let mut s = server();
        let mut out = Vec::new();
        s.encode_close(1001, "going away", &mut out).unwrap();
        assert_eq!(
            decode_as(Role::Client, &out),
            vec![Owned::Close(Some(1001), "going away".into())]
        );
        let input = [
            cframe(0x81, b"ignored"),
            cframe(0x01, b"frag"),
            cframe(0x89, b"no pong now"),
            cframe(0x80, b"ment"),
            cframe(0x88, &[0x03, 0xE9]),
        ]
        .concat();
        let (events, out, result) = run(&mut s, &input);
        result.unwrap();
        assert_eq!(
            events,
            vec![
                Owned::Ping(b"no pong now".to_vec()),
                Owned::Close(Some(1001), String::new())
            ]
        );
        assert!(out.is_empty(), "no pong or second close after our Close");
        assert_eq!(s.state(), State::Closed);
        assert!(s.wants_tcp_close());
    }

    #[test]
    fn framing_errors_after_our_close_send_no_second_close() {
        let mut s = server();
        s.encode_close(1000, "", &mut Vec::new()).unwrap();
        let (_, out, result) = run(&mut s, &cframe(0x83, b""));
        assert_eq!(result.unwrap_err().code, CloseCode::Protocol);
        assert!(out.is_empty());
        assert_eq!(s.state(), State::Closed);
    }

    #[test]
    fn send_errors() {
        let mut s = server();
        let mut out = Vec::new();
        assert_eq!(
            s.encode_ping(&[0; 126], &mut out),
            Err(SendError::ControlTooLong)
        );
        assert_eq!(
            s.encode_pong(&[0; 126], &mut out),
            Err(SendError::ControlTooLong)
        );
        assert_eq!(
            s.encode_close(1005, "", &mut out),
            Err(SendError::InvalidCloseCode(1005))
        );
        assert_eq!(
            s.encode_close(1000, &"x".repeat(124), &mut out),
            Err(SendError::ControlTooLong)
        );
        assert_eq!(
            s.encode_fragment(MessageKind::Text, b"", false, true, &mut out),
            Err(SendError::FragmentSequence)
        );
        s.encode_fragment(MessageKind::Text, b"a", true, false, &mut out)
            .unwrap();
        assert_eq!(
            s.encode_fragment(MessageKind::Text, b"b", true, false, &mut out),
            Err(SendError::FragmentSequence)
        );
        assert_eq!(
            s.encode_fragment(MessageKind::Binary, b"b", false, true, &mut out),
            Err(SendError::FragmentSequence)
        );
        assert_eq!(
            s.encode_message(MessageKind::Text, b"c", &mut out),
            Err(SendError::FragmentSequence)
        );
        s.encode_ping(b"allowed in between", &mut out).unwrap();
        s.encode_fragment(MessageKind::Text, b"b", false, true, &mut out)
            .unwrap();
        assert_eq!(
            decode_as(Role::Client, &out),
            vec![Owned::Ping(b"allowed in between".to_vec()), text("ab")]
        );
        s.encode_close(1000, &"x".repeat(123), &mut out).unwrap();
        assert_eq!(s.encode_close(1000, "", &mut out), Err(SendError::Closed));
    }

    #[test]
    fn many_tiny_fragments() {
        // Autobahn 9.3.x shape: 1 MiB of text in 64-byte fragments.
        let data = "0123456789abcdef".repeat(1 << 16);
        let mut wire = Vec::new();
        let mut c = client();
        let chunks: Vec<&[u8]> = data.as_bytes().chunks(64).collect();
        for (i, chunk) in chunks.iter().enumerate() {
            c.encode_fragment(
                MessageKind::Text,
                chunk,
                i == 0,
                i + 1 == chunks.len(),
                &mut wire,
            )
            .unwrap();
        }
        let mut s = server();
        let mut got = 0;
        for read in wire.chunks(4096) {
            s.feed(read, &mut Vec::new(), &mut |e| {
                if let Event::Message { data: d, kind } = e {
                    assert_eq!(kind, MessageKind::Text);
                    assert_eq!(d, data.as_bytes());
                    got += 1;
                }
            })
            .unwrap();
        }
        assert_eq!(got, 1);
    }

    // --- permessage-deflate ---

    /// Runs the full negotiation: client offer -> header -> server -> header -> client.
    fn negotiate(
        client_config: DeflateConfig,
        server_offer: Option<&str>,
        server_config: DeflateConfig,
    ) -> (Protocol, Protocol) {
        let offer_header = match server_offer {
            Some(header) => header.to_owned(),
            None => format_extensions(&[client_offer(&client_config)]),
        };
        let (server_params, response) =
            negotiate_server(&parse_extensions(&offer_header).unwrap(), &server_config)
                .expect("offer accepted");
        let response_header = format_extensions(&[response]);
        let client_params =
            negotiate_client(&parse_extensions(&response_header).unwrap(), &client_config)
                .unwrap()
                .expect("response accepted");
        let s = endpoint(
            Role::Server,
            Config {
                deflate: Some(server_params),
                ..Config::default()
            },
        );
        let c = endpoint(
            Role::Client,
            Config {
                deflate: Some(client_params),
                ..Config::default()
            },
        );
        (s, c)
    }

    fn json_like(len: usize) -> String {
        let mut out = String::new();
        let mut i = 0u32;
        while out.len() < len {
            out.push_str(&format!(
                "{{\"id\":{i},\"name\":\"item-{}\",\"ok\":true}},",
                i % 17
            ));
            i += 1;
        }
        out.truncate(len);
        out
    }

    /// Sends messages both ways and checks they arrive intact and with RSV1 set.
    fn deflate_round_trip(s: &mut Protocol, c: &mut Protocol) {
        deflate_one_way(c, s);
        deflate_one_way(s, c);
    }

    fn deflate_one_way(from: &mut Protocol, to: &mut Protocol) {
        for len in [0usize, 1, 16, 300, 5000, 70_000] {
            let body = json_like(len);
            for _ in 0..2 {
                let mut wire = Vec::new();
                from.encode_message(MessageKind::Text, body.as_bytes(), &mut wire)
                    .unwrap();
                if len >= 300 {
                    assert_eq!(wire[0], 0xC1, "RSV1 set on compressed text");
                    assert!(wire.len() < len, "compressed");
                }
                let (events, _, result) = run(to, &wire);
                result.unwrap();
                assert_eq!(events, vec![text(&body)]);
            }
        }
        // A fragmented compressed message with control frames in between.
        let body = json_like(10_000);
        let mut wire = Vec::new();
        let parts: Vec<&[u8]> = body.as_bytes().chunks(3000).collect();
        for (i, part) in parts.iter().enumerate() {
            from.encode_fragment(
                MessageKind::Text,
                part,
                i == 0,
                i + 1 == parts.len(),
                &mut wire,
            )
            .unwrap();
            from.encode_ping(b"x", &mut wire).unwrap();
        }
        let (events, _, result) = run(to, &wire);
        result.unwrap();
        let mut expected = vec![Owned::Ping(b"x".to_vec()); parts.len()];
        expected.insert(parts.len() - 1, text(&body));
        assert_eq!(events, expected);
        // Every split point of a compressed message (each iteration sends a new message, so
        // both contexts stay in step).
        let body = json_like(200);
        for split in 0..=body.len() {
            let mut wire = Vec::new();
            from.encode_message(MessageKind::Binary, body.as_bytes(), &mut wire)
                .unwrap();
            let split = split.min(wire.len());
            let (events, _) = run_split(to, &wire, split);
            assert_eq!(events, vec![binary(body.as_bytes())], "split {split}");
        }
    }

    #[test]
    fn deflate_default_negotiation_round_trip() {
        let (mut s, mut c) = negotiate(DeflateConfig::default(), None, DeflateConfig::default());
        assert!(s.is_compressed() && c.is_compressed());
        deflate_round_trip(&mut s, &mut c);
    }

    #[test]
    fn deflate_autobahn_offers_round_trip() {
        // The offers of Autobahn 13.1-13.7 (its client), each accepted by our server.
        for offer in [
            "permessage-deflate; client_no_context_takeover; client_max_window_bits",
            "permessage-deflate; client_no_context_takeover; client_max_window_bits; server_no_context_takeover",
            "permessage-deflate; client_no_context_takeover; client_max_window_bits; server_max_window_bits=8",
            "permessage-deflate; client_no_context_takeover; client_max_window_bits; server_max_window_bits=15",
            "permessage-deflate; client_no_context_takeover; client_max_window_bits; server_no_context_takeover; server_max_window_bits=8",
            "permessage-deflate; client_no_context_takeover; client_max_window_bits; server_no_context_takeover; server_max_window_bits=15",
            "permessage-deflate; server_no_context_takeover; server_max_window_bits=9, permessage-deflate; server_no_context_takeover, permessage-deflate",
        ] {
            let (mut s, mut c) = negotiate(DeflateConfig::default(), Some(offer), DeflateConfig::default());
            deflate_round_trip(&mut s, &mut c);
        }
    }

    #[test]
    fn deflate_client_window_and_context_options_round_trip() {
        // Responses like Autobahn's server sends in 13.2-13.6 (client side).
        for response in [
            "permessage-deflate; client_no_context_takeover",
            "permessage-deflate; client_max_window_bits=8",
            "permessage-deflate; client_max_window_bits=15",
            "permessage-deflate; client_no_context_takeover; client_max_window_bits=8",
            "permessage-deflate; client_no_context_takeover; client_max_window_bits=15",
            "permessage-deflate; server_no_context_takeover; server_max_window_bits=10",
        ] {
            let client_params = negotiate_client(
                &parse_extensions(response).unwrap(),
                &DeflateConfig::default(),
            )
            .unwrap()
            .unwrap();
            let server_params = crate::ws::deflate::Params {
                client_no_context_takeover: client_params.client_no_context_takeover,
                client_max_window_bits: client_params.client_max_window_bits,
                server_no_context_takeover: client_params.server_no_context_takeover,
                server_max_window_bits: client_params.server_max_window_bits,
                level: 6,
            };
            let mut s = endpoint(
                Role::Server,
                Config {
                    deflate: Some(server_params),
                    ..Config::default()
                },
            );
            let mut c = endpoint(
                Role::Client,
                Config {
                    deflate: Some(client_params),
                    ..Config::default()
                },
            );
            deflate_round_trip(&mut s, &mut c);
        }
        // Local preferences for no context takeover on both sides.
        let both = DeflateConfig {
            level: 9,
            no_context_takeover: true,
            request_peer_no_context_takeover: true,
        };
        let (mut s, mut c) = negotiate(both, None, both);
        deflate_round_trip(&mut s, &mut c);
    }

    #[test]
    fn context_takeover_across_messages() {
        let body = json_like(2000);
        let sizes = |no_context_takeover: bool| {
            let config = DeflateConfig {
                no_context_takeover,
                ..DeflateConfig::default()
            };
            let (mut s, mut c) = negotiate(DeflateConfig::default(), None, config);
            let mut sizes = Vec::new();
            for _ in 0..3 {
                let mut wire = Vec::new();
                s.encode_message(MessageKind::Text, body.as_bytes(), &mut wire)
                    .unwrap();
                sizes.push(wire.len());
                let (events, _, result) = run(&mut c, &wire);
                result.unwrap();
                assert_eq!(events, vec![text(&body)]);
            }
            sizes
        };
        let with = sizes(false);
        assert!(
            with[1] * 2 < with[0],
            "later messages reuse the window: {with:?}"
        );
        let without = sizes(true);
        assert_eq!(without[0], without[1], "{without:?}");
        assert_eq!(without[1], without[2], "{without:?}");
    }

    #[test]
    fn incompressible_data_is_sent_raw_only_when_stateless() {
        let mut state = 0x2545_F491_4F6C_DD1Du64;
        let noise: Vec<u8> = (0..500)
            .map(|_| {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                (state >> 32) as u8
            })
            .collect();
        let stateless = DeflateConfig {
            no_context_takeover: true,
            ..DeflateConfig::default()
        };
        let (mut s, mut c) = negotiate(DeflateConfig::default(), None, stateless);
        let mut wire = Vec::new();
        s.encode_message(MessageKind::Binary, &noise, &mut wire)
            .unwrap();
        assert_eq!(wire[0], 0x82, "sent uncompressed");
        assert_eq!(run(&mut c, &wire).0, vec![binary(&noise)]);
        let (mut s, mut c) = negotiate(DeflateConfig::default(), None, DeflateConfig::default());
        let mut wire = Vec::new();
        s.encode_message(MessageKind::Binary, &noise, &mut wire)
            .unwrap();
        assert_eq!(wire[0], 0xC2, "context takeover: must stay compressed");
        assert_eq!(run(&mut c, &wire).0, vec![binary(&noise)]);
    }

    fn deflate_client() -> Protocol {
        endpoint(
            Role::Client,
            Config {
                deflate: Some(Default::default()),
                ..Config::default()
            },
        )
    }

    fn deflate_server(max_message_size: usize) -> Protocol {
        endpoint(
            Role::Server,
            Config {
                deflate: Some(Default::default()),
                max_message_size,
                ..Config::default()
            },
        )
    }

    #[test]
    fn rfc7692_7_2_3_examples_received_by_client() {
        let hello = text("Hello");
        let cases: Vec<(Vec<u8>, Vec<Owned>)> = vec![
            // 7.2.3.1 single frame and fragmented.
            (
                vec![0xc1, 0x07, 0xf2, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00],
                vec![hello.clone()],
            ),
            (
                vec![
                    0x41, 0x03, 0xf2, 0x48, 0xcd, 0x80, 0x04, 0xc9, 0xc9, 0x07, 0x00,
                ],
                vec![hello.clone()],
            ),
            // 7.2.3.2 sharing the LZ77 window across two messages.
            (
                vec![
                    0xc1, 0x07, 0xf2, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00, 0xc1, 0x05, 0xf2, 0x00,
                    0x11, 0x00, 0x00,
                ],
                vec![hello.clone(), hello.clone()],
            ),
            // 7.2.3.3 stored block.
            (
                vec![
                    0xc1, 0x0b, 0x00, 0x05, 0x00, 0xfa, 0xff, 0x48, 0x65, 0x6c, 0x6c, 0x6f, 0x00,
                ],
                vec![hello.clone()],
            ),
            // 7.2.3.4 BFINAL set, twice in a row.
            (
                vec![
                    0xc1, 0x08, 0xf3, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00, 0x00, 0xc1, 0x08, 0xf3,
                    0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00, 0x00,
                ],
                vec![hello.clone(), hello.clone()],
            ),
            // 7.2.3.5 two DEFLATE blocks in one message.
            (
                vec![
                    0xc1, 0x0d, 0xf2, 0x48, 0x05, 0x00, 0x00, 0x00, 0xff, 0xff, 0xca, 0xc9, 0xc9,
                    0x07, 0x00,
                ],
                vec![hello.clone()],
            ),
            // 7.2.3.6 empty message as 0x00, and uncompressed message between.
            (
                vec![0xc1, 0x01, 0x00, 0x81, 0x02, b'h', b'i'],
                vec![text(""), text("hi")],
            ),
        ];
        for (input, expected) in cases {
            for split in 0..=input.len() {
                let (events, _) = run_split(&mut deflate_client(), &input, split);
                assert_eq!(events, expected, "{input:x?} split {split}");
            }
        }
    }

    #[test]
    fn deflate_framing_violations() {
        // RSV1 on a continuation or a control frame.
        assert_fails(
            deflate_server(1 << 20),
            &[cframe(0x41, &[0xf2, 0x48]), cframe(0xC0, &[0xcd])].concat(),
            1002,
        );
        assert_fails(deflate_server(1 << 20), &cframe(0xC9, b""), 1002);
        // Corrupt compressed data.
        assert_fails(
            deflate_server(1 << 20),
            &cframe(0xC2, &[0xff, 0xff, 0xff]),
            1007,
        );
        // Inflated text that is not UTF-8 (a stored block holding 0xFF).
        assert_fails(
            deflate_server(1 << 20),
            &cframe(0xC1, &[0x00, 0x01, 0x00, 0xfe, 0xff, 0xff]),
            1007,
        );
    }

    /// Deflates with a sync flush (keeping the 00 00 ff ff tail).
    fn deflate_piece(deflate: &mut flate2::Compress, data: &[u8]) -> Vec<u8> {
        let mut out = Vec::with_capacity(data.len() + 64);
        loop {
            let before = deflate.total_in();
            deflate
                .compress_vec(data, &mut out, flate2::FlushCompress::Sync)
                .unwrap();
            assert_eq!(deflate.total_in() - before, data.len() as u64);
            if out.len() < out.capacity() {
                return out;
            }
            out.reserve(1024);
        }
    }

    #[test]
    fn compression_bomb_is_stopped_with_1009_and_bounded_memory() {
        // 1 GiB of zeros as a fragmented compressed message: a first MiB, then the same
        // 1 KiB "another MiB of zeros" block 1023 times. Built frame by frame; ~1 MiB total.
        let mut deflate = flate2::Compress::new(flate2::Compression::best(), false);
        let zeros = vec![0u8; 1 << 20];
        let first = deflate_piece(&mut deflate, &zeros);
        let repeat = deflate_piece(&mut deflate, &zeros);
        assert!(
            first.len() < 2048 && repeat.len() < 2048,
            "{} {}",
            first.len(),
            repeat.len()
        );
        // Sanity: the pieces really inflate to MiBs of zeros.
        let mut check = crate::ws::deflate::Decompressor::new();
        let mut out = Vec::new();
        for piece in [&first, &repeat, &repeat] {
            check.decompress(piece, &mut out, 4 << 20).unwrap();
        }
        assert_eq!(out.len(), 3 << 20);
        assert!(out.iter().all(|&b| b == 0));

        let max = 8 << 20;
        let mut s = deflate_server(max);
        let mut fed_mib = 0;
        let mut failure = None;
        for i in 0..1024 {
            let frame = if i == 0 {
                cframe(0x42, &first)
            } else {
                cframe(if i == 1023 { 0x80 } else { 0x00 }, &repeat)
            };
            let mut out = Vec::new();
            match s.feed(&frame, &mut out, &mut |_| panic!("no message expected")) {
                Ok(()) => fed_mib += 1,
                Err(error) => {
                    failure = Some((error, out));
                    break;
                }
            }
            assert!(s.rx.msg_buf.capacity() <= max + 1);
        }
        let (error, out) = failure.expect("the bomb must be refused");
        assert_eq!(error.code, CloseCode::TooBig);
        assert_eq!(fed_mib, 8, "stopped as soon as the output passed the limit");
        assert!(s.rx.msg_buf.capacity() <= max + 1, "memory stays bounded");
        assert_eq!(
            decode_as(Role::Client, &out),
            vec![Owned::Close(Some(1009), error.reason.to_owned())]
        );
    }

    #[test]
    fn compressed_message_of_exactly_the_limit_is_accepted() {
        let max = 100_000;
        let (_, mut c) = negotiate(DeflateConfig::default(), None, DeflateConfig::default());
        let mut s = deflate_server(max);
        let mut wire = Vec::new();
        c.encode_message(MessageKind::Binary, &vec![5u8; max], &mut wire)
            .unwrap();
        let (events, _, result) = run(&mut s, &wire);
        result.unwrap();
        assert_eq!(events, vec![binary(&vec![5u8; max])]);
        let mut wire = Vec::new();
        c.encode_message(MessageKind::Binary, &vec![5u8; max + 1], &mut wire)
            .unwrap();
        assert_eq!(run(&mut s, &wire).2.unwrap_err().code, CloseCode::TooBig);
    }

    #[test]
    fn compressed_stream_split_at_every_byte() {
        // Client-to-server compressed traffic with context takeover, split everywhere.
        let (_, mut c) = negotiate(DeflateConfig::default(), None, DeflateConfig::default());
        let mut wire = Vec::new();
        let bodies = [json_like(500), json_like(500), json_like(40), String::new()];
        for body in &bodies {
            c.encode_message(MessageKind::Text, body.as_bytes(), &mut wire)
                .unwrap();
        }
        c.encode_fragment(MessageKind::Binary, b"abcabcabc", true, false, &mut wire)
            .unwrap();
        c.encode_ping(b"p", &mut wire).unwrap();
        c.encode_fragment(MessageKind::Binary, b"abcabc", false, true, &mut wire)
            .unwrap();
        let mut expected: Vec<Owned> = bodies.iter().map(|b| text(b)).collect();
        expected.push(Owned::Ping(b"p".to_vec()));
        expected.push(binary(b"abcabcabcabcabc"));
        for split in 0..=wire.len() {
            let (events, _) = run_split(&mut deflate_server(1 << 20), &wire, split);
            assert_eq!(events, expected, "split {split}");
        }
    }

    #[test]
    fn failure_close_reason_is_truncated_on_a_char_boundary() {
        let (payload, len) = close_payload(1000, &"é".repeat(100));
        assert_eq!(len, 2 + 122);
        assert!(std::str::from_utf8(&payload[2..len]).is_ok());
    }
}

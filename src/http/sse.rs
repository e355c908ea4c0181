//! Server-sent events (the WHATWG `text/event-stream` format) over a streaming response.

use super::request::Request;
use super::server_connection::{Flow, SendError, ServerConnection, ServerConnectionPtr};
use super::status::StatusCode;

/// One event. Only `data` is required.
#[derive(Debug, Clone, Copy, Default)]
pub struct Event<'a> {
    /// The event type (`event:` field); the client's `onmessage` sees untyped events.
    pub event: Option<&'a str>,
    /// The event id (`id:` field), echoed back by a reconnecting client in `Last-Event-ID`.
    pub id: Option<&'a str>,
    /// The payload; line breaks become several `data:` lines, joined again by the client.
    pub data: &'a str,
    /// The reconnection delay the client should use, in milliseconds (`retry:` field).
    pub retry: Option<u64>,
}

/// Appends `ev` in wire format. Line breaks in `event` and `id` are removed (they would end the
/// field early); `data` is split on CRLF, CR and LF.
pub fn format_event(out: &mut Vec<u8>, ev: &Event<'_>) {
    fn field(out: &mut Vec<u8>, name: &str, value: &str) {
        out.extend_from_slice(name.as_bytes());
        out.extend_from_slice(b": ");
        out.extend(
            value
                .bytes()
                .filter(|&b| b != b'\r' && b != b'\n' && b != 0),
        );
        out.push(b'\n');
    }
    if let Some(e) = ev.event {
        field(out, "event", e);
    }
    if let Some(id) = ev.id {
        field(out, "id", id);
    }
    if let Some(ms) = ev.retry {
        out.extend_from_slice(b"retry: ");
        out.extend_from_slice(ms.to_string().as_bytes());
        out.push(b'\n');
    }
    let data = ev.data.replace("\r\n", "\n").replace('\r', "\n");
    for line in data.split('\n') {
        out.extend_from_slice(b"data: ");
        out.extend_from_slice(line.as_bytes());
        out.push(b'\n');
    }
    out.push(b'\n');
}

/// The `Last-Event-ID` a reconnecting client sent, if any.
pub fn last_event_id(req: &Request) -> Option<&str> {
    req.header("last-event-id")
}

/// A server-sent event stream: a chunked `text/event-stream` response that stays open until
/// [`EventStream::end`] (or the client leaves). Streams are exempt from the idle timeout.
pub struct EventStream {
    conn: ServerConnectionPtr,
    scratch: std::cell::RefCell<Vec<u8>>,
}

impl EventStream {
    /// Sends the head (`200`, `text/event-stream`, `Cache-Control: no-cache`) and returns the
    /// stream, which keeps the request alive until it is ended or dropped.
    pub fn start(conn: &ServerConnection) -> Result<EventStream, SendError> {
        let resp = conn.response();
        resp.set_status(StatusCode::OK)
            .set_content_type("text/event-stream")
            .set_chunked_transfer_encoding(true);
        resp.set("Cache-Control", "no-cache");
        conn.send_header()?;
        Ok(EventStream {
            conn: conn.defer(),
            scratch: std::cell::RefCell::new(Vec::new()),
        })
    }

    /// The request behind the stream.
    pub fn connection(&self) -> &ServerConnection {
        &self.conn
    }

    /// Sends one event.
    pub fn send(&self, ev: &Event<'_>) -> Result<Flow, SendError> {
        let mut buf = self.scratch.borrow_mut();
        buf.clear();
        format_event(&mut buf, ev);
        self.conn.send(&buf)
    }

    /// Sends an untyped event with `data` only.
    pub fn data(&self, data: &str) -> Result<Flow, SendError> {
        self.send(&Event {
            data,
            ..Event::default()
        })
    }

    /// Sends a comment line: ignored by clients, it keeps proxies and the connection alive.
    pub fn comment(&self, text: &str) -> Result<Flow, SendError> {
        let mut line = Vec::with_capacity(text.len() + 4);
        line.extend_from_slice(b": ");
        line.extend(text.bytes().filter(|&b| b != b'\r' && b != b'\n'));
        line.extend_from_slice(b"\n\n");
        self.conn.send(&line)
    }

    /// Ends the stream (the last chunk) so the client sees a clean end.
    pub fn end(self) -> Result<(), SendError> {
        self.conn.complete()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wire_format() {
        let mut out = Vec::new();
        format_event(
            &mut out,
            &Event {
                event: Some("up\ndate"),
                id: Some("7"),
                data: "a\r\nb\rc\nd",
                retry: Some(1500),
            },
        );
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "event: update\nid: 7\nretry: 1500\ndata: a\ndata: b\ndata: c\ndata: d\n\n"
        );
        let mut out = Vec::new();
        format_event(
            &mut out,
            &Event {
                data: "",
                ..Default::default()
            },
        );
        assert_eq!(out, b"data: \n\n");
    }
}

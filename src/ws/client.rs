//! Client side: `ws://` and `wss://` connections.
//!
//! Resolves the host through libuv, connects (TCP, then TLS for `wss://`), sends the upgrade
//! request with a random key, parses the `101` however it is split across reads, verifies
//! `Sec-WebSocket-Accept`, the subprotocol and the extensions, and only then fires `connect`.
//! Sends made before that are queued and flushed right after it. `close` fires exactly once,
//! also when connecting fails (code 1006 with the reason).

use std::cell::{Cell, RefCell};
use std::net::SocketAddr;
use std::rc::{Rc, Weak};
use std::time::Duration;

use super::deflate::{self, DeflateConfig};
use super::handshake;
use super::protocol::{Config, Role};
use super::websocket::{Transport, WebSocket};
use crate::http::{HeadLimits, HeadParser, Method, ResponseHead, StatusCode, Url};
use crate::net::tls::TlsContext;
use crate::net::{Socket, SocketHandler, TcpSocket, TlsSocket};
use crate::uv::{self, Loop, Timer, UvError};

/// How a client connects.
#[derive(Clone)]
pub struct ClientOptions {
    /// Subprotocols to offer, in order of preference.
    pub protocols: Vec<String>,
    /// permessage-deflate offer; `None` offers no compression.
    pub deflate: Option<DeflateConfig>,
    /// Largest message accepted.
    pub max_message_size: usize,
    /// TLS settings for `wss://` (default: system CAs, hostname verification on).
    pub tls: Option<TlsContext>,
    /// Extra request header fields (e.g. `Origin`, `Authorization`).
    pub headers: Vec<(String, String)>,
    /// Time allowed for DNS, TCP, TLS and the upgrade together.
    pub connect_timeout: Duration,
}

impl Default for ClientOptions {
    fn default() -> Self {
        ClientOptions {
            protocols: Vec::new(),
            deflate: Some(DeflateConfig::default()),
            max_message_size: 64 << 20,
            tls: None,
            headers: Vec::new(),
            connect_timeout: Duration::from_secs(30),
        }
    }
}

/// Opens a WebSocket to `url` (`ws://` or `wss://`) on `lp`. Returns at once; attach to the
/// returned socket's `connect`, `message` and `close` signals. Errors in the URL or options are
/// returned here; everything later (DNS, refused connection, bad certificate, refused
/// upgrade) arrives once through `close`, with code 1006 and a reason naming the cause.
pub fn connect(lp: Loop, url: &str, options: ClientOptions) -> Result<Rc<WebSocket>, String> {
    let url = Url::parse(url).map_err(|e| format!("invalid WebSocket URL {url:?}: {e}"))?;
    match url.scheme() {
        "ws" | "wss" | "http" | "https" => {}
        other => return Err(format!("not a WebSocket URL scheme: {other}")),
    }
    let tls = if url.is_tls() {
        Some(match &options.tls {
            Some(ctx) => ctx.clone(),
            None => TlsContext::client()
                .build()
                .map_err(|e| format!("TLS setup: {e}"))?,
        })
    } else {
        None
    };
    let mut random = [0u8; 16];
    uv::fill_random(&mut random).map_err(|e| e.to_string())?;
    let key = handshake::generate_client_key(random);
    let ws = WebSocket::new(
        Role::Client,
        Config {
            max_message_size: options.max_message_size,
            max_frame_size: options.max_message_size,
            ..Config::default()
        },
        None,
    );
    ws.set_connecting(true);
    ws.set_client_loop(lp);
    let driver = Rc::new_cyclic(|me| Driver {
        me: me.clone(),
        lp,
        ws: ws.clone(),
        url: url.clone(),
        options: options.clone(),
        tls,
        key,
        socket: RefCell::new(None),
        connecting: RefCell::new(None),
        parser: RefCell::new(HeadParser::new()),
        head: RefCell::new(ResponseHead::new()),
        inbuf: RefCell::new(Vec::new()),
        open: Cell::new(false),
        done: Cell::new(false),
        timer: RefCell::new(None),
    });
    ws.set_owner(driver.clone());
    driver.start();
    Ok(ws)
}

/// Drives one client connection: connect, handshake, then feed the WebSocket.
struct Driver {
    me: Weak<Driver>,
    lp: Loop,
    ws: Rc<WebSocket>,
    url: Url,
    options: ClientOptions,
    tls: Option<TlsContext>,
    key: String,
    socket: RefCell<Option<Rc<dyn Socket>>>,
    /// The TCP socket while it connects (dropping it would cancel the connect).
    connecting: RefCell<Option<Rc<TcpSocket>>>,
    parser: RefCell<HeadParser>,
    head: RefCell<ResponseHead>,
    inbuf: RefCell<Vec<u8>>,
    open: Cell<bool>,
    done: Cell<bool>,
    timer: RefCell<Option<Timer>>,
}

impl Driver {
    fn start(&self) {
        // One timer: the connect deadline first, then a periodic tick for pings and the
        // closing-handshake timeout.
        if let Ok(timer) = Timer::new(self.lp) {
            let weak = self.me.clone();
            let ms = self.options.connect_timeout.as_millis() as u64;
            let _ = timer.start(ms.max(1), 0, move || {
                if let Some(d) = weak.upgrade() {
                    if !d.open.get() {
                        d.fail(format!("connecting timed out after {ms} ms"));
                    }
                }
            });
            *self.timer.borrow_mut() = Some(timer);
        }
        let weak = self.me.clone();
        let host = self.url.host().to_string();
        let port = self.url.port();
        let name = host.clone();
        let started = uv::dns::resolve(self.lp, &name, port, move |result| {
            let Some(d) = weak.upgrade() else { return };
            match result {
                Ok(addrs) if !addrs.is_empty() => d.connect_to(addrs[0]),
                Ok(_) => d.fail(format!("cannot resolve {host}: no addresses")),
                Err(e) => d.fail(e.to_string()),
            }
        });
        if let Err(e) = started {
            self.fail(e.to_string());
        }
    }

    fn connect_to(&self, addr: SocketAddr) {
        if self.done.get() {
            return;
        }
        let weak = self.me.clone();
        let result = TcpSocket::connect(self.lp, addr, move |r| {
            let Some(d) = weak.upgrade() else { return };
            match r {
                Ok(tcp) => d.connected(tcp),
                Err(e) => d.fail(e.to_string()),
            }
        });
        match result {
            Ok(tcp) => *self.connecting.borrow_mut() = Some(tcp),
            Err(e) => self.fail(format!("connect to {addr}: {e}")),
        }
    }

    fn connected(&self, tcp: Rc<TcpSocket>) {
        self.connecting.borrow_mut().take();
        if self.done.get() {
            tcp.close();
            return;
        }
        let handler: Weak<dyn SocketHandler> = self.me.clone() as Weak<dyn SocketHandler>;
        let socket: Rc<dyn Socket> = match &self.tls {
            None => {
                tcp.set_handler(handler.clone());
                tcp.resume_reading();
                tcp
            }
            Some(ctx) => {
                let weak = self.me.clone();
                let tls = TlsSocket::client(tcp, ctx, self.url.host(), self.url.port(), move |r| {
                    if let (Some(d), Err(e)) = (weak.upgrade(), r) {
                        d.fail(format!("TLS: {e}"));
                    }
                });
                match tls {
                    Ok(t) => {
                        t.set_handler(handler.clone());
                        t
                    }
                    Err(e) => return self.fail(format!("TLS: {e}")),
                }
            }
        };
        *self.socket.borrow_mut() = Some(socket.clone());
        socket.write(self.handshake_request().as_bytes());
    }

    fn handshake_request(&self) -> String {
        let mut req = format!(
            "GET {} HTTP/1.1\r\nHost: {}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
             Sec-WebSocket-Key: {}\r\nSec-WebSocket-Version: 13\r\n",
            self.url.path_and_query(),
            self.url.host_header(),
            self.key
        );
        if !self.options.protocols.is_empty() {
            req.push_str(&format!(
                "Sec-WebSocket-Protocol: {}\r\n",
                self.options.protocols.join(", ")
            ));
        }
        if let Some(cfg) = &self.options.deflate {
            let offer = deflate::client_offer(cfg);
            req.push_str(&format!(
                "Sec-WebSocket-Extensions: {}\r\n",
                handshake::format_extensions(&[offer])
            ));
        }
        for (name, value) in &self.options.headers {
            if !value.contains(['\r', '\n']) {
                req.push_str(&format!("{name}: {value}\r\n"));
            }
        }
        req.push_str(concat!(
            "User-Agent: uvhttp/",
            env!("CARGO_PKG_VERSION"),
            "\r\n\r\n"
        ));
        req
    }

    /// Parses the response head; on a valid 101 switches to the WebSocket protocol.
    fn on_handshake_bytes(&self, data: &[u8]) {
        let mut inbuf = self.inbuf.borrow_mut();
        inbuf.extend_from_slice(data);
        let parsed = {
            let mut head = self.head.borrow_mut();
            self.parser.borrow_mut().parse_response(
                &inbuf,
                &HeadLimits::default(),
                Method::Get,
                &mut head,
            )
        };
        let len = match parsed {
            Ok(None) => return,
            Ok(Some((len, _))) => len,
            Err(e) => {
                drop(inbuf);
                return self.fail(format!("invalid handshake response: {}", e.reason));
            }
        };
        let rest = inbuf.split_off(len);
        drop(inbuf);
        match self.check_response() {
            Ok((config, subprotocol)) => self.open(config, subprotocol, &rest),
            Err(reason) => self.fail(reason),
        }
    }

    fn check_response(&self) -> Result<(Config, Option<String>), String> {
        let head = self.head.borrow();
        if head.status() != StatusCode::SWITCHING_PROTOCOLS {
            return Err(format!(
                "server refused the WebSocket upgrade: {}",
                head.status()
            ));
        }
        let h = head.headers();
        if !h.has_token("upgrade", "websocket") || !h.has_token("connection", "upgrade") {
            return Err("101 response without Upgrade: websocket / Connection: upgrade".into());
        }
        let accept = h.get("sec-websocket-accept").unwrap_or("");
        if !handshake::verify_accept(&self.key, accept.trim()) {
            return Err("wrong Sec-WebSocket-Accept in the server's handshake".into());
        }
        let subprotocol = h
            .get("sec-websocket-protocol")
            .map(|p| p.trim().to_string());
        if let Some(p) = &subprotocol {
            if !self.options.protocols.iter().any(|o| o == p) {
                return Err(format!("server chose a subprotocol we did not offer: {p}"));
            }
        }
        let mut extensions = Vec::new();
        for v in h.get_all("sec-websocket-extensions") {
            let mut e = handshake::parse_extensions(v)
                .map_err(|e| format!("malformed Sec-WebSocket-Extensions: {e}"))?;
            extensions.append(&mut e);
        }
        let deflate = match (&self.options.deflate, extensions.is_empty()) {
            (_, true) => None,
            (None, false) => return Err("server accepted an extension that was not offered".into()),
            (Some(cfg), false) => deflate::negotiate_client(&extensions, cfg)
                .map_err(|e| format!("bad permessage-deflate response: {}", e.reason))?,
        };
        Ok((
            Config {
                max_message_size: self.options.max_message_size,
                max_frame_size: self.options.max_message_size,
                deflate,
                ..Config::default()
            },
            subprotocol,
        ))
    }

    fn open(&self, config: Config, subprotocol: Option<String>, early: &[u8]) {
        let Some(socket) = self.socket.borrow().clone() else {
            return;
        };
        self.open.set(true);
        self.ws.configure(config, subprotocol);
        self.ws.set_transport(Transport::Client(socket));
        // Tick for pings and the closing-handshake timeout from now on.
        if let Some(t) = self.timer.borrow().as_ref() {
            let weak = self.me.clone();
            let lp = self.lp;
            let _ = t.start(250, 250, move || {
                if let Some(d) = weak.upgrade() {
                    d.ws.on_tick(lp.now());
                    if d.ws.is_transport_closed() {
                        // The closing-handshake timeout aborted the socket, which reports
                        // nothing back: release the connection here.
                        d.finish(Some(1006), "closing handshake timed out");
                    }
                }
            });
        }
        self.ws.set_connecting(false);
        self.ws.fire_connect();
        if !early.is_empty() {
            self.ws.on_bytes(early);
        }
    }

    /// Connecting failed: report once, release everything.
    fn fail(&self, reason: String) {
        if self.done.replace(true) {
            return;
        }
        log::debug!("WebSocket client {}: {reason}", self.url);
        if let Some(s) = self.socket.borrow_mut().take() {
            s.close();
        }
        if let Some(s) = self.connecting.borrow_mut().take() {
            s.close();
        }
        self.finish(Some(1006), &reason);
    }

    fn finish(&self, code: Option<u16>, reason: &str) {
        self.done.set(true);
        self.timer.borrow_mut().take();
        self.ws.set_connecting(false);
        self.ws.fire_close(code, reason);
        self.ws.release_owner();
    }
}

impl SocketHandler for Driver {
    fn on_data(&self, data: &[u8]) {
        if self.open.get() {
            self.ws.on_bytes(data);
        } else {
            self.on_handshake_bytes(data);
        }
    }

    fn on_eof(&self) {
        if self.open.get() {
            // The server closed TCP (after the closing handshake, normally): close our side.
            if let Some(s) = self.socket.borrow().as_ref() {
                s.close();
            }
            self.ws.on_transport_closed();
            self.finish(Some(1006), "connection closed");
        } else {
            self.fail("the server closed the connection during the handshake".into());
        }
    }

    fn on_drain(&self) {
        if self.open.get() {
            self.ws.on_drain();
        }
    }

    fn on_close(&self, err: Option<UvError>) {
        if self.open.get() {
            self.ws.on_transport_closed();
            let reason = err.map(|e| e.to_string()).unwrap_or_default();
            self.finish(Some(1006), &reason);
        } else {
            self.fail(
                err.map(|e| e.to_string())
                    .unwrap_or_else(|| "connection closed during the handshake".into()),
            );
        }
    }
}

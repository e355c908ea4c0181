//! HTTPS and WSS over OpenSSL against real peers: curl, `openssl s_client`, Python's `ssl`,
//! raw TCP clients that misbehave, a hand-driven TLS client that cuts records across the
//! server's reads, the library's own HTTP and WebSocket clients, and the sample binary.
//!
//! Every test makes its own CA and certificates at run time ([`ThrowawayPki`]), written to a
//! unique directory under the system temp dir and removed afterwards: no key is committed.
//! A test that needs an external tool skips, with a printed reason, only when that tool is not
//! installed. Every server is a [`TestServer`], whose `stop()` asserts a clean `uv_loop_close`.

mod common;

use std::cell::{Cell, RefCell};
use std::io::{BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::*;
use uvhttp::http::{
    ClientConnection, ClientError, ServerConnection, ServerConnectionPtr, ServerOptions, Version,
};
use uvhttp::net::tls::{
    ClientVerify, ServerContextBuilder, ThrowawayPaths, ThrowawayPki, TlsContext, TlsEngine,
    TlsErrorKind, TlsVersion,
};
use uvhttp::uv::{OwnedLoop, RunMode, Timer};
use uvhttp::ws::{self, MessageKind};

// ---- fixtures -------------------------------------------------------------------------------

static NEXT_DIR: AtomicUsize = AtomicUsize::new(0);

/// A throwaway CA with a server certificate (`localhost`, `127.0.0.1`) and a client
/// certificate, written to a fresh temp directory that is removed on drop (also when the test
/// fails).
struct Pki {
    pki: ThrowawayPki,
    paths: ThrowawayPaths,
    dir: PathBuf,
}

impl Pki {
    fn new() -> Pki {
        let pki = ThrowawayPki::generate_with_client(&["localhost", "127.0.0.1"], "uvhttp client")
            .expect("generate a throwaway PKI");
        let dir = std::env::temp_dir().join(format!(
            "uvhttp-tls-test-{}-{}",
            std::process::id(),
            NEXT_DIR.fetch_add(1, Ordering::SeqCst)
        ));
        let paths = pki.write_to(&dir).expect("write the throwaway PKI");
        Pki { pki, paths, dir }
    }

    /// The CA file, for `--cacert` / `-CAfile` / `cafile=`.
    fn ca(&self) -> &str {
        path_str(&self.paths.ca)
    }

    fn client_cert(&self) -> &str {
        path_str(self.paths.client_cert.as_ref().expect("client certificate"))
    }

    fn client_key(&self) -> &str {
        path_str(self.paths.client_key.as_ref().expect("client key"))
    }

    /// Writes another file into the PKI directory (removed with it).
    fn write(&self, name: &str, bytes: &[u8]) -> PathBuf {
        let path = self.dir.join(name);
        std::fs::write(&path, bytes).expect("write a test file");
        path
    }

    /// A file name inside the PKI directory.
    fn file(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    /// A server context builder loading the chain and key from the PEM files.
    fn server_builder(&self) -> ServerContextBuilder {
        TlsContext::server()
            .cert_chain_file(&self.paths.cert)
            .key_file(&self.paths.key)
    }

    fn server_ctx(&self) -> TlsContext {
        self.server_builder().build().expect("server context")
    }

    /// A client context trusting only this CA.
    fn client_ctx(&self) -> TlsContext {
        TlsContext::client()
            .ca_file(&self.paths.ca)
            .build()
            .expect("client context")
    }
}

impl Drop for Pki {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn path_str(p: &Path) -> &str {
    p.to_str().expect("temp paths are UTF-8")
}

/// Routes of the TLS test server: the sample routes (examples/httpechoserver.rs) plus
/// `/chunked` (three pieces with no length: chunked for HTTP/1.1, until close for HTTP/1.0)
/// and `/ws` (a WebSocket echo).
fn route(conn: &ServerConnection) {
    let path = conn.request().path().to_string();
    match path.as_str() {
        "/chunked" => {
            conn.response().set_content_type("text/plain");
            for piece in [&b"one,"[..], b"two,", b"three"] {
                let _ = conn.send(piece);
            }
            let _ = conn.complete();
        }
        "/ws" => {
            if let Ok(socket) = ws::accept(conn, &ws::AcceptOptions::default()) {
                socket.message.attach(|socket, kind, data| {
                    let _ = socket.send(data, kind);
                });
            }
        }
        _ => sample::route(conn),
    }
}

/// The test routes over TLS with `ctx`.
fn tls_server(ctx: TlsContext) -> TestServer {
    tls_server_with(ctx, |_| {})
}

/// The same, with server options changed first.
fn tls_server_with(
    ctx: TlsContext,
    configure: impl FnOnce(&mut ServerOptions) + Send + 'static,
) -> TestServer {
    TestServer::start(move |srv| {
        srv.configure(configure);
        srv.set_tls(ctx);
        srv.connection += |conn: ServerConnectionPtr| route(&conn);
    })
}

/// The test routes over plain TCP (to run the same client checks over http and https).
fn plain_server() -> TestServer {
    TestServer::start(|srv| srv.connection += |conn: ServerConnectionPtr| route(&conn))
}

const GET_AND_CLOSE: &[u8] = b"GET / HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n";

// ---- external tools -------------------------------------------------------------------------

fn have(tool: &str, arg: &str) -> bool {
    match Command::new(tool).arg(arg).output() {
        Ok(o) if o.status.success() => true,
        _ => {
            println!("skipped: {tool} is not installed");
            false
        }
    }
}

/// How an external tool ended and what it printed.
struct ToolRun {
    code: Option<i32>,
    stdout: Vec<u8>,
    stderr: String,
}

impl ToolRun {
    /// Standard output and error together, as text (s_client splits its report between them).
    fn text(&self) -> String {
        format!("{}\n{}", String::from_utf8_lossy(&self.stdout), self.stderr)
    }

    fn success(&self) -> bool {
        self.code == Some(0)
    }
}

/// Runs `program` with `args`. `stdin` is a script of (pause, bytes) steps; afterwards stdin
/// is closed, or with `hold_stdin` kept open until the tool exits (s_client quits at EOF of
/// stdin unless `-ign_eof`, which also disables its `R` command). Fails after `limit`
/// instead of hanging, killing the tool.
fn run_tool(
    program: &str,
    args: &[&str],
    stdin: Vec<(Duration, Vec<u8>)>,
    hold_stdin: bool,
    limit: Duration,
) -> ToolRun {
    let mut child: Child = Command::new(program)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {program}: {e}"));
    let exited = Arc::new(AtomicBool::new(false));
    let mut input = child.stdin.take().unwrap();
    let exited_in = exited.clone();
    let feeder = std::thread::spawn(move || {
        for (pause, bytes) in stdin {
            std::thread::sleep(pause);
            if input.write_all(&bytes).and_then(|_| input.flush()).is_err() {
                return; // the tool is gone
            }
        }
        while hold_stdin && !exited_in.load(Ordering::SeqCst) {
            std::thread::sleep(Duration::from_millis(5));
        }
    });
    let mut out = child.stdout.take().unwrap();
    let mut err = child.stderr.take().unwrap();
    let out_reader = std::thread::spawn(move || {
        let mut v = Vec::new();
        let _ = out.read_to_end(&mut v);
        v
    });
    let err_reader = std::thread::spawn(move || {
        let mut v = Vec::new();
        let _ = err.read_to_end(&mut v);
        String::from_utf8_lossy(&v).into_owned()
    });
    let deadline = Instant::now() + limit;
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break Some(status);
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(5));
    };
    exited.store(true, Ordering::SeqCst);
    let _ = feeder.join();
    let run = ToolRun {
        code: status.and_then(|s| s.code()),
        stdout: out_reader.join().unwrap(),
        stderr: err_reader.join().unwrap(),
    };
    assert!(
        status.is_some(),
        "{program} {args:?} did not finish within {limit:?}:\n{}",
        run.text()
    );
    run
}

/// `openssl s_client` to the server with `extra` flags; sends `request` once connected and,
/// with `-ign_eof`, reads until the server closes.
fn s_client(addr: SocketAddr, extra: &[&str], request: &[u8]) -> ToolRun {
    let connect = addr.to_string();
    let mut args = vec!["s_client", "-connect", &connect, "-ign_eof"];
    args.extend_from_slice(extra);
    run_tool(
        "openssl",
        &args,
        vec![(Duration::ZERO, request.to_vec())],
        false,
        Duration::from_secs(20),
    )
}

/// curl against `localhost:port` (resolved to 127.0.0.1, so no IPv6 attempt is counted as a
/// connection), trusting the PKI's CA. Fails the test if curl fails.
fn curl(pki: &Pki, port: u16, args: &[&str]) -> ToolRun {
    let resolve = format!("localhost:{port}:127.0.0.1");
    let mut all = vec![
        "-sS",
        "--max-time",
        "30",
        "--cacert",
        pki.ca(),
        "--resolve",
        &resolve,
    ];
    all.extend_from_slice(args);
    let run = run_tool("curl", &all, Vec::new(), false, Duration::from_secs(40));
    assert!(run.success(), "curl {args:?} failed: {}", run.stderr);
    run
}

/// Runs a Python script with arguments; returns its trimmed standard output. Fails the test
/// if the script fails.
fn python(script: &str, args: &[&str]) -> String {
    let mut all = vec!["-c", script];
    all.extend_from_slice(args);
    let run = run_tool("python3", &all, Vec::new(), false, Duration::from_secs(40));
    assert!(run.success(), "python script failed:\n{}", run.text());
    String::from_utf8_lossy(&run.stdout).trim().to_string()
}

/// The subject s_client reports for the server certificate (`subject=...` line).
fn subject_line(text: &str) -> String {
    text.lines()
        .find(|l| l.starts_with("subject="))
        .unwrap_or_else(|| panic!("no subject= line in:\n{text}"))
        .to_string()
}

// ---- a hand-driven TLS client ---------------------------------------------------------------

/// Counts TLS records in a ciphertext stream however it is cut (5-byte header, then the
/// length it announces).
#[derive(Default)]
struct RecordCounter {
    header: [u8; 5],
    have: usize,
    body_left: usize,
    records: usize,
}

impl RecordCounter {
    fn feed(&mut self, mut data: &[u8]) {
        while !data.is_empty() {
            if self.body_left > 0 {
                let n = self.body_left.min(data.len());
                self.body_left -= n;
                data = &data[n..];
                continue;
            }
            let n = (5 - self.have).min(data.len());
            self.header[self.have..self.have + n].copy_from_slice(&data[..n]);
            self.have += n;
            data = &data[n..];
            if self.have == 5 {
                self.body_left = u16::from_be_bytes([self.header[3], self.header[4]]) as usize;
                self.have = 0;
                self.records += 1;
            }
        }
    }
}

/// A blocking TLS client: the library's sans-IO engine over a `std` socket. Unlike the real
/// clients it decides how ciphertext is cut into TCP writes (`piece` bytes per write with a
/// `pause` between, to split records across the server's reads), counts the records it
/// receives, and tells the server's `close_notify` (`read` returns 0) from a bare TCP close
/// (an `UnexpectedEof` error).
struct TlsConn {
    tcp: TcpStream,
    engine: TlsEngine,
    plain: Vec<u8>,
    plain_pos: usize,
    piece: usize,
    pause: Duration,
    received: RecordCounter,
}

impl TlsConn {
    /// Connects and completes the handshake with whole writes.
    fn connect(addr: SocketAddr, ctx: &TlsContext) -> TlsConn {
        Self::connect_cut(addr, ctx, usize::MAX, Duration::ZERO)
    }

    /// Connects and handshakes writing `piece` ciphertext bytes at a time.
    fn connect_cut(addr: SocketAddr, ctx: &TlsContext, piece: usize, pause: Duration) -> TlsConn {
        let tcp = TcpStream::connect(addr).expect("connect");
        tcp.set_nodelay(true).unwrap();
        tcp.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        tcp.set_write_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        let engine = TlsEngine::client(ctx, "localhost").expect("client engine");
        let mut conn = TlsConn {
            tcp,
            engine,
            plain: Vec::new(),
            plain_pos: 0,
            piece,
            pause,
            received: RecordCounter::default(),
        };
        conn.handshake();
        conn
    }

    fn handshake(&mut self) {
        loop {
            self.send_ciphertext().expect("send handshake");
            if self.engine.is_handshake_done() {
                return;
            }
            let n = self.receive().expect("read handshake");
            assert!(
                n > 0,
                "the server closed the connection during the handshake"
            );
            self.engine
                .read(&mut self.plain)
                .unwrap_or_else(|e| panic!("handshake failed: {e}"));
        }
    }

    /// Writes whatever the engine produced, cut into `piece`-byte writes.
    fn send_ciphertext(&mut self) -> std::io::Result<()> {
        let mut out = Vec::new();
        self.engine.take_output(&mut out);
        for piece in out.chunks(self.piece.max(1)) {
            self.tcp.write_all(piece)?;
            if !self.pause.is_zero() {
                std::thread::sleep(self.pause);
            }
        }
        Ok(())
    }

    /// Reads one batch of ciphertext from TCP into the engine; 0 at TCP EOF.
    fn receive(&mut self) -> std::io::Result<usize> {
        let mut buf = [0u8; 65536];
        let n = read_uninterrupted(&mut self.tcp, &mut buf)?;
        self.received.feed(&buf[..n]);
        self.engine.feed(&buf[..n]);
        Ok(n)
    }

    fn records_received(&self) -> usize {
        self.received.records
    }
}

impl Read for TlsConn {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        loop {
            if self.plain_pos < self.plain.len() {
                let n = (self.plain.len() - self.plain_pos).min(buf.len());
                buf[..n].copy_from_slice(&self.plain[self.plain_pos..self.plain_pos + n]);
                self.plain_pos += n;
                return Ok(n);
            }
            self.plain.clear();
            self.plain_pos = 0;
            if self.engine.peer_closed() {
                return Ok(0);
            }
            if self.receive()? == 0 {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::UnexpectedEof,
                    "the server closed TCP without sending close_notify",
                ));
            }
            let status = self
                .engine
                .read(&mut self.plain)
                .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e.to_string()))?;
            self.send_ciphertext()?;
            if status.peer_closed && self.plain.is_empty() {
                return Ok(0);
            }
        }
    }
}

impl Write for TlsConn {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        self.engine
            .write(data)
            .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e.to_string()))?;
        self.send_ciphertext()?;
        Ok(data.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// HTTP over a [`TlsConn`].
struct HttpsClient {
    reader: BufReader<TlsConn>,
}

impl HttpsClient {
    fn connect(addr: SocketAddr, ctx: &TlsContext) -> HttpsClient {
        HttpsClient {
            reader: BufReader::new(TlsConn::connect(addr, ctx)),
        }
    }

    fn from_conn(conn: TlsConn) -> HttpsClient {
        HttpsClient {
            reader: BufReader::new(conn),
        }
    }

    fn conn(&mut self) -> &mut TlsConn {
        self.reader.get_mut()
    }

    fn send(&mut self, raw: &[u8]) {
        self.conn().write_all(raw).expect("send over TLS");
    }

    fn request(&mut self, raw: &[u8]) -> Reply {
        self.send(raw);
        self.read_reply()
    }

    /// Reads one final response (Content-Length, chunked, or until a clean TLS close).
    fn read_reply(&mut self) -> Reply {
        let reply = read_response(&mut self.reader, false);
        assert!(reply.trailers.is_empty(), "no trailers expected: {reply:?}");
        reply
    }

    /// Asserts the server ends the connection with `close_notify` and nothing else.
    fn expect_close_notify(&mut self) {
        let mut rest = Vec::new();
        match self.reader.read_to_end(&mut rest) {
            Ok(_) => assert!(rest.is_empty(), "unexpected bytes {rest:?}"),
            Err(e) => panic!("expected close_notify, got {e}"),
        }
    }
}

// ---- the library's client, on a loop in the test thread --------------------------------------

/// Runs `lp` until nothing is left on it; fails (instead of hanging) after `limit`.
fn run_loop(lp: &OwnedLoop, limit: Duration) {
    let watchdog = Timer::new(lp.handle()).unwrap();
    let fired = Rc::new(Cell::new(false));
    let (f, h) = (fired.clone(), lp.handle());
    watchdog
        .start(limit.as_millis() as u64, 0, move || {
            f.set(true);
            h.stop();
        })
        .unwrap();
    watchdog.unref();
    lp.handle().run(RunMode::Default);
    drop(watchdog);
    assert!(
        !fired.get(),
        "the client loop did not finish within {limit:?}"
    );
}

/// One response as the library's client delivered it.
#[derive(Debug, Clone)]
struct Got {
    status: u16,
    version: Version,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Got {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// What a `ClientConnection` reported over its life.
#[derive(Default, Debug)]
struct Record {
    connects: usize,
    responses: Vec<Got>,
    body: Vec<u8>,
    closes: Vec<Option<ClientError>>,
}

/// A request the library's client sends.
struct Step {
    method: &'static str,
    target: String,
    version: Version,
    body: Option<Vec<u8>>,
}

fn step(target: &str) -> Step {
    Step {
        method: "GET",
        target: target.to_string(),
        version: Version::Http11,
        body: None,
    }
}

fn send_step(c: &ClientConnection, s: &Step) {
    c.request().set_method(s.method).set_target(&s.target);
    c.request().with(|r| r.set_version(s.version));
    match &s.body {
        Some(b) => c.send_body(b).expect("send"),
        None => c.send().expect("send"),
    }
}

/// Sends `steps` one after the other on `conn` (each from the previous `complete`), closes
/// after the last, runs the loop and asserts it closes cleanly. Returns what was seen.
fn run_client(lp: OwnedLoop, conn: Rc<ClientConnection>, steps: Vec<Step>) -> Record {
    let rec = Rc::new(RefCell::new(Record::default()));
    let r = rec.clone();
    conn.connect.attach(move |_| r.borrow_mut().connects += 1);
    let r = rec.clone();
    conn.headers.attach(move |_, head| {
        r.borrow_mut().responses.push(Got {
            status: head.status().as_u16(),
            version: head.version(),
            headers: head
                .headers()
                .iter()
                .map(|(n, v)| (n.to_string(), String::from_utf8_lossy(v).into_owned()))
                .collect(),
            body: Vec::new(),
        })
    });
    let r = rec.clone();
    conn.payload
        .attach(move |_, chunk| r.borrow_mut().body.extend_from_slice(chunk));
    let r = rec.clone();
    let steps = Rc::new(steps);
    let next = Cell::new(1);
    let steps_in_slot = steps.clone();
    conn.complete.attach(move |c| {
        {
            let mut rec = r.borrow_mut();
            let body = std::mem::take(&mut rec.body);
            if let Some(last) = rec.responses.last_mut() {
                last.body = body;
            }
        }
        match steps_in_slot.get(next.get()) {
            Some(s) => {
                next.set(next.get() + 1);
                send_step(c, s);
            }
            None => c.close(),
        }
    });
    let r = rec.clone();
    conn.close
        .attach(move |_, err| r.borrow_mut().closes.push(err.cloned()));
    send_step(&conn, &steps[0]);
    run_loop(&lp, Duration::from_secs(30));
    drop(conn);
    lp.close().expect("the client loop closes cleanly");
    let seen = std::mem::take(&mut *rec.borrow_mut());
    seen
}

/// One GET that must fail; returns the single error the client closed with, after checking
/// that no response head was made up for it.
fn client_error(url: &str, ctx: TlsContext) -> ClientError {
    let lp = OwnedLoop::new().unwrap();
    let conn = ClientConnection::with_tls(lp.handle(), url, ctx).unwrap();
    let rec = run_client(lp, conn, vec![step("/")]);
    assert!(
        rec.responses.is_empty(),
        "no fake status: {:?}",
        rec.responses
    );
    assert_eq!(rec.connects, 0, "connect only fires once TLS is up");
    assert_eq!(rec.closes.len(), 1, "close fires once: {:?}", rec.closes);
    rec.closes[0].clone().expect("an error, not a clean close")
}

// =============================================================================================
// Issue point 1: the TLS socket (handshake, records, renegotiation, close_notify, timeout)
// =============================================================================================

#[test]
fn records_cut_across_reads_are_reassembled() {
    let pki = Pki::new();
    let srv = tls_server(pki.server_ctx());
    // Handshake and request go out one ciphertext byte per TCP write, with a pause between:
    // every record reaches the server in many reads.
    let conn = TlsConn::connect_cut(srv.addr, &pki.client_ctx(), 1, Duration::from_micros(200));
    let mut c = HttpsClient::from_conn(conn);
    let r = c.request(b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n");
    assert_eq!(r.status, 200);
    assert_eq!(r.body_str(), "Hello, World!");

    // A 100 KB body in 7-byte writes without pauses: record boundaries fall anywhere within
    // the server's reads, several records per read and records split between reads.
    c.conn().piece = 7;
    c.conn().pause = Duration::ZERO;
    let body = pattern(100_000);
    let mut raw = format!(
        "POST /echo HTTP/1.1\r\nHost: localhost\r\nContent-Length: {}\r\n\r\n",
        body.len()
    )
    .into_bytes();
    raw.extend_from_slice(&body);
    let r = c.request(&raw);
    assert_eq!(r.status, 200);
    assert!(r.body == body, "echo over cut records differs");
    drop(c);
    srv.stop();
}

#[test]
fn large_response_spans_many_records_and_arrives_intact() {
    let pki = Pki::new();
    let srv = tls_server(pki.server_ctx());
    let mut c = HttpsClient::connect(srv.addr, &pki.client_ctx());
    const SIZE: usize = 4 << 20;
    let r =
        c.request(format!("GET /big?bytes={SIZE} HTTP/1.1\r\nHost: localhost\r\n\r\n").as_bytes());
    assert_eq!(r.status, 200);
    assert_eq!(r.body.len(), SIZE);
    assert!(r.body.iter().all(|&b| b == b'x'), "4 MiB body corrupted");
    // A TLS record carries at most 16 KiB of plaintext.
    let records = c.conn().records_received();
    assert!(records >= SIZE / 16384, "4 MiB in only {records} records?");
    // The connection is still usable after the big response.
    let r = c.request(b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n");
    assert_eq!(r.body_str(), "Hello, World!");
    drop(c);
    srv.stop();
}

#[test]
fn large_request_written_as_many_records_is_echoed() {
    // The client engine encrypts a 3 MiB body into ~200 records written back to back; the
    // server's echo writes span as many records on the way back.
    let pki = Pki::new();
    let srv = tls_server(pki.server_ctx());
    let mut c = HttpsClient::connect(srv.addr, &pki.client_ctx());
    let body = pattern(3 << 20);
    let head = format!(
        "PUT /echo HTTP/1.1\r\nHost: localhost\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    c.send(head.as_bytes());
    // Encrypted here in 1 MiB application writes, written from a thread while this one reads
    // the echo: the upload and the echo overlap, as they do with a streaming echo.
    let mut writer = c.conn().tcp.try_clone().unwrap();
    let mut cipher = Vec::new();
    for piece in body.chunks(1 << 20) {
        c.conn().engine.write(piece).unwrap();
        c.conn().engine.take_output(&mut cipher);
    }
    let sender = std::thread::spawn(move || writer.write_all(&cipher).map(|_| ()));
    let r = c.read_reply();
    sender.join().unwrap().expect("upload");
    assert_eq!(r.status, 200);
    assert!(r.body == body, "3 MiB echo differs");
    drop(c);
    srv.stop();
}

#[test]
fn renegotiation_is_refused_and_the_server_keeps_serving() {
    if !have("openssl", "version") {
        return;
    }
    let pki = Pki::new();
    let srv = tls_server(pki.server_ctx());
    // `R` asks s_client to renegotiate (a TLS 1.2 feature); the request after it is what
    // would travel over the renegotiated session (and would end it, were it answered).
    // stdin stays open: EOF would mean "quit".
    let run = run_tool(
        "openssl",
        &[
            "s_client",
            "-connect",
            &srv.addr.to_string(),
            "-tls1_2",
            "-CAfile",
            pki.ca(),
            "-servername",
            "localhost",
            "-msg",
        ],
        vec![
            (Duration::from_millis(500), b"R\n".to_vec()),
            (Duration::from_millis(300), GET_AND_CLOSE.to_vec()),
        ],
        true,
        Duration::from_secs(10),
    );
    let text = run.text();
    assert!(
        text.contains("RENEGOTIATING"),
        "s_client did not try:\n{text}"
    );
    let server_hellos = text
        .lines()
        .filter(|l| l.starts_with("<<<") && l.ends_with(", ServerHello"))
        .count();
    assert_eq!(server_hellos, 1, "the server renegotiated:\n{text}");
    assert!(
        text.contains("no_renegotiation") || text.contains("no renegotiation"),
        "the refusal was not signalled:\n{text}"
    );
    assert!(
        !text.contains("Hello, World!"),
        "a request went over a renegotiated session:\n{text}"
    );
    assert!(
        !run.success(),
        "s_client ended the refused renegotiation with an error"
    );
    // The refused connection is gone, and new clients are served.
    srv.wait_connections(|n| n == 0, "the refused connection to close");
    let r = HttpsClient::connect(srv.addr, &pki.client_ctx()).request(GET_AND_CLOSE);
    assert_eq!(r.body_str(), "Hello, World!");
    srv.stop();
}

#[test]
fn close_notify_is_sent_before_the_close() {
    let pki = Pki::new();
    let srv = tls_server(pki.server_ctx());
    // The hand-driven client: a `Connection: close` response ends with close_notify, not a
    // bare TCP close (which its reader reports as an error).
    let mut c = HttpsClient::connect(srv.addr, &pki.client_ctx());
    let r = c.request(GET_AND_CLOSE);
    assert_eq!(r.body_str(), "Hello, World!");
    assert!(r.closes());
    c.expect_close_notify();
    drop(c);

    // s_client's message trace shows the alert, then the close.
    if have("openssl", "version") {
        for version in ["-tls1_2", "-tls1_3"] {
            let run = s_client(
                srv.addr,
                &[version, "-CAfile", pki.ca(), "-msg"],
                GET_AND_CLOSE,
            );
            let text = String::from_utf8_lossy(&run.stdout).into_owned();
            let alert = text
                .lines()
                .position(|l| l.starts_with("<<<") && l.contains("close_notify"))
                .unwrap_or_else(|| panic!("no close_notify received ({version}):\n{text}"));
            let closed = text
                .lines()
                .position(|l| l == "closed")
                .unwrap_or_else(|| panic!("s_client did not see the close:\n{text}"));
            assert!(
                alert < closed,
                "close_notify must precede the close:\n{text}"
            );
            assert!(text.contains("Hello, World!"), "{text}");
        }
    }
    srv.stop();
}

#[test]
fn python_reads_to_a_clean_tls_eof() {
    if !have("python3", "--version") {
        return;
    }
    let pki = Pki::new();
    let srv = tls_server(pki.server_ctx());
    // suppress_ragged_eofs=False: a TCP close without close_notify raises SSLEOFError.
    const SCRIPT: &str = r#"
import socket, ssl, sys
port, ca, size = int(sys.argv[1]), sys.argv[2], int(sys.argv[3])
ctx = ssl.create_default_context(cafile=ca)
raw = socket.create_connection(("127.0.0.1", port), timeout=10)
s = ctx.wrap_socket(raw, server_hostname="localhost", suppress_ragged_eofs=False)
s.sendall(b"GET /big?bytes=%d HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n" % size)
data = bytearray()
while True:
    chunk = s.recv(1 << 20)
    if not chunk:
        break
    data += chunk
head, _, body = bytes(data).partition(b"\r\n\r\n")
assert head.startswith(b"HTTP/1.1 200 OK"), head
assert body == b"x" * size, len(body)
print("clean eof", s.version(), len(body))
"#;
    let size = (4 << 20).to_string();
    let out = python(SCRIPT, &[&srv.addr.port().to_string(), pki.ca(), &size]);
    assert_eq!(out, format!("clean eof TLSv1.3 {size}"));
    srv.stop();
}

#[test]
fn idle_and_stopping_connections_close_with_close_notify() {
    let pki = Pki::new();
    // Idle keep-alive connection cut by the idle timeout.
    let srv = tls_server_with(pki.server_ctx(), |o| {
        o.idle_timeout = Duration::from_millis(300)
    });
    let mut c = HttpsClient::connect(srv.addr, &pki.client_ctx());
    let r = c.request(b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n");
    assert!(!r.closes());
    let started = Instant::now();
    c.expect_close_notify();
    drop(c);
    assert!(started.elapsed() >= Duration::from_millis(200));
    srv.stop();

    // Idle keep-alive connection closed by a graceful stop.
    let srv = tls_server(pki.server_ctx());
    let mut c = HttpsClient::connect(srv.addr, &pki.client_ctx());
    let r = c.request(b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n");
    assert_eq!(r.status, 200);
    srv.begin_stop();
    c.expect_close_notify();
    drop(c);
    srv.stop();
}

/// Reads until the server ends a raw TCP connection; returns what arrived and how long it
/// took. A reset counts as an end; a read timeout fails the test.
fn read_until_cut(s: &mut TcpStream) -> (Vec<u8>, Duration) {
    let started = Instant::now();
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match s.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                panic!("the server kept the connection open (got {got:?})")
            }
            Err(_) => break, // reset
        }
    }
    (got, started.elapsed())
}

#[test]
fn silent_and_stalled_handshakes_are_cut_after_the_timeout() {
    let pki = Pki::new();
    let srv = tls_server_with(pki.server_ctx(), |o| {
        o.tls_handshake_timeout = Duration::from_millis(300)
    });
    let started = Instant::now();
    // Connects and sends nothing.
    let mut silent = connect(srv.addr);
    // Sends the first 40 bytes of a real ClientHello, then stalls.
    let mut stalled = connect(srv.addr);
    let mut hello_engine = TlsEngine::client(&pki.client_ctx(), "localhost").unwrap();
    let mut hello = Vec::new();
    hello_engine.take_output(&mut hello);
    assert!(hello.len() > 40);
    stalled.write_all(&hello[..40]).unwrap();
    // Meanwhile a real client is served.
    let mut good = HttpsClient::connect(srv.addr, &pki.client_ctx());
    let r = good.request(b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n");
    assert_eq!(r.body_str(), "Hello, World!");

    for (name, sock) in [("silent", &mut silent), ("stalled", &mut stalled)] {
        let (got, _) = read_until_cut(sock);
        let waited = started.elapsed();
        assert!(
            got.is_empty() || got[0] == 0x15,
            "{name}: only an alert may be sent: {got:?}"
        );
        assert!(
            waited >= Duration::from_millis(250) && waited < Duration::from_secs(5),
            "{name} client cut after {waited:?}, timeout is 300 ms"
        );
    }
    // The timeout does not apply once the handshake is done: the good client, made older than
    // the timeout (the cuts above may come a little before 300 ms by this clock, since the
    // loop times from its own cached time), is still served on the same connection.
    let old_enough = started + Duration::from_millis(350);
    if let Some(left) = old_enough.checked_duration_since(Instant::now()) {
        std::thread::sleep(left);
    }
    let r = good.request(b"GET /status/204 HTTP/1.1\r\nHost: localhost\r\n\r\n");
    assert_eq!(r.status, 204);
    srv.wait_connections(|n| n == 1, "only the good client left");
    drop(good);
    srv.stop();
}

// =============================================================================================
// Issue point 2: contexts (PEM files, versions, ALPN, SNI, resumption, client certificates,
// CA locations)
// =============================================================================================

#[test]
fn s_client_negotiates_tls12_and_tls13() {
    if !have("openssl", "version") {
        return;
    }
    let pki = Pki::new();
    let srv = tls_server(pki.server_ctx());
    for (flag, version) in [("-tls1_2", "TLSv1.2"), ("-tls1_3", "TLSv1.3")] {
        let run = s_client(
            srv.addr,
            &[flag, "-CAfile", pki.ca(), "-servername", "localhost"],
            GET_AND_CLOSE,
        );
        let text = run.text();
        assert!(run.success(), "{text}");
        assert!(
            text.contains(&format!("New, {version}, Cipher is")),
            "{text}"
        );
        assert!(text.contains(&format!("Protocol  : {version}")), "{text}");
        assert!(text.contains("Verify return code: 0 (ok)"), "{text}");
        assert!(text.contains("Hello, World!"), "{text}");
    }
    srv.stop();
}

#[test]
fn version_limits_are_enforced() {
    if !have("openssl", "version") {
        return;
    }
    let pki = Pki::new();
    // TLS 1.3 only: a TLS 1.2 client is refused, a TLS 1.3 client served.
    let srv = tls_server(
        pki.server_builder()
            .min_version(TlsVersion::Tls13)
            .build()
            .unwrap(),
    );
    let run = s_client(srv.addr, &["-tls1_2", "-CAfile", pki.ca()], GET_AND_CLOSE);
    assert!(!run.success(), "TLS 1.2 accepted:\n{}", run.text());
    assert!(!run.text().contains("Hello, World!"));
    assert!(
        run.text().contains("protocol version"),
        "the refusal names the version:\n{}",
        run.text()
    );
    let run = s_client(srv.addr, &["-tls1_3", "-CAfile", pki.ca()], GET_AND_CLOSE);
    assert!(run.text().contains("Protocol  : TLSv1.3"), "{}", run.text());
    srv.stop();

    // TLS 1.2 at most: a client offering both gets 1.2.
    let srv = tls_server(
        pki.server_builder()
            .max_version(TlsVersion::Tls12)
            .build()
            .unwrap(),
    );
    let run = s_client(srv.addr, &["-CAfile", pki.ca()], GET_AND_CLOSE);
    assert!(run.text().contains("Protocol  : TLSv1.2"), "{}", run.text());
    assert!(run.text().contains("Hello, World!"));
    srv.stop();
}

#[test]
fn alpn_selects_http11() {
    if !have("openssl", "version") {
        return;
    }
    let pki = Pki::new();
    let srv = tls_server(pki.server_ctx());
    for (offer, expected) in [
        ("http/1.1", "ALPN protocol: http/1.1"),
        ("h2,http/1.1", "ALPN protocol: http/1.1"),
        // No overlap: the handshake proceeds without ALPN (as documented).
        ("h2", "No ALPN negotiated"),
    ] {
        let run = s_client(
            srv.addr,
            &["-CAfile", pki.ca(), "-alpn", offer],
            GET_AND_CLOSE,
        );
        let text = run.text();
        assert!(text.contains(expected), "offer {offer}:\n{text}");
        assert!(text.contains("Hello, World!"), "offer {offer}:\n{text}");
    }
    srv.stop();
}

#[test]
fn sni_picks_the_certificate_for_the_name() {
    if !have("openssl", "version") {
        return;
    }
    let pki = Pki::new();
    let api = pki.pki.issue_server_certificate(&["api.test"]).unwrap();
    let wild = pki.pki.issue_server_certificate(&["*.wild.test"]).unwrap();
    let ctx = pki
        .server_builder()
        .add_sni_certificate("api.test", api.cert_pem(), api.key_pem())
        .add_sni_certificate("*.wild.test", wild.cert_pem(), wild.key_pem())
        .build()
        .unwrap();
    let srv = tls_server(ctx);
    for (name, cn) in [
        ("api.test", "api.test"),
        ("API.Test", "api.test"),
        ("a.wild.test", "*.wild.test"),
        ("localhost", "localhost"),
        // Unknown names get the default certificate.
        ("other.test", "localhost"),
    ] {
        for version in ["-tls1_2", "-tls1_3"] {
            let run = s_client(
                srv.addr,
                &[
                    version,
                    "-CAfile",
                    pki.ca(),
                    "-servername",
                    name,
                    "-alpn",
                    "http/1.1",
                ],
                GET_AND_CLOSE,
            );
            let text = run.text();
            let subject = subject_line(&text);
            assert!(
                subject.ends_with(&format!("CN = {cn}")),
                "SNI {name} {version}: {subject}"
            );
            // The switched-to context verifies, negotiates ALPN and serves like the default.
            assert!(text.contains("Verify return code: 0 (ok)"), "{text}");
            assert!(text.contains("ALPN protocol: http/1.1"), "{text}");
            assert!(text.contains("Hello, World!"), "{text}");
        }
    }
    // No SNI at all: the default certificate.
    let run = s_client(
        srv.addr,
        &["-CAfile", pki.ca(), "-noservername"],
        GET_AND_CLOSE,
    );
    assert!(subject_line(&run.text()).ends_with("CN = localhost"));
    srv.stop();
}

#[test]
fn sessions_resume() {
    if !have("openssl", "version") {
        return;
    }
    let pki = Pki::new();
    let srv = tls_server(pki.server_ctx());
    for (flag, version) in [("-tls1_2", "TLSv1.2"), ("-tls1_3", "TLSv1.3")] {
        let session = pki.file(&format!("session{flag}.pem"));
        let session = path_str(&session);
        // First connection: a full handshake; the session (or TLS 1.3 ticket, which arrives
        // after the handshake: hence a request read to the end) is saved.
        let run = s_client(
            srv.addr,
            &[flag, "-CAfile", pki.ca(), "-sess_out", session],
            GET_AND_CLOSE,
        );
        let text = run.text();
        assert!(text.contains(&format!("New, {version}")), "{text}");
        // Second connection offers it and resumes.
        let run = s_client(
            srv.addr,
            &[flag, "-CAfile", pki.ca(), "-sess_in", session],
            GET_AND_CLOSE,
        );
        let text = run.text();
        assert!(
            text.contains(&format!("Reused, {version}")),
            "{version} session not resumed:\n{text}"
        );
        assert!(text.contains("Hello, World!"), "{text}");
    }
    // -reconnect: five reconnections with the first session (TLS 1.2).
    let run = s_client(
        srv.addr,
        &["-tls1_2", "-CAfile", pki.ca(), "-reconnect"],
        GET_AND_CLOSE,
    );
    let reused = run.text().matches("Reused, TLSv1.2").count();
    assert_eq!(reused, 5, "{}", run.text());
    srv.stop();
}

/// A Python client with an optional client certificate. With `expect` = `ok` it sends a
/// request at once and prints `OK <status> <body> <version>` (or `REJECTED <reason>` if the
/// server refuses it after all). With `expect` = `reject` it sends nothing and waits for the
/// refusal: during the handshake for TLS 1.2, in the alert that follows it for TLS 1.3 (read
/// before sending anything, so no request races the alert and its close). It prints
/// `REJECTED <OpenSSL reason>`, or `SILENT` if the server neither refused nor closed in 5 s.
const PYTHON_MTLS: &str = r#"
import socket, ssl, sys
port, ca, cert, key, version, expect = sys.argv[1:7]
ctx = ssl.create_default_context(cafile=ca)
if cert != "-":
    ctx.load_cert_chain(cert, key)
if version == "1.2":
    ctx.maximum_version = ssl.TLSVersion.TLSv1_2
else:
    ctx.minimum_version = ssl.TLSVersion.TLSv1_3
raw = socket.create_connection(("127.0.0.1", int(port)), timeout=10)
try:
    s = ctx.wrap_socket(raw, server_hostname="localhost", suppress_ragged_eofs=False)
    if expect == "reject":
        s.settimeout(5)
        try:
            print("UNEXPECTED", s.recv(1))
        except socket.timeout:
            print("SILENT")
        sys.exit(0)
    s.sendall(b"GET / HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
    data = b""
    while True:
        chunk = s.recv(65536)
        if not chunk:
            break
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    print("OK", head.split(b" ")[1].decode(), body.decode(), s.version())
except ssl.SSLError as e:
    print("REJECTED", e.reason)
"#;

/// Runs [`PYTHON_MTLS`] expecting to be served; asserts the response.
fn python_mtls_served(srv: &TestServer, pki: &Pki, cert: Option<(&str, &str)>, version: &str) {
    let (c, k) = cert.unwrap_or(("-", "-"));
    let port = srv.addr.port().to_string();
    let out = python(PYTHON_MTLS, &[&port, pki.ca(), c, k, version, "ok"]);
    assert_eq!(
        out,
        format!("OK 200 Hello, World! TLSv{version}"),
        "certificate {cert:?}"
    );
}

/// Runs [`PYTHON_MTLS`] expecting a refusal; returns OpenSSL's reason for it.
fn python_mtls_refused(
    srv: &TestServer,
    pki: &Pki,
    cert: Option<(&str, &str)>,
    version: &str,
) -> String {
    let (c, k) = cert.unwrap_or(("-", "-"));
    let port = srv.addr.port().to_string();
    let out = python(PYTHON_MTLS, &[&port, pki.ca(), c, k, version, "reject"]);
    out.strip_prefix("REJECTED ")
        .unwrap_or_else(|| panic!("TLS {version}, certificate {cert:?}: not refused: {out}"))
        .to_string()
}

#[test]
fn client_certificates_none_relaxed_and_strict() {
    if !have("python3", "--version") {
        return;
    }
    let pki = Pki::new();
    let own = Some((pki.client_cert(), pki.client_key()));
    // A client certificate from a CA the server does not trust.
    let stranger = ThrowawayPki::generate_with_client(&["localhost"], "stranger").unwrap();
    let stranger_cert = pki.write("stranger-cert.pem", stranger.client_cert_pem().unwrap());
    let stranger_key = pki.write("stranger-key.pem", stranger.client_key_pem().unwrap());
    let stranger = Some((path_str(&stranger_cert), path_str(&stranger_key)));

    let server = |mode: ClientVerify| {
        let mut b = pki.server_builder();
        if mode != ClientVerify::None {
            b = b.verify_client(mode).ca_file(&pki.paths.ca);
        }
        tls_server(b.build().unwrap())
    };
    for version in ["1.2", "1.3"] {
        // None: certificates are neither asked for nor checked.
        let srv = server(ClientVerify::None);
        python_mtls_served(&srv, &pki, None, version);
        python_mtls_served(&srv, &pki, own, version);
        srv.stop();

        // Relaxed: no certificate is fine, but one that is sent must verify.
        let srv = server(ClientVerify::Relaxed);
        python_mtls_served(&srv, &pki, None, version);
        python_mtls_served(&srv, &pki, own, version);
        let reason = python_mtls_refused(&srv, &pki, stranger, version);
        assert!(reason.contains("UNKNOWN_CA"), "TLS {version}: {reason}");
        srv.stop();

        // Strict: a verified certificate is required.
        let srv = server(ClientVerify::Strict);
        let reason = python_mtls_refused(&srv, &pki, None, version);
        let expected = if version == "1.3" {
            "CERTIFICATE_REQUIRED" // TLS 1.3 has an alert of its own for this
        } else {
            "HANDSHAKE_FAILURE"
        };
        assert!(reason.contains(expected), "TLS {version}: {reason}");
        python_mtls_served(&srv, &pki, own, version);
        let reason = python_mtls_refused(&srv, &pki, stranger, version);
        assert!(reason.contains("UNKNOWN_CA"), "TLS {version}: {reason}");
        assert_still_serves_tls(&srv, &pki, own);
        srv.stop();
    }
}

/// A certificate-less library client is refused by a `Strict` server with an error (no
/// status), and one with the PKI's client certificate is served.
#[test]
fn library_client_certificate_against_strict_verification() {
    let pki = Pki::new();
    let srv = tls_server(
        pki.server_builder()
            .verify_client(ClientVerify::Strict)
            .ca_file(&pki.paths.ca)
            .build()
            .unwrap(),
    );
    let url = format!("https://localhost:{}/", srv.addr.port());

    let with_cert = TlsContext::client()
        .ca_file(&pki.paths.ca)
        .cert_chain_file(pki.client_cert())
        .key_file(pki.client_key())
        .build()
        .unwrap();
    let lp = OwnedLoop::new().unwrap();
    let conn = ClientConnection::with_tls(lp.handle(), &url, with_cert).unwrap();
    let rec = run_client(lp, conn, vec![step("/"), step("/chunked")]);
    assert_eq!(rec.responses.len(), 2, "{rec:?}");
    assert_eq!(rec.responses[0].body, b"Hello, World!");
    assert_eq!(rec.responses[1].body, b"one,two,three");
    assert_eq!(rec.closes, vec![None]);

    for version in [TlsVersion::Tls12, TlsVersion::Tls13] {
        let without = TlsContext::client()
            .ca_file(&pki.paths.ca)
            .min_version(version)
            .max_version(version)
            .build()
            .unwrap();
        let lp = OwnedLoop::new().unwrap();
        let conn = ClientConnection::with_tls(lp.handle(), &url, without).unwrap();
        let rec = run_client(lp, conn, vec![step("/")]);
        assert!(
            rec.responses.is_empty(),
            "{version:?}: no fake status: {rec:?}"
        );
        assert_eq!(rec.closes.len(), 1, "{rec:?}");
        let err = rec.closes[0].clone().expect("an error");
        let text = err.to_string();
        if version == TlsVersion::Tls12 {
            // The server's alert ends the handshake: a TLS error, with OpenSSL's reason.
            let tls = err
                .tls_error()
                .unwrap_or_else(|| panic!("not reported as a TLS error: {err:?}"));
            assert_eq!(tls.kind(), TlsErrorKind::Handshake, "{err}");
            assert!(text.contains("handshake failure"), "{text}");
        } else {
            // TLS 1.3: the client's side of the handshake is complete when the server's
            // alert arrives; the failure is still reported as a TLS error naming the alert.
            assert!(
                err.tls_error().is_some(),
                "not reported as a TLS error: {err:?}"
            );
            assert!(text.contains("TLS"), "{text}");
            assert!(text.contains("certificate required"), "{text}");
        }
    }
    srv.stop();
}

fn assert_still_serves_tls(srv: &TestServer, pki: &Pki, cert: Option<(&str, &str)>) {
    let mut b = TlsContext::client().ca_file(&pki.paths.ca);
    if let Some((c, k)) = cert {
        b = b.cert_chain_file(c).key_file(k);
    }
    let r = HttpsClient::connect(srv.addr, &b.build().unwrap()).request(GET_AND_CLOSE);
    assert_eq!(r.body_str(), "Hello, World!");
}

#[test]
fn ca_directories_verify_servers_and_clients() {
    if !have("openssl", "version") {
        return;
    }
    let pki = Pki::new();
    // An OpenSSL hashed directory: the CA under "<subject hash>.0".
    let hash = run_tool(
        "openssl",
        &["x509", "-hash", "-noout", "-in", pki.ca()],
        Vec::new(),
        false,
        Duration::from_secs(10),
    );
    assert!(hash.success(), "{}", hash.text());
    let hash = String::from_utf8_lossy(&hash.stdout).trim().to_string();
    let dir = pki.file("hashed");
    std::fs::create_dir(&dir).unwrap();
    std::fs::copy(&pki.paths.ca, dir.join(format!("{hash}.0"))).unwrap();

    let srv = tls_server(
        pki.server_builder()
            .verify_client(ClientVerify::Strict)
            .ca_dir(&dir)
            .build()
            .unwrap(),
    );
    let ctx = TlsContext::client()
        .ca_dir(&dir)
        .cert_chain_file(pki.client_cert())
        .key_file(pki.client_key())
        .build()
        .unwrap();
    let lp = OwnedLoop::new().unwrap();
    let url = format!("https://localhost:{}/", srv.addr.port());
    let conn = ClientConnection::with_tls(lp.handle(), &url, ctx).unwrap();
    let rec = run_client(lp, conn, vec![step("/")]);
    assert_eq!(rec.responses.len(), 1, "{rec:?}");
    assert_eq!(rec.responses[0].body, b"Hello, World!");
    srv.stop();

    // An empty directory trusts nothing: the server is rejected.
    let empty = pki.file("empty");
    std::fs::create_dir(&empty).unwrap();
    let srv = tls_server(pki.server_ctx());
    let ctx = TlsContext::client().ca_dir(&empty).build().unwrap();
    let err = client_error(&format!("https://localhost:{}/", srv.addr.port()), ctx);
    assert_eq!(
        err.tls_error().map(|e| e.kind()),
        Some(TlsErrorKind::CertificateVerify),
        "{err}"
    );
    srv.stop();
}

#[test]
fn chain_files_send_every_certificate() {
    if !have("openssl", "version") {
        return;
    }
    let pki = Pki::new();
    // Leaf followed by its issuer, as a chain file with an intermediate looks.
    let mut chain = pki.pki.cert_pem().to_vec();
    chain.extend_from_slice(pki.pki.ca_pem());
    let chain = pki.write("chain.pem", &chain);
    let ctx = TlsContext::server()
        .cert_chain_file(&chain)
        .key_file(&pki.paths.key)
        .build()
        .unwrap();
    let srv = tls_server(ctx);
    let run = s_client(
        srv.addr,
        &["-CAfile", pki.ca(), "-showcerts"],
        GET_AND_CLOSE,
    );
    let text = run.text();
    assert!(
        text.contains(" 0 s:O = uvhttp throwaway, CN = localhost"),
        "{text}"
    );
    assert!(
        text.contains(" 1 s:O = uvhttp throwaway, CN = uvhttp throwaway CA"),
        "the issuer was not sent:\n{text}"
    );
    assert!(text.contains("Hello, World!"), "{text}");
    srv.stop();
}

#[test]
fn unreadable_or_mismatched_pem_files_give_clear_errors() {
    let pki = Pki::new();
    let missing = pki.file("no-such-cert.pem");
    let err = TlsContext::server()
        .cert_chain_file(&missing)
        .key_file(&pki.paths.key)
        .build()
        .unwrap_err();
    assert_eq!(err.kind(), TlsErrorKind::Config);
    assert!(err.to_string().contains(path_str(&missing)), "{err}");

    // The key of another certificate.
    let other = ThrowawayPki::generate(&["localhost"]).unwrap();
    let other_key = pki.write("other-key.pem", other.key_pem());
    let err = TlsContext::server()
        .cert_chain_file(&pki.paths.cert)
        .key_file(&other_key)
        .build()
        .unwrap_err();
    assert_eq!(err.kind(), TlsErrorKind::Config);
    let text = err.to_string();
    assert!(
        text.contains("does not match")
            && text.contains(path_str(&pki.paths.cert))
            && text.contains(path_str(&other_key)),
        "the message names the mismatch, the key and the certificate: {text}"
    );

    let missing_ca = pki.file("no-such-ca.pem");
    let err = TlsContext::client()
        .ca_file(&missing_ca)
        .build()
        .unwrap_err();
    assert!(err.to_string().contains(path_str(&missing_ca)), "{err}");
}

// =============================================================================================
// Issue point 5: real peers
// =============================================================================================

#[test]
fn curl_reuses_one_tls_connection_for_two_urls() {
    if !have("curl", "--version") {
        return;
    }
    let pki = Pki::new();
    let srv = tls_server(pki.server_ctx());
    let port = srv.addr.port();
    let a = format!("https://localhost:{port}/");
    let b = format!("https://localhost:{port}/big?bytes=100000");
    let run = curl(&pki, port, &["-v", "-w", "\n%{num_connects}\n", &a, &b]);
    let mut expected = b"Hello, World!\n1\n".to_vec();
    expected.extend_from_slice(&[b'x'; 100_000]);
    expected.extend_from_slice(b"\n0\n");
    assert!(
        run.stdout == expected,
        "bodies and num_connects (1 then 0): {:?}",
        String::from_utf8_lossy(&run.stdout[..run.stdout.len().min(40)])
    );
    let alpn = run
        .stderr
        .lines()
        .find(|l| l.contains("ALPN") && l.contains("accepted"))
        .unwrap_or_else(|| panic!("curl reports no ALPN result:\n{}", run.stderr));
    assert!(alpn.contains("http/1.1"), "{alpn}");
    srv.stop();
}

#[test]
fn curl_posts_8_mib_and_gets_it_back() {
    if !have("curl", "--version") {
        return;
    }
    let pki = Pki::new();
    let srv = tls_server(pki.server_ctx());
    let port = srv.addr.port();
    let body = pattern(8 << 20);
    let file = pki.write("upload.bin", &body);
    let data = format!("@{}", path_str(&file));
    let url = format!("https://localhost:{port}/echo");
    let run = curl(
        &pki,
        port,
        &[
            "-H",
            "Content-Type: application/x-test",
            "--data-binary",
            &data,
            &url,
        ],
    );
    assert_eq!(run.stdout.len(), body.len());
    assert!(run.stdout == body, "8 MiB echo differs");
    srv.stop();
}

#[test]
fn curl_chunked_upload_is_echoed() {
    if !have("curl", "--version") {
        return;
    }
    let pki = Pki::new();
    let srv = tls_server(pki.server_ctx());
    let port = srv.addr.port();
    let body = pattern(2 << 20);
    let file = pki.write("chunked.bin", &body);
    let url = format!("https://localhost:{port}/echo");
    let run = curl(
        &pki,
        port,
        &[
            "-v",
            "-H",
            "Transfer-Encoding: chunked",
            "-T",
            path_str(&file),
            &url,
        ],
    );
    assert!(run.stderr.contains("> PUT /echo"), "{}", run.stderr);
    assert!(
        run.stderr.contains("> Transfer-Encoding: chunked"),
        "{}",
        run.stderr
    );
    assert!(
        run.stderr.contains("< Transfer-Encoding: chunked"),
        "{}",
        run.stderr
    );
    assert!(run.stdout == body, "chunked echo differs");
    srv.stop();
}

#[test]
fn python_https_get_post_and_reuse() {
    if !have("python3", "--version") {
        return;
    }
    const SCRIPT: &str = r#"
import http.client, ssl, sys
port, ca = int(sys.argv[1]), sys.argv[2]
for version in (ssl.TLSVersion.TLSv1_2, ssl.TLSVersion.TLSv1_3):
    ctx = ssl.create_default_context(cafile=ca)
    ctx.minimum_version = ctx.maximum_version = version
    c = http.client.HTTPSConnection("localhost", port, context=ctx, timeout=10)
    c.request("GET", "/")
    r = c.getresponse()
    body = r.read()
    assert r.status == 200 and body == b"Hello, World!", (r.status, body)
    sock = c.sock
    payload = bytes(range(256)) * 4096
    c.request("POST", "/echo", body=payload, headers={"Content-Type": "application/x-test"})
    r = c.getresponse()
    assert r.status == 200 and r.read() == payload
    c.request("POST", "/echo", body=iter([b"abc", b"defg"]), encode_chunked=True)
    r = c.getresponse()
    assert r.getheader("Transfer-Encoding") == "chunked" and r.read() == b"abcdefg"
    assert c.sock is sock, "connection not reused"
    print(sock.version(), sock.getpeercert()["subject"][-1][0][1])
    c.close()
"#;
    let pki = Pki::new();
    let srv = tls_server(pki.server_ctx());
    let out = python(SCRIPT, &[&srv.addr.port().to_string(), pki.ca()]);
    assert_eq!(out, "TLSv1.2 localhost\nTLSv1.3 localhost");
    srv.wait_connections(|n| n == 0, "python's close");
    srv.stop();
}

#[test]
fn python_request_written_byte_by_byte_is_served() {
    if !have("python3", "--version") {
        return;
    }
    // Every byte of the request is its own TLS record (and its own TCP segment).
    const SCRIPT: &str = r#"
import socket, ssl, sys, time
port, ca = int(sys.argv[1]), sys.argv[2]
ctx = ssl.create_default_context(cafile=ca)
raw = socket.create_connection(("127.0.0.1", port), timeout=10)
raw.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
s = ctx.wrap_socket(raw, server_hostname="localhost")
req = b"POST /echo HTTP/1.1\r\nHost: localhost\r\nContent-Length: 5\r\nConnection: close\r\n\r\nhello"
for i in range(len(req)):
    s.sendall(req[i:i + 1])
    time.sleep(0.001)
data = b""
while True:
    chunk = s.recv(65536)
    if not chunk:
        break
    data += chunk
head, _, body = data.partition(b"\r\n\r\n")
print(head.split(b"\r\n")[0].decode(), body.decode())
"#;
    let pki = Pki::new();
    let srv = tls_server(pki.server_ctx());
    let out = python(SCRIPT, &[&srv.addr.port().to_string(), pki.ca()]);
    assert_eq!(out, "HTTP/1.1 200 OK hello");
    srv.stop();
}

#[test]
fn garbage_instead_of_a_client_hello_is_closed_without_disturbing_others() {
    let pki = Pki::new();
    // A long handshake timeout: a prompt close can only come from rejecting the garbage.
    let srv = tls_server_with(pki.server_ctx(), |o| {
        o.tls_handshake_timeout = Duration::from_secs(30)
    });
    let mut good = HttpsClient::connect(srv.addr, &pki.client_ctx());
    let r = good.request(b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n");
    assert_eq!(r.body_str(), "Hello, World!");

    let garbage: [(&str, Vec<u8>); 3] = [
        ("plain HTTP", get("/")),
        ("random bytes", pattern(4096)),
        // A record header announcing a handshake, with a body that is not one.
        ("bad handshake", {
            let mut v = vec![0x16, 0x03, 0x01, 0x00, 0x20];
            v.extend_from_slice(&[0xee; 0x20]);
            v
        }),
    ];
    for (name, bytes) in garbage {
        let mut bad = connect(srv.addr);
        bad.write_all(&bytes).unwrap();
        let (got, took) = read_until_cut(&mut bad);
        assert!(
            !got.starts_with(b"HTTP/"),
            "{name}: answered in plain text: {:?}",
            String::from_utf8_lossy(&got)
        );
        assert!(
            got.is_empty() || got[0] == 0x15,
            "{name}: only a TLS alert may come back: {got:?}"
        );
        assert!(
            took < Duration::from_secs(5),
            "{name}: closed after {took:?}"
        );
        // The client connected before is still served on its connection.
        let r = good.request(b"GET /chunked HTTP/1.1\r\nHost: localhost\r\n\r\n");
        assert_eq!(r.body_str(), "one,two,three", "{name}");
    }
    srv.wait_connections(|n| n == 1, "the garbage connections to close");
    drop(good);
    srv.stop();
}

/// The library's client over http or https: keep-alive across responses framed by length,
/// chunked and 4 MiB long, then a read-until-close response (HTTP/1.0), after which the next
/// request reconnects.
fn library_client_round(secure: bool) {
    let pki = Pki::new();
    let srv = if secure {
        tls_server(pki.server_ctx())
    } else {
        plain_server()
    };
    let scheme = if secure { "https" } else { "http" };
    let url = format!("{scheme}://localhost:{}/", srv.addr.port());
    let lp = OwnedLoop::new().unwrap();
    let conn = ClientConnection::with_tls(lp.handle(), &url, pki.client_ctx()).unwrap();
    let big = 4usize << 20;
    let rec = run_client(
        lp,
        conn.clone(),
        vec![
            step("/"),
            step("/chunked"),
            step(&format!("/big?bytes={big}")),
            Step {
                method: "POST",
                target: "/echo".into(),
                version: Version::Http11,
                body: Some(pattern(300_000)),
            },
            Step {
                version: Version::Http10,
                ..step("/chunked")
            },
            step("/"),
        ],
    );
    let r = &rec.responses;
    assert_eq!(r.len(), 6, "{scheme}: {rec:?}");
    assert!(r.iter().all(|g| g.status == 200), "{scheme}: {r:?}");
    assert_eq!(r[0].body, b"Hello, World!");
    assert_eq!(
        r[1].header("transfer-encoding"),
        Some("chunked"),
        "{scheme}"
    );
    assert_eq!(r[1].body, b"one,two,three");
    assert_eq!(r[2].body.len(), big);
    assert!(
        r[2].body.iter().all(|&b| b == b'x'),
        "{scheme}: 4 MiB corrupted"
    );
    assert!(r[3].body == pattern(300_000), "{scheme}: echo differs");
    // HTTP/1.0 and no length: the body is delimited by the close. (The server answers with
    // its own version, HTTP/1.1, as RFC 9110 section 6.2 has it.)
    let until_close = &r[4];
    assert_eq!(until_close.version, Version::Http11, "{scheme}");
    assert_eq!(until_close.header("content-length"), None, "{scheme}");
    assert_eq!(until_close.header("transfer-encoding"), None, "{scheme}");
    assert_eq!(until_close.header("connection"), Some("close"), "{scheme}");
    assert_eq!(until_close.body, b"one,two,three", "{scheme}");
    assert_eq!(r[5].body, b"Hello, World!");
    // Five requests on the first connection, the last one on a new connection.
    assert_eq!(conn.connections_opened(), 2, "{scheme}: keep-alive reuse");
    assert_eq!(rec.connects, 2, "{scheme}");
    assert_eq!(rec.closes, vec![None], "{scheme}");
    srv.stop();
}

#[test]
fn library_client_over_https() {
    library_client_round(true);
}

#[test]
fn library_client_over_http() {
    library_client_round(false);
}

#[test]
fn library_client_reuses_the_tls_connection() {
    let pki = Pki::new();
    let srv = tls_server(pki.server_ctx());
    let lp = OwnedLoop::new().unwrap();
    let url = format!("https://localhost:{}/", srv.addr.port());
    let conn = ClientConnection::with_tls(lp.handle(), &url, pki.client_ctx()).unwrap();
    let rec = run_client(lp, conn.clone(), vec![step("/"), step("/"), step("/")]);
    assert_eq!(rec.responses.len(), 3);
    assert_eq!(conn.connections_opened(), 1);
    assert_eq!(rec.connects, 1);
    srv.stop();
}

/// Text, binary and a 1 MiB message through the library's WebSocket client, over ws or wss.
fn websocket_round(secure: bool) {
    let pki = Pki::new();
    let srv = if secure {
        tls_server(pki.server_ctx())
    } else {
        plain_server()
    };
    let scheme = if secure { "wss" } else { "ws" };
    let url = format!("{scheme}://localhost:{}/ws", srv.addr.port());
    let big = pattern(1 << 20);
    let sent: Vec<(MessageKind, Vec<u8>)> = vec![
        (MessageKind::Text, "hello over TLS ✓".as_bytes().to_vec()),
        (MessageKind::Binary, vec![0, 1, 2, 0xff]),
        (MessageKind::Binary, big),
    ];
    let lp = OwnedLoop::new().unwrap();
    let options = ws::ClientOptions {
        tls: Some(pki.client_ctx()),
        ..ws::ClientOptions::default()
    };
    let socket = ws::connect(lp.handle(), &url, options).expect("connect");
    let received = Rc::new(RefCell::new(Vec::new()));
    let closes = Rc::new(RefCell::new(Vec::new()));
    let connected = Rc::new(Cell::new(false));
    let c = connected.clone();
    let to_send = sent.clone();
    socket.connect.attach(move |s| {
        c.set(true);
        for (kind, data) in &to_send {
            s.send(data, *kind).expect("send");
        }
    });
    let r = received.clone();
    let expected = sent.len();
    socket.message.attach(move |s, kind, data| {
        r.borrow_mut().push((kind, data.to_vec()));
        if r.borrow().len() == expected {
            s.shutdown(1000, "done").expect("close");
        }
    });
    let cl = closes.clone();
    socket
        .close
        .attach(move |_, code, reason| cl.borrow_mut().push((code, reason.to_string())));
    run_loop(&lp, Duration::from_secs(30));
    drop(socket);
    lp.close().expect("the client loop closes cleanly");
    assert!(
        connected.get(),
        "{scheme}: never connected: {:?}",
        closes.borrow()
    );
    let received = received.borrow();
    assert_eq!(
        received.len(),
        sent.len(),
        "{scheme}: {:?}",
        closes.borrow()
    );
    for (i, ((kind, data), (got_kind, got))) in sent.iter().zip(received.iter()).enumerate() {
        assert_eq!(kind, got_kind, "{scheme}: message {i} kind");
        assert!(data == got, "{scheme}: message {i} differs");
    }
    // The close code is the server's echo of ours (its reason may differ).
    let closes = closes.borrow();
    assert_eq!(closes.len(), 1, "{scheme}: {closes:?}");
    assert_eq!(closes[0].0, Some(1000), "{scheme}: {closes:?}");
    srv.stop();
}

#[test]
fn wss_echo_with_the_library_client() {
    websocket_round(true);
}

#[test]
fn ws_echo_with_the_library_client() {
    websocket_round(false);
}

#[test]
fn bad_certificates_give_clear_errors_from_the_library_clients() {
    let pki = Pki::new();
    let srv = tls_server(pki.server_ctx());
    let port = srv.addr.port();

    // A CA the client trusts, but not the one that issued the server's certificate.
    let stranger = ThrowawayPki::generate(&["localhost"]).unwrap();
    let trusts_stranger = TlsContext::client()
        .ca_pem(stranger.ca_pem())
        .build()
        .unwrap();
    let err = client_error(
        &format!("https://localhost:{port}/"),
        trusts_stranger.clone(),
    );
    assert!(matches!(err, ClientError::Tls { .. }), "{err:?}");
    assert_eq!(
        err.tls_error().unwrap().kind(),
        TlsErrorKind::CertificateVerify,
        "{err}"
    );
    let text = err.to_string();
    assert!(text.contains("certificate verify failed"), "{text}");
    assert!(
        text.contains(&format!("localhost:{port}")),
        "names the peer: {text}"
    );

    // The right CA, but a certificate for another name.
    let other_name = pki.pki.issue_server_certificate(&["other.test"]).unwrap();
    let srv2 = tls_server(
        TlsContext::server()
            .cert_chain_pem(other_name.cert_pem())
            .key_pem(other_name.key_pem())
            .build()
            .unwrap(),
    );
    let err = client_error(
        &format!("https://localhost:{}/", srv2.addr.port()),
        pki.client_ctx(),
    );
    assert_eq!(
        err.tls_error().map(|e| e.kind()),
        Some(TlsErrorKind::CertificateVerify),
        "{err}"
    );
    let text = err.to_string();
    assert!(text.contains("certificate verify failed"), "{text}");
    assert!(text.contains("localhost"), "names the host checked: {text}");
    srv2.stop();

    // wss: the WebSocket client closes once, with 1006 and the reason.
    let lp = OwnedLoop::new().unwrap();
    let options = ws::ClientOptions {
        tls: Some(trusts_stranger),
        ..ws::ClientOptions::default()
    };
    let socket = ws::connect(lp.handle(), &format!("wss://localhost:{port}/ws"), options).unwrap();
    let closes = Rc::new(RefCell::new(Vec::new()));
    let connected = Rc::new(Cell::new(false));
    let c = connected.clone();
    socket.connect.attach(move |_| c.set(true));
    let cl = closes.clone();
    socket
        .close
        .attach(move |_, code, reason| cl.borrow_mut().push((code, reason.to_string())));
    run_loop(&lp, Duration::from_secs(30));
    drop(socket);
    lp.close().expect("the client loop closes cleanly");
    assert!(!connected.get());
    let closes = closes.borrow();
    assert_eq!(closes.len(), 1, "{closes:?}");
    assert_eq!(closes[0].0, Some(1006), "{closes:?}");
    assert!(
        closes[0].1.contains("certificate verify failed"),
        "{closes:?}"
    );
    // The failed handshakes did not disturb the server.
    assert_still_serves_tls(&srv, &pki, None);
    srv.stop();
}

// ---- the sample binary ----------------------------------------------------------------------

#[test]
fn httpechoserver_example_serves_https() {
    let pki = Pki::new();
    let mut sample = SampleServer::start(&[
        "--tls-cert".as_ref(),
        pki.paths.cert.as_os_str(),
        "--tls-key".as_ref(),
        pki.paths.key.as_os_str(),
    ]);
    let addr = sample.addr;

    let mut c = HttpsClient::connect(addr, &pki.client_ctx());
    let r = c.request(b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n");
    assert_eq!(r.body_str(), "Hello, World!");
    let body = pattern(200_000);
    let mut raw = format!(
        "POST /echo HTTP/1.1\r\nHost: localhost\r\nContent-Length: {}\r\n\r\n",
        body.len()
    )
    .into_bytes();
    raw.extend_from_slice(&body);
    let r = c.request(&raw);
    assert!(r.body == body, "echo through the sample differs");

    // SIGTERM: the idle TLS connection is closed with close_notify, the process exits 0.
    sample.signal("-TERM");
    c.expect_close_notify();
    drop(c);
    let (code, stderr) = sample.wait_exit("SIGTERM");
    assert_eq!(code, Some(0), "exit status; stderr: {stderr}");
}

//! Test harness: a server on its own loop in a thread, and a small blocking HTTP client.
//!
//! Every `TestServer` ends with `stop()`, which stops the server gracefully, runs the loop
//! until it drains and asserts that `uv_loop_close` succeeds: no test can leak a handle.
#![allow(dead_code)]

use std::cell::RefCell;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::mpsc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use uvhttp::http::{Server, ServerConnectionPtr};
use uvhttp::uv::{self, Async, OwnedLoop, Remote};

thread_local! {
    static SERVER: RefCell<Option<Server>> = const { RefCell::new(None) };
    static MAILBOX: RefCell<Option<Async>> = const { RefCell::new(None) };
}

/// A server running on its own loop thread.
pub struct TestServer {
    pub addr: SocketAddr,
    remote: Remote,
    thread: Option<JoinHandle<Result<(), String>>>,
}

impl TestServer {
    /// Starts a server on 127.0.0.1 (port 0); `setup` runs on the loop thread before `start()`.
    pub fn start(setup: impl FnOnce(&mut Server) + Send + 'static) -> TestServer {
        Self::start_on("127.0.0.1", setup)
    }

    /// Same, on another host address (e.g. "::1").
    pub fn start_on(
        host: &'static str,
        setup: impl FnOnce(&mut Server) + Send + 'static,
    ) -> TestServer {
        Self::start_with(move |lp| {
            let mut srv = Server::with_loop(lp, host, 0).expect("server");
            setup(&mut srv);
            srv
        })
    }

    /// Starts a server built by `make` on the loop thread.
    pub fn start_with(make: impl FnOnce(uv::Loop) -> Server + Send + 'static) -> TestServer {
        init_logging();
        let (tx, rx) = mpsc::channel();
        let thread = std::thread::spawn(move || -> Result<(), String> {
            let lp = OwnedLoop::new().map_err(|e| e.to_string())?;
            let srv = make(lp.handle());
            srv.start().map_err(|e| e.to_string())?;
            let mailbox = Async::new(lp.handle()).map_err(|e| e.to_string())?;
            tx.send((srv.address().unwrap(), mailbox.remote())).unwrap();
            SERVER.with(|s| *s.borrow_mut() = Some(srv));
            MAILBOX.with(|m| *m.borrow_mut() = Some(mailbox));
            lp.handle().run(uv::RunMode::Default);
            SERVER.with(|s| s.borrow_mut().take());
            lp.close()
                .map_err(|e| format!("loop did not close cleanly: {e}"))
        });
        let (addr, remote) = rx
            .recv_timeout(Duration::from_secs(10))
            .expect("server thread started");
        TestServer {
            addr,
            remote,
            thread: Some(thread),
        }
    }

    /// Runs `f` with the server on its loop thread and returns the result.
    pub fn with_server<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Server) -> T + Send + 'static,
    ) -> T {
        let (tx, rx) = mpsc::channel();
        self.remote
            .post(move || {
                let r = SERVER.with(|s| f(s.borrow().as_ref().expect("server alive")));
                let _ = tx.send(r);
            })
            .expect("loop alive");
        rx.recv_timeout(Duration::from_secs(10))
            .expect("loop answered")
    }

    /// Runs `f` on the loop thread (without the server).
    pub fn on_loop(&self, f: impl FnOnce() + Send + 'static) {
        self.remote.post(f).expect("loop alive");
    }

    /// Open connections, as the server counts them.
    pub fn connection_count(&self) -> usize {
        self.with_server(|s| s.connection_count())
    }

    /// Waits (bounded) until `cond` holds for the connection count.
    pub fn wait_connections(&self, cond: impl Fn(usize) -> bool, what: &str) {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let n = self.connection_count();
            if cond(n) {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "timed out waiting for {what} (count {n})"
            );
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    /// Starts a graceful stop without waiting for it.
    pub fn begin_stop(&self) {
        self.remote
            .post(|| SERVER.with(|s| s.borrow().as_ref().unwrap().stop()))
            .expect("loop alive");
    }

    /// Stops gracefully, waits for the loop to drain, and asserts `uv_loop_close` succeeded.
    pub fn stop(mut self) {
        self.finish();
    }

    fn finish(&mut self) {
        let Some(thread) = self.thread.take() else {
            return;
        };
        let _ = self.remote.post(|| {
            SERVER.with(|s| {
                if let Some(srv) = s.borrow().as_ref() {
                    srv.stop();
                }
            });
            // Close the mailbox so the loop can exit once the server is done.
            MAILBOX.with(|m| m.borrow_mut().take());
        });
        let deadline = Instant::now() + Duration::from_secs(20);
        while !thread.is_finished() {
            assert!(
                Instant::now() < deadline,
                "server loop did not exit after stop()"
            );
            std::thread::sleep(Duration::from_millis(5));
        }
        match thread.join() {
            Ok(Ok(())) => {}
            Ok(Err(e)) => panic!("{e}"),
            Err(_) => panic!("server thread panicked"),
        }
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        if !std::thread::panicking() {
            self.finish();
        }
    }
}

/// A parsed response as a test client sees it.
#[derive(Debug, Clone)]
pub struct Reply {
    pub status: u16,
    pub reason: String,
    pub version: String,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    /// Trailer fields of a chunked body.
    pub trailers: Vec<(String, String)>,
}

impl Reply {
    /// First value of a header (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub fn body_str(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// True if the server said it will close.
    pub fn closes(&self) -> bool {
        self.header("connection")
            .map(|v| v.eq_ignore_ascii_case("close"))
            .unwrap_or(false)
    }
}

/// A blocking TCP connection with read and write timeouts (tests never hang) and no Nagle delay.
pub fn connect(addr: SocketAddr) -> TcpStream {
    let s = TcpStream::connect(addr).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.set_write_timeout(Some(Duration::from_secs(10))).unwrap();
    s.set_nodelay(true).unwrap();
    s
}

/// A blocking client connection with a read timeout (tests never hang).
pub struct Client {
    reader: BufReader<TcpStream>,
}

impl Client {
    pub fn connect(addr: SocketAddr) -> Client {
        Client {
            reader: BufReader::new(connect(addr)),
        }
    }

    pub fn stream(&mut self) -> &mut TcpStream {
        self.reader.get_mut()
    }

    pub fn send(&mut self, bytes: &[u8]) {
        self.stream().write_all(bytes).expect("write");
    }

    /// Sends a request and reads its response.
    pub fn request(&mut self, raw: &[u8]) -> Reply {
        self.send(raw);
        self.read_reply()
    }

    /// Reads one response (Content-Length, chunked, or until close). `head_request` for HEAD.
    pub fn read_reply(&mut self) -> Reply {
        self.read_reply_for(false)
    }

    pub fn read_reply_for(&mut self, head_request: bool) -> Reply {
        loop {
            let r = read_response(&mut self.reader, head_request);
            if (100..200).contains(&r.status) && r.status != 101 {
                continue; // interim responses (100 Continue) precede the final one
            }
            return r;
        }
    }

    fn read_line(&mut self) -> String {
        read_crlf_line(&mut self.reader)
    }

    /// Reads one response, interim (1xx) ones included.
    pub fn read_any(&mut self, head_request: bool) -> Reply {
        read_response(&mut self.reader, head_request)
    }

    /// True if the server closed the connection (EOF or reset) within the read timeout; false
    /// if data arrived or the read timed out (a timeout is not a close).
    pub fn is_closed_by_server(&mut self) -> bool {
        let mut buf = [0u8; 1];
        match read_uninterrupted(&mut self.reader, &mut buf) {
            Ok(0) => true,
            Ok(_) => false,
            Err(e) => !matches!(
                e.kind(),
                std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
            ),
        }
    }

    /// Asserts that the server closed the connection cleanly: the next read sees EOF (FIN, not
    /// a reset, not more data, not a timeout) within the read timeout.
    pub fn expect_clean_close(&mut self) {
        let mut buf = [0u8; 64];
        match read_uninterrupted(&mut self.reader, &mut buf) {
            Ok(0) => {}
            Ok(n) => panic!(
                "expected the server to close, got {n} more bytes: {:?}",
                String::from_utf8_lossy(&buf[..n])
            ),
            Err(e) => panic!("expected a clean close (EOF), got {e} ({:?})", e.kind()),
        }
    }

    /// Asserts that the connection is still open: nothing arrives and no EOF within `quiet`.
    pub fn expect_open_for(&mut self, quiet: Duration) {
        let old = self.reader.get_ref().read_timeout().unwrap();
        self.reader.get_ref().set_read_timeout(Some(quiet)).unwrap();
        let mut buf = [0u8; 64];
        let r = read_uninterrupted(&mut self.reader, &mut buf);
        self.reader.get_ref().set_read_timeout(old).unwrap();
        match r {
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) => {}
            Ok(0) => panic!("the server closed a connection that should stay open"),
            Ok(n) => panic!(
                "unexpected {n} bytes: {:?}",
                String::from_utf8_lossy(&buf[..n])
            ),
            Err(e) => panic!("connection failed while it should stay open: {e}"),
        }
    }

    /// Sets how long a read may block before the test fails.
    pub fn set_read_timeout(&mut self, t: Duration) {
        self.reader.get_ref().set_read_timeout(Some(t)).unwrap();
    }

    /// Reads a raw response head (through the blank line), without interpreting it.
    pub fn read_head_raw(&mut self) -> String {
        let mut head = String::new();
        loop {
            let mut line = String::new();
            let n = self.reader.read_line(&mut line).expect("read head line");
            assert!(n > 0, "connection closed inside a response head: {head:?}");
            head.push_str(&line);
            if line == "\r\n" {
                return head;
            }
        }
    }

    /// Reads exactly `n` bytes.
    pub fn read_exact_bytes(&mut self, n: usize) -> Vec<u8> {
        let mut v = vec![0; n];
        self.reader.read_exact(&mut v).expect("read bytes");
        v
    }

    /// Bytes already received and buffered by this client but not consumed yet.
    pub fn buffered(&self) -> &[u8] {
        self.reader.buffer()
    }

    /// Reads everything until the server closes.
    pub fn read_to_close(&mut self) -> Vec<u8> {
        let mut out = Vec::new();
        let _ = self.reader.read_to_end(&mut out);
        out
    }
}

/// Reads one line of a response head or chunked body, without its line ending.
pub fn read_crlf_line(reader: &mut impl BufRead) -> String {
    try_read_line(reader).expect("connection closed while reading a response")
}

/// The next line without its line ending; `None` at EOF (or a reset).
fn try_read_line(reader: &mut impl BufRead) -> Option<String> {
    let mut line = String::new();
    match reader.read_line(&mut line) {
        Ok(0) | Err(_) => None,
        Ok(_) => Some(line.trim_end_matches(['\r', '\n']).to_string()),
    }
}

/// Reads one response (interim ones included) from any byte stream, plain or TLS; panics if
/// the stream ends first. See [`try_read_response`].
pub fn read_response(reader: &mut impl BufRead, head_request: bool) -> Reply {
    try_read_response(reader, head_request).expect("connection closed while reading a response")
}

/// Reads one response (interim ones included): framed by Content-Length, chunked (trailers
/// kept in `trailers`), or until close. `head_request` for HEAD, whose response has no body
/// whatever its fields say. `None` if the stream ends (EOF or reset) before the response is
/// complete, so a test can count the responses that arrived before a close.
pub fn try_read_response(reader: &mut impl BufRead, head_request: bool) -> Option<Reply> {
    let status_line = try_read_line(reader)?;
    let mut parts = status_line.splitn(3, ' ');
    let version = parts.next().unwrap_or("").to_string();
    let status: u16 = parts
        .next()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("bad status line {status_line:?}"));
    let reason = parts.next().unwrap_or("").to_string();
    let headers = read_fields(reader)?;
    let mut reply = Reply {
        status,
        reason,
        version,
        headers,
        body: Vec::new(),
        trailers: Vec::new(),
    };
    if head_request || (100..200).contains(&status) || status == 204 || status == 304 {
        return Some(reply);
    }
    if reply
        .header("transfer-encoding")
        .map(|v| v.eq_ignore_ascii_case("chunked"))
        .unwrap_or(false)
    {
        loop {
            let size_line = try_read_line(reader)?;
            let size = usize::from_str_radix(size_line.split(';').next().unwrap().trim(), 16)
                .unwrap_or_else(|_| panic!("bad chunk size line {size_line:?}"));
            if size == 0 {
                reply.trailers = read_fields(reader)?;
                break;
            }
            let start = reply.body.len();
            reply.body.resize(start + size, 0);
            reader.read_exact(&mut reply.body[start..]).ok()?;
            let mut crlf = [0u8; 2];
            reader.read_exact(&mut crlf).ok()?;
            assert_eq!(&crlf, b"\r\n", "chunk not followed by CRLF");
        }
    } else if let Some(len) = reply.header("content-length") {
        let len: usize = len.parse().expect("content-length");
        reply.body = vec![0; len];
        reader.read_exact(&mut reply.body).ok()?;
    } else {
        reader.read_to_end(&mut reply.body).ok()?;
    }
    Some(reply)
}

/// Field lines up to the blank line; `None` if the stream ends first.
fn read_fields(reader: &mut impl BufRead) -> Option<Vec<(String, String)>> {
    let mut fields = Vec::new();
    loop {
        let line = try_read_line(reader)?;
        if line.is_empty() {
            return Some(fields);
        }
        let (n, v) = line.split_once(':').expect("header line");
        fields.push((n.to_string(), v.trim().to_string()));
    }
}

/// One request on a fresh connection.
pub fn request(addr: SocketAddr, raw: &[u8]) -> Reply {
    Client::connect(addr).request(raw)
}

/// Everything the server sends back for `raw` until it closes the connection.
pub fn exchange_until_close(addr: SocketAddr, raw: &[u8]) -> String {
    let mut c = Client::connect(addr);
    c.send(raw);
    String::from_utf8_lossy(&c.read_to_close()).into_owned()
}

/// A plain GET request text.
pub fn get(path: &str) -> Vec<u8> {
    format!("GET {path} HTTP/1.1\r\nHost: test\r\n\r\n").into_bytes()
}

/// The server of the README sample, built on the test's loop (same routes as
/// examples/httpechoserver.rs, which the tests also run as a process).
pub fn hello_server() -> TestServer {
    TestServer::start(|srv| {
        srv.connection += |conn: uvhttp::http::ServerConnectionPtr| {
            let _ = conn.respond(uvhttp::http::StatusCode::OK, "text/plain", b"Hello, World!");
        };
    })
}

struct TestLogger;
impl log::Log for TestLogger {
    fn enabled(&self, _: &log::Metadata) -> bool {
        true
    }
    fn log(&self, r: &log::Record) {
        let line = format!("[{}] {}", r.level(), r.args());
        eprintln!("{line}");
        if r.level() <= log::Level::Warn {
            CAPTURED_LOG.lock().unwrap().push(line);
        }
    }
    fn flush(&self) {}
}

/// Warnings and errors logged so far by every server in this test binary.
static CAPTURED_LOG: std::sync::Mutex<Vec<String>> = std::sync::Mutex::new(Vec::new());

/// Waits (bounded) until a warning or error containing `needle` has been logged, and returns
/// that line. Tests in one binary run in parallel: make `needle` specific (a unique path).
pub fn wait_for_log(needle: &str) -> String {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        if let Some(line) = CAPTURED_LOG
            .lock()
            .unwrap()
            .iter()
            .find(|l| l.contains(needle))
        {
            return line.clone();
        }
        assert!(
            Instant::now() < deadline,
            "nothing containing {needle:?} was logged"
        );
        std::thread::sleep(Duration::from_millis(2));
    }
}

/// Logs to stderr (shown for failing tests) at the level in `UVHTTP_LOG` (default warn).
pub fn init_logging() {
    let level = match std::env::var("UVHTTP_LOG").as_deref() {
        Ok("debug") => log::LevelFilter::Debug,
        Ok("trace") => log::LevelFilter::Trace,
        Ok("info") => log::LevelFilter::Info,
        _ => log::LevelFilter::Warn,
    };
    if log::set_logger(&TestLogger).is_ok() {
        log::set_max_level(level);
    }
}

/// Asserts that a fresh client gets `200 Hello, World!` from `GET /`: the server still serves
/// after whatever the test did to it. Works with [`hello_server`] and [`sample_server`].
pub fn assert_still_serves(addr: SocketAddr) {
    let r = request(addr, &get("/"));
    assert_eq!(r.status, 200, "server no longer serves: {r:?}");
    assert_eq!(r.body_str(), "Hello, World!");
}

/// Polls `cond` every few milliseconds until it holds; fails after `limit`.
pub fn wait_until(limit: Duration, what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(2));
    }
}

/// A deterministic, non-repeating-looking test body of `n` bytes.
pub fn pattern(n: usize) -> Vec<u8> {
    (0..n)
        .map(|i| (i.wrapping_mul(31) ^ (i >> 8).wrapping_mul(7)) as u8)
        .collect()
}

/// `body` as a chunked request body, cut into chunks of `chunk` bytes (last chunk and an
/// empty trailer section included).
pub fn chunked(body: &[u8], chunk: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(body.len() + body.len() / chunk.max(1) * 8 + 8);
    for piece in body.chunks(chunk.max(1)) {
        out.extend_from_slice(format!("{:x}\r\n", piece.len()).as_bytes());
        out.extend_from_slice(piece);
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b"0\r\n\r\n");
    out
}

/// The sample server (examples/httpechoserver.rs) on the test's loop.
pub fn sample_server() -> TestServer {
    TestServer::start(|srv| {
        srv.connection += |conn: ServerConnectionPtr| sample::route(&conn);
    })
}

/// The request handlers of examples/httpechoserver.rs: the very same module the example
/// compiles, so the tests cannot drift from it.
#[path = "../../examples/support/routes.rs"]
pub mod sample;

/// An example binary of this crate, `target/<profile>/examples/<name>`, found next to this test
/// executable (`target/<profile>/deps/<test>-*`). `cargo test` builds the examples first; a
/// filtered run (`cargo test --test NAME`) may not, so a missing one is built on demand.
pub fn example_binary(name: &str) -> std::path::PathBuf {
    let exe = std::env::current_exe().expect("test executable path");
    let profile_dir = exe
        .parent()
        .and_then(|deps| deps.parent())
        .expect("target/<profile>");
    let path = profile_dir
        .join("examples")
        .join(format!("{name}{}", std::env::consts::EXE_SUFFIX));
    if !path.exists() {
        let status = std::process::Command::new(env!("CARGO"))
            .args(["build", "--example", name])
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .status()
            .expect("run cargo build --example");
        assert!(status.success(), "building the {name} example failed");
    }
    assert!(
        path.exists(),
        "{} not found (run `cargo build --examples`)",
        path.display()
    );
    path
}

/// The sample server binary (`examples/httpechoserver.rs`) running as a child process on
/// 127.0.0.1 and a free port, as a user runs it; killed if the test fails half-way.
pub struct SampleServer {
    child: Option<std::process::Child>,
    /// Where it listens (from its first line, `listening on http[s]://ADDR`).
    pub addr: SocketAddr,
    /// What it writes to stderr, collected until it exits (so the pipe never fills).
    stderr: Option<JoinHandle<String>>,
}

impl SampleServer {
    /// Starts `httpechoserver --host 127.0.0.1 --port 0 EXTRA_ARGS` (logging left at its
    /// default) and waits, bounded, for the address it prints.
    pub fn start<S: AsRef<std::ffi::OsStr>>(extra_args: &[S]) -> SampleServer {
        use std::process::{Command, Stdio};
        let path = example_binary("httpechoserver");
        let mut child = Command::new(&path)
            .args(["--host", "127.0.0.1", "--port", "0"])
            .args(extra_args)
            .env_remove("UVHTTP_LOG")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", path.display()));
        let stdout = child.stdout.take().expect("stdout");
        let mut stderr = child.stderr.take().expect("stderr");
        let stderr = std::thread::spawn(move || {
            let mut text = String::new();
            let _ = stderr.read_to_string(&mut text);
            text
        });
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let mut lines = BufReader::new(stdout).lines();
            if let Some(Ok(line)) = lines.next() {
                let _ = tx.send(line);
            }
            // Keep draining so the child never blocks on a full pipe.
            for _ in lines {}
        });
        let mut sample = SampleServer {
            child: Some(child),
            addr: SocketAddr::from(([0, 0, 0, 0], 0)),
            stderr: Some(stderr),
        };
        let line = rx
            .recv_timeout(Duration::from_secs(10))
            .expect("the sample printed its address");
        sample.addr = line
            .trim()
            .strip_prefix("listening on http://")
            .or_else(|| line.trim().strip_prefix("listening on https://"))
            .and_then(|a| a.parse().ok())
            .unwrap_or_else(|| panic!("unexpected first line {line:?}"));
        assert_ne!(sample.addr.port(), 0, "the real port is printed, not 0");
        sample
    }

    /// Sends `signal` (`-TERM`, `-INT`) with kill(1) and waits, bounded, for the exit; returns
    /// the exit code and everything the sample wrote to stderr.
    pub fn signal_and_wait(&mut self, signal: &str) -> (Option<i32>, String) {
        self.signal(signal);
        self.wait_exit(signal)
    }

    /// Sends `signal` with kill(1).
    pub fn signal(&self, signal: &str) {
        let child = self.child.as_ref().expect("still running");
        let status = std::process::Command::new("kill")
            .args([signal, &child.id().to_string()])
            .status()
            .expect("run kill");
        assert!(status.success(), "kill {signal} failed");
    }

    /// Waits, bounded, for the exit that `after` (a signal sent) should cause; returns the exit
    /// code and everything the sample wrote to stderr.
    pub fn wait_exit(&mut self, after: &str) -> (Option<i32>, String) {
        let mut child = self.child.take().expect("still running");
        let deadline = Instant::now() + Duration::from_secs(10);
        let exit = loop {
            if let Some(s) = child.try_wait().expect("wait") {
                break s;
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                panic!("the sample did not exit after {after}");
            }
            std::thread::sleep(Duration::from_millis(5));
        };
        let stderr = self
            .stderr
            .take()
            .map(|h| h.join().unwrap_or_default())
            .unwrap_or_default();
        (exit.code(), stderr)
    }
}

impl Drop for SampleServer {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// `r.read(buf)`, tried again when a signal interrupted it. A read on a socket with a timeout
/// is not restarted after a signal handler runs, whatever `SA_RESTART` says (signal(7)), so a
/// plain `read` can fail with `Interrupted` where `read_exact` would not.
pub fn read_uninterrupted(r: &mut impl Read, buf: &mut [u8]) -> std::io::Result<usize> {
    loop {
        match r.read(buf) {
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            other => return other,
        }
    }
}

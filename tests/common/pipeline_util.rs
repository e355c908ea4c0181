//! Helpers shared by tests/pipeline.rs and tests/streaming.rs: a seeded random source, one-shot
//! loop timers, a fast reader of many pipelined responses, and the sample binary's process.
//!
//! Included with `#[path = "common/pipeline_util.rs"] mod pipeline_util;` so that
//! tests/common/mod.rs (shared with other test files) stays untouched.
#![allow(dead_code)]

use std::cell::RefCell;
use std::io::{BufRead, BufReader, Read};
use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::rc::Rc;
use std::time::{Duration, Instant};

use uvhttp::uv::{Loop, Timer};

/// A small deterministic generator (xorshift64*): the same seed gives the same delays on every
/// run, so a failure can be replayed.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed.max(1))
    }

    pub fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// A number in `0..n`.
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n.max(1)
    }
}

/// Runs `f` once on `lp` after `ms` milliseconds, then closes the timer (so the loop can exit
/// and `uv_loop_close` succeeds). Must be called on the loop's thread.
pub fn after(lp: Loop, ms: u64, f: impl FnOnce() + 'static) {
    let timer = Timer::new(lp).expect("timer");
    let slot: Rc<RefCell<Option<Timer>>> = Rc::new(RefCell::new(None));
    let slot_in_cb = slot.clone();
    let mut f = Some(f);
    timer
        .start(ms, 0, move || {
            if let Some(f) = f.take() {
                f();
            }
            // Dropping the timer from inside its callback closes it.
            slot_in_cb.borrow_mut().take();
        })
        .expect("timer start");
    *slot.borrow_mut() = Some(timer);
}

/// Runs `tick(i)` on `lp` every `interval_ms` (first after `interval_ms`) until it returns
/// false, then closes the timer.
pub fn every(lp: Loop, interval_ms: u64, mut tick: impl FnMut(u64) -> bool + 'static) {
    let timer = Timer::new(lp).expect("timer");
    let slot: Rc<RefCell<Option<Timer>>> = Rc::new(RefCell::new(None));
    let slot_in_cb = slot.clone();
    let mut i = 0;
    timer
        .start(interval_ms, interval_ms, move || {
            let more = tick(i);
            i += 1;
            if !more {
                slot_in_cb.borrow_mut().take();
            }
        })
        .expect("timer start");
    *slot.borrow_mut() = Some(timer);
}

/// One response as read by [`ResponseReader`]: enough to check status, order and framing.
#[derive(Debug, Clone)]
pub struct Resp {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    /// Trailer fields of a chunked body.
    pub trailers: Vec<(String, String)>,
}

impl Resp {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub fn body_str(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    pub fn closes(&self) -> bool {
        self.header("connection")
            .map(|v| v.eq_ignore_ascii_case("close"))
            .unwrap_or(false)
    }
}

/// Reads responses one after another from a stream (Content-Length or chunked bodies).
/// Unlike `common::Client` it reports a close as `None` instead of panicking, so a test can
/// count how many responses arrived before the server closed.
pub struct ResponseReader<R: Read> {
    r: BufReader<R>,
    line: String,
}

impl<R: Read> ResponseReader<R> {
    pub fn new(r: R) -> Self {
        ResponseReader {
            r: BufReader::with_capacity(256 * 1024, r),
            line: String::new(),
        }
    }

    pub fn inner(&mut self) -> &mut BufReader<R> {
        &mut self.r
    }

    /// Next line without CRLF; `None` at EOF (or a reset).
    fn line(&mut self) -> Option<&str> {
        self.line.clear();
        match self.r.read_line(&mut self.line) {
            Ok(0) | Err(_) => None,
            Ok(_) => Some(self.line.trim_end_matches(['\r', '\n'])),
        }
    }

    fn fields(&mut self) -> Option<Vec<(String, String)>> {
        let mut out = Vec::new();
        loop {
            let l = self.line()?;
            if l.is_empty() {
                return Some(out);
            }
            let (n, v) = l.split_once(':').expect("field line");
            out.push((n.to_string(), v.trim().to_string()));
        }
    }

    /// The next response, or `None` if the connection ended first. A close in the middle of a
    /// response also gives `None`.
    pub fn next_response(&mut self) -> Option<Resp> {
        let status_line = self.line()?.to_string();
        let status: u16 = status_line
            .split(' ')
            .nth(1)
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| panic!("bad status line {status_line:?}"));
        let headers = self.fields()?;
        let mut resp = Resp {
            status,
            headers,
            body: Vec::new(),
            trailers: Vec::new(),
        };
        if resp
            .header("transfer-encoding")
            .map(|v| v.eq_ignore_ascii_case("chunked"))
            .unwrap_or(false)
        {
            loop {
                let size_line = self.line()?.to_string();
                let size = usize::from_str_radix(size_line.split(';').next()?.trim(), 16)
                    .unwrap_or_else(|_| panic!("bad chunk size line {size_line:?}"));
                if size == 0 {
                    resp.trailers = self.fields()?;
                    return Some(resp);
                }
                let start = resp.body.len();
                resp.body.resize(start + size, 0);
                self.r.read_exact(&mut resp.body[start..]).ok()?;
                let mut crlf = [0u8; 2];
                self.r.read_exact(&mut crlf).ok()?;
                assert_eq!(&crlf, b"\r\n", "chunk not followed by CRLF");
            }
        } else if let Some(len) = resp.header("content-length") {
            let len: usize = len.parse().expect("content-length");
            resp.body = vec![0; len];
            self.r.read_exact(&mut resp.body).ok()?;
        }
        Some(resp)
    }

    /// True if the stream ends (EOF or reset) with no further bytes.
    pub fn at_eof(&mut self) -> bool {
        let mut b = [0u8; 1];
        matches!(self.r.read(&mut b), Ok(0) | Err(_))
    }
}

/// A connected stream with timeouts set, so a test can never hang on it.
pub fn connect(addr: SocketAddr) -> TcpStream {
    let s = TcpStream::connect(addr).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.set_write_timeout(Some(Duration::from_secs(10))).unwrap();
    s.set_nodelay(true).unwrap();
    s
}

/// The sample server binary (`examples/httpechoserver.rs`) running as a child process; killed
/// on drop.
pub struct SampleProcess {
    pub child: Child,
    pub addr: SocketAddr,
}

impl SampleProcess {
    /// Starts `target/<profile>/examples/httpechoserver --host 127.0.0.1 --port 0` and waits
    /// for its `listening on http://ADDR` line.
    pub fn start(extra_args: &[&str]) -> SampleProcess {
        let path = sample_binary();
        let mut child = Command::new(&path)
            .args(["--host", "127.0.0.1", "--port", "0"])
            .args(extra_args)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", path.display()));
        let stdout = child.stdout.take().expect("stdout");
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut lines = BufReader::new(stdout).lines();
            if let Some(Ok(l)) = lines.next() {
                let _ = tx.send(l);
            }
            // Keep draining so the child never blocks on a full pipe.
            for _ in lines {}
        });
        let line = match rx.recv_timeout(Duration::from_secs(10)) {
            Ok(l) => l,
            Err(_) => {
                let _ = child.kill();
                panic!("httpechoserver did not print its address");
            }
        };
        let addr = line
            .strip_prefix("listening on http://")
            .and_then(|a| a.parse().ok())
            .unwrap_or_else(|| panic!("unexpected first line {line:?}"));
        SampleProcess { child, addr }
    }

    /// Sends SIGTERM and waits (bounded) for a clean exit; returns the exit code.
    pub fn terminate(mut self) -> Option<i32> {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Some(status) = self.child.try_wait().expect("wait") {
                return status.code();
            }
            assert!(Instant::now() < deadline, "httpechoserver did not exit");
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

impl Drop for SampleProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The sample server binary (see `common::example_binary`).
pub fn sample_binary() -> PathBuf {
    crate::common::example_binary("httpechoserver")
}

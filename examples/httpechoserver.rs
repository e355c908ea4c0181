//! The sample server of the README's Quick start (icey's `httpechoserver`).
//!
//! Routes:
//! - `GET /`              → 200 `Hello, World!`
//! - `POST|PUT /echo`     → the request body, streamed back as it arrives (any size)
//! - `GET /big?bytes=N`   → an N-byte body, sent without copying
//! - `GET /status/N`      → status N with no body
//! - `GET /delay?ms=N&id=X`  → body X after N ms (a loop timer: a deferred response)
//! - `GET /thread?ms=N&id=X` → body X, answered from a worker thread after N ms
//! - `GET /sse?count=N&interval_ms=M` → N server-sent events `data: <i>`, then the end
//! - `GET /stream?chunks=N&size=S`    → a chunked body of N chunks of S bytes, paced by
//!   backpressure (the `drain` signal)
//! - `GET /ws`            → WebSocket echo (text and binary, fragmented messages echoed
//!   whole, permessage-deflate when the client offers it)
//! - anything else        → 404
//!
//! Pipelined requests may be answered in any order (a `/thread` reply can be ready before an
//! earlier `/delay` one); the library still writes them in request order.
//!
//! Flags: `--host` (0.0.0.0), `--port` (1337; 0 picks one), `--idle-timeout-ms`,
//! `--header-timeout-ms`, `--tls-cert FILE --tls-key FILE` (serve every route over HTTPS),
//! `--workers N` (N loops on N threads on one port) with `--accept reuseport` (default: every
//! loop listens, `UV_TCP_REUSEPORT`) or `--accept handoff` (one acceptor thread hands
//! connections to the loops; works where the OS has no SO_REUSEPORT balancing),
//! `--defer-accept` (`ServerOptions::defer_accept`: on Linux, accept a connection only once
//! its client sent something, like nginx's `deferred`), `--accept-batch N`
//! (`ServerOptions::accept_batch`: most connections taken per wakeup; 1 is libuv's pace).
//! Prints `listening on http://HOST:PORT` once bound; SIGINT or
//! SIGTERM stops it gracefully (exit code 0). `UVHTTP_LOG=debug` shows connection logs.

#[path = "support/routes.rs"]
mod routes;
#[path = "support/mod.rs"]
mod support;

use std::cell::RefCell;
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use uvhttp::http::{Server, ServerConnectionPtr};
use uvhttp::uv;

fn main() {
    support::init_logging();
    let args = support::Args::from_env();
    let config = Config::from_args(&args);
    let workers: usize = args.parse("workers", 1).max(1);
    let mode = args
        .value("accept")
        .unwrap_or_else(|| "reuseport".to_string());

    // Worker 0 runs on the default loop of this thread; it also owns the signal watchers.
    let mut srv = config.server(uv::default_loop(), workers > 1 && mode == "reuseport");
    if let Err(e) = srv.start() {
        eprintln!("httpechoserver: {e}");
        std::process::exit(1);
    }
    let addr = srv.address().expect("bound");
    let mut pool = WorkerPool::default();
    if workers > 1 {
        let result = match mode.as_str() {
            "reuseport" => pool.spawn_listening(&config, addr.port(), workers - 1),
            "handoff" => pool.spawn_handoff(&config, &srv, workers - 1),
            other => Err(format!(
                "--accept must be reuseport or handoff, not {other:?}"
            )),
        };
        if let Err(e) = result {
            eprintln!("httpechoserver: {e}");
            std::process::exit(1);
        }
    }
    let scheme = if srv.is_tls() { "https" } else { "http" };
    println!("listening on {scheme}://{addr}");
    srv.connection += |conn: ServerConnectionPtr| routes::route(&conn);

    // Graceful stop on SIGINT / SIGTERM: the loop returns once every connection has closed.
    let srv = Rc::new(srv);
    let pool = Rc::new(RefCell::new(pool));
    let watchers: Rc<RefCell<Vec<uv::SignalHandle>>> = Rc::new(RefCell::new(Vec::new()));
    for signum in [uv::SIGINT, uv::SIGTERM] {
        let watcher = uv::SignalHandle::new(uv::default_loop()).expect("signal handle");
        let (srv, pool, watchers_in_cb) = (srv.clone(), pool.clone(), watchers.clone());
        watcher
            .start(signum, move |_| {
                eprintln!("httpechoserver: stopping");
                srv.stop();
                pool.borrow_mut().stop();
                // Close the watchers too, so nothing keeps the loop alive.
                watchers_in_cb.borrow_mut().clear();
            })
            .expect("watch signal");
        watchers.borrow_mut().push(watcher);
    }

    uv::run(uv::default_loop(), uv::RunMode::Default);
    let ok = pool.borrow_mut().join();
    drop(srv);
    // Every handle must be closed by now: this doubles as a leak check.
    if let Err(e) = uv::close_default_loop() {
        eprintln!("httpechoserver: {e}");
        std::process::exit(1);
    }
    if !ok {
        std::process::exit(1);
    }
}

/// What every worker's server is built from (the same on every thread).
#[derive(Clone)]
struct Config {
    host: String,
    port: u16,
    idle_timeout: Option<Duration>,
    header_timeout: Option<Duration>,
    tls: Option<(String, String)>,
    defer_accept: bool,
    accept_batch: Option<usize>,
}

impl Config {
    fn from_args(args: &support::Args) -> Config {
        let ms = |name: &str| {
            args.value(name).map(|v| {
                Duration::from_millis(v.parse().unwrap_or_else(|_| {
                    eprintln!("invalid value for --{name}: {v:?}");
                    std::process::exit(2)
                }))
            })
        };
        Config {
            host: args.value("host").unwrap_or_else(|| "0.0.0.0".to_string()),
            port: args.parse("port", 1337),
            idle_timeout: ms("idle-timeout-ms"),
            header_timeout: ms("header-timeout-ms"),
            tls: args.value("tls-cert").zip(args.value("tls-key")),
            defer_accept: args.flag("defer-accept"),
            accept_batch: args
                .value("accept-batch")
                .map(|_| args.parse("accept-batch", 1)),
        }
    }

    /// A configured server on `lp` (exits with the reason on a configuration error).
    fn server(&self, lp: uv::Loop, reuse_port: bool) -> Server {
        let srv = Server::with_loop(lp, &self.host, self.port).unwrap_or_else(|e| {
            eprintln!("httpechoserver: {e}");
            std::process::exit(1)
        });
        self.configure(&srv, reuse_port);
        srv
    }

    fn configure(&self, srv: &Server, reuse_port: bool) {
        srv.configure(|o| {
            if let Some(d) = self.idle_timeout {
                o.idle_timeout = d;
            }
            if let Some(d) = self.header_timeout {
                o.header_timeout = d;
            }
            o.reuse_port = reuse_port;
            o.defer_accept = self.defer_accept;
            if let Some(n) = self.accept_batch {
                o.accept_batch = n;
            }
        });
        if let Some((cert, key)) = &self.tls {
            let ctx = uvhttp::net::tls::TlsContext::server()
                .cert_chain_file(cert)
                .key_file(key)
                .build();
            match ctx {
                Ok(ctx) => srv.set_tls(ctx),
                Err(e) => {
                    eprintln!("httpechoserver: {e}");
                    std::process::exit(1);
                }
            }
        }
    }
}

thread_local! {
    /// A worker thread's server and mailbox, reached by jobs posted from other threads.
    static WORKER: RefCell<Option<(Server, uv::Async)>> = const { RefCell::new(None) };
}

/// The extra loops of `--workers N`, one thread each.
#[derive(Default)]
struct WorkerPool {
    remotes: Vec<uv::Remote>,
    threads: Vec<std::thread::JoinHandle<bool>>,
    acceptor: Option<(
        std::thread::JoinHandle<()>,
        Arc<AtomicBool>,
        std::net::SocketAddr,
    )>,
}

impl WorkerPool {
    /// Workers that each listen on `port` too (`UV_TCP_REUSEPORT`: the kernel spreads new
    /// connections over the loops).
    fn spawn_listening(&mut self, config: &Config, port: u16, n: usize) -> Result<(), String> {
        let mut config = config.clone();
        config.port = port;
        self.spawn(n, move |lp| {
            let srv = config.server(lp, true);
            srv.start().map(|_| srv).map_err(|e| e.to_string())
        })
    }

    /// Portable alternative: one blocking acceptor thread hands each connection to the next
    /// worker loop in turn (`Server::adopt` on that loop). The first server stops listening.
    fn spawn_handoff(&mut self, config: &Config, first: &Server, n: usize) -> Result<(), String> {
        let addr = first.address().ok_or("no address")?;
        let config_for_workers = config.clone();
        self.spawn(n + 1, move |lp| {
            let srv = Server::detached(lp);
            config_for_workers.configure(&srv, false);
            srv.start().map(|_| srv).map_err(|e| e.to_string())
        })?;
        // The acceptor takes over the address: the first server gives it up.
        first.stop();
        let listener = std::net::TcpListener::bind(addr).map_err(|e| format!("acceptor: {e}"))?;
        let stop = Arc::new(AtomicBool::new(false));
        let remotes = self.remotes.clone();
        let flag = stop.clone();
        let thread = std::thread::spawn(move || {
            for (i, stream) in listener.incoming().enumerate() {
                if flag.load(Ordering::Acquire) {
                    return;
                }
                let Ok(stream) = stream else { continue };
                let _ = remotes[i % remotes.len()].post(move || {
                    WORKER.with(|w| {
                        if let Some((srv, _)) = w.borrow().as_ref() {
                            let _ = srv.adopt(stream);
                        }
                    })
                });
            }
        });
        self.acceptor = Some((thread, stop, addr));
        Ok(())
    }

    fn spawn(
        &mut self,
        n: usize,
        make: impl Fn(uv::Loop) -> Result<Server, String> + Send + Clone + 'static,
    ) -> Result<(), String> {
        for _ in 0..n {
            let (tx, rx) = std::sync::mpsc::channel();
            let make = make.clone();
            let thread = std::thread::spawn(move || {
                let lp = match uv::OwnedLoop::new() {
                    Ok(lp) => lp,
                    Err(e) => {
                        let _ = tx.send(Err(e.to_string()));
                        return false;
                    }
                };
                let srv = match make(lp.handle()) {
                    Ok(s) => s,
                    Err(e) => {
                        let _ = tx.send(Err(e));
                        return false;
                    }
                };
                let mut srv = srv;
                srv.connection += |conn: ServerConnectionPtr| routes::route(&conn);
                let mailbox = uv::Async::new(lp.handle()).expect("async");
                let _ = tx.send(Ok(mailbox.remote()));
                WORKER.with(|w| *w.borrow_mut() = Some((srv, mailbox)));
                lp.handle().run(uv::RunMode::Default);
                WORKER.with(|w| w.borrow_mut().take());
                match lp.close() {
                    Ok(()) => true,
                    Err(e) => {
                        eprintln!("httpechoserver: worker: {e}");
                        false
                    }
                }
            });
            match rx.recv() {
                Ok(Ok(remote)) => self.remotes.push(remote),
                Ok(Err(e)) => return Err(e),
                Err(_) => return Err("worker thread failed to start".to_string()),
            }
            self.threads.push(thread);
        }
        Ok(())
    }

    /// Asks every worker to stop gracefully (and the acceptor to quit).
    fn stop(&mut self) {
        if let Some((_, flag, addr)) = &self.acceptor {
            flag.store(true, Ordering::Release);
            // Wake the blocking accept.
            let _ = std::net::TcpStream::connect(addr);
        }
        for r in &self.remotes {
            let _ = r.post(|| {
                WORKER.with(|w| {
                    if let Some((srv, mailbox)) = w.borrow().as_ref() {
                        srv.stop();
                        mailbox.unref();
                    }
                })
            });
        }
    }

    /// Waits for every worker; false if one did not shut down cleanly.
    fn join(&mut self) -> bool {
        if let Some((t, _, _)) = self.acceptor.take() {
            let _ = t.join();
        }
        self.threads.drain(..).all(|t| t.join().unwrap_or(false))
    }
}

//! `http::Server`: listens, accepts, and runs connections on a libuv loop.

use std::cell::{Cell, RefCell};
use std::fmt;
use std::net::SocketAddr;
use std::rc::{Rc, Weak};

use super::body::BodyLimits;
use super::conn::{ConnConfig, ConnCore};
use super::decode::HeadLimits;
use super::encode::HeadCache;
use super::options::{OverLimit, ServerOptions};
use super::responder::ServerConnectionFactory;
use super::server_connection::{ServerConnection, ServerConnectionPtr};
use crate::net::tls::TlsContext;
use crate::net::{Socket, TcpListener, TcpSocket, TlsSocket};
use crate::signal::Signal;
use crate::uv::{self, Async, Loop, Remote, Timer, UvError};

/// Why a server could not start.
#[derive(Debug)]
pub struct ServerError {
    message: String,
    source: Option<UvError>,
}

impl ServerError {
    fn new(message: impl Into<String>) -> Self {
        ServerError {
            message: message.into(),
            source: None,
        }
    }

    fn listen(addr: &str, e: UvError) -> Self {
        let reason = if e.is_addr_in_use() {
            let port = addr.rsplit(':').next().unwrap_or(addr);
            format!("port {port} is in use")
        } else if e.name() == "EACCES" {
            "permission denied (ports below 1024 need privileges)".to_string()
        } else if e.name() == "EADDRNOTAVAIL" {
            "that address is not assigned to this machine".to_string()
        } else {
            e.description().to_string()
        };
        ServerError {
            message: format!("cannot listen on {addr}: {reason} ({})", e.name()),
            source: Some(e),
        }
    }

    /// The libuv error underneath, if any.
    pub fn uv_error(&self) -> Option<&UvError> {
        self.source.as_ref()
    }
}

impl fmt::Display for ServerError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for ServerError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.source
            .as_ref()
            .map(|e| e as &(dyn std::error::Error + 'static))
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum RunState {
    Idle,
    Running,
    Stopping,
    Stopped,
}

enum Binding {
    Address(SocketAddr),
    /// No listener: the server serves connections handed to [`Server::adopt`].
    Detached,
    /// A socket inherited from the parent process (systemd socket activation) or handed over.
    #[cfg(unix)]
    Listener(std::net::TcpListener),
}

/// State shared by the server handle and its connections.
pub(crate) struct ServerShared {
    me: Weak<ServerShared>,
    lp: Loop,
    binding: RefCell<Option<Binding>>,
    options: RefCell<ServerOptions>,
    config: RefCell<Rc<ConnConfig>>,
    listener: RefCell<Option<TcpListener>>,
    bound: Cell<Option<SocketAddr>>,
    timer: RefCell<Option<Timer>>,
    /// Fires on the next loop iteration to deliver drains owed to connections.
    soon: RefCell<Option<Timer>>,
    soon_queue: RefCell<Vec<Weak<ConnCore>>>,
    /// Where other threads post work for this server's requests (see `RemoteConnection`).
    mailbox: RefCell<Option<Async>>,
    state: Cell<RunState>,
    stop_deadline: Cell<u64>,
    conns: RefCell<Vec<Option<Rc<ConnCore>>>>,
    free_slots: RefCell<Vec<usize>>,
    live: Cell<usize>,
    accept_paused: Cell<bool>,
    exchange_pool: RefCell<Vec<Rc<ServerConnection>>>,
    /// The last response head with a length this server encoded, for the next one.
    head_cache: RefCell<HeadCache>,
    connection: Signal<dyn FnMut(ServerConnectionPtr)>,
    factory: RefCell<Option<Rc<dyn ServerConnectionFactory>>>,
    tls: RefCell<Option<TlsContext>>,
    stopped: Signal<dyn FnMut()>,
}

/// Exchange objects kept for reuse per server.
const EXCHANGE_POOL_MAX: usize = 1024;

/// An HTTP/1.1 server on a libuv loop, as icey's `http::Server`.
///
/// ```no_run
/// use uvhttp::http::{Server, StatusCode};
/// use uvhttp::uv;
///
/// let mut srv = Server::new("0.0.0.0", 1337).unwrap();
/// srv.connection += |conn: uvhttp::http::ServerConnectionPtr| {
///     conn.respond(StatusCode::OK, "text/plain", b"hello\n").ok();
/// };
/// srv.start().unwrap();
/// uv::run(uv::default_loop(), uv::RunMode::Default);
/// ```
pub struct Server {
    shared: Rc<ServerShared>,
    /// Emitted once per request when its head has arrived: icey's `Connection` signal. The
    /// handle it passes is per request; keep a clone to answer later.
    pub connection: Signal<dyn FnMut(ServerConnectionPtr)>,
    /// Emitted once when a `stop()` has finished (every connection closed).
    pub stopped: Signal<dyn FnMut()>,
}

impl fmt::Debug for Server {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "Server(address={:?}, connections={})",
            self.address(),
            self.connection_count()
        )
    }
}

impl Server {
    /// A server for `host:port` on the default loop (not listening until `start()`).
    /// `host` is an IP literal (`0.0.0.0`, `::`, `127.0.0.1`, `[::1]`) or `localhost`; port 0
    /// picks a free port (see [`Server::address`]).
    pub fn new(host: &str, port: u16) -> Result<Server, ServerError> {
        Server::with_loop(uv::default_loop(), host, port)
    }

    /// The same on a loop of the caller's (which the caller runs).
    pub fn with_loop(lp: Loop, host: &str, port: u16) -> Result<Server, ServerError> {
        let addr = uv::parse_host(host, port).map_err(ServerError::new)?;
        Ok(Server::build(lp, Binding::Address(addr)))
    }

    /// A server on a listening socket inherited from the parent process, e.g. by systemd
    /// socket activation (`LISTEN_FDS`, fd 3 onwards); see [`Server::from_systemd`]. The
    /// server takes ownership of the descriptor.
    #[cfg(unix)]
    pub fn from_listener(lp: Loop, listener: std::net::TcpListener) -> Server {
        Server::build(lp, Binding::Listener(listener))
    }

    /// The first socket passed by systemd socket activation, if this process was started that
    /// way (`LISTEN_PID` is ours and `LISTEN_FDS` >= 1).
    #[cfg(unix)]
    pub fn from_systemd(lp: Loop) -> Result<Server, ServerError> {
        match uv::take_systemd_listener() {
            Some(l) => Ok(Server::build(lp, Binding::Listener(l))),
            None => Err(ServerError::new(
                "not started by systemd socket activation (LISTEN_PID/LISTEN_FDS not set for this process)",
            )),
        }
    }

    /// A server that does not listen: it serves connections accepted elsewhere and handed to
    /// [`Server::adopt`] (e.g. one acceptor thread feeding several loops).
    pub fn detached(lp: Loop) -> Server {
        Server::build(lp, Binding::Detached)
    }

    fn build(lp: Loop, binding: Binding) -> Server {
        let connection: Signal<dyn FnMut(ServerConnectionPtr)> = Signal::new();
        let stopped: Signal<dyn FnMut()> = Signal::new();
        let options = ServerOptions::default();
        let config = Rc::new(conn_config(&options));
        let shared = Rc::new_cyclic(|me| ServerShared {
            me: me.clone(),
            lp,
            binding: RefCell::new(Some(binding)),
            options: RefCell::new(options),
            config: RefCell::new(config),
            listener: RefCell::new(None),
            bound: Cell::new(None),
            timer: RefCell::new(None),
            soon: RefCell::new(None),
            soon_queue: RefCell::new(Vec::new()),
            mailbox: RefCell::new(None),
            state: Cell::new(RunState::Idle),
            stop_deadline: Cell::new(0),
            conns: RefCell::new(Vec::new()),
            free_slots: RefCell::new(Vec::new()),
            live: Cell::new(0),
            accept_paused: Cell::new(false),
            exchange_pool: RefCell::new(Vec::new()),
            head_cache: RefCell::new(HeadCache::new()),
            connection: connection.clone(),
            factory: RefCell::new(None),
            tls: RefCell::new(None),
            stopped: stopped.clone(),
        });
        Server {
            shared,
            connection,
            stopped,
        }
    }

    /// Changes settings (limits, timeouts); takes effect for connections accepted afterwards.
    pub fn configure(&self, f: impl FnOnce(&mut ServerOptions)) {
        let mut opts = self.shared.options.borrow_mut();
        f(&mut opts);
        *self.shared.config.borrow_mut() = Rc::new(conn_config(&opts));
    }

    /// A copy of the current settings.
    pub fn options(&self) -> ServerOptions {
        self.shared.options.borrow().clone()
    }

    /// Creates a [`crate::http::ServerResponder`] per request (icey's factory).
    pub fn set_factory(&self, factory: impl ServerConnectionFactory + 'static) {
        *self.shared.factory.borrow_mut() = Some(Rc::new(factory));
    }

    /// Serves HTTPS (and WSS): every accepted connection runs TLS with `ctx` (built with
    /// `TlsContext::server()` or `SslManager`), as icey's server over an `SSLSocket`.
    pub fn set_tls(&self, ctx: TlsContext) {
        *self.shared.tls.borrow_mut() = Some(ctx);
    }

    /// True when the server speaks TLS.
    pub fn is_tls(&self) -> bool {
        self.shared.tls.borrow().is_some()
    }

    /// A connection over `socket` that is not registered with the listener (benchmarks,
    /// allocation tests: see [`super::in_memory`]).
    pub(crate) fn new_detached_connection(&self, socket: Rc<dyn Socket>) -> Rc<ConnCore> {
        ConnCore::new(self.shared.clone(), socket)
    }

    /// The loop this server runs on.
    pub fn event_loop(&self) -> Loop {
        self.shared.lp
    }

    /// Binds and listens. Errors name the address and the reason, e.g.
    /// "cannot listen on 0.0.0.0:1337: port 1337 is in use (EADDRINUSE)".
    pub fn start(&self) -> Result<(), ServerError> {
        let sh = &self.shared;
        if sh.state.get() == RunState::Running {
            return Ok(());
        }
        if sh.state.get() != RunState::Idle {
            return Err(ServerError::new(
                "a stopped server cannot be started again; create a new one",
            ));
        }
        let opts = sh.options.borrow().clone();
        let binding = sh.binding.borrow_mut().take();
        let listener = match binding {
            Some(Binding::Detached) => None,
            Some(Binding::Address(addr)) => {
                let l = TcpListener::bind(sh.lp, &addr, opts.reuse_port)
                    .map_err(|e| ServerError::listen(&addr.to_string(), e))?;
                l.listen(opts.backlog, accept_callback(Rc::downgrade(sh)))
                    .map_err(|e| ServerError::listen(&addr.to_string(), e))?;
                defer_accept_if_asked(&l, &opts);
                Some(l)
            }
            #[cfg(unix)]
            Some(Binding::Listener(std_listener)) => {
                let what = std_listener
                    .local_addr()
                    .map(|a| format!("inherited socket {a}"))
                    .unwrap_or_else(|_| "inherited socket".to_string());
                let l = TcpListener::from_std(sh.lp, std_listener)
                    .map_err(|e| ServerError::listen(&what, e))?;
                l.listen(opts.backlog, accept_callback(Rc::downgrade(sh)))
                    .map_err(|e| ServerError::listen(&what, e))?;
                defer_accept_if_asked(&l, &opts);
                Some(l)
            }
            None => return Err(ServerError::new("server has no address to listen on")),
        };
        sh.bound
            .set(listener.as_ref().and_then(TcpListener::local_addr));
        *sh.listener.borrow_mut() = listener;
        let tick = opts.tick().as_millis() as u64;
        let timer = Timer::new(sh.lp).map_err(|e| ServerError::new(format!("timer: {e}")))?;
        let weak = Rc::downgrade(sh);
        timer
            .start(tick, tick, move || {
                if let Some(sh) = weak.upgrade() {
                    sh.sweep();
                }
            })
            .map_err(|e| ServerError::new(format!("timer: {e}")))?;
        *sh.timer.borrow_mut() = Some(timer);
        *sh.soon.borrow_mut() =
            Some(Timer::new(sh.lp).map_err(|e| ServerError::new(format!("timer: {e}")))?);
        let mailbox = Async::new(sh.lp).map_err(|e| ServerError::new(format!("async: {e}")))?;
        // Posting threads must not keep the loop alive on their own: connections do.
        mailbox.unref();
        *sh.mailbox.borrow_mut() = Some(mailbox);
        sh.state.set(RunState::Running);
        log::debug!("listening on {:?}", sh.bound.get());
        Ok(())
    }

    /// Stops gracefully: stops accepting, closes idle keep-alive connections, lets in-flight
    /// responses finish (with `Connection: close`) for up to `stop_timeout`, then closes what
    /// is left. When everything is closed, `stopped` is emitted and the server holds no
    /// handles, so the loop can exit and be closed.
    pub fn stop(&self) {
        self.shared.stop();
    }

    /// Serves a connection accepted elsewhere, e.g. by an acceptor thread that hands
    /// connections to several loops (the portable alternative to `reuse_port`). The server
    /// must be running; limits and the connection count apply as for its own accepts.
    #[cfg(unix)]
    pub fn adopt(&self, stream: std::net::TcpStream) -> Result<(), ServerError> {
        let sh = &self.shared;
        if sh.state.get() != RunState::Running {
            return Err(ServerError::new("the server is not running"));
        }
        let socket = TcpSocket::from_std(sh.lp, stream)
            .map_err(|e| ServerError::new(format!("adopt connection: {e}")))?;
        let over = sh.live.get() >= sh.options.borrow().max_connections;
        sh.serve(socket, over);
        Ok(())
    }

    /// The address the server listens on (with the real port when 0 was asked).
    pub fn address(&self) -> Option<SocketAddr> {
        self.shared.bound.get()
    }

    /// Connections currently open.
    pub fn connection_count(&self) -> usize {
        self.shared.live.get()
    }

    /// Bytes the server holds for its connections right now: unparsed input, queued output and
    /// responses waiting behind earlier ones. Bounded by the limits; tests assert on it.
    pub fn buffered_bytes(&self) -> usize {
        self.shared
            .live_connections()
            .iter()
            .map(|c| c.buffered_bytes())
            .sum()
    }

    /// True between `start()` and the end of `stop()`.
    pub fn is_running(&self) -> bool {
        matches!(
            self.shared.state.get(),
            RunState::Running | RunState::Stopping
        )
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.shared.stop();
    }
}

fn conn_config(o: &ServerOptions) -> ConnConfig {
    let ms = |d: std::time::Duration| d.as_millis().min(u64::MAX as u128) as u64;
    ConnConfig {
        head_limits: HeadLimits {
            max_request_line: o.max_request_line,
            max_head_size: o.max_head_size,
            max_headers: o.max_headers,
        },
        body_limits: BodyLimits {
            max_chunk_line: o.max_chunk_line,
            max_trailer_size: o.max_trailer_size,
            ..BodyLimits::default()
        },
        max_body_size: o.max_body_size,
        max_pipelined: o.max_pipelined.max(1),
        high_water: o.write_high_water_mark.max(1),
        header_timeout_ms: ms(o.header_timeout),
        idle_timeout_ms: ms(o.idle_timeout),
        body_timeout_ms: ms(o.body_timeout),
        write_timeout_ms: ms(o.write_timeout),
        linger_timeout_ms: ms(o.linger_timeout),
        tls_handshake_timeout_ms: ms(o.tls_handshake_timeout),
    }
}

/// Applies [`ServerOptions::defer_accept`]: an optimisation, so a failure is logged, not fatal.
fn defer_accept_if_asked(listener: &TcpListener, opts: &ServerOptions) {
    if !opts.defer_accept {
        return;
    }
    // One second: the kernel's unit; a client that sends nothing is then accepted as usual.
    match listener.set_defer_accept(1) {
        Ok(true) => {}
        Ok(false) => log::debug!("defer_accept: not available on this OS; ignored"),
        Err(e) => log::warn!("defer_accept: {e}; serving without it"),
    }
}

fn accept_callback(weak: Weak<ServerShared>) -> impl FnMut(Result<(), UvError>) {
    move |status| {
        let Some(sh) = weak.upgrade() else { return };
        if let Err(e) = status {
            log::warn!("accept failed: {e}");
            return;
        }
        sh.on_incoming();
    }
}

impl ServerShared {
    /// See [`HeadCache`]: one per server, reached without a thread-local lookup.
    #[inline]
    pub(crate) fn head_cache(&self) -> &RefCell<HeadCache> {
        &self.head_cache
    }

    pub(crate) fn now(&self) -> u64 {
        self.lp.now()
    }

    /// The connection settings in force now.
    pub(crate) fn conn_config(&self) -> Rc<ConnConfig> {
        self.config.borrow().clone()
    }

    pub(crate) fn event_loop(&self) -> Loop {
        self.lp
    }

    pub(crate) fn is_stopping(&self) -> bool {
        matches!(self.state.get(), RunState::Stopping | RunState::Stopped)
    }

    pub(crate) fn connection_signal(&self) -> &Signal<dyn FnMut(ServerConnectionPtr)> {
        &self.connection
    }

    pub(crate) fn factory(&self) -> Option<Rc<dyn ServerConnectionFactory>> {
        self.factory.borrow().clone()
    }

    /// Delivers `on_drain` to `core` on the next loop iteration.
    pub(crate) fn schedule_drain(&self, core: Weak<ConnCore>) {
        let first = {
            let mut q = self.soon_queue.borrow_mut();
            q.push(core);
            q.len() == 1
        };
        if !first {
            return;
        }
        let weak = self.me.clone();
        if let Some(t) = self.soon.borrow().as_ref() {
            let _ = t.start(0, 0, move || {
                let Some(sh) = weak.upgrade() else { return };
                let due = std::mem::take(&mut *sh.soon_queue.borrow_mut());
                for core in due.iter().filter_map(Weak::upgrade) {
                    core.deliver_drain();
                }
            });
        }
    }

    /// The handle other threads use to reach this server's loop, while it runs.
    pub(crate) fn remote(&self) -> Option<Remote> {
        self.mailbox.borrow().as_ref().map(Async::remote)
    }

    pub(crate) fn take_exchange(&self) -> Rc<ServerConnection> {
        self.exchange_pool
            .borrow_mut()
            .pop()
            .unwrap_or_else(ServerConnection::new_pooled)
    }

    /// Puts an exchange back for reuse if nobody else holds it; otherwise lets it go.
    #[inline(always)]
    pub(crate) fn recycle_exchange(&self, ex: Rc<ServerConnection>) {
        // Only the last strong reference may recycle (the object's own `Weak` to itself, used
        // by `defer()`, does not count), and never while the application holds a handle.
        // Called twice per request and refused once (the first call meets a reference still
        // held further up): the test is inline, the work is not.
        if ex.has_app_refs() || Rc::strong_count(&ex) != 1 {
            return;
        }
        self.pool_exchange(ex);
    }

    #[inline(never)]
    fn pool_exchange(&self, ex: Rc<ServerConnection>) {
        ex.reset();
        let mut pool = self.exchange_pool.borrow_mut();
        if pool.len() < EXCHANGE_POOL_MAX {
            pool.push(ex);
        }
    }

    fn on_incoming(&self) {
        if self.state.get() != RunState::Running {
            return;
        }
        let (max, policy, batch) = {
            let o = self.options.borrow();
            (o.max_connections, o.over_limit, o.accept_batch)
        };
        if self.live.get() >= max && policy == OverLimit::PauseAccepting {
            // Leave it queued in the kernel; libuv stops watching the listener until we
            // accept, which `unregister` does when a slot frees up.
            self.accept_paused.set(true);
            return;
        }
        self.accept_one(self.live.get() >= max);
        // The rest of the queue in this turn (`ServerOptions::accept_batch`), under the same
        // rules; stopping early leaves connections to the next wakeup, as libuv would.
        for _ in 1..batch {
            if self.state.get() != RunState::Running
                || (self.live.get() >= max && policy == OverLimit::PauseAccepting)
            {
                return;
            }
            let pending = {
                let listener = self.listener.borrow();
                let Some(l) = listener.as_ref() else { return };
                l.accept_pending()
            };
            match pending {
                Ok(Some(socket)) => self.serve(socket, self.live.get() >= max),
                Ok(None) => return,
                Err(e) => {
                    log::debug!("accept: {e}");
                    return;
                }
            }
        }
    }

    fn accept_one(&self, over_limit: bool) {
        let socket = {
            let listener = self.listener.borrow();
            let Some(l) = listener.as_ref() else { return };
            match l.accept() {
                Ok(s) => s,
                Err(e) => {
                    log::debug!("accept: {e}");
                    return;
                }
            }
        };
        self.serve(socket, over_limit);
    }

    /// Runs the HTTP (or HTTPS) protocol on an accepted TCP socket.
    fn serve(&self, socket: Rc<TcpSocket>, over_limit: bool) {
        log::debug!("accepted connection from {:?}", socket.peer_addr());
        let sh = self.me.upgrade().expect("live server");
        let tls = self.tls.borrow().clone();
        // Nagle goes off before the first response that needs it (`ConnCore::nagle_off_for`);
        // for TLS at once: its handshake and session tickets are several small writes.
        if !self.options.borrow().tcp_nodelay {
            socket.keep_nagle();
        } else if tls.is_some() {
            socket.disable_nagle();
        }
        let socket: Rc<dyn Socket> = match tls {
            None => socket,
            Some(ctx) => match TlsSocket::server(socket.clone(), &ctx) {
                Ok(t) => t,
                Err(e) => {
                    log::warn!("cannot start TLS for a new connection: {e}");
                    socket.close();
                    return;
                }
            },
        };
        let core = ConnCore::new(sh, socket);
        self.register(core.clone());
        if over_limit {
            log::debug!("over max_connections: answering 503");
            core.reject_overloaded();
        } else {
            core.start();
        }
    }

    fn register(&self, core: Rc<ConnCore>) {
        let mut conns = self.conns.borrow_mut();
        let slot = match self.free_slots.borrow_mut().pop() {
            Some(s) => s,
            None => {
                conns.push(None);
                conns.len() - 1
            }
        };
        core.set_slot(slot);
        conns[slot] = Some(core);
        self.live.set(self.live.get() + 1);
    }

    pub(crate) fn unregister(&self, slot: usize) {
        let removed = {
            let mut conns = self.conns.borrow_mut();
            conns.get_mut(slot).and_then(Option::take)
        };
        if removed.is_none() {
            return;
        }
        self.free_slots.borrow_mut().push(slot);
        self.live.set(self.live.get() - 1);
        // Drop the connection after the registry borrow ended (its drop closes handles).
        drop(removed);
        if self.accept_paused.get() && self.state.get() == RunState::Running {
            self.accept_paused.set(false);
            self.accept_one(false);
        }
        if self.state.get() == RunState::Stopping && self.live.get() == 0 {
            self.finish_stop();
        }
    }

    fn live_connections(&self) -> Vec<Rc<ConnCore>> {
        self.conns.borrow().iter().flatten().cloned().collect()
    }

    fn sweep(&self) {
        let now = self.lp.now();
        if self.state.get() == RunState::Stopping && now >= self.stop_deadline.get() {
            let left = self.live_connections();
            if !left.is_empty() {
                log::warn!(
                    "stop timeout: closing {} connection(s) with responses still in flight",
                    left.len()
                );
            }
            for c in left {
                c.abort();
            }
            return;
        }
        let n = self.conns.borrow().len();
        for i in 0..n {
            let c = self.conns.borrow().get(i).cloned().flatten();
            if let Some(c) = c {
                c.on_tick(now);
            }
        }
    }

    fn stop(&self) {
        match self.state.get() {
            RunState::Running => {}
            RunState::Idle => {
                self.state.set(RunState::Stopped);
                return;
            }
            RunState::Stopping | RunState::Stopped => return,
        }
        self.state.set(RunState::Stopping);
        let timeout = self.options.borrow().stop_timeout.as_millis() as u64;
        self.stop_deadline.set(self.lp.now() + timeout);
        if let Some(l) = self.listener.borrow_mut().take() {
            l.close();
        }
        log::debug!("stopping: {} connection(s) open", self.live.get());
        for c in self.live_connections() {
            c.begin_stop();
        }
        if self.live.get() == 0 {
            self.finish_stop();
        }
    }

    fn finish_stop(&self) {
        if self.state.replace(RunState::Stopped) == RunState::Stopped {
            return;
        }
        // Dropping the timer closes it (safe even from inside its own callback).
        let timer = self.timer.borrow_mut().take();
        drop(timer);
        let mailbox = self.mailbox.borrow_mut().take();
        drop(mailbox);
        let soon = self.soon.borrow_mut().take();
        drop(soon);
        self.soon_queue.borrow_mut().clear();
        self.exchange_pool.borrow_mut().clear();
        log::debug!("server stopped");
        self.stopped.emit(|slot| slot());
    }
}

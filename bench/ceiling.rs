//! The benchmark ceiling: the least work an HTTP/1.1 server on libuv can do.
//!
//! It does no HTTP parsing at all. Every connection reads into one loop-wide
//! buffer, counts request terminators (`\r\n\r\n`, also when one is split
//! across reads), and answers each with a canned `200 OK` taken from static
//! memory. All answers produced by one read go out in one gathered write:
//! `uv_try_write` first, the unwritten rest queued with `uv_write`. Nothing is
//! allocated per request, and per connection only the small [`Connection`].
//!
//! `bench/run.py` measures uvhttp and its peers as ratios to this server, so
//! it must stay the cheapest possible libuv server, not a useful one.
//!
//! Usage: `ceiling [--host ADDR] [--port N] [--close] [--body-bytes N] [--defer-accept]`
//! * `--close` answers with `Connection: close` and shuts the connection down
//!   after the answers of the read that held the request (for the
//!   connection-churn scenario: the ceiling does not read request headers, so
//!   it has to be told).
//! * `--body-bytes N` answers with an N-byte body instead of `Hello, World!`
//!   (for the echo and large-body scenarios, so the ceiling writes as many
//!   bytes as a real server does there).
//! * `--defer-accept` sets Linux's `TCP_DEFER_ACCEPT` on the listener, as uvhttp's
//!   `ServerOptions::defer_accept` does (the runner passes it to both).
//!
//! Like uvhttp, the ceiling answers the bytes a connection already holds when it is
//! accepted before it registers for reads.

#![deny(unsafe_op_in_unsafe_fn)]

use std::ffi::{c_char, c_int, c_uint, c_void, CStr, CString};
use std::mem::MaybeUninit;
use std::process::ExitCode;
use std::ptr;

use libuv_sys2::{
    sockaddr, sockaddr_in, sockaddr_in6, sockaddr_storage, uv_accept, uv_buf_t, uv_close,
    uv_default_loop, uv_err_name, uv_errno_t_UV_EAGAIN, uv_errno_t_UV_ECANCELED, uv_errno_t_UV_EOF,
    uv_handle_get_data, uv_handle_get_loop, uv_handle_set_data, uv_handle_t, uv_ip4_addr,
    uv_ip6_addr, uv_is_closing, uv_listen, uv_loop_get_data, uv_loop_set_data, uv_loop_t,
    uv_read_start, uv_read_stop, uv_run, uv_run_mode_UV_RUN_DEFAULT, uv_shutdown, uv_shutdown_t,
    uv_stream_get_write_queue_size, uv_stream_t, uv_strerror, uv_tcp_bind, uv_tcp_getsockname,
    uv_tcp_init, uv_tcp_nodelay, uv_tcp_t, uv_try_write, uv_write, uv_write_t,
};

/// Size of the single read buffer shared by all connections (libuv's own suggestion).
const READ_BUFFER_BYTES: usize = 64 * 1024;
/// The static answer block holds whole copies of the answer up to about this size, so a
/// read carrying many pipelined requests is answered with few iovecs.
const ANSWER_BLOCK_TARGET_BYTES: usize = 32 * 1024;
/// Stop reading from a client whose queued, unsent answers exceed this; a client that
/// pipelines without reading must not grow the server without bound.
const WRITE_QUEUE_HIGH_WATER_BYTES: usize = 1024 * 1024;
/// Listen backlog; the kernel clamps it to `net.core.somaxconn`. Deep, because the
/// idle-connections scenario opens 10,000 connections as fast as it can.
const LISTEN_BACKLOG: c_int = 4096;
/// Scan width for the no-`\r` fast path of [`TerminatorCounter`].
const SCAN_BLOCK_BYTES: usize = 32;
/// The body used unless `--body-bytes` says otherwise.
const HELLO_BODY: &[u8] = b"Hello, World!";

/// Command-line options.
struct Options {
    host: String,
    port: u16,
    close_after_answer: bool,
    body_bytes: Option<usize>,
    defer_accept: bool,
}

impl Options {
    /// Parses `std::env::args`; the error is a message for the user.
    fn parse() -> Result<Options, String> {
        let mut options = Options {
            host: "127.0.0.1".to_string(),
            port: 8080,
            close_after_answer: false,
            body_bytes: None,
            defer_accept: false,
        };
        let mut args = std::env::args().skip(1);
        while let Some(arg) = args.next() {
            let mut value = |name: &str| args.next().ok_or_else(|| format!("{name} needs a value"));
            match arg.as_str() {
                "--port" => {
                    let text = value("--port")?;
                    options.port = text
                        .parse()
                        .map_err(|_| format!("--port: {text:?} is not a port number (0-65535)"))?;
                }
                "--host" => options.host = value("--host")?,
                "--close" => options.close_after_answer = true,
                "--defer-accept" => options.defer_accept = true,
                "--body-bytes" => {
                    let text = value("--body-bytes")?;
                    let bytes = text
                        .parse()
                        .map_err(|_| format!("--body-bytes: {text:?} is not a byte count"))?;
                    options.body_bytes = Some(bytes);
                }
                "-h" | "--help" => {
                    return Err(
                        "usage: ceiling [--host ADDR] [--port N] [--close] [--body-bytes N] [--defer-accept]"
                            .to_string(),
                    )
                }
                other => return Err(format!("unknown argument {other:?} (try --help)")),
            }
        }
        Ok(options)
    }
}

/// Counts `\r\n\r\n` terminators in a byte stream that arrives in pieces.
///
/// Terminators do not overlap: after one, matching starts afresh, so
/// `\r\n\r\n\r\n` is one request and a stray empty line, as RFC 9112 reads it.
#[derive(Default)]
struct TerminatorCounter {
    /// How many bytes of `\r\n\r\n` the stream currently ends with (0..=3).
    matched: u8,
}

impl TerminatorCounter {
    /// Feeds the next piece of the stream and returns how many terminators it completed.
    fn feed(&mut self, data: &[u8]) -> usize {
        let mut completed = 0;
        let mut blocks = data.chunks_exact(SCAN_BLOCK_BYTES);
        for block in &mut blocks {
            // Request bodies are long runs without `\r`: skip them a block at a time.
            // The fold (rather than `contains`) has no early exit, so it vectorises.
            if self.matched == 0 && !block.iter().fold(false, |seen, &b| seen | (b == b'\r')) {
                continue;
            }
            for &byte in block {
                completed += self.step(byte);
            }
        }
        for &byte in blocks.remainder() {
            completed += self.step(byte);
        }
        completed
    }

    /// Advances the matcher by one byte; returns 1 when it completes a terminator.
    fn step(&mut self, byte: u8) -> usize {
        let (next, completed) = match (self.matched, byte) {
            (0, b'\r') | (2, b'\r') => (self.matched + 1, 0),
            (1, b'\n') => (2, 0),
            (3, b'\n') => (0, 1),
            // `\r` after a partial match can still begin a terminator.
            (_, b'\r') => (1, 0),
            _ => (0, 0),
        };
        self.matched = next;
        completed
    }
}

/// The canned answers: whole copies of one answer laid end to end, so any stretch of
/// "answer repeated N times" is a few slices of this block.
struct AnswerBlock {
    bytes: Box<[u8]>,
    answer_len: usize,
}

impl AnswerBlock {
    /// Builds the block for the given options.
    fn new(options: &Options) -> AnswerBlock {
        let mut answer = Vec::new();
        answer.extend_from_slice(b"HTTP/1.1 200 OK\r\n");
        // A fixed date: producing a live one is HTTP work the ceiling does not do.
        answer.extend_from_slice(b"Date: Thu, 01 Jan 2026 00:00:00 GMT\r\n");
        answer.extend_from_slice(b"Content-Type: text/plain\r\n");
        let body_len = options.body_bytes.unwrap_or(HELLO_BODY.len());
        answer.extend_from_slice(format!("Content-Length: {body_len}\r\n").as_bytes());
        if options.close_after_answer {
            answer.extend_from_slice(b"Connection: close\r\n");
        }
        answer.extend_from_slice(b"\r\n");
        match options.body_bytes {
            None => answer.extend_from_slice(HELLO_BODY),
            Some(len) => answer.resize(answer.len() + len, b'x'),
        }
        let copies = (ANSWER_BLOCK_TARGET_BYTES / answer.len()).max(1);
        AnswerBlock {
            answer_len: answer.len(),
            bytes: answer.repeat(copies).into_boxed_slice(),
        }
    }

    /// Replaces `bufs` with iovecs covering bytes `start..end` of the endless
    /// repetition of the answer.
    fn describe(&self, start: usize, end: usize, bufs: &mut Vec<uv_buf_t>) {
        bufs.clear();
        let mut position = start;
        while position < end {
            // The block is periodic with the answer length, so every stream offset maps
            // into the block at the same phase.
            let offset = position % self.answer_len;
            let len = (end - position).min(self.bytes.len() - offset);
            bufs.push(uv_buf_t {
                // libuv never writes through the base of a buffer it sends; the cast to
                // `*mut` only satisfies the C signature.
                base: self.bytes[offset..].as_ptr() as *mut c_char,
                len,
            });
            position += len;
        }
    }
}

/// State shared by every connection of the loop, reached through the loop's data pointer.
struct Ceiling {
    /// The one read buffer: each read is fully consumed inside its callback, so no
    /// connection needs a buffer of its own.
    read_buffer: Box<[u8]>,
    answers: AnswerBlock,
    close_after_answer: bool,
    /// Scratch iovec list, reused for every write.
    bufs: Vec<uv_buf_t>,
}

/// Per-connection state, owned through the TCP handle's data pointer.
struct Connection {
    tcp: uv_tcp_t,
    terminators: TerminatorCounter,
    /// False while reading is paused for a too-long write queue.
    reading: bool,
}

fn main() -> ExitCode {
    let options = match Options::parse() {
        Ok(options) => options,
        Err(message) => {
            eprintln!("ceiling: {message}");
            return ExitCode::from(2);
        }
    };
    match serve(&options) {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("ceiling: {message}");
            ExitCode::FAILURE
        }
    }
}

/// Binds, announces the address and runs the loop until it has nothing left to do.
fn serve(options: &Options) -> Result<(), String> {
    let ceiling = Box::new(Ceiling {
        read_buffer: vec![0; READ_BUFFER_BYTES].into_boxed_slice(),
        answers: AnswerBlock::new(options),
        close_after_answer: options.close_after_answer,
        bufs: Vec::new(),
    });
    let address = socket_address(&options.host, options.port)?;
    // SAFETY: `uv_default_loop` has no preconditions; it returns null only when it
    // cannot initialise, which is checked.
    let uv_loop = unsafe { uv_default_loop() };
    if uv_loop.is_null() {
        return Err("could not initialise the libuv default loop".to_string());
    }
    // The listener and the shared state live for the rest of the process: the loop
    // only returns when the listener is gone, and then the process exits.
    let listener: &'static mut uv_tcp_t = Box::leak(Box::new(zeroed_handle()));
    let ceiling: *mut Ceiling = Box::into_raw(ceiling);
    // SAFETY: `uv_loop` is the live default loop; `ceiling` is a leaked, never-freed box
    // that only callbacks on this thread dereference.
    unsafe { uv_loop_set_data(uv_loop, ceiling.cast()) };
    // SAFETY: `listener` is zeroed, leaked (so never moves or dies) and initialised
    // exactly once on the live loop.
    check("uv_tcp_init", unsafe { uv_tcp_init(uv_loop, listener) })?;
    // SAFETY: `listener` is an initialised TCP handle; `address` outlives the call and
    // holds a sockaddr of the family its first field names.
    let bound = unsafe { uv_tcp_bind(listener, ptr::addr_of!(address).cast::<sockaddr>(), 0) };
    check_at("bind", &options.host, options.port, bound)?;
    // SAFETY: `listener` is an initialised, bound TCP handle; `on_connection` matches
    // `uv_connection_cb`.
    let listening = unsafe {
        uv_listen(
            ptr::addr_of_mut!(*listener).cast::<uv_stream_t>(),
            LISTEN_BACKLOG,
            Some(on_connection),
        )
    };
    check_at("listen", &options.host, options.port, listening)?;
    #[cfg(target_os = "linux")]
    if options.defer_accept {
        defer_accept(listener)?;
    }
    let port = bound_port(listener)?;
    let shown_host = if options.host.contains(':') {
        format!("[{}]", options.host)
    } else {
        options.host.clone()
    };
    println!("listening on http://{shown_host}:{port}");
    // SAFETY: the loop is live and this thread owns it.
    check("uv_run", unsafe {
        uv_run(uv_loop, uv_run_mode_UV_RUN_DEFAULT)
    })?;
    Ok(())
}

/// Parses `host` (IPv4 or IPv6 literal) and `port` into a socket address.
fn socket_address(host: &str, port: u16) -> Result<sockaddr_storage, String> {
    let c_host = CString::new(host).map_err(|_| format!("--host {host:?} contains a NUL byte"))?;
    let mut storage = MaybeUninit::<sockaddr_storage>::zeroed();
    let status = if host.contains(':') {
        // SAFETY: `c_host` is NUL-terminated; `sockaddr_storage` is larger than and
        // aligned at least as strictly as `sockaddr_in6`, and zeroed.
        unsafe {
            uv_ip6_addr(
                c_host.as_ptr(),
                c_int::from(port),
                storage.as_mut_ptr().cast::<sockaddr_in6>(),
            )
        }
    } else {
        // SAFETY: as above, for `sockaddr_in`.
        unsafe {
            uv_ip4_addr(
                c_host.as_ptr(),
                c_int::from(port),
                storage.as_mut_ptr().cast::<sockaddr_in>(),
            )
        }
    };
    if status < 0 {
        return Err(format!(
            "--host {host:?} is not an IPv4 or IPv6 address literal ({})",
            uv_error_text(status)
        ));
    }
    // SAFETY: all-zero bytes are a valid `sockaddr_storage`, and the call above only
    // filled in fields.
    Ok(unsafe { storage.assume_init() })
}

/// The port the listener actually got (differs from the request for `--port 0`).
fn bound_port(listener: &uv_tcp_t) -> Result<u16, String> {
    let mut storage = MaybeUninit::<sockaddr_storage>::zeroed();
    let mut len = std::mem::size_of::<sockaddr_storage>() as c_int;
    // SAFETY: `listener` is a bound TCP handle; `storage` has room for `len` bytes.
    let status =
        unsafe { uv_tcp_getsockname(listener, storage.as_mut_ptr().cast::<sockaddr>(), &mut len) };
    check("uv_tcp_getsockname", status)?;
    // SAFETY: zero bytes are a valid `sockaddr_storage` and the kernel wrote a valid
    // socket address over them.
    let storage = unsafe { storage.assume_init() };
    // `sin_port` and `sin6_port` sit at the same offset, right after the family.
    // SAFETY: `sockaddr_in` is no larger than `sockaddr_storage` and needs less alignment.
    let ipv4 = unsafe { &*ptr::addr_of!(storage).cast::<sockaddr_in>() };
    Ok(u16::from_be(ipv4.sin_port))
}

/// A zeroed TCP handle, ready for `uv_tcp_init`.
fn zeroed_handle() -> uv_tcp_t {
    // SAFETY: `uv_tcp_t` is a plain C struct for which all-zero bytes are valid; libuv
    // initialises it before use.
    unsafe { MaybeUninit::zeroed().assume_init() }
}

/// The shared state of the loop that owns `handle`.
///
/// # Safety
/// `handle` must be a live handle on the loop set up by [`serve`], and the returned
/// reference must not outlive the callback it is used in.
unsafe fn ceiling_of<'a>(handle: *const uv_handle_t) -> &'a mut Ceiling {
    // SAFETY: `serve` stored a leaked `Ceiling` in the loop's data before any handle
    // existed; callbacks run one at a time on this thread, so the reference is unique.
    unsafe { &mut *uv_loop_get_data(uv_handle_get_loop(handle)).cast::<Ceiling>() }
}

/// A new client: give it a [`Connection`] and start reading.
unsafe extern "C" fn on_connection(server: *mut uv_stream_t, status: c_int) {
    if status < 0 {
        log::debug!("accept notification failed: {}", uv_error_text(status));
        return;
    }
    // SAFETY: `server` is the live listener passed by libuv to its connection callback.
    let uv_loop: *mut uv_loop_t = unsafe { uv_handle_get_loop(server.cast()) };
    let connection = Box::into_raw(Box::new(Connection {
        tcp: zeroed_handle(),
        terminators: TerminatorCounter::default(),
        reading: true,
    }));
    // SAFETY: `connection` is a fresh box; its handle is initialised once on the loop
    // that accepted. From here the handle owns the box, freed in `on_close`.
    let tcp = unsafe { ptr::addr_of_mut!((*connection).tcp) };
    // SAFETY: as above.
    if unsafe { uv_tcp_init(uv_loop, tcp) } < 0 {
        // SAFETY: the handle was never initialised, so libuv holds no pointer to it.
        drop(unsafe { Box::from_raw(connection) });
        return;
    }
    let handle = tcp.cast::<uv_handle_t>();
    // SAFETY: `tcp` is initialised; the data pointer is how callbacks find the box.
    unsafe { uv_handle_set_data(handle, connection.cast()) };
    // SAFETY: `server` is listening and `tcp` is an initialised, unconnected TCP handle.
    if unsafe { uv_accept(server, tcp.cast()) } < 0 {
        // SAFETY: `tcp` is initialised and not yet closing.
        unsafe { uv_close(handle, Some(on_close)) };
        return;
    }
    // Answers go out whole, so Nagle would only delay the tail of a partial write.
    // SAFETY: `tcp` is an accepted TCP handle.
    unsafe { uv_tcp_nodelay(tcp, 1) };
    // The request a client sends right after connecting is usually there already: answer
    // it before registering for reads (uvhttp does the same; the ceiling must not do more).
    #[cfg(unix)]
    {
        // SAFETY: `tcp` is an accepted, open stream on this loop.
        if unsafe { read_available(tcp.cast()) } {
            // SAFETY: as above; `connection` lives until `on_close`, which has not run.
            if unsafe { uv_is_closing(handle) } != 0 || !unsafe { (*connection).reading } {
                return;
            }
        }
    }
    // SAFETY: `tcp` is an accepted stream; both callbacks match libuv's signatures.
    if unsafe { uv_read_start(tcp.cast(), Some(on_alloc), Some(on_read)) } < 0 {
        // SAFETY: `tcp` is initialised and not yet closing.
        unsafe { uv_close(handle, Some(on_close)) };
    }
}

/// Reads what already arrived on a just-accepted stream (one non-blocking read of the
/// descriptor libuv owns; libuv has no `uv_try_read`) and hands it to `on_read`. Returns
/// whether there was anything.
///
/// # Safety
/// `stream` must be an open connection handle of the ceiling's loop.
#[cfg(unix)]
unsafe fn read_available(stream: *mut uv_stream_t) -> bool {
    use std::io::Read;
    use std::os::fd::FromRawFd;
    let handle = stream.cast::<uv_handle_t>();
    let mut fd: libuv_sys2::uv_os_fd_t = -1;
    // SAFETY: open handle (the caller's contract); uv_fileno only writes `fd`.
    if unsafe { libuv_sys2::uv_fileno(handle, &mut fd) } != 0 {
        return false;
    }
    // SAFETY: `fd` is the open non-blocking socket libuv owns; ManuallyDrop never closes it.
    let file = std::mem::ManuallyDrop::new(unsafe { std::fs::File::from_raw_fd(fd) });
    let n = {
        // SAFETY: the caller's contract: a live connection handle on the ceiling's loop. The
        // reference ends with this block, before `on_read` takes its own.
        let ceiling = unsafe { ceiling_of(handle) };
        match (&*file).read(&mut ceiling.read_buffer[..]) {
            Ok(n) if n > 0 => n,
            _ => return false,
        }
    };
    // SAFETY: `n` bytes are at the start of the shared buffer, as after a libuv read.
    unsafe { on_read(stream, n as isize, ptr::null()) };
    true
}

/// `--defer-accept`: Linux's `TCP_DEFER_ACCEPT` on the listener (connections are handed over
/// once their client sent data), as uvhttp's `ServerOptions::defer_accept`.
#[cfg(target_os = "linux")]
fn defer_accept(listener: *mut uv_tcp_t) -> Result<(), String> {
    extern "C" {
        fn setsockopt(
            fd: c_int,
            level: c_int,
            name: c_int,
            value: *const c_void,
            len: u32,
        ) -> c_int;
    }
    const IPPROTO_TCP: c_int = 6;
    const TCP_DEFER_ACCEPT: c_int = 9;
    let mut fd: libuv_sys2::uv_os_fd_t = -1;
    // SAFETY: `listener` is an initialised, bound TCP handle; uv_fileno only writes `fd`.
    check("uv_fileno", unsafe {
        libuv_sys2::uv_fileno(listener.cast(), &mut fd)
    })?;
    let seconds: c_int = 1;
    // SAFETY: `fd` is the listening socket; the value is a c_int living through the call.
    let rc = unsafe {
        setsockopt(
            fd,
            IPPROTO_TCP,
            TCP_DEFER_ACCEPT,
            ptr::addr_of!(seconds).cast(),
            std::mem::size_of::<c_int>() as u32,
        )
    };
    if rc != 0 {
        return Err(format!(
            "TCP_DEFER_ACCEPT: {}",
            std::io::Error::last_os_error()
        ));
    }
    Ok(())
}

/// Every read lands in the one shared buffer.
unsafe extern "C" fn on_alloc(handle: *mut uv_handle_t, _suggested: usize, buf: *mut uv_buf_t) {
    // SAFETY: libuv passes a live connection handle and a writable `buf`.
    let ceiling = unsafe { ceiling_of(handle) };
    // SAFETY: `buf` is valid for writes (libuv's contract for the alloc callback).
    unsafe {
        *buf = uv_buf_t {
            base: ceiling.read_buffer.as_mut_ptr().cast(),
            len: ceiling.read_buffer.len(),
        };
    }
}

/// Counts the requests completed by this read and answers them in one write.
unsafe extern "C" fn on_read(stream: *mut uv_stream_t, nread: isize, _buf: *const uv_buf_t) {
    let handle = stream.cast::<uv_handle_t>();
    if nread < 0 {
        // EOF or a socket error: either way the connection is over.
        if nread != uv_errno_t_UV_EOF as isize {
            log::debug!("read failed: {}", uv_error_text(nread as c_int));
        }
        close_connection(handle);
        return;
    }
    // SAFETY: `stream` is a live connection handle on the ceiling's loop.
    let ceiling = unsafe { ceiling_of(handle) };
    // SAFETY: the data pointer of every connection handle is its `Connection` box, alive
    // until `on_close`, which cannot run while this callback does.
    let connection = unsafe { &mut *uv_handle_get_data(handle).cast::<Connection>() };
    // `nread` bytes were read into the buffer `on_alloc` handed out; read them through
    // `ceiling` rather than `_buf` so no second path aliases the buffer.
    let received = &ceiling.read_buffer[..nread as usize];
    let requests = connection.terminators.feed(received);
    if requests == 0 {
        return;
    }
    let total = requests * ceiling.answers.answer_len;
    ceiling.answers.describe(0, total, &mut ceiling.bufs);
    // SAFETY: `stream` is an open connection; `bufs` describes `answers`, which lives for
    // the whole process.
    let tried =
        unsafe { uv_try_write(stream, ceiling.bufs.as_ptr(), ceiling.bufs.len() as c_uint) };
    let written = match tried {
        n if n >= 0 => n as usize,
        n if n == uv_errno_t_UV_EAGAIN => 0,
        n => {
            log::debug!("write failed: {}", uv_error_text(n));
            close_connection(handle);
            return;
        }
    };
    if written < total {
        ceiling.answers.describe(written, total, &mut ceiling.bufs);
        if !queue_write(stream, &ceiling.bufs) {
            close_connection(handle);
            return;
        }
        // SAFETY: `stream` is an open connection.
        if unsafe { uv_stream_get_write_queue_size(stream) } > WRITE_QUEUE_HIGH_WATER_BYTES {
            // SAFETY: `stream` is reading; `on_write` resumes it once the queue drains.
            unsafe { uv_read_stop(stream) };
            connection.reading = false;
        }
    }
    if ceiling.close_after_answer {
        // SAFETY: `stream` is open and reading may stop at any time.
        unsafe { uv_read_stop(stream) };
        connection.reading = false;
        shut_down(stream);
    }
}

/// Queues `bufs` (which point into static answers) for writing; false on failure.
fn queue_write(stream: *mut uv_stream_t, bufs: &[uv_buf_t]) -> bool {
    // SAFETY: `uv_write_t` is a plain C struct; all-zero bytes are valid before libuv
    // fills it in.
    let request: *mut uv_write_t = Box::into_raw(Box::new(unsafe {
        MaybeUninit::<uv_write_t>::zeroed().assume_init()
    }));
    // SAFETY: `request` is a fresh box that libuv owns until `on_write` frees it; libuv
    // copies the iovec array, and the bytes it points to are never freed.
    let status = unsafe {
        uv_write(
            request,
            stream,
            bufs.as_ptr(),
            bufs.len() as c_uint,
            Some(on_write),
        )
    };
    if status < 0 {
        // SAFETY: libuv rejected the request and kept no pointer to it.
        drop(unsafe { Box::from_raw(request) });
        log::debug!("queueing a write failed: {}", uv_error_text(status));
        return false;
    }
    true
}

/// A queued write finished: free it, and resume reading once the queue has drained.
unsafe extern "C" fn on_write(request: *mut uv_write_t, status: c_int) {
    // SAFETY: `request` came from `Box::into_raw` in `queue_write` and libuv is done with it.
    let request = unsafe { Box::from_raw(request) };
    let stream = request.handle;
    let handle = stream.cast::<uv_handle_t>();
    // SAFETY: the stream of a completing write is still alive: on close, libuv cancels
    // pending writes before it calls the close callback that frees the connection.
    if unsafe { uv_is_closing(handle) } != 0 {
        return;
    }
    if status < 0 {
        if status != uv_errno_t_UV_ECANCELED {
            log::debug!("write failed: {}", uv_error_text(status));
        }
        close_connection(handle);
        return;
    }
    // SAFETY: a live connection handle's data is its `Connection` box.
    let connection = unsafe { &mut *uv_handle_get_data(handle).cast::<Connection>() };
    // SAFETY: `stream` is an open connection.
    let queued = unsafe { uv_stream_get_write_queue_size(stream) };
    // SAFETY: the ceiling's loop owns every connection.
    let close_after_answer = unsafe { ceiling_of(handle) }.close_after_answer;
    if !connection.reading && !close_after_answer && queued <= WRITE_QUEUE_HIGH_WATER_BYTES / 2 {
        // SAFETY: `stream` is open and not reading; the callbacks match libuv's signatures.
        if unsafe { uv_read_start(stream, Some(on_alloc), Some(on_read)) } < 0 {
            close_connection(handle);
            return;
        }
        connection.reading = true;
    }
}

/// Sends FIN once queued answers are out, then closes (the `--close` mode).
fn shut_down(stream: *mut uv_stream_t) {
    // SAFETY: `uv_shutdown_t` is a plain C struct; all-zero bytes are valid before use.
    let request: *mut uv_shutdown_t = Box::into_raw(Box::new(unsafe {
        MaybeUninit::<uv_shutdown_t>::zeroed().assume_init()
    }));
    // SAFETY: `stream` is an open connection; libuv owns `request` until `on_shutdown`.
    if unsafe { uv_shutdown(request, stream, Some(on_shutdown)) } < 0 {
        // SAFETY: libuv rejected the request and kept no pointer to it.
        drop(unsafe { Box::from_raw(request) });
        close_connection(stream.cast());
    }
}

/// The write side is shut: the connection has nothing more to do.
unsafe extern "C" fn on_shutdown(request: *mut uv_shutdown_t, _status: c_int) {
    // SAFETY: `request` came from `Box::into_raw` in `shut_down` and libuv is done with it.
    let request = unsafe { Box::from_raw(request) };
    close_connection(request.handle.cast());
}

/// Closes a connection unless it is already closing; `on_close` frees it.
fn close_connection(handle: *mut uv_handle_t) {
    // SAFETY: callers pass a live connection handle (not yet freed: `on_close` is the
    // only place that frees, and it runs after the handle is fully closed).
    unsafe {
        if uv_is_closing(handle) == 0 {
            uv_close(handle, Some(on_close));
        }
    }
}

/// The handle is fully closed: free its [`Connection`].
unsafe extern "C" fn on_close(handle: *mut uv_handle_t) {
    // SAFETY: the data pointer is the box made in `on_connection`; libuv no longer
    // references the handle inside it.
    drop(unsafe { Box::from_raw(uv_handle_get_data(handle).cast::<Connection>()) });
}

/// Turns a libuv status into a `Result` naming the call that failed.
fn check(call: &str, status: c_int) -> Result<(), String> {
    if status < 0 {
        return Err(format!("{call} failed: {}", uv_error_text(status)));
    }
    Ok(())
}

/// Like [`check`], for bind/listen, with the address in the message.
fn check_at(call: &str, host: &str, port: u16, status: c_int) -> Result<(), String> {
    if status < 0 {
        return Err(format!(
            "cannot {call} {host} port {port}: {} (is the port in use, or the address not local?)",
            uv_error_text(status)
        ));
    }
    Ok(())
}

/// libuv's name and description of an error code, e.g. `EADDRINUSE (address already in use)`.
fn uv_error_text(status: c_int) -> String {
    // SAFETY: libuv returns static NUL-terminated strings for every code (a fixed
    // "unknown" text for codes it does not know).
    let (name, text) = unsafe {
        (
            CStr::from_ptr(uv_err_name(status)),
            CStr::from_ptr(uv_strerror(status)),
        )
    };
    format!("{} ({})", name.to_string_lossy(), text.to_string_lossy())
}

#[cfg(test)]
mod tests {
    use super::*;

    const REQUEST: &[u8] = b"GET / HTTP/1.1\r\nHost: a\r\n\r\n";

    fn count_all(pieces: &[&[u8]]) -> usize {
        let mut counter = TerminatorCounter::default();
        pieces.iter().map(|piece| counter.feed(piece)).sum()
    }

    #[test]
    fn counts_whole_and_pipelined_requests() {
        assert_eq!(count_all(&[REQUEST]), 1);
        assert_eq!(count_all(&[&REQUEST.repeat(16)]), 16);
        assert_eq!(count_all(&[b"GET / HTTP/1.1\r\nHost: a\r\n"]), 0);
    }

    #[test]
    fn counts_a_terminator_split_at_every_byte() {
        let stream = REQUEST.repeat(3);
        for split in 0..=stream.len() {
            let (head, tail) = stream.split_at(split);
            assert_eq!(count_all(&[head, tail]), 3, "split at {split}");
        }
    }

    #[test]
    fn counts_byte_by_byte() {
        let stream = REQUEST.repeat(5);
        let pieces: Vec<&[u8]> = stream.chunks(1).collect();
        assert_eq!(count_all(&pieces), 5);
    }

    #[test]
    fn terminators_do_not_overlap() {
        assert_eq!(count_all(&[b"\r\n\r\n\r\n"]), 1);
        assert_eq!(count_all(&[b"\r\n\r\n\r\n\r\n"]), 2);
        assert_eq!(count_all(&[b"\r\n\r\r\n\r\n"]), 1);
        assert_eq!(count_all(&[b"\n\r\n\r\n"]), 1);
        assert_eq!(count_all(&[b"\r\r\n\r\n"]), 1);
    }

    #[test]
    fn finds_terminators_around_long_bodies() {
        // The fast path skips blocks without `\r`; terminators at every offset around
        // a block boundary must still be found, also when the match started earlier.
        for body_len in 0..(3 * SCAN_BLOCK_BYTES) {
            let mut stream = REQUEST.to_vec();
            stream.resize(stream.len() + body_len, b'x');
            stream.extend_from_slice(REQUEST);
            assert_eq!(count_all(&[&stream]), 2, "body of {body_len} bytes");
            for split in [1, 2, 3, stream.len() / 2] {
                let (head, tail) = stream.split_at(split.min(stream.len()));
                assert_eq!(
                    count_all(&[head, tail]),
                    2,
                    "body {body_len}, split {split}"
                );
            }
        }
    }

    fn options(close: bool, body_bytes: Option<usize>) -> Options {
        Options {
            host: "127.0.0.1".to_string(),
            port: 0,
            close_after_answer: close,
            body_bytes,
            defer_accept: false,
        }
    }

    fn gathered(block: &AnswerBlock, start: usize, end: usize) -> Vec<u8> {
        let mut bufs = Vec::new();
        block.describe(start, end, &mut bufs);
        bufs.iter()
            // SAFETY: `describe` only makes buffers inside `block.bytes`.
            .flat_map(|buf| unsafe { std::slice::from_raw_parts(buf.base as *const u8, buf.len) })
            .copied()
            .collect()
    }

    #[test]
    fn canned_answer_is_a_complete_response() {
        let block = AnswerBlock::new(&options(false, None));
        let answer = gathered(&block, 0, block.answer_len);
        let text = String::from_utf8(answer).unwrap();
        assert!(text.starts_with("HTTP/1.1 200 OK\r\n"));
        assert!(text.contains("\r\nContent-Length: 13\r\n"));
        assert!(text.contains("\r\nContent-Type: text/plain\r\n"));
        assert!(text.contains("\r\nDate: "));
        assert!(!text.contains("Connection: close"));
        assert!(text.ends_with("\r\n\r\nHello, World!"));

        let closing = AnswerBlock::new(&options(true, Some(5)));
        let text = String::from_utf8(gathered(&closing, 0, closing.answer_len)).unwrap();
        assert!(text.contains("\r\nConnection: close\r\n"));
        assert!(text.contains("\r\nContent-Length: 5\r\n"));
        assert!(text.ends_with("\r\n\r\nxxxxx"));
    }

    #[test]
    fn any_stretch_of_repeated_answers_is_described_exactly() {
        for body in [None, Some(40_000)] {
            let block = AnswerBlock::new(&options(false, body));
            let one = gathered(&block, 0, block.answer_len);
            let count = 3 * (block.bytes.len() / block.answer_len) + 2;
            let expected = one.repeat(count);
            for start in [
                0,
                1,
                block.answer_len - 1,
                block.answer_len + 7,
                expected.len() - 1,
            ] {
                let got = gathered(&block, start, expected.len());
                assert_eq!(got, &expected[start..], "start {start}");
            }
            assert!(gathered(&block, 5, 5).is_empty());
        }
    }
}

//! Streaming responses on real sockets: server-sent events read by a real client (Python's
//! http.client), streams that outlive the idle timeout, a stalled reader cut off by the write
//! timeout while others are served, the backpressure API (`Flow::Pause`, the `drain` signal),
//! chunked trailers, and the streaming routes of the httpechoserver example.

mod common;
#[path = "common/pipeline_util.rs"]
mod pipeline_util;

use std::io::{BufRead, BufReader, Read, Write};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::mpsc::{self, Receiver, Sender};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::*;
use pipeline_util::*;
use uvhttp::http::sse::{self, Event, EventStream};
use uvhttp::http::{Flow, ServerConnection, ServerConnectionPtr, ServerOptions, StatusCode};
use uvhttp::uv::Loop;

/// What the streaming producers did, shared with the test thread.
#[derive(Default)]
struct Stats {
    /// Body bytes accepted by `send` so far (all streams of the server).
    sent: AtomicU64,
    /// Sends that returned `Flow::Pause`.
    pauses: AtomicUsize,
    /// `drain` signals received by producers.
    drains: AtomicUsize,
}

/// Size of one piece of the `/endless` and `/paced` streams.
const PIECE: usize = 64 * 1024;

fn param(conn: &ServerConnection, name: &str, default: u64) -> u64 {
    conn.request()
        .query_param(name)
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Starts a chunked (or, with `length`, sized) 200 response.
fn start_stream(conn: &ServerConnection, length: Option<u64>) {
    let resp = conn.response();
    resp.set_status(StatusCode::OK)
        .set_content_type("application/octet-stream");
    match length {
        Some(n) => resp.set_content_length(n),
        None => resp.set_chunked_transfer_encoding(true),
    };
    conn.send_header().expect("send head");
}

/// Sends pieces from `next` while `send` says `Flow::Continue`, and again on every `drain`:
/// the producer shape the library documents. `next` returns `None` at the end.
fn pump_with_drain(
    conn: &ServerConnection,
    stats: Arc<Stats>,
    mut next: impl FnMut() -> Option<Vec<u8>> + 'static,
) {
    let mut pump = move |c: &ServerConnection| loop {
        let Some(piece) = next() else {
            let _ = c.complete();
            return;
        };
        let len = piece.len() as u64;
        match c.send_owned(piece) {
            Ok(flow) => {
                stats.sent.fetch_add(len, Ordering::Relaxed);
                if flow == Flow::Pause {
                    stats.pauses.fetch_add(1, Ordering::Relaxed);
                    return; // resumed by `drain`
                }
            }
            Err(_) => return, // the client is gone
        }
    };
    pump(conn);
    if !conn.is_complete() && conn.is_connected() {
        conn.drain.attach(pump);
    }
}

/// Routes:
/// - `GET /sse?count=N&interval_ms=M` → N events `id: k` / `data: event k`, the first at once,
///   then one every M ms; k starts after the `Last-Event-ID` the client sent (else at 0). The
///   `Last-Event-ID` the app saw is reported as an event.
/// - `GET /ticks?count=N&interval_ms=M` → a chunked body of N chunks `tick i\n`, one every M ms
/// - `GET /endless` → 64 KiB chunks forever, paced by `drain`; its close is reported
/// - `GET /paced?mib=N` → an N MiB `pattern()` body (Content-Length), paced by `drain`
/// - `GET /trailers` → three chunks, then trailers (two valid, two the library must drop)
/// - `GET /r/N?ms=M` → `resp N` after M ms on a loop timer
fn route(lp: Loop, conn: &ServerConnection, events: &Sender<String>, stats: &Arc<Stats>) {
    let path = conn.request().path().to_string();
    let trimmed = path.trim_start_matches('/');
    let (name, arg) = trimmed.split_once('/').unwrap_or((trimmed, ""));
    match name {
        "sse" => {
            let count = param(conn, "count", 5);
            let interval = param(conn, "interval_ms", 100);
            let last = sse::last_event_id(&conn.request()).map(str::to_string);
            let _ = events.send(format!("last-event-id {last:?}"));
            let first = last
                .and_then(|l| l.parse::<u64>().ok())
                .map_or(0, |n| n + 1);
            let mut stream = Some(EventStream::start(conn).expect("start the event stream"));
            let mut k = 0;
            let mut tick = move |_| {
                let Some(s) = stream.as_ref() else {
                    return false;
                };
                let id = (first + k).to_string();
                let data = format!("event {id}");
                let sent = s.send(&Event {
                    id: Some(&id),
                    data: &data,
                    ..Event::default()
                });
                k += 1;
                if sent.is_err() || k == count {
                    let _ = stream.take().expect("open").end();
                    return false;
                }
                true
            };
            if tick(0) {
                every(lp, interval, tick);
            }
        }
        "ticks" => {
            let count = param(conn, "count", 10);
            let interval = param(conn, "interval_ms", 100);
            start_stream(conn, None);
            let pending = conn.defer();
            every(lp, interval, move |i| {
                if pending.send(format!("tick {i}\n").as_bytes()).is_err() {
                    return false;
                }
                if i + 1 == count {
                    pending.complete().expect("complete");
                    return false;
                }
                true
            });
        }
        "endless" => {
            start_stream(conn, None);
            let events = events.clone();
            conn.close.attach(move |_| {
                let _ = events.send("endless closed".to_string());
            });
            let block = vec![b'e'; PIECE];
            pump_with_drain(conn, stats.clone(), move || Some(block.clone()));
        }
        "paced" => {
            let total = param(conn, "mib", 1) as usize * 1024 * 1024;
            start_stream(conn, Some(total as u64));
            let body = pattern(total);
            let mut offset = 0;
            let counted = stats.clone();
            // Counts drains before the pump runs for them.
            conn.drain.attach(move |_| {
                counted.drains.fetch_add(1, Ordering::Relaxed);
            });
            pump_with_drain(conn, stats.clone(), move || {
                if offset >= body.len() {
                    return None;
                }
                let end = (offset + PIECE).min(body.len());
                let piece = body[offset..end].to_vec();
                offset = end;
                Some(piece)
            });
        }
        "trailers" => {
            conn.response()
                .set_status(StatusCode::OK)
                .set_content_type("text/plain")
                .set_chunked_transfer_encoding(true)
                .set("Trailer", "X-Checksum, X-Parts");
            for part in ["one,", "two,", "three"] {
                conn.send(part.as_bytes()).expect("send");
            }
            conn.complete_with_trailers(&[
                ("X-Checksum", "one,two,three"),
                ("Bad Name", "not a token: dropped"),
                ("X-Evil", "a\r\nInjected: 1"),
                ("X-Parts", "3"),
            ])
            .expect("complete with trailers");
        }
        "r" => {
            let ms = param(conn, "ms", 0);
            let pending = conn.defer();
            let body = format!("resp {arg}");
            after(lp, ms, move || {
                pending
                    .respond(StatusCode::OK, "text/plain", body.as_bytes())
                    .expect("respond");
            });
        }
        _ => conn
            .respond(StatusCode::NOT_FOUND, "text/plain", b"Not Found\n")
            .expect("respond"),
    }
}

fn start_server(
    configure: impl FnOnce(&mut ServerOptions) + Send + 'static,
) -> (TestServer, Receiver<String>, Arc<Stats>) {
    let (tx, rx) = mpsc::channel::<String>();
    let stats = Arc::new(Stats::default());
    let shared = stats.clone();
    let srv = TestServer::start(move |srv| {
        srv.configure(configure);
        let lp = srv.event_loop();
        srv.connection += move |conn: ServerConnectionPtr| route(lp, &conn, &tx, &shared);
    });
    (srv, rx, stats)
}

fn get_req(target: &str) -> String {
    format!("GET {target} HTTP/1.1\r\nHost: t\r\n\r\n")
}

fn recv_event(rx: &Receiver<String>) -> String {
    rx.recv_timeout(Duration::from_secs(10))
        .expect("the handler reported back")
}

// ---- 5. server-sent events read by a real client ---------------------------------------------

/// Reads an event stream with Python's http.client, line by line as it arrives, printing the
/// status, the Content-Type, and every `id:`/`data:` line with the seconds since the request.
const PY_SSE_CLIENT: &str = r#"
import http.client, sys, time
host, port, path, last_id = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
conn = http.client.HTTPConnection(host, port, timeout=10)
headers = {"Accept": "text/event-stream"}
if last_id:
    headers["Last-Event-ID"] = last_id
t0 = time.monotonic()
conn.request("GET", path, headers=headers)
resp = conn.getresponse()
print("status", resp.status, flush=True)
print("content-type", resp.getheader("Content-Type"), flush=True)
while True:
    line = resp.readline()
    if not line:
        break
    line = line.decode().rstrip("\n")
    if line.startswith("data:") or line.startswith("id:"):
        print("%.4f %s" % (time.monotonic() - t0, line), flush=True)
print("end", flush=True)
"#;

/// Runs the Python client; returns its output lines, each with the time the test saw it.
fn python_sse(addr: std::net::SocketAddr, path: &str, last_id: &str) -> Vec<(Duration, String)> {
    let started = Instant::now();
    let mut child = Command::new("python3")
        .args([
            "-c",
            PY_SSE_CLIENT,
            &addr.ip().to_string(),
            &addr.port().to_string(),
            path,
            last_id,
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("python3 is needed for this test");
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            let _ = tx.send((started.elapsed(), line));
        }
    });
    let mut lines = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left) {
            Ok(l) => {
                let end = l.1 == "end";
                lines.push(l);
                if end {
                    break;
                }
            }
            Err(_) => {
                let _ = child.kill();
                panic!("the Python SSE client did not finish: {lines:?}");
            }
        }
    }
    assert!(child.wait().unwrap().success(), "python client failed");
    lines
}

/// The `(seconds, field line)` pairs of the client's output.
fn timed_fields(lines: &[(Duration, String)]) -> Vec<(f64, String)> {
    lines
        .iter()
        .filter_map(|(_, l)| {
            let (t, rest) = l.split_once(' ')?;
            Some((t.parse::<f64>().ok()?, rest.to_string()))
        })
        .collect()
}

#[test]
fn sse_events_reach_a_real_client_one_by_one_in_order_as_they_are_sent() {
    const COUNT: usize = 8;
    const INTERVAL_MS: u64 = 100;
    let (srv, events, _) = start_server(|_| {});
    let lines = python_sse(
        srv.addr,
        &format!("/sse?count={COUNT}&interval_ms={INTERVAL_MS}"),
        "",
    );
    assert_eq!(lines[0].1, "status 200");
    assert_eq!(lines[1].1, "content-type text/event-stream");
    assert_eq!(recv_event(&events), "last-event-id None");
    let fields = timed_fields(&lines);
    let data: Vec<_> = fields
        .iter()
        .filter(|(_, l)| l.starts_with("data:"))
        .collect();
    let ids: Vec<_> = fields
        .iter()
        .filter(|(_, l)| l.starts_with("id:"))
        .map(|(_, l)| l.as_str())
        .collect();
    let want: Vec<String> = (0..COUNT).map(|k| format!("data: event {k}")).collect();
    assert_eq!(
        data.iter().map(|(_, l)| l.clone()).collect::<Vec<_>>(),
        want,
        "every event, in order"
    );
    assert_eq!(
        ids,
        (0..COUNT).map(|k| format!("id: {k}")).collect::<Vec<_>>()
    );
    // Arrivals are spread over the stream's life, not delivered together at the end: the last
    // is sent (COUNT-1)*INTERVAL ms after the first, and the client saw the first well before.
    let first = data[0].0;
    let last = data[COUNT - 1].0;
    let span = (COUNT as f64 - 1.0) * INTERVAL_MS as f64 / 1000.0;
    assert!(
        last - first >= span * 0.7,
        "events arrived together: first at {first:.3}s, last at {last:.3}s"
    );
    // Events arrive one by one: most arrive apart from the one before (a scheduling hiccup on
    // a loaded machine may bunch a pair, so not every gap is required).
    let apart = data
        .windows(2)
        .filter(|p| p[1].0 - p[0].0 >= INTERVAL_MS as f64 / 1000.0 / 3.0)
        .count();
    assert!(apart >= (COUNT - 1) / 2, "events bunched: {data:?}");
    srv.stop();
}

#[test]
fn sse_last_event_id_is_visible_to_the_app_and_the_stream_resumes_after_it() {
    let (srv, events, _) = start_server(|_| {});
    let lines = python_sse(srv.addr, "/sse?count=3&interval_ms=20", "41");
    assert_eq!(recv_event(&events), "last-event-id Some(\"41\")");
    let data: Vec<String> = timed_fields(&lines)
        .into_iter()
        .filter(|(_, l)| l.starts_with("data:"))
        .map(|(_, l)| l)
        .collect();
    assert_eq!(data, ["data: event 42", "data: event 43", "data: event 44"]);
    srv.stop();
}

// ---- 6. a stream outlives the idle timeout ---------------------------------------------------

#[test]
fn a_stream_longer_than_the_idle_timeout_is_delivered_completely() {
    let (srv, _events, _) = start_server(|o| o.idle_timeout = Duration::from_millis(200));
    let stream = connect(srv.addr);
    let started = Instant::now();
    (&stream)
        .write_all(get_req("/ticks?count=10&interval_ms=100").as_bytes())
        .unwrap();
    let mut reader = ResponseReader::new(stream);
    let r = reader.next_response().expect("the whole stream");
    let elapsed = started.elapsed();
    let want: String = (0..10).map(|i| format!("tick {i}\n")).collect();
    assert_eq!(r.body_str(), want);
    assert!(
        elapsed >= Duration::from_millis(900),
        "a 1 s stream took {elapsed:?}"
    );
    // The idle timeout still applies once the stream is over.
    let idle_started = Instant::now();
    assert!(reader.at_eof(), "idle connection closed after the stream");
    let idle = idle_started.elapsed();
    assert!(
        idle >= Duration::from_millis(150) && idle < Duration::from_secs(3),
        "idle close after {idle:?}"
    );
    drop(reader);
    srv.stop();
}

// ---- 7. a stalled reader is cut off; others are served meanwhile ----------------------------

#[test]
fn a_reader_that_stalls_is_cut_off_after_the_write_timeout_while_others_are_served() {
    const HIGH_WATER: usize = 256 * 1024;
    let (srv, events, stats) = start_server(|o| {
        o.write_timeout = Duration::from_millis(300);
        o.write_high_water_mark = HIGH_WATER;
    });
    // The stalled client asks for an endless stream and never reads.
    let stalled = connect(srv.addr);
    (&stalled)
        .write_all(get_req("/endless").as_bytes())
        .unwrap();
    let started = Instant::now();

    // Meanwhile another client is served normally, and what the server holds stays bounded:
    // the producer stops at `Flow::Pause`, so at most the high-water mark plus the piece that
    // crossed it is queued (the other client's small responses add a little).
    let bound = HIGH_WATER + PIECE + 16 * 1024;
    let mut other = Client::connect(srv.addr);
    let mut served = 0;
    let mut max_held = 0;
    loop {
        let t = Instant::now();
        let r = other.request(get_req(&format!("/r/{served}")).as_bytes());
        assert_eq!(r.body_str(), format!("resp {served}"));
        assert!(
            t.elapsed() < Duration::from_secs(2),
            "the other client waited {:?}",
            t.elapsed()
        );
        served += 1;
        let held = srv.with_server(|s| s.buffered_bytes());
        max_held = max_held.max(held);
        assert!(held <= bound, "server holds {held} bytes (bound {bound})");
        if let Ok(ev) = events.try_recv() {
            assert_eq!(ev, "endless closed");
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(15),
            "the stalled client was never cut off"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let cut_after = started.elapsed();
    assert!(
        cut_after >= Duration::from_millis(300),
        "cut off before the write timeout: {cut_after:?}"
    );
    assert!(served >= 3, "the other client was served during the stall");
    assert!(
        max_held >= HIGH_WATER / 2,
        "the producer never filled the queue ({max_held} bytes): the test did not stall"
    );
    assert!(stats.pauses.load(Ordering::Relaxed) >= 1);
    // After the cut, only the other (idle) connection is left and nothing is held.
    srv.wait_connections(|n| n == 1, "the stalled connection to be gone");
    assert_eq!(srv.with_server(|s| s.buffered_bytes()), 0);
    // The stalled client gets what was in flight, then a reset or EOF: never the end of the
    // chunked stream (it was cut, not finished).
    let mut sink = Vec::new();
    let _ = (&stalled).read_to_end(&mut sink);
    assert!(
        !sink.ends_with(b"0\r\n\r\n"),
        "the endless stream ended cleanly"
    );
    let r = other.request(get_req("/r/last").as_bytes());
    assert_eq!(r.body_str(), "resp last");
    eprintln!(
        "stalled reader cut after {cut_after:?}; other client served {served} times; \
         server held at most {max_held} bytes"
    );
    drop(other);
    srv.stop();
}

// ---- 8. the backpressure API -------------------------------------------------------------------

#[test]
fn send_pauses_above_the_high_water_mark_and_drain_paces_a_large_stream_intact() {
    const HIGH_WATER: usize = 256 * 1024;
    const MIB: usize = 16;
    let (srv, _events, stats) = start_server(|o| o.write_high_water_mark = HIGH_WATER);
    let stream = connect(srv.addr);
    (&stream)
        .write_all(get_req(&format!("/paced?mib={MIB}")).as_bytes())
        .unwrap();
    // Not reading: the producer must hit Flow::Pause and stay paused, holding about the
    // high-water mark, not the whole body.
    wait_until(Duration::from_secs(10), "a Flow::Pause", || {
        stats.pauses.load(Ordering::Relaxed) >= 1
    });
    let mut quiet = (0, 0);
    wait_until(Duration::from_secs(10), "the producer to go quiet", || {
        std::thread::sleep(Duration::from_millis(100));
        let now = (
            stats.sent.load(Ordering::Relaxed),
            stats.drains.load(Ordering::Relaxed),
        );
        std::mem::replace(&mut quiet, now) == now
    });
    let sent_before = stats.sent.load(Ordering::Relaxed);
    let drains_before = stats.drains.load(Ordering::Relaxed);
    assert!(
        (sent_before as usize) < MIB * 1024 * 1024,
        "the whole body was produced without the client reading"
    );
    let held = srv.with_server(|s| s.buffered_bytes());
    assert!(
        (HIGH_WATER / 2..=HIGH_WATER + PIECE).contains(&held),
        "paused with {held} bytes queued (high water {HIGH_WATER})"
    );

    // Reading lets the queue drain: `drain` fires and the producer finishes, intact.
    let mut reader = ResponseReader::new(stream);
    let r = reader.next_response().expect("the paced body");
    assert_eq!(r.status, 200);
    assert_eq!(r.body.len(), MIB * 1024 * 1024);
    assert!(r.body == pattern(MIB * 1024 * 1024), "body damaged");
    let drains = stats.drains.load(Ordering::Relaxed);
    assert!(
        drains > drains_before,
        "no drain after the client read ({drains_before} before, {drains} after)"
    );
    assert_eq!(
        stats.sent.load(Ordering::Relaxed),
        (MIB * 1024 * 1024) as u64
    );
    eprintln!(
        "paced stream: {} pauses, {drains} drains ({drains_before} before reading), {held} \
         bytes held while paused",
        stats.pauses.load(Ordering::Relaxed)
    );
    drop(reader);
    srv.stop();
}

// ---- 11. chunked trailers ------------------------------------------------------------------------

#[test]
fn trailers_arrive_after_the_last_chunk() {
    let (srv, _events, _) = start_server(|_| {});
    let mut c = Client::connect(srv.addr);
    c.send(get_req("/trailers").as_bytes());
    let head = c.read_head_raw();
    assert!(head.contains("Transfer-Encoding: chunked\r\n"), "{head}");
    assert!(head.contains("Trailer: X-Checksum, X-Parts\r\n"), "{head}");
    // The exact body bytes: three chunks, the last chunk, the valid trailers, the end.
    let want = "4\r\none,\r\n4\r\ntwo,\r\n5\r\nthree\r\n0\r\nX-Checksum: one,two,three\r\nX-Parts: 3\r\n\r\n";
    let got = c.read_exact_bytes(want.len());
    assert_eq!(String::from_utf8_lossy(&got), want);
    // Nothing else follows (the dropped trailers did not leak out), and the connection lives.
    c.expect_open_for(Duration::from_millis(50));
    drop(c);
    srv.stop();
}

#[test]
fn trailers_of_a_response_waiting_behind_another_are_delivered_in_order() {
    let (srv, _events, _) = start_server(|_| {});
    let stream = connect(srv.addr);
    let batch = get_req("/r/0?ms=50") + &get_req("/trailers") + &get_req("/r/2?ms=1");
    (&stream).write_all(batch.as_bytes()).unwrap();
    let mut reader = ResponseReader::new(stream);
    assert_eq!(reader.next_response().unwrap().body_str(), "resp 0");
    let t = reader.next_response().unwrap();
    assert_eq!(t.body_str(), "one,two,three");
    assert_eq!(
        t.trailers,
        vec![
            ("X-Checksum".to_string(), "one,two,three".to_string()),
            ("X-Parts".to_string(), "3".to_string())
        ]
    );
    assert_eq!(reader.next_response().unwrap().body_str(), "resp 2");
    drop(reader);
    srv.stop();
}

// ---- 12. the example's streaming routes -----------------------------------------------------------

#[test]
fn example_delay_and_thread_routes_answer_pipelined_requests_in_order() {
    let mut sample = SampleServer::start::<&str>(&[]);
    let stream = connect(sample.addr);
    // The thread answers first, the long delay last; the wire order is the request order.
    let batch = get_req("/delay?ms=120&id=a")
        + &get_req("/thread?ms=10&id=b")
        + &get_req("/delay?ms=1&id=c")
        + &get_req("/thread?ms=60&id=d")
        + &get_req("/");
    let started = Instant::now();
    (&stream).write_all(batch.as_bytes()).unwrap();
    let mut reader = ResponseReader::new(stream);
    let bodies: Vec<String> = (0..5)
        .map(|_| reader.next_response().expect("response").body_str())
        .collect();
    assert_eq!(bodies, ["a", "b", "c", "d", "Hello, World!"]);
    // libuv's clock counts whole milliseconds (uv_now truncates), so a 120 ms timer may fire
    // up to 1 ms early against this sub-millisecond clock; earlier than that is a bug (a stale
    // loop clock, fixed in uv::Timer::start).
    assert!(
        started.elapsed() >= Duration::from_millis(119),
        "/delay?ms=120 answered after {:?}",
        started.elapsed()
    );
    drop(reader);
    assert_eq!(sample.signal_and_wait("-TERM").0, Some(0));
}

#[test]
fn example_sse_route_sends_count_events_spread_over_time_then_ends() {
    let mut sample = SampleServer::start::<&str>(&[]);
    let lines = python_sse(sample.addr, "/sse?count=5&interval_ms=80", "");
    assert_eq!(lines[0].1, "status 200");
    assert_eq!(lines[1].1, "content-type text/event-stream");
    let data: Vec<(f64, String)> = timed_fields(&lines)
        .into_iter()
        .filter(|(_, l)| l.starts_with("data:"))
        .collect();
    let texts: Vec<&str> = data.iter().map(|(_, l)| l.as_str()).collect();
    assert_eq!(
        texts,
        ["data: 0", "data: 1", "data: 2", "data: 3", "data: 4"]
    );
    assert!(
        data[4].0 - data[0].0 >= 4.0 * 0.08 * 0.7,
        "events not spread over time: {data:?}"
    );
    assert_eq!(lines.last().unwrap().1, "end", "the stream ends");
    assert_eq!(sample.signal_and_wait("-TERM").0, Some(0));
}

#[test]
fn example_stream_route_delivers_every_chunk_paced_by_drain() {
    let mut sample = SampleServer::start::<&str>(&[]);
    let stream = connect(sample.addr);
    (&stream)
        .write_all(get_req("/stream?chunks=200&size=65536").as_bytes())
        .unwrap();
    // Read slowly at first so the example's producer has to wait for `drain`.
    std::thread::sleep(Duration::from_millis(200));
    let mut reader = ResponseReader::new(stream);
    let r = reader.next_response().expect("the stream");
    assert_eq!(r.status, 200);
    assert_eq!(r.header("transfer-encoding"), Some("chunked"));
    assert_eq!(r.body.len(), 200 * 65536);
    assert!(r.body.iter().all(|&b| b == b's'), "stream body damaged");
    drop(reader);
    assert_eq!(sample.signal_and_wait("-TERM").0, Some(0));
}

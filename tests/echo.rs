//! POST /echo through the sample server's streaming echo handler (the one in
//! examples/httpechoserver.rs): bodies of 0 B, 1 B, 64 KiB and 8 MiB with Content-Length and
//! chunked, and small requests split at every byte boundary.

mod common;

use std::io::Write;
use std::time::Duration;

use common::*;

/// Sends `body` to /echo (Content-Length or chunked) from a separate writer thread while this
/// thread reads the echo: the server streams it back as it reads, so a client that wrote
/// everything before reading would deadlock on large bodies.
fn echo_roundtrip(c: &mut Client, body: &[u8], chunked_body: bool) -> Reply {
    let mut raw = Vec::with_capacity(body.len() + 256);
    if chunked_body {
        raw.extend_from_slice(
            b"POST /echo HTTP/1.1\r\nHost: t\r\nContent-Type: application/x-test\r\nTransfer-Encoding: chunked\r\n\r\n",
        );
        // Mixed chunk sizes, so chunk boundaries fall everywhere relative to reads.
        let mut rest = body;
        let sizes = [1usize, 4093, 65_536, 17, 100_000];
        let mut i = 0;
        while !rest.is_empty() {
            let n = sizes[i % sizes.len()].min(rest.len());
            raw.extend_from_slice(format!("{n:x}\r\n").as_bytes());
            raw.extend_from_slice(&rest[..n]);
            raw.extend_from_slice(b"\r\n");
            rest = &rest[n..];
            i += 1;
        }
        raw.extend_from_slice(b"0\r\n\r\n");
    } else {
        raw.extend_from_slice(
            format!(
                "POST /echo HTTP/1.1\r\nHost: t\r\nContent-Type: application/x-test\r\nContent-Length: {}\r\n\r\n",
                body.len()
            )
            .as_bytes(),
        );
        raw.extend_from_slice(body);
    }
    let mut writer = c.stream().try_clone().expect("clone stream");
    let t = std::thread::spawn(move || {
        for piece in raw.chunks(256 * 1024) {
            writer.write_all(piece).expect("write request");
        }
    });
    let r = c.read_reply();
    t.join().expect("writer thread");
    r
}

fn check_echo(c: &mut Client, size: usize, chunked_body: bool) {
    let body = pattern(size);
    let r = echo_roundtrip(c, &body, chunked_body);
    let what = format!("{size} bytes, chunked={chunked_body}");
    assert_eq!(r.status, 200, "{what}");
    assert_eq!(
        r.header("content-type"),
        Some("application/x-test"),
        "{what}"
    );
    if chunked_body {
        assert_eq!(r.header("transfer-encoding"), Some("chunked"), "{what}");
        assert!(r.header("content-length").is_none(), "{what}");
    } else {
        assert_eq!(
            r.header("content-length"),
            Some(size.to_string().as_str()),
            "{what}"
        );
        assert!(r.header("transfer-encoding").is_none(), "{what}");
    }
    assert!(
        !r.closes(),
        "{what}: echo keeps the connection: {:?}",
        r.headers
    );
    assert_eq!(r.body.len(), size, "{what}");
    assert!(r.body == body, "{what}: echoed body differs");
}

#[test]
fn echo_with_content_length() {
    let srv = sample_server();
    let mut c = Client::connect(srv.addr);
    for size in [0, 1, 64 * 1024, 8 * 1024 * 1024] {
        check_echo(&mut c, size, false);
    }
    // All on one kept-alive connection.
    assert_eq!(srv.connection_count(), 1);
    assert_eq!(c.request(&get("/")).body_str(), "Hello, World!");
    drop(c);
    srv.stop();
}

#[test]
fn echo_with_chunked_request_body() {
    let srv = sample_server();
    let mut c = Client::connect(srv.addr);
    for size in [0, 1, 64 * 1024, 8 * 1024 * 1024] {
        check_echo(&mut c, size, true);
    }
    assert_eq!(srv.connection_count(), 1);
    assert_eq!(c.request(&get("/")).body_str(), "Hello, World!");
    drop(c);
    srv.stop();
}

#[test]
fn echo_clients_in_parallel() {
    let srv = sample_server();
    let addr = srv.addr;
    let workers: Vec<_> = (0..4)
        .map(|i| {
            std::thread::spawn(move || {
                let mut c = Client::connect(addr);
                for round in 0..3 {
                    check_echo(&mut c, 300_000 + i * 1000 + round, round % 2 == 1);
                }
            })
        })
        .collect();
    for w in workers {
        w.join().expect("worker");
    }
    srv.stop();
}

/// Sends `raw` on `c` in two writes split at `at`, with a pause between so the server sees
/// (at least) two reads.
fn send_split(c: &mut Client, raw: &[u8], at: usize) {
    c.send(&raw[..at]);
    c.stream().flush().unwrap();
    std::thread::sleep(Duration::from_millis(1));
    c.send(&raw[at..]);
}

fn split_everywhere(raw: &[u8], check: impl Fn(&Reply)) {
    let srv = sample_server();
    let mut c = Client::connect(srv.addr);
    for at in 1..raw.len() {
        send_split(&mut c, raw, at);
        let r = c.read_reply();
        assert!(!r.closes(), "split at {at}: {:?}", r.headers);
        check(&r);
    }
    // Every split was parsed on the same connection: nothing got out of step.
    assert_eq!(srv.connection_count(), 1);
    drop(c);
    srv.stop();
}

#[test]
fn get_split_at_every_byte() {
    split_everywhere(
        b"GET / HTTP/1.1\r\nHost: localhost\r\nAccept: */*\r\nUser-Agent: split\r\n\r\n",
        |r| {
            assert_eq!(r.status, 200);
            assert_eq!(r.body_str(), "Hello, World!");
        },
    );
}

#[test]
fn post_with_content_length_split_at_every_byte() {
    split_everywhere(
        b"POST /echo HTTP/1.1\r\nHost: localhost\r\nContent-Type: text/plain\r\nContent-Length: 12\r\n\r\nhello, world",
        |r| {
            assert_eq!(r.status, 200);
            assert_eq!(r.header("content-length"), Some("12"));
            assert_eq!(r.body_str(), "hello, world");
        },
    );
}

#[test]
fn post_chunked_split_at_every_byte() {
    split_everywhere(
        b"POST /echo HTTP/1.1\r\nHost: localhost\r\nTransfer-Encoding: chunked\r\n\r\n\
          5;ext=\"v\"\r\nhello\r\n7\r\n, world\r\n0\r\nX-Trailer: t\r\n\r\n",
        |r| {
            assert_eq!(r.status, 200);
            assert_eq!(r.header("transfer-encoding"), Some("chunked"));
            assert_eq!(r.body_str(), "hello, world");
        },
    );
}

#[test]
fn pipelined_requests_split_at_every_byte() {
    // Two requests in one stream: the split also falls on the boundary between them.
    let raw = b"POST /echo HTTP/1.1\r\nHost: h\r\nContent-Length: 3\r\n\r\nabcGET / HTTP/1.1\r\nHost: h\r\n\r\n";
    let srv = sample_server();
    let mut c = Client::connect(srv.addr);
    for at in 1..raw.len() {
        send_split(&mut c, raw, at);
        assert_eq!(c.read_reply().body_str(), "abc", "split at {at}");
        assert_eq!(c.read_reply().body_str(), "Hello, World!", "split at {at}");
    }
    drop(c);
    srv.stop();
}

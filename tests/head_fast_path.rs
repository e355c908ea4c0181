//! A request head that arrives whole is parsed by a single-pass fast path; one that arrives
//! in pieces by the byte scanner and httparse. The application must not be able to tell: the
//! same pipelined stream fed in one read and in small reads must give the same requests, as
//! seen through the public API, and the same responses.

use std::cell::RefCell;
use std::rc::Rc;

use uvhttp::http::in_memory::InMemoryConnection;
use uvhttp::http::{Server, ServerConnectionPtr, StatusCode};
use uvhttp::uv::OwnedLoop;

/// Requests of many shapes, pipelined; the last one is refused (two Host fields), which
/// closes the connection.
const STREAM: &[&[u8]] = &[
    b"GET / HTTP/1.1\r\nHost: b\r\n\r\n",
    b"GET /plaintext HTTP/1.1\r\nHost: localhost:8080\r\nUser-Agent: wrk\r\nAccept: */*\r\n\r\n",
    b"GET /index.html?user=42&lang=en HTTP/1.1\r\nHost: example.com\r\nUser-Agent: Mozilla/5.0 (X11; Linux x86_64) Gecko/20100101 Firefox/128.0\r\nAccept-Encoding: gzip, deflate, br\r\nCookie: session=abcdef0123456789; theme=dark\r\n\r\n",
    b"POST /upload?a=b HTTP/1.1\r\nHost: example.com:8080\r\nContent-Length: 5\r\nContent-Type: text/plain\r\n\r\nhello",
    b"PUT /x HTTP/1.1\r\nHost: [::1]:80\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
    b"PROPFIND /dav HTTP/1.1\r\nhost:h\r\nX-Obs: caf\xe9\r\nX-Empty:\r\nX-Ws: \t a\tb \t\r\nx-ws: 2\r\n\r\n",
    b"OPTIONS * HTTP/1.1\r\nHost: h\r\n\r\n",
    b"GET http://user@example.com:8080/p?q HTTP/1.1\r\nHost: other\r\n\r\n",
    b"DELETE /a?b?c HTTP/1.1\r\nHOST: h.example\r\nCONTENT-LENGTH: 0\r\nExpect: 100-continue\r\n\r\n",
    b"GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n",
    b"GET /last HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n",
];

/// Feeds `stream` to a fresh server connection `chunk` bytes per read; returns what the
/// application saw of each request and everything the server wrote.
fn serve(stream: &[u8], chunk: usize) -> (Vec<String>, Vec<u8>) {
    let lp = OwnedLoop::new().unwrap();
    let mut srv = Server::with_loop(lp.handle(), "127.0.0.1", 0).unwrap();
    let seen = Rc::new(RefCell::new(Vec::new()));
    let log = seen.clone();
    srv.connection += move |conn: ServerConnectionPtr| {
        let view = {
            let req = conn.request();
            let fields: Vec<(String, Vec<u8>)> = req
                .headers()
                .iter()
                .map(|(n, v)| (n.to_string(), v.to_vec()))
                .collect();
            format!(
                "{:?}",
                (
                    (
                        req.method(),
                        req.method_str(),
                        req.target(),
                        req.target_form()
                    ),
                    (req.path(), req.query(), req.host(), req.version()),
                    (req.content_length(), req.is_chunked(), req.keep_alive()),
                    (req.expects_continue(), req.is_upgrade(), fields),
                    req.headers().byte_len(),
                )
            )
        };
        log.borrow_mut().push(view);
        // Answer once the body is in, so that each request is read whole and the
        // connection stays open for the next.
        let body = Rc::new(RefCell::new(Vec::new()));
        let received = body.clone();
        conn.payload
            .attach(move |_, chunk| received.borrow_mut().extend_from_slice(chunk));
        let answer = move |conn: &uvhttp::http::ServerConnection| {
            let _ = conn.respond(StatusCode::OK, "text/plain", &body.borrow());
        };
        if conn.is_request_complete() {
            answer(&conn);
        } else {
            conn.request_complete_signal.attach(answer);
        }
    };
    let conn = InMemoryConnection::new(&srv);
    conn.capture_output(true);
    for piece in stream.chunks(chunk) {
        conn.feed(piece);
    }
    let out = conn.take_output();
    drop(conn);
    drop(srv);
    lp.close().unwrap();
    let seen = seen.borrow().clone();
    (seen, without_dates(&out))
}

/// The output without its `Date` lines, which depend on the clock, not on the parser.
fn without_dates(out: &[u8]) -> Vec<u8> {
    let mut kept = Vec::new();
    for line in out.split_inclusive(|&b| b == b'\n') {
        if !line.starts_with(b"Date: ") {
            kept.extend_from_slice(line);
        }
    }
    kept
}

#[test]
fn whole_reads_and_small_reads_give_the_same_requests_and_responses() {
    let stream = STREAM.concat();
    let (whole, whole_out) = serve(&stream, stream.len());
    assert_eq!(whole.len(), STREAM.len() - 1, "{whole:#?}");
    let out = String::from_utf8_lossy(&whole_out);
    assert!(out.contains("400 Bad Request"), "{out}");
    assert!(out.contains("more than one Host header"), "{out}");
    for chunk in [1, 2, 3, 7, 29, 64] {
        let (pieces, pieces_out) = serve(&stream, chunk);
        assert_eq!(whole, pieces, "reads of {chunk} bytes");
        assert_eq!(
            String::from_utf8_lossy(&whole_out),
            String::from_utf8_lossy(&pieces_out),
            "reads of {chunk} bytes"
        );
    }
}

mod common;
use common::*;

#[test]
fn hello_and_keep_alive_reuse() {
    let srv = hello_server();
    let mut c = Client::connect(srv.addr);
    for _ in 0..3 {
        let r = c.request(&get("/"));
        assert_eq!(r.status, 200);
        assert_eq!(r.body_str(), "Hello, World!");
        assert!(!r.closes());
        assert!(r.header("date").unwrap().ends_with(" GMT"));
    }
    assert_eq!(srv.connection_count(), 1);
    drop(c);
    srv.wait_connections(|n| n == 0, "the client's close to be seen");
    srv.stop();
}

/// `defer_accept` (Linux: TCP_DEFER_ACCEPT) changes when the server sees a connection, not
/// what it answers: requests in one connection and in one each, the first byte sent late.
#[test]
fn a_server_with_defer_accept_serves_as_usual() {
    use uvhttp::http::{ServerConnectionPtr, StatusCode};
    let srv = TestServer::start(|srv| {
        srv.configure(|o| o.defer_accept = true);
        srv.connection += |conn: ServerConnectionPtr| {
            conn.respond(StatusCode::OK, "text/plain", b"Hello, World!")
                .unwrap();
        };
    });
    let mut c = Client::connect(srv.addr);
    for _ in 0..2 {
        assert_eq!(c.request(&get("/")).body_str(), "Hello, World!");
    }
    for _ in 0..3 {
        let mut c = Client::connect(srv.addr);
        let r = c.request(b"GET / HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n");
        assert_eq!((r.status, r.closes()), (200, true));
    }
    // A client that waits before its first byte is still served once it speaks.
    let mut late = Client::connect(srv.addr);
    std::thread::sleep(std::time::Duration::from_millis(300));
    assert_eq!(late.request(&get("/")).body_str(), "Hello, World!");
    drop((c, late));
    srv.wait_connections(|n| n == 0, "the clients' closes to be seen");
    srv.stop();
}

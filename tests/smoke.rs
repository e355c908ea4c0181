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

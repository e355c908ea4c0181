//! Writing through a real `TcpSocket` allocates nothing in steady state: the socket's output
//! queue is a pooled box that exists only while there is output, and the buffers it queues are
//! pooled too. A counting global allocator watches 10,000 corked writes after a warm-up. It
//! counts per thread: the test harness's own thread may allocate meanwhile (its "running for
//! over 60 seconds" notice on a loaded machine), which is not the socket's doing.

use std::io::Read;

use uvhttp::net::{Socket, TcpSocket};
use uvhttp::uv::{OwnedBuf, OwnedLoop};

mod counting;

use counting::allocations;

const RESPONSE: &[u8] = b"HTTP/1.1 200 OK\r\nContent-Length: 13\r\n\r\nHello, World!";

#[test]
fn writes_through_a_tcp_socket_allocate_nothing_in_steady_state() {
    let lp = OwnedLoop::new().unwrap();
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let mut peer = std::net::TcpStream::connect(listener.local_addr().unwrap()).unwrap();
    let (ours, _) = listener.accept().unwrap();
    let sock = TcpSocket::from_std(lp.handle(), ours).unwrap();
    let mut received = [0u8; 2 * RESPONSE.len()];
    let mut exchange = |rounds: usize| {
        for _ in 0..rounds {
            // One copied and one owned buffer, gathered into one write by the cork.
            sock.cork();
            sock.write(RESPONSE);
            sock.write_owned(OwnedBuf::Static(RESPONSE));
            sock.uncork().unwrap();
            assert_eq!(sock.queued_bytes(), 0, "the kernel took it all");
            peer.read_exact(&mut received).unwrap();
        }
    };
    // Warm-up: the pools get their buffers and queue.
    exchange(100);
    let before = allocations();
    exchange(10_000);
    let allocations = allocations() - before;
    assert_eq!(
        allocations, 0,
        "allocations during 10,000 steady-state writes"
    );
    assert_eq!(&received[..RESPONSE.len()], RESPONSE);
    sock.close();
    drop(sock);
    lp.close().expect("no handle left open");
}

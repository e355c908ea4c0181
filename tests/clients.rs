//! Real clients against the sample server: curl and Python's `http.client`. Each test skips
//! (with a printed reason) only if its tool is not installed.

mod common;

use std::process::{Command, Output};
use std::sync::mpsc;
use std::time::Duration;

use common::*;
use uvhttp::http::ServerConnectionPtr;

/// The sample server, reporting each request's client port (to see connection reuse).
fn server() -> (TestServer, mpsc::Receiver<u16>) {
    let (tx, rx) = mpsc::channel();
    let srv = TestServer::start(move |srv| {
        srv.connection += move |conn: ServerConnectionPtr| {
            let _ = tx.send(conn.peer_address().map_or(0, |a| a.port()));
            sample::route(&conn);
        };
    });
    (srv, rx)
}

fn peers(rx: &mpsc::Receiver<u16>, n: usize) -> Vec<u16> {
    (0..n)
        .map(|_| {
            rx.recv_timeout(Duration::from_secs(5))
                .expect("request seen")
        })
        .collect()
}

fn have(tool: &str, arg: &str) -> bool {
    match Command::new(tool).arg(arg).output() {
        Ok(o) if o.status.success() => true,
        _ => {
            println!("skipped: {tool} is not installed");
            false
        }
    }
}

fn curl(args: &[&str]) -> Output {
    let out = Command::new("curl")
        .args(["--max-time", "20", "-sS"])
        .args(args)
        .output()
        .expect("run curl");
    assert!(
        out.status.success(),
        "curl {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// A temporary file holding `data`, removed on drop.
struct TempFile(std::path::PathBuf);
impl TempFile {
    fn new(name: &str, data: &[u8]) -> TempFile {
        let path = std::env::temp_dir().join(format!("uvhttp-{}-{name}", std::process::id()));
        std::fs::write(&path, data).unwrap();
        TempFile(path)
    }
    fn arg(&self) -> String {
        format!("@{}", self.0.display())
    }
}
impl Drop for TempFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

#[test]
fn curl_get_shows_the_response_head() {
    if !have("curl", "--version") {
        return;
    }
    let (srv, _rx) = server();
    let url = format!("http://{}/", srv.addr);
    let out = curl(&["-i", &url]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.starts_with("HTTP/1.1 200 OK\r\n"), "{text}");
    assert!(text.contains("\r\nContent-Length: 13\r\n"), "{text}");
    assert!(text.contains("\r\nContent-Type: text/plain\r\n"), "{text}");
    assert!(text.contains("\r\nDate: "), "{text}");
    assert!(text.ends_with("\r\n\r\nHello, World!"), "{text}");
    let out = curl(&["-i", &format!("http://{}/status/404", srv.addr)]);
    assert!(String::from_utf8_lossy(&out.stdout).starts_with("HTTP/1.1 404 Not Found\r\n"));
    srv.stop();
}

#[test]
fn curl_reuses_the_connection_for_two_urls() {
    if !have("curl", "--version") {
        return;
    }
    let (srv, rx) = server();
    let a = format!("http://{}/", srv.addr);
    let b = format!("http://{}/big?bytes=100000", srv.addr);
    let out = curl(&["-v", &a, &b]);
    assert_eq!(out.stdout.len(), 13 + 100_000);
    assert!(out.stdout.starts_with(b"Hello, World!"));
    assert!(out.stdout[13..].iter().all(|&c| c == b'x'));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("Re-using existing connection"),
        "curl did not reuse the connection: {stderr}"
    );
    let ports = peers(&rx, 2);
    assert_eq!(ports[0], ports[1], "two connections were used");
    srv.stop();
}

#[test]
fn curl_data_binary_is_echoed() {
    if !have("curl", "--version") {
        return;
    }
    let (srv, _rx) = server();
    let url = format!("http://{}/echo", srv.addr);
    for size in [1usize, 64 * 1024, 3 * 1024 * 1024] {
        let body = pattern(size);
        let file = TempFile::new(&format!("echo-{size}"), &body);
        let out = curl(&[
            "-v",
            "-H",
            "Content-Type: application/x-test",
            "--data-binary",
            &file.arg(),
            &url,
        ]);
        assert!(out.stdout == body, "{size} bytes: echo differs");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains("< HTTP/1.1 200 OK"), "{stderr}");
        if stderr.contains("> Expect: 100-continue") {
            // curl asked first (large bodies): the streaming echo must invite the body.
            assert!(stderr.contains("< HTTP/1.1 100 Continue"), "{stderr}");
        }
    }
    srv.stop();
}

#[test]
fn curl_chunked_upload_is_echoed() {
    if !have("curl", "--version") {
        return;
    }
    let (srv, _rx) = server();
    let url = format!("http://{}/echo", srv.addr);
    let body = pattern(500_000);
    let file = TempFile::new("chunked", &body);
    let out = curl(&[
        "-v",
        "-H",
        "Transfer-Encoding: chunked",
        "--data-binary",
        &file.arg(),
        &url,
    ]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("> Transfer-Encoding: chunked"), "{stderr}");
    assert!(stderr.contains("< Transfer-Encoding: chunked"), "{stderr}");
    assert!(out.stdout == body, "chunked echo differs");
    srv.stop();
}

const PYTHON_CLIENT: &str = r#"
import http.client, sys
port = int(sys.argv[1])
c = http.client.HTTPConnection("127.0.0.1", port, timeout=10)

c.request("GET", "/")
r = c.getresponse()
body = r.read()
assert r.status == 200 and body == b"Hello, World!", (r.status, body)
assert r.getheader("Content-Length") == "13"
assert r.version == 11 and not r.will_close
sock = c.sock

payload = bytes(range(256)) * 4000
c.request("POST", "/echo", body=payload, headers={"Content-Type": "application/x-test"})
r = c.getresponse()
got = r.read()
assert r.status == 200, r.status
assert r.getheader("Content-Type") == "application/x-test"
assert got == payload, len(got)
assert c.sock is sock, "connection not reused"

c.request("POST", "/echo", body=iter([b"abc", b"", b"defg"]), encode_chunked=True)
r = c.getresponse()
assert r.getheader("Transfer-Encoding") == "chunked"
assert r.read() == b"abcdefg"
assert c.sock is sock, "connection not reused"

c.request("HEAD", "/")
r = c.getresponse()
assert r.read() == b"" and r.getheader("Content-Length") == "13"

c.request("GET", "/status/204")
r = c.getresponse()
assert r.status == 204 and r.read() == b""

c.request("GET", "/nowhere")
r = c.getresponse()
assert r.status == 404 and r.read() == b"Not Found\n"
assert c.sock is sock, "connection not reused"
c.close()
print("python ok")
"#;

#[test]
fn python_http_client_get_post_and_reuse() {
    if !have("python3", "--version") {
        return;
    }
    let (srv, rx) = server();
    let out = Command::new("python3")
        .args(["-c", PYTHON_CLIENT, &srv.addr.port().to_string()])
        .output()
        .expect("run python3");
    assert!(
        out.status.success(),
        "python client failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "python ok");
    let ports = peers(&rx, 6);
    assert!(ports.iter().all(|p| *p == ports[0]), "{ports:?}");
    srv.wait_connections(|n| n == 0, "python's close");
    srv.stop();
}

//! Pipelined requests dispatched to a pool of worker threads and answered asynchronously.
//!
//! The loop thread parses each request as soon as it arrives and hands it — with a `Send`
//! handle to its response — to a worker pool through a channel. Workers finish in any order
//! (here each "job" takes a random-ish time); the library still writes the responses in the
//! order the client sent the requests, and stops reading a connection that has
//! `max_pipelined` requests outstanding.
//!
//! Try it:
//! ```sh
//! cargo run --example pipeline_dispatch -- --port 8080 --workers 4
//! printf 'GET /job/1 HTTP/1.1\r\nHost: x\r\n\r\nGET /job/2 HTTP/1.1\r\nHost: x\r\n\r\nGET /job/3 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n' | nc 127.0.0.1 8080
//! ```

#[path = "support/mod.rs"]
mod support;

use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use uvhttp::http::{RemoteConnection, Server, ServerConnectionPtr, StatusCode};
use uvhttp::uv;

/// What a worker needs: the request's data (copied out of the loop) and the response handle.
struct Job {
    path: String,
    response: RemoteConnection,
}

fn main() {
    support::init_logging();
    let args = support::Args::from_env();
    let port: u16 = args.parse("port", 8080);
    let workers: usize = args.parse("workers", 4);

    let (tx, rx) = mpsc::channel::<Job>();
    let rx = Arc::new(Mutex::new(rx));
    for n in 0..workers {
        let rx = rx.clone();
        std::thread::spawn(move || loop {
            let job = match rx.lock().unwrap().recv() {
                Ok(job) => job,
                Err(_) => return, // server gone
            };
            // Simulated work whose duration varies, so jobs finish out of order.
            let cost = job.path.bytes().map(u64::from).sum::<u64>() % 50;
            std::thread::sleep(Duration::from_millis(cost));
            let body = format!("{} done by worker {n} in {cost} ms\n", job.path);
            let _ = job.response.respond(StatusCode::OK, "text/plain", body);
        });
    }

    let mut srv = Server::new("0.0.0.0", port).unwrap_or_else(|e| {
        eprintln!("pipeline_dispatch: {e}");
        std::process::exit(1)
    });
    srv.configure(|o| o.max_pipelined = 32);
    srv.connection += move |conn: ServerConnectionPtr| {
        let path = conn.request().path().to_string();
        match conn.remote() {
            Ok(response) => {
                let _ = tx.send(Job { path, response });
            }
            Err(e) => log::debug!("client left before dispatch: {e}"),
        }
    };
    if let Err(e) = srv.start() {
        eprintln!("pipeline_dispatch: {e}");
        std::process::exit(1);
    }
    println!("listening on http://{}", srv.address().unwrap());
    uv::run(uv::default_loop(), uv::RunMode::Default);
}

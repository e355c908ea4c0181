//! A WebSocket client.
//!
//! ```sh
//! wsclient ws://127.0.0.1:1337/ws "hello"      # sends the message, prints the replies
//! wsclient --autobahn ws://127.0.0.1:9001 uvhttp  # runs the Autobahn fuzzingserver's cases
//! ```
//! Flags: `--cacert FILE` (trust this CA for wss://), `--no-deflate`, `--timeout-ms N`
//! (how long to wait for replies; default 2000).
//!
//! The Autobahn mode follows ../shared/conformance/README.md: `/getCaseCount`, then
//! `/runCase?case=i&agent=A` for each case (echoing every message back), then
//! `/updateReports?agent=A`. One connection at a time, all on one loop.

#[path = "support/mod.rs"]
mod support;

use std::cell::{Cell, RefCell};
use std::rc::Rc;

use uvhttp::uv;
use uvhttp::ws::{self, ClientOptions, MessageKind};

fn main() {
    support::init_logging();
    let args = support::Args::from_env();
    let positional = args.positional();
    let mut options = ClientOptions::default();
    if args.flag("no-deflate") {
        options.deflate = None;
    }
    if let Some(ca) = args.value("cacert") {
        match uvhttp::net::tls::TlsContext::client().ca_file(&ca).build() {
            Ok(ctx) => options.tls = Some(ctx),
            Err(e) => {
                eprintln!("wsclient: {e}");
                std::process::exit(1);
            }
        }
    }
    let lp = uv::default_loop();
    let code = if args.flag("autobahn") {
        let (Some(url), Some(agent)) = (positional.first(), positional.get(1)) else {
            eprintln!("usage: wsclient --autobahn URL AGENT");
            std::process::exit(2);
        };
        autobahn(lp, url.trim_end_matches('/'), agent, options)
    } else {
        let Some(url) = positional.first() else {
            eprintln!("usage: wsclient URL [message]");
            std::process::exit(2);
        };
        let message = positional.get(1).cloned();
        let timeout: u64 = args.parse("timeout-ms", 2000);
        single(lp, url, message, options, timeout)
    };
    std::process::exit(code);
}

/// Connects, sends `message` (if any), prints replies until `timeout_ms` of quiet, closes.
fn single(
    lp: uv::Loop,
    url: &str,
    message: Option<String>,
    options: ClientOptions,
    timeout_ms: u64,
) -> i32 {
    let failed = Rc::new(Cell::new(0));
    let ws = match ws::connect(lp, url, options) {
        Ok(ws) => ws,
        Err(e) => {
            eprintln!("wsclient: {e}");
            return 1;
        }
    };
    let timer = Rc::new(uv::Timer::new(lp).expect("timer"));
    {
        let timer = timer.clone();
        ws.connect.attach(move |ws| {
            println!(
                "connected{}",
                match ws.subprotocol() {
                    Some(p) => format!(" (subprotocol {p})"),
                    None => String::new(),
                }
            );
            if let Some(m) = &message {
                let _ = ws.send_text(m);
            }
            let ws = Rc::downgrade(&ws.handle());
            let _ = timer.start(timeout_ms, 0, move || {
                if let Some(ws) = ws.upgrade() {
                    let _ = ws.shutdown(1000, "done");
                }
            });
        });
    }
    ws.message.attach(|_, kind, data| match kind {
        MessageKind::Text => println!("{}", String::from_utf8_lossy(data)),
        MessageKind::Binary => println!("<{} binary bytes>", data.len()),
    });
    {
        let (failed, timer) = (failed.clone(), timer.clone());
        ws.close.attach(move |_, code, reason| {
            match code {
                Some(1000) | Some(1001) => println!("closed"),
                _ => {
                    eprintln!("wsclient: closed: {code:?} {reason}");
                    failed.set(1);
                }
            }
            timer.stop();
        });
    }
    drop(ws);
    uv::run(lp, uv::RunMode::Default);
    drop(timer);
    uv::run(lp, uv::RunMode::NoWait);
    failed.get()
}

/// Runs the Autobahn client protocol; returns the exit code.
fn autobahn(lp: uv::Loop, base: &str, agent: &str, options: ClientOptions) -> i32 {
    let count = Rc::new(Cell::new(0u32));
    let error = Rc::new(RefCell::new(None::<String>));
    // 1. getCaseCount
    {
        let ws = match ws::connect(lp, &format!("{base}/getCaseCount"), options.clone()) {
            Ok(ws) => ws,
            Err(e) => {
                eprintln!("wsclient: {e}");
                return 1;
            }
        };
        let c = count.clone();
        ws.message.attach(move |_, _, data| {
            c.set(String::from_utf8_lossy(data).trim().parse().unwrap_or(0));
        });
        let err = error.clone();
        ws.close.attach(move |_, code, reason| {
            if !matches!(code, None | Some(1000) | Some(1001)) {
                *err.borrow_mut() = Some(format!("getCaseCount closed: {code:?} {reason}"));
            }
        });
    }
    uv::run(lp, uv::RunMode::Default);
    if let Some(e) = error.borrow().as_ref() {
        eprintln!("wsclient: {e}");
        if count.get() == 0 {
            return 1;
        }
    }
    let n = count.get();
    println!("autobahn: {n} cases");
    // 2. each case, one at a time: echo everything back.
    for case in 1..=n {
        let url = format!("{base}/runCase?case={case}&agent={agent}");
        match ws::connect(lp, &url, options.clone()) {
            Ok(ws) => {
                ws.message.attach(|ws, kind, data| {
                    let _ = ws.send(data, kind);
                });
            }
            Err(e) => {
                eprintln!("wsclient: case {case}: {e}");
                continue;
            }
        }
        uv::run(lp, uv::RunMode::Default);
    }
    // 3. updateReports
    if let Ok(ws) = ws::connect(lp, &format!("{base}/updateReports?agent={agent}"), options) {
        drop(ws);
        uv::run(lp, uv::RunMode::Default);
    }
    0
}

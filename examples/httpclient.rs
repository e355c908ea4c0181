//! icey's `httpclient` sample: fetch a URL and print the status line, the header fields and
//! the body to stdout.
//!
//! ```text
//! httpclient URL [--cacert FILE] [--insecure] [-X METHOD] [-d DATA]
//!               [--connect-timeout-ms N] [--timeout-ms N]
//! ```
//!
//! `https://` verifies the server's certificate and host name against the system CAs, or
//! against `--cacert FILE` (a PEM CA, as `curl --cacert`); `--insecure` turns verification off
//! (development only). `-d DATA` sends DATA as the body (method POST unless `-X` says
//! otherwise). On failure nothing is printed to stdout: the error goes to stderr and the exit
//! code is 1 (2 for bad arguments). Runs on the default loop; `UVHTTP_LOG=debug` shows the
//! library's logs.

#[path = "support/mod.rs"]
mod support;

use std::cell::RefCell;
use std::io::Write;
use std::rc::Rc;
use std::time::Duration;

use uvhttp::http::{ClientConnection, ClientError};
use uvhttp::net::tls::{SslManager, TlsContext};
use uvhttp::uv;

const USAGE: &str = "usage: httpclient URL [--cacert FILE] [--insecure] [-X METHOD] [-d DATA] \
                     [--connect-timeout-ms N] [--timeout-ms N]";

/// The command line.
struct Options {
    url: String,
    cacert: Option<String>,
    insecure: bool,
    method: Option<String>,
    data: Option<String>,
    connect_timeout: Option<Duration>,
    read_timeout: Option<Duration>,
}

fn parse_args(args: impl Iterator<Item = String>) -> Result<Options, String> {
    let mut opts = Options {
        url: String::new(),
        cacert: None,
        insecure: false,
        method: None,
        data: None,
        connect_timeout: None,
        read_timeout: None,
    };
    let mut args = args.peekable();
    while let Some(arg) = args.next() {
        let mut value = |name: &str| {
            args.next()
                .ok_or_else(|| format!("{name} needs a value\n{USAGE}"))
        };
        let millis = |name: &str, v: String| {
            v.parse::<u64>()
                .map(Duration::from_millis)
                .map_err(|_| format!("{name}: {v:?} is not a number of milliseconds"))
        };
        match arg.as_str() {
            "--cacert" => opts.cacert = Some(value("--cacert")?),
            "--insecure" | "-k" => opts.insecure = true,
            "-X" | "--request" => opts.method = Some(value("-X")?),
            "-d" | "--data" => opts.data = Some(value("-d")?),
            "--connect-timeout-ms" => {
                let v = value("--connect-timeout-ms")?;
                opts.connect_timeout = Some(millis("--connect-timeout-ms", v)?);
            }
            "--timeout-ms" => {
                let v = value("--timeout-ms")?;
                opts.read_timeout = Some(millis("--timeout-ms", v)?);
            }
            "-h" | "--help" => return Err(USAGE.to_string()),
            a if a.starts_with('-') => return Err(format!("unknown option {a}\n{USAGE}")),
            a if opts.url.is_empty() => opts.url = a.to_string(),
            a => return Err(format!("unexpected argument {a:?}\n{USAGE}")),
        }
    }
    if opts.url.is_empty() {
        return Err(USAGE.to_string());
    }
    Ok(opts)
}

fn tls_context(opts: &Options) -> Result<Option<TlsContext>, String> {
    if opts.insecure {
        return SslManager::init_no_verify_client()
            .map(Some)
            .map_err(|e| e.to_string());
    }
    match &opts.cacert {
        Some(file) => TlsContext::client()
            .ca_file(file)
            .build()
            .map(Some)
            .map_err(|e| e.to_string()),
        None => Ok(None),
    }
}

/// Writes the response head as it arrived: status line, fields, blank line.
fn print_head(out: &mut impl Write, head: &uvhttp::http::ResponseHead) -> std::io::Result<()> {
    write!(
        out,
        "{} {} {}\r\n",
        head.version(),
        head.status().as_u16(),
        head.reason()
    )?;
    for (name, value) in head.headers().iter() {
        out.write_all(name.as_bytes())?;
        out.write_all(b": ")?;
        out.write_all(value)?;
        out.write_all(b"\r\n")?;
    }
    out.write_all(b"\r\n")
}

fn main() {
    support::init_logging();
    let opts = match parse_args(std::env::args().skip(1)) {
        Ok(o) => o,
        Err(e) => {
            eprintln!("httpclient: {e}");
            std::process::exit(2);
        }
    };
    let lp = uv::default_loop();
    let conn = match ClientConnection::new(lp, &opts.url) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("httpclient: {e}");
            std::process::exit(2);
        }
    };
    match tls_context(&opts) {
        Ok(Some(ctx)) => conn.set_tls_context(ctx),
        Ok(None) => {}
        Err(e) => {
            eprintln!("httpclient: {e}");
            std::process::exit(2);
        }
    }
    if let Some(t) = opts.connect_timeout {
        conn.set_connect_timeout(t);
    }
    if let Some(t) = opts.read_timeout {
        conn.set_read_timeout(t);
    }

    // Headers and body go to stdout as they arrive; an error ends with nothing more printed.
    conn.headers.attach(|_, head| {
        let mut out = std::io::stdout().lock();
        let _ = print_head(&mut out, head);
    });
    conn.payload.attach(|_, chunk| {
        let _ = std::io::stdout().lock().write_all(chunk);
    });
    conn.complete.attach(|c| c.close());
    let failure: Rc<RefCell<Option<ClientError>>> = Rc::new(RefCell::new(None));
    let f = failure.clone();
    conn.close
        .attach(move |_, err| *f.borrow_mut() = err.cloned());

    let method = opts
        .method
        .clone()
        .unwrap_or_else(|| if opts.data.is_some() { "POST" } else { "GET" }.to_string());
    conn.request().set_method(&method);
    let sent = match &opts.data {
        Some(data) => conn.send_body(data.as_bytes()),
        None => conn.send(),
    };
    if let Err(e) = sent {
        eprintln!("httpclient: {e}");
        std::process::exit(1);
    }
    lp.run(uv::RunMode::Default);
    let _ = std::io::stdout().flush();
    let failed = failure.borrow_mut().take();
    if let Some(e) = failed {
        eprintln!("httpclient: {e}");
        std::process::exit(1);
    }
}

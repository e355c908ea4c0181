//! What the Rust peer servers (`hyper/`, `may_minihttp/`) share: their command line and the
//! `/big?bytes=N` query. Each peer is its own crate and workspace; both include this file
//! with `#[path]`, so the two parse the same way without a crate of their own.

/// `--host` and `--port` from the command line (127.0.0.1 and 8080 by default).
pub fn parse_args() -> Result<(String, u16), String> {
    let mut host = "127.0.0.1".to_string();
    let mut port = 8080;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let value = args.next().ok_or_else(|| format!("{arg} needs a value"))?;
        match arg.as_str() {
            "--host" => host = value,
            "--port" => port = value.parse().map_err(|_| format!("bad --port {value:?}"))?,
            other => return Err(format!("unknown argument {other:?}")),
        }
    }
    Ok((host, port))
}

/// The `bytes=N` query parameter of `/big`.
pub fn requested_bytes(query: Option<&str>) -> Option<usize> {
    query?
        .split('&')
        .find_map(|pair| pair.strip_prefix("bytes="))
        .and_then(|value| value.parse().ok())
}

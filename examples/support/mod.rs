//! Small helpers shared by the examples: a stderr logger and flag parsing.
#![allow(dead_code)]

use log::{Level, LevelFilter, Metadata, Record};

struct StderrLogger;

impl log::Log for StderrLogger {
    fn enabled(&self, _: &Metadata) -> bool {
        true
    }
    fn log(&self, record: &Record) {
        if self.enabled(record.metadata()) {
            eprintln!(
                "[{}] {}: {}",
                record.level(),
                record.target(),
                record.args()
            );
        }
    }
    fn flush(&self) {}
}

/// Logs to stderr at the level named by `UVHTTP_LOG` (error, warn, info, debug, trace;
/// default warn).
pub fn init_logging() {
    let level = match std::env::var("UVHTTP_LOG").unwrap_or_default().as_str() {
        "error" => LevelFilter::Error,
        "info" => LevelFilter::Info,
        "debug" => LevelFilter::Debug,
        "trace" => LevelFilter::Trace,
        "off" => LevelFilter::Off,
        _ => LevelFilter::Warn,
    };
    let _ = log::set_logger(&StderrLogger);
    log::set_max_level(level);
    let _ = Level::Error;
}

/// Command-line flags of the form `--name value` or `--name=value`.
pub struct Args {
    args: Vec<String>,
}

impl Args {
    /// The process arguments (without the program name).
    pub fn from_env() -> Args {
        Args {
            args: std::env::args().skip(1).collect(),
        }
    }

    /// The value of `--name`, if given.
    pub fn value(&self, name: &str) -> Option<String> {
        let flag = format!("--{name}");
        let prefix = format!("--{name}=");
        let mut it = self.args.iter();
        while let Some(a) = it.next() {
            if *a == flag {
                return it.next().cloned();
            }
            if let Some(v) = a.strip_prefix(&prefix) {
                return Some(v.to_string());
            }
        }
        None
    }

    /// True if `--name` is present.
    pub fn flag(&self, name: &str) -> bool {
        let flag = format!("--{name}");
        self.args.contains(&flag)
    }

    /// A parsed value of `--name`, or `default`; exits with a message on a bad value.
    pub fn parse<T: std::str::FromStr>(&self, name: &str, default: T) -> T {
        match self.value(name) {
            None => default,
            Some(v) => v.parse().unwrap_or_else(|_| {
                eprintln!("invalid value for --{name}: {v:?}");
                std::process::exit(2)
            }),
        }
    }

    /// Arguments that are not flags or flag values.
    pub fn positional(&self) -> Vec<String> {
        let mut out = Vec::new();
        let mut it = self.args.iter();
        while let Some(a) = it.next() {
            if a.starts_with("--") {
                if !a.contains('=') && !BOOLEAN_FLAGS.contains(&a.as_str()) {
                    it.next();
                }
            } else {
                out.push(a.clone());
            }
        }
        out
    }
}

const BOOLEAN_FLAGS: &[&str] = &["--autobahn", "--help"];

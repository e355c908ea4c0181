//! Helpers shared by tests/pipeline.rs and tests/streaming.rs: a seeded random source, one-shot
//! loop timers, a fast reader of many pipelined responses.
//!
//! Included with `#[path = "common/pipeline_util.rs"] mod pipeline_util;` so that
//! tests/common/mod.rs (shared with other test files) stays untouched.
#![allow(dead_code)]

use std::cell::RefCell;
use std::io::{BufReader, Read};
use std::rc::Rc;

use crate::common::{try_read_response, Reply};
use uvhttp::uv::{Loop, Timer};

/// A small deterministic generator (xorshift64*): the same seed gives the same delays on every
/// run, so a failure can be replayed.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed.max(1))
    }

    pub fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// A number in `0..n`.
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n.max(1)
    }
}

/// Runs `f` once on `lp` after `ms` milliseconds, then closes the timer (so the loop can exit
/// and `uv_loop_close` succeeds). Must be called on the loop's thread.
pub fn after(lp: Loop, ms: u64, f: impl FnOnce() + 'static) {
    let timer = Timer::new(lp).expect("timer");
    let slot: Rc<RefCell<Option<Timer>>> = Rc::new(RefCell::new(None));
    let slot_in_cb = slot.clone();
    let mut f = Some(f);
    timer
        .start(ms, 0, move || {
            if let Some(f) = f.take() {
                f();
            }
            // Dropping the timer from inside its callback closes it.
            slot_in_cb.borrow_mut().take();
        })
        .expect("timer start");
    *slot.borrow_mut() = Some(timer);
}

/// Runs `tick(i)` on `lp` every `interval_ms` (first after `interval_ms`) until it returns
/// false, then closes the timer.
pub fn every(lp: Loop, interval_ms: u64, mut tick: impl FnMut(u64) -> bool + 'static) {
    let timer = Timer::new(lp).expect("timer");
    let slot: Rc<RefCell<Option<Timer>>> = Rc::new(RefCell::new(None));
    let slot_in_cb = slot.clone();
    let mut i = 0;
    timer
        .start(interval_ms, interval_ms, move || {
            let more = tick(i);
            i += 1;
            if !more {
                slot_in_cb.borrow_mut().take();
            }
        })
        .expect("timer start");
    *slot.borrow_mut() = Some(timer);
}

/// Reads responses one after another from a stream, through `common::try_read_response`.
/// Unlike `common::Client` it reports a close as `None` instead of panicking, so a test can
/// count how many responses arrived before the server closed.
pub struct ResponseReader<R: Read> {
    r: BufReader<R>,
}

impl<R: Read> ResponseReader<R> {
    pub fn new(r: R) -> Self {
        ResponseReader {
            r: BufReader::with_capacity(256 * 1024, r),
        }
    }

    pub fn inner(&mut self) -> &mut BufReader<R> {
        &mut self.r
    }

    /// The next response, or `None` if the connection ended first. A close in the middle of a
    /// response also gives `None`.
    pub fn next_response(&mut self) -> Option<Reply> {
        try_read_response(&mut self.r, false)
    }

    /// True if the stream ends (EOF or reset) with no further bytes.
    pub fn at_eof(&mut self) -> bool {
        let mut b = [0u8; 1];
        matches!(self.r.read(&mut b), Ok(0) | Err(_))
    }
}

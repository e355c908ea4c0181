//! Per-thread pools of output buffers, so steady-state traffic allocates nothing and an idle
//! connection holds no buffer.
//!
//! A connection takes a buffer when it starts writing and gives it back when the kernel has
//! taken the bytes. Pools are bounded; oversized buffers are freed instead of pooled.

use std::cell::RefCell;
use std::collections::VecDeque;

use super::tcp::OutQueue;
use crate::uv::OwnedBuf;

/// Capacity a fresh output buffer starts with: a typical response head plus a small body.
const FRESH_CAPACITY: usize = 4096;
/// Buffers larger than this are freed rather than kept.
const MAX_POOLED_CAPACITY: usize = 256 * 1024;
/// At most this many buffers of each kind are kept per thread.
const MAX_POOLED: usize = 256;

struct Pools {
    bytes: Vec<Vec<u8>>,
    queues: Vec<VecDeque<OwnedBuf>>,
    // Boxed on purpose: a socket holds its queue as a box, so pooling the boxes themselves is
    // what makes taking one free of allocation.
    #[allow(clippy::vec_box)]
    out_queues: Vec<Box<OutQueue>>,
}

thread_local! {
    static POOLS: RefCell<Pools> = const {
        RefCell::new(Pools { bytes: Vec::new(), queues: Vec::new(), out_queues: Vec::new() })
    };
}

/// An empty byte buffer with some capacity.
pub(crate) fn take_bytes() -> Vec<u8> {
    POOLS
        .with(|p| p.borrow_mut().bytes.pop())
        .unwrap_or_else(|| Vec::with_capacity(FRESH_CAPACITY))
}

/// Whether a buffer is worth keeping for reuse (not empty, not oversized).
pub(crate) fn worth_keeping(v: &Vec<u8>) -> bool {
    v.capacity() != 0 && v.capacity() <= MAX_POOLED_CAPACITY
}

/// Returns a byte buffer to the pool.
pub(crate) fn give_bytes(mut v: Vec<u8>) {
    if !worth_keeping(&v) {
        return;
    }
    v.clear();
    POOLS.with(|p| {
        let mut p = p.borrow_mut();
        if p.bytes.len() < MAX_POOLED {
            p.bytes.push(v);
        }
    });
}

/// Returns an owned buffer's memory to the pool when it is a vector.
pub(crate) fn give_owned(b: OwnedBuf) {
    if let OwnedBuf::Vec(v) = b {
        give_bytes(v);
    }
}

/// An empty queue of output buffers.
pub(crate) fn take_queue() -> VecDeque<OwnedBuf> {
    POOLS
        .with(|p| p.borrow_mut().queues.pop())
        .unwrap_or_default()
}

/// Returns an (emptied) queue to the pool.
pub(crate) fn give_queue(mut q: VecDeque<OwnedBuf>) {
    for b in q.drain(..) {
        give_owned(b);
    }
    if q.capacity() == 0 || q.capacity() > 1024 {
        return;
    }
    POOLS.with(|p| {
        let mut p = p.borrow_mut();
        if p.queues.len() < MAX_POOLED {
            p.queues.push(q);
        }
    });
}

/// An empty socket output queue (boxed: a socket holds one only while it has output).
pub(crate) fn take_out_queue() -> Box<OutQueue> {
    POOLS
        .with(|p| p.borrow_mut().out_queues.pop())
        .unwrap_or_default()
}

/// Returns a socket's output queue; whatever it still holds goes back to the pools too.
pub(crate) fn give_out_queue(mut q: Box<OutQueue>) {
    if !q.reset() {
        return;
    }
    POOLS.with(|p| {
        let mut p = p.borrow_mut();
        if p.out_queues.len() < MAX_POOLED {
            p.out_queues.push(q);
        }
    });
}

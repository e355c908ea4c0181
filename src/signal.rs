//! `Signal`: a list of closures ("slots") to call when something happens, as icey's
//! `Signal<void(Args...)>`.
//!
//! Slots are attached with `+=` (on a signal you can borrow mutably) or [`Signal::attach`]
//! (through a shared reference), which returns a [`SlotId`] for [`Signal::detach`].
//!
//! Emission is re-entrant: a slot may detach itself or any other slot, attach new slots, or
//! emit the same signal again while it runs. Slots attached during an emission are first called
//! by the next one; a slot detached during an emission is not called afterwards; a slot that is
//! already running is skipped by a nested emission instead of being re-entered. Emitting does
//! not allocate.
//!
//! A signal is a cheap, clonable handle: clones share the same slots.

use std::cell::{Cell, RefCell};
use std::rc::Rc;

/// Identifies an attached slot, for [`Signal::detach`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct SlotId(u64);

struct Entry<F: ?Sized> {
    /// The slot's id; 0 (no slot's) marks `Slots::first` vacant. A `Cell` so that compaction
    /// can move the second entry into `first`.
    id: Cell<u64>,
    /// Taken out while the slot runs: a nested emission finds it empty and skips it, and no
    /// borrow of the list is held during the call. Attaching costs one allocation at most
    /// (the box; none for a closure that captures nothing).
    slot: Cell<Option<Box<F>>>,
    alive: Cell<bool>,
}

impl<F: ?Sized> Entry<F> {
    fn vacant() -> Self {
        Entry {
            id: Cell::new(0),
            slot: Cell::new(None),
            alive: Cell::new(false),
        }
    }
}

/// The entries in the order they were attached: `first`, then `rest`. Index 0 names `first`,
/// index `i > 0` names `rest[i - 1]`.
struct Slots<F: ?Sized> {
    /// The first entry, outside the `RefCell`: emitting a signal with a single slot (the usual
    /// case, e.g. the server's `connection` signal once per request) takes that slot out and
    /// puts it back without borrowing anything. Vacant only when the list is empty (compaction
    /// moves the next entry up when it removes this one), so attaching to an empty list fills
    /// it and attaching to any other list pushes onto `rest`.
    first: Entry<F>,
    rest: RefCell<Vec<Entry<F>>>,
    next_id: Cell<u64>,
    /// Depth of emissions in progress; detached entries are only removed at depth 0 so that
    /// indices stay stable while an emission walks the list.
    emitting: Cell<u32>,
    dirty: Cell<bool>,
}

/// An emission in progress over `slots` (see `Signal::emit_slots`).
struct Emission<'a, F: ?Sized> {
    slots: &'a Slots<F>,
    /// The slot being called and its index. Entries are only removed when no emission runs,
    /// so the index still names the same entry when the slot goes back.
    running: Option<(usize, Box<F>)>,
}

impl<F: ?Sized> Emission<'_, F> {
    /// Ends an emission whose calls all returned.
    #[inline(always)]
    fn finish(self) {
        let slots = self.slots;
        debug_assert!(self.running.is_none());
        // The guard's work without its drop glue, which the compiler keeps out of line: no
        // slot is out of its entry now, so forgetting the guard leaves nothing behind.
        std::mem::forget(self);
        end_emission(slots);
    }
}

impl<F: ?Sized> Drop for Emission<'_, F> {
    /// Only reached when a slot panicked.
    fn drop(&mut self) {
        if let Some((index, slot)) = self.running.take() {
            put_back(self.slots, index, slot);
        }
        end_emission(self.slots);
    }
}

/// Puts a slot that ran back in entry `index` (even if it was detached meanwhile: compaction
/// drops it, outside borrows).
#[inline(always)]
fn put_back<F: ?Sized>(slots: &Slots<F>, index: usize, slot: Box<F>) {
    // The entry is empty (its slot was taken out to run) and still there (entries are only
    // removed when no emission runs), so nothing is left over; but whatever would be is
    // dropped after the borrow ends, and out of line, since a drop may run arbitrary code.
    let left = match index.checked_sub(1) {
        None => slots.first.slot.replace(Some(slot)),
        Some(i) => match slots.rest.borrow().get(i) {
            Some(e) => e.slot.replace(Some(slot)),
            None => Some(slot),
        },
    };
    if let Some(left) = left {
        drop_cold(left);
    }
}

#[cold]
#[inline(never)]
fn drop_cold<T: ?Sized>(value: Box<T>) {
    drop(value);
}

#[cold]
#[inline(never)]
fn drop_cold_rc<T: ?Sized>(value: Rc<T>) {
    drop(value);
}

/// Restores the depth and drops what was detached meanwhile, once no emission runs.
#[inline(always)]
fn end_emission<F: ?Sized>(slots: &Slots<F>) {
    slots.emitting.set(slots.emitting.get() - 1);
    Signal::<F>::compact_if_idle(slots);
}

/// The single slot of a list, taken out and running (see `Signal::emit_one`). Dropped only
/// when it panicked: it then puts the slot back, restores the depth and drops what was
/// detached meanwhile, so the signal stays usable.
struct RunningOnly<'a, F: ?Sized> {
    slots: &'a Slots<F>,
    slot: Option<Box<F>>,
}

impl<F: ?Sized> Drop for RunningOnly<'_, F> {
    fn drop(&mut self) {
        if let Some(slot) = self.slot.take() {
            put_back(self.slots, 0, slot);
        }
        end_emission(self.slots);
    }
}

/// A signal whose slots have the closure type `F`, e.g. `Signal<dyn FnMut(&[u8])>`.
pub struct Signal<F: ?Sized> {
    /// Replaced (not mutated) by [`Signal::renew`], which is how a pooled owner cuts off
    /// clones handed out to a previous user. `None` until something needs the list (an
    /// attach, a clone): most signals of a pooled request object never get a slot, and then
    /// creating, emitting and renewing them touches no heap memory at all.
    ///
    /// A `Cell`, not a `RefCell`: the list is taken out and put back around the few statements
    /// that look at it (none runs a slot or drops one), so a signal without a list is seen with
    /// one load, where a `RefCell` needed its borrow flag checked, set and restored. A request
    /// object asks this of its signals several times per request.
    slots: Cell<Option<Rc<Slots<F>>>>,
}

impl<F: ?Sized> Clone for Signal<F> {
    fn clone(&self) -> Self {
        Signal {
            slots: Cell::new(Some(self.shared())),
        }
    }
}

impl<F: ?Sized> Default for Signal<F> {
    fn default() -> Self {
        Self::new()
    }
}

impl<F: ?Sized> std::fmt::Debug for Signal<F> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Signal({} slots)", self.len())
    }
}

impl<F: ?Sized> Signal<F> {
    /// A signal with no slots.
    pub const fn new() -> Self {
        Signal {
            slots: Cell::new(None),
        }
    }

    fn fresh_slots() -> Rc<Slots<F>> {
        Rc::new(Slots {
            first: Entry::vacant(),
            rest: RefCell::new(Vec::new()),
            next_id: Cell::new(1),
            emitting: Cell::new(0),
            dirty: Cell::new(false),
        })
    }

    /// The slot list, created on first need (clones must share one).
    fn shared(&self) -> Rc<Slots<F>> {
        if let Some(slots) = self.existing() {
            return slots;
        }
        let slots = Self::fresh_slots();
        self.slots.set(Some(slots.clone()));
        slots
    }

    /// The slot list if it exists yet.
    fn existing(&self) -> Option<Rc<Slots<F>>> {
        self.peek(|slots| slots.clone())
    }

    /// Runs `look` with the slot list, if it exists, taken out for the call. `look` must not
    /// run or drop a slot (code that could reach this signal); it only reads.
    #[inline]
    fn peek<R>(&self, look: impl FnOnce(&Rc<Slots<F>>) -> R) -> Option<R> {
        let slots = self.slots.take()?;
        let seen = look(&slots);
        self.slots.set(Some(slots));
        Some(seen)
    }

    /// Detaches every slot and, if clones of this signal exist, disconnects them: later
    /// attaches through an old clone no longer reach this signal. Used when a pooled object is
    /// handed to its next user.
    #[inline]
    pub fn renew(&self) {
        let Some(slots) = self.slots.take() else {
            return; // never attached to nor cloned: the common case, kept inline
        };
        self.renew_existing(slots);
    }

    /// `slots` was taken out of `self` by `renew`.
    fn renew_existing(&self, slots: Rc<Slots<F>>) {
        if Rc::strong_count(&slots) > 1 {
            // Shared with a clone: left to it (not the last reference, so no slot is dropped
            // here). A fresh list is made when next needed.
            drop(slots);
            return;
        }
        let empty = slots.first.id.get() == 0;
        // Back in place before any slot is dropped: its captures may reach this signal.
        self.slots.set(Some(slots));
        if !empty {
            self.clear();
        }
    }

    /// Attaches an already boxed slot. Prefer `attach` / `+=`, which box for you.
    pub fn attach_boxed(&self, slot: Box<F>) -> SlotId {
        let slots = self.shared();
        let id = slots.next_id.get();
        slots.next_id.set(id + 1);
        let first = &slots.first;
        if first.id.get() == 0 {
            // An empty list (even during an emission: one over an empty list runs nothing).
            first.id.set(id);
            first.alive.set(true);
            first.slot.set(Some(slot)); // a vacant entry holds no slot: nothing dropped
        } else {
            slots.rest.borrow_mut().push(Entry {
                id: Cell::new(id),
                slot: Cell::new(Some(slot)),
                alive: Cell::new(true),
            });
        }
        SlotId(id)
    }

    /// Detaches a slot. Returns false if it was not attached (or already detached). Safe to
    /// call from inside any slot, including the one being detached.
    pub fn detach(&self, id: SlotId) -> bool {
        let mut found = false;
        let Some(slots) = self.existing() else {
            return false;
        };
        let first = &slots.first;
        if first.id.get() == id.0 && first.alive.get() {
            first.alive.set(false);
            found = true;
        } else {
            let rest = slots.rest.borrow();
            if let Some(e) = rest.iter().find(|e| e.id.get() == id.0 && e.alive.get()) {
                e.alive.set(false);
                found = true;
            }
        }
        if found {
            slots.dirty.set(true);
            Self::compact_if_idle(&slots);
        }
        found
    }

    /// Detaches every slot.
    pub fn clear(&self) {
        let Some(slots) = self.existing() else {
            return;
        };
        if slots.first.id.get() == 0 {
            return;
        }
        slots.first.alive.set(false);
        for e in slots.rest.borrow().iter() {
            e.alive.set(false);
        }
        slots.dirty.set(true);
        Self::compact_if_idle(&slots);
    }

    /// Number of attached slots.
    pub fn len(&self) -> usize {
        self.peek(|slots| {
            usize::from(slots.first.alive.get())
                + slots.rest.borrow().iter().filter(|e| e.alive.get()).count()
        })
        .unwrap_or(0)
    }

    /// True when another handle (a clone) shares these slots.
    pub fn is_shared(&self) -> bool {
        self.peek(|slots| Rc::strong_count(slots) > 1)
            .unwrap_or(false)
    }

    /// True when no slot is attached.
    #[inline]
    pub fn is_empty(&self) -> bool {
        // Stops at the first live slot (the server asks this of its `connection` signal once
        // per request).
        !self
            .peek(|slots| {
                slots.first.alive.get() || slots.rest.borrow().iter().any(|e| e.alive.get())
            })
            .unwrap_or(false)
    }

    /// Calls `call` with each slot, in the order they were attached. `call` receives the slot
    /// and invokes it, e.g. `signal.emit(|slot| slot(conn, data))`. Returns how many slots ran.
    #[inline]
    pub fn emit(&self, call: impl FnMut(&mut F)) -> usize {
        // Most signals of a request never get a slot: their list was never created, which
        // one inlined test shows without a call.
        let Some(slots) = self.slots.take() else {
            return 0;
        };
        self.emit_slots(slots, call)
    }

    /// `slots` was taken out of `self` by `emit`.
    fn emit_slots(&self, slots: Rc<Slots<F>>, call: impl FnMut(&mut F)) -> usize {
        // Slots attached during this emission are left for the next one: only the entries
        // there now are visited.
        let rest_end = slots.rest.borrow().len();
        let first = &slots.first;
        // None: no slot (an empty list), or one detached or already running further up the
        // stack, which is not re-entered.
        let taken = if first.alive.get() {
            first.slot.take()
        } else {
            None
        };
        match taken {
            // The usual case: a single slot.
            Some(slot) if rest_end == 0 => self.emit_one(slots, slot, call),
            None if rest_end == 0 => {
                self.slots.set(Some(slots));
                0
            }
            taken => self.emit_all(slots, taken, rest_end, call),
        }
    }

    /// Runs `slot`, taken out of `slots.first`, the only entry of `slots`, which was taken out
    /// of `self`.
    #[inline(always)]
    fn emit_one(&self, slots: Rc<Slots<F>>, slot: Box<F>, mut call: impl FnMut(&mut F)) -> usize {
        // Back in place before the slot runs; this reference is held for the whole emission:
        // the slot may renew this signal while it runs. What the cell held is nothing (`emit`
        // took the list out), dropped out of line.
        if let Some(old) = self.slots.replace(Some(slots.clone())) {
            drop_cold_rc(old);
        }
        slots.emitting.set(slots.emitting.get() + 1);
        // `first` keeps its entry while the depth is raised (a slot attached meanwhile goes
        // after it, a detached one is only marked), so the slot goes back there.
        let mut running = RunningOnly {
            slots: &slots,
            slot: Some(slot),
        };
        if let Some(f) = running.slot.as_deref_mut() {
            call(f);
        }
        // The guard's work without its drop glue: a call that returned leaves nothing for it.
        if let Some(slot) = running.slot.take() {
            put_back(&slots, 0, slot);
        }
        std::mem::forget(running);
        end_emission(&slots);
        1
    }

    /// Runs `first`, taken out of `slots.first`, then the slots of the first `rest_end`
    /// entries of `slots.rest`; `slots` was taken out of `self`. Out of line, so that the usual
    /// single-slot emission does not pay for this loop's registers and stack.
    #[inline(never)]
    fn emit_all(
        &self,
        slots: Rc<Slots<F>>,
        first: Option<Box<F>>,
        rest_end: usize,
        mut call: impl FnMut(&mut F),
    ) -> usize {
        // Back in place before any slot runs; this reference is held for the whole emission:
        // a slot may renew this signal while it runs. (The cell holds nothing, as in
        // `emit_one`.)
        if let Some(old) = self.slots.replace(Some(slots.clone())) {
            drop_cold_rc(old);
        }
        slots.emitting.set(slots.emitting.get() + 1);
        // One guard for the whole emission: it puts a running slot back in its entry if the
        // call ends by a panic, restores the depth, and drops what was detached meanwhile, so
        // the signal stays usable afterwards. When a call returns normally the slot is put back
        // right away and the guard only has the depth to restore.
        let mut emission = Emission {
            slots: &slots,
            running: None,
        };
        let mut ran = 0;
        let mut next = first;
        for index in 0..=rest_end {
            if index > 0 {
                let rest = slots.rest.borrow();
                next = match rest.get(index - 1) {
                    Some(e) if e.alive.get() => e.slot.take(),
                    _ => None,
                };
            }
            // None: detached, or running further up the stack and not re-entered.
            let Some(slot) = next.take() else { continue };
            let (_, f) = emission.running.insert((index, slot));
            call(&mut **f);
            ran += 1;
            if let Some((index, slot)) = emission.running.take() {
                put_back(&slots, index, slot);
            }
        }
        emission.finish();
        ran
    }

    #[inline]
    fn compact_if_idle(s: &Slots<F>) {
        if !s.dirty.get() {
            return;
        }
        Self::compact(s);
    }

    #[cold]
    fn compact(s: &Slots<F>) {
        if s.emitting.get() == 0 && s.dirty.replace(false) {
            // One dead entry at a time, its slot dropped after the borrow ends: dropping a slot
            // may drop captured values whose own Drop touches this signal (the live entries
            // stay in place meanwhile). No allocation, so renewing a pooled object's signals is
            // free.
            loop {
                let dead = if s.first.id.get() != 0 && !s.first.alive.get() {
                    Self::remove_first(s)
                } else {
                    let mut rest = s.rest.borrow_mut();
                    match rest.iter().position(|e| !e.alive.get()) {
                        Some(i) => rest.remove(i).slot.take(),
                        None => break,
                    }
                };
                drop(dead);
            }
        }
    }

    /// Removes the (dead) first entry: the next one moves up, or `first` becomes vacant if
    /// there is none. Returns its slot, to be dropped by the caller outside borrows.
    fn remove_first(s: &Slots<F>) -> Option<Box<F>> {
        let dead = s.first.slot.take();
        let mut rest = s.rest.borrow_mut();
        if rest.is_empty() {
            s.first.id.set(0);
        } else {
            let next = rest.remove(0);
            s.first.id.set(next.id.get());
            s.first.alive.set(next.alive.get());
            s.first.slot.set(next.slot.take()); // taken out above: nothing dropped
        }
        dead
    }
}

/// Implements `attach` and `+=` for the closure signatures used in this crate. Each signature
/// gets its own impl so that closure parameter types are inferred from the signal.
macro_rules! signal_signature {
    ($( ($($arg:ty),*) ),* $(,)?) => {$(
        impl $crate::signal::Signal<dyn FnMut($($arg),*)> {
            /// Attaches a closure; returns its id for [`Signal::detach`].
            pub fn attach<C>(&self, slot: C) -> $crate::signal::SlotId
            where
                C: FnMut($($arg),*) + 'static,
            {
                self.attach_boxed(Box::new(slot))
            }
        }

        impl<C> std::ops::AddAssign<C> for $crate::signal::Signal<dyn FnMut($($arg),*)>
        where
            C: FnMut($($arg),*) + 'static,
        {
            /// `signal += closure`, icey's way to attach a slot.
            fn add_assign(&mut self, slot: C) {
                self.attach_boxed(Box::new(slot));
            }
        }
    )*};
}
pub(crate) use signal_signature;

signal_signature!((), (i32));

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn attach_emit_detach() {
        let mut sig: Signal<dyn FnMut(i32)> = Signal::new();
        let seen = Rc::new(RefCell::new(Vec::new()));
        let s = seen.clone();
        sig += move |v| s.borrow_mut().push(("a", v));
        let s = seen.clone();
        let id = sig.attach(move |v| s.borrow_mut().push(("b", v)));
        assert_eq!(sig.emit(|f| f(1)), 2);
        assert!(sig.detach(id));
        assert!(!sig.detach(id));
        sig.emit(|f| f(2));
        assert_eq!(*seen.borrow(), vec![("a", 1), ("b", 1), ("a", 2)]);
    }

    #[test]
    fn slot_detaches_itself_and_attaches_another() {
        let sig: Signal<dyn FnMut()> = Signal::new();
        let calls = Rc::new(Cell::new(0));
        let id_cell = Rc::new(Cell::new(None));
        let (s, c, idc) = (sig.clone(), calls.clone(), id_cell.clone());
        let id = sig.attach(move || {
            c.set(c.get() + 1);
            s.detach(idc.get().unwrap());
            let c2 = c.clone();
            s.attach(move || c2.set(c2.get() + 100));
        });
        id_cell.set(Some(id));
        // The new slot is not called by the emission that attached it.
        assert_eq!(sig.emit(|f| f()), 1);
        assert_eq!(calls.get(), 1);
        assert_eq!(sig.len(), 1);
        sig.emit(|f| f());
        assert_eq!(calls.get(), 101);
    }

    #[test]
    fn slot_detaches_a_later_slot_which_is_then_skipped() {
        let sig: Signal<dyn FnMut()> = Signal::new();
        let hits = Rc::new(Cell::new(0));
        let later = Rc::new(Cell::new(None));
        let (s, l) = (sig.clone(), later.clone());
        sig.attach(move || {
            s.detach(l.get().unwrap());
        });
        let h = hits.clone();
        later.set(Some(sig.attach(move || h.set(h.get() + 1))));
        sig.emit(|f| f());
        assert_eq!(hits.get(), 0);
        assert_eq!(sig.len(), 1);
    }

    #[test]
    fn nested_emit_skips_running_slot() {
        let sig: Signal<dyn FnMut(i32)> = Signal::new();
        let log = Rc::new(RefCell::new(Vec::new()));
        let (s, l) = (sig.clone(), log.clone());
        sig.attach(move |depth| {
            l.borrow_mut().push(depth);
            if depth == 0 {
                s.emit(|f| f(1));
            }
        });
        let l = log.clone();
        sig.attach(move |depth| l.borrow_mut().push(10 + depth));
        sig.emit(|f| f(0));
        // Slot 1 is running when the nested emission happens, so only slot 2 sees depth 1.
        assert_eq!(*log.borrow(), vec![0, 11, 10]);
    }

    #[test]
    fn a_slot_renews_its_own_signal_while_it_runs() {
        let sig: Rc<Signal<dyn FnMut()>> = Rc::new(Signal::new());
        let calls = Rc::new(Cell::new(0));
        let (s, c) = (sig.clone(), calls.clone());
        sig.attach(move || {
            c.set(c.get() + 1);
            s.renew();
        });
        let c = calls.clone();
        sig.attach(move || c.set(c.get() + 10));
        // The emission in progress finishes over the list it started with; the signal has
        // a fresh, empty one afterwards.
        assert_eq!(sig.emit(|f| f()), 2);
        assert_eq!(calls.get(), 11);
        assert!(sig.is_empty());
        assert_eq!(sig.emit(|f| f()), 0);
    }

    #[test]
    fn a_dropped_slot_may_reach_its_signal() {
        // A slot's captures are dropped by renew/clear; their Drop may use the signal.
        struct Touch(Rc<Signal<dyn FnMut()>>, Rc<Cell<usize>>);
        impl Drop for Touch {
            fn drop(&mut self) {
                self.1.set(self.0.len() + 100);
                self.0.attach(|| {});
            }
        }
        let sig: Rc<Signal<dyn FnMut()>> = Rc::new(Signal::new());
        let seen = Rc::new(Cell::new(0));
        let touch = Touch(sig.clone(), seen.clone());
        sig.attach(move || {
            let _ = &touch;
        });
        sig.renew();
        assert_eq!(seen.get(), 100, "its Drop saw the signal without the slot");
        assert_eq!(sig.len(), 1, "and attached another");
        assert!(!sig.is_shared());
        let clone = sig.as_ref().clone();
        assert!(sig.is_shared());
        sig.renew();
        assert!(!sig.is_shared(), "a renewal cuts the clone off");
        assert_eq!(clone.len(), 1);
        assert!(sig.is_empty());
    }

    #[test]
    fn panicking_slot_leaves_signal_usable() {
        let sig: Signal<dyn FnMut()> = Signal::new();
        sig.attach(|| panic!("boom"));
        let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| sig.emit(|f| f())));
        assert!(r.is_err());
        sig.clear();
        assert!(sig.is_empty());
        let hit = Rc::new(Cell::new(false));
        let h = hit.clone();
        sig.attach(move || h.set(true));
        sig.emit(|f| f());
        assert!(hit.get());
    }

    // The tests below exercise the single-slot emission (`emit_one`), which the server's
    // `connection` signal takes once per request; the ones above mostly have two slots.

    #[test]
    fn single_slot_is_not_reentered_by_a_nested_emission() {
        let sig: Signal<dyn FnMut(i32)> = Signal::new();
        let log = Rc::new(RefCell::new(Vec::new()));
        let (s, l) = (sig.clone(), log.clone());
        sig.attach(move |depth| {
            l.borrow_mut().push(depth);
            if depth == 0 {
                assert_eq!(s.emit(|f| f(1)), 0, "the only slot is running");
            }
        });
        assert_eq!(sig.emit(|f| f(0)), 1);
        assert_eq!(sig.emit(|f| f(0)), 1, "and was put back");
        assert_eq!(*log.borrow(), vec![0, 0]);
    }

    #[test]
    fn single_slot_detaches_itself_and_is_dropped_after() {
        struct Dropped(Rc<Cell<bool>>);
        impl Drop for Dropped {
            fn drop(&mut self) {
                self.0.set(true);
            }
        }
        let sig: Signal<dyn FnMut()> = Signal::new();
        let dropped = Rc::new(Cell::new(false));
        let capture = Dropped(dropped.clone());
        let (s, d) = (sig.clone(), dropped.clone());
        let id_cell = Rc::new(Cell::new(None));
        let idc = id_cell.clone();
        let id = sig.attach(move || {
            let _ = &capture;
            assert!(s.detach(idc.get().unwrap()));
            assert!(!d.get(), "not dropped while it runs");
            assert!(s.is_empty());
        });
        id_cell.set(Some(id));
        assert_eq!(sig.emit(|f| f()), 1);
        assert!(dropped.get(), "dropped once the emission ended");
        assert_eq!(sig.len(), 0);
        assert_eq!(sig.emit(|f| f()), 0);
    }

    #[test]
    fn single_slot_attaches_another_for_the_next_emission() {
        let sig: Signal<dyn FnMut()> = Signal::new();
        let log = Rc::new(RefCell::new(Vec::new()));
        let (s, l) = (sig.clone(), log.clone());
        sig.attach(move || {
            l.borrow_mut().push("first");
            if s.len() == 1 {
                let l = l.clone();
                s.attach(move || l.borrow_mut().push("second"));
            }
        });
        assert_eq!(sig.emit(|f| f()), 1);
        assert_eq!(*log.borrow(), vec!["first"]);
        assert_eq!(sig.emit(|f| f()), 2);
        assert_eq!(*log.borrow(), vec!["first", "first", "second"]);
    }

    #[test]
    fn single_slot_clears_its_signal() {
        let sig: Signal<dyn FnMut()> = Signal::new();
        let calls = Rc::new(Cell::new(0));
        let (s, c) = (sig.clone(), calls.clone());
        sig.attach(move || {
            c.set(c.get() + 1);
            s.clear();
        });
        assert_eq!(sig.emit(|f| f()), 1);
        assert!(sig.is_empty());
        assert_eq!(sig.emit(|f| f()), 0);
        assert_eq!(calls.get(), 1);
    }

    #[test]
    fn single_slot_renews_its_signal_and_drops_the_last_other_handle() {
        // Another handle shares the list when the slot renews the signal, so the signal lets
        // go of the list; the slot then drops that handle too. The emission's own reference is
        // all that keeps the list, and the running slot's entry, alive until it ends.
        let sig: Signal<dyn FnMut()> = Signal::new();
        let calls = Rc::new(Cell::new(0));
        let clone = Rc::new(RefCell::new(Some(sig.clone())));
        let (c, handle, me) = (calls.clone(), clone.clone(), Rc::new(sig));
        let m = me.clone();
        me.attach(move || {
            c.set(c.get() + 1);
            m.renew();
            drop(handle.borrow_mut().take());
        });
        assert_eq!(me.emit(|f| f()), 1);
        assert_eq!(calls.get(), 1);
        assert!(me.is_empty());
        assert_eq!(me.emit(|f| f()), 0);
        assert_eq!(calls.get(), 1);
    }

    #[test]
    fn single_slot_that_panics_stays_attached() {
        let sig: Signal<dyn FnMut(i32)> = Signal::new();
        let calls = Rc::new(Cell::new(0));
        let c = calls.clone();
        let id = sig.attach(move |fail| {
            c.set(c.get() + 1);
            assert_eq!(fail, 0, "boom");
        });
        let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| sig.emit(|f| f(1))));
        assert!(r.is_err());
        // Put back and the depth restored: it runs again, and detaching drops it at once.
        assert_eq!(sig.emit(|f| f(0)), 1);
        assert_eq!(calls.get(), 2);
        assert!(sig.detach(id));
        assert_eq!(sig.len(), 0);
        assert_eq!(sig.emit(|f| f(0)), 0);
    }

    #[test]
    fn single_slot_detached_while_panicking_is_dropped() {
        let sig: Signal<dyn FnMut()> = Signal::new();
        let s = sig.clone();
        let id_cell = Rc::new(Cell::new(None));
        let idc = id_cell.clone();
        id_cell.set(Some(sig.attach(move || {
            s.detach(idc.get().unwrap());
            panic!("boom");
        })));
        let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| sig.emit(|f| f())));
        assert!(r.is_err());
        assert!(sig.is_empty());
        let hit = Rc::new(Cell::new(false));
        let h = hit.clone();
        sig.attach(move || h.set(true));
        assert_eq!(sig.emit(|f| f()), 1);
        assert!(hit.get());
    }

    #[test]
    fn a_detached_single_entry_left_by_an_outer_emission_is_skipped() {
        // Two slots; the first detaches the second and then emits again: the nested emission
        // sees the first running and the second dead, and calls nothing.
        let sig: Signal<dyn FnMut(i32)> = Signal::new();
        let log = Rc::new(RefCell::new(Vec::new()));
        let later = Rc::new(Cell::new(None));
        let (s, l, lt) = (sig.clone(), log.clone(), later.clone());
        sig.attach(move |depth| {
            l.borrow_mut().push(depth);
            if depth == 0 {
                s.detach(lt.get().unwrap());
                assert_eq!(s.emit(|f| f(1)), 0);
            }
        });
        let l = log.clone();
        later.set(Some(
            sig.attach(move |depth| l.borrow_mut().push(10 + depth)),
        ));
        assert_eq!(sig.emit(|f| f(0)), 1);
        assert_eq!(sig.len(), 1);
        // Now a single entry: the fast path.
        assert_eq!(sig.emit(|f| f(0)), 1);
        assert_eq!(*log.borrow(), vec![0, 0]);
    }

    #[test]
    fn order_and_ids_survive_removing_the_first_entry() {
        // The first entry lives apart from the others: removing it moves the next one up.
        let sig: Signal<dyn FnMut(i32)> = Signal::new();
        let log = Rc::new(RefCell::new(Vec::new()));
        let ids: Vec<SlotId> = (0..3)
            .map(|n| {
                let l = log.clone();
                sig.attach(move |v| l.borrow_mut().push(n * 10 + v))
            })
            .collect();
        assert!(sig.detach(ids[0]));
        assert!(!sig.detach(ids[0]));
        assert_eq!(sig.len(), 2);
        assert_eq!(sig.emit(|f| f(1)), 2);
        // The entry moved up is still found by its id, and the last one becomes the only one.
        assert!(sig.detach(ids[1]));
        assert_eq!(sig.emit(|f| f(2)), 1);
        assert!(sig.detach(ids[2]));
        assert!(sig.is_empty());
        assert_eq!(sig.emit(|f| f(3)), 0);
        // Empty again: the next slot attached is the first.
        let l = log.clone();
        let id = sig.attach(move |v| l.borrow_mut().push(100 + v));
        let l = log.clone();
        sig.attach(move |v| l.borrow_mut().push(200 + v));
        assert_eq!(sig.emit(|f| f(4)), 2);
        assert!(sig.detach(id));
        assert_eq!(sig.emit(|f| f(5)), 1);
        assert_eq!(*log.borrow(), vec![11, 21, 22, 104, 204, 205]);
    }

    #[test]
    fn clearing_from_a_slot_drops_every_entry_after_the_emission() {
        let sig: Signal<dyn FnMut()> = Signal::new();
        let calls = Rc::new(Cell::new(0));
        let (s, c) = (sig.clone(), calls.clone());
        sig.attach(move || {
            c.set(c.get() + 1);
            s.clear();
            assert!(s.is_empty());
        });
        let c = calls.clone();
        sig.attach(move || c.set(c.get() + 100));
        // The second was detached by the first before its turn.
        assert_eq!(sig.emit(|f| f()), 1);
        assert_eq!(calls.get(), 1);
        assert!(sig.is_empty());
        let c = calls.clone();
        sig.attach(move || c.set(c.get() + 1000));
        assert_eq!(sig.emit(|f| f()), 1);
        assert_eq!(calls.get(), 1001);
    }
}

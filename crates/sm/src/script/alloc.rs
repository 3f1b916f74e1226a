//! The metered allocator: counts what a run allocates and enforces its cap.
//!
//! Lua calls one allocation function for everything. [`Meter::install`] puts
//! [`metered`] in front of the one mlua installed, which still does the actual
//! work (and its own bookkeeping), and [`Meter::uninstall`] puts mlua's back
//! before the state is closed. During a run the meter remembers the address of
//! every block the run allocated, so that freeing one lowers the run's count
//! and freeing anything older does not (see the module docs of `script` for
//! why, and for what remains nondeterministic).

use std::cell::{Cell, RefCell};
use std::collections::HashSet;
use std::hash::{BuildHasherDefault, Hasher};
use std::os::raw::c_void;

use mlua::ffi;

/// Hashes block addresses (already well spread but aligned: drop low bits).
#[derive(Default)]
struct AddrHasher(u64);

impl Hasher for AddrHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0 << 8 | b as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        }
    }

    fn write_usize(&mut self, n: usize) {
        self.0 = ((n as u64) >> 4).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    }
}

type Blocks = HashSet<usize, BuildHasherDefault<AddrHasher>>;

/// Capacity of the block table kept from one run to the next.
const SMALL_RUN_BLOCKS: usize = 4096;

/// Allocation accounting shared by the allocator and the VM. Only ever used
/// through shared references (`Cell`s): the allocator runs re-entrantly
/// inside any Lua API call the VM makes.
pub(crate) struct Meter {
    /// mlua's allocator and its state, which do the real work.
    inner: ffi::lua_Alloc,
    inner_ud: *mut c_void,
    /// Inside a run: count and cap allocations.
    running: Cell<bool>,
    /// A full collection is under way: its allocations are nobody's.
    collecting: Cell<bool>,
    limit: Cell<usize>,
    /// Bytes of live blocks the run allocated.
    run_live: Cell<usize>,
    /// What older blocks (VM-wide stacks and buffers) grew by during the run:
    /// charged against the limit, never refunded, not reported as the run's.
    run_grown: Cell<usize>,
    /// Bytes the run allocated since the last collection (gross).
    run_since_gc: Cell<usize>,
    /// An allocation was refused for the cap during this run.
    exceeded: Cell<bool>,
    /// Bytes allocated (gross) since the last full collection, runs or not.
    since_gc: Cell<usize>,
    /// Blocks allocated during the run.
    blocks: RefCell<Blocks>,
}

// SAFETY: `inner_ud` is mlua's allocator state, owned by the Lua state that
// moves together with this meter (both belong to one `ScriptVm`, used by one
// thread at a time).
unsafe impl Send for Meter {}

impl Meter {
    /// A meter for the Lua state's current allocator (which it will call),
    /// not installed yet (see [`Meter::install`]).
    ///
    /// # Safety
    /// `state` is a live Lua state, not in use by another thread.
    pub(crate) unsafe fn new(state: *mut ffi::lua_State) -> Meter {
        let mut inner_ud = std::ptr::null_mut();
        // SAFETY: the caller guarantees `state` is live.
        let inner = unsafe { ffi::lua_getallocf(state, &mut inner_ud) };
        Meter {
            inner,
            inner_ud,
            running: Cell::new(false),
            collecting: Cell::new(false),
            limit: Cell::new(usize::MAX),
            run_live: Cell::new(0),
            run_grown: Cell::new(0),
            run_since_gc: Cell::new(0),
            exceeded: Cell::new(false),
            since_gc: Cell::new(0),
            blocks: RefCell::new(Blocks::default()),
        }
    }

    /// Puts this meter in front of the state's allocator: the allocator's
    /// user data becomes this meter's address (see `api::Shared::of`).
    ///
    /// # Safety
    /// `state` is the live state this meter was made for; the meter does not
    /// move, and outlives every allocation the state makes until
    /// [`Meter::uninstall`].
    pub(crate) unsafe fn install(&self, state: *mut ffi::lua_State) {
        let ud = self as *const Meter as *mut c_void;
        // SAFETY: as above; `metered` forwards to `inner` with its own state.
        unsafe { ffi::lua_setallocf(state, metered, ud) };
    }

    /// Puts the original allocator back (before the state closes, so that
    /// mlua finds and frees its own allocator state).
    ///
    /// # Safety
    /// `state` is the live state this meter was installed on.
    pub(crate) unsafe fn uninstall(&self, state: *mut ffi::lua_State) {
        // SAFETY: the caller guarantees `state` is the live state.
        unsafe { ffi::lua_setallocf(state, self.inner, self.inner_ud) };
    }

    /// Starts counting a run capped at `limit` bytes.
    pub(crate) fn begin_run(&self, limit: usize) {
        debug_assert!(self.blocks.borrow().is_empty());
        self.run_live.set(0);
        self.run_grown.set(0);
        self.run_since_gc.set(0);
        self.exceeded.set(false);
        self.limit.set(limit);
        self.running.set(true);
    }

    /// Stops counting; the run's blocks become ordinary old blocks.
    pub(crate) fn end_run(&self) {
        self.running.set(false);
        let mut blocks = self.blocks.borrow_mut();
        if blocks.capacity() > SMALL_RUN_BLOCKS {
            // Clearing costs the capacity: don't keep a big run's table.
            *blocks = Blocks::default();
        } else {
            blocks.clear();
        }
    }

    pub(crate) fn exceeded(&self) -> bool {
        self.exceeded.get()
    }

    pub(crate) fn run_since_gc(&self) -> usize {
        self.run_since_gc.get()
    }

    pub(crate) fn since_gc(&self) -> usize {
        self.since_gc.get()
    }

    /// Marks a full collection: its own allocations are not charged, and the
    /// gross counters restart after it.
    pub(crate) fn collecting(&self, on: bool) {
        self.collecting.set(on);
        if !on {
            self.run_since_gc.set(0);
            self.since_gc.set(0);
        }
    }

    /// Whether a run may grow by `bytes`; records the refusal if not.
    fn admit(&self, bytes: usize) -> bool {
        let used = self.run_live.get() + self.run_grown.get();
        if used.saturating_add(bytes) > self.limit.get() {
            self.exceeded.set(true);
            return false;
        }
        true
    }

    fn charge(&self, bytes: usize, ours: bool) {
        let counter = if ours { &self.run_live } else { &self.run_grown };
        counter.set(counter.get() + bytes);
        self.run_since_gc.set(self.run_since_gc.get() + bytes);
    }
}

/// The allocation function Lua calls (`lua_Alloc` contract: `nsize == 0`
/// frees, a null `ptr` allocates, otherwise reallocates; null on failure).
unsafe extern "C" fn metered(
    ud: *mut c_void,
    ptr: *mut c_void,
    osize: usize,
    nsize: usize,
) -> *mut c_void {
    // SAFETY: `ud` is the `Meter` installed with this function; it outlives
    // the state's allocations (see `Meter::install`). Only shared access.
    let meter = unsafe { &*(ud as *const Meter) };
    let counting = meter.running.get() && !meter.collecting.get();
    if nsize == 0 {
        if !ptr.is_null()
            && meter.running.get()
            && meter.blocks.borrow_mut().remove(&(ptr as usize))
        {
            meter.run_live.set(meter.run_live.get().saturating_sub(osize));
        }
        // SAFETY: forwarding the same arguments to the allocator Lua had.
        return unsafe { (meter.inner)(meter.inner_ud, ptr, osize, nsize) };
    }
    let ours =
        !ptr.is_null() && meter.running.get() && meter.blocks.borrow().contains(&(ptr as usize));
    // Growth charged to the run: a new block, or what an existing one grows by.
    let grows = if ptr.is_null() { nsize } else { nsize.saturating_sub(osize) };
    if counting && grows > 0 && !meter.admit(grows) {
        return std::ptr::null_mut();
    }
    // SAFETY: as above.
    let new = unsafe { (meter.inner)(meter.inner_ud, ptr, osize, nsize) };
    if new.is_null() {
        return new;
    }
    meter.since_gc.set(meter.since_gc.get() + grows);
    if counting {
        meter.charge(grows, ptr.is_null() || ours);
        if ours && nsize < osize {
            meter.run_live.set(meter.run_live.get().saturating_sub(osize - nsize));
        }
        let mut blocks = meter.blocks.borrow_mut();
        if ours {
            blocks.remove(&(ptr as usize));
        }
        if ptr.is_null() || ours {
            blocks.insert(new as usize);
        }
    }
    new
}

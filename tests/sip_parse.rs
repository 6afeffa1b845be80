//! `sensor::sip::parse` allocates nothing: a counting allocator (its own
//! test binary, so no other test shares it) sees no allocation while it
//! reads every real fixture, each of their cuts, and junk.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

use sipban::sensor::sip::{Framing, parse};

struct Counting;

thread_local! {
    static ALLOCATIONS: Cell<usize> = const { Cell::new(0) };
}

// SAFETY: every call goes to `System` unchanged; the counter is a
// const-initialised thread-local Cell, which itself never allocates.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCATIONS.with(|n| n.set(n.get() + 1));
        // SAFETY: the caller's contract is passed on as it is.
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: as above.
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        ALLOCATIONS.with(|n| n.set(n.get() + 1));
        // SAFETY: as above.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

fn allocations_in(f: impl FnOnce()) -> usize {
    let before = ALLOCATIONS.with(Cell::get);
    f();
    ALLOCATIONS.with(Cell::get) - before
}

fn fixtures() -> Vec<(String, Vec<u8>)> {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/sip/messages");
    let mut out: Vec<(String, Vec<u8>)> = std::fs::read_dir(dir)
        .expect("fixture directory")
        .map(|e| {
            let path = e.expect("entry").path();
            let name = path
                .file_name()
                .unwrap_or_default()
                .to_string_lossy()
                .into_owned();
            (name, std::fs::read(&path).expect("fixture"))
        })
        .filter(|(name, _)| name.ends_with(".sip"))
        .collect();
    out.sort();
    out
}

#[test]
fn parsing_allocates_nothing() {
    let fixtures = fixtures();
    assert!(fixtures.len() >= 20, "{} fixtures", fixtures.len());
    let mut junk = vec![0u8; 4096];
    let mut state = 0x9e37_79b9u32;
    for b in &mut junk {
        state ^= state << 13;
        state ^= state >> 17;
        state ^= state << 5;
        *b = state.to_le_bytes()[0];
    }
    let mut read = 0usize;
    let n = allocations_in(|| {
        for (_, bytes) in &fixtures {
            for cut in 0..=bytes.len() {
                for input in [&bytes[..cut], &bytes[cut..]] {
                    if let Ok(m) = parse(input) {
                        read += usize::from(m.call_id.is_some());
                        let _ = std::hint::black_box(m);
                    }
                }
            }
        }
        for len in 0..junk.len() {
            let _ = std::hint::black_box(parse(&junk[..len]));
        }
    });
    assert_eq!(n, 0, "parse allocated {n} times");
    assert!(read > 1000, "only {read} Call-IDs read");
    // And the counter counts: a message kept as owned text does allocate.
    let (_, first) = &fixtures[0];
    let n = allocations_in(|| {
        let m = parse(first).expect("a message");
        assert!(matches!(m.framing, Framing::Complete { .. }));
        let _ = std::hint::black_box(m.call_id.map(|c| c.to_sanitized(64)));
    });
    assert!(n > 0);
}

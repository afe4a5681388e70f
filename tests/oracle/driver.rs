//! `oracle-driver`: runs one oracle case (a C fixture or a glibc call on fixed inputs)
//! either under the tracer or plain, for `tests/integration/oracle.rs` to compare with
//! valgrind's lackey.
//!
//! ```text
//! oracle-driver list              the case names, one a line
//! oracle-driver traced <case>     trace the call; print its accesses
//! oracle-driver plain <case>      run the call between two marker loads, for
//!                                 valgrind --tool=lackey --trace-mem=yes
//! ```
//!
//! The output records are described in `traced_ffi_tests::oracle`. Both modes lay out
//! the buffers the same way: each on its own pages, its last byte against the end of a
//! page, one guard page before and after (the tracer's arena; the plain mode maps the
//! same span itself, readable and writable throughout, so an out-of-bounds access is
//! executed and lackey sees it as the tracer does). Both runs need the same
//! `GLIBC_TUNABLES` (`traced_ffi_tests::oracle::GLIBC_TUNABLES`); the driver prints the
//! glibc variants it uses so the test can check that.

use std::ffi::{CStr, c_char, c_int, c_void};
use std::fmt::Write as _;
use std::process::ExitCode;

use traced_ffi::{AccessKind, Tracer};
use traced_ffi_fixtures::forms::*;
use traced_ffi_fixtures::{Node, avx2_available, o0, o2, preserve_state_check};

/// The page size (x86-64 Linux base pages), as in the tracer's arena.
const PAGE: usize = 4096;

/// One buffer of a case: valid for reads and writes of `len` bytes from `ptr`, and of
/// the rest of its span (the page-aligned redzone before it, one page after it) for
/// the duration of the case. Only the driver makes these.
#[derive(Clone, Copy)]
struct Buf {
    ptr: *mut u8,
    len: usize,
}

impl Buf {
    fn fill(self, bytes: &[u8]) {
        assert!(bytes.len() <= self.len, "case setup writes past a buffer");
        // SAFETY: `ptr` is valid for writes of `len >= bytes.len()` bytes (see Buf),
        // and `bytes` does not overlap it.
        unsafe { std::ptr::copy_nonoverlapping(bytes.as_ptr(), self.ptr, bytes.len()) };
    }

    fn bytes(self) -> Vec<u8> {
        // SAFETY: `ptr` is valid for reads of `len` bytes (see Buf).
        unsafe { std::slice::from_raw_parts(self.ptr, self.len) }.to_vec()
    }

    /// The byte `offset` bytes from the start, as a pointer.
    fn at(self, offset: usize) -> *mut u8 {
        assert!(
            offset <= self.len,
            "offset {offset} past a {}-byte buffer",
            self.len
        );
        self.ptr.wrapping_add(offset)
    }
}

/// One case: buffers, how to fill them, and the call.
struct Case {
    name: String,
    /// Buffers (name, length), allocated in this order.
    buffers: Vec<(&'static str, usize)>,
    /// glibc functions the call uses, whose variants (ifunc choices) must match.
    glibc: &'static [&'static str],
    /// Runs AVX2 code (the C fixture or the assembly one).
    needs_avx2: bool,
    /// Whether the buffers' contents after the call are compared.
    contents: Contents,
    /// Fills the buffers before the call (not traced).
    setup: fn(&[Buf]),
    /// The call, on the buffers; returns something address-free.
    call: fn(&[Buf]) -> u64,
}

/// Whether a case's buffer contents after the call can be compared between the runs.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Contents {
    /// Compared (an FNV-1a hash of each buffer).
    Compared,
    /// The buffers hold addresses, which differ between runs.
    HoldsAddresses,
    /// The buffers hold an image of CPU state (`fxsave`, `fnstenv`), which valgrind's
    /// synthetic CPU fills in differently (other XMM/x87 register contents, MXCSR_MASK,
    /// FIP/FDP): the accesses are compared, not the bytes.
    CpuState,
}

/// Bytes that differ from their neighbours and are never 0. A plain loop: the plain
/// mode runs this under lackey, where every instruction of a debug-build iterator
/// chain adds log lines.
fn pattern(len: usize, seed: u8) -> Vec<u8> {
    let mut v = vec![0u8; len];
    let mut i = 0;
    while i < len {
        v[i] = ((i * 7 + usize::from(seed)) as u8) | 1;
        i += 1;
    }
    v
}

/// `text` with a terminating NUL.
fn c_string(text: &str) -> Vec<u8> {
    let mut v = text.as_bytes().to_vec();
    v.push(0);
    v
}

fn no_setup(_: &[Buf]) {}

/// The result of a call that returns nothing.
fn done((): ()) -> u64 {
    0
}

/// The fixture cases at one level (`o0` or `o2`).
macro_rules! fixture_cases {
    ($level:ident) => {{
        use $level as l;
        let name = |n: &str| format!("{n}_{}", stringify!($level));
        vec![
            Case {
                name: name("fill_bytes"),
                buffers: vec![("buf", 24)],
                glibc: &[],
                needs_avx2: false,
                contents: Contents::Compared,
                setup: no_setup,
                // SAFETY: buf holds 24 >= 20 bytes.
                call: |b| done(unsafe { l::fill_bytes(b[0].ptr, 20, 0xab) }),
            },
            Case {
                name: name("sum_bytes"),
                buffers: vec![("buf", 24)],
                glibc: &[],
                needs_avx2: false,
                contents: Contents::Compared,
                setup: |b| b[0].fill(&pattern(24, 3)),
                // SAFETY: buf holds 24 >= 20 bytes.
                call: |b| unsafe { l::sum_bytes(b[0].ptr, 20) }.into(),
            },
            Case {
                name: name("fill_u32"),
                buffers: vec![("words", 28)],
                glibc: &[],
                needs_avx2: false,
                contents: Contents::Compared,
                setup: no_setup,
                // SAFETY: 28 bytes hold 7 >= 6 u32s, 4-aligned (page-aligned end).
                call: |b| done(unsafe { l::fill_u32(b[0].ptr.cast(), 6, 0x0102_0304) }),
            },
            Case {
                name: name("sum_u32"),
                buffers: vec![("words", 20)],
                glibc: &[],
                needs_avx2: false,
                contents: Contents::Compared,
                setup: |b| b[0].fill(&pattern(20, 9)),
                // SAFETY: 20 bytes hold 5 u32s, 4-aligned (page-aligned end).
                call: |b| unsafe { l::sum_u32(b[0].ptr.cast(), 5) }.into(),
            },
            Case {
                name: name("copy_bytes"),
                buffers: vec![("src", 24), ("dst", 24)],
                glibc: &[],
                needs_avx2: false,
                contents: Contents::Compared,
                setup: |b| b[0].fill(&pattern(24, 40)),
                // SAFETY: both hold 24 >= 20 bytes.
                call: |b| done(unsafe { l::copy_bytes(b[1].ptr, b[0].ptr, 20) }),
            },
            Case {
                name: name("fill_one_past_end"),
                buffers: vec![("buf", 8)],
                glibc: &[],
                needs_avx2: false,
                contents: Contents::Compared,
                setup: no_setup,
                // SAFETY: buf[8] is the first byte of the page after buf, part of its
                // span (see Buf): the deliberate overflow lands there.
                call: |b| done(unsafe { l::fill_one_past_end(b[0].ptr, 8, 0x5c) }),
            },
            Case {
                name: name("sum_from_minus_one"),
                buffers: vec![("buf", 8)],
                glibc: &[],
                needs_avx2: false,
                contents: Contents::Compared,
                setup: |b| b[0].fill(&pattern(8, 5)),
                // SAFETY: buf[-1] is in buf's redzone, part of its span (see Buf).
                call: |b| unsafe { l::sum_from_minus_one(b[0].ptr, 8) }.into(),
            },
            Case {
                name: name("fill_all_but_last"),
                buffers: vec![("buf", 8)],
                glibc: &[],
                needs_avx2: false,
                contents: Contents::Compared,
                setup: no_setup,
                // SAFETY: buf holds 8 bytes.
                call: |b| done(unsafe { l::fill_all_but_last(b[0].ptr, 8, 0xee) }),
            },
            Case {
                name: name("init_triple_skip_middle"),
                buffers: vec![("triple", 12)],
                glibc: &[],
                needs_avx2: false,
                contents: Contents::Compared,
                setup: no_setup,
                // SAFETY: 12 bytes, 4-aligned: one Triple.
                call: |b| done(unsafe { l::init_triple_skip_middle(b[0].ptr.cast()) }),
            },
            Case {
                name: name("sum_list"),
                buffers: vec![("head", 16), ("tail", 16)],
                glibc: &[],
                needs_avx2: false,
                contents: Contents::HoldsAddresses,
                setup: |b| {
                    let node = |n: Node| -> [u8; 16] {
                        let mut bytes = [0; 16];
                        bytes[..8].copy_from_slice(&(n.next as u64).to_le_bytes());
                        bytes[8..12].copy_from_slice(&n.value.to_le_bytes());
                        bytes
                    };
                    b[1].fill(&node(Node::new(std::ptr::null(), 2)));
                    b[0].fill(&node(Node::new(b[1].ptr.cast(), 1)));
                },
                // SAFETY: head -> tail -> null, two 16-byte, 8-aligned nodes.
                call: |b| unsafe { l::sum_list(b[0].ptr.cast()) }.into(),
            },
            Case {
                name: name("increment_u32"),
                buffers: vec![("words", 16)],
                glibc: &[],
                needs_avx2: false,
                contents: Contents::Compared,
                setup: |b| {
                    let words: Vec<u8> = [0u32, 41, u32::MAX, 9]
                        .iter()
                        .flat_map(|w| w.to_le_bytes())
                        .collect();
                    b[0].fill(&words);
                },
                // SAFETY: 16 bytes hold 4 >= 3 u32s, 4-aligned.
                call: |b| done(unsafe { l::increment_u32(b[0].ptr.cast(), 3) }),
            },
            Case {
                name: name("copy16_sse"),
                buffers: vec![("src", 16), ("dst", 16)],
                glibc: &[],
                needs_avx2: false,
                contents: Contents::Compared,
                setup: |b| b[0].fill(&pattern(16, 11)),
                // SAFETY: both hold 16 bytes.
                call: |b| done(unsafe { l::copy16_sse(b[1].ptr, b[0].ptr) }),
            },
            Case {
                name: name("copy32_avx"),
                buffers: vec![("src", 32), ("dst", 32)],
                glibc: &[],
                needs_avx2: true,
                contents: Contents::Compared,
                setup: |b| b[0].fill(&pattern(32, 13)),
                // SAFETY: both hold 32 bytes; AVX2 is checked before any call.
                call: |b| done(unsafe { l::copy32_avx(b[1].ptr, b[0].ptr) }),
            },
            Case {
                name: name("add8_i32_avx2"),
                buffers: vec![("a", 32), ("b", 32), ("dst", 32)],
                glibc: &[],
                needs_avx2: true,
                contents: Contents::Compared,
                setup: |b| {
                    b[0].fill(&pattern(32, 17));
                    b[1].fill(&pattern(32, 19));
                },
                call: |b| {
                    // SAFETY: each holds 8 i32s, 4-aligned; AVX2 is checked before any call.
                    done(unsafe {
                        l::add8_i32_avx2(b[2].ptr.cast(), b[0].ptr.cast(), b[1].ptr.cast())
                    })
                },
            },
        ]
    }};
}

/// Resolves a libc function the way the dynamic linker does for this process (the
/// ifunc variant), so the call is a real call to it and the variant can be printed.
fn libc_fn(name: &CStr) -> *mut c_void {
    // SAFETY: dlsym with RTLD_DEFAULT and a NUL-terminated name has no preconditions.
    let f = unsafe { libc::dlsym(libc::RTLD_DEFAULT, name.as_ptr()) };
    assert!(
        !f.is_null(),
        "dlsym({name:?}) found nothing: is this glibc?"
    );
    f
}

/// Declares `fn $name() -> $ty` returning the resolved libc function `$sym`.
macro_rules! libc_fns {
    ($($name:ident: $sym:literal => $ty:ty;)*) => {$(
        fn $name() -> $ty {
            let f = libc_fn($sym);
            // SAFETY: glibc's `$sym` has exactly this C signature (string.h, stdlib.h,
            // stdio.h).
            unsafe { std::mem::transmute::<*mut c_void, $ty>(f) }
        }
    )*};
}

type MemFn = unsafe extern "C" fn(*mut c_void, *const c_void, usize) -> *mut c_void;
type CmpFn = unsafe extern "C" fn(*const c_void, *const c_void) -> c_int;

libc_fns! {
    memcpy: c"memcpy" => MemFn;
    memmove: c"memmove" => MemFn;
    memset: c"memset" => unsafe extern "C" fn(*mut c_void, c_int, usize) -> *mut c_void;
    memcmp: c"memcmp" => unsafe extern "C" fn(*const c_void, *const c_void, usize) -> c_int;
    strlen: c"strlen" => unsafe extern "C" fn(*const c_char) -> usize;
    strcpy: c"strcpy" => unsafe extern "C" fn(*mut c_char, *const c_char) -> *mut c_char;
    strcmp: c"strcmp" => unsafe extern "C" fn(*const c_char, *const c_char) -> c_int;
    memchr: c"memchr" => unsafe extern "C" fn(*const c_void, c_int, usize) -> *mut c_void;
    qsort: c"qsort" => unsafe extern "C" fn(*mut c_void, usize, usize, CmpFn);
    snprintf: c"snprintf" => unsafe extern "C" fn(*mut c_char, usize, *const c_char, ...) -> c_int;
}

/// A C int result as an address-free u64 (sign-extended).
fn int(v: c_int) -> u64 {
    i64::from(v) as u64
}

/// A pointer result as its offset from `base` (address-free).
fn offset_of(p: *mut c_void, base: Buf) -> u64 {
    if p.is_null() {
        u64::MAX
    } else {
        (p as u64).wrapping_sub(base.ptr as u64)
    }
}

/// The glibc cases. Sizes: small ones take the vector paths; 4096 takes `rep movsb` /
/// `rep stosb` (thresholds pinned at 2048 by GLIBC_TUNABLES); the memmoves are long
/// enough (600 > 8 vectors of 32) for the forward and backward loops.
fn glibc_cases() -> Vec<Case> {
    let case = |name: &str, buffers, glibc, setup, call| Case {
        name: name.to_owned(),
        buffers,
        glibc,
        needs_avx2: false,
        contents: Contents::Compared,
        setup,
        call,
    };
    vec![
        case(
            "memcpy_100",
            vec![("src", 100), ("dst", 100)],
            &["memcpy"],
            |b| b[0].fill(&pattern(100, 21)),
            |b| {
                offset_of(
                    // SAFETY: both hold 100 bytes and do not overlap.
                    unsafe { memcpy()(b[1].ptr.cast(), b[0].ptr.cast(), 100) },
                    b[1],
                )
            },
        ),
        case(
            "memcpy_4096_rep_movsb",
            vec![("src", 4096), ("dst", 4096)],
            &["memcpy"],
            |b| b[0].fill(&pattern(4096, 23)),
            |b| {
                offset_of(
                    // SAFETY: both hold 4096 bytes and do not overlap.
                    unsafe { memcpy()(b[1].ptr.cast(), b[0].ptr.cast(), 4096) },
                    b[1],
                )
            },
        ),
        case(
            "memmove_overlap_forward",
            vec![("buf", 640)],
            &["memmove"],
            |b| b[0].fill(&pattern(640, 25)),
            |b| {
                offset_of(
                    // SAFETY: buf[9..609] and buf[0..600] lie inside its 640 bytes.
                    unsafe { memmove()(b[0].ptr.cast(), b[0].at(9).cast(), 600) },
                    b[0],
                )
            },
        ),
        case(
            "memmove_overlap_backward",
            vec![("buf", 640)],
            &["memmove"],
            |b| b[0].fill(&pattern(640, 27)),
            |b| {
                offset_of(
                    // SAFETY: buf[0..600] and buf[9..609] lie inside its 640 bytes.
                    unsafe { memmove()(b[0].at(9).cast(), b[0].ptr.cast(), 600) },
                    b[0],
                )
            },
        ),
        case(
            "memset_100",
            vec![("buf", 100)],
            &["memset"],
            no_setup,
            // SAFETY: buf holds 100 bytes.
            |b| offset_of(unsafe { memset()(b[0].ptr.cast(), 0x5a, 100) }, b[0]),
        ),
        case(
            "memset_4096_rep_stosb",
            vec![("buf", 4096)],
            &["memset"],
            no_setup,
            // SAFETY: buf holds 4096 bytes.
            |b| offset_of(unsafe { memset()(b[0].ptr.cast(), 0x5a, 4096) }, b[0]),
        ),
        case(
            "memcmp_100_differs_at_37",
            vec![("a", 100), ("b", 100)],
            &["memcmp"],
            |b| {
                let a = pattern(100, 29);
                let mut other = a.clone();
                other[37] ^= 0x40;
                b[0].fill(&a);
                b[1].fill(&other);
            },
            // SAFETY: both hold 100 bytes.
            |b| int(unsafe { memcmp()(b[0].ptr.cast(), b[1].ptr.cast(), 100) }.signum()),
        ),
        case(
            "memcmp_64_equal",
            vec![("a", 64), ("b", 64)],
            &["memcmp"],
            |b| {
                b[0].fill(&pattern(64, 31));
                b[1].fill(&pattern(64, 31));
            },
            // SAFETY: both hold 64 bytes.
            |b| int(unsafe { memcmp()(b[0].ptr.cast(), b[1].ptr.cast(), 64) }),
        ),
        case(
            "strlen_3",
            vec![("s", 4)],
            &["strlen"],
            |b| b[0].fill(&c_string("abc")),
            // SAFETY: s is NUL-terminated within its 4 bytes.
            |b| unsafe { strlen()(b[0].ptr.cast()) } as u64,
        ),
        case(
            "strlen_100",
            vec![("s", 101)],
            &["strlen"],
            |b| b[0].fill(&c_string(&"x".repeat(100))),
            // SAFETY: s is NUL-terminated within its 101 bytes.
            |b| unsafe { strlen()(b[0].ptr.cast()) } as u64,
        ),
        case(
            "strcpy_50",
            vec![("src", 51), ("dst", 64)],
            &["strcpy"],
            |b| b[0].fill(&c_string(&"traced-ffi/oracle ".repeat(3)[..50])),
            |b| {
                offset_of(
                    // SAFETY: src is NUL-terminated within 51 bytes; dst holds 64 >= 51.
                    unsafe { strcpy()(b[1].ptr.cast(), b[0].ptr.cast()) }.cast(),
                    b[1],
                )
            },
        ),
        case(
            "strcmp_60_differs_at_45",
            vec![("a", 61), ("b", 61)],
            &["strcmp"],
            |b| {
                let a = "the quick brown fox jumps over the lazy dog, then the cat sat";
                b[0].fill(&c_string(&a[..60]));
                let mut other = c_string(&a[..60]);
                other[45] = b'X';
                b[1].fill(&other);
            },
            // SAFETY: both are NUL-terminated within their 61 bytes.
            |b| int(unsafe { strcmp()(b[0].ptr.cast(), b[1].ptr.cast()) }.signum()),
        ),
        case(
            "memchr_100_finds_70",
            vec![("buf", 100)],
            &["memchr"],
            |b| {
                let mut bytes = vec![b'.'; 100];
                bytes[70] = b'!';
                b[0].fill(&bytes);
            },
            |b| {
                offset_of(
                    // SAFETY: buf holds 100 bytes.
                    unsafe { memchr()(b[0].ptr.cast(), c_int::from(b'!'), 100) },
                    b[0],
                )
            },
        ),
        case(
            "qsort_16_u32",
            vec![("words", 64)],
            &["memcpy"],
            |b| {
                let words: Vec<u8> = (0..16u32)
                    .map(|i| i.wrapping_mul(0x9e37_79b9) >> 7)
                    .flat_map(u32::to_le_bytes)
                    .collect();
                b[0].fill(&words);
            },
            |b| {
                // SAFETY: 64 bytes hold 16 u32s, 4-aligned; compare_u32_o2 reads two
                // u32s through the pointers qsort gives it.
                unsafe { qsort()(b[0].ptr.cast(), 16, 4, o2::compare_u32) };
                0
            },
        ),
        case(
            "snprintf_into_buffer",
            vec![("fmt", 14), ("arg", 7), ("out", 64)],
            &["strchrnul", "strlen", "mempcpy"],
            |b| {
                b[0].fill(&c_string("name=%s n=%d."));
                b[1].fill(&c_string("oracle"));
            },
            |b| {
                // SAFETY: fmt and arg are NUL-terminated in their buffers; out holds 64
                // bytes and snprintf is told so; %s takes arg, %d an int.
                int(unsafe {
                    snprintf()(b[2].ptr.cast(), 64, b[0].ptr.cast(), b[1].ptr, 42 as c_int)
                })
            },
        ),
    ]
}

/// A form case with no AVX2 and compared contents; adjust with `Case { .., ..form(..) }`.
fn form(
    name: &str,
    buffers: Vec<(&'static str, usize)>,
    setup: fn(&[Buf]),
    call: fn(&[Buf]) -> u64,
) -> Case {
    Case {
        name: name.to_owned(),
        buffers,
        glibc: &[],
        needs_avx2: false,
        contents: Contents::Compared,
        setup,
        call,
    }
}

/// Fills the first buffer with a pattern (the source of most forms).
fn fill_first(b: &[Buf]) {
    b[0].fill(&pattern(b[0].len, 51));
}

/// The first buffer holds these 8 bytes (the cmpxchg operand).
fn fill_cmpxchg(b: &[Buf]) {
    b[0].fill(&0x8877_6655_4433_2211_u64.to_le_bytes());
}

/// `form_rep_movsb(dst, src, N)` with src = b[0], dst = b[1].
fn rep_movsb_n<const N: usize>(b: &[Buf]) -> u64 {
    assert!(b[0].len >= N && b[1].len >= N);
    // SAFETY: both buffers hold at least N bytes (checked).
    unsafe { form_rep_movsb(b[1].ptr, b[0].ptr, N) };
    0
}

/// `form_rep_stosb(buf, N, 0xa5)` on b[0].
fn rep_stosb_n<const N: usize>(b: &[Buf]) -> u64 {
    assert!(b[0].len >= N);
    // SAFETY: the buffer holds at least N bytes (checked).
    unsafe { form_rep_stosb(b[0].ptr, N, 0xa5) };
    0
}

/// A two-pointer form `f(dst, src)` with src = b[0], dst = b[1].
type CopyFn = unsafe extern "C" fn(*mut u8, *const u8);

/// Masks of the masked moves (untraced memory: only the data side is a buffer). The
/// same as `tests/integration/forms_simd.rs`'s: u32 elements 1, 2 and 5 enabled (runs
/// [4, 12) and [20, 24)), u64 elements 0, 1 and 3 ([0, 16) and [24, 32)), bytes 1..4,
/// 9 and 12..16 for `maskmovdqu`.
static MASK32: [u32; 8] = [0, 0x8000_0000, u32::MAX, 0x7fff_ffff, 0, 0x8000_0001, 1, 0];
static MASK64: [u64; 4] = [1 << 63, u64::MAX, 1, 1 << 63];
static MASK16: [u8; 16] = [
    0, 0x80, 0xff, 0x80, 0x7f, 0, 0, 0x01, 0, 0x80, 0, 0, 0x80, 0x80, 0x80, 0x80,
];
/// The gather's indices and mask: elements 0, 1, 2, 4, 6 enabled, reading the u32s at
/// 20, 4, 28, 8, 16 in that order.
static GATHER_IDX: [i32; 8] = [5, 1, 7, 0, 2, 6, 4, 3];
static GATHER_MASK: [u32; 8] = [u32::MAX, u32::MAX, u32::MAX, 0, u32::MAX, 0, u32::MAX, 0];

/// The instruction-form corpus (`traced_ffi_fixtures::forms`, `fixtures/asm/forms.S`):
/// every form valgrind 3.19 runs correctly. Left out:
/// - the AVX-512 forms: valgrind 3.19 has no AVX-512.
/// - `form_cmpsw` (`66 a7`, `cmpsw` without `rep`), `form_clflushopt` (`66 0f ae /7`)
///   and `form_clwb` (`66 0f ae /6`): lackey dies with "unhandled instruction bytes"
///   (checked with valgrind 3.19.0).
/// - `form_rep_lodsb` and `form_rep_lodsq`: valgrind 3.19 runs `rep lods` as a single
///   `lods` whatever rcx is (checked: with rcx = 0 it still loads `src[0]`; with
///   rcx = 100 it loads only `src[0]` and returns it), so it is no oracle for them.
///   `lodsd` without `rep` is here.
/// - `form_xsave` / `form_xrstor`: valgrind runs them, but for its own CPU (XCR0 =
///   x87|SSE|AVX: it writes `area[0..416]`, `[512..513]`, `[576..832]`), while natively
///   the area is `CPUID(0xD, 0).EBX` bytes of this CPU's components (2432 here, with
///   AVX-512 state): the two sides do not run the same instruction.
/// - `form_ret42` (no memory access; `call_mem`/`jmp_mem` call it).
///
/// Which cases are compared how, and the known differences, are in
/// `tests/integration/oracle.rs`.
fn form_cases() -> Vec<Case> {
    /// A copy form `f(dst, src)` between two `len`-byte buffers, src filled.
    fn copy(name: &str, len: usize, call: fn(&[Buf]) -> u64) -> Case {
        form(name, vec![("src", len), ("dst", len)], fill_first, call)
    }
    let avx2 = |case: Case| Case {
        needs_avx2: true,
        ..case
    };
    vec![
        // ------------------------------------------------------------ strings
        form(
            "rep_movsb_0",
            vec![("src", 8), ("dst", 8)],
            fill_first,
            rep_movsb_n::<0>,
        ),
        form(
            "rep_movsb_1",
            vec![("src", 1), ("dst", 1)],
            fill_first,
            rep_movsb_n::<1>,
        ),
        copy("rep_movsb_100", 100, rep_movsb_n::<100>),
        copy("rep_movsb_4095", 4095, rep_movsb_n::<4095>),
        copy("rep_movsb_backward_100", 100, |b| {
            // SAFETY: bytes 0..100 of both buffers.
            unsafe { form_rep_movsb_backward(b[1].at(99), b[0].at(99), 100) };
            0
        }),
        copy("rep_movsw_100", 200, |b| {
            // SAFETY: 100 u16 = 200 bytes each.
            unsafe { form_rep_movsw(b[1].ptr, b[0].ptr, 100) };
            0
        }),
        copy("rep_movsd_100", 400, |b| {
            // SAFETY: 100 u32 = 400 bytes each.
            unsafe { form_rep_movsd(b[1].ptr, b[0].ptr, 100) };
            0
        }),
        copy("rep_movsq_100", 800, |b| {
            // SAFETY: 100 u64 = 800 bytes each.
            unsafe { form_rep_movsq(b[1].ptr, b[0].ptr, 100) };
            0
        }),
        copy("rep_movsq_backward_100", 800, |b| {
            // SAFETY: the 100 u64 ending at byte 800 of both buffers.
            unsafe { form_rep_movsq_backward(b[1].at(792), b[0].at(792), 100) };
            0
        }),
        copy("movsb", 1, |b| {
            // SAFETY: one byte each.
            unsafe { form_movsb(b[1].ptr, b[0].ptr) };
            0
        }),
        form("rep_stosb_0", vec![("buf", 8)], no_setup, rep_stosb_n::<0>),
        form("rep_stosb_1", vec![("buf", 1)], no_setup, rep_stosb_n::<1>),
        form(
            "rep_stosb_100",
            vec![("buf", 100)],
            no_setup,
            rep_stosb_n::<100>,
        ),
        form(
            "rep_stosb_4095",
            vec![("buf", 4095)],
            no_setup,
            rep_stosb_n::<4095>,
        ),
        form("rep_stosw_100", vec![("buf", 200)], no_setup, |b| {
            // SAFETY: 100 u16 = 200 bytes.
            unsafe { form_rep_stosw(b[0].ptr, 100, 0x1234) };
            0
        }),
        form("rep_stosd_100", vec![("buf", 400)], no_setup, |b| {
            // SAFETY: 100 u32 = 400 bytes.
            unsafe { form_rep_stosd(b[0].ptr, 100, 0x0102_0304) };
            0
        }),
        form("rep_stosq_100", vec![("buf", 800)], no_setup, |b| {
            // SAFETY: 100 u64 = 800 bytes.
            unsafe { form_rep_stosq(b[0].ptr, 100, 0x0102_0304_0506_0708) };
            0
        }),
        form(
            "rep_stosd_backward_100",
            vec![("buf", 400)],
            no_setup,
            |b| {
                // SAFETY: the 100 u32 ending at byte 400.
                unsafe { form_rep_stosd_backward(b[0].at(396), 100, 0xaabb_ccdd) };
                0
            },
        ),
        form("stosq", vec![("buf", 8)], no_setup, |b| {
            // SAFETY: 8 bytes.
            unsafe { form_stosq(b[0].ptr, 0x1122_3344_5566_7788) };
            0
        }),
        form("lodsd", vec![("src", 4)], fill_first, |b| {
            // SAFETY: 4 bytes.
            unsafe { form_lodsd(b[0].ptr) }.into()
        }),
        form(
            "repe_cmpsb_100_differs_at_37",
            vec![("a", 100), ("b", 100)],
            |b| {
                let a = pattern(100, 57);
                let mut other = a.clone();
                other[37] ^= 0x40;
                b[0].fill(&a);
                b[1].fill(&other);
            },
            // SAFETY: both hold 100 bytes.
            |b| unsafe { form_repe_cmpsb(b[0].ptr, b[1].ptr, 100) } as u64,
        ),
        form(
            "repe_cmpsb_100_equal",
            vec![("a", 100), ("b", 100)],
            |b| {
                b[0].fill(&pattern(100, 59));
                b[1].fill(&pattern(100, 59));
            },
            // SAFETY: both hold 100 bytes.
            |b| unsafe { form_repe_cmpsb(b[0].ptr, b[1].ptr, 100) } as u64,
        ),
        form(
            "repe_cmpsq_100_differs_at_37",
            vec![("a", 800), ("b", 800)],
            |b| {
                let a = pattern(800, 61);
                let mut other = a.clone();
                other[8 * 37 + 5] ^= 0x40;
                b[0].fill(&a);
                b[1].fill(&other);
            },
            // SAFETY: both hold 100 u64.
            |b| unsafe { form_repe_cmpsq(b[0].ptr, b[1].ptr, 100) } as u64,
        ),
        form(
            "repne_scasb_100_finds_70",
            vec![("buf", 100)],
            |b| {
                let mut bytes = vec![b'.'; 100];
                bytes[70] = b'!';
                b[0].fill(&bytes);
            },
            // SAFETY: buf holds 100 bytes.
            |b| unsafe { form_repne_scasb(b[0].ptr, 100, b'!') } as u64,
        ),
        form(
            "repe_scasd_backward_100_differs_at_69",
            vec![("words", 400)],
            |b| {
                let mut words = vec![7u32; 100];
                words[69] = 8;
                let bytes: Vec<u8> = words.iter().flat_map(|w| w.to_le_bytes()).collect();
                b[0].fill(&bytes);
            },
            // SAFETY: the 100 u32 ending at byte 400.
            |b| unsafe { form_repe_scasd_backward(b[0].at(396), 100, 7) } as u64,
        ),
        form(
            "scasb",
            vec![("buf", 1)],
            |b| b[0].fill(b"!"),
            // SAFETY: 1 byte.
            |b| unsafe { form_scasb(b[0].ptr, b'!') }.into(),
        ),
        // ------------------------------------------------ two memory operands
        form("push_mem", vec![("p", 8)], fill_first, |b| {
            // SAFETY: 8 bytes.
            unsafe { form_push_mem(b[0].ptr) }
        }),
        form("pop_mem", vec![("p", 8)], no_setup, |b| {
            // SAFETY: 8 bytes.
            unsafe { form_pop_mem(b[0].ptr, 0x1122_3344_5566_7788) };
            0
        }),
        Case {
            contents: Contents::HoldsAddresses,
            ..form("call_mem", vec![("p", 8)], fill_ret42, |b| {
                // SAFETY: p holds a pointer to form_ret42.
                unsafe { form_call_mem(b[0].ptr) }.into()
            })
        },
        Case {
            contents: Contents::HoldsAddresses,
            ..form("jmp_mem", vec![("p", 8)], fill_ret42, |b| {
                // SAFETY: p holds a pointer to form_ret42.
                unsafe { form_jmp_mem(b[0].ptr) }.into()
            })
        },
        // ------------------------------------------------------- plain moves
        form(
            "load_u64_across_a_page",
            vec![("buf", 8192)],
            fill_first,
            |b| {
                // SAFETY: bytes 4092..4100 of 8192 (the buffer starts on a page).
                unsafe { form_load_u64(b[0].at(4092)) }
            },
        ),
        copy("movdqu_across_a_page", 8192, |b| {
            // SAFETY: bytes 4088..4104 of src and 4090..4106 of dst, of 8192.
            unsafe { form_movdqu_copy(b[1].at(4090), b[0].at(4088)) };
            0
        }),
        copy("movdqu_copy", 16, |b| {
            // SAFETY: 16 bytes each.
            unsafe { form_movdqu_copy(b[1].ptr, b[0].ptr) };
            0
        }),
        // ------------------------------------------------------------ atomics
        form("lock_cmpxchg8_stores", vec![("p", 8)], fill_cmpxchg, |b| {
            // SAFETY: 8 bytes.
            unsafe { form_lock_cmpxchg8(b[0].ptr, 0x11, 0xee) }.into()
        }),
        form("lock_cmpxchg8_fails", vec![("p", 8)], fill_cmpxchg, |b| {
            // SAFETY: 8 bytes.
            unsafe { form_lock_cmpxchg8(b[0].ptr, 0x10, 0xee) }.into()
        }),
        form("lock_cmpxchg16_stores", vec![("p", 8)], fill_cmpxchg, |b| {
            // SAFETY: 8 bytes.
            unsafe { form_lock_cmpxchg16(b[0].ptr, 0x2211, 0xabcd) }.into()
        }),
        form("lock_cmpxchg16_fails", vec![("p", 8)], fill_cmpxchg, |b| {
            // SAFETY: 8 bytes.
            unsafe { form_lock_cmpxchg16(b[0].ptr, 0x2210, 0xabcd) }.into()
        }),
        form("lock_cmpxchg32_stores", vec![("p", 8)], fill_cmpxchg, |b| {
            // SAFETY: 8 bytes.
            unsafe { form_lock_cmpxchg32(b[0].ptr, 0x4433_2211, 2) }.into()
        }),
        form("lock_cmpxchg32_fails", vec![("p", 8)], fill_cmpxchg, |b| {
            // SAFETY: 8 bytes.
            unsafe { form_lock_cmpxchg32(b[0].ptr, 1, 2) }.into()
        }),
        form("lock_cmpxchg64_stores", vec![("p", 8)], fill_cmpxchg, |b| {
            // SAFETY: 8 bytes.
            unsafe { form_lock_cmpxchg64(b[0].ptr, 0x8877_6655_4433_2211, 7) }
        }),
        form("lock_cmpxchg64_fails", vec![("p", 8)], fill_cmpxchg, |b| {
            // SAFETY: 8 bytes.
            unsafe { form_lock_cmpxchg64(b[0].ptr, 0x8877_6655_4433_2210, 7) }
        }),
        form("lock_cmpxchg8b_stores", vec![("p", 8)], fill_cmpxchg, |b| {
            // SAFETY: 8 bytes.
            unsafe { form_lock_cmpxchg8b(b[0].ptr, 0x8877_6655_4433_2211, 0xdead_beef) }
        }),
        form("lock_cmpxchg8b_fails", vec![("p", 8)], fill_cmpxchg, |b| {
            // SAFETY: 8 bytes.
            unsafe { form_lock_cmpxchg8b(b[0].ptr, 8, 9) }
        }),
        form(
            "lock_cmpxchg16b_stores",
            vec![("p", 16), ("old", 16)],
            fill_cmpxchg16b,
            |b| {
                // SAFETY: p is 16 bytes ending at a page end, so 16-aligned; old holds
                // two u64 and is 8-aligned.
                unsafe { form_lock_cmpxchg16b(b[0].ptr, 1, 2, 5, 6, b[1].ptr.cast()) }.into()
            },
        ),
        form(
            "lock_cmpxchg16b_fails",
            vec![("p", 16), ("old", 16)],
            fill_cmpxchg16b,
            |b| {
                // SAFETY: as in lock_cmpxchg16b_stores.
                unsafe { form_lock_cmpxchg16b(b[0].ptr, 1, 3, 5, 6, b[1].ptr.cast()) }.into()
            },
        ),
        form("lock_xadd32", vec![("p", 4)], fill_first, |b| {
            // SAFETY: 4 bytes.
            unsafe { form_lock_xadd32(b[0].ptr, 2) }.into()
        }),
        form("xchg64", vec![("p", 8)], fill_first, |b| {
            // SAFETY: 8 bytes.
            unsafe { form_xchg64(b[0].ptr, 0x0100) }
        }),
        form("lock_add32", vec![("p", 4)], fill_first, |b| {
            // SAFETY: 4 bytes.
            unsafe { form_lock_add32(b[0].ptr, 8) };
            0
        }),
        form("lock_or64_imm", vec![("p", 8)], fill_first, |b| {
            // SAFETY: 8 bytes.
            unsafe { form_lock_or64_imm(b[0].ptr) };
            0
        }),
        form("lock_and16_imm", vec![("p", 2)], fill_first, |b| {
            // SAFETY: 2 bytes.
            unsafe { form_lock_and16_imm(b[0].ptr) };
            0
        }),
        form("cmovnz_load_taken", vec![("p", 8)], fill_first, |b| {
            // SAFETY: 8 bytes.
            unsafe { form_cmovnz_load(b[0].ptr, 1, 9) }
        }),
        form("cmovnz_load_not_taken", vec![("p", 8)], fill_first, |b| {
            // SAFETY: 8 bytes.
            unsafe { form_cmovnz_load(b[0].ptr, 0, 9) }
        }),
        form("setb_store", vec![("p", 1)], no_setup, |b| {
            // SAFETY: 1 byte.
            unsafe { form_setb_store(b[0].ptr, 1, 2) };
            0
        }),
        // --------------------------------------------------------- SSE / AVX
        copy("movd_copy", 4, |b| copy_fn(b, form_movd_copy)),
        copy("movq_copy", 8, |b| copy_fn(b, form_movq_copy)),
        copy("movss_copy", 4, |b| copy_fn(b, form_movss_copy)),
        copy("movsd_copy", 8, |b| copy_fn(b, form_movsd_copy)),
        copy("movups_copy", 16, |b| copy_fn(b, form_movups_copy)),
        copy("movaps_copy", 16, |b| copy_fn(b, form_movaps_copy)),
        copy("movhps_movlps_swap", 16, |b| {
            copy_fn(b, form_movhps_movlps_swap)
        }),
        copy("pinsrb_pextrb", 1, |b| copy_fn(b, form_pinsrb_pextrb)),
        avx2(copy("vmovdqu_ymm_copy", 32, |b| {
            copy_fn(b, form_vmovdqu_ymm_copy)
        })),
        avx2(copy("vinserti128_vextracti128", 16, |b| {
            copy_fn(b, form_vinserti128_vextracti128)
        })),
        avx2(form(
            "vbroadcastss",
            vec![("src", 4), ("dst", 32)],
            fill_first,
            |b| copy_fn(b, form_vbroadcastss),
        )),
        avx2(form(
            "vpmovzxbd",
            vec![("src", 8), ("dst", 32)],
            fill_first,
            |b| copy_fn(b, form_vpmovzxbd),
        )),
        form("movnti", vec![("dst", 8)], no_setup, |b| {
            // SAFETY: 8 bytes.
            unsafe { form_movnti(b[0].ptr, 0x0807_0605_0403_0201) };
            0
        }),
        copy("movntdq", 16, |b| copy_fn(b, form_movntdq)),
        avx2(copy("vmovntdq_ymm", 32, |b| copy_fn(b, form_vmovntdq_ymm))),
        avx2(copy("vmaskmovps_load", 32, |b| {
            // SAFETY: 32 bytes each, the mask 8 u32; AVX2 is checked before any call.
            unsafe { form_vmaskmovps_load(b[1].ptr, b[0].ptr, MASK32.as_ptr()) };
            0
        })),
        avx2(copy("vmaskmovps_store", 32, |b| {
            // SAFETY: as for vmaskmovps_load.
            unsafe { form_vmaskmovps_store(b[1].ptr, b[0].ptr, MASK32.as_ptr()) };
            0
        })),
        avx2(copy("vpmaskmovd_load", 32, |b| {
            // SAFETY: as for vmaskmovps_load.
            unsafe { form_vpmaskmovd_load(b[1].ptr, b[0].ptr, MASK32.as_ptr()) };
            0
        })),
        avx2(copy("vpmaskmovd_store", 32, |b| {
            // SAFETY: as for vmaskmovps_load.
            unsafe { form_vpmaskmovd_store(b[1].ptr, b[0].ptr, MASK32.as_ptr()) };
            0
        })),
        avx2(copy("vpmaskmovq_load", 32, |b| {
            // SAFETY: 32 bytes each, the mask 4 u64; AVX2 is checked before any call.
            unsafe { form_vpmaskmovq_load(b[1].ptr, b[0].ptr, MASK64.as_ptr()) };
            0
        })),
        avx2(copy("vpmaskmovq_store", 32, |b| {
            // SAFETY: as for vpmaskmovq_load.
            unsafe { form_vpmaskmovq_store(b[1].ptr, b[0].ptr, MASK64.as_ptr()) };
            0
        })),
        copy("maskmovdqu", 16, |b| {
            // SAFETY: 16 bytes each, the mask 16 bytes.
            unsafe { form_maskmovdqu(b[1].ptr, b[0].ptr, MASK16.as_ptr()) };
            0
        }),
        avx2(form(
            "vpgatherdd",
            vec![("base", 32), ("dst", 32)],
            fill_first,
            |b| {
                // SAFETY: indices 0..8 of base's 8 u32; dst holds 32 bytes; idx and
                // mask 8 elements each; AVX2 is checked before any call.
                unsafe {
                    form_vpgatherdd(
                        b[1].ptr,
                        b[0].ptr,
                        GATHER_IDX.as_ptr(),
                        GATHER_MASK.as_ptr(),
                    )
                };
                0
            },
        )),
        // ------------------------------------------------------- state saves
        Case {
            contents: Contents::CpuState,
            ..form("fxsave", vec![("area", 512)], no_setup, |b| {
                // SAFETY: 512 bytes ending at a page end, so 16-aligned.
                unsafe { form_fxsave(b[0].ptr) };
                0
            })
        },
        Case {
            contents: Contents::CpuState,
            ..form(
                "fxrstor",
                vec![("area", 512)],
                |b| {
                    // SAFETY: as in the fxsave case; this thread's own image.
                    unsafe { form_fxsave(b[0].ptr) }
                },
                |b| {
                    // SAFETY: an image form_fxsave wrote on this thread (setup).
                    unsafe { form_fxrstor(b[0].ptr) };
                    0
                },
            )
        },
        // --------------------------------------------------------------- x87
        form(
            "fld_fstp_f32",
            vec![("src", 4), ("dst", 4)],
            fill_f32,
            |b| copy_fn(b, form_fld_fstp_f32),
        ),
        form(
            "fld_fstp_f64",
            vec![("src", 8), ("dst", 8)],
            fill_f64,
            |b| copy_fn(b, form_fld_fstp_f64),
        ),
        form(
            "fld_fstp_f80",
            vec![("src", 10), ("dst", 10)],
            fill_f80,
            |b| copy_fn(b, form_fld_fstp_f80),
        ),
        form(
            "fild16_fistp64",
            vec![("src", 2), ("dst", 8)],
            |b| b[0].fill(&(-1234i16).to_le_bytes()),
            |b| copy_fn(b, form_fild16_fistp64),
        ),
        form("fnstcw_fldcw", vec![("p", 2)], no_setup, |b| {
            // SAFETY: 2 bytes.
            unsafe { form_fnstcw_fldcw(b[0].ptr) };
            0
        }),
        Case {
            contents: Contents::CpuState,
            ..form("fnstenv", vec![("env", 28)], no_setup, |b| {
                // SAFETY: 28 bytes.
                unsafe { form_fnstenv(b[0].ptr) };
                0
            })
        },
        // ------------------------------------------------------------- movbe
        copy("movbe16", 2, |b| copy_fn(b, form_movbe16)),
        copy("movbe32", 4, |b| copy_fn(b, form_movbe32)),
        copy("movbe64", 8, |b| copy_fn(b, form_movbe64)),
        // ---------------------------------------------------------- bit tests
        form("bt64_bit_65", vec![("bits", 32)], fill_first, |b| {
            // SAFETY: the u64 at 8 of 32 bytes.
            unsafe { form_bt64(b[0].ptr, 65) }.into()
        }),
        form("bt64_bit_minus_63", vec![("bits", 32)], fill_first, |b| {
            // SAFETY: the u64 at 16 - 8 = 8 of 32 bytes.
            unsafe { form_bt64(b[0].at(16), -63) }.into()
        }),
        form("bts32_bit_70", vec![("bits", 32)], fill_first, |b| {
            // SAFETY: the u32 at 8 of 32 bytes.
            unsafe { form_bts32(b[0].ptr, 70) }.into()
        }),
        form("btr16_bit_minus_17", vec![("bits", 32)], fill_first, |b| {
            // SAFETY: the u16 at 16 - 4 = 12 of 32 bytes.
            unsafe { form_btr16(b[0].at(16), -17) }.into()
        }),
        form("btc64_bit_130", vec![("bits", 32)], fill_first, |b| {
            // SAFETY: the u64 at 16 of 32 bytes.
            unsafe { form_btc64(b[0].ptr, 130) }.into()
        }),
        form("bt32_imm", vec![("bits", 4)], fill_first, |b| {
            // SAFETY: 4 bytes.
            unsafe { form_bt32_imm(b[0].ptr) }.into()
        }),
        // -------------------------------------------------------------- stack
        Case {
            contents: Contents::HoldsAddresses,
            ..form("stack_switch", vec![("stack", 64)], no_setup, |b| {
                // No signal is delivered to this thread during the call (the tracer's
                // faults are handled by its supervisor).
                // SAFETY: the 56 bytes below the end of the 64-byte buffer; no signal.
                unsafe { form_stack_switch(b[0].at(64), 0x5151, 0xbbbb_0000_1234) }
            })
        },
        // --------------------------------------------------- cache-line hints
        form("clflush", vec![("line", 64)], fill_first, |b| {
            // SAFETY: the buffer is mapped.
            unsafe { form_clflush(b[0].ptr) };
            0
        }),
        form("prefetch", vec![("line", 64)], fill_first, |b| {
            // SAFETY: prefetches never fault.
            unsafe { form_prefetch(b[0].ptr) };
            0
        }),
    ]
}

/// `f(dst, src)` with src = b[0], dst = b[1].
fn copy_fn(b: &[Buf], f: CopyFn) -> u64 {
    // Every case calling this makes both buffers as large as f's documented accesses
    // and aligned as it requires (each ends at a page end, its length a multiple).
    // SAFETY: as just said; the AVX2 forms are AVX2 cases (checked before any call).
    unsafe { f(b[1].ptr, b[0].ptr) };
    0
}

fn fill_ret42(b: &[Buf]) {
    let f = form_ret42 as unsafe extern "C" fn() -> u32;
    b[0].fill(&(f as usize as u64).to_le_bytes());
}

fn fill_cmpxchg16b(b: &[Buf]) {
    b[0].fill(&[1u64.to_le_bytes(), 2u64.to_le_bytes()].concat());
}

fn fill_f32(b: &[Buf]) {
    b[0].fill(&1.5f32.to_le_bytes());
}

fn fill_f64(b: &[Buf]) {
    b[0].fill(&(-2.25f64).to_le_bytes());
}

/// 1.0 as an 80-bit extended: mantissa 1 << 63, exponent 0x3fff.
fn fill_f80(b: &[Buf]) {
    let mut t = [0u8; 10];
    t[7] = 0x80;
    t[8] = 0xff;
    t[9] = 0x3f;
    b[0].fill(&t);
}

fn cases() -> Vec<Case> {
    let mut all = fixture_cases!(o0);
    all.extend(fixture_cases!(o2));
    all.push(Case {
        name: "preserve_state_check".to_owned(),
        buffers: vec![("buf", 64)],
        glibc: &[],
        needs_avx2: true,
        contents: Contents::Compared,
        setup: |b| b[0].fill(&pattern(64, 33)),
        // SAFETY: buf holds 64 bytes; AVX2 is checked before any call.
        call: |b| unsafe { preserve_state_check(b[0].ptr, 64) },
    });
    all.extend(glibc_cases());
    all.extend(form_cases());
    all
}

/// The executable segments of every loaded object, as `module` records, from
/// `dl_iterate_phdr` (a handful of program headers: cheap under lackey, unlike parsing
/// /proc/self/maps, which under valgrind lists hundreds of its own mappings). The main
/// program has no name there and is called `main`.
fn modules() -> String {
    unsafe extern "C" fn each(
        info: *mut libc::dl_phdr_info,
        _size: usize,
        data: *mut c_void,
    ) -> c_int {
        // SAFETY: dl_iterate_phdr passes a valid `info` for the duration of this call,
        // and `data` is the `&mut String` given to it below.
        let (info, out) = unsafe { (&*info, &mut *data.cast::<String>()) };
        let name = if info.dlpi_name.is_null() {
            String::new()
        } else {
            // SAFETY: a non-null dlpi_name is a NUL-terminated string owned by ld.so.
            unsafe { CStr::from_ptr(info.dlpi_name) }
                .to_string_lossy()
                .into_owned()
        };
        let name = if name.is_empty() {
            "main".to_owned()
        } else {
            name
        };
        let phdrs: &[libc::Elf64_Phdr] = if info.dlpi_phdr.is_null() {
            &[]
        } else {
            // SAFETY: dlpi_phdr points to dlpi_phnum program headers (dl_iterate_phdr(3)).
            unsafe { std::slice::from_raw_parts(info.dlpi_phdr, usize::from(info.dlpi_phnum)) }
        };
        for ph in phdrs {
            if ph.p_type == libc::PT_LOAD && ph.p_flags & libc::PF_X != 0 {
                let start = info.dlpi_addr + ph.p_vaddr;
                let end = start + ph.p_memsz;
                let _ = writeln!(out, "module {:x} {start:x} {end:x} {name}", info.dlpi_addr);
            }
        }
        0
    }
    let mut out = String::new();
    // SAFETY: `each` matches dl_iterate_phdr's callback type and only uses `data` as
    // the `String` passed here, which outlives the call.
    unsafe { libc::dl_iterate_phdr(Some(each), (&raw mut out).cast()) };
    out
}

/// `impl` records: where each glibc function the case uses resolves to.
fn impls(case: &Case) -> String {
    let mut out = String::new();
    for name in case.glibc {
        let symbol = std::ffi::CString::new(*name).expect("function names have no NUL");
        let f = libc_fn(&symbol);
        let mut info = std::mem::MaybeUninit::<libc::Dl_info>::zeroed();
        // SAFETY: dladdr writes `info` for any address and returns 0 if it has none.
        let found = unsafe { libc::dladdr(f, info.as_mut_ptr()) } != 0;
        // SAFETY: zero-initialised, and filled by dladdr when `found`.
        let info = unsafe { info.assume_init() };
        let site = if found && !info.dli_fname.is_null() {
            // SAFETY: dladdr's dli_fname is a NUL-terminated string owned by ld.so.
            let file = unsafe { CStr::from_ptr(info.dli_fname) }.to_string_lossy();
            let file = file.rsplit('/').next().unwrap_or_default().to_owned();
            format!("{file}+{:#x}", f as u64 - info.dli_fbase as u64)
        } else {
            format!("?{:#x}", f as u64)
        };
        let _ = writeln!(out, "impl {name} {site}");
    }
    out
}

fn buffer_record(name: &str, buf: Buf) -> String {
    let start = buf.ptr as u64;
    let data_pages = buf.len.max(1).div_ceil(PAGE) * PAGE;
    let span_start = start + buf.len as u64 - data_pages as u64 - PAGE as u64;
    let span_end = start + buf.len as u64 + PAGE as u64;
    format!(
        "buffer {name} {} {start:x} {span_start:x} {span_end:x}\n",
        buf.len
    )
}

/// `contents` records: an FNV-1a hash of each buffer's bytes after the call (cheap,
/// since the plain mode computes it under lackey after the call).
fn contents(case: &Case, bufs: &[Buf]) -> String {
    /// FNV-1a 64-bit offset basis and prime (Fowler–Noll–Vo, IETF draft-eastlake-fnv).
    const FNV_OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
    const FNV_PRIME: u64 = 0x0000_0100_0000_01b3;
    let mut out = String::new();
    for ((name, _), buf) in case.buffers.iter().zip(bufs) {
        match case.contents {
            Contents::Compared => {}
            Contents::HoldsAddresses => {
                let _ = writeln!(out, "contents {name} (holds-addresses)");
                continue;
            }
            Contents::CpuState => {
                let _ = writeln!(out, "contents {name} (cpu-state-image)");
                continue;
            }
        }
        let bytes = buf.bytes();
        let mut hash = FNV_OFFSET;
        let mut i = 0;
        while i < bytes.len() {
            hash = (hash ^ u64::from(bytes[i])).wrapping_mul(FNV_PRIME);
            i += 1;
        }
        let _ = writeln!(out, "contents {name} fnv1a:{hash:016x}");
    }
    out
}

/// Traces the case's call and prints its accesses.
fn traced(case: &Case) -> String {
    let mut t = Tracer::new(format!("oracle {}", case.name));
    t.allow_unsupported(true);
    let mut buffers: Vec<_> = case
        .buffers
        .iter()
        .map(|(name, len)| t.buffer(name, *len))
        .collect();
    let bufs: Vec<Buf> = buffers
        .iter_mut()
        .map(|b| Buf {
            ptr: b.as_mut_ptr(),
            len: b.len(),
        })
        .collect();
    (case.setup)(&bufs);
    let call = case.call;
    let (result, trace) = t.call(|| call(&bufs));
    let mut out = impls(case);
    for ((name, _), buf) in case.buffers.iter().zip(&bufs) {
        out += &buffer_record(name, *buf);
    }
    for a in trace.accesses() {
        let kind = match a.kind {
            AccessKind::Read => "R",
            AccessKind::Write => "W",
            AccessKind::MaybeWrite => "MW",
        };
        let region = a
            .region
            .and_then(|id| trace.region(&id))
            .map_or("?", |d| d.name.as_str());
        let _ = writeln!(
            out,
            "access {kind} {region} {} {} {:x}",
            a.offset, a.len, a.ip
        );
    }
    for u in trace.unsupported() {
        let _ = writeln!(
            out,
            "unsupported {:x} {} {} | {}",
            u.ip, u.count, u.insn, u.reason
        );
    }
    let _ = writeln!(out, "result {result}");
    out += &contents(case, &bufs);
    out += &modules();
    drop(buffers);
    out
}

/// Maps `len` bytes of anonymous read-write memory.
fn map(len: usize) -> *mut u8 {
    // SAFETY: an anonymous private mapping at an address of the kernel's choosing.
    let p = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            len,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
            -1,
            0,
        )
    };
    assert!(
        p != libc::MAP_FAILED,
        "mmap of {len} bytes failed: {}",
        std::io::Error::last_os_error()
    );
    p.cast()
}

/// Runs the case's call untraced between two marker loads and prints the layout.
///
/// Lackey logs every access of the whole process, so everything that can be done
/// before the begin marker is (the records are formatted then), and the little done
/// after the end marker is cheap: the log stays small and the run short.
fn plain(case: &Case) -> String {
    let bufs: Vec<Buf> = case
        .buffers
        .iter()
        .map(|(_, len)| {
            let data_pages = len.max(&1).div_ceil(PAGE) * PAGE;
            let span = map(data_pages + 2 * PAGE);
            Buf {
                ptr: span.wrapping_add(PAGE + data_pages - len),
                len: *len,
            }
        })
        .collect();
    (case.setup)(&bufs);
    let marker = map(PAGE);
    let (begin, end) = (marker, marker.wrapping_add(64));
    let mut out = impls(case);
    for ((name, _), buf) in case.buffers.iter().zip(&bufs) {
        out += &buffer_record(name, *buf);
    }
    let _ = writeln!(out, "marker {:x} {:x}", begin as u64, end as u64);
    out += &modules();
    let call = std::hint::black_box(case.call);
    // SAFETY: `begin` is a byte of the page just mapped.
    unsafe { std::ptr::read_volatile(begin) };
    let result = call(&bufs);
    // SAFETY: `end` is a byte of the page just mapped.
    unsafe { std::ptr::read_volatile(end) };
    let _ = writeln!(out, "result {result}");
    out += &contents(case, &bufs);
    out
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let usage = "usage: oracle-driver list | traced <case> | plain <case>";
    let all = cases();
    let find = |name: &str| {
        all.iter().find(|c| c.name == name).unwrap_or_else(|| {
            eprintln!("oracle-driver: no case `{name}`; `oracle-driver list` shows them");
            std::process::exit(2)
        })
    };
    let out = match args.iter().map(String::as_str).collect::<Vec<_>>()[..] {
        ["list"] => all.iter().map(|c| format!("{}\n", c.name)).collect(),
        [mode @ ("traced" | "plain"), name] => {
            let case = find(name);
            if case.needs_avx2 && !avx2_available() {
                "skip this CPU has no AVX2\n".to_owned()
            } else if mode == "traced" {
                traced_ffi::start_supervisor_or_exit();
                traced(case)
            } else {
                plain(case)
            }
        }
        _ => {
            eprintln!("{usage}");
            return ExitCode::from(2);
        }
    };
    print!("{out}");
    ExitCode::SUCCESS
}

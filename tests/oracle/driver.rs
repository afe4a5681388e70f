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
    /// The buffers hold addresses after setup, so their contents differ between runs.
    holds_addresses: bool,
    /// Fills the buffers before the call (not traced).
    setup: fn(&[Buf]),
    /// The call, on the buffers; returns something address-free.
    call: fn(&[Buf]) -> u64,
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
                holds_addresses: false,
                setup: no_setup,
                // SAFETY: buf holds 24 >= 20 bytes.
                call: |b| done(unsafe { l::fill_bytes(b[0].ptr, 20, 0xab) }),
            },
            Case {
                name: name("sum_bytes"),
                buffers: vec![("buf", 24)],
                glibc: &[],
                needs_avx2: false,
                holds_addresses: false,
                setup: |b| b[0].fill(&pattern(24, 3)),
                // SAFETY: buf holds 24 >= 20 bytes.
                call: |b| unsafe { l::sum_bytes(b[0].ptr, 20) }.into(),
            },
            Case {
                name: name("fill_u32"),
                buffers: vec![("words", 28)],
                glibc: &[],
                needs_avx2: false,
                holds_addresses: false,
                setup: no_setup,
                // SAFETY: 28 bytes hold 7 >= 6 u32s, 4-aligned (page-aligned end).
                call: |b| done(unsafe { l::fill_u32(b[0].ptr.cast(), 6, 0x0102_0304) }),
            },
            Case {
                name: name("sum_u32"),
                buffers: vec![("words", 20)],
                glibc: &[],
                needs_avx2: false,
                holds_addresses: false,
                setup: |b| b[0].fill(&pattern(20, 9)),
                // SAFETY: 20 bytes hold 5 u32s, 4-aligned (page-aligned end).
                call: |b| unsafe { l::sum_u32(b[0].ptr.cast(), 5) }.into(),
            },
            Case {
                name: name("copy_bytes"),
                buffers: vec![("src", 24), ("dst", 24)],
                glibc: &[],
                needs_avx2: false,
                holds_addresses: false,
                setup: |b| b[0].fill(&pattern(24, 40)),
                // SAFETY: both hold 24 >= 20 bytes.
                call: |b| done(unsafe { l::copy_bytes(b[1].ptr, b[0].ptr, 20) }),
            },
            Case {
                name: name("fill_one_past_end"),
                buffers: vec![("buf", 8)],
                glibc: &[],
                needs_avx2: false,
                holds_addresses: false,
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
                holds_addresses: false,
                setup: |b| b[0].fill(&pattern(8, 5)),
                // SAFETY: buf[-1] is in buf's redzone, part of its span (see Buf).
                call: |b| unsafe { l::sum_from_minus_one(b[0].ptr, 8) }.into(),
            },
            Case {
                name: name("fill_all_but_last"),
                buffers: vec![("buf", 8)],
                glibc: &[],
                needs_avx2: false,
                holds_addresses: false,
                setup: no_setup,
                // SAFETY: buf holds 8 bytes.
                call: |b| done(unsafe { l::fill_all_but_last(b[0].ptr, 8, 0xee) }),
            },
            Case {
                name: name("init_triple_skip_middle"),
                buffers: vec![("triple", 12)],
                glibc: &[],
                needs_avx2: false,
                holds_addresses: false,
                setup: no_setup,
                // SAFETY: 12 bytes, 4-aligned: one Triple.
                call: |b| done(unsafe { l::init_triple_skip_middle(b[0].ptr.cast()) }),
            },
            Case {
                name: name("sum_list"),
                buffers: vec![("head", 16), ("tail", 16)],
                glibc: &[],
                needs_avx2: false,
                holds_addresses: true,
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
                holds_addresses: false,
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
                holds_addresses: false,
                setup: |b| b[0].fill(&pattern(16, 11)),
                // SAFETY: both hold 16 bytes.
                call: |b| done(unsafe { l::copy16_sse(b[1].ptr, b[0].ptr) }),
            },
            Case {
                name: name("copy32_avx"),
                buffers: vec![("src", 32), ("dst", 32)],
                glibc: &[],
                needs_avx2: true,
                holds_addresses: false,
                setup: |b| b[0].fill(&pattern(32, 13)),
                // SAFETY: both hold 32 bytes; AVX2 is checked before any call.
                call: |b| done(unsafe { l::copy32_avx(b[1].ptr, b[0].ptr) }),
            },
            Case {
                name: name("add8_i32_avx2"),
                buffers: vec![("a", 32), ("b", 32), ("dst", 32)],
                glibc: &[],
                needs_avx2: true,
                holds_addresses: false,
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
        holds_addresses: false,
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

fn cases() -> Vec<Case> {
    let mut all = fixture_cases!(o0);
    all.extend(fixture_cases!(o2));
    all.push(Case {
        name: "preserve_state_check".to_owned(),
        buffers: vec![("buf", 64)],
        glibc: &[],
        needs_avx2: true,
        holds_addresses: false,
        setup: |b| b[0].fill(&pattern(64, 33)),
        // SAFETY: buf holds 64 bytes; AVX2 is checked before any call.
        call: |b| unsafe { preserve_state_check(b[0].ptr, 64) },
    });
    all.extend(glibc_cases());
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
        if case.holds_addresses {
            let _ = writeln!(out, "contents {name} (holds-addresses)");
            continue;
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

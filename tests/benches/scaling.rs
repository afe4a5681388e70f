//! The scaling table: realistic workloads at realistic sizes, each timed
//! natively, traced (with the code cache, and for the small sizes without
//! it) and under valgrind memcheck as a whole process, with the accesses,
//! stops and trace memory per access of the traced run.
//!
//! zlib, lz4 and zstd are opened with `dlopen` (`libz.so.1`, `liblz4.so.1`,
//! `libzstd.so.1`): a library that is not installed skips its rows.

use std::ffi::{CStr, c_int, c_uint, c_ulong, c_void};
use std::time::{Duration, Instant};

use traced_ffi::{Trace, Tracer};
use traced_ffi_fixtures::{o0, o2};

use crate::baseline;

/// A workload: a name for `--native`, its bytes, and what it runs.
pub struct Workload {
    pub name: &'static str,
    pub bytes: usize,
    pub what: &'static str,
}

pub const WORKLOADS: &[Workload] = &[
    Workload {
        name: "copy_o2_64k",
        bytes: 64 << 10,
        what: "byte copy loop -O2, 64 KiB",
    },
    Workload {
        name: "copy_o2_256k",
        bytes: 256 << 10,
        what: "byte copy loop -O2, 256 KiB",
    },
    Workload {
        name: "copy_o2_1m",
        bytes: 1 << 20,
        what: "byte copy loop -O2, 1 MiB",
    },
    Workload {
        name: "copy_o0_256k",
        bytes: 256 << 10,
        what: "byte copy loop -O0, 256 KiB",
    },
    Workload {
        name: "memcpy_1m",
        bytes: 1 << 20,
        what: "glibc memcpy, 1 MiB",
    },
    Workload {
        name: "qsort_64ki",
        bytes: 256 << 10,
        what: "glibc qsort, 64 Ki ints",
    },
    Workload {
        name: "crc32_1m",
        bytes: 1 << 20,
        what: "zlib crc32, 1 MiB",
    },
    Workload {
        name: "uncompress_256k",
        bytes: 256 << 10,
        what: "zlib uncompress, 256 KiB",
    },
    Workload {
        name: "lz4_compress_256k",
        bytes: 256 << 10,
        what: "lz4 compress, 256 KiB",
    },
    Workload {
        name: "lz4_decompress_256k",
        bytes: 256 << 10,
        what: "lz4 decompress, 256 KiB",
    },
    Workload {
        name: "zstd_compress_256k",
        bytes: 256 << 10,
        what: "zstd compress -1, 256 KiB",
    },
    Workload {
        name: "zstd_decompress_256k",
        bytes: 256 << 10,
        what: "zstd decompress, 256 KiB",
    },
];

/// Compressible input: words from a small vocabulary, like text.
fn input(n: usize) -> Vec<u8> {
    let words: [&[u8]; 8] = [
        b"trace ", b"buffer ", b"native ", b"access ", b"memory ", b"read ", b"write ", b"call ",
    ];
    let mut out = Vec::with_capacity(n);
    let mut x: u32 = 12345;
    while out.len() < n {
        x = x.wrapping_mul(1_103_515_245).wrapping_add(12345);
        out.extend_from_slice(words[(x >> 16) as usize % words.len()]);
    }
    out.truncate(n);
    out
}

/// A symbol of a shared library, opened once per call of `sym`.
fn sym(lib: &CStr, name: &CStr) -> Option<*mut c_void> {
    // SAFETY: dlopen with a valid C string; the library stays loaded.
    let handle = unsafe { libc::dlopen(lib.as_ptr(), libc::RTLD_NOW) };
    if handle.is_null() {
        return None;
    }
    // SAFETY: dlsym with a handle from dlopen and a valid C string.
    let p = unsafe { libc::dlsym(handle, name.as_ptr()) };
    (!p.is_null()).then_some(p)
}

type Crc32 = unsafe extern "C" fn(c_ulong, *const u8, c_uint) -> c_ulong;
type Compress2 = unsafe extern "C" fn(*mut u8, *mut c_ulong, *const u8, c_ulong, c_int) -> c_int;
type Uncompress = unsafe extern "C" fn(*mut u8, *mut c_ulong, *const u8, c_ulong) -> c_int;
type Lz4Compress = unsafe extern "C" fn(*const u8, *mut u8, c_int, c_int) -> c_int;
type Lz4Decompress = unsafe extern "C" fn(*const u8, *mut u8, c_int, c_int) -> c_int;
type ZstdCompress = unsafe extern "C" fn(*mut u8, usize, *const u8, usize, c_int) -> usize;
type ZstdDecompress = unsafe extern "C" fn(*mut u8, usize, *const u8, usize) -> usize;

/// Casts a symbol to its function type.
///
/// # Safety
/// `F` must be the symbol's real signature.
unsafe fn func<F: Copy>(p: *mut c_void) -> F {
    // SAFETY: the caller vouches for the signature; F is a function pointer.
    unsafe { std::mem::transmute_copy(&p) }
}

extern "C" fn cmp_i32(a: *const c_void, b: *const c_void) -> c_int {
    // SAFETY: qsort passes pointers to two elements of the i32 array.
    let (a, b) = unsafe { (*a.cast::<i32>(), *b.cast::<i32>()) };
    a.cmp(&b) as c_int
}

/// One prepared run of a workload: the source and destination, and the
/// work on them. `run(dst, src)` is what is timed and traced.
pub struct Prepared {
    pub src: Vec<u8>,
    pub dst_len: usize,
    pub run: Box<dyn Fn(*mut u8, *const u8)>,
}

/// Prepares workload `name`, or `None` if its library is missing.
pub fn prepare(name: &str) -> Option<Prepared> {
    let w = WORKLOADS.iter().find(|w| w.name == name)?;
    let n = w.bytes;
    let plain = input(n);
    let prepared = match name {
        "copy_o2_64k" | "copy_o2_256k" | "copy_o2_1m" => Prepared {
            src: plain,
            dst_len: n,
            // SAFETY: dst and src hold n bytes (dst_len, src).
            run: Box::new(move |d, s| unsafe { o2::copy_bytes(d, s, n) }),
        },
        "copy_o0_256k" => Prepared {
            src: plain,
            dst_len: n,
            // SAFETY: as above.
            run: Box::new(move |d, s| unsafe { o0::copy_bytes(d, s, n) }),
        },
        "memcpy_1m" => {
            let memcpy = std::hint::black_box(libc::memcpy);
            Prepared {
                src: plain,
                dst_len: n,
                // SAFETY: as above, and they do not overlap.
                run: Box::new(move |d, s| unsafe {
                    memcpy(d.cast(), s.cast(), n);
                }),
            }
        }
        "qsort_64ki" => Prepared {
            src: Vec::new(),
            dst_len: n,
            run: Box::new(move |d, _| {
                let ints = n / 4;
                // SAFETY: dst holds `ints` i32s, 4-aligned (a buffer's start).
                let v = unsafe { std::slice::from_raw_parts_mut(d.cast::<i32>(), ints) };
                let mut x: u32 = 7;
                for e in v.iter_mut() {
                    x = x.wrapping_mul(1_103_515_245).wrapping_add(12345);
                    *e = (x >> 1) as i32;
                }
                // SAFETY: qsort of `ints` i32s with a matching comparator.
                unsafe { libc::qsort(d.cast(), ints, 4, Some(cmp_i32)) };
            }),
        },
        "crc32_1m" => {
            // SAFETY: zlib's crc32(uLong, const Bytef *, uInt).
            let crc32: Crc32 = unsafe { func(sym(c"libz.so.1", c"crc32")?) };
            Prepared {
                src: plain,
                dst_len: 8,
                run: Box::new(move |d, s| {
                    // SAFETY: src holds n bytes; dst 8.
                    let c = unsafe { crc32(0, s, n as c_uint) };
                    // SAFETY: dst holds 8 bytes.
                    unsafe { d.cast::<u64>().write_unaligned(c as u64) };
                }),
            }
        }
        "uncompress_256k" => {
            // SAFETY: zlib's compress2 and uncompress signatures.
            let compress2: Compress2 = unsafe { func(sym(c"libz.so.1", c"compress2")?) };
            // SAFETY: as above.
            let uncompress: Uncompress = unsafe { func(sym(c"libz.so.1", c"uncompress")?) };
            let mut packed = vec![0u8; n + n / 100 + 64];
            let mut len = packed.len() as c_ulong;
            // SAFETY: the buffers hold the lengths given.
            unsafe {
                compress2(
                    packed.as_mut_ptr(),
                    &mut len,
                    plain.as_ptr(),
                    n as c_ulong,
                    6,
                )
            };
            packed.truncate(len as usize);
            let packed_len = packed.len();
            Prepared {
                src: packed,
                dst_len: n,
                run: Box::new(move |d, s| {
                    let mut out = n as c_ulong;
                    // SAFETY: dst holds n bytes, src packed_len.
                    unsafe { uncompress(d, &mut out, s, packed_len as c_ulong) };
                }),
            }
        }
        "lz4_compress_256k" | "lz4_decompress_256k" => {
            // SAFETY: LZ4_compress_default(const char*, char*, int, int).
            let compress: Lz4Compress =
                unsafe { func(sym(c"liblz4.so.1", c"LZ4_compress_default")?) };
            // SAFETY: LZ4_decompress_safe(const char*, char*, int, int).
            let decompress: Lz4Decompress =
                unsafe { func(sym(c"liblz4.so.1", c"LZ4_decompress_safe")?) };
            let bound = n + n / 255 + 16;
            if name == "lz4_compress_256k" {
                Prepared {
                    src: plain,
                    dst_len: bound,
                    // SAFETY: src holds n bytes, dst bound.
                    run: Box::new(move |d, s| unsafe {
                        compress(s, d, n as c_int, bound as c_int);
                    }),
                }
            } else {
                let mut packed = vec![0u8; bound];
                // SAFETY: as above.
                let len = unsafe {
                    compress(
                        plain.as_ptr(),
                        packed.as_mut_ptr(),
                        n as c_int,
                        bound as c_int,
                    )
                };
                packed.truncate(len.max(0) as usize);
                let packed_len = packed.len();
                Prepared {
                    src: packed,
                    dst_len: n,
                    // SAFETY: src holds packed_len bytes, dst n.
                    run: Box::new(move |d, s| unsafe {
                        decompress(s, d, packed_len as c_int, n as c_int);
                    }),
                }
            }
        }
        "zstd_compress_256k" | "zstd_decompress_256k" => {
            // SAFETY: ZSTD_compress(void*, size_t, const void*, size_t, int).
            let compress: ZstdCompress = unsafe { func(sym(c"libzstd.so.1", c"ZSTD_compress")?) };
            // SAFETY: ZSTD_decompress(void*, size_t, const void*, size_t).
            let decompress: ZstdDecompress =
                unsafe { func(sym(c"libzstd.so.1", c"ZSTD_decompress")?) };
            let bound = n + n / 128 + 1024;
            if name == "zstd_compress_256k" {
                Prepared {
                    src: plain,
                    dst_len: bound,
                    // SAFETY: src holds n bytes, dst bound.
                    run: Box::new(move |d, s| unsafe {
                        compress(d, bound, s, n, 1);
                    }),
                }
            } else {
                let mut packed = vec![0u8; bound];
                // SAFETY: as above.
                let len = unsafe { compress(packed.as_mut_ptr(), bound, plain.as_ptr(), n, 1) };
                packed.truncate(len.min(bound));
                let packed_len = packed.len();
                Prepared {
                    src: packed,
                    dst_len: n,
                    // SAFETY: src holds packed_len bytes, dst n.
                    run: Box::new(move |d, s| unsafe {
                        decompress(d, n, s, packed_len);
                    }),
                }
            }
        }
        _ => return None,
    };
    Some(prepared)
}

/// Runs workload `name` natively once (the `--native` mode, for memcheck).
pub fn run_native(name: &str) -> bool {
    let Some(p) = prepare(name) else {
        return false;
    };
    let mut dst = vec![0u8; p.dst_len];
    (p.run)(dst.as_mut_ptr(), p.src.as_ptr());
    std::hint::black_box(&dst);
    true
}

/// Bytes a trace holds per access: everything its accesses take on the
/// heap (`Trace::heap_bytes`), in the test process. The trace is not asked
/// for `accesses()`, which would build `Access`es.
fn trace_bytes_per_access(trace: &Trace) -> f64 {
    let n = trace.access_count();
    if n == 0 {
        return 0.0;
    }
    trace.heap_bytes() as f64 / n as f64
}

struct Figures {
    traced: Duration,
    accesses: usize,
    stops: u64,
    entries: u64,
    bytes_per_access: f64,
    heap_bytes: usize,
}

/// Accesses a bounded trace keeps in full (the `bounded` columns).
const KEEP: u64 = 10_000;

fn traced(t: &mut Tracer, p: &Prepared) -> Figures {
    let src = t.buffer_from("src", if p.src.is_empty() { &[0] } else { &p.src });
    let mut dst = t.buffer("dst", p.dst_len);
    let (d, s) = (dst.as_mut_ptr(), src.as_ptr());
    let start = Instant::now();
    let ((), trace) = t.call(|| (p.run)(d, s));
    let traced = start.elapsed();
    let s = trace.stats();
    Figures {
        traced,
        accesses: trace.access_count(),
        stops: s.stops,
        entries: s.cache_entries,
        bytes_per_access: trace_bytes_per_access(&trace),
        heap_bytes: trace.heap_bytes(),
    }
}

fn native(p: &Prepared) -> Duration {
    let mut dst = vec![0u8; p.dst_len];
    let mut times: Vec<Duration> = (0..3)
        .map(|_| {
            let start = Instant::now();
            (p.run)(dst.as_mut_ptr(), p.src.as_ptr());
            start.elapsed()
        })
        .collect();
    times.sort();
    times[1]
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

/// Prints the scaling table: the workloads whose text contains `only`.
/// `without_cache` also traces each workload of at most that many bytes
/// with the code cache off.
pub fn table(t: &mut Tracer, memcheck: bool, without_cache: usize, only: &str) {
    println!("scaling: whole traced call (code cache on), native call, memcheck whole process");
    println!(
        "{:<30} {:>10} {:>11} {:>11} {:>11} {:>10} {:>8} {:>8} {:>9} {:>10} {:>10} {:>11}",
        "workload",
        "native ms",
        "traced ms",
        "no cache ms",
        "memcheck ms",
        "accesses",
        "stops",
        "entries",
        "B/access",
        "trace KiB",
        "bounded ms",
        "bounded KiB"
    );
    for w in WORKLOADS.iter().filter(|w| w.what.contains(only)) {
        let Some(p) = prepare(w.name) else {
            println!("{:<30} skipped: library not installed", w.what);
            continue;
        };
        let native = native(&p);
        t.use_code_cache(true);
        let f = traced(t, &p);
        t.keep_accesses(Some(KEEP));
        let b = traced(t, &p);
        t.keep_accesses(None);
        let no_cache = if w.bytes <= without_cache {
            t.use_code_cache(false);
            let g = traced(t, &p);
            t.use_code_cache(true);
            format!("{:>11.1}", ms(g.traced))
        } else {
            format!("{:>11}", "-")
        };
        let vg = if memcheck {
            baseline::memcheck(w.name, 1).map_or_else(
                || format!("{:>11}", "-"),
                |(vg, _)| format!("{:>11.1}", ms(vg)),
            )
        } else {
            format!("{:>11}", "-")
        };
        println!(
            "{:<30} {:>10.2} {:>11.1} {no_cache} {vg} {:>10} {:>8} {:>8} {:>9.0} {:>10} {:>10.1} {:>11}",
            w.what,
            ms(native),
            ms(f.traced),
            f.accesses,
            f.stops,
            f.entries,
            f.bytes_per_access,
            f.heap_bytes >> 10,
            ms(b.traced),
            b.heap_bytes >> 10
        );
    }
}

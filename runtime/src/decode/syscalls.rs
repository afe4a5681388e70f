//! What a system call reads and writes in user memory, from its arguments
//! (the ranges to open before it runs) and its result (the accesses to
//! record after). x86-64 numbers; the layouts are the kernel's UAPI ones.

use crate::trace::event::AccessKind;

/// Reads tracee memory at an address into a buffer; returns the bytes read.
pub(crate) type ReadMem<'a> = &'a dyn Fn(u64, &mut [u8]) -> usize;

/// One range the kernel read or wrote.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Effect {
    pub(crate) addr: u64,
    pub(crate) len: u64,
    pub(crate) kind: AccessKind,
}

/// How many bytes an argument's buffer has.
#[derive(Debug, Clone, Copy)]
enum Size {
    Fixed(u64),
    /// The value of argument `i`.
    Arg(usize),
    /// `n` times the value of argument `i`.
    ArgTimes(usize, u64),
    /// The result, at most argument `i` (the buffer's size).
    Ret(usize),
    /// A NUL-terminated string (its length plus one).
    Str,
    /// The `u32` that argument `i` points to, read after the call (a
    /// socket address length).
    U32After(usize),
}

/// One pointer argument.
#[derive(Debug, Clone, Copy)]
enum Ptr {
    In(usize, Size),
    Out(usize, Size),
    /// Read and written back (e.g. `*addrlen`).
    InOut(usize, Size),
    /// An `iovec` array at argument `i` with argument `n` entries.
    Iov {
        iov: usize,
        cnt: usize,
        out: bool,
    },
    /// A `msghdr` at argument `i`.
    Msg {
        at: usize,
        out: bool,
    },
    /// An array of `mmsghdr` at argument `at` with argument `cnt` entries.
    MMsg {
        at: usize,
        cnt: usize,
        out: bool,
    },
}

struct Desc {
    name: &'static str,
    ptrs: &'static [Ptr],
}

/// `stat` (and `fstat`, `newfstatat`) out-struct size on x86-64.
const STAT_SIZE: u64 = 144;
/// `struct statx` size.
const STATX_SIZE: u64 = 256;
/// `struct timespec`.
const TIMESPEC: u64 = 16;
/// `struct msghdr` on x86-64.
const MSGHDR_SIZE: u64 = 56;
/// `struct mmsghdr` on x86-64: a `msghdr`, the `msg_len` the kernel sets, padding.
const MMSGHDR_SIZE: u64 = 64;
/// `struct utsname`.
const UTSNAME_SIZE: u64 = 390;
/// Longest string read for a path.
const MAX_STR: usize = 4096;

fn desc(nr: u64) -> Option<Desc> {
    use Ptr::{In, InOut, Iov, MMsg, Msg, Out};
    use Size::{Arg, ArgTimes, Fixed, Ret, Str, U32After};
    let d = |name, ptrs| Some(Desc { name, ptrs });
    match nr {
        0 => d("read", &[Out(1, Ret(2))]),
        // Calls on the address space, not on the bytes in it.
        9 => d("mmap", &[]),
        10 => d("mprotect", &[]),
        11 => d("munmap", &[]),
        25 => d("mremap", &[]),
        26 => d("msync", &[]),
        28 => d("madvise", &[]),
        149 => d("mlock", &[]),
        150 => d("munlock", &[]),
        1 => d("write", &[In(1, Ret(2))]),
        2 => d("open", &[In(0, Str)]),
        4 => d("stat", &[In(0, Str), Out(1, Fixed(STAT_SIZE))]),
        5 => d("fstat", &[Out(1, Fixed(STAT_SIZE))]),
        6 => d("lstat", &[In(0, Str), Out(1, Fixed(STAT_SIZE))]),
        7 => d("poll", &[InOut(0, ArgTimes(1, 8))]),
        17 => d("pread64", &[Out(1, Ret(2))]),
        18 => d("pwrite64", &[In(1, Ret(2))]),
        19 => d(
            "readv",
            &[Iov {
                iov: 1,
                cnt: 2,
                out: true,
            }],
        ),
        20 => d(
            "writev",
            &[Iov {
                iov: 1,
                cnt: 2,
                out: false,
            }],
        ),
        21 => d("access", &[In(0, Str)]),
        22 => d("pipe", &[Out(0, Fixed(8))]),
        39 => d("getpid", &[]),
        44 => d("sendto", &[In(1, Ret(2)), In(4, Arg(5))]),
        45 => d(
            "recvfrom",
            &[Out(1, Ret(2)), InOut(5, Fixed(4)), Out(4, U32After(5))],
        ),
        46 => d("sendmsg", &[Msg { at: 1, out: false }]),
        47 => d("recvmsg", &[Msg { at: 1, out: true }]),
        299 => d(
            "recvmmsg",
            &[MMsg {
                at: 1,
                cnt: 2,
                out: true,
            }],
        ),
        307 => d(
            "sendmmsg",
            &[MMsg {
                at: 1,
                cnt: 2,
                out: false,
            }],
        ),
        63 => d("uname", &[Out(0, Fixed(UTSNAME_SIZE))]),
        79 => d("getcwd", &[Out(0, Ret(1))]),
        83 => d("mkdir", &[In(0, Str)]),
        87 => d("unlink", &[In(0, Str)]),
        89 => d("readlink", &[In(0, Str), Out(1, Ret(2))]),
        96 => d("gettimeofday", &[Out(0, Fixed(16))]),
        201 => d("time", &[Out(0, Fixed(8))]),
        228 => d("clock_gettime", &[Out(1, Fixed(TIMESPEC))]),
        229 => d("clock_getres", &[Out(1, Fixed(TIMESPEC))]),
        257 => d("openat", &[In(1, Str)]),
        258 => d("mkdirat", &[In(1, Str)]),
        262 => d("newfstatat", &[In(1, Str), Out(2, Fixed(STAT_SIZE))]),
        263 => d("unlinkat", &[In(1, Str)]),
        267 => d("readlinkat", &[In(1, Str), Out(2, Ret(3))]),
        269 => d("faccessat", &[In(1, Str)]),
        293 => d("pipe2", &[Out(0, Fixed(8))]),
        295 => d(
            "preadv",
            &[Iov {
                iov: 1,
                cnt: 2,
                out: true,
            }],
        ),
        296 => d(
            "pwritev",
            &[Iov {
                iov: 1,
                cnt: 2,
                out: false,
            }],
        ),
        318 => d("getrandom", &[Out(0, Ret(1))]),
        327 => d(
            "preadv2",
            &[Iov {
                iov: 1,
                cnt: 2,
                out: true,
            }],
        ),
        328 => d(
            "pwritev2",
            &[Iov {
                iov: 1,
                cnt: 2,
                out: false,
            }],
        ),
        332 => d("statx", &[In(1, Str), Out(4, Fixed(STATX_SIZE))]),
        439 => d("faccessat2", &[In(1, Str)]),
        _ => None,
    }
}

/// `futex` operations whose memory effect is known: WAIT reads the word,
/// WAKE touches no memory.
fn futex_ptrs(op: u64) -> Option<&'static [Ptr]> {
    const FUTEX_CMD_MASK: u64 = !(128 | 256);
    match op & FUTEX_CMD_MASK {
        0 | 9 => Some(&[Ptr::In(0, Size::Fixed(4))]),
        1 | 10 => Some(&[]),
        _ => None,
    }
}

const FUTEX: u64 = 202;

/// The kernel's name of system call `nr` (every x86-64 call has one).
pub(crate) fn name(nr: u64) -> Option<&'static str> {
    crate::decode::syscall_table::name(nr).or_else(|| desc(nr).map(|d| d.name))
}

fn ptrs_of(nr: u64, args: &[u64; 6]) -> Option<&'static [Ptr]> {
    if nr == FUTEX {
        return futex_ptrs(args[1]);
    }
    desc(nr).map(|d| d.ptrs)
}

fn read_u64(mem: ReadMem<'_>, addr: u64) -> u64 {
    let mut b = [0u8; 8];
    if mem(addr, &mut b) == 8 {
        u64::from_le_bytes(b)
    } else {
        0
    }
}

fn read_u32(mem: ReadMem<'_>, addr: u64) -> u64 {
    let mut b = [0u8; 4];
    if mem(addr, &mut b) == 4 {
        u64::from(u32::from_le_bytes(b))
    } else {
        0
    }
}

fn strlen_plus_one(mem: ReadMem<'_>, addr: u64) -> u64 {
    let mut buf = vec![0u8; MAX_STR];
    let n = mem(addr, &mut buf);
    buf.get(..n)
        .and_then(|b| b.iter().position(|&c| c == 0))
        .map_or(n as u64, |i| i as u64 + 1)
}

/// The `(base, len)` entries of an iovec array.
fn iovecs(mem: ReadMem<'_>, at: u64, count: u64) -> Vec<(u64, u64)> {
    (0..count.min(1024))
        .map(|i| {
            let e = at + 16 * i;
            (read_u64(mem, e), read_u64(mem, e + 8))
        })
        .collect()
}

/// Collects effects in the kernel's order: reads first, then writes.
#[derive(Default)]
struct Collect {
    reads: Vec<Effect>,
    writes: Vec<Effect>,
}

impl Collect {
    fn add(&mut self, addr: u64, len: u64, kind: AccessKind) {
        if addr == 0 || len == 0 {
            return;
        }
        let e = Effect { addr, len, kind };
        match kind {
            AccessKind::Read => self.reads.push(e),
            _ => self.writes.push(e),
        }
    }

    /// Segments of an iovec array covering `total` bytes (all of them if
    /// `total` is `None`).
    fn segments(&mut self, iov: &[(u64, u64)], total: Option<u64>, kind: AccessKind) {
        let mut left = total.unwrap_or(u64::MAX);
        for &(base, len) in iov {
            let n = len.min(left);
            self.add(base, n, kind);
            left -= n;
            if left == 0 {
                break;
            }
        }
    }

    fn done(mut self) -> Vec<Effect> {
        self.reads.append(&mut self.writes);
        self.reads
    }
}

/// The system call's memory effects. `ret` is `None` before it runs: then
/// every range it may touch (its reach); `Some(result)` after: what it did.
/// `None` if the tracer does not know the call.
pub(crate) fn effects(
    nr: u64,
    args: &[u64; 6],
    ret: Option<i64>,
    mem: ReadMem<'_>,
) -> Option<Vec<Effect>> {
    let ptrs = ptrs_of(nr, args)?;
    let ok = ret.is_none_or(|r| r >= 0);
    // The byte count a result gives (the maximum before the call).
    let counted = |max: u64| match ret {
        None => max,
        Some(r) => (r.max(0) as u64).min(max),
    };
    let mut c = Collect::default();
    for p in ptrs {
        let size = |s: Size, at: u64| -> u64 {
            match s {
                Size::Fixed(n) => n,
                Size::Arg(i) => args[i],
                Size::ArgTimes(i, n) => args[i].saturating_mul(n),
                Size::Ret(i) => counted(args[i]),
                Size::Str => strlen_plus_one(mem, at),
                Size::U32After(i) => read_u32(mem, args[i]),
            }
        };
        match *p {
            Ptr::In(i, s) => c.add(args[i], size(s, args[i]), AccessKind::Read),
            Ptr::Out(i, s) => {
                // Fixed-size results are written only on success.
                if ok || matches!(s, Size::Ret(_)) {
                    c.add(args[i], size(s, args[i]), AccessKind::Write);
                }
            }
            Ptr::InOut(i, s) => {
                let n = size(s, args[i]);
                c.add(args[i], n, AccessKind::Read);
                if ok {
                    c.add(args[i], n, AccessKind::Write);
                }
            }
            Ptr::Iov { iov, cnt, out } => {
                c.add(args[iov], 16 * args[cnt].min(1024), AccessKind::Read);
                let v = iovecs(mem, args[iov], args[cnt]);
                let total = ret.map(|r| r.max(0) as u64);
                let kind = if out {
                    AccessKind::Write
                } else {
                    AccessKind::Read
                };
                c.segments(&v, total, kind);
            }
            Ptr::Msg { at, out } => msg_effects(&mut c, mem, args[at], out, ret),
            Ptr::MMsg { at, cnt, out } => {
                let n = args[cnt].min(1024);
                // Before the call, every message; after, those it handled (the
                // result), each with the length it set in `msg_len`.
                let done = ret.map_or(n, |r| (r.max(0) as u64).min(n));
                for i in 0..done {
                    let hdr = args[at] + MMSGHDR_SIZE * i;
                    let len = ret.map(|_| read_u32(mem, hdr + 56) as i64);
                    msg_effects(&mut c, mem, hdr, out, len);
                    if ret.is_some() {
                        c.add(hdr + 56, 4, AccessKind::Write);
                    }
                }
            }
        }
    }
    Some(c.done())
}

/// `sendmsg`/`recvmsg`: the header, the iovec array, the data, the name
/// and the control buffer; `recvmsg` writes back the lengths and flags.
fn msg_effects(c: &mut Collect, mem: ReadMem<'_>, at: u64, out: bool, ret: Option<i64>) {
    c.add(at, MSGHDR_SIZE, AccessKind::Read);
    let name = read_u64(mem, at);
    let namelen = read_u32(mem, at + 8);
    let iov_at = read_u64(mem, at + 16);
    let iovlen = read_u64(mem, at + 24);
    let control = read_u64(mem, at + 32);
    let controllen = read_u64(mem, at + 40);
    c.add(iov_at, 16 * iovlen.min(1024), AccessKind::Read);
    let v = iovecs(mem, iov_at, iovlen);
    let total = ret.map(|r| r.max(0) as u64);
    if out {
        c.segments(&v, total, AccessKind::Write);
        if ret.is_none() || ret.is_some_and(|r| r >= 0) {
            // After the call the header holds the lengths actually used.
            c.add(name, namelen, AccessKind::Write);
            c.add(control, controllen, AccessKind::Write);
            c.add(at + 8, 4, AccessKind::Write);
            c.add(at + 40, 16, AccessKind::Write);
        }
    } else {
        c.add(name, namelen, AccessKind::Read);
        c.segments(&v, total, AccessKind::Read);
        c.add(control, controllen, AccessKind::Read);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn no_mem(_: u64, _: &mut [u8]) -> usize {
        0
    }

    #[test]
    fn read_may_write_count_bytes_and_wrote_the_result() {
        let args = [3, 0x1000, 4096, 0, 0, 0];
        let before = effects(0, &args, None, &no_mem).expect("known");
        assert_eq!(
            before,
            [Effect {
                addr: 0x1000,
                len: 4096,
                kind: AccessKind::Write
            }]
        );
        let after = effects(0, &args, Some(100), &no_mem).expect("known");
        assert_eq!(after[0].len, 100);
        assert!(
            effects(0, &args, Some(-9), &no_mem)
                .expect("known")
                .is_empty()
        );
    }

    #[test]
    fn writev_reads_the_iovec_array_then_the_segments_the_result_covers() {
        // Two iovecs at 0x100: (0x2000, 10), (0x3000, 20).
        let mem = |addr: u64, buf: &mut [u8]| {
            let table: [u64; 4] = [0x2000, 10, 0x3000, 20];
            let i = ((addr - 0x100) / 8) as usize;
            let v = table.get(i).copied().unwrap_or(0).to_le_bytes();
            buf.copy_from_slice(&v[..buf.len()]);
            buf.len()
        };
        let args = [1, 0x100, 2, 0, 0, 0];
        let e = effects(20, &args, Some(15), &mem).expect("known");
        let got: Vec<(u64, u64)> = e.iter().map(|e| (e.addr, e.len)).collect();
        assert_eq!(got, [(0x100, 32), (0x2000, 10), (0x3000, 5)]);
        assert!(e.iter().all(|e| e.kind == AccessKind::Read));
    }

    #[test]
    fn openat_reads_its_path_and_its_terminator() {
        let mem = |addr: u64, buf: &mut [u8]| {
            let s = b"/tmp/x\0garbage";
            let from = (addr - 0x500) as usize;
            let n = buf.len().min(s.len() - from);
            buf[..n].copy_from_slice(&s[from..from + n]);
            n
        };
        let args = [u64::MAX - 99, 0x500, 0, 0, 0, 0];
        let e = effects(257, &args, Some(3), &mem).expect("known");
        assert_eq!(
            e,
            [Effect {
                addr: 0x500,
                len: 7,
                kind: AccessKind::Read
            }]
        );
    }

    #[test]
    fn unknown_calls_and_futex_operations_are_told_apart() {
        assert!(effects(36, &[0; 6], None, &no_mem).is_none()); // getitimer
        assert_eq!(
            effects(FUTEX, &[0x40, 128, 0, 0, 0, 0], None, &no_mem),
            Some(vec![Effect {
                addr: 0x40,
                len: 4,
                kind: AccessKind::Read
            }])
        );
        assert_eq!(
            effects(FUTEX, &[0x40, 129, 1, 0, 0, 0], None, &no_mem),
            Some(vec![])
        );
    }

    #[test]
    fn every_pointer_the_effects_table_reads_is_an_address_argument_of_the_filter() {
        for nr in 0..=500 {
            let Some(d) = desc(nr) else { continue };
            let mask = crate::decode::syscall_table::address_args(nr);
            for p in d.ptrs {
                let at = match *p {
                    Ptr::In(i, _) | Ptr::Out(i, _) | Ptr::InOut(i, _) => i,
                    Ptr::Iov { iov, .. } => iov,
                    Ptr::Msg { at, .. } | Ptr::MMsg { at, .. } => at,
                };
                assert!(mask & (1 << at) != 0, "{} argument {at}", d.name);
            }
            assert_eq!(name(nr), Some(d.name));
        }
        assert_eq!(crate::decode::syscall_table::address_args(FUTEX), 0b1_1001);
    }
}

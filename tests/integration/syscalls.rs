//! System calls on tracked memory (issue 5, item 1): the kernel's reads and writes of
//! traced buffers are accesses like an instruction's, named by the system call.
//!
//! Each test sets up its pipe, socket pair or temporary file in Rust (untraced), runs
//! one fixture of `traced_ffi_fixtures::syscalls` inside `t.call`, and asserts the
//! exact trace and that the result, and what landed in memory, equal an untraced run.
//! What the tracer records for a system call, and in which order: one access per
//! buffer range the kernel touched, recorded when the call returns, its reads then its
//! writes, in argument order within each, `len` from the result where the result says
//! how much; `insn` is `syscall`, `ip` the `syscall` instruction, `syscall` the
//! kernel's name of the call (which glibc 2.36 picks, checked with `strace -f`: `pipe`
//! is `pipe2`, `open` is `openat`, `stat` and `fstat` are `newfstatat`). A system call
//! the tracer does not know (`getitimer`) runs but makes the trace incomplete.

use std::ffi::{CString, c_int, c_void};
use std::fmt::Write as _;
use std::fs::File;
use std::io::{Read as _, Write as _};
use std::mem::size_of;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::path::PathBuf;

use traced_ffi::{Access, AccessKind, Buffer, Region, RegionId, Trace, Tracer, traced_ffi};
use traced_ffi_fixtures::syscalls as fx;

use crate::check::{current_tid, first_difference, mnemonic, pattern, write_rows};

/// What the kernel stores for `fstat`/`newfstatat`: a whole `struct stat`.
const STAT_SIZE: usize = 144;
/// What `statx` stores: a whole `struct statx`.
const STATX_SIZE: usize = 256;
/// One `struct iovec`.
const IOVEC_SIZE: usize = 16;
/// One `struct msghdr`.
const MSGHDR_SIZE: usize = 56;
/// `getitimer` on x86-64.
const NR_GETITIMER: u64 = 36;

const _: () = assert!(size_of::<libc::stat>() == STAT_SIZE);
const _: () = assert!(size_of::<libc::statx>() == STATX_SIZE);
const _: () = assert!(size_of::<libc::iovec>() == IOVEC_SIZE);
const _: () = assert!(size_of::<libc::msghdr>() == MSGHDR_SIZE);

/// How many of an access's bytes a trace keeps.
const SHOWN_BYTES: usize = 64;

/// Who made an access: the kernel during the named system call, or an instruction
/// (of glibc or the vDSO) with the given mnemonic.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum By {
    Kernel(&'static str),
    Insn(&'static str),
}

/// One expected access; compared with every field of [`Access`] but `ip`, of which
/// only "is a `syscall` instruction" is compared (where glibc's `syscall` is depends on
/// the glibc build).
#[derive(Debug, Clone, PartialEq, Eq)]
struct Want {
    kind: AccessKind,
    region: Option<RegionId>,
    offset: isize,
    len: usize,
    bytes: Vec<u8>,
    syscall: Option<String>,
    mnemonic: String,
    ip_is_syscall: bool,
    tid: i32,
}

impl Want {
    fn new(kind: AccessKind, region: &impl Region, offset: usize, bytes: &[u8], by: By) -> Self {
        let (syscall, mnemonic, ip_is_syscall) = match by {
            By::Kernel(name) => (Some(name.to_owned()), "syscall", true),
            By::Insn(m) => (None, m, false),
        };
        Want {
            kind,
            region: Some(region.region_id()),
            offset: offset as isize,
            len: bytes.len(),
            bytes: bytes[..bytes.len().min(SHOWN_BYTES)].to_vec(),
            syscall,
            mnemonic: mnemonic.to_owned(),
            ip_is_syscall,
            tid: current_tid(),
        }
    }

    /// The kernel read `bytes` at `offset` of `region` during system call `name`.
    fn kernel_read(region: &impl Region, offset: usize, bytes: &[u8], name: &'static str) -> Self {
        Self::new(AccessKind::Read, region, offset, bytes, By::Kernel(name))
    }

    /// The kernel wrote `bytes` at `offset` of `region` during system call `name`.
    fn kernel_write(region: &impl Region, offset: usize, bytes: &[u8], name: &'static str) -> Self {
        Self::new(AccessKind::Write, region, offset, bytes, By::Kernel(name))
    }

    /// An instruction `mnemonic` read `bytes` at `offset` of `region`.
    fn insn_read(
        region: &impl Region,
        offset: usize,
        bytes: &[u8],
        mnemonic: &'static str,
    ) -> Self {
        Self::new(AccessKind::Read, region, offset, bytes, By::Insn(mnemonic))
    }

    /// An instruction `mnemonic` wrote `bytes` at `offset` of `region`.
    fn insn_write(
        region: &impl Region,
        offset: usize,
        bytes: &[u8],
        mnemonic: &'static str,
    ) -> Self {
        Self::new(AccessKind::Write, region, offset, bytes, By::Insn(mnemonic))
    }

    fn actual(a: &Access) -> Self {
        Want {
            kind: a.kind,
            region: a.region,
            offset: a.offset,
            len: a.len,
            bytes: a.bytes.clone(),
            syscall: a.syscall.clone(),
            mnemonic: mnemonic(&a.insn).to_owned(),
            ip_is_syscall: is_syscall_insn(a.ip),
            tid: a.tid,
        }
    }

    fn describe(&self, trace: &Trace) -> String {
        let name = self
            .region
            .and_then(|id| trace.region(&id))
            .map_or("?", |d| d.name.as_str());
        let bytes: Vec<String> = self.bytes.iter().map(|b| format!("{b:02x}")).collect();
        format!(
            "{} {name}[{:#x}..{:#x}] {}B = {} by {:?} ({}, ip at syscall: {}) tid {}",
            self.kind,
            self.offset,
            self.offset + self.len as isize,
            self.len,
            bytes.join(" "),
            self.syscall,
            self.mnemonic,
            self.ip_is_syscall,
            self.tid,
        )
    }
}

/// Whether `ip` is the address of a `syscall` instruction (0F 05) of this process.
/// Read with `process_vm_readv`, which fails instead of faulting on a bad address.
fn is_syscall_insn(ip: u64) -> bool {
    let mut insn = [0u8; 2];
    let local = libc::iovec {
        iov_base: insn.as_mut_ptr().cast(),
        iov_len: insn.len(),
    };
    let remote = libc::iovec {
        iov_base: ip as *mut c_void,
        iov_len: insn.len(),
    };
    // SAFETY: `local` describes `insn`, writable for 2 bytes; the kernel checks
    // `remote` and fails with EFAULT rather than faulting.
    let n = unsafe { libc::process_vm_readv(libc::getpid(), &local, 1, &remote, 1, 0) };
    n == 2 && insn == [0x0f, 0x05]
}

/// Fails unless `trace` holds exactly `want`, in order, and nothing unsupported and no
/// unknown system call.
#[track_caller]
fn assert_trace(trace: &Trace, want: &[Want]) {
    let got: Vec<Want> = trace.accesses().iter().map(Want::actual).collect();
    if want == got.as_slice() && !trace.is_incomplete() {
        return;
    }
    let first_difference = first_difference(want, &got);
    let mut msg = format!(
        "{}: expected {} access(es), got {}; first difference at #{first_difference}; {} \
         unsupported, {} unknown system call(s)\n",
        std::panic::Location::caller(),
        want.len(),
        got.len(),
        trace.unsupported().len(),
        trace.unknown_syscalls().len(),
    );
    let all = 0..usize::MAX;
    let rows = (want, got.as_slice());
    write_rows(&mut msg, rows, first_difference, (all, 3), |r| {
        r.describe(trace)
    });
    let _ = write!(
        msg,
        "unknown system calls: {:?}\ntrace:\n{trace}",
        trace.unknown_syscalls()
    );
    panic!("{msg}");
}

/// A pipe, both ends closed on drop.
struct Pipe {
    read: OwnedFd,
    write: OwnedFd,
}

impl Pipe {
    fn new() -> Self {
        let mut fds = [0 as c_int; 2];
        // SAFETY: `fds` is valid for writes of two c_ints.
        let r = unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) };
        assert_eq!(r, 0, "pipe2: {}", std::io::Error::last_os_error());
        // SAFETY: pipe2 returned two new descriptors that nothing else owns.
        unsafe {
            Pipe {
                read: OwnedFd::from_raw_fd(fds[0]),
                write: OwnedFd::from_raw_fd(fds[1]),
            }
        }
    }

    /// A pipe holding `data` (at most its capacity, 64 KiB by default).
    fn holding(data: &[u8]) -> Self {
        let p = Self::new();
        p.put(data);
        p
    }

    fn put(&self, data: &[u8]) {
        File::from(self.write.try_clone().expect("dup"))
            .write_all(data)
            .expect("write to the pipe");
    }

    /// Reads exactly `n` bytes.
    fn take(&self, n: usize) -> Vec<u8> {
        let mut v = vec![0; n];
        File::from(self.read.try_clone().expect("dup"))
            .read_exact(&mut v)
            .expect("read from the pipe");
        v
    }

    fn rfd(&self) -> c_int {
        self.read.as_raw_fd()
    }

    fn wfd(&self) -> c_int {
        self.write.as_raw_fd()
    }
}

/// A temporary file, removed on drop.
struct TempFile {
    path: PathBuf,
    file: File,
}

impl TempFile {
    /// A new file named after `tag` and this process, holding `data`, open for
    /// reading and writing.
    fn with(tag: &str, data: &[u8]) -> Self {
        let path = std::env::temp_dir().join(format!(
            "traced-ffi-syscalls-{}-{tag}-{}",
            std::process::id(),
            current_tid()
        ));
        let mut file = File::options()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(&path)
            .expect("create the temporary file");
        file.write_all(data).expect("write the temporary file");
        TempFile { path, file }
    }

    fn fd(&self) -> c_int {
        self.file.as_raw_fd()
    }

    /// The path with its NUL.
    fn c_path(&self) -> Vec<u8> {
        CString::new(self.path.as_os_str().as_encoded_bytes())
            .expect("no NUL in a temp path")
            .into_bytes_with_nul()
    }

    fn contents(&self) -> Vec<u8> {
        std::fs::read(&self.path).expect("read the temporary file")
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

/// `iovs` as the bytes of an `iovec` array (to copy into a traced buffer).
fn iovec_bytes(iovs: &[libc::iovec]) -> Vec<u8> {
    iovs.iter()
        .flat_map(|v| {
            let mut b = (v.iov_base as u64).to_le_bytes().to_vec();
            b.extend_from_slice(&(v.iov_len as u64).to_le_bytes());
            b
        })
        .collect()
}

/// `iovec`s for `(offset, len)` segments of `buf`.
fn segments(buf: &mut Buffer, segs: &[(usize, usize)]) -> Vec<libc::iovec> {
    let base = buf.as_mut_ptr();
    segs.iter()
        .map(|&(off, len)| {
            assert!(off + len <= buf.len());
            libc::iovec {
                // SAFETY: `off + len <= buf.len()`, so `base + off` is inside `buf`.
                iov_base: unsafe { base.add(off) }.cast(),
                iov_len: len,
            }
        })
        .collect()
}

/// A traced buffer holding `iovs` as an `iovec` array; its pointer.
fn traced_iovecs(t: &mut Tracer, iovs: &[libc::iovec]) -> (Buffer, *const c_void) {
    let buf = t.buffer_from("iov", &iovec_bytes(iovs));
    let p = buf.as_ptr().cast();
    (buf, p)
}

// ------------------------------------------------------------------- read, write

#[traced_ffi]
fn read_from_a_pipe_is_one_kernel_write_of_the_bytes_read_named_read(t: &mut Tracer) {
    let msg = b"hello, traced read";
    let mut plain = [0u8; 32];
    let pipe = Pipe::holding(msg);
    // SAFETY: `plain` is valid for writes of 32 bytes.
    let expected = unsafe { fx::sys_read(pipe.rfd(), plain.as_mut_ptr().cast(), 32) };
    assert_eq!(expected, msg.len() as isize);

    let mut buf = t.buffer("buf", 32);
    let p = buf.as_mut_ptr();
    pipe.put(msg);
    // SAFETY: `buf` is valid for writes of 32 bytes.
    let (n, trace) = t.call(|| unsafe { fx::sys_read(pipe.rfd(), p.cast(), 32) });
    assert_eq!(n, expected, "\n{trace}");
    assert_eq!(&buf[..], &plain[..]);
    assert_trace(&trace, &[Want::kernel_write(&buf, 0, msg, "read")]);
}

#[traced_ffi]
fn read_of_64k_from_a_pipe_is_exactly_one_kernel_write_of_65536_bytes(t: &mut Tracer) {
    const N: usize = 64 << 10;
    let data: Vec<u8> = (0..N).map(|i| (i % 251) as u8).collect();
    let pipe = Pipe::new();
    // SAFETY: F_SETPIPE_SZ takes an int; a larger pipe lets all N bytes wait in it.
    let size = unsafe { libc::fcntl(pipe.wfd(), libc::F_SETPIPE_SZ, 2 * N as c_int) };
    assert!(
        size >= N as c_int,
        "F_SETPIPE_SZ: {}",
        std::io::Error::last_os_error()
    );
    pipe.put(&data);
    let mut buf = t.buffer("buf", N);
    let p = buf.as_mut_ptr();
    // SAFETY: `buf` is valid for writes of N bytes.
    let (n, trace) = t.call(|| unsafe { fx::sys_read(pipe.rfd(), p.cast(), N) });
    assert_eq!(n, N as isize, "\n{trace}");
    assert!(buf[..] == data[..], "the pipe's bytes land in `buf`");
    assert_trace(&trace, &[Want::kernel_write(&buf, 0, &data, "read")]);
}

#[traced_ffi]
fn write_to_a_pipe_is_one_kernel_read_of_the_bytes_written_named_write(t: &mut Tracer) {
    let data = pattern(24, 5);
    let buf = t.buffer_from("buf", &data);
    let pipe = Pipe::new();
    let p = buf.as_ptr();
    // SAFETY: `buf` is valid for reads of 24 bytes.
    let (n, trace) = t.call(|| unsafe { fx::sys_write(pipe.wfd(), p.cast(), 24) });
    assert_eq!(n, 24, "\n{trace}");
    assert_eq!(pipe.take(24), data);
    assert_trace(&trace, &[Want::kernel_read(&buf, 0, &data, "write")]);
}

#[traced_ffi]
fn write_of_untraced_memory_is_not_recorded_at_all(t: &mut Tracer) {
    // A traced buffer exists (and is protected during the call), but the system call's
    // pointer does not reach it.
    let _unused = t.buffer_from("unused", &pattern(64, 1));
    let data = pattern(64, 2);
    let devnull = File::options()
        .write(true)
        .open("/dev/null")
        .expect("open /dev/null");
    let fd = devnull.as_raw_fd();
    let p = data.as_ptr();
    // SAFETY: `data` is valid for reads of 64 bytes.
    let (n, trace) = t.call(|| unsafe { fx::sys_write(fd, p.cast(), 64) });
    assert_eq!(n, 64, "\n{trace}");
    assert_trace(&trace, &[]);
}

#[traced_ffi]
fn pread_from_a_file_is_a_kernel_write_named_pread64(t: &mut Tracer) {
    let contents = pattern(100, 3);
    let file = TempFile::with("pread", &contents);
    let mut plain = [0u8; 40];
    // SAFETY: `plain` is valid for writes of 40 bytes.
    let expected = unsafe { fx::sys_pread(file.fd(), plain.as_mut_ptr().cast(), 40, 10) };
    assert_eq!(expected, 40);

    let mut buf = t.buffer("buf", 48);
    let p = buf.as_mut_ptr();
    // SAFETY: `buf` is valid for writes of 48 >= 40 bytes.
    let (n, trace) = t.call(|| unsafe { fx::sys_pread(file.fd(), p.cast(), 40, 10) });
    assert_eq!(n, expected, "\n{trace}");
    assert_eq!(&buf[..40], &plain[..]);
    assert_eq!(&buf[..40], &contents[10..50]);
    assert_eq!(&buf[40..], &[0; 8], "bytes past the result are untouched");
    assert_trace(
        &trace,
        &[Want::kernel_write(&buf, 0, &contents[10..50], "pread64")],
    );
}

#[traced_ffi]
fn pread_at_the_end_of_the_file_reads_only_what_is_there(t: &mut Tracer) {
    let contents = pattern(100, 4);
    let file = TempFile::with("pread-end", &contents);
    let mut buf = t.buffer("buf", 64);
    let p = buf.as_mut_ptr();
    // SAFETY: `buf` is valid for writes of 64 bytes.
    let (n, trace) = t.call(|| unsafe { fx::sys_pread(file.fd(), p.cast(), 64, 90) });
    assert_eq!(n, 10, "\n{trace}");
    assert_eq!(&buf[..10], &contents[90..]);
    assert_trace(
        &trace,
        &[Want::kernel_write(&buf, 0, &contents[90..], "pread64")],
    );
}

#[traced_ffi]
fn pwrite_to_a_file_is_a_kernel_read_named_pwrite64(t: &mut Tracer) {
    let file = TempFile::with("pwrite", &[0; 16]);
    let data = pattern(30, 6);
    let buf = t.buffer_from("buf", &data);
    let p = buf.as_ptr();
    // SAFETY: `buf` is valid for reads of 30 bytes.
    let (n, trace) = t.call(|| unsafe { fx::sys_pwrite(file.fd(), p.cast(), 30, 8) });
    assert_eq!(n, 30, "\n{trace}");
    let mut expected = vec![0; 8];
    expected.extend_from_slice(&data);
    assert_eq!(file.contents(), expected);
    assert_trace(&trace, &[Want::kernel_read(&buf, 0, &data, "pwrite64")]);
}

// ------------------------------------------------------------------ vectored I/O

/// The segments of the vectored tests: one of length 0 (skipped), and a last one
/// the result covers only in part (15 bytes arrive: 5 + 0 + 7 + 3 of 10).
const SEGS: [(usize, usize); 4] = [(0, 5), (8, 0), (16, 7), (32, 10)];
const SEG_BYTES: usize = 15;

/// The `Want`s for `SEGS` of `data` (whose first `SEG_BYTES` bytes arrived), made
/// by `f` (kernel read or write).
fn segment_wants(
    data: &Buffer,
    bytes: &[u8],
    f: fn(&Buffer, usize, &[u8], &'static str) -> Want,
    name: &'static str,
) -> Vec<Want> {
    vec![
        f(data, 0, &bytes[0..5], name),
        f(data, 16, &bytes[5..12], name),
        f(data, 32, &bytes[12..15], name),
    ]
}

/// The kernel's reads of the whole non-empty `SEGS` of `data` (22 bytes), by `name`.
fn whole_segment_reads(data: &Buffer, name: &'static str) -> Vec<Want> {
    vec![
        Want::kernel_read(data, 0, &data[0..5], name),
        Want::kernel_read(data, 16, &data[16..23], name),
        Want::kernel_read(data, 32, &data[32..42], name),
    ]
}

/// The 22 bytes the whole non-empty `SEGS` of `data` hold, in order.
fn whole_segments(data: &Buffer) -> Vec<u8> {
    [&data[0..5], &data[16..23], &data[32..42]].concat()
}

/// Where `bytes` land in a 48-byte buffer split as `SEGS`.
fn scattered(bytes: &[u8]) -> Vec<u8> {
    let mut v = vec![0u8; 48];
    v[0..5].copy_from_slice(&bytes[0..5]);
    v[16..23].copy_from_slice(&bytes[5..12]);
    v[32..35].copy_from_slice(&bytes[12..15]);
    v
}

#[traced_ffi]
fn readv_with_an_untraced_iovec_array_writes_each_segment_the_result_covers(t: &mut Tracer) {
    let msg = pattern(SEG_BYTES, 7);
    let pipe = Pipe::holding(&msg);
    let mut data = t.buffer("data", 48);
    let iovs = segments(&mut data, &SEGS);
    let iov = iovs.as_ptr();
    // SAFETY: the 4 iovecs point into `data`.
    let (n, trace) = t.call(|| unsafe { fx::sys_readv(pipe.rfd(), iov.cast(), 4) });
    assert_eq!(n, SEG_BYTES as isize, "\n{trace}");
    assert_eq!(&data[..], &scattered(&msg)[..]);
    assert_trace(
        &trace,
        &segment_wants(&data, &msg, Want::kernel_write, "readv"),
    );
}

#[traced_ffi]
fn readv_with_a_traced_iovec_array_reads_the_array_first(t: &mut Tracer) {
    let msg = pattern(SEG_BYTES, 8);
    let pipe = Pipe::holding(&msg);
    let mut data = t.buffer("data", 48);
    let iovs = segments(&mut data, &SEGS);
    let (iov_buf, iov) = traced_iovecs(t, &iovs);
    // SAFETY: the 4 iovecs in `iov_buf` point into `data`.
    let (n, trace) = t.call(|| unsafe { fx::sys_readv(pipe.rfd(), iov, 4) });
    assert_eq!(n, SEG_BYTES as isize, "\n{trace}");
    assert_eq!(&data[..], &scattered(&msg)[..]);
    let mut want = vec![Want::kernel_read(&iov_buf, 0, &iovec_bytes(&iovs), "readv")];
    want.extend(segment_wants(&data, &msg, Want::kernel_write, "readv"));
    assert_trace(&trace, &want);
}

#[traced_ffi]
fn writev_with_a_traced_iovec_array_reads_the_array_then_each_segment(t: &mut Tracer) {
    let mut data = t.buffer_from("data", &pattern(48, 9));
    // The last segment is written whole: 5 + 7 + 10 bytes.
    let iovs = segments(&mut data, &SEGS);
    let (iov_buf, iov) = traced_iovecs(t, &iovs);
    let pipe = Pipe::new();
    // SAFETY: the 4 iovecs in `iov_buf` point into `data`.
    let (n, trace) = t.call(|| unsafe { fx::sys_writev(pipe.wfd(), iov, 4) });
    assert_eq!(n, 22, "\n{trace}");
    let sent = whole_segments(&data);
    assert_eq!(pipe.take(22), sent);
    let mut want = vec![Want::kernel_read(
        &iov_buf,
        0,
        &iovec_bytes(&iovs),
        "writev",
    )];
    want.extend(whole_segment_reads(&data, "writev"));
    assert_trace(&trace, &want);
}

#[traced_ffi]
fn preadv_from_a_file_writes_the_segments_named_preadv(t: &mut Tracer) {
    let contents = pattern(SEG_BYTES + 4, 10);
    let file = TempFile::with("preadv", &contents);
    let mut data = t.buffer("data", 48);
    let iovs = segments(&mut data, &SEGS);
    let (iov_buf, iov) = traced_iovecs(t, &iovs);
    // From offset 4, 15 bytes remain in the file.
    // SAFETY: the 4 iovecs in `iov_buf` point into `data`.
    let (n, trace) = t.call(|| unsafe { fx::sys_preadv(file.fd(), iov, 4, 4) });
    assert_eq!(n, SEG_BYTES as isize, "\n{trace}");
    let arrived = &contents[4..];
    assert_eq!(&data[..], &scattered(arrived)[..]);
    let mut want = vec![Want::kernel_read(
        &iov_buf,
        0,
        &iovec_bytes(&iovs),
        "preadv",
    )];
    want.extend(segment_wants(&data, arrived, Want::kernel_write, "preadv"));
    assert_trace(&trace, &want);
}

#[traced_ffi]
fn pwritev_to_a_file_reads_the_segments_named_pwritev(t: &mut Tracer) {
    let file = TempFile::with("pwritev", &[]);
    let mut data = t.buffer_from("data", &pattern(48, 11));
    let iovs = segments(&mut data, &SEGS);
    let iov = iovs.as_ptr();
    // SAFETY: the 4 iovecs point into `data`.
    let (n, trace) = t.call(|| unsafe { fx::sys_pwritev(file.fd(), iov.cast(), 4, 2) });
    assert_eq!(n, 22, "\n{trace}");
    let sent = whole_segments(&data);
    assert_eq!(file.contents(), [&[0, 0][..], &sent].concat());
    assert_trace(&trace, &whole_segment_reads(&data, "pwritev"));
}

// ----------------------------------------------------------------------- sockets

#[traced_ffi]
fn recvfrom_a_socket_is_a_kernel_write_of_the_bytes_received(t: &mut Tracer) {
    let (a, b) = UnixStream::pair().expect("socketpair");
    let msg = pattern(20, 12);
    (&a).write_all(&msg).expect("send");
    let mut buf = t.buffer("buf", 64);
    let p = buf.as_mut_ptr();
    // SAFETY: `buf` is valid for writes of 64 bytes.
    let (n, trace) = t.call(|| unsafe { fx::sys_recvfrom(b.as_raw_fd(), p.cast(), 64) });
    assert_eq!(n, 20, "\n{trace}");
    assert_eq!(&buf[..20], &msg[..]);
    assert_trace(&trace, &[Want::kernel_write(&buf, 0, &msg, "recvfrom")]);
}

#[traced_ffi]
fn sendto_a_socket_is_a_kernel_read_of_the_bytes_sent(t: &mut Tracer) {
    let (a, b) = UnixStream::pair().expect("socketpair");
    let msg = pattern(20, 13);
    let buf = t.buffer_from("buf", &msg);
    let p = buf.as_ptr();
    // SAFETY: `buf` is valid for reads of 20 bytes.
    let (n, trace) = t.call(|| unsafe { fx::sys_sendto(a.as_raw_fd(), p.cast(), 20) });
    assert_eq!(n, 20, "\n{trace}");
    let mut got = [0u8; 20];
    (&b).read_exact(&mut got).expect("receive");
    assert_eq!(got[..], msg[..]);
    assert_trace(&trace, &[Want::kernel_read(&buf, 0, &msg, "sendto")]);
}

#[traced_ffi]
fn recvmsg_with_a_traced_iovec_array_reads_it_then_writes_the_segments(t: &mut Tracer) {
    let (a, b) = UnixStream::pair().expect("socketpair");
    let msg = pattern(SEG_BYTES, 14);
    (&a).write_all(&msg).expect("send");
    let mut data = t.buffer("data", 48);
    let iovs = segments(&mut data, &SEGS);
    let (iov_buf, iov) = traced_iovecs(t, &iovs);
    // SAFETY: the 4 iovecs in `iov_buf` point into `data`; the msghdr is the fixture's.
    let (n, trace) = t.call(|| unsafe { fx::sys_recvmsg_iov(b.as_raw_fd(), iov, 4) });
    assert_eq!(n, SEG_BYTES as isize, "\n{trace}");
    assert_eq!(&data[..], &scattered(&msg)[..]);
    let mut want = vec![Want::kernel_read(
        &iov_buf,
        0,
        &iovec_bytes(&iovs),
        "recvmsg",
    )];
    want.extend(segment_wants(&data, &msg, Want::kernel_write, "recvmsg"));
    assert_trace(&trace, &want);
}

#[traced_ffi]
fn sendmsg_with_an_untraced_msghdr_reads_the_iovec_array_then_the_segments(t: &mut Tracer) {
    let (a, b) = UnixStream::pair().expect("socketpair");
    let mut data = t.buffer_from("data", &pattern(48, 15));
    let iovs = segments(&mut data, &SEGS);
    let (iov_buf, iov) = traced_iovecs(t, &iovs);
    // SAFETY: the 4 iovecs in `iov_buf` point into `data`; the msghdr is the fixture's.
    let (n, trace) = t.call(|| unsafe { fx::sys_sendmsg_iov(a.as_raw_fd(), iov, 4) });
    assert_eq!(n, 22, "\n{trace}");
    let sent = whole_segments(&data);
    let mut got = [0u8; 22];
    (&b).read_exact(&mut got).expect("receive");
    assert_eq!(got[..], sent[..]);
    let mut want = vec![Want::kernel_read(
        &iov_buf,
        0,
        &iovec_bytes(&iovs),
        "sendmsg",
    )];
    want.extend(whole_segment_reads(&data, "sendmsg"));
    assert_trace(&trace, &want);
}

#[traced_ffi]
fn sendmsg_with_a_traced_msghdr_reads_it_then_the_iovec_array_then_the_segments(t: &mut Tracer) {
    let (a, b) = UnixStream::pair().expect("socketpair");
    let mut data = t.buffer_from("data", &pattern(48, 16));
    let iovs = segments(&mut data, &SEGS[..1]);
    let (iov_buf, iov) = traced_iovecs(t, &iovs);
    // SAFETY: msghdr is plain data; all-zero is a valid (empty) one.
    let mut hdr: libc::msghdr = unsafe { std::mem::zeroed() };
    hdr.msg_iov = iov.cast_mut().cast();
    hdr.msg_iovlen = 1;
    // SAFETY: `hdr` is a live msghdr, readable for its 56 bytes.
    let hdr_bytes =
        unsafe { std::slice::from_raw_parts((&raw const hdr).cast::<u8>(), MSGHDR_SIZE).to_vec() };
    let msg_buf = t.buffer_from("msg", &hdr_bytes);
    let m = msg_buf.as_ptr();
    // SAFETY: `msg_buf` holds a msghdr whose one iovec (in `iov_buf`) points into `data`.
    let (n, trace) = t.call(|| unsafe { fx::sys_sendmsg(a.as_raw_fd(), m.cast()) });
    assert_eq!(n, 5, "\n{trace}");
    let mut got = [0u8; 5];
    (&b).read_exact(&mut got).expect("receive");
    assert_eq!(got[..], data[0..5]);
    assert_trace(
        &trace,
        &[
            Want::kernel_read(&msg_buf, 0, &hdr_bytes, "sendmsg"),
            Want::kernel_read(&iov_buf, 0, &iovec_bytes(&iovs), "sendmsg"),
            Want::kernel_read(&data, 0, &data[0..5], "sendmsg"),
        ],
    );
}

// ------------------------------------------------- fixed-size results and paths

#[traced_ffi]
fn getrandom_is_a_kernel_write_of_the_bytes_returned(t: &mut Tracer) {
    let mut plain = [0u8; 48];
    // SAFETY: `plain` is valid for writes of 48 bytes.
    let expected = unsafe { fx::sys_getrandom(plain.as_mut_ptr().cast(), 48) };
    assert_eq!(expected, 48);
    let mut buf = t.buffer("buf", 48);
    let p = buf.as_mut_ptr();
    // SAFETY: `buf` is valid for writes of 48 bytes.
    let (n, trace) = t.call(|| unsafe { fx::sys_getrandom(p.cast(), 48) });
    assert_eq!(n, expected, "\n{trace}");
    assert_trace(
        &trace,
        &[Want::kernel_write(&buf, 0, &buf[..], "getrandom")],
    );
}

/// `fstat(fd)` of an untraced `stat`, as bytes.
fn plain_fstat(fd: c_int) -> Vec<u8> {
    let mut plain = [0u8; STAT_SIZE];
    // SAFETY: `plain` is valid for writes of a stat.
    let r = unsafe { fx::sys_fstat(fd, plain.as_mut_ptr().cast()) };
    assert_eq!(r, 0, "fstat: {}", std::io::Error::last_os_error());
    plain.to_vec()
}

#[traced_ffi]
fn fstat_is_a_kernel_write_of_the_whole_stat_named_newfstatat(t: &mut Tracer) {
    let file = TempFile::with("fstat", &pattern(77, 17));
    let plain = plain_fstat(file.fd());
    let mut st = t.buffer("st", STAT_SIZE);
    let p = st.as_mut_ptr();
    // SAFETY: `st` is valid for writes of a stat.
    let (r, trace) = t.call(|| unsafe { fx::sys_fstat(file.fd(), p.cast()) });
    assert_eq!(r, 0, "\n{trace}");
    assert_eq!(&st[..], &plain[..]);
    assert_trace(&trace, &[Want::kernel_write(&st, 0, &plain, "newfstatat")]);
}

#[traced_ffi]
fn fstat_of_a_closed_descriptor_fails_and_records_nothing(t: &mut Tracer) {
    // Far above any descriptor this process opens (another test's thread could reuse
    // a descriptor this test had closed).
    let closed: c_int = 0x3fff_ffff;
    let mut st = t.buffer_from("st", &pattern(STAT_SIZE, 18));
    let p = st.as_mut_ptr();
    // SAFETY: `st` is valid for writes of a stat; a closed fd fails with EBADF.
    let (r, trace) = t.call(|| unsafe { fx::sys_fstat(closed, p.cast()) });
    assert_eq!(r, -1, "\n{trace}");
    assert_eq!(&st[..], &pattern(STAT_SIZE, 18)[..]);
    assert_trace(&trace, &[]);
}

#[traced_ffi]
fn stat_reads_the_path_then_writes_the_stat_named_newfstatat(t: &mut Tracer) {
    let file = TempFile::with("stat", &pattern(33, 19));
    let plain = plain_fstat(file.fd());
    let c_path = file.c_path();
    let path = t.buffer_from("path", &c_path);
    let mut st = t.buffer("st", STAT_SIZE);
    let (pp, sp) = (path.as_ptr(), st.as_mut_ptr());
    // SAFETY: `path` is NUL-terminated, `st` valid for writes of a stat.
    let (r, trace) = t.call(|| unsafe { fx::sys_stat(pp.cast(), sp.cast()) });
    assert_eq!(r, 0, "\n{trace}");
    assert_eq!(&st[..], &plain[..]);
    assert_trace(
        &trace,
        &[
            Want::kernel_read(&path, 0, &c_path, "newfstatat"),
            Want::kernel_write(&st, 0, &plain, "newfstatat"),
        ],
    );
}

#[traced_ffi]
fn statx_reads_the_path_then_writes_the_whole_statx(t: &mut Tracer) {
    let file = TempFile::with("statx", &pattern(44, 20));
    let c_path = file.c_path();
    let mut plain = [0u8; STATX_SIZE];
    // SAFETY: `c_path` is NUL-terminated, `plain` valid for writes of a statx.
    let r = unsafe { fx::sys_statx(c_path.as_ptr().cast(), plain.as_mut_ptr().cast()) };
    assert_eq!(r, 0);
    let path = t.buffer_from("path", &c_path);
    let mut stx = t.buffer("stx", STATX_SIZE);
    let (pp, sp) = (path.as_ptr(), stx.as_mut_ptr());
    // SAFETY: `path` is NUL-terminated, `stx` valid for writes of a statx.
    let (r, trace) = t.call(|| unsafe { fx::sys_statx(pp.cast(), sp.cast()) });
    assert_eq!(r, 0, "\n{trace}");
    assert_eq!(&stx[..], &plain[..]);
    assert_trace(
        &trace,
        &[
            Want::kernel_read(&path, 0, &c_path, "statx"),
            Want::kernel_write(&stx, 0, &plain, "statx"),
        ],
    );
}

/// Closes the two descriptors a `pipe`/`pipe2` fixture stored in `fds`.
fn close_pair(fds: &[u8]) {
    for fd in fds.chunks_exact(4) {
        let fd = c_int::from_le_bytes([fd[0], fd[1], fd[2], fd[3]]);
        // SAFETY: `fd` is a descriptor the fixture just created and nothing else owns.
        drop(unsafe { OwnedFd::from_raw_fd(fd) });
    }
}

#[traced_ffi]
fn pipe_is_a_kernel_write_of_two_descriptors_named_pipe2(t: &mut Tracer) {
    let mut fds = t.buffer("fds", 8);
    let p = fds.as_mut_ptr();
    // SAFETY: `fds` is valid for writes of two c_ints.
    let (r, trace) = t.call(|| unsafe { fx::sys_pipe(p.cast()) });
    assert_eq!(r, 0, "\n{trace}");
    let got = fds.to_vec();
    assert_trace(&trace, &[Want::kernel_write(&fds, 0, &got, "pipe2")]);
    // SAFETY: F_GETFD on a descriptor has no other effect.
    let flags = unsafe {
        libc::fcntl(
            c_int::from_le_bytes([got[0], got[1], got[2], got[3]]),
            libc::F_GETFD,
        )
    };
    assert_eq!(flags, 0, "pipe() sets no flag");
    close_pair(&got);
}

#[traced_ffi]
fn pipe2_with_cloexec_is_a_kernel_write_of_two_descriptors(t: &mut Tracer) {
    let mut fds = t.buffer("fds", 8);
    let p = fds.as_mut_ptr();
    // SAFETY: `fds` is valid for writes of two c_ints.
    let (r, trace) = t.call(|| unsafe { fx::sys_pipe2(p.cast(), libc::O_CLOEXEC) });
    assert_eq!(r, 0, "\n{trace}");
    let got = fds.to_vec();
    assert_trace(&trace, &[Want::kernel_write(&fds, 0, &got, "pipe2")]);
    // SAFETY: F_GETFD on a descriptor has no other effect.
    let flags = unsafe {
        libc::fcntl(
            c_int::from_le_bytes([got[0], got[1], got[2], got[3]]),
            libc::F_GETFD,
        )
    };
    assert_eq!(flags, libc::FD_CLOEXEC);
    close_pair(&got);
}

#[traced_ffi]
fn getcwd_is_a_kernel_write_of_the_path_and_nul_then_glibc_reads_its_first_byte(t: &mut Tracer) {
    let cwd = CString::new(
        std::env::current_dir()
            .expect("current dir")
            .into_os_string()
            .into_encoded_bytes(),
    )
    .expect("no NUL in a path")
    .into_bytes_with_nul();
    let mut buf = t.buffer("buf", 4096);
    let p = buf.as_mut_ptr();
    // SAFETY: `buf` is valid for writes of 4096 bytes.
    let (r, trace) = t.call(|| unsafe { fx::sys_getcwd(p.cast(), 4096) });
    assert_eq!(r.cast::<u8>(), p, "\n{trace}");
    assert_eq!(&buf[..cwd.len()], &cwd[..]);
    assert_trace(
        &trace,
        &[
            Want::kernel_write(&buf, 0, &cwd, "getcwd"),
            // glibc checks the path is absolute: `cmp BYTE PTR [rdi], 0x2f`.
            Want::insn_read(&buf, 0, b"/", "cmp"),
        ],
    );
}

#[traced_ffi]
fn open_reads_the_path_and_its_nul_named_openat(t: &mut Tracer) {
    let file = TempFile::with("open", b"x");
    let c_path = file.c_path();
    let path = t.buffer_from("path", &c_path);
    let pp = path.as_ptr();
    // SAFETY: `path` is NUL-terminated.
    let (fd, trace) = t.call(|| unsafe { fx::sys_open(pp.cast(), libc::O_RDONLY) });
    assert!(fd >= 0, "\n{trace}");
    // SAFETY: `fd` is the new descriptor, owned by nothing else.
    drop(unsafe { OwnedFd::from_raw_fd(fd) });
    assert_trace(&trace, &[Want::kernel_read(&path, 0, &c_path, "openat")]);
}

#[traced_ffi]
fn openat_reads_only_the_string_not_the_rest_of_the_buffer(t: &mut Tracer) {
    let file = TempFile::with("openat", b"x");
    let name = file
        .path
        .file_name()
        .expect("a file name")
        .as_encoded_bytes()
        .to_vec();
    let dir = File::open(file.path.parent().expect("a parent")).expect("open the directory");
    // The name, its NUL, and bytes after it that must not be read.
    let mut text = name.clone();
    text.push(0);
    let c_name = text.clone();
    text.extend_from_slice(b"never read");
    let path = t.buffer_from("path", &text);
    let pp = path.as_ptr();
    let dfd = dir.as_raw_fd();
    // SAFETY: `path` is NUL-terminated.
    let (fd, trace) = t.call(|| unsafe { fx::sys_openat(dfd, pp.cast(), libc::O_RDONLY) });
    assert!(fd >= 0, "\n{trace}");
    // SAFETY: `fd` is the new descriptor, owned by nothing else.
    drop(unsafe { OwnedFd::from_raw_fd(fd) });
    assert_trace(&trace, &[Want::kernel_read(&path, 0, &c_name, "openat")]);
}

// --------------------------------------------------------- no system call at all

/// `clock_gettime(CLOCK_MONOTONIC)` into untraced memory, as nanoseconds.
fn plain_monotonic_ns() -> i128 {
    let mut ts = [0u8; 16];
    // SAFETY: `ts` is valid for writes of a timespec.
    let r = unsafe { fx::sys_clock_gettime(libc::CLOCK_MONOTONIC, ts.as_mut_ptr().cast()) };
    assert_eq!(r, 0);
    timespec_ns(&ts)
}

fn timespec_ns(ts: &[u8]) -> i128 {
    let word = |i: usize| i64::from_le_bytes(ts[i..i + 8].try_into().expect("8 bytes"));
    i128::from(word(0)) * 1_000_000_000 + i128::from(word(8))
}

#[traced_ffi]
fn clock_gettime_is_two_vdso_stores_not_a_system_call(t: &mut Tracer) {
    let mut ts = t.buffer("ts", 16);
    let p = ts.as_mut_ptr();
    let before = plain_monotonic_ns();
    // SAFETY: `ts` is valid for writes of a timespec.
    let (r, trace) = t.call(|| unsafe { fx::sys_clock_gettime(libc::CLOCK_MONOTONIC, p.cast()) });
    let after = plain_monotonic_ns();
    assert_eq!(r, 0, "\n{trace}");
    let now = timespec_ns(&ts);
    assert!(
        before <= now && now <= after,
        "{before} <= {now} <= {after}"
    );
    // The vDSO's own instructions store `tv_sec`, then `tv_nsec`: `syscall` is None.
    assert_trace(
        &trace,
        &[
            Want::insn_write(&ts, 0, &ts[0..8], "mov"),
            Want::insn_write(&ts, 8, &ts[8..16], "mov"),
        ],
    );
}

/// Byte offsets of the fields of glibc's `struct __pthread_mutex_s` (x86-64).
const MUTEX_LOCK: usize = 0;
const MUTEX_OWNER: usize = 8;
const MUTEX_NUSERS: usize = 12;
const MUTEX_KIND: usize = 16;

#[traced_ffi]
fn uncontended_mutex_lock_and_unlock_make_no_system_call(t: &mut Tracer) {
    let mut m = t.buffer("mutex", size_of::<libc::pthread_mutex_t>());
    let p = m.as_mut_ptr();
    // SAFETY: all-zero is PTHREAD_MUTEX_INITIALIZER; nothing else uses the mutex.
    let (r, trace) = t.call(|| unsafe { fx::sys_mutex_lock_unlock(p.cast()) });
    assert_eq!(r, 0, "\n{trace}");
    assert!(m.iter().all(|&b| b == 0), "unlocked again: {:?}", &m[..]);
    // No futex: glibc 2.36's instructions only, on the lock word (taken with
    // `lock cmpxchg` 0 -> 1, released with `xchg` 1 -> 0) and the fields beside it:
    // the kind (a normal mutex), the owner (this thread while locked) and the user
    // count. The order is glibc's code; a different glibc build may differ.
    let tid = current_tid().to_le_bytes();
    let (zero, one) = ([0u8; 4], [1u8, 0, 0, 0]);
    assert_trace(
        &trace,
        &[
            Want::insn_read(&m, MUTEX_KIND, &zero, "mov"),
            Want::insn_read(&m, MUTEX_KIND, &zero, "mov"),
            Want::insn_read(&m, MUTEX_LOCK, &zero, "lock cmpxchg"),
            Want::insn_write(&m, MUTEX_LOCK, &one, "lock cmpxchg"),
            Want::insn_read(&m, MUTEX_OWNER, &zero, "mov"),
            Want::insn_read(&m, MUTEX_NUSERS, &zero, "add"),
            Want::insn_write(&m, MUTEX_NUSERS, &one, "add"),
            Want::insn_write(&m, MUTEX_OWNER, &tid, "mov"),
            // pthread_mutex_unlock
            Want::insn_read(&m, MUTEX_KIND, &zero, "mov"),
            Want::insn_write(&m, MUTEX_OWNER, &zero, "mov"),
            Want::insn_read(&m, MUTEX_NUSERS, &one, "sub"),
            Want::insn_write(&m, MUTEX_NUSERS, &zero, "sub"),
            Want::insn_read(&m, MUTEX_KIND, &zero, "mov"),
            Want::insn_read(&m, MUTEX_LOCK, &one, "xchg"),
            Want::insn_write(&m, MUTEX_LOCK, &zero, "xchg"),
        ],
    );
}

// ------------------------------------------------------------ unknown system calls

/// `getitimer(ITIMER_REAL)` into untraced memory, as bytes.
fn plain_getitimer() -> Vec<u8> {
    let mut plain = [0xa5u8; 32];
    // SAFETY: `plain` is valid for writes of an itimerval.
    let r = unsafe { fx::sys_getitimer_real(plain.as_mut_ptr().cast()) };
    assert_eq!(r, 0);
    plain.to_vec()
}

#[traced_ffi]
fn an_unknown_system_call_on_a_traced_buffer_runs_and_is_listed_not_recorded(t: &mut Tracer) {
    t.allow_unsupported(true);
    let plain = plain_getitimer();
    let mut buf = t.buffer_from("timer", &[0xa5; 32]);
    let p = buf.as_mut_ptr();
    // SAFETY: `buf` is valid for writes of an itimerval.
    let (r, trace) = t.call(|| unsafe { fx::sys_getitimer_real(p.cast()) });
    assert_eq!(
        r, 0,
        "no EFAULT: the call ran with the buffer's pages open\n{trace}"
    );
    assert_eq!(&buf[..], &plain[..]);
    assert!(trace.accesses().is_empty(), "\n{trace}");
    assert!(trace.unsupported().is_empty(), "\n{trace}");
    assert!(trace.is_incomplete());
    let unknown = trace.unknown_syscalls();
    assert_eq!(unknown.len(), 1, "{unknown:?}\n{trace}");
    let u = &unknown[0];
    assert_eq!(
        (u.nr, u.result, u.args[0], u.args[1], u.tid),
        (
            NR_GETITIMER,
            0,
            libc::ITIMER_REAL as u64,
            p as u64,
            current_tid()
        ),
        "{u:?}"
    );
    assert!(is_syscall_insn(u.ip), "ip is glibc's `syscall`: {u:?}");
}

#[traced_ffi(should_panic(
    expected = "0 instruction(s) and 1 system call(s) could not be traced exactly"
))]
fn an_unknown_system_call_without_allow_unsupported_fails_the_test(t: &mut Tracer) {
    let mut buf = t.buffer("timer", 32);
    let p = buf.as_mut_ptr();
    // SAFETY: `buf` is valid for writes of an itimerval.
    let (_r, _trace) = t.call(|| unsafe { fx::sys_getitimer_real(p.cast()) });
}

/// `sendmmsg` then `recvmmsg` of two messages over a datagram socket pair, the
/// `mmsghdr` arrays and iovecs untraced, the data in traced buffers: the kernel's
/// reads of each message's data (as much as it sent), then on the other side its
/// writes of each message received and of nothing else.
#[traced_ffi]
fn sendmmsg_and_recvmmsg_record_each_messages_data_named_by_the_call(t: &mut Tracer) {
    let mut fds = [0 as c_int; 2];
    // SAFETY: `fds` has room for the two descriptors.
    let rc = unsafe { libc::socketpair(libc::AF_UNIX, libc::SOCK_DGRAM, 0, fds.as_mut_ptr()) };
    assert_eq!(rc, 0);
    let mut out = t.buffer_from("out", &pattern(16, 21));
    let mut inb = t.buffer("in", 16);
    let mk = |base: *mut u8, lens: [usize; 2], offs: [usize; 2]| {
        offs.iter()
            .zip(lens)
            .map(|(&o, l)| libc::iovec {
                // SAFETY: the offsets stay inside the 16-byte buffer.
                iov_base: unsafe { base.add(o) }.cast(),
                iov_len: l,
            })
            .collect::<Vec<_>>()
    };
    let mut send_iov = mk(out.as_mut_ptr(), [5, 3], [0, 8]);
    let mut recv_iov = mk(inb.as_mut_ptr(), [8, 8], [0, 8]);
    // SAFETY: mmsghdr is plain data; all-zero is a valid (empty) one.
    let mut send: [libc::mmsghdr; 2] = unsafe { std::mem::zeroed() };
    // SAFETY: as above.
    let mut recv: [libc::mmsghdr; 2] = unsafe { std::mem::zeroed() };
    for i in 0..2 {
        send[i].msg_hdr.msg_iov = &raw mut send_iov[i];
        send[i].msg_hdr.msg_iovlen = 1;
        recv[i].msg_hdr.msg_iov = &raw mut recv_iov[i];
        recv[i].msg_hdr.msg_iovlen = 1;
    }
    let (sent, trace) = t.call(|| {
        // SAFETY: two valid mmsghdrs whose iovecs point into `out`.
        unsafe { libc::sendmmsg(fds[0], send.as_mut_ptr(), 2, 0) }
    });
    assert_eq!(sent, 2, "\n{trace}");
    assert_trace(
        &trace,
        &[
            Want::kernel_read(&out, 0, &out[0..5], "sendmmsg"),
            Want::kernel_read(&out, 8, &out[8..11], "sendmmsg"),
        ],
    );
    let (received, trace) = t.call(|| {
        // SAFETY: two valid mmsghdrs whose iovecs point into `in`.
        unsafe { libc::recvmmsg(fds[1], recv.as_mut_ptr(), 2, 0, std::ptr::null_mut()) }
    });
    assert_eq!(received, 2, "\n{trace}");
    assert_eq!((recv[0].msg_len, recv[1].msg_len), (5, 3));
    assert_eq!(&inb[0..5], &out[0..5]);
    assert_eq!(&inb[8..11], &out[8..11]);
    assert_trace(
        &trace,
        &[
            Want::kernel_write(&inb, 0, &out[0..5], "recvmmsg"),
            Want::kernel_write(&inb, 8, &out[8..11], "recvmmsg"),
        ],
    );
    // SAFETY: closing the descriptors made above.
    unsafe {
        libc::close(fds[0]);
        libc::close(fds[1]);
    }
}

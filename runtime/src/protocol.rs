//! The messages between the test process (the tracee, "child") and the
//! supervisor (its parent), and how they travel.
//!
//! Transport: a `UnixStream` pair made before the fork; each message is a
//! little-endian `u32` length followed by that many bytes of postcard.
//! Requests are the exception: they travel in parts (see below).
//!
//! Start-up (once per process, see `launch`):
//!
//! ```text
//! child                                  supervisor
//! prctl(PDEATHSIG); check getppid()      PTRACE_SEIZE(child, EXITKILL|TRACESYSGOOD|TRACECLONE)
//!                                        pin self to the CPU it runs on
//! read Handshake  <───────────────────── write Handshake::Traced { cpu } | Handshake::Untraced(why)
//! ```
//!
//! One traced call (see `client::Client::begin_call` / `ActiveCall::end`):
//!
//! ```text
//! child (calling thread T)               supervisor
//! lock CALL_LOCK; pin T to the supervisor's CPU
//! write Request::StartCall ────────────>  (one part, or several: see below)
//! tgkill(T, SIGSTOP)  (the doorbell)     waitid: T in signal-delivery-stop, SIGSTOP
//!                                        check si_code == SI_TKILL, si_pid == child,
//!                                        a request is waiting on the socket; else the
//!                                        SIGSTOP is the program's and is delivered
//!                                        read StartCall; register regions;
//!                                        PTRACE_CONT(T) without the signal
//! read Reply  <───────────────────────── write Reply::Started (or Refused)
//! mprotect(spans, PROT_NONE)
//! run the native code ...                each SIGSEGV of T on a protected page: decode,
//!                                        record, execute once, re-protect (see fault.rs);
//!                                        each full chunk of records that can no longer
//!                                        change: pwrite to the memfd, freed
//! mprotect(spans, back to RW)
//! write Request::EndCall{restore} ─────>
//! tgkill(T, SIGSTOP)                     doorbell checked as above; read EndCall;
//!                                        build the Trace; PTRACE_CONT(T)
//! read Reply  <───────────────────────── write Reply::Trace (after resuming T: the
//! pread the streamed chunks from the     trace may be larger than the socket buffer)
//! memfd into the trace; ftruncate(0)
//! unpin T; unlock CALL_LOCK
//! ```
//!
//! The memfd (see `launch`) is shared by both processes: the supervisor
//! appends the chunks of the call's trace that can no longer change to it
//! during the call (`trace/store.rs`, `Records::stream_out`) and frees them;
//! `Reply::Trace` carries the rest and where the streamed chunks lie.
//!
//! Every request is answered by exactly one reply, written only after the
//! requesting thread has been resumed. A request is only ever sent while
//! holding the call lock, so at most one request is in flight.
//!
//! A request is sent in parts of at most [`PART_MAX`] bytes, each written
//! whole and followed by its own doorbell: a little-endian `u32` header, the
//! part's length with bit 31 ([`MORE`]) set if more parts follow, then the
//! bytes; the parts joined are the request's postcard. The supervisor reads
//! one part per doorbell, so the socket is empty before each part and a part
//! never blocks its writer (it is far below the socket buffer's size),
//! whatever the request's size (a `StartCall` with 10 000 regions is about
//! half a megabyte). A part with more to follow gets no reply: the thread is
//! just resumed. Only the last part's doorbell is answered.
//!
//! ```text
//! write part 1 (MORE) ; tgkill ───────>  read part 1; PTRACE_CONT(T)
//! write part 2 (MORE) ; tgkill ───────>  read part 2; PTRACE_CONT(T)
//! write part 3        ; tgkill ───────>  read part 3: the request is whole; handle it
//! read Reply  <───────────────────────── write Reply
//! ```

use std::io::{self, Read, Write};

use libc::c_int;
use serde::{Deserialize, Serialize, de::DeserializeOwned};

use crate::trace::alloc::AllocFn;
use crate::trace::declared::Declared;
use crate::trace::event::{Dropped, RegionDesc, Trace};
use crate::trace::store::Streamed;

/// Sent by the supervisor once, right after the fork.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) enum Handshake {
    /// The child is seized; traced calls work. The supervisor stays on
    /// `cpu`; a calling thread moves there for the call.
    Traced {
        /// The CPU the supervisor is pinned to, if pinning worked.
        cpu: Option<usize>,
    },
    /// The child is not traced; traced calls fail with this reason.
    Untraced(String),
}

/// A request from the calling thread to the supervisor.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) enum Request {
    /// Begin a traced call on thread `tid`.
    StartCall(StartCall),
    /// End the traced call; the reply carries the Trace. `restore` is what
    /// the client restored (`start, len, prot`): the supervisor applies it
    /// again when it stops watching threads that outlive the call.
    EndCall { restore: Vec<(u64, u64, i32)> },
}

/// What the supervisor needs to know to trace one call.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct StartCall {
    /// The calling thread (it rings the doorbell).
    pub(crate) tid: i32,
    /// The test's name, for error messages.
    pub(crate) test: String,
    /// The call's location (`file:line`), for error messages.
    pub(crate) call: String,
    /// Regions whose spans will be protected during the call.
    pub(crate) regions: Vec<RegionDesc>,
    /// Buffers dropped earlier whose spans are in quarantine, so that a
    /// fault on one can name it.
    pub(crate) dropped: Vec<Dropped>,
    /// The allocator's entry points in the test process, to record their
    /// calls during this call; empty to record none.
    pub(crate) allocator: Vec<(AllocFn, u64)>,
    /// Whether the test process writes the allocator's breakpoints itself
    /// (its code mappings are writable, see `tracee/allocator.rs`): the
    /// supervisor then only prepares the trampolines and answers which
    /// entries to arm. Otherwise the supervisor writes them.
    pub(crate) arms_allocator: bool,
    /// Blocks native code allocated in the test's earlier calls and did not
    /// free: freeing one is not foreign even when it is tracked.
    pub(crate) native_blocks: Vec<u64>,
    /// Whether hot code may run translated (the code cache); off forces
    /// the per-instruction path.
    pub(crate) code_cache: bool,
    /// Backward branches a translated region takes before it exits; 0 for
    /// the supervisor's default.
    pub(crate) cache_budget: u64,
    /// Keep only the first this many accesses in full (and every
    /// out-of-bounds one), with exact per-region summaries of all; `None`
    /// keeps every access.
    pub(crate) keep_accesses: Option<u64>,
    /// Contracts declared before the call: the accesses that break one get
    /// their caller chain.
    pub(crate) declared: Vec<Declared>,
}

/// The supervisor's answer to a request.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) enum Reply {
    /// The call is registered; protect the pages and run it. With
    /// `StartCall::arms_allocator`, bit `i` of `arm` asks the test process
    /// to put a breakpoint on `StartCall::allocator[i]` until it sends
    /// `EndCall`.
    Started { arm: u16 },
    /// The request was refused, with the reason.
    Refused(String),
    /// The call's trace, without the chunks of its records streamed to
    /// the memfd during the call (`streamed` says where they lie).
    Trace {
        trace: Box<Trace>,
        streamed: Streamed,
    },
}

/// Writes one length-prefixed postcard frame. A large message (a trace) is
/// never held encoded whole: its size is computed first, then it is
/// encoded through a 64 KiB buffer straight into `w` (a trace's chunks of
/// records go from the store to the socket without a copy).
pub(crate) fn write_frame<T: Serialize>(w: &mut impl Write, msg: &T) -> io::Result<()> {
    let size = postcard::experimental::serialized_size(msg).map_err(io::Error::other)?;
    let len = u32::try_from(size)
        .map_err(|_| io::Error::other(format!("message of {size} bytes is too large")))?;
    let mut out = io::BufWriter::with_capacity(STREAM_BUFFER.min(4 + size), w);
    out.write_all(&len.to_le_bytes())?;
    postcard::to_io(msg, &mut out).map_err(io::Error::other)?;
    out.flush()
}

/// Frames larger than this are decoded as they are read (see [`read_frame`]).
const STREAM_ABOVE: usize = 64 * 1024;
/// The write buffer of [`write_frame`].
const STREAM_BUFFER: usize = 64 * 1024;
/// The scratch buffer of a frame decoded as it is read: the largest single
/// string or byte block of a message (a chunk of a trace's records, 1 MiB).
const STREAM_SCRATCH: usize = crate::trace::store::CHUNK * 32 + 4096;

/// Reads one length-prefixed postcard frame. A large one (a trace) is
/// decoded as it is read, through a scratch buffer of one chunk: the test
/// process never holds the encoded trace and the decoded one at once.
pub(crate) fn read_frame<T: DeserializeOwned>(r: &mut impl Read) -> io::Result<T> {
    let mut len = [0u8; 4];
    r.read_exact(&mut len)?;
    let len = u32::from_le_bytes(len) as usize;
    if len <= STREAM_ABOVE {
        let mut body = vec![0u8; len];
        r.read_exact(&mut body)?;
        return postcard::from_bytes(&body).map_err(io::Error::other);
    }
    let mut body = r.take(len as u64);
    let mut scratch = vec![0u8; STREAM_SCRATCH.min(len)];
    let decoded = postcard::from_io((&mut body, &mut scratch[..]))
        .map(|(msg, _)| msg)
        .map_err(io::Error::other);
    // What the decoder did not need (nothing, for a well-formed frame) is
    // skipped, so the next frame starts where it should.
    io::copy(&mut body, &mut io::sink())?;
    decoded
}

/// The signal the harness's runner sends a supervisor (the process it
/// started for one test) when the test runs out of time: the supervisor
/// prints where the test process's threads are and the call's accesses so
/// far, kills it, and exits with [`REPORTED_EXIT_CODE`].
pub const REPORT_SIGNAL: c_int = libc::SIGUSR1;

/// The supervisor's exit code after a [`REPORT_SIGNAL`] report (the code
/// `timeout(1)` uses for "timed out").
pub const REPORTED_EXIT_CODE: i32 = 124;

/// The largest request part written before a doorbell: far below a Unix
/// socket's send buffer (`net.core.wmem_default`, about 208 KiB), so writing
/// it to the empty socket never blocks.
pub(crate) const PART_MAX: usize = 16 * 1024;
/// Bit 31 of a part's header: more parts follow.
pub(crate) const MORE: u32 = 1 << 31;

/// Writes `msg` in parts of at most [`PART_MAX`] bytes, calling `ring` (the
/// doorbell) after each. (The test process encodes its requests ahead with
/// [`encode_request`] and sends them with [`send_parts`].)
#[cfg(test)]
pub(crate) fn write_request(
    w: &mut impl Write,
    msg: &Request,
    ring: impl FnMut() -> io::Result<()>,
) -> io::Result<()> {
    send_parts(w, &encode_request(msg)?, ring)
}

/// `msg` as the parts a request travels in, each with its header: made
/// ahead of time, the request is then sent without allocating (the end of
/// a call is sent while the allocator's calls are being recorded).
pub(crate) fn encode_request(msg: &Request) -> io::Result<Vec<Vec<u8>>> {
    let body = postcard::to_stdvec(msg).map_err(io::Error::other)?;
    let mut parts = body.chunks(PART_MAX).peekable();
    if parts.peek().is_none() {
        return Err(io::Error::other("an empty request"));
    }
    let mut frames = Vec::new();
    while let Some(part) = parts.next() {
        // A part is at most PART_MAX bytes: its length fits in 31 bits.
        let mut header = part.len() as u32;
        if parts.peek().is_some() {
            header |= MORE;
        }
        let mut frame = Vec::with_capacity(4 + part.len());
        frame.extend_from_slice(&header.to_le_bytes());
        frame.extend_from_slice(part);
        frames.push(frame);
    }
    Ok(frames)
}

/// Sends parts made by [`encode_request`], ringing after each; allocates
/// nothing.
pub(crate) fn send_parts(
    w: &mut impl Write,
    parts: &[Vec<u8>],
    mut ring: impl FnMut() -> io::Result<()>,
) -> io::Result<()> {
    for frame in parts {
        w.write_all(frame)?;
        ring()?;
    }
    Ok(())
}

/// Reads one frame like [`read_frame`], into a stack buffer when it fits
/// (a `Reply::Started` does): no allocation for a reply without owned data.
pub(crate) fn read_small_frame<T: DeserializeOwned>(r: &mut impl Read) -> io::Result<T> {
    let mut len = [0u8; 4];
    r.read_exact(&mut len)?;
    let len = u32::from_le_bytes(len) as usize;
    let mut small = [0u8; 64];
    if len <= small.len() {
        r.read_exact(&mut small[..len])?;
        return postcard::from_bytes(&small[..len]).map_err(io::Error::other);
    }
    let mut body = vec![0u8; len];
    r.read_exact(&mut body)?;
    postcard::from_bytes(&body).map_err(io::Error::other)
}

/// The supervisor's side of [`send_parts`]: the parts read so far.
#[derive(Debug, Default)]
pub(crate) struct RequestParts {
    body: Vec<u8>,
}

impl RequestParts {
    /// Reads one part; returns the request once its last part is in.
    pub(crate) fn read(&mut self, r: &mut impl Read) -> io::Result<Option<Request>> {
        let mut header = [0u8; 4];
        let read = r.read_exact(&mut header).and_then(|()| {
            let header = u32::from_le_bytes(header);
            let len = (header & !MORE) as usize;
            if len > PART_MAX {
                return Err(io::Error::other(format!(
                    "a request part of {len} bytes (at most {PART_MAX})"
                )));
            }
            let at = self.body.len();
            self.body.resize(at + len, 0);
            r.read_exact(&mut self.body[at..])?;
            Ok(header & MORE != 0)
        });
        match read {
            Ok(true) => Ok(None),
            Ok(false) => {
                let body = std::mem::take(&mut self.body);
                postcard::from_bytes(&body)
                    .map(Some)
                    .map_err(io::Error::other)
            }
            Err(e) => {
                self.body.clear();
                Err(e)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_round_trip_through_a_byte_stream() {
        let mut buf = Vec::new();
        write_frame(&mut buf, &Reply::Refused("busy".into())).expect("write to a Vec");
        write_frame(
            &mut buf,
            &Request::EndCall {
                restore: vec![(1, 2, 3)],
            },
        )
        .expect("write to a Vec");
        let mut r = &buf[..];
        assert!(matches!(read_frame::<Reply>(&mut r), Ok(Reply::Refused(s)) if s == "busy"));
        assert!(matches!(
            read_frame::<Request>(&mut r),
            Ok(Request::EndCall { restore }) if restore == [(1, 2, 3)]
        ));
    }

    #[test]
    fn a_trace_larger_than_a_chunk_round_trips_through_a_frame() {
        use crate::trace::event::{AccessKind, RegionDesc, RegionId, RegionKind, Stats};
        use crate::trace::store::{CHUNK, Origin, Place, Records};
        let mut records = Records::default();
        let origin = Origin {
            ip: 0x40,
            insn: "mov [rdi+rax],dl",
            syscall: None,
        };
        let n = 2 * CHUNK + 5;
        for i in 0..n {
            let place = Place {
                kind: AccessKind::Write,
                region: Some(0),
                offset: i as isize,
                len: 1,
                tid: 3,
            };
            let _ = records.push(place, &origin, Ok(&[i as u8]));
        }
        let region = RegionDesc {
            id: RegionId(1),
            name: "dst".to_owned(),
            kind: RegionKind::Buffer,
            start: 0x1000,
            len: n as u64,
            span_start: 0,
            span_len: 0,
            fields: Vec::new(),
        };
        let trace = Trace::new(
            vec![region],
            records,
            Vec::new(),
            Vec::new(),
            Vec::new(),
            Stats::default(),
        );
        let mut wire = Vec::new();
        // Where chunks streamed to the memfd lie travels with the rest.
        let streamed = Streamed {
            records: vec![0, 1 << 20],
            values: vec![(2 << 20, 12_345)],
        };
        let reply = Reply::Trace {
            trace: Box::new(trace.clone()),
            streamed: streamed.clone(),
        };
        write_frame(&mut wire, &reply).expect("write to a Vec");
        write_frame(&mut wire, &Reply::Refused("next".into())).expect("write to a Vec");
        let mut r = &wire[..];
        let reply = read_frame::<Reply>(&mut r);
        assert!(
            matches!(reply, Ok(Reply::Trace { .. })),
            "not a trace: {reply:?}"
        );
        if let Ok(Reply::Trace {
            trace: back,
            streamed: where_,
        }) = reply
        {
            assert_eq!(where_, streamed);
            assert_eq!(*back, trace);
            assert_eq!(back.access_count(), n);
        }
        assert!(matches!(read_frame::<Reply>(&mut r), Ok(Reply::Refused(s)) if s == "next"));
    }

    #[test]
    fn a_large_request_travels_in_parts_each_followed_by_a_doorbell() {
        let restore: Vec<(u64, u64, i32)> = (0..5_000).map(|i| (i, 2 * i, 3)).collect();
        let mut wire = Vec::new();
        let mut rings = 0;
        write_request(
            &mut wire,
            &Request::EndCall {
                restore: restore.clone(),
            },
            || {
                rings += 1;
                Ok(())
            },
        )
        .expect("write to a Vec");
        assert!(rings > 1, "{rings} doorbells");
        let mut parts = RequestParts::default();
        let mut r = &wire[..];
        for _ in 1..rings {
            assert!(matches!(parts.read(&mut r), Ok(None)));
        }
        assert!(matches!(
            parts.read(&mut r),
            Ok(Some(Request::EndCall { restore: got })) if got == restore
        ));
        assert!(r.is_empty());
    }
}

//! How a trace holds its accesses: one fixed-size record per access (32
//! bytes), the values in one byte arena, and each distinct instruction
//! (address, text, system call) and caller chain stored once.
//!
//! The supervisor appends records as it records accesses; the same store
//! travels to the test process (the records as one block of bytes, not
//! field by field) and backs [`Trace`](super::event::Trace): everything in
//! the crate works on records, and the public `Vec<Access>` is only built
//! when a test asks for [`Trace::accesses`](super::event::Trace::accesses).
//!
//! Records and values live in chunks of a fixed size, so a store never
//! copies what it holds to grow and never holds more than one chunk it
//! does not use (beyond the first chunk, which grows like a `Vec`).
//!
//! A store may be bounded ([`Records::bounded`]): it keeps the first `n`
//! records, and every out-of-bounds access after them, in full; of every
//! access, kept or not, it keeps exact per-region summaries (bytes read,
//! written and maybe written, per-byte read counts, accesses per kind), so
//! the byte sets and the contracts on them stay exact.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};

use serde::de::{self, Deserializer, SeqAccess, Visitor};
use serde::ser::Serializer;
use serde::{Deserialize, Serialize};

use super::kind::{AccessKind, MAX_RECORDED_BYTES};

/// Records per chunk (1 MiB of records).
pub(crate) const CHUNK: usize = 1 << 15;
/// Bytes per chunk of the value arena.
pub(crate) const VALUE_CHUNK: usize = 1 << 18;

/// `Rec::region` of an access in no region.
const NO_REGION: u32 = u32::MAX;
/// `Rec::len` of an access of `u32::MAX` bytes or more: its length is in
/// `Records::long_lens`.
const LONG_LEN: u32 = u32::MAX;

const VALUE_AT_BITS: u32 = 48;
const VALUE_LEN_BITS: u32 = 7;

/// One access. `repr(C)`, eight-byte integers first and no padding: the
/// records travel as their bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(C)]
struct Rec {
    /// Offset of the first byte, relative to the region's first byte.
    offset: i64,
    /// Bits 0..48: where the value starts in the arena; 48..55: how many
    /// bytes of it are recorded (0..=64); 55..57: the kind.
    value: u64,
    len: u32,
    tid: i32,
    /// Index into `Records::sites`.
    site: u32,
    /// Index into the trace's regions, or `NO_REGION`.
    region: u32,
}

const REC_SIZE: usize = size_of::<Rec>();
const _: () = assert!(REC_SIZE == 32);

impl Rec {
    const ZERO: Rec = Rec {
        offset: 0,
        value: 0,
        len: 0,
        tid: 0,
        site: 0,
        region: 0,
    };

    fn value_at(&self) -> usize {
        (self.value & ((1 << VALUE_AT_BITS) - 1)) as usize
    }

    fn value_len(&self) -> usize {
        ((self.value >> VALUE_AT_BITS) & ((1 << VALUE_LEN_BITS) - 1)) as usize
    }

    fn kind(&self) -> AccessKind {
        match self.value >> (VALUE_AT_BITS + VALUE_LEN_BITS) {
            0 => AccessKind::Read,
            1 => AccessKind::Write,
            _ => AccessKind::MaybeWrite,
        }
    }

    fn pack(at: usize, len: usize, kind: AccessKind) -> u64 {
        let kind = match kind {
            AccessKind::Read => 0u64,
            AccessKind::Write => 1,
            AccessKind::MaybeWrite => 2,
        };
        at as u64 | (len as u64) << VALUE_AT_BITS | kind << (VALUE_AT_BITS + VALUE_LEN_BITS)
    }
}

/// A distinct instruction (or system call) that made accesses.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Site {
    pub(crate) ip: u64,
    /// The instruction, disassembled; `syscall` for the kernel's accesses.
    pub(crate) insn: String,
    /// The system call's name, for an access the kernel made.
    pub(crate) syscall: Option<String>,
}

/// One access as the store holds it, borrowed.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Stored<'a> {
    pub(crate) kind: AccessKind,
    /// Index into the trace's regions.
    pub(crate) region: Option<usize>,
    pub(crate) offset: isize,
    pub(crate) len: usize,
    pub(crate) bytes: &'a [u8],
    pub(crate) tid: i32,
    pub(crate) site: &'a Site,
    pub(crate) callers: &'a [u64],
}

/// Who made an access, as the supervisor knows it when recording.
pub(crate) struct Origin<'a> {
    pub(crate) ip: u64,
    pub(crate) insn: &'a str,
    pub(crate) syscall: Option<&'a str>,
}

/// What an access did and where, for [`Records::push`].
#[derive(Debug, Clone, Copy)]
pub(crate) struct Place {
    pub(crate) kind: AccessKind,
    /// Index into the trace's regions.
    pub(crate) region: Option<usize>,
    pub(crate) offset: isize,
    pub(crate) len: u64,
    pub(crate) tid: i32,
}

/// A hasher for instruction addresses: one multiplication.
#[derive(Default)]
pub(crate) struct IpHasher(u64);

impl Hasher for IpHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0.rotate_left(8) ^ u64::from(b)).wrapping_mul(0x9e37_79b9_7f4a_7c15);
        }
    }

    fn write_u64(&mut self, v: u64) {
        self.0 = (self.0 ^ v).wrapping_mul(0x9e37_79b9_7f4a_7c15);
    }
}

type IpMap<V> = HashMap<u64, V, BuildHasherDefault<IpHasher>>;

/// Bytes of a region per block of a [`Summary`].
const BLOCK: usize = 4096;

/// What a summary knows of one block of `BLOCK` bytes of a region. On
/// the wire each vector is one byte string (little-endian words): the test
/// process reads a frame from the socket as it decodes it, and element by
/// element a 1 MiB region's counts took a second of small reads.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct Block {
    /// Reads of each byte (saturating).
    #[serde(with = "le_words")]
    reads: Vec<u32>,
    /// One bit per byte certainly written.
    #[serde(with = "le_words")]
    written: Vec<u64>,
    /// One bit per byte maybe written.
    #[serde(with = "le_words")]
    maybe: Vec<u64>,
}

/// Vectors of words as one byte string of their little-endian bytes.
mod le_words {
    use serde::{Deserialize, Deserializer, Serializer};

    use super::BlobBuf;

    /// A word of a fixed size.
    pub(super) trait Word: Sized + Copy {
        const SIZE: usize;
        fn put(self, out: &mut Vec<u8>);
        fn get(bytes: &[u8]) -> Option<Self>;
    }

    impl Word for u32 {
        const SIZE: usize = 4;
        fn put(self, out: &mut Vec<u8>) {
            out.extend_from_slice(&self.to_le_bytes());
        }
        fn get(bytes: &[u8]) -> Option<Self> {
            Some(u32::from_le_bytes(bytes.try_into().ok()?))
        }
    }

    impl Word for u64 {
        const SIZE: usize = 8;
        fn put(self, out: &mut Vec<u8>) {
            out.extend_from_slice(&self.to_le_bytes());
        }
        fn get(bytes: &[u8]) -> Option<Self> {
            Some(u64::from_le_bytes(bytes.try_into().ok()?))
        }
    }

    pub(super) fn serialize<W: Word, S: Serializer>(v: &[W], s: S) -> Result<S::Ok, S::Error> {
        let mut bytes = Vec::with_capacity(v.len() * W::SIZE);
        for &w in v {
            w.put(&mut bytes);
        }
        s.serialize_bytes(&bytes)
    }

    pub(super) fn deserialize<'de, W: Word, D: Deserializer<'de>>(
        d: D,
    ) -> Result<Vec<W>, D::Error> {
        let BlobBuf(bytes) = BlobBuf::deserialize(d)?;
        if !bytes.len().is_multiple_of(W::SIZE) {
            return Err(serde::de::Error::custom("a partial word"));
        }
        bytes
            .chunks_exact(W::SIZE)
            .map(|c| W::get(c).ok_or_else(|| serde::de::Error::custom("a partial word")))
            .collect()
    }
}

impl Block {
    fn new() -> Block {
        Block {
            reads: vec![0; BLOCK],
            written: vec![0; BLOCK / 64],
            maybe: vec![0; BLOCK / 64],
        }
    }
}

/// Exact facts about every access to one region of a bounded store, kept
/// or not. Blocks of the region are allocated when first touched: about
/// 17 KiB per 4 KiB touched.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Summary {
    /// The region's length in bytes.
    len: u64,
    /// Accesses to the region (in or out of its bytes) per kind: read,
    /// write, maybe write.
    counts: [u64; 3],
    blocks: Vec<Option<Box<Block>>>,
}

fn kind_index(kind: AccessKind) -> usize {
    match kind {
        AccessKind::Read => 0,
        AccessKind::Write => 1,
        AccessKind::MaybeWrite => 2,
    }
}

impl Summary {
    /// Accesses of `kind` to the region, in or out of its bytes.
    pub(crate) fn count(&self, kind: AccessKind) -> u64 {
        self.counts[kind_index(kind)]
    }

    /// Notes an access of `len` bytes at `offset`; only the region's bytes
    /// go into the byte maps.
    fn note(&mut self, kind: AccessKind, offset: isize, len: u64) {
        let k = kind_index(kind);
        self.counts[k] = self.counts[k].saturating_add(1);
        let end = (offset as i128).saturating_add(len as i128);
        let lo = (offset as i128).clamp(0, self.len as i128) as u64;
        let hi = end.clamp(0, self.len as i128) as u64;
        let mut at = lo;
        while at < hi {
            let b = (at / BLOCK as u64) as usize;
            let from = (at % BLOCK as u64) as usize;
            let to = ((hi - at) as usize).min(BLOCK - from) + from;
            if self.blocks.len() <= b {
                self.blocks.resize_with(b + 1, || None);
            }
            let block = self.blocks[b].get_or_insert_with(|| Box::new(Block::new()));
            match kind {
                AccessKind::Read => {
                    for c in &mut block.reads[from..to] {
                        *c = c.saturating_add(1);
                    }
                }
                AccessKind::Write | AccessKind::MaybeWrite => {
                    let bits = if kind == AccessKind::Write {
                        &mut block.written
                    } else {
                        &mut block.maybe
                    };
                    for i in from..to {
                        bits[i / 64] |= 1 << (i % 64);
                    }
                }
            }
            at += (to - from) as u64;
        }
    }

    /// Whether byte `i` of block `block` has `kind`.
    fn has(block: &Block, kind: AccessKind, i: usize) -> bool {
        let bit = |bits: &[u64]| bits.get(i / 64).is_some_and(|w| w & (1 << (i % 64)) != 0);
        match kind {
            AccessKind::Read => block.reads.get(i).is_some_and(|&c| c > 0),
            AccessKind::Write => bit(&block.written),
            AccessKind::MaybeWrite => bit(&block.maybe),
        }
    }

    /// The region's bytes that had an access of `kind`: sorted, merged
    /// runs.
    pub(crate) fn bytes(&self, kind: AccessKind) -> Vec<std::ops::Range<usize>> {
        let mut runs: Vec<std::ops::Range<usize>> = Vec::new();
        for (b, block) in self.blocks.iter().enumerate() {
            let Some(block) = block else { continue };
            for i in 0..BLOCK {
                if Self::has(block, kind, i) {
                    let at = b * BLOCK + i;
                    match runs.last_mut() {
                        Some(r) if r.end == at => r.end = at + 1,
                        _ => runs.push(at..at + 1),
                    }
                }
            }
        }
        runs
    }

    /// `(offset, reads)` of every byte of the region read at least once, in
    /// order (counts saturate at `u32::MAX`).
    pub(crate) fn read_counts(&self) -> impl Iterator<Item = (usize, u32)> + '_ {
        self.blocks.iter().enumerate().flat_map(|(b, block)| {
            block.iter().flat_map(move |block| {
                block
                    .reads
                    .iter()
                    .enumerate()
                    .filter(|&(_, &c)| c > 0)
                    .map(move |(i, &c)| (b * BLOCK + i, c))
            })
        })
    }

    fn heap_bytes(&self) -> usize {
        let per = BLOCK * 4 + 2 * BLOCK / 8 + size_of::<Block>();
        self.blocks.capacity() * size_of::<Option<Box<Block>>>()
            + self.blocks.iter().flatten().count() * per
    }
}

/// The bound of a bounded store, and what it knows of every access.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Bound {
    /// Records kept in full (besides out-of-bounds accesses, always kept).
    pub(crate) keep: u64,
    /// Accesses not kept.
    pub(crate) dropped: u64,
    /// One summary per region of the trace, by index.
    pub(crate) regions: Vec<Summary>,
}

/// The accesses of one call, compact (see the module's comment).
#[derive(Debug, Clone, Default)]
pub(crate) struct Records {
    chunks: Vec<Vec<Rec>>,
    values: Vec<Vec<u8>>,
    sites: Vec<Site>,
    /// Distinct caller chains.
    chains: Vec<Vec<u64>>,
    /// `(access index, chain index)` of the accesses with callers, by index.
    callers: Vec<(u64, u32)>,
    /// `(access index, length)` of accesses of `u32::MAX` bytes or more.
    long_lens: Vec<(u64, u64)>,
    len: usize,
    /// The supervisor's index of `sites` by address (the last site of each
    /// address); not sent.
    site_index: IpMap<u32>,
    /// The bound and the summaries of a bounded store.
    bound: Option<Box<Bound>>,
    /// Record chunks streamed out ([`Records::stream_out`]): `chunks[0]`
    /// holds the records from `rec_base * CHUNK` on.
    rec_base: usize,
    /// Value chunks streamed out: `values[0]` is chunk `value_base`.
    value_base: usize,
}

/// A chunk of a store handed out by [`Records::stream_out`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Part<'a> {
    /// `CHUNK` records, as their bytes.
    Records(&'a [u8]),
    /// A chunk of the value arena.
    Values(&'a [u8]),
}

/// Where the chunks of a call's store that were streamed out during the
/// call lie in the file they were written to, in order: the reply at the
/// end of the call carries the rest of the store and this.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Streamed {
    /// Offset of each record chunk (`CHUNK` records, 1 MiB).
    pub(crate) records: Vec<u64>,
    /// Offset and length of each value chunk.
    pub(crate) values: Vec<(u64, u64)>,
}

impl Streamed {
    /// Whether nothing was streamed.
    pub(crate) fn is_empty(&self) -> bool {
        self.records.is_empty() && self.values.is_empty()
    }

    /// Bytes streamed.
    #[cfg(test)]
    pub(crate) fn bytes(&self) -> u64 {
        self.records.len() as u64 * (CHUNK * REC_SIZE) as u64
            + self.values.iter().map(|&(_, n)| n).sum::<u64>()
    }
}

impl PartialEq for Records {
    fn eq(&self, other: &Self) -> bool {
        self.len == other.len
            && self.rec_base == other.rec_base
            && self.value_base == other.value_base
            && self.bound == other.bound
            && self.iter().zip(other.iter()).all(|(a, b)| a == b)
    }
}

impl Eq for Records {}

impl PartialEq for Stored<'_> {
    fn eq(&self, o: &Self) -> bool {
        self.kind == o.kind
            && self.region == o.region
            && self.offset == o.offset
            && self.len == o.len
            && self.bytes == o.bytes
            && self.tid == o.tid
            && self.site == o.site
            && self.callers == o.callers
    }
}

impl Records {
    /// A store that keeps the first `keep` records in full, and every
    /// out-of-bounds access, with exact summaries of every access to the
    /// regions of lengths `region_lens` (by index).
    pub(crate) fn bounded(keep: u64, region_lens: impl IntoIterator<Item = u64>) -> Records {
        Records {
            bound: Some(Box::new(Bound {
                keep,
                dropped: 0,
                regions: region_lens
                    .into_iter()
                    .map(|len| Summary {
                        len,
                        ..Summary::default()
                    })
                    .collect(),
            })),
            ..Records::default()
        }
    }

    /// Number of accesses kept.
    pub(crate) fn len(&self) -> usize {
        self.len
    }

    /// Chunks of records held (not streamed out).
    pub(crate) fn chunks_held(&self) -> usize {
        self.chunks.len()
    }

    /// The bound, for a bounded store.
    pub(crate) fn bound(&self) -> Option<&Bound> {
        self.bound.as_deref()
    }

    /// The summary of the region at `index`, for a bounded store.
    pub(crate) fn summary(&self, index: usize) -> Option<&Summary> {
        self.bound.as_ref()?.regions.get(index)
    }

    /// Bytes of memory the store holds on the heap (capacities, not
    /// lengths), the index of sites included.
    pub(crate) fn heap_bytes(&self) -> usize {
        let chunks: usize = self.chunks.iter().map(|c| c.capacity() * REC_SIZE).sum();
        let values: usize = self.values.iter().map(Vec::capacity).sum();
        let sites: usize = self
            .sites
            .iter()
            .map(|s| s.insn.capacity() + s.syscall.as_ref().map_or(0, String::capacity))
            .sum::<usize>()
            + self.sites.capacity() * size_of::<Site>();
        let chains: usize = self.chains.iter().map(|c| c.capacity() * 8).sum::<usize>()
            + self.chains.capacity() * size_of::<Vec<u64>>();
        let outer = self.chunks.capacity() * size_of::<Vec<Rec>>()
            + self.values.capacity() * size_of::<Vec<u8>>();
        // A hash map holds about one slot (key, value, control byte) per
        // capacity unit.
        let index = self.site_index.capacity() * (size_of::<(u64, u32)>() + 1);
        let bound = self.bound.as_ref().map_or(0, |b| {
            b.regions.iter().map(Summary::heap_bytes).sum::<usize>()
                + b.regions.capacity() * size_of::<Summary>()
        });
        chunks
            + bound
            + values
            + sites
            + chains
            + outer
            + index
            + self.callers.capacity() * size_of::<(u64, u32)>()
            + self.long_lens.capacity() * size_of::<(u64, u64)>()
    }

    /// The index of the site of `origin`, added if new.
    fn site(&mut self, origin: &Origin<'_>) -> u32 {
        let same = |s: &Site| {
            s.ip == origin.ip && s.insn == origin.insn && s.syscall.as_deref() == origin.syscall
        };
        if let Some(&i) = self.site_index.get(&origin.ip)
            && same(&self.sites[i as usize])
        {
            return i;
        }
        // Another instruction at a known address (code that changed), or a
        // system call at an instruction's: rare, searched.
        let i = match self.sites.iter().rposition(same) {
            Some(i) => i as u32,
            None => {
                self.sites.push(Site {
                    ip: origin.ip,
                    insn: origin.insn.to_owned(),
                    syscall: origin.syscall.map(str::to_owned),
                });
                (self.sites.len() - 1) as u32
            }
        };
        self.site_index.insert(origin.ip, i);
        i
    }

    /// Room for `n` value bytes in the arena: their position.
    fn reserve_value(&mut self, n: usize) -> usize {
        let fits = self
            .values
            .last()
            .is_some_and(|v| v.len() + n <= VALUE_CHUNK);
        if !fits {
            // The first chunk grows as needed, later ones are whole.
            let cap = if self.values.is_empty() && self.value_base == 0 {
                n.max(64)
            } else {
                VALUE_CHUNK
            };
            self.values.push(Vec::with_capacity(cap));
        }
        let chunk = self.values.len() - 1;
        let v = &mut self.values[chunk];
        let at = v.len();
        v.resize(at + n, 0);
        (self.value_base + chunk) * VALUE_CHUNK + at
    }

    fn value_slot(&self, at: usize, n: usize) -> &[u8] {
        let (chunk, at) = (at / VALUE_CHUNK, at % VALUE_CHUNK);
        chunk
            .checked_sub(self.value_base)
            .and_then(|c| self.values.get(c))
            .and_then(|v| v.get(at..at + n))
            .unwrap_or(&[])
    }

    /// Appends an access; returns its index, or `None` when a bounded
    /// store does not keep it (its summary has it). `bytes` is its value
    /// if known, else `Err(n)` reserves room for `n` bytes set later with
    /// [`Records::set_bytes`].
    pub(crate) fn push(
        &mut self,
        at: Place,
        origin: &Origin<'_>,
        bytes: Result<&[u8], usize>,
    ) -> Option<usize> {
        self.push_kept(at, origin, bytes, false)
    }

    /// As [`Records::push`]; with `keep`, a bounded store keeps the access
    /// in full however many it kept (an access that breaks a contract
    /// declared before the call).
    pub(crate) fn push_kept(
        &mut self,
        at: Place,
        origin: &Origin<'_>,
        bytes: Result<&[u8], usize>,
        keep: bool,
    ) -> Option<usize> {
        let Place {
            kind,
            region,
            offset,
            len,
            tid,
        } = at;
        if let Some(bound) = &mut self.bound {
            // Out-of-bounds accesses (and those in no region) are kept.
            let mut inside = false;
            if let Some(s) = region.and_then(|r| bound.regions.get_mut(r)) {
                inside = offset >= 0
                    && (offset as u128).saturating_add(u128::from(len)) <= u128::from(s.len);
                s.note(kind, offset, len);
            }
            if inside && !keep && self.len as u64 >= bound.keep {
                bound.dropped += 1;
                return None;
            }
        }
        let site = self.site(origin);
        let (reserve, known) = match bytes {
            Ok(b) => (
                b.len().min(MAX_RECORDED_BYTES),
                b.len().min(MAX_RECORDED_BYTES),
            ),
            Err(n) => (n.min(MAX_RECORDED_BYTES), 0),
        };
        let at = self.reserve_value(reserve);
        if let Ok(b) = bytes
            && let Some(v) = self.values.last_mut()
        {
            // `reserve_value` put the room at the end of the last chunk.
            let off = at % VALUE_CHUNK;
            v[off..off + known].copy_from_slice(&b[..known]);
        }
        let index = self.len;
        if len >= u64::from(LONG_LEN) {
            self.long_lens.push((index as u64, len));
        }
        let rec = Rec {
            offset: offset as i64,
            value: Rec::pack(at, known, kind),
            len: len.min(u64::from(LONG_LEN)) as u32,
            tid,
            site,
            region: region.map_or(NO_REGION, |r| r as u32),
        };
        match self.chunks.last_mut() {
            Some(c) if c.len() < CHUNK => c.push(rec),
            _ => {
                let mut c = Vec::with_capacity(if self.chunks.is_empty() { 16 } else { CHUNK });
                c.push(rec);
                self.chunks.push(c);
            }
        }
        self.len += 1;
        Some(index)
    }

    fn rec(&self, index: usize) -> Option<&Rec> {
        self.chunks
            .get((index / CHUNK).checked_sub(self.rec_base)?)?
            .get(index % CHUNK)
    }

    fn rec_mut(&mut self, index: usize) -> Option<&mut Rec> {
        self.chunks
            .get_mut((index / CHUNK).checked_sub(self.rec_base)?)?
            .get_mut(index % CHUNK)
    }

    fn values_mut(&mut self, chunk: usize) -> Option<&mut Vec<u8>> {
        self.values.get_mut(chunk.checked_sub(self.value_base)?)
    }

    /// Sets the value of access `index` (a write's bytes, read after the
    /// instruction ran), at most the room reserved for it.
    pub(crate) fn set_bytes(&mut self, index: usize, bytes: &[u8]) {
        let Some(rec) = self.rec(index).copied() else {
            return;
        };
        let at = rec.value_at();
        let (chunk, off) = (at / VALUE_CHUNK, at % VALUE_CHUNK);
        // The room reserved: up to the next value, or the chunk's end.
        let held = chunk
            .checked_sub(self.value_base)
            .and_then(|c| self.values.get(c));
        let room = held.map_or(0, |v| {
            let next = self
                .rec(index + 1)
                .map(Rec::value_at)
                .filter(|&n| n / VALUE_CHUNK == chunk)
                .map_or(v.len(), |n| n % VALUE_CHUNK);
            next.saturating_sub(off)
        });
        let n = bytes.len().min(room).min(MAX_RECORDED_BYTES);
        if let Some(v) = self.values_mut(chunk) {
            v[off..off + n].copy_from_slice(&bytes[..n]);
        }
        if let Some(r) = self.rec_mut(index) {
            r.value = Rec::pack(at, n, r.kind());
        }
    }

    /// Gives access `index` the caller chain `callers`.
    pub(crate) fn set_callers(&mut self, index: usize, callers: &[u64]) {
        let chain = match self.chains.iter().rposition(|c| c == callers) {
            Some(i) => i as u32,
            None => {
                self.chains.push(callers.to_vec());
                (self.chains.len() - 1) as u32
            }
        };
        let key = index as u64;
        match self.callers.binary_search_by_key(&key, |&(i, _)| i) {
            Ok(at) => self.callers[at].1 = chain,
            Err(at) => self.callers.insert(at, (key, chain)),
        }
    }

    /// Access `index`.
    #[cfg(test)]
    pub(crate) fn get(&self, index: usize) -> Option<Stored<'_>> {
        let rec = self.rec(index)?;
        let key = index as u64;
        let callers = if self.callers.is_empty() {
            &[][..]
        } else {
            self.callers
                .binary_search_by_key(&key, |&(i, _)| i)
                .ok()
                .and_then(|at| self.chains.get(self.callers[at].1 as usize))
                .map_or(&[][..], Vec::as_slice)
        };
        Some(self.stored(rec, index, callers))
    }

    fn stored<'a>(&'a self, rec: &Rec, index: usize, callers: &'a [u64]) -> Stored<'a> {
        let len = if rec.len == LONG_LEN {
            self.long_lens
                .binary_search_by_key(&(index as u64), |&(i, _)| i)
                .map_or(u64::from(LONG_LEN), |at| self.long_lens[at].1)
        } else {
            u64::from(rec.len)
        };
        static UNKNOWN: Site = Site {
            ip: 0,
            insn: String::new(),
            syscall: None,
        };
        Stored {
            kind: rec.kind(),
            region: (rec.region != NO_REGION).then_some(rec.region as usize),
            offset: rec.offset as isize,
            len: len as usize,
            bytes: self.value_slot(rec.value_at(), rec.value_len()),
            tid: rec.tid,
            site: self.sites.get(rec.site as usize).unwrap_or(&UNKNOWN),
            callers,
        }
    }

    /// Every access from `from` on, in order.
    /// Accesses streamed out ([`Records::stream_out`]) are not held: the
    /// iteration starts after them.
    pub(crate) fn iter_from(&self, from: usize) -> impl Iterator<Item = Stored<'_>> + '_ {
        let from = from.max(self.rec_base * CHUNK);
        let mut callers = self.callers.iter().peekable();
        while callers.next_if(|&&(i, _)| (i as usize) < from).is_some() {}
        (from..self.len).filter_map(move |index| {
            let rec = self.rec(index)?;
            let chain = match callers.next_if(|&&(i, _)| i as usize == index) {
                Some(&(_, c)) => self.chains.get(c as usize).map_or(&[][..], Vec::as_slice),
                None => &[][..],
            };
            Some(self.stored(rec, index, chain))
        })
    }

    /// Every access, in order.
    pub(crate) fn iter(&self) -> impl Iterator<Item = Stored<'_>> + '_ {
        self.iter_from(0)
    }

    /// A store of the accesses from `from` on (for a report).
    pub(crate) fn tail(&self, from: usize) -> Records {
        let mut out = Records::default();
        for a in self.iter_from(from) {
            let origin = Origin {
                ip: a.site.ip,
                insn: &a.site.insn,
                syscall: a.site.syscall.as_deref(),
            };
            let Some(i) = out.push(
                Place {
                    kind: a.kind,
                    region: a.region,
                    offset: a.offset,
                    len: a.len as u64,
                    tid: a.tid,
                },
                &origin,
                Ok(a.bytes),
            ) else {
                continue;
            };
            if !a.callers.is_empty() {
                out.set_callers(i, a.callers);
            }
        }
        out
    }

    /// Forgets every access (the sites are kept; a bounded store's
    /// summaries too).
    pub(crate) fn clear(&mut self) {
        self.chunks.clear();
        self.values.clear();
        self.callers.clear();
        self.long_lens.clear();
        self.len = 0;
        self.rec_base = 0;
        self.value_base = 0;
    }

    /// Releases the room the last chunks hold beyond their lengths.
    pub(crate) fn shrink_to_fit(&mut self) {
        if let Some(c) = self.chunks.last_mut() {
            c.shrink_to_fit();
        }
        if let Some(v) = self.values.last_mut() {
            v.shrink_to_fit();
        }
        self.site_index = IpMap::default();
    }

    /// Hands `send` every chunk that can no longer change, oldest first,
    /// and frees each one it takes. A record chunk goes when it is full,
    /// all its records lie before access `limit` (the first that may still
    /// change: a write whose bytes are read back at its thread's next
    /// stop, an access whose callers are attached at the end of its fault)
    /// and a later chunk exists; a value chunk when only records already
    /// sent use it and a later chunk exists. So the last chunk of each
    /// kind, where new accesses go, stays, and every record held keeps its
    /// value. Stops at the first chunk `send` refuses (returns `false`):
    /// that one and the later ones stay.
    pub(crate) fn stream_out(&mut self, limit: usize, mut send: impl FnMut(Part<'_>) -> bool) {
        let limit = limit.min(self.len);
        while self.chunks.len() > 1
            && (self.rec_base + 1) * CHUNK <= limit
            && self.chunks[0].len() == CHUNK
        {
            if !send(Part::Records(rec_bytes(&self.chunks[0]))) {
                return;
            }
            self.chunks.remove(0);
            self.rec_base += 1;
        }
        // Values are in the records' order: the first record held uses the
        // first value chunk still needed.
        let needed = self
            .rec(self.rec_base * CHUNK)
            .map_or(usize::MAX, |r| r.value_at() / VALUE_CHUNK);
        while self.values.len() > 1 && self.value_base < needed {
            if !send(Part::Values(&self.values[0])) {
                return;
            }
            self.values.remove(0);
            self.value_base += 1;
        }
    }

    /// Puts the chunks streamed out of this store (`streamed`) back in
    /// front of it: `read(offset, buf)` fills `buf` with the bytes at
    /// `offset` of the file they were written to, straight into the
    /// chunks. For a store decoded from the reply that carried `streamed`.
    pub(crate) fn rejoin(
        &mut self,
        streamed: &Streamed,
        mut read: impl FnMut(u64, &mut [u8]) -> std::io::Result<()>,
    ) -> std::io::Result<()> {
        if streamed.is_empty() {
            return Ok(());
        }
        if self.rec_base != 0 || self.value_base != 0 {
            return Err(std::io::Error::other("the store is not whole"));
        }
        let mut chunks = Vec::with_capacity(streamed.records.len() + self.chunks.len());
        for &at in &streamed.records {
            let mut c = vec![Rec::ZERO; CHUNK];
            read(at, rec_bytes_mut(&mut c))?;
            chunks.push(c);
        }
        let mut values = Vec::with_capacity(streamed.values.len() + self.values.len());
        for &(at, n) in &streamed.values {
            let n = usize::try_from(n)
                .ok()
                .filter(|&n| n <= VALUE_CHUNK)
                .ok_or_else(|| std::io::Error::other("a streamed value chunk too large"))?;
            let mut v = vec![0u8; n];
            read(at, &mut v)?;
            values.push(v);
        }
        self.len += chunks.len() * CHUNK;
        chunks.append(&mut self.chunks);
        values.append(&mut self.values);
        self.chunks = chunks;
        self.values = values;
        Ok(())
    }
}

/// The records' bytes: `Rec` is plain integers without padding.
fn rec_bytes(recs: &[Rec]) -> &[u8] {
    // Rec's size is the sum of its fields' (checked above): no padding.
    // SAFETY: Rec is repr(C) integers without padding: every byte is initialised; u8 needs no alignment.
    unsafe { std::slice::from_raw_parts(recs.as_ptr().cast::<u8>(), std::mem::size_of_val(recs)) }
}

/// The records' bytes, to fill them: any bytes make a valid `Rec`.
fn rec_bytes_mut(recs: &mut [Rec]) -> &mut [u8] {
    let n = std::mem::size_of_val(recs);
    // SAFETY: Rec is repr(C) integers without padding: any bytes written
    // through the slice make valid records; u8 needs no alignment.
    unsafe { std::slice::from_raw_parts_mut(recs.as_mut_ptr().cast::<u8>(), n) }
}

/// Records from the bytes [`rec_bytes`] gave (on the same architecture:
/// the crate is x86-64 only).
fn recs_from(bytes: &[u8]) -> Option<Vec<Rec>> {
    if !bytes.len().is_multiple_of(REC_SIZE) {
        return None;
    }
    let n = bytes.len() / REC_SIZE;
    let mut recs: Vec<Rec> = Vec::with_capacity(n);
    // The regions do not overlap: `recs` is a fresh allocation.
    // SAFETY: room for n records (bytes.len() bytes); any bits are a valid Rec (integers only).
    unsafe {
        std::ptr::copy_nonoverlapping(bytes.as_ptr(), recs.as_mut_ptr().cast::<u8>(), bytes.len());
        recs.set_len(n);
    }
    Some(recs)
}

/// A byte block that serialises as bytes (one length and the bytes in
/// postcard), not element by element.
struct Blob<'a>(&'a [u8]);

impl Serialize for Blob<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_bytes(self.0)
    }
}

struct BlobBuf(Vec<u8>);

impl<'de> Deserialize<'de> for BlobBuf {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = BlobBuf;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("bytes")
            }
            fn visit_bytes<E: de::Error>(self, v: &[u8]) -> Result<BlobBuf, E> {
                Ok(BlobBuf(v.to_vec()))
            }
            fn visit_byte_buf<E: de::Error>(self, v: Vec<u8>) -> Result<BlobBuf, E> {
                Ok(BlobBuf(v))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<BlobBuf, A::Error> {
                let mut v = Vec::new();
                while let Some(b) = seq.next_element()? {
                    v.push(b);
                }
                Ok(BlobBuf(v))
            }
        }
        d.deserialize_byte_buf(V)
    }
}

/// The wire form: every chunk as one block of bytes.
#[derive(Serialize)]
struct WireOut<'a> {
    chunks: Vec<Blob<'a>>,
    values: Vec<Blob<'a>>,
    sites: &'a [Site],
    chains: &'a [Vec<u64>],
    callers: &'a [(u64, u32)],
    long_lens: &'a [(u64, u64)],
    bound: Option<&'a Bound>,
}

#[derive(Deserialize)]
struct WireIn {
    chunks: Vec<BlobBuf>,
    values: Vec<BlobBuf>,
    sites: Vec<Site>,
    chains: Vec<Vec<u64>>,
    callers: Vec<(u64, u32)>,
    long_lens: Vec<(u64, u64)>,
    bound: Option<Box<Bound>>,
}

impl Serialize for Records {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        WireOut {
            chunks: self.chunks.iter().map(|c| Blob(rec_bytes(c))).collect(),
            values: self.values.iter().map(|v| Blob(v)).collect(),
            sites: &self.sites,
            chains: &self.chains,
            callers: &self.callers,
            long_lens: &self.long_lens,
            bound: self.bound.as_deref(),
        }
        .serialize(s)
    }
}

impl<'de> Deserialize<'de> for Records {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let w = WireIn::deserialize(d)?;
        let mut chunks = Vec::with_capacity(w.chunks.len());
        let mut len = 0;
        let count = w.chunks.len();
        for (i, c) in w.chunks.into_iter().enumerate() {
            let recs = recs_from(&c.0)
                .ok_or_else(|| de::Error::custom("a record chunk of a partial record"))?;
            // Indices are computed as chunk * CHUNK + position.
            if recs.len() > CHUNK || (i + 1 < count && recs.len() != CHUNK) {
                return Err(de::Error::custom("a record chunk of the wrong size"));
            }
            len += recs.len();
            chunks.push(recs);
        }
        let values: Vec<Vec<u8>> = w.values.into_iter().map(|v| v.0).collect();
        if values.iter().any(|v| v.len() > VALUE_CHUNK) {
            return Err(de::Error::custom("a value chunk too large"));
        }
        Ok(Records {
            chunks,
            values,
            sites: w.sites,
            chains: w.chains,
            callers: w.callers,
            long_lens: w.long_lens,
            len,
            site_index: IpMap::default(),
            bound: w.bound,
            rec_base: 0,
            value_base: 0,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn origin(ip: u64, insn: &str) -> Origin<'_> {
        Origin {
            ip,
            insn,
            syscall: None,
        }
    }

    #[test]
    fn a_record_is_32_bytes_and_a_byte_access_costs_33_bytes_of_store() {
        let mut r = Records::default();
        for i in 0..3 * CHUNK {
            r.push(
                Place {
                    kind: AccessKind::Write,
                    region: Some(0),
                    offset: i as isize,
                    len: 1,
                    tid: 7,
                },
                &origin(0x1000, "mov [rdi],dl"),
                Ok(&[0xab]),
            );
        }
        r.shrink_to_fit();
        let per = r.heap_bytes() as f64 / r.len() as f64;
        assert!((33.0..33.1).contains(&per), "{per} bytes per access");
    }

    #[test]
    fn instructions_are_stored_once_and_accesses_read_back_as_recorded() {
        let mut r = Records::default();
        let load = origin(0x10, "mov al,[rsi]");
        let store = origin(0x14, "mov [rdi],al");
        for i in 0..4 {
            r.push(
                Place {
                    kind: AccessKind::Read,
                    region: Some(1),
                    offset: i,
                    len: 1,
                    tid: 5,
                },
                &load,
                Ok(&[i as u8]),
            );
            r.push(
                Place {
                    kind: AccessKind::Write,
                    region: Some(0),
                    offset: i,
                    len: 1,
                    tid: 5,
                },
                &store,
                Err(1),
            );
        }
        r.set_bytes(3, &[0x42]);
        r.set_callers(5, &[0x99, 0x77]);
        assert_eq!(r.sites.len(), 2);
        let all: Vec<_> = r.iter().collect();
        assert_eq!(all.len(), 8);
        assert_eq!(all[2].bytes, &[1]);
        assert_eq!(all[2].site.insn, "mov al,[rsi]");
        assert_eq!(all[3].bytes, &[0x42]);
        assert_eq!(all[1].bytes, &[] as &[u8]);
        assert_eq!(all[5].callers, &[0x99, 0x77]);
        assert_eq!(r.get(5).map(|a| a.callers), Some(&[0x99u64, 0x77][..]));
        assert_eq!(all[4].callers, &[] as &[u64]);
        assert_eq!(all[7].kind, AccessKind::Write);
        assert_eq!(all[7].offset, 3);
    }

    #[test]
    fn a_store_round_trips_through_postcard_across_chunks() {
        let mut r = Records::default();
        for i in 0..CHUNK + 3 {
            let bytes = [i as u8; 64];
            r.push(
                Place {
                    kind: AccessKind::MaybeWrite,
                    region: None,
                    offset: -(i as isize),
                    len: if i == 1 { 5 << 32 } else { 64 },
                    tid: -1,
                },
                &origin(i as u64 % 3, "vmovdqu64 [rdi]{k1},zmm0"),
                Ok(&bytes),
            );
        }
        r.set_callers(CHUNK + 1, &[1, 2, 3]);
        let wire = postcard::to_stdvec(&r).expect("encode");
        let back: Records = postcard::from_bytes(&wire).expect("decode");
        assert_eq!(back, r);
        assert_eq!(back.get(1).map(|a| a.len), Some(5 << 32));
        assert_eq!(
            back.get(CHUNK + 2).map(|a| a.offset),
            Some(-(CHUNK as isize) - 2)
        );
        assert_eq!(
            back.get(CHUNK + 1).map(|a| a.callers),
            Some(&[1u64, 2, 3][..])
        );
    }

    #[test]
    fn a_bounded_store_keeps_the_first_records_and_out_of_bounds_ones_and_summarises_all() {
        let mut r = Records::bounded(2, [10, 5000]);
        let o = origin(1, "mov [rdi],al");
        let push = |r: &mut Records, kind, region, offset: isize, len| {
            r.push(
                Place {
                    kind,
                    region: Some(region),
                    offset,
                    len,
                    tid: 1,
                },
                &o,
                Err(len as usize),
            )
        };
        assert_eq!(push(&mut r, AccessKind::Read, 0, 0, 4), Some(0));
        assert_eq!(push(&mut r, AccessKind::Read, 0, 2, 4), Some(1));
        assert_eq!(push(&mut r, AccessKind::Write, 0, 3, 1), None);
        // Out of bounds: kept, its in-bounds bytes summarised.
        assert_eq!(push(&mut r, AccessKind::Write, 0, 8, 4), Some(2));
        assert_eq!(push(&mut r, AccessKind::MaybeWrite, 1, 4090, 10), None);
        assert_eq!(r.len(), 3);
        assert_eq!(r.bound().map(|b| b.dropped), Some(2));
        let s = r.summary(0).expect("bounded");
        assert_eq!(
            s.bytes(AccessKind::Read),
            [std::ops::Range { start: 0, end: 6 }]
        );
        assert_eq!(s.bytes(AccessKind::Write), [3..4, 8..10]);
        assert_eq!(s.count(AccessKind::Write), 2);
        let counts: Vec<_> = s.read_counts().collect();
        assert_eq!(counts, [(0, 1), (1, 1), (2, 2), (3, 2), (4, 1), (5, 1)]);
        // Across two blocks.
        let s = r.summary(1).expect("bounded");
        assert_eq!(
            s.bytes(AccessKind::MaybeWrite),
            [std::ops::Range {
                start: 4090,
                end: 4100
            }]
        );
        let wire = postcard::to_stdvec(&r).expect("encode");
        let back: Records = postcard::from_bytes(&wire).expect("decode");
        assert_eq!(back, r);
    }

    /// A store of `n` accesses of varied value lengths (so value chunks
    /// end short of full), with callers and a long length here and there;
    /// the writes' bytes are set later (`Err`).
    fn varied(n: usize) -> Records {
        let mut r = Records::default();
        for i in 0..n {
            let write = i % 3 == 0;
            let len = if i == 5 { 7 << 32 } else { (i % 70) as u64 };
            let value = [i as u8; 64];
            let shown = (len as usize).min(MAX_RECORDED_BYTES);
            let at = r.push(
                Place {
                    kind: if write {
                        AccessKind::Write
                    } else {
                        AccessKind::Read
                    },
                    region: (i % 11 != 0).then_some(i % 4),
                    offset: i as isize - 3,
                    len,
                    tid: (i % 5) as i32,
                },
                &origin(0x1000 + (i % 13) as u64, if write { "st" } else { "ld" }),
                if write {
                    Err(shown)
                } else {
                    Ok(&value[..shown])
                },
            );
            if let Some(at) = at
                && i % 1000 == 7
            {
                r.set_callers(at, &[i as u64, 1, 2]);
            }
        }
        r
    }

    /// Streams `r` out into a byte file as the supervisor does, and gives
    /// where each chunk went.
    fn stream_into(r: &mut Records, limit: usize, file: &mut Vec<u8>, out: &mut Streamed) {
        r.stream_out(limit, |part| {
            let at = file.len() as u64;
            match part {
                Part::Records(b) => {
                    file.extend_from_slice(b);
                    out.records.push(at);
                }
                Part::Values(b) => {
                    file.extend_from_slice(b);
                    out.values.push((at, b.len() as u64));
                }
            }
            true
        });
    }

    /// The test process's side: the reply's store, decoded, with the
    /// streamed chunks read back from `file`.
    fn rejoined(tail: &Records, file: &[u8], streamed: &Streamed) -> Records {
        let wire = postcard::to_stdvec(tail).expect("encode");
        let mut back: Records = postcard::from_bytes(&wire).expect("decode");
        back.rejoin(streamed, |at, buf| {
            let at = at as usize;
            buf.copy_from_slice(&file[at..at + buf.len()]);
            Ok(())
        })
        .expect("rejoin");
        back
    }

    #[test]
    fn a_store_streamed_out_in_chunks_and_rejoined_equals_the_whole_store() {
        let n = 5 * CHUNK + 123;
        let mut whole = varied(n);
        for i in (0..n).step_by(3) {
            whole.set_bytes(i, &[(i as u8).wrapping_mul(7); 64]);
        }
        let mut r = varied(n);
        let mut file = Vec::new();
        let mut streamed = Streamed::default();
        // The writes of the first two chunks and a half are read back; the
        // rest still wait (the oldest is the limit).
        let limit = 2 * CHUNK + CHUNK / 2;
        for i in (0..limit).step_by(3) {
            r.set_bytes(i, &[(i as u8).wrapping_mul(7); 64]);
        }
        let limit = limit.next_multiple_of(3);
        stream_into(&mut r, limit, &mut file, &mut streamed);
        assert_eq!(streamed.records.len(), 2, "chunks wholly before the limit");
        assert!(!streamed.values.is_empty());
        assert!(r.heap_bytes() < whole.heap_bytes());
        // The records held are whole, with their values.
        assert_eq!(r.iter().count(), n - 2 * CHUNK);
        assert!(
            r.iter()
                .zip(whole.iter_from(2 * CHUNK))
                .take(limit - 2 * CHUNK)
                .all(|(a, b)| a == b)
        );
        for i in (limit..n).step_by(3) {
            r.set_bytes(i, &[(i as u8).wrapping_mul(7); 64]);
        }
        stream_into(&mut r, n, &mut file, &mut streamed);
        assert_eq!(streamed.records.len(), 5, "all but the last chunk");
        assert_eq!(streamed.bytes(), file.len() as u64);
        r.shrink_to_fit();
        let back = rejoined(&r, &file, &streamed);
        assert_eq!(back, whole);
        assert_eq!(back.get(5).map(|a| a.len), Some(7 << 32));
        assert_eq!(
            back.get(1007).map(|a| a.callers),
            Some(&[1007u64, 1, 2][..])
        );
        // Nothing streamed: the reply is the whole store.
        let mut small = varied(100);
        let mut none = Streamed::default();
        stream_into(&mut small, 100, &mut Vec::new(), &mut none);
        assert!(none.is_empty());
        assert_eq!(rejoined(&small, &[], &none), small);
    }

    #[test]
    fn a_chunk_the_sink_refuses_stays_in_the_store() {
        let n = 3 * CHUNK + 1;
        let whole = varied(n);
        let mut r = varied(n);
        let mut sent = 0;
        r.stream_out(n, |_| {
            sent += 1;
            sent == 1
        });
        assert_eq!(r.iter().count(), n - CHUNK);
        // Refused again: nothing lost, nothing more sent.
        r.stream_out(n, |_| false);
        assert_eq!(r.iter().count(), n - CHUNK);
        let mut file = Vec::new();
        let mut streamed = Streamed::default();
        // What was sent first is in the file as the supervisor writes it.
        let mut first = varied(n);
        stream_into(&mut first, CHUNK - 1, &mut file, &mut streamed);
        assert_eq!(streamed.records.len(), 0, "the limit holds the chunk back");
        stream_into(&mut first, n, &mut file, &mut streamed);
        assert_eq!(rejoined(&first, &file, &streamed), whole);
    }

    #[test]
    fn set_bytes_keeps_within_the_room_reserved() {
        let mut r = Records::default();
        let o = origin(1, "rep stosb");
        r.push(
            Place {
                kind: AccessKind::Write,
                region: Some(0),
                offset: 0,
                len: 100,
                tid: 1,
            },
            &o,
            Err(100),
        );
        r.push(
            Place {
                kind: AccessKind::Read,
                region: Some(0),
                offset: 0,
                len: 2,
                tid: 1,
            },
            &o,
            Ok(&[1, 2]),
        );
        r.set_bytes(0, &[9; 100]);
        assert_eq!(r.get(0).map(|a| a.bytes.len()), Some(MAX_RECORDED_BYTES));
        assert_eq!(r.get(1).map(|a| a.bytes), Some(&[1u8, 2][..]));
    }
}

//! Structs: a field that is never written (in a guarded buffer, and in memory the test
//! tracks with `Tracer::track`), and a linked list whose nodes live in two buffers.

use traced_ffi::{Region, Tracer};
use traced_ffi_fixtures::{Node, Triple};

use crate::check::{Expected, assert_accesses, assert_paths};
use crate::levels::{Level, at_both_levels};

/// The middle field's value before the call: it must survive.
const B_BEFORE: u32 = 0xbbbb_bbbb;

fn triple_bytes(t: &Triple) -> Vec<u8> {
    [t.a, t.b, t.c]
        .iter()
        .flat_map(|f| f.to_le_bytes())
        .collect()
}

fn init_triple_skip_middle_never_writes_b(t: &mut Tracer, level: &Level) {
    let before = Triple {
        a: 0,
        b: B_BEFORE,
        c: 0,
    };
    let mut untraced = before;
    // SAFETY: `untraced` is a valid, writable Triple.
    unsafe { (level.init_triple_skip_middle)(&mut untraced) };

    let mut buf = t.buffer_from("triple", &triple_bytes(&before));
    assert_eq!(buf.len(), size_of::<Triple>());
    let p = buf.as_mut_ptr().cast::<Triple>();
    // SAFETY: `p` is 4-aligned (the buffer's end is page-aligned, its length 12) and
    // valid for writes of one Triple.
    let ((), trace) = t.call(|| unsafe { (level.init_triple_skip_middle)(p) });

    let [a, c] = level.sites.init_triple_skip_middle;
    assert_accesses!(
        trace,
        [
            Expected::write(&buf, 0, &Triple::A_VALUE.to_le_bytes(), a),
            Expected::write(&buf, 8, &Triple::C_VALUE.to_le_bytes(), c),
        ]
    );
    assert_eq!(trace.written(&buf).ranges(), &[0..4, 8..12]);
    assert!(trace.read(&buf).is_empty());
    assert!(trace.out_of_bounds().is_empty());
    assert_paths!(trace, [(a, 1), (c, 1)]);
    assert_eq!(&buf[..], &triple_bytes(&untraced)[..]);
    assert_eq!(
        untraced,
        Triple {
            a: Triple::A_VALUE,
            b: B_BEFORE,
            c: Triple::C_VALUE
        }
    );
}

at_both_levels!(init_triple_skip_middle_never_writes_b =>
    init_triple_skip_middle_o0_writes_bytes_0_to_4_and_8_to_12_only,
    init_triple_skip_middle_o2_writes_bytes_0_to_4_and_8_to_12_only);

/// Two pages the test allocates itself (page-aligned, so no other allocation shares
/// them): tracked ranges live in the first one.
#[repr(C, align(4096))]
struct TwoPages([u8; 8192]);

/// Where the tracked Triple sits in the first page: away from both of its ends, so
/// untracked bytes of the same page lie on both sides.
const TRIPLE_AT: usize = 0x100;

/// `track` on a Triple inside the test's own page: accesses to its 12 bytes are
/// recorded (relative to the Triple); accesses to other bytes of the same page are
/// executed (they fault, and run) but not recorded.
fn tracked_triple_records_only_the_tracked_bytes(t: &mut Tracer, level: &Level) {
    let mut pages = Box::new(TwoPages([0; 8192]));
    let before = Triple {
        a: 0,
        b: B_BEFORE,
        c: 0,
    };
    pages.0[TRIPLE_AT..TRIPLE_AT + 12].copy_from_slice(&triple_bytes(&before));
    let base = pages.0.as_mut_ptr();
    // SAFETY: TRIPLE_AT + 12 <= 8192: the pointer stays inside `pages`.
    let triple = unsafe { base.add(TRIPLE_AT) };
    // `pages` is page-aligned, two whole pages, and only this thread touches them.
    // SAFETY: `pages` is this test's own allocation, alive until after `untrack` below.
    let tracked = unsafe { t.track("triple", triple, 12) };
    assert_eq!(tracked.addr(), triple as u64);
    assert_eq!(tracked.len(), 12);

    // 1. The Triple itself: two recorded writes, relative to the tracked range.
    // SAFETY: `triple` is a 4-aligned, writable Triple inside `pages`.
    let ((), trace) = t.call(|| unsafe { (level.init_triple_skip_middle)(triple.cast()) });
    let [a, c] = level.sites.init_triple_skip_middle;
    assert_accesses!(
        trace,
        [
            Expected::write(&tracked, 0, &Triple::A_VALUE.to_le_bytes(), a),
            Expected::write(&tracked, 8, &Triple::C_VALUE.to_le_bytes(), c),
        ]
    );
    assert_eq!(trace.written(&tracked).ranges(), &[0..4, 8..12]);
    assert!(trace.read(&tracked).is_empty());
    assert!(trace.out_of_bounds().is_empty());
    assert_paths!(trace, [(a, 1), (c, 1)]);
    let desc = trace
        .region(&tracked)
        .expect("the tracked range is registered");
    assert_eq!((desc.start, desc.len), (triple as u64, 12));
    assert_eq!((desc.span_start, desc.span_len), (base as u64, 4096));

    // 2. Bytes 0..16 of the same page, not tracked: 16 faults, each store executed,
    //    none recorded.
    const V: u8 = 0x42;
    // SAFETY: `base` is valid for writes of 16 <= TRIPLE_AT bytes.
    let ((), trace) = t.call(|| unsafe { (level.fill_bytes)(base, 16, V) });
    assert_accesses!(trace, []);
    assert!(trace.written(&tracked).is_empty());
    assert_paths!(trace, [(level.sites.fill_bytes, 16)]);

    // 3. A byte loop over 4 bytes before the Triple, its 12 and 4 after it: 20 faults,
    //    the 12 tracked loads recorded, the sum over all 20.
    let from = TRIPLE_AT - 4;
    // SAFETY: from + 20 <= 8192: the pointer stays inside `pages`.
    let start = unsafe { base.add(from) };
    // SAFETY: `start` is valid for reads of 20 bytes inside `pages`.
    let (sum, trace) = t.call(|| unsafe { (level.sum_bytes)(start, 20) });
    t.untrack(&tracked);

    let after = Triple {
        a: Triple::A_VALUE,
        b: B_BEFORE,
        c: Triple::C_VALUE,
    };
    let after_bytes = triple_bytes(&after);
    let site = level.sites.sum_bytes;
    let expected: Vec<Expected> = (0..12)
        .map(|i| Expected::read(&tracked, i as isize, &[after_bytes[i]], site))
        .collect();
    assert_accesses!(trace, expected);
    assert_eq!(trace.read(&tracked).ranges(), &[0..12]);
    assert!(trace.written(&tracked).is_empty());
    assert!(trace.out_of_bounds().is_empty());
    assert_paths!(trace, [(site, 20)]);

    // What the untraced code computes on the same bytes.
    let page = pages.0;
    // SAFETY: `page` is valid for reads of 20 bytes from `from`.
    let untraced = unsafe { (level.sum_bytes)(page[from..].as_ptr(), 20) };
    assert_eq!(sum, untraced);
    assert_eq!(&page[..16], &[V; 16]);
    assert_eq!(&page[16..TRIPLE_AT], &[0; TRIPLE_AT - 16]);
    assert_eq!(&page[TRIPLE_AT..TRIPLE_AT + 12], &after_bytes[..]);
    assert!(page[TRIPLE_AT + 12..].iter().all(|&b| b == 0));
}

at_both_levels!(tracked_triple_records_only_the_tracked_bytes =>
    tracked_triple_o0_records_the_tracked_12_bytes_but_not_the_rest_of_its_page,
    tracked_triple_o2_records_the_tracked_12_bytes_but_not_the_rest_of_its_page);

/// One 4-byte load that starts 2 bytes before a tracked range: recorded once, clipped
/// to the tracked bytes (offset 0, length 2, their 2 values).
fn tracked_load_straddling_the_start_is_clipped(t: &mut Tracer, level: &Level) {
    const AT: usize = 0x200;
    let mut pages = Box::new(TwoPages([0; 8192]));
    pages.0[AT - 2..AT + 2].copy_from_slice(&[0x11, 0x22, 0x33, 0x44]);
    let base = pages.0.as_mut_ptr();
    // SAFETY: AT + 8 <= 8192: the pointer stays inside `pages`.
    let tracked_start = unsafe { base.add(AT) };
    // SAFETY: as in `tracked_triple_records_only_the_tracked_bytes`: the test's own
    // page-aligned pages, untracked before they are freed, touched by this thread only.
    let tracked = unsafe { t.track("field", tracked_start, 8) };
    // SAFETY: AT - 2 is inside `pages`.
    let word = unsafe { base.add(AT - 2) }.cast::<u32>();
    // SAFETY: `word` is 2-aligned, and x86 allows unaligned loads; 4 bytes inside
    // `pages`.
    let (sum, trace) = t.call(|| unsafe { (level.sum_u32)(word, 1) });
    t.untrack(&tracked);

    assert_accesses!(
        trace,
        [Expected::read(
            &tracked,
            0,
            &[0x33, 0x44],
            level.sites.sum_u32
        )]
    );
    assert_eq!(trace.read(&tracked).ranges(), &[0..2]);
    assert!(trace.out_of_bounds().is_empty());
    assert_paths!(trace, [(level.sites.sum_u32, 1)]);
    assert_eq!(sum, 0x4433_2211);
}

at_both_levels!(tracked_load_straddling_the_start_is_clipped =>
    tracked_range_o0_load_straddling_its_start_is_clipped_to_the_tracked_bytes,
    tracked_range_o2_load_straddling_its_start_is_clipped_to_the_tracked_bytes);

/// Writes `nodes` (`(next, value, pad)`) into `buf` as C `struct node`s.
fn write_nodes(buf: &mut [u8], nodes: &[(u64, u32, u32)]) {
    for (i, &(next, value, pad)) in nodes.iter().enumerate() {
        let node = &mut buf[i * size_of::<Node>()..][..size_of::<Node>()];
        node[Node::NEXT_OFFSET..][..8].copy_from_slice(&next.to_le_bytes());
        node[Node::VALUE_OFFSET..][..4].copy_from_slice(&value.to_le_bytes());
        node[Node::PAD_OFFSET..][..4].copy_from_slice(&pad.to_le_bytes());
    }
}

/// The list a0 -> b0 -> a1 -> b1, nodes `a*` in buffer `a` and `b*` in buffer `b`:
/// per node a 4-byte read of `value` then an 8-byte read of `next`, alternating
/// between the two regions; `pad` is never read.
fn sum_list_alternates_between_two_buffers(t: &mut Tracer, level: &Level) {
    const NODE: usize = size_of::<Node>();
    let mut a = t.buffer("a", 2 * NODE);
    let mut b = t.buffer("b", 2 * NODE);
    // Both starts are 16-aligned: page-aligned ends, lengths a multiple of 16.
    let (a0, a1) = (a.as_ptr() as u64, a.as_ptr() as u64 + NODE as u64);
    let (b0, b1) = (b.as_ptr() as u64, b.as_ptr() as u64 + NODE as u64);
    write_nodes(&mut a, &[(b0, 10, 0xaaaa_aaaa), (b1, 30, 0xaaaa_aaaa)]);
    write_nodes(&mut b, &[(a1, 20, 0xbbbb_bbbb), (0, 40, 0xbbbb_bbbb)]);
    let (a_before, b_before) = (a.to_vec(), b.to_vec());
    let head = a0 as *const Node;
    // Untraced, outside a call the buffers are ordinary memory.
    // SAFETY: every node reachable from `head` is in `a` or `b`; the last next is null.
    let untraced = unsafe { (level.sum_list)(head) };

    // SAFETY: as above.
    let (sum, trace) = t.call(|| unsafe { (level.sum_list)(head) });

    let [value, next] = level.sites.sum_list;
    let node = |buf: &dyn Region, i: isize, v: u32, n: u64| {
        let id = buf.region_id();
        let at = i * NODE as isize;
        [
            Expected::read(
                &id,
                at + Node::VALUE_OFFSET as isize,
                &v.to_le_bytes(),
                value,
            ),
            Expected::read(&id, at + Node::NEXT_OFFSET as isize, &n.to_le_bytes(), next),
        ]
    };
    let expected: Vec<Expected> = [
        node(&a, 0, 10, b0),
        node(&b, 0, 20, a1),
        node(&a, 1, 30, b1),
        node(&b, 1, 40, 0),
    ]
    .concat();
    assert_accesses!(trace, expected);
    for buf in [&a, &b] {
        assert_eq!(trace.read(buf).ranges(), &[0..12, 16..28], "{}", buf.name());
        assert!(trace.written(buf).is_empty());
        assert_eq!(trace.accesses_to(buf).len(), 4);
    }
    assert!(trace.out_of_bounds().is_empty());
    assert_paths!(trace, [(value, 4), (next, 4)]);
    assert_eq!(sum, untraced);
    assert_eq!(sum, 100);
    assert_eq!((&a[..], &b[..]), (&a_before[..], &b_before[..]));

    // A null head reads nothing.
    // SAFETY: a null head is the empty list.
    let (sum, trace) = t.call(|| unsafe { (level.sum_list)(std::ptr::null()) });
    assert_accesses!(trace, []);
    assert_paths!(trace, []);
    assert_eq!(sum, 0);
}

at_both_levels!(sum_list_alternates_between_two_buffers =>
    sum_list_o0_reads_value_then_next_of_each_node_alternating_between_two_buffers,
    sum_list_o2_reads_value_then_next_of_each_node_alternating_between_two_buffers);

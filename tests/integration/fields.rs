//! Typed, aligned buffers and named fields: `t.value::<T>`, `t.slice::<T>`,
//! `t.buffer_aligned`, `#[derive(Fields)]` on nested, padded and packed `#[repr(C)]`
//! structs, traces that say `o.inner.value` instead of `o[0x8..0xc]`, and
//! `trace.unwritten_fields(&o)` listing what C never initialised.

use traced_ffi::{Fields, Tracer, Unwritten, traced_ffi};

/// The page size of x86-64 Linux.
const PAGE_SIZE: usize = 4096;
use traced_ffi_fixtures::sources;

use crate::contracts::panic_message_of;

/// C `struct padded` (see `fixtures/c/sources.c`).
#[derive(Debug, Clone, Copy, Default, Fields)]
#[repr(C)]
struct Padded {
    tag: u8,
    value: u32,
    small: u16,
}

/// C `struct outer`.
#[derive(Debug, Clone, Copy, Default, Fields)]
#[repr(C)]
struct Outer {
    id: u32,
    inner: Padded,
}

/// C `struct packed`.
#[derive(Debug, Clone, Copy, Default, Fields)]
#[repr(C, packed)]
struct Packed {
    tag: u8,
    value: u32,
}

fn unwritten(name: &str, bytes: std::ops::Range<usize>, padding: bool) -> Unwritten {
    Unwritten {
        name: name.to_owned(),
        bytes,
        padding,
    }
}

#[traced_ffi]
fn derive_flattens_nested_fields_in_offset_order(_t: &mut Tracer) {
    let names: Vec<(String, usize, usize)> = Outer::fields()
        .into_iter()
        .map(|f| (f.name, f.offset, f.len))
        .collect();
    assert_eq!(
        names,
        [
            ("id".to_owned(), 0, 4),
            ("inner.tag".to_owned(), 4, 1),
            ("inner.value".to_owned(), 8, 4),
            ("inner.small".to_owned(), 12, 2),
        ]
    );
}

#[traced_ffi]
fn unwritten_fields_lists_the_padding_and_the_field_c_never_wrote(t: &mut Tracer) {
    let mut o = t.value("o", Outer::default());
    assert_eq!(o.as_ptr() as usize % align_of::<Outer>(), 0);
    // SAFETY: `o` holds an Outer, laid out as C's struct outer.
    let ((), trace) = t.call(|| unsafe { sources::init_outer_but_small(o.as_mut_ptr().cast()) });
    let places: Vec<String> = trace
        .accesses()
        .iter()
        .map(|a| trace.describe_location(a))
        .collect();
    assert_eq!(
        places,
        ["o.id", "o.inner.tag", "o.inner.value"],
        "\n{trace}"
    );
    assert_eq!(
        trace.unwritten_fields(&o),
        [
            unwritten("padding", 5..8, true),
            unwritten("inner.small", 12..14, false),
            unwritten("padding", 14..16, true),
        ],
        "\n{trace}"
    );
    assert_eq!((o.id, o.inner.tag, o.inner.value), (7, 1, 0x0102_0304));
    assert!(trace.to_string().contains("o.inner.value"), "\n{trace}");
}

#[traced_ffi]
fn packed_fields_are_named_at_their_unaligned_offsets(t: &mut Tracer) {
    let mut p = t.value("p", Packed::default());
    // SAFETY: `p` holds a Packed, laid out as C's struct packed.
    let ((), trace) = t.call(|| unsafe { sources::init_packed(p.as_mut_ptr().cast()) });
    let rows: Vec<(String, isize, usize)> = trace
        .accesses()
        .iter()
        .map(|a| (trace.describe_location(a), a.offset, a.len))
        .collect();
    assert_eq!(
        rows,
        [("p.tag".to_owned(), 0, 1), ("p.value".to_owned(), 1, 4)],
        "\n{trace}"
    );
    assert!(trace.unwritten_fields(&p).is_empty(), "\n{trace}");
    let value = p.value;
    assert_eq!(value, 0x0a0b_0c0d);
}

#[traced_ffi]
fn slice_of_structs_names_each_element_field(t: &mut Tracer) {
    let mut s = t.slice::<Outer>("s", 2);
    assert_eq!(s.len(), 2);
    // SAFETY: s[1] is an Outer inside the slice.
    let ((), trace) =
        t.call(|| unsafe { sources::init_outer_but_small(s.as_mut_ptr().add(1).cast()) });
    let places: Vec<String> = trace
        .accesses()
        .iter()
        .map(|a| trace.describe_location(a))
        .collect();
    assert_eq!(
        places,
        ["s[1].id", "s[1].inner.tag", "s[1].inner.value"],
        "\n{trace}"
    );
    assert_eq!(s[1].id, 7);
    assert_eq!(s[0].id, 0);
}

#[traced_ffi]
fn aligned_buffers_start_aligned_and_end_as_close_to_the_guard_as_alignment_allows(t: &mut Tracer) {
    let page = PAGE_SIZE;
    let exact = t.buffer_aligned("exact", 64, 64);
    assert_eq!(exact.as_ptr() as usize % 64, 0);
    assert_eq!(
        (exact.as_ptr() as usize + 64) % page,
        0,
        "ends at the guard page"
    );
    let odd = t.buffer_aligned("odd", 10, 8);
    assert_eq!(odd.as_ptr() as usize % 8, 0);
    assert_eq!(
        (odd.as_ptr() as usize + 10) % page,
        page - 6,
        "6 bytes short of the guard page: the highest 8-aligned start"
    );
    let v = t.value("v", 0x1122_3344_5566_7788_u64);
    assert_eq!(v.as_ptr() as usize % 8, 0);
    assert_eq!((v.as_ptr() as usize + 8) % page, 0);
    assert_eq!(*v, 0x1122_3344_5566_7788);
}

#[traced_ffi]
fn initialises_every_field_names_the_field_c_skipped(t: &mut Tracer) {
    let mut o = t.value("o", Outer::default());
    // SAFETY: `o` holds an Outer, laid out as C's struct outer.
    let ((), trace) = t.call(|| unsafe { sources::init_outer_but_small(o.as_mut_ptr().cast()) });
    let text = panic_message_of(|| {
        let _ = trace.expect(&o).initialises_every_field();
    });
    assert!(
        text.starts_with("contract failed: `o` initialises every field\n")
            && text.contains("unwritten  inner.small [0xc..0xe]"),
        "{text}"
    );
}

//! A tour: traces a few fixture calls and prints their access tables.
//!
//! `cargo run --example tour`

use traced_ffi::Tracer;
use traced_ffi_fixtures::{Node, Triple, o0, o2};

fn main() {
    traced_ffi::start_supervisor_or_exit();
    let mut t = Tracer::new("tour");

    let mut buf = t.buffer("buf", 8);
    // SAFETY: buf holds 8 bytes; fill_one_past_end writes buf[0..=8]: the
    // last byte lands on the guard page, which is ours.
    let ((), trace) = t.call(|| unsafe { o2::fill_one_past_end(buf.as_mut_ptr(), 8, 0xab) });
    println!("fill_one_past_end_o2(buf, 8, 0xab) on an 8-byte buffer: one byte too many\n{trace}");
    println!(
        "  written: {:?}, out of bounds: {}\n",
        trace.written(&buf).ranges(),
        trace.out_of_bounds().len()
    );
    drop(buf);

    let mut out = t.buffer("out", 8);
    let src = t.buffer_from("src", b"traced!\0");
    // SAFETY: both buffers hold 8 bytes.
    let ((), trace) = t.call(|| unsafe { o0::copy_bytes(out.as_mut_ptr(), src.as_ptr(), 4) });
    println!("copy_bytes_o0(out, src, 4):\n{trace}");
    drop((out, src));

    let mut counters = t.buffer_from("counters", &[1, 0, 0, 0, 2, 0, 0, 0]);
    // SAFETY: the buffer holds two u32.
    let ((), trace) = t.call(|| unsafe { o2::increment_u32(counters.as_mut_ptr().cast(), 2) });
    println!("increment_u32_o2(counters, 2): read-modify-write\n{trace}");
    drop(counters);

    let mut triple = t.buffer("triple", size_of::<Triple>());
    // SAFETY: the buffer holds one Triple.
    let ((), trace) = t.call(|| unsafe { o2::init_triple_skip_middle(triple.as_mut_ptr().cast()) });
    println!("init_triple_skip_middle_o2: b (bytes 4..8) is never written\n{trace}");
    println!("  written: {:?}\n", trace.written(&triple).ranges());
    drop(triple);

    let mut tail = t.buffer("tail", size_of::<Node>());
    let mut head = t.buffer("head", size_of::<Node>());
    let tail_node = Node::new(std::ptr::null(), 2);
    // SAFETY: `tail` holds one Node; copying its bytes in.
    tail.copy_from_slice(unsafe {
        std::slice::from_raw_parts((&raw const tail_node).cast::<u8>(), size_of::<Node>())
    });
    let head_node = Node::new(tail.as_ptr().cast(), 1);
    // SAFETY: `head` holds one Node; copying its bytes in.
    head.copy_from_slice(unsafe {
        std::slice::from_raw_parts((&raw const head_node).cast::<u8>(), size_of::<Node>())
    });
    // SAFETY: head -> tail -> null, both live buffers.
    let (sum, trace) = t.call(|| unsafe { o2::sum_list(head.as_mut_ptr().cast()) });
    println!("sum_list_o2(head) = {sum}: pointer chasing from one buffer into another\n{trace}");
}

//! A traced call made inside another's closure, on the same thread (issue 11, item
//! 4): it cannot wait for the first to end, so it fails at once, naming where the
//! first call started. The first call is unaffected.

use traced_ffi::{CallError, Tracer, traced_ffi};
use traced_ffi_fixtures::o2;

#[traced_ffi(should_panic(
    expected = "a traced call is already running on this thread, started at tests/integration/nested_call.rs:"
))]
fn a_traced_call_inside_another_panics_at_once_naming_the_outer_calls_site(t: &mut Tracer) {
    let mut inner = Tracer::new("inner");
    let ((), _trace) = t.call(|| {
        let ((), _inner_trace) = inner.call(|| ());
    });
}

#[traced_ffi]
fn a_nested_try_call_returns_the_outer_calls_file_and_line_and_the_outer_trace_is_exact(
    t: &mut Tracer,
) {
    let mut buf = t.buffer("buf", 4);
    let p = buf.as_mut_ptr();
    let mut inner = Tracer::new("inner");
    let outer_line = line!() + 1;
    let (nested, trace) = t.call(|| {
        // SAFETY: `buf` is writable for 4 bytes.
        unsafe { o2::fill_bytes(p, 4, 0x11) };
        inner.try_call(|| ())
    });
    let err = match nested {
        Err(e @ CallError::Nested { .. }) => e,
        other => panic!("expected CallError::Nested, got {other:?}"),
    };
    let outer = format!("{}:{outer_line}", file!());
    let text = err.to_string();
    assert!(
        text.contains(&format!(
            "a traced call is already running on this thread, started at {outer}"
        )),
        "{text}"
    );
    assert_eq!(trace.written(&buf).ranges(), &[0..4], "\n{trace}");
    assert_eq!(trace.accesses().len(), 4, "\n{trace}");
    // Once the first call has ended, the next one works.
    let ((), after) = inner.call(|| ());
    assert!(after.accesses().is_empty(), "\n{after}");
}

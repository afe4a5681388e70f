//! The traced code's own state survives tracing: registers, flags, MXCSR, vector
//! registers and the red zone are as the code left them across every fault.

use traced_ffi::Tracer;
use traced_ffi::traced_ffi;
use traced_ffi_fixtures::{PreservedState, preserve_state_check};

use crate::check::{Expected, assert_accesses, assert_paths, avx2_or_skip, pattern};
use crate::levels::PRESERVE_STATE_CHECK;

/// Bytes `preserve_state_check` loops over: 2 faults each.
const N: usize = 64;

#[traced_ffi]
fn preserve_state_check_sees_registers_flags_mxcsr_and_red_zone_intact_across_128_faults(
    t: &mut Tracer,
) {
    if !avx2_or_skip(t.test_name()) {
        return;
    }
    let data = pattern(N, 5);
    let mut untraced = data.clone();
    // SAFETY: `untraced` is readable and writable for N bytes; AVX2 was checked.
    let untraced_code = unsafe { preserve_state_check(untraced.as_mut_ptr(), N) };
    assert_eq!(
        PreservedState::from_code(untraced_code),
        PreservedState::Intact
    );

    let mut buf = t.buffer_from("buf", &data);
    // SAFETY: `buf` is readable and writable for N bytes; AVX2 was checked.
    let (code, trace) = t.call(|| unsafe { preserve_state_check(buf.as_mut_ptr(), N) });

    let state = PreservedState::from_code(code);
    assert_eq!(
        state,
        PreservedState::Intact,
        "tracing changed the traced code's state: {state} (code {code})\n{trace}"
    );
    let [read, write] = PRESERVE_STATE_CHECK;
    let expected: Vec<Expected> = data
        .iter()
        .enumerate()
        .flat_map(|(i, &old)| {
            [
                Expected::read(&buf, i as isize, &[old], read),
                Expected::write(&buf, i as isize, &[!old], write),
            ]
        })
        .collect();
    assert_eq!(expected.len(), 2 * N);
    assert_accesses!(trace, expected);
    assert_eq!(trace.read(&buf).ranges(), &[0..N]);
    assert_eq!(trace.written(&buf).ranges(), &[0..N]);
    assert!(trace.out_of_bounds().is_empty());
    assert_paths!(trace, [(read, N as u64), (write, N as u64)]);
    assert_eq!(&buf[..], &untraced[..]);
    let inverted: Vec<u8> = data.iter().map(|b| !b).collect();
    assert_eq!(&buf[..], &inverted[..]);
}

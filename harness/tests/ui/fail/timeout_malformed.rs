use traced_ffi::{Tracer, traced_ffi};

#[traced_ffi(timeout = "10")]
fn no_unit(t: &mut Tracer) {
    let _ = t;
}

#[traced_ffi(timeout = "0s")]
fn zero(t: &mut Tracer) {
    let _ = t;
}

#[traced_ffi(timeout = "1.5s")]
fn fraction(t: &mut Tracer) {
    let _ = t;
}

#[traced_ffi(timeout = 10)]
fn not_a_string(t: &mut Tracer) {
    let _ = t;
}

#[traced_ffi(timeout = "10days")]
fn unknown_unit(t: &mut Tracer) {
    let _ = t;
}

fn main() {
    let _ = (no_unit, zero, fraction, not_a_string, unknown_unit);
}

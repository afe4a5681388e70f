use traced_ffi::{Tracer, traced_ffi};

#[traced_ffi]
fn type_param<T>(t: &mut Tracer) {
    let _ = t;
}

#[traced_ffi]
fn lifetime_param<'a>(t: &mut Tracer) {
    let _ = t;
}

#[traced_ffi]
fn const_param<const N: usize>(t: &mut Tracer) {
    let _ = t;
}

fn main() {
    let _ = type_param::<u8>;
    let _ = lifetime_param;
    let _ = const_param::<1>;
}

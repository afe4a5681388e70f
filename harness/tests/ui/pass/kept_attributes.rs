use traced_ffi::{Tracer, traced_ffi};

mod area {
    use traced_ffi::{Tracer, traced_ffi};

    /// Doc comments, visibility and other attributes are kept.
    #[traced_ffi]
    #[inline(never)]
    pub fn public_in_module(t: &mut Tracer) {
        let _ = t;
    }
}

#[traced_ffi]
fn r#type(t: &mut Tracer) {
    let _ = t;
}

// A test function is still an ordinary function.
const _: fn(&mut Tracer) = area::public_in_module;
const _: fn(&mut Tracer) = r#type;

traced_ffi::main!();

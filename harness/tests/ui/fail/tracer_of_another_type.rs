use traced_ffi::traced_ffi;

mod other {
    pub struct Tracer;
}

// Accepted by the macro (the type's last segment is `Tracer`); the type
// checker then points at the parameter's type.
#[traced_ffi]
fn other_tracer(t: &mut other::Tracer) {
    let _ = t;
}

traced_ffi::main!();

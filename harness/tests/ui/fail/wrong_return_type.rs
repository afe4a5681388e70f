use traced_ffi::{Tracer, traced_ffi};

#[traced_ffi]
fn returns_bool(t: &mut Tracer) -> bool {
    let _ = t;
    true
}

#[traced_ffi]
fn returns_option(t: &mut Tracer) -> Option<()> {
    let _ = t;
    None
}

fn main() {
    let _ = (returns_bool, returns_option);
}

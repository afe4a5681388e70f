use traced_ffi::{Tracer, traced_ffi};

#[traced_ffi]
fn where_test(t: &mut Tracer)
where
    u8: Copy,
{
    let _ = t;
}

fn main() {
    let _ = where_test;
}

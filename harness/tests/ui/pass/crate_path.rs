mod reexport {
    pub use ::traced_ffi as tf;
}

use reexport::tf;

#[tf::traced_ffi(crate = crate::reexport::tf)]
fn renamed_crate(t: &mut tf::Tracer) {
    let _ = t;
}

tf::main!();

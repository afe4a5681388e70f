use traced_ffi::{Tracer, traced_ffi};

struct Suite;

impl Suite {
    #[traced_ffi]
    fn self_parameter(&mut self) {}

    fn tracer(&self, t: &mut Tracer) {
        let _ = t;
    }
}

fn main() {
    let _ = Suite::self_parameter;
    let _ = Suite::tracer;
}

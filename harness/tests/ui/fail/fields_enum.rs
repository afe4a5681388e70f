#[derive(Clone, Copy, traced_ffi::Fields)]
#[repr(C)]
enum Mode {
    Fast,
    Slow,
}

fn main() {}

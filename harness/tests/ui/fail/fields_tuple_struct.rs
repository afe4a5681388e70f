#[derive(Clone, Copy, traced_ffi::Fields)]
#[repr(C)]
struct Pair(u32, u32);

fn main() {}

#[derive(Clone, Copy, traced_ffi::Fields)]
#[repr(C)]
struct Wrapper<T: Copy> {
    value: T,
}

fn main() {}

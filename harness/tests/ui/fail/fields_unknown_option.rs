#[derive(Clone, Copy, traced_ffi::Fields)]
#[repr(C)]
#[fields(rename = "cfg")]
struct Config {
    level: u32,
}

fn main() {}

#[derive(Clone, Copy, traced_ffi::Fields)]
struct Config {
    level: u32,
}

fn main() {}

use traced_ffi::traced_ffi;

// Every problem is reported at once, options first.
#[traced_ffi(bogus, ignore, ignore)]
async fn several_errors<T>() -> u8 {
    0
}

fn main() {
    let _ = several_errors::<u8>;
}

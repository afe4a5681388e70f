use traced_ffi::traced_ffi;

#[traced_ffi]
struct NotAFunction;

fn main() {
    // The struct is still emitted: no "cannot find value" error.
    let _ = NotAFunction;
}

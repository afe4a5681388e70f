use traced_ffi::traced_ffi;

#[traced_ffi]
fn no_parameter() {}

fn main() {
    let _ = no_parameter;
}

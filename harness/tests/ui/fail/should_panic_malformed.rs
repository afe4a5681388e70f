use traced_ffi::{Tracer, traced_ffi};

#[traced_ffi(should_panic = "boom")]
fn name_value_form(t: &mut Tracer) {
    let _ = t;
}

#[traced_ffi(should_panic(expected))]
fn expected_without_text(t: &mut Tracer) {
    let _ = t;
}

#[traced_ffi(should_panic(expected = 1))]
fn expected_not_a_string(t: &mut Tracer) {
    let _ = t;
}

#[traced_ffi(should_panic(message = "boom"))]
fn wrong_key(t: &mut Tracer) {
    let _ = t;
}

#[traced_ffi(should_panic())]
fn empty_parentheses(t: &mut Tracer) {
    let _ = t;
}

fn main() {
    let _ = (
        name_value_form,
        expected_without_text,
        expected_not_a_string,
        wrong_key,
        empty_parentheses,
    );
}

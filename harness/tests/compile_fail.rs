//! Compile tests of the `#[traced_ffi]` attribute and `#[derive(Fields)]`: every error the macros
//! reports has a case in `ui/fail` (with the expected compiler output next to
//! it), every accepted form has a case in `ui/pass`, which is also run.
//!
//! After a change to a message, regenerate the `.stderr` files with
//! `TRYBUILD=overwrite cargo test -p traced-ffi --test compile_fail` and read
//! them: each error must point at the offending token.

#[test]
fn traced_ffi_attribute_compile_errors_and_accepted_forms() {
    let cases = trybuild::TestCases::new();
    cases.compile_fail("tests/ui/fail/*.rs");
    cases.pass("tests/ui/pass/*.rs");
}

//! Integration tests of traced-ffi live in `integration/`.

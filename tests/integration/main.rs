//! Integration tests: real C fixtures, traced by the real supervisor.
#![expect(
    clippy::single_range_in_vec_init,
    reason = "RangeSet::ranges() is compared with slices of ranges, e.g. &[0..16]"
)]

mod smoke;

traced_ffi::main!();

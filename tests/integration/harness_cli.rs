//! The harness's command line, seen from outside: this test binary run as a child.

use traced_ffi::{Tracer, traced_ffi};

use crate::child::run_self;

/// A test every run of this binary has; run alone below.
const ONE_TEST: &str = "scalar::fill_bytes_o2_writes_each_byte_once_in_ascending_order";

#[traced_ffi]
fn list_prints_every_test_as_name_colon_test_without_starting_the_supervisor(_t: &mut Tracer) {
    let run = run_self(&["--list"], &[]);
    let dump = run.dump();
    assert!(run.status.success(), "{dump}");
    let lines: Vec<&str> = run.stdout.lines().collect();
    for name in [
        ONE_TEST,
        "scalar::fill_bytes_o0_writes_each_byte_once_in_ascending_order",
        "crash::segfault_child",
        "parallel::lane_7_traces_only_its_own_accesses",
        "harness_cli::list_prints_every_test_as_name_colon_test_without_starting_the_supervisor",
    ] {
        let line = format!("{name}: test");
        assert!(lines.contains(&line.as_str()), "no line {line:?}\n{dump}");
    }
    let mut sorted = lines.clone();
    sorted.sort_unstable();
    assert_eq!(lines, sorted, "tests are listed in name order");
    // `--list` runs nothing traced, so it must not fork a supervisor: no warning about
    // tracing, no supervisor message.
    assert!(!run.stderr.contains("traced-ffi"), "{dump}");
    assert!(!run.stdout.contains("running"), "{dump}");
}

#[traced_ffi]
fn exact_runs_only_the_named_test(_t: &mut Tracer) {
    let run = run_self(&["--exact", ONE_TEST], &[]);
    let dump = run.dump();
    assert!(run.status.success(), "{dump}");
    assert!(run.stdout.contains("running 1 test"), "{dump}");
    assert!(
        run.stdout.contains(&format!("test {ONE_TEST} ... ok")),
        "{dump}"
    );
    assert!(run.stdout.contains("1 passed"), "{dump}");
    assert!(run.stdout.contains("0 failed"), "{dump}");
    assert!(!run.stderr.contains("traced-ffi"), "{dump}");
}

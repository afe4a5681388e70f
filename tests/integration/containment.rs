//! Containment, timeouts and capture (issue 11): a crash, an exit or a hang in native
//! code fails that one test, with its cause and the supervisor's report (call site,
//! instruction, accesses so far), and the rest of the run goes on and is counted.
//!
//! Each scenario runs this binary as a child (a runner of its own) on the eight
//! `containment::child_*` tests, with [`SCENARIO_ENV`] saying which one misbehaves and
//! how, and checks the child's whole output.

use std::time::{Duration, Instant};

use traced_ffi::{Tracer, traced_ffi};
use traced_ffi_fixtures::crashes::{self, CRASH_MARK, SEGV_LINE, UNMAPPED_ADDRESS};

use crate::child::{ChildRun, run_self};

/// Names the scenario in the environment of the child run; unset, the child tests do
/// nothing (so `--include-ignored` in a normal run passes them).
const SCENARIO_ENV: &str = "TRACED_FFI_CONTAINMENT_SCENARIO";
/// The filter that selects the child tests.
const CHILD_FILTER: &str = "containment::child_";
/// How many tests [`CHILD_FILTER`] selects.
const CHILD_COUNT: usize = 8;
/// The child test that crashes (every scenario but the hang).
const CRASHER: &str = "containment::child_crashes";
/// The child test that hangs, with a 2 s `timeout`.
const HANGER: &str = "containment::child_hangs";
/// What [`child_a_passes`] prints: captured, shown only with `--show-output`.
const PASSING_LINE: &str = "child_a_passes: this line is captured";
/// What [`child_crashes`] prints before its traced call.
const CRASHER_LINE: &str = "child_crashes: making the traced call";
/// How long each busy test keeps making traced calls in [`Scenario::Busy`].
const BUSY_FOR: Duration = Duration::from_millis(600);

/// What the misbehaving child test does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Scenario {
    Segv,
    Bus,
    Abort,
    Exit,
    StackOverflow,
    SigpipeDefault,
    Hang,
    SecondThread,
    /// A SIGSEGV while four other tests make traced calls (`--test-threads=4`).
    Busy,
    /// A plain Rust panic, after a traced call.
    Panic,
    /// [`env_limited_child_hangs`] hangs (limit from `TRACED_FFI_TIMEOUT`).
    HangEnv,
}

/// Every scenario, with its name in [`SCENARIO_ENV`].
const SCENARIOS: [(Scenario, &str); 11] = [
    (Scenario::Segv, "segv"),
    (Scenario::Bus, "bus"),
    (Scenario::Abort, "abort"),
    (Scenario::Exit, "exit"),
    (Scenario::StackOverflow, "stack-overflow"),
    (Scenario::SigpipeDefault, "sigpipe"),
    (Scenario::Hang, "hang"),
    (Scenario::SecondThread, "second-thread"),
    (Scenario::Busy, "busy"),
    (Scenario::Panic, "panic"),
    (Scenario::HangEnv, "hang-env"),
];

/// What [`child_crashes`] panics with in [`Scenario::Panic`].
const PANIC_TEXT: &str = "child_crashes: a deliberate panic after a traced call";

/// The exit code `crash_exit` is given.
const EXIT_CODE: i32 = 3;

fn scenario() -> Option<Scenario> {
    let name = std::env::var(SCENARIO_ENV).ok()?;
    SCENARIOS
        .iter()
        .find(|(_, n)| *n == name)
        .map(|&(scenario, _)| scenario)
}

#[traced_ffi(ignore)]
fn child_a_passes(_t: &mut Tracer) {
    println!("{PASSING_LINE}");
}

/// In [`Scenario::Busy`], makes traced calls for [`BUSY_FOR`].
fn busy(t: &mut Tracer) {
    if scenario() != Some(Scenario::Busy) {
        return;
    }
    let mut buf = t.buffer("busy", 8);
    let start = Instant::now();
    while start.elapsed() < BUSY_FOR {
        let ((), trace) = t.call(|| buf[0] = buf[0].wrapping_add(1));
        assert!(!trace.accesses().is_empty(), "{trace}");
        std::thread::sleep(Duration::from_millis(10));
    }
}

#[traced_ffi(ignore)]
fn child_busy_1(t: &mut Tracer) {
    busy(t);
}

#[traced_ffi(ignore)]
fn child_busy_2(t: &mut Tracer) {
    busy(t);
}

#[traced_ffi(ignore)]
fn child_busy_3(t: &mut Tracer) {
    busy(t);
}

#[traced_ffi(ignore)]
fn child_busy_4(t: &mut Tracer) {
    busy(t);
}

#[traced_ffi(ignore)]
fn child_crashes(t: &mut Tracer) {
    let Some(scenario) = scenario() else { return };
    if matches!(scenario, Scenario::Hang | Scenario::HangEnv) {
        return;
    }
    let mut buf = t.buffer("buf", 16);
    let p = buf.as_mut_ptr();
    println!("{CRASHER_LINE}");
    // SAFETY: deliberately not safe: each fixture kills this (child) process; `buf`
    // holds the 2 bytes they write.
    let (result, _trace) = t.call(|| unsafe {
        match scenario {
            Scenario::Segv | Scenario::Busy => crashes::crash_segv_after_write(p),
            Scenario::Bus => assert!(crashes::crash_bus(p) >= 0, "crash_bus setup failed"),
            Scenario::Abort => crashes::crash_abort(p),
            Scenario::Exit => crashes::crash_exit(p, EXIT_CODE),
            Scenario::StackOverflow => {
                crashes::crash_stack_overflow(p);
            }
            Scenario::SigpipeDefault => {
                crashes::crash_sigpipe(p);
            }
            Scenario::SecondThread => {
                crashes::crash_on_second_thread(p);
            }
            Scenario::Panic => *p = CRASH_MARK,
            Scenario::Hang | Scenario::HangEnv => {}
        }
    });
    if scenario == Scenario::Panic {
        panic!("{PANIC_TEXT}");
    }
    let () = result;
    panic!("the fixture of scenario {scenario:?} returned instead of ending the process");
}

#[traced_ffi(ignore, timeout = "2s")]
fn child_hangs(t: &mut Tracer) {
    if scenario() != Some(Scenario::Hang) {
        return;
    }
    let mut buf = t.buffer("buf", 16);
    let p = buf.as_mut_ptr();
    // SAFETY: `buf` holds the byte the fixture writes; it never returns.
    let ((), _trace) = t.call(|| unsafe { crashes::hang_after_write(p) });
}

#[traced_ffi(ignore)]
fn child_z_passes(_t: &mut Tracer) {}

/// Hangs in [`Scenario::HangEnv`]; has no `timeout` option, so `TRACED_FFI_TIMEOUT`
/// sets its limit. (Not a `child_*` test: the scenarios above do not run it.)
#[traced_ffi(ignore)]
fn env_limited_child_hangs(t: &mut Tracer) {
    if scenario() != Some(Scenario::HangEnv) {
        return;
    }
    let mut buf = t.buffer("buf", 16);
    let p = buf.as_mut_ptr();
    // SAFETY: `buf` holds the byte the fixture writes; it never returns.
    let ((), _trace) = t.call(|| unsafe { crashes::hang_after_write(p) });
}

/// The outcome libtest-mimic printed for `name` (`ok`, `FAILED`), if any.
fn outcome_of<'a>(stdout: &'a str, name: &str) -> Option<&'a str> {
    let prefix = format!("test {name} ");
    stdout
        .lines()
        .find(|l| l.starts_with(&prefix))
        .and_then(|l| l.rsplit_once(" ... "))
        .map(|(_, outcome)| outcome.trim())
}

/// Runs the child tests under `scenario` and checks what every scenario shares: the
/// one misbehaving test FAILED, every other one ok, the summary, exit code 101, the
/// failure block with the test's captured output, the call site and `expected`.
fn check_scenario(scenario: Scenario, threads: &str, expected: &[String]) -> ChildRun {
    let name = SCENARIOS
        .iter()
        .find(|(s, _)| *s == scenario)
        .map(|&(_, n)| n)
        .expect("every scenario has a name");
    let run = run_self(
        &[CHILD_FILTER, "--include-ignored", threads],
        &[(SCENARIO_ENV, name)],
    );
    let dump = run.dump();
    let failing = if scenario == Scenario::Hang {
        HANGER
    } else {
        CRASHER
    };
    assert_eq!(run.status.code(), Some(101), "{dump}");
    assert!(
        run.stdout.contains(&format!("running {CHILD_COUNT} tests")),
        "{dump}"
    );
    let all = [
        "containment::child_a_passes",
        "containment::child_busy_1",
        "containment::child_busy_2",
        "containment::child_busy_3",
        "containment::child_busy_4",
        CRASHER,
        HANGER,
        "containment::child_z_passes",
    ];
    for test in all {
        let want = if test == failing { "FAILED" } else { "ok" };
        assert_eq!(outcome_of(&run.stdout, test), Some(want), "{test}\n{dump}");
    }
    assert!(
        run.stdout.contains(&format!(
            "test result: FAILED. {} passed; 1 failed; 0 ignored",
            CHILD_COUNT - 1
        )),
        "{dump}"
    );
    let block = run
        .stdout
        .split_once(&format!("---- {failing} ----"))
        .map(|(_, rest)| rest)
        .unwrap_or_else(|| panic!("no failure block for {failing}\n{dump}"));
    let mut wanted = vec![format!("test `{failing}` ({}:", file!())];
    if scenario != Scenario::Panic {
        // The supervisor's report names the call.
        wanted.push(format!("traced call at {}:", file!()));
    }
    if scenario != Scenario::Hang {
        wanted.push(CRASHER_LINE.to_owned());
    }
    wanted.extend(expected.iter().cloned());
    for want in &wanted {
        assert!(block.contains(want.as_str()), "lacks {want:?}\n{dump}");
    }
    assert!(
        !run.stdout.contains(PASSING_LINE),
        "a passing test's output is shown\n{dump}"
    );
    run
}

/// The row of the `mov` that wrote [`CRASH_MARK`] to `buf[offset]`.
fn mark_row(offset: usize) -> String {
    format!("buf[{offset:#x}..{:#x}]", offset + 1)
}

fn segv_expectations() -> Vec<String> {
    vec![
        SEGV_LINE.to_owned(),
        format!(
            "got signal SIGSEGV (SEGV_MAPERR: nothing is mapped there) at address {UNMAPPED_ADDRESS:#x}"
        ),
        "at crash_segv_after_write+0x".to_owned(),
        "accesses recorded so far in this call".to_owned(),
        mark_row(0),
        format!("{CRASH_MARK:02x}"),
        "its process was killed by SIGSEGV before the test finished".to_owned(),
    ]
}

#[traced_ffi]
fn sigsegv_in_a_call_fails_that_test_with_the_report_and_the_accesses_so_far(_t: &mut Tracer) {
    check_scenario(Scenario::Segv, "--test-threads=1", &segv_expectations());
}

#[traced_ffi]
fn sigbus_in_a_call_fails_that_test_with_bus_adrerr(_t: &mut Tracer) {
    check_scenario(
        Scenario::Bus,
        "--test-threads=2",
        &[
            "got signal SIGBUS (BUS_ADRERR".to_owned(),
            "at crash_bus+0x".to_owned(),
            mark_row(0),
            "its process was killed by SIGBUS before the test finished".to_owned(),
        ],
    );
}

#[traced_ffi]
fn abort_in_a_call_fails_that_test_with_sigabrt_sent_by_the_process(_t: &mut Tracer) {
    check_scenario(
        Scenario::Abort,
        "--test-threads=2",
        &[
            "got signal SIGABRT (SI_TKILL: sent by tgkill(), e.g. abort() or raise()".to_owned(),
            mark_row(0),
            "its process was killed by SIGABRT before the test finished".to_owned(),
        ],
    );
}

#[traced_ffi]
fn exit_in_a_call_fails_that_test_with_the_exit_status_and_the_call_site(_t: &mut Tracer) {
    check_scenario(
        Scenario::Exit,
        "--test-threads=2",
        &[
            format!(
                "exited with status {EXIT_CODE} (exit() or the end of the process) during the call"
            ),
            mark_row(0),
            format!("its process exited with status {EXIT_CODE} before the test finished"),
        ],
    );
}

#[traced_ffi]
fn stack_overflow_in_a_call_fails_that_test(_t: &mut Tracer) {
    check_scenario(
        Scenario::StackOverflow,
        "--test-threads=2",
        &[
            format!("thread '{CRASHER}'"),
            "has overflowed its stack".to_owned(),
            "got signal SIGABRT".to_owned(),
            mark_row(0),
            "its process was killed by SIGABRT before the test finished".to_owned(),
        ],
    );
}

#[traced_ffi]
fn sigpipe_with_the_default_action_fails_that_test(_t: &mut Tracer) {
    check_scenario(
        Scenario::SigpipeDefault,
        "--test-threads=2",
        &[
            "got signal SIGPIPE (a write to a pipe or socket that has no reader)".to_owned(),
            mark_row(0),
            "its process was killed by SIGPIPE before the test finished".to_owned(),
        ],
    );
}

#[traced_ffi]
fn a_hang_times_out_after_its_limit_with_where_the_threads_are(_t: &mut Tracer) {
    let start = Instant::now();
    check_scenario(
        Scenario::Hang,
        "--test-threads=2",
        &[
            format!("the test ran out of time (test `{HANGER}`, traced call at"),
            "(the thread of the traced call) at hang_after_write+0x".to_owned(),
            "in system call futex".to_owned(),
            mark_row(0),
            "timed out (limit 2s, set by its `timeout` option) and was killed".to_owned(),
        ],
    );
    let took = start.elapsed();
    assert!(
        took < Duration::from_secs(20),
        "the run took {took:?}: the 2 s limit was not applied"
    );
}

#[traced_ffi]
fn a_crash_on_a_second_thread_of_the_call_fails_that_test(_t: &mut Tracer) {
    check_scenario(
        Scenario::SecondThread,
        "--test-threads=2",
        &[
            "got signal SIGSEGV (SEGV_MAPERR".to_owned(),
            "at crash_thread_worker+0x".to_owned(),
            mark_row(0),
            mark_row(1),
            "its process was killed by SIGSEGV before the test finished".to_owned(),
        ],
    );
}

#[traced_ffi]
fn a_crash_while_four_other_tests_trace_fails_only_that_test(_t: &mut Tracer) {
    check_scenario(Scenario::Busy, "--test-threads=4", &segv_expectations());
}

#[traced_ffi]
fn passing_output_is_shown_only_with_show_output_or_nocapture(_t: &mut Tracer) {
    let args = |extra: &'static str| {
        let mut args = vec![
            "--exact",
            "containment::child_a_passes",
            "--include-ignored",
        ];
        if !extra.is_empty() {
            args.push(extra);
        }
        args
    };
    let quiet = run_self(&args(""), &[]);
    assert!(quiet.status.success(), "{}", quiet.dump());
    assert!(!quiet.stdout.contains(PASSING_LINE), "{}", quiet.dump());
    for flag in ["--show-output", "--nocapture"] {
        let shown = run_self(&args(flag), &[]);
        assert!(shown.status.success(), "{flag}\n{}", shown.dump());
        assert!(
            shown.stdout.contains(PASSING_LINE),
            "{flag}\n{}",
            shown.dump()
        );
    }
}

#[traced_ffi]
fn a_panic_is_shown_once_in_the_failure_with_the_test_thread_name(_t: &mut Tracer) {
    let run = check_scenario(
        Scenario::Panic,
        "--test-threads=2",
        &[
            format!("thread '{CRASHER}'"),
            "panicked (see above)".to_owned(),
        ],
    );
    let everything = format!("{}{}", run.stdout, run.stderr);
    assert_eq!(
        everything.matches(PANIC_TEXT).count(),
        1,
        "the panic message must appear once\n{}",
        run.dump()
    );
}

#[traced_ffi]
fn traced_ffi_timeout_sets_the_limit_of_tests_without_a_timeout_option(_t: &mut Tracer) {
    let test = "containment::env_limited_child_hangs";
    let run = run_self(
        &["--exact", test, "--include-ignored"],
        &[(SCENARIO_ENV, "hang-env"), (traced_ffi::TIMEOUT_ENV, "1s")],
    );
    let dump = run.dump();
    assert_eq!(run.status.code(), Some(101), "{dump}");
    assert_eq!(outcome_of(&run.stdout, test), Some("FAILED"), "{dump}");
    for want in [
        "(the thread of the traced call) at hang_after_write+0x",
        "timed out (limit 1s, set by TRACED_FFI_TIMEOUT) and was killed",
    ] {
        assert!(run.stdout.contains(want), "lacks {want:?}\n{dump}");
    }
}

#[traced_ffi]
fn a_malformed_traced_ffi_timeout_stops_the_run_with_a_message(_t: &mut Tracer) {
    let run = run_self(
        &[
            "--exact",
            "containment::child_z_passes",
            "--include-ignored",
        ],
        &[(traced_ffi::TIMEOUT_ENV, "10 seconds")],
    );
    let dump = run.dump();
    assert_eq!(run.status.code(), Some(101), "{dump}");
    assert!(
        run.stderr
            .contains("traced-ffi: failed to read TRACED_FFI_TIMEOUT=\"10 seconds\": expected"),
        "{dump}"
    );
    assert!(!run.stdout.contains("running"), "{dump}");
}

/// Set in the environment of [`ignored_sigpipe_child`]'s run.
const SIGPIPE_CHILD_ENV: &str = "TRACED_FFI_IGNORED_SIGPIPE_CHILD";

/// Writes to a pipe nobody reads, with SIGPIPE ignored (Rust's default): `EPIPE`.
#[traced_ffi(ignore)]
fn ignored_sigpipe_child(_t: &mut Tracer) {
    if std::env::var_os(SIGPIPE_CHILD_ENV).is_none() {
        return;
    }
    let (reader, mut writer) = std::io::pipe().expect("a pipe can be made");
    drop(reader);
    let written = std::io::Write::write(&mut writer, b"x");
    assert_eq!(
        written.map_err(|e| e.kind()),
        Err(std::io::ErrorKind::BrokenPipe)
    );
}

#[traced_ffi]
fn an_ignored_sigpipe_gets_no_crash_report(_t: &mut Tracer) {
    let run = run_self(
        &[
            "--exact",
            "containment::ignored_sigpipe_child",
            "--include-ignored",
            "--nocapture",
        ],
        &[(SIGPIPE_CHILD_ENV, "1")],
    );
    let dump = run.dump();
    assert!(run.status.success(), "{dump}");
    assert!(!run.stderr.contains("traced-ffi supervisor"), "{dump}");
}

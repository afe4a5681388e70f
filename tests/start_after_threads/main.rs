//! `start_supervisor()` called while another thread runs (issue 11, item 4): it fails,
//! and later traced calls give that reason, not "the supervisor was never started".
//!
//! A test binary of its own (`harness = false`): the integration binary's `main!()`
//! starts the supervisor before any test runs, so the failure cannot happen there.
//! Prints nothing when it passes; a failed assertion exits with a panic (code 101).

use std::panic::{self, AssertUnwindSafe};
use std::sync::mpsc;
use std::thread;

use traced_ffi::{CallError, LaunchError, Tracer};

/// What the error of a traced call says after the failed start.
const REASON: &str = "failed to start the supervisor: 2 threads are running; \
                      `traced_ffi::main!()` must run before any thread is spawned";

fn main() {
    let (stop, stopped) = mpsc::channel::<()>();
    let worker = thread::spawn(move || {
        let _ = stopped.recv();
    });

    let started = traced_ffi::start_supervisor();
    assert!(
        matches!(started, Err(LaunchError::ThreadsRunning { count: 2 })),
        "start_supervisor with a second thread running: {started:?}"
    );

    let mut t = Tracer::new("start_after_threads");
    let mut buf = t.buffer("buf", 4);
    buf[0] = 1;
    assert_eq!(&buf[..], &[1, 0, 0, 0], "buffers work untraced");

    let err = t
        .try_call(|| ())
        .map(|_| ())
        .expect_err("no supervisor: the call fails");
    match &err {
        CallError::Unavailable { reason } => assert_eq!(reason, REASON),
        other => panic!("expected CallError::Unavailable, got {other:?}"),
    }
    assert_eq!(
        err.to_string(),
        format!("trace the call: tracing is unavailable: {REASON}")
    );

    // `t.call` panics with the same reason, after the test name and call site.
    let hook = panic::take_hook();
    panic::set_hook(Box::new(|_| {}));
    let panicked = panic::catch_unwind(AssertUnwindSafe(|| t.call(|| ())));
    panic::set_hook(hook);
    let payload = panicked
        .map(|_| ())
        .expect_err("t.call panics without a supervisor");
    let message = payload
        .downcast_ref::<String>()
        .cloned()
        .unwrap_or_default();
    assert!(
        message.starts_with(
            "test `start_after_threads`, traced call at tests/start_after_threads/main.rs:"
        ) && message.ends_with(REASON),
        "{message}"
    );

    let again = traced_ffi::start_supervisor();
    assert!(
        matches!(again, Err(LaunchError::AlreadyLaunched)),
        "a second start: {again:?}"
    );
    let err = t
        .try_call(|| ())
        .map(|_| ())
        .expect_err("still no supervisor");
    assert!(err.to_string().ends_with(REASON), "{err}");

    let _ = stop.send(());
    worker.join().expect("the worker thread exits");
}

//! Running child processes with a timeout: this very test binary, for what a test
//! cannot do in the test process itself (crash, or look at the harness's command
//! line), and other programs (the oracle's driver, valgrind).

use std::io::Read;
use std::process::{Command, ExitStatus, Stdio};
use std::thread;
use std::time::{Duration, Instant};

/// How long a child run of the test binary may take before it is killed. It runs one
/// test or none, so this is generous.
pub(crate) const CHILD_TIMEOUT: Duration = Duration::from_secs(60);
/// Set by `cargo nextest run` for the test processes it starts; with `--exact`, it
/// makes the harness run the test in-process.
const NEXTEST_ENV: &str = "NEXTEST";
/// First and longest pause between two checks of whether the child has exited.
const POLL_FIRST: Duration = Duration::from_millis(1);
const POLL_MAX: Duration = Duration::from_millis(100);

/// What a child run produced.
#[derive(Debug)]
pub(crate) struct ChildRun {
    pub(crate) status: ExitStatus,
    pub(crate) stdout: String,
    pub(crate) stderr: String,
}

impl ChildRun {
    /// Everything the child printed, for failure messages.
    pub(crate) fn dump(&self) -> String {
        format!(
            "child status: {:?}\n--- child stdout ---\n{}\n--- child stderr ---\n{}\n--- end ---",
            self.status, self.stdout, self.stderr
        )
    }
}

fn drain(mut pipe: impl Read + Send + 'static) -> thread::JoinHandle<String> {
    thread::spawn(move || {
        let mut bytes = Vec::new();
        let _ = pipe.read_to_end(&mut bytes);
        String::from_utf8_lossy(&bytes).into_owned()
    })
}

/// Runs the test binary with `args` and the extra environment `env`, and waits for it
/// at most [`CHILD_TIMEOUT`] (polling with exponential back-off); on timeout kills it
/// (that child only) and fails the test with what it printed.
pub(crate) fn run_self(args: &[&str], env: &[(&str, &str)]) -> ChildRun {
    let exe = std::env::current_exe().expect("the test binary knows its own path");
    let mut command = Command::new(&exe);
    // The child run is a runner of its own whatever runs this suite: not nextest's
    // one-test process, not the in-process mode.
    command
        .args(args)
        .env_remove(NEXTEST_ENV)
        .env_remove(traced_ffi::IN_PROCESS_ENV)
        .envs(env.iter().copied());
    run(command, CHILD_TIMEOUT)
}

/// Runs `command` with stdin empty and stdout and stderr captured, and waits for it at
/// most `timeout` (polling with exponential back-off); on timeout kills it (that child
/// only) and fails the test with what it printed.
pub(crate) fn run(mut command: Command, timeout: Duration) -> ChildRun {
    let shown = format!("{command:?}");
    let mut child = command
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {shown}: {e}"));
    let stdout = drain(child.stdout.take().expect("stdout is piped"));
    let stderr = drain(child.stderr.take().expect("stderr is piped"));
    let deadline = Instant::now() + timeout;
    let mut pause = POLL_FIRST;
    let (status, timed_out) = loop {
        if let Some(status) = child.try_wait().expect("waiting for the child works") {
            break (status, false);
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            break (
                child.wait().expect("waiting for the killed child works"),
                true,
            );
        }
        thread::sleep(pause);
        pause = (pause * 2).min(POLL_MAX);
    };
    let run = ChildRun {
        status,
        stdout: stdout.join().unwrap_or_default(),
        stderr: stderr.join().unwrap_or_default(),
    };
    assert!(
        !timed_out,
        "{shown} did not finish within {timeout:?}; killed it\n{}",
        run.dump()
    );
    run
}

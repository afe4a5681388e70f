//! Trace files for CI: with `TRACED_FFI_TRACE_DIR` set, every traced call writes one
//! JSON file (schema version, test, call site, regions, accesses with symbol and source
//! location, stats), and a failing test's message names its files. Run in a child
//! process, which alone has the variable set.

use traced_ffi::{Tracer, traced_ffi};

use crate::child::run_self;
use crate::levels::O2;

/// Set to `1` in the environment of the child run: only then does [`two_calls_child`]
/// make its calls and fail.
const CHILD_ENV: &str = "TRACED_FFI_TRACE_FILES_CHILD";
/// The full name of the child test.
const CHILD_TEST: &str = "trace_files::two_calls_child";

/// Makes two traced calls, then fails, when run as the child of the test below.
#[traced_ffi(ignore)]
fn two_calls_child(t: &mut Tracer) {
    if std::env::var(CHILD_ENV).as_deref() != Ok("1") {
        return;
    }
    let mut out = t.buffer("out", 4);
    // SAFETY: `out` holds 4 bytes; the fixture writes out[0..4] and out[4], the guard.
    let ((), _) = t.call(|| unsafe { (O2.fill_one_past_end)(out.as_mut_ptr(), 4, 0xab) });
    // SAFETY: as above, 2 bytes.
    let ((), _) = t.call(|| unsafe { (O2.fill_bytes)(out.as_mut_ptr(), 2, 0xcd) });
    panic!("deliberate failure after two calls");
}

/// The `file:line` of the first traced call in [`two_calls_child`].
fn first_call_site() -> String {
    let source = include_str!("trace_files.rs");
    let line = source
        .lines()
        .position(|l| l.contains("O2.fill_one_past_end)(out"))
        .expect("two_calls_child makes the first call")
        + 1;
    format!("{}:{line}", file!())
}

#[traced_ffi]
fn each_call_writes_a_json_trace_file_and_the_failure_names_them(_t: &mut Tracer) {
    let dir = std::env::temp_dir().join(format!("traced-ffi-trace-files-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let dir_text = dir.display().to_string();
    let run = run_self(
        &[
            "--exact",
            CHILD_TEST,
            "--include-ignored",
            "--test-threads=1",
        ],
        &[(CHILD_ENV, "1"), ("TRACED_FFI_TRACE_DIR", &dir_text)],
    );
    let dump = run.dump();
    let first = dir.join(format!("{}.1.json", CHILD_TEST.replace(':', "_")));
    let second = dir.join(format!("{}.2.json", CHILD_TEST.replace(':', "_")));
    assert!(
        run.stdout.contains(&format!(
            "trace files: {}, {}",
            first.display(),
            second.display()
        )),
        "the failure names both files\n{dump}"
    );
    let text = std::fs::read_to_string(&first).unwrap_or_else(|e| panic!("{e}\n{dump}"));
    let _ = std::fs::remove_dir_all(&dir);
    let json: serde_json::Value = serde_json::from_str(&text).expect("the file is JSON");
    assert_eq!(
        json["schema_version"],
        traced_ffi::TRACE_FILE_SCHEMA_VERSION,
        "{text}"
    );
    assert_eq!(json["test"], CHILD_TEST, "{text}");
    assert_eq!(json["call_site"], first_call_site(), "{text}");
    assert_eq!(
        json["regions"],
        serde_json::json!([{ "name": "out", "kind": "Buffer", "len": 4 }]),
        "{text}"
    );
    let accesses = json["accesses"].as_array().expect("accesses is a list");
    assert_eq!(accesses.len(), 5, "{text}");
    for (i, a) in accesses.iter().enumerate() {
        assert_eq!(a["kind"], "write", "{text}");
        assert_eq!(a["region"], "out", "{text}");
        assert_eq!(a["offset"], i, "{text}");
        assert_eq!(a["len"], 1, "{text}");
        assert_eq!(a["bytes"], "ab", "{text}");
        assert_eq!(a["out_of_bounds"], i == 4, "{text}");
        assert!(
            a["symbol"]
                .as_str()
                .is_some_and(|s| s.starts_with("fill_one_past_end_o2+0x")),
            "{text}"
        );
        assert!(
            a["source"]
                .as_str()
                .is_some_and(|s| s.starts_with("fill_one_past_end_o2 (c/fixtures.c:")),
            "{text}"
        );
    }
    // Five faults, or fewer when the code cache took the loop.
    let stats = &json["stats"];
    let faults = stats["faults"].as_u64().unwrap_or(0);
    let entries = stats["cache_entries"].as_u64().unwrap_or(u64::MAX);
    assert!(
        faults == 5 && entries == 0 || faults < 5 && entries >= 1,
        "{text}"
    );
}

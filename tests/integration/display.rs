//! How a trace prints: a summary line, a header, one aligned row per access with
//! offsets relative to the buffer. Rows are compared word by word, so the checks hold
//! whatever the column widths.

use traced_ffi::{Tracer, traced_ffi};

use crate::check::avx2_or_skip;
use crate::levels::O2;

const HEADER: [&str; 6] = ["kind", "where", "len", "bytes", "at", "instruction"];

fn words(line: &str) -> Vec<&str> {
    line.split_whitespace().collect()
}

/// The char column at which the `index`th word of `line` starts.
fn column_of_word(line: &str, index: usize) -> usize {
    let mut in_word = false;
    let mut seen = 0;
    for (col, c) in line.chars().enumerate() {
        if !c.is_whitespace() && !in_word {
            if seen == index {
                return col;
            }
            seen += 1;
        }
        in_word = !c.is_whitespace();
    }
    panic!("{line:?} has no word {index}");
}

#[traced_ffi]
fn trace_display_prints_summary_header_and_one_aligned_row_per_access(t: &mut Tracer) {
    let mut buf = t.buffer("buf", 3);
    // SAFETY: `buf` is valid for writes of 3 bytes.
    let ((), trace) = t.call(|| unsafe { (O2.fill_bytes)(buf.as_mut_ptr(), 3, 0xab) });
    let text = format!("{trace}");
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 3 + 3, "{text}");

    let stats = trace.stats();
    // Three faults, or two and the code cache for the rest.
    assert!(
        (stats.faults, stats.cache_entries) == (3, 0)
            || (stats.faults, stats.cache_entries) == (2, 1),
        "{stats:?}\n{text}"
    );
    assert_eq!(
        lines[0],
        format!(
            "3 access(es), {} fault(s), {} stop(s), {} ptrace request(s)",
            stats.faults, stats.stops, stats.ptrace_requests
        ),
        "{text}"
    );
    assert_eq!(lines[1], "regions: `buf` 3 bytes", "{text}");
    assert_eq!(words(lines[2]), HEADER, "{text}");
    // fill_bytes's store is on the line after its definition in fixtures.c.
    let fixtures = include_str!("../../fixtures/c/fixtures.c");
    let store_line = fixtures
        .lines()
        .position(|l| l.contains("FN(fill_bytes)("))
        .expect("fixtures.c defines fill_bytes")
        + 3;
    let source = format!("(c/fixtures.c:{store_line})");
    for (i, row) in lines[3..].iter().enumerate() {
        let location = format!("buf[{:#x}..{:#x}]", i, i + 1);
        assert_eq!(
            words(row),
            [
                "write",
                &location,
                "1",
                "ab",
                "fill_bytes_o2+0x10",
                "mov",
                "[rdi],dl",
                "@",
                "fill_bytes_o2",
                &source
            ],
            "{text}"
        );
        // Every column starts where its header does, except `len`, which is
        // right-aligned under it.
        for column in [0, 1, 3, 4, 5] {
            assert_eq!(
                column_of_word(row, column),
                column_of_word(lines[2], column),
                "column {} of {row:?}\n{text}",
                HEADER[column]
            );
        }
    }
    assert!(lines[3].contains("write  buf[0x0..0x1]"), "{text}");
}

#[traced_ffi]
fn trace_display_shows_negative_offsets_and_at_most_16_bytes_per_row(t: &mut Tracer) {
    let input = t.buffer_from("in", &[0x01, 0x02]);
    // SAFETY: in[-1] is the buffer's redzone; in[0..2] is readable.
    let (sum, trace) = t.call(|| unsafe { (O2.sum_from_minus_one)(input.as_ptr(), 2) });
    assert_eq!(sum, 3);
    let text = format!("{trace}");
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 3 + 3, "{text}");
    assert!(
        lines[3].ends_with("  <- OUT OF BOUNDS"),
        "the read before the start is marked\n{text}"
    );
    assert!(!lines[4].contains("OUT OF BOUNDS"), "{text}");
    assert_eq!(
        words(lines[3])[..6],
        [
            "read",
            "in[-0x1..0x0]",
            "1",
            "00",
            "sum_from_minus_one_o2+0x0",
            "movzx"
        ],
        "{text}"
    );
    assert_eq!(
        words(lines[4])[..6],
        [
            "read",
            "in[0x0..0x1]",
            "1",
            "01",
            "sum_from_minus_one_o2+0x10",
            "movzx"
        ],
        "{text}"
    );
    assert_eq!(
        words(lines[5])[..4],
        ["read", "in[0x1..0x2]", "1", "02"],
        "{text}"
    );

    if !avx2_or_skip(t.test_name()) {
        return;
    }
    let data: Vec<u8> = (0x40..0x60).collect();
    let src = t.buffer_from("src", &data);
    let mut dst = t.buffer("dst", 32);
    // SAFETY: `src` is readable and `dst` writable for 32 bytes; AVX2 was checked.
    let ((), trace) = t.call(|| unsafe { (O2.copy32_avx)(dst.as_mut_ptr(), src.as_ptr()) });
    let text = format!("{trace}");
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 3 + 2, "{text}");
    let first_16: Vec<String> = data[..16].iter().map(|b| format!("{b:02x}")).collect();
    for (line, kind, location, at) in [
        (lines[3], "read", "src[0x0..0x20]", "copy32_avx_o2+0x0"),
        (lines[4], "write", "dst[0x0..0x20]", "copy32_avx_o2+0x4"),
    ] {
        let row = words(line);
        assert_eq!(row[..3], [kind, location, "32"], "{text}");
        assert_eq!(row[3..19], first_16, "{text}");
        assert_eq!(row[19..22], ["…", at, "vmovdqu"], "{text}");
    }
}

//! An independent oracle: every fixture, and a set of glibc calls, traced by traced-ffi
//! and run under valgrind's lackey (`--tool=lackey --trace-mem=yes`), which must agree.
//!
//! Each test runs `oracle-driver traced <case>` and, under lackey, `oracle-driver plain
//! <case>` (see `tests/oracle/driver.rs` and `traced_ffi_tests::oracle`), both with
//! [`GLIBC_TUNABLES`] so glibc runs the same variant of each string function natively
//! and under valgrind, and compares per buffer the bytes read and the bytes written
//! (out-of-bounds bytes included: the redzone bytes an aligned vector load reads before
//! a string, the guard byte `fill_one_past_end` writes), the call's result and the
//! buffers' contents afterwards. Cases marked [`Compare::Sequence`] must also agree on
//! the ordered list of (kind, buffer, offset, length, instruction): every C fixture and
//! every glibc case without a `rep` string instruction. The `rep movsb`/`rep stosb`
//! cases are [`Compare::Sets`]: valgrind reports one access per iteration there.
//!
//! The `form_*` tests cover the instruction-form corpus (`traced_ffi_fixtures::forms`,
//! `fixtures/asm/forms.S`), every form valgrind 3.19 runs; the AVX-512 forms are left
//! out (valgrind 3.19 has no AVX-512), and so are `cmpsw`, `clflushopt` and `clwb`
//! (valgrind cannot decode them), `rep lods` (valgrind runs it as one `lods`) and
//! `xsave`/`xrstor` (valgrind saves its own CPU's components): see `form_cases` in
//! the driver. Sequences: the non-`rep` string forms, push/pop/call/jmp through
//! memory, page-crossing loads, a successful `lock cmpxchg*`, cmov, setcc, the plain
//! SSE/AVX/AVX2 loads and stores, non-temporal stores, `vpgatherdd` (one read per
//! enabled element, in element order, on both sides), x87, movbe, `bt` with an
//! immediate, the buffer-as-stack function, `clflush` and the prefetches (no access
//! on either side). Byte sets only:
//! - the `rep`/`repe`/`repne` string forms (one access per iteration in lackey);
//! - `lock xadd`/`add`/`or`/`and` and `xchg`: VEX emits a load, then a
//!   compare-and-swap, so lackey logs a read then a modify (R, R, W) where the tracer
//!   has R, W;
//! - the AVX masked moves (`vmaskmovps`, `vpmaskmovd`, `vpmaskmovq`): VEX accesses each
//!   enabled element separately, the tracer one access per run of enabled elements;
//! - with a [`Known`] difference each, which must occur exactly as listed in
//!   [`KNOWN_DIFFERENCES`]: a failing `lock cmpxchg*` (lackey logs a store, the tracer
//!   deliberately none), `bt*` with a register bit offset (VEX accesses one byte),
//!   `maskmovdqu` (VEX loads and stores all 16 bytes).
//! - `fxsave`/`fxrstor`: bytes 0..416 of the 512 on both sides (VEX in 18 pieces).
//!
//! Without valgrind on PATH each test prints `skipped: …` and passes; `.ci/run`
//! installs it. A failing test prints both sides, the differences, and keeps the lackey
//! log (its path is in the message).

use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use traced_ffi::{Tracer, traced_ffi};
use traced_ffi_tests::oracle::{Compare, GLIBC_TUNABLES, Known, Run, compare};

use crate::child::{ChildRun, run};

/// The driver binary, built by cargo with this test binary.
const DRIVER: &str = env!("CARGO_BIN_EXE_oracle-driver");
/// Where lackey logs go (one per case; deleted when the case passes).
const LOG_DIR: &str = concat!(env!("CARGO_TARGET_TMPDIR"), "/oracle");
/// How long one driver run may take. Lackey makes a run about 50 times slower and logs
/// about a million lines of process start-up; the largest case takes ~2 s alone.
const RUN_TIMEOUT: Duration = Duration::from_secs(120);

/// Cases whose result valgrind computes differently for a reason that has nothing to
/// do with memory accesses; their result is not compared (accesses and contents are).
const RESULT_DIFFERS_UNDER_VALGRIND: &[(&str, &str)] = &[(
    "preserve_state_check",
    "valgrind 3.19 keeps only MXCSR's rounding mode, not the FTZ and DAZ bits the \
     fixture sets, so its MXCSR check returns 500 under valgrind",
)];

/// What valgrind 3.19 does differently from the CPU in a failed `lock cmpxchg*`: VEX
/// turns the instruction into a compare-and-swap, which lackey always logs as a modify
/// (`M`, a load and a store), while the tracer deliberately records no write when the
/// compare fails (nothing is stored; the CPU's locked write-back of the unchanged value
/// is not a write of the program's).
const CAS_FAILS: &str = "lackey logs a failed lock cmpxchg as a modify (load + store); \
                         the tracer records only the read when the compare fails";
/// VEX emulates `bt`/`bts`/`btr`/`btc` with a register bit offset on memory as a
/// 1-byte access to the byte holding the bit; the CPU (and the tracer) access the whole
/// operand-sized unit holding it.
const BT_BYTE: &str = "VEX accesses only the byte holding the bit, the instruction the \
                       whole operand-sized unit";
/// Exact byte-set differences, per case, between the tracer and lackey that are
/// understood (see [`Known`]: each must occur exactly as given, so the comparison of
/// everything else is unchanged). Every such case is compared as [`Compare::Sets`].
const KNOWN_DIFFERENCES: &[(&str, Known)] = &[
    ("lock_cmpxchg8_fails", cas_fails(1)),
    ("lock_cmpxchg16_fails", cas_fails(2)),
    ("lock_cmpxchg32_fails", cas_fails(4)),
    ("lock_cmpxchg64_fails", cas_fails(8)),
    ("lock_cmpxchg8b_fails", cas_fails(8)),
    ("lock_cmpxchg16b_fails", cas_fails(16)),
    // bt qword [p], 65: the qword at 8; VEX reads byte 8 (bit 1).
    ("bt64_bit_65", bt_unit("read", (9, 16))),
    // bt qword [p + 16], -63: the qword at 8 again, bit 1 in byte 8.
    ("bt64_bit_minus_63", bt_unit("read", (9, 16))),
    // bts dword [p], 70: the dword at 8, bit 6 in byte 8.
    ("bts32_bit_70", bt_unit("read", (9, 12))),
    ("bts32_bit_70", bt_unit("written", (9, 12))),
    // btr word [p + 16], -17: the word at 12, bit 15 in byte 13.
    ("btr16_bit_minus_17", bt_unit("read", (12, 13))),
    ("btr16_bit_minus_17", bt_unit("written", (12, 13))),
    // btc qword [p], 130: the qword at 16, bit 2 in byte 16.
    ("btc64_bit_130", bt_unit("read", (17, 24))),
    ("btc64_bit_130", bt_unit("written", (17, 24))),
    // maskmovdqu with bytes 1..4, 9, 12..16 enabled: VEX loads all 16 destination
    // bytes, merges and stores all 16; the CPU (and the tracer) write only the enabled
    // bytes and read none of the destination.
    (
        "maskmovdqu",
        Known {
            buffer: "dst",
            what: "read",
            only_traced: (0, 0),
            only_lackey: &[(0, 16)],
            why: "VEX emulates maskmovdqu as a 16-byte load, merge and 16-byte store",
        },
    ),
    (
        "maskmovdqu",
        Known {
            buffer: "dst",
            what: "written",
            only_traced: (0, 0),
            only_lackey: &[(0, 1), (4, 9), (10, 12)],
            why: "VEX emulates maskmovdqu as a 16-byte load, merge and 16-byte store \
                  (the disabled bytes are stored back unchanged)",
        },
    ),
];

/// A failed `lock cmpxchg` of `len` bytes on buffer `p` at 0 (see [`CAS_FAILS`]).
const fn cas_fails(len: i64) -> Known {
    Known {
        buffer: "p",
        what: "written",
        only_traced: (0, 0),
        only_lackey: match len {
            1 => &[(0, 1)],
            2 => &[(0, 2)],
            4 => &[(0, 4)],
            8 => &[(0, 8)],
            _ => &[(0, 16)],
        },
        why: CAS_FAILS,
    }
}

/// A bit test on buffer `bits` whose unit's bytes `only_traced` VEX does not touch
/// (see [`BT_BYTE`]).
const fn bt_unit(what: &'static str, only_traced: (i64, i64)) -> Known {
    Known {
        buffer: "bits",
        what,
        only_traced,
        only_lackey: &[],
        why: BT_BYTE,
    }
}

/// `valgrind` from PATH, if it is installed.
pub(crate) fn valgrind() -> Option<PathBuf> {
    std::env::split_paths(&std::env::var_os("PATH")?)
        .map(|dir| dir.join("valgrind"))
        .find(|p| p.is_file())
}

fn driver_output(run: &ChildRun, what: &str) -> Run {
    assert!(
        run.status.success(),
        "{what} failed (status {:?}):\n{}",
        run.status,
        run.dump()
    );
    Run::parse(&run.stdout).unwrap_or_else(|e| panic!("{what}: {e}\n{}", run.dump()))
}

/// Runs `case` traced and under lackey and asserts that both agree as `how` says.
fn check(case: &str, how: Compare) {
    let Some(valgrind) = valgrind() else {
        println!("skipped: valgrind not installed (apt-get install valgrind)");
        return;
    };
    let mut traced = Command::new(DRIVER);
    traced
        .args(["traced", case])
        .env("GLIBC_TUNABLES", GLIBC_TUNABLES);
    let traced = driver_output(&run(traced, RUN_TIMEOUT), "oracle-driver traced");
    if let Some(why) = &traced.skip {
        println!("skipped: {why}");
        return;
    }

    std::fs::create_dir_all(LOG_DIR).unwrap_or_else(|e| panic!("cannot create {LOG_DIR}: {e}"));
    let log_path = PathBuf::from(LOG_DIR).join(format!("{case}.lackey.log"));
    let mut plain = Command::new(&valgrind);
    plain
        .arg("--tool=lackey")
        .arg("--trace-mem=yes")
        .arg(format!("--log-file={}", log_path.display()))
        .args([DRIVER, "plain", case])
        .env("GLIBC_TUNABLES", GLIBC_TUNABLES);
    let plain = driver_output(
        &run(plain, RUN_TIMEOUT),
        "oracle-driver plain under valgrind --tool=lackey",
    );
    let log = std::fs::read_to_string(&log_path)
        .unwrap_or_else(|e| panic!("cannot read the lackey log {}: {e}", log_path.display()));

    let result_differs = RESULT_DIFFERS_UNDER_VALGRIND
        .iter()
        .find(|(name, _)| *name == case)
        .map(|(_, why)| *why);
    let known: Vec<Known> = KNOWN_DIFFERENCES
        .iter()
        .filter(|(name, _)| *name == case)
        .map(|(_, k)| *k)
        .collect();
    match compare(&traced, &plain, &log, how, result_differs, &known) {
        Ok(summary) => {
            let _ = std::fs::remove_file(&log_path);
            println!("{case}: {summary}");
        }
        Err(report) => panic!(
            "case `{case}` ({how:?}): {report}\nlackey log kept at {}\nrerun one side by \
             hand: GLIBC_TUNABLES='{GLIBC_TUNABLES}' {DRIVER} traced {case}",
            log_path.display()
        ),
    }
}

/// One `#[traced_ffi]` test per case, and [`CASES`], the table of them all.
macro_rules! oracle_tests {
    ($($test:ident => $case:literal, $how:ident;)*) => {
        $(
            #[traced_ffi]
            fn $test(_t: &mut Tracer) {
                check($case, Compare::$how);
            }
        )*

        /// Every case with a test, and how it is compared.
        const CASES: &[(&str, Compare)] = &[$(($case, Compare::$how)),*];
    };
}

oracle_tests! {
    fill_bytes_o0_matches_lackey_in_order => "fill_bytes_o0", Sequence;
    fill_bytes_o2_matches_lackey_in_order => "fill_bytes_o2", Sequence;
    sum_bytes_o0_matches_lackey_in_order => "sum_bytes_o0", Sequence;
    sum_bytes_o2_matches_lackey_in_order => "sum_bytes_o2", Sequence;
    fill_u32_o0_matches_lackey_in_order => "fill_u32_o0", Sequence;
    fill_u32_o2_matches_lackey_in_order => "fill_u32_o2", Sequence;
    sum_u32_o0_matches_lackey_in_order => "sum_u32_o0", Sequence;
    sum_u32_o2_matches_lackey_in_order => "sum_u32_o2", Sequence;
    copy_bytes_o0_matches_lackey_in_order => "copy_bytes_o0", Sequence;
    copy_bytes_o2_matches_lackey_in_order => "copy_bytes_o2", Sequence;
    fill_one_past_end_o0_guard_byte_write_matches_lackey => "fill_one_past_end_o0", Sequence;
    fill_one_past_end_o2_guard_byte_write_matches_lackey => "fill_one_past_end_o2", Sequence;
    sum_from_minus_one_o0_redzone_read_matches_lackey => "sum_from_minus_one_o0", Sequence;
    sum_from_minus_one_o2_redzone_read_matches_lackey => "sum_from_minus_one_o2", Sequence;
    fill_all_but_last_o0_matches_lackey_in_order => "fill_all_but_last_o0", Sequence;
    fill_all_but_last_o2_matches_lackey_in_order => "fill_all_but_last_o2", Sequence;
    init_triple_skip_middle_o0_matches_lackey_in_order => "init_triple_skip_middle_o0", Sequence;
    init_triple_skip_middle_o2_matches_lackey_in_order => "init_triple_skip_middle_o2", Sequence;
    sum_list_o0_pointer_chasing_matches_lackey_in_order => "sum_list_o0", Sequence;
    sum_list_o2_pointer_chasing_matches_lackey_in_order => "sum_list_o2", Sequence;
    increment_u32_o0_matches_lackey_in_order => "increment_u32_o0", Sequence;
    increment_u32_o2_read_modify_write_matches_lackey_modify => "increment_u32_o2", Sequence;
    copy16_sse_o0_matches_lackey_in_order => "copy16_sse_o0", Sequence;
    copy16_sse_o2_matches_lackey_in_order => "copy16_sse_o2", Sequence;
    copy32_avx_o0_matches_lackey_in_order => "copy32_avx_o0", Sequence;
    copy32_avx_o2_matches_lackey_in_order => "copy32_avx_o2", Sequence;
    add8_i32_avx2_o0_matches_lackey_in_order => "add8_i32_avx2_o0", Sequence;
    add8_i32_avx2_o2_folded_load_matches_lackey_in_order => "add8_i32_avx2_o2", Sequence;
    preserve_state_check_matches_lackey_in_order => "preserve_state_check", Sequence;
    memcpy_100_bytes_avx2_matches_lackey_in_order => "memcpy_100", Sequence;
    memcpy_4096_bytes_rep_movsb_matches_lackey_bytes => "memcpy_4096_rep_movsb", Sets;
    memmove_overlapping_forward_matches_lackey_in_order => "memmove_overlap_forward", Sequence;
    memmove_overlapping_backward_matches_lackey_in_order => "memmove_overlap_backward", Sequence;
    memset_100_bytes_avx2_matches_lackey_in_order => "memset_100", Sequence;
    memset_4096_bytes_rep_stosb_matches_lackey_bytes => "memset_4096_rep_stosb", Sets;
    memcmp_stops_at_the_first_difference_like_lackey => "memcmp_100_differs_at_37", Sequence;
    memcmp_of_equal_buffers_matches_lackey_in_order => "memcmp_64_equal", Sequence;
    strlen_3_reads_redzone_before_the_string_like_lackey => "strlen_3", Sequence;
    strlen_100_matches_lackey_in_order => "strlen_100", Sequence;
    strcpy_50_matches_lackey_in_order => "strcpy_50", Sequence;
    strcmp_stops_at_the_first_difference_like_lackey => "strcmp_60_differs_at_45", Sequence;
    memchr_finds_byte_70_matches_lackey_in_order => "memchr_100_finds_70", Sequence;
    qsort_u32_with_a_c_comparator_matches_lackey_in_order => "qsort_16_u32", Sequence;
    snprintf_into_a_buffer_matches_lackey_in_order => "snprintf_into_buffer", Sequence;
    form_rep_movsb_0_matches_lackey_bytes => "rep_movsb_0", Sets;
    form_rep_movsb_1_matches_lackey_bytes => "rep_movsb_1", Sets;
    form_rep_movsb_100_matches_lackey_bytes => "rep_movsb_100", Sets;
    form_rep_movsb_4095_matches_lackey_bytes => "rep_movsb_4095", Sets;
    form_rep_movsb_backward_100_matches_lackey_bytes => "rep_movsb_backward_100", Sets;
    form_rep_movsw_100_matches_lackey_bytes => "rep_movsw_100", Sets;
    form_rep_movsd_100_matches_lackey_bytes => "rep_movsd_100", Sets;
    form_rep_movsq_100_matches_lackey_bytes => "rep_movsq_100", Sets;
    form_rep_movsq_backward_100_matches_lackey_bytes => "rep_movsq_backward_100", Sets;
    form_movsb_matches_lackey_in_order => "movsb", Sequence;
    form_rep_stosb_0_matches_lackey_bytes => "rep_stosb_0", Sets;
    form_rep_stosb_1_matches_lackey_bytes => "rep_stosb_1", Sets;
    form_rep_stosb_100_matches_lackey_bytes => "rep_stosb_100", Sets;
    form_rep_stosb_4095_matches_lackey_bytes => "rep_stosb_4095", Sets;
    form_rep_stosw_100_matches_lackey_bytes => "rep_stosw_100", Sets;
    form_rep_stosd_100_matches_lackey_bytes => "rep_stosd_100", Sets;
    form_rep_stosq_100_matches_lackey_bytes => "rep_stosq_100", Sets;
    form_rep_stosd_backward_100_matches_lackey_bytes => "rep_stosd_backward_100", Sets;
    form_stosq_matches_lackey_in_order => "stosq", Sequence;
    form_lodsd_matches_lackey_in_order => "lodsd", Sequence;
    form_repe_cmpsb_100_differs_at_37_matches_lackey_bytes => "repe_cmpsb_100_differs_at_37", Sets;
    form_repe_cmpsb_100_equal_matches_lackey_bytes => "repe_cmpsb_100_equal", Sets;
    form_repe_cmpsq_100_differs_at_37_matches_lackey_bytes => "repe_cmpsq_100_differs_at_37", Sets;
    form_repne_scasb_100_finds_70_matches_lackey_bytes => "repne_scasb_100_finds_70", Sets;
    form_repe_scasd_backward_100_differs_at_69_matches_lackey_bytes => "repe_scasd_backward_100_differs_at_69", Sets;
    form_scasb_matches_lackey_in_order => "scasb", Sequence;
    form_push_mem_matches_lackey_in_order => "push_mem", Sequence;
    form_pop_mem_matches_lackey_in_order => "pop_mem", Sequence;
    form_call_mem_matches_lackey_in_order => "call_mem", Sequence;
    form_jmp_mem_matches_lackey_in_order => "jmp_mem", Sequence;
    form_load_u64_across_a_page_matches_lackey_in_order => "load_u64_across_a_page", Sequence;
    form_movdqu_across_a_page_matches_lackey_in_order => "movdqu_across_a_page", Sequence;
    form_movdqu_copy_matches_lackey_in_order => "movdqu_copy", Sequence;
    form_lock_cmpxchg8_stores_matches_lackey_in_order => "lock_cmpxchg8_stores", Sequence;
    form_lock_cmpxchg8_fails_matches_lackey_bytes_with_known_difference => "lock_cmpxchg8_fails", Sets;
    form_lock_cmpxchg16_stores_matches_lackey_in_order => "lock_cmpxchg16_stores", Sequence;
    form_lock_cmpxchg16_fails_matches_lackey_bytes_with_known_difference => "lock_cmpxchg16_fails", Sets;
    form_lock_cmpxchg32_stores_matches_lackey_in_order => "lock_cmpxchg32_stores", Sequence;
    form_lock_cmpxchg32_fails_matches_lackey_bytes_with_known_difference => "lock_cmpxchg32_fails", Sets;
    form_lock_cmpxchg64_stores_matches_lackey_in_order => "lock_cmpxchg64_stores", Sequence;
    form_lock_cmpxchg64_fails_matches_lackey_bytes_with_known_difference => "lock_cmpxchg64_fails", Sets;
    form_lock_cmpxchg8b_stores_matches_lackey_in_order => "lock_cmpxchg8b_stores", Sequence;
    form_lock_cmpxchg8b_fails_matches_lackey_bytes_with_known_difference => "lock_cmpxchg8b_fails", Sets;
    form_lock_cmpxchg16b_stores_matches_lackey_in_order => "lock_cmpxchg16b_stores", Sequence;
    form_lock_cmpxchg16b_fails_matches_lackey_bytes_with_known_difference => "lock_cmpxchg16b_fails", Sets;
    form_lock_xadd32_load_then_cas_matches_lackey_bytes => "lock_xadd32", Sets;
    form_xchg64_load_then_cas_matches_lackey_bytes => "xchg64", Sets;
    form_lock_add32_load_then_cas_matches_lackey_bytes => "lock_add32", Sets;
    form_lock_or64_imm_load_then_cas_matches_lackey_bytes => "lock_or64_imm", Sets;
    form_lock_and16_imm_load_then_cas_matches_lackey_bytes => "lock_and16_imm", Sets;
    form_cmovnz_load_taken_matches_lackey_in_order => "cmovnz_load_taken", Sequence;
    form_cmovnz_load_not_taken_matches_lackey_in_order => "cmovnz_load_not_taken", Sequence;
    form_setb_store_matches_lackey_in_order => "setb_store", Sequence;
    form_movd_copy_matches_lackey_in_order => "movd_copy", Sequence;
    form_movq_copy_matches_lackey_in_order => "movq_copy", Sequence;
    form_movss_copy_matches_lackey_in_order => "movss_copy", Sequence;
    form_movsd_copy_matches_lackey_in_order => "movsd_copy", Sequence;
    form_movups_copy_matches_lackey_in_order => "movups_copy", Sequence;
    form_movaps_copy_matches_lackey_in_order => "movaps_copy", Sequence;
    form_movhps_movlps_swap_matches_lackey_in_order => "movhps_movlps_swap", Sequence;
    form_pinsrb_pextrb_matches_lackey_in_order => "pinsrb_pextrb", Sequence;
    form_vmovdqu_ymm_copy_matches_lackey_in_order => "vmovdqu_ymm_copy", Sequence;
    form_vinserti128_vextracti128_matches_lackey_in_order => "vinserti128_vextracti128", Sequence;
    form_vbroadcastss_matches_lackey_in_order => "vbroadcastss", Sequence;
    form_vpmovzxbd_matches_lackey_in_order => "vpmovzxbd", Sequence;
    form_movnti_matches_lackey_in_order => "movnti", Sequence;
    form_movntdq_matches_lackey_in_order => "movntdq", Sequence;
    form_vmovntdq_ymm_matches_lackey_in_order => "vmovntdq_ymm", Sequence;
    form_vmaskmovps_load_matches_lackey_bytes => "vmaskmovps_load", Sets;
    form_vmaskmovps_store_matches_lackey_bytes => "vmaskmovps_store", Sets;
    form_vpmaskmovd_load_matches_lackey_bytes => "vpmaskmovd_load", Sets;
    form_vpmaskmovd_store_matches_lackey_bytes => "vpmaskmovd_store", Sets;
    form_vpmaskmovq_load_matches_lackey_bytes => "vpmaskmovq_load", Sets;
    form_vpmaskmovq_store_matches_lackey_bytes => "vpmaskmovq_store", Sets;
    form_maskmovdqu_matches_lackey_bytes_with_known_difference => "maskmovdqu", Sets;
    form_vpgatherdd_matches_lackey_in_order => "vpgatherdd", Sequence;
    form_fxsave_matches_lackey_bytes => "fxsave", Sets;
    form_fxrstor_matches_lackey_bytes => "fxrstor", Sets;
    form_fld_fstp_f32_matches_lackey_in_order => "fld_fstp_f32", Sequence;
    form_fld_fstp_f64_matches_lackey_in_order => "fld_fstp_f64", Sequence;
    form_fld_fstp_f80_matches_lackey_in_order => "fld_fstp_f80", Sequence;
    form_fild16_fistp64_matches_lackey_in_order => "fild16_fistp64", Sequence;
    form_fnstcw_fldcw_matches_lackey_in_order => "fnstcw_fldcw", Sequence;
    form_fnstenv_matches_lackey_in_order => "fnstenv", Sequence;
    form_movbe16_matches_lackey_in_order => "movbe16", Sequence;
    form_movbe32_matches_lackey_in_order => "movbe32", Sequence;
    form_movbe64_matches_lackey_in_order => "movbe64", Sequence;
    form_bt64_bit_65_matches_lackey_bytes_with_known_difference => "bt64_bit_65", Sets;
    form_bt64_bit_minus_63_matches_lackey_bytes_with_known_difference => "bt64_bit_minus_63", Sets;
    form_bts32_bit_70_matches_lackey_bytes_with_known_difference => "bts32_bit_70", Sets;
    form_btr16_bit_minus_17_matches_lackey_bytes_with_known_difference => "btr16_bit_minus_17", Sets;
    form_btc64_bit_130_matches_lackey_bytes_with_known_difference => "btc64_bit_130", Sets;
    form_bt32_imm_matches_lackey_in_order => "bt32_imm", Sequence;
    form_stack_switch_matches_lackey_in_order => "stack_switch", Sequence;
    form_clflush_matches_lackey_in_order => "clflush", Sequence;
    form_prefetch_matches_lackey_in_order => "prefetch", Sequence;
}

#[traced_ffi]
fn every_driver_case_has_an_oracle_test(_t: &mut Tracer) {
    let listed = run(
        {
            let mut c = Command::new(DRIVER);
            c.arg("list");
            c
        },
        RUN_TIMEOUT,
    );
    assert!(listed.status.success(), "{}", listed.dump());
    let mut driver: Vec<&str> = listed.stdout.lines().collect();
    let mut tested: Vec<&str> = CASES.iter().map(|(name, _)| *name).collect();
    driver.sort_unstable();
    tested.sort_unstable();
    assert_eq!(
        driver, tested,
        "tests/oracle/driver.rs's cases and the oracle_tests! table in \
         tests/integration/oracle.rs must list the same cases"
    );
}

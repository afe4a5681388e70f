//! The fixtures of one optimisation level as function pointers, and the one table of
//! where each fixture's buffer accesses come from (`fixtures/DISASM.md`, gcc 12.2).
//!
//! Each site also says how the tracer carries the faulting instruction out (see
//! `runtime/src/supervisor/executor/emulate.rs` and `supervisor/fault.rs`): plain moves between memory and a
//! general-purpose register or an immediate are emulated by the supervisor; everything
//! else (read-modify-write, SSE/AVX) runs in the displaced-instruction stub. Both are
//! one-stop fast paths; none of the fixtures needs the single-step path.
//!
//! Every fixture test runs at both levels: a check takes a [`Level`] and
//! [`at_both_levels!`] registers one `#[traced_ffi]` test per level. Where the two
//! levels differ (read-modify-write folding, the instructions and their offsets), the
//! difference is in [`O0`] and [`O2`] below, not in the checks.

use traced_ffi_fixtures::{Node, Triple, o0, o2};

/// How the tracer executes a faulting instruction (`Stats::emulated`,
/// `Stats::stub_path`, `Stats::step_path`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Path {
    /// Carried out by the supervisor through `/proc/PID/mem` (plain moves).
    Emulated,
    /// Run in the displaced-instruction stub.
    Stub,
}

/// Where one buffer access comes from: the instruction's `symbol+offset` (what
/// `traced_ffi::describe_ip(access.ip)` prints), its mnemonic (the first word of
/// `access.insn`), and the path it takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Site {
    /// `symbol+0xoffset`, e.g. `fill_bytes_o2+0x10`.
    pub(crate) at: &'static str,
    /// The instruction's mnemonic as iced-x86 prints it, e.g. `movzx`.
    pub(crate) mnemonic: &'static str,
    pub(crate) path: Path,
}

/// A plain move, emulated.
const fn emu(at: &'static str, mnemonic: &'static str) -> Site {
    Site {
        at,
        mnemonic,
        path: Path::Emulated,
    }
}

/// Anything else, run in the stub.
const fn stub(at: &'static str, mnemonic: &'static str) -> Site {
    Site {
        at,
        mnemonic,
        path: Path::Stub,
    }
}

/// The sites of every fixture at one level, in each fixture's access order.
#[derive(Debug)]
pub(crate) struct Sites {
    /// The store.
    pub(crate) fill_bytes: Site,
    /// The load.
    pub(crate) sum_bytes: Site,
    /// The store.
    pub(crate) fill_u32: Site,
    /// The load (folded into `add` at `-O2`).
    pub(crate) sum_u32: Site,
    /// `[read src[i], write dst[i]]`.
    pub(crate) copy_bytes: [Site; 2],
    /// The store (also the out-of-bounds one).
    pub(crate) fill_one_past_end: Site,
    /// `[read buf[-1], read buf[i]]`.
    pub(crate) sum_from_minus_one: [Site; 2],
    /// The store.
    pub(crate) fill_all_but_last: Site,
    /// `[write a, write c]`.
    pub(crate) init_triple_skip_middle: [Site; 2],
    /// `[read value, read next]`.
    pub(crate) sum_list: [Site; 2],
    /// `[read p[i], write p[i]]`: two instructions at `-O0`, one at `-O2`.
    pub(crate) increment_u32: [Site; 2],
    /// `[read src, write dst]`.
    pub(crate) copy16_sse: [Site; 2],
    /// `[read src, write dst]`.
    pub(crate) copy32_avx: [Site; 2],
    /// `[read a, read b, write dst]`.
    pub(crate) add8_i32_avx2: [Site; 3],
}

/// One optimisation level's C fixtures and their sites.
#[derive(Debug)]
pub(crate) struct Level {
    pub(crate) fill_bytes: unsafe extern "C" fn(*mut u8, usize, u8),
    pub(crate) sum_bytes: unsafe extern "C" fn(*const u8, usize) -> u32,
    pub(crate) fill_u32: unsafe extern "C" fn(*mut u32, usize, u32),
    pub(crate) sum_u32: unsafe extern "C" fn(*const u32, usize) -> u32,
    pub(crate) copy_bytes: unsafe extern "C" fn(*mut u8, *const u8, usize),
    pub(crate) fill_one_past_end: unsafe extern "C" fn(*mut u8, usize, u8),
    pub(crate) sum_from_minus_one: unsafe extern "C" fn(*const u8, usize) -> u32,
    pub(crate) fill_all_but_last: unsafe extern "C" fn(*mut u8, usize, u8),
    pub(crate) init_triple_skip_middle: unsafe extern "C" fn(*mut Triple),
    pub(crate) sum_list: unsafe extern "C" fn(*const Node) -> u32,
    pub(crate) increment_u32: unsafe extern "C" fn(*mut u32, usize),
    pub(crate) copy16_sse: unsafe extern "C" fn(*mut u8, *const u8),
    pub(crate) copy32_avx: unsafe extern "C" fn(*mut u8, *const u8),
    pub(crate) add8_i32_avx2: unsafe extern "C" fn(*mut i32, *const i32, *const i32),
    pub(crate) sites: Sites,
}

/// `-O0`: each C statement is its own instructions; locals live in the red zone.
pub(crate) const O0: Level = Level {
    fill_bytes: o0::fill_bytes,
    sum_bytes: o0::sum_bytes,
    fill_u32: o0::fill_u32,
    sum_u32: o0::sum_u32,
    copy_bytes: o0::copy_bytes,
    fill_one_past_end: o0::fill_one_past_end,
    sum_from_minus_one: o0::sum_from_minus_one,
    fill_all_but_last: o0::fill_all_but_last,
    init_triple_skip_middle: o0::init_triple_skip_middle,
    sum_list: o0::sum_list,
    increment_u32: o0::increment_u32,
    copy16_sse: o0::copy16_sse,
    copy32_avx: o0::copy32_avx,
    add8_i32_avx2: o0::add8_i32_avx2,
    sites: Sites {
        fill_bytes: emu("fill_bytes_o0+0x2a", "mov"),
        sum_bytes: emu("sum_bytes_o0+0x28", "movzx"),
        fill_u32: emu("fill_u32_o0+0x2f", "mov"),
        sum_u32: emu("sum_u32_o0+0x30", "mov"),
        copy_bytes: [
            emu("copy_bytes_o0+0x30", "movzx"),
            emu("copy_bytes_o0+0x33", "mov"),
        ],
        fill_one_past_end: emu("fill_one_past_end_o0+0x2a", "mov"),
        sum_from_minus_one: [
            emu("sum_from_minus_one_o0+0x14", "movzx"),
            emu("sum_from_minus_one_o0+0x32", "movzx"),
        ],
        fill_all_but_last: emu("fill_all_but_last_o0+0x2a", "mov"),
        init_triple_skip_middle: [
            emu("init_triple_skip_middle_o0+0xc", "mov"),
            emu("init_triple_skip_middle_o0+0x16", "mov"),
        ],
        sum_list: [
            emu("sum_list_o0+0x15", "mov"),
            emu("sum_list_o0+0x1f", "mov"),
        ],
        increment_u32: [
            emu("increment_u32_o0+0x29", "mov"),
            emu("increment_u32_o0+0x41", "mov"),
        ],
        copy16_sse: [
            stub("copy16_sse_o0+0x18", "movdqu"),
            stub("copy16_sse_o0+0x3a", "movups"),
        ],
        copy32_avx: [
            stub("copy32_avx_o0+0x25", "vmovdqu"),
            stub("copy32_avx_o0+0x50", "vmovdqu"),
        ],
        add8_i32_avx2: [
            stub("add8_i32_avx2_o0+0x2d", "vmovdqu"),
            stub("add8_i32_avx2_o0+0x46", "vmovdqu"),
            stub("add8_i32_avx2_o0+0x93", "vmovdqu"),
        ],
    },
};

/// `-O2` (no vectorisation, unrolling or builtins): tight loops, no stack use.
pub(crate) const O2: Level = Level {
    fill_bytes: o2::fill_bytes,
    sum_bytes: o2::sum_bytes,
    fill_u32: o2::fill_u32,
    sum_u32: o2::sum_u32,
    copy_bytes: o2::copy_bytes,
    fill_one_past_end: o2::fill_one_past_end,
    sum_from_minus_one: o2::sum_from_minus_one,
    fill_all_but_last: o2::fill_all_but_last,
    init_triple_skip_middle: o2::init_triple_skip_middle,
    sum_list: o2::sum_list,
    increment_u32: o2::increment_u32,
    copy16_sse: o2::copy16_sse,
    copy32_avx: o2::copy32_avx,
    add8_i32_avx2: o2::add8_i32_avx2,
    sites: Sites {
        fill_bytes: emu("fill_bytes_o2+0x10", "mov"),
        sum_bytes: emu("sum_bytes_o2+0x10", "movzx"),
        fill_u32: emu("fill_u32_o2+0x10", "mov"),
        sum_u32: stub("sum_u32_o2+0x10", "add"),
        copy_bytes: [
            emu("copy_bytes_o2+0x10", "movzx"),
            emu("copy_bytes_o2+0x14", "mov"),
        ],
        fill_one_past_end: emu("fill_one_past_end_o2+0x8", "mov"),
        sum_from_minus_one: [
            emu("sum_from_minus_one_o2+0x0", "movzx"),
            emu("sum_from_minus_one_o2+0x10", "movzx"),
        ],
        fill_all_but_last: emu("fill_all_but_last_o2+0x10", "mov"),
        init_triple_skip_middle: [
            emu("init_triple_skip_middle_o2+0x0", "mov"),
            emu("init_triple_skip_middle_o2+0x6", "mov"),
        ],
        sum_list: [
            stub("sum_list_o2+0x10", "add"),
            emu("sum_list_o2+0x13", "mov"),
        ],
        // One read-modify-write instruction makes both accesses.
        increment_u32: [
            stub("increment_u32_o2+0x10", "add"),
            stub("increment_u32_o2+0x10", "add"),
        ],
        copy16_sse: [
            stub("copy16_sse_o2+0x0", "movdqu"),
            stub("copy16_sse_o2+0x4", "movups"),
        ],
        copy32_avx: [
            stub("copy32_avx_o2+0x0", "vmovdqu"),
            stub("copy32_avx_o2+0x4", "vmovdqu"),
        ],
        add8_i32_avx2: [
            stub("add8_i32_avx2_o2+0x0", "vmovdqu"),
            stub("add8_i32_avx2_o2+0x4", "vpaddd"),
            stub("add8_i32_avx2_o2+0x8", "vmovdqu"),
        ],
    },
};

/// The two buffer accesses of `preserve_state_check` (assembly, one version).
pub(crate) const PRESERVE_STATE_CHECK: [Site; 2] = [
    emu("preserve_state_check+0x160", "movzx"),
    emu("preserve_state_check+0x165", "mov"),
];

/// Registers a check `fn(&mut Tracer, &Level)` as two `#[traced_ffi]` tests, one per
/// level, under the two names given.
macro_rules! at_both_levels {
    ($check:ident => $o0:ident, $o2:ident) => {
        #[::traced_ffi::traced_ffi]
        fn $o0(t: &mut ::traced_ffi::Tracer) {
            $check(t, &$crate::levels::O0);
        }

        #[::traced_ffi::traced_ffi]
        fn $o2(t: &mut ::traced_ffi::Tracer) {
            $check(t, &$crate::levels::O2);
        }
    };
}

pub(crate) use at_both_levels;

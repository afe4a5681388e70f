//! The code of the displaced-instruction stub: the one-stop way to run a faulting
//! instruction once with its pages open.
//!
//! The tracee owns one RWX page (mapped before the fork, so both processes
//! know its address). On a fault the supervisor writes into it:
//!
//! ```text
//! save rax rcx rdx rsi rdi r11        ; rip-relative, to the save area
//! for each page range: mprotect(range, PROT_READ|PROT_WRITE)
//!                      mov rcx, rax ; jrcxz ok ; int3   (int3 = mprotect failed)
//! restore rax rcx rdx rsi rdi r11
//! <the faulting instruction, re-encoded if RIP-relative>
//! save rax rcx rdx rsi rdi r11
//! for each page range: mprotect(range, PROT_NONE), checked the same way
//! restore rax rcx rdx rsi rdi r11
//! jmp [rip+0] ; .quad <address of the next instruction>
//! ```
//!
//! and points the thread's `rip` at it. `syscall` keeps the flags (the kernel
//! saves them in r11, which the stub restores), `mov`, `jrcxz` and `jmp` do
//! not change them, and the stub touches no stack, so the red zone, the flags
//! and the FP/SIMD state are those of the traced code throughout.
//!
//! The same page holds a `syscall; int3` gadget the general (single-step)
//! path uses to inject `mprotect` calls.

use crate::layout::{CODE_OFFSET, SAVE_OFFSET, SLOT_SIZE};

/// At most this many page ranges are opened for one instruction (each costs
/// 2 × 38 bytes of stub code).
pub(in crate::supervisor) const MAX_RANGES: usize = 40;

/// `PROT_READ | PROT_WRITE`.
const PROT_RW: u32 = (libc::PROT_READ | libc::PROT_WRITE) as u32;
/// `PROT_NONE`.
const PROT_NONE: u32 = libc::PROT_NONE as u32;
/// `__NR_mprotect` on x86-64.
const SYS_MPROTECT: u32 = libc::SYS_mprotect as u32;

/// The registers the stub uses, with the ModRM `reg` field and REX.R bit of
/// each (Intel SDM vol. 2, table 2-2): rax, rcx, rdx, rsi, rdi, r11.
const SAVED: [(u8, bool); 6] = [
    (0, false),
    (1, false),
    (2, false),
    (6, false),
    (7, false),
    (3, true),
];
/// Length of `mov [rip+disp32], r64` / `mov r64, [rip+disp32]`.
const RIP_MOV_LEN: u64 = 7;
/// Length of one checked `mprotect` sequence (see `emit_mprotect`).
const MPROTECT_SEQ_LEN: u64 = 5 + 10 + 10 + 5 + 2 + 3 + 2 + 1;

/// Where the faulting instruction sits in a stub that opens `ranges` ranges.
pub(in crate::supervisor) fn insn_addr(base: u64, ranges: usize) -> u64 {
    // save all, one mprotect sequence per range, restore all.
    base + CODE_OFFSET + 2 * SAVED.len() as u64 * RIP_MOV_LEN + ranges as u64 * MPROTECT_SEQ_LEN
}

struct Emitter {
    /// Address the next byte will have in the tracee.
    pc: u64,
    base: u64,
    code: Vec<u8>,
}

impl Emitter {
    fn bytes(&mut self, b: &[u8]) {
        self.code.extend_from_slice(b);
        self.pc += b.len() as u64;
    }

    /// `mov [rip+disp], reg` (store = true) or `mov reg, [rip+disp]`.
    fn rip_mov(&mut self, store: bool, slot: usize, (reg, ext): (u8, bool)) {
        let target = self.base + SAVE_OFFSET + 8 * slot as u64;
        let rex = 0x48 | if ext { 0x04 } else { 0 };
        let opcode = if store { 0x89 } else { 0x8b };
        let modrm = (reg << 3) | 0b101;
        let disp = target.wrapping_sub(self.pc + RIP_MOV_LEN) as i64 as i32;
        self.bytes(&[rex, opcode, modrm]);
        self.bytes(&disp.to_le_bytes());
    }

    fn save_all(&mut self) {
        for (slot, reg) in SAVED.iter().enumerate() {
            self.rip_mov(true, slot, *reg);
        }
    }

    fn restore_all(&mut self) {
        for (slot, reg) in SAVED.iter().enumerate() {
            self.rip_mov(false, slot, *reg);
        }
    }

    /// `mprotect(start, len, prot)`; on a non-zero result, `int3`.
    fn mprotect(&mut self, (start, len): (u64, u64), prot: u32) {
        self.bytes(&[0xb8]); // mov eax, imm32
        self.bytes(&SYS_MPROTECT.to_le_bytes());
        self.bytes(&[0x48, 0xbf]); // mov rdi, imm64
        self.bytes(&start.to_le_bytes());
        self.bytes(&[0x48, 0xbe]); // mov rsi, imm64
        self.bytes(&len.to_le_bytes());
        self.bytes(&[0xba]); // mov edx, imm32
        self.bytes(&prot.to_le_bytes());
        self.bytes(&[0x0f, 0x05]); // syscall
        self.bytes(&[0x48, 0x89, 0xc1]); // mov rcx, rax
        self.bytes(&[0xe3, 0x01]); // jrcxz +1 (over the int3)
        self.bytes(&[0xcc]); // int3: mprotect failed, rax = -errno
    }
}

/// How the stub ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(in crate::supervisor) enum End {
    /// `jmp` back to this address: the supervisor does not see the thread
    /// again.
    Jump(u64),
    /// `int3`: the supervisor looks at the outcome (flags, rcx) and moves the
    /// thread on itself.
    Trap,
}

/// Builds the stub code for one fault; it is to be written at
/// `base + CODE_OFFSET`. `insn` must already be encoded for
/// `insn_addr(base, ranges.len())`.
pub(in crate::supervisor) fn build(
    base: u64,
    insn: &[u8],
    ranges: &[(u64, u64)],
    end: End,
) -> Vec<u8> {
    let mut e = Emitter {
        pc: base + CODE_OFFSET,
        base,
        code: Vec::with_capacity(256),
    };
    e.save_all();
    for r in ranges {
        e.mprotect(*r, PROT_RW);
    }
    e.restore_all();
    debug_assert_eq!(e.pc, insn_addr(base, ranges.len()));
    e.bytes(insn);
    e.save_all();
    for r in ranges {
        e.mprotect(*r, PROT_NONE);
    }
    e.restore_all();
    match end {
        End::Jump(return_ip) => {
            e.bytes(&[0xff, 0x25, 0, 0, 0, 0]); // jmp [rip+0]
            e.bytes(&return_ip.to_le_bytes());
        }
        End::Trap => e.bytes(&[0xcc]),
    }
    debug_assert!(e.code.len() as u64 <= SLOT_SIZE as u64 - CODE_OFFSET);
    e.code
}

#[cfg(test)]
mod tests {
    use super::*;
    use iced_x86::{Decoder, DecoderOptions, Formatter, IntelFormatter};

    fn disassemble(ip: u64, code: &[u8]) -> Vec<String> {
        let mut out = Vec::new();
        let mut d = Decoder::with_ip(64, code, ip, DecoderOptions::NONE);
        let mut f = IntelFormatter::new();
        while d.can_decode() && out.len() < 80 {
            let i = d.decode();
            let mut s = String::new();
            f.format(&i, &mut s);
            out.push(s);
        }
        out
    }

    #[test]
    fn stub_saves_opens_runs_closes_restores_and_jumps_back() {
        let base = 0x7000_0000u64;
        let insn = [0x89, 0x07]; // mov [rdi], eax
        let code = build(
            base,
            &insn,
            &[(0x5000_0000, 0x1000)],
            End::Jump(0x4000_1234),
        );
        let text = disassemble(base + CODE_OFFSET, &code);
        assert_eq!(
            text[0],
            "mov [rel 7000_0000h],rax"
                .replace("rel ", "")
                .replace('_', ""),
            "{text:#?}"
        );
        assert_eq!(text[5], "mov [7000_0028h],r11".replace('_', ""));
        assert_eq!(text[6], "mov eax,0Ah");
        assert_eq!(text[7], "mov rdi,5000_0000h".replace('_', ""));
        assert_eq!(text[8], "mov rsi,1000h");
        assert_eq!(text[9], "mov edx,3");
        assert_eq!(text[10], "syscall");
        assert_eq!(text[11], "mov rcx,rax");
        assert!(text[12].starts_with("jrcxz"));
        assert_eq!(text[13], "int3");
        assert_eq!(text[14], "mov rax,[7000_0000h]".replace('_', ""));
        assert_eq!(text[20], "mov [rdi],eax");
        assert_eq!(text[30], "mov edx,0");
        assert_eq!(
            text[41],
            "jmp qword [rip]"
                .replace("qword [rip]", "qword ptr [7000_011Ah]")
                .replace('_', "")
                .replace(
                    "7000011Ah",
                    &format!("{:X}h", base + CODE_OFFSET + code.len() as u64 - 8)
                )
        );
        assert_eq!(&code[code.len() - 8..], &0x4000_1234u64.to_le_bytes());
        assert_eq!(
            insn_addr(base, 1),
            base + CODE_OFFSET + 6 * 7 + MPROTECT_SEQ_LEN + 6 * 7
        );
    }
}

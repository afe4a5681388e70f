//! The two gates of a cache slot: the open gate (the call's pages become
//! readable and writable, then a jump into the translated code) and the
//! close gate (the pages become `PROT_NONE` again, then a jump to native
//! code, with a stop first when the supervisor asked for one).
//!
//! ```text
//! open:   save rax rcx rdx rsi rdi r11
//!         for each range: mprotect(range, RW); mov rcx, rax; jrcxz ok; int3
//!         restore; jmp [ENTRY_TARGET]
//! close:  save; for each range: mprotect(range, NONE), checked; restore
//!         mov [SPILL_GATE], rcx; mov rcx, [TRAP]; jrcxz go
//!         mov rcx, [SPILL_GATE]; int3          ; the exit trap
//!   go:   mov rcx, [SPILL_GATE]; jmp [EXIT_TARGET]
//! ```
//!
//! `syscall` keeps the flags (r11, which is restored), and nothing else
//! here changes them.

use iced_x86::{
    BlockEncoder, BlockEncoderOptions, Code, Instruction, InstructionBlock, MemoryOperand, Register,
};

use super::translate::cell;

/// The registers the gates save, in the order of their cells.
const SAVED: [Register; 6] = [
    Register::RAX,
    Register::RCX,
    Register::RDX,
    Register::RSI,
    Register::RDI,
    Register::R11,
];

/// Built gate code.
pub(in crate::supervisor) struct Gate {
    pub(in crate::supervisor) code: Vec<u8>,
    /// For the close gate: where `rip` is at the exit trap.
    pub(in crate::supervisor) trap_end: u64,
}

struct Builder {
    out: Vec<Instruction>,
    data: u64,
    fake: u64,
}

type Built = Result<Instruction, iced_x86::IcedError>;

impl Builder {
    fn push(&mut self, i: Built) -> Result<u64, String> {
        let mut i = i.map_err(|e| format!("cannot build the gate: {e}"))?;
        self.fake += 1;
        i.set_ip(self.fake);
        self.out.push(i);
        Ok(self.fake)
    }

    fn cell(&self, off: u64) -> MemoryOperand {
        MemoryOperand::with_base_displ(Register::RIP, (self.data + off) as i64)
    }

    fn save_all(&mut self) -> Result<(), String> {
        for (k, r) in SAVED.iter().enumerate() {
            let m = self.cell(cell::SAVE + 8 * k as u64);
            self.push(Instruction::with2(Code::Mov_rm64_r64, m, *r))?;
        }
        Ok(())
    }

    fn restore_all(&mut self) -> Result<(), String> {
        for (k, r) in SAVED.iter().enumerate() {
            let m = self.cell(cell::SAVE + 8 * k as u64);
            self.push(Instruction::with2(Code::Mov_r64_rm64, *r, m))?;
        }
        Ok(())
    }

    fn mprotects(&mut self, ranges: &[(u64, u64)], prot: i32) -> Result<(), String> {
        for &(start, len) in ranges {
            self.push(Instruction::with2(
                Code::Mov_r32_imm32,
                Register::EAX,
                libc::SYS_mprotect as u32,
            ))?;
            self.push(Instruction::with2(
                Code::Mov_r64_imm64,
                Register::RDI,
                start,
            ))?;
            self.push(Instruction::with2(Code::Mov_r64_imm64, Register::RSI, len))?;
            self.push(Instruction::with2(
                Code::Mov_r32_imm32,
                Register::EDX,
                prot as u32,
            ))?;
            self.push(Ok(Instruction::with(Code::Syscall)))?;
            self.push(Instruction::with2(
                Code::Mov_r64_rm64,
                Register::RCX,
                Register::RAX,
            ))?;
            // jrcxz over the int3 (the label is the instruction after it).
            let jrcxz = self.out.len();
            self.push(Instruction::with_branch(Code::Jrcxz_rel8_64, 0))?;
            self.push(Ok(Instruction::with(Code::Int3)))?;
            let after = self.fake + 1;
            self.out[jrcxz].set_near_branch64(after);
        }
        Ok(())
    }

    fn encode(self, at: u64) -> Result<(Vec<u8>, Vec<u32>), String> {
        let block = InstructionBlock::new(&self.out, at);
        let r = BlockEncoder::encode(
            64,
            block,
            BlockEncoderOptions::RETURN_NEW_INSTRUCTION_OFFSETS,
        )
        .map_err(|e| format!("cannot encode the gate: {e}"))?;
        Ok((r.code_buffer, r.new_instruction_offsets))
    }
}

/// The part both gates share: save the registers `syscall` uses, `mprotect`
/// each range to `prot` (checked), restore.
fn protecting(data: u64, ranges: &[(u64, u64)], prot: i32) -> Result<Builder, String> {
    let mut b = Builder {
        out: Vec::new(),
        data,
        fake: 0,
    };
    b.save_all()?;
    b.mprotects(ranges, prot)?;
    b.restore_all()?;
    Ok(b)
}

/// The open gate at `at`, for the slot whose data page is at `data`.
pub(in crate::supervisor) fn open(
    at: u64,
    data: u64,
    ranges: &[(u64, u64)],
) -> Result<Gate, String> {
    let mut b = protecting(data, ranges, libc::PROT_READ | libc::PROT_WRITE)?;
    let m = b.cell(cell::ENTRY_TARGET);
    b.push(Instruction::with1(Code::Jmp_rm64, m))?;
    let (code, _) = b.encode(at)?;
    Ok(Gate { code, trap_end: 0 })
}

/// The close gate at `at`.
pub(in crate::supervisor) fn close(
    at: u64,
    data: u64,
    ranges: &[(u64, u64)],
) -> Result<Gate, String> {
    let mut b = protecting(data, ranges, libc::PROT_NONE)?;
    let spill = b.cell(cell::SPILL_GATE);
    b.push(Instruction::with2(Code::Mov_rm64_r64, spill, Register::RCX))?;
    let trap = b.cell(cell::TRAP);
    b.push(Instruction::with2(Code::Mov_r64_rm64, Register::RCX, trap))?;
    let jrcxz = b.out.len();
    b.push(Instruction::with_branch(Code::Jrcxz_rel8_64, 0))?;
    b.push(Instruction::with2(Code::Mov_r64_rm64, Register::RCX, spill))?;
    b.push(Ok(Instruction::with(Code::Int3)))?;
    let go_index = b.out.len();
    let go = b.push(Instruction::with2(Code::Mov_r64_rm64, Register::RCX, spill))?;
    b.out[jrcxz].set_near_branch64(go);
    let target = b.cell(cell::EXIT_TARGET);
    b.push(Instruction::with1(Code::Jmp_rm64, target))?;
    let (code, offsets) = b.encode(at)?;
    let trap_end = at + u64::from(offsets[go_index]);
    Ok(Gate { code, trap_end })
}

#[cfg(test)]
mod tests {
    use super::*;
    use iced_x86::{Decoder, DecoderOptions, Formatter, IntelFormatter};

    fn text(ip: u64, code: &[u8]) -> Vec<String> {
        let mut d = Decoder::with_ip(64, code, ip, DecoderOptions::NONE);
        let mut f = IntelFormatter::new();
        let mut out = Vec::new();
        while d.can_decode() {
            let i = d.decode();
            let mut s = String::new();
            f.format(&i, &mut s);
            out.push(s);
        }
        out
    }

    #[test]
    fn close_gate_closes_each_range_then_traps_only_when_asked_and_jumps_out() {
        let at = 0x7000_4000;
        let data = 0x7000_0000;
        let g = close(at, data, &[(0x5000_0000, 0x2000)]).expect("gate");
        let t = text(at, &g.code);
        assert_eq!(t[6], "mov eax,0Ah");
        assert_eq!(t[7], "mov rdi,50000000h");
        assert_eq!(t[8], "mov rsi,2000h");
        assert_eq!(t[9], "mov edx,0");
        assert_eq!(t[10], "syscall");
        assert!(t[12].starts_with("jrcxz"), "{t:#?}");
        assert_eq!(t[13], "int3");
        assert_eq!(t[20], "mov [70000070h],rcx", "{t:#?}");
        assert_eq!(t[21], "mov rcx,[70000090h]");
        assert!(t[22].starts_with("jrcxz"));
        assert_eq!(t[24], "int3");
        assert_eq!(t[26], "jmp qword ptr [70000098h]");
        // The exit trap leaves rip on the instruction after the int3.
        let mut d = Decoder::with_ip(64, &g.code, at, DecoderOptions::NONE);
        let ips: Vec<u64> = (0..26).map(|_| d.decode().next_ip()).collect();
        assert_eq!(g.trap_end, ips[24]);
    }

    #[test]
    fn open_gate_opens_each_range_and_jumps_to_the_entry_target() {
        let g = open(
            0x7000_2000,
            0x7000_0000,
            &[(0x5000_0000, 0x1000), (0x6000_0000, 0x1000)],
        )
        .expect("gate");
        let t = text(0x7000_2000, &g.code);
        assert_eq!(t[9], "mov edx,3");
        assert_eq!(t[15], "mov rdi,60000000h");
        assert_eq!(
            t.last().map(String::as_str),
            Some("jmp qword ptr [700000A0h]")
        );
    }
}

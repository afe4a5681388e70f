//! Plain moves, which the supervisor carries out itself (the cheapest
//! one-stop path; its executor is `supervisor/executor/emulate.rs`).
//! Process-free: classifying the instruction and reading and writing
//! registers in a `user_regs_struct`.
//!
//! `mov`, `movzx`, `movsx` and `movsxd` between a general-purpose register
//! (or an immediate) and memory change no flags and touch nothing but their
//! destination, so the supervisor can carry them out itself through
//! `/proc/PID/mem` (which reads and writes `PROT_NONE` private pages), set
//! the destination register and `rip`, and continue. The page never opens.

use iced_x86::{Instruction, Mnemonic, OpKind, Register};
use libc::user_regs_struct;

/// A plain move the supervisor can carry out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Emulation {
    /// `dst <- [mem]` of `size` bytes, extended as the mnemonic says.
    Load {
        dst: Register,
        size: usize,
        extend: Extend,
    },
    /// `[mem] <- src`, `size` bytes.
    StoreReg { src: Register, size: usize },
    /// `[mem] <- imm`, `size` bytes.
    StoreImm { value: u64, size: usize },
}

/// How a loaded value is widened to the destination register.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Extend {
    /// `mov`: same width as the register.
    None,
    /// `movzx`.
    Zero,
    /// `movsx`, `movsxd`.
    Sign,
}

/// The emulation of `insn`, if it is a plain move of at most 8 bytes
/// between memory and a general-purpose register or an immediate.
pub(crate) fn plan(insn: &Instruction) -> Option<Emulation> {
    let extend = match insn.mnemonic() {
        Mnemonic::Mov => Extend::None,
        Mnemonic::Movzx => Extend::Zero,
        Mnemonic::Movsx | Mnemonic::Movsxd => Extend::Sign,
        _ => return None,
    };
    if insn.op_count() != 2 {
        return None;
    }
    let size = insn.memory_size().size();
    if !(1..=8).contains(&size) {
        return None;
    }
    match (insn.op_kind(0), insn.op_kind(1)) {
        (OpKind::Register, OpKind::Memory) if insn.op_register(0).is_gpr() => {
            Some(Emulation::Load {
                dst: insn.op_register(0),
                size,
                extend,
            })
        }
        (OpKind::Memory, OpKind::Register)
            if extend == Extend::None && insn.op_register(1).is_gpr() =>
        {
            Some(Emulation::StoreReg {
                src: insn.op_register(1),
                size,
            })
        }
        (
            OpKind::Memory,
            OpKind::Immediate8
            | OpKind::Immediate16
            | OpKind::Immediate32
            | OpKind::Immediate32to64,
        ) if extend == Extend::None => Some(Emulation::StoreImm {
            value: insn.immediate(1),
            size,
        }),
        _ => None,
    }
}

/// The 64-bit register slot of `regs` that holds `reg`.
fn slot(regs: &mut user_regs_struct, reg: Register) -> Option<&mut u64> {
    Some(match reg.full_register() {
        Register::RAX => &mut regs.rax,
        Register::RBX => &mut regs.rbx,
        Register::RCX => &mut regs.rcx,
        Register::RDX => &mut regs.rdx,
        Register::RSI => &mut regs.rsi,
        Register::RDI => &mut regs.rdi,
        Register::RBP => &mut regs.rbp,
        Register::RSP => &mut regs.rsp,
        Register::R8 => &mut regs.r8,
        Register::R9 => &mut regs.r9,
        Register::R10 => &mut regs.r10,
        Register::R11 => &mut regs.r11,
        Register::R12 => &mut regs.r12,
        Register::R13 => &mut regs.r13,
        Register::R14 => &mut regs.r14,
        Register::R15 => &mut regs.r15,
        _ => return None,
    })
}

/// True for AH, CH, DH, BH: bits 8..16 of their full register.
fn is_high_byte(reg: Register) -> bool {
    matches!(
        reg,
        Register::AH | Register::CH | Register::DH | Register::BH
    )
}

/// The value of register `reg` (its own width, zero-extended).
pub(crate) fn read_register(regs: &user_regs_struct, reg: Register) -> Option<u64> {
    let mut copy = *regs;
    let full = *slot(&mut copy, reg)?;
    Some(if is_high_byte(reg) {
        (full >> 8) & 0xff
    } else {
        match reg.size() {
            8 => full,
            size => full & ((1u64 << (8 * size)) - 1),
        }
    })
}

/// Writes `value` (already of the register's width) to `reg` with the x86-64
/// rules: a 32-bit write zeroes bits 32..64; 16- and 8-bit writes keep the
/// other bits.
pub(crate) fn write_register(regs: &mut user_regs_struct, reg: Register, value: u64) -> Option<()> {
    let high = is_high_byte(reg);
    let size = reg.size();
    let full = slot(regs, reg)?;
    *full = if high {
        (*full & !0xff00) | ((value & 0xff) << 8)
    } else {
        match size {
            8 => value,
            4 => value & 0xffff_ffff,
            size => {
                let mask = (1u64 << (8 * size)) - 1;
                (*full & !mask) | (value & mask)
            }
        }
    };
    Some(())
}

/// The register value a load of `bytes` produces for `dst`.
pub(crate) fn loaded_value(bytes: &[u8], dst: Register, extend: Extend) -> u64 {
    let mut raw = [0u8; 8];
    raw[..bytes.len()].copy_from_slice(bytes);
    let value = u64::from_le_bytes(raw);
    let bits = 8 * bytes.len() as u32;
    match extend {
        Extend::Sign if bits < 64 => {
            let shift = 64 - bits;
            let wide = ((value << shift) as i64 >> shift) as u64;
            match dst.size() {
                8 => wide,
                size => wide & ((1u64 << (8 * size)) - 1),
            }
        }
        _ => value,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use iced_x86::{Decoder, DecoderOptions};

    fn insn(bytes: &[u8]) -> Instruction {
        Decoder::with_ip(64, bytes, 0x1000, DecoderOptions::NONE).decode()
    }

    fn zeroed() -> user_regs_struct {
        // SAFETY: user_regs_struct is plain integers; all-zero is valid.
        unsafe { std::mem::zeroed() }
    }

    #[test]
    fn byte_store_from_dl_is_planned_as_a_register_store() {
        assert_eq!(
            plan(&insn(&[0x88, 0x17])), // mov [rdi], dl
            Some(Emulation::StoreReg {
                src: Register::DL,
                size: 1
            })
        );
    }

    #[test]
    fn movzx_byte_load_zero_extends_into_a_32_bit_register() {
        let (dst, extend) = (Register::EDX, Extend::Zero);
        assert_eq!(
            plan(&insn(&[0x0f, 0xb6, 0x17])), // movzx edx, byte [rdi]
            Some(Emulation::Load {
                dst,
                size: 1,
                extend
            })
        );
        let mut regs = zeroed();
        regs.rdx = u64::MAX;
        let v = loaded_value(&[0xab], dst, extend);
        write_register(&mut regs, dst, v).expect("a GPR");
        assert_eq!(regs.rdx, 0xab);
    }

    #[test]
    fn movsx_sign_extends_and_byte_writes_keep_the_other_bits() {
        assert_eq!(
            loaded_value(&[0x80], Register::RAX, Extend::Sign),
            0xffff_ffff_ffff_ff80
        );
        assert_eq!(
            loaded_value(&[0x80], Register::EAX, Extend::Sign),
            0xffff_ff80
        );
        let mut regs = zeroed();
        regs.rax = 0x1122_3344_5566_7788;
        write_register(&mut regs, Register::AH, 0xee).expect("a GPR");
        assert_eq!(regs.rax, 0x1122_3344_5566_ee88);
        write_register(&mut regs, Register::AL, 0x01).expect("a GPR");
        assert_eq!(regs.rax, 0x1122_3344_5566_ee01);
        assert_eq!(read_register(&regs, Register::AH), Some(0xee));
    }

    #[test]
    fn vector_and_read_modify_write_forms_are_not_emulated() {
        assert_eq!(plan(&insn(&[0x83, 0x07, 0x01])), None); // add dword [rdi], 1
        assert_eq!(plan(&insn(&[0xf3, 0x0f, 0x6f, 0x07])), None); // movdqu xmm0, [rdi]
    }

    #[test]
    fn store_of_a_sign_extended_immediate_keeps_eight_bytes() {
        // mov qword [rdi], -1
        let plan = plan(&insn(&[0x48, 0xc7, 0x07, 0xff, 0xff, 0xff, 0xff]));
        assert_eq!(
            plan,
            Some(Emulation::StoreImm {
                value: u64::MAX,
                size: 8
            })
        );
    }
}

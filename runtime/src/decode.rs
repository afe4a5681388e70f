//! Decoding a faulting instruction and computing its memory operands from
//! the tracee's registers (iced-x86).

use iced_x86::{
    Decoder, DecoderOptions, Encoder, FlowControl, Formatter, Instruction, InstructionInfoFactory,
    IntelFormatter, OpAccess, Register,
};
use libc::user_regs_struct;

use crate::event::AccessKind;

/// Longest x86 instruction, in bytes (Intel SDM vol. 2, 2.3.11).
pub(crate) const MAX_INSN_LEN: usize = 15;

/// A decoded instruction, cached per instruction address for one call.
#[derive(Debug, Clone)]
pub(crate) struct Decoded {
    pub(crate) insn: Instruction,
    /// The instruction's bytes.
    pub(crate) bytes: Vec<u8>,
    /// Intel-syntax disassembly.
    pub(crate) text: String,
    /// Memory operands, in iced's order.
    pub(crate) mem: Vec<MemOperand>,
    /// Set when the tracer cannot account for this instruction's accesses.
    pub(crate) unsupported: Option<String>,
    /// How the instruction can be executed with its pages open.
    pub(crate) exec: Exec,
    /// Set for plain moves the supervisor carries out itself.
    pub(crate) emulation: Option<crate::emulate::Emulation>,
}

/// One memory operand as decoded (before registers give it an address).
#[derive(Debug, Clone)]
pub(crate) struct MemOperand {
    used: iced_x86::UsedMemory,
    /// Bytes accessed.
    pub(crate) size: u64,
    /// Access kinds, in the order they happen (a read-modify-write reads first).
    pub(crate) kinds: &'static [AccessKind],
}

/// How a faulting instruction is executed once with its pages open.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Exec {
    /// Copied unchanged into the displaced-instruction stub (one stop).
    Displace,
    /// RIP-relative: re-encoded for the stub's address when it reaches.
    Relocate,
    /// Executed in place by single-stepping, between injected `mprotect`s
    /// (four stops). The reason says why the stub cannot run it.
    SingleStep(&'static str),
}

/// A memory operand with its address, computed from the registers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Operand {
    pub(crate) addr: u64,
    pub(crate) size: u64,
    pub(crate) kinds: &'static [AccessKind],
}

fn kinds_of(access: OpAccess) -> &'static [AccessKind] {
    use AccessKind::{MaybeWrite, Read, Write};
    match access {
        OpAccess::Read | OpAccess::CondRead => &[Read],
        OpAccess::Write => &[Write],
        OpAccess::CondWrite => &[MaybeWrite],
        OpAccess::ReadWrite => &[Read, Write],
        OpAccess::ReadCondWrite => &[Read, MaybeWrite],
        OpAccess::None | OpAccess::NoMemAccess => &[],
    }
}

/// Why the tracer cannot yet account for an instruction's accesses exactly,
/// or `None` if it can.
fn unsupported_reason(insn: &Instruction, mem: &[MemOperand]) -> Option<String> {
    if insn.is_invalid() {
        return Some("the bytes do not decode to a valid instruction".into());
    }
    if insn.is_string_instruction() && (insn.has_rep_prefix() || insn.has_repne_prefix()) {
        return Some("rep-prefixed string instructions are not supported yet".into());
    }
    if insn.has_op_mask() {
        return Some("AVX-512 masked memory accesses are not supported yet".into());
    }
    if matches!(
        insn.mnemonic(),
        iced_x86::Mnemonic::Vmaskmovps
            | iced_x86::Mnemonic::Vmaskmovpd
            | iced_x86::Mnemonic::Vpmaskmovd
            | iced_x86::Mnemonic::Vpmaskmovq
            | iced_x86::Mnemonic::Maskmovq
            | iced_x86::Mnemonic::Maskmovdqu
            | iced_x86::Mnemonic::Vmaskmovdqu
    ) {
        return Some("masked loads and stores are not supported yet".into());
    }
    for m in mem {
        if m.used.vsib_size() != 0 || m.used.index().is_vector_register() {
            return Some("gathers and scatters are not supported yet".into());
        }
        if m.size == 0 {
            return Some(format!(
                "the size of the memory operand ({:?}) is not known",
                m.used.memory_size()
            ));
        }
    }
    if mem.is_empty() {
        return Some("the instruction has no memory operand the decoder knows of".into());
    }
    None
}

/// Decodes the instruction at `ip` from `bytes` (at least the instruction's
/// length; more is fine).
pub(crate) fn decode(ip: u64, bytes: &[u8]) -> Decoded {
    let mut decoder = Decoder::with_ip(64, bytes, ip, DecoderOptions::NONE);
    let insn = decoder.decode();
    let len = insn.len().min(bytes.len());
    let mut text = String::new();
    IntelFormatter::new().format(&insn, &mut text);
    let mut factory = InstructionInfoFactory::new();
    let mem: Vec<MemOperand> = factory
        .info(&insn)
        .used_memory()
        .iter()
        .filter_map(|used| {
            let kinds = kinds_of(used.access());
            (!kinds.is_empty()).then(|| MemOperand {
                used: *used,
                size: used.memory_size().size() as u64,
                kinds,
            })
        })
        .collect();
    let unsupported = unsupported_reason(&insn, &mem);
    let exec = if insn.flow_control() != FlowControl::Next {
        Exec::SingleStep("it changes control flow")
    } else if insn.is_string_instruction() {
        Exec::SingleStep("string instructions are stepped")
    } else if insn.is_ip_rel_memory_operand() {
        Exec::Relocate
    } else {
        Exec::Displace
    };
    let emulation = if unsupported.is_none() && mem.len() == 1 {
        crate::emulate::plan(&insn)
    } else {
        None
    };
    Decoded {
        insn,
        bytes: bytes[..len].to_vec(),
        text,
        mem,
        unsupported,
        exec,
        emulation,
    }
}

/// The value of a register as an address computation sees it.
fn register_value(regs: &user_regs_struct, reg: Register) -> Option<u64> {
    let full = reg.full_register();
    let value = match full {
        Register::RAX => regs.rax,
        Register::RBX => regs.rbx,
        Register::RCX => regs.rcx,
        Register::RDX => regs.rdx,
        Register::RSI => regs.rsi,
        Register::RDI => regs.rdi,
        Register::RBP => regs.rbp,
        Register::RSP => regs.rsp,
        Register::R8 => regs.r8,
        Register::R9 => regs.r9,
        Register::R10 => regs.r10,
        Register::R11 => regs.r11,
        Register::R12 => regs.r12,
        Register::R13 => regs.r13,
        Register::R14 => regs.r14,
        Register::R15 => regs.r15,
        Register::RIP => regs.rip,
        // Segment registers contribute their base (iced-x86's contract).
        Register::FS => regs.fs_base,
        Register::GS => regs.gs_base,
        Register::ES | Register::CS | Register::SS | Register::DS => 0,
        _ => return None,
    };
    if reg.is_segment_register() {
        return Some(value);
    }
    Some(match reg.size() {
        8 => value,
        4 => value & 0xffff_ffff,
        2 => value & 0xffff,
        _ => return None,
    })
}

impl Decoded {
    /// Every memory operand's address and size, from the registers at the fault.
    pub(crate) fn operands(&self, regs: &user_regs_struct) -> Result<Vec<Operand>, String> {
        self.mem
            .iter()
            .map(|m| {
                let addr = m
                    .used
                    .virtual_address(0, |reg, _, _| register_value(regs, reg))
                    .ok_or_else(|| format!("cannot compute the address of {:?}", m.used))?;
                Ok(Operand {
                    addr,
                    size: m.size,
                    kinds: m.kinds,
                })
            })
            .collect()
    }

    /// The instruction's bytes for running at `new_ip` (re-encoded if it is
    /// RIP-relative), or `None` if it cannot run there.
    pub(crate) fn bytes_at(&self, new_ip: u64) -> Option<Vec<u8>> {
        match self.exec {
            Exec::Displace => Some(self.bytes.clone()),
            Exec::Relocate => {
                let mut encoder = Encoder::new(64);
                encoder.encode(&self.insn, new_ip).ok()?;
                Some(encoder.take_buffer())
            }
            Exec::SingleStep(_) => None,
        }
    }

    /// The address of the next instruction.
    pub(crate) fn next_ip(&self) -> u64 {
        self.insn.next_ip()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn regs() -> user_regs_struct {
        // SAFETY: user_regs_struct is plain integers; all-zero is valid.
        let mut r: user_regs_struct = unsafe { std::mem::zeroed() };
        r.rax = 0x1_0000;
        r.rbx = 3;
        r.rdi = 0x2_0000;
        r.fs_base = 0x7f00_0000_0000;
        r
    }

    #[test]
    fn store_with_scaled_index_has_one_write_operand_at_its_effective_address() {
        // mov [rax+rbx*4+8], ecx
        let d = decode(0x1000, &[0x89, 0x4c, 0x98, 0x08]);
        assert!(d.unsupported.is_none());
        assert_eq!(d.exec, Exec::Displace);
        let ops = d.operands(&regs()).expect("registers suffice");
        assert_eq!(
            ops,
            [Operand {
                addr: 0x1_0014,
                size: 4,
                kinds: &[AccessKind::Write]
            }]
        );
    }

    #[test]
    fn add_to_memory_reads_then_writes() {
        // add dword [rdi], 1
        let d = decode(0x1000, &[0x83, 0x07, 0x01]);
        let ops = d.operands(&regs()).expect("registers suffice");
        assert_eq!(ops[0].kinds, &[AccessKind::Read, AccessKind::Write]);
        assert_eq!((ops[0].addr, ops[0].size), (0x2_0000, 4));
    }

    #[test]
    fn fs_relative_load_adds_the_fs_base() {
        // mov rax, fs:[0x28]
        let d = decode(0x1000, &[0x64, 0x48, 0x8b, 0x04, 0x25, 0x28, 0, 0, 0]);
        let ops = d.operands(&regs()).expect("registers suffice");
        assert_eq!(ops[0].addr, 0x7f00_0000_0028);
    }

    #[test]
    fn rip_relative_load_is_relocated_to_the_same_target() {
        // mov eax, [rip+0x10] at 0x1000 -> target 0x1016
        let d = decode(0x1000, &[0x8b, 0x05, 0x10, 0, 0, 0]);
        assert_eq!(d.exec, Exec::Relocate);
        assert_eq!(d.operands(&regs()).expect("ok")[0].addr, 0x1016);
        let moved = d.bytes_at(0x2000).expect("in range");
        let again = decode(0x2000, &moved);
        assert_eq!(again.operands(&regs()).expect("ok")[0].addr, 0x1016);
    }

    #[test]
    fn rep_movsb_is_reported_unsupported() {
        let d = decode(0x1000, &[0xf3, 0xa4]);
        assert!(d.unsupported.is_some());
    }

    #[test]
    fn indirect_call_through_memory_is_single_stepped() {
        // call qword [rax]
        let d = decode(0x1000, &[0xff, 0x10]);
        assert!(matches!(d.exec, Exec::SingleStep(_)));
    }
}

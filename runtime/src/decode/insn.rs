//! Decoding a faulting instruction and computing its memory operands from
//! the tracee's registers (iced-x86).

use iced_x86::{
    Decoder, DecoderOptions, Encoder, FlowControl, Formatter, Instruction, InstructionInfoFactory,
    IntelFormatter, Mnemonic, OpAccess, OpKind, Register,
};
use libc::user_regs_struct;

use super::moves::{self, Emulation};
use super::xstate::{self, XState};
use crate::trace::event::AccessKind;

/// `EFLAGS.DF`: string instructions walk downwards.
const FLAG_DF: u64 = 1 << 10;
/// `EFLAGS.ZF`.
pub(crate) const FLAG_ZF: u64 = 1 << 6;

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
    pub(crate) emulation: Option<Emulation>,
    /// Set for forms whose accesses are not iced's operands as they stand.
    pub(crate) special: Option<Special>,
}

/// The string instructions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum StrOp {
    Movs,
    Stos,
    Lods,
    Cmps,
    Scas,
}

/// Forms whose accesses the tracer computes itself, from the registers (and
/// for some, from the outcome of the instruction).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Special {
    /// `movs`/`stos`/`lods`/`cmps`/`scas`, with or without a `rep` prefix:
    /// one range per operand for the whole instruction.
    String {
        op: StrOp,
        /// Element size in bytes.
        elem: u64,
        /// `rep`/`repe`/`repne`: rcx elements (or until the condition fails).
        rep: bool,
        /// 32-bit addressing (`67` prefix): esi/edi/ecx.
        addr32: bool,
        /// Segment base register of the source (`fs`/`gs` override), if any.
        src_segment: Register,
    },
    /// `cmpxchg`/`cmpxchg8b`/`cmpxchg16b`: a read, and a write only if it
    /// stored (ZF set afterwards).
    CmpXchg,
    /// `bt`/`bts`/`btr`/`btc` with a register bit offset: the operand-size
    /// unit at `EA + size * (offset DIV (8 * size))`.
    BitOffset { reg: Register },
    /// `xsave*`/`xrstor*`: the size depends on edx:eax and the CPU.
    XSave { compacted: bool },
    /// `fxsave`/`fxrstor`: 416 of the area's 512 bytes.
    FxArea,
    /// `clflush`/`clflushopt`/`clwb`/`cldemote`: touches the line, no data.
    CacheLine,
    /// `vmaskmov*`/`vpmaskmov*`/`maskmovdqu`: elements enabled by the sign bit
    /// of the mask register's matching element.
    VectorMask { mask: Register, elem: u64 },
    /// An AVX-512 access under an opmask with fault suppression: enabled
    /// elements only.
    OpMask {
        k: Register,
        elem: u64,
        broadcast: bool,
    },
    /// `vpcompress*`/`vcompressp*` store, `vpexpand*`/`vexpandp*` load:
    /// popcount(k) contiguous elements.
    Compress { k: Register, elem: u64 },
    /// A gather or scatter (VSIB): one access per enabled element.
    Gather {
        /// AVX2: the vector mask register; AVX-512: the opmask.
        mask: Register,
        /// Data element size.
        elem: u64,
        /// Elements the instruction handles.
        count: usize,
    },
}

/// What one fault's instruction will access, computed from its registers.
#[derive(Debug, Clone, Default)]
pub(crate) struct Plan {
    /// Accesses known before the instruction runs, in order.
    pub(crate) before: Vec<Operand>,
    /// Address ranges `(start, len)` it may touch: the pages to open.
    pub(crate) reach: Vec<(u64, u64)>,
    /// Accesses known only from the outcome.
    pub(crate) after: Option<After>,
    /// Touches of tracked memory that are not data accesses: `(address, text)`.
    pub(crate) notes: Vec<(u64, String)>,
}

/// How to find the accesses of an instruction from its outcome.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum After {
    /// Compare-exchange: a write of the operand if ZF is set afterwards.
    CmpXchg { addr: u64, size: u64 },
    /// `repe/repne cmps/scas`: as many elements as rcx went down by.
    ConditionalString {
        op: StrOp,
        elem: u64,
        addr32: bool,
        down: bool,
        /// rcx, rsi (with its segment base) and rdi before.
        rcx: u64,
        rsi: u64,
        rdi: u64,
    },
}

/// One memory operand as decoded (before registers give it an address).
#[derive(Debug, Clone)]
pub(crate) struct MemOperand {
    pub(crate) used: iced_x86::UsedMemory,
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
fn unsupported_reason(
    insn: &Instruction,
    mem: &[MemOperand],
    special: Option<Special>,
) -> Option<String> {
    if insn.is_invalid() {
        return Some("the bytes do not decode to a valid instruction".into());
    }
    if let Some(special) = special {
        return match special {
            Special::XSave { .. } if xstate::layout().is_none() => {
                Some("the CPU reports no XSAVE layout".into())
            }
            Special::String { .. } | Special::CacheLine | Special::XSave { .. } => None,
            _ if mem.len() != 1 => Some(format!(
                "expected one memory operand for this form, the decoder gives {}",
                mem.len()
            )),
            _ => None,
        };
    }
    if insn.mnemonic() == Mnemonic::Maskmovq {
        return Some("maskmovq (MMX mask) is not supported".into());
    }
    if insn.is_string_instruction() {
        return Some("ins/outs are not supported".into());
    }
    for m in mem {
        if m.used.vsib_size() != 0 || m.used.index().is_vector_register() {
            return Some("this gather or scatter form is not supported".into());
        }
        // A conditional read (`cmovcc r, [m]`) always loads; a conditional
        // store of an unknown form cannot be told apart from no store.
        if matches!(
            m.used.access(),
            OpAccess::CondWrite | OpAccess::ReadCondWrite
        ) {
            return Some(format!(
                "the store is conditional ({:?}) and the tracer does not know its condition",
                m.used.access()
            ));
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

/// The address of the `call` instruction that ends at `ret` (a return
/// address), from the 8 bytes before it, or `None` if no call of a usual
/// length (`call rel32`, `call [rip+x]`, `call reg`, ...) ends there.
pub(crate) fn call_ending_at(ret: u64, before: &[u8; 8]) -> Option<u64> {
    [5usize, 6, 2, 3, 7, 4].into_iter().find_map(|len| {
        let ip = ret.checked_sub(len as u64)?;
        let mut decoder = Decoder::with_ip(64, &before[8 - len..], ip, DecoderOptions::NONE);
        let insn = decoder.decode();
        let is_call = matches!(
            insn.flow_control(),
            FlowControl::Call | FlowControl::IndirectCall
        );
        (!insn.is_invalid() && insn.len() == len && is_call).then_some(ip)
    })
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
    let special = special_form(&insn, &mem);
    let unsupported = unsupported_reason(&insn, &mem, special);
    let exec = if insn.flow_control() != FlowControl::Next {
        Exec::SingleStep("it changes control flow")
    } else if insn.is_ip_rel_memory_operand() {
        Exec::Relocate
    } else {
        Exec::Displace
    };
    let emulation = if unsupported.is_none() && special.is_none() && mem.len() == 1 {
        moves::plan(&insn)
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
        special,
    }
}

/// Which [`Special`] form `insn` is, if any.
fn special_form(insn: &Instruction, mem: &[MemOperand]) -> Option<Special> {
    use Mnemonic as M;
    let m = insn.mnemonic();
    let elem_size = || insn.memory_size().element_size() as u64;
    if insn.is_string_instruction() {
        let op = match m {
            M::Movsb | M::Movsw | M::Movsd | M::Movsq => StrOp::Movs,
            M::Stosb | M::Stosw | M::Stosd | M::Stosq => StrOp::Stos,
            M::Lodsb | M::Lodsw | M::Lodsd | M::Lodsq => StrOp::Lods,
            M::Cmpsb | M::Cmpsw | M::Cmpsd | M::Cmpsq => StrOp::Cmps,
            M::Scasb | M::Scasw | M::Scasd | M::Scasq => StrOp::Scas,
            _ => return None,
        };
        let src_segment = match insn.segment_prefix() {
            r @ (Register::FS | Register::GS) => r,
            _ => Register::None,
        };
        return Some(Special::String {
            op,
            elem: insn.memory_size().size() as u64,
            rep: insn.has_rep_prefix() || insn.has_repne_prefix(),
            addr32: insn.memory_base().size() == 4 || insn.memory_index().size() == 4,
            src_segment,
        });
    }
    match m {
        M::Cmpxchg | M::Cmpxchg8b | M::Cmpxchg16b if !mem.is_empty() => {
            return Some(Special::CmpXchg);
        }
        M::Bt | M::Bts | M::Btr | M::Btc
            if insn.op0_kind() == OpKind::Memory && insn.op1_kind() == OpKind::Register =>
        {
            return Some(Special::BitOffset {
                reg: insn.op1_register(),
            });
        }
        M::Xsave | M::Xsave64 | M::Xsaveopt | M::Xsaveopt64 | M::Xrstor | M::Xrstor64 => {
            return Some(Special::XSave { compacted: false });
        }
        M::Xsavec | M::Xsavec64 | M::Xsaves | M::Xsaves64 | M::Xrstors | M::Xrstors64 => {
            return Some(Special::XSave { compacted: true });
        }
        M::Clflush | M::Clflushopt | M::Clwb | M::Cldemote => return Some(Special::CacheLine),
        M::Fxsave | M::Fxsave64 | M::Fxrstor | M::Fxrstor64 if !mem.is_empty() => {
            return Some(Special::FxArea);
        }
        M::Vmaskmovps | M::Vpmaskmovd => {
            return Some(Special::VectorMask {
                mask: insn.op1_register(),
                elem: 4,
            });
        }
        M::Vmaskmovpd | M::Vpmaskmovq => {
            return Some(Special::VectorMask {
                mask: insn.op1_register(),
                elem: 8,
            });
        }
        // iced gives the implicit `[rdi]` as operand 0: the mask is operand 2.
        M::Maskmovdqu | M::Vmaskmovdqu => {
            return Some(Special::VectorMask {
                mask: insn.op2_register(),
                elem: 1,
            });
        }
        _ => {}
    }
    let used = mem.first()?.used;
    if used.vsib_size() != 0 || used.index().is_vector_register() {
        let is_scatter = insn.op0_kind() == OpKind::Memory;
        let data = if is_scatter {
            insn.op1_register()
        } else {
            insn.op0_register()
        };
        let mask = if insn.has_op_mask() {
            insn.op_mask()
        } else {
            insn.op2_register()
        };
        let elem = elem_size();
        let vsib = u64::from(used.vsib_size());
        if elem == 0 || vsib == 0 {
            return None;
        }
        let count = (data.size() as u64 / elem).min(used.index().size() as u64 / vsib);
        return Some(Special::Gather {
            mask,
            elem,
            count: count as usize,
        });
    }
    // Under an opmask the CPU suppresses the accesses (and faults) of masked
    // elements of a memory source or destination (Intel SDM vol. 2, 2.8),
    // except for the instructions of exception class E4NF, whose memory
    // source is read whole (permutes, align, conflict, 128-bit-lane shuffles).
    // iced marks only masked stores conditional; loads come as plain reads.
    const READ_WHOLE: [&str; 7] = [
        "Valign",
        "Vperm",
        "Vpconflict",
        "Vshuff",
        "Vshufi",
        "Vdbpsadbw",
        "Vpmultishiftqb",
    ];
    let element_masked = match used.access() {
        OpAccess::CondWrite => true,
        OpAccess::Read | OpAccess::CondRead => {
            let name = format!("{m:?}");
            !READ_WHOLE.iter().any(|p| name.starts_with(p))
        }
        _ => false,
    };
    if insn.has_op_mask() && element_masked {
        let k = insn.op_mask();
        let elem = elem_size();
        if matches!(
            m,
            M::Vpcompressb
                | M::Vpcompressw
                | M::Vpcompressd
                | M::Vpcompressq
                | M::Vcompressps
                | M::Vcompresspd
                | M::Vpexpandb
                | M::Vpexpandw
                | M::Vpexpandd
                | M::Vpexpandq
                | M::Vexpandps
                | M::Vexpandpd
        ) {
            return Some(Special::Compress { k, elem });
        }
        return Some(Special::OpMask {
            k,
            elem,
            broadcast: insn.is_broadcast(),
        });
    }
    None
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

const READ: &[AccessKind] = &[AccessKind::Read];
const MAYBE_WRITE: &[AccessKind] = &[AccessKind::MaybeWrite];
/// Bytes of the 512-byte FXSAVE area the instructions touch in 64-bit mode.
const FX_AREA_USED: u64 = 416;
const WRITE: &[AccessKind] = &[AccessKind::Write];

/// The range of `count` elements of `elem` bytes walked from `start`,
/// upwards or downwards, as `(lowest address, len)`; `None` for no element.
fn string_range(start: u64, count: u64, elem: u64, down: bool) -> Option<(u64, u64)> {
    if count == 0 {
        return None;
    }
    let len = count.saturating_mul(elem);
    Some(if down {
        let lo = start.saturating_add(elem).saturating_sub(len);
        (lo, start + elem - lo)
    } else {
        (start, len.min(u64::MAX - start))
    })
}

/// The accesses of `count` elements of a string instruction, in the order
/// the tracer records them (source, then destination).
fn string_operands(
    op: StrOp,
    rsi: u64,
    rdi: u64,
    count: u64,
    elem: u64,
    down: bool,
) -> Vec<Operand> {
    let at = |start, kinds| {
        string_range(start, count, elem, down).map(|(addr, size)| Operand { addr, size, kinds })
    };
    let list = match op {
        StrOp::Movs => [at(rsi, READ), at(rdi, WRITE)],
        StrOp::Cmps => [at(rsi, READ), at(rdi, READ)],
        StrOp::Stos => [at(rdi, WRITE), None],
        StrOp::Lods => [at(rsi, READ), None],
        StrOp::Scas => [at(rdi, READ), None],
    };
    list.into_iter().flatten().collect()
}

/// Consecutive enabled elements merged into one operand each.
fn runs(
    addr: u64,
    elem: u64,
    count: usize,
    kinds: &'static [AccessKind],
    enabled: impl Fn(usize) -> bool,
) -> Vec<Operand> {
    let mut out: Vec<Operand> = Vec::new();
    let mut open = false;
    for i in 0..count {
        if !enabled(i) {
            open = false;
            continue;
        }
        match out.last_mut() {
            Some(last) if open => last.size += elem,
            _ => out.push(Operand {
                addr: addr + i as u64 * elem,
                size: elem,
                kinds,
            }),
        }
        open = true;
    }
    out
}

/// The read or write kind of a masked operand, from iced's access.
fn masked_kinds(m: &MemOperand) -> &'static [AccessKind] {
    if m.kinds.contains(&AccessKind::Read) {
        READ
    } else {
        WRITE
    }
}

/// The value of element `index` (of `size` bytes, zero-extended) of a
/// vector register.
fn vector_element(xs: &XState, reg: Register, index: usize, size: usize) -> Option<u64> {
    let v = xs.vector(reg)?;
    let bytes = v.get(index * size..(index + 1) * size)?;
    let mut b = [0u8; 8];
    b.get_mut(..size)?.copy_from_slice(bytes);
    Some(u64::from_le_bytes(b))
}

/// True if the sign bit of element `index` (of `size` bytes) of a vector
/// register is set, or bit `index` of an opmask register.
fn mask_enabled(xs: &XState, mask: Register, index: usize, size: u64) -> bool {
    if (Register::K0..=Register::K7).contains(&mask) {
        return xs
            .opmask(mask)
            .is_some_and(|k| index < 64 && k & (1 << index) != 0);
    }
    xs.vector(mask)
        .and_then(|v| v.get((index + 1) * size as usize - 1).copied())
        .is_some_and(|b| b & 0x80 != 0)
}

fn sign_extend(value: u64, bits: u32) -> i64 {
    let shift = 64 - bits;
    ((value << shift) as i64) >> shift
}

impl Decoded {
    /// True if the plan needs the vector or opmask registers.
    pub(crate) fn needs_xstate(&self) -> bool {
        matches!(
            self.special,
            Some(
                Special::VectorMask { .. }
                    | Special::OpMask { .. }
                    | Special::Compress { .. }
                    | Special::Gather { .. }
            )
        )
    }

    /// The address of the instruction's explicit memory operand, whether or
    /// not iced counts it as an access (`clflush`, `xsave`).
    fn explicit_address(&self, regs: &user_regs_struct) -> Result<u64, String> {
        let i = &self.insn;
        let used = iced_x86::UsedMemory::new(
            i.memory_segment(),
            i.memory_base(),
            i.memory_index(),
            i.memory_index_scale(),
            i.memory_displacement64(),
            i.memory_size(),
            OpAccess::Read,
        );
        used.virtual_address(0, |reg, _, _| register_value(regs, reg))
            .ok_or_else(|| format!("cannot compute the address of {used:?}"))
    }

    fn address(m: &MemOperand, regs: &user_regs_struct) -> Result<u64, String> {
        m.used
            .virtual_address(0, |reg, _, _| register_value(regs, reg))
            .ok_or_else(|| format!("cannot compute the address of {:?}", m.used))
    }

    /// What the instruction will access, from the registers at the fault
    /// (and the extended state, for the forms that need it).
    pub(crate) fn plan(
        &self,
        regs: &user_regs_struct,
        xs: Option<&XState>,
    ) -> Result<Plan, String> {
        let mut plan = Plan::default();
        let Some(special) = self.special else {
            for m in &self.mem {
                plan.before.push(Operand {
                    addr: Self::address(m, regs)?,
                    size: m.size,
                    kinds: m.kinds,
                });
            }
            plan.reach = plan.before.iter().map(|o| (o.addr, o.size)).collect();
            return Ok(plan);
        };
        let xs_needed =
            || xs.ok_or_else(|| "the extended register state is not available".to_owned());
        let first = || {
            self.mem
                .first()
                .ok_or_else(|| "no memory operand".to_owned())
        };
        match special {
            Special::String {
                op,
                elem,
                rep,
                addr32,
                src_segment,
            } => {
                let mask = if addr32 { 0xffff_ffff } else { u64::MAX };
                let base = match src_segment {
                    Register::FS => regs.fs_base,
                    Register::GS => regs.gs_base,
                    _ => 0,
                };
                let (rcx, rsi, rdi) = (
                    regs.rcx & mask,
                    (regs.rsi & mask).wrapping_add(base),
                    regs.rdi & mask,
                );
                let down = regs.eflags & FLAG_DF != 0;
                let count = if rep { rcx } else { 1 };
                let ops = string_operands(op, rsi, rdi, count, elem, down);
                plan.reach = ops.iter().map(|o| (o.addr, o.size)).collect();
                if rep && matches!(op, StrOp::Cmps | StrOp::Scas) {
                    plan.after = Some(After::ConditionalString {
                        op,
                        elem,
                        addr32,
                        down,
                        rcx,
                        rsi,
                        rdi,
                    });
                } else {
                    plan.before = ops;
                }
            }
            Special::CmpXchg => {
                let m = first()?;
                let addr = Self::address(m, regs)?;
                plan.before.push(Operand {
                    addr,
                    size: m.size,
                    kinds: READ,
                });
                plan.reach.push((addr, m.size));
                plan.after = Some(After::CmpXchg { addr, size: m.size });
            }
            Special::BitOffset { reg } => {
                let m = first()?;
                let ea = Self::address(m, regs)?;
                let value =
                    register_value(regs, reg).ok_or_else(|| format!("cannot read {reg:?}"))?;
                let bit = sign_extend(value, reg.size() as u32 * 8);
                let unit_bits = (m.size * 8) as i64;
                let addr = ea.wrapping_add((bit.div_euclid(unit_bits) * m.size as i64) as u64);
                plan.before.push(Operand {
                    addr,
                    size: m.size,
                    kinds: m.kinds,
                });
                plan.reach.push((addr, m.size));
            }
            Special::XSave { compacted } => {
                let layout =
                    xstate::layout().ok_or_else(|| "the CPU reports no XSAVE layout".to_owned())?;
                let addr = self.explicit_address(regs)?;
                let rfbm = (regs.rdx << 32) | (regs.rax & 0xffff_ffff);
                // `xsave` writes every requested component; the others may skip
                // components in their initial state or unmodified since the last
                // `xrstor` (the init and modified optimizations, Intel SDM vol. 1,
                // 13.6), which the tracer cannot see: MaybeWrite.
                let (kinds, restore) = match self.insn.mnemonic() {
                    Mnemonic::Xrstor
                    | Mnemonic::Xrstor64
                    | Mnemonic::Xrstors
                    | Mnemonic::Xrstors64 => (READ, true),
                    Mnemonic::Xsave | Mnemonic::Xsave64 => (WRITE, false),
                    _ => (MAYBE_WRITE, false),
                };
                for (off, size) in layout.ranges(rfbm, compacted, restore) {
                    plan.before.push(Operand {
                        addr: addr + off,
                        size,
                        kinds,
                    });
                    plan.reach.push((addr + off, size));
                }
            }
            Special::FxArea => {
                // FXSAVE64/FXRSTOR64 touch bytes 0..416 of the 512-byte area:
                // 416..464 are reserved and 464..512 free for software (Intel
                // SDM vol. 1, table 10-2).
                let m = first()?;
                let addr = Self::address(m, regs)?;
                plan.before.push(Operand {
                    addr,
                    size: FX_AREA_USED,
                    kinds: m.kinds,
                });
                plan.reach.push((addr, FX_AREA_USED));
            }
            Special::CacheLine => {
                let addr = self.explicit_address(regs)?;
                plan.reach.push((addr, 1));
                // The note names the 64-byte line the instruction acts on.
                plan.notes.push((
                    addr & !63,
                    format!(
                        "{} of the 64-byte cache line at this address: no data read or written",
                        self.text
                            .split_whitespace()
                            .next()
                            .unwrap_or("cache-line instruction")
                    ),
                ));
            }
            Special::VectorMask { mask, elem } => {
                let (m, xs) = (first()?, xs_needed()?);
                let addr = Self::address(m, regs)?;
                plan.before = runs(addr, elem, (m.size / elem) as usize, masked_kinds(m), |i| {
                    mask_enabled(xs, mask, i, elem)
                });
                plan.reach = plan.before.iter().map(|o| (o.addr, o.size)).collect();
            }
            Special::OpMask { k, elem, broadcast } => {
                let (m, xs) = (first()?, xs_needed()?);
                let addr = Self::address(m, regs)?;
                let k = xs.opmask(k).ok_or("cannot read the opmask register")?;
                if elem == 0 {
                    return Err("the element size is not known".into());
                }
                plan.before = if broadcast {
                    let lanes = self.vector_bytes() / elem;
                    let lane_mask = if lanes >= 64 {
                        u64::MAX
                    } else {
                        (1 << lanes) - 1
                    };
                    if k & lane_mask != 0 {
                        vec![Operand {
                            addr,
                            size: elem,
                            kinds: masked_kinds(m),
                        }]
                    } else {
                        Vec::new()
                    }
                } else {
                    runs(addr, elem, (m.size / elem) as usize, masked_kinds(m), |i| {
                        i < 64 && k & (1 << i) != 0
                    })
                };
                plan.reach = plan.before.iter().map(|o| (o.addr, o.size)).collect();
            }
            Special::Compress { k, elem } => {
                let (m, xs) = (first()?, xs_needed()?);
                let addr = Self::address(m, regs)?;
                let k = xs.opmask(k).ok_or("cannot read the opmask register")?;
                if elem == 0 {
                    return Err("the element size is not known".into());
                }
                let lanes = self.vector_bytes() / elem;
                let lane_mask = if lanes >= 64 {
                    u64::MAX
                } else {
                    (1 << lanes) - 1
                };
                let size = u64::from((k & lane_mask).count_ones()) * elem;
                if size > 0 {
                    plan.before.push(Operand {
                        addr,
                        size,
                        kinds: masked_kinds(m),
                    });
                }
                plan.reach = plan.before.iter().map(|o| (o.addr, o.size)).collect();
            }
            Special::Gather { mask, elem, count } => {
                let (m, xs) = (first()?, xs_needed()?);
                let kinds = masked_kinds(m);
                for i in (0..count).filter(|&i| mask_enabled(xs, mask, i, elem)) {
                    let addr = m
                        .used
                        .virtual_address(i, |reg, index, size| {
                            if reg.is_vector_register() {
                                vector_element(xs, reg, index, size)
                            } else {
                                register_value(regs, reg)
                            }
                        })
                        .ok_or_else(|| format!("cannot compute element {i}'s address"))?;
                    plan.before.push(Operand {
                        addr,
                        size: elem,
                        kinds,
                    });
                }
                plan.reach = plan.before.iter().map(|o| (o.addr, o.size)).collect();
            }
        }
        Ok(plan)
    }

    /// The width in bytes of the widest vector register operand.
    fn vector_bytes(&self) -> u64 {
        (0..self.insn.op_count())
            .filter(|&i| self.insn.op_kind(i) == OpKind::Register)
            .map(|i| self.insn.op_register(i))
            .filter(|r| r.is_vector_register())
            .map(|r| r.size() as u64)
            .max()
            .unwrap_or(16)
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

impl After {
    /// The accesses the instruction made, from the registers after it ran.
    pub(crate) fn operands(&self, after: &user_regs_struct) -> Vec<Operand> {
        match *self {
            After::CmpXchg { addr, size } => {
                if after.eflags & FLAG_ZF != 0 {
                    vec![Operand {
                        addr,
                        size,
                        kinds: WRITE,
                    }]
                } else {
                    Vec::new()
                }
            }
            After::ConditionalString {
                op,
                elem,
                addr32,
                down,
                rcx,
                rsi,
                rdi,
            } => {
                let mask = if addr32 { 0xffff_ffff } else { u64::MAX };
                let consumed = rcx.wrapping_sub(after.rcx & mask) & mask;
                string_operands(op, rsi, rdi, consumed, elem, down)
            }
        }
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
        let ops = d
            .plan(&regs(), None)
            .map(|p| p.before)
            .expect("registers suffice");
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
        let ops = d
            .plan(&regs(), None)
            .map(|p| p.before)
            .expect("registers suffice");
        assert_eq!(ops[0].kinds, &[AccessKind::Read, AccessKind::Write]);
        assert_eq!((ops[0].addr, ops[0].size), (0x2_0000, 4));
    }

    #[test]
    fn fs_relative_load_adds_the_fs_base() {
        // mov rax, fs:[0x28]
        let d = decode(0x1000, &[0x64, 0x48, 0x8b, 0x04, 0x25, 0x28, 0, 0, 0]);
        let ops = d
            .plan(&regs(), None)
            .map(|p| p.before)
            .expect("registers suffice");
        assert_eq!(ops[0].addr, 0x7f00_0000_0028);
    }

    #[test]
    fn rip_relative_load_is_relocated_to_the_same_target() {
        // mov eax, [rip+0x10] at 0x1000 -> target 0x1016
        let d = decode(0x1000, &[0x8b, 0x05, 0x10, 0, 0, 0]);
        assert_eq!(d.exec, Exec::Relocate);
        assert_eq!(
            d.plan(&regs(), None).map(|p| p.before).expect("ok")[0].addr,
            0x1016
        );
        let moved = d.bytes_at(0x2000).expect("in range");
        let again = decode(0x2000, &moved);
        assert_eq!(
            again.plan(&regs(), None).map(|p| p.before).expect("ok")[0].addr,
            0x1016
        );
    }

    #[test]
    fn rep_movsb_is_one_read_range_and_one_write_range_of_rcx_bytes() {
        let d = decode(0x1000, &[0xf3, 0xa4]);
        assert!(d.unsupported.is_none(), "{:?}", d.unsupported);
        let mut r = regs();
        (r.rsi, r.rdi, r.rcx) = (0x5000, 0x9000, 4096);
        let p = d.plan(&r, None).expect("registers suffice");
        assert_eq!(
            p.before,
            [
                Operand {
                    addr: 0x5000,
                    size: 4096,
                    kinds: READ
                },
                Operand {
                    addr: 0x9000,
                    size: 4096,
                    kinds: WRITE
                },
            ]
        );
        assert!(p.after.is_none());
    }

    #[test]
    fn std_rep_stosd_covers_the_range_below_rdi() {
        let d = decode(0x1000, &[0xf3, 0xab]);
        let mut r = regs();
        (r.rdi, r.rcx, r.eflags) = (0x9000, 4, FLAG_DF);
        let p = d.plan(&r, None).expect("registers suffice");
        assert_eq!(
            p.before,
            [Operand {
                addr: 0x9000 - 12,
                size: 16,
                kinds: WRITE
            }]
        );
    }

    #[test]
    fn repne_scasb_is_known_after_it_ran_from_rcx() {
        let d = decode(0x1000, &[0xf2, 0xae]);
        let mut r = regs();
        (r.rdi, r.rcx) = (0x9000, u64::MAX);
        let p = d.plan(&r, None).expect("registers suffice");
        assert!(p.before.is_empty());
        let after = p.after.expect("conditional");
        let mut done = r;
        done.rcx = u64::MAX - 6;
        assert_eq!(
            after.operands(&done),
            [Operand {
                addr: 0x9000,
                size: 6,
                kinds: READ
            }]
        );
    }

    #[test]
    fn lock_cmpxchg_reads_and_writes_only_when_zf_is_set() {
        // lock cmpxchg [rdi], ecx
        let d = decode(0x1000, &[0xf0, 0x0f, 0xb1, 0x0f]);
        let p = d.plan(&regs(), None).expect("registers suffice");
        assert_eq!(
            p.before,
            [Operand {
                addr: 0x2_0000,
                size: 4,
                kinds: READ
            }]
        );
        let after = p.after.expect("outcome");
        let mut done = regs();
        assert!(after.operands(&done).is_empty());
        done.eflags = FLAG_ZF;
        assert_eq!(
            after.operands(&done),
            [Operand {
                addr: 0x2_0000,
                size: 4,
                kinds: WRITE
            }]
        );
    }

    #[test]
    fn bt_with_a_negative_register_offset_reads_the_dword_below() {
        // bt dword [rdi], eax  with eax = -1
        let d = decode(0x1000, &[0x0f, 0xa3, 0x07]);
        let mut r = regs();
        r.rax = 0xffff_ffff;
        let p = d.plan(&r, None).expect("registers suffice");
        assert_eq!(
            p.before,
            [Operand {
                addr: 0x2_0000 - 4,
                size: 4,
                kinds: READ
            }]
        );
        r.rax = 100;
        let p = d.plan(&r, None).expect("registers suffice");
        assert_eq!(p.before[0].addr, 0x2_0000 + 12);
    }

    #[test]
    fn clflush_is_a_note_and_no_access() {
        // clflush [rdi]
        let d = decode(0x1000, &[0x0f, 0xae, 0x3f]);
        assert!(d.unsupported.is_none(), "{:?}", d.unsupported);
        let p = d.plan(&regs(), None).expect("registers suffice");
        assert!(p.before.is_empty());
        assert_eq!(p.notes.len(), 1);
        assert_eq!(p.reach, [(0x2_0000, 1)]);
    }

    #[test]
    fn indirect_call_through_memory_is_single_stepped() {
        // call qword [rax]
        let d = decode(0x1000, &[0xff, 0x10]);
        assert!(matches!(d.exec, Exec::SingleStep(_)));
    }
}

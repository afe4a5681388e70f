//! The translator of the code cache: a region of native code, from the
//! instruction that faulted through the direct branches around it, turned
//! into code that runs with the call's pages open and appends each memory
//! access it makes to the thread's log (see `mod.rs` for the whole
//! mechanism).
//!
//! Each original instruction becomes, in order:
//!
//! ```text
//! (memory instruction)  spill scratch registers      ; cells of the slot's data page
//!                       lea s1, [operand]  ; mov [EA], s1
//!                       (reads) append entry: address, site id, rbp, bytes before
//!                       restore scratch registers
//!                       the instruction itself (RIP-relative: based on a scratch register)
//!                       (writes) spill, mov s1, [EA], append entry with bytes after, restore
//! (jcc / jmp rel)       the same branch to the translated target, or to an
//!                       exit; a backward branch goes through the budget check
//! (anything else the translator does not take: calls, returns, indirect
//!  branches, system calls, string and special forms, fs/gs operands)
//!                       an exit: the close gate, then a jump to that instruction
//! ```
//!
//! Only `mov`, `movzx`, `lea`, `jrcxz` and `jmp` are added: none of them
//! changes the flags, none touches the stack (the red zone stays the
//! program's), and FP/SIMD registers are never used.

use std::collections::{HashMap, HashSet, VecDeque};
use std::rc::Rc;

use iced_x86::{
    BlockEncoder, BlockEncoderOptions, Code, FlowControl, Instruction, InstructionBlock,
    InstructionInfoFactory, MemoryOperand, Mnemonic, OpKind, Register,
};

use crate::decode::insn::{Decoded, MemOperand};
use crate::trace::event::{AccessKind, MAX_RECORDED_BYTES};

/// At most this many original instructions are translated in one region.
pub(in crate::supervisor) const MAX_INSNS: usize = 2048;
/// Bytes of a log entry before the value: address, site id (and 4 bytes
/// of padding), rbp.
pub(in crate::supervisor) const ENTRY_HEADER: u64 = 24;

/// Offsets of the cells of a cache slot's data page.
pub(in crate::supervisor) mod cell {
    /// Six registers the gates save (rax rcx rdx rsi rdi r11).
    pub(in crate::supervisor) const SAVE: u64 = 0x00;
    /// Spill cells of the scratch registers of an access sequence.
    pub(in crate::supervisor) const SPILL: [u64; 4] = [0x40, 0x48, 0x50, 0x58];
    /// Spill cell of the budget check (rcx).
    pub(in crate::supervisor) const SPILL_BUDGET: u64 = 0x60;
    /// Spill cell of an exit (rax).
    pub(in crate::supervisor) const SPILL_EXIT: u64 = 0x68;
    /// Spill cell of the close gate's trap check (rcx).
    pub(in crate::supervisor) const SPILL_GATE: u64 = 0x70;
    /// The effective address of the current memory operand.
    pub(in crate::supervisor) const EA: u64 = 0x78;
    /// Where the next log entry goes.
    pub(in crate::supervisor) const LOG_PTR: u64 = 0x80;
    /// Backward branches left before the region exits.
    pub(in crate::supervisor) const BUDGET: u64 = 0x88;
    /// Non-zero: the close gate stops in `int3` before jumping out.
    pub(in crate::supervisor) const TRAP: u64 = 0x90;
    /// Where the close gate jumps to (native code).
    pub(in crate::supervisor) const EXIT_TARGET: u64 = 0x98;
    /// Where the open gate jumps to (translated code).
    pub(in crate::supervisor) const ENTRY_TARGET: u64 = 0xa0;
    /// Non-zero: returns that leave the region learn their target (set
    /// for a region entered several times in the call, whose returns go
    /// back to a caller's loop; zero for one entered once, whose return
    /// goes back to the test's own code).
    pub(in crate::supervisor) const RET_LEARN: u64 = 0xa8;
    /// The target of an indirect call.
    pub(in crate::supervisor) const TARGET: u64 = 0xc8;
    /// Spill cells of an indirect branch's comparisons (rcx, rdx).
    pub(in crate::supervisor) const SPILL_C: u64 = 0xb0;
    pub(in crate::supervisor) const SPILL_D: u64 = 0xb8;
    /// Non-zero: the address of the indirect branch (or return) whose
    /// target was not in the region, which the exit trap reports so that
    /// the region is translated again with that target.
    pub(in crate::supervisor) const LEARN_SITE: u64 = 0xc0;
}

/// At most this many targets are learned per indirect branch.
pub(in crate::supervisor) const MAX_LEARNED: usize = 4;

/// What a log entry's site id stands for: one memory operand of one
/// instruction, and the kind of access.
#[derive(Debug, Clone)]
pub(in crate::supervisor) struct Site {
    pub(in crate::supervisor) decoded: Rc<Decoded>,
    pub(in crate::supervisor) size: u64,
    pub(in crate::supervisor) kind: AccessKind,
}

impl Site {
    /// Bytes of value the entry holds (the operand's, at most
    /// `MAX_RECORDED_BYTES`, rounded up to 8).
    pub(in crate::supervisor) fn value_len(&self) -> u64 {
        value_len(self.size)
    }
}

fn value_len(size: u64) -> u64 {
    size.min(MAX_RECORDED_BYTES as u64).next_multiple_of(8)
}

/// Which part of an original instruction's translation a range of cache
/// code is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(in crate::supervisor) enum Phase {
    /// Before the instruction ran: logging its reads.
    Before,
    /// The instruction itself.
    Insn,
    /// After it ran: logging its writes.
    After,
}

/// A range of cache code that belongs to one original instruction: how to
/// put a thread stopped in it back into the original program.
#[derive(Debug, Clone)]
pub(in crate::supervisor) struct Point {
    pub(in crate::supervisor) start: u64,
    pub(in crate::supervisor) end: u64,
    pub(in crate::supervisor) ip: u64,
    pub(in crate::supervisor) next_ip: u64,
    pub(in crate::supervisor) phase: Phase,
    /// Scratch registers held in the spill cells (`cell::SPILL[i]`) here.
    pub(in crate::supervisor) spilled: Vec<(Register, u64)>,
    /// Where to start again after the log was emptied (a full log faults
    /// on the guard page in the middle of an entry).
    pub(in crate::supervisor) restart: u64,
}

/// One translated region.
#[derive(Debug)]
pub(in crate::supervisor) struct Translation {
    /// Its translated address.
    pub(in crate::supervisor) entry_at: u64,
    /// Where its code goes, and the code.
    pub(in crate::supervisor) at: u64,
    pub(in crate::supervisor) code: Vec<u8>,
    /// The original instructions' bytes, to see whether the code changed:
    /// contiguous spans.
    pub(in crate::supervisor) originals: Vec<(u64, Vec<u8>)>,
    /// Sorted by `start`.
    pub(in crate::supervisor) points: Vec<Point>,
    /// Its sites, with ids from the `first_site` given to `translate`.
    pub(in crate::supervisor) sites: Vec<Site>,
    /// The translated address of each original instruction it holds.
    pub(in crate::supervisor) labels: HashMap<u64, u64>,
}

impl Translation {
    /// The point holding cache address `ip`.
    pub(in crate::supervisor) fn point_at(&self, ip: u64) -> Option<&Point> {
        let i = self.points.partition_point(|p| p.start <= ip);
        self.points[..i].last().filter(|p| ip < p.end)
    }
}

/// Where a translation goes and what it refers to.
pub(in crate::supervisor) struct Place {
    /// The address the code will have.
    pub(in crate::supervisor) at: u64,
    /// The slot's data page.
    pub(in crate::supervisor) data: u64,
    /// The close gate.
    pub(in crate::supervisor) close_gate: u64,
    /// The id of the region's first site.
    pub(in crate::supervisor) first_site: u32,
}

/// Fake instruction addresses for the code the translator adds (the block
/// encoder finds branch targets by address): kernel addresses, which no
/// user-space instruction has.
const FAKE_IP: u64 = 0xffff_8000_0000_0000;

/// Scratch register candidates (never rsp, never rbp: an entry records rbp).
const SCRATCH: [Register; 14] = [
    Register::RAX,
    Register::RCX,
    Register::RDX,
    Register::RBX,
    Register::RSI,
    Register::RDI,
    Register::R8,
    Register::R9,
    Register::R10,
    Register::R11,
    Register::R12,
    Register::R13,
    Register::R14,
    Register::R15,
];

/// The 32-bit form of a 64-bit general register.
fn dword(r: Register) -> Register {
    match r {
        Register::RAX => Register::EAX,
        Register::RCX => Register::ECX,
        Register::RDX => Register::EDX,
        Register::RBX => Register::EBX,
        Register::RSI => Register::ESI,
        Register::RDI => Register::EDI,
        Register::R8 => Register::R8D,
        Register::R9 => Register::R9D,
        Register::R10 => Register::R10D,
        Register::R11 => Register::R11D,
        Register::R12 => Register::R12D,
        Register::R13 => Register::R13D,
        Register::R14 => Register::R14D,
        _ => Register::R15D,
    }
}

/// What the translator does with one original instruction.
enum Take {
    /// Copied as it is.
    Copy,
    /// A memory instruction, logged.
    Memory,
    /// `lea r64, [rip+x]`: becomes `mov r64, x`.
    RipLea,
    /// A direct call: the push of the return address is logged, then
    /// the callee is translated.
    Call(u64),
    /// A near return: the read of the return address is logged, then the
    /// return goes back into the region when it returns to a translated
    /// call's next instruction, or out of the cache.
    Ret,
    /// `call reg`: the push logged, then the target compared with the
    /// targets learned so far.
    IndirectCall(Register),
    /// `jmp reg`.
    IndirectJmp(Register),
    /// `jmp [mem]` (a PLT stub's `jmp [rip+got]`): the read logged.
    IndirectJmpMem,
    /// A conditional branch to the target.
    Jcc(u64),
    /// An unconditional direct jump.
    Jmp(u64),
    /// Not translated: the region exits to it.
    Exit,
}

fn classify(d: &Decoded) -> Take {
    let insn = &d.insn;
    // (`unsupported` also says so of every instruction without a memory
    // operand: it is about faulting instructions.)
    if insn.is_invalid() || d.special.is_some() || !d.mem.is_empty() && d.unsupported.is_some() {
        return Take::Exit;
    }
    match insn.flow_control() {
        FlowControl::Next => {}
        FlowControl::ConditionalBranch
            if matches!(insn.op0_kind(), OpKind::NearBranch64)
                && !matches!(
                    insn.mnemonic(),
                    Mnemonic::Jrcxz
                        | Mnemonic::Jecxz
                        | Mnemonic::Loop
                        | Mnemonic::Loope
                        | Mnemonic::Loopne
                ) =>
        {
            return Take::Jcc(insn.near_branch_target());
        }
        FlowControl::UnconditionalBranch if matches!(insn.op0_kind(), OpKind::NearBranch64) => {
            return Take::Jmp(insn.near_branch_target());
        }
        FlowControl::Call
            if matches!(insn.op0_kind(), OpKind::NearBranch64) && loggable(d).is_some() =>
        {
            return Take::Call(insn.near_branch_target());
        }
        FlowControl::IndirectCall
            if insn.op0_kind() == OpKind::Register
                && insn.op0_register().is_gpr64()
                && loggable(d).is_some() =>
        {
            return Take::IndirectCall(insn.op0_register());
        }
        FlowControl::IndirectBranch
            if insn.op0_kind() == OpKind::Register && insn.op0_register().is_gpr64() =>
        {
            return Take::IndirectJmp(insn.op0_register());
        }
        FlowControl::IndirectBranch
            if insn.op0_kind() == OpKind::Memory
                && insn.memory_size().size() == 8
                && loggable(d).is_some() =>
        {
            return Take::IndirectJmpMem;
        }
        FlowControl::Return
            if insn.mnemonic() == Mnemonic::Ret
                && insn.op_count() == 0
                && loggable(d).is_some() =>
        {
            return Take::Ret;
        }
        _ => return Take::Exit,
    }
    let explicit_mem = (0..insn.op_count()).any(|i| insn.op_kind(i) == OpKind::Memory);
    if !explicit_mem {
        // No explicit memory operand: an implicit one (push, pop, leave)
        // or none at all.
        return if d.mem.is_empty() && insn.stack_pointer_increment() == 0 {
            Take::Copy
        } else if loggable(d).is_some() {
            Take::Memory
        } else {
            Take::Exit
        };
    }
    if matches!(insn.memory_segment(), Register::FS | Register::GS)
        || insn.is_ip_rel_memory_operand() && insn.memory_base() != Register::RIP
    {
        return Take::Exit;
    }
    if d.mem.is_empty() {
        return match insn.mnemonic() {
            Mnemonic::Lea if insn.memory_base() == Register::RIP => {
                if insn.op0_register().size() == 8 {
                    Take::RipLea
                } else {
                    Take::Exit
                }
            }
            Mnemonic::Lea | Mnemonic::Nop if insn.memory_base() != Register::RIP => Take::Copy,
            _ => Take::Exit,
        };
    }
    match loggable(d) {
        Some(_) if !insn.is_vsib() && !d.needs_xstate() => Take::Memory,
        _ => Take::Exit,
    }
}

/// The instruction's one memory operand, if the translated code can log
/// it: plain reads and writes of a known size, at an address `lea` can
/// compute (64-bit general registers, or RIP-relative).
fn loggable(d: &Decoded) -> Option<&MemOperand> {
    use AccessKind::{Read, Write};
    let [m] = d.mem.as_slice() else {
        return None;
    };
    let kinds_ok = matches!(m.kinds, [Read] | [Write] | [Read, Write]);
    let used = &m.used;
    let plain = |r: Register| r == Register::None || r.is_gpr64();
    let regs_ok = (plain(used.base()) || used.base() == Register::RIP) && plain(used.index());
    let segment_ok = !matches!(used.segment(), Register::FS | Register::GS);
    (kinds_ok && m.size > 0 && regs_ok && segment_ok && used.vsib_size() == 0).then_some(m)
}

/// The registers `insn` uses (full 64-bit forms).
fn used_registers(insn: &Instruction, factory: &mut InstructionInfoFactory) -> HashSet<Register> {
    factory
        .info(insn)
        .used_registers()
        .iter()
        .map(|u| u.register().full_register())
        .collect()
}

struct Emitter {
    out: Vec<Instruction>,
    /// The point each emitted instruction belongs to, if any.
    tags: Vec<Option<usize>>,
    /// Indices into `out` of each point's restart instruction.
    restarts: HashMap<usize, usize>,
    points: Vec<Point>,
    next_fake: u64,
    data: u64,
    current: Option<usize>,
    /// The address the next instruction pushed gets (a branch target).
    next_label: Option<u64>,
}

type Built = Result<Instruction, iced_x86::IcedError>;

impl Emitter {
    fn fake(&mut self) -> u64 {
        self.next_fake += 1;
        FAKE_IP + self.next_fake
    }

    fn push(&mut self, i: Built) -> Result<(), String> {
        let mut i =
            i.map_err(|e| format!("cannot build an instruction of the translation: {e}"))?;
        let ip = match self.next_label.take() {
            Some(label) => label,
            None => self.fake(),
        };
        i.set_ip(ip);
        self.out.push(i);
        self.tags.push(self.current);
        Ok(())
    }

    /// Gives the next instruction pushed the address `label`.
    fn label(&mut self, label: u64) {
        self.next_label = Some(label);
    }

    /// The label a branch from `from` to `target` jumps to: the target
    /// itself, or for a backward branch its budget check (emitted at the
    /// end, from `checks`).
    fn branch_label(&mut self, checks: &mut Vec<(u64, u64)>, target: u64, from: u64) -> u64 {
        if target <= from {
            let label = self.fake();
            checks.push((label, target));
            label
        } else {
            target
        }
    }

    /// Copies register `reg` to `cell::TARGET` (an indirect branch's
    /// target); the first instruction has the address `ip`.
    fn save_target(&mut self, reg: Register, ip: u64) -> Result<(), String> {
        self.label(ip);
        self.store(cell::SPILL_C, Register::RCX)?;
        self.push(Instruction::with2(Code::Mov_r64_rm64, Register::RCX, reg))?;
        self.store(cell::TARGET, Register::RCX)?;
        self.load(Register::RCX, cell::SPILL_C)
    }

    /// `lea rsp, [rsp + by]`: moves the stack pointer without the flags.
    fn move_rsp(&mut self, by: i64) -> Result<(), String> {
        self.push(Instruction::with2(
            Code::Lea_r64_m,
            Register::RSP,
            MemoryOperand::with_base_displ(Register::RSP, by),
        ))
    }

    /// Pushes `i` with the address `ip` (a branch target).
    fn push_at(&mut self, mut i: Instruction, ip: u64) {
        debug_assert!(
            self.next_label.is_none(),
            "a label waits for the next instruction"
        );
        i.set_ip(ip);
        self.out.push(i);
        self.tags.push(self.current);
    }

    fn cell(&self, off: u64) -> MemoryOperand {
        MemoryOperand::with_base_displ(Register::RIP, (self.data + off) as i64)
    }

    fn store(&mut self, off: u64, r: Register) -> Result<(), String> {
        let m = self.cell(off);
        self.push(Instruction::with2(Code::Mov_rm64_r64, m, r))
    }

    fn load(&mut self, r: Register, off: u64) -> Result<(), String> {
        let m = self.cell(off);
        self.push(Instruction::with2(Code::Mov_r64_rm64, r, m))
    }

    fn mov_imm(&mut self, r: Register, value: u64) -> Result<(), String> {
        self.push(Instruction::with2(Code::Mov_r64_imm64, r, value))
    }

    fn jmp(&mut self, target: u64) -> Result<(), String> {
        self.push(Instruction::with_branch(Code::Jmp_rel32_64, target))
    }

    fn begin_point(&mut self, p: Point) {
        self.points.push(p);
        self.current = Some(self.points.len() - 1);
    }

    fn end_point(&mut self) {
        self.current = None;
    }

    fn mark_restart(&mut self) {
        if let Some(p) = self.current {
            self.restarts.insert(p, self.out.len());
        }
    }

    /// Appends one log entry: `[s_ptr] = s_ea, site, rbp, the bytes at
    /// s_ea`, and moves the log pointer past it. The scratch registers are
    /// spilled; the restart point is at the pointer's load.
    fn append_entry(
        &mut self,
        [ea, ptr, val]: [Register; 3],
        site: u32,
        size: u64,
    ) -> Result<(), String> {
        self.mark_restart();
        self.load(ea, cell::EA)?;
        self.load(ptr, cell::LOG_PTR)?;
        self.push(Instruction::with2(
            Code::Mov_rm64_r64,
            MemoryOperand::with_base(ptr),
            ea,
        ))?;
        self.push(Instruction::with2(
            Code::Mov_rm32_imm32,
            MemoryOperand::with_base_displ(ptr, 8),
            site,
        ))?;
        self.push(Instruction::with2(
            Code::Mov_rm64_r64,
            MemoryOperand::with_base_displ(ptr, 16),
            Register::RBP,
        ))?;
        let shown = size.min(MAX_RECORDED_BYTES as u64);
        let mut k = 0u64;
        while k < shown {
            let left = shown - k;
            let (code, width, dst) = if left >= 8 {
                (Code::Mov_r64_rm64, 8, val)
            } else if left >= 4 {
                (Code::Mov_r32_rm32, 4, dword(val))
            } else if left >= 2 {
                (Code::Movzx_r32_rm16, 2, dword(val))
            } else {
                (Code::Movzx_r32_rm8, 1, dword(val))
            };
            self.push(Instruction::with2(
                code,
                dst,
                MemoryOperand::with_base_displ(ea, k as i64),
            ))?;
            let (store, src) = if width == 8 {
                (Code::Mov_rm64_r64, val)
            } else {
                (Code::Mov_rm32_r32, dword(val))
            };
            self.push(Instruction::with2(
                store,
                MemoryOperand::with_base_displ(ptr, (ENTRY_HEADER + k) as i64),
                src,
            ))?;
            k += width;
        }
        self.push(Instruction::with2(
            Code::Lea_r64_m,
            ptr,
            MemoryOperand::with_base_displ(ptr, (ENTRY_HEADER + value_len(size)) as i64),
        ))?;
        self.store(cell::LOG_PTR, ptr)
    }

    /// Leaves the cache for native `target`: the close gate, then a jump.
    /// The first instruction has the address `label`.
    fn exit_labelled(&mut self, label: u64, target: u64, close_gate: u64) -> Result<(), String> {
        self.label(label);
        self.exit(target, close_gate)
    }

    /// Leaves the cache for native `target`: the close gate, then a jump.
    fn exit(&mut self, target: u64, close_gate: u64) -> Result<(), String> {
        self.store(cell::SPILL_EXIT, Register::RAX)?;
        self.mov_imm(Register::RAX, target)?;
        self.store(cell::EXIT_TARGET, Register::RAX)?;
        self.load(Register::RAX, cell::SPILL_EXIT)?;
        self.jmp(close_gate)
    }
}

/// The address of memory operand `m` as `lea` computes it (no segment).
fn lea_operand(m: &MemOperand) -> MemoryOperand {
    let used = &m.used;
    let displ = used.displacement() as i64;
    // iced's sizes: 1 for a byte displacement, else the address size.
    let addr32 = used.base().size() == 4 || used.index().size() == 4;
    let displ_size = if displ == 0 {
        0
    } else if i8::try_from(displ).is_ok() {
        1
    } else if addr32 {
        4
    } else {
        8
    };
    MemoryOperand::with_base_index_scale_displ_size(
        used.base(),
        used.index(),
        used.scale(),
        displ,
        displ_size,
    )
}

/// Translates the region that starts at the original instruction `entry`.
/// `decode` gives the decoded instruction at an address. Fails (and the
/// fault takes today's path) when the entry itself cannot be translated
/// or the code cannot be encoded.
/// `learned` holds, per indirect branch or return of the region, the
/// targets seen leave it so far: they are translated, and compared with
/// before leaving.
pub(in crate::supervisor) fn translate(
    entry: u64,
    place: &Place,
    decode: &mut dyn FnMut(u64) -> Rc<Decoded>,
    learned: &HashMap<u64, Vec<u64>>,
) -> Result<Translation, String> {
    let first = decode(entry);
    if !matches!(classify(&first), Take::Memory) {
        return Err(format!(
            "`{}` is not a memory instruction the cache takes",
            first.text
        ));
    }
    let mut factory = InstructionInfoFactory::new();
    let mut e = Emitter {
        out: Vec::with_capacity(1024),
        tags: Vec::with_capacity(1024),
        restarts: HashMap::new(),
        points: Vec::new(),
        next_fake: 0,
        data: place.data,
        current: None,
        next_label: None,
    };
    let mut sites: Vec<Site> = Vec::new();
    let mut originals: Vec<(u64, Vec<u8>)> = Vec::new();
    // Original addresses translated, and branch targets still to do.
    let mut done: HashSet<u64> = HashSet::new();
    let mut queue: VecDeque<u64> = VecDeque::from([entry]);
    // Budget checks of backward branches, emitted at the end: label ->
    // target.
    let mut budget_checks: Vec<(u64, u64)> = Vec::new();
    let mut count = 0usize;
    let mut pending_targets: Vec<u64> = Vec::new();
    // The next instructions of the translated calls (where their returns
    // come back to), and each translated `ret`: (label, address).
    let mut ret_sites: Vec<u64> = Vec::new();
    // Indirect branches and returns: (label, address, where the target
    // is, whether it is a return).
    let mut indirect: Vec<(u64, u64, Via, bool)> = Vec::new();
    while let Some(start) = queue.pop_front() {
        let mut ip = start;
        loop {
            if done.contains(&ip) {
                // Fall into code already translated.
                e.jmp(ip)?;
                break;
            }
            let d = if ip == entry {
                Rc::clone(&first)
            } else {
                decode(ip)
            };
            let take = if count >= MAX_INSNS {
                Take::Exit
            } else {
                classify(&d)
            };
            if matches!(take, Take::Exit) {
                // The exit is labelled with the instruction's own address,
                // so branches to it leave the cache too.
                done.insert(ip);
                e.exit_labelled(ip, ip, place.close_gate)?;
                break;
            }
            done.insert(ip);
            count += 1;
            originals.push((ip, d.bytes.clone()));
            let next = d.next_ip();
            match take {
                Take::Copy => e.push_at(d.insn, ip),
                Take::RipLea => {
                    let i = Instruction::with2(
                        Code::Mov_r64_imm64,
                        d.insn.op0_register(),
                        d.insn.memory_displacement64(),
                    )
                    .map_err(|err| err.to_string())?;
                    e.push_at(i, ip);
                }
                Take::Jcc(target) | Take::Jmp(target) => {
                    let label = e.branch_label(&mut budget_checks, target, ip);
                    pending_targets.push(target);
                    let mut i = d.insn;
                    i.as_near_branch();
                    i.set_near_branch64(label);
                    e.push_at(i, ip);
                    if matches!(take, Take::Jmp(_)) {
                        break;
                    }
                }
                Take::Memory => {
                    let rip_rel = d.insn.is_ip_rel_memory_operand();
                    let middle = if rip_rel {
                        Middle::RipRelative
                    } else {
                        Middle::Native
                    };
                    log_around(
                        &mut e,
                        &d,
                        place,
                        &mut sites,
                        &mut factory,
                        middle,
                        Some(ip),
                    )?;
                }
                Take::Call(target) => {
                    let how = Middle::PushReturn;
                    log_around(&mut e, &d, place, &mut sites, &mut factory, how, Some(ip))?;
                    let label = e.branch_label(&mut budget_checks, target, ip);
                    e.jmp(label)?;
                    pending_targets.push(target);
                    pending_targets.push(next);
                    ret_sites.push(next);
                    break;
                }
                Take::IndirectCall(reg) => {
                    // The target first: the push may change rsp.
                    e.save_target(reg, ip)?;
                    let how = Middle::PushReturn;
                    log_around(&mut e, &d, place, &mut sites, &mut factory, how, None)?;
                    let label = e.fake();
                    e.jmp(label)?;
                    indirect.push((label, ip, Via::Target, false));
                    pending_targets.push(next);
                    ret_sites.push(next);
                    break;
                }
                Take::IndirectJmp(reg) => {
                    e.save_target(reg, ip)?;
                    let label = e.fake();
                    e.jmp(label)?;
                    indirect.push((label, ip, Via::Target, false));
                    break;
                }
                Take::IndirectJmpMem | Take::Ret => {
                    log_around(
                        &mut e,
                        &d,
                        place,
                        &mut sites,
                        &mut factory,
                        Middle::Nothing,
                        Some(ip),
                    )?;
                    let label = e.fake();
                    e.jmp(label)?;
                    let ret = matches!(take, Take::Ret);
                    indirect.push((label, ip, if ret { Via::Stack } else { Via::Ea }, ret));
                    break;
                }
                Take::Exit => {}
            }
            ip = next;
        }
        for &(_, site, _, _) in &indirect {
            for &target in learned.get(&site).into_iter().flatten() {
                pending_targets.push(target);
            }
        }
        for target in pending_targets.drain(..) {
            if !done.contains(&target) && !queue.contains(&target) {
                queue.push_back(target);
            }
        }
    }
    // Indirect branches and returns: into the region when the target is a
    // translated call's next instruction (returns) or a target learned
    // before; otherwise out of the cache, and, while the site has room for
    // more targets, through the exit trap so that the supervisor
    // translates the region again with this one.
    ret_sites.sort_unstable();
    ret_sites.dedup();
    for (label, site, via, is_ret) in indirect {
        e.label(label);
        e.store(cell::SPILL_C, Register::RCX)?;
        e.store(cell::SPILL_D, Register::RDX)?;
        match via {
            Via::Stack => e.push(Instruction::with2(
                Code::Mov_r64_rm64,
                Register::RDX,
                MemoryOperand::with_base(Register::RSP),
            ))?,
            Via::Target => e.load(Register::RDX, cell::TARGET)?,
            Via::Ea => {
                e.load(Register::RDX, cell::EA)?;
                e.push(Instruction::with2(
                    Code::Mov_r64_rm64,
                    Register::RDX,
                    MemoryOperand::with_base(Register::RDX),
                ))?;
            }
        }
        let learned_here = learned.get(&site).map_or(&[][..], Vec::as_slice);
        let mut targets: Vec<u64> = learned_here.to_vec();
        if is_ret {
            targets.extend(ret_sites.iter().copied());
        }
        targets.sort_unstable();
        targets.dedup();
        for target in targets {
            let (hit, next) = (e.fake(), e.fake());
            e.mov_imm(Register::RCX, target.wrapping_neg())?;
            e.push(Instruction::with2(
                Code::Lea_r64_m,
                Register::RCX,
                MemoryOperand::with_base_index(Register::RCX, Register::RDX),
            ))?;
            e.push(Instruction::with_branch(Code::Jrcxz_rel8_64, hit))?;
            e.jmp(next)?;
            e.label(hit);
            e.load(Register::RCX, cell::SPILL_C)?;
            e.load(Register::RDX, cell::SPILL_D)?;
            if is_ret {
                e.move_rsp(8)?;
            }
            let to = e.branch_label(&mut budget_checks, target, site);
            e.jmp(to)?;
            // The next comparison (or the miss) starts at `next`.
            e.label(next);
        }
        e.store(cell::EXIT_TARGET, Register::RDX)?;
        // A return learns too, when the region was entered several times
        // in the call (`cell::RET_LEARN`): then it is a loop's body
        // entered in the middle of a function, returning to its caller's
        // loop (recursive sorts, helpers called from a loop outside the
        // region). A region entered once returns to the test's own code:
        // no stop for that.
        if learned_here.len() < MAX_LEARNED {
            let skip = e.fake();
            if is_ret {
                e.load(Register::RCX, cell::RET_LEARN)?;
                e.push(Instruction::with_branch(Code::Jrcxz_rel8_64, skip))?;
            }
            e.mov_imm(Register::RCX, site)?;
            e.store(cell::LEARN_SITE, Register::RCX)?;
            e.mov_imm(Register::RCX, 1)?;
            e.store(cell::TRAP, Register::RCX)?;
            e.label(skip);
        }
        e.load(Register::RCX, cell::SPILL_C)?;
        e.load(Register::RDX, cell::SPILL_D)?;
        if is_ret {
            e.move_rsp(8)?;
        }
        e.jmp(place.close_gate)?;
    }
    // Budget checks of backward branches.
    for (label, target) in budget_checks {
        let out_label = e.fake();
        e.label(label);
        e.store(cell::SPILL_BUDGET, Register::RCX)?;
        e.load(Register::RCX, cell::BUDGET)?;
        e.push(Instruction::with2(
            Code::Lea_r64_m,
            Register::RCX,
            MemoryOperand::with_base_displ(Register::RCX, -1),
        ))?;
        e.store(cell::BUDGET, Register::RCX)?;
        e.push(Instruction::with_branch(Code::Jrcxz_rel8_64, out_label))?;
        e.load(Register::RCX, cell::SPILL_BUDGET)?;
        e.jmp(target)?;
        e.label(out_label);
        e.load(Register::RCX, cell::SPILL_BUDGET)?;
        e.exit(target, place.close_gate)?;
    }
    // Every branch must land in the region (or on the close gate): a branch
    // to native code would run it with the pages open.
    let labels: HashSet<u64> = e.out.iter().map(Instruction::ip).collect();
    for i in &e.out {
        if matches!(i.op0_kind(), OpKind::NearBranch64) {
            let t = i.near_branch_target();
            if t != place.close_gate && !labels.contains(&t) {
                return Err(format!("a branch to {t:#x} leaves the region"));
            }
        }
    }
    let block = InstructionBlock::new(&e.out, place.at);
    let encoded = BlockEncoder::encode(
        64,
        block,
        BlockEncoderOptions::RETURN_NEW_INSTRUCTION_OFFSETS,
    )
    .map_err(|err| format!("cannot encode the translation: {err}"))?;
    let offsets = &encoded.new_instruction_offsets;
    if offsets.contains(&u32::MAX) {
        return Err("the encoder rewrote a branch of the translation".into());
    }
    let addr_of = |idx: usize| place.at + u64::from(offsets[idx]);
    let end_of = |idx: usize| {
        offsets
            .get(idx + 1)
            .map_or(place.at + encoded.code_buffer.len() as u64, |&o| {
                place.at + u64::from(o)
            })
    };
    let mut points = std::mem::take(&mut e.points);
    for (pi, p) in points.iter_mut().enumerate() {
        let idxs: Vec<usize> = (0..e.tags.len())
            .filter(|&i| e.tags[i] == Some(pi))
            .collect();
        let (Some(&lo), Some(&hi)) = (idxs.first(), idxs.last()) else {
            continue;
        };
        p.start = addr_of(lo);
        p.end = end_of(hi);
        p.restart = e.restarts.get(&pi).map_or(p.start, |&i| addr_of(i));
    }
    points.retain(|p| p.end > p.start);
    points.sort_by_key(|p| p.start);
    let entry_idx = e
        .out
        .iter()
        .position(|i| i.ip() == entry)
        .ok_or("the entry instruction is missing from the translation")?;
    originals.sort_by_key(|(at, _)| *at);
    let mut spans: Vec<(u64, Vec<u8>)> = Vec::new();
    for (at, bytes) in originals {
        match spans.last_mut() {
            Some((s, b)) if *s + b.len() as u64 == at => b.extend_from_slice(&bytes),
            _ => spans.push((at, bytes)),
        }
    }
    let labels: HashMap<u64, u64> = e
        .out
        .iter()
        .enumerate()
        .filter(|(_, i)| done.contains(&i.ip()) && i.ip() < FAKE_IP)
        .map(|(k, i)| (i.ip(), addr_of(k)))
        .collect();
    Ok(Translation {
        entry_at: addr_of(entry_idx),
        labels,
        at: place.at,
        code: encoded.code_buffer,
        originals: spans,
        points,
        sites,
    })
}

/// Where an indirect branch's target is.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Via {
    /// At `[rsp]` (a return).
    Stack,
    /// In `cell::TARGET` (`call reg`, `jmp reg`).
    Target,
    /// At the address in `cell::EA` (`jmp [mem]`).
    Ea,
}

/// What runs between the logging of an instruction's reads and of its
/// writes.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Middle {
    /// The instruction itself.
    Native,
    /// The instruction, its RIP-relative operand based on a scratch
    /// register holding the address.
    RipRelative,
    /// A `call`'s push of its return address (the call's jump follows).
    PushReturn,
    /// Nothing (a `ret`: the return follows, through the dispatch).
    Nothing,
}

/// Emits one memory instruction of the region: its address computed into
/// `cell::EA` and its read logged, the instruction (`middle`), its write
/// logged.
fn log_around(
    e: &mut Emitter,
    d: &Rc<Decoded>,
    place: &Place,
    sites: &mut Vec<Site>,
    factory: &mut InstructionInfoFactory,
    middle: Middle,
    label: Option<u64>,
) -> Result<(), String> {
    let ip = d.insn.ip();
    let next = d.next_ip();
    let used = used_registers(&d.insn, factory);
    let mut free = SCRATCH.iter().copied().filter(|r| !used.contains(r));
    let (Some(s1), Some(s2), Some(s3), Some(s4)) =
        (free.next(), free.next(), free.next(), free.next())
    else {
        return Err(format!("`{}` leaves no scratch registers", d.text));
    };
    let spilled: Vec<(Register, u64)> = [s1, s2, s3]
        .iter()
        .zip(cell::SPILL)
        .map(|(&r, c)| (r, c))
        .collect();
    let m = loggable(d).ok_or_else(|| format!("`{}` has no memory operand to log", d.text))?;
    let mut site_of = |kind: AccessKind| {
        sites.push(Site {
            decoded: Rc::clone(d),
            size: m.size,
            kind,
        });
        place.first_site + sites.len() as u32 - 1
    };
    let point = |phase: Phase, spilled: Vec<(Register, u64)>| Point {
        start: 0,
        end: 0,
        ip,
        next_ip: next,
        phase,
        spilled,
        restart: 0,
    };
    // Before: the address, and the read's entry.
    e.begin_point(point(Phase::Before, spilled.clone()));
    // The first instruction carries the original address (unless the
    // caller's code for the instruction comes first).
    if let Some(label) = label {
        e.label(label);
    }
    for &(r, c) in &spilled {
        e.store(c, r)?;
    }
    // A RIP-relative operand's address is known: iced gives it as the
    // displacement (with no base, or RIP).
    let absolute =
        matches!(m.used.base(), Register::RIP | Register::None) && m.used.index() == Register::None;
    if absolute || d.insn.is_ip_rel_memory_operand() {
        e.mov_imm(s1, m.used.displacement())?;
    } else {
        e.push(Instruction::with2(Code::Lea_r64_m, s1, lea_operand(m)))?;
    }
    e.store(cell::EA, s1)?;
    if m.kinds.contains(&AccessKind::Read) {
        let site = site_of(AccessKind::Read);
        e.append_entry([s1, s2, s3], site, m.size)?;
    }
    for &(r, c) in &spilled {
        e.load(r, c)?;
    }
    e.end_point();
    let s4_spilled = vec![(s4, cell::SPILL[3])];
    match middle {
        Middle::Native => {
            e.begin_point(point(Phase::Insn, Vec::new()));
            e.push(Ok(d.insn))?;
            e.end_point();
        }
        Middle::RipRelative => {
            e.begin_point(point(Phase::Before, s4_spilled.clone()));
            e.store(cell::SPILL[3], s4)?;
            e.load(s4, cell::EA)?;
            e.end_point();
            let mut i = d.insn;
            i.set_memory_base(s4);
            i.set_memory_displacement64(0);
            i.set_memory_displ_size(0);
            e.begin_point(point(Phase::Insn, s4_spilled.clone()));
            e.push(Ok(i))?;
            e.end_point();
            e.begin_point(point(Phase::After, s4_spilled));
            e.load(s4, cell::SPILL[3])?;
            e.end_point();
        }
        Middle::PushReturn => {
            // The store comes before rsp moves: if it faults, the thread
            // goes back to the call with its registers as they were.
            e.begin_point(point(Phase::Insn, s4_spilled));
            e.store(cell::SPILL[3], s4)?;
            e.mov_imm(s4, next)?;
            e.push(Instruction::with2(
                Code::Mov_rm64_r64,
                MemoryOperand::with_base_displ(Register::RSP, -8),
                s4,
            ))?;
            e.load(s4, cell::SPILL[3])?;
            e.end_point();
            e.move_rsp(-8)?;
        }
        Middle::Nothing => {}
    }
    if m.kinds.contains(&AccessKind::Write) {
        e.begin_point(point(Phase::After, spilled.clone()));
        for &(r, c) in &spilled {
            e.store(c, r)?;
        }
        let site = site_of(AccessKind::Write);
        e.append_entry([s1, s2, s3], site, m.size)?;
        for &(r, c) in &spilled {
            e.load(r, c)?;
        }
        e.end_point();
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::decode::insn::decode;
    use iced_x86::{Decoder, DecoderOptions, Formatter, IntelFormatter};

    /// fill_bytes_o2: test rsi,rsi; je end; add rsi,rdi; nop; loop: mov
    /// [rdi],dl; add rdi,1; cmp rdi,rsi; jne loop; end: ret.
    const FILL: &[u8] = &[
        0x48, 0x85, 0xf6, 0x74, 0x16, 0x48, 0x01, 0xfe, 0x0f, 0x1f, 0x84, 0x00, 0x00, 0x00, 0x00,
        0x00, 0x88, 0x17, 0x48, 0x83, 0xc7, 0x01, 0x48, 0x39, 0xf7, 0x75, 0xf5, 0xc3,
    ];
    const CODE: u64 = 0x40_0000;

    fn translated(code: &[u8], entry: u64) -> (Translation, Vec<String>) {
        let place = Place {
            at: 0x7000_8000,
            data: 0x7000_0000,
            close_gate: 0x7000_6000,
            first_site: 0,
        };
        let mut read = |ip: u64| {
            let from = (ip - CODE) as usize;
            let end = (from + 15).min(code.len());
            Rc::new(decode(ip, code.get(from..end).unwrap_or(&[])))
        };
        let t = translate(entry, &place, &mut read, &HashMap::new()).expect("translates");
        let mut d = Decoder::with_ip(64, &t.code, t.at, DecoderOptions::NONE);
        let mut f = IntelFormatter::new();
        let mut text = Vec::new();
        while d.can_decode() {
            let i = d.decode();
            let mut s = format!("{:x} ", i.ip());
            f.format(&i, &mut s);
            text.push(s);
        }
        (t, text)
    }

    #[test]
    fn byte_store_loop_becomes_a_loop_in_the_cache_that_logs_each_store_and_its_return() {
        let (t, text) = translated(FILL, CODE + 0x10);
        let all = text.join("\n");
        // The store, and the return's read of its return address.
        assert_eq!(t.sites.len(), 2, "{all}");
        assert_eq!((t.sites[0].kind, t.sites[0].size), (AccessKind::Write, 1));
        assert_eq!((t.sites[1].kind, t.sites[1].size), (AccessKind::Read, 8));
        assert_eq!(t.entry_at, t.at, "{all}");
        // The original instructions, in order, with the log entry between.
        let find = |what: &str| text.iter().position(|l| l.ends_with(what));
        let store = find(" mov [rdi],dl").expect(&all);
        let value = find(" movzx ebx,byte ptr [rax]").expect(&all);
        let add = find(" add rdi,1").expect(&all);
        let jne = text.iter().position(|l| l.contains(" jne ")).expect(&all);
        assert!(store < value && value < add && add < jne, "{all}");
        // The backward jne goes through the budget check back to the start.
        assert!(text.iter().any(|l| l.contains(" jrcxz ")), "{all}");
        assert!(
            text.iter()
                .any(|l| l.ends_with(&format!(" jmp {:016X}h", t.at))),
            "{all}"
        );
        // Two exits: the return (to its caller, not in the region) and the
        // end of the budget; the ret itself is not copied.
        assert!(
            all.contains("mov [70000098h],rdx") && all.contains("mov rax,400010h"),
            "{all}"
        );
        assert_eq!(all.matches("jmp 0000000070006000h").count(), 2, "{all}");
        assert!(!all.contains(" ret"), "{all}");
        // The original code is remembered, to see it change.
        assert_eq!(t.originals, vec![(CODE + 0x10, FILL[0x10..0x1c].to_vec())]);
    }
}

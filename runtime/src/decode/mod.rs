//! Process-free: what an instruction or a system call does to memory,
//! computed from its bytes and the registers. Imports neither side.
//!
//! - `insn`: decoding (iced-x86), the operands, the plan of one fault;
//! - `moves`: plain moves, which the supervisor can carry out itself;
//! - `xstate`: the extended state (vector and opmask registers) of a thread;
//! - `syscalls`: the memory each system call reads and writes;
//! - `syscall_table`: every x86-64 system call's name and address arguments.

pub(crate) mod insn;
pub(crate) mod moves;
pub(crate) mod syscall_table;
pub(crate) mod syscalls;
pub(crate) mod xstate;

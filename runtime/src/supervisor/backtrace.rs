//! The native caller chain of a stopped thread, where frame pointers allow:
//! for the timeout report (where each thread is) and for out-of-bounds
//! accesses (who called the function that overran).
//!
//! The walk follows `rbp`: `[rbp]` is the caller's `rbp`, `[rbp+8]` the
//! return address. Code built without frame pointers (`-O2` C, Rust by
//! default) uses `rbp` for other things, so every step is checked: the
//! function it leaves begins with `push rbp; mov rbp, rsp` (found through
//! its symbol), the frame pointer goes up the stack by less than
//! [`MAX_FRAME`], and the return address follows a `call` instruction. The
//! walk stops at the first frame that fails; what it returns is a chain
//! that code really called, possibly shorter than the real one.

use std::os::unix::fs::FileExt;

use libc::user_regs_struct;

use super::core::Supervisor;
use crate::trace::symbols::symbol_offset_in;

/// `push rbp; mov rbp, rsp`: the prologue of a function that keeps a frame
/// pointer.
const PROLOGUE: [u8; 4] = [0x55, 0x48, 0x89, 0xe5];
/// `endbr64`, which may come first.
const ENDBR64: [u8; 4] = [0xf3, 0x0f, 0x1e, 0xfa];

/// At most this many callers are listed.
const MAX_CALLERS: usize = 16;
/// Largest distance between two frame pointers accepted (bytes).
const MAX_FRAME: u64 = 1 << 20;

/// True if the bytes before `ret` end with a `call`: `E8 rel32` (5 bytes)
/// or `FF /2` with a register or memory operand (2, 3, 4, 6 or 7 bytes).
fn follows_call(before: &[u8; 7]) -> bool {
    let is_ff2 = |at: usize| before[at] == 0xff && (before[at + 1] >> 3) & 7 == 2;
    before[2] == 0xe8 || is_ff2(5) || is_ff2(4) || is_ff2(3) || is_ff2(1) || is_ff2(0)
}

impl Supervisor {
    fn read_u64(&self, addr: u64) -> Option<u64> {
        let mut b = [0u8; 8];
        (self.mem.read_at(&mut b, addr).ok() == Some(8)).then(|| u64::from_le_bytes(b))
    }

    /// True if the function holding `ip` begins with the frame-pointer
    /// prologue and `ip` lies past it: `rbp` is then that function's frame.
    fn keeps_frame_pointer(&self, ip: u64) -> bool {
        let Some(off) = symbol_offset_in(self.child, ip) else {
            return false;
        };
        let mut head = [0u8; 8];
        if self.mem.read_at(&mut head, ip - off).ok() != Some(8) {
            return false;
        }
        let prologue_end = if head[..4] == ENDBR64 { 8 } else { 4 };
        head[prologue_end - 4..prologue_end] == PROLOGUE && off >= prologue_end as u64
    }

    /// The return addresses of the frames above the one `regs` is in,
    /// innermost first, as far as the frame-pointer chain can be trusted:
    /// each step needs the function it leaves to keep a frame pointer.
    pub(super) fn callers(&self, regs: &user_regs_struct) -> Vec<u64> {
        let mut out = Vec::new();
        if !self.keeps_frame_pointer(regs.rip) {
            return out;
        }
        let mut fp = regs.rbp;
        // The frame pointer lies above the stack pointer.
        if fp < regs.rsp || fp - regs.rsp > MAX_FRAME {
            return out;
        }
        while out.len() < MAX_CALLERS && fp.is_multiple_of(8) {
            let (Some(next), Some(ret)) = (self.read_u64(fp), self.read_u64(fp + 8)) else {
                break;
            };
            let mut before = [0u8; 7];
            if ret < 7
                || self.mem.read_at(&mut before, ret - 7).ok() != Some(7)
                || !follows_call(&before)
            {
                break;
            }
            out.push(ret);
            if next <= fp || next - fp > MAX_FRAME || !self.keeps_frame_pointer(ret - 1) {
                break;
            }
            fp = next;
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::follows_call;

    #[test]
    fn return_addresses_after_call_forms_are_recognised() {
        // call rel32
        assert!(follows_call(&[0, 0, 0xe8, 1, 2, 3, 4]));
        // call rax (FF D0)
        assert!(follows_call(&[0, 0, 0, 0, 0, 0xff, 0xd0]));
        // call [rip+disp32] (FF 15 disp32)
        assert!(follows_call(&[0xff, 0x15, 1, 2, 3, 4, 0]));
        // jmp rax (FF E0) and plain data are not calls
        assert!(!follows_call(&[0, 0, 0, 0, 0, 0xff, 0xe0]));
        assert!(!follows_call(&[0; 7]));
    }
}

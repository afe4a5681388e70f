//! The tracee's extended register state (`PTRACE_GETREGSET`, `NT_X86_XSTATE`):
//! vector registers and AVX-512 opmasks, needed for the addresses of gathers
//! and scatters and for the element masks of masked loads and stores; and the
//! sizes of the `xsave` area for this CPU.
//!
//! The kernel hands out the state in the standard (non-compacted) XSAVE
//! format, whose component offsets CPUID leaf 0xD gives (Intel SDM vol. 1,
//! 13.4). A component whose `XSTATE_BV` bit is clear is in its initial state
//! (all zeros) and its bytes in the buffer are not meaningful.

use std::io;
use std::sync::OnceLock;

use iced_x86::Register;
use libc::pid_t;

use crate::ptrace::Ptrace;

/// `NT_X86_XSTATE` (elf.h).
const NT_X86_XSTATE: usize = 0x202;
/// Offset of XMM0 in the legacy region.
const XMM_OFFSET: usize = 160;
/// Offset of the XSAVE header (`XSTATE_BV` is its first 8 bytes).
const HEADER_OFFSET: usize = 512;
/// Size of the legacy region plus the header.
const LEGACY_AND_HEADER: u64 = 576;

/// State components (Intel SDM vol. 1, 13.1).
const YMM_HI128: usize = 2;
const OPMASK: usize = 5;
const ZMM_HI256: usize = 6;
const HI16_ZMM: usize = 7;

/// One state component's place in the standard format, and whether it is
/// 64-byte aligned in the compacted format.
#[derive(Debug, Clone, Copy, Default)]
struct Component {
    offset: u32,
    size: u32,
    align64: bool,
}

/// This CPU's XSAVE layout, from CPUID and XCR0.
#[derive(Debug)]
pub(crate) struct Layout {
    /// Components enabled by the OS (XCR0).
    xcr0: u64,
    /// Size of the standard-format area for every XCR0 component.
    size: usize,
    components: [Component; 64],
}

/// The layout of this machine; `None` if the CPU has no XSAVE.
pub(crate) fn layout() -> Option<&'static Layout> {
    static LAYOUT: OnceLock<Option<Layout>> = OnceLock::new();
    LAYOUT.get_or_init(read_layout).as_ref()
}

fn read_layout() -> Option<Layout> {
    use std::arch::x86_64::{__cpuid, __cpuid_count};
    let leaf1 = __cpuid(1);
    // CPUID.1:ECX bit 27 = OSXSAVE: XGETBV is enabled.
    if leaf1.ecx & (1 << 27) == 0 {
        return None;
    }
    let xcr0 = xgetbv0();
    // Leaf 0xD exists when OSXSAVE is set.
    let main = __cpuid_count(0xd, 0);
    let mut components = [Component::default(); 64];
    for (i, c) in components.iter_mut().enumerate().skip(2) {
        if xcr0 & (1 << i) == 0 {
            continue;
        }
        // Sub-leaf i of leaf 0xD describes component i.
        let sub = __cpuid_count(0xd, i as u32);
        *c = Component {
            offset: sub.ebx,
            size: sub.eax,
            align64: sub.ecx & 0b10 != 0,
        };
    }
    Some(Layout {
        xcr0,
        size: main.ebx as usize,
        components,
    })
}

fn xgetbv0() -> u64 {
    let (lo, hi): (u32, u32);
    // SAFETY: XGETBV with ECX = 0 is allowed at any privilege level once
    // CR4.OSXSAVE is set, which the caller checked (CPUID.1:ECX.OSXSAVE).
    unsafe {
        std::arch::asm!("xgetbv", in("ecx") 0, out("eax") lo, out("edx") hi, options(nomem, nostack, preserves_flags));
    }
    (u64::from(hi) << 32) | u64::from(lo)
}

impl Layout {
    /// Bytes `xsave`/`xsaveopt`/`xrstor` touch for the requested-feature
    /// bitmap `rfbm` (edx:eax): the legacy region and header, and every
    /// requested component at its standard offset.
    pub(crate) fn standard_size(&self, rfbm: u64) -> u64 {
        let rfbm = rfbm & self.xcr0;
        (2..64)
            .filter(|i| rfbm & (1 << i) != 0)
            .map(|i| {
                let c = self.components[i];
                u64::from(c.offset) + u64::from(c.size)
            })
            .fold(LEGACY_AND_HEADER, u64::max)
    }

    /// Bytes `xsavec` writes for `rfbm`: the compacted format packs the
    /// requested components after the header, 64-byte aligned where CPUID
    /// says so (Intel SDM vol. 1, 13.4.3).
    pub(crate) fn compacted_size(&self, rfbm: u64) -> u64 {
        let rfbm = rfbm & self.xcr0;
        let mut end = LEGACY_AND_HEADER;
        for i in (2..64).filter(|i| rfbm & (1 << i) != 0) {
            let c = self.components[i];
            if c.align64 {
                end = end.next_multiple_of(64);
            }
            end += u64::from(c.size);
        }
        end
    }
}

/// A snapshot of one thread's extended state.
pub(crate) struct XState {
    area: Vec<u8>,
    layout: &'static Layout,
}

impl XState {
    /// Reads `tid`'s extended state.
    pub(crate) fn read(pt: &mut Ptrace, tid: pid_t) -> io::Result<XState> {
        let layout = layout()
            .ok_or_else(|| io::Error::new(io::ErrorKind::Unsupported, "the CPU has no XSAVE"))?;
        let mut area = vec![0u8; layout.size.max(LEGACY_AND_HEADER as usize)];
        let len = pt.getregset(tid, NT_X86_XSTATE, &mut area)?;
        area.truncate(len);
        Ok(XState { area, layout })
    }

    fn in_use(&self, component: usize) -> bool {
        let bv = self
            .area
            .get(HEADER_OFFSET..HEADER_OFFSET + 8)
            .and_then(|b| b.try_into().ok())
            .map_or(0, u64::from_le_bytes);
        bv & (1 << component) != 0
    }

    /// `len` bytes of component `component` at `offset` into it; zeros if the
    /// component is in its initial state.
    fn component_bytes(&self, component: usize, offset: usize, out: &mut [u8]) -> Option<()> {
        if self.layout.xcr0 & (1 << component) == 0 {
            return None;
        }
        if !self.in_use(component) {
            out.fill(0);
            return Some(());
        }
        let start = self.layout.components[component].offset as usize + offset;
        out.copy_from_slice(self.area.get(start..start + out.len())?);
        Some(())
    }

    /// The 64 bytes of a vector register (XMM/YMM/ZMM 0–31); the bytes
    /// beyond the register's width are those of the wider register.
    pub(crate) fn vector(&self, reg: Register) -> Option<[u8; 64]> {
        let n = if reg.is_xmm() {
            reg.number() - Register::XMM0.number()
        } else if reg.is_ymm() {
            reg.number() - Register::YMM0.number()
        } else if reg.is_zmm() {
            reg.number() - Register::ZMM0.number()
        } else {
            return None;
        };
        let mut v = [0u8; 64];
        if n < 16 {
            let xmm = XMM_OFFSET + 16 * n;
            v[..16].copy_from_slice(self.area.get(xmm..xmm + 16)?);
            // Upper parts the CPU lacks read as zero.
            let _ = self.component_bytes(YMM_HI128, 16 * n, &mut v[16..32]);
            let _ = self.component_bytes(ZMM_HI256, 32 * n, &mut v[32..64]);
        } else {
            self.component_bytes(HI16_ZMM, 64 * (n - 16), &mut v)?;
        }
        Some(v)
    }

    /// The value of an AVX-512 opmask register `k0`–`k7`.
    pub(crate) fn opmask(&self, reg: Register) -> Option<u64> {
        if !(Register::K0..=Register::K7).contains(&reg) {
            return None;
        }
        let n = reg.number() - Register::K0.number();
        let mut b = [0u8; 8];
        self.component_bytes(OPMASK, 8 * n, &mut b)?;
        Some(u64::from_le_bytes(b))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn standard_size_for_every_enabled_component_is_cpuids_xcr0_size() {
        let Some(l) = layout() else { return };
        assert_eq!(l.standard_size(u64::MAX), l.size as u64);
        assert_eq!(l.standard_size(0b11), LEGACY_AND_HEADER);
    }

    #[test]
    fn compacted_size_with_x87_and_sse_only_is_legacy_plus_header() {
        let Some(l) = layout() else { return };
        assert_eq!(l.compacted_size(0b11), LEGACY_AND_HEADER);
        assert!(l.compacted_size(u64::MAX) <= l.size as u64);
    }
}

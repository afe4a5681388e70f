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

/// `NT_X86_XSTATE` (elf.h).
pub(crate) const NT_X86_XSTATE: usize = 0x202;
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
    /// The byte ranges `(offset, len)` of the area an `xsave`-family
    /// instruction touches for the requested-feature bitmap `rfbm`
    /// (edx:eax), merged (Intel SDM vol. 1, 13.4–13.8):
    /// - x87 state (bit 0): bytes 0..24 and 32..160; MXCSR (bits 1 or 2):
    ///   24..32; XMM registers (bit 1): 160..416. Bytes 416..512 are
    ///   reserved or free for software: never touched;
    /// - the header: a save writes `XSTATE_BV` (512..520; the compacted form
    ///   also `XCOMP_BV`, 520..528), a restore reads all of it (512..576);
    /// - each requested component i >= 2 at its offset: CPUID's in the
    ///   standard format, packed (64-byte aligned where CPUID says so) in the
    ///   compacted one.
    pub(crate) fn ranges(&self, rfbm: u64, compacted: bool, restore: bool) -> Vec<(u64, u64)> {
        let rfbm = rfbm & self.xcr0;
        let mut v: Vec<(u64, u64)> = Vec::new();
        if rfbm & 1 != 0 {
            v.extend([(0, 24), (32, 128)]);
        }
        if rfbm & 0b110 != 0 {
            v.push((24, 8));
        }
        if rfbm & 0b10 != 0 {
            v.push((160, 256));
        }
        v.push(match (restore, compacted) {
            (true, _) => (512, 64),
            (false, true) => (512, 16),
            (false, false) => (512, 8),
        });
        let mut end = LEGACY_AND_HEADER;
        for i in (2..64).filter(|i| rfbm & (1 << i) != 0) {
            let c = self.components[i];
            if compacted {
                if c.align64 {
                    end = end.next_multiple_of(64);
                }
                v.push((end, u64::from(c.size)));
                end += u64::from(c.size);
            } else {
                v.push((u64::from(c.offset), u64::from(c.size)));
            }
        }
        v.sort_unstable();
        let mut merged: Vec<(u64, u64)> = Vec::with_capacity(v.len());
        for (off, len) in v {
            match merged.last_mut() {
                Some((o, l)) if *o + *l >= off => *l = (*l).max(off + len - *o),
                _ => merged.push((off, len)),
            }
        }
        merged
    }
}

/// A snapshot of one thread's extended state.
pub(crate) struct XState {
    area: Vec<u8>,
    layout: &'static Layout,
}

impl XState {
    /// A buffer of the size the extended state takes, to be filled by
    /// `PTRACE_GETREGSET` with [`NT_X86_XSTATE`].
    pub(crate) fn buffer() -> io::Result<Vec<u8>> {
        let layout = layout()
            .ok_or_else(|| io::Error::new(io::ErrorKind::Unsupported, "the CPU has no XSAVE"))?;
        Ok(vec![0u8; layout.size.max(LEGACY_AND_HEADER as usize)])
    }

    /// The extended state in `area`, a buffer from [`XState::buffer`]
    /// truncated to what the kernel filled.
    pub(crate) fn from_area(area: Vec<u8>) -> io::Result<XState> {
        let layout = layout()
            .ok_or_else(|| io::Error::new(io::ErrorKind::Unsupported, "the CPU has no XSAVE"))?;
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
    fn xsave_of_every_component_ends_at_cpuids_xcr0_size_and_skips_reserved_bytes() {
        let Some(l) = layout() else { return };
        let r = l.ranges(u64::MAX, false, false);
        assert_eq!(r[0], (0, 416), "{r:?}");
        assert_eq!(r[1], (512, 8), "{r:?}");
        let (off, len) = r[r.len() - 1];
        assert_eq!(off + len, l.size as u64, "{r:?}");
    }

    #[test]
    fn x87_and_sse_only_is_the_legacy_area_and_the_header() {
        let Some(l) = layout() else { return };
        assert_eq!(l.ranges(0b11, false, false), [(0, 416), (512, 8)]);
        assert_eq!(l.ranges(0b11, true, false), [(0, 416), (512, 16)]);
        assert_eq!(l.ranges(0b11, false, true), [(0, 416), (512, 64)]);
        assert_eq!(l.ranges(0b1, false, false), [(0, 24), (32, 128), (512, 8)]);
    }
}

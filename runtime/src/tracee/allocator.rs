//! The allocator entry points of the test process: the addresses native
//! code reaches when it calls `malloc`, `free`, ... (looked up once, with
//! `dlsym(RTLD_DEFAULT, ..)`: the definition the dynamic linker binds calls
//! to, glibc's or an interposed allocator's).

use std::sync::OnceLock;

use crate::trace::alloc::AllocFn;

/// Each entry point found, with its address; functions that are aliases of
/// an earlier one (same address) are left out.
pub(crate) fn entry_points() -> &'static [(AllocFn, u64)] {
    static ENTRIES: OnceLock<Vec<(AllocFn, u64)>> = OnceLock::new();
    ENTRIES.get_or_init(|| {
        let mut found: Vec<(AllocFn, u64)> = Vec::new();
        for f in AllocFn::ALL {
            let name = format!("{}\0", f.name());
            // SAFETY: RTLD_DEFAULT is a valid pseudo-handle and `name` is a
            // NUL-terminated string; dlsym only looks the symbol up.
            let addr = unsafe { libc::dlsym(libc::RTLD_DEFAULT, name.as_ptr().cast()) } as u64;
            if addr != 0 && !found.iter().any(|&(_, a)| a == addr) {
                found.push((f, addr));
            }
        }
        found
    })
}

/// `int3`.
const INT3: u8 = 0xcc;

/// The first byte of each entry point (in the order of [`entry_points`]),
/// if this process can write its own breakpoints: the code mappings that
/// hold the entry points were made writable (their whole mappings, so none
/// is split and `/proc/self/maps` keeps one line per library), `None` if
/// that failed (a security module that forbids writable code, say); the
/// supervisor then writes the breakpoints through `/proc/PID/mem` for each
/// call (two writes, about 6 µs).
///
/// Called with the call lock held (no call is active, so no breakpoint is
/// in place and the bytes read are the program's own).
pub(crate) fn self_arming() -> Option<&'static [u8]> {
    static ORIGINALS: OnceLock<Option<Vec<u8>>> = OnceLock::new();
    ORIGINALS
        .get_or_init(|| {
            let entries = entry_points();
            if entries.is_empty() {
                return None;
            }
            make_code_writable(entries).ok()?;
            let originals = entries
                .iter()
                // SAFETY: each address is a function's first byte in a mapped,
                // readable code mapping (dlsym found it there).
                .map(|&(_, addr)| unsafe { std::ptr::read_volatile(addr as *const u8) })
                .collect();
            Some(originals)
        })
        .as_deref()
}

/// Adds `PROT_WRITE` to each code mapping holding an entry point; undoes
/// what it did if one fails.
fn make_code_writable(entries: &[(AllocFn, u64)]) -> std::io::Result<()> {
    let maps = std::fs::read_to_string("/proc/self/maps")?;
    let mut mappings: Vec<(u64, u64, i32)> = Vec::new();
    for &(_, addr) in entries {
        let found = maps
            .lines()
            .filter_map(crate::trace::symbols::parse_maps_line)
            .find(|m| m.start <= addr && addr < m.end)
            .ok_or_else(|| std::io::Error::other(format!("no mapping holds {addr:#x}")))?;
        let prot = [
            (b'r', libc::PROT_READ),
            (b'w', libc::PROT_WRITE),
            (b'x', libc::PROT_EXEC),
        ]
        .iter()
        .filter(|&&(c, _)| found.perms.contains(&c))
        .fold(0, |p, &(_, bit)| p | bit);
        if !mappings.iter().any(|m| m.0 == found.start) {
            mappings.push((found.start, found.end, prot));
        }
    }
    for (i, &(start, end, prot)) in mappings.iter().enumerate() {
        // SAFETY: adding write access to a whole code mapping of this process
        // changes no byte and no other protection.
        let ret = unsafe {
            libc::mprotect(
                start as *mut libc::c_void,
                (end - start) as usize,
                prot | libc::PROT_WRITE,
            )
        };
        if ret != 0 {
            let err = std::io::Error::last_os_error();
            for &(start, end, prot) in &mappings[..i] {
                // SAFETY: puts back the protection read from the maps above.
                unsafe { libc::mprotect(start as *mut libc::c_void, (end - start) as usize, prot) };
            }
            return Err(err);
        }
    }
    Ok(())
}

/// Writes `int3` over the first byte of each entry point whose bit is set
/// in `mask` (bit `i`: the `i`-th of [`entry_points`]), or puts the
/// program's bytes back (`armed == false`). Does nothing unless
/// [`self_arming`] succeeded.
pub(crate) fn set_breakpoints(mask: u16, armed: bool) {
    let Some(originals) = self_arming() else {
        return;
    };
    for (i, (&(_, addr), &original)) in entry_points().iter().zip(originals).enumerate() {
        if i < 16 && mask & (1 << i) != 0 {
            let byte = if armed { INT3 } else { original };
            // A thread running the entry meanwhile executes its first byte or
            // the `int3`, which the supervisor continues in the trampoline.
            // SAFETY: `self_arming` made this code mapping writable.
            unsafe { std::ptr::write_volatile(addr as *mut u8, byte) };
        }
    }
}

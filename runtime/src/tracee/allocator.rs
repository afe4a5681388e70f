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

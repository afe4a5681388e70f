//! A file mapped read-only into memory, for reading an ELF file's symbols
//! without copying the whole file (a debug test binary is tens of MB, and
//! every test process reads it once to symbolize).

use std::fs::File;
use std::io;
use std::os::fd::AsRawFd;
use std::path::Path;

/// A read-only private mapping of a whole file; unmapped on drop.
pub(crate) struct MappedFile {
    ptr: *mut libc::c_void,
    len: usize,
}

impl MappedFile {
    /// Maps `path` read-only. An empty file maps to an empty slice.
    pub(crate) fn open(path: &Path) -> io::Result<MappedFile> {
        let file = File::open(path)?;
        let len = usize::try_from(file.metadata()?.len()).map_err(io::Error::other)?;
        if len == 0 {
            return Ok(MappedFile {
                ptr: std::ptr::null_mut(),
                len: 0,
            });
        }
        // SAFETY: a new read-only private mapping of an open file, at an
        // address of the kernel's choosing; it aliases no Rust object.
        let ptr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ,
                libc::MAP_PRIVATE,
                file.as_raw_fd(),
                0,
            )
        };
        if ptr == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        Ok(MappedFile { ptr, len })
    }

    /// The file's bytes.
    pub(crate) fn bytes(&self) -> &[u8] {
        if self.len == 0 {
            return &[];
        }
        // The files mapped are executables and libraries the process runs, which
        // are replaced (renamed over), not written in place, while in use; a file
        // truncated meanwhile would fault (SIGBUS), not alias.
        // SAFETY: the mapping is `len` readable bytes and lives as long as `self`.
        unsafe { std::slice::from_raw_parts(self.ptr.cast::<u8>(), self.len) }
    }
}

impl Drop for MappedFile {
    fn drop(&mut self) {
        if self.len != 0 {
            // SAFETY: unmapping the mapping made in `open`, which no slice
            // outlives (`bytes` borrows `self`).
            unsafe { libc::munmap(self.ptr, self.len) };
        }
    }
}

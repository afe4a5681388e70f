//! Instruction addresses to `symbol+offset`, in the process that owns them.
//!
//! The traced process is the one that formats traces, and the native code
//! runs in it, so symbolization reads `/proc/self/maps` and the ELF symbol
//! tables of the mapped files (cached per file). Nothing here runs during a
//! traced call.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, OnceLock};

use object::{Object, ObjectSegment, ObjectSymbol, SymbolKind};

/// Sorted `(address, size, name)` of a file's function symbols.
type SymbolTable = Vec<(u64, u64, String)>;

struct FileSymbols {
    /// `(file offset, file size, vaddr)` of each loadable segment.
    segments: Vec<(u64, u64, u64)>,
    symbols: SymbolTable,
}

fn cache() -> &'static Mutex<HashMap<PathBuf, Option<FileSymbols>>> {
    static CACHE: OnceLock<Mutex<HashMap<PathBuf, Option<FileSymbols>>>> = OnceLock::new();
    CACHE.get_or_init(Default::default)
}

fn load(path: &Path) -> Option<FileSymbols> {
    let data = std::fs::read(path).ok()?;
    let file = object::File::parse(&*data).ok()?;
    let segments = file
        .segments()
        .map(|s| {
            let (off, size) = s.file_range();
            (off, size, s.address())
        })
        .collect();
    let mut symbols: SymbolTable = file
        .symbols()
        .chain(file.dynamic_symbols())
        .filter(|s| s.kind() == SymbolKind::Text && s.address() != 0)
        .filter_map(|s| Some((s.address(), s.size(), s.name().ok()?.to_owned())))
        .collect();
    symbols.sort();
    symbols.dedup_by_key(|s| s.0);
    Some(FileSymbols { segments, symbols })
}

/// One line of `/proc/PID/maps`.
pub(crate) struct MapEntry<'a> {
    pub(crate) start: u64,
    pub(crate) end: u64,
    /// `rwxp`-style permissions.
    pub(crate) perms: &'a [u8],
    pub(crate) offset: u64,
    /// The mapped file, or a pseudo-name like `[heap]`, or empty.
    pub(crate) path: &'a str,
}

/// Parses one line of `/proc/PID/maps`.
pub(crate) fn parse_maps_line(line: &str) -> Option<MapEntry<'_>> {
    let mut fields = line.split_whitespace();
    let (lo, hi) = fields.next()?.split_once('-')?;
    let perms = fields.next()?.as_bytes();
    let offset = u64::from_str_radix(fields.next()?, 16).ok()?;
    Some(MapEntry {
        start: u64::from_str_radix(lo, 16).ok()?,
        end: u64::from_str_radix(hi, 16).ok()?,
        perms,
        offset,
        path: fields.nth(2).unwrap_or(""),
    })
}

/// The mapping of this process that contains `ip`: `(start, file offset, path)`.
fn mapping_of(maps_path: &str, ip: u64) -> Option<(u64, u64, PathBuf)> {
    let maps = std::fs::read_to_string(maps_path).ok()?;
    maps.lines().filter_map(parse_maps_line).find_map(|m| {
        (m.start <= ip && ip < m.end && m.path.starts_with('/'))
            .then(|| (m.start, m.offset, PathBuf::from(m.path)))
    })
}

/// `symbol+0xoff` for an instruction address of this process, or the bare
/// address when no symbol covers it.
pub fn describe_ip(ip: u64) -> String {
    symbolize(ip).unwrap_or_else(|| format!("{ip:#x}"))
}

/// `symbol+0xoff` for an instruction address of this process.
pub fn symbolize(ip: u64) -> Option<String> {
    symbolize_with("/proc/self/maps", ip)
}

/// `symbol+0xoff` for an instruction address of process `pid`.
pub(crate) fn symbolize_in(pid: libc::pid_t, ip: u64) -> Option<String> {
    symbolize_with(&format!("/proc/{pid}/maps"), ip)
}

fn symbolize_with(maps_path: &str, ip: u64) -> Option<String> {
    let (start, offset, path) = mapping_of(maps_path, ip)?;
    let file_off = ip - start + offset;
    let mut cache = cache()
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    let syms = cache
        .entry(path.clone())
        .or_insert_with(|| load(&path))
        .as_ref()?;
    let vaddr = syms
        .segments
        .iter()
        .find(|&&(off, size, _)| off <= file_off && file_off < off + size)
        .map(|&(off, _, vaddr)| file_off - off + vaddr)?;
    let idx = syms
        .symbols
        .partition_point(|s| s.0 <= vaddr)
        .checked_sub(1)?;
    let (addr, size, name) = &syms.symbols[idx];
    if *size != 0 && vaddr >= addr + size {
        return None;
    }
    Some(format!("{name}+{:#x}", vaddr - addr))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[inline(never)]
    #[unsafe(no_mangle)]
    extern "C" fn traced_ffi_symbols_probe() -> u64 {
        std::hint::black_box(7)
    }

    #[test]
    fn symbolize_names_a_function_of_this_binary() {
        let ip = traced_ffi_symbols_probe as *const () as u64;
        assert_eq!(
            symbolize(ip + 1).as_deref(),
            Some("traced_ffi_symbols_probe+0x1")
        );
    }
}

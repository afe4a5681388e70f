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
    let data = super::mapped::MappedFile::open(path).ok()?;
    let file = object::File::parse(data.bytes()).ok()?;
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

/// The virtual address (as the file's symbols and DWARF see it) of file
/// offset `file_off` of `path`.
fn file_vaddr(path: &Path, file_off: u64) -> Option<u64> {
    let mut cache = cache()
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    let syms = cache
        .entry(path.to_path_buf())
        .or_insert_with(|| load(path))
        .as_ref()?;
    syms.segments
        .iter()
        .find(|&&(off, size, _)| off <= file_off && file_off < off + size)
        .map(|&(off, _, vaddr)| file_off - off + vaddr)
}

fn symbolize_with(maps_path: &str, ip: u64) -> Option<String> {
    let (name, off) = symbol_with(maps_path, ip)?;
    Some(format!("{name}+{off:#x}"))
}

/// The offset of `ip` into the function symbol that covers it, in process
/// `pid`.
pub(crate) fn symbol_offset_in(pid: libc::pid_t, ip: u64) -> Option<u64> {
    symbol_with(&format!("/proc/{pid}/maps"), ip).map(|(_, off)| off)
}

/// The demangled name of the function symbol covering `ip` and the offset
/// of `ip` in it.
fn symbol_with(maps_path: &str, ip: u64) -> Option<(String, u64)> {
    let (start, offset, path) = mapping_of(maps_path, ip)?;
    let vaddr = file_vaddr(&path, ip - start + offset)?;
    let cache = cache()
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    let syms = cache.get(&path)?.as_ref()?;
    let idx = syms
        .symbols
        .partition_point(|s| s.0 <= vaddr)
        .checked_sub(1)?;
    let (addr, size, name) = &syms.symbols[idx];
    if *size != 0 && vaddr >= addr + size {
        return None;
    }
    Some((demangle(name), vaddr - addr))
}

/// A symbol as a person reads it: Rust (legacy and v0 manglings, without
/// the hash) through `rustc-demangle`, C++ (Itanium) through
/// `cpp_demangle`; any other name as it is.
pub(crate) fn demangle(name: &str) -> String {
    if let Ok(d) = rustc_demangle::try_demangle(name) {
        return format!("{d:#}");
    }
    if name.starts_with("_Z")
        && let Ok(sym) = cpp_demangle::Symbol::new(name)
        && let Ok(text) = sym.demangle()
    {
        return text;
    }
    name.to_owned()
}

/// The DWARF line tables and inlining of one mapped file, loaded at the
/// first lookup in it; `None` when it has no debug info.
struct FileLines {
    loader: Option<addr2line::Loader>,
    /// Source locations already resolved, by address in the file.
    resolved: HashMap<u64, Option<String>>,
}

// SAFETY: the loader is only ever used with the cache's mutex held, by one
// thread at a time; it owns its data (an arena of the file's sections).
unsafe impl Send for FileLines {}

fn lines_cache() -> &'static Mutex<HashMap<PathBuf, FileLines>> {
    static CACHE: OnceLock<Mutex<HashMap<PathBuf, FileLines>>> = OnceLock::new();
    CACHE.get_or_init(Default::default)
}

/// The last two components of a source path (`c/basic.c`): enough to find
/// the file, the same on every machine.
fn short_path(path: &str) -> &str {
    let mut slashes = path.rmatch_indices('/');
    match (slashes.next(), slashes.next()) {
        (Some(_), Some((i, _))) => &path[i + 1..],
        _ => path,
    }
}

/// The source location of an instruction address of this process, from the
/// DWARF debug info of the file that maps it, with inlined frames
/// innermost first: `MEM_write64 (common/mem.h:223) inlined into
/// ZSTD_compress (compress/zstd_compress.c:2710)`. `None` without debug
/// info. Cached per address; nothing here runs during a traced call.
pub fn source_location(ip: u64) -> Option<String> {
    let (start, offset, path) = mapping_of("/proc/self/maps", ip)?;
    let vaddr = file_vaddr(&path, ip - start + offset)?;
    let mut cache = lines_cache()
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    let file = cache.entry(path.clone()).or_insert_with(|| FileLines {
        loader: addr2line::Loader::new(&path).ok(),
        resolved: HashMap::new(),
    });
    if let Some(known) = file.resolved.get(&vaddr) {
        return known.clone();
    }
    let found = file.loader.as_ref().and_then(|l| frames_at(l, vaddr));
    file.resolved.insert(vaddr, found.clone());
    found
}

/// `function (file:line)` for each frame at `vaddr`, joined innermost first.
fn frames_at(loader: &addr2line::Loader, vaddr: u64) -> Option<String> {
    let mut frames = loader.find_frames(vaddr).ok()?;
    let mut parts = Vec::new();
    while let Ok(Some(frame)) = frames.next() {
        let name = frame
            .function
            .as_ref()
            .and_then(|f| f.demangle().ok().map(|n| n.into_owned()))
            .unwrap_or_else(|| "?".to_owned());
        let place = match frame.location {
            Some(addr2line::Location {
                file: Some(file),
                line: Some(line),
                ..
            }) => format!("{}:{line}", short_path(file)),
            Some(addr2line::Location {
                file: Some(file), ..
            }) => short_path(file).to_owned(),
            _ => "?".to_owned(),
        };
        parts.push(format!("{name} ({place})"));
    }
    (!parts.is_empty()).then(|| parts.join(" inlined into "))
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
    fn legacy_rust_symbols_are_demangled_without_their_hash() {
        assert_eq!(
            demangle("_ZN4core3ptr14read_unaligned17hc4f792e3faa1a5caE"),
            "core::ptr::read_unaligned"
        );
        assert_eq!(
            demangle(
                "_ZN49_$LT$alloc..vec..Vec$LT$T$GT$$u20$as$u20$Drop$GT$4drop17h0123456789abcdefE"
            ),
            "<alloc::vec::Vec<T> as Drop>::drop"
        );
        assert_eq!(demangle("memcpy"), "memcpy");
        assert_eq!(demangle("_ZN3foo3barE"), "foo::bar");
    }

    #[test]
    fn v0_rust_and_cpp_symbols_are_demangled() {
        assert_eq!(
            demangle("_RNvNtCs1234_7mycrate3foo3bar"),
            "mycrate::foo::bar"
        );
        assert_eq!(
            demangle("_ZN9namespace5ClassC2Ev"),
            "namespace::Class::Class()"
        );
        assert_eq!(demangle("_Z3addii"), "add(int, int)");
    }

    #[test]
    fn source_location_of_a_function_of_this_binary_names_this_file() {
        let ip = traced_ffi_symbols_probe as *const () as u64;
        let loc = source_location(ip).unwrap_or_default();
        assert!(
            loc.starts_with("traced_ffi_symbols_probe (trace/symbols.rs:"),
            "{loc}"
        );
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

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
    let data = crate::mapped::MappedFile::open(path).ok()?;
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
    Some(format!("{}+{:#x}", demangle(name), vaddr - addr))
}

/// A legacy-mangled Rust symbol (`_ZN4core3ptr4read17h0123456789abcdefE`)
/// as its path (`core::ptr::read`), without the hash; any other name as it
/// is. Covers the escapes rustc uses (`$LT$`, `$u20$`, `..`, ...).
pub(crate) fn demangle(name: &str) -> String {
    let Some(body) = name
        .strip_prefix("_ZN")
        .and_then(|b| b.split(".llvm.").next())
        .and_then(|b| b.strip_suffix('E'))
    else {
        return name.to_owned();
    };
    let mut parts: Vec<&str> = Vec::new();
    let mut rest = body;
    while !rest.is_empty() {
        let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
        let Some(len) = rest.get(..digits).and_then(|d| d.parse::<usize>().ok()) else {
            return name.to_owned();
        };
        let Some(part) = rest.get(digits..digits + len) else {
            return name.to_owned();
        };
        parts.push(part);
        rest = &rest[digits + len..];
    }
    let is_hash = |p: &str| {
        p.len() == 17 && p.starts_with('h') && p[1..].bytes().all(|b| b.is_ascii_hexdigit())
    };
    if parts.last().is_some_and(|p| is_hash(p)) {
        parts.pop();
    }
    let unescaped: Vec<String> = parts.iter().map(|p| unescape(p)).collect();
    unescaped.join("::")
}

fn unescape(part: &str) -> String {
    const ESCAPES: [(&str, &str); 15] = [
        ("$SP$", "@"),
        ("$BP$", "*"),
        ("$RF$", "&"),
        ("$LT$", "<"),
        ("$GT$", ">"),
        ("$LP$", "("),
        ("$RP$", ")"),
        ("$C$", ","),
        ("$u20$", " "),
        ("$u22$", "\""),
        ("$u27$", "'"),
        ("$u5b$", "["),
        ("$u5d$", "]"),
        ("$u7b$", "{"),
        ("$u7d$", "}"),
    ];
    // A leading `$` is written `_$`.
    let mut out = match part.strip_prefix('_') {
        Some(rest) if rest.starts_with('$') => rest.to_owned(),
        _ => part.to_owned(),
    };
    for (from, to) in ESCAPES {
        out = out.replace(from, to);
    }
    out.replace("..", "::")
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
    fn symbolize_names_a_function_of_this_binary() {
        let ip = traced_ffi_symbols_probe as *const () as u64;
        assert_eq!(
            symbolize(ip + 1).as_deref(),
            Some("traced_ffi_symbols_probe+0x1")
        );
    }
}

//! Which language runtime a process runs, from its executable and the
//! libraries it maps: a JVM maps `libjvm.so`, CPython `libpython*.so` (or is
//! a `python*` executable), Node.js is `node` or maps `libnode.so`, a Go
//! binary has a `.go.buildinfo` section, and rustc writes its version into
//! `.comment`. The doctor's remedies then speak to that runtime only.

use std::fs::File;
use std::io::Read;
use std::path::Path;

use object::{Object, ObjectSection};

use crate::doctor::Language;

/// `/proc/PID/maps` is read up to this size: the runtime libraries are mapped
/// early, and a JVM's map can run to megabytes.
const MAPS_CAP: u64 = 1 << 20;
/// Executables larger than this are not parsed.
const EXE_CAP: u64 = 512 << 20;

/// The runtime of the process whose `/proc` directory is `proc_pid`, if
/// recognised.
pub fn detect(proc_pid: &Path) -> Option<Language> {
    let exe_name = std::fs::read_link(proc_pid.join("exe"))
        .ok()
        .and_then(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()));
    if let Some(name) = exe_name.as_deref() {
        if let Some(r) = by_executable_name(name) {
            return Some(r);
        }
    }
    if let Ok(mut f) = File::open(proc_pid.join("maps")) {
        let mut maps = String::new();
        if (&mut f).take(MAPS_CAP).read_to_string(&mut maps).is_ok() {
            if let Some(r) = by_mapped_libraries(&maps) {
                return Some(r);
            }
        }
    }
    by_elf_sections(&proc_pid.join("exe"))
}

/// `java`, `python3.11`, `node`: the executable's own name.
pub fn by_executable_name(name: &str) -> Option<Language> {
    if name == "java" {
        Some(Language::Java)
    } else if name.starts_with("python") {
        Some(Language::Python)
    } else if name == "node" || name == "nodejs" {
        Some(Language::Node)
    } else {
        None
    }
}

/// The runtime's shared library among a `/proc/PID/maps` text's paths.
pub fn by_mapped_libraries(maps: &str) -> Option<Language> {
    maps.lines().filter_map(|l| l.rsplit('/').next()).find_map(|lib| {
        if lib.starts_with("libjvm.so") {
            Some(Language::Java)
        } else if lib.starts_with("libpython") {
            Some(Language::Python)
        } else if lib.starts_with("libnode.so") {
            Some(Language::Node)
        } else {
            None
        }
    })
}

fn by_elf_sections(exe: &Path) -> Option<Language> {
    let file = File::open(exe).ok()?;
    if file.metadata().ok()?.len() > EXE_CAP {
        return None;
    }
    let mut bytes = Vec::new();
    file.take(EXE_CAP).read_to_end(&mut bytes).ok()?;
    let elf = object::File::parse(bytes.as_slice()).ok()?;
    if elf.section_by_name(".go.buildinfo").is_some() {
        return Some(Language::Go);
    }
    let comment = elf.section_by_name(".comment")?.data().ok()?;
    comment
        .split(|b| *b == 0)
        .any(|s| s.starts_with(b"rustc version"))
        .then_some(Language::Rust)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_libraries() {
        assert_eq!(by_executable_name("python3.11"), Some(Language::Python));
        assert_eq!(by_executable_name("nginx"), None);
        let jvm = "7f00-7f01 r-xp 00000000 08:01 123 /usr/lib/jvm/java-17/lib/server/libjvm.so\n";
        assert_eq!(by_mapped_libraries(jvm), Some(Language::Java));
        assert_eq!(by_mapped_libraries("7f00-7f01 r-xp 0 0:0 0 /usr/lib/libc.so.6\n"), None);
    }

    #[test]
    fn this_test_binary_is_rust() {
        assert_eq!(detect(Path::new("/proc/self")), Some(Language::Rust));
    }
}

//! Reading files a user names, safely.
//!
//! Every path twscope reads may be something other than a file: a FIFO that
//! blocks `open()` until a writer comes, `/dev/zero` that never ends, a device
//! node. [`open_nonblocking`] opens without waiting for a FIFO's writer, and
//! [`read_regular`] refuses anything but a regular file and stops at a size
//! cap, so a mistyped or hostile path costs a clear error, never a hang or
//! memory. (`/proc` and `/proc/sys` files are regular files with size 0; they
//! pass and are read to their end.)

use std::fs::File;
use std::io::{self, Read};
use std::os::unix::fs::{FileTypeExt, OpenOptionsExt};
use std::path::Path;

/// Cap for configuration files (web config, certificates, keys).
pub const CONFIG_FILE_CAP: u64 = 1 << 20;

/// Cap for single-value kernel files (`/proc/sys/...`, `/proc/net/snmp`, ...).
pub const KERNEL_FILE_CAP: u64 = 1 << 20;

/// Opens `path` for reading without blocking on a FIFO (`O_NONBLOCK`) and
/// without making a terminal our controlling one (`O_NOCTTY`).
pub fn open_nonblocking(path: &Path) -> io::Result<File> {
    std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_NOCTTY)
        .open(path)
}

/// What kind of file a metadata describes, in words for an error message
/// ("a FIFO", "a character device", ...).
pub fn kind_of(meta: &std::fs::Metadata) -> &'static str {
    let t = meta.file_type();
    if t.is_file() {
        "a regular file"
    } else if t.is_dir() {
        "a directory"
    } else if t.is_fifo() {
        "a FIFO"
    } else if t.is_char_device() {
        "a character device"
    } else if t.is_block_device() {
        "a block device"
    } else if t.is_socket() {
        "a socket"
    } else if t.is_symlink() {
        "a symbolic link"
    } else {
        "not a regular file"
    }
}

/// Reads a regular file as UTF-8 text, at most `cap` bytes.
///
/// Errors (kind [`io::ErrorKind::InvalidInput`] for the last three) when the
/// path cannot be opened, is not a regular file ("is a FIFO, not a regular
/// file"), is larger than `cap`, or is not UTF-8. The message never quotes the
/// content.
pub fn read_regular(path: &Path, cap: u64) -> io::Result<String> {
    read_opened(open_nonblocking(path)?, cap)
}

/// [`read_regular`] of `relative` as seen from inside another process's root
/// (`/proc/PID/root`): symbolic links resolve against that root, as they do
/// for the process itself (`openat2(RESOLVE_IN_ROOT)`, Linux 5.6). Opening
/// `/proc/PID/root/var/run/…` plainly would follow an absolute link such as
/// `/var/run → /run` out into the caller's own root.
pub fn read_in_root(root: &Path, relative: &Path, cap: u64) -> io::Result<String> {
    use std::ffi::CString;
    use std::os::fd::{AsRawFd, FromRawFd};
    use std::os::unix::ffi::OsStrExt;
    let root = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_PATH | libc::O_DIRECTORY)
        .open(root)?;
    let relative = CString::new(relative.as_os_str().as_bytes())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "a path with a NUL byte"))?;
    // SAFETY: an all-zero open_how is a valid value of a plain C struct.
    let mut how: libc::open_how = unsafe { std::mem::zeroed() };
    how.flags = (libc::O_RDONLY | libc::O_NONBLOCK | libc::O_NOCTTY | libc::O_CLOEXEC) as u64;
    how.resolve = libc::RESOLVE_IN_ROOT | libc::RESOLVE_NO_MAGICLINKS;
    // SAFETY: openat2 reads the NUL-terminated path and the open_how we own,
    // on a directory descriptor we own; a descriptor it returns is ours.
    let fd = unsafe {
        libc::syscall(
            libc::SYS_openat2,
            root.as_raw_fd(),
            relative.as_ptr(),
            &how as *const libc::open_how,
            std::mem::size_of::<libc::open_how>(),
        )
    };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: a fresh descriptor from openat2, owned by nothing else.
    read_opened(unsafe { File::from_raw_fd(fd as i32) }, cap)
}

/// The checks and the capped read of [`read_regular`], on an opened file.
fn read_opened(file: File, cap: u64) -> io::Result<String> {
    let meta = file.metadata()?;
    if !meta.file_type().is_file() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("it is {}, not a regular file", kind_of(&meta)),
        ));
    }
    let mut bytes = Vec::new();
    // One byte past the cap tells "exactly at the cap" from "larger".
    file.take(cap + 1).read_to_end(&mut bytes)?;
    if bytes.len() as u64 > cap {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("it is larger than {} KiB, too large for this file", cap / 1024),
        ));
    }
    String::from_utf8(bytes).map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "it is not UTF-8 text"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn regular_files_are_read_and_others_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.yml");
        std::fs::write(&path, "x: 1\n").unwrap();
        assert_eq!(read_regular(&path, 100).unwrap(), "x: 1\n");
        // /proc files report size 0 yet have content.
        assert!(read_regular(Path::new("/proc/sys/net/ipv4/ip_local_port_range"), 100).is_ok());

        let err = read_regular(&path, 3).unwrap_err();
        assert!(err.to_string().contains("larger than"), "{err}");
        assert!(!err.to_string().contains("x: 1"));

        let err = read_regular(Path::new("/dev/zero"), 1 << 20).unwrap_err();
        assert!(err.to_string().contains("character device"), "{err}");
        let err = read_regular(dir.path(), 100).unwrap_err();
        assert!(
            err.to_string().contains("directory") || err.raw_os_error() == Some(libc::EISDIR),
            "{err}"
        );

        // A FIFO with no writer: open must not block, and it is refused.
        let fifo = dir.path().join("fifo");
        let c = std::ffi::CString::new(fifo.as_os_str().as_encoded_bytes()).unwrap();
        // SAFETY: a valid NUL-terminated path.
        assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
        let err = read_regular(&fifo, 100).unwrap_err();
        assert!(err.to_string().contains("FIFO"), "{err}");

        std::fs::write(&path, [0xff, 0xfe]).unwrap();
        assert!(read_regular(&path, 100).unwrap_err().to_string().contains("UTF-8"));
    }
}

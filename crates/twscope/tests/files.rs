//! Special files where twscope expects a namespace or a sysctl.d file: the
//! real binary must refuse each at once, with one line naming what it is, and
//! leave it as it was — never hang on a FIFO, never replace a device node.
//!
//! The `--netns` refusals need no privilege. The `tune --persist` ones need a
//! namespace with something to tune (root, iproute2) and, for the device node,
//! `mknod`: they skip with a reason otherwise, unless `TWSCOPE_REQUIRE_ALL=1`
//! (CI) makes that a failure.

use std::ffi::CString;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use twscope_lab::{require_root, Netns};

use crate::util::{mkfifo, netns_with_ports, output_within, refused, stderr, twscope_command};

/// A directory of its own under the system temporary directory, removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new(test: &str) -> TempDir {
        let path = std::env::temp_dir().join(format!("twscope-files-{test}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&path);
        std::fs::create_dir_all(&path).unwrap();
        TempDir(path)
    }

    fn join(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// `twscope ARGS…`, killed after `limit`: a regression that blocks fails the
/// test instead of hanging it.
fn twscope_within(args: &[&str], limit: Duration) -> std::process::Output {
    output_within(twscope_command().args(args), limit)
}

/// Runs `twscope ARGS…`, expects exit 3 and one line on stderr holding every
/// one of `mentions`; returns the line.
fn refused_within(args: &[&str], mentions: &[&str]) -> String {
    refused(&twscope_within(args, Duration::from_secs(10)), mentions)
}

#[test]
fn a_fifo_as_netns_is_refused_at_once() {
    let dir = TempDir::new("netns-fifo");
    let fifo = dir.join("ns");
    mkfifo(&fifo);
    let path = fifo.to_str().unwrap();
    for command in ["status", "doctor", "tune"] {
        let started = Instant::now();
        refused_within(
            &[command, "--netns", path],
            &[&format!("{path} is a FIFO, not a network namespace file")],
        );
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "{command} took {:?}",
            started.elapsed()
        );
    }
    assert!(std::fs::metadata(&fifo).unwrap().file_type().is_fifo());
}

#[test]
fn devices_and_directories_as_netns_are_refused() {
    let dir = TempDir::new("netns-other");
    refused_within(
        &["status", "--netns", "/dev/zero"],
        &["/dev/zero is a character device, not a network namespace file"],
    );
    let path = dir.0.to_str().unwrap();
    refused_within(
        &["status", "--netns", path],
        &[&format!("{path} is a directory, not a network namespace file")],
    );
    refused_within(
        &["status", "--netns", "/proc/self/ns/mnt"],
        &["is a mount namespace, not a network namespace file"],
    );
}

#[test]
fn a_stale_named_namespace_says_how_to_remove_it() {
    if !require_root("a_stale_named_namespace_says_how_to_remove_it") {
        return;
    }
    // What `ip netns add` leaves when its bind mount is gone: an empty file.
    let name = format!("twscope-stale-{}", std::process::id());
    std::fs::create_dir_all("/run/netns").unwrap();
    let path = Path::new("/run/netns").join(&name);
    std::fs::write(&path, "").unwrap();
    struct Remove<'a>(&'a Path);
    impl Drop for Remove<'_> {
        fn drop(&mut self) {
            let _ = std::fs::remove_file(self.0);
        }
    }
    let _remove = Remove(&path);
    refused_within(
        &["status", "--netns", &name],
        &[
            "is a regular file, not a network namespace file",
            &format!("ip netns del {name}"),
        ],
    );
}

/// A namespace whose port range `tune` wants widened, so `--persist` writes.
fn namespace_to_tune() -> Netns {
    netns_with_ports("files", "40000 40999")
}

/// Whether `mknod` of a character device works here (root, and no seccomp
/// or container rule against it); makes `path` if so.
fn mknod_null(path: &Path) -> bool {
    let path = CString::new(path.as_os_str().as_encoded_bytes()).unwrap();
    // SAFETY: a valid NUL-terminated path; major 1 minor 3 is /dev/null's.
    unsafe { libc::mknod(path.as_ptr(), libc::S_IFCHR | 0o600, libc::makedev(1, 3)) == 0 }
}

#[test]
fn tune_persist_refuses_special_files_and_leaves_them_alone() {
    if !require_root("tune_persist_refuses_special_files_and_leaves_them_alone") {
        return;
    }
    let ns = namespace_to_tune();
    let dir = TempDir::new("persist-special");
    let tune = |path: &Path, mentions: &[&str]| {
        let path = path.to_str().unwrap();
        let line = refused_within(&["tune", "--persist", path, "--netns", ns.name()], mentions);
        assert!(line.contains(path) && line.contains("/etc/sysctl.d/"), "{line}");
    };

    let fifo = dir.join("90-twscope.conf");
    mkfifo(&fifo);
    tune(&fifo, &["is a FIFO, not a regular file"]);
    assert!(
        std::fs::symlink_metadata(&fifo).unwrap().file_type().is_fifo(),
        "the FIFO was replaced"
    );

    let device = dir.join("null");
    if mknod_null(&device) {
        tune(&device, &["is a character device, not a regular file"]);
        let meta = std::fs::symlink_metadata(&device).unwrap();
        assert!(meta.file_type().is_char_device(), "the device node was replaced");
        assert_eq!(meta.rdev(), libc::makedev(1, 3));
    } else {
        twscope_lab::testing::skip(
            "tune_persist_refuses_special_files_and_leaves_them_alone (device node part)",
            &format!("mknod of a character device ({})", std::io::Error::last_os_error()),
        );
    }

    let subdir = dir.join("sysctl.d");
    std::fs::create_dir(&subdir).unwrap();
    tune(&subdir, &["is a directory, not a regular file"]);
    assert_eq!(std::fs::read_dir(&subdir).unwrap().count(), 0);

    // A link to a device is as bad as the device.
    let link = dir.join("link.conf");
    std::os::unix::fs::symlink("/dev/null", &link).unwrap();
    tune(
        &link,
        &["is a symbolic link to /dev/null, a character device, not a regular file"],
    );
    assert!(std::fs::symlink_metadata("/dev/null")
        .unwrap()
        .file_type()
        .is_char_device());

    // Nothing else appeared: no temporary file left behind.
    let mut names: Vec<String> = std::fs::read_dir(&dir.0)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    let mut expected = vec!["90-twscope.conf", "link.conf", "sysctl.d"];
    if device.exists() {
        expected.insert(2, "null");
    }
    assert_eq!(names, expected);
}

#[test]
fn tune_persist_writes_through_a_link_to_a_regular_file() {
    if !require_root("tune_persist_writes_through_a_link_to_a_regular_file") {
        return;
    }
    let ns = namespace_to_tune();
    let dir = TempDir::new("persist-link");
    std::fs::create_dir(dir.join("managed")).unwrap();
    let target = dir.join("managed/90-twscope.conf");
    std::fs::write(&target, "# old\n").unwrap();
    let link = dir.join("90-twscope.conf");
    std::os::unix::fs::symlink("managed/90-twscope.conf", &link).unwrap();

    let out = twscope_within(
        &["tune", "--persist", link.to_str().unwrap(), "--netns", ns.name()],
        Duration::from_secs(20),
    );
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(
        std::fs::symlink_metadata(&link).unwrap().file_type().is_symlink(),
        "the link was replaced by a file"
    );
    assert_eq!(std::fs::read_link(&link).unwrap(), Path::new("managed/90-twscope.conf"));
    let text = std::fs::read_to_string(&target).unwrap();
    assert!(text.contains("net.ipv4.ip_local_port_range = 1024 65535\n"), "{text}");
    assert!(!text.contains("# old"), "{text}");
    // The temporary file was made next to the target, and is gone.
    assert_eq!(std::fs::read_dir(dir.join("managed")).unwrap().count(), 1);
    assert_eq!(std::fs::read_dir(&dir.0).unwrap().count(), 2);
}

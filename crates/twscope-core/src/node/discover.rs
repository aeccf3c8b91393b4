//! Every network namespace on the host, deduplicated by nsfs inode: those of
//! processes (`/proc/PID/ns/net`) and those held only by a bind mount (`ip
//! netns add`'s `/run/netns/*`, CNI's `/var/run/netns/cni-*`, Docker's
//! `/var/run/docker/netns/*`, any nsfs mount in the mount table).

use std::collections::BTreeMap;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

/// One namespace found, and how to reach it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Found {
    /// The nsfs inode: the namespace's identity.
    pub inode: u64,
    /// Processes in it, lowest PID first.
    pub pids: Vec<u32>,
    /// Bind mounts of it (mount points, reachable from here).
    pub mounts: Vec<PathBuf>,
}

impl Found {
    /// Files to `setns()` into it: its processes' namespace links (a few),
    /// then its mounts.
    pub fn paths(&self, proc_root: &Path) -> Vec<PathBuf> {
        let links = self
            .pids
            .iter()
            .take(8)
            .map(|pid| proc_root.join(pid.to_string()).join("ns/net"));
        links.chain(self.mounts.iter().cloned()).collect()
    }
}

/// What a walk of `/proc` and the mount table found.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Discovery {
    /// Every namespace, by inode.
    pub namespaces: Vec<Found>,
    /// Processes whose namespace link could not be read (another user's,
    /// without `CAP_SYS_PTRACE`): their namespaces may be missing.
    pub unreadable: usize,
}

/// Walks `proc_root` (normally `/proc`) and the mount tables.
pub fn discover(proc_root: &Path) -> Discovery {
    let mut by_inode: BTreeMap<u64, Found> = BTreeMap::new();
    let mut unreadable = 0;
    let entries = std::fs::read_dir(proc_root).into_iter().flatten().flatten();
    for entry in entries {
        let Some(pid) = entry.file_name().to_str().and_then(|n| n.parse::<u32>().ok()) else {
            continue;
        };
        match std::fs::metadata(entry.path().join("ns/net")) {
            Ok(meta) => found(&mut by_inode, meta.ino()).pids.push(pid),
            // The process exited meanwhile: nothing to count.
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(_) => unreadable += 1,
        }
    }
    for (inode, mount) in nsfs_mounts(proc_root) {
        let f = found(&mut by_inode, inode);
        if !f.mounts.contains(&mount) {
            f.mounts.push(mount);
        }
    }
    let mut namespaces: Vec<Found> = by_inode.into_values().collect();
    for f in &mut namespaces {
        f.pids.sort_unstable();
    }
    Discovery { namespaces, unreadable }
}

fn found(by_inode: &mut BTreeMap<u64, Found>, inode: u64) -> &mut Found {
    by_inode.entry(inode).or_insert_with(|| Found {
        inode,
        pids: Vec::new(),
        mounts: Vec::new(),
    })
}

/// Network-namespace bind mounts: nsfs entries of our mount table, and of
/// PID 1's when it lives in another mount namespace (a container with
/// `hostPID`: the host's `/run/netns` is then reached through
/// `/proc/1/root`).
fn nsfs_mounts(proc_root: &Path) -> Vec<(u64, PathBuf)> {
    let mut mounts = Vec::new();
    if let Ok(text) = std::fs::read_to_string(proc_root.join("self/mountinfo")) {
        mounts.extend(parse_mountinfo(&text, Path::new("/")));
    }
    let ours = std::fs::metadata(proc_root.join("self/ns/mnt")).map(|m| m.ino());
    let init = std::fs::metadata(proc_root.join("1/ns/mnt")).map(|m| m.ino());
    if let (Ok(ours), Ok(init)) = (ours, init) {
        if ours != init {
            if let Ok(text) = std::fs::read_to_string(proc_root.join("1/mountinfo")) {
                mounts.extend(parse_mountinfo(&text, &proc_root.join("1/root")));
            }
        }
    }
    mounts
}

/// `(inode, path under root)` of every nsfs mount of a network namespace in
/// a `/proc/PID/mountinfo` text (`proc(5)`: `… root mount-point … - fstype
/// source …`, root `net:[INODE]` for nsfs).
pub fn parse_mountinfo(text: &str, root: &Path) -> Vec<(u64, PathBuf)> {
    text.lines()
        .filter_map(|line| {
            let (left, right) = line.split_once(" - ")?;
            if right.split(' ').next()? != "nsfs" {
                return None;
            }
            let mut fields = left.split(' ');
            let ns_root = fields.nth(3)?;
            let mount_point = fields.next()?;
            let inode = ns_root.strip_prefix("net:[")?.strip_suffix(']')?.parse().ok()?;
            let relative = unescape(mount_point);
            Some((inode, root.join(relative.trim_start_matches('/'))))
        })
        .collect()
}

/// Undoes mountinfo's octal escapes (`\040` for a space).
fn unescape(field: &str) -> String {
    let bytes = field.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let octal = |at: usize| {
            bytes
                .get(at)
                .filter(|b| (b'0'..=b'7').contains(b))
                .map(|b| u32::from(b - b'0'))
        };
        let value = match (bytes[i], octal(i + 1), octal(i + 2), octal(i + 3)) {
            (b'\\', Some(a), Some(b), Some(c)) => u8::try_from(a * 64 + b * 8 + c).ok(),
            _ => None,
        };
        if let Some(value) = value {
            out.push(value);
            i += 4;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nsfs_mounts_of_network_namespaces_only() {
        let text = "\
22 1 8:1 / / rw,relatime - ext4 /dev/sda1 rw
613 25 0:4 net:[4026532247] /run/netns/blue rw - nsfs nsfs rw
614 25 0:4 net:[4026532300] /var/run/netns/cni-1f2e\\040x rw - nsfs nsfs rw
615 25 0:4 mnt:[4026532301] /run/mntns/a rw - nsfs nsfs rw
616 25 0:4 net:[4026532247] /run/netns/blue-again rw shared:5 - nsfs nsfs rw
";
        let found = parse_mountinfo(text, Path::new("/proc/1/root"));
        assert_eq!(
            found,
            vec![
                (4026532247, PathBuf::from("/proc/1/root/run/netns/blue")),
                (4026532300, PathBuf::from("/proc/1/root/var/run/netns/cni-1f2e x")),
                (4026532247, PathBuf::from("/proc/1/root/run/netns/blue-again")),
            ]
        );
        assert!(parse_mountinfo("garbage\n - nsfs\n", Path::new("/")).is_empty());
        // Not an escape (beyond a byte, or cut short): kept as it is.
        assert_eq!(unescape("a\\777b\\04"), "a\\777b\\04");
        assert_eq!(unescape("a\\040b"), "a b");
    }

    #[test]
    fn the_callers_own_namespace_is_found_with_its_pid() {
        let d = discover(Path::new("/proc"));
        let own = std::fs::metadata("/proc/self/ns/net").unwrap().ino();
        let me = std::process::id();
        let f = d.namespaces.iter().find(|f| f.inode == own).expect("our namespace");
        assert!(f.pids.contains(&me));
        // Deduplicated: each inode once.
        let mut inodes: Vec<u64> = d.namespaces.iter().map(|f| f.inode).collect();
        inodes.dedup();
        assert_eq!(inodes.len(), d.namespaces.len());
    }
}

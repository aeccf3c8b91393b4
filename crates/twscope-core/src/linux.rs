//! Linux facts and rules the numbers depend on, in one place.
//!
//! Every constant the kernel fixes, every default it ships, and every rule
//! about when a setting takes effect lives here under one name; the model,
//! the checklist, `tune`, `plan` and the views quote these instead of
//! repeating literals.

use std::net::IpAddr;

/// TIME_WAIT's nominal length: `TCP_TIMEWAIT_LEN`, 60 s. No sysctl changes it
/// (`tcp_fin_timeout` governs FIN_WAIT_2 only). The kernel holds a socket a
/// little longer; see [`TimeWaitLifetime`].
pub const TIME_WAIT_SECS: f64 = 60.0;

/// [`TIME_WAIT_SECS`] in milliseconds, the unit of sock_diag's `idiag_expires`.
pub const TIME_WAIT_MS: u32 = 60_000;

/// The kernel's default `ip_local_port_range`, 32768–60999 (28,232 ports).
pub const DEFAULT_PORT_RANGE: (u16, u16) = (32768, 60999);

/// The widest range `ip_local_port_range` can usefully take: ports below 1024
/// are privileged and belong to servers.
pub const WIDEST_PORT_RANGE: (u16, u16) = (1024, 65535);

/// `tcp_tw_reuse_delay`'s default (ms): before Linux 6.14, where the sysctl
/// does not exist, the delay was fixed at 1 s.
pub const DEFAULT_TW_REUSE_DELAY_MS: u32 = 1000;

/// Where `ip netns add` bind-mounts named namespaces.
pub const NAMED_NETNS_DIR: &str = "/run/netns";

/// The inode of the init (host) network namespace: fixed by the kernel
/// (`PROC_NET_INIT_INO`, `include/linux/proc_ns.h`), so the host is known
/// even where PID 1's `/proc/1/ns/net` is closed to the caller.
pub const INIT_NET_INODE: u64 = 0xEFFF_FFF9;

/// Ports in an inclusive range (`32768–60999` → 28,232).
pub fn range_size(range: (u16, u16)) -> u32 {
    if range.0 > range.1 {
        0
    } else {
        u32::from(range.1 - range.0) + 1
    }
}

/// Whether `tcp_tw_reuse` lets an outbound `connect()` from `src` to `dst`
/// take over a TIME_WAIT 4-tuple: 1 = always, 2 = loopback only (a loopback
/// source or destination, the kernel's test in `tcp_twsk_unique`), and only with `tcp_timestamps` on, which reuse relies on to
/// tell old segments from new ones.
pub fn tw_reuse_applies(tcp_tw_reuse: u8, tcp_timestamps: u8, src: IpAddr, dst: IpAddr) -> bool {
    if tcp_timestamps == 0 {
        return false;
    }
    match tcp_tw_reuse {
        1 => true,
        2 => src.to_canonical().is_loopback() || dst.to_canonical().is_loopback(),
        _ => false,
    }
}

/// Why `tcp_tw_reuse` does not apply to a non-loopback destination, in words
/// (`None` when it does).
pub fn tw_reuse_off_reason(tcp_tw_reuse: u8, tcp_timestamps: u8) -> Option<String> {
    match (tcp_tw_reuse, tcp_timestamps) {
        (1, t) if t != 0 => None,
        (_, 0) => Some("tcp_timestamps=0 disables tcp_tw_reuse".to_string()),
        (2, _) => Some("tcp_tw_reuse=2 covers loopback only".to_string()),
        (n, _) => Some(format!("tcp_tw_reuse={n}")),
    }
}

/// Whether a listening port takes a port out of `connect()`'s budget: it is
/// inside the ephemeral range and not reserved (reserved ports are already
/// out of it).
pub fn listener_takes_a_port(port: u16, range: (u16, u16), reserved: impl Fn(u16) -> bool) -> bool {
    (range.0..=range.1).contains(&port) && !reserved(port)
}

/// How long the kernel really holds a TIME_WAIT socket on this host.
///
/// The 60 s timer is armed with `mod_timer()` on the timer wheel (Linux 4.8+).
/// A timer that far out lands on an outer wheel level whose buckets are
/// `8^level` jiffies wide, and `calc_index()` rounds the expiry *up* to the
/// next bucket boundary so a timer never fires early. So a socket lives
/// between 60 s and 60 s + one bucket: with HZ=250, level 3, buckets of 512
/// jiffies = 2.048 s, a mean of about 61.0 s and at most 62.05 s; with
/// HZ=1000, level 4, 4.096 s buckets. The steady-state count of a churn is
/// rate × mean lifetime (Little's law), so the model holds ports for
/// [`TimeWaitLifetime::mean_s`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TimeWaitLifetime {
    /// The kernel tick rate (`CONFIG_HZ`).
    pub hz: u32,
    /// The wheel bucket width a 60 s timer gets, in seconds.
    pub granularity_s: f64,
}

/// Wheel geometry (kernel/time/timer.c): 64 buckets a level, each level 8×
/// coarser than the one below.
const LVL_BITS: u32 = 6;
const LVL_CLK_SHIFT: u32 = 3;
const LVL_DEPTH: u32 = 9;

impl TimeWaitLifetime {
    /// The lifetime for a kernel ticking at `hz`.
    pub fn for_hz(hz: u32) -> TimeWaitLifetime {
        let hz = hz.max(1);
        let delta = u64::from(TIME_WAIT_MS) * u64::from(hz) / 1000;
        // calc_wheel_index(): the first level whose start is beyond delta,
        // minus one.
        let level_start = |n: u32| ((1u64 << LVL_BITS) - 1) << ((n - 1) * LVL_CLK_SHIFT);
        let level = (1..LVL_DEPTH)
            .find(|&n| delta < level_start(n))
            .map_or(LVL_DEPTH - 1, |n| n - 1);
        let granularity_jiffies = 1u64 << (level * LVL_CLK_SHIFT);
        TimeWaitLifetime {
            hz,
            granularity_s: granularity_jiffies as f64 / f64::from(hz),
        }
    }

    /// The lifetime on the running kernel, from its tick rate: the coarse
    /// clocks tick once a jiffy, so `clock_getres(CLOCK_MONOTONIC_COARSE)`
    /// is 1/HZ. Falls back to HZ=250 (Debian's and most distributions'
    /// default) if the clock cannot be read.
    pub fn of_running_kernel() -> TimeWaitLifetime {
        let mut res = libc::timespec { tv_sec: 0, tv_nsec: 0 };
        // SAFETY: clock_getres writes into the timespec we own.
        let ok = unsafe { libc::clock_getres(libc::CLOCK_MONOTONIC_COARSE, &mut res) } == 0;
        let tick_ns = res.tv_sec as f64 * 1e9 + res.tv_nsec as f64;
        let hz = if ok && tick_ns > 0.0 {
            (1e9 / tick_ns).round() as u32
        } else {
            250
        };
        TimeWaitLifetime::for_hz(hz)
    }

    /// The mean time a TIME_WAIT socket is held: 60 s plus half a bucket.
    pub fn mean_s(&self) -> f64 {
        TIME_WAIT_SECS + self.granularity_s / 2.0
    }

    /// How far one socket's lifetime strays from [`Self::mean_s`], either
    /// way: half a bucket, and a jiffy for the tick it was armed in.
    pub fn spread_s(&self) -> f64 {
        self.granularity_s / 2.0 + 1.0 / f64::from(self.hz)
    }

    /// The longest a TIME_WAIT socket is held: 60 s plus one bucket (and a jiffy).
    pub fn max_s(&self) -> f64 {
        TIME_WAIT_SECS + self.granularity_s + 1.0 / f64::from(self.hz)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_wheel_rounds_a_60_s_timer_up_by_one_bucket() {
        let hz250 = TimeWaitLifetime::for_hz(250);
        assert_eq!(hz250.granularity_s, 2.048);
        assert!((hz250.mean_s() - 61.024).abs() < 1e-9);
        assert_eq!(TimeWaitLifetime::for_hz(1000).granularity_s, 4.096);
        assert_eq!(TimeWaitLifetime::for_hz(100).granularity_s, 5.12);
        assert_eq!(TimeWaitLifetime::for_hz(300).granularity_s, 512.0 / 300.0);
        let here = TimeWaitLifetime::of_running_kernel();
        assert!([100, 250, 300, 1000].contains(&here.hz), "HZ {}", here.hz);
    }

    #[test]
    fn reuse_needs_timestamps_and_covers_loopback_with_2() {
        let (lo, other): (IpAddr, IpAddr) = ("127.0.0.1".parse().unwrap(), "198.18.0.1".parse().unwrap());
        assert!(tw_reuse_applies(1, 1, other, other));
        assert!(!tw_reuse_applies(1, 0, other, other));
        assert!(tw_reuse_applies(2, 1, lo, lo));
        assert!(!tw_reuse_applies(2, 1, other, other));
        assert!(!tw_reuse_applies(0, 1, lo, lo));
        assert_eq!(tw_reuse_off_reason(1, 1), None);
        assert!(tw_reuse_off_reason(1, 0).unwrap().contains("tcp_timestamps=0"));
        assert!(tw_reuse_off_reason(2, 1).unwrap().contains("loopback"));
        assert_eq!(range_size(DEFAULT_PORT_RANGE), 28_232);
        assert_eq!(range_size(WIDEST_PORT_RANGE), 64_512);
        assert!(listener_takes_a_port(40000, DEFAULT_PORT_RANGE, |_| false));
        assert!(!listener_takes_a_port(40000, DEFAULT_PORT_RANGE, |p| p == 40000));
        assert!(!listener_takes_a_port(8080, DEFAULT_PORT_RANGE, |_| false));
    }
}

//! Which destinations a view shows, applied after collection, and the
//! `status --json` report of them.

use super::*;

/// Which destinations a view shows (`--top`, `--dest`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Selection {
    /// Destinations to list, busiest first; 0 = all.
    pub top: usize,
    /// Only destinations matching this.
    pub dest: Option<DestFilter>,
}

impl Default for Selection {
    fn default() -> Selection {
        Selection { top: 10, dest: None }
    }
}

impl Selection {
    /// Every destination.
    pub const ALL: Selection = Selection { top: 0, dest: None };
}

/// `--dest ADDR[:PORT]`: `198.18.0.2`, `198.18.0.2:5432`, `2001:2::1`, `[2001:2::1]:443`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DestFilter {
    /// The destination address; an IPv4-mapped IPv6 address is taken as the
    /// IPv4 one, as the census counts it.
    pub addr: IpAddr,
    /// The destination port; `None` matches every port of `addr`.
    pub port: Option<u16>,
}

impl FromStr for DestFilter {
    type Err = String;

    fn from_str(text: &str) -> Result<DestFilter, String> {
        if let Ok(sa) = text.parse::<SocketAddr>() {
            return Ok(DestFilter {
                addr: sa.ip().to_canonical(),
                port: Some(sa.port()),
            });
        }
        let bare = text.strip_prefix('[').and_then(|t| t.strip_suffix(']')).unwrap_or(text);
        match bare.parse::<IpAddr>() {
            Ok(addr) => Ok(DestFilter {
                addr: addr.to_canonical(),
                port: None,
            }),
            Err(_) => Err(format!(
                "{text:?} is not ADDR or ADDR:PORT (e.g. 198.18.0.2:5432, [2001:db8::1]:443)"
            )),
        }
    }
}

impl DestFilter {
    /// Whether a destination (address, port) is the one named.
    pub fn matches(&self, addr: IpAddr, port: u16) -> bool {
        self.addr == addr && self.port.is_none_or(|p| p == port)
    }
}

/// `status --json`: the [`Status`] with the destinations a [`Selection`]
/// picks. Serialises to the schema documented in the README.
#[derive(Debug, Clone, Serialize)]
pub struct StatusReport<'a> {
    /// Everything but the destinations.
    #[serde(flatten)]
    pub status: &'a Status,
    /// Destinations matching `--dest`, before the `--top` cut.
    pub destinations_total: usize,
    /// The selected destinations, busiest first.
    pub destinations: Vec<&'a Destination>,
    /// The verdict over the destinations matching `--dest` (the namespace's
    /// own verdict without it).
    pub verdict: Verdict,
}

impl Status {
    /// The destinations `selection` picks, busiest first, and how many
    /// matched before the `--top` cut.
    pub fn selected(&self, selection: &Selection) -> (Vec<&Destination>, usize) {
        let matching: Vec<&Destination> = self
            .destinations
            .iter()
            .filter(|d| {
                selection
                    .dest
                    .is_none_or(|f| d.addr.parse().is_ok_and(|addr: IpAddr| f.matches(addr, d.port)))
            })
            .collect();
        let total = matching.len();
        let shown = if selection.top == 0 {
            matching
        } else {
            matching.into_iter().take(selection.top).collect()
        };
        (shown, total)
    }

    /// The report a view renders for `selection`.
    pub fn report(&self, selection: &Selection) -> StatusReport<'_> {
        let (destinations, destinations_total) = self.selected(selection);
        let verdict = match selection.dest {
            None => self.verdict.clone(),
            Some(_) => {
                let matching: Vec<Destination> = self
                    .selected(&Selection { top: 0, ..*selection })
                    .0
                    .into_iter()
                    .cloned()
                    .collect();
                verdict(&matching, &self.settings, self.time_wait_lifetime.mean_s)
            }
        };
        StatusReport {
            status: self,
            destinations_total,
            destinations,
            verdict,
        }
    }
}

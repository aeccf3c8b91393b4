//! Number formatting shared by every text renderer.

/// `1234567` → `1,234,567`.
pub fn thousands(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// A rate per second: whole numbers with separators from 10 up, one decimal below.
pub fn rate(per_s: f64) -> String {
    if per_s >= 9.95 {
        thousands(per_s.round() as u64)
    } else {
        format!("{per_s:.1}")
    }
}

/// `text` with control characters shown as `?`: a process name (prctl) or a
/// pod's hostname is anyone's to set, and must not drive the terminal.
pub fn printable(text: &str) -> String {
    text.chars().map(|c| if c.is_control() { '?' } else { c }).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn separators() {
        assert_eq!(thousands(0), "0");
        assert_eq!(thousands(999), "999");
        assert_eq!(thousands(1000), "1,000");
        assert_eq!(thousands(28_232), "28,232");
        assert_eq!(thousands(1_234_567), "1,234,567");
        assert_eq!(rate(470.53), "471");
        assert_eq!(rate(12_345.4), "12,345");
        assert_eq!(rate(0.25), "0.2");
        assert_eq!(rate(9.94), "9.9");
    }
}

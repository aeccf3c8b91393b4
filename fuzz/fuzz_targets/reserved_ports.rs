//! `PortRanges::parse` (`ip_local_reserved_ports`, `--reserved`): any text
//! either errors or parses to sorted, merged ranges that round-trip through
//! the kernel format they are written back in.
#![no_main]

use libfuzzer_sys::fuzz_target;
use twscope_core::kernel::PortRanges;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    if let Ok(ranges) = PortRanges::parse(&text) {
        for pair in ranges.ranges().windows(2) {
            assert!(u32::from(pair[0].1) + 1 < u32::from(pair[1].0), "not merged: {:?}", ranges.ranges());
        }
        let written = ranges.to_string();
        assert_eq!(PortRanges::parse(&written), Ok(ranges), "{text:?} → {written:?}");
    }
});

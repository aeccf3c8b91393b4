//! `--dest ADDR[:PORT]` (`DestFilter::from_str`): never panics, and whatever
//! it accepts matches its own address and port.
#![no_main]

use libfuzzer_sys::fuzz_target;
use twscope_core::status::DestFilter;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    if let Ok(filter) = text.parse::<DestFilter>() {
        assert!(filter.matches(filter.addr, filter.port.unwrap_or(0)));
        assert_eq!(filter.addr, filter.addr.to_canonical());
    }
});

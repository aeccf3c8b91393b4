//! `sockdiag::parse_batch` on raw bytes: the first four bytes choose the
//! sequence number the parser expects, the rest is one `recvmsg` worth of
//! netlink data. Malformed input must be an error, never a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use twscope_core::sockdiag::{parse_batch, Progress};

fuzz_target!(|data: &[u8]| {
    let (seq, buf) = match data.split_first_chunk::<4>() {
        Some((seq, rest)) => (u32::from_ne_bytes(*seq), rest),
        None => (0, data),
    };
    let mut visited = 0usize;
    match parse_batch(buf, seq, |_| visited += 1) {
        // Every socket is one 16-byte header plus a 72-byte inet_diag_msg.
        Ok(Progress::More | Progress::Done) => assert!(visited * 88 <= buf.len()),
        // The message a user would read is one line.
        Err(e) => assert!(!e.to_string().contains('\n')),
    }
});

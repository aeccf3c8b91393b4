//! `--web.config.file`: `WebConfig::parse` on any text, relative paths taken
//! from a fixture directory holding a real certificate and key and some traps
//! a config may point at by mistake (a FIFO, /dev/zero, a 2 MiB file, a
//! directory, an empty file). It must answer every input with a config or
//! a one-line error, without hanging on a FIFO or reading without bound.
#![no_main]

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use twscope_exporter::web_config::WebConfig;

/// Highest bcrypt cost run: `parse` checks every hash once, and a cost-15
/// hash (the maximum it accepts) takes seconds — a slow input, not a bug.
/// Higher costs take the same code path, only slower.
const MAX_COST_FUZZED: u32 = 4;

fn put(dir: &Path, name: &str, content: &[u8]) {
    // Write then rename, so parallel fuzzing jobs never read a torn file.
    let tmp = dir.join(format!(".{name}.{}", std::process::id()));
    std::fs::write(&tmp, content).unwrap();
    std::fs::rename(&tmp, dir.join(name)).unwrap();
}

fn fixtures() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/fixtures/web_config");
        std::fs::create_dir_all(dir.join("dir")).unwrap();
        let certified = rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).unwrap();
        put(&dir, "cert.pem", certified.cert.pem().as_bytes());
        put(&dir, "key.pem", certified.signing_key.serialize_pem().as_bytes());
        put(&dir, "empty.pem", b"");
        put(&dir, "big.pem", &vec![b'A'; 2 << 20]);
        let fifo = std::ffi::CString::new(dir.join("fifo").into_os_string().into_encoded_bytes()).unwrap();
        // SAFETY: mkfifo with a valid NUL-terminated path; EEXIST is fine.
        unsafe { libc::mkfifo(fifo.as_ptr(), 0o600) };
        let _ = std::os::unix::fs::symlink("/dev/zero", dir.join("zero"));
        dir
    })
}

/// The largest bcrypt cost written in the text (`$2y$NN$`), if any.
fn max_cost(text: &str) -> u32 {
    let b = text.as_bytes();
    (0..b.len().saturating_sub(6))
        .filter(|&i| b[i] == b'$' && b[i + 3] == b'$' && b[i + 6] == b'$')
        .filter_map(|i| text.get(i + 4..i + 6)?.parse::<u32>().ok())
        .max()
        .unwrap_or(0)
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    if max_cost(text) > MAX_COST_FUZZED || text.contains('\\') {
        // Escapes could spell a costly hash the check above cannot see.
        return;
    }
    match WebConfig::parse(text, fixtures()) {
        Ok(config) => {
            // A config that parsed answers a check without bcrypt work.
            let _ = config.check(Some(b"Basic cHJvbWV0aGV1czp4"));
            let _ = config.auth_required();
        }
        Err(message) => assert!(!message.is_empty()),
    }
});

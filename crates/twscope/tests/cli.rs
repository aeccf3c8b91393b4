//! The command line as a new user meets it: help, bad input, privileges.
//! These run the real binary against the real kernel of this host.

use std::process::{Command, Output};

fn twscope(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_twscope")).args(args).env("NO_COLOR", "1").output().unwrap()
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// One line on stderr, exit 3, no panic or backtrace.
fn assert_clean_error(out: &Output, mentions: &str) {
    let err = stderr(out);
    assert_eq!(out.status.code(), Some(3), "exit code for {err:?}");
    assert_eq!(err.lines().count(), 1, "one line expected: {err:?}");
    assert!(err.starts_with("twscope: error: "), "{err:?}");
    assert!(err.contains(mentions), "{err:?} should mention {mentions:?}");
    assert!(!err.contains("panicked") && !err.contains("backtrace"), "{err:?}");
    assert!(out.stdout.is_empty(), "nothing on stdout after an error");
}

#[test]
fn help_explains_every_status_option() {
    for args in [&["--help"][..], &["status", "--help"][..]] {
        let out = twscope(args);
        assert_eq!(out.status.code(), Some(0));
        let help = String::from_utf8(out.stdout).unwrap();
        for option in ["--json", "--top", "--dest", "--netns", "--warning", "--critical", "--window", "Exit codes"] {
            assert!(help.contains(option), "{args:?} help lacks {option}:\n{help}");
        }
    }
    let out = twscope(&["--version"]);
    assert_eq!(out.status.code(), Some(0));
    assert!(String::from_utf8_lossy(&out.stdout).starts_with("twscope "));
}

#[test]
fn bad_options_give_one_line_and_exit_3() {
    assert_clean_error(&twscope(&["--bogus"]), "--bogus");
    assert_clean_error(&twscope(&["status", "--top", "many"]), "--top");
    assert_clean_error(&twscope(&["status", "--dest", "db.internal"]), "ADDR:PORT");
    assert_clean_error(&twscope(&["status", "--window", "61"]), "--window");
    assert_clean_error(&twscope(&["status", "--warning", "120"]), "percentage");
    assert_clean_error(&twscope(&["status", "--warning", "90", "--critical", "80"]), "must not exceed");
    assert_clean_error(&twscope(&["frobnicate"]), "frobnicate");
}

#[test]
fn an_unknown_namespace_says_how_to_find_one() {
    assert_clean_error(&twscope(&["status", "--netns", "twscope-no-such-ns"]), "ip netns list");
    assert_clean_error(&twscope(&["status", "--netns", "/proc/self/status"]), "/proc/self/status");
}

#[test]
fn the_default_command_is_status_and_exit_code_follows_the_verdict() {
    let out = twscope(&["--json", "--top", "0"]);
    let code = out.status.code().unwrap();
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).expect("valid JSON");
    let expected = match json["verdict"]["severity"].as_str().unwrap() {
        "ok" => 0,
        "warning" => 1,
        "critical" => 2,
        other => panic!("unknown severity {other}"),
    };
    assert_eq!(code, expected);
    assert_eq!(json["states"].as_object().unwrap().len(), 11);
    let text = twscope(&[]);
    let text = String::from_utf8(text.stdout).unwrap();
    assert!(text.starts_with("twscope status · host "), "{text}");
    assert!(!text.contains('\x1b'), "NO_COLOR must give plain text");
}

#[test]
fn a_closed_pipe_is_not_an_error() {
    use std::process::Stdio;
    let mut child = Command::new(env!("CARGO_BIN_EXE_twscope"))
        .args(["--json", "--top", "0"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    drop(child.stdout.take()); // the reader goes away at once, like `| head -0`
    let out = child.wait_with_output().unwrap();
    assert!(out.status.code().unwrap() <= 2, "{:?}", stderr(&out));
    assert!(!stderr(&out).contains("panicked"));
}

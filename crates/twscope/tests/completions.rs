//! `twscope completions SHELL` and `twscope man`, as a packager runs them:
//! the real binary, its stdout written to a file and used by the real shell.

use std::process::Command;

use crate::util::{refused, stderr, stdout, twscope};

const COMMANDS: [&str; 8] = ["status", "doctor", "tune", "serve", "plan", "lab", "completions", "man"];

/// Exit 0, nothing on stderr, and stdout as text.
fn stdout_of(args: &[&str]) -> String {
    let out = twscope(args);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(0), "twscope {args:?}: {err}");
    assert!(err.is_empty(), "twscope {args:?} wrote to stderr: {err}");
    stdout(&out)
}

#[test]
fn bash_completion_completes_every_command() {
    let script = stdout_of(&["completions", "bash"]);
    assert!(script.contains("complete "), "{script}");
    for name in COMMANDS {
        assert!(script.contains(name), "bash completion lacks {name}");
    }
    assert!(
        script.contains("--netns") && script.contains("--remedies"),
        "options are completed too"
    );
}

#[test]
fn zsh_fish_elvish_and_powershell_get_their_own_script() {
    let zsh = stdout_of(&["completions", "zsh"]);
    assert!(
        zsh.starts_with("#compdef twscope"),
        "{}",
        zsh.lines().next().unwrap_or("")
    );
    assert!(stdout_of(&["completions", "fish"]).contains("complete -c twscope"));
    assert!(stdout_of(&["completions", "elvish"]).contains("edit:completion:arg-completer[twscope]"));
    assert!(stdout_of(&["completions", "powershell"]).contains("Register-ArgumentCompleter"));
}

#[test]
fn an_unknown_shell_is_one_line_and_exit_3() {
    let out = twscope(&["completions", "tcsh"]);
    let err = refused(&out, &["tcsh"]);
    assert!(err.starts_with("twscope: error: "), "{err}");
    assert!(out.stdout.is_empty());
    // No shell at all: the same.
    refused(&twscope(&["completions"]), &[]);
}

#[test]
fn bash_loads_the_completion() {
    let bash_runs = Command::new("bash")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    if !bash_runs {
        // Not a twscope_lab::testing::skip: bash is not among the tools CI installs
        // on purpose, and every Debian machine has it.
        eprintln!("skipping bash_loads_the_completion: needs bash");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("twscope.bash");
    std::fs::write(&path, stdout_of(&["completions", "bash"])).unwrap();
    // Sourced as bash-completion would, then asked to complete `twscope st`.
    let script = format!(
        "source '{}' && complete -p twscope && COMP_WORDS=(twscope st) COMP_CWORD=1 COMP_LINE='twscope st' \
         COMP_POINT=10 && _twscope twscope st twscope && printf '%s\\n' \"${{COMPREPLY[@]}}\"",
        path.display()
    );
    let out = Command::new("bash")
        .arg("--norc")
        .arg("--noprofile")
        .arg("-c")
        .arg(&script)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "bash: {}{text}", stderr(&out));
    assert!(text.contains("complete") && text.contains("twscope"), "{text}");
    assert!(
        text.lines().any(|l| l == "status"),
        "`twscope st<TAB>` should offer status: {text}"
    );
}

#[test]
fn the_man_page_is_roff_with_every_command() {
    let page = stdout_of(&["man"]);
    assert!(
        page.starts_with(".TH twscope 1"),
        "{}",
        page.lines().next().unwrap_or("")
    );
    for section in [
        ".SH NAME",
        ".SH SYNOPSIS",
        ".SH OPTIONS",
        ".SH COMMANDS",
        ".SH \"EXIT STATUS\"",
    ] {
        assert!(page.contains(section), "man page lacks {section}");
    }
    for name in COMMANDS {
        assert!(page.contains(&format!("twscope {name}")), "man page lacks {name}");
    }
    assert!(page.contains("netns"), "options are documented");
    assert!(
        !page.to_lowercase().contains("seed"),
        "the page speaks of things users know"
    );
}

#[test]
fn man_renders_when_a_formatter_is_installed() {
    // groff or mandoc, where present, must accept the page without a warning
    // (groff -k: the UTF-8 input goes through preconv, as man(1) does it).
    let Some(formatter) = [
        ("mandoc", &["-T", "utf8", "-W", "warning"][..]),
        ("groff", &["-k", "-man", "-T", "utf8", "-w", "w"][..]),
    ]
    .into_iter()
    .find(|(program, _)| {
        Command::new(program)
            .arg("--version")
            .output()
            .is_ok_and(|o| o.status.success())
    }) else {
        eprintln!("skipping man_renders_when_a_formatter_is_installed: needs mandoc or groff");
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("twscope.1");
    std::fs::write(&path, stdout_of(&["man"])).unwrap();
    let out = Command::new(formatter.0).args(formatter.1).arg(&path).output().unwrap();
    // Bold and underline are overstruck (`C\x08C`, `_\x08C`): keep the last character.
    let mut text = String::new();
    for c in String::from_utf8_lossy(&out.stdout).chars() {
        if c == '\x08' {
            text.pop();
        } else {
            text.push(c);
        }
    }
    assert!(out.status.success(), "{}: {}", formatter.0, stderr(&out));
    assert!(out.stderr.is_empty(), "{} warns: {}", formatter.0, stderr(&out));
    assert!(text.contains("COMMANDS") && text.contains("twscope doctor"), "{text}");
}

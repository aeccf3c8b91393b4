//! `twscope completions SHELL` and `twscope man`: shell completion scripts and
//! the manual page, generated from the same clap definitions as `--help`
//! ([`crate::cli`]), so they cannot drift from the options.

use std::io::{self, Write};

use clap::CommandFactory;
use clap_complete::Shell;
use clap_mangen::Man;

use crate::cli::Cli;

/// The completion script of `twscope` for `shell`.
pub fn completions(shell: Shell) -> Vec<u8> {
    let mut script = Vec::new();
    clap_complete::generate(shell, &mut Cli::command(), "twscope", &mut script);
    script
}

/// twscope(1) in roff: the synopsis and options of `twscope` (which runs
/// `status`), then every command with its own synopsis, options and notes, on
/// one page — a packager installs one file. It starts with `.TH`.
pub fn man_page() -> io::Result<Vec<u8>> {
    let mut command = Cli::command().disable_help_subcommand(true);
    command.build();
    let man = Man::new(command.clone());
    let mut page = section(|w| man.render_title(w), Heading::Keep)?;
    // The definition of \*(Aq (a straight apostrophe) that every section
    // rendered by clap_mangen starts with, once, after the title.
    page.extend_from_slice(APOSTROPHE_PREAMBLE.as_bytes());
    page.extend(section(|w| man.render_name_section(w), Heading::Keep)?);
    page.extend(section(|w| man.render_synopsis_section(w), Heading::Keep)?);
    page.extend(section(|w| man.render_description_section(w), Heading::Keep)?);
    page.extend(section(|w| man.render_options_section(w), Heading::Keep)?);
    writeln!(page, ".SH COMMANDS")?;
    for sub in command.get_subcommands().filter(|s| !s.is_hide_set()) {
        let sub_man = Man::new(sub.clone());
        writeln!(page, ".SS \"twscope {}\"", sub.get_name())?;
        page.extend(section(|w| sub_man.render_synopsis_section(w), Heading::Drop)?);
        writeln!(page, ".PP")?;
        page.extend(section(|w| sub_man.render_description_section(w), Heading::Drop)?);
        if sub.get_arguments().any(|a| !a.is_hide_set()) {
            page.extend(section(|w| sub_man.render_options_section(w), Heading::Drop)?);
        }
        if let Some(notes) = sub.get_after_help() {
            verbatim(&mut page, &notes.to_string())?;
        }
    }
    writeln!(page, ".SH \"EXIT STATUS\"")?;
    if let Some(notes) = command.get_after_help() {
        verbatim(&mut page, &notes.to_string())?;
    }
    page.extend(section(|w| man.render_version_section(w), Heading::Keep)?);
    writeln!(page, ".SH \"SEE ALSO\"")?;
    writeln!(page, "ss(8), ip\\-netns(8), sysctl(8), proc(5)")?;
    Ok(page)
}

/// A command's notes (examples, exit codes) as a paragraph whose lines stay
/// as written: the examples are aligned in columns.
fn verbatim(page: &mut Vec<u8>, text: &str) -> io::Result<()> {
    writeln!(page, ".PP\n.nf")?;
    for line in text.lines() {
        let escaped = line.replace('\\', "\\e").replace('-', "\\-");
        // A line starting with a dot or an apostrophe would be a request.
        let guard = if escaped.starts_with(['.', '\'']) { "\\&" } else { "" };
        writeln!(page, "{guard}{escaped}")?;
    }
    writeln!(page, ".fi")
}

/// What the roff crate writes before every document it renders.
const APOSTROPHE_PREAMBLE: &str = ".ie \\n(.g .ds Aq \\(aq\n.el .ds Aq '\n";

/// Whether a section keeps its `.SH` heading or is nested under a command's
/// `.SS`.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Heading {
    Keep,
    Drop,
}

/// One section rendered by clap_mangen, without the preamble (written once
/// per page) and, with [`Heading::Drop`], without its `.SH` lines.
fn section(render: impl FnOnce(&mut Vec<u8>) -> io::Result<()>, heading: Heading) -> io::Result<Vec<u8>> {
    let mut rendered = Vec::new();
    render(&mut rendered)?;
    let text = String::from_utf8_lossy(&rendered);
    let text = text.strip_prefix(APOSTROPHE_PREAMBLE).unwrap_or(&text);
    let mut out = String::with_capacity(text.len());
    for line in text
        .lines()
        .filter(|l| heading == Heading::Keep || !l.starts_with(".SH "))
    {
        out.push_str(line);
        out.push('\n');
    }
    Ok(out.into_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_man_page_has_every_command_and_one_heading_per_section() {
        let page = String::from_utf8(man_page().unwrap()).unwrap();
        assert!(page.starts_with(".TH twscope 1"), "{}", &page[..80]);
        for name in ["status", "doctor", "tune", "serve", "plan", "lab", "completions", "man"] {
            assert!(page.contains(&format!(".SS \"twscope {name}\"")), "{name} missing");
        }
        assert!(!page.contains("twscope\\-help"), "no help command on the page");
        assert_eq!(page.matches(".SH OPTIONS").count(), 1);
        assert!(page.contains(".SH \"EXIT STATUS\""));
        assert_eq!(page.matches(APOSTROPHE_PREAMBLE).count(), 1, "the preamble once");
    }

    #[test]
    fn every_shell_gets_a_script() {
        for shell in [Shell::Bash, Shell::Zsh, Shell::Fish, Shell::Elvish, Shell::PowerShell] {
            let script = String::from_utf8(completions(shell)).unwrap();
            assert!(script.contains("netns") && script.contains("doctor"), "{shell}");
        }
    }
}

//! `dist OUT_DIR`: the man pages and shell completions the Debian packages
//! carry, generated from the daemons' clap definitions so that they cannot
//! drift from `--help`.
//!
//! Writes `OUT_DIR/man1/curvemon-{agent,collector}[-SUBCOMMAND].1` and
//! `OUT_DIR/completions/{bash,zsh,fish}/...` under the names the shells'
//! Debian packages look for. The binaries are built as `agent` and
//! `collector` (the names the scripts and tests use); the packages install
//! them as `curvemon-agent` and `curvemon-collector`, the commands' names.

use std::{
    io::Write as _,
    path::{Path, PathBuf},
};

use anyhow::Context as _;
use clap::CommandFactory as _;
use clap_complete::Shell;

fn main() -> anyhow::Result<()> {
    let out: PathBuf = std::env::args_os().nth(1).context("usage: dist OUT_DIR")?.into();
    let daemons = [
        (curvemon_agent::cli::Cli::command(), AGENT_FILES),
        (curvemon_collector::cli::Cli::command(), COLLECTOR_FILES),
    ];
    for (command, files) in daemons {
        let name = command.get_name().to_owned();
        let command = command.bin_name(&name);
        man_pages(command.clone(), files, &out.join("man1"))?;
        completions(command, &name, &out.join("completions"))?;
    }
    Ok(())
}

/// What the FILES section of each page lists.
const AGENT_FILES: &[(&str, &str)] = &[
    (
        "/etc/curvemon/agent.toml",
        "Settings (every key optional); flags and CURVEMON_* variables win over it.",
    ),
    (
        "/etc/default/curvemon-agent",
        "Environment of curvemon-agent.service (CURVEMON_COLLECTOR, ...).",
    ),
    (
        "/etc/curvemon/keys/agent.key_secret",
        "This agent's secret key (mode 0600); agent.key beside it is its public key.",
    ),
    ("/etc/curvemon/keys/collector.key", "The collector's public key, copied from the collector."),
    ("/var/lib/curvemon/spool", "Samples until the collector has stored them."),
];

const COLLECTOR_FILES: &[(&str, &str)] = &[
    (
        "/etc/curvemon/collector.toml",
        "Settings: every flag as a key, and [[remote_write]] targets.",
    ),
    ("/etc/default/curvemon-collector", "Environment of curvemon-collector.service."),
    (
        "/etc/curvemon/keys/collector.key_secret",
        "The collector's secret key; collector.key beside it goes to every agent.",
    ),
    (
        "/etc/curvemon/keys/authorized_agents/",
        "Public keys of the agents allowed in (NAME.key); reloaded on SIGHUP.",
    ),
    ("/var/lib/curvemon/collector", "The history store."),
];

/// One page per command and subcommand, each with FILES and SEE ALSO
/// sections clap does not know about.
fn man_pages(command: clap::Command, files: &[(&str, &str)], dir: &Path) -> anyhow::Result<()> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let mut command = command.disable_help_subcommand(true);
    command.build();
    let name = command.get_name().to_owned();
    let mut pages = vec![(command.clone(), true)];
    pages
        .extend(command.get_subcommands().filter(|s| !s.is_hide_set()).map(|s| (s.clone(), false)));
    for (page, main) in pages {
        let man = clap_mangen::Man::new(page)
            .manual("curvemon")
            .source(format!("curvemon {}", env!("CARGO_PKG_VERSION")));
        let path = dir.join(man.get_filename());
        let mut text = Vec::new();
        man.render(&mut text)?;
        if main {
            text.extend_from_slice(b".SH FILES\n");
            for (file, what) in files {
                writeln!(text, ".TP\n{}\n{}", roff_escape(file), roff_escape(what))?;
            }
        }
        writeln!(
            text,
            ".SH \"SEE ALSO\"\n{}\n",
            see_also(&name).iter().map(|s| format!(".BR {s}")).collect::<Vec<_>>().join(" ,\n")
        )?;
        std::fs::write(&path, text).with_context(|| format!("writing {}", path.display()))?;
    }
    Ok(())
}

fn see_also(name: &str) -> Vec<String> {
    let other = if name == "curvemon-agent" { "curvemon-collector" } else { "curvemon-agent" };
    vec![format!("{other} (1)"), "systemd.service (5)".into()]
}

/// Escapes what roff would read as a command or an escape.
fn roff_escape(text: &str) -> String {
    let text = text.replace('\\', "\\e").replace('-', "\\-");
    if text.starts_with(['.', '\'']) { format!("\\&{text}") } else { text }
}

/// Where Debian's bash-completion, zsh and fish look for vendor completions.
fn completions(mut command: clap::Command, name: &str, dir: &Path) -> anyhow::Result<()> {
    for (shell, sub, file) in [
        (Shell::Bash, "bash", name.to_owned()),
        (Shell::Zsh, "zsh", format!("_{name}")),
        (Shell::Fish, "fish", format!("{name}.fish")),
    ] {
        let dir = dir.join(sub);
        std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        let mut text = Vec::new();
        clap_complete::generate(shell, &mut command, name, &mut text);
        std::fs::write(dir.join(&file), text)
            .with_context(|| format!("writing {}", dir.join(&file).display()))?;
    }
    Ok(())
}

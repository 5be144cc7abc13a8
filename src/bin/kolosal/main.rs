//! `kolosal`: the management CLI (compile, clean, status, closure, info).

use clap::{CommandFactory, Parser, Subcommand};
mod cli;

/// Precompile Python programs and inspect what `kolosal-python` would do.
#[derive(Debug, Parser)]
#[command(name = "kolosal", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Compile trees (or an entry's import closure) to pycs, in parallel.
    Compile(cli::compile::CompileArgs),
    /// Remove pycs kolosal or Python wrote.
    Clean(cli::clean::CleanArgs),
    /// Report which pycs are fresh, stale, missing or orphaned.
    Status(cli::status::StatusArgs),
    /// Show the import closure of an entry, and why a module is in it.
    Closure(cli::closure::ClosureArgs),
    /// Show which interpreter would run, why, and its facts.
    Info(cli::info::InfoArgs),
    /// The shared code cache: stats, prune, dir.
    Cache(cli::cache::CacheArgs),
    /// Print a shell completion script (bash, zsh, fish, elvish, powershell)
    /// on stdout: `kolosal completions bash > ~/.local/share/bash-completion/completions/kolosal`.
    Completions {
        /// The shell to complete for.
        shell: clap_complete::Shell,
    },
}

fn main() {
    kolosal::launch::restore_default_sigpipe();
    let cli = Cli::try_parse().unwrap_or_else(|e| {
        use clap::error::ErrorKind;
        if matches!(
            e.kind(),
            ErrorKind::DisplayHelp
                | ErrorKind::DisplayVersion
                | ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand
        ) {
            e.exit();
        }
        // One line, with the prefix every kolosal error has.
        let text = e.render().to_string();
        let first = text.lines().next().unwrap_or("bad arguments");
        cli::error_line(format_args!(
            "{} (see --help)",
            first.trim_start_matches("error: ")
        ));
        std::process::exit(2);
    });
    let result = match cli.command {
        Command::Compile(a) => cli::compile::run(a),
        Command::Clean(a) => cli::clean::run(a),
        Command::Status(a) => cli::status::run(a),
        Command::Closure(a) => cli::closure::run(a),
        Command::Info(a) => cli::info::run(a),
        Command::Cache(a) => cli::cache::run(a),
        Command::Completions { shell } => {
            clap_complete::generate(
                shell,
                &mut Cli::command(),
                "kolosal",
                &mut std::io::stdout(),
            );
            Ok(0)
        }
    };
    match result {
        Ok(code) => std::process::exit(code),
        Err(e) => {
            cli::error_line(format_args!("{e:#}"));
            std::process::exit(2);
        }
    }
}

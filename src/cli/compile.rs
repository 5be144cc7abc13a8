//! `kolosal compile`.

use clap::Args;

/// Arguments of `kolosal compile`.
#[derive(Debug, Args)]
pub struct CompileArgs {}

/// Runs `kolosal compile`; returns the process exit code.
pub fn run(_args: CompileArgs) -> anyhow::Result<i32> {
    anyhow::bail!("kolosal compile is not built yet")
}

//! `kolosal status`.

use clap::Args;

/// Arguments of `kolosal status`.
#[derive(Debug, Args)]
pub struct StatusArgs {}

/// Runs `kolosal status`; returns the process exit code.
pub fn run(_args: StatusArgs) -> anyhow::Result<i32> {
    anyhow::bail!("kolosal status is not built yet")
}

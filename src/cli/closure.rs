//! `kolosal closure`.

use clap::Args;

/// Arguments of `kolosal closure`.
#[derive(Debug, Args)]
pub struct ClosureArgs {}

/// Runs `kolosal closure`; returns the process exit code.
pub fn run(_args: ClosureArgs) -> anyhow::Result<i32> {
    anyhow::bail!("kolosal closure is not built yet")
}

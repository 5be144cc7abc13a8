//! `kolosal clean`.

use clap::Args;

/// Arguments of `kolosal clean`.
#[derive(Debug, Args)]
pub struct CleanArgs {}

/// Runs `kolosal clean`; returns the process exit code.
pub fn run(_args: CleanArgs) -> anyhow::Result<i32> {
    anyhow::bail!("kolosal clean is not built yet")
}

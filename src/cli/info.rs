//! `kolosal info`.

use clap::Args;

/// Arguments of `kolosal info`.
#[derive(Debug, Args)]
pub struct InfoArgs {}

/// Runs `kolosal info`; returns the process exit code.
pub fn run(_args: InfoArgs) -> anyhow::Result<i32> {
    anyhow::bail!("kolosal info is not built yet")
}

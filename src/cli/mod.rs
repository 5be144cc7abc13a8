//! The `kolosal` management CLI: one module per subcommand.

pub mod clean;
pub mod closure;
pub mod compile;
pub mod info;
pub mod status;

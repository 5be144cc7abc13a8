//! kolosal's own diagnostics: stderr only, never stdout, controlled by
//! `KOLOSAL_LOG=off|error|warn|info|debug` (default `warn`).
//!
//! At `debug` every stage reports its elapsed time since start, so one launch
//! prints a timeline: `kolosal: [debug +0.412ms] closure: 812 modules`.

use std::io::Write;
use std::time::Instant;

/// How much kolosal says on stderr.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Level {
    /// Nothing at all.
    Off,
    /// Only failures that change what kolosal did for this launch.
    Error,
    /// Also degraded paths (fallbacks, skipped precompilation). The default.
    Warn,
    /// Also one summary line per launch.
    Info,
    /// A timeline of every stage.
    Debug,
}

impl Level {
    /// Parses `KOLOSAL_LOG`'s values; unknown values mean the default.
    pub fn parse(s: &str) -> Level {
        match s.trim().to_ascii_lowercase().as_str() {
            "off" | "0" | "none" | "quiet" => Level::Off,
            "error" => Level::Error,
            "info" => Level::Info,
            "debug" | "trace" => Level::Debug,
            _ => Level::Warn,
        }
    }

    fn name(self) -> &'static str {
        match self {
            Level::Off => "off",
            Level::Error => "error",
            Level::Warn => "warn",
            Level::Info => "info",
            Level::Debug => "debug",
        }
    }
}

/// A logger for one process: its level and its start time.
#[derive(Debug, Clone, Copy)]
pub struct Log {
    level: Level,
    start: Instant,
}

impl Log {
    /// Reads `KOLOSAL_LOG`.
    pub fn from_env() -> Log {
        let level = std::env::var("KOLOSAL_LOG")
            .map(|v| Level::parse(&v))
            .unwrap_or(Level::Warn);
        Log {
            level,
            start: Instant::now(),
        }
    }

    /// Milliseconds since this logger was made (the launch's start).
    pub fn elapsed_ms(&self) -> f64 {
        self.start.elapsed().as_secs_f64() * 1e3
    }

    /// The level in force.
    pub fn level(&self) -> Level {
        self.level
    }

    /// True when messages at `level` are printed.
    pub fn enabled(&self, level: Level) -> bool {
        level != Level::Off && level <= self.level
    }

    /// Prints one line at `level`. Write errors are ignored: logging never
    /// fails a launch.
    pub fn line(&self, level: Level, msg: std::fmt::Arguments<'_>) {
        if !self.enabled(level) {
            return;
        }
        // Formatted first, then one write(2): stderr is unbuffered, and a
        // line written piece by piece could interleave with the output of
        // another process sharing the same stderr.
        let line = if self.level == Level::Debug {
            let ms = self.start.elapsed().as_secs_f64() * 1e3;
            format!("kolosal: [{} +{ms:.3}ms] {msg}\n", level.name())
        } else {
            format!("kolosal: {msg}\n")
        };
        let _ = std::io::stderr().lock().write_all(line.as_bytes());
    }

    /// `line(Level::Error, ..)`.
    pub fn error(&self, msg: std::fmt::Arguments<'_>) {
        self.line(Level::Error, msg)
    }
    /// `line(Level::Warn, ..)`.
    pub fn warn(&self, msg: std::fmt::Arguments<'_>) {
        self.line(Level::Warn, msg)
    }
    /// `line(Level::Info, ..)`.
    pub fn info(&self, msg: std::fmt::Arguments<'_>) {
        self.line(Level::Info, msg)
    }
    /// `line(Level::Debug, ..)`.
    pub fn debug(&self, msg: std::fmt::Arguments<'_>) {
        self.line(Level::Debug, msg)
    }
}

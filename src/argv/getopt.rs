//! CPython's own option scanner, byte for byte.
//!
//! Mirrors `_PyOS_GetOpt` in `Python/getopt.c` (3.6–3.15; 3.14 and 3.15 add
//! no option, measured with every letter and long option). CPython scans the
//! decoded wide-character argv; scanning the raw bytes gives the same answer
//! because every option character is ASCII and an option argument is always
//! "the rest of the cluster after an ASCII character" or a whole argv entry.

use std::ffi::OsString;
use std::os::unix::ffi::OsStrExt;

/// Python version as `(major, minor)`.
pub(crate) type Version = (u32, u32);

/// A long option CPython knows (`longopts[]` in `Python/getopt.c`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum LongOpt {
    /// `--check-hash-based-pycs MODE` (3.7+).
    CheckHashBasedPycs,
    /// `--help-all` (3.11+).
    HelpAll,
    /// `--help-env` (3.11+).
    HelpEnv,
    /// `--help-xoptions` (3.11+).
    HelpXoptions,
}

/// One answer of the scanner.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Opt<'a> {
    /// A short option, with its argument when it takes one (`c`, `m`, `W`, `X`).
    Short(u8, Option<&'a [u8]>),
    /// A long option, with its argument when it takes one.
    Long(LongOpt, Option<&'a [u8]>),
    /// CPython returns `'_'`: unknown option, `-J`, or a missing argument.
    /// The scan may go on (CPython's pre-parse does), but the launch fails.
    Error(&'static str),
    /// End of options (`EOF`): a non-option, a lone `-`, `--`, the end of argv,
    /// or a cluster ending in `-` ("expected long option").
    End,
}

/// `-J` is reserved for Jython on every version.
const JYTHON: u8 = b'J';

/// Whether short option `c` exists on `version`, and whether it takes an
/// argument. Mirrors `SHORT_OPTS` ("bBc:dEhiIJm:OPqRsStuvVW:xX:?"; `P` since
/// 3.11). `J` is handled before this lookup, as CPython does.
fn short_opt(c: u8, version: Version) -> Option<bool> {
    match c {
        b'c' | b'm' | b'W' | b'X' => Some(true),
        b'b' | b'B' | b'd' | b'E' | b'h' | b'i' | b'I' | b'O' | b'q' | b'R' | b's' | b'S'
        | b't' | b'u' | b'v' | b'V' | b'x' | b'?' => Some(false),
        b'P' if version >= (3, 11) => Some(false),
        // CPython finds ':' in SHORT_OPTS with wcschr and returns it as an
        // option; config_parse_cmdline then rejects it in `default:`.
        _ => None,
    }
}

/// The long options of `version`: (name, takes an argument, which).
fn long_opt(name: &[u8], version: Version) -> Option<(bool, LongOpt)> {
    match name {
        b"check-hash-based-pycs" => Some((true, LongOpt::CheckHashBasedPycs)),
        b"help-all" if version >= (3, 11) => Some((false, LongOpt::HelpAll)),
        b"help-env" if version >= (3, 11) => Some((false, LongOpt::HelpEnv)),
        b"help-xoptions" if version >= (3, 11) => Some((false, LongOpt::HelpXoptions)),
        _ => None,
    }
}

/// The scanner's state (`_PyOS_optind` and `opt_ptr`), over argv WITHOUT
/// argv[0]: `optind` here is CPython's `_PyOS_optind - 1`.
pub(crate) struct GetOpt<'a> {
    args: &'a [OsString],
    version: Version,
    /// Index of the next argv entry to look at.
    pub optind: usize,
    /// Unscanned rest of the current cluster (`opt_ptr`).
    cluster: &'a [u8],
}

impl<'a> GetOpt<'a> {
    /// A fresh scan (`_PyOS_ResetGetOpt`).
    pub(super) fn new(args: &'a [OsString], version: Version) -> Self {
        GetOpt {
            args,
            version,
            optind: 0,
            cluster: &[],
        }
    }

    /// The next option. Mirrors `_PyOS_GetOpt`.
    pub(super) fn next_opt(&mut self) -> Opt<'a> {
        if self.cluster.is_empty() {
            let Some(arg) = self.args.get(self.optind) else {
                return Opt::End;
            };
            let arg = arg.as_bytes();
            if arg.first() != Some(&b'-') || arg.len() == 1 {
                // A non-option or a lone dash.
                return Opt::End;
            }
            match arg {
                b"--" => {
                    self.optind += 1;
                    return Opt::End;
                }
                b"--help" => {
                    self.optind += 1;
                    return Opt::Short(b'h', None);
                }
                b"--version" => {
                    self.optind += 1;
                    return Opt::Short(b'V', None);
                }
                _ => {}
            }
            self.cluster = &arg[1..];
            self.optind += 1;
        }

        let option = self.cluster[0];
        self.cluster = &self.cluster[1..];

        if option == b'-' && self.version >= (3, 7) {
            // Long option: the rest of the cluster is its whole name.
            if self.cluster.is_empty() {
                // CPython prints "expected long option" and stops parsing
                // options; the next argv entry becomes the target.
                return Opt::End;
            }
            // On an unknown name CPython leaves opt_ptr in place, so a scan
            // that goes on reads the name's letters as short options.
            let Some((has_arg, which)) = long_opt(self.cluster, self.version) else {
                return Opt::Error("unknown long option");
            };
            self.cluster = &[];
            if !has_arg {
                return Opt::Long(which, None);
            }
            let Some(value) = self.args.get(self.optind) else {
                return Opt::Error("a long option is missing its argument");
            };
            self.optind += 1;
            return Opt::Long(which, Some(value.as_bytes()));
        }

        if option == JYTHON {
            return Opt::Error("-J is reserved for Jython");
        }

        match short_opt(option, self.version) {
            None => Opt::Error("unknown option"),
            Some(false) => Opt::Short(option, None),
            Some(true) => {
                if !self.cluster.is_empty() {
                    return Opt::Short(option, Some(std::mem::take(&mut self.cluster)));
                }
                let Some(value) = self.args.get(self.optind) else {
                    return Opt::Error("an option is missing its argument");
                };
                self.optind += 1;
                Opt::Short(option, Some(value.as_bytes()))
            }
        }
    }
}

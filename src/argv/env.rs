//! How CPython reads its `PYTHON*` environment variables and numeric option
//! values. Each rule is here once, named after the CPython function it mirrors.

use super::getopt::Version;
use std::ffi::OsString;
use std::os::unix::ffi::OsStrExt;

/// The launch environment as CPython sees it: every lookup goes through
/// [`Env::get`], which applies `-E`/`-I`.
pub(crate) struct Env<'a> {
    lookup: &'a dyn Fn(&str) -> Option<OsString>,
    /// `config->use_environment` (false under `-E` / `-I`).
    pub use_environment: bool,
}

impl<'a> Env<'a> {
    pub(super) fn new(lookup: &'a dyn Fn(&str) -> Option<OsString>, use_environment: bool) -> Self {
        Env {
            lookup,
            use_environment,
        }
    }

    /// The variable's value, or `None` when unset, empty, or the environment
    /// is ignored. Mirrors `_Py_GetEnv` / `config_get_env` (3.8+),
    /// `config_get_env_var` (3.7) and `Py_GETENV(..) && *p != '\0'` (3.6).
    pub(super) fn get(&self, name: &str) -> Option<OsString> {
        if !self.use_environment {
            return None;
        }
        (self.lookup)(name).filter(|v| !v.is_empty())
    }

    /// Whether the variable is set to a non-empty value (`config_get_env` != NULL).
    pub(super) fn is_set(&self, name: &str) -> bool {
        self.get(name).is_some()
    }

    /// Applies a numeric flag variable to `flag` (`PYTHONOPTIMIZE`,
    /// `PYTHONVERBOSE`, `PYTHONDONTWRITEBYTECODE`, `PYTHONNOUSERSITE`).
    ///
    /// 3.7+ mirrors `_Py_get_env_flag` (Python/initconfig.c; `get_env_flag`
    /// in 3.7's Modules/main.c): a value that is not a whole C `int`
    /// (`_Py_str_to_int`) or is negative counts as 1, and the flag becomes
    /// `max(flag, value)`; so `"0"` leaves the flag alone.
    /// 3.6 mirrors `add_flag` (Python/pylifecycle.c): `max(flag, atoi(v), 1)`.
    pub(super) fn flag(&self, name: &str, flag: u32, version: Version) -> u32 {
        let Some(value) = self.get(name) else {
            return flag;
        };
        let value = value.as_bytes();
        if version < (3, 7) {
            let env = i64::from(c_atoi(value));
            return i64::from(flag).max(env).max(1) as u32;
        }
        let value = match str_to_int(value) {
            Some(v) if v >= 0 => v as u32,
            _ => 1,
        };
        flag.max(value)
    }
}

/// C `isspace` in the "C" locale.
fn is_c_space(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\n' | 0x0b | 0x0c | b'\r')
}

/// C `strtol(s, &end, 10)` on a 64-bit `long`: the value (saturated on
/// overflow), whether it overflowed (`ERANGE`), and how many bytes it used
/// (0 when no digits were found).
fn c_strtol(s: &[u8]) -> (i64, bool, usize) {
    let mut i = 0;
    while i < s.len() && is_c_space(s[i]) {
        i += 1;
    }
    let mut negative = false;
    if i < s.len() && (s[i] == b'+' || s[i] == b'-') {
        negative = s[i] == b'-';
        i += 1;
    }
    let digits_start = i;
    // Accumulate as a negative number so i64::MIN fits.
    let mut acc: i64 = 0;
    let mut overflow = false;
    while i < s.len() && s[i].is_ascii_digit() {
        let d = i64::from(s[i] - b'0');
        match acc.checked_mul(10).and_then(|a| a.checked_sub(d)) {
            Some(a) if !overflow => acc = a,
            _ => overflow = true,
        }
        i += 1;
    }
    if i == digits_start {
        return (0, false, 0);
    }
    let value = if overflow {
        if negative {
            i64::MIN
        } else {
            i64::MAX
        }
    } else if negative {
        acc
    } else {
        match acc.checked_neg() {
            Some(v) => v,
            None => {
                overflow = true;
                i64::MAX
            }
        }
    };
    (value, overflow, i)
}

/// C `atoi` as glibc implements it: `(int) strtol(s, NULL, 10)`, wrapping.
fn c_atoi(s: &[u8]) -> i32 {
    c_strtol(s).0 as i32
}

/// A whole C `int`, or `None`. Mirrors `_Py_str_to_int` (Python/fileutils.c;
/// `pymain_str_to_int` in 3.7) and, for wide strings, `config_wstr_to_int`:
/// `strtol` base 10 must consume everything (leading C whitespace and a sign
/// are allowed, trailing anything is not), without `ERANGE`, within `int`.
pub(crate) fn str_to_int(s: &[u8]) -> Option<i32> {
    let (value, overflow, used) = c_strtol(s);
    // No digits leaves endptr at the start, which fails unless the string
    // is empty: strtol("") "succeeds" with 0 (`-X int_max_str_digits=`).
    if used != s.len() || overflow {
        return None;
    }
    i32::try_from(value).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn str_to_int_is_c_strtol_whole() {
        assert_eq!(str_to_int(b"2"), Some(2));
        assert_eq!(str_to_int(b" 2"), Some(2));
        assert_eq!(str_to_int(b"\t+2"), Some(2));
        assert_eq!(str_to_int(b"-0"), Some(0));
        assert_eq!(str_to_int(b"-1"), Some(-1));
        assert_eq!(str_to_int(b"2 "), None);
        assert_eq!(str_to_int(b"abc"), None);
        assert_eq!(str_to_int(b"+"), None);
        assert_eq!(str_to_int(b" "), None);
        assert_eq!(str_to_int(b"0x10"), None);
        assert_eq!(str_to_int(b"2147483647"), Some(i32::MAX));
        assert_eq!(str_to_int(b"2147483648"), None);
        assert_eq!(str_to_int(b"-2147483648"), Some(i32::MIN));
        assert_eq!(str_to_int(b"99999999999999999999999"), None);
        assert_eq!(str_to_int(b""), Some(0));
    }

    #[test]
    fn atoi_wraps_like_glibc() {
        assert_eq!(c_atoi(b"2 "), 2);
        assert_eq!(c_atoi(b"abc"), 0);
        assert_eq!(c_atoi(b"99999999999"), 1215752191);
        assert_eq!(c_atoi(b"-1"), -1);
        assert_eq!(c_atoi(b"99999999999999999999999"), -1); // LONG_MAX as int
    }

    #[test]
    fn env_flag_rules() {
        let lookup = |v: &'static str| move |_: &str| Some(OsString::from(v));
        let check = |v: &'static str, flag: u32, version: Version| {
            let l = lookup(v);
            Env::new(&l, true).flag("X", flag, version)
        };
        assert_eq!(check("0", 0, (3, 12)), 0);
        assert_eq!(check("0", 0, (3, 6)), 1);
        assert_eq!(check("2 ", 0, (3, 12)), 1);
        assert_eq!(check("2 ", 0, (3, 6)), 2);
        assert_eq!(check(" 2", 0, (3, 7)), 2);
        assert_eq!(check("-1", 0, (3, 7)), 1);
        assert_eq!(check("-1", 3, (3, 7)), 3);
        assert_eq!(check("abc", 2, (3, 7)), 2);
        assert_eq!(check("", 0, (3, 7)), 0);
        let l = lookup("5");
        assert_eq!(Env::new(&l, false).flag("X", 0, (3, 12)), 0);
    }
}

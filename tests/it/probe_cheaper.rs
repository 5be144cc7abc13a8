//! The probe without `json` and `importlib.util` (session 5) answers what
//! the probe that imported them answered, on every interpreter, plain and
//! inside a venv whose site-packages holds a `.pth` file (a path line and
//! an import line), under the flags that change the facts: every fact
//! equal, except start-up modules the reference missed (it had imported
//! them itself before `site.main()`), each checked against a real start. The reference is the previous
//! `probe.py`, kept verbatim in `tests/it/data/probe_json_reference.py`.
//! Its encoder is also compared with `json.dumps` on awkward strings.

use crate::common;

use common::Python;
use kolosal::interpreter::{PROBE_PROLOGUE, PROBE_SCRIPT};
use serde_json::Value;
use std::collections::BTreeSet;
use std::fs;
use std::path::Path;

const REFERENCE: &str = include_str!("data/probe_json_reference.py");

/// One probe run (`script`, answering on stdout: fd 1) of `python` with
/// `flags`, in a clean environment.
fn answer(python: &Path, flags: &[&str], script: &str, cwd: &Path) -> Vec<u8> {
    let o = common::clean_command(python)
        .current_dir(cwd)
        .args(flags)
        .arg("-S")
        .arg("-c")
        .arg(PROBE_PROLOGUE)
        .arg("1")
        .arg("0")
        .arg(script)
        .output()
        .expect("run the probe");
    assert!(o.status.success(), "{}", common::describe(&o));
    assert!(o.stdout.starts_with(b"{\""), "{}", common::describe(&o));
    o.stdout
}

/// A venv of `py` (no pip) whose site-packages has a `.pth` with a path
/// line and an import line; its interpreter.
fn venv_with_pth(py: &Python, dir: &Path) -> Option<std::path::PathBuf> {
    let o = py
        .cmd()
        .args(["-m", "venv", "--without-pip"])
        .arg(dir)
        .output()
        .ok()?;
    if !o.status.success() {
        return None;
    }
    let lib = fs::read_dir(dir.join("lib")).ok()?.next()?.ok()?.path();
    let sp = lib.join("site-packages");
    fs::create_dir_all(dir.join("extra")).ok()?;
    fs::write(
        sp.join("zz_kolosal.pth"),
        format!("{}\nimport sys\n", dir.join("extra").display()),
    )
    .ok()?;
    Some(dir.join("bin/python"))
}

#[test]
fn cheaper_probe_answers_as_the_json_probe() {
    let pythons = common::pythons();
    common::report("probe_cheaper", &pythons);
    let t = tempfile::tempdir().unwrap();
    let (mut compared, mut extra) = (0, 0);
    for (i, py) in pythons.iter().enumerate() {
        let venv = venv_with_pth(py, &t.path().join(format!("venv{i}")));
        let mut targets = vec![py.path.clone()];
        targets.extend(venv);
        for target in &targets {
            for flags in [&[][..], &["-I"], &["-s"], &["-E"]] {
                let ours = answer(target, flags, PROBE_SCRIPT, t.path());
                let reference = answer(target, flags, REFERENCE, t.path());
                let mut ours: Value = serde_json::from_slice(&ours).unwrap();
                let mut reference: Value = serde_json::from_slice(&reference).unwrap();
                let ours_startup = take_names(&mut ours, "startup_modules");
                let ref_startup = take_names(&mut reference, "startup_modules");
                // Every other fact is the same.
                assert_eq!(ours, reference, "{} {flags:?}", target.display());
                // Start-up modules: the reference imported json (re, enum,
                // ...) before running site.main(), so a module site.main()
                // imports that json had already loaded was missed (3.7/3.8:
                // _locale, via _bootlocale). Ours may only add modules that
                // a real start of the same interpreter has loaded.
                assert!(
                    ref_startup.is_subset(&ours_startup),
                    "{} {flags:?}: lost {:?}",
                    target.display(),
                    ref_startup.difference(&ours_startup).collect::<Vec<_>>()
                );
                let added: Vec<&String> = ours_startup.difference(&ref_startup).collect();
                if !added.is_empty() {
                    let real = real_startup(target, flags, t.path());
                    for m in &added {
                        assert!(
                            real.contains(*m),
                            "{} {flags:?}: {m} is not loaded at a real start",
                            target.display()
                        );
                    }
                    extra += added.len();
                }
                compared += 1;
            }
        }
    }
    // At least one venv per interpreter besides the plain runs.
    assert!(compared >= pythons.len() * 8 - 8, "{compared}");
    common::note(&format!(
        "[probe_cheaper] {compared} probes compared; {extra} start-up modules the reference missed, each confirmed by a real start"
    ));
}

/// Removes `key` (a list of strings) from `v`, as a set.
fn take_names(v: &mut Value, key: &str) -> BTreeSet<String> {
    let list = v.as_object_mut().unwrap().remove(key).unwrap();
    list.as_array()
        .unwrap()
        .iter()
        .map(|n| n.as_str().unwrap().to_string())
        .collect()
}

/// `sys.modules` of a real start of `python` with `flags` (`-c`, so site
/// runs as it does for any program).
fn real_startup(python: &Path, flags: &[&str], cwd: &Path) -> BTreeSet<String> {
    let o = common::clean_command(python)
        .current_dir(cwd)
        .args(flags)
        .args(["-c", "import sys; print(' '.join(sys.modules))"])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", common::describe(&o));
    String::from_utf8_lossy(&o.stdout)
        .split_whitespace()
        .map(str::to_string)
        .collect()
}

#[test]
fn probe_encoder_is_json_dumps() {
    // The probe's functions without its last line (the call that probes).
    let (defs, call) = PROBE_SCRIPT.trim_end().rsplit_once('\n').unwrap();
    assert!(call.starts_with("_probe("), "{call}");
    let check = format!(
        "{defs}\nimport json, sys\n\
         vals = ['', 'abc', 'a\"b\\\\c/', ''.join(map(chr, range(0, 0x800))),\n\
                 '\\ud800\\udcff', '\\U0001f600 \\U0010ffff', '\\x7f\\x80', 'caf\\xe9',\n\
                 {{'k\\n': [1, -2, 10**20, True, False, None, ('t',)], '\\u20ac': {{}}}}, [], {{}}]\n\
         for v in vals:\n\
         \x20   if _json_text(v) != json.dumps(v):\n\
         \x20       sys.exit('differs for %r: %r vs %r' % (v, _json_text(v), json.dumps(v)))\n\
         print('same', len(vals))\n"
    );
    let pythons = common::pythons();
    common::report("probe_cheaper/encoder", &pythons);
    for py in &pythons {
        let o = py.cmd().arg("-c").arg(&check).output().unwrap();
        assert!(
            o.status.success(),
            "{}: {}",
            py.label(),
            common::describe(&o)
        );
        assert_eq!(String::from_utf8_lossy(&o.stdout).trim(), "same 11");
    }
}

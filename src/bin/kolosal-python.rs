//! `kolosal-python`: a drop-in `python`. For now it finds `python3` on PATH
//! (skipping itself) and execs it with argv unchanged; the full pipeline
//! arrives with the launcher work.

use std::ffi::OsString;

fn main() {
    let args: Vec<OsString> = std::env::args_os().skip(1).collect();
    let me = std::env::current_exe()
        .ok()
        .and_then(|p| p.canonicalize().ok());
    let found = which::which_all("python3")
        .ok()
        .and_then(|mut it| it.find(|p| p.canonicalize().ok() != me));
    let Some(python) = found else {
        eprintln!("kolosal-python: no python3 found on PATH; set KOLOSAL_PYTHON to an interpreter");
        std::process::exit(127);
    };
    let err = kolosal::exec::exec_python(&python, python.as_os_str(), &args, &Default::default());
    eprintln!("kolosal-python: could not run {}: {err}", python.display());
    std::process::exit(127);
}

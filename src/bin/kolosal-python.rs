//! `kolosal-python`: a drop-in `python`. See [`kolosal::launch`] for the
//! pipeline; this binary only starts it.

fn main() {
    kolosal::exec::restore_default_sigpipe();
    kolosal::launch::run()
}

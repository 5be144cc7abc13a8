//! `kolosal-python`: a drop-in `python`. See [`kolosal::launch`] for the
//! pipeline; this binary only starts it.

/// Runs before the Rust runtime reopens closed standard descriptors on
/// `/dev/null`, so the exec can hand the program the descriptors we got.
#[used]
#[link_section = ".init_array"]
static NOTE_CLOSED_STD_FDS: extern "C" fn() = kolosal::launch::note_closed_std_fds;

fn main() {
    kolosal::launch::restore_default_sigpipe();
    kolosal::launch::run()
}

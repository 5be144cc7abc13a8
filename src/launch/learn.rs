//! Run-time learning: the modules a program loads that no static closure
//! can see.
//!
//! A program that imports by computed name (`importlib.import_module(name)`
//! with a name from a settings file, entry-point plugins, `__import__` in a
//! loop) loads modules the closure walk never reaches. Under
//! `PYTHONDONTWRITEBYTECODE=1` nobody writes their pycs, so every start
//! compiles them again. The learner watches the program from outside and
//! records them in the manifest, so the next start finds their pycs fresh:
//!
//! 1. The launch (cold, repair, or warm while [`Manifest::learning`] holds)
//!    takes this key's learner lock (`<digest>.learn` next to the manifest;
//!    held means a learner is already watching: nothing is started), opens a
//!    pidfd of its own process (the program: `execv` keeps the pid) and
//!    starts `kolosal-python` with the same argv, directory and environment
//!    as a learner (`spawn_detached`: fork, fork, exec; like the
//!    background run it is nobody's child, in its own process group, with
//!    stdio on `/dev/null`; once its watches are in place it switches to
//!    `SCHED_IDLE`, inherited by its compile workers, and only then reads
//!    the manifest, once a background run of the launch is done (at most
//!    [`super::background::BACKGROUND_WAIT`]): that run may be what
//!    records it. A launch that ran on the probe cache's guess
//!    (`prepare::hand_over`) has its learner place the watches from the
//!    guess too, and learn only if the probed facts turn out the same).
//!    The lock, the pidfd and a pipe are handed down; the
//!    launch waits on the pipe (at most [`LEARN_READY_WAIT`]) until the
//!    watches are in place, so the program's imports never race them
//!    (a first learner's deeper watches excepted, see 2).
//! 2. The learner puts one inotify watch (`IN_OPEN`) on every directory of
//!    the program's `sys.path` and, breadth first, on their package
//!    subdirectories, up to `KOLOSAL_LEARN_WATCHES` and the kernel's limit.
//!    The directories it watched are remembered (`<digest>.watch`): the
//!    next learner re-adds those watches first, listing nothing, tells the
//!    launch, and walks the trees for what is new only once the program
//!    exits or after [`IDLE_ROUND`]; the walk's result is the next list.
//!    A first learner (no list yet) tells the launch once the entries and
//!    the directories right below them are watched ([`FIRST_WATCH_DEPTH`])
//!    and walks deeper while the program starts: what the program opens
//!    in a directory not watched yet is learned by the next learner.
//! 3. While the program runs, each `.py` opened in a watched directory is
//!    looked at once, soon (the queue is read every [`BATCH`], so the
//!    program is not woken beside a learner at each open): when its pyc is not fresh (importlib's own
//!    check) the program is loading it from source, and it becomes a
//!    candidate. When the pyc *is* fresh, something read the source for
//!    another reason: `linecache` (a traceback) or a loader with its own
//!    cache (pytest's assertion rewriting): see "Python's own pyc writing"
//!    below. Sources of the static closure are ignored (the launch and the
//!    background run own them), and so is the script.
//! 4. When the program exits (the pidfd polls readable), or after
//!    [`IDLE_ROUND`] without a new candidate (a server, a worker), the
//!    candidates are mapped to module names through `sys.path`, their
//!    static closure is computed (so what they import at module level is
//!    learned too), the stale pycs are compiled by the usual pool under the
//!    cache lock, and the manifest gains one learned [`ModuleRecord`] per
//!    module, with its source and `__pycache__` stamped like the closure's:
//!    an edit to a learned module sends the next launch to the repair path.
//!    The merge re-reads the manifest and stores only if nobody stored
//!    another one meanwhile (compare and rename; else it merges again).
//!
//! Nothing of this touches the program: no code injected, `sys.path`,
//! `sys.modules`, `sys.flags`, its stdio and its exit status are those of a
//! launch without learning. The watch costs the kernel a queued event per
//! `open` in a watched directory.
//!
//! When learning stops: every cold or repaired launch starts learning
//! again; a warm launch starts a learner only while the manifest says
//! learning is on, which it stops being after [`QUIET_RUNS_TO_STOP`]
//! learning runs in a row found nothing new. Then the warm path is back to
//! one read and a few hundred stats, with no process spawned.
//!
//! Python's own pyc writing: when a learning run sees a source outside the
//! static closure opened although its pyc is fresh, a loader that keeps its
//! own cache read it (pytest's assertion rewriting keeps
//! `*-pytest-*.pyc` files and writes them only when `sys.dont_write_bytecode`
//! is false). For such an entry `PYTHONDONTWRITEBYTECODE=1` costs more than
//! it saves: the variable only stops the interpreter from writing pycs of
//! modules kolosal left stale, which the learner compiles anyway, while it
//! makes that loader redo its work on every start. The manifest then
//! records [`Manifest::write_bytecode`], and launches of it leave the
//! variable unset (sticky; a new manifest from a cold launch keeps it).
//!
//! Trust: only directories and sources owned by this user or root and
//! writable by nobody else are watched and compiled (`trusted`).
//!
//! Degrading: a directory removed while watched, a watch refused (the
//! kernel's `max_user_watches`, `KOLOSAL_LEARN_WATCHES`), a learned module
//! that vanishes or no longer compiles, a program that exits before the
//! watches are in place: the module is simply not learned. The learner
//! never writes to the program's stdout or stderr and never delays it.

use super::error::StartError;
use super::prepare::{compile_stale, interpreter_view, stale_with_reasons, watch_view, Context};
use crate::argv::{LaunchSpec, Target};
use crate::closure::graph::{self, ClosureOptions, Entry};
use crate::closure::listing;
use crate::closure::resolve::{launch_sys_path, sys_path0};
use crate::interpreter::PythonFacts;
use crate::manifest::{self, Expect, LaunchKey, Manifest, ModuleRecord};
use crate::pyc::{self, PycRules, PycTarget, Verdict};
use std::collections::{BTreeSet, HashMap, HashSet, VecDeque};
use std::ffi::{OsStr, OsString};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// Hands the program's pid, its pidfd and the learner lock's descriptor to
/// the learner: `PID:PIDFD:LOCKFD` (`-1` for no pidfd).
pub(crate) const HANDOFF_VAR: &str = "KOLOSAL_INTERNAL_LEARN";

/// Learning runs in a row that found nothing new after which warm launches
/// stop starting learners. Two, not one: a run can miss a module when the
/// program loads it before the watches are in place.
pub(crate) const QUIET_RUNS_TO_STOP: u8 = 2;

/// A long-running program's candidates are processed once no new one has
/// arrived for this long.
pub(crate) const IDLE_ROUND: Duration = Duration::from_secs(2);

/// While the program runs, the learner reads the queued events this often
/// (and at its exit), not at each event.
const BATCH: Duration = Duration::from_millis(500);

/// Paths remembered per learning run at most (memory bound for servers
/// that open many `.py` files).
const SEEN_CAP: usize = 100_000;

/// Launch side: starts a learner for the program this process is about to
/// become, unless one is already running for `key`. Returns whether one was
/// started.
pub(crate) fn start(
    key: &LaunchKey,
    argv0: Option<&OsStr>,
    args: &[OsString],
) -> Result<bool, StartError> {
    let Some(lock) = super::background::try_key_lock(key, "learn")? else {
        return Ok(false);
    };
    let pid = std::process::id();
    // SAFETY: pidfd_open(2) on this process; the descriptor it returns is
    // close-on-exec and owned below.
    let raw = unsafe { libc::syscall(libc::SYS_pidfd_open, pid as libc::pid_t, 0) } as RawFd;
    // SAFETY: a descriptor pidfd_open just returned, owned by nothing else.
    let pidfd = (raw >= 0).then(|| unsafe { OwnedFd::from_raw_fd(raw) });
    let pidfd_raw = pidfd.as_ref().map_or(-1, |f| f.as_raw_fd());
    let lock_fd = lock.as_raw_fd();
    let exe = std::env::current_exe().map_err(StartError::CurrentExe)?;
    // The learner says on this pipe when its watches are in place (or
    // closes it when it gives up), so the program never races them.
    let (ready_r, ready_w) =
        nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).map_err(|e| StartError::Fork(e.into()))?;
    let ready_fd = ready_w.as_raw_fd();
    let handoff = format!("{pid}:{pidfd_raw}:{lock_fd}:{ready_fd}");
    let spawned = super::background::spawn_detached(
        &exe,
        argv0.unwrap_or(exe.as_os_str()),
        args,
        "learn",
        Some(&handoff),
        &[lock_fd, pidfd_raw, ready_fd],
    );
    drop(pidfd);
    drop(ready_w);
    spawned?;
    wait_until_watching(&ready_r);
    // As for the background lock: the learner holds the shared open file
    // description; ours closes with the exec.
    std::mem::forget(lock);
    Ok(true)
}

/// How long a learning launch waits for its learner's watches before it
/// execs anyway. Measured: 2-15 ms at the loads seen here; a learner that
/// takes longer only learns less this run.
pub(crate) const LEARN_READY_WAIT: Duration = Duration::from_millis(300);

/// Waits (at most [`LEARN_READY_WAIT`]) until the learner wrote its byte or
/// closed its end of `ready`.
fn wait_until_watching(ready: &OwnedFd) {
    let mut p = libc::pollfd {
        fd: ready.as_raw_fd(),
        events: libc::POLLIN,
        revents: 0,
    };
    let ms = LEARN_READY_WAIT.as_millis() as libc::c_int;
    // SAFETY: one pollfd on the stack; POLLIN or POLLHUP ends the wait.
    while unsafe { libc::poll(&mut p, 1, ms) } < 0 {
        if std::io::Error::last_os_error().raw_os_error() != Some(libc::EINTR) {
            break;
        }
    }
}

/// What the launch handed down.
struct Handoff {
    pid: libc::pid_t,
    pidfd: Option<OwnedFd>,
    _lock: Option<OwnedFd>,
    /// The launch waits on the other end until this is written or closed.
    ready: Option<OwnedFd>,
}

impl Handoff {
    fn from_env() -> Option<Handoff> {
        let v = std::env::var_os(HANDOFF_VAR)?;
        std::env::remove_var(HANDOFF_VAR);
        let mut parts = v.to_str()?.split(':').map(|p| p.parse::<i32>().ok());
        let (pid, pidfd, lock) = (parts.next()??, parts.next()??, parts.next()??);
        let ready = parts.next().flatten().unwrap_or(-1);
        let own = |fd: RawFd| {
            // SAFETY: F_GETFD on a number only checks whether it is open.
            (fd > 2 && unsafe { libc::fcntl(fd, libc::F_GETFD) } != -1).then(|| {
                // Close-on-exec again: the compile workers must not hold them.
                // SAFETY: fcntl on a descriptor this process was handed.
                unsafe { libc::fcntl(fd, libc::F_SETFD, libc::FD_CLOEXEC) };
                // SAFETY: the launch handed this descriptor to us alone.
                unsafe { OwnedFd::from_raw_fd(fd) }
            })
        };
        Some(Handoff {
            pid,
            pidfd: own(pidfd),
            _lock: own(lock),
            ready: own(ready),
        })
    }

    /// Tells the launch the watches are in place, so it may exec.
    fn watching(&mut self) {
        if let Some(fd) = self.ready.take() {
            // SAFETY: one byte from the stack to a pipe we own.
            unsafe { libc::write(fd.as_raw_fd(), b"1".as_ptr().cast(), 1) };
        }
    }

    /// Whether the program is still running.
    fn alive(&self) -> bool {
        if let Some(fd) = &self.pidfd {
            let mut p = libc::pollfd {
                fd: fd.as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            };
            // SAFETY: one pollfd on the stack, no timeout.
            return unsafe { libc::poll(&mut p, 1, 0) } == 0;
        }
        // SAFETY: kill(2) with signal 0 sends nothing.
        unsafe { libc::kill(self.pid, 0) == 0 }
    }
}

/// One inotify instance and the directories it watches.
struct Watcher {
    fd: OwnedFd,
    dirs: HashMap<i32, PathBuf>,
}

impl Watcher {
    fn new() -> Option<Watcher> {
        // SAFETY: inotify_init1(2); the descriptor is owned below.
        let fd = unsafe { libc::inotify_init1(libc::IN_CLOEXEC | libc::IN_NONBLOCK) };
        // SAFETY: a descriptor just returned, owned by nothing else.
        (fd >= 0).then(|| Watcher {
            fd: unsafe { OwnedFd::from_raw_fd(fd) },
            dirs: HashMap::new(),
        })
    }

    /// Watches `roots` and the package directories below them, the whole
    /// [`TreeWalk`] at once. Returns the directories it watched, in order.
    fn watch_trees(&mut self, roots: &[PathBuf], cap: usize) -> Vec<PathBuf> {
        let mut walk = TreeWalk::new(roots);
        walk.run(self, cap, usize::MAX);
        walk.walked
    }

    /// Watches `dirs` (a list [`Self::watch_trees`] produced before) as they
    /// are, listing nothing: each still has to be a directory this user may
    /// act on ([`trusted`]), and only a `sys.path` entry (`roots`) is
    /// followed if it is a symlink.
    fn watch_listed(&mut self, dirs: &[PathBuf], roots: &[PathBuf], cap: usize) {
        for dir in dirs {
            if self.dirs.len() >= cap {
                return;
            }
            let root = roots.contains(dir);
            let meta = if root {
                std::fs::metadata(dir)
            } else {
                std::fs::symlink_metadata(dir)
            };
            if !meta.is_ok_and(|m| m.is_dir() && trusted(&m)) {
                continue;
            }
            match self.add(dir, root) {
                Ok(wd) => self.insert(wd, dir.clone()),
                Err(Full) => return,
                Err(Refused) => {}
            }
        }
    }

    /// One `inotify_add_watch` (`IN_OPEN`); a directory that is not a
    /// `sys.path` entry is never followed through a symlink.
    fn add(&self, dir: &Path, root: bool) -> Result<i32, AddError> {
        let mut cpath = dir.as_os_str().as_bytes().to_vec();
        cpath.push(0);
        let mut mask = libc::IN_OPEN | libc::IN_ONLYDIR | libc::IN_EXCL_UNLINK;
        if !root {
            mask |= libc::IN_DONT_FOLLOW;
        }
        // SAFETY: a NUL-terminated path; the fd is ours.
        let wd =
            unsafe { libc::inotify_add_watch(self.fd.as_raw_fd(), cpath.as_ptr().cast(), mask) };
        if wd >= 0 {
            Ok(wd)
        } else if std::io::Error::last_os_error().raw_os_error() == Some(libc::ENOSPC) {
            Err(Full)
        } else {
            Err(Refused)
        }
    }

    fn insert(&mut self, wd: i32, dir: PathBuf) {
        self.dirs.insert(wd, dir);
    }

    /// Reads the queued events; calls `f` with the path of each `.py` file
    /// opened. Returns false when nothing was queued.
    fn read(&self, f: &mut dyn FnMut(PathBuf)) -> bool {
        const HEADER: usize = std::mem::size_of::<libc::inotify_event>();
        let mut buf = vec![0u8; 64 * 1024];
        let mut any = false;
        loop {
            // SAFETY: reads into a buffer we own, at most its length.
            let n = unsafe { libc::read(self.fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len()) };
            if n <= 0 {
                return any;
            }
            any = true;
            let mut off = 0usize;
            let n = n as usize;
            while off + HEADER <= n {
                // SAFETY: HEADER bytes are in the buffer; read_unaligned copies them.
                let ev: libc::inotify_event =
                    unsafe { std::ptr::read_unaligned(buf[off..].as_ptr().cast()) };
                let name_end = (off + HEADER + ev.len as usize).min(n);
                let name = &buf[off + HEADER..name_end];
                let name = &name[..name.iter().position(|&b| b == 0).unwrap_or(name.len())];
                off = name_end;
                if ev.mask & libc::IN_ISDIR != 0 || ev.mask & libc::IN_OPEN == 0 {
                    continue;
                }
                if !name.ends_with(b".py") {
                    continue;
                }
                if let Some(dir) = self.dirs.get(&ev.wd) {
                    f(dir.join(OsStr::from_bytes(name)));
                }
            }
        }
    }
}

/// A breadth-first walk that watches `roots` (followed if symlinks: they
/// are `sys.path` entries, which the interpreter follows too) and every
/// subdirectory a package could live in (never through a symlink), up to a
/// cap of watched directories; it stops at the kernel's limit (`ENOSPC`).
/// It can stop after a given depth and be resumed: a first learner
/// watches the entries and their top-level directories before the program
/// starts, and the rest while it runs ([`FIRST_WATCH_DEPTH`]).
///
/// Which subdirectories: any with an identifier name two levels below
/// an entry (namespace packages, PEP 420, such as `google/cloud`), and
/// deeper only regular packages (an `__init__.py`). That leaves out data
/// trees (Django's `locale/*/LC_MESSAGES`: 2,972 directories to watch
/// for a Django venv otherwise, about 400 this way).
struct TreeWalk {
    /// Directories still to watch, with their depth below their entry.
    queue: VecDeque<(PathBuf, usize)>,
    /// Watched, not yet listed (the depth a paused run stopped at).
    unlisted: Vec<(PathBuf, usize)>,
    ids: HashSet<(u64, u64)>,
    /// The directories watched, in order (some may have been watched
    /// already: re-adding a watch returns its descriptor).
    walked: Vec<PathBuf>,
    /// The cap or the kernel's limit was reached: nothing more to do.
    stopped: bool,
}

impl TreeWalk {
    fn new(roots: &[PathBuf]) -> TreeWalk {
        TreeWalk {
            queue: roots.iter().map(|r| (r.clone(), 0)).collect(),
            unlisted: Vec::new(),
            ids: HashSet::new(),
            walked: Vec::new(),
            stopped: false,
        }
    }

    /// Watches the queued directories down to `depth` below their entry
    /// (`usize::MAX`: all), listing those above it for their
    /// subdirectories; a later run with a greater depth goes on from there.
    fn run(&mut self, w: &mut Watcher, cap: usize, depth: usize) {
        if depth > 0 {
            for (dir, d) in std::mem::take(&mut self.unlisted) {
                self.list(&dir, d);
            }
        }
        while !self.stopped {
            match self.queue.front() {
                Some((_, d)) if *d <= depth => {}
                _ => return,
            }
            let Some((dir, d)) = self.queue.pop_front() else {
                return;
            };
            if w.dirs.len() >= cap {
                self.stopped = true;
                return;
            }
            let Ok(meta) = std::fs::metadata(&dir) else {
                continue;
            };
            if !meta.is_dir() || !trusted(&meta) || !self.ids.insert((meta.dev(), meta.ino())) {
                continue;
            }
            let wd = match w.add(&dir, d == 0) {
                Ok(wd) => wd,
                Err(Full) => {
                    self.stopped = true;
                    return;
                }
                Err(Refused) => continue,
            };
            self.walked.push(dir.clone());
            if d < depth {
                self.list(&dir, d);
            } else {
                self.unlisted.push((dir.clone(), d));
            }
            w.insert(wd, dir);
        }
    }

    /// Queues the subdirectories of `dir` (at `depth`) a package could be.
    fn list(&mut self, dir: &Path, depth: usize) {
        let Ok(rd) = std::fs::read_dir(dir) else {
            return;
        };
        for e in rd.flatten() {
            // d_type: a symlink is not a directory here.
            if e.file_type().is_ok_and(|t| t.is_dir())
                && e.file_name().to_str().is_some_and(is_identifier)
            {
                let sub = e.path();
                if depth < 2 || sub.join("__init__.py").is_file() {
                    self.queue.push_back((sub, depth + 1));
                }
            }
        }
    }
}

/// How deep a first learner (no remembered watch list) watches before it
/// lets the program start: the `sys.path` entries and the directories
/// right below them (top-level packages: one listing per entry, no more).
/// The deeper directories are watched while the program runs, at idle
/// priority: an open there before its watch is learned by the next
/// learner, which starts from the full list. Waiting for the whole walk
/// cost a first launch in a new venv 20-50 ms (600 directories for the
/// bench's venv, `docs/benchmarks.md`, session 6).
const FIRST_WATCH_DEPTH: usize = 1;

/// The walk of the watched trees still to do after a remembered list.
struct Walk {
    roots: Vec<PathBuf>,
    cap: usize,
    remembered: Vec<PathBuf>,
}

impl Walk {
    /// Stores what the walk watched as the next learner's list, when it
    /// changed (directories only the old list had are dropped from it).
    fn done(&self, key: &LaunchKey, walked: &[PathBuf]) {
        if walked != self.remembered.as_slice() {
            store_watch_list(key, walked);
        }
    }
}

/// Why a watch was not added.
enum AddError {
    /// The kernel's limit (`ENOSPC`): no more watches at all.
    Full,
    /// This directory only.
    Refused,
}
use AddError::{Full, Refused};

/// `<cache>/manifests/<digest>.watch`: the directories the last learner of
/// `key` watched, NUL-separated, in the order it watched them.
fn watch_list_path(key: &LaunchKey) -> Option<PathBuf> {
    super::background::key_lock_path(key, "watch")
}

/// The remembered watch list of `key`, read only when this user wrote it
/// ([`crate::cache::read_private`]); empty when there is none.
fn read_watch_list(key: &LaunchKey) -> Vec<PathBuf> {
    let Some(bytes) = watch_list_path(key).and_then(|p| crate::cache::read_private(&p).ok()) else {
        return Vec::new();
    };
    bytes
        .split(|&b| b == 0)
        .filter(|p| p.first() == Some(&b'/'))
        .map(|p| PathBuf::from(OsStr::from_bytes(p)))
        .collect()
}

/// Stores the watch list of `key`; a failure only costs the next learner
/// its head start.
fn store_watch_list(key: &LaunchKey, dirs: &[PathBuf]) {
    let Some(path) = watch_list_path(key) else {
        return;
    };
    let mut out = Vec::new();
    for d in dirs {
        out.extend_from_slice(d.as_os_str().as_bytes());
        out.push(0);
    }
    let _ = crate::cache::write_atomic(&path, &out);
}

/// Whether the learner may act on a file or directory: owned by this user
/// or root, not world-writable, and group-writable only by this user's own
/// group (a user-private group under umask 002). Another user's directory
/// (a shared `/tmp` as the working directory) is never watched, and a
/// source someone else could rewrite is never compiled on their behalf.
fn trusted(meta: &std::fs::Metadata) -> bool {
    // SAFETY: geteuid(2) and getegid(2) cannot fail.
    let (me, my_group) = unsafe { (libc::geteuid(), libc::getegid()) };
    let mode = meta.mode();
    (meta.uid() == me || meta.uid() == 0)
        && mode & 0o002 == 0
        && (mode & 0o020 == 0 || meta.gid() == my_group)
}

/// Whether `s` could name a module: `str.isidentifier` for ASCII names (a
/// non-ASCII name is let through; the resolver decides).
fn is_identifier(s: &str) -> bool {
    let mut chars = s.chars();
    match chars.next() {
        Some(c) if c == '_' || c.is_alphabetic() => {}
        _ => return false,
    }
    chars.all(|c| c == '_' || c.is_alphanumeric())
}

/// The module name under which `path` is importable from `sys_path`: the
/// longest entry it lies under, the path below it joined with dots, without
/// `.py`, and a package's `__init__.py` named after its directory. Mirrors
/// what `PathFinder`/`FileFinder` search (one directory level per name
/// part); `None` when no entry gives a valid name.
fn module_name(path: &Path, sys_path: &[PathBuf]) -> Option<String> {
    let root = sys_path
        .iter()
        .filter(|d| path.starts_with(d))
        .max_by_key(|d| d.as_os_str().len())?;
    let rel = path.strip_prefix(root).ok()?;
    let mut parts: Vec<&str> = rel.iter().map(|c| c.to_str()).collect::<Option<Vec<_>>>()?;
    let last = parts.pop()?.strip_suffix(".py")?;
    if last != "__init__" {
        parts.push(last);
    }
    (!parts.is_empty() && parts.iter().all(|p| is_identifier(p))).then(|| parts.join("."))
}

/// The learned records of `recorded` a cold launch keeps: those not in the
/// new closure whose source is still a file, up to `max`.
pub(super) fn carried(
    recorded: Option<&Manifest>,
    closure: &graph::Closure,
    max: usize,
) -> Vec<ModuleRecord> {
    let Some(recorded) = recorded else {
        return Vec::new();
    };
    let in_closure: HashSet<&Path> = closure
        .modules
        .iter()
        .filter_map(|m| m.module.origin.as_deref())
        .collect();
    recorded
        .modules
        .iter()
        .filter(|m| m.learned && !in_closure.contains(m.source.as_path()))
        .filter(|m| std::fs::metadata(&m.source).is_ok_and(|x| x.is_file()))
        .take(max)
        .cloned()
        .collect()
}

/// `SCHED_IDLE` for this process (the kernel's lowest weight: it yields
/// to any other runnable task), or `nice` 19 where that policy is refused.
fn lower_priority() {
    let param = libc::sched_param { sched_priority: 0 };
    // SAFETY: sched_setscheduler(2) and setpriority(2) on this process; param lives on the stack.
    unsafe {
        if libc::sched_setscheduler(0, libc::SCHED_IDLE, &param) != 0 {
            libc::setpriority(libc::PRIO_PROCESS, 0, 19);
        }
    }
}

fn read_manifest(key: &LaunchKey) -> Option<Manifest> {
    super::prepare::usable_manifest(&manifest::read_recorded(key)?, key)
}

/// The learner's view of the launch.
struct Learner<'a> {
    ctx: &'a Context<'a>,
    facts: PythonFacts,
    spec: LaunchSpec,
    rules: PycRules,
    prefix: Option<PathBuf>,
    /// `sys.path` as absolute directories.
    sys_path: Vec<PathBuf>,
    /// Where the closure of the learned roots resolves `''`.
    closure_cwd: PathBuf,
    /// Sources the manifest holds: `true` when learned, `false` static.
    known: HashMap<PathBuf, bool>,
    /// The script run as `__main__` (device, inode).
    script: Option<(u64, u64)>,
    seen: HashSet<PathBuf>,
    pending: Vec<PathBuf>,
    /// Sources outside the static closure opened while their pyc was fresh.
    fresh_opened: usize,
    /// Modules learned by this run.
    learned: usize,
}

/// The learner process: watches the program the launch became, learns, and
/// returns when it is done. Never fails the program: every error only ends
/// learning.
pub(crate) fn run(ctx: &Context<'_>) {
    let Some(mut handoff) = Handoff::from_env() else {
        return;
    };
    // Only what the watches need comes before them: the launch waits until
    // they are in place. The manifest is read (and decoded) after.
    // The launch may have run on the probe cache's guess (`hand_over`):
    // the watches are placed from it, and it is checked below.
    let Ok(((facts, spec, rules), guessed)) = watch_view(ctx) else {
        return;
    };
    let no_path0 = spec.safe_path || spec.isolated;
    let form = match &spec.target {
        Target::Script(p) => Entry::Script(p.clone()),
        Target::Module(m) => Entry::Module(m.clone()),
        _ => Entry::Code(String::new()),
    }
    .launch_form();
    let path0 = sys_path0(&form, no_path0, facts.minor_version(), ctx.cwd);
    let closure_cwd = match (&spec.target, &path0) {
        (Target::Script(_), Some(p)) => ctx.cwd.join(p),
        _ => ctx.cwd.to_path_buf(),
    };
    let sys_path: Vec<PathBuf> = launch_sys_path(&facts, path0)
        .into_iter()
        .map(|p| ctx.cwd.join(p))
        .collect();
    let Some(mut watcher) = Watcher::new() else {
        return;
    };
    let cap = ctx.knobs.learn_watches;
    // The directories the last learner watched for this key: watched first,
    // without listing anything, so the launch waits for one
    // `inotify_add_watch` per directory instead of the whole walk.
    let remembered = read_watch_list(ctx.key);
    watcher.watch_listed(&remembered, &sys_path, cap);
    let mut first_walk = remembered.is_empty().then(|| TreeWalk::new(&sys_path));
    if let Some(tree) = &mut first_walk {
        tree.run(&mut watcher, cap, FIRST_WATCH_DEPTH);
    }
    handoff.watching();
    // The launch waited for this (see `watching`); from here on the kernel
    // queues the program's opens, and the rest can wait: the learner and
    // its compile workers (they inherit the policy) run only on a CPU the
    // program and everything else leave idle.
    lower_priority();
    // A first learner watches the deeper directories now, while the
    // program starts.
    let walked = match &mut first_walk {
        Some(tree) => {
            tree.run(&mut watcher, cap, usize::MAX);
            std::mem::take(&mut tree.walked)
        }
        None => Vec::new(),
    };
    // With a remembered list the walk still runs, to watch what is new
    // since (a package installed in between), but not while the program
    // starts: once it exits or after [`IDLE_ROUND`]; what it opens there
    // before that is learned next time.
    let walk = Walk {
        roots: sys_path.clone(),
        cap,
        remembered,
    };
    let walk = if walk.remembered.is_empty() {
        walk.done(ctx.key, &walked);
        None
    } else {
        Some(walk)
    };
    // A background run of this launch records (or re-stamps) the manifest:
    // the learner reads it once that is done.
    super::background::wait_until_done(ctx.key, super::background::BACKGROUND_WAIT);
    if guessed && !interpreter_view(ctx).is_ok_and(|real| real.0 == facts) {
        ctx.log
            .debug(format_args!("learn: the guessed facts did not hold"));
        return;
    }
    let Some(recorded) = read_manifest(ctx.key) else {
        return;
    };
    ctx.log.debug(format_args!(
        "learn: {} directories watched",
        watcher.dirs.len()
    ));
    let prefix = recorded
        .env
        .iter()
        .find(|(k, _)| k == super::prepare::PREFIX_VAR)
        .map(|(_, v)| PathBuf::from(v))
        .or_else(|| spec.pycache_prefix_resolved(ctx.cwd));
    let script = match &spec.target {
        Target::Script(p) => std::fs::metadata(ctx.cwd.join(p))
            .ok()
            .map(|m| (m.dev(), m.ino())),
        _ => None,
    };
    let mut l = Learner {
        ctx,
        known: recorded
            .modules
            .iter()
            .map(|m| (m.source.clone(), m.learned))
            .collect(),
        facts,
        spec,
        rules,
        prefix,
        sys_path,
        closure_cwd,
        script,
        seen: HashSet::new(),
        pending: Vec::new(),
        fresh_opened: 0,
        learned: 0,
    };
    drop(recorded);
    l.watch(&mut watcher, &handoff, walk);
}

impl Learner<'_> {
    /// The event loop: until the program exits, then one last round.
    fn watch(&mut self, w: &mut Watcher, h: &Handoff, mut walk: Option<Walk>) {
        let started = Instant::now();
        let mut last_new = Instant::now();
        loop {
            let timeout = match (&h.pidfd, self.pending.is_empty()) {
                (None, _) => 100,
                (Some(_), true) if walk.is_none() => BATCH.as_millis() as i32,
                (Some(_), true) => BATCH
                    .min(IDLE_ROUND.saturating_sub(started.elapsed()))
                    .as_millis()
                    .max(1) as i32,
                (Some(_), false) => BATCH
                    .min(IDLE_ROUND.saturating_sub(last_new.elapsed()))
                    .as_millis()
                    .max(1) as i32,
            };
            // While the program runs the queue is read in batches, every
            // [`BATCH`] and at its exit, not as each event arrives: a learner
            // woken at each open costs the program the wake-up (measured:
            // ~10 ms of its CPU for 300 modules loaded from source).
            let mut fds = [
                libc::pollfd {
                    fd: if h.pidfd.is_some() {
                        -1
                    } else {
                        w.fd.as_raw_fd()
                    },
                    events: libc::POLLIN,
                    revents: 0,
                },
                libc::pollfd {
                    fd: h.pidfd.as_ref().map_or(-1, |f| f.as_raw_fd()),
                    events: libc::POLLIN,
                    revents: 0,
                },
            ];
            // SAFETY: two pollfds on the stack (a negative fd is ignored).
            unsafe { libc::poll(fds.as_mut_ptr(), 2, timeout) };
            let before = self.pending.len();
            w.read(&mut |p| self.opened(p));
            if self.pending.len() > before {
                last_new = Instant::now();
            }
            let exited = !h.alive();
            if walk.is_some() && (exited || started.elapsed() >= IDLE_ROUND) {
                if let Some(walk) = walk.take() {
                    let walked = w.watch_trees(&walk.roots, walk.cap);
                    walk.done(self.ctx.key, &walked);
                }
            }
            if exited {
                // The kernel queued every event before the exit: drain them.
                w.read(&mut |p| self.opened(p));
                self.round(true);
                return;
            }
            if !self.pending.is_empty() && last_new.elapsed() >= IDLE_ROUND {
                self.round(false);
            }
        }
    }

    /// One `.py` opened by the program: classified once, now, while the
    /// reason it was opened still holds.
    fn opened(&mut self, path: PathBuf) {
        if self.seen.len() >= SEEN_CAP || self.seen.contains(&path) {
            return;
        }
        self.seen.insert(path.clone());
        if self.known.get(&path) == Some(&false) {
            return; // the static closure: the launch and the background run own it
        }
        let Ok(meta) = std::fs::metadata(&path) else {
            return;
        };
        if self.script == Some((meta.dev(), meta.ino())) || !trusted(&meta) {
            return;
        }
        if module_name(&path, &self.sys_path).is_none() {
            return;
        }
        let Some(cfile) = pyc::cache_from_source(
            &path,
            &self.rules,
            self.spec.optimize,
            self.prefix.as_deref(),
            self.ctx.cwd,
        ) else {
            return;
        };
        let target = [PycTarget {
            source: path,
            cfile,
        }];
        let verdict = crate::freshness::check_all_known(
            &target,
            &[Some(&meta)],
            &self.rules,
            self.spec.check_hash_based_pycs,
        );
        let [PycTarget { source: path, .. }] = target;
        match verdict.first() {
            // The standard library has no loader of its own; its sources
            // are also read by every other Python process on the machine.
            Some(Verdict::Fresh) if !self.facts.in_stdlib(&path) => self.fresh_opened += 1,
            Some(Verdict::Fresh) => {}
            _ => self.pending.push(path),
        }
    }

    /// Learns the pending candidates: their closure, compiled, merged into
    /// the manifest. `last` also settles the manifest's learning flags.
    fn round(&mut self, last: bool) {
        let pending = std::mem::take(&mut self.pending);
        let mut adds: Vec<(ModuleRecord, Expect)> = Vec::new();
        let mut probed: Vec<PathBuf> = Vec::new();
        let mut failed: HashSet<PathBuf> = HashSet::new();
        let mut names: BTreeSet<String> = BTreeSet::new();
        for p in &pending {
            if let Some(n) = module_name(p, &self.sys_path) {
                names.insert(n);
            }
        }
        if !names.is_empty() {
            let code: String = names.iter().map(|n| format!("import {n}\n")).collect();
            let options = ClosureOptions {
                cwd: Some(self.closure_cwd.clone()),
                safe_path: self.spec.safe_path || self.spec.isolated,
                skip_startup: true,
            };
            let (closure, _) = graph::compute_persisted(&self.facts, &Entry::Code(code), &options);
            let opened: HashSet<&Path> = pending.iter().map(PathBuf::as_path).collect();
            let mut targets: Vec<PycTarget> = Vec::new();
            for m in closure.pyc_modules() {
                let (Some(source), Some(imports)) = (&m.module.origin, &m.imports) else {
                    continue;
                };
                // Our own reads of these sources must not count as the program's.
                self.seen.insert(source.clone());
                if self.known.contains_key(source)
                    || (self.facts.in_stdlib(source) && !opened.contains(source.as_path()))
                {
                    continue;
                }
                // What its imports reach lies in directories nobody watched.
                let trusted_here = |p: &Path| std::fs::metadata(p).is_ok_and(|m| trusted(&m));
                if !trusted_here(source) || !source.parent().is_some_and(trusted_here) {
                    continue;
                }
                // Stamped before the compile reads it.
                let stamp = manifest::observe(source);
                if !matches!(stamp, Expect::File(_)) {
                    continue;
                }
                let Some(cfile) = pyc::cache_from_source(
                    source,
                    &self.rules,
                    self.spec.optimize,
                    self.prefix.as_deref(),
                    self.ctx.cwd,
                ) else {
                    continue;
                };
                targets.push(PycTarget {
                    source: source.clone(),
                    cfile: cfile.clone(),
                });
                adds.push((
                    ModuleRecord {
                        source: source.clone(),
                        cfile: Some(cfile),
                        imports: graph::imports_digest(imports),
                        lazy: m.lazy,
                        learned: true,
                    },
                    stamp,
                ));
            }
            probed = closure.probed_dirs.clone();
            let stale: Vec<PycTarget> = stale_with_reasons(&targets, &self.rules, &self.spec)
                .into_iter()
                .map(|(t, _)| t.clone())
                .collect();
            match compile_stale(
                self.ctx,
                &self.facts,
                &self.rules,
                &self.spec,
                self.prefix.as_deref(),
                &stale,
                &std::collections::HashSet::new(),
            ) {
                Ok(f) => failed = f,
                // No pool: nothing is learned this round.
                Err(_) => adds.clear(),
            }
        }
        // A module that does not compile is not learned: the interpreter
        // reports its error as plain python would.
        adds.retain(|(r, _)| !r.cfile.as_ref().is_some_and(|c| failed.contains(c)));
        let added = self.merge(adds, &probed, last);
        self.learned += added.len();
        for s in added {
            self.known.insert(s, true);
        }
    }

    /// Adds `adds` to the manifest on disk, stamps their `__pycache__`
    /// directories and the directories their resolution listed; on the
    /// `last` round also settles the learning flags. Returns the sources
    /// added.
    fn merge(
        &self,
        adds: Vec<(ModuleRecord, Expect)>,
        probed: &[PathBuf],
        last: bool,
    ) -> Vec<PathBuf> {
        let key = self.ctx.key;
        if adds.is_empty() && !last {
            return Vec::new();
        }
        // Merge into what is on disk, and store only if it is still what
        // was read, else merge again into the newer one. The check and the
        // rename are made under the key's store lock, which the background
        // run also stores under (not the background lock `.bg`: a launch
        // that finds it held starts no background run). Without it the
        // background run's store could land between them (this process runs
        // at idle priority and writes the whole file in between: 14 ms seen
        // under load) and be overwritten by a manifest that still marks its
        // `__pycache__` pending: every later launch repaired and restarted
        // the background run and a learner, which raced again. A launch
        // stores without the lock, and a store that overtakes ours from an
        // older read (a launch's, a background run's) only costs learning:
        // the next learning run adds it again.
        let Some(path) = manifest::manifest_path_no_create(key) else {
            return Vec::new();
        };
        for _ in 0..3 {
            let Ok(before) = crate::cache::read_private(&path) else {
                return Vec::new();
            };
            let Some(m) = super::prepare::usable_manifest(&before, key) else {
                return Vec::new();
            };
            let (m, added) = self.merged(m, adds.clone(), probed, last);
            let after = m.encode();
            if after == before {
                return added;
            }
            let _store = super::background::wait_key_lock(key, super::background::STORE_LOCK);
            if crate::cache::read_private(&path).ok().as_deref() != Some(&before[..]) {
                continue;
            }
            if let Err(e) = crate::cache::write_atomic(&path, &after) {
                self.ctx
                    .log
                    .debug(format_args!("learn: manifest not stored: {e}"));
                return Vec::new();
            }
            return added;
        }
        Vec::new()
    }

    /// `m` with `adds` merged in (see [`Self::merge`]), and the sources added.
    fn merged(
        &self,
        mut m: Manifest,
        adds: Vec<(ModuleRecord, Expect)>,
        probed: &[PathBuf],
        last: bool,
    ) -> (Manifest, Vec<PathBuf>) {
        let mut index: HashMap<PathBuf, usize> = m
            .entries
            .iter()
            .enumerate()
            .map(|(i, (p, _))| (p.clone(), i))
            .collect();
        let recorded: HashSet<PathBuf> = m.modules.iter().map(|r| r.source.clone()).collect();
        let mut room = self
            .ctx
            .knobs
            .learn_max
            .saturating_sub(m.modules.iter().filter(|r| r.learned).count());
        let mut added = Vec::new();
        let mut dirs: BTreeSet<PathBuf> = BTreeSet::new();
        for (rec, stamp) in adds {
            if room == 0 {
                break;
            }
            if recorded.contains(&rec.source) {
                continue;
            }
            room -= 1;
            if let Some(d) = rec.cfile.as_deref().and_then(Path::parent) {
                dirs.insert(d.to_path_buf());
            }
            set_entry(&mut m, &mut index, rec.source.clone(), stamp);
            added.push(rec.source.clone());
            m.modules.push(rec);
        }
        // Each `__pycache__` holding a new pyc: stamped, then every recorded
        // pyc in it confirmed fresh (else pending: the next launch's repair
        // path looks at it).
        for d in &dirs {
            let now = manifest::observe(d);
            let check: Vec<PycTarget> = m
                .modules
                .iter()
                .filter(|r| r.cfile.as_deref().and_then(Path::parent) == Some(d.as_path()))
                .filter_map(|r| {
                    Some(PycTarget {
                        source: r.source.clone(),
                        cfile: r.cfile.clone()?,
                    })
                })
                .collect();
            let fresh = stale_with_reasons(&check, &self.rules, &self.spec).is_empty();
            set_entry(
                &mut m,
                &mut index,
                d.clone(),
                if fresh { now } else { Expect::Pending },
            );
        }
        // Package directories: a new `__pycache__` changed them; directories
        // the learned modules' resolution listed are stamped with their
        // listing, as the cold path does.
        let listings: HashMap<PathBuf, u64> = m.listings.iter().cloned().collect();
        let parents: BTreeSet<PathBuf> = dirs
            .iter()
            .filter_map(|d| d.parent())
            .map(Path::to_path_buf)
            .collect();
        for d in parents.iter().chain(probed) {
            let now = manifest::observe(d);
            let Expect::Dir(_) = now else { continue };
            let Some(digest) = listing::digest(d) else {
                continue;
            };
            match (index.get(d), listings.get(d)) {
                (Some(_), Some(&was)) if was == digest => {
                    set_entry(&mut m, &mut index, d.clone(), now)
                }
                (Some(_), _) => {}
                (None, _) => {
                    set_entry(&mut m, &mut index, d.clone(), now);
                    m.listings.push((d.clone(), digest));
                }
            }
        }
        manifest::group_by_dir(&mut m.entries);
        if last {
            if self.learned + added.len() > 0 {
                m.quiet_runs = 0;
                m.learning = true;
            } else {
                m.quiet_runs = m.quiet_runs.saturating_add(1).min(3);
                m.learning = m.quiet_runs < QUIET_RUNS_TO_STOP;
            }
            if self.fresh_opened > 0 {
                m.write_bytecode = true;
            }
        }
        (m, added)
    }
}

fn set_entry(m: &mut Manifest, index: &mut HashMap<PathBuf, usize>, path: PathBuf, e: Expect) {
    match index.get(&path) {
        Some(&i) => m.entries[i].1 = e,
        None => {
            index.insert(path.clone(), m.entries.len());
            m.entries.push((path, e));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_from_paths() {
        let sp = vec![PathBuf::from("/app"), PathBuf::from("/venv/site")];
        let n = |p: &str| module_name(Path::new(p), &sp);
        assert_eq!(n("/app/plugins/alpha.py").as_deref(), Some("plugins.alpha"));
        assert_eq!(n("/app/plugins/__init__.py").as_deref(), Some("plugins"));
        assert_eq!(
            n("/venv/site/django/contrib/admin/apps.py").as_deref(),
            Some("django.contrib.admin.apps")
        );
        assert_eq!(n("/app/my-dir/x.py"), None);
        assert_eq!(n("/app/x.txt"), None);
        assert_eq!(n("/elsewhere/x.py"), None);
        assert_eq!(n("/app/__init__.py"), None);
        assert!(is_identifier("_a1") && !is_identifier("1a") && !is_identifier("a.b"));
    }

    /// A remembered watch list puts back the walk's watches, each on the
    /// descriptor the walk got; a listed directory that became a symlink
    /// or writable by others is left out; and an open in a listed
    /// directory is reported.
    #[test]
    fn remembered_watch_list() {
        use std::os::unix::fs::PermissionsExt;
        let t = tempfile::tempdir().unwrap();
        let root = t.path().join("site");
        for d in ["pkg/sub", "pkg/data", "ns/inner", "other/deep"] {
            std::fs::create_dir_all(root.join(d)).unwrap();
        }
        std::fs::write(root.join("pkg/__init__.py"), "").unwrap();
        std::fs::write(root.join("pkg/sub/__init__.py"), "").unwrap();
        std::fs::write(root.join("pkg/sub/m.py"), "").unwrap();
        let roots = vec![root.clone()];
        let mut walked = Watcher::new().unwrap();
        let list = walked.watch_trees(&roots, 100);
        let sorted = |w: &Watcher| {
            let mut v: Vec<PathBuf> = w.dirs.values().cloned().collect();
            v.sort();
            v
        };
        let mut all = list.clone();
        all.sort();
        assert_eq!(sorted(&walked), all);
        assert!(list.len() >= 5, "{list:?}");
        assert_eq!(list[0], root);
        // Same instance: the listed watches come back on the walk's descriptors.
        let mut again = Watcher {
            fd: walked.fd.try_clone().unwrap(),
            dirs: HashMap::new(),
        };
        again.watch_listed(&list, &roots, 100);
        assert_eq!(again.dirs, walked.dirs);
        // A fresh instance from the list alone sees the program's opens.
        let mut listed = Watcher::new().unwrap();
        listed.watch_listed(&list, &roots, 100);
        assert_eq!(sorted(&listed), all);
        std::fs::File::open(root.join("pkg/sub/m.py")).unwrap();
        let mut seen = Vec::new();
        listed.read(&mut |p| seen.push(p));
        assert_eq!(seen, vec![root.join("pkg/sub/m.py")]);
        // What changed since is not watched from the list.
        std::fs::remove_dir_all(root.join("pkg/sub")).unwrap();
        std::os::unix::fs::symlink(root.join("other"), root.join("pkg/sub")).unwrap();
        std::fs::set_permissions(root.join("ns"), std::fs::Permissions::from_mode(0o777)).unwrap();
        let mut changed = Watcher::new().unwrap();
        changed.watch_listed(&list, &roots, 100);
        let now = sorted(&changed);
        assert!(!now.contains(&root.join("pkg/sub")));
        assert!(!now.contains(&root.join("ns")));
        assert!(now.contains(&root.join("pkg")));
        // The walk from there no longer lists them: the next list drops them.
        let rewalked = changed.watch_trees(&roots, 100);
        assert!(!rewalked.contains(&root.join("pkg/sub")) && !rewalked.contains(&root.join("ns")));
        // The cap holds.
        let mut capped = Watcher::new().unwrap();
        capped.watch_listed(&list, &roots, 2);
        assert_eq!(capped.dirs.len(), 2);
    }
}

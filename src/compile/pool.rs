//! The worker pool: scheduling, time-outs, crash recovery.
//!
//! * Worker count: [`worker_count`]; a few small files get one worker, since
//!   starting an interpreter costs about as much as compiling a dozen.
//! * Load balancing: one thread per worker slot takes the next job from a
//!   shared queue when its worker finishes; jobs are queued largest source
//!   first so a big file does not end up last on one worker.
//! * Time-out: a worker that does not answer within `PoolConfig::timeout`
//!   is killed and the file reported as timed out; the slot starts a fresh
//!   worker for its next job.
//! * Crash: a worker that dies (signal, exit, EOF, garbled reply) is
//!   replaced; its file is retried once on a fresh worker, then reported as
//!   failed.
//! * Code cache: jobs it serves never reach a worker; workers run with
//!   `--return-body` and every clean compile's body is stored.
//! * The pool fails as a whole ([`PoolError`]) only when no worker could be
//!   started at all. It never spawns anything for an empty job list.

use super::code_cache::{CodeCache, Identity, Restore};
use super::protocol::{read_frame, Reply, Request, Response, HELLO_PREFIX};
use super::{CompileJob, OnWarning, Outcome, PoolConfig, PoolError, WORKER_SCRIPT};
use rayon::prelude::*;
use std::cmp::Reverse;
use std::collections::VecDeque;
use std::io::{self, BufReader, Read, Write};
use std::os::unix::process::ExitStatusExt;
use std::process::{Child, ChildStderr, ChildStdin, ChildStdout, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

/// Estimated worker CPU per file, besides compiling it: stat, read,
/// `makedirs`, temp file, `os.replace`, two pipe frames (measured: ~0.8 ms on
/// CPython 3.11, 1 KiB files).
pub(crate) const COST_PER_FILE_US: u64 = 800;

/// Estimated compile speed in source bytes per millisecond (CPython 3.7-3.13
/// compile 3.5-10 MB/s here; 5 MB/s is the middle).
pub(crate) const COMPILE_BYTES_PER_MS: u64 = 5_000;

/// Estimated work one worker must have before starting it pays off. A
/// `-I -S` worker costs ~11 ms CPU to start; measured wall-clock crossover
/// of 1 vs 2 workers lies between 16 files (~20 ms of work) and 64 files
/// (~70 ms), so a worker is started per ~30 ms of work.
pub(crate) const WORK_PER_WORKER_US: u64 = 30_000;

/// The least time a worker is given to start and greet the pool.
const MIN_STARTUP_TIMEOUT: Duration = Duration::from_secs(10);

/// How much of a worker's stderr is kept for error messages.
const STDERR_TAIL: usize = 4096;

/// CPU one `-I -S` worker costs to start and greet the pool (measured
/// ~11 ms on CPython 3.11 here; `python3.12 -I -S -c pass` takes 13 ms wall).
pub(crate) const WORKER_START_US: u64 = 11_000;

/// Estimated CPU to compile `jobs` files of `total_bytes` source, in µs:
/// [`COST_PER_FILE_US`] per file plus `total_bytes` at [`COMPILE_BYTES_PER_MS`].
pub(crate) fn estimated_work_us(jobs: usize, total_bytes: u64) -> u64 {
    (jobs as u64)
        .saturating_mul(COST_PER_FILE_US)
        .saturating_add(total_bytes.saturating_mul(1000) / COMPILE_BYTES_PER_MS)
}

/// How many workers to run for `jobs` files of `total_bytes` source.
///
/// `requested > 0` is honoured (but never more workers than jobs). Otherwise:
/// the available parallelism, capped at one worker per `WORK_PER_WORKER_US`
/// of estimated work (`COST_PER_FILE_US` per file plus compiling
/// `total_bytes` at `COMPILE_BYTES_PER_MS`), and at least one. Zero jobs
/// need zero workers.
pub fn worker_count(requested: usize, jobs: usize, total_bytes: u64) -> usize {
    if jobs == 0 {
        return 0;
    }
    let n = if requested > 0 {
        requested
    } else {
        let parallelism = thread::available_parallelism().map_or(1, |n| n.get());
        let work_us = estimated_work_us(jobs, total_bytes);
        let by_work = usize::try_from(work_us / WORK_PER_WORKER_US).unwrap_or(usize::MAX);
        parallelism.min(by_work)
    };
    n.clamp(1, jobs)
}

/// Compiles every job; `on_done(index, &outcome)` is called as each
/// finishes (from the pool's threads, in completion order). Returns the
/// outcomes in job order.
///
/// Errors only when no worker process could be started at all; every other
/// problem is reported per file.
pub fn compile_all(
    jobs: &[CompileJob],
    config: &PoolConfig,
    on_done: &(dyn Fn(usize, &Outcome) + Sync),
) -> Result<Vec<Outcome>, PoolError> {
    if jobs.is_empty() {
        return Ok(Vec::new());
    }
    let cache = CodeCache::open(config);
    // Jobs the cache serves are written here, without a worker, on every
    // core: a restore is mostly the kernel creating a file.
    let miss = Restore::Miss { source_len: None };
    let restored: Vec<Restore> = match &cache {
        Some(c) if c.identity().is_some() => jobs.par_iter().map(|j| c.restore(j)).collect(),
        _ => vec![miss; jobs.len()],
    };
    let rest: Vec<usize> = (0..jobs.len())
        .filter(|&i| restored[i] != Restore::Written)
        .collect();
    crate::log::Log::from_env().debug(format_args!(
        "compile: code cache: {} of {} pycs restored, {} to compile",
        jobs.len() - rest.len(),
        jobs.len(),
        rest.len()
    ));
    let mut outcomes: Vec<Option<Outcome>> = vec![None; jobs.len()];
    for (i, _) in restored
        .iter()
        .enumerate()
        .filter(|(_, &r)| r == Restore::Written)
    {
        on_done(i, &Outcome::Written);
        outcomes[i] = Some(Outcome::Written);
    }
    let rest_jobs: Vec<&CompileJob> = rest.iter().map(|&i| &jobs[i]).collect();
    let known_sizes: Vec<Option<u64>> = rest
        .iter()
        .map(|&i| match restored[i] {
            Restore::Miss { source_len } => source_len,
            Restore::Written => None,
        })
        .collect();
    let compiled = {
        let _pipes = IgnoreSigpipe::new();
        run_pool(&rest_jobs, &known_sizes, config, cache.as_ref(), &|i, o| {
            on_done(rest[i], o)
        })
    };
    if let Some(c) = &cache {
        c.finish();
    }
    for (i, o) in rest.into_iter().zip(compiled?) {
        outcomes[i] = Some(o);
    }
    Ok(outcomes.into_iter().flatten().collect())
}

/// SIGPIPE ignored while the pool talks to its workers, then the previous
/// disposition back. Both binaries run with SIGPIPE at its default (the
/// program must inherit it; `kolosal info | head` must end quietly), under
/// which a write to a worker that just died (killed, out of memory) would
/// kill kolosal itself, and with it the launch. Ignored, the write fails
/// with `EPIPE` and the pool retries the file on a fresh worker.
struct IgnoreSigpipe {
    previous: libc::sighandler_t,
}

impl IgnoreSigpipe {
    fn new() -> Self {
        // SAFETY: signal(2) swaps a disposition; no memory is involved.
        let previous = unsafe { libc::signal(libc::SIGPIPE, libc::SIG_IGN) };
        IgnoreSigpipe { previous }
    }
}

impl Drop for IgnoreSigpipe {
    fn drop(&mut self) {
        if self.previous != libc::SIG_ERR {
            // SAFETY: as in `new`, putting back what was there.
            unsafe { libc::signal(libc::SIGPIPE, self.previous) };
        }
    }
}

/// How many worker processes this process has started (for tests and the
/// debug timeline: a run served by the code cache starts none).
pub(crate) static WORKERS_STARTED: AtomicUsize = AtomicUsize::new(0);

/// [`compile_all`] on workers only: every job goes to one. `known[i]` is
/// `jobs[i]`'s source size when the cache already read it (the others are
/// stat'ed here), for the largest-first order.
fn run_pool(
    jobs: &[&CompileJob],
    known: &[Option<u64>],
    config: &PoolConfig,
    cache: Option<&CodeCache>,
    on_done: &(dyn Fn(usize, &Outcome) + Sync),
) -> Result<Vec<Outcome>, PoolError> {
    if jobs.is_empty() {
        return Ok(Vec::new());
    }
    let indexed: Vec<usize> = (0..jobs.len()).collect();
    let sizes: Vec<u64> = crate::freshness::par_map(&indexed, |&i| {
        known
            .get(i)
            .copied()
            .flatten()
            .unwrap_or_else(|| std::fs::metadata(&jobs[i].source).map_or(0, |m| m.len()))
    });
    let total: u64 = sizes.iter().sum();
    let workers = worker_count(config.workers, jobs.len(), total);
    let mut order: Vec<usize> = (0..jobs.len()).collect();
    order.sort_by_key(|&i| Reverse(sizes[i]));

    let state = State {
        queue: Mutex::new(
            order
                .into_iter()
                .map(|index| Task { index, attempt: 0 })
                .collect(),
        ),
        outcomes: Mutex::new(vec![None; jobs.len()]),
        ever_started: AtomicBool::new(false),
        start_error: Mutex::new(None),
    };
    thread::scope(|s| {
        for _ in 0..workers {
            s.spawn(|| run_slot(jobs, config, cache, &state, on_done));
        }
    });

    let ever_started = state.ever_started.load(Ordering::SeqCst);
    let start_error = lock(&state.start_error).take();
    let mut outcomes = state
        .outcomes
        .into_inner()
        .unwrap_or_else(|e| e.into_inner());
    if outcomes.iter().any(Option::is_none) && !ever_started {
        return Err(start_error.unwrap_or_else(|| PoolError::Handshake {
            python: config.python.clone(),
            detail: "no worker started".to_string(),
        }));
    }
    let reason = start_error.map_or_else(|| "no worker was left".to_string(), |e| e.to_string());
    let mut result = Vec::with_capacity(jobs.len());
    for (index, slot) in outcomes.iter_mut().enumerate() {
        let outcome = match slot.take() {
            Some(o) => o,
            None => {
                let o = Outcome::Failed {
                    message: format!(
                        "{}: not compiled: no worker could be restarted: {reason}",
                        jobs[index].source.display()
                    ),
                };
                on_done(index, &o);
                o
            }
        };
        result.push(outcome);
    }
    Ok(result)
}

/// One queued job: its index and how many times a worker died on it.
#[derive(Debug, Clone, Copy)]
struct Task {
    index: usize,
    attempt: u8,
}

/// What the slots share.
struct State {
    queue: Mutex<VecDeque<Task>>,
    outcomes: Mutex<Vec<Option<Outcome>>>,
    ever_started: AtomicBool,
    start_error: Mutex<Option<PoolError>>,
}

impl State {
    fn next(&self) -> Option<Task> {
        lock(&self.queue).pop_front()
    }

    fn push_front(&self, task: Task) {
        lock(&self.queue).push_front(task);
    }

    fn finish(&self, index: usize, outcome: Outcome, on_done: &(dyn Fn(usize, &Outcome) + Sync)) {
        on_done(index, &outcome);
        lock(&self.outcomes)[index] = Some(outcome);
    }
}

/// Locks, ignoring poisoning (the data stays consistent: every write is a
/// single assignment or push).
use crate::sync::lock;

/// Jobs a worker holds at once: the one it compiles and the next, already
/// in its stdin pipe, so it never waits for the pool to read a reply and
/// send more (a round trip through two threads, slow on a loaded machine).
const IN_FLIGHT: usize = 2;

/// How long a worker that stopped answering is given to finish exiting on
/// its own (so its real status, not our SIGKILL, is reported), and then
/// its stderr reader to see the pipe close.
const EXIT_GRACE: Duration = Duration::from_millis(500);

/// How often a dying worker (and its stderr reader) is polled within
/// [`EXIT_GRACE`].
const EXIT_POLL: Duration = Duration::from_millis(2);

/// The longest one file may take: [`PoolConfig::timeout`], or
/// [`super::WORKER_TIMEOUT`] when that is zero.
fn job_timeout(config: &PoolConfig) -> Duration {
    if config.timeout.is_zero() {
        super::WORKER_TIMEOUT
    } else {
        config.timeout
    }
}

/// One worker slot: runs jobs from the queue on its worker, replacing the
/// worker whenever it dies or is killed.
///
/// Up to [`IN_FLIGHT`] jobs are sent ahead. The worker answers in order, so
/// the oldest job is the one it is compiling: a time-out or death is
/// charged to it alone; the jobs queued behind it never started and go
/// back to the queue unchanged.
fn run_slot(
    jobs: &[&CompileJob],
    config: &PoolConfig,
    cache: Option<&CodeCache>,
    state: &State,
    on_done: &(dyn Fn(usize, &Outcome) + Sync),
) {
    let mut slot = Slot {
        jobs,
        config,
        cache,
        state,
        on_done,
        timeout: job_timeout(config),
        worker: None,
        in_flight: VecDeque::new(),
    };
    loop {
        match slot.turn() {
            Turn::Answered => {}
            Turn::Idle | Turn::NoWorker => return,
            Turn::Lost(lost) => slot.bury(lost),
        }
    }
}

/// How one turn of a slot's loop ended.
enum Turn {
    /// The oldest job in flight was answered.
    Answered,
    /// Nothing left to send or to wait for.
    Idle,
    /// No worker could be started; the job taken is back in the queue.
    NoWorker,
    /// The worker is gone.
    Lost(Lost),
}

/// A worker slot's state: its worker (started on demand) and the jobs sent
/// to it and not yet answered.
struct Slot<'a> {
    jobs: &'a [&'a CompileJob],
    config: &'a PoolConfig,
    cache: Option<&'a CodeCache>,
    state: &'a State,
    on_done: &'a (dyn Fn(usize, &Outcome) + Sync),
    timeout: Duration,
    worker: Option<Worker>,
    /// (request id, task) in the order sent.
    in_flight: VecDeque<(u32, Task)>,
}

impl Slot<'_> {
    /// Tops up the worker's pipe, then waits for the oldest answer.
    fn turn(&mut self) -> Turn {
        match self.top_up() {
            Ok(()) => self.receive_oldest(),
            Err(turn) => turn,
        }
    }

    /// Sends queued jobs until [`IN_FLIGHT`] are on the worker, starting
    /// one if needed.
    fn top_up(&mut self) -> Result<(), Turn> {
        let jobs = self.jobs;
        while self.in_flight.len() < IN_FLIGHT {
            let Some(task) = self.state.next() else { break };
            let sent = match self.worker() {
                Ok(w) => w.send(jobs[task.index], task.attempt),
                Err(e) => {
                    // Leave the job to another slot (or to the final sweep).
                    self.state.push_front(task);
                    *lock(&self.state.start_error) = Some(e);
                    return Err(Turn::NoWorker);
                }
            };
            match sent {
                Sent::Yes(id) => self.in_flight.push_back((id, task)),
                Sent::Refused(outcome) => self.state.finish(task.index, outcome, self.on_done),
                Sent::Died(why) => {
                    // Counted as sent: if nothing else was in flight, this
                    // job is the one charged with the death.
                    self.in_flight.push_back((0, task));
                    return Err(Turn::Lost(Lost::Died(why)));
                }
            }
        }
        Ok(())
    }

    /// The slot's worker, started now if it has none.
    fn worker(&mut self) -> Result<&mut Worker, PoolError> {
        let w = match self.worker.take() {
            Some(w) => w,
            None => {
                let startup = self.timeout.max(MIN_STARTUP_TIMEOUT);
                let w = Worker::start(self.config, self.cache, startup)?;
                self.state.ever_started.store(true, Ordering::SeqCst);
                w
            }
        };
        Ok(self.worker.insert(w))
    }

    /// Waits for the answer to the oldest job in flight.
    fn receive_oldest(&mut self) -> Turn {
        let Some(&(id, task)) = self.in_flight.front() else {
            return Turn::Idle;
        };
        let Some(w) = self.worker.as_mut() else {
            return Turn::Lost(Lost::Died("no worker".to_string()));
        };
        match w.receive(id, self.jobs[task.index], self.cache, self.timeout) {
            Ok(outcome) => {
                self.in_flight.pop_front();
                self.state.finish(task.index, outcome, self.on_done);
                Turn::Answered
            }
            Err(lost) => Turn::Lost(lost),
        }
    }

    /// The worker is gone: the oldest job is the one it was on (charged
    /// with a time-out, or retried once after a death); the rest never
    /// started and go back to the queue.
    fn bury(&mut self, lost: Lost) {
        self.worker = None;
        let current = self.in_flight.pop_front();
        while let Some((_, task)) = self.in_flight.pop_back() {
            self.state.push_front(task);
        }
        let Some((_, task)) = current else { return };
        let job = self.jobs[task.index];
        remove_write_leftovers(&job.cfile);
        let message = match lost {
            Lost::TimedOut => format!(
                "{}: timed out after {:?}; the compile worker was killed",
                job.source.display(),
                self.timeout
            ),
            Lost::Died(_) if task.attempt == 0 => {
                self.state.push_front(Task {
                    index: task.index,
                    attempt: 1,
                });
                return;
            }
            Lost::Died(why) => format!(
                "{}: the compile worker died on this file twice ({why})",
                job.source.display()
            ),
        };
        self.state
            .finish(task.index, Outcome::Failed { message }, self.on_done);
    }
}

/// Removes the temporary file a worker killed mid-write leaves beside
/// `cfile`. The worker writes through importlib's `_write_atomic`, whose
/// temporary name is `<cfile>.<decimal id>`; only names of exactly that
/// shape are removed, and only in the pyc's own directory.
fn remove_write_leftovers(cfile: &std::path::Path) {
    use std::os::unix::ffi::OsStrExt;
    let (Some(dir), Some(name)) = (cfile.parent(), cfile.file_name()) else {
        return;
    };
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let entry_name = entry.file_name();
        let Some(rest) = entry_name.as_bytes().strip_prefix(name.as_bytes()) else {
            continue;
        };
        let is_temp = rest.len() > 1 && rest[0] == b'.' && rest[1..].iter().all(u8::is_ascii_digit);
        if is_temp && entry.file_type().is_ok_and(|t| t.is_file()) {
            let _ = std::fs::remove_file(entry.path());
        }
    }
}

/// Why a job's request got no answer: its worker is gone.
enum Lost {
    /// It did not answer in time and was killed.
    TimedOut,
    /// It died (why).
    Died(String),
}

/// What happened when a request was written to the worker.
enum Sent {
    /// On its way, with this id.
    Yes(u32),
    /// Not sendable (path too long): the job's outcome.
    Refused(Outcome),
    /// The pipe is closed: the worker died (why).
    Died(String),
}

/// A running worker process and the threads reading its pipes.
struct Worker {
    child: Child,
    stdin: Option<ChildStdin>,
    frames: Receiver<io::Result<Vec<u8>>>,
    stderr: Arc<Mutex<Vec<u8>>>,
    stderr_reader: thread::JoinHandle<()>,
    seq: u32,
}

impl Worker {
    /// Starts a worker and waits for its greeting.
    fn start(
        config: &PoolConfig,
        cache: Option<&CodeCache>,
        startup_timeout: Duration,
    ) -> Result<Worker, PoolError> {
        WORKERS_STARTED.fetch_add(1, Ordering::SeqCst);
        crate::log::Log::from_env().debug(format_args!(
            "compile: starting a worker of {}",
            config.python.display()
        ));
        let mut child =
            worker_command(config, cache)
                .spawn()
                .map_err(|error| PoolError::Spawn {
                    python: config.python.clone(),
                    error,
                })?;
        let (Some(stdin), Some(stdout), Some(stderr)) =
            (child.stdin.take(), child.stdout.take(), child.stderr.take())
        else {
            let _ = child.kill();
            let _ = child.wait();
            return Err(PoolError::Handshake {
                python: config.python.clone(),
                detail: "its pipes could not be set up".to_string(),
            });
        };
        let (stderr, stderr_reader) = keep_stderr_tail(stderr);
        let mut worker = Worker {
            child,
            stdin: Some(stdin),
            frames: read_frames(stdout),
            stderr,
            stderr_reader,
            seq: 0,
        };
        match worker.greeting(cache, startup_timeout) {
            Ok(()) => Ok(worker),
            Err(detail) => Err(PoolError::Handshake {
                python: config.python.clone(),
                detail,
            }),
        }
    }

    /// Waits for the worker's greeting (and teaches the code cache the
    /// identity it announces); the reason it failed otherwise.
    fn greeting(
        &mut self,
        cache: Option<&CodeCache>,
        startup_timeout: Duration,
    ) -> Result<(), String> {
        match self.frames.recv_timeout(startup_timeout) {
            Ok(Ok(hello)) if hello.starts_with(HELLO_PREFIX) => {
                if let Some(cache) = cache {
                    if let Some(id) = Identity::from_hello(&hello[HELLO_PREFIX.len()..]) {
                        cache.learn(id);
                    }
                }
                Ok(())
            }
            Ok(Ok(_)) => {
                let _ = self.reap();
                Err("it printed something that is not the worker's greeting".to_string())
            }
            Ok(Err(_)) | Err(RecvTimeoutError::Disconnected) => Err(self.death_reason()),
            Err(RecvTimeoutError::Timeout) => {
                let _ = self.reap();
                Err(format!("no greeting within {startup_timeout:?}"))
            }
        }
    }

    /// Writes one job's request to the worker's stdin.
    fn send(&mut self, job: &CompileJob, attempt: u8) -> Sent {
        self.seq = self.seq.wrapping_add(1);
        let request = Request {
            id: self.seq,
            optimize: job.optimize,
            mode: job.invalidation,
            attempt,
            source: job.source.as_os_str(),
            cfile: job.cfile.as_os_str(),
        };
        let Some(frame) = request.encode() else {
            return Sent::Refused(Outcome::Failed {
                message: format!("{}: path too long to compile", job.source.display()),
            });
        };
        let sent = match self.stdin.as_mut() {
            Some(stdin) => stdin.write_all(&frame).and_then(|()| stdin.flush()),
            None => Err(io::ErrorKind::BrokenPipe.into()),
        };
        match sent {
            Ok(()) => Sent::Yes(self.seq),
            Err(_) => Sent::Died(self.death_reason()),
        }
    }

    /// Waits for the answer to request `id` (the oldest one sent).
    fn receive(
        &mut self,
        id: u32,
        job: &CompileJob,
        cache: Option<&CodeCache>,
        timeout: Duration,
    ) -> Result<Outcome, Lost> {
        match self.frames.recv_timeout(timeout) {
            Ok(Ok(payload)) => match Response::decode(&payload) {
                Some(r) if r.id == id => {
                    if let (Reply::WrittenCached(body), Some(cache)) = (&r.reply, cache) {
                        cache.store(job, body);
                    }
                    Ok(outcome_of(job, r.reply))
                }
                _ => {
                    let _ = self.reap();
                    Err(Lost::Died("it sent a garbled reply".to_string()))
                }
            },
            Ok(Err(_)) | Err(RecvTimeoutError::Disconnected) => {
                Err(Lost::Died(self.death_reason()))
            }
            Err(RecvTimeoutError::Timeout) => {
                let _ = self.reap();
                Err(Lost::TimedOut)
            }
        }
    }

    /// Kills (if still running) and reaps the process.
    fn reap(&mut self) -> io::Result<ExitStatus> {
        self.stdin = None;
        if let Ok(Some(status)) = self.child.try_wait() {
            return Ok(status);
        }
        let _ = self.child.kill();
        self.child.wait()
    }

    /// Reaps a worker that stopped answering and says why it ended:
    /// exit status or signal, plus the last line of its stderr.
    fn death_reason(&mut self) -> String {
        // Give a dying process a moment to finish exiting on its own, so
        // its real status (not our SIGKILL) is reported.
        let deadline = Instant::now() + EXIT_GRACE;
        while Instant::now() < deadline {
            match self.child.try_wait() {
                Ok(Some(_)) | Err(_) => break,
                Ok(None) => thread::sleep(EXIT_POLL),
            }
        }
        let status = match self.reap() {
            Ok(status) => describe_status(status),
            Err(e) => format!("could not be reaped: {e}"),
        };
        // The stderr reader ends once the pipe closes; wait briefly for it.
        let deadline = Instant::now() + EXIT_GRACE;
        while !self.stderr_reader.is_finished() && Instant::now() < deadline {
            thread::sleep(EXIT_POLL);
        }
        let tail = lock(&self.stderr);
        let text = String::from_utf8_lossy(&tail);
        match text.lines().rev().map(str::trim).find(|l| !l.is_empty()) {
            Some(line) => format!("{status}: {line}"),
            None => status,
        }
    }
}

impl Drop for Worker {
    fn drop(&mut self) {
        // Idle workers hold no unfinished writes (every pyc is reported
        // only after os.replace), so killing is safe and faster than a
        // graceful exit.
        let _ = self.reap();
    }
}

/// The command line of a worker: `python -I -S <flags> -c <worker>` and
/// the worker's own options, every pipe captured.
fn worker_command(config: &PoolConfig, cache: Option<&CodeCache>) -> Command {
    let mut cmd = Command::new(&config.python);
    cmd.arg("-I")
        .arg("-S")
        .args(&config.extra_flags)
        .arg("-c")
        .arg(WORKER_SCRIPT);
    if config.on_warning == OnWarning::WriteAndReport {
        cmd.arg("--write-warned");
    }
    if config.test_hooks {
        cmd.arg("--test-hooks");
    }
    if cache.is_some() {
        cmd.arg("--return-body");
    }
    cmd.stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    cmd
}

/// A detached thread passing the worker's reply frames on; it ends (after
/// sending the error) when the pipe closes or a frame cannot be read.
fn read_frames(stdout: ChildStdout) -> Receiver<io::Result<Vec<u8>>> {
    let (tx, frames) = mpsc::channel();
    thread::spawn(move || {
        let mut reader = BufReader::new(stdout);
        loop {
            let frame = match read_frame(&mut reader) {
                Ok(Some(p)) => Ok(p),
                Ok(None) => Err(io::ErrorKind::UnexpectedEof.into()),
                Err(e) => Err(e),
            };
            let end = frame.is_err();
            if tx.send(frame).is_err() || end {
                return;
            }
        }
    });
    frames
}

/// A thread keeping the last [`STDERR_TAIL`] bytes of the worker's stderr
/// (for error messages); it ends when the pipe closes.
fn keep_stderr_tail(mut stderr: ChildStderr) -> (Arc<Mutex<Vec<u8>>>, thread::JoinHandle<()>) {
    let tail = Arc::new(Mutex::new(Vec::new()));
    let tail_writer = Arc::clone(&tail);
    let reader = thread::spawn(move || {
        let mut buf = [0u8; 4096];
        loop {
            match stderr.read(&mut buf) {
                Ok(0) => return,
                Ok(n) => {
                    let mut t = lock(&tail_writer);
                    t.extend_from_slice(&buf[..n]);
                    let excess = t.len().saturating_sub(STDERR_TAIL);
                    t.drain(..excess);
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => return,
            }
        }
    });
    (tail, reader)
}

/// "exited with status 3", "killed by signal 9".
fn describe_status(status: ExitStatus) -> String {
    match (status.code(), status.signal()) {
        (Some(code), _) => format!("exited with status {code}"),
        (None, Some(sig)) => format!("killed by signal {sig}"),
        _ => status.to_string(),
    }
}

/// Turns the worker's reply into the public outcome.
fn outcome_of(job: &CompileJob, reply: Reply) -> Outcome {
    match reply {
        Reply::Written | Reply::WrittenCached(_) => Outcome::Written,
        Reply::SyntaxError {
            path,
            line,
            message,
        } => Outcome::SyntaxError {
            path,
            line,
            message,
        },
        Reply::Failed(detail) => Outcome::Failed {
            message: format!("{}: {detail}", job.source.display()),
        },
        Reply::Rejected(detail) => Outcome::Rejected {
            message: format!("{}: {detail}", job.source.display()),
        },
        Reply::LeftToInterpreter(warnings) => Outcome::LeftToInterpreter {
            path: job.source.clone(),
            warnings,
        },
        Reply::WrittenWarned(warnings) => Outcome::WrittenWarned { warnings },
    }
}

#[cfg(test)]
mod tests {

    #[test]
    fn only_write_atomic_leftovers_are_removed() {
        let t = tempfile::tempdir().unwrap();
        let cfile = t.path().join("m.cpython-312.pyc");
        let names = [
            "m.cpython-312.pyc",
            "m.cpython-312.pyc.140394536745936",
            "m.cpython-312.pyc.tmp",
            "m.cpython-312.pyc.12a",
            "m.cpython-312.pyc.",
            "n.cpython-312.pyc.123",
        ];
        for n in names {
            std::fs::write(t.path().join(n), b"x").unwrap();
        }
        remove_write_leftovers(&cfile);
        let mut left: Vec<String> = std::fs::read_dir(t.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        left.sort();
        let mut want: Vec<String> = names
            .iter()
            .filter(|n| **n != names[1])
            .map(|n| n.to_string())
            .collect();
        want.sort();
        assert_eq!(left, want);
    }

    use super::*;

    #[test]
    fn worker_count_rules() {
        let par = thread::available_parallelism().map_or(1, |n| n.get());
        assert_eq!(worker_count(0, 0, 0), 0);
        assert_eq!(worker_count(4, 0, 1 << 30), 0);
        // A handful of small files: one worker.
        assert_eq!(worker_count(0, 5, 5 * 2000), 1);
        assert_eq!(worker_count(0, 16, 16 * 1100), 1);
        // Plenty of work: every core.
        assert_eq!(worker_count(0, 1000, 1 << 30), par);
        // Never more workers than jobs, explicit counts honoured.
        assert_eq!(worker_count(8, 3, 1 << 30), 3);
        assert_eq!(worker_count(2, 100, 0), 2);
        // 64 small files (~70 ms of work): two workers if there are cores.
        assert_eq!(worker_count(0, 64, 64 * 1100), par.min(2));
        // One huge file cannot be split.
        assert_eq!(worker_count(0, 1, 1 << 30), 1);
    }
}

//! A persistent team of threads for the forward pass, with low per-call overhead.
//!
//! A decode step of SmolLM2 is about 150 small parallel sections (four matrices, attention and
//! the FFN activation per layer), each a few microseconds of work. rayon's fork/join wakes
//! sleeping workers through the OS: on this machine a `rayon::join` of two 10 µs halves took
//! 21 µs when the workers had been idle for 20 µs (no speed-up at all), 11–14 µs when they were
//! still spinning (`docs/real-model.md`, "Threads"). A team whose workers spin between
//! sections, as llama.cpp's threads do, starts a section in well under a microsecond.
//!
//! Model: [`ThreadTeam::install`] makes a team current on the calling thread for the duration
//! of a closure (like rayon's `ThreadPool::install`); inside it, [`run_parts`] and
//! [`for_each_chunk_mut`] split work into one part per thread of the team. Outside any team,
//! and inside a part (nested calls), they run on the calling thread alone, so library code may
//! call them unconditionally.
//!
//! Parts are *claimed*, not assigned: the calling thread and the workers each take the next
//! unclaimed part until none is left. On a busy machine a worker that the OS has descheduled
//! claims nothing and the caller runs its part instead, so a section never waits for a thread
//! that is not running (a fixed assignment made two threads 3–4× slower than one under load).
//! Which thread runs a part does not change its result, so results never depend on the thread
//! count as long as each part's work is fixed by its index (every user here splits over output
//! rows, heads or input vectors, never over a reduction).
//!
//! Idle workers spin for about [`SPIN_BEFORE_PARK`], yielding the core now and then, and then
//! park on a condition variable, so an idle team costs nothing; the first section after a park
//! pays one wake-up.

use std::cell::Cell;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// How long an idle worker spins before it parks. Long enough to cover the gap between decode
/// steps (sampling, detokenizing: tens of microseconds), short enough that an idle team stops
/// burning a core almost at once.
pub const SPIN_BEFORE_PARK: Duration = Duration::from_millis(2);

/// Spins between two `yield_now` calls while waiting, so a waiting thread gives its core to a
/// runnable one on an oversubscribed machine.
const SPINS_PER_YIELD: u32 = 256;

/// The work of one section: called once per part index `0..parts`.
type Job<'a> = dyn Fn(usize) + Sync + 'a;

/// A raw pointer to the current job and its part count. It is only dereferenced by a thread
/// that has claimed a part of the section it belongs to (see [`Shared::state`]); the section's
/// caller waits for every claimed part to finish before the job's borrow ends.
#[derive(Clone, Copy)]
struct JobPtr(*const Job<'static>, usize);

// SAFETY: the pointee is `Sync` and outlives every dereference (see `ThreadTeam::run`).
unsafe impl Send for JobPtr {}
unsafe impl Sync for JobPtr {}

struct Shared {
    /// `section << 32 | next unclaimed part`. A part is claimed by a compare-and-swap that
    /// also checks the section, so a late worker can never claim a part of a section whose
    /// job it did not read.
    state: AtomicU64,
    /// Parts of the current section that have finished.
    finished: AtomicUsize,
    job: Mutex<Option<JobPtr>>,
    /// A part panicked during the current section.
    panicked: AtomicBool,
    shutdown: AtomicBool,
    /// Workers parked (or about to park) on `wake`.
    parked: AtomicUsize,
    park_lock: Mutex<()>,
    wake: Condvar,
}

fn section_of(state: u64) -> u64 {
    state >> 32
}

impl Shared {
    /// Claims and runs parts of `section` until none is left.
    fn run_claimed_parts(&self, section: u64, job: JobPtr) {
        let JobPtr(job, parts) = job;
        loop {
            let state = self.state.load(Ordering::Acquire);
            let part = (state & 0xffff_ffff) as usize;
            if section_of(state) != section || part >= parts {
                return;
            }
            if self
                .state
                .compare_exchange_weak(state, state + 1, Ordering::AcqRel, Ordering::Acquire)
                .is_err()
            {
                continue;
            }
            // SAFETY: the part was claimed in `section`, whose caller waits for it to finish
            // before the job's borrow ends.
            let job = unsafe { &*job };
            if catch_unwind(AssertUnwindSafe(|| run_part(job, part))).is_err() {
                self.panicked.store(true, Ordering::SeqCst);
            }
            self.finished.fetch_add(1, Ordering::Release);
        }
    }
}

/// A fixed set of threads that run parallel sections of the forward pass.
pub struct ThreadTeam {
    threads: usize,
    shared: Arc<Shared>,
    workers: Vec<JoinHandle<()>>,
    /// Serialises sections started from different threads (the team runs one at a time).
    dispatch: Mutex<()>,
}

thread_local! {
    /// The team installed on this thread, if any (null otherwise), and whether the thread is
    /// inside a part (nested sections then run inline).
    static CURRENT: Cell<*const ThreadTeam> = const { Cell::new(std::ptr::null()) };
    static IN_PART: Cell<bool> = const { Cell::new(false) };
}

impl ThreadTeam {
    /// A team of `threads` threads in all: the caller of each section plus `threads − 1`
    /// workers started here. `threads` of 0 is treated as 1.
    pub fn new(threads: usize) -> ThreadTeam {
        let threads = threads.max(1);
        let shared = Arc::new(Shared {
            state: AtomicU64::new(0),
            finished: AtomicUsize::new(0),
            job: Mutex::new(None),
            panicked: AtomicBool::new(false),
            shutdown: AtomicBool::new(false),
            parked: AtomicUsize::new(0),
            park_lock: Mutex::new(()),
            wake: Condvar::new(),
        });
        let workers = (1..threads)
            .map(|index| {
                let shared = Arc::clone(&shared);
                std::thread::Builder::new()
                    .name(format!("edgesim-llm-{index}"))
                    .spawn(move || worker_loop(&shared))
                    .expect("spawn a team thread")
            })
            .collect();
        ThreadTeam {
            threads,
            shared,
            workers,
            dispatch: Mutex::new(()),
        }
    }

    /// Threads in the team, the caller included.
    pub fn threads(&self) -> usize {
        self.threads
    }

    /// Runs `f` with this team current on the calling thread.
    pub fn install<R>(&self, f: impl FnOnce() -> R) -> R {
        struct Restore(*const ThreadTeam);
        impl Drop for Restore {
            fn drop(&mut self) {
                CURRENT.with(|c| c.set(self.0));
            }
        }
        let previous = CURRENT.with(|c| c.replace(self as *const ThreadTeam));
        let _restore = Restore(previous);
        f()
    }

    /// Runs `job(part)` for every part `0..threads`, spread over the team (the calling thread
    /// takes part too), and returns when all have finished. A panic in any part is re-raised
    /// here.
    pub fn run(&self, job: &(dyn Fn(usize) + Sync)) {
        let parts = self.threads;
        if parts == 1 {
            return run_part(job, 0);
        }
        let _serial = self.dispatch.lock().unwrap_or_else(|e| e.into_inner());
        let shared = &*self.shared;
        // SAFETY: the 'static lifetime is never acted on: threads dereference the pointer only
        // for parts they claimed in this section, and this function waits for all of them
        // before returning (and thus before `job`'s borrow ends).
        let erased: *const Job<'static> = unsafe { std::mem::transmute(job as *const Job<'_>) };
        let pointer = JobPtr(erased, parts);
        *shared.job.lock().unwrap_or_else(|e| e.into_inner()) = Some(pointer);
        shared.finished.store(0, Ordering::SeqCst);
        shared.panicked.store(false, Ordering::SeqCst);
        let section = section_of(shared.state.load(Ordering::SeqCst)) + 1;
        shared.state.store(section << 32, Ordering::SeqCst);
        if shared.parked.load(Ordering::SeqCst) > 0 {
            let _lock = shared.park_lock.lock().unwrap_or_else(|e| e.into_inner());
            shared.wake.notify_all();
        }
        shared.run_claimed_parts(section, pointer);
        let mut spins = 0u32;
        while shared.finished.load(Ordering::Acquire) < parts {
            spins = spins.wrapping_add(1);
            if spins.is_multiple_of(SPINS_PER_YIELD) {
                std::thread::yield_now();
            } else {
                std::hint::spin_loop();
            }
        }
        if shared.panicked.load(Ordering::SeqCst) {
            panic!("a part of a parallel section of the forward pass panicked");
        }
    }
}

impl Drop for ThreadTeam {
    fn drop(&mut self) {
        self.shared.shutdown.store(true, Ordering::SeqCst);
        let next = (section_of(self.shared.state.load(Ordering::SeqCst)) + 1) << 32;
        self.shared.state.store(next, Ordering::SeqCst);
        {
            let _lock = self
                .shared
                .park_lock
                .lock()
                .unwrap_or_else(|e| e.into_inner());
            self.shared.wake.notify_all();
        }
        for worker in self.workers.drain(..) {
            let _ = worker.join();
        }
    }
}

fn run_part(job: &(dyn Fn(usize) + Sync), part: usize) {
    let was_inside = IN_PART.with(|p| p.replace(true));
    struct Leave(bool);
    impl Drop for Leave {
        fn drop(&mut self) {
            IN_PART.with(|p| p.set(self.0));
        }
    }
    let _leave = Leave(was_inside);
    job(part);
}

fn worker_loop(shared: &Shared) {
    let mut seen = 0u64;
    loop {
        let started = Instant::now();
        let mut spins = 0u32;
        let section = loop {
            let section = section_of(shared.state.load(Ordering::Acquire));
            if section != seen {
                break section;
            }
            spins = spins.wrapping_add(1);
            if !spins.is_multiple_of(SPINS_PER_YIELD) {
                std::hint::spin_loop();
                continue;
            }
            std::thread::yield_now();
            if started.elapsed() > SPIN_BEFORE_PARK {
                let mut guard = shared.park_lock.lock().unwrap_or_else(|e| e.into_inner());
                shared.parked.fetch_add(1, Ordering::SeqCst);
                while section_of(shared.state.load(Ordering::SeqCst)) == seen {
                    guard = shared.wake.wait(guard).unwrap_or_else(|e| e.into_inner());
                }
                shared.parked.fetch_sub(1, Ordering::SeqCst);
            }
        };
        seen = section;
        if shared.shutdown.load(Ordering::SeqCst) {
            return;
        }
        let job = *shared.job.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(job) = job {
            shared.run_claimed_parts(section, job);
        }
    }
}

/// Threads available to a section started here: the current team's, or 1 outside a team and
/// inside a part.
pub fn current_threads() -> usize {
    if IN_PART.with(|p| p.get()) {
        return 1;
    }
    CURRENT.with(|c| {
        let team = c.get();
        // SAFETY: `install` keeps the team alive and restores the pointer before it returns.
        if team.is_null() {
            1
        } else {
            unsafe { (*team).threads }
        }
    })
}

/// Runs `job(part, parts)` for `part` in `0..parts`, where `parts` is [`current_threads`]:
/// on the current team, or inline on the calling thread.
pub fn run_parts(job: &(dyn Fn(usize, usize) + Sync)) {
    let parts = current_threads();
    if parts == 1 {
        return job(0, 1);
    }
    CURRENT.with(|c| {
        let team = c.get();
        // SAFETY: as in `current_threads`; `parts > 1` implies a team is installed.
        let team = unsafe { &*team };
        team.run(&|part| job(part, parts));
    })
}

/// Where a chunk of [`for_each_chunk_mut`] sits.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Chunk {
    /// The part (thread) index, `0..current_threads()`: an index into per-thread scratch.
    pub part: usize,
    /// The first unit of the output the chunk holds.
    pub first_unit: usize,
}

/// Splits `0..items` into `parts` contiguous ranges whose sizes differ by at most one.
pub fn split_range(items: usize, part: usize, parts: usize) -> std::ops::Range<usize> {
    (items * part / parts)..(items * (part + 1) / parts)
}

/// Cuts `out` into one chunk per thread of the current team, at multiples of `unit` elements
/// (units split as evenly as possible; the last unit may be short), and runs
/// `f(Chunk { part, first_unit }, chunk)` on each in parallel.
pub fn for_each_chunk_mut<T: Send>(
    out: &mut [T],
    unit: usize,
    f: &(dyn Fn(Chunk, &mut [T]) + Sync),
) {
    let unit = unit.max(1);
    let len = out.len();
    let units = len.div_ceil(unit);
    let parts = current_threads().min(units.max(1));
    if parts <= 1 {
        return f(
            Chunk {
                part: 0,
                first_unit: 0,
            },
            out,
        );
    }
    let mut chunks = Vec::with_capacity(parts);
    let mut rest = out;
    for part in 0..parts {
        let range = split_range(units, part, parts);
        let end = (range.end * unit).min(len);
        let (head, tail) = rest.split_at_mut(end - range.start * unit);
        chunks.push(Mutex::new((range.start, head)));
        rest = tail;
    }
    run_parts(&|part, _| {
        if let Some(chunk) = chunks.get(part) {
            let mut guard = chunk.lock().unwrap_or_else(|e| e.into_inner());
            let (first_unit, ref mut slice) = *guard;
            f(Chunk { part, first_unit }, slice);
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_part_runs_once_per_section() {
        for threads in [1, 2, 3] {
            let team = ThreadTeam::new(threads);
            let counts: Vec<AtomicUsize> = (0..threads).map(|_| AtomicUsize::new(0)).collect();
            team.install(|| {
                for _ in 0..1000 {
                    run_parts(&|part, parts| {
                        assert_eq!(parts, threads);
                        counts[part].fetch_add(1, Ordering::Relaxed);
                    });
                }
            });
            for count in &counts {
                assert_eq!(count.load(Ordering::Relaxed), 1000);
            }
        }
    }

    #[test]
    fn chunks_cover_the_output_and_nested_calls_run_inline() {
        let team = ThreadTeam::new(3);
        let mut out = vec![0usize; 10 * 4 - 1];
        team.install(|| {
            for_each_chunk_mut(&mut out, 4, &|at, chunk| {
                assert_eq!(current_threads(), 1, "nested sections run inline");
                assert!(at.part < 3);
                for (i, unit) in chunk.chunks_mut(4).enumerate() {
                    unit.fill(at.first_unit + i);
                }
            })
        });
        let mut expected: Vec<usize> = (0..10).flat_map(|u| [u; 4]).collect();
        expected.pop();
        assert_eq!(out, expected);
        assert_eq!(current_threads(), 1, "the team is uninstalled afterwards");
    }

    #[test]
    fn a_parked_team_wakes_up() {
        let team = ThreadTeam::new(2);
        let hits = AtomicUsize::new(0);
        std::thread::sleep(SPIN_BEFORE_PARK * 3);
        team.run(&|_| {
            hits.fetch_add(1, Ordering::Relaxed);
        });
        assert_eq!(hits.load(Ordering::Relaxed), 2);
    }

    #[test]
    fn a_panic_in_a_part_reaches_the_caller() {
        let team = ThreadTeam::new(2);
        let result = catch_unwind(AssertUnwindSafe(|| {
            team.run(&|part| {
                if part == 1 {
                    panic!("part 1 fails");
                }
            })
        }));
        assert!(result.is_err());
        // The team still works afterwards.
        let hits = AtomicUsize::new(0);
        team.run(&|_| {
            hits.fetch_add(1, Ordering::Relaxed);
        });
        assert_eq!(hits.load(Ordering::Relaxed), 2);
    }
}

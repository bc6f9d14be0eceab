//! A persistent team of threads for the forward pass, with low per-call overhead.
//!
//! A decode step of SmolLM2 is about 150 small parallel sections (four matrices, attention and
//! the output per layer), each a few microseconds of work. rayon's fork/join wakes sleeping
//! workers through the OS: on this machine a `rayon::join` of two 10 µs halves took 21 µs
//! when the workers had gone idle for 20 µs (no speed-up at all), 11–14 µs when they were
//! still spinning (`docs/real-model.md`, "Threads"). A team whose workers spin between
//! sections, as llama.cpp's OpenMP threads do, starts a section in well under a microsecond.
//!
//! Model: [`ThreadTeam::install`] makes a team current on the calling thread for the duration
//! of a closure (like rayon's `ThreadPool::install`); inside it, [`run_parts`] and
//! [`for_each_chunk_mut`] split work over the team's threads, the calling thread taking part 0.
//! Outside any team, and inside a part (nested calls), they run on the calling thread alone,
//! so library code may call them unconditionally.
//!
//! Workers spin for about [`SPIN_BEFORE_PARK`] after their last section, then park on a condition
//! variable, so an idle team costs nothing; the first section after a park pays one wake-up.
//! Results never depend on the thread count as long as each part's work is computed the same
//! way whoever runs it (every user here splits over output rows or heads, never over a
//! reduction).

use std::cell::Cell;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// How long an idle worker spins before it parks. Long enough to cover the gap between decode
/// steps (sampling, detokenizing: tens of microseconds), short enough that an idle team stops
/// burning a core almost at once.
pub const SPIN_BEFORE_PARK: Duration = Duration::from_millis(2);

/// The work of one section: called once per thread with the part index `0..threads`.
type Job<'a> = dyn Fn(usize) + Sync + 'a;

/// A raw pointer to the current job. It is only dereferenced between the section's start and
/// the dispatcher's wait for every worker to finish, while the job is borrowed by `run`.
#[derive(Clone, Copy)]
struct JobPtr(*const Job<'static>);

// SAFETY: the pointee is `Sync` and outlives every dereference (see `ThreadTeam::run`).
unsafe impl Send for JobPtr {}
unsafe impl Sync for JobPtr {}

struct Shared {
    /// Incremented once per section; workers run a section when they see a new value.
    epoch: AtomicUsize,
    /// Workers that finished the current section.
    finished: AtomicUsize,
    job: Mutex<Option<JobPtr>>,
    /// A worker's part panicked during the current section.
    panicked: AtomicBool,
    shutdown: AtomicBool,
    /// Workers parked (or about to park) on `wake`.
    parked: AtomicUsize,
    park_lock: Mutex<()>,
    wake: Condvar,
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
            epoch: AtomicUsize::new(0),
            finished: AtomicUsize::new(0),
            job: Mutex::new(None),
            panicked: AtomicBool::new(false),
            shutdown: AtomicBool::new(false),
            parked: AtomicUsize::new(0),
            park_lock: Mutex::new(()),
            wake: Condvar::new(),
        });
        let workers = (1..threads)
            .map(|part| {
                let shared = Arc::clone(&shared);
                std::thread::Builder::new()
                    .name(format!("edgesim-llm-{part}"))
                    .spawn(move || worker_loop(&shared, part))
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

    /// Runs `job(part)` for every part `0..threads` at once, part 0 on the calling thread, and
    /// returns when all have finished. A panic in any part is re-raised here.
    pub fn run(&self, job: &(dyn Fn(usize) + Sync)) {
        if self.threads == 1 {
            return run_part(job, 0);
        }
        let _serial = self.dispatch.lock().unwrap_or_else(|e| e.into_inner());
        let shared = &*self.shared;
        // SAFETY: the 'static lifetime is a lie the workers never act on: they dereference the
        // pointer only between the epoch bump below and their `finished` increment, and this
        // function waits for every increment before returning (and thus before `job` ends).
        let erased: *const Job<'static> = unsafe { std::mem::transmute(job as *const Job<'_>) };
        *shared.job.lock().unwrap_or_else(|e| e.into_inner()) = Some(JobPtr(erased));
        shared.finished.store(0, Ordering::SeqCst);
        shared.panicked.store(false, Ordering::SeqCst);
        shared.epoch.fetch_add(1, Ordering::SeqCst);
        if shared.parked.load(Ordering::SeqCst) > 0 {
            let _lock = shared.park_lock.lock().unwrap_or_else(|e| e.into_inner());
            shared.wake.notify_all();
        }
        let own = catch_unwind(AssertUnwindSafe(|| run_part(job, 0)));
        let workers = self.threads - 1;
        while shared.finished.load(Ordering::Acquire) < workers {
            std::hint::spin_loop();
        }
        *shared.job.lock().unwrap_or_else(|e| e.into_inner()) = None;
        if let Err(payload) = own {
            std::panic::resume_unwind(payload);
        }
        if shared.panicked.load(Ordering::SeqCst) {
            panic!("a thread of the forward pass's team panicked");
        }
    }
}

impl Drop for ThreadTeam {
    fn drop(&mut self) {
        self.shared.shutdown.store(true, Ordering::SeqCst);
        self.shared.epoch.fetch_add(1, Ordering::SeqCst);
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

fn worker_loop(shared: &Shared, part: usize) {
    let mut seen = 0usize;
    loop {
        let started = Instant::now();
        let mut spins = 0u32;
        let epoch = loop {
            let epoch = shared.epoch.load(Ordering::Acquire);
            if epoch != seen {
                break epoch;
            }
            spins = spins.wrapping_add(1);
            std::hint::spin_loop();
            // Check the clock only now and then: reading it costs more than a spin.
            if spins % 1024 == 0 && started.elapsed() > SPIN_BEFORE_PARK {
                let guard = shared.park_lock.lock().unwrap_or_else(|e| e.into_inner());
                shared.parked.fetch_add(1, Ordering::SeqCst);
                let mut guard = guard;
                while shared.epoch.load(Ordering::SeqCst) == seen {
                    guard = shared.wake.wait(guard).unwrap_or_else(|e| e.into_inner());
                }
                shared.parked.fetch_sub(1, Ordering::SeqCst);
                drop(guard);
            }
        };
        seen = epoch;
        if shared.shutdown.load(Ordering::SeqCst) {
            return;
        }
        let job = *shared.job.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(JobPtr(job)) = job {
            // SAFETY: see `ThreadTeam::run`: the job outlives this section.
            let job = unsafe { &*job };
            if catch_unwind(AssertUnwindSafe(|| run_part(job, part))).is_err() {
                shared.panicked.store(true, Ordering::SeqCst);
            }
        }
        shared.finished.fetch_add(1, Ordering::Release);
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
    fn a_panic_in_a_worker_reaches_the_caller() {
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

//! Several persistent workers, so that the Python steps of different pieces run at once.
//!
//! One worker serialises every Python step of a build; tracing and saving a SavedModel are
//! mostly single-threaded Python, so on a machine with two cores a second worker nearly halves
//! the time of a multi-piece build. Each worker is a [`Worker`] (a process, started on its
//! first request); the pool hands them out:
//!
//! - **Affinity.** A step prefers the worker that last served its piece, then its model: the
//!   worker that exported a model has its TensorFlow graph state and page cache warm for it.
//!   An idle worker is never left idle for affinity's sake.
//! - **Prewarming.** When the first Python step of a build starts, the other workers start too
//!   and import TensorFlow meanwhile (`hello`), so that the second piece does not pay the
//!   import after the first piece's export.
//! - **Sized by memory.** The build chooses how many workers may hold a model at once
//!   (`build.rs`): with too little memory for two copies of the largest model, steps run one
//!   after the other.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex};

use serde_json::json;

use super::worker::{Worker, WorkerOptions};
use super::{Provider, Runtime};

pub struct WorkerPool {
    workers: Vec<Mutex<Worker>>,
    state: Mutex<State>,
    freed: Condvar,
    prewarmed: AtomicBool,
}

struct State {
    busy: Vec<bool>,
    /// Piece or model name → the worker that last served it.
    affinity: HashMap<String, usize>,
}

impl WorkerPool {
    /// A pool of `size` workers (at least one) for `runtime`. No process starts until used.
    pub fn new(runtime: &Runtime, options: WorkerOptions, size: usize) -> WorkerPool {
        WorkerPool::lazy(Arc::new(Provider::ready(runtime.clone())), options, size)
    }

    /// A pool whose runtime is found (or installed) when its first worker starts.
    pub fn lazy(runtime: Arc<Provider>, options: WorkerOptions, size: usize) -> WorkerPool {
        let size = size.max(1);
        WorkerPool {
            workers: (0..size).map(|_| Mutex::new(Worker::lazy(runtime.clone(), options.clone()))).collect(),
            state: Mutex::new(State { busy: vec![false; size], affinity: HashMap::new() }),
            freed: Condvar::new(),
            prewarmed: AtomicBool::new(false),
        }
    }

    pub fn size(&self) -> usize {
        self.workers.len()
    }

    /// Runs `f` on a worker, preferring those that served `affinity` (most specific first:
    /// `["model/piece", "model"]`), and records it as theirs. Waits while all are busy.
    pub fn with_worker<T>(&self, affinity: &[String], f: impl FnOnce(&mut Worker) -> T) -> T {
        let index = {
            let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
            loop {
                let preferred = affinity.iter().filter_map(|a| state.affinity.get(a).copied()).find(|&i| !state.busy[i]);
                // Otherwise an idle worker that has started (warm) before one that has not.
                let idle = preferred.or_else(|| {
                    let mut idle: Vec<usize> = (0..self.workers.len()).filter(|&i| !state.busy[i]).collect();
                    idle.sort_by_key(|&i| self.workers[i].try_lock().map(|w| w.pid().is_none()).unwrap_or(true));
                    idle.first().copied()
                });
                if let Some(i) = idle {
                    state.busy[i] = true;
                    for a in affinity {
                        state.affinity.insert(a.clone(), i);
                    }
                    break i;
                }
                state = self.freed.wait(state).unwrap_or_else(|p| p.into_inner());
            }
        };
        let result = {
            let mut worker = self.workers[index].lock().unwrap_or_else(|p| p.into_inner());
            f(&mut worker)
        };
        self.release(index);
        result
    }

    fn release(&self, index: usize) {
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        state.busy[index] = false;
        drop(state);
        self.freed.notify_all();
    }

    /// Starts every idle worker that has not started yet, in the background (each imports
    /// TensorFlow). Called when the first Python step of a build begins; only the first call
    /// does anything.
    pub fn prewarm(self: &Arc<Self>) {
        if self.prewarmed.swap(true, Ordering::SeqCst) || self.workers.len() < 2 {
            return;
        }
        let idle: Vec<usize> = {
            let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
            let idle: Vec<usize> = (0..self.workers.len())
                .filter(|&i| !state.busy[i] && self.workers[i].try_lock().map(|w| w.pid().is_none()).unwrap_or(false))
                .collect();
            for &i in &idle {
                state.busy[i] = true;
            }
            idle
        };
        for index in idle {
            let pool = Arc::clone(self);
            std::thread::spawn(move || {
                {
                    let mut worker = pool.workers[index].lock().unwrap_or_else(|p| p.into_inner());
                    // A failure here shows again, with its step named, at the worker's first real request.
                    let _ = worker.call("hello", json!({}), "prewarm");
                }
                pool.release(index);
            });
        }
    }

    /// How many processes the pool's workers have started so far.
    pub fn starts(&self) -> u32 {
        self.workers.iter().map(|w| w.lock().map(|w| w.starts).unwrap_or(0)).sum()
    }

    /// The running workers' process ids.
    pub fn pids(&self) -> Vec<u32> {
        self.workers.iter().filter_map(|w| w.lock().ok()?.pid()).collect()
    }

    /// Stops every worker.
    pub fn shutdown(&self) {
        for worker in &self.workers {
            if let Ok(mut w) = worker.lock() {
                w.shutdown();
            }
        }
    }
}

impl Drop for WorkerPool {
    fn drop(&mut self) {
        self.shutdown();
    }
}

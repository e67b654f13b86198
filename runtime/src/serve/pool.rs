//! Slots: `--parallel N` handles on one set of weights, each with its own
//! KV cache, and a bounded queue in front of them. A request takes the free
//! slot whose cache shares the longest prefix with its prompt, so a
//! conversation's next request prefills only its new tokens.

use super::error::ApiError;
use crate::model::LoadedModel;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use tokio::sync::Semaphore;

/// The slots and the queue.
pub struct Pool {
    free: Mutex<Vec<LoadedModel>>,
    permits: Semaphore,
    admitted: AtomicUsize,
    parallel: usize,
    queue: usize,
}

/// A slot taken by one request; given back when dropped.
pub struct Slot {
    model: Option<LoadedModel>,
    pool: Arc<Pool>,
}

/// Counts a request admitted (running or queued) until dropped.
pub struct Admission {
    pool: Arc<Pool>,
}

impl Drop for Admission {
    fn drop(&mut self) {
        self.pool.admitted.fetch_sub(1, Ordering::SeqCst);
    }
}

impl Pool {
    /// `parallel` handles on `model`'s weights (the first is `model`
    /// itself) and room for `queue` waiting requests.
    pub fn new(model: LoadedModel, parallel: usize, queue: usize) -> Arc<Pool> {
        let parallel = parallel.max(1);
        let mut slots = Vec::with_capacity(parallel);
        for _ in 1..parallel {
            slots.push(model.share());
        }
        slots.push(model);
        Arc::new(Pool {
            free: Mutex::new(slots),
            permits: Semaphore::new(parallel),
            admitted: AtomicUsize::new(0),
            parallel,
            queue,
        })
    }

    /// No slots (a `replay:` model, which needs none), with the same
    /// admission bound: `parallel` running and `queue` waiting.
    pub fn empty(parallel: usize, queue: usize) -> Arc<Pool> {
        let parallel = parallel.max(1);
        Arc::new(Pool {
            free: Mutex::new(Vec::new()),
            permits: Semaphore::new(parallel),
            admitted: AtomicUsize::new(0),
            parallel,
            queue,
        })
    }

    /// Admits a request, or refuses it (503) when every slot is busy and
    /// the queue is full.
    pub fn admit(self: &Arc<Self>) -> Result<Admission, ApiError> {
        let limit = self.parallel + self.queue;
        let mut now = self.admitted.load(Ordering::SeqCst);
        loop {
            if now >= limit {
                return Err(ApiError::busy(self.queue));
            }
            match self
                .admitted
                .compare_exchange(now, now + 1, Ordering::SeqCst, Ordering::SeqCst)
            {
                Ok(_) => return Ok(Admission { pool: self.clone() }),
                Err(seen) => now = seen,
            }
        }
    }

    /// Waits for a free slot and takes the one whose cache shares the
    /// longest prefix with `prompt`.
    pub async fn take(self: &Arc<Self>, prompt: &[u32]) -> Slot {
        let permit = self
            .permits
            .acquire()
            .await
            .expect("the pool's semaphore is never closed");
        permit.forget();
        let mut free = self.free.lock().unwrap_or_else(|e| e.into_inner());
        let best = (0..free.len())
            .max_by_key(|&i| common_prefix(free[i].model.cached_tokens(), prompt))
            .expect("a permit means a free slot");
        Slot {
            model: Some(free.swap_remove(best)),
            pool: self.clone(),
        }
    }

    /// Requests running or queued now.
    pub fn admitted(&self) -> usize {
        self.admitted.load(Ordering::SeqCst)
    }

    /// How many slots there are.
    pub fn parallel(&self) -> usize {
        self.parallel
    }

    /// Slots generating now.
    pub fn busy(&self) -> usize {
        self.parallel - self.permits.available_permits()
    }
}

impl Slot {
    /// The model of this slot.
    pub fn model(&mut self) -> &mut LoadedModel {
        self.model
            .as_mut()
            .expect("a slot holds its model until dropped")
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        if let Some(m) = self.model.take() {
            self.pool
                .free
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .push(m);
            self.pool.permits.add_permits(1);
        }
    }
}

fn common_prefix(a: &[u32], b: &[u32]) -> usize {
    a.iter().zip(b).take_while(|(x, y)| x == y).count()
}

//! Two generations of a bounded map by message id, for what the writer keeps in memory for a
//! while (`body_cache.rs`, `live.rs`): inserts go to the younger; when it holds half the
//! capacity it becomes the older and the one before it goes, so the newest entries are the
//! ones kept, without an order to maintain per entry.

use super::id::IdMap;

/// The two generations, and the engine's reopen count their entries were read or written
/// under.
#[derive(Debug)]
pub(crate) struct Generations<V> {
    young: IdMap<V>,
    old: IdMap<V>,
    reopens: u64,
}

impl<V> Default for Generations<V> {
    fn default() -> Self {
        Self {
            young: IdMap::default(),
            old: IdMap::default(),
            reopens: 0,
        }
    }
}

impl<V> Generations<V> {
    pub(crate) fn get(&self, id: u64) -> Option<&V> {
        self.young.get(&id).or_else(|| self.old.get(&id))
    }

    /// Whether `id` is in the younger generation (an entry read from the older one may be put
    /// again to move it there).
    pub(crate) fn is_young(&self, id: u64) -> bool {
        self.young.contains_key(&id)
    }

    pub(crate) fn take(&mut self, id: u64) -> Option<V> {
        self.young.remove(&id).or_else(|| self.old.remove(&id))
    }

    pub(crate) fn forget(&mut self, id: u64) {
        self.young.remove(&id);
        self.old.remove(&id);
    }

    /// Puts `value` in the younger generation, at most `capacity` entries in both.
    pub(crate) fn insert(&mut self, id: u64, value: V, capacity: usize) {
        if self.young.len() >= capacity / 2 {
            self.old = std::mem::take(&mut self.young);
        }
        self.old.remove(&id);
        self.young.insert(id, value);
    }

    pub(crate) fn clear(&mut self) {
        self.young.clear();
        self.old.clear();
    }

    /// Forgets everything once the engine was reopened since the entries were read or
    /// written (it went back to its last durable commit).
    pub(crate) fn check_reopens(&mut self, reopens: u64) {
        if self.reopens != reopens {
            self.clear();
            self.reopens = reopens;
        }
    }

    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.young.len() + self.old.len()
    }
}

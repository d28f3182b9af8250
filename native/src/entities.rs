//! The entities of a partition (its users, or its customers): the states in one dense vector, in
//! the order they were first seen, with a hash index from id to position.
//!
//! Why not a `HashMap<Key, User>`: a hash map holds its values inline in a table of a
//! power-of-two number of buckets, so a million users of ~480 bytes took 2^21 buckets, 1 GiB,
//! and twice that while the table grew; and a scan (the partial at T) visited them in bucket
//! order, one scattered cache line after another. Here the states take exactly what they need
//! (plus the vector's unused capacity, which is never touched and so never resident), the
//! index 4 bytes a bucket, and a scan reads the states front to back.
//!
//! The index hashes ids with `RandomKeys` (random keys per process: a producer cannot choose ids
//! that collide). Removing one entity moves the last one into its place (`swap_remove`);
//! `retain` keeps the order of those it keeps. Whatever the order, every reader (the partial,
//! the export, the encoder) visits the entities in the same one.

use crate::state::{Key, RandomKeys};
use hashbrown::HashTable;
use std::hash::BuildHasher;

pub struct Entities<V> {
    /// position in `keys` / `vals`, found by the hash of the id
    index: HashTable<u32>,
    keys: Vec<Key>,
    vals: Vec<V>,
}

impl<V> Default for Entities<V> {
    fn default() -> Self {
        Entities {
            index: HashTable::new(),
            keys: Vec::new(),
            vals: Vec::new(),
        }
    }
}

#[inline]
fn hash(k: &str) -> u64 {
    RandomKeys.hash_one(k)
}

impl<V> Entities<V> {
    #[inline]
    pub fn len(&self) -> usize {
        self.vals.len()
    }

    #[inline]
    pub fn is_empty(&self) -> bool {
        self.vals.is_empty()
    }

    /// The position of entity `k` (stable until an entity is removed).
    #[inline]
    pub fn position(&self, k: &str) -> Option<usize> {
        let keys = &self.keys;
        self.index
            .find(hash(k), |&i| keys[i as usize].as_str() == k)
            .map(|&i| i as usize)
    }

    /// The entity at position `i` (< len).
    #[inline]
    pub fn at(&self, i: usize) -> &V {
        &self.vals[i]
    }

    /// The entity at position `i` (< len), to change.
    #[inline]
    pub fn at_mut(&mut self, i: usize) -> &mut V {
        &mut self.vals[i]
    }

    #[inline]
    pub fn contains_key(&self, k: &str) -> bool {
        self.position(k).is_some()
    }

    #[inline]
    pub fn get(&self, k: &str) -> Option<&V> {
        self.position(k).map(|i| &self.vals[i])
    }

    #[inline]
    pub fn get_mut(&mut self, k: &str) -> Option<&mut V> {
        match self.position(k) {
            Some(i) => Some(&mut self.vals[i]),
            None => None,
        }
    }

    /// The entity `k`, made by `make` first when absent.
    #[inline]
    pub fn get_or_insert_with(&mut self, k: &str, make: impl FnOnce() -> V) -> &mut V {
        let i = match self.position(k) {
            Some(i) => i,
            None => self.push(Key::from(k), make()),
        };
        &mut self.vals[i]
    }

    /// Sets entity `k` (replacing the one there, which keeps its position).
    pub fn insert(&mut self, k: Key, v: V) {
        match self.position(k.as_str()) {
            Some(i) => self.vals[i] = v,
            None => {
                self.push(k, v);
            }
        }
    }

    /// Appends an entity known to be absent; its position.
    fn push(&mut self, k: Key, v: V) -> usize {
        let i = self.vals.len();
        assert!(
            i < u32::MAX as usize,
            "more than 2^32 entities in one partition"
        );
        let keys = &self.keys;
        self.index.insert_unique(hash(k.as_str()), i as u32, |&j| {
            hash(keys[j as usize].as_str())
        });
        self.keys.push(k);
        self.vals.push(v);
        i
    }

    /// Removes entity `k`; the last entity takes its position.
    pub fn remove(&mut self, k: &str) -> Option<V> {
        let keys = &self.keys;
        let entry = self
            .index
            .find_entry(hash(k), |&i| keys[i as usize].as_str() == k)
            .ok()?;
        let (i, _) = entry.remove();
        let i = i as usize;
        let last = self.vals.len() - 1;
        if i != last {
            let moved = self
                .index
                .find_mut(hash(self.keys[last].as_str()), |&j| j as usize == last)
                .expect("every entity is indexed");
            *moved = i as u32;
        }
        self.keys.swap_remove(i);
        Some(self.vals.swap_remove(i))
    }

    /// Keeps the entities for which `keep` is true, in their order.
    pub fn retain(&mut self, mut keep: impl FnMut(&Key, &mut V) -> bool) {
        let n = self.vals.len();
        let mut w = 0;
        for r in 0..n {
            if keep(&self.keys[r], &mut self.vals[r]) {
                if w != r {
                    self.keys.swap(w, r);
                    self.vals.swap(w, r);
                }
                w += 1;
            }
        }
        if w == n {
            return;
        }
        self.keys.truncate(w);
        self.vals.truncate(w);
        // positions moved: index them again (the table keeps its capacity: no rehash)
        self.index.clear();
        let keys = &self.keys;
        for (i, k) in keys.iter().enumerate() {
            self.index.insert_unique(hash(k.as_str()), i as u32, |&j| {
                hash(keys[j as usize].as_str())
            });
        }
    }

    #[inline]
    pub fn iter(&self) -> std::iter::Zip<std::slice::Iter<'_, Key>, std::slice::Iter<'_, V>> {
        self.keys.iter().zip(self.vals.iter())
    }

    #[inline]
    pub fn iter_mut(
        &mut self,
    ) -> std::iter::Zip<std::slice::Iter<'_, Key>, std::slice::IterMut<'_, V>> {
        self.keys.iter().zip(self.vals.iter_mut())
    }

    /// The capacities of the keys' and the states' vectors and of the index (`footprint.rs`).
    pub fn capacities(&self) -> (usize, usize, usize) {
        (
            self.keys.capacity(),
            self.vals.capacity(),
            self.index.capacity(),
        )
    }

    #[inline]
    pub fn keys(&self) -> std::slice::Iter<'_, Key> {
        self.keys.iter()
    }

    #[inline]
    pub fn values(&self) -> std::slice::Iter<'_, V> {
        self.vals.iter()
    }

    #[inline]
    pub fn values_mut(&mut self) -> std::slice::IterMut<'_, V> {
        self.vals.iter_mut()
    }
}

impl<'a, V> IntoIterator for &'a Entities<V> {
    type Item = (&'a Key, &'a V);
    type IntoIter = std::iter::Zip<std::slice::Iter<'a, Key>, std::slice::Iter<'a, V>>;

    fn into_iter(self) -> Self::IntoIter {
        self.iter()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn insert_get_remove_retain_keep_the_index_true() {
        let mut e: Entities<u64> = Entities::default();
        for i in 0..1000u64 {
            *e.get_or_insert_with(&format!("u{i}"), || 0) += i;
        }
        assert_eq!(e.len(), 1000);
        // removing moves the last one: every id still finds its own value
        for i in (0..1000u64).step_by(3) {
            assert_eq!(e.remove(&format!("u{i}")), Some(i));
        }
        assert_eq!(e.remove("u0"), None);
        for i in 0..1000u64 {
            assert_eq!(e.get(&format!("u{i}")).copied(), (i % 3 != 0).then_some(i));
        }
        e.retain(|_, v| *v % 2 == 0);
        for i in 0..1000u64 {
            let want = (i % 3 != 0 && i % 2 == 0).then_some(i);
            assert_eq!(e.get(&format!("u{i}")).copied(), want);
        }
        let order: Vec<u64> = e.values().copied().collect();
        e.retain(|_, _| true);
        assert_eq!(e.values().copied().collect::<Vec<_>>(), order);
        e.insert(Key::from("u2"), 7);
        assert_eq!(e.get("u2"), Some(&7));
        assert_eq!(e.len(), order.len());
        let keys: Vec<&str> = e.keys().map(|k| k.as_str()).collect();
        assert_eq!(keys.len(), e.iter().count());
    }
}

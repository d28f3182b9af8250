//! The maps an entity holds (its event and response ids, sessions, tickets, orders...): a short
//! list searched in order while it is small, a hash map with random keys once it is not.
//!
//! Why: most users hold one or two ids and no session, ticket or order at a time, and an empty
//! `HashMap` is 32 bytes in the struct while a non-empty one allocates at least four buckets
//! (~210 bytes for an id). A list of one id is 64 bytes, and `SmallMap` is 24 bytes in the
//! struct. Past `FEW` entries the list becomes a `Map`, so a producer that sends many ids for
//! one user meets a hash map with random keys (hash flooding stays out), never a long scan.
//! Iteration order is insertion order while small and the hash map's after: no reader depends
//! on an entity's map order (Python's dicts are compared as dicts).

use crate::state::{push_tight, Key, RandomKeys};

/// The hash map past `FEW` entries: hashbrown's, for `entry_ref` (one hash, and a key made only
/// when it is new).
type Map<K, V> = hashbrown::HashMap<K, V, RandomKeys>;

/// Entries kept as a list; one more turns it into a hash map.
const FEW: usize = 8;
/// A hash map that shrinks to this many entries turns back into a list.
const BACK: usize = FEW / 2;

pub enum SmallMap<V> {
    Few(Vec<(Key, V)>),
    Many(Box<Map<Key, V>>),
}

impl<V> Default for SmallMap<V> {
    fn default() -> Self {
        SmallMap::Few(Vec::new())
    }
}

impl<V> SmallMap<V> {
    pub const fn new() -> Self {
        SmallMap::Few(Vec::new())
    }

    #[inline]
    pub fn len(&self) -> usize {
        match self {
            SmallMap::Few(v) => v.len(),
            SmallMap::Many(m) => m.len(),
        }
    }

    #[inline]
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Room for `n` entries in all (a loader's hint).
    pub fn reserve(&mut self, n: usize) {
        match self {
            SmallMap::Few(v) if n <= FEW => v.reserve_exact(n.saturating_sub(v.len())),
            SmallMap::Few(_) => self.grow(n),
            SmallMap::Many(m) => m.reserve(n.saturating_sub(m.len())),
        }
    }

    /// The list as a hash map with room for `n` entries.
    fn grow(&mut self, n: usize) {
        if let SmallMap::Few(v) = self {
            let mut m = Map::with_hasher(RandomKeys);
            m.reserve(n.max(v.len()));
            m.extend(v.drain(..));
            *self = SmallMap::Many(Box::new(m));
        }
    }

    #[inline]
    pub fn get(&self, k: &str) -> Option<&V> {
        match self {
            SmallMap::Few(v) => v.iter().find(|e| e.0.as_str() == k).map(|e| &e.1),
            SmallMap::Many(m) => m.get(k),
        }
    }

    #[inline]
    pub fn get_mut(&mut self, k: &str) -> Option<&mut V> {
        match self {
            SmallMap::Few(v) => v.iter_mut().find(|e| e.0.as_str() == k).map(|e| &mut e.1),
            SmallMap::Many(m) => m.get_mut(k),
        }
    }

    #[inline]
    pub fn contains_key(&self, k: &str) -> bool {
        self.get(k).is_some()
    }

    /// Set `k` to `x`; the value it had, if any.
    pub fn insert(&mut self, k: Key, x: V) -> Option<V> {
        if let SmallMap::Many(m) = self {
            return m.insert(k, x); // one search
        }
        if let Some(old) = self.get_mut(k.as_str()) {
            return Some(std::mem::replace(old, x));
        }
        self.insert_new(k, x);
        None
    }

    /// Add `k` with `x` unless it is there: true when added (one search).
    #[inline]
    pub fn insert_if_absent(&mut self, k: &str, x: V) -> bool {
        match self {
            SmallMap::Few(v) => {
                if v.iter().any(|e| e.0.as_str() == k) {
                    return false;
                }
                self.insert_new(Key::from(k), x);
                true
            }
            SmallMap::Many(m) => match m.entry_ref(k) {
                hashbrown::hash_map::EntryRef::Occupied(_) => false,
                hashbrown::hash_map::EntryRef::Vacant(e) => {
                    e.insert(x);
                    true
                }
            },
        }
    }

    /// Add `k`, which is not in the map.
    #[inline]
    pub fn insert_new(&mut self, k: Key, x: V) {
        match self {
            SmallMap::Few(v) if v.len() < FEW => push_tight(v, (k, x)),
            SmallMap::Few(_) => {
                self.grow(FEW * 2);
                self.insert_new(k, x);
            }
            SmallMap::Many(m) => {
                m.insert(k, x);
            }
        }
    }

    /// Keep the entries `f` keeps (it may change their values).
    pub fn retain(&mut self, mut f: impl FnMut(&Key, &mut V) -> bool) {
        match self {
            SmallMap::Few(v) => v.retain_mut(|e| f(&e.0, &mut e.1)),
            SmallMap::Many(m) => {
                m.retain(|k, x| f(k, x));
                if m.len() <= BACK {
                    let v: Vec<(Key, V)> = m.drain().collect();
                    *self = SmallMap::Few(v);
                }
            }
        }
        if let SmallMap::Few(v) = self {
            if v.capacity() > v.len() * 2 {
                v.shrink_to_fit();
            }
        }
    }

    pub fn iter(&self) -> Iter<'_, V> {
        match self {
            SmallMap::Few(v) => Iter::Few(v.iter()),
            SmallMap::Many(m) => Iter::Many(m.iter()),
        }
    }

    pub fn values(&self) -> impl Iterator<Item = &V> {
        self.iter().map(|e| e.1)
    }
}

pub enum Iter<'a, V> {
    Few(std::slice::Iter<'a, (Key, V)>),
    Many(hashbrown::hash_map::Iter<'a, Key, V>),
}

impl<'a, V> Iterator for Iter<'a, V> {
    type Item = (&'a Key, &'a V);

    #[inline]
    fn next(&mut self) -> Option<Self::Item> {
        match self {
            Iter::Few(i) => i.next().map(|e| (&e.0, &e.1)),
            Iter::Many(i) => i.next(),
        }
    }
}

impl<'a, V> IntoIterator for &'a SmallMap<V> {
    type Item = (&'a Key, &'a V);
    type IntoIter = Iter<'a, V>;

    fn into_iter(self) -> Iter<'a, V> {
        self.iter()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    #[test]
    fn small_map_is_a_map() {
        // random inserts, replacements, lookups and retains against std's HashMap, across the
        // list / hash map boundary both ways
        let mut seed: u64 = 0x9e37_79b9_7f4a_7c15;
        let mut rnd = move |n: u64| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed % n
        };
        for round in 0..300 {
            let mut s: SmallMap<i64> = SmallMap::new();
            let mut h: HashMap<String, i64> = HashMap::new();
            let span = 1 + rnd(40);
            for step in 0..200 {
                let k = format!(
                    "id-{}{}",
                    rnd(span),
                    if round % 3 == 0 {
                        "-long-enough-for-heap"
                    } else {
                        ""
                    }
                );
                match rnd(10) {
                    0..=4 => assert_eq!(s.insert(Key::from(k.as_str()), step), h.insert(k, step)),
                    5 => {
                        let added = s.insert_if_absent(&k, step);
                        assert_eq!(added, !h.contains_key(&k));
                        h.entry(k).or_insert(step);
                    }
                    6 => {
                        let lim = rnd(200) as i64;
                        s.retain(|_, v| *v >= lim);
                        h.retain(|_, v| *v >= lim);
                    }
                    7 => {
                        if let (Some(a), Some(b)) = (s.get_mut(&k), h.get_mut(&k)) {
                            *a += 1000;
                            *b += 1000;
                        }
                    }
                    _ => assert_eq!(s.get(&k), h.get(&k)),
                }
                assert_eq!(s.len(), h.len());
                assert_eq!(s.is_empty(), h.is_empty());
                let mut got: Vec<(String, i64)> =
                    s.iter().map(|(k, v)| (k.as_str().to_owned(), *v)).collect();
                let mut want: Vec<(String, i64)> = h.iter().map(|(k, v)| (k.clone(), *v)).collect();
                got.sort();
                want.sort();
                assert_eq!(got, want);
            }
        }
    }

    #[test]
    fn small_map_is_three_words() {
        assert_eq!(std::mem::size_of::<SmallMap<i128>>(), 24);
    }
}

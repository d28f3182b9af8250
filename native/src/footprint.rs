//! Where the core's heap goes, by part of an entity: the bytes each part's allocations request
//! (capacities, not lengths: what `heap.rs` counts) and how many items it holds. A diagnostic
//! for the memory row of the benchmark (`bench/core_memory.py`) and for choosing a layout; it
//! walks every entity, so it is not for a hot path.

use crate::entities::Entities;
use crate::small_map::SmallMap;
use crate::state::{Account, Key, Ms, Offsets, User};
use std::mem::size_of;
use thin_vec::ThinVec;

/// (part, items, bytes) in the order the parts were first noted.
#[derive(Default)]
pub struct Footprint(pub Vec<(&'static str, usize, usize)>);

impl Footprint {
    pub fn add(&mut self, part: &'static str, items: usize, bytes: usize) {
        match self.0.iter_mut().find(|e| e.0 == part) {
            Some(e) => {
                e.1 += items;
                e.2 += bytes;
            }
            None => self.0.push((part, items, bytes)),
        }
    }
}

/// The bytes a vector's buffer takes.
fn vec_bytes<T>(v: &Vec<T>) -> usize {
    v.capacity() * size_of::<T>()
}

/// The bytes a thin list's block takes (its length and capacity, then the items; none when it
/// has never held any).
fn thin_bytes<T>(v: &ThinVec<T>) -> usize {
    match v.capacity() {
        0 => 0,
        c => 16 + c * size_of::<T>(),
    }
}

/// What a key holds off the struct (a long id's text).
fn key_bytes(k: &Key) -> usize {
    match k {
        Key::Inline(..) => 0,
        Key::Heap(s) => s.len(),
    }
}

/// A hashbrown table of `cap` entries of `entry` bytes: its buckets (a power of two, at most
/// 7/8 full) and a control byte each.
fn table_bytes(cap: usize, entry: usize) -> usize {
    if cap == 0 {
        return 0;
    }
    let buckets = if cap < 8 {
        (cap + 1).next_power_of_two()
    } else {
        (cap * 8 / 7).next_power_of_two()
    };
    buckets * (entry + 1) + 16
}

/// A small map's list or table, with its keys' long text; `inner` counts a value's own heap.
fn small_map_bytes<V>(m: &SmallMap<V>, inner: impl Fn(&V) -> usize) -> usize {
    let own = match m {
        SmallMap::Few(v) => vec_bytes(v),
        SmallMap::Many(t) => {
            size_of::<hashbrown::HashMap<Key, V>>()
                + table_bytes(t.capacity(), size_of::<(Key, V)>())
        }
    };
    own + m
        .iter()
        .map(|(k, v)| key_bytes(k) + inner(v))
        .sum::<usize>()
}

fn offsets_bytes(o: &Offsets) -> usize {
    match o {
        Offsets::Many(v) => vec_bytes(v),
        _ => 0,
    }
}

/// The dense vectors, the keys' long text and the index of a partition's entities.
pub fn entities<V>(f: &mut Footprint, e: &Entities<V>) {
    let (keys, vals, index) = e.capacities();
    f.add("entity structs", e.len(), vals * size_of::<V>());
    f.add(
        "entity ids",
        e.len(),
        keys * size_of::<Key>() + e.keys().map(key_bytes).sum::<usize>(),
    );
    f.add(
        "entity index",
        e.len(),
        table_bytes(index, size_of::<u32>()),
    );
}

pub fn users(f: &mut Footprint, users: &Entities<User>) {
    entities(f, users);
    for u in users.values() {
        f.add(
            "event ids (dedupe)",
            u.ids.len(),
            small_map_bytes(&u.ids, |_| 0),
        );
        f.add("active days", u.days.0.len(), vec_bytes(&u.days.0));
        f.add(
            "pending activity (after the fold)",
            u.lastp.len(),
            thin_bytes(&u.lastp),
        );
        let ms_lists: usize =
            u.ms.0
                .iter()
                .map(|(_, m)| match m {
                    Ms::List(v) => vec_bytes(v),
                    Ms::At(_) => 0,
                })
                .sum();
        f.add("milestones", u.ms.len(), vec_bytes(&u.ms.0) + ms_lists);
        f.add(
            "offsets (more than one source)",
            u.offs.len(),
            offsets_bytes(&u.offs),
        );
        if let Some(r) = u.rare.as_deref() {
            f.add("rare parts: the box", 1, size_of::<crate::state::Rare>());
            f.add(
                "rare parts: response ids",
                r.resp.len(),
                small_map_bytes(&r.resp, |_| 0),
            );
            f.add(
                "rare parts: facts and answers",
                r.facts.len() + r.answers.len(),
                vec_bytes(&r.facts)
                    + vec_bytes(&r.answers)
                    + r.answers
                        .iter()
                        .map(|a| a.3.as_ref().map_or(0, key_bytes))
                        .sum::<usize>(),
            );
            f.add(
                "rare parts: features",
                r.features.len(),
                small_map_bytes(&r.features, |(_, v)| vec_bytes(v)),
            );
            f.add(
                "rare parts: sessions",
                r.sessions.len(),
                small_map_bytes(&r.sessions, |_| 0),
            );
            f.add(
                "rare parts: tickets",
                r.tickets.len(),
                small_map_bytes(&r.tickets, |_| 0),
            );
            f.add(
                "rare parts: orders and returns",
                r.orders.len() + r.returns.len(),
                small_map_bytes(&r.orders, |_| 0) + small_map_bytes(&r.returns, |_| 0),
            );
        }
    }
}

pub fn accounts(f: &mut Footprint, accounts: &Entities<Account>) {
    entities(f, accounts);
    for a in accounts.values() {
        f.add("active days", a.days.0.len(), vec_bytes(&a.days.0));
        let p = &a.pending;
        f.add(
            "pending (after the fold)",
            p.lastp.len() + p.npsp.len() + p.csatp.len() + p.subp.len(),
            thin_bytes(&p.lastp) + thin_bytes(&p.npsp) + thin_bytes(&p.csatp) + thin_bytes(&p.subp),
        );
        f.add("orders", a.orders.len(), vec_bytes(&a.orders));
        f.add(
            "offsets (more than one source)",
            a.offs.len(),
            offsets_bytes(&a.offs),
        );
    }
}

//! Milestone names (the configured activation events, the value event, "step:<step>"): a
//! handful per deployment, held once per process, and a user's milestone holds a 2-byte `Name`
//! rather than a 24-byte key. With millions of users holding a few milestones each, the key was
//! the largest part of their state (docs/decisions.md 57).
//!
//! Names come from the configuration (interned when the rules are read) and from state loaded
//! from the changelog or from the Python engine (which may name milestones of a former
//! configuration). The table is bounded: past `MAX` names, `intern` fails, and the loaders treat
//! that like any value the core cannot hold.

use std::collections::HashMap;
use std::sync::{LazyLock, RwLock};

/// How many names a process holds at most.
pub const MAX: usize = u16::MAX as usize;

/// A milestone's name: an index in the process's table. Two names are equal when their texts
/// are.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct Name(u16);

#[derive(Default)]
struct Table {
    texts: Vec<&'static str>,
    /// std's hasher (random keys): names loaded from stored state are not chosen by us
    index: HashMap<&'static str, u16>,
}

static TABLE: LazyLock<RwLock<Table>> = LazyLock::new(|| RwLock::new(Table::default()));

/// The name of `s`, added to the table when new; None when the table is full.
pub fn intern(s: &str) -> Option<Name> {
    if let Some(&i) = TABLE.read().expect("names").index.get(s) {
        return Some(Name(i));
    }
    let mut t = TABLE.write().expect("names");
    if let Some(&i) = t.index.get(s) {
        return Some(Name(i));
    }
    if t.texts.len() >= MAX {
        return None;
    }
    let text: &'static str = Box::leak(Box::from(s));
    let i = t.texts.len() as u16;
    t.texts.push(text);
    t.index.insert(text, i);
    Some(Name(i))
}

/// `intern` for a loader: a Python error when the table is full.
pub fn intern_or_err(s: &str) -> pyo3::PyResult<Name> {
    intern(s).ok_or_else(|| {
        pyo3::exceptions::PyValueError::new_err(format!(
            "more than {MAX} distinct milestone names in one process"
        ))
    })
}

impl Name {
    #[inline]
    pub fn as_str(self) -> &'static str {
        TABLE.read().expect("names").texts[self.0 as usize]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_name_is_its_text() {
        let a = intern("activation:created_project").unwrap();
        let b = intern("step:invited").unwrap();
        assert_ne!(a, b);
        assert_eq!(intern("activation:created_project"), Some(a));
        assert_eq!(a.as_str(), "activation:created_project");
        assert_eq!(b.as_str(), "step:invited");
        assert_eq!(intern(&format!("step:{}", "invited")), Some(b));
    }
}

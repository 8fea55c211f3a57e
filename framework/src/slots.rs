//! A generational slot table: the worker's connections by [`ConnId`].
//!
//! Slots are reused most-recently-freed first (warm in cache); each reuse
//! bumps the slot's generation, so a [`ConnId`] kept after its connection
//! closed names nothing rather than the next connection in that slot.

use crate::cx::ConnId;

#[derive(Debug)]
struct Entry<T> {
    generation: u32,
    value: Option<T>,
}

/// Values by [`ConnId`], with generations that catch stale ids.
#[derive(Debug)]
pub(crate) struct Slots<T> {
    entries: Vec<Entry<T>>,
    free: Vec<u32>,
    len: usize,
}

impl<T> Slots<T> {
    pub(crate) fn new() -> Slots<T> {
        Slots { entries: Vec::new(), free: Vec::new(), len: 0 }
    }

    /// Live values.
    pub(crate) fn len(&self) -> usize {
        self.len
    }

    /// Stores `value` in a free slot and returns its id.
    pub(crate) fn insert(&mut self, value: T) -> ConnId {
        self.len += 1;
        if let Some(index) = self.free.pop() {
            let entry = &mut self.entries[index as usize];
            debug_assert!(entry.value.is_none());
            // Generations run 1..=u32::MAX and wrap to 1 (0 is never used).
            entry.generation = entry.generation.checked_add(1).unwrap_or(1);
            entry.value = Some(value);
            return ConnId::new(index, entry.generation);
        }
        let index = u32::try_from(self.entries.len()).expect("fewer than 2^32 connections");
        self.entries.push(Entry { generation: 1, value: Some(value) });
        ConnId::new(index, 1)
    }

    /// The value of `id`, unless its slot was freed (or reused) since.
    pub(crate) fn get(&self, id: ConnId) -> Option<&T> {
        let entry = self.entries.get(id.index())?;
        if entry.generation != id.generation() {
            return None;
        }
        entry.value.as_ref()
    }

    /// The value of `id`, mutably (see [`Slots::get`]).
    pub(crate) fn get_mut(&mut self, id: ConnId) -> Option<&mut T> {
        let entry = self.entries.get_mut(id.index())?;
        if entry.generation != id.generation() {
            return None;
        }
        entry.value.as_mut()
    }

    /// Frees the slot of `id`, returning its value.
    pub(crate) fn remove(&mut self, id: ConnId) -> Option<T> {
        let entry = self.entries.get_mut(id.index())?;
        if entry.generation != id.generation() {
            return None;
        }
        let value = entry.value.take()?;
        self.free.push(id.index() as u32);
        self.len -= 1;
        Some(value)
    }

    /// Every live id, in slot order.
    pub(crate) fn ids(&self) -> impl Iterator<Item = ConnId> + '_ {
        self.entries
            .iter()
            .enumerate()
            .filter(|(_, e)| e.value.is_some())
            .map(|(i, e)| ConnId::new(i as u32, e.generation))
    }

    /// Every live value, mutably.
    pub(crate) fn values_mut(&mut self) -> impl Iterator<Item = &mut T> + '_ {
        self.entries.iter_mut().filter_map(|e| e.value.as_mut())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stale_id_names_nothing_after_reuse() {
        let mut slots = Slots::new();
        let a = slots.insert("a");
        assert_eq!(slots.get(a), Some(&"a"));
        assert_eq!(slots.remove(a), Some("a"));
        assert_eq!(slots.get(a), None);
        let b = slots.insert("b");
        assert_eq!(b.index(), a.index(), "the slot is reused");
        assert_ne!(a, b);
        assert_eq!(slots.get(a), None, "the old id does not reach the new value");
        assert_eq!(slots.remove(a), None);
        assert_eq!(slots.get(b), Some(&"b"));
        assert_eq!(slots.len(), 1);
        assert_eq!(slots.ids().collect::<Vec<_>>(), vec![b]);
    }

    #[test]
    fn ids_past_the_table_name_nothing() {
        let mut slots: Slots<u8> = Slots::new();
        assert_eq!(slots.get_mut(ConnId::new(7, 1)), None);
        assert_eq!(slots.remove(ConnId::new(7, 1)), None);
    }
}

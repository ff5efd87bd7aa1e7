//! A slab with generations: entries are found by index, and a key whose slot was freed and
//! reused never reaches the new occupant.
//!
//! The calls and streams this side opens are named on the wire by their key
//! ([`Key::mux_id`]), so an answer finds its call by index, without hashing.
//!
//! Entries are boxed (a slot is then two words, whatever the entry); [`BoxPool`] keeps a
//! few boxes of ended calls for the next ones, so a busy connection allocates none.

/// The name of one slab entry: its slot and the slot's generation when it was inserted.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(crate) struct Key {
    index: u32,
    generation: u32,
}

impl Key {
    /// The mux id that names this entry on the wire: never 0, unique among live entries.
    pub(crate) fn mux_id(self) -> u64 {
        (u64::from(self.generation) << 32) | (u64::from(self.index) + 1)
    }

    /// The key a mux id of [`Key::mux_id`] stands for (possibly stale: check with the slab).
    pub(crate) fn from_mux_id(mux_id: u64) -> Option<Key> {
        let low = u32::try_from(mux_id & 0xffff_ffff).ok()?;
        Some(Key {
            index: low.checked_sub(1)?,
            generation: u32::try_from(mux_id >> 32).ok()?,
        })
    }

    /// The slot index (for tables kept beside the slab).
    pub(crate) fn index(self) -> usize {
        self.index as usize
    }
}

/// Boxes kept for reuse: at most this many per pool.
const POOLED: usize = 32;

/// A few boxes of `T` whose entries ended, reused for new entries.
pub(crate) struct BoxPool<T> {
    spare: Vec<Box<T>>,
}

impl<T> Default for BoxPool<T> {
    fn default() -> Self {
        Self { spare: Vec::new() }
    }
}

impl<T> BoxPool<T> {
    /// `value` in a box: a pooled one if there is one.
    pub(crate) fn boxed(&mut self, value: T) -> Box<T> {
        match self.spare.pop() {
            Some(mut b) => {
                *b = value;
                b
            }
            None => Box::new(value),
        }
    }

    /// Keeps `b` for reuse (if there is room), its entry replaced by `empty` (so nothing
    /// it held, a waker, a payload, stays alive in the pool).
    pub(crate) fn recycle(&mut self, mut b: Box<T>, empty: impl FnOnce(&T) -> T) {
        if self.spare.len() < POOLED {
            let e = empty(&b);
            *b = e;
            self.spare.push(b);
        }
    }
}

struct Slot<T> {
    generation: u32,
    value: Option<T>,
}

/// Entries of type `T` under [`Key`]s.
pub(crate) struct Slab<T> {
    slots: Vec<Slot<T>>,
    free: Vec<u32>,
    len: usize,
}

impl<T> Default for Slab<T> {
    fn default() -> Self {
        Self {
            slots: Vec::new(),
            free: Vec::new(),
            len: 0,
        }
    }
}

impl<T> Slab<T> {
    /// Stores `value` and returns its key.
    pub(crate) fn insert(&mut self, value: T) -> Key {
        self.len += 1;
        if let Some(index) = self.free.pop() {
            if let Some(slot) = self.slots.get_mut(index as usize) {
                slot.value = Some(value);
                return Key {
                    index,
                    generation: slot.generation,
                };
            }
        }
        let index = u32::try_from(self.slots.len()).unwrap_or(u32::MAX);
        self.slots.push(Slot {
            generation: 0,
            value: Some(value),
        });
        Key {
            index,
            generation: 0,
        }
    }

    pub(crate) fn get(&self, key: Key) -> Option<&T> {
        let slot = self.slots.get(key.index as usize)?;
        if slot.generation == key.generation {
            slot.value.as_ref()
        } else {
            None
        }
    }

    pub(crate) fn get_mut(&mut self, key: Key) -> Option<&mut T> {
        let slot = self.slots.get_mut(key.index as usize)?;
        if slot.generation == key.generation {
            slot.value.as_mut()
        } else {
            None
        }
    }

    /// Removes an entry; its slot's next occupant gets a new generation.
    pub(crate) fn remove(&mut self, key: Key) -> Option<T> {
        let slot = self.slots.get_mut(key.index as usize)?;
        if slot.generation != key.generation {
            return None;
        }
        let value = slot.value.take()?;
        slot.generation = slot.generation.wrapping_add(1);
        self.free.push(key.index);
        self.len -= 1;
        Some(value)
    }

    pub(crate) fn len(&self) -> usize {
        self.len
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Every live key, in slot order.
    pub(crate) fn keys(&self) -> Vec<Key> {
        self.slots
            .iter()
            .enumerate()
            .filter(|(_, s)| s.value.is_some())
            .map(|(i, s)| Key {
                index: i as u32,
                generation: s.generation,
            })
            .collect()
    }

    /// Every live entry with its key.
    #[cfg(any(test, fuzzing))]
    pub(crate) fn iter(&self) -> impl Iterator<Item = (Key, &T)> + '_ {
        self.slots.iter().enumerate().filter_map(|(i, s)| {
            let generation = s.generation;
            s.value.as_ref().map(|v| {
                (
                    Key {
                        index: i as u32,
                        generation,
                    },
                    v,
                )
            })
        })
    }

    /// Every live entry with its key.
    pub(crate) fn iter_mut(&mut self) -> impl Iterator<Item = (Key, &mut T)> + '_ {
        self.slots.iter_mut().enumerate().filter_map(|(i, s)| {
            let generation = s.generation;
            s.value.as_mut().map(|v| {
                (
                    Key {
                        index: i as u32,
                        generation,
                    },
                    v,
                )
            })
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stale_keys_never_reach_a_reused_slot() {
        let mut slab = Slab::default();
        let a = slab.insert("a");
        assert_eq!(slab.remove(a), Some("a"));
        let b = slab.insert("b");
        assert_eq!(a.index(), b.index(), "the slot is reused");
        assert_ne!(a, b);
        assert_eq!(slab.get(a), None);
        assert_eq!(slab.remove(a), None);
        assert_eq!(slab.get(b), Some(&"b"));
        assert_eq!(slab.len(), 1);
    }

    #[test]
    fn mux_ids_round_trip_and_are_never_zero() {
        let mut slab = Slab::default();
        let first = slab.insert(());
        assert_eq!(first.mux_id(), 1);
        slab.remove(first);
        let second = slab.insert(());
        assert_ne!(second.mux_id(), first.mux_id());
        for key in [first, second] {
            assert_eq!(Key::from_mux_id(key.mux_id()), Some(key));
        }
        assert_eq!(Key::from_mux_id(0), None);
    }

    #[test]
    fn pooled_boxes_are_reused_emptied_and_bounded() {
        let mut pool = BoxPool::default();
        let a = pool.boxed(vec![1u8; 100]);
        let at = &*a as *const Vec<u8>;
        pool.recycle(a, |_| Vec::new());
        assert_eq!(pool.spare.len(), 1);
        assert!(
            pool.spare.iter().all(|b| b.is_empty()),
            "emptied when pooled"
        );
        let b = pool.boxed(vec![2]);
        assert_eq!(&*b as *const Vec<u8>, at, "the pooled box is reused");
        assert_eq!(*b, vec![2]);
        for _ in 0..2 * POOLED {
            pool.recycle(Box::new(vec![3]), |_| Vec::new());
        }
        assert_eq!(pool.spare.len(), POOLED);
    }
}

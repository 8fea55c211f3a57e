//! The keyspace: one map of byte strings shared by every worker, split into
//! lock-striped shards.
//!
//! # Why shared, and why striped
//!
//! pollring is thread-per-core and each worker has its own `SO_REUSEPORT`
//! listener, so the kernel spreads a client's connections over workers.
//! Per-worker keyspaces would need no locks, but a key SET on one connection
//! would be invisible to the same client's next connection on another
//! worker: wrong for a key-value store. So the keyspace is shared, built
//! once behind an [`Arc`](std::sync::Arc) and cloned into each worker's
//! handler.
//!
//! The cost is a lock per command. It is kept small by striping: a key's
//! hash picks one of N shards (64 by default), each a `Mutex<HashMap>`, so
//! two workers contend only when they touch the same shard at the same
//! moment, and each lock is held for one map operation (plus, for GET, the
//! copy of the value into the reply). A `Mutex` rather than an `RwLock`:
//! even reads may write (lazy expiry deletes the key it finds expired), and
//! an uncontended `Mutex` is the cheaper of the two.
//!
//! Commands over several keys (MGET, MSET, DEL, EXISTS) lock every shard
//! they touch, in index order (so they cannot deadlock), and are atomic
//! like their Redis counterparts: no reader sees half an MSET.
//!
//! # Expiry
//!
//! Lazy, as in Redis: a key found expired by any access is deleted then and
//! reported missing. Plus an active sweep ([`Store::sweep`]), driven from
//! each worker's `on_tick`, that walks a few shards per call and drops their
//! expired keys, so keys nobody reads again do not linger. Shards without
//! any key carrying a TTL are skipped without a walk.
//!
//! Keys are hashed with foldhash (the hasher hashbrown defaults to),
//! seeded at random per store and per shard: a few nanoseconds for a
//! short key where std's SipHash takes about twenty, twice per command
//! (shard, then map). Its seed keeps clients from aiming keys at one
//! bucket without knowing it; it does not claim SipHash's
//! cryptographic strength against an attacker who can time lookups.
//!
//! A lock is never held across a panic by this module's code; should one
//! be poisoned anyway, the map is still consistent (every mutation here is
//! a single map call) and is used as it is.

use std::collections::HashMap;
use std::hash::BuildHasher;

use foldhash::fast::RandomState;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// Shards of a [`Store::default`].
pub const DEFAULT_SHARDS: usize = 64;

/// One key's value and deadline.
#[derive(Clone, Debug)]
struct Entry {
    value: Box<[u8]>,
    expires: Option<Instant>,
}

impl Entry {
    fn is_expired(&self, now: Instant) -> bool {
        self.expires.is_some_and(|at| at <= now)
    }
}

/// One stripe of the keyspace.
#[derive(Debug, Default)]
struct Shard {
    map: HashMap<Box<[u8]>, Entry, RandomState>,
    /// Entries with a deadline (the sweep skips a shard with none).
    volatile: usize,
}

impl Shard {
    /// The live entry for `key`, deleting it first if it has expired.
    fn live(&mut self, key: &[u8], now: Instant) -> Option<&mut Entry> {
        if self.volatile == 0 {
            // Nothing here has a deadline: one lookup.
            return self.map.get_mut(key);
        }
        match self.map.get(key) {
            None => return None,
            Some(e) if e.is_expired(now) => {
                self.remove(key);
                return None;
            }
            Some(_) => {}
        }
        self.map.get_mut(key)
    }

    fn insert(&mut self, key: &[u8], entry: Entry) -> Option<Entry> {
        self.volatile += usize::from(entry.expires.is_some());
        let old = self.map.insert(key.into(), entry);
        if let Some(old) = &old {
            self.volatile -= usize::from(old.expires.is_some());
        }
        old
    }

    /// Stores `value` under `key` with the deadline `expires`; returns the
    /// entry replaced if `keep_old`. A key already present is updated where
    /// it is (its key is not allocated again), and a value of the same
    /// length is copied over the old one.
    fn put(
        &mut self,
        key: &[u8],
        value: &[u8],
        expires: Option<Instant>,
        keep_old: bool,
    ) -> Option<Entry> {
        self.volatile += usize::from(expires.is_some());
        let Some(e) = self.map.get_mut(key) else {
            self.map.insert(key.into(), Entry { value: value.into(), expires });
            return None;
        };
        self.volatile -= usize::from(e.expires.is_some());
        let old_expires = std::mem::replace(&mut e.expires, expires);
        if !keep_old && e.value.len() == value.len() {
            e.value.copy_from_slice(value);
            return None;
        }
        let old_value = std::mem::replace(&mut e.value, value.into());
        keep_old.then_some(Entry { value: old_value, expires: old_expires })
    }

    fn remove(&mut self, key: &[u8]) -> Option<Entry> {
        let old = self.map.remove(key)?;
        self.volatile -= usize::from(old.expires.is_some());
        Some(old)
    }

    /// Sets the deadline of a live entry.
    fn set_expiry(&mut self, key: &[u8], expires: Option<Instant>) {
        if let Some(e) = self.map.get_mut(key) {
            self.volatile -= usize::from(e.expires.is_some());
            self.volatile += usize::from(expires.is_some());
            e.expires = expires;
        }
    }

    /// Drops every expired entry; returns how many.
    fn sweep(&mut self, now: Instant) -> usize {
        if self.volatile == 0 {
            return 0;
        }
        let before = self.map.len();
        self.map.retain(|_, e| !e.is_expired(now));
        self.volatile = self.map.values().filter(|e| e.expires.is_some()).count();
        before - self.map.len()
    }
}

/// When a SET applies.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum SetCondition {
    /// Always.
    #[default]
    Always,
    /// Only if the key does not exist (`NX`).
    IfAbsent,
    /// Only if the key exists (`XX`).
    IfPresent,
}

/// What a SET does to the key's deadline.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum SetExpiry {
    /// No deadline (a plain SET clears one).
    #[default]
    Persist,
    /// Keep the current deadline (`KEEPTTL`).
    Keep,
    /// Expire at this instant (`EX`, `PX`).
    At(Instant),
}

/// The outcome of [`Store::set`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SetOutcome {
    /// Whether the value was stored (false when NX/XX said no).
    pub applied: bool,
    /// The value before, if `want_old` was asked and there was one.
    pub old: Option<Box<[u8]>>,
}

/// How an EXPIRE compares the new deadline with the current one.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum ExpireCondition {
    /// Always set it.
    #[default]
    Always,
    /// Only if the key has no deadline (`NX`).
    IfNone,
    /// Only if the key has a deadline (`XX`).
    IfSome,
    /// Only if the new deadline is later (`GT`; no deadline counts as
    /// infinitely late).
    IfLater,
    /// Only if the new deadline is earlier (`LT`).
    IfEarlier,
}

/// A key's remaining time to live, as TTL and PTTL report it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Ttl {
    /// No such key (TTL replies -2).
    Missing,
    /// The key never expires (TTL replies -1).
    Persistent,
    /// Time left.
    Remaining(Duration),
}

/// Why INCRBY and friends refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum IncrError {
    /// The stored value is not a decimal `i64`.
    NotAnInteger,
    /// The result would not fit an `i64`.
    Overflow,
}

/// The shared keyspace; see the [module docs](self) for its design.
#[derive(Debug)]
pub struct Store {
    shards: Box<[Mutex<Shard>]>,
    hasher: RandomState,
    /// Next shard the active expiry sweep visits.
    sweep_cursor: AtomicUsize,
}

impl Default for Store {
    fn default() -> Self {
        Store::with_shards(DEFAULT_SHARDS)
    }
}

/// Locks a shard, shrugging off poisoning (see the module docs).
fn lock(shard: &Mutex<Shard>) -> MutexGuard<'_, Shard> {
    shard.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl Store {
    /// An empty store striped over `shards` locks (at least one).
    pub fn with_shards(shards: usize) -> Store {
        Store {
            shards: (0..shards.max(1)).map(|_| Mutex::default()).collect(),
            hasher: RandomState::default(),
            sweep_cursor: AtomicUsize::new(0),
        }
    }

    fn shard_index(&self, key: &[u8]) -> usize {
        // A random seed: clients cannot aim many keys at one shard.
        (self.hasher.hash_one(key) % self.shards.len() as u64) as usize
    }

    fn shard(&self, key: &[u8]) -> MutexGuard<'_, Shard> {
        lock(&self.shards[self.shard_index(key)])
    }

    /// Locks, in index order, every shard that holds one of `keys`.
    fn lock_many<'k>(&self, keys: impl Iterator<Item = &'k [u8]>) -> Locked<'_> {
        let mut indices: Vec<usize> = keys.map(|k| self.shard_index(k)).collect();
        indices.sort_unstable();
        indices.dedup();
        let guards = indices.into_iter().map(|i| (i, lock(&self.shards[i]))).collect();
        Locked { store: self, guards }
    }

    /// Calls `f` with the live value of `key` (`None` if missing or expired)
    /// while its shard is locked, so the value can be copied straight into
    /// a reply.
    pub fn with_value<R>(&self, key: &[u8], now: Instant, f: impl FnOnce(Option<&[u8]>) -> R) -> R {
        let mut shard = self.shard(key);
        f(shard.live(key, now).map(|e| &*e.value))
    }

    /// Stores `value` under `key` if `condition` allows, with the deadline
    /// `expiry` says; returns whether it did and, if `want_old`, the
    /// previous value.
    pub fn set(
        &self,
        key: &[u8],
        value: &[u8],
        condition: SetCondition,
        expiry: SetExpiry,
        want_old: bool,
        now: Instant,
    ) -> SetOutcome {
        let mut shard = self.shard(key);
        let current = shard.live(key, now);
        let exists = current.is_some();
        let allowed = match condition {
            SetCondition::Always => true,
            SetCondition::IfAbsent => !exists,
            SetCondition::IfPresent => exists,
        };
        if !allowed {
            let old = if want_old { current.map(|e| e.value.clone()) } else { None };
            return SetOutcome { applied: false, old };
        }
        let expires = match expiry {
            SetExpiry::Persist => None,
            SetExpiry::Keep => current.and_then(|e| e.expires),
            SetExpiry::At(at) => Some(at),
        };
        let old = shard.put(key, value, expires, want_old);
        SetOutcome { applied: true, old: old.filter(|_| want_old).map(|e| e.value) }
    }

    /// Stores every `(key, value)` pair at once (MSET): no reader sees some
    /// and not others. Clears their deadlines.
    pub fn set_many<'a>(&self, pairs: impl Iterator<Item = (&'a [u8], &'a [u8])> + Clone) {
        let mut locked = self.lock_many(pairs.clone().map(|(k, _)| k));
        for (key, value) in pairs {
            locked.shard(key).put(key, value, None, false);
        }
    }

    /// Calls `f` with each key's live value in order, all read under one
    /// set of locks (MGET).
    pub fn with_values<'k>(
        &self,
        keys: impl Iterator<Item = &'k [u8]> + Clone,
        now: Instant,
        mut f: impl FnMut(Option<&[u8]>),
    ) {
        let mut locked = self.lock_many(keys.clone());
        for key in keys {
            f(locked.shard(key).live(key, now).map(|e| &*e.value));
        }
    }

    /// Deletes `keys`; returns how many existed (DEL).
    pub fn delete<'k>(&self, keys: impl Iterator<Item = &'k [u8]> + Clone, now: Instant) -> usize {
        let mut locked = self.lock_many(keys.clone());
        keys.filter(|key| {
            let shard = locked.shard(key);
            shard.live(key, now).is_some() && shard.remove(key).is_some()
        })
        .count()
    }

    /// Counts the keys of `keys` that exist, a key named twice counted
    /// twice (EXISTS).
    pub fn count_existing<'k>(
        &self,
        keys: impl Iterator<Item = &'k [u8]> + Clone,
        now: Instant,
    ) -> usize {
        let mut locked = self.lock_many(keys.clone());
        keys.filter(|key| locked.shard(key).live(key, now).is_some()).count()
    }

    /// Adds `delta` to the integer stored at `key` (0 if missing), keeping
    /// its deadline; returns the new value.
    ///
    /// # Errors
    /// [`IncrError`] if the value is not an integer or the sum overflows;
    /// the value is left as it was.
    pub fn incr_by(&self, key: &[u8], delta: i64, now: Instant) -> Result<i64, IncrError> {
        let mut shard = self.shard(key);
        let (current, expires) = match shard.live(key, now) {
            None => (0, None),
            Some(e) => {
                (super::parser::parse_i64(&e.value).ok_or(IncrError::NotAnInteger)?, e.expires)
            }
        };
        let n = current.checked_add(delta).ok_or(IncrError::Overflow)?;
        shard.insert(key, Entry { value: n.to_string().into_bytes().into(), expires });
        Ok(n)
    }

    /// Sets `key`'s deadline to `at` if the key exists and `condition`
    /// allows; a deadline already past deletes the key. Returns whether it
    /// applied (EXPIRE's 1 or 0).
    pub fn expire(
        &self,
        key: &[u8],
        at: Instant,
        condition: ExpireCondition,
        now: Instant,
    ) -> bool {
        let mut shard = self.shard(key);
        let Some(entry) = shard.live(key, now) else { return false };
        let allowed = match (condition, entry.expires) {
            (ExpireCondition::Always, _) => true,
            (ExpireCondition::IfNone, current) => current.is_none(),
            (ExpireCondition::IfSome, current) => current.is_some(),
            (ExpireCondition::IfLater, current) => current.is_some_and(|c| at > c),
            (ExpireCondition::IfEarlier, current) => current.is_none_or(|c| at < c),
        };
        if !allowed {
            return false;
        }
        if at <= now {
            shard.remove(key);
        } else {
            shard.set_expiry(key, Some(at));
        }
        true
    }

    /// Removes `key`'s deadline; returns whether it had one (PERSIST).
    pub fn persist(&self, key: &[u8], now: Instant) -> bool {
        let mut shard = self.shard(key);
        let had = shard.live(key, now).is_some_and(|e| e.expires.is_some());
        if had {
            shard.set_expiry(key, None);
        }
        had
    }

    /// `key`'s time to live (TTL, PTTL).
    pub fn ttl(&self, key: &[u8], now: Instant) -> Ttl {
        match self.shard(key).live(key, now) {
            None => Ttl::Missing,
            Some(Entry { expires: None, .. }) => Ttl::Persistent,
            Some(Entry { expires: Some(at), .. }) => {
                Ttl::Remaining(at.saturating_duration_since(now))
            }
        }
    }

    /// Keys stored, including expired ones no access or sweep has removed
    /// yet (as Redis's DBSIZE).
    pub fn len(&self) -> usize {
        self.shards.iter().map(|s| lock(s).map.len()).sum()
    }

    /// Keys stored with a deadline (expired ones not yet removed included).
    pub fn volatile_len(&self) -> usize {
        self.shards.iter().map(|s| lock(s).volatile).sum()
    }

    /// Whether no key is stored.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Deletes every key (FLUSHALL).
    pub fn clear(&self) {
        for shard in self.shards.iter() {
            let mut shard = lock(shard);
            // Free the memory outside the hot path's view: swap, then drop
            // after unlocking.
            let old = std::mem::take(&mut *shard);
            drop(shard);
            drop(old);
        }
    }

    /// Active expiry: visits the next `shards` shards (shared round-robin
    /// over all callers) and drops their expired keys. Returns how many.
    pub fn sweep(&self, shards: usize, now: Instant) -> usize {
        let n = self.shards.len();
        (0..shards.min(n))
            .map(|_| {
                let i = self.sweep_cursor.fetch_add(1, Ordering::Relaxed) % n;
                lock(&self.shards[i]).sweep(now)
            })
            .sum()
    }
}

/// Several shards locked at once, by index.
struct Locked<'s> {
    store: &'s Store,
    guards: Vec<(usize, MutexGuard<'s, Shard>)>,
}

impl Locked<'_> {
    fn shard(&mut self, key: &[u8]) -> &mut Shard {
        let i = self.store.shard_index(key);
        let at = self
            .guards
            .binary_search_by_key(&i, |(index, _)| *index)
            .expect("every key's shard was locked by lock_many");
        &mut self.guards[at].1
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn get(store: &Store, key: &[u8], now: Instant) -> Option<Vec<u8>> {
        store.with_value(key, now, |v| v.map(<[u8]>::to_vec))
    }

    #[test]
    fn set_get_delete() {
        let (store, now) = (Store::with_shards(4), Instant::now());
        let plain = |k: &[u8], v: &[u8]| {
            store.set(k, v, SetCondition::Always, SetExpiry::Persist, false, now)
        };
        assert!(plain(b"a", b"1").applied);
        plain(b"b", b"2");
        assert_eq!(get(&store, b"a", now).as_deref(), Some(&b"1"[..]));
        assert_eq!(store.count_existing([&b"a"[..], b"a", b"zz"].into_iter(), now), 2);
        assert_eq!(store.delete([&b"a"[..], b"b", b"c"].into_iter(), now), 2);
        assert!(store.is_empty());
    }

    #[test]
    fn set_conditions_and_old_value() {
        let (store, now) = (Store::default(), Instant::now());
        let set = |v: &[u8], c| store.set(b"k", v, c, SetExpiry::Persist, true, now);
        assert_eq!(set(b"1", SetCondition::IfPresent), SetOutcome { applied: false, old: None });
        assert_eq!(set(b"1", SetCondition::IfAbsent), SetOutcome { applied: true, old: None });
        let again = set(b"2", SetCondition::IfAbsent);
        assert_eq!(again, SetOutcome { applied: false, old: Some(b"1"[..].into()) });
        assert_eq!(set(b"3", SetCondition::Always).old.as_deref(), Some(&b"1"[..]));
    }

    #[test]
    fn overwrites_in_place_keep_values_and_deadlines_right() {
        let (store, t0) = (Store::with_shards(1), Instant::now());
        let later = t0 + Duration::from_secs(10);
        let set = |v: &[u8], e, old| store.set(b"k", v, SetCondition::Always, e, old, t0);
        set(b"abc", SetExpiry::At(later), false);
        // Same length, copied over: the value and the new (absent) deadline.
        assert_eq!(set(b"xyz", SetExpiry::Persist, false).old, None);
        assert_eq!(get(&store, b"k", t0).as_deref(), Some(&b"xyz"[..]));
        assert_eq!(store.ttl(b"k", t0), Ttl::Persistent);
        // No deadline left anywhere: the sweep has nothing to do, a read
        // takes the one-lookup path and still finds the key.
        assert_eq!(store.sweep(1, later), 0);
        assert_eq!(get(&store, b"k", later).as_deref(), Some(&b"xyz"[..]));
        // Another length, and the old value asked for.
        assert_eq!(set(b"longer", SetExpiry::At(later), true).old.as_deref(), Some(&b"xyz"[..]));
        assert_eq!(set(b"sixsix", SetExpiry::At(later), true).old.as_deref(), Some(&b"longer"[..]));
        assert_eq!(get(&store, b"k", later), None, "expired at its new deadline");
        assert_eq!(store.len(), 0);
    }

    #[test]
    fn lazy_and_active_expiry() {
        let (store, t0) = (Store::with_shards(2), Instant::now());
        let later = t0 + Duration::from_secs(10);
        store.set(b"v", b"x", SetCondition::Always, SetExpiry::At(later), false, t0);
        store.set(b"p", b"x", SetCondition::Always, SetExpiry::Persist, false, t0);
        assert_eq!(store.ttl(b"v", t0), Ttl::Remaining(Duration::from_secs(10)));
        assert_eq!(store.ttl(b"p", t0), Ttl::Persistent);
        assert_eq!(store.ttl(b"q", t0), Ttl::Missing);
        // Expired but not yet removed: DBSIZE still counts it, reads do not.
        assert_eq!(store.len(), 2);
        assert_eq!(get(&store, b"v", later), None);
        assert_eq!(store.len(), 1);
        store.set(b"w", b"x", SetCondition::Always, SetExpiry::At(later), false, t0);
        assert_eq!(store.sweep(2, later), 1);
        assert_eq!(store.len(), 1);
    }

    #[test]
    fn keepttl_and_incr_keep_the_deadline() {
        let (store, t0) = (Store::default(), Instant::now());
        let at = t0 + Duration::from_secs(5);
        store.set(b"n", b"1", SetCondition::Always, SetExpiry::At(at), false, t0);
        assert_eq!(store.incr_by(b"n", 41, t0), Ok(42));
        store.set(b"n", b"7", SetCondition::Always, SetExpiry::Keep, false, t0);
        assert_eq!(store.ttl(b"n", t0), Ttl::Remaining(Duration::from_secs(5)));
        store.set(b"n", b"7", SetCondition::Always, SetExpiry::Persist, false, t0);
        assert_eq!(store.ttl(b"n", t0), Ttl::Persistent);
    }

    #[test]
    fn incr_errors_leave_the_value() {
        let (store, now) = (Store::default(), Instant::now());
        store.set(b"s", b"abc", SetCondition::Always, SetExpiry::Persist, false, now);
        assert_eq!(store.incr_by(b"s", 1, now), Err(IncrError::NotAnInteger));
        assert_eq!(store.incr_by(b"m", i64::MAX, now), Ok(i64::MAX));
        assert_eq!(store.incr_by(b"m", 1, now), Err(IncrError::Overflow));
        assert_eq!(get(&store, b"m", now), Some(i64::MAX.to_string().into_bytes()));
    }

    #[test]
    fn expire_conditions() {
        let (store, t0) = (Store::default(), Instant::now());
        let s = |n| t0 + Duration::from_secs(n);
        store.set(b"k", b"v", SetCondition::Always, SetExpiry::Persist, false, t0);
        assert!(!store.expire(b"k", s(10), ExpireCondition::IfSome, t0));
        assert!(!store.expire(b"k", s(10), ExpireCondition::IfLater, t0));
        assert!(store.expire(b"k", s(10), ExpireCondition::IfNone, t0));
        assert!(!store.expire(b"k", s(20), ExpireCondition::IfEarlier, t0));
        assert!(store.expire(b"k", s(20), ExpireCondition::IfLater, t0));
        assert!(store.persist(b"k", t0));
        assert!(!store.persist(b"k", t0));
        assert!(store.expire(b"k", t0, ExpireCondition::Always, t0));
        assert_eq!(store.ttl(b"k", t0), Ttl::Missing);
        assert!(!store.expire(b"nope", s(1), ExpireCondition::Always, t0));
    }

    #[test]
    fn set_many_and_read_many_across_shards() {
        let (store, now) = (Store::with_shards(8), Instant::now());
        let keys: Vec<Vec<u8>> = (0..100).map(|i| format!("key{i}").into_bytes()).collect();
        store.set_many(keys.iter().map(|k| (&k[..], &k[..])));
        let mut seen = Vec::new();
        let with_missing = keys.iter().map(|k| &k[..]).chain([&b"missing"[..]]);
        store.with_values(with_missing, now, |v| seen.push(v.map(<[u8]>::to_vec)));
        assert_eq!(seen.len(), 101);
        assert!(seen[..100].iter().zip(&keys).all(|(v, k)| v.as_ref() == Some(k)));
        assert_eq!(seen[100], None);
        store.clear();
        assert_eq!(store.len(), 0);
    }
}

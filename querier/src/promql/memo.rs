//! Per-query memo of work derived from a label set.
//!
//! A range query evaluates its tree at every step, and the steps see the same
//! series again and again with the same shared label sets (a selector hands
//! out clones of the loaded series' labels). Operators that derive something
//! from a label set (a group key, the set without `le` or without the metric
//! name) ask the memo, keyed by the operator and the input set's storage
//! address, so each distinct input is transformed once per query instead of
//! once per step. The derived sets come out of the memo shared as well, so
//! the next operator up the tree hits its memo too. Derived sets are also
//! interned: equal sets derived from different inputs (the group key of
//! every series of one group) are one shared set, so comparing them is a
//! pointer comparison rather than a comparison of their strings.

use std::cell::RefCell;
use std::collections::{HashMap, HashSet};
use std::hash::{BuildHasherDefault, Hasher};

use storage::Labels;
use storage::labels::LabelsBuildHasher;

/// Entries after which a memo starts afresh: label sets built anew at every
/// step (by an operator without a memo) never hit, and must not pile up.
const MAX_ENTRIES: usize = 1 << 18;

/// Derived label sets by content, each once.
type Interned = HashSet<Labels, LabelsBuildHasher>;

/// A value a memo can hand out; `prepare` runs once, before the value is
/// stored, for work every later clone should not repeat, and returns the
/// value to store (its label sets interned).
pub(crate) trait MemoValue: Clone {
    fn prepare(self, interned: &mut Interned) -> Self;
}

/// The id of a label set is computed lazily and copied into clones made
/// after that, so it is computed (by the interning lookup) before the set
/// is shared.
impl MemoValue for Labels {
    fn prepare(self, interned: &mut Interned) -> Self {
        intern(self, interned)
    }
}

impl MemoValue for Option<(Labels, f64)> {
    fn prepare(self, interned: &mut Interned) -> Self {
        self.map(|(l, v)| (intern(l, interned), v))
    }
}

/// The interned set equal to `l` (`l` itself if it is the first).
fn intern(l: Labels, interned: &mut Interned) -> Labels {
    if let Some(same) = interned.get(&l) {
        return same.clone();
    }
    interned.insert(l.clone());
    l
}

/// Entries by (operator, input set's address): the input set, kept alive
/// with its entry so that its address is not reused by another set while
/// the entry exists, and the derived value.
type Entries<V> = HashMap<(usize, usize), (Labels, V), BuildHasherDefault<AddrHasher>>;

/// Derived values by (operator, input label set).
pub(crate) struct LabelMemo<V> {
    map: RefCell<Entries<V>>,
    interned: RefCell<Interned>,
}

impl<V> Default for LabelMemo<V> {
    fn default() -> Self {
        Self {
            map: RefCell::new(HashMap::default()),
            interned: RefCell::new(HashSet::default()),
        }
    }
}

impl<V: MemoValue> LabelMemo<V> {
    /// `derive(input)`, computed once per `op` (any number unique among the
    /// callers of this memo, such as an AST node's address) and input set.
    pub fn get(&self, op: usize, input: &Labels, derive: impl FnOnce(&Labels) -> V) -> V {
        let key = (op, input.storage_addr());
        if let Some((_, v)) = self.map.borrow().get(&key) {
            return v.clone();
        }
        // Derived before borrowing: a derivation may use the memo too.
        let v = derive(input);
        let mut map = self.map.borrow_mut();
        let mut interned = self.interned.borrow_mut();
        if map.len() >= MAX_ENTRIES {
            map.clear();
            interned.clear();
        }
        let v = v.prepare(&mut interned);
        map.insert(key, (input.clone(), v.clone()));
        v
    }
}

/// Multiply-rotate hashing for keys that are addresses and small numbers
/// (the default SipHash is built to resist chosen keys, which addresses are
/// not, and costs several times more).
#[derive(Default)]
pub(crate) struct AddrHasher(u64);

const SEED: u64 = 0x51_7c_c1_b7_27_22_0a_95;

impl Hasher for AddrHasher {
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.add(u64::from(b));
        }
    }

    fn write_usize(&mut self, n: usize) {
        self.add(n as u64);
    }

    fn write_u64(&mut self, n: u64) {
        self.add(n);
    }

    fn finish(&self) -> u64 {
        self.0
    }
}

impl AddrHasher {
    fn add(&mut self, n: u64) {
        self.0 = (self.0.rotate_left(5) ^ n).wrapping_mul(SEED);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::Cell;

    fn l(pairs: &[(&str, &str)]) -> Labels {
        Labels::from_pairs(pairs.iter().copied()).expect("valid labels")
    }

    #[test]
    fn derives_once_per_operator_and_label_set() {
        let memo: LabelMemo<Labels> = LabelMemo::default();
        let calls = Cell::new(0);
        let derive = |x: &Labels| {
            calls.set(calls.get() + 1);
            x.without("a")
        };
        let a = l(&[("a", "1"), ("b", "2")]);
        let first = memo.get(1, &a, derive);
        assert_eq!(first, l(&[("b", "2")]));
        // A clone shares the set: no new derivation, and the result is shared.
        let again = memo.get(1, &a.clone(), derive);
        assert_eq!(calls.get(), 1);
        assert_eq!(again.storage_addr(), first.storage_addr());
        // Another operator, or an equal set built separately, derives again.
        memo.get(2, &a, derive);
        let equal = l(&[("a", "1"), ("b", "2")]);
        assert_eq!(memo.get(1, &equal, derive), first);
        assert_eq!(calls.get(), 3);
    }

    #[test]
    fn equal_derived_sets_are_one_shared_set() {
        let memo: LabelMemo<Labels> = LabelMemo::default();
        let key = |x: &Labels| x.without("a");
        let (a, b) = (l(&[("a", "1"), ("b", "2")]), l(&[("a", "3"), ("b", "2")]));
        let (ka, kb) = (memo.get(1, &a, key), memo.get(1, &b, key));
        assert_eq!(ka, l(&[("b", "2")]));
        assert_eq!(ka.storage_addr(), kb.storage_addr());
        let c = l(&[("a", "1"), ("b", "4")]);
        assert_ne!(memo.get(1, &c, key).storage_addr(), ka.storage_addr());
        let buckets: LabelMemo<Option<(Labels, f64)>> = LabelMemo::default();
        let split = |x: &Labels| Some((x.without("a"), 1.0));
        let (sa, sb) = (buckets.get(1, &a, split), buckets.get(1, &b, split));
        let addr = |v: Option<(Labels, f64)>| v.map(|(l, _)| l.storage_addr());
        assert_eq!(addr(sa), addr(sb));
    }

    #[test]
    fn a_full_memo_starts_afresh() {
        let memo: LabelMemo<Labels> = LabelMemo::default();
        let sets: Vec<Labels> = (0..=MAX_ENTRIES)
            .map(|i| l(&[("i", &i.to_string())]))
            .collect();
        for s in &sets {
            memo.get(1, s, Labels::clone);
        }
        assert_eq!(memo.map.borrow().len(), 1);
    }
}

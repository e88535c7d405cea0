//! Dirty tracking over vmcs12 fields (the Turtles paper's "copy only what changed" merge).
//!
//! The emulated VMWRITE (and the shadow-VMCS copy-back) set a field's bit; prepare_vmcs02
//! copies only set fields into vmcs02 and then clears the set. A fresh VMPTRLD marks all.

use super::VmcsField;

const WORDS: usize = VmcsField::COUNT.div_ceil(64);

/// A set of VMCS fields as a bitmap over [`VmcsField::index`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DirtySet([u64; WORDS]);

impl DirtySet {
    /// No field.
    pub const fn empty() -> Self {
        DirtySet([0; WORDS])
    }

    /// Every field.
    pub const fn all() -> Self {
        let mut s = DirtySet([u64::MAX; WORDS]);
        let extra = WORDS * 64 - VmcsField::COUNT;
        s.0[WORDS - 1] = u64::MAX >> extra;
        s
    }

    /// The set of `fields`.
    pub const fn of(fields: &[VmcsField]) -> Self {
        let mut s = Self::empty();
        let mut i = 0;
        while i < fields.len() {
            s = s.with(fields[i]);
            i += 1;
        }
        s
    }

    /// `self` plus `f`.
    #[inline]
    pub const fn with(mut self, f: VmcsField) -> Self {
        self.0[f.index() / 64] |= 1 << (f.index() % 64);
        self
    }

    /// Adds `f`.
    #[inline]
    pub fn insert(&mut self, f: VmcsField) {
        self.0[f.index() / 64] |= 1 << (f.index() % 64);
    }

    /// True if `f` is in the set.
    #[inline]
    pub const fn contains(&self, f: VmcsField) -> bool {
        self.0[f.index() / 64] & (1 << (f.index() % 64)) != 0
    }

    /// True if no field is in the set.
    #[inline]
    pub fn is_empty(&self) -> bool {
        self.0.iter().all(|&w| w == 0)
    }

    /// True if the sets share a field.
    #[inline]
    pub fn intersects(&self, other: &DirtySet) -> bool {
        self.0.iter().zip(other.0.iter()).any(|(a, b)| a & b != 0)
    }

    /// Union.
    #[inline]
    pub fn union(&self, other: &DirtySet) -> DirtySet {
        let mut s = *self;
        for (a, b) in s.0.iter_mut().zip(other.0.iter()) {
            *a |= b;
        }
        s
    }

    /// The fields in both sets.
    #[inline]
    pub const fn intersection(&self, other: &DirtySet) -> DirtySet {
        let mut s = *self;
        let mut i = 0;
        while i < WORDS {
            s.0[i] &= other.0[i];
            i += 1;
        }
        s
    }

    /// Calls `f` with each field of the set, in table order: a plain loop over the bitmap
    /// words, for the VM-entry path where the set holds a field or two.
    #[inline]
    pub fn for_each(&self, mut f: impl FnMut(VmcsField)) {
        for (wi, &word) in self.0.iter().enumerate() {
            let mut w = word;
            while w != 0 {
                let i = wi * 64 + w.trailing_zeros() as usize;
                w &= w - 1;
                if let Some(&field) = VmcsField::ALL.get(i) {
                    f(field);
                }
            }
        }
    }

    /// Removes every field.
    #[inline]
    pub fn clear(&mut self) {
        self.0 = [0; WORDS];
    }

    /// Number of fields in the set.
    pub fn len(&self) -> usize {
        self.0.iter().map(|w| w.count_ones() as usize).sum()
    }

    /// The fields in the set, in table order (no allocation).
    pub fn iter(&self) -> impl Iterator<Item = VmcsField> + '_ {
        self.0
            .iter()
            .enumerate()
            .flat_map(|(wi, &w)| {
                let mut w = w;
                core::iter::from_fn(move || {
                    if w == 0 {
                        return None;
                    }
                    let bit = w.trailing_zeros() as usize;
                    w &= w - 1;
                    Some(wi * 64 + bit)
                })
            })
            .filter_map(|i| VmcsField::ALL.get(i).copied())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn set_operations() {
        let mut s = DirtySet::empty();
        assert!(s.is_empty());
        s.insert(VmcsField::GuestRip);
        s.insert(VmcsField::HostIa32SysenterCs);
        assert!(s.contains(VmcsField::GuestRip));
        assert!(!s.contains(VmcsField::GuestRsp));
        assert_eq!(
            s.iter().collect::<Vec<_>>(),
            [VmcsField::HostIa32SysenterCs, VmcsField::GuestRip]
        );
        assert_eq!(DirtySet::all().len(), VmcsField::COUNT);
        assert_eq!(DirtySet::all().iter().count(), VmcsField::COUNT);
        let mut seen = Vec::new();
        s.for_each(|f| seen.push(f));
        assert_eq!(seen, s.iter().collect::<Vec<_>>());
        let both = s.intersection(&DirtySet::of(&[VmcsField::GuestRip, VmcsField::GuestRsp]));
        assert_eq!(both, DirtySet::of(&[VmcsField::GuestRip]));
        assert!(s.intersects(&DirtySet::of(&[VmcsField::GuestRip])));
        assert!(!s.intersects(&DirtySet::of(&[VmcsField::GuestRsp])));
        s.clear();
        assert!(s.is_empty());
    }
}

/// Every field alone and sets spread over all bitmap words (cargo-mutants survivors: the
/// first tests used two fields of one word).
#[cfg(test)]
mod word_tests {
    use super::*;

    fn where_index(p: impl Fn(usize) -> bool) -> DirtySet {
        let mut s = DirtySet::empty();
        for &f in VmcsField::ALL {
            if p(f.index()) {
                s.insert(f);
            }
        }
        s
    }

    #[test]
    fn each_field_alone() {
        const { assert!(VmcsField::COUNT > 128, "the table spans three bitmap words") };
        for &f in VmcsField::ALL {
            let s = DirtySet::empty().with(f);
            let mut t = DirtySet::empty();
            t.insert(f);
            assert_eq!(s, t, "{}", f.name());
            assert_eq!(s, DirtySet::of(&[f]), "{}", f.name());
            assert_eq!(s.len(), 1, "{}", f.name());
            assert!(!s.is_empty(), "{}", f.name());
            assert_eq!(s.iter().collect::<Vec<_>>(), [f], "{}", f.name());
            let mut seen = Vec::new();
            s.for_each(|g| seen.push(g));
            assert_eq!(seen, [f], "{}", f.name());
            for &g in VmcsField::ALL {
                assert_eq!(s.contains(g), g == f, "{} holds {}", f.name(), g.name());
            }
            assert!(DirtySet::all().contains(f), "{}", f.name());
            assert!(s.intersects(&DirtySet::all()), "{}", f.name());
            assert_eq!(s.intersection(&DirtySet::all()), s, "{}", f.name());
            assert_eq!(s.union(&DirtySet::empty()), s, "{}", f.name());
            assert!(!s.intersects(&DirtySet::empty()), "{}", f.name());
        }
    }

    #[test]
    fn whole_sets() {
        let all = DirtySet::all();
        assert_eq!(all, DirtySet::of(VmcsField::ALL));
        assert_eq!(all.iter().collect::<Vec<_>>(), VmcsField::ALL);
        let mut seen = Vec::new();
        all.for_each(|f| seen.push(f));
        assert_eq!(seen, VmcsField::ALL);
        assert_eq!(DirtySet::of(&[]), DirtySet::empty());
        assert_eq!(DirtySet::empty().len(), 0);
        assert_eq!(DirtySet::empty().iter().count(), 0);

        let even = where_index(|i| i % 2 == 0);
        let odd = where_index(|i| i % 2 == 1);
        let thirds = where_index(|i| i % 3 == 0);
        assert_eq!(even.len() + odd.len(), VmcsField::COUNT);
        assert_eq!(even.union(&odd), all);
        assert!(!even.intersects(&odd));
        assert_eq!(even.intersection(&odd), DirtySet::empty());
        assert_eq!(even.intersection(&thirds), where_index(|i| i % 6 == 0));
        assert_eq!(even.union(&thirds), where_index(|i| i % 2 == 0 || i % 3 == 0));
        assert_eq!(odd.iter().map(VmcsField::index).collect::<Vec<_>>(), {
            (0..VmcsField::COUNT).filter(|i| i % 2 == 1).collect::<Vec<_>>()
        });
        // A set whose only field is in the last word.
        let last = *VmcsField::ALL.last().unwrap();
        let s = DirtySet::of(&[last]);
        assert!(!s.is_empty());
        assert!(s.intersects(&odd) || s.intersects(&even));
        let mut c = all;
        c.clear();
        assert!(c.is_empty());
    }
}

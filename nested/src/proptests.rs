//! Property tests and a fuzz-style no-panic test over guest-controlled inputs.
//!
//! `TURTLES_FUZZ_CASES=N cargo test -p nested` runs N cases per property (default: a
//! moderate count that keeps the suite to a few seconds).

use proptest::prelude::*;

use crate::addr::{Hpa, L1Gpa, L2Gpa};
use crate::caps::{Allowed, entry, exit, proc1};
use crate::ept::shadow::tests::{FRAME_BASE, LinearEpt01, VecFrames};
use crate::ept::shadow::{Resolution, ShadowEpt, for_each_leaf};
use crate::ept::walk::{PageSize, walk_ept12};
use crate::exits::{ExitInfo, L0Intercepts, l1_wants_exit, route};
use crate::guest::{Gpr, GuestMemory, GuestRegs, VecMemory};
use crate::testutil::{TestL1, l1, skylake, valid_vmcs12};
use crate::vmcs::shadow::{copy_vmcs12_to_shadow, shadowed_for_read};
use crate::vmcs::{DirtySet, FakeVmcs, Vmcs, Vmcs12, VmcsField};
use crate::vmx::bitmaps::{
    l1_io, l1_msr_bitmap, merge_io_bitmaps, merge_msr_bitmap, update_msr_passthrough,
};
use crate::vmx::merge::{
    Controls02, GUEST_HOT, GUEST_PLAIN, L0Config, L1State, Vmcs02Inputs, prepare_vmcs02,
};
use crate::vmx::sync::{
    EXIT_INFO_FIELDS, GUEST_RARE, SYNC_EXTRA_FIELDS, SyncScope, copy_reflected_to_shadow,
    load_l1_host_state, sync_vmcs12, sync_vmcs12_rare,
};
use crate::vmx::{L1Cpu, NestedVmx, checks};

pub(crate) fn cases(default: u32) -> ProptestConfig {
    let n =
        std::env::var("TURTLES_FUZZ_CASES").ok().and_then(|s| s.parse().ok()).unwrap_or(default);
    ProptestConfig { cases: n, failure_persistence: None, ..ProptestConfig::default() }
}

fn vmcs12_from(values: &[u64]) -> Vmcs12 {
    let mut v = Vmcs12::default();
    for (&f, &x) in VmcsField::ALL.iter().zip(values) {
        v.set(f, x);
    }
    v
}

fn any_vmcs12() -> impl Strategy<Value = Vmcs12> {
    prop::collection::vec(any::<u64>(), VmcsField::COUNT).prop_map(|v| vmcs12_from(&v))
}

fn l0_config(bits: [u32; 6]) -> L0Config {
    let hw = skylake();
    let pick = |a: Allowed, b: u32| b & a.allowed1;
    L0Config {
        hw,
        pin: pick(hw.pin(), bits[0]),
        proc1: pick(hw.primary(), bits[1]),
        proc2: pick(hw.secondary(), bits[2]),
        exit: pick(hw.exit_controls(), bits[3]),
        entry: pick(hw.entry_controls(), bits[4]) & !entry::IA32E_MODE_GUEST,
        exception_bitmap: bits[5],
        cr0_mask: u64::from(bits[0] ^ bits[5]),
        cr4_mask: u64::from(bits[1] ^ bits[5]),
    }
}

fn inputs(msr: bool, io: bool) -> Vmcs02Inputs {
    Vmcs02Inputs {
        eptp02: 0x7_7000 | 6 | 3 << 3,
        vpid02: 3,
        msr_bitmap: msr.then_some(Hpa(0x10000)),
        io_bitmaps: io.then_some((Hpa(0x11000), Hpa(0x12000))),
        virtual_apic: None,
        apic_access: None,
        l1: L1State {
            efer: 0xd01,
            pat: 0x0007_0406_0007_0406,
            dr7: 0x400,
            debugctl: 0,
            tsc_offset: 0,
        },
    }
}

const BITMAP_BITS: u32 =
    proc1::USE_MSR_BITMAPS | proc1::USE_IO_BITMAPS | proc1::UNCONDITIONAL_IO_EXITING;

proptest! {
    #![proptest_config(cases(256))]

    /// L0's exiting controls, exceptions and CR ownership are always in vmcs02, and vmcs02's
    /// controls are legal for the hardware, whatever vmcs12 holds.
    #[test]
    fn vmcs02_never_grants_more_than_l0_allows(
        v12 in any_vmcs12(),
        bits in any::<[u32; 6]>(),
        msr in any::<bool>(),
        io in any::<bool>(),
    ) {
        let l0 = l0_config(bits);
        let inp = inputs(msr, io);
        let c = Controls02::merge(&v12, &l0, &inp);
        let hw = l0.hw;
        prop_assert_eq!(c.pin & l0.pin, l0.pin);
        prop_assert_eq!(c.proc1 & l0.proc1 & !BITMAP_BITS, l0.proc1 & !BITMAP_BITS);
        prop_assert_eq!(c.proc2 & l0.proc2, l0.proc2);
        prop_assert_eq!(c.exit & l0.exit, l0.exit);
        prop_assert_eq!(c.entry & l0.entry, l0.entry);
        prop_assert_eq!(c.exception_bitmap & l0.exception_bitmap, l0.exception_bitmap);
        prop_assert_eq!(c.cr0_mask & l0.cr0_mask & 0xffff_ffff, l0.cr0_mask & 0xffff_ffff);
        prop_assert_eq!(c.cr4_mask & l0.cr4_mask & 0xffff_ffff, l0.cr4_mask & 0xffff_ffff);
        prop_assert!(hw.pin().verify(c.pin) && hw.primary().verify(c.proc1));
        prop_assert!(hw.secondary().verify(c.proc2));
        prop_assert!(hw.exit_controls().verify(c.exit) && hw.entry_controls().verify(c.entry));
        // Without bitmaps every I/O / MSR access exits.
        if !io {
            prop_assert!(c.proc1 & proc1::UNCONDITIONAL_IO_EXITING != 0);
        }
        if !msr {
            prop_assert!(c.proc1 & proc1::USE_MSR_BITMAPS == 0);
        }
        // L0's #PF interception cannot be masked by L1's error-code mask/match.
        if l0.exception_bitmap & (1 << 14) != 0 {
            prop_assert_eq!((c.pf_mask, c.pf_match), (0, 0));
        }
    }

    /// The merged MSR bitmap has every exit bit of both L0's and L1's bitmaps.
    #[test]
    fn merged_msr_bitmap_is_a_superset(
        l0b in prop::collection::vec(any::<u8>(), 4096),
        l1b in prop::collection::vec(any::<u8>(), 4096),
    ) {
        let mut a = [0u8; 4096];
        let mut b = [0u8; 4096];
        a.copy_from_slice(&l0b);
        b.copy_from_slice(&l1b);
        let mut out = [0u8; 4096];
        merge_msr_bitmap(&a, Some(&b), &mut out);
        for i in 0..4096 {
            prop_assert_eq!(out[i] & a[i], a[i]);
            prop_assert_eq!(out[i] & b[i], b[i]);
        }
    }

    /// A port exits in vmcs02 iff L0 needs it or vmcs12 asks for it (routing's answer for a
    /// one-byte access), for every way vmcs12 can set up I/O exiting; an MSR access exits
    /// iff L0's bitmap or vmcs12's does.
    #[test]
    fn merged_bitmaps_exit_iff_l0_or_l1_wants(
        l0b in prop::collection::vec(any::<u8>(), 3 * 4096),
        l1b in prop::collection::vec(any::<u8>(), 3 * 4096),
        mode in 0u8..4,
        probes in prop::collection::vec((any::<u16>(), 0u32..0x4000, any::<bool>()), 32),
    ) {
        let mut mem = VecMemory::new(0x4000);
        mem.bytes[0x1000..0x4000].copy_from_slice(&l1b);
        let v12 = Vmcs12 {
            cpu_based_vm_exec_control: match mode {
                0 => 0,
                1 => proc1::UNCONDITIONAL_IO_EXITING,
                2 => proc1::USE_IO_BITMAPS | proc1::USE_MSR_BITMAPS,
                // Bitmaps override unconditional exiting; bitmap B outside L1 memory.
                _ => proc1::USE_IO_BITMAPS | proc1::UNCONDITIONAL_IO_EXITING,
            },
            io_bitmap_a: 0x1000,
            io_bitmap_b: if mode == 3 { 0x10_0000 } else { 0x2000 },
            msr_bitmap: 0x3000,
            ..Default::default()
        };
        let page = |i: usize| -> [u8; 4096] { l0b[i * 4096..(i + 1) * 4096].try_into().unwrap() };
        let (l0a, l0bb, l0m) = (page(0), page(1), page(2));
        let (mut a, mut b, mut m) = ([0u8; 4096], [0u8; 4096], [0u8; 4096]);
        let (mut oa, mut ob, mut om) = ([0u8; 4096], [0u8; 4096], [0u8; 4096]);
        let l1io = l1_io(&v12, &mem, &mut a, &mut b);
        merge_io_bitmaps((&l0a, &l0bb), l1io, (&mut oa, &mut ob));
        merge_msr_bitmap(&l0m, l1_msr_bitmap(&v12, &mem, &mut m), &mut om);
        let bit = |bm: &[u8; 4096], n: u64| bm[(n / 8) as usize] & (1 << (n % 8)) != 0;
        let regs_with = |ecx: u32| {
            let mut r = crate::guest::Regs::default();
            r.0[1] = u64::from(ecx);
            r
        };
        for &(port, msr_low, write) in &probes {
            let p = u64::from(port);
            let (l0_bm, out) = if port < 0x8000 { (&l0a, &oa) } else { (&l0bb, &ob) };
            let io = ExitInfo { reason: 30, qualification: p << 16, ..Default::default() };
            let l1_wants = l1_wants_exit(&io, &v12, &regs_with(0), &mem).unwrap();
            prop_assert_eq!(bit(out, p & 0x7fff), bit(l0_bm, p & 0x7fff) || l1_wants, "port {:#x}", port);
            let msr = if msr_low & 0x2000 == 0 { msr_low } else { 0xc000_0000 | (msr_low & 0x1fff) };
            let n = crate::exits::routing::msr_bitmap_bit(msr, write).unwrap();
            let ex = ExitInfo { reason: if write { 32 } else { 31 }, ..Default::default() };
            let l1_wants = l1_wants_exit(&ex, &v12, &regs_with(msr), &mem).unwrap();
            prop_assert_eq!(bit(&om, n), bit(&l0m, n) || l1_wants, "msr {:#x}", msr);
        }
    }

    /// The sparse MSR merge equals the full one against an L0 bitmap that exits on every MSR
    /// except the pass-through list, whatever L1's bitmap and controls say.
    #[test]
    fn sparse_msr_merge_equals_full_merge(
        l1b in prop::collection::vec(any::<u8>(), 4096),
        uses in any::<bool>(),
        passes in prop::collection::vec(prop_oneof![0u32..0x2000, 0xc000_0000u32..0xc000_2000, any::<u32>()], 0..12),
    ) {
        let mut mem = VecMemory::new(0x2000);
        mem.bytes[0x1000..0x2000].copy_from_slice(&l1b);
        let v12 = Vmcs12 {
            cpu_based_vm_exec_control: if uses { proc1::USE_MSR_BITMAPS } else { 0 },
            msr_bitmap: 0x1000,
            ..Default::default()
        };
        let mut l0 = [0xffu8; 4096];
        for &m in &passes {
            for w in [false, true] {
                if let Some(bit) = crate::exits::routing::msr_bitmap_bit(m, w) {
                    l0[(bit / 8) as usize] &= !(1 << (bit % 8));
                }
            }
        }
        let mut buf = [0u8; 4096];
        let mut full = [0u8; 4096];
        merge_msr_bitmap(&l0, l1_msr_bitmap(&v12, &mem, &mut buf), &mut full);
        let mut sparse = [0xffu8; 4096];
        update_msr_passthrough(&passes, &v12, &mem, &mut sparse);
        prop_assert!(sparse == full);
        // And again over a stale bitmap (the image keeps one across entries).
        let mut stale = full;
        stale.iter_mut().for_each(|b| *b ^= 0x55);
        stale.iter_mut().enumerate().for_each(|(i, b)| if l0[i] == 0xff { *b = 0xff });
        let mut again = [0xffu8; 4096];
        for (i, b) in again.iter_mut().enumerate() { if l0[i] != 0xff { *b = stale[i] | l0[i]; } }
        update_msr_passthrough(&passes, &v12, &mem, &mut again);
        prop_assert!(again == full);
    }

    /// sync_vmcs12 ∘ prepare_vmcs02 returns the guest state unchanged.
    #[test]
    fn sync_after_prepare_round_trips_guest_state(
        v in any_vmcs12(),
        cr0 in any::<u32>(),
        cr4 in any::<u32>(),
        ug in any::<bool>(),
    ) {
        let mut v12 = v;
        v12.guest_cr0 = cr0.into();
        v12.guest_cr4 = cr4.into();
        v12.cr0_guest_host_mask &= 0xffff_ffff;
        v12.cr4_guest_host_mask &= 0xffff_ffff;
        v12.cpu_based_vm_exec_control |= proc1::ACTIVATE_SECONDARY_CONTROLS;
        if ug {
            v12.secondary_vm_exec_control |= crate::caps::proc2::UNRESTRICTED_GUEST;
        }
        v12.vm_exit_controls |= exit::SAVE_IA32_EFER | exit::SAVE_IA32_PAT | exit::SAVE_DEBUG_CONTROLS;
        v12.vm_entry_controls |= entry::LOAD_IA32_EFER | entry::LOAD_IA32_PAT | entry::LOAD_DEBUG_CONTROLS;
        if v12.guest_ia32_efer & (1 << 10) != 0 {
            v12.vm_entry_controls |= entry::IA32E_MODE_GUEST;
        } else {
            v12.vm_entry_controls &= !entry::IA32E_MODE_GUEST;
        }
        v12.vm_entry_intr_info_field &= !(1 << 31);
        let l0 = l0_config([0x9, 0x80, 0x2, 0x200, 0, 1 << 18]);
        let mut v02 = FakeVmcs::new();
        prepare_vmcs02(&mut v02, &v12, &DirtySet::all(), &l0, &inputs(true, true));
        let mut back = v12.clone();
        sync_vmcs12(&v02, &mut back, &ExitInfo::default(), SyncScope::Full);
        for &f in GUEST_PLAIN {
            prop_assert_eq!(back.get(f), v12.get(f), "{}", f.name());
        }
        for f in [VmcsField::GuestCr0, VmcsField::GuestCr4, VmcsField::GuestIa32Efer,
                  VmcsField::GuestIa32Pat, VmcsField::GuestDr7, VmcsField::GuestIa32Debugctl,
                  VmcsField::VmEntryControls] {
            prop_assert_eq!(back.get(f), v12.get(f), "{}", f.name());
        }
    }

    /// A hot sync followed later by the rare sync equals one full sync, a hot sync touches
    /// only the fields L0 copies to the shadow VMCS after it, and it leaves every rare field
    /// as it was.
    #[test]
    fn hot_then_rare_sync_equals_full_sync(
        v12 in any_vmcs12(),
        v02_values in prop::collection::vec(any::<u64>(), VmcsField::COUNT),
        exit in any::<[u64; 10]>(),
    ) {
        let mut v02 = FakeVmcs::new();
        for (&f, &x) in VmcsField::ALL.iter().zip(&v02_values) {
            v02.poke(f, x & f.width().mask());
        }
        let info = ExitInfo {
            reason: exit[0] as u32,
            qualification: exit[1],
            instruction_len: exit[2] as u32,
            instruction_info: exit[3] as u32,
            intr_info: exit[4] as u32,
            intr_error_code: exit[5] as u32,
            idt_vectoring_info: exit[6] as u32,
            idt_vectoring_error_code: exit[7] as u32,
            guest_physical_address: exit[8],
            guest_linear_address: exit[9],
        };
        let mut full = v12.clone();
        sync_vmcs12(&v02, &mut full, &info, SyncScope::Full);
        let mut lazy = v12.clone();
        sync_vmcs12(&v02, &mut lazy, &info, SyncScope::Hot);
        let copied: Vec<VmcsField> =
            [EXIT_INFO_FIELDS, GUEST_HOT, SYNC_EXTRA_FIELDS].concat();
        for &f in VmcsField::ALL {
            if lazy.get(f) != v12.get(f) {
                prop_assert!(copied.contains(&f), "hot sync changed {}", f.name());
            }
        }
        for &f in GUEST_RARE {
            prop_assert_eq!(lazy.get(f), v12.get(f), "{}", f.name());
        }
        // The shadow VMCS, equal to vmcs12 before, is equal again after the reflect's copy.
        for any in [false, true] {
            let mut shadow = FakeVmcs::new();
            copy_vmcs12_to_shadow(&v12, &mut shadow, any);
            let mut hot = v12.clone();
            sync_vmcs12(&v02, &mut hot, &info, SyncScope::Hot);
            copy_reflected_to_shadow(&hot, &mut shadow, any);
            for &f in VmcsField::ALL {
                if shadowed_for_read(f, any) {
                    prop_assert_eq!(shadow.peek(f), hot.get(f), "{}", f.name());
                }
            }
        }
        sync_vmcs12_rare(&v02, &mut lazy);
        prop_assert_eq!(lazy, full);
    }

    /// The hot guest-state checks read no rare field, and pass whenever the full ones do.
    #[test]
    fn hot_guest_checks_ignore_rare_fields(
        v in any_vmcs12(),
        rare in prop::collection::vec(any::<u64>(), GUEST_RARE.len()),
        ept in any::<bool>(),
    ) {
        let caps = l1();
        let l1m = TestL1::new(0x1_0000);
        let mut a = valid_vmcs12(&caps);
        // A valid vmcs12 with a random RFLAGS (reserved bits clear), then random rare fields.
        a.guest_rflags = (v.guest_rflags & 0x3f_7fd7) | 2;
        if !ept {
            a.secondary_vm_exec_control &= !crate::caps::proc2::ENABLE_EPT;
        }
        let mut b = a.clone();
        for (&f, &x) in GUEST_RARE.iter().zip(&rare) {
            b.set(f, x);
        }
        let hot_a = checks::check_guest_state_hot(&a, &caps, 36, &l1m);
        let hot_b = checks::check_guest_state_hot(&b, &caps, 36, &l1m);
        prop_assert_eq!(hot_a, hot_b);
        if checks::check_guest_state(&b, &caps, 36, &l1m).is_ok() {
            prop_assert!(hot_b.is_ok());
        }
    }

    /// Dirty-only merging produces the same vmcs02 as a full merge.
    #[test]
    fn dirty_merge_equals_full_merge(
        old in any_vmcs12(),
        writes in prop::collection::vec((0..VmcsField::COUNT, any::<u64>()), 0..12),
        bits in any::<[u32; 6]>(),
    ) {
        let l0 = l0_config(bits);
        // With a virtual-APIC page, so that vmcs12's TPR shadow reaches vmcs02 as well.
        let inp = Vmcs02Inputs { virtual_apic: Some(Hpa(0x13000)), ..inputs(true, false) };
        let mut base = FakeVmcs::new();
        prepare_vmcs02(&mut base, &old, &DirtySet::all(), &l0, &inp);
        let mut new = old.clone();
        let mut dirty = DirtySet::empty();
        for (i, value) in writes {
            let f = VmcsField::ALL[i];
            new.set(f, value);
            dirty.insert(f);
        }
        let mut a = base.clone();
        prepare_vmcs02(&mut a, &new, &dirty, &l0, &inp);
        let mut b = base;
        prepare_vmcs02(&mut b, &new, &DirtySet::all(), &l0, &inp);
        for &f in VmcsField::ALL {
            prop_assert_eq!(a.peek(f), b.peek(f), "{}", f.name());
        }
    }
}

/// One random EPT12 entry: mostly well-formed table pointers and leaves into L1 memory,
/// sometimes garbage.
fn ept_entry() -> impl Strategy<Value = u64> {
    prop_oneof![
        4 => (1u64..16).prop_map(|page| page << 12 | 7),
        3 => (0u64..1024, 1u64..8).prop_map(|(page, rwx)| page << 12 | rwx | 6 << 3),
        1 => (0u64..2, 1u64..8).prop_map(|(two_m, rwx)| two_m << 21 | rwx | 6 << 3 | 1 << 7),
        1 => (0u64..16, 0u64..8, 0u64..8, any::<bool>()).prop_map(|(page, rwx, mt, large)| {
            (page << 12) | rwx | mt << 3 | if large { 1 << 7 } else { 0 }
        }),
        1 => any::<u64>(),
        1 => Just(0u64),
    ]
}

/// An L2 address whose walk uses the populated entries (indices 0..8 at every level), or
/// any address.
fn l2_gpa() -> impl Strategy<Value = u64> {
    prop_oneof![
        4 => (0u64..8, 0u64..8, 0u64..8, 0u64..8, 0u64..4096)
            .prop_map(|(a, b, c, d, off)| a << 39 | b << 30 | c << 21 | d << 12 | off),
        1 => any::<u64>().prop_map(|g| g & 0x000f_ffff_ffff_ffff),
    ]
}

const L1_SIZE: u64 = 4 << 20;
/// EPT02 leaves built across all cases (the property must not hold vacuously).
static FIXED: core::sync::atomic::AtomicU32 = core::sync::atomic::AtomicU32::new(0);
const HPA_BASE: u64 = 0x4000_0000;

proptest! {
    #![proptest_config(cases(128))]

    /// Whatever EPT12 holds, EPT02 maps only host memory that EPT01 gives L1, with no more
    /// permissions than EPT12 and EPT01 both grant, and never panics. With EPT A/D, an EPT02
    /// leaf is writable only if EPT12's leaf is dirty (so every L2 write is in EPT12's flags).
    #[test]
    fn ept02_never_maps_outside_l1_memory(
        tables in prop::collection::vec(ept_entry(), 16 * 8),
        faults in prop::collection::vec((l2_gpa(), 1u64..8), 1..24),
        big_pages in any::<bool>(),
        perms01 in 1u8..8,
        ad in any::<bool>(),
    ) {
        let mut mem = VecMemory::new(L1_SIZE as usize);
        // 16 tables of which the first 8 entries each are random (index 0 of every level
        // reaches them for small addresses).
        for (i, e) in tables.iter().enumerate() {
            let page = (i / 8) as u64;
            let slot = (i % 8) as u64;
            mem.write_u64(L1Gpa(page * 4096 + slot * 8), *e).unwrap();
        }
        let caps = l1();
        let page = if big_pages { PageSize::Size2M } else { PageSize::Size4K };
        let ept01 = LinearEpt01 { size: L1_SIZE, hpa_base: HPA_BASE, page, perms: perms01 };
        let mut frames = VecFrames { limit: Some(256), ..Default::default() };
        let mut shadow: ShadowEpt<2> = ShadowEpt::new();
        let eptp12 = 6 | 3 << 3 | if ad { crate::ept::eptp::AD_ENABLE } else { 0 };
        let mut fixed = 0;
        for (gpa, access) in faults {
            let exit = ExitInfo { reason: 48, qualification: access, guest_physical_address: gpa, ..Default::default() };
            if shadow.handle_violation(eptp12, &exit, &mut mem, &ept01, &mut frames, &caps, 36, None)
                == Ok(Resolution::Fixed)
            {
                fixed += 1;
            }
            let _ = walk_ept12(&mem, eptp12, L2Gpa(gpa), &caps, 36);
        }
        for (_, root) in shadow.roots() {
            let mut bad = None;
            for_each_leaf(&frames, root, |g, size, e| {
                let hpa = e & 0x000f_ffff_ffff_f000;
                let inside = hpa >= HPA_BASE && hpa + size.bytes() <= HPA_BASE + L1_SIZE;
                let perms_ok = (e & 7) as u8 & !perms01 == 0;
                let not_a_table = hpa < FRAME_BASE;
                let clean_ok = !ad
                    || e & 2 == 0
                    || walk_ept12(&mem, eptp12, L2Gpa(g), &caps, 36).is_ok_and(|l| l.dirty);
                if !(inside && perms_ok && not_a_table && clean_ok) {
                    bad = Some((g, size, e));
                }
            });
            prop_assert!(bad.is_none(), "EPT02 leaf {:x?}", bad);
        }
        shadow.invalidate_all(&mut frames);
        prop_assert_eq!(frames.live(), 0);
        FIXED.fetch_add(fixed, core::sync::atomic::Ordering::Relaxed);
    }
}

#[test]
fn ept02_property_builds_leaves() {
    // Runs the property's body through proptest once more with a fixed seed-independent
    // check: across its cases some faults must have been resolved into EPT02 leaves.
    ept02_never_maps_outside_l1_memory();
    assert!(FIXED.load(core::sync::atomic::Ordering::Relaxed) > 0);
}

fn fuzz_regs(r: &[u64; 16], l1m: &mut TestL1) {
    for (i, &v) in r.iter().enumerate() {
        l1m.set_gpr(Gpr::from_index(i as u32), v);
    }
}

proptest! {
    #![proptest_config(cases(96))]

    /// Random vmcs12 contents, L1 memory, registers and exit information through every
    /// entry point that reads them: no panic.
    #[test]
    fn fuzz_nested_paths_never_panic(
        v12_bytes in prop::collection::vec(any::<u8>(), core::mem::size_of::<Vmcs12>()),
        mem_bytes in prop::collection::vec(any::<u8>(), 0x4000),
        regs in any::<[u64; 16]>(),
        exit in any::<(u32, u64, u32, u32, u32, u32, u64)>(),
        cpu_bits in any::<(u8, u64, u64, bool, bool)>(),
        launch in any::<bool>(),
        from_valid in any::<bool>(),
        mutations in prop::collection::vec((0..VmcsField::COUNT, any::<u64>()), 0..4),
    ) {
        let caps = l1();
        // Either raw bytes, or a valid vmcs12 with a few fields overwritten (reaches the
        // guest-state and MSR-load checks).
        let mut v12 = if from_valid { valid_vmcs12(&caps) } else { Vmcs12::from_bytes(&v12_bytes) };
        for (i, value) in mutations {
            v12.set(VmcsField::ALL[i], value);
        }
        let mut l1m = TestL1::new(0x4000);
        l1m.mem.bytes.copy_from_slice(&mem_bytes);
        fuzz_regs(&regs, &mut l1m);
        let info = ExitInfo {
            reason: exit.0 % 90,
            qualification: exit.1,
            instruction_info: exit.2,
            intr_info: exit.3,
            intr_error_code: exit.4,
            idt_vectoring_info: exit.5,
            guest_physical_address: exit.6,
            ..Default::default()
        };
        let mut cpu = L1Cpu::long_mode_ring0();
        cpu.cpl = cpu_bits.0 % 4;
        cpu.rflags = cpu_bits.1;
        cpu.efer ^= cpu_bits.2 & (1 << 10);
        cpu.cs_l = cpu_bits.3;
        cpu.mov_ss_blocking = cpu_bits.4;

        let _ = route(&info, &L0Intercepts::default(), &v12, &l1m, &l1m);
        let _ = checks::check_controls(&v12, &caps, 36);
        let _ = checks::check_host_state(&v12, &caps, 36, cpu.is_ia32e());
        let _ = checks::check_guest_state(&v12, &caps, 36, &l1m);

        let mut vmx = NestedVmx::new(caps, 36);
        vmx.vmxon = true;
        vmx.vmxon_ptr = L1Gpa(0x1000);
        vmx.current = Some(L1Gpa(0x2000));
        vmx.vmcs12 = v12.clone();
        let _ = vmx.emulate(&info, &cpu, &mut l1m);
        let _ = vmx.vmlaunch(launch, &cpu, &mut l1m);
        let _ = vmx.vmfunc(&l1m.regs, &l1m.mem);
        for r in 19..=27u32 {
            let e = ExitInfo { reason: r, ..info };
            let _ = vmx.emulate(&e, &cpu, &mut l1m);
        }

        let l0 = l0_config([exit.2, exit.3, exit.4, exit.5, 0, exit.2 ^ exit.3]);
        let mut v02 = FakeVmcs::new();
        prepare_vmcs02(&mut v02, &v12, &DirtySet::all(), &l0, &inputs(launch, !launch));
        let mut back = v12.clone();
        sync_vmcs12(&v02, &mut back, &info, SyncScope::Full);
        let mut v01 = FakeVmcs::new();
        let _ = load_l1_host_state(&v12, &mut v01, &skylake(), cpu.efer);
        prop_assert!(v01.read(VmcsField::GuestRflags) == 2);
        prop_assert!(l1m.read_u8(L1Gpa(0)).is_ok());
    }
}

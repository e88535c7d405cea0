//! CPUID (exit reason 10): the real CPUID with VMX and MONITOR hidden and the hypervisor bit
//! set, plus turtles' hypervisor leaves 0x40000000.. ("turtles" signature, the guest's depth).

use crate::arch::cpu;
use crate::vmx::action::Action;
use crate::vmx::guest::Guest;

/// Signature returned in EBX, ECX, EDX of leaf 0x40000000.
pub const SIGNATURE: &[u8; 12] = b"turtles\0\0\0\0\0";
const MAX_HYPERVISOR_LEAF: u32 = 0x4000_0003;

const LEAF1_ECX_MONITOR: u32 = 1 << 3;
const LEAF1_ECX_VMX: u32 = 1 << 5;
const LEAF1_ECX_HYPERVISOR: u32 = 1 << 31;
const LEAF1_ECX_X2APIC: u32 = 1 << 21;
const LEAF1_ECX_TSC_DEADLINE: u32 = 1 << 24;
const LEAF1_EDX_APIC: u32 = 1 << 9;

/// [`SIGNATURE`] as CPUID returns it in EBX, ECX, EDX.
pub const fn signature_words() -> [u32; 3] {
    let s = SIGNATURE;
    [
        u32::from_le_bytes([s[0], s[1], s[2], s[3]]),
        u32::from_le_bytes([s[4], s[5], s[6], s[7]]),
        u32::from_le_bytes([s[8], s[9], s[10], s[11]]),
    ]
}

/// The values L0 returns for `leaf`/`subleaf` given the host's answer. Leaf 0x40000002
/// returns this level's exit count so far (EAX low, EBX high half), leaf 0x40000003 the
/// bottom L0's (`exits` when this level runs on bare metal, else `host`: the level below's
/// answer), for the workload.
pub fn virtualize(leaf: u32, host: [u32; 4], guest_depth: u32, exits: u64, vmx: bool) -> [u32; 4] {
    let [w0, w1, w2] = signature_words();
    match leaf {
        0x4000_0000 => [MAX_HYPERVISOR_LEAF, w0, w1, w2],
        // Turtles leaf: EAX = the guest's nesting depth, EBX = version.
        0x4000_0001 => [guest_depth, 1, 0, 0],
        0x4000_0002 => [exits as u32, (exits >> 32) as u32, 0, 0],
        0x4000_0003 if guest_depth == 1 => [exits as u32, (exits >> 32) as u32, 0, 0],
        0x4000_0003 => host,
        0x4000_0004..=0x4000_00ff => [0; 4],
        1 => {
            let [a, b, c, d] = host;
            let hidden = if vmx { LEAF1_ECX_MONITOR } else { LEAF1_ECX_VMX | LEAF1_ECX_MONITOR };
            // L0's local APIC model has xAPIC and x2APIC but no TSC-deadline timer mode.
            let c = (c & !hidden & !LEAF1_ECX_TSC_DEADLINE) | LEAF1_ECX_X2APIC;
            [a, b, c | LEAF1_ECX_HYPERVISOR, d]
        }
        _ => host,
    }
}

/// Host CPUID answers already read. CPUID is constant, and under a turtles L0 every CPUID
/// this level executes is itself an exit: answering from the cache keeps a reflected CPUID at
/// the architectural two L0 exits (L2's CPUID and L1's VMRESUME).
static CACHE: hermit_sync::SpinMutex<CpuidCache> = hermit_sync::SpinMutex::new(CpuidCache::new());

struct CpuidCache {
    entries: [(u32, u32, [u32; 4]); 64],
    len: usize,
}

impl CpuidCache {
    const fn new() -> Self {
        CpuidCache { entries: [(0, 0, [0; 4]); 64], len: 0 }
    }

    fn get(&mut self, leaf: u32, subleaf: u32) -> [u32; 4] {
        if let Some(e) = self.entries[..self.len].iter().find(|e| e.0 == leaf && e.1 == subleaf) {
            return e.2;
        }
        let value = cpu::cpuid(leaf, subleaf);
        if let Some(slot) = self.entries.get_mut(self.len) {
            *slot = (leaf, subleaf, value);
            self.len += 1;
        }
        value
    }
}

pub fn handle(g: &mut Guest) -> Action {
    let (leaf, subleaf) = (g.regs.rax as u32, g.regs.rcx as u32);
    let host = match leaf {
        // Forwarded to the level below (never cached: it changes).
        0x4000_0003 if g.depth > 1 => cpu::cpuid(leaf, 0),
        0x4000_0000..=0x4000_00ff => [0; 4],
        _ => CACHE.lock().get(leaf, subleaf),
    };
    // Summing the counters costs ~100 instructions: only the counter leaves need it.
    let exits = if leaf == 0x4000_0002 || leaf == 0x4000_0003 { g.counters.total() } else { 0 };
    let [a, b, c, mut d] = virtualize(leaf, host, g.depth, exits, g.nested.is_some());
    if leaf == 1 {
        // CPUID.1:EDX.APIC follows IA32_APIC_BASE's global enable (SDM Vol. 3A 11.4.3).
        let enabled = g.devices.lapic().base_msr() & (1 << 11) != 0;
        d = if enabled { d | LEAF1_EDX_APIC } else { d & !LEAF1_EDX_APIC };
    }
    g.regs.rax = u64::from(a);
    g.regs.rbx = u64::from(b);
    g.regs.rcx = u64::from(c);
    g.regs.rdx = u64::from(d);
    Action::Skip
}

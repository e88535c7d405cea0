//! How a turtles level announces its virtio-mmio devices to a turtles guest: one word on the
//! guest's kernel command line, `turtles.virtio_mmio=<base>:<gsi>[,<base>:<gsi>...]`, each
//! `<base>` the guest-physical, page-aligned address of a [`crate::mmio::WINDOW`]-byte register
//! window (hex with `0x`, or decimal) and `<gsi>` the I/O APIC pin of its interrupt (level-triggered,
//! active high). The guest probes each window's magic, version and device ID itself. (Linux
//! guests get an ACPI SSDT instead: `pc::acpi_virtio`.)

use core::fmt::Write;

/// The command-line key.
pub const KEY: &str = "turtles.virtio_mmio=";
/// Bases are page-aligned (a window is [`crate::mmio::WINDOW`] bytes at the start of its page).
pub const ALIGN: u64 = 0x1000;
/// At most this many windows are announced or parsed.
pub const MAX_WINDOWS: usize = 4;

/// One announced register window.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Window {
    /// Guest-physical base, aligned to the window size.
    pub base: u64,
    /// I/O APIC pin of the device's interrupt.
    pub gsi: u8,
}

/// Why a `turtles.virtio_mmio=` word was refused (the command line is guest-level input).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AnnounceError {
    /// An entry is not `<base>:<gsi>`, or a number does not parse.
    Malformed,
    /// A base is not aligned to the window size, or the window wraps.
    Unaligned,
    /// More than [`MAX_WINDOWS`] entries.
    TooMany,
}

impl core::fmt::Display for AnnounceError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(match self {
            AnnounceError::Malformed => "an entry is not <base>:<gsi>",
            AnnounceError::Unaligned => "a base is not aligned to the 4 KiB window",
            AnnounceError::TooMany => "more windows than supported (4)",
        })
    }
}

/// The command-line word announcing `windows`, or `None` if there are none.
pub fn word(windows: &[Window]) -> Option<alloc::string::String> {
    if windows.is_empty() {
        return None;
    }
    let mut out = alloc::string::String::from(KEY);
    for (i, w) in windows.iter().enumerate() {
        let sep = if i == 0 { "" } else { "," };
        let _ = write!(out, "{sep}{:#x}:{}", w.base, w.gsi);
    }
    Some(out)
}

/// The first announced window whose registers say it is virtio device `want` (magic
/// "virt", version 1 or 2, DeviceID `want`); `header(base)` reads a window's MagicValue,
/// Version and DeviceID. A level looks at the registers itself and opens a driver's transport
/// only on the window picked: `virtio-drivers`' transports reset their device when dropped,
/// so opening one on another device's window just to read its type resets that device under
/// its driver (issue 13: turtles as L1 probing for its NIC reset the virtio-blk L0 gave it,
/// and every later read of that disk, those it served for its own guest, failed).
pub fn pick(
    windows: &[Option<Window>],
    want: u32,
    mut header: impl FnMut(u64) -> [u32; 3],
) -> Option<Window> {
    windows.iter().flatten().copied().find(|w| {
        let [magic, version, id] = header(w.base);
        magic == crate::mmio::MAGIC && matches!(version, 1 | 2) && id == want
    })
}

fn number(s: &str) -> Option<u64> {
    match s.strip_prefix("0x").or_else(|| s.strip_prefix("0X")) {
        Some(hex) => u64::from_str_radix(hex, 16).ok(),
        None => s.parse().ok(),
    }
}

/// The windows a command line announces: empty without the key; the last word with the key
/// counts.
pub fn parse(cmdline: &str) -> Result<([Option<Window>; MAX_WINDOWS], usize), AnnounceError> {
    let mut out = [None; MAX_WINDOWS];
    let Some(list) = cmdline.split_whitespace().rev().find_map(|w| w.strip_prefix(KEY)) else {
        return Ok((out, 0));
    };
    let mut n = 0;
    for entry in list.split(',').filter(|e| !e.is_empty()) {
        let (base, gsi) = entry.split_once(':').ok_or(AnnounceError::Malformed)?;
        let base = number(base).ok_or(AnnounceError::Malformed)?;
        let gsi = number(gsi).and_then(|g| u8::try_from(g).ok()).ok_or(AnnounceError::Malformed)?;
        if base % ALIGN != 0 || base.checked_add(ALIGN).is_none() {
            return Err(AnnounceError::Unaligned);
        }
        let slot = out.get_mut(n).ok_or(AnnounceError::TooMany)?;
        *slot = Some(Window { base, gsi });
        n += 1;
    }
    Ok((out, n))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn word_and_parse_agree() {
        let ws = [Window { base: 0xfeb0_0000, gsi: 16 }, Window { base: 0xfeb0_1000, gsi: 17 }];
        let w = word(&ws).unwrap();
        assert_eq!(w, "turtles.virtio_mmio=0xfeb00000:16,0xfeb01000:17");
        let (got, n) = parse(&alloc::format!("console=x {w} other")).unwrap();
        assert_eq!(n, 2);
        assert_eq!(got[..2], [Some(ws[0]), Some(ws[1])]);
        assert_eq!(word(&[]), None);
        assert_eq!(parse("nothing here").unwrap().1, 0);
    }

    #[test]
    fn pick_reads_headers_and_opens_nothing_else() {
        let blk = Window { base: 0xfeb0_0000, gsi: 16 };
        let net = Window { base: 0xfeb0_1000, gsi: 17 };
        let bad = Window { base: 0xfeb0_2000, gsi: 18 };
        let windows = [Some(bad), Some(blk), None, Some(net)];
        let header = |base: u64| match base {
            0xfeb0_0000 => [crate::mmio::MAGIC, 2, crate::blk::DEVICE_ID],
            0xfeb0_1000 => [crate::mmio::MAGIC, 2, crate::net::DEVICE_ID],
            _ => [0, 2, crate::net::DEVICE_ID],
        };
        assert_eq!(pick(&windows, crate::net::DEVICE_ID, header), Some(net));
        assert_eq!(pick(&windows, crate::blk::DEVICE_ID, header), Some(blk));
        assert_eq!(pick(&windows, 3, header), None);
        let old = |base: u64| [crate::mmio::MAGIC, 3, header(base)[2]];
        assert_eq!(pick(&windows, crate::net::DEVICE_ID, old), None, "version 3 is unknown");
    }

    #[test]
    fn bad_words_are_refused() {
        for (line, e) in [
            ("turtles.virtio_mmio=0xfeb00000", AnnounceError::Malformed),
            ("turtles.virtio_mmio=zz:1", AnnounceError::Malformed),
            ("turtles.virtio_mmio=0x1000:300", AnnounceError::Malformed),
            ("turtles.virtio_mmio=0x1234:1", AnnounceError::Unaligned),
            ("turtles.virtio_mmio=0xfffffffffffff000:1", AnnounceError::Unaligned),
            ("turtles.virtio_mmio=0x1200:1", AnnounceError::Unaligned),
            (
                "turtles.virtio_mmio=0x1000:1,0x2000:1,0x3000:1,0x4000:1,0x5000:1",
                AnnounceError::TooMany,
            ),
        ] {
            assert_eq!(parse(line).map(|r| r.1), Err(e), "{line}");
        }
    }

    proptest::proptest! {
        #[test]
        fn parse_never_panics(s in "\\PC*") {
            let _ = parse(&s);
            let _ = parse(&alloc::format!("{KEY}{s}"));
        }
    }
}

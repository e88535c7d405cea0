//! The README's figures, generated from the committed baseline (`cargo run -- bench readme`,
//! also done by `bench check --update`): the block between [`BEGIN`] and [`END`] in
//! README.md. A host test fails when README and baseline disagree.

use std::fmt::Write as _;

use crate::baseline::{Baseline, RUNS};
use crate::{status, workspace_root};

pub const BEGIN: &str =
    "<!-- bench:begin: generated from bench/baseline.json by `cargo run -- bench readme` -->";
pub const END: &str = "<!-- bench:end -->";

/// The rows of the table: (label, workload part, L0 exits instead of ticks).
const ROWS: [(&str, &str, bool); 10] = [
    ("CPUID round trip (ticks)", "cpuid", false),
    ("L0 exits per CPUID", "cpuid", true),
    ("port I/O round trip (ticks)", "io", false),
    ("L0 exits per port I/O", "io", true),
    ("HLT round trip (ticks)", "hlt", false),
    ("L0 exits per HLT", "hlt", true),
    ("memory walk: ticks per page first touched", "memory", false),
    ("L0 exits per page first touched (EPT fill)", "memory", true),
    ("mixed part: ticks per round (~100,000 instructions + 1 CPUID)", "mixed", false),
    ("compute: ticks per round", "compute", false),
];

/// The generated block, markers included.
pub fn block(baseline: &Baseline) -> String {
    let mut t = format!("{BEGIN}\n\n| |");
    for (label, _, _) in RUNS {
        let _ = write!(t, " {label} |");
    }
    let _ = writeln!(t, "\n|---|{}", "---:|".repeat(RUNS.len()));
    for (label, part, exits) in ROWS {
        let _ = write!(t, "| {label} |");
        for (run, _, _) in RUNS {
            let row = baseline.get(run, part);
            let cell = match (row, exits) {
                (Some(r), false) => thousands(r.ticks_per_round.round() as u64),
                (Some(r), true) => {
                    r.l0_exits_per_round.map_or("-".to_string(), |e| format!("{e:.2}"))
                }
                (None, _) => "-".to_string(),
            };
            let _ = write!(t, " {cell} |");
        }
        t.push('\n');
    }
    let _ = write!(t, "\n{END}");
    t
}

/// `n` with a comma every three digits.
pub fn thousands(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// `text` with its generated block replaced by `block`.
pub fn replace_block(text: &str, block: &str) -> Result<String, String> {
    let start = text.find(BEGIN).ok_or("README.md has no bench:begin marker")?;
    let end = text[start..].find(END).ok_or("README.md has no bench:end marker")? + start;
    Ok(format!("{}{block}{}", &text[..start], &text[end + END.len()..]))
}

/// Rewrites README.md's block from `baseline`.
pub fn update(baseline: &Baseline) -> Result<(), String> {
    let path = workspace_root().join("README.md");
    let text = std::fs::read_to_string(&path).map_err(|e| format!("{}: {e}", path.display()))?;
    let new = replace_block(&text, &block(baseline))?;
    if new != text {
        std::fs::write(&path, new).map_err(|e| format!("{}: {e}", path.display()))?;
    }
    Ok(())
}

/// `cargo run -- bench readme`.
pub fn command() -> Result<i32, String> {
    update(&Baseline::load()?)?;
    println!("README.md: figures regenerated from {}", crate::baseline::BASELINE);
    Ok(status::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::baseline::{Row, Tolerance};

    #[test]
    fn formats_and_replaces_the_block() {
        assert_eq!(thousands(0), "0");
        assert_eq!(thousands(999), "999");
        assert_eq!(thousands(5875), "5,875");
        assert_eq!(thousands(1_234_567), "1,234,567");
        let b = Baseline::new(
            vec![Row {
                run: "depth 2".to_string(),
                part: "cpuid".to_string(),
                ticks_per_round: 3269.22,
                l0_exits_per_round: Some(2.0),
            }],
            Tolerance::default(),
        );
        let block = block(&b);
        assert!(block.contains("| CPUID round trip (ticks) | - | - | 3,269 | - |"), "{block}");
        assert!(block.contains("| L0 exits per CPUID | - | - | 2.00 | - |"), "{block}");
        let text = format!("before\n{BEGIN}\nold\n{END}\nafter\n");
        let new = replace_block(&text, &block).expect("markers");
        assert_eq!(new, format!("before\n{block}\nafter\n"));
        assert!(replace_block("no markers", &block).is_err());
    }

    /// The README shows the committed baseline: after `bench check --update` (or an edit of
    /// the baseline), `cargo run -- bench readme` brings it in step.
    #[test]
    fn readme_figures_match_the_baseline() {
        let baseline = Baseline::load().expect("bench/baseline.json");
        let readme = std::fs::read_to_string(workspace_root().join("README.md")).expect("README");
        assert!(
            readme.contains(&block(&baseline)),
            "README.md's figures differ from bench/baseline.json: run `cargo run -- bench readme`"
        );
    }
}

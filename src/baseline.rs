//! `cargo run -- bench check [--update]`: a guard on performance. Under Bochs the leaf's
//! figures repeat exactly (1 tick = 1 emulated instruction), so each part's ticks and L0 exits
//! per round trip are compared with the baseline committed in `bench/baseline.json`; a
//! regression beyond the baseline's small tolerance fails the check. `--update` records the
//! current figures as the new baseline and regenerates the README's table from it.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::bench::{measure, to_json};
use crate::workload::Part;
use crate::{status, workspace_root};

/// The baseline file, relative to the workspace root.
pub const BASELINE: &str = "bench/baseline.json";

/// What `bench check` measures: a label, the config and its kernel command line. The labels
/// are the baseline's and the README table's column names.
pub const RUNS: [(&str, &str, &str); 4] = [
    ("no hypervisor", "leaf", ""),
    ("depth 1", "l0-leaf", ""),
    ("depth 2", "l0-l1-leaf", ""),
    ("depth 2, no shadowing", "l0-l1-leaf", "turtles.vmcs_shadowing=off"),
];

/// The committed figures and how far a new measurement may exceed them.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Baseline {
    /// What this file is and how to update it (for a reader of the JSON).
    pub about: String,
    pub tolerance: Tolerance,
    pub rows: Vec<Row>,
}

/// A new figure regresses when it exceeds the old by more than
/// `max(old * percent / 100, absolute)`.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct Tolerance {
    pub percent: f64,
    /// Ticks per round trip.
    pub ticks: f64,
    /// L0 exits per round trip.
    pub exits: f64,
}

impl Default for Tolerance {
    fn default() -> Self {
        Tolerance { percent: 2.0, ticks: 5.0, exits: 0.01 }
    }
}

/// One part of the workload in one configuration.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Row {
    /// A label of [`RUNS`].
    pub run: String,
    /// The workload part (`cpuid`, `io`, `hlt`, `memory`, `compute`, `mixed`).
    pub part: String,
    pub ticks_per_round: f64,
    /// Exits of the bottom L0 per round trip (`None` without a hypervisor).
    pub l0_exits_per_round: Option<f64>,
}

impl Baseline {
    pub fn new(rows: Vec<Row>, tolerance: Tolerance) -> Baseline {
        Baseline {
            about: "turtles performance baseline: Bochs ticks and L0 exits per round trip of \
                    each workload part. `cargo run -- bench check` compares against it; \
                    `cargo run -- bench check --update` re-records it and the README table."
                .to_string(),
            tolerance,
            rows,
        }
    }

    pub fn path() -> PathBuf {
        workspace_root().join(BASELINE)
    }

    pub fn load() -> Result<Baseline, String> {
        let path = Baseline::path();
        let text =
            std::fs::read_to_string(&path).map_err(|e| format!("{}: {e}", path.display()))?;
        serde_json::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))
    }

    pub fn save(&self) -> Result<(), String> {
        let path = Baseline::path();
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        }
        std::fs::write(&path, to_json(self)).map_err(|e| format!("{}: {e}", path.display()))
    }

    /// The row of `run`'s `part`.
    pub fn get(&self, run: &str, part: &str) -> Option<&Row> {
        self.rows.iter().find(|r| r.run == run && r.part == part)
    }
}

/// The rows of one run's parts.
pub fn rows_of(run: &str, parts: &BTreeMap<String, Part>) -> Vec<Row> {
    parts
        .values()
        .map(|p| Row {
            run: run.to_string(),
            part: p.name.clone(),
            ticks_per_round: round2(p.ticks_per_round()),
            l0_exits_per_round: p.l0_exits_per_round().or(p.exits_per_round()).map(round4),
        })
        .collect()
}

fn round2(v: f64) -> f64 {
    (v * 100.0).round() / 100.0
}

fn round4(v: f64) -> f64 {
    (v * 10_000.0).round() / 10_000.0
}

/// How one row compares.
#[derive(Clone, Debug, PartialEq)]
pub enum Verdict {
    /// Within the tolerance.
    Same,
    /// Better than the baseline beyond the tolerance (time to `--update`).
    Better,
    /// Worse beyond the tolerance: what regressed.
    Worse(String),
    /// In the baseline, not measured.
    Missing,
    /// Measured, not in the baseline.
    New,
}

/// A row of the comparison.
#[derive(Clone, Debug, PartialEq)]
pub struct Compared {
    pub run: String,
    pub part: String,
    pub old: Option<Row>,
    pub new: Option<Row>,
    pub verdict: Verdict,
}

/// Compares `new` rows with the baseline, in the baseline's order, new rows last.
pub fn compare(baseline: &Baseline, new: &[Row]) -> Vec<Compared> {
    let t = baseline.tolerance;
    let mut out = Vec::new();
    for old in &baseline.rows {
        let now = new.iter().find(|r| r.run == old.run && r.part == old.part);
        let verdict = match now {
            None => Verdict::Missing,
            Some(now) => judge(old, now, t),
        };
        out.push(Compared {
            run: old.run.clone(),
            part: old.part.clone(),
            old: Some(old.clone()),
            new: now.cloned(),
            verdict,
        });
    }
    for now in new {
        if baseline.get(&now.run, &now.part).is_none() {
            out.push(Compared {
                run: now.run.clone(),
                part: now.part.clone(),
                old: None,
                new: Some(now.clone()),
                verdict: Verdict::New,
            });
        }
    }
    out
}

fn judge(old: &Row, new: &Row, t: Tolerance) -> Verdict {
    let allowed = |old: f64, absolute: f64| (old.abs() * t.percent / 100.0).max(absolute);
    let mut worse = Vec::new();
    let mut better = false;
    let ticks = new.ticks_per_round - old.ticks_per_round;
    if ticks > allowed(old.ticks_per_round, t.ticks) {
        worse.push(format!("ticks {:+.1}", ticks));
    }
    better |= -ticks > allowed(old.ticks_per_round, t.ticks);
    match (old.l0_exits_per_round, new.l0_exits_per_round) {
        (Some(o), Some(n)) => {
            if n - o > allowed(o, t.exits) {
                worse.push(format!("L0 exits {:+.2}", n - o));
            }
            better |= o - n > allowed(o, t.exits);
        }
        (None, Some(n)) if n > t.exits => worse.push(format!("L0 exits {n:.2} (none before)")),
        (Some(_), None) => worse.push("L0 exits no longer reported".to_string()),
        _ => {}
    }
    if !worse.is_empty() {
        Verdict::Worse(worse.join(", "))
    } else if better {
        Verdict::Better
    } else {
        Verdict::Same
    }
}

/// The comparison as a table (old, new, delta per row) with a verdict line.
pub fn render(rows: &[Compared], tolerance: Tolerance) -> String {
    let mut t = String::new();
    let _ = writeln!(
        t,
        "| run | part | ticks/round: baseline | now | delta | L0 exits/round: baseline | now | verdict |"
    );
    let _ = writeln!(t, "|---|---|---:|---:|---:|---:|---:|---|");
    let ticks = |r: &Option<Row>| r.as_ref().map(|r| r.ticks_per_round);
    let exits = |r: &Option<Row>| r.as_ref().and_then(|r| r.l0_exits_per_round);
    let num = |v: Option<f64>, d: usize| v.map_or("-".to_string(), |v| format!("{v:.d$}"));
    for c in rows {
        let delta = match (ticks(&c.old), ticks(&c.new)) {
            (Some(o), Some(n)) if o != 0.0 => format!("{:+.1}%", (n - o) * 100.0 / o),
            _ => "-".to_string(),
        };
        let verdict = match &c.verdict {
            Verdict::Same => "ok".to_string(),
            Verdict::Better => "better (update the baseline)".to_string(),
            Verdict::Worse(what) => format!("**REGRESSED**: {what}"),
            Verdict::Missing => "**MISSING**".to_string(),
            Verdict::New => "new (not in the baseline)".to_string(),
        };
        let _ = writeln!(
            t,
            "| {} | {} | {} | {} | {delta} | {} | {} | {verdict} |",
            c.run,
            c.part,
            num(ticks(&c.old), 1),
            num(ticks(&c.new), 1),
            num(exits(&c.old), 2),
            num(exits(&c.new), 2),
        );
    }
    let _ = writeln!(
        t,
        "\ntolerance: {}% or {} ticks, {} L0 exits per round trip, whichever is larger",
        tolerance.percent, tolerance.ticks, tolerance.exits
    );
    t
}

/// The rows that fail the check, named `run/part`.
pub fn failures(rows: &[Compared]) -> Vec<String> {
    rows.iter()
        .filter(|c| matches!(c.verdict, Verdict::Worse(_) | Verdict::Missing))
        .map(|c| format!("{}/{}", c.run, c.part))
        .collect()
}

/// Measures every run of [`RUNS`] under Bochs, two at a time (each Bochs is one thread and
/// ticks do not depend on the host's load, so the figures are the same as run one by one).
pub fn measure_all() -> Result<Vec<Row>, String> {
    let next = std::sync::atomic::AtomicUsize::new(0);
    let results: Vec<(usize, Result<Vec<Row>, String>)> = std::thread::scope(|s| {
        let workers: Vec<_> = (0..2)
            .map(|_| {
                s.spawn(|| {
                    let mut done = Vec::new();
                    loop {
                        let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        let Some((label, config, cmdline)) = RUNS.get(i) else { break done };
                        let with =
                            if cmdline.is_empty() { String::new() } else { format!(" {cmdline}") };
                        eprintln!(
                            "bench check: run {}/{}: {label} (`{config}`{with})",
                            i + 1,
                            RUNS.len()
                        );
                        done.push((i, measure(config, cmdline).map(|m| rows_of(label, &m.parts))));
                    }
                })
            })
            .collect();
        workers.into_iter().flat_map(|w| w.join().unwrap_or_default()).collect()
    });
    let mut results = results;
    if results.len() != RUNS.len() {
        return Err("bench check: a measuring thread panicked".to_string());
    }
    // The baseline's order: RUNS' order.
    results.sort_by_key(|(i, _)| *i);
    let mut rows = Vec::new();
    for (_, r) in results {
        rows.extend(r?);
    }
    Ok(rows)
}

/// `cargo run -- bench check [--update]`.
pub fn check(update: bool) -> Result<i32, String> {
    let old = if update { Baseline::load().ok() } else { Some(Baseline::load()?) };
    let rows = measure_all()?;
    if update {
        let tolerance = old.as_ref().map_or_else(Tolerance::default, |b| b.tolerance);
        let baseline = Baseline::new(rows, tolerance);
        if let Some(old) = &old {
            println!("{}", render(&compare(old, &baseline.rows), tolerance));
        }
        baseline.save()?;
        println!("bench check: baseline written to {BASELINE}");
        crate::readme::update(&baseline)?;
        println!("bench check: README.md's figures regenerated from it");
        return Ok(status::SUCCESS);
    }
    let Some(old) = old else { return Err("no baseline".to_string()) };
    let compared = compare(&old, &rows);
    println!("{}", render(&compared, old.tolerance));
    let failed = failures(&compared);
    if failed.is_empty() {
        println!("bench check: no regression against {BASELINE}");
        Ok(status::SUCCESS)
    } else {
        println!(
            "bench check: regressed against {BASELINE}: {} (if intended: \
             `cargo run -- bench check --update` and commit the baseline and README.md)",
            failed.join(", ")
        );
        Ok(status::FAILURE)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(run: &str, part: &str, ticks: f64, exits: Option<f64>) -> Row {
        Row {
            run: run.to_string(),
            part: part.to_string(),
            ticks_per_round: ticks,
            l0_exits_per_round: exits,
        }
    }

    fn baseline() -> Baseline {
        Baseline::new(
            vec![
                row("depth 1", "cpuid", 303.0, Some(1.0)),
                row("depth 1", "hlt", 244.0, Some(1.0)),
                row("depth 2", "cpuid", 5875.0, Some(2.0)),
                row("no hypervisor", "compute", 10.0, None),
            ],
            Tolerance::default(),
        )
    }

    #[test]
    fn regressions_beyond_the_tolerance_fail_and_name_the_row() {
        let now = vec![
            row("depth 1", "cpuid", 306.0, Some(1.0)), // +3 ticks: within 2% / 5 ticks
            row("depth 1", "hlt", 483.0, Some(1.0)),   // the HLT regression
            row("depth 2", "cpuid", 6013.0, Some(2.0)), // +2.3%
            row("no hypervisor", "compute", 10.0, None),
        ];
        let compared = compare(&baseline(), &now);
        assert_eq!(compared[0].verdict, Verdict::Same);
        assert_eq!(compared[1].verdict, Verdict::Worse("ticks +239.0".to_string()));
        assert_eq!(compared[2].verdict, Verdict::Worse("ticks +138.0".to_string()));
        assert_eq!(failures(&compared), ["depth 1/hlt", "depth 2/cpuid"]);
        let table = render(&compared, Tolerance::default());
        assert!(
            table.contains("| depth 1 | hlt | 244.0 | 483.0 | +98.0% | 1.00 | 1.00 | **REGRESSED**: ticks +239.0 |"),
            "{table}"
        );
        assert!(
            table.contains("| depth 1 | cpuid | 303.0 | 306.0 | +1.0% | 1.00 | 1.00 | ok |"),
            "{table}"
        );
    }

    #[test]
    fn exits_missing_rows_and_improvements() {
        let now = vec![
            row("depth 1", "cpuid", 250.0, Some(1.0)), // better
            row("depth 1", "hlt", 244.0, Some(2.0)),   // one more exit per HLT
            row("depth 3", "cpuid", 9.0, Some(3.0)),   // not in the baseline
            row("no hypervisor", "compute", 10.0, Some(0.5)),
        ];
        let compared = compare(&baseline(), &now);
        assert_eq!(compared[0].verdict, Verdict::Better);
        assert_eq!(compared[1].verdict, Verdict::Worse("L0 exits +1.00".to_string()));
        assert_eq!(compared[2].verdict, Verdict::Missing);
        assert!(matches!(compared[3].verdict, Verdict::Worse(_)));
        assert_eq!(compared[4].verdict, Verdict::New);
        assert_eq!(failures(&compared), ["depth 1/hlt", "depth 2/cpuid", "no hypervisor/compute"]);
    }

    #[test]
    fn rows_come_from_workload_lines_and_round_trip_through_json() {
        let parts = crate::workload::parse_workload(&[
            "workload: cpuid rounds=1000 ticks=3269219 per-round=3269 exits=1000 l0-exits=2000 result=0x1"
                .to_string(),
            "workload: compute rounds=3 ticks=10 per-round=3 result=0x2".to_string(),
        ]);
        let rows = rows_of("depth 2", &parts);
        assert_eq!(rows[0], row("depth 2", "compute", 3.33, None));
        assert_eq!(rows[1], row("depth 2", "cpuid", 3269.22, Some(2.0)));
        let b = Baseline::new(rows, Tolerance::default());
        let back: Baseline = serde_json::from_str(&to_json(&b)).expect("parses");
        assert_eq!(back, b);
    }

    #[test]
    fn the_committed_baseline_parses_and_covers_every_run() {
        let b = Baseline::load().expect("bench/baseline.json");
        for (label, config, _) in RUNS {
            // The leaf without a hypervisor does not time HLT (nothing would wake it).
            let hlt = (config != "leaf").then_some("hlt");
            for part in ["cpuid", "io", "memory", "compute", "mixed"].into_iter().chain(hlt) {
                assert!(b.get(label, part).is_some(), "{label}/{part} missing from {BASELINE}");
            }
        }
    }
}

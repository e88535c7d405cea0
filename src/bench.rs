//! `cargo run -- bench ...`: benchmarks under Bochs, counting deterministic things (VM exits,
//! Bochs ticks: 1 tick = 1 emulated instruction) rather than wall time.
//!
//! `bench single` boots the leaf directly (no hypervisor) and under L0 (depth 1) and compares
//! the leaf's own measurements: for each exit-causing loop the ticks per round trip and the
//! exits per round trip (read from L0's exit counter through CPUID 0x40000002), and the ticks
//! of the parts that cause no exits.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;

use turtles_config::Emulator;

use crate::run::{RunOptions, run};
use crate::status;

/// One `workload: <name> rounds=R ticks=T per-round=P [exits=E] result=X` line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Part {
    pub name: String,
    pub rounds: u64,
    pub ticks: u64,
    pub exits: Option<u64>,
    pub result: String,
}

impl Part {
    /// Ticks per round trip, with two decimals.
    pub fn ticks_per_round(&self) -> f64 {
        self.ticks as f64 / self.rounds.max(1) as f64
    }

    /// Exits per round trip, if counted.
    pub fn exits_per_round(&self) -> Option<f64> {
        self.exits.map(|e| e as f64 / self.rounds.max(1) as f64)
    }
}

/// Parses the workload lines of a run's serial output (any prefix before `workload:`).
pub fn parse_workload(lines: &[String]) -> BTreeMap<String, Part> {
    let mut parts = BTreeMap::new();
    for line in lines {
        let Some(rest) = line.split("workload: ").nth(1) else { continue };
        let mut words = rest.split_whitespace();
        let Some(name) = words.next() else { continue };
        let fields: BTreeMap<&str, &str> = words.filter_map(|w| w.split_once('=')).collect();
        let number = |k: &str| fields.get(k).and_then(|v| v.parse::<u64>().ok());
        let (Some(rounds), Some(ticks)) = (number("rounds"), number("ticks")) else { continue };
        parts.insert(
            name.to_string(),
            Part {
                name: name.to_string(),
                rounds,
                ticks,
                exits: number("exits"),
                result: fields.get("result").unwrap_or(&"").to_string(),
            },
        );
    }
    parts
}

fn run_leaf(config: &str) -> Result<BTreeMap<String, Part>, String> {
    let mut options = RunOptions::new(config);
    options.emulator = Some(Emulator::Bochs);
    options.timeout = 300;
    options.quiet = true;
    let outcome = run(&options)?;
    if outcome.exit_code != status::SUCCESS {
        return Err(format!("`{config}` ended with status {}", outcome.exit_code));
    }
    let parts = parse_workload(&outcome.lines);
    if parts.is_empty() {
        return Err(format!("`{config}` printed no workload results"));
    }
    Ok(parts)
}

const EXIT_PARTS: [(&str, &str); 3] =
    [("cpuid", "CPUID"), ("io", "port I/O (OUT 0x80)"), ("hlt", "HLT (IF=1)")];
const WORK_PARTS: [&str; 2] = ["memory", "compute"];

/// The table and JSON of `bench single` from the two runs' parts.
pub fn single_report(
    bare: &BTreeMap<String, Part>,
    depth1: &BTreeMap<String, Part>,
) -> (String, String) {
    let mut table = String::new();
    let _ = writeln!(
        table,
        "turtles bench single: Bochs corei7_skylake_x, ticks = emulated instructions (RDTSC)\n"
    );
    let _ = writeln!(
        table,
        "| round trip | no hypervisor: ticks | depth 1: ticks | depth 1: L0 exits |"
    );
    let _ = writeln!(table, "|---|---:|---:|---:|");
    let mut json = String::from("{\n  \"bench\": \"single\",\n  \"round_trips\": {\n");
    let mut first = true;
    for (key, label) in EXIT_PARTS {
        let b = bare.get(key);
        let d = depth1.get(key);
        let fmt =
            |p: Option<&Part>| p.map_or("-".to_string(), |p| format!("{:.1}", p.ticks_per_round()));
        let exits =
            d.and_then(Part::exits_per_round).map_or("-".to_string(), |e| format!("{e:.2}"));
        let _ = writeln!(table, "| {label} | {} | {} | {exits} |", fmt(b), fmt(d));
        if !first {
            json += ",\n";
        }
        first = false;
        let _ = write!(
            json,
            "    \"{key}\": {{ \"bare_ticks\": {}, \"depth1_ticks\": {}, \"depth1_exits\": {} }}",
            b.map_or("null".to_string(), |p| format!("{:.2}", p.ticks_per_round())),
            d.map_or("null".to_string(), |p| format!("{:.2}", p.ticks_per_round())),
            d.and_then(Part::exits_per_round).map_or("null".to_string(), |e| format!("{e:.4}")),
        );
    }
    json += "\n  },\n  \"workload\": {\n";
    let _ =
        writeln!(table, "\n| workload part | no hypervisor: ticks | depth 1: ticks | overhead |");
    let _ = writeln!(table, "|---|---:|---:|---:|");
    let (mut sum_bare, mut sum_d1) = (0u64, 0u64);
    for key in EXIT_PARTS.iter().map(|(k, _)| *k).chain(WORK_PARTS) {
        let (Some(b), Some(d)) = (bare.get(key), depth1.get(key)) else { continue };
        sum_bare += b.ticks;
        sum_d1 += d.ticks;
        let _ = writeln!(
            table,
            "| {key} x{} | {} | {} | {} |",
            b.rounds,
            b.ticks,
            d.ticks,
            overhead(b.ticks, d.ticks)
        );
        let _ = writeln!(
            json,
            "    \"{key}\": {{ \"bare_ticks\": {}, \"depth1_ticks\": {} }},",
            b.ticks, d.ticks
        );
    }
    let _ = writeln!(table, "| **sum** | {sum_bare} | {sum_d1} | {} |", overhead(sum_bare, sum_d1));
    let _ = write!(
        json,
        "    \"sum\": {{ \"bare_ticks\": {sum_bare}, \"depth1_ticks\": {sum_d1} }}\n  }}\n}}\n"
    );
    let same = WORK_PARTS
        .iter()
        .all(|k| bare.get(*k).map(|p| &p.result) == depth1.get(*k).map(|p| &p.result));
    let _ =
        writeln!(table, "\nresults identical at both depths: {}", if same { "yes" } else { "NO" });
    (table, json)
}

fn overhead(base: u64, value: u64) -> String {
    if base == 0 {
        return "-".to_string();
    }
    format!("{:+.1}%", (value as f64 - base as f64) * 100.0 / base as f64)
}

/// `cargo run -- bench single [--json FILE]`.
pub fn single(json_out: Option<&Path>) -> Result<i32, String> {
    eprintln!("bench single: the leaf without a hypervisor, then under L0 (depth 1)");
    let bare = run_leaf("leaf")?;
    let depth1 = run_leaf("l0-leaf")?;
    let (table, json) = single_report(&bare, &depth1);
    println!("{table}");
    if let Some(path) = json_out {
        std::fs::write(path, json).map_err(|e| format!("{}: {e}", path.display()))?;
        eprintln!("bench single: JSON written to {}", path.display());
    }
    Ok(status::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lines(text: &str) -> Vec<String> {
        text.lines().map(str::to_string).collect()
    }

    #[test]
    fn parses_workload_lines_with_and_without_exits() {
        let parts = parse_workload(&lines(
            "L1| [L1 cpu0 INFO ] workload: cpuid rounds=1000 ticks=457010 per-round=457 exits=1000 result=0x55f0\n\
             [L0 cpu0 INFO ] workload: compute rounds=2000000 ticks=20000009 per-round=10 result=0x6ff1\n\
             workload: total ticks=5\n\
             unrelated line",
        ));
        assert_eq!(parts.len(), 2, "{parts:?}");
        let cpuid = &parts["cpuid"];
        assert_eq!((cpuid.rounds, cpuid.ticks, cpuid.exits), (1000, 457010, Some(1000)));
        assert_eq!(cpuid.exits_per_round(), Some(1.0));
        assert_eq!(parts["compute"].exits, None);
        assert_eq!(parts["compute"].result, "0x6ff1");
    }

    #[test]
    fn report_compares_depths() {
        let bare = parse_workload(&lines(
            "workload: cpuid rounds=1000 ticks=9000 result=0x1\nworkload: compute rounds=10 ticks=100 result=0x7",
        ));
        let d1 = parse_workload(&lines(
            "workload: cpuid rounds=1000 ticks=457000 exits=1000 result=0x1\nworkload: compute rounds=10 ticks=110 result=0x7",
        ));
        let (table, json) = single_report(&bare, &d1);
        assert!(table.contains("| CPUID | 9.0 | 457.0 | 1.00 |"), "{table}");
        assert!(table.contains("| compute x10 | 100 | 110 | +10.0% |"), "{table}");
        assert!(table.contains("results identical at both depths: yes"), "{table}");
        assert!(json.contains("\"depth1_exits\": 1.0000"), "{json}");
        assert!(
            json.contains("\"sum\": { \"bare_ticks\": 9100, \"depth1_ticks\": 457110 }"),
            "{json}"
        );
    }
}

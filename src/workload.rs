//! The leaf workload's result lines (`image/src/workload.rs`):
//! `workload: <name> rounds=R ticks=T per-round=P [exits=E] [l0-exits=F] result=X`.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// One part of the workload as its `workload:` line reports it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Part {
    pub name: String,
    pub rounds: u64,
    pub ticks: u64,
    /// Exits at the hypervisor directly below.
    pub exits: Option<u64>,
    /// Exits at the bottom L0.
    pub l0_exits: Option<u64>,
    pub result: String,
}

impl Part {
    /// Ticks per round trip.
    pub fn ticks_per_round(&self) -> f64 {
        self.ticks as f64 / self.rounds.max(1) as f64
    }

    /// Exits per round trip, if counted.
    pub fn exits_per_round(&self) -> Option<f64> {
        self.exits.map(|e| e as f64 / self.rounds.max(1) as f64)
    }

    /// Exits of the bottom L0 per round trip, if counted.
    pub fn l0_exits_per_round(&self) -> Option<f64> {
        self.l0_exits.map(|e| e as f64 / self.rounds.max(1) as f64)
    }
}

/// The part a line reports, if it is a `workload:` line with rounds and ticks (any prefix
/// before `workload: `; the `workload: total` line is not a part).
pub fn parse_part(line: &str) -> Option<Part> {
    let rest = line.split("workload: ").nth(1)?;
    let mut words = rest.split_whitespace();
    let name = words.next()?;
    if name == "total" {
        return None;
    }
    let fields: BTreeMap<&str, &str> = words.filter_map(|w| w.split_once('=')).collect();
    let number = |k: &str| fields.get(k).and_then(|v| v.parse::<u64>().ok());
    Some(Part {
        name: name.to_string(),
        rounds: number("rounds")?,
        ticks: number("ticks")?,
        exits: number("exits"),
        l0_exits: number("l0-exits"),
        result: fields.get("result").unwrap_or(&"").to_string(),
    })
}

/// The parts of a run's serial output, by name.
pub fn parse_workload(lines: &[String]) -> BTreeMap<String, Part> {
    lines.iter().filter_map(|l| parse_part(l)).map(|p| (p.name.clone(), p)).collect()
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
             workload: broken rounds=x ticks=1\n\
             unrelated line",
        ));
        assert_eq!(parts.len(), 2, "{parts:?}");
        let cpuid = &parts["cpuid"];
        assert_eq!((cpuid.rounds, cpuid.ticks, cpuid.exits), (1000, 457010, Some(1000)));
        assert_eq!(cpuid.exits_per_round(), Some(1.0));
        assert_eq!(cpuid.l0_exits_per_round(), None);
        assert_eq!(parts["compute"].exits, None);
        assert_eq!(parts["compute"].result, "0x6ff1");
    }

    #[test]
    fn zero_rounds_do_not_divide_by_zero() {
        let part = parse_part("workload: odd rounds=0 ticks=10 exits=3 l0-exits=6").expect("part");
        assert_eq!(part.ticks_per_round(), 10.0);
        assert_eq!(part.l0_exits_per_round(), Some(6.0));
    }
}

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

use serde::Serialize;
use turtles_config::Emulator;

use crate::run::{Console, RunOptions, run};
use crate::status;
pub use crate::workload::{Part, parse_workload};

/// One Bochs run of a config: its workload parts and L0's exits by reason.
pub struct Measured {
    pub parts: BTreeMap<String, Part>,
    pub l0_exits: BTreeMap<String, u64>,
    /// Every serial line of the run.
    pub lines: Vec<String>,
}

/// Boots `config` under Bochs with `cmdline` and reads its workload results.
pub fn measure(config: &str, cmdline: &str) -> Result<Measured, String> {
    measure_for(config, cmdline, 900)
}

/// [`measure`] with a timeout in seconds.
pub fn measure_for(config: &str, cmdline: &str, timeout: u64) -> Result<Measured, String> {
    let mut options = RunOptions::new(config);
    options.emulator = Some(Emulator::Bochs);
    options.timeout = timeout;
    options.console = Console::Quiet;
    options.cmdline = cmdline.to_string();
    let outcome = run(&options)?;
    if outcome.exit_code != status::SUCCESS {
        return Err(format!(
            "`{config}` ended with status {} (log: {})",
            outcome.exit_code,
            outcome.log.display()
        ));
    }
    let parts = parse_workload(&outcome.lines);
    if parts.is_empty() {
        return Err(format!("`{config}` printed no workload results"));
    }
    Ok(Measured { parts, l0_exits: parse_l0_exits(&outcome.lines), lines: outcome.lines })
}

fn run_leaf(config: &str) -> Result<BTreeMap<String, Part>, String> {
    Ok(measure(config, "")?.parts)
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
    let mut json =
        SingleJson { bench: "single", round_trips: BTreeMap::new(), workload: BTreeMap::new() };
    for (key, label) in EXIT_PARTS {
        let b = bare.get(key);
        let d = depth1.get(key);
        let fmt =
            |p: Option<&Part>| p.map_or("-".to_string(), |p| format!("{:.1}", p.ticks_per_round()));
        let exits =
            d.and_then(Part::exits_per_round).map_or("-".to_string(), |e| format!("{e:.2}"));
        let _ = writeln!(table, "| {label} | {} | {} | {exits} |", fmt(b), fmt(d));
        json.round_trips.insert(
            key,
            RoundTripJson {
                bare_ticks: b.map(Part::ticks_per_round),
                depth1_ticks: d.map(Part::ticks_per_round),
                depth1_exits: d.and_then(Part::exits_per_round),
            },
        );
    }
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
        json.workload.insert(key, TicksJson { bare_ticks: b.ticks, depth1_ticks: d.ticks });
    }
    let _ = writeln!(table, "| **sum** | {sum_bare} | {sum_d1} | {} |", overhead(sum_bare, sum_d1));
    json.workload.insert("sum", TicksJson { bare_ticks: sum_bare, depth1_ticks: sum_d1 });
    let same = WORK_PARTS
        .iter()
        .all(|k| bare.get(*k).map(|p| &p.result) == depth1.get(*k).map(|p| &p.result));
    let _ =
        writeln!(table, "\nresults identical at both depths: {}", if same { "yes" } else { "NO" });
    (table, to_json(&json))
}

/// `bench single --json`: per round trip and per workload part.
#[derive(Serialize)]
struct SingleJson {
    bench: &'static str,
    round_trips: BTreeMap<&'static str, RoundTripJson>,
    workload: BTreeMap<&'static str, TicksJson>,
}

#[derive(Serialize)]
struct RoundTripJson {
    bare_ticks: Option<f64>,
    depth1_ticks: Option<f64>,
    depth1_exits: Option<f64>,
}

#[derive(Serialize)]
struct TicksJson {
    bare_ticks: u64,
    depth1_ticks: u64,
}

/// `bench nested --json`: one entry per configuration measured.
#[derive(Serialize)]
struct NestedJson<'a> {
    bench: &'static str,
    transition_cycles: u64,
    levels: Vec<LevelJson<'a>>,
}

#[derive(Serialize)]
struct LevelJson<'a> {
    label: &'a str,
    cpuid_ticks: Option<f64>,
    exits_per_reflected_exit: Option<f64>,
    io_ticks: Option<f64>,
    l0_exits_per_io: Option<f64>,
    hlt_ticks: Option<f64>,
    l0_exits_per_l0_handled_exit: Option<f64>,
    mixed_ticks_per_round: Option<f64>,
    mixed_modelled_ticks: u64,
    workload_ticks: u64,
    workload_l0_exits: u64,
    l0_exits_by_reason: &'a BTreeMap<String, u64>,
}

/// The JSON of `bench nested`.
pub fn nested_json(levels: &[Level]) -> String {
    let json = NestedJson {
        bench: "nested",
        transition_cycles: TRANSITION_CYCLES,
        levels: levels
            .iter()
            .map(|l| LevelJson {
                label: &l.label,
                cpuid_ticks: l.ticks("cpuid"),
                exits_per_reflected_exit: l.l0_per_round("cpuid"),
                io_ticks: l.ticks("io"),
                l0_exits_per_io: l.l0_per_round("io"),
                hlt_ticks: l.ticks("hlt"),
                l0_exits_per_l0_handled_exit: l.l0_per_round("memory"),
                mixed_ticks_per_round: l.ticks("mixed"),
                mixed_modelled_ticks: l.modelled("mixed"),
                workload_ticks: l.sum_ticks(),
                workload_l0_exits: l.sum_l0_exits(),
                l0_exits_by_reason: &l.l0_exits,
            })
            .collect(),
    };
    to_json(&json)
}

/// Pretty JSON with a final newline.
pub fn to_json(value: &impl Serialize) -> String {
    serde_json::to_string_pretty(value)
        .map_or_else(|e| format!("{{\"error\": \"{e}\"}}\n"), |s| s + "\n")
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

/// L0's exit counts by reason from a run's final statistics (`[L0 ...] exits: Name=N`).
pub fn parse_l0_exits(lines: &[String]) -> BTreeMap<String, u64> {
    let mut out = BTreeMap::new();
    for line in lines {
        let Some(rest) = line.strip_prefix("[L0 cpu0 INFO ] exits: ") else { continue };
        let Some((name, count)) = rest.split_once('=') else { continue };
        if name.contains(' ') || name == "total" {
            continue;
        }
        if let Ok(n) = count.trim().parse() {
            out.insert(name.to_string(), n);
        }
    }
    out
}

/// One configuration measured by `bench nested`.
pub struct Level {
    pub label: String,
    pub parts: BTreeMap<String, Part>,
    pub l0_exits: BTreeMap<String, u64>,
}

impl Level {
    fn l0_per_round(&self, part: &str) -> Option<f64> {
        let p = self.parts.get(part)?;
        Some(p.l0_exits? as f64 / p.rounds.max(1) as f64)
    }

    fn ticks(&self, part: &str) -> Option<f64> {
        self.parts.get(part).map(Part::ticks_per_round)
    }

    /// A part's ticks (0 if the run lacks it).
    fn part_ticks(&self, part: &str) -> u64 {
        self.parts.get(part).map_or(0, |p| p.ticks)
    }

    /// A part's ticks plus the transition-cost model's charge for its L0 exits.
    fn modelled(&self, part: &str) -> u64 {
        self.parts.get(part).map_or(0, |p| p.ticks + p.l0_exits.unwrap_or(0) * TRANSITION_CYCLES)
    }

    fn sum_ticks(&self) -> u64 {
        self.parts.values().map(|p| p.ticks).sum()
    }

    fn sum_l0_exits(&self) -> u64 {
        self.parts.values().filter_map(|p| p.l0_exits).sum()
    }
}

/// The per-transition cost the model charges for real hardware (Bochs charges ~0 for a VM
/// exit or entry; DESIGN.md: real processors take on the order of 1,000-2,000 cycles).
pub const TRANSITION_CYCLES: u64 = 1_500;

fn run_level(label: &str, config: &str, cmdline: &str) -> Result<Level, String> {
    let m = measure(config, cmdline)?;
    Ok(Level { label: label.to_string(), parts: m.parts, l0_exits: m.l0_exits })
}

fn cell(v: Option<f64>, decimals: usize) -> String {
    v.map_or("-".to_string(), |v| format!("{v:.decimals$}"))
}

/// A row of the `bench nested` table: its label and how to compute a cell.
type Row<'a> = (&'a str, Box<dyn Fn(&Level) -> String + 'a>);

/// The tables of `bench nested`.
pub fn nested_report(levels: &[Level]) -> String {
    let mut t = String::new();
    let _ = writeln!(
        t,
        "turtles bench nested: Bochs corei7_skylake_x, ticks = emulated instructions\n"
    );
    let _ = write!(t, "| measure |");
    for l in levels {
        let _ = write!(t, " {} |", l.label);
    }
    let _ = writeln!(t, "\n|---|{}", "---:|".repeat(levels.len()));
    let base = levels.first().map(|l| l.sum_ticks()).unwrap_or(0);
    let base_model = levels.first().map(|l| l.sum_ticks() + l.sum_l0_exits() * TRANSITION_CYCLES);
    let mixed_base =
        levels.first().filter(|l| l.parts.contains_key("mixed")).map(|l| l.part_ticks("mixed"));
    let mixed_model =
        levels.first().filter(|l| l.parts.contains_key("mixed")).map(|l| l.modelled("mixed"));
    let rows: Vec<Row<'_>> = vec![
        ("CPUID round trip (ticks)", Box::new(|l| cell(l.ticks("cpuid"), 0))),
        (
            "L0 exits per CPUID (reflected from depth 2; minimum 2)",
            Box::new(|l| cell(l.l0_per_round("cpuid"), 2)),
        ),
        ("port I/O round trip (ticks)", Box::new(|l| cell(l.ticks("io"), 0))),
        ("L0 exits per port I/O", Box::new(|l| cell(l.l0_per_round("io"), 2))),
        ("HLT round trip (ticks)", Box::new(|l| cell(l.ticks("hlt"), 0))),
        ("L0 exits per HLT", Box::new(|l| cell(l.l0_per_round("hlt"), 2))),
        (
            "L0 exits per page first touched (EPT02 fill, L0 alone; minimum 1)",
            Box::new(|l| cell(l.l0_per_round("memory"), 2)),
        ),
        (
            "mixed part: ticks per round (~100,000 instructions of compute + 1 CPUID)",
            Box::new(|l| cell(l.ticks("mixed"), 0)),
        ),
        (
            "mixed part: overhead vs depth 1 (ticks)",
            Box::new(move |l| {
                mixed_base.map_or("-".to_string(), |b| overhead(b, l.part_ticks("mixed")))
            }),
        ),
        (
            "mixed part: modelled overhead vs depth 1 (ticks + 1,500 per L0 exit)",
            Box::new(move |l| {
                mixed_model.map_or("-".to_string(), |b| overhead(b, l.modelled("mixed")))
            }),
        ),
        ("workload ticks (sum of parts)", Box::new(|l| l.sum_ticks().to_string())),
        ("workload overhead vs depth 1 (ticks)", Box::new(move |l| overhead(base, l.sum_ticks()))),
        ("L0 exits during the workload", Box::new(|l| l.sum_l0_exits().to_string())),
        (
            "modelled overhead vs depth 1 (ticks + 1,500 per L0 exit)",
            Box::new(move |l| {
                base_model.map_or("-".to_string(), |b| {
                    overhead(b, l.sum_ticks() + l.sum_l0_exits() * TRANSITION_CYCLES)
                })
            }),
        ),
    ];
    for (name, f) in &rows {
        let _ = write!(t, "| {name} |");
        for l in levels {
            let _ = write!(t, " {} |", f(l));
        }
        let _ = writeln!(t);
    }
    let same = levels.windows(2).all(|w| {
        ["compute", "mixed"].iter().all(|part| {
            w[0].parts.get(*part).map(|p| &p.result) == w[1].parts.get(*part).map(|p| &p.result)
        })
    });
    let _ =
        writeln!(t, "\nsame workload results at every depth: {}", if same { "yes" } else { "NO" });
    let _ = writeln!(
        t,
        "transition-cost model: Bochs charges ~0 ticks for a VM exit or entry, so ticks are \
         software path length; the model adds {TRANSITION_CYCLES} cycles per L0 exit (a real \
         exit plus entry) to estimate hardware cost.\n"
    );
    let reasons: std::collections::BTreeSet<&String> =
        levels.iter().flat_map(|l| l.l0_exits.keys()).collect();
    let _ = write!(t, "| L0 exits by reason (whole run) |");
    for l in levels {
        let _ = write!(t, " {} |", l.label);
    }
    let _ = writeln!(t, "\n|---|{}", "---:|".repeat(levels.len()));
    for r in reasons {
        let _ = write!(t, "| {r} |");
        for l in levels {
            let _ = write!(t, " {} |", l.l0_exits.get(r).copied().unwrap_or(0));
        }
        let _ = writeln!(t);
    }
    t
}

/// A horizontal bar chart of L0 exits by reason per configuration (log scale), as SVG.
pub fn nested_svg(levels: &[Level]) -> String {
    let reasons: Vec<String> = levels
        .iter()
        .flat_map(|l| l.l0_exits.keys().cloned())
        .collect::<std::collections::BTreeSet<_>>()
        .into_iter()
        .collect();
    let colors = ["#4e79a7", "#f28e2b", "#59a14f", "#e15759", "#b07aa1"];
    let bar = 10;
    let group = bar * levels.len() + 8;
    let height = 40 + group * reasons.len() + 20 * levels.len();
    let max = levels.iter().flat_map(|l| l.l0_exits.values()).copied().max().unwrap_or(1).max(1);
    let scale = |n: u64| ((n as f64 + 1.0).log10() / (max as f64 + 1.0).log10() * 520.0) as usize;
    let mut s = format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"760\" height=\"{height}\" \
         font-family=\"sans-serif\" font-size=\"11\">\n<text x=\"10\" y=\"18\" font-size=\"14\">\
         L0 exits by reason (log scale), turtles bench nested</text>\n"
    );
    for (i, r) in reasons.iter().enumerate() {
        let y = 30 + i * group;
        let _ = writeln!(s, "<text x=\"10\" y=\"{}\">{r}</text>", y + group / 2);
        for (j, l) in levels.iter().enumerate() {
            let n = l.l0_exits.get(r).copied().unwrap_or(0);
            let w = scale(n);
            let _ = writeln!(
                s,
                "<rect x=\"170\" y=\"{}\" width=\"{w}\" height=\"{}\" fill=\"{}\"/>\
                 <text x=\"{}\" y=\"{}\">{n}</text>",
                y + j * bar,
                bar - 1,
                colors[j % colors.len()],
                175 + w,
                y + j * bar + bar - 1
            );
        }
    }
    for (j, l) in levels.iter().enumerate() {
        let y = 40 + group * reasons.len() + 20 * j;
        let _ = writeln!(
            s,
            "<rect x=\"10\" y=\"{}\" width=\"12\" height=\"12\" fill=\"{}\"/><text x=\"28\" y=\"{}\">{}</text>",
            y - 10,
            colors[j % colors.len()],
            y,
            l.label
        );
    }
    s + "</svg>\n"
}

/// `cargo run -- bench nested [--json FILE] [--svg FILE] [--depth3]`.
pub fn nested(
    json_out: Option<&Path>,
    svg_out: Option<&Path>,
    depth3: bool,
) -> Result<i32, String> {
    eprintln!(
        "bench nested: depth 1, depth 2 with and without VMCS shadowing{}",
        if depth3 { ", depth 3" } else { "" }
    );
    let mut levels = vec![
        run_level("depth 1", "l0-leaf", "")?,
        run_level("depth 2", "l0-l1-leaf", "")?,
        run_level("depth 2, no shadowing", "l0-l1-leaf", "turtles.vmcs_shadowing=off")?,
    ];
    if depth3 {
        levels.push(run_level("depth 3", "l0-l1-l1-leaf", "")?);
    }
    println!("{}", nested_report(&levels));
    let svg = nested_svg(&levels);
    let svg_path = svg_out
        .map(Path::to_path_buf)
        .unwrap_or_else(|| crate::workspace_root().join("target/bench-nested.svg"));
    std::fs::write(&svg_path, svg).map_err(|e| format!("{}: {e}", svg_path.display()))?;
    println!("plot: {}", svg_path.display());
    if let Some(path) = json_out {
        let json = nested_json(&levels);
        std::fs::write(path, json).map_err(|e| format!("{}: {e}", path.display()))?;
        eprintln!("bench nested: JSON written to {}", path.display());
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
    fn parses_l0_exit_statistics_only_from_l0() {
        let exits = parse_l0_exits(&lines(
            "[L0 cpu0 INFO ] exits: total=120 (guest console: 9 bytes)\n\
             [L0 cpu0 INFO ] exits: Cpuid=100\n\
             [L0 cpu0 INFO ] exits: Vmresume=20\n\
             [L0 cpu0 INFO ] exits: nested: L2 caused 3 exits\n\
             L1| [L1 cpu0 INFO ] exits: Cpuid=7",
        ));
        assert_eq!(exits.len(), 2, "{exits:?}");
        assert_eq!(exits["Cpuid"], 100);
        assert_eq!(exits["Vmresume"], 20);
    }

    #[test]
    fn nested_report_counts_l0_exits_per_round_trip() {
        let level = |label: &str, text: &str| Level {
            label: label.to_string(),
            parts: parse_workload(&lines(text)),
            l0_exits: BTreeMap::from([("Cpuid".to_string(), 5u64)]),
        };
        let d1 = level(
            "depth 1",
            "workload: cpuid rounds=100 ticks=50000 exits=100 l0-exits=100 result=0x1",
        );
        let d2 = level(
            "depth 2",
            "workload: cpuid rounds=100 ticks=900000 exits=100 l0-exits=200 result=0x1",
        );
        let t = nested_report(&[d1, d2]);
        assert!(t.contains("| CPUID round trip (ticks) | 500 | 9000 |"), "{t}");
        assert!(
            t.contains("| L0 exits per CPUID (reflected from depth 2; minimum 2) | 1.00 | 2.00 |"),
            "{t}"
        );
        assert!(t.contains("| Cpuid | 5 | 5 |"), "{t}");
        // No mixed part in these runs: its rows say so instead of inventing numbers.
        assert!(t.contains("| mixed part: overhead vs depth 1 (ticks) | - | - |"), "{t}");
        let svg = nested_svg(&[level("a", "")]);
        assert!(svg.starts_with("<svg") && svg.contains("Cpuid"), "{svg}");
        let d1 = level("depth 1", "workload: cpuid rounds=100 ticks=50000 exits=100 l0-exits=100");
        let json: serde_json::Value =
            serde_json::from_str(&nested_json(&[d1])).expect("valid JSON");
        assert_eq!(json["levels"][0]["label"], "depth 1");
        assert_eq!(json["levels"][0]["cpuid_ticks"], 500.0);
        assert_eq!(json["levels"][0]["exits_per_reflected_exit"], 1.0);
        assert_eq!(json["levels"][0]["io_ticks"], serde_json::Value::Null);
        assert_eq!(json["levels"][0]["l0_exits_by_reason"]["Cpuid"], 5);
    }

    #[test]
    fn nested_report_models_the_mixed_part() {
        let level = |label: &str, text: &str| Level {
            label: label.to_string(),
            parts: parse_workload(&lines(text)),
            l0_exits: BTreeMap::new(),
        };
        let d1 = level(
            "depth 1",
            "workload: mixed rounds=200 ticks=20000000 exits=200 l0-exits=200 result=0x9",
        );
        let d2 = level(
            "depth 2",
            "workload: mixed rounds=200 ticks=20600000 exits=200 l0-exits=400 result=0x9",
        );
        let t = nested_report(&[d1, d2]);
        assert!(
            t.contains(
                "ticks per round (~100,000 instructions of compute + 1 CPUID) | 100000 | 103000 |"
            ),
            "{t}"
        );
        assert!(t.contains("| mixed part: overhead vs depth 1 (ticks) | +0.0% | +3.0% |"), "{t}");
        // 20,000,000 + 200 * 1,500 = 20,300,000 against 20,600,000 + 400 * 1,500 = 21,200,000.
        assert!(t.contains("(ticks + 1,500 per L0 exit) | +0.0% | +4.4% |"), "{t}");
        assert!(t.contains("same workload results at every depth: yes"), "{t}");
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
        let json: serde_json::Value = serde_json::from_str(&json).expect("valid JSON");
        assert_eq!(json["round_trips"]["cpuid"]["depth1_exits"], 1.0);
        assert_eq!(json["round_trips"]["io"]["bare_ticks"], serde_json::Value::Null);
        assert_eq!(json["workload"]["sum"]["bare_ticks"], 9100);
        assert_eq!(json["workload"]["sum"]["depth1_ticks"], 457110);
    }
}

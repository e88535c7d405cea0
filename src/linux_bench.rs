//! `cargo run -- bench linux`: the Linux workload table. Debian's Linux runs the same
//! kernbench stand-in at depth 1, 2 (and 3) under Bochs (`src/linux_bench/bench.sh`, sourced
//! by `/init` when the command line has `turtles.bench=1`): tcc compiles our C program
//! (`src/linux_bench/*.c`), the program runs (compute), busybox forks, execs and pipes
//! (processes), and a file on tmpfs goes through gzip and bzip2 (files). Each part checks its
//! own result. The parts are bracketed by marks (CPUID leaf 0x40000004): each turtles level
//! snapshots its TSC and exit counters by reason at every mark and prints the snapshots at
//! the end of the run (`image/src/vmx/exits/mark.rs`), so the runner attributes ticks (the
//! bottom L0's TSC: Bochs' emulated instructions) and exits per level and reason to each part.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::bench::TRANSITION_CYCLES;

/// What the compiled program prints (`bench-program: result=...`), as the host's C compiler
/// computes it from the same sources (tested below).
pub const PROGRAM_RESULT: &str = "2061eb58d71f6041";
/// `md5sum` of the processes part's output (the same loop in the host's `sh`, tested below).
pub const PROCESSES_MD5: &str = "631c0df581870af25a5d6dde77c7df15";
/// `seq 1 40000 | md5sum`: the files part's round trip through gzip and bzip2.
pub const FILES_MD5: &str = "1c0f34fee7176dc367bead8f96cba6bc";

/// The bench's part script with the expected values filled in.
const SCRIPT: &str = include_str!("linux_bench/bench.sh");

/// The C sources the guest compiles.
pub const SOURCES: [(&str, &str); 7] = [
    ("bench.h", include_str!("linux_bench/bench.h")),
    ("rt.c", include_str!("linux_bench/rt.c")),
    ("sort.c", include_str!("linux_bench/sort.c")),
    ("sieve.c", include_str!("linux_bench/sieve.c")),
    ("crc.c", include_str!("linux_bench/crc.c")),
    ("matrix.c", include_str!("linux_bench/matrix.c")),
    ("text.c", include_str!("linux_bench/text.c")),
];

/// The files the initramfs carries under `/bench/`: the part script and the sources.
pub fn guest_files() -> Vec<(&'static str, String)> {
    let script = SCRIPT
        .replace("@PROGRAM_RESULT@", PROGRAM_RESULT)
        .replace("@PROCESSES_MD5@", PROCESSES_MD5)
        .replace("@FILES_MD5@", FILES_MD5);
    let mut files = vec![("bench.sh", script)];
    files.extend(SOURCES.iter().map(|(name, text)| (*name, (*text).to_string())));
    files
}

/// Exit counts by reason name.
pub type Reasons = BTreeMap<String, u64>;

/// One level's snapshot at a mark (`[L<d> cpu0 INFO ] mark: tag=T tsc=X l2-exits=A
/// reflected=B Reason=N ...`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Mark {
    pub tag: u32,
    pub tsc: u64,
    pub l2_exits: u64,
    pub reflected: u64,
    pub reasons: Reasons,
}

/// One part as `/init` reports it (`bench: part=NAME from=A to=B result=R expected=E ok`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PartLine {
    pub name: String,
    pub from: u32,
    pub to: u32,
    pub result: String,
    pub ok: bool,
}

/// One run of the bench at a depth: what `/init` and every level printed.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Run {
    pub label: String,
    pub depth: u32,
    /// The guest's monotonic clock at `/init` (ns) and its TSC rate (CPUID 0x15).
    pub init_ns: Option<u64>,
    pub tsc_hz: Option<u64>,
    pub parts: Vec<PartLine>,
    /// The marks by level (0 = L0) and tag.
    pub marks: BTreeMap<u32, BTreeMap<u32, Mark>>,
}

/// The level (`N` of `[LN cpu`) and the rest of a line after the prefixes `Lk| `.
pub fn level_line(line: &str) -> Option<(u32, &str)> {
    let mut rest = line.strip_prefix("bochs| ").unwrap_or(line);
    while let Some(r) = rest.strip_prefix('L').and_then(|r| {
        let digits = r.find(|c: char| !c.is_ascii_digit())?;
        (digits > 0).then_some(())?;
        r[digits..].strip_prefix("| ")
    }) {
        rest = r;
    }
    let r = rest.strip_prefix("[L")?;
    let digits = r.find(|c: char| !c.is_ascii_digit())?;
    let level = r[..digits].parse().ok()?;
    let after = r[digits..].split_once("] ")?.1;
    Some((level, after))
}

/// The guest's own line (`bench: ...`) after any level prefixes, if it is one.
fn bench_line(line: &str) -> Option<&str> {
    line.find("bench: ").map(|at| &line[at + "bench: ".len()..])
}

fn fields(text: &str) -> BTreeMap<&str, &str> {
    text.split_whitespace().filter_map(|w| w.split_once('=')).collect()
}

/// A mark line's snapshot (the text after `mark: `).
pub fn parse_mark(text: &str) -> Option<Mark> {
    let f = fields(text);
    let number = |k: &str| f.get(k).and_then(|v| v.parse::<u64>().ok());
    let reasons = f
        .iter()
        .filter(|(k, _)| !["tag", "tsc", "l2-exits", "reflected"].contains(k))
        .filter_map(|(k, v)| Some((k.to_string(), v.parse().ok()?)))
        .collect();
    Some(Mark {
        tag: u32::try_from(number("tag")?).ok()?,
        tsc: number("tsc")?,
        l2_exits: number("l2-exits").unwrap_or(0),
        reflected: number("reflected").unwrap_or(0),
        reasons,
    })
}

/// A run's figures from its serial lines.
pub fn parse_run(label: &str, depth: u32, lines: &[String]) -> Run {
    let mut run = Run {
        label: label.to_string(),
        depth,
        init_ns: None,
        tsc_hz: None,
        parts: Vec::new(),
        marks: BTreeMap::new(),
    };
    for line in lines {
        if let Some((level, text)) = level_line(line)
            && let Some(mark) = text.strip_prefix("mark: ").and_then(parse_mark)
        {
            run.marks.entry(level).or_default().insert(mark.tag, mark);
            continue;
        }
        let Some(text) = bench_line(line) else { continue };
        let f = fields(text);
        if let Some(rest) = text.strip_prefix("boot ") {
            let f = fields(rest);
            run.init_ns = f.get("init-ns").and_then(|v| v.parse().ok());
            run.tsc_hz = f.get("tsc-hz").and_then(|v| v.parse().ok());
        } else if let (Some(name), Some(from), Some(to)) =
            (f.get("part"), f.get("from"), f.get("to"))
            && let (Ok(from), Ok(to)) = (from.parse(), to.parse())
        {
            run.parts.push(PartLine {
                name: name.to_string(),
                from,
                to,
                result: f.get("result").unwrap_or(&"").to_string(),
                ok: text.trim_end().ends_with(" ok"),
            });
        }
    }
    run
}

impl Run {
    fn mark(&self, level: u32, tag: u32) -> Option<&Mark> {
        self.marks.get(&level)?.get(&tag)
    }

    /// A part's ticks: the bottom L0's TSC between its marks.
    pub fn ticks(&self, part: &PartLine) -> Option<u64> {
        let (a, b) = (self.mark(0, part.from)?, self.mark(0, part.to)?);
        b.tsc.checked_sub(a.tsc)
    }

    /// A part's exits at `level` by reason.
    pub fn exits(&self, level: u32, part: &PartLine) -> Option<Reasons> {
        let (a, b) = (self.mark(level, part.from)?, self.mark(level, part.to)?);
        Some(
            b.reasons
                .iter()
                .map(|(k, v)| (k.clone(), v.saturating_sub(a.reasons.get(k).copied().unwrap_or(0))))
                .filter(|(_, v)| *v > 0)
                .collect(),
        )
    }

    /// A part's exits at `level`, all reasons.
    pub fn exit_total(&self, level: u32, part: &PartLine) -> Option<u64> {
        self.exits(level, part).map(|r| r.values().sum())
    }

    /// A part's ticks plus the transition model's charge for its L0 exits (only L0's exits
    /// are hardware transitions: a level above runs its guest through L0).
    pub fn modelled(&self, part: &PartLine) -> Option<u64> {
        Some(self.ticks(part)? + self.exit_total(0, part)? * TRANSITION_CYCLES)
    }

    fn sum(&self, f: impl Fn(&PartLine) -> Option<u64>) -> Option<u64> {
        self.parts.iter().map(f).sum()
    }

    /// Boot to `/init` in TSC ticks: the guest's monotonic clock at `/init` at its TSC rate.
    pub fn boot_ticks(&self) -> Option<u64> {
        let ns = u128::from(self.init_ns?);
        u64::try_from(ns * u128::from(self.tsc_hz?) / 1_000_000_000).ok()
    }

    /// Every part passed its check, and there are parts.
    pub fn passed(&self) -> bool {
        !self.parts.is_empty() && self.parts.iter().all(|p| p.ok)
    }
}

/// The paper's Table 2 (Ben-Yehuda et al., OSDI 2010): nested vs single-level overhead.
pub const PAPER: [(&str, &str, &str); 2] =
    [("kernbench", "+14.5%", "+10.3%"), ("SPECjbb (score, higher is better)", "-7.8%", "-6.3%")];

fn overhead(base: Option<u64>, value: Option<u64>) -> String {
    match (base, value) {
        (Some(b), Some(v)) if b > 0 => format!("{:+.1}%", (v as f64 - b as f64) * 100.0 / b as f64),
        _ => "-".to_string(),
    }
}

fn count(v: Option<u64>) -> String {
    v.map_or("-".to_string(), crate::readme::thousands)
}

/// The part names in the order the first run reports them.
fn part_names(runs: &[Run]) -> Vec<String> {
    runs.first().map(|r| r.parts.iter().map(|p| p.name.clone()).collect()).unwrap_or_default()
}

fn part<'a>(run: &'a Run, name: &str) -> Option<&'a PartLine> {
    run.parts.iter().find(|p| p.name == name)
}

/// The summary table (ticks, L0 exits, overhead in ticks and with the model, per part and in
/// all, boot to `/init`) and the paper's figures beside it.
pub fn table(runs: &[Run]) -> String {
    use std::fmt::Write as _;
    let mut t = String::new();
    let _ = write!(t, "| measure |");
    for r in runs {
        let _ = write!(t, " {} |", r.label);
    }
    let _ = writeln!(t, "\n|---|{}", "---:|".repeat(runs.len()));
    let base = runs.first();
    let row = |t: &mut String, name: String, f: &dyn Fn(&Run) -> String| {
        let _ = write!(t, "| {name} |");
        for r in runs {
            let _ = write!(t, " {} |", f(r));
        }
        let _ = writeln!(t);
    };
    for name in part_names(runs) {
        let ticks = |r: &Run| part(r, &name).and_then(|p| r.ticks(p));
        let l0 = |r: &Run| part(r, &name).and_then(|p| r.exit_total(0, p));
        let model = |r: &Run| part(r, &name).and_then(|p| r.modelled(p));
        let b_ticks = base.and_then(ticks);
        let b_model = base.and_then(model);
        row(&mut t, format!("{name}: ticks"), &|r| count(ticks(r)));
        row(&mut t, format!("{name}: L0 exits"), &|r| count(l0(r)));
        row(&mut t, format!("{name}: overhead vs depth 1 (ticks)"), &|r| {
            overhead(b_ticks, ticks(r))
        });
        row(&mut t, format!("{name}: overhead vs depth 1 (model)"), &|r| {
            overhead(b_model, model(r))
        });
    }
    let ticks = |r: &Run| r.sum(|p| r.ticks(p));
    let l0 = |r: &Run| r.sum(|p| r.exit_total(0, p));
    let model = |r: &Run| r.sum(|p| r.modelled(p));
    let (b_ticks, b_model) = (base.and_then(ticks), base.and_then(model));
    row(&mut t, "**workload: ticks**".to_string(), &|r| count(ticks(r)));
    row(&mut t, "**workload: L0 exits**".to_string(), &|r| count(l0(r)));
    row(&mut t, "**workload: overhead vs depth 1 (ticks)**".to_string(), &|r| {
        overhead(b_ticks, ticks(r))
    });
    row(
        &mut t,
        format!("**workload: overhead vs depth 1 (ticks + {TRANSITION_CYCLES} per L0 exit)**"),
        &|r| overhead(b_model, model(r)),
    );
    let b_boot = base.and_then(Run::boot_ticks);
    row(&mut t, "boot to /init: ticks (guest clock x TSC rate)".to_string(), &|r| {
        count(r.boot_ticks())
    });
    row(&mut t, "boot to /init: vs depth 1".to_string(), &|r| match (b_boot, r.boot_ticks()) {
        (Some(b), Some(v)) if b > 0 => format!("{:.2}x", v as f64 / b as f64),
        _ => "-".to_string(),
    });
    row(&mut t, "parts passed their checks".to_string(), &|r| {
        if r.passed() { "yes".to_string() } else { "NO".to_string() }
    });
    let _ = writeln!(
        t,
        "\n| paper, Table 2 (nested vs single level) | nested | nested, VMREAD/VMWRITE optimized |"
    );
    let _ = writeln!(t, "|---|---:|---:|");
    for (what, plain, optimized) in PAPER {
        let _ = writeln!(t, "| {what} | {plain} | {optimized} |");
    }
    t
}

/// Exits by reason per level and part, one table per run.
pub fn exit_tables(runs: &[Run]) -> String {
    use std::fmt::Write as _;
    let mut t = String::new();
    let names = part_names(runs);
    for r in runs {
        let _ =
            write!(t, "\n{}: exits by level and reason per part\n\n| level | reason |", r.label);
        for n in &names {
            let _ = write!(t, " {n} |");
        }
        let _ = writeln!(t, "\n|---|---|{}", "---:|".repeat(names.len()));
        for &level in r.marks.keys() {
            let per_part: Vec<Reasons> = names
                .iter()
                .map(|n| part(r, n).and_then(|p| r.exits(level, p)).unwrap_or_default())
                .collect();
            let reasons: std::collections::BTreeSet<&String> =
                per_part.iter().flat_map(|m| m.keys()).collect();
            for reason in reasons {
                let _ = write!(t, "| L{level} | {reason} |");
                for m in &per_part {
                    let _ = write!(t, " {} |", m.get(reason).copied().unwrap_or(0));
                }
                let _ = writeln!(t);
            }
        }
    }
    t
}

/// `bench linux --json`: the runs as measured plus the derived figures.
#[derive(Serialize, Deserialize)]
pub struct Json {
    pub bench: String,
    pub transition_cycles: u64,
    pub runs: Vec<Run>,
}

pub fn to_json(runs: &[Run]) -> String {
    crate::bench::to_json(&Json {
        bench: "linux".to_string(),
        transition_cycles: TRANSITION_CYCLES,
        runs: runs.to_vec(),
    })
}

/// A bar chart of each part's modelled ticks per run, relative to depth 1 (100%), as SVG.
pub fn svg(runs: &[Run]) -> String {
    let mut rows: Vec<String> = part_names(runs);
    rows.push("workload".to_string());
    let value = |r: &Run, row: &str| {
        if row == "workload" {
            r.sum(|p| r.modelled(p))
        } else {
            part(r, row).and_then(|p| r.modelled(p))
        }
    };
    let groups: Vec<crate::svg::Group> = rows
        .iter()
        .map(|row| {
            let base = runs.first().and_then(|r| value(r, row));
            crate::svg::Group {
                label: row.clone(),
                bars: runs
                    .iter()
                    .map(|r| {
                        value(r, row).map(|v| {
                            (
                                v as f64,
                                format!(
                                    "{} ({})",
                                    crate::readme::thousands(v),
                                    overhead(base, Some(v))
                                ),
                            )
                        })
                    })
                    .collect(),
            }
        })
        .collect();
    let series: Vec<String> = runs.iter().map(|r| r.label.clone()).collect();
    crate::svg::grouped_bars(
        &format!(
            "turtles bench linux: ticks + {TRANSITION_CYCLES} per L0 exit, per part (vs depth 1)"
        ),
        &groups,
        &series,
        crate::svg::Scale::Shared,
    )
}

/// The configs measured: label, config, depth.
const RUNS: [(&str, &str, u32); 3] =
    [("depth 1", "l0-linux", 1), ("depth 2", "l0-l1-linux", 2), ("depth 3", "l0-l1-l1-linux", 3)];

/// The kernel command-line word that makes `/init` run the bench.
pub const BENCH_CMDLINE: &str = "turtles.bench=1";

/// The committed figures the README's block is generated from.
pub const FIGURES: &str = "bench/linux.json";

pub const BEGIN: &str = "<!-- linux-bench:begin: generated from bench/linux.json by `cargo run -- bench linux --readme` -->";
pub const END: &str = "<!-- linux-bench:end -->";

/// Boots `config` under Bochs with the bench on and reads its figures.
pub fn measure(label: &str, config: &str, depth: u32) -> Result<Run, String> {
    use crate::run::{Console, RunOptions, run};
    let mut options = RunOptions::new(config);
    options.emulator = Some(turtles_config::Emulator::Bochs);
    options.timeout = 2400;
    options.console = Console::Quiet;
    options.leaf_cmdline = BENCH_CMDLINE.to_string();
    let outcome = run(&options)?;
    let measured = parse_run(label, depth, &outcome.lines);
    if outcome.exit_code != crate::status::SUCCESS || !measured.passed() {
        return Err(format!(
            "`{config}` ended with status {} and {} parts passed their checks (log: {})",
            outcome.exit_code,
            measured.parts.iter().filter(|p| p.ok).count(),
            outcome.log.display()
        ));
    }
    Ok(measured)
}

/// The README block for `runs`, markers included.
pub fn readme_block(runs: &[Run]) -> String {
    format!("{BEGIN}\n\n{}{}\n{END}", table(runs), exit_tables(runs))
}

/// `cargo run -- bench linux [--json FILE] [--svg FILE] [--depth3] [--readme]`.
pub fn command(
    json_out: Option<&std::path::Path>,
    svg_out: Option<&std::path::Path>,
    depth3: bool,
    readme: bool,
) -> Result<i32, String> {
    let root = crate::workspace_root();
    let mut runs = Vec::new();
    for (label, config, depth) in RUNS {
        if depth == 3 && !depth3 {
            continue;
        }
        eprintln!("bench linux: {label} ({config}) under Bochs");
        let run = measure(label, config, depth)?;
        eprintln!("{}", table(std::slice::from_ref(&run)));
        runs.push(run);
    }
    println!(
        "turtles bench linux: Debian's Linux under Bochs, ticks = emulated instructions (the \
         bottom L0's TSC between marks)\n\n{}{}",
        table(&runs),
        exit_tables(&runs)
    );
    let json = to_json(&runs);
    let svg_path = match (svg_out, json_out) {
        (Some(p), _) => p.to_path_buf(),
        (None, Some(j)) => j.with_extension("svg"),
        (None, None) => root.join("target/bench-linux.svg"),
    };
    let write = |path: &std::path::Path, text: &str| {
        std::fs::write(path, text).map_err(|e| format!("{}: {e}", path.display()))
    };
    write(&svg_path, &svg(&runs))?;
    eprintln!("bench linux: SVG written to {}", svg_path.display());
    if let Some(path) = json_out {
        write(path, &json)?;
        eprintln!("bench linux: JSON written to {}", path.display());
    }
    if readme {
        write(&root.join(FIGURES), &json)?;
        let path = root.join("README.md");
        let text =
            std::fs::read_to_string(&path).map_err(|e| format!("{}: {e}", path.display()))?;
        let start = text.find(BEGIN).ok_or("README.md has no linux-bench:begin marker")?;
        let end = text[start..].find(END).ok_or("README.md has no linux-bench:end marker")?
            + start
            + END.len();
        let new = format!("{}{}{}", &text[..start], readme_block(&runs), &text[end..]);
        write(&path, &new)?;
        eprintln!("bench linux: {FIGURES} and README.md's table updated");
    }
    Ok(crate::status::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::process::Command;

    fn lines(text: &str) -> Vec<String> {
        text.lines().map(str::to_string).collect()
    }

    /// A depth-2 run's lines: L1's marks (prefixed), L0's, and `/init`'s at L2.
    fn depth2() -> Run {
        parse_run(
            "depth 2",
            2,
            &lines(
                "L1| L2| bench: boot init-ns=500000000 tsc-hz=1000000000 mark=1\n\
                 L1| L2| bench: part=compile from=1 to=2 result=linked expected=linked ok\n\
                 L1| L2| bench: part=compute from=2 to=3 result=1 expected=2 FAILED\n\
                 L1| [L1 cpu0 INFO ] mark: tag=1 tsc=5 l2-exits=0 reflected=0 Cpuid=10 Hlt=1\n\
                 L1| [L1 cpu0 INFO ] mark: tag=2 tsc=9 l2-exits=0 reflected=0 Cpuid=12 Hlt=4\n\
                 L1| [L1 cpu0 INFO ] mark: tag=3 tsc=9 l2-exits=0 reflected=0 Cpuid=14 Hlt=4\n\
                 [L0 cpu0 INFO ] mark: tag=1 tsc=1000 l2-exits=50 reflected=11 Cpuid=20 EptViolation=7\n\
                 [L0 cpu0 INFO ] mark: tag=2 tsc=3000 l2-exits=90 reflected=15 Cpuid=30 EptViolation=9 Vmresume=5\n\
                 [L0 cpu0 INFO ] mark: tag=3 tsc=3500 l2-exits=95 reflected=17 Cpuid=40 EptViolation=9 Vmresume=7\n\
                 [L0 cpu0 INFO ] mark: garbage",
            ),
        )
    }

    #[test]
    fn parses_marks_parts_and_boot() {
        let run = depth2();
        assert_eq!(run.init_ns, Some(500_000_000));
        assert_eq!(run.boot_ticks(), Some(500_000_000));
        assert_eq!(run.parts.len(), 2);
        assert!(run.parts[0].ok && !run.parts[1].ok && !run.passed());
        assert_eq!(run.marks.keys().copied().collect::<Vec<_>>(), vec![0, 1]);
        let compile = &run.parts[0];
        assert_eq!(run.ticks(compile), Some(2000));
        let l0 = run.exits(0, compile).expect("L0's marks");
        assert_eq!(l0.get("Cpuid"), Some(&10));
        assert_eq!(l0.get("EptViolation"), Some(&2));
        assert_eq!(l0.get("Vmresume"), Some(&5));
        assert_eq!(run.exit_total(1, compile), Some(5));
        assert_eq!(run.modelled(compile), Some(2000 + 17 * TRANSITION_CYCLES));
        assert_eq!(level_line("L1| L2| [L2 cpu0 INFO ] mark: x").map(|l| l.0), Some(2));
        assert_eq!(level_line("bochs| [L0 cpu0 INFO ] x"), Some((0, "x")));
        assert_eq!(level_line("L1| [    0.1] linux line"), None);
        assert!(parse_mark("tag=1").is_none());
    }

    fn depth1() -> Run {
        parse_run(
            "depth 1",
            1,
            &lines(
                "L1| bench: boot init-ns=400000000 tsc-hz=1000000000 mark=1\n\
                 L1| bench: part=compile from=1 to=2 result=linked expected=linked ok\n\
                 L1| bench: part=compute from=2 to=3 result=2 expected=2 ok\n\
                 [L0 cpu0 INFO ] mark: tag=1 tsc=100 l2-exits=0 reflected=0 Cpuid=1\n\
                 [L0 cpu0 INFO ] mark: tag=2 tsc=2100 l2-exits=0 reflected=0 Cpuid=2\n\
                 [L0 cpu0 INFO ] mark: tag=3 tsc=2600 l2-exits=0 reflected=0 Cpuid=3",
            ),
        )
    }

    #[test]
    fn table_json_and_svg() {
        let runs = [depth1(), depth2()];
        let t = table(&runs);
        assert!(t.contains("| compile: ticks | 2,000 | 2,000 |"), "{t}");
        assert!(t.contains("| compile: L0 exits | 1 | 17 |"), "{t}");
        assert!(t.contains("| compile: overhead vs depth 1 (ticks) | +0.0% | +0.0% |"), "{t}");
        // 2,000 + 1 x 1,500 = 3,500 against 2,000 + 17 x 1,500 = 27,500.
        assert!(t.contains("| compile: overhead vs depth 1 (model) | +0.0% | +685.7% |"), "{t}");
        assert!(t.contains("| **workload: ticks** | 2,500 | 2,500 |"), "{t}");
        assert!(t.contains("| boot to /init: vs depth 1 | 1.00x | 1.25x |"), "{t}");
        assert!(t.contains("| parts passed their checks | yes | NO |"), "{t}");
        assert!(t.contains("| kernbench | +14.5% | +10.3% |"), "{t}");
        let e = exit_tables(&runs);
        assert!(e.contains("| L1 | Hlt | 3 | 0 |"), "{e}");
        assert!(e.contains("| L0 | EptViolation | 2 | 0 |"), "{e}");
        let json: Json = serde_json::from_str(&to_json(&runs)).expect("valid JSON");
        assert_eq!(json.runs, runs);
        let s = svg(&runs);
        assert!(s.starts_with("<svg") && s.ends_with("</svg>\n"), "{s}");
        assert!(s.contains(">workload</text>") && s.contains(">depth 2</text>"), "{s}");
    }

    #[test]
    fn guest_script_has_the_expected_values() {
        let files = guest_files();
        let script = &files[0].1;
        assert!(!script.contains('@'), "a placeholder is left: {script}");
        assert!(script.contains(PROGRAM_RESULT) && script.contains(FILES_MD5));
        assert_eq!(files.len(), 1 + SOURCES.len());
    }

    fn host(cmd: &str) -> Option<String> {
        let out = Command::new("sh").args(["-c", cmd]).output().ok()?;
        out.status.success().then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
    }

    /// The files part's expected value is `seq 1 40000 | md5sum`; the processes part's is the
    /// same loop in the host's shell.
    #[test]
    fn shell_parts_expected_values() {
        let seq = host("seq 1 40000 | md5sum | cut -d' ' -f1").expect("seq and md5sum");
        assert_eq!(seq, FILES_MD5);
        let script = guest_files()[0].1.clone();
        let start = script.find("i=0\n").expect("the processes loop");
        let end = script[start..].find("done\n").expect("its end") + start + 5;
        let loop_ = &script[start..end];
        let dir = std::env::temp_dir().join(format!("turtles-processes-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let body = loop_.replace("/tmp/processes", &dir.join("p").display().to_string());
        let md5 = host(&format!("{body}md5sum < {}/p | cut -d' ' -f1", dir.display()));
        let _ = std::fs::remove_dir_all(&dir);
        assert_eq!(md5.as_deref(), Some(PROCESSES_MD5));
    }

    /// The program's result, compiled by the host's C compiler from the same sources (skipped
    /// when there is no `cc`).
    #[test]
    fn program_result_matches_the_host_compiler() {
        if host("command -v cc").is_none() {
            eprintln!("no cc on the host: skipped");
            return;
        }
        let dir = std::env::temp_dir().join(format!("turtles-program-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        for (name, text) in SOURCES {
            std::fs::write(dir.join(name), text).expect("write a source");
        }
        let d = dir.display();
        let out = host(&format!(
            "cd {d} && cc -O1 -nostdlib -static -fno-stack-protector -o program *.c && ./program"
        ));
        let _ = std::fs::remove_dir_all(&dir);
        assert_eq!(out, Some(format!("bench-program: result={PROGRAM_RESULT}")));
    }

    /// The README's Linux table is generated from bench/linux.json.
    #[test]
    fn readme_matches_the_committed_figures() {
        let root = crate::workspace_root();
        let Ok(text) = std::fs::read_to_string(root.join(FIGURES)) else { return };
        let json: Json = serde_json::from_str(&text).expect("bench/linux.json parses");
        let readme = std::fs::read_to_string(root.join("README.md")).expect("README");
        assert!(
            readme.contains(&readme_block(&json.runs)),
            "README.md's Linux table differs from {FIGURES}: run `cargo run -- bench linux --readme`"
        );
    }
}

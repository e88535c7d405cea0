//! `cargo run -- fuzz l1 --seed S --programs N`: boots `l0-fuzz-l1` under Bochs, where the
//! fuzzing L1 (`image/src/fuzz/`) attacks L0's emulated VMX, and judges the run: every
//! program's answers architectural (`fuzz: FAIL` lines name the seed, program and step), L0
//! never stopping (no panic, exception or stopped guest in L0's log, its exit status the
//! fuzzer's) and the fuzzer reaching its `fuzz: done` line. Prints how to replay a failure.

use crate::run::{self, Console, RunOptions};
use crate::status;

/// The L0 config that runs the fuzzing L1.
pub const CONFIG: &str = "l0-fuzz-l1";

#[derive(clap::Subcommand)]
pub enum FuzzCmd {
    /// A hostile L1: random VMX instructions, vmcs12s, EPT12 trees and L2s against L0.
    L1(L1Args),
}

#[derive(clap::Args, Clone, Debug)]
pub struct L1Args {
    /// Seed of the run (each program draws from its own stream derived from it).
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Number of programs.
    #[arg(long, default_value_t = 200)]
    pub programs: u64,
    /// Index of the first program (to replay program P alone: --first P --programs 1).
    #[arg(long, default_value_t = 0)]
    pub first: u64,
    /// Log every step of every program (for replays).
    #[arg(long)]
    pub trace: bool,
    /// Seconds before Bochs is killed (default: 300 plus 0.1 s per program).
    #[arg(long)]
    pub timeout: Option<u64>,
}

/// What the fuzz run's console says.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Verdict {
    /// `fuzz: done programs=N failures=F`.
    pub done: Option<(u64, u64)>,
    /// Each `fuzz: FAIL ...` line (after the level prefix).
    pub failures: Vec<String>,
    /// L0 lines that say L0 stopped its guest, panicked or took an exception.
    pub l0_problems: Vec<String>,
    /// The last `fuzz: progress programs=P` (programs done before a crash).
    pub progress: u64,
    /// The fuzzer's summary lines (`fuzz: outcomes`, `fuzz: VMfailValid by error`, ...).
    pub report: Vec<String>,
}

impl Verdict {
    /// Reads the serial console of a run (every line, with the `L1| ` prefixes of guests).
    pub fn of(lines: &[String]) -> Verdict {
        let mut v = Verdict::default();
        for line in lines {
            let guest = line.starts_with("L1|");
            let text = line.find("fuzz: ").map(|at| &line[at..]);
            match text {
                Some(t) if guest && t.starts_with("fuzz: FAIL ") => {
                    v.failures.push(t.to_string());
                }
                Some(t) if guest && t.starts_with("fuzz: done ") => {
                    let n = field(t, "programs=");
                    let f = field(t, "failures=");
                    if let (Some(n), Some(f)) = (n, f) {
                        v.done = Some((n, f));
                    }
                }
                Some(t) if guest && t.starts_with("fuzz: progress ") => {
                    v.progress = field(t, "programs=").unwrap_or(v.progress);
                }
                Some(t) if guest && !t.starts_with("fuzz: seed=") => v.report.push(t.to_string()),
                _ => {}
            }
            if !guest && is_l0_problem(line) {
                v.l0_problems.push(line.clone());
            }
        }
        v
    }

    /// The run passed: all programs done, no failure, L0 never stopped.
    pub fn passed(&self, programs: u64) -> bool {
        self.done == Some((programs, 0)) && self.failures.is_empty() && self.l0_problems.is_empty()
    }
}

/// `key=<number>` in a line.
fn field(line: &str, key: &str) -> Option<u64> {
    line.split_whitespace().find_map(|w| w.strip_prefix(key)?.parse().ok())
}

/// An L0 line that means L0 stopped (its guest, or itself).
fn is_l0_problem(line: &str) -> bool {
    ["PANIC", "EXCEPTION", "guest: stopped", "still running after stopping", "stopped by L0"]
        .iter()
        .any(|needle| line.contains(needle))
}

/// The command that replays `programs` programs of `seed` from `first`, with a trace.
pub fn replay_command(seed: u64, first: u64, programs: u64) -> String {
    format!("cargo run -- fuzz l1 --seed {seed} --first {first} --programs {programs} --trace")
}

/// `cargo run -- fuzz ...`.
pub fn command(cmd: FuzzCmd, verbose: bool) -> Result<i32, String> {
    match cmd {
        FuzzCmd::L1(args) => l1(&args, verbose),
    }
}

fn l1(args: &L1Args, verbose: bool) -> Result<i32, String> {
    let mut options = RunOptions::new(CONFIG);
    options.timeout = args.timeout.unwrap_or(300 + args.programs / 10);
    options.guest_cmdline = format!(
        "turtles.fuzz_seed={} turtles.fuzz_programs={} turtles.fuzz_first={}{}",
        args.seed,
        args.programs,
        args.first,
        if args.trace { " turtles.fuzz_trace=1" } else { "" }
    );
    options.console = if verbose { Console::Stream } else { Console::Quiet };
    let outcome = run::run(&options)?;
    let v = Verdict::of(&outcome.lines);
    println!("fuzz l1: seed={} programs={} first={}", args.seed, args.programs, args.first);
    for line in &v.report {
        println!("  {line}");
    }
    for line in &v.failures {
        println!("  {line}");
        if let Some(p) = field(line, "program=") {
            println!("    replay: {}", replay_command(args.seed, p, 1));
        }
    }
    for line in &v.l0_problems {
        println!("  L0 stopped: {line}");
    }
    match v.done {
        Some((n, f)) => println!("fuzz l1: {n} programs, {f} failed"),
        None => println!(
            "fuzz l1: the fuzzer did not finish (after {} programs; L0 exit status {}); replay: {}",
            v.progress,
            run::describe(outcome.exit_code, &outcome.summary),
            replay_command(
                args.seed,
                args.first + v.progress,
                args.programs - v.progress.min(args.programs)
            )
        ),
    }
    println!("full log: {}", outcome.log.display());
    if v.passed(args.programs) && outcome.exit_code == status::SUCCESS {
        println!("fuzz l1: PASS (L0 alive, every answer architectural)");
        Ok(status::SUCCESS)
    } else {
        println!("fuzz l1: FAIL");
        Ok(status::FAILURE)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lines(text: &str) -> Vec<String> {
        text.lines().map(str::to_string).collect()
    }

    #[test]
    fn a_clean_run_passes() {
        let v = Verdict::of(&lines(
            "[L0 cpu0 INFO ] vmx: exposing VMX to the guest (nested)\n\
             L1| [L1 cpu0 INFO ] fuzz: seed=7 programs=3 first=0 maxphyaddr=39\n\
             L1| [L1 cpu0 INFO ] fuzz: outcomes steps=40 VMsucceed=20\n\
             L1| [L1 cpu0 INFO ] fuzz: done programs=3 failures=0 seed=7\n\
             [L0 cpu0 INFO ] guest: exited with status 0",
        ));
        assert_eq!(v.done, Some((3, 0)));
        assert!(v.passed(3));
        assert!(!v.passed(4), "fewer programs than asked is not a pass");
        assert_eq!(v.report, ["fuzz: outcomes steps=40 VMsucceed=20"]);
    }

    #[test]
    fn failures_and_a_stopped_l1_fail_with_what_to_replay() {
        let v = Verdict::of(&lines(
            "L1| [L1 cpu0 ERROR] fuzz: FAIL seed=7 program=12 step=3 vmclear(Misaligned, 0x1001): got VMsucceed, allowed VMfailValid(2)\n\
             L1| [L1 cpu0 INFO ] fuzz: progress programs=1000 failures=1\n\
             [L0 cpu0 ERROR] guest: stopped by L0: triple fault",
        ));
        assert_eq!(v.failures.len(), 1);
        assert_eq!(field(&v.failures[0], "program="), Some(12));
        assert_eq!(v.progress, 1000);
        assert_eq!(v.l0_problems.len(), 1);
        assert_eq!(v.done, None);
        assert!(!v.passed(1000));
        assert_eq!(
            replay_command(7, 12, 1),
            "cargo run -- fuzz l1 --seed 7 --first 12 --programs 1 --trace"
        );
    }

    #[test]
    fn l1_lines_never_count_as_l0_problems() {
        let v = Verdict::of(&lines("L1| [L1 cpu0 INFO ] self-test: PANIC in the guest's text"));
        assert!(v.l0_problems.is_empty());
    }
}

//! What a run's serial console says, per nesting level: how each level ended, the exits it
//! handled for its guest by reason, the workload's results, warnings and errors. Fed line by
//! line while the run goes (the status line follows it) and rendered as the one-screen
//! summary at the end.
//!
//! The contract is the image's serial format: guest consoles carry one `L<depth>| ` prefix per
//! level they went through, log lines are tagged `[L<depth> cpu<n> <LEVEL>] `, each level
//! prints `guest: exited with status N` or `guest: stopped by L<d>: why` and its
//! `exits: ...` lines when its guest ends, and the last line of an image is
//! `turtles: exit status=N`.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use crate::session::EXIT_MARKER;
use crate::workload::{Part, parse_part};

/// A serial line split into the depth of the level that wrote it and its text.
#[derive(Debug, PartialEq, Eq)]
pub struct Tagged<'a> {
    /// The depth the log tag names, else the number of console prefixes.
    pub depth: u32,
    /// The number of `L<n>| ` console prefixes: how many levels the line went through.
    pub console: u32,
    /// `INFO`, `WARN`, `ERROR`, ... for a log line; `None` for a line written otherwise.
    pub level: Option<&'a str>,
    pub text: &'a str,
}

/// Splits `line` into depth, log level and text.
pub fn tag(line: &str) -> Tagged<'_> {
    let mut rest = line.trim_end();
    let mut console_depth = 0;
    while let Some(after) = strip_console_prefix(rest) {
        rest = after;
        console_depth += 1;
    }
    if let Some((depth, level, text)) = log_tag(rest) {
        return Tagged { depth, console: console_depth, level: Some(level), text };
    }
    Tagged { depth: console_depth, console: console_depth, level: None, text: rest }
}

/// `L<n>| rest` -> `rest`.
fn strip_console_prefix(s: &str) -> Option<&str> {
    let after = s.strip_prefix('L')?;
    let bar = after.find("| ")?;
    after[..bar].bytes().all(|b| b.is_ascii_digit()).then_some(())?;
    (bar > 0).then(|| &after[bar + 2..])
}

/// `[L<d> cpu<n> <LEVEL>] text` -> (d, LEVEL, text).
fn log_tag(s: &str) -> Option<(u32, &str, &str)> {
    let inner = s.strip_prefix("[L")?;
    let (head, text) = inner.split_once("] ")?;
    let mut words = head.split_whitespace();
    let depth = words.next()?.parse().ok()?;
    words.next()?.strip_prefix("cpu")?;
    Some((depth, words.next()?, text))
}

/// What one level said about itself and its guest.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LevelSummary {
    /// The status this level's image printed (`turtles: exit status=N`).
    pub status: Option<i32>,
    /// The status this level's hypervisor saw it exit with (`guest: exited with status N`).
    pub exited: Option<i32>,
    /// Why this level's hypervisor stopped it (`guest: stopped by L<d>: why`).
    pub stopped: Option<String>,
    /// Exits of its guest this level handled (`exits: total=N`).
    pub exits_total: Option<u64>,
    /// The same by reason, as printed.
    pub exits: Vec<(String, u64)>,
    /// `exits: nested: ...` (a level running a nested guest).
    pub nested: Option<String>,
    pub parts: Vec<Part>,
    pub warnings: usize,
    pub errors: usize,
    pub first_error: Option<String>,
    /// The last line this level wrote (the clue to a status that is not one of ours).
    pub last_line: Option<String>,
}

/// The levels of a run, by depth.
#[derive(Clone, Debug, Default)]
pub struct Summary {
    pub levels: BTreeMap<u32, LevelSummary>,
    pub lines: usize,
    /// The depth the log lines behind each number of console prefixes name (an image booted
    /// directly as a leaf runs at depth 1 with no prefix).
    depth_of_console: BTreeMap<u32, u32>,
}

impl Summary {
    /// A summary of `lines`.
    pub fn of(lines: &[String]) -> Summary {
        let mut s = Summary::default();
        for line in lines {
            s.feed(line);
        }
        s
    }

    /// Takes in one more serial line.
    pub fn feed(&mut self, line: &str) {
        self.lines += 1;
        let t = tag(line);
        if t.text.is_empty() {
            return;
        }
        if t.level.is_some() {
            self.depth_of_console.insert(t.console, t.depth);
        }
        if let Some(code) = t.text.strip_prefix(EXIT_MARKER) {
            let depth = self.depth_of_console.get(&t.console).copied().unwrap_or(t.depth);
            self.level(depth).status = code.trim().parse().ok();
            return;
        }
        let below = t.depth + 1;
        let level = self.level(t.depth);
        level.last_line = Some(t.text.to_string());
        match t.level {
            Some("WARN") => level.warnings += 1,
            Some("ERROR") => {
                level.errors += 1;
                level.first_error.get_or_insert_with(|| t.text.to_string());
            }
            _ => {}
        }
        if t.text.starts_with("PANIC") {
            level.first_error.get_or_insert_with(|| t.text.to_string());
        }
        if let Some(part) = parse_part(t.text) {
            level.parts.push(part);
        } else if let Some(rest) = t.text.strip_prefix("exits: ") {
            exits_line(level, rest);
        } else if let Some(code) = t.text.strip_prefix("guest: exited with status ") {
            self.level(below).exited = code.trim().parse().ok();
        } else if let Some(why) = t.text.strip_prefix("guest: stopped by ") {
            let why = why.split_once(": ").map_or(why, |(_, w)| w);
            self.level(below).stopped = Some(why.to_string());
        }
    }

    fn level(&mut self, depth: u32) -> &mut LevelSummary {
        self.levels.entry(depth).or_default()
    }

    /// The deepest level that has written a line.
    pub fn deepest(&self) -> Option<u32> {
        self.levels.iter().rev().find(|(_, l)| l.last_line.is_some()).map(|(d, _)| *d)
    }

    /// One line for the status bar: which level is up, the exits counted so far, the last
    /// workload part.
    pub fn progress(&self) -> String {
        let Some(deepest) = self.deepest() else {
            return "booting: no serial output yet".to_string();
        };
        let mut s = format!("L{deepest} up");
        for (depth, l) in &self.levels {
            if let Some(total) = l.exits_total {
                let _ = write!(s, " | L{depth}: {total} exits of L{}", depth + 1);
            }
        }
        if let Some(part) = self.levels.values().flat_map(|l| l.parts.last()).next_back() {
            let _ = write!(s, " | workload {} done", part.name);
        }
        s
    }

    /// The one-screen summary: per level its status, exits by reason and workload results.
    pub fn render(&self) -> String {
        let mut out = String::new();
        for (depth, l) in &self.levels {
            let mut rows = Vec::new();
            if let Some(why) = &l.stopped {
                rows.push(format!("why: {}", clip(why, 90)));
            }
            if let Some(total) = l.exits_total {
                rows.push(format!("{total} exits of L{} handled", depth + 1));
                for chunk in reasons(&l.exits).chunks(4) {
                    rows.push(format!("  {}", chunk.join(", ")));
                }
            }
            if let Some(nested) = &l.nested {
                rows.push(nested.clone());
            }
            for p in &l.parts {
                rows.push(part_row(p));
            }
            if l.warnings + l.errors > 0 {
                rows.push(format!("{} warning(s), {} error(s)", l.warnings, l.errors));
            }
            if let Some(e) = &l.first_error {
                rows.push(format!("first error: {}", clip(e, 90)));
            }
            if rows.is_empty() {
                rows.push(format!(
                    "last line: {}",
                    clip(l.last_line.as_deref().unwrap_or("-"), 90)
                ));
            }
            for (i, row) in rows.iter().enumerate() {
                let (name, state) =
                    if i == 0 { (format!("L{depth}"), level_state(l)) } else { <_>::default() };
                let _ = writeln!(out, "{name:<3} {state:<30} {row}");
            }
        }
        out
    }
}

/// `exits: ...` after the prefix: a total, a reason count or the nested line.
fn exits_line(level: &mut LevelSummary, rest: &str) {
    if let Some(nested) = rest.strip_prefix("nested: ") {
        level.nested = Some(nested.to_string());
    } else if let Some(total) = rest.strip_prefix("total=") {
        let number = total.split_whitespace().next().unwrap_or("");
        level.exits_total = number.parse().ok();
    } else if let Some((reason, Ok(count))) =
        rest.split_once('=').map(|(r, c)| (r, c.trim().parse::<u64>()))
    {
        level.exits.push((reason.to_string(), count));
    }
}

/// How a level ended, in a few words.
fn level_state(l: &LevelSummary) -> String {
    if l.stopped.is_some() {
        return "stopped by its hypervisor".to_string();
    }
    match (l.status, l.exited) {
        (Some(code), _) => format!("exit status {code}{}", meaning_suffix(code)),
        (None, Some(code)) => format!("exited with {code}{}", meaning_suffix(code)),
        (None, None) => "no exit status".to_string(),
    }
}

fn meaning_suffix(code: i32) -> String {
    crate::status::name(code).map_or(String::new(), |m| format!(" ({m})"))
}

/// The most frequent reasons first, at most [`REASONS`], then how many more.
fn reasons(exits: &[(String, u64)]) -> Vec<String> {
    let mut sorted: Vec<&(String, u64)> = exits.iter().collect();
    sorted.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
    let mut s: Vec<String> = sorted.iter().take(REASONS).map(|(r, n)| format!("{r} {n}")).collect();
    if sorted.len() > REASONS {
        s.push(format!("+{} more in the log", sorted.len() - REASONS));
    }
    s
}

/// How many exit reasons the summary names per level.
const REASONS: usize = 7;

fn part_row(p: &Part) -> String {
    let mut s =
        format!("workload {:<8} {:>10.0} ticks/round x{}", p.name, p.ticks_per_round(), p.rounds);
    if let Some(e) = p.exits_per_round() {
        let _ = write!(s, ", {e:.2} exits");
    }
    if let Some(e) = p.l0_exits_per_round() {
        let _ = write!(s, ", {e:.2} L0 exits");
    }
    if !p.result.is_empty() {
        let _ = write!(s, ", result {}", p.result);
    }
    s
}

fn clip(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        return s.to_string();
    }
    let cut: String = s.chars().take(max.saturating_sub(3)).collect();
    format!("{cut}...")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lines(text: &str) -> Vec<String> {
        text.lines().map(str::to_string).collect()
    }

    #[test]
    fn tags_console_prefixes_and_log_tags() {
        assert_eq!(
            tag("L1| L2| [L2 cpu0 INFO ] workload: cpuid rounds=1"),
            Tagged { depth: 2, console: 2, level: Some("INFO"), text: "workload: cpuid rounds=1" }
        );
        assert_eq!(
            tag("[L0 cpu0 ERROR] guest: stopped by L0: triple fault"),
            Tagged {
                depth: 0,
                console: 0,
                level: Some("ERROR"),
                text: "guest: stopped by L0: triple fault"
            }
        );
        assert_eq!(
            tag("L1| vmx32: VMXON ok"),
            Tagged { depth: 1, console: 1, level: None, text: "vmx32: VMXON ok" }
        );
        assert_eq!(
            tag("L1| L2| turtles: exit status=0"),
            Tagged { depth: 2, console: 2, level: None, text: "turtles: exit status=0" }
        );
        // Not a prefix: no digits, or a bracket that is not a log tag.
        assert_eq!(tag("Lx| y").depth, 0);
        assert_eq!(tag("[L? cpu0 INFO ] z").text, "[L? cpu0 INFO ] z");
        assert_eq!(tag("").text, "");
    }

    const DEPTH2: &str = "\
[L0 cpu0 INFO ] vmx: exposing VMX to the guest (nested)
L1| [L1 cpu0 INFO ] guest: booting
L1| L2| [L2 cpu0 INFO ] workload: cpuid rounds=1000 ticks=3269219 per-round=3269 exits=1000 l0-exits=2000 result=0x1
L1| L2| [L2 cpu0 WARN ] something odd
L1| L2| [L2 cpu0 INFO ] workload: compute rounds=10 ticks=100 per-round=10 result=0x6ff1
L1| L2| turtles: exit status=0
L1| [L1 cpu0 INFO ] guest: exited with status 0
L1| [L1 cpu0 INFO ] exits: total=1069 (guest console: 900 bytes)
L1| [L1 cpu0 INFO ] exits: Cpuid=1069
L1| turtles: exit status=0
[L0 cpu0 INFO ] guest: exited with status 0
[L0 cpu0 INFO ] exits: total=9863 (guest console: 2000 bytes)
[L0 cpu0 INFO ] exits: Cpuid=2000
[L0 cpu0 INFO ] exits: Vmresume=1000
[L0 cpu0 INFO ] exits: Vmread=10
[L0 cpu0 INFO ] exits: Vmwrite=10
[L0 cpu0 INFO ] exits: EptViolation=4096
[L0 cpu0 INFO ] exits: IoInstruction=1000
[L0 cpu0 INFO ] exits: Hlt=1000
[L0 cpu0 INFO ] exits: nested: L2 caused 9863 exits, 5715 reflected to L1, 4148 handled by L0 alone
turtles: exit status=0";

    #[test]
    fn summarizes_each_level_of_a_nested_run() {
        let s = Summary::of(&lines(DEPTH2));
        assert_eq!(s.deepest(), Some(2));
        let l0 = &s.levels[&0];
        assert_eq!((l0.status, l0.exits_total, l0.exits.len()), (Some(0), Some(9863), 7));
        assert!(l0.nested.as_deref().is_some_and(|n| n.starts_with("L2 caused 9863")));
        let l1 = &s.levels[&1];
        assert_eq!((l1.status, l1.exited, l1.exits_total), (Some(0), Some(0), Some(1069)));
        let l2 = &s.levels[&2];
        assert_eq!((l2.status, l2.exited, l2.parts.len(), l2.warnings), (Some(0), Some(0), 2, 1));

        let r = s.render();
        assert!(r.lines().count() <= 24, "one screen:\n{r}");
        assert!(r.lines().all(|l| l.len() <= 120), "one screen wide:\n{r}");
        let expected = "\
L0  exit status 0 (success)        9863 exits of L1 handled
                                     EptViolation 4096, Cpuid 2000, Hlt 1000, IoInstruction 1000
                                     Vmresume 1000, Vmread 10, Vmwrite 10
                                   L2 caused 9863 exits, 5715 reflected to L1, 4148 handled by L0 alone
L1  exit status 0 (success)        1069 exits of L2 handled
                                     Cpuid 1069
L2  exit status 0 (success)        workload cpuid          3269 ticks/round x1000, 1.00 exits, 2.00 L0 exits, result 0x1
                                   workload compute          10 ticks/round x10, result 0x6ff1
                                   1 warning(s), 0 error(s)
";
        assert_eq!(r, expected);
    }

    #[test]
    fn progress_follows_the_log() {
        let mut s = Summary::default();
        assert_eq!(s.progress(), "booting: no serial output yet");
        let all = lines(DEPTH2);
        for line in &all[..3] {
            s.feed(line);
        }
        assert_eq!(s.progress(), "L2 up | workload cpuid done");
        for line in &all[3..12] {
            s.feed(line);
        }
        assert_eq!(
            s.progress(),
            "L2 up | L0: 9863 exits of L1 | L1: 1069 exits of L2 | workload compute done"
        );
    }

    #[test]
    fn a_stopped_guest_and_a_foreign_status_are_reported() {
        let s = Summary::of(&lines(
            "L1| vmx32: L2 halted: done\n\
             [L0 cpu0 INFO ] guest: exited with status 16\n\
             [L0 cpu0 INFO ] exits: total=3 (guest console: 9 bytes)\n\
             turtles: exit status=16",
        ));
        let r = s.render();
        assert!(r.contains("L0  exit status 16                 3 exits of L1 handled"), "{r}");
        assert!(
            r.contains("L1  exited with 16                 last line: vmx32: L2 halted: done"),
            "{r}"
        );

        let s = Summary::of(&lines(
            "L1| [L1 cpu0 INFO ] booting\n\
             [L0 cpu0 ERROR] guest: stopped by L0: triple fault (shutdown) at rip=0x1234\n\
             turtles: exit status=4",
        ));
        assert_eq!(s.levels[&1].stopped.as_deref(), Some("triple fault (shutdown) at rip=0x1234"));
        let r = s.render();
        assert!(
            r.contains(
                "L1  stopped by its hypervisor      why: triple fault (shutdown) at rip=0x1234"
            ),
            "{r}"
        );
        assert!(r.contains("L0  exit status 4 (guest stopped)  0 warning(s), 1 error(s)"), "{r}");
        assert!(r.contains("first error: guest: stopped by L0: triple fault"), "{r}");
    }

    #[test]
    fn a_leaf_booted_directly_runs_at_depth_1() {
        let s = Summary::of(&lines(
            "[L1 cpu0 INFO ] turtles 0.1.0 config=leaf role=leaf depth=1\n\
             [L1 cpu0 INFO ] workload: cpuid rounds=10 ticks=90 per-round=9 result=0x1\n\
             turtles: exit status=0",
        ));
        assert_eq!(s.levels.keys().copied().collect::<Vec<_>>(), [1]);
        assert_eq!(s.levels[&1].status, Some(0));
    }

    #[test]
    fn garbage_never_panics() {
        let mut s = Summary::default();
        for line in [
            "L",
            "L|",
            "L1|",
            "[L",
            "[L1 cpu",
            "[L1 cpu0 INFO ]",
            "exits: =",
            "exits: total=x",
            "turtles: exit status=",
            "guest: stopped by ",
            "workload: ",
            "\u{fffd}L9| [L9 cpu9 X] y",
        ] {
            s.feed(line);
        }
        let _ = s.render();
        let _ = s.progress();
    }
}

//! Helpers shared by the integration tests: run the runner binary and check its output.

#![allow(dead_code)] // each test file uses a different subset

use std::path::PathBuf;
use std::process::Command;

pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Run {
    /// Asserts the exit status and that every needle occurs in stdout or stderr.
    pub fn expect(&self, code: i32, needles: &[&str]) -> &Self {
        let all = self.all();
        assert_eq!(self.code, code, "exit status; output:\n{all}");
        for needle in needles {
            assert!(all.contains(needle), "`{needle}` missing from output:\n{all}");
        }
        self
    }

    /// Asserts that no needle occurs.
    pub fn expect_absent(&self, needles: &[&str]) -> &Self {
        let all = self.all();
        for needle in needles {
            assert!(!all.contains(needle), "`{needle}` unexpectedly in output:\n{all}");
        }
        self
    }

    pub fn all(&self) -> String {
        format!("{}\n{}", self.stdout, self.stderr)
    }

    /// The lines containing `needle`.
    pub fn lines_with(&self, needle: &str) -> Vec<String> {
        self.stdout.lines().filter(|l| l.contains(needle)).map(str::to_string).collect()
    }
}

/// Runs `cargo run -- <args>` (the runner binary built for the tests); a `run` streams the
/// serial console (`--verbose`), which the tests search.
pub fn turtles(args: &[&str]) -> Run {
    let mut args = args.to_vec();
    if args.first() == Some(&"run") {
        args.push("--verbose");
    }
    turtles_as_is(&args)
}

/// Runs the runner with exactly `args` (a `run` prints its summary, not the console).
pub fn turtles_as_is(args: &[&str]) -> Run {
    let out = Command::new(env!("CARGO_BIN_EXE_turtles"))
        .args(args)
        .output()
        .expect("the runner binary starts");
    Run {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// Assembles and links `tests/kernels/<name>.S` as a 32-bit ELF with binutils and returns it.
pub fn build_test_kernel(name: &str) -> PathBuf {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let out = root.join("target/test-kernels");
    std::fs::create_dir_all(&out).expect("create target/test-kernels");
    let object = out.join(format!("{name}.o"));
    let elf = out.join(format!("{name}.elf"));
    let source = root.join(format!("tests/kernels/{name}.S"));
    let status = Command::new("as").arg("--32").arg("-o").arg(&object).arg(&source).status();
    assert!(status.is_ok_and(|s| s.success()), "as --32 {} failed", source.display());
    let status = Command::new("ld")
        .args(["-m", "elf_i386", "-Ttext", "0x100000", "-e", "_start", "-o"])
        .arg(&elf)
        .arg(&object)
        .status();
    assert!(status.is_ok_and(|s| s.success()), "ld -m elf_i386 failed");
    elf
}

//! The launcher's command line:
//!
//! ```text
//! turtles-launcher [--mem MIB] [--cmdline TEXT] [--prefix TEXT] IMAGE [MODULE[=CMDLINE]]...
//! ```
//!
//! `IMAGE` is a multiboot2, multiboot1 or PVH kernel (a turtles image of any role); each
//! `MODULE` is a boot module in that order, with its command line after `=` (default: the
//! file's name, as turtles names its guests' images by their first word). Guest lines are
//! printed with `--prefix` (default `L1| `, what a turtles L0 prints before its guest's lines).

use std::fmt;
use std::path::PathBuf;

/// Guest memory when `--mem` is not given: what `l0-l1-leaf` gives its L1.
pub const DEFAULT_MEM_MIB: u64 = 160;
/// Guest RAM is one piece from 0 below the PCI hole (the loader's memory map).
pub const MAX_MEM_MIB: u64 = 3 * 1024;
/// Below this the kernel, its modules and the boot information do not fit.
pub const MIN_MEM_MIB: u64 = 2;

/// One boot module.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ModuleArg {
    pub file: PathBuf,
    pub cmdline: String,
}

/// What to launch.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Args {
    pub image: PathBuf,
    pub modules: Vec<ModuleArg>,
    pub cmdline: String,
    pub mem_mib: u64,
    pub prefix: String,
}

/// A command line the launcher cannot use.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ArgsError {
    /// `-h` or `--help`: not an error, the usage is printed.
    Help,
    /// No image named.
    NoImage,
    /// An option without its value.
    MissingValue(&'static str),
    /// `--mem` out of range or not a number.
    BadMem(String),
    /// An option we do not know.
    UnknownOption(String),
}

impl fmt::Display for ArgsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ArgsError::Help => f.write_str(USAGE),
            ArgsError::NoImage => write!(f, "no kernel image given\n{USAGE}"),
            ArgsError::MissingValue(opt) => write!(f, "{opt} needs a value\n{USAGE}"),
            ArgsError::BadMem(v) => {
                write!(f, "--mem {v}: allowed {MIN_MEM_MIB} to {MAX_MEM_MIB} (MiB of guest memory)")
            }
            ArgsError::UnknownOption(o) => write!(f, "unknown option {o}\n{USAGE}"),
        }
    }
}

pub const USAGE: &str = "usage: turtles-launcher [--mem MIB] [--cmdline TEXT] [--prefix TEXT] \
IMAGE [MODULE[=CMDLINE]]...
  boots IMAGE (multiboot2, multiboot1 or PVH) on /dev/kvm with the boot modules in order;
  exits with the status the guest writes to port 0xf4 (2: launcher error, 4: guest reset)";

/// Parses the arguments after the program name.
pub fn parse(args: impl IntoIterator<Item = String>) -> Result<Args, ArgsError> {
    let mut args = args.into_iter();
    let mut files = Vec::new();
    let mut cmdline = String::new();
    let mut mem_mib = DEFAULT_MEM_MIB;
    let mut prefix = "L1| ".to_string();
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "-h" | "--help" => return Err(ArgsError::Help),
            "--mem" => {
                let v = args.next().ok_or(ArgsError::MissingValue("--mem"))?;
                mem_mib = v
                    .parse()
                    .ok()
                    .filter(|m| (MIN_MEM_MIB..=MAX_MEM_MIB).contains(m))
                    .ok_or(ArgsError::BadMem(v))?;
            }
            "--cmdline" => cmdline = args.next().ok_or(ArgsError::MissingValue("--cmdline"))?,
            "--prefix" => prefix = args.next().ok_or(ArgsError::MissingValue("--prefix"))?,
            "--" => files.extend(args.by_ref()),
            o if o.starts_with('-') && o.len() > 1 => {
                return Err(ArgsError::UnknownOption(o.to_string()));
            }
            _ => files.push(arg),
        }
    }
    let mut files = files.into_iter();
    let image = PathBuf::from(files.next().ok_or(ArgsError::NoImage)?);
    let modules = files
        .map(|m| match m.split_once('=') {
            Some((file, line)) => ModuleArg { file: file.into(), cmdline: line.to_string() },
            None => {
                let name = m.rsplit('/').next().unwrap_or(&m).to_string();
                ModuleArg { file: m.into(), cmdline: name }
            }
        })
        .collect();
    Ok(Args { image, modules, cmdline, mem_mib, prefix })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> Result<Args, ArgsError> {
        parse(s.split_whitespace().map(str::to_string))
    }

    #[test]
    fn image_modules_and_options() {
        let a = p("--mem 64 --cmdline x=1 /i/l1 /i/leaf=leaf extra /x/y=a=b").unwrap();
        assert_eq!(a.image, PathBuf::from("/i/l1"));
        assert_eq!(a.mem_mib, 64);
        assert_eq!(a.cmdline, "x=1");
        assert_eq!(a.prefix, "L1| ");
        let m: Vec<(&str, &str)> =
            a.modules.iter().map(|m| (m.file.to_str().unwrap(), m.cmdline.as_str())).collect();
        assert_eq!(m, [("/i/leaf", "leaf"), ("extra", "extra"), ("/x/y", "a=b")]);
        // A module without `=` is named by its file name.
        assert_eq!(p("k /a/b/leaf").unwrap().modules[0].cmdline, "leaf");
        assert_eq!(p("k").unwrap().mem_mib, DEFAULT_MEM_MIB);
    }

    #[test]
    fn bad_command_lines() {
        assert_eq!(p(""), Err(ArgsError::NoImage));
        assert_eq!(p("--mem"), Err(ArgsError::MissingValue("--mem")));
        assert_eq!(p("--mem 1 k"), Err(ArgsError::BadMem("1".into())));
        assert_eq!(p("--mem 4096 k"), Err(ArgsError::BadMem("4096".into())));
        assert_eq!(p("--mem lots k"), Err(ArgsError::BadMem("lots".into())));
        assert_eq!(p("--fast k"), Err(ArgsError::UnknownOption("--fast".into())));
        assert_eq!(p("-h"), Err(ArgsError::Help));
        assert!(ArgsError::NoImage.to_string().contains("usage:"));
        // After `--` everything is a file.
        assert_eq!(p("-- --odd").unwrap().image, PathBuf::from("--odd"));
    }
}

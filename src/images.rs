//! Building the image for a config: `cargo build -p turtles-image` for `x86_64-unknown-none`
//! with `TURTLES_CONFIG` set.
//!
//! All configs share one target directory (`target/image/build`), so the dependencies are
//! built once: `image/build.rs` reruns when `TURTLES_CONFIG` changes, and only the image
//! crate itself recompiles between configs. Each result is copied to
//! `target/image/<config>/turtles-image` with the fingerprint of its inputs
//! ([`crate::fingerprint`]); a later build of an unchanged config skips cargo. Builds are
//! serialized across processes (tests run in parallel) by a lock on `target/image/build.lock`.

use std::fs;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use turtles_config::{Config, ConfigSet};

use crate::{fingerprint, workspace_root};

/// All configs of the workspace.
pub fn configs() -> Result<ConfigSet, String> {
    ConfigSet::load(&workspace_root().join("configs")).map_err(|e| e.to_string())
}

/// A built image and the config it was built for.
pub struct Built {
    pub name: String,
    pub path: PathBuf,
}

/// What a build reports while it goes.
#[derive(Debug)]
pub enum BuildEvent<'a> {
    /// Another process holds the build lock.
    Waiting,
    /// Image `index` (from 1) of `count` starts: `name`'s.
    Start { name: &'a str, index: usize, count: usize },
    /// A line cargo wrote (`Compiling crate v1.2.3`, warnings, errors).
    Cargo(&'a str),
    /// The image is ready; `fresh`: its inputs were unchanged, cargo was not run.
    Done { name: &'a str, fresh: bool, took: Duration },
}

/// Where the image of config `name` is copied after a build.
pub fn image_path(name: &str) -> PathBuf {
    workspace_root().join("target/image").join(name).join("turtles-image")
}

/// The image of `config` and those of its guests, outermost first: what
/// [`build_chain_names`] lists, built by [`build_all`].
pub fn build(set: &ConfigSet, config: &Config) -> Result<(PathBuf, Vec<Built>), String> {
    let names = build_chain_names(set, config)?;
    let paths = build_all(&names, &mut |_| {})?;
    split_chain(names, paths)
}

/// The configs whose images `config` needs, innermost guest first and `config` last.
pub fn build_chain_names(set: &ConfigSet, config: &Config) -> Result<Vec<String>, String> {
    Ok(set.build_order(&config.name)?.iter().map(|c| c.name.clone()).collect())
}

/// Splits the images of [`build_chain_names`] into the image of the config (the last) and the
/// guests' images outermost first: the boot modules to hand it (each level passes the rest
/// on to its guest).
pub fn split_chain(
    names: Vec<String>,
    paths: Vec<PathBuf>,
) -> Result<(PathBuf, Vec<Built>), String> {
    let mut chain: Vec<Built> =
        names.into_iter().zip(paths).map(|(name, path)| Built { name, path }).collect();
    let top = chain.pop().ok_or("empty build order")?;
    chain.reverse();
    Ok((top.path, chain))
}

/// Builds the images of `names` (in that order, duplicates once) and returns their paths.
pub fn build_all(
    names: &[String],
    events: &mut dyn FnMut(BuildEvent<'_>),
) -> Result<Vec<PathBuf>, String> {
    let root = workspace_root();
    let images = root.join("target/image");
    fs::create_dir_all(&images).map_err(|e| format!("{}: {e}", images.display()))?;
    let lock_path = images.join("build.lock");
    let lock = fs::File::create(&lock_path).map_err(|e| format!("{}: {e}", lock_path.display()))?;
    if lock.try_lock().is_err() {
        events(BuildEvent::Waiting);
        lock.lock().map_err(|e| format!("{}: {e}", lock_path.display()))?;
    }
    // Inputs are hashed under the lock: a build in another process cannot interleave.
    let inputs = fingerprint::inputs(&root)?;
    let mut unique: Vec<&String> = Vec::new();
    for name in names {
        if !unique.contains(&name) {
            unique.push(name);
        }
    }
    for (i, name) in unique.iter().enumerate() {
        events(BuildEvent::Start { name, index: i + 1, count: unique.len() });
        let start = Instant::now();
        let fresh = build_one(&root, name, &fingerprint::for_config(inputs, name), events)?;
        events(BuildEvent::Done { name, fresh, took: start.elapsed() });
    }
    drop(lock); // unlocks
    Ok(names.iter().map(|n| image_path(n)).collect())
}

/// Builds `name`'s image unless its copy matches `print`; returns whether it was fresh.
fn build_one(
    root: &Path,
    name: &str,
    print: &str,
    events: &mut dyn FnMut(BuildEvent<'_>),
) -> Result<bool, String> {
    let out = image_path(name);
    let dir = out.parent().ok_or("image path has no directory")?;
    let stamp = dir.join("inputs.fingerprint");
    if out.is_file() && fs::read_to_string(&stamp).is_ok_and(|s| s.trim() == print) {
        return Ok(true);
    }
    let target_dir = root.join("target/image/build");
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_string());
    let mut child = Command::new(&cargo)
        .current_dir(root)
        .env("TURTLES_CONFIG", name)
        .env("CARGO_TERM_PROGRESS_WHEN", "never")
        .args(["build", "--release", "-p", "turtles-image", "--color", "never"])
        .args(["--target", "x86_64-unknown-none", "--target-dir"])
        .arg(&target_dir)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("cannot run {cargo}: {e}"))?;
    let mut said = Vec::new();
    if let Some(stderr) = child.stderr.take() {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            events(BuildEvent::Cargo(&line));
            said.push(line);
        }
    }
    let status = child.wait().map_err(|e| format!("{cargo}: {e}"))?;
    if !status.success() {
        return Err(format!(
            "building the image for config `{name}` failed ({status}):\n{}",
            said.join("\n")
        ));
    }
    let built = target_dir.join("x86_64-unknown-none/release/turtles-image");
    if !built.is_file() {
        return Err(format!("the build said it succeeded but {} is missing", built.display()));
    }
    fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    // Before the shared target dir each config had a whole target dir here: free that space.
    for old in ["x86_64-unknown-none", "release"] {
        let _ = fs::remove_dir_all(dir.join(old));
    }
    // The stamp goes first and comes back last: an interrupted copy is never taken as fresh.
    let _ = fs::remove_file(&stamp);
    // Copy, then rename: a reader never sees half an image.
    let partial = dir.join("turtles-image.partial");
    fs::copy(&built, &partial).map_err(|e| format!("{}: {e}", partial.display()))?;
    fs::rename(&partial, &out).map_err(|e| format!("{}: {e}", out.display()))?;
    fs::write(&stamp, print).map_err(|e| format!("{}: {e}", stamp.display()))?;
    Ok(false)
}

/// Writes a copy of `image` whose multiboot1 header magic is cleared, so QEMU `-kernel` boots
/// it through the PVH note instead (QEMU prefers multiboot when it finds the header).
pub fn without_multiboot1(image: &Path, out: &Path) -> Result<(), String> {
    let mut bytes = fs::read(image).map_err(|e| format!("{}: {e}", image.display()))?;
    const MAGIC: u32 = 0x1bad_b002;
    let limit = bytes.len().min(8192);
    let at = (0..limit.saturating_sub(12)).step_by(4).find(|&i| {
        let word = |k: usize| u32::from_le_bytes(bytes[i + k..i + k + 4].try_into().unwrap());
        word(0) == MAGIC && word(0).wrapping_add(word(4)).wrapping_add(word(8)) == 0
    });
    let Some(at) = at else {
        return Err(format!("{}: no multiboot1 header in the first 8 KiB", image.display()));
    };
    bytes[at..at + 4].fill(0);
    fs::write(out, bytes).map_err(|e| format!("{}: {e}", out.display()))
}

//! Building the image for a config: `cargo build -p turtles-image` for `x86_64-unknown-none`
//! with `TURTLES_CONFIG` set, one target directory per config so runs of different configs
//! (and parallel tests) never overwrite each other's image.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use turtles_config::{Config, ConfigSet};

use crate::workspace_root;

/// All configs of the workspace.
pub fn configs() -> Result<ConfigSet, String> {
    ConfigSet::load(&workspace_root().join("configs")).map_err(|e| e.to_string())
}

/// A built image and the config it was built for.
pub struct Built {
    pub name: String,
    pub path: PathBuf,
}

/// Builds the image of `config` and those of its guests. Returns the image of `config` and
/// the guests' images outermost first: the boot modules to hand it (each level passes the
/// rest on to its guest).
pub fn build(set: &ConfigSet, config: &Config) -> Result<(PathBuf, Vec<Built>), String> {
    let mut chain = Vec::new();
    for level in set.build_order(&config.name)? {
        chain.push(Built { name: level.name.clone(), path: build_one(&level.name)? });
    }
    let top = chain.pop().ok_or("empty build order")?;
    chain.reverse();
    Ok((top.path, chain))
}

fn build_one(name: &str) -> Result<PathBuf, String> {
    let root = workspace_root();
    let target_dir = root.join("target/image").join(name);
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_string());
    let status = Command::new(&cargo)
        .current_dir(&root)
        .env("TURTLES_CONFIG", name)
        .args(["build", "--quiet", "--release", "-p", "turtles-image"])
        .args(["--target", "x86_64-unknown-none", "--target-dir"])
        .arg(&target_dir)
        .status()
        .map_err(|e| format!("cannot run {cargo}: {e}"))?;
    if !status.success() {
        return Err(format!("building the image for config `{name}` failed ({status})"));
    }
    let image = target_dir.join("x86_64-unknown-none/release/turtles-image");
    if !image.is_file() {
        return Err(format!("the build said it succeeded but {} is missing", image.display()));
    }
    Ok(image)
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

//! A fingerprint of the image's inputs, so a second build of an unchanged config skips cargo:
//! a hash of the path and contents of every file of the workspace except what only the host
//! runner uses (its sources, tests, baselines, docs) and build output.
//!
//! Over-inclusion is safe (a needless cargo call, which then finds nothing to do except for
//! the image crate itself when another config was built last); a crate added to the
//! workspace is covered without being named here. Registry dependencies are pinned by
//! `Cargo.lock`, which is hashed.

use std::fs;
use std::hash::{DefaultHasher, Hasher};
use std::path::Path;

/// Top-level entries of the workspace that no image depends on.
const RUNNER_ONLY: [&str; 7] = ["target", ".git", "src", "tests", "bench", ".ci", "build.rs"];

/// Environment variables that change what cargo builds.
const BUILD_ENV: [&str; 3] =
    ["RUSTFLAGS", "CARGO_ENCODED_RUSTFLAGS", "CARGO_PROFILE_RELEASE_DEBUG"];

/// The fingerprint of the workspace's image inputs at `root` (config-independent part).
pub fn inputs(root: &Path) -> Result<u64, String> {
    let mut files = Vec::new();
    let entries = fs::read_dir(root).map_err(|e| format!("{}: {e}", root.display()))?;
    for entry in entries.flatten() {
        let name = entry.file_name();
        let name = name.to_string_lossy();
        if RUNNER_ONLY.contains(&name.as_ref()) {
            continue;
        }
        collect(&entry.path(), &mut files)?;
    }
    files.sort();
    let mut hasher = DefaultHasher::new();
    for path in &files {
        let bytes = fs::read(path).map_err(|e| format!("{}: {e}", path.display()))?;
        let relative = path.strip_prefix(root).unwrap_or(path);
        hasher.write(relative.to_string_lossy().as_bytes());
        hasher.write_u8(0);
        hasher.write_usize(bytes.len());
        hasher.write(&bytes);
    }
    for var in BUILD_ENV {
        hasher.write(var.as_bytes());
        hasher.write(std::env::var(var).unwrap_or_default().as_bytes());
        hasher.write_u8(0);
    }
    Ok(hasher.finish())
}

/// The fingerprint of one config's image: the inputs and the config's name.
pub fn for_config(inputs: u64, config: &str) -> String {
    let mut hasher = DefaultHasher::new();
    hasher.write_u64(inputs);
    hasher.write(config.as_bytes());
    format!("{:016x}", hasher.finish())
}

/// Files under `path` (or `path` itself), skipping build output, hidden entries and docs.
fn collect(path: &Path, files: &mut Vec<std::path::PathBuf>) -> Result<(), String> {
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    if name.starts_with('.') || name == "target" || name.ends_with(".md") {
        return Ok(());
    }
    let meta = fs::symlink_metadata(path).map_err(|e| format!("{}: {e}", path.display()))?;
    if meta.is_dir() {
        let entries = fs::read_dir(path).map_err(|e| format!("{}: {e}", path.display()))?;
        for entry in entries.flatten() {
            collect(&entry.path(), files)?;
        }
    } else if meta.is_file() {
        files.push(path.to_path_buf());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scratch(name: &str) -> std::path::PathBuf {
        let dir =
            std::env::temp_dir().join(format!("turtles-fingerprint-{name}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(dir.join("image/src")).expect("scratch dir");
        fs::create_dir_all(dir.join("src")).expect("scratch dir");
        fs::create_dir_all(dir.join("target/x")).expect("scratch dir");
        fs::write(dir.join("image/src/main.rs"), "fn main() {}").expect("write");
        fs::write(dir.join("Cargo.lock"), "lock").expect("write");
        dir
    }

    #[test]
    fn image_sources_change_it_runner_files_do_not() {
        let dir = scratch("change");
        let first = inputs(&dir).expect("hash");
        assert_eq!(inputs(&dir).expect("hash"), first, "stable");
        fs::write(dir.join("src/main.rs"), "runner").expect("write");
        fs::write(dir.join("target/x/out"), "build output").expect("write");
        fs::write(dir.join("README.md"), "docs").expect("write");
        assert_eq!(inputs(&dir).expect("hash"), first, "runner-only files are ignored");
        fs::write(dir.join("image/src/main.rs"), "fn main() { loop {} }").expect("write");
        let second = inputs(&dir).expect("hash");
        assert_ne!(second, first, "an image source changed");
        fs::write(dir.join("Cargo.lock"), "lock 2").expect("write");
        let third = inputs(&dir).expect("hash");
        assert_ne!(third, second, "Cargo.lock changed");
        fs::create_dir_all(dir.join("newcrate/src")).expect("mkdir");
        fs::write(dir.join("newcrate/src/lib.rs"), "").expect("write");
        assert_ne!(inputs(&dir).expect("hash"), third, "a crate added to the workspace counts");
        let _ = fs::remove_dir_all(&dir);
    }

    #[test]
    fn each_config_has_its_own() {
        assert_ne!(for_config(1, "l0"), for_config(1, "l1"));
        assert_ne!(for_config(1, "l0"), for_config(2, "l0"));
        assert_eq!(for_config(7, "leaf"), for_config(7, "leaf"));
    }
}

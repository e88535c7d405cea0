//! Turns the config named by `TURTLES_CONFIG` (default `l0`) into Rust constants and passes
//! the linker script. A bad or unknown config stops the build with a message naming the file,
//! the key and what is allowed.

use std::path::PathBuf;
use std::{env, fs, process};

fn main() {
    let manifest = PathBuf::from(env::var("CARGO_MANIFEST_DIR").expect("set by cargo"));
    let configs = manifest.join("../configs");
    println!("cargo:rerun-if-env-changed=TURTLES_CONFIG");
    println!("cargo:rerun-if-changed={}", configs.display());
    println!("cargo:rerun-if-changed={}", manifest.join("linker.ld").display());
    println!("cargo:rustc-link-arg-bins=-T{}", manifest.join("linker.ld").display());

    let name = env::var("TURTLES_CONFIG").unwrap_or_else(|_| "l0".to_string());
    let set = turtles_config::ConfigSet::load(&configs).unwrap_or_else(|e| fail(&e.to_string()));
    let config = set.get(&name).unwrap_or_else(|e| fail(&e));
    let out = PathBuf::from(env::var("OUT_DIR").expect("set by cargo")).join("config.rs");
    fs::write(&out, config.to_rust()).unwrap_or_else(|e| fail(&format!("{}: {e}", out.display())));
}

fn fail(message: &str) -> ! {
    eprintln!("error: {message}");
    process::exit(1)
}

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

    let name = env::var("TURTLES_CONFIG").unwrap_or_else(|_| "l0".to_string());
    let set = turtles_config::ConfigSet::load(&configs).unwrap_or_else(|e| fail(&e.to_string()));
    let config = set.get(&name).unwrap_or_else(|e| fail(&e));
    let out_dir = PathBuf::from(env::var("OUT_DIR").expect("set by cargo"));
    let out = out_dir.join("config.rs");
    fs::write(&out, config.to_rust()).unwrap_or_else(|e| fail(&format!("{}: {e}", out.display())));

    // The linker script with the config's load address (`image_base_mib`): a guest that runs
    // in 1:1 memory is linked inside its RAM, away from the level below.
    let template = manifest.join("linker.ld");
    let script = fs::read_to_string(&template)
        .unwrap_or_else(|e| fail(&format!("{}: {e}", template.display())));
    let base = format!(". = {:#x};", u64::from(config.image_base_mib) << 20);
    if !script.contains(LINK_BASE) {
        fail(&format!("{}: no `{LINK_BASE}` line to set the load address", template.display()));
    }
    let linked = out_dir.join("linker.ld");
    fs::write(&linked, script.replace(LINK_BASE, &base))
        .unwrap_or_else(|e| fail(&format!("{}: {e}", linked.display())));
    println!("cargo:rustc-link-arg-bins=-T{}", linked.display());
}

/// The line of `linker.ld` that sets the load address (1 MiB unless the config says).
const LINK_BASE: &str = ". = 0x100000;";

fn fail(message: &str) -> ! {
    eprintln!("error: {message}");
    process::exit(1)
}

//! Validates every `configs/*.toml` when the runner is built, so a bad config fails
//! `cargo build`/`cargo test` at once with the file, key and allowed values.

fn main() {
    println!("cargo:rerun-if-changed=configs");
    if let Err(e) = turtles_config::ConfigSet::load(std::path::Path::new("configs")) {
        eprintln!("error: {e}");
        std::process::exit(1);
    }
}

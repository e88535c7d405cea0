//! Emulator devices for a config: the NICs and disks its `devices` list names, as QEMU
//! arguments or bochsrc lines.

use turtles_config::Config;

/// Extra QEMU arguments for the config's devices.
pub fn qemu_args(_config: &Config) -> Vec<String> {
    Vec::new()
}

/// Extra bochsrc lines for the config's devices.
pub fn bochs_lines(_config: &Config) -> String {
    String::new()
}

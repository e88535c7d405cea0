//! L0's use of the real VMX (SDM Vol. 3C ch. 24-28): bring-up (`vmxon`), EPT01, vmcs01
//! (`setup`), the run loop (`run`) with its exit handlers (`exits/`), interrupt delivery
//! (`interrupts`), and L1's emulated VMX (`l1vmx/`: the Turtles design on top of `nested`).
//!
//! Files depend one way (checked by `tests/layout.rs`): `vmxon`, `action`, `ept`, `setup` at
//! the bottom; `guest` (the state L0 keeps about its guest) above them; the exit handlers,
//! `l1vmx` and `interrupts` above that; `run` on top.

pub mod action;
pub mod assign;
pub mod ept;
pub mod exits;
pub mod guest;
pub mod interrupts;
pub mod intx;
pub mod l1vmx;
pub mod nic_poll;
pub mod run;
pub mod setup;
pub mod vmxon;

//! The Turtles core: nested VMX as pure logic (no hardware access).
//!
//! Everything here builds for `x86_64-unknown-none` (inside the image) and for the host (tests).
#![cfg_attr(not(test), no_std)]

pub mod addr;
pub mod caps;
pub mod ept;
pub mod exits;
pub mod guest;
pub mod vmcs;
pub mod vmcs01;
pub mod vmx;

#[cfg(test)]
mod testutil;

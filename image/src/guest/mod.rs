//! A guest of L0: its memory (host frames mapped by EPT01) and how it is booted.

pub mod boot;
pub mod linux;
pub mod memory;
pub mod paging;

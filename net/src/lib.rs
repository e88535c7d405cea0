//! Network drivers and the image's smoltcp stack (virtio-net, e1000). Filled in by the drivers issue.
#![cfg_attr(not(test), no_std)]

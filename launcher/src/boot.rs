//! Guest memory and the boot: one piece of RAM at guest-physical 0 (vm-memory's
//! `GuestMemoryMmap`), written by our `loader` crate exactly as a turtles L0 boots its guest
//! (multiboot2, then multiboot1, then PVH; modules page-aligned after the kernel; the boot
//! information with the memory map and command lines), so an image sees the same boot
//! under KVM as under turtles.

use std::fs;
use std::path::Path;

use loader::memory::OutOfRange;
use loader::{BootState, Module};
use vm_memory::{Bytes, GuestAddress, GuestMemoryBackend as _, GuestMemoryMmap};

use crate::args::Args;
use crate::error::LaunchError;

/// Guest RAM as the loader writes it.
pub struct Ram {
    pub mem: GuestMemoryMmap,
    size: u64,
}

impl Ram {
    /// `mib` MiB of zeroed anonymous memory at guest-physical 0.
    pub fn new(mib: u64) -> Result<Self, LaunchError> {
        let size = mib << 20;
        let len = usize::try_from(size).map_err(|e| LaunchError::Memory(e.to_string()))?;
        let mem = GuestMemoryMmap::from_ranges(&[(GuestAddress(0), len)])
            .map_err(|e| LaunchError::Memory(format!("{mib} MiB: {e}")))?;
        Ok(Ram { mem, size })
    }

    pub fn size(&self) -> u64 {
        self.size
    }

    /// The host address of guest-physical 0 (for `KVM_SET_USER_MEMORY_REGION`).
    pub fn host_address(&self) -> Result<u64, LaunchError> {
        let ptr = self
            .mem
            .get_host_address(GuestAddress(0))
            .map_err(|e| LaunchError::Memory(e.to_string()))?;
        Ok(ptr as u64)
    }

    /// Bytes at `gpa` (tests).
    #[cfg(test)]
    pub fn read(&self, gpa: u64, len: usize) -> Vec<u8> {
        let mut buf = vec![0; len];
        self.mem.read_slice(&mut buf, GuestAddress(gpa)).expect("inside guest memory");
        buf
    }
}

impl loader::GuestMemory for Ram {
    fn size(&self) -> u64 {
        self.size
    }

    fn write(&mut self, gpa: u64, bytes: &[u8]) -> Result<(), OutOfRange> {
        let end = gpa.checked_add(bytes.len() as u64).ok_or(OutOfRange)?;
        if end > self.size {
            return Err(OutOfRange);
        }
        self.mem.write_slice(bytes, GuestAddress(gpa)).map_err(|_| OutOfRange)
    }

    fn fill(&mut self, gpa: u64, len: u64, byte: u8) -> Result<(), OutOfRange> {
        let end = gpa.checked_add(len).ok_or(OutOfRange)?;
        if end > self.size {
            return Err(OutOfRange);
        }
        let chunk = [byte; 4096];
        let mut at = gpa;
        while at < end {
            let n = (end - at).min(chunk.len() as u64);
            self.mem.write_slice(&chunk[..n as usize], GuestAddress(at)).map_err(|_| OutOfRange)?;
            at += n;
        }
        Ok(())
    }
}

fn read(path: &Path) -> Result<Vec<u8>, LaunchError> {
    fs::read(path).map_err(|error| LaunchError::Read { path: path.to_path_buf(), error })
}

/// Reads the image and modules `args` names and loads them into `ram`.
pub fn load(ram: &mut Ram, args: &Args) -> Result<BootState, LaunchError> {
    let image = read(&args.image)?;
    let data: Vec<Vec<u8>> =
        args.modules.iter().map(|m| read(&m.file)).collect::<Result<_, _>>()?;
    let modules: Vec<Module<'_>> = args
        .modules
        .iter()
        .zip(&data)
        .map(|(m, d)| Module { data: d, cmdline: &m.cmdline })
        .collect();
    loader::load(ram, &image, &args.cmdline, &modules, None)
        .map_err(|error| LaunchError::Load { path: args.image.clone(), error })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::args::{self, ModuleArg};
    use loader::{GuestMemory, Protocol};

    /// A minimal multiboot1 kernel with address fields: header at file offset 0, loaded at
    /// 1 MiB, entry just after the header.
    fn multiboot1_kernel() -> Vec<u8> {
        const MAGIC: u32 = 0x1bad_b002;
        const FLAGS: u32 = 1 << 16; // address fields valid
        let load = 0x10_0000u32;
        let words = [
            MAGIC,
            FLAGS,
            0u32.wrapping_sub(MAGIC).wrapping_sub(FLAGS),
            load,      // header_addr
            load,      // load_addr
            0,         // load_end_addr: the whole file
            0,         // bss_end_addr
            load + 32, // entry_addr
        ];
        let mut k: Vec<u8> = words.iter().flat_map(|w| w.to_le_bytes()).collect();
        k.extend_from_slice(&[0xf4; 32]); // hlt
        k
    }

    fn temp(name: &str, bytes: &[u8]) -> std::path::PathBuf {
        let dir = std::env::temp_dir().join(format!("turtles-launcher-{}", std::process::id()));
        fs::create_dir_all(&dir).unwrap();
        let p = dir.join(name);
        fs::write(&p, bytes).unwrap();
        p
    }

    fn args(image: &Path, modules: Vec<ModuleArg>) -> Args {
        Args {
            image: image.to_path_buf(),
            modules,
            cmdline: "hello".into(),
            mem_mib: 8,
            prefix: String::new(),
        }
    }

    #[test]
    fn loads_a_multiboot_kernel_with_a_module() {
        let kernel = temp("mb1", &multiboot1_kernel());
        let module = temp("mod", b"module bytes");
        let mut ram = Ram::new(8).unwrap();
        let m = vec![ModuleArg { file: module, cmdline: "leaf".into() }];
        let state = load(&mut ram, &args(&kernel, m)).unwrap();
        assert_eq!(state.protocol, Protocol::Multiboot1);
        assert_eq!(state.entry, 0x10_0020);
        assert_eq!(state.rax, 0x2bad_b002);
        assert_eq!(ram.read(0x10_0000, 4), 0x1bad_b002u32.to_le_bytes());
        // The module follows the kernel, page-aligned.
        assert_eq!(ram.read(0x10_1000, 12), b"module bytes");
    }

    #[test]
    fn a_bad_image_is_a_clear_error() {
        let junk = temp("junk", b"this is not a kernel");
        let mut ram = Ram::new(8).unwrap();
        let e = load(&mut ram, &args(&junk, vec![])).unwrap_err();
        let text = e.to_string();
        assert!(text.contains("junk: cannot boot it: no multiboot1/multiboot2 header"), "{text}");
        let missing = Path::new("/nonexistent/turtles-image");
        let e = load(&mut ram, &args(missing, vec![])).unwrap_err();
        assert!(e.to_string().starts_with("/nonexistent/turtles-image: "), "{e}");
        // A module that does not fit in guest memory.
        let kernel = temp("mb1b", &multiboot1_kernel());
        let big = temp("big", &vec![0u8; 9 << 20]);
        let m = vec![ModuleArg { file: big, cmdline: "big".into() }];
        let e = load(&mut ram, &args(&kernel, m)).unwrap_err();
        assert!(e.to_string().contains("module"), "{e}");
    }

    #[test]
    fn ram_bounds() {
        let mut ram = Ram::new(args::MIN_MEM_MIB).unwrap();
        assert_eq!(ram.size(), 2 << 20);
        assert!(ram.write(ram.size() - 1, &[1]).is_ok());
        assert_eq!(ram.write(ram.size(), &[1]), Err(OutOfRange));
        assert_eq!(ram.write(u64::MAX, &[1]), Err(OutOfRange));
        assert!(ram.fill(0x1000, 0x3000, 0xaa).is_ok());
        assert_eq!(ram.read(0x3fff, 2), [0xaa, 0]);
        assert_eq!(ram.fill(ram.size() - 1, 2, 0), Err(OutOfRange));
    }
}

/* The Linux bench's compiled program (src/linux_bench.rs, src/linux_init.sh): no libc, no
 * system headers (tcc -nostdinc -nostdlib -static), so the initramfs needs only tcc and the
 * C library tcc itself runs on. Each part returns a 64-bit checksum; main prints their mix. */
typedef unsigned long u64;
typedef unsigned int u32;
typedef unsigned char u8;

long sys_call(long n, long a, long b, long c);
void put_hex(const char *label, u64 v);
u64 mix(u64 h, u64 v);

u64 lcg_next(u64 *state);
u64 sort_part(int n);
u64 sieve_part(int limit);
u64 crc_part(int kib);
u64 matrix_part(int n);
u64 text_part(int lines);

//! SplitMix64 (Steele, Lea, Flood 2014): the fuzzer's only source of randomness, so one seed
//! replays one run exactly.

/// A SplitMix64 generator.
pub struct Rng(u64);

impl Rng {
    /// The generator of program `program` of the run seeded `seed`: each program draws from
    /// its own stream, so `turtles.fuzz_first=P` replays program P's choices alone.
    pub fn for_program(seed: u64, program: u64) -> Self {
        let mut r = Rng(seed ^ program.wrapping_mul(0xd1b5_4a32_d192_ed03));
        r.next();
        r
    }

    pub fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n` (`n` > 0; the modulo bias is irrelevant here).
    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }

    /// True with probability `num` / `den`.
    pub fn chance(&mut self, num: u64, den: u64) -> bool {
        self.below(den) < num
    }

    /// One element of a non-empty slice.
    pub fn pick<T: Copy>(&mut self, items: &[T]) -> T {
        items[self.below(items.len() as u64) as usize]
    }

    /// A value a fuzzer likes: 0, all ones, a single bit, a boundary, or random.
    pub fn value(&mut self) -> u64 {
        match self.below(8) {
            0 => 0,
            1 => u64::MAX,
            2 => 1 << self.below(64),
            3 => u64::from(u32::MAX),
            4 => 0xffff,
            5 => !(1 << self.below(64)),
            _ => self.next(),
        }
    }
}

//! Which runs: seeds from `FAILOVER_BOT_CRASH_SEEDS` (or a default set),
//! and the seeded generator every run draws its choices from.

use std::time::Duration;

/// Chosen (from `scripts/crash-harness` runs) to hit different phases.
const DEFAULT_SEEDS: &[u64] = &[1, 2, 3, 4, 5, 6];

/// SplitMix64: tiny, seedable, and good enough to pick kill points.
pub struct SplitMix64(pub u64);

impl SplitMix64 {
    pub fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }

    /// A delay in `[0, max)`, in microseconds.
    pub fn delay(&mut self, max: Duration) -> Duration {
        Duration::from_micros(self.below(max.as_micros().max(1) as u64))
    }
}

/// `FAILOVER_BOT_CRASH_SEEDS`: `A..B` (inclusive) and single seeds, comma-separated.
pub fn seeds() -> Vec<u64> {
    let Ok(spec) = std::env::var("FAILOVER_BOT_CRASH_SEEDS") else {
        return DEFAULT_SEEDS.to_vec();
    };
    let bad = |part: &str| -> ! {
        panic!(
            "FAILOVER_BOT_CRASH_SEEDS: `{part}` is not a seed or A..B (e.g. `1..50` or `7,9,13`)"
        )
    };
    let number = |text: &str, part: &str| text.trim().parse::<u64>().unwrap_or_else(|_| bad(part));
    let mut seeds = Vec::new();
    for part in spec.split(',').filter(|p| !p.trim().is_empty()) {
        match part.split_once("..") {
            Some((from, to)) => seeds.extend(number(from, part)..=number(to, part)),
            None => seeds.push(number(part, part)),
        }
    }
    assert!(!seeds.is_empty(), "FAILOVER_BOT_CRASH_SEEDS names no seed");
    seeds
}

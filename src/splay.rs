//! Splay: where in its period a host's periodic work first starts.
//!
//! Hosts of a fleet are often booted together (an image rolled out, a CI
//! pool scaled up). If each started its timers at boot, every host would
//! poll central's config, sweep and export in the same second, period after
//! period. Instead, the first config poll, the capture sweeps and the exports
//! start at an offset within their period taken from a hash of the
//! installation id (contract section 13): deterministic, so a restart keeps
//! a host in its slot, and uniform across hosts, so the fleet's requests
//! spread evenly. The purpose is hashed in too, so one host's timers are
//! spread among themselves instead of all firing at its one offset.

use std::time::Duration;

use sha2::{Digest, Sha256};

/// The offset in `[0, period)` at which `installation_id`'s work for
/// `purpose` (`"config-poll"`, `"export"`, `"capture:claude"`, ...) first
/// starts. A zero period has no room: the offset is zero. Periods beyond
/// `u64::MAX` nanoseconds (about 584 years) are splayed over that much.
///
/// The offset scales with the period, so `offset(id, purpose, scaled)` is
/// the unscaled offset scaled the same way (to the nanosecond).
pub fn offset(installation_id: &str, purpose: &str, period: Duration) -> Duration {
    let period_nanos = u64::try_from(period.as_nanos()).unwrap_or(u64::MAX);
    let unit = u128::from(hash(installation_id, purpose));
    // `unit * period / 2^64`: in `[0, period)` and as uniform as the hash.
    let offset_nanos = (unit * u128::from(period_nanos)) >> 64;
    Duration::from_nanos(u64::try_from(offset_nanos).expect("the offset is below the period"))
}

/// The first 8 bytes of SHA-256 over both inputs, each length-prefixed so
/// that no two (id, purpose) pairs hash the same bytes.
fn hash(installation_id: &str, purpose: &str) -> u64 {
    let mut hasher = Sha256::new();
    hasher.update(b"hyp splay\0");
    for text in [installation_id, purpose] {
        hasher.update((text.len() as u64).to_be_bytes());
        hasher.update(text.as_bytes());
    }
    let digest = hasher.finalize();
    let mut first = [0u8; 8];
    first.copy_from_slice(&digest[..8]);
    u64::from_be_bytes(first)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A random-looking installation id per host: hex of sha256(host_idx).
    fn installation_id(host_idx: u32) -> String {
        crate::hex::hex(&Sha256::digest(host_idx.to_be_bytes()))
    }

    #[test]
    fn the_offset_lies_within_the_period() {
        for period in [
            Duration::from_nanos(1),
            Duration::from_millis(1),
            Duration::from_secs(60),
            Duration::from_secs(300),
            Duration::from_secs(86_400),
            Duration::MAX,
        ] {
            for host_idx in 0..1000 {
                let offset = offset(&installation_id(host_idx), "export", period);
                assert!(offset < period, "{offset:?} for {period:?}");
            }
        }
        assert_eq!(offset("any", "export", Duration::ZERO), Duration::ZERO);
        assert_eq!(offset("", "", Duration::from_nanos(1)), Duration::ZERO);
    }

    #[test]
    fn the_offset_is_deterministic() {
        let period = Duration::from_secs(300);
        let first = offset("3f2a", "config-poll", period);
        for _ in 0..3 {
            assert_eq!(offset("3f2a", "config-poll", period), first);
        }
        assert_ne!(offset("3f2b", "config-poll", period), first);
    }

    #[test]
    fn the_offset_scales_with_the_period() {
        let id = installation_id(7);
        let full = offset(&id, "export", Duration::from_secs(60));
        let scaled = offset(&id, "export", Duration::from_secs(6));
        let difference = full.abs_diff(scaled * 10);
        assert!(difference < Duration::from_nanos(10), "{difference:?}");
    }

    #[test]
    fn purposes_are_independent() {
        let period = Duration::from_secs(60);
        let id = installation_id(1);
        let purposes = ["config-poll", "export", "capture:claude", "capture:codex"];
        let offsets: Vec<Duration> = purposes
            .iter()
            .map(|purpose| offset(&id, purpose, period))
            .collect();
        for (idx, first) in offsets.iter().enumerate() {
            assert!(
                offsets[idx + 1..].iter().all(|other| other != first),
                "{offsets:?}"
            );
        }
        // Across hosts, two purposes share a second about once in 60.
        let n_hosts = 6000;
        let n_same_second = (0..n_hosts)
            .map(installation_id)
            .filter(|id| {
                offset(id, "config-poll", period).as_secs()
                    == offset(id, "export", period).as_secs()
            })
            .count();
        assert!((50..=150).contains(&n_same_second), "{n_same_second}");
    }

    #[test]
    fn the_id_and_purpose_boundary_is_unambiguous() {
        let period = Duration::from_secs(86_400);
        assert_ne!(
            offset("ab", "c", period),
            offset("a", "bc", period),
            "length prefixes keep ('ab', 'c') and ('a', 'bc') apart"
        );
    }

    /// 10,000 hosts boot in the same second and each makes its first request
    /// at its offset: no second of the first period sees more than twice the
    /// mean (without splay, one second sees all 10,000).
    #[test]
    fn a_fleet_booting_together_spreads_its_first_requests() {
        let n_hosts = 10_000;
        let ids: Vec<String> = (0..n_hosts).map(installation_id).collect();
        for (purpose, period_secs) in [("config-poll", 60), ("export", 300)] {
            let period = Duration::from_secs(period_secs);
            let mut requests_per_second = vec![0u32; period_secs as usize];
            for id in &ids {
                let second = offset(id, purpose, period).as_secs() as usize;
                requests_per_second[second] += 1;
            }
            let mean = f64::from(n_hosts) / period_secs as f64;
            let peak = requests_per_second.iter().copied().max().unwrap_or(0);
            assert!(
                f64::from(peak) <= 2.0 * mean,
                "{purpose}: peak {peak} per second, mean {mean:.1}"
            );
            assert!(
                requests_per_second.iter().all(|n_requests| *n_requests > 0),
                "{purpose}: every second of the period sees some host"
            );
        }
    }
}

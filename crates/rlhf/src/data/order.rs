//! The order trainers visit their data in: a fresh shuffle every epoch, fixed by the seed and the
//! epoch number alone, so a resumed run (or another edge) sees exactly the batches the first saw.

use rand::SeedableRng;
use rand::seq::SliceRandom;
use rand_chacha::ChaCha8Rng;

/// The visiting order of `n` items in epoch `epoch` of a run seeded with `seed`.
pub fn epoch_order(seed: u64, epoch: usize, n: usize) -> Vec<usize> {
    let mut order: Vec<usize> = (0..n).collect();
    // The golden-ratio multiplier spreads consecutive epochs over the seed space.
    order.shuffle(&mut ChaCha8Rng::seed_from_u64(seed ^ (epoch as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15)));
    order
}

/// The items of batch `step` (`batch_size` consecutive slots of the endless sequence of epochs),
/// with the epoch orders it needed cached in `cache`.
pub fn batch_indices(seed: u64, step: usize, batch_size: usize, n: usize, cache: &mut Option<(usize, Vec<usize>)>) -> Vec<usize> {
    (0..batch_size)
        .map(|j| {
            let i = step * batch_size + j;
            let epoch = i / n;
            if cache.as_ref().is_none_or(|(e, _)| *e != epoch) {
                *cache = Some((epoch, epoch_order(seed, epoch, n)));
            }
            cache.as_ref().expect("set above").1[i % n]
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_epoch_visits_every_item_once_in_an_order_fixed_by_seed_and_epoch() {
        let (a, b) = (epoch_order(7, 3, 50), epoch_order(7, 3, 50));
        assert_eq!(a, b);
        assert_ne!(a, epoch_order(7, 4, 50));
        assert_ne!(a, epoch_order(8, 3, 50));
        let mut sorted = a.clone();
        sorted.sort_unstable();
        assert_eq!(sorted, (0..50).collect::<Vec<_>>());
    }

    #[test]
    fn batches_run_on_across_epoch_boundaries_without_repeating_within_an_epoch() {
        let mut cache = None;
        let seen: Vec<usize> = (0..5).flat_map(|s| batch_indices(1, s, 4, 10, &mut cache)).collect();
        assert_eq!(&seen[..10], epoch_order(1, 0, 10).as_slice());
        assert_eq!(&seen[10..20], epoch_order(1, 1, 10).as_slice());
        // Without the cache, the same answer: the order is a function of (seed, step) alone.
        assert_eq!(batch_indices(1, 3, 4, 10, &mut None), seen[12..16]);
    }
}

//! Reading a tensor back to the host, counted. On a GPU every read is a round trip that stalls
//! the queue, so how many a step makes is a figure worth tracking (`tinyrlhf bench` prints it per
//! generated token and per training iteration). Every read of numbers in the model and training
//! code goes through [`read_f32`]; checkpoints, which read every weight once, do not count.
//!
//! Async because WebGPU permits no blocking read; on the CPU backend the future is ready at once.

use std::sync::atomic::{AtomicU64, Ordering};

use burn::tensor::Tensor;

static READS: AtomicU64 = AtomicU64::new(0);

/// A tensor's values, row-major; `Err` carries the device's own words.
pub async fn read_f32<const D: usize>(tensor: Tensor<D>) -> Result<Vec<f32>, String> {
    READS.fetch_add(1, Ordering::Relaxed);
    let data = tensor.into_data_async().await.map_err(|e| format!("{e:?}"))?;
    data.try_to_vec::<f32>().map_err(|e| format!("{e:?}"))
}

/// Reads made by [`read_f32`] in this process so far; the difference across a step is its count.
pub fn device_reads() -> u64 {
    READS.load(Ordering::Relaxed)
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::tensor::{Device, TensorData};

    #[test]
    fn every_read_is_counted_and_gives_the_values_back() {
        let device = Device::flex();
        let before = device_reads();
        let t = Tensor::<2>::from_data(TensorData::new(vec![1.0f32, 2.0, 3.0, 4.0], [2, 2]), &device);
        assert_eq!(pollster::block_on(read_f32(t)).unwrap(), vec![1.0, 2.0, 3.0, 4.0]);
        // Other tests in this process may read too: at least ours was counted.
        assert!(device_reads() > before);
    }
}

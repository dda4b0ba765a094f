//! Reading numbers back from the device, through the model crate's counted [`read_f32`]. Async
//! because WebGPU permits no blocking read; on the CPU backend the futures are ready at once.

use burn::tensor::Tensor;
use tinyrlhf_model::read_f32;

use crate::checkpoint::TrainError;

/// A one-element tensor's value.
pub(crate) async fn scalar(t: Tensor<1>) -> Result<f32, TrainError> {
    values(t).await?.first().copied().ok_or_else(|| TrainError::Device("expected one number, read none".into()))
}

/// A tensor's values, row-major.
pub(crate) async fn values<const D: usize>(t: Tensor<D>) -> Result<Vec<f32>, TrainError> {
    read_f32(t).await.map_err(TrainError::Device)
}

//! Reading numbers back from the device. Async because WebGPU permits no blocking read; on the CPU
//! backend the futures are ready at once.

use burn::tensor::Tensor;

use crate::checkpoint::TrainError;

fn device_error(e: impl std::fmt::Debug) -> TrainError {
    TrainError::Device(format!("{e:?}"))
}

/// A one-element tensor's value.
pub(crate) async fn scalar(t: Tensor<1>) -> Result<f32, TrainError> {
    t.into_scalar_async::<f32>().await.map_err(device_error)
}

/// A tensor's values, row-major.
pub(crate) async fn values<const D: usize>(t: Tensor<D>) -> Result<Vec<f32>, TrainError> {
    t.into_data_async().await.map_err(device_error)?.try_to_vec::<f32>().map_err(device_error)
}

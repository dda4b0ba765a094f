//! A safetensors file read in pieces, for callers that should not hold the whole file: the tab
//! reads a person's 500 MB `model.safetensors` in slices of its `File`. Each tensor is widened to
//! f32 as soon as its last byte has arrived and its raw bytes are let go, so at most one tensor's
//! bytes (plus one piece) are held besides the tensors themselves. The header is the safetensors
//! crate's own (`Metadata`, which checks that offsets are contiguous and sizes match shapes).

use safetensors::tensor::{Metadata, TensorView};

use crate::checkpoint::{CheckpointError, Weights};

/// The safetensors crate's own bound on a header (100 MB): a larger length is not a real file.
const MAX_HEADER_BYTES: usize = 100_000_000;

/// Bytes of a safetensors file pushed in order, piece by piece, becoming [`Weights`].
#[derive(Debug, Default)]
pub struct WeightsStream {
    /// Tensors in file order with their byte ranges in the file, once the header has arrived.
    layout: Option<Vec<(String, usize, usize)>>,
    header: Option<Metadata>,
    /// Bytes received and not yet consumed; `pending[0]` is the file's byte `consumed`.
    pending: Vec<u8>,
    consumed: usize,
    /// The next tensor (in file order) still waiting for bytes.
    next: usize,
    weights: Weights,
}

impl WeightsStream {
    pub fn new() -> Self {
        Self::default()
    }

    /// The file's next bytes. Errors as soon as what has arrived cannot be a safetensors file.
    pub fn push(&mut self, bytes: &[u8]) -> Result<(), CheckpointError> {
        self.pending.extend_from_slice(bytes);
        if self.layout.is_none() && !self.read_header()? {
            return Ok(());
        }
        let layout = self.layout.as_ref().expect("read above");
        let header = self.header.as_ref().expect("read with the layout");
        let available = self.consumed + self.pending.len();
        let mut done_to = self.consumed;
        while let Some((name, start, end)) = layout.get(self.next) {
            if *end > available {
                break;
            }
            let info = header.info(name).expect("the layout comes from the header");
            let data = &self.pending[start - self.consumed..end - self.consumed];
            let view = TensorView::new(info.dtype, info.shape.clone(), data).map_err(|e| format(format!("tensor `{name}`: {e}")))?;
            self.weights.insert(name.clone(), &view)?;
            done_to = *end;
            self.next += 1;
        }
        self.pending.drain(..done_to - self.consumed);
        self.consumed = done_to;
        if self.next == layout.len() && !self.pending.is_empty() {
            return Err(format(format!("{} bytes past the last tensor", self.pending.len())));
        }
        Ok(())
    }

    /// Parses the header once it has arrived; false while it has not.
    fn read_header(&mut self) -> Result<bool, CheckpointError> {
        let Some(length) = self.pending.get(..8) else { return Ok(false) };
        let length = u64::from_le_bytes(length.try_into().expect("8 bytes"));
        let length = usize::try_from(length)
            .ok()
            .filter(|&n| n <= MAX_HEADER_BYTES)
            .ok_or_else(|| format(format!("its header claims {length} bytes (at most {MAX_HEADER_BYTES})")))?;
        let Some(json) = self.pending.get(8..8 + length) else { return Ok(false) };
        let header: Metadata = serde_json::from_slice(json).map_err(|e| format(format!("its header: {e}")))?;
        let data_start = 8 + length;
        let layout = header
            .offset_keys()
            .into_iter()
            .map(|name| {
                let (start, end) = header.info(&name).expect("a key of the header").data_offsets;
                (name, data_start + start, data_start + end)
            })
            .collect();
        self.pending.drain(..data_start);
        self.consumed = data_start;
        self.layout = Some(layout);
        self.header = Some(header);
        Ok(true)
    }

    /// The tensors, once every byte the header promised has arrived.
    pub fn finish(self) -> Result<Weights, CheckpointError> {
        match &self.layout {
            None => Err(format(format!("the file ends inside its header ({} bytes)", self.pending.len()))),
            Some(layout) if self.next < layout.len() => {
                let (name, _, end) = &layout[self.next];
                let arrived = self.consumed + self.pending.len();
                Err(format(format!("the file ends at byte {arrived}, inside tensor `{name}` (which ends at byte {end})")))
            }
            Some(_) => Ok(self.weights),
        }
    }
}

fn format(reason: String) -> CheckpointError {
    CheckpointError::Format(reason)
}

#[cfg(test)]
mod tests {
    use super::*;
    use safetensors::{Dtype, serialize};
    use std::collections::BTreeMap;

    fn file() -> Vec<u8> {
        let a: Vec<u8> = (0..6).flat_map(|i| (i as f32 * 0.5).to_le_bytes()).collect();
        let b: Vec<u8> = (0..4).flat_map(|i| half::bf16::from_f32(i as f32).to_le_bytes()).collect();
        let mut tensors = BTreeMap::new();
        tensors.insert("a.weight", TensorView::new(Dtype::F32, vec![2, 3], &a).unwrap());
        tensors.insert("b.weight", TensorView::new(Dtype::BF16, vec![4], &b).unwrap());
        serialize(tensors, None).unwrap()
    }

    #[test]
    fn pieces_of_any_size_give_the_tensors_the_whole_file_gives() {
        let bytes = file();
        let whole = Weights::from_safetensors(&bytes).unwrap().tensors;
        for piece in [1, 3, 7, 64, bytes.len()] {
            let mut stream = WeightsStream::new();
            for chunk in bytes.chunks(piece) {
                stream.push(chunk).unwrap();
            }
            assert_eq!(stream.finish().unwrap().tensors, whole, "pieces of {piece} bytes");
        }
    }

    #[test]
    fn a_truncated_file_is_refused_naming_the_tensor_it_ends_in() {
        let bytes = file();
        let mut stream = WeightsStream::new();
        stream.push(&bytes[..bytes.len() - 2]).unwrap();
        let message = stream.finish().unwrap_err().to_string();
        assert!(message.contains("inside tensor `b.weight`"), "{message}");
        let mut stream = WeightsStream::new();
        stream.push(&bytes[..5]).unwrap();
        assert!(stream.finish().unwrap_err().to_string().contains("inside its header"));
    }

    #[test]
    fn a_header_that_is_not_safetensors_is_refused_when_it_arrives() {
        let mut stream = WeightsStream::new();
        let message = stream.push(&u64::MAX.to_le_bytes()).unwrap_err().to_string();
        assert!(message.contains("header claims"), "{message}");
        let mut stream = WeightsStream::new();
        let mut bytes = 4u64.to_le_bytes().to_vec();
        bytes.extend_from_slice(b"nope");
        assert!(stream.push(&bytes).is_err());
        let mut stream = WeightsStream::new();
        let mut bytes = file();
        bytes.extend_from_slice(b"extra");
        assert!(stream.push(&bytes).unwrap_err().to_string().contains("past the last tensor"));
    }
}

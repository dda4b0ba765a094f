//! A batch of token rows as the models take it: left-padded with explicit positions, and the
//! read-out of one position per row.

use burn::tensor::{Device, Int, Tensor, TensorData};

/// Picks `values[row, index[row]]`: the score at each row's last real (EOS) token.
pub fn gather_positions(values: Tensor<2>, index: &[usize]) -> Tensor<1> {
    let b = index.len();
    let index: Vec<i64> = index.iter().map(|&i| i as i64).collect();
    let index = Tensor::<2, Int>::from_data(TensorData::new(index, [b, 1]), &values.device());
    values.gather(1, index).reshape([b])
}

/// A batch of token rows, left-padded to one length, as the model wants it.
#[derive(Debug, Clone, PartialEq)]
pub struct LeftPadded {
    pub ids: Vec<i64>,
    pub mask: Vec<i64>,
    pub positions: Vec<i64>,
    pub batch: usize,
    pub len: usize,
}

/// Left-pads `rows` with `pad` to the longest row. Positions count real tokens only (0 for
/// padding), which is what makes a padded row compute exactly like the row alone.
pub fn left_pad(rows: &[Vec<u32>], pad: u32) -> LeftPadded {
    let len = rows.iter().map(Vec::len).max().unwrap_or(0);
    let mut out = LeftPadded { ids: vec![], mask: vec![], positions: vec![], batch: rows.len(), len };
    for row in rows {
        let padding = len - row.len();
        out.ids.extend(std::iter::repeat_n(pad as i64, padding).chain(row.iter().map(|&t| t as i64)));
        out.mask.extend(std::iter::repeat_n(0, padding).chain(std::iter::repeat_n(1, row.len())));
        out.positions.extend(std::iter::repeat_n(0, padding).chain(0..row.len() as i64));
    }
    out
}

impl LeftPadded {
    /// `(input_ids, position_ids, attention_mask)` as `[batch, len]` tensors.
    pub fn tensors(&self, device: &Device) -> (Tensor<2, Int>, Tensor<2, Int>, Tensor<2, Int>) {
        let t = |v: &Vec<i64>| Tensor::from_data(TensorData::new(v.clone(), [self.batch, self.len]), device);
        (t(&self.ids), t(&self.positions), t(&self.mask))
    }
}

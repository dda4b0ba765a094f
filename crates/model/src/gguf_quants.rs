//! ggml's tensor types and their dequantisation to f32, as llama.cpp's `ggml-quants.c` does it
//! (`dequantize_row_*`), block by block: F32, F16, BF16, the legacy quants Q4_0, Q4_1, Q5_0, Q5_1,
//! Q8_0, and the K-quants Q4_K, Q5_K, Q6_K — the types of the common `Q4_K_M`, `Q5_K_M` and `Q8_0`
//! files. Each block's arithmetic is in f32 in ggml's order, so the values equal the `gguf` Python
//! package's (`gguf.quants.dequantize`) bit for bit; the tests check it on bytes that package wrote.

use half::{bf16, f16};

/// The ggml types a GGUF tensor can have. Only those listed in the module header are read; the
/// rest are known by name so a file holding one is refused naming it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GgmlType {
    F32,
    F16,
    Q4_0,
    Q4_1,
    Q5_0,
    Q5_1,
    Q8_0,
    Q4K,
    Q5K,
    Q6K,
    Bf16,
    /// A type ggml defines that is not read here (Q2_K, Q3_K, the IQ types, ...): its id and name.
    Other(u32, &'static str),
}

/// ggml's names of the types not read here, by id (`ggml_type` in ggml.h).
const OTHER_TYPES: [(u32, &str); 17] = [
    (9, "Q8_1"),
    (10, "Q2_K"),
    (11, "Q3_K"),
    (15, "Q8_K"),
    (16, "IQ2_XXS"),
    (17, "IQ2_XS"),
    (18, "IQ3_XXS"),
    (19, "IQ1_S"),
    (20, "IQ4_NL"),
    (21, "IQ3_S"),
    (22, "IQ2_S"),
    (23, "IQ4_XS"),
    (24, "I8"),
    (25, "I16"),
    (26, "I32"),
    (27, "I64"),
    (28, "F64"),
];

const QK_K: usize = 256;

/// The types read here, as messages name them.
pub const READ_TYPES: [&str; 11] = ["F32", "F16", "BF16", "Q8_0", "Q4_0", "Q4_1", "Q5_0", "Q5_1", "Q4_K", "Q5_K", "Q6_K"];

impl GgmlType {
    /// Every type read here.
    pub const READ: [GgmlType; 11] =
        [Self::F32, Self::F16, Self::Bf16, Self::Q8_0, Self::Q4_0, Self::Q4_1, Self::Q5_0, Self::Q5_1, Self::Q4K, Self::Q5K, Self::Q6K];

    /// `values` values of this type as varied bytes whose scales are all finite (0.01, minimums
    /// 0.5): what a check of another decoder (a GPU's) widens, K-quants included, which have no
    /// quantizer here. `None` for a type not read or a count that is not whole blocks.
    pub fn example_bytes(self, values: usize) -> Option<Vec<u8>> {
        let floats = |n: usize| (0..n).map(|i| ((i * 37 % 101) as f32 - 50.0) / 64.0).collect::<Vec<_>>();
        let halves: &[(usize, f32)] = match self {
            Self::F32 | Self::F16 | Self::Bf16 => return quantize(self, &floats(values)),
            Self::Q4_0 | Self::Q5_0 | Self::Q8_0 => &[(0, 0.01)],
            Self::Q4_1 | Self::Q5_1 | Self::Q4K | Self::Q5K => &[(0, 0.01), (2, 0.5)],
            Self::Q6K => &[(208, 0.01)],
            Self::Other(..) => return None,
        };
        let (len, size) = self.block();
        if !values.is_multiple_of(len) {
            return None;
        }
        let mut bytes: Vec<u8> = (0..values / len * size).map(|i| ((i * 73 + 41) ^ (i >> 7)) as u8).collect();
        for block in bytes.chunks_exact_mut(size) {
            for &(at, value) in halves {
                block[at..at + 2].copy_from_slice(&f16::from_f32(value).to_le_bytes());
            }
        }
        Some(bytes)
    }

    pub fn from_id(id: u32) -> Option<Self> {
        Some(match id {
            0 => Self::F32,
            1 => Self::F16,
            2 => Self::Q4_0,
            3 => Self::Q4_1,
            6 => Self::Q5_0,
            7 => Self::Q5_1,
            8 => Self::Q8_0,
            12 => Self::Q4K,
            13 => Self::Q5K,
            14 => Self::Q6K,
            30 => Self::Bf16,
            29 => Self::Other(29, "IQ1_M"),
            31..=33 => Self::Other(id, "Q4_0 repacked (Q4_0_4_4/4_8/8_8)"),
            34 => Self::Other(34, "TQ1_0"),
            35 => Self::Other(35, "TQ2_0"),
            39 => Self::Other(39, "MXFP4"),
            _ => return OTHER_TYPES.iter().find(|(i, _)| *i == id).map(|&(i, name)| Self::Other(i, name)),
        })
    }

    pub fn id(self) -> u32 {
        match self {
            Self::F32 => 0,
            Self::F16 => 1,
            Self::Q4_0 => 2,
            Self::Q4_1 => 3,
            Self::Q5_0 => 6,
            Self::Q5_1 => 7,
            Self::Q8_0 => 8,
            Self::Q4K => 12,
            Self::Q5K => 13,
            Self::Q6K => 14,
            Self::Bf16 => 30,
            Self::Other(id, _) => id,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Self::F32 => "F32",
            Self::F16 => "F16",
            Self::Q4_0 => "Q4_0",
            Self::Q4_1 => "Q4_1",
            Self::Q5_0 => "Q5_0",
            Self::Q5_1 => "Q5_1",
            Self::Q8_0 => "Q8_0",
            Self::Q4K => "Q4_K",
            Self::Q5K => "Q5_K",
            Self::Q6K => "Q6_K",
            Self::Bf16 => "BF16",
            Self::Other(_, name) => name,
        }
    }

    pub fn is_read(self) -> bool {
        !matches!(self, Self::Other(..))
    }

    /// Values per block and bytes per block.
    fn block(self) -> (usize, usize) {
        match self {
            Self::F32 => (1, 4),
            Self::F16 | Self::Bf16 => (1, 2),
            Self::Q4_0 => (32, 18),
            Self::Q4_1 => (32, 20),
            Self::Q5_0 => (32, 22),
            Self::Q5_1 => (32, 24),
            Self::Q8_0 => (32, 34),
            Self::Q4K => (QK_K, 144),
            Self::Q5K => (QK_K, 176),
            Self::Q6K => (QK_K, 210),
            // Unknown layouts: any size is accepted in the table; reading one is refused by name.
            Self::Other(..) => (1, 0),
        }
    }

    pub fn block_len(self) -> usize {
        self.block().0
    }

    /// The bytes `elements` values of this type take; `None` if they are not whole blocks.
    pub fn bytes_for(self, elements: u64) -> Option<u64> {
        let (values, bytes) = self.block();
        elements.is_multiple_of(values as u64).then(|| elements / values as u64).and_then(|blocks| blocks.checked_mul(bytes as u64))
    }
}

/// `data` (whole blocks of `ggml_type`) as f32 values. The caller has checked the type is read and
/// the length is whole blocks ([`GgmlType::bytes_for`]).
pub fn dequantize(ggml_type: GgmlType, data: &[u8]) -> Vec<f32> {
    let (values, bytes) = ggml_type.block();
    let mut out = vec![0.0f32; data.len().checked_div(bytes).unwrap_or(0) * values];
    dequantize_into(ggml_type, data, &mut out);
    out
}

/// [`dequantize`] into `out`, which holds exactly `data`'s values: a large matrix widened in pieces
/// on several threads, each piece straight into its place (no piece copied again).
pub(crate) fn dequantize_into(ggml_type: GgmlType, data: &[u8], out: &mut [f32]) {
    let out = &mut Filled { out, at: 0 };
    let blocks = data.chunks_exact(ggml_type.block().1.max(1));
    match ggml_type {
        GgmlType::F32 => out.put(blocks.map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))),
        GgmlType::F16 => out.put(blocks.map(|b| f16::from_le_bytes([b[0], b[1]]).to_f32())),
        GgmlType::Bf16 => out.put(blocks.map(|b| bf16::from_le_bytes([b[0], b[1]]).to_f32())),
        GgmlType::Q4_0 => blocks.for_each(|b| q4_0(b, out)),
        GgmlType::Q4_1 => blocks.for_each(|b| q4_1(b, out)),
        GgmlType::Q5_0 => blocks.for_each(|b| q5_0(b, out)),
        GgmlType::Q5_1 => blocks.for_each(|b| q5_1(b, out)),
        GgmlType::Q8_0 => blocks.for_each(|b| q8_0(b, out)),
        GgmlType::Q4K => blocks.for_each(|b| q4_k(b, out)),
        GgmlType::Q5K => blocks.for_each(|b| q5_k(b, out)),
        GgmlType::Q6K => blocks.for_each(|b| q6_k(b, out)),
        GgmlType::Other(..) => {}
    }
    assert_eq!(out.at, out.out.len(), "{} values for {} bytes of {}", out.out.len(), data.len(), ggml_type.name());
}

/// A slice of dequantized values, filled in order; `at` values so far.
struct Filled<'a> {
    out: &'a mut [f32],
    at: usize,
}

impl Filled<'_> {
    /// The next `n` values' places, to be written.
    fn next(&mut self, n: usize) -> &mut [f32] {
        let start = self.at;
        self.at += n;
        &mut self.out[start..start + n]
    }

    /// `values` after those already there.
    fn put(&mut self, values: impl ExactSizeIterator<Item = f32>) {
        for (place, value) in self.next(values.len()).iter_mut().zip(values) {
            *place = value;
        }
    }

    /// A block's values, computed in a fixed-size array (which the compiler vectorizes: an
    /// iterator per value was a scalar loop, 14% of a 0.5B prefill), after those already there.
    fn put_block(&mut self, values: &[f32]) {
        self.next(values.len()).copy_from_slice(values);
    }
}

/// `values` (whole blocks) written as `ggml_type`, as llama.cpp's reference quantizers
/// (`quantize_row_*_ref`) write them; `None` for a type not written here (F32, F16, BF16, Q8_0 and
/// Q4_0 are).
pub fn quantize(ggml_type: GgmlType, values: &[f32]) -> Option<Vec<u8>> {
    let (per_block, bytes) = ggml_type.block();
    if !values.len().is_multiple_of(per_block) {
        return None;
    }
    let mut out = Vec::with_capacity(values.len() / per_block * bytes);
    match ggml_type {
        GgmlType::F32 => out.extend(values.iter().flat_map(|v| v.to_le_bytes())),
        GgmlType::F16 => out.extend(values.iter().flat_map(|&v| f16::from_f32(v).to_le_bytes())),
        GgmlType::Bf16 => out.extend(values.iter().flat_map(|&v| bf16::from_f32(v).to_le_bytes())),
        GgmlType::Q8_0 => values.chunks_exact(32).for_each(|x| quantize_q8_0(x, &mut out)),
        GgmlType::Q4_0 => values.chunks_exact(32).for_each(|x| quantize_q4_0(x, &mut out)),
        _ => return None,
    }
    Some(out)
}

/// `d = max|x| / 127`, then each value rounded to `x / d`.
fn quantize_q8_0(x: &[f32], out: &mut Vec<u8>) {
    let amax = x.iter().fold(0.0f32, |m, v| m.max(v.abs()));
    let d = amax / 127.0;
    let id = if d != 0.0 { 1.0 / d } else { 0.0 };
    out.extend(f16::from_f32(d).to_le_bytes());
    out.extend(x.iter().map(|&v| (v * id).round() as i8 as u8));
}

/// `d = m / -8` where `m` is the value of largest magnitude (so it is exactly `-8 d`), then each
/// value `x / d + 8` truncated to 0..=15; value `j` in the low nibble of byte `j`, value `16 + j`
/// in its high nibble.
fn quantize_q4_0(x: &[f32], out: &mut Vec<u8>) {
    let max = x.iter().fold(0.0f32, |m, &v| if v.abs() > m.abs() { v } else { m });
    let d = max / -8.0;
    let id = if d != 0.0 { 1.0 / d } else { 0.0 };
    let nibble = |v: f32| ((v * id + 8.5) as i8).min(15) as u8;
    out.extend(f16::from_f32(d).to_le_bytes());
    out.extend((0..16).map(|j| nibble(x[j]) | (nibble(x[16 + j]) << 4)));
}

fn half_at(block: &[u8], at: usize) -> f32 {
    f16::from_le_bytes([block[at], block[at + 1]]).to_f32()
}

/// `d`, then 16 bytes of 4-bit values: low nibbles are values 0..16, high nibbles 16..32.
fn q4_0(block: &[u8], out: &mut Filled) {
    let d = half_at(block, 0);
    let qs = &block[2..18];
    let mut y = [0.0f32; 32];
    for j in 0..16 {
        y[j] = ((qs[j] & 0xF) as i32 - 8) as f32 * d;
        y[j + 16] = ((qs[j] >> 4) as i32 - 8) as f32 * d;
    }
    out.put_block(&y);
}

fn q4_1(block: &[u8], out: &mut Filled) {
    let (d, m) = (half_at(block, 0), half_at(block, 2));
    let qs = &block[4..20];
    let mut y = [0.0f32; 32];
    for j in 0..16 {
        y[j] = (qs[j] & 0xF) as f32 * d + m;
        y[j + 16] = (qs[j] >> 4) as f32 * d + m;
    }
    out.put_block(&y);
}

/// The fifth bits of Q5 values: bit j of `qh` for value j.
fn fifth_bits(qh: &[u8]) -> u32 {
    u32::from_le_bytes([qh[0], qh[1], qh[2], qh[3]])
}

fn q5_0(block: &[u8], out: &mut Filled) {
    let d = half_at(block, 0);
    let qh = fifth_bits(&block[2..6]);
    let qs = &block[6..22];
    let mut y = [0.0f32; 32];
    for j in 0..16 {
        y[j] = (((qs[j] & 0xF) as u32 | (((qh >> j) << 4) & 0x10)) as i32 - 16) as f32 * d;
        y[j + 16] = (((qs[j] >> 4) as u32 | ((qh >> (j + 12)) & 0x10)) as i32 - 16) as f32 * d;
    }
    out.put_block(&y);
}

fn q5_1(block: &[u8], out: &mut Filled) {
    let (d, m) = (half_at(block, 0), half_at(block, 2));
    let qh = fifth_bits(&block[4..8]);
    let qs = &block[8..24];
    let mut y = [0.0f32; 32];
    for j in 0..16 {
        y[j] = ((qs[j] & 0xF) as u32 | (((qh >> j) << 4) & 0x10)) as f32 * d + m;
        y[j + 16] = ((qs[j] >> 4) as u32 | ((qh >> (j + 12)) & 0x10)) as f32 * d + m;
    }
    out.put_block(&y);
}

fn q8_0(block: &[u8], out: &mut Filled) {
    let d = half_at(block, 0);
    let qs = &block[2..34];
    let mut y = [0.0f32; 32];
    for j in 0..32 {
        y[j] = qs[j] as i8 as f32 * d;
    }
    out.put_block(&y);
}

/// The 6-bit scale and min of sub-block `j` (of 8), packed in 12 bytes (`get_scale_min_k4`).
#[inline(always)]
pub(crate) fn scale_min_k4(j: usize, scales: &[u8]) -> (f32, f32) {
    let (sc, m) = if j < 4 {
        (scales[j] & 63, scales[j + 4] & 63)
    } else {
        ((scales[j + 4] & 0xF) | ((scales[j - 4] >> 6) << 4), (scales[j + 4] >> 4) | ((scales[j] >> 6) << 4))
    };
    (sc as f32, m as f32)
}

/// `d`, `dmin`, 12 bytes of scales/mins, 128 bytes of 4-bit values, in 4 runs of 64 values.
fn q4_k(block: &[u8], out: &mut Filled) {
    let (d, dmin) = (half_at(block, 0), half_at(block, 2));
    let scales = &block[4..16];
    for (run, q) in block[16..144].as_chunks::<32>().0.iter().enumerate() {
        let (sc1, m1) = scale_min_k4(2 * run, scales);
        let (sc2, m2) = scale_min_k4(2 * run + 1, scales);
        let (d1, m1, d2, m2) = (d * sc1, dmin * m1, d * sc2, dmin * m2);
        let mut y = [0.0f32; 64];
        for j in 0..32 {
            y[j] = d1 * (q[j] & 0xF) as f32 - m1;
            y[j + 32] = d2 * (q[j] >> 4) as f32 - m2;
        }
        out.put_block(&y);
    }
}

/// Q4_K's layout with a fifth bit per value in 32 bytes of `qh` (two bits per run).
fn q5_k(block: &[u8], out: &mut Filled) {
    let (d, dmin) = (half_at(block, 0), half_at(block, 2));
    let scales = &block[4..16];
    let qh = &block[16..48];
    for (run, ql) in block[48..176].as_chunks::<32>().0.iter().enumerate() {
        let (sc1, m1) = scale_min_k4(2 * run, scales);
        let (sc2, m2) = scale_min_k4(2 * run + 1, scales);
        let (d1, m1, d2, m2) = (d * sc1, dmin * m1, d * sc2, dmin * m2);
        let (u1, u2) = (1u8 << (2 * run), 2u8 << (2 * run));
        let mut y = [0.0f32; 64];
        for j in 0..32 {
            y[j] = d1 * ((ql[j] & 0xF) + if qh[j] & u1 != 0 { 16 } else { 0 }) as f32 - m1;
            y[j + 32] = d2 * ((ql[j] >> 4) + if qh[j] & u2 != 0 { 16 } else { 0 }) as f32 - m2;
        }
        out.put_block(&y);
    }
}

/// 128 bytes of low 4 bits, 64 of high 2 bits, 16 signed 8-bit scales, then `d`; two halves of 128
/// values, each four interleaved runs of 32.
fn q6_k(block: &[u8], out: &mut Filled) {
    let d = half_at(block, 208);
    let y = out.next(QK_K);
    for half in 0..2 {
        let ql = &block[64 * half..64 * half + 64];
        let qh = &block[128 + 32 * half..128 + 32 * half + 32];
        let sc = &block[192 + 8 * half..192 + 8 * half + 8];
        let y = &mut y[128 * half..128 * half + 128];
        for l in 0..32 {
            let is = l / 16;
            let q1 = ((ql[l] & 0xF) | ((qh[l] & 3) << 4)) as i32 - 32;
            let q2 = ((ql[l + 32] & 0xF) | (((qh[l] >> 2) & 3) << 4)) as i32 - 32;
            let q3 = ((ql[l] >> 4) | (((qh[l] >> 4) & 3) << 4)) as i32 - 32;
            let q4 = ((ql[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4)) as i32 - 32;
            let scale = |k: usize| d * sc[is + k] as i8 as f32;
            y[l] = scale(0) * q1 as f32;
            y[l + 32] = scale(2) * q2 as f32;
            y[l + 64] = scale(4) * q3 as f32;
            y[l + 96] = scale(6) * q4 as f32;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn q8_0_is_its_scale_times_each_signed_byte() {
        let mut block = f16::from_f32(0.5).to_le_bytes().to_vec();
        block.extend((0..32).map(|i| (i as i8 - 16) as u8));
        let values = dequantize(GgmlType::Q8_0, &block);
        assert_eq!(values, (0..32).map(|i| (i - 16) as f32 * 0.5).collect::<Vec<_>>());
    }

    #[test]
    fn example_bytes_of_every_type_are_whole_blocks_that_widen_to_finite_varied_values() {
        for ggml_type in GgmlType::READ {
            let bytes = ggml_type.example_bytes(512).unwrap();
            assert_eq!(bytes.len() as u64, ggml_type.bytes_for(512).unwrap(), "{}", ggml_type.name());
            let values = dequantize(ggml_type, &bytes);
            assert!(values.iter().all(|v| v.is_finite()), "{}", ggml_type.name());
            assert!(values.iter().any(|&v| v != values[0]), "{}", ggml_type.name());
        }
        assert_eq!(GgmlType::Q4K.example_bytes(100), None);
    }

    #[test]
    fn sizes_follow_whole_blocks_and_unknown_types_are_named() {
        assert_eq!(GgmlType::Q4K.bytes_for(512), Some(288));
        assert_eq!(GgmlType::Q4K.bytes_for(100), None);
        assert_eq!(GgmlType::from_id(11).map(GgmlType::name), Some("Q3_K"));
        assert!(!GgmlType::from_id(11).unwrap().is_read());
        assert_eq!(GgmlType::from_id(1000), None);
    }
}

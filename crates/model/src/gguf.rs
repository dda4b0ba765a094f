//! GGUF files (llama.cpp, Ollama, LM Studio), read and written as bytes: the header's metadata and
//! tensor table, and each tensor widened to f32 ([`crate::gguf_quants`]). Versions 2 and 3,
//! little-endian, as llama.cpp writes them.
//!
//! Our own reader rather than a crate: candle's `gguf_file` allocates a string's claimed length
//! before reading it (an absurd length aborts the process, which in wasm kills the tab) and brings
//! candle-core's kernels and a second `rand`/`getrandom` into the page; `ggus`/`ggml-quants` leave
//! the K-quants' dequantisation unwritten. Every length here is checked against the bytes that are
//! left before anything is allocated, so a file can never ask for more memory than it occupies.

use std::collections::BTreeMap;

use crate::gguf_quants::{GgmlType, dequantize};

const MAGIC: &[u8; 4] = b"GGUF";

/// Whether `head`, a file's first bytes, starts a GGUF file: what it holds, whatever its name
/// (Ollama keeps its models as `sha256-<hex>` blobs with no extension).
pub fn is_gguf(head: &[u8]) -> bool {
    head.starts_with(MAGIC)
}
/// llama.cpp's default alignment of the tensor data.
const DEFAULT_ALIGNMENT: u64 = 32;
/// ggml's `GGML_MAX_DIMS`.
const MAX_DIMS: u32 = 4;

/// A GGUF file that cannot be read. `Truncated` is kept apart: a caller reading the file in pieces
/// waits for more bytes instead.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum GgufError {
    #[error("the file ends at byte {0}, inside its header")]
    Truncated(usize),
    #[error("{0}")]
    Format(String),
}

fn format(reason: impl Into<String>) -> GgufError {
    GgufError::Format(reason.into())
}

/// A metadata value.
#[derive(Debug, Clone, PartialEq)]
pub enum GgufValue {
    U8(u8),
    I8(i8),
    U16(u16),
    I16(i16),
    U32(u32),
    I32(i32),
    F32(f32),
    Bool(bool),
    String(String),
    Array(Vec<GgufValue>),
    U64(u64),
    I64(i64),
    F64(f64),
}

impl GgufValue {
    /// An unsigned or non-negative integer of any width.
    pub fn as_u64(&self) -> Option<u64> {
        match *self {
            Self::U8(v) => Some(v.into()),
            Self::U16(v) => Some(v.into()),
            Self::U32(v) => Some(v.into()),
            Self::U64(v) => Some(v),
            Self::I8(v) => u64::try_from(v).ok(),
            Self::I16(v) => u64::try_from(v).ok(),
            Self::I32(v) => u64::try_from(v).ok(),
            Self::I64(v) => u64::try_from(v).ok(),
            _ => None,
        }
    }

    pub fn as_f64(&self) -> Option<f64> {
        match *self {
            Self::F32(v) => Some(v.into()),
            Self::F64(v) => Some(v),
            _ => self.as_u64().map(|v| v as f64),
        }
    }

    pub fn as_str(&self) -> Option<&str> {
        match self {
            Self::String(s) => Some(s),
            _ => None,
        }
    }

    pub fn as_array(&self) -> Option<&[GgufValue]> {
        match self {
            Self::Array(a) => Some(a),
            _ => None,
        }
    }

    fn type_id(&self) -> u32 {
        match self {
            Self::U8(_) => 0,
            Self::I8(_) => 1,
            Self::U16(_) => 2,
            Self::I16(_) => 3,
            Self::U32(_) => 4,
            Self::I32(_) => 5,
            Self::F32(_) => 6,
            Self::Bool(_) => 7,
            Self::String(_) => 8,
            Self::Array(_) => 9,
            Self::U64(_) => 10,
            Self::I64(_) => 11,
            Self::F64(_) => 12,
        }
    }
}

/// One entry of the tensor table: llama.cpp's name, the shape outermost first (GGUF stores ggml's
/// `ne`, innermost first), the type, and where its bytes lie in the file.
#[derive(Debug, Clone, PartialEq)]
pub struct GgufTensor {
    pub name: String,
    pub shape: Vec<usize>,
    pub ggml_type: GgmlType,
    /// Byte range in the whole file.
    pub start: usize,
    pub end: usize,
}

impl GgufTensor {
    pub fn len(&self) -> usize {
        self.shape.iter().product()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// A GGUF file's header: its metadata and tensor table (tensors sorted by where they lie).
#[derive(Debug, Clone, PartialEq)]
pub struct GgufHeader {
    pub version: u32,
    pub metadata: BTreeMap<String, GgufValue>,
    pub tensors: Vec<GgufTensor>,
    /// Where the tensor data begins.
    pub data_start: usize,
}

impl GgufHeader {
    /// Reads the header from the file's first bytes; [`GgufError::Truncated`] while they do not
    /// hold all of it.
    pub fn read(bytes: &[u8]) -> Result<Self, GgufError> {
        let mut r = Reader { bytes, pos: 0 };
        if r.take(4)? != MAGIC {
            return Err(format("it does not begin with GGUF's magic bytes \"GGUF\": not a GGUF file"));
        }
        let version = r.u32()?;
        if !(2..=3).contains(&version) {
            return Err(format(format!("GGUF version {version} is not read here (versions 2 and 3 are)")));
        }
        let tensor_count = r.u64()?;
        let kv_count = r.u64()?;
        // Each entry takes at least 8 (+ 4) bytes: a count past what is left is not a real file.
        r.check_count(kv_count, 12, "metadata entries")?;
        r.check_count(tensor_count, 8 + 4 + 4 + 8, "tensors")?;
        let mut metadata = BTreeMap::new();
        for _ in 0..kv_count {
            let key = r.string()?;
            let value_type = r.u32()?;
            let value = r.value(value_type, &key)?;
            metadata.insert(key, value);
        }
        let mut infos = Vec::with_capacity(tensor_count as usize);
        for _ in 0..tensor_count {
            let name = r.string()?;
            let dims = r.u32()?;
            if dims == 0 || dims > MAX_DIMS {
                return Err(format(format!("tensor `{}` has {dims} dimensions (ggml allows 1 to {MAX_DIMS})", shown(&name))));
            }
            let mut shape = (0..dims).map(|_| r.u64()).collect::<Result<Vec<_>, _>>()?;
            shape.reverse();
            let type_id = r.u32()?;
            let ggml_type = GgmlType::from_id(type_id)
                .ok_or_else(|| format(format!("tensor `{}` has ggml type {type_id}, which is not a known type", shown(&name))))?;
            let offset = r.u64()?;
            infos.push((name, shape, ggml_type, offset));
        }
        let alignment = match metadata.get("general.alignment") {
            None => DEFAULT_ALIGNMENT,
            Some(v) => v.as_u64().filter(|a| a.is_power_of_two()).ok_or_else(|| format("general.alignment is not a power of two"))?,
        };
        let data_start = (r.pos as u64).div_ceil(alignment) * alignment;
        let tensors = infos
            .into_iter()
            .map(|(name, shape, ggml_type, offset)| placed(name, shape, ggml_type, offset, data_start, alignment))
            .collect::<Result<Vec<_>, _>>()?;
        let mut header = Self { version, metadata, tensors, data_start: data_start as usize };
        header.tensors.sort_by_key(|t| t.start);
        for pair in header.tensors.windows(2) {
            if pair[1].start < pair[0].end {
                return Err(format(format!("tensors `{}` and `{}` overlap in the file", pair[0].name, pair[1].name)));
            }
        }
        Ok(header)
    }

    /// Where the last tensor ends: the file's size, give or take padding.
    pub fn data_end(&self) -> usize {
        self.tensors.last().map_or(self.data_start, |t| t.end)
    }

    pub fn get(&self, key: &str) -> Option<&GgufValue> {
        self.metadata.get(key)
    }

    pub fn tensor(&self, name: &str) -> Option<&GgufTensor> {
        self.tensors.iter().find(|t| t.name == name)
    }
}

/// A tensor's place in the file, checked: its element count fits its type's blocks and its bytes
/// fit in memory at all.
fn placed(
    name: String,
    shape: Vec<u64>,
    ggml_type: GgmlType,
    offset: u64,
    data_start: u64,
    alignment: u64,
) -> Result<GgufTensor, GgufError> {
    let elements = shape.iter().try_fold(1u64, |n, &d| n.checked_mul(d));
    let bytes = elements.and_then(|n| ggml_type.bytes_for(n));
    let Some(bytes) = bytes else {
        return Err(format(format!(
            "tensor `{}` of type {} has shape {shape:?}: not a whole number of its {}-value blocks, or too large",
            shown(&name),
            ggml_type.name(),
            ggml_type.block_len()
        )));
    };
    if !offset.is_multiple_of(alignment) {
        return Err(format(format!("tensor `{}` starts at offset {offset}, not a multiple of the alignment {alignment}", shown(&name))));
    }
    let start = data_start.checked_add(offset);
    let end = start.and_then(|s| s.checked_add(bytes));
    let (Some(start), Some(end)) = (start.and_then(|s| usize::try_from(s).ok()), end.and_then(|e| usize::try_from(e).ok())) else {
        return Err(format(format!("tensor `{}` lies past any file this machine can hold", shown(&name))));
    };
    let shape = shape.into_iter().map(|d| d as usize).collect();
    Ok(GgufTensor { name, shape, ggml_type, start, end })
}

/// A name as quoted in messages: at most 100 characters of it.
fn shown(name: &str) -> String {
    let mut s: String = name.chars().take(100).collect();
    if s.len() < name.len() {
        s.push('…');
    }
    s
}

/// A tensor's values widened to f32, from the bytes of the whole file (or any slice of it that
/// begins at `offset` and holds the tensor).
pub fn tensor_f32(tensor: &GgufTensor, bytes: &[u8], offset: usize) -> Result<Vec<f32>, GgufError> {
    if !tensor.ggml_type.is_read() {
        return Err(format(format!(
            "tensor `{}` is {}, a type tinyrlhf does not read (it reads {})",
            tensor.name,
            tensor.ggml_type.name(),
            crate::gguf_quants::READ_TYPES.join(", ")
        )));
    }
    let data = tensor.start.checked_sub(offset).and_then(|from| bytes.get(from..tensor.end - offset));
    let data = data.ok_or_else(|| format(format!("the file ends inside tensor `{}` (which ends at byte {})", tensor.name, tensor.end)))?;
    Ok(dequantize(tensor.ggml_type, data))
}

struct Reader<'a> {
    bytes: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], GgufError> {
        let end = self.pos.checked_add(n).filter(|&end| end <= self.bytes.len()).ok_or(GgufError::Truncated(self.bytes.len()))?;
        let taken = &self.bytes[self.pos..end];
        self.pos = end;
        Ok(taken)
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], GgufError> {
        Ok(self.take(N)?.try_into().expect("took N bytes"))
    }

    fn u32(&mut self) -> Result<u32, GgufError> {
        self.array().map(u32::from_le_bytes)
    }

    fn u64(&mut self) -> Result<u64, GgufError> {
        self.array().map(u64::from_le_bytes)
    }

    /// Refuses `count` items of at least `min_bytes` each when the bytes left cannot hold them; a
    /// prefix of the file (more may come) is only refused past 2^40 bytes' worth.
    fn check_count(&self, count: u64, min_bytes: u64, what: &str) -> Result<(), GgufError> {
        let needed = count.saturating_mul(min_bytes);
        if needed > 1 << 40 {
            return Err(format(format!("the header claims {count} {what}: no real file holds that many")));
        }
        if needed > (self.bytes.len() - self.pos) as u64 {
            return Err(GgufError::Truncated(self.bytes.len()));
        }
        Ok(())
    }

    fn string(&mut self) -> Result<String, GgufError> {
        let len = self.u64()?;
        self.check_count(len, 1, "bytes in a string")?;
        let bytes = self.take(len as usize)?;
        String::from_utf8(bytes.to_vec()).map_err(|_| format(format!("a string at byte {} is not UTF-8", self.pos - bytes.len())))
    }

    fn value(&mut self, value_type: u32, key: &str) -> Result<GgufValue, GgufError> {
        Ok(match value_type {
            0 => GgufValue::U8(self.array::<1>()?[0]),
            1 => GgufValue::I8(i8::from_le_bytes(self.array()?)),
            2 => GgufValue::U16(u16::from_le_bytes(self.array()?)),
            3 => GgufValue::I16(i16::from_le_bytes(self.array()?)),
            4 => GgufValue::U32(self.u32()?),
            5 => GgufValue::I32(i32::from_le_bytes(self.array()?)),
            6 => GgufValue::F32(f32::from_le_bytes(self.array()?)),
            7 => GgufValue::Bool(self.array::<1>()?[0] != 0),
            8 => GgufValue::String(self.string()?),
            9 => {
                let item_type = self.u32()?;
                let len = self.u64()?;
                if item_type == 9 {
                    return Err(format(format!("metadata `{}` is an array of arrays, which GGUF files do not hold", shown(key))));
                }
                self.check_count(len, item_size(item_type), "array items")?;
                let items = (0..len).map(|_| self.value(item_type, key)).collect::<Result<_, _>>()?;
                GgufValue::Array(items)
            }
            10 => GgufValue::U64(self.u64()?),
            11 => GgufValue::I64(i64::from_le_bytes(self.array()?)),
            12 => GgufValue::F64(f64::from_le_bytes(self.array()?)),
            other => return Err(format(format!("metadata `{}` has value type {other}, which GGUF does not define", shown(key)))),
        })
    }
}

/// The fewest bytes one value of a type takes (a string: its 8-byte length).
fn item_size(value_type: u32) -> u64 {
    match value_type {
        0 | 1 | 7 => 1,
        2 | 3 => 2,
        4..=6 => 4,
        _ => 8,
    }
}

/// A GGUF file written from metadata and tensors (names as llama.cpp spells them, shapes
/// outermost first): f32 values, or bytes already in a ggml type.
#[derive(Debug, Default)]
pub struct GgufWriter {
    metadata: Vec<(String, GgufValue)>,
    tensors: Vec<(String, Vec<usize>, GgmlType, Vec<u8>)>,
}

impl GgufWriter {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn metadata(mut self, key: &str, value: GgufValue) -> Self {
        self.metadata.push((key.to_owned(), value));
        self
    }

    pub fn tensor(self, name: &str, shape: Vec<usize>, values: Vec<f32>) -> Self {
        self.typed_tensor(name, shape, GgmlType::F32, values.iter().flat_map(|v| v.to_le_bytes()).collect())
    }

    /// A tensor whose `bytes` are whole blocks of `ggml_type` (the caller made them so).
    pub fn typed_tensor(mut self, name: &str, shape: Vec<usize>, ggml_type: GgmlType, bytes: Vec<u8>) -> Self {
        self.tensors.push((name.to_owned(), shape, ggml_type, bytes));
        self
    }

    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::new();
        out.extend_from_slice(MAGIC);
        out.extend_from_slice(&3u32.to_le_bytes());
        out.extend_from_slice(&(self.tensors.len() as u64).to_le_bytes());
        out.extend_from_slice(&(self.metadata.len() as u64).to_le_bytes());
        for (key, value) in &self.metadata {
            write_string(&mut out, key);
            out.extend_from_slice(&value.type_id().to_le_bytes());
            write_value(&mut out, value);
        }
        let mut offset = 0u64;
        for (name, shape, ggml_type, bytes) in &self.tensors {
            write_string(&mut out, name);
            out.extend_from_slice(&(shape.len() as u32).to_le_bytes());
            for &d in shape.iter().rev() {
                out.extend_from_slice(&(d as u64).to_le_bytes());
            }
            out.extend_from_slice(&ggml_type.id().to_le_bytes());
            out.extend_from_slice(&offset.to_le_bytes());
            offset = (offset + bytes.len() as u64).next_multiple_of(DEFAULT_ALIGNMENT);
        }
        for (_, _, _, bytes) in &self.tensors {
            out.resize(out.len().next_multiple_of(DEFAULT_ALIGNMENT as usize), 0);
            out.extend_from_slice(bytes);
        }
        out
    }
}

fn write_string(out: &mut Vec<u8>, s: &str) {
    out.extend_from_slice(&(s.len() as u64).to_le_bytes());
    out.extend_from_slice(s.as_bytes());
}

fn write_value(out: &mut Vec<u8>, value: &GgufValue) {
    match value {
        GgufValue::U8(v) => out.push(*v),
        GgufValue::I8(v) => out.extend_from_slice(&v.to_le_bytes()),
        GgufValue::U16(v) => out.extend_from_slice(&v.to_le_bytes()),
        GgufValue::I16(v) => out.extend_from_slice(&v.to_le_bytes()),
        GgufValue::U32(v) => out.extend_from_slice(&v.to_le_bytes()),
        GgufValue::I32(v) => out.extend_from_slice(&v.to_le_bytes()),
        GgufValue::F32(v) => out.extend_from_slice(&v.to_le_bytes()),
        GgufValue::Bool(v) => out.push(u8::from(*v)),
        GgufValue::String(s) => write_string(out, s),
        GgufValue::Array(items) => {
            let item_type = items.first().map_or(4, GgufValue::type_id);
            out.extend_from_slice(&item_type.to_le_bytes());
            out.extend_from_slice(&(items.len() as u64).to_le_bytes());
            items.iter().for_each(|item| write_value(out, item));
        }
        GgufValue::U64(v) => out.extend_from_slice(&v.to_le_bytes()),
        GgufValue::I64(v) => out.extend_from_slice(&v.to_le_bytes()),
        GgufValue::F64(v) => out.extend_from_slice(&v.to_le_bytes()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file() -> Vec<u8> {
        GgufWriter::new()
            .metadata("general.architecture", GgufValue::String("llama".into()))
            .metadata("tokenizer.ggml.tokens", GgufValue::Array(vec![GgufValue::String("a".into()), GgufValue::String("b".into())]))
            .metadata("llama.rope.freq_base", GgufValue::F32(10000.0))
            .tensor("token_embd.weight", vec![2, 3], (0..6).map(|i| i as f32).collect())
            .tensor("output_norm.weight", vec![3], vec![1.0, 2.0, 3.0])
            .to_bytes()
    }

    #[test]
    fn what_the_writer_writes_the_reader_reads_back() {
        let bytes = file();
        let header = GgufHeader::read(&bytes).unwrap();
        assert_eq!(header.version, 3);
        assert_eq!(header.get("general.architecture").and_then(GgufValue::as_str), Some("llama"));
        assert_eq!(header.get("tokenizer.ggml.tokens").and_then(GgufValue::as_array).map(<[_]>::len), Some(2));
        let embd = header.tensor("token_embd.weight").unwrap();
        assert_eq!(embd.shape, vec![2, 3]);
        assert_eq!(tensor_f32(embd, &bytes, 0).unwrap(), vec![0.0, 1.0, 2.0, 3.0, 4.0, 5.0]);
        let norm = header.tensor("output_norm.weight").unwrap();
        assert_eq!(norm.start % 32, 0);
        assert_eq!(tensor_f32(norm, &bytes, 0).unwrap(), vec![1.0, 2.0, 3.0]);
        assert_eq!(header.data_end(), bytes.len());
    }

    #[test]
    fn every_cut_inside_the_header_is_truncated_and_never_a_panic() {
        let bytes = file();
        let data_start = GgufHeader::read(&bytes).unwrap().data_start;
        for cut in 0..data_start.min(bytes.len()) {
            match GgufHeader::read(&bytes[..cut]) {
                Err(GgufError::Truncated(_)) => {}
                // The padding before the data is not needed to read the table.
                Ok(_) => assert!(cut >= data_start - 32, "read a header from {cut} bytes"),
                Err(e) => panic!("cut at {cut}: {e}"),
            }
        }
    }

    #[test]
    fn absurd_counts_and_lengths_are_refused_without_allocating() {
        let mut bytes = b"GGUF".to_vec();
        bytes.extend_from_slice(&3u32.to_le_bytes());
        bytes.extend_from_slice(&u64::MAX.to_le_bytes());
        bytes.extend_from_slice(&0u64.to_le_bytes());
        assert!(GgufHeader::read(&bytes).unwrap_err().to_string().contains("tensors"));
        let mut bytes = b"GGUF".to_vec();
        bytes.extend_from_slice(&3u32.to_le_bytes());
        bytes.extend_from_slice(&0u64.to_le_bytes());
        bytes.extend_from_slice(&1u64.to_le_bytes());
        bytes.extend_from_slice(&(u64::MAX / 2).to_le_bytes());
        bytes.extend_from_slice(&[0; 16]);
        assert!(GgufHeader::read(&bytes).unwrap_err().to_string().contains("bytes in a string"));
        assert!(GgufHeader::read(b"GGML\x03\0\0\0").unwrap_err().to_string().contains("not a GGUF file"));
        assert!(GgufHeader::read(b"GGUF\x01\0\0\0").unwrap_err().to_string().contains("version 1"));
    }

    #[test]
    fn a_tensor_whose_size_does_not_fit_its_blocks_is_refused_naming_it() {
        let bytes = file();
        let mut header_bytes = bytes.clone();
        // Q8_0 (type 8) needs rows in blocks of 32 values; a 3-wide row is not.
        let name: &[u8] = b"output_norm.weight";
        // The name, its one dimension's count and size, then the type.
        let at = bytes.windows(name.len()).position(|w| w == name).unwrap() + name.len() + 4 + 8;
        header_bytes[at..at + 4].copy_from_slice(&8u32.to_le_bytes());
        let message = GgufHeader::read(&header_bytes).unwrap_err().to_string();
        assert!(message.contains("output_norm.weight") && message.contains("Q8_0"), "{message}");
        // Q3_K (type 11) is a ggml type we do not dequantise: refused when read, by name.
        header_bytes[at..at + 4].copy_from_slice(&11u32.to_le_bytes());
        let header = GgufHeader::read(&header_bytes).unwrap();
        let message = tensor_f32(header.tensor("output_norm.weight").unwrap(), &header_bytes, 0).unwrap_err().to_string();
        assert!(message.contains("is Q3_K, a type tinyrlhf does not read") && message.contains("Q4_K"), "{message}");
    }
}

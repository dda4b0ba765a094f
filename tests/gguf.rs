//! GGUF files — what llama.cpp, Ollama and LM Studio keep models in — read as model folders.
//! `fixtures/gguf/` was written by llama.cpp's own tools (`make.py` there): `quants.gguf` holds a
//! tensor of every type we read beside the `gguf` Python package's dequantisation of the same bytes,
//! and each Llama-family fixture folder, and the Gemma 3 one with a SentencePiece `tokenizer.model`,
//! went through `convert_hf_to_gguf.py` as F32 and Q8_0, so the folder's transformers logits, greedy
//! continuations and chat templates are what the GGUF must give; the ids transformers' own GGUF
//! tokenizer gives for the SentencePiece vocabulary are what ours must give.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, mpsc};

use burn::tensor::Device;
use burn::tensor::{Distribution, Tensor, TensorData};
use tinyrlhf_model::{
    GgmlType, GgufHeader, GgufModel, GgufStream, LoraConfig, PackedWeight, READ_TYPES, RowServer, SamplingConfig, ShardServer, dequantize,
    generate, load_peft_adapter, merged_gguf, quantize, save_peft_adapter, shard, tensor_f32, with_lora,
};
use tinyrlhf_rlhf::{LanguageModel, load_gguf_model};
use tinyrlhf_tests::{assert_close, gemma3_fixture_folders, llama_expected, llama_fixture_folders, llama_fixture_logits, load_folder};

fn gguf_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("fixtures/gguf")
}

fn read(path: &Path) -> Vec<u8> {
    std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn load(path: &Path) -> LanguageModel {
    let model = GgufModel::from_bytes(&read(path)).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    load_gguf_model(model, &Device::flex()).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// The GGUF conversion of a fixture folder, of `kind` (`f32`, `q8_0`).
fn converted(dir: &Path, kind: &str) -> PathBuf {
    gguf_dir().join(format!("{}.{kind}.gguf", dir.file_name().unwrap().to_string_lossy()))
}

/// The Llama folder with a SentencePiece vocabulary as TinyLlama and Llama 2 keep theirs.
fn llama_sentencepiece_folder() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("fixtures/hf-llama-sp/hf-llama2-sp")
}

/// Each fixture folder with its GGUF conversion of `kind`: the four Llama-family ones, the Gemma 3
/// folders that llama.cpp converts (one: the others use keys a GGUF cannot hold), and the Llama
/// folder with a SentencePiece vocabulary.
fn pairs(kind: &str) -> Vec<(PathBuf, PathBuf)> {
    let folders = llama_fixture_folders();
    assert!(folders.len() >= 4, "the Llama-family fixtures are missing");
    let gemma3: Vec<PathBuf> = gemma3_fixture_folders().into_iter().filter(|dir| converted(dir, kind).exists()).collect();
    assert_eq!(gemma3.len(), 1, "the Gemma 3 GGUF fixtures are missing");
    folders
        .into_iter()
        .chain(gemma3)
        .chain([llama_sentencepiece_folder()])
        .map(|dir| {
            let gguf = converted(&dir, kind);
            (dir, gguf)
        })
        .collect()
}

#[test]
fn every_supported_type_dequantises_to_the_gguf_packages_values() {
    let bytes = read(&gguf_dir().join("quants.gguf"));
    let header = GgufHeader::read(&bytes).unwrap();
    let mut checked = vec![];
    for tensor in header.tensors.iter().filter(|t| t.name.starts_with("q.")) {
        let kind = &tensor.name[2..];
        let expected = header.tensor(&format!("expected.{kind}")).unwrap();
        let (ours, theirs) = (tensor_f32(tensor, &bytes, 0).unwrap(), tensor_f32(expected, &bytes, 0).unwrap());
        assert_eq!(tensor.ggml_type.name(), kind);
        assert_eq!(ours.len(), theirs.len(), "{kind}");
        let differ = ours.iter().zip(&theirs).position(|(a, b)| a.to_bits() != b.to_bits());
        assert_eq!(differ, None, "{kind}: value {differ:?} differs: {:?}", differ.map(|i| (ours[i], theirs[i])));
        checked.push(kind.to_owned());
    }
    checked.sort();
    let mut all: Vec<String> = READ_TYPES.iter().filter(|t| **t != "F32").map(|t| t.to_string()).collect();
    all.sort();
    assert_eq!(checked, all, "every type read but F32 (the expected values' own type) has bytes to check");
}

#[test]
fn the_types_written_requantize_the_gguf_packages_bytes_to_the_same_bytes() {
    let bytes = read(&gguf_dir().join("quants.gguf"));
    let header = GgufHeader::read(&bytes).unwrap();
    let mut written = vec![];
    for tensor in header.tensors.iter().filter(|t| t.name.starts_with("q.")) {
        let original = &bytes[tensor.start..tensor.end];
        if let Some(again) = quantize(tensor.ggml_type, &dequantize(tensor.ggml_type, original)) {
            assert!(again == original, "{}: re-quantized bytes differ", tensor.name);
            written.push(tensor.ggml_type.name());
        }
    }
    written.sort();
    assert_eq!(written, ["BF16", "F16", "Q4_0", "Q8_0"]);
    assert_eq!(quantize(GgmlType::Q4K, &[0.0; 256]), None);
}

/// `adapter` (PEFT's safetensors) with every factor filled with varied values of about `size`.
fn randomized(adapter: &[u8], size: f32) -> Vec<u8> {
    let file = safetensors::SafeTensors::deserialize(adapter).unwrap();
    let mut named = file.tensors();
    named.sort_by(|a, b| a.0.cmp(&b.0)); // the same values for the same name, run after run
    let tensors: Vec<(String, Vec<usize>, Vec<u8>)> = named
        .into_iter()
        .enumerate()
        .map(|(t, (name, view))| {
            let n = view.shape().iter().product::<usize>();
            let values = (0..n).flat_map(|i| ((((i * 7919 + t * 104_729) % 2003) as f32 / 1001.0 - 1.0) * size).to_le_bytes()).collect();
            (name, view.shape().to_vec(), values)
        })
        .collect();
    let views: Vec<(String, safetensors::tensor::TensorView)> = tensors
        .iter()
        .map(|(name, shape, bytes)| {
            (name.clone(), safetensors::tensor::TensorView::new(safetensors::Dtype::F32, shape.clone(), bytes).unwrap())
        })
        .collect();
    safetensors::serialize(views, None).unwrap()
}

#[test]
fn a_merged_gguf_keeps_the_bases_types_and_computes_as_the_base_with_its_adapter() {
    let lora = LoraConfig { rank: 4, alpha: 8.0 };
    for kind in ["f32", "q8_0"] {
        for (dir, gguf) in pairs(kind) {
            let bytes = read(&gguf);
            let base = load(&gguf);
            let (adapter_config, fresh) = pollster::block_on(save_peft_adapter(&with_lora(base.model.clone(), &lora), &lora)).unwrap();
            let adapter = randomized(&fresh, 0.05);
            let (_, adapted) = load_peft_adapter(base.model.clone(), adapter_config.as_bytes(), &adapter).unwrap();
            let adapted = LanguageModel { model: adapted, ..base.clone() };

            let merged = merged_gguf(&bytes, &base.config, &adapter, &lora).unwrap();
            assert!(merged.requantized.is_empty(), "{}: {:?}", gguf.display(), merged.requantized);
            let types =
                |bytes: &[u8]| GgufHeader::read(bytes).unwrap().tensors.into_iter().map(|t| (t.name, t.ggml_type)).collect::<Vec<_>>();
            assert_eq!(types(&merged.bytes), types(&bytes), "{}: every tensor keeps its type", gguf.display());
            let merged = load_gguf_model(GgufModel::from_bytes(&merged.bytes).unwrap(), &Device::flex()).unwrap();

            let vocab = base.config.vocab_size();
            let (with_adapter, _, mask) = llama_fixture_logits(&adapted, &dir);
            let (ours, _, _) = llama_fixture_logits(&merged, &dir);
            let (before, _, _) = llama_fixture_logits(&base, &dir);
            let kept: Vec<usize> = (0..ours.len()).filter(|&i| mask.values[i / vocab] == 1.0).collect();
            let worst = |a: &[f32]| kept.iter().map(|&i| (a[i] - with_adapter[i]).abs()).fold(0.0f32, f32::max);
            let spread = kept.iter().map(|&i| with_adapter[i].abs()).fold(0.0f32, f32::max);
            // F32 merges exactly (up to summation order); Q8_0 rounds each merged block again (the
            // tolerance of a Q8_0 file against full precision, as above).
            let tolerance = if kind == "f32" { 1e-4 * (1.0 + spread) } else { 0.05 * spread };
            assert!(worst(&ours) <= tolerance, "{}: merged logits off by {} (tolerance {tolerance})", gguf.display(), worst(&ours));
            // And the adapter matters: the base alone is much further from it than the merged file.
            assert!(worst(&before) > 5.0 * worst(&ours), "{}: the adapter changes the logits by only {}", gguf.display(), worst(&before));
        }
    }
}

#[test]
fn a_weight_kept_packed_multiplies_and_passes_gradients_as_its_dequantized_copy() {
    let bytes = read(&gguf_dir().join("quants.gguf"));
    let header = GgufHeader::read(&bytes).unwrap();
    let device = Device::flex().autodiff();
    for tensor in header.tensors.iter().filter(|t| t.name.starts_with("q.")) {
        let kind = &tensor.name[2..];
        let [rows, cols] = [tensor.shape[0], tensor.shape[1]];
        let packed = PackedWeight::new(tensor.ggml_type, bytes[tensor.start..tensor.end].to_vec(), [rows, cols]).unwrap();
        let dense = Tensor::<2>::from_data(TensorData::new(tensor_f32(tensor, &bytes, 0).unwrap(), [rows, cols]), &device); // [out, in]
        let x = Tensor::<2>::random([3, cols], Distribution::Normal(0.0, 1.0), &device);
        let upstream = Tensor::<2>::random([3, rows], Distribution::Normal(0.0, 1.0), &device);
        let through = |product: &dyn Fn(Tensor<2>) -> Tensor<2>| {
            let x = x.clone().require_grad();
            let y = product(x.clone());
            let grads = (y.clone() * upstream.clone()).sum().backward();
            (y.into_data().try_to_vec::<f32>().unwrap(), x.grad(&grads).unwrap().into_data().try_to_vec::<f32>().unwrap())
        };
        let (y_packed, grad_packed) = through(&|x| packed.matmul(x));
        let (y_dense, grad_dense) = through(&|x| x.matmul(dense.clone().transpose()));
        // A few rows are dotted with each widened row in 16 lanes, not by the matrix kernel: the
        // same values summed in another order.
        assert_close(&format!("{kind} product"), &y_packed, &y_dense.iter().map(|&v| v as f64).collect::<Vec<_>>(), |_| true, 1e-4, 1e-4);
        assert_close(
            &format!("{kind} input gradient"),
            &grad_packed,
            &grad_dense.iter().map(|&v| v as f64).collect::<Vec<_>>(),
            |_| true,
            1e-5,
            1e-5,
        );
    }
}

/// A [`RowServer`] whose helpers are threads, each with a [`ShardServer`] of its own: the tab's
/// workers holding a base among them, without a browser. Every matrix of 3 rows or more is cut, and
/// exchanges of more than `capacity` bytes go in pieces.
struct ThreadHelpers {
    helpers: Vec<Helper>,
    capacity: usize,
}

/// Where a helper thread's messages go, and where its answers come from.
struct Helper {
    ask: Mutex<mpsc::Sender<Message>>,
    answers: Mutex<mpsc::Receiver<Vec<u8>>>,
}

enum Message {
    Hold(u32, PackedWeight),
    Ask(Vec<u8>),
}

impl ThreadHelpers {
    fn started(count: usize, capacity: usize) -> Arc<dyn RowServer> {
        let helpers = (0..count)
            .map(|_| {
                let (ask, asked) = mpsc::channel::<Message>();
                let (answer, answers) = mpsc::channel();
                std::thread::spawn(move || {
                    let mut server = ShardServer::new();
                    for message in asked {
                        match message {
                            Message::Hold(id, part) => server.hold(id, part.ggml_type(), part.bytes().to_vec(), part.shape()).unwrap(),
                            Message::Ask(request) => answer.send(server.answer(&request).unwrap()).unwrap(),
                        }
                    }
                });
                Helper { ask: Mutex::new(ask), answers: Mutex::new(answers) }
            })
            .collect();
        Arc::new(Self { helpers, capacity })
    }
}

impl RowServer for ThreadHelpers {
    fn helpers(&self) -> usize {
        self.helpers.len()
    }

    fn capacity(&self) -> usize {
        self.capacity
    }

    fn min_part_rows(&self) -> usize {
        1
    }

    fn hold(&self, helper: usize, id: u32, part: PackedWeight) -> Result<(), String> {
        self.helpers[helper].ask.lock().unwrap().send(Message::Hold(id, part)).map_err(|e| e.to_string())
    }

    fn send(&self, helper: usize, request: &[u8]) {
        self.helpers[helper].ask.lock().unwrap().send(Message::Ask(request.to_vec())).unwrap();
    }

    fn receive(&self, helper: usize) -> Result<Vec<u8>, String> {
        self.helpers[helper].answers.lock().unwrap().recv().map_err(|e| e.to_string())
    }
}

fn bits(t: Tensor<2>) -> Vec<u32> {
    t.into_data().try_to_vec::<f32>().unwrap().iter().map(|v| v.to_bits()).collect()
}

#[test]
fn a_matrix_cut_among_workers_computes_looks_up_and_passes_gradients_as_the_matrix_held_whole() {
    let bytes = read(&gguf_dir().join("quants.gguf"));
    let header = GgufHeader::read(&bytes).unwrap();
    let helpers = ThreadHelpers::started(2, 5120);
    let (device, tracked) = (Device::flex(), Device::flex().autodiff());
    for (id, tensor) in header.tensors.iter().filter(|t| t.name.starts_with("q.")).enumerate() {
        let kind = &tensor.name[2..];
        let [rows, cols] = [tensor.shape[0], tensor.shape[1]];
        let whole = PackedWeight::new(tensor.ggml_type, bytes[tensor.start..tensor.end].to_vec(), [rows, cols]).unwrap();
        let cut = shard(whole.clone(), &helpers, id as u32).unwrap();
        assert!(cut.bytes().len() * 2 < whole.bytes().len(), "{kind} {:?}: this worker keeps a third of the rows", whole.shape());
        assert_eq!((cut.shape(), cut.held_bytes()), (whole.shape(), whole.bytes().len() as u64), "{kind}");
        assert_eq!(cut.values(), whole.values(), "{kind}: every row, wherever it is held");
        // Decoding's products (a few rows, nothing tracked): the same bits, alone and together.
        for n in [1, 3] {
            let x = Tensor::<2>::random([n, cols], Distribution::Normal(0.0, 1.0), &device);
            assert_eq!(bits(cut.matmul(x.clone())), bits(whole.matmul(x.clone())), "{kind}, {n} rows");
            let [a, b] =
                PackedWeight::decode_together([&cut, &whole], &x).unwrap_or_else(|| [cut.matmul(x.clone()), whole.matmul(x.clone())]);
            assert_eq!(bits(a), bits(b), "{kind}, {n} rows together");
        }
        // Training's: many rows, the input's gradient the parts' sum.
        let x = Tensor::<2>::random([20, cols], Distribution::Normal(0.0, 1.0), &tracked);
        let upstream = Tensor::<2>::random([20, rows], Distribution::Normal(0.0, 1.0), &tracked);
        let through = |w: &PackedWeight| {
            let x = x.clone().require_grad();
            let y = w.matmul(x.clone());
            let grads = (y.clone() * upstream.clone()).sum().backward();
            (y.into_data().try_to_vec::<f32>().unwrap(), x.grad(&grads).unwrap().into_data().try_to_vec::<f32>().unwrap())
        };
        let ((y_cut, grad_cut), (y_whole, grad_whole)) = (through(&cut), through(&whole));
        // The matrix kernel sums a part's products in its own order: the same values, summed apart.
        let wide = |v: Vec<f32>| v.into_iter().map(f64::from).collect::<Vec<_>>();
        assert_close(&format!("{kind} product"), &y_cut, &wide(y_whole), |_| true, 1e-4, 1e-4);
        assert_close(&format!("{kind} input gradient"), &grad_cut, &wide(grad_whole), |_| true, 1e-4, 1e-4);
        let ids = Tensor::<1, burn::tensor::Int>::from_data(
            TensorData::new(vec![0i64, rows as i64 - 1, rows as i64 / 2, rows as i64], [4]),
            &device,
        );
        assert_eq!(bits(cut.rows(ids.clone())), bits(whole.rows(ids)), "{kind}: looked-up rows, one past the end zeros");
    }
}

#[test]
fn a_base_cut_among_workers_as_it_loads_gives_the_logits_and_greedy_answers_of_the_base_held_whole() {
    for (dir, gguf) in pairs("q8_0") {
        let whole = load(&gguf);
        let mut stream = GgufStream::sharing_rows(ThreadHelpers::started(2, 8192));
        stream.push(&read(&gguf)).unwrap();
        let cut = load_gguf_model(stream.finish().unwrap(), &Device::flex()).unwrap();
        let packed = cut.model.packed();
        assert!(packed.iter().all(|w| (w.bytes().len() as u64) < w.held_bytes()), "{}: every packed matrix is cut", gguf.display());
        assert_computes_as(&cut, &whole, &dir, &format!("{} cut", gguf.display()));
    }
}

/// `ours` gives `theirs`'s logits on the fixture folder `dir`'s inputs (within 1e-5) and its
/// greedy answers to the folder's prompts.
fn assert_computes_as(ours: &LanguageModel, theirs: &LanguageModel, dir: &Path, what: &str) {
    let (our_logits, _, mask) = llama_fixture_logits(ours, dir);
    let (their_logits, _, _) = llama_fixture_logits(theirs, dir);
    let vocab = ours.config.vocab_size();
    let their_logits: Vec<f64> = their_logits.iter().map(|&v| v as f64).collect();
    assert_close(&format!("{what} logits"), &our_logits, &their_logits, |i| mask.values[i / vocab] == 1.0, 1e-5, 1e-5);
    let prompts: Vec<Vec<u32>> = serde_json::from_value(llama_expected(dir)["greedy_prompts"].clone()).unwrap();
    let greedy = SamplingConfig { temperature: 0.0, max_new_tokens: 8, ..SamplingConfig::default() };
    let pad = theirs.tokenizer.special_ids().pad;
    let answers = |model: &LanguageModel| pollster::block_on(generate(&model.model, &prompts, u32::MAX, pad, &greedy)).unwrap().tokens;
    assert_eq!(answers(ours), answers(theirs), "{what}");
}

#[test]
fn every_folder_converted_by_llama_cpp_gives_transformers_logits() {
    for (dir, gguf) in pairs("f32") {
        let model = load(&gguf);
        let vocab = model.config.vocab_size();
        let (ours, theirs, mask) = llama_fixture_logits(&model, &dir);
        assert_close(&format!("{} logits", gguf.display()), &ours, &theirs.values, |i| mask.values[i / vocab] == 1.0, 1e-4, 1e-5);
    }
}

#[test]
fn a_q8_0_file_stays_near_the_full_precision_logits() {
    for (dir, gguf) in pairs("q8_0") {
        let model = load(&gguf);
        let vocab = model.config.vocab_size();
        let (ours, theirs, mask) = llama_fixture_logits(&model, &dir);
        let kept: Vec<usize> = (0..ours.len()).filter(|&i| mask.values[i / vocab] == 1.0).collect();
        let worst = kept.iter().map(|&i| (ours[i] as f64 - theirs.values[i]).abs()).fold(0.0, f64::max);
        let spread = kept.iter().map(|&i| theirs.values[i].abs()).fold(0.0, f64::max);
        assert!(worst < 0.05 * spread, "{}: worst logit error {worst} against logits up to {spread}", gguf.display());
    }
}

#[test]
fn a_quantized_file_keeps_its_projections_and_embeddings_packed_and_computes_as_its_f32_widening() {
    for (dir, gguf) in pairs("q8_0") {
        let packed = load(&gguf);
        let layers = packed.config.num_layers();
        // Every projection, and the embeddings (Q8_0, or F16 where their width is not whole blocks).
        assert_eq!(packed.model.packed().len(), 7 * layers + 1, "{}: every projection and the embeddings stay packed", gguf.display());
        let widened = LanguageModel { model: packed.model.clone().merged(), ..packed.clone() };
        assert!(widened.model.packed().is_empty());
        assert_computes_as(&packed, &widened, &dir, &format!("{} packed", gguf.display()));
    }
}

#[test]
fn a_model_quantized_in_memory_computes_as_its_packed_weights_widened_and_q8_0_stays_near_f32() {
    let device = Device::flex();
    let config = tinyrlhf_model::ModelConfig::preset("llama-tiny", 256).unwrap();
    let f32_model = tinyrlhf_model::drawn(config.init(&device));
    let ids =
        Tensor::<2, burn::tensor::Int>::from_data(TensorData::new((0..24).map(|i| (i * 37 % 256) as i64).collect(), [2, 12]), &device);
    let positions =
        Tensor::<2, burn::tensor::Int>::from_data(TensorData::new((0..24).map(|i| i % 12).collect::<Vec<i64>>(), [2, 12]), &device);
    let logits = |model: &tinyrlhf_model::CausalLm| -> Vec<f32> {
        model.logits(model.forward(ids.clone(), positions.clone(), None)).into_data().try_to_vec::<f32>().unwrap()
    };
    let full = logits(&f32_model);
    let spread = full.iter().fold(0.0f32, |m, v| m.max(v.abs())) as f64;
    for (projections, worst_allowed) in [(GgmlType::Q8_0, 0.02), (GgmlType::Q4_0, 0.5)] {
        let packed = f32_model.clone().quantized(projections, GgmlType::Q8_0).expect("llama-tiny's rows are whole blocks");
        assert_eq!(packed.packed().len(), 7 * config.num_layers() + 1, "{projections:?}: every projection and the embedding packed");
        let ours = logits(&packed);
        let widened: Vec<f64> = logits(&packed.clone().merged()).iter().map(|&v| v as f64).collect();
        assert_close(&format!("{projections:?} packed logits"), &ours, &widened, |_| true, 1e-4, 1e-4);
        let worst = ours.iter().zip(&full).map(|(a, b)| (a - b).abs() as f64).fold(0.0, f64::max);
        assert!(worst > 0.0 && worst < worst_allowed * spread, "{projections:?}: worst logit error {worst} of {spread}");
    }
    let packed_already = f32_model.quantized(GgmlType::Q8_0, GgmlType::Q8_0).unwrap();
    assert!(packed_already.quantized(GgmlType::Q4_0, GgmlType::Q8_0).is_none(), "a packed base is not packed again");
}

#[test]
fn the_header_alone_says_what_the_weights_take_held_projections_in_the_files_precision() {
    for ((_, q8), (_, f32s)) in pairs("q8_0").into_iter().zip(pairs("f32")) {
        let held = |path: &Path| {
            let bytes = read(path);
            let header = GgufHeader::read(&bytes).unwrap();
            let mut stream = GgufStream::new();
            stream.push(&bytes[..header.data_start]).unwrap(); // the header, no weights yet
            let from_header = stream.held_bytes().expect("the header has arrived");
            stream.push(&bytes[header.data_start..]).unwrap();
            assert_eq!(stream.finish().unwrap().weights.held_bytes(), from_header, "{}", path.display());
            from_header
        };
        let (q8, f32s) = (held(&q8), held(&f32s));
        // Q8_0 keeps 34 bytes per 32 values of each projection; the rest stays f32.
        assert!(q8 < f32s && q8 > f32s * 34 / 128, "{q8} vs {f32s}");
    }
}

#[test]
fn greedy_answers_special_tokens_and_chat_template_are_the_folders() {
    for (dir, gguf) in pairs("f32") {
        let (model, folder) = (load(&gguf), load_folder(&dir, "config.json"));
        let expected = llama_expected(&dir);
        assert_eq!(model.tokenizer.special_ids(), folder.tokenizer.special_ids(), "{}", gguf.display());
        assert_eq!(model.tokenizer.chat_template().source(), folder.tokenizer.chat_template().source());
        for case in expected["template_cases"].as_array().unwrap() {
            let ids: Vec<u32> = serde_json::from_value(case["ids"].clone()).unwrap();
            assert_eq!(model.tokenizer.encode(case["text"].as_str().unwrap()).unwrap(), ids, "{}", gguf.display());
        }
        let prompts: Vec<Vec<u32>> = serde_json::from_value(expected["greedy_prompts"].clone()).unwrap();
        let batched: Vec<Vec<u32>> = serde_json::from_value(expected["greedy_batched_left_padded"].clone()).unwrap();
        let new_tokens = expected["greedy_new_tokens"].as_u64().unwrap() as usize;
        let greedy = SamplingConfig { temperature: 0.0, max_new_tokens: new_tokens, ..SamplingConfig::default() };
        let pad = model.tokenizer.special_ids().pad;
        let together = pollster::block_on(generate(&model.model, &prompts, u32::MAX, pad, &greedy)).unwrap();
        assert_eq!(together.tokens, batched, "{}", gguf.display());
    }
}

#[test]
fn broken_files_are_refused_with_the_reason() {
    let (_, gguf) = &pairs("q8_0")[0];
    let bytes = read(gguf);
    let refused = |bytes: &[u8]| GgufModel::from_bytes(bytes).map(|_| ()).unwrap_err().to_string();
    let message = refused(&bytes[..bytes.len() - 10]);
    assert!(message.contains("inside tensor"), "{message}");
    let message = refused(&bytes[..1000]);
    assert!(message.contains("inside its header"), "{message}");
    let mut other = bytes.clone();
    let at = other.windows(5).position(|w| w == b"llama").unwrap();
    other[at..at + 5].copy_from_slice(b"mamba");
    let message = refused(&other);
    assert!(message.contains("\"mamba\"") && message.contains("qwen2"), "{message}");
}

#[test]
fn a_sentencepiece_vocabulary_encodes_as_transformers_builds_it_from_the_file() {
    // Gemma's layout (no space before the first word), and Llama 2's and TinyLlama's (a `▁` before it).
    for name in ["hf-gemma3-sp", "hf-llama2-sp"] {
        let dir = gguf_dir();
        let cases: serde_json::Value = serde_json::from_slice(&read(&dir.join(format!("{name}.tokens.json")))).unwrap();
        let model = load(&dir.join(format!("{name}.f32.gguf")));
        for case in cases["cases"].as_array().unwrap() {
            let text = case["text"].as_str().unwrap();
            let ids = |key: &str| -> Vec<u32> { serde_json::from_value(case[key].clone()).unwrap() };
            assert_eq!(model.tokenizer.encode(text).unwrap(), ids("gguf_ids"), "{name}: {text:?}");
            assert_eq!(ids("gguf_ids"), ids("folder_ids"), "{name}: {text:?}: the file's vocabulary is the folder's");
            let with_bos = ids("gguf_ids_with_special");
            assert_eq!(model.tokenizer.encode_continuation(text).unwrap(), with_bos, "{name}: {text:?}: BOS as the file says");
            assert_eq!(model.tokenizer.decode(&ids("gguf_ids")).unwrap(), case["gguf_decoded"].as_str().unwrap(), "{name}: {text:?}");
        }
    }
}

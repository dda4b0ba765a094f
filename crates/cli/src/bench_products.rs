//! `bench --products`: the training step's matrix products, each timed alone in the layout the step
//! gives it, so a step's time splits into the matrix kernel's share and the rest on this machine.
//! `bench/llama_step.py --products` times PyTorch's same products, and `--compare` sets them side
//! by side: whether a CPU where the step lags is the matrix kernel's doing or the other passes'.
//!
//! A weight `W` `[in, out]` takes three products a step: the forward `x @ W`, the backward's
//! `g @ W^T` (the input's gradient) and `x^T @ g` (the weight's), the transposes being views of the
//! stored tensors as autodiff hands them to the CPU backend's `gemm`. The tied LM head is such a
//! `W`, the embedding's transpose `E^T` `[d, vocab]` (a view of `E` `[vocab, d]`, as the model
//! multiplies by it), whose weight gradient the CPU backend computes as `g^T @ x`, in the
//! embedding's own layout (`crates/model/src/tied_head.rs`).

use std::collections::BTreeMap;
use std::time::Instant;

use burn::tensor::{Device, Distribution, Tensor};
use tinyrlhf_model::ModelConfig;

/// One weight's three products at the step's number of tokens.
#[derive(Debug, serde::Serialize)]
pub(crate) struct Product {
    /// The HF module name with the layer's index as `*` (`model.layers.*.mlp.up_proj`), or `lm_head`.
    name: String,
    /// `[in, out]`.
    dims: [usize; 2],
    /// How many weights of this name a step multiplies by (the layers).
    count: usize,
    forward_ms: f64,
    input_grad_ms: f64,
    weight_grad_ms: f64,
}

impl Product {
    /// Milliseconds of one step's products of this name (its three, times its count).
    fn step_ms(&self) -> f64 {
        (self.forward_ms + self.input_grad_ms + self.weight_grad_ms) * self.count as f64
    }

    fn gflop_s(&self, tokens: usize, ms: f64) -> f64 {
        2.0 * (tokens * self.dims[0] * self.dims[1]) as f64 / ms / 1e6
    }
}

/// The products of a training step on `tokens` positions.
#[derive(Debug, serde::Serialize)]
pub(crate) struct Products {
    tokens: usize,
    rows: Vec<Product>,
    /// Every product of one step, summed.
    step_ms: f64,
}

/// Times each weight's products once per distinct name and shape: the model's own projections, as
/// it lists them, and its LM head. The products take turns, `runs` rounds after a warm-up one, and
/// each keeps its median: a burst of noise on a shared machine (a core taken away for a tenth of a
/// second) then slows one round of every product rather than every run of one.
pub(crate) fn train_step_products(config: &ModelConfig, device: &Device, tokens: usize, runs: usize) -> Products {
    let model = config.init(device);
    let mut shapes: BTreeMap<(String, [usize; 2]), usize> = BTreeMap::new();
    for (name, dims) in model.projection_dims() {
        *shapes.entry((layer_wildcard(&name), dims)).or_default() += 1;
    }
    let mut weights: Vec<(String, [usize; 2], usize)> = shapes.into_iter().map(|((name, dims), count)| (name, dims, count)).collect();
    weights.push(("lm_head".into(), [config.width(), config.vocab_size()], 1));
    // Each weight's operands: x [tokens, in], g [tokens, out] and the weight as the step holds it
    // ([in, out]; the head's the embedding [vocab, d], transposed).
    let operands: Vec<[Tensor<2>; 3]> = weights
        .iter()
        .map(|(name, [d_in, d_out], _)| {
            let w = if name == "lm_head" { random([*d_out, *d_in], device).transpose() } else { random([*d_in, *d_out], device) };
            [random([tokens, *d_in], device), random([tokens, *d_out], device), w]
        })
        .collect();
    let head = weights.len() - 1;
    let three = |i: usize, which: usize| -> Tensor<2> {
        let [x, g, w] = operands[i].clone();
        match which {
            0 => x.matmul(w),
            1 => g.matmul(w.transpose()),
            _ if i == head => g.transpose().matmul(x),
            _ => x.transpose().matmul(g),
        }
    };
    let mut times = vec![[const { Vec::new() }; 3]; weights.len()];
    for round in 0..=runs.max(1) {
        for (i, product_times) in times.iter_mut().enumerate() {
            for (which, product_time) in product_times.iter_mut().enumerate() {
                let start = Instant::now();
                wait(three(i, which));
                if round > 0 {
                    product_time.push(start.elapsed().as_secs_f64() * 1e3);
                }
            }
        }
    }
    let rows: Vec<Product> = weights
        .into_iter()
        .zip(times)
        .map(|((name, dims, count), [forward, input_grad, weight_grad])| Product {
            name,
            dims,
            count,
            forward_ms: median(forward),
            input_grad_ms: median(input_grad),
            weight_grad_ms: median(weight_grad),
        })
        .collect();
    let step_ms = rows.iter().map(Product::step_ms).sum();
    Products { tokens, rows, step_ms }
}

/// `model.layers.12.mlp.up_proj` -> `model.layers.*.mlp.up_proj`.
fn layer_wildcard(name: &str) -> String {
    name.split('.').map(|part| if part.parse::<usize>().is_ok() { "*" } else { part }).collect::<Vec<_>>().join(".")
}

fn random(shape: [usize; 2], device: &Device) -> Tensor<2> {
    Tensor::random(shape, Distribution::Normal(0.0, 1.0), device)
}

/// Waits for a product (reading one value waits for a GPU; the CPU backend computes eagerly).
fn wait(out: Tensor<2>) {
    let _: f32 = out.slice([0..1, 0..1]).into_scalar();
}

fn median(mut times: Vec<f64>) -> f64 {
    times.sort_by(f64::total_cmp);
    times[times.len() / 2]
}

/// The table `bench --products` prints under the preset's figures: each product's time and rate,
/// and what share of the training step the products are.
pub(crate) fn print(products: &Products, train_step_ms: Option<f64>) {
    println!("  the train step's matrix products on {} tokens, each timed alone (ms, GFLOP/s):", products.tokens);
    for p in &products.rows {
        let rates =
            [p.forward_ms, p.input_grad_ms, p.weight_grad_ms].map(|ms| format!("{ms:>7.2} ({:>4.0})", p.gflop_s(products.tokens, ms)));
        println!(
            "    {:<32} {:>5} x {:<6} x{:<3} x@W {}  g@W^T {}  x^T@g {}",
            p.name, p.dims[0], p.dims[1], p.count, rates[0], rates[1], rates[2]
        );
    }
    match train_step_ms {
        Some(step) => println!(
            "    all of one step's products: {:.0} ms of the step's {step:.0} ms ({:.0}%); the rest {:.0} ms",
            products.step_ms,
            100.0 * products.step_ms / step,
            step - products.step_ms
        ),
        None => println!("    all of one step's products: {:.0} ms", products.step_ms),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_layer_index_becomes_a_wildcard_and_nothing_else_changes() {
        assert_eq!(layer_wildcard("model.layers.12.mlp.up_proj"), "model.layers.*.mlp.up_proj");
        assert_eq!(layer_wildcard("transformer.h.0.attn.c_attn"), "transformer.h.*.attn.c_attn");
        assert_eq!(layer_wildcard("lm_head"), "lm_head");
    }
}

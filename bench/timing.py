"""What the PyTorch peers share with `tinyrlhf bench`: the median after a warm-up, and the same
deterministic token ids (a cheap hash, not good randomness: the benchmark needs varied ids)."""
import statistics
import time

import torch

# Where the peers run: `--device cuda` in either script sets it (the GPU benchmark, bench/gpu/).
DEVICE = torch.device("cpu")


def use_device(name):
    """Runs every peer on `name` (`cpu` or `cuda`); says which GPU on CUDA."""
    global DEVICE
    DEVICE = torch.device(name)
    if DEVICE.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = False  # f32 as tinyrlhf computes it, not TF32
        torch.backends.cudnn.allow_tf32 = False
        return f"PyTorch {torch.__version__} CUDA on {torch.cuda.get_device_name(DEVICE)}, f32 (TF32 off)"
    # The SIMD level of PyTorch's own CPU kernels (its ATen dispatch), beside tinyrlhf's in `compare`.
    capability = torch.backends.cpu.get_cpu_capability()
    return f"PyTorch {torch.__version__} CPU ({capability} kernels), {torch.get_num_threads()} threads"


def device():
    return DEVICE


def add_device_flags(parser):
    """The flags both peers take for the GPU benchmark."""
    parser.add_argument("--device", choices=["cpu", "cuda"], default="cpu", help="where PyTorch runs")
    parser.add_argument("--backend", default="cpu", help="tinyrlhf's backend with --compare: cpu, wgpu or cuda")
    parser.add_argument("--json-out", metavar="FILE", help="with --compare: the compared figures as JSON")


def sync():
    if DEVICE.type == "cuda":
        torch.cuda.synchronize(DEVICE)


def median_time(runs, fn):
    fn()
    sync()
    times = []
    for _ in range(max(runs, 1)):
        start = time.perf_counter()
        fn()
        sync()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def train_step_products(model, n_tokens, runs):
    """The training step's matrix products, each timed alone as `tinyrlhf bench --products` times its
    own: for every `nn.Linear` of the model (named as HF names it, the layer's index as `*`) the
    forward `x @ W^T`, the input's gradient `g @ W` and the weight's `g^T @ x`, as autograd computes
    them; for the tied LM head the same with the embedding. The products take turns, `runs` rounds
    after a warm-up one, each keeping its median. Returns {name: {dims, count, *_ms}}."""
    import re

    shapes = {}
    for name, module in model.named_modules():
        if isinstance(module, torch.nn.Linear) and name != "lm_head":
            out_features, in_features = module.weight.shape
            key = (re.sub(r"\.\d+\.", ".*.", name), in_features, out_features)
            shapes[key] = shapes.get(key, 0) + 1
    weights = [(name, d_in, d_out, count) for (name, d_in, d_out), count in sorted(shapes.items())]
    embedding = model.get_input_embeddings().weight
    weights.append(("lm_head", embedding.shape[1], embedding.shape[0], 1))
    operands = [(torch.randn(n_tokens, d_in, device=DEVICE), torch.randn(n_tokens, d_out, device=DEVICE),
                 torch.randn(d_out, d_in, device=DEVICE)) for _, d_in, d_out, _ in weights]
    products = [lambda x, g, w: x @ w.t(), lambda x, g, w: g @ w, lambda x, g, w: g.t() @ x]
    times = [[[] for _ in products] for _ in weights]
    for round_ in range(max(runs, 1) + 1):
        for i, (x, g, w) in enumerate(operands):
            for j, product in enumerate(products):
                sync()
                start = time.perf_counter()
                product(x, g, w)
                sync()
                if round_ > 0:
                    times[i][j].append((time.perf_counter() - start) * 1e3)
    return {name: {"dims": [d_in, d_out], "count": count, "forward_ms": statistics.median(t[0]),
                   "input_grad_ms": statistics.median(t[1]), "weight_grad_ms": statistics.median(t[2])}
            for (name, d_in, d_out, count), t in zip(weights, times)}


def step_ms(product):
    """One step's milliseconds of a product row: its three products times its count."""
    return (product["forward_ms"] + product["input_grad_ms"] + product["weight_grad_ms"]) * product["count"]


def tokens(rows, length, vocab, salt):
    i = torch.arange(rows * length, dtype=torch.int64)
    return ((i * 2654435761 + salt * 40503) % vocab).view(rows, length).to(DEVICE)


def train_step_secs(logits_of, parameters, batch, seq, vocab, steps):
    """Median seconds of a language-modelling step on `batch` x `seq` tokens: `logits_of(ids)`
    [b, t, vocab], next-token cross-entropy, backward, AdamW on `parameters`."""
    import torch.nn.functional as F

    optim = torch.optim.AdamW(parameters, lr=3e-4)
    step_i = [0]

    def step():
        ids = tokens(batch, seq + 1, vocab, step_i[0])
        step_i[0] += 1
        loss = F.cross_entropy(logits_of(ids[:, :-1]).reshape(-1, vocab), ids[:, 1:].reshape(-1))
        optim.zero_grad(set_to_none=True)
        loss.backward()
        optim.step()
        loss.item()

    step()
    return median_time(steps, step)


def compare(cmd, torch_figures, backend="cpu", json_out=None):
    """Runs tinyrlhf's benchmark (`cmd`, its `bench --json` with the peer's settings) on `backend`;
    prints tok/s of both and their ratio, figure by figure, and writes the rows to `json_out`.
    tinyrlhf's stderr (on a GPU: its agreement with the CPU) passes through."""
    import json
    import subprocess

    # Only the training step, the LoRA DPO step and decoding have peers here: the per-method figures
    # (PPO, GRPO, RLOO, DPO iterations) would only lengthen the run (minutes on a software GPU).
    out = json.loads(subprocess.run(cmd + ["--backend", backend, "--ppo-iterations", "0"], check=True,
                                    stdout=subprocess.PIPE, text=True).stdout)
    rows = []
    for run in out["runs"]:
        f, preset = run["figures"], run["preset"]
        ours = []
        if f.get("train_step"):
            t = f["train_step"]
            ours.append(("train_step", t["batch"], t["tok_s"], t.get("kernels")))
        if f.get("lora_dpo_step"):
            d = f["lora_dpo_step"]
            ours.append(("lora_dpo_step", d["pairs"], d["tok_s"], d.get("kernels")))
        if f.get("quantized_lora_dpo_step"):
            # Against the peer's f32 step: what a person holding a quantized file gets, against
            # what PyTorch needs a full-precision copy for.
            d = f["quantized_lora_dpo_step"]
            ours.append((f"lora_dpo_{d['base'].split()[0].lower()}_base", d["pairs"], d["tok_s"], d.get("kernels")))
        for g in f["generate"]:
            ours.append(("generate_kv_cache", g["batch"], g["kv_cache_tok_s"], g.get("kernels_per_token")))
            if g.get("no_cache_tok_s"):
                ours.append(("generate_no_cache", g["batch"], g["no_cache_tok_s"], None))
        for what, batch, tok_s, kernels in ours:
            peer = "lora_dpo_step" if what.startswith("lora_dpo_") else what
            theirs = torch_figures.get((preset, peer, batch))
            rows.append({"preset": preset, "figure": what, "batch": batch, "params": f["params"],
                         "tinyrlhf_tok_s": tok_s, "torch_tok_s": theirs, "ratio": theirs and tok_s / theirs,
                         "kernels": kernels})
    for run in out["runs"]:
        dpo = run["figures"].get("lora_dpo_step")
        split = dpo and torch_figures.get((run["preset"], "lora_dpo_split", dpo["pairs"]))
        if split:
            # The reference is a forward without gradients; the policy's part its forward, backward and AdamW.
            ours_ref, ours_policy = dpo["reference_secs"] * 1e3, dpo["policy_secs"] * 1e3
            theirs_ref, theirs_policy = split["reference_ms"], split["step_ms"] - split["reference_ms"]
            print(f"\n{run['preset']}: the LoRA DPO step's two parts, tinyrlhf / torch ms (torch/tinyrlhf): reference "
                  f"{ours_ref:.0f} / {theirs_ref:.0f} ({theirs_ref / ours_ref:.2f}x), policy {ours_policy:.0f} / "
                  f"{theirs_policy:.0f} ({theirs_policy / ours_policy:.2f}x)")
        ours, theirs = run["figures"].get("products"), torch_figures.get((run["preset"], "products", None))
        if ours and theirs:
            print_products(run["preset"], ours, theirs, run["figures"].get("train_step"),
                           torch_figures.get((run["preset"], "train_step_ms", None)))
    print(f"\n{'preset':<13} {'figure':<18} {'batch':>5} {'tinyrlhf tok/s':>15} {'torch tok/s':>12} {'tinyrlhf/torch':>15}")
    for r in rows:
        theirs, ratio = (f"{r['torch_tok_s']:>12.0f}", f"{r['ratio']:>14.2f}x") if r["torch_tok_s"] else (f"{'-':>12}", f"{'-':>15}")
        print(f"{r['preset']:<13} {r['figure']:<18} {r['batch']:>5} {r['tinyrlhf_tok_s']:>15.0f} {theirs} {ratio}")
    bandwidth, machine = out["memory_bandwidth_gb_s"], out.get("machine", {})
    print(f"(lora_dpo's batch is pairs, a quantized base's row against PyTorch's f32 step; tinyrlhf on {backend}; the host's memory bandwidth by a copy: "
          f"{bandwidth:.1f} GB/s)")
    if machine:
        print(f"measured on {machine['cpu']}, {machine['threads']} threads; tinyrlhf's CPU kernels (gemm, pulp): "
              f"{machine['simd']}; caches as gemm reads them: {machine.get('caches', '?')}")
    if json_out:
        with open(json_out, "w") as f:
            json.dump({"backend": backend, "torch_device": str(DEVICE), "machine": machine, "memory_bandwidth_gb_s": bandwidth,
                       "rows": rows}, f, indent=1)


def print_products(preset, ours, theirs, our_step, their_step_ms):
    """The two training steps' matrix products side by side, name by name, and what is left of each
    step besides them: whether a step that lags does so in its matrix kernel or in the rest."""
    print(f"\n{preset}: the train step's matrix products on {ours['tokens']} tokens (ms a step: the three "
          f"products of a weight times its count)")
    print(f"{'product':<34} {'dims':>12} {'tinyrlhf ms':>12} {'torch ms':>9} {'torch/tinyrlhf':>15}")
    ours_total = theirs_total = 0.0
    for row in ours["rows"]:
        peer = theirs.get(row["name"])
        mine = step_ms(row)
        ours_total += mine
        if peer:
            theirs_total += step_ms(peer)
            ratio = f"{step_ms(peer) / mine:>14.2f}x"
            print(f"{row['name']:<34} {row['dims'][0]:>5} x {row['dims'][1]:<6} {mine:>12.1f} {step_ms(peer):>9.1f} {ratio}")
        else:
            print(f"{row['name']:<34} {row['dims'][0]:>5} x {row['dims'][1]:<6} {mine:>12.1f} {'-':>9} {'-':>15}")
    print(f"{'all products':<47} {ours_total:>12.1f} {theirs_total:>9.1f} {theirs_total / ours_total:>14.2f}x")
    if our_step and their_step_ms:
        ours_rest, theirs_rest = our_step["ms"] - ours_total, their_step_ms - theirs_total
        print(f"{'the rest of the step':<47} {ours_rest:>12.1f} {theirs_rest:>9.1f} "
              f"{theirs_rest / ours_rest if ours_rest > 0 else float('nan'):>14.2f}x")

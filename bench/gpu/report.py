"""The GPU benchmark's report: tinyrlhf on burn-wgpu against PyTorch on the same device, preset by
preset, with achieved GFLOP/s against the device's f32 matmul peak and kernel launches per step.
Run by bench/gpu/device.sh (on the GPU machine) or bench/gpu/run.sh --smoke (here, on lavapipe).

FLOPs counted per token, N the parameters: a training step 6N (forward 2N, backward 4N); a LoRA DPO
step 6N (the reference's forward 2N, the policy's 2N, its backward to the inputs 2N: the frozen
weights get no gradient); decoding 2N.
"""
import argparse
import datetime
import json
import os
import subprocess
import sys
import time

import torch

BENCH = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FLOPS_PER_TOKEN = {"train_step": 6, "lora_dpo_step": 6, "generate_kv_cache": 2, "generate_no_cache": None}
# part: (peer script, preset); the smoke run's parts are small
PARTS = {"tiny": ("gpt2_step.py", "tiny"), "smollm2": ("llama_step.py", "smollm2-135m"),
         "qwen": ("llama_step.py", "qwen2.5-0.5b"), "llama-tiny": ("llama_step.py", "llama-tiny")}
SMOKE = ["tiny", "llama-tiny"]
SMOKE_SETTINGS = ["--steps", "1", "--runs", "1", "--new-tokens", "8"]


def f32_peak_gflops(device):
    """PyTorch's best f32 matmul on `device` (TF32 off), GFLOP/s, and its size n (n x n x n): the peak
    the others are read against."""
    n = 8192 if device == "cuda" else 1024
    a, b = torch.randn(n, n, device=device), torch.randn(n, n, device=device)
    torch.backends.cuda.matmul.allow_tf32 = False
    best = float("inf")
    for _ in range(5):
        if device == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        (a @ b).sum().item()
        best = min(best, time.perf_counter() - start)
    return 2 * n ** 3 / best / 1e9, n


def describe(device):
    if device == "cuda":
        smi = subprocess.run(["nvidia-smi", "--query-gpu=name,driver_version,memory.total", "--format=csv,noheader"],
                             capture_output=True, text=True).stdout.strip()
        return f"{smi} (nvidia-smi); PyTorch {torch.__version__}"
    cpu = next((line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name")), "?")
    return f"smoke run: tinyrlhf on lavapipe (software Vulkan), PyTorch {torch.__version__} on the CPU ({cpu})"


def run_part(part, args, out):
    script, preset = PARTS[part]
    cmd = [sys.executable, os.path.join(BENCH, script), "--preset", preset, "--device", args.device,
           "--compare", args.bin, "--backend", "wgpu", "--json-out", os.path.join(out, f"{part}.json")]
    if args.smoke:
        cmd += SMOKE_SETTINGS
    print("$", " ".join(cmd), flush=True)
    with open(os.path.join(out, f"{part}.log"), "w") as log:
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=BENCH)
        lines = []
        for line in proc.stdout:
            print(line, end="", flush=True)
            log.write(line)
            lines.append(line)
    if proc.wait() != 0:
        return None, lines
    with open(os.path.join(out, f"{part}.json")) as f:
        return json.load(f), lines


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--bin", required=True, help="the tinyrlhf binary built with --features wgpu")
    parser.add_argument("--out", required=True)
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    parser.add_argument("--smoke", action="store_true")
    parser.add_argument("parts", nargs="*", help=f"of {', '.join(PARTS)}; default tiny, smollm2, qwen")
    args = parser.parse_args()
    args.bin, args.out = os.path.abspath(args.bin), os.path.abspath(args.out)
    os.makedirs(args.out, exist_ok=True)
    parts = args.parts or (SMOKE if args.smoke else ["tiny", "smollm2", "qwen"])
    where = describe(args.device)
    peak, n = f32_peak_gflops(args.device)
    print(f"{where}\nf32 matmul peak by PyTorch: {peak:,.0f} GFLOP/s", flush=True)

    rows, agreement, failed = [], [], []
    for part in parts:
        figures, lines = run_part(part, args, args.out)
        agreement += [line.strip() for line in lines if "agrees with the CPU" in line or "does not compute" in line]
        if figures is None:
            failed.append(part)
            continue
        rows += figures["rows"]

    today = datetime.date.today().isoformat()
    table = [f"### {today}: {where}", "",
             f"f32 matmul peak (PyTorch, {n}³, TF32 off): "
             f"**{peak:,.0f} GFLOP/s**. tinyrlhf: burn-wgpu (Vulkan) with fusion; PyTorch: f32, same shapes.", "",
             "| preset | figure | batch | tinyrlhf tok/s | PyTorch tok/s | tinyrlhf / PyTorch | tinyrlhf GFLOP/s | % of peak | kernels (per step / token) |",
             "|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        per_token = FLOPS_PER_TOKEN.get(r["figure"])
        gflops = per_token * r["params"] * r["tinyrlhf_tok_s"] / 1e9 if per_token else None
        cells = [r["preset"], r["figure"], str(r["batch"]), f"{r['tinyrlhf_tok_s']:,.0f}",
                 f"{r['torch_tok_s']:,.0f}" if r["torch_tok_s"] else "—",
                 f"{r['ratio']:.2f}x" if r["ratio"] else "—",
                 f"{gflops:,.1f}" if gflops else "—", f"{100 * gflops / peak:.2f}%" if gflops else "—",
                 f"{r['kernels']:,.0f}" if r.get("kernels") is not None else "—"]
        table.append("| " + " | ".join(cells) + " |")
    table += ["", "Agreement with the CPU (tinyrlhf's check at each `--backend wgpu` start):", ""]
    table += [f"- {line}" for line in dict.fromkeys(agreement)] or ["- (not printed)"]
    if failed:
        table += ["", f"Failed: {', '.join(failed)} (their logs in {args.out})."]
    if rows:
        worst = min((r for r in rows if r["ratio"]), key=lambda r: r["ratio"], default=None)
        if worst:
            table += ["", f"Worst figure: {worst['preset']} {worst['figure']} (batch {worst['batch']}) at "
                          f"{worst['ratio']:.2f}x PyTorch."]
    text = "\n".join(table) + "\n"
    with open(os.path.join(args.out, "gpu.md"), "w") as f:
        f.write(text)
    print("\n" + text)
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()

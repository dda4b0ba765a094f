"""What the PyTorch peers share with `tinyrlhf bench`: the median after a warm-up, and the same
deterministic token ids (a cheap hash, not good randomness: the benchmark needs varied ids)."""
import statistics
import time

import torch


def median_time(runs, fn):
    fn()
    times = []
    for _ in range(max(runs, 1)):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def tokens(rows, length, vocab, salt):
    i = torch.arange(rows * length, dtype=torch.int64)
    return ((i * 2654435761 + salt * 40503) % vocab).view(rows, length)


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

"""Activation capture throughput vs the plain forward pass, and both vs the machine's matmul roofline; prints JSON.

    .venv/bin/python benchmarks/capture.py [--model smollm2-135m] [--batches 12] [--batch-size 8] [--ctx 128]

Capture = every layer's transcoder pair (mlp_in, mlp_out) written to an on-disk store, shard writes,
checksums and manifest updates included (`capture(..., max_shards=1)` per step, which is exactly how a long
capture proceeds). Plain = the transformers forward (logits) over the same batch. The two are interleaved
batch by batch in one run so that machine noise hits both alike; the first batch of each is a warm-up.
Roofline: a large fp32 matmul's GFLOP/s divided by the model's FLOPs per token (2 x multiply-adds of all
matmuls, attention scores included; the capture stops before the unembedding, so its FLOPs exclude it).
"""
import argparse, json, shutil, statistics, tempfile, time
from pathlib import Path
import torch

def matmul_gflops(n=2048, reps=5):
    a, b = torch.randn(n, n), torch.randn(n, n)
    a @ b
    ts = []
    for _ in range(reps):
        t0 = time.perf_counter(); a @ b; ts.append(time.perf_counter() - t0)
    return 2 * n**3 / min(ts) / 1e9

def flops_per_token(spec, ctx, unembed=True):
    "Forward FLOPs per token: 2 x multiply-adds of the projections, the MLP, attention scores and mixing."
    d, m, H, Hkv, dh = spec.d_model, spec.d_mlp, spec.n_heads, spec.n_kv_heads, spec.head_dim
    proj = d * H * dh * 2 + d * Hkv * dh * 2  # q, o and k, v
    mlp = 3 * d * m
    attn = 2 * H * dh * (ctx + 1) / 2  # q.k and A.v over ~ctx/2 positions on average
    per_layer = proj + mlp + attn
    return 2 * (spec.n_layers * per_layer + (d * spec.vocab if unembed else 0))

def main():
    ap = argparse.ArgumentParser()
    ap.add_argument('--model', default='smollm2-135m')
    ap.add_argument('--batches', type=int, default=12)
    ap.add_argument('--batch-size', type=int, default=8)
    ap.add_argument('--ctx', type=int, default=128)
    ap.add_argument('--threads', type=int, default=2)
    ap.add_argument('--store-dtype', default='bf16')
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    from mi_repro.models import load_model, hf_model
    from mi_repro.activations import capture
    from mi_repro.corpus import contexts
    lm, tok, spec = load_model(a.model, 'cpu')
    n = (a.batches + 1) * a.batch_size
    C = contexts(tok, 'train', ctx=a.ctx, n_tokens=n * a.ctx)[:n]
    tmp = Path(tempfile.mkdtemp(prefix='capture-bench-'))
    t_plain, t_cap = [], []
    try:
        for k in range(a.batches + 1):
            ids = C[k*a.batch_size:(k+1)*a.batch_size]
            t0 = time.perf_counter()
            with torch.no_grad(): hf_model(lm)(ids).logits
            t1 = time.perf_counter()
            capture(lm, spec, C, tmp/'store', batch_size=a.batch_size, store_dtype=a.store_dtype, max_shards=1, progress=False)
            t2 = time.perf_counter()
            if k: t_plain.append(t1 - t0); t_cap.append(t2 - t1)
        size = sum(p.stat().st_size for p in (tmp/'store').glob('shard_*'))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    toks = a.batch_size * a.ctx
    plain_tps = toks * len(t_plain) / sum(t_plain)
    cap_tps = toks * len(t_cap) / sum(t_cap)
    gf = matmul_gflops()
    f_plain, f_cap = flops_per_token(spec, a.ctx), flops_per_token(spec, a.ctx, unembed=False)
    print(json.dumps(dict(
        model=a.model, threads=a.threads, batches=a.batches, batch_size=a.batch_size, ctx=a.ctx, store_dtype=a.store_dtype,
        layers=spec.n_layers, sites=['mlp_in', 'mlp_out'],
        plain_forward_tok_s=round(plain_tps), capture_tok_s=round(cap_tps), capture_vs_plain=round(cap_tps / plain_tps, 3),
        plain_median_batch_s=round(statistics.median(t_plain), 3), capture_median_batch_s=round(statistics.median(t_cap), 3),
        store_bytes_per_token=round(size / (a.batches * a.batch_size * a.ctx)), written_gb=round(size / 1e9, 2),
        matmul_gflops=round(gf, 1), gflop_per_token_plain=round(f_plain / 1e9, 4), gflop_per_token_capture=round(f_cap / 1e9, 4),
        roofline_tok_s_plain=round(gf * 1e9 / f_plain), roofline_tok_s_capture=round(gf * 1e9 / f_cap),
        plain_roofline_frac=round(plain_tps * f_plain / (gf * 1e9), 3), capture_roofline_frac=round(cap_tps * f_cap / (gf * 1e9), 3),
    ), indent=1))

if __name__ == '__main__': main()

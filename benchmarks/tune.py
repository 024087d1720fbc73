"""Held-out quality of one layer's transcoder under one training setting: the sweeps behind chapter 04's defaults.
Prints one JSON line (settings, tok/s, held-out FVU, L0, dead fraction); progress on stderr.

    .venv/bin/python benchmarks/tune.py --layer 15 --k 32 --batch-size 4096 --epochs 2 --skip --lr 0.008

Data: chapter 03's SmolLM2 stores (train split for training, test split for evaluation; `mi-repro run 04 --model
smollm2-135m` captures both). Training: `mi_repro.dictionaries.Trainer` on the layer's (mlp_in, mlp_out) pairs in
seeded random order, `--epochs` passes; the BatchTopK threshold is calibrated on 16,384 training tokens before
`evaluate` scores the inference form on the held-out store."""
import argparse, json, sys, time
import torch
from mi_repro.dictionaries import Transcoder, Trainer, evaluate
from mi_repro.activations import Store, default_store
from mi_repro.core import UserError

def main():
    ap = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    ap.add_argument('--model', default='smollm2-135m')
    ap.add_argument('--train-store', default='train-ctx128-1600x-bf16-mlp_in+mlp_out')
    ap.add_argument('--test-store', default='test-ctx128-128x-bf16-mlp_in+mlp_out')
    ap.add_argument('--layer', type=int, default=15); ap.add_argument('--act', default='batchtopk')
    ap.add_argument('--k', type=int, default=32); ap.add_argument('--batch-size', type=int, default=4096)
    ap.add_argument('--epochs', type=float, default=2); ap.add_argument('--lr', type=float, default=None)
    ap.add_argument('--expansion', type=int, default=8); ap.add_argument('--fp32', action='store_true')
    ap.add_argument('--dead-steps', type=int, default=50); ap.add_argument('--skip', action='store_true')
    ap.add_argument('--threads', type=int, default=2); ap.add_argument('--seed', type=int, default=0)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    try:
        tr_s, te_s = Store(default_store(a.model, a.train_store)).check(), Store(default_store(a.model, a.test_store)).check()
        x, y = tr_s.load(a.layer, 'mlp_in'), tr_s.load(a.layer, 'mlp_out')
        xt, yt = te_s.load(a.layer, 'mlp_in'), te_s.load(a.layer, 'mlp_out')
    except UserError as e: sys.exit(f"error: {e}\nCapture the stores first: `mi-repro run 04 --model {a.model}`")
    n, d = x.shape; spe = n // a.batch_size; steps = max(1, int(a.epochs * spe))
    torch.manual_seed(a.seed)
    tc = Transcoder(d, a.expansion * d, act=a.act, k=a.k, skip=a.skip, seed=a.seed)
    tr = Trainer(tc, lr=a.lr, steps=steps, bf16=not a.fp32, dead_steps=a.dead_steps, seed=a.seed)
    g = torch.Generator().manual_seed(a.seed); t, s = 0.0, 0
    while s < steps:
        perm = torch.randperm(n, generator=g)
        for b in range(spe):
            if s >= steps: break
            i = perm[b*a.batch_size:(b+1)*a.batch_size]; xb, yb = x[i], y[i]
            t0 = time.perf_counter(); out = tr.step(xb, yb); t += time.perf_counter() - t0; s += 1
            if s % 20 == 0: print(f"step {s}/{steps} fvu {out['fvu']:.3f} dead {out['dead']:.2f}", file=sys.stderr, flush=True)
    tc.eval().calibrate(x[torch.randperm(n, generator=g)[:16384]])
    ev = evaluate(tc, xt, yt)
    print(json.dumps(dict(vars(a), lr_used=tr.lr, steps=steps, train_tokens=n, tok_s=round(steps * a.batch_size / t),
                          train_fvu=round(out['fvu'], 4), heldout_fvu=round(ev['fvu'], 4), heldout_l0=round(ev['l0'], 2),
                          heldout_dead=round(ev['dead'], 4))), flush=True)

if __name__ == '__main__': main()

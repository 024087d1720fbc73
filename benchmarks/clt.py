"""Cross-layer transcoder training (`mi_repro.clt`): sparse decoder updates (gradients of the fired rows only,
`torch.optim.SparseAdam`) beside dense ones (full decoder gradients, Adam), same batches and settings, each mode in
its own process so that its peak memory is its own, and the decoder matmuls in bf16 (`-bf16` modes); prints one
JSON object on stdout.

    .venv/bin/python benchmarks/clt.py [--model smollm2-135m] [--store DIR] [--features 1024] [--k 32] [--span 0]
                                       [--batch 1024] [--steps 6] [--rounds 2] [--threads 2]

- Data: the first `--steps + 1` batches of `--batch` tokens of a chapter-03 store with every layer's MLP inputs and
  outputs (default: the model's largest training store in the cache, chapter 04's), read into memory before timing.
- Each round runs both modes, in alternating order, as `python benchmarks/clt.py --worker MODE ...`: a fresh CLT (same
  seed), one untimed step (it sets the scales), then `--steps` timed steps. Reported per mode: the median over rounds
  of tokens per second, seconds per step and where a step's time goes (forward, backward, optimizer), the process's
  peak RSS, the bytes of weights and optimizer state, the FVU and L0 of the last step; and the speed ratio.
- `--span 0`: every feature writes to every later layer (Anthropic's CLT).
- The CPU may be shared: the 1-minute load average before and after is recorded.
"""
import argparse, json, os, resource, statistics, subprocess, sys, time
from pathlib import Path


def _args(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    ap.add_argument('--model', default='smollm2-135m')
    ap.add_argument('--store', default='')
    ap.add_argument('--features', type=int, default=1024)
    ap.add_argument('--k', type=int, default=32)
    ap.add_argument('--span', type=int, default=0)
    ap.add_argument('--batch', type=int, default=1024)
    ap.add_argument('--steps', type=int, default=6)
    ap.add_argument('--rounds', type=int, default=2)
    ap.add_argument('--threads', type=int, default=2)
    ap.add_argument('--modes', default='dense,sparse,dense-bf16', help='comma-separated: dense, sparse, dense-bf16, sparse-bf16')
    ap.add_argument('--worker', choices=['sparse', 'dense', 'dense-bf16', 'sparse-bf16'], default=None)
    return ap.parse_args(argv)


def _store(a):
    "The store to read: --store, else the model's largest training store in the cache."
    if a.store: return Path(a.store)
    from mi_repro.core import cache_dir
    from mi_repro.models import run_name
    found = sorted(cache_dir('activations', run_name(a.model)).glob('train-*'), key=lambda p: p.stat().st_size)
    found = [p for p in found if (p/'manifest.json').exists()]
    if not found: sys.exit(f"no training store of {a.model} in the cache: run chapter 04 first (mi-repro run 04)")
    return max(found, key=lambda p: json.loads((p/'manifest.json').read_text())['n_tokens'])


def worker(a):
    "One mode: time `a.steps` steps after one untimed step; print one JSON line."
    import torch
    torch.set_num_threads(a.threads)
    from mi_repro.activations import Store
    from mi_repro.clt import CLT, CLTTrainer, _clt_batches
    store = Store(_store(a))
    it = _clt_batches(store, list(store.layers), 'mlp_in', 'mlp_out', a.batch, 0, 2)
    data = [next(it) for _ in range(a.steps + 1)]
    L, _, d = data[0][0].shape
    tr = CLTTrainer(CLT(L, d, a.features, act='batchtopk', k=a.k, span=a.span or None, seed=0),
                    steps=1000, sparse=a.worker.startswith('sparse'), bf16=a.worker.endswith('bf16'))
    tr.step(*data[0])
    tr.times = dict.fromkeys(tr.times, 0.0)
    t0 = time.perf_counter()
    for xs, ys in data[1:]: log = tr.step(xs, ys)
    dt = time.perf_counter() - t0
    nbytes = lambda ts: sum(t.numel() * t.element_size() for t in ts)
    opt = [v for o in tr.opts for s in o.state.values() for v in s.values() if torch.is_tensor(v)]
    print(json.dumps(dict(mode=a.worker, tok_s=a.steps * a.batch / dt, s_per_step=dt / a.steps,
                          split_s={k: v / a.steps for k, v in tr.times.items()},
                          peak_rss_gib=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20,
                          weights_gib=nbytes(tr.clt.parameters()) / 2**30, optimizer_gib=nbytes(opt) / 2**30,
                          fvu=log['fvu'], l0=log['l0'], layers=L, d_model=d)))


def main():
    a = _args()
    if a.worker: return worker(a)
    store = _store(a)
    modes = a.modes.split(',')
    load0, runs = os.getloadavg()[0], {m: [] for m in modes}
    for r in range(a.rounds):
        for mode in (modes if r % 2 == 0 else modes[::-1]):  # alternate the order
            cmd = [sys.executable, __file__, '--worker', mode, '--store', str(store)] + [
                f'--{k}={v}' for k, v in vars(a).items() if k not in ('worker', 'store', 'rounds', 'model', 'modes')]
            env = dict(os.environ, OMP_NUM_THREADS=str(a.threads))
            out = subprocess.run(cmd, capture_output=True, text=True, env=env)
            if out.returncode: sys.exit(f"the {mode} worker failed:\n{out.stderr[-3000:]}")
            runs[mode].append(json.loads(out.stdout.strip().splitlines()[-1]))
    med = statistics.median
    res = {m: dict(tok_s=med([x['tok_s'] for x in v]), s_per_step=med([x['s_per_step'] for x in v]),
                   split_s={k: med([x['split_s'][k] for x in v]) for k in v[0]['split_s']},
                   peak_rss_gib=max(x['peak_rss_gib'] for x in v), weights_gib=v[0]['weights_gib'],
                   optimizer_gib=v[0]['optimizer_gib'], fvu=v[-1]['fvu'], l0=v[-1]['l0']) for m, v in runs.items()}
    print(json.dumps(dict(model=a.model, store=store.name, features=a.features, k=a.k, span=a.span or 'all',
                          batch=a.batch, steps=a.steps, rounds=a.rounds, threads=a.threads,
                          layers=runs[modes[0]][0]['layers'], d_model=runs[modes[0]][0]['d_model'], **res,
                          speed_vs_dense={m: res[m]['tok_s'] / res['dense']['tok_s'] for m in modes} if 'dense' in res else None,
                          load_avg=[load0, os.getloadavg()[0]]), indent=1))


if __name__ == '__main__':
    main()

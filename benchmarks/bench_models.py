"""Model-zoo and forward-pass timings, side by side in one run; prints JSON.

    .venv/bin/python benchmarks/bench_models.py [--model smollm2-135m] [--tokens 64] [--reps 5]

- load: `load_model` from the converted fp32 safetensors cache vs converting the GGUF again (what every
  load would cost without the cache); ratio = gguf / cache.
- forward: plain transformers forward vs the same forward through `nnsight` `model.trace` vs chapter 01's
  `rebuild` (plain torch from the weights), on one prompt of `--tokens` tokens; median of `--reps`, interleaved.
"""
import argparse, json, statistics, tempfile, time, os
import torch

def timed(f):
    t0 = time.perf_counter(); r = f(); return time.perf_counter() - t0, r

def main():
    ap = argparse.ArgumentParser()
    ap.add_argument('--model', default='smollm2-135m')
    ap.add_argument('--tokens', type=int, default=64)
    ap.add_argument('--reps', type=int, default=5)
    ap.add_argument('--threads', type=int, default=2)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    from mi_repro import models
    from mi_repro.forward import rebuild
    out = dict(model=a.model, tokens=a.tokens, reps=a.reps, threads=a.threads, torch=torch.__version__)

    models.load_model(a.model, 'cpu')  # make sure the cache exists
    t_cache, r = timed(lambda: models.load_model(a.model, 'cpu'))
    out['load_cache_s'] = round(t_cache, 2)
    gguf = {'smollm2-135m': models._smol_gguf}.get(a.model)
    if gguf is not None:  # convert again into a scratch cache: the cost the cache saves on every later load
        with tempfile.TemporaryDirectory() as d:
            old = os.environ.get('MI_REPRO_CACHE'); os.environ['MI_REPRO_CACHE'] = d
            try: t_gguf, _ = timed(lambda: models.load_model(a.model, 'cpu'))
            finally:
                if old is None: os.environ.pop('MI_REPRO_CACHE')
                else: os.environ['MI_REPRO_CACHE'] = old
        out['load_gguf_s'] = round(t_gguf, 2)
        out['load_speedup_cache_vs_gguf'] = round(t_gguf / t_cache, 1)

    g = torch.Generator().manual_seed(0)
    ids = torch.randint(100, r.spec.vocab - 100, (1, a.tokens), generator=g)
    def plain():
        with torch.no_grad(): return r.hf(ids).logits
    def traced():
        with r.model.trace(ids):
            l = r.model.output.logits.save()
        return l
    def rebuilt(): return rebuild(r.hf, r.spec, ids)
    fns = dict(hf=plain, nnsight=traced, rebuild=rebuilt)
    for f in fns.values(): f()  # warm-up
    ts = {k: [] for k in fns}
    for _ in range(a.reps):
        for k, f in fns.items(): ts[k].append(timed(f)[0])
    med = {k: statistics.median(v) for k, v in ts.items()}
    out.update({f'forward_{k}_ms': round(1000 * v, 1) for k, v in med.items()})
    out['nnsight_overhead_ratio'] = round(med['nnsight'] / med['hf'], 3)
    out['rebuild_vs_hf_ratio'] = round(med['rebuild'] / med['hf'], 3)
    out['rebuild_max_abs_logit_diff'] = (rebuilt() - plain()).abs().max().item()
    print(json.dumps(out, indent=1))

if __name__ == '__main__': main()

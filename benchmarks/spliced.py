"""Spliced CE/KL (chapter 04's `spliced`): each set's passes with the layers below its first layer skipped (nnsight's
`skip`, fed the clean pass's layer outputs) against the same passes run from the embedding, side by side in one run on
one batch; prints one JSON object on stdout.

    .venv/bin/python benchmarks/spliced.py [--model smollm2-135m] [--dicts FOLDER] [--batch 8] [--ctx 128] [--threads 1]

- Inputs: the first `--batch` windows of `--ctx` tokens of the corpus's held-out split (as chapter 04 evaluates),
  and a chapter-04 dictionary set (`--dicts`, default `find_dicts`'s; on tiny-qwen3 `train_dicts`' defaults).
- The sets are chapter 04's: one per layer, then all layers together; each is timed spliced and zero-ablated, as
  `spliced` runs them, once skipping the layers below the set (`_splice(..., outs=...)`) and once from the
  embedding (`_splice(...)` without `outs`). Both orders alternate per set, so a drift in machine load hits both.
- Agreement: whether the logits of the two ways are bitwise equal, per set and mode, and the largest |difference|.
- The CPU may be shared: the 1-minute load average before and after is recorded.
"""
import argparse, json, os, sys, time


def main():
    ap = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    ap.add_argument('--model', default='smollm2-135m')
    ap.add_argument('--dicts', default='')
    ap.add_argument('--batch', type=int, default=8)
    ap.add_argument('--ctx', type=int, default=128)
    ap.add_argument('--threads', type=int, default=1)
    a = ap.parse_args()
    os.environ.setdefault('OMP_NUM_THREADS', str(a.threads))
    import torch
    torch.set_num_threads(a.threads)
    from mi_repro.models import load_model
    from mi_repro.corpus import contexts
    from mi_repro.dictionaries import find_dicts, load_dicts, train_dicts, _clean, _splice
    lm, tok, spec = load_model(a.model, 'cpu')
    folder = a.dicts or (train_dicts(lm, tok, spec, a.model, progress=False) if a.model == 'tiny-qwen3'
                         else find_dicts(a.model))
    tcs = load_dicts(folder, spec=spec)
    ids = contexts(tok, 'test', ctx=a.ctx, n_tokens=a.batch * a.ctx)[:a.batch]
    load0 = os.getloadavg()[0]
    with torch.no_grad():
        t0 = time.perf_counter()
        ref, outs = _clean(lm, spec, ids)
        clean_s = time.perf_counter() - t0
        sets = {**{l: {l: tc} for l, tc in tcs.items()}, 'all': dict(tcs)}
        t_skip = t_full = 0.0
        equal, max_diff = True, 0.0
        for i, (name, s) in enumerate(sets.items()):
            for zero in (False, True):
                res = {}
                for way in (('skip', 'full') if i % 2 == 0 else ('full', 'skip')):
                    t0 = time.perf_counter()
                    res[way] = _splice(lm, spec, s, ids, 1, zero, outs if way == 'skip' else None)
                    dt = time.perf_counter() - t0
                    if way == 'skip': t_skip += dt
                    else: t_full += dt
                equal &= torch.equal(res['skip'], res['full'])
                max_diff = max(max_diff, (res['skip'] - res['full']).abs().max().item())
    out = dict(model=a.model, dicts=str(folder), n_sets=len(sets), batch=a.batch, ctx=a.ctx, threads=a.threads,
               clean_s=round(clean_s, 2), spliced_skip_s=round(t_skip, 2), spliced_full_s=round(t_full, 2),
               speedup=round(t_full / t_skip, 2),
               per_batch_s=dict(skip=round(clean_s + t_skip, 2), full=round(clean_s + t_full, 2)),
               bitwise_equal=bool(equal), max_abs_diff=max_diff,
               load_1min=[round(load0, 2), round(os.getloadavg()[0], 2)])
    print(json.dumps(out))


if __name__ == '__main__':
    sys.exit(main())

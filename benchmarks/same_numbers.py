"""Whether two checkouts compute the same numbers, bitwise: an attribution graph's adjacency, the model's logits, head
loadings of kept edges and `edge_heads` by position, and the intervention engine in its four modes (free or
constrained, frozen or not) on three rows of edits; prints one JSON object on stdout (per quantity: torch.equal and
the largest absolute difference). For refactors that must not change a number.

    .venv/bin/python benchmarks/same_numbers.py OLD_CHECKOUT [NEW_CHECKOUT] [--model smollm2-135m] [--threads 1]

- Each checkout runs in its own process with PYTHONPATH set to it (a `git worktree` or clone of the old commit;
  NEW defaults to this one), on the prompt "The capital of France is", with the model's default chapter-04
  dictionaries (`chapter_setup`), seed 0, fp32 on CPU; the graph keeps 64 feature nodes; 40 kept cross-position
  edges get head loadings, 3 of them `edge_heads`.
"""
import argparse, json, os, subprocess, sys, tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent


def worker(model:str, out:str, threads:int):
    import torch
    torch.set_num_threads(threads)
    from mi_repro.dictionaries import chapter_setup
    from mi_repro.models import prompt_ids
    from mi_repro.attribution import Replacement, attribute
    from mi_repro.interventions import intervene, clean_run, ablate, steer
    from mi_repro.heads import head_loadings, kept_cross_edges, edge_heads
    r, _, tcs = chapter_setup(model, 'cpu', 'fp32', seed=0)
    ids = prompt_ids(r.tok, 'The capital of France is')
    rep = Replacement(r.hf, r.spec, tcs, ids)
    g = attribute(rep, r.tok, max_feature_nodes=64, progress=False)
    res = dict(adj=g.adj, logits=rep.logits)
    E = kept_cross_edges(g)[:40]
    res['heads'] = head_loadings(rep, g, E)
    res['edge_heads'] = torch.stack([edge_heads(rep, g, t, s)['by_pos'] for t, s in E[:3]])
    cl = clean_run(r.model, r.spec, ids, freeze=True)
    L, s0 = r.spec.n_layers, rep.starts[1]
    rows = [[ablate(1, int(rep.active[s0, 2]), int(rep.active[s0, 1]))], [steer(L - 1, 3, len(ids) - 1, scale=2.0)], []]
    for mode in ('free', 'constrained'):
        for fz in (False, True): res[f'{mode}_{"frozen" if fz else "unfrozen"}'] = intervene(
            r.model, r.spec, tcs, ids, rows, mode, fz, clean=cl)
    torch.save(res, out)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    ap.add_argument('old')
    ap.add_argument('new', nargs='?', default=str(HERE.parent))
    ap.add_argument('--model', default='smollm2-135m')
    ap.add_argument('--threads', type=int, default=1)
    ap.add_argument('--worker', nargs=2, metavar=('MODEL', 'OUT'))
    a = ap.parse_args()
    if a.worker: return worker(*a.worker, a.threads)
    import torch
    with tempfile.TemporaryDirectory() as d:
        outs = []
        for i, root in enumerate((a.old, a.new)):
            out = f'{d}/{i}.pt'
            env = dict(os.environ, PYTHONPATH=str(Path(root).resolve()), OMP_NUM_THREADS=str(a.threads))
            p = subprocess.run([sys.executable, __file__, 'x', '--worker', a.model, out, '--threads', str(a.threads)],
                               env=env, capture_output=True, text=True)
            if p.returncode: sys.exit(f"{root}: the worker failed:\n{p.stderr[-3000:]}")
            outs.append(torch.load(out))
    old, new = outs
    res = {k: dict(equal=bool(torch.equal(old[k], new[k])), max_abs_diff=float((old[k] - new[k]).abs().max()),
                   shape=list(old[k].shape)) for k in old}
    print(json.dumps(dict(model=a.model, old=a.old, new=a.new, all_equal=all(v['equal'] for v in res.values()),
                          **res), indent=1))


if __name__ == '__main__':
    main()

"""Head loadings (chapter 09's `head_loadings`) beside the graph they split, in one run; prints one JSON object.

    .venv/bin/python benchmarks/head_loadings.py [--model smollm2-135m] [--prompt TEXT] [--max-feature-nodes 2048]
                                                 [--threads 1]

- The graph: `Replacement` + `attribute` of the prompt (its wall time: `graph_s`), pruned as the graph JSON is.
- The edges: every kept edge from an earlier to a later position into a feature or logit node; `loadings_s` is the
  time to split all of them by the head of their first attention hop.
- Exactness: the largest |sum of an edge's parts - the edge| over all edges, relative to the largest edge, and the
  largest relative error on edges above 1e-3 of the largest (`max_rel_err_big_edges`).
"""
import argparse, json, os, resource, sys, time


def main():
    ap = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    ap.add_argument('--model', default='smollm2-135m')
    ap.add_argument('--prompt', default='The capital of France is')
    ap.add_argument('--max-feature-nodes', type=int, default=2048)
    ap.add_argument('--threads', type=int, default=1)
    a = ap.parse_args()
    os.environ.setdefault('OMP_NUM_THREADS', str(a.threads))
    import torch
    torch.set_num_threads(a.threads)
    from mi_repro.models import load_model, prompt_ids
    from mi_repro.dictionaries import chapter_dicts
    from mi_repro.attribution import Replacement, attribute
    from mi_repro.heads import head_loadings, kept_cross_edges, qk_parts, top_heads
    r = load_model(a.model, 'cpu')
    _, tcs = chapter_dicts(r, a.model)
    t0 = time.perf_counter()
    rep = Replacement(r.hf, r.spec, tcs, prompt_ids(r.tok, a.prompt))
    g = attribute(rep, r.tok, a.prompt, max_feature_nodes=a.max_feature_nodes, progress=False)
    graph_s = time.perf_counter() - t0
    edges = kept_cross_edges(g)
    rss = lambda: resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**10
    rss0, t0 = rss(), time.perf_counter()
    hl = head_loadings(rep, g, edges)
    loadings_s, growth = time.perf_counter() - t0, rss() - rss0
    pos, tot, qk = g.node_table()[1], hl.abs().sum(0), []
    for l, h, _ in top_heads(tot, 3):
        t, s = edges[int(hl[:, l, h].abs().argmax())]
        t0 = time.perf_counter()
        qp = qk_parts(rep, r.hf, l, h, int(pos[t]), int(pos[s]))
        qk.append(dict(head=[l, h], q=qp['q'], k=qp['k'], s=round(time.perf_counter() - t0, 3),
                       rel_err=float((qp['Cq'].sum(1) - qp['Q']).norm() / qp['Q'].norm())))
    w = torch.tensor([float(g.adj[t, s]) for t, s in edges])
    top, err = g.adj.abs().max(), (hl.sum((1, 2)) - w).abs()
    big = w.abs() > 1e-3 * top
    print(json.dumps(dict(model=a.model, prompt=a.prompt, threads=a.threads, max_feature_nodes=a.max_feature_nodes,
                          n_edges=len(edges), n_targets=len({t for t, _ in edges}), graph_s=round(graph_s, 2),
                          loadings_s=round(loadings_s, 2), max_err_vs_largest_edge=float(err.max() / top),
                          max_rel_err_big_edges=float((err[big] / w[big].abs()).max()),
                          loadings_peak_growth_mib=round(growth, 1), loadings_out_mib=round(hl.numel() * 4 / 2**20, 1),
                          qk=qk)))


if __name__ == '__main__':
    sys.exit(main())

"""A cross-layer transcoder beside chapter 04's per-layer transcoders on one model: held-out reconstruction (FVU per
layer, L0, dead features), then chapter 06's attribution graphs over each (replacement and completeness scores,
exactness checks); prints one JSON object on stdout.

    .venv/bin/python benchmarks/clt_vs_transcoders.py [--model smollm2-135m] [--features 1024] [--k 32] [--span 4]
                                                     [--epochs 1] [--batch 512] [--threads 2] [--max-feature-nodes 4096]

- CLT: `train_clt` on chapter 04's training store (the same tokens as the per-layer set), trained here or read from
  the cache (its training time and step speed are in its file's metadata). BatchTopK with k features per layer and
  token: the same total L0 as the per-layer set's k per layer.
- Per-layer: chapter 04's default set (`find_dicts`; on tiny-qwen3 `train_dicts`'), or with `--pl-expansion N` a set
  trained here (or read from the cache) by `train_dicts` on the same store with N x d_model features per layer,
  `--pl-skip 0/1` and `--pl-epochs`: e.g. `--pl-expansion 2 --pl-skip 0` for a per-layer set of about the CLT's width
  (1,152 against 1,024 features per layer on SmolLM2) without the skip path the CLT lacks.
- Reconstruction: on chapter 04's held-out store (the flagged outlier tokens left out, as chapter 04 reports FVU).
- Graphs: chapter 06's default prompts (the first held-out factual and antonym prompts, with chapter 02's templates),
  `max_feature_nodes` feature nodes, circuit-tracer's scores, and the three checks of chapter 06; then chapter 07's
  graph vs reality on each (`--gvr` most influential feature nodes zero-ablated in the real model, frozen constrained,
  constrained and free; Spearman over those nodes of one prompt, so two prompts, not chapter 07's 16 per behaviour).
- One training of each dictionary: a single sample, not a distribution over seeds.
"""
import argparse, json, os, resource, time


def main():
    ap = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    ap.add_argument('--model', default='smollm2-135m')
    ap.add_argument('--features', type=int, default=1024)
    ap.add_argument('--k', type=int, default=32)
    ap.add_argument('--span', type=int, default=4)
    ap.add_argument('--epochs', type=float, default=1.0)
    ap.add_argument('--batch', type=int, default=512)
    ap.add_argument('--bf16', action='store_true', help='bf16 decoder matmuls in training')
    ap.add_argument('--threads', type=int, default=2)
    ap.add_argument('--max-feature-nodes', type=int, default=4096)
    ap.add_argument('--pl-expansion', type=int, default=0, help="per-layer set: features / d_model (0: chapter 04's)")
    ap.add_argument('--pl-skip', type=int, default=1, help='per-layer set (with --pl-expansion): skip path 1 or 0')
    ap.add_argument('--pl-epochs', type=float, default=2.0, help='per-layer set (with --pl-expansion): epochs')
    ap.add_argument('--gvr', type=int, default=24, help='graph vs reality: ablate this many top feature nodes (0: skip)')
    a = ap.parse_args()
    import torch
    torch.set_num_threads(a.threads)
    from mi_repro.models import load_model, prompt_ids
    from mi_repro.corpus import contexts
    from mi_repro.activations import capture, default_store
    from mi_repro.dictionaries import default_dicts, load_dicts, evaluate, train_dicts
    from mi_repro.clt import train_clt, load_clt, evaluate_clt
    from mi_repro.prompts import gated_prompts, load_prompts
    from mi_repro.attribution import Replacement, attribute, graph_scores, ablation_check, completeness_check, logits_check
    from mi_repro.interventions import graph_vs_reality
    tiny = a.model == 'tiny-qwen3'
    r = load_model(a.model, 'cpu', 'fp32')
    t0 = time.perf_counter()
    f = train_clt(r.model, r.tok, r.spec, a.model, a.features, a.k, a.span or None, epochs=a.epochs,
                  batch_size=a.batch, bf16=a.bf16, n_tokens=8192 if tiny else 204_800)
    clt = load_clt(f)
    meta = clt.meta
    t1 = time.perf_counter()
    pl = (train_dicts(r.model, r.tok, r.spec, a.model, n_tokens=8192 if tiny else 204_800, batch_size=512 if tiny else 1024,
                      skip=bool(a.pl_skip), expansion=a.pl_expansion, epochs=a.pl_epochs)
          if a.pl_expansion else default_dicts(r.model, r.tok, r.spec, a.model))
    pl_s = time.perf_counter() - t1
    tcs = load_dicts(pl, spec=r.spec)
    Ct = contexts(r.tok, 'test', ctx=128, n_tokens=2048 if tiny else 16_384, progress=False)
    test = capture(r.model, r.spec, Ct, default_store(a.model, f"test-ctx128-{Ct.shape[0]}x-bf16-mlp_in+mlp_out", Ct),
                   batch_size=8, progress=False)
    L = r.spec.n_layers
    xs = torch.stack([test.load(l, 'mlp_in') for l in range(L)])
    ys = torch.stack([test.load(l, 'mlp_out') for l in range(L)])
    ev_clt = evaluate_clt(clt, xs, ys)
    ev_pl = [evaluate(tcs[l], xs[l], ys[l]) for l in range(L)]
    del xs, ys
    mean = lambda v: sum(v) / len(v)
    recon = dict(clt=dict(fvu_mean=mean(ev_clt['fvu']), fvu=ev_clt['fvu'], l0_total=sum(ev_clt['l0']),
                          dead_mean=mean(ev_clt['dead'])),
                 per_layer=dict(fvu_mean=mean([e['fvu'] for e in ev_pl]), fvu=[e['fvu'] for e in ev_pl],
                                l0_total=sum(e['l0'] for e in ev_pl), dead_mean=mean([e['dead'] for e in ev_pl])),
                 tokens=test.n_tokens - test.man['n_flagged'])

    def first(b):
        try: return gated_prompts(b, r.tok, strict=False)[0]['prompt']
        except Exception: return load_prompts(b, 'test', 'en')[0]['prompt']
    graphs = []
    for text in [first(b) for b in ('factual', 'antonyms')]:
        ids = prompt_ids(r.tok, text)
        row = dict(prompt=text)
        for name, d in (('per_layer', tcs), ('clt', clt)):
            t1 = time.perf_counter()
            with torch.no_grad(): rep = Replacement(r.hf, r.spec, d, ids)
            g = attribute(rep, r.tok, text, max_feature_nodes=a.max_feature_nodes or None, progress=False)
            row[name] = dict(**graph_scores(g), n_active=rep.n_feat, n_selected=g.n_sel,
                             ablation_rel_err=ablation_check(rep, g)['max_rel_err'],
                             completeness_rel_err=completeness_check(rep, g)['max_rel_err'],
                             logits_err=logits_check(rep), s=round(time.perf_counter() - t1, 2))
            if a.gvr:  # chapter 07's graph vs reality on this prompt: each top node ablated in the real model
                _, summ = graph_vs_reality(r.model, r.spec, d, g, n=a.gvr)
                row[name]['graph_vs_reality'] = {m: {k: v[k] for k in ('spearman', 'sign_agree', 'rel_err')}
                                                 for m, v in summ.items()}
        graphs.append(row)
    out = dict(model=a.model, clt=dict(clt.cfg, file=str(f), train=dict((k, meta[k]) for k in
                                                                       ('steps', 'tokens', 'seconds', 'sparse', 'bf16') if k in meta)),
               per_layer=dict(folder=str(tcs.folder), n_features=tcs[0].n_features, k=tcs[0].cfg['k'],
                              skip=tcs[0].W_skip is not None, s_to_get=round(pl_s, 1)),
               reconstruction=recon, graphs=graphs, threads=a.threads, wall_s=round(time.perf_counter() - t0, 1),
               peak_rss_gib=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20, load_avg=os.getloadavg()[0])
    print(json.dumps(out, indent=1))


if __name__ == '__main__':
    main()

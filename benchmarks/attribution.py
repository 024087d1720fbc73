"""Attribution graphs side by side: this project's `mi_repro.attribution` against circuit-tracer 0.5.0, same prompt,
model and transcoders, in one run; prints one JSON object on stdout (progress goes to stderr).

    .venv/bin/python benchmarks/attribution.py [--prompt TEXT] [--max-feature-nodes 2048] [--batch-size 64]
                                               [--threads 1] [--dicts FOLDER | --clt FILE] [--save]

- Inputs: the model (`--model`, default smollm2-135m: the HF folder `mi_repro.models.load_model` reads), the prompt's
  token ids with the model's document-start token first (`prompt_ids`; circuit-tracer gets the same ids and, as it does for any
  prompt starting with a special token, adds nothing), and a chapter-04 transcoder set (`--dicts`, default the newest
  complete one of the model, `find_dicts`) exported to circuit-tracer's layout (`export_circuit_tracer`: BatchTopK as
  JumpReLU with a per-feature threshold, W_skip kept) in a temp folder with absolute paths.
- `--clt FILE` (or `--clt chapter04`: chapter 04's default CLT of the model, `mi_repro.clt.chapter_clt`): a cross-layer
  transcoder instead, exported with `export_clt` to circuit-tracer's CLT layout and read there with its `load_clt`
  (`mlp.hook_in` -> `mlp.hook_out`); `--save` then writes `results/attribution_clt.json`.
- circuit-tracer runs in its own venv `benchmarks/.venv-circuit-tracer` (created on first use: torch first, then
  circuit-tracer==CT_VERSION; it pins transformers <= 4.57.3), through `_ct_worker.py` with its TransformerLens
  backend. Ours runs in a subprocess of this venv. Both get the same `--threads` (torch.set_num_threads and
  OMP/MKL variables), run one after the other, never at once; each reports the wall time of building the graph
  (ours: `Replacement` + `attribute`; circuit-tracer: `attribute`, which includes its own setup forward pass),
  pruning + scores separately, and its process's peak RSS (model and transcoders included) after loading, after
  the graph, and at the end (pruning included).
- Agreement: nodes are matched by (kind, layer, position, feature) — features (l, p, f), errors (l, p), tokens (p),
  logits (token id). Over the adjacency entries whose target and source both graphs have: Pearson (entries nonzero
  in either), max |ours - ct| / max |ct| (relative to the largest edge: the goal's measure), and the largest
  per-edge relative error |ours - ct| / |ct| over the edges above 1e-2, 1e-3 and 1e-4 of the largest (fp32 noise
  dominates the small ones). Then the node and edge sets each tool keeps after its own pruning (node threshold
  0.8, edge threshold 0.98), and the graph scores (replacement, completeness) each computes with its own code.
- `--repeats N` runs each tool N times, alternating which goes first, and reports the median graph time.
- The CPU may be shared: the 1-minute load average before and after is recorded, and with it the label
  `contended` when the load exceeds what the benchmark itself uses.
"""
import argparse, json, os, platform, resource, statistics, subprocess, sys, tempfile, time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
CT_VERSION = '0.5.0'
CT_TORCH = '2.13.0'
VENV = HERE/'.venv-circuit-tracer'
DEFAULT_PROMPT = 'The capital of France is'
RESULTS = HERE/'results'/'attribution.json'
sys.path.insert(0, str(HERE))
from _venv import log, fail, pin_threads, venv_python, ensure_venv


# ---------------------------------------------------------------- the circuit-tracer venv
def ensure_ct_venv(venv=VENV, version=CT_VERSION, torch_version=CT_TORCH) -> dict:
    "Create `venv` with torch==torch_version (CPU) and circuit-tracer==version unless it is already there; return its versions."
    ok = lambda have: bool(have) and have.get('circuit-tracer') == version and have.get('torch', '').split('+')[0] == torch_version
    return ensure_venv(venv, torch_version, f'circuit-tracer=={version}', ('circuit-tracer', 'torch', 'transformer-lens', 'transformers'), ok)

# ---------------------------------------------------------------- our side (runs in a subprocess of this venv)
def _worker_ours(argv):
    ap = argparse.ArgumentParser()
    ap.add_argument('inp'); ap.add_argument('out')
    ap.add_argument('--model', required=True); ap.add_argument('--dicts', default=None); ap.add_argument('--clt', default=None)
    ap.add_argument('--threads', type=int, required=True)
    ap.add_argument('--max-feature-nodes', type=int, default=None)
    ap.add_argument('--batch-size', type=int, required=True)
    ap.add_argument('--node-threshold', type=float, default=0.8)
    ap.add_argument('--edge-threshold', type=float, default=0.98)
    a = ap.parse_args(argv)
    pin_threads(a.threads)
    import torch, hashlib
    import mi_repro.attribution as at
    from mi_repro.models import load_model
    from mi_repro.dictionaries import load_dicts
    inp = torch.load(a.inp)
    t0 = time.perf_counter()
    r = load_model(a.model, 'cpu', 'fp32')
    if a.clt:
        from mi_repro.clt import load_clt
        tcs = load_clt(a.clt)
    else: tcs = load_dicts(a.dicts)
    load_s = time.perf_counter() - t0
    rss_load = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    t0 = time.perf_counter()
    rep = at.Replacement(r.hf, r.spec, tcs, inp["ids"], drop_first_token=False)  # circuit-tracer keeps position 0's embedding node
    g = at.attribute(rep, r.tok, inp['prompt'], max_feature_nodes=a.max_feature_nodes, batch_size=a.batch_size, progress=False)
    graph_s = time.perf_counter() - t0
    rss_graph = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    t0 = time.perf_counter()
    node, edge, _ = at.prune(g, a.node_threshold, a.edge_threshold)
    sc = at.graph_scores(g)
    prune_s = time.perf_counter() - t0
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    src = Path(at.__file__)
    torch.save(dict(adj=g.adj.float(), active=g.active.long(), selected=g.selected.long(), acts=g.acts.float(), ids=g.ids.long(),
                    n_layers=g.n_layers, logit_ids=g.logit_ids.long(), logit_probs=g.logit_probs.float(), node_mask=node, edge_mask=edge,
                    info=dict(impl=f'mi_repro.attribution ({src.name} sha256 {hashlib.sha256(src.read_bytes()).hexdigest()[:12]}, torch {torch.__version__})',
                              graph_s=graph_s, prune_scores_s=prune_s, load_s=load_s, **sc, logits_max_abs_diff=at.logits_check(rep),
                              backward_passes=g.info['backward_passes'], threads=torch.get_num_threads(),
                              rss_after_load_gib=rss_load, rss_after_graph_gib=rss_graph, peak_rss_gib=peak)), a.out)

# ---------------------------------------------------------------- comparison
def node_keys(d):
    "The key of every node of a saved graph, in adjacency order: features, errors (layer-major), tokens, logits."
    L, T = d['n_layers'], len(d['ids'])
    feats = [('feature', *map(int, d['active'][i].tolist())) for i in d['selected'].tolist()]
    return (feats + [('error', l, p) for l in range(L) for p in range(T)] + [('token', p) for p in range(T)]
            + [('logit', int(t)) for t in d['logit_ids'].tolist()])


def compare(ours, ct):
    import torch
    ko, kc = node_keys(ours), node_keys(ct)
    ic = {k: i for i, k in enumerate(kc)}
    common = [k for k in ko if k in ic]
    io = torch.tensor([i for i, k in enumerate(ko) if k in ic])
    jc = torch.tensor([ic[k] for k in common])
    A, B = ours['adj'][io][:, io].double(), ct['adj'][jc][:, jc].double()
    nz = (A != 0) | (B != 0)
    a, b = A[nz], B[nz]
    pear = float(torch.corrcoef(torch.stack([a, b]))[0, 1]) if len(a) > 1 else float('nan')
    big = B.abs().max()
    def per_edge(floor):
        strong = B.abs() >= floor * big
        return float(((A - B).abs()[strong] / B.abs()[strong]).max()) if strong.any() else float('nan')
    scale_rel = float((A - B).abs().max() / big)
    # active features and their activations (before any selection)
    ao = {tuple(x): float(v) for x, v in zip(ours['active'].tolist(), ours['acts'].tolist())}
    ac = {tuple(x): float(v) for x, v in zip(ct['active'].tolist(), ct['acts'].tolist())}
    both = ao.keys() & ac.keys()
    act_diff = max((abs(ao[k] - ac[k]) / max(abs(ac[k]), 1e-12) for k in both), default=float('nan'))
    so = {k for k in ko if k[0] == 'feature'}; sc = {k for k in kc if k[0] == 'feature'}
    po = {ko[i] for i in ours['node_mask'].nonzero()[:, 0].tolist()}
    pc = {kc[i] for i in ct['node_mask'].nonzero()[:, 0].tolist()}
    jac = lambda x, y: len(x & y) / max(len(x | y), 1)
    feat = lambda s: {k for k in s if k[0] == 'feature'}
    err = lambda s: {k for k in s if k[0] == 'error'}
    eo = {(ko[t], ko[s]) for t, s in ours['edge_mask'].nonzero().tolist()}
    ec = {(kc[t], kc[s]) for t, s in ct['edge_mask'].nonzero().tolist()}
    return dict(
        same_token_ids=bool(torch.equal(ours['ids'], ct['ids'])),
        active_features=dict(ours=len(ao), circuit_tracer=len(ac), common=len(both), max_rel_activation_diff=act_diff),
        logit_targets=dict(ours=ours['logit_ids'].tolist(), circuit_tracer=ct['logit_ids'].tolist(),
                           max_abs_prob_diff=float((ours['logit_probs'] - ct['logit_probs']).abs().max()) if len(ours['logit_probs']) == len(ct['logit_probs']) else None),
        selected_features=dict(ours=len(so), circuit_tracer=len(sc), common=len(so & sc), jaccard=round(jac(so, sc), 4)),
        edges=dict(common_nodes=len(common), entries=int(nz.sum()), pearson=pear, max_abs_err_over_max_edge=scale_rel,
                   max_rel_err_per_edge={f'|ct| >= {f:g} max': per_edge(f) for f in (1e-2, 1e-3, 1e-4)},
                   max_abs_edge=float(big), max_abs_err=float((A - B).abs().max())),
        pruned=dict(nodes=dict(ours=len(po), circuit_tracer=len(pc), common=len(po & pc), jaccard=round(jac(po, pc), 4)),
                    feature_nodes=dict(ours=len(feat(po)), circuit_tracer=len(feat(pc)), jaccard=round(jac(feat(po), feat(pc)), 4)),
                    error_nodes=dict(ours=len(err(po)), circuit_tracer=len(err(pc)), jaccard=round(jac(err(po), err(pc)), 4)),
                    edges=dict(ours=len(eo), circuit_tracer=len(ec), common=len(eo & ec), jaccard=round(jac(eo, ec), 4))))

# ---------------------------------------------------------------- harness
def _run(cmd, env, out, name):
    t0 = time.perf_counter()
    r = subprocess.run([str(c) for c in cmd], env=env, stdout=sys.stderr, stderr=sys.stderr)
    if r.returncode or not Path(out).exists(): fail(f"the {name} worker failed (exit {r.returncode}); see its output above. Command: {' '.join(map(str, cmd))}")
    import torch
    d = torch.load(out, weights_only=False)
    d['info']['process_wall_s'] = time.perf_counter() - t0
    return d


def main():
    import signal
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    if len(sys.argv) > 1 and sys.argv[1] == '--_worker-ours': return _worker_ours(sys.argv[2:])
    ap = argparse.ArgumentParser(description=__doc__.split('\n\n')[0], formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    ap.add_argument('--prompt', default=DEFAULT_PROMPT, help="text to attribute (the model's document-start token is put first)")
    ap.add_argument('--model', default='smollm2-135m', help='model name (mi_repro registry) or local Llama-architecture folder')
    ap.add_argument('--dicts', default=None, help='chapter-04 transcoder folder (default: the newest complete one of the model, find_dicts)')
    ap.add_argument('--clt', default=None, help="a cross-layer transcoder's clt.safetensors (mi_repro.clt) instead of a per-layer set; 'chapter04': chapter 04's default CLT of the model")
    ap.add_argument('--max-feature-nodes', type=int, default=2048, help='feature nodes in both graphs (0: all active features)')
    ap.add_argument('--batch-size', type=int, default=64, help='targets per backward pass, both tools')
    ap.add_argument('--threads', type=int, default=1, help='torch threads in both workers')
    ap.add_argument('--node-threshold', type=float, default=0.8)
    ap.add_argument('--edge-threshold', type=float, default=0.98)
    ap.add_argument('--n-ctx', type=int, default=2048, help="circuit-tracer's TransformerLens context size (its attention masks are n_ctx x n_ctx)")
    ap.add_argument('--repeats', type=int, default=1, help='runs of each tool, alternating which goes first; median graph time reported')
    ap.add_argument('--order', choices=('ours-first', 'ct-first'), default='ours-first', help='which tool runs first')
    ap.add_argument('--save', action='store_true', help=f'also write the JSON to {RESULTS.relative_to(ROOT)}')
    a = ap.parse_args()
    if a.threads < 1 or a.repeats < 1 or a.batch_size < 1 or a.max_feature_nodes < 0: ap.error('threads, repeats and batch-size must be >= 1, max-feature-nodes >= 0')
    if not a.prompt.strip(): ap.error('the prompt is empty')
    sys.path.insert(0, str(ROOT))
    import torch
    from mi_repro.core import UserError
    from mi_repro.models import load_model, locate
    from mi_repro.dictionaries import find_dicts, load_dicts
    from mi_repro.dictionaries import export_circuit_tracer
    from mi_repro.models import prompt_ids
    pin_threads(a.threads)
    try:
        model_dir = locate(a.model)
        r = load_model(a.model, 'cpu', 'fp32')
        if a.clt:  # a cross-layer transcoder: one file, circuit-tracer's CLT layout on export
            from mi_repro.clt import load_clt, chapter_clt, export_clt
            dicts = Path(a.clt) if a.clt != 'chapter04' else None
            tcs = load_clt(dicts) if dicts else chapter_clt(r.model, r.tok, r.spec, a.model)
            tcs.check(r.spec)
            acts = {tcs.act}
            if dicts is None: dicts = Path(tcs.cfg.get('file', 'chapter04'))
            tc_desc = dict(kind='cross-layer transcoder', layers=tcs.n_layers, n_features=tcs.n_features, act=tcs.act, k=tcs.cfg['k'], span=tcs.cfg['span'])
        else:
            try: dicts = Path(a.dicts) if a.dicts else find_dicts(a.model)
            except UserError as e: raise UserError(f"{e} (here: --dicts FOLDER)".replace('or pass dicts=<folder>', 'or pass a folder')) from None
            if not dicts.is_dir(): raise UserError(f"no dictionary folder at {dicts}: pass --dicts FOLDER (a chapter-04 run) or train them with `mi-repro run 04 --model {a.model}`")
            tcs = load_dicts(dicts)
            if r.spec.n_layers != len(tcs): raise UserError(f"{dicts} has transcoders for {len(tcs)} layers, {a.model} has {r.spec.n_layers}: the graph needs every layer")
            acts = {tc.act for tc in tcs.values()}
            tc_desc = dict(layers=len(tcs), n_features=tcs[0].n_features, act=sorted(acts), skip=tcs[0].W_skip is not None)
        if acts & {'topk'}: raise UserError(f"{dicts} holds TopK dictionaries, which circuit-tracer {CT_VERSION} cannot run: use BatchTopK, JumpReLU or ReLU")
        ids = prompt_ids(r.tok, a.prompt)
        tokens = r.tok.convert_ids_to_tokens(ids.tolist())
        with torch.no_grad(): ref_logits = r.hf(ids[None]).logits[0].float()
    except UserError as e: fail(str(e))
    have = ensure_ct_venv()
    mfn = a.max_feature_nodes or None
    log(f"{a.model}: {len(ids)} tokens {tokens}; {tc_desc} from {dicts}")
    env = dict(os.environ, OMP_NUM_THREADS=str(a.threads), MKL_NUM_THREADS=str(a.threads), PYTHONUNBUFFERED='1', TOKENIZERS_PARALLELISM='false',
               PYTHONPATH=os.pathsep.join(p for p in (str(ROOT), os.environ.get('PYTHONPATH', '')) if p))
    common = ['--batch-size', a.batch_size, '--threads', a.threads, '--node-threshold', a.node_threshold, '--edge-threshold', a.edge_threshold,
              *(['--max-feature-nodes', mfn] if mfn else [])]
    load0 = os.getloadavg()[0]
    with tempfile.TemporaryDirectory(prefix='mi_repro_attrbench_') as tmp:
        tmp = Path(tmp)
        if a.clt:
            clt_file = tmp/'clt.safetensors'
            from mi_repro.clt import save_clt, export_clt
            save_clt(tcs, clt_file)
            export_clt(tcs, tmp/'ct_transcoders', model=a.model)
        else: export_circuit_tracer(tcs, tmp/'ct_transcoders', model=a.model)
        del r, tcs  # the workers load their own copies
        torch.save(dict(ids=ids, ref_logits=ref_logits, prompt=a.prompt), tmp/'in.pt')
        runs = dict(
            ours=lambda: _run([sys.executable, __file__, '--_worker-ours', tmp/'in.pt', tmp/'ours.pt', '--model', a.model, *(['--clt', clt_file] if a.clt else ['--dicts', dicts]), *common],
                              env, tmp/'ours.pt', 'mi_repro'),
            circuit_tracer=lambda: _run([venv_python(VENV), HERE/'_ct_worker.py', tmp/'in.pt', tmp/'ct.pt', '--model-dir', model_dir,
                                         '--transcoders', tmp/'ct_transcoders', '--n-ctx', a.n_ctx, *common], env, tmp/'ct.pt', 'circuit-tracer'))
        res, times, loads = {}, {'ours': [], 'circuit_tracer': []}, []
        first = ('ours', 'circuit_tracer') if a.order == 'ours-first' else ('circuit_tracer', 'ours')
        for rep in range(a.repeats):
            for name in (first if rep % 2 == 0 else first[::-1]):  # alternate which goes first
                log(f"run {rep + 1}/{a.repeats}: {name} (1-min load average {os.getloadavg()[0]:.2f})")
                l0 = os.getloadavg()[0]
                res[name] = runs[name]()
                i = res[name]['info']
                times[name].append(i['graph_s']); loads.append((name, round(l0, 2), round(os.getloadavg()[0], 2)))
                log(f"  {name}: graph in {i['graph_s']:.1f} s, peak RSS {i['peak_rss_gib']:.2f} GiB")
    load1 = os.getloadavg()[0]
    ours, ct = res['ours'], res['circuit_tracer']
    cmp_ = compare(ours, ct)
    med = lambda v: statistics.median(v)
    side = lambda d, n: dict(impl=d['info']['impl'], graph_s=round(med(times[n]), 2), graph_s_runs=[round(t, 2) for t in times[n]],
                          prune_and_scores_s=round(d['info']['prune_scores_s'], 2),
                          load_s=round(d['info']['load_s'], 2), process_wall_s=round(d['info']['process_wall_s'], 2),
                          peak_rss_gib=round(d['info']['peak_rss_gib'], 3), rss_after_load_gib=round(d['info']['rss_after_load_gib'], 3),
                          rss_after_graph_gib=round(d['info']['rss_after_graph_gib'], 3),
                          scores=dict(replacement=round(d['info']['replacement'], 5), completeness=round(d['info']['completeness'], 5)),
                          feature_nodes=len(d['selected']), logits_max_abs_diff_vs_model=d['info']['logits_max_abs_diff'],
                          **{k: d['info'][k] for k in ('backward_passes', 'n_ctx', 'rope_theta') if k in d['info']})
    ratio = med(times['ours']) / med(times['circuit_tracer'])
    e = cmp_['edges']
    out = dict(
        benchmark='attribution graphs: mi_repro vs circuit-tracer',
        settings=dict(model=a.model, model_dir=str(model_dir), prompt=a.prompt, n_tokens=len(ids), tokens=tokens,
                      dicts=str(dicts), transcoders=tc_desc,
                      max_feature_nodes=mfn, batch_size=a.batch_size, threads=a.threads, node_threshold=a.node_threshold,
                      edge_threshold=a.edge_threshold, order=a.order, run_sequentially=True, ct_venv=have, cpu=_cpu_name(),
                      cpu_count=os.cpu_count(), repeats=a.repeats, loadavg_1min_before=round(load0, 2), loadavg_1min_after=round(load1, 2),
                      loadavg_1min_per_run=[dict(tool=n, before=b, after=f) for n, b, f in loads],
                      contended=max(load0, load1) > a.threads + 0.5),
        ours=side(ours, 'ours'), circuit_tracer=side(ct, 'circuit_tracer'), agreement=cmp_,
        goal=dict(edge_pearson_met=e['pearson'] >= 0.999, edge_rel_err_met=e['max_abs_err_over_max_edge'] <= 1e-3,
                  time_ratio_ours_over_ct=round(ratio, 3), time_met=ratio <= 0.5,
                  target='edges on common nodes: Pearson >= 0.999 and max relative error <= 1e-3; ours <= 0.5x circuit-tracer graph time'))
    js = json.dumps(out, indent=1)
    print(js)
    if a.save:
        res_file = RESULTS.with_name('attribution_clt.json') if a.clt else RESULTS
        res_file.parent.mkdir(parents=True, exist_ok=True)
        res_file.write_text(js + '\n')
        log(f"saved {res_file}")


def _cpu_name():
    try:
        for line in open('/proc/cpuinfo'):
            if line.startswith('model name'): return line.split(':', 1)[1].strip()
    except OSError: pass
    return platform.processor() or platform.machine()


if __name__ == '__main__': main()

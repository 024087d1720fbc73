"""Attribution at scale: one graph at 8,192 feature nodes with a random transcoder set of the published layout
(`mi_repro.scale.random_set`, JumpReLU, circuit-tracer's `layer_{i}.safetensors`), the set read lazily
(`LazyTranscoder`: encoders read per call, only active features' decoder rows gathered) and eagerly (every weight
in memory), and by circuit-tracer 0.5.0 on the same model, set, prompt and settings, side by side; prints one JSON
object on stdout (progress goes to stderr).

    .venv/bin/python benchmarks/scale.py [--model qwen3-mid] [--n-features 32768] [--dtype bf16] [--threads 1]
                                         [--max-feature-nodes 8192] [--device cpu] [--modes lazy eager circuit-tracer]
                                         [--ct-venv DIR] [--save FILE]

- The set: `--n-features` per layer at every layer of the model, stored in `--set-dtype` (default bf16), kept in
  `~/.cache/mi-repro/scale-sets/` (written once, one layer at a time). The default, 32,768 features at d 512, is
  the published Qwen3-4B set's expansion (about 163,840 features at d 2560, 64x) at qwen3-mid's width.
  `--density` sets the expected share of features active per token (default: 30 per token and layer).
- Each mode runs in its own subprocess, one after the other, with the same `--threads`; each reports the time to
  open the set, build the replacement model (`Replacement`) and the graph (`attribute`), its RSS after opening the
  set and its process's peak RSS (`ru_maxrss`: model, set and graph; on CUDA also the peak GPU memory). Peak RSS
  counts file pages a process touched through memory maps too.
- The lazy and eager graphs are compared: the same selected features, and max |adj_lazy - adj_eager| / max |adj_eager|.
- `circuit-tracer`: circuit-tracer 0.5.0 in its own venv (`--ct-venv`, default `benchmarks/.venv-circuit-tracer`,
  created on first use by `attribution.ensure_ct_venv`; without network and without the venv the mode fails with an
  error entry, the others still run), through `_ct_worker.py` and its TransformerLens backend (TransformerLens 3.2.1
  converts Qwen3, q_norm and k_norm included, `convert_qwen3_weights`, `use_qk_norm`). A subprocess of this venv
  first loads the model as the other modes do and writes the prompt's ids, the model's logits and, for a weightless
  shape folder (qwen3-mid, qwen3-4b-shape: weights drawn at load time), the drawn weights as a safetensors file
  (`prep_s`, not counted), so circuit-tracer gets the very same tensors; the worker checks its TransformerLens
  logits against them (`logits_max_abs_diff`; at most 1e-2 in fp32, 5% of the largest logit in bf16/fp16) before
  building the graph. Its numbers: `model_s` (weights into TransformerLens), `open_set_s` (`load_transcoders`, its
  defaults: encoders in memory, decoders read lazily, in the model's dtype), `graph_s` (its `attribute`, which
  includes its own forward pass), RSS after the model and after the set, peak RSS and, on CUDA, peak GPU memory;
  pruning is skipped (`--no-prune`). Its graph is compared with ours (lazy if run, else eager) in
  `vs_circuit_tracer`: nodes matched by (layer, position, feature) as in `attribution.py`; the active and selected
  feature sets, the logit targets, and over the nodes both graphs hold the edges' Pearson correlation and
  max |adj_ours - adj_ct| / max |adj_ct|. A feature whose pre-activation lies at its threshold can be active on one
  side only (rounding), which changes the selection by a node and moves its contribution into the error nodes.
- The GPU check (`gpu_check.sh`) runs lazy and eager only: circuit-tracer's venv does not travel cheaply there (see
  gpu_check.sh).
"""
import argparse, json, os, platform, resource, shutil, subprocess, sys, tempfile, time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from _venv import log, pin_threads

PROMPT = "In the small village by the sea, the old fisherman told his grandson that the capital of France is"

def _rss_mb() -> float:
    for line in Path('/proc/self/status').read_text().splitlines():
        if line.startswith('VmRSS:'): return int(line.split()[1]) / 1024
    return float('nan')

def _worker(a):
    pin_threads(a.threads)
    import torch
    from safetensors.torch import save_file
    from mi_repro.models import load_model
    from mi_repro.dictionaries import import_circuit_tracer
    from mi_repro.attribution import Replacement, attribute
    from mi_repro.models import prompt_ids
    r, t = {}, time.perf_counter()
    m = load_model(a.model, a.device, a.dtype)
    r['model_s'], r['rss_model_mb'] = round(time.perf_counter() - t, 2), round(_rss_mb())
    t = time.perf_counter()
    tcs = import_circuit_tracer(a.set, m.spec, lazy=a.worker == 'lazy', device=m.model.device)
    r['open_set_s'], r['rss_set_mb'] = round(time.perf_counter() - t, 2), round(_rss_mb())
    t = time.perf_counter()
    rep = Replacement(m.hf, m.spec, tcs, prompt_ids(m.tok, a.prompt), drop_first_token=False)  # as circuit-tracer: compared below
    r['replacement_s'] = round(time.perf_counter() - t, 2)
    t = time.perf_counter()
    g = attribute(rep, m.tok, a.prompt, max_feature_nodes=a.max_feature_nodes, batch_size=a.batch_size, progress=False)
    r['attribute_s'] = round(time.perf_counter() - t, 2)
    r['graph_s'] = round(r['replacement_s'] + r['attribute_s'], 2)
    r.update(n_tokens=rep.T, n_active=g.info['n_active'], n_selected=g.info['n_selected'],
             backward_passes=g.info['backward_passes'], peak_rss_mb=round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024))
    if torch.cuda.is_available() and m.model.device.type == 'cuda': r['peak_gpu_mb'] = round(torch.cuda.max_memory_allocated() / 2**20)
    save_file(dict(adj=g.adj.contiguous(), selected=g.selected.contiguous(), active=g.active.contiguous(), acts=g.acts.contiguous(),
                   ids=g.ids.contiguous(), logit_ids=g.logit_ids.contiguous(), logit_probs=g.logit_probs.contiguous(),
                   n_layers=torch.tensor(g.n_layers)), a.graph_out)
    print(json.dumps(r))

def _ct_prep(a):
    "For circuit-tracer (its own venv): the prompt's ids and the model's logits (IN.pt), and the HF weights of a weightless shape folder."
    pin_threads(a.threads)
    import torch
    from safetensors.torch import save_file
    from mi_repro.models import load_model, locate, SHAPE_MARK
    from mi_repro.models import prompt_ids
    t = time.perf_counter()
    m = load_model(a.model, a.device, a.dtype)
    ids = prompt_ids(m.tok, a.prompt)
    with torch.no_grad(): ref = m.hf(ids[None].to(m.hf.device)).logits[0].float().cpu()
    torch.save(dict(ids=ids, ref_logits=ref, prompt=a.prompt), Path(a.graph_out)/'in.pt')
    r = dict(model_dir=str(locate(a.model)), weights=None, ref_logits_max_abs=float(ref.abs().max()))
    if (locate(a.model)/SHAPE_MARK).exists():  # weights drawn at load time: circuit-tracer gets these very tensors
        sd, tied = m.hf.state_dict(), m.hf.config.tie_word_embeddings
        r['weights'] = str(Path(a.graph_out)/'weights.safetensors')
        save_file({k: v.detach().contiguous() for k, v in sd.items() if not (tied and k == 'lm_head.weight')}, r['weights'])
    r['prep_s'] = round(time.perf_counter() - t, 2)
    print(json.dumps(r))

def _last_line(p): return p.stderr.strip().splitlines()[-1] if p.stderr.strip() else f'exit {p.returncode}'

def _circuit_tracer(a, tset, tmp, env) -> dict:
    "circuit-tracer builds the graph in its own venv (`_ct_worker.py`): prepare its inputs here, run it, read its numbers."
    from attribution import ensure_ct_venv, VENV, CT_VERSION
    from _venv import venv_python
    venv = Path(a.ct_venv) if a.ct_venv else VENV
    try: have = ensure_ct_venv(venv)
    except SystemExit: return dict(error=f"no circuit-tracer {CT_VERSION} venv at {venv} and it could not be created (see stderr)")
    d = tmp/'ct'; d.mkdir(exist_ok=True)
    cmd = [sys.executable, __file__, '--worker', 'ct-prep', '--graph-out', str(d), '--model', a.model, '--dtype', a.dtype,
           '--device', a.device, '--threads', str(a.threads), '--prompt', a.prompt]
    p = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if p.returncode: return dict(error=f'preparing its inputs: {_last_line(p)}')
    prep = json.loads(p.stdout.strip().splitlines()[-1])
    # the logit check: fp32 as in attribution.py; bf16/fp16 models differ between the two implementations by rounding
    tol = 1e-2 if a.dtype == 'fp32' else max(1e-2, 0.05 * prep['ref_logits_max_abs'])
    cmd = [str(venv_python(venv)), str(HERE/'_ct_worker.py'), str(d/'in.pt'), str(tmp/'circuit-tracer.pt'), '--model-dir', prep['model_dir'],
           *(['--weights', prep['weights']] if prep['weights'] else []), '--transcoders', str(tset), '--device', a.device,
           '--dtype', a.dtype, '--threads', str(a.threads), '--max-feature-nodes', str(a.max_feature_nodes),
           '--batch-size', str(a.batch_size), '--logits-tol', f'{tol:g}', '--no-prune']
    t = time.perf_counter()
    p = subprocess.run(cmd, capture_output=True, text=True, env=env)
    wall = time.perf_counter() - t
    if prep['weights']: Path(prep['weights']).unlink()
    if p.returncode or not (tmp/'circuit-tracer.pt').exists(): return dict(error=_last_line(p), venv=have)
    import torch
    i = torch.load(tmp/'circuit-tracer.pt', weights_only=False)
    g, i = i, i['info']
    mb = lambda gib: round(gib * 1024)
    r = dict(impl=i['impl'], prep_s=prep['prep_s'], model_s=round(i['model_s'], 2), rss_model_mb=mb(i['rss_model_gib']),
             open_set_s=round(i['open_set_s'], 2), rss_set_mb=mb(i['rss_set_gib']), attribute_s=round(i['graph_s'], 2),
             graph_s=round(i['graph_s'], 2), n_tokens=len(g['ids']), n_active=len(g['active']), n_selected=len(g['selected']),
             peak_rss_mb=mb(i['peak_rss_gib']), logits_max_abs_diff=i['logits_max_abs_diff'], logits_tol=tol, process_wall_s=round(wall, 2),
             venv=have)
    if 'peak_gpu_gib' in i: r['peak_gpu_mb'] = mb(i['peak_gpu_gib'])
    return r

def _graph(path):
    "A saved graph (ours: safetensors, circuit-tracer: torch.save) as a dict of tensors."
    import torch
    if str(path).endswith('.pt'): return torch.load(path, weights_only=False)
    from safetensors.torch import load_file
    d = load_file(str(path)); d['n_layers'] = int(d['n_layers']); return d

def compare_ct(ours:dict, ct:dict) -> dict:
    "Ours against circuit-tracer's graph: nodes matched by key (attribution.node_keys), edges over the nodes both hold."
    import torch
    from attribution import node_keys
    ko, kc = node_keys(ours), node_keys(ct)
    ic = {k: i for i, k in enumerate(kc)}
    io = torch.tensor([i for i, k in enumerate(ko) if k in ic])
    jc = torch.tensor([ic[k] for k in ko if k in ic])
    so, sc = {k for k in ko if k[0] == 'feature'}, {k for k in kc if k[0] == 'feature'}
    ao = {tuple(x): v for x, v in zip(ours['active'].tolist(), ours['acts'].float().tolist())}
    ac = {tuple(x): v for x, v in zip(ct['active'].tolist(), ct['acts'].float().tolist())}
    both = ao.keys() & ac.keys()
    one_side = lambda x, y: [dict(layer=k[0], pos=k[1], feature=k[2], act=x[k]) for k in sorted(x.keys() - y.keys())[:5]]
    A, B = ours['adj'].float()[io][:, io], ct['adj'].float()[jc][:, jc]
    big, diff = B.abs().max(), (A - B).abs()
    nz = (A != 0) | (B != 0)
    a, b = A[nz].double(), B[nz].double()
    del A, B
    a, b = a - a.mean(), b - b.mean()
    pear = float((a * b).sum() / (a.norm() * b.norm()))
    return dict(same_token_ids=bool(torch.equal(ours['ids'].long(), ct['ids'].long())),
                active_features=dict(ours=len(ao), circuit_tracer=len(ac), common=len(both), only_ours=one_side(ao, ac), only_ct=one_side(ac, ao),
                                     max_rel_activation_diff=max((abs(ao[k] - ac[k]) / max(abs(ac[k]), 1e-12) for k in both), default=float('nan'))),
                logit_targets_same=ours['logit_ids'].tolist() == ct['logit_ids'].tolist(),
                selected_features=dict(ours=len(so), circuit_tracer=len(sc), common=len(so & sc), jaccard=round(len(so & sc) / max(len(so | sc), 1), 4)),
                same_selected=so == sc, common_nodes=len(io), edge_entries=int(nz.sum()), edge_pearson=pear,
                adj_max_rel_diff=float(diff.max() / big), max_abs_edge=float(big))

def main():
    ap = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    ap.add_argument('--model', default='qwen3-mid'); ap.add_argument('--n-features', type=int, default=32768)
    ap.add_argument('--density', type=float, default=None); ap.add_argument('--set-dtype', default='bf16')
    ap.add_argument('--dtype', default='fp32', help='model dtype'); ap.add_argument('--device', default='cpu')
    ap.add_argument('--threads', type=int, default=1); ap.add_argument('--max-feature-nodes', type=int, default=8192)
    ap.add_argument('--batch-size', type=int, default=64); ap.add_argument('--prompt', default=PROMPT)
    ap.add_argument('--modes', nargs='+', default=['lazy', 'eager'], choices=('lazy', 'eager', 'circuit-tracer')); ap.add_argument('--save')
    ap.add_argument('--set-dir', help='where the random set lives (default: the cache)')
    ap.add_argument('--ct-venv', help='circuit-tracer venv (default benchmarks/.venv-circuit-tracer, created on first use)')
    ap.add_argument('--worker'); ap.add_argument('--set'); ap.add_argument('--graph-out')
    a = ap.parse_args()
    if a.worker == 'ct-prep': return _ct_prep(a)
    if a.worker: return _worker(a)
    import torch
    from transformers import AutoConfig
    from mi_repro.core import cache_dir
    from mi_repro.models import locate
    from mi_repro.scale import random_set
    c = AutoConfig.from_pretrained(locate(a.model))
    L, d, F = c.num_hidden_layers, c.hidden_size, a.n_features
    density = a.density or 30 / F
    sdt = dict(bf16=torch.bfloat16, fp32=torch.float32, fp16=torch.float16)[a.set_dtype]
    tset = Path(a.set_dir) if a.set_dir else cache_dir('scale-sets', f'{a.model}-F{F}-{a.set_dtype}-p{density:.3g}')
    if not (tset/'config.yaml').exists():
        t = time.perf_counter(); log(f"writing a random set: {L} layers x {F} features x d {d} ({a.set_dtype}) -> {tset}")
        random_set(tset, L, d, F, density=density, dtype=sdt, model=a.model)
        log(f"  written in {time.perf_counter() - t:.0f} s")
    size = sum(f.stat().st_size for f in tset.glob('layer_*.safetensors'))
    res = dict(model=a.model, n_layers=L, d_model=d, n_features=F, set_dtype=a.set_dtype, set_gb=round(size / 1e9, 2),
               density=density, model_dtype=a.dtype, device=a.device, threads=a.threads, prompt=a.prompt,
               max_feature_nodes=a.max_feature_nodes, batch_size=a.batch_size, machine=platform.processor() or platform.machine(),
               loadavg_before=round(os.getloadavg()[0], 2), modes={})
    tmp = Path(tempfile.mkdtemp())
    env = {**os.environ, 'OMP_NUM_THREADS': str(a.threads), 'MKL_NUM_THREADS': str(a.threads)}
    for mode in a.modes:
        log(f"{mode}: building the graph ...")
        if mode == 'circuit-tracer':
            res['modes'][mode] = _circuit_tracer(a, tset, tmp, env); log(f"  {res['modes'][mode]}"); continue
        cmd = [sys.executable, __file__, '--worker', mode, '--set', str(tset), '--graph-out', str(tmp/f'{mode}.safetensors'),
               '--model', a.model, '--dtype', a.dtype, '--device', a.device, '--threads', str(a.threads),
               '--max-feature-nodes', str(a.max_feature_nodes), '--batch-size', str(a.batch_size), '--prompt', a.prompt]
        p = subprocess.run(cmd, capture_output=True, text=True, env=env)
        if p.returncode: res['modes'][mode] = dict(error=_last_line(p))
        else: res['modes'][mode] = json.loads(p.stdout.strip().splitlines()[-1])
        log(f"  {res['modes'][mode]}")
    if all((tmp/f'{m}.safetensors').exists() for m in ('lazy', 'eager')):
        from safetensors.torch import load_file
        x, y = load_file(str(tmp/'lazy.safetensors')), load_file(str(tmp/'eager.safetensors'))
        res['same_selected'] = bool(torch.equal(x['selected'], y['selected']))
        if res['same_selected']: res['adj_max_rel_diff'] = float((x['adj'] - y['adj']).abs().max() / y['adj'].abs().max())
        del x, y
    ours = next((m for m in ('lazy', 'eager') if (tmp/f'{m}.safetensors').exists()), None)
    if ours and (tmp/'circuit-tracer.pt').exists():
        res['vs_circuit_tracer'] = dict(ours=ours, **compare_ct(_graph(tmp/f'{ours}.safetensors'), _graph(tmp/'circuit-tracer.pt')))
    shutil.rmtree(tmp, ignore_errors=True)
    res['loadavg_after'] = round(os.getloadavg()[0], 2)
    text = json.dumps(res, indent=1)
    print(text)
    if a.save: Path(a.save).parent.mkdir(parents=True, exist_ok=True); Path(a.save).write_text(text + '\n')

if __name__ == '__main__': main()

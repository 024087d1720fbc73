"""Attribution at scale: one graph at 8,192 feature nodes with a random transcoder set of the published layout
(`mi_repro.scale.random_set`, JumpReLU, circuit-tracer's `layer_{i}.safetensors`), the set read lazily
(`LazyTranscoder`: encoders read per call, only active features' decoder rows gathered) and eagerly (every weight
in memory), side by side; prints one JSON object on stdout (progress goes to stderr).

    .venv/bin/python benchmarks/scale.py [--model qwen3-mid] [--n-features 32768] [--dtype bf16] [--threads 1]
                                         [--max-feature-nodes 8192] [--device cpu] [--modes lazy eager] [--save FILE]

- The set: `--n-features` per layer at every layer of the model, stored in `--set-dtype` (default bf16), kept in
  `~/.cache/mi-repro/scale-sets/` (written once, one layer at a time). The default, 32,768 features at d 512, is
  the published Qwen3-4B set's expansion (about 163,840 features at d 2560, 64x) at qwen3-mid's width.
  `--density` sets the expected share of features active per token (default: 30 per token and layer).
- Each mode runs in its own subprocess, one after the other, with the same `--threads`; each reports the time to
  open the set, build the replacement model (`Replacement`) and the graph (`attribute`), its RSS after opening the
  set and its process's peak RSS (`ru_maxrss`: model, set and graph; on CUDA also the peak GPU memory). Peak RSS
  counts file pages a process touched through memory maps too.
- The two graphs are compared: the same selected features, and max |adj_lazy - adj_eager| / max |adj_eager|.
"""
import argparse, json, os, platform, resource, subprocess, sys, tempfile, time
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
    from mi_repro.attribution import Replacement, attribute, prompt_ids
    r, t = {}, time.perf_counter()
    m = load_model(a.model, a.device, a.dtype)
    r['model_s'], r['rss_model_mb'] = round(time.perf_counter() - t, 2), round(_rss_mb())
    t = time.perf_counter()
    tcs = import_circuit_tracer(a.set, m.spec, lazy=a.worker == 'lazy', device=m.model.device)
    r['open_set_s'], r['rss_set_mb'] = round(time.perf_counter() - t, 2), round(_rss_mb())
    t = time.perf_counter()
    rep = Replacement(m.hf, m.spec, tcs, prompt_ids(m.tok, a.prompt))
    r['replacement_s'] = round(time.perf_counter() - t, 2)
    t = time.perf_counter()
    g = attribute(rep, m.tok, a.prompt, max_feature_nodes=a.max_feature_nodes, batch_size=a.batch_size, progress=False)
    r['attribute_s'] = round(time.perf_counter() - t, 2)
    r['graph_s'] = round(r['replacement_s'] + r['attribute_s'], 2)
    r.update(n_tokens=rep.T, n_active=g.info['n_active'], n_selected=g.info['n_selected'],
             backward_passes=g.info['backward_passes'], peak_rss_mb=round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024))
    if torch.cuda.is_available() and m.model.device.type == 'cuda': r['peak_gpu_mb'] = round(torch.cuda.max_memory_allocated() / 2**20)
    save_file(dict(adj=g.adj.contiguous(), selected=g.selected.contiguous()), a.graph_out)
    print(json.dumps(r))

def main():
    ap = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    ap.add_argument('--model', default='qwen3-mid'); ap.add_argument('--n-features', type=int, default=32768)
    ap.add_argument('--density', type=float, default=None); ap.add_argument('--set-dtype', default='bf16')
    ap.add_argument('--dtype', default='fp32', help='model dtype'); ap.add_argument('--device', default='cpu')
    ap.add_argument('--threads', type=int, default=1); ap.add_argument('--max-feature-nodes', type=int, default=8192)
    ap.add_argument('--batch-size', type=int, default=64); ap.add_argument('--prompt', default=PROMPT)
    ap.add_argument('--modes', nargs='+', default=['lazy', 'eager']); ap.add_argument('--save')
    ap.add_argument('--set-dir', help='where the random set lives (default: the cache)')
    ap.add_argument('--worker'); ap.add_argument('--set'); ap.add_argument('--graph-out')
    a = ap.parse_args()
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
        cmd = [sys.executable, __file__, '--worker', mode, '--set', str(tset), '--graph-out', str(tmp/f'{mode}.safetensors'),
               '--model', a.model, '--dtype', a.dtype, '--device', a.device, '--threads', str(a.threads),
               '--max-feature-nodes', str(a.max_feature_nodes), '--batch-size', str(a.batch_size), '--prompt', a.prompt]
        p = subprocess.run(cmd, capture_output=True, text=True, env=env)
        if p.returncode: res['modes'][mode] = dict(error=p.stderr.strip().splitlines()[-1] if p.stderr.strip() else f'exit {p.returncode}')
        else: res['modes'][mode] = json.loads(p.stdout.strip().splitlines()[-1])
        log(f"  {res['modes'][mode]}")
    if all((tmp/f'{m}.safetensors').exists() for m in ('lazy', 'eager')):
        from safetensors.torch import load_file
        x, y = load_file(str(tmp/'lazy.safetensors')), load_file(str(tmp/'eager.safetensors'))
        res['same_selected'] = bool(torch.equal(x['selected'], y['selected']))
        if res['same_selected']: res['adj_max_rel_diff'] = float((x['adj'] - y['adj']).abs().max() / y['adj'].abs().max())
    res['loadavg_after'] = round(os.getloadavg()[0], 2)
    text = json.dumps(res, indent=1)
    print(text)
    if a.save: Path(a.save).parent.mkdir(parents=True, exist_ok=True); Path(a.save).write_text(text + '\n')

if __name__ == '__main__': main()

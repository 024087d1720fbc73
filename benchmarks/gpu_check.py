"""Run chapters 01, 04 (short), 06 and 07 on one model (default qwen3-4b-shape, bf16, CUDA) without a Jupyter kernel:
each chapter notebook's code cells are executed in order in one namespace, with the parameters injected after the
`parameters` cell as papermill does (cells marked `#| slow` are skipped: they load the offline GGUF models).
Writes times, memory and each chapter's recorded figures to one JSON file.

    python benchmarks/gpu_check.py OUT.json [--model qwen3-4b-shape] [--device cuda] [--dtype bf16] [--chapters 01 04 06 07]

A chapter that fails is recorded with the cell and the error's last line, and the next chapter runs (a chapter that
needs an earlier one's output will fail too). Needs the package installed (or on PYTHONPATH) and the chapters in nbs/.
"""
import argparse, json, linecache, os, resource, sys, time, traceback, types
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
# short settings: chapter 04 trains on 8,192 tokens for one pass; 06 and 07 build small graphs
SHORT = {'01_forward': {},
         '04_dictionaries': dict(n_tokens=8192, eval_tokens=2048, epochs=1.0, expansion=4, batch_size=1024),
         '06_attribution': dict(max_feature_nodes=1024, n_pages=5),
         '07_interventions': dict(n_nodes=6, n_gvr=4, max_feature_nodes=256, set_size=4, n_train=2, n_test=4, n_draws=8)}

def _stub_ipython():
    "A no-op IPython.display where IPython is not installed (the GPU image has none)."
    try: import IPython.display  # noqa: F401
    except ImportError:
        m, d = types.ModuleType('IPython'), types.ModuleType('IPython.display')
        d.display, d.HTML, d.Markdown = (lambda *a, **k: None), str, str
        m.display, m.get_ipython, m.version_info = d, (lambda: None), (9, 0)  # matplotlib asks both when IPython is loaded
        sys.modules.update({'IPython': m, 'IPython.display': d})

def _carried_corpus():
    "Where the corpus's Debian packages are absent (a GPU image), use the prebuilt corpus carried in the cache."
    import mi_repro.corpus as c
    if all(c.package_versions().values()): return
    for m in sorted(c.cache_dir('corpus').glob('*/manifest.json')):
        vers = json.loads(m.read_text())['packages']
        if c._key(vers) == m.parent.name: c._require = lambda: vers; return

def run_chapter(path:Path, params:dict) -> dict:
    import torch
    nb = json.loads(path.read_text())
    ns = {'__name__': 'chapter'}
    cells, t0, res = [], time.perf_counter(), dict(status='ok')
    if torch.cuda.is_available(): torch.cuda.reset_peak_memory_stats()
    os.chdir(path.parent)
    for i, c in enumerate(nb['cells']):
        if c['cell_type'] != 'code': continue
        src = ''.join(c['source'])
        if src.lstrip().startswith('#| slow'): continue
        tc = time.perf_counter()
        try:
            name = f'{path.name}[{i}]'
            linecache.cache[name] = (len(src), None, src.splitlines(True), name)  # nnsight reads a trace's source back
            exec(compile(src, name, 'exec'), ns)
            if 'parameters' in c.get('metadata', {}).get('tags', []):
                for k, v in params.items(): ns[k] = v
        except BaseException as e:
            res = dict(status='failed', cell=i, error=f'{type(e).__name__}: {str(e).strip().splitlines()[-1] if str(e).strip() else ""}'[:500],
                       trace=traceback.format_exc()[-1500:])
            break
        finally: cells.append(round(time.perf_counter() - tc, 2))
    res.update(wall_s=round(time.perf_counter() - t0, 1), slowest_cells_s=sorted(cells, reverse=True)[:3])
    if torch.cuda.is_available(): res['peak_gpu_gb'] = round(torch.cuda.max_memory_allocated() / 2**30, 2)
    res['peak_rss_gb'] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20, 2)
    return res

def main():
    os.environ.setdefault('MPLBACKEND', 'Agg')
    ap = argparse.ArgumentParser()
    ap.add_argument('out'); ap.add_argument('--model', default='qwen3-4b-shape')
    ap.add_argument('--device', default='cuda'); ap.add_argument('--dtype', default='bf16')
    ap.add_argument('--chapters', nargs='+', default=['01', '04', '06', '07'])
    ap.add_argument('--set', nargs='*', default=[], metavar='CHAPTER:KEY=VALUE',
                    help="override a short setting, e.g. 04:n_tokens=2048 (the value is read as JSON, else kept as text)")
    a = ap.parse_args()
    for o in a.set:
        ch, kv = o.split(':', 1); k, v = kv.split('=', 1)
        try: v = json.loads(v)
        except ValueError: pass
        SHORT.setdefault(next(n for n in SHORT if n.startswith(ch)), {})[k] = v
    import torch
    _stub_ipython()
    _carried_corpus()
    run = Path(a.out).absolute().parent/'run'; run.mkdir(parents=True, exist_ok=True)
    os.environ.update(MI_REPRO_RUN_DIR=str(run), MI_REPRO_FIG_DIR=str(run/'figures'))
    res = dict(model=a.model, device=a.device, dtype=a.dtype, torch=torch.__version__,
               gpu=torch.cuda.get_device_name() if torch.cuda.is_available() else None, chapters={})
    t0 = time.perf_counter()
    for ch in a.chapters:
        path = next((ROOT/'nbs').glob(f'{ch}_*.ipynb'))
        params = dict(model=a.model, device=a.device, dtype=a.dtype, **SHORT.get(path.stem, {}))
        print(f"== {path.stem} {params}", flush=True)
        r = res['chapters'][path.stem] = dict(params=params, **run_chapter(path, params))
        print(json.dumps({k: v for k, v in r.items() if k != 'trace'}), flush=True)
        res['total_s'] = round(time.perf_counter() - t0, 1)
        for f in ('metrics.json', 'results.json'):
            if (run/f).exists(): res['recorded'] = json.loads((run/f).read_text())
        Path(a.out).write_text(json.dumps(res, indent=1))
    print(f"total {res['total_s']} s", flush=True)

if __name__ == '__main__': main()

"""TopK transcoder training speed and quality: this project's `mi_repro.dictionaries` against EleutherAI sparsify,
in one run on the same cached activations; prints one JSON object on stdout (progress goes to stderr).

    .venv/bin/python benchmarks/train.py [--layer 15] [--threads 2] [--repeats 2] [--sides ours sparsify] [--store PATH]

- Data: MLP input -> MLP output pairs of one layer from an activation store (chapter 03: `mi-repro run 03 --model
  smollm2-135m`). The last `--holdout` fraction of the store's tokens (a whole tail, never trained on) is held out;
  the rest is trained on for `--passes` passes, each in its own seeded random order, cut into `--batch-size` batches.
  Both trainers get exactly the same batches in the same order (written once to a temp safetensors file).
- Ours: `Transcoder(d_in, n_features, d_out, act='topk', k)` and `Trainer(tc, lr=None, steps, seed)` from
  `--ours` (default `mi_repro.dictionaries`; a .py file path works too), run in a subprocess of this venv.
- sparsify: eai-sparsify's training step (`_sparsify_worker.py`: SparseCoder with transcode=True, FVU loss, signum
  in ScheduleFree at lr 5e-3 / sqrt(num_latents / 2**14), `opt.eval()` before evaluating), run in its own venv
  `benchmarks/.venv-sparsify`, created on first use (torch pinned to this venv's CPU build first, then
  eai-sparsify==SPARSIFY_VERSION). sparsify's own Trainer needs a model and its CLI assumes CUDA, so its step is
  reproduced on the cached activations instead.
- Precision: both in fp32 (sides `ours`, `sparsify`), and both with bf16 matmuls (`ours-bf16`: the Trainer's
  `bf16=True`, autocast; `sparsify-bf16`: `torch.set_float32_matmul_precision('medium')`, which on this CPU runs
  fp32 matmuls in bf16). The goal is judged like for like.
- Speed: tokens / seconds spent in training steps (batch gathering and evaluation excluded), threads pinned with
  `torch.set_num_threads` in both processes. The two never run at once: ours, then sparsify, repeated
  `--repeats` times; tok/s and FVU are the medians over repeats.
- Quality: held-out FVU = sum ||y - y_hat||^2 / sum ||y - mean(y)||^2 over the held-out tokens, computed by the
  same function for both.
"""
import argparse, json, os, platform, statistics, subprocess, sys, tempfile, time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import torch
from _sparsify_worker import save_data, load_data, batches, n_steps, heldout_fvu
from _venv import log, pin_threads, venv_python, ensure_venv

SPARSIFY_VERSION = '1.3.3'
VENV = HERE/'.venv-sparsify'
DEFAULT_STORE = ('smollm2-135m', 'train-ctx128-1600x-bf16-mlp_in+mlp_out')
SIDES = ('ours', 'sparsify', 'ours-bf16', 'sparsify-bf16')  # -bf16: ours under bf16 autocast, sparsify at matmul precision 'medium'

# ---------------------------------------------------------------- the sparsify venv
def ensure_sparsify_venv(venv=VENV, version=SPARSIFY_VERSION) -> dict:
    "Create `venv` with this venv's torch build and eai-sparsify==version unless it is already there; return its versions."
    ok = lambda have: bool(have) and have['torch'] == torch.__version__ and have['eai-sparsify'] == version
    return ensure_venv(venv, torch.__version__, f'eai-sparsify=={version}', ('eai-sparsify', 'torch', 'schedulefree', 'safetensors'), ok)

# ---------------------------------------------------------------- our side (runs in a subprocess of this venv)
def _import_ours(spec):
    import importlib, importlib.util
    if spec.endswith('.py'):
        s = importlib.util.spec_from_file_location('_ours_dictionaries', spec)
        m = importlib.util.module_from_spec(s); s.loader.exec_module(m)
        return m
    if importlib.util.find_spec(spec) is None: sys.exit(f"error: no module {spec!r} (pass --ours MODULE or --ours FILE.py)")
    return importlib.import_module(spec)

def run_ours(d, batch_size, k, n_features, seed=0, module='mi_repro.dictionaries', bf16=False, log_every=10):
    m = _import_ours(module)
    d_in, d_out = d['x_train'].shape[1], d['y_train'].shape[1]
    total = n_steps(d, batch_size)
    torch.manual_seed(seed)
    tc = m.Transcoder(d_in=d_in, n_features=n_features, d_out=d_out, act='topk', k=k)
    tr = m.Trainer(tc, lr=None, steps=total, seed=seed, **(dict(bf16=True) if bf16 else {}))
    tc.train()
    t_steps, loss = 0.0, float('nan')
    for step, (x, y) in enumerate(batches(d, batch_size)):
        t0 = time.perf_counter()
        out = tr.step(x, y)
        loss = float(out['loss'])
        t_steps += time.perf_counter() - t0
        if log_every and (step % log_every == 0 or step == total - 1):
            log(f"  ours{'-bf16' if bf16 else ''}     step {step+1}/{total}  loss {loss:.4f}  {(step+1)*batch_size/t_steps:,.0f} tok/s")
    if callable(getattr(tr, 'eval', None)): tr.eval()  # e.g. a schedule-free optimizer's averaged weights
    tc.eval()
    fvu = heldout_fvu(tc, d['x_test'], d['y_test'])
    name = getattr(m, '__name__', module) if not module.endswith('.py') else module
    src = getattr(m, '__file__', None)  # the library is a moving target: say which version of it ran
    import hashlib
    sha = hashlib.sha256(Path(src).read_bytes()).hexdigest()[:12] if src and Path(src).exists() else None
    return dict(impl=name + (' (bf16 autocast)' if bf16 else ''), impl_file=src, impl_sha256=sha, steps=total, tokens=total * batch_size, step_seconds=t_steps, tok_s=total * batch_size / t_steps,
                heldout_fvu=fvu, final_train_loss=loss, torch=torch.__version__, threads=torch.get_num_threads())

def _worker_main(argv):
    ap = argparse.ArgumentParser()
    ap.add_argument('data'); ap.add_argument('out')
    for a in ('--threads', '--batch-size', '--k', '--num-latents', '--seed'): ap.add_argument(a, type=int, required=True)
    ap.add_argument('--module', required=True)
    ap.add_argument('--bf16', action='store_true')
    a = ap.parse_args(argv)
    pin_threads(a.threads)
    r = run_ours(load_data(a.data), a.batch_size, a.k, a.num_latents, seed=a.seed, module=a.module, bf16=a.bf16)
    with open(a.out, 'w') as f: json.dump(r, f)

# ---------------------------------------------------------------- harness
def _load_pairs(store_path, layer, max_tokens):
    from mi_repro.activations import Store
    from mi_repro.core import UserError
    if not (Path(store_path)/'manifest.json').exists():
        sys.exit(f"error: no activation store at {store_path}.\nCapture one first: `mi-repro run 03 --model smollm2-135m` "
                 "(or pass --store PATH to another store with mlp_in and mlp_out)")
    try:
        s = Store(store_path)
        if not s.complete: log(f"warning: {store_path} is incomplete ({len(s.man['shards'])}/{s.man['n_shards']} shards); using what is there")
        x, y = s.load(layer, 'mlp_in', max_tokens=max_tokens), s.load(layer, 'mlp_out', max_tokens=max_tokens)
    except UserError as e: sys.exit(f"error: {e}")
    return s, x, y

def _busy_jiffies():
    "CPU time (all cores, in clock ticks) spent not idle since boot, from /proc/stat; None where unavailable."
    try:
        with open('/proc/stat') as f: v = [int(t) for t in f.readline().split()[1:]]
        return sum(v[:8]) - v[3] - v[4]  # minus idle and iowait; guest time is already in user
    except (OSError, ValueError, IndexError): return None

def _children_cpu():
    import resource
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime

def _run(cmd, env, out):
    "Run one worker; return its JSON plus `other_cpu_cores`: the cores other processes kept busy meanwhile (0 = idle machine)."
    j0, c0, t0 = _busy_jiffies(), _children_cpu(), time.perf_counter()
    r = subprocess.run([str(c) for c in cmd], env=env, stdout=sys.stderr, stderr=sys.stderr)
    j1, c1, wall = _busy_jiffies(), _children_cpu(), time.perf_counter() - t0
    if r.returncode or not Path(out).exists(): sys.exit(f"error: worker failed (exit {r.returncode}): {' '.join(map(str, cmd))}")
    res = json.loads(Path(out).read_text())
    if j0 is not None and j1 is not None:
        res['other_cpu_cores'] = round(max(0.0, ((j1 - j0) / os.sysconf('SC_CLK_TCK') - (c1 - c0)) / wall), 2)
    return res

def _cpu_busy(seconds=1.0):
    "Cores kept busy by anything over the next `seconds`, or None where unavailable."
    j0 = _busy_jiffies(); time.sleep(seconds); j1 = _busy_jiffies()
    return None if j0 is None or j1 is None else round((j1 - j0) / os.sysconf('SC_CLK_TCK') / seconds, 2)

def _wait_idle(limit, quiet=0.15, stretch=30.0, window=3.0):
    "Sleep until fewer than `quiet` cores have been busy for `stretch` seconds in a row, or `limit` seconds have passed."
    t0, calm, said = time.perf_counter(), 0.0, 0.0
    while calm < stretch:
        b = _cpu_busy(window)
        if b is None: return
        calm = calm + window if b < quiet else 0.0
        waited = time.perf_counter() - t0
        if waited > limit: log(f"warning: the CPU did not stay quiet within {limit:.0f} s ({b:.2f} cores busy); running anyway"); return
        if calm == 0 and waited - said >= 60: log(f"waiting for the CPU to go quiet ({b:.2f} cores busy)"); said = waited

def _cpu_name():
    try:
        for line in open('/proc/cpuinfo'):
            if line.startswith('model name'): return line.split(':', 1)[1].strip()
    except OSError: pass
    return platform.processor() or platform.machine()

def main():
    import signal  # on SIGTERM unwind normally: subprocess.run kills the running worker and the temp folder is removed
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    if len(sys.argv) > 1 and sys.argv[1] == '--_worker-ours': return _worker_main(sys.argv[2:])
    ap = argparse.ArgumentParser(description=__doc__.split('\n\n')[0], formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    ap.add_argument('--store', default=None, help='activation store folder (default: the SmolLM2 store of chapter 03)')
    ap.add_argument('--layer', type=int, default=15)
    ap.add_argument('--n-features', type=int, default=4608, help='latents (transcoder width)')
    ap.add_argument('--k', type=int, default=32)
    ap.add_argument('--batch-size', type=int, default=4096, help='tokens per step')
    ap.add_argument('--passes', type=int, default=3, help='passes over the training tokens')
    ap.add_argument('--holdout', type=float, default=0.1, help='fraction of tokens held out (the tail of the store)')
    ap.add_argument('--max-tokens', type=int, default=None, help='use only the first N tokens of the store')
    ap.add_argument('--seed', type=int, default=0, help='shuffling and initialisation seed (both sides)')
    ap.add_argument('--threads', type=int, default=2, help='torch threads in both trainers')
    ap.add_argument('--repeats', type=int, default=1, help='interleaved runs of each (ours, sparsify, ours, ...); medians reported')
    ap.add_argument('--ours', default='mi_repro.dictionaries', help='module (or .py file) providing Transcoder and Trainer')
    ap.add_argument('--wait-idle', type=float, default=0, help='before each run, wait up to this many seconds for a 30 s stretch with the CPU idle (shared machines)')
    ap.add_argument('--sides', nargs='+', choices=SIDES, default=list(SIDES), help='which trainers to run')
    a = ap.parse_args()
    if a.threads < 1 or a.repeats < 1 or a.passes < 1 or not 0 < a.holdout < 1: ap.error('threads, repeats, passes must be >= 1 and 0 < holdout < 1')
    if a.store is None:
        from mi_repro.activations import default_store
        a.store = str(default_store(*DEFAULT_STORE))

    ncpu = os.cpu_count()
    if a.threads > (ncpu or a.threads): log(f"warning: --threads {a.threads} > {ncpu} cores")
    have = ensure_sparsify_venv() if any(x.startswith('sparsify') for x in a.sides) else None

    t0 = time.perf_counter()
    store, x, y = _load_pairs(a.store, a.layer, a.max_tokens)
    n = len(x); n_test = max(1, round(a.holdout * n)); n_train = n - n_test
    if n_train < a.batch_size: sys.exit(f"error: {n_train} training tokens < one batch of {a.batch_size}")
    g = torch.Generator().manual_seed(a.seed)
    order = torch.stack([torch.randperm(n_train, generator=g) for _ in range(a.passes)])
    steps = a.passes * (n_train // a.batch_size)
    log(f"layer {a.layer}: {n:,} tokens ({n_train:,} train, {n_test:,} held out), {steps} steps of {a.batch_size}; loaded in {time.perf_counter() - t0:.0f} s")
    # the store's values are bf16 on disk: keep them in bf16 in the temp file when that is exact (halves its size)
    dt = torch.bfloat16 if all(torch.equal(t, t.bfloat16().float()) for t in (x, y)) else torch.float32

    env = dict(os.environ, OMP_NUM_THREADS=str(a.threads), MKL_NUM_THREADS=str(a.threads), SPARSIFY_DISABLE_TRITON='1',
               PYTHONUNBUFFERED='1')
    common = ['--threads', a.threads, '--batch-size', a.batch_size, '--k', a.k, '--num-latents', a.n_features, '--seed', a.seed]
    runs = {side: [] for side in a.sides}
    busy_before = _cpu_busy()
    if busy_before is not None and busy_before > 0.2:
        log(f"warning: {busy_before:.2f} cores are busy before starting; timings will be low and noisy (check `ps`)")
    with tempfile.TemporaryDirectory(prefix='mi_repro_bench_') as tmp:
        data = Path(tmp)/'data.safetensors'
        save_data(data, x[:n_train], y[:n_train], x[n_train:], y[n_train:], order, dtype=dt)
        del x, y
        for r in range(a.repeats):
            for side in a.sides:
                out = Path(tmp)/f'{side}_{r}.json'
                if a.wait_idle: _wait_idle(a.wait_idle)
                log(f"run {r+1}/{a.repeats}: {side}")
                bf16 = side.endswith('-bf16')
                if side.startswith('ours'):
                    cmd = [sys.executable, __file__, '--_worker-ours', data, out, *common, '--module', a.ours, *(['--bf16'] if bf16 else [])]
                else:
                    cmd = [venv_python(VENV), HERE/'_sparsify_worker.py', data, out, *common, '--matmul-precision', 'medium' if bf16 else 'high']
                res = _run(cmd, env, out)
                log(f"  -> {res['tok_s']:,.0f} tok/s, held-out FVU {res['heldout_fvu']:.4f}" +
                    (f"  (warning: other processes kept {res['other_cpu_cores']} cores busy meanwhile)" if res.get('other_cpu_cores', 0) > 0.2 else ''))
                runs[side].append(res)

    def summary(rs):
        if not rs: return None
        return dict(impl=rs[0]['impl'], tok_s=round(statistics.median(r['tok_s'] for r in rs), 1),
                    heldout_fvu=round(statistics.median(r['heldout_fvu'] for r in rs), 5),
                    tok_s_runs=[round(r['tok_s'], 1) for r in rs], heldout_fvu_runs=[round(r['heldout_fvu'], 5) for r in rs],
                    other_cpu_cores_runs=[r.get('other_cpu_cores') for r in rs],
                    **{k: v for k, v in rs[0].items() if k not in ('impl', 'tok_s', 'heldout_fvu', 'step_seconds', 'steps', 'tokens', 'torch', 'threads', 'other_cpu_cores')})
    res = dict(benchmark='transcoder training: mi_repro vs EleutherAI sparsify',
               settings=dict(store=str(a.store), model=store.man['model'], layer=a.layer, sites=['mlp_in', 'mlp_out'],
                             d_in=store.man['d_model'], d_out=store.man['d_model'], n_features=a.n_features, k=a.k,
                             batch_size=a.batch_size, passes=a.passes, train_tokens=n_train, heldout_tokens=n_test,
                             steps=steps, tokens_trained=steps * a.batch_size, seed=a.seed, threads=a.threads,
                             repeats=a.repeats, data_dtype=str(dt).replace('torch.', ''), cpu_count=ncpu, cpu=_cpu_name(),
                             torch=torch.__version__, sparsify_venv=have, other_cpu_cores_before=busy_before),
               **{side: summary(rs) for side, rs in runs.items()})
    res['goal'] = {}
    for prec in ('', '-bf16'):  # like for like: fp32 against fp32, bf16 matmuls against bf16 matmuls
        o, sp = res.get('ours' + prec), res.get('sparsify' + prec)
        if not (o and sp): continue
        ratio = o['tok_s'] / sp['tok_s']
        res['goal']['fp32' if not prec else 'bf16'] = dict(
            ratio_tok_s=round(ratio, 3), fvu_ours_minus_sparsify=round(o['heldout_fvu'] - sp['heldout_fvu'], 5),
            speed_met=ratio >= 1.5, fvu_met=o['heldout_fvu'] <= sp['heldout_fvu'], met=ratio >= 1.5 and o['heldout_fvu'] <= sp['heldout_fvu'])
    if res['goal']: res['goal']['target'] = 'ours >= 1.5x sparsify tok/s at equal or lower held-out FVU'
    print(json.dumps(res, indent=1))

if __name__ == '__main__': main()

"Data-parallel training: the dictionary trainer under `torchrun` with 2 CPU processes (gloo) matches 1 process on the same data."
import os, subprocess, sys
from pathlib import Path
import pytest, torch

@pytest.fixture(scope='module')
def store(tmp_path_factory):
    from mi_repro.models import load_model
    from mi_repro.corpus import contexts
    from mi_repro.activations import capture
    lm, tok, spec = load_model('tiny-qwen3', 'cpu')
    C = contexts(tok, 'train', ctx=32, n_tokens=32 * 48, progress=False)
    return capture(lm, spec, C, tmp_path_factory.mktemp('s')/'store', layers=[0, 1], batch_size=8, progress=False).path

def launch(module, args, nproc):
    "Run `python -m module args` in 1 process, or under torchrun in `nproc` (1 thread each); fail with its stderr."
    env = {**os.environ, 'OMP_NUM_THREADS': '1'}
    dist = ['-m', 'torch.distributed.run', '--standalone', f'--nproc_per_node={nproc}'] if nproc > 1 else []
    r = subprocess.run([sys.executable, *dist, '-m', module, *map(str, args)], capture_output=True, text=True, env=env,
                       timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]

def train(store, out, nproc):
    launch('mi_repro.dictionaries', [store, out, '--layers', '0', '1', '--act', 'topk', '--k', '4',
                                     '--n-features', '128', '--epochs', '3', '--batch-size', '256', '--lr', '3e-3',
                                     '--fp32'], nproc)

def test_ddp_matches_single_process(store, tmp_path):
    from mi_repro.dictionaries import load_dict
    train(store, tmp_path/'one', 1)
    train(store, tmp_path/'two', 2)
    for l in (0, 1):
        a, b = load_dict(tmp_path/'one'/f'layer_{l}.safetensors'), load_dict(tmp_path/'two'/f'layer_{l}.safetensors')
        for (n, p), (_, q) in zip(a.state_dict().items(), b.state_dict().items()):
            assert p.shape == q.shape, n
            assert torch.allclose(p, q, rtol=1e-3, atol=1e-4), (l, n, (p - q).abs().max().item())
        # and training did something: the weights moved away from their initialization
        assert not torch.allclose(a.W_dec, type(a)(**a.cfg).W_dec, atol=1e-3)

def test_killed_run_resumes_to_same_weights(store, tmp_path):
    "A training run killed (SIGKILL) after a checkpoint and started again ends with the weights of an uninterrupted run."
    import signal, time
    from mi_repro.dictionaries import load_dict
    args = [sys.executable, '-m', 'mi_repro.dictionaries', str(store), None, '--layers', '0', '1', '--act', 'batchtopk', '--k', '4',
            '--n-features', '128', '--epochs', '40', '--batch-size', '256', '--lr', '3e-3', '--fp32', '--ckpt-every', '5']
    env = {**os.environ, 'OMP_NUM_THREADS': '1'}
    run = lambda out: subprocess.run([str(a) if a else str(out) for a in args], capture_output=True, text=True, env=env, timeout=600)
    assert run(tmp_path/'full').returncode == 0
    out = tmp_path/'killed'
    p = subprocess.Popen([str(a) if a else str(out) for a in args], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    t0 = time.time()
    while not (out/'layer_1.ckpt').exists() and p.poll() is None and time.time() - t0 < 300: time.sleep(0.05)
    p.send_signal(signal.SIGKILL); p.wait()
    assert (out/'layer_1.ckpt').exists() and not (out/'layer_0.safetensors').exists(), 'the run was not killed mid-training'
    r = run(out)
    assert r.returncode == 0, r.stderr[-3000:]
    for l in (0, 1):
        a, b = load_dict(tmp_path/'full'/f'layer_{l}.safetensors'), load_dict(out/f'layer_{l}.safetensors')
        for (n, x), (_, y) in zip(a.state_dict().items(), b.state_dict().items()): assert torch.equal(x, y), (l, n)

def train_clt(store, out, nproc):
    launch('mi_repro.clt', [store, out, '--act', 'topk', '--k', '4', '--n-features', '64', '--span', '2', '--epochs', '3',
                            '--batch-size', '256', '--lr', '3e-3', '--ckpt-every', '5'], nproc)

def test_clt_ddp_matches_single_process(store, tmp_path):
    "A cross-layer transcoder (TopK, so each process picks each token's features as one process would) trained by 2."
    from mi_repro.clt import load_clt, CLT
    train_clt(store, tmp_path/'one', 1)
    train_clt(store, tmp_path/'two', 2)
    a, b = load_clt(tmp_path/'one'/'clt.safetensors'), load_clt(tmp_path/'two'/'clt.safetensors')
    assert (a.meta['world'], b.meta['world']) == (1, 2) and a.meta['steps'] == b.meta['steps'] > 10
    for (n, p), (_, q) in zip(a.state_dict().items(), b.state_dict().items()):
        assert p.shape == q.shape, n
        assert torch.allclose(p, q, rtol=1e-3, atol=1e-4), (n, (p - q).abs().max().item())
    assert not torch.allclose(a.W_dec[0], CLT(**a.cfg).W_dec[0], atol=1e-3)  # training moved the weights
    assert not (tmp_path/'two'/'ckpt.safetensors').exists()

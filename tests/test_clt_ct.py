"""circuit-tracer's own CLT code reads what `mi_repro.clt.export_clt` writes, and `import_clt` reads what it writes:
export -> circuit-tracer 0.5.0's `load_clt` (fp32, CPU, decoders loaded) -> its `encode`, `forward` and
`to_safetensors` -> `import_clt`. Checked on chapter 04's tiny-qwen3 CLT (BatchTopK, exported as JumpReLU thresholds)
on real MLP inputs of its training store, and on small random JumpReLU and ReLU CLTs.

circuit-tracer runs in a subprocess of this venv's Python (torch, safetensors) with only its package on the path,
taken from the frontend venv of tests/test_ctfront.py (`ctfront.ct_python(create=True)`: `pip install --no-deps
circuit-tracer==0.5.0` once, so it needs PyPI once, like `make install`; it fails rather than skips without it).
Its CLT module imports no TransformerLens, so no model is loaded on its side."""
import subprocess, sys
import pytest
import torch
from safetensors.torch import load_file, save_file

CT = '''
import sys, torch
from safetensors.torch import load_file, save_file
from circuit_tracer.transcoder.cross_layer_transcoder import load_clt
from circuit_tracer.transcoder.activation_functions import JumpReLU
clt = load_clt(sys.argv[1], device=torch.device('cpu'), dtype=torch.float32, lazy_decoder=False)
x = load_file(sys.argv[2])['x']
with torch.no_grad(): z, y = clt.encode(x), clt(x)
save_file({'z': z.contiguous(), 'y': y.contiguous()}, sys.argv[3])
clt.to_safetensors(sys.argv[4])
a = clt.activation_function
print(getattr(a, '__name__', type(a).__name__), clt.n_layers, clt.d_transcoder)
'''

@pytest.fixture(scope='module')
def ct_path(tmp_path_factory):
    "A folder whose only package is circuit-tracer's (from the frontend venv)."
    from mi_repro.ctfront import ct_python
    py = ct_python(create=True)
    pkg = subprocess.run([str(py), '-c', 'import circuit_tracer, os; print(os.path.dirname(circuit_tracer.__file__))'],
                         capture_output=True, text=True, check=True).stdout.strip()
    d = tmp_path_factory.mktemp('ctpath')
    (d/'circuit_tracer').symlink_to(pkg)
    return d

def round_trip(clt, xs, tmp, ct_path):
    "circuit-tracer's features and reconstruction of raw inputs `xs` [L, n, d] from our export; its writing read back."
    from mi_repro.clt import export_clt, import_clt
    export_clt(clt, tmp/'ours', model='tiny-qwen3')
    save_file({'x': xs.contiguous()}, str(tmp/'x.safetensors'))
    r = subprocess.run([sys.executable, '-c', CT, str(tmp/'ours'), str(tmp/'x.safetensors'), str(tmp/'out.safetensors'),
                        str(tmp/'theirs')], capture_output=True, text=True, env={'PYTHONPATH': str(ct_path)})
    assert r.returncode == 0, r.stderr[-2000:]
    out = load_file(str(tmp/'out.safetensors'))
    return out['z'], out['y'], import_clt(tmp/'theirs'), r.stdout.split()

def ours(clt, xs):
    "Our features [L, n, F] and reconstruction [L, n, d] of raw inputs."
    with torch.no_grad():
        zs = [clt.encode(l, x) for l, x in enumerate(xs)]
        return torch.stack(zs), clt.decode(zs).float()

def check(clt, xs, tmp, ct_path, kind):
    z_ct, y_ct, back, said = round_trip(clt, xs, tmp, ct_path)
    z, y = ours(clt, xs)
    assert said == [kind, str(clt.n_layers), str(clt.n_features)]
    assert torch.equal(z_ct > 0, z > 0)  # the same features fire on every token and layer
    assert (z_ct - z).abs().max() <= 1e-4 * z.abs().max()
    assert (y_ct - y).abs().max() <= 1e-4 * y.abs().max()
    z_b, y_b = ours(back, xs)  # circuit-tracer's writing read back: the same map again
    assert torch.equal(z_b > 0, z > 0)
    assert (y_b - y).abs().max() <= 1e-4 * y.abs().max()
    assert back.cfg['span'] == clt.cfg['span']
    return (z > 0).float().sum(-1).mean().item()

def test_chapter_clt(tmp_path, ct_path):
    from mi_repro.models import load_model
    from mi_repro.corpus import contexts
    from mi_repro.activations import capture, default_store
    from mi_repro.clt import chapter_clt, _clt_batches
    r = load_model('tiny-qwen3', 'cpu', 'fp32')
    clt = chapter_clt(r.model, r.tok, r.spec, 'tiny-qwen3')  # chapter 04's (cached by nbdev-test, else trained)
    C = contexts(r.tok, 'train', ctx=128, n_tokens=8192, progress=False)
    name = f"train-ctx128-{C.shape[0]}x-bf16-mlp_in+mlp_out"
    store = capture(r.model, r.spec, C, default_store('tiny-qwen3', name, C), batch_size=8, progress=False)
    xs, _ = next(_clt_batches(store, store.layers, 'mlp_in', 'mlp_out', 256, 7, 1))
    l0 = check(clt, xs, tmp_path, ct_path, 'JumpReLU')
    assert 0.5 * clt.cfg['k'] < l0 < 2 * clt.cfg['k']  # BatchTopK's threshold as JumpReLU's: about k a token and layer

@pytest.mark.parametrize('act,kind', [('jumprelu', 'JumpReLU'), ('relu', 'relu')])
def test_random_clt(tmp_path, ct_path, act, kind):
    from mi_repro.clt import CLT
    torch.manual_seed(0)
    clt = CLT(5, 16, 32, act=act, span=3, seed=1).eval()
    with torch.no_grad():
        clt.x_scale.uniform_(0.5, 2)
        clt.y_scale.uniform_(0.5, 2)
        clt.x_mean.normal_()
        clt.b_dec.normal_()
    assert check(clt, torch.randn(5, 64, 16), tmp_path, ct_path, kind) > 1

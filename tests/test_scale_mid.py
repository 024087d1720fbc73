"""Issue 23 at mid size on CPU: qwen3-mid (Qwen3-4B's 36 layers at d 512, random weights) with a random transcoder set in
circuit-tracer's published layout, read lazily (`LazyTranscoder`): no encoder or decoder sits in memory, and the graph
equals the one built from the same set read eagerly. benchmarks/scale.py measures the time and memory of both."""
import pytest, torch
from mi_repro.core import UserError
from mi_repro.models import load_model, prompt_ids
from mi_repro.dictionaries import import_circuit_tracer, LazyTranscoder
from mi_repro.attribution import Replacement, attribute
from mi_repro.scale import random_set

F = 2048  # features per layer (4x d_model); 30 active per token and layer on average

@pytest.fixture(scope='module')
def mid(tmp_path_factory):
    lm = load_model('qwen3-mid', 'cpu')
    d = random_set(tmp_path_factory.mktemp('mid-set'), lm.spec.n_layers, lm.spec.d_model, F, density=30 / F, model='qwen3-mid')
    return lm, d

def test_lazy_set_holds_no_weights(mid):
    lm, d = mid
    lazy = import_circuit_tracer(d, lazy=True)
    assert sorted(lazy) == list(range(36)) and all(isinstance(t, LazyTranscoder) for t in lazy.values())
    held = sum(b.numel() for t in lazy.values() for b in t.buffers())  # biases, thresholds, scales: O(F + d) a layer
    assert held < 36 * 4 * (F + lm.spec.d_model), held  # an encoder and a decoder would be 2 F d = 2.1M a layer

def test_lazy_graph_equals_eager(mid):
    lm, d = mid
    ids = prompt_ids(lm.tok, "The capital of France is")
    gs = [attribute(Replacement(lm.hf, lm.spec, import_circuit_tracer(d, lazy=lz), ids), lm.tok, max_feature_nodes=256,
                    progress=False) for lz in (True, False)]
    assert gs[0].info['n_active'] > 256 and gs[0].n_sel == 256
    assert torch.equal(gs[0].selected, gs[1].selected)
    torch.testing.assert_close(gs[0].adj, gs[1].adj, rtol=1e-4, atol=1e-5 * gs[1].adj.abs().max().item())

def test_set_of_another_shape_fails_clearly(mid, tmp_path):
    lm, _ = mid
    ids = prompt_ids(lm.tok, "The capital of France is")
    for (n, w), msg in {(35, 512): 'none was given for layer', (36, 256): 'has d_model 512'}.items():
        d = random_set(tmp_path/f'{n}-{w}', n, w, 64, density=0.1)
        with pytest.raises(UserError, match=msg): Replacement(lm.hf, lm.spec, import_circuit_tracer(d, lazy=True), ids)

"Attribution graphs over a prompt set under `torchrun` with 2 CPU processes (gloo) match 1 process: same files, same graphs."
import json, os, subprocess, sys
import pytest

PROMPTS = ["The capital of France is", "One, two, three,", "The opposite of hot is"]

@pytest.fixture(scope='module')
def tset(tmp_path_factory):
    from mi_repro.scale import random_set
    return random_set(tmp_path_factory.mktemp('set'), 4, 64, 256, density=0.02)

def run(tset, out, nproc):
    args = ['tiny-qwen3', str(tset), str(out), *PROMPTS, '--max-feature-nodes', '48', '--batch-size', '16', '--device', 'cpu']
    env = {**os.environ, 'OMP_NUM_THREADS': '1'}
    if nproc == 1: cmd = [sys.executable, '-m', 'mi_repro.scale', *args]
    else: cmd = [sys.executable, '-m', 'torch.distributed.run', '--standalone', f'--nproc_per_node={nproc}', '-m', 'mi_repro.scale', *args]
    r = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    return json.loads((out/'graphs.json').read_text())

def _graph(path):
    js = json.loads(path.read_text())
    for k in ('s', 'rows_s'): js['metadata']['info'].pop(k)  # wall times
    return js

def test_two_ranks_match_one(tset, tmp_path):
    one, two = run(tset, tmp_path/'one', 1), run(tset, tmp_path/'two', 2)
    assert (one['world'], two['world']) == (1, 2)
    assert [r['i'] for r in two['graphs']] == [0, 1, 2]
    assert sorted({r['rank'] for r in two['graphs']}) == [0, 1]  # both ranks did work
    strip = lambda rows: [{k: v for k, v in r.items() if k not in ('rank', 's')} for r in rows]
    assert strip(one['graphs']) == strip(two['graphs'])
    for r in one['graphs']:
        a, b = _graph(tmp_path/'one'/r['file']), _graph(tmp_path/'two'/r['file'])
        assert a['nodes'] == b['nodes'] and a['links'] == b['links'], r['file']
        assert a['metadata'] == b['metadata']
    assert any(r['n_selected'] > 0 for r in one['graphs'])

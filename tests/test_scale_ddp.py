"Graphs, activation capture and interventions over a set under `torchrun` with 2 CPU processes (gloo) match 1 process: same files, same rows."
import json, os, subprocess, sys
import pytest

PROMPTS = ["The capital of France is", "One, two, three,", "The opposite of hot is"]
ANSWERS = [(" Paris", " London"), (" four", " five"), (" cold", " warm")]

@pytest.fixture(scope='module')
def tset(tmp_path_factory):
    from mi_repro.scale import random_set
    return random_set(tmp_path_factory.mktemp('set'), 4, 64, 256, density=0.02)

def run(args, nproc):
    "`python -m mi_repro.scale ARGS` in 1 process, or under torchrun in `nproc`."
    env = {**os.environ, 'OMP_NUM_THREADS': '1'}
    if nproc == 1: cmd = [sys.executable, '-m', 'mi_repro.scale', *args]
    else: cmd = [sys.executable, '-m', 'torch.distributed.run', '--standalone', f'--nproc_per_node={nproc}', '-m', 'mi_repro.scale', *args]
    r = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]

def both(tmp_path, make_args, name):
    "Run with 1 and with 2 processes into tmp_path/one and tmp_path/two; the two gathered JSON files (or None)."
    res = []
    for nproc, sub in ((1, 'one'), (2, 'two')):
        run(make_args(tmp_path/sub), nproc)
        res.append(json.loads((tmp_path/sub/name).read_text()) if name else None)
    return res

strip = lambda rows: [{k: v for k, v in r.items() if k not in ('rank', 's')} for r in rows]  # who ran it, wall time

def _graph(path):
    js = json.loads(path.read_text())
    for k in ('s', 'rows_s'): js['metadata']['info'].pop(k)  # wall times
    return js

def test_graphs_two_ranks_match_one(tset, tmp_path):
    one, two = both(tmp_path, lambda out: ['graphs', 'tiny-qwen3', str(tset), str(out), *PROMPTS, '--max-feature-nodes', '48',
                                           '--batch-size', '16', '--device', 'cpu'], 'graphs.json')
    assert (one['world'], two['world']) == (1, 2)
    assert [r['i'] for r in two['graphs']] == [0, 1, 2]
    assert sorted({r['rank'] for r in two['graphs']}) == [0, 1]  # both ranks did work
    assert strip(one['graphs']) == strip(two['graphs'])
    for r in one['graphs']:
        a, b = _graph(tmp_path/'one'/r['file']), _graph(tmp_path/'two'/r['file'])
        assert a['nodes'] == b['nodes'] and a['links'] == b['links'], r['file']
        assert a['metadata'] == b['metadata']
    assert any(r['n_selected'] > 0 for r in one['graphs'])

def test_capture_two_ranks_match_one(tmp_path):
    # 9 corpus windows of 16 tokens in shards of 2: 5 shards, the last with one window; rank 0 takes 0, 2, 4, rank 1 takes 1, 3
    both(tmp_path, lambda out: ['capture', 'tiny-qwen3', str(out), '--ctx', '16', '--n-tokens', str(9 * 16), '--batch-size', '2',
                                '--layers', '1', '3', '--device', 'cpu'], None)
    one, two = tmp_path/'one', tmp_path/'two'
    assert sorted(p.name for p in one.iterdir()) == sorted(p.name for p in two.iterdir())
    assert (one/'manifest.json').read_text() == (two/'manifest.json').read_text()  # SHA-256s and token counts included
    man = json.loads((one/'manifest.json').read_text())
    assert (man['complete'], man['n_shards'], len(man['shards']), man['n_tokens']) == (True, 5, 5, 9 * 15)
    for s in man['shards']: assert (one/s['file']).read_bytes() == (two/s['file']).read_bytes(), s['file']
    from mi_repro.activations import Store
    assert Store(two).check(verify=True).load(3, 'mlp_out', skip_flagged=False).shape == (9 * 15, 64)

def test_interventions_two_ranks_match_one(tset, tmp_path):
    pf = tmp_path/'prompts.jsonl'
    pf.write_text(''.join(json.dumps(dict(prompt=p, correct_answer=c, incorrect_answer=i, behaviour='test', language='en', split='test')) + '\n'
                          for p, (c, i) in zip(PROMPTS, ANSWERS)))
    feats = ','.join(f'{l}:{f}' for l in range(4) for f in range(16))
    one, two = both(tmp_path, lambda out: ['interventions', 'tiny-qwen3', str(tset), str(out), str(pf), '--features', feats,
                                           '--draws', '4', '--seed', '3', '--device', 'cpu'], 'interventions.json')
    assert (one['world'], two['world'], one['n_draws'], one['seed']) == (1, 2, 4, 3)
    assert [r['i'] for r in two['prompts']] == [0, 1, 2]
    assert sorted({r['rank'] for r in two['prompts']}) == [0, 1]
    assert strip(one['prompts']) == strip(two['prompts'])
    assert any(r['n_active'] > 0 and r['set'] != 0 for r in one['prompts'])

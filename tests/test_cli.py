"End-to-end tests of the `mi-repro` command line on tiny fake chapters (each run starts a real kernel)."
import json, os, shutil, subprocess, sys
from pathlib import Path
import nbformat
import pytest


PARAMS = '''model: str = "tiny-qwen3" # model name
device: str = "auto" # device
dtype: str = "fp32" # dtype
seed: int = 0 # random seed'''

def fake_chapter(path, *cells):
    "A minimal chapter: a `parameters` cell, then `cells`."
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(PARAMS, metadata={'tags': ['parameters']})]
                                  + [nbformat.v4.new_code_cell(c) for c in cells])
    nb.metadata.kernelspec = {'display_name': 'Python 3', 'language': 'python', 'name': 'python3'}
    nbformat.write(nb, path)

@pytest.fixture
def nbs(tmp_path):
    d = tmp_path/'nbs'
    d.mkdir()
    fake_chapter(d/'00_hello.ipynb', "from mi_repro.core import record\nrecord('hello.seed', seed)")
    fake_chapter(d/'01_boom.ipynb', "x = 1", "raise ValueError('boom')")
    fake_chapter(d/'02_after.ipynb', "from mi_repro.core import record\nrecord('after.ran', True)")
    fake_chapter(d/'core.ipynb', "raise RuntimeError('not a chapter')")
    return d

def mi_repro(*args, script=False):
    "Run the command line in a fresh process; `script`: through the installed console script."
    exe = Path(sys.executable).parent/'mi-repro'
    cmd = [str(exe)] if script and exe.exists() else [sys.executable, '-m', 'mi_repro.runner']
    env = {k: v for k, v in os.environ.items() if not k.startswith('MI_REPRO_')}
    return subprocess.run(cmd + [str(a) for a in args], capture_output=True, text=True, env=env, timeout=300)

def one_line_error(r, contains):
    assert r.returncode == 2, (r.returncode, r.stdout, r.stderr)
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1, r.stderr
    assert lines[0].startswith('mi-repro: error: ') and contains in lines[0], lines[0]
    assert 'Traceback' not in r.stderr + r.stdout

def test_unknown_chapter(nbs):
    r = mi_repro('run', 'nope', '--nbs', nbs, script=True)
    one_line_error(r, "unknown chapter 'nope'")
    assert '00_hello, 01_boom, 02_after' in r.stderr and 'core' not in r.stderr

def test_bad_param_type(nbs, tmp_path):
    r = mi_repro('run', 'hello', '-p', 'seed', 'abc', '--model', 'tiny-qwen3', '--nbs', nbs, '--out', tmp_path/'runs')
    one_line_error(r, "parameter seed of 00_hello expects int, got 'abc'")
    r = mi_repro('run', '-p', 'sed', '1', '--model', 'tiny-qwen3', '--nbs', nbs, '--out', tmp_path/'runs')
    one_line_error(r, "unknown parameter 'sed'")
    assert not (tmp_path/'runs').exists()  # nothing ran, nothing written

def test_unknown_model(nbs, tmp_path):
    r = mi_repro('run', '--model', 'no-such-model', '--nbs', nbs, '--out', tmp_path/'runs')
    one_line_error(r, 'no-such-model')
    assert not (tmp_path/'runs').exists()

def test_models_table():
    r = mi_repro('models')
    assert r.returncode == 0, r.stderr
    header, *rows = r.stdout.splitlines()
    assert header.split()[0] == 'name' and 'available' in header
    assert any(row.startswith('tiny-qwen3 ') for row in rows)

def test_bad_usage():
    r = mi_repro('run', '--bogus')
    assert r.returncode == 2 and 'unrecognized arguments' in r.stderr and 'Traceback' not in r.stderr

def test_run_ok(nbs, tmp_path):
    out, figs = tmp_path/'runs', tmp_path/'figs'
    r = mi_repro('run', '0', '-p', 'seed', '7', '--model', 'tiny-qwen3', '--nbs', nbs, '--out', out, '--figures', figs)
    assert r.returncode == 0, r.stderr
    rd = out/'tiny-qwen3'
    assert sorted(p.name for p in rd.iterdir()) == ['00_hello.ipynb', 'manifest.json', 'metrics.json']
    assert json.loads((rd/'metrics.json').read_text()) == {'hello.seed': 7}
    nb = nbformat.read(rd/'00_hello.ipynb', as_version=4)
    injected = [c for c in nb.cells if 'injected-parameters' in c.metadata.get('tags', [])]
    assert len(injected) == 1 and 'seed = 7' in injected[0].source and 'model = "tiny-qwen3"' in injected[0].source
    m = json.loads((rd/'manifest.json').read_text())
    assert m['model'] == m['runname'] == 'tiny-qwen3'
    assert m['parameters'] == {'seed': '7'} and m['device'] == 'auto' and m['dtype'] == 'fp32'
    assert m['chapters']['00_hello']['status'] == 'ok' and m['chapters']['00_hello']['notebook'] == '00_hello.ipynb'
    assert m['chapters']['00_hello']['parameters'] == {'model': 'tiny-qwen3', 'device': 'auto', 'dtype': 'fp32', 'seed': 7}
    assert m['metrics'] == {'hello.seed': 7}
    assert m['versions']['papermill'] and m['versions']['python'] and m['started'] and m['finished']
    assert 'manifest' in r.stdout and '00_hello' in r.stdout

def test_run_failing_chapter(nbs, tmp_path):
    out = tmp_path/'runs'
    rd = out/'tiny-qwen3'
    rd.mkdir(parents=True)
    # an earlier run: 00_hello done, and 01_boom once succeeded
    (rd/'manifest.json').write_text(json.dumps({'chapters': {'00_hello': {'status': 'ok', 'wall_s': 1.0, 'notebook': '00_hello.ipynb'}}}))
    (rd/'metrics.json').write_text(json.dumps({'hello.seed': 1}))
    (rd/'01_boom.ipynb').write_text('{}')
    r = mi_repro('run', 'boom', 'after', '--model', 'tiny-qwen3', '--nbs', nbs, '--out', out, '--figures', tmp_path/'figs')
    assert r.returncode == 1, (r.stdout, r.stderr)
    msg = [l for l in r.stderr.splitlines() if l.startswith('mi-repro: ')]
    assert len(msg) == 1 and '01_boom' in msg[0] and 'ValueError: boom' in msg[0] and 'In [4]' in msg[0], r.stderr
    assert str(rd/'01_boom.failed.ipynb') in msg[0]
    assert 'Traceback' not in r.stderr
    assert (rd/'01_boom.failed.ipynb').exists() and not (rd/'01_boom.ipynb').exists()
    assert not list(rd.glob('_tmp*')) and not (rd/'02_after.ipynb').exists()
    m = json.loads((rd/'manifest.json').read_text())
    assert {k: c['status'] for k, c in m['chapters'].items()} == {'00_hello': 'ok', '01_boom': 'failed'}
    assert m['chapters']['01_boom']['error'] == 'ValueError: boom'
    assert m['chapters']['01_boom']['notebook'] == '01_boom.failed.ipynb'
    assert m['metrics'] == {'hello.seed': 1}

def test_qwen3_4b_without_weights_fails_fast(tmp_path, monkeypatch):
    "The thesis target, absent here, stops the run before anything executes, saying how to provide it (a hang would hit the timeout)."
    monkeypatch.setenv('HF_HOME', str(tmp_path/'hf'))
    monkeypatch.delenv('HF_HUB_CACHE', raising=False)
    r = mi_repro('run', '01', '--model', 'qwen3-4b', '--out', tmp_path/'runs', '--figures', tmp_path/'figs')
    one_line_error(r, 'Qwen/Qwen3-4B-Instruct-2507')
    assert 'local directory' in r.stderr and 'HF_HOME' in r.stderr and 'smollm2-135m' in r.stderr
    assert not (tmp_path/'runs').exists()

def test_model_paths(nbs, tmp_path):
    "A model folder given relative to the caller's folder: resolved once in the CLI, the run named after the folder."
    from mi_repro.models import locate
    m = tmp_path/'my model'
    shutil.copytree(locate('tiny-qwen3'), m)
    fake_chapter(nbs/'03_sees.ipynb', "from pathlib import Path\nassert Path(model).is_absolute() and Path(model).is_dir(), model")
    (m/'sub').mkdir()
    out = tmp_path/'runs'
    for cwd, arg in [(m/'sub', '..'), (tmp_path, './my model')]:
        r = subprocess.run([sys.executable, '-m', 'mi_repro.runner', 'run', 'sees', '--model', arg, '--nbs', str(nbs), '--out', str(out),
                            '--figures', str(tmp_path/'figs')], capture_output=True, text=True, cwd=cwd, timeout=300)
        assert r.returncode == 0, r.stderr
        assert sorted(p.name for p in out.iterdir() if not p.name.startswith('.')) == ['my-model'], list(out.iterdir())
    assert not (tmp_path/'manifest.json').exists() and not (m/'manifest.json').exists()

def test_killed_run_is_marked(nbs, tmp_path):
    "What a killed run leaves (a chapter at 'running', a temporary notebook) is cleared by the next run of the folder."
    out = tmp_path/'runs'
    rd = out/'tiny-qwen3'
    rd.mkdir(parents=True)
    (rd/'manifest.json').write_text(json.dumps({'chapters': {'01_boom': {'status': 'running', 'wall_s': None}}}))
    (rd/'_tmp.01_boom.123.abcd.ipynb').write_text('{}')
    r = mi_repro('run', 'hello', '--model', 'tiny-qwen3', '--nbs', nbs, '--out', out, '--figures', tmp_path/'figs')
    assert r.returncode == 0, r.stderr
    m = json.loads((rd/'manifest.json').read_text())
    assert m['chapters']['01_boom']['status'] == 'interrupted' and m['chapters']['00_hello']['status'] == 'ok'
    assert not list(rd.glob('_tmp*'))

def test_corrupt_files_one_line(nbs, tmp_path):
    "Corrupt JSON where the command reads it: one line and exit 2 (compare's 'metrics differ' is 1)."
    bad = tmp_path/'manifest.json'
    bad.write_text('not json')
    one_line_error(mi_repro('compare', bad, bad), 'is not valid JSON')
    rd = tmp_path/'runs'/'tiny-qwen3'
    rd.mkdir(parents=True)
    (rd/'metrics.json').write_text('{"a": ')
    r = mi_repro('run', 'hello', '--model', 'tiny-qwen3', '--nbs', nbs, '--out', tmp_path/'runs', '--figures', tmp_path/'figs')
    assert r.returncode == 2 and 'is not valid JSON' in r.stderr and 'Traceback' not in r.stderr, r.stderr
    r = mi_repro('run', 'hello', '-p', 'seed', str(2**64), '--model', 'tiny-qwen3', '--nbs', nbs, '--out', tmp_path/'runs')
    one_line_error(r, 'does not fit in 64 bits')

def test_params():
    r = mi_repro('run', '--help')
    assert r.returncode == 0 and 'mi-repro params CHAPTER' in ' '.join(r.stdout.split()), r.stdout
    r = mi_repro('params', '06', script=True)
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert lines[0] == '06_attribution' and any(l.strip().startswith('max_feature_nodes: int = ') for l in lines)
    one_line_error(mi_repro('params', 'nope'), "unknown chapter 'nope'")

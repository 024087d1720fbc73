"The README's Python quickstart, extracted from the README and run as written on tiny-qwen3 in a fresh process."
import json, os, re, subprocess, sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

def quickstart(readme:Path=ROOT/'README.md') -> str:
    "The README's first ```python block that imports `mi_repro as mr`."
    blocks = re.findall(r'```python\n(.*?)```', readme.read_text(encoding='utf-8'), re.S)
    found = [b for b in blocks if 'import mi_repro as mr' in b]
    assert found, 'README.md has no ```python block with `import mi_repro as mr`'
    return found[0]

def test_quickstart_runs(tmp_path):
    code = quickstart()
    assert "'tiny-qwen3'" in code and len(code.strip().splitlines()) <= 14, code
    (tmp_path/'quickstart.py').write_text(code + "\nimport json\n"
                                          "json.dump([layer, pos, feature], open('node.json', 'w'))\n", encoding='utf-8')
    env = {k: v for k, v in os.environ.items() if k not in ('MI_REPRO_RUN_DIR', 'MI_REPRO_FIG_DIR')}
    env['PYTHONPATH'] = os.pathsep.join(filter(None, [str(ROOT), env.get('PYTHONPATH')]))
    r = subprocess.run([sys.executable, 'quickstart.py'], cwd=tmp_path, capture_output=True, text=True, env=env,
                       timeout=900)
    assert r.returncode == 0, r.stdout + r.stderr
    assert 'logit_correct' in r.stdout  # the measured table was printed
    js = json.loads((tmp_path/'graph.json').read_text(encoding='utf-8'))
    assert {'metadata', 'nodes', 'links'} <= set(js) and js['metadata']['info']['model'] == 'tiny-qwen3'
    assert (tmp_path/'graph.html').read_text(encoding='utf-8').lstrip().lower().startswith('<!doctype html')
    node = tuple(json.loads((tmp_path/'node.json').read_text()))
    from mi_repro.attribution import feature_key
    feats = [feature_key(n) for n in js['nodes'] if n['feature_type'] == 'cross layer transcoder']
    assert node in feats, (node, feats[:5])  # the most influential feature survives pruning, and reads back the same

def test_chapter_00_runs_the_same_lines():
    "Chapter 00 ends with the README's quickstart (its files written to a temporary folder instead)."
    cells = [''.join(c['source']) for c in json.loads((ROOT/'nbs'/'00_models.ipynb').read_text())['cells']]
    want = quickstart().strip().replace("'graph.", "out/'graph.")
    assert any(want in c for c in cells), 'nbs/00_models.ipynb no longer runs the README quickstart'

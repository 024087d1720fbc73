"""Browser test of the feature pages (`mi_repro.features.write_pages`): strings from data (the model name in an index,
labels, token and context texts) are planted with script payloads, the pages are opened from disk in headless
Chromium, and nothing may run; the pages show the payloads as text and name no absolute machine path.
Builds a small feature index of tiny-qwen3's chapter-04 dictionaries (cached after `nbdev-test`)."""
import json, shutil
from pathlib import Path
import pytest
from test_viewer import browser  # noqa: F401  (the headless-Chromium fixture)

PAYLOADS = ['<img src=x onerror="window.__xss=(window.__xss||0)+1">',
            '"><script>window.__xss=(window.__xss||0)+1</script>',
            "'><svg onload=\"window.__xss=(window.__xss||0)+1\"></svg>"]

@pytest.fixture(scope='module')
def index(tmp_path_factory):
    import torch
    from mi_repro.models import load_model
    from mi_repro.corpus import contexts
    from mi_repro.features import build_index
    from mi_repro.dictionaries import train_dicts, load_dicts
    torch.manual_seed(0)
    lm, tok, spec = load_model('tiny-qwen3', 'cpu')
    tcs = load_dicts(train_dicts(lm, tok, spec, 'tiny-qwen3', progress=False))
    C = contexts(tok, 'test', ctx=32, n_tokens=32 * 16, progress=False)
    out = tmp_path_factory.mktemp('machine-only-folder') / 'index'
    ix = build_index(lm, spec, {0: tcs[0]}, C, out, n_top=4, n_samples=4, progress=False)
    return ix, tok

def planted(ix, tok, payload, where):
    "A copy of the index whose model name is `payload` (where 'model'), and a tokenizer whose every token reads `payload`."
    from mi_repro.features import FeatureIndex, _Vocab
    d = ix.path.parent / f'planted-{where}' / ix.path.name
    if d.exists(): shutil.rmtree(d.parent)
    shutil.copytree(ix.path, d)
    m = json.loads((d/'index.json').read_text())
    if where == 'model': m['build']['model'] = payload
    (d/'index.json').write_text(json.dumps(m))
    t = type('Tok', (), {})()
    t._mi_repro_vocab = _Vocab([payload if where == 'tokens' else f'tok{i}' for i in range(len(tok))])
    return FeatureIndex(d), t

@pytest.mark.parametrize('where', ['model', 'labels', 'tokens'])
def test_no_script_runs(browser, index, tmp_path, where):  # noqa: F811
    from mi_repro.features import write_pages
    ix, tok = index
    for k, payload in enumerate(PAYLOADS):
        pix, ptok = planted(ix, tok, payload, where)
        F = pix.t(0)['n_fire'].shape[0]
        fired = [f for f in range(F) if pix.stats(0, f)['n_fire'] > 0][:3]
        labels = {0: [payload if where == 'labels' else 'a label'] * F}
        out = tmp_path / f'{where}{k}'
        idx = write_pages(pix, ptok, [(0, f) for f in fired], out, labels)
        for p in [idx] + [out / f'L0_F{f}.html' for f in fired]:
            src = p.read_text()
            assert str(ix.path.parent.parent) not in src and '/root/' not in src, f'{p.name} names a machine path'
            browser.get(p.resolve().as_uri())
            assert browser.execute_script('return window.__xss === undefined'), f'a planted script ran in {p.name} ({where})'
            shown = browser.find_element('tag name', 'body').text
            if where != 'tokens' or p != idx: assert payload.split('window')[0].strip('"\'>')[:4] in shown, (p.name, where)

def test_model_folder_by_name(index, tmp_path):
    "A model given as a local folder (the CLI resolves it to an absolute path) is shown by its name, never its path."
    from mi_repro.features import write_pages
    ix, tok = index
    pix, ptok = planted(ix, tok, '/home/someone/models/my-model', 'model')
    idx = write_pages(pix, ptok, [(0, 0)], tmp_path/'pages')
    for p in [idx, tmp_path/'pages'/'L0_F0.html']:
        src = p.read_text()
        assert '/home/someone' not in src and 'my-model' in src, p.name

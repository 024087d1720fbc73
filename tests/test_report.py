"Closing notes and README result tables say only what the committed pack's metrics show (issue 16, part 4)."
import json, re
from pathlib import Path
import pytest
from mi_repro.report import fill, load, numbers, covered

ROOT = Path(__file__).resolve().parents[1]
# closing-note headings
NOTES = r'#+ (Closing note|What the offline models show|What the small models can and cannot do)'
RUNS = sorted(p.parent for p in (ROOT/'runs').glob('*/metrics.json'))

def closing_notes(nb:Path):
    "Text of a pack notebook's closing notes: written '## Closing note' cells and notes rendered by `report.note`."
    cells = json.loads(nb.read_text())['cells']
    for c in cells:
        src = ''.join(c['source'])
        if c['cell_type'] == 'markdown' and re.match(NOTES, src): yield src
        for o in c.get('outputs', []):
            if 'note(' in src and 'text/markdown' in o.get('data', {}): yield ''.join(o['data']['text/markdown'])

def stale(nb:Path, m:dict):
    "Numbers in the closing notes of `nb` that no metric of its run rounds to."
    return [s for t in closing_notes(nb) for s in numbers(t) if not covered(s, m)]

def test_readme_tables_match_pack():
    "The README's generated tables equal what runs/smollm2-135m/metrics.json gives."
    text = (ROOT/'README.md').read_text()
    assert '<!-- results:headline -->' in text
    assert fill(text, load(ROOT/'runs'/'smollm2-135m')) == text, 'run `python -m mi_repro.report runs/smollm2-135m`'

PACK = [nb for r in RUNS for nb in sorted(r.glob('[0-9]*.ipynb'))]

@pytest.mark.parametrize('nb', PACK, ids=lambda p: f'{p.parent.name}/{p.name}')
def test_closing_note_numbers_in_metrics(nb):
    "Every decimal number in a pack notebook's closing note is one of its run's metrics (as rounded)."
    bad = stale(nb, load(nb.parent))
    assert not bad, f'{nb}: closing note quotes {bad}, not in {nb.parent}/metrics.json'

def test_planted_stale_number_fails(tmp_path):
    "A closing note with a number from another run is caught, in a notebook and in the README."
    m = load(ROOT/'runs'/'smollm2-135m')
    # a number no metric of the pack rounds to (the pack grows: -0.48 became a metric with chapter 12)
    x = next(s for s in (f'-0.{i:02d}' for i in range(48, 100)) if not covered(s, m))
    nb = tmp_path/'07_x.ipynb'
    nb.write_text(json.dumps({'cells': [{'cell_type': 'markdown', 'source': ['## Closing note\n', f'factual {x}']}]}))
    assert stale(nb, m) == [x]
    text = (ROOT/'README.md').read_text()
    a, b = text.index('<!-- results:headline -->'), text.index('<!-- /results:headline -->')
    ci = re.search(r'-?\d+\.\d+ \[-?\d+\.\d+, -?\d+\.\d+\]', text[a:b])  # a figure the table renders from the metrics
    assert ci, 'the headline table has no interval'
    text = text[:a] + text[a:b].replace(ci.group(0), f'{x} [-0.98, -0.06]', 1) + text[b:]
    assert fill(text, m) != text

"""circuit-tracer's own frontend serves what `mi_repro.ctfront.write_frontend` writes: its server (`serve` from
circuit-tracer 0.5.0, in a venv of its own, on 127.0.0.1 and a free port) answers the requests its page makes for the
graph list, a graph and a feature node's file, and circuit-tracer's pydantic models accept what it served; its page
(the offline copy `ct_serve` serves) shows the graph and a feature's panel in headless Chromium that can reach no host
but 127.0.0.1, and loads nothing from elsewhere (Chromium as in tests/test_viewer.py: `make install`).

The venv: `$MI_REPRO_CT_VENV`, else the benchmarks' `benchmarks/.venv-circuit-tracer`, else a light one in the cache
(`ct_python(create=True)`: `pip install --no-deps circuit-tracer==0.5.0` and pydantic, about 10 s, once). The test
makes that one when none is there, so it needs PyPI once, like `make install`; it fails, rather than skips, when pip
cannot install it. Builds a small feature index and two graphs of tiny-qwen3 (its dictionaries cached after `nbdev-test`)."""
import json, socket, time, urllib.error, urllib.request
import pytest
from test_viewer import FLAGS, CHROMIUM, CHROMEDRIVER
SCAN = 'tiny-qwen3-mi-repro-plt'  # the scan of a tiny-qwen3 graph (`viewer.scan_name`): its features' folder

@pytest.fixture(scope='module')
def folder(tmp_path_factory):
    import torch
    from mi_repro.dictionaries import chapter_setup
    from mi_repro.corpus import contexts
    from mi_repro.features import build_index
    from mi_repro.attribution import Replacement, attribute, graph_json, write_graph
    from mi_repro.models import prompt_ids
    from mi_repro.ctfront import write_frontend
    torch.manual_seed(0)
    r, _, tcs = chapter_setup('tiny-qwen3', 'cpu', 'float32', seed=0)
    tmp = tmp_path_factory.mktemp('ctfront')
    C = contexts(r.tok, 'test', ctx=32, n_tokens=32 * 16, progress=False)
    ix = build_index(r.model, r.spec, tcs, C, tmp/'index', batch_size=8, n_top=6, n_samples=6, progress=False)
    files = []
    for i, text in enumerate(['The capital of France is', 'The opposite of hot is']):
        g = attribute(Replacement(r.hf, r.spec, tcs, prompt_ids(r.tok, text)), r.tok, text, progress=False)
        files.append(write_graph(graph_json(g, slug=f'tiny-{i}', model=r.spec.name), tmp/f'tiny-{i}.json.gz'))
    return write_frontend(files, ix, r.tok, tmp/'data')

@pytest.fixture(scope='module')
def server(folder):
    from mi_repro.ctfront import ct_python, ct_serve
    proc, url = ct_serve(folder, python=ct_python(create=True))
    yield url
    proc.stdin.close()
    assert proc.wait(10) == 0, proc.stderr.read()

def get(url):
    with urllib.request.urlopen(url, timeout=10) as r: return r.read()

def test_served_and_valid(folder, server, tmp_path):
    from mi_repro.ctfront import ct_validate, ct_python
    meta = json.loads(get(server + '/data/graph-metadata.json'))  # what index.html asks first
    assert [m['slug'] for m in meta['graphs']] == ['tiny-0', 'tiny-1']
    assert b'<!DOCTYPE html>' in get(server + '/index.html')  # circuit-tracer's own page
    saved = [('metadata', tmp_path/'meta.json')]
    saved[0][1].write_text(json.dumps(meta))
    for m in meta['graphs']:
        graph = json.loads(get(f"{server}/graph_data/{m['slug']}.json"))  # init-cg.js
        assert graph['metadata']['scan'] == m['scan'] and m['scan'].startswith('./')
        feats = [n for n in graph['nodes'] if n['feature_type'] == 'cross layer transcoder']
        assert feats, 'a graph without feature nodes tests nothing'
        saved.append(('graph', tmp_path/f"{m['slug']}.json"))
        saved[-1][1].write_text(json.dumps(graph))
        for n in feats[:3] + feats[-3:]:
            doc = json.loads(get(f"{server}/{m['scan'][2:]}/{n['feature']}.json"))  # init-feature-examples.js
            layer, f, _ = map(int, n['node_id'].split('_'))
            assert doc['index'] == f and doc['transcoder_id'].endswith(f'layer_{layer}')
            saved.append(('feature', tmp_path/f"{m['slug']}-{n['feature']}.json"))
            saved[-1][1].write_text(json.dumps(doc))
    assert ct_validate(saved, ct_python()) == len(saved)  # circuit-tracer's pydantic models, in its venv
    with pytest.raises(urllib.error.HTTPError, match='404'): get(f'{server}/data/features/{SCAN}/999999999.json')

def test_rejects_what_its_models_reject(folder, tmp_path):
    from mi_repro.core import UserError
    from mi_repro.ctfront import ct_validate, ct_python
    doc = json.loads(next((folder/'features'/SCAN).glob('*.json')).read_text())
    doc['examples_quantiles'][0]['examples'][0]['tokens'] = 'not a list'
    (tmp_path/'bad.json').write_text(json.dumps(doc))
    with pytest.raises(UserError, match='tokens'): ct_validate([('feature', tmp_path/'bad.json')], ct_python())

def _own_address():
    "This machine's address on its default route (no packet is sent), or None."
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        try: s.connect(('10.254.254.254', 1))
        except OSError: return None
        a = s.getsockname()[0]
    return None if a.startswith('127.') else a

def test_loopback_only(server):
    "circuit-tracer's `serve` binds every interface; `ct_serve` binds 127.0.0.1 only."
    a = _own_address()
    if a is None: pytest.skip('this machine has no address but the loopback one')
    with socket.socket() as probe:  # the address itself takes connections (a listener on it is reachable)
        probe.bind((a, 0))
        probe.listen()
        socket.create_connection(probe.getsockname(), timeout=2).close()
    with pytest.raises(OSError): socket.create_connection((a, int(server.rsplit(':', 1)[1])), timeout=2).close()

@pytest.fixture(scope='module')
def offline_browser(tmp_path_factory):
    "Headless Chromium (as tests/test_viewer.py's) that resolves no host name but 127.0.0.1: no network."
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    opts = webdriver.ChromeOptions()
    opts.binary_location = CHROMIUM
    for f in FLAGS + ['--host-resolver-rules=MAP * ~NOTFOUND , EXCLUDE 127.0.0.1',
                      f'--user-data-dir={tmp_path_factory.mktemp("chromium-profile")}']: opts.add_argument(f)
    opts.set_capability('goog:loggingPrefs', {'browser': 'ALL'})
    driver = webdriver.Chrome(options=opts, service=Service(CHROMEDRIVER))
    driver.set_page_load_timeout(30)
    yield driver
    driver.quit()

def test_page_offline(folder, server, offline_browser):
    "circuit-tracer's own page draws the graph, and a feature node's click shows its examples and logits."
    from selenium.webdriver.support.ui import WebDriverWait
    from selenium.webdriver.common.action_chains import ActionChains
    d = offline_browser
    d.get(server + '/index.html?slug=tiny-0')
    graph = json.loads((folder/'tiny-0.json').read_text())
    WebDriverWait(d, 20).until(lambda d: d.find_elements('css selector', '.node'))
    drawn = d.execute_script("return Array.from(document.querySelectorAll('.node')).map(n => n.__data__.node_id)")
    assert set(drawn) <= {n['node_id'] for n in graph['nodes']} and len(set(drawn)) >= 0.9 * len(graph['nodes'])
    i = d.execute_script("return Array.from(document.querySelectorAll('.node'))"
                         ".findIndex(n => n.__data__.feature_type == 'cross layer transcoder')")
    nid = d.execute_script("return document.querySelectorAll('.node')[arguments[0]].__data__.node_id", i)
    node = next(n for n in graph['nodes'] if n['node_id'] == nid)
    layer, f, _ = map(int, nid.split('_'))
    doc = json.loads((folder/'features'/SCAN/f"{node['feature']}.json").read_text())
    ActionChains(d).move_to_element(d.find_elements('css selector', '.node')[i]).click().perform()
    WebDriverWait(d, 20).until(lambda d: d.find_elements('css selector', '.feature-example-list .ctx-container'))
    time.sleep(0.5)
    text = d.find_element('tag name', 'body').text
    assert f'L{layer}/{f}' in text, 'the panel names the feature by its layer and index (cantor unpaired)'
    assert doc['top_logits'][0].strip() in d.find_element('css selector', '.feature-example-logits').text
    n_ex = sum(len(q['examples']) for q in doc['examples_quantiles'])
    assert len(d.find_elements('css selector', '.feature-example-list .ctx-container')) == n_ex
    urls = d.execute_script("return performance.getEntriesByType('resource').map(e => e.name)")
    assert urls and all(u.startswith(server + '/') for u in urls), [u for u in urls if not u.startswith(server)]
    errors = [e['message'] for e in d.get_log('browser') if e['level'] == 'SEVERE' and 'favicon.ico' not in e['message']]
    assert not errors, errors

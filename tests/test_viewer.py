"""Browser test of the attribution-graph viewer (`mi_repro.viewer`): the page, opened from disk in headless Chromium,
draws one SVG element per node, shows a node's label on hover and its inputs and outputs on click, draws fewer edges
when the threshold rises, and groups nodes into a supernode and back. Needs Debian's chromium and chromium-driver
(`make install` installs them); fails, rather than skips, when they are missing or Chromium does not start."""
import math
from pathlib import Path
import pytest
from mi_repro.viewer import render, toy_graph, random_graph

CHROMIUM, CHROMEDRIVER = '/usr/bin/chromium', '/usr/bin/chromedriver'
# as root, with no network: no sandbox, and none of Chromium's background connections
FLAGS = ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking',
         '--disable-component-update', '--disable-sync', '--disable-dev-shm-usage', '--window-size=1400,900']

@pytest.fixture(scope='module')
def browser(tmp_path_factory):
    try:
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service
        from selenium.common.exceptions import WebDriverException
    except ImportError: pytest.fail('selenium is not installed: run `make install` (it is in the dev extras of pyproject.toml)')
    for p in (CHROMIUM, CHROMEDRIVER):
        if not Path(p).exists(): pytest.fail(f'{p} not found: run `make install` (it installs the Debian packages chromium and chromium-driver)')
    opts = webdriver.ChromeOptions()
    opts.binary_location = CHROMIUM
    for f in FLAGS + [f'--user-data-dir={tmp_path_factory.mktemp("chromium-profile")}']: opts.add_argument(f)
    opts.set_capability('goog:loggingPrefs', {'browser': 'ALL'})
    try: driver = webdriver.Chrome(options=opts, service=Service(CHROMEDRIVER))
    except WebDriverException as e: pytest.fail(f'headless Chromium did not start ({CHROMIUM} through {CHROMEDRIVER}): {e.msg}')
    driver.set_page_load_timeout(30)
    yield driver
    driver.quit()

def load(driver, path, graph, **kw):
    "Render `graph` to `path`, open it from disk, wait for the nodes; the page's JavaScript errors so far must be none."
    from selenium.webdriver.support.ui import WebDriverWait
    render(graph, path, **kw)
    driver.get(Path(path).resolve().as_uri())
    WebDriverWait(driver, 10).until(lambda d: d.find_elements('css selector', '#graph g.node'))
    check_console(driver)

def check_console(driver):
    errors = [e['message'] for e in driver.get_log('browser') if e['level'] == 'SEVERE']
    assert not errors, f'JavaScript errors: {errors}'

def css(driver, sel): return driver.find_elements('css selector', sel)
def node(driver, nid): return driver.find_element('css selector', f'#graph g.node[data-id="{nid}"]')
def edge_count(driver): return len(css(driver, '#graph .edges path'))
def by_abs(links): return sorted(links, key=lambda l: -abs(l['weight']))

def set_slider(driver, value):
    driver.execute_script("const s = document.getElementById('threshold'); s.value = arguments[0]; s.dispatchEvent(new Event('input'))", value)

def test_nodes_hover_click_threshold(browser, tmp_path):
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.keys import Keys
    g = toy_graph()
    g['nodes'][9]['clerp'] = 'US states <img src=x onerror="document.title=1"> & co'
    load(browser, tmp_path/'toy.html', g, feature_pages='features')
    # one SVG element per node, each edge drawn, tokens as axis labels
    ids = [e.get_attribute('data-id') for e in css(browser, '#graph g.node')]
    assert sorted(ids) == sorted(n['node_id'] for n in g['nodes'])
    assert edge_count(browser) == len(g['links'])
    assert [t.get_attribute('textContent') for t in css(browser, '#graph text.tok')] == g['metadata']['prompt_tokens']
    # rows: embeddings at the bottom, then layers upwards, logits at the top (SVG y grows downwards)
    y = lambda nid: node(browser, nid).rect['y']
    assert y('E_8258_4') > y('0_812_4') > y('1_15_4') > y('2_1203_5') > y('3_3071_5') > y('5_14666_5')
    assert node(browser, 'E_465_1').rect['x'] < node(browser, 'E_3140_2').rect['x'] < node(browser, 'E_8258_4').rect['x']

    # hover: label, activation, influence
    target = '2_1203_5'
    ActionChains(browser).move_to_element(node(browser, target)).perform()
    tip = browser.find_element('id', 'tip')
    assert tip.is_displayed()
    assert 'say Austin' in tip.text and 'activation 6.800' in tip.text and 'influence 0.520' in tip.text

    # click: the panel lists the inputs and outputs, strongest first, and links the feature page
    node(browser, target).click()
    panel = browser.find_element('id', 'panel')
    assert panel.find_element('tag name', 'h3').text == 'say Austin'
    inputs = [li.get_attribute('data-id') for li in css(browser, '#panel .inputs li')]
    outputs = [li.get_attribute('data-id') for li in css(browser, '#panel .outputs li')]
    assert inputs == [l['source'] for l in by_abs(l for l in g['links'] if l['target'] == target)] and len(inputs) == 3
    assert outputs == [l['target'] for l in by_abs(l for l in g['links'] if l['source'] == target)] and len(outputs) == 3
    assert css(browser, '#panel .outputs li .w')[0].text == '4.500'
    assert 'neg' in css(browser, '#panel .outputs li .w')[1].get_attribute('class')  # -1.9 to " Dallas"
    assert panel.find_element('css selector', 'a.feature-page').get_attribute('href').endswith('/features/L2_F1203.html')
    assert 'clicked' in node(browser, target).get_attribute('class')

    # click an input in the panel: the panel moves to it; its label is shown as text, not markup
    css(browser, '#panel .inputs li[data-id="1_15_4"]')[0].click()
    assert panel.find_element('tag name', 'h3').text == g['nodes'][9]['clerp']
    assert not css(browser, 'img') and browser.title != '1'

    # threshold: the edges kept are those with |weight| at or above the chosen quantile
    browser.find_element('tag name', 'body').send_keys(Keys.ESCAPE)
    assert 'clicked' not in node(browser, target).get_attribute('class')
    w = sorted(abs(l['weight']) for l in g['links'])
    for value in (500, 800, 999):
        set_slider(browser, value)
        thr = w[min(len(w) - 1, math.floor(value / 1000 * len(w)))]
        assert edge_count(browser) == sum(x >= thr for x in w) < len(g['links'])
    assert edge_count(browser) == 1
    kinds = [e.get_attribute('class') for e in css(browser, '#graph g.node')]
    assert kinds.count('node embedding') == 6 and kinds.count('node logit') == 2  # always shown
    assert kinds.count('node feature') == 1  # only ' Texas' -> 0_812_4 (12.0) is left
    set_slider(browser, 0)
    assert edge_count(browser) == len(g['links']) and len(css(browser, '#graph g.node')) == len(g['nodes'])
    check_console(browser)

def test_supernodes(browser, tmp_path):
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.keys import Keys
    g = toy_graph()
    g['qParams']['supernodes'] = [['Texas', '0_812_4', '1_15_4']]
    load(browser, tmp_path/'toy.html', g)
    assert [e.text for e in css(browser, '#graph g.supernode')] == ['Texas']  # groups from qParams
    assert len(css(browser, '#graph g.node')) == len(g['nodes']) - 1
    browser.find_element('id', 'ungroup').click()  # nothing selected or clicked: nothing to ungroup
    assert len(css(browser, '#graph g.supernode')) == 1

    # shift-click two nodes, name them, group
    a, b = '1_4096_5', '2_9_5'
    for x in (a, b):  # each click redraws the graph, so find the next node afresh
        ActionChains(browser).key_down(Keys.SHIFT).click(node(browser, x)).key_up(Keys.SHIFT).perform()
    assert all('sel' in node(browser, x).get_attribute('class') for x in (a, b))
    browser.find_element('id', 'sn-name').send_keys('capital <b>cities</b>')
    browser.find_element('id', 'group').click()
    sns = css(browser, '#graph g.supernode')
    assert sorted(e.text for e in sns) == ['Texas', 'capital <b>cities</b>'] and not css(browser, 'b')
    assert len(css(browser, '#graph g.node')) == len(g['nodes']) - 2  # two groups of two
    assert not css(browser, f'#graph g.node[data-id="{a}"]')
    # the new group is clicked: its panel sums the members' edges (a -> b, inside the group, is dropped)
    assert [li.text for li in css(browser, '#panel .members li')] == ['capital cities / say a capital', 'Texas cities']
    outs = {li.get_attribute('data-id'): float(li.find_element('css selector', '.w').text) for li in css(browser, '#panel .outputs li')}
    assert outs == {'3_3071_5': 1.5, '5_11109_5': 1.3, '2_1203_5': 1.8}
    ins = [li.get_attribute('data-id') for li in css(browser, '#panel .inputs li')]
    assert ins == ['0_77_2', 'E_319_5', 'supernode:1']  # 2.4, 0.9, and 1_15_4 -> 2_9_5 (0.7) from the Texas group
    # export, then ungroup from the panel
    browser.find_element('id', 'export').click()
    assert 'capital \\u003cb\\u003e' not in browser.find_element('css selector', '#panel textarea').get_attribute('value')
    assert '["capital <b>cities</b>","1_4096_5","2_9_5"]' in browser.find_element('css selector', '#panel textarea').get_attribute('value')
    node(browser, 'supernode:2').click()
    browser.find_element('id', 'panel-ungroup').click()
    assert [e.text for e in css(browser, '#graph g.supernode')] == ['Texas']
    assert len(css(browser, '#graph g.node')) == len(g['nodes']) - 1
    check_console(browser)

def test_larger_graph(browser, tmp_path):
    g = random_graph(n_tokens=16, n_layers=16, n_features=300, n_links=3000, seed=1)
    load(browser, tmp_path/'random.html', g)
    assert len(g['links']) > 1500 and edge_count(browser) <= 1500  # the default threshold keeps at most 1500 edges
    set_slider(browser, 0)
    assert edge_count(browser) == len(g['links'])
    assert sorted(e.get_attribute('data-id') for e in css(browser, '#graph g.node')) == sorted(n['node_id'] for n in g['nodes'])

def test_edge_heads_in_panel(browser, tmp_path):
    "A link that carries its head loadings (chapter 09's `link_heads`) shows them in the clicked node's edge lists."
    g = toy_graph()
    target = '2_1203_5'
    into = by_abs(l for l in g['links'] if l['target'] == target)
    into[0]['heads'] = [[1, 3, 2.25], [0, 0, -0.5]]
    load(browser, tmp_path/'heads.html', g)
    node(browser, target).click()
    lis = css(browser, '#panel .inputs li')
    assert lis[0].find_element('css selector', '.heads').text == 'via L1H3 2.250, L0H0 -0.500'
    assert not lis[1].find_elements('css selector', '.heads')  # a link without heads shows none
    check_console(browser)

def rects(driver, sel):
    "Bounding boxes {left, top, right, bottom} of the elements matching `sel`, in viewport pixels."
    return driver.execute_script("return [...document.querySelectorAll(arguments[0])].map(e => { "
                                 "const r = e.getBoundingClientRect(); return [r.left, r.top, r.right, r.bottom]; })", sel)

def inside(box, area): return box[0] >= area[0] and box[1] >= area[1] and box[2] <= area[2] and box[3] <= area[3]

def test_first_view_fits(browser, tmp_path):
    "The first view of a graph of a real model's size fits the canvas: every token label and logit node is in view."
    g = random_graph(n_tokens=24, n_layers=30, n_features=700, n_links=6000, seed=2)
    g['metadata']['prompt_tokens'][0] = '<|endoftext|> a long first token'  # reaches left of the first column
    load(browser, tmp_path/'big.html', g)
    canvas = rects(browser, '#canvas')[0]
    assert canvas[2] <= browser.execute_script('return window.innerWidth') and canvas[3] <= browser.execute_script(
        'return window.innerHeight')
    toks, logits = rects(browser, '#graph text.tok'), rects(browser, '#graph g.node.logit')
    assert len(toks) == 24 and len(logits) == 3
    assert all(inside(b, canvas) for b in toks + logits), (canvas, toks, logits)
    assert all(inside(b, canvas) for b in rects(browser, '#graph g.node'))  # and every node drawn
    # scaled down to fit, the labels are drawn larger by as much: on screen they stay readable (a line >= 9 px)
    labels = rects(browser, '#graph text.nlabel')
    assert len(labels) == 12 and min(b[3] - b[1] for b in labels) >= 9, labels
    # drawn at its own size (fit off), the same graph does not fit: the check above is not true of any drawing
    browser.find_element('id', 'fit').click()
    assert not all(inside(b, canvas) for b in rects(browser, '#graph text.tok') + rects(browser, '#graph g.node.logit'))
    check_console(browser)

def test_labels_and_influence_note(browser, tmp_path):
    "Text labels beside the 12 most influential nodes drawn (smallest cumulative influence); the panel says what that is."
    g = random_graph(n_tokens=10, n_layers=8, n_features=120, n_links=1200, seed=3)
    for n in g['nodes']: n['clerp'] = n['clerp'] and n['clerp'] + ', a label too long for a graph'
    byid = {n['node_id']: n for n in g['nodes']}
    load(browser, tmp_path/'labels.html', g)
    drawn = [e.get_attribute('data-id') for e in css(browser, '#graph g.node')]
    cand = sorted((byid[i] for i in drawn if byid[i]['feature_type'] in ('cross layer transcoder', 'mlp reconstruction error')),
                  key=lambda n: n['influence'])
    labels = {e.get_attribute('data-id'): e.get_attribute('textContent') for e in css(browser, '#graph text.nlabel')}
    assert len(cand) > 12 and set(labels) == {n['node_id'] for n in cand[:12]}
    for n in cand[:12]:  # shortened to 28 characters; an error node is named by its layer and token
        want = n['clerp'][:27] + '…' if n['clerp'] else f"error L{n['layer']} @ \"{g['metadata']['prompt_tokens'][n['ctx_idx']]}\""
        assert labels[n['node_id']] == want, (labels[n['node_id']], want)
    note = browser.find_element('css selector', '#panel .infl-note').text
    assert 'cumulative influence share' in note and 'Smaller is more influential' in note and '0.8' in note
    node(browser, cand[0]['node_id']).click()
    assert 'cumulative influence share' in browser.find_element('css selector', '#panel .infl-note').text
    check_console(browser)

def shown_ids(driver): return sorted(e.get_attribute('data-id') for e in css(driver, '#graph g.node'))

def test_pins_supernodes_reload(browser, tmp_path):
    "Pin nodes (ctrl-click and the panel's button), group two, show the pinned subgraph; a reload shows the same."
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.keys import Keys
    from selenium.webdriver.support.ui import WebDriverWait
    g = toy_graph()
    load(browser, tmp_path/'pins.html', g)
    for x in ('0_812_4', '1_15_4'):
        ActionChains(browser).key_down(Keys.CONTROL).click(node(browser, x)).key_up(Keys.CONTROL).perform()
    for x in ('2_1203_5', '5_14666_5'):
        node(browser, x).click()
        browser.find_element('id', 'pin').click()
    pins = ['0_812_4', '1_15_4', '2_1203_5', '5_14666_5']
    assert sorted(e.get_attribute('data-id') for e in css(browser, '#graph g.node.pinned')) == sorted(pins)
    for x in ('0_812_4', '1_15_4'):
        ActionChains(browser).key_down(Keys.SHIFT).click(node(browser, x)).key_up(Keys.SHIFT).perform()
    browser.find_element('id', 'sn-name').send_keys('Texas')
    browser.find_element('id', 'group').click()
    browser.find_element('id', 'subgraph').click()

    def check_subgraph():
        assert browser.find_element('id', 'subgraph').is_selected()
        assert shown_ids(browser) == ['2_1203_5', '5_14666_5', 'supernode:1']
        assert [e.text for e in css(browser, '#graph g.supernode')] == ['Texas']
        # every link among the pinned nodes, the group's summed: 0_812_4 -> 2_1203_5 (2.2) + 1_15_4 -> 2_1203_5 (1.4)
        edges = {(e.get_attribute('data-source'), e.get_attribute('data-target')) for e in css(browser, '#graph .edges path')}
        assert edges == {('supernode:1', '2_1203_5'), ('2_1203_5', '5_14666_5')}
        # every pinned node is labelled but the logit (its token is drawn) and the group (its name is)
        assert [e.get_attribute('data-id') for e in css(browser, '#graph text.nlabel')] == ['2_1203_5']
    check_subgraph()
    url = browser.current_url
    assert '#' in url and 'pinnedIds=' in url and 'supernodes=' in url and 'view=pinned' in url
    browser.refresh()
    WebDriverWait(browser, 10).until(lambda d: d.find_elements('css selector', '#graph g.node'))
    check_subgraph()
    node(browser, 'supernode:1').click()
    assert browser.find_element('id', 'pin').text == 'Unpin'
    # out of the subgraph: every node again, the pins still marked; clearing the pins empties the URL's list
    browser.find_element('id', 'subgraph').click()
    assert len(shown_ids(browser)) == len(g['nodes']) - 1
    assert sorted(e.get_attribute('data-id') for e in css(browser, '#graph g.node.pinned')) == ['2_1203_5', '5_14666_5',
                                                                                               'supernode:1']
    browser.find_element('id', 'unpin').click()
    assert not css(browser, '#graph g.node.pinned') and 'pinnedIds=&' in browser.current_url
    browser.refresh()
    WebDriverWait(browser, 10).until(lambda d: d.find_elements('css selector', '#graph g.node'))
    assert not css(browser, '#graph g.node.pinned') and [e.text for e in css(browser, '#graph g.supernode')] == ['Texas']
    check_console(browser)

def test_pins_from_qparams_and_url(browser, tmp_path):
    "A graph's qParams.pinnedIds are shown pinned; a URL's pinnedIds (Neuronpedia's query form too) come first."
    from selenium.webdriver.support.ui import WebDriverWait
    g = toy_graph()
    g['qParams']['pinnedIds'] = ['0_77_2', '3_3071_5']
    load(browser, tmp_path/'q.html', g)
    assert sorted(e.get_attribute('data-id') for e in css(browser, '#graph g.node.pinned')) == ['0_77_2', '3_3071_5']
    for i, suffix in enumerate(('#pinnedIds=1_4096_5&view=pinned', '?pinnedIds=1_4096_5,2_9_5&view=pinned')):
        render(g, tmp_path/f'u{i}.html')
        browser.get((tmp_path/f'u{i}.html').resolve().as_uri() + suffix)
        WebDriverWait(browser, 10).until(lambda d: d.find_elements('css selector', '#graph g.node'))
        assert shown_ids(browser) == sorted(suffix.split('=')[1].split('&')[0].split(','))  # the pinned subgraph
    check_console(browser)

def label_overlaps(driver):
    "Pairs of node labels whose boxes on screen overlap by more than half a pixel."
    r = driver.execute_script("return [...document.querySelectorAll('#graph text.nlabel')].map(t => {"
                              "const b = t.getBoundingClientRect(); return [b.left, b.top, b.right, b.bottom]})")
    cut = lambda a, b, lo, hi: min(a[hi], b[hi]) - max(a[lo], b[lo]) > 0.5
    return len(r), [(i, j) for i in range(len(r)) for j in range(i) if cut(r[i], r[j], 0, 2) and cut(r[i], r[j], 1, 3)]

def test_labels_do_not_overlap(browser, tmp_path):
    "Twelve labels on nodes crowded into four places (2 layers x 2 tokens): none prints over another."
    load(browser, tmp_path/'crowd.html', random_graph(n_tokens=2, n_layers=2, n_features=40, n_links=200))
    n, over = label_overlaps(browser)
    assert n == 12 and not over, (n, over)

def test_logit_tokens_do_not_overlap(browser, tmp_path):
    "Thirteen logits at one position: the target's token and the most probable are drawn, none over another."
    from mi_repro.viewer import logit_node
    g = random_graph(n_tokens=4, n_layers=4, n_features=30, n_links=200)
    g['nodes'] += [logit_node(600 + i, f' word{i}', 3, 4, 0.01 * (10 - i), False) for i in range(10)]
    load(browser, tmp_path/'logits.html', g)
    js = ("return [...document.querySelectorAll('#graph g.node.logit text')].filter(t => t.style.display != 'none')"
          ".map(t => {const b = t.getBoundingClientRect(); return [t.textContent, b.left, b.top, b.right, b.bottom]})")
    shown = browser.execute_script(js)
    cut = lambda a, b, lo, hi: min(a[hi], b[hi]) - max(a[lo], b[lo]) > 0.5
    assert ' word0' in [s[0] for s in shown] and 1 < len(shown) < 13, shown  # the target, and not every token
    assert not [(a, b) for a in shown for b in shown if a < b and cut(a, b, 1, 3) and cut(a, b, 2, 4)], shown

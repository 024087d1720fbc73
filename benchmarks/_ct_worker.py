"""One attribution graph built by circuit-tracer 0.5.0; run by `attribution.py` inside `benchmarks/.venv-circuit-tracer`.

    python _ct_worker.py IN.pt OUT.pt --model-dir DIR --transcoders DIR --threads 1 --max-feature-nodes 2048 --batch-size 64

IN.pt (written by attribution.py): `ids` [T] token ids (a special token first, the same ids our side gets) and
`ref_logits` [T, V] the model's logits from the project venv (transformers 5), to check the TransformerLens model.
OUT.pt: the graph (adjacency, active/selected features, logit targets and probabilities), circuit-tracer's own
pruning masks and graph scores, the timings and this process's peak RSS.

How the model goes in (circuit-tracer 0.5.0 has no loader for a local Llama-architecture folder):
- the HF weights are read by transformers 4.57 (`LlamaForCausalLM.from_pretrained`, rope_theta given explicitly:
  the folder's config.json is transformers-5 style, `rope_parameters`, which 4.57 does not read), converted with
  TransformerLens's `convert_llama_weights`, keys renamed for circuit-tracer's wrappers (`.mlp.` ->
  `.mlp.old_mlp.`, `unembed.` -> `unembed.old_unembed.`) and loaded into
  `ReplacementModel.from_config(HookedTransformerConfig(...), transcoders, backend="transformerlens")`;
- the HookedTransformerConfig is built by hand from config.json, with `rotary_base` = rope_theta (TransformerLens's
  own Llama path drops it) and `n_ctx` = `--n-ctx` (TransformerLens allocates an n_ctx x n_ctx mask per layer);
- the tokenizer is tokenizer.json with bos `<|im_start|>` (id 1) and eos = pad = `<|im_end|>` (id 2): with
  eos = bos TransformerLens would mask the BOS position;
- the transcoders are read from the exported set's config.yaml (absolute paths) by circuit-tracer's
  `load_transcoders`, with its defaults for a hub set (encoders in memory, decoders read lazily from disk).
"""
import argparse, json, os, resource, sys, tempfile, time
import torch
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _venv import log, pin_threads






def load_tokenizer(model_dir, tmp):
    from transformers import AutoTokenizer, PreTrainedTokenizerFast
    cfg = json.load(open(os.path.join(model_dir, 'tokenizer_config.json')))
    sp = {k: cfg[k] for k in ('bos_token', 'eos_token', 'pad_token', 'unk_token') if isinstance(cfg.get(k), str)}
    if sp.get('eos_token') in (None, sp.get('bos_token')): sp['eos_token'] = '<|im_end|>'  # never eos = bos (see above)
    sp.setdefault('pad_token', sp['eos_token'])
    t = PreTrainedTokenizerFast(tokenizer_file=os.path.join(model_dir, 'tokenizer.json'), **sp)
    t.save_pretrained(tmp)  # a transformers-4 folder: TransformerLens reloads the tokenizer by name_or_path
    return AutoTokenizer.from_pretrained(tmp)


def build_model(model_dir, tc_dir, n_ctx, tmp):
    import yaml
    from transformers import LlamaForCausalLM
    from transformer_lens import HookedTransformerConfig
    from transformer_lens.pretrained.weight_conversions import convert_llama_weights
    from circuit_tracer import ReplacementModel
    from circuit_tracer.utils.hf_utils import load_transcoders
    hc = json.load(open(os.path.join(model_dir, 'config.json')))
    if hc.get('architectures', ['?'])[0] != 'LlamaForCausalLM':
        sys.exit(f"error: {model_dir} is a {hc.get('architectures')} model; this worker builds Llama-architecture models only")
    rope = hc.get('rope_theta') or (hc.get('rope_parameters') or {}).get('rope_theta') or 10000.0
    d_head = hc.get('head_dim') or hc['hidden_size'] // hc['num_attention_heads']
    cfg = HookedTransformerConfig(
        d_model=hc['hidden_size'], d_head=d_head, n_heads=hc['num_attention_heads'], d_mlp=hc['intermediate_size'],
        n_layers=hc['num_hidden_layers'], n_ctx=n_ctx, eps=hc['rms_norm_eps'], d_vocab=hc['vocab_size'],
        act_fn=hc['hidden_act'], n_key_value_heads=(hc['num_key_value_heads'] if hc['num_key_value_heads'] != hc['num_attention_heads'] else None),
        normalization_type='RMS', positional_embedding_type='rotary', rotary_adjacent_pairs=False, rotary_dim=d_head,
        rotary_base=rope, final_rms=True, gated_mlp=True, original_architecture='LlamaForCausalLM',
        model_name=os.path.basename(os.path.normpath(model_dir)), tokenizer_prepends_bos=False, default_prepend_bos=False,
        device='cpu', dtype=torch.float32)
    hf = LlamaForCausalLM.from_pretrained(model_dir, torch_dtype=torch.float32, rope_theta=rope).eval()
    sd = convert_llama_weights(hf, cfg)
    sd = {k.replace('.mlp.', '.mlp.old_mlp.').replace('unembed.', 'unembed.old_unembed.'): v.detach().float().contiguous() for k, v in sd.items()}
    del hf
    conf = yaml.safe_load(open(os.path.join(tc_dir, 'config.yaml')))
    conf.setdefault('scan', 'mi-repro')
    tcs = load_transcoders(conf, device=torch.device('cpu'), dtype=torch.float32)
    tok = load_tokenizer(model_dir, tmp)
    model = ReplacementModel.from_config(cfg, tcs, backend='transformerlens', tokenizer=tok)
    missing, unexpected = model.load_state_dict(sd, strict=False)
    missing = [k for k in missing if not k.startswith('transcoders.') and 'mask' not in k and 'IGNORE' not in k and 'rotary' not in k]
    if missing or unexpected: sys.exit(f"error: weights do not fit the TransformerLens model: missing {missing[:5]}, unexpected {unexpected[:5]}")
    return model.eval(), rope


def main():
    ap = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    ap.add_argument('inp'); ap.add_argument('out')
    ap.add_argument('--model-dir', required=True)
    ap.add_argument('--transcoders', required=True, help='circuit-tracer transcoder-set folder (config.yaml)')
    ap.add_argument('--threads', type=int, default=1)
    ap.add_argument('--max-feature-nodes', type=int, default=None)
    ap.add_argument('--batch-size', type=int, default=64)
    ap.add_argument('--n-ctx', type=int, default=2048)
    ap.add_argument('--node-threshold', type=float, default=0.8)
    ap.add_argument('--edge-threshold', type=float, default=0.98)
    a = ap.parse_args()
    pin_threads(a.threads)
    import circuit_tracer, importlib.metadata as md
    from circuit_tracer import attribute
    from circuit_tracer.graph import prune_graph, compute_graph_scores
    inp = torch.load(a.inp)
    ids = inp['ids'].long()
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix='ct_tok_') as tmp:
        model, rope = build_model(a.model_dir, a.transcoders, max(a.n_ctx, len(ids)), tmp)
    load_s = time.perf_counter() - t0
    with torch.no_grad():
        tl_logits = model(ids[None])[0].float()
    logits_err = float((tl_logits - inp['ref_logits'].float()).abs().max())
    log(f"circuit-tracer: model and transcoders loaded in {load_s:.1f} s; TransformerLens logits vs the model's: max |diff| {logits_err:.2e}")
    if logits_err > 1e-2: sys.exit(f"error: the TransformerLens model's logits differ from the model's by {logits_err:.3g}: the conversion is wrong")
    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    t0 = time.perf_counter()
    g = attribute(ids, model, max_feature_nodes=a.max_feature_nodes, batch_size=a.batch_size, verbose=False)
    graph_s = time.perf_counter() - t0
    rss_graph = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    log(f"circuit-tracer: graph of {len(g.selected_features)} feature nodes ({len(g.active_features)} active) in {graph_s:.1f} s")
    t0 = time.perf_counter()
    pr = prune_graph(g, a.node_threshold, a.edge_threshold)
    rep, comp = compute_graph_scores(g)
    prune_s = time.perf_counter() - t0
    torch.save(dict(
        adj=g.adjacency_matrix.float(), active=g.active_features.long(), selected=g.selected_features.long(),
        acts=g.activation_values.float(), ids=g.input_tokens.long().cpu(), n_layers=g.cfg.n_layers,
        logit_ids=g.logit_token_ids.long(), logit_probs=g.logit_probabilities.float(),
        node_mask=pr.node_mask, edge_mask=pr.edge_mask,
        info=dict(impl=f'circuit-tracer {md.version("circuit-tracer")} (TransformerLens {md.version("transformer-lens")}, '
                       f'transformers {md.version("transformers")}, torch {torch.__version__})',
                  graph_s=graph_s, prune_scores_s=prune_s, load_s=load_s, replacement=rep, completeness=comp,
                  logits_max_abs_diff=logits_err, rope_theta=rope, n_ctx=max(a.n_ctx, len(ids)), threads=torch.get_num_threads(),
                  rss_after_load_gib=rss_before, rss_after_graph_gib=rss_graph, peak_rss_gib=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20)), a.out)


if __name__ == '__main__': main()

"""One attribution graph built by circuit-tracer 0.5.0; run by `attribution.py` and `scale.py` inside `benchmarks/.venv-circuit-tracer`.

    python _ct_worker.py IN.pt OUT.pt --model-dir DIR [--weights FILE] --transcoders DIR [--device cpu] [--dtype fp32]
                         --threads 1 --max-feature-nodes 2048 --batch-size 64 [--no-prune]

IN.pt (written by the caller): `ids` [T] token ids (a special token first, the same ids our side gets) and
`ref_logits` [T, V] the model's logits from the project venv (transformers 5), to check the TransformerLens model.
OUT.pt: the graph (adjacency, active/selected features, logit targets and probabilities), circuit-tracer's own
pruning masks and graph scores (unless --no-prune), the timings, this process's peak RSS and, on CUDA, its peak GPU
memory.

How the model goes in (circuit-tracer 0.5.0 has no loader for a local model folder; Llama and Qwen3 architectures):
- the HF weights are read by transformers 4.57 (`LlamaForCausalLM`/`Qwen3ForCausalLM.from_pretrained`, rope_theta
  given explicitly: the folder's config.json is transformers-5 style, `rope_parameters`, which 4.57 does not read),
  or, with `--weights`, from a safetensors file of the HF state dict that the project venv wrote (a weightless shape
  folder such as qwen3-mid, whose weights mi_repro draws at load time) put into the module skeleton built on the meta
  device (tied embeddings tied again);
- they are converted with TransformerLens's `convert_llama_weights` or `convert_qwen3_weights` (Qwen3: q_norm and
  k_norm, `use_qk_norm=True`), keys renamed for circuit-tracer's wrappers (`.mlp.` -> `.mlp.old_mlp.`, `unembed.` ->
  `unembed.old_unembed.`) and loaded into
  `ReplacementModel.from_config(HookedTransformerConfig(...), transcoders, backend="transformerlens")`;
- the HookedTransformerConfig is built by hand from config.json, with `rotary_base` = rope_theta (TransformerLens's
  own Llama path drops it) and `n_ctx` = `--n-ctx` (TransformerLens allocates an n_ctx x n_ctx mask per layer);
- the tokenizer is tokenizer.json with bos `<|im_start|>` (id 1) and eos = pad = `<|im_end|>` (id 2): with
  eos = bos TransformerLens would mask the BOS position;
- the transcoders are read from the set's config.yaml (absolute paths) by circuit-tracer's `load_transcoders`, with
  its defaults for a hub set (encoders in memory, decoders read lazily from disk), in the model's dtype;
- the TransformerLens logits are checked against `ref_logits` (`--logits-tol`, absolute) before the graph is built.
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


ARCHS = ('LlamaForCausalLM', 'Qwen3ForCausalLM')  # the HF architectures this worker converts to TransformerLens


def _rss_gib(): return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # this process's peak RSS


def _rss_now_gib():
    for line in open('/proc/self/status'):
        if line.startswith('VmRSS:'): return int(line.split()[1]) / 2**20
    return float('nan')


def build_model(model_dir, tc_dir, n_ctx, tmp, weights=None, device='cpu', dtype=torch.float32, timings=None):
    """circuit-tracer's TransformerLens ReplacementModel of the Llama or Qwen3 model in `model_dir` with the transcoder
    set in `tc_dir`; `weights`: a safetensors file of the HF state dict to use instead of the folder's (a weightless
    shape folder, whose weights the project venv draws). `timings` (a dict) gets model_s, open_set_s and the RSS."""
    import yaml, transformers
    from transformer_lens import HookedTransformerConfig
    from transformer_lens.pretrained.weight_conversions import convert_llama_weights, convert_qwen3_weights
    from circuit_tracer import ReplacementModel
    from circuit_tracer.utils.hf_utils import load_transcoders
    timings = {} if timings is None else timings
    t0 = time.perf_counter()
    hc = json.load(open(os.path.join(model_dir, 'config.json')))
    arch = (hc.get('architectures') or [dict(llama='LlamaForCausalLM', qwen3='Qwen3ForCausalLM').get(hc.get('model_type'), hc.get('model_type'))])[0]
    if arch not in ARCHS:
        sys.exit(f"error: {model_dir} is a {arch} model; this worker builds {', '.join(ARCHS)} models only")
    qwen3 = arch == 'Qwen3ForCausalLM'
    rope = hc.get('rope_theta') or (hc.get('rope_parameters') or {}).get('rope_theta') or 10000.0
    d_head = hc.get('head_dim') or hc['hidden_size'] // hc['num_attention_heads']
    cfg = HookedTransformerConfig(
        d_model=hc['hidden_size'], d_head=d_head, n_heads=hc['num_attention_heads'], d_mlp=hc['intermediate_size'],
        n_layers=hc['num_hidden_layers'], n_ctx=n_ctx, eps=hc['rms_norm_eps'], d_vocab=hc['vocab_size'],
        act_fn=hc['hidden_act'], n_key_value_heads=(hc['num_key_value_heads'] if hc['num_key_value_heads'] != hc['num_attention_heads'] else None),
        normalization_type='RMS', positional_embedding_type='rotary', rotary_adjacent_pairs=False, rotary_dim=d_head,
        rotary_base=rope, final_rms=True, gated_mlp=True, original_architecture=arch, use_qk_norm=qwen3,
        model_name=os.path.basename(os.path.normpath(model_dir)), tokenizer_prepends_bos=False, default_prepend_bos=False,
        device=str(device), dtype=dtype)
    cls = getattr(transformers, arch)
    if weights:  # the state dict the project venv wrote; the module skeleton on the meta device takes its tensors
        from safetensors.torch import load_file
        sd = load_file(weights, device=str(device))
        conf = transformers.AutoConfig.from_pretrained(model_dir, rope_theta=rope)
        with torch.device('meta'): hf = cls(conf)
        missing, unexpected = hf.load_state_dict(sd, strict=False, assign=True)
        if conf.tie_word_embeddings and 'lm_head.weight' in missing: hf.lm_head.weight = hf.model.embed_tokens.weight; missing.remove('lm_head.weight')
        if missing or unexpected: sys.exit(f"error: {weights} does not fit {arch}: missing {missing[:5]}, unexpected {unexpected[:5]}")
        del sd
    else: hf = cls.from_pretrained(model_dir, torch_dtype=dtype, rope_theta=rope).to(device).eval()
    sd = (convert_qwen3_weights if qwen3 else convert_llama_weights)(hf, cfg)
    sd = {k.replace('.mlp.', '.mlp.old_mlp.').replace('unembed.', 'unembed.old_unembed.'): v.detach().to(device, dtype).contiguous() for k, v in sd.items()}
    del hf
    timings['rss_model_gib'] = _rss_now_gib()
    t1 = time.perf_counter()
    conf = yaml.safe_load(open(os.path.join(tc_dir, 'config.yaml')))
    conf.setdefault('scan', 'mi-repro')
    if conf['model_kind'] == 'cross_layer_transcoder':  # a local CLT folder (load_transcoders would ask the hub)
        from circuit_tracer.transcoder.cross_layer_transcoder import load_clt
        tcs = load_clt(tc_dir, feature_input_hook=conf['feature_input_hook'], feature_output_hook=conf['feature_output_hook'],
                       scan=conf['scan'], device=torch.device(device), dtype=dtype, lazy_decoder=False)
    else: tcs = load_transcoders(conf, device=torch.device(device), dtype=dtype)
    timings['open_set_s'] = time.perf_counter() - t1
    tok = load_tokenizer(model_dir, tmp)
    model = ReplacementModel.from_config(cfg, tcs, backend='transformerlens', tokenizer=tok)
    missing, unexpected = model.load_state_dict(sd, strict=False)
    missing = [k for k in missing if not k.startswith('transcoders.') and 'mask' not in k and 'IGNORE' not in k and 'rotary' not in k]
    if missing or unexpected: sys.exit(f"error: weights do not fit the TransformerLens model: missing {missing[:5]}, unexpected {unexpected[:5]}")
    del sd
    timings['model_s'] = time.perf_counter() - t0 - timings['open_set_s']
    timings['rss_set_gib'] = _rss_now_gib()
    return model.eval(), rope


def main():
    ap = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    ap.add_argument('inp'); ap.add_argument('out')
    ap.add_argument('--model-dir', required=True)
    ap.add_argument('--weights', default=None, help="safetensors of the HF state dict (default: the folder's weights)")
    ap.add_argument('--transcoders', required=True, help='circuit-tracer transcoder-set folder (config.yaml)')
    ap.add_argument('--device', default='cpu'); ap.add_argument('--dtype', default='fp32', choices=('fp32', 'bf16', 'fp16'))
    ap.add_argument('--threads', type=int, default=1)
    ap.add_argument('--max-feature-nodes', type=int, default=None)
    ap.add_argument('--batch-size', type=int, default=64)
    ap.add_argument('--n-ctx', type=int, default=2048)
    ap.add_argument('--logits-tol', type=float, default=1e-2, help="largest |TransformerLens logit - the model's| accepted")
    ap.add_argument('--no-prune', action='store_true', help='skip pruning and graph scores (large graphs)')
    ap.add_argument('--node-threshold', type=float, default=0.8)
    ap.add_argument('--edge-threshold', type=float, default=0.98)
    a = ap.parse_args()
    pin_threads(a.threads)
    import circuit_tracer, importlib.metadata as md
    from circuit_tracer import attribute
    from circuit_tracer.graph import prune_graph, compute_graph_scores
    dtype = dict(fp32=torch.float32, bf16=torch.bfloat16, fp16=torch.float16)[a.dtype]
    cuda = torch.device(a.device).type == 'cuda'
    inp = torch.load(a.inp)
    ids = inp['ids'].long()
    t0, tm = time.perf_counter(), {}
    with tempfile.TemporaryDirectory(prefix='ct_tok_') as tmp:
        model, rope = build_model(a.model_dir, a.transcoders, max(a.n_ctx, len(ids)), tmp, a.weights, a.device, dtype, tm)
    load_s = time.perf_counter() - t0
    with torch.no_grad():
        tl_logits = model(ids[None].to(a.device))[0].float().cpu()
    logits_err = float((tl_logits - inp['ref_logits'].float()).abs().max())
    log(f"circuit-tracer: model and transcoders loaded in {load_s:.1f} s; TransformerLens logits vs the model's: max |diff| {logits_err:.2e}")
    if not logits_err <= a.logits_tol: sys.exit(f"error: the TransformerLens model's logits differ from the model's by {logits_err:.3g} (> {a.logits_tol:g}): the conversion is wrong")
    rss_before = _rss_gib()
    t0 = time.perf_counter()
    g = attribute(ids, model, max_feature_nodes=a.max_feature_nodes, batch_size=a.batch_size, verbose=False)
    if cuda: torch.cuda.synchronize()
    graph_s = time.perf_counter() - t0
    rss_graph = _rss_gib()
    log(f"circuit-tracer: graph of {len(g.selected_features)} feature nodes ({len(g.active_features)} active) in {graph_s:.1f} s")
    t0 = time.perf_counter()
    if a.no_prune: pr, rep, comp = None, float('nan'), float('nan')
    else:
        pr = prune_graph(g, a.node_threshold, a.edge_threshold)
        rep, comp = compute_graph_scores(g)
    prune_s = time.perf_counter() - t0
    torch.save(dict(
        adj=g.adjacency_matrix.float().cpu(), active=g.active_features.long().cpu(), selected=g.selected_features.long().cpu(),
        acts=g.activation_values.float().cpu(), ids=g.input_tokens.long().cpu(), n_layers=g.cfg.n_layers,
        logit_ids=g.logit_token_ids.long().cpu(), logit_probs=g.logit_probabilities.float().cpu(),
        **(dict(node_mask=pr.node_mask.cpu(), edge_mask=pr.edge_mask.cpu()) if pr is not None else {}),
        info=dict(impl=f'circuit-tracer {md.version("circuit-tracer")} (TransformerLens {md.version("transformer-lens")}, '
                       f'transformers {md.version("transformers")}, torch {torch.__version__})',
                  graph_s=graph_s, prune_scores_s=prune_s, load_s=load_s, replacement=rep, completeness=comp,
                  logits_max_abs_diff=logits_err, rope_theta=rope, n_ctx=max(a.n_ctx, len(ids)), threads=torch.get_num_threads(),
                  device=a.device, dtype=a.dtype, **tm,
                  **(dict(peak_gpu_gib=torch.cuda.max_memory_allocated() / 2**30) if cuda else {}),
                  rss_after_load_gib=rss_before, rss_after_graph_gib=rss_graph, peak_rss_gib=_rss_gib())), a.out)


if __name__ == '__main__': main()

"""One training run of EleutherAI sparsify's TopK transcoder on cached activations; run by `train.py` inside
`benchmarks/.venv-sparsify`.

    SPARSIFY_DISABLE_TRITON=1 python _sparsify_worker.py DATA.safetensors OUT.json --threads 1 --k 32 --num-latents 4608

Also the data helpers `train.py` shares with it (`load_data`, `batches`, `heldout_fvu`), so both sides see the
same tokens in the same order and are scored by the same code. This file imports only torch and safetensors
at the top: sparsify is imported inside `run_sparsify`.

What is reproduced, from `sparsify/trainer.py` (`Trainer.__init__` and `Trainer.fit`, eai-sparsify 1.3.3) with
its defaults (loss_fn 'fvu', optimizer 'signum', auxk_alpha 0, grad_acc_steps 1, micro_acc_steps 1, k_decay_steps 0,
multi_topk False) for `SparseCoderConfig(num_latents, k, transcode=True)`:
- `torch.manual_seed(seed)`, then `SparseCoder(d_in, cfg, 'cpu', dtype=torch.float32)`: nn.Linear encoder with
  zero bias, W_dec zeros (transcoder init), b_dec zeros;
- on the first batch: encoder bias = -mean(x) @ W_enc.T, b_dec = mean(y);
- per batch: `sae(x=x, y=y, dead_mask=None, total_variance=sum((y - y.mean(0))**2))`, loss = fvu + auxk_alpha * auxk
  + multi_topk_fvu / 8 (the last two are 0 by default), backward, `opt.step()`, `opt.zero_grad()`; plus its dead-latent
  bookkeeping (did_fire / num_tokens_since_fired) and its per-step `float(fvu)` for logging;
- no decoder normalisation and no removal of the gradient parallel to decoder rows: fit() does both only when
  `normalize_decoder and not transcode`;
- optimizer `ScheduleFreeWrapper(SignSGD(lr=5e-3 / sqrt(num_latents / 2**14)), momentum=0.95)`, `opt.train()`;
  `opt.eval()` before evaluating (as its checkpointing does);
- `torch.set_float32_matmul_precision('high')` as fit() sets it (on this CPU, torch 2.13, 'high' gives results
  identical to 'highest': matmuls stay fp32; only 'medium' switches to bf16).
"""
import argparse, json, math, os, sys, time
import torch
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _venv import log, pin_threads
from safetensors.torch import load_file, save_file

# ---------------------------------------------------------------- shared with train.py
def save_data(path, x_train, y_train, x_test, y_test, order, dtype=torch.float32):
    "Write the run's data: train/held-out pairs (in `dtype`) and the token order of every pass ([passes, n])."
    save_file({'x_train': x_train.to(dtype).contiguous(), 'y_train': y_train.to(dtype).contiguous(),
               'x_test': x_test.to(dtype).contiguous(), 'y_test': y_test.to(dtype).contiguous(),
               'order': order.to(torch.int64).contiguous()}, str(path))

def load_data(path):
    "Read what `save_data` wrote, as fp32."
    t = load_file(str(path))
    return {k: (v if k == 'order' else v.float()) for k, v in t.items()}

def batches(d, batch_size):
    "Yield (x, y) training batches: every pass's order cut into full batches (the remainder of a pass is dropped)."
    for perm in d['order']:
        for b in range(0, len(perm) - len(perm) % batch_size, batch_size):
            idx = perm[b:b+batch_size]
            yield d['x_train'][idx], d['y_train'][idx]

def n_steps(d, batch_size):
    return d['order'].shape[0] * (d['order'].shape[1] // batch_size)

@torch.no_grad()
def heldout_fvu(f, x, y, batch_size=4096):
    "sum ||y - f(x)||^2 / sum ||y - mean(y)||^2 over the held-out tokens (sums in float64)."
    err = torch.zeros((), dtype=torch.float64)
    for b in range(0, len(x), batch_size):
        err += (y[b:b+batch_size] - f(x[b:b+batch_size])).double().pow(2).sum()
    var = (y.double() - y.double().mean(0)).pow(2).sum()
    return float(err / var)



# ---------------------------------------------------------------- sparsify's training step
def run_sparsify(d, batch_size, k, num_latents, seed=0, lr=None, auxk_alpha=0.0, dead_feature_threshold=10_000_000,
                 matmul_precision='high', log_every=10):
    os.environ.setdefault('SPARSIFY_DISABLE_TRITON', '1')
    import contextlib
    with contextlib.redirect_stdout(sys.stderr):  # sparsify prints on import
        import sparsify
        from sparsify import SparseCoder, SparseCoderConfig
        from sparsify.sign_sgd import SignSGD
        from schedulefree import ScheduleFreeWrapper
    torch.set_float32_matmul_precision(matmul_precision)
    d_in = d['x_train'].shape[1]
    cfg = SparseCoderConfig(num_latents=num_latents, k=k, transcode=True)
    torch.manual_seed(seed)
    sae = SparseCoder(d_in, cfg, 'cpu', dtype=torch.float32)
    lr = lr or 5e-3 / (sae.num_latents / (2**14)) ** 0.5
    opt = ScheduleFreeWrapper(SignSGD([dict(params=sae.parameters(), lr=lr)]), momentum=0.95)
    opt.train()
    num_tokens_since_fired = torch.zeros(sae.num_latents, dtype=torch.long)
    did_fire = torch.zeros(sae.num_latents, dtype=torch.bool)

    total = n_steps(d, batch_size)
    t_steps, fvus = 0.0, []
    for step, (x, y) in enumerate(batches(d, batch_size)):
        t0 = time.perf_counter()
        if step == 0:  # fit()'s bias initialisation on the first batch (transcode branch)
            mean = x.mean(0).to(sae.dtype)
            sae.encoder.bias.data = -mean @ sae.encoder.weight.data.T
            sae.b_dec.data = y.mean(0).to(sae.dtype)
        if cfg.normalize_decoder and not cfg.transcode: sae.set_decoder_norm_to_unit_norm()  # not for transcoders
        dead_mask = num_tokens_since_fired > dead_feature_threshold if auxk_alpha > 0 else None
        total_variance = (y - y.mean(0)).pow(2).sum()
        out = sae(x=x, y=y, dead_mask=dead_mask, total_variance=total_variance)
        did_fire[out.latent_indices.flatten()] = True
        fvu = float(out.fvu.detach())
        loss = out.fvu + auxk_alpha * out.auxk_loss + out.multi_topk_fvu / 8
        loss.div(1).backward()
        if cfg.normalize_decoder and not cfg.transcode: sae.remove_gradient_parallel_to_decoder_directions()
        opt.step()
        opt.zero_grad()
        with torch.no_grad():
            num_tokens_since_fired += len(x)
            num_tokens_since_fired[did_fire] = 0
            did_fire.zero_()
        t_steps += time.perf_counter() - t0
        fvus.append(fvu)
        if log_every and (step % log_every == 0 or step == total - 1):
            log(f"  sparsify step {step+1}/{total}  train fvu {fvu:.4f}  {(step+1)*batch_size/t_steps:,.0f} tok/s")
    opt.eval()  # ScheduleFree: move the weights to the averaged point before evaluating
    sae.eval()
    fvu_test = heldout_fvu(lambda x: sae.decode(*sae.encode(x)[:2]), d['x_test'], d['y_test'])  # = forward's sae_out
    return dict(impl=f'eai-sparsify {sparsify.__version__}', steps=total, tokens=total * batch_size, step_seconds=t_steps,
                tok_s=total * batch_size / t_steps, heldout_fvu=fvu_test, final_train_fvu=fvus[-1] if fvus else math.nan,
                lr=lr, dead_latents_last_pass=int((num_tokens_since_fired >= total * batch_size // d['order'].shape[0]).sum()),
                torch=torch.__version__, threads=torch.get_num_threads(), matmul_precision=matmul_precision)

def main():
    ap = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    ap.add_argument('data'); ap.add_argument('out')
    ap.add_argument('--threads', type=int, required=True)
    ap.add_argument('--batch-size', type=int, required=True)
    ap.add_argument('--k', type=int, required=True)
    ap.add_argument('--num-latents', type=int, required=True)
    ap.add_argument('--seed', type=int, default=0)
    ap.add_argument('--auxk-alpha', type=float, default=0.0)
    ap.add_argument('--matmul-precision', default='high')
    a = ap.parse_args()
    pin_threads(a.threads)
    d = load_data(a.data)
    r = run_sparsify(d, a.batch_size, a.k, a.num_latents, seed=a.seed, auxk_alpha=a.auxk_alpha,
                     matmul_precision=a.matmul_precision)
    with open(a.out, 'w') as f: json.dump(r, f)

if __name__ == '__main__': main()

"""Elementwise and fused kernel peers: the PyTorch op (or the composition a PyTorch model uses) for
each workload of bench/kernels.ts, on the same shapes, outputs preallocated where the API allows.

Config: {"threads": 2, "trials": 5, "only": [names] or null}. Prints {name: measurement}."""
import torch.nn.functional as F
from common import bench_repeated, emit, read_config, setup_torch

cfg = read_config()
torch = setup_torch(cfg.get("threads", 2))
trials = cfg.get("trials", 5)
only = cfg.get("only")
torch.manual_seed(0)
torch.set_grad_enabled(False)


def rand(*shape):
    return torch.randn(*shape)


def softmax():
    x = rand(4096, 1024)
    return lambda: torch.softmax(x, -1)


def softmax_backward():
    y = torch.softmax(rand(4096, 1024), -1)
    dy = rand(4096, 1024)
    return lambda: torch._softmax_backward_data(dy, y, -1, torch.float32)


def layer_norm():
    x, w, b = rand(4096, 768), rand(768), rand(768)
    return lambda: torch.ops.aten.native_layer_norm(x, [768], w, b, 1e-5)


def layer_norm_backward():
    x, w, b, dy = rand(4096, 768), rand(768), rand(768), rand(4096, 768)
    _, mean, rstd = torch.ops.aten.native_layer_norm(x, [768], w, b, 1e-5)
    return lambda: torch.ops.aten.native_layer_norm_backward(dy, x, [768], mean, rstd, w, b, [True, True, True])


def rms_parts():
    with torch.enable_grad():
        x = rand(4096, 768).requires_grad_()
        w = rand(768).requires_grad_()
        # what Hugging Face's LlamaRMSNorm computes (torch 1.13 has no fused RMSNorm)
        y = x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + 1e-6) * w
    return x, w, y


def rms_norm():
    x, w, _ = rms_parts()
    x, w = x.detach(), w.detach()
    return lambda: x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + 1e-6) * w


def rms_norm_backward():
    x, w, y = rms_parts()
    dy = rand(4096, 768)
    return lambda: torch.autograd.grad(y, (x, w), dy, retain_graph=True)


def cross_entropy():
    x, t = rand(1024, 50257), torch.randint(0, 50257, (1024,))
    return lambda: F.cross_entropy(x, t, reduction="none")


def cross_entropy_backward():
    with torch.enable_grad():
        x = rand(1024, 50257).requires_grad_()
        t = torch.randint(0, 50257, (1024,))
        loss = F.cross_entropy(x, t, reduction="none")
    dl = torch.ones(1024)
    return lambda: torch.autograd.grad(loss, x, dl, retain_graph=True)


def adamw():
    p = torch.nn.Parameter(rand(10_000_000))
    p.grad = rand(10_000_000) * 1e-3
    best = None
    for foreach in (False, True):
        opt = torch.optim.AdamW([p], lr=6e-4, betas=(0.9, 0.95), eps=1e-8, weight_decay=0.1, foreach=foreach)
        m = bench_repeated(opt.step, 3)
        if best is None or m["per_call_s"] < best[0]:
            best = (m["per_call_s"], opt)
    return best[1].step


def gelu_tanh():
    x = rand(4096, 3072)
    return lambda: F.gelu(x, approximate="tanh")


def gelu_tanh_backward():
    x, dy = rand(4096, 3072), rand(4096, 3072)
    return lambda: torch.ops.aten.gelu_backward(dy, x, approximate="tanh")


def exp():
    x, y = rand(4096, 1024), torch.empty(4096, 1024)
    return lambda: torch.exp(x, out=y)


def add():
    a, b, c = rand(4096, 768), rand(4096, 768), torch.empty(4096, 768)
    return lambda: torch.add(a, b, out=c)


def bias_add():
    a, b, c = rand(4096, 768), rand(768), torch.empty(4096, 768)
    return lambda: torch.add(a, b, out=c)


def sum_rows():
    x, y = rand(4096, 768), torch.empty(4096)
    return lambda: torch.sum(x, -1, out=y)


def sum_cols():
    x, y = rand(4096, 768), torch.empty(768)
    return lambda: torch.sum(x, 0, out=y)


def permute_heads():
    x, y = rand(8, 256, 12, 64), torch.empty(8, 12, 256, 64)
    return lambda: y.copy_(x.permute(0, 2, 1, 3))


def transpose():
    x, y = rand(4096, 768), torch.empty(768, 4096)
    return lambda: y.copy_(x.t())


def cast_bf16():
    x, y = rand(10_000_000), torch.empty(10_000_000, dtype=torch.bfloat16)
    return lambda: y.copy_(x)


def swiglu():
    gate, up = rand(4096, 1376), rand(4096, 1376)
    return lambda: F.silu(gate) * up


def swiglu_backward():
    with torch.enable_grad():
        gate, up = rand(4096, 1376).requires_grad_(), rand(4096, 1376).requires_grad_()
        y = F.silu(gate) * up
    dy = rand(4096, 1376)
    return lambda: torch.autograd.grad(y, (gate, up), dy, retain_graph=True)


def rope():
    # Hugging Face apply_rotary_pos_emb: q·cos + rotate_half(q)·sin over (B, H, T, D)
    q = rand(1, 8, 4096, 64)
    cos, sin = rand(4096, 64), rand(4096, 64)

    def rotate_half(x):
        return torch.cat((-x[..., 32:], x[..., :32]), dim=-1)

    return lambda: q * cos + rotate_half(q) * sin


def embedding():
    w, ids = rand(50257, 768), torch.randint(0, 50257, (4096,))
    return lambda: F.embedding(ids, w)


def embedding_backward():
    ids, dy = torch.randint(0, 50257, (4096,)), rand(4096, 768)
    return lambda: torch.ops.aten.embedding_dense_backward(dy, ids, 50257, -1, False)


def dropout_mask():
    m = torch.empty(10_000_000)
    return lambda: m.bernoulli_(0.9)


def exp_one():
    x, y = rand(1), torch.empty(1)
    return lambda: torch.exp(x, out=y)


WORKLOADS = {f.__name__: f for f in (
    softmax, softmax_backward, layer_norm, layer_norm_backward, rms_norm, rms_norm_backward, cross_entropy,
    cross_entropy_backward, adamw, gelu_tanh, gelu_tanh_backward, exp, add, bias_add, sum_rows, sum_cols,
    permute_heads, transpose, cast_bf16, swiglu, swiglu_backward, rope, embedding, embedding_backward,
    dropout_mask, exp_one)}

out = {}
for name, make in WORKLOADS.items():
    if only and name not in only:
        continue
    fn = make()
    m = bench_repeated(fn, trials)
    m["threads"] = torch.get_num_threads()
    out[name] = m
out["torch"] = torch.__version__
emit(out)

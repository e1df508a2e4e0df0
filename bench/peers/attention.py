"""Attention peer: PyTorch attention written out in ops, as nanoGPT's non-flash path does:
att = (q @ kᵀ)·scale, masked_fill(causal, −inf), softmax, @ v, and the backward by autograd from a
given upstream gradient. A trial is one forward + backward.

Peak extra memory = peak RSS (ru_maxrss) − RSS once the inputs and the mask exist."""
import math
import os
import resource

from common import bench_repeated, emit, read_config, setup_torch


def rss_bytes():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


cfg = read_config()
torch = setup_torch(cfg.get("threads", 2))
B, H, T, D = cfg["B"], cfg["H"], cfg["T"], cfg["D"]
torch.manual_seed(0)
q = torch.randn(B, H, T, D, requires_grad=True)
k = torch.randn(B, H, T, D, requires_grad=True)
v = torch.randn(B, H, T, D, requires_grad=True)
dout = torch.randn(B, H, T, D)
# the causal mask is built once, like nanoGPT's registered `bias` buffer
masked = torch.ones(T, T, dtype=torch.bool).triu(1)
scale = 1.0 / math.sqrt(D)


def step():
    q.grad = k.grad = v.grad = None
    att = (q @ k.transpose(-2, -1)) * scale
    att = att.masked_fill(masked, float("-inf"))
    att = torch.softmax(att, dim=-1)
    out = att @ v
    out.backward(dout)


rss0 = rss_bytes()
m = bench_repeated(step, cfg.get("trials", 5))
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
m.update({"rss_before_bytes": rss0, "peak_rss_bytes": peak, "peak_extra_bytes": peak - rss0,
          "threads": torch.get_num_threads(), "torch": torch.__version__})
emit(m)

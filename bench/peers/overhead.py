"""Per-op overhead peer: torch.add of two 1-element tensors (a new output each call, as pl.add)."""
from common import bench_repeated, emit, read_config, setup_torch

cfg = read_config()
torch = setup_torch(cfg.get("threads", 1))
a = torch.tensor([1.5])
b = torch.tensor([2.5])
for _ in range(1000):
    torch.add(a, b)
m = bench_repeated(lambda: torch.add(a, b), cfg.get("trials", 7))
m["threads"] = torch.get_num_threads()
m["torch"] = torch.__version__
emit(m)

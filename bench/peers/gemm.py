"""W1 GEMM peer: torch.matmul(a, b, out=c) into a preallocated C, standard normal operands.

transA/transB multiply by a transposed view of a contiguous tensor, which PyTorch hands to BLAS
as a transposed operand (what a Linear layer's backward does)."""
from common import bench_repeated, emit, read_config, setup_torch

cfg = read_config()
torch = setup_torch(cfg.get("threads", 2))
M, K, N = cfg["M"], cfg["K"], cfg["N"]
torch.manual_seed(0)
a = torch.randn(K, M).t() if cfg.get("transA") else torch.randn(M, K)
b = torch.randn(N, K).t() if cfg.get("transB") else torch.randn(K, N)
c = torch.empty(M, N)
m = bench_repeated(lambda: torch.matmul(a, b, out=c), cfg.get("trials", 7))
m["threads"] = torch.get_num_threads()
m["torch"] = torch.__version__
emit(m)

"""Training-step peer (PEERS.md W2, plus the Llama-style config): the same model in PyTorch,
forward + backward + AdamW on 4 fixed random batches; tokens/s and peak RSS."""
import resource

from common import emit, read_config, run_trials, setup_torch
from models import GPT, Llama

cfg = read_config()
torch = setup_torch(cfg.get("threads", 2))
m = cfg["model"]
torch.manual_seed(0)
B, T, V = cfg["batch"], cfg["block"], m["vocab"]
if m["family"] == "gpt2":
    model = GPT(V, m["layers"], m["heads"], m["width"], T)
else:
    model = Llama(V, m["layers"], m["heads"], m["kv_heads"], m["width"], m["intermediate"], T)
decay = [p for p in model.parameters() if p.dim() >= 2]
no_decay = [p for p in model.parameters() if p.dim() < 2]
opt = torch.optim.AdamW([{"params": decay, "weight_decay": 0.1}, {"params": no_decay, "weight_decay": 0.0}],
                        lr=6e-4, betas=(0.9, 0.95), eps=1e-8)
g = torch.Generator().manual_seed(1)
batches = [(torch.randint(0, V, (B, T), generator=g), torch.randint(0, V, (B, T), generator=g)) for _ in range(4)]
state = {"i": 0, "loss": 0.0}


def step():
    x, y = batches[state["i"] % 4]
    state["i"] += 1
    loss = model(x, y)
    opt.zero_grad(set_to_none=True)
    loss.backward()
    opt.step()
    state["loss"] = loss.item()


result = run_trials(step, cfg.get("trials", 20), warmup=cfg.get("warmup", 3))
result["tokens_per_s"] = B * T / result["median_s"]
result["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
result["params"] = sum(p.numel() for p in model.parameters())
result["threads"] = torch.get_num_threads()
result["torch"] = torch.__version__
result["last_loss"] = state["loss"]
emit(result)

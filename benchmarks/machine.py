"""The machine's own limit: the best matrix-multiply throughput torch reaches here, per dtype."""

from __future__ import annotations

import time


def matmul_gflops(dtype_name: str, sizes=(1024, 2048, 4096), seconds: float = 1.0) -> dict:
    """Best GFLOP/s of square matrix multiplies over a few sizes, each repeated for about `seconds`."""
    import torch

    dtype = getattr(torch, dtype_name)
    best = {}
    for n in sizes:
        a, b = torch.randn(n, n).to(dtype), torch.randn(n, n).to(dtype)
        if best and 2 * n ** 3 / (max(best.values()) * 1e9) > 10 * seconds:
            # One multiply would outlast the budget tenfold: a CPU without native bf16 runs a slow fallback
            # (minutes per 4096 multiply on AVX2), which the smaller sizes have already measured.
            break
        torch.mm(a, b)  # warm-up: first call picks kernels and allocates
        count, started = 0, time.perf_counter()
        while True:
            torch.mm(a, b)
            count += 1
            elapsed = time.perf_counter() - started
            if elapsed >= seconds:
                break
        best[n] = 2 * n ** 3 * count / elapsed / 1e9
    return {"gflops": max(best.values()), "by_size": {str(k): round(v, 1) for k, v in best.items()}}


def measure(args: dict) -> dict:
    import torch

    return {"threads": torch.get_num_threads(),
            "float32": matmul_gflops("float32"), "bfloat16": matmul_gflops("bfloat16")}

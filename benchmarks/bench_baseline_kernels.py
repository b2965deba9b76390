"""Library kernels of the baselines against this package's PyTorch versions, on CUDA.

mamba-ssm's Triton SSD (`mamba_chunk_scan_combined`) against `ssd_chunked`; fla's `chunk_gated_delta_rule`
and `chunk_gated_delta_product` against `gated_delta_rule_chunked` / `gated_delta_product_chunked`.
For each: max abs error of outputs, final states and input gradients (the PyTorch version in fp32 on the same
inputs is the reference), forward and forward+backward time, and forward bandwidth (each input read once,
each output written once) as a share of a device copy timed in the same run. A library backward that raises
is recorded with its message. Writes reports/benchmarks/bench_baseline_kernels.{csv,md}.
"""
import argparse
import os
import platform

import pandas as pd
import torch

from statemix.io import atomic_write_text
from statemix.mixers.delta_rule import (gated_delta_product_chunked, gated_delta_product_library,
                                        gated_delta_rule_chunked, gated_delta_rule_library, l2norm)
from statemix.mixers.mamba2 import ssd_chunked, ssd_library

SHAPES = {"mad": dict(B=128, T=256), "long": dict(B=8, T=4096)}
KERNELS = ("ssd", "gdn", "dproduct", "gdn-guard-lifted")


def bench_ms(fn):
    from triton.testing import do_bench

    return do_bench(fn, warmup=10, rep=50)


def copy_gbps(nbytes):
    src = torch.empty(max(nbytes // 4, 1 << 20), device="cuda").normal_()
    dst = torch.empty_like(src)
    return 2 * 4 * src.numel() / bench_ms(lambda: dst.copy_(src)) / 1e6


def ssd_inputs(B, T, H=16, P=64, S=64):
    g = torch.Generator(device="cuda").manual_seed(0)
    return dict(x=torch.randn(B, T, H, P, device="cuda", generator=g),
                dt=0.1 * torch.rand(B, T, H, device="cuda", generator=g),
                A=-torch.rand(H, device="cuda", generator=g) * 4,
                B=torch.randn(B, T, 1, S, device="cuda", generator=g),
                C=torch.randn(B, T, 1, S, device="cuda", generator=g),
                D=torch.randn(H, device="cuda", generator=g))


def delta_inputs(B, T, n_h, H=4, K=64):
    g = torch.Generator(device="cuda").manual_seed(0)
    return dict(q=l2norm(torch.randn(B, T, H, K, device="cuda", generator=g)),
                k=l2norm(torch.randn(B, T * n_h, H, K, device="cuda", generator=g)),
                v=torch.randn(B, T * n_h, H, K, device="cuda", generator=g),
                g=torch.nn.functional.logsigmoid(torch.randn(B, T, H, device="cuda", generator=g) + 4),
                beta=2 * torch.rand(B, T * n_h, H, device="cuda", generator=g))


def run_pair(kernel, shape, inputs, lib_fn, torch_fn, dtype, grad_keys):
    """Errors and timings of one (library, PyTorch) pair on identical inputs."""
    ref_in = {k: v.clone().requires_grad_(k in grad_keys) for k, v in inputs.items()}
    lib_in = {k: (v.to(dtype) if k in grad_keys and k != "g" else v).clone().requires_grad_(k in grad_keys)
              for k, v in inputs.items()}
    y_ref, s_ref = torch_fn(**ref_in)
    row = dict(kernel=kernel, shape=shape, dtype=str(dtype).replace("torch.", ""))
    try:
        y_lib, s_lib = lib_fn(**lib_in)
    except Exception as err:  # a library that fails to run is a result to record
        row["forward"] = f"raises {type(err).__name__}: {str(err)[:160]}"
        return row
    row["y_err"] = (y_lib.float() - y_ref.float()).abs().max().item()
    row["state_err"] = (s_lib.float() - s_ref.float()).abs().max().item()
    row["y_scale"] = y_ref.abs().max().item()
    dy = torch.randn_like(y_ref)
    torch.autograd.backward(y_ref, dy)
    try:
        torch.autograd.backward(y_lib, dy.to(y_lib.dtype))
        row["grad_err"] = max((lib_in[k].grad.float() - ref_in[k].grad.float()).abs().max().item() / (
            ref_in[k].grad.abs().max().item() + 1e-12) for k in grad_keys)
        row["backward"] = "ok"
    except Exception as err:
        row["backward"] = f"raises {type(err).__name__}: {str(err)[:160]}"
    nbytes = sum(v.numel() * v.element_size() for v in lib_in.values()) + y_lib.numel() * y_lib.element_size()
    plain = {k: v.detach() for k, v in lib_in.items()}
    ref_plain = {k: v.detach() for k, v in ref_in.items()}
    with torch.no_grad():
        row["lib_fwd_ms"] = bench_ms(lambda: lib_fn(**plain))
        row["torch_fwd_ms"] = bench_ms(lambda: torch_fn(**ref_plain))
    row["fwd_speedup"] = row["torch_fwd_ms"] / row["lib_fwd_ms"]
    row["lib_fwd_copy_share"] = nbytes / row["lib_fwd_ms"] / 1e6 / copy_gbps(nbytes)

    def fwd_bwd(fn, tensors):
        y, _ = fn(**tensors)
        torch.autograd.grad(y, [tensors[k] for k in grad_keys], dy.to(y.dtype))

    row["torch_fwdbwd_ms"] = bench_ms(lambda: fwd_bwd(torch_fn, ref_in))
    if row["backward"] == "ok":
        row["lib_fwdbwd_ms"] = bench_ms(lambda: fwd_bwd(lib_fn, lib_in))
    return row


def bypass_fla_guard():
    """fla refuses its gated backward on Hopper with triton < 3.7.1; lift the guard to see what it computes."""
    import fla.ops.common.chunk_o as chunk_o

    chunk_o.TRITON_ABOVE_3_7_1 = True


def write(rows, out):
    """Write the table so far (atomically), so that an interrupted run still leaves its finished rows."""
    df = pd.DataFrame(rows)
    hardware = f"{torch.cuda.get_device_name(0)}, torch {torch.__version__}, " \
               f"triton {__import__('triton').__version__}, python {platform.python_version()}"
    os.makedirs(out, exist_ok=True)
    atomic_write_text(os.path.join(out, "bench_baseline_kernels.csv"), df.to_csv(index=False))
    atomic_write_text(os.path.join(out, "bench_baseline_kernels.md"),
                      f"# Baseline library kernels vs PyTorch\n\nHardware: {hardware}\n\n"
                      f"Shapes: {SHAPES}; SSD H=16 P=64 S=64; delta rule H=4 K=V=64.\n"
                      f"Errors: max abs (y, state); grad_err is max over inputs of max abs error / max |grad|.\n\n"
                      + df.to_markdown(index=False, floatfmt=".3g") + "\n")
    print(hardware)
    print(df.to_string(), flush=True)


def main():
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--shapes", nargs="+", default=list(SHAPES), choices=list(SHAPES))
    p.add_argument("--kernels", nargs="+", default=list(KERNELS), choices=list(KERNELS))
    p.add_argument("--out", default="reports/benchmarks")
    args = p.parse_args()
    rows = []
    gdn_keys = ("q", "k", "v", "g", "beta")
    for shape in args.shapes:
        B, T = SHAPES[shape]["B"], SHAPES[shape]["T"]
        if "ssd" in args.kernels:
            rows.append(run_pair("mamba-ssm SSD", shape, ssd_inputs(B, T), ssd_library, ssd_chunked,
                                 torch.float32, ("x", "dt", "A", "B", "C")))
            write(rows, args.out)
        for dtype in (torch.float32, torch.bfloat16) if "gdn" in args.kernels else ():
            rows.append(run_pair("fla gated delta rule", shape, delta_inputs(B, T, 1), gated_delta_rule_library,
                                 gated_delta_rule_chunked, dtype, gdn_keys))
            write(rows, args.out)
        if "dproduct" in args.kernels:
            rows.append(run_pair("fla gated delta product n_h=2", shape, delta_inputs(B, T, 2),
                                 gated_delta_product_library, gated_delta_product_chunked, torch.bfloat16, gdn_keys))
            write(rows, args.out)
    if "gdn-guard-lifted" not in args.kernels:
        return
    bypass_fla_guard()
    B, T = SHAPES["mad"]["B"], SHAPES["mad"]["T"]
    for dtype in (torch.float32, torch.bfloat16):
        rows.append(run_pair("fla gated delta rule, guard lifted", "mad", delta_inputs(B, T, 1),
                             gated_delta_rule_library, gated_delta_rule_chunked, dtype, gdn_keys))
        write(rows, args.out)


if __name__ == "__main__":
    main()

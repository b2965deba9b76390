"""Source of the pair-scan kernels, generated per (op, M): the M²+M affine-map operands are
unrolled into named [TT, BN] tensors, which `tl.associative_scan` needs as a flat tuple.

`kernel_source(kind, M, joint)` returns the Python source of `fwd` and `bwd` (math: README.md,
"Pair scans"); `pairscan.py` compiles it once per (kind, M, joint) and registers it in
`linecache`, so Triton's `inspect.getsource` finds it.

A row's K = M+1 logits are contiguous. `joint=False` loads them as an M-lane tile plus a one-lane
load of the input gate, and stores their gradients likewise (2 load and 2 store instructions per
row); `joint=True` loads all K with one `[TT, BN, MP]` load, MP = pow2(M+1) lanes, takes the input
gate out in registers, and stores the K gradients with one store. The H200 profile found the
split kernels bound by L1 instructions (bench_scan_notes.md); the joint ones halve them on the
logits at the price of wider tiles (MP doubles for M = 2, 4).
"""


def _names(M):
    A = [f"A{i}_{j}" for i in range(M) for j in range(M)]
    b = [f"b{i}" for i in range(M)]
    return A, b


def combine_source(M):
    """`combine(left…, right…)`: apply left then right, `(A_r A_l, A_r b_l + b_r)`."""
    A, b = _names(M)
    left = [n + "l" for n in A + b]
    right = [n + "r" for n in A + b]
    lines = ["@triton.jit", f"def combine({', '.join(left + right)}):"]
    outs = []
    for i in range(M):
        for j in range(M):
            terms = " + ".join(f"A{i}_{k}r * A{k}_{j}l" for k in range(M))
            lines.append(f"    C{i}_{j} = {terms}")
            outs.append(f"C{i}_{j}")
    for i in range(M):
        terms = " + ".join(f"A{i}_{k}r * b{k}l" for k in range(M))
        lines.append(f"    d{i} = {terms} + b{i}r")
        outs.append(f"d{i}")
    lines.append(f"    return {', '.join(outs)}")
    return "\n".join(lines) + "\n"


HEAD = '''
import triton
import triton.language as tl
from statemix.ops.triton.common import norm_bwd, norm_fwd


@triton.jit
def _col(a, p, j):
    return tl.sum(tl.where(p[None, None, :] == j, a, 0.0), axis=2)


@triton.jit
def _last(x, tt, TT: tl.constexpr):
    return tl.sum(tl.where(tt[:, None] == TT - 1, x, 0.0), axis=0)
'''

SIG = '''
@triton.jit
def {name}({args}, T, N, NORM: tl.constexpr, TT: tl.constexpr, BN: tl.constexpr, MP: tl.constexpr):
    M = {M}
    K = {M} + 1
    b = tl.program_id(1)
    n = tl.program_id(0) * BN + tl.arange(0, BN)
    mn = n < N
    tt = tl.arange(0, TT)
    p = tl.arange(0, MP)
    mp = p < M
    r = b * N + n
'''


def _load_row(x, g, base, mask, joint):
    """Lines loading one row's logits at `base` `[TT, BN]` into `x` (lanes < M) and `g` (`[TT, BN, 1]`)."""
    if joint:
        return [f"    {x} = tl.load(x_ptr + {base}[:, :, None] + p[None, None, :], "
                f"mask={mask}[:, :, None] & (p < K)[None, None, :], other=0.0).to(tl.float32)",
                f"    {g} = tl.sum(tl.where(p[None, None, :] == M, {x}, 0.0), axis=2, keep_dims=True)"]
    return [f"    {x} = tl.load(x_ptr + {base}[:, :, None] + p[None, None, :], "
            f"mask={mask}[:, :, None] & mp[None, None, :], other=0.0).to(tl.float32)",
            f"    {g} = tl.load(x_ptr + ({base} + M)[:, :, None], mask={mask}[:, :, None], other=0.0).to(tl.float32)"]


def _store_row(dx, dg, base, mask2, joint):
    """Lines storing one row's logit gradients: `dx` on lanes < M, `dg` at lane M."""
    if joint:
        return [f"    tl.store(dx_ptr + {base}[:, :, None] + p[None, None, :], "
                f"tl.where(p[None, None, :] == M, {dg}, {dx}).to(dx_ptr.dtype.element_ty), "
                f"mask={mask2}[:, :, None] & (p < K)[None, None, :])"]
    return [f"    tl.store(dx_ptr + {base}[:, :, None] + p[None, None, :], {dx}.to(dx_ptr.dtype.element_ty), "
            f"mask={mask2}[:, :, None] & mp[None, None, :])",
            f"    tl.store(dx_ptr + ({base} + M)[:, :, None], {dg}.to(dx_ptr.dtype.element_ty), mask={mask2}[:, :, None])"]


def _leaf_bd(M, prefix, mask, row, transpose, joint):
    """Lines normalising BD-LRU rows at `row` into a{i}/g0{i} tiles and the matrix entries."""
    out = []
    for i in range(M):
        out += [f"    bi = {row} * (M * K) + {i} * K", *_load_row(f"{prefix}x{i}", f"{prefix}g{i}", "bi", mask, joint)]
        out += [
            f"    {prefix}a{i}, {prefix}a0{i} = norm_fwd({prefix}x{i}, {prefix}g{i}, "
            f"{mask}[:, :, None] & mp[None, None, :], NORM, 2)",
        ]
        for j in range(M):
            dst = f"A{j}_{i}" if transpose else f"A{i}_{j}"
            eye = "1.0" if i == j else "0.0"
            out.append(f"    {dst} = tl.where({mask}, _col({prefix}a{i}, p, {j}), {eye})")
    return out


def _leaf_h(M, prefix, mask, row, transpose, joint):
    """Lines normalising H-LRU rows into a/a0 tiles and the companion matrix entries."""
    out = [
        f"    hb = {row} * K",
        *_load_row(f"{prefix}x", f"{prefix}g", "hb", mask, joint),
        f"    {prefix}a, {prefix}a0 = norm_fwd({prefix}x, {prefix}g, {mask}[:, :, None] & mp[None, None, :], NORM, 2)",
    ]
    for i in range(M):
        for j in range(M):
            dst = f"A{j}_{i}" if transpose else f"A{i}_{j}"
            eye = "1.0" if i == j else "0.0"
            if i == 0:
                out.append(f"    {dst} = tl.where({mask}, _col({prefix}a, p, {j}), {eye})")
            else:
                sub = "1.0" if j == i - 1 else "0.0"
                out.append(f"    {dst} = tl.where({mask}, {sub}, {eye}) + tl.zeros((TT, BN), tl.float32)")
    return out


def _scan_and_apply(M, state):
    """Scan the operands, then `y_i = Σ_j P_ij state_j + c_i` for every tile step."""
    A, b = _names(M)
    ops = ", ".join(A + b)
    out = [f"    {ops} = tl.associative_scan(({ops}), 0, combine)"]
    for i in range(M):
        terms = " + ".join(f"A{i}_{j} * {state}{j}[None, :]" for j in range(M))
        out.append(f"    y{i} = {terms} + b{i}")
    return out


def _offsets(kind, M, bd, h):
    """Lines setting the maps' offsets: `bd(i)` for each BD-LRU row; H-LRU: `h` for b0, zeros below."""
    if kind == "bdlru":
        return [line for i in range(M) for line in bd(i)]
    return h + [f"    b{i} = tl.zeros((TT, BN), tl.float32)" for i in range(1, M)]


def fwd_source(kind, M, joint=False):
    leaf = _leaf_bd if kind == "bdlru" else _leaf_h
    L = [SIG.format(name="fwd", args="x_ptr, v_ptr, h_ptr, h0_ptr, fin_ptr", M=M)]
    L += [f"    s{i} = tl.load(h0_ptr + r * M + {i}, mask=mn, other=0.0)" for i in range(M)]
    L += ["    for t0 in range(0, T, TT):",
          "        t = t0 + tt",
          "        m2 = (t < T)[:, None] & mn[None, :]",
          "        row = (b.to(tl.int64) * T + t)[:, None] * N + n[None, :]"]
    body = leaf(M, "", "m2", "row", False, joint)
    body += _offsets(kind, M, lambda i: [
        f"    v{i} = tl.load(v_ptr + row * M + {i}, mask=m2, other=0.0).to(tl.float32)",
        f"    b{i} = tl.where(m2, tl.sum(a0{i}, axis=2) * v{i}, 0.0)",
    ], ["    v = tl.load(v_ptr + row, mask=m2, other=0.0).to(tl.float32)",
        "    b0 = tl.where(m2, tl.sum(a0, axis=2) * v, 0.0)"])
    body += _scan_and_apply(M, "s")
    if kind == "bdlru":
        body += [f"    tl.store(h_ptr + row * M + {i}, y{i}.to(h_ptr.dtype.element_ty), mask=m2)" for i in range(M)]
    else:
        body.append("    tl.store(h_ptr + row, y0.to(h_ptr.dtype.element_ty), mask=m2)")
    body += [f"    s{i} = _last(y{i}, tt, TT)" for i in range(M)]
    L += ["    " + line for line in body]
    L += [f"    tl.store(fin_ptr + r * M + {i}, s{i}, mask=mn)" for i in range(M)]
    return "\n".join(L) + "\n"


def bwd_source(kind, M, joint=False):
    """Adjoint `λ_t = A_{t+1}ᵀ λ_{t+1} + dh_t` (λ_T = d final, A_T = I) over time-reversed tiles."""
    leaf = _leaf_bd if kind == "bdlru" else _leaf_h
    args = "x_ptr, v_ptr, h_ptr, h0_ptr, dh_ptr, dfin_ptr, dx_ptr, dv_ptr, dh0_ptr"
    L = [SIG.format(name="bwd", args=args, M=M)]
    L += [f"    s{i} = tl.load(dfin_ptr + r * M + {i}, mask=mn, other=0.0)" for i in range(M)]
    L += ["    for j0 in range(0, T, TT):",
          "        t = T - 1 - j0 - tt",
          "        m2 = (t >= 0)[:, None] & mn[None, :]",
          "        mnext = m2 & (t + 1 < T)[:, None]",
          "        row = (b.to(tl.int64) * T + t)[:, None] * N + n[None, :]",
          "        m3 = m2[:, :, None] & mp[None, None, :]"]
    body = leaf(M, "n", "mnext", "(row + N)", True, joint)
    body += _offsets(kind, M, lambda i: [f"    b{i} = tl.load(dh_ptr + row * M + {i}, mask=m2, other=0.0).to(tl.float32)"],
                     ["    b0 = tl.load(dh_ptr + row, mask=m2, other=0.0).to(tl.float32)"])
    body += _scan_and_apply(M, "s")
    body += leaf(M, "", "m2", "row", False, joint)
    t2 = "t[:, None, None]"
    if kind == "bdlru":
        body += [
            f"    hp = tl.load(h_ptr + ((row - N) * M)[:, :, None] + p[None, None, :], mask=m3 & ({t2} > 0), "
            "other=0.0).to(tl.float32)",
            f"    hp += tl.load(h0_ptr + (r * M)[None, :, None] + p[None, None, :], mask=m3 & ({t2} == 0), other=0.0)",
        ]
        for i in range(M):
            body += [
                f"    v{i} = tl.load(v_ptr + row * M + {i}, mask=m2, other=0.0).to(tl.float32)",
                f"    dx{i}, dg{i} = norm_bwd(x{i}, g{i}, a{i}, a0{i}, y{i}[:, :, None] * hp, (y{i} * v{i})[:, :, None], "
                "m3, NORM, 2)",
                f"    bi = row * (M * K) + {i} * K",
                *_store_row(f"dx{i}", f"dg{i}", "bi", "m2", joint),
                f"    tl.store(dv_ptr + row * M + {i}, (y{i} * tl.sum(a0{i}, axis=2)).to(dv_ptr.dtype.element_ty), "
                "mask=m2)",
            ]
    else:
        body += [
            "    tau = t[:, None, None] - 1 - p[None, None, :]",
            "    lag = tl.load(h_ptr + (b.to(tl.int64) * T + tau) * N + n[None, :, None], mask=m3 & (tau >= 0), "
            "other=0.0).to(tl.float32)",
            "    lag += tl.load(h0_ptr + (r * M)[None, :, None] + (-tau - 1), mask=m3 & (tau < 0), other=0.0)",
            "    v = tl.load(v_ptr + row, mask=m2, other=0.0).to(tl.float32)",
            "    dx, dg = norm_bwd(x, g, a, a0, y0[:, :, None] * lag, (y0 * v)[:, :, None], m3, NORM, 2)",
            "    hb = row * K",
            *_store_row("dx", "dg", "hb", "m2", joint),
            "    tl.store(dv_ptr + row, (y0 * tl.sum(a0, axis=2)).to(dv_ptr.dtype.element_ty), mask=m2)",
        ]
    body.append("    if j0 + TT >= T:")
    body.append("        first = (t == 0)[:, None]")
    for j in range(M):
        # (A_0ᵀ λ_0)_j: the adjoint of the initial state, with A_0 the leaf of step 0
        if kind == "bdlru":
            terms = " + ".join(f"_col(a{i}, p, {j}) * y{i}" for i in range(M))
        else:
            terms = f"_col(a, p, {j}) * y0" + (f" + y{j + 1}" if j + 1 < M else "")
        body.append(f"        tl.store(dh0_ptr + r * M + {j}, tl.sum(tl.where(first, {terms}, 0.0), axis=0), mask=mn)")
    body += [f"    s{i} = _last(y{i}, tt, TT)" for i in range(M)]
    L += ["    " + line for line in body]
    return "\n".join(L) + "\n"


def kernel_source(kind, M, joint=False):
    return HEAD + "\n\n" + combine_source(M) + "\n" + fwd_source(kind, M, joint) + "\n" + bwd_source(kind, M, joint)

"""The TTT recurrence of both rules as a delta rule, in PyTorch (DESIGN.md §2.2, §2.3, §2.3a).

Both TTT rules update a per-head state W (Dh x Dh) once per token:

    W_t = W_{t-1} - beta_t (W_{t-1} k_t - v_t) k_tᵀ
    o_t = W_{t-1} q_t   (`reconstruct`: read before the update; q = k = v = f̂, beta = inner_lr)
    o_t = W_t q_t       (`delta`: read after the update)

Written with the state S = Wᵀ and tokens as rows (o_t = q_t S), a chunk of C tokens
(rows of K, V, Q, one beta per token) advances in one step of small matrix products
(Yang et al. 2024, "Parallelizing Linear Transformers with the Delta Rule over Sequence Length"):

    u_t = beta_t (v_t - k_t S_{t-1})  and  S_t = S_0 + sum_{i<=t} k_iᵀ u_i   give
    (I + tril(diag(beta) K Kᵀ, -1)) U' = diag(beta) (V - K S_0), so with
    U = L⁻¹ diag(beta) V,  Wk = L⁻¹ diag(beta) K   (L = I + tril(diag(beta) K Kᵀ, -1)):
    U'  = U - Wk S_0
    O   = Q S_0 + tril(Q Kᵀ) U'          (tril(., -1) when reading before the update)
    S_C = S_0 + Kᵀ U'

Only the last three lines depend on the state, so L, U, Wk and Q Kᵀ are computed for every
chunk of the sequence at once (batched), and a Python loop of T/C steps carries S. Autograd
differentiates through all of it (BPTT through the recurrence).

`delta_rule_loop` is the token-by-token definition, used by the tests only: it is ~6x slower
and no fair baseline (issue 10).
"""
import torch
import torch.nn.functional as F


def delta_rule_loop(q, k, v, beta, read_after_update, state=None):
    """Reference: one rank-1 update per token.

    q, k, v: [B, H, T, Dh]; beta: [B, H, T]; state: S = Wᵀ [B, H, Dh, Dh] or None (zeros).
    Returns (o [B, H, T, Dh], final S).
    """
    B, H, T, Dh = k.shape
    S = k.new_zeros(B, H, Dh, Dh) if state is None else state
    outs = []
    for t in range(T):
        kt, vt, qt = k[:, :, t], v[:, :, t], q[:, :, t]
        if not read_after_update:
            outs.append(torch.einsum("bhi,bhij->bhj", qt, S))
        # u = beta (v - k S);  S += kᵀ u
        u = beta[:, :, t, None] * (vt - torch.einsum("bhi,bhij->bhj", kt, S))
        S = S + kt[..., :, None] * u[..., None, :]
        if read_after_update:
            outs.append(torch.einsum("bhi,bhij->bhj", qt, S))
    return torch.stack(outs, dim=2), S


def delta_rule_chunked(q, k, v, beta, chunk, read_after_update, state=None):
    """The chunked form above: the same result as delta_rule_loop, T/C sequential steps.

    q, k, v: [B, H, T, Dh]; beta: [B, H, T]; chunk: C (any T works: the sequence is padded
    with k = v = q = 0, beta = 0 tokens, which leave the state unchanged and are cut off).
    Runs in the dtype of its inputs; callers under bf16 autocast pass fp32 (the state is a
    long sum of rank-1 updates and a triangular solve, both poor in bf16).
    """
    B, H, T, Dh = k.shape
    C = int(chunk)
    pad = (-T) % C
    if pad:
        q, k, v = (F.pad(x, (0, 0, 0, pad)) for x in (q, k, v))
        beta = F.pad(beta, (0, pad))
    N = (T + pad) // C
    q, k, v = (x.reshape(B, H, N, C, Dh) for x in (q, k, v))
    beta = beta.reshape(B, H, N, C, 1)

    # Per chunk, independent of the state: L, U = L⁻¹ βV, Wk = L⁻¹ βK (one solve for both).
    kb = k * beta
    strict_lower = torch.tril(kb @ k.transpose(-1, -2), diagonal=-1)  # tril(diag(β) K Kᵀ, -1)
    rhs = torch.cat([v * beta, kb], dim=-1)
    # unitriangular=True: the solver takes the diagonal as ones, so L = I + strict_lower.
    sol = torch.linalg.solve_triangular(strict_lower, rhs, upper=False, unitriangular=True)
    U, Wk = sol[..., :Dh], sol[..., Dh:]
    qk = torch.tril(q @ k.transpose(-1, -2), diagonal=0 if read_after_update else -1)

    S = q.new_zeros(B, H, Dh, Dh) if state is None else state
    outs = []
    for n in range(N):  # the only sequential part: T/C steps
        u = U[:, :, n] - Wk[:, :, n] @ S
        outs.append(q[:, :, n] @ S + qk[:, :, n] @ u)
        S = S + k[:, :, n].transpose(-1, -2) @ u
    o = torch.stack(outs, dim=2).reshape(B, H, N * C, Dh)
    return o[:, :, :T], S

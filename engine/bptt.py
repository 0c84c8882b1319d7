"""The scratch cells' fast path: a whole sequence forward and its hand-written BPTT backward.

The equations are the ones in ``cells.py``; only the arithmetic is arranged the way a fast
implementation arranges it:

* the input projections of all time steps come from one matrix product, ``x W + b`` [batch, time, G];
* each time step makes one recurrent product for all its gates, ``h_{t-1} U`` with U packed
  [hidden, G], written in place into that step's slice of the projections, then activated in place;
* the whole sequence is one autograd node (``Sequence``), so no per-step graph is built; its backward
  runs BPTT by hand, with every derivative that does not depend on the recurrence (sigmoid', tanh',
  the gate products) computed for all time steps at once before the loop, leaving 2 (SRN), 6 (LSTM)
  or 4-6 (GRU) small operations per step;
* the weight gradients are one matrix product each over all time steps after the loop (for the LSTM
  one product gives W and U together).

The weights arrive packed as the scratch cells store them: ``W`` [G, input], ``U`` [G, hidden],
``b`` [G], one block of rows per gate (the layout of PyTorch's ``weight_ih_l0``), so each textbook
tensor is a view (``W_i`` is rows of ``W``, transposed). Inside, the LSTM's gates are packed in the
order (o, i, f, c~) so that the three sigmoid gates are adjacent; the GRU's in the order (r, z, h~).
``PACKED`` maps the textbook order to these slots. The LSTM's loops (at the end of this module) run
their element-wise work in NumPy on the same memory.
"""

from __future__ import annotations

import numpy as np
import torch

# For each packed slot, the gate it holds, by its index in the textbook order (cells.SCRATCH_GATES).
PACKED = {"srn": (0,), "lstm": (2, 0, 1, 3), "gru": (0, 1, 2)}


def _through_z(out, dh, z_t, go_t, t: int, need_h0: bool) -> bool:
    """The GRU's direct path, h_t = z h_{t-1} + ...: out = go_{t-1} + dh_t z_t (dh_0 z_0 at the first
    step). False when the first step is reached and dL/dh_0 is not needed."""
    if t:
        torch.addcmul(go_t[t - 1], dh, z_t[t], out=out)
    elif need_h0:
        torch.mul(dh, z_t[0], out=out)
    else:
        return False
    return True

class Sequence(torch.autograd.Function):
    """outputs [batch, time, hidden], h_T, c_T = Sequence.apply(cell, reset_after, x, h0, c0, W, U, b)

    x [batch, time, input]; h0, c0 [batch, hidden] (c0 None except for the LSTM); W [G, input],
    U [G, hidden], b [G] packed in the ``PACKED`` order, G = gates * hidden.
    """

    @staticmethod
    def forward(ctx, cell, reset_after, x, h0, c0, W_packed, U_packed, b):
        ctx.cell, ctx.reset_after, ctx.hidden = cell, reset_after, h0.shape[-1]
        if cell == "lstm":
            return _lstm_forward(ctx, x, h0, c0, W_packed, U_packed, b)
        batch, steps, inputs = x.shape
        hidden = h0.shape[-1]
        G = b.shape[0]
        W, U = W_packed.t(), U_packed.t()  # [input, G], [hidden, G]: x W and h U as in the equations
        # The input projections of all time steps in one product; each step's gates are computed in
        # place in its slice: pre [batch, time, G] ends holding the activated gates.
        pre = torch.addmm(b, x.reshape(batch * steps, inputs), W).view(batch, steps, G)
        out = x.new_empty(batch, steps, hidden)
        pre_t, out_t = pre.unbind(1), out.unbind(1)
        saved = {}
        h = h0
        if cell == "srn":
            for t in range(steps):
                pre_t[t].addmm_(h, U)
                h = torch.tanh(pre_t[t], out=out_t[t])
        else:  # GRU
            H = hidden
            U_rz, U_h = U[:, : 2 * H], U[:, 2 * H:]
            rz_t = pre[:, :, : 2 * H].unbind(1)
            r_t, z_t, n_t = (pre[:, :, k * H:(k + 1) * H].unbind(1) for k in range(3))
            # reset_after: hn = h U_h (PyTorch's GRU), else rh = r * h (d2l's GRU)
            hu = x.new_empty(batch, steps, hidden)
            hu_t = hu.unbind(1)
            d = x.new_empty(batch, steps, hidden)  # h_{t-1} - h~_t
            d_t = d.unbind(1)
            for t in range(steps):
                rz_t[t].addmm_(h, U_rz)
                rz_t[t].sigmoid_()
                if reset_after:
                    torch.mm(h, U_h, out=hu_t[t])
                    n_t[t].addcmul_(r_t[t], hu_t[t])  # x W_h + b_h + r * (h U_h)
                else:
                    torch.mul(r_t[t], h, out=hu_t[t])
                    n_t[t].addmm_(hu_t[t], U_h)  # x W_h + b_h + (r * h) U_h
                n_t[t].tanh_()
                torch.sub(h, n_t[t], out=d_t[t])
                h = torch.addcmul(n_t[t], z_t[t], d_t[t], out=out_t[t])  # z * h + (1 - z) * h~
            saved.update(hu=hu, d=d)
        ctx.saved = saved
        ctx.pre = pre
        ctx.save_for_backward(x, h0, out, W_packed, U_packed)
        return out, out[:, -1].clone(), None

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad_out, grad_hT, grad_cT):
        if ctx.cell == "lstm":
            return _lstm_backward(ctx, grad_out, grad_hT, grad_cT)
        x, h0, out, W_packed, U_packed = ctx.saved_tensors
        cell, hidden = ctx.cell, ctx.hidden
        pre = ctx.pre
        batch, steps, inputs = x.shape
        H, G = hidden, pre.shape[-1]
        need_x, need_h0 = ctx.needs_input_grad[2], ctx.needs_input_grad[3]
        # h_{t-1} for every step: [batch, time, hidden]
        h_prev = torch.cat([h0.unsqueeze(1), out[:, :-1]], dim=1)
        dpre = x.new_empty(batch, steps, G)  # gradient of each step's pre-activations
        dpre_t = dpre.unbind(1)
        go_t = grad_out.unbind(1)
        dh = grad_out[:, -1] + grad_hT  # [batch, hidden], dL/dh_t of the step being processed
        dh1 = dh.unsqueeze(1)  # the same memory seen as [batch, 1, hidden]
        U_T = U_packed  # (h U)' = dpre U^T, and U^T is the packed matrix
        dh0 = None
        if cell == "srn":
            D_t = (1 - out * out).unbind(1)  # tanh'
            for t in reversed(range(steps)):
                torch.mul(dh, D_t[t], out=dpre_t[t])
                if t:
                    torch.addmm(go_t[t - 1], dpre_t[t], U_T, out=dh)
                elif need_h0:
                    dh0 = dpre_t[0] @ U_T
            dU = dpre.view(-1, G).t() @ h_prev.reshape(-1, H)
        else:  # GRU
            hu, d = ctx.saved["hu"], ctx.saved["d"]
            r, z, n = (pre[:, :, k * H:(k + 1) * H] for k in range(3))
            Q = (1 - z) * (1 - n * n)  # dpre_h~ = dh * Q
            Zd = d * z * (1 - z)  # dpre_z = dh * Zd
            z_t, r_t = z.unbind(1), r.unbind(1)
            dpre3 = dpre.view(batch, steps, 3, H)
            tmp = torch.empty_like(dh)
            if ctx.reset_after:
                F = torch.stack([Q * hu * r * (1 - r), Zd, Q], dim=2)  # dpre_{r,z,h~} = dh * F
                E = x.new_empty(batch, steps, G)  # [dpre_r, dpre_z, dL/d(h U_h)]
                F2 = torch.stack([F[:, :, 0], Zd, Q * r], dim=2)
                F_t, F2_t = F.unbind(1), F2.unbind(1)
                E_t, E3_t, dpre3_t = E.unbind(1), E.view(batch, steps, 3, H).unbind(1), dpre3.unbind(1)
                for t in reversed(range(steps)):
                    torch.mul(dh1, F_t[t], out=dpre3_t[t])
                    torch.mul(dh1, F2_t[t], out=E3_t[t])
                    if not _through_z(tmp, dh, z_t, go_t, t, need_h0):
                        break
                    torch.addmm(tmp, E_t[t], U_T, out=dh)
                dU = E.view(-1, G).t() @ h_prev.reshape(-1, H)
                dh0 = dh if need_h0 else None
            else:
                U_rz_T, U_h_T = U_packed[: 2 * H], U_packed[2 * H:]
                R = h_prev * r * (1 - r)  # dpre_r = d(r h) * R
                F = torch.stack([Zd, Q], dim=2)  # dpre_{z,h~} = dh * F
                F_t, R_t = F.unbind(1), R.unbind(1)
                dzn_t, dn_t = dpre3[:, :, 1:].unbind(1), dpre[:, :, 2 * H:].unbind(1)
                drz_t, dr_t = dpre[:, :, : 2 * H].unbind(1), dpre[:, :, :H].unbind(1)
                drh = torch.empty_like(dh)
                for t in reversed(range(steps)):
                    torch.mul(dh1, F_t[t], out=dzn_t[t])
                    torch.mm(dn_t[t], U_h_T, out=drh)  # dL/d(r * h)
                    torch.mul(drh, R_t[t], out=dr_t[t])
                    if not _through_z(tmp, dh, z_t, go_t, t, need_h0):
                        break
                    tmp.addcmul_(drh, r_t[t])
                    torch.addmm(tmp, drz_t[t], U_rz_T, out=dh)
                dU = torch.cat([dpre[:, :, : 2 * H].reshape(-1, 2 * H).t() @ h_prev.reshape(-1, H),
                                dpre[:, :, 2 * H:].reshape(-1, H).t() @ hu.reshape(-1, H)])
                dh0 = dh if need_h0 else None
        dpre2 = dpre.view(-1, G)
        dx = (dpre2 @ W_packed).view(batch, steps, inputs) if need_x else None
        dW = dpre2.t() @ x.reshape(-1, inputs)  # [G, input]
        db = dpre2.sum(0)
        return None, None, dx, dh0, None, dW, dU, db


# --- the LSTM --------------------------------------------------------------------
#
# The LSTM has the most element-wise work per step (three sigmoids, two tanh, the cell update), so
# its loops run that work as NumPy ufuncs on views of the same memory: for tensors of this size a
# NumPy call costs a third of a PyTorch call, and NumPy's tanh is vectorised. The matrix products
# stay with PyTorch. Inside, the sequence is time-major and gate-major: the activated gates are
# ``gates`` [time, 4, batch, hidden] (packed order o, i, f, c~), so every gate of every step is one
# contiguous block. One tanh per step activates all four gates: sigmoid(a) = (1 + tanh(a / 2)) / 2,
# with the o, i and f columns of the weights halved for the products.


def _half_sigmoid_columns(like: torch.Tensor, hidden: int) -> torch.Tensor:
    """[4 * hidden]: 0.5 for the o, i, f columns, 1 for c~."""
    scale = like.new_ones(4 * hidden)
    scale[: 3 * hidden] = 0.5
    return scale


def _lstm_forward(ctx, x, h0, c0, W_packed, U_packed, b):
    batch, steps, inputs = x.shape
    H = h0.shape[-1]
    scale = _half_sigmoid_columns(x, H)
    # What the weight gradients multiply dpre by, side by side: [x_t | h_{t-1}], rows (t, b), so that
    # dW and dU come from one product. The h_{t-1} columns are filled after the loop.
    xh = x.new_empty(steps, batch, inputs + H)
    xh[:, :, :inputs] = x.transpose(0, 1)
    xh[0, :, inputs:] = h0
    x_tm = xh.view(steps * batch, -1)[:, :inputs]  # rows (t, b)
    # The input projections of all time steps in one product, then gate-major within each step.
    pre = torch.addmm(b * scale, x_tm, W_packed.t() * scale)  # [time * batch, 4H]
    gates = pre.view(steps, batch, 4, H).transpose(1, 2).contiguous()  # [time, 4, batch, hidden]
    U_half = U_packed.t() * scale  # [hidden, 4H]
    out = x.new_empty(steps, batch, H)  # h_1 .. h_T
    cs = x.new_empty(steps + 1, batch, H)  # c_0 .. c_T
    cs[0] = c0
    tc = x.new_empty(steps, batch, H)  # tanh(c_t)
    hU = x.new_empty(batch, 4 * H)
    g_np, c_np, tc_np, out_np = gates.numpy(), cs.numpy(), tc.numpy(), out.numpy()
    hU_np = hU.numpy().reshape(batch, 4, H).transpose(1, 0, 2)  # h U seen gate-major
    tmp = np.empty((batch, H), dtype=g_np.dtype)
    out_t = out.unbind(0)
    mul, add, tanh = np.multiply, np.add, np.tanh
    h = h0.detach()
    for t in range(steps):
        torch.mm(h, U_half, out=hU)  # one recurrent product for all gates
        step = g_np[t]
        add(step, hU_np, out=step)
        tanh(step, out=step)
        sig = step[:3]
        mul(sig, 0.5, out=sig)
        add(sig, 0.5, out=sig)  # o, i, f = sigmoid
        o, i, f, g = step
        c = c_np[t + 1]
        mul(f, c_np[t], out=c)  # c_t = f * c_{t-1} + i * c~
        mul(i, g, out=tmp)
        add(c, tmp, out=c)
        tanh(c, out=tc_np[t])
        mul(o, tc_np[t], out=out_np[t])  # h_t = o * tanh(c_t)
        h = out_t[t]
    xh[1:, :, inputs:] = out[:-1]
    ctx.save_for_backward(xh, W_packed, U_packed, gates, cs, tc)
    ctx.shape = (batch, steps, inputs)
    return out.transpose(0, 1), out[-1].clone(), cs[-1].clone()


def _lstm_backward(ctx, grad_out, grad_hT, grad_cT):
    xh, W_packed, U_packed, gates, cs, tc = ctx.saved_tensors
    batch, steps, inputs = ctx.shape
    H, G = ctx.hidden, 4 * ctx.hidden
    need_x, need_h0, need_c0 = ctx.needs_input_grad[2], ctx.needs_input_grad[3], ctx.needs_input_grad[4]
    # dc_t = carry_t + dh_t K_t, where carry_t = f_{t+1} dc_{t+1} comes from the future; then
    #   [dpre_i, dpre_f, dpre_c~] = dc_t AF_t,  carry_{t-1} = dc_t f_t,  dpre_o = dh_t Bo_t
    # with AF = [c~ i(1-i), c_{t-1} f(1-f), i(1-c~^2)], Bo = tanh(c) o(1-o), K = o(1-tanh(c)^2): factors
    # that do not depend on the recurrence, computed for all steps at once.
    o, i, f, g = gates.unbind(1)  # [time, batch, hidden] each
    AF, buf = gates.new_empty(steps, 3, batch, H), torch.empty_like(tc)
    # x(1 - x) is one addcmul, x - x y y a mul and an addcmul: a pass over memory saved each time
    torch.mul(torch.addcmul(i, i, i, value=-1, out=buf), g, out=AF[:, 0])  # c~ i(1-i)
    torch.mul(torch.addcmul(f, f, f, value=-1, out=buf), cs[:-1], out=AF[:, 1])  # c_{t-1} f(1-f)
    torch.addcmul(i, torch.mul(i, g, out=buf), g, value=-1, out=AF[:, 2])  # i(1-c~^2)
    Bo = torch.mul(torch.addcmul(o, o, o, value=-1, out=buf), tc)  # tanh(c) o(1-o)
    K = torch.addcmul(o, torch.mul(o, tc, out=buf), tc, value=-1, out=buf)  # o(1-tanh(c)^2)
    AF_np, Bo_np, K_np, f_np = AF.numpy(), Bo.numpy(), K.numpy(), f.numpy()
    # state = (carry_t, dh_t) of the step being processed; a step writes dpre_t batch-major (the rows
    # of xh, for the products) and carry_{t-1}, then the recurrent product gives dh_{t-1}.
    state = gates.new_empty(2, batch, H)
    go_t = grad_out.transpose(0, 1).unbind(0)  # [batch, hidden] each
    state[0] = grad_cT
    dh = torch.add(go_t[-1], grad_hT, out=state[1])
    dpre = gates.new_empty(steps, batch, G)  # rows (t, b) as in xh
    dpre_t = dpre.unbind(0)
    state_np, dpre_gm = state.numpy(), dpre.numpy().reshape(steps, batch, 4, H).transpose(0, 2, 1, 3)
    carry, dh_np = state_np
    dc, tmp = np.empty_like(carry), np.empty_like(carry)
    mul, add = np.multiply, np.add
    for t in reversed(range(steps)):
        mul(dh_np, K_np[t], out=tmp)
        add(carry, tmp, out=dc)  # dc_t
        gates_t = dpre_gm[t]  # dpre_t, gate-major view (o, i, f, c~)
        mul(dc, AF_np[t], out=gates_t[1:])
        mul(dh_np, Bo_np[t], out=gates_t[0])
        mul(dc, f_np[t], out=carry)  # carry_{t-1}
        if t:
            torch.addmm(go_t[t - 1], dpre_t[t], U_packed, out=dh)
        elif need_h0:
            torch.mm(dpre_t[0], U_packed, out=dh)
    dpre = dpre.view(steps * batch, G)
    # [input + hidden, G]: dW^T and dU^T (this orientation of the product is the faster one)
    dWU = xh.view(steps * batch, -1).t() @ dpre
    dW, dU, db = dWU[:inputs].t(), dWU[inputs:].t(), dpre.sum(0)
    dx = (dpre @ W_packed).view(steps, batch, inputs).transpose(0, 1) if need_x else None
    dh0 = state[1].clone() if need_h0 else None
    dc0 = state[0].clone() if need_c0 else None
    return None, None, dx, dh0, dc0, dW, dU, db

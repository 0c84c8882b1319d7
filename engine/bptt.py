"""The scratch cells' fast path: a whole sequence forward and its hand-written BPTT backward.

The equations are the ones in ``cells.py``; only the arithmetic is arranged the way a fast
implementation arranges it:

* the input projections of all time steps come from one matrix product, ``x W + b`` [batch, time, G];
* each time step makes one recurrent product for all its gates, ``h_{t-1} U`` with U packed
  [hidden, G], written in place into that step's slice of the projections, then activated in place;
* the whole sequence is one autograd node (``Sequence``), so no per-step graph is built; its backward
  runs BPTT by hand, with every derivative that does not depend on the recurrence (sigmoid', tanh',
  the gate products) computed for all time steps at once before the loop, leaving 2 (SRN), 5 (LSTM)
  or 4-6 (GRU) small operations per step;
* the weight gradients are one matrix product each over all time steps after the loop.

The weights arrive packed as the scratch cells store them: ``W`` [G, input], ``U`` [G, hidden],
``b`` [G], one block of rows per gate (the layout of PyTorch's ``weight_ih_l0``), so each textbook
tensor is a view (``W_i`` is rows of ``W``, transposed). Inside, the LSTM's gates are packed in the
order (o, i, f, c~) so that i, f and c~, which all take dc_t, are adjacent; the GRU's in the order
(r, z, h~). ``PACKED`` maps the textbook order to these slots.
"""

from __future__ import annotations

import torch

# For each packed slot, the gate it holds, by its index in the textbook order (cells.SCRATCH_GATES).
PACKED = {"srn": (0,), "lstm": (2, 0, 1, 3), "gru": (0, 1, 2)}


class Sequence(torch.autograd.Function):
    """outputs [batch, time, hidden], h_T, c_T = Sequence.apply(cell, reset_after, x, h0, c0, W, U, b)

    x [batch, time, input]; h0, c0 [batch, hidden] (c0 None except for the LSTM); W [G, input],
    U [G, hidden], b [G] packed in the ``PACKED`` order, G = gates * hidden.
    """

    @staticmethod
    def forward(ctx, cell, reset_after, x, h0, c0, W_packed, U_packed, b):
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
            cT = None
        elif cell == "lstm":
            H = hidden
            sig_t = pre[:, :, : 3 * H].unbind(1)  # o, i, f
            cand_t = pre[:, :, 3 * H:].unbind(1)  # c~
            o_t, i_t, f_t = (pre[:, :, k * H:(k + 1) * H].unbind(1) for k in range(3))
            cs = x.new_empty(batch, steps + 1, hidden)  # c_0 .. c_T
            cs[:, 0] = c0
            cs_t = cs.unbind(1)
            tc = x.new_empty(batch, steps, hidden)  # tanh(c_t)
            tc_t = tc.unbind(1)
            for t in range(steps):
                pre_t[t].addmm_(h, U)
                sig_t[t].sigmoid_()
                cand_t[t].tanh_()
                c = torch.mul(f_t[t], cs_t[t], out=cs_t[t + 1])  # c_t = f * c_{t-1} + i * c~
                c.addcmul_(i_t[t], cand_t[t])
                torch.tanh(c, out=tc_t[t])
                h = torch.mul(o_t[t], tc_t[t], out=out_t[t])  # h_t = o * tanh(c_t)
            saved.update(cs=cs, tc=tc)
            cT = cs[:, -1].clone()
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
            cT = None
        ctx.cell, ctx.reset_after, ctx.hidden = cell, reset_after, hidden
        ctx.has_c0 = c0 is not None
        ctx.saved = saved
        ctx.pre = pre
        ctx.save_for_backward(x, h0, out, W_packed, U_packed)
        hT = out[:, -1].clone()
        return out, hT, cT

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad_out, grad_hT, grad_cT):
        x, h0, out, W_packed, U_packed = ctx.saved_tensors
        cell, hidden = ctx.cell, ctx.hidden
        pre = ctx.pre
        batch, steps, inputs = x.shape
        H, G = hidden, pre.shape[-1]
        need_x, need_h0, need_c0 = ctx.needs_input_grad[2], ctx.needs_input_grad[3], ctx.needs_input_grad[4]
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
            dc0 = None
        elif cell == "lstm":
            cs, tc = ctx.saved["cs"], ctx.saved["tc"]
            o, i, f, g = (pre[:, :, k * H:(k + 1) * H] for k in range(4))
            # Everything that does not depend on the recurrence, for all steps at once.
            K = (o * (1 - tc * tc)).unsqueeze(2)  # dc_t += dh_t * K_t
            Bo = tc * o * (1 - o)  # dpre_o = dh_t * Bo_t
            A = x.new_empty(batch, steps, 3, H)  # dpre_{i,f,c~} = dc_t * A_t
            torch.mul(g, i * (1 - i), out=A[:, :, 0])
            torch.mul(cs[:, :-1], f * (1 - f), out=A[:, :, 1])
            torch.mul(i, 1 - g * g, out=A[:, :, 2])
            K_t, Bo_t, A_t = K.unbind(1), Bo.unbind(1), A.unbind(1)
            f_t = pre[:, :, 2 * H:3 * H].unsqueeze(2).unbind(1)
            dpre4 = dpre.view(batch, steps, 4, H)
            dpre_o_t, dpre_ifc_t = dpre4[:, :, 0].unbind(1), dpre4[:, :, 1:].unbind(1)
            dc = grad_cT.unsqueeze(1).clone()  # [batch, 1, hidden]
            for t in reversed(range(steps)):
                dc.addcmul_(dh1, K_t[t])
                torch.mul(dc, A_t[t], out=dpre_ifc_t[t])
                torch.mul(dh, Bo_t[t], out=dpre_o_t[t])
                dc.mul_(f_t[t])  # now dL/dc_{t-1}
                if t:
                    torch.addmm(go_t[t - 1], dpre_t[t], U_T, out=dh)
                elif need_h0:
                    dh0 = dpre_t[0] @ U_T
            dU = dpre.view(-1, G).t() @ h_prev.reshape(-1, H)
            dc0 = dc.squeeze(1) if need_c0 else None
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
                    if t:
                        torch.addcmul(go_t[t - 1], dh, z_t[t], out=tmp)
                    elif need_h0:
                        torch.mul(dh, z_t[0], out=tmp)
                    else:
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
                    if t:
                        torch.addcmul(go_t[t - 1], dh, z_t[t], out=tmp)
                    elif need_h0:
                        torch.mul(dh, z_t[0], out=tmp)
                    else:
                        break
                    tmp.addcmul_(drh, r_t[t])
                    torch.addmm(tmp, drz_t[t], U_rz_T, out=dh)
                dU = torch.cat([dpre[:, :, : 2 * H].reshape(-1, 2 * H).t() @ h_prev.reshape(-1, H),
                                dpre[:, :, 2 * H:].reshape(-1, H).t() @ hu.reshape(-1, H)])
                dh0 = dh if need_h0 else None
            dc0 = None
        dpre2 = dpre.view(-1, G)
        dx = (dpre2 @ W_packed).view(batch, steps, inputs) if need_x else None
        dW = dpre2.t() @ x.reshape(-1, inputs)  # [G, input]
        db = dpre2.sum(0)
        return None, None, dx, dh0, dc0 if ctx.has_c0 else None, dW, dU, db

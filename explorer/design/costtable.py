"""The per-layer cost table of a network (paper Table 1 layout) with totals and units:
`explorer describe` prints it, model cards embed it."""

from __future__ import annotations

from explorer.design.cost import Cost
from explorer.design.spec import SqueezeSpec, spec_id


def _n(x: int) -> str:
    return f"{x:,}"


def format_table(spec: SqueezeSpec, cost: Cost) -> str:
    """The per-layer table (paper Table 1 layout) with totals and units."""
    head = ("layer", "output (CxHxW)", "filter/stride", "s1x1", "e1x1", "e3x3", "bypass",
            "params", "MACs")
    rows = [head]
    for r in cost.layers:
        shape = "x".join(str(v) for v in r.out_shape)
        fire = r.kind == "fire"
        rows.append((r.name, shape, r.kernel, _n(r.s1x1) if fire else "", _n(r.e1x1) if fire else "",
                     _n(r.e3x3) if fire else "", r.shortcut if r.shortcut not in ("", "none") else "",
                     _n(r.params), _n(r.macs)))
    widths = [max(len(row[i]) for row in rows) for i in range(len(head))]
    lines = ["  ".join(c.ljust(w) if i < 3 else c.rjust(w) for i, (c, w) in enumerate(zip(row, widths)))
             for row in rows]
    lines.insert(1, "-" * len(lines[0]))
    lines += ["", f"spec_id      {spec_id(spec)}  (input {spec.input_size}x{spec.input_size}, "
                  f"{spec.num_classes} classes)",
              f"parameters   {_n(cost.params)}",
              f"MACs         {_n(cost.macs)}  ({cost.macs / 1e9:.3f} G multiply-adds, fvcore convention)",
              f"activations  {_n(cost.activations)}  (conv output elements)",
              f"max-pool ops {_n(cost.pool_ops)}  (comparisons; not in MACs)",
              f"bypass adds  {_n(cost.elementwise_ops)}  (elementwise; not in MACs)",
              f"model size   {cost.size_mb:.3f} MB / {cost.size_mib:.3f} MiB fp32, "
              f"{cost.size_mb_int8:.3f} MB / {cost.size_mib_int8:.3f} MiB int8"]
    return "\n".join(lines)

"""How the figures look: one colour-blind-safe colour and marker per method, and labels placed where they collide
with no point and no other label."""

from __future__ import annotations

from matplotlib.axes import Axes
from matplotlib.transforms import Bbox

from pipeline.report import records

# Paul Tol's "muted" qualitative scheme (distinct under the common colour-vision deficiencies), black, and two of
# Okabe and Ito's colours that none of those resemble.
COLOURS = ("#332288", "#CC6677", "#117733", "#DDCC77", "#88CCEE", "#882255", "#44AA99", "#999933", "#AA4499",
           "#000000", "#E69F00", "#0072B2")
MARKERS = ("o", "s", "^", "D", "v", "P", "X", "<", ">", "p", "h", "*", "d")  # 13: coprime with 12 colours


def method_style(series: str, order: list[str]) -> dict:
    """The colour and marker of a series. A method has the same style in every figure: its place in the report's
    fixed method order picks both (the methods up to `ccs` get distinct colours, all 20 distinct pairs). Other
    series of `order` (DCQ variants, ablations) take the colours no method of the figure uses, in name order. A
    series label may end in " (IPC)" or " (model)"; a second model's series keep their method's style, drawn hollow
    and dashed."""
    base, _, model = series.partition(" (")
    model = model.rstrip(")")
    known = records.METHOD_ORDER
    bases = {o.partition(" (")[0] for o in order} | {base}
    if base in known:
        i = known.index(base)
        style = {"color": COLOURS[i % len(COLOURS)], "marker": MARKERS[i % len(MARKERS)]}
    else:
        used = {known.index(b) % len(COLOURS) for b in bases if b in known}
        free = [c for c in range(len(COLOURS)) if c not in used] or list(range(len(COLOURS)))
        rank = sorted(b for b in bases if b not in known).index(base)
        style = {"color": COLOURS[free[rank % len(free)]], "marker": MARKERS[(len(known) + rank) % len(MARKERS)]}
    models = sorted({o.partition(" (")[2].rstrip(")") for o in order} - {"", "IPC"})
    if model and model != "IPC" and models and model != models[-1]:
        style |= {"markerfacecolor": "white", "linestyle": "--"}
    return style


# Offsets (points) tried in turn for a label: right, left, above, below, then further out.
_OFFSETS = ((8, -4), (8, 7), (-8, -4), (-8, 7), (0, 11), (0, -13), (14, -14), (-14, -14), (14, 16), (-14, 16),
            (22, -4), (-22, -4), (0, 22), (0, -24))


def _text_box(ax: Axes, xy: tuple[float, float], text: str, offset: tuple[float, float], fontsize: float,
              renderer) -> Bbox:
    probe = ax.annotate(text, xy, textcoords="offset points", xytext=offset, fontsize=fontsize,
                        ha="left" if offset[0] >= 0 else "right", va="center")
    box = probe.get_window_extent(renderer).expanded(1.08, 1.15)
    probe.remove()
    return box


def _drawn_points(ax: Axes) -> list[tuple[float, float]]:
    """Pixels the axes' lines and error bars pass through: their vertices and points every few pixels between (a
    label must not sit on a line either). Horizontal reference lines across the whole axes are left out."""
    paths = [line.get_transform().transform(line.get_xydata()) for line in ax.lines if len(line.get_xydata())]
    paths = [p for p in paths if not (len(p) == 2 and p[0][1] == p[1][1] and line_spans(ax, p))]
    paths += [coll.get_transform().transform(seg) for coll in ax.collections
              for seg in getattr(coll, "get_segments", list)() if len(seg)]
    out = []
    for path in paths:
        for (x0, y0), (x1, y1) in zip(path[:-1], path[1:]):
            steps = max(1, int(max(abs(x1 - x0), abs(y1 - y0)) // 3))
            out += [(x0 + (x1 - x0) * t / steps, y0 + (y1 - y0) * t / steps) for t in range(steps)]
        out.append(tuple(path[-1]))
    return out


def line_spans(ax: Axes, path) -> bool:
    """True for a horizontal line as wide as the axes (axhline): a reference, not data."""
    left, right = ax.get_window_extent().x0, ax.get_window_extent().x1
    return abs(path[0][0] - left) < 2 and abs(path[1][0] - right) < 2


def place_labels(ax: Axes, labels: list[tuple[float, float, str, str]], fontsize: float = 8) -> None:
    """Annotate each (x, y, text, colour) at the first offset whose text box overlaps no data point of the axes,
    no label placed before it, and stays inside the axes (else the first offset). Call after plotting."""
    fig = ax.figure
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    inside = ax.get_window_extent(renderer)
    radius = 4 * fig.dpi / 72  # about a marker's half width, in pixels
    taken = [Bbox.from_extents(px - radius, py - radius, px + radius, py + radius) for px, py in _drawn_points(ax)]
    for x, y, text, colour in labels:
        chosen = _OFFSETS[0]
        for offset in _OFFSETS:
            box = _text_box(ax, (x, y), text, offset, fontsize, renderer)
            clear = not any(box.overlaps(other) for other in taken)
            if clear and inside.contains(box.x0, box.y0) and inside.contains(box.x1, box.y1):
                chosen = offset
                break
        taken.append(_text_box(ax, (x, y), text, chosen, fontsize, renderer))
        ax.annotate(text, (x, y), textcoords="offset points", xytext=chosen, fontsize=fontsize, color=colour,
                    ha="left" if chosen[0] >= 0 else "right", va="center",
                    bbox={"boxstyle": "round,pad=0.12", "facecolor": "white", "edgecolor": "none", "alpha": 0.8})

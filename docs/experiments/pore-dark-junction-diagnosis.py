"""The diagnosis behind pore-dark-junction.patch (docs/experiments/README.md): for each counted
pore of seed-11 frames (`python THIS preset first last`, PYTHONPATH at the repository) its
readings and what lies there in the generator's truth (layers captured while rendering);
rows pickled to /tmp/widefalse. The classes are drawn by cls() below (from the analysis script)."""
import sys, pickle
import numpy as np, cv2
from dataclasses import replace, fields
import appliance.synthetic.skin_extras as ex
import appliance.synthetic.skin_render as sr
from appliance.synthetic.skin import synthetic_frame
from appliance.skin.preprocess import prepare
from appliance.skin.texture import measure_texture
from appliance.skin import pores as P
from appliance.skin.pore_profile import blue_excess

cap = {}
_tj = P.typical_junction
def _tj2(sample):
    cap["jout"] = float(np.median(sample.outline)) if len(sample.floor) else 1.0
    cap["jout_all"] = np.asarray(sample.outline)
    return _tj(sample)
P.typical_junction = _tj2
def wrap(mod, name):
    orig = getattr(mod, name)
    def f(*a, **k):
        r = orig(*a, **k); cap[name] = r; return r
    setattr(mod, name, f)
for n in ("pigment", "hairs", "dust", "junction_darkening"):
    wrap(ex, n)
wrap(sr, "_specular")

def seg_dist(a, b, p):
    ab = b - a; t = np.clip(((p - a) * ab).sum(1) / np.maximum((ab * ab).sum(1), 1e-9), 0, 1)
    q = a + t[:, None] * ab
    return np.hypot(*(p - q).T)

preset, lo, hi = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
rows = []
truths = {}
for idx in range(lo, hi):
    cap.clear()
    fr = synthetic_frame(11, idx, preset)
    g = fr.geometry
    truths[idx] = fr.truth
    prepared = prepare(fr.image_rgb, fr.um_per_px)
    tex = measure_texture(prepared)
    found = P.measure_candidates(prepared, tex.furrow_sample, colour=False)
    tests = P.pore_tests(found)
    others = np.logical_and.reduce([v for k, v in tests.items() if k != "grey"])
    gi = np.flatnonzero(others)
    blue = np.full(len(found.shape.floor), np.inf)
    ratio = prepared.um_per_work_px / prepared.um_per_fine_px
    blue[gi] = blue_excess(prepared.rgb_work, found.centres_work_px[gi], found.shape.radius_px[gi] / ratio)
    found = replace(found, blue=blue)
    tests["grey"] = blue <= P.RULE.max_blue_excess
    chosen = P.choose_pores(found, P.RULE, tests)
    nores = P.pore_tests(found, replace(P.RULE, outline_max_ratio=-1.0)); nores["grey"] = tests["grey"]
    nores_pass = np.logical_and.reduce(list(nores.values()))
    diam = P.own_diameters_um(found)
    scale = prepared.frame_px_per_work_px
    cen = (found.centres_work_px + 0.5) * scale - 0.5
    tc, tr = g.pore_centres_px, g.pore_radii_px
    reach = np.maximum(tr, 40.0 / fr.um_per_px)
    deg = np.bincount(g.edges.ravel(), minlength=len(g.vertices_px))
    junc = g.vertices_px[deg >= 3]; bends = g.vertices_px[deg == 2]; ends1 = g.vertices_px[deg == 1]
    a, b = g.vertices_px[g.edges[:, 0]], g.vertices_px[g.edges[:, 1]]
    edepth = g.edge_depth if g.edge_depth is not None else np.ones(len(g.edges))
    # which true pores are matched by any counted
    cc = cen[chosen]
    matched_true = np.zeros(len(tc), int)
    for c in cc:
        d = np.hypot(*(tc - c).T) if len(tc) else np.zeros(0)
        if len(d) and d.min() < reach[np.argmin(d)] and np.any(d < reach):
            matched_true[np.argmin(np.where(d < reach, d, np.inf))] += 1
    def layer(name, x, y):
        f = cap.get(name)
        if f is None: return 0.0
        xi = int(np.clip(round(x), 0, f.shape[1]-1)); yi = int(np.clip(round(y), 0, f.shape[0]-1))
        return float(f[yi, xi])
    def layer_max(name, x, y, r):
        f = cap.get(name)
        if f is None: return 0.0
        x0, x1 = int(max(x - r, 0)), int(min(x + r + 1, f.shape[1])); y0, y1 = int(max(y - r, 0)), int(min(y + r + 1, f.shape[0]))
        return float(f[y0:y1, x0:x1].max()) if x1 > x0 and y1 > y0 else 0.0
    sh = found.shape
    for k in chosen:
        c = cen[k]
        d = np.hypot(*(tc - c).T) if len(tc) else np.array([np.inf])
        false = not np.any(d < reach) if len(tc) else True
        near = int(np.argmin(d)) if len(tc) else -1
        sd = seg_dist(a, b, c[None, :].repeat(len(a), 0)) if False else None
        ab = b - a; t = np.clip(((c - a) * ab).sum(1) / np.maximum((ab * ab).sum(1), 1e-9), 0, 1)
        q = a + t[:, None] * ab; sdist = np.hypot(*(c - q).T); es = int(np.argmin(sdist))
        r_px = diam[k] / 2 / fr.um_per_px
        row = dict(preset=preset, idx=idx, false=false, x=c[0], y=c[1], um=fr.um_per_px,
                   diam_um=diam[k],
                   true_gap_r=(d[near] / tr[near]) if near >= 0 else np.inf,
                   true_gap_um=(d[near] * fr.um_per_px) if near >= 0 else np.inf,
                   true_near_matched=(matched_true[near] if near >= 0 else 0),
                   true_near_diam=(2 * tr[near] * fr.um_per_px) if near >= 0 else 0,
                   junc_um=(np.min(np.hypot(*(junc - c).T)) * fr.um_per_px) if len(junc) else np.inf,
                   bend_um=(np.min(np.hypot(*(bends - c).T)) * fr.um_per_px) if len(bends) else np.inf,
                   end_um=(np.min(np.hypot(*(ends1 - c).T)) * fr.um_per_px) if len(ends1) else np.inf,
                   seg_um=sdist[es] * fr.um_per_px, seg_halfw_um=g.edge_width_px[es] / 2 * fr.um_per_px,
                   seg_depth=edepth[es] / np.median(edepth), seg_width=g.edge_width_px[es] / np.median(g.edge_width_px),
                   edge_um=min(c[0], c[1], g.width_px - 1 - c[0], g.height_px - 1 - c[1]) * fr.um_per_px,
                   hair=layer_max("hairs", c[0], c[1], r_px), pig=layer("pigment", c[0], c[1]),
                   dust=layer_max("dust", c[0], c[1], r_px), jdark=layer("junction_darkening", c[0], c[1]),
                   spec=layer_max("_specular", c[0], c[1], r_px),
                   furrow_floor=found.furrow_floor, around=found.around[k], spread=found.spread[k],
                   nearby=found.nearby[k], jgap=found.junction.gap_px, blue=blue[k],
                   in_hill=bool(P.in_a_hill(found)[k]), no_rescue=bool(nores_pass[k]), jout=cap["jout"], jout_q25=float(np.percentile(cap["jout_all"], 25)) if len(cap["jout_all"]) else 1.0)
        for f in fields(sh):
            row["s_" + f.name] = float(np.asarray(getattr(sh, f.name))[k])
        # which path passed
        jt = {**P.junction_tests(found), **P._common_tests(found, P.RULE)}
        row["via_junction"] = bool(np.all([v[k] for kk, v in jt.items() if kk != "grey"]))
        row["via_outline"] = bool(sh.outline[k] <= P.RULE.outline_max_ratio)
        rows.append(row)
    print(idx, len(chosen), len(tc), sum(r["false"] for r in rows if r["idx"] == idx), flush=True)
pickle.dump(rows, open(f"/tmp/widefalse/rows-{preset}-{lo}-{hi}.pkl", "wb"))
pickle.dump(truths, open(f"/tmp/widefalse/truth-{preset}-{lo}-{hi}.pkl", "wb"))

# --- classes of false pores (first that fits) ---
def cls(r):
    if r["edge_um"] < r["diam_um"] / 2 + 20: return "frame_edge"
    if r["true_gap_um"] < 2.5 * r["true_near_diam"] / 2 + 40: return "true_neighbour" + ("_twice" if r["true_near_matched"] > 1 else "")
    if r["hair"] > 0.3: return "hair"
    if r["dust"] > 0.3: return "dust"
    if r["pig"] > 0.3: return "pigment"
    if r["junc_um"] < 60: return "junction"
    if r["bend_um"] < 60: return "bend"
    if r["seg_um"] < r["seg_halfw_um"] + 20: return "on_furrow"
    return "hill"

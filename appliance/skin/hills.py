"""Hill cells: every work pixel given to one hill, the borders between hills on the furrows.

Method (on the valley response of ``texture``, at the canonical 20 µm/px):
1. Hill regions: the connected pixels of little valley response (at most ``HILL_LEVEL``) of at
   least ``MIN_HILL_AREA_UM2``. The level sits above the noise on hill tops and below most
   faint furrows, so a small hill keeps a core of its own.
2. Hill cores at their own level: inside each region, the connected pixels of almost no valley
   response (at most ``CORE_LEVEL``) of at least ``MIN_CORE_AREA_UM2``. A region that holds two
   or more such cores is two or more hills merged where a faint furrow fades out; its cores
   become the seeds. Any other region is one seed.
3. Cells: the seeds grow one pixel a step (square and cross steps in turn, close to the
   Euclidean nearest seed), first only over pixels of valley response up to each of the
   ``GROWTH_LEVELS`` in turn and then over all, until every pixel belongs to one. So each cell
   climbs the flanks of its furrows before any crosses a centre line, and the borders between
   cells lie on the furrow centre lines, where a furrow's response peaks, also at a junction:
   growing by distance alone, the seeds' rounded corners (a hill region ends a couple of pixels
   before its furrows) meet in several points spread around a junction, shorter than its
   star of furrows.
4. A border between two cores of one region stays only where it runs along a furrow: enough
   of it (``splits.split_share_limit``) has a valley response above ``FURROW_LEVEL``.
   Otherwise the two cells are one hill (the dip between the cores was the dome's own
   shading, not a furrow) and are merged. This is decided on the cells' shared borders alone,
   before any border is measured, so the merged hill's border with a neighbour is then
   measured as one segment: no junction is left where the undone border met it. Enough is a
   fixed share, or the frame's own split between the dips of its hill tops and its faint
   furrows where its split borders fall clearly into those two groups: how much of a faint
   furrow clears ``FURROW_LEVEL`` depends on the frame's contrast, blur and noise.
   A border on a furrow all along is still no furrow where it is shallow against the frame's
   own furrows, its median valley response under ``MIN_SPLIT_DEPTH`` of the median on all the
   cells' borders (``border_depth``), in a frame that holds many such borders
   (``SHALLOW_SPLITS_PER_1000``). Under a strongly oblique light the shaded sides of the
   micro-relief on a hill read as valleys above ``FURROW_LEVEL`` and cut it into cores whose
   borders lie on them, shallow against the furrows the same light deepens; a faint furrow
   among deep ones is shallow too, but such are few (docs/experiments/README.md "oblique",
   "relief").
5. Hairs: a hair lying across a hill covers a strip of it with valley response, so the hill
   reads as two regions, one each side. The hair is found by its colour (``hair_mask``: a
   strand whose blue falls against its red, as melanin absorbs, where furrows and pores are
   grey shadows; or a long narrow strand whose blue rises against its red, a grey or white
   hair, told from shine by its shape: ``neutral_hairs``), and two cells whose border lies
   mostly under it are the halves of one hill when each is the other's neighbour with the
   longest border under the hair and together they are no larger than ``MAX_HALVES_AREA``
   typical cells; they are merged. The halves are chosen among the hills step 4 leaves, and
   both steps merge in one relabelling.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from appliance.skin.borders import CrackMasks, run_lengths, sort_with
from appliance.skin.neutral_hairs import label_extents, neutral_hair_mask
from appliance.skin.pore_profile import median_of
from appliance.skin.splits import split_share_limit

HILL_LEVEL = 0.02  # valley response, in units of the hill level: below a faint furrow
# A hill's core: no valley at all. Fitted on the project's generator only (seeds 11 and 12,
# presets mixed and wide, 40 + 30 frames each; benchmarks/fit_texture_core.py): the worst of
# the six median errors (three texture features, two presets) is 2.18 % at 0.00125 against
# 2.21-2.44 % from 0.0015 to 0.005 (2.43 % at the former 0.003, which had been kept partly
# after looking at the second renderer) and 2.28 % at 0.001: a flat optimum, set by hill
# density on the wide preset.
CORE_LEVEL = 0.00125
MIN_HILL_AREA_UM2 = 1500.0  # a smaller region of low response is noise, not a hill
MIN_CORE_AREA_UM2 = 3000.0  # a smaller core is a dome's facet, not a hill of its own
# Growth levels (step 3), valley response: the hill regions and a broken furrow's gaps (between
# HILL_LEVEL and FURROW_LEVEL, so the cores of one region share it by distance as step 4 expects),
# then a faint furrow's flank, a furrow's, a deep furrow's (centre lines read 0.15-0.45).
GROWTH_LEVELS = (0.025, 0.05, 0.1, 0.2)
GROWTH_STEPS_PER_LEVEL = 3  # 4 read as a standstill does (5-13); 3: speed (docs/measurement.md)
FURROW_LEVEL = 0.03  # a border pixel lies on a furrow when its valley response is above this
# A split border's median valley response over the median on all the cells' borders (step 4):
# under this, no furrow. Chosen on the project's generator (wide preset, seeds 11 and 12, drawn
# and strongly oblique light) and blind3 development seed 32 among 0.25-0.4: at 0.3 the split
# borders that cut one true face outnumber those between two by 6-10 to 1 (by 3-5 at 0.4), and
# no development set's median hill error moves by more than 0.2 points the wrong way
# (docs/experiments/README.md "relief"); with the gate below, the own mixed frames unchanged.
MIN_SPLIT_DEPTH = 0.3
# ... where the frame has many of them: a few shallow splits are faint furrows (a frame of deep
# furrows may hold some), many are a shaded micro-relief. Per 1000 seeds, the ramp over which
# the depth test comes in. On the development frames the strongly lit ones hold 1.0-1.8 / 6.6-7.9
# / 19-30 (10th / 50th / 90th percentile), the ring-lit 0 / 1.4-1.7 / 6.5-8.7, the project's
# texture scene of a faint broken furrow (tests/skin/test_skin_texture.py) 1.7.
SHALLOW_SPLITS_PER_1000 = (3.0, 8.0)
DEPTH_STEPS = 1024  # valley response read in steps of 1/1024 of the hill level for medians
DEPTH_SAMPLE_ROW = 8  # ``border_depth`` reads every 8th row (speed; all rows' within 0.6 %)
STRONG_VALLEY = 0.06  # depth below the closing, in units of the hill level: a clear furrow
# Hairs (step 5). Fitted on the project's generator only (preset wide, seeds 11 and 12, 60 frames
# each; never on the second renderer or seed 1): hairs there read 55-75 levels of the blue/red
# ratio below the skin around them (ratio x 128), furrows a few; 12-30 read alike.
HAIR_CONTRAST = 20  # blue/red ratio (x 128) below its closing: a melanin strand
HAIR_CLOSING_PX = 7  # a 140 µm square: wider than the thickest hair (110 µm), narrower than spots
HAIR_MIN_EXTENT_PX = 15  # 300 µm: a hair is long; freckles and dust are small
MIN_HAIR_SHARE = 0.5  # share of a border's cracks under a hair for it to be the hair's
MAX_HALVES_AREA = 1.5  # two halves of one hill: together at most this many median cells

LOOKUP_CHUNK_PX = 16384  # pixels of a label image looked up at once (``relabelled``; speed only)

_SQUARE = np.ones((3, 3), np.uint8)
_CROSS = cv2.getStructuringElement(cv2.MORPH_CROSS, (3, 3))


@dataclass(frozen=True)
class Seeds:
    """Seed labels (0: no seed) and, per label, the hill region it was found in."""

    labels: np.ndarray  # uint16, or int32 past 65,535 seeds
    region: np.ndarray  # (count,) int: region id per label (index 0 unused)
    first_core: int  # labels from this one on are cores of regions that split


def label_components(mask: np.ndarray, connectivity: int) -> tuple[int, np.ndarray]:
    """cv2.connectedComponents of a bool mask: uint16 labels when they fit, else int32.

    uint16 labels halve the memory traffic of every later pass over the label image and let
    ``label_areas`` count them with calcHist; OpenCV raises when they would overflow.
    """
    source = mask.view(np.uint8)
    try:
        count, labels = cv2.connectedComponents(source, connectivity=connectivity, ltype=cv2.CV_16U)
    except cv2.error:
        count, labels = cv2.connectedComponents(source, connectivity=connectivity)
    return int(count), labels


def relabelled(table: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """``table``'s entry for every pixel of a label image: ``np.take(table, labels)``.

    Looked up in chunks of pixels: np.take turns the labels into a machine-word index first,
    and a chunk's index stays in the cache where the whole image's would not (speed only).
    """
    result = np.empty(labels.shape, dtype=table.dtype)
    flat, out = labels.ravel(), result.ravel()
    for start in range(0, flat.size, LOOKUP_CHUNK_PX):
        chunk = slice(start, start + LOOKUP_CHUNK_PX)
        table.take(flat[chunk], out=out[chunk])
    return result


def label_areas(labels: np.ndarray, count: int) -> np.ndarray:
    """Pixels per label 0..count-1 (calcHist for uint16 labels: 2x faster than bincount)."""
    if labels.dtype == np.uint16:
        hist = cv2.calcHist([labels], [0], None, [count], [0, count])  # float32, exact counts
        areas: np.ndarray = hist.ravel().astype(np.int64)
        return areas
    return np.bincount(labels.ravel(), minlength=count)


def hill_seeds(response: np.ndarray, um_per_px: float) -> Seeds:
    """One seed per hill region, or one per core where a region holds several (steps 1-2)."""
    count, regions = label_components(response <= HILL_LEVEL, connectivity=4)
    kept = label_areas(regions, count) >= MIN_HILL_AREA_UM2 / um_per_px**2
    kept[0] = False
    # every core lies in a region (CORE_LEVEL < HILL_LEVEL); a region too small to keep has no
    # core big enough to count
    cores_mask = np.less_equal(response, CORE_LEVEL)
    core_count, cores = label_components(cores_mask, connectivity=4)
    core_pixels = np.flatnonzero(cores_mask)
    core_of_pixel = cores.ravel().take(core_pixels)
    # the core pixels in runs of one core each (a core lies in one region: a run's first pixel
    # says which); the runs' lengths summed per core, exact in float64, are its area
    runs = run_starts(core_of_pixel)
    run_core = core_of_pixel.take(runs)
    areas = np.bincount(run_core, run_lengths(runs, len(core_pixels)), minlength=core_count)
    big = areas >= MIN_CORE_AREA_UM2 / um_per_px**2
    big[0] = False
    region_of_core = np.zeros(core_count, dtype=np.int64)
    region_of_core[run_core] = regions.ravel().take(core_pixels.take(runs))
    split = np.bincount(region_of_core[big], minlength=count) >= 2
    whole = kept & ~split
    seeding_core = big & split[region_of_core]
    wholes = int(np.count_nonzero(whole))
    dtype = np.uint16 if wholes + np.count_nonzero(seeding_core) < 2**16 else np.int32
    region_seed = np.zeros(count, dtype=dtype)
    region_seed[whole] = np.arange(1, wholes + 1)
    core_seed = np.zeros(core_count, dtype=dtype)
    core_seed[seeding_core] = np.arange(wholes + 1, wholes + 1 + np.count_nonzero(seeding_core))
    # a seeding core lies in a region that splits, whose pixels the region seeds leave 0: its
    # pixels take its own label (only those: a few cores, not a second pass over the image)
    labels = relabelled(region_seed, regions)
    seeding_pixels = np.flatnonzero(relabelled(seeding_core, core_of_pixel))
    labels.ravel()[core_pixels.take(seeding_pixels)] = core_seed.take(
        core_of_pixel.take(seeding_pixels))
    region = np.concatenate([[0], np.flatnonzero(whole), region_of_core[seeding_core]])
    return Seeds(labels, region, wholes + 1)


def run_starts(values: np.ndarray) -> np.ndarray:
    """Where each run of equal values in a 1-D array starts (the first index, then every
    index whose value differs from the one before)."""
    starts: np.ndarray = np.flatnonzero(np.not_equal(values[1:], values[:-1])) + 1
    return np.concatenate([[0], starts]) if len(values) else starts


def grow_cells(seeds: np.ndarray, response: np.ndarray | None = None) -> np.ndarray:
    """Every pixel given to a seed (step 3): with ``response``, first over the pixels up to
    each of the ``GROWTH_LEVELS`` in turn, lowest first; then over all.

    OpenCV's dilation takes uint16 labels but not int32 ones (past 65,535 seeds: only on a
    frame of tiny cells at a coarse scale); those grow as float32, which holds every label of
    a work image exactly (under 2**24 pixels), and come back as int32.
    """
    if seeds.dtype == np.int32:
        if seeds.size >= 2**24:
            raise ValueError(f"{seeds.size} pixels are too many to label exactly")
        grown: np.ndarray = grow_cells(seeds.astype(np.float32), response).astype(np.int32)
        return grown
    cells = seeds.copy()
    if not cv2.countNonZero(cells):
        return cells  # no hill at all: nothing to grow
    # every step writes over the same few buffers (they stay in the cache)
    grown, open_ = np.empty_like(cells), np.empty(cells.shape, dtype=np.uint8)
    if response is not None:
        allowed = np.empty_like(cells)
        for level in GROWTH_LEVELS:
            np.less_equal(response, level, out=allowed)
            _grow_over(cells, allowed, grown, open_)
    step = 0
    while True:
        # OpenCV takes the scalar 0 (its type stubs list arrays only)
        empty = cv2.compare(cells, 0, cv2.CMP_EQ, dst=open_)  # type: ignore[call-overload]
        if step >= 2 and not cv2.countNonZero(empty):  # furrows are two steps wide at least
            return cells
        cv2.dilate(cells, _CROSS if step % 2 == 0 else _SQUARE, dst=grown)
        cv2.copyTo(grown, empty, cells)
        step += 1


def _grow_over(cells: np.ndarray, allowed: np.ndarray, grown: np.ndarray,
               open_: np.ndarray) -> None:
    """Grow ``cells`` in place over the empty ``allowed`` pixels (1, 0 elsewhere, the type of
    ``cells``): ``GROWTH_STEPS_PER_LEVEL`` one-pixel steps (a level's band on a furrow's flank
    is a few pixels wide; what is left grows at the next level). ``grown`` (the type of
    ``cells``) and ``open_`` (uint8) are scratch images of its size."""
    for step in range(GROWTH_STEPS_PER_LEVEL):
        # labels are whole numbers >= 0: below ``allowed`` is empty and allowed, in one compare
        cv2.compare(cells, allowed, cv2.CMP_LT, dst=open_)
        cv2.dilate(cells, _CROSS if step % 2 == 0 else _SQUARE, dst=grown)
        cv2.copyTo(grown, open_, cells)  # an unlabelled neighbour copies 0: nothing changes


def merge_cells(
    cells: np.ndarray, masks: CrackMasks, seeds: Seeds, response: np.ndarray, hair: np.ndarray
) -> tuple[np.ndarray, CrackMasks]:
    """The cells with the splits that are not furrows (step 4) and then the halves of each hill
    a hair crosses (step 5) merged, in one relabelling, and their crack masks."""
    pairs, on_furrow, depth = _sibling_borders(cells, masks, seeds, response)
    on_enough = on_furrow >= split_share_limit(on_furrow)
    shallow = 0.0
    if len(pairs):  # (the frame's furrows read only where a region splits at all)
        shallow = MIN_SPLIT_DEPTH * border_depth(masks, response)
        shallow *= _shading_weight(int(np.count_nonzero(on_enough & (depth < shallow))),
                                   len(seeds.region))
    faint = pairs[~on_enough | (depth < shallow)]
    hill = joined_labels(len(seeds.region), faint)  # cell label -> hill after step 4
    halves = hair_halves(cells, masks, hair, hill)
    if len(faint) == 0 and len(halves) == 0:
        return cells, masks
    relabel = joined_labels(int(hill.max()) + 1, halves)[hill].astype(cells.dtype)
    merged = relabelled(relabel, cells)
    return merged, CrackMasks.of(merged)


def _shading_weight(shallow: int, seeds: int) -> float:
    """How far a frame's shallow split borders are taken for shading (step 4): 0 up to the
    first of ``SHALLOW_SPLITS_PER_1000`` of them per 1000 seeds, 1 from the second, linear
    between (a few are faint furrows; many, a shaded micro-relief)."""
    low, high = SHALLOW_SPLITS_PER_1000
    per_1000 = 1000.0 * shallow / max(seeds, 1)
    return min(max((per_1000 - low) / (high - low), 0.0), 1.0)


def _sibling_borders(
    cells: np.ndarray, masks: CrackMasks, seeds: Seeds, response: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Each border between the cells of two cores of one region: the two labels, the share of
    its cracks with a furrow pixel (response above ``FURROW_LEVEL``) on either side, and the
    median over its cracks of the deeper side's response (in steps of 1/``DEPTH_STEPS``)."""
    width, span = cells.shape[1], len(seeds.region)
    core = np.greater_equal(cells, seeds.first_core).view(np.uint8)  # 1 on the cores' cells
    flat_cells, flat_response = cells.ravel(), response.ravel()
    keys, deepest = [], []
    for step, cracks in _cracks_within(masks, core, width):
        first = flat_cells.take(cracks).astype(np.int64)
        second = flat_cells.take(cracks + step).astype(np.int64)
        # the sibling cracks taken out first: the keys and depths of those alone
        siblings = np.flatnonzero(seeds.region.take(first) == seeds.region.take(second))
        first, second, at = first.take(siblings), second.take(siblings), cracks.take(siblings)
        keys.append(np.minimum(first, second) * span + np.maximum(first, second))
        deepest.append(np.maximum(flat_response.take(at), flat_response.take(at + step)))
    all_keys = np.concatenate(keys)
    if len(all_keys) == 0:
        return np.zeros((0, 2), dtype=np.int64), np.zeros(0), np.zeros(0)
    # each crack's response step and on-furrow bit ride with its key through the sort, so a
    # border's cracks come out in the order of their response: its middle one is the median
    deep = np.concatenate(deepest)
    steps = np.minimum(deep * DEPTH_STEPS, DEPTH_STEPS - 1).astype(np.int64)
    sorted_keys, payload = sort_with(all_keys, 2 * steps + (deep > FURROW_LEVEL), span * span,
                                     2 * DEPTH_STEPS)
    starts = np.flatnonzero(np.concatenate([[True], sorted_keys[1:] != sorted_keys[:-1]]))
    lengths = run_lengths(starts, len(sorted_keys))
    share = np.add.reduceat(payload & 1, starts) / lengths
    depth = (payload.take(starts + lengths // 2) >> 1) / DEPTH_STEPS
    pair_keys = sorted_keys[starts]
    return np.stack([pair_keys // span, pair_keys % span], axis=1), share, depth


def border_depth(masks: CrackMasks, response: np.ndarray) -> float:
    """The median over the cracks between cells of the deeper side's valley response (float32),
    read on every ``DEPTH_SAMPLE_ROW``-th row: how deep the frame's furrows read (step 4)."""
    rows = DEPTH_SAMPLE_ROW
    counts = np.zeros(2 * DEPTH_STEPS, dtype=np.float64)
    total = 0
    for deeper, differs in ((cv2.max(response[::rows, :-1], response[::rows, 1:]),
                             masks.right[::rows]),
                            (cv2.max(response[:-1:rows], response[1::rows]),
                             masks.below[::rows])):
        inside = differs.view(np.uint8)
        total += cv2.countNonZero(inside)
        # steps of 1/DEPTH_STEPS up to twice the hill level; a deeper crack counts in ``total``
        counts += cv2.calcHist([deeper], [0], inside, [2 * DEPTH_STEPS], [0, 2]).ravel()
    if total == 0:
        return 0.0
    return float(np.searchsorted(np.cumsum(counts), total / 2)) / DEPTH_STEPS


def _cracks_within(masks: CrackMasks, inside: np.ndarray,
                   width: int) -> list[tuple[int, np.ndarray]]:
    """The cracks with ``inside`` (uint8, 1 or 0) on both sides, per direction: the step to the
    pixel across (1 right, ``width`` below) and the flat index of the pixel before each."""
    found = []
    for step, differs in ((1, masks.right), (width, masks.below)):
        here, there = (inside[:, :-1], inside[:, 1:]) if step == 1 else (inside[:-1], inside[1:])
        between = cv2.bitwise_and(cv2.bitwise_and(differs.view(np.uint8), here), there)
        flat = np.flatnonzero(between.view(bool))
        # below: the masks' rows are the image's; right: one column short, a row's worth on
        found.append((step, flat if step == width else flat + flat // (width - 1)))
    return found


def joined_labels(count: int, pairs: np.ndarray) -> np.ndarray:
    """Labels 0..count-1 renumbered so that each joined pair shares one (0 stays 0)."""
    hill = np.arange(count)
    while True:  # each round moves every pair to its smaller label; chains of splits are short
        low = np.minimum(hill[pairs[:, 0]], hill[pairs[:, 1]])
        if np.array_equal(hill[pairs[:, 0]], low) and np.array_equal(hill[pairs[:, 1]], low):
            break
        np.minimum.at(hill, pairs[:, 0], low)
        np.minimum.at(hill, pairs[:, 1], low)
        hill = hill[hill]
    used = np.zeros(count, dtype=bool)
    used[hill] = True
    relabel: np.ndarray = (used.cumsum() - 1)[hill]  # label 0 is its own and stays 0
    return relabel


def hair_mask(rgb: np.ndarray) -> np.ndarray:
    """Pixels of hairs (step 5): brown strands (``_brown_hairs``) and grey or white ones
    (``neutral_hairs``), from the blue/red ratio of the work-scale RGB frame."""
    red, _, blue = cv2.split(rgb)  # contiguous planes: a faster divide than of strided views
    ratio = cv2.divide(blue, red, scale=128)
    hair: np.ndarray = _brown_hairs(ratio) | neutral_hair_mask(ratio, HAIR_CONTRAST)
    return hair


def _brown_hairs(ratio: np.ndarray) -> np.ndarray:
    """Long strands darker in blue than in red against the skin around them (a black top-hat
    of the blue/red ratio), widened by one pixel for their blur.

    Furrows and pores darken like shadows, all colours alike, and pigment spots are wider than
    the closing; components shorter than ``HAIR_MIN_EXTENT_PX`` (freckles, dust) are dropped.
    """
    kernel = np.ones((HAIR_CLOSING_PX, HAIR_CLOSING_PX), np.uint8)  # square: 3x faster than a disk
    strands: np.ndarray = np.greater(cv2.morphologyEx(ratio, cv2.MORPH_BLACKHAT, kernel),
                                     HAIR_CONTRAST)
    mask = strands.view(np.uint8)
    # a hair is at least 2 px (40 µm) thick and HAIR_MIN_EXTENT_PX long, so it leaves that many
    # 2 x 2 blocks less one; specks of chroma noise leave a few (most frames)
    if cv2.countNonZero(cv2.erode(mask, np.ones((2, 2), np.uint8))) < HAIR_MIN_EXTENT_PX - 1:
        return np.zeros_like(strands)
    count, labels = label_components(strands, connectivity=8)
    keep = (label_extents(strands, labels, count) >= HAIR_MIN_EXTENT_PX).astype(np.uint8)
    keep[0] = 0
    if not np.any(keep):  # specks of chroma noise only (most frames): no hair
        return np.zeros_like(strands)
    hair: np.ndarray = cv2.dilate(np.take(keep, np.asarray(labels)), _SQUARE).view(bool)
    return hair


def hair_halves(
    cells: np.ndarray, masks: CrackMasks, hair: np.ndarray, hill: np.ndarray
) -> np.ndarray:
    """The pairs of hills (``hill``: each cell's hill) that are the two halves of one hill a
    hair crosses (step 5)."""
    none = np.zeros((0, 2), dtype=np.int64)
    if not cv2.countNonZero(hair.view(np.uint8)):
        return none
    pairs, under, total = _hair_borders(cells, masks, hair, hill)
    areas = np.bincount(hill, label_areas(cells, len(hill)), minlength=int(hill.max()) + 1)
    grown = areas[1:][areas[1:] > 0]
    typical = median_of(grown) if len(grown) else 0.0
    # (a border of under 3 cracks is a corner the two cells share, not a hair's length)
    candidate = (under >= MIN_HAIR_SHARE * total) & (total >= 3) & (
        areas[pairs[:, 0]] + areas[pairs[:, 1]] <= MAX_HALVES_AREA * typical)
    pairs, weight = pairs[candidate], under[candidate]
    if len(pairs) == 0:
        return none
    # each cell's partner: its neighbour with the most border under the hair; only mutual
    # partners merge (a chain of cells along a hair would otherwise merge into one)
    ends = np.concatenate([pairs[:, 0], pairs[:, 1]])
    others = np.concatenate([pairs[:, 1], pairs[:, 0]])
    order = np.lexsort((-np.concatenate([weight, weight]), ends))
    first = np.concatenate([[True], ends[order][1:] != ends[order][:-1]])
    partner = np.zeros(len(areas), dtype=np.int64)
    partner[ends[order][first]] = others[order][first]
    mutual = (partner[pairs[:, 0]] == pairs[:, 1]) & (partner[pairs[:, 1]] == pairs[:, 0])
    halves: np.ndarray = pairs[mutual]
    return halves


def _hair_borders(
    cells: np.ndarray, masks: CrackMasks, hair: np.ndarray, hill: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Each border between two hills (``hill``: each cell's hill) that a hair touches: the two
    hills, its cracks with the hair on both sides, and all its cracks."""
    width, span = cells.shape[1], int(hill.max()) + 1
    flat_cells, flat_hair = cells.ravel(), hair.ravel()
    touched = np.zeros(len(hill), dtype=np.uint8)
    touched[cells[hair]] = 1
    near = np.take(touched, cells)  # 1 on the cells the hair touches: only their borders count
    keys, covered = [], []
    for step, at in _cracks_within(masks, near, width):
        first, second = hill[flat_cells[at]], hill[flat_cells[at + step]]
        apart = first != second  # a border inside one hill after step 4 is no border
        keys.append((np.minimum(first, second) * span + np.maximum(first, second))[apart])
        covered.append((flat_hair[at] & flat_hair[at + step])[apart])
    all_keys = np.concatenate(keys)
    if len(all_keys) == 0:
        return np.zeros((0, 2), dtype=np.int64), np.zeros(0, np.int64), np.zeros(0, np.int64)
    sorted_keys, under_hair = sort_with(all_keys, np.concatenate(covered), span * span, 2)
    starts = np.flatnonzero(np.concatenate([[True], sorted_keys[1:] != sorted_keys[:-1]]))
    under = np.add.reduceat(under_hair, starts)
    total = run_lengths(starts, len(sorted_keys))
    pair_keys = sorted_keys[starts]
    return np.stack([pair_keys // span, pair_keys % span], axis=1), under, total

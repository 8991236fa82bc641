"""A pore with a hair growing from it is a pore; a hair alone is none.

Scenes of the project's generator (``skin_scenes``) with one pore of 150 µm in a hill, drawn
with a near-black or grey hair rooted at its centre (``pore_hair_share=1.0``): the strand leaving
the pit must not draw it out into a dash, read as one more furrow arm as deep as the pit, or put
it on the hair (docs/experiments/README.md "hairpore", "hairfix"). And depth images drawn here:
a pit with a strand narrower than it, and a hair's end, as narrow as its strand.
"""

from __future__ import annotations

from functools import cache

import numpy as np

from appliance.skin.analysis import SkinAnalysis, analyze
from appliance.skin.pore_profile import ARM_LEVEL, shape_of
from appliance.synthetic.skin_scenes import Scene, hill_scene, junction_scene

SEEDS = range(8)


@cache
def _measured(seed: int) -> tuple[Scene, SkinAnalysis]:
    scene = hill_scene(seed, (150.0,), pore_hair_share=1.0)
    return scene, analyze(scene.rgb, scene.um_per_px)


def _found(scene: Scene, analysis: SkinAnalysis) -> bool:
    """Whether a counted pore lies on the drawn one (within its radius)."""
    counted = analysis.pore_centres_frame_px()
    (centre,), (radius,) = scene.geometry.pore_centres_px, scene.geometry.pore_radii_px
    return bool(len(counted)) and float(np.hypot(*(counted - centre).T).min()) <= radius


def test_a_pore_in_a_hill_with_a_hair_from_its_centre_is_counted() -> None:
    counts = [_measured(seed)[1].features.pore_count for seed in SEEDS]
    found = [_found(*_measured(seed)) for seed in SEEDS]
    # the same pores without their hair: 7 of 8 are counted; with it, before the strand was
    # read apart from the pit, 2 (docs/experiments/README.md "hairfix": 4 of 8 found on it)
    assert sum(found) >= 4, (counts, found)
    assert max(counts) <= 1, counts  # the hair itself is no pore


def test_hairs_alone_are_no_pores() -> None:
    """Long dark hairs over skin without pores: neither their ends (in a hill, in a furrow or
    at a junction, where they read as a pit as wide as the junction) nor where they cross a
    furrow are pores."""
    for seed in SEEDS:
        scene = hill_scene(seed, (), hairs=4)
        assert analyze(scene.rgb, scene.um_per_px).features.pore_count == 0, seed


def _counted_at_the_root(scene: Scene) -> bool:
    """Whether a counted pore lies on the drawn pore's centre (within its radius), where its
    hair is rooted."""
    return _found(scene, analyze(scene.rgb, scene.um_per_px))


def test_a_pore_at_a_junction_with_a_hair_from_its_centre_is_counted() -> None:
    """A pit on the hair mask at a junction, that a strand much narrower than it leaves, is a
    pore with its hair (docs/experiments/README.md "hairjunc": 2 of 16 were counted before, 5
    now; the same pores without their hair: 16 of 16)."""
    found = [_counted_at_the_root(junction_scene(seed, (150.0,), pore_hair_share=1.0))
             for seed in range(16)]
    assert sum(found) >= 4, found


def test_a_hair_ending_at_a_junction_is_no_pore() -> None:
    """The pore scenes' hairs drawn without their pore (``pore_darkness=0``): a hair whose end
    lies on a junction, its tip darkening the junction into a pit as wide as the tip there.
    Sparing every rooted pit at a junction from the hair mask counted 5 of these 24 ends; one
    (seed 3) is a grey hair that no hair mask finds, counted whatever the strand reading."""
    counted = [seed for seed in range(24) if _counted_at_the_root(
        junction_scene(seed, (100.0,), pore_hair_share=1.0, pore_darkness=0.0))]
    assert len(counted) <= 1, counted


def _strand_of(depth: np.ndarray, centre: tuple[float, float]) -> np.ndarray:
    """The rays of the pit at ``centre`` that run down a strand (furrow floor 0.1)."""
    away: np.ndarray = shape_of(depth, np.array([centre]), ARM_LEVEL * 0.1).strand_rays[0]
    return away


def _drawn(pit_radius_px: float, strand_width_px: float, strand_depth: float) -> np.ndarray:
    """A depth image: a round pit 0.9 deep and a straight strand leaving its centre to +x."""
    yy, xx = np.mgrid[0:121, 0:161].astype(np.float64)
    pit = 0.9 * (np.hypot(xx - 60, yy - 60) <= pit_radius_px)
    strand = strand_depth * ((np.abs(yy - 60) <= strand_width_px / 2) & (xx >= 60))
    depth = np.maximum(pit, strand)
    return np.asarray(depth, dtype=np.float32)


def test_a_strand_narrower_than_its_pit_is_read_apart_from_it() -> None:
    away = _strand_of(_drawn(8.0, 5.0, 0.85), (60.0, 60.0))
    assert away[0]  # the ray along +x
    assert not away[8]  # not the one opposite


def test_a_hairs_end_is_as_wide_as_its_strand_and_stays_one() -> None:
    # the "pit" at a hair's end is the strand itself: nothing wider leaves it
    away = _strand_of(_drawn(2.5, 5.0, 0.9), (60.0, 60.0))
    assert not away.any()

"""A pit along a furrow is compared with the junctions along its own furrows, not only with the
junctions around it (docs/experiments/README.md "junc3"). The fifth renderer (blind3) draws a
pit at every junction, (1 + darkness) times as deep as the deepest furrow meeting there: a
junction of its deep primary furrows is deeper than the median junction around it (most are
junctions of shallower secondaries and tertiaries), reads 2 arms on its rays (the primary
passing through; the shallow third arm under the rays' level) and passed as a pore. It is no
deeper than the other junctions along the same primary; a pore on that primary is."""

from __future__ import annotations

from dataclasses import replace

import cv2
import numpy as np

from appliance.skin.pore_profile import (
    ARM_LEVEL,
    OUTER_RIM,
    Junctions,
    junctions_along,
    ring_of,
    second_furrow,
    shape_of,
)
from appliance.skin.pores import ALONG_ARM_SHARE, HILL_RING_UM, Candidates, pit_tests

FURROW_FLOOR = 0.2  # the frame's furrow floor (its median furrow depth)
AROUND = 0.45  # the junctions' floor around the pit: mostly junctions of shallower furrows
JUNCTIONS_X = (70, 120, 170)  # junctions along the primary, 50 fine px (500 µm) apart
PRIMARY_Y = 60


def _primary(floors: tuple[float, float, float]) -> np.ndarray:
    """A fine depth image (10 µm a px, 0 on the hills): a primary furrow 0.4 deep and 5 px wide
    across it; on it, junction pits 6 px round of ``floors`` at ``JUNCTIONS_X``, where a
    shallow furrow (0.08 deep) meets it from below; and a shallow furrow parallel to the
    primary 30 px under it, across a hill."""
    depth = np.zeros((121, 241), dtype=np.float32)
    cv2.line(depth, (0, PRIMARY_Y), (240, PRIMARY_Y), 0.4, 5)
    cv2.line(depth, (0, PRIMARY_Y + 30), (240, PRIMARY_Y + 30), 0.08, 5)
    for x, floor in zip(JUNCTIONS_X, floors, strict=True):
        cv2.line(depth, (x, PRIMARY_Y), (x, 120), 0.08, 5)
        cv2.circle(depth, (x, PRIMARY_Y), 6, floor, -1)
    result: np.ndarray = cv2.GaussianBlur(depth, (0, 0), 1.0)
    return result


def _pit_at_centre(depth: np.ndarray, floors: tuple[float, ...],
                   others: np.ndarray) -> tuple[Candidates, np.ndarray]:
    """The pit at (120, 60) as the pore tests see it, and its reading of the junctions along
    its furrows among every candidate: the three junction pits and ``others`` (fine px, 0.45
    deep: junctions of shallower furrows)."""
    centre = np.array([[120.0, float(PRIMARY_Y)]])
    shape = shape_of(depth, centre, ARM_LEVEL * FURROW_FLOOR)
    nearby = second_furrow(ring_of(depth, centre, HILL_RING_UM / 10.0))
    every = np.concatenate([[(x, PRIMARY_Y) for x in JUNCTIONS_X], others]).astype(float)
    floor = np.concatenate([floors, np.full(len(others), AROUND)])
    along = junctions_along(depth, centre, np.sort(shape.rim_px, axis=1)[:, OUTER_RIM],
                            ALONG_ARM_SHARE * shape.arms, centres=every, floor=floor)
    work = (centre + 0.5) / 2.0 - 0.5
    found = Candidates(work, shape, np.array([AROUND]), np.array([0.0]), nearby,
                       Junctions(AROUND, 2.0), np.array([0.0]), FURROW_FLOOR, FURROW_FLOOR,
                       10.0, 20.0, np.zeros((0, 2)), depth, furrow_junctions=along)
    return found, along


# junctions of shallower furrows: beside the primary's pits across the hill, and in the hill
OTHERS = np.array([(95.0, PRIMARY_Y + 30), (145.0, PRIMARY_Y + 30), (120.0, 110.0)])


def test_the_junctions_along_a_pits_furrow_are_those_its_furrow_reaches() -> None:
    """The pit's arms run along the primary to the junctions 500 µm either side: those are
    read (their median floor); the pits of the shallow furrows, across a hill or along a
    furrow shallower than a share of the pit's arms, are not; nor the pit itself."""
    floors = (0.5, 0.55, 0.6)
    found, along = _pit_at_centre(_primary(floors), floors, OTHERS)
    assert found.shape.arm_count[0] == 2  # the shallow third arm is under the rays' level
    assert along[0] == np.median([0.5, 0.6])
    # with no junction along its furrow among the candidates, none is read
    none = junctions_along(_primary(floors), np.array([[120.0, float(PRIMARY_Y)]]),
                           np.array([6.0]), np.array([0.24]), centres=OTHERS,
                           floor=np.full(len(OTHERS), AROUND))
    assert np.isnan(none[0])


def test_a_junction_pit_of_a_deep_furrow_is_no_pore_a_pore_on_it_is() -> None:
    """Every junction pit of the primary 0.55 deep: the pit at the centre is 1.2 x the junctions
    around it (0.45), so the comparison with those passes it (as main read it); it is no deeper
    than the junctions along its own furrow, and fails. A pore 0.75 deep on the same furrow,
    between junction pits 0.55 deep, is 1.36 x those, and passes."""
    floors = (0.55, 0.55, 0.55)
    junction, _ = _pit_at_centre(_primary(floors), floors, OTHERS)
    assert pit_tests(junction)["deep_enough"][0] == np.False_
    as_main = replace(junction, furrow_junctions=None)
    assert pit_tests(as_main)["deep_enough"][0] == np.True_
    pore = (0.55, 0.75, 0.55)
    found, _ = _pit_at_centre(_primary(pore), pore, OTHERS)
    assert pit_tests(found)["deep_enough"][0] == np.True_

"""Rock targets found in rendered navigation frames, scored against the world's truth.

Truth is read here only: each rock's top is projected with the renderer's own camera model; a
rock counts when its top is inside the frame and not hidden (the rendered depth there agrees
with the rock's). A detection is correct when its centroid lies within two projected radii
(at least 12 px) of a rock; a rock is found when some detection is that close to it.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from flight.imaging import targets as tg
from sim_hw.render import depth_of, project
from tests.imaging.helpers import Collect, build_vehicle, camera, rock_field, run_until

pytestmark = pytest.mark.timeout(60)


def visible_rocks(world, rocks, frame) -> list[tuple[float, float, float]]:
    pose = world.camera_pose("navcam")
    model = frame.model
    depth = world.renderer.render_depth(model, pose)
    out = []
    for r in rocks:
        top = np.array([[r.x, r.y, r.z_base + 0.5 * r.height]])
        u, v = project(top, model, pose)[0]
        if not (np.isfinite(u) and 5 <= u < model.width - 5 and 5 <= v < model.height - 5):
            continue
        z = float(depth_of(top, pose)[0])
        if abs(float(depth[int(v), int(u)]) - z) > 0.5 * r.radius + 0.1:
            continue  # hidden behind another rock
        out.append((float(u), float(v), r.radius * model.fx / z))
    return out


def test_detection_precision_and_recall_on_rendered_scenes() -> None:
    tp = n_det = found = n_truth = 0
    for seed in (1, 2, 3, 5):
        world, rocks = rock_field(seed)
        cam = camera(world, 640, 480)
        frame = cam.capture()
        truth = visible_rocks(world, rocks, frame)
        cands = tg.find_candidates(frame.image, frame.model, cam.pointing[1], 1.2)
        hit = set()
        for c in cands:
            near = [i for i, (u, v, rp) in enumerate(truth) if math.hypot(c.u - u, c.v - v) < max(2 * rp, 12)]
            tp += bool(near)
            hit.update(near)
        n_det += len(cands)
        found += len(hit)
        n_truth += len(truth)
    precision, recall = tp / n_det, found / n_truth
    print(f"targets: {n_det} detections, {n_truth} visible rocks; precision {precision:.2f}, recall {recall:.2f}")
    assert n_truth >= 40
    assert precision >= 0.8 and recall >= 0.8


def test_ranking_follows_the_written_criteria() -> None:
    model = camera(rock_field(1, n=1)[0]).spec.model()
    big = tg.Candidate(160, 150, 600, 0.5, 170, (140, 130, 40, 40))
    small = tg.Candidate(100, 150, 80, 0.5, 155, (95, 145, 10, 10))
    ranked = tg.rank([small, big], model, 0.0, -25.0, 1.2)
    assert ranked[0].candidate is big and ranked[0].score > ranked[1].score
    again = tg.rank([small, big], model, 0.0, -25.0, 1.2, imaged=[(ranked[0].pan_deg, ranked[0].tilt_deg)])
    assert next(t for t in again if t.candidate is big).novelty == 0.0
    assert "size" in tg.explain(ranked[0]) and "novelty" in tg.explain(ranked[0])


def test_survey_images_the_best_targets_when_allowed_and_explains(tmp_path: Path) -> None:
    world, _ = rock_field(1)
    cam = camera(world, 640, 480)
    vehicle, clock = build_vehicle(tmp_path, world, cam, "encode_cost_s = 0.2\nmast_height_m = 1.2")
    sink = Collect()
    vehicle.add_sink(sink)
    img = vehicle.by_name["img"]
    try:
        cmd = vehicle.fw.cmd
        cmd.submit("IMG_SURVEY", {"pan_deg": 0.0, "tilt_deg": -25.0})
        run_until(vehicle, clock, lambda: bool(sink.events("SurveyDone")))
        assert "autonomy is off" in sink.events("SurveyDone")[-1].text
        assert sink.events("TargetCandidate") and not sink.events("TargetChosen")
        assert img.catalogue.list() == []

        cmd.submit("PRM_SET", {"name": "img.autonomy", "value": "true"})
        cmd.submit("IMG_SURVEY", {"pan_deg": 0.0, "tilt_deg": -25.0})
        run_until(vehicle, clock, lambda: len(img.catalogue.list(states=("ready",))) >= 2)
        chosen = sink.events("TargetChosen")
        assert len(chosen) == 2 and all("score" in e.text and "range" in e.text for e in chosen)
        products = img.catalogue.list()
        assert all(p.meta["source"] == "autonomy" and p.meta["target"]["rank"] in (1, 2) for p in products)
        # each image is centred on its target: the mast moved away from the survey pointing
        assert all((p.meta["pan_deg"], p.meta["tilt_deg"]) != (0.0, -25.0) for p in products)
    finally:
        vehicle.shutdown()

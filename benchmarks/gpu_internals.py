"""Internals on a GPU, in under 8 minutes: activation capture, the evil trait vector and a steering sweep on CUDA
with the embedded model, checked against the CPU.

    python benchmarks/gpu_internals.py --device cpu --out runs/gpu-internals/cpu      # here, first: the reference
    python benchmarks/gpu_internals.py --device cuda --out $OUT/cuda --reference runs/gpu-internals/cpu

Sampled answers differ between devices by construction, so the check reads the CPU's held-out answers on the
device and projects them on the CPU's vector: within 5% of the projections' spread of the CPU's own. The
device's own extraction (its own answers) is compared by cosine at the steering layer (reported, not held to
a tolerance), and its steering sweep's P(evil option) per coefficient is printed beside the CPU's; capture is
timed against scoring the same responses.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

PROJECTION_TOLERANCE = 0.05  # of the projections' standard deviation
COEFFICIENTS = (-8.0, -4.0, 0.0, 4.0, 8.0)
LAYER = 18


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--reference", type=Path, help="the CPU run's --out folder")
    args = parser.parse_args()
    import numpy as np

    from llmpsych.internals.traits import load_trait
    from llmpsych.internals.vectors import extract_trait_vectors, load_vectors, project
    from llmpsych.models.activations import CaptureRequest
    from llmpsych.models.engine import SamplingParams, ScoreRequest
    from llmpsych.models.options import EngineOptions
    from llmpsych.models.refs import parse_model_ref
    from llmpsych.probes.choices import score_choices
    from llmpsych.runtime.cache import CallCache
    from llmpsych.runtime.calls import Runtime

    args.out.mkdir(parents=True, exist_ok=True)
    runtime = Runtime(CallCache(args.out / "calls.sqlite"), EngineOptions(device=args.device))
    model, trait = parse_model_ref("smollm2-135m-instruct"), load_trait("evil")
    figures: dict = {"device": args.device}

    started = time.time()
    vectors = extract_trait_vectors(runtime, model, trait, samples=1, max_tokens=32)
    figures["extraction_seconds"] = round(time.time() - started, 1)
    vectors.save(args.out / "evil.safetensors")
    held_out = [({"role": "user", "content": q},) for q in trait.held_out]
    answers = [c[0].text for c in runtime.sample(model, held_out, SamplingParams(max_tokens=48), 1, 0)]
    (args.out / "answers.json").write_text(json.dumps({"held_out": answers}))

    started = time.time()
    sweep = {}
    for coefficient in COEFFICIENTS:
        steered = model.with_steering(args.out / "evil.safetensors", LAYER, coefficient) if coefficient else model
        scores = score_choices(runtime, steered, [(c.question, (c.trait, c.other)) for c in trait.choices], cloze=True)
        sweep[coefficient] = float(np.mean([s.cloze[0] for s in scores]))
    figures["steering_seconds"], figures["p_evil_by_coefficient"] = round(time.time() - started, 1), sweep

    requests = [CaptureRequest(h, a) for h, a in zip(held_out, answers)] * 4
    started = time.time()
    runtime.capture(model, requests, label="capture (timed)")
    capture_seconds = time.time() - started
    started = time.time()
    runtime.score(model, [ScoreRequest(r.messages, (r.response,)) for r in requests], label="score (timed)")
    figures["capture_over_scoring_time"] = round(capture_seconds / (time.time() - started), 2)

    if args.reference:
        reference = load_vectors(args.reference / "evil.safetensors")
        theirs = json.loads((args.reference / "answers.json").read_text())["held_out"]
        # The same answers read on this device: projections on the CPU's vector.
        readings = runtime.capture(model, [CaptureRequest(h, a, layers=(LAYER,)) for h, a in zip(held_out, theirs)])
        ours = np.array([project(r.at(LAYER), reference.at(LAYER)) for r in readings])
        cpu = np.array(json.loads((args.reference / "figures.json").read_text())["held_out_projections"])
        spread = float(np.std(cpu)) or 1.0
        figures["projection_max_delta_over_sd"] = round(float(np.max(np.abs(ours - cpu))) / spread, 4)
        cosines = [float(np.dot(a, b) / (np.linalg.norm(a) * np.linalg.norm(b)))
                   for a, b in zip(vectors.vectors[1:], reference.vectors[1:])]
        figures["own_extraction_cosine_at_layer"] = round(cosines[LAYER - 1], 4)
        figures["cpu_p_evil_by_coefficient"] = json.loads((args.reference / "figures.json").read_text())[
            "p_evil_by_coefficient"]
        figures["within_tolerance"] = figures["projection_max_delta_over_sd"] <= PROJECTION_TOLERANCE
    readings = runtime.capture(model, [CaptureRequest(h, a, layers=(LAYER,)) for h, a in zip(held_out, answers)])
    figures["held_out_projections"] = [project(r.at(LAYER), vectors.at(LAYER)) for r in readings]
    (args.out / "figures.json").write_text(json.dumps(figures, indent=1))
    print(json.dumps({k: v for k, v in figures.items() if k != "held_out_projections"}, indent=1))


if __name__ == "__main__":
    main()

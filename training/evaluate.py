"""`expnet evaluate emotions`: how well the expression labels separate emotions.

    expnet evaluate emotions out/ --folds 10

The protocol of Chang et al. (FG 2018) for CK+: simple classifiers on the 29-D expression
coefficients, in subject-independent k-fold cross-validation (no subject is in a training
and a test fold at once). Beside them, a landmark-only baseline on the 68 crop landmarks,
similarity-normalised (:mod:`training.features`). Each classifier standardises its features
first. Prints accuracy (mean and spread over folds) per feature set and classifier, and the
out-of-fold confusion matrices.

Labels come from the ``label`` column (manifests, or ``expnet generate --label-from-parent``)
or, with ``--label-from-parent``, from the parent folder in ``source_uri``. Subjects come from
the ``subject`` column or, where it is empty, from ``--subject-pattern`` matched against the
file name (default: CK+'s ``S005_001_00000011.png``). Rows with neither label nor subject
are left out and counted. ``--shuffle-labels`` permutes the labels: a control whose
accuracy must fall to chance.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import posixpath
import re
import sys

import numpy as np
from sklearn.model_selection import GroupKFold
from sklearn.neighbors import KNeighborsClassifier
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.svm import LinearSVC

from schemas import SchemaError
from schemas import rows as columns
from training.features import landmark_features
from training.shards import ShardSet

CKPLUS_SUBJECT_PATTERN = r"(S\d{3})_\d{3}_\d+"
CLASSIFIERS = ("knn", "linear-svm")


@dataclasses.dataclass(frozen=True)
class EmotionData:
    """Rows usable for the evaluation.

    Attributes
    ----------
    expression : (N, 29) float64   sigma units
    landmarks : (N, 68, 2) float64 crop pixels
    labels, subjects : (N,) str
    left_out : dict                 reason -> rows left out
    """

    expression: np.ndarray
    landmarks: np.ndarray
    labels: np.ndarray
    subjects: np.ndarray
    left_out: dict


@dataclasses.dataclass(frozen=True)
class EmotionResult:
    """One feature set and classifier under cross-validation.

    Attributes
    ----------
    features, classifier : str
    fold_accuracies : (K,) float
    classes : tuple of str            the confusion matrix's row and column order
    confusion : (C, C) int            out-of-fold counts, rows true, columns predicted
    """

    features: str
    classifier: str
    fold_accuracies: np.ndarray
    classes: tuple
    confusion: np.ndarray

    @property
    def accuracy(self) -> float:
        return float(np.mean(self.fold_accuracies))

    @property
    def spread(self) -> float:
        """Standard deviation of the fold accuracies."""
        return float(np.std(self.fold_accuracies))


def parent_label(uri: str) -> str | None:
    """Name of the folder holding ``uri`` (the CK+ ``ROOT/<emotion>/<image>`` layout)."""
    return posixpath.basename(posixpath.dirname(uri.rstrip("/"))) or None


def pattern_subject(uri: str, pattern: re.Pattern) -> str | None:
    """The subject a file name encodes: ``pattern``'s first group, else its whole match."""
    match = pattern.search(posixpath.basename(uri))
    if match is None:
        return None
    return match.group(1) if match.groups() else match.group(0)


def load_emotion_data(paths, *, label_from_parent: bool = False,
                      subject_pattern: str = CKPLUS_SUBJECT_PATTERN,
                      allow_mixed_models: bool = False) -> EmotionData:
    """Read labels, subjects, expression and landmarks from shards (no images)."""
    shard_set = ShardSet(paths, allow_mixed_models=allow_mixed_models)
    table = shard_set.read_table([columns.SOURCE_URI, columns.LABEL, columns.SUBJECT,
                                  columns.EXPRESSION, columns.LANDMARKS])
    uris = table.column(columns.SOURCE_URI).to_pylist()
    labels = table.column(columns.LABEL).to_pylist()
    subjects = table.column(columns.SUBJECT).to_pylist()
    if label_from_parent:
        labels = [label or parent_label(uri) for label, uri in zip(labels, uris, strict=True)]
    compiled = re.compile(subject_pattern)
    subjects = [subject or pattern_subject(uri, compiled)
                for subject, uri in zip(subjects, uris, strict=True)]
    has_label = np.array([label is not None for label in labels], dtype=bool)
    has_subject = np.array([subject is not None for subject in subjects], dtype=bool)
    keep = has_label & has_subject
    left_out = {"no label": int(np.sum(~has_label)),
                "no subject": int(np.sum(has_label & ~has_subject))}
    expression = np.array(table.column(columns.EXPRESSION).to_pylist(), dtype=np.float64)
    landmarks = np.array(table.column(columns.LANDMARKS).to_pylist(), dtype=np.float64)
    return EmotionData(expression=expression.reshape(len(table), -1)[keep],
                       landmarks=landmarks.reshape(len(table), -1, 2)[keep],
                       labels=np.array(labels, dtype=object)[keep].astype(str),
                       subjects=np.array(subjects, dtype=object)[keep].astype(str),
                       left_out={reason: count for reason, count in left_out.items() if count})


def make_classifier(name: str, *, neighbors: int, svm_c: float, seed: int):
    """A standardise-then-classify scikit-learn pipeline."""
    if name == "knn":
        return make_pipeline(StandardScaler(), KNeighborsClassifier(n_neighbors=neighbors))
    if name == "linear-svm":
        return make_pipeline(StandardScaler(),
                             LinearSVC(C=svm_c, max_iter=20000, random_state=seed))
    raise ValueError(f"classifier must be one of {CLASSIFIERS}, got {name!r}")


def cross_validate(features: np.ndarray, labels: np.ndarray, subjects: np.ndarray, *,
                   classifier: str, folds: int, neighbors: int = 5, svm_c: float = 1.0,
                   seed: int = 0, feature_name: str = "features") -> EmotionResult:
    """Subject-independent k-fold accuracy of one classifier on one feature set.

    Parameters
    ----------
    features : (N, D) float
    labels, subjects : (N,) str
    folds : int   at most the number of subjects

    Raises
    ------
    ValueError   on mismatched lengths, or fewer than two subjects or classes
    """
    if not len(features) == len(labels) == len(subjects):
        raise ValueError(f"features {features.shape}, labels {labels.shape} and subjects "
                         f"{subjects.shape} must have the same length")
    classes = tuple(sorted(set(labels.tolist())))
    if len(classes) < 2 or len(set(subjects.tolist())) < 2:
        raise ValueError(f"need at least two classes and two subjects, got {len(classes)} "
                         f"and {len(set(subjects.tolist()))}")
    splitter = GroupKFold(n_splits=min(folds, len(set(subjects.tolist()))))
    predicted = np.empty(len(labels), dtype=object)
    accuracies = []
    for train, test in splitter.split(features, labels, groups=subjects):
        model = make_classifier(classifier, neighbors=min(neighbors, len(train)),
                                svm_c=svm_c, seed=seed)
        model.fit(features[train], labels[train])
        predicted[test] = model.predict(features[test])
        accuracies.append(float(np.mean(predicted[test] == labels[test])))
    index = {name: position for position, name in enumerate(classes)}
    confusion = np.zeros((len(classes), len(classes)), dtype=np.int64)
    np.add.at(confusion, ([index[label] for label in labels],
                          [index[label] for label in predicted]), 1)
    return EmotionResult(feature_name, classifier, np.array(accuracies), classes, confusion)


def evaluate_emotions(data: EmotionData, *, folds: int = 10, neighbors: int = 5,
                      svm_c: float = 1.0, seed: int = 0) -> list[EmotionResult]:
    """Both classifiers on the expression coefficients and on normalised landmarks."""
    feature_sets = {"expression": data.expression, "landmarks": landmark_features(data.landmarks)}
    return [cross_validate(features, data.labels, data.subjects, classifier=classifier,
                           folds=folds, neighbors=neighbors, svm_c=svm_c, seed=seed,
                           feature_name=name)
            for name, features in feature_sets.items() for classifier in CLASSIFIERS]


def format_report(data: EmotionData, results: list[EmotionResult]) -> str:
    """The accuracy table and the confusion matrices, as printed."""
    classes, counts = np.unique(data.labels, return_counts=True)
    folds = len(results[0].fold_accuracies)
    lines = [f"emotions: {len(data.labels)} faces, {len(set(data.subjects.tolist()))} "
             f"subjects, {len(classes)} classes, {folds}-fold subject-independent CV",
             f"chance (majority class): {counts.max() / counts.sum():.3f}", "",
             f"{'features':<12}{'classifier':<12}{'accuracy':>9}{'std':>8}"]
    for result in results:
        lines.append(f"{result.features:<12}{result.classifier:<12}"
                     f"{result.accuracy:>9.3f}{result.spread:>8.3f}")
    width = max(6, *(len(name) for name in results[0].classes)) + 2
    for result in results:
        lines += ["", f"confusion matrix, {result.features} / {result.classifier} "
                      "(rows: true, columns: predicted)",
                  " " * width + "".join(f"{name:>{width}}" for name in result.classes)]
        for name, row in zip(result.classes, result.confusion, strict=True):
            lines.append(f"{name:<{width}}" + "".join(f"{count:>{width}}" for count in row))
    return "\n".join(lines)


def results_json(data: EmotionData, results: list[EmotionResult]) -> dict:
    return {"faces": len(data.labels), "subjects": len(set(data.subjects.tolist())),
            "left_out": data.left_out,
            "results": [{"features": result.features, "classifier": result.classifier,
                         "accuracy": result.accuracy, "std": result.spread,
                         "fold_accuracies": result.fold_accuracies.tolist(),
                         "classes": list(result.classes),
                         "confusion": result.confusion.tolist()} for result in results]}


def build_parser() -> argparse.ArgumentParser:
    emotions = argparse.ArgumentParser(
        prog="expnet evaluate emotions",
        description="subject-independent emotion recognition from expression labels, against "
                    "a landmark-only baseline")
    emotions.add_argument("shards", nargs="+", help="label shards or folders of shards")
    emotions.add_argument("--folds", type=int, default=10)
    emotions.add_argument("--neighbors", type=int, default=5, help="k of the k-NN classifier")
    emotions.add_argument("--svm-c", type=float, default=1.0, help="linear SVM's C")
    emotions.add_argument("--label-from-parent", action="store_true",
                          help="label = parent folder of source_uri where label is empty")
    emotions.add_argument("--subject-pattern", default=CKPLUS_SUBJECT_PATTERN,
                          help="regex on the file name giving the subject where the subject "
                               "column is empty (first group, else whole match)")
    emotions.add_argument("--shuffle-labels", action="store_true",
                          help="control: permute labels across faces (accuracy -> chance)")
    emotions.add_argument("--allow-mixed-models", action="store_true")
    emotions.add_argument("--seed", type=int, default=0)
    emotions.add_argument("--json", default=None, help="also write the results here")
    return emotions


def run_emotions(args: argparse.Namespace) -> int:
    data = load_emotion_data(args.shards, label_from_parent=args.label_from_parent,
                             subject_pattern=args.subject_pattern,
                             allow_mixed_models=args.allow_mixed_models)
    for reason, count in data.left_out.items():
        print(f"expnet evaluate: left out {count} faces: {reason}", file=sys.stderr)
    if args.shuffle_labels:
        data = dataclasses.replace(
            data, labels=np.random.default_rng(args.seed).permutation(data.labels))
    results = evaluate_emotions(data, folds=args.folds, neighbors=args.neighbors,
                                svm_c=args.svm_c, seed=args.seed)
    print(format_report(data, results))
    if args.json:
        with open(args.json, "w") as handle:
            json.dump(results_json(data, results), handle, indent=1)
    return 0


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(sys.argv[1:] if argv is None else argv)
    problems = []
    if args.folds < 2:
        problems.append(f"--folds must be >= 2, got {args.folds}")
    if args.neighbors < 1:
        problems.append(f"--neighbors must be >= 1, got {args.neighbors}")
    try:
        re.compile(args.subject_pattern)
    except re.error as error:
        problems.append(f"--subject-pattern is not a regular expression: {error}")
    if problems:
        for problem in problems:
            print(f"expnet evaluate: error: {problem}", file=sys.stderr)
        return 2
    try:
        return run_emotions(args)
    except (SchemaError, FileNotFoundError, ValueError) as error:
        print(f"expnet evaluate: error: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())

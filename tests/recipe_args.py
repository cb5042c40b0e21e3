"""Test helper: command-line arguments of tiny recipe runs through ``train.main``."""

import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)  # the repository's train.py


def tiny_corpus(valid_pairs, test_pairs):
    """Overrides for a tiny embedded corpus (seconds to generate)."""
    return (
        f"--train_minutes=0.25 --valid_pairs={valid_pairs} --test_pairs={test_pairs} "
        "--corpus_options={unpaired_minutes: 0.1, noise_train_per_family: 1, noise_eval_per_family: 1, "
        "rirs_train: 2, rirs_eval: 2, noise_seconds: 3.0}"
    )


def split_overrides(text):
    """Splits overrides on spaces outside braces/brackets."""
    parts, depth, current = [], 0, ""
    for char in text:
        depth += char in "{["
        depth -= char in "}]"
        if char == " " and depth == 0:
            if current:
                parts.append(current)
            current = ""
        else:
            current += char
    return parts + ([current] if current else [])


def recipe_args(recipe, data, out, epochs, *groups):
    """``train.main`` arguments: the recipe, folders, epochs and groups of overrides."""
    args = [recipe, f"--data_folder={data}", f"--output_folder={out}", f"--number_of_epochs={epochs}"]
    for group in groups:
        args += split_overrides(group)
    return args

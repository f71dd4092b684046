"""Label maps: a dataset's raw label fields -> one 0/1/unknown label per category.

A category a dataset's map does not mention is unknown for every row of it (masked out of the loss and the
metrics). A raw value the rule does not list is an error naming the dataset, row, field and value: a new
label value must never silently become a negative.
"""

from __future__ import annotations

from moderation.config import LabelRule
from moderation.data.records import DataError

POSITIVE, NEGATIVE, UNKNOWN = 1, 0, None


def rule_outcome(rule: LabelRule, row: dict, where: str) -> int | None:
    """1, 0 or None (unknown) for one row. With several fields: any positive wins; all must be negative."""
    outcomes = [_field_outcome(rule, field, row, where) for field in rule.fields]
    if POSITIVE in outcomes:
        return POSITIVE
    if outcomes and all(o == NEGATIVE for o in outcomes):
        return NEGATIVE
    return UNKNOWN


def _field_outcome(rule: LabelRule, field: str, row: dict, where: str) -> int | None:
    if field not in row:
        raise DataError(f"{where}: label_map refers to field {field!r}, which the loader does not provide "
                        f"(fields: {sorted(k for k in row if k not in ('text', 'image'))})")
    value = row[field]
    if value is None or value == "":
        return UNKNOWN
    value = str(value)
    if rule.at_least is not None:
        try:
            return POSITIVE if float(value) >= rule.at_least else NEGATIVE
        except ValueError:
            raise DataError(f"{where}: field {field!r} value {value!r} is not a number (rule uses at_least)") from None
    if value in rule.positive:
        return POSITIVE
    if value in rule.negative:
        return NEGATIVE
    if value in rule.unknown:
        return UNKNOWN
    raise DataError(
        f"{where}: field {field!r} has value {value!r}, which the label map lists under none of "
        f"positive {rule.positive}, negative {rule.negative}, unknown {rule.unknown}"
    )


def make_labeller(label_map: dict[str, LabelRule], categories: list[str], dataset: str):
    """A `datasets.map` function adding `labels` (floats) and `label_mask` (bools) in category order."""

    def label_row(row: dict) -> dict:
        labels, mask = [], []
        for category in categories:
            rule = label_map.get(category)
            outcome = None
            if rule is not None:
                outcome = rule_outcome(rule, row, f"datasets.{dataset}.label_map.{category} (row id {row['id']!r})")
            labels.append(float(outcome or 0))
            mask.append(outcome is not None)
        return {"labels": labels, "label_mask": mask}

    return label_row

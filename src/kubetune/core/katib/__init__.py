"""``kubetune convert``: Katib ``kubeflow.org/v1beta1`` Experiments as kubetune Experiments.

Pure: text in, documents and notes out (:func:`convert_text`), or one parsed document (:func:`convert_document`).
Each Katib field with a meaning here is mapped (the README's "Coming from Katib" has the table); each one that
cannot be carried over gets a :class:`~kubetune.core.katib.notes.Note` saying why and what to do instead, and a
document that could not run as it ran under Katib is refused with its reasons. Documents other than Katib
Experiments are passed through unchanged.
"""

from __future__ import annotations

from typing import Any

import yaml

from kubetune.core.katib.experiment import KATIB_API, convert_experiment
from kubetune.core.katib.notes import Conversion, Note
from kubetune.core.manifest import KATIB_GROUP, text_problems

__all__ = ["Conversion", "Note", "convert_document", "convert_text", "render"]


def convert_document(document: Any) -> Conversion:
    """One parsed YAML document: a Katib Experiment converted, anything else passed through with a note."""
    if not isinstance(document, dict):
        return Conversion(None, [Note("", "is not a Kubernetes object (a mapping)", refusal=True)])
    problems = text_problems(document)
    if problems:
        return Conversion(None, [Note(p.path, p.message, refusal=True) for p in problems])
    api_version, kind = document.get("apiVersion"), document.get("kind")
    if isinstance(api_version, str) and api_version.startswith(KATIB_GROUP) and kind == "Experiment":
        return convert_experiment(document)
    what = "a kubetune Experiment" if api_version == "kubetune.io/v1alpha1" else f"not a Katib Experiment ({kind})"
    return Conversion(document, [Note("", f"{what}: copied unchanged")])


def convert_text(text: str) -> list[Conversion]:
    """Every document of a YAML stream, converted one by one; raises ValueError when the text is not YAML."""
    try:
        documents = [d for d in yaml.safe_load_all(text) if d is not None]
    except RecursionError:
        raise ValueError("not valid YAML: nested too deeply") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark else ""
        raise ValueError(f"not valid YAML: {where}{getattr(exc, 'problem', None) or exc}") from None
    if not documents:
        raise ValueError("no document to convert")
    return [convert_document(document) for document in documents]


def render(conversions: list[Conversion]) -> str:
    """The documents that were converted (or passed through), as one YAML stream."""
    parts = []
    for conversion in conversions:
        if conversion.manifest is None:
            continue
        header = (f"# Converted by `kubetune convert` from the Katib ({KATIB_API}) Experiment {conversion.name}.\n"
                  if conversion.name else "")
        parts.append(header + yaml.safe_dump(conversion.manifest, sort_keys=False, width=120, allow_unicode=True))
    return "---\n".join(parts)

"""The base of every model of the Experiment manifest: camelCase aliases, unknown fields refused."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict
from pydantic.alias_generators import to_camel

# Integers a Kubernetes object can hold (int64), the bound of every integer of the manifest.
INT_LIMIT = 2**63 - 1


class ManifestModel(BaseModel):
    """Strict base: camelCase aliases, unknown fields rejected."""

    model_config = ConfigDict(
        extra="forbid", populate_by_name=True, alias_generator=to_camel, validate_default=True
    )

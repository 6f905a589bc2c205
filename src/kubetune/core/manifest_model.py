"""The base of every model of the Experiment manifest: camelCase aliases, unknown fields refused."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict
from pydantic.alias_generators import to_camel

# Integers a Kubernetes object can hold (int64): the bound of an int parameter's range and values.
INT_LIMIT = 2**63 - 1
# The largest integer a JSON number holds exactly: the bound of the manifest's counts and seed, which the CRD
# states as a maximum (the API server refuses a schema maximum beyond it).
JSON_INT_LIMIT = 2**53 - 1


class ManifestModel(BaseModel):
    """Strict base: camelCase aliases, unknown fields rejected."""

    model_config = ConfigDict(
        extra="forbid", populate_by_name=True, alias_generator=to_camel, validate_default=True
    )

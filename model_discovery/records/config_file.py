"""Config models read from YAML: :class:`ConfigFile` (the base) and :class:`ConfigError`."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any, ClassVar

import yaml
from pydantic import BaseModel, ValidationError

from model_discovery.errors import field_error, one_line


class ConfigError(ValueError):
    """A configuration file or value is invalid; the message names the file and field."""


class ConfigFile(BaseModel):
    """A config model read from YAML; :meth:`parse` and :meth:`load` raise :class:`ConfigError`
    with one line naming the origin (file) and the first bad field."""

    config_kind: ClassVar[str] = "config"

    @classmethod
    def parse(cls, data: Any, origin: str | None = None) -> Any:
        try:
            return cls.model_validate(dict(data) if isinstance(data, Mapping) else data)
        except ValidationError as exc:
            raise ConfigError(f"{origin or f'<{cls.config_kind}>'}: {field_error(exc)}") from exc

    @classmethod
    def load(cls, path: str | Path) -> Any:
        path = Path(path)
        try:
            data = yaml.safe_load(path.read_text()) or {}
        except (OSError, yaml.YAMLError) as exc:
            raise ConfigError(f"{path}: cannot read {cls.config_kind}: {one_line(exc)}") from exc
        return cls.parse(data, origin=str(path))

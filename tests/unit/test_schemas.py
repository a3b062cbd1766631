"""Schema versions and upcasters (offsync.schemas): registering, chains and their errors.

The properties (determinism, totality, step by step, idempotence) are in
tests/property/test_schemas_properties.py.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pytest

from offsync import Schema, Schemas
from offsync.encoding import canonical_fields, decode_fields
from offsync.errors import (
    FieldTypeError,
    RemoteDataError,
    SchemaVersionError,
    UpcastError,
    UsageError,
)
from offsync.status import Kind, Status, error_class


def split_name(fields: dict[str, Any]) -> dict[str, Any]:
    """Version 1 -> 2: "name" becomes "given" and "family"."""
    out = {k: v for k, v in fields.items() if k != "name"}
    if "name" in fields:
        given, _, family = str(fields["name"]).partition(" ")
        out.update(given=given, family=family)
    return out


def add_region(fields: dict[str, Any]) -> dict[str, Any]:
    """Version 2 -> 3: a region code, empty when not known."""
    return {**fields, "region": fields.get("region", "")}


RESIDENTS = Schemas({"residents": Schema(3, {1: split_name, 2: add_region})})


def test_an_old_change_is_read_in_the_current_version() -> None:
    old = {"name": "Siti Aminah", "village": "Kare"}
    want = {"village": "Kare", "given": "Siti", "family": "Aminah", "region": ""}
    assert RESIDENTS.upcast("residents", old, 1) == want
    assert RESIDENTS.upcast("residents", old, 0) == want, "unversioned reads as version 1"
    assert RESIDENTS.upcast("residents", {"given": "Siti"}, 2) == {"given": "Siti", "region": ""}
    current = {"given": "Siti", "region": "35"}
    assert RESIDENTS.upcast("residents", current, 3) is current


def test_versions_of_collections() -> None:
    assert RESIDENTS.version("residents") == 3
    assert RESIDENTS.version("doses") == 0
    assert list(RESIDENTS) == ["residents"]
    assert Schemas().upcast("doses", {"a": 1}, 1) == {"a": 1}, "unregistered: version 1 reads"
    assert Schemas({"doses": Schema(1)}).version("doses") == 1


def test_a_newer_version_is_refused_with_the_schema_reason() -> None:
    with pytest.raises(SchemaVersionError) as caught:
        RESIDENTS.upcast("residents", {}, 4)
    status = caught.value.status
    assert status is not None and status.kind is Kind.SCHEMA
    assert str(caught.value) == "schema: version 4 of 'residents' is newer than this replica's 3"
    assert Status.parse(str(status)) == status
    assert isinstance(caught.value, RemoteDataError)
    assert error_class(status) is SchemaVersionError
    assert RESIDENTS.refusal("residents", 4) == status
    assert RESIDENTS.refusal("residents", 3) is None
    assert RESIDENTS.refusal("doses", 1) is None
    assert str(RESIDENTS.refusal("doses", 2)).endswith("newer than this replica's 1")


@pytest.mark.parametrize(
    ("version", "upcasters", "match"),
    [
        (0, {}, "from 1"),
        (-1, {}, "from 1"),
        (True, {}, "from 1"),
        (2.0, {1: add_region}, "from 1"),
        (1 << 32, {}, "from 1"),
        (3, {1: split_name}, "no upcaster from version 2 to 3"),
        (3, {2: add_region}, "no upcaster from version 1 to 2"),
        (2, {1: split_name, 2: add_region}, "past the current version 2"),
        (2, {0: split_name, 1: add_region}, "from-version must be an int from 1"),
        (2, [(1, split_name), (1, add_region)], "two upcasters from version 1"),
        (2, [(1, split_name, 3)], "pairs"),
        (2, {1: "split"}, "not callable"),
    ],
)
def test_a_schema_is_validated_when_built(
    version: Any, upcasters: Mapping[int, Any], match: str
) -> None:
    with pytest.raises(UsageError, match=match):
        Schema(version, upcasters)


def test_registries_are_validated_and_immutable() -> None:
    with pytest.raises(UsageError, match="_trust"):
        Schemas({"_trust": Schema(1)})
    with pytest.raises(UsageError, match="non-empty str"):
        Schemas({"": Schema(1)})
    with pytest.raises(UsageError, match="must be a Schema"):
        Schemas({"residents": 3})  # type: ignore[dict-item]
    with pytest.raises(UsageError, match="immutable"):
        RESIDENTS._by_collection = {}
    with pytest.raises(UsageError, match="immutable"):
        Schema(1).version = 2
    with pytest.raises(UsageError, match="schema version is an int"):
        RESIDENTS.upcast("residents", {}, -1)


def test_an_upcaster_that_raises_is_an_upcast_error_naming_the_step() -> None:
    def broken(fields: dict[str, Any]) -> dict[str, Any]:
        return {"n": fields["missing"]}

    schemas = Schemas({"doses": Schema(3, {1: add_region, 2: broken})})
    with pytest.raises(UpcastError, match="from version 2 to 3 raised KeyError") as caught:
        schemas.upcast("doses", {}, 1)
    assert (caught.value.collection, caught.value.version) == ("doses", 2)
    assert isinstance(caught.value.__cause__, KeyError)
    assert schemas.upcast("doses", {}, 3) == {}, "a version past the broken step reads"


@pytest.mark.parametrize("result", [None, [("a", 1)], "fields", 3, {1: "a"}])
def test_an_upcaster_that_gives_no_field_map_is_an_upcast_error(result: Any) -> None:
    schemas = Schemas({"doses": Schema(2, {1: lambda fields: result})})
    with pytest.raises(UpcastError, match="from version 1 to 2 gave"):
        schemas.upcast("doses", {"a": 1}, 1)


def test_upcasting_field_bytes_keeps_them_canonical() -> None:
    data = canonical_fields({"village": "Kare", "name": "Siti Aminah"})
    upcast = RESIDENTS.upcast_fields("residents", data, 1)
    assert decode_fields(upcast) == RESIDENTS.upcast("residents", decode_fields(data), 1)
    assert upcast == canonical_fields(decode_fields(upcast))
    assert RESIDENTS.upcast_fields("residents", data, 3) is data, "nothing to do: the same bytes"
    assert Schemas().upcast_fields("doses", data, 0) is data
    with pytest.raises(SchemaVersionError):
        RESIDENTS.upcast_fields("residents", data, 9)


def test_upcast_fields_that_cannot_be_encoded_is_an_upcast_error() -> None:
    schemas = Schemas({"doses": Schema(2, {1: lambda fields: {"when": object()}})})
    with pytest.raises(UpcastError, match="cannot be encoded") as caught:
        schemas.upcast_fields("doses", canonical_fields({"a": 1}), 1)
    assert isinstance(caught.value.__cause__, FieldTypeError)


def test_a_mapping_result_becomes_a_dict() -> None:
    class Frozen(Mapping[str, Any]):
        def __getitem__(self, name: str) -> Any:
            return {"a": 1}[name]

        def __iter__(self) -> Any:
            return iter(["a"])

        def __len__(self) -> int:
            return 1

    schemas = Schemas({"doses": Schema(2, [(1, lambda fields: Frozen())])})
    got = schemas.upcast("doses", {}, 1)
    assert type(got) is dict and got == {"a": 1}

"""Catalog contract: labels are total, require is strict, TOML files and code registrations agree."""
import pytest
from hypothesis import given, strategies as st

from opsux.rules.catalog import (DEFAULT_CATALOG, UNKNOWN_LABEL, OperationCatalog, UnknownOperationType,
                           default_catalog)

DEMO = {
    "inventory.sync": "Inventory sync", "policy.sync": "Policy sync",
    "policy.bulk_archive": "Bulk archive policies", "policy.bulk_restore": "Bulk restore policies",
    "policy.bulk_force_delete": "Bulk force-delete policies",
    "policy_version.bulk_archive": "Bulk archive policy versions",
    "policy_version.bulk_restore": "Bulk restore policy versions",
    "policy_version.bulk_force_delete": "Bulk force-delete policy versions",
    "restore.execute": "Restore execution", "backup_set.add_policies": "Add policies to backup set",
    "directory_groups.sync": "Directory groups sync",
}


def test_default_catalog_has_the_demo_types():
    assert default_catalog() is DEFAULT_CATALOG
    for type, label in DEMO.items():
        assert DEFAULT_CATALOG.label(type) == label
        assert DEFAULT_CATALOG.require(type) == label
    assert set(DEMO) <= set(DEFAULT_CATALOG.types())


@pytest.mark.parametrize("value", [None, "", " ", "\t\n", "legacy.removed", 0, 1.5, b"inventory.sync",
                                   object(), ["inventory.sync"], {"type": "inventory.sync"}, "INVENTORY.SYNC"])
def test_unknown_and_empty_types_render_unknown_operation(value):
    assert DEFAULT_CATALOG.label(value) == "Unknown operation" == UNKNOWN_LABEL
    with pytest.raises(UnknownOperationType):
        DEFAULT_CATALOG.require(value)


@given(st.one_of(st.none(), st.text(), st.integers(), st.binary(), st.floats()))
def test_label_never_raises(value):
    assert isinstance(DEFAULT_CATALOG.label(value), str)


def test_require_error_names_type_and_hint():
    with pytest.raises(UnknownOperationType) as e:
        DEFAULT_CATALOG.require("report.export")
    assert "report.export" in str(e.value) and "register" in str(e.value)
    assert isinstance(e.value, ValueError) and e.value.type == "report.export"


def test_register_in_code_on_a_copy_leaves_default_untouched():
    cat = DEFAULT_CATALOG.copy().register("report.export", "Export report")
    assert cat.label("report.export") == "Export report"
    assert "report.export" in cat and "report.export" not in DEFAULT_CATALOG
    with pytest.raises(ValueError, match="already registered"):
        cat.register("inventory.sync", "Something else")


def test_load_toml_quoted_and_dotted_keys(tmp_path):
    p = tmp_path / "catalog.toml"
    p.write_text('[operations]\n"report.export" = "Export report"\nmailbox.migrate = "Migrate mailbox"\n')
    cat = OperationCatalog().load_toml(p)
    assert cat.items() == [("mailbox.migrate", "Migrate mailbox"), ("report.export", "Export report")]


def test_load_toml_rejects_a_file_without_operations(tmp_path):
    p = tmp_path / "catalog.toml"
    p.write_text('title = "nothing"\n')
    with pytest.raises(ValueError, match="operations"):
        OperationCatalog().load_toml(p)

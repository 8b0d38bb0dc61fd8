"""Issue 12, item 11 (names): invisible characters in a name are shown, so "Alice\u200b" never looks like "Alice".
The rule is `opsux.rules.failures.reveal_invisible` (pure); the view layer's `clean_text` applies it to every name."""
import unicodedata

import pytest


@pytest.mark.parametrize("name", ["Alice\u200b", "Al\u200dice", "\ufeffAlice", "Alice\u2060", "Ali\u00adce",
                                  "A\u202elice", "Alice\u2066", "Alice\U000e0041", "Alice\x07"])
def test_a_name_with_an_invisible_character_never_looks_like_the_plain_name(name):
    from opsux.rules.failures import reveal_invisible
    shown = reveal_invisible(name)
    assert shown != "Alice" and "\ufffd" in shown
    assert not any(unicodedata.category(c) in ("Cf", "Cc") for c in shown)


def test_visible_names_in_any_script_are_unchanged():
    from opsux.rules.failures import reveal_invisible
    for name in ("Alice", "Zoë Ølsen", "東京 太郎", "محمد", "Ωmega-7", "O'Brien\tJr"):
        assert reveal_invisible(name) == name


@pytest.mark.parametrize("name", ["Alice\u200b", "\ufeffAlice", "A\u202elice"])
def test_every_name_the_dashboard_shows_goes_through_the_rule(name):
    from opsux.ui.viewmodels import clean_text
    assert clean_text(name) != "Alice" and "\ufffd" in clean_text(name)

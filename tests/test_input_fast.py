"""The input side written for speed gives what the plain writing gave: the one mail match (with
its two length limits inside), the identity text folded once, the dedupe table's growth as a
countdown. Each is held against a reference written the plain way (hypothesis;
``HYPOTHESIS_PROFILE=fuzz`` runs many more examples)."""

from __future__ import annotations

import os
import random
import re
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from qomon_async._bodies import fold, identity_text
from qomon_async._dedupe import _NO_INDEX, SeenTable, duplicate_key
from qomon_async._validation import _FAST_MAIL, FieldError, check_mail

LONG = os.environ.get("HYPOTHESIS_PROFILE") == "fuzz"
RUNS = settings(max_examples=3000 if LONG else 300, deadline=None)

# -- the mail ---------------------------------------------------------------------------------

# The match as it was: the lengths checked in Python around it.
_ASCII_ATEXT = r"[A-Za-z0-9!#$%&'*+\-/=?^_`{|}~]"
_ASCII_LABEL = r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
_OLD_FAST_MAIL = re.compile(
    rf"{_ASCII_ATEXT}{{1,64}}(?:\.{_ASCII_ATEXT}+)*@(?:{_ASCII_LABEL}\.)+(?![0-9]+$){_ASCII_LABEL}"
)


def _old_fast(text: str) -> bool:
    return (
        len(text) <= 254
        and _OLD_FAST_MAIL.fullmatch(text) is not None
        and len(text.rpartition("@")[0]) <= 64
    )


ATOM = st.text("ab.-_+9é@ \n", min_size=0, max_size=70)
LONG_PARTS = st.builds(
    lambda local, labels, last: f"{'x' * local}@{'.'.join('d' * n for n in labels)}.{last}",
    st.integers(0, 70),
    st.lists(st.integers(0, 70), min_size=0, max_size=5),
    st.sampled_from(["org", "fr", "12", "a1", "-x", ""]),
)
MAILS = st.one_of(ATOM, LONG_PARTS, st.emails().map(str), st.text(max_size=30))


@RUNS
@given(MAILS)
def test_the_one_mail_match_is_the_match_and_the_lengths(text: str) -> None:
    fast = _FAST_MAIL.fullmatch(text) is not None
    assert fast == _old_fast(text), text
    if fast:
        assert check_mail(text) == text


def test_the_length_limits_are_inside_the_match() -> None:
    domain = "@" + ".".join(c * 60 for c in "defg") + ".org"  # 248 characters
    assert _FAST_MAIL.fullmatch("x" * 64 + "@example.org")
    assert not _FAST_MAIL.fullmatch("x" * 65 + "@example.org")
    assert not _FAST_MAIL.fullmatch("x" * 30 + "." + "y" * 34 + "@example.org")  # 65 in all
    assert _FAST_MAIL.fullmatch("x" * (254 - len(domain)) + domain)
    assert not _FAST_MAIL.fullmatch("x" * (255 - len(domain)) + domain)
    for refused in ("x" * 65 + "@example.org", "x" * (255 - len(domain)) + domain):
        try:
            check_mail(refused)
        except FieldError:
            continue
        raise AssertionError(f"accepted {refused!r}")


# -- the identity text --------------------------------------------------------------------------


def _old_identity(data: dict[str, Any], *, names: bool = True) -> str:
    mail = fold(data.get("mail"))
    if not mail or not names:
        return mail
    return "\x1f".join((mail, fold(data.get("firstname")), fold(data.get("surname"))))


class Name(str):
    """A str subclass (its text is its value)."""


PART = st.one_of(
    st.none(),
    st.text(max_size=8),
    st.sampled_from(["  Jeanne ", "ΣΑΣ", "Straße", "İi", "\x1f", " \x1fa\x1f ", "ﬁ", "", " "]),
    st.integers(),
    st.text(max_size=5).map(Name),
)
IDENTITIES = st.dictionaries(st.sampled_from(["mail", "firstname", "surname", "city"]), PART)


@RUNS
@given(IDENTITIES, st.booleans())
def test_the_identity_text_is_each_part_folded(data: dict[str, Any], names: bool) -> None:
    assert identity_text(data, names=names) == _old_identity(data, names=names)
    key = duplicate_key(data, "mail+names" if names else "mail")
    text = _old_identity(data, names=names)
    assert key == ((hash(text) & 0xFFFF_FFFF_FFFF_FFFF) or 1 if text else None)


def test_the_identity_text_folds_case_and_spaces() -> None:
    data = {"mail": " Jeanne@Example.ORG ", "firstname": " Straße", "surname": None}
    assert identity_text(data) == "jeanne@example.org\x1fstrasse\x1f"
    assert identity_text(data, names=False) == "jeanne@example.org"
    assert identity_text({"mail": "  ", "firstname": "x"}) == ""
    assert identity_text({"firstname": "x"}) == ""


# -- the dedupe table ---------------------------------------------------------------------------


def test_the_table_answers_as_a_dict_would_through_every_growth() -> None:
    rng = random.Random(15)
    # Digests crowded into one segment (the top 6 bits equal) and few slots, so that probes
    # collide and wrap; then spread ones.
    crowded = [(5 << 58) | (rng.getrandbits(12) << 6) | rng.getrandbits(6) for _ in range(3000)]
    spread = [rng.getrandbits(64) or 1 for _ in range(20_000)]
    for digests in (crowded, spread):
        table = SeenTable()
        reference: dict[int, int] = {}
        for index, digest in enumerate(digests + digests[::3]):
            expected = reference.setdefault(digest, index)
            got = table.first(digest, index)
            assert got == (None if expected == index else expected)
        assert len(table) == len(reference)
        table.close()
        assert len(table) == len(reference)


def test_a_segment_grows_past_85_percent() -> None:
    table = SeenTable()
    segment = table._segments[0]
    assert segment.mask + 1 == 64
    # 54 keys (84%) in a 64-slot segment: no growth; the 55th (86%) doubles it.
    for i in range(1, 55):
        table.first(i << 6, i)
    assert segment.mask + 1 == 64
    table.first(55 << 6, 55)
    assert segment.mask + 1 == 128
    assert len(table) == 55
    assert all(table.first(i << 6, 1000) == i for i in range(1, 56))


def test_indexes_beyond_4_bytes_are_kept_as_an_earlier_item() -> None:
    table = SeenTable()
    assert table.first(11, _NO_INDEX) is None and table.first(11, 0) == -1
    assert table.first(12, _NO_INDEX - 1) is None and table.first(12, 0) == _NO_INDEX - 1
    assert table.first(13, 2**40) is None and table.first(13, 0) == -1


def test_the_count_with_a_spill_limit() -> None:
    table = SeenTable(spill=100)
    for i in range(100):
        table.first(i + 1, i)
    assert len(table) == 100 and not table.spilled
    table.first(1000, 100)
    assert table.spilled and len(table) == 101
    assert table.first(1000, 5) == 100 and table.first(7, 5) == 6
    table.close()

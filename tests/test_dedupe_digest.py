"""The bulk pool's one-call dedupe digest is :func:`duplicate_key`, for every contact dict."""

from __future__ import annotations

from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from qomon_async._dedupe import DEDUPE_KEYS, duplicate_key, identity_digest

# Values as they come out of the validation, and stranger ones (numbers, None, blanks, letters
# whose case-folding changes their length).
_values = st.one_of(
    st.none(),
    st.text(alphabet=st.sampled_from(" \t\x1fAaßẞİ\u0131Σ\u03c3ς@.0é"), max_size=6),
    st.text(max_size=8),
    st.integers(-5, 5),
    st.floats(allow_nan=False, allow_infinity=False),
)
_contacts = st.dictionaries(
    st.sampled_from(["mail", "firstname", "surname", "married_name", "mobile"]), _values
)


@given(_contacts)
def test_the_digest_is_the_duplicate_key(data: dict[str, Any]) -> None:
    for key in DEDUPE_KEYS:
        assert identity_digest(data, key == "mail+names") == duplicate_key(data, key)


def test_the_digest_of_a_plain_contact() -> None:
    data = {"mail": " Ann@Example.org ", "firstname": "Ann ", "surname": "LEE"}
    assert identity_digest(data, True) == duplicate_key(data, "mail+names") is not None
    assert identity_digest(data, False) == duplicate_key(data, "mail") is not None
    assert identity_digest(data, True) != identity_digest(data, False)
    assert identity_digest({"mail": "  "}, True) is None
    assert identity_digest({"firstname": "Ann"}, False) is None

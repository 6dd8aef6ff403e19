"""Typed models of the Qomon API, as msgspec Structs: what Qomon answers.

Two families (this module holds the first):

* **Read models** (``Contact``, ``Address``, ``FormData``, ``Note``, ``Tag``, ``Form``,
  ``RefValue``, ``Action``, ``ActionSummary``, ``Problem``): what Qomon answers. Every field is
  optional, unknown fields are ignored, and the variants Qomon's answers are known to mix
  are accepted (numbers or strings for address parts, ``birthcity``/``birth_city``,
  ``actions_ids``/``action_ids``, ``customfields``/``custom_fields``, notes with ``content`` or
  ``data``, tags as objects or strings, dates with 0 to 6 fractional digits; a date without a
  zone is read as UTC; a contact id beyond the signed 64-bit range is refused). Where the wire
  has two names for one thing, the model exposes one normalised property and keeps the wire
  field private.
* **Write models** (``ContactWrite``, ``AddressWrite``...): what the client sends, in
  :mod:`qomon_async._writes`.
"""

from __future__ import annotations

import datetime as dt
from typing import TYPE_CHECKING, Annotated, Any, Literal

from msgspec import Meta, Struct, field

__all__ = [
    "Action",
    "ActionSummary",
    "Address",
    "ConfirmedContact",
    "Contact",
    "Form",
    "FormData",
    "FormType",
    "Note",
    "Problem",
    "ProblemError",
    "RefValue",
    "Tag",
]

#: The form types of ``GET /v1/forms/type/{type}``.
FormType = Literal[
    "consent", "level_of_support", "presence_status", "custom_fields", "survey", "tasks"
]


if TYPE_CHECKING:
    LooseStr = str
else:
    # On the wire, a string that Qomon sometimes sends as a number (or a bool); decoded as
    # it comes (no hook), then turned into text by the model's ``__post_init__``.
    LooseStr = str | int | float | bool

#: A datetime that carries its zone; a naive one from the wire is read as UTC by the decoders.
AwareDatetime = Annotated[dt.datetime, Meta(tz=True)]

#: An id that fits a signed 64-bit integer (what a database stores): a larger one is refused.
Id = Annotated[int, Meta(ge=-(2**63), le=2**63 - 1)]


#: ``int``, typed loosely: the loose fields read as ``str`` to a type checker, ``int`` on the wire.
_INT: type = int


class _NumberTexts(dict[object, str]):
    """The texts of the whole numbers met in address parts, kept: house numbers, postal and
    city codes and floors repeat (a few thousand cover a country), and reading a kept text
    takes under half the time of writing it anew (27 against 60 ns, Python 3.11). Bounded:
    beyond :data:`_NUMBER_TEXTS_MAX` numbers, the others are written each time (never an
    error, never stale: a number has one text)."""

    def __missing__(self, number: object) -> str:
        text = f"{number}"
        if len(self) < _NUMBER_TEXTS_MAX:
            self[number] = text
        return text


#: At most this many numbers' texts are kept (about half a megabyte when full).
_NUMBER_TEXTS_MAX = 4096
_NUMBER_TEXT = _NumberTexts()


def as_text(value: object) -> str:
    """A loose scalar as text: ``75000`` and ``"75000"`` both give ``"75000"``; ``True`` gives
    ``"true"``; ``48.0`` gives ``"48"``. A lost leading zero (``01000`` sent as ``1000``) cannot
    be recovered and is not guessed."""
    if type(value) is str:
        return value
    if value is True:
        return "true"
    if value is False:
        return "false"
    if isinstance(value, float):
        return str(int(value)) if value.is_integer() else repr(value)
    return str(value)


# --------------------------------------------------------------------------------------------
# Read models
# --------------------------------------------------------------------------------------------


class Tag(Struct, kw_only=True, frozen=True, gc=False):
    """A tag on a contact. Reads may carry ``appearance_count`` and ``color``."""

    name: str | None = None
    appearance_count: int | None = None
    color: str | None = None


class Address(Struct, kw_only=True, omit_defaults=True, gc=False):
    """A contact's postal address as Qomon returns it (``AddressResp``).

    Every part is a string, whether Qomon sent a string or a number. ``house_number`` and
    ``postal_code`` (the v1 draft's names) are folded into ``housenumber`` and ``postalcode``.
    """

    housenumber: LooseStr | None = None
    street: str | None = None
    postalcode: LooseStr | None = None
    citycode: LooseStr | None = None
    city: str | None = None
    state: str | None = None
    country: str | None = None
    addition: str | None = None
    infos: str | None = None
    building: str | None = None
    floor: LooseStr | None = None
    door: LooseStr | None = None
    pollingstation: LooseStr | None = None
    id: int | None = None
    score: float | None = None
    latitude: LooseStr | None = None
    longitude: LooseStr | None = None
    location: str | None = None
    invalid: bool | None = None
    county: str | None = None
    building_type: str | None = None
    _house_number: LooseStr | None = field(default=None, name="house_number")
    _postal_code: LooseStr | None = field(default=None, name="postal_code")

    def __post_init__(self) -> None:
        # msgspec runs this for every address it decodes (and every one built), so it does as
        # little as it can: the v1 draft's names are looked at only when one came (rare), and a
        # part is converted only when it is neither None nor text. Written out rather than
        # looped over the names on purpose (a loop with getattr/setattr costs ~3,900 more
        # instructions per seed answer, measured with callgrind). The parts Qomon's own
        # examples send as numbers (housenumber, postalcode, citycode, floor) test for an int
        # first and read its text from the kept ones (_NUMBER_TEXT); the others test for text
        # first. ``value.__class__`` is ``type(value)`` in fewer instructions (~460
        # fewer per address); a bool's class is bool: it never takes the int branch.
        if self._house_number is not None or self._postal_code is not None:
            self._fold()
        value = self.housenumber
        if value.__class__ is _INT:
            self.housenumber = _NUMBER_TEXT[value]
        elif value is not None and value.__class__ is not str:
            self.housenumber = as_text(value)
        value = self.postalcode
        if value.__class__ is _INT:
            self.postalcode = _NUMBER_TEXT[value]
        elif value is not None and value.__class__ is not str:
            self.postalcode = as_text(value)
        value = self.citycode
        if value.__class__ is _INT:
            self.citycode = _NUMBER_TEXT[value]
        elif value is not None and value.__class__ is not str:
            self.citycode = as_text(value)
        value = self.floor
        if value.__class__ is _INT:
            self.floor = _NUMBER_TEXT[value]
        elif value is not None and value.__class__ is not str:
            self.floor = as_text(value)
        value = self.door
        if value.__class__ is not str and value is not None:
            self.door = as_text(value)
        value = self.pollingstation
        if value.__class__ is not str and value is not None:
            self.pollingstation = as_text(value)
        value = self.latitude
        if value.__class__ is not str and value is not None:
            self.latitude = as_text(value)
        value = self.longitude
        if value.__class__ is not str and value is not None:
            self.longitude = as_text(value)

    def _fold(self) -> None:
        """Fold the v1 draft's ``house_number``/``postal_code`` into ``housenumber`` and
        ``postalcode`` (where those are empty), and make both texts too."""
        if self.housenumber is None:
            self.housenumber = self._house_number
        if self.postalcode is None:
            self.postalcode = self._postal_code
        if self._house_number is not None:
            self._house_number = as_text(self._house_number)
        if self._postal_code is not None:
            self._postal_code = as_text(self._postal_code)


def _plain(obj: Struct, name: str) -> None:
    """Turn the loose value of field ``name`` into text."""
    value = getattr(obj, name)
    if value is not None and type(value) is not str:
        setattr(obj, name, str(value) if type(value) is _INT else as_text(value))


class FormData(Struct, kw_only=True, omit_defaults=True, gc=False):
    """One answer of a contact to one form (``FormDataResp``).

    ``form_ref_id`` names the chosen refvalue; ``data`` is the free-text answer or the
    refvalue's value. Every answer value is a string on the wire.
    """

    form_id: int | None = None
    form_ref_id: int | None = None
    data: str | None = None  # a number sent here is read as text (by the decoders)
    id: int | None = None
    created_at: AwareDatetime | None = None
    updated_at: AwareDatetime | None = None
    deleted_at: AwareDatetime | None = None
    date: AwareDatetime | None = None
    donedate: AwareDatetime | None = None
    label: str | None = None
    type_of_form: str | None = None
    group_id: int | None = None
    contact_id: int | None = None
    survey_id: int | None = None


class Note(Struct, kw_only=True, omit_defaults=True, gc=False):
    """A note on a contact. Qomon names its text ``content`` or ``data``: read ``text``."""

    # In the order Qomon writes them (msgspec finds each key at once when the order matches).
    content: str | None = None
    id: int | None = None
    pinned: bool | None = None
    data: str | None = None
    contact_id: int | None = None
    group_id: int | None = None
    user_id: int | None = None
    only_super_admin: bool | None = None
    created_at: AwareDatetime | None = None
    updated_at: AwareDatetime | None = None

    @property
    def text(self) -> str | None:
        """The note's text, whichever key carried it."""
        return self.content if self.content is not None else self.data


class Contact(Struct, kw_only=True, omit_defaults=True, gc=False):
    """A contact as Qomon returns it.

    Variant names are normalised: read ``birthcity`` (also sent as ``birth_city``),
    ``action_ids`` (also ``actions_ids``), ``custom_fields`` (``customfields`` and
    ``custom_fields`` merged), ``tags`` (objects or plain strings), ``notes`` (a list or a single
    object), ``created_at``/``updated_at`` (``CreatedAt``/``UpdatedAt`` or the snake_case names).
    """

    # In the order Qomon writes them: msgspec finds each key at once when the order matches.
    # The wire's second spellings and shapes are private; read the properties below.
    id: Id | None = None
    group_id: int | None = None
    _created_at: AwareDatetime | None = field(default=None, name="CreatedAt")
    _updated_at: AwareDatetime | None = field(default=None, name="UpdatedAt")
    lastchange: AwareDatetime | None = None
    firstname: str | None = None
    surname: str | None = None
    married_name: str | None = None
    gender: str | None = None
    birthdate: AwareDatetime | None = None
    age_category: int | None = None
    birthdept: str | None = None
    birthcity: str | None = None
    birthcountry: str | None = None
    nationality: str | None = None
    mail: str | None = None
    phone: str | None = None
    mobile: str | None = None
    address: Address | None = None
    _tags: list[Tag | str] | None = field(default=None, name="tags")
    _actions_ids: list[int] | None = field(default=None, name="actions_ids")
    user_id: int | None = None
    user_contact_id: int | None = None
    formdatas: list[FormData] | None = None
    _customfields: list[FormData] | None = field(default=None, name="customfields")
    black_list: bool | None = None
    _notes: list[Note] | Note | None = field(default=None, name="notes")
    phone_invalid: bool | None = None
    mobile_invalid: bool | None = None
    lastchangeuserid: int | None = None
    nationbuilderid: int | None = None
    external_id: str | None = None  # a number sent here is read as text (by the decoders)
    membership_code: str | None = None
    membership_number: int | None = None
    interactions: list[dict[str, Any]] | None = None
    _created_at_snake: AwareDatetime | None = field(default=None, name="created_at")
    _updated_at_snake: AwareDatetime | None = field(default=None, name="updated_at")
    _birth_city: str | None = field(default=None, name="birth_city")
    _birth_country: str | None = field(default=None, name="birth_country")
    _birth_dept: str | None = field(default=None, name="birth_dept")
    _action_ids: list[int] | None = field(default=None, name="action_ids")
    _custom_fields: list[FormData] | None = field(default=None, name="custom_fields")

    def __post_init__(self) -> None:
        # The second spelling first: mostly absent, and then nothing is written. The address
        # normalised itself (Address.__post_init__) when it was decoded or built.
        if self._birth_city is not None and self.birthcity is None:
            self.birthcity = self._birth_city
        if self._birth_country is not None and self.birthcountry is None:
            self.birthcountry = self._birth_country
        if self._birth_dept is not None and self.birthdept is None:
            self.birthdept = self._birth_dept

    @property
    def created_at(self) -> dt.datetime | None:
        """When the contact was created (``CreatedAt``, microsecond precision)."""
        return self._created_at if self._created_at is not None else self._created_at_snake

    @property
    def updated_at(self) -> dt.datetime | None:
        """When the contact was last written (``UpdatedAt``)."""
        return self._updated_at if self._updated_at is not None else self._updated_at_snake

    @property
    def action_ids(self) -> list[int]:
        """Ids of the actions the contact is linked to."""
        return list(self._action_ids or self._actions_ids or [])

    @property
    def custom_fields(self) -> list[FormData]:
        """Custom-field answers, from ``customfields`` and ``custom_fields`` (both, merged)."""
        merged = list(self._customfields or [])
        seen = {(a.id, a.form_id, a.form_ref_id, a.data) for a in merged}
        merged.extend(
            a
            for a in self._custom_fields or []
            if (a.id, a.form_id, a.form_ref_id, a.data) not in seen
        )
        return merged

    @property
    def tags(self) -> list[Tag]:
        """Tags, as objects even when Qomon sent plain strings."""
        return [Tag(name=t) if isinstance(t, str) else t for t in self._tags or []]

    @property
    def notes(self) -> list[Note]:
        """Notes, as a list even when Qomon sent a single object."""
        if self._notes is None:
            return []
        if isinstance(self._notes, Note):
            return [self._notes]
        return list(self._notes)


# -- confirmed contacts (issue 13): a contact Qomon confirmed has an id ------------------------


class ConfirmedContact(Contact, kw_only=True, omit_defaults=True):
    """A contact Qomon confirmed: the same fields as :class:`Contact`, and ``id`` is an ``int``.

    Returned by ``create_contact``, ``get_contact``, ``replace_contact``, ``update_contact`` and
    carried by a ``"created"`` :class:`CreateResult`. Search results stay :class:`Contact`
    (tolerant: Qomon's answers vary). A ``ConfirmedContact`` is a ``Contact`` everywhere.
    """

    id: Id  # an int within 64 bits, like every id the decoders accept


def confirmed(contact: Contact) -> ConfirmedContact:
    """``contact`` as a :class:`ConfirmedContact` (the same object if it is one already).

    Raises:
        ValueError: The contact has no id.
    """
    if isinstance(contact, ConfirmedContact):
        return contact
    if contact.id is None:
        raise ValueError("a confirmed contact has an id")
    return ConfirmedContact(**{name: getattr(contact, name) for name in _CONTACT_FIELDS})


#: The field names of a contact (``structs.fields`` would evaluate the annotations each time).
_CONTACT_FIELDS: tuple[str, ...] = Contact.__struct_fields__


class RefValue(Struct, kw_only=True, omit_defaults=True, gc=False):
    """One option of a form (its ``id`` is what ``form_ref_id`` points to)."""

    id: int | None = None
    form_id: int | None = None
    label: str | None = None
    value: str | None = None
    min: int | None = None
    max: int | None = None
    step: int | None = None
    type: str | None = None
    followed: bool | None = None
    color: str | None = None
    created_at: AwareDatetime | None = field(default=None, name="CreatedAt")
    updated_at: AwareDatetime | None = field(default=None, name="UpdatedAt")


class Form(Struct, kw_only=True, omit_defaults=True, gc=False):
    """An advanced-field definition: consent, level of support, survey question, ..."""

    id: int | None = None
    label: str | None = None
    type: str | None = None
    section: str | None = None
    order: int | None = None
    activate: LooseStr | None = None
    mandatory: bool | None = None
    hidden: bool | None = None
    group_id: list[int] | int | None = None
    refvalues: list[RefValue] | None = None
    created_at: AwareDatetime | None = field(default=None, name="CreatedAt")
    updated_at: AwareDatetime | None = field(default=None, name="UpdatedAt")

    def __post_init__(self) -> None:
        _plain(self, "activate")

    def refvalue(self, value_or_label: str) -> RefValue | None:
        """The refvalue whose ``value`` (else ``label``) equals ``value_or_label``."""
        refs = self.refvalues or []
        for ref in refs:
            if ref.value == value_or_label:
                return ref
        for ref in refs:
            if ref.label == value_or_label:
                return ref
        return None


class Action(Struct, kw_only=True, gc=False):
    """An action (campaign) of the space. Only the stable fields are typed."""

    id: int | None = None
    name: str | None = None
    pitch: str | None = None
    group_id: int | None = None
    type_data: str | None = None
    status: str | None = None
    link: str | None = None
    goal: int | None = None
    start: AwareDatetime | None = None
    end: AwareDatetime | None = None
    public: bool | None = None


class ActionSummary(Struct, kw_only=True, gc=False):
    """An item of ``GET /actions``: the action and its counters."""

    action: Action | None = field(default=None, name="Action")
    visits: int | None = field(default=None, name="NbVisites")
    contacts: int | None = field(default=None, name="NbContacts")
    visits_declared: int | None = field(default=None, name="NbVisitesDeclared")


class ProblemError(Struct, kw_only=True, frozen=True):
    """One field-level problem of an error body: where, what, and the offending value."""

    location: str | None = None
    message: str | None = None
    value: Any = None


class Problem(Struct, kw_only=True):
    """A Qomon error body: RFC 7807 problem+json, or one of the older JSend shapes."""

    type: str | None = None
    title: str | None = None
    status: int | str | None = None
    detail: str | None = None
    instance: str | None = None
    errors: list[ProblemError] | None = None
    message: str | None = None
    data: Any = None

    @property
    def summary(self) -> str | None:
        """The most specific human message: ``detail``, then ``title``, then ``message``."""
        for text in (self.detail, self.title, self.message):
            if text:
                return text
        return None

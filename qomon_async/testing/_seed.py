"""The seeded space: forms of every type with their refvalues, and actions.

Ids, labels and values follow the examples of qomon-openapi.yaml, so that the documented
requests work as written: the consent form 11240, level of support 11238, presence status
11239, tasks 11236/11237, the "My city and me" survey 12515-12518 and the custom fields
12519-12523. The forms used by the spec's create example (47566, 879854, 879856) are added so
that the example body of ``POST /contacts`` is accepted too.
"""

from __future__ import annotations

from typing import Any

GROUP_ID = 631

FORM_TYPES = ("consent", "level_of_support", "presence_status", "custom_fields", "survey", "tasks")

# Form "types" of `/forms` that take one free answer rather than a choice among
# refvalues.
FREE_FORM_TYPES = frozenset({"text", "date", "numeric", "range", "signature", "photos", "other"})


def _ref(
    ref_id: int,
    form_id: int,
    created: str,
    label: str | None = None,
    value: str | None = None,
    **extra: Any,
) -> dict[str, Any]:
    ref: dict[str, Any] = {
        "id": ref_id,
        "form_id": form_id,
        "CreatedAt": created,
        "UpdatedAt": created,
    }
    if label is not None:
        ref["label"] = label
    if value is not None:
        ref["value"] = value
    ref.update(extra)
    return ref


def _form(  # noqa: PLR0917 - reads like the spec's examples
    form_id: int,
    category: str,
    form_type: str,
    label: str,
    created: str,
    refvalues: list[dict[str, Any]],
    **extra: Any,
) -> dict[str, Any]:
    form: dict[str, Any] = {
        "id": form_id,
        "group_id": [GROUP_ID],
        "CreatedAt": created,
        "UpdatedAt": created,
        "label": label,
        "type": form_type,
        "refvalues": refvalues,
    }
    form.update(extra)
    # The category is the `/forms/{type}` it is listed under; kept apart from the answer.
    form["_category"] = category
    return form


def _choices(
    form_id: int, first_ref: int, created: str, pairs: list[tuple[str, str]], **extra: Any
) -> list[dict[str, Any]]:
    return [
        _ref(first_ref + index, form_id, created, label, value, **extra)
        for index, (label, value) in enumerate(pairs)
    ]


def build_forms() -> list[dict[str, Any]]:
    """A fresh copy of the seeded forms (with the private ``_category`` key)."""
    c1 = "2024-01-05T10:12:56.029114Z"
    c2 = "2025-01-16T17:19:59.120908Z"
    c3 = "2025-01-17T17:22:52.730998Z"
    c4 = "2024-03-11T09:30:12.514233Z"
    strengths = [
        ("Public infrastructure", "public_infrastructure"),
        ("Education", "education"),
        ("Parks and green areas", "parks_and_green_areas"),
        ("Roads", "roads"),
        ("Neighborhood living", "neighborhood_living"),
        ("Sports infrastructures", "sports_infrastructures"),
    ]
    consent_values = [
        "nomobile",
        "stopsms",
        "consent_email",
        "consent_mobile",
        "no_consent_email",
        "no_consent_mobile",
        "double_optin_sms",
        "yes",
    ]
    support = [
        ("Elected official", "elected_official", "#05B66F"),
        ("Association", "association", "#05B66F"),
        ("Business", "business", "#7AD8F7"),
        ("Citizen", "citizen", "#FF8383"),
        ("To be convinced", "to_be_convinced", "#FF8383"),
    ]
    return [
        _form(
            11240,
            "consent",
            "checkbox",
            "The contact authorises me to collect and use the collected data for my action",
            c1,
            _choices(11240, 17872, c1, [(v, v) for v in consent_values]),
        ),
        _form(
            47566,
            "consent",
            "checkbox",
            "Newsletter",
            c4,
            [
                _ref(15648, 47566, c4, "consent_email", "consent_email"),
                _ref(15649, 47566, c4, "no_consent_email", "no_consent_email"),
            ],
        ),
        _form(
            11238,
            "level_of_support",
            "radio",
            "Level of support",
            c1,
            [
                _ref(17863 + i, 11238, c1, label, value, color=color, followed=True)
                for i, (label, value, color) in enumerate(support)
            ],
        ),
        _form(
            11239,
            "presence_status",
            "radio",
            "Presence status",
            c1,
            _choices(
                11239,
                17868,
                c1,
                [
                    ("present", "present"),
                    ("absent", "absent"),
                    ("refusal", "refus"),
                    ("repasse", "repasse"),
                ],
            ),
        ),
        _form(
            11236,
            "tasks",
            "checkbox",
            "Next steps",
            c1,
            [
                _ref(17858, 11236, c1, "Receive our information", "receive_our_information"),
                _ref(17859, 11236, c1, "Provide follow-up", "provide_follow_up", type="other"),
                _ref(17860, 11236, c1, "Report a problem", "report_a_problem", type="report"),
                _ref(17861, 11236, c1, "Invite to an event", "invite_to_event", type="invite"),
            ],
            order=1,
        ),
        _form(11237, "tasks", "text", "Notes", c1, [_ref(17862, 11237, c1)], order=2),
        _form(
            12515,
            "survey",
            "range",
            "On a scale of 1 to 10, how would you rate your satisfaction with the council?",
            c2,
            [_ref(19477, 12515, c2, min=0, max=10, step=1)],
            order=1,
            section="My city and me",
        ),
        _form(
            12516,
            "survey",
            "checkbox",
            "What are the strengths of the town/city in your opinion?",
            c2,
            _choices(12516, 19478, c2, strengths),
            order=2,
            section="My city and me",
        ),
        _form(
            12517,
            "survey",
            "checkbox",
            "What do you think should be improved?",
            c2,
            _choices(12517, 19484, c2, strengths),
            order=3,
            section="My city and me",
        ),
        _form(
            12518,
            "survey",
            "text",
            "Do you have anything to bring up?",
            c2,
            [_ref(19490, 12518, c2)],
            order=4,
            section="My city and me",
        ),
        _form(
            879856,
            "survey",
            "radio",
            "Would you volunteer for the campaign?",
            c4,
            [_ref(98746, 879856, c4, "Yes", "Yes"), _ref(98747, 879856, c4, "No", "No")],
            order=5,
            section="My city and me",
        ),
        _form(
            12519,
            "custom_fields",
            "text",
            "Job",
            c3,
            [_ref(19491, 12519, c3)],
            section="identity",
            hidden=True,
            mandatory=True,
            order=10,
        ),
        _form(
            12520,
            "custom_fields",
            "date",
            "Date of first job",
            c3,
            [_ref(19492, 12520, c3)],
            section="identity",
            hidden=True,
            order=11,
        ),
        _form(
            12521,
            "custom_fields",
            "numeric",
            "Number of children",
            c3,
            [_ref(19493, 12521, c3)],
            section="identity",
            hidden=True,
            order=12,
        ),
        _form(
            12522,
            "custom_fields",
            "text",
            "Member ID",
            c3,
            [_ref(19494, 12522, c3)],
            section="infos",
            hidden=True,
            order=16,
        ),
        _form(
            12523,
            "custom_fields",
            "text",
            "Door color",
            c3,
            [_ref(19495, 12523, c3)],
            section="address",
            hidden=True,
            order=29,
        ),
        _form(
            879854,
            "custom_fields",
            "checkbox",
            "Favorites food",
            c4,
            [
                _ref(98741, 879854, c4, "hamburger", "hamburger"),
                _ref(98742, 879854, c4, "pizza", "pizza"),
                _ref(98743, 879854, c4, "salad", "salad"),
            ],
            section="infos",
            order=30,
        ),
    ]


def public_form(form: dict[str, Any]) -> dict[str, Any]:
    """The form as the API shows it (without the private category key)."""
    return {key: value for key, value in form.items() if not key.startswith("_")}


def build_actions() -> list[dict[str, Any]]:
    """``GET /actions`` items: ``{"Action": {...}, "NbVisites", ...}``."""

    def action(  # noqa: PLR0917
        action_id: int, name: str, type_data: str, status: str, start: str, end: str, goal: int
    ) -> dict[str, Any]:
        return {
            "id": action_id,
            "name": name,
            "pitch": f"Pitch for {name.lower()}",
            "group_id": GROUP_ID,
            "type_data": type_data,
            "status": status,
            "Users": [],
            "Teams": [],
            "facts": [],
            "Forms": [],
            "Addresses": [],
            "link": "",
            "goal": goal,
            "goal_forms": goal // 2,
            "start": start,
            "end": end,
            "reminder_id": "",
            "created_by": 456,
            "gotv_voted_tag": "",
            "gotv_not_voted_tag": "",
            "gotv_abstention_tag": "",
            "public": False,
            "registration_link": "",
            "created_by_detail": {
                "first_name": "Camille",
                "last_name": "Martin",
                "status": "active",
                "phone": "",
                "email": "camille.martin@example.org",
                "avator": "",
            },
            "aggreg_without_location": False,
            "fields": "[]",
            "polygon": "{}",
            "filter": "{}",
            "advanced_search": "{}",
            "polling_station_included": "[]",
            "polling_station_excluded": "[]",
            "polling_station_missing": False,
            "address_included": "[]",
            "address_excluded": "[]",
            "address_missing": False,
            "not_polygon": "{}",
            "excluded_nevada": False,
        }

    return [
        {
            "Action": action(
                152,
                "Door-to-door, city centre",
                "canvassing",
                "finished",
                "2026-03-02T08:00:00Z",
                "2026-03-29T18:00:00Z",
                500,
            ),
            "NbVisites": 79,
            "NbContacts": 89,
            "NbVisitesDeclared": 79,
        },
        {
            "Action": action(
                156,
                "Phone bank, volunteers",
                "calling",
                "todo",
                "2026-10-01T08:00:00Z",
                "2026-12-15T18:00:00Z",
                300,
            ),
            "NbVisites": 0,
            "NbContacts": 41,
            "NbVisitesDeclared": 0,
        },
        {
            "Action": action(
                161,
                "Town-hall meeting",
                "event",
                "todo",
                "2026-12-05T18:00:00Z",
                "2026-12-05T21:00:00Z",
                120,
            ),
            "NbVisites": 0,
            "NbContacts": 12,
            "NbVisitesDeclared": 0,
        },
    ]

"""The demo's input: about a thousand realistic French contacts, and the mapping that imports
them into the emulator's seeded space (``qomon_async.testing``).

The file is what a French campaign team exports from a spreadsheet: ``;``-separated, UTF-8
with a byte-order mark, French column names, dates as ``DD/MM/YYYY`` (some as ISO), postal
codes with leading zeros (``01000``), tags as ``bénévole;sympathisant``, a consent column
(``oui``/``non``), a level-of-support column (French labels) and a profession (a custom
field). It is deterministic for a seed. Three rows are bad on purpose, so that the demo shows
failures and the report: an invalid email, an impossible date, and a level of support that is
not one of the form's options.
"""

from __future__ import annotations

import collections
import csv
import random
import unicodedata
from collections.abc import Iterator
from pathlib import Path

__all__ = [
    "DEMO_BAD_ROWS",
    "DEMO_COLUMNS",
    "DEMO_MAPPING_TOML",
    "demo_rows",
    "write_demo_csv",
    "write_demo_mapping",
]

DEMO_COLUMNS = (
    "Prénom",
    "Nom",
    "Civilité",
    "E-mail",
    "Portable",
    "Date de naissance",
    "N°",
    "Rue",
    "Code postal",
    "Ville",
    "Tags",
    "Consentement email",
    "Soutien",
    "Profession",
)

# The form labels are those of the emulator's seed (qomon_async/testing/_seed.py): the consent
# form "Newsletter" (values consent_email / no_consent_email), "Level of support" and the
# custom field "Job" (a text form).
DEMO_MAPPING_TOML = """\
# Mapping of the demo file: French column names -> Qomon contact fields.
[columns]
"Prénom" = "firstname"
"Nom" = "surname"
"Civilité" = "gender"
"E-mail" = "mail"
"Portable" = "mobile"
"Date de naissance" = "birthdate"
"N°" = "address.housenumber"
"Rue" = "address.street"
"Code postal" = "address.postalcode"
"Ville" = "address.city"
"Tags" = "tags"

[constants]
tags = "import-demo"
"address.country" = "France"

[values.gender]
"Mme" = "F"
"M." = "M"

[advanced."Consentement email"]
form_type = "consent"
form = "Newsletter"
values = { "oui" = "consent_email", "non" = "no_consent_email" }

[advanced."Soutien"]
form_type = "level_of_support"
form = "Level of support"
values = { "Élu" = "elected_official", "Association" = "association", "Entreprise" = "business", \
"Citoyen" = "citizen", "À convaincre" = "to_be_convinced" }

[advanced."Profession"]
form_type = "custom_fields"
form = "Job"
"""

# (data row number for a 1,000-row file, column, bad value): the deliberate failures.
DEMO_BAD_ROWS = (
    (137, "E-mail", "camille.martin@"),
    (412, "Date de naissance", "31/02/1985"),
    (777, "Soutien", "Peut-être"),
)

_FIRST_NAMES = (
    ("Jean", "M"), ("Marie", "F"), ("Pierre", "M"), ("Camille", "F"), ("Louis", "M"),
    ("Léa", "F"), ("Lucas", "M"), ("Chloé", "F"), ("Hugo", "M"), ("Manon", "F"),
    ("Nicolas", "M"), ("Nathalie", "F"), ("Philippe", "M"), ("Isabelle", "F"), ("Thomas", "M"),
    ("Sophie", "F"), ("François", "M"), ("Julie", "F"), ("Gabriel", "M"), ("Emma", "F"),
    ("Arthur", "M"), ("Inès", "F"), ("Jules", "M"), ("Zoé", "F"), ("Raphaël", "M"),
    ("Alice", "F"), ("Théo", "M"), ("Élodie", "F"), ("Mathieu", "M"), ("Céline", "F"),
    ("Antoine", "M"), ("Sandrine", "F"), ("Michel", "M"), ("Françoise", "F"), ("Jérôme", "M"),
    ("Hélène", "F"), ("Olivier", "M"), ("Valérie", "F"), ("Stéphane", "M"), ("Aurélie", "F"),
    ("Dominique", "O"), ("Claude", "O"),
)  # fmt: skip

_SURNAMES = (
    "Martin", "Bernard", "Thomas", "Petit", "Robert", "Richard", "Durand", "Dubois", "Moreau",
    "Laurent", "Simon", "Michel", "Lefèvre", "Leroy", "Roux", "David", "Bertrand", "Morel",
    "Fournier", "Girard", "Bonnet", "Dupont", "Lambert", "Fontaine", "Rousseau", "Vincent",
    "Muller", "Faure", "André", "Mercier", "Blanc", "Guérin", "Boyer", "Garnier", "Chevalier",
    "François", "Legrand", "Gauthier", "Garcia", "Perrin", "Robin", "Clément", "Morin",
    "Nicolas", "Henry", "Roussel", "Mathieu", "Masson", "Le Gall", "N'Diaye", "Da Silva",
    "Lemoine", "Barbier", "Brun", "Dumont", "Marchand", "Duval", "Denis", "Caron", "Picard",
)  # fmt: skip

_STREETS = (
    "rue de la République", "avenue Jean Jaurès", "rue Victor Hugo", "boulevard Gambetta",
    "place de la Mairie", "rue Pasteur", "rue du Général de Gaulle", "allée des Tilleuls",
    "chemin des Vignes", "rue des Écoles", "impasse des Lilas", "rue Jules Ferry",
    "avenue de la Gare", "rue Nationale", "rue de l'Église", "boulevard Voltaire",
    "rue du Moulin", "quai de la Loire", "rue Émile Zola", "avenue Foch",
    "rue des Acacias", "route de Lyon", "rue Saint-Martin", "place du Marché",
)  # fmt: skip

_CITIES = (
    ("Bourg-en-Bresse", "01000"), ("Laon", "02000"), ("Moulins", "03000"),
    ("Digne-les-Bains", "04000"), ("Gap", "05000"), ("Nice", "06000"), ("Privas", "07000"),
    ("Charleville-Mézières", "08000"), ("Foix", "09000"), ("Troyes", "10000"),
    ("Carcassonne", "11000"), ("Marseille", "13001"), ("Caen", "14000"), ("Dijon", "21000"),
    ("Besançon", "25000"), ("Toulouse", "31000"), ("Bordeaux", "33000"),
    ("Montpellier", "34000"), ("Rennes", "35000"), ("Grenoble", "38000"), ("Nantes", "44000"),
    ("Orléans", "45000"), ("Reims", "51100"), ("Nancy", "54000"), ("Lille", "59000"),
    ("Strasbourg", "67000"), ("Lyon", "69003"), ("Le Mans", "72000"), ("Annecy", "74000"),
    ("Paris", "75011"), ("Paris", "75018"), ("Rouen", "76000"), ("Amiens", "80000"),
    ("Poitiers", "86000"), ("Limoges", "87000"),
)  # fmt: skip

_TAGS = ("bénévole", "sympathisant", "adhérent", "porte-à-porte", "phoning", "tractage")
_SUPPORT = ("Élu", "Association", "Entreprise", "Citoyen", "À convaincre", "Citoyen", "Citoyen")
_JOBS = (
    "Enseignante", "Infirmier", "Retraité", "Artisan", "Étudiante", "Agricultrice",
    "Commerçant", "Ingénieure", "Médecin", "Boulanger", "Avocate", "Facteur",
)  # fmt: skip
_DOMAINS = ("example.org", "example.com", "example.net")


def _ascii_slug(text: str) -> str:
    plain = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode()
    return "".join(c for c in plain.lower() if c.isalnum() or c == "-")


def demo_rows(count: int = 1000, *, seed: int = 2026) -> Iterator[dict[str, str]]:
    """The demo's rows (column -> cell, empty cell = ``""``), deterministic for ``seed``.

    The bad rows of :data:`DEMO_BAD_ROWS` are placed at the same fraction of the file
    whatever ``count`` (row 137 of 1,000 is row 14 of 100), when ``count`` has room.
    """
    rng = random.Random(seed)
    bad = {
        max(1, round(number * count / 1000)): (column, value)
        for number, column, value in DEMO_BAD_ROWS
    }
    seen: collections.Counter[str] = collections.Counter()
    for number in range(1, count + 1):
        first, gender = rng.choice(_FIRST_NAMES)
        surname = rng.choice(_SURNAMES)
        # Unique per name, whatever the domain: jean.martin@, then jean.martin2@, ...
        base = f"{_ascii_slug(first)}.{_ascii_slug(surname)}"
        seen[base] += 1
        suffix = str(seen[base]) if seen[base] > 1 else ""
        mail = f"{base}{suffix}@{rng.choice(_DOMAINS)}"
        mobile = "0" + rng.choice("67") + f"{rng.randrange(10**8):08d}"
        if rng.random() < 0.5:  # half written "06 12 34 56 78", as people type them
            mobile = " ".join(mobile[i : i + 2] for i in range(0, 10, 2))
        year, month, day = rng.randint(1940, 2006), rng.randint(1, 12), rng.randint(1, 28)
        birthdate = rng.choice(
            (f"{day:02d}/{month:02d}/{year}",) * 4 + (f"{year}-{month:02d}-{day:02d}", "")
        )
        city, postal = rng.choice(_CITIES)
        house = str(rng.randint(1, 150)) + (" bis" if rng.random() < 0.05 else "")
        row = {
            "Prénom": first,
            "Nom": surname,
            "Civilité": {"F": "Mme", "M": "M.", "O": ""}[gender],
            "E-mail": mail,
            "Portable": mobile if rng.random() < 0.9 else "",
            "Date de naissance": birthdate,
            "N°": house,
            "Rue": rng.choice(_STREETS),
            "Code postal": postal,
            "Ville": city,
            "Tags": ";".join(rng.sample(_TAGS, rng.choice((0, 1, 1, 2)))),
            "Consentement email": rng.choice(("oui", "oui", "non", "")),
            "Soutien": rng.choice(_SUPPORT) if rng.random() < 0.8 else "",
            "Profession": rng.choice(_JOBS) if rng.random() < 0.4 else "",
        }
        if number in bad:
            column, value = bad[number]
            row[column] = value
        yield row


def write_demo_csv(path: str | Path, count: int = 1000, *, seed: int = 2026) -> Path:
    """Write the demo file (``;``-separated, UTF-8 with a byte-order mark, as Excel does).

    Returns:
        The path written.
    """
    path = Path(path)
    with open(path, "w", encoding="utf-8-sig", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=DEMO_COLUMNS, delimiter=";")
        writer.writeheader()
        writer.writerows(demo_rows(count, seed=seed))
    return path


def write_demo_mapping(path: str | Path) -> Path:
    """Write :data:`DEMO_MAPPING_TOML` to ``path``; returns the path."""
    path = Path(path)
    path.write_text(DEMO_MAPPING_TOML, encoding="utf-8")
    return path

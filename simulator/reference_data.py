"""The static rows of totesys: exact where the real rows are public, Faker-made otherwise.

currency, payment_type and department are the real rows (spec DDL). address, counterparty
and staff keep the real shapes and quirks documented in spec/mapping.md: 30 addresses with
address_line_2 NULL in 20 and district NULL in 14, a country with an apostrophe, 20
counterparties on only 14 distinct addresses, 20 staff spread over departments as in the
real data (none in Sales) with an O'Keefe among them.
"""

from __future__ import annotations

import random
from datetime import datetime

from faker import Faker

SEEDED_AT = datetime(2022, 11, 3, 14, 20, 49, 962000)
SEEDED_AT_LATER = datetime(2022, 11, 3, 14, 20, 51, 563000)

CURRENCIES = [(1, "GBP"), (2, "USD"), (3, "EUR")]
PAYMENT_TYPES = [
    (1, "SALES_RECEIPT"),
    (2, "SALES_REFUND"),
    (3, "PURCHASE_PAYMENT"),
    (4, "PURCHASE_REFUND"),
]
DEPARTMENTS = [
    (1, "Sales", "Manchester", "Richard Roma"),
    (2, "Purchasing", "Manchester", "Naomi Lapaglia"),
    (3, "Production", "Leeds", "Chester Ming"),
    (4, "Dispatch", "Leds", "Mark Hanna"),  # the typo is in the real data
    (5, "Finance", "Manchester", "Jordan Belfort"),
    (6, "Facilities", "Manchester", "Shelley Levene"),
    (7, "Communications", "Leeds", "Ann Blake"),
    (8, "HR", "Leeds", "James Link"),
]
STAFF_PER_DEPARTMENT = {2: 5, 3: 5, 6: 3, 5: 2, 7: 2, 8: 2, 4: 1}
DISTRICTS = ["Avon", "Bedfordshire", "Berkshire", "Borders", "Buckinghamshire", "Cambridgeshire"]
DESIGN_NAMES = [
    "Bronze", "Concrete", "Cotton", "Fresh", "Frozen", "Granite",
    "Metal", "Plastic", "Rubber", "Soft", "Steel", "Wooden",
]  # fmt: skip
FILE_LOCATIONS = [
    "/usr/share", "/etc/periodic", "/lost+found", "/usr/local/src", "/private",
    "/var/log", "/opt/include", "/home/user/dir", "/usr/ports", "/System", "/root", "/mnt",
]  # fmt: skip

ADDRESS_COUNT = 30
COUNTERPARTY_COUNT = 20
DISTINCT_LEGAL_ADDRESSES = 14
KOREA = "Democratic People's Republic of Korea"

AddressRow = tuple[int, str, str | None, str | None, str, str, str, str, datetime, datetime]
CounterpartyRow = tuple[int, str, int, str, str, datetime, datetime]
StaffRow = tuple[int, str, str, int, str, datetime, datetime]


def make_addresses(rng: random.Random, fake: Faker) -> list[AddressRow]:
    with_line_2 = set(rng.sample(range(1, ADDRESS_COUNT + 1), ADDRESS_COUNT - 20))
    with_district = set(rng.sample(range(1, ADDRESS_COUNT + 1), ADDRESS_COUNT - 14))
    korea = rng.randrange(1, ADDRESS_COUNT + 1)
    rows: list[AddressRow] = []
    for address_id in range(1, ADDRESS_COUNT + 1):
        rows.append(
            (
                address_id,
                fake.street_address(),
                fake.secondary_address() if address_id in with_line_2 else None,
                rng.choice(DISTRICTS) if address_id in with_district else None,
                fake.city(),
                fake.postcode() if rng.random() < 0.7 else fake.zipcode_plus4(),
                KOREA if address_id == korea else fake.country(),
                f"{rng.randrange(1000, 10000)} {rng.randrange(100000, 1000000)}",
                SEEDED_AT,
                SEEDED_AT,
            )
        )
    return rows


def make_counterparties(rng: random.Random, fake: Faker) -> list[CounterpartyRow]:
    """20 counterparties on 14 distinct addresses: every address used, some used twice."""
    distinct = rng.sample(range(1, ADDRESS_COUNT + 1), DISTINCT_LEGAL_ADDRESSES)
    shared = rng.sample(distinct, COUNTERPARTY_COUNT - DISTINCT_LEGAL_ADDRESSES)
    legal_addresses = distinct + shared
    rng.shuffle(legal_addresses)
    return [
        (i, fake.company(), legal_addresses[i - 1], fake.name(), fake.name(), SEEDED_AT, SEEDED_AT)
        for i in range(1, COUNTERPARTY_COUNT + 1)
    ]


def make_staff(rng: random.Random, fake: Faker) -> list[StaffRow]:
    departments = [dep for dep, n in STAFF_PER_DEPARTMENT.items() for _ in range(n)]
    rng.shuffle(departments)
    okeefe = rng.randrange(1, len(departments) + 1)
    rows: list[StaffRow] = []
    for staff_id, department_id in enumerate(departments, start=1):
        first = "Irving" if staff_id == okeefe else fake.first_name()
        last = "O'Keefe" if staff_id == okeefe else fake.last_name()
        email = f"{first}.{last}@terrifictotes.com".lower()
        rows.append((staff_id, first, last, department_id, email, SEEDED_AT, SEEDED_AT))
    return rows


def design_file_name(rng: random.Random, name: str, created: datetime) -> str:
    suffix = "".join(rng.choices("abcdefghijklmnopqrstuvwxyz0123456789", k=4))
    return f"{name.lower()}-{created:%Y%m%d}-{suffix}.json"

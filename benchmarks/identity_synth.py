"""A small, self-contained generator of corrupted person records for identity benchmarks.

This is not the synthetic Dorset population (that lives in ``sharedcare.synthetic``); it
exists so the identity benchmarks can run on their own. People get names drawn from
Faker's en_GB lists (weighted towards common ones), Dorset-shaped postcodes, households
(shared surname and address) and a few twins. Each source's copy of a person is then
corrupted at stated rates: typos, nicknames, initials, married names, day/month swaps,
transposed digits, moves, missing and wrong NHS numbers.
"""

from __future__ import annotations

import contextlib
import csv
import itertools
import random
from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path

from faker.providers.person.en_GB import Provider as _Names

from sharedcare.identity.nhs_number import check_digit
from sharedcare.identity.nicknames import NICKNAME_GROUPS

MALE = list(_Names.first_names_male)
FEMALE = list(_Names.first_names_female)
SURNAMES = list(_Names.last_names)
STREETS = [
    "High",
    "Church",
    "Station",
    "Mill",
    "Victoria",
    "Green",
    "Park",
    "Kings",
    "Queens",
    "North",
    "South",
    "West",
    "East",
    "School",
    "Manor",
    "Castle",
    "Bridge",
    "Springfield",
    "Poole",
    "Wimborne",
    "Ringwood",
    "Christchurch",
    "Alexandra",
    "Albert",
    "Grange",
]
SUFFIXES = ["Road", "Street", "Lane", "Avenue", "Close", "Drive", "Gardens", "Way", "Crescent"]
TOWNS = {
    "BH": ["Bournemouth", "Poole", "Christchurch", "Wimborne"],
    "DT": ["Dorchester", "Weymouth", "Bridport", "Sherborne"],
    "SP": ["Shaftesbury", "Gillingham", "Blandford"],
}
LETTERS = "ABDEFGHJLNPQRSTUWXYZ"
_NHS_CAPACITY = 850_000


def _zipf_weights(n: int) -> list[float]:
    """Cumulative Zipf-like weights (for ``random.choices(cum_weights=...)``)."""
    return list(itertools.accumulate(1.0 / (i + 1) ** 0.8 for i in range(n)))


@dataclass
class Person:
    pid: int
    given: str
    middle: str
    family: str
    dob: date
    sex: str
    postcode: str
    address: str
    nhs: str


class Generator:
    """Makes people and corrupted source copies, reproducibly from a seed."""

    def __init__(self, seed: int = 7) -> None:
        self.rng = random.Random(seed)
        self._wm = _zipf_weights(len(MALE))
        self._wf = _zipf_weights(len(FEMALE))
        self._ws = _zipf_weights(len(SURNAMES))
        self._nhs_seen: set[str] = set()
        nick: dict[str, list[str]] = {}
        for group in NICKNAME_GROUPS:
            for name in group:
                nick.setdefault(name, []).extend(n for n in group if n != name)
        self._nick = nick

    def nhs_number(self) -> str:
        """A fresh valid number from the 999 test range, or "" once it is nearly used up.

        The range holds about 909,000 valid numbers, so populations near a million
        people leave the rest without one.
        """
        rng = self.rng
        if len(self._nhs_seen) >= _NHS_CAPACITY:
            return ""
        while True:
            first = "999" + "".join(rng.choice("0123456789") for _ in range(6))
            digit = check_digit(first)
            if digit is not None and (n := first + str(digit)) not in self._nhs_seen:
                self._nhs_seen.add(n)
                return n

    def place(self) -> tuple[str, str]:
        rng = self.rng
        area = rng.choice(["BH", "BH", "BH", "DT", "DT", "SP"])
        district = rng.randint(1, 25 if area == "BH" else 11)
        postcode = f"{area}{district} {rng.randint(1, 9)}{rng.choice(LETTERS)}{rng.choice(LETTERS)}"
        street = f"{rng.choice(STREETS)} {rng.choice(SUFFIXES)}"
        address = f"{rng.randint(1, 180)} {street}, {rng.choice(TOWNS[area])}"
        return postcode, address

    def given(self, sex: str) -> str:
        names, weights = (MALE, self._wm) if sex == "male" else (FEMALE, self._wf)
        return self.rng.choices(names, cum_weights=weights)[0]

    def surname(self) -> str:
        return self.rng.choices(SURNAMES, cum_weights=self._ws)[0]

    def people(self, n: int) -> list[Person]:
        rng = self.rng
        out: list[Person] = []
        while len(out) < n:
            postcode, address = self.place()
            family = self.surname()
            size = rng.choices([1, 2, 3, 4], [35, 35, 15, 15])[0]
            twins = rng.random() < 0.01
            base = date(1925, 1, 1) + timedelta(days=rng.randint(0, 36000))
            for k in range(size):
                sex = rng.choice(["male", "female"])
                if twins and k == 1:
                    dob = out[-1].dob
                else:
                    dob = base + timedelta(days=rng.randint(-4000, 4000)) if k else base
                    if dob > date(2025, 12, 31):
                        dob = date(2025, 12, 31) - timedelta(days=rng.randint(0, 9000))
                out.append(
                    Person(
                        len(out),
                        self.given(sex),
                        self.given(sex),
                        family,
                        dob,
                        sex,
                        postcode,
                        address,
                        self.nhs_number(),
                    )
                )
        return out[:n]

    # ---------------------------------------------------------------- corruption
    def _typo(self, text: str) -> str:
        rng = self.rng
        if len(text) < 3:
            return text
        i = rng.randrange(1, len(text) - 1)
        op = rng.choice("sdit")
        letter = rng.choice("abcdefghijklmnopqrstuvwxyz")
        if op == "s":
            return text[:i] + letter + text[i + 1 :]
        if op == "d":
            return text[:i] + text[i + 1 :]
        if op == "i":
            return text[:i] + letter + text[i:]
        return text[:i] + text[i + 1] + text[i] + text[i + 2 :]

    def copy(self, p: Person, *, nhs_missing: float) -> dict[str, str]:
        rng = self.rng
        given, family, dob = p.given, p.family, p.dob
        postcode, address, nhs, sex = p.postcode, p.address, p.nhs, p.sex
        r = rng.random()
        if r < 0.04 and given.upper() in self._nick:
            given = rng.choice(self._nick[given.upper()]).title()
        elif r < 0.07:
            given = self._typo(given)
        elif r < 0.08:
            given = given[0]
        elif r < 0.09:
            given = ""
        if given and rng.random() < 0.3:
            given = f"{given} {p.middle}"
        r = rng.random()
        if r < 0.03:
            family = self._typo(family)
        elif r < 0.045 and p.sex == "female":
            family = self.surname()
        elif r < 0.05:
            family = family.upper()
        dob_text = dob.isoformat()
        r = rng.random()
        if r < 0.01 and dob.day <= 12 and dob.day != dob.month:
            dob_text = date(dob.year, dob.day, dob.month).isoformat()
        elif r < 0.025:
            digits = list(dob.strftime("%Y%m%d"))
            i = rng.choice([2, 3, 6])
            digits[i], digits[i + 1] = digits[i + 1], digits[i]
            text = "".join(digits)
            with contextlib.suppress(ValueError):  # an impossible date keeps the original
                dob_text = date(int(text[:4]), int(text[4:6]), int(text[6:])).isoformat()
        elif r < 0.035:
            dob_text = (dob + timedelta(days=rng.choice([-1, 1, 10, -10]))).isoformat()
        elif r < 0.04:
            dob_text = ""
        r = rng.random()
        if r < 0.10:
            postcode, address = self.place()
        elif r < 0.12:
            postcode = postcode[:-1] + rng.choice(LETTERS)
        elif r < 0.16:
            address = ""
        elif r < 0.18:
            postcode = postcode.replace(" ", "")
        r = rng.random()
        if r < nhs_missing:
            nhs = ""
        elif not nhs:
            pass
        elif r < nhs_missing + 0.01:
            nhs = self.nhs_number()  # a wrong but valid number
        elif r < nhs_missing + 0.015:
            nhs = nhs[:9] + str((int(nhs[9]) + 1) % 10)  # mistyped check digit
        elif rng.random() < 0.3:
            nhs = f"{nhs[:3]} {nhs[3:6]} {nhs[6:]}"
        r = rng.random()
        if r < 0.02:
            sex = ""
        elif r < 0.025:
            sex = "female" if sex == "male" else "male"
        return {
            "given": given,
            "family": family,
            "dob": dob_text,
            "sex": sex,
            "postcode": postcode,
            "address": address,
            "nhs": nhs,
        }


def write_link_files(
    folder: Path, n_people: int, *, seed: int = 7, overlap: float = 0.7
) -> tuple[Path, Path, Path]:
    """Write left.csv (a GP list), right.csv (an acute trust PAS) and truth.csv."""
    gen = Generator(seed)
    people = gen.people(n_people)
    folder.mkdir(parents=True, exist_ok=True)
    left, right, truth = folder / "left.csv", folder / "right.csv", folder / "truth.csv"
    with (
        left.open("w", newline="") as lf,
        right.open("w", newline="") as rf,
        truth.open("w", newline="") as tf,
    ):
        lw = csv.writer(lf)
        rw = csv.writer(rf)
        tw = csv.writer(tf)
        lw.writerow(["gp_id", "forename", "surname", "dob", "gender", "pcode", "addr", "nhs"])
        rw.writerow(["mrn", "first", "last", "birth", "sex", "postcode", "address", "nhsno"])
        tw.writerow(["left_id", "right_id"])
        for p in people:
            in_left = gen.rng.random() < 0.85
            in_right = gen.rng.random() < (overlap if in_left else 0.5)
            if in_left:
                c = gen.copy(p, nhs_missing=0.03)
                lw.writerow(
                    [
                        f"L{p.pid}",
                        c["given"],
                        c["family"],
                        c["dob"],
                        c["sex"],
                        c["postcode"],
                        c["address"],
                        c["nhs"],
                    ]
                )
            if in_right:
                c = gen.copy(p, nhs_missing=0.25)
                rw.writerow(
                    [
                        f"R{p.pid}",
                        c["given"],
                        c["family"],
                        c["dob"],
                        c["sex"],
                        c["postcode"],
                        c["address"],
                        c["nhs"],
                    ]
                )
            if in_left and in_right:
                tw.writerow([f"L{p.pid}", f"R{p.pid}"])
    return left, right, truth

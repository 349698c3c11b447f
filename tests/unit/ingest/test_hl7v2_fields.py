"""SegmentView reads fields exactly as the straightforward split it replaced (decision 0029).

The hot-path reader builds a field's repetitions in one pass, decides emptiness on the
string and splits sub-components only when a component holding them is read;
:class:`_Reference` is the previous implementation (split everything into repetitions,
components and sub-components, then drop repetitions whose every sub-component is empty
or whitespace) and :func:`_reference_c` its component read, kept here as the oracle.
"""

from __future__ import annotations

import re

from hypothesis import given, settings
from hypothesis import strategies as st

from sharedcare.ingest.hl7v2.fields import Composite, Delimiters, SegmentView, unescape
from tests.support.hl7_traffic import message


class _Reference:
    """The SegmentView of session 6, reduced to what is compared."""

    def __init__(self, text: str, delimiters: Delimiters) -> None:
        self.id = text[:3]
        self.d = delimiters
        self.parts = text.split(delimiters.field)
        self.header = self.id in ("MSH", "BHS", "FHS")

    def raw(self, n: int) -> str:
        if self.header:
            if n == 1:
                return self.d.field
            index = n - 1
        else:
            index = n
        if n < 1 or index >= len(self.parts):
            return ""
        return self.parts[index]

    def reps(self, n: int) -> list[list[list[str]]]:
        raw, d = self.raw(n), self.d
        if not raw:
            canon: list[list[list[str]]] = []
        elif self.header and n in (1, 2):
            canon = [[[raw]]]
        else:
            canon = [
                [comp.split(d.subcomponent) for comp in rep.split(d.component)]
                for rep in raw.split(d.repetition)
            ]
        return [
            comps for comps in canon if any(sub and not sub.isspace() for c in comps for sub in c)
        ]


_OTHER_WHITESPACE = re.compile(r"[^\S \r\n\t]")


def _reference_c(comps: list[list[str]], comp: int, sub: int, d: Delimiters) -> str:
    """Composite.c of session 7, on the fully split repetition."""
    if comp < 1 or comp > len(comps):
        return ""
    subs = comps[comp - 1]
    if sub < 1 or sub > len(subs):
        return ""
    text = subs[sub - 1]
    if not text:
        return text
    if d.escape in text:
        text = unescape(text, d.escape, d.escapes)
    if not text.isascii():
        text = _OTHER_WHITESPACE.sub(" ", text)
    return text.strip()


def _values(rep: Composite) -> list[list[str]]:
    return [rep.subs(c) for c in range(1, len(rep) + 1)]


def _reference_values(comps: list[list[str]], d: Delimiters) -> list[list[str]]:
    return [
        [_reference_c(comps, c, s, d) for s in range(1, len(comps[c - 1]) + 1)]
        for c in range(1, len(comps) + 1)
    ]


def _same(text: str, delimiters: Delimiters) -> None:
    view, ref = SegmentView(text, 1, delimiters), _Reference(text, delimiters)
    for n in range(0, len(ref.parts) + 3):
        expected = ref.reps(n)
        got = view.reps(n)
        assert [len(r) for r in got] == [len(c) for c in expected], (text, n)
        assert [_values(r) for r in got] == [_reference_values(c, delimiters) for c in expected]
        assert not any(r.is_empty() for r in got)
        first = expected[0] if expected else []
        for comp in range(0, 5):
            for sub in range(0, 4):
                want = _reference_c(first, comp, sub, delimiters)
                assert view.v(n, comp, sub) == want
                assert view.rep(n).c(comp, sub) == want
        for rep, comps in zip(got, expected, strict=True):
            for comp in range(1, len(comps) + 1):
                for sub in range(0, 4):
                    assert rep.c(comp, sub) == _reference_c(comps, comp, sub, delimiters)


_CHARS = st.sampled_from([*"|^~\\&AB 1.\t", "\u00a0", "é", "\\F\\", "\\X41\\"])


@settings(max_examples=400, deadline=None)
@given(
    seg_id=st.sampled_from(["PID", "OBX", "MSH", "ZZ1", "BHS"]),
    body=st.lists(_CHARS, max_size=40).map("".join),
)
def test_fields_read_as_the_plain_split_did(seg_id: str, body: str) -> None:
    if seg_id in ("MSH", "BHS"):
        _same(seg_id + "|^~\\&|" + body, Delimiters())
    else:
        _same(seg_id + "|" + body, Delimiters())


@settings(max_examples=100, deadline=None)
@given(body=st.lists(st.sampled_from(list("#$*%@AB ")), max_size=30).map("".join))
def test_other_delimiters_read_as_the_plain_split_did(body: str) -> None:
    delimiters = Delimiters.from_msh("MSH#$*%@#")
    _same("PID#" + body, delimiters)


def test_the_benchmark_traffic_reads_as_the_plain_split_did() -> None:
    for i in range(60):
        text = message(i)
        delimiters = Delimiters.from_msh(text)
        for segment in text.split("\r"):
            if segment:
                _same(segment, delimiters)

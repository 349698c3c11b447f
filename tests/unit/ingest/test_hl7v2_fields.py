"""SegmentView reads fields exactly as the straightforward split it replaced (decision 0029).

The hot-path reader builds a field's repetitions in one pass and decides emptiness on the
string; :class:`_Reference` is the previous implementation (split everything into
repetitions, components and sub-components, then drop repetitions whose every
sub-component is empty or whitespace), kept here as the oracle.
"""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from sharedcare.ingest.hl7v2.fields import Composite, Delimiters, SegmentView
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


def _values(rep: Composite) -> list[list[str]]:
    return [rep.subs(c) for c in range(1, len(rep) + 1)]


def _same(text: str, delimiters: Delimiters) -> None:
    view, ref = SegmentView(text, 1, delimiters), _Reference(text, delimiters)
    esc = Composite([], delimiters.escape, delimiters.escapes)
    for n in range(0, len(ref.parts) + 3):
        expected = ref.reps(n)
        got = view.reps(n)
        assert [r._comps for r in got] == expected, (text, n)
        assert [_values(r) for r in got] == [
            _values(Composite(c, esc._esc, esc._separators)) for c in expected
        ]
        first = expected[0] if expected else []
        for comp in range(0, 5):
            for sub in range(0, 3):
                want = Composite(first, esc._esc, esc._separators).c(comp, sub)
                assert view.v(n, comp, sub) == want
                assert view.rep(n).c(comp, sub) == want


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

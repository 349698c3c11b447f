"""Fast, forgiving access to the fields of an HL7 v2 segment.

The mapping code wants one shape for every field, so :class:`SegmentView` presents each
as ``repetitions -> components -> sub-components`` and returns unescaped text, with the
empty string for anything absent. Positions are 1-based as in the HL7 standard, and
``MSH-1`` is the field separator, exactly as the standard numbers MSH.

Fields are split lazily, only when read, using the message's own delimiters (HL7 v2.5.1
section 2.5.4). This matters for throughput: building python-hl7's full container tree
for every (mostly empty) field costs about 1.5 ms for a 700-byte ADT, while the listener
must sustain thousands of messages a second. The python-hl7 object model stays available
through :meth:`sharedcare.ingest.hl7v2.parse.ParsedMessage.to_hl7`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

__all__ = ["Composite", "Delimiters", "SegmentView", "escapes_of", "unescape"]

_OTHER_WHITESPACE = re.compile(r"[^\S \r\n\t]")


@dataclass(frozen=True, slots=True)
class Delimiters:
    """The five delimiters of a message, read from MSH-1 and MSH-2."""

    field: str = "|"
    component: str = "^"
    repetition: str = "~"
    escape: str = "\\"
    subcomponent: str = "&"

    @classmethod
    def from_msh(cls, segment: str) -> Delimiters:
        """Read the delimiters from an MSH (or FHS/BHS) segment, defaulting missing ones."""
        sep = segment[3] if len(segment) > 3 else "|"
        end = segment.find(sep, 4)
        enc = segment[4:end] if end > 0 else segment[4:]
        return cls(
            field=sep,
            component=enc[0] if len(enc) > 0 else "^",
            repetition=enc[1] if len(enc) > 1 else "~",
            escape=enc[2] if len(enc) > 2 else "\\",
            subcomponent=enc[3] if len(enc) > 3 else "&",
        )

    @property
    def escapes(self) -> dict[str, str]:
        """Escape-sequence codes (F, S, T, R, E) to the delimiter characters."""
        return {
            "F": self.field,
            "S": self.component,
            "T": self.subcomponent,
            "R": self.repetition,
            "E": self.escape,
        }


def unescape(text: str, esc: str, separators: dict[str, str]) -> str:
    """Decode HL7 escape sequences (HL7 v2.5.1 section 2.7).

    ``\\F\\ \\S\\ \\T\\ \\R\\ \\E\\`` become the delimiters, ``\\.br\\`` a line break and
    ``\\Xhh..\\`` the hex bytes (as Latin-1). Formatting and character-set sequences
    (``\\H\\ \\N\\ \\.sp\\ \\C..\\ \\M..\\ \\Z..\\``) are dropped. An unterminated
    sequence is kept literally. Written here rather than using python-hl7's ``unescape``,
    which logs field values (patient data) on malformed sequences.
    """
    out: list[str] = []
    i = 0
    while i < len(text):
        ch = text[i]
        if ch != esc:
            out.append(ch)
            i += 1
            continue
        end = text.find(esc, i + 1)
        if end < 0:
            out.append(text[i:])
            break
        seq = text[i + 1 : end]
        i = end + 1
        if seq in separators:
            out.append(separators[seq])
        elif seq == ".br":
            out.append("\n")
        elif seq.startswith("X") and len(seq) > 1:
            try:
                out.append(bytes.fromhex(seq[1:]).decode("latin-1"))
            except ValueError:
                out.append(esc + seq + esc)
        elif seq[:1] in ("H", "N", "C", "M", "Z", "."):
            continue
        else:
            out.append(esc + seq + esc)
    return "".join(out)


class Composite:
    """One repetition of a field: components of sub-components, unescaped on read.

    Args:
        comps: The repetition's components, each as written (sub-components still joined).
        esc: The escape character ("" if escape sequences are not decoded).
        separators: Escape-sequence codes to delimiters (:attr:`Delimiters.escapes`).
        subcomponent: The sub-component separator ("" to keep each component whole).
        plain: The repetition holds no escape character, no sub-component separator and
            only ASCII, so each component reads as itself, stripped (the caller checks).

    Sub-components are split only when a component that holds the separator is read:
    most components are plain text, and most repetitions are read for a component or two.
    """

    __slots__ = ("_comps", "_esc", "_plain", "_separators", "_sub")

    def __init__(
        self,
        comps: list[str],
        esc: str = "",
        separators: dict[str, str] | None = None,
        subcomponent: str = "&",
        plain: bool = False,
    ) -> None:
        self._comps = comps
        self._esc = esc
        self._separators = separators or {}
        self._sub = subcomponent
        self._plain = plain

    def c(self, comp: int = 1, sub: int = 1) -> str:
        """Return component ``comp`` (sub-component ``sub``), unescaped and stripped."""
        comps = self._comps
        if comp < 1 or comp > len(comps):
            return ""
        text = comps[comp - 1]
        if self._plain:
            return text.strip() if sub == 1 else ""
        if not text:
            return text
        ss = self._sub
        if ss and ss in text:
            subs = text.split(ss)
            if sub < 1 or sub > len(subs):
                return ""
            text = subs[sub - 1]
            if not text:
                return text
        elif sub != 1:
            return ""
        if self._esc and self._esc in text:
            text = unescape(text, self._esc, self._separators)
        if not text.isascii():
            # FHIR strings allow only space, CR, LF and tab as whitespace (e.g. no U+00A0).
            text = _OTHER_WHITESPACE.sub(" ", text)
        return text.strip()

    def values(self, at_least: int = 0) -> list[str]:
        """Every component as :meth:`c` reads it (sub-component 1), padded with empty
        strings to ``at_least`` items: one call instead of one per component."""
        comps = self._comps
        if self._plain:
            out = [text.strip() for text in comps]
        else:
            out = [self.c(i) for i in range(1, len(comps) + 1)]
        if len(out) < at_least:
            out.extend([""] * (at_least - len(out)))
        return out

    def subs(self, comp: int) -> list[str]:
        """Return all sub-components of component ``comp`` (unescaped)."""
        if comp < 1 or comp > len(self._comps):
            return []
        text = self._comps[comp - 1]
        count = text.count(self._sub) + 1 if self._sub else 1
        return [self.c(comp, i + 1) for i in range(count)]

    def __len__(self) -> int:
        return len(self._comps)

    def is_empty(self) -> bool:
        """Whether every component and sub-component is empty (or whitespace)."""
        ss = self._sub
        for comp in self._comps:
            bare = comp.replace(ss, "") if ss and ss in comp else comp
            if bare and not bare.isspace():
                return False
        return True


_EMPTY = Composite([])
"""The value of an empty field (read-only, so one is shared)."""

_NO_REPS: list[Composite] = []
"""The repetitions of an absent or empty field (read-only, so one list is shared)."""


class SegmentView:
    """Read-only view of one segment with 1-based HL7 positions.

    Args:
        text: The segment text (no terminator).
        index: 1-based position of the segment in the message, for error locations.
        delimiters: The message's delimiters.
        escapes: ``delimiters.escapes``, if the caller has it (read-only, shared).
    """

    __slots__ = (
        "_delims",
        "_escapes",
        "_header",
        "_parts",
        "_reps",
        "id",
        "index",
        "text",
    )

    def __init__(
        self,
        text: str,
        index: int,
        delimiters: Delimiters,
        escapes: dict[str, str] | None = None,
    ) -> None:
        self.text = text
        self.id = text[:3]
        self.index = index
        self._delims = delimiters
        self._escapes = escapes if escapes is not None else escapes_of(delimiters)
        self._parts = text.split(delimiters.field)
        self._header = self.id in ("MSH", "BHS", "FHS")
        self._reps: dict[int, list[Composite]] = {}

    def _raw(self, n: int) -> str:
        if self._header:
            if n == 1:
                return self._delims.field
            index = n - 1
        else:
            index = n
        if n < 1 or index >= len(self._parts):
            return ""
        return self._parts[index]

    def reps(self, n: int) -> list[Composite]:
        """Return every non-empty repetition of field ``n`` (do not modify the list)."""
        cached = self._reps.get(n)
        if cached is not None:
            return cached
        # Most fields are read once: the field is split and its repetitions built here in
        # one pass. A repetition is empty when, without its component and sub-component
        # separators, it is empty or all whitespace (every sub-component is), which is
        # checked on the string before any list is built for it. An absent or empty field
        # (most fields of a segment) gets the shared empty list without being remembered.
        d = self._delims
        if self._header:  # MSH-1 is the field separator itself, so MSH-n is parts[n - 1]
            if n < 3:
                out: list[Composite] = []
                self._reps[n] = out
                raw = self._raw(n)
                if raw and not raw.isspace():  # MSH-1, MSH-2: never split
                    out.append(Composite([raw], d.escape, self._escapes, ""))
                return out
            index = n - 1
        elif n < 1:
            return _NO_REPS
        else:
            index = n
        parts = self._parts
        if index >= len(parts):
            return _NO_REPS
        raw = parts[index]
        if not raw:
            return _NO_REPS
        out = []
        self._reps[n] = out
        esc, escapes = d.escape, self._escapes
        cs, ss = d.component, d.subcomponent
        # Escape character, sub-component separator or non-ASCII text anywhere in the field:
        # components are read the long way (see Composite.c); otherwise as they stand.
        plain = esc not in raw and ss not in raw and raw.isascii()
        for rep in raw.split(d.repetition) if d.repetition in raw else (raw,):
            bare = rep.replace(cs, "").replace(ss, "") if cs in rep or ss in rep else rep
            if not bare or bare.isspace():
                continue
            out.append(Composite(rep.split(cs) if cs in rep else [rep], esc, escapes, ss, plain))
        return out

    def rep(self, n: int) -> Composite:
        """Return the first non-empty repetition of field ``n`` (empty if none)."""
        reps = self._reps.get(n)
        if reps is None:
            reps = self.reps(n)
        return reps[0] if reps else _EMPTY

    def v(self, n: int, comp: int = 1, sub: int = 1) -> str:
        """Return field ``n`` component ``comp`` of the first repetition, unescaped."""
        reps = self._reps.get(n)
        if reps is None:
            reps = self.reps(n)
        return reps[0].c(comp, sub) if reps else ""

    def __len__(self) -> int:
        """Number of fields, counting the segment id (as python-hl7 does)."""
        return len(self._parts) + (1 if self._header else 0)


_ESCAPES: dict[Delimiters, dict[str, str]] = {}


def escapes_of(delimiters: Delimiters) -> dict[str, str]:
    """:attr:`Delimiters.escapes`, built once per set of delimiters (a few in practice;
    the dict is shared read-only by every segment that uses them)."""
    escapes = _ESCAPES.get(delimiters)
    if escapes is None:
        if len(_ESCAPES) > 256:  # bounded: delimiters come from senders
            _ESCAPES.clear()
        escapes = _ESCAPES[delimiters] = delimiters.escapes
    return escapes
